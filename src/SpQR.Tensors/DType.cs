// Element types of SpQR.Native tensors: what a tensor's bytes mean.
// Dense types are one element per 1..8 bytes; packed types (U2..U7) hold sub-byte integer codes, LSB-first,
// and a packed tensor's byte size rounds its bit count up to whole bytes (only the quant formats make them).
namespace SpQR.Tensors;

public enum DType : byte
{
    F32, F16, BF16, F64, I8, U8, I16, U16, I32, I64, Bool,
    // Packed unsigned codes, LSB-first within little-endian bytes: element i occupies bits [i*b, (i+1)*b).
    U1, U2, U3, U4, U5, U6, U7,
}

public static class DTypes
{
    /// <summary>Bits per element: 32 for F32, 3 for U3, ...</summary>
    public static int Bits(this DType t) => t switch
    {
        DType.F32 => 32, DType.F16 => 16, DType.BF16 => 16, DType.F64 => 64,
        DType.I8 => 8, DType.U8 => 8, DType.Bool => 8, DType.I16 => 16, DType.U16 => 16, DType.I32 => 32, DType.I64 => 64,
        DType.U1 => 1, DType.U2 => 2, DType.U3 => 3, DType.U4 => 4, DType.U5 => 5, DType.U6 => 6, DType.U7 => 7,
        _ => throw new ArgumentOutOfRangeException(nameof(t), t, "unknown dtype"),
    };

    public static bool IsPacked(this DType t) => t >= DType.U1;
    public static bool IsFloat(this DType t) => t is DType.F32 or DType.F16 or DType.BF16 or DType.F64;

    /// <summary>Bytes per element for dense types; throws for packed ones (use <see cref="ByteCount"/>).</summary>
    public static int Size(this DType t) => t.IsPacked()
        ? throw new InvalidOperationException($"{t} is a packed sub-byte type; it has no per-element byte size")
        : t.Bits() / 8;

    /// <summary>Bytes needed for <paramref name="count"/> elements, overflow-checked; packed types round up.</summary>
    public static long ByteCount(this DType t, long count)
    {
        if (count < 0) throw new ArgumentOutOfRangeException(nameof(count), count, "element count must be non-negative");
        long bits = checked(count * t.Bits());
        return (bits + 7) / 8;
    }

    /// <summary>The .NET type whose spans view this dtype (packed types are viewed as bytes).</summary>
    public static Type ClrType(this DType t) => t switch
    {
        DType.F32 => typeof(float), DType.F16 => typeof(Half), DType.BF16 => typeof(BFloat16Bits), DType.F64 => typeof(double),
        DType.I8 => typeof(sbyte), DType.U8 => typeof(byte), DType.Bool => typeof(byte), DType.I16 => typeof(short),
        DType.U16 => typeof(ushort), DType.I32 => typeof(int), DType.I64 => typeof(long),
        _ => typeof(byte),
    };

    /// <summary>Safetensors / GGUF style names ("F32", "BF16", ...).</summary>
    public static string Name(this DType t) => t.ToString();

    public static bool TryParseSafetensors(string s, out DType t)
    {
        switch (s)
        {
            case "F32": t = DType.F32; return true;
            case "F16": t = DType.F16; return true;
            case "BF16": t = DType.BF16; return true;
            case "F64": t = DType.F64; return true;
            case "I8": t = DType.I8; return true;
            case "U8": t = DType.U8; return true;
            case "I16": t = DType.I16; return true;
            case "U16": t = DType.U16; return true;
            case "I32": t = DType.I32; return true;
            case "I64": t = DType.I64; return true;
            case "BOOL": t = DType.Bool; return true;
            default: t = default; return false;
        }
    }

    public static string SafetensorsName(this DType t) => t switch
    {
        DType.Bool => "BOOL",
        _ when t.IsPacked() => throw new NotSupportedException($"{t} is packed and has no safetensors dtype; store its bytes as U8"),
        _ => t.ToString(),
    };
}

/// <summary>The raw 16 bits of a bfloat16 value (the upper half of a float32). A plain struct so spans can be typed.</summary>
[System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Sequential, Size = 2)]
public readonly record struct BFloat16Bits(ushort Bits)
{
    /// <summary>Round-to-nearest-even conversion from float32; NaN stays a quiet NaN.</summary>
    public static BFloat16Bits FromSingle(float f)
    {
        uint u = BitConverter.SingleToUInt32Bits(f);
        if ((u & 0x7FFF_FFFF) > 0x7F80_0000) return new BFloat16Bits((ushort)((u >> 16) | 0x40));
        u += 0x7FFF + ((u >> 16) & 1);
        return new BFloat16Bits((ushort)(u >> 16));
    }

    public float ToSingle() => BitConverter.UInt32BitsToSingle((uint)Bits << 16);
}
