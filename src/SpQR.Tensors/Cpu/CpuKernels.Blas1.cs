// Dot product and axpy over float32 spans, Vector512/Vector256/scalar. Four independent accumulators hide FMA
// latency; the reduction order is fixed per path, so a given path always gives the same bits.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace SpQR.Tensors.Cpu;

public static partial class CpuKernels
{
    // x (n,) . y (n,) -> scalar
    public static float Dot(ReadOnlySpan<float> x, ReadOnlySpan<float> y) => Dot(x, y, Simd.Best);

    internal static unsafe float Dot(ReadOnlySpan<float> x, ReadOnlySpan<float> y, SimdPath path)
    {
        if (x.Length != y.Length) throw new ArgumentException($"length mismatch: x has {x.Length}, y has {y.Length}");
        fixed (float* px = x) fixed (float* py = y) return Dot(px, py, x.Length, path);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe float Dot(float* x, float* y, int n, SimdPath path)
    {
        int i = 0;
        float sum = 0;
        if (path == SimdPath.V512 && n >= 16)
        {
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; i <= n - 64; i += 64)
            {
                a0 = Vector512.FusedMultiplyAdd(Vector512.Load(x + i), Vector512.Load(y + i), a0);
                a1 = Vector512.FusedMultiplyAdd(Vector512.Load(x + i + 16), Vector512.Load(y + i + 16), a1);
                a2 = Vector512.FusedMultiplyAdd(Vector512.Load(x + i + 32), Vector512.Load(y + i + 32), a2);
                a3 = Vector512.FusedMultiplyAdd(Vector512.Load(x + i + 48), Vector512.Load(y + i + 48), a3);
            }
            for (; i <= n - 16; i += 16) a0 = Vector512.FusedMultiplyAdd(Vector512.Load(x + i), Vector512.Load(y + i), a0);
            sum = Vector512.Sum((a0 + a1) + (a2 + a3));
        }
        else if (path >= SimdPath.V256 && n >= 8)
        {
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; i <= n - 32; i += 32)
            {
                a0 = Vector256.FusedMultiplyAdd(Vector256.Load(x + i), Vector256.Load(y + i), a0);
                a1 = Vector256.FusedMultiplyAdd(Vector256.Load(x + i + 8), Vector256.Load(y + i + 8), a1);
                a2 = Vector256.FusedMultiplyAdd(Vector256.Load(x + i + 16), Vector256.Load(y + i + 16), a2);
                a3 = Vector256.FusedMultiplyAdd(Vector256.Load(x + i + 24), Vector256.Load(y + i + 24), a3);
            }
            for (; i <= n - 8; i += 8) a0 = Vector256.FusedMultiplyAdd(Vector256.Load(x + i), Vector256.Load(y + i), a0);
            sum = Vector256.Sum((a0 + a1) + (a2 + a3));
        }
        for (; i < n; i++) sum = MathF.FusedMultiplyAdd(x[i], y[i], sum);
        return sum;
    }

    // y (n,) += a * x (n,)
    public static void Axpy(float a, ReadOnlySpan<float> x, Span<float> y) => Axpy(a, x, y, Simd.Best);

    internal static unsafe void Axpy(float a, ReadOnlySpan<float> x, Span<float> y, SimdPath path)
    {
        if (x.Length != y.Length) throw new ArgumentException($"length mismatch: x has {x.Length}, y has {y.Length}");
        int n = x.Length, i = 0;
        fixed (float* px = x) fixed (float* py = y)
        {
            if (path == SimdPath.V512)
            {
                var va = Vector512.Create(a);
                for (; i <= n - 16; i += 16) Vector512.FusedMultiplyAdd(va, Vector512.Load(px + i), Vector512.Load(py + i)).Store(py + i);
            }
            if (path >= SimdPath.V256)
            {
                var va = Vector256.Create(a);
                for (; i <= n - 8; i += 8) Vector256.FusedMultiplyAdd(va, Vector256.Load(px + i), Vector256.Load(py + i)).Store(py + i);
            }
            for (; i < n; i++) py[i] = MathF.FusedMultiplyAdd(a, px[i], py[i]);
        }
    }
}
