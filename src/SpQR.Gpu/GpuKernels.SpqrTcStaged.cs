// The lane-major w3 tensor-core matvec (GpuKernels.SpqrTc.cs: same tiles, splits, records, arithmetic and reduction,
// so the same bits) with each warp's super-steps staged through shared memory by cp.async, D steps ahead: a warp
// keeps D − 1 steps' bytes in flight while it computes one, without holding them in registers.
//
// Why: the register kernel's warp requests one super-step, waits the whole memory round trip, computes, then requests
// the next — its time is (steps per warp) × (round trip + compute), and the card's memory sees only the bytes of the
// warps that happen to be waiting (Nsight Compute on the H200: DRAM 19-28% of peak, issue slots 39-45% busy). A
// register pipeline (the next step's loads before this step's compute) needed 96 registers, halved the warps a
// multiprocessor holds and measured slower (bench/README.md, GPU eleventh session). Shared memory holds the steps
// instead: 1,728 bytes a step a warp.
//
// A stage (one super-step s of one warp) is 108 16-byte chunks, all copied by cp.async (16 bytes, .cg for the
// weights, .ca for the activations every tile reads):
//   chunks   0-63  the lane-major record (32 lanes x 4 words, word-major: GpuSpqrLayer.LaneMajor)  tile·steps + s
//   chunks  64-71  the planes (ss, sz, zs, zz) of groups 8s .. 8s + 7 of the tile's row group          pg + 8s
//   chunks  72-103 x̃ of the super-step (the prepare launch's 512 bytes, the register kernel's slots)    32s
//   chunks 104-107 (xsum, 2^−E) of its 8 groups                                                       8s
// Lane L copies chunks L, L + 32, L + 64 and L + 96 (< 108): each at a fixed base plus s times a fixed stride, so a
// lane's copies are four (address, stride) pairs set once. Weights (records, planes) may be requested before
// GridWait (programmatic launch: they overlap the kernel before); x̃ and (xsum, 2^−E), which the prepare launch writes,
// only after it.
//
// Pipeline per warp (its i-th step in slot i mod D; one cp.async group committed per step, empty ones included, so
// `cp.async.wait_group D − 1` always leaves exactly the steps after the current one pending):
//   prologue: weights of steps 0..D−1 (D groups), GridWait, activations of steps 0..D−1 (D groups)
//   step i:   wait_group(D − 1), warp barrier (other lanes' copies visible), read the slot, compute, warp barrier
//             (every lane done with the slot), copy step i + D into it (if any), commit
// Off CUDA (ILGPU's CPU accelerator: the tests) the copies are plain loads and stores and the waits nothing.
//
// Shared memory: ILGPU declares a kernel's static allocations as `.shared .b8 __shared_allocaN[bytes]` in allocation
// order and gives a kernel no address of a view; the cp.async destinations name the stage buffer by a placeholder
// (StagePlaceholder) that GpuKernels.Load replaces with the allocation of the stage's unique size (and aligns to 16).
// Source addresses come from the host (ArrayView.LoadEffectiveAddressAsPtr) in SpqrDims / TcLayerViews: a kernel has no
// address of a global view either.
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using SpqrLaunchTc = System.Action<ILGPU.KernelConfig, ILGPU.ArrayView<byte>, ILGPU.ArrayView<byte>, ILGPU.ArrayView<float>, ILGPU.ArrayView<int>, ILGPU.ArrayView<ushort>, ILGPU.ArrayView<float>, ILGPU.ArrayView<float>, ILGPU.ArrayView<float>, SpQR.Gpu.SpqrDims, int>;

namespace SpQR.Gpu;

public sealed partial class GpuKernels
{
    /// <summary>The lane-major w3 matvec with shared-memory staging (this file) instead of register loads (true), or
    /// GpuKernels.SpqrTc.cs's loop (false; the default until it is measured on a card: bench/README.md).</summary>
    public bool SpqrTcStaged { get; set; }
    /// <summary>Stages (steps a warp has requested) of the staged kernel: 0 = as many as its shared memory holds for the
    /// block's warps (2-4); else 2-4 (benchmarks).</summary>
    public int SpqrTcStages { get; set; }

    /// <summary>16-byte chunks of one stage (one super-step of one warp).</summary>
    internal const int StageChunks = 108;
    // stage capacities of the two kernel builds (slots of StageChunks chunks): blocks of up to 16 warps at 2 stages, or
    // 8 warps at 3 (41,472 bytes); four-warp blocks at 4 (27,648 bytes: eight such blocks a multiprocessor)
    internal const int StageSlotsLarge = 24, StageSlotsSmall = 16;
    /// <summary>The name the staged kernels' inline PTX uses for their stage buffer (replaced at load).</summary>
    public const string StagePlaceholder = "__spqr_stage__";

    /// <summary>Staged launches queued so far (single and grouped; a diagnostic for tests).</summary>
    public long SpqrStagedLaunches { get; private set; }

    /// <summary>The stages <see cref="SpqrMatVec"/> would give this layer's warps with the current settings (0: not the
    /// staged kernel; it may still fall back where a view is not 16-byte aligned).</summary>
    public int SpqrStagesFor(GpuSpqrLayer w)
    {
        if (!TcApplies(w) || !UsesLaneCodes(w) || SpqrTcLoadsOnly != 0) return 0;
        var (_, wpb, _) = TcGrid(w.Dims, lanes: true);
        return StagesFor(w.Dims, wpb);
    }

    private SpqrLaunchTc? _spqrTcStagedLarge, _spqrTcStagedSmall;
    private Action<KernelConfig, TcLayerViews, TcLayerViews, TcLayerViews, SpqrDims, int, int>? _spqrTcStagedGroupLarge, _spqrTcStagedGroupSmall;

    // whether the staged kernel takes this lane-major layer (w3 subnormal records, a warp of 32) and the stages it gets
    // for blocks of wpb warps (0: it does not)
    private int StagesFor(SpqrDims d, int wpb)
    {
        if (!SpqrTcStaged || d.WBits != 3 || d.LaneLayout != 1 || _acc.WarpSize != 32) return 0;
        int slots = wpb <= 4 ? StageSlotsSmall : StageSlotsLarge;
        int most = Math.Min(4, slots / wpb);
        if (most < 2) return 0;
        return SpqrTcStages == 0 ? most : Math.Min(most, Math.Max(2, SpqrTcStages));
    }

    // the host's device addresses of a layer's record bytes, planes and scratch (16-byte aligned, else 0: not staged)
    private static bool StageAddresses(ArrayView<byte> codes, ArrayView<float> planes, ArrayView<float> scratch, out long c, out long p, out long s)
    {
        c = codes.LoadEffectiveAddressAsPtr().ToInt64();
        p = planes.LoadEffectiveAddressAsPtr().ToInt64();
        s = scratch.LoadEffectiveAddressAsPtr().ToInt64();
        return ((c | p | s) & 15) == 0;
    }

    // the staged kernel launch for one layer (callers checked StagesFor > 0); false where the views are not 16-byte aligned
    private bool LaunchStaged(GpuSpqrLayer w, ArrayView<byte> codes, SpqrDims d, int K, int wpb, int blocks, int stages, ArrayView<float> scratch, ArrayView<float> y)
    {
        if (!StageAddresses(codes, w.Planes.View, scratch, out d.CodesAddr, out d.PlanesAddr, out d.ScratchAddr)) return false;
        d.Stages = stages;
        var k = wpb <= 4
            ? _spqrTcStagedSmall ??= Load<ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<int>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, ArrayView<float>, SpqrDims, int>(SpqrMatVecTcStagedSmall3Kernel)
            : _spqrTcStagedLarge ??= Load<ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<int>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, ArrayView<float>, SpqrDims, int>(SpqrMatVecTcStagedLarge3Kernel);
        k(new KernelConfig(blocks, wpb * 32), codes, w.StatCodes.View, w.Planes.View,
          w.OutlierRowOffsets.View, w.OutlierCols.View, w.OutlierDeltas.View, scratch, y, d, K);
        SpqrStagedLaunches++;
        return true;
    }

    // the same for a grouped launch (layers' views with their addresses set)
    private bool LaunchStagedGroup(ref TcLayerViews a, ref TcLayerViews b, ref TcLayerViews c, SpqrDims d, int K, int wpb, int blocks, int L, int stages)
    {
        if (!StageAddresses(a.Codes, a.Planes, a.Scratch, out a.CodesAddr, out a.PlanesAddr, out a.ScratchAddr)) return false;
        if (!StageAddresses(b.Codes, b.Planes, b.Scratch, out b.CodesAddr, out b.PlanesAddr, out b.ScratchAddr)) return false;
        if (!StageAddresses(c.Codes, c.Planes, c.Scratch, out c.CodesAddr, out c.PlanesAddr, out c.ScratchAddr)) return false;
        d.Stages = stages;
        var k = wpb <= 4
            ? _spqrTcStagedGroupSmall ??= Load<TcLayerViews, TcLayerViews, TcLayerViews, SpqrDims, int, int>(SpqrMatVecTcStagedGroupSmall3Kernel)
            : _spqrTcStagedGroupLarge ??= Load<TcLayerViews, TcLayerViews, TcLayerViews, SpqrDims, int, int>(SpqrMatVecTcStagedGroupLarge3Kernel);
        k(new KernelConfig(L * blocks, wpb * 32), a, b, c, d, K, blocks);
        SpqrStagedLaunches++;
        return true;
    }

    private static void SpqrMatVecTcStagedLarge3Kernel(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<int> offsets,
                                                       ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<float> scratch, ArrayView<float> y, SpqrDims d, int K)
        => SpqrMatVecTcStagedBody(SharedMemory.Allocate<U4>(StageSlotsLarge * StageChunks), codes, statCodes, planes, offsets, ocols, deltas, scratch, y, d, K,
                                  0, d.CodesAddr, d.PlanesAddr, d.ScratchAddr);
    private static void SpqrMatVecTcStagedSmall3Kernel(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<int> offsets,
                                                       ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<float> scratch, ArrayView<float> y, SpqrDims d, int K)
        => SpqrMatVecTcStagedBody(SharedMemory.Allocate<U4>(StageSlotsSmall * StageChunks), codes, statCodes, planes, offsets, ocols, deltas, scratch, y, d, K,
                                  0, d.CodesAddr, d.PlanesAddr, d.ScratchAddr);
    private static void SpqrMatVecTcStagedGroupLarge3Kernel(TcLayerViews a, TcLayerViews b, TcLayerViews c, SpqrDims d, int K, int blocksPerLayer)
        => SpqrMatVecTcStagedGroupBody(SharedMemory.Allocate<U4>(StageSlotsLarge * StageChunks), a, b, c, d, K, blocksPerLayer);
    private static void SpqrMatVecTcStagedGroupSmall3Kernel(TcLayerViews a, TcLayerViews b, TcLayerViews c, SpqrDims d, int K, int blocksPerLayer)
        => SpqrMatVecTcStagedGroupBody(SharedMemory.Allocate<U4>(StageSlotsSmall * StageChunks), a, b, c, d, K, blocksPerLayer);

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void SpqrMatVecTcStagedGroupBody(ArrayView<U4> stage, TcLayerViews a, TcLayerViews b, TcLayerViews c, SpqrDims d, int K, int blocksPerLayer)
    {
        int li = Grid.IdxX / blocksPerLayer;
        var v = li == 0 ? a : li == 1 ? b : c;
        SpqrMatVecTcStagedBody(stage, v.Codes, v.StatCodes, v.Planes, v.Offsets, v.OCols, v.Deltas, v.Scratch, v.Y, d, K, li * blocksPerLayer,
                               v.CodesAddr, v.PlanesAddr, v.ScratchAddr);
    }

    /// <summary>One lane's four chunk copies of a stage: source 16-byte index (into the view of its kind) and byte address
    /// at step 0, their per-step strides, and the kind (0 records, 1 planes, 2 x̃, 3 (xsum, 2^−E), −1 none).</summary>
    internal struct StageCopy
    {
        public long A0, A1, A2, A3;
        public int I0, I1, I2, I3, S0, S1, S2, S3, K2, K3;
    }

    // a 16-byte chunk from global memory (src[si], byte address ga) into stage[di]: cp.async on CUDA (.cg: L2 only, for
    // weights; .ca for activations), a plain copy elsewhere
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void StageChunk(ArrayView<U4> stage, int di, ArrayView<U4> src, int si, long ga, bool weights)
    {
        if (CudaAsm.IsSupported)
        {
            long off = 16L * di;
            if (weights)
                CudaAsm.Emit("{ .reg .u64 s, g; mov.u64 s, " + StagePlaceholder + "; add.u64 s, s, %0; cvta.to.global.u64 g, %1; cp.async.cg.shared.global [s], [g], 16; }", off, ga);
            else
                CudaAsm.Emit("{ .reg .u64 s, g; mov.u64 s, " + StagePlaceholder + "; add.u64 s, s, %0; cvta.to.global.u64 g, %1; cp.async.ca.shared.global [s], [g], 16; }", off, ga);
        }
        else stage[di] = src[si];
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void StageCommit()
    {
        if (CudaAsm.IsSupported) CudaAsm.Emit("cp.async.commit_group;");
    }

    // wait until at most n (a constant 1-3) of this thread's committed groups are pending
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void StageWait(int n)
    {
        if (!CudaAsm.IsSupported) return;
        if (n <= 1) CudaAsm.Emit("cp.async.wait_group 1;");
        else if (n == 2) CudaAsm.Emit("cp.async.wait_group 2;");
        else CudaAsm.Emit("cp.async.wait_group 3;");
    }

    // the weight chunks (records; planes where kind 1) or the activation chunks (x̃, (xsum, 2^−E)) of the lane's copies of
    // step s into slot `slot`
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void StageIssue(ArrayView<U4> stage, int slot, in StageCopy q, int s, bool weights, int lane,
                                   ArrayView<U4> rec, ArrayView<U4> pl, ArrayView<U4> sc)
    {
        int b = slot * StageChunks;
        if (weights)
        {
            StageChunk(stage, b + lane, rec, q.I0 + s * q.S0, q.A0 + 16L * s * q.S0, true);
            StageChunk(stage, b + lane + 32, rec, q.I1 + s * q.S1, q.A1 + 16L * s * q.S1, true);
            if (q.K2 == 1) StageChunk(stage, b + lane + 64, pl, q.I2 + s * q.S2, q.A2 + 16L * s * q.S2, true);
            return;
        }
        if (q.K2 == 2) StageChunk(stage, b + lane + 64, sc, q.I2 + s * q.S2, q.A2 + 16L * s * q.S2, false);
        if (q.K3 >= 2) StageChunk(stage, b + lane + 96, sc, q.I3 + s * q.S3, q.A3 + 16L * s * q.S3, false);
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void SpqrMatVecTcStagedBody(ArrayView<U4> stage, ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<int> offsets,
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
        // the warp's steps: first, first + K, ... < steps
        int n = live && first < steps ? (steps - 1 - first) / K + 1 : 0;
        var rec = codes.Cast<U4>();
        var pl = planes.Cast<U4>();
        var sc = scratch.Cast<U4>();
        // this lane's copies; chunk indices as 16-byte units of their views, strides per super-step (of the global index s)
        int tile = r0 >> 4;
        int recBase = tile * steps * 64, xBase = (padded + 2 * groups) / 4, gBase = padded / 4;
        var q = new StageCopy
        {
            I0 = recBase + lane, S0 = 64,
            I1 = recBase + lane + 32, S1 = 64,
            I2 = lane < 8 ? pg + lane : xBase + lane - 8, S2 = lane < 8 ? 8 : 32, K2 = lane < 8 ? 1 : 2,
            I3 = lane < 8 ? xBase + lane + 24 : gBase + lane - 8, S3 = lane < 8 ? 32 : 4, K3 = lane < 8 ? 2 : lane < 12 ? 3 : -1,
        };
        q.A0 = codesAddr + 16L * q.I0; q.A1 = codesAddr + 16L * q.I1;
        q.A2 = (q.K2 == 1 ? planesAddr : scratchAddr) + 16L * q.I2;
        q.A3 = scratchAddr + 16L * q.I3;
        int slot0 = wi * D;
        // outliers as in the register kernel: the split's first two rows' CSR ranges and entries requested up front
        int orow = Math.Min(r0 + split, last), prow = Math.Min(r0 + split + K, last);
        float acc0 = 0, acc1 = 0, oSum = 0, pSum = 0;
        bool oFirst = live && split < 16, pSecond = live && split + K < 16;
        int o0 = 0, o1 = 0, p0 = 0, p1 = 0;
        // prologue: weights of the first D steps (one group each), then the CSR offsets and entries
        for (int i = 0; i < D; i++)
        {
            if (i < n) StageIssue(stage, slot0 + i, q, first + i * K, true, lane, rec, pl, sc);
            StageCommit();
        }
        if (oFirst) { o0 = offsets[orow]; o1 = offsets[orow + 1]; }
        if (pSecond) { p0 = offsets[prow]; p1 = offsets[prow + 1]; }
        var oPre = oFirst ? OutlierPrefetch(ocols, deltas, o0, o1, lane, 32, OutlierLanes) : default;
        var pPre = pSecond ? OutlierPrefetch(ocols, deltas, p0, p1, lane, 32, OutlierLanes) : default;
        GridWait();
        bool writer = live && split == 0 && lane < 16 && r0 + lane <= last;
        float y0 = d.Accumulate != 0 && writer ? y[r0 + lane] : 0f;
        for (int i = 0; i < D; i++)
        {
            if (i < n) StageIssue(stage, slot0 + i, q, first + i * K, false, lane, rec, pl, sc);
            StageCommit();
        }
        if (oFirst) oSum = OutlierGather(oPre, scratch);
        if (pSecond) pSum = OutlierGather(pPre, scratch);
        var st8 = stage.Cast<ulong>();
        var st4f = stage.Cast<F4>();
        var st2f = stage.Cast<F2>();
        int xi = ((gid & 1) * 4 + t) * 4 + (gid >> 1);
        for (int i = 0; i < n; i++)
        {
            StageWait(D - 1);
            Warp.Barrier();
            int sb = (slot0 + i % D) * StageChunks;
            var l = new TcLoads();
            ulong w0 = st8[2 * sb + lane], w1 = st8[2 * sb + 32 + lane], w2 = st8[2 * sb + 64 + lane], w3 = st8[2 * sb + 96 + lane];
            l.A.A0 = (uint)w0; l.A.A1 = (uint)(w0 >> 32); l.A.A2 = (uint)w1; l.A.A3 = (uint)(w1 >> 32); l.A.A4 = (uint)w2; l.A.A5 = (uint)(w2 >> 32);
            l.A.A6 = (uint)w3; l.A.A7 = (uint)(w3 >> 32);
            l.P0 = st4f[sb + 64 + t]; l.P1 = st4f[sb + 64 + t + 4];
            l.X = stage[sb + 72 + xi];
            l.G0 = st2f[2 * (sb + 104) + t]; l.G1 = st2f[2 * (sb + 104) + t + 4];
            TcComputeLanes(l, d, 3, 1, gid, t, ref acc0, ref acc1);
            Warp.Barrier();
            if (i + D < n)
            {
                int s = first + (i + D) * K;
                StageIssue(stage, slot0 + i % D, q, s, true, lane, rec, pl, sc);
                StageIssue(stage, slot0 + i % D, q, s, false, lane, rec, pl, sc);
            }
            StageCommit();
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
            for (int j = 1; j < K; j++) sum += red[16 * (wi + j) + lane];
            y[r0 + lane] = d.Accumulate != 0 ? y0 + sum : sum;
        }
    }
}

/// <summary>Binds the staged kernels' inline PTX to their stage buffer: ILGPU declares each static shared allocation as
/// <c>.shared .align A .b8 __shared_allocaN[bytes]</c>; the one whose size is a stage capacity (GpuKernels.StageSlotsLarge
/// or StageSlotsSmall slots) is the stage buffer — its alignment raised to 16 (cp.async writes 16 bytes) and its name put
/// where the placeholder stands.</summary>
public static class StagePtx
{
    public static string Bind(string ptx, string kernel)
    {
        var sizes = new[] { GpuKernels.StageSlotsLarge * GpuKernels.StageChunks * 16, GpuKernels.StageSlotsSmall * GpuKernels.StageChunks * 16 };
        var rx = new System.Text.RegularExpressions.Regex(@"\.shared\s+\.align\s+(\d+)\s+\.b8\s+(__shared_alloca\d+)\[(\d+)\];");
        string? name = null;
        string bound = rx.Replace(ptx, m =>
        {
            if (!sizes.Contains(int.Parse(m.Groups[3].Value, System.Globalization.CultureInfo.InvariantCulture))) return m.Value;
            if (name is not null) throw new InvalidOperationException($"kernel {kernel}: two shared allocations of a stage buffer's size; cannot bind {GpuKernels.StagePlaceholder}");
            name = m.Groups[2].Value;
            return $".shared .align 16 .b8 {name}[{m.Groups[3].Value}];";
        });
        if (name is null) throw new InvalidOperationException($"kernel {kernel}: its PTX uses {GpuKernels.StagePlaceholder} but declares no shared allocation of a stage buffer's size ({string.Join(" or ", sizes)} bytes)");
        return bound.Replace(GpuKernels.StagePlaceholder, name, StringComparison.Ordinal);
    }
}
