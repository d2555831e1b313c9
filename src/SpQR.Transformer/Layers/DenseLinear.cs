// Dense linear layer over a weight tensor used in place (F32, F16 or BF16, usually a view of a memory-mapped file):
// GEMV for one token, GEMM (X·Wᵀ, half weights widened while packing) for a batch. Optional F32 bias.
using SpQR.Tensors;
using SpQR.Tensors.Cpu;

namespace SpQR.Transformer.Layers;

public sealed class DenseLinear : ILinear
{
    private readonly Tensor _w;        // (out, in)
    private readonly WeightType _type;
    private readonly float[]? _bias;   // (out,)

    public int InFeatures { get; }
    public int OutFeatures { get; }
    public Tensor Weight => _w;

    public DenseLinear(Tensor weight, float[]? bias = null)
    {
        if (weight.Rank != 2) throw new ArgumentException($"linear weight {weight.Name} must be 2-D, got {weight.Shape}");
        _type = weight.DType switch
        {
            DType.F32 => WeightType.F32, DType.F16 => WeightType.F16, DType.BF16 => WeightType.BF16,
            _ => throw new NotSupportedException($"linear weight {weight.Name} is {weight.DType}; expected F32, F16 or BF16"),
        };
        _w = weight;
        OutFeatures = checked((int)weight.Shape[0]);
        InFeatures = checked((int)weight.Shape[1]);
        if (bias is not null && bias.Length != OutFeatures) throw new ArgumentException($"bias of {weight.Name} has {bias.Length} entries, expected {OutFeatures}");
        _bias = bias;
    }

    public void Forward(ReadOnlySpan<float> x, Span<float> y)
    {
        CpuKernels.Gemv(_w, x[..InFeatures], y[..OutFeatures]);
        if (_bias is not null) CpuKernels.Add(y[..OutFeatures], _bias, y[..OutFeatures]);
    }

    public void ForwardBatch(ReadOnlySpan<float> X, Span<float> Y, int T)
    {
        if (T == 1) { Forward(X, Y); return; }
        CpuKernels.MatMulTransposed(X[..(T * InFeatures)], _w.Bytes, _type, Y[..(T * OutFeatures)], T, OutFeatures, InFeatures);
        if (_bias is not null) for (int t = 0; t < T; t++) CpuKernels.Add(Y.Slice(t * OutFeatures, OutFeatures), _bias, Y.Slice(t * OutFeatures, OutFeatures));
    }
}
