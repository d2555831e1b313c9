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

/// <summary>
/// Linear layers of a compressed checkpoint: SpQR where "&lt;name&gt;.spqr.*" (our format) or "&lt;name&gt;.dense_weights"
/// (the SpQR authors' export, converted on load) exists, dense otherwise.
/// </summary>
public sealed class SpqrLinearFactory(SafetensorsCheckpoint checkpoint) : ILinearFactory
{
    public ILinear Create(IWeightSource source, string weightName, long[] shape, float[]? bias)
    {
        string name = weightName.EndsWith(".weight", StringComparison.Ordinal) ? weightName[..^7] : weightName;
        var layer = ReadLayer(checkpoint, name, out string file);
        if (layer is null) return new DenseLinear(source.Get(weightName, new Shape(shape)), bias);
        if (layer.Rows != shape[0] || layer.Cols != shape[1])
            throw new ModelFormatException(file, $"SpQR linear \"{name}\"", $"[{shape[0]}, {shape[1]}]", $"[{layer.Rows}, {layer.Cols}]", "config.json does not match the weights");
        return new SpqrLinear(layer, bias);
    }

    /// <summary>The SpQR layer stored for a linear in either layout, validated; null when the linear is dense.</summary>
    public static SpqrLayer? ReadLayer(SafetensorsCheckpoint checkpoint, string name, out string file)
    {
        Tensor? Get(string n) => checkpoint.Contains(n) ? checkpoint.Get(n) : null;
        if (checkpoint.Contains(name + ".spqr.shape"))
        {
            file = checkpoint.FileOf(name + ".spqr.shape");
            return SpqrSerializer.Read(name, Get, file);
        }
        if (SpqrAuthorsExport.Holds(name, checkpoint.Contains))
        {
            file = checkpoint.FileOf(name + ".dense_weights");
            return SpqrAuthorsExport.ToSpqrLayer(SpqrAuthorsExport.Read(name, Get, file));
        }
        file = "";
        return null;
    }

    /// <summary>True when the checkpoint holds SpQR linears in either layout.</summary>
    public static bool IsCompressed(SafetensorsCheckpoint checkpoint)
        => checkpoint.TensorNames.Any(n => n.EndsWith(".spqr.shape", StringComparison.Ordinal) || n.EndsWith(".dense_weights", StringComparison.Ordinal));
}
