// Numerically stable softmax (subtract the max, exponentiate, normalise) and argmax. Scalar twins in Reference/.
using System.Runtime.Intrinsics;

namespace SpQR.Tensors.Cpu;

public static partial class CpuKernels
{
    // x (n,) -> dst (n,) = exp(x - max x) / Σ exp(x - max x); dst may alias x
    public static void Softmax(ReadOnlySpan<float> x, Span<float> dst) => Softmax(x, dst, Simd.Best);

    internal static unsafe void Softmax(ReadOnlySpan<float> x, Span<float> dst, SimdPath path)
    {
        CheckDst(x.Length, dst.Length);
        int n = x.Length;
        if (n == 0) return;
        float max = Max(x, path);
        fixed (float* px = x) fixed (float* pd = dst)
        {
            int i = 0;
            float sum = 0;
            if (path == SimdPath.V512) { var m = Vector512.Create(max); var acc = Vector512<float>.Zero; for (; i <= n - 16; i += 16) { var e = Vector512.Exp(Vector512.Load(px + i) - m); e.Store(pd + i); acc += e; } sum += Vector512.Sum(acc); }
            if (path >= SimdPath.V256) { var m = Vector256.Create(max); var acc = Vector256<float>.Zero; for (; i <= n - 8; i += 8) { var e = Vector256.Exp(Vector256.Load(px + i) - m); e.Store(pd + i); acc += e; } sum += Vector256.Sum(acc); }
            for (; i < n; i++) { float e = MathF.Exp(px[i] - max); pd[i] = e; sum += e; }
            Scale(new ReadOnlySpan<float>(pd, n), 1f / sum, new Span<float>(pd, n), path);
        }
    }

    // x (n,) -> max x (NaN if any element is NaN; -inf for n = 0)
    internal static unsafe float Max(ReadOnlySpan<float> x, SimdPath path)
    {
        int n = x.Length, i = 0;
        float m = float.NegativeInfinity;
        fixed (float* p = x)
        {
            if (path == SimdPath.V512 && n >= 16) { var a = Vector512.Load(p); for (i = 16; i <= n - 16; i += 16) a = Vector512.Max(a, Vector512.Load(p + i)); for (int j = 0; j < 16; j++) m = MathF.Max(m, a[j]); }
            else if (path >= SimdPath.V256 && n >= 8) { var a = Vector256.Load(p); for (i = 8; i <= n - 8; i += 8) a = Vector256.Max(a, Vector256.Load(p + i)); for (int j = 0; j < 8; j++) m = MathF.Max(m, a[j]); }
            for (; i < n; i++) m = MathF.Max(m, p[i]);
        }
        return m;
    }

    // x (n,) -> index of the first maximum (the first NaN if any, like torch.argmax); -1 for n = 0
    public static int Argmax(ReadOnlySpan<float> x) => Argmax(x, Simd.Best);

    internal static int Argmax(ReadOnlySpan<float> x, SimdPath path)
    {
        if (x.Length == 0) return -1;
        float m = Max(x, path);
        if (float.IsNaN(m)) { for (int i = 0; i < x.Length; i++) if (float.IsNaN(x[i])) return i; }
        return x.IndexOf(m); // vectorised search for the first occurrence
    }
}
