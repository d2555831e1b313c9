// Fused SpQR matvec y = Ŵ·x straight from the stored form, never materialising Ŵ:
//   x' = x gathered through the permutation once per call (zero-padded to whole groups), xsum_g = Σ x' over group g;
//   per row r and group g: y_r += s·(Σ_k code_k·x'_k) − s·z·xsum_g, then the CSR outliers add (v − ŵ_code)·x'_c.
// Codes decode 8 at a time from one broadcast 32-bit load and a per-lane mask (no shift: x' is pre-scaled per lane
// by 2^−(b·i), exact), four rows per pass sharing the loads of x'. Vector512 path (a whole group of 16 codes per
// vector) and Vector256 path (two half-groups) for wbits 2..4, scalar path for any wbits. Threaded over 64-row
// blocks (fixed partition: results do not depend on the thread count).
// Batched Y = Ŵ·X (prefill, T > 1): each tile of rows is dequantized once into L2 and multiplied with all T tokens
// by the packed GEMM, so decoding costs 1/T per token.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using SpQR.Quant.Formats;
using SpQR.Tensors.Cpu;

namespace SpQR.Quant.Decode;

public static unsafe class SpqrMatVec
{
    private const int RowBlock = 64;

    // The default matvec path: Vector256 wherever AVX2 exists (prefill keeps the widest GEMM). The Vector512 kernel (one group per vector) was measured no faster
    // on the only AVX-512 machine at hand (16-core Xeon VM, 11008x4096 w3: 7.3-7.6 ms against 6.8-7.7 ms at 1 thread,
    // 1.36-1.47 against 1.35-1.38 ms at 16; bench/README.md), so it runs only when asked for (tests run every path).
    internal static SimdPath Preferred { get; } = Avx2.IsSupported && Simd.Best == SimdPath.V512 ? SimdPath.V256 : Simd.Best;

    // W (rows, cols) in SpQR form @ x (cols,) -> y (rows,)
    public static void MatVec(SpqrLayer w, ReadOnlySpan<float> x, Span<float> y) => MatMul(w, x, y, 1, Preferred);

    // W @ X (T, cols) -> Y (T, rows)
    public static void MatMul(SpqrLayer w, ReadOnlySpan<float> X, Span<float> Y, int T) => MatMul(w, X, Y, T, T == 1 ? Preferred : Simd.Best);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static unsafe void MatMul(SpqrLayer w, ReadOnlySpan<float> X, Span<float> Y, int T, SimdPath path)
    {
        int rows = w.Rows, cols = w.Cols, groups = w.Groups, padded = groups * SpqrLayer.GroupSize;
        if (X.Length < (long)T * cols) throw new ArgumentException($"X holds {X.Length} values, expected {T}x{cols}");
        if (Y.Length < (long)T * rows) throw new ArgumentException($"Y holds {Y.Length} values, expected {T}x{rows}");
        // x' (T, padded, zero past cols) and xsum (T, groups), pooled: no allocation per token
        var pool = System.Buffers.ArrayPool<float>.Shared;
        var xp = pool.Rent(T * padded);
        var xsum = pool.Rent(T * groups);
        var ys = pool.Rent(T * rows);
        try
        {
            for (int t = 0; t < T; t++)
            {
                var xt = X.Slice(t * cols, cols);
                for (int c = 0; c < cols; c++) xp[(long)t * padded + c] = xt[w.Perm[c]];
                xp.AsSpan(t * padded + cols, padded - cols).Clear();
                for (int g = 0; g < groups; g++) xsum[(long)t * groups + g] = CpuKernels.Sum(xp.AsSpan(t * padded + g * SpqrLayer.GroupSize, SpqrLayer.GroupSize));
            }
            Run(w, xp, xsum, ys, T, path);
            ys.AsSpan(0, T * rows).CopyTo(Y);
        }
        finally
        {
            pool.Return(xp); pool.Return(xsum); pool.Return(ys);
        }
    }

    private static void Run(SpqrLayer w, float[] xp, float[] xsum, float[] ys, int T, SimdPath path)
    {
        int rows = w.Rows, cols = w.Cols, padded = w.Groups * SpqrLayer.GroupSize;
        bool fast = path >= SimdPath.V256 && Avx2.IsSupported && w.WBits <= 4; // per-lane masks and shifts: AVX2 (other ISAs take the scalar path)
        if (T == 1)
        {
            int blocks = (rows + RowBlock - 1) / RowBlock;
            if (w.Fp16Arithmetic)
            {
                // fp16-step decode (layers converted from the authors' export): a per-group table of the 2^b values
                Action<int> lut = fast && w.WBits == 3 ? b => RowsLutV256(w, xp, ys, b * RowBlock, Math.Min(rows, b * RowBlock + RowBlock))
                                                       : b => RowsScalar(w, xp, ys, b * RowBlock, Math.Min(rows, b * RowBlock + RowBlock));
                if ((long)rows * cols < 1 << 16) for (int b = 0; b < blocks; b++) lut(b); else CpuThreads.For(blocks, lut);
                return;
            }
            bool v512 = path == SimdPath.V512 && w.WBits is >= 2 and <= 4;
            if (v512 || (fast && w.WBits >= 2))
            {
                // the decode hot path: x̃ = x' pre-scaled per lane so that a mask replaces the per-lane shift (see IHalfDecode)
                var pool = System.Buffers.ArrayPool<float>.Shared;
                var xt = pool.Rent(padded);
                try
                {
                    var scale = v512 ? LaneScale512[w.WBits] : LaneScale[w.WBits];
                    for (int c = 0; c < padded; c++) xt[c] = xp[c] * scale[c & 7];
                    Action<int> body = (v512, w.WBits) switch
                    {
                        (true, 4) => b => RowsSimd<Rows4V512<W4>>(w, xt, xp, xsum, ys, b * RowBlock, Math.Min(rows, b * RowBlock + RowBlock)),
                        (true, 3) => b => RowsSimd<Rows4V512<W3>>(w, xt, xp, xsum, ys, b * RowBlock, Math.Min(rows, b * RowBlock + RowBlock)),
                        (true, _) => b => RowsSimd<Rows4V512<W2>>(w, xt, xp, xsum, ys, b * RowBlock, Math.Min(rows, b * RowBlock + RowBlock)),
                        (_, 4) => b => RowsSimd<Rows4V256<W4>>(w, xt, xp, xsum, ys, b * RowBlock, Math.Min(rows, b * RowBlock + RowBlock)),
                        (_, 3) => b => RowsSimd<Rows4V256<W3>>(w, xt, xp, xsum, ys, b * RowBlock, Math.Min(rows, b * RowBlock + RowBlock)),
                        _ => b => RowsSimd<Rows4V256<W2>>(w, xt, xp, xsum, ys, b * RowBlock, Math.Min(rows, b * RowBlock + RowBlock)),
                    };
                    if ((long)rows * cols < 1 << 16) for (int b = 0; b < blocks; b++) body(b); else CpuThreads.For(blocks, body);
                }
                finally { pool.Return(xt); }
                return;
            }
            Action<int> scalar = b => RowsScalar(w, xp, ys, b * RowBlock, Math.Min(rows, b * RowBlock + RowBlock));
            if ((long)rows * cols < 1 << 16) for (int b = 0; b < blocks; b++) scalar(b); else CpuThreads.For(blocks, scalar);
            return;
        }
        // prefill: per tile of rows, dequantize Ŵ once (exactly the reference values, permuted column order) and multiply
        // it with all T tokens through the packed GEMM; the tile stays in L2 while the GEMM streams the tokens past it
        int tileRows = Math.Clamp((1 << 19) / Math.Max(cols, 1) / 16 * 16, 16, 256); // 2 MB of dequantized tile: L3-resident, enough columns per GEMM call
        int tiles = (rows + tileRows - 1) / tileRows;
        Action<int> tile = t =>
        {
            int r0 = t * tileRows, n = Math.Min(tileRows, rows - r0);
            var buf = System.Buffers.ArrayPool<float>.Shared.Rent(n * cols);
            try
            {
                DequantizeRows(w, r0, r0 + n, buf, fast);
                CpuKernels.Gemm(xp, false, padded, System.Runtime.InteropServices.MemoryMarshal.AsBytes(buf.AsSpan(0, n * cols)), WeightType.F32, true, cols,
                                ys.AsSpan(r0), rows, T, n, cols, false, path, threaded: false);
            }
            finally { System.Buffers.ArrayPool<float>.Shared.Return(buf); }
        };
        if ((long)rows * cols * T < 1 << 18) for (int t = 0; t < tiles; t++) tile(t); else CpuThreads.For(tiles, tile);
    }

    // Ŵ rows [r0, r1) in permuted column order into dst (r1 − r0, cols): s·(code − z) in float32 exactly as
    // SpqrLayer.Dequantize computes it, outliers replaced by their kept values
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static unsafe void DequantizeRows(SpqrLayer w, int r0, int r1, float[] dst, bool fast)
    {
        int cols = w.Cols, groups = w.Groups, bits = w.WBits, gb = w.GroupBytes;
        Span<float> s = stackalloc float[groups];
        Span<float> z = stackalloc float[groups];
        var shift = Shifts[Math.Min(bits, 4)];
        var mask = Vector256.Create((uint)((1 << bits) - 1));
        var tmp = stackalloc float[16];
        byte* codes = w.Codes.Pointer;
        fixed (float* pd = dst)
        {
            for (int r = r0; r < r1; r++)
            {
                w.RowStats(r, s, z);
                float* d = pd + (long)(r - r0) * cols;
                byte* row = codes + (long)r * w.RowBytes;
                for (int g = 0; g < groups; g++)
                {
                    int c0 = g * SpqrLayer.GroupSize, n = Math.Min(SpqrLayer.GroupSize, cols - c0);
                    float* o = n == SpqrLayer.GroupSize ? d + c0 : tmp;
                    if (w.Fp16Arithmetic)
                        for (int k = 0; k < n; k++) o[k] = w.Decode(w.Code(r, c0 + k), s[g], z[g]);
                    else if (fast)
                    {
                        var sv = Vector256.Create(s[g]); var zv = Vector256.Create(z[g]);
                        byte* p = row + g * gb;
                        var lo = Vector256.ConvertToSingle((Avx2.ShiftRightLogicalVariable(Vector256.Create(*(uint*)p), shift) & mask).AsInt32());
                        var hi = Vector256.ConvertToSingle((Avx2.ShiftRightLogicalVariable(Vector256.Create(*(uint*)(p + bits)), shift) & mask).AsInt32());
                        ((lo - zv) * sv).Store(o);
                        ((hi - zv) * sv).Store(o + 8);
                    }
                    else
                        for (int k = 0; k < n; k++) o[k] = s[g] * (w.Code(r, c0 + k) - z[g]);
                    if (o == tmp) for (int k = 0; k < n; k++) d[c0 + k] = tmp[k];
                }
                for (int i = w.OutlierRowOffsets[r]; i < w.OutlierRowOffsets[r + 1]; i++) d[w.OutlierCols[i]] = (float)w.OutlierValues[i];
            }
        }
    }

    // scalar path of the matvec (any wbits, any ISA): y_r = Σ_g s_g·(Σ_k code_k·x'_k − z_g·xsum_g) + outlier deltas
    private static void RowsScalar(SpqrLayer w, float[] xp, float[] ys, int r0, int r1)
    {
        int groups = w.Groups;
        Span<float> s = stackalloc float[groups];
        Span<float> z = stackalloc float[groups];
        var deltas = w.OutlierDeltas;
        for (int r = r0; r < r1; r++)
        {
            w.RowStats(r, s, z);
            float acc = 0;
            for (int g = 0; g < groups; g++)
            {
                float dot = 0, xs = 0;
                int c0 = g * SpqrLayer.GroupSize;
                if (w.Fp16Arithmetic)
                {
                    for (int k = 0; k < SpqrLayer.GroupSize && c0 + k < w.Cols; k++) acc += w.Decode(w.Code(r, c0 + k), s[g], z[g]) * xp[c0 + k];
                    continue;
                }
                for (int k = 0; k < SpqrLayer.GroupSize && c0 + k < w.Cols; k++) { dot += w.Code(r, c0 + k) * xp[c0 + k]; xs += xp[c0 + k]; }
                acc += s[g] * (dot - z[g] * xs);
            }
            for (int i = w.OutlierRowOffsets[r]; i < w.OutlierRowOffsets[r + 1]; i++) acc += deltas[i] * xp[w.OutlierCols[i]];
            ys[r] = acc;
        }
    }

    // fp16-step layers, wbits 3: per (row, group) the 8-entry table v_q = h(s·h(q − z)) lives in one register and
    // vpermps looks the codes up (it reads only the low 3 bits of each lane, so the shifted word needs no mask)
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void RowsLutV256(SpqrLayer w, float[] xp, float[] y, int r0, int r1)
    {
        int groups = w.Groups, bits = w.WBits, gb = w.GroupBytes, rowBytes = w.RowBytes;
        var shift = Shifts[bits];
        var iota = Vector256.Create(0f, 1, 2, 3, 4, 5, 6, 7);
        Span<float> s = stackalloc float[groups];
        Span<float> z = stackalloc float[groups];
        byte* codes = w.Codes.Pointer;
        fixed (float* px = xp) fixed (float* ps = s) fixed (float* pz = z)
        fixed (float* deltas = w.OutlierDeltas) fixed (int* offsets = w.OutlierRowOffsets) fixed (ushort* ocols = w.OutlierCols)
        {
            for (int r = r0; r < r1; r++)
            {
                w.RowStats(r, s, z);
                byte* a = codes + (long)r * rowBytes;
                var acc0 = Vector256<float>.Zero; var acc1 = Vector256<float>.Zero;
                for (int g = 0; g < groups; g++, a += gb)
                {
                    var table = SpqrLayer.H(Vector256.Create(ps[g]) * SpqrLayer.H(iota - Vector256.Create(pz[g])));
                    var lo = Avx2.PermuteVar8x32(table, Avx2.ShiftRightLogicalVariable(Vector256.Create(*(uint*)a), shift).AsInt32());
                    var hi = Avx2.PermuteVar8x32(table, Avx2.ShiftRightLogicalVariable(Vector256.Create(*(uint*)(a + bits)), shift).AsInt32());
                    acc0 = Vector256.FusedMultiplyAdd(lo, Vector256.Load(px + g * 16), acc0);
                    acc1 = Vector256.FusedMultiplyAdd(hi, Vector256.Load(px + g * 16 + 8), acc1);
                }
                float yr = Vector256.Sum(acc0 + acc1);
                for (int i = offsets[r], e = offsets[r + 1]; i < e; i++) yr += deltas[i] * px[ocols[i]];
                y[r] = yr;
            }
        }
    }

    // Codes of a half-group (8 × wbits bits) decode with one broadcast 32-bit load and a per-lane MASK: lane i keeps
    // code_i · 2^(b·i), which converts to float exactly; x̃ = x'·2^−(b·i) undoes the factor exactly (powers of two), so
    // code·x is the same float product as without the trick and one vpand replaces a variable shift. wbits 4 puts
    // lane 7's field at bits 28-31 (the sign bit), so that lane alone is shifted right by 4 first.
    private interface IHalfDecode { static abstract int Bits { get; } static abstract Vector256<float> Decode(byte* p, Vector256<int> mask); }
    private struct W2 : IHalfDecode
    {
        public static int Bits => 2;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Decode(byte* p, Vector256<int> mask) => Vector256.ConvertToSingle(Vector256.Create(*(int*)p) & mask);
    }
    private struct W3 : IHalfDecode
    {
        public static int Bits => 3;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Decode(byte* p, Vector256<int> mask) => Vector256.ConvertToSingle(Vector256.Create(*(int*)p) & mask);
    }
    private struct W4 : IHalfDecode
    {
        public static int Bits => 4;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Decode(byte* p, Vector256<int> mask)
            => Vector256.ConvertToSingle(Avx2.ShiftRightLogicalVariable(Vector256.Create(*(uint*)p), Vector256.Create(0u, 0, 0, 0, 0, 0, 0, 4)).AsInt32() & mask);
    }

    private static readonly Vector256<int>[] LaneMasks = [.. Enumerable.Range(0, 5).Select(b => Vector256.Create(
        [.. Enumerable.Range(0, 8).Select(i => b == 0 ? 0 : b == 4 && i == 7 ? 15 << 24 : ((1 << b) - 1) << (b * i))]))];
    private static readonly float[][] LaneScale = [.. Enumerable.Range(0, 5).Select(b =>
        Enumerable.Range(0, 8).Select(i => MathF.ScaleB(1f, b == 4 && i == 7 ? -24 : -b * i)).ToArray())];

    // The inner loop over a row's groups for four rows (rows at a, a + rb, a + 2rb, a + 3rb; scales at s, s + sg, s + 2sg,
    // s + 3sg), returning the four dot products Σ_g s_g·(Σ_k code_k·x̃_k). wbits is a constant of the implementation
    // (immediate offsets), so the loop needs no spills.
    private interface IRows4
    {
        static abstract void Run(byte* a, nint rb, float* x, float* s, nint sg, int groups, out float y0, out float y1, out float y2, out float y3);
    }

    // AVX2: a group is two half-groups of 8 codes, each one broadcast 32-bit load masked per lane (TDecode)
    private struct Rows4V256<TDecode> : IRows4 where TDecode : struct, IHalfDecode
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Run(byte* a, nint rb, float* x, float* s, nint sg, int groups, out float y0, out float y1, out float y2, out float y3)
        {
            const int GroupFloats = SpqrLayer.GroupSize;
            int b = TDecode.Bits;
            var mask = LaneMasks[b];
            nint rb3 = 3 * rb, sg3 = 3 * sg;
            Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default;
            for (float* end = s + groups; s < end; s++, a += 2 * b, x += GroupFloats)
            {
                var x0 = Vector256.Load(x); var x1 = Vector256.Load(x + 8);
                var t0 = TDecode.Decode(a, mask) * x0; var t1 = TDecode.Decode(a + rb, mask) * x0;
                var t2 = TDecode.Decode(a + 2 * rb, mask) * x0; var t3 = TDecode.Decode(a + rb3, mask) * x0;
                t0 = Vector256.FusedMultiplyAdd(TDecode.Decode(a + b, mask), x1, t0);
                t1 = Vector256.FusedMultiplyAdd(TDecode.Decode(a + rb + b, mask), x1, t1);
                t2 = Vector256.FusedMultiplyAdd(TDecode.Decode(a + 2 * rb + b, mask), x1, t2);
                t3 = Vector256.FusedMultiplyAdd(TDecode.Decode(a + rb3 + b, mask), x1, t3);
                c0 = Vector256.FusedMultiplyAdd(Vector256.Create(*s), t0, c0);
                c1 = Vector256.FusedMultiplyAdd(Vector256.Create(s[sg]), t1, c1);
                c2 = Vector256.FusedMultiplyAdd(Vector256.Create(s[2 * sg]), t2, c2);
                c3 = Vector256.FusedMultiplyAdd(Vector256.Create(s[sg3]), t3, c3);
            }
            y0 = Vector256.Sum(c0); y1 = Vector256.Sum(c1); y2 = Vector256.Sum(c2); y3 = Vector256.Sum(c3);
        }
    }

    // Vector512: a whole group (β1 = 16 codes) per vector — the two half-group words broadcast into the two 256-bit
    // halves, masked per lane and converted as unsigned (so the top field of wbits 4 needs no shift: x̃ carries
    // 2^−(b·(k mod 8)) for every lane); cross-platform Vector512 operations only, so the path runs (emulated) anywhere
    private struct Rows4V512<TDecode> : IRows4 where TDecode : struct, IHalfDecode
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector512<float> Group(byte* p, int b, Vector512<uint> mask)
            => Vector512.ConvertToSingle(Vector512.Create(Vector256.Create(*(uint*)p), Vector256.Create(*(uint*)(p + b))) & mask);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Run(byte* a, nint rb, float* x, float* s, nint sg, int groups, out float y0, out float y1, out float y2, out float y3)
        {
            const int GroupFloats = SpqrLayer.GroupSize;
            int b = TDecode.Bits;
            var mask = LaneMasks512[b];
            nint rb3 = 3 * rb, sg3 = 3 * sg;
            Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default;
            for (float* end = s + groups; s < end; s++, a += 2 * b, x += GroupFloats)
            {
                var xv = Vector512.Load(x);
                c0 = Vector512.FusedMultiplyAdd(Vector512.Create(*s), Group(a, b, mask) * xv, c0);
                c1 = Vector512.FusedMultiplyAdd(Vector512.Create(s[sg]), Group(a + rb, b, mask) * xv, c1);
                c2 = Vector512.FusedMultiplyAdd(Vector512.Create(s[2 * sg]), Group(a + 2 * rb, b, mask) * xv, c2);
                c3 = Vector512.FusedMultiplyAdd(Vector512.Create(s[sg3]), Group(a + rb3, b, mask) * xv, c3);
            }
            y0 = Vector512.Sum(c0); y1 = Vector512.Sum(c1); y2 = Vector512.Sum(c2); y3 = Vector512.Sum(c3);
        }
    }

    private static readonly Vector512<uint>[] LaneMasks512 = [.. Enumerable.Range(0, 5).Select(b => Vector512.Create(
        [.. Enumerable.Range(0, 16).Select(i => b == 0 ? 0u : (uint)((1L << b) - 1) << (b * (i & 7)))]))];
    private static readonly float[][] LaneScale512 = [.. Enumerable.Range(0, 5).Select(b =>
        Enumerable.Range(0, 8).Select(i => MathF.ScaleB(1f, -b * i)).ToArray())];

    // rows [r0, r1) of y = Ŵ·x, four rows per pass sharing every load of x̃ (TRows: the SIMD inner loop); per row
    // y_r = Σ_g s_g·(Σ_k code_k·x̃_k) − Σ_g s_g·z_g·xsum_g + Σ outlier deltas · x'
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void RowsSimd<TRows>(SpqrLayer w, float[] xt, float[] xp, float[] xsum, float[] y, int r0, int r1)
        where TRows : struct, IRows4
    {
        int groups = w.Groups, rowBytes = w.RowBytes;
        float* ps = stackalloc float[4 * groups];
        float* pz = stackalloc float[groups];
        float* corr = stackalloc float[4];
        float* dots = stackalloc float[4];
        byte* codes = w.Codes.Pointer;
        fixed (float* pxt = xt) fixed (float* px = xp) fixed (float* pxs = xsum)
        fixed (float* deltas = w.OutlierDeltas) fixed (int* offsets = w.OutlierRowOffsets) fixed (ushort* ocols = w.OutlierCols)
        {
            for (int r = r0; r < r1;)
            {
                // four rows at a time; a short tail goes one row at a time (stride 0: the row computed four times, stored once)
                int n = r1 - r >= 4 ? 4 : 1;
                for (int k = 0; k < n; k++) corr[k] = w.RowScalesAndCorrection(r + k, ps + k * groups, pz, pxs);
                nint rb = n == 4 ? rowBytes : 0, sg = n == 4 ? groups : 0;
                TRows.Run(codes + (long)r * rowBytes, rb, pxt, ps, sg, groups, out dots[0], out dots[1], out dots[2], out dots[3]);
                for (int k = 0; k < n; k++)
                {
                    int row = r + k;
                    float yr = dots[k] - corr[k];
                    for (int i = offsets[row], e = offsets[row + 1]; i < e; i++) yr += deltas[i] * px[ocols[i]];
                    y[row] = yr;
                }
                r += n;
            }
        }
    }

    private static readonly Vector256<uint>[] Shifts =
    [
        Vector256<uint>.Zero,
        Vector256.Create(0u, 1, 2, 3, 4, 5, 6, 7),
        Vector256.Create(0u, 2, 4, 6, 8, 10, 12, 14),
        Vector256.Create(0u, 3, 6, 9, 12, 15, 18, 21),
        Vector256.Create(0u, 4, 8, 12, 16, 20, 24, 28),
    ];
}
