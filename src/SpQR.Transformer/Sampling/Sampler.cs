// Next-token choice from logits: greedy, or temperature sampling filtered by top-k, top-p (nucleus) and min-p, with
// a repetition penalty (CTRL / transformers: logits of seen tokens divided by the penalty when positive, multiplied
// when negative). Seeded: the same seed and inputs give the same tokens. Allocates its buffers once.
using SpQR.Tensors.Cpu;

namespace SpQR.Transformer.Sampling;

public sealed record SamplingOptions
{
    public float Temperature { get; init; } = 0;     // 0 = greedy
    public int TopK { get; init; } = 0;              // 0 = off
    public float TopP { get; init; } = 1;            // 1 = off
    public float MinP { get; init; } = 0;            // 0 = off
    public float RepetitionPenalty { get; init; } = 1;
    public int Seed { get; init; } = 0;
}

public sealed class Sampler
{
    private readonly SamplingOptions _o;
    private readonly Random _rng;
    private readonly float[] _work;
    private readonly int[] _index;

    /// <summary>Pure argmax: temperature 0 and no repetition penalty (the logits alone decide).</summary>
    public bool IsGreedy => _o.Temperature == 0 && _o.RepetitionPenalty == 1;

    public Sampler(int vocabSize, SamplingOptions options)
    {
        if (options.Temperature < 0 || options.TopP is <= 0 or > 1 || options.MinP is < 0 or >= 1 || options.TopK < 0 || options.RepetitionPenalty <= 0)
            throw new ArgumentException($"invalid sampling options {options}");
        _o = options; _rng = new Random(options.Seed);
        _work = new float[vocabSize]; _index = new int[vocabSize];
        _byProbability = (a, b) => _work[b] != _work[a] ? _work[b].CompareTo(_work[a]) : a.CompareTo(b);
    }

    private readonly Comparison<int> _byProbability; // descending probability, ids ascending on ties: built once, not per token

    /// <summary>logits (vocab,) -> token id; history: tokens so far (for the repetition penalty).</summary>
    public int Sample(ReadOnlySpan<float> logits, ReadOnlySpan<int> history)
    {
        int n = _work.Length;
        logits[..n].CopyTo(_work);
        if (_o.RepetitionPenalty != 1)
            foreach (int t in history)
                if ((uint)t < (uint)n) _work[t] = _work[t] > 0 ? _work[t] / _o.RepetitionPenalty : _work[t] * _o.RepetitionPenalty;
        if (_o.Temperature == 0) return CpuKernels.Argmax(_work);

        CpuKernels.Scale(_work, 1f / _o.Temperature, _work);
        CpuKernels.Softmax(_work, _work);
        for (int i = 0; i < n; i++) _index[i] = i;
        // sort candidates by probability, descending (stable on ids for determinism)
        Array.Sort(_index, _byProbability);
        int keep = n;
        if (_o.TopK > 0) keep = Math.Min(keep, _o.TopK);
        if (_o.MinP > 0)
        {
            float floor = _o.MinP * _work[_index[0]];
            int k = 1; while (k < keep && _work[_index[k]] >= floor) k++;
            keep = k;
        }
        if (_o.TopP < 1)
        {
            double cum = 0; int k = 0;
            while (k < keep) { cum += _work[_index[k]]; k++; if (cum >= _o.TopP) break; }
            keep = k;
        }
        double total = 0;
        for (int k = 0; k < keep; k++) total += _work[_index[k]];
        double r = _rng.NextDouble() * total, acc = 0;
        for (int k = 0; k < keep; k++) { acc += _work[_index[k]]; if (r < acc) return _index[k]; }
        return _index[keep - 1];
    }
}
