// Rotary position embedding applied in place to one token's heads, in both layouts:
//   HalfSplit   (Hugging Face rotate_half): pairs (i, i + rotDim/2) within each head
//   Interleaved (llama2.c / Meta):          pairs (2i, 2i + 1) within each head
// cos/sin hold the rotDim/2 angles of this position (see RopeFrequencies); dimensions past rotDim are left alone.
using System.Runtime.Intrinsics;

namespace SpQR.Tensors.Cpu;

public enum RopeLayout { HalfSplit, Interleaved }

public static partial class CpuKernels
{
    // x (nHeads, headDim) rotated in place; cos, sin (rotDim/2,)
    public static void Rope(Span<float> x, int nHeads, int headDim, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin, RopeLayout layout)
        => Rope(x, nHeads, headDim, cos, sin, layout, Simd.Best);

    internal static unsafe void Rope(Span<float> x, int nHeads, int headDim, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin, RopeLayout layout, SimdPath path)
    {
        int half = cos.Length;
        if (sin.Length != half || 2 * half > headDim || x.Length < (long)nHeads * headDim)
            throw new ArgumentException($"Rope: x {x.Length} for {nHeads} heads of {headDim}, cos {cos.Length}, sin {sin.Length}");
        fixed (float* px = x) fixed (float* pc = cos) fixed (float* ps = sin)
        {
            for (int h = 0; h < nHeads; h++)
            {
                float* q = px + h * headDim;
                if (layout == RopeLayout.HalfSplit)
                {
                    int i = 0;
                    if (path == SimdPath.V512) for (; i <= half - 16; i += 16)
                    {
                        var a = Vector512.Load(q + i); var b = Vector512.Load(q + half + i); var c = Vector512.Load(pc + i); var s = Vector512.Load(ps + i);
                        (a * c - b * s).Store(q + i); (b * c + a * s).Store(q + half + i);
                    }
                    if (path >= SimdPath.V256) for (; i <= half - 8; i += 8)
                    {
                        var a = Vector256.Load(q + i); var b = Vector256.Load(q + half + i); var c = Vector256.Load(pc + i); var s = Vector256.Load(ps + i);
                        (a * c - b * s).Store(q + i); (b * c + a * s).Store(q + half + i);
                    }
                    for (; i < half; i++) { float a = q[i], b = q[i + half]; q[i] = a * pc[i] - b * ps[i]; q[i + half] = b * pc[i] + a * ps[i]; }
                }
                else
                {
                    // pairs are adjacent: no gain from shuffles at these head sizes; the loop vectorises poorly either way
                    for (int i = 0; i < half; i++) { float a = q[2 * i], b = q[2 * i + 1]; q[2 * i] = a * pc[i] - b * ps[i]; q[2 * i + 1] = a * ps[i] + b * pc[i]; }
                }
            }
        }
    }
}

/// <summary>cos/sin tables of rotary angles θ(pos, i) = pos · base^(-2i/rotDim), float32 like Hugging Face.</summary>
public sealed class RopeFrequencies
{
    public int RotaryDim { get; }
    public int MaxPositions { get; }
    private readonly float[] _cos, _sin; // (MaxPositions, RotaryDim/2)

    /// <param name="invFreq">Optional inverse frequencies (rotDim/2,), e.g. after llama3/linear scaling; default base^(-2i/rotDim).</param>
    public RopeFrequencies(int rotaryDim, int maxPositions, double theta, float[]? invFreq = null)
    {
        if (rotaryDim <= 0 || rotaryDim % 2 != 0) throw new ArgumentOutOfRangeException(nameof(rotaryDim), rotaryDim, "rotary dimension must be positive and even");
        RotaryDim = rotaryDim; MaxPositions = maxPositions;
        int half = rotaryDim / 2;
        invFreq ??= DefaultInvFreq(rotaryDim, theta);
        if (invFreq.Length != half) throw new ArgumentException($"invFreq has {invFreq.Length} entries, expected {half}");
        _cos = new float[(long)maxPositions * half]; _sin = new float[(long)maxPositions * half];
        for (int p = 0; p < maxPositions; p++)
            for (int i = 0; i < half; i++)
            {
                float angle = (float)p * invFreq[i]; // float32 product, as torch computes t ⊗ inv_freq
                _cos[p * half + i] = (float)Math.Cos(angle);
                _sin[p * half + i] = (float)Math.Sin(angle);
            }
    }

    // HF: inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim)), in float32
    public static float[] DefaultInvFreq(int rotaryDim, double theta)
    {
        var f = new float[rotaryDim / 2];
        for (int i = 0; i < f.Length; i++) f[i] = 1f / MathF.Pow((float)theta, (2 * i) / (float)rotaryDim);
        return f;
    }

    public ReadOnlySpan<float> Cos(int pos) => _cos.AsSpan(CheckPos(pos) * (RotaryDim / 2), RotaryDim / 2);
    public ReadOnlySpan<float> Sin(int pos) => _sin.AsSpan(CheckPos(pos) * (RotaryDim / 2), RotaryDim / 2);

    private int CheckPos(int pos) => (uint)pos < (uint)MaxPositions ? pos
        : throw new ArgumentOutOfRangeException(nameof(pos), pos, $"position past the rotary table of {MaxPositions}");
}
