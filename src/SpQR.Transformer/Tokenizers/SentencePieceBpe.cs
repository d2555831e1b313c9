// SentencePiece BPE (the LLaMA / Llama-2 tokenizer) from tokenizer.model or GGUF metadata.
// Encoding as SentencePiece's BPE model does it: spaces become '▁' (U+2581) with a dummy '▁' prefix; the text is
// split into characters; the adjacent pair whose concatenation is a vocabulary piece with the highest score is
// merged first (leftmost on equal scores), repeatedly; characters that are no piece fall back to <0xHH> byte tokens.
// tokenizer.model is a protobuf ModelProto: pieces (field 1: piece, score, type) and normalizer_spec (field 3).
using System.Text;
using SpQR.Tensors.IO;

namespace SpQR.Transformer.Tokenizers;

public sealed class SentencePieceBpe : ITokenizer
{
    public enum PieceType { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 }

    private readonly string[] _pieces;
    private readonly float[] _scores;
    private readonly PieceType[] _types;
    private readonly Dictionary<string, int> _ids = new();
    private readonly int[] _byteIds = new int[256];
    private readonly bool _addDummyPrefix;

    public int VocabSize => _pieces.Length;
    public int? BosId { get; }
    public int? EosId { get; }
    public int UnkId { get; }

    public SentencePieceBpe(string[] pieces, float[] scores, PieceType[] types, bool addDummyPrefix = true, int? bos = 1, int? eos = 2)
    {
        _pieces = pieces; _scores = scores; _types = types; _addDummyPrefix = addDummyPrefix;
        Array.Fill(_byteIds, -1);
        UnkId = 0;
        for (int i = 0; i < pieces.Length; i++)
        {
            if (types[i] == PieceType.Unknown) UnkId = i;
            if (types[i] == PieceType.Byte && pieces[i].Length == 6 && pieces[i].StartsWith("<0x"))
                _byteIds[Convert.ToInt32(pieces[i].Substring(3, 2), 16)] = i;
            else if (types[i] is PieceType.Normal or PieceType.UserDefined) _ids.TryAdd(pieces[i], i);
        }
        BosId = bos; EosId = eos;
    }

    /// <summary>Reads a SentencePiece tokenizer.model (protobuf).</summary>
    public static SentencePieceBpe Load(string path)
    {
        byte[] b = File.ReadAllBytes(path);
        var pieces = new List<string>(); var scores = new List<float>(); var types = new List<PieceType>();
        bool addDummyPrefix = true;
        int pos = 0;
        try
        {
            while (pos < b.Length)
            {
                var (field, wire) = Protobuf.Key(b, ref pos);
                if (field == 1 && wire == 2)
                {
                    var (start, end) = Protobuf.Bytes(b, ref pos);
                    string piece = ""; float score = 0; var type = PieceType.Normal;
                    int p = start;
                    while (p < end)
                    {
                        var (f, w) = Protobuf.Key(b, ref p);
                        if (f == 1 && w == 2) { var (s, e) = Protobuf.Bytes(b, ref p); piece = Encoding.UTF8.GetString(b, s, e - s); }
                        else if (f == 2 && w == 5) { score = BitConverter.ToSingle(b, p); p += 4; }
                        else if (f == 3 && w == 0) type = (PieceType)Protobuf.Varint(b, ref p);
                        else Protobuf.Skip(b, ref p, w);
                        if (p > end) throw new IndexOutOfRangeException();
                    }
                    pieces.Add(piece); scores.Add(score); types.Add(type);
                }
                else if (field == 3 && wire == 2)
                {
                    var (start, end) = Protobuf.Bytes(b, ref pos);
                    int p = start;
                    while (p < end)
                    {
                        var (f, w) = Protobuf.Key(b, ref p);
                        if (f == 3 && w == 0) addDummyPrefix = Protobuf.Varint(b, ref p) != 0;
                        else Protobuf.Skip(b, ref p, w);
                    }
                }
                else Protobuf.Skip(b, ref pos, wire);
            }
        }
        catch (Exception e) when (e is IndexOutOfRangeException or ArgumentOutOfRangeException or ArgumentException or OverflowException)
        {
            throw new ModelFormatException(path, $"offset {pos}", "a SentencePiece ModelProto", "malformed protobuf", "the file is truncated or not a tokenizer.model", e);
        }
        if (pieces.Count == 0) throw new ModelFormatException(path, "pieces", "at least one vocabulary piece", "none", "not a SentencePiece model");
        int? bos = pieces.IndexOf("<s>") is >= 0 and var bi ? bi : null, eos = pieces.IndexOf("</s>") is >= 0 and var ei ? ei : null;
        return new SentencePieceBpe([.. pieces], [.. scores], [.. types], addDummyPrefix, bos, eos);
    }

    /// <summary>From GGUF metadata (tokenizer.ggml.model = "llama").</summary>
    public static SentencePieceBpe FromGguf(GgufFile g)
    {
        string model = g.Get<string>("tokenizer.ggml.model");
        if (model != "llama") throw new NotSupportedException($"{g.Path}: tokenizer.ggml.model \"{model}\" is not SentencePiece (\"llama\")");
        var tokens = g.Get<string[]>("tokenizer.ggml.tokens");
        var scores = g.TryGet<float[]>("tokenizer.ggml.scores", out var sc) ? sc : new float[tokens.Length];
        var types = g.TryGet<int[]>("tokenizer.ggml.token_type", out var tt) ? tt.Select(t => (PieceType)t).ToArray() : Enumerable.Repeat(PieceType.Normal, tokens.Length).ToArray();
        if (scores.Length != tokens.Length || types.Length != tokens.Length)
            throw new ModelFormatException(g.Path, "tokenizer.ggml.scores/token_type", $"{tokens.Length} entries like tokenizer.ggml.tokens", $"{scores.Length}/{types.Length}");
        bool prefix = !g.TryGet<bool>("tokenizer.ggml.add_space_prefix", out var asp) || asp;
        int? bos = g.TryGet<uint>("tokenizer.ggml.bos_token_id", out var b) ? (int)b : 1;
        int? eos = g.TryGet<uint>("tokenizer.ggml.eos_token_id", out var e) ? (int)e : 2;
        return new SentencePieceBpe(tokens, scores, types, prefix, bos, eos);
    }

    public int[] Encode(string text, bool addBos = false)
    {
        var result = new List<int>();
        if (addBos && BosId is { } bos) result.Add(bos);
        if (text.Length == 0) return result.ToArray();
        string norm = (_addDummyPrefix ? "\u2581" : "") + text.Replace(' ', '\u2581');
        // symbols: one per Unicode scalar (surrogate pairs stay together)
        var sym = new List<string>();
        for (int i = 0; i < norm.Length;)
        {
            int n = char.IsHighSurrogate(norm[i]) && i + 1 < norm.Length && char.IsLowSurrogate(norm[i + 1]) ? 2 : 1;
            sym.Add(norm.Substring(i, n)); i += n;
        }
        // linked list of symbols and a max-queue of mergeable bigrams ordered by (score desc, left position asc)
        int count = sym.Count;
        var text_ = sym.ToArray();
        var prev = new int[count]; var next = new int[count];
        for (int i = 0; i < count; i++) { prev[i] = i - 1; next[i] = i + 1 < count ? i + 1 : -1; }
        var queue = new PriorityQueue<(int Left, int Right, string Merged), (float NegScore, int Left)>();
        void TryPush(int l, int r)
        {
            if (l < 0 || r < 0) return;
            string m = text_[l] + text_[r];
            if (_ids.TryGetValue(m, out int id)) queue.Enqueue((l, r, m), (-_scores[id], l));
        }
        for (int i = 0; i + 1 < count; i++) TryPush(i, i + 1);
        while (queue.TryDequeue(out var bg, out _))
        {
            // stale: one side already merged away or changed since the bigram was queued
            if (text_[bg.Left].Length == 0 || text_[bg.Right].Length == 0 || next[bg.Left] != bg.Right || text_[bg.Left] + text_[bg.Right] != bg.Merged) continue;
            text_[bg.Left] = bg.Merged; text_[bg.Right] = "";
            next[bg.Left] = next[bg.Right];
            if (next[bg.Right] >= 0) prev[next[bg.Right]] = bg.Left;
            TryPush(prev[bg.Left], bg.Left);
            TryPush(bg.Left, next[bg.Left]);
        }
        for (int i = 0; i >= 0 && i < count; i = next[i])
        {
            if (_ids.TryGetValue(text_[i], out int id)) { result.Add(id); continue; }
            foreach (byte c in Encoding.UTF8.GetBytes(text_[i])) result.Add(_byteIds[c] >= 0 ? _byteIds[c] : UnkId);
        }
        return result.ToArray();
    }

    public byte[] TokenBytes(int prev, int token)
    {
        if ((uint)token >= (uint)_pieces.Length) throw new ArgumentOutOfRangeException(nameof(token), token, $"outside the vocabulary of {_pieces.Length}");
        var t = _types[token];
        if (t == PieceType.Byte) return [Convert.ToByte(_pieces[token].Substring(3, 2), 16)];
        if (t is PieceType.Control or PieceType.Unknown or PieceType.Unused) return [];
        string s = _pieces[token].Replace('\u2581', ' ');
        // the dummy prefix: drop the leading space of the first piece (after BOS or at the start)
        if (_addDummyPrefix && (prev < 0 || prev == BosId) && s.StartsWith(' ')) s = s[1..];
        return Encoding.UTF8.GetBytes(s);
    }

}

/// <summary>Just enough protobuf wire format for tokenizer.model; every read is bounds-checked by the caller's catch.</summary>
internal static class Protobuf
{
    public static ulong Varint(byte[] b, ref int p)
    {
        ulong v = 0;
        for (int shift = 0; shift < 64; shift += 7)
        {
            byte c = b[p++];
            v |= (ulong)(c & 0x7F) << shift;
            if ((c & 0x80) == 0) return v;
        }
        throw new OverflowException("varint longer than 10 bytes");
    }

    public static (int Field, int Wire) Key(byte[] b, ref int p) { ulong k = Varint(b, ref p); return ((int)(k >> 3), (int)(k & 7)); }

    public static (int Start, int End) Bytes(byte[] b, ref int p)
    {
        ulong len = Varint(b, ref p);
        if (len > (ulong)(b.Length - p)) throw new ArgumentOutOfRangeException(nameof(b), "length-delimited field past the end");
        int start = p; p += (int)len; return (start, p);
    }

    public static void Skip(byte[] b, ref int p, int wire)
    {
        switch (wire)
        {
            case 0: Varint(b, ref p); break;
            case 1: p += 8; break;
            case 2: Bytes(b, ref p); break;
            case 5: p += 4; break;
            default: throw new ArgumentException($"unsupported protobuf wire type {wire}");
        }
        if (p > b.Length) throw new ArgumentOutOfRangeException(nameof(b), "field past the end");
    }
}
