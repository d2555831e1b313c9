// The SpQR authors' own export (../shared/fixtures/spqr-reference-export/llama-tiny-w3): decoded bit for bit as
// their code decodes it; the model loaded through our format (converted on load) gives their float32 logits; a
// corrupt export gives a typed error naming the tensor.
using SpQR.Quant.Formats;
using SpQR.Tensors.IO;
using SpQR.TestUtil;
using SpQR.Transformer.Loading;
using Xunit;

namespace SpQR.Transformer.Tests;

public class AuthorsExportTests
{
    private static string Folder => Fixtures.Path("fixtures", "spqr-reference-export", "llama-tiny-w3");
    public static TheoryData<string> Linears => new(from i in new[] { 0, 1 } from p in new[] { "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj" } select $"model.layers.{i}.{p}");

    [SharedTheory, MemberData(nameof(Linears))]
    public void Every_linear_decodes_bit_for_bit_like_the_authors_code_and_converts_within_fp16_rounding(string linear)
    {
        using var ck = SafetensorsCheckpoint.Open(Folder);
        using var reference = SafetensorsFile.Open(Path.Combine(Folder, "reference.safetensors"));
        var l = SpqrAuthorsExport.Read(linear, n => ck.Contains(n) ? ck.Get(n) : null, "model.safetensors");
        var expected = reference.Get(linear + ".dequantized").AsReadOnlySpan<float>().ToArray();
        var stored = SpqrAuthorsExport.DequantizeStored(l);
        Assert.Equal(expected.Length, stored.Length);
        for (int i = 0; i < stored.Length; i++) Assert.True(expected[i] == (float)stored[i], $"{linear} [{i / l.Cols}, {i % l.Cols}]: {(float)stored[i]} vs {expected[i]}");
        Assert.Equal(reference.Get(linear + ".perm").AsReadOnlySpan<long>().ToArray().Select(v => (int)v), l.Perm);
        // converted to our format (fp16-step decoding), it dequantizes to exactly their weights
        var ours = SpqrAuthorsExport.ToSpqrLayer(l).Dequantize();
        Assert.Equal(reference.Get(linear + ".dequantized_unpermuted").AsReadOnlySpan<float>().ToArray(), ours);
    }

    [SharedFact]
    public void The_export_runs_compressed_and_gives_the_authors_float32_logits()
    {
        using var reference = SafetensorsFile.Open(Path.Combine(Folder, "reference.safetensors"));
        var ids = reference.Get("input_ids").AsReadOnlySpan<long>().ToArray().Select(v => (int)v).ToArray();
        using var model = ModelLoader.Load(Folder, new ModelOptions { MaxContext = 64, MaxBatch = 16 });
        var logits = model.Forward(ids, 0, allLogits: true).ToArray();
        NumericAssert.RelL2(reference.Get("logits_compressed_fp32").AsReadOnlySpan<float>(), logits, 1e-4, "prefill logits vs logits_compressed_fp32");
        // token by token through the fused matvec as well
        int V = logits.Length / ids.Length;
        using var m2 = ModelLoader.Load(Folder, new ModelOptions { MaxContext = 64, MaxBatch = 1 });
        for (int t = 0; t < ids.Length; t++)
            NumericAssert.RelL2(logits.AsSpan(t * V, V), m2.Forward(ids.AsSpan(t, 1), t, allLogits: false).ToArray(), 1e-5, $"decode step {t}");
    }

    [SharedFact]
    public void Convert_writes_our_format_with_exactly_the_same_outputs()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"spqr-convert-{Guid.NewGuid():N}");
        try
        {
            var rep = SpQR.Transformer.Quantization.AuthorsExportConverter.Convert(Folder, dir);
            Assert.Equal(14, rep.Linears);
            Assert.Equal(1512, rep.OutlierCount);
            using var reference = SafetensorsFile.Open(Path.Combine(Folder, "reference.safetensors"));
            var ids = reference.Get("input_ids").AsReadOnlySpan<long>().ToArray().Select(v => (int)v).ToArray();
            using var a = ModelLoader.Load(Folder, new ModelOptions { MaxContext = 64, MaxBatch = 16 });
            using var b = ModelLoader.Load(dir, new ModelOptions { MaxContext = 64, MaxBatch = 16 });
            Assert.Equal(a.Forward(ids, 0, allLogits: true).ToArray(), b.Forward(ids, 0, allLogits: true).ToArray());
            var report = SpQR.Transformer.Inspect.ModelInspector.Inspect(dir);
            Assert.Equal("SpQR compressed (safetensors)", report.Format);
            Assert.Equal("4.150", report.Notes["bits per weight (paper's accounting)"]);
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }

    [SharedFact]
    public void A_corrupt_export_gives_a_typed_error_naming_the_tensor()
    {
        using var ck = SafetensorsCheckpoint.Open(Folder);
        const string linear = "model.layers.0.self_attn.q_proj";
        var words = ck.Get(linear + ".dense_weights").AsReadOnlySpan<long>().ToArray();
        words[5] |= 1L << 62;
        using var bad = SpQR.Tensors.Tensor.Zeros(SpQR.Tensors.DType.I64, words.Length);
        words.AsSpan().CopyTo(bad.AsSpan<long>());
        var e = Assert.Throws<ModelFormatException>(() => SpqrAuthorsExport.Read(linear, n => n.EndsWith(".dense_weights") ? bad : ck.Get(n), "model.safetensors"));
        Assert.Contains("dense_weights", e.Message);
        var perm = ck.Get(linear + ".in_perm").AsReadOnlySpan<int>().ToArray();
        perm[1] = perm[0];
        using var badPerm = SpQR.Tensors.Tensor.Zeros(SpQR.Tensors.DType.I32, perm.Length);
        perm.AsSpan().CopyTo(badPerm.AsSpan<int>());
        e = Assert.Throws<ModelFormatException>(() => SpqrAuthorsExport.Read(linear, n => n.EndsWith(".in_perm") ? badPerm : ck.Get(n), "model.safetensors"));
        Assert.Contains("in_perm", e.Message);
    }

    private static readonly Lazy<byte[]> ExportBytes = new(() => File.ReadAllBytes(Path.Combine(Folder, "model.safetensors")));

    [FsCheck.Xunit.Property(MaxTest = 1000)]
    public void Mutated_exports_give_only_typed_errors(int seed)
    {
        if (!Fixtures.Available) return; // needs ../shared (the SharedFact tests above report the skip)
        using var s = new SpQR.Tensors.PinnedBytesStorage(Mutations.Mutate(ExportBytes.Value, seed));
        try
        {
            using var f = SafetensorsFile.Parse(s, "model.safetensors");
            foreach (var linear in new[] { "model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj" })
            {
                var l = SpqrAuthorsExport.Read(linear, n => f.Contains(n) ? f.Get(n) : null, "model.safetensors");
                var layer = SpqrAuthorsExport.ToSpqrLayer(l);
                var y = new float[layer.Rows];
                SpQR.Quant.Decode.SpqrMatVec.MatVec(layer, new float[layer.Cols], y); // whatever passed validation must run
            }
        }
        catch (ModelFormatException) { }
    }
}
