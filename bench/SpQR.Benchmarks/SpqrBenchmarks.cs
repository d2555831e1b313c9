// SpQR fused matvec on the LLaMA-7B layer shapes (wbits 3 and 4, 3-bit statistics over 16x16 tiles, 1% outliers,
// random codes) against dense F16 GEMV of the same shape in the same run, weights streamed from memory (each call
// takes the next of several copies totalling >= 96 MB, so the last-level cache cannot hold them). Throughput is GB/s
// of the compressed bytes; the speedup over F16 is the ratio of the Mean columns. SpqrMatMulBenchmarks: prefill of
// 64 tokens (Y = Ŵ·X) against the packed F16 GEMM.
using BenchmarkDotNet.Attributes;
using SpQR.Quant.Decode;
using SpQR.Quant.Formats;
using SpQR.Tensors.Cpu;

namespace SpQR.Benchmarks;

public class SpqrMatVecBenchmarks : IThroughput
{
    [Params("4096x4096", "11008x4096", "4096x11008")] public string Shape { get; set; } = "4096x4096";
    [Params(3, 4)] public int WBits { get; set; }
    [Params(1, 2)] public int Threads { get; set; }

    private SpqrLayer[] _layers = [];
    private ushort[][] _f16 = [];
    private float[] _x = [], _y = [];
    private int _rows, _cols, _next;
    private const long StreamBytes = 96L << 20;

    private void ParseShape() { var p = Shape.Split('x'); _rows = int.Parse(p[0]); _cols = int.Parse(p[1]); }

    [GlobalSetup]
    public void Setup()
    {
        ParseShape();
        CpuThreads.Count = Threads;
        var layer = SpqrLayer.Random(_rows, _cols, WBits, 0.01);
        // copies share nothing, so each call reads its weights from memory
        _layers = [.. Enumerable.Range(0, (int)Math.Max(2, StreamBytes / layer.StoredBytes + 1)).Select(i => i == 0 ? layer : SpqrLayer.Random(_rows, _cols, WBits, 0.01, i + 1))];
        var r = new Random(2);
        _f16 = [.. Enumerable.Range(0, (int)Math.Max(2, StreamBytes / (2L * _rows * _cols) + 1)).Select(_ =>
        {
            var w = new ushort[(long)_rows * _cols];
            for (int i = 0; i < w.Length; i++) w[i] = (ushort)(0x3000 + r.Next(0x0C00));
            return w;
        })];
        _x = Enumerable.Range(0, _cols).Select(_ => (float)r.NextDouble()).ToArray();
        _y = new float[_rows];
        foreach (var l in _layers) SpqrMatVec.MatVec(l, _x, _y); // builds the lazily decoded tables outside the timing
    }

    [GlobalCleanup] public void Cleanup() => CpuThreads.Count = Environment.ProcessorCount;

    [Benchmark(Baseline = true)] public float F16Gemv() { CpuKernels.GemvF16(_f16[_next++ % _f16.Length], _x, _y, _rows, _cols); return _y[0]; }

    [Benchmark] public float SpqrMatVec_() { SpqrMatVec.MatVec(_layers[_next++ % _layers.Length], _x, _y); return _y[0]; }

    public (double, string) Work(string method)
    {
        ParseShape();
        if (method == nameof(F16Gemv)) return (2.0 * _rows * _cols, "GB/s");
        // the stored bytes of a layer with 1% outliers: codes, stat codes, second-order stats, perm, CSR
        long groups = (_cols + 15) / 16, rowGroups = (_rows + 15) / 16, outliers = (long)_rows * (long)Math.Round(_cols * 0.01);
        double bytes = _rows * groups * 2 * WBits + _rows * ((groups * 6 + 7) / 8) + rowGroups * groups * 8 + 4L * _cols + 4L * (_rows + 1) + 4 * outliers;
        return (bytes, "GB/s");
    }
}

public class SpqrMatMulBenchmarks : IThroughput
{
    public const int T = 64;
    [Params("4096x4096", "11008x4096")] public string Shape { get; set; } = "4096x4096";

    private SpqrLayer? _layer;
    private byte[] _f16 = [];
    private float[] _x = [], _y = [];
    private int _rows, _cols;

    [GlobalSetup]
    public void Setup()
    {
        var p = Shape.Split('x'); _rows = int.Parse(p[0]); _cols = int.Parse(p[1]);
        _layer = SpqrLayer.Random(_rows, _cols, 3, 0.01);
        var r = new Random(3);
        var h = new ushort[(long)_rows * _cols];
        for (int i = 0; i < h.Length; i++) h[i] = (ushort)(0x3000 + r.Next(0x0C00));
        _f16 = System.Runtime.InteropServices.MemoryMarshal.AsBytes(h.AsSpan()).ToArray();
        _x = Enumerable.Range(0, T * _cols).Select(_ => (float)r.NextDouble()).ToArray();
        _y = new float[T * _rows];
        SpqrMatVec.MatMul(_layer, _x, _y, T);
    }

    [Benchmark(Baseline = true)] public float F16Gemm64() { CpuKernels.MatMulTransposed(_x, _f16, WeightType.F16, _y, T, _rows, _cols); return _y[0]; }

    [Benchmark] public float SpqrMatMul64() { SpqrMatVec.MatMul(_layer!, _x, _y, T); return _y[0]; }

    public (double, string) Work(string method) { var p = Shape.Split('x'); return (2.0 * T * long.Parse(p[0]) * long.Parse(p[1]), "GFLOP/s"); }
}
