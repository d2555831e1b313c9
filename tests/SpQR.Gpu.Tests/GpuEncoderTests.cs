// The device SpQR encoder (GpuSpqrEncoder) against the CPU encoder and against the authors' reference on the layer
// fixtures, with the tolerances the CPU encoder meets there; on ILGPU's CPU accelerator in CI (SPQR_DEVICE=gpu: CUDA).
using SpQR.Quant.Encode;
using SpQR.Tensors.IO;
using SpQR.TestUtil;
using Xunit;
using Xunit.Abstractions;

namespace SpQR.Gpu.Tests;

public class GpuEncoderTests(BackendFixture fx, ITestOutputHelper output) : IClassFixture<BackendFixture>
{
    [SharedTheory]
    [InlineData("layer1.self_attn.q_proj")]
    [InlineData("layer1.mlp.down_proj")]
    public void Matches_the_reference_implementation(string layer)
        => SpQR.Quant.Tests.SpqrReferenceCheck.AssertMatches(layer, (W, H, rows, cols, o, name) => GpuSpqrEncoder.Quantize(fx.Backend, W, H, rows, cols, o, name), output.WriteLine);

    public static TheoryData<string> Recipes => ["spqr", "spqr-fp16-storage", "simplified", "round-zero", "gptq", "w4-beta2-16"];

    private static SpqrOptions Recipe(string name) => name switch
    {
        "spqr" => new SpqrOptions { StorageExact = false },
        "spqr-fp16-storage" => new SpqrOptions(),
        "simplified" => new SpqrOptions { SimplifiedOutliers = true, OutlierThreshold = 0.1 },
        "round-zero" => new SpqrOptions { RoundZero = true, QqZeroBits = 3 },
        "gptq" => SpqrOptions.Gptq(3),
        "w4-beta2-16" => new SpqrOptions { WBits = 4, QqGroupSize = 16, BlockSize = 32 },
        _ => throw new ArgumentException(name),
    };

    // Same float operations in the same order as the CPU encoder: the results agree to the last code except where a
    // value sits on a rounding boundary (ptxas may fuse a multiply-add the CPU rounds twice); the errors agree to 0.5%.
    [Theory]
    [MemberData(nameof(Recipes))]
    public void Matches_the_cpu_encoder(string recipe)
    {
        int rows = 72, cols = 200; // ragged: 200 = 12.5 groups, 72 rows = 4.5 row groups of 16
        var o = Recipe(recipe);
        var W = TestData.Uniform(rows * cols, 3);
        for (int i = 0; i < W.Length; i += 97) W[i] *= 8; // scattered large weights
        var X = TestData.Uniform(4 * cols * cols / 8, 4);
        int n = X.Length / cols;
        var H = new double[cols * cols];
        for (int s = 0; s < n; s++)
            for (int i = 0; i < cols; i++)
                for (int j = 0; j < cols; j++) H[i * cols + j] += 2.0 / n * (X[s * cols + i] + 0.5 * X[s * cols + (i + 1) % cols]) * (X[s * cols + j] + 0.5 * X[s * cols + (j + 1) % cols]);
        var cpu = SpqrEncoder.Quantize(W, H, rows, cols, o, recipe);
        var gpu = GpuSpqrEncoder.Quantize(fx.Backend, W, H, rows, cols, o, recipe);
        int same = 0;
        for (int i = 0; i < cpu.Codes.Length; i++) same += cpu.Codes[i] == gpu.Codes[i] ? 1 : 0;
        double eCpu = LayerError.HWeighted(W, cpu.Dequantized, H, rows, cols), eGpu = LayerError.HWeighted(W, gpu.Dequantized, H, rows, cols);
        output.WriteLine($"{recipe}: codes equal {same}/{cpu.Codes.Length}, outliers {gpu.OutlierRows.Length} vs {cpu.OutlierRows.Length}, H-error {eGpu:G6} vs {eCpu:G6}");
        Assert.True(same >= 0.99 * cpu.Codes.Length, $"{recipe}: only {same} of {cpu.Codes.Length} codes equal the CPU encoder's");
        Assert.InRange(eGpu, eCpu * 0.995, eCpu * 1.005);
        Assert.InRange(gpu.OutlierRows.Length, cpu.OutlierRows.Length * 0.95 - 2, cpu.OutlierRows.Length * 1.05 + 2);
        Assert.Equal(cpu.ScaleCodes is null, gpu.ScaleCodes is null);
        Assert.Equal(cpu.ZeroCodes is null, gpu.ZeroCodes is null);
    }

    [Fact]
    public void Hessian_accumulates_like_the_cpu()
    {
        int cols = 50;
        var cpu = new HessianAccumulator(cols);
        using var gpu = new GpuHessianAccumulator(fx.Backend, cols);
        foreach (var (T, seed) in new[] { (37, 1), (5, 2), (64, 3) })
        {
            var X = TestData.Uniform(T * cols, seed);
            cpu.AddSequence(X, T);
            gpu.AddSequence(X, T);
        }
        var e = cpu.Hessian(); var a = gpu.Hessian();
        double worst = 0, scale = e.Max(Math.Abs);
        for (int i = 0; i < e.Length; i++) worst = Math.Max(worst, Math.Abs(a[i] - e[i]));
        Assert.True(worst <= 1e-6 * scale, $"device Hessian differs by {worst} (scale {scale})");
        using var empty = new GpuHessianAccumulator(fx.Backend, 3);
        Assert.Throws<InvalidOperationException>(() => empty.Hessian());
    }

    [Fact]
    public void Budget_search_and_wide_groups_are_refused_with_a_message()
    {
        var e = Assert.Throws<NotSupportedException>(() => GpuSpqrEncoder.Quantize(fx.Backend, new float[64], new double[64], 1, 8, new SpqrOptions { OutlierBudget = 0.01 }, "q_proj"));
        Assert.Contains("q_proj", e.Message);
        Assert.Contains("budget", e.Message);
    }
}

public class GpuQuantizePipelineTests(BackendFixture fx) : IClassFixture<BackendFixture>
{
    // the whole layer-by-layer pipeline on stories260K with the device encoder behind the LayerEncoder seam: the same
    // layers, bits and errors as with the CPU encoder
    [SharedFact]
    public void Stories260K_quantizes_the_same_with_the_device_encoder()
    {
        string f = Fixtures.Path("fixtures", "stories260K");
        using var calib = SafetensorsFile.Open(Path.Combine(f, "stories260K-calibration.safetensors"));
        var ids = calib.Get("calibration").ToInt32Array();
        int len = (int)calib.Entry("calibration").Shape[1];
        var windows = Enumerable.Range(0, 4).Select(i => ids.AsSpan(i * len, len).ToArray()).ToArray();
        string dir = Directory.CreateTempSubdirectory("spqr-gpu-q-").FullName;
        try
        {
            var o = new SpQR.Transformer.Quantization.QuantizeOptions { Spqr = new SpqrOptions { QqGroupSize = 4 }, Compressed = true };
            var cpu = SpQR.Transformer.Quantization.SequentialQuantizer.Run(Path.Combine(f, "hf"), windows, Path.Combine(dir, "cpu"), o);
            var gpu = SpQR.Transformer.Quantization.SequentialQuantizer.Run(Path.Combine(f, "hf"), windows, Path.Combine(dir, "gpu"),
                o with { Encoder = (W, H, rows, cols, so, layer) => GpuSpqrEncoder.Quantize(fx.Backend, W, H, rows, cols, so, layer) });
            Assert.Equal(cpu.Layers.Count, gpu.Layers.Count);
            for (int i = 0; i < cpu.Layers.Count; i++)
            {
                Assert.Equal(cpu.Layers[i].Name, gpu.Layers[i].Name);
                Assert.Equal(cpu.Layers[i].AverageBits, gpu.Layers[i].AverageBits, 3);
                Assert.InRange(gpu.Layers[i].HError, cpu.Layers[i].HError * 0.99, cpu.Layers[i].HError * 1.01);
            }
        }
        finally { Directory.Delete(dir, true); }
    }
}
