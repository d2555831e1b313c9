// config.json mirrors resolve to TransformerConfig; every shared HF fixture inspects cleanly against its layout;
// unsupported settings name their key.
using SpQR.Tensors.IO;
using SpQR.TestUtil;
using SpQR.Transformer.Config;
using SpQR.Transformer.Inspect;
using Xunit;

namespace SpQR.Transformer.Tests;

public class ConfigTests
{
    private static string WriteConfig(string json)
    {
        string dir = Directory.CreateTempSubdirectory("spqr-cfg-").FullName;
        File.WriteAllText(Path.Combine(dir, "config.json"), json);
        return dir;
    }

    [SharedFact]
    public void Fixture_configs_resolve()
    {
        var llama = TransformerConfig.Load(Fixtures.Path("fixtures", "hf", "llama-tiny"));
        Assert.Equal((Architecture.Llama, 64, 4, 2, 16, 2, 1e-6f, 10000.0, false), (llama.Architecture, llama.HiddenSize, llama.NumHeads, llama.NumKvHeads, llama.HeadDim, llama.KvGroups, llama.NormEps, llama.RopeTheta, llama.TieWordEmbeddings));
        var mha = TransformerConfig.Load(Fixtures.Path("fixtures", "hf", "llama-tied-mha"));
        Assert.Equal((6, 6, 500000.0, true), (mha.NumHeads, mha.NumKvHeads, mha.RopeTheta, mha.TieWordEmbeddings));
        var f7 = TransformerConfig.Load(Fixtures.Path("fixtures", "hf", "falcon-7b-style"));
        Assert.Equal((Architecture.Falcon, 1, false, NormKind.LayerNorm), (f7.Architecture, f7.NumKvHeads, f7.NewDecoderArchitecture, f7.Norm));
        var f40 = TransformerConfig.Load(Fixtures.Path("fixtures", "hf", "falcon-40b-style"));
        Assert.Equal((2, true, true), (f40.NumKvHeads, f40.NewDecoderArchitecture, f40.SeparateMlpNorm)); // num_kv_heads rules over multi_query
    }

    [SharedTheory]
    [InlineData("llama-tiny")] [InlineData("llama-tied-mha")] [InlineData("llama-tiny-bf16")] [InlineData("llama-tiny-f16")]
    [InlineData("falcon-7b-style")] [InlineData("falcon-40b-style")]
    public void Every_fixture_folder_inspects_against_its_layout(string folder)
    {
        var r = ModelInspector.Inspect(Fixtures.Path("fixtures", "hf", folder));
        Assert.NotNull(r.Config);
        Assert.Equal(WeightLayout.For(r.Config!).Count, r.Tensors.Count);
        Assert.True(r.Parameters > 0);
    }

    [SharedFact]
    public void Llama2c_and_gguf_files_inspect()
    {
        var r = ModelInspector.Inspect(Fixtures.Path("data", "stories260K", "stories260K.bin"));
        Assert.Equal(260_032, r.Parameters); // the data README's count, freq_cis excluded
        Assert.Equal(Tensors.Cpu.RopeLayout.Interleaved, r.Config!.RopeLayout);
        var g = ModelInspector.Inspect(Fixtures.Path("data", "llamacpp-vocab", "ggml-vocab-llama-spm.gguf"));
        Assert.Equal("32000 tokens", g.Notes["vocabulary"]);
    }

    [Fact]
    public void Rope_theta_is_read_at_top_level_or_in_rope_parameters_and_absent_kv_heads_means_mha()
    {
        string a = WriteConfig("""{"model_type":"llama","hidden_size":64,"intermediate_size":128,"num_hidden_layers":1,"num_attention_heads":4,"vocab_size":10,"rope_theta":123.0}""");
        string b = WriteConfig("""{"model_type":"llama","hidden_size":64,"intermediate_size":128,"num_hidden_layers":1,"num_attention_heads":4,"vocab_size":10,"rope_parameters":{"rope_theta":456.0,"rope_type":"default"}}""");
        Assert.Equal(123.0, TransformerConfig.Load(a).RopeTheta);
        var cb = TransformerConfig.Load(b);
        Assert.Equal(456.0, cb.RopeTheta);
        Assert.Equal(4, cb.NumKvHeads);
        Assert.Equal(16, cb.HeadDim);
    }

    [Fact]
    public void Unsupported_settings_name_their_key()
    {
        string yarn = WriteConfig("""{"model_type":"llama","hidden_size":64,"intermediate_size":128,"num_hidden_layers":1,"num_attention_heads":4,"vocab_size":10,"rope_scaling":{"rope_type":"yarn","factor":4.0}}""");
        Assert.Contains("rope_scaling", Assert.Throws<NotSupportedException>(() => TransformerConfig.Load(yarn)).Message);
        string alibi = WriteConfig("""{"model_type":"falcon","hidden_size":64,"num_hidden_layers":1,"num_attention_heads":4,"vocab_size":10,"alibi":true}""");
        Assert.Contains("alibi", Assert.Throws<NotSupportedException>(() => TransformerConfig.Load(alibi)).Message);
        string badKv = WriteConfig("""{"model_type":"llama","hidden_size":64,"intermediate_size":128,"num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":3,"vocab_size":10}""");
        Assert.Contains("num_key_value_heads", Assert.Throws<ModelFormatException>(() => TransformerConfig.Load(badKv)).Message);
        string missing = WriteConfig("""{"model_type":"llama","hidden_size":64}""");
        Assert.Contains("intermediate_size", Assert.Throws<ModelFormatException>(() => TransformerConfig.Load(missing)).Message);
    }

    [SharedFact]
    public void Wrong_shapes_and_nan_weights_are_typed_errors_naming_the_tensor()
    {
        string dir = Directory.CreateTempSubdirectory("spqr-bad-").FullName;
        try
        {
            string src = Fixtures.Path("fixtures", "hf", "llama-tiny");
            File.Copy(Path.Combine(src, "config.json"), Path.Combine(dir, "config.json"));
            using (var ck = SafetensorsCheckpoint.Open(src))
            {
                var tensors = ck.TensorNames.Select(n => (n, ck.Get(n).ToF32())).ToList();
                var target = tensors.First(t => t.n == "model.layers.1.mlp.up_proj.weight").Item2;
                target.AsSpan<float>()[17] = float.NaN;
                Tensors.IO.SafetensorsWriter.Write(Path.Combine(dir, "model.safetensors"), tensors);
                foreach (var (_, t) in tensors) t.Dispose();
            }
            var e = Assert.Throws<ModelFormatException>(() => ModelInspector.Inspect(dir));
            Assert.Contains("model.layers.1.mlp.up_proj.weight", e.Message);
            File.WriteAllText(Path.Combine(dir, "config.json"), File.ReadAllText(Path.Combine(src, "config.json")).Replace("\"intermediate_size\": 176", "\"intermediate_size\": 170"));
            e = Assert.Throws<ModelFormatException>(() => ModelInspector.Inspect(dir));
            Assert.Contains("shape", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }
}
