using System.CommandLine;
using System.Text.Json;
using Spectre.Console;
using SpQR.Tensors.IO;
using SpQR.Transformer.Inspect;

namespace SpQR.Cli;

public static class CliApp
{
    /// <summary>Exit codes: 0 ok, 1 bad input (model file, arguments), 2 unsupported model feature, 3 internal error.</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var verbose = new Option<bool>("--verbose") { Description = "print stack traces on errors", Recursive = true };
        var model = new Option<string>("--model") { Description = "Hugging Face folder, .safetensors, .gguf or llama2.c .bin", Required = true };
        var json = new Option<bool>("--json") { Description = "end the output with one JSON object" };

        var inspect = new Command("inspect", "validate a model and show its architecture, tensors, parameter count and bytes") { model, json };
        inspect.SetAction(r => Guard(r.GetValue(verbose), stderr, () => InspectCommand(r.GetValue(model)!, r.GetValue(json), stdout)));

        var tokenizer = new Option<string?>("--tokenizer") { Description = "tokenizer file (default: tokenizer.model/.json in the model folder, tokenizer.bin beside a .bin)" };
        var context = new Option<int>("--context") { Description = "KV-cache length (capped at the model's)", DefaultValueFactory = _ => 2048 };
        var dtype = new Option<string>("--dtype") { Description = "native (use weights in place) or f32 (widen at load)", DefaultValueFactory = _ => "native" };
        var threads = new Option<int>("--threads") { Description = "CPU threads (default: all cores)", DefaultValueFactory = _ => Environment.ProcessorCount };

        var device = new Option<string>("--device") { Description = "cpu, gpu (CUDA through ILGPU, LLaMA folders; fails without one) or auto", DefaultValueFactory = _ => "cpu" };
        var laneMajor = new Option<bool>("--lane-major") { Description = "on a GPU: keep a lane-major copy of 3- and 4-bit SpQR codes for the tensor-core matvec (faster decode, about +85% device memory for those layers)", DefaultValueFactory = _ => true };
        var prompt = new Option<string>("--prompt") { Description = "prompt text", Required = true };
        var maxTokens = new Option<int>("--max-tokens") { DefaultValueFactory = _ => 128 };
        var temperature = new Option<float>("--temperature") { Description = "0 = greedy", DefaultValueFactory = _ => 0.8f };
        var topK = new Option<int>("--top-k") { DefaultValueFactory = _ => 40 };
        var topP = new Option<float>("--top-p") { DefaultValueFactory = _ => 0.95f };
        var minP = new Option<float>("--min-p") { DefaultValueFactory = _ => 0f };
        var repeat = new Option<float>("--repetition-penalty") { DefaultValueFactory = _ => 1f };
        var seed = new Option<int>("--seed") { DefaultValueFactory = _ => 0 };
        var stop = new Option<string[]>("--stop") { Description = "stop string (repeatable)", AllowMultipleArgumentsPerToken = false };
        var formatCodes = new Option<bool>("--format-codes") { Description = "on a GPU with --lane-major: also keep the format's SpQR codes on the device (batched prefill a few percent faster); false keeps the lane-major copy only (about 45% less device memory for those layers)", DefaultValueFactory = _ => true };
        var generate = new Command("generate", "stream text from a prompt") { model, tokenizer, prompt, maxTokens, temperature, topK, topP, minP, repeat, seed, stop, context, dtype, threads, device, laneMajor, formatCodes, json };
        generate.SetAction(r => Guard(r.GetValue(verbose), stderr, () => Commands.Generate(r.GetValue(model)!, r.GetValue(tokenizer), r.GetValue(prompt)!,
            new SpQR.Transformer.Sampling.GenerationOptions
            {
                MaxTokens = r.GetValue(maxTokens),
                StopStrings = r.GetValue(stop) ?? [],
                Sampling = new SpQR.Transformer.Sampling.SamplingOptions
                {
                    Temperature = r.GetValue(temperature), TopK = r.GetValue(topK), TopP = r.GetValue(topP), MinP = r.GetValue(minP),
                    RepetitionPenalty = r.GetValue(repeat), Seed = r.GetValue(seed),
                },
            }, Options(r.GetValue(context), r.GetValue(dtype)!, r.GetValue(threads), r.GetValue(laneMajor), r.GetValue(formatCodes)), r.GetValue(device)!, r.GetValue(json), stdout, stderr)));

        var text = new Option<string?>("--text") { Description = "text file to evaluate (*.raw files use the WikiText \"\\n\\n\".join convention)" };
        var tokens = new Option<string?>("--tokens") { Description = "FILE.safetensors:TENSOR with I32/I64 token ids, 1-D or [n, seqlen]" };
        var seqlen = new Option<int>("--seqlen") { Description = "window length (capped at the context)", DefaultValueFactory = _ => 2048 };
        var ppl = new Command("ppl", "perplexity over non-overlapping windows (GPTQ/SpQR protocol)") { model, tokenizer, text, tokens, seqlen, context, dtype, threads, device, laneMajor, formatCodes, json };
        ppl.SetAction(r => Guard(r.GetValue(verbose), stderr, () => Commands.Perplexity(r.GetValue(model)!, r.GetValue(tokenizer), r.GetValue(text), r.GetValue(tokens),
            r.GetValue(seqlen), Options(Math.Max(r.GetValue(context), r.GetValue(seqlen)), r.GetValue(dtype)!, r.GetValue(threads), r.GetValue(laneMajor), r.GetValue(formatCodes)), r.GetValue(device)!, r.GetValue(json), stdout, stderr)));

        var outPath = new Option<string>("--out") { Description = "output folder", Required = true };
        var calib = new Option<string?>("--calibration") { Description = "FILE.safetensors:TENSOR with token ids [n, seqlen] (used as given)" };
        var calibText = new Option<string?>("--calibration-text") { Description = "text file; random windows of --seqlen tokens" };
        var nsamples = new Option<int>("--nsamples") { DefaultValueFactory = _ => 128 };
        var qseqlen = new Option<int>("--seqlen") { DefaultValueFactory = _ => 2048 };
        var method = new Option<string>("--method") { Description = "spqr, gptq or rtn", DefaultValueFactory = _ => "spqr" };
        var wbits = new Option<int>("--wbits") { DefaultValueFactory = _ => 3 };
        var groupsize = new Option<int>("--groupsize") { DefaultValueFactory = _ => 16 };
        var qqScale = new Option<int?>("--qq-scale-bits") { Description = "default 3 for spqr, FP16 statistics for gptq/rtn" };
        var qqZero = new Option<int?>("--qq-zero-bits") { Description = "default 3 for spqr, FP16 statistics for gptq/rtn" };
        var qqGroup = new Option<int>("--qq-groupsize") { DefaultValueFactory = _ => 16 };
        var tau = new Option<double?>("--outlier-threshold") { Description = "τ (default 0.2 for spqr, none for gptq/rtn)" };
        var budget = new Option<double?>("--outlier-budget") { Description = "target outlier share instead of τ (bisection)" };
        var order = new Option<string>("--permutation-order") { DefaultValueFactory = _ => "act_order" };
        var percdamp = new Option<double>("--percdamp") { DefaultValueFactory = _ => 1.0 };
        var blocksize = new Option<int>("--blocksize") { DefaultValueFactory = _ => 128 };
        var trueSeq = new Option<bool>("--true-sequential") { Description = "quantize q/k/v, o, gate/up, down in turn (default on)", DefaultValueFactory = _ => true };
        var simplified = new Option<bool>("--simplified-outliers");
        var encodeDevice = new Option<string>("--device") { Description = "where each linear is encoded: cpu, gpu (CUDA through ILGPU: column loop and block updates on the device; fails without one) or auto", DefaultValueFactory = _ => "cpu" };
        var format = new Option<string?>("--format") { Description = "spqr (compressed, docs/formats/spqr.md; the default for spqr and gptq) or dequantized (F32 Ŵ + codes beside; the default and only choice for rtn)" };
        var quantize = new Command("quantize", "quantize a model layer by layer (SpQR, GPTQ or RTN)")
        { model, tokenizer, outPath, calib, calibText, nsamples, qseqlen, seed, method, wbits, groupsize, qqScale, qqZero, qqGroup, tau, budget, order, percdamp, blocksize, trueSeq, simplified, format, threads, json, encodeDevice };
        quantize.SetAction(r => Guard(r.GetValue(verbose), stderr, () =>
        {
            SpQR.Tensors.Cpu.CpuThreads.Count = r.GetValue(threads);
            string m = r.GetValue(method)!;
            bool isSpqr = m == "spqr";
            if (m is not ("spqr" or "gptq" or "rtn")) throw new ArgumentException($"--method must be spqr, gptq or rtn, got {m}");
            var opts = new SpQR.Quant.Encode.SpqrOptions
            {
                WBits = r.GetValue(wbits), GroupSize = r.GetValue(groupsize),
                QqScaleBits = r.GetValue(qqScale) ?? (isSpqr ? 3 : null), QqZeroBits = r.GetValue(qqZero) ?? (isSpqr ? 3 : null),
                QqGroupSize = r.GetValue(qqGroup), OutlierThreshold = r.GetValue(tau) ?? (isSpqr ? 0.2 : null), OutlierBudget = r.GetValue(budget),
                PermutationOrder = r.GetValue(order) switch
                {
                    "act_order" => SpQR.Quant.Encode.PermutationOrder.ActOrder, "identity" => SpQR.Quant.Encode.PermutationOrder.Identity,
                    var other => throw new ArgumentException($"--permutation-order must be act_order or identity, got {other}"),
                },
                PercDamp = r.GetValue(percdamp), BlockSize = r.GetValue(blocksize), SimplifiedOutliers = r.GetValue(simplified),
            };
            return Commands.Quantize(r.GetValue(model)!, r.GetValue(tokenizer), r.GetValue(outPath)!, r.GetValue(calib), r.GetValue(calibText),
                r.GetValue(nsamples), r.GetValue(qseqlen), r.GetValue(seed),
                new SpQR.Transformer.Quantization.QuantizeOptions
                {
                    Method = m switch { "gptq" => SpQR.Transformer.Quantization.QuantMethod.Gptq, "rtn" => SpQR.Transformer.Quantization.QuantMethod.Rtn, _ => SpQR.Transformer.Quantization.QuantMethod.Spqr },
                    Spqr = opts, TrueSequential = r.GetValue(trueSeq),
                    Compressed = (r.GetValue(format) ?? (m == "rtn" ? "dequantized" : "spqr")) switch { "spqr" => true, "dequantized" => false, var f => throw new ArgumentException($"--format must be dequantized or spqr, got {f}") },
                }, r.GetValue(encodeDevice)!, r.GetValue(json), stdout, stderr);
        }));

        var bRows = new Option<int>("--rows") { DefaultValueFactory = _ => 4096 };
        var bCols = new Option<int>("--cols") { DefaultValueFactory = _ => 4096 };
        var bBits = new Option<int>("--wbits") { DefaultValueFactory = _ => 3 };
        var bOut = new Option<double>("--outliers") { Description = "outlier share", DefaultValueFactory = _ => 0.01 };
        var bReps = new Option<int>("--repeats") { DefaultValueFactory = _ => 30 };
        var bDevice = new Option<string>("--device") { Description = "cpu, gpu (CUDA through ILGPU; fails without one) or auto (CUDA when present)", DefaultValueFactory = _ => "cpu" };
        var matvec = new Command("matvec", "F32 GEMV, F16 GEMV and SpQR matvec on random weights, measured in this process") { bRows, bCols, bBits, bOut, bReps, bDevice, threads, json };
        matvec.SetAction(r => Guard(r.GetValue(verbose), stderr, () =>
        {
            SpQR.Tensors.Cpu.CpuThreads.Count = r.GetValue(threads);
            return BenchCommand.MatVec(r.GetValue(bRows), r.GetValue(bCols), r.GetValue(bBits), r.GetValue(bOut), r.GetValue(bReps), r.GetValue(bDevice)!, r.GetValue(json), stdout, stderr);
        }));
        var bench = new Command("bench", "quick in-process benchmarks of this machine") { matvec };

        var convert = new Command("convert", "convert a checkpoint exported by the SpQR authors' tools (dense_weights, col_vals, in_perm) to this format") { model, outPath, json };
        convert.SetAction(r => Guard(r.GetValue(verbose), stderr, () =>
        {
            var rep = SpQR.Transformer.Quantization.AuthorsExportConverter.Convert(r.GetValue(model)!, r.GetValue(outPath)!);
            stdout.WriteLine($"converted {rep.Linears} SpQR linears ({rep.Weights:N0} weights, {rep.OutlierCount:N0} outliers) to {rep.OutDir} ({FormatBytes(rep.Bytes)})");
            if (r.GetValue(json))
                stdout.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object> { ["out"] = rep.OutDir, ["linears"] = rep.Linears, ["weights"] = rep.Weights, ["outliers"] = rep.OutlierCount, ["bytes"] = rep.Bytes }));
            return 0;
        }));

        var demoOut = new Option<string?>("--out") { Description = "where the demo's models go (default: a folder under the temp directory)" };
        var demoBits = new Option<int>("--wbits") { DefaultValueFactory = _ => 3 };
        var demo = new Command("demo", "build a small LLaMA-shaped model, quantize it with RTN, GPTQ and SpQR, reload the compressed form and compare (the default command)") { demoOut, demoBits, threads, json };
        demo.SetAction(r => Guard(r.GetValue(verbose), stderr, () =>
        {
            SpQR.Tensors.Cpu.CpuThreads.Count = r.GetValue(threads);
            return DemoCommand.Run(r.GetValue(demoOut) ?? Path.Combine(Path.GetTempPath(), "spqr-demo"), r.GetValue(demoBits), r.GetValue(json), stdout, stderr);
        }));

        var root = new RootCommand("SpQR.Native: SpQR-compressed LLaMA and Falcon models in pure .NET") { verbose, inspect, generate, ppl, quantize, convert, bench, demo };
        // no command at all: the demo
        if (args.Length == 0) args = ["demo"];
        var parse = root.Parse(args);
        return parse.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr });
    }

    private static SpQR.Transformer.Loading.ModelOptions Options(int context, string dtype, int threads, bool laneMajor = true, bool formatCodes = true)
    {
        if (dtype is not ("native" or "f32")) throw new ArgumentException($"--dtype must be native or f32, got {dtype}");
        SpQR.Tensors.Cpu.CpuThreads.Count = threads;
        return new SpQR.Transformer.Loading.ModelOptions { MaxContext = context, WidenToF32 = dtype == "f32", LaneMajorCodes = laneMajor, FormatCodesOnDevice = formatCodes };
    }

    private static int Guard(bool verbose, TextWriter stderr, Func<int> action)
    {
        try { return action(); }
        catch (Exception e) when (e is ModelFormatException or SpQR.Quant.Encode.NotPositiveDefiniteException or InvalidOperationException or FileNotFoundException or DirectoryNotFoundException or ArgumentException or IOException or UnauthorizedAccessException or SpQR.Gpu.GpuUnavailableException)
        {
            stderr.WriteLine($"error: {e.Message}");
            if (verbose) stderr.WriteLine(e);
            return 1;
        }
        catch (NotSupportedException e)
        {
            stderr.WriteLine($"not supported: {e.Message}");
            if (verbose) stderr.WriteLine(e);
            return 2;
        }
        catch (Exception e)
        {
            stderr.WriteLine($"internal error: {e.GetType().Name}: {e.Message} (run with --verbose for details)");
            if (verbose) stderr.WriteLine(e);
            return 3;
        }
    }

    private static int InspectCommand(string path, bool asJson, TextWriter stdout)
    {
        var report = ModelInspector.Inspect(path);
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(stdout), Ansi = AnsiSupport.Detect, Interactive = InteractionSupport.No });
        console.MarkupLine($"[bold]{Markup.Escape(report.Path)}[/]  ({Markup.Escape(report.Format)})");
        if (report.Config is { } c)
        {
            var cfg = new Table().AddColumn("setting").AddColumn("value");
            cfg.AddRow("architecture", c.Architecture.ToString());
            cfg.AddRow("hidden / intermediate", $"{c.HiddenSize} / {c.IntermediateSize}");
            cfg.AddRow("layers", c.NumLayers.ToString());
            cfg.AddRow("heads / kv heads / head dim", $"{c.NumHeads} / {c.NumKvHeads} / {c.HeadDim}");
            cfg.AddRow("vocab / context", $"{c.VocabSize} / {c.MaxPositions}");
            cfg.AddRow("norm / activation", $"{c.Norm} (eps {c.NormEps:G3}) / {c.Activation}");
            cfg.AddRow("rotary", $"{c.RopeLayout}, theta {c.RopeTheta:G}" + (c.RopeScaling is { } s ? $", {s.RopeType} x{s.Factor}" : ""));
            cfg.AddRow("tied embeddings", c.TieWordEmbeddings.ToString());
            if (c.Architecture == SpQR.Transformer.Config.Architecture.Falcon)
                cfg.AddRow("falcon layout", c.NewDecoderArchitecture ? "new decoder architecture (grouped qkv)" : "multi-query, parallel attention");
            console.Write(cfg);
        }
        foreach (var (k, v) in report.Notes) console.MarkupLine($"{Markup.Escape(k)}: {Markup.Escape(v)}");
        var byType = new Table().AddColumn("dtype").AddColumn(new TableColumn("tensors").RightAligned()).AddColumn(new TableColumn("bytes").RightAligned());
        foreach (var (dt, n, b) in report.ByDType) byType.AddRow(dt, n.ToString(), FormatBytes(b));
        console.Write(byType);
        console.MarkupLine($"{report.Tensors.Count} tensors, {report.Parameters:N0} parameters, {FormatBytes(report.Bytes)}");
        if (asJson)
        {
            var o = new Dictionary<string, object?>
            {
                ["path"] = report.Path, ["format"] = report.Format, ["architecture"] = report.Config?.Architecture.ToString(),
                ["tensors"] = report.Tensors.Count, ["parameters"] = report.Parameters, ["bytes"] = report.Bytes,
                ["dtypes"] = report.ByDType.ToDictionary(d => d.DType, d => d.Bytes),
            };
            stdout.WriteLine(JsonSerializer.Serialize(o));
        }
        return 0;
    }

    internal static string FormatBytes(long b) => b switch
    {
        >= 1L << 30 => $"{b / (double)(1L << 30):F2} GiB",
        >= 1L << 20 => $"{b / (double)(1L << 20):F2} MiB",
        >= 1L << 10 => $"{b / 1024.0:F1} KiB",
        _ => $"{b} B",
    };
}
