// A weight source of deterministic random tensors for a config: speed tests of model-sized layers without a
// checkpoint (benchmarks, GpuBench's decode timing). Linear weights ~ U(-a, a) with a = 1/sqrt(in_features), norms = 1;
// SplitMix64 streams per (seed, tensor, row), generated in parallel.
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
        int index = 0;
        foreach (var spec in WeightLayout.For(config))
        {
            var t = Tensor.Zeros(spec.Role is WeightRole.Norm or WeightRole.NormBias or WeightRole.LinearBias ? DType.F32 : dtype, spec.Shape);
            int cols = (int)spec.Shape[^1];
            long rows = t.ElementCount / cols;
            float a = spec.Role == WeightRole.Embedding ? 1f : 1f / MathF.Sqrt(cols);
            ulong stream = Mix(Mix((ulong)(uint)seed + 1) ^ (ulong)index++ * 0x100000001B3UL);
            // rows in parallel (a 7B-shaped model is 6.7e9 values: ~100 s on one core); each row's values depend only on
            // (seed, tensor, row), so the weights are the same whatever the thread count
            Parallel.For(0L, rows, () => new float[cols], (r, _, row) =>
            {
                ulong x = Mix(stream ^ (ulong)r * 0x9E3779B97F4A7C15UL);
                for (int i = 0; i < cols; i++)
                {
                    x += 0x9E3779B97F4A7C15UL;
                    row[i] = spec.Role switch
                    {
                        WeightRole.Norm => 1f,
                        WeightRole.NormBias or WeightRole.LinearBias => 0f,
                        _ => ((Mix(x) >> 40) * (2f / 16777216f) - 1f) * a, // U(-a, a) from 24 random bits
                    };
                }
                var dst = t.Rank == 1 ? t : t.Row(r);
                switch (t.DType)
                {
                    case DType.F32: row.CopyTo(dst.AsSpan<float>()); break;
                    case DType.F16: CpuKernels.F32ToF16(row, dst.AsSpan<ushort>()); break;
                    default: CpuKernels.F32ToBF16(row, dst.AsSpan<ushort>()); break;
                }
                return row;
            }, _ => { });
            _tensors[spec.Name] = t;
        }
    }

    // SplitMix64's finalizer: a well-mixed 64-bit value of z (one step of its stream is z + 0x9E3779B97F4A7C15)
    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
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
