// RMSNorm (LLaMA) and LayerNorm with optional bias (Falcon), one vector at a time, float32 like PyTorch's eager
// float32 path. Reductions use the vector Dot/Sum of the chosen path. Scalar twins: Reference/ReferenceKernels.Norm.
using System.Runtime.Intrinsics;

namespace SpQR.Tensors.Cpu;

public static partial class CpuKernels
{
    // x (n,), weight (n,) -> dst (n,) = weight * x / sqrt(mean(x²) + eps)      (HF LlamaRMSNorm)
    public static void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, Span<float> dst) => RmsNorm(x, weight, eps, dst, Simd.Best);

    internal static unsafe void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, Span<float> dst, SimdPath path)
    {
        int n = x.Length;
        if (weight.Length != n || dst.Length < n) throw new ArgumentException($"RmsNorm: x has {n}, weight {weight.Length}, dst {dst.Length}");
        if (n == 0) return;
        float ss = Dot(x, x, path);
        float inv = 1f / MathF.Sqrt(ss / n + eps);
        fixed (float* px = x) fixed (float* pw = weight) fixed (float* pd = dst)
        {
            int i = 0;
            if (path == SimdPath.V512) { var s = Vector512.Create(inv); for (; i <= n - 16; i += 16) (Vector512.Load(pw + i) * (Vector512.Load(px + i) * s)).Store(pd + i); }
            if (path >= SimdPath.V256) { var s = Vector256.Create(inv); for (; i <= n - 8; i += 8) (Vector256.Load(pw + i) * (Vector256.Load(px + i) * s)).Store(pd + i); }
            for (; i < n; i++) pd[i] = pw[i] * (px[i] * inv);
        }
    }

    // x (n,), weight (n,), bias (n,) or empty -> dst (n,) = (x - mean) / sqrt(var + eps) * weight + bias   (torch LayerNorm)
    public static void LayerNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, float eps, Span<float> dst)
        => LayerNorm(x, weight, bias, eps, dst, Simd.Best);

    internal static unsafe void LayerNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, float eps, Span<float> dst, SimdPath path)
    {
        int n = x.Length;
        if (weight.Length != n || (bias.Length != 0 && bias.Length != n) || dst.Length < n)
            throw new ArgumentException($"LayerNorm: x has {n}, weight {weight.Length}, bias {bias.Length}, dst {dst.Length}");
        if (n == 0) return;
        float mean = Sum(x, path) / n;
        fixed (float* px = x) fixed (float* pw = weight) fixed (float* pb = bias) fixed (float* pd = dst)
        {
            // two-pass variance: sum of squared deviations, written to dst first and reused
            int i = 0;
            float var = 0;
            if (path == SimdPath.V512) { var m = Vector512.Create(mean); var acc = Vector512<float>.Zero; for (; i <= n - 16; i += 16) { var d = Vector512.Load(px + i) - m; acc = Vector512.FusedMultiplyAdd(d, d, acc); } var += Vector512.Sum(acc); }
            if (path >= SimdPath.V256) { var m = Vector256.Create(mean); var acc = Vector256<float>.Zero; for (; i <= n - 8; i += 8) { var d = Vector256.Load(px + i) - m; acc = Vector256.FusedMultiplyAdd(d, d, acc); } var += Vector256.Sum(acc); }
            for (; i < n; i++) { float d = px[i] - mean; var = MathF.FusedMultiplyAdd(d, d, var); }
            float inv = 1f / MathF.Sqrt(var / n + eps);
            bool hasBias = bias.Length != 0;
            i = 0;
            if (path == SimdPath.V512) { var m = Vector512.Create(mean); var s = Vector512.Create(inv); for (; i <= n - 16; i += 16) { var v = (Vector512.Load(px + i) - m) * s * Vector512.Load(pw + i); if (hasBias) v += Vector512.Load(pb + i); v.Store(pd + i); } }
            if (path >= SimdPath.V256) { var m = Vector256.Create(mean); var s = Vector256.Create(inv); for (; i <= n - 8; i += 8) { var v = (Vector256.Load(px + i) - m) * s * Vector256.Load(pw + i); if (hasBias) v += Vector256.Load(pb + i); v.Store(pd + i); } }
            for (; i < n; i++) { float v = (px[i] - mean) * inv * pw[i]; pd[i] = hasBias ? v + pb[i] : v; }
        }
    }

    // x (n,) -> Σ x
    public static float Sum(ReadOnlySpan<float> x) => Sum(x, Simd.Best);

    internal static unsafe float Sum(ReadOnlySpan<float> x, SimdPath path)
    {
        int n = x.Length, i = 0;
        float s = 0;
        fixed (float* p = x)
        {
            if (path == SimdPath.V512 && n >= 16) { var a = Vector512<float>.Zero; for (; i <= n - 16; i += 16) a += Vector512.Load(p + i); s = Vector512.Sum(a); }
            else if (path >= SimdPath.V256 && n >= 8) { var a = Vector256<float>.Zero; for (; i <= n - 8; i += 8) a += Vector256.Load(p + i); s = Vector256.Sum(a); }
            for (; i < n; i++) s += p[i];
        }
        return s;
    }
}
