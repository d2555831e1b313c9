// Comparisons that say what differed: the first few (index, expected, actual) pairs and the bound that failed.
using System.Text;
using Xunit.Sdk;

namespace SpQR.TestUtil;

public static class NumericAssert
{
    /// <summary>|actual[i] - expected[i]| ≤ abs + rel·|expected[i]| for every i.</summary>
    public static void Close(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, double rel, double abs, string what = "")
    {
        if (expected.Length != actual.Length) throw new XunitException($"{what}: length {actual.Length}, expected {expected.Length}");
        var bad = new List<int>();
        for (int i = 0; i < expected.Length; i++)
        {
            double e = expected[i], a = actual[i];
            if (double.IsNaN(e) && double.IsNaN(a)) continue;
            if (e == a) continue;
            if (!(Math.Abs(a - e) <= abs + rel * Math.Abs(e))) bad.Add(i);
        }
        if (bad.Count > 0) throw new XunitException(Describe(what, expected, actual, bad, $"|a-e| ≤ {abs:G3} + {rel:G3}·|e|"));
    }

    /// <summary>Bit-for-bit equality (NaNs equal to NaNs).</summary>
    public static void Equal(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, string what = "")
    {
        if (expected.Length != actual.Length) throw new XunitException($"{what}: length {actual.Length}, expected {expected.Length}");
        var bad = new List<int>();
        for (int i = 0; i < expected.Length; i++)
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]) && !(float.IsNaN(expected[i]) && float.IsNaN(actual[i]))) bad.Add(i);
        if (bad.Count > 0) throw new XunitException(Describe(what, expected, actual, bad, "bit equality"));
    }

    /// <summary>‖actual - expected‖₂ / ‖expected‖₂ ≤ tol.</summary>
    public static void RelL2(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, double tol, string what = "")
    {
        double num = 0, den = 0;
        for (int i = 0; i < expected.Length; i++) { double d = actual[i] - expected[i]; num += d * d; den += (double)expected[i] * expected[i]; }
        double r = Math.Sqrt(num / Math.Max(den, 1e-300));
        if (!(r <= tol))
        {
            var diff = new double[expected.Length];
            for (int i = 0; i < diff.Length; i++) diff[i] = Math.Abs(actual[i] - expected[i]);
            var bad = Enumerable.Range(0, diff.Length).OrderByDescending(i => diff[i]).Take(5).ToList();
            throw new XunitException(Describe(what, expected, actual, bad, $"relative L2 {r:G4} ≤ {tol:G3}"));
        }
    }

    /// <summary>Normalised mean squared error ‖actual - expected‖² / ‖expected‖² ≤ tol (ggml's test-backend-ops measure).</summary>
    public static void Nmse(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, double tol, string what = "")
    {
        if (expected.Length != actual.Length) throw new XunitException($"{what}: length {actual.Length}, expected {expected.Length}");
        double num = 0, den = 0;
        for (int i = 0; i < expected.Length; i++) { double d = actual[i] - expected[i]; num += d * d; den += (double)expected[i] * expected[i]; }
        double r = num / Math.Max(den, 1e-30);
        if (!(r <= tol))
        {
            var diff = new double[expected.Length];
            for (int i = 0; i < diff.Length; i++) diff[i] = Math.Abs(actual[i] - expected[i]);
            var bad = Enumerable.Range(0, diff.Length).OrderByDescending(i => diff[i]).Take(5).ToList();
            throw new XunitException(Describe(what, expected, actual, bad, $"NMSE {r:G4} ≤ {tol:G3}"));
        }
    }

    private static string Describe(string what, ReadOnlySpan<float> e, ReadOnlySpan<float> a, List<int> bad, string bound)
    {
        var sb = new StringBuilder($"{what}: {bad.Count} of {e.Length} elements fail {bound}; first:");
        foreach (int i in bad.Take(5)) sb.Append($"\n  [{i}] expected {e[i]:R}, actual {a[i]:R}, diff {a[i] - e[i]:G4}");
        return sb.ToString();
    }
}
