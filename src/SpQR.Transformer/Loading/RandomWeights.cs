// A weight source of deterministic random tensors for a config: speed tests of model-sized layers without a
// checkpoint (benchmarks, GpuBench's decode timing). Linear weights ~ U(-a, a) with a = 1/sqrt(in_features), norms = 1.
using SpQR.Tensors;
using SpQR.Tensors.Cpu;
using SpQR.Transformer.Config;

namespace SpQR.Transformer.Loading;

public sealed class RandomWeightSource : IWeightSource
{
    private readonly Dictionary<string, Tensor> _tensors = new();
    public string Path => "random weights";

    public RandomWeightSource(TransformerConfig config, DType dtype, int seed = 0)
    {
        if (dtype is not (DType.F32 or DType.F16 or DType.BF16)) throw new ArgumentException($"random weights must be F32, F16 or BF16, got {dtype}");
        var rng = new Random(seed);
        foreach (var spec in WeightLayout.For(config))
        {
            var t = Tensor.Zeros(spec.Role is WeightRole.Norm or WeightRole.NormBias or WeightRole.LinearBias ? DType.F32 : dtype, spec.Shape);
            long n = t.ElementCount;
            float a = spec.Role == WeightRole.Embedding ? 1f : 1f / MathF.Sqrt(spec.Shape[^1]);
            var row = new float[spec.Shape[^1]];
            for (long r = 0; r < n / row.Length; r++)
            {
                for (int i = 0; i < row.Length; i++)
                    row[i] = spec.Role switch { WeightRole.Norm => 1f, WeightRole.NormBias or WeightRole.LinearBias => 0f, _ => (float)(rng.NextDouble() * 2 - 1) * a };
                var dst = t.Rank == 1 ? t : t.Row(r);
                switch (t.DType)
                {
                    case DType.F32: row.CopyTo(dst.AsSpan<float>()); break;
                    case DType.F16: CpuKernels.F32ToF16(row, dst.AsSpan<ushort>()); break;
                    default: CpuKernels.F32ToBF16(row, dst.AsSpan<ushort>()); break;
                }
            }
            _tensors[spec.Name] = t;
        }
    }

    public bool Contains(string name) => _tensors.ContainsKey(name);

    public Tensor Get(string name, Shape expected)
    {
        var t = _tensors[name];
        if (t.Shape != expected) throw new ArgumentException($"random tensor {name} is {t.Shape}, expected {expected}");
        return t;
    }

    /// <summary>Bytes of every tensor (the per-token read of a decode step, minus the embedding row).</summary>
    public long Bytes => _tensors.Values.Sum(t => t.ByteLength);

    public void Dispose() { foreach (var t in _tensors.Values) t.Dispose(); }
}
