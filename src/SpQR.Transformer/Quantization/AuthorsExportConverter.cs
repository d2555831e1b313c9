// `spqr convert`: a checkpoint exported by the SpQR authors' tools (per linear dense_weights / row_offsets / col_vals /
// in_perm, SpqrAuthorsExport) -> our compressed folder (docs/formats/spqr.md). Codes, statistics and permutation are
// kept; layers are marked for fp16-step decoding and outliers stored with the value the authors' decode yields, so the
// converted model computes exactly what loading the export computes. Tensors that were not quantized are copied
// unchanged. model.safetensors is written atomically and config.json last: a crash leaves no loadable half-folder.
using System.Text.Json;
using SpQR.Quant.Formats;
using SpQR.Tensors;
using SpQR.Tensors.IO;
using SpQR.Transformer.Config;

namespace SpQR.Transformer.Quantization;

public sealed record ConversionReport(string OutDir, int Linears, long Weights, long OutlierCount, long Bytes);

public static class AuthorsExportConverter
{
    public static ConversionReport Convert(string exportDir, string outDir)
    {
        var cfg = TransformerConfig.Load(exportDir);
        if (Path.GetFullPath(exportDir).TrimEnd('/') == Path.GetFullPath(outDir).TrimEnd('/'))
            throw new ArgumentException($"--out must differ from the export folder ({exportDir})");
        using var ck = SafetensorsCheckpoint.Open(exportDir);
        Tensor? Get(string n) => ck.Contains(n) ? ck.Get(n) : null;
        var all = new List<(string, Tensor)>();
        var owned = new List<Tensor>();
        int linears = 0; long weights = 0, outliers = 0;
        try
        {
            foreach (var spec in WeightLayout.For(cfg))
            {
                string linear = spec.Name.EndsWith(".weight", StringComparison.Ordinal) ? spec.Name[..^7] : spec.Name;
                if (SpqrAuthorsExport.Holds(linear, ck.Contains))
                {
                    string file = ck.FileOf(linear + ".dense_weights");
                    var layer = SpqrAuthorsExport.ToSpqrLayer(SpqrAuthorsExport.Read(linear, Get, file));
                    if (layer.Rows != spec.Shape[0] || layer.Cols != spec.Shape[1])
                        throw new ModelFormatException(file, $"SpQR linear \"{linear}\"", $"[{spec.Shape[0]}, {spec.Shape[1]}] (config.json)", $"[{layer.Rows}, {layer.Cols}]");
                    var parts = SpqrSerializer.ToTensors(linear, layer);
                    owned.AddRange(parts.Select(p => p.Tensor));
                    all.AddRange(parts);
                    linears++; weights += (long)layer.Rows * layer.Cols; outliers += layer.OutlierCount;
                }
                else all.Add((spec.Name, ck.Get(spec.Name, new Shape(spec.Shape))));
            }
            if (linears == 0) throw new ModelFormatException(exportDir, "model.safetensors", "SpQR linears exported by the authors' tools (<linear>.dense_weights)", "none");
            Directory.CreateDirectory(outDir);
            string model = Path.Combine(outDir, "model.safetensors");
            SafetensorsWriter.Write(model, all, new Dictionary<string, string> { ["format"] = "pt", ["spqr"] = $"compressed v{SpqrSerializer.FormatVersion}, converted from the SpQR authors' export" });
            foreach (var extra in new[] { "tokenizer.model", "tokenizer.json", "tokenizer_config.json", "generation_config.json" })
                if (File.Exists(Path.Combine(exportDir, extra))) File.Copy(Path.Combine(exportDir, extra), Path.Combine(outDir, extra), overwrite: true);
            // config.json last: only now does the folder load as a model
            var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(exportDir, "config.json")))!.AsObject();
            config["quantization_config"] = new System.Text.Json.Nodes.JsonObject
            {
                ["quant_method"] = "spqr", ["format_version"] = SpqrSerializer.FormatVersion, ["bits"] = SpqrAuthorsExport.Bits,
                ["beta1"] = SpqrAuthorsExport.Tile, ["beta2"] = SpqrAuthorsExport.Tile, ["qq_scale_bits"] = SpqrAuthorsExport.Bits, ["qq_zero_bits"] = SpqrAuthorsExport.Bits,
                ["fp16_arithmetic"] = true, ["converted_from"] = "SpQR authors' export (dense_weights, row_offsets, col_vals, in_perm)",
                ["outlier_share"] = Math.Round((double)outliers / weights, 6),
            };
            AtomicFile.WriteAllText(Path.Combine(outDir, "config.json"), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            return new ConversionReport(outDir, linears, weights, outliers, new FileInfo(model).Length);
        }
        finally { foreach (var t in owned) t.Dispose(); }
    }
}
