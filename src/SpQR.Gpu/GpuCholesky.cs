// U = the upper Cholesky factor of H⁻¹ (H⁻¹ = Uᵀ·U) on the device in float64, the same construction as the CPU's
// Cholesky.UpperFactorOfInverse: L' = chol(J·H·J) (J the reversal), X = L'⁻¹, U = J·X·J. Kernels in
// GpuKernels.Cholesky.cs; a non-positive pivot throws NotPositiveDefiniteException naming the matrix and the pivot.
using ILGPU;
using ILGPU.Runtime;
using SpQR.Quant.Encode;

namespace SpQR.Gpu;

public static class GpuCholesky
{
    /// <summary>U (n, n) upper triangular with H⁻¹ = Uᵀ·U, for H (n, n) SPD.</summary>
    public static double[] UpperFactorOfInverse(GpuBackend gpu, ReadOnlySpan<double> h, int n, string what = "H")
    {
        if (h.Length < (long)n * n) throw new ArgumentException($"{what}: expected {n}x{n}");
        var acc = gpu.Accelerator;
        var l = new double[(long)n * n];
        for (int i = 0; i < n; i++)
            for (int j = 0; j <= i; j++) l[(long)i * n + j] = h[(n - 1 - i) * n + (n - 1 - j)];
        var id = new double[(long)n * n];
        for (int i = 0; i < n; i++) id[(long)i * n + i] = 1;
        using var dL = acc.Allocate1D(l);
        using var dX = acc.Allocate1D(id);
        using var dInfo = acc.Allocate1D(new double[] { -1, 0 });
        gpu.Kernels.Cholesky(dL.View, n, dInfo.View);
        gpu.Kernels.TriangularInverse(dL.View, dX.View, n);
        acc.Synchronize();
        var info = dInfo.GetAsArray1D();
        if (info[0] >= 0)
            throw new NotPositiveDefiniteException($"{what} is not positive definite (pivot {(int)info[0]} of {n} is {info[1]:G4})");
        dX.View.CopyToCPU(id); // X = L'⁻¹
        var u = l; // reuse: U[p, q] = X[n−1−p, n−1−q] for q ≥ p, zero below
        Array.Clear(u);
        for (int p = 0; p < n; p++)
            for (int q = p; q < n; q++) u[(long)p * n + q] = id[(long)(n - 1 - p) * n + (n - 1 - q)];
        return u;
    }
}
