// The resolved configuration the model code reads: plain values and derived sizes, architecture differences as
// explicit data (norm kind, activation, rotary layout, parallel attention, KV-head count). Built from config.json
// mirrors (HfLlamaConfig, HfFalconConfig) or a llama2.c header; Load() picks by model_type.
using System.Text.Json;
using SpQR.Tensors.Cpu;
using SpQR.Tensors.IO;

namespace SpQR.Transformer.Config;

public enum Architecture { Llama, Falcon }
public enum NormKind { RmsNorm, LayerNorm }
public enum ActivationKind { SwiGlu, Gelu }

public sealed record TransformerConfig
{
    public Architecture Architecture { get; init; }
    public int HiddenSize { get; init; }          // d_model
    public int IntermediateSize { get; init; }    // MLP width
    public int NumLayers { get; init; }
    public int NumHeads { get; init; }            // query heads
    public int NumKvHeads { get; init; }          // key/value heads (1 = multi-query, NumHeads = multi-head)
    public int HeadDim { get; init; }
    public int VocabSize { get; init; }
    public int MaxPositions { get; init; }
    public float NormEps { get; init; }
    public NormKind Norm { get; init; }
    public ActivationKind Activation { get; init; }
    public RopeLayout RopeLayout { get; init; }   // HalfSplit (HF) or Interleaved (llama2.c / Meta)
    public double RopeTheta { get; init; }
    public HfRopeScaling? RopeScaling { get; init; }
    public bool TieWordEmbeddings { get; init; }  // lm_head shares the embedding matrix
    public bool AttentionBias { get; init; }
    public bool MlpBias { get; init; }
    public bool ParallelAttention { get; init; }  // Falcon: attention and MLP read the same normed input
    public bool NewDecoderArchitecture { get; init; } // Falcon-40B/180B grouped qkv layout
    public bool SeparateMlpNorm { get; init; }    // Falcon new architecture: ln_attn + ln_mlp

    public int QDim => NumHeads * HeadDim;
    public int KvDim => NumKvHeads * HeadDim;
    /// <summary>Query heads per KV head.</summary>
    public int KvGroups => NumHeads / NumKvHeads;

    internal TransformerConfig Validate(string file)
    {
        void Check(bool ok, string key, string expected, object found)
        {
            if (!ok) throw new ModelFormatException(file, key, expected, $"{found}");
        }
        Check(HiddenSize > 0, "hidden_size", "a positive integer", HiddenSize);
        Check(IntermediateSize > 0, "intermediate_size", "a positive integer", IntermediateSize);
        Check(NumLayers > 0, "num_hidden_layers", "a positive integer", NumLayers);
        Check(NumHeads > 0, "num_attention_heads", "a positive integer", NumHeads);
        Check(NumKvHeads > 0 && NumHeads % NumKvHeads == 0, "num_key_value_heads", $"a divisor of num_attention_heads ({NumHeads})", NumKvHeads);
        Check(HeadDim > 0 && HeadDim % 2 == 0, "head_dim", "a positive even integer (rotary pairs)", HeadDim);
        Check(VocabSize > 0, "vocab_size", "a positive integer", VocabSize);
        Check(MaxPositions > 0, "max_position_embeddings", "a positive integer", MaxPositions);
        return this;
    }

    /// <summary>Reads config.json from a checkpoint folder (or the file itself) and resolves it.</summary>
    public static TransformerConfig Load(string folderOrFile)
    {
        string file = Directory.Exists(folderOrFile) ? Path.Combine(folderOrFile, "config.json") : folderOrFile;
        if (!File.Exists(file)) throw new ModelFormatException(folderOrFile, "config.json", "a Hugging Face config.json", "no such file", "point --model at a checkpoint folder");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllBytes(file)); }
        catch (JsonException e) { throw new ModelFormatException(file, "file", "valid JSON", e.Message, null, e); }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new ModelFormatException(file, "file", "a JSON object", doc.RootElement.ValueKind.ToString());
            var j = new JsonConfig(doc.RootElement, file);
            string? type = j.StringOrNull("model_type");
            return type switch
            {
                "llama" => HfLlamaConfig.Parse(j).Resolve(file),
                "falcon" or "RefinedWeb" or "RefinedWebModel" => HfFalconConfig.Parse(j).Resolve(file),
                null => throw new ModelFormatException(file, "model_type", "\"llama\" or \"falcon\"", "no value"),
                _ => throw new NotSupportedException($"{file}: model_type \"{type}\" is not supported (llama and falcon are)"),
            };
        }
    }

    /// <summary>The config of a llama2.c checkpoint: LLaMA with interleaved rotary pairs and RMSNorm eps 1e-5.</summary>
    public static TransformerConfig FromLlama2c(Llama2cConfig c) => new TransformerConfig
    {
        Architecture = Architecture.Llama, HiddenSize = c.Dim, IntermediateSize = c.HiddenDim, NumLayers = c.NLayers, NumHeads = c.NHeads,
        NumKvHeads = c.NKvHeads, HeadDim = c.HeadSize, VocabSize = c.VocabSize, MaxPositions = c.SeqLen, NormEps = 1e-5f,
        Norm = NormKind.RmsNorm, Activation = ActivationKind.SwiGlu, RopeLayout = RopeLayout.Interleaved, RopeTheta = 10000,
        TieWordEmbeddings = c.SharedClassifier,
    }.Validate("llama2.c header");
}
