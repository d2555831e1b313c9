// GEMV y = W·x on the device, W row-major [rows, cols] in F32, F16 or BF16 (raw bits, converted in the kernel: F16
// with the same exact-for-finite trick as the CPU: sign-extend, shift 13, mask, ×2^112; BF16 is the top half of a
// float32, bits << 16). One warp per row: lanes stride the row, then a shuffle reduction; half precision with x staged
// in shared memory and 16-byte loads of eight halves (cols % 8 == 0, x ≤ 48 KB), else 64-bit loads of four halves when
// cols % 4 == 0; y += W·x on request (the decoder's residual add in the epilogue: each row's one writer adds
// its y). Argmax: one thread group, strided maxima, then a shared-memory tree (first index on ties).
// RMSNorm (and the residual add fused into it): a thread group per row, the block reductions shared with the decode kernels.
// Mirrors Cpu/CpuKernels.Gemv.cs.
using ILGPU;
using ILGPU.Runtime;

namespace SpQR.Gpu;

public sealed partial class GpuKernels
{
    private readonly Accelerator _acc;
    private readonly MemoryBuffer1D<int, Stride1D.Dense> _attnDone;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int> _gemvF32;
    private readonly Action<KernelConfig, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, int, int, int> _gemvF16;
    private readonly Action<KernelConfig, ArrayView<ulong>, ArrayView<float>, ArrayView<float>, int, int, int> _gemvF16x4;
    private Action<KernelConfig, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, int, int, int>? _gemvF16x8;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float> _rmsNorm;
    private Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float>? _addRmsNorm;
    private Action<KernelConfig, ArrayView<float>, ArrayView<int>, int>? _argmax;

    public GpuKernels(Accelerator acc)
    {
        _acc = acc;
        InitProgrammatic();
        // the decode attention's per-head completion counters (AttentionSplitKernel; zero between launches); allocated here,
        // not at the first call, which may be inside a CUDA graph capture
        _attnDone = acc.Allocate1D<int>(1024);
        _attnDone.MemSetToZero();
        _gemvF32 = Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int>(GemvF32Kernel);
        _gemvF16 = Load<ArrayView<ushort>, ArrayView<float>, ArrayView<float>, int, int, int>(GemvHalfKernel);
        _gemvF16x4 = Load<ArrayView<ulong>, ArrayView<float>, ArrayView<float>, int, int, int>(GemvHalfx4Kernel);
        _rmsNorm = Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float>(RmsNormKernel);
    }

    private KernelConfig RowsConfig(int rows, out int rowsPerGroup)
    {
        int warp = _acc.WarpSize;
        rowsPerGroup = Math.Max(1, Math.Min(8, _acc.MaxNumThreadsPerGroup / warp));
        int groups = (rows + rowsPerGroup - 1) / rowsPerGroup;
        return new KernelConfig(groups, warp * rowsPerGroup);
    }

    // W (rows, cols) F32 @ x (cols,) -> y (rows,); accumulate: y += W·x (the residual add in the epilogue: each row's one
    // writer reads its y first)
    public void GemvF32(ArrayView<float> W, ArrayView<float> x, ArrayView<float> y, int rows, int cols, bool accumulate = false)
        => _gemvF32(RowsConfig(rows, out _), W, x, y, rows, cols, accumulate ? 1 : 0);

    // W (rows, cols) F16 bits @ x (cols,) -> y (rows,) (or y += W·x); W finite (loaders check)
    public void GemvF16(ArrayView<ushort> W, ArrayView<float> x, ArrayView<float> y, int rows, int cols, bool accumulate = false)
        => GemvHalf(W, x, y, rows, cols, accumulate ? HalfAccumulate : 0);

    // W (rows, cols) BF16 bits @ x (cols,) -> y (rows,) (or y += W·x): the F16 kernels with the BF16 conversion
    public void GemvBF16(ArrayView<ushort> W, ArrayView<float> x, ArrayView<float> y, int rows, int cols, bool accumulate = false)
        => GemvHalf(W, x, y, rows, cols, HalfBF16 | (accumulate ? HalfAccumulate : 0));

    /// <summary>The half-precision GEMV with x staged in shared memory and 16-byte weight loads (GemvHalfx8Kernel) where
    /// cols % 8 == 0 and x fits 48 KB (default); false: the 64-bit-load kernel reading x from global memory (the kernel
    /// before the tenth session).</summary>
    public bool GemvHalfStaged { get; set; } = true;

    // x of at most 12,288 floats (48 KB: a block's shared memory without the opt-in) is staged
    private const int HalfStagedMaxCols = 12288;

    // The staged kernel where it applies (H200, tenth session: 12.4 / 28.2 / 36.8 µs against 17.7 / 36.8 / 44.3 for
    // 4096x4096 / 11008x4096 / 4096x11008), else 4 halves per 64-bit load when rows stay 8-byte aligned (cols % 4 == 0),
    // else one half per load. (Eight halves per 16-byte load with x read as scalars from global memory was slower than
    // the 64-bit kernel: 22.0 / 53.0 / 55.2 against 17.9 / 36.8 / 44.5 µs.)
    private void GemvHalf(ArrayView<ushort> W, ArrayView<float> x, ArrayView<float> y, int rows, int cols, int flags)
    {
        var rc = RowsConfig(rows, out _);
        if (GemvHalfStaged && cols % 8 == 0 && cols <= HalfStagedMaxCols)
        {
            _gemvF16x8 ??= Load<ArrayView<ushort>, ArrayView<float>, ArrayView<float>, int, int, int>(GemvHalfx8Kernel);
            _gemvF16x8(new KernelConfig(rc.GridDim, rc.GroupDim, SharedMemoryConfig.RequestDynamic<float>(cols)), W, x, y, rows, cols / 8, flags);
        }
        else if (cols % 4 == 0) _gemvF16x4(rc, W.Cast<ulong>(), x, y, rows, cols / 4, flags);
        else _gemvF16(rc, W, x, y, rows, cols, flags);
    }

    // the half-precision GEMVs' flags: BF16 weights (else F16), y += W·x (else y = W·x)
    private const int HalfBF16 = 1, HalfAccumulate = 2;

    /// <summary>index (1,) = the first index of the largest value of x (n,), NaN-free input (CpuKernels.Argmax).</summary>
    public void Argmax(ArrayView<float> x, ArrayView<int> index, int n)
    {
        if (n <= 0) throw new ArgumentOutOfRangeException(nameof(n), n, "argmax of an empty vector");
        _argmax ??= Load<ArrayView<float>, ArrayView<int>, int>(ArgmaxKernel);
        int t = 1;
        while (t * 2 <= Math.Min(256, _acc.MaxNumThreadsPerGroup)) t *= 2;
        _argmax(new KernelConfig(1, t), x, index, n);
    }

    private static void ArgmaxKernel(ArrayView<float> x, ArrayView<int> index, int n)
    {
        var bv = SharedMemory.Allocate<float>(256);
        var bi = SharedMemory.Allocate<int>(256);
        int t = Group.IdxX, T = Group.DimX;
        float best = float.NegativeInfinity; int at = int.MaxValue;
        for (int i = t; i < n; i += T)
        {
            float v = x[i];
            if (v > best || (v == best && i < at)) { best = v; at = i; }
        }
        bv[t] = best; bi[t] = at;
        Group.Barrier();
        for (int s = T / 2; s > 0; s /= 2)
        {
            if (t < s)
            {
                float v = bv[t + s]; int i = bi[t + s];
                if (v > bv[t] || (v == bv[t] && i < bi[t])) { bv[t] = v; bi[t] = i; }
            }
            Group.Barrier();
        }
        if (t == 0) index[0] = bi[0] == int.MaxValue ? 0 : bi[0];
    }

    // the low 16 bits as F16 or BF16 (flags & HalfBF16), widened to float
    private static float HalfBitsToF32(uint bits, int flags) => (flags & HalfBF16) != 0 ? Interop.IntAsFloat((bits & 0xFFFFu) << 16) : F16BitsToF32(bits);

    // x (rows, n) -> dst (rows, n) = w * x / sqrt(mean(x²) + eps), a thread group per row (a decode step normalizes one
    // row: a single warp left the device idle for microseconds)
    public void RmsNorm(ArrayView<float> x, ArrayView<float> w, ArrayView<float> dst, int rows, float eps)
        => _rmsNorm(new KernelConfig(rows, RmsThreads((int)w.Length)), x, w, dst, (int)w.Length, eps);

    /// <summary>The residual add fused with the next RMSNorm: x (rows, n) += y, then dst = w * x / sqrt(mean(x²) + eps) —
    /// one launch instead of two (the decoder layer's add before its norm).</summary>
    public void AddRmsNorm(ArrayView<float> x, ArrayView<float> y, ArrayView<float> w, ArrayView<float> dst, int rows, float eps)
    {
        _addRmsNorm ??= Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float>(AddRmsNormKernel);
        _addRmsNorm(new KernelConfig(rows, RmsThreads((int)w.Length)), x, y, w, dst, (int)w.Length, eps);
    }

    // the largest thread group up to 1024 threads, in whole warps (norms, attention)
    private int GroupThreads => Math.Min(1024, _acc.MaxNumThreadsPerGroup) / _acc.WarpSize * _acc.WarpSize;

    // about 8 elements a thread (n = 4096: 512 threads), so each thread's x and w fit in registers (RmsNormBody), within
    // [one warp, GroupThreads]
    private int RmsThreads(int n) => Math.Max(_acc.WarpSize, Math.Min(GroupThreads, (n / 8 + _acc.WarpSize - 1) / _acc.WarpSize * _acc.WarpSize));

    // Σ v (or the max, max: a constant at each call site) over the thread group, any size up to 32 warps: a butterfly
    // within each warp, the warp results through shared memory, then every warp reduces those itself (no serial loop on
    // one thread, no second broadcast); lanes and warps end with the same bits (the butterfly adds commute)
    private static float BlockReduce(float v, bool max)
    {
        var sh = SharedMemory.Allocate<float>(32);
        int W = Warp.WarpSize, nw = Group.DimX / W, lane = Warp.LaneIdx;
        v = WarpAllReduce(v, max);
        if (lane == 0) sh[Warp.WarpIdx] = v;
        Group.Barrier();
        float t = max ? float.NegativeInfinity : 0f;
        for (int i = lane; i < nw; i += W) t = max ? Math.Max(t, sh[i]) : t + sh[i];
        t = WarpAllReduce(t, max);
        Group.Barrier(); // sh is free for the next reduction
        return t;
    }

    private static float BlockSum(float v) => BlockReduce(v, false);

    // the max or sum of v over the warp, in every lane (xor butterfly: the same bits in each lane)
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static float WarpAllReduce(float v, bool max)
    {
        for (int o = Warp.WarpSize / 2; o > 0; o /= 2) { float u = Warp.ShuffleXor(v, o); v = max ? Math.Max(v, u) : v + u; }
        return v;
    }

    private static float WarpSum(float v)
    {
        for (int o = Warp.WarpSize / 2; o > 0; o /= 2) v += Warp.ShuffleDown(v, o);
        return v;
    }

    private static int RowIndex() => Grid.IdxX * (Group.DimX / Warp.WarpSize) + Warp.WarpIdx;

    private static void GemvF32Kernel(ArrayView<float> W, ArrayView<float> x, ArrayView<float> y, int rows, int cols, int accumulate)
    {
        int r = RowIndex();
        if (r >= rows) return;
        float s = 0;
        long baseIdx = (long)r * cols;
        for (int c = Warp.LaneIdx; c < cols; c += Warp.WarpSize) s += W[baseIdx + c] * x[c];
        s = WarpSum(s);
        if (Warp.IsFirstLane) y[r] = accumulate != 0 ? y[r] + s : s;
    }

    // the low 16 bits of `bits` as an F16 value; only 32-bit integer ops (narrow casts of 64-bit values miscompiled
    // to PTX here: the upper bits survived)
    private static float F16BitsToF32(uint bits)
    {
        int v = ((int)((bits & 0xFFFFu) << 16) >> 3) & unchecked((int)0x8FFFE000); // sign to bit 31, exponent/mantissa to 13..27
        return Interop.IntAsFloat((uint)v) * 5.192296858534828e33f; // ×2^112
    }

    private static void GemvHalfKernel(ArrayView<ushort> W, ArrayView<float> x, ArrayView<float> y, int rows, int cols, int flags)
    {
        int r = RowIndex();
        if (r >= rows) return;
        float s = 0;
        long baseIdx = (long)r * cols;
        for (int c = Warp.LaneIdx; c < cols; c += Warp.WarpSize) s += HalfBitsToF32(W[baseIdx + c], flags) * x[c];
        s = WarpSum(s);
        if (Warp.IsFirstLane) y[r] = (flags & HalfAccumulate) != 0 ? y[r] + s : s;
    }

    // W as (rows, cols/4) 64-bit words of 4 halves each
    private static void GemvHalfx4Kernel(ArrayView<ulong> W, ArrayView<float> x, ArrayView<float> y, int rows, int cols4, int flags)
    {
        int r = RowIndex();
        if (r >= rows) return;
        float s = 0;
        long baseIdx = (long)r * cols4;
        for (int c = Warp.LaneIdx; c < cols4; c += Warp.WarpSize)
        {
            ulong q = W[baseIdx + c];
            uint lo = (uint)(q & 0xFFFFFFFFul), hi = (uint)(q >> 32);
            int x0 = 4 * c;
            s += HalfBitsToF32(lo, flags) * x[x0] + HalfBitsToF32(lo >> 16, flags) * x[x0 + 1]
               + HalfBitsToF32(hi, flags) * x[x0 + 2] + HalfBitsToF32(hi >> 16, flags) * x[x0 + 3];
        }
        s = WarpSum(s);
        if (Warp.IsFirstLane) y[r] = (flags & HalfAccumulate) != 0 ? y[r] + s : s;
    }

    // W as (rows, cols/8) 16-byte words of 8 halves (the view starts 16-byte aligned: a buffer's start), x (cols,) staged
    // in the block's dynamic shared memory once (every warp of the block reads all of it), a warp per row, software-
    // pipelined: each lane requests the next four words (columns 8·(c + 32k)) before it multiplies the four it holds, and
    // the first four before the staging (and before its programmatic wait); x from shared memory as two float4 per word
    private static void GemvHalfx8Kernel(ArrayView<ushort> Wh, ArrayView<float> x, ArrayView<float> y, int rows, int cols8, int flags)
    {
        var W = Wh.Cast<U4>().AsAligned(16);
        var xs = SharedMemory.GetDynamic<float>();
        int r = RowIndex(), lane = Warp.LaneIdx, S = Warp.WarpSize;
        bool live = r < rows;
        long b = (long)(live ? r : 0) * cols8;
        int c = lane;
        U4 a0 = HalfWord(W, b, c, cols8, live), a1 = HalfWord(W, b, c + S, cols8, live), a2 = HalfWord(W, b, c + 2 * S, cols8, live), a3 = HalfWord(W, b, c + 3 * S, cols8, live);
        GridWait(); // weights before it, x (the kernel before's output) after
        for (int i = Group.IdxX; i < 8 * cols8; i += Group.DimX) xs[i] = x[i];
        Group.Barrier();
        if (!live) return;
        var x4 = xs.Cast<F4>().AsAligned(16);
        float s0 = 0, s1 = 0;
        for (; c < cols8; c += 4 * S)
        {
            int n = c + 4 * S;
            U4 n0 = HalfWord(W, b, n, cols8, true), n1 = HalfWord(W, b, n + S, cols8, true), n2 = HalfWord(W, b, n + 2 * S, cols8, true), n3 = HalfWord(W, b, n + 3 * S, cols8, true);
            s0 += HalfDot8(a0, x4, c, cols8, flags) + HalfDot8(a1, x4, c + S, cols8, flags);
            s1 += HalfDot8(a2, x4, c + 2 * S, cols8, flags) + HalfDot8(a3, x4, c + 3 * S, cols8, flags);
            a0 = n0; a1 = n1; a2 = n2; a3 = n3;
        }
        float s = WarpSum(s0 + s1);
        if (Warp.IsFirstLane) y[r] = (flags & HalfAccumulate) != 0 ? y[r] + s : s;
    }

    // word c of the row at b (zero past the row or for a dead warp)
    private static U4 HalfWord(ArrayView<U4> W, long b, int c, int cols8, bool live) => live && c < cols8 ? W[b + c] : default;

    // word c (8 halves, low half first) times x[8c..8c+8) as two float4 (0 past the row)
    private static float HalfDot8(U4 q, ArrayView<F4> x4, int c, int cols8, int flags)
    {
        if (c >= cols8) return 0f;
        F4 xa = x4[2 * c], xb = x4[2 * c + 1];
        return HalfBitsToF32(q.X, flags) * xa.X + HalfBitsToF32(q.X >> 16, flags) * xa.Y + HalfBitsToF32(q.Y, flags) * xa.Z + HalfBitsToF32(q.Y >> 16, flags) * xa.W
         + (HalfBitsToF32(q.Z, flags) * xb.X + HalfBitsToF32(q.Z >> 16, flags) * xb.Y + HalfBitsToF32(q.W, flags) * xb.Z + HalfBitsToF32(q.W >> 16, flags) * xb.W);
    }

    private static void RmsNormKernel(ArrayView<float> x, ArrayView<float> w, ArrayView<float> dst, int n, float eps)
        => RmsNormBody(x, x, w, dst, n, eps, false);

    private static void AddRmsNormKernel(ArrayView<float> x, ArrayView<float> y, ArrayView<float> w, ArrayView<float> dst, int n, float eps)
        => RmsNormBody(x, y, w, dst, n, eps, true);

    // row Grid.IdxX: (x += y when add), dst = w·x/√(mean(x²) + eps). Up to 8 elements a thread stay in registers with their
    // w, all requested before the reduction (one memory round trip, then the block sum, then the stores); longer rows loop.
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void RmsNormBody(ArrayView<float> x, ArrayView<float> y, ArrayView<float> w, ArrayView<float> dst, int n, float eps, bool add)
    {
        long b = (long)Grid.IdxX * n;
        int tid = Group.IdxX, T = Group.DimX;
        if (n <= 8 * T)
        {
            int i0 = tid, i1 = tid + T, i2 = tid + 2 * T, i3 = tid + 3 * T, i4 = tid + 4 * T, i5 = tid + 5 * T, i6 = tid + 6 * T, i7 = tid + 7 * T;
            float v0 = NormLoad(x, y, b, i0, n, add), v1 = NormLoad(x, y, b, i1, n, add), v2 = NormLoad(x, y, b, i2, n, add), v3 = NormLoad(x, y, b, i3, n, add);
            float v4 = NormLoad(x, y, b, i4, n, add), v5 = NormLoad(x, y, b, i5, n, add), v6 = NormLoad(x, y, b, i6, n, add), v7 = NormLoad(x, y, b, i7, n, add);
            float g0 = i0 < n ? w[i0] : 0f, g1 = i1 < n ? w[i1] : 0f, g2 = i2 < n ? w[i2] : 0f, g3 = i3 < n ? w[i3] : 0f;
            float g4 = i4 < n ? w[i4] : 0f, g5 = i5 < n ? w[i5] : 0f, g6 = i6 < n ? w[i6] : 0f, g7 = i7 < n ? w[i7] : 0f;
            float ss = BlockSum(v0 * v0 + v1 * v1 + v2 * v2 + v3 * v3 + v4 * v4 + v5 * v5 + v6 * v6 + v7 * v7);
            float inv = 1f / MathF.Sqrt(ss / n + eps); // ILGPU maps MathF.Sqrt to the device intrinsic
            NormStore(x, dst, b, i0, n, add, v0, g0 * (v0 * inv)); NormStore(x, dst, b, i1, n, add, v1, g1 * (v1 * inv));
            NormStore(x, dst, b, i2, n, add, v2, g2 * (v2 * inv)); NormStore(x, dst, b, i3, n, add, v3, g3 * (v3 * inv));
            NormStore(x, dst, b, i4, n, add, v4, g4 * (v4 * inv)); NormStore(x, dst, b, i5, n, add, v5, g5 * (v5 * inv));
            NormStore(x, dst, b, i6, n, add, v6, g6 * (v6 * inv)); NormStore(x, dst, b, i7, n, add, v7, g7 * (v7 * inv));
            return;
        }
        float s = 0;
        for (int i = tid; i < n; i += T)
        {
            float v = x[b + i];
            if (add) { v += y[b + i]; x[b + i] = v; }
            s += v * v;
        }
        float r = 1f / MathF.Sqrt(BlockSum(s) / n + eps);
        for (int i = tid; i < n; i += T) dst[b + i] = w[i] * (x[b + i] * r);
    }

    // x[b + i] (+ y[b + i]), 0 past n
    private static float NormLoad(ArrayView<float> x, ArrayView<float> y, long b, int i, int n, bool add)
        => i >= n ? 0f : add ? x[b + i] + y[b + i] : x[b + i];

    private static void NormStore(ArrayView<float> x, ArrayView<float> dst, long b, int i, int n, bool add, float v, float o)
    {
        if (i >= n) return;
        if (add) x[b + i] = v;
        dst[b + i] = o;
    }
}
