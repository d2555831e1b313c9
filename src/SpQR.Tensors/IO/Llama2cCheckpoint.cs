// llama2.c checkpoints (legacy "version 0" export read by run.c): a header of 7 int32
// (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; vocab_size < 0 means an unshared
// classifier), then float32 arrays, every matrix row-major [out][in]:
//   token_embedding (vocab, dim), rms_att (L, dim), wq (L, dim, dim), wk (L, kv_dim, dim), wv (L, kv_dim, dim),
//   wo (L, dim, dim), rms_ffn (L, dim), w1 (L, hidden, dim), w2 (L, dim, hidden), w3 (L, hidden, dim), rms_final (dim),
//   freq_cis_real (seq, head/2), freq_cis_imag (seq, head/2)  [skipped], wcls (vocab, dim) when unshared.
// Rotary pairs are interleaved (2i, 2i+1). The size is checked exactly against the header before anything maps.
namespace SpQR.Tensors.IO;

public sealed record Llama2cConfig(int Dim, int HiddenDim, int NLayers, int NHeads, int NKvHeads, int VocabSize, int SeqLen, bool SharedClassifier)
{
    public int HeadSize => Dim / NHeads;
    public int KvDim => HeadSize * NKvHeads;
}

public sealed unsafe class Llama2cCheckpoint : IDisposable
{
    public const int HeaderBytes = 28;
    private readonly Dictionary<string, Tensor> _tensors = new();
    private readonly bool _owns;

    public string Path { get; }
    public Llama2cConfig Config { get; }
    public Storage Storage { get; }
    /// <summary>Names as in llama2.c's TransformerWeights: token_embedding_table, rms_att_weight, wq, ... wcls.</summary>
    public IReadOnlyDictionary<string, Tensor> Tensors => _tensors;

    private Llama2cCheckpoint(string path, Llama2cConfig cfg, Storage storage, bool owns) { Path = path; Config = cfg; Storage = storage; _owns = owns; }

    public static Llama2cCheckpoint Open(string path)
    {
        var s = new MappedFileStorage(path);
        try { return Parse(s, path, ownsStorage: true); }
        catch { s.Dispose(); throw; }
    }

    public static Llama2cCheckpoint Parse(Storage storage, string name, bool ownsStorage = false)
    {
        var c = new ByteCursor(storage.ByteLength == 0 ? null : storage.Pointer, storage.ByteLength, name);
        int dim = c.I32("dim"), hidden = c.I32("hidden_dim"), layers = c.I32("n_layers"), heads = c.I32("n_heads"),
            kvHeads = c.I32("n_kv_heads"), vocab = c.I32("vocab_size"), seq = c.I32("seq_len");
        void Check(bool ok, string field, string expected, object found, long offset) { if (!ok) throw new ModelFormatException(name, $"header field {field} (offset {offset})", expected, $"{found}", "not a llama2.c checkpoint, or a newer export version (only the legacy version-0 layout is read)"); }
        Check(dim > 0 && dim <= 1 << 16, "dim", "1..65536", dim, 0);
        Check(hidden > 0 && hidden <= 1 << 18, "hidden_dim", "1..262144", hidden, 4);
        Check(layers > 0 && layers <= 1024, "n_layers", "1..1024", layers, 8);
        Check(heads > 0 && dim % heads == 0, "n_heads", $"a divisor of dim {dim}", heads, 12);
        Check(kvHeads > 0 && heads % kvHeads == 0, "n_kv_heads", $"a divisor of n_heads {heads}", kvHeads, 16);
        Check(vocab != 0 && vocab != int.MinValue && Math.Abs(vocab) <= 1 << 20, "vocab_size", "a non-zero value up to 2^20 in magnitude", vocab, 20);
        Check(seq > 0 && seq <= 1 << 20, "seq_len", "1..2^20", seq, 24);
        int headSize = dim / heads;
        Check(headSize % 2 == 0, "n_heads", "an even head size (rotary pairs)", $"head size {headSize}", 12);
        bool shared = vocab > 0;
        vocab = Math.Abs(vocab);
        var cfg = new Llama2cConfig(dim, hidden, layers, heads, kvHeads, vocab, seq, shared);

        long kvDim = (long)headSize * kvHeads, L = layers;
        var layout = new List<(string Name, long[] Shape)>
        {
            ("token_embedding_table", [vocab, dim]), ("rms_att_weight", [L, dim]), ("wq", [L, dim, dim]), ("wk", [L, kvDim, dim]),
            ("wv", [L, kvDim, dim]), ("wo", [L, dim, dim]), ("rms_ffn_weight", [L, dim]), ("w1", [L, hidden, dim]),
            ("w2", [L, dim, hidden]), ("w3", [L, hidden, dim]), ("rms_final_weight", [dim]),
            ("freq_cis_real", [seq, headSize / 2]), ("freq_cis_imag", [seq, headSize / 2]),
        };
        if (!shared) layout.Add(("wcls", [vocab, dim]));
        long floats = 0;
        foreach (var (_, sh) in layout) floats += new Shape(sh).ElementCount;
        long expected = HeaderBytes + floats * 4;
        if (storage.ByteLength != expected)
            throw new ModelFormatException(name, "file size", $"{expected} bytes for the header's dimensions (dim {dim}, hidden {hidden}, {layers} layers, vocab {vocab}, seq {seq})",
                $"{storage.ByteLength} bytes", storage.ByteLength < expected ? "the file is truncated" : "the header does not describe this file");
        var ck = new Llama2cCheckpoint(name, cfg, storage, ownsStorage);
        long offset = HeaderBytes;
        foreach (var (tname, sh) in layout)
        {
            var t = new Tensor(DType.F32, new Shape(sh), storage, offset, ownsStorage: false) { Name = tname };
            offset += t.ByteLength;
            ck._tensors[tname] = t;
        }
        return ck;
    }

    /// <summary>The classifier: wcls when unshared, else the token embedding.</summary>
    public Tensor Classifier => _tensors.TryGetValue("wcls", out var w) ? w : _tensors["token_embedding_table"];

    public void Dispose() { if (_owns) Storage.Dispose(); }
}
