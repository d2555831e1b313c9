// Key/value cache of one sequence: per layer K and V (maxContext, kvDim) float32, allocated once.
// Position p of layer l holds the rotated key and the value of token p.
namespace SpQR.Transformer.Layers;

public sealed class KvCache
{
    public int Layers { get; }
    public int MaxContext { get; }
    public int KvDim { get; }
    private readonly float[][] _k, _v; // (layer) -> (maxContext, kvDim)

    public KvCache(int layers, int maxContext, int kvDim)
    {
        long floats = checked((long)maxContext * kvDim);
        if (floats > Array.MaxLength) throw new ArgumentOutOfRangeException(nameof(maxContext), $"a KV cache of {maxContext} x {kvDim} floats per layer is too large; lower the context");
        Layers = layers; MaxContext = maxContext; KvDim = kvDim;
        _k = new float[layers][]; _v = new float[layers][];
        for (int l = 0; l < layers; l++) { _k[l] = new float[floats]; _v[l] = new float[floats]; }
    }

    public Span<float> K(int layer, int pos) => _k[layer].AsSpan(pos * KvDim, KvDim);
    public Span<float> V(int layer, int pos) => _v[layer].AsSpan(pos * KvDim, KvDim);
    // (count, kvDim) rows [0, count)
    public ReadOnlySpan<float> Keys(int layer, int count) => _k[layer].AsSpan(0, count * KvDim);
    public ReadOnlySpan<float> Values(int layer, int count) => _v[layer].AsSpan(0, count * KvDim);
}
