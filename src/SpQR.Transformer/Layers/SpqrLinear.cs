// A SpQR-compressed linear layer behind the seam: fused matvec for one token, batched matmul (each group decoded
// once per call and reused across tokens) for prefill. Optional F32 bias.
using SpQR.Quant.Decode;
using SpQR.Quant.Formats;
using SpQR.Tensors;
using SpQR.Tensors.Cpu;
using SpQR.Tensors.IO;
using SpQR.Transformer.Loading;

namespace SpQR.Transformer.Layers;

public sealed class SpqrLinear(SpqrLayer layer, float[]? bias) : ILinear
{
    public SpqrLayer Layer { get; } = layer;
    public int InFeatures => Layer.Cols;
    public int OutFeatures => Layer.Rows;

    public void Forward(ReadOnlySpan<float> x, Span<float> y)
    {
        SpqrMatVec.MatVec(Layer, x[..InFeatures], y[..OutFeatures]);
        if (bias is not null) CpuKernels.Add(y[..OutFeatures], bias, y[..OutFeatures]);
    }

    public void ForwardBatch(ReadOnlySpan<float> X, Span<float> Y, int T)
    {
        SpqrMatVec.MatMul(Layer, X[..(T * InFeatures)], Y[..(T * OutFeatures)], T);
        if (bias is not null) for (int t = 0; t < T; t++) CpuKernels.Add(Y.Slice(t * OutFeatures, OutFeatures), bias, Y.Slice(t * OutFeatures, OutFeatures));
    }
}

/// <summary>Linear layers of a compressed checkpoint: SpQR where "<name>.spqr.*" exists, dense otherwise.</summary>
public sealed class SpqrLinearFactory(SafetensorsCheckpoint checkpoint) : ILinearFactory
{
    public ILinear Create(IWeightSource source, string weightName, long[] shape, float[]? bias)
    {
        string name = weightName.EndsWith(".weight", StringComparison.Ordinal) ? weightName[..^7] : weightName;
        if (!checkpoint.Contains(name + ".spqr.shape")) return new DenseLinear(source.Get(weightName, new Shape(shape)), bias);
        var layer = SpqrSerializer.Read(name, n => checkpoint.Contains(n) ? checkpoint.Get(n) : null, checkpoint.FileOf(name + ".spqr.shape"));
        if (layer.Rows != shape[0] || layer.Cols != shape[1])
            throw new ModelFormatException(checkpoint.FileOf(name + ".spqr.shape"), $"tensor \"{name}.spqr.shape\"", $"[{shape[0]}, {shape[1]}]", $"[{layer.Rows}, {layer.Cols}]", "config.json does not match the weights");
        return new SpqrLinear(layer, bias);
    }
}
