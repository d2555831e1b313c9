// Truncations and byte mutations of the real model files (FsCheck picks the seeds): a reader either accepts the
// bytes (and every view it hands out stays in bounds) or throws ModelFormatException — never anything else.
using FsCheck.Xunit;
using SpQR.Tensors.IO;
using SpQR.TestUtil;

namespace SpQR.Tensors.Tests;

public class FuzzTests
{
    private static readonly Lazy<byte[]?> Safetensors = Load("fixtures", "hf", "llama-tiny", "model.safetensors");
    private static readonly Lazy<byte[]?> GgufLlama = Load("data", "llamacpp-vocab", "ggml-vocab-llama-spm.gguf");
    private static readonly Lazy<byte[]?> GgufFalcon = Load("data", "llamacpp-vocab", "ggml-vocab-falcon.gguf");
    private static readonly Lazy<byte[]?> Llama2c = Load("data", "stories260K", "stories260K.bin");

    private static Lazy<byte[]?> Load(params string[] parts) => new(() => Fixtures.Available ? File.ReadAllBytes(Fixtures.Path(parts)) : null);

    /// <summary>Deterministic corruption from a seed: truncation, scattered byte changes, or an 8-byte field smash.</summary>
    internal static byte[] Mutate(byte[] original, int seed)
    {
        var r = new Random(seed);
        int mode = r.Next(3);
        if (mode == 0) return original.AsSpan(0, r.Next(original.Length)).ToArray();
        var b = (byte[])original.Clone();
        int Pos() => r.Next(2) == 0 ? r.Next(Math.Min(b.Length, 4096)) : r.Next(b.Length);
        if (mode == 1) { for (int i = 0, n = 1 + r.Next(6); i < n; i++) b[Pos()] = (byte)r.Next(256); }
        else
        {
            int p = Math.Min(Pos(), b.Length - 8);
            ulong v = r.Next(4) switch { 0 => ulong.MaxValue, 1 => 0, 2 => (ulong)long.MaxValue, _ => (ulong)r.NextInt64() };
            BitConverter.TryWriteBytes(b.AsSpan(p), v);
        }
        return b;
    }

    private static void Check(Lazy<byte[]?> file, int seed, Action<PinnedBytesStorage> parse)
    {
        if (file.Value is null) return; // ../shared absent: nothing to fuzz (the fixture tests report the skip)
        var bytes = Mutate(file.Value, seed);
        using var storage = new PinnedBytesStorage(bytes);
        try { parse(storage); }
        catch (ModelFormatException) { }
    }

    [Property(MaxTest = 400)]
    public void Safetensors_mutations_give_only_typed_errors(int seed) => Check(Safetensors, seed, s =>
    {
        using var f = SafetensorsFile.Parse(s, "model.safetensors");
        foreach (var e in f.Entries) { var t = f.Get(e.Name); if (t.ByteLength > 0) _ = t.Bytes[^1]; }
    });

    [Property(MaxTest = 300)]
    public void Gguf_mutations_give_only_typed_errors(int seed) => Check(seed % 4 == 0 ? GgufFalcon : GgufLlama, seed, s =>
    {
        using var f = GgufFile.Parse(s, "vocab.gguf");
        foreach (var t in f.Tensors) _ = t.ByteLength;
        _ = f.Metadata.Count;
    });

    [Property(MaxTest = 300)]
    public void Llama2c_mutations_give_only_typed_errors(int seed) => Check(Llama2c, seed, s =>
    {
        using var ck = Llama2cCheckpoint.Parse(s, "stories260K.bin");
        foreach (var t in ck.Tensors.Values) _ = t.Bytes[^1];
    });
}
