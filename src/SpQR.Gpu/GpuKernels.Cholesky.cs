// Float64 Cholesky on the device for the encoder (mirrors src/SpQR.Quant/Encode/Cholesky.cs; host side GpuCholesky):
// right-looking, blocked by B ≤ 32 rows (one thread group factors a diagonal block in shared memory), then
//   CholDiag  — L_kk = chol(A_kk) in place (records the first non-positive pivot in info: index, value);
//   CholPanel — L_ik = A_ik · L_kk⁻ᵀ for the rows below, a thread per row (forward substitution);
//   CholTrail — A_ij −= L_ik · L_jkᵀ for the trailing lower triangle, a thread per 4×4 tile;
// and the inverse X = L⁻¹ (lower) from L·X = I, blocked the same way:
//   TriSolve  — X[ib rows, c] = L_ii⁻¹ · X[ib rows, c] for every column c < ib + B, a thread per column;
//   TriUpdate — X[i, c] −= L[i, ib block] · X[ib block, c] for rows below, a thread per 4×4 tile.
// A (n, n) row-major; only the lower triangle is read.
using ILGPU;
using ILGPU.Runtime;

namespace SpQR.Gpu;

public sealed partial class GpuKernels
{
    private const int CholBlock = 32;
    private Action<KernelConfig, ArrayView<double>, ArrayView<double>, int, int, int>? _cholDiag;
    private Action<KernelConfig, ArrayView<double>, int, int, int>? _cholPanel;
    private Action<KernelConfig, ArrayView<double>, int, int, int>? _cholTrail;
    private Action<KernelConfig, ArrayView<double>, ArrayView<double>, int, int, int>? _triSolve;
    private Action<KernelConfig, ArrayView<double>, ArrayView<double>, int, int, int>? _triUpdate;
    private Action<KernelConfig, ArrayView<double>, ArrayView<double>, int, int>? _reverse;

    /// <summary>dst (n, n) = J·src·J restricted to one triangle (J the reversal): lower (upper = 0) → dst[i, j] =
    /// src[n−1−i, n−1−j] for j ≤ i, else 0; upper (upper = 1) → for j ≥ i, else 0. identity (upper = 2): dst = I.</summary>
    public void ReverseTriangle(ArrayView<double> src, ArrayView<double> dst, int n, int upper)
    {
        _reverse ??= Load<ArrayView<double>, ArrayView<double>, int, int>(ReverseKernel);
        long total = (long)n * n;
        int blk = Math.Min(256, _acc.MaxNumThreadsPerGroup);
        _reverse(new KernelConfig((int)((total + blk - 1) / blk), blk), src, dst, n, upper);
    }

    private static void ReverseKernel(ArrayView<double> src, ArrayView<double> dst, int n, int upper)
    {
        long t = Grid.GlobalIndex.X;
        if (t >= (long)n * n) return;
        int i = (int)(t / n), j = (int)(t % n);
        if (upper == 2) { dst[t] = i == j ? 1.0 : 0.0; return; }
        bool keep = upper == 0 ? j <= i : j >= i;
        dst[t] = keep ? src[(long)(n - 1 - i) * n + (n - 1 - j)] : 0.0;
    }

    /// <summary>Rows per block of the device Cholesky (≤ 32, whole thread group).</summary>
    public int CholeskyBlock => Math.Min(CholBlock, _acc.MaxNumThreadsPerGroup);

    /// <summary>In place: A (n, n) SPD → L (lower; the strict upper part of each diagonal block zeroed, the rest of the
    /// upper triangle untouched). info (2,) = (−1, 0) on entry; on a non-positive pivot it holds its index and value.</summary>
    public void Cholesky(ArrayView<double> a, int n, ArrayView<double> info)
    {
        int B = CholeskyBlock, blk = Math.Min(256, _acc.MaxNumThreadsPerGroup);
        _cholDiag ??= Load<ArrayView<double>, ArrayView<double>, int, int, int>(CholDiagKernel);
        _cholPanel ??= Load<ArrayView<double>, int, int, int>(CholPanelKernel);
        _cholTrail ??= Load<ArrayView<double>, int, int, int>(CholTrailKernel);
        for (int kb = 0; kb < n; kb += B)
        {
            int nb = Math.Min(B, n - kb), below = n - kb - nb;
            _cholDiag(new KernelConfig(1, B), a, info, n, kb, nb);
            if (below == 0) break;
            _cholPanel(new KernelConfig((below + blk - 1) / blk, blk), a, n, kb, nb);
            long tiles = (long)((below + 3) / 4) * ((below + 3) / 4);
            _cholTrail(new KernelConfig((int)((tiles + blk - 1) / blk), blk), a, n, kb, nb);
        }
    }

    /// <summary>X (n, n) = L⁻¹ for L lower (n, n) from <see cref="Cholesky"/>; X must hold the identity on entry.</summary>
    public void TriangularInverse(ArrayView<double> l, ArrayView<double> x, int n)
    {
        int B = CholeskyBlock, blk = Math.Min(256, _acc.MaxNumThreadsPerGroup);
        _triSolve ??= Load<ArrayView<double>, ArrayView<double>, int, int, int>(TriSolveKernel);
        _triUpdate ??= Load<ArrayView<double>, ArrayView<double>, int, int, int>(TriUpdateKernel);
        for (int ib = 0; ib < n; ib += B)
        {
            int nb = Math.Min(B, n - ib), width = ib + nb, below = n - ib - nb;
            _triSolve(new KernelConfig((width + blk - 1) / blk, blk), l, x, n, ib, nb);
            if (below == 0) break;
            long tiles = (long)((below + 3) / 4) * ((width + 3) / 4);
            _triUpdate(new KernelConfig((int)((tiles + blk - 1) / blk), blk), l, x, n, ib, nb);
        }
    }

    private static void CholDiagKernel(ArrayView<double> a, ArrayView<double> info, int n, int kb, int nb)
    {
        var s = SharedMemory.Allocate<double>(CholBlock * CholBlock);
        int t = Group.IdxX;
        if (t < nb) for (int j = 0; j < nb; j++) s[t * CholBlock + j] = a[(long)(kb + t) * n + kb + j];
        Group.Barrier();
        for (int j = 0; j < nb; j++)
        {
            if (t == j)
            {
                double d = s[j * CholBlock + j];
                if (!(d > 0) && info[0] < 0) { info[0] = kb + j; info[1] = d; }
                s[j * CholBlock + j] = Math.Sqrt(d);
            }
            Group.Barrier();
            if (t > j && t < nb) s[t * CholBlock + j] /= s[j * CholBlock + j];
            Group.Barrier();
            if (t > j && t < nb)
                for (int k = j + 1; k <= t; k++) s[t * CholBlock + k] -= s[t * CholBlock + j] * s[k * CholBlock + j];
            Group.Barrier();
        }
        if (t < nb) for (int j = 0; j < nb; j++) a[(long)(kb + t) * n + kb + j] = j <= t ? s[t * CholBlock + j] : 0.0;
    }

    private static void CholPanelKernel(ArrayView<double> a, int n, int kb, int nb)
    {
        int i = kb + nb + Grid.GlobalIndex.X;
        if (i >= n) return;
        long row = (long)i * n + kb;
        for (int j = 0; j < nb; j++)
        {
            long lj = (long)(kb + j) * n + kb;
            double x = a[row + j];
            for (int k = 0; k < j; k++) x -= a[row + k] * a[lj + k];
            a[row + j] = x / a[lj + j];
        }
    }

    // trailing rows/columns from c0 = kb + nb; a thread per 4×4 tile of the lower triangle (tiles above it return)
    private static void CholTrailKernel(ArrayView<double> a, int n, int kb, int nb)
    {
        int c0 = kb + nb, m = n - c0, ct = (m + 3) / 4;
        long t = Grid.GlobalIndex.X;
        int i0 = (int)(t / ct) * 4, j0 = (int)(t % ct) * 4;
        if (i0 >= m || j0 > i0 + 3) return;
        for (int di = 0; di < 4 && i0 + di < m; di++)
        {
            long ri = (long)(c0 + i0 + di) * n + kb;
            double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            long r0 = (long)(c0 + Math.Min(m - 1, j0)) * n + kb, r1 = (long)(c0 + Math.Min(m - 1, j0 + 1)) * n + kb;
            long r2 = (long)(c0 + Math.Min(m - 1, j0 + 2)) * n + kb, r3 = (long)(c0 + Math.Min(m - 1, j0 + 3)) * n + kb;
            for (int k = 0; k < nb; k++)
            {
                double li = a[ri + k];
                s0 += li * a[r0 + k]; s1 += li * a[r1 + k]; s2 += li * a[r2 + k]; s3 += li * a[r3 + k];
            }
            long dst = (long)(c0 + i0 + di) * n + c0 + j0;
            if (j0 <= i0 + di && j0 < m) a[dst] -= s0;
            if (j0 + 1 <= i0 + di && j0 + 1 < m) a[dst + 1] -= s1;
            if (j0 + 2 <= i0 + di && j0 + 2 < m) a[dst + 2] -= s2;
            if (j0 + 3 <= i0 + di && j0 + 3 < m) a[dst + 3] -= s3;
        }
    }

    private static void TriSolveKernel(ArrayView<double> l, ArrayView<double> x, int n, int ib, int nb)
    {
        int c = Grid.GlobalIndex.X;
        if (c >= ib + nb) return;
        for (int t = 0; t < nb; t++)
        {
            long lr = (long)(ib + t) * n + ib;
            double v = x[(long)(ib + t) * n + c];
            for (int k = 0; k < t; k++) v -= l[lr + k] * x[(long)(ib + k) * n + c];
            x[(long)(ib + t) * n + c] = v / l[lr + t];
        }
    }

    // rows i ≥ ib + nb, columns c < ib + nb: X[i, c] −= Σ_k L[i, ib + k] · X[ib + k, c]; a thread per 4×4 tile
    private static void TriUpdateKernel(ArrayView<double> l, ArrayView<double> x, int n, int ib, int nb)
    {
        int r0 = ib + nb, rows = n - r0, width = ib + nb, ct = (width + 3) / 4;
        long t = Grid.GlobalIndex.X;
        int i0 = (int)(t / ct) * 4, j0 = (int)(t % ct) * 4;
        if (i0 >= rows) return;
        int jA = Math.Min(width - 1, j0), jB = Math.Min(width - 1, j0 + 1), jC = Math.Min(width - 1, j0 + 2), jD = Math.Min(width - 1, j0 + 3);
        for (int di = 0; di < 4 && i0 + di < rows; di++)
        {
            long li = (long)(r0 + i0 + di) * n + ib;
            double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            for (int k = 0; k < nb; k++)
            {
                double lv = l[li + k];
                long xr = (long)(ib + k) * n;
                s0 += lv * x[xr + jA]; s1 += lv * x[xr + jB]; s2 += lv * x[xr + jC]; s3 += lv * x[xr + jD];
            }
            long dst = (long)(r0 + i0 + di) * n;
            x[dst + jA] -= s0;
            if (j0 + 1 < width) x[dst + jB] -= s1;
            if (j0 + 2 < width) x[dst + jC] -= s2;
            if (j0 + 3 < width) x[dst + jD] -= s3;
        }
    }
}
