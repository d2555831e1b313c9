// LLaMA and Falcon decoders resident on the device: weights (F32/F16 dense or SpQR layers, the same bytes as on the
// CPU), KV cache and activations live in device memory. A decode step uploads one embedding row and its position and
// downloads the logits (or one argmax id), nothing per layer; from the second step on, its kernels replay from one CUDA
// graph (GpuGraph). A Forward of several tokens (a prompt, up to MaxBatch) is one batched pass: the same layers over
// (T, ·) buffers with GEMMs (GpuKernels.MatMul.cs; SpQR decoded in the GEMM's tiles) and causal attention of T queries.
// They mirror Models/Llama/LlamaModel.cs and Models/Falcon/FalconModel.cs step by step:
//   LLaMA:  h = rmsnorm(x); q,k,v = Wq h, Wk h, Wv h; rope(q, k); cache ← k, v; a = attention(q, cache); x += Wo a
//           h = rmsnorm(x); x += Wdown (silu(Wgate h) · Wup h)     (q/k/v and gate/up run concurrently: Branches)
//           A decode step folds what it can into the products' launches: x += W·v in the o_proj and down_proj epilogues,
//           the rmsnorm into the q/k/v and gate/up prepare launches (SpQR on the tensor cores), the rotary and the cache
//           writes into the split attention kernel: 9 launches per layer with grouped launches (12 before).
//   Falcon: h = layernorm(x); q,k,v = split(Wqkv h); rope; cache; a = attention; m = ln_mlp(x) or h;
//           x += Wdense a + W4h→h gelu(Wh→4h m)          (the attention and MLP paths run concurrently: Branches)
//   logits = Whead norm(x)
using ILGPU;
using ILGPU.Runtime;
using SpQR.Quant.Formats;
using SpQR.Tensors;
using SpQR.Tensors.Cpu;
using SpQR.Tensors.IO;
using SpQR.Transformer.Config;
using SpQR.Transformer.Loading;
using SpQR.Transformer.Models;

namespace SpQR.Gpu;

/// <summary>A linear layer on the device: dense F32, F16 bits, BF16 bits or SpQR, with an optional F32 bias.</summary>
public sealed class GpuLinear : IDisposable
{
    public int Rows { get; }
    public int Cols { get; }
    private readonly MemoryBuffer1D<float, Stride1D.Dense>? _f32, _bias;
    private readonly MemoryBuffer1D<ushort, Stride1D.Dense>? _f16, _bf16;
    public GpuSpqrLayer? Spqr { get; }
    public long Bytes => (_f32?.LengthInBytes ?? _f16?.LengthInBytes ?? _bf16?.LengthInBytes ?? Spqr!.Bytes) + (_bias?.LengthInBytes ?? 0);
    /// <summary>All device bytes (with an SpQR layer's lane-major copy).</summary>
    public long DeviceBytes => (_f32?.LengthInBytes ?? _f16?.LengthInBytes ?? _bf16?.LengthInBytes ?? Spqr!.DeviceBytes) + (_bias?.LengthInBytes ?? 0);

    public GpuLinear(Accelerator acc, Tensor w, float[]? bias = null)
    {
        Rows = (int)w.Shape[0]; Cols = (int)w.Shape[1];
        // straight from the (memory-mapped) tensor to the device: no host copy of the matrix
        switch (w.DType)
        {
            case DType.F16: _f16 = Upload(acc, w.AsReadOnlySpan<ushort>()); break;
            case DType.BF16: _bf16 = Upload(acc, w.AsReadOnlySpan<ushort>()); break;
            case DType.F32: _f32 = Upload(acc, w.AsReadOnlySpan<float>()); break;
            default: using (var f = w.ToF32()) _f32 = Upload(acc, f.AsReadOnlySpan<float>()); break;
        }
        if (bias is not null) _bias = acc.Allocate1D(bias);
    }

    /// <summary>A device buffer holding data, copied from host memory directly.</summary>
    internal static MemoryBuffer1D<T, Stride1D.Dense> Upload<T>(Accelerator acc, ReadOnlySpan<T> data) where T : unmanaged
    {
        var b = acc.Allocate1D<T>(Math.Max(1, data.Length));
        if (data.Length > 0) b.View.SubView(0, data.Length).CopyFromCPU(ref System.Runtime.InteropServices.MemoryMarshal.GetReference(data), data.Length);
        return b;
    }

    /// <summary>A SpQR layer; laneMajor: also the lane-major copy of its codes (GpuSpqrLayer.LaneCodes; magicW3Records: w3's
    /// in the eighth session's layout, for benchmarks).</summary>
    public GpuLinear(Accelerator acc, SpqrLayer layer, float[]? bias = null, bool laneMajor = false, bool formatCodes = true, bool magicW3Records = false)
    {
        Rows = layer.Rows; Cols = layer.Cols; Spqr = new GpuSpqrLayer(acc, layer, laneMajor, formatCodes, magicW3Records);
        if (bias is not null) _bias = acc.Allocate1D(bias);
    }

    public void Forward(GpuKernels k, ArrayView<float> x, ArrayView<float> y, ArrayView<float> scratch)
    {
        if (Spqr is not null) k.SpqrMatVec(Spqr, x, scratch, y);
        else if (_f16 is not null) k.GemvF16(_f16.View, x, y, Rows, Cols);
        else if (_bf16 is not null) k.GemvBF16(_bf16.View, x, y, Rows, Cols);
        else k.GemvF32(_f32!.View, x, y, Rows, Cols);
        if (_bias is not null) k.Add(y, _bias.View, Rows);
    }

    /// <summary>y = W·(silu(gate) ⊙ up) (+ bias): for an SpQR layer, GpuKernels.SpqrMatVecSwiGlu (the SwiGLU in the
    /// tensor-core prepare launch when SpqrFuseSwiGlu, gate unchanged); otherwise gate = silu(gate) ⊙ up first.</summary>
    public void ForwardSwiGlu(GpuKernels k, ArrayView<float> gate, ArrayView<float> up, ArrayView<float> y, ArrayView<float> scratch)
    {
        if (Spqr is null)
        {
            k.SwiGlu(gate, up, Cols);
            Forward(k, gate, y, scratch);
            return;
        }
        k.SpqrMatVecSwiGlu(Spqr, gate, up, scratch, y);
        if (_bias is not null) k.Add(y, _bias.View, Rows);
    }

    /// <summary>y += W·x (+ bias): the residual add in the product's epilogue (the F32/F16/BF16 GEMVs, SpQR on the tensor
    /// cores: each row's one writer adds its y); the float32 SpQR kernels write W·x into tmp (Rows floats), then add it.</summary>
    public void ForwardAdd(GpuKernels k, ArrayView<float> x, ArrayView<float> y, ArrayView<float> scratch, ArrayView<float> tmp)
    {
        if (Spqr is not null)
        {
            if (k.SpqrUsesTensorCores(Spqr)) k.SpqrMatVec(Spqr, x, scratch, y, accumulate: true);
            else { k.SpqrMatVec(Spqr, x, scratch, tmp); k.Add(y, tmp, Rows); }
        }
        else if (_f16 is not null) k.GemvF16(_f16.View, x, y, Rows, Cols, accumulate: true);
        else if (_bf16 is not null) k.GemvBF16(_bf16.View, x, y, Rows, Cols, accumulate: true);
        else k.GemvF32(_f32!.View, x, y, Rows, Cols, accumulate: true);
        if (_bias is not null) k.Add(y, _bias.View, Rows);
    }

    /// <summary>y += W·(silu(gate) ⊙ up) (+ bias), as <see cref="ForwardSwiGlu"/> with <see cref="ForwardAdd"/>'s epilogue.</summary>
    public void ForwardSwiGluAdd(GpuKernels k, ArrayView<float> gate, ArrayView<float> up, ArrayView<float> y, ArrayView<float> scratch, ArrayView<float> tmp)
    {
        if (Spqr is null)
        {
            k.SwiGlu(gate, up, Cols);
            ForwardAdd(k, gate, y, scratch, tmp);
            return;
        }
        if (k.SpqrUsesTensorCores(Spqr)) k.SpqrMatVecSwiGlu(Spqr, gate, up, scratch, y, accumulate: true);
        else { k.SpqrMatVecSwiGlu(Spqr, gate, up, scratch, tmp); k.Add(y, tmp, Rows); }
        if (_bias is not null) k.Add(y, _bias.View, Rows);
    }

    /// <summary>Whether <see cref="ForwardNormed"/> takes this layer: SpQR on the tensor cores, whose prepare launch can
    /// normalize the input (GpuKernels.InputRmsNorm).</summary>
    public bool TakesInputNorm(GpuKernels k) => Spqr is not null && k.SpqrUsesTensorCores(Spqr);

    /// <summary>y = W·RMSNorm(x) (+ bias), the norm computed in the matvec's prepare launch (<see cref="TakesInputNorm"/>).</summary>
    public void ForwardNormed(GpuKernels k, ArrayView<float> x, InputRmsNorm norm, ArrayView<float> y, ArrayView<float> scratch)
    {
        k.SpqrMatVec(Spqr ?? throw new InvalidOperationException("ForwardNormed: a dense layer takes the norm kernel's output"), x, scratch, y, norm: norm);
        if (_bias is not null) k.Add(y, _bias.View, Rows);
    }

    /// <summary>Y (T, Rows) = X (T, Cols) · Wᵀ (+ bias) for T tokens: F16 weights and SpQR layers (as fp16 Ŵ) on the
    /// tensor cores where GpuKernels.GemmTc.cs applies, else the register-blocked float32 GEMM (SpQR decoded in its tiles);
    /// scratch holds ≥ <see cref="BatchScratch"/> floats.</summary>
    public void ForwardBatch(GpuKernels k, ArrayView<float> X, int T, ArrayView<float> Y, ArrayView<float> scratch)
    {
        if (Spqr is not null) k.SpqrMatMul(Spqr, X, T, Y, scratch);
        else if (_f16 is not null) k.GemmNTHalf(X, _f16.View, Y, T, Rows, Cols, bf16: false);
        else if (_bf16 is not null) k.GemmNTHalf(X, _bf16.View, Y, T, Rows, Cols, bf16: true);
        else k.GemmNT(X, _f32!.View, Y, T, Rows, Cols);
        if (_bias is not null) k.AddBias(Y, _bias.View, T, Rows);
    }

    /// <summary>The SpQR layers of linears that read the same input, for one grouped launch (GpuKernels.SpqrMatVecGroup,
    /// where SpqrGroupApplies), or null when one is dense or has a bias.</summary>
    public static GpuSpqrLayer[]? Groupable(GpuLinear[] ls)
        => ls.All(l => l.Spqr is not null && l._bias is null) ? [.. ls.Select(l => l.Spqr!)] : null;

    /// <summary>Device floats of the scratch ForwardBatch needs for T tokens.</summary>
    public long BatchScratch(int T) => Spqr is null ? 0 : GpuKernels.SpqrMatMulScratch(Spqr, T);

    public void Dispose() { _f32?.Dispose(); _f16?.Dispose(); _bf16?.Dispose(); _bias?.Dispose(); Spqr?.Dispose(); }
}

/// <summary>What the device decoders share: embeddings, rotary tables, KV cache, attention, the head; an ICausalLM.</summary>
public abstract class GpuDecoder : ICausalLM, IGreedyStep
{
    public TransformerConfig Config { get; }
    public int MaxContext { get; }
    /// <summary>Tokens per Forward call: one token runs the decode step (its graph), several run one batched pass
    /// (GEMMs over all of them, causal attention over the cache), whose buffers are allocated at the first such call.</summary>
    public int MaxBatch { get; }
    protected GpuBackend Gpu { get; }
    protected GpuKernels K => Gpu.Kernels;
    protected readonly MemoryBuffer1D<float, Stride1D.Dense> X, H, Q, Kb, V, Att, Scratch, Scratch2, Scratch3;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _logits, _scores, _cos, _sin, _finalW;
    private readonly MemoryBuffer1D<float, Stride1D.Dense>? _finalB;
    private readonly MemoryBuffer1D<float, Stride1D.Dense>[] _keys, _values;
    private readonly List<IDisposable> _buffers = new();
    private GpuLinear _head = null!;
    private readonly Tensor _embed;
    private readonly float[] _row, _logitsHost;
    private readonly MemoryBuffer1D<int, Stride1D.Dense> _pos;
    private readonly int[] _posHost = new int[1];
    private float[] _all = [];
    internal IDisposable[] Owned = [];
    private readonly IWeightSource _source;
    private readonly Func<string, SpqrLayer?>? _spqr;

    protected GpuDecoder(GpuBackend gpu, TransformerConfig c, IWeightSource source, Func<string, SpqrLayer?>? spqr, int maxContext, int maxBatch,
                         string embedding, string finalNormW, string? finalNormB)
    {
        Gpu = gpu; Config = c; _source = source; _spqr = spqr;
        MaxContext = Math.Min(maxContext, c.MaxPositions);
        MaxBatch = Math.Max(1, Math.Min(maxBatch, MaxContext));
        var acc = gpu.Accelerator;
        _embed = source.Get(embedding, new Shape(c.VocabSize, c.HiddenSize));
        _finalW = Vec(finalNormW, c.HiddenSize);
        _finalB = finalNormB is null ? null : Vec(finalNormB, c.HiddenSize);
        int wide = Math.Max(c.HiddenSize, c.QDim);
        X = Buf(c.HiddenSize); H = Buf(wide); Q = Buf(c.QDim); Kb = Buf(c.KvDim); V = Buf(c.KvDim); Att = Buf(c.QDim);
        _logits = Buf(c.VocabSize); _scores = Buf((long)c.NumHeads * MaxContext);
        var rope = new RopeFrequencies(c.HeadDim, MaxContext, c.RopeTheta, RopeScaling.InvFreq(c));
        int half = c.HeadDim / 2;
        var cos = new float[(long)MaxContext * half]; var sin = new float[cos.Length];
        for (int pos = 0; pos < MaxContext; pos++) { rope.Cos(pos).CopyTo(cos.AsSpan(pos * half)); rope.Sin(pos).CopyTo(sin.AsSpan(pos * half)); }
        _cos = acc.Allocate1D(cos); _sin = acc.Allocate1D(sin);
        _buffers.Add(_cos); _buffers.Add(_sin);
        _keys = [.. Enumerable.Range(0, c.NumLayers).Select(_ => Buf((long)MaxContext * c.KvDim))];
        _values = [.. Enumerable.Range(0, c.NumLayers).Select(_ => Buf((long)MaxContext * c.KvDim))];
        Scratch = Buf(1 << 18); // ≥ any layer's SpQR scratch (Groups·17 + a warp step): 65,536 columns need 135,168 floats
        Scratch2 = Buf(1 << 18); Scratch3 = Buf(1 << 18); // the concurrent branches' own scratch (Branches)
        _row = new float[c.HiddenSize];
        _pos = acc.Allocate1D<int>(1);
        _logitsHost = new float[c.VocabSize];
    }

    /// <summary>Creates the head once the subclass has its layers (the head may be tied to the embeddings).</summary>
    protected void CreateHead() => _head = Config.TieWordEmbeddings ? new GpuLinear(Gpu.Accelerator, _embed) : Lin("lm_head", Config.VocabSize, Config.HiddenSize, false);

    protected MemoryBuffer1D<float, Stride1D.Dense> Buf(long n)
    {
        var b = Gpu.Accelerator.Allocate1D<float>(Math.Max(1, n));
        _buffers.Add(b);
        return b;
    }

    protected MemoryBuffer1D<float, Stride1D.Dense> Vec(string name, int n)
    {
        var t = _source.Get(name, new Shape(n));
        MemoryBuffer1D<float, Stride1D.Dense> b;
        if (t.DType == DType.F32) b = GpuLinear.Upload(Gpu.Accelerator, t.AsReadOnlySpan<float>());
        else using (var f = t.ToF32()) b = GpuLinear.Upload(Gpu.Accelerator, f.AsReadOnlySpan<float>());
        _buffers.Add(b);
        return b;
    }

    protected GpuLinear Lin(string name, int rows, int cols, bool bias)
    {
        float[]? bv = null;
        if (bias)
        {
            var t = _source.Get(name + ".bias", new Shape(rows));
            using var f = t.ToF32();
            bv = f.AsReadOnlySpan<float>().ToArray();
        }
        var layer = _spqr?.Invoke(name);
        var lin = layer is not null ? new GpuLinear(Gpu.Accelerator, layer, bv, K.LaneMajorUploadFor(layer.WBits), K.SpqrFormatCodesBesideLaneMajor, K.SpqrW3MagicRecords) : new GpuLinear(Gpu.Accelerator, _source.Get(name + ".weight", new Shape(rows, cols)), bv);
        if (lin.Spqr is not null && K.SpqrScratch(lin.Spqr) > Scratch.Length) throw new NotSupportedException($"{name}: {cols} input features is too wide for the device scratch");
        _buffers.Add(lin);
        return lin;
    }

    /// <summary>RMSNorm or LayerNorm by the config of `rows` rows: x (rows, hidden) → dst (rows, hidden).</summary>
    protected void Norm(ArrayView<float> x, MemoryBuffer1D<float, Stride1D.Dense> w, MemoryBuffer1D<float, Stride1D.Dense>? b, ArrayView<float> dst, int rows = 1)
    {
        if (Config.Norm == NormKind.RmsNorm) K.RmsNorm(x, w.View, dst, rows, Config.NormEps);
        else K.LayerNorm(x, w.View, b!.View, dst, Config.NormEps, rows);
    }

    /// <summary>
    /// Rotary on q and k (T tokens, already projected), their K/V into layer l's cache from the device position, causal
    /// attention into att: in query chunks as many as the scores scratch holds (heads × MaxContext floats each; the
    /// decode step's scratch holds one).
    /// </summary>
    private void Attend(int l, ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> att, ArrayView<float> scores, int T = 1)
    {
        var c = Config;
        if (T == 1)
        {
            // a decode step: the rotary and the cache writes inside the split attention kernel where it takes the shape
            var d1 = new AttentionDims { Heads = c.NumHeads, KvHeads = c.NumKvHeads, HeadDim = c.HeadDim, MaxContext = MaxContext };
            K.RopeAttention(q, k, v, _cos.View, _sin.View, _pos.View, _keys[l].View, _values[l].View, att, scores, d1, c.RopeLayout == RopeLayout.Interleaved);
            return;
        }
        K.RopeStore(q, k, v, _cos.View, _sin.View, _pos.View, _keys[l].View, _values[l].View, c.NumHeads, c.NumKvHeads, c.HeadDim,
                    c.RopeLayout == RopeLayout.Interleaved, T);
        int chunk = (int)(scores.Length / ((long)c.NumHeads * MaxContext));
        for (int t0 = 0; t0 < T; t0 += chunk)
        {
            int n = Math.Min(chunk, T - t0);
            var dims = new AttentionDims { Heads = c.NumHeads, KvHeads = c.NumKvHeads, HeadDim = c.HeadDim, MaxContext = MaxContext, First = t0 };
            K.Attention(q.SubView((long)t0 * c.QDim, (long)n * c.QDim), _keys[l].View, _values[l].View, att.SubView((long)t0 * c.QDim, (long)n * c.QDim),
                        scores, _pos.View, dims, n);
        }
    }

    protected abstract void Layer(int l);

    // ---- batched passes (Forward of several tokens): (MaxBatch, ·) row-major device buffers, allocated at the first one ----
    protected MemoryBuffer1D<float, Stride1D.Dense> XB = null!, HB = null!, QB = null!, KB = null!, VB = null!, AttB = null!, ScratchB = null!;
    private MemoryBuffer1D<float, Stride1D.Dense> _scoresB = null!;
    private MemoryBuffer1D<float, Stride1D.Dense>? _logitsB;
    private float[] _rows = [];
    private bool _batchReady;

    /// <summary>
    /// Device floats the batched attention's scores scratch may take (default 16M, 64 MB): queries × heads × MaxContext
    /// floats, so a batch whose scores would not fit is attended in query chunks of AttentionChunk. Set before the first
    /// batched pass.
    /// </summary>
    public long AttentionScoresFloats
    {
        get => _scoresFloats;
        set
        {
            if (_batchReady) throw new InvalidOperationException("the batched buffers are already allocated");
            _scoresFloats = Math.Max(1, value);
        }
    }
    private long _scoresFloats = 16L << 20;

    /// <summary>Queries one batched attention launch takes (1..MaxBatch).</summary>
    public int AttentionChunk => (int)Math.Clamp(_scoresFloats / ((long)Config.NumHeads * MaxContext), 1, MaxBatch);

    /// <summary>A subclass's own (MaxBatch, ·) buffers for LayerBatch.</summary>
    protected abstract void AllocateBatch(int B);

    /// <summary>Layer l for the T tokens in XB (positions _pos[0]..), in place.</summary>
    protected abstract void LayerBatch(int l, int T);

    private void EnsureBatch()
    {
        if (_batchReady) return;
        var c = Config;
        int B = MaxBatch;
        XB = Buf((long)B * c.HiddenSize); HB = Buf((long)B * Math.Max(c.HiddenSize, c.QDim));
        QB = Buf((long)B * c.QDim); KB = Buf((long)B * c.KvDim); VB = Buf((long)B * c.KvDim); AttB = Buf((long)B * c.QDim);
        ScratchB = Buf(_buffers.OfType<GpuLinear>().Select(l => l.BatchScratch(B)).DefaultIfEmpty(1).Max());
        _scoresB = Buf((long)AttentionChunk * c.NumHeads * MaxContext);
        _rows = new float[B * c.HiddenSize];
        AllocateBatch(B);
        _batchReady = true;
    }

    /// <summary>Attention of layer l for the decode step's token (Q, Kb, V → Att).</summary>
    protected void AttendStep(int l) => Attend(l, Q.View, Kb.View, V.View, Att.View, _scores.View);

    /// <summary>Attention of layer l for the T tokens of a batched pass (QB, KB, VB → AttB).</summary>
    protected void AttendBatch(int l, int T) => Attend(l, QB.View, KB.View, VB.View, AttB.View, _scoresB.View, T);

    // T ≥ 2 tokens at positions pos..: one batched pass; the logits of all tokens (into _all) or of the last (_logitsHost)
    private void RunBatch(ReadOnlySpan<int> tokens, int pos, bool allLogits)
    {
        var c = Config;
        int T = tokens.Length, d = c.HiddenSize, vocab = c.VocabSize;
        EnsureBatch();
        Upload(tokens, pos, _rows, XB.View);
        for (int l = 0; l < c.NumLayers; l++) LayerBatch(l, T);
        if (allLogits)
        {
            _logitsB ??= Buf((long)MaxBatch * vocab);
            Norm(XB.View, _finalW, _finalB, HB.View, T);
            _head.ForwardBatch(K, HB.View, T, _logitsB.View, ScratchB.View);
            Gpu.Accelerator.Synchronize();
            if (_all.Length < T * vocab) _all = new float[MaxBatch * vocab];
            _logitsB.View.SubView(0, (long)T * vocab).CopyToCPU(ref _all[0], (long)T * vocab);
        }
        else
        {
            Logits(XB.View.SubView((long)(T - 1) * d, d));
            Gpu.Accelerator.Synchronize();
            _logits.View.CopyToCPU(_logitsHost);
        }
    }

    // the tokens' embedding rows widened into a reused host buffer and uploaded to dst (T, hidden), and the first
    // position into the device buffer the kernels read it from
    private void Upload(ReadOnlySpan<int> tokens, int pos, float[] host, ArrayView<float> dst)
    {
        int d = Config.HiddenSize, vocab = Config.VocabSize;
        if (pos < 0 || pos + tokens.Length > MaxContext)
            throw new ArgumentOutOfRangeException(nameof(pos), pos, $"{tokens.Length} token(s) at position {pos} exceed the context of {MaxContext}");
        for (int t = 0; t < tokens.Length; t++)
        {
            if ((uint)tokens[t] >= (uint)vocab) throw new ArgumentOutOfRangeException(nameof(tokens), tokens[t], $"token id outside the vocabulary of {vocab}");
            _embed.Row(tokens[t]).CopyToF32(host.AsSpan(t * d, d));
        }
        dst.SubView(0, (long)tokens.Length * d).CopyFromCPU(ref host[0], (long)tokens.Length * d);
        _posHost[0] = pos;
        _pos.View.CopyFromCPU(_posHost);
    }

    // logits (vocab,) of one hidden row x: final norm, then the head (matvec)
    private void Logits(ArrayView<float> x)
    {
        var hf = H.View.SubView(0, Config.HiddenSize);
        Norm(x, _finalW, _finalB, hf);
        _head.Forward(K, hf, _logits.View, Scratch.View);
    }

    /// <summary>Device bytes of the weights a decode step reads (all linears and the head).</summary>
    public long WeightBytes => _buffers.OfType<GpuLinear>().Sum(l => l.Bytes) + (Config.TieWordEmbeddings ? _head.Bytes : 0);
    /// <summary>Device bytes of the linears and the head, with the SpQR layers' lane-major copies.</summary>
    public long DeviceWeightBytes => _buffers.OfType<GpuLinear>().Sum(l => l.DeviceBytes) + (Config.TieWordEmbeddings ? _head.DeviceBytes : 0);

    /// <summary>Runs one token at position pos (the cache holds 0..pos-1) and returns the logits (vocab,), in a buffer
    /// the next step overwrites.</summary>
    public float[] Step(int token, int pos)
    {
        Enqueue(token, pos);
        Gpu.Accelerator.Synchronize();
        _logits.View.CopyToCPU(_logitsHost);
        return _logitsHost;
    }

    /// <summary>Greedy decoding without the logits round trip: runs one token at position pos and returns the id of
    /// the largest logit (first on ties), found on the device.</summary>
    public int StepGreedy(int token, int pos)
    {
        Enqueue(token, pos);
        _argmaxBuf ??= Gpu.Accelerator.Allocate1D<int>(1);
        K.Argmax(_logits.View, _argmaxBuf.View, Config.VocabSize);
        Gpu.Accelerator.Synchronize();
        _argmaxBuf.View.CopyToCPU(_argmaxHost);
        return _argmaxHost[0];
    }

    private MemoryBuffer1D<int, Stride1D.Dense>? _argmaxBuf;
    private readonly int[] _argmaxHost = new int[1];

    /// <summary>
    /// Replay each step's kernels from a CUDA graph (GpuGraph): recorded on the second step, one driver call per token
    /// afterwards instead of ~10 launches per layer. Default on; off, every step launches its kernels (the first step
    /// always does, which also loads them). The position lives in a device buffer, so one graph serves every step.
    /// Setting it (either way) drops a recorded graph, e.g. after a kernel choice changed.
    /// </summary>
    public bool UseGraph
    {
        get => _useGraph;
        set { DropGraph(); _useGraph = value; }
    }
    private bool _useGraph = true;
    /// <summary>
    /// Run the projections that read the same input concurrently (q, k, v; gate, up) on separate streams
    /// (GpuBackend.Fork; parallel branches of the step graph): one small matvec leaves most of the device idle. Default
    /// on; setting it drops a recorded graph.
    /// </summary>
    public bool ConcurrentBranches
    {
        get => _concurrent;
        set { DropGraph(); _concurrent = value; }
    }
    private bool _concurrent = true;

    /// <summary>Independent pieces of a layer, concurrently when ConcurrentBranches (branch i uses scratch i).</summary>
    protected void Branches(Action[] branches)
    {
        if (_concurrent) Gpu.Fork(branches);
        else foreach (var b in branches) b();
    }

    /// <summary>Nodes of the recorded step graph (0 before it is recorded or when the device has no graphs).</summary>
    public int GraphNodes => _graph?.Nodes ?? 0;
    private GpuGraph? _graph;
    private bool _warm;

    // the next step launches its kernels directly, the one after records a new graph
    private void DropGraph() { _graph?.Dispose(); _graph = null; _warm = false; }

    // the whole step queued on the device; the logits land in _logits
    private void Enqueue(int token, int pos)
    {
        Upload([token], pos, _row, X.View); // no allocation per token: the span lives on the stack, the row buffer is reused
        if (!UseGraph || !_warm) { Work(); _warm = true; return; }
        _graph ??= GpuGraph.Capture(Gpu, Work);
        _graph.Launch();
    }

    // every kernel of a step, position-independent on the host side (the kernels read the position from _pos)
    private void Work()
    {
        for (int l = 0; l < Config.NumLayers; l++) Layer(l);
        Logits(X.View);
    }

    /// <summary>ICausalLM: T ≤ MaxBatch tokens at positions pos..; one token is a decode step (Step), several one
    /// batched pass (RunBatch). Logits of the last token, or of all (T, vocab).</summary>
    public ReadOnlySpan<float> Forward(ReadOnlySpan<int> tokens, int pos, bool allLogits)
    {
        int T = tokens.Length;
        if (T == 0 || T > MaxBatch) throw new ArgumentOutOfRangeException(nameof(tokens), T, $"a forward call takes 1..{MaxBatch} tokens");
        if (T == 1) return Step(tokens[0], pos);
        RunBatch(tokens, pos, allLogits);
        return allLogits ? _all.AsSpan(0, T * Config.VocabSize) : _logitsHost;
    }

    /// <summary>
    /// Opens a Hugging Face LLaMA or Falcon folder (dense or SpQR-compressed, ours or the authors' export) on the
    /// device; the model owns the backend and the weight source. DeviceChoice.Gpu without CUDA throws
    /// GpuUnavailableException. laneMajor: upload the lane-major copy of w3/w4 layers' codes (GpuKernels.SpqrLaneMajorUpload);
    /// formatCodes: false keeps only that copy where it is made (GpuKernels.SpqrFormatCodesBesideLaneMajor).
    /// </summary>
    public static GpuDecoder Open(string folder, DeviceChoice device, int maxContext = 2048, int maxBatch = 64, bool laneMajor = true, bool formatCodes = true)
    {
        var cfg = TransformerConfig.Load(folder);
        var gpu = GpuBackend.Create(device);
        gpu.Kernels.SpqrLaneMajorUpload = laneMajor;
        gpu.Kernels.SpqrFormatCodesBesideLaneMajor = formatCodes;
        SafetensorsWeightSource? src = null;
        try
        {
            var ck = SafetensorsCheckpoint.Open(folder);
            src = new SafetensorsWeightSource(ck); // owns the checkpoint
            Func<string, SpqrLayer?> spqr = name => SpQR.Transformer.Layers.SpqrLinearFactory.ReadLayer(ck, name, out _);
            GpuDecoder m = cfg.Architecture == Architecture.Falcon ? new GpuFalconModel(gpu, cfg, src, spqr, maxContext, maxBatch)
                                                                     : new GpuLlamaModel(gpu, cfg, src, spqr, maxContext, maxBatch);
            m.Owned = [src, gpu];
            return m;
        }
        catch { src?.Dispose(); gpu.Dispose(); throw; }
    }

    public void Dispose()
    {
        _graph?.Dispose();
        foreach (var b in _buffers) b.Dispose();
        _argmaxBuf?.Dispose();
        _pos.Dispose();
        if (Config.TieWordEmbeddings) _head.Dispose();
        foreach (var o in Owned) o.Dispose();
        GC.SuppressFinalize(this);
    }
}

public sealed class GpuLlamaModel : GpuDecoder
{
    private sealed record Block(MemoryBuffer1D<float, Stride1D.Dense> InputNorm, GpuLinear Q, GpuLinear K, GpuLinear V, GpuLinear O,
                                MemoryBuffer1D<float, Stride1D.Dense> PostNorm, GpuLinear Gate, GpuLinear Up, GpuLinear Down)
    {
        public GpuLinear[] Qkv { get; } = [Q, K, V];
        public GpuLinear[] GateUp { get; } = [Gate, Up];
    }
    private readonly Block[] _blocks;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _o, _gate, _up;

    /// <param name="spqr">the SpQR layer of a linear (its HF name without ".weight"), or null for a dense one</param>
    public GpuLlamaModel(GpuBackend gpu, TransformerConfig c, IWeightSource source, Func<string, SpqrLayer?>? spqr = null, int maxContext = 2048, int maxBatch = 64)
        : base(gpu, c, source, spqr, maxContext, maxBatch, "model.embed_tokens.weight", "model.norm.weight", null)
    {
        if (c.Architecture != Architecture.Llama) throw new NotSupportedException($"GpuLlamaModel runs LLaMA models; got {c.Architecture}");
        _blocks = new Block[c.NumLayers];
        for (int l = 0; l < c.NumLayers; l++)
        {
            string p = $"model.layers.{l}.";
            _blocks[l] = new Block(Vec(p + "input_layernorm.weight", c.HiddenSize),
                Lin(p + "self_attn.q_proj", c.QDim, c.HiddenSize, c.AttentionBias), Lin(p + "self_attn.k_proj", c.KvDim, c.HiddenSize, c.AttentionBias),
                Lin(p + "self_attn.v_proj", c.KvDim, c.HiddenSize, c.AttentionBias), Lin(p + "self_attn.o_proj", c.HiddenSize, c.QDim, c.AttentionBias),
                Vec(p + "post_attention_layernorm.weight", c.HiddenSize),
                Lin(p + "mlp.gate_proj", c.IntermediateSize, c.HiddenSize, c.MlpBias), Lin(p + "mlp.up_proj", c.IntermediateSize, c.HiddenSize, c.MlpBias),
                Lin(p + "mlp.down_proj", c.HiddenSize, c.IntermediateSize, c.MlpBias));
        }
        _o = Buf(c.HiddenSize); _gate = Buf(c.IntermediateSize); _up = Buf(c.IntermediateSize);
        // the q/k/v and gate/up projections of each layer as concurrent branches (built once: no allocation per token)
        var hv = H.View.SubView(0, c.HiddenSize);
        _qkv = [.. _blocks.Select(b => new Action[] { () => b.Q.Forward(K, hv, Q.View, Scratch.View), () => b.K.Forward(K, hv, Kb.View, Scratch2.View), () => b.V.Forward(K, hv, V.View, Scratch3.View) })];
        _gateUp = [.. _blocks.Select(b => new Action[] { () => b.Gate.Forward(K, hv, _gate.View, Scratch.View), () => b.Up.Forward(K, hv, _up.View, Scratch2.View) })];
        // the same from x with the norm in each prepare launch (Projections)
        var xv = X.View;
        InputRmsNorm N(MemoryBuffer1D<float, Stride1D.Dense> w) => new() { Weight = w.View, Eps = c.NormEps };
        _qkvNormed = [.. _blocks.Select(b => new Action[] { () => b.Q.ForwardNormed(K, xv, N(b.InputNorm), Q.View, Scratch.View), () => b.K.ForwardNormed(K, xv, N(b.InputNorm), Kb.View, Scratch2.View), () => b.V.ForwardNormed(K, xv, N(b.InputNorm), V.View, Scratch3.View) })];
        _gateUpNormed = [.. _blocks.Select(b => new Action[] { () => b.Gate.ForwardNormed(K, xv, N(b.PostNorm), _gate.View, Scratch.View), () => b.Up.ForwardNormed(K, xv, N(b.PostNorm), _up.View, Scratch2.View) })];
        // or each as one grouped launch where the layers allow it
        _hv = hv;
        _qkvGroup = [.. _blocks.Select(b => GpuLinear.Groupable([b.Q, b.K, b.V]))]; _gateUpGroup = [.. _blocks.Select(b => GpuLinear.Groupable([b.Gate, b.Up]))];
        _qkvOut = [Q.View, Kb.View, V.View]; _gateUpOut = [_gate.View, _up.View];
        _scratch3 = [Scratch.View, Scratch2.View, Scratch3.View]; _scratch2 = [Scratch.View, Scratch2.View];
        CreateHead();
    }

    private readonly Action[][] _qkv, _gateUp, _qkvNormed, _gateUpNormed;
    private readonly ArrayView<float> _hv;
    private readonly GpuSpqrLayer[]?[] _qkvGroup, _gateUpGroup;
    private readonly ArrayView<float>[] _qkvOut, _gateUpOut, _scratch3, _scratch2;

    // ys[i] = W_i·RMSNorm(x; normW) for the projections ls reading the same input: the norm in their prepare launches where
    // every one takes it (SpqrFuseInputNorm), as one grouped launch where the kernels take them, else concurrent branches;
    // otherwise the norm kernel into h first
    private void Projections(GpuLinear[] ls, GpuSpqrLayer[]? group, MemoryBuffer1D<float, Stride1D.Dense> normW, ArrayView<float>[] ys, ArrayView<float>[] scratches,
                             Action[] branches, Action[] normedBranches)
    {
        bool fused = K.SpqrFuseInputNorm;
        foreach (var lin in ls) fused &= lin.TakesInputNorm(K);
        bool grouped = group is not null && K.SpqrGroupApplies(group);
        if (fused)
        {
            if (grouped) K.SpqrMatVecGroup(group!, X.View, scratches, ys, new InputRmsNorm { Weight = normW.View, Eps = Config.NormEps });
            else Branches(normedBranches);
            return;
        }
        Norm(X.View, normW, null, _hv);
        if (grouped) K.SpqrMatVecGroup(group!, _hv, scratches, ys);
        else Branches(branches);
    }

    protected override void Layer(int l)
    {
        var b = _blocks[l];
        // x holds the residual stream: the o_proj and down_proj add their products to it in their epilogues (ForwardAdd),
        // so the norms before q/k/v and gate/up read x alone and can run inside those projections' prepare launches
        Projections(b.Qkv, _qkvGroup[l], b.InputNorm, _qkvOut, _scratch3, _qkv[l], _qkvNormed[l]);
        AttendStep(l);
        b.O.ForwardAdd(K, Att.View, X.View, Scratch.View, _o.View);
        Projections(b.GateUp, _gateUpGroup[l], b.PostNorm, _gateUpOut, _scratch2, _gateUp[l], _gateUpNormed[l]);
        b.Down.ForwardSwiGluAdd(K, _gate.View, _up.View, X.View, Scratch.View, _o.View); // SwiGLU in the down_proj's prepare when SpqrFuseSwiGlu
    }

    private MemoryBuffer1D<float, Stride1D.Dense> _oB = null!, _gateB = null!, _upB = null!;

    protected override void AllocateBatch(int B)
    {
        var c = Config;
        _oB = Buf((long)B * c.HiddenSize); _gateB = Buf((long)B * c.IntermediateSize); _upB = Buf((long)B * c.IntermediateSize);
    }

    protected override void LayerBatch(int l, int T)
    {
        var c = Config; var b = _blocks[l];
        var x = XB.View; var h = HB.View; var s = ScratchB.View;
        int n = T * c.HiddenSize;
        Norm(x, b.InputNorm, null, h, T);
        b.Q.ForwardBatch(K, h, T, QB.View, s);
        b.K.ForwardBatch(K, h, T, KB.View, s);
        b.V.ForwardBatch(K, h, T, VB.View, s);
        AttendBatch(l, T);
        b.O.ForwardBatch(K, AttB.View, T, _oB.View, s);
        K.Add(x, _oB.View, n);
        Norm(x, b.PostNorm, null, h, T);
        b.Gate.ForwardBatch(K, h, T, _gateB.View, s);
        b.Up.ForwardBatch(K, h, T, _upB.View, s);
        K.SwiGlu(_gateB.View, _upB.View, T * c.IntermediateSize);
        b.Down.ForwardBatch(K, _gateB.View, T, _oB.View, s);
        K.Add(x, _oB.View, n);
    }
}

public sealed class GpuFalconModel : GpuDecoder
{
    private sealed record Block(MemoryBuffer1D<float, Stride1D.Dense> AttnNormW, MemoryBuffer1D<float, Stride1D.Dense> AttnNormB,
                                MemoryBuffer1D<float, Stride1D.Dense>? MlpNormW, MemoryBuffer1D<float, Stride1D.Dense>? MlpNormB,
                                GpuLinear Qkv, GpuLinear Dense, GpuLinear HTo4H, GpuLinear FourHToH);
    private readonly Block[] _blocks;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _qkv, _mlpIn, _ff, _attnOut, _mlpOut;

    public GpuFalconModel(GpuBackend gpu, TransformerConfig c, IWeightSource source, Func<string, SpqrLayer?>? spqr = null, int maxContext = 2048, int maxBatch = 64)
        : base(gpu, c, source, spqr, maxContext, maxBatch, "transformer.word_embeddings.weight", "transformer.ln_f.weight", "transformer.ln_f.bias")
    {
        if (c.Architecture != Architecture.Falcon) throw new NotSupportedException($"GpuFalconModel runs Falcon models; got {c.Architecture}");
        int qkvRows = c.QDim + 2 * c.KvDim;
        _blocks = new Block[c.NumLayers];
        for (int l = 0; l < c.NumLayers; l++)
        {
            string p = $"transformer.h.{l}.";
            string attnNorm = c.SeparateMlpNorm ? "ln_attn" : "input_layernorm";
            _blocks[l] = new Block(Vec(p + attnNorm + ".weight", c.HiddenSize), Vec(p + attnNorm + ".bias", c.HiddenSize),
                c.SeparateMlpNorm ? Vec(p + "ln_mlp.weight", c.HiddenSize) : null, c.SeparateMlpNorm ? Vec(p + "ln_mlp.bias", c.HiddenSize) : null,
                Lin(p + "self_attention.query_key_value", qkvRows, c.HiddenSize, c.AttentionBias),
                Lin(p + "self_attention.dense", c.HiddenSize, c.QDim, c.AttentionBias),
                Lin(p + "mlp.dense_h_to_4h", c.IntermediateSize, c.HiddenSize, c.MlpBias),
                Lin(p + "mlp.dense_4h_to_h", c.HiddenSize, c.IntermediateSize, c.MlpBias));
        }
        _qkv = Buf(qkvRows); _mlpIn = Buf(c.HiddenSize); _ff = Buf(c.IntermediateSize); _attnOut = Buf(c.HiddenSize); _mlpOut = Buf(c.HiddenSize);
        _paths = [.. Enumerable.Range(0, c.NumLayers).Select(l => new Action[] { () => AttentionPath(l), () => MlpPath(l) })];
        CreateHead();
    }

    private readonly Action[][] _paths;

    protected override void Layer(int l)
    {
        var c = Config; var b = _blocks[l];
        int d = c.HiddenSize;
        Norm(X.View, b.AttnNormW, b.AttnNormB, H.View.SubView(0, d));
        // parallel attention: the attention path and the MLP path only meet in the adds below
        Branches(_paths[l]);
        // mlp_output += attention_output; x += mlp_output
        K.Add(_mlpOut.View, _attnOut.View, d);
        K.Add(X.View, _mlpOut.View, d);
    }

    private void AttentionPath(int l)
    {
        var c = Config; var b = _blocks[l];
        b.Qkv.Forward(K, H.View.SubView(0, c.HiddenSize), _qkv.View, Scratch.View);
        K.SplitQkv(_qkv.View, Q.View, Kb.View, V.View, c.NumKvHeads, c.KvGroups, c.HeadDim);
        AttendStep(l);
        b.Dense.Forward(K, Att.View, _attnOut.View, Scratch.View);
    }

    // reads x (or h) only; writes its own buffers and scratch, so it can run beside AttentionPath
    private void MlpPath(int l)
    {
        var c = Config; var b = _blocks[l];
        var mlpIn = H.View.SubView(0, c.HiddenSize);
        if (b.MlpNormW is not null) { Norm(X.View, b.MlpNormW, b.MlpNormB, _mlpIn.View); mlpIn = _mlpIn.View; }
        b.HTo4H.Forward(K, mlpIn, _ff.View, Scratch2.View);
        K.Gelu(_ff.View, c.IntermediateSize);
        b.FourHToH.Forward(K, _ff.View, _mlpOut.View, Scratch2.View);
    }

    private MemoryBuffer1D<float, Stride1D.Dense> _qkvB = null!, _mlpInB = null!, _ffB = null!, _attnOutB = null!, _mlpOutB = null!;

    protected override void AllocateBatch(int B)
    {
        var c = Config;
        _qkvB = Buf((long)B * (c.QDim + 2 * c.KvDim)); _mlpInB = Buf((long)B * c.HiddenSize); _ffB = Buf((long)B * c.IntermediateSize);
        _attnOutB = Buf((long)B * c.HiddenSize); _mlpOutB = Buf((long)B * c.HiddenSize);
    }

    protected override void LayerBatch(int l, int T)
    {
        var c = Config; var b = _blocks[l];
        var x = XB.View; var h = HB.View; var s = ScratchB.View;
        int n = T * c.HiddenSize;
        Norm(x, b.AttnNormW, b.AttnNormB, h, T);
        b.Qkv.ForwardBatch(K, h, T, _qkvB.View, s);
        K.SplitQkv(_qkvB.View, QB.View, KB.View, VB.View, c.NumKvHeads, c.KvGroups, c.HeadDim, T);
        AttendBatch(l, T);
        b.Dense.ForwardBatch(K, AttB.View, T, _attnOutB.View, s);
        var mlpIn = h;
        if (b.MlpNormW is not null) { Norm(x, b.MlpNormW, b.MlpNormB, _mlpInB.View, T); mlpIn = _mlpInB.View; }
        b.HTo4H.ForwardBatch(K, mlpIn, T, _ffB.View, s);
        K.Gelu(_ffB.View, T * c.IntermediateSize);
        b.FourHToH.ForwardBatch(K, _ffB.View, T, _mlpOutB.View, s);
        // mlp_output += attention_output; x += mlp_output
        K.Add(_mlpOutB.View, _attnOutB.View, n);
        K.Add(x, _mlpOutB.View, n);
    }
}
