// Activations: SiLU, SwiGLU (LLaMA MLP), GELU in erf form (Falcon, torch's default) and tanh form.
// exp comes from Vector256/512.Exp (.NET's vectorised exp); erf from Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7).
// Scalar twins (double, exact erf): Reference/ReferenceKernels.Activation.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace SpQR.Tensors.Cpu;

public enum GeluForm { Erf, Tanh }

public static partial class CpuKernels
{
    // x (n,) -> dst (n,) = x * sigmoid(x)
    public static void Silu(ReadOnlySpan<float> x, Span<float> dst) => Silu(x, dst, Simd.Best);

    internal static unsafe void Silu(ReadOnlySpan<float> x, Span<float> dst, SimdPath path)
    {
        CheckDst(x.Length, dst.Length);
        int n = x.Length, i = 0;
        fixed (float* px = x) fixed (float* pd = dst)
        {
            if (path == SimdPath.V512) for (; i <= n - 16; i += 16) { var v = Vector512.Load(px + i); (v / (Vector512<float>.One + Vector512.Exp(-v))).Store(pd + i); }
            if (path >= SimdPath.V256) for (; i <= n - 8; i += 8) { var v = Vector256.Load(px + i); (v / (Vector256<float>.One + Vector256.Exp(-v))).Store(pd + i); }
            for (; i < n; i++) pd[i] = px[i] / (1f + MathF.Exp(-px[i]));
        }
    }

    // gate (n,), up (n,) -> dst (n,) = silu(gate) * up          (HF LlamaMLP: act_fn(gate_proj(x)) * up_proj(x))
    public static void SwiGlu(ReadOnlySpan<float> gate, ReadOnlySpan<float> up, Span<float> dst) => SwiGlu(gate, up, dst, Simd.Best);

    internal static unsafe void SwiGlu(ReadOnlySpan<float> gate, ReadOnlySpan<float> up, Span<float> dst, SimdPath path)
    {
        if (up.Length != gate.Length) throw new ArgumentException($"SwiGlu: gate has {gate.Length}, up has {up.Length}");
        CheckDst(gate.Length, dst.Length);
        int n = gate.Length, i = 0;
        fixed (float* pg = gate) fixed (float* pu = up) fixed (float* pd = dst)
        {
            if (path == SimdPath.V512) for (; i <= n - 16; i += 16) { var g = Vector512.Load(pg + i); (g / (Vector512<float>.One + Vector512.Exp(-g)) * Vector512.Load(pu + i)).Store(pd + i); }
            if (path >= SimdPath.V256) for (; i <= n - 8; i += 8) { var g = Vector256.Load(pg + i); (g / (Vector256<float>.One + Vector256.Exp(-g)) * Vector256.Load(pu + i)).Store(pd + i); }
            for (; i < n; i++) pd[i] = pg[i] / (1f + MathF.Exp(-pg[i])) * pu[i];
        }
    }

    // x (n,) -> dst (n,) = GELU(x), erf form 0.5·x·(1 + erf(x/√2)) or tanh form 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³)))
    public static void Gelu(ReadOnlySpan<float> x, Span<float> dst, GeluForm form = GeluForm.Erf) => Gelu(x, dst, form, Simd.Best);

    private const float InvSqrt2 = 0.70710678118654752f;
    private const float SqrtTwoOverPi = 0.79788456080286536f;

    internal static unsafe void Gelu(ReadOnlySpan<float> x, Span<float> dst, GeluForm form, SimdPath path)
    {
        CheckDst(x.Length, dst.Length);
        int n = x.Length, i = 0;
        fixed (float* px = x) fixed (float* pd = dst)
        {
            if (form == GeluForm.Erf)
            {
                if (path == SimdPath.V512) for (; i <= n - 16; i += 16) { var v = Vector512.Load(px + i); (Vector512.Create(0.5f) * v * (Vector512<float>.One + Erf(v * Vector512.Create(InvSqrt2)))).Store(pd + i); }
                if (path >= SimdPath.V256) for (; i <= n - 8; i += 8) { var v = Vector256.Load(px + i); (Vector256.Create(0.5f) * v * (Vector256<float>.One + Erf(v * Vector256.Create(InvSqrt2)))).Store(pd + i); }
                for (; i < n; i++) pd[i] = 0.5f * px[i] * (1f + Erf(px[i] * InvSqrt2));
            }
            else
            {
                if (path == SimdPath.V512) for (; i <= n - 16; i += 16) { var v = Vector512.Load(px + i); var u = Vector512.Create(SqrtTwoOverPi) * (v + Vector512.Create(0.044715f) * v * v * v); (Vector512.Create(0.5f) * v * (Vector512<float>.One + Tanh(u))).Store(pd + i); }
                if (path >= SimdPath.V256) for (; i <= n - 8; i += 8) { var v = Vector256.Load(px + i); var u = Vector256.Create(SqrtTwoOverPi) * (v + Vector256.Create(0.044715f) * v * v * v); (Vector256.Create(0.5f) * v * (Vector256<float>.One + Tanh(u))).Store(pd + i); }
                for (; i < n; i++) { float v = px[i]; pd[i] = 0.5f * v * (1f + MathF.Tanh(SqrtTwoOverPi * (v + 0.044715f * v * v * v))); }
            }
        }
    }

    // Abramowitz & Stegun 7.1.26: erf(z) = 1 - (a1 t + ... + a5 t^5) e^{-z²}, t = 1/(1 + p z), z ≥ 0; odd extension.
    private const float ErfP = 0.3275911f, ErfA1 = 0.254829592f, ErfA2 = -0.284496736f, ErfA3 = 1.421413741f, ErfA4 = -1.453152027f, ErfA5 = 1.061405429f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Erf(Vector256<float> x)
    {
        var z = Vector256.Abs(x);
        var t = Vector256<float>.One / (Vector256<float>.One + Vector256.Create(ErfP) * z);
        var poly = t * (Vector256.Create(ErfA1) + t * (Vector256.Create(ErfA2) + t * (Vector256.Create(ErfA3) + t * (Vector256.Create(ErfA4) + t * Vector256.Create(ErfA5)))));
        var r = Vector256<float>.One - poly * Vector256.Exp(-(z * z));
        return Vector256.CopySign(r, x);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Erf(Vector512<float> x)
    {
        var z = Vector512.Abs(x);
        var t = Vector512<float>.One / (Vector512<float>.One + Vector512.Create(ErfP) * z);
        var poly = t * (Vector512.Create(ErfA1) + t * (Vector512.Create(ErfA2) + t * (Vector512.Create(ErfA3) + t * (Vector512.Create(ErfA4) + t * Vector512.Create(ErfA5)))));
        var r = Vector512<float>.One - poly * Vector512.Exp(-(z * z));
        return Vector512.CopySign(r, x);
    }

    internal static float Erf(float x)
    {
        float z = MathF.Abs(x);
        float t = 1f / (1f + ErfP * z);
        float poly = t * (ErfA1 + t * (ErfA2 + t * (ErfA3 + t * (ErfA4 + t * ErfA5))));
        return MathF.CopySign(1f - poly * MathF.Exp(-z * z), x);
    }

    // tanh(u) = 1 - 2 / (e^{2u} + 1): saturates correctly at ±1 when e^{2u} overflows or underflows
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Tanh(Vector256<float> u) => Vector256<float>.One - Vector256.Create(2f) / (Vector256.Exp(u + u) + Vector256<float>.One);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Tanh(Vector512<float> u) => Vector512<float>.One - Vector512.Create(2f) / (Vector512.Exp(u + u) + Vector512<float>.One);

    private static void CheckDst(int n, int dstLength)
    {
        if (dstLength < n) throw new ArgumentException($"destination holds {dstLength} elements, need {n}");
    }
}
