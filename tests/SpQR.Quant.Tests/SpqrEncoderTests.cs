// The SpQR encoder against the authors' reference on two real layers (the check itself: SpqrReferenceCheck.cs).
using SpQR.Quant.Encode;
using SpQR.TestUtil;
using Xunit;
using Xunit.Abstractions;

namespace SpQR.Quant.Tests;

public class SpqrEncoderTests(ITestOutputHelper output)
{
    [SharedTheory]
    [InlineData("layer1.self_attn.q_proj")]
    [InlineData("layer1.mlp.down_proj")]
    public void Matches_the_reference_implementation(string layer)
        => SpqrReferenceCheck.AssertMatches(layer, (W, H, rows, cols, o, name) => SpqrEncoder.Quantize(W, H, rows, cols, o, name), output.WriteLine);
}
