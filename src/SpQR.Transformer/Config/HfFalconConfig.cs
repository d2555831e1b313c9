// Mirror of a Hugging Face FalconForCausalLM config.json. Two layouts:
//   Falcon-7B:  multi_query (1 KV head), one input_layernorm, attention and MLP in parallel on it
//   Falcon-40B/180B: new_decoder_architecture — num_kv_heads KV heads in grouped fused qkv order, ln_attn + ln_mlp
// When both multi_query and new_decoder_architecture are set, num_kv_heads rules (as in transformers).
namespace SpQR.Transformer.Config;

public sealed record HfFalconConfig(
    int hidden_size,
    int num_hidden_layers,
    int num_attention_heads,
    int? num_kv_heads,               // new_decoder_architecture only
    int? ffn_hidden_size,            // absent: 4 * hidden_size
    int vocab_size,
    int? max_position_embeddings,
    double? layer_norm_epsilon,      // default 1e-5
    double? rope_theta,
    bool? alibi,                     // true is not supported
    bool? multi_query,               // default true (Falcon-7B)
    bool? new_decoder_architecture,
    bool? parallel_attn,             // default true
    bool? bias,                      // linear biases, default false
    int? num_ln_in_parallel_attn,    // new architecture: 2 = ln_attn + ln_mlp, 1 = one shared norm
    bool? tie_word_embeddings,       // default true
    string? activation)
{
    internal static HfFalconConfig Parse(JsonConfig j)
    {
        var rp = j.Object("rope_parameters");
        return new HfFalconConfig(j.Int("hidden_size"), j.Int("num_hidden_layers"), j.Int("num_attention_heads"), j.IntOrNull("num_kv_heads"),
            j.IntOrNull("ffn_hidden_size"), j.Int("vocab_size"), j.IntOrNull("max_position_embeddings"), j.DoubleOrNull("layer_norm_epsilon"),
            j.DoubleOrNull("rope_theta") ?? rp?.DoubleOrNull("rope_theta"), j.BoolOrNull("alibi"), j.BoolOrNull("multi_query"),
            j.BoolOrNull("new_decoder_architecture"), j.BoolOrNull("parallel_attn"), j.BoolOrNull("bias"), j.IntOrNull("num_ln_in_parallel_attn"),
            j.BoolOrNull("tie_word_embeddings"), j.StringOrNull("activation"));
    }

    public TransformerConfig Resolve(string file)
    {
        if (alibi == true) throw new NotSupportedException($"{file}: alibi: true is not supported (Falcon with rotary embeddings only)");
        if (parallel_attn == false && new_decoder_architecture != true)
            throw new NotSupportedException($"{file}: parallel_attn: false is not supported");
        if (activation is not null and not "gelu") throw new NotSupportedException($"{file}: activation \"{activation}\" is not supported (expected \"gelu\")");
        bool newArch = new_decoder_architecture ?? false;
        int heads = num_attention_heads;
        int kv = newArch ? (num_kv_heads ?? heads) : (multi_query ?? true) ? 1 : heads;
        return new TransformerConfig
        {
            Architecture = Architecture.Falcon,
            HiddenSize = hidden_size,
            IntermediateSize = ffn_hidden_size ?? 4 * hidden_size,
            NumLayers = num_hidden_layers,
            NumHeads = heads,
            NumKvHeads = kv,
            HeadDim = hidden_size / heads,
            VocabSize = vocab_size,
            MaxPositions = max_position_embeddings ?? 2048,
            NormEps = (float)(layer_norm_epsilon ?? 1e-5),
            Norm = NormKind.LayerNorm,
            Activation = ActivationKind.Gelu,
            RopeLayout = Tensors.Cpu.RopeLayout.HalfSplit,
            RopeTheta = rope_theta ?? 10000.0,
            TieWordEmbeddings = tie_word_embeddings ?? true,
            AttentionBias = bias ?? false,
            MlpBias = bias ?? false,
            ParallelAttention = true,
            NewDecoderArchitecture = newArch,
            SeparateMlpNorm = newArch && (num_ln_in_parallel_attn ?? 2) == 2,
        }.Validate(file);
    }
}
