// GEMM C (M,N) [+]= op(A) (M,K) · op(B) (K,N), float32 accumulation, row-major with leading dimensions.
// Goto/BLIS structure: K is cut into KC-deep slices; per slice A and B are packed into MR-row and NR-column
// micro-panels (B may be F16/BF16 and is widened while packing, so prefill reads half-precision weights in place);
// a register-blocked 6x(2 vectors) micro-kernel does the FMAs. Tasks are fixed (MC x NC) tiles of C, each summed
// over K in the same order, so the result does not depend on the thread count. Serves prefill (X · Wᵀ) and the
// Hessian (Xᵀ · X). Scalar twin: Reference/ReferenceKernels.Gemm.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace SpQR.Tensors.Cpu;

public static partial class CpuKernels
{
    internal const int GemmMR = 6;      // rows of the micro-tile
    internal const int GemmKC = 512;    // depth of a packed slice (A micro-panel 12 KB; B micro-panel 32 KB with AVX2: L1)
    internal const int GemmMC = 96;     // rows of a task tile (A block 96 KB: L2)
    internal const int GemmNC = 256;    // columns of a task tile

    private static int GemmNR(SimdPath path) => path == SimdPath.V512 ? 32 : 16;

    // C (M,N) [+]= op(A) (M,K) · op(B) (K,N); op(X) = Xᵀ when trans; all float32
    public static void Gemm(ReadOnlySpan<float> A, bool transA, int lda, ReadOnlySpan<float> B, bool transB, int ldb,
                            Span<float> C, int ldc, int M, int N, int K, bool accumulate = false)
        => Gemm(A, transA, lda, MemoryMarshal.AsBytes(B), WeightType.F32, transB, ldb, C, ldc, M, N, K, accumulate, Simd.Best);

    // Y (T, out) [+]= X (T, in) · Wᵀ, W (out, in) row-major F32/F16/BF16 — the linear layer of a prefill
    public static void MatMulTransposed(ReadOnlySpan<float> X, ReadOnlySpan<byte> W, WeightType wt, Span<float> Y,
                                        int T, int outFeatures, int inFeatures, bool accumulate = false)
        => Gemm(X, false, inFeatures, W, wt, true, inFeatures, Y, outFeatures, T, outFeatures, inFeatures, accumulate, Simd.Best);

    internal static unsafe void Gemm(ReadOnlySpan<float> A, bool transA, int lda, ReadOnlySpan<byte> B, WeightType bt, bool transB, int ldb,
                                     Span<float> C, int ldc, int M, int N, int K, bool accumulate, SimdPath path, bool threaded = true)
    {
        if (M < 0 || N < 0 || K < 0) throw new ArgumentOutOfRangeException(nameof(M), $"negative GEMM size M={M} N={N} K={K}");
        int bsize = bt == WeightType.F32 ? 4 : 2;
        CheckOperand("A", A.Length, transA ? K : M, transA ? M : K, lda);
        CheckOperand("B", B.Length / bsize, transB ? N : K, transB ? K : N, ldb);
        CheckOperand("C", C.Length, M, N, ldc);
        if (M == 0 || N == 0) return;
        if (K == 0) { if (!accumulate) for (int i = 0; i < M; i++) C.Slice(i * ldc, N).Clear(); return; }

        int NR = GemmNR(path), MR = GemmMR;
        int mPanels = (M + MR - 1) / MR, nPanels = (N + NR - 1) / NR;
        int kcMax = Math.Min(K, GemmKC);
        long aFloats = (long)mPanels * MR * kcMax, bFloats = (long)nPanels * NR * kcMax;
        float* ap = (float*)NativeMemory.AlignedAlloc((nuint)(aFloats * 4), 64);
        float* bp = (float*)NativeMemory.AlignedAlloc((nuint)(bFloats * 4), 64);
        try
        {
            fixed (float* pa = A) fixed (byte* pb = B) fixed (float* pc = C)
            {
                nint aAddr = (nint)pa, bAddr = (nint)pb, cAddr = (nint)pc, apAddr = (nint)ap, bpAddr = (nint)bp;
                int mTiles = (M + GemmMC - 1) / GemmMC, nTiles = (N + GemmNC - 1) / GemmNC;
                bool serial = !threaded || (long)M * N * K < (1L << 18);
                for (int k0 = 0; k0 < K; k0 += GemmKC)
                {
                    int kc = Math.Min(GemmKC, K - k0);
                    bool acc = accumulate || k0 > 0;
                    // pack: A panels (MR x kc) and B panels (kc x NR), zero-padded at the edges
                    Action<int> packA = p => PackA((float*)aAddr, transA, lda, M, k0, kc, p, (float*)apAddr + (long)p * MR * kc);
                    Action<int> packB = p => PackB((byte*)bAddr, bt, transB, ldb, N, k0, kc, p, NR, (float*)bpAddr + (long)p * NR * kc);
                    Action<int> tile = t =>
                    {
                        int mt = t / nTiles, nt = t % nTiles;
                        int i0 = mt * GemmMC, i1 = Math.Min(M, i0 + GemmMC), j0 = nt * GemmNC, j1 = Math.Min(N, j0 + GemmNC);
                        for (int j = j0; j < j1; j += NR)
                        {
                            float* bpan = (float*)bpAddr + (long)(j / NR) * NR * kc;
                            for (int i = i0; i < i1; i += MR)
                            {
                                float* apan = (float*)apAddr + (long)(i / MR) * MR * kc;
                                MicroKernel(apan, bpan, kc, (float*)cAddr + (long)i * ldc + j, ldc, Math.Min(MR, M - i), Math.Min(NR, N - j), acc, path);
                            }
                        }
                    };
                    if (serial)
                    {
                        for (int p = 0; p < mPanels; p++) packA(p);
                        for (int p = 0; p < nPanels; p++) packB(p);
                        for (int t = 0; t < mTiles * nTiles; t++) tile(t);
                    }
                    else
                    {
                        CpuThreads.For(mPanels, packA);
                        CpuThreads.For(nPanels, packB);
                        CpuThreads.For(mTiles * nTiles, tile);
                    }
                }
            }
        }
        finally
        {
            NativeMemory.AlignedFree(ap);
            NativeMemory.AlignedFree(bp);
        }
    }

    private static void CheckOperand(string name, long length, int rows, int cols, int ld)
    {
        if (ld < cols && rows > 0) throw new ArgumentException($"GEMM {name}: leading dimension {ld} is smaller than its {cols} columns");
        long need = rows == 0 ? 0 : (long)(rows - 1) * ld + cols;
        if (length < need) throw new ArgumentException($"GEMM {name}: span holds {length} elements, a [{rows}, {cols}] operand with ld {ld} needs {need}");
    }

    // panel p of op(A): rows [p*MR, p*MR+MR) x cols [k0, k0+kc) -> dst[k*MR + r]
    private static unsafe void PackA(float* A, bool transA, int lda, int M, int k0, int kc, int p, float* dst)
    {
        int MR = GemmMR, i0 = p * MR, rows = Math.Min(MR, M - i0);
        if (!transA)
        {
            for (int r = 0; r < MR; r++)
            {
                if (r < rows) { float* src = A + (long)(i0 + r) * lda + k0; for (int k = 0; k < kc; k++) dst[k * MR + r] = src[k]; }
                else for (int k = 0; k < kc; k++) dst[k * MR + r] = 0;
            }
        }
        else
        {
            for (int k = 0; k < kc; k++)
            {
                float* src = A + (long)(k0 + k) * lda + i0;
                int r = 0;
                for (; r < rows; r++) dst[k * MR + r] = src[r];
                for (; r < MR; r++) dst[k * MR + r] = 0;
            }
        }
    }

    // panel p of op(B): rows [k0, k0+kc) x cols [p*NR, p*NR+NR) -> dst[k*NR + c], widened to float
    private static unsafe void PackB(byte* B, WeightType bt, bool transB, int ldb, int N, int k0, int kc, int p, int NR, float* dst)
    {
        int j0 = p * NR, cols = Math.Min(NR, N - j0);
        if (!transB)
        {
            for (int k = 0; k < kc; k++)
            {
                long row = (long)(k0 + k) * ldb + j0;
                float* d = dst + (long)k * NR;
                if (bt == WeightType.F32) new ReadOnlySpan<float>((float*)B + row, cols).CopyTo(new Span<float>(d, cols));
                else for (int c = 0; c < cols; c++) d[c] = LoadScalar(B, bt, row + c);
                for (int c = cols; c < NR; c++) d[c] = 0;
            }
        }
        else
        {
            // B stored (N, K): column j of op(B) is row j of B, contiguous in k — widen a row, scatter with stride NR
            float* tmp = stackalloc float[GemmKC];
            for (int c = 0; c < NR; c++)
            {
                if (c < cols)
                {
                    long row = (long)(j0 + c) * ldb + k0;
                    if (bt == WeightType.F32) for (int k = 0; k < kc; k++) dst[(long)k * NR + c] = ((float*)B)[row + k];
                    else
                    {
                        var src = new ReadOnlySpan<ushort>((ushort*)B + row, kc);
                        if (bt == WeightType.F16) F16ToF32(src, new Span<float>(tmp, kc)); else BF16ToF32(src, new Span<float>(tmp, kc));
                        for (int k = 0; k < kc; k++) dst[(long)k * NR + c] = tmp[k];
                    }
                }
                else for (int k = 0; k < kc; k++) dst[(long)k * NR + c] = 0;
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe float LoadScalar(byte* B, WeightType bt, long i) => bt switch
    {
        WeightType.F32 => ((float*)B)[i],
        WeightType.F16 => F16ToF32(((ushort*)B)[i]),
        _ => BF16ToF32(((ushort*)B)[i]),
    };

    // C tile (mr <= 6, nr <= NR) [+]= Ap (kc x 6) · Bp (kc x NR)
    private static unsafe void MicroKernel(float* ap, float* bp, int kc, float* c, int ldc, int mr, int nr, bool acc, SimdPath path)
    {
        int NR = GemmNR(path);
        if (mr == GemmMR && nr == NR)
        {
            if (path == SimdPath.V512) Kernel6x32V512(ap, bp, kc, c, ldc, acc);
            else if (path == SimdPath.V256) Kernel6x16V256(ap, bp, kc, c, ldc, acc);
            else KernelScalar(ap, bp, kc, c, ldc, GemmMR, NR, NR, acc);
            return;
        }
        // edge tile: compute the full micro-tile into a buffer, then add/store the valid part
        float* tmp = stackalloc float[GemmMR * 32];
        if (path == SimdPath.V512) Kernel6x32V512(ap, bp, kc, tmp, NR, false);
        else if (path == SimdPath.V256) Kernel6x16V256(ap, bp, kc, tmp, NR, false);
        else KernelScalar(ap, bp, kc, tmp, NR, GemmMR, NR, NR, false);
        for (int r = 0; r < mr; r++)
            for (int j = 0; j < nr; j++)
                c[(long)r * ldc + j] = acc ? c[(long)r * ldc + j] + tmp[r * NR + j] : tmp[r * NR + j];
    }

    private static unsafe void KernelScalar(float* ap, float* bp, int kc, float* c, int ldc, int mr, int nr, int NR, bool acc)
    {
        float* t = stackalloc float[GemmMR * 32];
        new Span<float>(t, GemmMR * 32).Clear();
        for (int k = 0; k < kc; k++)
            for (int r = 0; r < GemmMR; r++)
            {
                float a = ap[k * GemmMR + r];
                for (int j = 0; j < NR; j++) t[r * NR + j] = MathF.FusedMultiplyAdd(a, bp[k * NR + j], t[r * NR + j]);
            }
        for (int r = 0; r < mr; r++)
            for (int j = 0; j < nr; j++)
                c[(long)r * ldc + j] = acc ? c[(long)r * ldc + j] + t[r * NR + j] : t[r * NR + j];
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Kernel6x16V256(float* ap, float* bp, int kc, float* c, int ldc, bool acc)
    {
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector256<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        float* end = ap + 6L * kc;
        // two k steps per iteration: fewer loop instructions between the 24 FMAs
        for (; ap + 12 <= end; ap += 12, bp += 32)
        {
            var b0 = Vector256.Load(bp);
            var b1 = Vector256.Load(bp + 8);
            var a = Vector256.Create(ap[0]); c00 = Vector256.FusedMultiplyAdd(a, b0, c00); c01 = Vector256.FusedMultiplyAdd(a, b1, c01);
            a = Vector256.Create(ap[1]); c10 = Vector256.FusedMultiplyAdd(a, b0, c10); c11 = Vector256.FusedMultiplyAdd(a, b1, c11);
            a = Vector256.Create(ap[2]); c20 = Vector256.FusedMultiplyAdd(a, b0, c20); c21 = Vector256.FusedMultiplyAdd(a, b1, c21);
            a = Vector256.Create(ap[3]); c30 = Vector256.FusedMultiplyAdd(a, b0, c30); c31 = Vector256.FusedMultiplyAdd(a, b1, c31);
            a = Vector256.Create(ap[4]); c40 = Vector256.FusedMultiplyAdd(a, b0, c40); c41 = Vector256.FusedMultiplyAdd(a, b1, c41);
            a = Vector256.Create(ap[5]); c50 = Vector256.FusedMultiplyAdd(a, b0, c50); c51 = Vector256.FusedMultiplyAdd(a, b1, c51);
            b0 = Vector256.Load(bp + 16);
            b1 = Vector256.Load(bp + 24);
            a = Vector256.Create(ap[6]); c00 = Vector256.FusedMultiplyAdd(a, b0, c00); c01 = Vector256.FusedMultiplyAdd(a, b1, c01);
            a = Vector256.Create(ap[7]); c10 = Vector256.FusedMultiplyAdd(a, b0, c10); c11 = Vector256.FusedMultiplyAdd(a, b1, c11);
            a = Vector256.Create(ap[8]); c20 = Vector256.FusedMultiplyAdd(a, b0, c20); c21 = Vector256.FusedMultiplyAdd(a, b1, c21);
            a = Vector256.Create(ap[9]); c30 = Vector256.FusedMultiplyAdd(a, b0, c30); c31 = Vector256.FusedMultiplyAdd(a, b1, c31);
            a = Vector256.Create(ap[10]); c40 = Vector256.FusedMultiplyAdd(a, b0, c40); c41 = Vector256.FusedMultiplyAdd(a, b1, c41);
            a = Vector256.Create(ap[11]); c50 = Vector256.FusedMultiplyAdd(a, b0, c50); c51 = Vector256.FusedMultiplyAdd(a, b1, c51);
        }
        for (; ap < end; ap += 6, bp += 16)
        {
            var b0 = Vector256.Load(bp);
            var b1 = Vector256.Load(bp + 8);
            var a = Vector256.Create(ap[0]); c00 = Vector256.FusedMultiplyAdd(a, b0, c00); c01 = Vector256.FusedMultiplyAdd(a, b1, c01);
            a = Vector256.Create(ap[1]); c10 = Vector256.FusedMultiplyAdd(a, b0, c10); c11 = Vector256.FusedMultiplyAdd(a, b1, c11);
            a = Vector256.Create(ap[2]); c20 = Vector256.FusedMultiplyAdd(a, b0, c20); c21 = Vector256.FusedMultiplyAdd(a, b1, c21);
            a = Vector256.Create(ap[3]); c30 = Vector256.FusedMultiplyAdd(a, b0, c30); c31 = Vector256.FusedMultiplyAdd(a, b1, c31);
            a = Vector256.Create(ap[4]); c40 = Vector256.FusedMultiplyAdd(a, b0, c40); c41 = Vector256.FusedMultiplyAdd(a, b1, c41);
            a = Vector256.Create(ap[5]); c50 = Vector256.FusedMultiplyAdd(a, b0, c50); c51 = Vector256.FusedMultiplyAdd(a, b1, c51);
        }
        Store2(c, c00, c01, acc); Store2(c + ldc, c10, c11, acc); Store2(c + 2L * ldc, c20, c21, acc);
        Store2(c + 3L * ldc, c30, c31, acc); Store2(c + 4L * ldc, c40, c41, acc); Store2(c + 5L * ldc, c50, c51, acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Store2(float* c, Vector256<float> v0, Vector256<float> v1, bool acc)
    {
        if (acc) { v0 += Vector256.Load(c); v1 += Vector256.Load(c + 8); }
        v0.Store(c); v1.Store(c + 8);
    }

    private static unsafe void Kernel6x32V512(float* ap, float* bp, int kc, float* c, int ldc, bool acc)
    {
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector512<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int k = 0; k < kc; k++, ap += 6, bp += 32)
        {
            var b0 = Vector512.Load(bp);
            var b1 = Vector512.Load(bp + 16);
            var a = Vector512.Create(ap[0]); c00 = Vector512.FusedMultiplyAdd(a, b0, c00); c01 = Vector512.FusedMultiplyAdd(a, b1, c01);
            a = Vector512.Create(ap[1]); c10 = Vector512.FusedMultiplyAdd(a, b0, c10); c11 = Vector512.FusedMultiplyAdd(a, b1, c11);
            a = Vector512.Create(ap[2]); c20 = Vector512.FusedMultiplyAdd(a, b0, c20); c21 = Vector512.FusedMultiplyAdd(a, b1, c21);
            a = Vector512.Create(ap[3]); c30 = Vector512.FusedMultiplyAdd(a, b0, c30); c31 = Vector512.FusedMultiplyAdd(a, b1, c31);
            a = Vector512.Create(ap[4]); c40 = Vector512.FusedMultiplyAdd(a, b0, c40); c41 = Vector512.FusedMultiplyAdd(a, b1, c41);
            a = Vector512.Create(ap[5]); c50 = Vector512.FusedMultiplyAdd(a, b0, c50); c51 = Vector512.FusedMultiplyAdd(a, b1, c51);
        }
        Store2(c, c00, c01, acc); Store2(c + ldc, c10, c11, acc); Store2(c + 2L * ldc, c20, c21, acc);
        Store2(c + 3L * ldc, c30, c31, acc); Store2(c + 4L * ldc, c40, c41, acc); Store2(c + 5L * ldc, c50, c51, acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Store2(float* c, Vector512<float> v0, Vector512<float> v1, bool acc)
    {
        if (acc) { v0 += Vector512.Load(c); v1 += Vector512.Load(c + 16); }
        v0.Store(c); v1.Store(c + 16);
    }
}
