// SpQR matvec y = Ŵ·x on the tensor cores (mma.sync m16n8k16, fp16 operands, float32 accumulation), over the same
// bytes as the CPU format, or (w3, default) over their lane-major copy made at upload (GpuSpqrLayer.LaneCodes: each
// lane's mma pairs and statistics fields as one 32-byte record per super-step, read word-major — every load instruction
// one contiguous 256 bytes, one shift and mask per pair; 72 registers against 126; measured 10-22% faster per layer and
// +18% on 7B-shaped decode: bench/README.md, GPU eighth session; w3's records since the eleventh session hold each pair
// where one AND makes it two subnormal fp16 values c·2^(p−24) — no 1024 to OR on and subtract, most pairs unshifted —
// and the statistics codes at fixed bits: 187 instructions a super-step against 238, main kernel 6.3 / 15.3 / 12.0
// against 6.6 / 16.8 / 13.4 µs, 7B-shaped decode 375 against 347 tokens/s; GpuSpqrLayer.LaneMajor). Used where it applies (TcApplies: wbits 2-4, float32
// statistics, cols % 128 == 0, β2 % 16 == 0, stat fields ≤ 8 bits, a warp of 32) and was measured faster: every shape
// over lane-major codes; over the format's codes, layers with at least as many columns as rows (q/k/v/o, down_proj);
// else the kernels of GpuKernels.Spqr.cs.
//
// Why the tensor cores for a matvec: decoding a weight exactly in float32 on the CUDA cores costs ≥ 3 instructions
// (mask, OR onto 2^23, subtract) plus its FFMA, and the float32 kernels issue ~8 per weight (bench/README.md). Here a
// code becomes an fp16 value with one LOP3 per pair (OR onto 1024's bits) and one HSUB2, and 256 code·x products are
// one mma: ~1.2 instructions per weight (296 per 8-group super-step of 16 rows). Measured on the H200, that did not
// make it faster in general: it ties the float32 wide kernel on 4096x4096, loses 11% on 11008x4096 and wins 17-20% on
// 4096x11008. Nsight Compute: latency-bound (4 warps per scheduler, 0.75 eligible, DRAM at 13%); 56-register builds
// with twice the warps, register caps, software pipelining and 4 or 16 column splits all measured the same or slower,
// and the loads alone (SpqrTcLoadsOnly) take 70-85% of the time — of which the outlier walk after the loop 2.3-6.8 µs
// and the statistics 1.2-4 µs: memory latency, not the arithmetic, is the bound (bench/README.md, GPU sixth session).
//
// Exactness: codes (and code·2^4) are exact in fp16; x is not, so x̃ is split in two fp16 parts, hi = fp16(x̃) and
// lo = fp16(x̃ − hi), under a per-group power-of-two scale 2^E (the group's max |x| lands in [2^14, 2^15), so neither
// part overflows and lo keeps its precision): the products are exact and the accumulation float32, so a group's
// Σ q·x̃ carries ~22 significant bits (the float32 kernels' NMSE against the CPU is ~1e-13; this one's is measured by the
// same tests). Each row then adds s·(dot·2^−E − z·xsum) per group, exactly as the float32 kernels, and its CSR outlier
// deltas · x'.
//
// Fragments (PTX ISA, mma.m16n8k16 .f16; lane = 4·gid + t): A regs {a0, a1, a2, a3} = (row gid, k 2t..2t+1),
// (row gid+8, k 2t..), (row gid, k 2t+8..), (row gid+8, k 2t+8..); B regs {b0, b1} = (k 2t..2t+1, col gid),
// (k 2t+8.., col gid); D = (row gid, cols 2t, 2t+1), (row gid+8, cols 2t, 2t+1). The k order inside a group is free
// (A and B agree on it): lane t holds codes {t, t+4} and {t+8, t+12} of the group (w2: {t, t+8} and {t+4, t+12}),
// which after shifting the row's code stream down by b·t sit at fixed bit positions — one mask selects a pair in place
// (the low code at bit p = 4 for w3, else 0; x̃ carries 2^−p). The subnormal w3 records (SpqrDims.LaneLayout 1) place
// each pair at p = 0, 3 or 6 with no exponent bits: c·2^(p−24), x̃ carrying 2^−p and its group scale 2^24 (TcSplit).
//
// One warp = a tile of 16 rows (one β2 row group) × every K-th super-step of 8 groups (128 columns): per super-step
// 2·b 16-byte code loads per lane (the 4 lanes of a quad read the same row), one 16-byte x̃ load, 8 mma. The mma of
// group 4i + u uses B columns 2u, 2u+1 only (x̃ hi, lo; the other lanes give zeros), so four mma accumulate into one
// D and lane t ends with group 4i + t's dots for its two rows: each lane applies the statistics of 2 groups × 2 rows
// per super-step. The K warps of a tile meet in shared memory (summed in order: deterministic); K = 8, or 12 where the
// launch fits one wave of 12-warp blocks (TcGrid). The tile's writer adds y's old value on request (y += Ŵ·x, the
// decoder's residual add), and the prepare launch may normalize x first (InputRmsNorm: every block sums x² itself).
//
// Scratch (floats): x' [16·G] (outliers), then (xsum, 2^−E) [G], then x̃ [16·G as fp16 pairs]: per super-step S,
// uint4 ((S·2 + hl)·4 + t)·4 + u holds (b0, b1) of group 8S + u and of group 8S + u + 4, hl = 0 for hi, 1 for lo.
// Where it pays (SpqrTcFold, w3 subnormal records, plain inputs, short one-wave launches: o_proj): SpqrMatVecTcLanes3FoldKernel
// builds those same words and (xsum, 2^−E) in its lanes from x itself (FoldX) — no prepare launch, no scratch; the same
// bits on the CPU accelerator. Measured and removed (bench/README.md, seventeenth session): the same arithmetic on x' laid
// out in the lane order beforehand (the producer route: 7.1 / 18.0 / 14.4 µs, little below prepare + kernel) and on x staged
// in each block's shared memory (slower than prepare + kernel; decode −34%).
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using SpqrLaunchTc = System.Action<ILGPU.KernelConfig, ILGPU.ArrayView<byte>, ILGPU.ArrayView<byte>, ILGPU.ArrayView<float>, ILGPU.ArrayView<int>, ILGPU.ArrayView<ushort>, ILGPU.ArrayView<float>, ILGPU.ArrayView<float>, ILGPU.ArrayView<float>, SpQR.Gpu.SpqrDims, int>;

namespace SpQR.Gpu;

public sealed partial class GpuKernels
{
    /// <summary>Kernel choice: the tensor-core kernel for the layers it takes (default), or false for the float32 kernels
    /// everywhere.</summary>
    public bool SpqrTensorCores { get; set; } = true;
    /// <summary>By default the tensor-core kernel takes only layers with at least as many columns as rows, where it was
    /// measured faster than the float32 wide kernel on the H200: 4096x11008 (LLaMA's down_proj) 21.0-21.1 against 28.0 µs,
    /// 4096x4096 (q/k/v/o) 12.0-12.1 against 13.1-13.2 µs (since the seventh session's outlier prefetch; five commands of
    /// the eighth session); on 11008x4096 (gate/up) the wide kernel stays faster, 26.4-26.5 against 27.2-27.5 µs
    /// (bench/README.md, GPU eighth session). True: every shape it can take (benchmarks, tests).</summary>
    public bool SpqrTcAllShapes { get; set; }
    /// <summary>Square layers on the tensor cores (default); false: only layers with more columns than rows (the rule
    /// of the sixth and seventh sessions; GpuBench times both).</summary>
    public bool SpqrTcSquare { get; set; } = true;
    /// <summary>The tensor-core kernel over <see cref="GpuSpqrLayer.LaneCodes"/> where a layer has them (default), or false:
    /// over the format's codes (benchmarks, tests).</summary>
    public bool SpqrTcLaneMajor { get; set; } = true;
    /// <summary>Models built on this backend upload the lane-major copy of their w3 layers' codes
    /// (<see cref="GpuSpqrLayer.LaneCodes"/>: 1,024 device bytes per 864 of the format's codes and statistics fields,
    /// on top of them).</summary>
    public bool SpqrLaneMajorUpload { get; set; } = true;
    /// <summary>With <see cref="SpqrLaneMajorUpload"/>, w2 layers too (off: over lane-major codes w2 measured 10.2 / 18.6 /
    /// 20.2 µs against 9.8 / 24.7 / 18.1 over the format's codes — faster only on 11008x4096; H200, ninth session, run 4).
    /// w3 and w4 layers get the copy: w4 measured 10.6 / 20.3 / 18.6 µs over it against 12.3 / 28.2 / 21.4 over the
    /// format's codes (run 1).</summary>
    public bool SpqrLaneMajorW2 { get; set; }

    /// <summary>Models built on this backend keep the format's codes on the device beside the lane-major copy (default:
    /// batched prefill ~4% faster on the float32 GEMM, H200 ninth session run 7); false keeps the lane-major copy only
    /// (about 45% less device memory for those layers; prefill then runs the lane-major tensor-core GEMM).</summary>
    public bool SpqrFormatCodesBesideLaneMajor { get; set; } = true;

    /// <summary>Models built on this backend upload w3's lane-major records in the eighth session's layout (pairs OR'd onto
    /// 1024, subtracted in the kernel) instead of the subnormal one (GpuSpqrLayer.LaneMajor): for benchmarks comparing
    /// the two.</summary>
    public bool SpqrW3MagicRecords { get; set; }

    /// <summary>Whether a model built on this backend uploads the lane-major copy of a layer of this width.</summary>
    public bool LaneMajorUploadFor(int wbits) => SpqrLaneMajorUpload && (wbits is 3 or 4 || SpqrLaneMajorW2 && wbits == 2);
    /// <summary>Column splits K of the tensor-core kernel (0 = chosen by shape; else 1, 2, 4, 8 or 16).</summary>
    public int SpqrTcSplits { get; set; }
    /// <summary>The w3 lane-major matvec (subnormal records) issues its prefetched outliers' x' gathers after the second
    /// super-step's loads (SpqrMatVecTcLanes3LateKernel / Group3Late), or (false, default) before them: the eleventh
    /// session's kernels (SpqrMatVecTcLanes3Kernel / Group3). Measured on the H100 (bench/README.md, GPU fourteenth
    /// session): the lone-layer main kernel 4-6% faster late (6.26 / 15.14-15.41 / 12.58 µs against 6.51-6.52 /
    /// 16.10-16.21 / 13.02-13.10), but ptxas gives the late kernels 76 / 104 registers against 65 / 73, and the grouped
    /// launches' occupancy loss makes 7B-shaped decode slower: 307-310 against 351-355 tokens/s. Off by default.</summary>
    public bool SpqrTcLateGather { get; set; }
    private SpqrLaunchTc? _spqrTcLanes3Late;
    /// <summary>The w3 lane-major matvec (subnormal records) builds its x̃ from x itself where the input is plain (no SwiGLU,
    /// no input norm) and it pays (<see cref="SpqrTcFoldAllShapes"/>): no prepare launch (SpqrMatVecTcLanes3FoldKernel,
    /// GpuSpqrLayer.FoldIndex). Default on; false: the prepare launch, then the kernel, everywhere.</summary>
    public bool SpqrTcFold { get; set; } = true;
    /// <summary>The fold on every layer it can take (tests, benchmarks) instead of only where it was measured to pay: a launch
    /// of one wave at 12 splits with at most 3 super-steps a warp (LLaMA's o_proj, 4096x4096). Its x gathers through the
    /// permutation cost an L1 sector each, more per super-step than the coalesced x̃ loads they replace, so it only pays
    /// where the prepare launch it saves outweighs them. Measured on the H100 (bench/README.md, GPU sixteenth session):
    /// 4096x4096 whole call 8.31-8.47 µs against 8.42-8.55 (main kernel 6.47-6.57 after the prepare), 7B-shaped decode
    /// +0.7-1.8% in six interleaved rounds; 11008x4096 19.98-20.47 against 18.47-18.75 and 4096x11008 16.05-16.38 against
    /// 15.06-15.32: slower.</summary>
    public bool SpqrTcFoldAllShapes { get; set; }
    /// <summary>Fold launches queued so far (a diagnostic for tests).</summary>
    public long SpqrFoldLaunches { get; private set; }
    private SpqrLaunchTc? _spqrTcFold;
    private bool FoldApplies(GpuSpqrLayer w, ArrayView<float> up, InputRmsNorm norm)
        => SpqrTcFold && w.FoldIndex is not null && LaneSlot(w.Dims) == 3 && w.Dims.LaneLayout == 1 && up.Length == 0 && !norm.IsSet
           && !SpqrTcLateGather && SpqrTcLoadsOnly == 0 && (SpqrTcFoldAllShapes || FoldPays(w.Dims));
    // one wave of 12-split blocks, ≤ 3 super-steps a warp (SpqrTcFoldAllShapes says why)
    private bool FoldPays(SpqrDims d) => TcGrid(d, lanes: true).K == 12 && d.Groups / 8 <= 36;
    /// <summary>Split j of the tensor-core kernel takes super-steps K − 1 − j, 2K − 1 − j, ... (true) or j, j + K, ... (false):
    /// measured variant (SpqrDims.StepOrder).</summary>
    public bool SpqrTcStepOrderReversed { get; set; } = true;
    /// <summary>Column splits of grouped launches (SpqrMatVecGroup) only: 0 = by shape (TcGrid); for measurements.</summary>
    public int SpqrTcGroupSplits { get; set; }
    /// <summary>Benchmark diagnostic (w3 only): 1 = the kernel's loads, outliers and reduction without its decode and mma
    /// (each step's loaded words are folded into the sum so none is dropped): what the access pattern alone costs; 2 =
    /// the same with only the codes and x̃ loaded (no statistics); 3 = that without the outliers. Its results are
    /// meaningless; 4 = the loads of a lane-major layout (each lane's code bytes contiguous, statistics inside them; read from
    /// the codes as if repacked: what such a layout would cost to load), with outliers, 5 = without.</summary>
    public int SpqrTcLoadsOnly { get; set; }
    private SpqrLaunchTc? _spqrTcLoads, _spqrTcLoadsCodes, _spqrTcLoadsBare, _spqrTcLoadsPacked, _spqrTcLoadsPackedBare;
    // the lane-major kernels by LaneSlot
    private readonly SpqrLaunchTc?[] _spqrTcLanes = new SpqrLaunchTc?[5];

    // the slot of a layer's lane-major kernels (matvec, grouped matvec, batched product): its width 2-4, or 0 for w3
    // records in the eighth session's layout (SpqrDims.LaneLayout 0)
    private static int LaneSlot(SpqrDims d) => d.WBits == 3 && d.LaneLayout == 0 ? 0 : d.WBits;
    private readonly SpqrLaunchTc?[] _spqrTc = new SpqrLaunchTc?[5];
    private Action<KernelConfig, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, TcPrepareArgs>? _prepareTc;
    private Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, int, int, int>? _prepareTcSwiGlu;

    /// <summary>The SwiGLU in the tensor-core prepare launch (<see cref="SpqrMatVecSwiGlu"/>; default): one launch fewer
    /// per layer, 7B-shaped decode 235.3 against 232.3-232.5 tokens/s with the separate SwiGLU kernel (H200, bench/README.md,
    /// GPU eighth session, run 1). False: the SwiGLU kernel first (GpuBench times both).</summary>
    public bool SpqrFuseSwiGlu { get; set; } = true;

    /// <summary>Models fold the RMSNorm before a group of projections into their prepare launch (InputRmsNorm) where
    /// every projection runs on the tensor cores (default); false: the norm kernel, then the projections.</summary>
    public bool SpqrFuseInputNorm { get; set; } = true;

    /// <summary>y = Ŵ·(silu(gate) ⊙ up): with <see cref="SpqrFuseSwiGlu"/> the SwiGLU is folded into the tensor-core
    /// matvec's prepare launch (one launch fewer per layer: LLaMA's down_proj; gate and up are left as they are).
    /// Otherwise, and for layers the tensor-core kernel does not take: the SwiGLU kernel into gate, then
    /// <see cref="SpqrMatVec"/>.</summary>
    public void SpqrMatVecSwiGlu(GpuSpqrLayer w, ArrayView<float> gate, ArrayView<float> up, ArrayView<float> scratch, ArrayView<float> y, bool accumulate = false)
    {
        if (!SpqrFuseSwiGlu || !TcApplies(w))
        {
            SwiGlu(gate, up, w.Dims.Cols);
            SpqrMatVec(w, gate, scratch, y, accumulate: accumulate);
            return;
        }
        CheckSpqrScratch(w, scratch);
        SpqrMatVecTc(w, gate, scratch, y, prepare: true, up, accumulate);
    }

    // the shapes the tensor-core kernel takes (see the file header); the warp must be 32 lanes (the mma fragments); over
    // lane-major codes every shape (measured faster than the wide kernel on all three LLaMA shapes: GPU, eighth session)
    private bool TcApplies(GpuSpqrLayer w)
    {
        var d = w.Dims;
        return SpqrTensorCores && _acc.WarpSize == 32 && TcShape(d)
            && (SpqrTcAllShapes || UsesLaneCodes(w) || d.Cols > d.Rows || SpqrTcSquare && d.Cols == d.Rows);
    }

    /// <summary>The layers the tensor-core kernel can run at all (also where GpuSpqrLayer builds lane-major codes): wbits
    /// 2-4, float32 statistics, whole 128-column super-steps, β2 % 16 == 0, statistics fields ≤ 8 bits.</summary>
    internal static bool TcShape(SpqrDims d) => d.WBits is >= 2 and <= 4 && d.Fp16 == 0 && d.Groups % 8 == 0 && d.QqGroupSize % 16 == 0 && d.StatBits <= 8;

    private bool UsesLaneCodes(GpuSpqrLayer w) => w.LaneCodes is not null && SpqrTcLaneMajor;

    private static long TcScratch(SpqrDims d) => 34L * d.Groups;

    /// <summary>Whether <see cref="SpqrMatVec"/> runs this layer on the tensor-core kernel (with the current settings).</summary>
    public bool SpqrUsesTensorCores(GpuSpqrLayer w) => TcApplies(w);

    // the tensor-core matvec (TcApplies checked by the caller); a non-empty up: x is the gate, the input silu(x) ⊙ up;
    // accumulate: y += Ŵ·x; norm: the input is RMSNorm(x) (not with up)
    private void SpqrMatVecTc(GpuSpqrLayer w, ArrayView<float> x, ArrayView<float> scratch, ArrayView<float> y, bool prepare, ArrayView<float> up = default,
                              bool accumulate = false, InputRmsNorm norm = default)
    {
        var d = w.Dims;
        if (accumulate) d.Accumulate = 1;
        if (norm.IsSet && (up.Length > 0 || !prepare)) throw new ArgumentException("SpqrMatVec: an input norm needs the prepare launch and no SwiGLU");
        if (norm.IsSet && norm.Weight.Length < d.Cols) throw new ArgumentException($"the input norm's weight holds {norm.Weight.Length} floats, need {d.Cols}");
        // the lane-major kernels read LaneCodes where the format's codes go (the diagnostics read the format's codes)
        bool lanes = UsesLaneCodes(w) && SpqrTcLoadsOnly == 0;
        CheckFormatCodes(w, lanes, "tensor-core matvec");
        // the fold kernel builds its own x̃ from x: no prepare launch, no scratch (it takes x there, its FoldIndex for the
        // statistics codes the lane-major kernels do not read)
        bool fold = lanes && FoldApplies(w, up, norm);
        if (prepare && !fold)
        {
            int n = d.Groups * 16, blk = Math.Min(256, _acc.MaxNumThreadsPerGroup);
            var cfg = new KernelConfig((n + blk - 1) / blk, blk);
            if (up.Length > 0)
            {
                _prepareTcSwiGlu ??= Load<ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, int, int, int>(SpqrPrepareTcSwiGluKernel);
                _prepareTcSwiGlu(cfg, x, up, w.Perm.View, scratch, d.Cols, d.WBits, lanes ? d.LaneLayout : 0);
            }
            else
            {
                _prepareTc ??= Load<ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, TcPrepareArgs>(SpqrPrepareTcKernel);
                _prepareTc(cfg, x, w.Perm.View, scratch, norm.IsSet ? norm.Weight : x, PrepareArgs(d, 1, norm, lanes));
            }
        }
        var (K, wpb, blocks) = TcGrid(d, lanes);
        d.StepOrder = SpqrTcStepOrderReversed ? 1 : 0;
        if (SpqrTcLoadsOnly != 0 && d.WBits != 3) throw new NotSupportedException("SpqrTcLoadsOnly: w3 layers only");
        ArrayView<byte> codes = lanes ? w.LaneCodeBytes : w.Codes.View;
        var k = fold
            ? _spqrTcFold ??= Load<ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<int>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, ArrayView<float>, SpqrDims, int>(SpqrMatVecTcLanes3FoldKernel)
            : lanes && LaneSlot(d) == 3 && SpqrTcLateGather
            ? _spqrTcLanes3Late ??= Load<ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<int>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, ArrayView<float>, SpqrDims, int>(SpqrMatVecTcLanes3LateKernel)
            : lanes
            ? _spqrTcLanes[LaneSlot(d)] ??= Load<ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<int>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, ArrayView<float>, SpqrDims, int>(
                LaneSlot(d) switch { 0 => SpqrMatVecTcLanesMagic3Kernel, 2 => SpqrMatVecTcLanes2Kernel, 3 => SpqrMatVecTcLanes3Kernel, _ => SpqrMatVecTcLanes4Kernel })
            : SpqrTcLoadsOnly == 1
            ? _spqrTcLoads ??= Load<ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<int>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, ArrayView<float>, SpqrDims, int>(SpqrMatVecTcLoads3Kernel)
            : SpqrTcLoadsOnly == 2
            ? _spqrTcLoadsCodes ??= Load<ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<int>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, ArrayView<float>, SpqrDims, int>(SpqrMatVecTcLoadsCodes3Kernel)
            : SpqrTcLoadsOnly == 4
            ? _spqrTcLoadsPacked ??= Load<ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<int>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, ArrayView<float>, SpqrDims, int>(SpqrMatVecTcLoadsPacked3Kernel)
            : SpqrTcLoadsOnly == 5
            ? _spqrTcLoadsPackedBare ??= Load<ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<int>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, ArrayView<float>, SpqrDims, int>(SpqrMatVecTcLoadsPackedBare3Kernel)
            : SpqrTcLoadsOnly == 3
            ? _spqrTcLoadsBare ??= Load<ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<int>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, ArrayView<float>, SpqrDims, int>(SpqrMatVecTcLoadsBare3Kernel)
            : _spqrTc[d.WBits] ??= Load<ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<int>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, ArrayView<float>, SpqrDims, int>(
                d.WBits switch { 2 => SpqrMatVecTc2Kernel, 3 => SpqrMatVecTc3Kernel, _ => SpqrMatVecTc4Kernel });
        k(new KernelConfig(blocks, wpb * 32), codes, fold ? w.FoldIndexBytes : w.StatCodes.View, w.Planes.View,
          w.OutlierRowOffsets.View, w.OutlierCols.View, w.OutlierDeltas.View, fold ? x : scratch, y, d, K);
        if (fold) SpqrFoldLaunches++;
    }

    /// <summary>Benchmark diagnostic: what the lane-major w3 matvec's launch costs before any of its work — a kernel with its
    /// grid (TcGrid) and block size that does only part of it: mode 0 nothing (not even the programmatic wait: launches
    /// alone), 1 the epilogue's stores of y (zeros) after the wait, 2 each warp's first super-step record requested before the wait and
    /// folded into the stored y (one dependent DRAM round trip). Against the matvec's main kernel (bench/README.md,
    /// seventeenth session: where its ~3.7 µs fixed cost goes). y must hold Rows floats; its contents are meaningless after.</summary>
    public void SpqrLaunchFloor(GpuSpqrLayer w, ArrayView<float> y, int mode)
    {
        var d = w.Dims;
        if (mode is < 0 or > 2) throw new ArgumentException($"SpqrLaunchFloor: mode 0, 1 or 2, not {mode}");
        if (!UsesLaneCodes(w) || LaneSlot(d) != 3) throw new ArgumentException($"SpqrLaunchFloor: the {d.Rows}x{d.Cols} w{d.WBits} layer has no w3 lane-major records");
        if (y.Length < d.Rows) throw new ArgumentException($"SpqrLaunchFloor: y holds {y.Length} floats, need {d.Rows}");
        var (K, wpb, blocks) = TcGrid(d, lanes: true);
        d.StepOrder = SpqrTcStepOrderReversed ? 1 : 0;
        _launchFloor ??= Load<ArrayView<ulong>, ArrayView<float>, SpqrDims, int, int>(SpqrLaunchFloorKernel);
        _launchFloor(new KernelConfig(blocks, wpb * 32), w.LaneCodes!.View, y, d, K, mode);
    }
    private Action<KernelConfig, ArrayView<ulong>, ArrayView<float>, SpqrDims, int, int>? _launchFloor;

    // the matvec's tile and split of each warp (TcWarpTile), its first super-step's record words (mode 2: LaneRecord, the
    // four words of a w3 record), the wait where the matvec waits (modes 1-2), its tile's reduction and stores (TcTileStore)
    private static void SpqrLaunchFloorKernel(ArrayView<ulong> lanes, ArrayView<float> y, SpqrDims d, int K, int mode)
    {
        if (mode == 0) return;
        var red = SharedMemory.Allocate<float>(16 * 16);
        int lane = Warp.LaneIdx, wi = Warp.WarpIdx, steps = d.Groups / 8, W = GpuSpqrLayer.LaneWords(3);
        int r0 = TcWarpTile(d, K, 0, Group.DimX / 32, wi, out int split, out int first);
        ulong v = 0;
        if (mode == 2 && r0 < d.Rows && first < steps)
        {
            var rec = lanes.SubView(LaneRecord(r0, steps, W, lane) + 32 * W * first);
            v = rec[0] ^ rec[32] ^ rec[64] ^ rec[96];
        }
        GridWait();
        // every lane's words consumed (the quad's sum), scaled to nothing
        float f = (uint)v * 1e-30f;
        f += Warp.ShuffleXor(f, 1);
        f += Warp.ShuffleXor(f, 2);
        TcTileStore(red, y, f, f, r0, K, TcTileWriter(d, r0, split, lane), 0f, false, lane, lane >> 2, lane & 3, wi);
    }

    // the tensor-core kernel's launch shape for `layers` layers of d in one launch: K column splits, warps per block,
    // blocks per layer
    private (int K, int WarpsPerBlock, int Blocks) TcGrid(SpqrDims d, bool lanes, int layers = 1)
    {
        int tiles = (d.Rows + 15) / 16, steps = d.Groups / 8;
        int K = layers > 1 && SpqrTcGroupSplits != 0 ? SpqrTcGroupSplits : SpqrTcSplits;
        if (K == 0)
        {
            // 8 splits (each ≥ 1 super-step): measured best on the H200 for 4096x4096, 11008x4096 and 4096x11008 against
            // 4 and 16 (bench/README.md, GPU sixth session)
            K = 1;
            while (K * 2 <= 8 && K * 2 <= steps) K *= 2;
            // Over lane-major codes (64-72 registers: two blocks of 12 warps fit a multiprocessor) a launch of at most two such
            // blocks per multiprocessor runs in one wave, and each warp's chain of dependent super-steps is what it waits on:
            // 12 splits shorten it by a third. Measured on the H200 (tenth session): 4096x4096 10.3 → 8.5 µs, 4096x11008
            // 20.4 → 15.8 (w4 alike); with more tiles (11008x4096, the grouped q/k/v and gate/up) 8 stays faster.
            if (lanes && steps >= 12 && (long)tiles * layers <= 2L * Math.Max(1, _acc.NumMultiprocessors)) K = 12;
            // Grouped launches (q/k/v: 768 tiles, gate/up: 1,376) at 4 splits: four-warp blocks, one tile each. Measured on
            // the H200 after the subnormal records (eleventh session), 7B-shaped decode 348.9 → 361.6 and 349.4 → 358.5
            // tokens/s in two commands (8 splits in the tenth: within 0-2%).
            else if (lanes && layers > 1 && steps >= 4) K = 4;
        }
        if (K is < 1 or > 16 or 3) throw new ArgumentException($"SpqrTcSplits must be 0 (by shape), 1, 2 or 4-16 (a block holds max(K, 4) warps), not {K}");
        int wpb = Math.Max(K, 4), tilesPerBlock = wpb / K;
        return (K, wpb, (tiles + tilesPerBlock - 1) / tilesPerBlock);
    }

    // lanes: the x̃ is for the lane-major kernel (its records' layout decides the slots' scaling, TcSplit)
    private static TcPrepareArgs PrepareArgs(SpqrDims d, int layers, InputRmsNorm norm, bool lanes)
        => new() { Cols = d.Cols, WBits = d.WBits, Layers = layers, Normed = norm.IsSet ? 1 : 0, Eps = norm.Eps, Layout = lanes ? d.LaneLayout : 0 };

    // One thread per column c of 16·G: x' = x[perm[c]] (0 past cols; with a.Normed, w[p]·(x[p]·r), r = 1/√(mean(x²) + eps)
    // from the whole row) into scratch[c]; per group (16 consecutive threads, shuffles) xsum and the scale 2^E putting
    // max |x'| in [2^14, 2^15); x̃ = x'·2^E·2^−p split into fp16 hi and lo parts, written to the lane slots of the file
    // header (p and the group scale as TcSplit gives them for the kernel's records, a.Layout).
    private static void SpqrPrepareTcKernel(ArrayView<float> x, ArrayView<int> perm, ArrayView<float> scratch, ArrayView<float> normW, TcPrepareArgs a)
    {
        int c = Grid.GlobalIndex.X;
        SpqrPrepareTcBody(PreparedInput(x, perm, normW, a, c, c < a.Cols), scratch, a.Cols, a.WBits, c, a.Layout);
    }

    // column c's x' (0 where !col); group-collective when a.Normed (every thread of the group calls it). The layer's
    // constants — perm[c] and the norm's weight at it — are requested before the wait (GridWait: with programmatic launch
    // they overlap the kernel before), x after it: its gather and the row's sum of squares in one round trip.
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static float PreparedInput(ArrayView<float> x, ArrayView<int> perm, ArrayView<float> normW, TcPrepareArgs a, int c, bool col)
    {
        int p = col ? perm[c] : 0;
        float g = col && a.Normed != 0 ? normW[p] : 0f;
        GridWait();
        float v = col ? x[p] : 0f;
        if (a.Normed == 0) return v;
        return g * (v * RmsScale(x, a.Cols, a.Eps));
    }

    // 1/√(mean(x²) + eps) over x[0..n) by the whole thread group, sixteen loads a thread in flight per round (n = 4096
    // and 256 threads: one), then eight; the same group size gives the same bits in every block and launch
    private static float RmsScale(ArrayView<float> x, int n, float eps)
    {
        int T = Group.DimX, i = Group.IdxX;
        float s0 = 0, s1 = 0;
        for (; i + 15 * T < n; i += 16 * T)
        {
            float a0 = x[i], a1 = x[i + T], a2 = x[i + 2 * T], a3 = x[i + 3 * T], a4 = x[i + 4 * T], a5 = x[i + 5 * T], a6 = x[i + 6 * T], a7 = x[i + 7 * T];
            float b0 = x[i + 8 * T], b1 = x[i + 9 * T], b2 = x[i + 10 * T], b3 = x[i + 11 * T], b4 = x[i + 12 * T], b5 = x[i + 13 * T], b6 = x[i + 14 * T], b7 = x[i + 15 * T];
            s0 += a0 * a0 + a1 * a1 + a2 * a2 + a3 * a3 + (b0 * b0 + b1 * b1 + b2 * b2 + b3 * b3);
            s1 += a4 * a4 + a5 * a5 + a6 * a6 + a7 * a7 + (b4 * b4 + b5 * b5 + b6 * b6 + b7 * b7);
        }
        for (; i + 7 * T < n; i += 8 * T)
        {
            float a0 = x[i], a1 = x[i + T], a2 = x[i + 2 * T], a3 = x[i + 3 * T], a4 = x[i + 4 * T], a5 = x[i + 5 * T], a6 = x[i + 6 * T], a7 = x[i + 7 * T];
            s0 += a0 * a0 + a1 * a1 + a2 * a2 + a3 * a3;
            s1 += a4 * a4 + a5 * a5 + a6 * a6 + a7 * a7;
        }
        for (; i < n; i += T) { float a = x[i]; s0 += a * a; }
        return 1f / MathF.Sqrt(BlockSum(s0 + s1) / n + eps);
    }

    // the same with x = silu(gate) ⊙ up (as SwiGluKernel computes it), gathered through the permutation
    private static void SpqrPrepareTcSwiGluKernel(ArrayView<float> gate, ArrayView<float> up, ArrayView<int> perm, ArrayView<float> scratch, int cols, int b, int layout)
    {
        int c = Grid.GlobalIndex.X;
        int p = c < cols ? perm[c] : 0; // the layer's own constant: requested before the wait (overlaps the kernel before)
        GridWait();
        float v = c < cols ? SiluTimes(gate[p], up[p]) : 0f;
        SpqrPrepareTcBody(v, scratch, cols, b, c, layout);
    }

    // thread c's column value v = x'[c] (0 past cols) into the scratch layout above; warp-collective (every lane calls it)
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void SpqrPrepareTcBody(float v, ArrayView<float> scratch, int cols, int b, int c, int layout)
    {
        int groups = (cols + 15) / 16 + 7 & ~7, padded = groups * 16;
        GroupMaxSum16(v, out float m, out float sum);
        if (c >= padded) return;
        scratch[c] = v;
        int g = c >> 4, k = c & 15;
        TcSplit(v, m, b, k, g & 7, layout, out ushort hi, out ushort lo, out float inv, out int half4);
        if (k == 0) { scratch[padded + 2 * g] = sum; scratch[padded + 2 * g + 1] = inv; }
        int S = g >> 3, j = g & 7, u = j & 3, i = j >> 2;
        var h16 = scratch.SubView(padded + 2 * groups).Cast<ushort>();
        int at = (((S * 2 + 0) * 4 + (k & 3)) * 4 + u) * 8 + i * 4 + half4;
        h16[at] = hi;
        h16[at + 128] = lo; // hl = 1: one (S·2 + hl) step further (64 uints)
    }

    // max |v| and Σ v over 16 consecutive threads (a group of columns); warp-collective: every lane of the warp calls it
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void GroupMaxSum16(float v, out float m, out float sum)
    {
        m = Math.Abs(v); sum = v;
        for (int o = 8; o > 0; o >>= 1)
        {
            m = Math.Max(m, Warp.ShuffleXor(m, o));
            sum += Warp.ShuffleXor(sum, o);
        }
    }

    // code k's x' = v of a group whose max |x'| is m, as the fp16 bits of hi = fp16(x̃) and lo = fp16(x̃ − hi), x̃ =
    // v·2^E·2^−p (E = 14 − ⌊log2 m⌋, kept where 2^±E are normal floats), the group's scale and the half's place in lane
    // (k mod 4)'s four-half fragment: register·2 + half, from lane t's pairs w3/w4 {t, t+4} {t+8, t+12}, w2 {t, t+8}
    // {t+4, t+12}. p: the power of two the kernel's A value of that code carries — over the format's codes and the
    // magic records 4 for the low code of a w3 pair, else 0, and the scale 2^−E; over the subnormal w3 records (layout 1,
    // GpuSpqrLayer.LaneMajor) 0 / 3 for registers a0 / a2 of an even group j, 6 / 0 of an odd one, and the scale
    // 2^(24−E) (the A values are c·2^(p−24))
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void TcSplit(float v, float m, int b, int k, int j, int layout, out ushort hi, out ushort lo, out float inv, out int half4)
    {
        int e = TcExponent(m);
        bool sub = layout != 0 && b == 3;
        inv = Interop.IntAsFloat((uint)(127 - e + (sub ? 24 : 0)) << 23);
        int q = k >> 2, reg = b == 2 ? q & 1 : q >> 1, half = b == 2 ? q >> 1 : q & 1;
        int p = sub ? (reg == 0 ? ((j & 1) == 0 ? 0 : 6) : ((j & 1) == 0 ? 3 : 0)) : b == 3 && half == 0 ? 4 : 0;
        float xs = v * Interop.IntAsFloat((uint)(127 + e - p) << 23);
        float h = H(xs);
        hi = F16Bits(h);
        lo = F16Bits(H(xs - h));
        half4 = reg * 2 + half;
    }

    // E = 14 − ⌊log2 m⌋ for a group whose max |x'| is m (0 for m = 0), clamped so that 2^±E stay normal floats
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static int TcExponent(float m) => m > 0 ? Math.Min(100, Math.Max(-100, 141 - (int)((Interop.FloatAsInt(m) >> 23) & 0xFF))) : 0;

    // the fp16 bits of a float that is an fp16 value (H's output): normal, subnormal or zero
    private static ushort F16Bits(float h)
    {
        uint bits = Interop.FloatAsInt(h), sign = (bits >> 16) & 0x8000u, a = bits & 0x7FFFFFFFu;
        if (a >= 0x38800000u) return (ushort)(sign | ((a - 0x38000000u) >> 13)); // rebias 127 → 15
        return (ushort)(sign | (uint)(Interop.IntAsFloat(a) * 16777216f));       // multiples of 2^−24
    }

    private static void SpqrMatVecTcLoads3Kernel(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<int> offsets,
                                                 ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<float> scratch, ArrayView<float> y, SpqrDims d, int K)
        => SpqrMatVecTcBody(codes, statCodes, planes, offsets, ocols, deltas, scratch, y, d, K, 3, true);
    private static void SpqrMatVecTcLoadsCodes3Kernel(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<int> offsets,
                                                      ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<float> scratch, ArrayView<float> y, SpqrDims d, int K)
        => SpqrMatVecTcBody(codes, statCodes, planes, offsets, ocols, deltas, scratch, y, d, K, 3, true, false);
    private static void SpqrMatVecTcLoadsBare3Kernel(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<int> offsets,
                                                     ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<float> scratch, ArrayView<float> y, SpqrDims d, int K)
        => SpqrMatVecTcBody(codes, statCodes, planes, offsets, ocols, deltas, scratch, y, d, K, 3, true, false, false);
    private static void SpqrMatVecTcLoadsPacked3Kernel(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<int> offsets,
                                                       ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<float> scratch, ArrayView<float> y, SpqrDims d, int K)
        => SpqrMatVecTcBody(codes, statCodes, planes, offsets, ocols, deltas, scratch, y, d, K, 3, true, true, true, 3);
    private static void SpqrMatVecTcLoadsPackedBare3Kernel(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<int> offsets,
                                                           ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<float> scratch, ArrayView<float> y, SpqrDims d, int K)
        => SpqrMatVecTcBody(codes, statCodes, planes, offsets, ocols, deltas, scratch, y, d, K, 3, true, true, false, 3);
    // the kernels over GpuSpqrLayer.LaneCodes (passed as codes)
    private static void SpqrMatVecTcLanes2Kernel(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<int> offsets,
                                                 ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<float> scratch, ArrayView<float> y, SpqrDims d, int K)
        => SpqrMatVecTcBody(codes, statCodes, planes, offsets, ocols, deltas, scratch, y, d, K, 2, false, true, true, GpuSpqrLayer.LaneWords(2), true);
    private static void SpqrMatVecTcLanes3Kernel(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<int> offsets,
                                                 ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<float> scratch, ArrayView<float> y, SpqrDims d, int K)
        => SpqrMatVecTcBody(codes, statCodes, planes, offsets, ocols, deltas, scratch, y, d, K, 3, false, true, true, GpuSpqrLayer.LaneWords(3), true, layout: 1);
    // the same with the outlier gathers after the second super-step's loads (SpqrTcLateGather; opt-in)
    private static void SpqrMatVecTcLanes3LateKernel(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<int> offsets,
                                                     ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<float> scratch, ArrayView<float> y, SpqrDims d, int K)
        => SpqrMatVecTcBody(codes, statCodes, planes, offsets, ocols, deltas, scratch, y, d, K, 3, false, true, true, GpuSpqrLayer.LaneWords(3), true, layout: 1, late: true);
    // the same building its own x̃ from x (SpqrTcFold: statCodes is the layer's FoldIndex, scratch is x itself)
    private static void SpqrMatVecTcLanes3FoldKernel(ArrayView<byte> codes, ArrayView<byte> foldIndex, ArrayView<float> planes, ArrayView<int> offsets,
                                                     ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<float> x, ArrayView<float> y, SpqrDims d, int K)
        => SpqrMatVecTcBody(codes, foldIndex, planes, offsets, ocols, deltas, x, y, d, K, 3, false, true, true, GpuSpqrLayer.LaneWords(3), true, layout: 1, fold: true);
    // over the eighth session's w3 records (GpuSpqrLayer magicW3Records; benchmarks)
    private static void SpqrMatVecTcLanesMagic3Kernel(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<int> offsets,
                                                      ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<float> scratch, ArrayView<float> y, SpqrDims d, int K)
        => SpqrMatVecTcBody(codes, statCodes, planes, offsets, ocols, deltas, scratch, y, d, K, 3, false, true, true, GpuSpqrLayer.LaneWords(3), true);
    private static void SpqrMatVecTcLanes4Kernel(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<int> offsets,
                                                 ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<float> scratch, ArrayView<float> y, SpqrDims d, int K)
        => SpqrMatVecTcBody(codes, statCodes, planes, offsets, ocols, deltas, scratch, y, d, K, 4, false, true, true, GpuSpqrLayer.LaneWords(4), true);
    private static void SpqrMatVecTc2Kernel(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<int> offsets,
                                            ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<float> scratch, ArrayView<float> y, SpqrDims d, int K)
        => SpqrMatVecTcBody(codes, statCodes, planes, offsets, ocols, deltas, scratch, y, d, K, 2, false);
    private static void SpqrMatVecTc3Kernel(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<int> offsets,
                                            ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<float> scratch, ArrayView<float> y, SpqrDims d, int K)
        => SpqrMatVecTcBody(codes, statCodes, planes, offsets, ocols, deltas, scratch, y, d, K, 3, false);
    private static void SpqrMatVecTc4Kernel(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<int> offsets,
                                            ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<float> scratch, ArrayView<float> y, SpqrDims d, int K)
        => SpqrMatVecTcBody(codes, statCodes, planes, offsets, ocols, deltas, scratch, y, d, K, 4, false);

    /// <summary>Everything one lane reads for one super-step, as loaded (all requested before any is used: one memory
    /// round trip per super-step): both rows' code words, the lane's x̃ fragments, and for its groups g0 = 8s + t and g0 + 4
    /// the planes, (xsum, 2^−E) and both rows' stat bytes.</summary>
    internal struct TcLoads
    {
        public U16 A, C;
        public U4 X;
        public F4 P0, P1;
        public F2 G0, G1;
        public int Fa0, Fa0b, Fb0, Fb0b, Fa1, Fa1b, Fb1, Fb1b;
    }

    /// <summary>A lane's loop-invariant indices (int: every layer here is &lt; 2 GB) into the 16-byte, 8-byte and byte
    /// views, advanced per super-step s by constant strides.</summary>
    internal struct TcBase
    {
        public int CodeA, CodeC, X, Plane, GStat, StatA0, StatC0, StatA1, StatC1, Shift0, Shift1, Packed;
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static TcLoads TcLoad(ArrayView<U4> c4, ArrayView<U4> x4, ArrayView<F4> p4, ArrayView<F2> g2, ArrayView<byte> statCodes, in TcBase q, int s, int b, int F, bool stats,
                                  ArrayView<ulong> c8 = default, int packed = 0, bool activations = true)
    {
        var l = new TcLoads();
        if (packed > 0)
        {
            // the lane-major layout (GpuSpqrLayer.LaneMajor, packed = LaneWords(b)): the lane's record of the super-step as
            // 3-5 8-byte words, word-major across the warp (every load instruction one contiguous 256 bytes; statistics
            // inside), words 0-3 into A, word 4 (w4's fields) into C; packed = 3 with loadsOnly: SpqrTcLoadsOnly 4-5's
            // diagnostic, three words read from the format's codes
            // one 64-bit address for the record, its words at constant offsets from it (indexing c8 per word costs an index
            // and an address computation each)
            var rec = c8.SubView(q.Packed + 32 * packed * s);
            ulong w0 = rec[0], w1 = rec[32], w2 = rec[64], w3 = packed > 3 ? rec[96] : 0ul, w4 = packed > 4 ? rec[128] : 0ul;
            l.A.A0 = (uint)w0; l.A.A1 = (uint)(w0 >> 32); l.A.A2 = (uint)w1; l.A.A3 = (uint)(w1 >> 32); l.A.A4 = (uint)w2; l.A.A5 = (uint)(w2 >> 32);
            l.A.A6 = (uint)w3; l.A.A7 = (uint)(w3 >> 32); l.C.A0 = (uint)w4; l.C.A1 = (uint)(w4 >> 32);
            l.P0 = p4[q.Plane + 8 * s]; l.P1 = p4[q.Plane + 8 * s + 4];
            if (activations) TcLoadX(ref l, x4, g2, q, s, true);
            return l;
        }
        TcCodeWords(c4, q.CodeA + s * b, q.CodeC + s * b, b, ref l.A, ref l.C);
        if (activations) TcLoadX(ref l, x4, g2, q, s, stats);
        if (!stats) return l; // SpqrTcLoadsOnly == 2
        l.P0 = p4[q.Plane + 8 * s]; l.P1 = p4[q.Plane + 8 * s + 4];
        int sf = s * F;
        l.Fa0 = statCodes[q.StatA0 + sf]; l.Fa0b = statCodes[q.StatA0 + sf + 1]; l.Fb0 = statCodes[q.StatC0 + sf]; l.Fb0b = statCodes[q.StatC0 + sf + 1];
        l.Fa1 = statCodes[q.StatA1 + sf]; l.Fa1b = statCodes[q.StatA1 + sf + 1]; l.Fb1 = statCodes[q.StatC1 + sf]; l.Fb1b = statCodes[q.StatC1 + sf + 1];
        return l;
    }

    // CSR entries per lane prefetched for a split's first two outlier rows (up to 128 a row: rows of 1% outliers hold ~41
    // over 4096 columns, ~110 over 11008): 4 measured 5-7% faster than 1 on the H200 (126 against 97 registers; GPU,
    // seventh session); the same prefetch in the float32 wide kernel went to 216 registers and lost 30-60%
    private const int OutlierLanes = 4;

    /// <summary>Up to four CSR entries of one row for one lane (lane, lane + W, lane + 2W, lane + 3W of the row's range;
    /// column −1 past its end).</summary>
    internal struct OutlierEntries { public int C0, C1, C2, C3; public float D0, D1, D2, D3; }

    // the first n (1-4, a constant) entries per lane of a row's CSR range
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static OutlierEntries OutlierPrefetch(ArrayView<ushort> ocols, ArrayView<float> deltas, int from, int to, int lane, int W, int n)
    {
        var e = new OutlierEntries { C0 = -1, C1 = -1, C2 = -1, C3 = -1 };
        int j = from + lane;
        if (j < to) { e.C0 = ocols[j]; e.D0 = deltas[j]; }
        if (n > 1 && j + W < to) { e.C1 = ocols[j + W]; e.D1 = deltas[j + W]; }
        if (n > 2 && j + 2 * W < to) { e.C2 = ocols[j + 2 * W]; e.D2 = deltas[j + 2 * W]; }
        if (n > 3 && j + 3 * W < to) { e.C3 = ocols[j + 3 * W]; e.D3 = deltas[j + 3 * W]; }
        return e;
    }

    // this lane's share of Σ delta·x' over its prefetched entries (all four gathers issued before any is used)
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static float OutlierGather(in OutlierEntries e, ArrayView<float> xp)
    {
        float x0 = e.C0 >= 0 ? xp[e.C0] : 0f, x1 = e.C1 >= 0 ? xp[e.C1] : 0f, x2 = e.C2 >= 0 ? xp[e.C2] : 0f, x3 = e.C3 >= 0 ? xp[e.C3] : 0f;
        return e.D0 * x0 + (e.D1 * x1 + e.D2 * x2 + e.D3 * x3);
    }

    // both rows' code words of one super-step: b 16-byte loads each, from 16-byte indices ca and cc
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void TcCodeWords(ArrayView<U4> c4, int ca, int cc, int b, ref U16 A, ref U16 C)
    {
        var a0 = c4[ca]; var a1 = c4[ca + 1];
        var e0 = c4[cc]; var e1 = c4[cc + 1];
        A.A0 = a0.X; A.A1 = a0.Y; A.A2 = a0.Z; A.A3 = a0.W; A.A4 = a1.X; A.A5 = a1.Y; A.A6 = a1.Z; A.A7 = a1.W;
        C.A0 = e0.X; C.A1 = e0.Y; C.A2 = e0.Z; C.A3 = e0.W; C.A4 = e1.X; C.A5 = e1.Y; C.A6 = e1.Z; C.A7 = e1.W;
        if (b > 2)
        {
            var a2 = c4[ca + 2]; var e2 = c4[cc + 2];
            A.A8 = a2.X; A.A9 = a2.Y; A.A10 = a2.Z; A.A11 = a2.W; C.A8 = e2.X; C.A9 = e2.Y; C.A10 = e2.Z; C.A11 = e2.W;
        }
        if (b > 3)
        {
            var a3 = c4[ca + 3]; var e3 = c4[cc + 3];
            A.A12 = a3.X; A.A13 = a3.Y; A.A14 = a3.Z; A.A15 = a3.W; C.A12 = e3.X; C.A13 = e3.Y; C.A14 = e3.Z; C.A15 = e3.W;
        }
    }

    // the activation part of a super-step's loads (x̃, and with stats (xsum, 2^−E)): what the prepare launch writes
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void TcLoadX(ref TcLoads l, ArrayView<U4> x4, ArrayView<F2> g2, in TcBase q, int s, bool stats)
    {
        l.X = x4[q.X + 32 * s];
        if (!stats) return;
        l.G0 = g2[q.GStat + 8 * s]; l.G1 = g2[q.GStat + 8 * s + 4];
    }

    // SpqrTcLoadsOnly: every loaded word folded into the sum (so the loads stay), no decode
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void TcTouch(in TcLoads l, ref float acc)
    {
        uint v = l.A.A0 ^ l.A.A1 ^ l.A.A2 ^ l.A.A3 ^ l.A.A4 ^ l.A.A5 ^ l.A.A6 ^ l.A.A7 ^ l.A.A8 ^ l.A.A9 ^ l.A.A10 ^ l.A.A11
               ^ l.C.A0 ^ l.C.A1 ^ l.C.A2 ^ l.C.A3 ^ l.C.A4 ^ l.C.A5 ^ l.C.A6 ^ l.C.A7 ^ l.C.A8 ^ l.C.A9 ^ l.C.A10 ^ l.C.A11
               ^ l.X.X ^ l.X.Y ^ l.X.Z ^ l.X.W ^ (uint)(l.Fa0 ^ l.Fa0b ^ l.Fb0 ^ l.Fb0b ^ l.Fa1 ^ l.Fa1b ^ l.Fb1 ^ l.Fb1b);
        acc += Small(v & 0xFFFF) + l.P0.X + l.P0.Y + l.P0.Z + l.P0.W + l.P1.X + l.P1.Y + l.P1.Z + l.P1.W + l.G0.X + l.G0.Y + l.G1.X + l.G1.Y;
    }

    // one super-step from its loads, as the kernel was compiled: the loads-only diagnostic, a lane-major record, or the
    // format's codes
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void TcStep(in TcLoads l, in TcBase q, SpqrDims d, int b, int layout, int gid, int t, bool loadsOnly, bool lanes, ref float acc0, ref float acc1)
    {
        if (loadsOnly) TcTouch(l, ref acc0);
        else if (lanes) TcComputeLanes(l, d, b, layout, gid, t, ref acc0, ref acc1);
        else TcCompute(l, q, d, b, gid, t, ref acc0, ref acc1);
    }

    // one super-step from its loads: 8 mma (two chains of four), then the statistics of the lane's two groups for both rows
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void TcCompute(in TcLoads l, in TcBase q, SpqrDims d, int b, int gid, int t, ref float acc0, ref float acc1)
    {
        int sh = b * t, mine = gid >> 1, F = d.StatBits, qs = d.ScaleBits;
        uint mask = TcMask(b), magic = d.F16Magic;
        var sa = TcShift(l.A, b, sh);
        var sc = TcShift(l.C, b, sh);
        uint x0 = l.X.X, x1 = l.X.Y, x2 = l.X.Z, x3 = l.X.W;
        float c0 = 0, c1 = 0, c2 = 0, c3 = 0, e0 = 0, e1 = 0, e2 = 0, e3 = 0;
        TcGroup(sa, sc, b, 0, mask, magic, mine == 0 ? x0 : 0u, mine == 0 ? x1 : 0u, ref c0, ref c1, ref c2, ref c3);
        TcGroup(sa, sc, b, 4, mask, magic, mine == 0 ? x2 : 0u, mine == 0 ? x3 : 0u, ref e0, ref e1, ref e2, ref e3);
        TcGroup(sa, sc, b, 1, mask, magic, mine == 1 ? x0 : 0u, mine == 1 ? x1 : 0u, ref c0, ref c1, ref c2, ref c3);
        TcGroup(sa, sc, b, 5, mask, magic, mine == 1 ? x2 : 0u, mine == 1 ? x3 : 0u, ref e0, ref e1, ref e2, ref e3);
        TcGroup(sa, sc, b, 2, mask, magic, mine == 2 ? x0 : 0u, mine == 2 ? x1 : 0u, ref c0, ref c1, ref c2, ref c3);
        TcGroup(sa, sc, b, 6, mask, magic, mine == 2 ? x2 : 0u, mine == 2 ? x3 : 0u, ref e0, ref e1, ref e2, ref e3);
        TcGroup(sa, sc, b, 3, mask, magic, mine == 3 ? x0 : 0u, mine == 3 ? x1 : 0u, ref c0, ref c1, ref c2, ref c3);
        TcGroup(sa, sc, b, 7, mask, magic, mine == 3 ? x2 : 0u, mine == 3 ? x3 : 0u, ref e0, ref e1, ref e2, ref e3);
        int fm = (1 << F) - 1;
        int fa0 = ((l.Fa0 | (l.Fa0b << 8)) >> q.Shift0) & fm, fb0 = ((l.Fb0 | (l.Fb0b << 8)) >> q.Shift0) & fm;
        int fa1 = ((l.Fa1 | (l.Fa1b << 8)) >> q.Shift1) & fm, fb1 = ((l.Fb1 | (l.Fb1b << 8)) >> q.Shift1) & fm;
        TcApply(l.P0, l.G0, fa0, fb0, qs, c0 + c1, c2 + c3, ref acc0, ref acc1);
        TcApply(l.P1, l.G1, fa1, fb1, qs, e0 + e1, e2 + e3, ref acc0, ref acc1);
    }

    // one super-step from a lane-major record (GpuSpqrLayer.LaneMajor has the layout): the groups' pairs by one shift and
    // mask each, the statistics fields from their bits; the mma order and x̃ selection of TcCompute
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void TcComputeLanes(in TcLoads l, SpqrDims d, int b, int layout, int gid, int t, ref float acc0, ref float acc1)
    {
        int mine = gid >> 1, qs = d.ScaleBits;
        uint mask = TcMask(b), magic = d.F16Magic;
        ulong w0 = l.A.A0 | (ulong)l.A.A1 << 32, w1 = l.A.A2 | (ulong)l.A.A3 << 32, w2 = l.A.A4 | (ulong)l.A.A5 << 32, w3 = l.A.A6 | (ulong)l.A.A7 << 32;
        ulong w4 = l.C.A0 | (ulong)l.C.A1 << 32;
        uint x0 = l.X.X, x1 = l.X.Y, x2 = l.X.Z, x3 = l.X.W;
        float c0 = 0, c1 = 0, c2 = 0, c3 = 0, e0 = 0, e1 = 0, e2 = 0, e3 = 0;
        TcLaneGroup(w0, w1, w2, w3, b, layout, 0, mask, magic, mine == 0 ? x0 : 0u, mine == 0 ? x1 : 0u, ref c0, ref c1, ref c2, ref c3);
        TcLaneGroup(w0, w1, w2, w3, b, layout, 4, mask, magic, mine == 0 ? x2 : 0u, mine == 0 ? x3 : 0u, ref e0, ref e1, ref e2, ref e3);
        TcLaneGroup(w0, w1, w2, w3, b, layout, 1, mask, magic, mine == 1 ? x0 : 0u, mine == 1 ? x1 : 0u, ref c0, ref c1, ref c2, ref c3);
        TcLaneGroup(w0, w1, w2, w3, b, layout, 5, mask, magic, mine == 1 ? x2 : 0u, mine == 1 ? x3 : 0u, ref e0, ref e1, ref e2, ref e3);
        TcLaneGroup(w0, w1, w2, w3, b, layout, 2, mask, magic, mine == 2 ? x0 : 0u, mine == 2 ? x1 : 0u, ref c0, ref c1, ref c2, ref c3);
        TcLaneGroup(w0, w1, w2, w3, b, layout, 6, mask, magic, mine == 2 ? x2 : 0u, mine == 2 ? x3 : 0u, ref e0, ref e1, ref e2, ref e3);
        TcLaneGroup(w0, w1, w2, w3, b, layout, 3, mask, magic, mine == 3 ? x0 : 0u, mine == 3 ? x1 : 0u, ref c0, ref c1, ref c2, ref c3);
        TcLaneGroup(w0, w1, w2, w3, b, layout, 7, mask, magic, mine == 3 ? x2 : 0u, mine == 3 ? x3 : 0u, ref e0, ref e1, ref e2, ref e3);
        if (b == 3 && layout != 0)
        {
            // subnormal records: unit f's scale code at bits 12-15, zero code at 28-31 (GpuSpqrLayer.LaneMajor)
            uint u0 = (uint)w0, u1 = (uint)(w0 >> 32), u2 = (uint)w1, u3 = (uint)(w1 >> 32);
            TcApplyCodes(l.P0, l.G0, (u0 >> 12) & 0xFu, u0 >> 28, (u1 >> 12) & 0xFu, u1 >> 28, c0 + c1, c2 + c3, ref acc0, ref acc1);
            TcApplyCodes(l.P1, l.G1, (u2 >> 12) & 0xFu, u2 >> 28, (u3 >> 12) & 0xFu, u3 >> 28, e0 + e1, e2 + e3, ref acc0, ref acc1);
            return;
        }
        TcLaneFields(w0, w1, w2, w3, w4, b, layout, d.StatBits, d.ScaleBits, out int fa0, out int fb0, out int fa1, out int fb1);
        TcApply(l.P0, l.G0, fa0, fb0, qs, c0 + c1, c2 + c3, ref acc0, ref acc1);
        TcApply(l.P1, l.G1, fa1, fb1, qs, e0 + e1, e2 + e3, ref acc0, ref acc1);
    }

    // a record's statistics fields: (group t, row gid), (t, gid + 8), (t + 4, gid), (t + 4, gid + 8) — w3: field i in bits
    // 48-55 of word i (subnormal records, layout 1: scale code at bits 12-15, zero code at 28-31 of unit i); w2 / w4: field i in bits
    // 8i of the last word
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void TcLaneFields(ulong w0, ulong w1, ulong w2, ulong w3, ulong w4, int b, int layout, int F, int qs, out int fa0, out int fb0, out int fa1, out int fb1)
    {
        int fm = (1 << F) - 1;
        if (b == 3 && layout != 0)
        {
            fa0 = Field((uint)w0, qs); fb0 = Field((uint)(w0 >> 32), qs);
            fa1 = Field((uint)w1, qs); fb1 = Field((uint)(w1 >> 32), qs);
            return;
        }
        ulong sw = b == 2 ? w2 : w4;
        fa0 = (int)(b == 3 ? w0 >> 48 : sw) & fm; fb0 = (int)(b == 3 ? w1 >> 48 : sw >> 8) & fm;
        fa1 = (int)(b == 3 ? w2 >> 48 : sw >> 16) & fm; fb1 = (int)(b == 3 ? w3 >> 48 : sw >> 24) & fm;
    }

    // a subnormal record unit's field (scale code | zero code « qs) from its bits 12-15 and 28-31
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static int Field(uint u, int qs) => (int)(((u >> 12) & 0xFu) | ((u >> 28) << qs));

    // the mask selecting a pair of codes in place (w3: bits 4 and 16, the low code pre-shifted by x̃'s 2^−4; else 0 and 16)
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static uint TcMask(int b) => b == 3 ? 0x00070070u : b == 4 ? 0x000F000Fu : 0x00030003u;

    // group j (a constant) of a record: its word and first bit (w3: blocks of 24 bits at 0 and 24 of word j/2; w4: 32-bit
    // blocks at 0 and 32 of word j/2; w2: word j/4, 32-bit units at 0 and 32 holding two groups at +0 and +8), then pair k
    // (a0, a1, a2, a3) at first bit + k·(3, 4, 2), its second code 12 (w3) or 16 bits above; one shift brings the pair to
    // the mask (w3: bits 4 and 16 — x̃ carries 2^−4 for the first — else bits 0 and 16)
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void TcLaneGroup(ulong w0, ulong w1, ulong w2, ulong w3, int b, int layout, int j, uint mask, uint magic, uint b0, uint b1, ref float c0, ref float c1, ref float c2, ref float c3)
    {
        TcLanePairs(w0, w1, w2, w3, b, layout, j, mask, magic, out uint a0, out uint a1, out uint a2, out uint a3);
        Mma16816(a0, a1, a2, a3, b0, b1, ref c0, ref c1, ref c2, ref c3);
    }

    // group j's A fragment (the lane's four fp16 pairs) from its record words; subnormal w3 records (layout 1): one AND a
    // pair (the pair at bits 9 and 25 shifted down first), values c·2^(p−24) (GpuSpqrLayer.LaneMajor)
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void TcLanePairs(ulong w0, ulong w1, ulong w2, ulong w3, int b, int layout, int j, uint mask, uint magic, out uint a0, out uint a1, out uint a2, out uint a3)
    {
        if (b == 3 && layout != 0)
        {
            int u = j >> 1;
            uint ua = (uint)((u < 2 ? w0 : w1) >> (32 * (u & 1))), uc = (uint)((u < 2 ? w2 : w3) >> (32 * (u & 1)));
            if ((j & 1) == 0) { a0 = ua & 0x00070007u; a1 = uc & 0x00070007u; a2 = ua & 0x00380038u; a3 = uc & 0x00380038u; }
            else { a0 = ua & 0x01C001C0u; a1 = uc & 0x01C001C0u; a2 = (ua >> 9) & 0x00070007u; a3 = (uc >> 9) & 0x00070007u; }
            return;
        }
        int wi = b == 2 ? j >> 2 : j >> 1;
        ulong w = wi == 0 ? w0 : wi == 1 ? w1 : wi == 2 ? w2 : w3;
        int o = b == 3 ? 24 * (j & 1) : b == 4 ? 32 * (j & 1) : 32 * ((j >> 1) & 1) + 8 * (j & 1);
        int step = b == 3 ? 3 : b == 4 ? 4 : 2, low = b == 3 ? 4 : 0;
        a0 = Hsub1024((LaneBits(w, o - low) & mask) | magic);
        a1 = Hsub1024((LaneBits(w, o + step - low) & mask) | magic);
        a2 = Hsub1024((LaneBits(w, o + 2 * step - low) & mask) | magic);
        a3 = Hsub1024((LaneBits(w, o + 3 * step - low) & mask) | magic);
    }

    // bits [at, at + 32) of w (zeros below bit 0), at a constant
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static uint LaneBits(ulong w, int at) => at >= 0 ? (uint)(w >> at) : (uint)(w << -at);

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void SpqrMatVecTcBody(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<int> offsets,
                                         ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<float> scratch, ArrayView<float> y, SpqrDims d, int K, int b, bool loadsOnly, bool stats = true, bool outliers = true, int packed = 0, bool lanes = false,
                                         int blockBase = 0, int layout = 0, bool late = false, bool fold = false)
    {
        var red = SharedMemory.Allocate<float>(16 * 16); // [warp of the block][row of its tile]
        int lane = Warp.LaneIdx, gid = lane >> 2, t = lane & 3, wpb = Group.DimX / 32, wi = Warp.WarpIdx;
        int r0 = TcWarpTile(d, K, blockBase, wpb, wi, out int split, out int first), last = d.Rows - 1;
        bool live = r0 < d.Rows;
        int ra = Math.Min(r0 + gid, last), rb = Math.Min(r0 + gid + 8, last);
        if (!live) { ra = 0; rb = 0; }
        int groups = d.Groups, padded = groups * 16, steps = groups / 8, F = d.StatBits;
        var c4 = codes.Cast<U4>().AsAligned(16);
        var c8 = codes.Cast<ulong>().AsAligned(8);
        // (fold: scratch is x, and these are not read)
        var x4 = fold ? default : scratch.SubView(padded + 2 * groups).Cast<U4>().AsAligned(16);
        var p4 = planes.Cast<F4>().AsAligned(16);
        var g2 = fold ? default : scratch.SubView(padded).Cast<F2>().AsAligned(8);
        int pg = live ? r0 / d.QqGroupSize * groups : 0;
        var q = new TcBase
        {
            CodeA = ra * (d.RowBytes >> 4), CodeC = rb * (d.RowBytes >> 4),
            X = ((gid & 1) * 4 + t) * 4 + (gid >> 1),
            Plane = pg + t, GStat = t,
            StatA0 = ra * d.StatRowBytes + ((t * F) >> 3), StatC0 = rb * d.StatRowBytes + ((t * F) >> 3),
            StatA1 = ra * d.StatRowBytes + (((t + 4) * F) >> 3), StatC1 = rb * d.StatRowBytes + (((t + 4) * F) >> 3),
            Shift0 = (t * F) & 7, Shift1 = ((t + 4) * F) & 7,
            Packed = LaneRecord(r0, steps, packed, lane),
        };
        // the split's first two outlier rows (r0 + split, r0 + split + K; all of them for K ≥ 8): their CSR ranges and first
        // 32·OutlierLanes (column, delta) pairs are requested while the first super-step's codes are in flight, their x'
        // once it has computed; the walk after the loop (three dependent round trips: offsets, columns, x') is left for
        // rows past that and further rows
        int orow = Math.Min(r0 + split, last), prow = Math.Min(r0 + split + K, last);
        float acc0 = 0, acc1 = 0, oSum = 0, pSum = 0;
        bool oFirst = live && outliers && split < 16, pSecond = live && outliers && split + K < 16;
        int o0 = 0, o1 = 0, p0 = 0, p1 = 0;
        // fold: statCodes holds the permutation in lane order (GpuSpqrLayer.FoldIndex), scratch is x; lane (u, t) of step S
        // reads its 8 indices as one 16-byte word, an outlier's column c its entry at FoldSlot(c)
        var fperm = fold ? statCodes.Cast<ushort>() : default;
        var flanes = fold ? statCodes.Cast<U4>() : default;
        int fl = (gid >> 1) * 4 + t;
        // the first super-step is peeled: its loads, then the outlier loads (which wait for the CSR offsets while the
        // codes are in flight), its compute, then the x' gathers of the outliers
        // Before GridWait (programmatic dependent launch, GpuKernels.Pdl.cs: this part may overlap the prepare launch) only
        // weights are read — the first super-step's codes, statistics and planes, the CSR offsets and entries — and
        // nothing is stored; after it, x̃ and (xsum, 2^−E), which the prepare launch writes.
        TcLoads l0 = default;
        if (live && first < steps) l0 = TcLoad(c4, x4, p4, g2, statCodes, q, first, b, F, stats, c8, packed, activations: false);
        if (oFirst) { o0 = offsets[orow]; o1 = offsets[orow + 1]; }
        if (pSecond) { p0 = offsets[prow]; p1 = offsets[prow + 1]; }
        var oPre = oFirst ? OutlierPrefetch(ocols, deltas, o0, o1, lane, 32, OutlierLanes) : default;
        var pPre = pSecond ? OutlierPrefetch(ocols, deltas, p0, p1, lane, 32, OutlierLanes) : default;
        U4 pl0 = default;
        if (fold)
        {
            // the input columns of the prefetched outliers and the first step's x indices: layer constants, before the wait
            if (oFirst) OutlierInputColumns(ref oPre, fperm);
            if (pSecond) OutlierInputColumns(ref pPre, fperm);
            if (live && first < steps) pl0 = flanes[first * 16 + fl];
        }
        GridWait();
        // the row's y before this product, for y += Ŵ·x (d.Accumulate): its one writer requests it now, with x̃
        bool writer = TcTileWriter(d, r0, split, lane);
        float y0 = d.Accumulate != 0 && writer ? y[r0 + lane] : 0f;
        if (live && first < steps)
        {
            if (fold) FoldX(ref l0, scratch, pl0, gid, t);
            else TcLoadX(ref l0, x4, g2, q, first, stats);
            TcStep(l0, q, d, b, layout, gid, t, loadsOnly, lanes, ref acc0, ref acc1);
        }
        // the x' gathers of the prefetched outliers wait for their CSR columns (a round trip after the offsets'): by default
        // issued here, before the next super-step's loads; late (a constant of the kernel) after those loads, the second
        // super-step peeled, so that step's own round trip hides the columns' (SpqrTcLateGather)
        int next = first + K;
        if (late && live && next < steps)
        {
            var l = TcLoad(c4, x4, p4, g2, statCodes, q, next, b, F, stats, c8, packed);
            if (oFirst) oSum = OutlierGather(oPre, scratch);
            if (pSecond) pSum = OutlierGather(pPre, scratch);
            TcStep(l, q, d, b, layout, gid, t, loadsOnly, lanes, ref acc0, ref acc1);
            next += K;
        }
        else
        {
            if (oFirst) oSum = OutlierGather(oPre, scratch);
            if (pSecond) pSum = OutlierGather(pPre, scratch);
        }
        for (int s = next; live && s < steps; s += K)
        {
            var l = TcLoad(c4, x4, p4, g2, statCodes, q, s, b, F, stats, c8, packed, activations: !fold);
            if (fold) FoldX(ref l, scratch, flanes[s * 16 + fl], gid, t);
            TcStep(l, q, d, b, layout, gid, t, loadsOnly, lanes, ref acc0, ref acc1);
        }
        // the four lanes of a quad hold parts of the same two rows
        acc0 += Warp.ShuffleXor(acc0, 1); acc0 += Warp.ShuffleXor(acc0, 2);
        acc1 += Warp.ShuffleXor(acc1, 1); acc1 += Warp.ShuffleXor(acc1, 2);
        // the tile's outliers: row r0 + i by the split i % K (the first two from the sums above; past the prefetched
        // entries, and the other rows, by a warp-strided CSR walk)
        for (int i = split; live && outliers && i < 16; i += K)
        {
            int r = Math.Min(r0 + i, last);
            bool pre = i == split || i == split + K;
            int skip = pre ? OutlierLanes * Warp.WarpSize : 0;
            float o = (i == split ? oSum : i == split + K ? pSum : 0f)
                    + (fold ? OutlierPartInput(offsets, ocols, deltas, fperm, scratch, r, skip) : OutlierPart(offsets, ocols, deltas, scratch, r, skip));
            o = WarpSum(o);
            o = Warp.Shuffle(o, 0);
            if (t == 0 && gid == (i & 7)) { if (i < 8) acc0 += o; else acc1 += o; }
        }
        TcTileStore(red, y, acc0, acc1, r0, K, writer, y0, d.Accumulate != 0, lane, gid, t, wi);
    }

    // warp wi's tile (its first row, returned: blocks from blockBase on hold wpb / K tiles each) and split; the
    // split's super-steps are first, first + K, ... with (d.StepOrder) first = K − 1 − split, so that where steps % K ≠ 0
    // the extra steps fall on the last splits, while the first splits take a second outlier row (16 % K of them) and
    // split 0 the reduction (measured: bench/README.md, GPU eleventh session)
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static int TcWarpTile(SpqrDims d, int K, int blockBase, int wpb, int wi, out int split, out int first)
    {
        split = wi % K;
        first = d.StepOrder != 0 ? K - 1 - split : split;
        return 16 * ((Grid.IdxX - blockBase) * (wpb / K) + wi / K);
    }

    // a lane's record of super-step 0 in a layer's lane-major codes (8-byte words; super-step s adds 32·words·s): tiles
    // of `steps` super-steps, each step `words` words word-major across the warp (GpuSpqrLayer.LaneMajor)
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static int LaneRecord(int r0, int steps, int words, int lane) => (r0 >> 4) * steps * 32 * words + lane;

    // whether lane `lane` of a split's warp writes row r0 + lane of its tile: split 0's first 16 lanes, rows in the layer
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static bool TcTileWriter(SpqrDims d, int r0, int split, int lane) => split == 0 && lane < 16 && r0 + lane < d.Rows;

    // the tile's K warps meet in shared memory red [warp of the block][row of its tile]: lane t = 0 of each quad puts its
    // two rows' sums, then the writer lanes (split 0, one a row) add the K partials in order (deterministic) and store y
    // (y0 + sum with accumulate)
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void TcTileStore(ArrayView<float> red, ArrayView<float> y, float acc0, float acc1, int r0, int K, bool writer, float y0, bool accumulate, int lane, int gid, int t, int wi)
    {
        if (t == 0) { red[16 * wi + gid] = acc0; red[16 * wi + gid + 8] = acc1; }
        Group.Barrier();
        if (writer)
        {
            float sum = red[16 * wi + lane];
            for (int j = 1; j < K; j++) sum += red[16 * (wi + j) + lane];
            y[r0 + lane] = accumulate ? y0 + sum : sum;
        }
    }

    // the prefetched entries' columns as input columns (perm[c]: x' = x[perm[c]]), for the kernel that reads x itself
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void OutlierInputColumns(ref OutlierEntries e, ArrayView<ushort> lanePerm)
    {
        int a = e.C0 >= 0 ? (int)lanePerm[GpuSpqrLayer.FoldSlot(e.C0)] : -1, b = e.C1 >= 0 ? (int)lanePerm[GpuSpqrLayer.FoldSlot(e.C1)] : -1;
        int c = e.C2 >= 0 ? (int)lanePerm[GpuSpqrLayer.FoldSlot(e.C2)] : -1, f = e.C3 >= 0 ? (int)lanePerm[GpuSpqrLayer.FoldSlot(e.C3)] : -1;
        e.C0 = a; e.C1 = b; e.C2 = c; e.C3 = f;
    }

    // OutlierPart over x itself: Σ delta·x[perm[col]] over the row's entries past skip (perm in lane order: FoldIndex)
    private static float OutlierPartInput(ArrayView<int> offsets, ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<ushort> lanePerm, ArrayView<float> x, int r, int skip)
    {
        float acc = 0;
        for (int i = offsets[r] + skip + Warp.LaneIdx; i < offsets[r + 1]; i += Warp.WarpSize) acc += deltas[i] * x[(int)lanePerm[GpuSpqrLayer.FoldSlot(ocols[i])]];
        return acc;
    }

    // The w3 (subnormal records) kernel's x̃ fragments and statistics inputs built from x itself instead of loaded from the
    // prepare launch's scratch, with the prepare's arithmetic (SpqrPrepareTcBody, TcSplit), so the same bits. Lane (gid, t),
    // u = gid >> 1: its 8 x' are x[pl's indices] — columns t + 4q (q = 0..3) of groups g_i = 8S + u + 4i; the four lanes of
    // its quad hold all 16 columns of both groups, so a group's max |x'| and Σ x' are two in-lane steps and two xor-shuffles
    // (GroupMaxSum16's butterfly: xor 8 and 4 are q ^ 2 and q ^ 1, xor 2 and 1 are t ^ 2 and t ^ 1); half q of register i
    // of its x̃ word is column t + 4q (TcSplit's half4 = q for w3), hi for even gid, lo for odd; (xsum, 2^−E) of groups
    // 8S + t and 8S + t + 4, which lane t's statistics need, come from lane 8t (u = t).
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void FoldX(ref TcLoads l, ArrayView<float> x, U4 pl, int gid, int t)
    {
        float a0 = x[(int)(pl.X & 0xFFFFu)], a1 = x[(int)(pl.X >> 16)], a2 = x[(int)(pl.Y & 0xFFFFu)], a3 = x[(int)(pl.Y >> 16)];
        float b0 = x[(int)(pl.Z & 0xFFFFu)], b1 = x[(int)(pl.Z >> 16)], b2 = x[(int)(pl.W & 0xFFFFu)], b3 = x[(int)(pl.W >> 16)];
        int odd = (gid >> 1) & 1; // group j = u + 4i: its parity is u's
        bool lo = (gid & 1) != 0;
        FoldGroup(a0, a1, a2, a3, odd, lo, out l.X.X, out l.X.Y, out float s0, out float i0);
        FoldGroup(b0, b1, b2, b3, odd, lo, out l.X.Z, out l.X.W, out float s1, out float i1);
        int src = 8 * t;
        l.G0.X = Warp.Shuffle(s0, src); l.G0.Y = Warp.Shuffle(i0, src);
        l.G1.X = Warp.Shuffle(s1, src); l.G1.Y = Warp.Shuffle(i1, src);
    }

    // one group's four x' of this lane (q = 0..3) → its two x̃ registers (hi or lo halves) and the group's Σ x' and 2^−E·2^24
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void FoldGroup(float v0, float v1, float v2, float v3, int odd, bool lo, out uint w01, out uint w23, out float sum, out float inv)
    {
        float m = Math.Max(Math.Max(Math.Abs(v0), Math.Abs(v2)), Math.Max(Math.Abs(v1), Math.Abs(v3)));
        m = Math.Max(m, Warp.ShuffleXor(m, 2));
        m = Math.Max(m, Warp.ShuffleXor(m, 1));
        sum = (v0 + v2) + (v1 + v3);
        sum += Warp.ShuffleXor(sum, 2);
        sum += Warp.ShuffleXor(sum, 1);
        int e = TcExponent(m);
        inv = Interop.IntAsFloat((uint)(127 - e + 24) << 23);
        // p (TcSplit, layout 1): register 0 (q = 0, 1) 0 for an even group, 6 for an odd; register 1 (q = 2, 3) 3 / 0
        float s0 = Interop.IntAsFloat((uint)(127 + e - (odd != 0 ? 6 : 0)) << 23), s1 = Interop.IntAsFloat((uint)(127 + e - (odd != 0 ? 0 : 3)) << 23);
        float x0 = v0 * s0, x1 = v1 * s0, x2 = v2 * s1, x3 = v3 * s1;
        uint h01 = PackHalf2(x0, x1), h23 = PackHalf2(x2, x3);
        if (!lo) { w01 = h01; w23 = h23; return; }
        HalfPair(h01, out float f0, out float f1);
        HalfPair(h23, out float f2, out float f3);
        w01 = PackHalf2(x0 - f0, x1 - f1);
        w23 = PackHalf2(x2 - f2, x3 - f3);
    }

    // the float values of a word's low and high fp16 halves
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void HalfPair(uint w, out float lo, out float hi)
    {
        if (CudaAsm.IsSupported)
        {
            Ref<float> a = 0f, b = 0f;
            Input<uint> i = w;
            CudaAsm.EmitRef("{ .reg .b16 l, h; mov.b32 {l, h}, %2; cvt.f32.f16 %0, l; cvt.f32.f16 %1, h; }", ref a, ref b, ref i);
            lo = a.Value; hi = b.Value;
            return;
        }
        lo = F16BitsToF32(w & 0xFFFFu); hi = F16BitsToF32(w >> 16);
    }

    // the row's code words shifted down by sh = b·t bits (the stream continues with zeros past the chunk)
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static U16 TcShift(U16 w, int b, int sh) => new()
    {
        A0 = Funnel(w.A0, w.A1, sh), A1 = Funnel(w.A1, w.A2, sh), A2 = Funnel(w.A2, w.A3, sh), A3 = Funnel(w.A3, w.A4, sh),
        A4 = Funnel(w.A4, w.A5, sh), A5 = Funnel(w.A5, w.A6, sh), A6 = Funnel(w.A6, w.A7, sh),
        A7 = Funnel(w.A7, b > 2 ? w.A8 : 0u, sh),
        A8 = b > 2 ? Funnel(w.A8, w.A9, sh) : 0u, A9 = b > 2 ? Funnel(w.A9, w.A10, sh) : 0u, A10 = b > 2 ? Funnel(w.A10, w.A11, sh) : 0u,
        A11 = b > 2 ? Funnel(w.A11, b > 3 ? w.A12 : 0u, sh) : 0u,
        A12 = b > 3 ? Funnel(w.A12, w.A13, sh) : 0u, A13 = b > 3 ? Funnel(w.A13, w.A14, sh) : 0u, A14 = b > 3 ? Funnel(w.A14, w.A15, sh) : 0u,
        A15 = b > 3 ? Funnel(w.A15, 0u, sh) : 0u,
    };

    // bits [sh, sh + 32) of hi:lo, 0 ≤ sh < 32
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static uint Funnel(uint lo, uint hi, int sh) => (uint)((((ulong)hi << 32) | lo) >> sh);

    // bits [at, at + 32) of the shifted stream (at a constant, may be negative: zeros below bit 0)
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static uint TcBits(U16 s, int at)
    {
        if (at < 0) return s.Word(0) << -at;
        int k = at >> 5, r = at & 31;
        if (r == 0) return s.Word(k);
        return (s.Word(k) >> r) | (k + 1 < 16 ? s.Word(k + 1) << (32 - r) : 0u);
    }

    // group j of the super-step for both rows: the A pairs (mask in place, OR onto 1024's fp16 bits, subtract 1024) and
    // one mma into (c0..c3) with this lane's B (zeros unless the group is this lane's column pair)
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void TcGroup(U16 sa, U16 sc, int b, int j, uint mask, uint magic, uint b0, uint b1, ref float c0, ref float c1, ref float c2, ref float c3)
    {
        // bit of pair A / pair B in the shifted stream: w3 groups are 48 bits, pairs 12 bits apart (low code moved to bit 4);
        // w4 64 bits, pairs 16 apart; w2 32 bits, pair A 16 apart, pair B 8 bits further
        int atA = b == 3 ? 48 * j - 4 : b == 4 ? 64 * j : 32 * j;
        int atB = b == 3 ? 48 * j + 20 : b == 4 ? 64 * j + 32 : 32 * j + 8;
        uint a0 = Hsub1024((TcBits(sa, atA) & mask) | magic);
        uint a1 = Hsub1024((TcBits(sc, atA) & mask) | magic);
        uint a2 = Hsub1024((TcBits(sa, atB) & mask) | magic);
        uint a3 = Hsub1024((TcBits(sc, atB) & mask) | magic);
        Mma16816(a0, a1, a2, a3, b0, b1, ref c0, ref c1, ref c2, ref c3);
    }

    // one group's statistics (planes (ss, sz, zs, zz), (xsum, 2^−E), the two rows' stat fields) applied to the two rows' dots
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void TcApply(F4 p, F2 g, int fa, int fb, int qs, float dotA, float dotB, ref float acc0, ref float acc1)
    {
        int smask = (1 << qs) - 1;
        TcApplyCodes(p, g, (uint)(fa & smask), (uint)(fa >> qs), (uint)(fb & smask), (uint)(fb >> qs), dotA, dotB, ref acc0, ref acc1);
    }

    // the same from the two rows' scale and zero codes
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void TcApplyCodes(F4 p, F2 g, uint scA, uint zcA, uint scB, uint zcB, float dotA, float dotB, ref float acc0, ref float acc1)
    {
        float sA = p.X * (Small(scA) - p.Y), zA = p.Z * (Small(zcA) - p.W);
        float sB = p.X * (Small(scB) - p.Y), zB = p.Z * (Small(zcB) - p.W);
        acc0 += sA * (dotA * g.Y - zA * g.X);
        acc1 += sB * (dotB * g.Y - zB * g.X);
    }

    // an fp16 pair minus (1024, 1024): sub.f16x2 on CUDA; elsewhere each half through float (exact for these values)
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static uint Hsub1024(uint v)
    {
        if (CudaAsm.IsSupported)
        {
            uint r;
            // f16x2 instructions take no integer immediates (ILGPU folds a constant argument into one): a scoped register
            CudaAsm.Emit("{ .reg .b32 k; mov.b32 k, 0x64006400; sub.rn.f16x2 %0, %1, k; }", out r, v);
            return r;
        }
        return F16Bits(F16BitsToF32(v & 0xFFFFu) - 1024f) | ((uint)F16Bits(F16BitsToF32(v >> 16) - 1024f) << 16);
    }

    // D = A·B + C for one m16n8k16 tile (fragments in the file header): mma.sync on CUDA; elsewhere the same sums from the
    // other lanes' fragments through shuffles (the tests' reference for the fragment layout on ILGPU's CPU accelerator)
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void Mma16816(uint a0, uint a1, uint a2, uint a3, uint b0, uint b1, ref float c0, ref float c1, ref float c2, ref float c3)
    {
        if (CudaAsm.IsSupported)
        {
            Ref<float> d0 = c0, d1 = c1, d2 = c2, d3 = c3;
            Input<uint> i0 = a0, i1 = a1, i2 = a2, i3 = a3, j0 = b0, j1 = b1;
            CudaAsm.EmitRef("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};",
                ref d0, ref d1, ref d2, ref d3, ref i0, ref i1, ref i2, ref i3, ref j0, ref j1);
            c0 = d0.Value; c1 = d1.Value; c2 = d2.Value; c3 = d3.Value;
            return;
        }
        int lane = Warp.LaneIdx, gid = lane >> 2, t = lane & 3;
        for (int q = 0; q < 4; q++)
        {
            int srcA = 4 * gid + q, srcE = 4 * (2 * t) + q, srcO = srcE + 4;
            uint A0 = Warp.Shuffle(a0, srcA), A1 = Warp.Shuffle(a1, srcA), A2 = Warp.Shuffle(a2, srcA), A3 = Warp.Shuffle(a3, srcA);
            uint BE0 = Warp.Shuffle(b0, srcE), BE1 = Warp.Shuffle(b1, srcE), BO0 = Warp.Shuffle(b0, srcO), BO1 = Warp.Shuffle(b1, srcO);
            c0 += Dot2(A0, BE0) + Dot2(A2, BE1);
            c1 += Dot2(A0, BO0) + Dot2(A2, BO1);
            c2 += Dot2(A1, BE0) + Dot2(A3, BE1);
            c3 += Dot2(A1, BO0) + Dot2(A3, BO1);
        }
    }

    // lo·lo + hi·hi of two fp16 pairs, in float
    private static float Dot2(uint a, uint b)
        => F16BitsToF32(a & 0xFFFFu) * F16BitsToF32(b & 0xFFFFu) + F16BitsToF32(a >> 16) * F16BitsToF32(b >> 16);
}
