// The SpQR.Native tensor: dtype + shape + a row-major contiguous window into a Storage.
// Not a lazy graph, not strided: views are zero-copy windows over leading dimensions (rows, row ranges), which is
// all inference and quantization need. Element access is through spans typed by the dtype's CLR type.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace SpQR.Tensors;

public sealed unsafe class Tensor : IDisposable
{
    public DType DType { get; }
    public Shape Shape { get; }
    public Storage Storage { get; }
    /// <summary>Byte offset of element 0 inside <see cref="Storage"/>.</summary>
    public long ByteOffset { get; }
    /// <summary>True when this tensor disposes its storage (allocations); false for views and file tensors.</summary>
    public bool OwnsStorage { get; }
    /// <summary>Optional name (the checkpoint's tensor name) for error messages.</summary>
    public string? Name { get; init; }

    public Tensor(DType dtype, Shape shape, Storage storage, long byteOffset, bool ownsStorage)
    {
        long bytes = dtype.ByteCount(shape.ElementCount);
        if (byteOffset < 0 || byteOffset > storage.ByteLength || bytes > storage.ByteLength - byteOffset)
            throw new ArgumentOutOfRangeException(nameof(byteOffset),
                $"tensor {shape} {dtype} needs {bytes} bytes at offset {byteOffset}, storage has {storage.ByteLength}");
        DType = dtype; Shape = shape; Storage = storage; ByteOffset = byteOffset; OwnsStorage = ownsStorage;
    }

    /// <summary>A new zero-filled tensor in 64-byte-aligned native memory.</summary>
    public static Tensor Zeros(DType dtype, params long[] dims)
    {
        var shape = new Shape(dims);
        return new Tensor(dtype, shape, new NativeStorage(dtype.ByteCount(shape.ElementCount)), 0, ownsStorage: true);
    }

    public static Tensor Zeros(DType dtype, params int[] dims) => Zeros(dtype, Array.ConvertAll(dims, d => (long)d));

    /// <summary>Copies <paramref name="data"/> into a new F32 tensor of the given shape.</summary>
    public static Tensor FromArray(float[] data, params int[] dims)
    {
        var t = Zeros(DType.F32, dims);
        if (t.ElementCount != data.Length) { t.Dispose(); throw new ArgumentException($"shape {t.Shape} holds {t.ElementCount} elements, data has {data.Length}"); }
        data.CopyTo(t.AsSpan<float>());
        return t;
    }

    public long ElementCount => Shape.ElementCount;
    public long ByteLength => DType.ByteCount(ElementCount);
    public int Rank => Shape.Rank;
    public bool IsReadOnly => Storage.IsReadOnly;
    public byte* Pointer => Storage.Pointer + ByteOffset;

    /// <summary>Writable span of elements; <typeparamref name="T"/> must be the dtype's CLR type (bytes for packed).</summary>
    public Span<T> AsSpan<T>() where T : unmanaged
    {
        if (Storage.IsReadOnly) throw new InvalidOperationException($"tensor {Name ?? ""} {Shape} is a read-only view of a mapped file; use ReadOnlySpan");
        return new Span<T>(Pointer, CheckedLength<T>());
    }

    public ReadOnlySpan<T> AsReadOnlySpan<T>() where T : unmanaged => new(Pointer, CheckedLength<T>());

    public ReadOnlySpan<byte> Bytes => new(Pointer, checked((int)ByteLength));

    private int CheckedLength<T>() where T : unmanaged
    {
        if (DType.IsPacked())
        {
            if (typeof(T) != typeof(byte)) throw new InvalidOperationException($"packed {DType} tensors are viewed as bytes, not {typeof(T).Name}");
            return checked((int)ByteLength);
        }
        if (Unsafe.SizeOf<T>() != DType.Size() || (typeof(T) != DType.ClrType() && !(typeof(T) == typeof(ushort) && DType is DType.F16 or DType.BF16)))
            throw new InvalidOperationException($"tensor {Name ?? ""} is {DType}; it cannot be viewed as {typeof(T).Name}");
        if (ElementCount > int.MaxValue) throw new InvalidOperationException($"tensor {Shape} has {ElementCount} elements; spans hold at most {int.MaxValue}: view it by rows");
        return (int)ElementCount;
    }

    /// <summary>Row-major row stride in bytes along dimension 0.</summary>
    private long RowBytes()
    {
        if (Rank == 0) throw new InvalidOperationException("a scalar has no rows");
        long inner = Shape.ElementCount / Math.Max(Shape[0], 1);
        if (Shape[0] == 0) { inner = 1; for (int i = 1; i < Rank; i++) inner = checked(inner * Shape[i]); }
        long bits = checked(inner * DType.Bits());
        if (bits % 8 != 0) throw new InvalidOperationException($"rows of {DType} tensor {Shape} do not start on byte boundaries");
        return bits / 8;
    }

    /// <summary>Zero-copy view of rows [start, start + count) along dimension 0.</summary>
    public Tensor Slice(long start, long count)
    {
        if (Rank == 0) throw new InvalidOperationException("cannot slice a scalar");
        if (start < 0 || count < 0 || start > Shape[0] - count)
            throw new ArgumentOutOfRangeException(nameof(start), $"rows [{start}, {start + count}) out of range for {Shape}");
        long rowBytes = RowBytes();
        return new Tensor(DType, Shape.WithFirst(count), Storage, ByteOffset + start * rowBytes, ownsStorage: false) { Name = Name };
    }

    /// <summary>Zero-copy view of row <paramref name="i"/> (shape without the first dimension).</summary>
    public Tensor Row(long i)
    {
        var s = Slice(i, 1);
        return new Tensor(DType, Shape.DropFirst(), Storage, s.ByteOffset, ownsStorage: false) { Name = Name };
    }

    /// <summary>Same bytes, another shape with the same element count.</summary>
    public Tensor Reshape(params long[] dims)
    {
        var s = new Shape(dims);
        if (s.ElementCount != ElementCount) throw new ArgumentException($"cannot reshape {Shape} ({ElementCount} elements) to {s}");
        return new Tensor(DType, s, Storage, ByteOffset, ownsStorage: false) { Name = Name };
    }

    /// <summary>A new owned F32 copy of this tensor, converting F16/BF16/F64/integers.</summary>
    public Tensor ToF32()
    {
        var dst = Zeros(DType.F32, Shape.Dims.ToArray());
        try { CopyToF32(dst.AsSpan<float>()); }
        catch { dst.Dispose(); throw; }
        return dst;
    }

    /// <summary>This tensor's elements widened to float32 into dst (ElementCount values; e.g. one embedding row per
    /// token into a reused buffer), converting F16/BF16/F64/integers.</summary>
    public void CopyToF32(Span<float> d)
    {
        if (d.Length < ElementCount) throw new ArgumentException($"destination holds {d.Length} floats, tensor {Name ?? ""} {Shape} has {ElementCount}");
        d = d[..checked((int)ElementCount)];
        switch (DType)
        {
            case DType.F32: AsReadOnlySpan<float>().CopyTo(d); break;
            case DType.F16: Cpu.CpuKernels.F16ToF32(AsReadOnlySpan<ushort>(), d); break;
            case DType.BF16: Cpu.CpuKernels.BF16ToF32(AsReadOnlySpan<ushort>(), d); break;
            case DType.F64: { var s = AsReadOnlySpan<double>(); for (int i = 0; i < d.Length; i++) d[i] = (float)s[i]; break; }
            case DType.I32: { var s = AsReadOnlySpan<int>(); for (int i = 0; i < d.Length; i++) d[i] = s[i]; break; }
            case DType.I64: { var s = AsReadOnlySpan<long>(); for (int i = 0; i < d.Length; i++) d[i] = s[i]; break; }
            case DType.U8: { var s = AsReadOnlySpan<byte>(); for (int i = 0; i < d.Length; i++) d[i] = s[i]; break; }
            case DType.I8: { var s = AsReadOnlySpan<sbyte>(); for (int i = 0; i < d.Length; i++) d[i] = s[i]; break; }
            case DType.I16: { var s = AsReadOnlySpan<short>(); for (int i = 0; i < d.Length; i++) d[i] = s[i]; break; }
            case DType.U16: { var s = AsReadOnlySpan<ushort>(); for (int i = 0; i < d.Length; i++) d[i] = s[i]; break; }
            default: throw new NotSupportedException($"ToF32 is not defined for {DType}");
        }
    }

    /// <summary>Reads an integer tensor (I32 or I64) as int[] (token streams, permutations).</summary>
    public int[] ToInt32Array()
    {
        return DType switch
        {
            DType.I32 => AsReadOnlySpan<int>().ToArray(),
            DType.I64 => Array.ConvertAll(AsReadOnlySpan<long>().ToArray(), v => checked((int)v)),
            _ => throw new InvalidOperationException($"tensor {Name ?? ""} is {DType}; expected I32 or I64"),
        };
    }

    public void Dispose()
    {
        if (OwnsStorage) Storage.Dispose();
    }

    public override string ToString() => $"Tensor({Name ?? "?"}, {DType}, {Shape})";
}
