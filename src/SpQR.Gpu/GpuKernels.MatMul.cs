// Batched SpQR matmul Y (T, rows) = X (T, cols) · Ŵᵀ on the device (the prefill form of GpuKernels.Spqr.cs; mirrors
// SpqrMatVec.Cpu.cs's T > 1 path): the layer is dequantized once into a dense float32 Ŵ in permuted column order
// (SpqrDequantize: a thread per (row, group), the exact float operations of the stored form, outliers replaced by their
// kept values), the T inputs are gathered through the permutation (SpqrGatherRows), and a shared-memory tiled GEMM
// multiplies them (GemmNT: C (M, N) = A (M, K) · B (N, K)ᵀ, B·B tiles of A and B staged in shared memory, a thread per
// output, sums over k in order). Decoding costs 1/T per token.
using ILGPU;
using ILGPU.Runtime;

namespace SpQR.Gpu;

public sealed partial class GpuKernels
{
    private const int GemmTileMax = 16;
    private Action<KernelConfig, ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<int>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, SpqrDims>? _spqrDequantize;
    private Action<KernelConfig, ArrayView<float>, ArrayView<int>, ArrayView<float>, int, int, int>? _gatherRows;
    private Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int>? _gemmNT;

    /// <summary>Device floats of the scratch a batched matmul of T tokens needs: Ŵ (rows, 16·groups) and X' (T, 16·groups).</summary>
    public static long SpqrMatMulScratch(GpuSpqrLayer w, int T) => ((long)w.Dims.Rows + T) * w.Dims.Groups * 16;

    /// <summary>Y (T, rows) = X (T, cols) · Ŵᵀ; scratch holds ≥ <see cref="SpqrMatMulScratch"/> floats.</summary>
    public void SpqrMatMul(GpuSpqrLayer w, ArrayView<float> X, int T, ArrayView<float> Y, ArrayView<float> scratch)
    {
        var d = w.Dims;
        int padded = d.Groups * 16;
        if (X.Length < (long)T * d.Cols) throw new ArgumentException($"X holds {X.Length} floats, expected {T}x{d.Cols}");
        if (Y.Length < (long)T * d.Rows) throw new ArgumentException($"Y holds {Y.Length} floats, expected {T}x{d.Rows}");
        if (scratch.Length < SpqrMatMulScratch(w, T)) throw new ArgumentException($"scratch holds {scratch.Length} floats, need {SpqrMatMulScratch(w, T)}");
        var wd = scratch.SubView(0, (long)d.Rows * padded);
        var xp = scratch.SubView((long)d.Rows * padded, (long)T * padded);
        int blk = Math.Min(256, _acc.MaxNumThreadsPerGroup);
        _spqrDequantize ??= _acc.LoadStreamKernel<ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<int>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, SpqrDims>(SpqrDequantizeKernel);
        _gatherRows ??= _acc.LoadStreamKernel<ArrayView<float>, ArrayView<int>, ArrayView<float>, int, int, int>(GatherRowsKernel);
        long units = (long)d.Rows * d.Groups, gathers = (long)T * padded;
        _spqrDequantize(new KernelConfig((int)((units + blk - 1) / blk), blk), w.Codes.View, w.StatCodes.View, w.Planes.View, w.OutlierRowOffsets.View,
                        w.OutlierCols.View, w.OutlierDeltas.View, wd, d);
        _gatherRows(new KernelConfig((int)((gathers + blk - 1) / blk), blk), X, w.Perm.View, xp, T, d.Cols, padded);
        GemmNT(xp, wd, Y, T, d.Rows, padded);
    }

    /// <summary>C (M, N) = A (M, K) · B (N, K)ᵀ, all row-major float32.</summary>
    public void GemmNT(ArrayView<float> A, ArrayView<float> B, ArrayView<float> C, int M, int N, int K)
    {
        int tile = 1;
        while ((tile * 2) * (tile * 2) <= _acc.MaxNumThreadsPerGroup && tile * 2 <= GemmTileMax) tile *= 2;
        _gemmNT ??= _acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int>(GemmNTKernel);
        var grid = new Index2D((N + tile - 1) / tile, (M + tile - 1) / tile);
        _gemmNT(new KernelConfig(grid, new Index2D(tile, tile)), A, B, C, M, N, K, tile);
    }

    // a thread per (row, group): the group's 16 weights as the stored form decodes them, outliers replaced by their kept
    // values (decoded + delta), into wd (rows, 16·groups) in permuted column order (zero past cols)
    private static void SpqrDequantizeKernel(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<int> offsets,
                                             ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<float> wd, SpqrDims d)
    {
        long t = Grid.GlobalIndex.X;
        if (t >= (long)d.Rows * d.Groups) return;
        int r = (int)(t / d.Groups), g = (int)(t % d.Groups), b = d.WBits, padded = d.Groups * 16;
        GroupStat(statCodes, planes, d, r, g, out float s, out float z);
        long p = (long)r * d.RowBytes + (long)g * 2 * b, o = (long)r * padded + g * 16;
        for (int k = 0; k < 16; k++)
        {
            int c = g * 16 + k;
            float v = 0;
            if (c < d.Cols)
            {
                int q = HalfCode(codes, p + (k >> 3) * b, b, k & 7);
                v = d.Fp16 != 0 ? H(s * H(q - z)) : s * (q - z);
            }
            wd[o + k] = v;
        }
        // this row's outliers inside the group: binary search of the row's ascending columns
        int lo = offsets[r], hi = offsets[r + 1];
        while (lo < hi)
        {
            int mid = (lo + hi) >> 1;
            if (ocols[mid] < g * 16) lo = mid + 1; else hi = mid;
        }
        for (int e = lo; e < offsets[r + 1] && ocols[e] < g * 16 + 16; e++) wd[o + ocols[e] - g * 16] += deltas[e];
    }

    // xp (T, padded) = X (T, cols) gathered through perm, zero past cols
    private static void GatherRowsKernel(ArrayView<float> X, ArrayView<int> perm, ArrayView<float> xp, int T, int cols, int padded)
    {
        long t = Grid.GlobalIndex.X;
        if (t >= (long)T * padded) return;
        int row = (int)(t / padded), c = (int)(t % padded);
        xp[t] = c < cols ? X[(long)row * cols + perm[c]] : 0f;
    }

    // C[m, n] = Σ_k A[m, k]·B[n, k]; a tile×tile thread group computes a tile×tile block of C, staging tile-wide slices
    // of A and B in shared memory
    private static void GemmNTKernel(ArrayView<float> A, ArrayView<float> B, ArrayView<float> C, int M, int N, int K, int tile)
    {
        var sa = SharedMemory.Allocate<float>(GemmTileMax * GemmTileMax);
        var sb = SharedMemory.Allocate<float>(GemmTileMax * GemmTileMax);
        int tx = Group.IdxX, ty = Group.IdxY;
        int n = Grid.IdxX * tile + tx, m = Grid.IdxY * tile + ty;
        float acc = 0;
        for (int k0 = 0; k0 < K; k0 += tile)
        {
            // sa[ty][tx] = A[m, k0 + tx]; sb[ty][tx] = B[n' = Grid.IdxX·tile + ty, k0 + tx]
            int nb = Grid.IdxX * tile + ty;
            sa[ty * GemmTileMax + tx] = m < M && k0 + tx < K ? A[(long)m * K + k0 + tx] : 0f;
            sb[ty * GemmTileMax + tx] = nb < N && k0 + tx < K ? B[(long)nb * K + k0 + tx] : 0f;
            Group.Barrier();
            for (int k = 0; k < tile; k++) acc += sa[ty * GemmTileMax + k] * sb[tx * GemmTileMax + k];
            Group.Barrier();
        }
        if (m < M && n < N) C[(long)m * N + n] = acc;
    }
}
