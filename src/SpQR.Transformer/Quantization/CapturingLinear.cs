// The linear layer the layer-by-layer quantizer puts behind the seam: it forwards through the checkpoint's dense
// layer (or, once quantized, through Ŵ) and, while capturing, adds its inputs to a Hessian accumulator.
using SpQR.Quant.Encode;
using SpQR.Tensors;
using SpQR.Transformer.Layers;
using SpQR.Transformer.Loading;

namespace SpQR.Transformer.Quantization;

public sealed class CapturingLinear(string name, ILinear original, Tensor weight, float[]? bias) : ILinear
{
    public float[]? Bias { get; } = bias;
    public string Name { get; } = name;
    /// <summary>The checkpoint's weight (rows, cols), any float dtype.</summary>
    public Tensor Weight { get; } = weight;
    public ILinear? Replacement { get; set; }
    public HessianAccumulator? Capture { get; set; }

    public int InFeatures => original.InFeatures;
    public int OutFeatures => original.OutFeatures;

    public void Forward(ReadOnlySpan<float> x, Span<float> y) => ForwardBatch(x, y, 1);

    public void ForwardBatch(ReadOnlySpan<float> X, Span<float> Y, int T)
    {
        Capture?.AddTokens(X, T);
        (Replacement ?? original).ForwardBatch(X, Y, T);
    }
}

public sealed class CapturingLinearFactory : ILinearFactory
{
    public Dictionary<string, CapturingLinear> Linears { get; } = new();

    public ILinear Create(IWeightSource source, string weightName, long[] shape, float[]? bias)
    {
        var t = source.Get(weightName, new Shape(shape));
        string name = weightName.EndsWith(".weight", StringComparison.Ordinal) ? weightName[..^7] : weightName;
        var l = new CapturingLinear(name, new DenseLinear(t, bias), t, bias);
        Linears[name] = l;
        return l;
    }
}
