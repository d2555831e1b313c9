// `spqr demo`'s pipeline on a smaller model: every method runs end to end, the compressed folders reload from disk,
// and the ordering the demo exists to show holds (SpQR below GPTQ below RTN in H-weighted error, at fewer bits).
using SpQR.Transformer.Demo;
using Xunit;

namespace SpQR.Transformer.Tests;

public class DemoTests
{
    [Fact]
    public void The_demo_quantizes_reloads_and_orders_the_methods()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"spqr-demo-test-{Guid.NewGuid():N}");
        try
        {
            var r = DemoRunner.Run(dir, new DemoOptions { Hidden = 128, Intermediate = 352, Layers = 2, Heads = 4, KvHeads = 2, Vocab = 256, CalibrationSequences = 8, SeqLen = 64, EvalSequences = 2, MatVecSize = 0 });
            Assert.Equal(["RTN", "GPTQ", "SpQR"], r.Rows.Select(x => x.Method));
            var (rtn, gptq, spqr) = (r.Rows[0], r.Rows[1], r.Rows[2]);
            Assert.Equal(1.0, rtn.HErrorVsRtn, 12);
            Assert.True(gptq.HErrorVsRtn < 0.95 && spqr.HErrorVsRtn < gptq.HErrorVsRtn, $"H-error vs RTN: GPTQ {gptq.HErrorVsRtn}, SpQR {spqr.HErrorVsRtn}");
            Assert.True(spqr.AverageBits < gptq.AverageBits, $"bits: GPTQ {gptq.AverageBits}, SpQR {spqr.AverageBits}");
            Assert.True(spqr.OutputRelL2 < rtn.OutputRelL2 && spqr.OutputRelL2 > 0, $"logits error: RTN {rtn.OutputRelL2}, SpQR {spqr.OutputRelL2}");
            Assert.True(spqr.BytesOnDisk < r.DenseBytes / 3 && gptq.BytesOnDisk < r.DenseBytes / 3);
            Assert.True(File.Exists(Path.Combine(dir, "spqr", "config.json")));
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }
}
