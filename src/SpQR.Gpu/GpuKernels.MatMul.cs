// Batched products on the device, the prefill form of the GEMV and SpQR matvec files: C (M, N) = A (M, K) · Bᵀ with
// A the M tokens' activations (float32, row-major) and B the weight (N, K) as float32, F16 or BF16 bits, or a SpQR layer
// decoded tile by tile in the kernel (mirrors Cpu/CpuKernels.Gemm.cs and SpqrMatVec.Cpu.cs's T > 1 path).
// One register-blocked kernel (GemmCore): a thread group of tx × ty threads owns a BM × BN block of C (BM = 4·ty token
// rows, BN = 8·tx weight rows) and walks K in steps of 16, staging A and B slices in shared memory ([k][m] and [k][n],
// padded rows); each thread accumulates a 4 × 8 block of C in registers (32 FMAs per 12 shared loads). The B stage is a
// constant per kernel: float32, half bits widened as the GEMV kernels do, or SpQR — a 16-column step is exactly one
// group, so each (row, half-group) decodes its 8 codes with the group's statistics in the stored form's arithmetic
// (GroupStat), zero past cols. SpQR's outliers are added afterwards (SpqrOutlierKernel: C[t, r] += Σ δ·x'[t, col]), on the
// gathered X' (SpqrGatherRows: X through the permutation, zero-padded to whole groups).
// Where the M × N tiles are too few to fill the device (prefill of 64-256 tokens: 32-344 blocks on 132 multiprocessors,
// each waiting on its own loads between barriers), K is split S ways (grid z): each split writes its partial C into a
// scratch the kernels own and GemmReduceKernel sums the S partials in order (deterministic, no atomics). The block is
// 16×16 threads on CUDA (ty halves for a few tokens) and 4×4 within the group limit of ILGPU's CPU accelerator, where CI
// runs the same kernels.
using ILGPU;
using ILGPU.Runtime;

namespace SpQR.Gpu;

/// <summary>Shape of C (M, N) = A (M, K) · B (N, K)ᵀ; Bf = 1 reads half bits as BF16.</summary>
public struct GemmDims
{
    /// <summary>Ks: the K range of one split (a multiple of 16; K when unsplit).</summary>
    public int M, N, K, Bf, Ks;
}

public sealed partial class GpuKernels
{
    private const int GemmBK = 16, GemmMaxBM = 64, GemmMaxBN = 128, GemmPad = 4;
    private Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmDims>? _gemmF32;
    private Action<KernelConfig, ArrayView<float>, ArrayView<ushort>, ArrayView<float>, GemmDims>? _gemmHalf;
    private Action<KernelConfig, ArrayView<float>, ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<float>, SpqrDims, int, int>? _gemmSpqr;
    private Action<KernelConfig, ArrayView<float>, ArrayView<int>, ArrayView<float>, int, int, int>? _gatherRows;
    private Action<KernelConfig, ArrayView<float>, ArrayView<int>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, int, int, int>? _spqrOutliers;
    private Action<KernelConfig, ArrayView<float>, ArrayView<float>, int, int>? _addBias;
    private Action<KernelConfig, ArrayView<float>, ArrayView<float>, int, int>? _gemmReduce;
    private MemoryBuffer1D<float, Stride1D.Dense>? _partials;

    /// <summary>K splits of the batched products: 0 = chosen by shape (default), else at most this many (tests, benchmarks).</summary>
    public int GemmSplits { get; set; }

    /// <summary>Device floats of the scratch a batched SpQR matmul of T tokens needs: X' (T, 16·groups).</summary>
    public static long SpqrMatMulScratch(GpuSpqrLayer w, int T) => (long)T * w.Dims.Groups * 16;

    /// <summary>Y (T, rows) = X (T, cols) · Ŵᵀ; scratch holds ≥ <see cref="SpqrMatMulScratch"/> floats.</summary>
    public void SpqrMatMul(GpuSpqrLayer w, ArrayView<float> X, int T, ArrayView<float> Y, ArrayView<float> scratch)
    {
        var d = w.Dims;
        int padded = d.Groups * 16;
        if (X.Length < (long)T * d.Cols) throw new ArgumentException($"X holds {X.Length} floats, expected {T}x{d.Cols}");
        if (Y.Length < (long)T * d.Rows) throw new ArgumentException($"Y holds {Y.Length} floats, expected {T}x{d.Rows}");
        if (scratch.Length < SpqrMatMulScratch(w, T)) throw new ArgumentException($"scratch holds {scratch.Length} floats, need {SpqrMatMulScratch(w, T)}");
        var xp = scratch.SubView(0, (long)T * padded);
        int blk = Math.Min(256, _acc.MaxNumThreadsPerGroup);
        _gatherRows ??= _acc.LoadStreamKernel<ArrayView<float>, ArrayView<int>, ArrayView<float>, int, int, int>(GatherRowsKernel);
        _gemmSpqr ??= _acc.LoadStreamKernel<ArrayView<float>, ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<float>, SpqrDims, int, int>(GemmSpqrKernel);
        _spqrOutliers ??= _acc.LoadStreamKernel<ArrayView<float>, ArrayView<int>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, int, int, int>(SpqrOutlierKernel);
        long gathers = (long)T * padded, outputs = (long)T * d.Rows;
        _gatherRows(new KernelConfig((int)((gathers + blk - 1) / blk), blk), X, w.Perm.View, xp, T, d.Cols, padded);
        var (cfg, ks, target) = GemmPlan(T, d.Rows, padded, Y);
        _gemmSpqr(cfg, xp, w.Codes.View, w.StatCodes.View, w.Planes.View, target, d, T, ks);
        Reduce(cfg, Y, T, d.Rows);
        _spqrOutliers(new KernelConfig((int)((outputs + blk - 1) / blk), blk), xp, w.OutlierRowOffsets.View, w.OutlierCols.View, w.OutlierDeltas.View, Y, T, d.Rows, padded);
    }

    /// <summary>C (M, N) = A (M, K) · B (N, K)ᵀ, all row-major float32.</summary>
    public void GemmNT(ArrayView<float> A, ArrayView<float> B, ArrayView<float> C, int M, int N, int K)
    {
        Check(A, B.Length, C, M, N, K);
        _gemmF32 ??= _acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmDims>(GemmF32Kernel);
        var (cfg, ks, target) = GemmPlan(M, N, K, C);
        _gemmF32(cfg, A, B, target, new GemmDims { M = M, N = N, K = K, Ks = ks });
        Reduce(cfg, C, M, N);
    }

    /// <summary>C (M, N) = A (M, K) · B (N, K)ᵀ with B as F16 (bf16: false) or BF16 bits, widened exactly in the kernel.</summary>
    public void GemmNTHalf(ArrayView<float> A, ArrayView<ushort> B, ArrayView<float> C, int M, int N, int K, bool bf16)
    {
        Check(A, B.Length, C, M, N, K);
        _gemmHalf ??= _acc.LoadStreamKernel<ArrayView<float>, ArrayView<ushort>, ArrayView<float>, GemmDims>(GemmHalfKernel);
        var (cfg, ks, target) = GemmPlan(M, N, K, C);
        _gemmHalf(cfg, A, B, target, new GemmDims { M = M, N = N, K = K, Bf = bf16 ? 1 : 0, Ks = ks });
        Reduce(cfg, C, M, N);
    }

    /// <summary>Y (T, n) += bias (n,) on every row.</summary>
    public void AddBias(ArrayView<float> Y, ArrayView<float> bias, int T, int n)
    {
        _addBias ??= _acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int, int>(AddBiasKernel);
        long total = (long)T * n;
        int blk = Math.Min(256, _acc.MaxNumThreadsPerGroup);
        _addBias(new KernelConfig((int)((total + blk - 1) / blk), blk), Y, bias, T, n);
    }

    private static void Check(ArrayView<float> A, long bLength, ArrayView<float> C, int M, int N, int K)
    {
        if (A.Length < (long)M * K) throw new ArgumentException($"A holds {A.Length} floats, expected {M}x{K}");
        if (bLength < (long)N * K) throw new ArgumentException($"B holds {bLength} elements, expected {N}x{K}");
        if (C.Length < (long)M * N) throw new ArgumentException($"C holds {C.Length} floats, expected {M}x{N}");
    }

    // tx × ty threads (BN = 8·tx, BM = 4·ty): 16 × 16 where the group limit allows, ty halved while half the rows
    // still cover M; then S K-splits (≥ 8 steps of 16 each) until the grid has ≥ 4 blocks per multiprocessor. Returns the
    // launch, the K range of a split and where the kernel writes: C, or the partials scratch (S, M, N) when S > 1.
    private (KernelConfig Config, int Ks, ArrayView<float> Target) GemmPlan(int M, int N, int K, ArrayView<float> C)
    {
        int tx = 16, ty = 16;
        while (tx * ty > _acc.MaxNumThreadsPerGroup) { if (tx >= ty) tx /= 2; else ty /= 2; }
        while (ty > 4 && 4 * ty / 2 >= M) ty /= 2;
        long tiles = (long)((N + 8 * tx - 1) / (8 * tx)) * ((M + 4 * ty - 1) / (4 * ty));
        int steps = (K + GemmBK - 1) / GemmBK, S = 1, want = 4 * Math.Max(1, _acc.NumMultiprocessors);
        int cap = GemmSplits > 0 ? GemmSplits : int.MaxValue;
        while (2 * S <= cap && steps / (2 * S) >= (GemmSplits > 0 ? 1 : 8) && (GemmSplits > 0 || tiles * S < want)) S *= 2;
        int ks = (steps + S - 1) / S * GemmBK;
        S = (K + ks - 1) / ks; // no empty split
        var target = C;
        if (S > 1)
        {
            long need = (long)S * M * N;
            if (_partials is null || _partials.Length < need) { _partials?.Dispose(); _partials = _acc.Allocate1D<float>(need); }
            target = _partials.View;
        }
        var grid = new Index3D((N + 8 * tx - 1) / (8 * tx), (M + 4 * ty - 1) / (4 * ty), S);
        return (new KernelConfig(grid, new Index3D(tx, ty, 1)), ks, target);
    }

    // C = Σ over the S partials, in order (nothing to do unsplit)
    private void Reduce(KernelConfig cfg, ArrayView<float> C, int M, int N)
    {
        int S = cfg.GridDim.Z;
        if (S == 1) return;
        _gemmReduce ??= _acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int, int>(GemmReduceKernel);
        long n = (long)M * N;
        int blk = Math.Min(256, _acc.MaxNumThreadsPerGroup);
        _gemmReduce(new KernelConfig((int)((n + blk - 1) / blk), blk), _partials!.View, C, (int)n, S);
    }

    private static void GemmReduceKernel(ArrayView<float> P, ArrayView<float> C, int n, int S)
    {
        int i = Grid.GlobalIndex.X;
        if (i >= n) return;
        float s = P[i];
        for (int z = 1; z < S; z++) s += P[(long)z * n + i];
        C[i] = s;
    }

    private static void GemmF32Kernel(ArrayView<float> A, ArrayView<float> B, ArrayView<float> C, GemmDims d)
        => GemmCore(A, B, default, default, default, default, default, C, d.M, d.N, d.K, d.Ks, 0);

    private static void GemmHalfKernel(ArrayView<float> A, ArrayView<ushort> B, ArrayView<float> C, GemmDims d)
        => GemmCore(A, default, B, default, default, default, default, C, d.M, d.N, d.K, d.Ks, 1 + d.Bf);

    private static void GemmSpqrKernel(ArrayView<float> xp, ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<float> C, SpqrDims sd, int T, int ks)
        => GemmCore(xp, default, default, codes, statCodes, planes, sd, C, T, sd.Rows, sd.Groups * 16, ks, 3);

    // kind (a constant at each call site): 0 B float32, 1 F16 bits, 2 BF16 bits, 3 SpQR codes (K = 16·groups)
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void GemmCore(ArrayView<float> A, ArrayView<float> Bf, ArrayView<ushort> Bh, ArrayView<byte> codes, ArrayView<byte> statCodes,
                                 ArrayView<float> planes, SpqrDims sd, ArrayView<float> C, int M, int N, int K, int Ks, int kind)
    {
        var As = SharedMemory.Allocate<float>(GemmBK * (GemmMaxBM + GemmPad)); // [k][m], row stride BM + 4
        var Bs = SharedMemory.Allocate<float>(GemmBK * (GemmMaxBN + GemmPad)); // [k][n], row stride BN + 4
        int tx = Group.IdxX, ty = Group.IdxY, nx = Group.DimX, ny = Group.DimY;
        int BM = 4 * ny, BN = 8 * nx, sa = BM + GemmPad, sbs = BN + GemmPad, tid = ty * nx + tx, nt = nx * ny;
        int m0 = Grid.IdxY * BM, n0 = Grid.IdxX * BN, hb = BN / 2;
        // split z: K range [kb, ke), its partial C at z·M·N of the target (C itself unsplit)
        int kb = Grid.IdxZ * Ks, ke = Math.Min(K, kb + Ks);
        Acc4x8 acc = default;
        for (int k0 = kb; k0 < ke; k0 += GemmBK)
        {
            // A slice (BM, 16): consecutive threads read consecutive k of a row
            for (int e = tid; e < BM * GemmBK; e += nt)
            {
                int m = e >> 4, k = e & 15;
                As[k * sa + m] = m0 + m < M && k0 + k < K ? A[(long)(m0 + m) * K + k0 + k] : 0f;
            }
            if (kind == 3) SpqrTile(codes, statCodes, planes, sd, Bs, n0, k0 >> 4, BN, sbs, tid, nt);
            else
                for (int e = tid; e < BN * GemmBK; e += nt)
                {
                    int n = e >> 4, k = e & 15;
                    float v = 0f;
                    if (n0 + n < N && k0 + k < K)
                    {
                        long i = (long)(n0 + n) * K + k0 + k;
                        v = kind == 0 ? Bf[i] : HalfBitsToF32(Bh[i], kind - 1);
                    }
                    Bs[k * sbs + n] = v;
                }
            Group.Barrier();
            // three 16-byte shared loads per 32 FMAs (rows of both slices are 16-byte aligned: strides and offsets % 4 == 0)
            var a4 = As.Cast<F4>().AsAligned(16); var b4 = Bs.Cast<F4>().AsAligned(16);
            for (int k = 0; k < GemmBK; k++)
            {
                F4 a = a4[(k * sa >> 2) + ty], b = b4[(k * sbs >> 2) + tx], c = b4[(k * sbs + hb >> 2) + tx];
                acc.Fma(a.X, a.Y, a.Z, a.W, b.X, b.Y, b.Z, b.W, c.X, c.Y, c.Z, c.W);
            }
            Group.Barrier();
        }
        int mb = m0 + 4 * ty, nb = n0 + 4 * tx;
        acc.Store(C.SubView((long)Grid.IdxZ * M * N), mb, nb, nb + hb, M, N);
    }

    // B slice of a SpQR layer: rows n0.. of group g, one (row, half-group) per thread step: 8 codes of b bits with the
    // group's (scale, zero) in the stored form's arithmetic, zero past cols (padding columns meet zero x' anyway)
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void SpqrTile(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, SpqrDims d, ArrayView<float> Bs,
                                 int n0, int g, int BN, int sbs, int tid, int nt)
    {
        int b = d.WBits;
        for (int u = tid; u < 2 * BN; u += nt)
        {
            int n = u >> 1, h = u & 1, r = n0 + n;
            if (r >= d.Rows)
            {
                for (int k = 0; k < 8; k++) Bs[(8 * h + k) * sbs + n] = 0f;
                continue;
            }
            GroupStat(statCodes, planes, d, r, g, out float s, out float z);
            long p = (long)r * d.RowBytes + (long)g * 2 * b + h * b;
            uint word = 0;
            if (b <= 4) { word = codes[p]; for (int j = 1; j < b; j++) word |= (uint)codes[p + j] << (8 * j); }
            int c0 = g * 16 + 8 * h;
            for (int k = 0; k < 8; k++)
            {
                int q = b <= 4 ? (int)((word >> (b * k)) & (uint)((1 << b) - 1)) : HalfCode(codes, p, b, k);
                float v = d.Fp16 != 0 ? H(s * H(q - z)) : s * (q - z);
                Bs[(8 * h + k) * sbs + n] = c0 + k < d.Cols ? v : 0f;
            }
        }
    }

    // C[t, r] += Σ over row r's outliers δ·x'[t, col] (a thread per output; columns in permuted order, as x')
    private static void SpqrOutlierKernel(ArrayView<float> xp, ArrayView<int> offsets, ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<float> C,
                                          int T, int rows, int padded)
    {
        long i = Grid.GlobalIndex.X;
        if (i >= (long)T * rows) return;
        int t = (int)(i / rows), r = (int)(i % rows);
        int lo = offsets[r], hi = offsets[r + 1];
        if (lo == hi) return;
        float acc = 0;
        for (int e = lo; e < hi; e++) acc += deltas[e] * xp[(long)t * padded + ocols[e]];
        C[i] += acc;
    }

    // xp (T, padded) = X (T, cols) gathered through perm, zero past cols
    private static void GatherRowsKernel(ArrayView<float> X, ArrayView<int> perm, ArrayView<float> xp, int T, int cols, int padded)
    {
        long t = Grid.GlobalIndex.X;
        if (t >= (long)T * padded) return;
        int row = (int)(t / padded), c = (int)(t % padded);
        xp[t] = c < cols ? X[(long)row * cols + perm[c]] : 0f;
    }

    private static void AddBiasKernel(ArrayView<float> Y, ArrayView<float> bias, int T, int n)
    {
        long i = Grid.GlobalIndex.X;
        if (i < (long)T * n) Y[i] += bias[(int)(i % n)];
    }

    /// <summary>A thread's 4 × 8 block of C in registers: rows m..m+3, columns n..n+3 and n'..n'+3.</summary>
    private struct Acc4x8
    {
        public float C00, C01, C02, C03, C04, C05, C06, C07, C10, C11, C12, C13, C14, C15, C16, C17;
        public float C20, C21, C22, C23, C24, C25, C26, C27, C30, C31, C32, C33, C34, C35, C36, C37;

        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
        public void Fma(float a0, float a1, float a2, float a3, float b0, float b1, float b2, float b3, float b4, float b5, float b6, float b7)
        {
            C00 += a0 * b0; C01 += a0 * b1; C02 += a0 * b2; C03 += a0 * b3; C04 += a0 * b4; C05 += a0 * b5; C06 += a0 * b6; C07 += a0 * b7;
            C10 += a1 * b0; C11 += a1 * b1; C12 += a1 * b2; C13 += a1 * b3; C14 += a1 * b4; C15 += a1 * b5; C16 += a1 * b6; C17 += a1 * b7;
            C20 += a2 * b0; C21 += a2 * b1; C22 += a2 * b2; C23 += a2 * b3; C24 += a2 * b4; C25 += a2 * b5; C26 += a2 * b6; C27 += a2 * b7;
            C30 += a3 * b0; C31 += a3 * b1; C32 += a3 * b2; C33 += a3 * b3; C34 += a3 * b4; C35 += a3 * b5; C36 += a3 * b6; C37 += a3 * b7;
        }

        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
        public readonly void Store(ArrayView<float> C, int m, int n, int n2, int M, int N)
        {
            Row(C, m, n, n2, M, N, C00, C01, C02, C03, C04, C05, C06, C07);
            Row(C, m + 1, n, n2, M, N, C10, C11, C12, C13, C14, C15, C16, C17);
            Row(C, m + 2, n, n2, M, N, C20, C21, C22, C23, C24, C25, C26, C27);
            Row(C, m + 3, n, n2, M, N, C30, C31, C32, C33, C34, C35, C36, C37);
        }

        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
        private static void Row(ArrayView<float> C, int m, int n, int n2, int M, int N, float v0, float v1, float v2, float v3, float v4, float v5, float v6, float v7)
        {
            if (m >= M) return;
            long b = (long)m * N;
            if (n < N) C[b + n] = v0;
            if (n + 1 < N) C[b + n + 1] = v1;
            if (n + 2 < N) C[b + n + 2] = v2;
            if (n + 3 < N) C[b + n + 3] = v3;
            if (n2 < N) C[b + n2] = v4;
            if (n2 + 1 < N) C[b + n2 + 1] = v5;
            if (n2 + 2 < N) C[b + n2 + 2] = v6;
            if (n2 + 3 < N) C[b + n2 + 3] = v7;
        }
    }
}
