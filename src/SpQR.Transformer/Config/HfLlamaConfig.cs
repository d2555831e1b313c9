// Mirror of a Hugging Face LlamaForCausalLM config.json: the file's names and optionality, nothing derived.
// Resolve() turns it into the plain TransformerConfig the model code uses.
namespace SpQR.Transformer.Config;

public sealed record HfRopeScaling(string RopeType, double Factor, double? LowFreqFactor, double? HighFreqFactor, int? OriginalMaxPositionEmbeddings);

public sealed record HfLlamaConfig(
    int hidden_size,                 // d_model
    int intermediate_size,           // SwiGLU width
    int num_hidden_layers,
    int num_attention_heads,
    int? num_key_value_heads,        // absent: multi-head attention (= num_attention_heads)
    int? head_dim,                   // absent: hidden_size / num_attention_heads
    int vocab_size,
    int? max_position_embeddings,
    double? rms_norm_eps,            // default 1e-6 (transformers' LlamaConfig)
    double? rope_theta,              // top level (most checkpoints) or inside rope_parameters (transformers 5)
    HfRopeScaling? rope_scaling,
    bool? tie_word_embeddings,       // default false
    bool? attention_bias,
    bool? mlp_bias,
    string? hidden_act)
{
    internal static HfLlamaConfig Parse(JsonConfig j)
    {
        var rp = j.Object("rope_parameters");
        double? theta = j.DoubleOrNull("rope_theta") ?? rp?.DoubleOrNull("rope_theta");
        var scaling = ParseScaling(j.Object("rope_scaling"), "rope_scaling") ?? ParseScaling(rp, "rope_parameters");
        return new HfLlamaConfig(j.Int("hidden_size"), j.Int("intermediate_size"), j.Int("num_hidden_layers"), j.Int("num_attention_heads"),
            j.IntOrNull("num_key_value_heads"), j.IntOrNull("head_dim"), j.Int("vocab_size"), j.IntOrNull("max_position_embeddings"),
            j.DoubleOrNull("rms_norm_eps"), theta, scaling, j.BoolOrNull("tie_word_embeddings"), j.BoolOrNull("attention_bias"),
            j.BoolOrNull("mlp_bias"), j.StringOrNull("hidden_act"));
    }

    private static HfRopeScaling? ParseScaling(JsonConfig? s, string key)
    {
        if (s is not { } o) return null;
        string? type = o.StringOrNull("rope_type") ?? o.StringOrNull("type");
        if (type is null or "default") return null;
        return new HfRopeScaling(type, o.DoubleOrNull("factor") ?? 1.0, o.DoubleOrNull("low_freq_factor"), o.DoubleOrNull("high_freq_factor"),
            o.IntOrNull("original_max_position_embeddings"));
    }

    public TransformerConfig Resolve(string file)
    {
        if (hidden_act is not null and not "silu")
            throw new NotSupportedException($"{file}: hidden_act \"{hidden_act}\" is not supported for LLaMA (expected \"silu\")");
        if (rope_scaling is { RopeType: not ("linear" or "llama3") } rs)
            throw new NotSupportedException($"{file}: rope_scaling type \"{rs.RopeType}\" is not supported (linear and llama3 are)");
        int heads = num_attention_heads;
        return new TransformerConfig
        {
            Architecture = Architecture.Llama,
            HiddenSize = hidden_size,
            IntermediateSize = intermediate_size,
            NumLayers = num_hidden_layers,
            NumHeads = heads,
            NumKvHeads = num_key_value_heads ?? heads,
            HeadDim = head_dim ?? hidden_size / heads,
            VocabSize = vocab_size,
            MaxPositions = max_position_embeddings ?? 2048,
            NormEps = (float)(rms_norm_eps ?? 1e-6),
            Norm = NormKind.RmsNorm,
            Activation = ActivationKind.SwiGlu,
            RopeLayout = Tensors.Cpu.RopeLayout.HalfSplit,
            RopeTheta = rope_theta ?? 10000.0,
            RopeScaling = rope_scaling,
            TieWordEmbeddings = tie_word_embeddings ?? false,
            AttentionBias = attention_bias ?? false,
            MlpBias = mlp_bias ?? false,
        }.Validate(file);
    }
}
