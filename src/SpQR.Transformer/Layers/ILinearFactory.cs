// Builds the linear layers of a model from its weight source. The dense factory wraps the checkpoint's tensors;
// the SpQR factory (compressed-format issue) returns SpQR layers for the same names. Models only see ILinear.
using SpQR.Tensors;
using SpQR.Transformer.Loading;

namespace SpQR.Transformer.Layers;

public interface ILinearFactory
{
    ILinear Create(IWeightSource source, string weightName, long[] shape, float[]? bias);
}

public sealed class DenseLinearFactory : ILinearFactory
{
    public static DenseLinearFactory Instance { get; } = new();
    public ILinear Create(IWeightSource source, string weightName, long[] shape, float[]? bias) => new DenseLinear(source.Get(weightName, new Shape(shape)), bias);
}
