// The H-weighted reconstruction error tr((W − Ŵ) H (W − Ŵ)ᵀ) of a layer: the quantity GPTQ/SpQR minimise
// (proportional to the expected squared output error on the calibration inputs). Computed in float64.
namespace SpQR.Quant.Encode;

public static class LayerError
{
    // W, Ŵ (rows, cols), H (cols, cols) -> Σ_r (w_r − ŵ_r) H (w_r − ŵ_r)ᵀ
    public static double HWeighted(ReadOnlySpan<float> W, ReadOnlySpan<float> What, ReadOnlySpan<double> H, int rows, int cols)
    {
        var e = new double[cols];
        double total = 0;
        for (int r = 0; r < rows; r++)
        {
            for (int c = 0; c < cols; c++) e[c] = (double)W[r * cols + c] - What[r * cols + c];
            for (int i = 0; i < cols; i++)
            {
                if (e[i] == 0) continue;
                total += e[i] * Cholesky.Dot(H.Slice(i * cols, cols), e);
            }
        }
        return total;
    }
}
