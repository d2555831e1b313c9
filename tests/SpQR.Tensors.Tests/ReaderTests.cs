// Readers against the real files in ../shared: names, dtypes and shapes; sharded checkpoints; the atomic writer.
using System.Text.Json;
using SpQR.Tensors.IO;
using SpQR.TestUtil;
using Xunit;

namespace SpQR.Tensors.Tests;

public class ReaderTests
{
    public static TheoryData<string> HfFolders => new(["llama-tiny", "llama-tied-mha", "llama-tiny-bf16", "llama-tiny-f16", "falcon-7b-style", "falcon-40b-style"]);

    /// <summary>The tensors a checkpoint of this config must hold (HF names), derived from config.json.</summary>
    private static Dictionary<string, long[]> ExpectedLayout(JsonElement cfg)
    {
        int I(string k) => cfg.GetProperty(k).GetInt32();
        bool B(string k) => cfg.TryGetProperty(k, out var v) && v.ValueKind == JsonValueKind.True;
        var e = new Dictionary<string, long[]>();
        int hidden = I("hidden_size"), layers = I("num_hidden_layers"), heads = I("num_attention_heads"), vocab = I("vocab_size");
        if (cfg.GetProperty("model_type").GetString() == "llama")
        {
            int hd = cfg.TryGetProperty("head_dim", out var h) ? h.GetInt32() : hidden / heads;
            int kv = cfg.TryGetProperty("num_key_value_heads", out var k) ? k.GetInt32() : heads, inter = I("intermediate_size");
            e["model.embed_tokens.weight"] = [vocab, hidden];
            e["model.norm.weight"] = [hidden];
            if (!B("tie_word_embeddings")) e["lm_head.weight"] = [vocab, hidden];
            for (int l = 0; l < layers; l++)
            {
                string p = $"model.layers.{l}.";
                e[p + "input_layernorm.weight"] = [hidden]; e[p + "post_attention_layernorm.weight"] = [hidden];
                e[p + "self_attn.q_proj.weight"] = [heads * hd, hidden]; e[p + "self_attn.k_proj.weight"] = [kv * hd, hidden];
                e[p + "self_attn.v_proj.weight"] = [kv * hd, hidden]; e[p + "self_attn.o_proj.weight"] = [hidden, heads * hd];
                e[p + "mlp.gate_proj.weight"] = [inter, hidden]; e[p + "mlp.up_proj.weight"] = [inter, hidden]; e[p + "mlp.down_proj.weight"] = [hidden, inter];
            }
        }
        else
        {
            int hd = hidden / heads, ffn = I("ffn_hidden_size");
            bool newArch = B("new_decoder_architecture");
            int kv = newArch ? I("num_kv_heads") : (B("multi_query") ? 1 : heads);
            e["transformer.word_embeddings.weight"] = [vocab, hidden];
            e["transformer.ln_f.weight"] = [hidden]; e["transformer.ln_f.bias"] = [hidden];
            for (int l = 0; l < layers; l++)
            {
                string p = $"transformer.h.{l}.";
                e[p + "self_attention.query_key_value.weight"] = [(heads + 2 * kv) * hd, hidden];
                e[p + "self_attention.dense.weight"] = [hidden, hidden];
                e[p + "mlp.dense_h_to_4h.weight"] = [ffn, hidden]; e[p + "mlp.dense_4h_to_h.weight"] = [hidden, ffn];
                foreach (var ln in newArch ? new[] { "ln_attn", "ln_mlp" } : ["input_layernorm"]) { e[p + ln + ".weight"] = [hidden]; e[p + ln + ".bias"] = [hidden]; }
            }
        }
        return e;
    }

    [SharedTheory, MemberData(nameof(HfFolders))]
    public void Every_hf_fixture_has_the_names_dtypes_and_shapes_of_its_config(string folder)
    {
        string dir = Fixtures.Path("fixtures", "hf", folder);
        using var cfgDoc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "config.json")));
        var expected = ExpectedLayout(cfgDoc.RootElement);
        var dtype = folder.EndsWith("bf16") ? DType.BF16 : folder.EndsWith("f16") ? DType.F16 : DType.F32;
        using var ck = SafetensorsCheckpoint.Open(dir);
        Assert.Equal(expected.Keys.Order(), ck.TensorNames.Order());
        foreach (var (name, shape) in expected)
        {
            var t = ck.Get(name, new Shape(shape), dtype);
            Assert.True(t.IsReadOnly); // zero-copy view of the mapped file
            Assert.Equal(t.ByteLength, t.Bytes.Length);
        }
        // the reference file alongside: I64 prompt and F32 logits
        using var r = SafetensorsFile.Open(Path.Combine(dir, "reference.safetensors"));
        Assert.Equal(DType.I64, r.Entry("input_ids").DType);
        Assert.Equal(new Shape(24, 320), r.Entry("logits").Shape);
    }

    [SharedFact]
    public void Bf16_and_f16_copies_hold_the_rounded_f32_weights()
    {
        using var f32 = SafetensorsCheckpoint.Open(Fixtures.Path("fixtures", "hf", "llama-tiny"));
        using var bf16 = SafetensorsCheckpoint.Open(Fixtures.Path("fixtures", "hf", "llama-tiny-bf16"));
        using var f16 = SafetensorsCheckpoint.Open(Fixtures.Path("fixtures", "hf", "llama-tiny-f16"));
        const string name = "model.layers.1.mlp.down_proj.weight";
        var w = f32.Get(name).AsReadOnlySpan<float>();
        using var wb = bf16.Get(name).ToF32();
        using var wh = f16.Get(name).ToF32();
        for (int i = 0; i < w.Length; i++)
        {
            Assert.Equal(BFloat16Bits.FromSingle(w[i]).ToSingle(), wb.AsReadOnlySpan<float>()[i]);
            Assert.Equal((float)(Half)w[i], wh.AsReadOnlySpan<float>()[i]);
        }
    }

    [SharedFact]
    public void Gguf_vocab_files_parse_tokens_scores_and_merges()
    {
        using (var g = GgufFile.Open(Fixtures.Path("data", "llamacpp-vocab", "ggml-vocab-llama-spm.gguf")))
        {
            Assert.Equal(3u, g.Version);
            Assert.Empty(g.Tensors);
            Assert.Equal("llama", g.Get<string>("tokenizer.ggml.model"));
            var tokens = g.Get<string[]>("tokenizer.ggml.tokens");
            var scores = g.Get<float[]>("tokenizer.ggml.scores");
            Assert.Equal(32000, tokens.Length);
            Assert.Equal(32000, scores.Length);
            Assert.Equal("<unk>", tokens[0]);
            Assert.Equal("<0x0A>", tokens[13]);
            Assert.Equal(32000, g.Get<int[]>("tokenizer.ggml.token_type").Length);
        }
        using (var g = GgufFile.Open(Fixtures.Path("data", "llamacpp-vocab", "ggml-vocab-falcon.gguf")))
        {
            Assert.Equal("gpt2", g.Get<string>("tokenizer.ggml.model"));
            Assert.Equal(65024, g.Get<string[]>("tokenizer.ggml.tokens").Length);
            var merges = g.Get<string[]>("tokenizer.ggml.merges");
            Assert.Equal(64784, merges.Length);
            Assert.Contains(' ', merges[0]);
        }
    }

    [SharedFact]
    public void Stories260K_checkpoint_parses()
    {
        using var ck = Llama2cCheckpoint.Open(Fixtures.Path("data", "stories260K", "stories260K.bin"));
        Assert.Equal(new Llama2cConfig(64, 172, 5, 8, 4, 512, 512, true), ck.Config);
        Assert.Equal(new Shape(5, 32, 64), ck.Tensors["wk"].Shape);
        Assert.Equal(new Shape(5, 64, 172), ck.Tensors["w2"].Shape);
        Assert.Same(ck.Tensors["token_embedding_table"], ck.Classifier);
        // the HF conversion holds the same embedding
        using var hf = SafetensorsCheckpoint.Open(Fixtures.Path("fixtures", "stories260K", "hf"));
        Assert.Equal(hf.Get("model.embed_tokens.weight").AsReadOnlySpan<float>().ToArray(), ck.Tensors["token_embedding_table"].AsReadOnlySpan<float>().ToArray());
        Assert.Equal(hf.Get("model.layers.2.mlp.down_proj.weight").AsReadOnlySpan<float>().ToArray(), ck.Tensors["w2"].Row(2).AsReadOnlySpan<float>().ToArray());
    }

    [Fact]
    public void Writer_round_trips_every_dtype_and_shards_read_through_the_index()
    {
        string dir = Directory.CreateTempSubdirectory("spqr-st-").FullName;
        try
        {
            var tensors = new List<(string, Tensor)>();
            var dts = new[] { DType.F32, DType.F16, DType.BF16, DType.F64, DType.I8, DType.U8, DType.I16, DType.U16, DType.I32, DType.I64, DType.Bool };
            var r = new Random(1);
            foreach (var dt in dts)
            {
                var t = Tensor.Zeros(dt, 3, 5);
                unsafe { var s = new Span<byte>(t.Pointer, (int)t.ByteLength); r.NextBytes(s); if (dt == DType.Bool) for (int i = 0; i < s.Length; i++) s[i] &= 1; }
                tensors.Add(($"t.{dt}", t));
            }
            tensors.Add(("empty", Tensor.Zeros(DType.F32, 0, 4)));
            string a = Path.Combine(dir, "model-00001-of-00002.safetensors"), b = Path.Combine(dir, "model-00002-of-00002.safetensors");
            SafetensorsWriter.Write(a, tensors.Take(6), new Dictionary<string, string> { ["format"] = "pt" });
            SafetensorsWriter.Write(b, tensors.Skip(6));
            var map = tensors.Select((t, i) => $"\"{t.Item1}\": \"{(i < 6 ? Path.GetFileName(a) : Path.GetFileName(b))}\"");
            File.WriteAllText(Path.Combine(dir, "model.safetensors.index.json"), "{\"metadata\": {}, \"weight_map\": {" + string.Join(",", map) + "}}");
            using var ck = SafetensorsCheckpoint.Open(dir);
            Assert.Equal(2, ck.Files.Count);
            foreach (var (name, t) in tensors)
            {
                var got = ck.Get(name);
                Assert.Equal(t.DType, got.DType);
                Assert.Equal(t.Shape, got.Shape);
                Assert.Equal(t.Bytes.ToArray(), got.Bytes.ToArray());
            }
            Assert.Equal("pt", ck.Files[0].Metadata["format"]);
            Assert.Equal(0, new FileInfo(a).Length % 8 == 0 ? 0 : (8 + BitConverter.ToInt64(File.ReadAllBytes(a), 0)) % 8);
            foreach (var (_, t) in tensors) t.Dispose();
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Failed_write_leaves_the_old_file_and_no_temp_file()
    {
        string dir = Directory.CreateTempSubdirectory("spqr-atomic-").FullName;
        try
        {
            string path = Path.Combine(dir, "model.safetensors");
            using (var t = Tensor.FromArray([1f, 2f], 2)) SafetensorsWriter.Write(path, [("a", t)]);
            var before = File.ReadAllBytes(path);
            var good = Tensor.FromArray([3f, 4f], 2);
            var disposed = Tensor.FromArray([5f], 1);
            disposed.Dispose(); // writing it fails half-way through the file
            Assert.Throws<ObjectDisposedException>(() => SafetensorsWriter.Write(path, [("a", good), ("b", disposed)]));
            Assert.Equal(before, File.ReadAllBytes(path));
            Assert.Single(Directory.GetFiles(dir));
            good.Dispose();
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Missing_shard_and_missing_tensor_are_typed_errors()
    {
        string dir = Directory.CreateTempSubdirectory("spqr-shard-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "model.safetensors.index.json"), "{\"weight_map\": {\"w\": \"model-00001.safetensors\"}}");
            var e = Assert.Throws<ModelFormatException>(() => SafetensorsCheckpoint.Open(dir));
            Assert.Contains("model-00001.safetensors", e.Message);
            using (var t = Tensor.FromArray([1f], 1)) SafetensorsWriter.Write(Path.Combine(dir, "model-00001.safetensors"), [("x", t)]);
            e = Assert.Throws<ModelFormatException>(() => SafetensorsCheckpoint.Open(dir));
            Assert.Contains("\"w\"", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }
}
