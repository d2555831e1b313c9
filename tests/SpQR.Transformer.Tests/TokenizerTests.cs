// Tokenizers against llama.cpp's 47-case vocab tests, llama2.c's encode() references and token streams.
using System.Text.Json;
using SpQR.Tensors.IO;
using SpQR.TestUtil;
using SpQR.Transformer.Tokenizers;
using Xunit;

namespace SpQR.Transformer.Tests;

public class TokenizerTests
{
    private static List<(string Text, int[] Ids)> VocabCases(string gguf)
    {
        string dir = Fixtures.Path("data", "llamacpp-vocab");
        var inp = File.ReadAllText(Path.Combine(dir, gguf + ".inp")).Split("\n__ggml_vocab_test__\n");
        var outp = File.ReadAllText(Path.Combine(dir, gguf + ".out")).Split('\n');
        Assert.Equal(inp.Length, outp.Length);
        return inp.Zip(outp, (t, o) => (t, o.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray())).ToList();
    }

    private static void CheckAll(ITokenizer tok, List<(string Text, int[] Ids)> cases, string what)
    {
        var failures = new List<string>();
        foreach (var (text, ids) in cases)
        {
            var got = tok.Encode(text);
            if (!got.SequenceEqual(ids)) failures.Add($"{JsonSerializer.Serialize(text)}: expected [{string.Join(' ', ids)}], got [{string.Join(' ', got)}]");
            else if (tok.Decode(got) != text && !(tok is SentencePieceBpe && text.StartsWith(' ') && tok.Decode(got) == text[1..]))
                failures.Add($"{JsonSerializer.Serialize(text)}: decodes to {JsonSerializer.Serialize(tok.Decode(got))}");
        }
        Assert.True(failures.Count == 0, $"{what}: {failures.Count} of {cases.Count} cases fail:\n" + string.Join("\n", failures.Take(8)));
    }

    [SharedFact]
    public void SentencePiece_from_gguf_passes_all_llamacpp_cases()
    {
        using var g = GgufFile.Open(Fixtures.Path("data", "llamacpp-vocab", "ggml-vocab-llama-spm.gguf"));
        CheckAll(SentencePieceBpe.FromGguf(g), VocabCases("ggml-vocab-llama-spm.gguf"), "SPM (GGUF)");
    }

    [SharedFact]
    public void SentencePiece_from_tokenizer_model_passes_all_llamacpp_cases()
    {
        var tok = SentencePieceBpe.Load(Fixtures.Path("data", "llama2-tokenizer", "tokenizer.model"));
        Assert.Equal(32000, tok.VocabSize);
        CheckAll(tok, VocabCases("ggml-vocab-llama-spm.gguf"), "SPM (tokenizer.model)");
    }

    [SharedFact]
    public void Falcon_bpe_from_gguf_and_tokenizer_json_passes_all_llamacpp_cases()
    {
        using var g = GgufFile.Open(Fixtures.Path("data", "llamacpp-vocab", "ggml-vocab-falcon.gguf"));
        var cases = VocabCases("ggml-vocab-falcon.gguf");
        CheckAll(ByteLevelBpe.FromGguf(g), cases, "Falcon BPE (GGUF)");
        CheckAll(ByteLevelBpe.FromTokenizerJson(Fixtures.Path("fixtures", "tokenizers", "falcon", "tokenizer.json")), cases, "Falcon BPE (tokenizer.json)");
    }

    [SharedFact]
    public void Llama2c_encode_matches_the_reference_examples_and_samples()
    {
        var tok = Llama2cTokenizer.Load(Fixtures.Path("data", "stories260K", "tok512.bin"), 512);
        using var doc = JsonDocument.Parse(File.ReadAllText(Fixtures.Path("data", "stories260K", "reference_outputs.json")));
        foreach (var ex in doc.RootElement.GetProperty("encode_examples").EnumerateObject())
        {
            if (ex.Name.StartsWith('_')) continue;
            var expected = ex.Value.EnumerateArray().Select(e => e.GetInt32()).ToArray();
            Assert.Equal(expected, tok.Encode(ex.Name, addBos: true));
        }
        using var f = SafetensorsFile.Open(Fixtures.Path("fixtures", "stories260K", "stories260K-tokens.safetensors"));
        var samples = JsonSerializer.Deserialize<string[]>(f.Metadata["samples"])!;
        for (int i = 0; i < samples.Length; i++)
        {
            var expected = f.Get($"sample_{i}").ToInt32Array();
            if (expected is [-1]) expected = []; // "no tokens"
            Assert.Equal(expected, tok.Encode(samples[i]));
            Assert.Equal(samples[i], ((ITokenizer)tok).Decode([1, .. tok.Encode(samples[i])]));
        }
    }

    [SharedFact]
    public void Llama2c_corpus_protocol_reproduces_the_tinystories_stream()
    {
        var tok = Llama2cTokenizer.Load(Fixtures.Path("data", "stories260K", "tok512.bin"), 512);
        var stream = new List<int>();
        foreach (var line in File.ReadAllText(Fixtures.Path("data", "tinystories", "tinystories_train_head.txt")).Split('\n'))
        {
            if (line.Length > 0) stream.AddRange(tok.Encode(line));
            stream.Add(13);
        }
        using var f = SafetensorsFile.Open(Fixtures.Path("fixtures", "stories260K", "stories260K-tokens.safetensors"));
        var expected = f.Get("tinystories").ToInt32Array();
        Assert.Equal(expected.Length, stream.Count);
        Assert.Equal(expected, stream.ToArray());
    }

    [Fact]
    public void Streaming_decoder_holds_back_partial_utf8()
    {
        var tok = new FakeBytes();
        var d = new StreamingDecoder(tok);
        Assert.Equal("", d.Push(0));   // 0xC3 (first byte of é)
        Assert.Equal("é", d.Push(1));  // 0xA9
        Assert.Equal("a", d.Push(2));
    }

    private sealed class FakeBytes : ITokenizer
    {
        public int VocabSize => 3; public int? BosId => null; public int? EosId => null;
        public int[] Encode(string text, bool addBos = false) => [];
        public byte[] TokenBytes(int prev, int token) => token switch { 0 => [0xC3], 1 => [0xA9], _ => [(byte)'a'] };
        public string Decode(ReadOnlySpan<int> ids) => "";
    }
}
