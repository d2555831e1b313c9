// SpQR matvec y = Ŵ·x on the device, over the same bytes as the CPU format (docs/formats/spqr.md), uploaded once
// (GpuSpqrLayer). Mirrors src/SpQR.Quant/Decode/SpqrMatVec.Cpu.cs (same algebra, float32 accumulation).
// Layers with lane-major codes (w3, the default upload; GpuSpqrLayer.LaneCodes), and others with at least as many columns
// as rows, go to the tensor-core kernel (GpuKernels.SpqrTc.cs) where its shape rules hold.
// Fast paths (wbits 2-4, float32 statistics), two launches per call:
//   1. prepare, one thread per column: x' = x[perm] (zero past cols), xsum_g = Σ x' over each group, and x̃ = x' scaled
//      by 2^−b·(k mod 4), k = the code's index in its half-group word (exact: a power of 2), swizzled for the kernel's
//      lane chunks (SpqrPrepareKernel);
//   2. the wide kernel (SpqrMatVecWide, the default where cols % 128 == 0): a warp per row pair, lane chunks of 128
//      columns read as 16-byte loads (codes, x̃, statistics); else four rows per warp (SpqrMatVecRows4P): lane chunks of
//      32 columns, x̃ and the second-order statistics loaded once for four rows of one row group, K warps of a block
//      splitting a row tile's steps (partials meet in shared memory), the next step's code words prefetched; else (β2 % 4
//      ≠ 0, a row's code bytes not a multiple of 4, F > 8) the earlier two-rows-per-warp kernel.
//   Codes become floats without an int→float conversion (Code: mask, OR onto 2^23, subtract 2^23 — full-rate ops; I2F
//   issues at an eighth of FFMA's rate on sm_90 and had bounded these kernels), each row adds s·(Σ q·x̃ − z·xsum), then
//   its CSR outlier deltas · x', shuffle reduction.
// General path (any wbits, fp16-step layers): one warp per row, a lane per group, one code at a time.
using ILGPU;
using ILGPU.Runtime;
using SpQR.Quant.Formats;
// the launchers of the SpQR matvec kernels: (codes, stat codes, planes, CSR offsets, CSR columns, outlier deltas, x' / scratch, y, dims[, K])
using SpqrLaunch = System.Action<ILGPU.KernelConfig, ILGPU.ArrayView<byte>, ILGPU.ArrayView<byte>, ILGPU.ArrayView<float>, ILGPU.ArrayView<int>, ILGPU.ArrayView<ushort>, ILGPU.ArrayView<float>, ILGPU.ArrayView<float>, ILGPU.ArrayView<float>, SpQR.Gpu.SpqrDims>;
using SpqrLaunchK = System.Action<ILGPU.KernelConfig, ILGPU.ArrayView<byte>, ILGPU.ArrayView<byte>, ILGPU.ArrayView<float>, ILGPU.ArrayView<int>, ILGPU.ArrayView<ushort>, ILGPU.ArrayView<float>, ILGPU.ArrayView<float>, ILGPU.ArrayView<float>, SpQR.Gpu.SpqrDims, int>;

namespace SpQR.Gpu;

/// <summary>Scalar shape of a device SpQR layer (one kernel argument).</summary>
public struct SpqrDims
{
    public int Rows, Cols, Groups, WBits, RowBytes, StatRowBytes, StatBits, ScaleBits, QqGroupSize, Fp16;
    /// <summary>The fp16 pair (1024, 1024)'s bits, 0x64006400, as an argument: ptxas then fuses mask and OR into one LOP3
    /// (two immediates cost two).</summary>
    public uint F16Magic;
    /// <summary>1: y += Ŵ·x (the residual add in the tensor-core matvec's epilogue, set per call by SpqrMatVec's
    /// accumulate); 0: y = Ŵ·x. A layer's own Dims keep 0.</summary>
    public int Accumulate;
    /// <summary>1: the layer's lane-major w3 records hold subnormal-fp16 pairs (GpuSpqrLayer.LaneMajor, the default); 0:
    /// the eighth session's records (codes OR'd onto 1024, then 1024 subtracted), and every other width and layer.</summary>
    public int LaneLayout;
    /// <summary>Measurement knob, set per call (GpuKernels.SpqrTcStepOrderReversed): 1 gives the tensor-core kernel's split j the
    /// super-steps K − 1 − j, 2K − 1 − j, ...; 0 the super-steps j, j + K, ....</summary>
    public int StepOrder;
}

/// <summary>An RMSNorm of a matvec's input folded into its prepare launch (the tensor-core kernels): x̂ = w·x/√(mean(x²)
/// + eps) over x's first Cols floats, computed by every block of the launch (x is one row, read from L2) — the decoder's
/// norm before q/k/v and before gate/up without a launch of its own.</summary>
public struct InputRmsNorm
{
    public ArrayView<float> Weight;
    public float Eps;
    public readonly bool IsSet => Weight.Length > 0;
}

/// <summary>A tensor-core prepare launch's scalars (one argument: ILGPU's launchers take at most ten).</summary>
public struct TcPrepareArgs
{
    public int Cols, WBits, Layers, Normed;
    public float Eps;
    /// <summary>The x̃ slots' scaling for these records (SpqrDims.LaneLayout of a lane-major call, else 0).</summary>
    public int Layout;
}

/// <summary>The 32 x̃ of one lane's chunk (two groups), loaded once per warp step and shared by the rows it serves.</summary>
public struct X32
{
    public float V0, V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11, V12, V13, V14, V15, V16, V17, V18, V19, V20, V21, V22, V23, V24, V25, V26, V27, V28, V29, V30, V31;

    /// <summary>Column j of the chunk sits at xi + j·W in the swizzled x̃ (see the prepare kernel).</summary>
    public static X32 Load(ArrayView<float> scratch, int xi, int W) => new()
    {
        V0 = scratch[xi + 0 * W],
        V1 = scratch[xi + 1 * W],
        V2 = scratch[xi + 2 * W],
        V3 = scratch[xi + 3 * W],
        V4 = scratch[xi + 4 * W],
        V5 = scratch[xi + 5 * W],
        V6 = scratch[xi + 6 * W],
        V7 = scratch[xi + 7 * W],
        V8 = scratch[xi + 8 * W],
        V9 = scratch[xi + 9 * W],
        V10 = scratch[xi + 10 * W],
        V11 = scratch[xi + 11 * W],
        V12 = scratch[xi + 12 * W],
        V13 = scratch[xi + 13 * W],
        V14 = scratch[xi + 14 * W],
        V15 = scratch[xi + 15 * W],
        V16 = scratch[xi + 16 * W],
        V17 = scratch[xi + 17 * W],
        V18 = scratch[xi + 18 * W],
        V19 = scratch[xi + 19 * W],
        V20 = scratch[xi + 20 * W],
        V21 = scratch[xi + 21 * W],
        V22 = scratch[xi + 22 * W],
        V23 = scratch[xi + 23 * W],
        V24 = scratch[xi + 24 * W],
        V25 = scratch[xi + 25 * W],
        V26 = scratch[xi + 26 * W],
        V27 = scratch[xi + 27 * W],
        V28 = scratch[xi + 28 * W],
        V29 = scratch[xi + 29 * W],
        V30 = scratch[xi + 30 * W],
        V31 = scratch[xi + 31 * W],
    };

    /// <summary>The wide layout: the 32 columns of a pair as 8 float4 at xi + j·4W (xi includes the lane's 4·lane).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public static X32 LoadWide(ArrayView<float> scratch, int xi, int W)
    {
        X32 x = default;
        GpuKernels.Load4(scratch, xi + 0 * 4 * W, out x.V0, out x.V1, out x.V2, out x.V3);
        GpuKernels.Load4(scratch, xi + 1 * 4 * W, out x.V4, out x.V5, out x.V6, out x.V7);
        GpuKernels.Load4(scratch, xi + 2 * 4 * W, out x.V8, out x.V9, out x.V10, out x.V11);
        GpuKernels.Load4(scratch, xi + 3 * 4 * W, out x.V12, out x.V13, out x.V14, out x.V15);
        GpuKernels.Load4(scratch, xi + 4 * 4 * W, out x.V16, out x.V17, out x.V18, out x.V19);
        GpuKernels.Load4(scratch, xi + 5 * 4 * W, out x.V20, out x.V21, out x.V22, out x.V23);
        GpuKernels.Load4(scratch, xi + 6 * 4 * W, out x.V24, out x.V25, out x.V26, out x.V27);
        GpuKernels.Load4(scratch, xi + 7 * 4 * W, out x.V28, out x.V29, out x.V30, out x.V31);
        return x;
    }
}

/// <summary>Up to 16 code words of one row's wide chunk (4·b used), and the b words of each pair of groups.</summary>
public struct U16
{
    public uint A0, A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12, A13, A14, A15;

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public static U16 Load(ArrayView<uint> u32, long q, int b)
    {
        U16 w = default;
        GpuKernels.Load4(u32, q, out w.A0, out w.A1, out w.A2, out w.A3);
        GpuKernels.Load4(u32, q + 4, out w.A4, out w.A5, out w.A6, out w.A7);
        if (b > 2) GpuKernels.Load4(u32, q + 8, out w.A8, out w.A9, out w.A10, out w.A11);
        if (b > 3) GpuKernels.Load4(u32, q + 12, out w.A12, out w.A13, out w.A14, out w.A15);
        return w;
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public readonly uint Word(int i) => i switch
    {
        0 => A0, 1 => A1, 2 => A2, 3 => A3, 4 => A4, 5 => A5, 6 => A6, 7 => A7,
        8 => A8, 9 => A9, 10 => A10, 11 => A11, 12 => A12, 13 => A13, 14 => A14, _ => A15,
    };

    /// <summary>Pair m (groups 2m, 2m + 1 of the chunk): its b words and the two stat fields (stat, shifted down).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public readonly GpuKernels.RowWords Pair(int m, int b, int stat) => new()
    {
        W0 = Word(b * m), W1 = Word(b * m + 1), W2 = b > 2 ? Word(b * m + 2) : 0u, W3 = b > 3 ? Word(b * m + 3) : 0u, Stat = stat,
    };
}

/// <summary>A SpQR layer resident on the device: the stored bytes plus the widened second-order planes and outlier deltas.</summary>
public sealed class GpuSpqrLayer : IDisposable
{
    public SpqrDims Dims;
    public MemoryBuffer1D<byte, Stride1D.Dense> Codes { get; }
    public MemoryBuffer1D<byte, Stride1D.Dense> StatCodes { get; }
    /// <summary>(ss, sz, zs, zz) of each (row group, group), float32, (rowGroups, groups, 4) as stored.</summary>
    public MemoryBuffer1D<float, Stride1D.Dense> Planes { get; }
    public MemoryBuffer1D<int, Stride1D.Dense> Perm { get; }
    public MemoryBuffer1D<int, Stride1D.Dense> OutlierRowOffsets { get; }
    public MemoryBuffer1D<ushort, Stride1D.Dense> OutlierCols { get; }
    public MemoryBuffer1D<float, Stride1D.Dense> OutlierDeltas { get; }
    /// <summary>Device bytes of the format's parts (codes and stat codes when on the device, planes, CSR, permutation).</summary>
    public long Bytes { get; }
    /// <summary>All device bytes of the layer: <see cref="Bytes"/> and the lane-major copy.</summary>
    public long DeviceBytes => Bytes + (LaneCodes?.LengthInBytes ?? 0) + (FoldIndex?.LengthInBytes ?? 0);
    /// <summary>For the w3 matvec that builds its own x̃ (GpuKernels.SpqrTcFold; subnormal lane-major records, cols ≤ 65,536):
    /// the permutation as 16-bit values in the order the lanes read them — lane (u, t) of super-step S its 8 at
    /// FoldSlot(c) = S·128 + (u·4 + t)·8 + i·4 + q for c = 16(8S + u + 4i) + t + 4q (<see cref="FoldLanes"/>), so perm[c] is
    /// also FoldIndex[FoldSlot(c)] (the outliers' lookups); 2 bytes a column. Null where not built.</summary>
    public MemoryBuffer1D<ushort, Stride1D.Dense>? FoldIndex { get; }
    internal ArrayView<byte> FoldIndexBytes => ((ArrayView<ushort>)FoldIndex!.View).Cast<byte>();
    /// <summary>False when the layer was uploaded with its lane-major copy only (<c>formatCodes: false</c>): Codes and
    /// StatCodes are then 4-byte placeholders, and only the lane-major tensor-core kernels (matvec, batched product)
    /// can run it.</summary>
    public bool HasFormatCodes { get; }
    /// <summary>Opt-in (<c>laneMajor</c>; layers the tensor-core kernel can run, GpuKernels.TcShape; models ask for it
    /// through GpuKernels.LaneMajorUploadFor): the codes and statistics fields again, in the order the
    /// tensor-core kernel's lanes read them (see <see cref="LaneMajor"/>); null when not built.</summary>
    public MemoryBuffer1D<ulong, Stride1D.Dense>? LaneCodes { get; }
    /// <summary><see cref="LaneCodes"/> as the bytes the tensor-core kernels take in place of the format's codes.</summary>
    internal ArrayView<byte> LaneCodeBytes => ((ArrayView<ulong>)LaneCodes!.View).Cast<byte>();

    // the permutation on the host (a copy of what Perm holds): grouped launches compare the layers' (layers quantized from
    // one input's Hessian share it, GPTQ's act order being argsort of its diagonal)
    private readonly int[] _hostPerm;

    /// <summary>Whether two layers permute their input alike (then their x̃ for one x is the same). A grouped launch asks
    /// this of the same layers at every call: the last layer found alike is remembered, so the arrays are compared once.</summary>
    public bool SamePermutation(GpuSpqrLayer other)
    {
        if (ReferenceEquals(_samePermAs, other) || ReferenceEquals(this, other)) return true;
        if (!_hostPerm.AsSpan().SequenceEqual(other._hostPerm)) return false;
        _samePermAs = other;
        return true;
    }
    private GpuSpqrLayer? _samePermAs;

    /// <summary>laneMajor: also the lane-major copy (where GpuKernels.TcShape holds); formatCodes: false keeps only that
    /// copy of the codes and statistics fields on the device (where it was built; about 45% less device memory for a w3
    /// layer than both).</summary>
    /// <param name="magicW3Records">w3 lane-major records in the eighth session's layout (pairs OR'd onto 1024's fp16 bits,
    /// 1024 subtracted in the kernel) instead of the subnormal one: for benchmarks comparing the two.</param>
    public GpuSpqrLayer(Accelerator acc, SpqrLayer l, bool laneMajor = false, bool formatCodes = true, bool magicW3Records = false)
    {
        if (!l.QuantizedStats) throw new NotSupportedException("the GPU SpQR kernel needs quantized (qq) statistics");
        Dims = new SpqrDims
        {
            Rows = l.Rows, Cols = l.Cols, Groups = l.Groups, WBits = l.WBits, RowBytes = l.RowBytes, StatRowBytes = l.StatRowBytes,
            StatBits = l.StatBits, ScaleBits = l.ScaleBits, QqGroupSize = l.QqGroupSize, Fp16 = l.Fp16Arithmetic ? 1 : 0,
            F16Magic = 0x64006400u,
        };
        var planes = new float[l.Stats2!.Length]; // (rowGroups, groups, 4): the stored order, widened (one 16-byte load per group)
        for (long i = 0; i < planes.Length; i++) planes[i] = (float)l.Stats2[i];
        if (laneMajor && GpuKernels.TcShape(Dims))
        {
            bool subnormal = SubnormalRecordsFit(l) && !magicW3Records;
            LaneCodes = acc.Allocate1D(LaneMajor(l, subnormal));
            Dims.LaneLayout = subnormal ? 1 : 0;
            if (subnormal && l.Cols <= 65536) FoldIndex = acc.Allocate1D(FoldLanes(l.Perm));
        }
        HasFormatCodes = formatCodes || LaneCodes is null;
        if (HasFormatCodes)
        {
            // 16 zero bytes past the end: the last row's last chunk may read past its codes (multiplied by zero x̃)
            Codes = acc.Allocate1D<byte>((l.Codes.Length + 16 + 3) / 4 * 4);
            Codes.MemSetToZero();
            Codes.View.SubView(0, l.Codes.Length).CopyFromCPU(ref System.Runtime.InteropServices.MemoryMarshal.GetReference(l.Codes.Span), l.Codes.Length);
            StatCodes = acc.Allocate1D<byte>(l.StatCodes!.Length);
            StatCodes.View.CopyFromCPU(ref System.Runtime.InteropServices.MemoryMarshal.GetReference(l.StatCodes.Span), l.StatCodes.Length);
        }
        else
        {
            Codes = acc.Allocate1D<byte>(4); Codes.MemSetToZero();
            StatCodes = acc.Allocate1D<byte>(4); StatCodes.MemSetToZero();
        }
        GC.KeepAlive(l);
        Planes = acc.Allocate1D(planes);
        Perm = acc.Allocate1D(l.Perm);
        _hostPerm = (int[])l.Perm.Clone(); // what Perm holds, whatever becomes of the caller's array
        OutlierRowOffsets = acc.Allocate1D(l.OutlierRowOffsets);
        OutlierCols = acc.Allocate1D(l.OutlierCols.Length == 0 ? new ushort[1] : l.OutlierCols);
        OutlierDeltas = acc.Allocate1D(l.OutlierDeltas.Length == 0 ? new float[1] : l.OutlierDeltas);
        Bytes = Codes.LengthInBytes + StatCodes.LengthInBytes + Planes.LengthInBytes + Perm.LengthInBytes + OutlierRowOffsets.LengthInBytes
                + OutlierCols.LengthInBytes + OutlierDeltas.LengthInBytes;
    }

    /// <summary><see cref="FoldIndex"/>'s contents for a permutation of cols (a multiple of 128, ≤ 65,536) columns.</summary>
    public static ushort[] FoldLanes(ReadOnlySpan<int> perm)
    {
        int cols = perm.Length;
        if (cols % 128 != 0 || cols > 65536) throw new ArgumentException($"FoldLanes: {cols} columns, need a multiple of 128 up to 65,536");
        var r = new ushort[cols];
        for (int c = 0; c < cols; c++) r[FoldSlot(c)] = (ushort)perm[c];
        return r;
    }

    /// <summary>Where column c's permutation entry sits in <see cref="FoldIndex"/>: c = 128S + 16(u + 4i) + t + 4q →
    /// S·128 + (u·4 + t)·8 + i·4 + q.</summary>
    internal static int FoldSlot(int c)
    {
        int j = (c >> 4) & 7, k = c & 15;
        return (c & ~127) + ((j & 3) * 4 + (k & 3)) * 8 + (j >> 2) * 4 + (k >> 2);
    }

    /// <summary>Whether a layer's w3 records can be subnormal (<see cref="LaneMajor"/>): w3, scale and zero codes of ≤ 4 bits
    /// each (the paper's 3-bit statistics); other layers keep the eighth session's records.</summary>
    public static bool SubnormalRecordsFit(SpqrLayer l) => l.WBits == 3 && l.ScaleBits <= 4 && l.StatBits - l.ScaleBits <= 4;

    /// <summary>64-bit words of a lane's record per super-step in <see cref="LaneMajor"/>: 3 (w2), 4 (w3), 5 (w4).</summary>
    public static int LaneWords(int wbits) => wbits == 2 ? 3 : wbits == 3 ? 4 : 5;

    /// <summary>The lane-major copy of a layer's codes and statistics fields for the tensor-core kernel (w2-w4): per
    /// (16-row tile T, super-step s of 128 columns, lane L = 4·gid + t) a record of W = <see cref="LaneWords"/> 64-bit
    /// words stored word-major across the warp (word w at ((T·steps + s)·W + w)·32 + L). The lane's mma pairs of group j
    /// are a0 (row gid), a1 (row gid + 8) of codes (t, t + 4) and a2, a3 of (t + 8, t + 12) (w2: (t, t + 8) and
    /// (t + 4, t + 12)), each pair's second code 12 (w3) or 16 bits above its first. w3: word w holds groups 2w, 2w + 1 as
    /// 24-bit blocks at bits 0 and 24 (pair k at bit 3k), bits 48-55 of words 0-3 the statistics fields; w4: 32-bit blocks
    /// (pair k at 4k), the fields in word 4; w2: word w holds groups 4w..4w + 3 — 32-bit units at 0 and 32, each two
    /// groups at +0 and +8 (pair k at 2k) — the fields in word 2. The fields, in order: (group t, row gid), (t, gid + 8),
    /// (t + 4, gid), (t + 4, gid + 8) (w2 / w4 at bits 0, 8, 16, 24). Rows past the last repeat the last row (as the kernel
    /// reads them). Bytes per tile and super-step: 768 / 1,024 / 1,280 against the format's 608 / 864 / 1,120.
    /// <para>subnormal (w3; the default upload, SpqrDims.LaneLayout 1): the record as eight 32-bit units U0..U7 (word w =
    /// U(2w) | U(2w+1) « 32); row gid's pairs in U0..U3, row gid + 8's at the same places in U4..U7; group j's pairs in unit
    /// j » 1 — j even: a0 (a1) at bits 0 and 16, a2 (a3) at 3 and 19; j odd: a0 at 6 and 22, a2 at 9 and 25 — so that one AND
    /// leaves a pair as two subnormal fp16 values c·2^(p−24) (p = 0, 3, 6; the pair at 9 shifted down first), with no
    /// 1024 to add and subtract; x̃ carries 2^−p and its group scale 2^24 (TcSplit). Field f in unit f: its scale code at
    /// bits 12-15, its zero code at 28-31 (each read with one shift, no mask: <see cref="SubnormalRecordsFit"/>).</para></summary>
    public static ulong[] LaneMajor(SpqrLayer l, bool subnormal = false)
    {
        if (subnormal && !SubnormalRecordsFit(l))
            throw new ArgumentException($"the subnormal lane-major records take w3 layers with scale and zero codes of ≤ 4 bits, not w{l.WBits} with {l.ScaleBits} + {l.StatBits - l.ScaleBits}");
        int b = l.WBits, W = LaneWords(b), rows = l.Rows, groups = l.Groups, steps = groups / 8, tiles = (rows + 15) / 16, F = l.StatBits;
        int rowBytes = l.RowBytes, statRow = l.StatRowBytes;
        static int Code(ReadOnlySpan<byte> codes, int rowBytes, int b, int r, int c)
        {
            long bit = (long)r * rowBytes * 8 + (long)b * c;
            return ((codes[(int)(bit >> 3)] | codes[(int)(bit >> 3) + 1] << 8) >> (int)(bit & 7)) & ((1 << b) - 1);
        }
        static int Field(ReadOnlySpan<byte> stats, int statRow, int F, int r, int g)
        {
            long bit = (long)r * statRow * 8 + (long)g * F; int at = (int)(bit >> 3);
            return ((stats[at] | (stats.Length > at + 1 ? stats[at + 1] : 0) << 8) >> (int)(bit & 7)) & ((1 << F) - 1);
        }
        var e = new ulong[(long)tiles * steps * 32 * W];
        var src = l.Codes; var srcStats = l.StatCodes!;
        System.Threading.Tasks.Parallel.For(0, tiles, T => PackTile(T, src.Span, srcStats.Span));
        return e;

        void PackTile(int T, ReadOnlySpan<byte> codes, ReadOnlySpan<byte> stats)
        {
            Span<ulong> v = stackalloc ulong[5];
            Span<uint> u = stackalloc uint[8];
            for (int s = 0; s < steps; s++)
                for (int L = 0; L < 32; L++)
                {
                    int gid = L >> 2, t = L & 3;
                    int ra = Math.Min(16 * T + gid, rows - 1), rc = Math.Min(16 * T + gid + 8, rows - 1);
                    v.Clear();
                    if (subnormal)
                    {
                        u.Clear();
                        for (int j = 0; j < 8; j++)
                            for (int k = 0; k < 4; k++)
                            {
                                // pair k: a0 (row gid, codes t, t + 4), a1 (row gid + 8), a2 (row gid, t + 8, t + 12), a3
                                int r = (k & 1) == 0 ? ra : rc, reg = k >> 1, c = 16 * (8 * s + j) + t + 8 * reg;
                                int at = (j & 1) == 0 ? 3 * reg : 6 + 3 * reg, ui = 4 * (k & 1) + (j >> 1);
                                u[ui] |= (uint)Code(codes, rowBytes, b, r, c) << at;
                                u[ui] |= (uint)Code(codes, rowBytes, b, r, c + 4) << (at + 16);
                            }
                        for (int f = 0; f < 4; f++)
                        {
                            int g = 8 * s + t + (f >= 2 ? 4 : 0), fr = (f & 1) == 0 ? ra : rc;
                            uint field = (uint)Field(stats, statRow, F, fr, g);
                            u[f] |= (field & ((1u << l.ScaleBits) - 1)) << 12 | (field >> l.ScaleBits) << 28;
                        }
                        for (int w = 0; w < W; w++) e[((long)(T * steps + s) * W + w) * 32 + L] = u[2 * w] | (ulong)u[2 * w + 1] << 32;
                        continue;
                    }
                    for (int j = 0; j < 8; j++)
                    {
                        int c0 = 16 * (8 * s + j); // the group's first column
                        // the group's word and first bit (see the summary), the pairs' stride and the second code's distance
                        int wi = b == 2 ? j >> 2 : j >> 1;
                        int o = b == 3 ? 24 * (j & 1) : b == 4 ? 32 * (j & 1) : 32 * ((j >> 1) & 1) + 8 * (j & 1);
                        int step = b == 3 ? 3 : b == 4 ? 4 : 2, hi = b == 3 ? 12 : 16;
                        for (int k = 0; k < 4; k++)
                        {
                            // pair k: row gid (k even) or gid + 8 (k odd); codes (t, t + 4) / (t + 8, t + 12), w2 (t, t + 8) / (t + 4, t + 12)
                            int r = (k & 1) == 0 ? ra : rc;
                            int c = c0 + t + (k >= 2 ? (b == 2 ? 4 : 8) : 0), c2 = c + (b == 2 ? 8 : 4);
                            v[wi] |= (ulong)Code(codes, rowBytes, b, r, c) << (o + step * k);
                            v[wi] |= (ulong)Code(codes, rowBytes, b, r, c2) << (o + step * k + hi);
                        }
                    }
                    for (int f = 0; f < 4; f++)
                    {
                        int g = 8 * s + t + (f >= 2 ? 4 : 0), fr = (f & 1) == 0 ? ra : rc;
                        ulong field = (ulong)Field(stats, statRow, F, fr, g);
                        if (b == 3) v[f] |= field << 48; else v[W - 1] |= field << (8 * f);
                    }
                    for (int w = 0; w < W; w++) e[((long)(T * steps + s) * W + w) * 32 + L] = v[w];
                }
        }
    }

    public void Dispose()
    {
        Codes.Dispose(); StatCodes.Dispose(); Planes.Dispose(); Perm.Dispose();
        OutlierRowOffsets.Dispose(); OutlierCols.Dispose(); OutlierDeltas.Dispose(); LaneCodes?.Dispose(); FoldIndex?.Dispose();
    }
}

public sealed partial class GpuKernels
{
    private Action<KernelConfig, ArrayView<float>, ArrayView<int>, ArrayView<float>, int, int>? _gather;
    private SpqrLaunch? _spqrMatVec;

    private Action<KernelConfig, ArrayView<float>, ArrayView<int>, ArrayView<float>, int, int, int, int>? _prepare;
    /// <summary>Kernel choice for benchmarks: the wide kernel where it applies (default), or false for the four-row one.</summary>
    public bool SpqrWide { get; set; } = true;
    private readonly SpqrLaunch?[] _spqrWide = new SpqrLaunch?[5];
    /// <summary>Kernel choice for benchmarks: column splits K of the four-row kernel (0 = chosen by shape), or −1 for the
    /// earlier two-row kernel.</summary>
    public int SpqrColumnSplits { get; set; }
    private readonly SpqrLaunchK?[] _spqrRows = new SpqrLaunchK?[5];
    private readonly SpqrLaunch?[] _spqrFast = new SpqrLaunch?[5];

    private SpqrLaunch LoadSpqr(Action<ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<int>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, ArrayView<float>, SpqrDims> kernel) => Load<ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<int>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, ArrayView<float>, SpqrDims>(kernel);
    private SpqrLaunchK LoadSpqrK(Action<ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<int>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, ArrayView<float>, SpqrDims, int> kernel) => Load<ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<int>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, ArrayView<float>, SpqrDims, int>(kernel);

    // columns per lane per step on the fast path (two groups: 4 half-groups of 8 codes)
    private const int LaneCols = 32;

    // columns per lane per step on the wide path (eight groups: 16·b code bytes, b 16-byte loads per row)
    private const int WideCols = 128;

    // x̃ padded to whole warp steps of either layout
    private long SpqrSwizzled(SpqrDims d) => ((long)d.Groups * 16 + WideCols * _acc.WarpSize - 1) / (WideCols * _acc.WarpSize) * (WideCols * _acc.WarpSize);

    // the wide kernel's shapes: whole 128-column chunks (so rows of codes and stat codes start 16- and F-byte aligned),
    // row pairs in one row group, stat fields of ≤ 8 bits
    private static bool WideApplies(SpqrDims d) => d.Groups % 8 == 0 && d.QqGroupSize % 2 == 0 && d.StatBits <= 8 && d.RowBytes % 16 == 0;

    /// <summary>Device floats of the scratch a matvec needs: x' (Groups·16), x̃ swizzled for the lanes (padded to a whole
    /// warp step) and xsum (Groups).</summary>
    public long SpqrScratch(GpuSpqrLayer w) => Math.Max(((long)w.Dims.Groups * 17 + 3) / 4 * 4 + SpqrSwizzled(w.Dims), TcScratch(w.Dims));

    // a layer uploaded without its format codes runs only where the lane-major tensor-core kernels take it
    private void CheckFormatCodes(GpuSpqrLayer w, bool lanePath, string what)
    {
        if (w.HasFormatCodes || lanePath) return;
        throw new InvalidOperationException($"this {w.Dims.Rows}x{w.Dims.Cols} w{w.Dims.WBits} SpQR layer was uploaded with its lane-major codes only "
            + $"(formatCodes: false), and the {what} cannot run it over them here (a 32-lane CUDA device with SpqrTensorCores and SpqrTcLaneMajor on is "
            + "needed); upload it with its format codes");
    }

    private void CheckSpqrScratch(GpuSpqrLayer w, ArrayView<float> scratch)
    {
        if (scratch.Length < SpqrScratch(w)) throw new ArgumentException($"scratch holds {scratch.Length} floats, need {SpqrScratch(w)}");
    }

    /// <summary>y (rows,) = Ŵ·x (cols,); scratch holds ≥ <see cref="SpqrScratch"/> floats. prepare: false reuses the
    /// x' / x̃ / xsum already in scratch from a previous call with the same x and the same layer (benchmarks time the
    /// main kernel alone this way; layers of one input differ in their permutation, so they cannot share it).</summary>
    public void SpqrMatVec(GpuSpqrLayer w, ArrayView<float> x, ArrayView<float> scratch, ArrayView<float> y, bool prepare = true,
                           bool accumulate = false, InputRmsNorm norm = default)
    {
        var d = w.Dims;
        CheckSpqrScratch(w, scratch);
        int padded = d.Groups * 16;
        var xp = scratch.SubView(0, padded);
        if (TcApplies(w))
        {
            SpqrMatVecTc(w, x, scratch, y, prepare, default, accumulate, norm);
            return;
        }
        if (accumulate || norm.IsSet)
            throw new NotSupportedException($"SpqrMatVec: the residual add and the input norm are folded into the tensor-core kernels only ({d.Rows}x{d.Cols} w{d.WBits} runs on the float32 kernels: SpqrUsesTensorCores)");
        CheckFormatCodes(w, lanePath: false, "float32 matvec");
        if (d.WBits is >= 2 and <= 4 && d.Fp16 == 0)
        {
            _prepare ??= Load<ArrayView<float>, ArrayView<int>, ArrayView<float>, int, int, int, int>(SpqrPrepareKernel);
            int blk = Math.Min(128, _acc.MaxNumThreadsPerGroup);
            int total = (d.Groups + (d.Groups & 1)) * 16;
            bool wide = SpqrWide && WideApplies(d);
            bool rowsPath = SpqrColumnSplits >= 0 && d.QqGroupSize % SpqrRowsPerWarp == 0 && (d.RowBytes & 3) == 0 && d.StatBits <= 8;
            if (prepare) _prepare(new KernelConfig((total + blk - 1) / blk, blk), x, w.Perm.View, scratch, d.Cols, d.WBits, _acc.WarpSize, wide ? WideCols : LaneCols);
            if (wide)
            {
                var kw = _spqrWide[d.WBits] ??= LoadSpqr(
                    d.WBits switch { 2 => SpqrMatVecW2Kernel, 3 => SpqrMatVecW3Kernel, _ => SpqrMatVecW4Kernel });
                // 8 row pairs per block (4 and 16 were measured no better on the H200)
                kw(RowsConfig((d.Rows + 1) / 2, out _), w.Codes.View, w.StatCodes.View, w.Planes.View, w.OutlierRowOffsets.View, w.OutlierCols.View,
                   w.OutlierDeltas.View, scratch, y, d);
                return;
            }
            if (rowsPath)
            {
                var kr = _spqrRows[d.WBits] ??= LoadSpqrK(
                    d.WBits switch { 2 => SpqrMatVecP2Kernel, 3 => SpqrMatVecP3Kernel, _ => SpqrMatVecP4Kernel });
                // K column splits: about 16 warps per multiprocessor (measured best on the H200: more warps of less work lose), each split ≥ 1 warp step
                int wpb = Math.Max(1, Math.Min(8, _acc.MaxNumThreadsPerGroup / _acc.WarpSize));
                int tiles = (d.Rows + SpqrRowsPerWarp - 1) / SpqrRowsPerWarp, steps = ((d.Groups + 1) / 2 + _acc.WarpSize - 1) / _acc.WarpSize;
                int K = SpqrColumnSplits;
                if (K == 0)
                {
                    K = 1;
                    while (K * 2 <= wpb && K * 2 <= steps && (long)tiles * K * 2 <= 16L * Math.Max(1, _acc.NumMultiprocessors)) K *= 2;
                }
                K = Math.Clamp(K, 1, wpb);
                while (wpb % K != 0) K--;
                int tilesPerBlock = wpb / K;
                kr(new KernelConfig((tiles + tilesPerBlock - 1) / tilesPerBlock, wpb * _acc.WarpSize), w.Codes.View, w.StatCodes.View, w.Planes.View,
                   w.OutlierRowOffsets.View, w.OutlierCols.View, w.OutlierDeltas.View, scratch, y, d, K);
                return;
            }
            var k = _spqrFast[d.WBits] ??= LoadSpqr(
                d.WBits switch { 2 => SpqrMatVec2Kernel, 3 => SpqrMatVec3Kernel, _ => SpqrMatVec4Kernel });
            k(RowsConfig((d.Rows + 1) / 2, out _), w.Codes.View, w.StatCodes.View, w.Planes.View, w.OutlierRowOffsets.View, w.OutlierCols.View,
              w.OutlierDeltas.View, scratch, y, d);
            return;
        }
        int block = Math.Min(256, _acc.MaxNumThreadsPerGroup);
        _gather ??= Load<ArrayView<float>, ArrayView<int>, ArrayView<float>, int, int>(GatherKernel);
        _spqrMatVec ??= LoadSpqr(SpqrMatVecKernel);
        _gather(new KernelConfig((padded + block - 1) / block, block), x, w.Perm.View, xp, d.Cols, padded);
        _spqrMatVec(RowsConfig(d.Rows, out _), w.Codes.View, w.StatCodes.View, w.Planes.View, w.OutlierRowOffsets.View, w.OutlierCols.View,
                    w.OutlierDeltas.View, xp, y, d);
    }

    // one thread per column c (of 16·G, plus one zero group when G is odd): x' (scratch[0, P)) for the outliers, xsum
    // (scratch[P, P + G)) reduced over the 16 threads of a group with shuffles, and x̃ (from P + G rounded up to 4):
    // x' scaled by 2^−b·(c mod 4) (Code leaves code k of a half-group at bit b·(k mod 4), k = c mod 8) and swizzled for the
    // lanes: with lane chunks of 32 columns (four-row kernel) column c of chunk u = c / 32 (step u / W, lane u % W) sits
    // at ((u / W)·32 + c mod 32)·W + u % W, so each load instruction of a warp reads 32 consecutive floats; with chunks
    // of 128 (wide kernel) float4 k / 4 of chunk u sits at (u / W)·128·W + (k / 4)·4W + (u % W)·4, k = c mod 128, so each
    // 16-byte load instruction of a warp reads 512 consecutive bytes. P = 16·G; zero past cols.
    private static void SpqrPrepareKernel(ArrayView<float> x, ArrayView<int> perm, ArrayView<float> scratch, int cols, int b, int W, int chunk)
    {
        int c = Grid.GlobalIndex.X;
        int groups = (cols + 15) / 16, padded = groups * 16, xt = (padded + groups + 3) & ~3, total = (groups + (groups & 1)) * 16;
        float v = c < cols ? x[perm[c]] : 0f;
        float sum = v;
        if (Warp.WarpSize >= 16)
            for (int o = 8; o > 0; o >>= 1) sum += Warp.ShuffleDown(sum, o);
        else if ((c & 15) == 0)
        {
            sum = 0;
            for (int k = 0; k < 16; k++) sum += c + k < cols ? x[perm[c + k]] : 0f;
        }
        if (c >= total) return;
        if (c < padded) scratch[c] = v;
        if ((c & 15) == 0 && c < padded) scratch[padded + c / 16] = sum;
        float xs = v * Interop.IntAsFloat((uint)((127 - b * (c & 3)) << 23));
        int u = c / chunk;
        if (chunk == LaneCols) scratch[xt + ((u / W) * LaneCols + c % LaneCols) * W + u % W] = xs;
        else if (c < padded) { int k = c % WideCols; scratch[xt + (u / W) * WideCols * W + (k >> 2) * 4 * W + (u % W) * 4 + (k & 3)] = xs; }
    }


    private static void SpqrMatVec2Kernel(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<int> offsets,
                                          ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<float> scratch, ArrayView<float> y, SpqrDims d)
        => SpqrMatVecFast(codes, statCodes, planes, offsets, ocols, deltas, scratch, y, d, 2);
    private static void SpqrMatVec3Kernel(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<int> offsets,
                                          ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<float> scratch, ArrayView<float> y, SpqrDims d)
        => SpqrMatVecFast(codes, statCodes, planes, offsets, ocols, deltas, scratch, y, d, 3);
    private static void SpqrMatVec4Kernel(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<int> offsets,
                                          ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<float> scratch, ArrayView<float> y, SpqrDims d)
        => SpqrMatVecFast(codes, statCodes, planes, offsets, ocols, deltas, scratch, y, d, 4);

    // bits [at, at + 32) of the little-endian stream u0 u1 u2 … (at < 64)
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static uint Bits(uint u0, uint u1, uint u2, int at)
        => at == 0 ? u0 : at < 32 ? (u0 >> at) | (u1 << (32 - at)) : at == 32 ? u1 : (u1 >> (at - 32)) | (u2 << (64 - at));

    // one warp per PAIR of rows (x̃ loaded once per step, used for both); lane l takes 32 columns (two groups, four
    // half-groups: 4·b bytes per row) per step, W·32 a step: its own two groups' statistics per row, 4·b code bytes per
    // row and 32 coalesced loads of the swizzled x̃; codes through Code (x̃ carries their 2^−b·(k mod 4)).
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void SpqrMatVecFast(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<int> offsets,
                                       ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<float> scratch, ArrayView<float> y, SpqrDims d, int b)
    {
        int r0 = 2 * RowIndex();
        if (r0 >= d.Rows) return;
        int r1 = Math.Min(r0 + 1, d.Rows - 1); // an odd last row is computed twice and stored once
        int groups = d.Groups, lane = Warp.LaneIdx, W = Warp.WarpSize, padded = groups * 16;
        int xt = (padded + groups + 3) & ~3;
        var u32 = codes.Cast<uint>();
        bool aligned = (d.RowBytes & 3) == 0;
        float acc0 = 0, acc1 = 0;
        int chunks = (groups + 1) / 2, steps = (chunks + W - 1) / W;
        for (int it = 0; it < steps; it++)
        {
            int u = it * W + lane;
            if (u < chunks)
            {
                int xi = xt + it * LaneCols * W + lane;
                var xv = X32.Load(scratch, xi, W);
                for (int h = 0; h < 2; h++)
                {
                    int r = h == 0 ? r0 : r1;
                    // the chunk's 4·b bytes as words (b = 2: 2 words, 3: 3, 4: 4)
                    int p = r * d.RowBytes + u * 4 * b;
                    uint w0, w1, w2 = 0, w3 = 0;
                    if (aligned)
                    {
                        int q = p >> 2;
                        w0 = u32[q]; w1 = u32[q + 1];
                        if (b > 2) w2 = u32[q + 2];
                        if (b > 3) w3 = u32[q + 3];
                    }
                    else
                    {
                        w0 = (uint)(codes[p] | (codes[p + 1] << 8) | (codes[p + 2] << 16) | (codes[p + 3] << 24));
                        w1 = (uint)(codes[p + 4] | (codes[p + 5] << 8) | (codes[p + 6] << 16) | (codes[p + 7] << 24));
                        if (b > 2) w2 = (uint)(codes[p + 8] | (codes[p + 9] << 8) | (codes[p + 10] << 16) | (codes[p + 11] << 24));
                        if (b > 3) w3 = (uint)(codes[p + 12] | (codes[p + 13] << 8) | (codes[p + 14] << 16) | (codes[p + 15] << 24));
                    }
                    PairDots(w0, w1, w2, w3, b, xv, out float dA, out float dB);
                    float part = 0;
                    for (int t = 0; t < 2; t++)
                    {
                        int g = 2 * u + t;
                        if (g >= groups) break;
                        GroupStat(statCodes, planes, d, r, g, out float s, out float z);
                        part += s * ((t == 0 ? dA : dB) - z * scratch[padded + g]);
                    }
                    if (h == 0) acc0 += part; else acc1 += part;
                }
            }
        }
        for (int i = offsets[r0] + lane; i < offsets[r0 + 1]; i += W) acc0 += deltas[i] * scratch[(int)ocols[i]];
        for (int i = offsets[r1] + lane; i < offsets[r1 + 1]; i += W) acc1 += deltas[i] * scratch[(int)ocols[i]];
        acc0 = WarpSum(acc0);
        acc1 = WarpSum(acc1);
        if (Warp.IsFirstLane) { y[r0] = acc0; y[r1] = acc1; }
    }

    // Fast path, four rows per warp (see the file header). Eight rows per warp was measured too (H200, 2026-11-28):
    // 45-105 µs against 27-57 µs for four, as fewer warps leave the device latency-bound.
    private const int SpqrRowsPerWarp = 4;

    private static void SpqrMatVecP2Kernel(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<int> offsets,
                                           ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<float> scratch, ArrayView<float> y, SpqrDims d, int K)
        => SpqrMatVecRows4P(codes, statCodes, planes, offsets, ocols, deltas, scratch, y, d, K, 2);
    private static void SpqrMatVecP3Kernel(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<int> offsets,
                                           ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<float> scratch, ArrayView<float> y, SpqrDims d, int K)
        => SpqrMatVecRows4P(codes, statCodes, planes, offsets, ocols, deltas, scratch, y, d, K, 3);
    private static void SpqrMatVecP4Kernel(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<int> offsets,
                                           ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<float> scratch, ArrayView<float> y, SpqrDims d, int K)
        => SpqrMatVecRows4P(codes, statCodes, planes, offsets, ocols, deltas, scratch, y, d, K, 4);

    // code k of a half-group word as the float code·2^(b·(k mod 4)) (x̃ carries the 2^−b·(k mod 4)), exactly and without an
    // int→float conversion (I2F issues at 16 per clock per SM on sm_90, an eighth of FFMA): codes 0-3 stay in place, codes
    // 4-7 come from the word shifted down by 4b, so v < 2^16; OR-ing v onto 2^23's bits gives the float 2^23 + v, and
    // subtracting 2^23 leaves v (LOP3 + FADD, both full rate)
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static float Code(uint h, int k, int b, int m)
        => Small(k < 4 ? h & (uint)(m << (b * k)) : (h >> (4 * b)) & (uint)(m << (b * (k - 4))));

    // v < 2^23 as a float, exactly: 2^23's bits OR v is the float 2^23 + v
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static float Small(uint v) => Interop.IntAsFloat(v | 0x4B000000u) - 8388608f;

    // The four-row kernel (see the file header): the next step's code words and stat bytes are loaded before this step
    // computes. A plain version without the prefetch (72 registers instead of 96) was 3-21% slower on the H200 (run 10,
    // bench/README.md) and was removed.
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void SpqrMatVecRows4P(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<int> offsets,
                                        ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<float> scratch, ArrayView<float> y, SpqrDims d, int K, int b)
    {
        // block = warpsPerBlock warps = (warpsPerBlock / K) tiles of 4 rows × K column splits; split j takes the warp steps
        // j, j + K, j + 2K, …; the K partial sums of a row meet in shared memory
        var red = SharedMemory.Allocate<float>(4 * 32);
        int W = Warp.WarpSize, lane = Warp.LaneIdx, wpb = Group.DimX / W, wi = Warp.WarpIdx, split = wi % K;
        int r0 = SpqrRowsPerWarp * (Grid.IdxX * (wpb / K) + wi / K);
        bool live = r0 < d.Rows;
        int rb = live ? r0 : 0;
        int groups = d.Groups, padded = groups * 16;
        int pg = rb / d.QqGroupSize * groups;
        int xt = (padded + groups + 3) & ~3;
        var u32 = codes.Cast<uint>();
        float acc0 = 0; float acc1 = 0; float acc2 = 0; float acc3 = 0; 
        int chunks = (groups + 1) / 2, steps = (chunks + W - 1) / W, last = d.Rows - 1;
        // software pipeline: the code words and stat bytes of the next step are in flight while this step computes
        int cu = split * W + lane;
        bool have = live && split < steps && cu < chunks;
        RowWords c0 = default, c1 = default, c2 = default, c3 = default;
        if (have)
        {
            c0 = SpqrRowLoad(u32, statCodes, d, Math.Min(rb + 0, last), cu, b); c1 = SpqrRowLoad(u32, statCodes, d, Math.Min(rb + 1, last), cu, b);
            c2 = SpqrRowLoad(u32, statCodes, d, Math.Min(rb + 2, last), cu, b); c3 = SpqrRowLoad(u32, statCodes, d, Math.Min(rb + 3, last), cu, b);
        }
        for (int st = split; live && st < steps; st += K)
        {
            int u = st * W + lane, nu = u + K * W;
            bool cur = u < chunks, next = st + K < steps && nu < chunks;
            RowWords n0 = default, n1 = default, n2 = default, n3 = default;
            if (next)
            {
                n0 = SpqrRowLoad(u32, statCodes, d, Math.Min(rb + 0, last), nu, b); n1 = SpqrRowLoad(u32, statCodes, d, Math.Min(rb + 1, last), nu, b);
                n2 = SpqrRowLoad(u32, statCodes, d, Math.Min(rb + 2, last), nu, b); n3 = SpqrRowLoad(u32, statCodes, d, Math.Min(rb + 3, last), nu, b);
            }
            if (cur)
            {
                int xi = xt + st * LaneCols * W + lane;
                var xv = X32.Load(scratch, xi, W);
                int g0 = 2 * u, g1 = g0 + 1;
                bool has1 = g1 < groups;
                int i0 = pg + g0, i1 = has1 ? i0 + 1 : i0;
                float ss0 = planes[4 * i0], sz0 = planes[4 * i0 + 1], zs0 = planes[4 * i0 + 2], zz0 = planes[4 * i0 + 3];
                float ss1 = planes[4 * i1], sz1 = planes[4 * i1 + 1], zs1 = planes[4 * i1 + 2], zz1 = planes[4 * i1 + 3];
                float xs0 = scratch[padded + g0], xs1 = has1 ? scratch[padded + g1] : 0f;
                acc0 += SpqrRowCompute(c0, d, b, has1, ss0, sz0, zs0, zz0, ss1, sz1, zs1, zz1, xs0, xs1, xv);
                acc1 += SpqrRowCompute(c1, d, b, has1, ss0, sz0, zs0, zz0, ss1, sz1, zs1, zz1, xs0, xs1, xv);
                acc2 += SpqrRowCompute(c2, d, b, has1, ss0, sz0, zs0, zz0, ss1, sz1, zs1, zz1, xs0, xs1, xv);
                acc3 += SpqrRowCompute(c3, d, b, has1, ss0, sz0, zs0, zz0, ss1, sz1, zs1, zz1, xs0, xs1, xv);
            }
            c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        }
        if (live && split == 0)
        {
            acc0 += OutlierPart(offsets, ocols, deltas, scratch, Math.Min(rb + 0, last));
            acc1 += OutlierPart(offsets, ocols, deltas, scratch, Math.Min(rb + 1, last));
            acc2 += OutlierPart(offsets, ocols, deltas, scratch, Math.Min(rb + 2, last));
            acc3 += OutlierPart(offsets, ocols, deltas, scratch, Math.Min(rb + 3, last));
        }
        acc0 = WarpSum(acc0);
        acc1 = WarpSum(acc1);
        acc2 = WarpSum(acc2);
        acc3 = WarpSum(acc3);
        if (K > 1)
        {
            if (Warp.IsFirstLane) { red[4 * wi + 0] = acc0; red[4 * wi + 1] = acc1; red[4 * wi + 2] = acc2; red[4 * wi + 3] = acc3; }
            Group.Barrier();
            if (split == 0 && Warp.IsFirstLane)
                for (int j = 1; j < K; j++) { acc0 += red[4 * (wi + j) + 0]; acc1 += red[4 * (wi + j) + 1]; acc2 += red[4 * (wi + j) + 2]; acc3 += red[4 * (wi + j) + 3]; }
        }
        if (live && split == 0 && Warp.IsFirstLane)
        {
            if (rb + 0 <= last) y[rb + 0] = acc0;
            if (rb + 1 <= last) y[rb + 1] = acc1;
            if (rb + 2 <= last) y[rb + 2] = acc2;
            if (rb + 3 <= last) y[rb + 3] = acc3;
        }
    }

    private static void SpqrMatVecW2Kernel(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<int> offsets,
                                           ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<float> scratch, ArrayView<float> y, SpqrDims d)
        => SpqrMatVecWide(codes, statCodes, planes, offsets, ocols, deltas, scratch, y, d, 2);
    private static void SpqrMatVecW3Kernel(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<int> offsets,
                                           ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<float> scratch, ArrayView<float> y, SpqrDims d)
        => SpqrMatVecWide(codes, statCodes, planes, offsets, ocols, deltas, scratch, y, d, 3);
    private static void SpqrMatVecW4Kernel(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<int> offsets,
                                           ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<float> scratch, ArrayView<float> y, SpqrDims d)
        => SpqrMatVecWide(codes, statCodes, planes, offsets, ocols, deltas, scratch, y, d, 4);

    // The wide kernel (WideApplies): one warp per row pair (one row group); lane l takes a chunk of 8 groups (128 columns)
    // per warp step: per row b 16-byte code loads and the chunk's F stat bytes; then four pairs of groups, each with its
    // 32 x̃ (eight 16-byte loads), the two groups' (ss, sz, zs, zz) (one 16-byte load each) and xsums, shared by both rows.
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void SpqrMatVecWide(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<int> offsets,
                                       ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<float> scratch, ArrayView<float> y, SpqrDims d, int b)
    {
        int r0 = 2 * RowIndex();
        if (r0 >= d.Rows) return;
        int r1 = Math.Min(r0 + 1, d.Rows - 1); // an odd last row is computed twice and stored once
        int W = Warp.WarpSize, lane = Warp.LaneIdx, groups = d.Groups, padded = groups * 16;
        int xt = (padded + groups + 3) & ~3, chunks = groups / 8, steps = (chunks + W - 1) / W, pg = r0 / d.QqGroupSize * groups;
        var u32 = codes.Cast<uint>();
        float acc0 = 0, acc1 = 0;
        for (int st = 0; st < steps; st++)
        {
            int u = st * W + lane;
            if (u < chunks)
            {
                WideLoad(u32, statCodes, d, r0, r1, u, b, out var a, out var c, out ulong s0, out ulong s1);
                int xb = xt + st * WideCols * W + lane * 4, gb = 8 * u;
                // the four pairs unrolled by hand (a constant m selects the code words without indexing)
                WidePair(0, b, a, c, s0, s1, planes, scratch, d, xb, gb, pg, padded, W, ref acc0, ref acc1);
                WidePair(1, b, a, c, s0, s1, planes, scratch, d, xb, gb, pg, padded, W, ref acc0, ref acc1);
                WidePair(2, b, a, c, s0, s1, planes, scratch, d, xb, gb, pg, padded, W, ref acc0, ref acc1);
                WidePair(3, b, a, c, s0, s1, planes, scratch, d, xb, gb, pg, padded, W, ref acc0, ref acc1);
            }
        }
        // the outliers after the codes: requesting the first codes before the outliers' dependent loads (offsets →
        // columns → x') was measured no faster on the H200 (11008x4096: 27.6 µs against 24.6 main-kernel time)
        acc0 += OutlierPart(offsets, ocols, deltas, scratch, r0);
        acc1 += OutlierPart(offsets, ocols, deltas, scratch, r1);
        acc0 = WarpSum(acc0);
        acc1 = WarpSum(acc1);
        if (Warp.IsFirstLane) { y[r0] = acc0; y[r1] = acc1; }
    }

    // rows r0 and r1, chunk u: b 16-byte code loads each and their F stat bytes
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void WideLoad(ArrayView<uint> u32, ArrayView<byte> statCodes, SpqrDims d, int r0, int r1, int u, int b, out U16 a, out U16 c, out ulong s0, out ulong s1)
    {
        a = U16.Load(u32, ((long)r0 * d.RowBytes + (long)u * 16 * b) >> 2, b);
        c = U16.Load(u32, ((long)r1 * d.RowBytes + (long)u * 16 * b) >> 2, b);
        s0 = StatChunk(statCodes, (long)r0 * d.StatRowBytes + (long)u * d.StatBits, d.StatBits);
        s1 = StatChunk(statCodes, (long)r1 * d.StatRowBytes + (long)u * d.StatBits, d.StatBits);
    }

    // pair m (groups gb + 2m, gb + 2m + 1) of both rows: its 32 x̃, the two groups' second-order statistics and xsums
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void WidePair(int m, int b, U16 a, U16 c, ulong s0, ulong s1, ArrayView<float> planes, ArrayView<float> scratch, SpqrDims d,
                                 int xb, int gb, int pg, int padded, int W, ref float acc0, ref float acc1)
    {
        int F = d.StatBits;
        var xv = X32.LoadWide(scratch, xb + m * 32 * W, W);
        int g0 = gb + 2 * m, i0 = pg + g0;
        Load4(planes, 4 * i0, out float ss0, out float sz0, out float zs0, out float zz0);
        Load4(planes, 4 * i0 + 4, out float ss1, out float sz1, out float zs1, out float zz1);
        float xs0 = scratch[padded + g0], xs1 = scratch[padded + g0 + 1];
        acc0 += SpqrRowCompute(a.Pair(m, b, (int)(s0 >> (2 * F * m))), d, b, true, ss0, sz0, zs0, zz0, ss1, sz1, zs1, zz1, xs0, xs1, xv);
        acc1 += SpqrRowCompute(c.Pair(m, b, (int)(s1 >> (2 * F * m))), d, b, true, ss0, sz0, zs0, zz0, ss1, sz1, zs1, zz1, xs0, xs1, xv);
    }

    // the F stat bytes (8 fields of F bits) of one row's chunk, little-endian
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static ulong StatChunk(ArrayView<byte> statCodes, long at, int F)
    {
        ulong v = 0;
        for (int k = 0; k < F; k++) v |= (ulong)statCodes[at + k] << (8 * k);
        return v;
    }

    // four consecutive elements at a 16-byte aligned index i, as one struct load of a view ILGPU knows is 16-byte aligned:
    // its PTX backend then emits one ld.global.v4 (it splits loads of unaligned structs into scalar loads)
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    internal static void Load4(ArrayView<float> v, int i, out float e0, out float e1, out float e2, out float e3)
    {
        var q = v.Cast<F4>().AsAligned(16)[i >> 2];
        e0 = q.X; e1 = q.Y; e2 = q.Z; e3 = q.W;
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    internal static void Load4(ArrayView<uint> v, long i, out uint e0, out uint e1, out uint e2, out uint e3)
    {
        var q = v.Cast<U4>().AsAligned(16)[i >> 2];
        e0 = q.X; e1 = q.Y; e2 = q.Z; e3 = q.W;
    }

#pragma warning disable CS0649 // filled by device loads
    internal struct F4 { public float X, Y, Z, W; }
    internal struct F2 { public float X, Y; }
    internal struct U4 { public uint X, Y, Z, W; }
    internal struct U2 { public uint X, Y; }
#pragma warning restore CS0649

    // this lane's share of row r's outlier deltas · x' (past its first `skip` entries)
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static float OutlierPart(ArrayView<int> offsets, ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<float> scratch, int r, int skip = 0)
    {
        float acc = 0;
        for (int i = offsets[r] + skip + Warp.LaneIdx; i < offsets[r + 1]; i += Warp.WarpSize) acc += deltas[i] * scratch[(int)ocols[i]];
        return acc;
    }

    /// <summary>What one row needs from memory for one chunk: its b code words and its two stat fields (shifted down).</summary>
    public struct RowWords { public uint W0, W1, W2, W3; public int Stat; }

    // row r, chunk u (groups 2u, 2u + 1): the loads (SpqrRowLoad; RowBytes % 4 == 0, checked by the caller, so the
    // chunk's 4·b bytes are b whole words) and s0·(dot0 − z0·xsum0) + s1·(dot1 − z1·xsum1) with the shared planes
    // (SpqrRowCompute)
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static RowWords SpqrRowLoad(ArrayView<uint> u32, ArrayView<byte> statCodes, SpqrDims d, int r, int u, int b)
    {
        int q = (r * d.RowBytes + u * 4 * b) >> 2;
        // both groups' F-bit fields: 2F ≤ 16 bits from bit 2uF of the row, within 3 bytes
        int bit = r * d.StatRowBytes * 8 + u * 2 * d.StatBits, at = bit >> 3;
        return new RowWords
        {
            W0 = u32[q], W1 = u32[q + 1], W2 = b > 2 ? u32[q + 2] : 0u, W3 = b > 3 ? u32[q + 3] : 0u,
            Stat = (statCodes[at] | (statCodes[at + 1] << 8) | (statCodes[at + 2] << 16)) >> (bit & 7),
        };
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static float SpqrRowCompute(RowWords l, SpqrDims d, int b, bool has1,
                                        float ss0, float sz0, float zs0, float zz0, float ss1, float sz1, float zs1, float zz1, float xs0, float xs1, X32 xv)
    {
        PairDots(l.W0, l.W1, l.W2, l.W3, b, xv, out float dot0, out float dot1);
        int v = l.Stat, F = d.StatBits, qs = d.ScaleBits;
        int f0 = v & ((1 << F) - 1), f1 = (v >> F) & ((1 << F) - 1);
        // the statistic codes to float through the same exact OR-onto-2^23 (no I2F)
        float s0 = ss0 * (Small((uint)(f0 & ((1 << qs) - 1))) - sz0), z0 = zs0 * (Small((uint)(f0 >> qs)) - zz0);
        float s1 = ss1 * (Small((uint)(f1 & ((1 << qs) - 1))) - sz1), z1 = zs1 * (Small((uint)(f1 >> qs)) - zz1);
        return s0 * (dot0 - z0 * xs0) + (has1 ? s1 * (dot1 - z1 * xs1) : 0f);
    }

    // the two groups' code·x̃ sums of one chunk: its b words hold four half-group words of 8 codes (h0..h3)
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void PairDots(uint w0, uint w1, uint w2, uint w3, int b, X32 xv, out float dot0, out float dot1)
    {
        int m = (1 << b) - 1;
        uint h0 = Bits(w0, w1, w2, 0), h1 = b == 4 ? w1 : Bits(w0, w1, w2, 8 * b);
        uint h2 = b == 4 ? w2 : Bits(w0, w1, w2, 16 * b), h3 = b == 4 ? w3 : b == 2 ? w1 >> 16 : Bits(w1, w2, 0, 24 * b - 32);
        dot0 = Code(h0, 0, b, m) * xv.V0 + Code(h0, 1, b, m) * xv.V1 + Code(h0, 2, b, m) * xv.V2 + Code(h0, 3, b, m) * xv.V3 + Code(h0, 4, b, m) * xv.V4 + Code(h0, 5, b, m) * xv.V5 + Code(h0, 6, b, m) * xv.V6 + Code(h0, 7, b, m) * xv.V7
             + Code(h1, 0, b, m) * xv.V8 + Code(h1, 1, b, m) * xv.V9 + Code(h1, 2, b, m) * xv.V10 + Code(h1, 3, b, m) * xv.V11 + Code(h1, 4, b, m) * xv.V12 + Code(h1, 5, b, m) * xv.V13 + Code(h1, 6, b, m) * xv.V14 + Code(h1, 7, b, m) * xv.V15;
        dot1 = Code(h2, 0, b, m) * xv.V16 + Code(h2, 1, b, m) * xv.V17 + Code(h2, 2, b, m) * xv.V18 + Code(h2, 3, b, m) * xv.V19 + Code(h2, 4, b, m) * xv.V20 + Code(h2, 5, b, m) * xv.V21 + Code(h2, 6, b, m) * xv.V22 + Code(h2, 7, b, m) * xv.V23
             + Code(h3, 0, b, m) * xv.V24 + Code(h3, 1, b, m) * xv.V25 + Code(h3, 2, b, m) * xv.V26 + Code(h3, 3, b, m) * xv.V27 + Code(h3, 4, b, m) * xv.V28 + Code(h3, 5, b, m) * xv.V29 + Code(h3, 6, b, m) * xv.V30 + Code(h3, 7, b, m) * xv.V31;
    }

    private static void GatherKernel(ArrayView<float> x, ArrayView<int> perm, ArrayView<float> xp, int cols, int padded)
    {
        int c = Grid.GlobalIndex.X;
        if (c < cols) xp[c] = x[perm[c]];
        else if (c < padded) xp[c] = 0;
    }

    // round to the nearest fp16 value (ties to even), as a float: SpqrLayer.H on the device (finite inputs)
    private static float H(float v)
    {
        int b = (int)Interop.FloatAsInt(v);
        int a = b & 0x7FFFFFFF;
        if (a < 0x38800000) return (v + 0.75f) - 0.75f;                  // |v| < 2^-14: multiples of 2^-24
        if (a >= 0x477FF000) return Interop.IntAsFloat((uint)((b & int.MinValue) | 0x7F800000)); // ≥ 65520: ±inf
        return Interop.IntAsFloat((uint)((b + 0x0FFF + ((b >> 13) & 1)) & ~0x1FFF));
    }

    // b-bit code k (0..7) of a half-group whose 8·b bits start at byte p
    private static int HalfCode(ArrayView<byte> codes, long p, int b, int k)
    {
        int bit = b * k, byte0 = bit >> 3, sh = bit & 7;
        int v = codes[p + byte0] | (codes[p + byte0 + 1] << 8); // b ≤ 8 and sh ≤ 7: two bytes hold the code
        return (v >> sh) & ((1 << b) - 1);
    }

    // (scale, zero) of (row r, group g) from its F-bit stat field and the row group's second-order planes, in the
    // stored form's arithmetic (fp16 steps for fp16-step layers): the general kernels' one statistics decoder
    private static void GroupStat(ArrayView<byte> statCodes, ArrayView<float> planes, SpqrDims d, int r, int g, out float s, out float z)
    {
        long i = (long)(r / d.QqGroupSize) * d.Groups + g;
        long bit = (long)r * d.StatRowBytes * 8 + (long)g * d.StatBits;
        int f = ((statCodes[bit >> 3] | (statCodes[(bit >> 3) + 1] << 8)) >> (int)(bit & 7)) & ((1 << d.StatBits) - 1);
        int smask = (1 << d.ScaleBits) - 1;
        if (d.Fp16 != 0)
        {
            s = H(planes[4 * i] * H((f & smask) - planes[4 * i + 1]));
            z = H(planes[4 * i + 2] * H((f >> d.ScaleBits) - planes[4 * i + 3]));
        }
        else
        {
            s = planes[4 * i] * ((f & smask) - planes[4 * i + 1]);
            z = planes[4 * i + 2] * ((f >> d.ScaleBits) - planes[4 * i + 3]);
        }
    }

    private static void SpqrMatVecKernel(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<int> offsets,
                                         ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<float> xp, ArrayView<float> y, SpqrDims d)
    {
        int r = RowIndex();
        if (r >= d.Rows) return;
        int b = d.WBits, groups = d.Groups;
        long rowCodes = (long)r * d.RowBytes;
        float acc = 0;
        for (int g = Warp.LaneIdx; g < groups; g += Warp.WarpSize)
        {
            GroupStat(statCodes, planes, d, r, g, out float s, out float z);
            long p = rowCodes + (long)g * 2 * b;
            int x0 = g * 16;
            if (d.Fp16 != 0)
            {
                for (int k = 0; k < 16; k++) acc += H(s * H(HalfCode(codes, p + (k >> 3) * b, b, k & 7) - z)) * xp[x0 + k];
                continue;
            }
            float dot = 0, xs = 0;
            if (b <= 4)
            {
                // each half-group's 8·b ≤ 32 bits in one word assembled from b bytes
                for (int h = 0; h < 2; h++)
                {
                    long q0 = p + h * b;
                    uint word = codes[q0];
                    for (int j = 1; j < b; j++) word |= (uint)codes[q0 + j] << (8 * j);
                    for (int k = 0; k < 8; k++)
                    {
                        float xv = xp[x0 + 8 * h + k];
                        dot += (int)((word >> (b * k)) & (uint)((1 << b) - 1)) * xv;
                        xs += xv;
                    }
                }
            }
            else
            {
                for (int k = 0; k < 16; k++)
                {
                    float xv = xp[x0 + k];
                    dot += HalfCode(codes, p + (k >> 3) * b, b, k & 7) * xv;
                    xs += xv;
                }
            }
            acc += s * (dot - z * xs);
        }
        for (int i = offsets[r] + Warp.LaneIdx; i < offsets[r + 1]; i += Warp.WarpSize) acc += deltas[i] * xp[(int)ocols[i]];
        acc = WarpSum(acc);
        if (Warp.IsFirstLane) y[r] = acc;
    }
}
