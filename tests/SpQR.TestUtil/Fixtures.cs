// Where ../shared lives (beside the repository root), and attributes that skip with a reason when it is absent.
using Xunit;

namespace SpQR.TestUtil;

public static class Fixtures
{
    /// <summary>The shared folder: $SPQR_SHARED, else ../shared next to the folder holding SpQR.Native.sln.</summary>
    public static string? SharedRoot { get; } = Find();

    public static bool Available => SharedRoot is not null;

    public const string MissingReason = "../shared (fixtures and data) is not beside the repository; set SPQR_SHARED to its path to run this test";

    public static string Path(params string[] parts) =>
        System.IO.Path.Combine([SharedRoot ?? throw new InvalidOperationException(MissingReason), .. parts]);

    private static string? Find()
    {
        var env = Environment.GetEnvironmentVariable("SPQR_SHARED");
        if (!string.IsNullOrEmpty(env) && Directory.Exists(env)) return env;
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(System.IO.Path.Combine(dir.FullName, "SpQR.Native.sln"))) dir = dir.Parent;
        if (dir?.Parent is null) return null;
        var shared = System.IO.Path.Combine(dir.Parent.FullName, "shared");
        return Directory.Exists(System.IO.Path.Combine(shared, "fixtures")) ? shared : null;
    }
}

/// <summary>A fact that needs ../shared; skipped with a clear reason when it is absent.</summary>
public sealed class SharedFactAttribute : FactAttribute
{
    public SharedFactAttribute() { if (!Fixtures.Available) Skip = Fixtures.MissingReason; }
}

/// <summary>A theory that needs ../shared; skipped with a clear reason when it is absent.</summary>
public sealed class SharedTheoryAttribute : TheoryAttribute
{
    public SharedTheoryAttribute() { if (!Fixtures.Available) Skip = Fixtures.MissingReason; }
}

/// <summary>Deterministic random data for tests.</summary>
public static class TestData
{
    public static float[] Uniform(int n, int seed, float lo = -1, float hi = 1)
    {
        var r = new Random(seed);
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = lo + (float)r.NextDouble() * (hi - lo);
        return a;
    }

    /// <summary>Small integers in [-k, k]: sums and products stay exact in float32.</summary>
    public static float[] Integers(int n, int seed, int k = 4)
    {
        var r = new Random(seed);
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = r.Next(-k, k + 1);
        return a;
    }
}
