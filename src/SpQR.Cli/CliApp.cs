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

        var prompt = new Option<string>("--prompt") { Description = "prompt text", Required = true };
        var maxTokens = new Option<int>("--max-tokens") { DefaultValueFactory = _ => 128 };
        var temperature = new Option<float>("--temperature") { Description = "0 = greedy", DefaultValueFactory = _ => 0.8f };
        var topK = new Option<int>("--top-k") { DefaultValueFactory = _ => 40 };
        var topP = new Option<float>("--top-p") { DefaultValueFactory = _ => 0.95f };
        var minP = new Option<float>("--min-p") { DefaultValueFactory = _ => 0f };
        var repeat = new Option<float>("--repetition-penalty") { DefaultValueFactory = _ => 1f };
        var seed = new Option<int>("--seed") { DefaultValueFactory = _ => 0 };
        var stop = new Option<string[]>("--stop") { Description = "stop string (repeatable)", AllowMultipleArgumentsPerToken = false };
        var generate = new Command("generate", "stream text from a prompt") { model, tokenizer, prompt, maxTokens, temperature, topK, topP, minP, repeat, seed, stop, context, dtype, threads, json };
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
            }, Options(r.GetValue(context), r.GetValue(dtype)!, r.GetValue(threads)), r.GetValue(json), stdout)));

        var text = new Option<string?>("--text") { Description = "text file to evaluate (*.raw files use the WikiText \"\\n\\n\".join convention)" };
        var tokens = new Option<string?>("--tokens") { Description = "FILE.safetensors:TENSOR with I32/I64 token ids, 1-D or [n, seqlen]" };
        var seqlen = new Option<int>("--seqlen") { Description = "window length (capped at the context)", DefaultValueFactory = _ => 2048 };
        var ppl = new Command("ppl", "perplexity over non-overlapping windows (GPTQ/SpQR protocol)") { model, tokenizer, text, tokens, seqlen, context, dtype, threads, json };
        ppl.SetAction(r => Guard(r.GetValue(verbose), stderr, () => Commands.Perplexity(r.GetValue(model)!, r.GetValue(tokenizer), r.GetValue(text), r.GetValue(tokens),
            r.GetValue(seqlen), Options(Math.Max(r.GetValue(context), r.GetValue(seqlen)), r.GetValue(dtype)!, r.GetValue(threads)), r.GetValue(json), stdout, stderr)));

        var root = new RootCommand("SpQR.Native: SpQR-compressed LLaMA and Falcon models in pure .NET") { verbose, inspect, generate, ppl };
        var parse = root.Parse(args);
        return parse.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr });
    }

    private static SpQR.Transformer.Loading.ModelOptions Options(int context, string dtype, int threads)
    {
        if (dtype is not ("native" or "f32")) throw new ArgumentException($"--dtype must be native or f32, got {dtype}");
        SpQR.Tensors.Cpu.CpuThreads.Count = threads;
        return new SpQR.Transformer.Loading.ModelOptions { MaxContext = context, WidenToF32 = dtype == "f32" };
    }

    private static int Guard(bool verbose, TextWriter stderr, Func<int> action)
    {
        try { return action(); }
        catch (Exception e) when (e is ModelFormatException or FileNotFoundException or DirectoryNotFoundException or ArgumentException or IOException or UnauthorizedAccessException)
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
