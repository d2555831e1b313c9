// The one seam between models and weight formats: a linear layer y = W·x (+ b), W [out_features, in_features].
// Dense (F32/F16/BF16) and SpQR implementations sit behind it; LLaMA and Falcon never see which one they call.
namespace SpQR.Transformer.Layers;

public interface ILinear
{
    int InFeatures { get; }
    int OutFeatures { get; }

    // W (out, in) @ x (in,) -> y (out,)           — one token (decode)
    void Forward(ReadOnlySpan<float> x, Span<float> y);

    // X (T, in) @ Wᵀ -> Y (T, out)                 — a batch of tokens (prefill)
    void ForwardBatch(ReadOnlySpan<float> X, Span<float> Y, int T);
}
