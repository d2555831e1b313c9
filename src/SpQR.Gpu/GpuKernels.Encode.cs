// Device kernels of the SpQR encoder (mirrors src/SpQR.Quant/Encode/SpqrEncoder.cs; the host loop is GpuSpqrEncoder):
//   EncodeBlock — the column loop of one block [b0, b0 + nb) of the permuted W (rows, cols), one thread per row. At each
//     group start a thread fits its row's first-order (scale, zero) with the leave-one-out outlier pre-screen; the β2
//     threads of a row group quantize their scales and zeros to qq bits together through shared memory. Then per
//     column: code, ŵ, scaled error e = (w − ŵ)/d_c (outlier when e² > threshold: the weight is kept), and the error
//     fed forward into the rest of the block, W[r, c+1 : b0+nb] −= e · U[c, c+1 : b0+nb]. Same float operations, in
//     the same order, as the CPU encoder (round half to even, fused multiply-add in the update).
//   LazyUpdate — W[:, b0+nb :] += (−E) · U[b0 : b0+nb, b0+nb :], E = the block's errors (nb, rows) column-major: each
//     thread sums its 4×4 tile over k in order from zero with FMAs, then adds the sum to W (the CPU GEMM's order).
//   HessianAccumulate — Σ += Xᵀ·X for T tokens X (T, cols): float32 sums of a 4×4 tile over the tokens, added to the
//     float64 Σ (HessianAccumulator's precision: float32 GEMM blocks, float64 running sum).
using ILGPU;
using ILGPU.Runtime;

namespace SpQR.Gpu;

/// <summary>Scalar arguments of the encoder's block kernel.</summary>
public struct EncodeArgs
{
    public int Rows, Cols, B0, Nb, GroupSize, MaxQ, ScaleBits, ZeroBits, QqGroupSize, RowGroups, Groups, RoundZero, StorageExact, Loo;
    public double Threshold;
}

public sealed partial class GpuKernels
{
    /// <summary>Largest β1 the device encoder handles (its per-thread group buffer).</summary>
    public const int EncodeMaxGroupSize = 32;
    private const int EncodeMaxBlock = 128;

    private Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<byte>, ArrayView<float>, EncodeArgs>? _encodeBlock;
    private Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int>? _lazyUpdate;
    private Action<KernelConfig, ArrayView<float>, ArrayView<double>, int, int>? _hessian;

    /// <summary>sum (cols, cols) += Xᵀ·X, X (T, cols) row-major.</summary>
    public void HessianAccumulate(ArrayView<float> X, int T, int cols, ArrayView<double> sum)
    {
        if (X.Length < (long)T * cols) throw new ArgumentException($"X holds {X.Length} values, expected {T}x{cols}");
        if (sum.Length < (long)cols * cols) throw new ArgumentException($"the Hessian sum holds {sum.Length} values, expected {cols}x{cols}");
        _hessian ??= Load<ArrayView<float>, ArrayView<double>, int, int>(HessianKernel);
        int tiles = ((cols + 3) / 4) * ((cols + 3) / 4), blk = Math.Min(256, _acc.MaxNumThreadsPerGroup);
        _hessian(new KernelConfig((tiles + blk - 1) / blk, blk), X, sum, T, cols);
    }

    private static void HessianKernel(ArrayView<float> X, ArrayView<double> sum, int T, int cols)
    {
        int ct = (cols + 3) / 4, t = Grid.GlobalIndex.X;
        int i0 = t / ct * 4, j0 = t % ct * 4;
        if (i0 >= cols) return;
        int iA = Math.Min(cols - 1, i0 + 1), iB = Math.Min(cols - 1, i0 + 2), iC = Math.Min(cols - 1, i0 + 3);
        int jA = Math.Min(cols - 1, j0), jB = Math.Min(cols - 1, j0 + 1), jC = Math.Min(cols - 1, j0 + 2), jD = Math.Min(cols - 1, j0 + 3);
        float a00 = 0, a01 = 0, a02 = 0, a03 = 0, a10 = 0, a11 = 0, a12 = 0, a13 = 0;
        float a20 = 0, a21 = 0, a22 = 0, a23 = 0, a30 = 0, a31 = 0, a32 = 0, a33 = 0;
        for (int k = 0; k < T; k++)
        {
            long xk = (long)k * cols;
            float e0 = X[xk + i0], e1 = X[xk + iA], e2 = X[xk + iB], e3 = X[xk + iC];
            float u0 = X[xk + jA], u1 = X[xk + jB], u2 = X[xk + jC], u3 = X[xk + jD];
            a00 = Fma(e0, u0, a00); a01 = Fma(e0, u1, a01); a02 = Fma(e0, u2, a02); a03 = Fma(e0, u3, a03);
            a10 = Fma(e1, u0, a10); a11 = Fma(e1, u1, a11); a12 = Fma(e1, u2, a12); a13 = Fma(e1, u3, a13);
            a20 = Fma(e2, u0, a20); a21 = Fma(e2, u1, a21); a22 = Fma(e2, u2, a22); a23 = Fma(e2, u3, a23);
            a30 = Fma(e3, u0, a30); a31 = Fma(e3, u1, a31); a32 = Fma(e3, u2, a32); a33 = Fma(e3, u3, a33);
        }
        AddRowD(sum, (long)i0 * cols, j0, cols, a00, a01, a02, a03);
        if (i0 + 1 < cols) AddRowD(sum, (long)(i0 + 1) * cols, j0, cols, a10, a11, a12, a13);
        if (i0 + 2 < cols) AddRowD(sum, (long)(i0 + 2) * cols, j0, cols, a20, a21, a22, a23);
        if (i0 + 3 < cols) AddRowD(sum, (long)(i0 + 3) * cols, j0, cols, a30, a31, a32, a33);
    }

    private static void AddRowD(ArrayView<double> s, long row, int j0, int n, float v0, float v1, float v2, float v3)
    {
        s[row + j0] += v0;
        if (j0 + 1 < n) s[row + j0 + 1] += v1;
        if (j0 + 2 < n) s[row + j0 + 2] += v2;
        if (j0 + 3 < n) s[row + j0 + 3] += v3;
    }

    /// <summary>Threads per block of the encoder: whole row groups (β2 | threads), at most 128.</summary>
    public int EncodeThreads(int qqGroupSize)
    {
        int max = Math.Min(EncodeMaxBlock, _acc.MaxNumThreadsPerGroup);
        return qqGroupSize > max ? 0 : max / qqGroupSize * qqGroupSize;
    }

    /// <summary>The column loop of one block (see the file header). stats: scales (groups, rows) then zeros; qcodes: scale
    /// codes (groups, rows) then zero codes; planes: ss, sz, zs, zz (groups, rowGroups) each.</summary>
    public void EncodeBlock(ArrayView<float> w, ArrayView<float> u, ArrayView<float> d, ArrayView<float> err, ArrayView<byte> codes, ArrayView<byte> outliers,
                            ArrayView<float> stats, ArrayView<byte> qcodes, ArrayView<float> planes, EncodeArgs a)
    {
        int t = EncodeThreads(a.QqGroupSize);
        if (t == 0) throw new NotSupportedException($"qq_groupsize {a.QqGroupSize} exceeds the device encoder's block");
        if (a.GroupSize > EncodeMaxGroupSize) throw new NotSupportedException($"groupsize {a.GroupSize} exceeds the device encoder's {EncodeMaxGroupSize}");
        _encodeBlock ??= Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<byte>, ArrayView<float>, EncodeArgs>(EncodeBlockKernel);
        _encodeBlock(new KernelConfig((a.Rows + t - 1) / t, t), w, u, d, err, codes, outliers, stats, qcodes, planes, a);
    }

    /// <summary>W[:, c0 :] (rows, cols − c0) += (−E) · U[b0 : b0 + nb, c0 :], E (nb, rows) column-major, c0 = b0 + nb.</summary>
    public void LazyUpdate(ArrayView<float> w, ArrayView<float> u, ArrayView<float> err, int rows, int cols, int b0, int nb)
    {
        int c0 = b0 + nb, n = cols - c0;
        if (n <= 0) return;
        _lazyUpdate ??= Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int>(LazyUpdateKernel);
        int tiles = ((rows + 3) / 4) * ((n + 3) / 4), blk = Math.Min(256, _acc.MaxNumThreadsPerGroup);
        _lazyUpdate(new KernelConfig((tiles + blk - 1) / blk, blk), w, u, err, rows, cols, b0, nb);
    }

    // a·b + c rounded once. MathF.FusedMultiplyAdd has no ILGPU intrinsic (even an unused call leaves an extern the
    // driver's JIT rejects), so CUDA gets fma.rn.f32 inline and other accelerators the exact float product in double
    // plus c (rounded twice, double then float: differs from a true FMA only in rare ties)
    private static float Fma(float a, float b, float c)
    {
        if (!ILGPU.Runtime.Cuda.CudaAsm.IsSupported) return (float)((double)a * b + c);
        float r = 0;
        ILGPU.Runtime.Cuda.CudaAsm.Emit("fma.rn.f32 %0, %1, %2, %3;", out r, a, b, c);
        return r;
    }

    // torch.round: nearest, half to even (x − floor x is exact for |x| < 2^23; larger values are clamped by the callers)
    private static float RoundEven(float x)
    {
        float f = MathF.Floor(x), r = x - f;
        if (r > 0.5f) return f + 1;
        if (r < 0.5f) return f;
        return ((int)f & 1) == 0 ? f : f + 1;
    }

    private static int QCode(float x, float s, float z, int maxq)
    {
        float q = RoundEven(x / s + z);
        return q < 0 ? 0 : q > maxq ? maxq : (int)q;
    }

    // Σ ((ŵ_k − v_k)/d_k)² over k ≠ skip with (scale, zero) fitted on v without skip (SpqrEncoder.GroupError)
    private static double GroupError(ArrayView<float> v, ArrayView<float> d, int c, int gw, int skip, int maxq)
    {
        float min = float.PositiveInfinity, max = float.NegativeInfinity;
        for (int k = 0; k < gw; k++)
        {
            if (k == skip) continue;
            float x = v[k];
            if (x < min) min = x;
            if (x > max) max = x;
        }
        if (max == min) { min = -1; max = 1; }
        float s = (max - min) / maxq, z = -min / s;
        double e = 0;
        for (int k = 0; k < gw; k++)
        {
            if (k == skip) continue;
            float xh = s * (QCode(v[k], s, z, maxq) - z);
            double t = (xh - v[k]) / d[c + k];
            e += t * t;
        }
        return e;
    }

    // qq quantization of one statistic over each β2 row group of the block (all threads call it: it holds barriers);
    // returns the dequantized value, its code in q; the row group's first thread writes (s2, z2) at planes[i2]
    private static float QqStat(ArrayView<float> sh, float value, int bits, int b2, int rowsHere, bool fp16, out int q, out float s2, out float z2)
    {
        int tid = Group.IdxX, l0 = tid - tid % b2, n = Math.Min(b2, rowsHere - l0);
        Group.Barrier();
        sh[tid] = value;
        Group.Barrier();
        float min = float.PositiveInfinity, max = float.NegativeInfinity;
        for (int i = 0; i < n; i++)
        {
            float x = sh[l0 + i];
            if (x < min) min = x;
            if (x > max) max = x;
        }
        if (max == min) { min = -1; max = 1; }
        int maxq = (1 << bits) - 1;
        s2 = (max - min) / maxq; z2 = -min / s2;
        if (fp16) { s2 = H(s2); z2 = H(z2); }
        q = QCode(value, s2, z2, maxq);
        return s2 * (q - z2);
    }

    private static void EncodeBlockKernel(ArrayView<float> w, ArrayView<float> u, ArrayView<float> d, ArrayView<float> err, ArrayView<byte> codes,
                                          ArrayView<byte> outliers, ArrayView<float> stats, ArrayView<byte> qcodes, ArrayView<float> planes, EncodeArgs a)
    {
        var sh = SharedMemory.Allocate<float>(EncodeMaxBlock);
        var v = LocalMemory.Allocate<float>(EncodeMaxGroupSize);
        int tid = Group.IdxX, blockRow0 = Grid.IdxX * Group.DimX, r = blockRow0 + tid;
        bool live = r < a.Rows;
        int rowsHere = Math.Min(Group.DimX, a.Rows - blockRow0);
        long row = (long)(live ? r : a.Rows - 1) * a.Cols;
        bool fp16 = a.StorageExact != 0;
        float s = 1, z = 0;
        for (int k = 0; k < a.Nb; k++)
        {
            int c = a.B0 + k;
            if (c % a.GroupSize == 0)
            {
                int gw = Math.Min(a.GroupSize, a.Cols - c), g = c / a.GroupSize;
                for (int j = 0; j < gw; j++) v[j] = w[row + c + j];
                if (a.Loo != 0)
                {
                    // leave-one-out pre-screen: likely outliers are replaced by the mean of the others for the fit
                    double baseline = GroupError(v, d, c, gw, -1, a.MaxQ);
                    int nonCand = 0; double sum = 0; long cand = 0;
                    for (int i = 0; i < gw; i++)
                    {
                        if (baseline - GroupError(v, d, c, gw, i, a.MaxQ) > a.Threshold) cand |= 1L << i;
                        else { nonCand++; sum += v[i]; }
                    }
                    float mean = (float)(sum / Math.Max(nonCand, 1));
                    for (int i = 0; i < gw; i++) if (((cand >> i) & 1) != 0) v[i] = mean;
                }
                float min = float.PositiveInfinity, max = float.NegativeInfinity;
                for (int j = 0; j < gw; j++)
                {
                    float x = v[j];
                    if (x < min) min = x;
                    if (x > max) max = x;
                }
                if (max == min) { min = -1; max = 1; }
                s = (max - min) / a.MaxQ; z = -min / s;
                if (a.RoundZero != 0) z = RoundEven(z);
                // second order over β2 rows (or FP16 storage of the first-order statistics)
                int rg = (live ? r : a.Rows - 1) / a.QqGroupSize;
                long gi = (long)g * a.Rows + r, pi = (long)g * a.RowGroups + rg, nG = (long)a.Groups * a.Rows, nP = (long)a.Groups * a.RowGroups;
                bool first = live && r % a.QqGroupSize == 0;
                if (a.ScaleBits > 0)
                {
                    s = QqStat(sh, s, a.ScaleBits, a.QqGroupSize, rowsHere, fp16, out int qs, out float s2, out float z2);
                    if (live) qcodes[gi] = (byte)qs;
                    if (first) { planes[pi] = s2; planes[nP + pi] = z2; }
                }
                else if (fp16) s = H(s);
                if (a.ZeroBits > 0)
                {
                    z = QqStat(sh, z, a.ZeroBits, a.QqGroupSize, rowsHere, fp16, out int qz, out float s2, out float z2);
                    if (live) qcodes[nG + gi] = (byte)qz;
                    if (first) { planes[2 * nP + pi] = s2; planes[3 * nP + pi] = z2; }
                }
                else if (fp16) z = H(z);
                if (live) { stats[gi] = s; stats[nG + gi] = z; }
            }
            float xw = w[row + c], dc = d[c];
            int q = QCode(xw, s, z, a.MaxQ);
            float xh = s * (q - z);
            float ei = (xw - xh) / dc;
            byte isOut = 0;
            if ((double)(ei * ei) > a.Threshold)
            {
                // outlier: the weight is kept (as stored), code of 0, only the storage rounding propagates
                q = QCode(0f, s, z, a.MaxQ);
                xh = fp16 ? H(xw) : xw;
                ei = (xw - xh) / dc;
                isOut = 1;
            }
            if (!live) continue;
            codes[row + c] = (byte)q;
            outliers[row + c] = isOut;
            w[row + c] = xh;
            err[(long)k * a.Rows + r] = ei;
            long ur = (long)c * a.Cols;
            for (int j = c + 1; j < a.B0 + a.Nb; j++) w[row + j] = Fma(-u[ur + j], ei, w[row + j]);
        }
    }

    // one thread per 4×4 tile of W[:, c0:]; consecutive threads take consecutive column tiles of the same rows, so their
    // loads of U and W are coalesced and the four errors of k are broadcast
    private static void LazyUpdateKernel(ArrayView<float> w, ArrayView<float> u, ArrayView<float> err, int rows, int cols, int b0, int nb)
    {
        int c0 = b0 + nb, n = cols - c0, colTiles = (n + 3) / 4;
        int t = Grid.GlobalIndex.X;
        int r0 = t / colTiles * 4, j0 = t % colTiles * 4;
        if (r0 >= rows) return;
        float a00 = 0, a01 = 0, a02 = 0, a03 = 0, a10 = 0, a11 = 0, a12 = 0, a13 = 0;
        float a20 = 0, a21 = 0, a22 = 0, a23 = 0, a30 = 0, a31 = 0, a32 = 0, a33 = 0;
        int rA = Math.Min(rows - 1, r0 + 1), rB = Math.Min(rows - 1, r0 + 2), rC = Math.Min(rows - 1, r0 + 3);
        int jA = c0 + Math.Min(n - 1, j0), jB = c0 + Math.Min(n - 1, j0 + 1), jC = c0 + Math.Min(n - 1, j0 + 2), jD = c0 + Math.Min(n - 1, j0 + 3);
        for (int k = 0; k < nb; k++)
        {
            long ek = (long)k * rows, uk = (long)(b0 + k) * cols;
            float e0 = -err[ek + r0], e1 = -err[ek + rA], e2 = -err[ek + rB], e3 = -err[ek + rC];
            float u0 = u[uk + jA], u1 = u[uk + jB], u2 = u[uk + jC], u3 = u[uk + jD];
            a00 = Fma(e0, u0, a00); a01 = Fma(e0, u1, a01); a02 = Fma(e0, u2, a02); a03 = Fma(e0, u3, a03);
            a10 = Fma(e1, u0, a10); a11 = Fma(e1, u1, a11); a12 = Fma(e1, u2, a12); a13 = Fma(e1, u3, a13);
            a20 = Fma(e2, u0, a20); a21 = Fma(e2, u1, a21); a22 = Fma(e2, u2, a22); a23 = Fma(e2, u3, a23);
            a30 = Fma(e3, u0, a30); a31 = Fma(e3, u1, a31); a32 = Fma(e3, u2, a32); a33 = Fma(e3, u3, a33);
        }
        AddRow(w, (long)r0 * cols, j0, n, c0, a00, a01, a02, a03);
        if (r0 + 1 < rows) AddRow(w, (long)(r0 + 1) * cols, j0, n, c0, a10, a11, a12, a13);
        if (r0 + 2 < rows) AddRow(w, (long)(r0 + 2) * cols, j0, n, c0, a20, a21, a22, a23);
        if (r0 + 3 < rows) AddRow(w, (long)(r0 + 3) * cols, j0, n, c0, a30, a31, a32, a33);
    }

    private static void AddRow(ArrayView<float> w, long row, int j0, int n, int c0, float v0, float v1, float v2, float v3)
    {
        w[row + c0 + j0] += v0;
        if (j0 + 1 < n) w[row + c0 + j0 + 1] += v1;
        if (j0 + 2 < n) w[row + c0 + j0 + 2] += v2;
        if (j0 + 3 < n) w[row + c0 + j0 + 3] += v3;
    }
}
