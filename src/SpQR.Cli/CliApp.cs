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

        var root = new RootCommand("SpQR.Native: SpQR-compressed LLaMA and Falcon models in pure .NET") { verbose, inspect };
        var parse = root.Parse(args);
        return parse.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr });
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
