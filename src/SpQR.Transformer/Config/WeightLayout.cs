// The tensors a checkpoint of a given TransformerConfig holds, by their Hugging Face names, with shapes
// (out_features, in_features). The one place that spells checkpoint names; loaders and `spqr inspect` use it.
namespace SpQR.Transformer.Config;

public enum WeightRole { Embedding, Norm, NormBias, Linear, LinearBias, Head }

public sealed record WeightSpec(string Name, long[] Shape, WeightRole Role);

public static class WeightLayout
{
    public static IReadOnlyList<WeightSpec> For(TransformerConfig c)
    {
        var w = new List<WeightSpec>();
        long h = c.HiddenSize, ff = c.IntermediateSize;
        if (c.Architecture == Architecture.Llama)
        {
            w.Add(new("model.embed_tokens.weight", [c.VocabSize, h], WeightRole.Embedding));
            for (int l = 0; l < c.NumLayers; l++)
            {
                string p = $"model.layers.{l}.";
                w.Add(new(p + "input_layernorm.weight", [h], WeightRole.Norm));
                w.Add(new(p + "self_attn.q_proj.weight", [c.QDim, h], WeightRole.Linear));
                w.Add(new(p + "self_attn.k_proj.weight", [c.KvDim, h], WeightRole.Linear));
                w.Add(new(p + "self_attn.v_proj.weight", [c.KvDim, h], WeightRole.Linear));
                if (c.AttentionBias)
                {
                    w.Add(new(p + "self_attn.q_proj.bias", [c.QDim], WeightRole.LinearBias));
                    w.Add(new(p + "self_attn.k_proj.bias", [c.KvDim], WeightRole.LinearBias));
                    w.Add(new(p + "self_attn.v_proj.bias", [c.KvDim], WeightRole.LinearBias));
                }
                w.Add(new(p + "self_attn.o_proj.weight", [h, c.QDim], WeightRole.Linear));
                if (c.AttentionBias) w.Add(new(p + "self_attn.o_proj.bias", [h], WeightRole.LinearBias));
                w.Add(new(p + "post_attention_layernorm.weight", [h], WeightRole.Norm));
                w.Add(new(p + "mlp.gate_proj.weight", [ff, h], WeightRole.Linear));
                w.Add(new(p + "mlp.up_proj.weight", [ff, h], WeightRole.Linear));
                w.Add(new(p + "mlp.down_proj.weight", [h, ff], WeightRole.Linear));
                if (c.MlpBias)
                {
                    w.Add(new(p + "mlp.gate_proj.bias", [ff], WeightRole.LinearBias));
                    w.Add(new(p + "mlp.up_proj.bias", [ff], WeightRole.LinearBias));
                    w.Add(new(p + "mlp.down_proj.bias", [h], WeightRole.LinearBias));
                }
            }
            w.Add(new("model.norm.weight", [h], WeightRole.Norm));
            if (!c.TieWordEmbeddings) w.Add(new("lm_head.weight", [c.VocabSize, h], WeightRole.Head));
        }
        else
        {
            w.Add(new("transformer.word_embeddings.weight", [c.VocabSize, h], WeightRole.Embedding));
            for (int l = 0; l < c.NumLayers; l++)
            {
                string p = $"transformer.h.{l}.";
                var norms = c.SeparateMlpNorm ? new[] { "ln_attn", "ln_mlp" } : ["input_layernorm"]; // HF: ln_attn/ln_mlp only with num_ln_in_parallel_attn == 2
                foreach (var n in norms) { w.Add(new(p + n + ".weight", [h], WeightRole.Norm)); w.Add(new(p + n + ".bias", [h], WeightRole.NormBias)); }
                w.Add(new(p + "self_attention.query_key_value.weight", [c.QDim + 2L * c.KvDim, h], WeightRole.Linear));
                if (c.AttentionBias) w.Add(new(p + "self_attention.query_key_value.bias", [c.QDim + 2L * c.KvDim], WeightRole.LinearBias));
                w.Add(new(p + "self_attention.dense.weight", [h, c.QDim], WeightRole.Linear));
                if (c.AttentionBias) w.Add(new(p + "self_attention.dense.bias", [h], WeightRole.LinearBias));
                w.Add(new(p + "mlp.dense_h_to_4h.weight", [ff, h], WeightRole.Linear));
                if (c.MlpBias) w.Add(new(p + "mlp.dense_h_to_4h.bias", [ff], WeightRole.LinearBias));
                w.Add(new(p + "mlp.dense_4h_to_h.weight", [h, ff], WeightRole.Linear));
                if (c.MlpBias) w.Add(new(p + "mlp.dense_4h_to_h.bias", [h], WeightRole.LinearBias));
            }
            w.Add(new("transformer.ln_f.weight", [h], WeightRole.Norm));
            w.Add(new("transformer.ln_f.bias", [h], WeightRole.NormBias));
            if (!c.TieWordEmbeddings) w.Add(new("lm_head.weight", [c.VocabSize, h], WeightRole.Head));
        }
        return w;
    }
}
