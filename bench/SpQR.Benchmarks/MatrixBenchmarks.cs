// GEMV on the LLaMA-7B layer shapes with F32, F16 and BF16 weights (memory-bound: GB/s of weight bytes), and the
// prefill GEMM 512x4096x4096 (compute-bound: GFLOP/s). Weight copies rotate so that at least 256 MB is streamed
// between reuses and the 32 MB L3 cannot serve them.
using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using SpQR.Tensors.Cpu;

namespace SpQR.Benchmarks;

public unsafe class GemvBenchmarks : IThroughput
{
    [Params("4096x4096", "11008x4096", "4096x11008")] public string Shape { get; set; } = "4096x4096";
    [Params(WeightType.F32, WeightType.F16, WeightType.BF16)] public WeightType Type { get; set; }
    [Params(1, 2)] public int Threads { get; set; }

    private byte*[] _w = [];
    private float[] _x = [], _y = [];
    private int _rows, _cols, _next;

    private long WeightBytes => (long)_rows * _cols * (Type == WeightType.F32 ? 4 : 2);

    private void ParseShape() { var p = Shape.Split('x'); _rows = int.Parse(p[0]); _cols = int.Parse(p[1]); }

    [GlobalSetup]
    public void Setup()
    {
        ParseShape();
        CpuThreads.Count = Threads;
        int copies = (int)Math.Max(1, (256L << 20) / WeightBytes + 1);
        _w = new byte*[copies];
        var r = new Random(1);
        for (int c = 0; c < copies; c++)
        {
            _w[c] = (byte*)NativeMemory.AlignedAlloc((nuint)WeightBytes, 64);
            var span = new Span<byte>(_w[c], (int)WeightBytes);
            if (Type == WeightType.F32) { var f = MemoryMarshal.Cast<byte, float>(span); for (int i = 0; i < f.Length; i++) f[i] = (float)r.NextDouble() - 0.5f; }
            else { var h = MemoryMarshal.Cast<byte, ushort>(span); for (int i = 0; i < h.Length; i++) h[i] = (ushort)(0x3000 + r.Next(0x0C00) | (r.Next(2) << 15)); }
        }
        _x = new float[_cols]; _y = new float[_rows];
        for (int i = 0; i < _cols; i++) _x[i] = (float)r.NextDouble();
    }

    [GlobalCleanup]
    public void Cleanup() { foreach (var p in _w) NativeMemory.AlignedFree(p); CpuThreads.Count = Environment.ProcessorCount; }

    [Benchmark]
    public float Gemv()
    {
        byte* w = _w[_next++ % _w.Length];
        CpuKernels.Gemv(new ReadOnlySpan<byte>(w, (int)WeightBytes), Type, _x, _y, _rows, _cols, Simd.Best);
        return _y[0];
    }

    public (double, string) Work(string method) { ParseShape(); return (WeightBytes, "GB/s"); }
}

public unsafe class GemmBenchmarks : IThroughput
{
    // C (M, N) = A (M, K) · Bᵀ, B (N, K): the prefill of 512 tokens through a 4096x4096 linear layer
    private const int M = 512, N = 4096, K = 4096;
    private float[] _a = [], _b = [], _c = [];

    [Params(1, 2)] public int Threads { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        CpuThreads.Count = Threads;
        var r = new Random(2);
        _a = new float[M * K]; _b = new float[(long)N * K]; _c = new float[M * N];
        for (int i = 0; i < _a.Length; i++) _a[i] = (float)r.NextDouble();
        for (int i = 0; i < _b.Length; i++) _b[i] = (float)r.NextDouble();
    }

    [GlobalCleanup]
    public void Cleanup() => CpuThreads.Count = Environment.ProcessorCount;

    [Benchmark]
    public float Gemm()
    {
        CpuKernels.Gemm(_a, false, K, _b, true, K, _c, N, M, N, K);
        return _c[0];
    }

    public (double, string) Work(string method) => (2.0 * M * N * K, "GFLOP/s");
}
