// The SpQR encoder against the authors' reference on two real layers, and its algebraic properties (FsCheck).
using FsCheck.Xunit;
using SpQR.Quant.Encode;
using SpQR.Tensors.IO;
using SpQR.TestUtil;
using Xunit;
using Xunit.Abstractions;

namespace SpQR.Quant.Tests;

public class SpqrEncoderTests(ITestOutputHelper output)
{
    private static readonly SpqrOptions FixtureOptions = new()
    {
        WBits = 3, GroupSize = 16, QqScaleBits = 3, QqZeroBits = 3, QqGroupSize = 4, OutlierThreshold = 0.2,
        PermutationOrder = PermutationOrder.ActOrder, PercDamp = 1.0, BlockSize = 128, StorageExact = false,
    };

    [SharedTheory]
    [InlineData("layer1.self_attn.q_proj")]
    [InlineData("layer1.mlp.down_proj")]
    public void Matches_the_reference_implementation(string layer)
    {
        using var f = SafetensorsFile.Open(Fixtures.Path("fixtures", "spqr-layer", layer + ".safetensors"));
        var W = f.Get("W").AsReadOnlySpan<float>().ToArray();
        int rows = (int)f.Entry("W").Shape[0], cols = (int)f.Entry("W").Shape[1];
        var H = f.Get("H").AsReadOnlySpan<float>().ToArray().Select(x => (double)x).ToArray();
        var refHat = f.Get("W_hat").AsReadOnlySpan<float>().ToArray();
        var refMask = f.Get("outlier_mask_permuted").AsReadOnlySpan<byte>().ToArray();
        var refPerm = f.Get("perm").ToInt32Array();

        var r = SpqrEncoder.Quantize(W, H, rows, cols, FixtureOptions, layer);
        Assert.Equal(refPerm, r.Permutation);

        var mask = new bool[rows * cols];
        for (int i = 0; i < r.OutlierRows.Length; i++) mask[r.OutlierRows[i] * cols + r.OutlierCols[i]] = true;
        int refCount = refMask.Count(m => m != 0), both = 0, either = 0;
        for (int i = 0; i < mask.Length; i++) { both += mask[i] && refMask[i] != 0 ? 1 : 0; either += mask[i] || refMask[i] != 0 ? 1 : 0; }
        double jaccard = either == 0 ? 1 : (double)both / either;
        double num = 0, den = 0;
        for (int i = 0; i < W.Length; i++) { num += Math.Pow(r.Dequantized[i] - refHat[i], 2); den += (double)W[i] * W[i]; }
        double relDiff = Math.Sqrt(num / den);
        double err = LayerError.HWeighted(W, r.Dequantized, H, rows, cols), refErr = LayerError.HWeighted(W, refHat, H, rows, cols);
        output.WriteLine($"{layer}: outliers {r.OutlierRows.Length} vs {refCount}, Jaccard {jaccard:F4}, |Ŵ-Ŵref|/|W| {relDiff:E2}, H-error {err:G6} vs {refErr:G6}");

        Assert.InRange(r.OutlierRows.Length, refCount * 0.98, refCount * 1.02);
        Assert.True(jaccard >= 0.95, $"outlier mask Jaccard {jaccard}");
        Assert.True(relDiff <= 1e-3, $"relative difference of Ŵ {relDiff}");
        Assert.InRange(err, refErr * 0.99, refErr * 1.01);
    }
}
