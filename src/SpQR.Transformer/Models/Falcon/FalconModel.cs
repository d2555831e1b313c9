// Falcon (FalconForCausalLM), both layouts, as config data:
//   Falcon-7B: multi-query (1 KV head), one input_layernorm feeding attention and MLP in parallel
//   Falcon-40B/180B (new_decoder_architecture): num_kv_heads KV heads; ln_attn + ln_mlp
// The fused query_key_value rows are grouped per KV head: [q × (heads/kv), k, v] × kv — which also describes the
// multi-query layout (kv = 1: all q, then k, then v) and the old per-head layout (kv = heads: q, k, v per head).
// LayerNorm with bias, GELU (erf) MLP, half-split rotary, optional linear biases. Ports modeling_falcon.py.
using SpQR.Tensors.Cpu;
using SpQR.Transformer.Config;
using SpQR.Transformer.Layers;
using SpQR.Transformer.Loading;

namespace SpQR.Transformer.Models.Falcon;

public sealed class FalconModel : DecoderBase
{
    private sealed record Block(
        float[] AttnNormW, float[] AttnNormB,   // (hidden,) ln_attn or input_layernorm
        float[]? MlpNormW, float[]? MlpNormB,   // (hidden,) ln_mlp, new architecture with two norms
        ILinear QueryKeyValue,                  // ((heads + 2·kv)·hd, hidden)
        ILinear Dense,                          // (hidden, heads·hd)
        ILinear DenseHTo4H,                     // (ffn, hidden)
        ILinear Dense4HToH);                    // (hidden, ffn)

    private readonly Block[] _blocks;
    private readonly float[] _qkv, _mlpIn, _ff, _attnOut, _mlpOut;

    public FalconModel(TransformerConfig c, IWeightSource source, ILinearFactory linears, int maxContext = 2048, int maxBatch = 256)
        : base(c, source, maxContext, maxBatch, "transformer.word_embeddings.weight", "transformer.ln_f.weight", "transformer.ln_f.bias",
               (n, s) => linears.Create(source, n, s, null))
    {
        if (c.Architecture != Architecture.Falcon) throw new ArgumentException($"FalconModel needs a Falcon config, got {c.Architecture}");
        _blocks = new Block[c.NumLayers];
        int qkvRows = c.QDim + 2 * c.KvDim;
        for (int l = 0; l < c.NumLayers; l++)
        {
            string p = $"transformer.h.{l}.";
            ILinear Lin(string name, long rows, long cols, bool bias) =>
                linears.Create(source, p + name + ".weight", [rows, cols], bias ? Vector(p + name + ".bias", (int)rows) : null);
            string attnNorm = c.SeparateMlpNorm ? "ln_attn" : "input_layernorm";
            _blocks[l] = new Block(
                Vector(p + attnNorm + ".weight", c.HiddenSize), Vector(p + attnNorm + ".bias", c.HiddenSize),
                c.SeparateMlpNorm ? Vector(p + "ln_mlp.weight", c.HiddenSize) : null,
                c.SeparateMlpNorm ? Vector(p + "ln_mlp.bias", c.HiddenSize) : null,
                Lin("self_attention.query_key_value", qkvRows, c.HiddenSize, c.AttentionBias),
                Lin("self_attention.dense", c.HiddenSize, c.QDim, c.AttentionBias),
                Lin("mlp.dense_h_to_4h", c.IntermediateSize, c.HiddenSize, c.MlpBias),
                Lin("mlp.dense_4h_to_h", c.HiddenSize, c.IntermediateSize, c.MlpBias));
        }
        _qkv = new float[MaxBatch * qkvRows];
        _mlpIn = new float[MaxBatch * c.HiddenSize];
        _ff = new float[MaxBatch * c.IntermediateSize];
        _attnOut = new float[MaxBatch * c.HiddenSize];
        _mlpOut = new float[MaxBatch * c.HiddenSize];
    }

    protected override void Layer(int l, int T, int pos)
    {
        var c = Config; var b = _blocks[l];
        int d = c.HiddenSize, hd = c.HeadDim, kv = c.NumKvHeads, group = c.KvGroups, qkvRows = c.QDim + 2 * c.KvDim;
        // attention_layernorm_out = self.ln_attn(hidden_states)  (or input_layernorm)
        for (int t = 0; t < T; t++) Norm(X.AsSpan(t * d, d), b.AttnNormW, b.AttnNormB, H.AsSpan(t * d, d));
        // fused_qkv = self.query_key_value(hidden_states); split into (kv, group + 2, hd)
        b.QueryKeyValue.ForwardBatch(H, _qkv, T);
        for (int t = 0; t < T; t++)
        {
            var row = _qkv.AsSpan(t * qkvRows, qkvRows);
            for (int g = 0; g < kv; g++)
            {
                var block = row.Slice(g * (group + 2) * hd, (group + 2) * hd);
                block[..(group * hd)].CopyTo(Q.AsSpan(t * c.QDim + g * group * hd, group * hd));
                block.Slice(group * hd, hd).CopyTo(K.AsSpan(t * c.KvDim + g * hd, hd));
                block.Slice((group + 1) * hd, hd).CopyTo(V.AsSpan(t * c.KvDim + g * hd, hd));
            }
        }
        AttendWithCache(l, T, pos);
        // attn_output = self.dense(attn_output)
        b.Dense.ForwardBatch(Att, _attnOut, T);
        // mlp_layernorm_out = self.ln_mlp(hidden_states) with two norms, else the attention norm's output
        Span<float> mlpIn = H.AsSpan(0, T * d);
        if (b.MlpNormW is not null)
        {
            for (int t = 0; t < T; t++) Norm(X.AsSpan(t * d, d), b.MlpNormW, b.MlpNormB, _mlpIn.AsSpan(t * d, d));
            mlpIn = _mlpIn.AsSpan(0, T * d);
        }
        // mlp_output = dense_4h_to_h(gelu(dense_h_to_4h(x)))
        b.DenseHTo4H.ForwardBatch(mlpIn, _ff, T);
        CpuKernels.Gelu(_ff.AsSpan(0, T * c.IntermediateSize), _ff.AsSpan(0, T * c.IntermediateSize), GeluForm.Erf);
        b.Dense4HToH.ForwardBatch(_ff, _mlpOut, T);
        // mlp_output += attention_output; output = mlp_output + residual
        CpuKernels.Add(_mlpOut.AsSpan(0, T * d), _attnOut.AsSpan(0, T * d), _mlpOut.AsSpan(0, T * d));
        CpuKernels.Add(_mlpOut.AsSpan(0, T * d), X.AsSpan(0, T * d), X.AsSpan(0, T * d));
    }
}
