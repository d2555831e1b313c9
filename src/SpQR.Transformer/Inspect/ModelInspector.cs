// `spqr inspect`: what a model file or folder holds — format, architecture and dimensions, every tensor's dtype and
// shape, parameter count and bytes — after validating it: a Hugging Face folder is checked tensor by tensor against
// the layout its config.json implies (missing, unexpected, wrong shape, NaN/Inf weights are typed errors).
using SpQR.Tensors;
using SpQR.Tensors.Cpu;
using SpQR.Tensors.IO;
using SpQR.Transformer.Config;
using SpQR.Transformer.Layers;

namespace SpQR.Transformer.Inspect;

public sealed record TensorSummary(string Name, string DType, long[] Shape, long Bytes);

public sealed record InspectReport(string Path, string Format, TransformerConfig? Config, IReadOnlyList<TensorSummary> Tensors,
                                   IReadOnlyDictionary<string, string> Notes)
{
    public long Parameters => Tensors.Sum(t => t.Shape.Aggregate(1L, (a, b) => a * b));
    public long Bytes => Tensors.Sum(t => t.Bytes);
    public IEnumerable<(string DType, long Count, long Bytes)> ByDType =>
        Tensors.GroupBy(t => t.DType).Select(g => (g.Key, g.LongCount(), g.Sum(t => t.Bytes))).OrderByDescending(g => g.Item3);
}

public static class ModelInspector
{
    public static InspectReport Inspect(string path)
    {
        if (Directory.Exists(path)) return InspectHf(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"no model at {path}: expected a Hugging Face folder, a .safetensors, .gguf or llama2.c .bin file", path);
        string ext = System.IO.Path.GetExtension(path).ToLowerInvariant();
        return ext switch
        {
            ".gguf" => InspectGguf(path),
            ".safetensors" => InspectSafetensors(path),
            _ => InspectLlama2c(path),
        };
    }

    private static InspectReport InspectHf(string folder)
    {
        var cfg = TransformerConfig.Load(folder);
        using var ck = SafetensorsCheckpoint.Open(folder);
        var expected = WeightLayout.For(cfg);
        var names = new HashSet<string>(ck.TensorNames);
        var tensors = new List<TensorSummary>();
        var bits = new List<(string Name, long Weights, double StoredBits, double PaperBits)>();
        foreach (var spec in expected)
        {
            string linear = spec.Name.EndsWith(".weight", StringComparison.Ordinal) ? spec.Name[..^7] : spec.Name;
            var layer = SpqrLinearFactory.ReadLayer(ck, linear, out string layerFile);
            if (layer is not null)
            {
                // a compressed SpQR linear (ours or the authors' export): validate every part, report its stored size and bits per weight
                if (layer.Rows != spec.Shape[0] || layer.Cols != spec.Shape[1])
                    throw new ModelFormatException(layerFile, $"SpQR linear \"{linear}\"", $"[{spec.Shape[0]}, {spec.Shape[1]}]", $"[{layer.Rows}, {layer.Cols}]");
                long n = (long)layer.Rows * layer.Cols;
                double share = (double)layer.OutlierCount / n;
                double paper = layer.WBits + (layer.QuantizedStats ? (layer.ScaleBits + layer.ZeroBits) / 16.0 + 64.0 / (16 * layer.QqGroupSize) : 32.0 / 16) + 32 * share;
                bits.Add((linear, n, layer.StoredBytes * 8.0 / n, paper));
                tensors.Add(new TensorSummary(spec.Name, $"SpQR w{layer.WBits}", spec.Shape, layer.StoredBytes));
                names.RemoveWhere(x => x.StartsWith(linear + ".spqr.", StringComparison.Ordinal)
                                       || SpqrAuthorsExportParts.Any(p => x == linear + "." + p));
                continue;
            }
            var t = ck.Get(spec.Name, new Shape(spec.Shape));
            long bad = CpuKernels.FindNonFinite(t);
            if (bad >= 0) throw new ModelFormatException(ck.Entry(spec.Name).Name, $"tensor \"{spec.Name}\" element {bad}", "finite weights", "NaN or infinity", "the checkpoint is corrupt");
            tensors.Add(new TensorSummary(spec.Name, t.DType.ToString(), spec.Shape, t.ByteLength));
            names.Remove(spec.Name);
        }
        // rotary caches some exporters add are harmless; anything else means the config and weights disagree
        names.RemoveWhere(n => n.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal));
        if (names.Count > 0)
            throw new ModelFormatException(folder, $"tensor \"{names.First()}\"", "only the tensors config.json implies", $"{names.Count} unexpected tensors",
                "config.json does not describe these weights");
        var notes = new Dictionary<string, string> { ["files"] = string.Join(", ", ck.Files.Select(f => System.IO.Path.GetFileName(f.Path))) };
        if (bits.Count > 0)
        {
            long total = bits.Sum(b => b.Weights);
            notes["SpQR linears"] = $"{bits.Count}, {total:N0} weights";
            notes["bits per weight (stored)"] = $"{bits.Sum(b => b.StoredBits * b.Weights) / total:F3}";
            notes["bits per weight (paper's accounting)"] = $"{bits.Sum(b => b.PaperBits * b.Weights) / total:F3}";
            foreach (var b in bits) notes[$"  {b.Name}"] = $"{b.StoredBits:F3} stored, {b.PaperBits:F3} by the paper's formula";
        }
        return new InspectReport(folder, bits.Count > 0 ? "SpQR compressed (safetensors)" : "Hugging Face safetensors", cfg, tensors, notes);
    }

    private static InspectReport InspectSafetensors(string file)
    {
        using var f = SafetensorsFile.Open(file);
        var tensors = f.Entries.Select(e => new TensorSummary(e.Name, e.DType.ToString(), e.Shape.Dims.ToArray(), e.ByteLength)).ToList();
        return new InspectReport(file, "safetensors", null, tensors, f.Metadata.ToDictionary(k => k.Key, k => k.Value));
    }

    private static InspectReport InspectGguf(string file)
    {
        using var g = GgufFile.Open(file);
        var tensors = g.Tensors.Select(t => new TensorSummary(t.Name, t.TypeName, t.Shape.Dims.ToArray(), t.ByteLength)).ToList();
        var notes = new Dictionary<string, string> { ["gguf version"] = g.Version.ToString(), ["metadata keys"] = g.Metadata.Count.ToString() };
        foreach (var key in new[] { "general.architecture", "general.name", "tokenizer.ggml.model" })
            if (g.Metadata.TryGetValue(key, out var v)) notes[key] = v.ToString()!;
        if (g.Metadata.TryGetValue("tokenizer.ggml.tokens", out var toks) && toks is GgufArray a) notes["vocabulary"] = $"{a.Length} tokens";
        return new InspectReport(file, "GGUF", null, tensors, notes);
    }

    private static InspectReport InspectLlama2c(string file)
    {
        using var ck = Llama2cCheckpoint.Open(file);
        var cfg = TransformerConfig.FromLlama2c(ck.Config);
        var tensors = ck.Tensors.Values.Where(t => !t.Name!.StartsWith("freq_cis", StringComparison.Ordinal))
            .Select(t => new TensorSummary(t.Name!, t.DType.ToString(), t.Shape.Dims.ToArray(), t.ByteLength)).ToList();
        var notes = new Dictionary<string, string> { ["classifier"] = ck.Config.SharedClassifier ? "shared with the token embedding" : "separate (wcls)" };
        return new InspectReport(file, "llama2.c checkpoint (legacy v0)", cfg, tensors, notes);
    }

    private static readonly string[] SpqrAuthorsExportParts = ["dense_weights", "row_offsets", "col_vals", "in_perm"];
}
