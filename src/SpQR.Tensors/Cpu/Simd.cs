// Which vector width the CPU kernels use. Chosen once at start-up from what the hardware accelerates;
// tests pass an explicit path to run every variant (Vector512 code runs, slowly, even where it is emulated).
using System.Runtime.Intrinsics;

namespace SpQR.Tensors.Cpu;

public enum SimdPath { Scalar = 0, V256 = 1, V512 = 2 }

public static class Simd
{
    /// <summary>The widest path the hardware accelerates: V512 with AVX-512, V256 with AVX2/NEON-pairs, else scalar.</summary>
    public static SimdPath Best { get; } =
        Vector512.IsHardwareAccelerated ? SimdPath.V512 :
        Vector256.IsHardwareAccelerated ? SimdPath.V256 : SimdPath.Scalar;

    public static IReadOnlyList<SimdPath> All { get; } = [SimdPath.Scalar, SimdPath.V256, SimdPath.V512];
}

/// <summary>
/// Degree of parallelism for the CPU kernels. Work is split into fixed blocks whose arithmetic does not depend on
/// how many threads run them, so results are identical for any value.
/// </summary>
public static class CpuThreads
{
    private static int _count = Environment.ProcessorCount;

    public static int Count
    {
        get => _count;
        set => _count = value >= 1 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "need at least one thread");
    }

    internal static ParallelOptions Options => new() { MaxDegreeOfParallelism = _count };

    /// <summary>Runs body(i) for i in [0, n); serially when one thread or one block.</summary>
    public static void For(int n, Action<int> body)
    {
        if (n <= 0) return;
        if (n == 1 || _count == 1) { for (int i = 0; i < n; i++) body(i); return; }
        Parallel.For(0, n, Options, body);
    }
}
