// The byte blocks of a SpQR layer (codes, stat codes) as the kernels address them: by pointer. Either a managed array,
// pinned for the block's lifetime (layers built in memory: the encoder's Pack, conversions, tests), or a window of a
// memory-mapped file used in place (layers read from disk: no copy, pages come in as the kernels touch them; the
// mapping must outlive the layer, as for every mapped tensor). The kernels may read up to 8 bytes past Length: an
// array carries that padding itself; a mapped window is used in place only when the file has them after it.
using System.Runtime.InteropServices;
using SpQR.Tensors;

namespace SpQR.Quant.Formats;

public sealed unsafe class SpqrBytes
{
    /// <summary>Bytes the kernels may read past the end of a block (64-bit loads of its last fields).</summary>
    public const int Padding = 8;

    private readonly byte[]? _array;
    private readonly GCHandle _pin;
    private readonly Tensor? _mapped; // keeps the mapped view (and its storage) reachable

    public byte* Pointer { get; }
    /// <summary>Readable bytes of the block, padding included (an array's own, or the mapped file's bytes after the tensor).</summary>
    public long Length { get; }
    /// <summary>True when the bytes are a window of a mapped file, used in place.</summary>
    public bool IsMapped => _mapped is not null;

    public SpqrBytes(byte[] array)
    {
        _array = array;
        _pin = GCHandle.Alloc(array, GCHandleType.Pinned);
        Pointer = (byte*)_pin.AddrOfPinnedObject();
        Length = array.Length;
    }

    private SpqrBytes(Tensor mapped)
    {
        _mapped = mapped;
        Pointer = mapped.Pointer;
        Length = mapped.ByteLength + Padding; // InPlaceOrCopy checked that the file has them
    }

    ~SpqrBytes() { if (_pin.IsAllocated) _pin.Free(); }

    public static implicit operator SpqrBytes(byte[] array) => new(array);

    /// <summary>The tensor's bytes in place when its storage has <see cref="Padding"/> readable bytes after it, else a
    /// padded copy.</summary>
    public static SpqrBytes InPlaceOrCopy(Tensor t)
    {
        if (t.Storage is MappedFileStorage && t.ByteOffset + t.ByteLength + Padding <= t.Storage.ByteLength) return new SpqrBytes(t);
        var a = new byte[t.ByteLength + Padding];
        t.Bytes.CopyTo(a);
        return new SpqrBytes(a);
    }

    public ReadOnlySpan<byte> Span => new(Pointer, checked((int)Length));

    public byte this[long i]
    {
        get => (ulong)i < (ulong)Length ? Pointer[i] : throw new IndexOutOfRangeException($"byte {i} of a {Length}-byte block");
        set
        {
            if (_array is null) throw new InvalidOperationException("a mapped SpQR block is read-only");
            _array[i] = value;
        }
    }
}
