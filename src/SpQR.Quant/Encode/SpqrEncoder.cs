// SpQR for one linear layer, as the paper (Dettmers et al. 2023, Alg. 1) and the authors' spqr_engine.py do it.
// Legend: W (rows = out_features, cols = in_features), H (cols, cols) = 2/N Σ x xᵀ, U = upper Cholesky factor of
// H⁻¹ with d_j = U[j, j], β1 = groupsize (columns per first-order statistic), β2 = qq_groupsize (rows per
// second-order statistic), τ = outlier_relative_threshold.
//   1. permute columns (act_order: diag(H) descending, stable); 2. dampen H, zero dead columns;
//   3. U = chol(H⁻¹) upper (float64); 4. threshold = τ · mean_j var(W[:, j]) / d_j²;
//   5. columns in blocks: at each group start fit per-row min-max statistics (after the leave-one-out outlier
//      pre-screen), quantize them to qq bits over β2 rows; quantize each column, keep weights whose scaled error²
//      exceeds the threshold as outliers, feed the error (w − ŵ)/d_j forward through U; lazy block updates by GEMM.
// It returns a result record; packing into the compressed format and file I/O are separate passes.
using SpQR.Tensors.Cpu;

namespace SpQR.Quant.Encode;

public sealed record SpqrLayerResult
{
    public required int Rows { get; init; }
    public required int Cols { get; init; }
    public required SpqrOptions Options { get; init; }
    /// <summary>(cols,) permuted column c holds original column Permutation[c].</summary>
    public required int[] Permutation { get; init; }
    /// <summary>(rows, cols) wbits codes, columns in permuted order; an outlier's code is the code of 0.</summary>
    public required byte[] Codes { get; init; }
    /// <summary>(groups, rows) the first-order scale and zero used for the codes (after qq dequantization).</summary>
    public required float[] Scale { get; init; }
    public required float[] Zero { get; init; }
    /// <summary>(groups, rows) qq codes of the scales / zeros; null when that statistic is stored as FP16.</summary>
    public byte[]? ScaleCodes { get; init; }
    public byte[]? ZeroCodes { get; init; }
    /// <summary>(groups, rowGroups) second-order (scale, zero) of the scales and of the zeros.</summary>
    public float[]? ScaleStatScale { get; init; }
    public float[]? ScaleStatZero { get; init; }
    public float[]? ZeroStatScale { get; init; }
    public float[]? ZeroStatZero { get; init; }
    /// <summary>Outliers: row, permuted column, kept value.</summary>
    public required int[] OutlierRows { get; init; }
    public required int[] OutlierCols { get; init; }
    public required float[] OutlierValues { get; init; }
    /// <summary>(rows, cols) Ŵ in the original column order.</summary>
    public required float[] Dequantized { get; init; }
    public required double OutlierThresholdUsed { get; init; }
    public required double Seconds { get; init; }

    public int Groups => (Cols + Options.GroupSize - 1) / Options.GroupSize;
    public int RowGroups => (Rows + Options.QqGroupSize - 1) / Options.QqGroupSize;
    public double OutlierShare => (double)OutlierRows.Length / ((long)Rows * Cols);

    /// <summary>The paper's accounting: wbits + (qq_scale_bits + qq_zero_bits)/β1 + 64/(β1·β2) + 32·outlier share
    /// (FP16 statistics count 16 bits each per group instead).</summary>
    public double AverageBitsFormula
    {
        get
        {
            var o = Options;
            double stats = 0;
            stats += o.QqScaleBits is { } qs ? (double)qs / o.GroupSize + 32.0 / (o.GroupSize * o.QqGroupSize) : 16.0 / o.GroupSize;
            stats += o.QqZeroBits is { } qz ? (double)qz / o.GroupSize + 32.0 / (o.GroupSize * o.QqGroupSize) : 16.0 / o.GroupSize;
            return o.WBits + stats + 32 * OutlierShare;
        }
    }

    /// <summary>Bits actually stored per weight (codes, statistics of every group, ragged ones included, outliers).</summary>
    public double AverageBitsCounted
    {
        get
        {
            var o = Options;
            double bits = (double)Rows * Cols * o.WBits;
            bits += (double)Groups * Rows * (o.QqScaleBits ?? 16) + (o.QqScaleBits is null ? 0 : (double)Groups * RowGroups * 32);
            bits += (double)Groups * Rows * (o.QqZeroBits ?? 16) + (o.QqZeroBits is null ? 0 : (double)Groups * RowGroups * 32);
            bits += 32.0 * OutlierRows.Length;
            return bits / ((double)Rows * Cols);
        }
    }
}

public static class SpqrEncoder
{
    /// <summary>Quantizes W (rows, cols) row-major with Hessian H (cols, cols) row-major.</summary>
    public static SpqrLayerResult Quantize(ReadOnlySpan<float> W, ReadOnlySpan<double> H, int rows, int cols, SpqrOptions o, string layer = "layer")
        => o.OutlierBudget is { } budget ? QuantizeWithBudget(W, H, rows, cols, o, layer, budget) : Quantize(W, H, rows, cols, o, layer, null);

    /// <summary>
    /// Finds τ for a target outlier share by bisection on log τ (the paper tuned τ by hand): the outlier share falls as
    /// τ grows, so bracket the target, bisect, and return the largest share not above the budget.
    /// </summary>
    public static SpqrLayerResult QuantizeWithBudget(ReadOnlySpan<float> W, ReadOnlySpan<double> H, int rows, int cols, SpqrOptions o, string layer, double budget)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var p = Prepare(W, H, rows, cols, o, layer); // permutation, damping, Cholesky: independent of τ, done once
        SpqrLayerResult Run(double? tau) => RunColumns((float[])p.W.Clone(), p.U, p.D, rows, cols, p.Perm,
            o with { OutlierBudget = null, OutlierThreshold = tau }, tau is { } t ? t * p.OutlierScale : double.PositiveInfinity, sw, null);
        if (budget <= 0) return Run(null);
        SpqrLayerResult? best = null; // the largest share not above the budget
        SpqrLayerResult Try(double tau)
        {
            var r = Run(tau);
            if (r.OutlierShare <= budget && (best is null || r.OutlierShare > best.OutlierShare)) best = r;
            return r;
        }
        // bracket lo < hi with share(lo) > budget >= share(hi), stepping by 4 from the configured τ
        double lo = o.OutlierThreshold ?? 0.2, hi = lo;
        if (Try(lo).OutlierShare <= budget)
            for (int i = 0; i < 12; i++) { lo /= 4; if (Try(lo).OutlierShare > budget) break; hi = lo; }
        else
            for (int i = 0; i < 12; i++) { hi *= 4; if (Try(hi).OutlierShare <= budget) break; lo = hi; }
        for (int i = 0; i < 10 && best is not null && lo < hi; i++)
        {
            double mid = Math.Sqrt(lo * hi);
            if (Try(mid).OutlierShare > budget) lo = mid; else hi = mid;
        }
        return best ?? Run(null);
    }

    /// <param name="columnInputs">When given (rows, cols): each weight's value just before its column was quantized (permuted order), for tests.</param>
    internal static SpqrLayerResult Quantize(ReadOnlySpan<float> W, ReadOnlySpan<double> H, int rows, int cols, SpqrOptions o, string layer, float[]? columnInputs)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var p = Prepare(W, H, rows, cols, o, layer);
        double threshold = o.OutlierThreshold is { } tau ? tau * p.OutlierScale : double.PositiveInfinity;
        return RunColumns(p.W, p.U, p.D, rows, cols, p.Perm, o, threshold, sw, columnInputs);
    }

    /// <summary>Steps 1-4: permuted W (rows, cols) and U (cols, cols), d = diag U, and mean_j var(W[:, j]) / d_j².</summary>
    internal sealed record Prepared(float[] W, float[] U, float[] D, int[] Perm, double OutlierScale);

    /// <param name="upperFactorOfInverse">the factorization of step 3 (H, n, what) → U; null = Cholesky.UpperFactorOfInverse on the CPU</param>
    internal static Prepared Prepare(ReadOnlySpan<float> W, ReadOnlySpan<double> H, int rows, int cols, SpqrOptions o, string layer,
                                     Func<double[], int, string, double[]>? upperFactorOfInverse = null)
    {
        o.Validate();
        if (W.Length != (long)rows * cols) throw new ArgumentException($"{layer}: W has {W.Length} values, expected {rows}x{cols}");
        if (H.Length != (long)cols * cols) throw new ArgumentException($"{layer}: H has {H.Length} values, expected {cols}x{cols}");
        for (int i = 0; i < W.Length; i++)
            if (!float.IsFinite(W[i])) throw new ArgumentException($"{layer}: weight [{i / cols}, {i % cols}] is {W[i]}; quantization needs finite weights");

        // 1. permutation: act_order = stable argsort of diag(H), descending (on the undamped H)
        var perm = Enumerable.Range(0, cols).ToArray();
        if (o.PermutationOrder == PermutationOrder.ActOrder)
        {
            var diag = new double[cols];
            for (int i = 0; i < cols; i++) diag[i] = H[i * cols + i];
            perm = perm.OrderByDescending(i => diag[i]).ToArray(); // LINQ OrderBy is stable
        }
        var w = new float[(long)rows * cols];
        for (int r = 0; r < rows; r++) for (int c = 0; c < cols; c++) w[(long)r * cols + c] = W[r * cols + perm[c]];
        var h = new double[(long)cols * cols];
        for (int i = 0; i < cols; i++) for (int j = 0; j < cols; j++) h[(long)i * cols + j] = H[perm[i] * cols + perm[j]];

        // 2. dead columns, damping: H[i,i] += percdamp · mean|diag H|; H[dead, dead] = 1; W[:, dead] = 0
        var dead = new bool[cols];
        double meanDiag = 0;
        for (int i = 0; i < cols; i++) { dead[i] = h[(long)i * cols + i] == 0; meanDiag += Math.Abs(h[(long)i * cols + i]); }
        meanDiag /= Math.Max(cols, 1);
        for (int i = 0; i < cols; i++)
        {
            h[(long)i * cols + i] += o.PercDamp * meanDiag;
            if (dead[i]) { h[(long)i * cols + i] = 1; for (int r = 0; r < rows; r++) w[(long)r * cols + i] = 0; }
        }

        // 3. U = upper Cholesky factor of H⁻¹ (float64), used in float32 like the reference
        double[] u64;
        try
        {
            string what = $"the damped Hessian of {layer}";
            u64 = upperFactorOfInverse is null ? Cholesky.UpperFactorOfInverse(h, cols, what) : upperFactorOfInverse(h, cols, what);
        }
        catch (NotPositiveDefiniteException e)
        {
            throw new NotPositiveDefiniteException($"{e.Message}; raise percdamp (now {o.PercDamp}) or add calibration data");
        }
        var U = new float[u64.Length];
        for (long i = 0; i < u64.Length; i++) U[i] = (float)u64[i];
        var d = new float[cols];
        for (int j = 0; j < cols; j++) d[j] = U[(long)j * cols + j];

        // 4. outlier scale: the threshold is τ · mean_j var_rows(W[:, j]) / d_j²  (unbiased variance); the rows are
        // streamed in order (each column's sums still run over r ascending)
        var mean = new double[cols]; var m2 = new double[cols];
        for (int r = 0; r < rows; r++) { var wr = w.AsSpan(r * cols, cols); for (int j = 0; j < cols; j++) mean[j] += wr[j]; }
        for (int j = 0; j < cols; j++) mean[j] /= rows;
        for (int r = 0; r < rows; r++) { var wr = w.AsSpan(r * cols, cols); for (int j = 0; j < cols; j++) { double x = wr[j] - mean[j]; m2[j] += x * x; } }
        double acc = 0;
        for (int j = 0; j < cols; j++) acc += (rows > 1 ? m2[j] / (rows - 1) : 0) / ((double)d[j] * d[j]);
        return new Prepared(w, U, d, perm, acc / cols);
    }

    internal sealed class Stats(int groups, int rows, int rowGroups, bool qqScale, bool qqZero)
    {
        public readonly float[] Scale = new float[(long)groups * rows], Zero = new float[(long)groups * rows];
        public readonly byte[]? ScaleCodes = qqScale ? new byte[(long)groups * rows] : null, ZeroCodes = qqZero ? new byte[(long)groups * rows] : null;
        public readonly float[]? SS = qqScale ? new float[(long)groups * rowGroups] : null, SZ = qqScale ? new float[(long)groups * rowGroups] : null;
        public readonly float[]? ZS = qqZero ? new float[(long)groups * rowGroups] : null, ZZ = qqZero ? new float[(long)groups * rowGroups] : null;
    }

    private static SpqrLayerResult RunColumns(float[] w, float[] U, float[] d, int rows, int cols, int[] perm, SpqrOptions o, double threshold,
                                              System.Diagnostics.Stopwatch sw, float[]? columnInputs)
    {
        int b1 = o.GroupSize, maxq = (1 << o.WBits) - 1;
        int groups = (cols + b1 - 1) / b1, rowGroups = (rows + o.QqGroupSize - 1) / o.QqGroupSize;
        bool qqZero = QuantizesZeros(o);
        var st = new Stats(groups, rows, rowGroups, o.QqScaleBits is not null, qqZero);
        var codes = new byte[(long)rows * cols];
        var outlier = new bool[(long)rows * cols];
        // blocks hold whole groups so every group is fitted on fully updated columns
        int bs = b1 >= o.BlockSize ? b1 : o.BlockSize / b1 * b1;
        var wb = new float[(long)bs * rows];   // (bs, rows) the block, column-major
        var err = new float[(long)bs * rows];  // (bs, rows) scaled errors, column-major
        var negErr = new float[(long)bs * rows]; // −err for the lazy GEMM update (accumulate-only GEMM)
        var scale = new float[rows]; var zero = new float[rows];

        for (int b0 = 0; b0 < cols; b0 += bs)
        {
            int b1End = Math.Min(cols, b0 + bs), nb = b1End - b0;
            for (int k = 0; k < nb; k++) for (int r = 0; r < rows; r++) wb[(long)k * rows + r] = w[(long)r * cols + b0 + k];
            for (int k = 0; k < nb; k++)
            {
                int c = b0 + k;
                if (c % b1 == 0)
                {
                    int gw = Math.Min(b1, cols - c);
                    FitGroup(wb, k, gw, rows, d.AsSpan(c, gw), o, threshold, c / b1, st, scale, zero);
                }
                var col = wb.AsSpan(k * rows, rows);
                var e = err.AsSpan(k * rows, rows);
                float dc = d[c];
                for (int r = 0; r < rows; r++)
                {
                    float x = col[r], s = scale[r], z = zero[r];
                    if (columnInputs is not null) columnInputs[(long)r * cols + c] = x;
                    int q = QuantizeCode(x, s, z, maxq);
                    float xh = s * (q - z);
                    float ei = (x - xh) / dc;
                    if (ei * ei > threshold)
                    {
                        // outlier: keep the weight (as stored), code of 0, no error to propagate (up to storage rounding)
                        q = QuantizeCode(0f, s, z, maxq);
                        xh = o.StorageExact ? (float)(Half)x : x;
                        ei = (x - xh) / dc;
                        outlier[(long)r * cols + c] = true;
                    }
                    codes[(long)r * cols + c] = (byte)q;
                    col[r] = xh;
                    e[r] = ei;
                }
                // W[:, c+1 : blockEnd] -= err ⊗ U[c, c+1 : blockEnd]
                int kk = k;
                int rest = nb - k - 1;
                if (rest > 0)
                {
                    Action<int> upd = j => CpuKernels.Axpy(-U[(long)c * cols + b0 + kk + 1 + j], err.AsSpan(kk * rows, rows), wb.AsSpan((kk + 1 + j) * rows, rows));
                    if ((long)rest * rows < 1 << 15) for (int j = 0; j < rest; j++) upd(j); else CpuThreads.For(rest, upd);
                }
            }
            for (int k = 0; k < nb; k++) for (int r = 0; r < rows; r++) w[(long)r * cols + b0 + k] = wb[(long)k * rows + r];
            // lazy batch update: W[:, blockEnd:] -= Err (rows, nb) · U[block, blockEnd:] (nb, cols - blockEnd)
            if (b1End < cols)
            {
                for (long i = 0; i < (long)nb * rows; i++) negErr[i] = -err[i];
                CpuKernels.Gemm(negErr.AsSpan(0, nb * rows), true, rows, U.AsSpan(b0 * cols + b1End), false, cols, w.AsSpan(b1End), cols, rows, cols - b1End, nb, accumulate: true);
            }
        }

        return Assemble(w, codes, outlier, st, rows, cols, perm, o, threshold, sw);
    }

    /// <summary>Whether the zero points get second-order (qq) statistics under these options.</summary>
    internal static bool QuantizesZeros(SpqrOptions o) => o.QqZeroBits is { } qzb && (!o.RoundZero || qzb < o.WBits);

    /// <summary>The result record from the column loop's outputs: w = Ŵ (rows, cols) in permuted column order, codes and
    /// the outlier mask (rows, cols), statistics; outliers listed in (row, permuted column) order, Ŵ returned in the
    /// original column order.</summary>
    internal static SpqrLayerResult Assemble(float[] w, byte[] codes, bool[] outlier, Stats st, int rows, int cols, int[] perm, SpqrOptions o,
                                             double threshold, System.Diagnostics.Stopwatch sw)
    {
        var oRows = new List<int>(); var oCols = new List<int>(); var oVals = new List<float>();
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                if (outlier[(long)r * cols + c]) { oRows.Add(r); oCols.Add(c); oVals.Add(w[(long)r * cols + c]); }
        var deq = new float[(long)rows * cols];
        for (int r = 0; r < rows; r++) for (int c = 0; c < cols; c++) deq[(long)r * cols + perm[c]] = w[(long)r * cols + c];
        return new SpqrLayerResult
        {
            Rows = rows, Cols = cols, Options = o, Permutation = perm, Codes = codes, Scale = st.Scale, Zero = st.Zero,
            ScaleCodes = st.ScaleCodes, ZeroCodes = st.ZeroCodes, ScaleStatScale = st.SS, ScaleStatZero = st.SZ, ZeroStatScale = st.ZS, ZeroStatZero = st.ZZ,
            OutlierRows = [.. oRows], OutlierCols = [.. oCols], OutlierValues = [.. oVals], Dequantized = deq,
            OutlierThresholdUsed = threshold, Seconds = sw.Elapsed.TotalSeconds,
        };
    }

    // q = clamp(round(x / s + z), 0, maxq), round half to even like torch.round
    private static int QuantizeCode(float x, float s, float z, int maxq)
    {
        float q = MathF.Round(x / s + z, MidpointRounding.ToEven);
        return q < 0 ? 0 : q > maxq ? maxq : (int)q;
    }

    // min-max fit of n values: (scale, zero); max == min widens to [-1, 1]
    private static (float Scale, float Zero) Fit(ReadOnlySpan<float> v, int maxq, bool roundZero)
    {
        float min = float.PositiveInfinity, max = float.NegativeInfinity;
        foreach (float x in v) { if (x < min) min = x; if (x > max) max = x; }
        if (max == min) { min = -1; max = 1; }
        float s = (max - min) / maxq;
        float z = -min / s;
        return (s, roundZero ? MathF.Round(z, MidpointRounding.ToEven) : z);
    }

    // Σ ((dequant(quant(v_k)) - v_k) / d_k)² over k != skip, with statistics fitted on v without skip
    private static double GroupError(ReadOnlySpan<float> v, ReadOnlySpan<float> d, int skip, int maxq, Span<float> tmp)
    {
        int n = 0;
        for (int k = 0; k < v.Length; k++) if (k != skip) tmp[n++] = v[k];
        var (s, z) = Fit(tmp[..n], maxq, false);
        double e = 0;
        for (int k = 0; k < v.Length; k++)
        {
            if (k == skip) continue;
            float xh = s * (QuantizeCode(v[k], s, z, maxq) - z);
            double t = (xh - v[k]) / d[k];
            e += t * t;
        }
        return e;
    }

    /// <summary>Statistics of group g (columns k..k+gw of the block) for every row, then their qq quantization.</summary>
    private static void FitGroup(float[] wb, int k, int gw, int rows, ReadOnlySpan<float> dg, SpqrOptions o, double threshold, int g, Stats st,
                                 float[] scale, float[] zero)
    {
        int maxq = (1 << o.WBits) - 1;
        bool loo = !o.SimplifiedOutliers && !double.IsPositiveInfinity(threshold);
        var dArr = dg.ToArray();
        Action<int> rowFit = r0 =>
        {
            Span<float> v = stackalloc float[gw]; Span<float> tmp = stackalloc float[gw];
            Span<bool> cand = stackalloc bool[gw];
            for (int r = r0; r < Math.Min(rows, r0 + 256); r++)
            {
                for (int j = 0; j < gw; j++) v[j] = wb[(long)(k + j) * rows + r];
                if (loo)
                {
                    // leave-one-out pre-screen: a weight is a likely outlier when leaving it out of the fit lowers the
                    // group's H-weighted error by more than the threshold; such weights are replaced by the mean of the others
                    double baseline = GroupError(v, dArr, -1, maxq, tmp);
                    int nonCand = 0; double sum = 0;
                    for (int i = 0; i < gw; i++)
                    {
                        cand[i] = baseline - GroupError(v, dArr, i, maxq, tmp) > threshold;
                        if (!cand[i]) { nonCand++; sum += v[i]; }
                    }
                    float mean = (float)(sum / Math.Max(nonCand, 1));
                    for (int i = 0; i < gw; i++) if (cand[i]) v[i] = mean;
                }
                var (s, z) = Fit(v, maxq, o.RoundZero);
                scale[r] = s; zero[r] = z;
            }
        };
        int chunks = (rows + 255) / 256;
        if ((long)rows * gw * (loo ? gw : 1) < 1 << 16) for (int c = 0; c < chunks; c++) rowFit(c * 256); else CpuThreads.For(chunks, c => rowFit(c * 256));

        // second order: scales (and zeros) quantized to qq bits over groups of β2 consecutive rows
        int b2 = o.QqGroupSize, rowGroups = (rows + b2 - 1) / b2;
        if (o.QqScaleBits is { } qsb) QuantizeStat(scale, rows, b2, qsb, g, rowGroups, st.ScaleCodes!, st.SS!, st.SZ!, o.StorageExact);
        else if (o.StorageExact) for (int r = 0; r < rows; r++) scale[r] = (float)(Half)scale[r];
        bool qqZero = QuantizesZeros(o);
        if (qqZero) QuantizeStat(zero, rows, b2, o.QqZeroBits!.Value, g, rowGroups, st.ZeroCodes!, st.ZS!, st.ZZ!, o.StorageExact);
        else if (o.StorageExact) for (int r = 0; r < rows; r++) zero[r] = (float)(Half)zero[r];
        Array.Copy(scale, 0, st.Scale, (long)g * rows, rows);
        Array.Copy(zero, 0, st.Zero, (long)g * rows, rows);
    }

    // values (rows,) -> per β2-row group min-max fit with `bits`, codes, dequantized back into values
    private static void QuantizeStat(float[] values, int rows, int b2, int bits, int g, int rowGroups, byte[] codes, float[] s2, float[] z2, bool fp16)
    {
        int maxq = (1 << bits) - 1;
        for (int rg = 0; rg < rowGroups; rg++)
        {
            int r0 = rg * b2, n = Math.Min(b2, rows - r0);
            var (s, z) = Fit(values.AsSpan(r0, n), maxq, false);
            if (fp16) { s = (float)(Half)s; z = (float)(Half)z; }
            s2[(long)g * rowGroups + rg] = s; z2[(long)g * rowGroups + rg] = z;
            for (int r = r0; r < r0 + n; r++)
            {
                int q = QuantizeCode(values[r], s, z, maxq);
                codes[(long)g * rows + r] = (byte)q;
                values[r] = s * (q - z);
            }
        }
    }
}
