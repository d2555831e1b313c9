// A LLaMA decoder resident on the device, for token-by-token decoding: weights (F32/F16 dense or SpQR layers, the
// same bytes as on the CPU), KV cache and activations live in device memory; per token the host uploads one
// embedding row and downloads the logits, nothing per layer. Mirrors Models/Llama/LlamaModel.cs step by step:
//   h = rmsnorm(x); q,k,v = Wq h, Wk h, Wv h; rope(q, k); cache ← k, v; a = attention(q, cache); x += Wo a
//   h = rmsnorm(x); x += Wdown (silu(Wgate h) · Wup h);  logits = Whead rmsnorm(x)
// Linear layers without bias only (LLaMA checkpoints have none).
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

/// <summary>A linear layer on the device: dense F32, dense F16 bits or SpQR.</summary>
public sealed class GpuLinear : IDisposable
{
    public int Rows { get; }
    public int Cols { get; }
    private readonly MemoryBuffer1D<float, Stride1D.Dense>? _f32;
    private readonly MemoryBuffer1D<ushort, Stride1D.Dense>? _f16;
    public GpuSpqrLayer? Spqr { get; }
    public long Bytes => _f32?.LengthInBytes ?? _f16?.LengthInBytes ?? Spqr!.Bytes;

    public GpuLinear(Accelerator acc, Tensor w)
    {
        Rows = (int)w.Shape[0]; Cols = (int)w.Shape[1];
        switch (w.DType)
        {
            case DType.F16: _f16 = acc.Allocate1D(w.AsReadOnlySpan<ushort>().ToArray()); break;
            case DType.F32: _f32 = acc.Allocate1D(w.AsReadOnlySpan<float>().ToArray()); break;
            default: using (var f = w.ToF32()) _f32 = acc.Allocate1D(f.AsReadOnlySpan<float>().ToArray()); break;
        }
    }

    public GpuLinear(Accelerator acc, SpqrLayer layer) { Rows = layer.Rows; Cols = layer.Cols; Spqr = new GpuSpqrLayer(acc, layer); }

    public void Forward(GpuKernels k, ArrayView<float> x, ArrayView<float> y, ArrayView<float> scratch)
    {
        if (Spqr is not null) k.SpqrMatVec(Spqr, x, scratch, y);
        else if (_f16 is not null) k.GemvF16(_f16.View, x, y, Rows, Cols);
        else k.GemvF32(_f32!.View, x, y, Rows, Cols);
    }

    public void Dispose() { _f32?.Dispose(); _f16?.Dispose(); Spqr?.Dispose(); }
}

public sealed class GpuLlamaModel : ICausalLM
{
    private sealed record Block(MemoryBuffer1D<float, Stride1D.Dense> InputNorm, GpuLinear Q, GpuLinear K, GpuLinear V, GpuLinear O,
                                MemoryBuffer1D<float, Stride1D.Dense> PostNorm, GpuLinear Gate, GpuLinear Up, GpuLinear Down);

    public TransformerConfig Config { get; }
    public int MaxContext { get; }
    private readonly GpuBackend _gpu;
    private readonly Block[] _blocks;
    private readonly GpuLinear _head;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _finalNorm, _x, _h, _q, _k, _v, _att, _o, _gate, _up, _logits, _scores, _scratch, _cos, _sin;
    private readonly MemoryBuffer1D<float, Stride1D.Dense>[] _keys, _values;
    private readonly Tensor _embed;
    private readonly float[] _row;
    private readonly IWeightSource _source;

    /// <param name="spqr">the SpQR layer of a linear (its HF name without ".weight"), or null for a dense one</param>
    public GpuLlamaModel(GpuBackend gpu, TransformerConfig c, IWeightSource source, Func<string, SpqrLayer?>? spqr = null, int maxContext = 2048)
    {
        if (c.Architecture != Architecture.Llama) throw new NotSupportedException($"the GPU decoder runs LLaMA models; got {c.Architecture}");
        if (c.AttentionBias || c.MlpBias) throw new NotSupportedException("the GPU decoder has no linear biases (LLaMA checkpoints have none)");
        _gpu = gpu; Config = c; _source = source;
        MaxContext = Math.Min(maxContext, c.MaxPositions);
        var acc = gpu.Accelerator;
        MemoryBuffer1D<float, Stride1D.Dense> Vec(string name, int n) => acc.Allocate1D(Widen(source.Get(name, new Shape(n))));
        GpuLinear Lin(string name, int rows, int cols)
        {
            var layer = spqr?.Invoke(name);
            return layer is not null ? new GpuLinear(acc, layer) : new GpuLinear(acc, source.Get(name + ".weight", new Shape(rows, cols)));
        }
        _blocks = new Block[c.NumLayers];
        for (int l = 0; l < c.NumLayers; l++)
        {
            string p = $"model.layers.{l}.";
            _blocks[l] = new Block(Vec(p + "input_layernorm.weight", c.HiddenSize),
                Lin(p + "self_attn.q_proj", c.QDim, c.HiddenSize), Lin(p + "self_attn.k_proj", c.KvDim, c.HiddenSize),
                Lin(p + "self_attn.v_proj", c.KvDim, c.HiddenSize), Lin(p + "self_attn.o_proj", c.HiddenSize, c.QDim),
                Vec(p + "post_attention_layernorm.weight", c.HiddenSize),
                Lin(p + "mlp.gate_proj", c.IntermediateSize, c.HiddenSize), Lin(p + "mlp.up_proj", c.IntermediateSize, c.HiddenSize),
                Lin(p + "mlp.down_proj", c.HiddenSize, c.IntermediateSize));
        }
        _embed = source.Get("model.embed_tokens.weight", new Shape(c.VocabSize, c.HiddenSize));
        _head = c.TieWordEmbeddings ? new GpuLinear(acc, _embed) : Lin("lm_head", c.VocabSize, c.HiddenSize);
        _finalNorm = Vec("model.norm.weight", c.HiddenSize);
        int ff = c.IntermediateSize;
        _x = acc.Allocate1D<float>(c.HiddenSize); _h = acc.Allocate1D<float>(Math.Max(c.HiddenSize, c.QDim)); _q = acc.Allocate1D<float>(c.QDim);
        _k = acc.Allocate1D<float>(c.KvDim); _v = acc.Allocate1D<float>(c.KvDim); _att = acc.Allocate1D<float>(c.QDim); _o = acc.Allocate1D<float>(c.HiddenSize);
        _gate = acc.Allocate1D<float>(ff); _up = acc.Allocate1D<float>(ff); _logits = acc.Allocate1D<float>(c.VocabSize);
        _scores = acc.Allocate1D<float>((long)c.NumHeads * MaxContext);
        long scratch = 16;
        foreach (var b in _blocks) foreach (var lin in new[] { b.Q, b.K, b.V, b.O, b.Gate, b.Up, b.Down }) if (lin.Spqr is not null) scratch = Math.Max(scratch, gpu.Kernels.SpqrScratch(lin.Spqr));
        _scratch = acc.Allocate1D<float>(scratch);
        var rope = new RopeFrequencies(c.HeadDim, MaxContext, c.RopeTheta, RopeScaling.InvFreq(c));
        var cos = new float[(long)MaxContext * (c.HeadDim / 2)]; var sin = new float[cos.Length];
        for (int pos = 0; pos < MaxContext; pos++) { rope.Cos(pos).CopyTo(cos.AsSpan(pos * (c.HeadDim / 2))); rope.Sin(pos).CopyTo(sin.AsSpan(pos * (c.HeadDim / 2))); }
        _cos = acc.Allocate1D(cos); _sin = acc.Allocate1D(sin);
        _keys = [.. Enumerable.Range(0, c.NumLayers).Select(_ => acc.Allocate1D<float>((long)MaxContext * c.KvDim))];
        _values = [.. Enumerable.Range(0, c.NumLayers).Select(_ => acc.Allocate1D<float>((long)MaxContext * c.KvDim))];
        _row = new float[c.HiddenSize];
    }

    private static float[] Widen(Tensor t)
    {
        if (t.DType == DType.F32) return t.AsReadOnlySpan<float>().ToArray();
        using var f = t.ToF32();
        return f.AsReadOnlySpan<float>().ToArray();
    }

    /// <summary>Tokens per Forward call: the device decoder runs them one at a time (prefill is token by token).</summary>
    public int MaxBatch => 64;
    private float[] _all = [];
    private IDisposable[] _owned = [];

    /// <summary>ICausalLM: tokens at positions pos.. one decode step each; logits of the last token, or of all.</summary>
    public ReadOnlySpan<float> Forward(ReadOnlySpan<int> tokens, int pos, bool allLogits)
    {
        int V = Config.VocabSize;
        if (allLogits && _all.Length < tokens.Length * V) _all = new float[Math.Max(tokens.Length, MaxBatch) * V];
        float[] last = [];
        for (int t = 0; t < tokens.Length; t++)
        {
            last = Step(tokens[t], pos + t);
            if (allLogits) last.CopyTo(_all, t * V);
        }
        return allLogits ? _all.AsSpan(0, tokens.Length * V) : last;
    }

    /// <summary>
    /// Opens a Hugging Face LLaMA folder (dense or SpQR-compressed, ours or the authors' export) on the device; the
    /// returned model owns the backend, checkpoint and weight source. DeviceChoice.Gpu without CUDA throws
    /// GpuUnavailableException.
    /// </summary>
    public static GpuLlamaModel Open(string folder, DeviceChoice device, int maxContext = 2048)
    {
        var cfg = TransformerConfig.Load(folder);
        var gpu = GpuBackend.Create(device);
        SafetensorsCheckpoint? ck = null; SafetensorsWeightSource? src = null;
        try
        {
            ck = SafetensorsCheckpoint.Open(folder);
            src = new SafetensorsWeightSource(ck);
            var local = ck;
            var m = new GpuLlamaModel(gpu, cfg, src, name => SpQR.Transformer.Layers.SpqrLinearFactory.ReadLayer(local, name, out _), maxContext);
            m._owned = [src, gpu]; // the source disposes the checkpoint
            return m;
        }
        catch { src?.Dispose(); ck?.Dispose(); gpu.Dispose(); throw; }
    }

    /// <summary>Device bytes of the weights a decode step reads (all linears and the head).</summary>
    public long WeightBytes => _blocks.Sum(b => new[] { b.Q, b.K, b.V, b.O, b.Gate, b.Up, b.Down }.Sum(l => l.Bytes)) + _head.Bytes;

    /// <summary>Runs one token at position pos (the cache holds 0..pos-1) and returns the logits (vocab,).</summary>
    public float[] Step(int token, int pos)
    {
        var c = Config;
        if ((uint)token >= (uint)c.VocabSize) throw new ArgumentOutOfRangeException(nameof(token), token, $"token id outside the vocabulary of {c.VocabSize}");
        if ((uint)pos >= (uint)MaxContext) throw new ArgumentOutOfRangeException(nameof(pos), pos, $"position past the context of {MaxContext}");
        var k = _gpu.Kernels;
        int d = c.HiddenSize, half = c.HeadDim / 2;
        using (var row = _embed.Row(token).ToF32()) row.AsReadOnlySpan<float>().CopyTo(_row);
        _x.View.CopyFromCPU(_row);
        var cos = _cos.View.SubView((long)pos * half, half); var sin = _sin.View.SubView((long)pos * half, half);
        var dims = new AttentionDims { Heads = c.NumHeads, KvHeads = c.NumKvHeads, HeadDim = c.HeadDim, MaxContext = MaxContext, Positions = pos + 1 };
        bool interleaved = c.RopeLayout == RopeLayout.Interleaved;
        for (int l = 0; l < c.NumLayers; l++)
        {
            var b = _blocks[l];
            var h = _h.View.SubView(0, d);
            k.RmsNorm(_x.View, b.InputNorm.View, h, 1, c.NormEps);
            b.Q.Forward(k, h, _q.View, _scratch.View);
            b.K.Forward(k, h, _k.View, _scratch.View);
            b.V.Forward(k, h, _v.View, _scratch.View);
            k.Rope(_q.View, cos, sin, c.NumHeads, c.HeadDim, interleaved);
            k.Rope(_k.View, cos, sin, c.NumKvHeads, c.HeadDim, interleaved);
            _k.View.CopyTo(_keys[l].View.SubView((long)pos * c.KvDim, c.KvDim));
            _v.View.CopyTo(_values[l].View.SubView((long)pos * c.KvDim, c.KvDim));
            k.Attention(_q.View, _keys[l].View, _values[l].View, _att.View, _scores.View, dims);
            b.O.Forward(k, _att.View, _o.View, _scratch.View);
            k.Add(_x.View, _o.View, d);
            k.RmsNorm(_x.View, b.PostNorm.View, h, 1, c.NormEps);
            b.Gate.Forward(k, h, _gate.View, _scratch.View);
            b.Up.Forward(k, h, _up.View, _scratch.View);
            k.SwiGlu(_gate.View, _up.View, c.IntermediateSize);
            b.Down.Forward(k, _gate.View, _o.View, _scratch.View);
            k.Add(_x.View, _o.View, d);
        }
        var hf = _h.View.SubView(0, d);
        k.RmsNorm(_x.View, _finalNorm.View, hf, 1, c.NormEps);
        _head.Forward(k, hf, _logits.View, _scratch.View);
        _gpu.Accelerator.Synchronize();
        return _logits.GetAsArray1D();
    }

    public void Dispose()
    {
        foreach (var b in _blocks) { b.InputNorm.Dispose(); b.PostNorm.Dispose(); foreach (var lin in new[] { b.Q, b.K, b.V, b.O, b.Gate, b.Up, b.Down }) lin.Dispose(); }
        _head.Dispose();
        foreach (var buf in new[] { _finalNorm, _x, _h, _q, _k, _v, _att, _o, _gate, _up, _logits, _scores, _scratch, _cos, _sin }) buf.Dispose();
        foreach (var buf in _keys.Concat(_values)) buf.Dispose();
        foreach (var o in _owned) o.Dispose();
    }
}
