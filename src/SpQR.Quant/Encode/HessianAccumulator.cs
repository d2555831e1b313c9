// H = (2/N) Σ x xᵀ over the calibration inputs of one linear layer, N counting sequences — the running average of
// GPTQ's add_batch, accumulated as a float64 sum of float32 GEMM blocks (Xᵀ·X per sequence) and scaled at the end.
using SpQR.Tensors.Cpu;

namespace SpQR.Quant.Encode;

public sealed class HessianAccumulator
{
    private readonly double[] _sum; // (cols, cols) Σ x xᵀ
    private readonly float[] _block;         // (cols, cols) one sequence's Xᵀ·X
    public int Columns { get; }
    public int Sequences { get; private set; }

    public HessianAccumulator(int columns)
    {
        Columns = columns;
        _sum = new double[(long)columns * columns];
        _block = new float[(long)columns * columns];
    }

    // X (T, cols) — inputs of T tokens (one sequence, or a chunk of one)
    public void AddTokens(ReadOnlySpan<float> X, int T)
    {
        int n = Columns;
        if (X.Length < (long)T * n) throw new ArgumentException($"X holds {X.Length} values, expected {T}x{n}");
        CpuKernels.Gemm(X[..(T * n)], true, n, X[..(T * n)], false, n, _block, n, n, n, T);
        for (long i = 0; i < _sum.Length; i++) _sum[i] += _block[i];
    }

    /// <summary>Counts one finished calibration sequence (N in 2/N).</summary>
    public void CountSequence() => Sequences++;

    // X (T, cols) — one whole calibration sequence
    public void AddSequence(ReadOnlySpan<float> X, int T) { AddTokens(X, T); CountSequence(); }

    /// <summary>H (cols, cols) = 2/N Σ x xᵀ.</summary>
    public double[] Hessian()
    {
        if (Sequences == 0) throw new InvalidOperationException("no calibration data reached this layer");
        var h = new double[_sum.Length];
        double f = 2.0 / Sequences;
        for (long i = 0; i < h.Length; i++) h[i] = _sum[i] * f;
        return h;
    }

    public void Reset() { Array.Clear(_sum); Sequences = 0; }
}
