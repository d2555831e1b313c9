using SpQR.Tensors;
using Xunit;

namespace SpQR.Tensors.Tests;

public class TensorTests
{
    [Fact]
    public unsafe void Allocations_are_64_byte_aligned_and_zeroed()
    {
        for (int n = 1; n < 100; n += 7)
        {
            using var t = Tensor.Zeros(DType.F32, n, 3);
            Assert.Equal(0, (long)t.Pointer % 64);
            Assert.All(t.AsSpan<float>().ToArray(), v => Assert.Equal(0f, v));
        }
    }

    [Fact]
    public void Views_are_zero_copy_and_checked()
    {
        using var t = Tensor.FromArray(Enumerable.Range(0, 24).Select(i => (float)i).ToArray(), 4, 6);
        var row = t.Row(2);
        Assert.Equal(new Shape(6), row.Shape);
        Assert.Equal(12f, row.AsReadOnlySpan<float>()[0]);
        row.AsSpan<float>()[0] = -1;
        Assert.Equal(-1f, t.AsReadOnlySpan<float>()[12]);
        var s = t.Slice(1, 2);
        Assert.Equal(new Shape(2, 6), s.Shape);
        Assert.Equal(6f, s.AsReadOnlySpan<float>()[0]);
        Assert.Throws<ArgumentOutOfRangeException>(() => t.Slice(3, 2));
        Assert.Throws<InvalidOperationException>(() => t.AsSpan<Half>());
        Assert.Throws<ArgumentException>(() => t.Reshape(5, 5));
        Assert.Equal(new Shape(3, 8), t.Reshape(3, 8).Shape);
    }

    [Fact]
    public void Packed_types_count_bits_and_overflow_is_caught()
    {
        Assert.Equal(3L * 16 / 8, DType.U3.ByteCount(16));
        Assert.Equal(1, DType.U3.ByteCount(1));
        Assert.Equal(3, DType.U3.Bits());
        using var p = Tensor.Zeros(DType.U3, 16);
        Assert.Equal(6, p.AsReadOnlySpan<byte>().Length);
        Assert.Throws<OverflowException>(() => new Shape(long.MaxValue / 2, 4));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Shape(3, -1));
    }

    [Fact]
    public void ToF32_widens_half_types()
    {
        using var h = Tensor.Zeros(DType.F16, 3);
        h.AsSpan<Half>()[1] = (Half)1.5f;
        using var f = h.ToF32();
        Assert.Equal(1.5f, f.AsReadOnlySpan<float>()[1]);
        using var b = Tensor.Zeros(DType.BF16, 2);
        b.AsSpan<BFloat16Bits>()[0] = BFloat16Bits.FromSingle(-2.5f);
        using var bf = b.ToF32();
        Assert.Equal(-2.5f, bf.AsReadOnlySpan<float>()[0]);
    }
}

public class FiniteCheckTests
{
    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.F16)]
    [InlineData(DType.BF16)]
    public void FindNonFinite_reports_the_first_nan_or_inf(DType dt)
    {
        foreach (int n in new[] { 1, 7, 16, 33, 300 })
            foreach (int bad in new[] { -1, 0, n / 2, n - 1 })
                foreach (float v in new[] { float.NaN, float.PositiveInfinity, float.NegativeInfinity })
                {
                    using var f = Tensor.Zeros(DType.F32, n);
                    var s = f.AsSpan<float>();
                    for (int i = 0; i < n; i++) s[i] = i * 0.5f - 3;
                    if (bad >= 0) s[bad] = v;
                    using var t = Convert(f, dt);
                    Assert.Equal(bad, SpQR.Tensors.Cpu.CpuKernels.FindNonFinite(t));
                }
    }

    private static Tensor Convert(Tensor f, DType dt)
    {
        if (dt == DType.F32) { var c = Tensor.Zeros(DType.F32, f.Shape[0]); f.AsReadOnlySpan<float>().CopyTo(c.AsSpan<float>()); return c; }
        var t = Tensor.Zeros(dt, f.Shape[0]);
        if (dt == DType.F16) SpQR.Tensors.Cpu.CpuKernels.F32ToF16(f.AsReadOnlySpan<float>(), t.AsSpan<ushort>());
        else SpQR.Tensors.Cpu.CpuKernels.F32ToBF16(f.AsReadOnlySpan<float>(), t.AsSpan<ushort>());
        return t;
    }
}
