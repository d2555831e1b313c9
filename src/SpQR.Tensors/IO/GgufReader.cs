// GGUF (v2/v3, little-endian): magic "GGUF", version, tensor count, metadata count; metadata key/value pairs of the
// 13 value types (arrays may nest); tensor infos (name, dims fastest-first, ggml type, offset); padding to
// general.alignment (default 32); data. F32/F16/BF16 (and plain integer) tensors map zero-copy; quantized ggml
// types are listed by name and refused on access. Spec: ggml/docs/gguf.md.
using System.Text;

namespace SpQR.Tensors.IO;

public enum GgufValueType : uint
{
    UInt8 = 0, Int8 = 1, UInt16 = 2, Int16 = 3, UInt32 = 4, Int32 = 5, Float32 = 6, Bool = 7, String = 8, Array = 9,
    UInt64 = 10, Int64 = 11, Float64 = 12,
}

/// <summary>ggml tensor types with their block geometry (elements per block, bytes per block).</summary>
public static class GgmlTypes
{
    private static readonly Dictionary<uint, (string Name, int Block, int Bytes)> Table = new()
    {
        [0] = ("F32", 1, 4), [1] = ("F16", 1, 2), [2] = ("Q4_0", 32, 18), [3] = ("Q4_1", 32, 20), [6] = ("Q5_0", 32, 22),
        [7] = ("Q5_1", 32, 24), [8] = ("Q8_0", 32, 34), [9] = ("Q8_1", 32, 36), [10] = ("Q2_K", 256, 84), [11] = ("Q3_K", 256, 110),
        [12] = ("Q4_K", 256, 144), [13] = ("Q5_K", 256, 176), [14] = ("Q6_K", 256, 210), [15] = ("Q8_K", 256, 292),
        [16] = ("IQ2_XXS", 256, 66), [17] = ("IQ2_XS", 256, 74), [18] = ("IQ3_XXS", 256, 98), [19] = ("IQ1_S", 256, 50),
        [20] = ("IQ4_NL", 32, 18), [21] = ("IQ3_S", 256, 110), [22] = ("IQ2_S", 256, 82), [23] = ("IQ4_XS", 256, 136),
        [24] = ("I8", 1, 1), [25] = ("I16", 1, 2), [26] = ("I32", 1, 4), [27] = ("I64", 1, 8), [28] = ("F64", 1, 8),
        [29] = ("IQ1_M", 256, 56), [30] = ("BF16", 1, 2), [34] = ("TQ1_0", 256, 54), [35] = ("TQ2_0", 256, 66), [39] = ("MXFP4", 32, 17),
    };

    public static bool TryGet(uint type, out string name, out int blockSize, out int blockBytes)
    {
        if (Table.TryGetValue(type, out var e)) { (name, blockSize, blockBytes) = e; return true; }
        name = $"type {type}"; blockSize = blockBytes = 0; return false;
    }

    public static string Name(uint type) => TryGet(type, out var n, out _, out _) ? n : $"unknown ggml type {type}";

    /// <summary>The dtype we can view a ggml type as without conversion, or null for quantized blocks.</summary>
    public static DType? AsDType(uint type) => type switch
    {
        0 => DType.F32, 1 => DType.F16, 30 => DType.BF16, 24 => DType.I8, 25 => DType.I16, 26 => DType.I32, 27 => DType.I64, 28 => DType.F64,
        _ => null,
    };
}

/// <param name="Shape">Row-major shape (GGUF lists dims fastest-first; this is that list reversed).</param>
public sealed record GgufTensorInfo(string Name, uint GgmlType, Shape Shape, long DataOffset, long ByteLength)
{
    public string TypeName => GgmlTypes.Name(GgmlType);
}

public sealed unsafe class GgufFile : IDisposable
{
    public const int MaxArrayDepth = 8;
    private readonly Dictionary<string, GgufTensorInfo> _tensors;
    private readonly bool _owns;

    public string Path { get; }
    public uint Version { get; }
    public Storage Storage { get; }
    /// <summary>Values: byte, sbyte, ushort, short, uint, int, float, bool, string, ulong, long, double, or GgufArray.</summary>
    public IReadOnlyDictionary<string, object> Metadata { get; }
    public IReadOnlyList<GgufTensorInfo> Tensors { get; }
    public long Alignment { get; }
    public long DataStart { get; }

    private GgufFile(string path, uint version, Storage storage, bool owns, Dictionary<string, object> meta, List<GgufTensorInfo> tensors, long alignment, long dataStart)
    {
        Path = path; Version = version; Storage = storage; _owns = owns; Metadata = meta; Tensors = tensors; Alignment = alignment; DataStart = dataStart;
        _tensors = tensors.ToDictionary(t => t.Name);
    }

    public static GgufFile Open(string path)
    {
        var storage = new MappedFileStorage(path);
        try { return Parse(storage, path, ownsStorage: true); }
        catch { storage.Dispose(); throw; }
    }

    public static GgufFile Parse(Storage storage, string name, bool ownsStorage = false)
    {
        var c = new ByteCursor(storage.ByteLength == 0 ? null : storage.Pointer, storage.ByteLength, name);
        uint magic = c.U32("the magic number");
        if (magic != 0x46554747)
            throw new ModelFormatException(name, "offset 0", "magic \"GGUF\"", $"0x{magic:X8}", "not a GGUF file");
        uint version = c.U32("the version");
        if (version is not (2 or 3))
            throw new ModelFormatException(name, "offset 4", "GGUF version 2 or 3", $"{version}", version == 1 ? "GGUF v1 is obsolete: reconvert the model" : "the file is corrupt or from a newer format");
        ulong nTensors = c.U64("the tensor count"), nKv = c.U64("the metadata count");
        // every kv takes at least 8 (key length) + 4 (type) + 1 bytes; every tensor info at least 8 + 4 + 4 + 8
        if (nKv > (ulong)(c.Remaining / 13)) throw new ModelFormatException(name, "offset 16", $"a metadata count the file can hold (≤ {c.Remaining / 13})", $"{nKv}");
        if (nTensors > (ulong)(c.Remaining / 24)) throw new ModelFormatException(name, "offset 8", $"a tensor count the file can hold (≤ {c.Remaining / 24})", $"{nTensors}");

        var meta = new Dictionary<string, object>();
        for (ulong i = 0; i < nKv; i++)
        {
            long at = c.Position;
            string key = ReadString(ref c, name, $"metadata key #{i}");
            var type = (GgufValueType)c.U32($"the value type of \"{key}\"");
            object value = ReadValue(ref c, name, key, type, 0);
            if (!meta.TryAdd(key, value)) throw new ModelFormatException(name, $"offset {at}", "unique metadata keys", $"\"{key}\" twice");
        }

        long alignment = 32;
        if (meta.TryGetValue("general.alignment", out var al))
        {
            if (al is not uint a || a == 0 || (a & (a - 1)) != 0)
                throw new ModelFormatException(name, "general.alignment", "a power-of-two uint32", $"{al}");
            alignment = a;
        }

        var infos = new List<(string Name, uint Type, long[] Dims, ulong Offset, long InfoAt)>();
        var names = new HashSet<string>();
        for (ulong i = 0; i < nTensors; i++)
        {
            long at = c.Position;
            string tname = ReadString(ref c, name, $"tensor info #{i} name");
            if (!names.Add(tname)) throw new ModelFormatException(name, $"offset {at}", "unique tensor names", $"\"{tname}\" twice");
            uint nd = c.U32($"n_dims of tensor \"{tname}\"");
            if (nd > 4) throw new ModelFormatException(name, $"tensor \"{tname}\"", "at most 4 dimensions (GGML_MAX_DIMS)", $"{nd}");
            var dims = new long[nd];
            for (int d = 0; d < nd; d++)
            {
                ulong v = c.U64($"dim {d} of tensor \"{tname}\"");
                if (v > long.MaxValue) throw new ModelFormatException(name, $"tensor \"{tname}\"", "dimensions below 2^63", $"{v}");
                dims[d] = (long)v;
            }
            uint type = c.U32($"ggml type of tensor \"{tname}\"");
            ulong off = c.U64($"data offset of tensor \"{tname}\"");
            infos.Add((tname, type, dims, off, at));
        }
        long dataStart = AlignUp(c.Position, alignment);
        if (nTensors > 0 && dataStart > storage.ByteLength)
            throw new ModelFormatException(name, $"offset {c.Position}", $"tensor data from offset {dataStart}", $"a {storage.ByteLength}-byte file", "the file is truncated");
        long dataLength = Math.Max(0, storage.ByteLength - dataStart);

        var tensors = new List<GgufTensorInfo>();
        foreach (var (tname, type, dims, off, at) in infos)
        {
            if (!GgmlTypes.TryGet(type, out var tn, out int block, out int blockBytes))
                throw new ModelFormatException(name, $"tensor \"{tname}\"", "a known ggml type", $"{type}", "the file needs a newer reader");
            Shape shape;
            long bytes;
            try
            {
                shape = new Shape(dims.Reverse().ToArray());
                if (dims.Length > 0 && dims[0] % block != 0)
                    throw new ModelFormatException(name, $"tensor \"{tname}\"", $"a row length that is a multiple of {tn}'s block of {block}", $"{dims[0]}");
                bytes = checked(shape.ElementCount / block * blockBytes);
            }
            catch (OverflowException) { throw new ModelFormatException(name, $"tensor \"{tname}\"", "a size that fits in 64 bits", $"dims [{string.Join(", ", dims)}]"); }
            if (off % (ulong)alignment != 0)
                throw new ModelFormatException(name, $"tensor \"{tname}\"", $"a data offset aligned to {alignment}", $"{off}");
            if (off > (ulong)dataLength || bytes > dataLength - (long)off)
                throw new ModelFormatException(name, $"tensor \"{tname}\"", $"{bytes} bytes at data offset {off} within the {dataLength}-byte data section", "it runs past the end of the file", "the file is truncated");
            tensors.Add(new GgufTensorInfo(tname, type, shape, (long)off, bytes));
        }
        return new GgufFile(name, version, storage, ownsStorage, meta, tensors, alignment, dataStart);
    }

    private static long AlignUp(long x, long a) => (x + a - 1) / a * a;

    private static string ReadString(ref ByteCursor c, string file, string what)
    {
        long at = c.Position;
        ulong len = c.U64($"the length of {what}");
        if (len > (ulong)c.Remaining) throw new ModelFormatException(file, $"offset {at}", $"a {what} of at most {c.Remaining} bytes", $"length {len}", "the file is truncated or corrupt");
        return Encoding.UTF8.GetString(c.Bytes((long)len, what));
    }

    private static object ReadValue(ref ByteCursor c, string file, string key, GgufValueType type, int depth)
    {
        string what = $"the value of \"{key}\"";
        switch (type)
        {
            case GgufValueType.UInt8: return c.U8(what);
            case GgufValueType.Int8: return (sbyte)c.U8(what);
            case GgufValueType.UInt16: return c.U16(what);
            case GgufValueType.Int16: return (short)c.U16(what);
            case GgufValueType.UInt32: return c.U32(what);
            case GgufValueType.Int32: return c.I32(what);
            case GgufValueType.Float32: return c.F32(what);
            case GgufValueType.Bool:
                {
                    long at = c.Position;
                    byte b = c.U8(what);
                    if (b > 1) throw new ModelFormatException(file, $"offset {at}", $"a bool (0 or 1) for \"{key}\"", $"{b}");
                    return b == 1;
                }
            case GgufValueType.String: return ReadString(ref c, file, what);
            case GgufValueType.UInt64: return c.U64(what);
            case GgufValueType.Int64: return c.I64(what);
            case GgufValueType.Float64: return c.F64(what);
            case GgufValueType.Array:
                {
                    if (depth >= MaxArrayDepth) throw new ModelFormatException(file, $"offset {c.Position}", $"arrays nested at most {MaxArrayDepth} deep", "deeper nesting");
                    long at = c.Position;
                    var et = (GgufValueType)c.U32($"the element type of \"{key}\"");
                    ulong n = c.U64($"the element count of \"{key}\"");
                    int minSize = et switch
                    {
                        GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
                        GgufValueType.UInt16 or GgufValueType.Int16 => 2,
                        GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
                        GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64 or GgufValueType.String => 8,
                        GgufValueType.Array => 12,
                        _ => throw new ModelFormatException(file, $"offset {at}", $"an array element type 0..12 for \"{key}\"", $"{(uint)et}"),
                    };
                    if (n > (ulong)(c.Remaining / minSize))
                        throw new ModelFormatException(file, $"offset {at}", $"an array of \"{key}\" that fits in the {c.Remaining} bytes left", $"{n} elements", "the file is truncated or corrupt");
                    return ReadArray(ref c, file, key, et, (int)n, depth);
                }
            default:
                throw new ModelFormatException(file, $"offset {c.Position - 4}", $"a value type 0..12 for \"{key}\"", $"{(uint)type}");
        }
    }

    private static GgufArray ReadArray(ref ByteCursor c, string file, string key, GgufValueType et, int n, int depth)
    {
        string what = $"elements of \"{key}\"";
        switch (et)
        {
            case GgufValueType.Float32: { var a = new float[n]; c.Bytes(4L * n, what).CopyTo(System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan())); return new GgufArray(et, a); }
            case GgufValueType.Int32: { var a = new int[n]; c.Bytes(4L * n, what).CopyTo(System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan())); return new GgufArray(et, a); }
            case GgufValueType.UInt32: { var a = new uint[n]; c.Bytes(4L * n, what).CopyTo(System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan())); return new GgufArray(et, a); }
            case GgufValueType.UInt8: return new GgufArray(et, c.Bytes(n, what).ToArray());
            case GgufValueType.Int8: { var a = new sbyte[n]; c.Bytes(n, what).CopyTo(System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan())); return new GgufArray(et, a); }
            case GgufValueType.UInt16: { var a = new ushort[n]; c.Bytes(2L * n, what).CopyTo(System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan())); return new GgufArray(et, a); }
            case GgufValueType.Int16: { var a = new short[n]; c.Bytes(2L * n, what).CopyTo(System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan())); return new GgufArray(et, a); }
            case GgufValueType.UInt64: { var a = new ulong[n]; c.Bytes(8L * n, what).CopyTo(System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan())); return new GgufArray(et, a); }
            case GgufValueType.Int64: { var a = new long[n]; c.Bytes(8L * n, what).CopyTo(System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan())); return new GgufArray(et, a); }
            case GgufValueType.Float64: { var a = new double[n]; c.Bytes(8L * n, what).CopyTo(System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan())); return new GgufArray(et, a); }
            case GgufValueType.Bool:
                {
                    var a = new bool[n];
                    for (int i = 0; i < n; i++) a[i] = (bool)ReadValue(ref c, file, key, GgufValueType.Bool, depth + 1);
                    return new GgufArray(et, a);
                }
            case GgufValueType.String:
                {
                    var a = new string[n];
                    for (int i = 0; i < n; i++) a[i] = ReadString(ref c, file, $"element {i} of \"{key}\"");
                    return new GgufArray(et, a);
                }
            default:
                {
                    var a = new object[n];
                    for (int i = 0; i < n; i++) a[i] = ReadValue(ref c, file, key, GgufValueType.Array, depth + 1);
                    return new GgufArray(et, a);
                }
        }
    }

    public T Get<T>(string key)
    {
        if (!Metadata.TryGetValue(key, out var v)) throw new ModelFormatException(Path, $"metadata \"{key}\"", "the key to be present", "none");
        if (v is T t) return t;
        if (v is GgufArray arr && arr.Values is T ta) return ta;
        throw new ModelFormatException(Path, $"metadata \"{key}\"", typeof(T).Name, v.GetType().Name);
    }

    public bool TryGet<T>(string key, out T value)
    {
        value = default!;
        if (!Metadata.TryGetValue(key, out var v)) return false;
        if (v is T t) { value = t; return true; }
        if (v is GgufArray arr && arr.Values is T ta) { value = ta; return true; }
        return false;
    }

    public GgufTensorInfo TensorInfo(string name) => _tensors.TryGetValue(name, out var t) ? t
        : throw new ModelFormatException(Path, $"tensor \"{name}\"", "a tensor of that name", "none");

    /// <summary>A zero-copy view of an F32/F16/BF16/integer tensor; quantized ggml types are refused by name.</summary>
    public Tensor GetTensor(string name)
    {
        var info = TensorInfo(name);
        var dt = GgmlTypes.AsDType(info.GgmlType)
            ?? throw new NotSupportedException($"{Path}: tensor \"{name}\" is {info.TypeName}; only F32, F16, BF16 and integer GGUF tensors are supported (requantize from the original checkpoint)");
        return new Tensor(dt, info.Shape, Storage, DataStart + info.DataOffset, ownsStorage: false) { Name = name };
    }

    public void Dispose() { if (_owns) Storage.Dispose(); }
}

/// <summary>A GGUF array value: its element type and a typed .NET array (float[], string[], int[], object[] for nested arrays, ...).</summary>
public sealed record GgufArray(GgufValueType ElementType, Array Values)
{
    public int Length => Values.Length;
}
