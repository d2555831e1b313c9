// Forward passes against transformers' float32 logits; KV-cache decode against prefill and greedy references;
// llama2.c against its HF conversion; perplexity against the fixture's reference values.
using SpQR.Tensors.IO;
using SpQR.TestUtil;
using SpQR.Transformer.Eval;
using SpQR.Transformer.Loading;
using SpQR.Transformer.Models;
using SpQR.Transformer.Sampling;
using Xunit;

namespace SpQR.Transformer.Tests;

public class ModelTests
{
    public static TheoryData<string, double> Folders => new()
    {
        { "llama-tiny", Tolerances.LogitsRelL2 }, { "llama-tied-mha", Tolerances.LogitsRelL2 },
        { "falcon-7b-style", Tolerances.LogitsRelL2 }, { "falcon-40b-style", Tolerances.LogitsRelL2 },
        { "llama-tiny-bf16", Tolerances.LogitsRelL2Half }, { "llama-tiny-f16", Tolerances.LogitsRelL2Half },
    };

    private static (int[] Ids, float[] Logits, int[]? Greedy) Reference(string folder)
    {
        using var r = SafetensorsFile.Open(Fixtures.Path("fixtures", "hf", folder, "reference.safetensors"));
        return (r.Get("input_ids").ToInt32Array(), r.Get("logits").AsReadOnlySpan<float>().ToArray(),
                r.Contains("greedy_ids") ? r.Get("greedy_ids").ToInt32Array() : null);
    }

    [SharedTheory, MemberData(nameof(Folders))]
    public void Prefill_logits_match_transformers(string folder, double tol)
    {
        var (ids, expected, _) = Reference(folder);
        using var model = ModelLoader.Load(Fixtures.Path("fixtures", "hf", folder), new ModelOptions { MaxContext = 64, MaxBatch = 32 });
        var logits = model.Forward(ids, 0, allLogits: true).ToArray();
        NumericAssert.RelL2(expected, logits, tol, $"{folder} prefill logits");
    }

    [SharedTheory, MemberData(nameof(Folders))]
    public void Incremental_decode_gives_the_prefill_logits_and_the_greedy_ids(string folder, double tol)
    {
        var (ids, expected, greedy) = Reference(folder);
        int V = expected.Length / ids.Length;
        using var model = ModelLoader.Load(Fixtures.Path("fixtures", "hf", folder), new ModelOptions { MaxContext = 64, MaxBatch = 5 });
        // token by token through the KV cache (and chunked prefill in between: MaxBatch 5)
        for (int t = 0; t < ids.Length; t++)
        {
            var step = model.Forward(ids.AsSpan(t, 1), t, allLogits: false).ToArray();
            NumericAssert.RelL2(expected.AsSpan(t * V, V), step, tol, $"{folder} decode step {t}");
        }
        if (greedy is null) return;
        var got = Generator.GenerateIds(model, ids, greedy.Length);
        Assert.Equal(greedy, got);
    }

    [SharedFact]
    public void Llama2c_checkpoint_and_its_hf_conversion_give_the_same_logits()
    {
        using var r = SafetensorsFile.Open(Fixtures.Path("fixtures", "stories260K", "stories260K-logits.safetensors"));
        var ids = r.Get("input_ids").ToInt32Array();
        var expected = r.Get("logits").AsReadOnlySpan<float>().ToArray();
        using var bin = ModelLoader.Load(Fixtures.Path("data", "stories260K", "stories260K.bin"), new ModelOptions { MaxContext = 64 });
        using var hf = ModelLoader.Load(Fixtures.Path("fixtures", "stories260K", "hf"), new ModelOptions { MaxContext = 64 });
        var a = bin.Forward(ids, 0, true).ToArray();
        var b = hf.Forward(ids, 0, true).ToArray();
        NumericAssert.RelL2(b, a, 1e-5, "llama2.c vs HF conversion");
        NumericAssert.RelL2(expected, b, Tolerances.LogitsRelL2, "HF conversion vs transformers");
    }

    [SharedFact]
    public void Stories260K_perplexity_matches_the_reference()
    {
        using var model = ModelLoader.Load(Fixtures.Path("data", "stories260K", "stories260K.bin"), new ModelOptions { MaxContext = 256, MaxBatch = 256 });
        using (var cal = SafetensorsFile.Open(Fixtures.Path("fixtures", "stories260K", "stories260K-calibration.safetensors")))
        {
            var r = Perplexity.Evaluate(model, cal.Get("eval_tinystories").ToInt32Array(), 256);
            Assert.InRange(r.Perplexity, 7.2370 - 0.001, 7.2370 + 0.001);
        }
        using var toks = SafetensorsFile.Open(Fixtures.Path("fixtures", "stories260K", "stories260K-tokens.safetensors"));
        var w = Perplexity.Evaluate(model, toks.Get("wikitext2_test").ToInt32Array(), 256);
        Assert.InRange(w.Perplexity, 114.00 - 0.05, 114.00 + 0.05);
    }

    [SharedFact]
    public void Results_do_not_depend_on_the_widening_option()
    {
        var (ids, _, _) = Reference("llama-tiny-bf16");
        using var native = ModelLoader.Load(Fixtures.Path("fixtures", "hf", "llama-tiny-bf16"), new ModelOptions { MaxContext = 32 });
        using var wide = ModelLoader.Load(Fixtures.Path("fixtures", "hf", "llama-tiny-bf16"), new ModelOptions { MaxContext = 32, WidenToF32 = true });
        NumericAssert.RelL2(wide.Forward(ids, 0, true).ToArray(), native.Forward(ids, 0, true).ToArray(), 1e-6, "bf16 in place vs widened");
    }

    [SharedFact]
    public void Positions_past_the_context_and_bad_token_ids_are_rejected()
    {
        using var model = ModelLoader.Load(Fixtures.Path("fixtures", "hf", "llama-tiny"), new ModelOptions { MaxContext = 8, MaxBatch = 4 });
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Forward([1, 2], 7, false));
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Forward([1, 2, 3, 4, 5], 0, false));
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Forward([320], 0, false));
    }
}
