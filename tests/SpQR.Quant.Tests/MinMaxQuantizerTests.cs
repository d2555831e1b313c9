// Round-trip error bounds of min-max quantization (FsCheck): every weight comes back within half a step.
using FsCheck;
using FsCheck.Xunit;
using SpQR.Quant.Encode;
using Xunit;

namespace SpQR.Quant.Tests;

public class MinMaxQuantizerTests
{
    [Property(MaxTest = 500)]
    public void Round_trip_error_is_at_most_half_a_step(NonEmptyArray<NormalFloat> raw, byte bitsRaw, bool roundZero)
    {
        int bits = 2 + bitsRaw % 7; // 2..8
        var w = raw.Get.Select(v => (float)Math.Clamp(v.Get, -1e4, 1e4)).ToArray();
        if (w.Max() == w.Min()) w = [.. w, w[0] + 1]; // constant groups widen to [-1, 1] by definition (tested below)
        var codes = new byte[w.Length]; var deq = new float[w.Length];
        var s = MinMaxQuantizer.QuantizeGroup(w, bits, codes, deq, roundZero);
        Assert.True(s.Scale > 0);
        // with a rounded zero the grid shifts by up to half a step, so the end points may clip by that much more
        double bound = s.Scale * (roundZero ? 1.0 : 0.5) * (1 + 1e-5) + 1e-6 * w.Max(Math.Abs);
        for (int i = 0; i < w.Length; i++)
        {
            Assert.InRange(codes[i], 0, (1 << bits) - 1);
            Assert.True(Math.Abs(deq[i] - w[i]) <= bound, $"w={w[i]} ŵ={deq[i]} scale={s.Scale} zero={s.Zero} bits={bits}");
        }
    }

    [Fact]
    public void Extremes_map_to_the_end_codes_and_constant_groups_widen_to_plus_minus_one()
    {
        var w = new[] { -2f, 0.5f, 6f };
        var codes = new byte[3]; var deq = new float[3];
        var s = MinMaxQuantizer.QuantizeGroup(w, 3, codes, deq);
        Assert.Equal(0, codes[0]); Assert.Equal(7, codes[2]);
        Assert.Equal(8f / 7, s.Scale, 6);
        var c = MinMaxQuantizer.Fit([3f, 3f, 3f], 3);
        Assert.Equal(2f / 7, c.Scale, 6);
        Assert.Equal(3.5f, c.Zero, 5);
        Assert.Throws<ArgumentException>(() => MinMaxQuantizer.Fit([1f, float.NaN], 3));
    }
}
