// Scalar reference dequantizer: an encoder result (codes, statistics, outliers, permutation) -> Ŵ (rows, cols) in the
// original column order. ŵ = scale[g, r] · (code − zero[g, r]) with g = permuted column / β1; outliers replace
// their position with the stored value. Kept as the ground truth for the fast decode kernels.
using SpQR.Quant.Encode;

namespace SpQR.Quant.Decode;

public static class SpqrDequantizeReference
{
    public static float[] Dequantize(SpqrLayerResult q)
    {
        int rows = q.Rows, cols = q.Cols, b1 = q.Options.GroupSize;
        var permuted = new float[(long)rows * cols];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
            {
                long g = (long)(c / b1) * rows + r;
                permuted[(long)r * cols + c] = q.Scale[g] * (q.Codes[(long)r * cols + c] - q.Zero[g]);
            }
        for (int i = 0; i < q.OutlierRows.Length; i++) permuted[(long)q.OutlierRows[i] * cols + q.OutlierCols[i]] = q.OutlierValues[i];
        var w = new float[permuted.Length];
        for (int r = 0; r < rows; r++) for (int c = 0; c < cols; c++) w[(long)r * cols + q.Permutation[c]] = permuted[(long)r * cols + c];
        return w;
    }
}
