// Byte-level BPE (GPT-2 family; Falcon) from a Hugging Face tokenizer.json or GGUF metadata (tokenizer.ggml.model
// "gpt2": tokens + merges). Pre-tokenization is Falcon's, as its tokenizer.json declares it:
//   Punctuation (contiguous runs) → ByteLevel (GPT-2 regex, bytes mapped to printable code points)
//   → Digits (contiguous runs) → Split on "[0-9][0-9][0-9]" (isolated)
// then each piece is merged by rank (lowest first) and mapped to ids. Decoding maps the code points back to bytes.
// Special added tokens (">>TITLE<<", ...) are not matched inside text.
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using SpQR.Tensors.IO;

namespace SpQR.Transformer.Tokenizers;

public sealed partial class ByteLevelBpe : ITokenizer
{
    private readonly string[] _tokens;
    private readonly Dictionary<string, int> _ids;
    private readonly Dictionary<(string, string), int> _ranks;
    private readonly Dictionary<string, int[]> _cache = new();
    private static readonly char[] ByteToChar = BuildByteMap();
    private static readonly Dictionary<char, byte> CharToByte = ByteToChar.Select((c, b) => (c, (byte)b)).ToDictionary(p => p.c, p => p.Item2);

    public int VocabSize => _tokens.Length;
    public int? BosId { get; }
    public int? EosId { get; }

    public ByteLevelBpe(string[] tokens, IEnumerable<(string A, string B)> merges, int? bos, int? eos)
    {
        _tokens = tokens;
        _ids = new Dictionary<string, int>(tokens.Length);
        for (int i = 0; i < tokens.Length; i++) _ids.TryAdd(tokens[i], i);
        _ranks = new Dictionary<(string, string), int>();
        int r = 0;
        foreach (var m in merges) _ranks.TryAdd(m, r++);
        BosId = bos; EosId = eos;
    }

    // GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to 256 + n
    private static char[] BuildByteMap()
    {
        var map = new char[256];
        int n = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            map[b] = printable ? (char)b : (char)(256 + n++);
        }
        return map;
    }

    public static ByteLevelBpe FromTokenizerJson(string path)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllBytes(path)); }
        catch (JsonException e) { throw new ModelFormatException(path, "file", "valid JSON", e.Message, null, e); }
        using (doc)
        {
            var root = doc.RootElement;
            if (!root.TryGetProperty("model", out var model) || model.GetProperty("type").GetString() != "BPE")
                throw new NotSupportedException($"{path}: only BPE tokenizer.json models are supported");
            var vocab = model.GetProperty("vocab");
            var pairs = vocab.EnumerateObject().Select(p => (p.Name, p.Value.GetInt32())).ToList();
            if (root.TryGetProperty("added_tokens", out var added))
                foreach (var a in added.EnumerateArray()) pairs.Add((a.GetProperty("content").GetString()!, a.GetProperty("id").GetInt32()));
            int size = pairs.Max(p => p.Item2) + 1;
            var tokens = new string[size];
            foreach (var (name, id) in pairs) tokens[id] ??= name;
            for (int i = 0; i < size; i++) tokens[i] ??= "";
            var merges = model.GetProperty("merges").EnumerateArray().Select(m => m.ValueKind == JsonValueKind.String
                ? Split(m.GetString()!) : (m[0].GetString()!, m[1].GetString()!)).ToList();
            int? eos = Array.IndexOf(tokens, "<|endoftext|>") is >= 0 and var e ? e : null;
            return new ByteLevelBpe(tokens, merges, null, eos);
        }
    }

    public static ByteLevelBpe FromGguf(GgufFile g)
    {
        string model = g.Get<string>("tokenizer.ggml.model");
        if (model != "gpt2") throw new NotSupportedException($"{g.Path}: tokenizer.ggml.model \"{model}\" is not byte-level BPE (\"gpt2\")");
        var tokens = g.Get<string[]>("tokenizer.ggml.tokens");
        var merges = g.Get<string[]>("tokenizer.ggml.merges").Select(Split);
        int? bos = g.TryGet<uint>("tokenizer.ggml.bos_token_id", out var b) ? (int)b : null;
        int? eos = g.TryGet<uint>("tokenizer.ggml.eos_token_id", out var e) ? (int)e : null;
        return new ByteLevelBpe(tokens, merges, bos, eos);
    }

    private static (string, string) Split(string merge)
    {
        int sp = merge.IndexOf(' ', 1);
        if (sp < 0) throw new FormatException($"merge \"{merge}\" has no space");
        return (merge[..sp], merge[(sp + 1)..]);
    }

    [GeneratedRegex(@"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+")]
    private static partial Regex Gpt2Pattern();

    [GeneratedRegex(@"\p{Nd}+|\P{Nd}+")]
    private static partial Regex DigitRuns();

    [GeneratedRegex(@"[0-9][0-9][0-9]")]
    private static partial Regex ThreeDigits();

    private static bool IsPunctuation(string s, int i)
    {
        char c = s[i];
        if (c < 128) return char.IsAsciiLetterOrDigit(c) is false && c > ' ' && c != 127;
        var cat = char.GetUnicodeCategory(s, i);
        return cat is UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation or UnicodeCategory.OpenPunctuation
            or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation or UnicodeCategory.FinalQuotePunctuation
            or UnicodeCategory.OtherPunctuation;
    }

    /// <summary>Falcon's pre-tokenization: the pieces BPE runs on, already in the byte-level alphabet.</summary>
    internal static List<string> PreTokenize(string text)
    {
        // 1. Punctuation, contiguous: runs of punctuation are pieces of their own
        var p1 = new List<string>();
        int start = 0;
        for (int i = 0; i < text.Length;)
        {
            int len = char.IsSurrogatePair(text, i) ? 2 : 1;
            bool punct = IsPunctuation(text, i);
            int j = i + len;
            if (punct)
            {
                if (i > start) p1.Add(text[start..i]);
                while (j < text.Length && IsPunctuation(text, j)) j += char.IsSurrogatePair(text, j) ? 2 : 1;
                p1.Add(text[i..j]);
                start = j;
            }
            i = j;
        }
        if (start < text.Length) p1.Add(text[start..]);
        // 2. ByteLevel: GPT-2 regex, then bytes -> printable code points
        var p2 = new List<string>();
        foreach (var piece in p1)
            foreach (Match m in Gpt2Pattern().Matches(piece))
            {
                var sb = new StringBuilder();
                foreach (byte b in Encoding.UTF8.GetBytes(m.Value)) sb.Append(ByteToChar[b]);
                p2.Add(sb.ToString());
            }
        // 3. Digits (contiguous) and 4. isolated three-digit runs
        var p3 = new List<string>();
        foreach (var piece in p2)
            foreach (Match m in DigitRuns().Matches(piece))
            {
                int last = 0;
                foreach (Match d in ThreeDigits().Matches(m.Value))
                {
                    if (d.Index > last) p3.Add(m.Value[last..d.Index]);
                    p3.Add(d.Value);
                    last = d.Index + d.Length;
                }
                if (last < m.Value.Length) p3.Add(m.Value[last..]);
            }
        return p3;
    }

    public int[] Encode(string text, bool addBos = false)
    {
        var ids = new List<int>();
        if (addBos && BosId is { } bos) ids.Add(bos);
        foreach (var piece in PreTokenize(text)) ids.AddRange(Bpe(piece));
        return ids.ToArray();
    }

    private int[] Bpe(string piece)
    {
        if (_cache.TryGetValue(piece, out var cached)) return cached;
        var word = new List<string>();
        for (int i = 0; i < piece.Length; i++) word.Add(piece[i].ToString());
        while (word.Count > 1)
        {
            int best = int.MaxValue, at = -1;
            for (int i = 0; i + 1 < word.Count; i++)
                if (_ranks.TryGetValue((word[i], word[i + 1]), out int r) && r < best) { best = r; at = i; }
            if (at < 0) break;
            var (a, b) = (word[at], word[at + 1]);
            var merged = new List<string>(word.Count);
            for (int i = 0; i < word.Count; i++)
            {
                if (i + 1 < word.Count && word[i] == a && word[i + 1] == b) { merged.Add(a + b); i++; }
                else merged.Add(word[i]);
            }
            word = merged;
        }
        var ids = new int[word.Count];
        for (int i = 0; i < word.Count; i++)
            ids[i] = _ids.TryGetValue(word[i], out int id) ? id
                : throw new InvalidOperationException($"byte-level piece \"{word[i]}\" is not in the vocabulary: the vocabulary lacks a base byte");
        if (_cache.Count < 100_000) _cache[piece] = ids;
        return ids;
    }

    public byte[] TokenBytes(int prev, int token)
    {
        if ((uint)token >= (uint)_tokens.Length) throw new ArgumentOutOfRangeException(nameof(token), token, $"outside the vocabulary of {_tokens.Length}");
        var s = _tokens[token];
        var bytes = new byte[s.Length];
        for (int i = 0; i < s.Length; i++)
        {
            if (!CharToByte.TryGetValue(s[i], out bytes[i])) return Encoding.UTF8.GetBytes(s); // special tokens are plain text
        }
        return bytes;
    }

}
