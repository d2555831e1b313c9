// The stored form: packing reproduces the encoder's Ŵ bit for bit; the fused kernels match the scalar reference.
using FsCheck.Xunit;
using SpQR.Quant.Decode;
using SpQR.Quant.Encode;
using SpQR.Quant.Formats;
using SpQR.Tensors.Cpu;
using SpQR.TestUtil;
using Xunit;

namespace SpQR.Quant.Tests;

public class SpqrFormatTests
{
    private static SpqrLayerResult Encode(int seed, out int rows, out int cols)
    {
        var r = new Random(seed);
        rows = 1 + r.Next(40); cols = 1 + r.Next(90);
        var (W, H) = SpqrPropertyTests.RandomLayer(seed, rows, cols);
        bool qq = r.Next(3) != 0;
        return SpqrEncoder.Quantize(W, H, rows, cols, new SpqrOptions
        {
            WBits = 2 + r.Next(7), GroupSize = 16, QqScaleBits = qq ? 1 + r.Next(4) : null, QqZeroBits = qq ? 1 + r.Next(4) : null,
            QqGroupSize = 1 + r.Next(16), OutlierThreshold = r.Next(4) == 0 ? null : 0.05 + r.NextDouble(),
        });
    }

    [Property(MaxTest = 60)]
    public void Packed_layers_dequantize_to_the_encoder_output_bit_for_bit(int seed)
    {
        var q = Encode(seed, out _, out _);
        var layer = SpqrLayer.Pack(q);
        Assert.Equal(q.Dequantized, layer.Dequantize());
        Assert.Equal(q.OutlierRows.Length, layer.OutlierCount);
    }

    [Property(MaxTest = 60)]
    public void Fused_matvec_and_batched_matmul_match_the_reference_on_every_path(int seed)
    {
        var q = Encode(seed, out int rows, out int cols);
        var layer = SpqrLayer.Pack(q);
        var W = layer.Dequantize();
        int T = 1 + new Random(seed).Next(5);
        var X = TestData.Uniform(T * cols, seed, -2, 2);
        var e = new float[T * rows];
        for (int t = 0; t < T; t++) SpQR.Tensors.Cpu.Reference.ReferenceKernels.Gemv(W, X.AsSpan(t * cols, cols), e.AsSpan(t * rows, rows), rows, cols);
        foreach (var path in Simd.All)
        {
            var a = new float[T * rows];
            SpqrMatVec.MatMul(layer, X, a, T, path);
            for (int i = 0; i < a.Length; i++)
            {
                double mag = 0;
                int r = i % rows, t = i / rows;
                for (int c = 0; c < cols; c++) mag += Math.Abs(W[r * cols + c] * X[t * cols + c]);
                Assert.True(Math.Abs(a[i] - e[i]) <= 1e-6 * mag + 1e-7, $"wbits {layer.WBits} {path} [{t},{r}]: {a[i]} vs {e[i]} (scale {mag})");
            }
        }
    }

    [Property(MaxTest = 40)]
    public void Fused_kernels_equal_the_reference_exactly_on_integer_valued_layers_and_inputs(int seed)
    {
        var r = new Random(seed);
        int rows = 1 + r.Next(70), cols = 1 + r.Next(300), T = 1 + r.Next(4);
        var layer = SpqrLayer.Random(rows, cols, 2 + r.Next(7), 0.02, seed, integerValued: true, fp16Arithmetic: r.Next(2) == 0);
        var W = layer.Dequantize();
        var X = new float[T * cols];
        for (int i = 0; i < X.Length; i++) X[i] = r.Next(-8, 9);
        var e = new float[T * rows];
        for (int t = 0; t < T; t++) SpQR.Tensors.Cpu.Reference.ReferenceKernels.Gemv(W, X.AsSpan(t * cols, cols), e.AsSpan(t * rows, rows), rows, cols);
        foreach (var path in Simd.All)
            foreach (int n in new[] { 1, T })
            {
                var a = new float[n * rows];
                SpqrMatVec.MatMul(layer, X.AsSpan(0, n * cols), a, n, path);
                Assert.Equal(e.AsSpan(0, n * rows).ToArray(), a);
            }
    }

    [Property(MaxTest = 40)]
    public void Fp16_step_layers_decode_through_every_kernel_path_like_the_reference(int seed)
    {
        var r = new Random(seed);
        int rows = 1 + r.Next(70), cols = 1 + r.Next(300), T = 1 + r.Next(4);
        var layer = SpqrLayer.Random(rows, cols, r.Next(2) == 0 ? 3 : 2 + r.Next(7), 0.02, seed, fp16Arithmetic: true);
        var W = layer.Dequantize();
        foreach (float v in W) Assert.Equal(v, (float)(Half)v); // every decoded weight is an fp16 value
        var X = TestData.Uniform(T * cols, seed, -2, 2);
        var e = new float[T * rows];
        for (int t = 0; t < T; t++) SpQR.Tensors.Cpu.Reference.ReferenceKernels.Gemv(W, X.AsSpan(t * cols, cols), e.AsSpan(t * rows, rows), rows, cols);
        foreach (var path in Simd.All)
            foreach (int n in new[] { 1, T })
            {
                var a = new float[n * rows];
                SpqrMatVec.MatMul(layer, X.AsSpan(0, n * cols), a, n, path);
                for (int i = 0; i < a.Length; i++)
                {
                    double mag = 0;
                    for (int c = 0; c < cols; c++) mag += Math.Abs(W[i % rows * cols + c] * X[i / rows * cols + c]);
                    Assert.True(Math.Abs(a[i] - e[i]) <= 1e-6 * mag + 1e-7, $"wbits {layer.WBits} {path} T={n} [{i}]: {a[i]} vs {e[i]}");
                }
            }
    }

    [Property(MaxTest = 20)]
    public void Vector_fp16_rounding_equals_the_scalar_conversion(int seed)
    {
        var r = new Random(seed);
        var v = new float[4096];
        for (int i = 0; i < v.Length; i++)
            v[i] = (r.Next(2) == 0 ? -1 : 1) * MathF.ScaleB(1 + r.NextSingle(), r.Next(-26, 16)) * (i % 97 == 0 ? 0 : 1);
        v[0] = 65504; v[1] = MathF.ScaleB(1, -24) * 1.5f; v[2] = MathF.ScaleB(1, -14) - MathF.ScaleB(1, -26); v[3] = 1 + MathF.ScaleB(1, -11);
        for (int i = 0; i < v.Length; i += 8)
        {
            var h = SpqrLayer.H(System.Runtime.Intrinsics.Vector256.Create(v.AsSpan(i, 8)));
            for (int k = 0; k < 8; k++) Assert.True((float)(Half)v[i + k] == h[k], $"{v[i + k]:R}: {h[k]:R} vs {(float)(Half)v[i + k]:R}");
        }
    }
}

public class SpqrFormatFuzzTests
{
    private static readonly Lazy<byte[]> File_ = new(() =>
    {
        var (W, H) = SpqrPropertyTests.RandomLayer(11, 24, 40);
        var q = SpqrEncoder.Quantize(W, H, 24, 40, new SpqrOptions { QqGroupSize = 4 });
        string path = Path.GetTempFileName();
        var tensors = SpqrSerializer.ToTensors("layer", SpqrLayer.Pack(q));
        SpQR.Tensors.IO.SafetensorsWriter.Write(path, tensors);
        foreach (var (_, t) in tensors) t.Dispose();
        var bytes = File.ReadAllBytes(path);
        File.Delete(path);
        return bytes;
    });

    [Fact]
    public void A_written_layer_reads_back_identically()
    {
        using var s = new SpQR.Tensors.PinnedBytesStorage(File_.Value);
        using var f = SpQR.Tensors.IO.SafetensorsFile.Parse(s, "layer.safetensors");
        var l = SpqrSerializer.Read("layer", n => f.Contains(n) ? f.Get(n) : null, "layer.safetensors");
        var (W, H) = SpqrPropertyTests.RandomLayer(11, 24, 40);
        Assert.Equal(SpqrEncoder.Quantize(W, H, 24, 40, new SpqrOptions { QqGroupSize = 4 }).Dequantized, l.Dequantize());
    }

    [Fact]
    public void A_mapped_layer_is_used_in_place_unless_its_codes_end_the_file()
    {
        var expected = SpqrPropertyTests.RandomLayer(11, 24, 40);
        var q = SpqrEncoder.Quantize(expected.W, expected.H, 24, 40, new SpqrOptions { QqGroupSize = 4 });
        var x = TestData.Uniform(40, 7);
        var yCopy = new float[24];
        using (var s = new SpQR.Tensors.PinnedBytesStorage(File_.Value))
        using (var f = SpQR.Tensors.IO.SafetensorsFile.Parse(s, "layer.safetensors"))
        {
            var l = SpqrSerializer.Read("layer", n => f.Contains(n) ? f.Get(n) : null, "layer.safetensors");
            Assert.False(l.Codes.IsMapped);
            SpqrMatVec.MatVec(l, x, yCopy);
        }
        foreach (bool codesLast in new[] { false, true })
        {
            string path = Path.Combine(Path.GetTempPath(), $"spqr-inplace-{Environment.ProcessId}-{codesLast}.safetensors");
            var tensors = SpqrSerializer.ToTensors("layer", SpqrLayer.Pack(q));
            if (codesLast) tensors = [.. tensors.Where(t => !t.Name.EndsWith(".codes", StringComparison.Ordinal)), .. tensors.Where(t => t.Name.EndsWith(".codes", StringComparison.Ordinal))];
            SpQR.Tensors.IO.SafetensorsWriter.Write(path, tensors);
            foreach (var (_, t) in tensors) t.Dispose();
            try
            {
                using var f = SpQR.Tensors.IO.SafetensorsFile.Open(path);
                var l = SpqrSerializer.Read("layer", n => f.Contains(n) ? f.Get(n) : null, path);
                var y = new float[24];
                SpqrMatVec.MatVec(l, x, y);
                Assert.Equal(yCopy, y);
                Assert.Equal(q.Dequantized, l.Dequantize());
                if (!codesLast) Assert.True(l.Codes.IsMapped && l.StatCodes!.IsMapped, "codes and stat codes read in place from the mapped file");
            }
            finally { File.Delete(path); }
        }
    }

    [Property(MaxTest = 1000)]
    public void Mutated_compressed_layers_give_only_typed_errors(int seed)
    {
        using var s = new SpQR.Tensors.PinnedBytesStorage(Mutations.Mutate(File_.Value, seed));
        try
        {
            using var f = SpQR.Tensors.IO.SafetensorsFile.Parse(s, "layer.safetensors");
            var l = SpqrSerializer.Read("layer", n => f.Contains(n) ? f.Get(n) : null, "layer.safetensors");
            var y = new float[l.Rows];
            SpqrMatVec.MatVec(l, new float[l.Cols], y); // whatever passed validation must decode without faults
        }
        catch (SpQR.Tensors.IO.ModelFormatException) { }
    }
}
