// F16/BF16 <-> F32 conversion, exact (denormals, infinities and NaN included), Vector512/Vector256/scalar.
// Used by the GEMV kernels on the fly and by loaders that widen weights on request. Reference: IEEE 754 binary16
// and bfloat16 (upper half of binary32); F32 -> BF16 rounds to nearest even like PyTorch's .to(torch.bfloat16).
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace SpQR.Tensors.Cpu;

public static partial class CpuKernels
{
    // The F16 trick: sign-extend the 16 bits to 32, shift left 13 so exponent/mantissa line up with binary32's,
    // keep sign + 15 bits, and multiply by 2^112 (= 2^(127-15)) which rebiases the exponent and normalises
    // denormals exactly. F16 infinities/NaNs land at |x| >= 65536 (F16's max finite is 65504): set all exponent bits.
    private const int F16Mask = unchecked((int)0x8FFFE000);
    private const float F16Scale = 5.192296858534828e33f; // 2^112
    private const uint F32ExpMask = 0x7F80_0000;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> F16ToF32(Vector256<int> signExtended)
    {
        var f = ((signExtended << 13) & Vector256.Create(F16Mask)).AsSingle() * Vector256.Create(F16Scale);
        var special = Vector256.GreaterThanOrEqual(Vector256.Abs(f), Vector256.Create(65536f));
        return f | (special & Vector256.Create(F32ExpMask).AsSingle());
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> F16ToF32(Vector512<int> signExtended)
    {
        var f = ((signExtended << 13) & Vector512.Create(F16Mask)).AsSingle() * Vector512.Create(F16Scale);
        var special = Vector512.GreaterThanOrEqual(Vector512.Abs(f), Vector512.Create(65536f));
        return f | (special & Vector512.Create(F32ExpMask).AsSingle());
    }

    /// <summary>
    /// 8 finite halves at p -> 8 floats in four operations (widen, shift, mask, rebias). Infinities and NaNs come out
    /// as finite values of magnitude 65536..131071, so only kernels whose weights were checked finite at load time
    /// use it (CheckFiniteF16); everything else uses the exact LoadF16x8.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe Vector256<float> LoadF16x8Finite(ushort* p) =>
        ((Vector256.WidenLower(Vector128.Load((short*)p).ToVector256Unsafe()) << 13) & Vector256.Create(F16Mask)).AsSingle() * Vector256.Create(F16Scale);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe Vector512<float> LoadF16x16Finite(ushort* p) =>
        ((Vector512.WidenLower(Vector256.Load((short*)p).ToVector512Unsafe()) << 13) & Vector512.Create(F16Mask)).AsSingle() * Vector512.Create(F16Scale);

    /// <summary>8 halves at p -> 8 floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe Vector256<float> LoadF16x8(ushort* p) =>
        F16ToF32(Vector256.WidenLower(Vector128.Load((short*)p).ToVector256Unsafe()));

    /// <summary>16 halves at p -> 16 floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe Vector512<float> LoadF16x16(ushort* p) =>
        F16ToF32(Vector512.WidenLower(Vector256.Load((short*)p).ToVector512Unsafe()));

    /// <summary>8 bfloat16 at p -> 8 floats (exact: a shift).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe Vector256<float> LoadBF16x8(ushort* p) =>
        (Vector256.WidenLower(Vector128.Load(p).ToVector256Unsafe()) << 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe Vector512<float> LoadBF16x16(ushort* p) =>
        (Vector512.WidenLower(Vector256.Load(p).ToVector512Unsafe()) << 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float F16ToF32(ushort h) => (float)BitConverter.UInt16BitsToHalf(h);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float BF16ToF32(ushort h) => BitConverter.UInt32BitsToSingle((uint)h << 16);

    // src (n halves as raw bits) -> dst (n floats)
    public static void F16ToF32(ReadOnlySpan<ushort> src, Span<float> dst) => F16ToF32(src, dst, Simd.Best);

    internal static unsafe void F16ToF32(ReadOnlySpan<ushort> src, Span<float> dst, SimdPath path)
    {
        if (dst.Length < src.Length) throw new ArgumentException($"destination holds {dst.Length} floats, source has {src.Length} halves", nameof(dst));
        int n = src.Length, i = 0;
        fixed (ushort* s = src) fixed (float* d = dst)
        {
            if (path == SimdPath.V512) for (; i <= n - 16; i += 16) LoadF16x16(s + i).Store(d + i);
            if (path >= SimdPath.V256) for (; i <= n - 8; i += 8) LoadF16x8(s + i).Store(d + i);
            for (; i < n; i++) d[i] = F16ToF32(s[i]);
        }
    }

    // src (n bfloat16 bits) -> dst (n floats)
    public static void BF16ToF32(ReadOnlySpan<ushort> src, Span<float> dst) => BF16ToF32(src, dst, Simd.Best);

    internal static unsafe void BF16ToF32(ReadOnlySpan<ushort> src, Span<float> dst, SimdPath path)
    {
        if (dst.Length < src.Length) throw new ArgumentException($"destination holds {dst.Length} floats, source has {src.Length} bfloat16", nameof(dst));
        int n = src.Length, i = 0;
        fixed (ushort* s = src) fixed (float* d = dst)
        {
            if (path == SimdPath.V512) for (; i <= n - 16; i += 16) LoadBF16x16(s + i).Store(d + i);
            if (path >= SimdPath.V256) for (; i <= n - 8; i += 8) LoadBF16x8(s + i).Store(d + i);
            for (; i < n; i++) d[i] = BF16ToF32(s[i]);
        }
    }

    // src (n floats) -> dst (n halves, round to nearest even). TensorPrimitives carries the SIMD paths.
    public static void F32ToF16(ReadOnlySpan<float> src, Span<ushort> dst)
    {
        if (dst.Length < src.Length) throw new ArgumentException($"destination holds {dst.Length} halves, source has {src.Length} floats", nameof(dst));
        System.Numerics.Tensors.TensorPrimitives.ConvertToHalf(src, System.Runtime.InteropServices.MemoryMarshal.Cast<ushort, Half>(dst));
    }

    // src (n floats) -> dst (n bfloat16, round to nearest even; NaN stays NaN)
    public static void F32ToBF16(ReadOnlySpan<float> src, Span<ushort> dst) => F32ToBF16(src, dst, Simd.Best);

    internal static unsafe void F32ToBF16(ReadOnlySpan<float> src, Span<ushort> dst, SimdPath path)
    {
        if (dst.Length < src.Length) throw new ArgumentException($"destination holds {dst.Length} bfloat16, source has {src.Length} floats", nameof(dst));
        int n = src.Length, i = 0;
        fixed (float* s = src) fixed (ushort* d = dst)
        {
            if (path >= SimdPath.V256)
            {
                for (; i <= n - 8; i += 8)
                {
                    var u = Vector256.Load((uint*)s + i);
                    var nan = Vector256.GreaterThan(u & Vector256.Create(0x7FFF_FFFFu), Vector256.Create(0x7F80_0000u));
                    var rounded = (u + Vector256.Create(0x7FFFu) + ((u >> 16) & Vector256<uint>.One)) >> 16;
                    var quiet = (u >> 16) | Vector256.Create(0x40u);
                    var r = Vector256.ConditionalSelect(nan, quiet, rounded);
                    Vector128.Narrow(r.GetLower(), r.GetUpper()).Store(d + i);
                }
            }
            for (; i < n; i++) d[i] = BFloat16Bits.FromSingle(s[i]).Bits;
        }
    }
}

public static partial class CpuKernels
{
    /// <summary>Index of the first NaN or infinity in a tensor of F32/F16/BF16 values, or -1. Loaders call it once per
    /// weight so that bad checkpoints fail with a typed error and the fast half-precision kernels may assume finite input.</summary>
    public static unsafe long FindNonFinite(Tensor t)
    {
        byte* p = t.Pointer;
        long n = t.ElementCount;
        switch (t.DType)
        {
            case DType.F32:
                {
                    uint* u = (uint*)p; long i = 0;
                    var mask = Vector256.Create(0x7F80_0000u);
                    for (; i <= n - 8; i += 8)
                        if (Vector256.EqualsAny(Vector256.Load(u + i) & mask, mask)) break;
                    for (; i < n; i++) if ((u[i] & 0x7F80_0000u) == 0x7F80_0000u) return i;
                    return -1;
                }
            case DType.F16:
            case DType.BF16:
                {
                    ushort m = t.DType == DType.F16 ? (ushort)0x7C00 : (ushort)0x7F80;
                    ushort* u = (ushort*)p; long i = 0;
                    var mask = Vector256.Create(m);
                    for (; i <= n - 16; i += 16)
                        if (Vector256.EqualsAny(Vector256.Load(u + i) & mask, mask)) break;
                    for (; i < n; i++) if ((u[i] & m) == m) return i;
                    return -1;
                }
            default:
                return -1;
        }
    }
}
