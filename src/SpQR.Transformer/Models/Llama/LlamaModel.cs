// LLaMA (LlamaForCausalLM) and llama2.c checkpoints: RMSNorm, rotary (half-split for HF weights, interleaved for
// llama2.c's unpermuted ones — config data), grouped-query attention, SwiGLU MLP, tied or untied head.
// Ports transformers' modeling_llama.py; its lines are quoted where they help.
using SpQR.Tensors.Cpu;
using SpQR.Transformer.Config;
using SpQR.Transformer.Layers;
using SpQR.Transformer.Loading;

namespace SpQR.Transformer.Models.Llama;

public sealed class LlamaModel : DecoderBase
{
    private sealed record Block(
        float[] InputNorm,            // (hidden,)
        ILinear QProj,                // (heads*hd, hidden)
        ILinear KProj,                // (kv*hd, hidden)
        ILinear VProj,                // (kv*hd, hidden)
        ILinear OProj,                // (hidden, heads*hd)
        float[] PostAttentionNorm,    // (hidden,)
        ILinear GateProj,             // (intermediate, hidden)
        ILinear UpProj,               // (intermediate, hidden)
        ILinear DownProj);            // (hidden, intermediate)

    private readonly Block[] _blocks;
    private readonly float[] _gate, _up, _o; // (MaxBatch, intermediate) x2, (MaxBatch, hidden)

    public LlamaModel(TransformerConfig c, IWeightSource source, ILinearFactory linears, int maxContext = 2048, int maxBatch = 256)
        : base(c, source, maxContext, maxBatch, "model.embed_tokens.weight", "model.norm.weight", null, (n, s) => linears.Create(source, n, s, null))
    {
        if (c.Architecture != Architecture.Llama) throw new ArgumentException($"LlamaModel needs a LLaMA config, got {c.Architecture}");
        _blocks = new Block[c.NumLayers];
        for (int l = 0; l < c.NumLayers; l++)
        {
            string p = $"model.layers.{l}.";
            ILinear Lin(string name, long rows, long cols, bool bias) =>
                linears.Create(source, p + name + ".weight", [rows, cols], bias ? Vector(p + name + ".bias", (int)rows) : null);
            _blocks[l] = new Block(
                Vector(p + "input_layernorm.weight", c.HiddenSize),
                Lin("self_attn.q_proj", c.QDim, c.HiddenSize, c.AttentionBias),
                Lin("self_attn.k_proj", c.KvDim, c.HiddenSize, c.AttentionBias),
                Lin("self_attn.v_proj", c.KvDim, c.HiddenSize, c.AttentionBias),
                Lin("self_attn.o_proj", c.HiddenSize, c.QDim, c.AttentionBias),
                Vector(p + "post_attention_layernorm.weight", c.HiddenSize),
                Lin("mlp.gate_proj", c.IntermediateSize, c.HiddenSize, c.MlpBias),
                Lin("mlp.up_proj", c.IntermediateSize, c.HiddenSize, c.MlpBias),
                Lin("mlp.down_proj", c.HiddenSize, c.IntermediateSize, c.MlpBias));
        }
        _gate = new float[MaxBatch * c.IntermediateSize];
        _up = new float[MaxBatch * c.IntermediateSize];
        _o = new float[MaxBatch * c.HiddenSize];
    }

    protected override void Layer(int l, int T, int pos)
    {
        var c = Config; var b = _blocks[l];
        int d = c.HiddenSize, ff = c.IntermediateSize;
        // hidden_states = self.input_layernorm(hidden_states)
        for (int t = 0; t < T; t++) Norm(X.AsSpan(t * d, d), b.InputNorm, null, H.AsSpan(t * d, d));
        // q, k, v projections
        b.QProj.ForwardBatch(H, Q, T); b.KProj.ForwardBatch(H, K, T); b.VProj.ForwardBatch(H, V, T);
        // rotary, cache, causal attention
        AttendWithCache(l, T, pos);
        // hidden_states = residual + self.o_proj(attn_output)
        b.OProj.ForwardBatch(Att, _o, T);
        CpuKernels.Add(X.AsSpan(0, T * d), _o.AsSpan(0, T * d), X.AsSpan(0, T * d));
        // hidden_states = self.post_attention_layernorm(hidden_states)
        for (int t = 0; t < T; t++) Norm(X.AsSpan(t * d, d), b.PostAttentionNorm, null, H.AsSpan(t * d, d));
        // down_proj(act_fn(gate_proj(x)) * up_proj(x))
        b.GateProj.ForwardBatch(H, _gate, T); b.UpProj.ForwardBatch(H, _up, T);
        CpuKernels.SwiGlu(_gate.AsSpan(0, T * ff), _up.AsSpan(0, T * ff), _gate.AsSpan(0, T * ff));
        b.DownProj.ForwardBatch(_gate, _o, T);
        // hidden_states = residual + mlp_out
        CpuKernels.Add(X.AsSpan(0, T * d), _o.AsSpan(0, T * d), X.AsSpan(0, T * d));
    }
}
