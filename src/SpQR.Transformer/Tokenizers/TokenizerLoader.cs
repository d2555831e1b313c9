// Finds the tokenizer for a model: an explicit file (.model SentencePiece, .json Hugging Face BPE, .bin llama2.c,
// .gguf by its tokenizer.ggml.model), else tokenizer.model / tokenizer.json in the model folder, else a llama2.c
// tokenizer.bin beside a .bin checkpoint.
using SpQR.Tensors.IO;

namespace SpQR.Transformer.Tokenizers;

public static class TokenizerLoader
{
    public static ITokenizer Load(string modelPath, string? tokenizerPath, int vocabSize)
    {
        if (tokenizerPath is not null) return FromFile(tokenizerPath, vocabSize);
        string folder = Directory.Exists(modelPath) ? modelPath : Path.GetDirectoryName(Path.GetFullPath(modelPath))!;
        foreach (var name in new[] { "tokenizer.model", "tokenizer.json" })
            if (File.Exists(Path.Combine(folder, name))) return FromFile(Path.Combine(folder, name), vocabSize);
        if (!Directory.Exists(modelPath))
            foreach (var name in new[] { "tokenizer.bin", $"tok{vocabSize}.bin" })
                if (File.Exists(Path.Combine(folder, name))) return FromFile(Path.Combine(folder, name), vocabSize);
        throw new FileNotFoundException($"no tokenizer found for {modelPath}: pass --tokenizer (tokenizer.model, tokenizer.json, a llama2.c tokenizer.bin or a .gguf)");
    }

    public static ITokenizer FromFile(string path, int vocabSize)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"tokenizer not found: {path}", path);
        string ext = Path.GetExtension(path).ToLowerInvariant();
        ITokenizer t = ext switch
        {
            ".model" => SentencePieceBpe.Load(path),
            ".json" => ByteLevelBpe.FromTokenizerJson(path),
            ".gguf" => FromGguf(path),
            _ => Llama2cTokenizer.Load(path, vocabSize),
        };
        if (t.VocabSize > vocabSize)
            throw new ModelFormatException(path, "vocabulary", $"at most the model's {vocabSize} tokens", $"{t.VocabSize}", "the tokenizer belongs to another model");
        return t;
    }

    private static ITokenizer FromGguf(string path)
    {
        using var g = GgufFile.Open(path);
        return g.Get<string>("tokenizer.ggml.model") == "llama" ? SentencePieceBpe.FromGguf(g) : ByteLevelBpe.FromGguf(g);
    }
}
