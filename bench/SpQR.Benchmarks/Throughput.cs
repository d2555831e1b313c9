// A BenchmarkDotNet column that turns the mean time into GB/s (memory-bound benchmarks) or GFLOP/s (compute-bound),
// from the work each benchmark declares through IThroughput.
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace SpQR.Benchmarks;

public interface IThroughput
{
    /// <summary>(amount per operation, unit) — bytes read for "GB/s", flops for "GFLOP/s".</summary>
    (double Amount, string Unit) Work(string method);
}

public sealed class ThroughputColumn : IColumn
{
    public string Id => "Throughput";
    public string ColumnName => "Throughput";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => 0;
    public bool IsNumeric => false;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => "GB/s of bytes read (memory-bound) or GFLOP/s (compute-bound), from the mean time";
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
    public bool IsAvailable(Summary summary) => true;
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var report = summary[benchmarkCase];
        if (report?.ResultStatistics is null) return "-";
        // instantiate the benchmark class with its parameters to ask for its work
        var instance = Activator.CreateInstance(benchmarkCase.Descriptor.Type);
        if (instance is not IThroughput t) return "-";
        foreach (var p in benchmarkCase.Parameters.Items)
            benchmarkCase.Descriptor.Type.GetProperty(p.Name)?.SetValue(instance, p.Value);
        var (amount, unit) = t.Work(benchmarkCase.Descriptor.WorkloadMethod.Name);
        double seconds = report.ResultStatistics.Mean * 1e-9;
        return $"{amount / seconds / 1e9:F1} {unit}";
    }
}
