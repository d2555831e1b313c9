// The tensor-core SpQR matvec (GpuKernels.SpqrTc.cs) against the CPU kernel. Its mma fragments need 32-lane warps: in
// CI it runs on ILGPU's CPU accelerator emulating an NVIDIA device (CPUDeviceKind.Nvidia), where mma.sync and sub.f16x2
// are replaced by their definitions (shuffles gather the other lanes' fragments), so the fragment layout, the code
// extraction and the x̃ slots are checked without a GPU; SPQR_DEVICE=gpu runs the same bodies on the card.
using ILGPU;
using Half = System.Half;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using SpQR.Quant.Formats;
using SpQR.TestUtil;
using Xunit;

namespace SpQR.Gpu.Tests;

public sealed class WarpOf32Fixture : IDisposable
{
    public GpuBackend Backend { get; } = Environment.GetEnvironmentVariable("SPQR_DEVICE") == "gpu"
        ? GpuBackend.Create(DeviceChoice.Gpu) : GpuBackend.CreateCpu(CPUDeviceKind.Nvidia);
    public void Dispose() => Backend.Dispose();
}

public class GpuTensorCoreTests(WarpOf32Fixture fx) : IClassFixture<WarpOf32Fixture>
{
    // a random layer whose second-order statistics differ per (row group, group), so a wrong plane index shows
    private static SpqrLayer Layer(int rows, int cols, int wbits, int seed, double outliers)
    {
        var l = SpqrLayer.Random(rows, cols, wbits, outliers, seed);
        var r = new Random(seed + 1);
        for (long i = 0; i < l.Stats2!.Length; i += 4)
        {
            l.Stats2[i] = (Half)(0.0005 + 0.002 * r.NextDouble());
            l.Stats2[i + 1] = (Half)(-2 + 4 * r.NextDouble());
            l.Stats2[i + 2] = (Half)(0.5 + r.NextDouble());
            l.Stats2[i + 3] = (Half)(r.NextDouble() * 3);
        }
        return l;
    }

    // x with groups at very different magnitudes (the per-group scale of the fp16 split) and a few exact zeros
    private static float[] Input(int cols, int seed)
    {
        var x = TestData.Uniform(cols, seed, -2, 2);
        for (int c = 0; c < cols; c++)
        {
            int g = c / 16;
            x[c] *= (g % 5) switch { 0 => 1f, 1 => 1e-4f, 2 => 300f, 3 => 3e-7f, _ => 1f };
            if (c % 37 == 5) x[c] = 0;
        }
        return x;
    }

    [Theory]
    [InlineData(16, 128, 3)] [InlineData(40, 256, 3)] [InlineData(48, 384, 2)] [InlineData(33, 256, 4)]
    [InlineData(64, 1024, 3)] [InlineData(17, 128, 4)] [InlineData(32, 512, 2)] [InlineData(160, 128, 3)]
    [InlineData(24, 2048, 3, 0.1)] // ~200 outliers a row: past the prefetched entries (up to 128 a row)
    public void Spqr_tensor_core_matvec_matches_the_cpu_kernel(int rows, int cols, int wbits, double outliers = 0.03)
    {
        var acc = fx.Backend.Accelerator;
        var k = fx.Backend.Kernels;
        k.SpqrTcAllShapes = true;
        var layer = Layer(rows, cols, wbits, rows * 7 + cols + wbits, outliers);
        var x = Input(cols, rows + cols);
        var e = new float[rows];
        SpQR.Quant.Decode.SpqrMatVec.MatVec(layer, x, e);
        using var g = new GpuSpqrLayer(acc, layer);
        Assert.True(k.SpqrUsesTensorCores(g), "the tensor-core kernel should take this layer");
        // K column splits: by shape, then each power of two (warps of one tile meet in shared memory; splits past the
        // super-step count idle)
        try { MatchesCpu(g, x, e, [0, 1, 2, 4, 16], $"tensor-core SpQR matvec {rows}x{cols} w{wbits}"); }
        finally { k.SpqrTcAllShapes = false; }
    }

    // y = Ŵ·x on the device for each column-split count K against the CPU kernel's e
    private void MatchesCpu(GpuSpqrLayer g, float[] x, float[] e, int[] splits, string what)
    {
        var acc = fx.Backend.Accelerator;
        var k = fx.Backend.Kernels;
        using var dx = acc.Allocate1D(x); using var ds = acc.Allocate1D<float>(k.SpqrScratch(g)); using var dy = acc.Allocate1D<float>(e.Length);
        try
        {
            foreach (int K in splits)
            {
                k.SpqrTcSplits = K;
                dy.MemSetToZero();
                k.SpqrMatVec(g, dx.View, ds.View, dy.View);
                acc.Synchronize();
                NumericAssert.Nmse(e, dy.GetAsArray1D(), Tolerances.GpuNmse, $"{what}, K {K}");
            }
        }
        finally { k.SpqrTcSplits = 0; }
    }

    // the kernel over the lane-major copy of the codes (GpuSpqrLayer.LaneMajor), w2-w4: every pair, every statistics
    // field and the repeated last row of a partial tile in the order the lanes read them
    [Theory]
    [InlineData(16, 128, 3)] [InlineData(40, 256, 3)] [InlineData(33, 1024, 3)] [InlineData(64, 512, 3)] [InlineData(24, 2048, 3, 0.1)] [InlineData(160, 128, 3)]
    [InlineData(33, 256, 4)] [InlineData(48, 512, 4)] [InlineData(160, 128, 4)] [InlineData(48, 384, 2)] [InlineData(17, 1024, 2)] [InlineData(160, 256, 2)]
    public void Spqr_tensor_core_matvec_over_lane_major_codes_matches_the_cpu_kernel(int rows, int cols, int wbits, double outliers = 0.03)
    {
        var acc = fx.Backend.Accelerator;
        var k = fx.Backend.Kernels;
        var layer = Layer(rows, cols, wbits, rows * 5 + cols + wbits, outliers);
        var x = Input(cols, rows + 2 * cols);
        var e = new float[rows];
        SpQR.Quant.Decode.SpqrMatVec.MatVec(layer, x, e);
        using var g = new GpuSpqrLayer(acc, layer, laneMajor: true);
        Assert.NotNull(g.LaneCodes);
        // over lane-major codes the tensor cores take every shape; over the format's codes only where cols ≥ rows
        Assert.True(k.SpqrUsesTensorCores(g));
        k.SpqrTcLaneMajor = false;
        try { Assert.Equal(cols >= rows, k.SpqrUsesTensorCores(g)); }
        finally { k.SpqrTcLaneMajor = true; }
        // (K: by shape, and 1, 5, 12 and 16 column splits — 12 is the default for launches of few tiles, GpuKernels.TcGrid)
        MatchesCpu(g, x, e, [0, 1, 5, 12, 16], $"lane-major tensor-core SpQR matvec {rows}x{cols} w{wbits}");
        // the splits on their super-steps in the other order (split j on j, j + K, ...: a measured variant)
        k.SpqrTcStepOrderReversed = false;
        try { MatchesCpu(g, x, e, [5, 12], $"lane-major tensor-core SpQR matvec {rows}x{cols} w{wbits}, forward step order"); }
        finally { k.SpqrTcStepOrderReversed = true; }
    }

    // the launch-cost diagnostic runs with the matvec's grid on any split count: modes 1-2 store every row (zeros, and
    // record words scaled to nothing), mode 0 none; it takes only w3 lane-major layers and modes 0-2
    [Fact]
    public void The_launch_floor_diagnostic_stores_the_rows_the_matvec_would()
    {
        var acc = fx.Backend.Accelerator;
        var k = fx.Backend.Kernels;
        using var g = new GpuSpqrLayer(acc, Layer(40, 384, 3, 17, 0.03), laneMajor: true);
        using var dy = acc.Allocate1D<float>(40);
        try
        {
            foreach (int K in new[] { 0, 2, 1 })
            {
                k.SpqrTcSplits = K;
                foreach (int mode in new[] { 0, 1, 2 })
                {
                    dy.CopyFromCPU(Enumerable.Repeat(7f, 40).ToArray());
                    k.SpqrLaunchFloor(g, dy.View, mode);
                    acc.Synchronize();
                    var y = dy.GetAsArray1D();
                    if (mode == 0) Assert.All(y, v => Assert.Equal(7f, v));
                    else Assert.All(y, v => Assert.True(v != 7f && Math.Abs(v) < 1e-18f, $"mode {mode}, K {K}: {v}"));
                }
            }
            Assert.Throws<ArgumentException>(() => k.SpqrLaunchFloor(g, dy.View, 3));
            using var w4 = new GpuSpqrLayer(acc, Layer(40, 384, 4, 18, 0.03), laneMajor: true);
            Assert.Throws<ArgumentException>(() => k.SpqrLaunchFloor(w4, dy.View, 1));
        }
        finally { k.SpqrTcSplits = 0; }
    }

    // the w3 matvec building its own x̃ from x (SpqrTcFold: no prepare launch) runs the prepare's arithmetic and the
    // register kernel's: the same bits, for ragged splits, y += Ŵ·x, outlier rows past the prefetched entries (0.1), and
    // 1-12 splits; inputs it does not take (SwiGLU, an input norm) keep the prepare launch
    [Theory]
    [InlineData(16, 128)] [InlineData(40, 256)] [InlineData(33, 1024)] [InlineData(24, 1408, 0.1)]
    public void The_w3_matvec_that_builds_its_own_x_tilde_gives_the_bits_of_the_prepared_one(int rows, int cols, double outliers = 0.03)
    {
        var acc = fx.Backend.Accelerator;
        var k = fx.Backend.Kernels;
        var layer = Layer(rows, cols, 3, rows * 5 + cols, outliers);
        var x = Input(cols, rows + 2 * cols);
        using var g = new GpuSpqrLayer(acc, layer, laneMajor: true);
        Assert.NotNull(g.FoldIndex);
        using var dx = acc.Allocate1D(x); using var ds = acc.Allocate1D<float>(k.SpqrScratch(g)); using var dy = acc.Allocate1D<float>(rows);
        var y0 = TestData.Uniform(rows, 5, -1, 1);
        bool was = k.SpqrTcFold;
        k.SpqrTcFoldAllShapes = true;
        float[] Run(bool fold, bool accumulate)
        {
            k.SpqrTcFold = fold;
            dy.CopyFromCPU(y0);
            k.SpqrMatVec(g, dx.View, ds.View, dy.View, accumulate: accumulate);
            acc.Synchronize();
            return dy.GetAsArray1D();
        }
        try
        {
            var e = new float[rows];
            SpQR.Quant.Decode.SpqrMatVec.MatVec(layer, x, e);
            foreach (int K in new[] { 0, 1, 4, 5, 12 })
            {
                k.SpqrTcSplits = K;
                bool accumulate = K % 2 == 1;
                var want = Run(false, accumulate);
                long before = k.SpqrFoldLaunches;
                var got = Run(true, accumulate);
                Assert.Equal(before + 1, k.SpqrFoldLaunches);
                if (acc.AcceleratorType != AcceleratorType.Cuda)
                {
                    int bad = Enumerable.Range(0, rows).Count(i => want[i] != got[i]);
                    Assert.True(bad == 0, $"K {K}, accumulate {accumulate}: {bad} of {rows} rows differ");
                }
                else NumericAssert.Nmse(want, got, 1e-12, $"fold K {K}");
                if (!accumulate) NumericAssert.Nmse(e, got, Tolerances.GpuNmse, $"fold {rows}x{cols}, K {K}");
            }
            // by default only short one-wave launches at 12 splits fold (these shapes have < 12 super-steps: K ≤ 8)
            k.SpqrTcSplits = 0; k.SpqrTcFold = true; k.SpqrTcFoldAllShapes = false;
            long folds = k.SpqrFoldLaunches;
            Assert.Equal(Run(false, false), Run(true, false));
            Assert.Equal(folds, k.SpqrFoldLaunches);
            k.SpqrTcFoldAllShapes = true;
            // a SwiGLU input keeps the prepare launch
            using var up = acc.Allocate1D(Input(cols, 7));
            long launches = k.SpqrFoldLaunches;
            k.SpqrMatVecSwiGlu(g, dx.View, up.View, ds.View, dy.View);
            acc.Synchronize();
            Assert.Equal(launches, k.SpqrFoldLaunches);
        }
        finally { k.SpqrTcSplits = 0; k.SpqrTcFold = was; k.SpqrTcFoldAllShapes = false; }
    }

    // w3's lane-major records as the eighth session laid them out (codes OR'd onto 1024's fp16 bits, 1024 subtracted in
    // the kernel; GpuSpqrLayer magicW3Records, kept for benchmarks against the default subnormal records): the matvec, a
    // grouped launch and the batched product still match the CPU kernels, and the subnormal records are the default
    [Theory]
    [InlineData(40, 256)] [InlineData(33, 1024)] [InlineData(160, 128)]
    public void Spqr_tensor_core_kernels_over_the_eighth_session_w3_records_match_the_cpu_kernel(int rows, int cols)
    {
        var acc = fx.Backend.Accelerator;
        var k = fx.Backend.Kernels;
        var layers = Enumerable.Range(0, 2).Select(i => Layer(rows, cols, 3, rows + cols + 31 * i, 0.03)).ToArray();
        var gs = layers.Select(l => new GpuSpqrLayer(acc, l, laneMajor: true, magicW3Records: true)).ToArray();
        using var sub = new GpuSpqrLayer(acc, layers[0], laneMajor: true);
        Assert.Equal(0, gs[0].Dims.LaneLayout);
        Assert.Equal(1, sub.Dims.LaneLayout);
        Assert.False(k.SpqrGroupApplies([gs[0], sub])); // one launch runs one record layout
        int T = 3;
        var x = Input(cols, rows);
        var X = new float[T * cols];
        for (int tk = 0; tk < T; tk++) Array.Copy(Input(cols, tk + 3), 0, X, tk * cols, cols);
        using var dx = acc.Allocate1D(x); using var dX = acc.Allocate1D(X);
        var scratch = gs.Select(g => acc.Allocate1D<float>(Math.Max(k.SpqrScratch(g), GpuKernels.SpqrMatMulScratch(g, T)))).ToArray();
        var ys = gs.Select(_ => acc.Allocate1D<float>(T * rows)).ToArray();
        k.SpqrTcSplits = 8;
        try
        {
            var separate = new float[2][];
            for (int i = 0; i < 2; i++)
            {
                k.SpqrMatVec(gs[i], dx.View, scratch[i].View, ys[i].View.SubView(0, rows));
                acc.Synchronize();
                separate[i] = ys[i].GetAsArray1D()[..rows];
                var e = new float[rows];
                SpQR.Quant.Decode.SpqrMatVec.MatVec(layers[i], x, e);
                NumericAssert.Nmse(e, separate[i], Tolerances.GpuNmse, $"matvec over the eighth session's w3 records {rows}x{cols}, layer {i}");
                ys[i].MemSetToZero();
            }
            Assert.True(k.SpqrGroupApplies(gs));
            k.SpqrMatVecGroup(gs, dx.View, scratch.Select(b => (ArrayView<float>)b.View).ToArray(), ys.Select(b => (ArrayView<float>)b.View.SubView(0, rows)).ToArray());
            acc.Synchronize();
            for (int i = 0; i < 2; i++) Assert.Equal(separate[i], ys[i].GetAsArray1D()[..rows]);
            k.SpqrTcMatMulLanes = true;
            k.SpqrMatMul(gs[0], dX.View, T, ys[0].View, scratch[0].View);
            acc.Synchronize();
            var em = new float[T * rows];
            SpQR.Quant.Decode.SpqrMatVec.MatMul(layers[0], X, em, T);
            NumericAssert.Nmse(em, ys[0].GetAsArray1D(), Tolerances.GpuNmse, $"batched product over the eighth session's w3 records {rows}x{cols}");
        }
        finally
        {
            k.SpqrTcSplits = 0; k.SpqrTcMatMulLanes = false;
            foreach (var g in gs) g.Dispose();
            foreach (var b in scratch) b.Dispose();
            foreach (var b in ys) b.Dispose();
        }
    }

    // the w3 lane-major matvec with its prefetched outliers' x' gathered after the second super-step's loads
    // (SpqrTcLateGather) and before them (the default): the same sums in the same order, so the same bits, single and
    // grouped launches
    [Theory]
    [InlineData(40, 256)] [InlineData(24, 2048, 0.1)]
    public void Spqr_w3_matvec_gathers_its_outliers_late_or_early_with_the_same_bits(int rows, int cols, double outliers = 0.03)
    {
        var acc = fx.Backend.Accelerator;
        var k = fx.Backend.Kernels;
        var layers = Enumerable.Range(0, 2).Select(i => Layer(rows, cols, 3, rows + 5 * cols + 17 * i, outliers)).ToArray();
        var gs = layers.Select(l => new GpuSpqrLayer(acc, l, laneMajor: true)).ToArray();
        var x = Input(cols, rows + 1);
        using var dx = acc.Allocate1D(x);
        var scratch = gs.Select(g => acc.Allocate1D<float>(k.SpqrScratch(g))).ToArray();
        var ys = gs.Select(_ => acc.Allocate1D<float>(rows)).ToArray();
        k.SpqrTcSplits = 4; // a split count with a second super-step on every split
        try
        {
            var got = new float[2][][];
            foreach (bool late in new[] { true, false })
            {
                k.SpqrTcLateGather = late;
                var r = new float[3][];
                k.SpqrMatVec(gs[0], dx.View, scratch[0].View, ys[0].View); acc.Synchronize();
                r[0] = ys[0].GetAsArray1D();
                k.SpqrMatVecGroup(gs, dx.View, scratch.Select(b => (ArrayView<float>)b.View).ToArray(), ys.Select(b => (ArrayView<float>)b.View).ToArray());
                acc.Synchronize();
                r[1] = ys[0].GetAsArray1D(); r[2] = ys[1].GetAsArray1D();
                got[late ? 0 : 1] = r;
            }
            var e = new float[rows];
            SpQR.Quant.Decode.SpqrMatVec.MatVec(layers[0], x, e);
            NumericAssert.Nmse(e, got[0][0], Tolerances.GpuNmse, $"w3 matvec, late gathers, {rows}x{cols}");
            for (int i = 0; i < 3; i++) Assert.Equal(got[1][i], got[0][i]);
            Assert.Equal(got[0][0], got[0][1]);
        }
        finally
        {
            k.SpqrTcSplits = 0; k.SpqrTcLateGather = false;
            foreach (var g in gs) g.Dispose();
            foreach (var b in scratch) b.Dispose();
            foreach (var b in ys) b.Dispose();
        }
    }

    // matvecs that read what the kernel before them wrote, replayed from a graph in every mode of programmatic edges (the
    // tensor-core matvec reads its weights before its wait, x̃ after it): the same bits as launching them one by one
    [Fact]
    public void Spqr_matvecs_feeding_each_other_in_a_graph_give_the_bits_of_eager_launches()
    {
        var acc = fx.Backend.Accelerator;
        var k = fx.Backend.Kernels;
        int n = 256;
        var layer = Layer(n, n, 3, 77, 0.03);
        using var g = new GpuSpqrLayer(acc, layer, laneMajor: true);
        var x0 = Input(n, 5);
        using var dx = acc.Allocate1D(x0); using var ds = acc.Allocate1D<float>(k.SpqrScratch(g)); using var dy = acc.Allocate1D<float>(n);
        void Work() { for (int i = 0; i < 4; i++) { k.SpqrMatVec(g, dx.View, ds.View, dy.View); k.Add(dx.View, dy.View, n); } }
        Work();
        acc.Synchronize();
        var eager = dx.GetAsArray1D();
        Assert.All(eager, v => Assert.True(float.IsFinite(v)));
        var defaultEdges = k.ProgrammaticEdges;
        foreach (var mode in Enum.GetValues<ProgrammaticMode>())
        {
            k.ProgrammaticEdges = mode;
            try
            {
                using var graph = GpuGraph.Capture(fx.Backend, Work);
                dx.CopyFromCPU(x0);
                graph.Launch();
                acc.Synchronize();
                Assert.Equal(eager, dx.GetAsArray1D());
            }
            finally { k.ProgrammaticEdges = defaultEdges; }
        }
    }

    // a layer uploaded with its lane-major codes only: the matvec, the SwiGLU matvec and the batched product run over them
    // (the batched product on the lane-major tensor-core GEMM without being asked), with the results of a full upload;
    // a kernel choice that would read the absent format codes is a clear error, not a silent wrong answer
    [Fact]
    public void A_layer_without_its_format_codes_runs_on_the_lane_major_kernels_and_refuses_the_others()
    {
        var acc = fx.Backend.Accelerator;
        var k = fx.Backend.Kernels;
        int rows = 48, cols = 384, T = 5;
        var layer = Layer(rows, cols, 3, 321, 0.03);
        using var full = new GpuSpqrLayer(acc, layer, laneMajor: true);
        using var lean = new GpuSpqrLayer(acc, layer, laneMajor: true, formatCodes: false);
        Assert.True(full.HasFormatCodes);
        Assert.False(lean.HasFormatCodes);
        Assert.True(lean.DeviceBytes < full.DeviceBytes - layer.Codes.Length / 2);
        // without a lane-major copy (a shape the tensor cores do not take) the format codes stay
        using var odd = new GpuSpqrLayer(acc, Layer(40, 200, 3, 5, 0.03), laneMajor: true, formatCodes: false);
        Assert.True(odd.HasFormatCodes);
        var x = Input(cols, 4);
        var X = new float[T * cols];
        for (int tk = 0; tk < T; tk++) Array.Copy(Input(cols, tk + 7), 0, X, tk * cols, cols);
        using var dx = acc.Allocate1D(x); using var dX = acc.Allocate1D(X);
        using var ds = acc.Allocate1D<float>(Math.Max(k.SpqrScratch(full), GpuKernels.SpqrMatMulScratch(full, T)));
        using var dy = acc.Allocate1D<float>(T * rows);
        float[] MatVec(GpuSpqrLayer g) { dy.MemSetToZero(); k.SpqrMatVec(g, dx.View, ds.View, dy.View.SubView(0, rows)); acc.Synchronize(); return dy.GetAsArray1D()[..rows]; }
        float[] MatMul(GpuSpqrLayer g) { dy.MemSetToZero(); k.SpqrMatMul(g, dX.View, T, dy.View, ds.View); acc.Synchronize(); return dy.GetAsArray1D(); }
        Assert.Equal(MatVec(full), MatVec(lean));
        var e = new float[T * rows];
        SpQR.Quant.Decode.SpqrMatVec.MatMul(layer, X, e, T);
        NumericAssert.Nmse(e, MatMul(lean), Tolerances.GpuNmse, "lane-major-only batched product");
        k.SpqrTcLaneMajor = false;
        try
        {
            var ex = Assert.Throws<InvalidOperationException>(() => MatVec(lean));
            Assert.Contains("lane-major codes only", ex.Message);
            Assert.Contains("48x384", ex.Message);
        }
        finally { k.SpqrTcLaneMajor = true; }
    }

    // two or three layers of one shape (own permutations, statistics and outliers) in one prepare and one matvec launch:
    // the bits of separate calls with the same column splits (by default a launch of few tiles takes 12, GpuKernels.TcGrid,
    // so a layer alone and its group may split differently: K is pinned here); layers of other dims, or without lane-major
    // codes, are not taken. samePerm: the layers share one permutation (as q/k/v and gate/up of a model quantized with act
    // order do), so the launch prepares one x̃ for all (SpqrGroupSharedInput) — the same bits, and the same again with
    // the sharing off
    [Theory]
    [InlineData(40, 256, 3, 3)] [InlineData(40, 256, 3, 2)] [InlineData(33, 1024, 4, 3)] [InlineData(160, 128, 2, 2)] [InlineData(24, 2048, 3, 3)]
    [InlineData(40, 256, 3, 3, true)] [InlineData(33, 1024, 4, 2, true)] [InlineData(24, 2048, 3, 3, true)]
    public void Spqr_grouped_matvec_gives_the_bits_of_separate_calls(int rows, int cols, int wbits, int L, bool samePerm = false)
    {
        var acc = fx.Backend.Accelerator;
        var k = fx.Backend.Kernels;
        var layers = Enumerable.Range(0, L).Select(i => Layer(rows, cols, wbits, 100 * i + rows + cols, i == 2 ? 0.1 : 0.03)).ToArray();
        if (samePerm) foreach (var l in layers.Skip(1)) layers[0].Perm.CopyTo(l.Perm, 0); // codes of random layers fit any permutation
        var gs = layers.Select(l => new GpuSpqrLayer(acc, l, laneMajor: true)).ToArray();
        Assert.Equal(samePerm, gs.Skip(1).All(g => g.SamePermutation(gs[0])));
        k.SpqrTcSplits = 8;
        try
        {
            var x = Input(cols, 9);
            using var dx = acc.Allocate1D(x);
            var scratch = gs.Select(g => acc.Allocate1D<float>(k.SpqrScratch(g))).ToArray();
            var ys = gs.Select(_ => acc.Allocate1D<float>(rows)).ToArray();
            var separate = new float[L][];
            for (int i = 0; i < L; i++)
            {
                k.SpqrMatVec(gs[i], dx.View, scratch[i].View, ys[i].View);
                acc.Synchronize();
                separate[i] = ys[i].GetAsArray1D();
                var e = new float[rows];
                SpQR.Quant.Decode.SpqrMatVec.MatVec(layers[i], x, e);
                NumericAssert.Nmse(e, separate[i], Tolerances.GpuNmse, $"layer {i}");
                ys[i].MemSetToZero();
            }
            Assert.True(k.SpqrGroupApplies(gs));
            foreach (bool share in new[] { true, false })
            {
                k.SpqrGroupSharedInput = share;
                foreach (var y in ys) y.MemSetToZero();
                foreach (var b in scratch) b.MemSetToZero(); // (the separate calls left each layer's x̃ there)
                k.SpqrMatVecGroup(gs, dx.View, scratch.Select(b => (ArrayView<float>)b.View).ToArray(), ys.Select(b => (ArrayView<float>)b.View).ToArray());
                acc.Synchronize();
                for (int i = 0; i < L; i++) Assert.Equal(separate[i], ys[i].GetAsArray1D());
            }
            foreach (var b in scratch) b.Dispose();
            foreach (var b in ys) b.Dispose();
            // not taken: another shape in the group, a layer without its lane-major copy, one layer, grouping switched off
            using var other = new GpuSpqrLayer(acc, Layer(rows + 16, cols, wbits, 5, 0.03), laneMajor: true);
            using var formatOnly = new GpuSpqrLayer(acc, layers[0], laneMajor: false);
            Assert.False(k.SpqrGroupApplies([gs[0], other]));
            Assert.False(k.SpqrGroupApplies([gs[0], formatOnly]));
            Assert.False(k.SpqrGroupApplies([gs[0]]));
            k.SpqrGroupLaunch = false;
            try { Assert.False(k.SpqrGroupApplies(gs)); }
            finally { k.SpqrGroupLaunch = true; }
        }
        finally { k.SpqrTcSplits = 0; k.SpqrGroupSharedInput = false; foreach (var g in gs) g.Dispose(); }
    }

    // the decode step's folds into the tensor-core matvec: the input's RMSNorm in the prepare launch (single and grouped:
    // the bits of each other) and y += Ŵ·x in the epilogue (the bits of the product, then the add), against the CPU norm,
    // kernel and add; the float32 kernels refuse both
    [Theory]
    [InlineData(40, 256, 3, true)] [InlineData(33, 384, 4, true)] [InlineData(48, 128, 2, true)] [InlineData(24, 1024, 3, false)] [InlineData(160, 256, 3, false)]
    public void Spqr_matvec_with_the_input_norm_in_its_prepare_and_the_residual_add_in_its_epilogue_matches_the_cpu(int rows, int cols, int wbits, bool laneMajor)
    {
        var acc = fx.Backend.Accelerator;
        var k = fx.Backend.Kernels;
        k.SpqrTcAllShapes = true;
        var layers = Enumerable.Range(0, 3).Select(i => Layer(rows, cols, wbits, 7 * i + rows + cols, 0.03)).ToArray();
        var gs = layers.Select(l => new GpuSpqrLayer(acc, l, laneMajor)).ToArray();
        try
        {
            var x = TestData.Uniform(cols, cols + 3, -3, 3); var w = TestData.Uniform(cols, cols + 4, 0.5f, 1.5f); var y0 = TestData.Uniform(rows, rows + 5, -2, 2);
            var xn = new float[cols];
            SpQR.Tensors.Cpu.CpuKernels.RmsNorm(x, w, 1e-5f, xn);
            using var dx = acc.Allocate1D(x); using var dw = acc.Allocate1D(w);
            var scratch = gs.Select(g => acc.Allocate1D<float>(k.SpqrScratch(g))).ToArray();
            var ys = gs.Select(_ => acc.Allocate1D<float>(rows)).ToArray();
            var norm = new InputRmsNorm { Weight = dw.View, Eps = 1e-5f };
            var separate = new float[3][];
            for (int i = 0; i < 3; i++)
            {
                Assert.True(k.SpqrUsesTensorCores(gs[i]));
                var e = new float[rows];
                SpQR.Quant.Decode.SpqrMatVec.MatVec(layers[i], xn, e);
                k.SpqrMatVec(gs[i], dx.View, scratch[i].View, ys[i].View, norm: norm);
                acc.Synchronize();
                separate[i] = ys[i].GetAsArray1D();
                NumericAssert.Nmse(e, separate[i], Tolerances.GpuNmse, $"Ŵ·RMSNorm(x), layer {i}");
                // y += Ŵ·x̂: the product's bits plus y0, as the add kernel would
                ys[i].CopyFromCPU(y0);
                k.SpqrMatVec(gs[i], dx.View, scratch[i].View, ys[i].View, accumulate: true, norm: norm);
                acc.Synchronize();
                var added = ys[i].GetAsArray1D();
                for (int r = 0; r < rows; r++) Assert.Equal(y0[r] + separate[i][r], added[r]);
            }
            if (laneMajor)
            {
                // the grouped prepare normalizes with the same bits
                foreach (var b in ys) b.MemSetToZero();
                Assert.True(k.SpqrGroupApplies(gs));
                k.SpqrMatVecGroup(gs, dx.View, scratch.Select(b => (ArrayView<float>)b.View).ToArray(), ys.Select(b => (ArrayView<float>)b.View).ToArray(), norm);
                acc.Synchronize();
                for (int i = 0; i < 3; i++) Assert.Equal(separate[i], ys[i].GetAsArray1D());
            }
            foreach (var b in scratch) b.Dispose();
            foreach (var b in ys) b.Dispose();
            // the float32 kernels take neither
            k.SpqrTensorCores = false;
            using var s = acc.Allocate1D<float>(k.SpqrScratch(gs[0])); using var y = acc.Allocate1D<float>(rows);
            Assert.Throws<NotSupportedException>(() => k.SpqrMatVec(gs[0], dx.View, s.View, y.View, accumulate: true));
            Assert.Throws<NotSupportedException>(() => k.SpqrMatVec(gs[0], dx.View, s.View, y.View, norm: norm));
        }
        finally { k.SpqrTcAllShapes = false; k.SpqrTensorCores = true; foreach (var g in gs) g.Dispose(); }
    }

    // a 2-layer LLaMA with SpQR w3 projections on the tensor cores against the CPU model over the same layers: the decode
    // step with its folds (norms in the prepare launches, residual adds in the epilogues, rotary in the attention) and
    // without them
    [Fact]
    public void A_llama_decoder_on_the_tensor_cores_with_its_folds_matches_the_cpu_model()
    {
        var k = fx.Backend.Kernels;
        var (cfg, Pick) = TinySpqrLlama(layers: 2);
        using var src = new SpQR.Transformer.Loading.RandomWeightSource(cfg, SpQR.Tensors.DType.F16);
        using var cpu = new SpQR.Transformer.Models.Llama.LlamaModel(cfg, src, new PickedLinears(Pick), maxContext: 16, maxBatch: 1);
        using var m = new GpuLlamaModel(fx.Backend, cfg, src, Pick, maxContext: 16, maxBatch: 1);
        int[] ids = [3, 17, 40, 9];
        var expected = ids.Select((id, t) => cpu.Forward([id], t, allLogits: false).ToArray()).ToArray();
        foreach (bool folds in new[] { true, false })
        {
            k.SpqrFuseInputNorm = folds; k.FuseRopeIntoAttention = folds;
            m.UseGraph = true;
            try
            {
                for (int t = 0; t < ids.Length; t++) NumericAssert.Nmse(expected[t], m.Step(ids[t], t), 1e-9, $"step {t}, folds {folds}");
            }
            finally { k.SpqrFuseInputNorm = true; k.FuseRopeIntoAttention = true; }
        }
    }

    // a LLaMA of hidden 128 (2 heads of 64, intermediate 256) whose projections are random w3 SpQR layers on the tensor
    // cores (each made once per name, deterministically), for the device decoder and the CPU model alike
    private static (SpQR.Transformer.Config.TransformerConfig Config, Func<string, SpqrLayer?> Pick) TinySpqrLlama(int layers)
    {
        var cfg = new SpQR.Transformer.Config.TransformerConfig
        {
            Architecture = SpQR.Transformer.Config.Architecture.Llama, HiddenSize = 128, IntermediateSize = 256, NumLayers = layers, NumHeads = 2, NumKvHeads = 2,
            HeadDim = 64, VocabSize = 64, MaxPositions = 16, NormEps = 1e-5f, Norm = SpQR.Transformer.Config.NormKind.RmsNorm,
            Activation = SpQR.Transformer.Config.ActivationKind.SwiGlu, RopeLayout = SpQR.Tensors.Cpu.RopeLayout.HalfSplit, RopeTheta = 10000,
        };
        var made = new Dictionary<string, SpqrLayer>();
        SpqrLayer? Pick(string name)
        {
            if (!name.EndsWith("_proj", StringComparison.Ordinal)) return null;
            if (made.TryGetValue(name, out var l)) return l;
            int rows = name.EndsWith("gate_proj") || name.EndsWith("up_proj") ? 256 : 128, cols = name.EndsWith("down_proj") ? 256 : 128;
            return made[name] = Layer(rows, cols, 3, made.Count * 31 + rows + cols, 0.03);
        }
        return (cfg, Pick);
    }

    // the CPU model's linears: SpQR where the picker gives a layer, else dense
    private sealed class PickedLinears(Func<string, SpqrLayer?> pick) : SpQR.Transformer.Layers.ILinearFactory
    {
        public SpQR.Transformer.Layers.ILinear Create(SpQR.Transformer.Loading.IWeightSource source, string weightName, long[] shape, float[]? bias)
            => pick(weightName[..^".weight".Length]) is { } l ? new SpQR.Transformer.Layers.SpqrLinear(l, bias)
             : new SpQR.Transformer.Layers.DenseLinear(source.Get(weightName, new SpQR.Tensors.Shape(shape)), bias);
    }

    // a LLaMA decoder whose q/k/v and gate/up run as grouped launches: the logits of separate launches, bit for bit
    [Fact]
    public void A_llama_decoder_with_grouped_launches_gives_the_logits_of_separate_ones()
    {
        var k = fx.Backend.Kernels;
        var (cfg, Pick) = TinySpqrLlama(layers: 1);
        using var src = new SpQR.Transformer.Loading.RandomWeightSource(cfg, SpQR.Tensors.DType.F16);
        using var m = new GpuLlamaModel(fx.Backend, cfg, src, Pick, maxContext: 16, maxBatch: 1);
        int[] ids = [3, 17, 40];
        float[][] Run(bool grouped)
        {
            k.SpqrGroupLaunch = grouped;
            m.UseGraph = true; // drops a recorded graph: steps 0-1 launch, the rest replay it (where graphs exist)
            return [.. ids.Select((id, t) => m.Step(id, t).ToArray())];
        }
        try
        {
            var separate = Run(false);
            long before = k.SpqrGroupLaunches;
            var grouped = Run(true);
            Assert.True(k.SpqrGroupLaunches > before, "the model should have taken the grouped launches");
            for (int t = 0; t < ids.Length; t++)
            {
                Assert.All(separate[t], v => Assert.True(float.IsFinite(v)));
                Assert.Equal(separate[t], grouped[t]);
            }
        }
        finally { k.SpqrGroupLaunch = true; }
    }

    // y = Ŵ·(silu(gate) ⊙ up) with the SwiGLU in the tensor-core prepare launch (LLaMA's down_proj), and through the
    // separate SwiGLU kernel for a layer the tensor-core kernel does not take
    [Theory]
    [InlineData(16, 256, 3, true)] [InlineData(40, 384, 4, true)] [InlineData(33, 128, 2, true)] [InlineData(32, 200, 3, false)]
    public void Spqr_matvec_with_the_swiglu_in_its_prepare_matches_swiglu_then_the_cpu_kernel(int rows, int cols, int wbits, bool tensorCores)
    {
        var acc = fx.Backend.Accelerator;
        var k = fx.Backend.Kernels;
        k.SpqrTcAllShapes = true;
        try
        {
            var layer = Layer(rows, cols, wbits, rows + 5 * cols, 0.03);
            var gate = TestData.Uniform(cols, cols + 1, -6, 6); var up = Input(cols, rows);
            var x = new float[cols];
            SpQR.Tensors.Cpu.CpuKernels.SwiGlu(gate, up, x);
            var e = new float[rows];
            SpQR.Quant.Decode.SpqrMatVec.MatVec(layer, x, e);
            // over the format's codes, then over lane-major codes (where the tensor cores take the layer)
            foreach (bool laneMajor in new[] { false, true })
            {
                using var g = new GpuSpqrLayer(acc, layer, laneMajor);
                Assert.Equal(tensorCores, k.SpqrUsesTensorCores(g));
                Assert.Equal(laneMajor && tensorCores, g.LaneCodes is not null);
                using var dg = acc.Allocate1D(gate); using var du = acc.Allocate1D(up);
                using var ds = acc.Allocate1D<float>(k.SpqrScratch(g)); using var dy = acc.Allocate1D<float>(rows);
                k.SpqrMatVecSwiGlu(g, dg.View, du.View, ds.View, dy.View);
                acc.Synchronize();
                NumericAssert.Nmse(e, dy.GetAsArray1D(), Tolerances.GpuNmse, $"SpQR matvec of silu(gate)·up {rows}x{cols} w{wbits}, lane-major {laneMajor}");
            }
        }
        finally { k.SpqrTcAllShapes = false; }
    }

    // over the format's codes, and over the lane-major copy (statistics fields from the records, shared across the quad)
    [Theory]
    [InlineData(16, 128, 3, 1)] [InlineData(40, 256, 3, 5)] [InlineData(48, 384, 2, 9)] [InlineData(33, 256, 4, 33)] [InlineData(32, 1024, 3, 12)]
    [InlineData(40, 256, 3, 5, true)] [InlineData(48, 384, 2, 9, true)] [InlineData(33, 256, 4, 33, true)] [InlineData(160, 1024, 3, 12, true)]
    public void Spqr_tensor_core_batched_matmul_matches_the_cpu_kernel(int rows, int cols, int wbits, int T, bool laneMajor = false)
    {
        var acc = fx.Backend.Accelerator;
        var k = fx.Backend.Kernels;
        var layer = Layer(rows, cols, wbits, rows * 3 + cols + T, 0.03);
        var X = new float[T * cols];
        for (int tk = 0; tk < T; tk++) Array.Copy(Input(cols, tk + 1), 0, X, tk * cols, cols);
        var e = new float[T * rows];
        SpQR.Quant.Decode.SpqrMatVec.MatMul(layer, X, e, T);
        using var g = new GpuSpqrLayer(acc, layer, laneMajor);
        using var dx = acc.Allocate1D(X); using var ds = acc.Allocate1D<float>(GpuKernels.SpqrMatMulScratch(g, T)); using var dy = acc.Allocate1D<float>(T * rows);
        if (laneMajor) k.SpqrTcMatMulLanes = true; else k.SpqrTcMatMul = true;
        try
        {
            k.SpqrMatMul(g, dx.View, T, dy.View, ds.View);
            acc.Synchronize();
            NumericAssert.Nmse(e, dy.GetAsArray1D(), Tolerances.GpuNmse, $"tensor-core SpQR matmul {rows}x{cols} w{wbits}, {T} tokens, lane-major {laneMajor}");
        }
        finally { k.SpqrTcMatMul = false; k.SpqrTcMatMulLanes = false; }
    }

    [Fact]
    public void Square_layers_go_to_the_tensor_cores_unless_switched_off()
    {
        var k = fx.Backend.Kernels;
        using var g = new GpuSpqrLayer(fx.Backend.Accelerator, SpqrLayer.Random(256, 256, 3, 0.03, 5));
        Assert.True(k.SpqrUsesTensorCores(g));
        k.SpqrTcSquare = false;
        try { Assert.False(k.SpqrUsesTensorCores(g)); }
        finally { k.SpqrTcSquare = true; }
    }

    [Theory]
    [InlineData(32, 200, 3, false)] [InlineData(32, 256, 5, false)] [InlineData(32, 256, 3, true)] [InlineData(384, 256, 3, false)]
    public void Shapes_the_tensor_core_kernel_does_not_take_go_to_the_float32_kernels(int rows, int cols, int wbits, bool fp16)
    {
        var acc = fx.Backend.Accelerator;
        var layer = SpqrLayer.Random(rows, cols, wbits, 0.03, rows + cols, fp16Arithmetic: fp16);
        using var g = new GpuSpqrLayer(acc, layer);
        Assert.False(fx.Backend.Kernels.SpqrUsesTensorCores(g));
        var x = TestData.Uniform(cols, 3, -2, 2);
        var e = new float[rows];
        SpQR.Quant.Decode.SpqrMatVec.MatVec(layer, x, e);
        using var dx = acc.Allocate1D(x); using var ds = acc.Allocate1D<float>(fx.Backend.Kernels.SpqrScratch(g)); using var dy = acc.Allocate1D<float>(rows);
        fx.Backend.Kernels.SpqrMatVec(g, dx.View, ds.View, dy.View);
        acc.Synchronize();
        NumericAssert.Nmse(e, dy.GetAsArray1D(), Tolerances.GpuNmse, $"SpQR matvec {rows}x{cols} w{wbits}");
    }
}
