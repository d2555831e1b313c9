// Every CPU kernel on every SIMD path against its scalar double-precision reference, all lengths 0..300.
using SpQR.Tensors.Cpu;
using SpQR.Tensors.Cpu.Reference;
using SpQR.TestUtil;
using Xunit;

namespace SpQR.Tensors.Tests;

public class KernelTests
{
    public static TheoryData<SimdPath> Paths => new(Simd.All);
    private const int MaxLen = 300;

    [Theory, MemberData(nameof(Paths))]
    public void Dot_all_lengths(SimdPath path)
    {
        for (int n = 0; n <= MaxLen; n++)
        {
            var x = TestData.Uniform(n, n); var y = TestData.Uniform(n, n + 1000);
            double exact = ReferenceKernels.Dot(x, y), sumAbs = 0;
            for (int i = 0; i < n; i++) sumAbs += Math.Abs((double)x[i] * y[i]);
            float got = CpuKernels.Dot(x, y, path);
            Assert.True(Math.Abs(got - exact) <= Tolerances.Reduction(n, sumAbs), $"n={n} path={path}: {got} vs {exact}");
            // integer inputs: exact on every path
            var xi = TestData.Integers(n, n); var yi = TestData.Integers(n, n + 7);
            Assert.Equal((float)ReferenceKernels.Dot(xi, yi), CpuKernels.Dot(xi, yi, path));
        }
    }

    [Theory, MemberData(nameof(Paths))]
    public void Axpy_all_lengths(SimdPath path)
    {
        for (int n = 0; n <= MaxLen; n++)
        {
            var x = TestData.Uniform(n, n); var y = TestData.Uniform(n, n + 1); var yr = (float[])y.Clone();
            CpuKernels.Axpy(0.75f, x, y, path);
            ReferenceKernels.Axpy(0.75f, x, yr);
            NumericAssert.Close(yr, y, 2 * Tolerances.U32, 1e-7, $"axpy n={n}"); // one FMA vs double then round
        }
    }

    [Theory, MemberData(nameof(Paths))]
    public void Half_conversions_are_exact_for_every_bit_pattern(SimdPath path)
    {
        var all = new ushort[65536 + 5]; // + tail so the scalar remainder runs too
        for (int i = 0; i < all.Length; i++) all[i] = (ushort)i;
        var f = new float[all.Length]; var b = new float[all.Length];
        CpuKernels.F16ToF32(all, f, path);
        CpuKernels.BF16ToF32(all, b, path);
        for (int i = 0; i < all.Length; i++)
        {
            float ef = ReferenceKernels.F16ToF32(all[i]), eb = ReferenceKernels.BF16ToF32(all[i]);
            Assert.True(BitConverter.SingleToInt32Bits(ef) == BitConverter.SingleToInt32Bits(f[i]) || (float.IsNaN(ef) && float.IsNaN(f[i])), $"F16 0x{all[i]:X4}: {f[i]} vs {ef}");
            Assert.True(BitConverter.SingleToInt32Bits(eb) == BitConverter.SingleToInt32Bits(b[i]), $"BF16 0x{all[i]:X4}");
        }
    }

    [Theory, MemberData(nameof(Paths))]
    public void F32_to_BF16_rounds_to_nearest_even(SimdPath path)
    {
        var r = new Random(5);
        var x = new float[1003];
        for (int i = 0; i < x.Length; i++) x[i] = BitConverter.Int32BitsToSingle(r.Next()) * (r.Next(2) == 0 ? 1 : -1);
        x[0] = float.NaN; x[1] = float.PositiveInfinity; x[2] = -0f; x[3] = 1.00390625f /* tie → even */; x[4] = 3.4028235e38f;
        var got = new ushort[x.Length];
        CpuKernels.F32ToBF16(x, got, path);
        for (int i = 0; i < x.Length; i++)
        {
            ushort e = ReferenceKernels.F32ToBF16(x[i]);
            if (float.IsNaN(x[i])) Assert.True(float.IsNaN(ReferenceKernels.BF16ToF32(got[i])));
            else Assert.True(e == got[i], $"{x[i]:R}: 0x{got[i]:X4} vs 0x{e:X4}");
        }
        var halves = new ushort[x.Length];
        CpuKernels.F32ToF16(x, halves);
        for (int i = 5; i < x.Length; i++) Assert.Equal(ReferenceKernels.F32ToF16(x[i]), halves[i]);
    }

    [Theory, MemberData(nameof(Paths))]
    public void Norms_all_lengths(SimdPath path)
    {
        for (int n = 1; n <= MaxLen; n++)
        {
            var x = TestData.Uniform(n, n, -3, 3); var w = TestData.Uniform(n, n + 1); var bias = TestData.Uniform(n, n + 2);
            var e = new float[n]; var a = new float[n];
            ReferenceKernels.RmsNorm(x, w, 1e-5f, e); CpuKernels.RmsNorm(x, w, 1e-5f, a, path);
            NumericAssert.Close(e, a, Tolerances.Norm(n), 1e-7, $"rmsnorm n={n} {path}");
            ReferenceKernels.LayerNorm(x, w, bias, 1e-5f, e); CpuKernels.LayerNorm(x, w, bias, 1e-5f, a, path);
            NumericAssert.Close(e, a, Tolerances.Norm(n), 4 * Tolerances.Norm(n), $"layernorm n={n} {path}");
            ReferenceKernels.LayerNorm(x, w, [], 1e-5f, e); CpuKernels.LayerNorm(x, w, [], 1e-5f, a, path);
            NumericAssert.Close(e, a, Tolerances.Norm(n), 4 * Tolerances.Norm(n), $"layernorm (no bias) n={n} {path}");
        }
    }

    [Theory, MemberData(nameof(Paths))]
    public void Activations_all_lengths(SimdPath path)
    {
        for (int n = 0; n <= MaxLen; n++)
        {
            var x = TestData.Uniform(n, n, -10, 10); var u = TestData.Uniform(n, n + 3, -2, 2);
            var e = new float[n]; var a = new float[n];
            ReferenceKernels.Silu(x, e); CpuKernels.Silu(x, a, path);
            NumericAssert.Close(e, a, Tolerances.ElementwiseRel, Tolerances.ElementwiseAbs, $"silu n={n} {path}");
            ReferenceKernels.SwiGlu(x, u, e); CpuKernels.SwiGlu(x, u, a, path);
            NumericAssert.Close(e, a, Tolerances.ElementwiseRel, Tolerances.ElementwiseAbs, $"swiglu n={n} {path}");
            ReferenceKernels.Gelu(x, e, GeluForm.Erf); CpuKernels.Gelu(x, a, GeluForm.Erf, path);
            NumericAssert.Close(e, a, Tolerances.ElementwiseRel, Tolerances.GeluErfAbs, $"gelu-erf n={n} {path}");
            ReferenceKernels.Gelu(x, e, GeluForm.Tanh); CpuKernels.Gelu(x, a, GeluForm.Tanh, path);
            NumericAssert.Close(e, a, Tolerances.ElementwiseRel, Tolerances.ElementwiseAbs, $"gelu-tanh n={n} {path}");
        }
    }

    [Fact]
    public void Reference_erf_matches_known_values()
    {
        // erf values from Abramowitz & Stegun table 7.1 / high-precision tables
        Assert.Equal(0.0, ReferenceKernels.Erf(0), 15);
        Assert.Equal(0.5204998778130465, ReferenceKernels.Erf(0.5), 14);
        Assert.Equal(0.8427007929497149, ReferenceKernels.Erf(1), 14);
        Assert.Equal(0.9953222650189527, ReferenceKernels.Erf(2), 14);
        Assert.Equal(0.9999779095030014, ReferenceKernels.Erf(3), 14);
        Assert.Equal(0.9999999845827421, ReferenceKernels.Erf(4), 14);
        Assert.Equal(-0.8427007929497149, ReferenceKernels.Erf(-1), 14);
    }

    [Theory, MemberData(nameof(Paths))]
    public void Softmax_argmax_elementwise_all_lengths(SimdPath path)
    {
        for (int n = 0; n <= MaxLen; n++)
        {
            var x = TestData.Uniform(n, n, -30, 30); var y = TestData.Uniform(n, n + 9);
            var e = new float[n]; var a = new float[n];
            ReferenceKernels.Softmax(x, e); CpuKernels.Softmax(x, a, path);
            NumericAssert.Close(e, a, Tolerances.ElementwiseRel, 1e-9, $"softmax n={n} {path}");
            Assert.Equal(ReferenceKernels.Argmax(x), CpuKernels.Argmax(x, path));
            ReferenceKernels.Add(x, y, e); CpuKernels.Add(x, y, a, path); NumericAssert.Equal(e, a, $"add n={n}");
            ReferenceKernels.Mul(x, y, e); CpuKernels.Mul(x, y, a, path); NumericAssert.Equal(e, a, $"mul n={n}");
            ReferenceKernels.Scale(x, 0.3f, e); CpuKernels.Scale(x, 0.3f, a, path); NumericAssert.Equal(e, a, $"scale n={n}");
        }
    }

    [Fact]
    public void Softmax_is_stable_for_huge_inputs_and_argmax_takes_first_max_and_nan()
    {
        var x = new float[] { 1000f, 1000f, -1000f, 999f };
        var a = new float[4];
        CpuKernels.Softmax(x, a);
        Assert.All(a, v => Assert.False(float.IsNaN(v)));
        Assert.Equal(a[0], a[1]);
        var ties = new float[40]; ties[7] = 5; ties[30] = 5;
        foreach (var p in Simd.All) Assert.Equal(7, CpuKernels.Argmax(ties, p));
        ties[20] = float.NaN;
        foreach (var p in Simd.All) Assert.Equal(20, CpuKernels.Argmax(ties, p));
        Assert.Equal(-1, CpuKernels.Argmax([]));
    }

    [Theory, MemberData(nameof(Paths))]
    public void Rope_both_layouts(SimdPath path)
    {
        foreach (int headDim in new[] { 2, 8, 16, 34, 64, 128 })
            foreach (var layout in new[] { RopeLayout.HalfSplit, RopeLayout.Interleaved })
            {
                int heads = 3;
                var table = new RopeFrequencies(headDim, 40, 10000);
                for (int pos = 0; pos < 40; pos += 13)
                {
                    var e = TestData.Uniform(heads * headDim, pos + headDim); var a = (float[])e.Clone();
                    ReferenceKernels.Rope(e, heads, headDim, table.Cos(pos), table.Sin(pos), layout);
                    CpuKernels.Rope(a, heads, headDim, table.Cos(pos), table.Sin(pos), layout, path);
                    NumericAssert.Close(e, a, 4 * Tolerances.U32, 1e-7, $"rope {layout} hd={headDim} pos={pos}");
                }
            }
    }

    [Fact]
    public void Rope_layouts_agree_under_the_HF_permutation()
    {
        // HF's checkpoint converter permutes q/k rows so half-split rotation of the permuted vector equals interleaved
        // rotation of the original: perm = view(heads, hd/2, 2).transpose(1, 2).
        int hd = 16, heads = 2;
        var table = new RopeFrequencies(hd, 8, 10000);
        var x = TestData.Uniform(heads * hd, 1);
        var permuted = new float[x.Length];
        for (int h = 0; h < heads; h++) for (int i = 0; i < hd / 2; i++) for (int j = 0; j < 2; j++) permuted[h * hd + j * hd / 2 + i] = x[h * hd + 2 * i + j];
        CpuKernels.Rope(x, heads, hd, table.Cos(5), table.Sin(5), RopeLayout.Interleaved);
        CpuKernels.Rope(permuted, heads, hd, table.Cos(5), table.Sin(5), RopeLayout.HalfSplit);
        for (int h = 0; h < heads; h++) for (int i = 0; i < hd / 2; i++) for (int j = 0; j < 2; j++)
            Assert.Equal(x[h * hd + 2 * i + j], permuted[h * hd + j * hd / 2 + i], 6);
    }

    [Fact]
    public void Kernels_validate_lengths()
    {
        Assert.Throws<ArgumentException>(() => CpuKernels.Dot(new float[3], new float[4]));
        Assert.Throws<ArgumentException>(() => CpuKernels.RmsNorm(new float[3], new float[4], 1e-5f, new float[3]));
        Assert.Throws<ArgumentException>(() => CpuKernels.Gemv(new float[5], new float[2], new float[2], 2, 3));
        Assert.Throws<ArgumentException>(() => CpuKernels.Gemm(new float[6], false, 3, new float[6], false, 2, new float[3], 2, 2, 2, 3));
    }
}
