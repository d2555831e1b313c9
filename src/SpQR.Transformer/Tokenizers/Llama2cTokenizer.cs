// llama2.c tokenizer.bin / tok512.bin: int32 max_token_length, then per token a float32 score, an int32 length and
// the bytes. encode() as in run.c: optional BOS, a dummy-prefix " " when the text is non-empty, each UTF-8 code
// point looked up (byte fallback id = byte + 3), then repeatedly merge the adjacent pair with the best score
// (leftmost on ties) while the merged string is in the vocabulary. Decode strips the space after BOS and maps
// "<0xHH>" to raw bytes.
using System.Text;
using SpQR.Tensors.IO;

namespace SpQR.Transformer.Tokenizers;

public sealed class Llama2cTokenizer : ITokenizer
{
    private readonly byte[][] _vocab;
    private readonly float[] _scores;
    private readonly Dictionary<string, int> _lookup; // token bytes as Latin-1 string -> id (first wins, like run.c's sorted search)

    public int VocabSize => _vocab.Length;
    public int? BosId => 1;
    public int? EosId => 2;

    private Llama2cTokenizer(byte[][] vocab, float[] scores)
    {
        _vocab = vocab; _scores = scores;
        _lookup = new Dictionary<string, int>(vocab.Length);
        for (int i = 0; i < vocab.Length; i++) _lookup.TryAdd(Latin1(vocab[i]), i);
    }

    private static string Latin1(ReadOnlySpan<byte> b) => Encoding.Latin1.GetString(b);

    /// <summary>Reads a tokenizer.bin; vocabSize = the model's vocabulary (null: read until the end of the file).</summary>
    public static Llama2cTokenizer Load(string path, int? vocabSize = null)
    {
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (FileNotFoundException) { throw new FileNotFoundException($"tokenizer not found: {path}", path); }
        using var ms = new MemoryStream(bytes);
        using var r = new BinaryReader(ms);
        if (bytes.Length < 4) throw new ModelFormatException(path, "offset 0", "an int32 max_token_length", $"{bytes.Length} bytes");
        int maxLen = r.ReadInt32();
        if (maxLen <= 0 || maxLen > 1 << 16) throw new ModelFormatException(path, "offset 0", "max_token_length 1..65536", $"{maxLen}", "not a llama2.c tokenizer");
        var vocab = new List<byte[]>(); var scores = new List<float>();
        while (ms.Position < ms.Length && (vocabSize is null || vocab.Count < vocabSize))
        {
            long at = ms.Position;
            if (ms.Length - at < 8) throw new ModelFormatException(path, $"offset {at}", "a float score and an int32 length", $"{ms.Length - at} bytes", "the file is truncated");
            float score = r.ReadSingle(); int len = r.ReadInt32();
            if (len < 0 || len > maxLen || len > ms.Length - ms.Position)
                throw new ModelFormatException(path, $"offset {at + 4}", $"a token length 0..{Math.Min(maxLen, ms.Length - ms.Position)}", $"{len}");
            vocab.Add(r.ReadBytes(len)); scores.Add(score);
        }
        if (vocabSize is { } v && vocab.Count != v)
            throw new ModelFormatException(path, "end of file", $"{v} tokens (the model's vocab_size)", $"{vocab.Count}");
        return new Llama2cTokenizer(vocab.ToArray(), scores.ToArray());
    }

    public int[] Encode(string text, bool addBos = false)
    {
        var tokens = new List<int>();
        if (addBos) tokens.Add(1);
        byte[] s = Encoding.UTF8.GetBytes(text);
        if (s.Length > 0 && _lookup.TryGetValue(" ", out int space)) tokens.Add(space); // dummy prefix
        for (int i = 0; i < s.Length;)
        {
            // one UTF-8 code point: a lead byte and up to 3 continuation bytes (run.c's grouping)
            int j = i + 1;
            while (j < s.Length && (s[j] & 0xC0) == 0x80 && j - i < 4) j++;
            if (_lookup.TryGetValue(Latin1(s.AsSpan(i, j - i)), out int id)) tokens.Add(id);
            else for (int k = i; k < j; k++) tokens.Add(s[k] + 3);
            i = j;
        }
        // merge the best-scoring adjacent pair until none merges
        while (true)
        {
            float best = float.NegativeInfinity; int bestId = -1, bestIdx = -1;
            for (int i = 0; i < tokens.Count - 1; i++)
            {
                var merged = Latin1([.. _vocab[tokens[i]], .. _vocab[tokens[i + 1]]]);
                if (_lookup.TryGetValue(merged, out int id) && _scores[id] > best) { best = _scores[id]; bestId = id; bestIdx = i; }
            }
            if (bestIdx < 0) break;
            tokens[bestIdx] = bestId;
            tokens.RemoveAt(bestIdx + 1);
        }
        return tokens.ToArray();
    }

    public byte[] TokenBytes(int prev, int token)
    {
        if ((uint)token >= (uint)_vocab.Length) throw new ArgumentOutOfRangeException(nameof(token), token, $"outside the vocabulary of {_vocab.Length}");
        if (token is 1 or 2) return []; // BOS / EOS are control tokens, not text
        var piece = _vocab[token];
        if (prev == 1 && piece.Length > 0 && piece[0] == (byte)' ') return piece[1..];
        if (piece.Length == 6 && piece[0] == '<' && piece[1] == '0' && piece[2] == 'x' && piece[5] == '>' &&
            byte.TryParse(Encoding.ASCII.GetString(piece, 3, 2), System.Globalization.NumberStyles.HexNumber, null, out byte b))
            return [b];
        return piece;
    }

}
