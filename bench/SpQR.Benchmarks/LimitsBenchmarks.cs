// The machine's physical limits, measured by the same suite as the kernels:
//   ReadBandwidth: sum a 512 MB array (16x the L3) with vector loads on 1..N threads -> GB/s (the GEMV ceiling).
//     It reads in the GEMV's own pattern (rows of 16 KB, four rows at a time, 64-row blocks spread over threads)
//     with no arithmetic but the sums, so it is the best any GEMV of ours could stream.
//   FmaPeak: independent vector FMA chains in registers on 1..N threads -> GFLOP/s (the GEMM ceiling)
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using BenchmarkDotNet.Attributes;

namespace SpQR.Benchmarks;

public unsafe class LimitsBenchmarks : IThroughput
{
    private const long Bytes = 512L << 20;
    private const int FmaIters = 20_000_000;
    private float* _data;

    [Params(1, 2)] public int Threads { get; set; }

    [GlobalSetup(Target = nameof(ReadBandwidth))]
    public void Setup()
    {
        _data = (float*)NativeMemory.AlignedAlloc((nuint)Bytes, 64);
        new Span<byte>(_data, int.MaxValue / 4).Fill(1); // touch every page (first 512 MB)
        new Span<byte>((byte*)_data + int.MaxValue / 4, (int)(Bytes - int.MaxValue / 4)).Fill(1);
    }

    [GlobalCleanup(Target = nameof(ReadBandwidth))]
    public void Cleanup() => NativeMemory.AlignedFree(_data);

    [Benchmark]
    public float ReadBandwidth()
    {
        const int rowFloats = 4096, blockRows = 64;
        long rows = Bytes / 4 / rowFloats;
        int blocks = (int)(rows / blockRows);
        var partial = new float[blocks];
        nint p = (nint)_data;
        Parallel.For(0, blocks, new ParallelOptions { MaxDegreeOfParallelism = Threads }, b =>
        {
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
            for (long r = (long)b * blockRows; r < (long)(b + 1) * blockRows; r += 4)
            {
                float* w0 = (float*)p + r * rowFloats, w1 = w0 + rowFloats, w2 = w1 + rowFloats, w3 = w2 + rowFloats;
                for (int i = 0; i < rowFloats; i += 16)
                {
                    a0 += Vector256.Load(w0 + i); a1 += Vector256.Load(w1 + i); a2 += Vector256.Load(w2 + i); a3 += Vector256.Load(w3 + i);
                    a4 += Vector256.Load(w0 + i + 8); a5 += Vector256.Load(w1 + i + 8); a6 += Vector256.Load(w2 + i + 8); a7 += Vector256.Load(w3 + i + 8);
                }
            }
            partial[b] = Vector256.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7);
        });
        return partial.Sum();
    }

    [Benchmark]
    public float FmaPeak()
    {
        var partial = new float[Threads];
        Parallel.For(0, Threads, new ParallelOptions { MaxDegreeOfParallelism = Threads }, t =>
        {
            var m = Vector256.Create(0.999999f); var c = Vector256.Create(1e-7f);
            Vector256<float> a0 = Vector256.Create(1f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0;
            for (int i = 0; i < FmaIters; i++)
            {
                a0 = Vector256.FusedMultiplyAdd(a0, m, c); a1 = Vector256.FusedMultiplyAdd(a1, m, c); a2 = Vector256.FusedMultiplyAdd(a2, m, c);
                a3 = Vector256.FusedMultiplyAdd(a3, m, c); a4 = Vector256.FusedMultiplyAdd(a4, m, c); a5 = Vector256.FusedMultiplyAdd(a5, m, c);
                a6 = Vector256.FusedMultiplyAdd(a6, m, c); a7 = Vector256.FusedMultiplyAdd(a7, m, c); a8 = Vector256.FusedMultiplyAdd(a8, m, c);
                a9 = Vector256.FusedMultiplyAdd(a9, m, c); a10 = Vector256.FusedMultiplyAdd(a10, m, c); a11 = Vector256.FusedMultiplyAdd(a11, m, c);
            }
            partial[t] = Vector256.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
        });
        return partial.Sum();
    }

    public (double, string) Work(string method) => method == nameof(ReadBandwidth)
        ? (Bytes, "GB/s")
        : ((double)FmaIters * 12 * 8 * 2 * Threads, "GFLOP/s");
}
