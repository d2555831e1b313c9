// Batched SpQR product Y (T, rows) = X (T, cols) · Ŵᵀ on the tensor cores: the prefill form of GpuKernels.SpqrTc.cs
// (same A fragments — codes to fp16 pairs in place — and the same float32-class fp16 hi/lo split of x, now per token).
// Opt-in: measured on the H200 (seventh session) SLOWER than the float32 SpQR GEMM (GpuKernels.MatMul.cs) at T = 64
// and 256 on 4096x4096, 11008x4096 and 4096x11008 (e.g. 248.6 against 202.3 µs, 4096², T = 64; 182 registers);
// tested on ILGPU's CPU accelerator emulating a 32-lane device against the CPU matmul. Over the lane-major copy of the
// codes (SpqrTcMatMulLanes; the statistics fields come from the records, shared across each quad by shuffles) it is
// within -14% / +5% of the float32 GEMM (ninth session, run 7), and it is what runs layers uploaded without their
// format's codes (GpuSpqrLayer formatCodes: false).
//
// x̃ per token: GatherRowsKernel writes X' (T, 16·G) through the permutation (also what the outlier pass reads), then
// SpqrFragmentsKernel, one thread per (token, column): per (token, group) xsum and 2^−E (max |x'| in [2^14, 2^15)), and
// the fp16 hi/lo of x'·2^E·2^−p into the lane slots: uint2 ((g·T + token)·2 + hl)·4 + t holds (b0, b1) of group g for
// the B column of that token and part (hl = 0: hi, 1: lo), lane quad position t.
// One warp = 16 rows (a β2 row group) × 8 tokens (two blocks of 4, B columns 2u, 2u+1 = token u's hi, lo), every group:
// per group the A fragments and the two rows' (s, z) once, then one mma per token block; lane (gid, t) ends with token
// t's dot for rows gid and gid + 8 and applies s·(dot·2^−E − z·xsum) with that token's statistics. A block is 4 warps
// on one row tile (32 tokens; the codes are shared through L1); grid (row tiles, token blocks of 32). Outliers after,
// through SpqrOutlierKernel as the float32 path.
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace SpQR.Gpu;

public sealed partial class GpuKernels
{
    /// <summary>Batched SpQR products on the tensor cores where TcApplies' shape rules hold (off by default: measured
    /// slower than the float32 SpQR GEMM on the H200, bench/README.md, GPU seventh session).</summary>
    public bool SpqrTcMatMul { get; set; }
    private Action<KernelConfig, ArrayView<float>, ArrayView<float>, int, int, int, int>? _fragments;
    private readonly Action<KernelConfig, ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<float>, ArrayView<float>, SpqrDims, int>?[] _tcGemm =
        new Action<KernelConfig, ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<float>, ArrayView<float>, SpqrDims, int>?[5];
    private readonly Action<KernelConfig, ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<float>, ArrayView<float>, SpqrDims, int>?[] _tcGemmLanes =
        new Action<KernelConfig, ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<float>, ArrayView<float>, SpqrDims, int>?[5];

    /// <summary>Experiment: the batched product on the tensor cores over a layer's lane-major codes where it has them
    /// (GpuSpqrLayer.LaneCodes; the fragments as the matvec reads them, statistics fields from the records shared by
    /// shuffles).</summary>
    public bool SpqrTcMatMulLanes { get; set; }

    private bool TcGemmApplies(GpuSpqrLayer w) => (SpqrTcMatMul || TcGemmLanes(w)) && _acc.WarpSize == 32 && TcShape(w.Dims);

    // the lane-major batched product: asked for, or the only one a layer without its format codes allows
    private bool TcGemmLanes(GpuSpqrLayer w) => w.LaneCodes is not null && (SpqrTcMatMulLanes || !w.HasFormatCodes) && _acc.WarpSize == 32;

    /// <summary>Device floats the tensor-core batched product needs beyond X': (xsum, 2^−E) (T, G, 2) and the fragments
    /// (T·16·G halves·2 parts = T·16·G floats).</summary>
    private static long TcGemmExtra(SpqrDims d, int T) => (long)T * d.Groups * 2 + (long)T * d.Groups * 16;

    // Y (T, rows) = X · Ŵᵀ on the tensor cores; xp = X' already gathered (T, padded); extra ≥ TcGemmExtra floats
    private void SpqrMatMulTc(GpuSpqrLayer w, ArrayView<float> xp, int T, ArrayView<float> Y, ArrayView<float> extra)
    {
        var d = w.Dims;
        int padded = d.Groups * 16, blk = Math.Min(256, _acc.MaxNumThreadsPerGroup);
        _fragments ??= Load<ArrayView<float>, ArrayView<float>, int, int, int, int>(SpqrFragmentsKernel);
        long n = (long)T * padded;
        bool lanes = TcGemmLanes(w);
        _fragments(new KernelConfig((int)((n + blk - 1) / blk), blk), xp, extra, T, d.WBits, d.Groups, lanes ? d.LaneLayout : 0);
        var k = lanes
            ? _tcGemmLanes[LaneSlot(d)] ??= Load<ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<float>, ArrayView<float>, SpqrDims, int>(
                LaneSlot(d) switch { 0 => SpqrTcGemmLanesMagic3Kernel, 2 => SpqrTcGemmLanes2Kernel, 3 => SpqrTcGemmLanes3Kernel, _ => SpqrTcGemmLanes4Kernel })
            : _tcGemm[d.WBits] ??= Load<ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<float>, ArrayView<float>, SpqrDims, int>(
                d.WBits switch { 2 => SpqrTcGemm2Kernel, 3 => SpqrTcGemm3Kernel, _ => SpqrTcGemm4Kernel });
        ArrayView<byte> codes = lanes ? w.LaneCodeBytes : w.Codes.View;
        int tiles = (d.Rows + 15) / 16, tokenBlocks = (T + 31) / 32;
        k(new KernelConfig(new Index2D(tiles, tokenBlocks), new Index2D(128, 1)), codes, w.StatCodes.View, w.Planes.View, extra, Y, d, T);
    }

    // thread per (token, column) of X' (T, 16·G): per (token, group) xsum and 2^−E, and the fp16 hi/lo slots (file
    // header)
    private static void SpqrFragmentsKernel(ArrayView<float> xp, ArrayView<float> extra, int T, int b, int groups, int layout)
    {
        long i = Grid.GlobalIndex.X;
        int padded = groups * 16;
        bool inside = i < (long)T * padded;
        float v = inside ? xp[i] : 0f;
        GroupMaxSum16(v, out float m, out float sum);
        if (!inside) return;
        int tok = (int)(i / padded), c = (int)(i % padded), g = c >> 4, k = c & 15;
        TcSplit(v, m, b, k, g & 7, layout, out ushort hi, out ushort lo, out float inv, out int half4);
        long gs = 2 * ((long)tok * groups + g);
        if (k == 0) { extra[gs] = sum; extra[gs + 1] = inv; }
        var h16 = extra.SubView(2L * T * groups).Cast<ushort>();
        long slot = (((long)g * T + tok) * 2 * 4 + (k & 3)) * 4 + half4; // hl = 0
        h16[slot] = hi;
        h16[slot + 16] = lo;                                               // hl = 1: 4 lanes × 4 halves further
    }

    private static void SpqrTcGemm2Kernel(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<float> extra, ArrayView<float> Y, SpqrDims d, int T)
        => SpqrTcGemmBody(codes, statCodes, planes, extra, Y, d, T, 2, false);
    private static void SpqrTcGemm3Kernel(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<float> extra, ArrayView<float> Y, SpqrDims d, int T)
        => SpqrTcGemmBody(codes, statCodes, planes, extra, Y, d, T, 3, false);
    private static void SpqrTcGemm4Kernel(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<float> extra, ArrayView<float> Y, SpqrDims d, int T)
        => SpqrTcGemmBody(codes, statCodes, planes, extra, Y, d, T, 4, false);
    // over GpuSpqrLayer.LaneCodes (passed as codes; statCodes unused)
    private static void SpqrTcGemmLanes2Kernel(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<float> extra, ArrayView<float> Y, SpqrDims d, int T)
        => SpqrTcGemmBody(codes, statCodes, planes, extra, Y, d, T, 2, true);
    private static void SpqrTcGemmLanes3Kernel(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<float> extra, ArrayView<float> Y, SpqrDims d, int T)
        => SpqrTcGemmBody(codes, statCodes, planes, extra, Y, d, T, 3, true, 1);
    private static void SpqrTcGemmLanesMagic3Kernel(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<float> extra, ArrayView<float> Y, SpqrDims d, int T)
        => SpqrTcGemmBody(codes, statCodes, planes, extra, Y, d, T, 3, true);
    private static void SpqrTcGemmLanes4Kernel(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<float> extra, ArrayView<float> Y, SpqrDims d, int T)
        => SpqrTcGemmBody(codes, statCodes, planes, extra, Y, d, T, 4, true);

    // lanes (a constant): codes are lane-major records — per super-step the lane's W words hold its A fragments of the 8
    // groups and its statistics fields (groups t and t + 4 of rows gid and gid + 8), which the lanes of the row pair's
    // quad share by four shuffles of the fields packed in one int; else the format's code rows and statCodes
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void SpqrTcGemmBody(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<float> extra, ArrayView<float> Y, SpqrDims d, int T, int b, bool lanes, int layout = 0)
    {
        int lane = Warp.LaneIdx, gid = lane >> 2, t = lane & 3, mine = gid >> 1, hl = gid & 1;
        int r0 = 16 * Grid.IdxX, last = d.Rows - 1;
        int tok0 = 32 * Grid.IdxY + 8 * Warp.WarpIdx; // this warp's 8 tokens: blocks tok0..tok0+3, tok0+4..tok0+7
        if (r0 > last) return;
        int ra = Math.Min(r0 + gid, last), rb = Math.Min(r0 + gid + 8, last);
        int groups = d.Groups, steps = groups / 8, F = d.StatBits, qs = d.ScaleBits, fm = (1 << F) - 1, W = GpuSpqrLayer.LaneWords(b);
        var c4 = codes.Cast<U4>().AsAligned(16);
        var c8 = codes.Cast<ulong>().AsAligned(8);
        var p4 = planes.Cast<F4>().AsAligned(16);
        var gst = extra.Cast<F2>().AsAligned(8);
        var x2 = extra.SubView(2L * T * groups).Cast<U2>().AsAligned(8);
        int pg = r0 / d.QqGroupSize * groups;
        uint mask = TcMask(b), magic = d.F16Magic;
        // B operand tokens of this lane (its column pair) in each block, and the token whose dots it ends with
        int bt0 = tok0 + mine, bt1 = tok0 + 4 + mine, ot0 = tok0 + t, ot1 = tok0 + 4 + t;
        float a00 = 0, a01 = 0, a10 = 0, a11 = 0; // [token block][row gid, gid + 8]
        int at0 = (r0 >> 4) * steps * 32 * W + lane;
        for (int s = 0; s < steps; s++)
        {
            if (lanes)
            {
                int at = at0 + 32 * W * s;
                ulong w0 = c8[at], w1 = c8[at + 32], w2 = W > 2 ? c8[at + 64] : 0ul, w3 = W > 3 ? c8[at + 96] : 0ul, w4 = W > 4 ? c8[at + 128] : 0ul;
                TcLaneFields(w0, w1, w2, w3, w4, b, layout, F, qs, out int fa0, out int fb0, out int fa1, out int fb1);
                int mineF = fa0 | (fb0 << 8) | (fa1 << 16) | (fb1 << 24);
                int q0 = Warp.Shuffle(mineF, 4 * gid), q1 = Warp.Shuffle(mineF, 4 * gid + 1), q2 = Warp.Shuffle(mineF, 4 * gid + 2), q3 = Warp.Shuffle(mineF, 4 * gid + 3);
                TcGemmLaneGroup(w0, w1, w2, w3, b, layout, 0, q0, 8 * s, mask, magic, p4, gst, x2, d, pg, qs, T, hl, bt0, bt1, ot0, ot1, ref a00, ref a01, ref a10, ref a11);
                TcGemmLaneGroup(w0, w1, w2, w3, b, layout, 1, q1, 8 * s + 1, mask, magic, p4, gst, x2, d, pg, qs, T, hl, bt0, bt1, ot0, ot1, ref a00, ref a01, ref a10, ref a11);
                TcGemmLaneGroup(w0, w1, w2, w3, b, layout, 2, q2, 8 * s + 2, mask, magic, p4, gst, x2, d, pg, qs, T, hl, bt0, bt1, ot0, ot1, ref a00, ref a01, ref a10, ref a11);
                TcGemmLaneGroup(w0, w1, w2, w3, b, layout, 3, q3, 8 * s + 3, mask, magic, p4, gst, x2, d, pg, qs, T, hl, bt0, bt1, ot0, ot1, ref a00, ref a01, ref a10, ref a11);
                TcGemmLaneGroup(w0, w1, w2, w3, b, layout, 4, q0 >> 16, 8 * s + 4, mask, magic, p4, gst, x2, d, pg, qs, T, hl, bt0, bt1, ot0, ot1, ref a00, ref a01, ref a10, ref a11);
                TcGemmLaneGroup(w0, w1, w2, w3, b, layout, 5, q1 >> 16, 8 * s + 5, mask, magic, p4, gst, x2, d, pg, qs, T, hl, bt0, bt1, ot0, ot1, ref a00, ref a01, ref a10, ref a11);
                TcGemmLaneGroup(w0, w1, w2, w3, b, layout, 6, q2 >> 16, 8 * s + 6, mask, magic, p4, gst, x2, d, pg, qs, T, hl, bt0, bt1, ot0, ot1, ref a00, ref a01, ref a10, ref a11);
                TcGemmLaneGroup(w0, w1, w2, w3, b, layout, 7, q3 >> 16, 8 * s + 7, mask, magic, p4, gst, x2, d, pg, qs, T, hl, bt0, bt1, ot0, ot1, ref a00, ref a01, ref a10, ref a11);
                continue;
            }
            U16 wa = default, wc = default;
            TcCodeWords(c4, ra * (d.RowBytes >> 4) + s * b, rb * (d.RowBytes >> 4) + s * b, b, ref wa, ref wc);
            var sa = TcShift(wa, b, b * t);
            var sc = TcShift(wc, b, b * t);
            TcGemmGroup(sa, sc, b, 0, 8 * s, mask, magic, statCodes, p4, gst, x2, d, pg, ra, rb, F, fm, qs, T, hl, bt0, bt1, ot0, ot1, ref a00, ref a01, ref a10, ref a11);
            TcGemmGroup(sa, sc, b, 1, 8 * s + 1, mask, magic, statCodes, p4, gst, x2, d, pg, ra, rb, F, fm, qs, T, hl, bt0, bt1, ot0, ot1, ref a00, ref a01, ref a10, ref a11);
            TcGemmGroup(sa, sc, b, 2, 8 * s + 2, mask, magic, statCodes, p4, gst, x2, d, pg, ra, rb, F, fm, qs, T, hl, bt0, bt1, ot0, ot1, ref a00, ref a01, ref a10, ref a11);
            TcGemmGroup(sa, sc, b, 3, 8 * s + 3, mask, magic, statCodes, p4, gst, x2, d, pg, ra, rb, F, fm, qs, T, hl, bt0, bt1, ot0, ot1, ref a00, ref a01, ref a10, ref a11);
            TcGemmGroup(sa, sc, b, 4, 8 * s + 4, mask, magic, statCodes, p4, gst, x2, d, pg, ra, rb, F, fm, qs, T, hl, bt0, bt1, ot0, ot1, ref a00, ref a01, ref a10, ref a11);
            TcGemmGroup(sa, sc, b, 5, 8 * s + 5, mask, magic, statCodes, p4, gst, x2, d, pg, ra, rb, F, fm, qs, T, hl, bt0, bt1, ot0, ot1, ref a00, ref a01, ref a10, ref a11);
            TcGemmGroup(sa, sc, b, 6, 8 * s + 6, mask, magic, statCodes, p4, gst, x2, d, pg, ra, rb, F, fm, qs, T, hl, bt0, bt1, ot0, ot1, ref a00, ref a01, ref a10, ref a11);
            TcGemmGroup(sa, sc, b, 7, 8 * s + 7, mask, magic, statCodes, p4, gst, x2, d, pg, ra, rb, F, fm, qs, T, hl, bt0, bt1, ot0, ot1, ref a00, ref a01, ref a10, ref a11);
        }
        // lane (gid, t) holds token ot0's and ot1's sums for rows gid and gid + 8: stored once per (token, row)
        if (ot0 < T) { if (r0 + gid <= last) Y[(long)ot0 * d.Rows + r0 + gid] = a00; if (r0 + gid + 8 <= last) Y[(long)ot0 * d.Rows + r0 + gid + 8] = a01; }
        if (ot1 < T) { if (r0 + gid <= last) Y[(long)ot1 * d.Rows + r0 + gid] = a10; if (r0 + gid + 8 <= last) Y[(long)ot1 * d.Rows + r0 + gid + 8] = a11; }
    }

    // group j of a lane-major record: its A fragment, and the rows' fields from f (fa in bits 0-7, fb in bits 8-15)
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void TcGemmLaneGroup(ulong w0, ulong w1, ulong w2, ulong w3, int b, int layout, int j, int f, int g, uint mask, uint magic, ArrayView<F4> p4, ArrayView<F2> gst,
                                        ArrayView<U2> x2, SpqrDims d, int pg, int qs, int T, int hl, int bt0, int bt1, int ot0, int ot1,
                                        ref float a00, ref float a01, ref float a10, ref float a11)
    {
        TcLanePairs(w0, w1, w2, w3, b, layout, j, mask, magic, out uint f0, out uint f1, out uint f2, out uint f3);
        TcGemmApply(f0, f1, f2, f3, f & 0xFF, (f >> 8) & 0xFF, g, p4, gst, x2, d, pg, qs, T, hl, bt0, bt1, ot0, ot1, ref a00, ref a01, ref a10, ref a11);
    }

    // group g (j-th of its super-step) for both rows and both token blocks: A once, (s, z) of the two rows once, one mma
    // per token block, each lane's token statistics applied to its dots
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void TcGemmGroup(U16 sa, U16 sc, int b, int j, int g, uint mask, uint magic, ArrayView<byte> statCodes, ArrayView<F4> p4, ArrayView<F2> gst,
                                    ArrayView<U2> x2, SpqrDims d, int pg, int ra, int rb, int F, int fm, int qs, int T, int hl, int bt0, int bt1, int ot0, int ot1,
                                    ref float a00, ref float a01, ref float a10, ref float a11)
    {
        int atA = b == 3 ? 48 * j - 4 : b == 4 ? 64 * j : 32 * j;
        int atB = b == 3 ? 48 * j + 20 : b == 4 ? 64 * j + 32 : 32 * j + 8;
        uint f0 = Hsub1024((TcBits(sa, atA) & mask) | magic), f1 = Hsub1024((TcBits(sc, atA) & mask) | magic);
        uint f2 = Hsub1024((TcBits(sa, atB) & mask) | magic), f3 = Hsub1024((TcBits(sc, atB) & mask) | magic);
        long bitA = (long)ra * d.StatRowBytes * 8 + (long)g * F, bitB = (long)rb * d.StatRowBytes * 8 + (long)g * F;
        int fa = ((statCodes[bitA >> 3] | (statCodes[(bitA >> 3) + 1] << 8)) >> (int)(bitA & 7)) & fm;
        int fb = ((statCodes[bitB >> 3] | (statCodes[(bitB >> 3) + 1] << 8)) >> (int)(bitB & 7)) & fm;
        TcGemmApply(f0, f1, f2, f3, fa, fb, g, p4, gst, x2, d, pg, qs, T, hl, bt0, bt1, ot0, ot1, ref a00, ref a01, ref a10, ref a11);
    }

    // group g's A fragment (f0..f3) and the two rows' statistics fields: one mma per token block, each lane's token
    // statistics applied to its dots
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void TcGemmApply(uint f0, uint f1, uint f2, uint f3, int fa, int fb, int g, ArrayView<F4> p4, ArrayView<F2> gst,
                                    ArrayView<U2> x2, SpqrDims d, int pg, int qs, int T, int hl, int bt0, int bt1, int ot0, int ot1,
                                    ref float a00, ref float a01, ref float a10, ref float a11)
    {
        int t = Warp.LaneIdx & 3;
        long slot0 = (((long)g * T + bt0) * 2 + hl) * 4 + t, slot1 = (((long)g * T + bt1) * 2 + hl) * 4 + t;
        U2 xb0 = bt0 < T ? x2[slot0] : default, xb1 = bt1 < T ? x2[slot1] : default;
        F2 g0 = ot0 < T ? gst[(long)ot0 * d.Groups + g] : default, g1 = ot1 < T ? gst[(long)ot1 * d.Groups + g] : default;
        var p = p4[pg + g];
        float c0 = 0, c1 = 0, c2 = 0, c3 = 0, e0 = 0, e1 = 0, e2 = 0, e3 = 0;
        Mma16816(f0, f1, f2, f3, xb0.X, xb0.Y, ref c0, ref c1, ref c2, ref c3);
        Mma16816(f0, f1, f2, f3, xb1.X, xb1.Y, ref e0, ref e1, ref e2, ref e3);
        TcApply(p, g0, fa, fb, qs, c0 + c1, c2 + c3, ref a00, ref a01);
        TcApply(p, g1, fa, fb, qs, e0 + e1, e2 + e3, ref a10, ref a11);
    }
}
