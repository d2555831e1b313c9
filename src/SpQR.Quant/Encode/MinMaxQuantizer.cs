// Asymmetric min-max quantization of a group of weights to b-bit codes, as the SpQR reference fits each group:
//   scale = (max - min) / (2^b - 1),  zero = -min / scale (kept fractional unless round_zero),
//   q = clamp(round(w / scale + zero), 0, 2^b - 1),  ŵ = scale · (q - zero).
// max == min is widened to [-1, +1] like the reference, so a constant group still has a usable scale.
// It is the building block of RTN, GPTQ and SpQR (first-order stats) and of the 3-bit second-order stats.
namespace SpQR.Quant.Encode;

public readonly record struct QuantStats(float Scale, float Zero)
{
    public int MaxQ(int bits) => (1 << bits) - 1;
}

public static class MinMaxQuantizer
{
    /// <summary>Fits (scale, zero) to the values of one group.</summary>
    public static QuantStats Fit(ReadOnlySpan<float> w, int bits, bool roundZero = false)
    {
        if (bits is < 1 or > 16) throw new ArgumentOutOfRangeException(nameof(bits), bits, "bits must be 1..16");
        if (w.IsEmpty) throw new ArgumentException("cannot fit an empty group", nameof(w));
        float min = float.PositiveInfinity, max = float.NegativeInfinity;
        foreach (float v in w)
        {
            if (!float.IsFinite(v)) throw new ArgumentException($"group holds a non-finite weight ({v}); quantization needs finite weights", nameof(w));
            min = MathF.Min(min, v); max = MathF.Max(max, v);
        }
        if (max == min) { min = -1; max = 1; }
        int maxq = (1 << bits) - 1;
        float scale = (max - min) / maxq;
        float zero = -min / scale;
        if (roundZero) zero = MathF.Round(zero, MidpointRounding.ToEven);
        return new QuantStats(scale, zero);
    }

    /// <summary>q = clamp(round(w / scale + zero), 0, 2^b - 1), rounding half to even like torch.round.</summary>
    public static int Quantize(float w, QuantStats s, int bits)
    {
        float q = MathF.Round(w / s.Scale + s.Zero, MidpointRounding.ToEven);
        return (int)Math.Clamp(q, 0, (1 << bits) - 1);
    }

    /// <summary>ŵ = scale · (q - zero).</summary>
    public static float Dequantize(int q, QuantStats s) => s.Scale * (q - s.Zero);

    /// <summary>Round-to-nearest of a whole group: codes (n,) and the dequantized values (n,).</summary>
    public static QuantStats QuantizeGroup(ReadOnlySpan<float> w, int bits, Span<byte> codes, Span<float> dequantized, bool roundZero = false)
    {
        if (codes.Length < w.Length || dequantized.Length < w.Length) throw new ArgumentException("destination spans are shorter than the group");
        var s = Fit(w, bits, roundZero);
        for (int i = 0; i < w.Length; i++)
        {
            int q = Quantize(w[i], s, bits);
            codes[i] = (byte)q;
            dequantized[i] = Dequantize(q, s);
        }
        return s;
    }
}
