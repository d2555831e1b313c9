// generate and ppl: load the model and tokenizer, run, render; the last line is JSON with --json.
using System.Text.Json;
using Spectre.Console;
using SpQR.Tensors.IO;
using SpQR.Transformer;
using SpQR.Transformer.Eval;
using SpQR.Transformer.Loading;
using SpQR.Transformer.Sampling;
using SpQR.Transformer.Tokenizers;

namespace SpQR.Cli;

internal static class Commands
{
    /// <summary>
    /// The model on the chosen device: cpu (the CPU kernels), gpu (CUDA through ILGPU; LLaMA and Falcon folders; fails without a
    /// CUDA device) or auto (CUDA when present, said on stderr).
    /// </summary>
    public static SpQR.Transformer.Models.ICausalLM LoadModel(string modelPath, ModelOptions modelOptions, string device, TextWriter stderr)
    {
        if (device is not ("cpu" or "gpu" or "auto")) throw new ArgumentException($"--device must be cpu, gpu or auto, got {device}");
        // auto: CUDA for Hugging Face folders when a device is present; llama2.c files and CUDA-less machines stay on the CPU
        bool gpu = device == "gpu" || (device == "auto" && Directory.Exists(modelPath) && SpQR.Gpu.GpuBackend.CudaAvailable());
        if (device == "auto") stderr.WriteLine(gpu ? "device: CUDA (auto)" : "device: CPU (auto)");
        if (!gpu) return ModelLoader.Load(modelPath, modelOptions);
        if (!Directory.Exists(modelPath)) throw new NotSupportedException($"--device gpu runs Hugging Face folders; {modelPath} is not one");
        return SpQR.Gpu.GpuDecoder.Open(modelPath, SpQR.Gpu.DeviceChoice.Gpu, modelOptions.MaxContext, modelOptions.MaxBatch, modelOptions.LaneMajorCodes, modelOptions.FormatCodesOnDevice);
    }

    public static int Generate(string modelPath, string? tokenizerPath, string prompt, GenerationOptions options, ModelOptions modelOptions, string device, bool json, TextWriter stdout, TextWriter stderr)
    {
        using var model = LoadModel(modelPath, modelOptions, device, stderr);
        var tokenizer = TokenizerLoader.Load(modelPath, tokenizerPath, model.Config.VocabSize);
        var gen = new Generator(model, tokenizer);
        stdout.Write(prompt);
        var text = new System.Text.StringBuilder();
        foreach (var piece in gen.Generate(prompt, options)) { stdout.Write(piece); stdout.Flush(); text.Append(piece); }
        stdout.WriteLine();
        var s = gen.LastStats!;
        stdout.WriteLine($"{s.GeneratedTokens} tokens, prefill {s.PromptTokens} tokens at {s.PrefillTokensPerSecond:F1} tokens/s, decode {s.DecodeTokensPerSecond:F1} tokens/s");
        if (json)
            stdout.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["text"] = text.ToString(), ["prompt_tokens"] = s.PromptTokens, ["generated_tokens"] = s.GeneratedTokens,
                ["prefill_tokens_per_s"] = Math.Round(s.PrefillTokensPerSecond, 2), ["decode_tokens_per_s"] = Math.Round(s.DecodeTokensPerSecond, 2),
            }));
        return 0;
    }

    public static int Perplexity(string modelPath, string? tokenizerPath, string? textFile, string? tokensSpec, int seqlen, ModelOptions modelOptions,
                                 string device, bool json, TextWriter stdout, TextWriter stderr)
    {
        if ((textFile is null) == (tokensSpec is null)) throw new ArgumentException("pass exactly one of --text FILE or --tokens FILE.safetensors:TENSOR");
        using var model = LoadModel(modelPath, modelOptions, device, stderr);
        int[] stream;
        if (tokensSpec is not null) stream = ReadTokens(tokensSpec, model.Config.VocabSize, "--tokens").Ids;
        else
        {
            var tokenizer = TokenizerLoader.Load(modelPath, tokenizerPath, model.Config.VocabSize);
            string text = File.ReadAllText(textFile!);
            if (textFile!.EndsWith(".raw", StringComparison.OrdinalIgnoreCase)) text = string.Join("\n\n", text.Split('\n'));
            stream = tokenizer.Encode(text, addBos: false);
        }
        var progress = new SyncProgress<(int Done, int Total)>(p => { if (!json) stderr.Write($"\rwindow {p.Done}/{p.Total}"); });
        var r = SpQR.Transformer.Eval.Perplexity.Evaluate(model, stream, seqlen, progress);
        if (!json) stderr.WriteLine();
        stdout.WriteLine($"perplexity {r.Perplexity:F4} over {r.Windows} windows of {Math.Min(seqlen, model.MaxContext)} tokens ({r.PredictedTokens} predicted tokens, {stream.Length} in the stream) in {r.Seconds:F1} s");
        if (json)
            stdout.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["ppl"] = Math.Round(r.Perplexity, 6), ["tokens"] = stream.Length, ["predicted"] = r.PredictedTokens, ["windows"] = r.Windows, ["seconds"] = Math.Round(r.Seconds, 3),
            }));
        return 0;
    }

    public static int Quantize(string modelPath, string? tokenizerPath, string outDir, string? calib, string? calibText, int nsamples, int seqlen, int seed,
                               SpQR.Transformer.Quantization.QuantizeOptions options, string device, bool json, TextWriter stdout, TextWriter stderr)
    {
        if (device is not ("cpu" or "gpu" or "auto")) throw new ArgumentException($"--device must be cpu, gpu or auto, got {device}");
        if ((calib is null) == (calibText is null)) throw new ArgumentException("pass exactly one of --calibration FILE.safetensors:TENSOR or --calibration-text FILE");
        var cfg = SpQR.Transformer.Config.TransformerConfig.Load(modelPath);
        int[][] windows;
        if (calib is not null)
        {
            // a [n, seqlen] tensor is used as given
            var (ids, shape) = ReadTokens(calib, cfg.VocabSize, "--calibration");
            if (shape.Rank != 2) throw new ModelFormatException(calib, "tensor", "token ids [n, seqlen]", $"{shape}");
            int n = (int)shape[0], len = (int)shape[1];
            windows = Enumerable.Range(0, n).Select(i => ids.AsSpan(i * len, len).ToArray()).ToArray();
        }
        else
        {
            var tokenizer = TokenizerLoader.Load(modelPath, tokenizerPath, cfg.VocabSize);
            var stream = tokenizer.Encode(File.ReadAllText(calibText!));
            if (stream.Length <= seqlen) throw new ArgumentException($"{calibText} has {stream.Length} tokens; need more than --seqlen {seqlen}");
            var rng = new Random(seed);
            windows = Enumerable.Range(0, nsamples).Select(_ => { int s = rng.Next(stream.Length - seqlen); return stream.AsSpan(s, seqlen).ToArray(); }).ToArray();
        }
        var progress = new SyncProgress<SpQR.Transformer.Quantization.QuantProgress>(p =>
        {
            if (json) return;
            if (p.Resumed) stderr.WriteLine($"block {p.Block + 1}/{p.Blocks}: resumed from the partial run");
            else if (p.Done is { } d)
                stderr.WriteLine($"block {p.Block + 1}/{p.Blocks} {d.Name}: {d.Rows}x{d.Cols}, outliers {d.OutlierShare:P2}, {d.AverageBits:F2} bits, H-error {d.HError:G4} (RTN {d.RtnHError:G4}), {d.Seconds:F1} s");
        });
        // the device encoder: gpu insists on CUDA (GpuUnavailableException otherwise), auto takes it when present
        bool gpu = device == "gpu" || (device == "auto" && SpQR.Gpu.GpuBackend.CudaAvailable());
        if (device == "auto") stderr.WriteLine(gpu ? "encoder: CUDA (auto)" : "encoder: CPU (auto)");
        using var backend = gpu ? SpQR.Gpu.GpuBackend.Create(SpQR.Gpu.DeviceChoice.Gpu) : null;
        if (backend is not null)
        {
            if (!SpQR.Gpu.GpuSpqrEncoder.Supports(backend, options.Spqr))
                throw new ArgumentException($"--device {device}: the device encoder needs --groupsize ≤ {SpQR.Gpu.GpuKernels.EncodeMaxGroupSize}, --qq-groupsize ≤ {backend.Kernels.EncodeThreads(1)} and no --outlier-budget");
            options = options with { Encoder = (W, H, rows, cols, o, layer) => SpQR.Gpu.GpuSpqrEncoder.Quantize(backend, W, H, rows, cols, o, layer) };
        }
        var report = SpQR.Transformer.Quantization.SequentialQuantizer.Run(modelPath, windows, outDir, options, progress);
        if (!json)
        {
            // closing summary: one row per kind of linear, averaged over blocks
            var console = Spectre.Console.AnsiConsole.Create(new Spectre.Console.AnsiConsoleSettings { Out = new Spectre.Console.AnsiConsoleOutput(stdout), Interactive = Spectre.Console.InteractionSupport.No });
            var table = new Spectre.Console.Table().AddColumn("linear").AddColumn("count").AddColumn("avg bits").AddColumn("outliers").AddColumn("H-error / RTN");
            foreach (var g in report.Layers.GroupBy(l => string.Join('.', l.Name.Split('.').SkipWhile(p => !int.TryParse(p, out _)).Skip(1))))
                table.AddRow(g.Key, g.Count().ToString(), $"{g.Average(l => l.AverageBits):F3}", $"{g.Average(l => l.OutlierShare):P2}",
                    $"{g.Sum(l => l.HError) / Math.Max(1e-30, g.Sum(l => l.RtnHError)):F3}");
            console.Write(table);
        }
        stdout.WriteLine($"{options.Method.ToString().ToLowerInvariant()}: {report.Layers.Count} layers, {report.Parameters:N0} quantized weights, average {report.AverageBits:F3} bits, outliers {report.OutlierShare:P3}, {report.Seconds:F1} s -> {outDir}");
        if (json)
            stdout.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["average_bits"] = Math.Round(report.AverageBits, 4), ["outlier_share"] = Math.Round(report.OutlierShare, 6),
                ["seconds"] = Math.Round(report.Seconds, 2), ["output"] = outDir, ["method"] = options.Method.ToString().ToLowerInvariant(),
            }));
        return 0;
    }

    /// <summary>FILE.safetensors:TENSOR -> token ids (I32/I64, 1-D or 2-D, flattened) and their shape, each checked against the vocabulary.</summary>
    internal static (int[] Ids, SpQR.Tensors.Shape Shape) ReadTokens(string spec, int vocab, string option)
    {
        int colon = spec.LastIndexOf(':');
        if (colon <= 0) throw new ArgumentException($"{option} expects FILE.safetensors:TENSOR, got \"{spec}\"");
        string file = spec[..colon], name = spec[(colon + 1)..];
        using var f = SafetensorsFile.Open(file);
        var t = f.Get(name);
        if (t.Rank is not (1 or 2)) throw new ModelFormatException(file, $"tensor \"{name}\"", "token ids, 1-D or [n, seqlen]", $"{t.Shape}");
        var ids = t.ToInt32Array();
        for (int i = 0; i < ids.Length; i++)
            if ((uint)ids[i] >= (uint)vocab) throw new ModelFormatException(file, $"tensor \"{name}\" element {i}", $"a token id below {vocab}", $"{ids[i]}");
        return (ids, t.Shape);
    }
}
