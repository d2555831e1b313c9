// `SpQR.GpuBench tests DIR/SpQR.Gpu.Tests.dll [filter]`: runs an xunit (v2) test assembly's facts and theories in this
// process with SPQR_DEVICE=gpu (unless set), so the GPU test suite runs on the CUDA device of the GPU host, which has the .NET runtime
// but no SDK (no `dotnet test`). Publish the tests next to the bench: `dotnet publish tests/SpQR.Gpu.Tests -c Release
// -o .gpu/tests`. What it does, by reflection only (no xunit reference here): every public method with an attribute
// derived from Xunit.FactAttribute, its Skip honoured; theory rows from its Xunit.Sdk.DataAttribute attributes
// (InlineData, MemberData: their own GetData); constructor arguments are class fixtures (one instance per test class,
// disposed after it, as xunit does) and ITestOutputHelper (printed, indented); async tests are awaited. Prints one line
// per test and `N passed, N failed, N skipped` last; the exit code is the number failed (capped at 100).
using System.Diagnostics;
using System.Reflection;

internal static class DeviceTests
{
    public static int Run(string assemblyPath, string? filter)
    {
        if (Environment.GetEnvironmentVariable("SPQR_DEVICE") is null) Environment.SetEnvironmentVariable("SPQR_DEVICE", "gpu"); // SPQR_DEVICE=cpu: try the runner here
        var asm = Assembly.LoadFrom(Path.GetFullPath(assemblyPath));
        int passed = 0, failed = 0, skipped = 0;
        foreach (var type in asm.GetExportedTypes().Where(t => t.IsClass && !t.IsAbstract).OrderBy(t => t.FullName))
        {
            var tests = type.GetMethods(BindingFlags.Public | BindingFlags.Instance)
                            .Select(m => (Method: m, Fact: m.GetCustomAttributes().FirstOrDefault(a => Derives(a.GetType(), "Xunit.FactAttribute"))))
                            .Where(x => x.Fact is not null && (filter is null || $"{type.FullName}.{x.Method.Name}".Contains(filter, StringComparison.OrdinalIgnoreCase)))
                            .OrderBy(x => x.Method.Name).ToList();
            if (tests.Count == 0) continue;
            var fixtures = new Dictionary<Type, object>();
            try
            {
                foreach (var (method, fact) in tests)
                {
                    string name = $"{type.Name}.{method.Name}";
                    if (fact!.GetType().GetProperty("Skip")?.GetValue(fact) is string skip && skip.Length > 0)
                    {
                        skipped++;
                        Console.WriteLine($"SKIP {name}: {skip}");
                        continue;
                    }
                    var rows = new List<object?[]>();
                    foreach (var data in method.GetCustomAttributes().Where(a => Derives(a.GetType(), "Xunit.Sdk.DataAttribute")))
                    {
                        var get = data.GetType().GetMethod("GetData", [typeof(MethodInfo)])!;
                        rows.AddRange(((IEnumerable<object?[]>)get.Invoke(data, [method])!));
                    }
                    if (rows.Count == 0) rows.Add([]);
                    foreach (var row in rows)
                    {
                        string label = row.Length == 0 ? name : $"{name}({string.Join(", ", row.Select(v => v?.ToString() ?? "null"))})";
                        var sw = Stopwatch.StartNew();
                        try
                        {
                            object instance = Create(type, fixtures);
                            var ps = method.GetParameters();
                            var args = ps.Select((p, i) => Convert(i < row.Length ? row[i] : p.DefaultValue, p.ParameterType)).ToArray();
                            object? result = method.Invoke(instance, args);
                            if (result is Task task) task.GetAwaiter().GetResult();
                            (instance as IDisposable)?.Dispose();
                            passed++;
                            Console.WriteLine($"PASS {label} ({sw.Elapsed.TotalSeconds:F1} s)");
                        }
                        catch (Exception e)
                        {
                            var inner = e is TargetInvocationException { InnerException: not null } t ? t.InnerException! : e;
                            failed++;
                            Console.WriteLine($"FAIL {label} ({sw.Elapsed.TotalSeconds:F1} s): {inner.GetType().Name}: {inner.Message}");
                            Console.WriteLine("     " + (inner.StackTrace ?? "").Split('\n').FirstOrDefault(l => l.Contains(" in ") || l.Contains("SpQR"))?.Trim());
                        }
                    }
                }
            }
            finally
            {
                foreach (var f in fixtures.Values) (f as IDisposable)?.Dispose();
            }
        }
        Console.WriteLine($"{passed} passed, {failed} failed, {skipped} skipped");
        return Math.Min(failed, 100);
    }

    private static bool Derives(Type? t, string fullName)
    {
        for (; t is not null; t = t.BaseType) if (t.FullName == fullName) return true;
        return false;
    }

    // the test class's constructor arguments: ITestOutputHelper, or a class fixture shared by the class's tests
    private static object Create(Type type, Dictionary<Type, object> fixtures)
    {
        var ctor = type.GetConstructors().Single();
        var args = ctor.GetParameters().Select(p =>
        {
            if (p.ParameterType.FullName == "Xunit.Abstractions.ITestOutputHelper")
                return DispatchProxy.Create(p.ParameterType, typeof(OutputProxy));
            if (!fixtures.TryGetValue(p.ParameterType, out var f)) fixtures[p.ParameterType] = f = Activator.CreateInstance(p.ParameterType)!;
            return f;
        }).ToArray();
        return ctor.Invoke(args);
    }

    private static object? Convert(object? v, Type to)
    {
        if (v is null || to.IsInstanceOfType(v)) return v;
        var target = Nullable.GetUnderlyingType(to) ?? to;
        if (target.IsEnum) return v is string s ? Enum.Parse(target, s) : Enum.ToObject(target, v);
        return System.Convert.ChangeType(v, target, System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>ITestOutputHelper: WriteLine(message) and WriteLine(format, args), printed under the running test.</summary>
    public class OutputProxy : DispatchProxy
    {
        protected override object? Invoke(MethodInfo? m, object?[]? a)
        {
            if (m?.Name == "WriteLine" && a is { Length: > 0 })
                Console.WriteLine("     | " + (a.Length == 1 ? a[0] : string.Format(System.Globalization.CultureInfo.InvariantCulture, (string)a[0]!, (object?[])a[1]!)));
            return null;
        }
    }
}
