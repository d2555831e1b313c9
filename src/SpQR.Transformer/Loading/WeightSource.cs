// Where a model's tensors come from, by their Hugging Face names: a safetensors checkpoint (used in place from the
// memory map, or widened to F32 on request) or a llama2.c file whose layer-stacked arrays are mapped to HF names.
// Every tensor is checked for its expected shape and for NaN/Inf before a model uses it.
using SpQR.Tensors;
using SpQR.Tensors.Cpu;
using SpQR.Tensors.IO;

namespace SpQR.Transformer.Loading;

public interface IWeightSource : IDisposable
{
    string Path { get; }
    bool Contains(string name);
    /// <summary>The named tensor with exactly this shape and finite values (ModelFormatException otherwise).</summary>
    Tensor Get(string name, Shape expected);
}

internal static class WeightChecks
{
    public static Tensor Checked(string file, Tensor t, string name, Shape expected)
    {
        if (t.Shape != expected) throw new ModelFormatException(file, $"tensor \"{name}\"", $"shape {expected}", $"{t.Shape}", "config.json does not match the weights");
        long bad = CpuKernels.FindNonFinite(t);
        if (bad >= 0) throw new ModelFormatException(file, $"tensor \"{name}\" element {bad}", "finite weights", "NaN or infinity", "the checkpoint is corrupt");
        return t;
    }
}

/// <summary>A Hugging Face checkpoint folder (single or sharded safetensors).</summary>
public sealed class SafetensorsWeightSource(SafetensorsCheckpoint checkpoint, bool widenToF32 = false) : IWeightSource
{
    private readonly List<Tensor> _owned = new();
    public string Path => checkpoint.Folder;
    public bool Contains(string name) => checkpoint.Contains(name);

    public Tensor Get(string name, Shape expected)
    {
        var t = WeightChecks.Checked(checkpoint.FileOf(name), checkpoint.Get(name), name, expected);
        if (!widenToF32 || t.DType == DType.F32) return t;
        var f = t.ToF32();
        _owned.Add(f);
        return new Tensor(f.DType, f.Shape, f.Storage, 0, ownsStorage: false) { Name = name };
    }

    public void Dispose()
    {
        foreach (var t in _owned) t.Dispose();
        checkpoint.Dispose();
    }
}

/// <summary>A llama2.c checkpoint seen through Hugging Face LLaMA names (its rotary pairs are interleaved: the config says so).</summary>
public sealed class Llama2cWeightSource(Llama2cCheckpoint ck) : IWeightSource
{
    public string Path => ck.Path;
    public bool Contains(string name) => Resolve(name) is not null;

    public Tensor Get(string name, Shape expected) =>
        WeightChecks.Checked(ck.Path, Resolve(name) ?? throw new ModelFormatException(ck.Path, $"tensor \"{name}\"", "a tensor llama2.c checkpoints hold", "none"), name, expected);

    private Tensor? Resolve(string name)
    {
        var t = ck.Tensors;
        switch (name)
        {
            case "model.embed_tokens.weight": return t["token_embedding_table"];
            case "model.norm.weight": return t["rms_final_weight"];
            case "lm_head.weight": return t.TryGetValue("wcls", out var w) ? w : null;
        }
        var parts = name.Split('.');
        if (parts.Length < 4 || parts[0] != "model" || parts[1] != "layers" || !int.TryParse(parts[2], out int l) || l < 0 || l >= ck.Config.NLayers) return null;
        string rest = string.Join('.', parts[3..]);
        string? stacked = rest switch
        {
            "input_layernorm.weight" => "rms_att_weight", "post_attention_layernorm.weight" => "rms_ffn_weight",
            "self_attn.q_proj.weight" => "wq", "self_attn.k_proj.weight" => "wk", "self_attn.v_proj.weight" => "wv", "self_attn.o_proj.weight" => "wo",
            "mlp.gate_proj.weight" => "w1", "mlp.down_proj.weight" => "w2", "mlp.up_proj.weight" => "w3",
            _ => null,
        };
        return stacked is null ? null : t[stacked].Row(l);
    }

    public void Dispose() => ck.Dispose();
}
