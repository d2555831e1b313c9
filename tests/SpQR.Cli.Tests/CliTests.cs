// The CLI end to end in process: output, --json, exit codes and one-line errors.
using System.Text.Json;
using SpQR.TestUtil;
using Xunit;

namespace SpQR.Cli.Tests;

public class CliTests
{
    internal static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter(); var e = new StringWriter();
        int code = CliApp.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    [SharedFact]
    public void Inspect_prints_the_architecture_and_a_json_line()
    {
        var (code, output, err) = Run("inspect", "--model", Fixtures.Path("fixtures", "hf", "falcon-40b-style"), "--json");
        Assert.True(code == 0, err);
        Assert.Contains("Falcon", output);
        var last = output.TrimEnd().Split('\n')[^1];
        using var j = JsonDocument.Parse(last);
        Assert.Equal("Falcon", j.RootElement.GetProperty("architecture").GetString());
        Assert.True(j.RootElement.GetProperty("parameters").GetInt64() > 0);
    }

    [SharedFact]
    public void Convert_turns_the_authors_export_into_our_format_with_the_same_perplexity()
    {
        string export = Fixtures.Path("fixtures", "spqr-reference-export", "llama-tiny-w3");
        string dir = Path.Combine(Path.GetTempPath(), $"spqr-cli-convert-{Guid.NewGuid():N}");
        try
        {
            var (code, output, err) = Run("convert", "--model", export, "--out", dir, "--json");
            Assert.True(code == 0, err);
            using (var j = JsonDocument.Parse(output.TrimEnd().Split('\n')[^1])) Assert.Equal(14, j.RootElement.GetProperty("linears").GetInt32());
            string tokens = Path.Combine(export, "reference.safetensors") + ":calibration_ids";
            double Ppl(string model)
            {
                var (c, o, e) = Run("ppl", "--model", model, "--tokens", tokens, "--seqlen", "128", "--json");
                Assert.True(c == 0, e);
                using var j = JsonDocument.Parse(o.TrimEnd().Split('\n')[^1]);
                return j.RootElement.GetProperty("ppl").GetDouble();
            }
            Assert.Equal(Ppl(export), Ppl(dir));
            // converting a folder without the authors' tensors is a one-line error
            var (bad, _, berr) = Run("convert", "--model", Fixtures.Path("fixtures", "hf", "llama-tiny"), "--out", dir + "-x");
            Assert.Equal(1, bad);
            Assert.Contains("dense_weights", berr);
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }

    [Fact]
    public void Bench_on_the_gpu_runs_there_or_fails_in_one_line_without_one()
    {
        var (code, output, err) = Run("bench", "matvec", "--rows", "256", "--cols", "512", "--device", "gpu", "--repeats", "5", "--json");
        if (SpQR.Gpu.GpuBackend.CudaAvailable())
        {
            Assert.True(code == 0, err);
            Assert.Contains("spqr_us", output);
            return;
        }
        Assert.Equal(1, code);
        Assert.StartsWith("error: --device gpu: no CUDA device", err);
        Assert.Single(err.TrimEnd().Split('\n'));
        // auto says what it picked and still measures
        (code, output, err) = Run("bench", "matvec", "--rows", "256", "--cols", "512", "--device", "auto", "--repeats", "5");
        Assert.True(code == 0, err);
        Assert.Contains("using the CPU kernels", err);
        Assert.Contains("SpQR w3", output);
        if (!Fixtures.Available) return;
        // generate on the GPU without one: the same one-line error
        (code, _, err) = Run("generate", "--model", Fixtures.Path("fixtures", "hf", "llama-tiny"), "--prompt", "x", "--device", "gpu");
        Assert.Equal(1, code);
        Assert.StartsWith("error: --device gpu: no CUDA device", err);
        // --lane-major (the device's copy of 3-bit codes) is an option of generate and ppl: the same error, not a parse one
        (code, _, err) = Run("generate", "--model", Fixtures.Path("fixtures", "hf", "llama-tiny"), "--prompt", "x", "--device", "gpu", "--lane-major", "false");
        Assert.Equal(1, code);
        Assert.StartsWith("error: --device gpu: no CUDA device", err);
        // as is --format-codes (the format's codes beside the lane-major copy)
        (code, _, err) = Run("ppl", "--model", Fixtures.Path("fixtures", "hf", "llama-tiny"), "--text", "x", "--device", "gpu", "--format-codes", "false");
        Assert.Equal(1, code);
        Assert.StartsWith("error: --device gpu: no CUDA device", err);
        // quantize with the device encoder without one: the same
        string fx = Fixtures.Path("fixtures", "stories260K");
        (code, _, err) = Run("quantize", "--model", Path.Combine(fx, "hf"), "--calibration", Path.Combine(fx, "stories260K-calibration.safetensors") + ":calibration",
            "--out", Path.Combine(Path.GetTempPath(), "spqr-never-written"), "--device", "gpu");
        Assert.Equal(1, code);
        Assert.StartsWith("error: --device gpu: no CUDA device", err);
        Assert.False(Directory.Exists(Path.Combine(Path.GetTempPath(), "spqr-never-written")));
    }

    [Fact]
    public void Bad_input_is_one_line_on_stderr_and_a_nonzero_exit()
    {
        string dir = Directory.CreateTempSubdirectory("spqr-cli-").FullName;
        try
        {
            string bad = Path.Combine(dir, "model.safetensors");
            File.WriteAllBytes(bad, [1, 2, 3]);
            var (code, _, err) = Run("inspect", "--model", bad);
            Assert.Equal(1, code);
            Assert.StartsWith("error: ", err);
            Assert.Single(err.TrimEnd().Split('\n'));
            Assert.Contains("model.safetensors", err);
            var (code2, _, err2) = Run("inspect", "--model", Path.Combine(dir, "nothing-here"));
            Assert.Equal(1, code2);
            Assert.Contains("nothing-here", err2);
        }
        finally { Directory.Delete(dir, true); }
    }
}

public class CliPipelineTests
{
    private static (int Code, string Out, string Err) Run(params string[] args) => CliTests.Run(args);

    [SharedFact]
    public void Quantize_then_ppl_and_generate_end_with_json()
    {
        string dir = Directory.CreateTempSubdirectory("spqr-cli-q-").FullName;
        try
        {
            string fx = Fixtures.Path("fixtures", "stories260K");
            var (code, output, err) = Run("quantize", "--model", Path.Combine(fx, "hf"), "--calibration", Path.Combine(fx, "stories260K-calibration.safetensors") + ":calibration",
                "--out", Path.Combine(dir, "q"), "--wbits", "4", "--qq-groupsize", "4", "--json");
            Assert.True(code == 0, err);
            using (var j = System.Text.Json.JsonDocument.Parse(output.TrimEnd().Split('\n')[^1]))
                Assert.InRange(j.RootElement.GetProperty("average_bits").GetDouble(), 4.5, 6.5);
            (code, output, err) = Run("ppl", "--model", Path.Combine(dir, "q"), "--tokens", Path.Combine(fx, "stories260K-calibration.safetensors") + ":eval_tinystories",
                "--seqlen", "256", "--json");
            Assert.True(code == 0, err);
            using (var j = System.Text.Json.JsonDocument.Parse(output.TrimEnd().Split('\n')[^1]))
                Assert.InRange(j.RootElement.GetProperty("ppl").GetDouble(), 7.237, 7.8);
            (code, output, err) = Run("generate", "--model", Fixtures.Path("data", "stories260K", "stories260K.bin"), "--prompt", "Once upon a time",
                "--max-tokens", "20", "--temperature", "0", "--json");
            Assert.True(code == 0, err);
            Assert.StartsWith("Once upon a time, there was a little girl", output);
            Assert.Contains("tokens/s", output);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Missing_calibration_is_a_one_line_error()
    {
        var (code, _, err) = Run("quantize", "--model", "/nonexistent-model", "--out", "/tmp/x");
        Assert.NotEqual(0, code);
        Assert.Single(err.TrimEnd().Split('\n'));
    }
}

public class BenchCommandTests
{
    [Fact]
    public void Bench_matvec_ends_with_json_and_validates_arguments()
    {
        var o = new StringWriter(); var e = new StringWriter();
        int code = CliApp.Run(["bench", "matvec", "--rows", "64", "--cols", "100", "--wbits", "4", "--repeats", "3", "--json"], o, e);
        Assert.True(code == 0, e.ToString());
        using var j = System.Text.Json.JsonDocument.Parse(o.ToString().TrimEnd().Split('\n')[^1]);
        Assert.True(j.RootElement.GetProperty("spqr_us").GetDouble() > 0);
        Assert.True(j.RootElement.GetProperty("speedup_vs_f16").GetDouble() > 0);
        e = new StringWriter();
        Assert.Equal(1, CliApp.Run(["bench", "matvec", "--wbits", "9"], new StringWriter(), e));
        Assert.Contains("--wbits", e.ToString());
    }
}
