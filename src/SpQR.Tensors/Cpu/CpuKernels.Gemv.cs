// GEMV y = W·x with W row-major [rows, cols] in F32, F16 or BF16 (converted on the fly, never materialised).
// Memory-bound: each weight byte is read once; four rows share every load of x. Threaded over fixed blocks of
// rows, so the result does not depend on the thread count. Scalar twin: Reference/ReferenceKernels.Gemv.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace SpQR.Tensors.Cpu;

public enum WeightType { F32, F16, BF16 }

public static partial class CpuKernels
{
    private const int GemvRowBlock = 64;          // rows per parallel task
    private const long GemvSerialBelow = 1 << 16; // elements; smaller matrices are not worth a thread hop

    // W (rows, cols) F32 @ x (cols,) -> y (rows,)
    public static void Gemv(ReadOnlySpan<float> W, ReadOnlySpan<float> x, Span<float> y, int rows, int cols)
        => Gemv(System.Runtime.InteropServices.MemoryMarshal.AsBytes(W), WeightType.F32, x, y, rows, cols, Simd.Best);

    // W (rows, cols) F16 bits @ x (cols,) -> y (rows,); W must be finite (loaders check with FindNonFinite)
    public static void GemvF16(ReadOnlySpan<ushort> W, ReadOnlySpan<float> x, Span<float> y, int rows, int cols)
        => Gemv(System.Runtime.InteropServices.MemoryMarshal.AsBytes(W), WeightType.F16, x, y, rows, cols, Simd.Best);

    // W (rows, cols) BF16 bits @ x (cols,) -> y (rows,)
    public static void GemvBF16(ReadOnlySpan<ushort> W, ReadOnlySpan<float> x, Span<float> y, int rows, int cols)
        => Gemv(System.Runtime.InteropServices.MemoryMarshal.AsBytes(W), WeightType.BF16, x, y, rows, cols, Simd.Best);

    /// <summary>y = W·x for a weight tensor of dtype F32, F16 or BF16 with shape [rows, cols].</summary>
    public static void Gemv(Tensor W, ReadOnlySpan<float> x, Span<float> y)
    {
        if (W.Rank != 2) throw new ArgumentException($"GEMV needs a matrix, got {W.Shape} for {W.Name}");
        var wt = W.DType switch
        {
            DType.F32 => WeightType.F32, DType.F16 => WeightType.F16, DType.BF16 => WeightType.BF16,
            _ => throw new NotSupportedException($"GEMV over {W.DType} weights ({W.Name}) is not supported; expected F32, F16 or BF16"),
        };
        Gemv(W.Bytes, wt, x, y, checked((int)W.Shape[0]), checked((int)W.Shape[1]), Simd.Best);
    }

    internal static unsafe void Gemv(ReadOnlySpan<byte> W, WeightType wt, ReadOnlySpan<float> x, Span<float> y, int rows, int cols, SimdPath path)
    {
        int esize = wt == WeightType.F32 ? 4 : 2;
        if (rows < 0 || cols < 0) throw new ArgumentOutOfRangeException(nameof(rows));
        if (W.Length < (long)rows * cols * esize) throw new ArgumentException($"W holds {W.Length} bytes, [{rows}, {cols}] {wt} needs {(long)rows * cols * esize}");
        if (x.Length < cols) throw new ArgumentException($"x has {x.Length} elements, expected {cols}");
        if (y.Length < rows) throw new ArgumentException($"y has {y.Length} elements, expected {rows}");
        // F16: fold the 2^112 rebias of the weight conversion into x once per call (x' = x·2^112, exact while
        // |x| < 2^15), so the inner loop converts with widen/shift/mask only; the products, hence y, are bit-identical.
        float[]? scaled = null;
        int kind = wt == WeightType.F32 ? 0 : wt == WeightType.BF16 ? 1 : 2;
        if (wt == WeightType.F16 && cols > 0 && MaxAbs(x[..cols]) < 16384f)
        {
            scaled = System.Buffers.ArrayPool<float>.Shared.Rent(cols);
            Scale(x[..cols], F16Scale, scaled.AsSpan(0, cols), path);
            kind = 3;
        }
        try
        {
            fixed (byte* pw = W) fixed (float* px = scaled is null ? x : scaled) fixed (float* py = y)
            {
                byte* w = pw; float* xp = px; float* yp = py;
                int blocks = (rows + GemvRowBlock - 1) / GemvRowBlock;
                if ((long)rows * cols < GemvSerialBelow) { for (int b = 0; b < blocks; b++) GemvBlock(w, kind, xp, yp, rows, cols, b, path); return; }
                nint wAddr = (nint)w, xAddr = (nint)xp, yAddr = (nint)yp;
                CpuThreads.For(blocks, b => GemvBlock((byte*)wAddr, kind, (float*)xAddr, (float*)yAddr, rows, cols, b, path));
            }
        }
        finally
        {
            if (scaled is not null) System.Buffers.ArrayPool<float>.Shared.Return(scaled);
        }
    }

    // max |x| (NaN propagates as "not below" any bound)
    private static float MaxAbs(ReadOnlySpan<float> x)
    {
        float m = 0;
        foreach (float v in x) { float a = MathF.Abs(v); if (!(a <= m)) m = float.IsNaN(a) ? float.PositiveInfinity : a; }
        return m;
    }

    // kind: 0 F32, 1 BF16, 2 F16 (x as given), 3 F16 with x pre-scaled by 2^112
    private static unsafe void GemvBlock(byte* w, int kind, float* x, float* y, int rows, int cols, int block, SimdPath path)
    {
        int r0 = block * GemvRowBlock, r1 = Math.Min(rows, r0 + GemvRowBlock);
        switch (kind)
        {
            case 0:
                int r = r0;
                for (; r <= r1 - 4; r += 4) Dot4F32((float*)w + (long)r * cols, cols, x, y + r, path);
                for (; r < r1; r++) y[r] = Dot((float*)w + (long)r * cols, x, cols, path);
                break;
            case 1: HalfRows<BF16Loader>((ushort*)w, x, y, cols, r0, r1, path); break;
            case 2: HalfRows<F16Loader>((ushort*)w, x, y, cols, r0, r1, path); break;
            default: HalfRows<F16PrescaledLoader>((ushort*)w, x, y, cols, r0, r1, path); break;
        }
    }

    private static unsafe void HalfRows<L>(ushort* w, float* x, float* y, int cols, int r0, int r1, SimdPath path) where L : struct, IHalfLoader
    {
        int r = r0;
        for (; r <= r1 - 4; r += 4) Dot4Half<L>(w + (long)r * cols, cols, x, y + r, path);
        for (; r < r1; r++) y[r] = DotHalf<L>(w + (long)r * cols, x, cols, path);
    }

    // 4 consecutive rows of W (stride n) . x -> y[0..4)
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Dot4F32(float* w, int n, float* x, float* y, SimdPath path)
    {
        float* w0 = w, w1 = w + n, w2 = w + 2L * n, w3 = w + 3L * n;
        int i = 0;
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        if (path == SimdPath.V512 && n >= 16)
        {
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; i <= n - 16; i += 16)
            {
                var xv = Vector512.Load(x + i);
                a0 = Vector512.FusedMultiplyAdd(Vector512.Load(w0 + i), xv, a0);
                a1 = Vector512.FusedMultiplyAdd(Vector512.Load(w1 + i), xv, a1);
                a2 = Vector512.FusedMultiplyAdd(Vector512.Load(w2 + i), xv, a2);
                a3 = Vector512.FusedMultiplyAdd(Vector512.Load(w3 + i), xv, a3);
            }
            s0 = Vector512.Sum(a0); s1 = Vector512.Sum(a1); s2 = Vector512.Sum(a2); s3 = Vector512.Sum(a3);
        }
        else if (path >= SimdPath.V256 && n >= 8)
        {
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            Vector256<float> b0 = default, b1 = default, b2 = default, b3 = default;
            for (; i <= n - 16; i += 16)
            {
                var xv = Vector256.Load(x + i);
                var xw = Vector256.Load(x + i + 8);
                a0 = Vector256.FusedMultiplyAdd(Vector256.Load(w0 + i), xv, a0);
                a1 = Vector256.FusedMultiplyAdd(Vector256.Load(w1 + i), xv, a1);
                a2 = Vector256.FusedMultiplyAdd(Vector256.Load(w2 + i), xv, a2);
                a3 = Vector256.FusedMultiplyAdd(Vector256.Load(w3 + i), xv, a3);
                b0 = Vector256.FusedMultiplyAdd(Vector256.Load(w0 + i + 8), xw, b0);
                b1 = Vector256.FusedMultiplyAdd(Vector256.Load(w1 + i + 8), xw, b1);
                b2 = Vector256.FusedMultiplyAdd(Vector256.Load(w2 + i + 8), xw, b2);
                b3 = Vector256.FusedMultiplyAdd(Vector256.Load(w3 + i + 8), xw, b3);
            }
            for (; i <= n - 8; i += 8)
            {
                var xv = Vector256.Load(x + i);
                a0 = Vector256.FusedMultiplyAdd(Vector256.Load(w0 + i), xv, a0);
                a1 = Vector256.FusedMultiplyAdd(Vector256.Load(w1 + i), xv, a1);
                a2 = Vector256.FusedMultiplyAdd(Vector256.Load(w2 + i), xv, a2);
                a3 = Vector256.FusedMultiplyAdd(Vector256.Load(w3 + i), xv, a3);
            }
            s0 = Vector256.Sum(a0 + b0); s1 = Vector256.Sum(a1 + b1); s2 = Vector256.Sum(a2 + b2); s3 = Vector256.Sum(a3 + b3);
        }
        for (; i < n; i++)
        {
            float xv = x[i];
            s0 = MathF.FusedMultiplyAdd(w0[i], xv, s0); s1 = MathF.FusedMultiplyAdd(w1[i], xv, s1);
            s2 = MathF.FusedMultiplyAdd(w2[i], xv, s2); s3 = MathF.FusedMultiplyAdd(w3[i], xv, s3);
        }
        y[0] = s0; y[1] = s1; y[2] = s2; y[3] = s3;
    }

    // Half-precision loaders as value types: the JIT compiles one specialised copy of the row loop per format.
    private unsafe interface IHalfLoader
    {
        static abstract Vector256<float> Load8(ushort* p);
        static abstract Vector512<float> Load16(ushort* p);
        static abstract float Load1(ushort h);
    }

    private readonly unsafe struct F16Loader : IHalfLoader
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Load8(ushort* p) => LoadF16x8Finite(p);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Load16(ushort* p) => LoadF16x16Finite(p);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Load1(ushort h) => F16ToF32(h);
    }

    private readonly unsafe struct BF16Loader : IHalfLoader
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Load8(ushort* p) => LoadBF16x8(p);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Load16(ushort* p) => LoadBF16x16(p);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Load1(ushort h) => BF16ToF32(h);
    }

    // F16 bits placed in binary32 position without the 2^112 rebias (the caller pre-scaled x by 2^112)
    private readonly unsafe struct F16PrescaledLoader : IHalfLoader
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Load8(ushort* p) =>
            ((Vector256.WidenLower(Vector128.Load((short*)p).ToVector256Unsafe()) << 13) & Vector256.Create(F16Mask)).AsSingle();
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Load16(ushort* p) =>
            ((Vector512.WidenLower(Vector256.Load((short*)p).ToVector512Unsafe()) << 13) & Vector512.Create(F16Mask)).AsSingle();
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Load1(ushort h) => BitConverter.Int32BitsToSingle(((short)h << 13) & F16Mask);
    }

    // 4 consecutive rows of half-precision W (stride n) . x -> y[0..4)
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Dot4Half<L>(ushort* w, int n, float* x, float* y, SimdPath path) where L : struct, IHalfLoader
    {
        ushort* w0 = w, w1 = w + n, w2 = w + 2L * n, w3 = w + 3L * n;
        nint i = 0; // native-width index: no sign extension inside the loop
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        if (path == SimdPath.V512 && n >= 16)
        {
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; i <= n - 16; i += 16)
            {
                var xv = Vector512.Load(x + i);
                a0 = Vector512.FusedMultiplyAdd(L.Load16(w0 + i), xv, a0);
                a1 = Vector512.FusedMultiplyAdd(L.Load16(w1 + i), xv, a1);
                a2 = Vector512.FusedMultiplyAdd(L.Load16(w2 + i), xv, a2);
                a3 = Vector512.FusedMultiplyAdd(L.Load16(w3 + i), xv, a3);
            }
            s0 = Vector512.Sum(a0); s1 = Vector512.Sum(a1); s2 = Vector512.Sum(a2); s3 = Vector512.Sum(a3);
        }
        else if (path >= SimdPath.V256 && n >= 8)
        {
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            Vector256<float> b0 = default, b1 = default, b2 = default, b3 = default;
            for (; i <= n - 16; i += 16)
            {
                var xv = Vector256.Load(x + i);
                var xw = Vector256.Load(x + i + 8);
                a0 = Vector256.FusedMultiplyAdd(xv, L.Load8(w0 + i), a0);
                b0 = Vector256.FusedMultiplyAdd(xw, L.Load8(w0 + i + 8), b0);
                a1 = Vector256.FusedMultiplyAdd(xv, L.Load8(w1 + i), a1);
                b1 = Vector256.FusedMultiplyAdd(xw, L.Load8(w1 + i + 8), b1);
                a2 = Vector256.FusedMultiplyAdd(xv, L.Load8(w2 + i), a2);
                b2 = Vector256.FusedMultiplyAdd(xw, L.Load8(w2 + i + 8), b2);
                a3 = Vector256.FusedMultiplyAdd(xv, L.Load8(w3 + i), a3);
                b3 = Vector256.FusedMultiplyAdd(xw, L.Load8(w3 + i + 8), b3);
            }
            for (; i <= n - 8; i += 8)
            {
                var xv = Vector256.Load(x + i);
                a0 = Vector256.FusedMultiplyAdd(L.Load8(w0 + i), xv, a0);
                a1 = Vector256.FusedMultiplyAdd(L.Load8(w1 + i), xv, a1);
                a2 = Vector256.FusedMultiplyAdd(L.Load8(w2 + i), xv, a2);
                a3 = Vector256.FusedMultiplyAdd(L.Load8(w3 + i), xv, a3);
            }
            s0 = Vector256.Sum(a0 + b0); s1 = Vector256.Sum(a1 + b1); s2 = Vector256.Sum(a2 + b2); s3 = Vector256.Sum(a3 + b3);
        }
        for (; i < n; i++)
        {
            float xv = x[i];
            s0 = MathF.FusedMultiplyAdd(L.Load1(w0[i]), xv, s0); s1 = MathF.FusedMultiplyAdd(L.Load1(w1[i]), xv, s1);
            s2 = MathF.FusedMultiplyAdd(L.Load1(w2[i]), xv, s2); s3 = MathF.FusedMultiplyAdd(L.Load1(w3[i]), xv, s3);
        }
        y[0] = s0; y[1] = s1; y[2] = s2; y[3] = s3;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe float DotHalf<L>(ushort* w, float* x, int n, SimdPath path) where L : struct, IHalfLoader
    {
        int i = 0;
        float s = 0;
        if (path == SimdPath.V512 && n >= 16)
        {
            Vector512<float> a = default;
            for (; i <= n - 16; i += 16) a = Vector512.FusedMultiplyAdd(L.Load16(w + i), Vector512.Load(x + i), a);
            s = Vector512.Sum(a);
        }
        else if (path >= SimdPath.V256 && n >= 8)
        {
            Vector256<float> a = default;
            for (; i <= n - 8; i += 8) a = Vector256.FusedMultiplyAdd(L.Load8(w + i), Vector256.Load(x + i), a);
            s = Vector256.Sum(a);
        }
        for (; i < n; i++) s = MathF.FusedMultiplyAdd(L.Load1(w[i]), x[i], s);
        return s;
    }
}
