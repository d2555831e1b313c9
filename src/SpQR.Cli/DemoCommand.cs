// `spqr demo` (also what `spqr` with no arguments runs): renders DemoRunner's end-to-end job — a progress bar while
// it runs (plain progress lines when the output is not a terminal), then one table.
using System.Text.Json;
using Spectre.Console;
using SpQR.Transformer;
using SpQR.Transformer.Demo;

namespace SpQR.Cli;

internal static class DemoCommand
{
    public static int Run(string outDir, int wbits, bool json, TextWriter stdout, TextWriter stderr)
    {
        var options = new DemoOptions { WBits = wbits };
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(stdout) });
        console.Profile.Width = Math.Max(console.Profile.Width, 120); // one table row per method, also when piped
        console.MarkupLine($"[bold]SpQR.Native demo[/]: a {options.Layers}-layer LLaMA-shaped model (hidden {options.Hidden}, MLP {options.Intermediate}, vocab {options.Vocab}) " +
                           $"with planted outlier structure, quantized to {wbits} bits with RTN, GPTQ and SpQR on {options.CalibrationSequences}x{options.SeqLen} generated calibration tokens.");
        DemoResult result;
        bool interactive = !json && ReferenceEquals(stdout, Console.Out) && !Console.IsOutputRedirected;
        if (interactive)
        {
            DemoResult? r = null;
            console.Progress().AutoClear(true).Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask("building the model", maxValue: 1.0);
                    r = DemoRunner.Run(outDir, options, new SyncProgress<(string Stage, double Fraction)>(p => { task.Description = p.Stage; task.Value = p.Fraction; }));
                });
            result = r!;
        }
        else
        {
            string last = "";
            result = DemoRunner.Run(outDir, options, new SyncProgress<(string Stage, double Fraction)>(p =>
            {
                string stage = p.Stage.Split(':')[0];
                if (stage != last && !json) stderr.WriteLine($"{stage}...");
                last = stage;
            }));
        }
        var table = new Table().AddColumn("method").AddColumn("stored as").AddColumn(new TableColumn("avg bits").RightAligned())
            .AddColumn(new TableColumn("H-error vs RTN").RightAligned()).AddColumn(new TableColumn("logits rel. error").RightAligned())
            .AddColumn(new TableColumn("size on disk").RightAligned()).AddColumn(new TableColumn("quantize").RightAligned());
        table.AddRow("dense", "F32", "32", "-", "-", CliApp.FormatBytes(result.DenseBytes), "-");
        foreach (var row in result.Rows)
            table.AddRow(row.Method, row.Stored, $"{row.AverageBits:F2}", $"{row.HErrorVsRtn:F3}", $"{row.OutputRelL2:P2}", CliApp.FormatBytes(row.BytesOnDisk), $"{row.Seconds:F1} s");
        console.Write(table);
        if (result.MatVecRows > 0)
            console.MarkupLine($"matvec {result.MatVecRows}x{result.MatVecCols}, random weights, 1% outliers, {SpQR.Tensors.Cpu.CpuThreads.Count} thread(s): " +
                               $"F16 GEMV {result.F16Us:F0} µs, SpQR w{wbits} {result.SpqrUs:F0} µs ({result.F16Us / result.SpqrUs:F2}x F16)");
        console.MarkupLine($"models in {Markup.Escape(result.Folder)} (dense/, rtn/, gptq/, spqr/); total {result.Seconds:F1} s. " +
                           $"Try: spqr inspect --model {Markup.Escape(Path.Combine(result.Folder, "spqr"))}");
        if (json)
            stdout.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["folder"] = result.Folder, ["dense_bytes"] = result.DenseBytes, ["seconds"] = Math.Round(result.Seconds, 2),
                ["f16_us"] = Math.Round(result.F16Us, 1), ["spqr_us"] = Math.Round(result.SpqrUs, 1),
                ["methods"] = result.Rows.ToDictionary(r => r.Method.ToLowerInvariant(), r => new Dictionary<string, object>
                {
                    ["average_bits"] = Math.Round(r.AverageBits, 4), ["h_error_vs_rtn"] = Math.Round(r.HErrorVsRtn, 5),
                    ["logits_rel_l2"] = Math.Round(r.OutputRelL2, 6), ["bytes"] = r.BytesOnDisk, ["seconds"] = Math.Round(r.Seconds, 2),
                }),
            }));
        return 0;
    }
}
