// Float64 Cholesky for GPTQ/SpQR: H = L·Lᵀ, and U = the upper Cholesky factor of H⁻¹ (H⁻¹ = Uᵀ·U), which is what
// the column loop needs (U[j, j] = d_j, U[j, j+1:] the error-feedback row). Computed without forming H⁻¹:
// with J the reversal, chol(J·H·J) = L' gives H = R·Rᵀ for the upper R = J·L'·J, so H⁻¹ = R⁻ᵀ·R⁻¹ and U = R⁻¹.
// Row-oriented (dot-product) Cholesky with vector dots; rows of a block are independent given earlier blocks.
using System.Runtime.Intrinsics;

namespace SpQR.Quant.Encode;

public sealed class NotPositiveDefiniteException(string message) : Exception(message);

public static class Cholesky
{
    /// <summary>In place: A (n, n) symmetric positive definite -> L (lower, upper part zeroed). Throws at the first non-positive pivot.</summary>
    public static void Factor(double[] a, int n, string what = "matrix")
    {
        if (a.Length < (long)n * n) throw new ArgumentException($"{what}: expected {n}x{n}");
        const int Block = 32;
        for (int i0 = 0; i0 < n; i0 += Block)
        {
            int i1 = Math.Min(n, i0 + Block);
            // off-diagonal part of the block rows: L[i, j] for j < i0; rows are independent
            Parallel.For(i0, i1, new ParallelOptions { MaxDegreeOfParallelism = SpQR.Tensors.Cpu.CpuThreads.Count }, i =>
            {
                var li = a.AsSpan(i * n, n);
                for (int j = 0; j < i0; j++) li[j] = (li[j] - Dot(li[..j], a.AsSpan(j * n, j))) / a[(long)j * n + j];
            });
            // the diagonal block, row by row
            for (int i = i0; i < i1; i++)
            {
                var li = a.AsSpan(i * n, n);
                for (int j = i0; j < i; j++) li[j] = (li[j] - Dot(li[..j], a.AsSpan(j * n, j))) / a[(long)j * n + j];
                double d = li[i] - Dot(li[..i], li[..i]);
                if (!(d > 0))
                    throw new NotPositiveDefiniteException($"{what} is not positive definite (pivot {i} of {n} is {d:G4})");
                li[i] = Math.Sqrt(d);
                li[(i + 1)..].Clear();
            }
        }
    }

    /// <summary>U (n, n) upper triangular with H⁻¹ = Uᵀ·U, for H (n, n) SPD (not modified).</summary>
    public static double[] UpperFactorOfInverse(ReadOnlySpan<double> h, int n, string what = "H")
    {
        // L' = chol(J H J)
        var l = new double[(long)n * n];
        for (int i = 0; i < n; i++)
            for (int j = 0; j <= i; j++) l[(long)i * n + j] = h[(n - 1 - i) * n + (n - 1 - j)];
        Factor(l, n, what);
        // X = L'⁻¹ (lower), column by column: L' x = e_c, forward substitution with row dots
        var xT = new double[(long)n * n]; // row c of xT = column c of X (entries c..n-1)
        Parallel.For(0, n, new ParallelOptions { MaxDegreeOfParallelism = SpQR.Tensors.Cpu.CpuThreads.Count }, c =>
        {
            var x = xT.AsSpan(c * n, n);
            x[c] = 1.0 / l[(long)c * n + c];
            for (int i = c + 1; i < n; i++) x[i] = -Dot(l.AsSpan(i * n + c, i - c), x[c..i]) / l[(long)i * n + i];
        });
        // U = J X J: U[p, q] = X[n-1-p, n-1-q] = xT[n-1-q, n-1-p]
        var u = new double[(long)n * n];
        for (int p = 0; p < n; p++)
            for (int q = p; q < n; q++) u[(long)p * n + q] = xT[(long)(n - 1 - q) * n + (n - 1 - p)];
        return u;
    }

    internal static double Dot(ReadOnlySpan<double> x, ReadOnlySpan<double> y)
    {
        int n = x.Length, i = 0;
        double s = 0;
        if (Vector256.IsHardwareAccelerated && n >= 8)
        {
            Vector256<double> a0 = default, a1 = default;
            ref double rx = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(x);
            ref double ry = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(y);
            for (; i <= n - 8; i += 8)
            {
                a0 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref rx, (nuint)i), Vector256.LoadUnsafe(ref ry, (nuint)i), a0);
                a1 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref rx, (nuint)i + 4), Vector256.LoadUnsafe(ref ry, (nuint)i + 4), a1);
            }
            s = Vector256.Sum(a0 + a1);
        }
        for (; i < n; i++) s = Math.FusedMultiplyAdd(x[i], y[i], s);
        return s;
    }
}
