// `spqr bench matvec`: llama-bench-style check of a machine — random weights, warm-up, median of repeated runs of
// F32 GEMV, F16 GEMV and the SpQR fused matvec, all in this process. Weights rotate over >= 256 MB per kind so the
// L3 (or the GPU's L2) cannot serve them. --device gpu runs the same three on the CUDA device through ILGPU (calls
// queued back to back, one synchronisation per batch); auto picks CUDA when present and says so. Prints µs and GB/s;
// with --json the last line is one object.
using System.Diagnostics;
using System.Text.Json;
using ILGPU;
using ILGPU.Runtime;
using SpQR.Quant.Decode;
using SpQR.Quant.Formats;
using SpQR.Tensors.Cpu;

namespace SpQR.Cli;

internal static class BenchCommand
{
    public static int MatVec(int rows, int cols, int wbits, double outliers, int repeats, string device, bool json, TextWriter stdout, TextWriter stderr)
    {
        if (rows <= 0 || cols <= 0 || cols > 65536) throw new ArgumentException($"--rows and --cols must be positive (cols <= 65536), got {rows}x{cols}");
        if (wbits is < 2 or > 8) throw new ArgumentException($"--wbits must be 2..8, got {wbits}");
        if (outliers is < 0 or >= 1) throw new ArgumentException($"--outliers is a share in [0, 1), got {outliers}");
        if (device is not ("cpu" or "gpu" or "auto")) throw new ArgumentException($"--device must be cpu, gpu or auto, got {device}");
        if (device != "cpu")
        {
            // gpu without a CUDA device fails (GpuUnavailableException); auto falls back to the CPU kernels and says so
            SpQR.Gpu.GpuBackend? backend = null;
            if (device == "gpu") backend = SpQR.Gpu.GpuBackend.Create(SpQR.Gpu.DeviceChoice.Gpu);
            else if (SpQR.Gpu.GpuBackend.CudaAvailable()) backend = SpQR.Gpu.GpuBackend.Create(SpQR.Gpu.DeviceChoice.Gpu);
            if (backend is not null)
            {
                using (backend)
                {
                    stderr.WriteLine($"device: {backend.Description}");
                    return GpuMatVec(backend, rows, cols, wbits, outliers, repeats, json, stdout);
                }
            }
            stderr.WriteLine("device: no CUDA device found, using the CPU kernels");
        }
        long n = (long)rows * cols;
        int Copies(long bytes) => (int)Math.Max(1, (256L << 20) / Math.Max(bytes, 1) + 1);
        var rng = new Random(1);
        var x = Enumerable.Range(0, cols).Select(_ => (float)rng.NextDouble()).ToArray();
        var y = new float[rows];

        var f32 = Enumerable.Range(0, Copies(4 * n)).Select(_ => { var w = new float[n]; for (long i = 0; i < n; i++) w[i] = (float)rng.NextDouble() - 0.5f; return w; }).ToArray();
        var f16 = Enumerable.Range(0, Copies(2 * n)).Select(_ => { var h = new ushort[n]; CpuKernels.F32ToF16(f32[0], h); return h; }).ToArray();
        var spqr = Enumerable.Range(0, 2).Select(i => SpqrLayer.Random(rows, cols, wbits, outliers, i + 1)).ToArray();
        var spqrCopies = Copies(spqr[0].StoredBytes);
        spqr = Enumerable.Range(0, spqrCopies).Select(i => spqr[i % 2]).ToArray(); // two distinct layers are enough to defeat reuse at these sizes
        foreach (var l in spqr.Distinct()) SpqrMatVec.MatVec(l, x, y); // builds lazily decoded tables outside the timing

        double Median(Action<int> call)
        {
            for (int i = 0; i < 5; i++) call(i);
            var t = new List<double>();
            for (int i = 0; i < repeats; i++) { var sw = Stopwatch.StartNew(); call(i); t.Add(sw.Elapsed.TotalSeconds); }
            t.Sort();
            return t[t.Count / 2];
        }
        double tf32 = Median(i => CpuKernels.Gemv(f32[i % f32.Length], x, y, rows, cols));
        double tf16 = Median(i => CpuKernels.GemvF16(f16[i % f16.Length], x, y, rows, cols));
        double tsp = Median(i => SpqrMatVec.MatVec(spqr[i % spqr.Length], x, y));
        return Report($"{rows}x{cols}, {CpuThreads.Count} threads, SIMD {Simd.Best}, median of {repeats}", n, wbits, outliers, spqr[0].StoredBytes, tf32, tf16, tsp, "", json, stdout);
    }

    // the same lines and JSON object for both devices (times in seconds)
    private static int Report(string header, long n, int wbits, double outliers, long spBytes, double tf32, double tf16, double tsp, string note, bool json, TextWriter stdout)
    {
        stdout.WriteLine(header);
        stdout.WriteLine($"F32 GEMV     {tf32 * 1e6,10:F1} µs  {4.0 * n / tf32 / 1e9,7:F1} GB/s");
        stdout.WriteLine($"F16 GEMV     {tf16 * 1e6,10:F1} µs  {2.0 * n / tf16 / 1e9,7:F1} GB/s");
        stdout.WriteLine($"SpQR w{wbits}      {tsp * 1e6,10:F1} µs  {spBytes / tsp / 1e9,7:F1} GB/s  ({spBytes * 8.0 / n:F2} bits/weight stored, {outliers:P1} outliers)  {tf16 / tsp:F2}x F16{note}");
        if (json)
            stdout.WriteLine(JsonSerializer.Serialize(new Dictionary<string, double>
            {
                ["f32_us"] = Math.Round(tf32 * 1e6, 2), ["f16_us"] = Math.Round(tf16 * 1e6, 2), ["spqr_us"] = Math.Round(tsp * 1e6, 2),
                ["speedup_vs_f16"] = Math.Round(tf16 / tsp, 3), ["spqr_gbps"] = Math.Round(spBytes / tsp / 1e9, 2),
            }));
        return 0;
    }

    private static int GpuMatVec(SpQR.Gpu.GpuBackend backend, int rows, int cols, int wbits, double outliers, int repeats, bool json, TextWriter stdout)
    {
        var acc = backend.Accelerator;
        long n = (long)rows * cols;
        int Copies(long bytes) => (int)Math.Max(2, (256L << 20) / Math.Max(bytes, 1) + 1);
        var rng = new Random(1);
        var x = Enumerable.Range(0, cols).Select(_ => (float)rng.NextDouble()).ToArray();
        var w = new float[n];
        for (long i = 0; i < n; i++) w[i] = (float)rng.NextDouble() - 0.5f;
        var h = new ushort[n];
        CpuKernels.F32ToF16(w, h);
        var layer = SpqrLayer.Random(rows, cols, wbits, outliers, 1);
        var f32 = Enumerable.Range(0, Copies(4 * n)).Select(_ => acc.Allocate1D(w)).ToList();
        var f16 = Enumerable.Range(0, Copies(2 * n)).Select(_ => acc.Allocate1D(h)).ToList();
        var sp = Enumerable.Range(0, Copies(layer.StoredBytes)).Select(_ => new SpQR.Gpu.GpuSpqrLayer(acc, layer)).ToList();
        try
        {
            using var dx = acc.Allocate1D(x);
            using var dy = acc.Allocate1D<float>(rows);
            using var scratch = acc.Allocate1D<float>(backend.Kernels.SpqrScratch(sp[0]));
            var k = backend.Kernels;
            // median over `repeats` batches of 50 queued calls each (one synchronisation per batch)
            double Median(Action<int> call)
            {
                for (int i = 0; i < 20; i++) call(i);
                acc.Synchronize();
                var t = new List<double>();
                for (int rep = 0; rep < Math.Max(3, repeats / 5); rep++)
                {
                    var sw = Stopwatch.StartNew();
                    for (int i = 0; i < 50; i++) call(i);
                    acc.Synchronize();
                    t.Add(sw.Elapsed.TotalSeconds / 50);
                }
                t.Sort();
                return t[t.Count / 2];
            }
            double tf32 = Median(i => k.GemvF32(f32[i % f32.Count].View, dx.View, dy.View, rows, cols));
            double tf16 = Median(i => k.GemvF16(f16[i % f16.Count].View, dx.View, dy.View, rows, cols));
            double tsp = Median(i => k.SpqrMatVec(sp[i % sp.Count], dx.View, scratch.View, dy.View));
            // correctness against the CPU kernel before reporting
            k.SpqrMatVec(sp[0], dx.View, scratch.View, dy.View);
            acc.Synchronize();
            var yg = dy.GetAsArray1D(); var yc = new float[rows];
            SpqrMatVec.MatVec(layer, x, yc);
            double num = 0, den = 0;
            for (int i = 0; i < rows; i++) { num += Math.Pow(yg[i] - yc[i], 2); den += (double)yc[i] * yc[i]; }
            return Report($"{rows}x{cols}, {backend.Description}, median of {Math.Max(3, repeats / 5)} batches of 50 queued calls", n, wbits, outliers,
                          layer.StoredBytes, tf32, tf16, tsp, $"  (NMSE vs CPU {num / Math.Max(den, 1e-30):E1})", json, stdout);
        }
        finally
        {
            foreach (var b in f32) b.Dispose();
            foreach (var b in f16) b.Dispose();
            foreach (var b in sp) b.Dispose();
        }
    }
}
