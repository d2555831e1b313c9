// Prefill and decode of a LLaMA-7B-shaped model (hidden 4096, intermediate 11008, 32 heads, vocab 32000) with
// random weights and 2 decoder layers, in F32 and F16. Decode reads every weight once per token, so its bound is
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

    [Params(DType.F32, DType.F16)] public DType Weights { get; set; }

    private ICausalLM? _model;
    private int[] _prompt = [];

    [GlobalSetup]
    public void Setup()
    {
        var cfg = Llama7BShaped(Layers);
        _model = ModelLoader.Build(cfg, new RandomWeightSource(cfg, Weights), new ModelOptions { MaxContext = 256, MaxBatch = PrefillTokens });
        _prompt = Enumerable.Range(0, PrefillTokens).Select(i => (i * 7919) % cfg.VocabSize).ToArray();
        _model.Forward(_prompt, 0, false);
    }

    [GlobalCleanup] public void Cleanup() => _model?.Dispose();

    [Benchmark] public float Prefill64() => _model!.Forward(_prompt, 0, false)[0];

    [Benchmark] public float DecodeToken() => _model!.Forward(_prompt.AsSpan(0, 1), DecodeAt, false)[0];

    public (double, string) Work(string method) => method == nameof(Prefill64) ? (PrefillTokens * 1e9, "tokens/s") : (1e9, "tokens/s");
}
