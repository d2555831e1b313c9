// SpQR encoding of one linear layer on the device: the float64 factor U of H⁻¹ (GpuCholesky), the column loop and the
// lazy block updates (kernels in GpuKernels.Encode.cs). Permutation, damping and the outlier scale are the CPU
// encoder's own code (SpqrEncoder.Prepare, with the device factorization plugged in); W and U are uploaded once, and
// per block of β1-aligned columns the device runs the column loop and then the GEMM that feeds the block's errors into
// the later columns. The result is the CPU encoder's record (SpqrEncoder.Assemble), so packing, files and decoding are
// shared. Also here: Hessian accumulation on the device (GpuHessianAccumulator).
using System.Diagnostics;
using ILGPU;
using ILGPU.Runtime;
using SpQR.Quant.Encode;

namespace SpQR.Gpu;

/// <summary>Where a device encode spent its time: preparation (permutation, damping, outlier scale on the CPU, including
/// FactorSeconds for the device factorization of H⁻¹); the device loop (upload, column loops, GEMMs, download);
/// building the result record.</summary>
public readonly record struct GpuEncodeTimings(double PrepareSeconds, double FactorSeconds, double DeviceSeconds, double AssembleSeconds);

/// <summary>H = 2/N Σ x xᵀ accumulated on the device (HessianAccumulator's contract and precision).</summary>
public sealed class GpuHessianAccumulator : IDisposable
{
    private readonly GpuBackend _gpu;
    private readonly MemoryBuffer1D<double, Stride1D.Dense> _sum;
    private MemoryBuffer1D<float, Stride1D.Dense>? _x;
    public int Columns { get; }
    public int Sequences { get; private set; }

    public GpuHessianAccumulator(GpuBackend gpu, int columns)
    {
        _gpu = gpu; Columns = columns;
        _sum = gpu.Accelerator.Allocate1D<double>((long)columns * columns);
        _sum.MemSetToZero();
    }

    /// <summary>X (T, cols): inputs of T tokens (one sequence, or a chunk of one).</summary>
    public void AddTokens(ReadOnlySpan<float> X, int T)
    {
        long n = (long)T * Columns;
        if (X.Length < n) throw new ArgumentException($"X holds {X.Length} values, expected {T}x{Columns}");
        if (_x is null || _x.Length < n) { _x?.Dispose(); _x = _gpu.Accelerator.Allocate1D<float>(n); }
        _x.View.SubView(0, n).CopyFromCPU(ref System.Runtime.InteropServices.MemoryMarshal.GetReference(X), n);
        _gpu.Kernels.HessianAccumulate(_x.View, T, Columns, _sum.View);
    }

    public void CountSequence() => Sequences++;

    public void AddSequence(ReadOnlySpan<float> X, int T) { AddTokens(X, T); CountSequence(); }

    /// <summary>H (cols, cols) = 2/N Σ x xᵀ.</summary>
    public double[] Hessian()
    {
        if (Sequences == 0) throw new InvalidOperationException("no calibration data reached this layer");
        _gpu.Accelerator.Synchronize();
        var h = _sum.GetAsArray1D();
        double f = 2.0 / Sequences;
        for (long i = 0; i < h.Length; i++) h[i] *= f;
        return h;
    }

    public void Dispose() { _sum.Dispose(); _x?.Dispose(); }
}

public static class GpuSpqrEncoder
{
    /// <summary>Whether the device encoder handles these options (β1 ≤ 32, β2 within a block; a fixed τ, no budget search).</summary>
    public static bool Supports(GpuBackend gpu, SpqrOptions o)
        => o.GroupSize <= GpuKernels.EncodeMaxGroupSize && gpu.Kernels.EncodeThreads(o.QqGroupSize) > 0 && o.OutlierBudget is null;

    /// <summary>Quantizes W (rows, cols) with H (cols, cols) on the device; same result record as <see cref="SpqrEncoder.Quantize(ReadOnlySpan{float}, ReadOnlySpan{double}, int, int, SpqrOptions, string)"/>.</summary>
    public static SpqrLayerResult Quantize(GpuBackend gpu, ReadOnlySpan<float> W, ReadOnlySpan<double> H, int rows, int cols, SpqrOptions o, string layer = "layer")
        => Quantize(gpu, W, H, rows, cols, o, layer, out _);

    public static SpqrLayerResult Quantize(GpuBackend gpu, ReadOnlySpan<float> W, ReadOnlySpan<double> H, int rows, int cols, SpqrOptions o, string layer,
                                           out GpuEncodeTimings timings)
    {
        var sw = Stopwatch.StartNew();
        o.Validate();
        if (!Supports(gpu, o))
            throw new NotSupportedException($"{layer}: the device encoder needs groupsize ≤ {GpuKernels.EncodeMaxGroupSize}, qq_groupsize ≤ " +
                                            $"{gpu.Kernels.EncodeThreads(1)} and a fixed outlier threshold (no budget); got groupsize {o.GroupSize}, " +
                                            $"qq_groupsize {o.QqGroupSize}, budget {o.OutlierBudget}");
        double tFactor = 0;
        var p = SpqrEncoder.Prepare(W, H, rows, cols, o, layer, (h, n, what) =>
        {
            var t0 = Stopwatch.StartNew();
            try { return GpuCholesky.UpperFactorOfInverse(gpu, h, n, what); } finally { tFactor = t0.Elapsed.TotalSeconds; }
        });
        double threshold = o.OutlierThreshold is { } tau ? tau * p.OutlierScale : double.PositiveInfinity;
        double tPrepare = sw.Elapsed.TotalSeconds;

        int b1 = o.GroupSize, groups = (cols + b1 - 1) / b1, rowGroups = (rows + o.QqGroupSize - 1) / o.QqGroupSize;
        bool qqScale = o.QqScaleBits is not null, qqZero = SpqrEncoder.QuantizesZeros(o);
        int bs = b1 >= o.BlockSize ? b1 : o.BlockSize / b1 * b1;
        var acc = gpu.Accelerator;
        var k = gpu.Kernels;
        using var dW = acc.Allocate1D(p.W);
        using var dU = acc.Allocate1D(p.U);
        using var dD = acc.Allocate1D(p.D);
        using var dErr = acc.Allocate1D<float>((long)bs * rows);
        using var dCodes = acc.Allocate1D<byte>((long)rows * cols);
        using var dOut = acc.Allocate1D<byte>((long)rows * cols);
        using var dStats = acc.Allocate1D<float>(2L * groups * rows);
        using var dQ = acc.Allocate1D<byte>(2L * groups * rows);
        using var dPlanes = acc.Allocate1D<float>(4L * groups * rowGroups);
        var a = new EncodeArgs
        {
            Rows = rows, Cols = cols, GroupSize = b1, MaxQ = (1 << o.WBits) - 1, ScaleBits = o.QqScaleBits ?? 0, ZeroBits = qqZero ? o.QqZeroBits!.Value : 0,
            QqGroupSize = o.QqGroupSize, RowGroups = rowGroups, Groups = groups, RoundZero = o.RoundZero ? 1 : 0, StorageExact = o.StorageExact ? 1 : 0,
            Loo = !o.SimplifiedOutliers && !double.IsPositiveInfinity(threshold) ? 1 : 0, Threshold = threshold,
        };
        for (int b0 = 0; b0 < cols; b0 += bs)
        {
            a.B0 = b0; a.Nb = Math.Min(bs, cols - b0);
            k.EncodeBlock(dW.View, dU.View, dD.View, dErr.View, dCodes.View, dOut.View, dStats.View, dQ.View, dPlanes.View, a);
            k.LazyUpdate(dW.View, dU.View, dErr.View, rows, cols, b0, a.Nb);
        }
        acc.Synchronize();

        var w = dW.GetAsArray1D();
        var codes = dCodes.GetAsArray1D();
        var outlier = Array.ConvertAll(dOut.GetAsArray1D(), b => b != 0);
        var st = new SpqrEncoder.Stats(groups, rows, rowGroups, qqScale, qqZero);
        var stats = dStats.GetAsArray1D(); var q = dQ.GetAsArray1D(); var planes = dPlanes.GetAsArray1D();
        long nG = (long)groups * rows, nP = (long)groups * rowGroups;
        Array.Copy(stats, 0, st.Scale, 0, nG); Array.Copy(stats, nG, st.Zero, 0, nG);
        if (qqScale) { Array.Copy(q, 0, st.ScaleCodes!, 0, nG); Array.Copy(planes, 0, st.SS!, 0, nP); Array.Copy(planes, nP, st.SZ!, 0, nP); }
        if (qqZero) { Array.Copy(q, nG, st.ZeroCodes!, 0, nG); Array.Copy(planes, 2 * nP, st.ZS!, 0, nP); Array.Copy(planes, 3 * nP, st.ZZ!, 0, nP); }
        double tDevice = sw.Elapsed.TotalSeconds - tPrepare;
        var result = SpqrEncoder.Assemble(w, codes, outlier, st, rows, cols, p.Perm, o, threshold, sw);
        timings = new GpuEncodeTimings(tPrepare, tFactor, tDevice, sw.Elapsed.TotalSeconds - tPrepare - tDevice);
        return result;
    }
}
