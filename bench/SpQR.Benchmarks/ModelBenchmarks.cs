// Prefill and decode of a LLaMA-7B-shaped model (hidden 4096, intermediate 11008, 32 heads, vocab 32000) with
// random weights and 2 decoder layers, in F32, F16 and SpQR w3 (random codes, 3-bit statistics, 1% outliers; the
// embeddings, norms and head stay F16). Decode reads every weight once per token, so its bound is
// (weight bytes) / (GEMV bandwidth); the Throughput column reports tokens/s directly.
using BenchmarkDotNet.Attributes;
using SpQR.Tensors;
using SpQR.Tensors.Cpu;
using SpQR.Transformer.Config;
using SpQR.Transformer.Loading;
using SpQR.Transformer.Models;

namespace SpQR.Benchmarks;

public class ModelBenchmarks : IThroughput
{
    public const int Layers = 2, PrefillTokens = 64, DecodeAt = 64;

    public static TransformerConfig Llama7BShaped(int layers) => new()
    {
        Architecture = Architecture.Llama, HiddenSize = 4096, IntermediateSize = 11008, NumLayers = layers, NumHeads = 32, NumKvHeads = 32,
        HeadDim = 128, VocabSize = 32000, MaxPositions = 2048, NormEps = 1e-5f, Norm = NormKind.RmsNorm, Activation = ActivationKind.SwiGlu,
        RopeLayout = RopeLayout.HalfSplit, RopeTheta = 10000,
    };

    [Params("F32", "F16", "SpQR-w3")] public string Weights { get; set; } = "F16";

    private ICausalLM? _model;
    private int[] _prompt = [];

    [GlobalSetup]
    public void Setup()
    {
        var cfg = Llama7BShaped(Layers);
        var options = new ModelOptions { MaxContext = 256, MaxBatch = PrefillTokens };
        if (Weights == "SpQR-w3") options = options with { Linears = new RandomSpqrLinears() };
        _model = ModelLoader.Build(cfg, new RandomWeightSource(cfg, Weights == "F32" ? DType.F32 : DType.F16), options);
        _prompt = Enumerable.Range(0, PrefillTokens).Select(i => (i * 7919) % cfg.VocabSize).ToArray();
        _model.Forward(_prompt, 0, false);
    }

    [GlobalCleanup] public void Cleanup() => _model?.Dispose();

    [Benchmark] public float Prefill64() => _model!.Forward(_prompt, 0, false)[0];

    [Benchmark] public float DecodeToken() => _model!.Forward(_prompt.AsSpan(0, 1), DecodeAt, false)[0];

    public (double, string) Work(string method) => method == nameof(Prefill64) ? (PrefillTokens * 1e9, "tokens/s") : (1e9, "tokens/s");
}

/// <summary>Every linear a random SpQR w3 layer with 1% outliers (a speed test: the values are not a trained model's).</summary>
public sealed class RandomSpqrLinears : SpQR.Transformer.Layers.ILinearFactory
{
    private int _seed;
    public SpQR.Transformer.Layers.ILinear Create(IWeightSource source, string weightName, long[] shape, float[]? bias)
        => weightName == "lm_head.weight" // the head stays dense, as the quantizer leaves it
            ? new SpQR.Transformer.Layers.DenseLinear(source.Get(weightName, new Shape(shape)), bias)
            : new SpQR.Transformer.Layers.SpqrLinear(SpQR.Quant.Formats.SpqrLayer.Random((int)shape[0], (int)shape[1], 3, 0.01, ++_seed), bias);
}
