// The lane-major w3 tensor-core matvec (GpuKernels.SpqrTc.cs: same tiles, splits, records, arithmetic and reduction, so
// the same bits) with each warp's super-steps copied into shared memory by Hopper's bulk copies (cp.async.bulk, the
// TMA engine's one-dimensional form), D steps ahead, completion counted in bytes on one mbarrier per slot.
//
// Why: the register kernel's warp requests one super-step, waits its whole round trip, computes, then requests the next:
// its time is (steps per warp) × (round trip + compute) at ≤ 6 warps a scheduler, 30-45% of the card's bandwidth
// (bench/README.md). Keeping the next steps in flight in registers needed 96 registers (slower: eleventh session); the
// thirteenth session's cp.async staging (108 sixteen-byte copies a step spread over the lanes, each with its own index
// arithmetic: +64% instructions) was slower still, and ptxas stopped promoting ILGPU's inline-PTX output depots to
// registers in a kernel with cp.async. Here one lane issues four bulk copies a step (its 1,024-byte record, 128 bytes of
// planes, 512 of x̃, 64 of (xsum, 2^−E)): no registers and almost no instructions for the bytes in flight, and the
// depots are rewritten as registers in the PTX text before loading (PtxDepots), whether ptxas needs it or not.
//
// A slot (one super-step s of one warp) is 1,728 bytes = 108 sixteen-byte chunks:
//   chunks   0-63  the lane-major record (32 lanes x 4 words, word-major: GpuSpqrLayer.LaneMajor)   bytes (tile·steps + s)·1024
//   chunks  64-71  the planes (ss, sz, zs, zz) of groups 8s .. 8s + 7 of the tile's row group           float4 pg + 8s
//   chunks  72-103 x̃ of the super-step (the prepare launch's 512 bytes)                               scratch, 512·s past x̃'s start
//   chunks 104-107 (xsum, 2^−E) of its 8 groups                                                        scratch, 64·s past G's start
// Weights (record, planes) may be requested before GridWait (programmatic launch: they overlap the kernel before); x̃
// and (xsum, 2^−E), which the prepare launch writes, only after it — on the same mbarrier, whose expected byte count
// (1,728) was set with the weights.
//
// Pipeline per warp (its i-th step in slot i mod D, phase parity (i / D) & 1):
//   prologue (lane 0): init the D mbarriers, fence; arrive.expect_tx + the weights of steps 0..D−1; GridWait; their
//             activations
//   step i:   every lane waits on the slot's mbarrier (try_wait.parity), reads the slot into registers, warp barrier;
//             lane 0 refills the slot with step i + D (proxy fence, arrive.expect_tx, four copies); compute
// Off CUDA (ILGPU's CPU accelerator: the tests) lane 0 copies the chunks with plain loads and stores and every wait is a
// warp barrier.
//
// Shared memory: ILGPU declares a kernel's static allocations as `.shared .align A .b8 __shared_allocaN[bytes]` and gives
// a kernel no address of a view; the inline PTX names the stage buffer by a placeholder (BulkPlaceholder) that
// GpuKernels.Load replaces with the allocation of the buffer's unique size (BulkPtx.Bind, alignment raised to 16). The
// slots are followed by the mbarriers (8 bytes each). Global source addresses come from the host in SpqrDims /
// TcLayerViews (ArrayView.LoadEffectiveAddressAsPtr): a kernel has no address of a global view either.
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using SpqrLaunchTc = System.Action<ILGPU.KernelConfig, ILGPU.ArrayView<byte>, ILGPU.ArrayView<byte>, ILGPU.ArrayView<float>, ILGPU.ArrayView<int>, ILGPU.ArrayView<ushort>, ILGPU.ArrayView<float>, ILGPU.ArrayView<float>, ILGPU.ArrayView<float>, SpQR.Gpu.SpqrDims, int>;

namespace SpQR.Gpu;

public sealed partial class GpuKernels
{
    /// <summary>The lane-major w3 matvec with its super-steps bulk-copied into shared memory (this file) instead of loaded
    /// into registers (true), or GpuKernels.SpqrTc.cs's loop (false; the default until measured on a card:
    /// bench/README.md). Needs a CUDA device of compute capability ≥ 9.0 (or ILGPU's CPU accelerator, for tests).</summary>
    public bool SpqrTcBulk { get; set; }
    /// <summary>Stages (slots a warp cycles through) of the bulk kernel: 0 = as many as the block's share of the buffer
    /// holds, at most 4; else 2-8 (benchmarks).</summary>
    public int SpqrTcBulkStages { get; set; }

    /// <summary>16-byte chunks of one slot (one super-step of one warp).</summary>
    internal const int BulkChunks = 108;
    internal const int BulkSlotBytes = BulkChunks * 16;
    // slots of the two kernel builds: blocks of up to 12 warps at 2 stages, 8 at 3 (41,664 bytes with the mbarriers: two
    // such blocks a multiprocessor); four-warp blocks at 4 (27,776 bytes: six a multiprocessor, as the grouped launches' 73
    // registers allow)
    internal const int BulkSlotsLarge = 24, BulkSlotsSmall = 16;
    // the buffer in 16-byte units: the slots, then one 8-byte mbarrier per slot
    internal const int BulkUnitsLarge = BulkSlotsLarge * BulkChunks + BulkSlotsLarge / 2, BulkUnitsSmall = BulkSlotsSmall * BulkChunks + BulkSlotsSmall / 2;
    /// <summary>The name the bulk kernels' inline PTX uses for their stage buffer (replaced at load).</summary>
    public const string BulkPlaceholder = "__spqr_bulk_stage__";

    /// <summary>Bulk-staged launches queued so far (single and grouped; a diagnostic for tests).</summary>
    public long SpqrBulkLaunches { get; private set; }

    /// <summary>The stages <see cref="SpqrMatVec"/> would give this layer's warps on the bulk kernel with the current
    /// settings (0: it runs another kernel).</summary>
    public int SpqrBulkStagesFor(GpuSpqrLayer w)
    {
        if (!TcApplies(w) || !UsesLaneCodes(w) || SpqrTcLoadsOnly != 0) return 0;
        var (_, wpb, _) = TcGrid(w.Dims, lanes: true);
        return BulkStagesFor(w.Dims, wpb);
    }

    private SpqrLaunchTc? _spqrTcBulkLarge, _spqrTcBulkSmall;
    private Action<KernelConfig, TcLayerViews, TcLayerViews, TcLayerViews, SpqrDims, int, int>? _spqrTcBulkGroupLarge, _spqrTcBulkGroupSmall;

    // the device takes bulk copies and mbarrier transaction counts (sm_90), or is ILGPU's CPU accelerator (emulated)
    private bool BulkDevice => _acc is CudaAccelerator { Architecture: { Major: >= 9 } } || _acc.AcceleratorType == AcceleratorType.CPU;

    // whether the bulk kernel takes this lane-major layer (w3 subnormal records, a warp of 32) and the stages it gets for
    // blocks of wpb warps (0: it does not)
    private int BulkStagesFor(SpqrDims d, int wpb)
    {
        if (!SpqrTcBulk || d.WBits != 3 || d.LaneLayout != 1 || _acc.WarpSize != 32 || !BulkDevice) return 0;
        int slots = wpb <= 4 ? BulkSlotsSmall : BulkSlotsLarge;
        int most = slots / wpb;
        if (most < 2) return 0;
        return SpqrTcBulkStages == 0 ? Math.Min(4, most) : Math.Min(most, Math.Max(2, SpqrTcBulkStages));
    }

    // the host's device addresses of a layer's record bytes, planes and scratch (16-byte aligned, else false: not staged)
    private static bool BulkAddresses(ArrayView<byte> codes, ArrayView<float> planes, ArrayView<float> scratch, out long c, out long p, out long s)
    {
        c = codes.LoadEffectiveAddressAsPtr().ToInt64();
        p = planes.LoadEffectiveAddressAsPtr().ToInt64();
        s = scratch.LoadEffectiveAddressAsPtr().ToInt64();
        return ((c | p | s) & 15) == 0;
    }

    // the bulk kernel launch for one layer (callers checked BulkStagesFor > 0); false where the views are not 16-byte aligned
    private bool LaunchBulk(GpuSpqrLayer w, ArrayView<byte> codes, SpqrDims d, int K, int wpb, int blocks, int stages, ArrayView<float> scratch, ArrayView<float> y)
    {
        if (!BulkAddresses(codes, w.Planes.View, scratch, out d.CodesAddr, out d.PlanesAddr, out d.ScratchAddr)) return false;
        d.Stages = stages;
        var k = wpb <= 4
            ? _spqrTcBulkSmall ??= Load<ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<int>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, ArrayView<float>, SpqrDims, int>(SpqrMatVecTcBulkSmall3Kernel)
            : _spqrTcBulkLarge ??= Load<ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<int>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, ArrayView<float>, SpqrDims, int>(SpqrMatVecTcBulkLarge3Kernel);
        k(new KernelConfig(blocks, wpb * 32), codes, w.StatCodes.View, w.Planes.View,
          w.OutlierRowOffsets.View, w.OutlierCols.View, w.OutlierDeltas.View, scratch, y, d, K);
        SpqrBulkLaunches++;
        return true;
    }

    // the same for a grouped launch (the layers' views get their addresses)
    private bool LaunchBulkGroup(ref TcLayerViews a, ref TcLayerViews b, ref TcLayerViews c, SpqrDims d, int K, int wpb, int blocks, int L, int stages)
    {
        if (!BulkAddresses(a.Codes, a.Planes, a.Scratch, out a.CodesAddr, out a.PlanesAddr, out a.ScratchAddr)) return false;
        if (!BulkAddresses(b.Codes, b.Planes, b.Scratch, out b.CodesAddr, out b.PlanesAddr, out b.ScratchAddr)) return false;
        if (!BulkAddresses(c.Codes, c.Planes, c.Scratch, out c.CodesAddr, out c.PlanesAddr, out c.ScratchAddr)) return false;
        d.Stages = stages;
        var k = wpb <= 4
            ? _spqrTcBulkGroupSmall ??= Load<TcLayerViews, TcLayerViews, TcLayerViews, SpqrDims, int, int>(SpqrMatVecTcBulkGroupSmall3Kernel)
            : _spqrTcBulkGroupLarge ??= Load<TcLayerViews, TcLayerViews, TcLayerViews, SpqrDims, int, int>(SpqrMatVecTcBulkGroupLarge3Kernel);
        k(new KernelConfig(L * blocks, wpb * 32), a, b, c, d, K, blocks);
        SpqrBulkLaunches++;
        return true;
    }

    private static void SpqrMatVecTcBulkLarge3Kernel(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<int> offsets,
                                                     ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<float> scratch, ArrayView<float> y, SpqrDims d, int K)
        => SpqrMatVecTcBulkBody(SharedMemory.Allocate<U4>(BulkUnitsLarge), BulkSlotsLarge, codes, statCodes, planes, offsets, ocols, deltas, scratch, y, d, K,
                                0, d.CodesAddr, d.PlanesAddr, d.ScratchAddr);
    private static void SpqrMatVecTcBulkSmall3Kernel(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<int> offsets,
                                                     ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<float> scratch, ArrayView<float> y, SpqrDims d, int K)
        => SpqrMatVecTcBulkBody(SharedMemory.Allocate<U4>(BulkUnitsSmall), BulkSlotsSmall, codes, statCodes, planes, offsets, ocols, deltas, scratch, y, d, K,
                                0, d.CodesAddr, d.PlanesAddr, d.ScratchAddr);
    private static void SpqrMatVecTcBulkGroupLarge3Kernel(TcLayerViews a, TcLayerViews b, TcLayerViews c, SpqrDims d, int K, int blocksPerLayer)
        => SpqrMatVecTcBulkGroupBody(SharedMemory.Allocate<U4>(BulkUnitsLarge), BulkSlotsLarge, a, b, c, d, K, blocksPerLayer);
    private static void SpqrMatVecTcBulkGroupSmall3Kernel(TcLayerViews a, TcLayerViews b, TcLayerViews c, SpqrDims d, int K, int blocksPerLayer)
        => SpqrMatVecTcBulkGroupBody(SharedMemory.Allocate<U4>(BulkUnitsSmall), BulkSlotsSmall, a, b, c, d, K, blocksPerLayer);

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void SpqrMatVecTcBulkGroupBody(ArrayView<U4> stage, int slots, TcLayerViews a, TcLayerViews b, TcLayerViews c, SpqrDims d, int K, int blocksPerLayer)
    {
        int li = Grid.IdxX / blocksPerLayer;
        var v = li == 0 ? a : li == 1 ? b : c;
        SpqrMatVecTcBulkBody(stage, slots, v.Codes, v.StatCodes, v.Planes, v.Offsets, v.OCols, v.Deltas, v.Scratch, v.Y, d, K, li * blocksPerLayer,
                             v.CodesAddr, v.PlanesAddr, v.ScratchAddr);
    }

    /// <summary>Where one warp's steps come from: 16-byte indices into the record, plane and scratch views (for the CPU
    /// accelerator's copies) and the byte addresses of the same (for the bulk copies), at super-step 0.</summary>
    internal struct BulkSource
    {
        public int Rec, Plane, X, G;
        public long RecAddr, PlaneAddr, XAddr, GAddr;
    }

    // the inline PTX's shared address of stage byte `off` (the placeholder bound at load)
    private const string BulkAddr = "mov.u64 a, " + BulkPlaceholder + "; add.u64 a, a, %0;";

    // lane 0: the slot's mbarrier initialised for one arrival (CUDA only)
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void BulkInit(long mbar)
    {
        if (CudaAsm.IsSupported) CudaAsm.Emit("{ .reg .u64 a; " + BulkAddr + " mbarrier.init.shared::cta.b64 [a], 1; }", mbar);
    }

    // lane 0, after its inits: visible to the async proxy (the bulk copies' completions)
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void BulkInitFence()
    {
        if (CudaAsm.IsSupported) CudaAsm.Emit("fence.mbarrier_init.release.cluster;");
    }

    // lane 0: the slot's one arrival for this phase, expecting `bytes` from its copies
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void BulkExpect(long mbar, int bytes)
    {
        if (CudaAsm.IsSupported) CudaAsm.Emit("{ .reg .u64 a; .reg .b64 st; " + BulkAddr + " mbarrier.arrive.expect_tx.shared::cta.b64 st, [a], %1; }", mbar, bytes);
    }

    // lane 0: `units` 16-byte chunks from global memory (src[si..], byte address ga) to stage[di..], counted on the mbarrier
    // at byte mbar: one cp.async.bulk on CUDA; elsewhere plain copies
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void BulkCopy(ArrayView<U4> stage, int di, ArrayView<U4> src, int si, long ga, int units, long mbar)
    {
        if (CudaAsm.IsSupported)
            CudaAsm.Emit("{ .reg .u64 a, m, g; " + BulkAddr + " mov.u64 m, " + BulkPlaceholder + "; add.u64 m, m, %1; cvta.to.global.u64 g, %2; "
                         + "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [a], [g], %3, [m]; }", 16L * di, mbar, ga, 16 * units);
        else
            for (int u = 0; u < units; u++) stage[di + u] = src[si + u];
    }

    // every lane: until the slot's phase with this parity has completed (its bytes landed); a warp barrier elsewhere
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void BulkWait(long mbar, int parity)
    {
        if (CudaAsm.IsSupported)
        {
            uint done = 0;
            while (done == 0)
                CudaAsm.Emit("{ .reg .u64 a; .reg .pred p; mov.u64 a, " + BulkPlaceholder + "; add.u64 a, a, %1; mbarrier.try_wait.parity.shared::cta.b64 p, [a], %2; selp.u32 %0, 1, 0, p; }",
                             out done, mbar, parity);
        }
        else Warp.Barrier();
    }

    // lane 0, before refilling a slot the warp has read: generic-proxy reads ordered before the async proxy's writes
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void BulkProxyFence()
    {
        if (CudaAsm.IsSupported) CudaAsm.Emit("fence.proxy.async.shared::cta;");
    }

    // lane 0: the weights (record, planes) or the activations (x̃, (xsum, 2^−E)) of super-step s into slot j
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void BulkIssue(ArrayView<U4> stage, int slots, int j, in BulkSource q, int s, bool weights, ArrayView<U4> rec, ArrayView<U4> pl, ArrayView<U4> sc)
    {
        int b = j * BulkChunks;
        long mbar = 16L * slots * BulkChunks + 8L * j;
        if (weights)
        {
            BulkCopy(stage, b, rec, q.Rec + 64 * s, q.RecAddr + 1024L * s, 64, mbar);
            BulkCopy(stage, b + 64, pl, q.Plane + 8 * s, q.PlaneAddr + 128L * s, 8, mbar);
            return;
        }
        BulkCopy(stage, b + 72, sc, q.X + 32 * s, q.XAddr + 512L * s, 32, mbar);
        BulkCopy(stage, b + 104, sc, q.G + 4 * s, q.GAddr + 64L * s, 4, mbar);
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void SpqrMatVecTcBulkBody(ArrayView<U4> stage, int slots, ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<int> offsets,
                                             ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<float> scratch, ArrayView<float> y, SpqrDims d, int K,
                                             int blockBase, long codesAddr, long planesAddr, long scratchAddr)
    {
        var red = SharedMemory.Allocate<float>(16 * 16); // [warp of the block][row of its tile]
        int lane = Warp.LaneIdx, gid = lane >> 2, t = lane & 3, wpb = Group.DimX / 32, wi = Warp.WarpIdx, split = wi % K;
        int D = d.Stages;
        int first = d.StepOrder != 0 ? K - 1 - split : split;
        int r0 = 16 * ((Grid.IdxX - blockBase) * (wpb / K) + wi / K), last = d.Rows - 1;
        bool live = r0 < d.Rows;
        int groups = d.Groups, padded = groups * 16, steps = groups / 8;
        int pg = live ? r0 / d.QqGroupSize * groups : 0;
        // the warp's steps: first, first + K, ... < steps (the i-th: first + i·K)
        int n = live && first < steps ? (steps - 1 - first) / K + 1 : 0;
        var rec = codes.Cast<U4>();
        var pl = planes.Cast<U4>();
        var sc = scratch.Cast<U4>();
        int tile = r0 >> 4;
        var q = new BulkSource { Rec = tile * steps * 64, Plane = pg, X = (padded + 2 * groups) / 4, G = padded / 4 };
        q.RecAddr = codesAddr + 16L * q.Rec; q.PlaneAddr = planesAddr + 16L * q.Plane; q.XAddr = scratchAddr + 16L * q.X; q.GAddr = scratchAddr + 16L * q.G;
        int slot0 = wi * D;
        long mbar0 = 16L * slots * BulkChunks + 8L * slot0;
        bool issuer = lane == 0;
        // the weights of the first D steps, before the wait
        if (issuer)
        {
            for (int i = 0; i < D; i++) BulkInit(mbar0 + 8L * i);
            BulkInitFence();
            for (int i = 0; i < D && i < n; i++)
            {
                BulkExpect(mbar0 + 8L * i, BulkSlotBytes);
                BulkIssue(stage, slots, slot0 + i, q, first + i * K, true, rec, pl, sc);
            }
        }
        Warp.Barrier();
        // outliers as in the register kernel: the split's first two rows' CSR ranges and entries requested up front
        int orow = Math.Min(r0 + split, last), prow = Math.Min(r0 + split + K, last);
        float acc0 = 0, acc1 = 0, oSum = 0, pSum = 0;
        bool oFirst = live && split < 16, pSecond = live && split + K < 16;
        int o0 = 0, o1 = 0, p0 = 0, p1 = 0;
        if (oFirst) { o0 = offsets[orow]; o1 = offsets[orow + 1]; }
        if (pSecond) { p0 = offsets[prow]; p1 = offsets[prow + 1]; }
        var oPre = oFirst ? OutlierPrefetch(ocols, deltas, o0, o1, lane, 32, OutlierLanes) : default;
        var pPre = pSecond ? OutlierPrefetch(ocols, deltas, p0, p1, lane, 32, OutlierLanes) : default;
        GridWait();
        bool writer = live && split == 0 && lane < 16 && r0 + lane <= last;
        float y0 = d.Accumulate != 0 && writer ? y[r0 + lane] : 0f;
        if (issuer)
            for (int i = 0; i < D && i < n; i++) BulkIssue(stage, slots, slot0 + i, q, first + i * K, false, rec, pl, sc);
        if (oFirst) oSum = OutlierGather(oPre, scratch);
        if (pSecond) pSum = OutlierGather(pPre, scratch);
        var st8 = stage.Cast<ulong>();
        var st4f = stage.Cast<F4>();
        var st2f = stage.Cast<F2>();
        int xi = ((gid & 1) * 4 + t) * 4 + (gid >> 1);
        int j = 0, phase = 0;
        for (int i = 0; i < n; i++)
        {
            BulkWait(mbar0 + 8L * j, phase);
            int sb = (slot0 + j) * BulkChunks;
            var l = new TcLoads();
            ulong w0 = st8[2 * sb + lane], w1 = st8[2 * sb + 32 + lane], w2 = st8[2 * sb + 64 + lane], w3 = st8[2 * sb + 96 + lane];
            l.A.A0 = (uint)w0; l.A.A1 = (uint)(w0 >> 32); l.A.A2 = (uint)w1; l.A.A3 = (uint)(w1 >> 32); l.A.A4 = (uint)w2; l.A.A5 = (uint)(w2 >> 32);
            l.A.A6 = (uint)w3; l.A.A7 = (uint)(w3 >> 32);
            l.P0 = st4f[sb + 64 + t]; l.P1 = st4f[sb + 64 + t + 4];
            l.X = stage[sb + 72 + xi];
            l.G0 = st2f[2 * (sb + 104) + t]; l.G1 = st2f[2 * (sb + 104) + t + 4];
            Warp.Barrier();
            if (issuer && i + D < n)
            {
                int s = first + (i + D) * K;
                BulkProxyFence();
                BulkExpect(mbar0 + 8L * j, BulkSlotBytes);
                BulkIssue(stage, slots, slot0 + j, q, s, true, rec, pl, sc);
                BulkIssue(stage, slots, slot0 + j, q, s, false, rec, pl, sc);
            }
            TcComputeLanes(l, d, 3, 1, gid, t, ref acc0, ref acc1);
            if (++j == D) { j = 0; phase ^= 1; }
        }
        acc0 += Warp.ShuffleXor(acc0, 1); acc0 += Warp.ShuffleXor(acc0, 2);
        acc1 += Warp.ShuffleXor(acc1, 1); acc1 += Warp.ShuffleXor(acc1, 2);
        for (int i = split; live && i < 16; i += K)
        {
            int r = Math.Min(r0 + i, last);
            bool pre = i == split || i == split + K;
            float o = (i == split ? oSum : i == split + K ? pSum : 0f) + OutlierPart(offsets, ocols, deltas, scratch, r, pre ? OutlierLanes * Warp.WarpSize : 0);
            o = WarpSum(o);
            o = Warp.Shuffle(o, 0);
            if (t == 0 && gid == (i & 7)) { if (i < 8) acc0 += o; else acc1 += o; }
        }
        if (t == 0) { red[16 * wi + gid] = acc0; red[16 * wi + gid + 8] = acc1; }
        Group.Barrier();
        if (writer)
        {
            float sum = red[16 * wi + lane];
            for (int jj = 1; jj < K; jj++) sum += red[16 * (wi + jj) + lane];
            y[r0 + lane] = d.Accumulate != 0 ? y0 + sum : sum;
        }
    }
}

/// <summary>Binds the bulk kernels' inline PTX to their stage buffer: ILGPU declares each static shared allocation as
/// <c>.shared .align A .b8 __shared_allocaN[bytes]</c>; the one whose size is a bulk buffer's (GpuKernels.BulkUnitsLarge or
/// BulkUnitsSmall 16-byte units) is it — its alignment raised to 16 (bulk copies write 16-byte units) and its name put
/// where the placeholder stands. The target is raised to sm_90 where it is lower (bulk copies and transaction counts
/// are sm_90's; the programmatic-launch rewrite does this too where it is on).</summary>
public static class BulkPtx
{
    public static string Bind(string ptx, string kernel)
    {
        var sizes = new[] { GpuKernels.BulkUnitsLarge * 16, GpuKernels.BulkUnitsSmall * 16 };
        var rx = new System.Text.RegularExpressions.Regex(@"\.shared\s+\.align\s+(\d+)\s+\.b8\s+(__shared_alloca\d+)\[(\d+)\];");
        string? name = null;
        string bound = rx.Replace(ptx, m =>
        {
            if (!sizes.Contains(int.Parse(m.Groups[3].Value, System.Globalization.CultureInfo.InvariantCulture))) return m.Value;
            if (name is not null) throw new InvalidOperationException($"kernel {kernel}: two shared allocations of a bulk stage buffer's size; cannot bind {GpuKernels.BulkPlaceholder}");
            name = m.Groups[2].Value;
            return $".shared .align 16 .b8 {name}[{m.Groups[3].Value}];";
        });
        if (name is null) throw new InvalidOperationException($"kernel {kernel}: its PTX uses {GpuKernels.BulkPlaceholder} but declares no shared allocation of a bulk stage buffer's size ({string.Join(" or ", sizes)} bytes)");
        bound = System.Text.RegularExpressions.Regex.Replace(bound, @"^\.target sm_(\d+)", m => int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) < 90 ? ".target sm_90" : m.Value,
                                                             System.Text.RegularExpressions.RegexOptions.Multiline);
        return bound.Replace(GpuKernels.BulkPlaceholder, name, StringComparison.Ordinal);
    }
}
