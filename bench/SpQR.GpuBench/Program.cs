// SpQR.GpuBench: F32/F16/BF16 GEMV and SpQR matvec (wbits 3 and 4, 1% outliers) on the device for the LLaMA-7B shapes.
// Each measurement queues 200 calls back to back (weights rotate over >= 256 MB so the L2 cannot hold them),
// synchronizes once, and divides; median of 5 such runs. Every kernel is first checked against the CPU kernel
// (NMSE), plus a correctness sweep of the SpQR kernel over ragged shapes, wbits 2..8 and fp16-step layers.
// Usage: dotnet SpQR.GpuBench.dll [cpu|gpu|auto] [nodecode] [noencode] [onlydecode] [nomatvec] [nomatmul]
//        dotnet SpQR.GpuBench.dll ptx OUTDIR   (every kernel's PTX, for ptxas -v)
//        dotnet SpQR.GpuBench.dll tests DIR/SpQR.Gpu.Tests.dll [filter]   (the GPU test suite on the device: DeviceTests.cs)
//        dotnet SpQR.GpuBench.dll profile [layers]   (3 eager decode steps, F16 then SpQR w3, for a kernel profiler)
//        dotnet SpQR.GpuBench.dll gemm   (the F16 batched product on the tensor cores against the float32 GEMM; torch_mm.py is its baseline)
//        dotnet SpQR.GpuBench.dll dequant   (SpQR w3 batched products: the packed fp16 dequantizing pass against the byte-wise one; 7B prefill)
//        dotnet SpQR.GpuBench.dll prefill   (7B-shaped prefill, F16 and SpQR w3: tensor-core products against the float32 GEMM)
//        dotnet SpQR.GpuBench.dll mvcost   (the SpQR w3 matvec: whole call and main kernel, with 1% outliers and none)
//        dotnet SpQR.GpuBench.dll decode [rounds]   (7B-shaped decode, our F16 and SpQR w3 alternating: the decode target's ratio; also SpQR w3 with late gathers)
//        dotnet SpQR.GpuBench.dll fold [rounds]   (the w3 matvec building its own x̃, no prepare launch, against prepare + kernel; 7B decode both ways)
//        dotnet SpQR.GpuBench.dll mvsteps   (the w3 matvec's fixed cost against its cost per super-step: 4096-row layers of 1,536-16,384 columns)
//        dotnet SpQR.GpuBench.dll floor   (where that fixed cost goes: kernels with the matvec's grid doing none / part of its work)
//        dotnet SpQR.GpuBench.dll gather   (the w3 matvec's outlier gathers after the second step's loads against before, per LLaMA shape)
//        dotnet SpQR.GpuBench.dll mvprofile [K]   (the SpQR w3 matvec 30 times per LLaMA shape, eager, for a kernel profiler; K column splits, 0 by shape)
using System.Diagnostics;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using SpQR.Gpu;
using SpQR.Quant.Decode;
using SpQR.Quant.Formats;
using SpQR.Tensors.Cpu;
using SpQR.Transformer.Models;

if (args.Length > 1 && args[0] == "ptx")
{
    // every kernel's PTX (ILGPU's own generator, no GPU needed) into a folder, for `ptxas -arch=sm_90 -v` on the GPU host
    Directory.CreateDirectory(args[1]);
    using var ctx = Context.Create(b => b.Cuda().Optimize(OptimizationLevel.O2));
    using var ptx = new ILGPU.Backends.PTX.PTXBackend(ctx, ILGPU.Runtime.Cuda.CudaArchitecture.SM_90, new ILGPU.Runtime.Cuda.CudaInstructionSet(8, 0), null!);
    foreach (var k in typeof(GpuKernels).GetMethods(System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static).Where(m => m.Name.EndsWith("Kernel", StringComparison.Ordinal)))
    {
        var compiled = (ILGPU.Backends.PTX.PTXCompiledKernel)ptx.Compile(ILGPU.Backends.EntryPoints.EntryPointDescription.FromExplicitlyGroupedKernel(k), KernelSpecialization.Empty);
        // as the device loads it with programmatic launch (GpuKernels.Pdl.cs: the wait placed, .target sm_90)
        File.WriteAllText(Path.Combine(args[1], k.Name + ".ptx"), GridDependencyPtx.Rewrite(compiled.PTXAssembly, enable: true));
    }
    return;
}
if (args.Length > 0 && args[0] == "profile")
{
    // for a profiler (ncu): 3 eager decode steps of a 7B-shaped LLaMA with `layers` decoder layers (default 2), F16 then
    // SpQR w3 — every kernel of a step launched one by one, so a kernel profiler sees each (steps 3 are the ones to read)
    int layers = args.Length > 1 ? int.Parse(args[1]) : 2;
    using var gpu = GpuBackend.Create(DeviceChoice.Gpu);
    var pc = Llama7B(layers);
    using var psrc = new SpQR.Transformer.Loading.RandomWeightSource(pc, SpQR.Tensors.DType.F16);
    foreach (var pick in new Func<string, SpqrLayer?>?[] { null, SpqrW3Projections() })
    {
        using var m = new GpuLlamaModel(gpu, pc, psrc, pick, maxContext: 1024, maxBatch: 16) { UseGraph = false };
        for (int t = 0; t < 3; t++) m.Step(5 + t, 60 + t);
        Console.WriteLine($"profile: {(pick is null ? "f16" : "spqr_w3")} model, 3 eager steps done");
    }
    return;
}
if (args.Length > 0 && args[0] == "mvprofile")
{
    // for a profiler (ncu): the library's SpQR w3 matvec (prepare launch + main kernel) 30 times per LLaMA shape, weights
    // rotated over ≥ 256 MB as in the timings below, launched one by one (no graph); `mvprofile K` at K column splits
    using var gpu = GpuBackend.Create(DeviceChoice.Gpu);
    var a = gpu.Accelerator;
    if (args.Length > 1) gpu.Kernels.SpqrTcSplits = int.Parse(args[1]);
    foreach (var (rows, cols) in new[] { (4096, 4096), (11008, 4096), (4096, 11008) })
    {
        var l = SpqrLayer.Random(rows, cols, 3, 0.01, 1);
        int copies = (int)Math.Max(2, (256L << 20) / l.StoredBytes + 1);
        var gl = Enumerable.Range(0, copies).Select(_ => new GpuSpqrLayer(a, l, laneMajor: true)).ToArray();
        using var dx = a.Allocate1D(Enumerable.Range(0, cols).Select(i => (float)Math.Cos(i)).ToArray());
        using var ds = a.Allocate1D<float>(gpu.Kernels.SpqrScratch(gl[0])); using var dy = a.Allocate1D<float>(rows);
        for (int i = 0; i < 30; i++) gpu.Kernels.SpqrMatVec(gl[i % copies], dx.View, ds.View, dy.View);
        a.Synchronize();
        Console.WriteLine($"mvprofile: {rows}x{cols} w3, 30 calls");
        foreach (var g in gl) g.Dispose();
    }
    return;
}
if (args.Length > 0 && args[0] == "gemm")
{
    // the dense F16 batched product (prefill's projections) on the tensor cores (GpuKernels.GemmTc.cs, GemmTensorCores on, the
    // default) against the float32 FMA GEMM (off) in the same process, T = 64 / 128 / 256 tokens, weights over ≥ 256 MB,
    // graph-timed (max(copies, 8) calls, median of 5); NMSE against the CPU's F16 GEMV on the first 8 token rows
    using var gpu = GpuBackend.Create(DeviceChoice.Gpu);
    var a = gpu.Accelerator;
    Console.WriteLine($"device: {gpu.Description}");
    Console.WriteLine("gemm,shape,T,tensor_cores_us,tflops,float32_gemm_us,tflops,speedup,nmse_tensor_cores (gemm: F16 weight; gemm_spqr_w3: Ŵ dequantized to fp16)");
    double Graph(Action<int> call, int n) => GraphSeconds(gpu, call, n);
    foreach (var (rows, cols) in new[] { (4096, 4096), (11008, 4096), (4096, 11008) })
    {
        var w16 = new ushort[(long)rows * cols];
        var rng = new Random(3);
        for (long i = 0; i < w16.Length; i++) w16[i] = BitConverter.HalfToUInt16Bits((System.Half)(rng.NextSingle() - 0.5f));
        int copies = (int)Math.Max(2, (256L << 20) / (2L * w16.Length) + 1);
        var hs = Enumerable.Range(0, copies).Select(_ => a.Allocate1D(w16)).ToArray();
        foreach (int T in new[] { 64, 128, 256 })
        {
            var X = Enumerable.Range(0, T * cols).Select(i => (float)Math.Sin(0.001 * i)).ToArray();
            using var dX = a.Allocate1D(X); using var dY = a.Allocate1D<float>((long)T * rows);
            gpu.Kernels.GemmTensorCores = true;
            gpu.Kernels.GemmNTHalf(dX.View, hs[0].View, dY.View, T, rows, cols, false);
            a.Synchronize();
            var y = dY.GetAsArray1D();
            int check = Math.Min(T, 8);
            var e = new float[check * rows];
            for (int m = 0; m < check; m++) CpuKernels.GemvF16(w16, X.AsSpan(m * cols, cols), e.AsSpan(m * rows, rows), rows, cols);
            double nm = Nmse(e, y.AsSpan(0, check * rows).ToArray());
            int n = Math.Max(copies, 8);
            double tc = Graph(i => gpu.Kernels.GemmNTHalf(dX.View, hs[i % copies].View, dY.View, T, rows, cols, false), n);
            gpu.Kernels.GemmTensorCores = false;
            double f32 = Graph(i => gpu.Kernels.GemmNTHalf(dX.View, hs[i % copies].View, dY.View, T, rows, cols, false), n);
            double fl = 2.0 * T * rows * cols;
            Console.WriteLine($"gemm,{rows}x{cols},{T},{tc * 1e6:F1},{fl / tc / 1e12:F1},{f32 * 1e6:F1},{fl / f32 / 1e12:F1},{f32 / tc:F2}x,{nm:E2}");
        }
        foreach (var h in hs) h.Dispose();
        // SpQR w3 (1% outliers): Ŵ dequantized to fp16, then the tensor-core product (SpqrGemmDequantTc on, the default)
        // against the float32 GEMM that decodes its tiles (off); NMSE against the CPU's SpQR matmul on 8 tokens
        var l = SpqrLayer.Random(rows, cols, 3, 0.01, 5);
        int lc = (int)Math.Max(2, (256L << 20) / l.StoredBytes + 1);
        var gs = Enumerable.Range(0, lc).Select(_ => new GpuSpqrLayer(a, l)).ToArray();
        foreach (int T in new[] { 64, 128, 256 })
        {
            var X = Enumerable.Range(0, T * cols).Select(i => (float)Math.Sin(0.001 * i)).ToArray();
            using var dX = a.Allocate1D(X); using var dY = a.Allocate1D<float>((long)T * rows);
            using var ds = a.Allocate1D<float>(GpuKernels.SpqrMatMulScratch(gs[0], T));
            gpu.Kernels.GemmTensorCores = true; gpu.Kernels.SpqrGemmDequantTc = true;
            gpu.Kernels.SpqrMatMul(gs[0], dX.View, T, dY.View, ds.View);
            a.Synchronize();
            int check = Math.Min(T, 8);
            var e = new float[check * rows];
            SpqrMatVec.MatMul(l, X.AsSpan(0, check * cols).ToArray(), e, check);
            double nm = Nmse(e, dY.GetAsArray1D().AsSpan(0, check * rows).ToArray());
            int n = Math.Max(lc, 8);
            double tc = Graph(i => gpu.Kernels.SpqrMatMul(gs[i % lc], dX.View, T, dY.View, ds.View), n);
            gpu.Kernels.SpqrGemmDequantTc = false; gpu.Kernels.GemmTensorCores = false;
            double f32 = Graph(i => gpu.Kernels.SpqrMatMul(gs[i % lc], dX.View, T, dY.View, ds.View), n);
            double fl = 2.0 * T * rows * cols;
            Console.WriteLine($"gemm_spqr_w3,{rows}x{cols},{T},{tc * 1e6:F1},{fl / tc / 1e12:F1},{f32 * 1e6:F1},{fl / f32 / 1e12:F1},{f32 / tc:F2}x,{nm:E2}");
        }
        foreach (var g in gs) g.Dispose();
    }
    return;
}
if (args.Length > 0 && args[0] == "dequant")
{
    // the SpQR w3 batched product's fp16 path (SpqrMatMul, Ŵ dequantized to fp16 then the tensor-core product): the packed
    // dequantizing pass with the outliers folded into Ŵ (SpqrDequantPacked on, the default) against the twelfth session's
    // byte-wise pass + outlier pass after the product (off), same process: whole product and the dequantizing pass alone at
    // T = 64 / 128 / 256 (graph-timed, weights over ≥ 256 MB, median of 5), NMSE against the CPU on 8 tokens; then the
    // 7B-shaped SpQR w3 prefill both ways and our F16 prefill
    using var gpu = GpuBackend.Create(DeviceChoice.Gpu);
    var a = gpu.Accelerator;
    var k = gpu.Kernels;
    Console.WriteLine($"device: {gpu.Description}");
    Console.WriteLine("dequant,shape,T,packed_us,bytewise_us,speedup,pass_packed_us,pass_bytewise_us,pass_GB/s_written,nmse_packed,nmse_bytewise");
    double Graph(Action<int> call, int n) => GraphSeconds(gpu, call, n);
    foreach (var (rows, cols) in new[] { (4096, 4096), (11008, 4096), (4096, 11008) })
    {
        var l = SpqrLayer.Random(rows, cols, 3, 0.01, 5);
        int lc = (int)Math.Max(2, (256L << 20) / l.StoredBytes + 1), n = Math.Max(lc, 8);
        var gs = Enumerable.Range(0, lc).Select(_ => new GpuSpqrLayer(a, l)).ToArray();
        using var wh = a.Allocate1D<ushort>((long)rows * 16 * l.Groups);
        foreach (int T in new[] { 64, 128, 256 })
        {
            var X = Enumerable.Range(0, T * cols).Select(i => (float)Math.Sin(0.001 * i)).ToArray();
            using var dX = a.Allocate1D(X); using var dY = a.Allocate1D<float>((long)T * rows);
            using var ds = a.Allocate1D<float>(GpuKernels.SpqrMatMulScratch(gs[0], T));
            int check = Math.Min(T, 8);
            var e = new float[check * rows];
            SpqrMatVec.MatMul(l, X.AsSpan(0, check * cols).ToArray(), e, check);
            var res = new double[2][];
            foreach (bool packed in new[] { true, false })
            {
                k.SpqrDequantPacked = packed;
                k.SpqrMatMul(gs[0], dX.View, T, dY.View, ds.View); a.Synchronize();
                double nm = Nmse(e, dY.GetAsArray1D().AsSpan(0, check * rows).ToArray());
                double whole = Graph(i => k.SpqrMatMul(gs[i % lc], dX.View, T, dY.View, ds.View), n);
                double pass = Graph(i => k.SpqrDequantizeHalf(gs[i % lc], wh.View), n);
                res[packed ? 0 : 1] = [whole, pass, nm];
            }
            k.SpqrDequantPacked = true;
            double gb = 2.0 * wh.Length / res[0][1] / 1e9;
            Console.WriteLine($"dequant,{rows}x{cols},{T},{res[0][0] * 1e6:F1},{res[1][0] * 1e6:F1},{res[1][0] / res[0][0]:F2}x,{res[0][1] * 1e6:F1},{res[1][1] * 1e6:F1},{gb:F0},{res[0][2]:E2},{res[1][2]:E2}");
        }
        foreach (var g in gs) g.Dispose();
    }
    var cfg = Llama7B(32);
    using var src = new SpQR.Transformer.Loading.RandomWeightSource(cfg, SpQR.Tensors.DType.F16);
    using (var m = new GpuLlamaModel(gpu, cfg, src, SpqrW3Projections(), maxContext: 1024, maxBatch: 128))
    {
        int[] ids = [.. Enumerable.Range(0, 8).Select(t => (t * 37 + 3) % cfg.VocabSize)];
        var on = m.Forward(ids, 0, true).ToArray();
        k.SpqrDequantPacked = false;
        var off = m.Forward(ids, 0, true).ToArray();
        double pOff = PrefillTokensPerSecond(m, cfg.VocabSize);
        k.SpqrDequantPacked = true;
        double pOn = PrefillTokensPerSecond(m, cfg.VocabSize);
        Console.WriteLine($"prefill,spqr_w3,packed {pOn:F0} tokens/s,bytewise {pOff:F0} tokens/s,{pOn / pOff:F2}x,logits NMSE between them {Nmse(off, on):E2},512-token prompt in passes of 128");
    }
    using (var m = new GpuLlamaModel(gpu, cfg, src, null, maxContext: 1024, maxBatch: 128))
        Console.WriteLine($"prefill,f16,{PrefillTokensPerSecond(m, cfg.VocabSize):F0} tokens/s,512-token prompt in passes of 128");
    return;
}
if (args.Length > 0 && args[0] == "prefill")
{
    // 7B-shaped LLaMA (32 layers, random weights): a 512-token prompt in batched passes of 128 (median of 3) and decode
    // (48 tokens after 4 warm-up steps, graph per step), F16 and SpQR w3, with the tensor-core products (GemmTensorCores,
    // SpqrGemmDequantTc on: the default) and with the float32 GEMM (both off) in the same process
    using var gpu = GpuBackend.Create(DeviceChoice.Gpu);
    Console.WriteLine($"device: {gpu.Description}");
    var cfg = Llama7B(32);
    using var src = new SpQR.Transformer.Loading.RandomWeightSource(cfg, SpQR.Tensors.DType.F16);
    double Prefill(GpuLlamaModel m) => PrefillTokensPerSecond(m, cfg.VocabSize);
    double Decode(GpuLlamaModel m) => DecodeTokensPerSecond(m, cfg.VocabSize);
    foreach (var (name, pick) in new[] { ("f16", (Func<string, SpqrLayer?>?)null), ("spqr_w3", SpqrW3Projections()) })
    {
        using var m = new GpuLlamaModel(gpu, cfg, src, pick, maxContext: 1024, maxBatch: 128);
        // the first 8 tokens' logits of one pass with the tensor-core products against the float32 GEMM's
        int[] ids = [.. Enumerable.Range(0, 8).Select(t => (t * 37 + 3) % cfg.VocabSize)];
        gpu.Kernels.GemmTensorCores = true; gpu.Kernels.SpqrGemmDequantTc = true;
        var tcLogits = m.Forward(ids, 0, true).ToArray();
        gpu.Kernels.GemmTensorCores = false; gpu.Kernels.SpqrGemmDequantTc = false;
        var f32Logits = m.Forward(ids, 0, true).ToArray();
        double off = Prefill(m);
        gpu.Kernels.GemmTensorCores = true; gpu.Kernels.SpqrGemmDequantTc = true;
        double on = Prefill(m);
        m.UseGraph = true;
        double dec = Decode(m);
        Console.WriteLine($"prefill,{name},{on:F0} tokens/s tensor cores,{off:F0} tokens/s float32 GEMM,{on / off:F2}x,logits NMSE between them {Nmse(f32Logits, tcLogits):E2},decode {dec:F1} tokens/s graph");
    }
    return;
}
if (args.Length > 0 && args[0] == "mvcost")
{
    // where the SpQR w3 matvec's time goes, graph-timed as below (200 calls, weights over ≥ 256 MB, median of 5): whole call
    // (prepare + main kernel) and main kernel alone, for layers with 1% outliers and with none (the outliers' share)
    using var gpu = GpuBackend.Create(DeviceChoice.Gpu);
    var a = gpu.Accelerator;
    Console.WriteLine($"device: {gpu.Description}");
    foreach (var (rows, cols) in new[] { (4096, 4096), (11008, 4096), (4096, 11008) })
        foreach (double share in new[] { 0.01, 0.0 })
        {
            var (l, gl, x, e) = W3Layers(a, rows, cols, share);
            using var dx = a.Allocate1D(x);
            using var ds = a.Allocate1D<float>(gpu.Kernels.SpqrScratch(gl[0])); using var dy = a.Allocate1D<float>(rows);
            var (nmse, whole, main) = MatVecTimes(gpu, gl, dx.View, ds.View, dy, e);
            Console.WriteLine($"mvcost,{rows}x{cols},w3,outliers {share:P0},whole call {whole * 1e6:F2} us,main kernel {main * 1e6:F2} us,{l.StoredBytes * 8.0 / ((long)rows * cols):F2} bits,nmse {nmse:E2}");
            foreach (var g in gl) g.Dispose();
        }
    return;
}
if (args.Length > 0 && args[0] == "gather")
{
    // the w3 matvec with its prefetched outliers' x' gathered after the second super-step's loads (SpqrTcLateGather on)
    // against before them (off, the default: the eleventh session's kernel), one process: the matvec per LLaMA shape
    // (whole call and main kernel, graph-timed as mvcost, both ways twice in turn); `decode` times both in the model
    using var gpu = GpuBackend.Create(DeviceChoice.Gpu);
    var a = gpu.Accelerator;
    Console.WriteLine($"device: {gpu.Description}");
    foreach (var (rows, cols) in new[] { (4096, 4096), (11008, 4096), (4096, 11008) })
    {
        var (l, set, x, e) = W3Layers(a, rows, cols);
        using var dx = a.Allocate1D(x); using var dy = a.Allocate1D<float>(rows);
        using var ds = a.Allocate1D<float>(gpu.Kernels.SpqrScratch(set[0]));
        for (int rep = 0; rep < 2; rep++)
            foreach (bool late in new[] { false, true })
            {
                gpu.Kernels.SpqrTcLateGather = late;
                var (nmse, whole, main) = MatVecTimes(gpu, set, dx.View, ds.View, dy, e);
                Console.WriteLine($"gather,{rows}x{cols},w3,late gather {(late ? "on" : "off")},whole call {whole * 1e6:F2} us,main kernel {main * 1e6:F2} us,nmse {nmse:E2}");
            }
        gpu.Kernels.SpqrTcLateGather = false;
        foreach (var g in set) g.Dispose();
    }
    return;
}
if (args.Length > 0 && args[0] == "fold")
{
    // the w3 matvec building its own x̃ from x (SpqrTcFold: no prepare launch) against the prepare launch + register kernel,
    // one process: per LLaMA shape the whole call graph-timed as mvcost, both ways three times in turn; then `rounds` rounds
    // (default 2) of 7B-shaped decode: our F16, SpQR w3 without and with the fold (o_proj: the one plain-input projection)
    using var gpu = GpuBackend.Create(DeviceChoice.Gpu);
    var a = gpu.Accelerator;
    var k = gpu.Kernels;
    Console.WriteLine($"device: {gpu.Description}");
    k.SpqrTcFoldAllShapes = true; // every shape both ways (by default the fold takes only short one-wave launches)
    foreach (var (rows, cols) in new[] { (4096, 4096), (11008, 4096), (4096, 11008) })
    {
        var (l, set, x, e) = W3Layers(a, rows, cols);
        using var dx = a.Allocate1D(x); using var dy = a.Allocate1D<float>(rows);
        using var ds = a.Allocate1D<float>(k.SpqrScratch(set[0]));
        try
        {
            k.SpqrTcFold = false; k.SpqrMatVec(set[0], dx.View, ds.View, dy.View); a.Synchronize(); var reg = dy.GetAsArray1D();
            k.SpqrTcFold = true; k.SpqrMatVec(set[0], dx.View, ds.View, dy.View); a.Synchronize(); var fol = dy.GetAsArray1D();
            Console.WriteLine($"fold,{rows}x{cols},w3,rows differing from the prepared kernel {Enumerable.Range(0, rows).Count(i => reg[i] != fol[i])} of {rows},nmse between {Nmse(reg, fol):E2}");
            for (int rep = 0; rep < 3; rep++)
                foreach (bool fold in new[] { false, true })
                {
                    k.SpqrTcFold = fold;
                    var (nmse, whole, main) = MatVecTimes(gpu, set, dx.View, ds.View, dy, e);
                    Console.WriteLine($"fold,{rows}x{cols},w3,{(fold ? "fold (no prepare)" : "prepare + kernel")},whole call {whole * 1e6:F2} us,main kernel {main * 1e6:F2} us,{l.StoredBytes / whole / 1e9:F0} GB/s of the format,nmse {nmse:E2}");
                }
        }
        catch (Exception ex) { Console.WriteLine($"fold,{rows}x{cols},failed: {ex.GetType().Name}: {ex.Message}"); }
        finally { k.SpqrTcFold = true; }
        foreach (var g in set) g.Dispose();
    }
    k.SpqrTcFoldAllShapes = false;
    int rounds = args.Length > 1 ? int.Parse(args[1]) : 2;
    if (rounds > 0)
    {
        var cfg = Llama7B(32);
        using var src = new SpQR.Transformer.Loading.RandomWeightSource(cfg, SpQR.Tensors.DType.F16);
        using var f16 = new GpuLlamaModel(gpu, cfg, src, null, maxContext: 1024, maxBatch: 16) { UseGraph = true };
        using var sq = new GpuLlamaModel(gpu, cfg, src, SpqrW3Projections(), maxContext: 1024, maxBatch: 16) { UseGraph = true };
        double Sq(bool fold) { k.SpqrTcFold = fold; sq.UseGraph = true; return DecodeTokensPerSecond(sq, cfg.VocabSize); }
        for (int r = 0; r < rounds; r++)
        {
            try
            {
                double fd = DecodeTokensPerSecond(f16, cfg.VocabSize), sd = Sq(false), sf = Sq(true);
                Console.WriteLine($"decode,round {r + 1},f16 {fd:F1} tokens/s,spqr_w3 {sd:F1} tokens/s ({sd / fd:F2}x),spqr_w3 fold {sf:F1} tokens/s ({sf / fd:F2}x our F16),graph, 48 tokens after 4");
            }
            catch (Exception ex) { Console.WriteLine($"decode,round {r + 1},failed: {ex.GetType().Name}: {ex.Message}"); }
        }
        k.SpqrTcFold = true;
    }
    return;
}
if (args.Length > 0 && args[0] == "mvsteps")
{
    // the w3 matvec's fixed cost per warp against its cost per super-step: 4096-row layers of 1,536-16,384 columns at 12
    // column splits (one wave of 12-warp blocks: 1-11 super-steps a warp), main kernel and whole call graph-timed as mvcost
    using var gpu = GpuBackend.Create(DeviceChoice.Gpu);
    var a = gpu.Accelerator;
    var k = gpu.Kernels;
    Console.WriteLine($"device: {gpu.Description}");
    k.SpqrTcSplits = 12;
    foreach (int cols in new[] { 1536, 3072, 4608, 6144, 9216, 12288, 16384 })
    {
        var (_, set, x, e) = W3Layers(a, 4096, cols);
        using var dx = a.Allocate1D(x); using var dy = a.Allocate1D<float>(4096);
        using var ds = a.Allocate1D<float>(k.SpqrScratch(set[0]));
        var (nmse, whole, main) = MatVecTimes(gpu, set, dx.View, ds.View, dy, e);
        Console.WriteLine($"mvsteps,4096x{cols},K 12,steps a warp {(cols / 128 + 11) / 12},whole call {whole * 1e6:F2} us,main kernel {main * 1e6:F2} us,nmse {nmse:E2}");
        foreach (var g in set) g.Dispose();
    }
    k.SpqrTcSplits = 0;
    return;
}
if (args.Length > 0 && args[0] == "floor")
{
    // where the w3 matvec's fixed cost goes: per LLaMA shape, graph-timed as mvcost (200 calls, weights rotated), kernels
    // with the matvec's grid that do only part of its work (GpuKernels.SpqrLaunchFloor: nothing; the epilogue's stores
    // after the wait; + the first super-step's record loads before it), then the main kernel and the whole call; three times
    // in turn
    using var gpu = GpuBackend.Create(DeviceChoice.Gpu);
    var a = gpu.Accelerator;
    var k = gpu.Kernels;
    Console.WriteLine($"device: {gpu.Description}, programmatic launch {k.ProgrammaticLaunch}");
    foreach (var (rows, cols) in new[] { (4096, 4096), (11008, 4096), (4096, 11008) })
    {
        var (_, set, x, e) = W3Layers(a, rows, cols);
        using var dx = a.Allocate1D(x); using var dy = a.Allocate1D<float>(rows);
        using var ds = a.Allocate1D<float>(k.SpqrScratch(set[0]));
        for (int rep = 0; rep < 3; rep++)
        {
            var floors = new[] { 0, 1, 2 }.Select(m => GraphSeconds(gpu, i => k.SpqrLaunchFloor(set[i % set.Length], dy.View, m), 200)).ToArray();
            var (nmse, whole, main) = MatVecTimes(gpu, set, dx.View, ds.View, dy, e);
            Console.WriteLine($"floor,{rows}x{cols},w3,empty {floors[0] * 1e6:F2} us,stores after the wait {floors[1] * 1e6:F2} us,+ first record loads {floors[2] * 1e6:F2} us,main kernel {main * 1e6:F2} us,whole call {whole * 1e6:F2} us,nmse {nmse:E2}");
        }
        foreach (var g in set) g.Dispose();
    }
    return;
}
if (args.Length > 0 && args[0] == "layer")
{
    // the pieces of a 7B-shaped SpQR w3 decode layer, each graph-timed alone as mvcost (200 calls back to back, median of 5;
    // weights rotated over ≥ 256 MB): q/k/v grouped with the input norm, the decode attention with its rotary and cache
    // writes (32 heads of 128, at 50 and 200 cached positions), o_proj (y += Ŵ·x, the fold), gate/up grouped with the norm,
    // down_proj (SwiGLU in its prepare, y += Ŵ·h); then the five in a layer's order, 32 layers a graph (per layer) —
    // against decode's step time over 32 layers. `layer R` repeats it R times (default 2)
    using var gpu = GpuBackend.Create(DeviceChoice.Gpu);
    var a = gpu.Accelerator;
    var k = gpu.Kernels;
    Console.WriteLine($"device: {gpu.Description}");
    int reps = args.Length > 1 ? int.Parse(args[1]) : 2;
    const int d = 4096, ff = 11008, heads = 32, hd = 128, ctx = 1024;
    var l4 = SpqrLayer.Random(d, d, 3, 0.01, 11); var lUp = SpqrLayer.Random(ff, d, 3, 0.01, 12); var lDown = SpqrLayer.Random(d, ff, 3, 0.01, 13);
    long layerBytes = 4 * l4.StoredBytes + 3 * lUp.StoredBytes;
    int L = (int)Math.Max(2, (256L << 20) / layerBytes + 1);
    GpuSpqrLayer Up(SpqrLayer l) => new(a, l, laneMajor: true);
    var qkvW = Enumerable.Range(0, L).Select(_ => new[] { Up(l4), Up(l4), Up(l4) }).ToArray();
    var oW = Enumerable.Range(0, L).Select(_ => Up(l4)).ToArray();
    var guW = Enumerable.Range(0, L).Select(_ => new[] { Up(lUp), Up(lUp) }).ToArray();
    var dW = Enumerable.Range(0, L).Select(_ => Up(lDown)).ToArray();
    float[] R(int n, int seed) { var r = new Random(seed); return Enumerable.Range(0, n).Select(_ => r.NextSingle() - 0.5f).ToArray(); }
    using var x = a.Allocate1D(R(d, 1)); using var nw = a.Allocate1D(R(d, 2)); using var att = a.Allocate1D(R(d, 3));
    using var q = a.Allocate1D<float>(d); using var kk = a.Allocate1D<float>(d); using var v = a.Allocate1D<float>(d);
    using var gate = a.Allocate1D<float>(ff); using var up = a.Allocate1D<float>(ff);
    long scr = Math.Max(k.SpqrScratch(qkvW[0][0]), k.SpqrScratch(guW[0][0])); scr = Math.Max(scr, k.SpqrScratch(dW[0]));
    using var s1 = a.Allocate1D<float>(scr); using var s2 = a.Allocate1D<float>(scr); using var s3 = a.Allocate1D<float>(scr);
    using var keys = a.Allocate1D(R(ctx * d, 4)); using var values = a.Allocate1D(R(ctx * d, 5));
    var rope = new RopeFrequencies(hd, ctx, 10000);
    var cos = new float[ctx * hd / 2]; var sin = new float[ctx * hd / 2];
    for (int t = 0; t < ctx; t++) { rope.Cos(t).CopyTo(cos.AsSpan(t * hd / 2)); rope.Sin(t).CopyTo(sin.AsSpan(t * hd / 2)); }
    using var dcos = a.Allocate1D(cos); using var dsin = a.Allocate1D(sin);
    using var pos = a.Allocate1D(new[] { 50 });
    using var scores = a.Allocate1D<float>((long)heads * ctx);
    var dims = new AttentionDims { Heads = heads, KvHeads = heads, HeadDim = hd, MaxContext = ctx };
    var norm = new InputRmsNorm { Weight = nw.View, Eps = 1e-5f };
    ArrayView<float>[] s3v = [s1.View, s2.View, s3.View], s2v = [s1.View, s2.View], qkvY = [q.View, kk.View, v.View], guY = [gate.View, up.View];
    void Qkv(int i) => k.SpqrMatVecGroup(qkvW[i % L], x.View, s3v, qkvY, norm);
    void Attn(int i) => k.RopeAttention(q.View, kk.View, v.View, dcos.View, dsin.View, pos.View, keys.View, values.View, att.View, scores.View, dims, false);
    void O(int i) => k.SpqrMatVec(oW[i % L], att.View, s1.View, x.View, accumulate: true);
    void GateUp(int i) => k.SpqrMatVecGroup(guW[i % L], x.View, s2v, guY, norm);
    void Down(int i) => k.SpqrMatVecSwiGlu(dW[i % L], gate.View, up.View, s1.View, x.View, accumulate: true);
    void Layer(int i) { Qkv(i); Attn(i); O(i); GateUp(i); Down(i); }
    double T(Action<int> f, int n = 200) => GraphSeconds(gpu, f, n) * 1e6;
    for (int rep = 0; rep < reps; rep++)
    {
        pos.CopyFromCPU(new[] { 50 });
        double qkv = T(Qkv), a50 = T(Attn), o = T(O), gu = T(GateUp), dn = T(Down), layer = T(Layer, 32);
        pos.CopyFromCPU(new[] { 200 });
        double a200 = T(Attn);
        Console.WriteLine($"layer,round {rep + 1},qkv {qkv:F2} us,attention@50 {a50:F2} us,attention@200 {a200:F2} us,o_proj {o:F2} us,gate_up {gu:F2} us,down {dn:F2} us,sum {qkv + a50 + o + gu + dn:F2} us,the five in order {layer:F2} us a layer (32 layers a graph, attention at 50)");
    }
    // where the grouped launches' time goes: without the input norm, over layers with no outliers, q/k/v as three lone
    // launches (each with the norm in its prepare), one x̃ prepared for all the group's layers (SpqrGroupSharedInput: the
    // layers here share one permutation); then the grouped launches' column splits
    var l40 = SpqrLayer.Random(d, d, 3, 0.0, 11); var lUp0 = SpqrLayer.Random(ff, d, 3, 0.0, 12);
    var qkv0 = Enumerable.Range(0, L).Select(_ => new[] { Up(l40), Up(l40), Up(l40) }).ToArray();
    var gu0 = Enumerable.Range(0, L).Select(_ => new[] { Up(lUp0), Up(lUp0) }).ToArray();
    for (int rep = 0; rep < reps; rep++)
    {
        double qkv = T(Qkv), qkvPlain = T(i => k.SpqrMatVecGroup(qkvW[i % L], x.View, s3v, qkvY));
        double qkvNoOut = T(i => k.SpqrMatVecGroup(qkv0[i % L], x.View, s3v, qkvY, norm));
        double qkvLone = T(i => { for (int j = 0; j < 3; j++) k.SpqrMatVec(qkvW[i % L][j], x.View, s3v[j], qkvY[j], norm: norm); });
        double gu = T(GateUp), guPlain = T(i => k.SpqrMatVecGroup(guW[i % L], x.View, s2v, guY));
        double guNoOut = T(i => k.SpqrMatVecGroup(gu0[i % L], x.View, s2v, guY, norm));
        bool sharedByDefault = k.SpqrGroupSharedInput;
        k.SpqrGroupSharedInput = true;
        double qkvShared = T(Qkv), guShared = T(GateUp);
        k.SpqrGroupSharedInput = sharedByDefault;
        Console.WriteLine($"layer,variants {rep + 1},qkv {qkv:F2} us,no norm {qkvPlain:F2},no outliers {qkvNoOut:F2},three lone launches {qkvLone:F2},one x̃ for the three {qkvShared:F2}" +
                          $",gate_up {gu:F2} us,no norm {guPlain:F2},no outliers {guNoOut:F2},one x̃ for the two {guShared:F2}");
        // the grouped launches' column splits (SpqrTcGroupSplits)
        var sq = new[] { 4, 6, 8, 10, 12, 16 }.Select(K => { k.SpqrTcGroupSplits = K; return $"{K}: {T(Qkv):F2}"; }).ToArray();
        var sg = new[] { 4, 6, 8, 12 }.Select(K => { k.SpqrTcGroupSplits = K; return $"{K}: {T(GateUp):F2}"; }).ToArray();
        k.SpqrTcGroupSplits = 0;
        Console.WriteLine($"layer,group splits {rep + 1},qkv us at K {string.Join(" / ", sq)},gate_up us at K {string.Join(" / ", sg)}");
    }
    foreach (var g in qkvW.SelectMany(z => z).Concat(oW).Concat(guW.SelectMany(z => z)).Concat(dW).Concat(qkv0.SelectMany(z => z)).Concat(gu0.SelectMany(z => z))) g.Dispose();
    return;
}
if (args.Length > 0 && args[0] == "decode")
{
    // the decode target's ratio in one process: 7B-shaped (32 layers, random weights) decode with our F16 and SpQR w3
    // linears, alternating for `rounds` rounds (default 2; graph per step, 48 tokens after 4 warm-up steps)
    using var gpu = GpuBackend.Create(DeviceChoice.Gpu);
    Console.WriteLine($"device: {gpu.Description}");
    int rounds = args.Length > 1 ? int.Parse(args[1]) : 2;
    var cfg = Llama7B(32);
    using var src = new SpQR.Transformer.Loading.RandomWeightSource(cfg, SpQR.Tensors.DType.F16);
    double Decode(GpuLlamaModel m) => DecodeTokensPerSecond(m, cfg.VocabSize);
    using var f16 = new GpuLlamaModel(gpu, cfg, src, null, maxContext: 1024, maxBatch: 16) { UseGraph = true };
    using var sq = new GpuLlamaModel(gpu, cfg, src, SpqrW3Projections(), maxContext: 1024, maxBatch: 16) { UseGraph = true };
    // and SpQR w3 with the opt-in late outlier gathers (SpqrTcLateGather): a kernel flag changes what a step's graph holds,
    // so UseGraph = true drops the captured one
    double Late() { gpu.Kernels.SpqrTcLateGather = true; sq.UseGraph = true; double v = Decode(sq); gpu.Kernels.SpqrTcLateGather = false; sq.UseGraph = true; return v; }
    for (int r = 0; r < rounds; r++)
    {
        double fd = Decode(f16), sd = Decode(sq), sl = Late();
        Console.WriteLine($"decode,round {r + 1},f16 {fd:F1} tokens/s,spqr_w3 {sd:F1} tokens/s,{sd / fd:F2}x our F16,spqr_w3 late gathers {sl:F1} tokens/s,graph, 48 tokens after 4");
    }
    return;
}
if (args.Length > 1 && args[0] == "tests") { Environment.Exit(DeviceTests.Run(args[1], args.Length > 2 ? args[2] : null)); }
var choice = args.Length > 0 ? Enum.Parse<DeviceChoice>(args[0], ignoreCase: true) : DeviceChoice.Auto;
using var backend = GpuBackend.Create(choice);
var acc = backend.Accelerator;
// the library's default edges between kernels of a graph (variants below switch it and put it back)
var defaultEdges = backend.Kernels.ProgrammaticEdges;
Console.WriteLine($"device: {backend.Description}, warp {acc.WarpSize}, memory {acc.MemorySize / (1L << 30)} GiB, programmatic dependent launch in graphs: {(backend.Kernels.ProgrammaticLaunch ? "on" : "off")}");
// Two timings of n calls (call i uses weight copy i % copies): "queue" launches them back to back from the host and
// waits once (includes ILGPU's host cost per launch); "graph" records the same n calls into one CUDA graph and replays
// it (kernel time, the issue's method); median of 5 repetitions, per call.
double TimeQueue(Action<int> call, int n)
{
    var ts = new List<double>();
    for (int rep = 0; rep < 5; rep++)
    {
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < n; i++) call(i);
        acc.Synchronize();
        ts.Add(sw.Elapsed.TotalSeconds / n);
    }
    ts.Sort();
    return ts[2];
}
double TimeGraph(Action<int> call, int n) => GraphSeconds(backend, call, n);
// n calls recorded into one CUDA graph, replayed 5 times after one warm-up: the median seconds per call
static double GraphSeconds(GpuBackend b, Action<int> call, int n)
{
    using var g = GpuGraph.Capture(b, () => { for (int i = 0; i < n; i++) call(i); });
    g.Launch(); b.Accelerator.Synchronize();
    var ts = new List<double>();
    for (int rep = 0; rep < 5; rep++)
    {
        var sw = Stopwatch.StartNew();
        g.Launch();
        b.Accelerator.Synchronize();
        ts.Add(sw.Elapsed.TotalSeconds / n);
    }
    ts.Sort();
    return ts[2];
}
// one w3 layer shape for the matvec timings: a random layer (share outliers), lane-major copies of it on the device over
// ≥ 256 MB (so the L2 cannot hold them), x = cos(i) and the CPU's Ŵ·x
static (SpqrLayer Layer, GpuSpqrLayer[] Set, float[] X, float[] Expected) W3Layers(Accelerator a, int rows, int cols, double share = 0.01)
{
    var l = SpqrLayer.Random(rows, cols, 3, share, 1);
    int copies = (int)Math.Max(2, (256L << 20) / l.StoredBytes + 1);
    var x = Enumerable.Range(0, cols).Select(i => (float)Math.Cos(i)).ToArray();
    var e = new float[rows];
    SpqrMatVec.MatVec(l, x, e);
    return (l, Enumerable.Range(0, copies).Select(_ => new GpuSpqrLayer(a, l, laneMajor: true)).ToArray(), x, e);
}
// the SpQR matvec over weight copies (call i uses set[i % copies]): NMSE of the first call against the CPU's e, then the
// whole call (prepare + main kernel) and the main kernel alone, graph-timed (200 calls, median of 5; mvcost, gather)
static (double Nmse, double Whole, double Main) MatVecTimes(GpuBackend gpu, GpuSpqrLayer[] set, ArrayView<float> x, ArrayView<float> scratch,
                                                          MemoryBuffer1D<float, Stride1D.Dense> y, float[] e)
{
    gpu.Kernels.SpqrMatVec(set[0], x, scratch, y.View); gpu.Accelerator.Synchronize();
    double nmse = Nmse(e, y.GetAsArray1D());
    double whole = GraphSeconds(gpu, i => gpu.Kernels.SpqrMatVec(set[i % set.Length], x, scratch, y.View), 200);
    double main = GraphSeconds(gpu, i => gpu.Kernels.SpqrMatVec(set[i % set.Length], x, scratch, y.View, prepare: false), 200);
    return (nmse, whole, main);
}
static double Nmse(float[] e, float[] a)
{
    double num = 0, den = 0;
    for (int i = 0; i < e.Length; i++) { num += Math.Pow(a[i] - e[i], 2); den += (double)e[i] * e[i]; }
    return num / Math.Max(den, 1e-30);
}

// `onlydecode` skips the kernel sections (GEMV, SpQR, matmul) and the encoder
bool kernels = !args.Contains("onlydecode");
// `nomatvec` skips the GEMV and SpQR matvec timings (the SpQR correctness sweep still runs)
bool matvec = !args.Contains("nomatvec");
if (kernels)
{
Console.WriteLine("shape,dtype,us_per_call,GB_per_s,nmse_vs_cpu,us_per_call_graph,GB_per_s_graph,us_graph_edges_off,us_graph_edges_at_exit,us_graph_edges_early");
foreach (var (rows, cols) in matvec ? new[] { (4096, 4096), (11008, 4096), (4096, 11008) } : [])
    foreach (string dt in new[] { "f16", "f16_x_from_global_memory", "bf16", "f32" })
    {
        // (f16_x_from_global_memory: the half-precision GEMV before the tenth session, GemvHalfStaged off)
        bool f16 = dt != "f32", bf = dt == "bf16";
        backend.Kernels.GemvHalfStaged = dt != "f16_x_from_global_memory";
        long bytes = (long)rows * cols * (f16 ? 2 : 4);
        int copies = (int)Math.Max(2, (256L << 20) / bytes + 1);
        if (choice == DeviceChoice.Cpu) copies = 1;
        var r = new Random(1);
        var w = new float[(long)rows * cols];
        for (long i = 0; i < w.Length; i++) w[i] = (float)(r.NextDouble() - 0.5);
        var h = new ushort[w.Length];
        if (bf) CpuKernels.F32ToBF16(w, h); else CpuKernels.F32ToF16(w, h);
        var x = Enumerable.Range(0, cols).Select(_ => (float)r.NextDouble()).ToArray();
        var bufs32 = new List<MemoryBuffer1D<float, Stride1D.Dense>>(); var bufs16 = new List<MemoryBuffer1D<ushort, Stride1D.Dense>>();
        for (int c = 0; c < copies; c++) { if (f16) bufs16.Add(acc.Allocate1D(h)); else bufs32.Add(acc.Allocate1D(w)); }
        using var dx = acc.Allocate1D(x);
        using var dy = acc.Allocate1D<float>(rows);
        void Call(int i)
        {
            if (bf) backend.Kernels.GemvBF16(bufs16[i % copies].View, dx.View, dy.View, rows, cols);
            else if (f16) backend.Kernels.GemvF16(bufs16[i % copies].View, dx.View, dy.View, rows, cols);
            else backend.Kernels.GemvF32(bufs32[i % copies].View, dx.View, dy.View, rows, cols);
        }
        // correctness first
        Call(0); acc.Synchronize();
        var y = dy.GetAsArray1D(); var e = new float[rows];
        if (bf) CpuKernels.GemvBF16(h, x, e, rows, cols); else if (f16) CpuKernels.GemvF16(h, x, e, rows, cols); else CpuKernels.Gemv(w, x, e, rows, cols);
        double num = 0, den = 0;
        for (int i = 0; i < rows; i++) { num += Math.Pow(y[i] - e[i], 2); den += (double)e[i] * e[i]; }
        int n = choice == DeviceChoice.Cpu ? 3 : 200;
        for (int i = 0; i < 20 && choice != DeviceChoice.Cpu; i++) Call(i);
        acc.Synchronize();
        double t = TimeQueue(Call, n), tg = TimeGraph(Call, n);
        var modes = new List<string>();
        foreach (var mode in new[] { ProgrammaticMode.Off, ProgrammaticMode.AtExit, ProgrammaticMode.Early })
        {
            backend.Kernels.ProgrammaticEdges = mode;
            modes.Add($"{TimeGraph(Call, n) * 1e6:F1}");
        }
        backend.Kernels.ProgrammaticEdges = defaultEdges;
        Console.WriteLine($"{rows}x{cols},{dt},{t * 1e6:F1},{bytes / t / 1e9:F0},{num / den:E2},{tg * 1e6:F1},{bytes / tg / 1e9:F0},{string.Join(",", modes)}");
        foreach (var b in bufs32) b.Dispose();
        foreach (var b in bufs16) b.Dispose();
        backend.Kernels.GemvHalfStaged = true;
    }

// SpQR: correctness sweep on the device, then timings
double worst = 0;
foreach (var (rows, cols, bits, fp16) in new[] { (1, 1, 3, false), (33, 70, 3, false), (40, 300, 4, false), (17, 129, 2, false), (24, 96, 5, false), (9, 200, 8, false), (48, 160, 3, true), (257, 1000, 3, false), (300, 4096, 4, false), (1000, 4096, 3, false), (333, 11008, 2, false), (4096, 128, 3, false) })
{
    var l = SpqrLayer.Random(rows, cols, bits, 0.03, rows + cols, fp16Arithmetic: fp16);
    var xs = Enumerable.Range(0, cols).Select(i => (float)Math.Sin(i)).ToArray();
    var e = new float[rows];
    SpqrMatVec.MatVec(l, xs, e);
    using var g = new GpuSpqrLayer(acc, l);
    using var dx = acc.Allocate1D(xs); using var dxp = acc.Allocate1D<float>(backend.Kernels.SpqrScratch(g)); using var dy = acc.Allocate1D<float>(rows);
    backend.Kernels.SpqrMatVec(g, dx.View, dxp.View, dy.View);
    acc.Synchronize();
    worst = Math.Max(worst, Nmse(e, dy.GetAsArray1D()));
}
Console.WriteLine($"spqr correctness sweep (12 shapes, wbits 2..8, fp16-step layers; the last four on the tensor cores): worst NMSE vs CPU {worst:E2}");
Console.WriteLine("shape,kind,us_per_call,GB_per_s_compressed,bits_per_weight,nmse_vs_cpu,us_enqueue_only,us_per_call_graph,GB_per_s_graph");
foreach (var (rows, cols) in matvec ? new[] { (4096, 4096), (11008, 4096), (4096, 11008) } : [])
    foreach (int bits in new[] { 3, 4, 2 })
    {
        var l = SpqrLayer.Random(rows, cols, bits, 0.01, 1);
        long bytes = l.StoredBytes;
        int copies = choice == DeviceChoice.Cpu ? 1 : (int)Math.Max(2, (256L << 20) / bytes + 1);
        var layers = new List<GpuSpqrLayer>();
        for (int c = 0; c < copies; c++) layers.Add(new GpuSpqrLayer(acc, l, laneMajor: true));
        // w3's lane-major records in the eighth session's layout (codes OR'd onto 1024, subtracted in the kernel): the
        // "_eighth_session_w3_records" rows, against the default subnormal records (eleventh session)
        var magic = new List<GpuSpqrLayer>();
        if (bits == 3 && choice != DeviceChoice.Cpu) for (int c = 0; c < copies; c++) magic.Add(new GpuSpqrLayer(acc, l, laneMajor: true, magicW3Records: true));
        var cur = layers;
        var x = Enumerable.Range(0, cols).Select(i => (float)Math.Cos(i)).ToArray();
        using var dx = acc.Allocate1D(x); using var dxp = acc.Allocate1D<float>(backend.Kernels.SpqrScratch(layers[0])); using var dy = acc.Allocate1D<float>(rows);
        var e = new float[rows];
        SpqrMatVec.MatVec(l, x, e);
        int n = choice == DeviceChoice.Cpu ? 3 : 200;
        void Call(int i) => backend.Kernels.SpqrMatVec(cur[i % copies], dx.View, dxp.View, dy.View);
        // the kernel versions side by side: the library's choice for the shape (the tensor-core kernel where cols ≥ rows,
        // else the float32 wide kernel), the tensor-core kernel forced onto the shape, and the wide kernel; each also
        // without its prepare launch
        // (_tc: forced onto every shape, K by shape (8))
        // (_tc_loads_only: the tensor-core kernel's loads without its arithmetic, w3: what the access pattern costs)
        // (K = 4 and 16 were measured slower than 8 on all three shapes in the sixth and seventh sessions: not timed again)
        // (_tc_lane_major_k4 / _k16: 4 or 16 column splits instead of 8 — last measured before the lane-major codes halved the
        // kernel's registers)
        foreach (var (name, tc, tcK) in new[] { ("", true, 0), ("_edges_off", true, 0), ("_tc", true, 0), ("_tc_lane_major", true, 0), ("_eighth_session_w3_records", true, 0), ("_step_order_forward", true, 0), ("_tc_lane_major_k4", true, 4), ("_tc_lane_major_k6", true, 6), ("_tc_lane_major_k8", true, 8), ("_tc_lane_major_k10", true, 10), ("_tc_lane_major_k12", true, 12), ("_tc_loads_only", true, 0), ("_wide", false, 0) })
        {
            if (choice == DeviceChoice.Cpu && name != "") break;
            if ((name.Contains("_loads") || name == "_eighth_session_w3_records") && bits != 3) continue;
            cur = name == "_eighth_session_w3_records" ? magic : layers;
            if (bits == 2 && name is not ("" or "_tc" or "_tc_lane_major")) continue; // w2: is its lane-major copy faster?
            if (name.StartsWith("_edges_") && !backend.Kernels.ProgrammaticLaunch) continue;
            backend.Kernels.SpqrTensorCores = tc; backend.Kernels.SpqrTcSplits = tcK;
            backend.Kernels.SpqrTcLoadsOnly = name == "_tc_loads_only" ? 1 : 0; // (2-5: the eighth session's other load diagnostics)
            // (_edges_*: the default kernel with the graph's kernel → kernel edges plain / programmatic from the source's exit /
            // from its start into the prepare launch only, against the default: GpuKernels.Pdl.cs)
            bool byDefault = name == "" || name.StartsWith("_edges_") || name == "_eighth_session_w3_records" || name == "_step_order_forward";
            // (_step_order_forward: split j takes super-steps j, j + K, ... — before the eleventh session)
            backend.Kernels.SpqrTcStepOrderReversed = name != "_step_order_forward";
            backend.Kernels.ProgrammaticEdges = name switch
            {
                "_edges_off" => ProgrammaticMode.Off, "_edges_at_exit" => ProgrammaticMode.AtExit, "_edges_early_into_small" => ProgrammaticMode.EarlyIntoSmall,
                _ => defaultEdges,
            };
            backend.Kernels.SpqrTcAllShapes = tc && !byDefault; // the default rows: the kernel the library picks for the shape
            // (_tc_lane_major: the lane-major copy of the codes, built here for every width; the default row uses it where models
            // do, w3 and w4 — w2's measured faster only on 11008x4096; _tc: the format's codes)
            backend.Kernels.SpqrTcLaneMajor = name.StartsWith("_tc_lane_major") || byDefault && backend.Kernels.LaneMajorUploadFor(bits);
            dy.MemSetToZero();
            Call(0);
            acc.Synchronize();
            double nv = Nmse(e, dy.GetAsArray1D());
            for (int i = 0; i < 20 && choice != DeviceChoice.Cpu; i++) Call(i);
            acc.Synchronize();
            double t = TimeQueue(Call, n);
            var sw2 = Stopwatch.StartNew();
            for (int i = 0; i < n; i++) Call(i);
            double enq = sw2.Elapsed.TotalSeconds / n;
            acc.Synchronize();
            double tg = TimeGraph(Call, n);
            Console.WriteLine($"{rows}x{cols},spqr_w{bits}{name},{t * 1e6:F1},{bytes / t / 1e9:F0},{bytes * 8.0 / ((long)rows * cols):F2},{nv:E2},{enq * 1e6:F1},{tg * 1e6:F1},{bytes / tg / 1e9:F0}");
            double tk = TimeGraph(i => backend.Kernels.SpqrMatVec(cur[i % copies], dx.View, dxp.View, dy.View, prepare: false), n);
            Console.WriteLine($"{rows}x{cols},spqr_w{bits}{name}_main_kernel_only,,,,,,{tk * 1e6:F1},{bytes / tk / 1e9:F0}");
        }
        backend.Kernels.SpqrTensorCores = true; backend.Kernels.SpqrTcSplits = 0; backend.Kernels.SpqrTcLoadsOnly = 0; backend.Kernels.SpqrTcLaneMajor = true; backend.Kernels.ProgrammaticEdges = defaultEdges;
        backend.Kernels.SpqrTcAllShapes = false;
        foreach (var g in layers.Concat(magic)) g.Dispose();
    }

// Batched products (the prefill form), T = 64 and 256 tokens: the SpQR layer decoded inside the register-blocked GEMM's
// tiles (plus the gather and outlier passes) against the same GEMM over the dense F16 weight, and T graph-timed SpQR
// matvecs; checked against the CPU matmul first. Weights rotate over copies ≥ 256 MB as in the GEMV timings.
// `nomatmul` skips them.
if (choice != DeviceChoice.Cpu && kernels && !args.Contains("nomatmul"))
{
    Console.WriteLine("matmul,shape,T,spqr_us,spqr_tflops,f16_gemm_us,f16_tflops,T_x_spqr_matvec_us,nmse_vs_cpu,spqr_us_unsplit,f16_gemm_us_unsplit,spqr_tensor_cores_us,spqr_tensor_cores_tflops,nmse_tensor_cores,spqr_tensor_cores_lane_major_us,spqr_tensor_cores_lane_major_tflops,nmse_tensor_cores_lane_major");
    foreach (var (rows, cols) in new[] { (4096, 4096), (11008, 4096), (4096, 11008) })
    {
        var l = SpqrLayer.Random(rows, cols, 3, 0.01, 5);
        int copies = (int)Math.Max(1, (256L << 20) / l.StoredBytes + 1);
        var gs = Enumerable.Range(0, copies).Select(_ => new GpuSpqrLayer(acc, l, laneMajor: true)).ToArray();
        var w16 = new ushort[(long)rows * cols];
        var rng = new Random(3);
        for (long i = 0; i < w16.Length; i++) w16[i] = BitConverter.HalfToUInt16Bits((System.Half)(rng.NextSingle() - 0.5f));
        int hcopies = (int)Math.Max(1, (256L << 20) / (2L * w16.Length) + 1);
        var hs = Enumerable.Range(0, hcopies).Select(_ => acc.Allocate1D(w16)).ToArray();
        foreach (int T in new[] { 64, 256 })
        {
            var X = Enumerable.Range(0, T * cols).Select(i => (float)Math.Sin(0.001 * i)).ToArray();
            var e = new float[T * rows];
            SpqrMatVec.MatMul(l, X, e, T);
            using var dX = acc.Allocate1D(X); using var dY = acc.Allocate1D<float>((long)T * rows);
            using var ds = acc.Allocate1D<float>(Math.Max(GpuKernels.SpqrMatMulScratch(gs[0], T), backend.Kernels.SpqrScratch(gs[0])));
            backend.Kernels.SpqrMatMul(gs[0], dX.View, T, dY.View, ds.View);
            acc.Synchronize();
            double nm = Nmse(e, dY.GetAsArray1D());
            int n = Math.Max(copies, 8);
            double tS = TimeGraph(i => backend.Kernels.SpqrMatMul(gs[i % copies], dX.View, T, dY.View, ds.View), n);
            double tH = TimeGraph(i => backend.Kernels.GemmNTHalf(dX.View, hs[i % hcopies].View, dY.View, T, rows, cols, false), Math.Max(hcopies, 8));
            double tV = TimeGraph(i => backend.Kernels.SpqrMatVec(gs[i % copies], dX.View.SubView((long)(i % T) * cols, cols), ds.View, dY.View), 200);
            double fl = 2.0 * T * rows * cols;
            backend.Kernels.GemmSplits = 1; // K unsplit (the grid alone)
            double tS1 = TimeGraph(i => backend.Kernels.SpqrMatMul(gs[i % copies], dX.View, T, dY.View, ds.View), n);
            double tH1 = TimeGraph(i => backend.Kernels.GemmNTHalf(dX.View, hs[i % hcopies].View, dY.View, T, rows, cols, false), Math.Max(hcopies, 8));
            backend.Kernels.GemmSplits = 0;
            // a kernel choice switched on: its NMSE against the CPU, then its graph time
            (double Nmse, double Us) With(Action<bool> set)
            {
                set(true);
                dY.MemSetToZero();
                backend.Kernels.SpqrMatMul(gs[0], dX.View, T, dY.View, ds.View);
                acc.Synchronize();
                double nmse = Nmse(e, dY.GetAsArray1D());
                double t = TimeGraph(i => backend.Kernels.SpqrMatMul(gs[i % copies], dX.View, T, dY.View, ds.View), n);
                set(false);
                return (nmse, t);
            }
            // the tensor-core batched product over the format's codes (GpuKernels.SpqrTcGemm.cs, opt-in: measured slower in
            // the seventh session), and over the lane-major copy (SpqrTcMatMulLanes, ninth session)
            var (nmTc, tTc) = With(on => backend.Kernels.SpqrTcMatMul = on);
            var (nmTl, tTl) = With(on => backend.Kernels.SpqrTcMatMulLanes = on);
            Console.WriteLine($"matmul,{rows}x{cols},{T},{tS * 1e6:F1},{fl / tS / 1e12:F2},{tH * 1e6:F1},{fl / tH / 1e12:F2},{T * tV * 1e6:F1},{nm:E2},{tS1 * 1e6:F1},{tH1 * 1e6:F1},{tTc * 1e6:F1},{fl / tTc / 1e12:F2},{nmTc:E2},{tTl * 1e6:F1},{fl / tTl / 1e12:F2},{nmTl:E2}");
        }
        foreach (var g in gs) g.Dispose();
        foreach (var h in hs) h.Dispose();
    }
}
}

// The encoder: one layer at the paper's recipe (w3, β1 = β2 = 16, 3-bit statistics, τ 0.2, act_order), H = 2/N XᵀX of
// 8192 correlated samples accumulated on the device; the device encoder against the CPU encoder on this host (same W, H).
if (choice != DeviceChoice.Cpu && !args.Contains("noencode") && kernels)
{
    var opts = new SpQR.Quant.Encode.SpqrOptions();
    { var wq = Enumerable.Range(0, 64 * 64).Select(i => (float)Math.Sin(i)).ToArray(); var hq = new double[64 * 64]; for (int i = 0; i < 64; i++) hq[i * 65] = 1; SpQR.Gpu.GpuSpqrEncoder.Quantize(backend, wq, hq, 64, 64, opts); } // kernels compiled
    Console.WriteLine("encode,shape,hessian_s,gpu_total_s,gpu_prepare_s,of_which_device_factor_s,gpu_device_loop_s,gpu_assemble_s,cpu_encoder_s,codes_equal,outliers_gpu,outliers_cpu,rel_diff_w_hat");
    foreach (var (rows, cols) in new[] { (4096, 4096), (11008, 4096) })
    {
        var rng = new Random(rows + cols);
        int samples = 8192;
        var X = new float[(long)samples * cols];
        var colScale = Enumerable.Range(0, cols).Select(c => c % 7 == 0 ? 4f : 1f).ToArray();
        for (int t = 0; t < samples; t++)
        {
            float prev = 0;
            for (int c = 0; c < cols; c++) { float v = (float)(rng.NextDouble() * 2 - 1) * colScale[c] + 0.5f * prev; X[(long)t * cols + c] = v; prev = v; }
        }
        var swH = Stopwatch.StartNew();
        double[] H;
        using (var hacc = new SpQR.Gpu.GpuHessianAccumulator(backend, cols))
        {
            for (int s0 = 0; s0 < samples; s0 += 2048) hacc.AddSequence(X.AsSpan(s0 * cols, 2048 * cols), 2048);
            H = hacc.Hessian();
        }
        double tH = swH.Elapsed.TotalSeconds;
        var W = new float[(long)rows * cols];
        for (long i = 0; i < W.Length; i++) W[i] = (float)(rng.NextDouble() - 0.5) * (i % 131 == 0 ? 10f : 1f);
        var g = SpQR.Gpu.GpuSpqrEncoder.Quantize(backend, W, H, rows, cols, opts, "layer", out var tm);
        var cq = SpQR.Quant.Encode.SpqrEncoder.Quantize(W, H, rows, cols, opts, "layer");
        long same = 0; double num = 0, den = 0;
        for (long i = 0; i < cq.Codes.Length; i++) same += cq.Codes[i] == g.Codes[i] ? 1 : 0;
        for (long i = 0; i < W.Length; i++) { num += Math.Pow(g.Dequantized[i] - cq.Dequantized[i], 2); den += (double)W[i] * W[i]; }
        Console.WriteLine($"encode,{rows}x{cols},{tH:F2},{g.Seconds:F2},{tm.PrepareSeconds:F2},{tm.FactorSeconds:F2},{tm.DeviceSeconds:F2},{tm.AssembleSeconds:F2},{cq.Seconds:F2},{(double)same / cq.Codes.Length:F6},{g.OutlierRows.Length},{cq.OutlierRows.Length},{Math.Sqrt(num / den):E2}");
    }
}

// The device decoders against the CPU model on small random models, 8 tokens each: LLaMA with GQA, Falcon-7B style
// (multi-query, parallel attention, one norm), Falcon-40B style (grouped qkv, ln_attn + ln_mlp, biases).
{
    SpQR.Transformer.Config.TransformerConfig Small(SpQR.Transformer.Config.Architecture a, int kv, bool newArch, bool bias) => new()
    {
        Architecture = a, HiddenSize = 256, IntermediateSize = a == SpQR.Transformer.Config.Architecture.Falcon ? 1024 : 688, NumLayers = 2,
        NumHeads = 8, NumKvHeads = kv, HeadDim = 32, VocabSize = 512, MaxPositions = 64, NormEps = 1e-5f,
        Norm = a == SpQR.Transformer.Config.Architecture.Falcon ? SpQR.Transformer.Config.NormKind.LayerNorm : SpQR.Transformer.Config.NormKind.RmsNorm,
        Activation = a == SpQR.Transformer.Config.Architecture.Falcon ? SpQR.Transformer.Config.ActivationKind.Gelu : SpQR.Transformer.Config.ActivationKind.SwiGlu,
        RopeLayout = RopeLayout.HalfSplit, RopeTheta = 10000, TieWordEmbeddings = a == SpQR.Transformer.Config.Architecture.Falcon,
        AttentionBias = bias, MlpBias = bias, ParallelAttention = a == SpQR.Transformer.Config.Architecture.Falcon, NewDecoderArchitecture = newArch, SeparateMlpNorm = newArch,
    };
    foreach (var (name, cfg) in new[] { ("llama-gqa", Small(SpQR.Transformer.Config.Architecture.Llama, 2, false, false)),
                                        ("falcon-7b-style", Small(SpQR.Transformer.Config.Architecture.Falcon, 1, false, false)),
                                        ("falcon-40b-style", Small(SpQR.Transformer.Config.Architecture.Falcon, 4, true, true)) })
    {
        using var src = new SpQR.Transformer.Loading.RandomWeightSource(cfg, SpQR.Tensors.DType.F32, 5);
        var cpu = SpQR.Transformer.Loading.ModelLoader.Build(cfg, src, new SpQR.Transformer.Loading.ModelOptions { MaxContext = 64, MaxBatch = 1 });
        using GpuDecoder dev = cfg.Architecture == SpQR.Transformer.Config.Architecture.Falcon ? new GpuFalconModel(backend, cfg, src, null, 64) : new GpuLlamaModel(backend, cfg, src, null, 64);
        double w = 0;
        for (int t = 0; t < 8; t++)
        {
            var e = cpu.Forward([(t * 37 + 3) % cfg.VocabSize], t, false).ToArray();
            w = Math.Max(w, Nmse(e, dev.Step((t * 37 + 3) % cfg.VocabSize, t)));
        }
        Console.WriteLine($"decode check {name}: worst NMSE vs the CPU model over 8 tokens {w:E2}");
        // the batched pass: 8 tokens in one Forward, every token's logits, against the CPU model's batched forward
        var cpu8 = SpQR.Transformer.Loading.ModelLoader.Build(cfg, src, new SpQR.Transformer.Loading.ModelOptions { MaxContext = 64, MaxBatch = 8 });
        using GpuDecoder dev8 = cfg.Architecture == SpQR.Transformer.Config.Architecture.Falcon ? new GpuFalconModel(backend, cfg, src, null, 64, 8) : new GpuLlamaModel(backend, cfg, src, null, 64, 8);
        int[] ids8 = [.. Enumerable.Range(0, 8).Select(t => (t * 37 + 3) % cfg.VocabSize)];
        Console.WriteLine($"prefill check {name}: NMSE vs the CPU model, 8 tokens in one pass {Nmse(cpu8.Forward(ids8, 0, true).ToArray(), dev8.Forward(ids8, 0, true).ToArray()):E2}");
    }
}

// The small kernels of one LLaMA-7B decode layer (hidden 4096, 32 heads of 128, intermediate 11008), graph-timed µs each
if (choice != DeviceChoice.Cpu)
{
    int d = 4096, heads = 32, hd = 128, ctx = 2048, inter = 11008;
    using var bx = acc.Allocate1D(Enumerable.Range(0, d).Select(i => (float)Math.Sin(i)).ToArray()); using var bw = acc.Allocate1D(Enumerable.Repeat(1f, d).ToArray());
    using var bo = acc.Allocate1D<float>(d); using var bq = acc.Allocate1D(Enumerable.Range(0, d).Select(i => (float)Math.Cos(i)).ToArray());
    using var bk = acc.Allocate1D<float>(d); using var bv = acc.Allocate1D<float>(d);
    using var keys = acc.Allocate1D(Enumerable.Range(0, ctx * d).Select(i => (float)Math.Sin(0.37 * i)).ToArray()); using var vals = acc.Allocate1D(Enumerable.Range(0, ctx * d).Select(i => (float)Math.Cos(0.11 * i)).ToArray());
    using var sc = acc.Allocate1D<float>(heads * ctx); using var att = acc.Allocate1D<float>(d);
    using var cos = acc.Allocate1D(Enumerable.Repeat(0.5f, ctx * hd / 2).ToArray()); using var sin = acc.Allocate1D(Enumerable.Repeat(0.5f, ctx * hd / 2).ToArray());
    using var g = acc.Allocate1D(Enumerable.Repeat(0.1f, inter).ToArray()); using var u = acc.Allocate1D(Enumerable.Repeat(0.2f, inter).ToArray());
    using var p = acc.Allocate1D(new[] { 50 }); using var p1000 = acc.Allocate1D(new[] { 1000 }); using var p2000 = acc.Allocate1D(new[] { 2000 });
    var k = backend.Kernels;
    var dims = new AttentionDims { Heads = heads, KvHeads = heads, HeadDim = hd, MaxContext = ctx };
    // one decode attention at the position in pos, with AttentionChunk = chunk (0: the one-block-per-head kernel)
    void Attend(MemoryBuffer1D<int, Stride1D.Dense> pos, int chunk)
    {
        k.AttentionChunk = chunk;
        k.Attention(bq.View, keys.View, vals.View, att.View, sc.View, pos.View, dims);
        k.AttentionChunk = 256;
    }
    var items = new (string, Action<int>)[]
    {
        ("rmsnorm", _ => k.RmsNorm(bx.View, bw.View, bo.View, 1, 1e-5f)),
        ("rope_store", _ => k.RopeStore(bq.View, bk.View, bv.View, cos.View, sin.View, p.View, keys.View, vals.View, heads, heads, hd, false)),
        ("attention_pos50", _ => Attend(p, 256)),
        ("attention_pos1000", _ => Attend(p1000, 256)),
        ("attention_pos2000", _ => Attend(p2000, 256)),
        // the rotary and the cache writes folded into the split attention (the decode default; RopeAttention)
        ("rope_attention_fused_pos50", _ => k.RopeAttention(bq.View, bk.View, bv.View, cos.View, sin.View, p.View, keys.View, vals.View, att.View, sc.View, dims, false)),
        ("rope_attention_fused_pos1000", _ => k.RopeAttention(bq.View, bk.View, bv.View, cos.View, sin.View, p1000.View, keys.View, vals.View, att.View, sc.View, dims, false)),
        // the one-block-per-head kernel (the default before the split decode kernel; AttentionChunk 0 turns the split off)
        ("attention_one_block_per_head_pos50", _ => Attend(p, 0)),
        ("attention_one_block_per_head_pos1000", _ => Attend(p1000, 0)),
        ("attention_one_block_per_head_pos2000", _ => Attend(p2000, 0)),
        ("add_rmsnorm", _ => k.AddRmsNorm(bo.View, bx.View, bw.View, bq.View, 1, 1e-5f)),
        ("swiglu", _ => k.SwiGlu(g.View, u.View, inter)),
        ("add", _ => k.Add(bo.View, bx.View, d)),
    };
    foreach (var (name, a) in items) { a(0); acc.Synchronize(); }
    Console.WriteLine("layer_kernels," + string.Join(",", items.Select(it => $"{it.Item1} {TimeGraph(it.Item2, 100) * 1e6:F1} us")));
}

// Decode tokens/s of a LLaMA-7B-shaped model (32 layers, random weights) with F16 and SpQR w3 linears, one token at a
// time through GpuLlamaModel (each step uploads one embedding row and downloads the logits). Skipped on the CPU
// accelerator (too slow) and when args contain "nodecode".
if (choice != DeviceChoice.Cpu && !args.Contains("nodecode"))
{
    var cfg = Llama7B(32);
    var sw0 = Stopwatch.StartNew();
    using var src = new SpQR.Transformer.Loading.RandomWeightSource(cfg, SpQR.Tensors.DType.F16);
    Console.WriteLine($"decode: random 7B-shaped weights built in {sw0.Elapsed.TotalSeconds:F0} s");
    double Decode(GpuLlamaModel m, int start = 0) => DecodeTokensPerSecond(m, cfg.VocabSize, start);
    // each model twice: kernels launched one by one from the host, then replayed from one CUDA graph per step
    // and with the graph but q/k/v and gate/up one after another (ConcurrentBranches off)
    string Both(GpuLlamaModel m)
    {
        m.UseGraph = false;
        double launched = Decode(m);
        m.UseGraph = true;
        double graph = Decode(m);
        int nodes = m.GraphNodes;
        m.ConcurrentBranches = false;
        double serial = Decode(m);
        m.ConcurrentBranches = true;
        return $"{launched:F1} tokens/s launched,{graph:F1} tokens/s graph ({nodes} nodes),{serial:F1} tokens/s graph without concurrent branches,{m.WeightBytes / 1e9:F2} GB of weights per token";
    }
    // prefill: a 512-token prompt through ICausalLM.Prefill (batched passes of MaxBatch = 128 tokens), median of 3
    double Prefill(GpuLlamaModel m) => PrefillTokensPerSecond(m, cfg.VocabSize);
    using (var m = new GpuLlamaModel(backend, cfg, src, null, maxContext: 1024, maxBatch: 128))
    {
        Console.WriteLine($"decode,f16,{Both(m)}");
        backend.Kernels.GemvHalfStaged = false; m.UseGraph = true;
        Console.WriteLine($"decode,f16_gemv_x_from_global_memory,{Decode(m):F1} tokens/s graph");
        backend.Kernels.GemvHalfStaged = true; m.UseGraph = true;
        Console.WriteLine($"decode,f16_at_position_964,{Decode(m, 960):F1} tokens/s graph");
        backend.Kernels.FuseRopeIntoAttention = false; m.UseGraph = true;
        Console.WriteLine($"decode,f16_rope_store_kernel_before_the_attention,{Decode(m):F1} tokens/s graph");
        backend.Kernels.FuseRopeIntoAttention = true; m.UseGraph = true;
        Console.WriteLine($"decode,f16_again,{Decode(m):F1} tokens/s graph");
        foreach (var mode in new[] { ProgrammaticMode.Off, ProgrammaticMode.AtExit, ProgrammaticMode.Early, ProgrammaticMode.EarlyIntoSmall })
        {
            backend.Kernels.ProgrammaticEdges = mode; m.UseGraph = true;
            Console.WriteLine($"decode,f16_edges_{mode},{Decode(m):F1} tokens/s graph");
        }
        backend.Kernels.ProgrammaticEdges = defaultEdges; m.UseGraph = true;
        Console.WriteLine($"prefill,f16,{Prefill(m):F0} tokens/s (512-token prompt, batches of 128)");
        Console.WriteLine($"memory,f16,{m.DeviceWeightBytes / 1e9:F2} GB of linear weights on the device");
    }
    var Pick = SpqrW3Projections();
    using (var m = new GpuLlamaModel(backend, cfg, src, Pick, maxContext: 1024, maxBatch: 128))
    {
        // the grouped q/k/v and gate/up launches give the bits of separate ones (eagerly, and replayed from the graph) with
        // the same column splits (pinned to 8 here: by default a lone 4096-row layer takes 12, its group 8)
        backend.Kernels.SpqrTcSplits = 8;
        backend.Kernels.SpqrGroupLaunch = false; m.UseGraph = false;
        var sep = m.Step(5, 0).ToArray();
        backend.Kernels.SpqrGroupLaunch = true; m.UseGraph = true;
        var eager = m.Step(5, 0).ToArray(); var replayed = m.Step(5, 0).ToArray();
        backend.Kernels.SpqrTcSplits = 0; m.UseGraph = true;
        Console.WriteLine($"decode check spqr_w3 7B-shaped: grouped launches' logits identical to separate launches' eagerly {sep.AsSpan().SequenceEqual(eager)}, from the graph {sep.AsSpan().SequenceEqual(replayed)}");
        Console.WriteLine($"decode,spqr_w3,{Both(m)}");
        Console.WriteLine($"decode,spqr_w3_at_position_964,{Decode(m, 960):F1} tokens/s graph");
        // one decode line with a kernel choice switched on (the step graph re-recorded with it, then without it)
        void Variant(string name, Action<bool> set, int start = 0)
        {
            set(true); m.UseGraph = true;
            Console.WriteLine($"decode,spqr_w3_{name},{Decode(m, start):F1} tokens/s graph");
            set(false); m.UseGraph = true;
        }
        Action<bool> oneBlockAttention = on => backend.Kernels.AttentionChunk = on ? 0 : 256;
        Variant("at_position_964_one_block_per_head_attention", oneBlockAttention, 960);
        Variant("one_block_per_head_attention", oneBlockAttention);
        // the SwiGLU kernel before the down_proj (the default folds it into the down_proj's prepare launch)
        Variant("swiglu_kernel_before_the_down_proj", on => backend.Kernels.SpqrFuseSwiGlu = !on);
        // split j on super-steps j, j + K, ... (before the eleventh session: K − 1 − j, ...)
        Variant("step_order_forward", on => backend.Kernels.SpqrTcStepOrderReversed = !on);
        // column splits of the tensor-core matvec other than the shape's default
        foreach (int ks in new[] { 4, 8, 12 }) Variant($"column_splits_{ks}", on => backend.Kernels.SpqrTcSplits = on ? ks : 0);
        foreach (int ks in new[] { 6, 8, 12 }) Variant($"grouped_launches_column_splits_{ks}", on => backend.Kernels.SpqrTcGroupSplits = on ? ks : 0);
        // the tenth session's folds, each switched off alone, then both
        Variant("norm_kernels_before_the_projections", on => backend.Kernels.SpqrFuseInputNorm = !on);
        Variant("rope_store_kernel_before_the_attention", on => backend.Kernels.FuseRopeIntoAttention = !on);
        Variant("norm_and_rope_kernels", on => { backend.Kernels.SpqrFuseInputNorm = !on; backend.Kernels.FuseRopeIntoAttention = !on; });
        Console.WriteLine($"prefill,spqr_w3,{Prefill(m):F0} tokens/s (512-token prompt, batches of 128)");
        backend.Kernels.SpqrTcMatMulLanes = true;
        Console.WriteLine($"prefill,spqr_w3_tensor_core_gemm_over_lane_major_codes,{Prefill(m):F0} tokens/s (512-token prompt, batches of 128)");
        backend.Kernels.SpqrTcMatMulLanes = false;
        // the float32 wide kernel everywhere (the default before the tensor-core kernel), the tensor cores everywhere
        Variant("float32_wide_kernel", on => backend.Kernels.SpqrTensorCores = !on);
        // the format's codes only (the lane-major copy unused: the default before the eighth session's last runs)
        Variant("format_codes", on => backend.Kernels.SpqrTcLaneMajor = !on);
        Variant("format_codes_at_position_964", on => backend.Kernels.SpqrTcLaneMajor = !on, 960);
        // programmatic dependent launch off (plain graph edges; the kernels keep their waits, no-ops then)
        foreach (var mode in new[] { ProgrammaticMode.Off, ProgrammaticMode.AtExit, ProgrammaticMode.Early, ProgrammaticMode.EarlyIntoSmall })
            Variant($"edges_{mode}", on => backend.Kernels.ProgrammaticEdges = on ? mode : defaultEdges);
        Variant("at_position_964_edges_Off", on => backend.Kernels.ProgrammaticEdges = on ? ProgrammaticMode.Off : defaultEdges, 960);
        // q/k/v and gate/up as concurrent branches of separate launches (the default before grouped launches)
        Variant("separate_launches_for_qkv_and_gate_up", on => backend.Kernels.SpqrGroupLaunch = !on);
        Console.WriteLine($"decode,spqr_w3_default_again,{Decode(m):F1} tokens/s graph");
        Console.WriteLine($"memory,spqr_w3,{m.DeviceWeightBytes / 1e9:F2} GB of linear weights on the device (format codes and the lane-major copy)");
    }
    // the lane-major copy only (SpqrFormatCodesBesideLaneMajor false): decode, prefill (on the lane-major tensor-core GEMM), memory
    backend.Kernels.SpqrFormatCodesBesideLaneMajor = false;
    using (var m = new GpuLlamaModel(backend, cfg, src, Pick, maxContext: 1024, maxBatch: 128))
    {
        m.Step(5, 0);
        Console.WriteLine($"decode,spqr_w3_lane_major_codes_only,{Decode(m):F1} tokens/s graph");
        Console.WriteLine($"prefill,spqr_w3_lane_major_codes_only,{Prefill(m):F0} tokens/s (512-token prompt, batches of 128)");
        Console.WriteLine($"memory,spqr_w3_lane_major_codes_only,{m.DeviceWeightBytes / 1e9:F2} GB of linear weights on the device");
    }
    backend.Kernels.SpqrFormatCodesBesideLaneMajor = true;
    // w3's lane-major records in the eighth session's layout (the default before the eleventh session's subnormal records)
    backend.Kernels.SpqrW3MagicRecords = true;
    using (var m = new GpuLlamaModel(backend, cfg, src, Pick, maxContext: 1024, maxBatch: 128))
    {
        m.Step(5, 0);
        Console.WriteLine($"decode,spqr_w3_eighth_session_w3_records,{Decode(m):F1} tokens/s graph");
    }
    backend.Kernels.SpqrW3MagicRecords = false;
    using (var m = new GpuLlamaModel(backend, cfg, src, Pick, maxContext: 1024, maxBatch: 128))
    {
        m.Step(5, 0);
        Console.WriteLine($"decode,spqr_w3_subnormal_records_again,{Decode(m):F1} tokens/s graph");
    }
    backend.Kernels.SpqrFormatCodesBesideLaneMajor = true;
}

// prefill tokens/s: a 512-token prompt through ICausalLM.Prefill (batched passes of the model's MaxBatch), median of 3 after
// one untimed pass
// decode tokens/s: 48 steps at positions start + 4.. after 4 warm-up steps (start 960: a long context's attention; the
// cache rows before it are whatever the buffer holds, which changes no timing)
static double DecodeTokensPerSecond(GpuLlamaModel m, int vocab, int start = 0)
{
    for (int t = start; t < start + 4; t++) m.Step((t * 7919) % vocab, t);
    var sw = Stopwatch.StartNew();
    const int n = 48;
    for (int t = start + 4; t < start + 4 + n; t++) m.Step((t * 7919) % vocab, t);
    return n / sw.Elapsed.TotalSeconds;
}

static double PrefillTokensPerSecond(GpuLlamaModel m, int vocab)
{
    int[] prompt = [.. Enumerable.Range(0, 512).Select(t => (t * 7919 + 1) % vocab)];
    m.Prefill(prompt);
    var ts = new List<double>();
    for (int rep = 0; rep < 3; rep++) { var sw = Stopwatch.StartNew(); m.Prefill(prompt); ts.Add(sw.Elapsed.TotalSeconds); }
    ts.Sort();
    return prompt.Length / ts[1];
}

// a LLaMA-7B-shaped config (hidden 4096, 32 heads of 128, intermediate 11008, vocab 32000) of `layers` decoder layers
static SpQR.Transformer.Config.TransformerConfig Llama7B(int layers) => new()
{
    Architecture = SpQR.Transformer.Config.Architecture.Llama, HiddenSize = 4096, IntermediateSize = 11008, NumLayers = layers, NumHeads = 32, NumKvHeads = 32,
    HeadDim = 128, VocabSize = 32000, MaxPositions = 2048, NormEps = 1e-5f, Norm = SpQR.Transformer.Config.NormKind.RmsNorm,
    Activation = SpQR.Transformer.Config.ActivationKind.SwiGlu, RopeLayout = RopeLayout.HalfSplit, RopeTheta = 10000,
};

// every decoder projection of Llama7B as SpQR w3 (1% outliers): one random layer per shape, shared by all layers
static Func<string, SpqrLayer?> SpqrW3Projections()
{
    var l4 = SpqrLayer.Random(4096, 4096, 3, 0.01, 11); var lUp = SpqrLayer.Random(11008, 4096, 3, 0.01, 12); var lDown = SpqrLayer.Random(4096, 11008, 3, 0.01, 13);
    return name => name.EndsWith("_proj") && name.StartsWith("model.layers.")
        ? name.EndsWith("gate_proj") || name.EndsWith("up_proj") ? lUp : name.EndsWith("down_proj") ? lDown : l4 : null;
}
