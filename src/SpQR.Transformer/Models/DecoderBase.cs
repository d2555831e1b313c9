// What LLaMA and Falcon share: embeddings, the run state (every activation buffer allocated once, sized for
// MaxBatch tokens), the KV cache, rotary tables, the attention block over the cache, the final norm and the head.
// Architecture-specific layer bodies live in Llama/LlamaModel.cs and Falcon/FalconModel.cs.
using SpQR.Tensors;
using SpQR.Tensors.Cpu;
using SpQR.Transformer.Config;
using SpQR.Transformer.Layers;
using SpQR.Transformer.Loading;

namespace SpQR.Transformer.Models;

public abstract class DecoderBase : ICausalLM
{
    public TransformerConfig Config { get; }
    public int MaxBatch { get; }
    public int MaxContext { get; }
    protected readonly IWeightSource Source;
    protected readonly Tensor Embedding;          // (vocab, hidden), any float dtype, used in place
    protected readonly float[] FinalNormW;        // (hidden,)
    protected readonly float[]? FinalNormB;       // (hidden,) LayerNorm only
    protected readonly ILinear LmHead;            // (vocab, hidden)
    protected readonly KvCache Cache;
    protected readonly RopeFrequencies Rope;

    // run state, (MaxBatch, ·) row-major
    protected readonly float[] X, H, Q, K, V, Att, Scores, Logits;

    protected DecoderBase(TransformerConfig c, IWeightSource source, int maxContext, int maxBatch, string embedName, string finalNorm, string? finalNormBias,
                          Func<string, long[], ILinear> linear)
    {
        Config = c; Source = source;
        MaxContext = Math.Min(maxContext, c.MaxPositions);
        MaxBatch = Math.Max(1, Math.Min(maxBatch, MaxContext));
        Embedding = source.Get(embedName, new Shape(c.VocabSize, c.HiddenSize));
        FinalNormW = Vector(finalNorm, c.HiddenSize);
        FinalNormB = finalNormBias is null ? null : Vector(finalNormBias, c.HiddenSize);
        LmHead = c.TieWordEmbeddings ? new DenseLinear(Embedding) : linear("lm_head.weight", [c.VocabSize, c.HiddenSize]);
        Cache = new KvCache(c.NumLayers, MaxContext, c.KvDim);
        Rope = new RopeFrequencies(c.HeadDim, MaxContext, c.RopeTheta, RopeScaling.InvFreq(c));
        int B = MaxBatch;
        X = new float[B * c.HiddenSize]; H = new float[B * c.HiddenSize];
        Q = new float[B * c.QDim]; K = new float[B * c.KvDim]; V = new float[B * c.KvDim]; Att = new float[B * c.QDim];
        Scores = new float[(long)c.NumHeads * MaxContext];
        Logits = new float[(long)B * c.VocabSize];
    }

    /// <summary>A 1-D tensor as float32 (norm weights and biases are small).</summary>
    protected float[] Vector(string name, int n)
    {
        var t = Source.Get(name, new Shape(n));
        using var f = t.ToF32();
        return f.AsReadOnlySpan<float>().ToArray();
    }

    protected float[]? OptionalVector(string name, int n, bool present) => present ? Vector(name, n) : null;

    public ReadOnlySpan<float> Forward(ReadOnlySpan<int> tokens, int pos, bool allLogits)
    {
        int T = tokens.Length, d = Config.HiddenSize;
        if (T == 0 || T > MaxBatch) throw new ArgumentOutOfRangeException(nameof(tokens), T, $"a forward call takes 1..{MaxBatch} tokens");
        if (pos < 0 || pos + T > MaxContext) throw new ArgumentOutOfRangeException(nameof(pos), pos, $"positions {pos}..{pos + T - 1} exceed the context of {MaxContext}");
        // x = embed_tokens(input_ids)
        for (int t = 0; t < T; t++)
        {
            int id = tokens[t];
            if ((uint)id >= (uint)Config.VocabSize) throw new ArgumentOutOfRangeException(nameof(tokens), id, $"token id outside the vocabulary of {Config.VocabSize}");
            EmbedRow(id, X.AsSpan(t * d, d));
        }
        for (int l = 0; l < Config.NumLayers; l++) Layer(l, T, pos);
        // h = norm(x); logits = lm_head(h)
        int first = allLogits ? 0 : T - 1, rows = T - first;
        for (int t = first; t < T; t++) Norm(X.AsSpan(t * d, d), FinalNormW, FinalNormB, H.AsSpan((t - first) * d, d));
        LmHead.ForwardBatch(H.AsSpan(0, rows * d), Logits.AsSpan(0, rows * Config.VocabSize), rows);
        return Logits.AsSpan(0, rows * Config.VocabSize);
    }

    /// <summary>Embeds token ids: ids (T,) -> dst (T, hidden).</summary>
    public void EmbedTokens(ReadOnlySpan<int> ids, Span<float> dst)
    {
        int d = Config.HiddenSize;
        for (int t = 0; t < ids.Length; t++)
        {
            if ((uint)ids[t] >= (uint)Config.VocabSize) throw new ArgumentOutOfRangeException(nameof(ids), ids[t], $"token id outside the vocabulary of {Config.VocabSize}");
            EmbedRow(ids[t], dst.Slice(t * d, d));
        }
    }

    /// <summary>Runs decoder block l alone on x (T, hidden) at positions pos.. of one sequence, in place (layer-by-layer quantization).</summary>
    public void RunLayer(int l, Span<float> x, int T, int pos)
    {
        int d = Config.HiddenSize;
        if (T > MaxBatch || pos + T > MaxContext) throw new ArgumentOutOfRangeException(nameof(T), $"{T} tokens at {pos} exceed batch {MaxBatch} / context {MaxContext}");
        x[..(T * d)].CopyTo(X);
        Layer(l, T, pos);
        X.AsSpan(0, T * d).CopyTo(x);
    }

    /// <summary>One decoder block over X (T, hidden) at positions pos.., in place.</summary>
    protected abstract void Layer(int l, int T, int pos);

    private void EmbedRow(int id, Span<float> dst) => Embedding.Row(id).CopyToF32(dst);

    /// <summary>RMSNorm or LayerNorm by the config (data, not a subclass): x (n,) -> dst (n,).</summary>
    protected void Norm(ReadOnlySpan<float> x, float[] w, float[]? b, Span<float> dst)
    {
        if (Config.Norm == NormKind.RmsNorm) CpuKernels.RmsNorm(x, w, Config.NormEps, dst);
        else CpuKernels.LayerNorm(x, w, b ?? [], Config.NormEps, dst);
    }

    /// <summary>Rotates Q (T, qDim) and K (T, kvDim) at positions pos.., stores K/V in the cache, attends: Att (T, qDim).</summary>
    protected void AttendWithCache(int l, int T, int pos)
    {
        var c = Config;
        for (int t = 0; t < T; t++)
        {
            // q, k = apply_rotary_pos_emb(q, k, cos, sin)
            CpuKernels.Rope(Q.AsSpan(t * c.QDim, c.QDim), c.NumHeads, c.HeadDim, Rope.Cos(pos + t), Rope.Sin(pos + t), c.RopeLayout);
            CpuKernels.Rope(K.AsSpan(t * c.KvDim, c.KvDim), c.NumKvHeads, c.HeadDim, Rope.Cos(pos + t), Rope.Sin(pos + t), c.RopeLayout);
            K.AsSpan(t * c.KvDim, c.KvDim).CopyTo(Cache.K(l, pos + t));
            V.AsSpan(t * c.KvDim, c.KvDim).CopyTo(Cache.V(l, pos + t));
        }
        // softmax(q kᵀ / sqrt(d)) v over positions 0..pos+t
        CpuKernels.CausalAttention(Q.AsSpan(0, T * c.QDim), Cache.Keys(l, pos + T), Cache.Values(l, pos + T), Att.AsSpan(0, T * c.QDim),
            T, pos, c.NumHeads, c.NumKvHeads, c.HeadDim, Scores);
    }

    public void Dispose()
    {
        Source.Dispose();
        GC.SuppressFinalize(this);
    }
}

/// <summary>Inverse rotary frequencies with the config's scaling (none, linear, llama3), as transformers computes them.</summary>
public static class RopeScaling
{
    public static float[] InvFreq(TransformerConfig c)
    {
        var inv = RopeFrequencies.DefaultInvFreq(c.HeadDim, c.RopeTheta);
        if (c.RopeScaling is not { } s) return inv;
        switch (s.RopeType)
        {
            case "linear":
                for (int i = 0; i < inv.Length; i++) inv[i] = (float)(inv[i] / s.Factor);
                return inv;
            case "llama3":
                {
                    double factor = s.Factor, low = s.LowFreqFactor ?? 1, high = s.HighFreqFactor ?? 4, old = s.OriginalMaxPositionEmbeddings ?? 8192;
                    double lowWavelen = old / low, highWavelen = old / high;
                    for (int i = 0; i < inv.Length; i++)
                    {
                        double f = inv[i], wavelen = 2 * Math.PI / f;
                        double scaled = wavelen > lowWavelen ? f / factor : f;
                        if (!(wavelen < highWavelen) && !(wavelen > lowWavelen))
                        {
                            double smooth = (old / wavelen - low) / (high - low);
                            scaled = (1 - smooth) * scaled / factor + smooth * scaled;
                        }
                        inv[i] = (float)scaled;
                    }
                    return inv;
                }
            default: throw new NotSupportedException($"rope_scaling type \"{s.RopeType}\"");
        }
    }
}
