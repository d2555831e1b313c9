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

    internal static byte[] Mutate(byte[] original, int seed) => Mutations.Mutate(original, seed);

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
