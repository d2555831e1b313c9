// SpQR fused matvec on the LLaMA-7B layer shapes (wbits 3 and 4, 3-bit statistics over 16x16 tiles, 1% outliers,
// random codes) against dense F16 and F32 GEMV of the same shape in the same run. Throughput is GB/s of the
// compressed bytes; the speedup over F16 is the ratio of the Mean columns.
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

    private SpqrLayer? _layer;
    private ushort[] _f16 = [];
    private float[] _x = [], _y = [];
    private int _rows, _cols;

    private void ParseShape() { var p = Shape.Split('x'); _rows = int.Parse(p[0]); _cols = int.Parse(p[1]); }

    [GlobalSetup]
    public void Setup()
    {
        ParseShape();
        CpuThreads.Count = Threads;
        _layer = SpqrLayer.Random(_rows, _cols, WBits, 0.01);
        _ = _layer.Dequantize().Length; // builds the lazily decoded tables outside the timing
        _f16 = new ushort[(long)_rows * _cols];
        var r = new Random(2);
        for (int i = 0; i < _f16.Length; i++) _f16[i] = (ushort)(0x3000 + r.Next(0x0C00));
        _x = Enumerable.Range(0, _cols).Select(_ => (float)r.NextDouble()).ToArray();
        _y = new float[_rows];
        SpqrMatVec.MatVec(_layer, _x, _y);
    }

    [GlobalCleanup] public void Cleanup() => CpuThreads.Count = Environment.ProcessorCount;

    [Benchmark(Baseline = true)] public float F16Gemv() { CpuKernels.GemvF16(_f16, _x, _y, _rows, _cols); return _y[0]; }

    [Benchmark] public float SpqrMatVec_() { SpqrMatVec.MatVec(_layer!, _x, _y); return _y[0]; }

    public (double, string) Work(string method)
    {
        ParseShape();
        if (method == nameof(F16Gemv)) return (2.0 * _rows * _cols, "GB/s");
        // the stored bytes of a layer with 1% outliers: codes, stat codes, second-order stats, perm, CSR
        long groups = (_cols + 15) / 16, rowGroups = (_rows + 15) / 16, outliers = (long)_rows * (long)Math.Round(_cols * 0.01);
        double bytes = _rows * groups * 2 * WBits + _rows * groups + rowGroups * groups * 8 + 4L * _cols + 4L * (_rows + 1) + 4 * outliers;
        return (bytes, "GB/s");
    }
}
