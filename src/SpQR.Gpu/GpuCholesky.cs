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
        var k = gpu.Kernels;
        using var dH = acc.Allocate1D<double>((long)n * n);
        dH.View.CopyFromCPU(ref System.Runtime.InteropServices.MemoryMarshal.GetReference(h), (long)n * n);
        using var dL = acc.Allocate1D<double>((long)n * n);
        using var dInfo = acc.Allocate1D(new double[] { -1, 0 });
        k.ReverseTriangle(dH.View, dL.View, n, upper: 0);  // L ← lower(J·H·J)
        k.ReverseTriangle(dH.View, dH.View, n, upper: 2);  // H's buffer becomes X = I
        k.Cholesky(dL.View, n, dInfo.View);               // L' = chol(J·H·J)
        k.TriangularInverse(dL.View, dH.View, n);          // X = L'⁻¹
        k.ReverseTriangle(dH.View, dL.View, n, upper: 1);  // U = J·X·J (upper)
        acc.Synchronize();
        var info = dInfo.GetAsArray1D();
        if (info[0] >= 0)
            throw new NotPositiveDefiniteException($"{what} is not positive definite (pivot {(int)info[0]} of {n} is {info[1]:G4})");
        var u = new double[(long)n * n];
        dL.View.CopyToCPU(u);
        return u;
    }
}
