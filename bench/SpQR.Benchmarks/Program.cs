// Entry point: `dotnet run -c Release --project bench/SpQR.Benchmarks -- --filter '*'` (BenchmarkDotNet switches).
// Every benchmark reports a throughput column (GB/s of bytes that must be read, or GFLOP/s) next to the time, and
// the Limits benchmarks measure this machine's memory-read bandwidth and FMA peak in the same run.
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using SpQR.Benchmarks;

var config = DefaultConfig.Instance
    .AddJob(Job.Default.WithWarmupCount(3).WithIterationCount(12).WithLaunchCount(1))
    .AddColumn(new ThroughputColumn())
    .WithOptions(ConfigOptions.JoinSummary);
BenchmarkSwitcher.FromAssembly(typeof(ThroughputColumn).Assembly).Run(args, config);
