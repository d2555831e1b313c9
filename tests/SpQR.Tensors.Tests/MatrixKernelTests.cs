// GEMV (F32/F16/BF16 weights) and GEMM against the scalar reference on random shapes (FsCheck), every SIMD path,
// and the thread-count independence both promise.
using FsCheck.Xunit;
using SpQR.Tensors.Cpu;
using SpQR.Tensors.Cpu.Reference;
using SpQR.TestUtil;
using Xunit;

namespace SpQR.Tensors.Tests;

public class MatrixKernelTests
{
    private static (byte[] bytes, float[] widened) MakeWeights(WeightType wt, int count, int seed, bool integers)
    {
        var f = integers ? TestData.Integers(count, seed) : TestData.Uniform(count, seed);
        switch (wt)
        {
            case WeightType.F32: return (System.Runtime.InteropServices.MemoryMarshal.AsBytes(f.AsSpan()).ToArray(), f);
            case WeightType.F16:
                {
                    var h = f.Select(ReferenceKernels.F32ToF16).ToArray();
                    return (System.Runtime.InteropServices.MemoryMarshal.AsBytes(h.AsSpan()).ToArray(), h.Select(ReferenceKernels.F16ToF32).ToArray());
                }
            default:
                {
                    var h = f.Select(ReferenceKernels.F32ToBF16).ToArray();
                    return (System.Runtime.InteropServices.MemoryMarshal.AsBytes(h.AsSpan()).ToArray(), h.Select(ReferenceKernels.BF16ToF32).ToArray());
                }
        }
    }

    [Property(MaxTest = 60)]
    public void Gemv_matches_reference(byte rowsRaw, ushort colsRaw, byte typeRaw, byte pathRaw, bool integers)
    {
        int rows = rowsRaw % 70, cols = colsRaw % 301;
        var wt = (WeightType)(typeRaw % 3);
        var path = (SimdPath)(pathRaw % 3);
        var (bytes, Wf) = MakeWeights(wt, rows * cols, rows * 1000 + cols, integers);
        var x = integers ? TestData.Integers(cols, 3) : TestData.Uniform(cols, 3);
        var e = new float[rows]; var a = new float[rows];
        ReferenceKernels.Gemv(Wf, x, e, rows, cols);
        CpuKernels.Gemv(bytes, wt, x, a, rows, cols, path);
        if (integers) { NumericAssert.Equal(e, a, $"gemv {wt} {rows}x{cols} {path} (integers: exact)"); return; }
        for (int r = 0; r < rows; r++)
        {
            double sumAbs = 0;
            for (int c = 0; c < cols; c++) sumAbs += Math.Abs((double)Wf[r * cols + c] * x[c]);
            Assert.True(Math.Abs(a[r] - e[r]) <= Tolerances.Reduction(cols, sumAbs), $"gemv {wt} {rows}x{cols} {path} row {r}: {a[r]} vs {e[r]}");
        }
    }

    [Property(MaxTest = 50)]
    public void Gemm_matches_reference(byte mRaw, byte nRaw, ushort kRaw, bool transA, bool transB, bool accumulate, byte pathRaw)
    {
        int M = mRaw % 40, N = nRaw % 70, K = kRaw % 600;
        var path = (SimdPath)(pathRaw % 3);
        int lda = (transA ? M : K) + 1, ldb = (transB ? K : N) + 2, ldc = N + 3; // padded leading dimensions
        var A = TestData.Uniform((transA ? K : M) * lda, 1); var B = TestData.Uniform((transB ? N : K) * ldb, 2);
        var C0 = TestData.Uniform(M * ldc, 3);
        var e = (float[])C0.Clone(); var a = (float[])C0.Clone();
        ReferenceKernels.Gemm(A, transA, lda, B, transB, ldb, e, ldc, M, N, K, accumulate);
        CpuKernels.Gemm(A, transA, lda, System.Runtime.InteropServices.MemoryMarshal.AsBytes(B.AsSpan()), WeightType.F32, transB, ldb, a, ldc, M, N, K, accumulate, path);
        for (int i = 0; i < M; i++)
            for (int j = 0; j < ldc; j++)
            {
                if (j >= N) { Assert.Equal(C0[i * ldc + j], a[i * ldc + j]); continue; } // padding untouched
                double sumAbs = accumulate ? Math.Abs(C0[i * ldc + j]) : 0;
                for (int k = 0; k < K; k++) sumAbs += Math.Abs((double)(transA ? A[k * lda + i] : A[i * lda + k]) * (transB ? B[j * ldb + k] : B[k * ldb + j]));
                Assert.True(Math.Abs(a[i * ldc + j] - e[i * ldc + j]) <= Tolerances.Reduction(K + 1, sumAbs),
                    $"gemm M={M} N={N} K={K} tA={transA} tB={transB} acc={accumulate} {path} at ({i},{j}): {a[i * ldc + j]} vs {e[i * ldc + j]}");
            }
    }

    [Theory]
    [InlineData(WeightType.F16)]
    [InlineData(WeightType.BF16)]
    public void MatMulTransposed_with_half_weights_matches_reference(WeightType wt)
    {
        int T = 13, outF = 37, inF = 300;
        var (bytes, Wf) = MakeWeights(wt, outF * inF, 9, false);
        var X = TestData.Uniform(T * inF, 4);
        var e = new float[T * outF]; var a = new float[T * outF];
        ReferenceKernels.Gemm(X, false, inF, Wf, true, inF, e, outF, T, outF, inF, false);
        CpuKernels.MatMulTransposed(X, bytes, wt, a, T, outF, inF);
        NumericAssert.Close(e, a, 1e-5, 1e-5, $"X·Wᵀ {wt}");
    }

    [Fact]
    public void Results_do_not_depend_on_thread_count()
    {
        int rows = 700, cols = 1100, M = 150, N = 300, K = 700;
        var W = TestData.Uniform(rows * cols, 1); var x = TestData.Uniform(cols, 2);
        var A = TestData.Uniform(M * K, 3); var B = TestData.Uniform(K * N, 4);
        float[] RunGemv() { var y = new float[rows]; CpuKernels.Gemv(W, x, y, rows, cols); return y; }
        float[] RunGemm() { var c = new float[M * N]; CpuKernels.Gemm(A, false, K, B, false, N, c, N, M, N, K); return c; }
        int saved = CpuThreads.Count;
        try
        {
            CpuThreads.Count = 1; var g1 = RunGemv(); var m1 = RunGemm();
            CpuThreads.Count = 2; var g2 = RunGemv(); var m2 = RunGemm();
            CpuThreads.Count = 7; var g7 = RunGemv(); var m7 = RunGemm();
            NumericAssert.Equal(g1, g2, "gemv 1 vs 2 threads"); NumericAssert.Equal(g1, g7, "gemv 1 vs 7 threads");
            NumericAssert.Equal(m1, m2, "gemm 1 vs 2 threads"); NumericAssert.Equal(m1, m7, "gemm 1 vs 7 threads");
        }
        finally { CpuThreads.Count = saved; }
    }

    [Fact]
    public void Gemv_over_tensor_views_of_every_half_type()
    {
        using var w = Tensor.Zeros(DType.BF16, 5, 24);
        var span = w.AsSpan<ushort>();
        for (int i = 0; i < span.Length; i++) span[i] = ReferenceKernels.F32ToBF16(i % 7 - 3);
        var x = TestData.Integers(24, 1);
        var y = new float[5];
        CpuKernels.Gemv(w, x, y);
        var wf = w.ToF32();
        var e = new float[5];
        ReferenceKernels.Gemv(wf.AsReadOnlySpan<float>(), x, e, 5, 24);
        NumericAssert.Equal(e, y);
        wf.Dispose();
        using var bad = Tensor.Zeros(DType.I32, 2, 2);
        Assert.Throws<NotSupportedException>(() => CpuKernels.Gemv(bad, new float[2], new float[2]));
    }
}

public class GemvF16PathTests
{
    [Fact]
    public void F16_gemv_is_exact_on_both_sides_of_the_prescale_bound()
    {
        // |x| < 2^14 takes the pre-scaled path, larger |x| the plain conversion; both must equal the reference
        int rows = 9, cols = 77;
        var w = TestData.Integers(rows * cols, 5).Select(SpQR.Tensors.Cpu.Reference.ReferenceKernels.F32ToF16).ToArray();
        var wf = w.Select(SpQR.Tensors.Cpu.Reference.ReferenceKernels.F16ToF32).ToArray();
        foreach (float scale in new[] { 1f, 1024f, 16384f, 1048576f }) // powers of two keep integer sums exact
            foreach (var path in Simd.All)
            {
                var x = TestData.Integers(cols, 6).Select(v => v * scale).ToArray();
                var e = new float[rows]; var a = new float[rows];
                SpQR.Tensors.Cpu.Reference.ReferenceKernels.Gemv(wf, x, e, rows, cols);
                CpuKernels.Gemv(System.Runtime.InteropServices.MemoryMarshal.AsBytes(w.AsSpan()), WeightType.F16, x, a, rows, cols, path);
                NumericAssert.Equal(e, a, $"F16 GEMV, |x| up to {4 * scale}, {path}");
            }
    }
}

public class AttentionTests
{
    [Theory]
    [InlineData(1, 0, 4, 2, 16)]   // decode step at position 0
    [InlineData(1, 9, 4, 4, 8)]    // decode, MHA
    [InlineData(3, 5, 6, 1, 16)]   // small batch, multi-query
    [InlineData(17, 0, 4, 2, 16)]  // prefill through GEMMs, GQA
    [InlineData(9, 7, 8, 4, 8)]    // chunked prefill after a cached prefix
    [InlineData(33, 0, 2, 2, 64)]
    public void Causal_attention_matches_reference(int T, int pos0, int heads, int kvHeads, int hd)
    {
        int ctx = pos0 + T;
        var q = TestData.Uniform(T * heads * hd, 1, -2, 2);
        var k = TestData.Uniform(ctx * kvHeads * hd, 2, -2, 2);
        var v = TestData.Uniform(ctx * kvHeads * hd, 3);
        var e = new float[q.Length];
        SpQR.Tensors.Cpu.Reference.ReferenceAttention.CausalAttention(q, k, v, e, T, pos0, heads, kvHeads, hd);
        foreach (var path in Simd.All)
        {
            var a = new float[q.Length];
            CpuKernels.CausalAttention(q, k, v, a, T, pos0, heads, kvHeads, hd, new float[heads * ctx], path);
            NumericAssert.Close(e, a, 1e-5, 1e-6, $"attention T={T} pos0={pos0} {heads}/{kvHeads} hd={hd} {path}");
        }
    }
}
