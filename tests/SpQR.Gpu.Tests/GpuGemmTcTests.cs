// The tensor-core F16 product (GpuKernels.GemmTc.cs) against the CPU's F16 GEMV, token row by token row. In CI it runs
// on ILGPU's CPU accelerator emulating a 32-lane NVIDIA device (mma.sync replaced by its definition through shuffles), so
// the fragment layout, the natural-k pairing of A and B, the hi / lo split with its per-row scale, the tile tails and the
// K splits are checked without a GPU; SPQR_DEVICE=gpu runs the same bodies on the card.
using ILGPU;
using ILGPU.Runtime;
using SpQR.Tensors.Cpu;
using SpQR.TestUtil;
using Xunit;

namespace SpQR.Gpu.Tests;

public class GpuGemmTcTests(WarpOf32Fixture fx) : IClassFixture<WarpOf32Fixture>
{
    // activations whose token rows differ by up to 10^10 in scale (the per-row 2^E), with exact zeros and one all-zero row
    private static float[] Activations(int M, int K, int seed)
    {
        var a = TestData.Uniform(M * K, seed, -2, 2);
        for (int m = 0; m < M; m++)
        {
            float scale = (m % 4) switch { 0 => 1f, 1 => 3e-6f, 2 => 2.5e4f, _ => 0.01f };
            for (int k = 0; k < K; k++) a[m * K + k] = k % 29 == 3 ? 0f : a[m * K + k] * scale;
        }
        if (M > 2) Array.Clear(a, 2 * K, K);
        return a;
    }

    [Theory]
    [InlineData(1, 8, 8, 0)] [InlineData(5, 130, 72, 2)] [InlineData(70, 136, 256, 4)]
    public void F16_gemm_on_the_tensor_cores_matches_the_cpu_row_by_row(int M, int N, int K, int splits)
    {
        var acc = fx.Backend.Accelerator;
        var k = fx.Backend.Kernels;
        Assert.True(k.GemmHalfUsesTensorCores(K, bf16: false), "the tensor-core product should take K % 8 == 0 on a 32-lane device");
        var a = Activations(M, K, M + N + K);
        var h = new ushort[N * K];
        CpuKernels.F32ToF16(TestData.Uniform(N * K, K + 1, -1, 1), h);
        var e = new float[M * N];
        for (int m = 0; m < M; m++) CpuKernels.GemvF16(h, a.AsSpan(m * K, K), e.AsSpan(m * N, N), N, K);
        using var da = acc.Allocate1D(a); using var dh = acc.Allocate1D(h); using var dc = acc.Allocate1D<float>(M * N);
        try
        {
            // K unsplit (GemmSplits 1), then split (a partial C per split, summed in order)
            foreach (int S in splits > 1 ? new[] { 1, splits } : [1])
            {
                k.GemmSplits = S;
                dc.MemSetToZero();
                k.GemmNTHalf(da.View, dh.View, dc.View, M, N, K, bf16: false);
                acc.Synchronize();
                var c = dc.GetAsArray1D();
                for (int m = 0; m < M; m++)
                    NumericAssert.Nmse(e.AsSpan(m * N, N), c.AsSpan(m * N, N), Tolerances.GpuNmse, $"F16 tensor-core GEMM {M}x{N}x{K}, splits {S}, token {m}");
            }
        }
        finally { k.GemmSplits = 0; }
    }

    // the SpQR batched product as Ŵ dequantized to fp16, then the tensor-core product (GpuKernels.GemmTc.cs), plus the
    // outlier pass: widths 2-5 (w5: codes across bytes), fp16-step statistics, ragged columns, 3% outliers
    [Theory]
    [InlineData(40, 200, 3, 5, false)] [InlineData(130, 256, 2, 1, false)] [InlineData(33, 128, 4, 70, false)] [InlineData(24, 96, 5, 3, false)]
    [InlineData(48, 160, 3, 9, true)]
    public void Spqr_batched_product_over_fp16_w_hat_matches_the_cpu_row_by_row(int rows, int cols, int wbits, int T, bool fp16)
    {
        var acc = fx.Backend.Accelerator;
        var k = fx.Backend.Kernels;
        var layer = SpQR.Quant.Formats.SpqrLayer.Random(rows, cols, wbits, 0.03, rows + cols + wbits, fp16Arithmetic: fp16);
        var X = Activations(T, cols, rows + T);
        var e = new float[T * rows];
        SpQR.Quant.Decode.SpqrMatVec.MatMul(layer, X, e, T);
        using var g = new GpuSpqrLayer(acc, layer);
        Assert.True(k.SpqrMatMulUsesTensorCores(g), "the dequantized tensor-core product should take this layer");
        using var dx = acc.Allocate1D(X); using var ds = acc.Allocate1D<float>(GpuKernels.SpqrMatMulScratch(g, T)); using var dy = acc.Allocate1D<float>(T * rows);
        k.SpqrMatMul(g, dx.View, T, dy.View, ds.View);
        acc.Synchronize();
        var y = dy.GetAsArray1D();
        for (int m = 0; m < T; m++)
            NumericAssert.Nmse(e.AsSpan(m * rows, rows), y.AsSpan(m * rows, rows), Tolerances.GpuNmse, $"SpQR {rows}x{cols} w{wbits} fp16-step {fp16} over fp16 Ŵ, token {m} of {T}");
        k.SpqrGemmDequantTc = false;
        try { Assert.False(k.SpqrMatMulUsesTensorCores(g)); }
        finally { k.SpqrGemmDequantTc = true; }
    }

    // Ŵ as fp16 (GpuKernels.SpqrDequantizeHalf), the packed pass with the outliers folded in and the byte-wise pass without
    // them, against the CPU's decode of every code rounded to fp16 (outlier positions: the stored fp16 value). Both round
    // the same float32 value to nearest even, so the bits agree; on a card ptxas may contract s·(q − z) + delta into one
    // FMA, so there an outlier position may differ by one fp16 step.
    [Theory]
    [InlineData(40, 200, 3, false)] [InlineData(33, 128, 2, false)] [InlineData(48, 256, 4, false)] [InlineData(24, 96, 5, false)]
    [InlineData(48, 160, 3, true)] [InlineData(17, 48, 4, true)]
    public void Spqr_w_hat_in_fp16_matches_the_cpu_decode_bit_for_bit(int rows, int cols, int wbits, bool fp16)
    {
        var acc = fx.Backend.Accelerator;
        var k = fx.Backend.Kernels;
        var l = SpQR.Quant.Formats.SpqrLayer.Random(rows, cols, wbits, 0.05, rows * cols + wbits, fp16Arithmetic: fp16);
        int G = l.Groups, padded = 16 * G;
        var baseBits = new ushort[rows * padded];
        var fullBits = new ushort[rows * padded];
        var outlier = new bool[rows * padded];
        for (int r = 0; r < rows; r++)
        {
            for (int c = 0; c < cols; c++)
            {
                var (s, z) = l.Stat(r, c / 16);
                baseBits[r * padded + c] = fullBits[r * padded + c] = BitConverter.HalfToUInt16Bits((System.Half)l.Decode(l.Code(r, c), s, z));
            }
            for (int i = l.OutlierRowOffsets[r]; i < l.OutlierRowOffsets[r + 1]; i++)
            {
                fullBits[r * padded + l.OutlierCols[i]] = BitConverter.HalfToUInt16Bits(l.OutlierValues[i]);
                outlier[r * padded + l.OutlierCols[i]] = true;
            }
        }
        Assert.Contains(true, outlier);
        using var g = new GpuSpqrLayer(acc, l);
        using var wh = acc.Allocate1D<ushort>(rows * padded);
        bool cuda = acc.AcceleratorType == AcceleratorType.Cuda;
        try
        {
            foreach (bool packed in new[] { true, false })
            {
                k.SpqrDequantPacked = packed;
                wh.MemSet(0xFF);
                bool folded = k.SpqrDequantizeHalf(g, wh.View);
                Assert.Equal(packed && wbits <= 4, folded);
                var got = wh.GetAsArray1D();
                var want = folded ? fullBits : baseBits;
                for (int i = 0; i < got.Length; i++)
                {
                    if (got[i] == want[i]) continue;
                    bool oneStep = cuda && outlier[i] && Math.Abs(got[i] - want[i]) == 1;
                    Assert.True(oneStep, $"w{wbits} {rows}x{cols} fp16-step {fp16}, packed {packed}: Ŵ[{i / padded}, {i % padded}] = 0x{got[i]:X4}, expected 0x{want[i]:X4}");
                }
            }
        }
        finally { k.SpqrDequantPacked = true; }
    }

    [Fact]
    public void F16_gemm_with_rows_not_whole_16_byte_chunks_or_bf16_takes_the_float32_gemm()
    {
        var k = fx.Backend.Kernels;
        Assert.True(k.GemmHalfUsesTensorCores(64, bf16: false));
        Assert.False(k.GemmHalfUsesTensorCores(12, bf16: false));
        Assert.False(k.GemmHalfUsesTensorCores(64, bf16: true));
        k.GemmTensorCores = false;
        try { Assert.False(k.GemmHalfUsesTensorCores(64, bf16: false)); }
        finally { k.GemmTensorCores = true; }
    }
}
