// The w3 lane-major matvec (subnormal records, GpuSpqrLayer.LaneMajor) with two tiles a warp: warp = tiles 2p and 2p + 1
// (rows r0..r0+31) × every K-th super-step — each super-step loads both tiles' records and planes but the x̃ fragments and
// (xsum, 2^−E) once, and runs two independent chains of mma and statistics where the one-tile kernel runs one. For
// launches with more tiles than one wave holds at one tile a warp (11008x4096 at 8 splits: 688 tiles, 1.74 waves of
// 8-warp blocks; the grouped q/k/v and gate/up), where it halves the warps and their prologues (first record, x̃ round
// trip, outlier chain) and epilogues and gives each warp twice the independent work per round trip. An experiment, off
// by default (SpqrTcPair, SpqrTcPairGroup): measured by SpQR.GpuBench pair (bench/README.md, eighteenth session).
//
// Same arithmetic per tile as SpqrMatVecTcBody (TcLoad, TcComputeLanes, TcTileStore; the same step order), so the rows'
// products agree with the one-tile kernel's; the outliers prefetch PairOutlierLanes entries a lane per row (one-tile: 4)
// for the two rows of each tile a split owns first, the rest walked after the loop, so the outlier sums may round
// differently (NMSE against the CPU kernel as every kernel here: tests).
using ILGPU;
using ILGPU.Runtime;

namespace SpQR.Gpu;

public sealed partial class GpuKernels
{
    /// <summary>Lone w3 lane-major matvecs with more tiles than one wave of 12-split blocks holds run two tiles a warp
    /// (GpuKernels.SpqrTcPair.cs). Off by default: an experiment (GpuBench pair).</summary>
    public bool SpqrTcPair { get; set; }
    /// <summary>Grouped w3 lane-major launches (q/k/v, gate/up) run two tiles a warp. Off by default: an experiment.</summary>
    public bool SpqrTcPairGroup { get; set; }
    /// <summary>With <see cref="SpqrTcPair"/>, lone launches of every tile count (tests, benchmarks).</summary>
    public bool SpqrTcPairAllShapes { get; set; }
    /// <summary>Pair launches queued so far (lone and grouped; a diagnostic for tests).</summary>
    public long SpqrPairLaunches { get; private set; }

    // CSR entries a lane prefetched per outlier row in the pair kernel (four rows a warp): 2·32 cover rows of ≤ 64 outliers
    // (1% over 4096 columns: ~41) in registers the one-tile kernel spends on two rows of 4·32
    private const int PairOutlierLanes = 2;

    private Action<KernelConfig, ArrayView<byte>, ArrayView<float>, ArrayView<int>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, ArrayView<float>, SpqrDims, int>? _spqrTcPair;
    private Action<KernelConfig, TcLayerViews, TcLayerViews, TcLayerViews, SpqrDims, int, int>? _spqrTcPairGroup;

    // the layers the pair kernel takes: w3 subnormal lane-major records, none of the diagnostics or variants on
    private bool PairShape(GpuSpqrLayer w) => UsesLaneCodes(w) && LaneSlot(w.Dims) == 3 && w.Dims.LaneLayout == 1 && !SpqrTcLateGather && SpqrTcLoadsOnly == 0;

    // a lone launch: where one tile a warp needs more than one wave of 12-split blocks (TcGrid's K = 12 rule fails)
    private bool PairApplies(GpuSpqrLayer w)
        => SpqrTcPair && PairShape(w) && (SpqrTcPairAllShapes || (long)((w.Dims.Rows + 15) / 16) > 2L * Math.Max(1, _acc.NumMultiprocessors));

    private bool PairGroupApplies(GpuSpqrLayer w) => SpqrTcPairGroup && PairShape(w);

    // the lone pair launch (x̃ prepared in scratch as for SpqrMatVecTcLanes3Kernel)
    private void SpqrMatVecTcPairLaunch(GpuSpqrLayer w, ArrayView<float> scratch, ArrayView<float> y, SpqrDims d)
    {
        var (K, wpb, blocks) = TcGrid(d, lanes: true, pair: true);
        d.StepOrder = SpqrTcStepOrderReversed ? 1 : 0;
        _spqrTcPair ??= Load<ArrayView<byte>, ArrayView<float>, ArrayView<int>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, ArrayView<float>, SpqrDims, int>(SpqrMatVecTcLanes3PairKernel);
        _spqrTcPair(new KernelConfig(blocks, wpb * 32), w.LaneCodeBytes, w.Planes.View, w.OutlierRowOffsets.View, w.OutlierCols.View, w.OutlierDeltas.View, scratch, y, d, K);
        SpqrPairLaunches++;
    }

    private static void SpqrMatVecTcLanes3PairKernel(ArrayView<byte> codes, ArrayView<float> planes, ArrayView<int> offsets, ArrayView<ushort> ocols,
                                                     ArrayView<float> deltas, ArrayView<float> scratch, ArrayView<float> y, SpqrDims d, int K)
        => SpqrMatVecTcPairBody(codes, planes, offsets, ocols, deltas, scratch, y, d, K, 0);

    // block i·B + j runs block j of layer i's own pair launch (SpqrMatVecTcGroupBody's rule)
    private static void SpqrMatVecTcLanesGroup3PairKernel(TcLayerViews a, TcLayerViews b, TcLayerViews c, SpqrDims d, int K, int blocksPerLayer)
    {
        int li = Grid.IdxX / blocksPerLayer;
        var v = li == 0 ? a : li == 1 ? b : c;
        SpqrMatVecTcPairBody(v.Codes, v.Planes, v.Offsets, v.OCols, v.Deltas, v.Scratch, v.Y, d, K, li * blocksPerLayer);
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void SpqrMatVecTcPairBody(ArrayView<byte> codes, ArrayView<float> planes, ArrayView<int> offsets, ArrayView<ushort> ocols,
                                             ArrayView<float> deltas, ArrayView<float> scratch, ArrayView<float> y, SpqrDims d, int K, int blockBase)
    {
        const int b = 3, layout = 1;
        var redA = SharedMemory.Allocate<float>(16 * 16); // [warp of the block][row of its first tile]
        var redB = SharedMemory.Allocate<float>(16 * 16); // [warp of the block][row of its second tile]
        int lane = Warp.LaneIdx, gid = lane >> 2, t = lane & 3, wpb = Group.DimX / 32, wi = Warp.WarpIdx;
        int split = wi % K, first = d.StepOrder != 0 ? K - 1 - split : split;
        int r0 = 32 * ((Grid.IdxX - blockBase) * (wpb / K) + wi / K), r1 = r0 + 16, last = d.Rows - 1;
        bool live = r0 < d.Rows, liveB = r1 < d.Rows;
        int groups = d.Groups, padded = groups * 16, steps = groups / 8, W = GpuSpqrLayer.LaneWords(3);
        var c4 = codes.Cast<U4>().AsAligned(16);
        var c8 = codes.Cast<ulong>().AsAligned(8);
        var x4 = scratch.SubView(padded + 2 * groups).Cast<U4>().AsAligned(16);
        var p4 = planes.Cast<F4>().AsAligned(16);
        var g2 = scratch.SubView(padded).Cast<F2>().AsAligned(8);
        // a missing second tile (odd tile count) computes the first's again and stores nothing: no branch around its mma
        int ra = live ? r0 : 0, rb = liveB ? r1 : ra;
        var qa = new TcBase { X = ((gid & 1) * 4 + t) * 4 + (gid >> 1), GStat = t, Plane = ra / d.QqGroupSize * groups + t, Packed = LaneRecord(ra, steps, W, lane) };
        var qb = qa;
        qb.Plane = rb / d.QqGroupSize * groups + t; qb.Packed = LaneRecord(rb, steps, W, lane);
        // each tile's first two outlier rows of this split (r + split, r + split + K), prefetched as in the one-tile kernel
        bool aFirst = live, aSecond = live && split + K < 16, bFirst = liveB, bSecond = liveB && split + K < 16;
        int oa = Math.Min(r0 + split, last), pa = Math.Min(r0 + split + K, last), ob = Math.Min(r1 + split, last), pb = Math.Min(r1 + split + K, last);
        float accA0 = 0, accA1 = 0, accB0 = 0, accB1 = 0, oSumA = 0, pSumA = 0, oSumB = 0, pSumB = 0;
        // before the wait (programmatic launch) only weights: both tiles' first records and planes, the CSR offsets and entries
        TcLoads la = default, lb = default;
        if (live && first < steps)
        {
            la = TcLoad(c4, x4, p4, g2, default, qa, first, b, d.StatBits, true, c8, W, activations: false);
            lb = TcLoad(c4, x4, p4, g2, default, qb, first, b, d.StatBits, true, c8, W, activations: false);
        }
        int a0 = aFirst ? offsets[oa] : 0, a1 = aFirst ? offsets[oa + 1] : 0, a2 = aSecond ? offsets[pa] : 0, a3 = aSecond ? offsets[pa + 1] : 0;
        int b0 = bFirst ? offsets[ob] : 0, b1 = bFirst ? offsets[ob + 1] : 0, b2 = bSecond ? offsets[pb] : 0, b3 = bSecond ? offsets[pb + 1] : 0;
        var oPreA = aFirst ? OutlierPrefetch(ocols, deltas, a0, a1, lane, 32, PairOutlierLanes) : default;
        var pPreA = aSecond ? OutlierPrefetch(ocols, deltas, a2, a3, lane, 32, PairOutlierLanes) : default;
        var oPreB = bFirst ? OutlierPrefetch(ocols, deltas, b0, b1, lane, 32, PairOutlierLanes) : default;
        var pPreB = bSecond ? OutlierPrefetch(ocols, deltas, b2, b3, lane, 32, PairOutlierLanes) : default;
        GridWait();
        bool writerA = live && split == 0 && lane < 16 && r0 + lane <= last, writerB = liveB && split == 0 && lane < 16 && r1 + lane <= last;
        float yA = d.Accumulate != 0 && writerA ? y[r0 + lane] : 0f, yB = d.Accumulate != 0 && writerB ? y[r1 + lane] : 0f;
        if (live && first < steps)
        {
            TcLoadX(ref la, x4, g2, qa, first, true);
            lb.X = la.X; lb.G0 = la.G0; lb.G1 = la.G1;
            TcComputeLanes(la, d, b, layout, gid, t, ref accA0, ref accA1);
            TcComputeLanes(lb, d, b, layout, gid, t, ref accB0, ref accB1);
        }
        if (aFirst) oSumA = OutlierGather(oPreA, scratch);
        if (aSecond) pSumA = OutlierGather(pPreA, scratch);
        if (bFirst) oSumB = OutlierGather(oPreB, scratch);
        if (bSecond) pSumB = OutlierGather(pPreB, scratch);
        for (int s = first + K; live && s < steps; s += K)
        {
            la = TcLoad(c4, x4, p4, g2, default, qa, s, b, d.StatBits, true, c8, W);
            lb = TcLoad(c4, x4, p4, g2, default, qb, s, b, d.StatBits, true, c8, W, activations: false);
            lb.X = la.X; lb.G0 = la.G0; lb.G1 = la.G1;
            TcComputeLanes(la, d, b, layout, gid, t, ref accA0, ref accA1);
            TcComputeLanes(lb, d, b, layout, gid, t, ref accB0, ref accB1);
        }
        accA0 += Warp.ShuffleXor(accA0, 1); accA0 += Warp.ShuffleXor(accA0, 2);
        accA1 += Warp.ShuffleXor(accA1, 1); accA1 += Warp.ShuffleXor(accA1, 2);
        accB0 += Warp.ShuffleXor(accB0, 1); accB0 += Warp.ShuffleXor(accB0, 2);
        accB1 += Warp.ShuffleXor(accB1, 1); accB1 += Warp.ShuffleXor(accB1, 2);
        PairOutliers(offsets, ocols, deltas, scratch, r0, last, split, K, live, oSumA, pSumA, t, gid, ref accA0, ref accA1);
        PairOutliers(offsets, ocols, deltas, scratch, r1, last, split, K, liveB, oSumB, pSumB, t, gid, ref accB0, ref accB1);
        TcTileStore(redA, y, accA0, accA1, r0, K, writerA, yA, d.Accumulate != 0, lane, gid, t, wi);
        TcTileStore(redB, y, accB0, accB1, r1, K, writerB, yB, d.Accumulate != 0, lane, gid, t, wi);
    }

    // a tile's outliers: row r0 + i by the split i % K — the first two from their prefetched sums plus what is past the
    // prefetched entries, the others by the warp-strided CSR walk; each row's total to lane 4·(i mod 8) (its accumulator)
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void PairOutliers(ArrayView<int> offsets, ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<float> scratch, int r0, int last, int split, int K,
                                     bool live, float oSum, float pSum, int t, int gid, ref float acc0, ref float acc1)
    {
        for (int i = split; live && i < 16; i += K)
        {
            int r = Math.Min(r0 + i, last);
            bool pre = i == split || i == split + K;
            float o = (i == split ? oSum : i == split + K ? pSum : 0f) + OutlierPart(offsets, ocols, deltas, scratch, r, pre ? PairOutlierLanes * 32 : 0);
            o = WarpSum(o);
            o = Warp.Shuffle(o, 0);
            if (t == 0 && gid == (i & 7)) { if (i < 8) acc0 += o; else acc1 += o; }
        }
    }
}
