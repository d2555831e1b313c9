// Elementwise add, multiply and scale (residual connections, gating, attention scaling).
using System.Runtime.Intrinsics;

namespace SpQR.Tensors.Cpu;

public static partial class CpuKernels
{
    // a (n,) + b (n,) -> dst (n,); dst may alias a or b
    public static void Add(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> dst) => Binary(a, b, dst, 0, Simd.Best);
    // a (n,) * b (n,) -> dst (n,)
    public static void Mul(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> dst) => Binary(a, b, dst, 1, Simd.Best);

    internal static void Add(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> dst, SimdPath path) => Binary(a, b, dst, 0, path);
    internal static void Mul(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> dst, SimdPath path) => Binary(a, b, dst, 1, path);

    private static unsafe void Binary(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> dst, int op, SimdPath path)
    {
        if (a.Length != b.Length) throw new ArgumentException($"length mismatch: a has {a.Length}, b has {b.Length}");
        CheckDst(a.Length, dst.Length);
        int n = a.Length, i = 0;
        fixed (float* pa = a) fixed (float* pb = b) fixed (float* pd = dst)
        {
            if (path == SimdPath.V512) for (; i <= n - 16; i += 16) { var x = Vector512.Load(pa + i); var y = Vector512.Load(pb + i); (op == 0 ? x + y : x * y).Store(pd + i); }
            if (path >= SimdPath.V256) for (; i <= n - 8; i += 8) { var x = Vector256.Load(pa + i); var y = Vector256.Load(pb + i); (op == 0 ? x + y : x * y).Store(pd + i); }
            for (; i < n; i++) pd[i] = op == 0 ? pa[i] + pb[i] : pa[i] * pb[i];
        }
    }

    // x (n,) * s -> dst (n,); dst may alias x
    public static void Scale(ReadOnlySpan<float> x, float s, Span<float> dst) => Scale(x, s, dst, Simd.Best);

    internal static unsafe void Scale(ReadOnlySpan<float> x, float s, Span<float> dst, SimdPath path)
    {
        CheckDst(x.Length, dst.Length);
        int n = x.Length, i = 0;
        fixed (float* px = x) fixed (float* pd = dst)
        {
            if (path == SimdPath.V512) { var v = Vector512.Create(s); for (; i <= n - 16; i += 16) (Vector512.Load(px + i) * v).Store(pd + i); }
            if (path >= SimdPath.V256) { var v = Vector256.Create(s); for (; i <= n - 8; i += 8) (Vector256.Load(px + i) * v).Store(pd + i); }
            for (; i < n; i++) pd[i] = px[i] * s;
        }
    }
}
