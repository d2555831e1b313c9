// Text <-> token ids. Implementations: llama2.c's encode() (Llama2cTokenizer), SentencePiece BPE (SentencePieceBpe,
// from tokenizer.model or GGUF metadata) and byte-level BPE (ByteLevelBpe, Falcon's tokenizer.json or GGUF).
namespace SpQR.Transformer.Tokenizers;

public interface ITokenizer
{
    int VocabSize { get; }
    int? BosId { get; }
    int? EosId { get; }
    /// <summary>Encodes text; adds BOS first when asked and the vocabulary has one.</summary>
    int[] Encode(string text, bool addBos = false);
    /// <summary>The bytes a token stands for in context (prev: the token before it, -1 at the start).</summary>
    byte[] TokenBytes(int prev, int token);
    /// <summary>Decodes a whole sequence to text (invalid UTF-8 becomes U+FFFD): the tokens' bytes in context, joined.</summary>
    string Decode(ReadOnlySpan<int> ids)
    {
        var bytes = new List<byte>();
        int prev = -1;
        foreach (int id in ids) { bytes.AddRange(TokenBytes(prev, id)); prev = id; }
        return System.Text.Encoding.UTF8.GetString(bytes.ToArray());
    }
}

/// <summary>Streams token bytes into text, holding back incomplete UTF-8 sequences until they complete.</summary>
public sealed class StreamingDecoder(ITokenizer tokenizer)
{
    private readonly List<byte> _pending = new();
    private int _prev = -1;

    public string Push(int token)
    {
        _pending.AddRange(tokenizer.TokenBytes(_prev, token));
        _prev = token;
        int complete = CompletePrefix(_pending);
        if (complete == 0) return "";
        string s = System.Text.Encoding.UTF8.GetString(_pending.GetRange(0, complete).ToArray());
        _pending.RemoveRange(0, complete);
        return s;
    }

    public string Flush()
    {
        string s = System.Text.Encoding.UTF8.GetString(_pending.ToArray());
        _pending.Clear();
        return s;
    }

    // length of the longest prefix that does not end inside a multi-byte UTF-8 sequence
    private static int CompletePrefix(List<byte> b)
    {
        int n = b.Count;
        for (int back = 1; back <= Math.Min(3, n); back++)
        {
            byte c = b[n - back];
            if ((c & 0xC0) == 0x80) continue; // continuation byte: look further back
            int need = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
            return need > back ? n - back : n;
        }
        return n;
    }
}
