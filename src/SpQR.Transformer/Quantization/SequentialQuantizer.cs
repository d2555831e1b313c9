// Whole-model quantization, layer by layer as the SpQR/GPTQ reference does it: the calibration sequences go through
// the embeddings; for each decoder block the inputs of its linears are captured (one Hessian per distinct input),
// the linears are quantized (in true-sequential groups if asked), and the block is run again with the quantized
// weights to produce the next block's inputs, so errors propagate. Memory: one block's activations
// (nsamples × seqlen × hidden) and one layer's Hessian. Each finished block is persisted atomically under
// <out>/.spqr-partial/, so the same command resumes after a crash; the finished model (config.json last) appears
// only when every block is done.
using System.Text.Json;
using SpQR.Quant.Encode;
using SpQR.Tensors;
using SpQR.Tensors.IO;
using SpQR.Transformer.Config;
using SpQR.Transformer.Layers;
using SpQR.Transformer.Loading;
using SpQR.Transformer.Models;

namespace SpQR.Transformer.Quantization;

public enum QuantMethod { Spqr, Gptq, Rtn }

/// <summary>Quantizes one linear, W (rows, cols) with its Hessian H (cols, cols), into the encoder's result record: the
/// CPU encoder by default; the CLI passes the device encoder for --device gpu.</summary>
public delegate SpqrLayerResult LayerEncoder(ReadOnlySpan<float> W, ReadOnlySpan<double> H, int rows, int cols, SpqrOptions o, string layer);

public sealed record QuantizeOptions
{
    public QuantMethod Method { get; init; } = QuantMethod.Spqr;
    public SpqrOptions Spqr { get; init; } = new();
    public bool TrueSequential { get; init; } = true;
    /// <summary>Write the compressed format (docs/formats/spqr.md) instead of dequantized F32 weights.</summary>
    public bool Compressed { get; init; }
    /// <summary>The per-linear encoder (SpQR and GPTQ); null = SpqrEncoder.Quantize on the CPU.</summary>
    public LayerEncoder? Encoder { get; init; }
}

public sealed record LayerReport(string Name, int Rows, int Cols, double OutlierShare, double AverageBits, double HError, double RtnHError, double Seconds);

public sealed record QuantProgress(int Block, int Blocks, string? Layer, LayerReport? Done, bool Resumed);

public sealed record QuantizationReport(string OutputPath, QuantMethod Method, IReadOnlyList<LayerReport> Layers, double Seconds)
{
    public long Parameters => Layers.Sum(l => (long)l.Rows * l.Cols);
    public double AverageBits => Layers.Sum(l => l.AverageBits * l.Rows * l.Cols) / Math.Max(1, Parameters);
    public double OutlierShare => Layers.Sum(l => l.OutlierShare * l.Rows * l.Cols) / Math.Max(1, Parameters);
}

public static class SequentialQuantizer
{
    public const string PartialFolder = ".spqr-partial";
    private static readonly JsonSerializerOptions JsonOptions = new() { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };

    /// <summary>Linear names of one block (relative to its prefix) in true-sequential groups, and which share an input.</summary>
    public static (string Prefix, string[][] Groups, Func<string, string> InputKey) Blocks(TransformerConfig c, int l) => c.Architecture switch
    {
        Architecture.Llama => ($"model.layers.{l}.",
            [["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"], ["self_attn.o_proj"], ["mlp.gate_proj", "mlp.up_proj"], ["mlp.down_proj"]],
            n => n switch { "self_attn.q_proj" or "self_attn.k_proj" or "self_attn.v_proj" => "attn_in", "mlp.gate_proj" or "mlp.up_proj" => "mlp_in", _ => n }),
        _ => ($"transformer.h.{l}.",
            [["self_attention.query_key_value"], ["self_attention.dense"], ["mlp.dense_h_to_4h"], ["mlp.dense_4h_to_h"]],
            n => n),
    };

    public static QuantizationReport Run(string modelPath, int[][] calibration, string outDir, QuantizeOptions options, IProgress<QuantProgress>? progress = null)
    {
        if (!Directory.Exists(modelPath)) throw new NotSupportedException($"{modelPath}: quantize a Hugging Face folder (config.json + safetensors)");
        if (calibration.Length == 0) throw new ArgumentException("no calibration sequences");
        int seqlen = calibration[0].Length;
        if (seqlen == 0 || calibration.Any(s => s.Length != seqlen)) throw new ArgumentException("calibration sequences must all have the same non-zero length");
        var spqr = options.Spqr;
        spqr.Validate();
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var cfg = TransformerConfig.Load(modelPath);
        if (seqlen > cfg.MaxPositions) throw new ArgumentException($"calibration seqlen {seqlen} exceeds max_position_embeddings {cfg.MaxPositions}");
        var factory = new CapturingLinearFactory();
        using var source = new SafetensorsWeightSource(SafetensorsCheckpoint.Open(modelPath));
        var model = (DecoderBase)ModelLoader.Build(cfg, source, new ModelOptions { MaxContext = seqlen, MaxBatch = seqlen, Linears = factory });

        string partial = Path.Combine(outDir, PartialFolder);
        Directory.CreateDirectory(partial);
        string fingerprint = Fingerprint(modelPath, calibration, options);
        string statePath = Path.Combine(partial, "state.json");
        if (File.Exists(statePath) && File.ReadAllText(statePath) != fingerprint)
            throw new InvalidOperationException($"{outDir} holds a partial run with other settings or calibration data; delete {partial} to start over");
        AtomicFile.WriteAllText(statePath, fingerprint);

        int d = cfg.HiddenSize, n = calibration.Length;
        var acts = new float[(long)n * seqlen * d]; // one block's activations (nsamples, seqlen, hidden)
        for (int s = 0; s < n; s++) model.EmbedTokens(calibration[s], acts.AsSpan((int)((long)s * seqlen * d), seqlen * d));
        var reports = new List<LayerReport>();
        var tmp = new float[seqlen * d];

        void RunBlock(int l, bool keepOutput)
        {
            for (int s = 0; s < n; s++)
            {
                var x = acts.AsSpan((int)((long)s * seqlen * d), seqlen * d);
                if (keepOutput) model.RunLayer(l, x, seqlen, 0);
                else { x.CopyTo(tmp); model.RunLayer(l, tmp, seqlen, 0); }
                foreach (var lin in factory.Linears.Values) lin.Capture?.CountSequence();
            }
        }

        for (int l = 0; l < cfg.NumLayers; l++)
        {
            var (prefix, groups, inputKey) = Blocks(cfg, l);
            string blockFile = Path.Combine(partial, $"block-{l:D4}.safetensors");
            var linears = groups.SelectMany(g => g).Select(name => factory.Linears[prefix + name]).ToList();
            if (File.Exists(blockFile))
            {
                // resume: reuse the persisted Ŵ to produce the next block's inputs
                using var f = SafetensorsFile.Open(blockFile);
                foreach (var lin in linears) lin.Replacement = new DenseLinear(f.Get(lin.Name + ".weight"), lin.Bias);
                reports.AddRange(JsonSerializer.Deserialize<LayerReport[]>(f.Metadata["layers"], JsonOptions)!);
                progress?.Report(new QuantProgress(l, cfg.NumLayers, null, null, Resumed: true));
                RunBlock(l, keepOutput: true);
                foreach (var lin in linears) lin.Replacement = null;
                continue;
            }
            var results = new Dictionary<string, (float[] What, int Rows, int Cols, SpqrLayerResult? Q)>();
            var stepGroups = options.TrueSequential ? groups : [groups.SelectMany(g => g).ToArray()];
            foreach (var group in stepGroups)
            {
                // capture the group's inputs with everything before it already quantized
                var accs = new Dictionary<string, HessianAccumulator>();
                foreach (var name in group)
                {
                    var lin = factory.Linears[prefix + name];
                    string key = inputKey(name);
                    if (!accs.ContainsKey(key)) { accs[key] = new HessianAccumulator(lin.InFeatures); lin.Capture = accs[key]; }
                }
                RunBlock(l, keepOutput: false); // RTN ignores H for quantizing, but its H-weighted error is reported too
                foreach (var lin in linears) lin.Capture = null;
                foreach (var name in group)
                {
                    var lin = factory.Linears[prefix + name];
                    progress?.Report(new QuantProgress(l, cfg.NumLayers, lin.Name, null, false));
                    var t0 = System.Diagnostics.Stopwatch.StartNew();
                    using var wt = lin.Weight.ToF32();
                    var W = wt.AsReadOnlySpan<float>();
                    int rows = lin.OutFeatures, cols = lin.InFeatures;
                    var H = accs[inputKey(name)].Hessian();
                    float[] what; SpqrLayerResult? q = null;
                    if (options.Method == QuantMethod.Rtn) what = Rtn.Dequantized(W, rows, cols, spqr.WBits, spqr.GroupSize);
                    else { q = (options.Encoder ?? SpqrEncoder.Quantize)(W, H, rows, cols, spqr, lin.Name); what = q.Dequantized; }
                    double err = LayerError.HWeighted(W, what, H, rows, cols);
                    double rtnErr = options.Method == QuantMethod.Rtn ? err : LayerError.HWeighted(W, Rtn.Dequantized(W, rows, cols, spqr.WBits, spqr.GroupSize), H, rows, cols);
                    double bits = q?.AverageBitsCounted ?? spqr.WBits + 32.0 * ((cols + spqr.GroupSize - 1) / spqr.GroupSize) / cols; // RTN: FP16 scale + zero per group, ragged groups counted
                    var rep = new LayerReport(lin.Name, rows, cols, q?.OutlierShare ?? 0, bits, err, rtnErr, t0.Elapsed.TotalSeconds);
                    reports.Add(rep);
                    progress?.Report(new QuantProgress(l, cfg.NumLayers, lin.Name, rep, false));
                    var whatT = Tensor.FromArray(what, rows, cols);
                    lin.Replacement = new DenseLinear(whatT, lin.Bias);
                    results[lin.Name] = (what, rows, cols, q);
                }
            }
            RunBlock(l, keepOutput: true); // the quantized block's outputs are the next block's inputs
            PersistBlock(blockFile, results, reports.Skip(reports.Count - linears.Count).ToArray());
            foreach (var lin in linears) lin.Replacement = null; // memory stays bounded by one block
        }

        Finalize(modelPath, outDir, partial, cfg, options, reports);
        return new QuantizationReport(outDir, options.Method, reports, sw.Elapsed.TotalSeconds);
    }

    private static string Fingerprint(string modelPath, int[][] calibration, QuantizeOptions o)
    {
        var h = new HashCode();
        foreach (var s in calibration) foreach (int t in s) h.Add(t);
        return JsonSerializer.Serialize(new { model = Path.GetFullPath(modelPath), method = o.Method.ToString(), spqr = o.Spqr.ToString(), o.TrueSequential, calibration = h.ToHashCode(), n = calibration.Length });
    }

    // per linear: "<name>.weight" Ŵ F32 (rows, cols); with codes: ".codes" U8 (rows, cols, permuted columns), ".scale"/".zero"
    // F32 (groups, rows), ".perm" I32 (cols,), ".outlier_rows"/".outlier_cols" I32, ".outlier_values" F32
    private static void PersistBlock(string file, Dictionary<string, (float[] What, int Rows, int Cols, SpqrLayerResult? Q)> results, LayerReport[] reports)
    {
        var tensors = new List<(string, Tensor)>();
        try
        {
            foreach (var (name, (what, rows, cols, q)) in results)
            {
                tensors.Add((name + ".weight", Tensor.FromArray(what, rows, cols)));
                if (q is null) continue;
                var codes = Tensor.Zeros(DType.U8, q.Rows, q.Cols); q.Codes.CopyTo(codes.AsSpan<byte>()); tensors.Add((name + ".codes", codes));
                tensors.Add((name + ".scale", Tensor.FromArray(q.Scale, q.Groups, q.Rows)));
                tensors.Add((name + ".zero", Tensor.FromArray(q.Zero, q.Groups, q.Rows)));
                tensors.Add((name + ".perm", Ints(q.Permutation)));
                tensors.Add((name + ".outlier_rows", Ints(q.OutlierRows)));
                tensors.Add((name + ".outlier_cols", Ints(q.OutlierCols)));
                tensors.Add((name + ".outlier_values", Tensor.FromArray(q.OutlierValues, q.OutlierValues.Length)));
                if (Packable(q.Options)) tensors.AddRange(SpQR.Quant.Formats.SpqrSerializer.ToTensors(name, SpQR.Quant.Formats.SpqrLayer.Pack(q)));
            }
            SafetensorsWriter.Write(file, tensors, new Dictionary<string, string> { ["layers"] = JsonSerializer.Serialize(reports, JsonOptions) });
        }
        finally { foreach (var (_, t) in tensors) t.Dispose(); }
    }

    /// <summary>Whether results of these options fit the stored format (β1 = 16, FP16-exact, qq in 4-bit fields).</summary>
    public static bool Packable(SpqrOptions o) => o.GroupSize == SpQR.Quant.Formats.SpqrLayer.GroupSize && o.StorageExact
        && (o.QqScaleBits is null) == (o.QqZeroBits is null) && !(o.QqScaleBits > 4) && !(o.QqZeroBits > 4)
        && !(o.RoundZero && o.QqZeroBits is not null && o.QqZeroBits >= o.WBits);

    private static Tensor Ints(int[] v)
    {
        var t = Tensor.Zeros(DType.I32, v.Length);
        v.CopyTo(t.AsSpan<int>());
        return t;
    }

    private static void Finalize(string modelPath, string outDir, string partial, TransformerConfig cfg, QuantizeOptions o, List<LayerReport> reports)
    {
        var blockFiles = Enumerable.Range(0, cfg.NumLayers).Select(l => SafetensorsFile.Open(Path.Combine(partial, $"block-{l:D4}.safetensors"))).ToList();
        try
        {
            var byName = new Dictionary<string, Tensor>();
            var compressedParts = new Dictionary<string, List<(string, Tensor)>>();
            foreach (var f in blockFiles)
                foreach (var e in f.Entries)
                {
                    if (e.Name.EndsWith(".weight", StringComparison.Ordinal)) byName[e.Name] = f.Get(e.Name);
                    int at = e.Name.IndexOf(".spqr.", StringComparison.Ordinal);
                    if (at > 0)
                    {
                        string w = e.Name[..at] + ".weight";
                        if (!compressedParts.TryGetValue(w, out var parts)) compressedParts[w] = parts = new();
                        parts.Add((e.Name, f.Get(e.Name)));
                    }
                }
            if (o.Compressed && o.Method == QuantMethod.Rtn) throw new NotSupportedException("RTN results are written dequantized; use --method gptq or spqr for the compressed format");
            if (o.Compressed && compressedParts.Count == 0) throw new NotSupportedException("these options do not fit the compressed format (groupsize 16, qq bits <= 4)");
            using var ck = SafetensorsCheckpoint.Open(modelPath);
            var all = new List<(string, Tensor)>();
            foreach (var spec in WeightLayout.For(cfg))
            {
                if (o.Compressed && compressedParts.TryGetValue(spec.Name, out var parts)) all.AddRange(parts);
                else all.Add((spec.Name, byName.TryGetValue(spec.Name, out var q) ? q : ck.Get(spec.Name)));
            }
            SafetensorsWriter.Write(Path.Combine(outDir, "model.safetensors"), all,
                new Dictionary<string, string> { ["format"] = "pt", ["spqr"] = o.Compressed ? $"compressed v{SpQR.Quant.Formats.SpqrSerializer.FormatVersion}" : "dequantized" });
            // codes and statistics in a documented side folder (docs/formats/dequantized-output.md)
            string codesDir = Path.Combine(outDir, "spqr-codes");
            Directory.CreateDirectory(codesDir);
            for (int l = 0; l < cfg.NumLayers; l++)
                File.Copy(Path.Combine(partial, $"block-{l:D4}.safetensors"), Path.Combine(codesDir, $"block-{l:D4}.safetensors"), overwrite: true);
            foreach (var extra in new[] { "tokenizer.model", "tokenizer.json", "tokenizer_config.json", "generation_config.json" })
                if (File.Exists(Path.Combine(modelPath, extra))) File.Copy(Path.Combine(modelPath, extra), Path.Combine(outDir, extra), overwrite: true);
            // config.json last: only now does the folder load as a model
            var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(modelPath, "config.json")))!.AsObject();
            var s = o.Spqr;
            config["torch_dtype"] = "float32";
            config["dtype"] = "float32";
            config["quantization_config"] = new System.Text.Json.Nodes.JsonObject
            {
                ["quant_method"] = o.Compressed ? "spqr" : "spqr-dequantized", ["format_version"] = SpQR.Quant.Formats.SpqrSerializer.FormatVersion, ["method"] = o.Method.ToString().ToLowerInvariant(), ["bits"] = s.WBits, ["beta1"] = s.GroupSize,
                ["beta2"] = s.QqGroupSize, ["qq_scale_bits"] = s.QqScaleBits, ["qq_zero_bits"] = s.QqZeroBits, ["outlier_threshold"] = s.OutlierThreshold,
                ["permutation_order"] = s.PermutationOrder.ToString(), ["percdamp"] = s.PercDamp, ["true_sequential"] = o.TrueSequential,
                ["average_bits"] = Math.Round(new QuantizationReport(outDir, o.Method, reports, 0).AverageBits, 4),
                ["outlier_share"] = Math.Round(new QuantizationReport(outDir, o.Method, reports, 0).OutlierShare, 6),
            };
            AtomicFile.WriteAllText(Path.Combine(outDir, "config.json"), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        }
        finally { foreach (var f in blockFiles) f.Dispose(); }
        Directory.Delete(partial, recursive: true);
    }
}
