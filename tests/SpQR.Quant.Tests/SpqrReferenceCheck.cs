// One check of an encoder against the authors' reference on the layer fixtures (../shared/fixtures/spqr-layer), shared
// by the CPU encoder's tests and the device encoder's (SpQR.Gpu.Tests links this file): same permutation, outlier count
// within 2%, outlier mask Jaccard ≥ 0.95, |Ŵ − Ŵref| / |W| ≤ 1e-3, H-weighted error within 1% of the reference's.
using SpQR.Quant.Encode;
using SpQR.Tensors.IO;
using SpQR.TestUtil;
using Xunit;

namespace SpQR.Quant.Tests;

public static class SpqrReferenceCheck
{
    /// <summary>The options the fixture was made with (the reference's float32 statistics: StorageExact off).</summary>
    public static readonly SpqrOptions FixtureOptions = new()
    {
        WBits = 3, GroupSize = 16, QqScaleBits = 3, QqZeroBits = 3, QqGroupSize = 4, OutlierThreshold = 0.2,
        PermutationOrder = PermutationOrder.ActOrder, PercDamp = 1.0, BlockSize = 128, StorageExact = false,
    };

    public delegate SpqrLayerResult Encoder(float[] W, double[] H, int rows, int cols, SpqrOptions o, string layer);

    public static void AssertMatches(string layer, Encoder encode, Action<string> log)
    {
        using var f = SafetensorsFile.Open(Fixtures.Path("fixtures", "spqr-layer", layer + ".safetensors"));
        var W = f.Get("W").AsReadOnlySpan<float>().ToArray();
        int rows = (int)f.Entry("W").Shape[0], cols = (int)f.Entry("W").Shape[1];
        var H = f.Get("H").AsReadOnlySpan<float>().ToArray().Select(x => (double)x).ToArray();
        var refHat = f.Get("W_hat").AsReadOnlySpan<float>().ToArray();
        var refMask = f.Get("outlier_mask_permuted").AsReadOnlySpan<byte>().ToArray();

        var r = encode(W, H, rows, cols, FixtureOptions, layer);
        Assert.Equal(f.Get("perm").ToInt32Array(), r.Permutation);
        var mask = new bool[rows * cols];
        for (int i = 0; i < r.OutlierRows.Length; i++) mask[r.OutlierRows[i] * cols + r.OutlierCols[i]] = true;
        int refCount = refMask.Count(m => m != 0), both = 0, either = 0;
        for (int i = 0; i < mask.Length; i++) { both += mask[i] && refMask[i] != 0 ? 1 : 0; either += mask[i] || refMask[i] != 0 ? 1 : 0; }
        double jaccard = either == 0 ? 1 : (double)both / either;
        double num = 0, den = 0;
        for (int i = 0; i < W.Length; i++) { num += Math.Pow(r.Dequantized[i] - refHat[i], 2); den += (double)W[i] * W[i]; }
        double relDiff = Math.Sqrt(num / den);
        double err = LayerError.HWeighted(W, r.Dequantized, H, rows, cols), refErr = LayerError.HWeighted(W, refHat, H, rows, cols);
        log($"{layer}: outliers {r.OutlierRows.Length} vs {refCount}, Jaccard {jaccard:F4}, |Ŵ-Ŵref|/|W| {relDiff:E2}, H-error {err:G6} vs {refErr:G6}");

        Assert.InRange(r.OutlierRows.Length, refCount * 0.98, refCount * 1.02);
        Assert.True(jaccard >= 0.95, $"outlier mask Jaccard {jaccard}");
        Assert.True(relDiff <= 1e-3, $"relative difference of Ŵ {relDiff}");
        Assert.InRange(err, refErr * 0.99, refErr * 1.01);
    }
}
