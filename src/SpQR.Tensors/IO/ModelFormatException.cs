// The one exception type for malformed model files: it names the file, where in it (byte offset or tensor name),
// what was expected, what was found, and a hint. Readers throw nothing else for bad bytes.
namespace SpQR.Tensors.IO;

public sealed class ModelFormatException : Exception
{
    public string File { get; }
    public string Location { get; }
    public string Expected { get; }
    public string Found { get; }
    public string? Hint { get; }

    public ModelFormatException(string file, string location, string expected, string found, string? hint = null, Exception? inner = null)
        : base(Format(file, location, expected, found, hint), inner)
    {
        File = file; Location = location; Expected = expected; Found = found; Hint = hint;
    }

    private static string Format(string file, string location, string expected, string found, string? hint) =>
        $"{file}: {location}: expected {expected}, found {found}" + (hint is null ? "" : $" (hint: {hint})");
}

/// <summary>
/// Bounds-checked little-endian reader over a byte range; every read that would pass the end throws a
/// ModelFormatException naming the offset and the field being read.
/// </summary>
internal unsafe struct ByteCursor
{
    private readonly byte* _base;
    private readonly long _length;
    private readonly string _file;
    public long Position;

    public ByteCursor(byte* basePtr, long length, string file) { _base = basePtr; _length = length; _file = file; Position = 0; }

    public long Length => _length;
    public long Remaining => _length - Position;

    public void Need(long bytes, string what)
    {
        if (bytes < 0 || bytes > _length - Position)
            throw new ModelFormatException(_file, $"offset {Position}", $"{bytes} more bytes for {what}",
                $"{Math.Max(0, _length - Position)} bytes left in a {_length}-byte file", "the file is truncated or the field is corrupt");
    }

    public byte U8(string what) { Need(1, what); return _base[Position++]; }
    public ushort U16(string what) { Need(2, what); var v = *(ushort*)(_base + Position); Position += 2; return v; }
    public uint U32(string what) { Need(4, what); var v = *(uint*)(_base + Position); Position += 4; return v; }
    public int I32(string what) { Need(4, what); var v = *(int*)(_base + Position); Position += 4; return v; }
    public ulong U64(string what) { Need(8, what); var v = *(ulong*)(_base + Position); Position += 8; return v; }
    public long I64(string what) { Need(8, what); var v = *(long*)(_base + Position); Position += 8; return v; }
    public float F32(string what) { Need(4, what); var v = *(float*)(_base + Position); Position += 4; return v; }
    public double F64(string what) { Need(8, what); var v = *(double*)(_base + Position); Position += 8; return v; }

    public ReadOnlySpan<byte> Bytes(long count, string what)
    {
        Need(count, what);
        if (count > int.MaxValue) throw new ModelFormatException(_file, $"offset {Position}", $"a {what} shorter than 2 GiB", $"{count} bytes");
        var s = new ReadOnlySpan<byte>(_base + Position, (int)count);
        Position += count;
        return s;
    }

    public void Skip(long count, string what) { Need(count, what); Position += count; }
}
