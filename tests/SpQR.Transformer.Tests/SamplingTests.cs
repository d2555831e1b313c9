// Sampler semantics: greedy, seeds, top-k/top-p/min-p filtering, repetition penalty; rotary scaling.
using SpQR.Transformer.Config;
using SpQR.Transformer.Models;
using SpQR.Transformer.Sampling;
using Xunit;

namespace SpQR.Transformer.Tests;

public class SamplingTests
{
    private static readonly float[] Logits = [1f, 3f, 2.5f, -1f, 0f, 2.9f];

    [Fact]
    public void Greedy_is_argmax_and_top_k_1_is_greedy()
    {
        Assert.Equal(1, new Sampler(6, new SamplingOptions()).Sample(Logits, []));
        var s = new Sampler(6, new SamplingOptions { Temperature = 1.5f, TopK = 1, Seed = 9 });
        for (int i = 0; i < 20; i++) Assert.Equal(1, s.Sample(Logits, []));
    }

    [Fact]
    public void Same_seed_same_tokens_and_filters_restrict_the_support()
    {
        int[] Draw(SamplingOptions o) { var s = new Sampler(6, o); return Enumerable.Range(0, 200).Select(_ => s.Sample(Logits, [])).ToArray(); }
        var o = new SamplingOptions { Temperature = 1f, Seed = 42 };
        Assert.Equal(Draw(o), Draw(o));
        Assert.NotEqual(Draw(o), Draw(o with { Seed = 43 }));
        Assert.All(Draw(o with { TopK = 3 }), t => Assert.Contains(t, new[] { 1, 5, 2 }));
        // top-p 0.5: the smallest prefix with mass ≥ 0.5 is {1, 5}
        Assert.All(Draw(o with { TopP = 0.5f }), t => Assert.Contains(t, new[] { 1, 5 }));
        // min-p 0.5: tokens with p ≥ 0.5·p_max — logits within ln 2 of the max
        Assert.All(Draw(o with { MinP = 0.5f }), t => Assert.Contains(t, new[] { 1, 5, 2 }));
        Assert.Contains(3, Draw(o with { Temperature = 5f })); // and without filters everything can come up
    }

    [Fact]
    public void Repetition_penalty_demotes_seen_tokens()
    {
        var s = new Sampler(6, new SamplingOptions { RepetitionPenalty = 2f });
        Assert.Equal(5, s.Sample(Logits, [1]));     // 3/2 = 1.5 < 2.9
        Assert.Equal(2, s.Sample(Logits, [1, 5]));  // 2.9/2 < 2.5
    }

    [Fact]
    public void Linear_rope_scaling_divides_the_frequencies_and_unknown_types_are_refused()
    {
        var c = new TransformerConfig { HeadDim = 8, RopeTheta = 10000, RopeScaling = new HfRopeScaling("linear", 4, null, null, null) };
        var plain = SpQR.Tensors.Cpu.RopeFrequencies.DefaultInvFreq(8, 10000);
        var scaled = RopeScaling.InvFreq(c);
        for (int i = 0; i < 4; i++) Assert.Equal(plain[i] / 4, scaled[i], 6);
        var l3 = RopeScaling.InvFreq(c with { RopeScaling = new HfRopeScaling("llama3", 8, 1, 4, 8192) });
        Assert.Equal(plain[0], l3[0]);            // high-frequency band (wavelength < 2048) untouched
        // medium band (2048 ≤ wavelength ≤ 8192): smooth interpolation, transformers' _compute_llama3_parameters
        double wl = 2 * Math.PI / plain[3], smooth = (8192 / wl - 1) / (4 - 1);
        Assert.Equal((1 - smooth) * plain[3] / 8 + smooth * plain[3], l3[3], 9);
        var low = RopeScaling.InvFreq(c with { RopeTheta = 500000, RopeScaling = new HfRopeScaling("llama3", 8, 1, 4, 8192) });
        var lowPlain = SpQR.Tensors.Cpu.RopeFrequencies.DefaultInvFreq(8, 500000);
        Assert.Equal(lowPlain[3] / 8, low[3], 9); // low band (wavelength > 8192) divided by the factor
        Assert.Throws<NotSupportedException>(() => RopeScaling.InvFreq(c with { RopeScaling = new HfRopeScaling("yarn", 4, null, null, null) }));
    }

    // a model whose logits say "token + 1" and whose device argmax says "token + 2": generation takes the model's own
    // greedy step only when the choice is pure argmax (temperature 0, no repetition penalty)
    private sealed class TwoWayModel : ICausalLM, IGreedyStep
    {
        private readonly float[] _logits = new float[10];
        public int GreedySteps { get; private set; }
        public TransformerConfig Config { get; } = new() { VocabSize = 10 };
        public int MaxBatch => 4;
        public int MaxContext => 64;
        public ReadOnlySpan<float> Forward(ReadOnlySpan<int> tokens, int pos, bool allLogits)
        {
            Array.Clear(_logits);
            _logits[(tokens[^1] + 1) % 10] = 1;
            return _logits;
        }
        public int StepGreedy(int token, int pos) { GreedySteps++; return (token + 2) % 10; }
        public void Dispose() { }
    }

    [Fact]
    public void Greedy_generation_uses_the_models_own_argmax_step_and_sampling_does_not()
    {
        using var m = new TwoWayModel();
        Assert.Equal([1, 3, 5, 7], Generator.GenerateIds(m, [0], 4));
        Assert.Equal(3, m.GreedySteps);
        using var h = new TwoWayModel();
        Assert.Equal([1, 2, 3, 4], Generator.GenerateIds(h, [0], 4, new SamplingOptions { RepetitionPenalty = 1.1f }));
        Assert.Equal(0, h.GreedySteps);
    }
}
