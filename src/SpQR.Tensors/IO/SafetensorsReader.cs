// safetensors: 8-byte little-endian header length N, N bytes of UTF-8 JSON {name: {dtype, shape, data_offsets}},
// then the data. Reader: memory-maps the file and hands out zero-copy read-only tensor views; every header field is
// validated (dtype, shape, offsets vs. size, overlap) before any tensor exists. Sharded checkpoints are read through
// model.safetensors.index.json (SafetensorsCheckpoint). Spec: huggingface/safetensors README.
using System.Text;
using System.Text.Json;

namespace SpQR.Tensors.IO;

public sealed record SafetensorsEntry(string Name, DType DType, Shape Shape, long DataOffset, long ByteLength);

public sealed unsafe class SafetensorsFile : IDisposable
{
    public const long MaxHeaderBytes = 100_000_000; // the reference implementation's limit
    private readonly Dictionary<string, SafetensorsEntry> _entries;
    private readonly bool _ownsStorage;

    public string Path { get; }
    public Storage Storage { get; }
    /// <summary>The optional "__metadata__" string map.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }
    /// <summary>Tensors in header order.</summary>
    public IReadOnlyList<SafetensorsEntry> Entries { get; }
    /// <summary>Byte offset of the data section (8 + header length).</summary>
    public long DataStart { get; }

    private SafetensorsFile(string path, Storage storage, bool owns, List<SafetensorsEntry> entries, Dictionary<string, string> metadata, long dataStart)
    {
        Path = path; Storage = storage; _ownsStorage = owns; Entries = entries; Metadata = metadata; DataStart = dataStart;
        _entries = entries.ToDictionary(e => e.Name);
    }

    /// <summary>Memory-maps and validates a .safetensors file.</summary>
    public static SafetensorsFile Open(string path)
    {
        var storage = new MappedFileStorage(path);
        try { return Parse(storage, path, ownsStorage: true); }
        catch { storage.Dispose(); throw; }
    }

    /// <summary>Validates bytes already in memory (tests, fuzzing); <paramref name="name"/> is used in messages.</summary>
    public static SafetensorsFile Parse(Storage storage, string name, bool ownsStorage = false)
    {
        var cur = new ByteCursor(storage.ByteLength == 0 ? null : storage.Pointer, storage.ByteLength, name);
        ulong n = cur.U64("the 8-byte header length");
        if (n > MaxHeaderBytes || (long)n > cur.Remaining)
            throw new ModelFormatException(name, "offset 0", $"a header length of at most {Math.Min(MaxHeaderBytes, cur.Remaining)} bytes", $"{n}",
                "not a safetensors file, or it is truncated");
        var json = cur.Bytes((long)n, "the JSON header");
        long dataStart = 8 + (long)n, dataLength = storage.ByteLength - dataStart;

        if (!System.Text.Unicode.Utf8.IsValid(json))
            throw new ModelFormatException(name, "header", "UTF-8 JSON", "bytes that are not valid UTF-8", "the header is corrupt");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(json.ToArray(), new JsonDocumentOptions { MaxDepth = 16 }); }
        catch (JsonException e) { throw new ModelFormatException(name, "header", "valid UTF-8 JSON", $"a parse error: {e.Message}", "the header is corrupt", e); }
        catch (ArgumentException e) { throw new ModelFormatException(name, "header", "valid UTF-8 JSON", $"invalid text: {e.Message}", "the header is corrupt", e); }

        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new ModelFormatException(name, "header", "a JSON object", doc.RootElement.ValueKind.ToString());
            var entries = new List<SafetensorsEntry>();
            var metadata = new Dictionary<string, string>();
            var seen = new HashSet<string>();
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (!seen.Add(prop.Name)) throw new ModelFormatException(name, $"header key \"{prop.Name}\"", "unique tensor names", "a duplicate");
                if (prop.Name == "__metadata__")
                {
                    if (prop.Value.ValueKind != JsonValueKind.Object) throw new ModelFormatException(name, "__metadata__", "an object of strings", prop.Value.ValueKind.ToString());
                    foreach (var m in prop.Value.EnumerateObject())
                    {
                        if (m.Value.ValueKind != JsonValueKind.String) throw new ModelFormatException(name, $"__metadata__.{m.Name}", "a string value", m.Value.ValueKind.ToString());
                        metadata[m.Name] = m.Value.GetString()!;
                    }
                    continue;
                }
                entries.Add(ParseEntry(name, prop, dataLength));
            }
            CheckNoOverlap(name, entries);
            return new SafetensorsFile(name, storage, ownsStorage, entries, metadata, dataStart);
        }
    }

    private static SafetensorsEntry ParseEntry(string file, JsonProperty prop, long dataLength)
    {
        string t = prop.Name;
        var v = prop.Value;
        if (v.ValueKind != JsonValueKind.Object) throw new ModelFormatException(file, $"tensor \"{t}\"", "an object {dtype, shape, data_offsets}", v.ValueKind.ToString());
        if (!v.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String)
            throw new ModelFormatException(file, $"tensor \"{t}\"", "a string \"dtype\"", "none");
        if (!DTypes.TryParseSafetensors(dt.GetString()!, out var dtype))
            throw new ModelFormatException(file, $"tensor \"{t}\".dtype", "one of F32 F16 BF16 F64 I8 U8 I16 U16 I32 I64 BOOL", $"\"{dt.GetString()}\"",
                "FP8 and other exotic dtypes are not supported");
        if (!v.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array)
            throw new ModelFormatException(file, $"tensor \"{t}\"", "an array \"shape\"", "none");
        var dims = new List<long>();
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long x) || x < 0)
                throw new ModelFormatException(file, $"tensor \"{t}\".shape", "non-negative integers", d.GetRawText());
            dims.Add(x);
        }
        if (dims.Count > 8) throw new ModelFormatException(file, $"tensor \"{t}\".shape", "at most 8 dimensions", $"{dims.Count}");
        Shape shape;
        long bytes;
        try { shape = new Shape(dims.ToArray()); bytes = dtype.ByteCount(shape.ElementCount); }
        catch (OverflowException) { throw new ModelFormatException(file, $"tensor \"{t}\".shape", "an element count that fits in 64 bits", $"[{string.Join(", ", dims)}]"); }
        if (!v.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw new ModelFormatException(file, $"tensor \"{t}\"", "\"data_offsets\": [begin, end]", off.ValueKind == JsonValueKind.Undefined ? "none" : off.GetRawText());
        long begin = ReadOffset(file, t, off[0]), end = ReadOffset(file, t, off[1]);
        if (end < begin || end > dataLength)
            throw new ModelFormatException(file, $"tensor \"{t}\".data_offsets", $"0 <= begin <= end <= {dataLength} (the data section)", $"[{begin}, {end}]",
                "the file is truncated or the header is corrupt");
        if (end - begin != bytes)
            throw new ModelFormatException(file, $"tensor \"{t}\"", $"{bytes} bytes for {dtype} {shape}", $"{end - begin} bytes in data_offsets [{begin}, {end}]");
        return new SafetensorsEntry(t, dtype, shape, begin, bytes);
    }

    private static long ReadOffset(string file, string t, JsonElement e)
    {
        if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt64(out long x) || x < 0)
            throw new ModelFormatException(file, $"tensor \"{t}\".data_offsets", "non-negative integers", e.GetRawText());
        return x;
    }

    private static void CheckNoOverlap(string file, List<SafetensorsEntry> entries)
    {
        var sorted = entries.Where(e => e.ByteLength > 0).OrderBy(e => e.DataOffset).ToList();
        for (int i = 1; i < sorted.Count; i++)
            if (sorted[i].DataOffset < sorted[i - 1].DataOffset + sorted[i - 1].ByteLength)
                throw new ModelFormatException(file, $"tensor \"{sorted[i].Name}\"", $"data starting at or after {sorted[i - 1].DataOffset + sorted[i - 1].ByteLength}",
                    $"offset {sorted[i].DataOffset}, overlapping \"{sorted[i - 1].Name}\"");
    }

    public bool Contains(string name) => _entries.ContainsKey(name);
    public SafetensorsEntry Entry(string name) => _entries.TryGetValue(name, out var e) ? e
        : throw new ModelFormatException(Path, $"tensor \"{name}\"", "a tensor of that name", "none", $"the file has {_entries.Count} tensors, e.g. {string.Join(", ", _entries.Keys.Take(3))}");

    /// <summary>A zero-copy read-only view of the named tensor.</summary>
    public Tensor Get(string name)
    {
        var e = Entry(name);
        return new Tensor(e.DType, e.Shape, Storage, DataStart + e.DataOffset, ownsStorage: false) { Name = name };
    }

    /// <summary>The named tensor, checked against the shape (and dtype, when given) the caller expects.</summary>
    public Tensor Get(string name, Shape expectedShape, DType? expectedDType = null)
    {
        var e = Entry(name);
        if (e.Shape != expectedShape) throw new ModelFormatException(Path, $"tensor \"{name}\"", $"shape {expectedShape}", $"{e.Shape}", "the config does not match the weights");
        if (expectedDType is { } d && e.DType != d) throw new ModelFormatException(Path, $"tensor \"{name}\"", $"dtype {d}", $"{e.DType}");
        return Get(name);
    }

    public void Dispose() { if (_ownsStorage) Storage.Dispose(); }
}

/// <summary>
/// A Hugging Face checkpoint folder: model.safetensors, or shards listed by model.safetensors.index.json
/// ({"weight_map": {tensor: file}}). Every shard is mapped once; every listed tensor is checked to exist.
/// </summary>
public sealed class SafetensorsCheckpoint : IDisposable
{
    private readonly Dictionary<string, SafetensorsFile> _byTensor = new();
    private readonly List<SafetensorsFile> _files = new();

    public string Folder { get; }
    public IReadOnlyList<SafetensorsFile> Files => _files;
    public IEnumerable<string> TensorNames => _byTensor.Keys;

    private SafetensorsCheckpoint(string folder) { Folder = folder; }

    public static SafetensorsCheckpoint Open(string folderOrFile)
    {
        string folder = Directory.Exists(folderOrFile) ? folderOrFile : System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(folderOrFile))!;
        var ck = new SafetensorsCheckpoint(folder);
        try
        {
            if (File.Exists(folderOrFile)) { ck.AddFile(folderOrFile); return ck; }
            string index = System.IO.Path.Combine(folder, "model.safetensors.index.json");
            string single = System.IO.Path.Combine(folder, "model.safetensors");
            if (File.Exists(index)) ck.AddIndex(index);
            else if (File.Exists(single)) ck.AddFile(single);
            else
            {
                var any = Directory.GetFiles(folder, "*.safetensors").Order(StringComparer.Ordinal).ToArray();
                if (any.Length == 0)
                    throw new ModelFormatException(folder, "folder", "model.safetensors or model.safetensors.index.json", "neither",
                        "point --model at a Hugging Face checkpoint folder");
                foreach (var f in any) ck.AddFile(f);
            }
            return ck;
        }
        catch { ck.Dispose(); throw; }
    }

    private void AddFile(string path)
    {
        var f = SafetensorsFile.Open(path);
        _files.Add(f);
        foreach (var e in f.Entries)
            if (!_byTensor.TryAdd(e.Name, f))
                throw new ModelFormatException(path, $"tensor \"{e.Name}\"", "each tensor in one shard", $"it also in {_byTensor[e.Name].Path}");
    }

    private void AddIndex(string index)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllBytes(index)); }
        catch (JsonException e) { throw new ModelFormatException(index, "file", "valid JSON", e.Message, null, e); }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new ModelFormatException(index, "weight_map", "an object {tensor: shard file}", "none");
            var byFile = new Dictionary<string, SafetensorsFile>();
            foreach (var p in map.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.String) throw new ModelFormatException(index, $"weight_map.{p.Name}", "a file name", p.Value.ValueKind.ToString());
                string shard = p.Value.GetString()!;
                if (shard.Contains('/') || shard.Contains('\\') || shard.Contains(".."))
                    throw new ModelFormatException(index, $"weight_map.{p.Name}", "a file name inside the checkpoint folder", $"\"{shard}\"");
                if (!byFile.TryGetValue(shard, out var f))
                {
                    string path = System.IO.Path.Combine(Folder, shard);
                    if (!File.Exists(path)) throw new ModelFormatException(index, $"weight_map.{p.Name}", $"shard {shard} to exist", "no such file", "a shard is missing: download it again");
                    f = SafetensorsFile.Open(path);
                    _files.Add(f);
                    byFile[shard] = f;
                }
                if (!f.Contains(p.Name)) throw new ModelFormatException(f.Path, $"tensor \"{p.Name}\"", "the tensor the index places here", "none");
                _byTensor[p.Name] = f;
            }
        }
    }

    public bool Contains(string name) => _byTensor.ContainsKey(name);

    public SafetensorsEntry Entry(string name) => Owner(name).Entry(name);

    /// <summary>The shard file holding the tensor (for error messages).</summary>
    public string FileOf(string name) => Owner(name).Path;

    public Tensor Get(string name) => Owner(name).Get(name);

    public Tensor Get(string name, Shape expectedShape, DType? expectedDType = null) => Owner(name).Get(name, expectedShape, expectedDType);

    private SafetensorsFile Owner(string name) => _byTensor.TryGetValue(name, out var f) ? f
        : throw new ModelFormatException(Folder, $"tensor \"{name}\"", "a tensor of that name in the checkpoint", "none",
            "the checkpoint does not match the architecture in config.json");

    public void Dispose() { foreach (var f in _files) f.Dispose(); }
}
