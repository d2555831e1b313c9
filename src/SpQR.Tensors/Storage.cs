// Where a tensor's bytes live: 64-byte-aligned native memory owned by the tensor, or a read-only window of a
// memory-mapped file shared by every tensor of that file. Storage is reference counted by its owners only in the
// simple sense that views never dispose it; whoever created it disposes it once.
using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;

namespace SpQR.Tensors;

public abstract unsafe class Storage : IDisposable
{
    public abstract byte* Pointer { get; }
    public abstract long ByteLength { get; }
    public abstract bool IsReadOnly { get; }
    public bool IsDisposed { get; protected set; }
    public abstract void Dispose();

    protected void ThrowIfDisposed()
    {
        if (IsDisposed) throw new ObjectDisposedException(GetType().Name, "the tensor's storage was disposed");
    }
}

/// <summary>Zero-initialised, 64-byte-aligned native memory (the cache-line and Vector512 alignment).</summary>
public sealed unsafe class NativeStorage : Storage
{
    public const int Alignment = 64;
    private byte* _ptr;
    private readonly long _length;

    public NativeStorage(long byteLength)
    {
        if (byteLength < 0) throw new ArgumentOutOfRangeException(nameof(byteLength));
        _length = byteLength;
        _ptr = (byte*)NativeMemory.AlignedAlloc((nuint)Math.Max(byteLength, 1), Alignment);
        NativeMemory.Clear(_ptr, (nuint)byteLength);
        if (byteLength > 0) GC.AddMemoryPressure(byteLength);
    }

    public override byte* Pointer { get { ThrowIfDisposed(); return _ptr; } }
    public override long ByteLength => _length;
    public override bool IsReadOnly => false;

    public override void Dispose()
    {
        if (IsDisposed) return;
        IsDisposed = true;
        NativeMemory.AlignedFree(_ptr);
        _ptr = null;
        if (_length > 0) GC.RemoveMemoryPressure(_length);
        GC.SuppressFinalize(this);
    }

    ~NativeStorage() { if (!IsDisposed) NativeMemory.AlignedFree(_ptr); }
}

/// <summary>A read-only memory map of a whole file. Tensors read from the file are zero-copy views into it.</summary>
public sealed unsafe class MappedFileStorage : Storage
{
    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private byte* _ptr;
    private readonly long _length;

    public string Path { get; }

    public MappedFileStorage(string path)
    {
        Path = path;
        var info = new FileInfo(path);
        if (!info.Exists) throw new FileNotFoundException($"file not found: {path}", path);
        _length = info.Length;
        if (_length == 0) return; // an empty file cannot be mapped; readers report it as truncated
        _map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        _view = _map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        byte* p = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        _ptr = p + _view.PointerOffset;
    }

    public override byte* Pointer { get { ThrowIfDisposed(); return _ptr; } }
    public override long ByteLength => _length;
    public override bool IsReadOnly => true;

    public override void Dispose()
    {
        if (IsDisposed) return;
        IsDisposed = true;
        if (_view is not null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }
        _map?.Dispose();
        _ptr = null;
    }
}

/// <summary>Pinned managed bytes (tests and in-memory parsing); read-only.</summary>
public sealed unsafe class PinnedBytesStorage : Storage
{
    private GCHandle _handle;
    private readonly byte[] _bytes;

    public PinnedBytesStorage(byte[] bytes)
    {
        _bytes = bytes;
        _handle = GCHandle.Alloc(bytes, GCHandleType.Pinned);
    }

    public override byte* Pointer { get { ThrowIfDisposed(); return (byte*)_handle.AddrOfPinnedObject(); } }
    public override long ByteLength => _bytes.Length;
    public override bool IsReadOnly => true;

    public override void Dispose()
    {
        if (IsDisposed) return;
        IsDisposed = true;
        _handle.Free();
    }
}
