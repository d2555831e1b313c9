// What generation and evaluation need from a model: a forward pass over new tokens at a position of one sequence,
// returning logits, and a way to start the sequence over.
using SpQR.Transformer.Config;

namespace SpQR.Transformer.Models;

public interface ICausalLM : IDisposable
{
    TransformerConfig Config { get; }
    /// <summary>Tokens one forward call takes at most (prefill is chunked to this).</summary>
    int MaxBatch { get; }
    /// <summary>Context length of the KV cache.</summary>
    int MaxContext { get; }

    /// <summary>
    /// Runs tokens (T ≤ MaxBatch) at positions pos..pos+T-1 of the current sequence, appending to the KV cache.
    /// Returns logits (T, vocab) when allLogits, else the last token's (vocab,). The span is valid until the next call.
    /// </summary>
    ReadOnlySpan<float> Forward(ReadOnlySpan<int> tokens, int pos, bool allLogits);
}

/// <summary>
/// A model that can pick the greedy next token itself (a device model: the argmax runs where the logits are, and one int
/// comes back instead of the vocabulary's logits). Generation uses it for greedy decoding without a repetition penalty.
/// </summary>
public interface IGreedyStep
{
    /// <summary>Runs one token at position pos and returns the index of the largest logit (the first on ties).</summary>
    int StepGreedy(int token, int pos);
}

public static class CausalLMExtensions
{
    /// <summary>Feeds a prompt of any length in MaxBatch chunks; returns the last token's logits (vocab,).</summary>
    public static ReadOnlySpan<float> Prefill(this ICausalLM model, ReadOnlySpan<int> tokens, int pos = 0)
    {
        if (tokens.IsEmpty) throw new ArgumentException("prefill needs at least one token", nameof(tokens));
        ReadOnlySpan<float> logits = default;
        for (int i = 0; i < tokens.Length; i += model.MaxBatch)
        {
            int n = Math.Min(model.MaxBatch, tokens.Length - i);
            logits = model.Forward(tokens.Slice(i, n), pos + i, allLogits: false);
        }
        return logits;
    }
}
