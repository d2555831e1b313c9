// Grouped SpQR matvecs: y_i = Ŵ_i·x for two or three layers of one shape that read the same x (LLaMA's q/k/v, gate/up)
// in two launches instead of 2·L: one prepare launch writes each layer's x̃ (own permutation, own scratch; one x̃ for
// all where they share the permutation, SpqrGroupSharedInput), then one
// tensor-core launch over lane-major codes whose blocks [i·B, (i+1)·B) are layer i's (B = the single layer's grid) —
// the same kernel body, so the same bits as L separate calls. Against the concurrent branches (GpuBackend.Fork) it
// removes the fork/join edges and gives the card one grid of L·B blocks instead of L grids competing for it.
// Applies where every layer runs the lane-major tensor-core kernel with identical SpqrDims; otherwise the caller
// falls back to separate calls (GpuLinear.Groupable, GpuLlamaModel.Grouped).
using ILGPU;
using ILGPU.Runtime;

namespace SpQR.Gpu;

/// <summary>One layer's device views for a grouped launch.</summary>
public struct TcLayerViews
{
    public ArrayView<byte> Codes, StatCodes;
    public ArrayView<float> Planes;
    public ArrayView<int> Offsets;
    public ArrayView<ushort> OCols;
    public ArrayView<float> Deltas, Scratch, Y;
}

public sealed partial class GpuKernels
{
    /// <summary>Grouped launches for layers of one shape reading the same input (default on; false: the caller's separate
    /// calls, e.g. concurrent branches).</summary>
    public bool SpqrGroupLaunch { get; set; } = true;

    /// <summary>Grouped launches whose layers permute their input alike (q/k/v and gate/up of a model quantized with act
    /// order: one Hessian, one permutation — so in the authors' exports and ours) prepare one x̃ for all of them, in the
    /// first layer's scratch: a prepare launch of one layer's columns instead of L, and one x̃ for the matvec's lanes to
    /// read (the same values either way: the same bits, tested). Off by default: built in the nineteenth session and not
    /// yet timed on a card (no machine started after it was written); `SpQR.GpuBench layer` times both ways.</summary>
    public bool SpqrGroupSharedInput { get; set; }

    /// <summary>Grouped launches queued so far (SpqrMatVecGroup calls; a diagnostic for tests).</summary>
    public long SpqrGroupLaunches { get; private set; }

    private Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>, TcPrepareArgs>? _prepareTcGroup;
    private readonly Action<KernelConfig, TcLayerViews, TcLayerViews, TcLayerViews, SpqrDims, int, int>?[] _spqrTcGroup =
        new Action<KernelConfig, TcLayerViews, TcLayerViews, TcLayerViews, SpqrDims, int, int>?[5];
    private Action<KernelConfig, TcLayerViews, TcLayerViews, TcLayerViews, SpqrDims, int, int>? _spqrTcGroup3Late;

    /// <summary>Whether <see cref="SpqrMatVecGroup"/> takes these layers (2-3 of identical dims, each on the lane-major
    /// tensor-core kernel).</summary>
    public bool SpqrGroupApplies(ReadOnlySpan<GpuSpqrLayer> ws)
    {
        if (!SpqrGroupLaunch || ws.Length is < 2 or > 3) return false;
        foreach (var w in ws)
            if (!TcApplies(w) || !UsesLaneCodes(w) || !w.Dims.Equals(ws[0].Dims)) return false;
        return true;
    }

    /// <summary>ys[i] = Ŵ_i·x for the layers of <see cref="SpqrGroupApplies"/> (throws where it does not apply); scratches[i]
    /// holds ≥ SpqrScratch(ws[i]) floats; norm: the input is RMSNorm(x), computed in the prepare launch (the bits of
    /// separate SpqrMatVec calls with the same norm).</summary>
    public void SpqrMatVecGroup(ReadOnlySpan<GpuSpqrLayer> ws, ArrayView<float> x, ReadOnlySpan<ArrayView<float>> scratches, ReadOnlySpan<ArrayView<float>> ys,
                                InputRmsNorm norm = default)
    {
        if (!SpqrGroupApplies(ws)) throw new ArgumentException("SpqrMatVecGroup: 2-3 layers of identical dims on the lane-major tensor-core kernel");
        int L = ws.Length;
        if (scratches.Length != L || ys.Length != L) throw new ArgumentException($"SpqrMatVecGroup: {L} layers, {scratches.Length} scratches, {ys.Length} outputs");
        var d = ws[0].Dims;
        if (x.Length < d.Cols) throw new ArgumentException($"x holds {x.Length} floats, need {d.Cols}");
        if (norm.IsSet && norm.Weight.Length < d.Cols) throw new ArgumentException($"the input norm's weight holds {norm.Weight.Length} floats, need {d.Cols}");
        for (int i = 0; i < L; i++)
        {
            CheckSpqrScratch(ws[i], scratches[i]);
            if (ys[i].Length < d.Rows) throw new ArgumentException($"y {i} holds {ys[i].Length} floats, need {d.Rows}");
        }
        // layers with one permutation share one x̃ (the first layer's scratch): one prepare of one layer instead of L
        bool shared = SpqrGroupSharedInput;
        for (int i = 1; i < L && shared; i++) shared = ws[i].SamePermutation(ws[0]);
        int P = shared ? 1 : L;
        int n = d.Groups * 16, blk = Math.Min(256, _acc.MaxNumThreadsPerGroup);
        _prepareTcGroup ??= Load<ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>, TcPrepareArgs>(SpqrPrepareTcGroupKernel);
        var p2 = L > 2 ? ws[2].Perm.View : ws[1].Perm.View;
        var s2 = L > 2 ? scratches[2] : scratches[1];
        _prepareTcGroup(new KernelConfig((P * n + blk - 1) / blk, blk), x, norm.IsSet ? norm.Weight : x, ws[0].Perm.View, ws[1].Perm.View, p2,
                        scratches[0], scratches[1], s2, PrepareArgs(d, P, norm, lanes: true));
        var (K, wpb, blocks) = TcGrid(d, lanes: true, L);
        d.StepOrder = SpqrTcStepOrderReversed ? 1 : 0;
        var va = Views(ws[0], scratches[0], ys[0]); var vb = Views(ws[1], scratches[shared ? 0 : 1], ys[1]);
        var vc = L > 2 ? Views(ws[2], scratches[shared ? 0 : 2], ys[2]) : vb;
        var k = LaneSlot(d) == 3 && SpqrTcLateGather
            ? _spqrTcGroup3Late ??= Load<TcLayerViews, TcLayerViews, TcLayerViews, SpqrDims, int, int>(SpqrMatVecTcLanesGroup3LateKernel)
            : _spqrTcGroup[LaneSlot(d)] ??= Load<TcLayerViews, TcLayerViews, TcLayerViews, SpqrDims, int, int>(
            LaneSlot(d) switch { 0 => SpqrMatVecTcLanesGroupMagic3Kernel, 2 => SpqrMatVecTcLanesGroup2Kernel, 3 => SpqrMatVecTcLanesGroup3Kernel, _ => SpqrMatVecTcLanesGroup4Kernel });
        k(new KernelConfig(L * blocks, wpb * 32), va, vb, vc, d, K, blocks);
        SpqrGroupLaunches++;
    }

    private static TcLayerViews Views(GpuSpqrLayer w, ArrayView<float> scratch, ArrayView<float> y) => new()
    {
        Codes = w.LaneCodeBytes, StatCodes = w.StatCodes.View, Planes = w.Planes.View,
        Offsets = w.OutlierRowOffsets.View, OCols = w.OutlierCols.View, Deltas = w.OutlierDeltas.View, Scratch = scratch, Y = y,
    };

    // one thread per (layer, column) of L·16·G: layer i's x' = x[perm_i[c]] (or of RMSNorm(x): PreparedInput) and x̃ into
    // scratch i (SpqrPrepareTcBody); warps never straddle layers (16·G is a multiple of 128)
    private static void SpqrPrepareTcGroupKernel(ArrayView<float> x, ArrayView<float> normW, ArrayView<int> perm0, ArrayView<int> perm1, ArrayView<int> perm2,
                                                 ArrayView<float> s0, ArrayView<float> s1, ArrayView<float> s2, TcPrepareArgs a)
    {
        int groups = (a.Cols + 15) / 16 + 7 & ~7, n = groups * 16;
        int g = Grid.GlobalIndex.X, li = g / n, c = g - li * n;
        bool live = li < a.Layers;
        if (!live) c = n; // past every layer: joins the warp's shuffles (and the block's norm), writes nothing
        var perm = li == 0 ? perm0 : li == 1 ? perm1 : perm2;
        var s = li == 0 ? s0 : li == 1 ? s1 : s2;
        SpqrPrepareTcBody(PreparedInput(x, perm, normW, a, c, live && c < a.Cols), s, a.Cols, a.WBits, c, a.Layout);
    }

    private static void SpqrMatVecTcLanesGroup2Kernel(TcLayerViews a, TcLayerViews b, TcLayerViews c, SpqrDims d, int K, int blocksPerLayer)
        => SpqrMatVecTcGroupBody(a, b, c, d, K, blocksPerLayer, 2);
    private static void SpqrMatVecTcLanesGroup3Kernel(TcLayerViews a, TcLayerViews b, TcLayerViews c, SpqrDims d, int K, int blocksPerLayer)
        => SpqrMatVecTcGroupBody(a, b, c, d, K, blocksPerLayer, 3, 1);
    private static void SpqrMatVecTcLanesGroup3LateKernel(TcLayerViews a, TcLayerViews b, TcLayerViews c, SpqrDims d, int K, int blocksPerLayer)
        => SpqrMatVecTcGroupBody(a, b, c, d, K, blocksPerLayer, 3, 1, late: true);
    private static void SpqrMatVecTcLanesGroupMagic3Kernel(TcLayerViews a, TcLayerViews b, TcLayerViews c, SpqrDims d, int K, int blocksPerLayer)
        => SpqrMatVecTcGroupBody(a, b, c, d, K, blocksPerLayer, 3);
    private static void SpqrMatVecTcLanesGroup4Kernel(TcLayerViews a, TcLayerViews b, TcLayerViews c, SpqrDims d, int K, int blocksPerLayer)
        => SpqrMatVecTcGroupBody(a, b, c, d, K, blocksPerLayer, 4);

    // block i·B + j runs block j of layer i's own launch
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void SpqrMatVecTcGroupBody(TcLayerViews a, TcLayerViews b, TcLayerViews c, SpqrDims d, int K, int blocksPerLayer, int bits, int layout = 0, bool late = false)
    {
        int li = Grid.IdxX / blocksPerLayer;
        var v = li == 0 ? a : li == 1 ? b : c;
        SpqrMatVecTcBody(v.Codes, v.StatCodes, v.Planes, v.Offsets, v.OCols, v.Deltas, v.Scratch, v.Y, d, K, bits, false, true, true,
                         GpuSpqrLayer.LaneWords(bits), true, li * blocksPerLayer, layout, late);
    }
}
