// Batched products on the device, the prefill form of the GEMV and SpQR matvec files: C (M, N) = A (M, K) · Bᵀ with
// A the M tokens' activations (float32, row-major) and B the weight (N, K) as float32, F16 or BF16 bits, or a SpQR layer
// decoded tile by tile in the kernel (mirrors Cpu/CpuKernels.Gemm.cs and SpqrMatVec.Cpu.cs's T > 1 path).
// One register-blocked kernel (GemmCore): a thread group of tx × ty threads owns a BM × BN block of C (BM = 8·ty token
// rows, BN = 8·tx weight rows) and walks K in steps of 16, staging A and B slices in shared memory ([k][m] and [k][n],
// padded rows; each thread issues eight global loads before their stores); each thread accumulates an 8 × 8 block of C
// in registers (64 FMAs per four 16-byte shared loads). The B stage is a constant per kernel: float32, half bits
// widened as the GEMV kernels do, or SpQR — a 16-column step is exactly one group, so each (row, half-group) decodes its
// 8 codes with the group's statistics in the stored form's arithmetic (GroupStat), zero past cols. SpQR's outliers are
// added afterwards (SpqrOutlierKernel: C[t, r] += Σ δ·x'[t, col]), on the gathered X' (GatherRowsKernel: X through the
// permutation, zero-padded to whole groups).
// Where the M × N tiles are too few to fill the device (prefill of 64-256 tokens: 32-344 blocks on 132 multiprocessors,
// each waiting on its own loads between barriers), K is split S ways (grid z): each split writes its partial C into a
// scratch the kernels own and GemmReduceKernel sums the S partials in order (deterministic, no atomics); the scratch is
// shared, so batched products must not run on concurrent streams. The block is 16×16 threads on CUDA (ty halves for a
// few tokens) and 4×4 within the group limit of ILGPU's CPU accelerator, where CI runs the same kernels.
// Measured on the H200 (bench/README.md): 10-17 TFLOP/s float32, a quarter of the FMA peak. Since the twelfth session F16
// weights and SpQR layers (as fp16 Ŵ) take the tensor-core product of GpuKernels.GemmTc.cs where it applies; this GEMM
// stays for F32 and BF16 weights, K % 8 ≠ 0, and accelerators without 32-lane warps (ILGPU's default CPU accelerator).
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
    private const int GemmBK = 16, GemmMaxBM = 128, GemmMaxBN = 128, GemmPad = 4;
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

    /// <summary>Device floats of the scratch a batched SpQR matmul of T tokens needs: X' (T, 16·groups), then what the
    /// tensor-core path adds (GpuKernels.SpqrTcGemm.cs: per-token statistics and fp16 fragments).</summary>
    public static long SpqrMatMulScratch(GpuSpqrLayer w, int T) => (long)T * w.Dims.Groups * 16 + TcGemmExtra(w.Dims, T);

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
        _gatherRows ??= Load<ArrayView<float>, ArrayView<int>, ArrayView<float>, int, int, int>(GatherRowsKernel);
        _gemmSpqr ??= Load<ArrayView<float>, ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<float>, SpqrDims, int, int>(GemmSpqrKernel);
        _spqrOutliers ??= Load<ArrayView<float>, ArrayView<int>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, int, int, int>(SpqrOutlierKernel);
        long gathers = (long)T * padded, outputs = (long)T * d.Rows;
        _gatherRows(new KernelConfig((int)((gathers + blk - 1) / blk), blk), X, w.Perm.View, xp, T, d.Cols, padded);
        CheckFormatCodes(w, TcGemmLanes(w), "batched product");
        bool folded = false; // the outliers already in the product (the packed fp16 Ŵ)
        if (TcGemmApplies(w))
            SpqrMatMulTc(w, xp, T, Y, scratch.SubView((long)T * padded));
        else if (SpqrMatMulUsesTensorCores(w))
            folded = SpqrMatMulDequantTc(w, xp, T, Y);
        else
        {
            var (cfg, ks, target) = GemmPlan(T, d.Rows, padded, Y);
            _gemmSpqr(cfg, xp, w.Codes.View, w.StatCodes.View, w.Planes.View, target, d, T, ks);
            Reduce(cfg, Y, T, d.Rows);
        }
        if (!folded)
            _spqrOutliers(new KernelConfig((int)((outputs + blk - 1) / blk), blk), xp, w.OutlierRowOffsets.View, w.OutlierCols.View, w.OutlierDeltas.View, Y, T, d.Rows, padded);
    }

    /// <summary>C (M, N) = A (M, K) · B (N, K)ᵀ, all row-major float32.</summary>
    public void GemmNT(ArrayView<float> A, ArrayView<float> B, ArrayView<float> C, int M, int N, int K)
    {
        Check(A, B.Length, C, M, N, K);
        _gemmF32 ??= Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmDims>(GemmF32Kernel);
        var (cfg, ks, target) = GemmPlan(M, N, K, C);
        _gemmF32(cfg, A, B, target, new GemmDims { M = M, N = N, K = K, Ks = ks });
        Reduce(cfg, C, M, N);
    }

    /// <summary>C (M, N) = A (M, K) · B (N, K)ᵀ with B as F16 (bf16: false) or BF16 bits: F16 on the tensor cores where
    /// <see cref="GemmHalfUsesTensorCores"/> (GpuKernels.GemmTc.cs), else widened exactly in the float32 GEMM.</summary>
    public void GemmNTHalf(ArrayView<float> A, ArrayView<ushort> B, ArrayView<float> C, int M, int N, int K, bool bf16)
    {
        Check(A, B.Length, C, M, N, K);
        if (!bf16 && GemmTcApplies(K)) { GemmNTHalfTc(A, B, C, M, N, K); return; }
        _gemmHalf ??= Load<ArrayView<float>, ArrayView<ushort>, ArrayView<float>, GemmDims>(GemmHalfKernel);
        var (cfg, ks, target) = GemmPlan(M, N, K, C);
        _gemmHalf(cfg, A, B, target, new GemmDims { M = M, N = N, K = K, Bf = bf16 ? 1 : 0, Ks = ks });
        Reduce(cfg, C, M, N);
    }

    /// <summary>Y (T, n) += bias (n,) on every row.</summary>
    public void AddBias(ArrayView<float> Y, ArrayView<float> bias, int T, int n)
    {
        _addBias ??= Load<ArrayView<float>, ArrayView<float>, int, int>(AddBiasKernel);
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

    // tx × ty threads (BN = 8·tx, BM = 8·ty): 16 × 16 where the group limit allows, ty halved while half the rows
    // still cover M; then S K-splits (≥ 8 steps of 16 each) until the grid has ≥ 4 blocks per multiprocessor. Returns the
    // launch, the K range of a split and where the kernel writes: C, or the partials scratch (S, M, N) when S > 1.
    private (KernelConfig Config, int Ks, ArrayView<float> Target) GemmPlan(int M, int N, int K, ArrayView<float> C)
    {
        int tx = 16, ty = 16;
        while (tx * ty > _acc.MaxNumThreadsPerGroup) { if (tx >= ty) tx /= 2; else ty /= 2; }
        while (ty > 4 && 8 * ty / 2 >= M) ty /= 2;
        long tiles = (long)((N + 8 * tx - 1) / (8 * tx)) * ((M + 8 * ty - 1) / (8 * ty));
        int steps = (K + GemmBK - 1) / GemmBK, S = 1, want = 4 * Math.Max(1, _acc.NumMultiprocessors);
        int cap = GemmSplits > 0 ? GemmSplits : int.MaxValue;
        while (2 * S <= cap && steps / (2 * S) >= (GemmSplits > 0 ? 1 : 8) && (GemmSplits > 0 || tiles * S < want)) S *= 2;
        int ks = (steps + S - 1) / S * GemmBK;
        S = (K + ks - 1) / ks; // no empty split
        ArrayView<float> target = S > 1 ? Scratch(ref _partials, (long)S * M * N).View : C;
        var grid = new Index3D((N + 8 * tx - 1) / (8 * tx), (M + 8 * ty - 1) / (8 * ty), S);
        return (new KernelConfig(grid, new Index3D(tx, ty, 1)), ks, target);
    }

    // a kernel-owned scratch of at least n elements: grown when too small — growing frees the old buffer, and cuMemFree
    // waits for the device, so queued kernels that read it finish first
    private MemoryBuffer1D<T, Stride1D.Dense> Scratch<T>(ref MemoryBuffer1D<T, Stride1D.Dense>? buffer, long n) where T : unmanaged
    {
        if (buffer is null || buffer.Length < n) { buffer?.Dispose(); buffer = _acc.Allocate1D<T>(n); }
        return buffer;
    }

    // C = Σ over the S partials, in order (nothing to do unsplit)
    private void Reduce(KernelConfig cfg, ArrayView<float> C, int M, int N) => ReduceSplits(cfg.GridDim.Z, C, M, N);

    // C = Σ over the S partials (S, M, N) in the partials scratch, in order
    private void ReduceSplits(int S, ArrayView<float> C, int M, int N)
    {
        if (S == 1) return;
        _gemmReduce ??= Load<ArrayView<float>, ArrayView<float>, int, int>(GemmReduceKernel);
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
        int BM = 8 * ny, BN = 8 * nx, sa = BM + GemmPad, sbs = BN + GemmPad, tid = ty * nx + tx, nt = nx * ny;
        int m0 = Grid.IdxY * BM, n0 = Grid.IdxX * BN, hm = BM / 2, hb = BN / 2;
        // split z: K range [kb, ke), its partial C at z·M·N of the target (C itself unsplit)
        int kb = Grid.IdxZ * Ks, ke = Math.Min(K, kb + Ks);
        Acc8x8 acc = default;
        for (int k0 = kb; k0 < ke; k0 += GemmBK)
        {
            // A slice (BM, 16), consecutive threads reading consecutive k of a row; eight independent loads per round, then
            // their stores (one load then its store per iteration left each thread waiting a memory latency per element)
            for (int e = tid; e < BM * GemmBK; e += 8 * nt)
            {
                float v0 = Ld(A, default, e, BM, m0, k0, M, K, 0), v1 = Ld(A, default, e + nt, BM, m0, k0, M, K, 0);
                float v2 = Ld(A, default, e + 2 * nt, BM, m0, k0, M, K, 0), v3 = Ld(A, default, e + 3 * nt, BM, m0, k0, M, K, 0);
                float v4 = Ld(A, default, e + 4 * nt, BM, m0, k0, M, K, 0), v5 = Ld(A, default, e + 5 * nt, BM, m0, k0, M, K, 0);
                float v6 = Ld(A, default, e + 6 * nt, BM, m0, k0, M, K, 0), v7 = Ld(A, default, e + 7 * nt, BM, m0, k0, M, K, 0);
                St(As, e, nt, BM, sa, v0, v1, v2, v3, v4, v5, v6, v7);
            }
            if (kind == 3) SpqrTile(codes, statCodes, planes, sd, Bs, n0, k0 >> 4, BN, sbs, tid, nt);
            else
                for (int e = tid; e < BN * GemmBK; e += 8 * nt)
                {
                    float v0 = Ld(Bf, Bh, e, BN, n0, k0, N, K, kind), v1 = Ld(Bf, Bh, e + nt, BN, n0, k0, N, K, kind);
                    float v2 = Ld(Bf, Bh, e + 2 * nt, BN, n0, k0, N, K, kind), v3 = Ld(Bf, Bh, e + 3 * nt, BN, n0, k0, N, K, kind);
                    float v4 = Ld(Bf, Bh, e + 4 * nt, BN, n0, k0, N, K, kind), v5 = Ld(Bf, Bh, e + 5 * nt, BN, n0, k0, N, K, kind);
                    float v6 = Ld(Bf, Bh, e + 6 * nt, BN, n0, k0, N, K, kind), v7 = Ld(Bf, Bh, e + 7 * nt, BN, n0, k0, N, K, kind);
                    St(Bs, e, nt, BN, sbs, v0, v1, v2, v3, v4, v5, v6, v7);
                }
            Group.Barrier();
            // four 16-byte shared loads per 64 FMAs (rows of both slices are 16-byte aligned: strides and offsets % 4 == 0)
            var a4 = As.Cast<F4>().AsAligned(16); var b4 = Bs.Cast<F4>().AsAligned(16);
            for (int k = 0; k < GemmBK; k++)
            {
                F4 a = a4[(k * sa >> 2) + ty], a2 = a4[(k * sa + hm >> 2) + ty], b = b4[(k * sbs >> 2) + tx], c = b4[(k * sbs + hb >> 2) + tx];
                acc.Fma(a, a2, b, c);
            }
            Group.Barrier();
        }
        int mb = m0 + 4 * ty, nb = n0 + 4 * tx;
        acc.Store(C.SubView((long)Grid.IdxZ * M * N), mb, mb + hm, nb, nb + hb, M, N);
    }

    // element e (row e / 16, k e % 16) of a (rows, 16) slice starting at (r0, k0) of a row-major (R, K) matrix, as float
    // (kind 0 float32, 1 F16 bits, 2 BF16 bits), zero outside the slice or the matrix
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static float Ld(ArrayView<float> f, ArrayView<ushort> h, int e, int rows, int r0, int k0, int R, int K, int kind)
    {
        int r = e >> 4, k = e & 15;
        if (r >= rows || r0 + r >= R || k0 + k >= K) return 0f;
        long i = (long)(r0 + r) * K + k0 + k;
        return kind == 0 ? f[i] : HalfBitsToF32(h[i], kind - 1);
    }

    // the eight elements e, e + nt, … of a round into the [k][row] slice (row stride s)
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void St(ArrayView<float> sh, int e, int nt, int rows, int s, float v0, float v1, float v2, float v3, float v4, float v5, float v6, float v7)
    {
        int n = rows * GemmBK;
        if (e < n) sh[(e & 15) * s + (e >> 4)] = v0;
        if (e + nt < n) sh[((e + nt) & 15) * s + ((e + nt) >> 4)] = v1;
        if (e + 2 * nt < n) sh[((e + 2 * nt) & 15) * s + ((e + 2 * nt) >> 4)] = v2;
        if (e + 3 * nt < n) sh[((e + 3 * nt) & 15) * s + ((e + 3 * nt) >> 4)] = v3;
        if (e + 4 * nt < n) sh[((e + 4 * nt) & 15) * s + ((e + 4 * nt) >> 4)] = v4;
        if (e + 5 * nt < n) sh[((e + 5 * nt) & 15) * s + ((e + 5 * nt) >> 4)] = v5;
        if (e + 6 * nt < n) sh[((e + 6 * nt) & 15) * s + ((e + 6 * nt) >> 4)] = v6;
        if (e + 7 * nt < n) sh[((e + 7 * nt) & 15) * s + ((e + 7 * nt) >> 4)] = v7;
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
                float v = WeightValue(q, s, z, d.Fp16);
                Bs[(8 * h + k) * sbs + n] = c0 + k < d.Cols ? v : 0f;
            }
        }
    }

    // a code's weight s·(q − z) in the stored form's arithmetic (fp16 steps for fp16-step layers)
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static float WeightValue(int q, float s, float z, int fp16) => fp16 != 0 ? H(s * H(q - z)) : s * (q - z);

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

    /// <summary>A thread's 8 × 8 block of C in registers: rows m..m+3 and m2..m2+3, columns n..n+3 and n2..n2+3.</summary>
    private struct Acc8x8
    {
        public float C00, C01, C02, C03, C04, C05, C06, C07;
        public float C10, C11, C12, C13, C14, C15, C16, C17;
        public float C20, C21, C22, C23, C24, C25, C26, C27;
        public float C30, C31, C32, C33, C34, C35, C36, C37;
        public float C40, C41, C42, C43, C44, C45, C46, C47;
        public float C50, C51, C52, C53, C54, C55, C56, C57;
        public float C60, C61, C62, C63, C64, C65, C66, C67;
        public float C70, C71, C72, C73, C74, C75, C76, C77;

        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
        public void Fma(F4 a, F4 a2, F4 b, F4 c)
        {
            C00 += a.X * b.X; C01 += a.X * b.Y; C02 += a.X * b.Z; C03 += a.X * b.W; C04 += a.X * c.X; C05 += a.X * c.Y; C06 += a.X * c.Z; C07 += a.X * c.W;
            C10 += a.Y * b.X; C11 += a.Y * b.Y; C12 += a.Y * b.Z; C13 += a.Y * b.W; C14 += a.Y * c.X; C15 += a.Y * c.Y; C16 += a.Y * c.Z; C17 += a.Y * c.W;
            C20 += a.Z * b.X; C21 += a.Z * b.Y; C22 += a.Z * b.Z; C23 += a.Z * b.W; C24 += a.Z * c.X; C25 += a.Z * c.Y; C26 += a.Z * c.Z; C27 += a.Z * c.W;
            C30 += a.W * b.X; C31 += a.W * b.Y; C32 += a.W * b.Z; C33 += a.W * b.W; C34 += a.W * c.X; C35 += a.W * c.Y; C36 += a.W * c.Z; C37 += a.W * c.W;
            C40 += a2.X * b.X; C41 += a2.X * b.Y; C42 += a2.X * b.Z; C43 += a2.X * b.W; C44 += a2.X * c.X; C45 += a2.X * c.Y; C46 += a2.X * c.Z; C47 += a2.X * c.W;
            C50 += a2.Y * b.X; C51 += a2.Y * b.Y; C52 += a2.Y * b.Z; C53 += a2.Y * b.W; C54 += a2.Y * c.X; C55 += a2.Y * c.Y; C56 += a2.Y * c.Z; C57 += a2.Y * c.W;
            C60 += a2.Z * b.X; C61 += a2.Z * b.Y; C62 += a2.Z * b.Z; C63 += a2.Z * b.W; C64 += a2.Z * c.X; C65 += a2.Z * c.Y; C66 += a2.Z * c.Z; C67 += a2.Z * c.W;
            C70 += a2.W * b.X; C71 += a2.W * b.Y; C72 += a2.W * b.Z; C73 += a2.W * b.W; C74 += a2.W * c.X; C75 += a2.W * c.Y; C76 += a2.W * c.Z; C77 += a2.W * c.W;
        }

        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
        public readonly void Store(ArrayView<float> C, int m, int m2, int n, int n2, int M, int N)
        {
            Row(C, m, n, n2, M, N, C00, C01, C02, C03, C04, C05, C06, C07);
            Row(C, m + 1, n, n2, M, N, C10, C11, C12, C13, C14, C15, C16, C17);
            Row(C, m + 2, n, n2, M, N, C20, C21, C22, C23, C24, C25, C26, C27);
            Row(C, m + 3, n, n2, M, N, C30, C31, C32, C33, C34, C35, C36, C37);
            Row(C, m2, n, n2, M, N, C40, C41, C42, C43, C44, C45, C46, C47);
            Row(C, m2 + 1, n, n2, M, N, C50, C51, C52, C53, C54, C55, C56, C57);
            Row(C, m2 + 2, n, n2, M, N, C60, C61, C62, C63, C64, C65, C66, C67);
            Row(C, m2 + 3, n, n2, M, N, C70, C71, C72, C73, C74, C75, C76, C77);
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
