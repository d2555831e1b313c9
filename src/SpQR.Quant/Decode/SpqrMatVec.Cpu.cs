// Fused SpQR matvec y = Ŵ·x straight from the stored form, never materialising Ŵ:
//   x' = x gathered through the permutation once per call (zero-padded to whole groups), xsum_g = Σ x' over group g;
//   per row r and group g: y_r += s·(Σ_k code_k·x'_k − z·xsum_g)  (codes decoded 8 at a time from one 32-bit load:
//   broadcast, per-lane shift by 0, b, …, 7b, mask, convert, FMA), then the CSR outliers add (v − ŵ_code)·x'_c.
// Vector256 path for wbits 2..4 (the format's fast layout), scalar path for any wbits. Threaded over 64-row blocks
// (fixed partition: results do not depend on the thread count). Batched Y = Ŵ·X for T tokens decodes each group once
// and reuses it across the tokens.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using SpQR.Quant.Formats;
using SpQR.Tensors.Cpu;

namespace SpQR.Quant.Decode;

public static class SpqrMatVec
{
    private const int RowBlock = 64;

    // W (rows, cols) in SpQR form @ x (cols,) -> y (rows,)
    public static void MatVec(SpqrLayer w, ReadOnlySpan<float> x, Span<float> y) => MatMul(w, x, y, 1, Simd.Best);

    // W @ X (T, cols) -> Y (T, rows)
    public static void MatMul(SpqrLayer w, ReadOnlySpan<float> X, Span<float> Y, int T) => MatMul(w, X, Y, T, Simd.Best);

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
        int rows = w.Rows, cols = w.Cols, groups = w.Groups, padded = groups * SpqrLayer.GroupSize;
        int blocks = (rows + RowBlock - 1) / RowBlock;
        bool fast = path >= SimdPath.V256 && Avx2.IsSupported && w.WBits <= 4; // per-lane shifts: AVX2 (other ISAs take the scalar path)
        if (fast && T == 1)
        {
            // the decode hot path: one token, vector accumulation across groups, per-row statistics decoded once
            if ((long)rows * cols < 1 << 16) for (int b = 0; b < blocks; b++) RowsV256(w, xp, xsum, ys, b * RowBlock, Math.Min(rows, b * RowBlock + RowBlock));
            else CpuThreads.For(blocks, b => RowsV256(w, xp, xsum, ys, b * RowBlock, Math.Min(rows, b * RowBlock + RowBlock)));
            return;
        }
        Action<int> block = b =>
        {
            int r0 = b * RowBlock, r1 = Math.Min(rows, r0 + RowBlock);
            Span<float> acc = stackalloc float[T];
            Span<float> s = stackalloc float[groups];
            Span<float> z = stackalloc float[groups];
            for (int r = r0; r < r1; r++)
            {
                acc.Clear();
                w.RowStats(r, s, z);
                for (int g = 0; g < groups; g++)
                {
                    int off = r * w.RowBytes + g * w.GroupBytes;
                    for (int t = 0; t < T; t++)
                    {
                        float dot = fast ? DotGroupV256(w.Codes, off, w.WBits, xp, t * padded + g * SpqrLayer.GroupSize)
                                         : DotGroupScalar(w, r, g, xp, t * padded + g * SpqrLayer.GroupSize);
                        acc[t] += s[g] * (dot - z[g] * xsum[(long)t * groups + g]);
                    }
                }
                // outliers: replace the code's value by the kept one
                var deltas = w.OutlierDeltas;
                for (int i = w.OutlierRowOffsets[r]; i < w.OutlierRowOffsets[r + 1]; i++)
                {
                    int c = w.OutlierCols[i];
                    for (int t = 0; t < T; t++) acc[t] += deltas[i] * xp[(long)t * padded + c];
                }
                for (int t = 0; t < T; t++) ys[(long)t * rows + r] = acc[t];
            }
        };
        if ((long)rows * cols * T < 1 << 16) for (int b = 0; b < blocks; b++) block(b); else CpuThreads.For(blocks, block);
    }

    // rows [r0, r1) of y = Ŵ·x from x' (padded, permuted) and the group sums of x'; two rows at a time share every
    // load of x' and the loop overhead
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void RowsV256(SpqrLayer w, float[] xp, float[] xsum, float[] y, int r0, int r1)
    {
        int groups = w.Groups, bits = w.WBits, gb = w.GroupBytes, rowBytes = w.RowBytes;
        var shift = Shifts[bits];
        var mask = Vector256.Create((uint)((1 << bits) - 1));
        Span<float> s = stackalloc float[2 * groups];
        Span<float> z = stackalloc float[2 * groups];
        var deltas = w.OutlierDeltas; var offsets = w.OutlierRowOffsets; var ocols = w.OutlierCols;
        fixed (byte* codes = w.Codes) fixed (float* px = xp) fixed (float* ps = s) fixed (float* pz = z) fixed (float* pxs = xsum)
        {
            int r = r0;
            for (; r < r1; r += 2)
            {
                bool pair = r + 1 < r1;
                w.RowStats(r, s[..groups], z[..groups]);
                if (pair) w.RowStats(r + 1, s[groups..], z[groups..]);
                byte* rowA = codes + (long)r * rowBytes, rowB = pair ? rowA + rowBytes : rowA;
                float* sa = ps, sb = pair ? ps + groups : ps;
                Vector256<float> accA = default, accB = default;
                float* x = px;
                for (int g = 0; g < groups; g++, rowA += gb, rowB += gb, x += 16)
                {
                    var x0 = Vector256.Load(x); var x1 = Vector256.Load(x + 8);
                    var la = Vector256.ConvertToSingle((Avx2.ShiftRightLogicalVariable(Vector256.Create(*(uint*)rowA), shift) & mask).AsInt32());
                    var ha = Vector256.ConvertToSingle((Avx2.ShiftRightLogicalVariable(Vector256.Create(*(uint*)(rowA + bits)), shift) & mask).AsInt32());
                    var lb = Vector256.ConvertToSingle((Avx2.ShiftRightLogicalVariable(Vector256.Create(*(uint*)rowB), shift) & mask).AsInt32());
                    var hb = Vector256.ConvertToSingle((Avx2.ShiftRightLogicalVariable(Vector256.Create(*(uint*)(rowB + bits)), shift) & mask).AsInt32());
                    accA = Vector256.FusedMultiplyAdd(Vector256.Create(sa[g]), Vector256.FusedMultiplyAdd(ha, x1, la * x0), accA);
                    accB = Vector256.FusedMultiplyAdd(Vector256.Create(sb[g]), Vector256.FusedMultiplyAdd(hb, x1, lb * x0), accB);
                }
                for (int k = 0; k < (pair ? 2 : 1); k++)
                {
                    int row = r + k;
                    float* sk = ps + k * groups, zk = pz + k * groups;
                    // Σ_g s_g z_g xsum_g, the zero-point correction of the row
                    int g = 0;
                    var cv = Vector256<float>.Zero;
                    for (; g + 8 <= groups; g += 8) cv = Vector256.FusedMultiplyAdd(Vector256.Load(sk + g) * Vector256.Load(zk + g), Vector256.Load(pxs + g), cv);
                    float corr = Vector256.Sum(cv);
                    for (; g < groups; g++) corr += sk[g] * zk[g] * pxs[g];
                    float yr = Vector256.Sum(k == 0 ? accA : accB) - corr;
                    for (int i = offsets[row]; i < offsets[row + 1]; i++) yr += deltas[i] * px[ocols[i]];
                    y[row] = yr;
                }
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

    // Σ_k code_k · x'_k over one group of 16: two 32-bit loads of 8 codes each
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe float DotGroupV256(byte[] codes, int off, int bits, float[] xp, int xoff)
    {
        fixed (byte* pc = codes) fixed (float* px = xp)
        {
            var shift = Shifts[bits];
            var mask = Vector256.Create((uint)((1 << bits) - 1));
            var lo = (Avx2.ShiftRightLogicalVariable(Vector256.Create(*(uint*)(pc + off)), shift) & mask).AsInt32();
            var hi = (Avx2.ShiftRightLogicalVariable(Vector256.Create(*(uint*)(pc + off + bits)), shift) & mask).AsInt32();
            var a = Vector256.ConvertToSingle(lo) * Vector256.Load(px + xoff);
            a = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(hi), Vector256.Load(px + xoff + 8), a);
            return Vector256.Sum(a);
        }
    }

    private static float DotGroupScalar(SpqrLayer w, int r, int g, float[] xp, int xoff)
    {
        float s = 0;
        int c0 = g * SpqrLayer.GroupSize;
        for (int k = 0; k < SpqrLayer.GroupSize; k++)
            if (c0 + k < w.Cols) s += w.Code(r, c0 + k) * xp[xoff + k];
        return s;
    }
}
