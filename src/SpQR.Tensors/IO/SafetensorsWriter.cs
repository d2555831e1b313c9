// safetensors writer: header JSON (8-byte aligned with trailing spaces, as the reference writer pads), then the
// tensors back to back. Atomic: it writes "<path>.tmp-<random>" in the same folder, flushes it to disk and renames
// it over the final name, so a crash never leaves a truncated file under that name.
using System.Text;
using System.Text.Json;

namespace SpQR.Tensors.IO;

public static class SafetensorsWriter
{
    public static void Write(string path, IEnumerable<(string Name, Tensor Tensor)> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.ToList();
        var names = new HashSet<string>();
        foreach (var (n, _) in list) if (!names.Add(n) || n == "__metadata__") throw new ArgumentException($"duplicate or reserved tensor name \"{n}\"");

        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                w.WriteStartObject("__metadata__");
                foreach (var kv in metadata) w.WriteString(kv.Key, kv.Value);
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (var (n, t) in list)
            {
                w.WriteStartObject(n);
                w.WriteString("dtype", t.DType.SafetensorsName());
                w.WriteStartArray("shape"); foreach (var d in t.Shape.Dims) w.WriteNumberValue(d); w.WriteEndArray();
                w.WriteStartArray("data_offsets"); w.WriteNumberValue(offset); w.WriteNumberValue(offset + t.ByteLength); w.WriteEndArray();
                w.WriteEndObject();
                offset += t.ByteLength;
            }
            w.WriteEndObject();
        }
        var header = ms.ToArray().ToList();
        while (header.Count % 8 != 0) header.Add((byte)' ');

        AtomicFile.Write(path, stream =>
        {
            stream.Write(BitConverter.GetBytes((ulong)header.Count));
            stream.Write(header.ToArray());
            foreach (var (_, t) in list) WriteTensorBytes(stream, t);
        });
    }

    private static unsafe void WriteTensorBytes(Stream s, Tensor t)
    {
        byte* p = t.Pointer;
        long left = t.ByteLength;
        while (left > 0)
        {
            int chunk = (int)Math.Min(left, 1 << 24);
            s.Write(new ReadOnlySpan<byte>(p, chunk));
            p += chunk; left -= chunk;
        }
    }
}

/// <summary>Write-to-temp, flush, rename: the final path holds either the old file or the complete new one.</summary>
public static class AtomicFile
{
    public static void Write(string path, Action<Stream> write)
    {
        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(dir);
        string tmp = Path.Combine(dir, $".{Path.GetFileName(full)}.tmp-{Guid.NewGuid():N}");
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                write(fs);
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { /* best effort: the temp name never loads as a model */ }
            throw;
        }
    }

    public static void WriteAllText(string path, string text) => Write(path, s => s.Write(Encoding.UTF8.GetBytes(text)));
}
