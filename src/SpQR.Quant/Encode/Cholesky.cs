// Float64 Cholesky for GPTQ/SpQR: H = L·Lᵀ, and U = the upper Cholesky factor of H⁻¹ (H⁻¹ = Uᵀ·U), which is what
// the column loop needs (U[j, j] = d_j, U[j, j+1:] the error-feedback row). Computed without forming H⁻¹:
// with J the reversal, chol(J·H·J) = L' gives H = R·Rᵀ for the upper R = J·L'·J, so H⁻¹ = R⁻ᵀ·R⁻¹ and U = R⁻¹.
// Row-oriented (dot-product) Cholesky and triangular inverse with vector dots, blocked by rows so every earlier
// row is read once per block of rows (cache reuse) and the rows of a block run on separate threads.
using System.Runtime.Intrinsics;

namespace SpQR.Quant.Encode;

public sealed class NotPositiveDefiniteException(string message) : Exception(message);

public static class Cholesky
{
    private const int RowBlock = 64;

    /// <summary>In place: A (n, n) symmetric positive definite -> L (lower, upper part zeroed). Throws at the first non-positive pivot.</summary>
    public static void Factor(double[] a, int n, string what = "matrix")
    {
        if (a.Length < (long)n * n) throw new ArgumentException($"{what}: expected {n}x{n}");
        for (int i0 = 0; i0 < n; i0 += RowBlock)
        {
            int i1 = Math.Min(n, i0 + RowBlock);
            // L[i, j] for the block rows and j < i0: each earlier row j is read once per thread and shared by its rows
            int parts = Math.Min(SpQR.Tensors.Cpu.CpuThreads.Count, (i1 - i0 + 3) / 4);
            SpQR.Tensors.Cpu.CpuThreads.For(parts, p =>
            {
                int per = ((i1 - i0 + parts - 1) / parts + 3) / 4 * 4;
                int r0 = i0 + p * per, r1 = Math.Min(i1, r0 + per);
                for (int j = 0; j < i0; j++)
                {
                    var lj = a.AsSpan(j * n, j);
                    double djj = a[(long)j * n + j];
                    for (int i = r0; i < r1; i++) a[(long)i * n + j] = (a[(long)i * n + j] - Dot(a.AsSpan(i * n, j), lj)) / djj;
                }
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
        // X = L'⁻¹ (lower) from X·L' = I, row by row: X[i, j] = -Σ_{k=j+1..i} X[i, k]·L'[k, j] / L'[j, j], j descending.
        // With Lᵀ stored row-major both operands of that sum are contiguous; row blocks share each Lᵀ row.
        var lt = new double[(long)n * n];
        for (int i = 0; i < n; i++) for (int j = 0; j <= i; j++) lt[(long)j * n + i] = l[(long)i * n + j];
        var x = new double[(long)n * n];
        int blocks = (n + RowBlock - 1) / RowBlock;
        SpQR.Tensors.Cpu.CpuThreads.For(blocks, b =>
        {
            int i0 = b * RowBlock, i1 = Math.Min(n, i0 + RowBlock);
            for (int i = i0; i < i1; i++) x[(long)i * n + i] = 1.0 / l[(long)i * n + i];
            for (int j = i1 - 2; j >= 0; j--)
            {
                double djj = l[(long)j * n + j];
                for (int i = Math.Max(i0, j + 1); i < i1; i++)
                    x[(long)i * n + j] = -Dot(x.AsSpan(i * n + j + 1, i - j), lt.AsSpan(j * n + j + 1, i - j)) / djj;
            }
        });
        // U = J X J: U[p, q] = X[n-1-p, n-1-q]
        var u = new double[(long)n * n];
        for (int p = 0; p < n; p++)
            for (int q = p; q < n; q++) u[(long)p * n + q] = x[(long)(n - 1 - p) * n + (n - 1 - q)];
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
