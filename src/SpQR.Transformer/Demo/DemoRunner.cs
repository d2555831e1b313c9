// `spqr demo`: the whole job end to end on a machine with no model at hand. Builds a small LLaMA-shaped model with
// deterministic weights that have the structure SpQR is for (a few heavy input channels in the embeddings, so the
// Hessians have dominant columns; a few heavy weight columns; scattered large weights), writes it as a Hugging Face
// folder, quantizes it with RTN, GPTQ and SpQR on generated calibration tokens (the real layer-by-layer pipeline),
// reloads the compressed SpQR folder from disk and compares every result with the dense model. Also times a
// 4096x4096 SpQR w3 matvec against the F16 GEMV in this process. Everything is seeded: the same numbers every run
// except the timings.
using System.Diagnostics;
using System.Text.Json.Nodes;
using SpQR.Quant.Decode;
using SpQR.Quant.Encode;
using SpQR.Quant.Formats;
using SpQR.Tensors;
using SpQR.Tensors.Cpu;
using SpQR.Tensors.IO;
using SpQR.Transformer.Config;
using SpQR.Transformer.Loading;
using SpQR.Transformer.Quantization;

namespace SpQR.Transformer.Demo;

public sealed record DemoOptions
{
    public int Hidden { get; init; } = 512;
    public int Intermediate { get; init; } = 1376;
    public int Layers { get; init; } = 4;
    public int Heads { get; init; } = 8;
    public int KvHeads { get; init; } = 4;
    public int Vocab { get; init; } = 2048;
    public int CalibrationSequences { get; init; } = 16;
    public int SeqLen { get; init; } = 128;
    public int EvalSequences { get; init; } = 4;
    public int WBits { get; init; } = 3;
    /// <summary>Shape of the matvec timing (rows, cols); 0 skips it.</summary>
    public int MatVecSize { get; init; } = 4096;
    public int Seed { get; init; } = 0;
}

/// <param name="HErrorVsRtn">Σ over linears of the H-weighted error ‖(W − Ŵ)X‖², relative to RTN's on the same inputs.</param>
/// <param name="OutputRelL2">‖logits − dense logits‖ / ‖dense logits‖ on held-out tokens.</param>
public sealed record DemoRow(string Method, string Stored, double AverageBits, double HErrorVsRtn, double OutputRelL2, long BytesOnDisk, double Seconds);

public sealed record DemoResult(string Folder, long DenseBytes, IReadOnlyList<DemoRow> Rows, int MatVecRows, int MatVecCols, double F16Us, double SpqrUs, double Seconds);

public static class DemoRunner
{
    public static DemoResult Run(string outDir, DemoOptions o, IProgress<(string Stage, double Fraction)>? progress = null)
    {
        var total = Stopwatch.StartNew();
        Directory.CreateDirectory(outDir);
        string dense = Path.Combine(outDir, "dense");
        progress?.Report(("building the model", 0));
        WriteModel(dense, o);
        var rng = new Random(o.Seed + 1);
        int[][] calib = Enumerable.Range(0, o.CalibrationSequences).Select(_ => Enumerable.Range(0, o.SeqLen).Select(_ => rng.Next(o.Vocab)).ToArray()).ToArray();
        int[][] eval = Enumerable.Range(0, o.EvalSequences).Select(_ => Enumerable.Range(0, o.SeqLen).Select(_ => rng.Next(o.Vocab)).ToArray()).ToArray();
        var reference = Logits(dense, eval, o);

        var runs = new (string Method, QuantizeOptions Options)[]
        {
            ("RTN", new QuantizeOptions { Method = QuantMethod.Rtn, Spqr = SpqrOptions.Rtn() with { WBits = o.WBits } }),
            ("GPTQ", new QuantizeOptions { Method = QuantMethod.Gptq, Spqr = SpqrOptions.Gptq() with { WBits = o.WBits }, Compressed = true }),
            ("SpQR", new QuantizeOptions { Method = QuantMethod.Spqr, Spqr = new SpqrOptions { WBits = o.WBits }, Compressed = true }),
        };
        var rows = new List<DemoRow>();
        for (int i = 0; i < runs.Length; i++)
        {
            var (method, options) = runs[i];
            string dir = Path.Combine(outDir, method.ToLowerInvariant());
            int stage = i;
            var report = SequentialQuantizer.Run(dense, calib, dir, options, new SyncProgress<QuantProgress>(p =>
                progress?.Report(($"{method}: block {p.Block + 1}/{p.Blocks}", (stage + (p.Block + (p.Done is null ? 0.0 : 1.0)) / p.Blocks) / runs.Length))));
            // reloaded from disk: the compressed folders run through the fused kernels
            var logits = Logits(dir, eval, o);
            double h = report.Layers.Sum(l => l.HError), hr = report.Layers.Sum(l => l.RtnHError);
            rows.Add(new DemoRow(method, options.Compressed ? "SpQR format" : "dequantized F32", report.AverageBits, h / Math.Max(hr, 1e-300),
                RelL2(logits, reference), new FileInfo(Path.Combine(dir, "model.safetensors")).Length, report.Seconds));
        }
        double f16Us = 0, spqrUs = 0;
        if (o.MatVecSize > 0)
        {
            progress?.Report(("timing the matvec", 1));
            (f16Us, spqrUs) = TimeMatVec(o.MatVecSize, o.MatVecSize, o.WBits, o.Seed);
        }
        return new DemoResult(outDir, new FileInfo(Path.Combine(dense, "model.safetensors")).Length, rows, o.MatVecSize, o.MatVecSize, f16Us, spqrUs, total.Elapsed.TotalSeconds);
    }

    private static float[] Logits(string folder, int[][] eval, DemoOptions o)
    {
        using var model = ModelLoader.Load(folder, new ModelOptions { MaxContext = o.SeqLen, MaxBatch = o.SeqLen });
        var all = new List<float>();
        foreach (var seq in eval) all.AddRange(model.Forward(seq, 0, allLogits: true).ToArray());
        return [.. all];
    }

    private static double RelL2(float[] a, float[] b)
    {
        double num = 0, den = 0;
        for (int i = 0; i < a.Length; i++) { double d = a[i] - b[i]; num += d * d; den += (double)b[i] * b[i]; }
        return Math.Sqrt(num / den);
    }

    /// <summary>Median µs of F16 GEMV and SpQR matvec (1% outliers) on random rows x cols weights, same process.</summary>
    public static (double F16Us, double SpqrUs) TimeMatVec(int rows, int cols, int wbits, int seed)
    {
        var layer = SpqrLayer.Random(rows, cols, wbits, 0.01, seed + 7);
        var rng = new Random(seed);
        var wh = new ushort[(long)rows * cols];
        for (long i = 0; i < wh.Length; i++) wh[i] = BitConverter.HalfToUInt16Bits((Half)(rng.NextSingle() - 0.5f));
        var x = new float[cols];
        for (int i = 0; i < cols; i++) x[i] = rng.NextSingle() - 0.5f;
        var y = new float[rows];
        double Median(Action a)
        {
            for (int i = 0; i < 3; i++) a();
            var t = new double[15];
            for (int i = 0; i < t.Length; i++) { var s = Stopwatch.StartNew(); a(); t[i] = s.Elapsed.TotalMicroseconds; }
            Array.Sort(t);
            return t[t.Length / 2];
        }
        return (Median(() => CpuKernels.GemvF16(wh, x, y, rows, cols)), Median(() => SpqrMatVec.MatVec(layer, x, y)));
    }

    // the dense model: F32 safetensors + config.json, weights ~ N(0, 1/in) with planted structure
    private static void WriteModel(string dir, DemoOptions o)
    {
        Directory.CreateDirectory(dir);
        var config = new JsonObject
        {
            ["architectures"] = new JsonArray("LlamaForCausalLM"), ["model_type"] = "llama", ["hidden_size"] = o.Hidden,
            ["intermediate_size"] = o.Intermediate, ["num_hidden_layers"] = o.Layers, ["num_attention_heads"] = o.Heads,
            ["num_key_value_heads"] = o.KvHeads, ["vocab_size"] = o.Vocab, ["max_position_embeddings"] = Math.Max(512, o.SeqLen),
            ["rms_norm_eps"] = 1e-5, ["rope_theta"] = 10000.0, ["tie_word_embeddings"] = false, ["hidden_act"] = "silu", ["torch_dtype"] = "float32",
        };
        AtomicFile.WriteAllText(Path.Combine(dir, "config.json"), config.ToJsonString());
        var cfg = TransformerConfig.Load(dir);
        var rng = new Random(o.Seed);
        double Normal() => Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
        // LLM-style outlier features: a few hidden channels carry much larger activations
        var heavy = Enumerable.Range(0, o.Hidden).OrderBy(_ => rng.Next()).Take(Math.Max(1, o.Hidden / 128)).ToHashSet();
        var tensors = new List<(string, Tensor)>();
        try
        {
            foreach (var spec in WeightLayout.For(cfg))
            {
                var t = Tensor.Zeros(DType.F32, spec.Shape);
                var v = t.AsSpan<float>();
                int inF = (int)spec.Shape[^1];
                if (spec.Role == WeightRole.Norm) v.Fill(1f);
                else if (spec.Role == WeightRole.Embedding)
                    for (int i = 0; i < v.Length; i++) v[i] = (float)(Normal() * (heavy.Contains(i % inF) ? 8 : 1));
                else
                {
                    // a few input columns matter more (x4), and 0.2% of the weights are large (x6)
                    var heavyCols = Enumerable.Range(0, inF).Where(_ => rng.Next(100) == 0).ToHashSet();
                    float a = 1f / MathF.Sqrt(inF);
                    for (int i = 0; i < v.Length; i++)
                        v[i] = (float)(Normal() * a * (heavyCols.Contains(i % inF) ? 4 : 1) * (rng.Next(500) == 0 ? 6 : 1));
                }
                tensors.Add((spec.Name, t));
            }
            SafetensorsWriter.Write(Path.Combine(dir, "model.safetensors"), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        }
        finally { foreach (var (_, t) in tensors) t.Dispose(); }
    }
}
