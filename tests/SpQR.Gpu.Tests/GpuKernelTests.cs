// GPU kernels against the CPU kernels, on ILGPU's CPU accelerator in CI (SPQR_DEVICE=gpu runs them on CUDA):
// NMSE ≤ 1e-7 for float32 (ggml's test-backend-ops bound).
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using SpQR.Gpu;
using SpQR.Tensors.Cpu;
using SpQR.TestUtil;
using Xunit;

namespace SpQR.Gpu.Tests;

public sealed class BackendFixture : IDisposable
{
    public GpuBackend Backend { get; } = GpuBackend.Create(Environment.GetEnvironmentVariable("SPQR_DEVICE") == "gpu" ? DeviceChoice.Gpu : DeviceChoice.Cpu);
    public void Dispose() => Backend.Dispose();
}

public class GpuKernelTests(BackendFixture fx) : IClassFixture<BackendFixture>
{
    [Theory]
    // (cols % 8 == 0 up to 12288: the half-precision kernel with x in shared memory — 1024, 2056, 11008; 12296 past it)
    [InlineData(1, 1)] [InlineData(7, 33)] [InlineData(64, 300)] [InlineData(257, 1024)] [InlineData(19, 2056)] [InlineData(9, 11008)] [InlineData(3, 12296)]
    public void Gemv_f32_and_f16_match_the_cpu(int rows, int cols)
    {
        var acc = fx.Backend.Accelerator;
        var w = TestData.Uniform(rows * cols, 1); var x = TestData.Uniform(cols, 2);
        var h = new ushort[w.Length]; CpuKernels.F32ToF16(w, h);
        var e32 = new float[rows]; var e16 = new float[rows];
        CpuKernels.Gemv(w, x, e32, rows, cols);
        CpuKernels.GemvF16(h, x, e16, rows, cols);
        using var dw = acc.Allocate1D(w); using var dh = acc.Allocate1D(h); using var dx = acc.Allocate1D(x); using var dy = acc.Allocate1D<float>(rows);
        fx.Backend.Kernels.GemvF32(dw.View, dx.View, dy.View, rows, cols);
        acc.Synchronize();
        NumericAssert.Nmse(e32, dy.GetAsArray1D(), Tolerances.GpuNmse, "GEMV F32");
        fx.Backend.Kernels.GemvF16(dh.View, dx.View, dy.View, rows, cols);
        acc.Synchronize();
        NumericAssert.Nmse(e16, dy.GetAsArray1D(), Tolerances.GpuNmse, "GEMV F16");
        var hb = new ushort[w.Length]; CpuKernels.F32ToBF16(w, hb);
        var eb = new float[rows];
        CpuKernels.GemvBF16(hb, x, eb, rows, cols);
        using var db = acc.Allocate1D(hb);
        fx.Backend.Kernels.GemvBF16(db.View, dx.View, dy.View, rows, cols);
        acc.Synchronize();
        NumericAssert.Nmse(eb, dy.GetAsArray1D(), Tolerances.GpuNmse, "GEMV BF16");
        // y += W·x (the residual add in the epilogue): the product's bits plus y0
        var y0 = TestData.Uniform(rows, 7, -1, 1);
        foreach (var (name, run) in new (string, Action)[]
        {
            ("F32", () => fx.Backend.Kernels.GemvF32(dw.View, dx.View, dy.View, rows, cols, accumulate: true)),
            ("F16", () => fx.Backend.Kernels.GemvF16(dh.View, dx.View, dy.View, rows, cols, accumulate: true)),
            ("BF16", () => fx.Backend.Kernels.GemvBF16(db.View, dx.View, dy.View, rows, cols, accumulate: true)),
        })
        {
            var plain = new float[rows];
            dy.MemSetToZero(); run(); acc.Synchronize(); dy.CopyToCPU(plain);
            dy.CopyFromCPU(y0); run(); acc.Synchronize();
            var added = dy.GetAsArray1D();
            for (int r = 0; r < rows; r++) Assert.True(y0[r] + plain[r] == added[r], $"GEMV {name} accumulate, row {r}");
        }
    }

    // rows of n up to 8 per thread stay in registers, longer ones loop (on the CPU accelerator's 16-thread groups: n ≤ 128
    // and n > 128; on a GPU both are the register path)
    [Theory]
    [InlineData(5, 200)] [InlineData(3, 100)] [InlineData(2, 37)] [InlineData(1, 4096)]
    public void RmsNorm_and_the_fused_residual_add_match_the_cpu(int rows, int n)
    {
        var acc = fx.Backend.Accelerator;
        var x = TestData.Uniform(rows * n, 3, -3, 3); var y = TestData.Uniform(rows * n, 5, -1, 1); var w = TestData.Uniform(n, 4);
        var e = new float[x.Length];
        for (int r = 0; r < rows; r++) CpuKernels.RmsNorm(x.AsSpan(r * n, n), w, 1e-5f, e.AsSpan(r * n, n));
        using var dx = acc.Allocate1D(x); using var dy = acc.Allocate1D(y); using var dw = acc.Allocate1D(w); using var dd = acc.Allocate1D<float>(x.Length);
        fx.Backend.Kernels.RmsNorm(dx.View, dw.View, dd.View, rows, 1e-5f);
        acc.Synchronize();
        NumericAssert.Nmse(e, dd.GetAsArray1D(), Tolerances.GpuNmse, $"RMSNorm {rows}x{n}");
        // x += y, then the norm of the sum
        var sum = new float[x.Length];
        for (int i = 0; i < x.Length; i++) sum[i] = x[i] + y[i];
        for (int r = 0; r < rows; r++) CpuKernels.RmsNorm(sum.AsSpan(r * n, n), w, 1e-5f, e.AsSpan(r * n, n));
        dd.MemSetToZero();
        fx.Backend.Kernels.AddRmsNorm(dx.View, dy.View, dw.View, dd.View, rows, 1e-5f);
        acc.Synchronize();
        NumericAssert.Nmse(e, dd.GetAsArray1D(), Tolerances.GpuNmse, $"add + RMSNorm {rows}x{n}");
        NumericAssert.Nmse(sum, dx.GetAsArray1D(), Tolerances.GpuNmse, $"add + RMSNorm {rows}x{n}: x += y");
    }

    [Theory]
    // heads, KV heads, head dim, position (cached positions before this token), layout: head dims below and above the
    // thread group's size exercise both ways the value sum is split (on CUDA and on the CPU accelerator's 16-thread groups)
    // chunk: positions per block of the decode attention (AttentionChunk; 256 by default, so the default cases run one
    // block per head; small chunks split the positions over several blocks and combine them, up to 7 here)
    [InlineData(4, 2, 8, 0, false)] [InlineData(4, 2, 8, 37, true)] [InlineData(6, 1, 32, 70, false)] [InlineData(8, 8, 16, 5, false)]
    [InlineData(4, 2, 8, 37, false, 8)] [InlineData(6, 1, 32, 90, false, 16)] [InlineData(8, 8, 16, 63, true, 32)] [InlineData(2, 2, 12, 64, false, 13)]
    public void Rope_store_and_attention_match_the_cpu(int heads, int kvHeads, int hd, int pos, bool interleaved, int chunk = 256)
    {
        var acc = fx.Backend.Accelerator;
        int ctx = 96, half = hd / 2, kvDim = kvHeads * hd, layoutSeed = heads * 100 + pos;
        var layout = interleaved ? RopeLayout.Interleaved : RopeLayout.HalfSplit;
        var rope = new RopeFrequencies(hd, ctx, 10000);
        var cos = new float[ctx * half]; var sin = new float[ctx * half];
        for (int t = 0; t < ctx; t++) { rope.Cos(t).CopyTo(cos.AsSpan(t * half)); rope.Sin(t).CopyTo(sin.AsSpan(t * half)); }
        // a cache already holding positions 0..pos-1, and this token's q, k, v
        var keys = TestData.Uniform(ctx * kvDim, layoutSeed, -1, 1); var values = TestData.Uniform(ctx * kvDim, layoutSeed + 1, -1, 1);
        var q = TestData.Uniform(heads * hd, layoutSeed + 2, -2, 2); var k = TestData.Uniform(kvDim, layoutSeed + 3, -2, 2); var v = TestData.Uniform(kvDim, layoutSeed + 4, -1, 1);
        // CPU: rotate q and k at pos, store k and v at row pos, attend over 0..pos
        var qe = (float[])q.Clone(); var ke = (float[])k.Clone();
        CpuKernels.Rope(qe, heads, hd, rope.Cos(pos), rope.Sin(pos), layout);
        CpuKernels.Rope(ke, kvHeads, hd, rope.Cos(pos), rope.Sin(pos), layout);
        var keysE = (float[])keys.Clone(); var valuesE = (float[])values.Clone();
        ke.CopyTo(keysE, pos * kvDim); v.CopyTo(valuesE, pos * kvDim);
        var oe = new float[heads * hd];
        CpuKernels.CausalAttention(qe, keysE, valuesE, oe, 1, pos, heads, kvHeads, hd, new float[heads * (pos + 1)]);
        using var dq = acc.Allocate1D(q); using var dk = acc.Allocate1D(k); using var dv = acc.Allocate1D(v);
        using var dcos = acc.Allocate1D(cos); using var dsin = acc.Allocate1D(sin); using var dpos = acc.Allocate1D(new[] { pos });
        using var dkeys = acc.Allocate1D(keys); using var dvals = acc.Allocate1D(values);
        using var dout = acc.Allocate1D<float>(heads * hd); using var dsc = acc.Allocate1D<float>(heads * ctx * 3);
        var kk = fx.Backend.Kernels;
        var dims = new AttentionDims { Heads = heads, KvHeads = kvHeads, HeadDim = hd, MaxContext = ctx };
        // the rotary and the cache writes inside the split attention kernel (a decode step's default): fresh caches, q unrotated
        using (var fkeys = acc.Allocate1D(keys)) using (var fvals = acc.Allocate1D(values)) using (var fq = acc.Allocate1D(q))
        {
            try
            {
                kk.AttentionChunk = chunk;
                Assert.True(kk.AttentionSplits(dims, 1, dsc.Length), "the split decode attention should take this shape");
                kk.RopeAttention(fq.View, dk.View, dv.View, dcos.View, dsin.View, dpos.View, fkeys.View, fvals.View, dout.View, dsc.View, dims, interleaved);
                acc.Synchronize();
            }
            finally { kk.AttentionChunk = 256; }
            NumericAssert.Nmse(oe, dout.GetAsArray1D(), Tolerances.GpuNmse, $"rotary in the attention: output, chunks of {chunk}");
            NumericAssert.Nmse(keysE, fkeys.GetAsArray1D(), Tolerances.GpuNmse, "rotary in the attention: key cache");
            NumericAssert.Nmse(valuesE, fvals.GetAsArray1D(), Tolerances.GpuNmse, "rotary in the attention: value cache");
            Assert.Equal(q, fq.GetAsArray1D()); // q is rotated as it is read, not in its buffer
            dout.MemSetToZero();
        }
        kk.RopeStore(dq.View, dk.View, dv.View, dcos.View, dsin.View, dpos.View, dkeys.View, dvals.View, heads, kvHeads, hd, interleaved);
        try
        {
            kk.AttentionChunk = chunk;
            // the chunked cases must take the split kernel (the scores scratch here holds their partial results)
            if (chunk < 256) Assert.True(kk.AttentionSplits(dims, 1, dsc.Length), "the split decode attention should take this shape");
            kk.Attention(dq.View, dkeys.View, dvals.View, dout.View, dsc.View, dpos.View, dims);
            acc.Synchronize();
            NumericAssert.Nmse(oe, dout.GetAsArray1D(), Tolerances.GpuNmse, $"attention output, chunks of {chunk}");
            // again: the completion counters were reset by the combining blocks
            dout.MemSetToZero();
            kk.Attention(dq.View, dkeys.View, dvals.View, dout.View, dsc.View, dpos.View, dims);
            acc.Synchronize();
        }
        finally { kk.AttentionChunk = 256; }
        NumericAssert.Nmse(qe, dq.GetAsArray1D(), Tolerances.GpuNmse, "rotated q");
        NumericAssert.Nmse(keysE, dkeys.GetAsArray1D(), Tolerances.GpuNmse, "key cache");
        NumericAssert.Nmse(valuesE, dvals.GetAsArray1D(), Tolerances.GpuNmse, "value cache");
        NumericAssert.Nmse(oe, dout.GetAsArray1D(), Tolerances.GpuNmse, "attention output");
    }

    [Theory]
    // heads, KV heads, head dim, position of the first token, tokens, layout
    [InlineData(4, 2, 8, 0, 5, false)] [InlineData(6, 1, 32, 21, 9, true)] [InlineData(8, 8, 16, 3, 2, false)]
    public void Batched_rope_store_and_causal_attention_match_the_cpu(int heads, int kvHeads, int hd, int pos, int T, bool interleaved)
    {
        var acc = fx.Backend.Accelerator;
        int ctx = 64, half = hd / 2, kvDim = kvHeads * hd, qDim = heads * hd, seed = 7 * heads + pos + T;
        var layout = interleaved ? RopeLayout.Interleaved : RopeLayout.HalfSplit;
        var rope = new RopeFrequencies(hd, ctx, 10000);
        var cos = new float[ctx * half]; var sin = new float[ctx * half];
        for (int t = 0; t < ctx; t++) { rope.Cos(t).CopyTo(cos.AsSpan(t * half)); rope.Sin(t).CopyTo(sin.AsSpan(t * half)); }
        var keys = TestData.Uniform(ctx * kvDim, seed, -1, 1); var values = TestData.Uniform(ctx * kvDim, seed + 1, -1, 1);
        var q = TestData.Uniform(T * qDim, seed + 2, -2, 2); var k = TestData.Uniform(T * kvDim, seed + 3, -2, 2); var v = TestData.Uniform(T * kvDim, seed + 4, -1, 1);
        // CPU: rotate each token's q and k at its position, store k and v at rows pos.., then T causal queries
        var qe = (float[])q.Clone(); var ke = (float[])k.Clone();
        var keysE = (float[])keys.Clone(); var valuesE = (float[])values.Clone();
        for (int t = 0; t < T; t++)
        {
            CpuKernels.Rope(qe.AsSpan(t * qDim, qDim), heads, hd, rope.Cos(pos + t), rope.Sin(pos + t), layout);
            CpuKernels.Rope(ke.AsSpan(t * kvDim, kvDim), kvHeads, hd, rope.Cos(pos + t), rope.Sin(pos + t), layout);
        }
        ke.CopyTo(keysE, pos * kvDim); v.CopyTo(valuesE, pos * kvDim);
        var oe = new float[T * qDim];
        CpuKernels.CausalAttention(qe, keysE, valuesE, oe, T, pos, heads, kvHeads, hd, new float[heads * (pos + T)]);
        using var dq = acc.Allocate1D(q); using var dk = acc.Allocate1D(k); using var dv = acc.Allocate1D(v);
        using var dcos = acc.Allocate1D(cos); using var dsin = acc.Allocate1D(sin); using var dpos = acc.Allocate1D(new[] { pos });
        using var dkeys = acc.Allocate1D(keys); using var dvals = acc.Allocate1D(values);
        using var dout = acc.Allocate1D<float>(T * qDim); using var dsc = acc.Allocate1D<float>(T * heads * ctx);
        var kk = fx.Backend.Kernels;
        kk.RopeStore(dq.View, dk.View, dv.View, dcos.View, dsin.View, dpos.View, dkeys.View, dvals.View, heads, kvHeads, hd, interleaved, T);
        kk.Attention(dq.View, dkeys.View, dvals.View, dout.View, dsc.View, dpos.View, new AttentionDims { Heads = heads, KvHeads = kvHeads, HeadDim = hd, MaxContext = ctx }, T);
        acc.Synchronize();
        NumericAssert.Nmse(qe, dq.GetAsArray1D(), Tolerances.GpuNmse, "rotated q");
        NumericAssert.Nmse(keysE, dkeys.GetAsArray1D(), Tolerances.GpuNmse, "key cache");
        NumericAssert.Nmse(valuesE, dvals.GetAsArray1D(), Tolerances.GpuNmse, "value cache");
        NumericAssert.Nmse(oe, dout.GetAsArray1D(), Tolerances.GpuNmse, "attention output");
        // the same queries in chunks of two sharing a two-query scores scratch (First: the chunk's first query)
        using var dout2 = acc.Allocate1D<float>(T * qDim);
        for (int t0 = 0; t0 < T; t0 += 2)
        {
            int n = Math.Min(2, T - t0);
            kk.Attention(dq.View.SubView(t0 * qDim, n * qDim), dkeys.View, dvals.View, dout2.View.SubView(t0 * qDim, n * qDim), dsc.View.SubView(0, 2 * heads * ctx), dpos.View,
                         new AttentionDims { Heads = heads, KvHeads = kvHeads, HeadDim = hd, MaxContext = ctx, First = t0 }, n);
        }
        acc.Synchronize();
        NumericAssert.Nmse(oe, dout2.GetAsArray1D(), Tolerances.GpuNmse, "attention output, query chunks");
        // a scores scratch too small for T queries is refused, not overrun
        Assert.Throws<ArgumentException>(() => kk.Attention(dq.View, dkeys.View, dvals.View, dout.View, dsc.View.SubView(0, heads * ctx), dpos.View,
            new AttentionDims { Heads = heads, KvHeads = kvHeads, HeadDim = hd, MaxContext = ctx }, T));
    }

    [Fact]
    public void A_graph_replays_its_work_with_the_inputs_of_each_launch()
    {
        // x += y, then x += x (two kernels) recorded once; y changes between launches on the device side only
        var acc = fx.Backend.Accelerator;
        int n = 300;
        using var dx = acc.Allocate1D<float>(n); using var dy = acc.Allocate1D<float>(n);
        dx.MemSetToZero();
        void Work() { fx.Backend.Kernels.Add(dx.View, dy.View, n); fx.Backend.Kernels.Add(dx.View, dx.View, n); }
        dy.CopyFromCPU(Enumerable.Repeat(1f, n).ToArray());
        Work(); // loads the kernels: x = 2
        using var g = GpuGraph.Capture(fx.Backend, Work);
        Assert.Equal(acc.AcceleratorType == AcceleratorType.Cuda, g.IsNative);
        if (g.IsNative) Assert.Equal(2, g.Nodes);
        acc.Synchronize();
        Assert.All(dx.GetAsArray1D(), v => Assert.Equal(2f, v)); // capturing ran nothing
        dy.CopyFromCPU(Enumerable.Range(0, n).Select(i => (float)i).ToArray());
        g.Launch(); // x = 2·(2 + i)
        g.Launch(); // x = 2·(2·(2 + i) + i)
        acc.Synchronize();
        var got = dx.GetAsArray1D();
        for (int i = 0; i < n; i++) Assert.Equal(2f * (2f * (2 + i) + i), got[i]);
    }

    [Fact]
    public void A_chain_of_dependent_kernels_in_a_graph_computes_what_eager_launches_do()
    {
        // 40 rounds of x += y, y += 1 over 2^20 floats: every kernel reads what the one before wrote (on sm_90+ the edges
        // are programmatic: a kernel whose wait were missing or misplaced would read stale values)
        var acc = fx.Backend.Accelerator; var k = fx.Backend.Kernels;
        int n = acc.AcceleratorType == AcceleratorType.Cuda ? 1 << 20 : 256, rounds = 40;
        using var x = acc.Allocate1D<float>(n); using var y = acc.Allocate1D<float>(n);
        using var one = acc.Allocate1D(Enumerable.Repeat(1f, n).ToArray());
        void Work() { for (int r = 0; r < rounds; r++) { k.Add(x.View, y.View, n); k.Add(y.View, one.View, n); } }
        x.MemSetToZero(); y.MemSetToZero();
        Work(); // loads the kernels
        using var g = GpuGraph.Capture(fx.Backend, Work);
        if (g.IsNative && k.ProgrammaticLaunch) Assert.Equal(2 * rounds - 1, g.ProgrammaticEdges);
        foreach (int launches in new[] { 1, 3 })
            Check(g, launches);
        // every mode of edges (on a device without programmatic launch: plain graphs each time)
        var defaultEdges = k.ProgrammaticEdges;
        foreach (var mode in Enum.GetValues<ProgrammaticMode>())
        {
            k.ProgrammaticEdges = mode;
            try
            {
                using var gm = GpuGraph.Capture(fx.Backend, Work);
                if (gm.IsNative && k.ProgrammaticLaunch) Assert.Equal(mode == ProgrammaticMode.Off ? 0 : 2 * rounds - 1, gm.ProgrammaticEdges);
                Check(gm, 2);
            }
            finally { k.ProgrammaticEdges = defaultEdges; }
        }

        void Check(GpuGraph g, int launches)
        {
            acc.Synchronize();
            x.MemSetToZero(); y.MemSetToZero();
            for (int i = 0; i < launches; i++) g.Launch();
            acc.Synchronize();
            // after R rounds from zero: y = R, x = 0 + 1 + ... + (R − 1)
            int R = rounds * launches;
            float ex = R * (R - 1) / 2f;
            Assert.All(x.GetAsArray1D(), v => Assert.Equal(ex, v));
            Assert.All(y.GetAsArray1D(), v => Assert.Equal(R, v));
        }
    }

    [Fact]
    public void Forked_branches_join_before_the_work_after_them_eagerly_and_in_a_graph()
    {
        // a = 1; fork { a += b, c += d eight times, e += f }; then a += c, a += e on the main stream (wrong without the join)
        var acc = fx.Backend.Accelerator; var k = fx.Backend.Kernels;
        int n = 1 << 16;
        float[] Fill(float v) => Enumerable.Repeat(v, n).ToArray();
        using var a = acc.Allocate1D(Fill(1)); using var b = acc.Allocate1D(Fill(2)); using var c = acc.Allocate1D(Fill(0));
        using var d = acc.Allocate1D(Fill(3)); using var e = acc.Allocate1D(Fill(0)); using var f = acc.Allocate1D(Fill(4));
        var branches = new Action[] { () => k.Add(a.View, b.View, n), () => { for (int i = 0; i < 8; i++) k.Add(c.View, d.View, n); }, () => k.Add(e.View, f.View, n) };
        void Work() { fx.Backend.Fork(branches); k.Add(a.View, c.View, n); k.Add(a.View, e.View, n); }
        Work(); // eager: a = 1 + 2 + 24 + 4 = 31, c = 24, e = 4
        acc.Synchronize();
        Assert.All(a.GetAsArray1D(), v => Assert.Equal(31f, v));
        using var g = GpuGraph.Capture(fx.Backend, Work);
        if (g.IsNative) Assert.Equal(12, g.Nodes); // the 12 kernels; the fork's events become edges, not nodes
        g.Launch(); // c = 48, e = 8, a = 31 + 2 + 48 + 8 = 89
        acc.Synchronize();
        Assert.All(a.GetAsArray1D(), v => Assert.Equal(89f, v));
        Assert.All(c.GetAsArray1D(), v => Assert.Equal(48f, v));
    }

    [Fact]
    public void Asking_for_a_gpu_without_one_is_a_clear_error()
    {
        if (Environment.GetEnvironmentVariable("SPQR_DEVICE") == "gpu") return; // on the GPU host there is one
        using var probe = ILGPU.Context.Create(b => b.Cuda());
        if (probe.GetCudaDevices().Count > 0) return;
        var e = Assert.Throws<GpuUnavailableException>(() => GpuBackend.Create(DeviceChoice.Gpu));
        Assert.Contains("--device", e.Message);
    }

    [Theory]
    [InlineData(1, 1, 3, false)] [InlineData(33, 70, 3, false)] [InlineData(40, 300, 4, false)] [InlineData(17, 129, 2, false)]
    [InlineData(24, 96, 5, false)] [InlineData(9, 200, 8, false)] [InlineData(48, 160, 3, true)] [InlineData(20, 77, 4, true)]
    [InlineData(50, 320, 3, false)] [InlineData(64, 512, 3, false)] [InlineData(23, 48, 2, false)]
    [InlineData(33, 256, 4, false)] [InlineData(17, 384, 2, false)] [InlineData(31, 1024, 3, false)]
    public void Spqr_matvec_matches_the_cpu_kernel(int rows, int cols, int wbits, bool fp16)
    {
        var acc = fx.Backend.Accelerator;
        var layer = SpQR.Quant.Formats.SpqrLayer.Random(rows, cols, wbits, 0.03, rows + cols, fp16Arithmetic: fp16);
        var x = TestData.Uniform(cols, 5, -2, 2);
        var e = new float[rows];
        SpQR.Quant.Decode.SpqrMatVec.MatVec(layer, x, e);
        using var g = new GpuSpqrLayer(acc, layer);
        using var dx = acc.Allocate1D(x); using var dxp = acc.Allocate1D<float>(fx.Backend.Kernels.SpqrScratch(g)); using var dy = acc.Allocate1D<float>(rows);
        // every kernel version: the wide kernel (where cols % 128 == 0), four rows per warp with K by shape, K = 1 and K = 2,
        // and two rows per warp
        var k = fx.Backend.Kernels;
        k.SpqrTensorCores = false; // the tensor-core kernel: GpuTensorCoreTests
        try
        {
            foreach (int splits in new[] { 99, 0, 1, 2, -1 })
            {
                k.SpqrWide = splits == 99;
                k.SpqrColumnSplits = splits == 99 ? 0 : splits;
                dy.MemSetToZero();
                k.SpqrMatVec(g, dx.View, dxp.View, dy.View);
                acc.Synchronize();
                NumericAssert.Nmse(e, dy.GetAsArray1D(), Tolerances.GpuNmse, $"SpQR matvec {rows}x{cols} w{wbits} ({(splits == 99 ? "wide" : $"column splits {splits}")})");
            }
        }
        finally { k.SpqrColumnSplits = 0; k.SpqrWide = true; k.SpqrTensorCores = true; }
    }

    [Theory]
    [InlineData(1)] [InlineData(7)] [InlineData(300)] [InlineData(32000)]
    public void Argmax_matches_the_cpu_and_takes_the_first_of_ties(int n)
    {
        var acc = fx.Backend.Accelerator;
        var x = TestData.Integers(n, n, 50); // many ties
        using var dx = acc.Allocate1D(x); using var di = acc.Allocate1D<int>(1);
        fx.Backend.Kernels.Argmax(dx.View, di.View, n);
        acc.Synchronize();
        Assert.Equal(CpuKernels.Argmax(x), di.GetAsArray1D()[0]);
        int first = Array.IndexOf(x, x.Max());
        Assert.Equal(first, di.GetAsArray1D()[0]);
    }

    [Theory]
    [InlineData(1, 1, 3, 1, false)] [InlineData(33, 70, 3, 5, false)] [InlineData(40, 300, 4, 3, false)] [InlineData(17, 129, 2, 9, false)]
    [InlineData(24, 96, 6, 4, false)] [InlineData(48, 160, 3, 7, true)] [InlineData(64, 512, 3, 17, false)]
    public void Spqr_batched_matmul_matches_the_cpu_kernel(int rows, int cols, int wbits, int T, bool fp16)
    {
        var acc = fx.Backend.Accelerator;
        var layer = SpQR.Quant.Formats.SpqrLayer.Random(rows, cols, wbits, 0.03, rows + cols + T, fp16Arithmetic: fp16);
        var X = TestData.Uniform(T * cols, 9, -2, 2);
        var e = new float[T * rows];
        SpQR.Quant.Decode.SpqrMatVec.MatMul(layer, X, e, T);
        using var g = new GpuSpqrLayer(acc, layer);
        using var dx = acc.Allocate1D(X); using var ds = acc.Allocate1D<float>(GpuKernels.SpqrMatMulScratch(g, T)); using var dy = acc.Allocate1D<float>(T * rows);
        // K unsplit, and split into partials summed by the reduce kernel
        try
        {
            foreach (int splits in new[] { 0, 4 })
            {
                fx.Backend.Kernels.GemmSplits = splits;
                dy.MemSetToZero();
                fx.Backend.Kernels.SpqrMatMul(g, dx.View, T, dy.View, ds.View);
                acc.Synchronize();
                NumericAssert.Nmse(e, dy.GetAsArray1D(), Tolerances.GpuNmse, $"SpQR matmul {rows}x{cols} w{wbits} T={T} splits {splits}");
            }
        }
        finally { fx.Backend.Kernels.GemmSplits = 0; }
    }

    [Theory]
    [InlineData(1, 1, 1)] [InlineData(5, 7, 33)] [InlineData(64, 40, 128)] [InlineData(17, 100, 19)]
    public void Tiled_gemm_matches_the_cpu(int M, int N, int K)
    {
        var acc = fx.Backend.Accelerator;
        var a = TestData.Uniform(M * K, 1); var b = TestData.Uniform(N * K, 2);
        var e = new float[M * N];
        for (int m = 0; m < M; m++) SpQR.Tensors.Cpu.Reference.ReferenceKernels.Gemv(b, a.AsSpan(m * K, K), e.AsSpan(m * N, N), N, K);
        using var da = acc.Allocate1D(a); using var db = acc.Allocate1D(b); using var dc = acc.Allocate1D<float>(M * N);
        try
        {
            foreach (int splits in new[] { 0, 2, 8 })
            {
                fx.Backend.Kernels.GemmSplits = splits;
                dc.MemSetToZero();
                fx.Backend.Kernels.GemmNT(da.View, db.View, dc.View, M, N, K);
                acc.Synchronize();
                NumericAssert.Nmse(e, dc.GetAsArray1D(), Tolerances.GpuNmse, $"GEMM {M}x{N}x{K} splits {splits}");
            }
        }
        finally { fx.Backend.Kernels.GemmSplits = 0; }
    }

    [Theory]
    [InlineData(2, 5, 16)] [InlineData(33, 130, 40)] [InlineData(64, 300, 129)]
    public void Gemm_over_f16_and_bf16_weights_matches_the_cpu(int M, int N, int K)
    {
        var acc = fx.Backend.Accelerator;
        var a = TestData.Uniform(M * K, 3); var w = TestData.Uniform(N * K, 4);
        foreach (bool bf in new[] { false, true })
        {
            var h = new ushort[w.Length];
            if (bf) CpuKernels.F32ToBF16(w, h); else CpuKernels.F32ToF16(w, h);
            var e = new float[M * N];
            for (int m = 0; m < M; m++)
                if (bf) CpuKernels.GemvBF16(h, a.AsSpan(m * K, K), e.AsSpan(m * N, N), N, K);
                else CpuKernels.GemvF16(h, a.AsSpan(m * K, K), e.AsSpan(m * N, N), N, K);
            using var da = acc.Allocate1D(a); using var dh = acc.Allocate1D(h); using var dc = acc.Allocate1D<float>(M * N);
            fx.Backend.Kernels.GemmNTHalf(da.View, dh.View, dc.View, M, N, K, bf);
            acc.Synchronize();
            NumericAssert.Nmse(e, dc.GetAsArray1D(), Tolerances.GpuNmse, $"GEMM {(bf ? "BF16" : "F16")} {M}x{N}x{K}");
        }
    }

    [Fact]
    public void Gemm_refuses_buffers_smaller_than_its_shape()
    {
        var acc = fx.Backend.Accelerator;
        using var da = acc.Allocate1D<float>(12); using var db = acc.Allocate1D<float>(12); using var dc = acc.Allocate1D<float>(6);
        var ex = Assert.Throws<ArgumentException>(() => fx.Backend.Kernels.GemmNT(da.View, db.View, dc.View, 2, 3, 6));
        Assert.Contains("B holds 12", ex.Message);
    }

    [Fact]
    public void The_programmatic_launch_rewrite_puts_one_wait_before_each_kernels_first_instruction()
    {
        int own = 0;
        foreach (var (m, text) in EveryKernelsPtx())
        {
            bool ownWait = text.Contains(GridDependencyPtx.Wait, StringComparison.Ordinal);
            if (ownWait) own++;
            string on = GridDependencyPtx.Rewrite(text, enable: true);
            Assert.Matches(@"\.target sm_9\d", on);
            Assert.Equal(1, Count(on, GridDependencyPtx.Wait));
            Assert.Equal(!ownWait, GridDependencyPtx.WaitsAtTop(on));
            Assert.DoesNotContain("launch_dependents", on); // the edges' ports say when dependents launch
            // between the entry's "{" and the wait only declarations (unless the kernel waits later itself)
            var lines = on.Split('\n').Select(l => l.Trim()).ToList();
            int open = lines.FindIndex(lines.FindIndex(l => l.Contains(".entry ", StringComparison.Ordinal)), l => l == "{");
            int wait = lines.IndexOf(GridDependencyPtx.Wait);
            Assert.True(open >= 0 && wait > open, $"{m.Name}: no wait inside the entry");
            bool instructionBefore = false;
            for (int i = open + 1; i < wait; i++)
                instructionBefore |= !(lines[i].Length == 0 || lines[i].StartsWith('.') || lines[i].StartsWith("//"));
            Assert.Equal(ownWait, instructionBefore);
            // off: the PTX as ILGPU wrote it, less any GridWait line
            string off = GridDependencyPtx.Rewrite(text, enable: false);
            Assert.DoesNotContain("griddepcontrol", off);
            if (!ownWait) Assert.Equal(text, off);
        }
        // the SpQR tensor-core matvecs place their own wait after their weight loads
        Assert.True(own >= 3, $"{own} kernels with their own wait");
    }

    private static int Count(string s, string what)
    {
        int n = 0;
        for (int i = s.IndexOf(what, StringComparison.Ordinal); i >= 0; i = s.IndexOf(what, i + what.Length, StringComparison.Ordinal)) n++;
        return n;
    }

    // every GpuKernels kernel and its PTX from ILGPU's own generator (no CUDA toolkit, no driver), for sm_90 at ISA 8.0
    private static List<(System.Reflection.MethodInfo Kernel, string Ptx)> EveryKernelsPtx()
    {
        using var ctx = Context.Create(b => b.Cuda().Optimize(OptimizationLevel.O2));
        using var ptx = new ILGPU.Backends.PTX.PTXBackend(ctx, CudaArchitecture.SM_90, new CudaInstructionSet(8, 0), null!);
        return [.. typeof(GpuKernels).GetMethods(System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)
            .Where(m => m.Name.EndsWith("Kernel", StringComparison.Ordinal))
            .Select(m => (m, ((ILGPU.Backends.PTX.PTXCompiledKernel)ptx.Compile(ILGPU.Backends.EntryPoints.EntryPointDescription.FromExplicitlyGroupedKernel(m),
                                                                               ILGPU.Runtime.KernelSpecialization.Empty)).PTXAssembly))];
    }

    [Fact]
    public void Every_kernel_compiles_to_ptx_without_a_gpu()
    {
        var kernels = EveryKernelsPtx();
        Assert.True(kernels.Count >= 6, $"found {kernels.Count} kernels");
        foreach (var (k, ptx) in kernels)
        {
            // ILGPU's generator emits sm_80 PTX for ISA 8.0, which the driver JIT-compiles for sm_90
            Assert.Matches(@"\.target sm_[89]\d", ptx);
            Assert.Contains(".entry", ptx);
            // a .NET method without an ILGPU intrinsic becomes an unresolved extern that only the driver's JIT rejects
            Assert.False(ptx.Contains(".extern .func", StringComparison.Ordinal), $"{k.Name} calls an unresolved extern function");
        }
    }
}
