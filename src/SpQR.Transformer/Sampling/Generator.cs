// Text generation over a causal LM: prefill the prompt, then decode one token at a time through the KV cache,
// streaming decoded text. Synchronous (IEnumerable), asynchronous (IAsyncEnumerable) and a token callback.
using System.Runtime.CompilerServices;
using SpQR.Transformer.Models;
using SpQR.Transformer.Tokenizers;

namespace SpQR.Transformer.Sampling;

public sealed record GenerationOptions
{
    public int MaxTokens { get; init; } = 128;
    public SamplingOptions Sampling { get; init; } = new();
    public IReadOnlyList<string> StopStrings { get; init; } = [];
    public bool AddBos { get; init; } = true;
    public bool StopAtEos { get; init; } = true;
}

public sealed record GenerationStats(int PromptTokens, int GeneratedTokens, double PrefillSeconds, double DecodeSeconds)
{
    public double DecodeTokensPerSecond => GeneratedTokens > 1 ? (GeneratedTokens - 1) / DecodeSeconds : 0;
    public double PrefillTokensPerSecond => PrefillSeconds > 0 ? PromptTokens / PrefillSeconds : 0;
}

public sealed class Generator(ICausalLM model, ITokenizer tokenizer)
{
    public GenerationStats? LastStats { get; private set; }

    /// <summary>Yields text pieces as they decode; stops at max tokens, EOS, a stop string or the context end.</summary>
    public IEnumerable<string> Generate(string prompt, GenerationOptions options, Action<int>? onToken = null)
    {
        var ids = new List<int>(tokenizer.Encode(prompt, options.AddBos));
        if (ids.Count == 0) throw new ArgumentException("the prompt encodes to no tokens; pass a prompt or enable BOS");
        if (ids.Count >= model.MaxContext) throw new ArgumentException($"the prompt has {ids.Count} tokens; the context holds {model.MaxContext}");
        var sampler = new Sampler(model.Config.VocabSize, options.Sampling);
        var decoder = new StreamingDecoder(tokenizer);
        var text = new System.Text.StringBuilder();
        int promptTokens = ids.Count, generated = 0;
        var sw = System.Diagnostics.Stopwatch.StartNew();
        int next = sampler.Sample(model.Prefill(ids.ToArray()), ids.ToArray());
        double prefill = sw.Elapsed.TotalSeconds;
        for (int pos = ids.Count; generated < options.MaxTokens; pos++)
        {
            generated++;
            onToken?.Invoke(next);
            if (options.StopAtEos && next == tokenizer.EosId) break;
            ids.Add(next);
            string piece = decoder.Push(next);
            if (piece.Length > 0)
            {
                text.Append(piece);
                string? stop = options.StopStrings.FirstOrDefault(s => s.Length > 0 && text.ToString().Contains(s, StringComparison.Ordinal));
                if (stop is not null)
                {
                    // emit the text up to the stop string, never the stop string itself
                    string all = text.ToString();
                    int cut = all.IndexOf(stop, StringComparison.Ordinal);
                    int already = all.Length - piece.Length;
                    if (cut > already) yield return all[already..cut];
                    break;
                }
                yield return piece;
            }
            if (pos >= model.MaxContext || generated >= options.MaxTokens) break;
            next = DecodeStep(model, sampler, next, pos, ids);
        }
        string tail = decoder.Flush();
        if (tail.Length > 0) yield return tail;
        LastStats = new GenerationStats(promptTokens, generated, prefill, sw.Elapsed.TotalSeconds - prefill);
    }

    // feeds one token at pos through the KV cache and samples the next (not an iterator: spans live only here)
    private static int DecodeStep(ICausalLM model, Sampler sampler, int token, int pos, List<int> history)
    {
        if (sampler.IsGreedy && model is IGreedyStep greedy) return greedy.StepGreedy(token, pos);
        Span<int> one = [token];
        return sampler.Sample(model.Forward(one, pos, allLogits: false), System.Runtime.InteropServices.CollectionsMarshal.AsSpan(history));
    }

    public async IAsyncEnumerable<string> GenerateAsync(string prompt, GenerationOptions options, [EnumeratorCancellation] CancellationToken cancel = default)
    {
        foreach (var piece in Generate(prompt, options))
        {
            cancel.ThrowIfCancellationRequested();
            yield return piece;
            await Task.Yield();
        }
    }

    /// <summary>Greedy/sampled token ids only, from prompt ids (tests, evaluation).</summary>
    public static int[] GenerateIds(ICausalLM model, ReadOnlySpan<int> prompt, int maxTokens, SamplingOptions? sampling = null)
    {
        var sampler = new Sampler(model.Config.VocabSize, sampling ?? new SamplingOptions());
        var ids = new List<int>(prompt.ToArray());
        var outIds = new int[maxTokens];
        if (maxTokens == 0) return outIds;
        int next = sampler.Sample(model.Prefill(prompt), prompt);
        for (int i = 0; i < maxTokens; i++)
        {
            outIds[i] = next; ids.Add(next);
            if (i + 1 < maxTokens) next = DecodeStep(model, sampler, next, ids.Count - 1, ids);
        }
        return outIds;
    }
}
