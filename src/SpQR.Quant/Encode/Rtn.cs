// Round-to-nearest baseline: each row's groups of β1 consecutive columns (original order) quantized by min-max,
// no Hessian, no error feedback, no outliers, FP16-free float32 statistics. What the papers call RTN.
namespace SpQR.Quant.Encode;

public static class Rtn
{
    // W (rows, cols) -> Ŵ (rows, cols)
    public static float[] Dequantized(ReadOnlySpan<float> W, int rows, int cols, int wbits, int groupSize)
    {
        var outW = new float[W.Length];
        var codes = new byte[groupSize];
        for (int r = 0; r < rows; r++)
            for (int c0 = 0; c0 < cols; c0 += groupSize)
            {
                int n = Math.Min(groupSize, cols - c0);
                MinMaxQuantizer.QuantizeGroup(W.Slice(r * cols + c0, n), wbits, codes, outW.AsSpan(r * cols + c0, n));
            }
        return outW;
    }
}
