// Dense batched products on the tensor cores: C (M, N) = A (M, K) · B (N, K)ᵀ with A float32 activations (M tokens) and
// B an F16 weight (N rows of K) — the prefill form of the half-precision GEMV — and SpQR layers through it, Ŵ dequantized
// to fp16 into a scratch first (SpqrMatMulDequantTc). GpuKernels.MatMul.cs keeps the float32 FMA GEMM for F32 and BF16
// weights, K % 8 ≠ 0, and devices or accelerators without 32-lane warps and 256-thread groups.
// Measured on the H100 (bench/README.md, GPU twelfth session): F16 33-70 TFLOP/s at T = 64-256 on the LLaMA shapes,
// 3.3-5.5x the float32 GEMM, 7B-shaped F16 prefill 944 → 2,856 tokens/s; cuBLAS (torch) reaches 114-575 TFLOP/s, so
// this kernel is still 3.5-8x from it (no ldmatrix, no cp.async pipeline, single-buffered shared memory). SpQR w3: Ŵ
// dequantized by the packed pass (a thread per (row, group) over 16-bit code words, pairs rounded by cvt.rn.f16x2, 32.6 µs
// for 4096x4096 = 1.0 TB/s written) with the outliers folded in (no outlier pass after the product): 2.7-5.6x the
// twelfth session's byte-wise pass + outlier pass, 7B-shaped SpQR w3 prefill 804 → 2,080 tokens/s (our F16: 2,822) on
// the H100, fourteenth session.
//
// Exactness: B's halves are exact fp16 operands; A is not, so each token row is scaled by a power of two 2^E (its max |a|
// lands in [2^14, 2^15): no fp16 overflow) and split in two fp16 parts, hi = fp16(a·2^E) and lo = fp16(a·2^E − hi)
// (GemmTcSplitKernel, once per product). mma.sync m16n8k16 multiplies exactly and accumulates in float32, so
// C = (hi·B + lo·B)·2^−E carries ~22 significant bits of each product — the float32 GEMM's class (the tests hold it to
// the same NMSE against the CPU).
//
// Tiles: a block of 8 warps owns BM = 64 tokens × BN = 128 weight rows of C and walks its K range in steps of BK = 64:
// per step the A slice (hi and lo, 64 × 64 halves each) and the B slice (128 × 64) are copied to shared memory with
// 16-byte loads (eight a thread, requested before the previous step computes) and stores; warp (wm, wn) of a 2 × 4 grid
// computes 32 tokens × 32 weight rows as 2 × 4 mma tiles, 16 mma per 16 k (hi and lo). Shared rows are 80 halves
// (160 bytes) long, so the 8-byte fragment loads of a half-warp (4 rows × 4 lanes) hit 32 distinct banks.
//
// Fragments (PTX ISA, mma.m16n8k16.row.col, lane = 4·gid + t): A {a0, a1, a2, a3} = (row gid, k 2t..2t+1), (row gid+8,
// k 2t..), (row gid, k 2t+8..), (row gid+8, k 2t+8..); B {b0, b1} = (k 2t.., col gid), (k 2t+8.., col gid); D (row gid,
// cols 2t, 2t+1), (row gid+8, cols 2t, 2t+1). The order of k inside a 16-step is free as long as A and B agree: here the
// mma's k (2t, 2t+1, 2t+8, 2t+9) are the slice's natural k 4t..4t+3, so lane t reads its a0/a2 (and b0/b1) as one 8-byte
// word at natural offset 4t — no permutation anywhere. Rows of A are tokens, rows of D tokens, columns weight rows.
//
// Where the tiles are too few to fill the device (prefill of 64-256 tokens), K is split S ways (grid z) into the
// partials scratch of the float32 GEMM and GemmReduceKernel sums them in order (deterministic, no atomics).
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace SpQR.Gpu;

/// <summary>Shape of a tensor-core product: C (M, N) = A · Bᵀ with B (N, K); A split into fp16 hi / lo rows of Kp halves
/// (Kp = K rounded up to 64, Mp rows = M rounded up to 64, the lo rows Plane halves after the hi rows); Ks the K range of
/// one split (a multiple of 64).</summary>
public struct GemmTcDims
{
    public int M, N, K, Kp, Ks;
    public long Plane;
}

public sealed partial class GpuKernels
{
    private const int TcBM = 64, TcBN = 128, TcBK = 64, TcRow = TcBK + 16; // TcRow: halves per shared row (160 bytes)

    /// <summary>F16 batched products on the tensor cores where they apply (default: on the H100, twelfth session, 3.3-5.5x
    /// the float32 GEMM at T = 64-256 on the LLaMA shapes, NMSE ≤ 1e-10 against the CPU; bench/README.md); false: the
    /// float32 FMA GEMM for every weight type.</summary>
    public bool GemmTensorCores { get; set; } = true;

    private Action<KernelConfig, ArrayView<float>, ArrayView<ushort>, ArrayView<float>, int, int, int, long>? _gemmTcSplit;
    private Action<KernelConfig, ArrayView<ushort>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, GemmTcDims>? _gemmTcHalf;
    private MemoryBuffer1D<ushort, Stride1D.Dense>? _tcHalves; // A's hi rows, then its lo rows (2 · Mp · Kp)
    private MemoryBuffer1D<float, Stride1D.Dense>? _tcInv;     // 2^−E per token row (Mp)

    // whether an F16 product of this shape runs on the tensor cores: mma needs 32-lane warps, the block 256 threads, B's
    // rows whole 16-byte chunks
    private bool GemmTcApplies(int K) => GemmTensorCores && GemmTcFits(K);
    private bool GemmTcFits(int K) => _acc.WarpSize == 32 && _acc.MaxNumThreadsPerGroup >= 256 && K % 8 == 0 && K > 0;

    /// <summary>Whether <see cref="GemmNTHalf"/> runs a product with rows of K halves on the tensor cores (with the current
    /// settings; BF16 weights never do).</summary>
    public bool GemmHalfUsesTensorCores(int K, bool bf16) => !bf16 && GemmTcApplies(K);

    // C = A · Bᵀ over F16 B on the tensor cores (GemmTcApplies checked by the caller)
    private void GemmNTHalfTc(ArrayView<float> A, ArrayView<ushort> B, ArrayView<float> C, int M, int N, int K)
    {
        int Mp = (M + TcBM - 1) / TcBM * TcBM, Kp = (K + TcBK - 1) / TcBK * TcBK;
        long plane = (long)Mp * Kp;
        ArrayView<ushort> halves = Scratch(ref _tcHalves, 2 * plane).View;
        ArrayView<float> inv = Scratch(ref _tcInv, Mp).View;
        _gemmTcSplit ??= Load<ArrayView<float>, ArrayView<ushort>, ArrayView<float>, int, int, int, long>(GemmTcSplitKernel);
        _gemmTcSplit(new KernelConfig(Mp, 256), A, halves, inv, M, K, Kp, plane);
        int tilesN = (N + TcBN - 1) / TcBN, tilesM = Mp / TcBM, steps = Kp / TcBK;
        long tiles = (long)tilesN * tilesM;
        // K splits (each ≥ 4 steps of 64) until the grid holds two blocks per multiprocessor; GemmSplits caps them
        int S = 1, want = 2 * Math.Max(1, _acc.NumMultiprocessors), cap = GemmSplits > 0 ? GemmSplits : 16;
        while (2 * S <= cap && steps / (2 * S) >= (GemmSplits > 0 ? 1 : 4) && (GemmSplits > 0 || tiles * S < want)) S *= 2;
        int ks = (steps + S - 1) / S * TcBK;
        S = (Kp + ks - 1) / ks;
        ArrayView<float> target = S > 1 ? Scratch(ref _partials, (long)S * M * N).View : C;
        _gemmTcHalf ??= Load<ArrayView<ushort>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, GemmTcDims>(GemmTcHalfKernel);
        _gemmTcHalf(new KernelConfig(new Index3D(tilesN, tilesM, S), new Index3D(256, 1, 1)), halves, B, inv, target,
                    new GemmTcDims { M = M, N = N, K = K, Kp = Kp, Ks = ks, Plane = plane });
        ReduceSplits(S, C, M, N);
    }

    /// <summary>Batched SpQR products (prefill) as Ŵ dequantized to fp16 into a device scratch, then the tensor-core
    /// product over it (default, where <see cref="SpqrMatMulUsesTensorCores"/>: on the H100, twelfth session, 1.06-1.28x
    /// the float32 GEMM that decodes its tiles — the dequantizing pass takes most of it; NMSE ~9e-9 against the CPU);
    /// false: that float32 GEMM.</summary>
    public bool SpqrGemmDequantTc { get; set; } = true;
    // the largest Ŵ (rows × 16·groups halves) the dequantized path takes: 512 MB of scratch (LLaMA-65B's 8192x22016 fits)
    private const long DequantMaxHalves = 1L << 28;
    private MemoryBuffer1D<ushort, Stride1D.Dense>? _dequant;
    private Action<KernelConfig, ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<ushort>, SpqrDims>? _spqrDequant;

    /// <summary>Whether <see cref="SpqrMatMul"/> runs this layer as fp16 Ŵ on the tensor cores (with the current settings):
    /// the format's codes on the device, a 32-lane device, Ŵ within 2^28 halves, and neither opt-in tensor-core product of
    /// GpuKernels.SpqrTcGemm.cs asked for.</summary>
    public bool SpqrMatMulUsesTensorCores(GpuSpqrLayer w)
        => SpqrGemmDequantTc && w.HasFormatCodes && !TcGemmApplies(w) && GemmTcFits(16 * w.Dims.Groups)
           && (long)w.Dims.Rows * 16 * w.Dims.Groups <= DequantMaxHalves;

    /// <summary>The dequantizing pass of <see cref="SpqrMatMul"/>'s fp16 path as a thread per (row, group) over the group's
    /// codes as 16-bit words, the weights rounded in pairs (cvt.rn.f16x2.f32), and the outliers folded into Ŵ by a second
    /// small pass (base + delta rounded once to fp16; no outlier pass after the product) — default where it applies (wbits
    /// ≤ 4: a group's 2·b bytes are b whole 16-bit words); false: the twelfth session's pass (byte loads, software rounding) and the outlier
    /// pass after the product, for benchmarks comparing the two.</summary>
    public bool SpqrDequantPacked { get; set; } = true;
    private Action<KernelConfig, ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<ushort>, SpqrDims>? _spqrDequantPacked;
    private Action<KernelConfig, ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<int>, ArrayView<ushort>, ArrayView<float>, ArrayView<ushort>, SpqrDims>? _spqrFoldOutliers;

    private bool DequantPackedApplies(SpqrDims d) => SpqrDequantPacked && d.WBits <= 4;

    /// <summary>Ŵ (rows, 16·groups) as fp16 bits into <paramref name="wh"/>, columns in the layer's permuted order (zeros past
    /// cols): s·(q − z) in the stored form's arithmetic rounded once to fp16 and, from the packed pass, each outlier's
    /// position holding fp16(s·(q − z) + delta). Returns whether the outliers are in it (the packed pass folds them; the
    /// byte-wise pass leaves them to the caller). The fp16 path of <see cref="SpqrMatMul"/>; public for benchmarks and
    /// tests.</summary>
    public bool SpqrDequantizeHalf(GpuSpqrLayer w, ArrayView<ushort> wh)
    {
        var d = w.Dims;
        long pairs = (long)d.Rows * d.Groups;
        if (wh.Length < pairs * 16) throw new ArgumentException($"SpqrDequantizeHalf: the fp16 scratch holds {wh.Length} halves, need {pairs * 16}");
        if (!w.HasFormatCodes) throw new InvalidOperationException("SpqrDequantizeHalf: the layer was uploaded without the format's codes");
        int blk = Math.Min(256, _acc.MaxNumThreadsPerGroup);
        var cfg = new KernelConfig((int)((pairs + blk - 1) / blk), blk);
        if (!DequantPackedApplies(d))
        {
            _spqrDequant ??= Load<ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<ushort>, SpqrDims>(SpqrDequantHalfKernel);
            _spqrDequant(cfg, w.Codes.View, w.StatCodes.View, w.Planes.View, wh, d);
            return false;
        }
        _spqrDequantPacked ??= Load<ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<ushort>, SpqrDims>(SpqrDequantHalfPackedKernel);
        _spqrDequantPacked(cfg, w.Codes.View, w.StatCodes.View, w.Planes.View, wh, d);
        // a warp per row over its CSR range (rows with none leave at once)
        _spqrFoldOutliers ??= Load<ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<int>, ArrayView<ushort>, ArrayView<float>, ArrayView<ushort>, SpqrDims>(SpqrFoldOutliersHalfKernel);
        long threads = (long)d.Rows * 32;
        _spqrFoldOutliers(new KernelConfig((int)((threads + blk - 1) / blk), blk), w.Codes.View, w.StatCodes.View, w.Planes.View,
                          w.OutlierRowOffsets.View, w.OutlierCols.View, w.OutlierDeltas.View, wh, d);
        return true;
    }

    // Y (T, rows) = X' · Ŵᵀ: Ŵ (rows, 16·G) dequantized to fp16 — the stored form's arithmetic (s·(q − z), fp16 steps for
    // fp16-step layers, whose values are then exact), rounded once to fp16 for float32 layers (relative 2^−12 a weight,
    // 2^−25 absolute below fp16's normal range: the SpQR authors' kernels decode to fp16 too) — then the F16 product.
    // Returns whether Ŵ held the outliers (else the caller's outlier pass adds them).
    private bool SpqrMatMulDequantTc(GpuSpqrLayer w, ArrayView<float> xp, int T, ArrayView<float> Y)
    {
        var d = w.Dims;
        int padded = 16 * d.Groups;
        // Ŵ is decoded again on every call: the scratch is shared by all layers (a dense fp16 copy per layer would be the F16
        // model's memory)
        ArrayView<ushort> wh = Scratch(ref _dequant, (long)d.Rows * padded).View;
        bool folded = SpqrDequantizeHalf(w, wh);
        GemmNTHalfTc(xp, wh, Y, T, d.Rows, padded);
        return folded;
    }

    // thread per (row r, group g): its 16 weights s·(q − z) as fp16 bits into Wh[r, 16g ..] (zero past cols)
    private static void SpqrDequantHalfKernel(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<ushort> Wh, SpqrDims d)
    {
        long i = Grid.GlobalIndex.X;
        if (i >= (long)d.Rows * d.Groups) return;
        int r = (int)(i / d.Groups), g = (int)(i % d.Groups), b = d.WBits;
        GroupStat(statCodes, planes, d, r, g, out float s, out float z);
        long p = (long)r * d.RowBytes + (long)g * 2 * b;
        ulong word = 0;
        if (b <= 4) for (int j = 0; j < 2 * b; j++) word |= (ulong)codes[p + j] << (8 * j);
        var w4 = Wh.Cast<U4>().AsAligned(16);
        long at = (i * 16) >> 3; // r·16G + 16g halves, in 8-half chunks
        uint h0 = 0, h1 = 0, h2 = 0, h3 = 0, h4 = 0, h5 = 0, h6 = 0, h7 = 0;
        for (int k = 0; k < 16; k++)
        {
            int q = b <= 4 ? (int)((word >> (b * k)) & (ulong)((1 << b) - 1)) : HalfCode(codes, p, b, k);
            float v = WeightValue(q, s, z, d.Fp16);
            uint bits = g * 16 + k < d.Cols ? F16Bits(H(v)) : 0u;
            uint sh = (uint)(16 * (k & 1));
            switch (k >> 1)
            {
                case 0: h0 |= bits << (int)sh; break;
                case 1: h1 |= bits << (int)sh; break;
                case 2: h2 |= bits << (int)sh; break;
                case 3: h3 |= bits << (int)sh; break;
                case 4: h4 |= bits << (int)sh; break;
                case 5: h5 |= bits << (int)sh; break;
                case 6: h6 |= bits << (int)sh; break;
                default: h7 |= bits << (int)sh; break;
            }
        }
        w4[at] = new U4 { X = h0, Y = h1, Z = h2, W = h3 };
        w4[at + 1] = new U4 { X = h4, Y = h5, Z = h6, W = h7 };
    }

    // thread per (row r, group g), wbits ≤ 4: the group's 2·b bytes as b 16-bit words (one 64-bit code
    // stream), its 16 weights s·(q − z) rounded in pairs into Wh[r, 16g ..] as two 16-byte stores (zero past cols)
    private static void SpqrDequantHalfPackedKernel(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<ushort> Wh, SpqrDims d)
    {
        int i = Grid.GlobalIndex.X, G = d.Groups;
        if (i >= d.Rows * G) return;
        int r = i / G, g = i - r * G, b = d.WBits;
        GroupStat(statCodes, planes, d, r, g, out float s, out float z);
        var c2 = codes.Cast<ushort>();
        long p = (long)r * (d.RowBytes >> 1) + (long)g * b;
        ulong word = c2[p] | (ulong)c2[p + 1] << 16;
        if (b > 2) word |= (ulong)c2[p + 2] << 32;
        if (b > 3) word |= (ulong)c2[p + 3] << 48;
        int valid = d.Cols - 16 * g; // ≥ 16 but for the last group of a ragged row
        uint m = (1u << b) - 1;
        var w4 = Wh.Cast<U4>().AsAligned(16);
        long at = 2L * i;
        w4[at] = new U4
        {
            X = DequantPair(word, b, 0, m, s, z, valid, d.Fp16), Y = DequantPair(word, b, 2, m, s, z, valid, d.Fp16),
            Z = DequantPair(word, b, 4, m, s, z, valid, d.Fp16), W = DequantPair(word, b, 6, m, s, z, valid, d.Fp16),
        };
        w4[at + 1] = new U4
        {
            X = DequantPair(word, b, 8, m, s, z, valid, d.Fp16), Y = DequantPair(word, b, 10, m, s, z, valid, d.Fp16),
            Z = DequantPair(word, b, 12, m, s, z, valid, d.Fp16), W = DequantPair(word, b, 14, m, s, z, valid, d.Fp16),
        };
    }

    // codes k and k + 1 (k even, a constant) of a group's code stream as one fp16 pair (k in the low half), zero from
    // column `valid` on
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static uint DequantPair(ulong word, int b, int k, uint m, float s, float z, int valid, int fp16)
    {
        uint q0 = (uint)(word >> (b * k)) & m, q1 = (uint)(word >> (b * k + b)) & m;
        float v0 = k < valid ? WeightValue((int)q0, s, z, fp16) : 0f;
        float v1 = k + 1 < valid ? WeightValue((int)q1, s, z, fp16) : 0f;
        return PackHalf2(v0, v1);
    }

    // fp16(lo) | fp16(hi) << 16, round to nearest even: one cvt.rn.f16x2.f32 on CUDA (sm_80+, as the mma paths)
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static uint PackHalf2(float lo, float hi)
    {
        if (CudaAsm.IsSupported)
        {
            uint r;
            CudaAsm.Emit("cvt.rn.f16x2.f32 %0, %1, %2;", out r, hi, lo);
            return r;
        }
        return F16Bits(H(lo)) | ((uint)F16Bits(H(hi)) << 16);
    }

    // a warp per row r: each of its outliers' positions in Wh set to fp16(s·(q − z) + delta), the base weight recomputed in
    // float from its code (ascending unique columns per row: the format's rule, so no two lanes write one place)
    private static void SpqrFoldOutliersHalfKernel(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<int> offsets,
                                                   ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<ushort> Wh, SpqrDims d)
    {
        long i = Grid.GlobalIndex.X;
        int r = (int)(i >> 5), lane = (int)(i & 31), b = d.WBits;
        if (r >= d.Rows) return;
        int lo = offsets[r], hi = offsets[r + 1];
        long row = (long)r * 16 * d.Groups;
        for (int e = lo + lane; e < hi; e += 32)
        {
            int c = ocols[e];
            int q = HalfCode(codes, (long)r * d.RowBytes + (long)(c >> 3) * b, b, c & 7); // its half-group's b bytes
            GroupStat(statCodes, planes, d, r, c >> 4, out float s, out float z);
            float v = WeightValue(q, s, z, d.Fp16) + deltas[e];
            Wh[row + c] = F16Bits(H(v));
        }
    }

    // One block per token row m of the padded Mp: 2^E from the row's max |a| (E = 14 − ⌊log2 max⌋, kept where 2^±E are
    // normal floats; 0 for a zero row), then hi = fp16(a·2^E) into row m of the hi plane and lo = fp16(a·2^E − hi) into the
    // lo plane (zeros past K and past M), 2^−E into inv[m].
    private static void GemmTcSplitKernel(ArrayView<float> A, ArrayView<ushort> halves, ArrayView<float> inv, int M, int K, int Kp, long plane)
    {
        int m = Grid.IdxX, tid = Group.IdxX, nt = Group.DimX;
        long row = (long)m * K, at = (long)m * Kp;
        float mx = 0;
        if (m < M) for (int k = tid; k < K; k += nt) mx = Math.Max(mx, Math.Abs(A[row + k]));
        mx = BlockReduce(mx, true);
        int e = mx > 0 ? Math.Min(100, Math.Max(-100, 141 - (int)((Interop.FloatAsInt(mx) >> 23) & 0xFF))) : 0;
        float s = Interop.IntAsFloat((uint)(127 + e) << 23);
        if (tid == 0) inv[m] = Interop.IntAsFloat((uint)(127 - e) << 23);
        for (int k = tid; k < Kp; k += nt)
        {
            float v = m < M && k < K ? A[row + k] * s : 0f;
            float h = H(v);
            halves[at + k] = F16Bits(h);
            halves[plane + at + k] = F16Bits(H(v - h));
        }
    }

    // the 16-byte chunks a thread copies per step: A's 2 · 64 rows (hi, then lo) and B's 128 rows, 8 chunks a row
    internal struct TcStage { public U4 A0, A1, A2, A3, B0, B1, B2, B3; }

    private static void GemmTcHalfKernel(ArrayView<ushort> halves, ArrayView<ushort> B, ArrayView<float> inv, ArrayView<float> C, GemmTcDims d)
    {
        var sh = SharedMemory.Allocate<U4>((2 * TcBM + TcBN) * TcRow / 8); // rows of 10 chunks: A hi 0-63, A lo 64-127, B 128-255
        var s4 = sh.AsAligned(16);
        var s8 = sh.Cast<ulong>().AsAligned(8);
        var a4 = halves.Cast<U4>().AsAligned(16);
        var b4 = B.Cast<U4>().AsAligned(16);
        int tid = Group.IdxX, lane = Warp.LaneIdx, gid = lane >> 2, t = lane & 3, w = tid >> 5, wm = w >> 2, wn = w & 3;
        int m0 = Grid.IdxY * TcBM, n0 = Grid.IdxX * TcBN;
        int kb = Grid.IdxZ * d.Ks, ke = Math.Min(d.Kp, kb + d.Ks);
        // this thread's chunks: index tid + 256·i (i = 0..3) of each operand, row = index / 8, chunk = index % 8
        int cr = tid >> 3, cc = tid & 7;
        Acc2x4 acc = default;
        var st = TcStageLoad(a4, b4, d, m0, n0, kb, cr, cc);
        for (int k0 = kb; k0 < ke; k0 += TcBK)
        {
            s4[cr * 10 + cc] = st.A0; s4[(cr + 32) * 10 + cc] = st.A1; s4[(cr + 64) * 10 + cc] = st.A2; s4[(cr + 96) * 10 + cc] = st.A3;
            s4[(cr + 128) * 10 + cc] = st.B0; s4[(cr + 160) * 10 + cc] = st.B1; s4[(cr + 192) * 10 + cc] = st.B2; s4[(cr + 224) * 10 + cc] = st.B3;
            Group.Barrier();
            if (k0 + TcBK < ke) st = TcStageLoad(a4, b4, d, m0, n0, k0 + TcBK, cr, cc); // in flight while this step computes
            for (int kk = 0; kk < 4; kk++)
            {
                int o = kk * 4 + t; // 8-byte word of natural k 16·kk + 4t in a row of 20 words
                acc.Step(s8, o, wm * 32 + gid, 128 + wn * 32 + gid);
            }
            Group.Barrier();
        }
        var target = C.SubView((long)Grid.IdxZ * d.M * d.N);
        int mb = m0 + wm * 32 + gid, nb = n0 + wn * 32 + 2 * t;
        acc.Store(target, inv, mb, nb, d.M, d.N);
    }

    // a step's chunks into registers: A rows m0 + r (hi) and the same rows of the lo plane — rows past M are zeros in the
    // split planes, k past K too (Kp) — and B rows n0 + r, zero past N or K (K % 8 == 0: a chunk is all in or all out)
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static TcStage TcStageLoad(ArrayView<U4> a4, ArrayView<U4> b4, GemmTcDims d, int m0, int n0, int k0, int cr, int cc)
    {
        var s = new TcStage();
        long kp8 = d.Kp >> 3, p8 = d.Plane >> 3, ka = (k0 >> 3) + cc;
        s.A0 = a4[(m0 + cr) * kp8 + ka];
        s.A1 = a4[(m0 + cr + 32) * kp8 + ka];
        s.A2 = a4[p8 + (m0 + cr) * kp8 + ka];
        s.A3 = a4[p8 + (m0 + cr + 32) * kp8 + ka];
        int k = k0 + 8 * cc;
        long k8 = d.K >> 3, kb = k >> 3;
        bool kin = k < d.K;
        int n = n0 + cr;
        if (kin && n < d.N) s.B0 = b4[n * k8 + kb];
        if (kin && n + 32 < d.N) s.B1 = b4[(n + 32) * k8 + kb];
        if (kin && n + 64 < d.N) s.B2 = b4[(n + 64) * k8 + kb];
        if (kin && n + 96 < d.N) s.B3 = b4[(n + 96) * k8 + kb];
        return s;
    }

    /// <summary>A warp's 32 tokens × 32 weight rows of C: 2 × 4 mma tiles of 16 × 8, four floats a lane each.</summary>
    internal struct Acc2x4
    {
        public float C00, C01, C02, C03, C10, C11, C12, C13, C20, C21, C22, C23, C30, C31, C32, C33;
        public float D00, D01, D02, D03, D10, D11, D12, D13, D20, D21, D22, D23, D30, D31, D32, D33;

        // one 16-k step from shared memory (rows of 20 8-byte words; word o is this lane's): A rows ra, ra + 8 (tile 0) and
        // ra + 16, ra + 24 (tile 1), hi and lo (64 rows further); B rows rb + 8·j
        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
        public void Step(ArrayView<ulong> s8, int o, int ra, int rb)
        {
            ulong b0 = s8[rb * 20 + o], b1 = s8[(rb + 8) * 20 + o], b2 = s8[(rb + 16) * 20 + o], b3 = s8[(rb + 24) * 20 + o];
            for (int part = 0; part < 2; part++)
            {
                int r = ra + 64 * part;
                ulong x0 = s8[r * 20 + o], x1 = s8[(r + 8) * 20 + o], y0 = s8[(r + 16) * 20 + o], y1 = s8[(r + 24) * 20 + o];
                uint a0 = (uint)x0, a1 = (uint)x1, a2 = (uint)(x0 >> 32), a3 = (uint)(x1 >> 32);
                uint e0 = (uint)y0, e1 = (uint)y1, e2 = (uint)(y0 >> 32), e3 = (uint)(y1 >> 32);
                Mma16816(a0, a1, a2, a3, (uint)b0, (uint)(b0 >> 32), ref C00, ref C01, ref C02, ref C03);
                Mma16816(a0, a1, a2, a3, (uint)b1, (uint)(b1 >> 32), ref C10, ref C11, ref C12, ref C13);
                Mma16816(a0, a1, a2, a3, (uint)b2, (uint)(b2 >> 32), ref C20, ref C21, ref C22, ref C23);
                Mma16816(a0, a1, a2, a3, (uint)b3, (uint)(b3 >> 32), ref C30, ref C31, ref C32, ref C33);
                Mma16816(e0, e1, e2, e3, (uint)b0, (uint)(b0 >> 32), ref D00, ref D01, ref D02, ref D03);
                Mma16816(e0, e1, e2, e3, (uint)b1, (uint)(b1 >> 32), ref D10, ref D11, ref D12, ref D13);
                Mma16816(e0, e1, e2, e3, (uint)b2, (uint)(b2 >> 32), ref D20, ref D21, ref D22, ref D23);
                Mma16816(e0, e1, e2, e3, (uint)b3, (uint)(b3 >> 32), ref D30, ref D31, ref D32, ref D33);
            }
        }

        // C[m, n] = acc · 2^−E(m) for the lane's tokens mb, mb + 8 (tile 0), mb + 16, mb + 24 (tile 1) and weight rows
        // nb + 8·j, + 1
        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
        public readonly void Store(ArrayView<float> C, ArrayView<float> inv, int mb, int nb, int M, int N)
        {
            float i0 = inv[mb], i1 = inv[mb + 8], i2 = inv[mb + 16], i3 = inv[mb + 24]; // Mp rows: always inside
            Pair(C, mb, nb, M, N, C00 * i0, C01 * i0); Pair(C, mb + 8, nb, M, N, C02 * i1, C03 * i1);
            Pair(C, mb, nb + 8, M, N, C10 * i0, C11 * i0); Pair(C, mb + 8, nb + 8, M, N, C12 * i1, C13 * i1);
            Pair(C, mb, nb + 16, M, N, C20 * i0, C21 * i0); Pair(C, mb + 8, nb + 16, M, N, C22 * i1, C23 * i1);
            Pair(C, mb, nb + 24, M, N, C30 * i0, C31 * i0); Pair(C, mb + 8, nb + 24, M, N, C32 * i1, C33 * i1);
            Pair(C, mb + 16, nb, M, N, D00 * i2, D01 * i2); Pair(C, mb + 24, nb, M, N, D02 * i3, D03 * i3);
            Pair(C, mb + 16, nb + 8, M, N, D10 * i2, D11 * i2); Pair(C, mb + 24, nb + 8, M, N, D12 * i3, D13 * i3);
            Pair(C, mb + 16, nb + 16, M, N, D20 * i2, D21 * i2); Pair(C, mb + 24, nb + 16, M, N, D22 * i3, D23 * i3);
            Pair(C, mb + 16, nb + 24, M, N, D30 * i2, D31 * i2); Pair(C, mb + 24, nb + 24, M, N, D32 * i3, D33 * i3);
        }

        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
        private static void Pair(ArrayView<float> C, int m, int n, int M, int N, float v0, float v1)
        {
            if (m >= M) return;
            long i = (long)m * N + n;
            if (n < N) C[i] = v0;
            if (n + 1 < N) C[i + 1] = v1;
        }
    }
}
