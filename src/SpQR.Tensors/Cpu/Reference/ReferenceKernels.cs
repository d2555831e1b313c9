// Scalar reference twins of every CPU kernel: plain loops, double accumulation, no threads, no SIMD.
// The fast kernels in Cpu/ are tested against these. Never delete them; keep them obviously correct, not fast.
namespace SpQR.Tensors.Cpu.Reference;

public static class ReferenceKernels
{
    public static float F16ToF32(ushort h) => (float)BitConverter.UInt16BitsToHalf(h);
    public static float BF16ToF32(ushort h) => BitConverter.UInt32BitsToSingle((uint)h << 16);
    public static ushort F32ToF16(float f) => BitConverter.HalfToUInt16Bits((Half)f);
    public static ushort F32ToBF16(float f) => BFloat16Bits.FromSingle(f).Bits;

    // x (n,) . y (n,)
    public static double Dot(ReadOnlySpan<float> x, ReadOnlySpan<float> y)
    {
        double s = 0;
        for (int i = 0; i < x.Length; i++) s += (double)x[i] * y[i];
        return s;
    }

    // y += a x
    public static void Axpy(float a, ReadOnlySpan<float> x, Span<float> y)
    {
        for (int i = 0; i < x.Length; i++) y[i] = (float)((double)a * x[i] + y[i]);
    }

    // W (rows, cols) @ x (cols,) -> y (rows,); W given as float32 (callers widen F16/BF16 with the functions above)
    public static void Gemv(ReadOnlySpan<float> W, ReadOnlySpan<float> x, Span<float> y, int rows, int cols)
    {
        for (int r = 0; r < rows; r++)
        {
            double s = 0;
            for (int c = 0; c < cols; c++) s += (double)W[r * cols + c] * x[c];
            y[r] = (float)s;
        }
    }

    // C (M,N) [+]= op(A) (M,K) · op(B) (K,N)
    public static void Gemm(ReadOnlySpan<float> A, bool transA, int lda, ReadOnlySpan<float> B, bool transB, int ldb,
                            Span<float> C, int ldc, int M, int N, int K, bool accumulate)
    {
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++)
            {
                double s = accumulate ? C[i * ldc + j] : 0;
                for (int k = 0; k < K; k++)
                    s += (double)(transA ? A[k * lda + i] : A[i * lda + k]) * (transB ? B[j * ldb + k] : B[k * ldb + j]);
                C[i * ldc + j] = (float)s;
            }
    }

    public static void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> w, float eps, Span<float> dst)
    {
        int n = x.Length;
        if (n == 0) return;
        double ss = 0;
        for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
        double inv = 1.0 / Math.Sqrt(ss / n + eps);
        for (int i = 0; i < n; i++) dst[i] = (float)(w[i] * (x[i] * inv));
    }

    public static void LayerNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> b, float eps, Span<float> dst)
    {
        int n = x.Length;
        if (n == 0) return;
        double mean = 0;
        for (int i = 0; i < n; i++) mean += x[i];
        mean /= n;
        double var = 0;
        for (int i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
        var /= n;
        double inv = 1.0 / Math.Sqrt(var + eps);
        for (int i = 0; i < n; i++) dst[i] = (float)((x[i] - mean) * inv * w[i] + (b.Length == 0 ? 0 : b[i]));
    }

    public static void Softmax(ReadOnlySpan<float> x, Span<float> dst)
    {
        if (x.Length == 0) return;
        double max = double.NegativeInfinity;
        for (int i = 0; i < x.Length; i++) max = Math.Max(max, x[i]);
        double sum = 0;
        var e = new double[x.Length];
        for (int i = 0; i < x.Length; i++) { e[i] = Math.Exp(x[i] - max); sum += e[i]; }
        for (int i = 0; i < x.Length; i++) dst[i] = (float)(e[i] / sum);
    }

    public static double Silu(double x) => x / (1 + Math.Exp(-x));

    public static void Silu(ReadOnlySpan<float> x, Span<float> dst) { for (int i = 0; i < x.Length; i++) dst[i] = (float)Silu(x[i]); }

    public static void SwiGlu(ReadOnlySpan<float> gate, ReadOnlySpan<float> up, Span<float> dst) { for (int i = 0; i < gate.Length; i++) dst[i] = (float)(Silu(gate[i]) * up[i]); }

    public static void Gelu(ReadOnlySpan<float> x, Span<float> dst, GeluForm form)
    {
        for (int i = 0; i < x.Length; i++)
        {
            double v = x[i];
            dst[i] = (float)(form == GeluForm.Erf
                ? 0.5 * v * (1 + Erf(v / Math.Sqrt(2)))
                : 0.5 * v * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v))));
        }
    }

    /// <summary>erf in double: Maclaurin series for |x| &lt; 3, continued fraction for erfc beyond (relative error ~1e-15).</summary>
    public static double Erf(double x)
    {
        if (double.IsNaN(x)) return double.NaN;
        double z = Math.Abs(x);
        double r;
        if (z < 3)
        {
            // erf z = 2/√π Σ (-1)^n z^(2n+1) / (n! (2n+1))
            double term = z, sum = z, z2 = z * z;
            for (int n = 1; n < 200; n++)
            {
                term *= -z2 / n;
                double add = term / (2 * n + 1);
                sum += add;
                if (Math.Abs(add) < 1e-17 * Math.Abs(sum)) break;
            }
            r = 2 / Math.Sqrt(Math.PI) * sum;
        }
        else
        {
            // erfc z = e^{-z²}/√π · 1/(z + 1/2/(z + 1/(z + 3/2/(z + 2/(z + ...))))), evaluated bottom-up
            double f = z;
            for (int k = 60; k >= 1; k--) f = z + (k / 2.0) / f;
            r = 1 - Math.Exp(-z * z) / Math.Sqrt(Math.PI) / f;
        }
        return x < 0 ? -r : r;
    }

    public static void Rope(Span<float> x, int nHeads, int headDim, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin, RopeLayout layout)
    {
        int half = cos.Length;
        for (int h = 0; h < nHeads; h++)
            for (int i = 0; i < half; i++)
            {
                int i0 = h * headDim + (layout == RopeLayout.HalfSplit ? i : 2 * i);
                int i1 = layout == RopeLayout.HalfSplit ? i0 + half : i0 + 1;
                double a = x[i0], b = x[i1];
                x[i0] = (float)(a * cos[i] - b * sin[i]);
                x[i1] = (float)(b * cos[i] + a * sin[i]);
            }
    }

    public static void Add(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> dst) { for (int i = 0; i < a.Length; i++) dst[i] = a[i] + b[i]; }
    public static void Mul(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> dst) { for (int i = 0; i < a.Length; i++) dst[i] = a[i] * b[i]; }
    public static void Scale(ReadOnlySpan<float> x, float s, Span<float> dst) { for (int i = 0; i < x.Length; i++) dst[i] = x[i] * s; }

    public static int Argmax(ReadOnlySpan<float> x)
    {
        int best = -1;
        for (int i = 0; i < x.Length; i++)
        {
            if (float.IsNaN(x[i])) return i;
            if (best < 0 || x[i] > x[best]) best = i;
        }
        return best;
    }
}

public static class ReferenceAttention
{
    // q (T, nHeads*hd) at positions pos0.., keys/values (pos0+T, nKv*hd) -> out (T, nHeads*hd); double throughout
    public static void CausalAttention(ReadOnlySpan<float> q, ReadOnlySpan<float> keys, ReadOnlySpan<float> values, Span<float> output,
                                       int T, int pos0, int nHeads, int nKvHeads, int headDim)
    {
        int qDim = nHeads * headDim, kvDim = nKvHeads * headDim, group = nHeads / nKvHeads;
        for (int t = 0; t < T; t++)
            for (int h = 0; h < nHeads; h++)
            {
                int n = pos0 + t + 1, kv = h / group * headDim;
                var s = new double[n];
                double max = double.NegativeInfinity;
                for (int j = 0; j < n; j++)
                {
                    double d = 0;
                    for (int i = 0; i < headDim; i++) d += (double)q[t * qDim + h * headDim + i] * keys[j * kvDim + kv + i];
                    s[j] = d / Math.Sqrt(headDim);
                    max = Math.Max(max, s[j]);
                }
                double sum = 0;
                for (int j = 0; j < n; j++) { s[j] = Math.Exp(s[j] - max); sum += s[j]; }
                for (int i = 0; i < headDim; i++)
                {
                    double o = 0;
                    for (int j = 0; j < n; j++) o += s[j] / sum * values[j * kvDim + kv + i];
                    output[t * qDim + h * headDim + i] = (float)o;
                }
            }
    }
}
