// Perplexity by the protocol of the GPTQ and SpQR papers: cut the token stream into non-overlapping windows of
// seqlen tokens (a trailing partial window is dropped, as `nsamples = numel // seqlen` does there), evaluate each
// window from an empty cache, average the NLL of the seqlen - 1 predicted tokens over all windows, exponentiate.
using SpQR.Transformer.Models;

namespace SpQR.Transformer.Eval;

public sealed record PerplexityResult(double Perplexity, double MeanNll, int Windows, long PredictedTokens, double Seconds);

public static class Perplexity
{
    public static PerplexityResult Evaluate(ICausalLM model, ReadOnlySpan<int> stream, int seqlen, IProgress<(int Done, int Total)>? progress = null)
    {
        seqlen = Math.Min(seqlen, model.MaxContext);
        if (seqlen < 2) throw new ArgumentOutOfRangeException(nameof(seqlen), seqlen, "windows need at least 2 tokens");
        int windows = stream.Length / seqlen;
        if (windows == 0) throw new ArgumentException($"the stream has {stream.Length} tokens, fewer than one window of {seqlen}");
        int vocab = model.Config.VocabSize;
        double nll = 0; long count = 0;
        var sw = System.Diagnostics.Stopwatch.StartNew();
        for (int w = 0; w < windows; w++)
        {
            var win = stream.Slice(w * seqlen, seqlen);
            for (int start = 0; start < seqlen; start += model.MaxBatch)
            {
                int n = Math.Min(model.MaxBatch, seqlen - start);
                var logits = model.Forward(win.Slice(start, n), start, allLogits: true);
                for (int t = 0; t < n; t++)
                {
                    int target = start + t + 1;
                    if (target >= seqlen) break;
                    nll += -LogSoftmaxAt(logits.Slice(t * vocab, vocab), win[target]);
                    count++;
                }
            }
            progress?.Report((w + 1, windows));
        }
        double mean = nll / count;
        return new PerplexityResult(Math.Exp(mean), mean, windows, count, sw.Elapsed.TotalSeconds);
    }

    // log softmax(z)[target] = z[target] - max - log Σ exp(z - max), in double
    private static double LogSoftmaxAt(ReadOnlySpan<float> z, int target)
    {
        float max = float.NegativeInfinity;
        foreach (float v in z) max = MathF.Max(max, v);
        double sum = 0;
        foreach (float v in z) sum += Math.Exp(v - max);
        return z[target] - max - Math.Log(sum);
    }
}
