// Opens a model from a path — a Hugging Face folder (config.json + safetensors) or a llama2.c .bin — and builds
// the architecture's model over one linear-layer factory. The only place that picks a class by architecture.
using SpQR.Tensors.IO;
using SpQR.Transformer.Config;
using SpQR.Transformer.Layers;
using SpQR.Transformer.Models;
using SpQR.Transformer.Models.Falcon;
using SpQR.Transformer.Models.Llama;

namespace SpQR.Transformer.Loading;

public sealed record ModelOptions
{
    /// <summary>KV-cache length (capped at the model's max_position_embeddings).</summary>
    public int MaxContext { get; init; } = 2048;
    /// <summary>Tokens per forward call (prefill chunk).</summary>
    public int MaxBatch { get; init; } = 256;
    /// <summary>Widen F16/BF16 weights to F32 at load (`--dtype f32`); otherwise weights are used in place.</summary>
    public bool WidenToF32 { get; init; }
    /// <summary>On a GPU (`--device gpu`): upload a lane-major copy of 3-bit SpQR layers' codes for the tensor-core matvec
    /// (faster decode, about +85% device memory for those layers; `--lane-major false` keeps only the format's bytes).
    /// Ignored on the CPU.</summary>
    public bool LaneMajorCodes { get; init; } = true;
    /// <summary>On a GPU with <see cref="LaneMajorCodes"/>: also keep the format's codes on the device (default; batched
    /// prefill a few percent faster); `--format-codes false` keeps the lane-major copy only (about 45% less device memory
    /// for those layers). Ignored on the CPU.</summary>
    public bool FormatCodesOnDevice { get; init; } = true;
    public ILinearFactory Linears { get; init; } = DenseLinearFactory.Instance;
}

public static class ModelLoader
{
    public static ICausalLM Load(string path, ModelOptions? options = null)
    {
        options ??= new ModelOptions();
        if (Directory.Exists(path))
        {
            var cfg = TransformerConfig.Load(path);
            var checkpoint = SafetensorsCheckpoint.Open(path);
            var source = new SafetensorsWeightSource(checkpoint, options.WidenToF32);
            try
            {
                // a compressed checkpoint (docs/formats/spqr.md, or the SpQR authors' export) runs its SpQR layers through the same seam
                if (options.Linears is DenseLinearFactory && SpqrLinearFactory.IsCompressed(checkpoint))
                    options = options with { Linears = new SpqrLinearFactory(checkpoint) };
                return Build(cfg, source, options);
            }
            catch { source.Dispose(); throw; }
        }
        if (File.Exists(path) && !path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase) && !path.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase))
        {
            var ck = Llama2cCheckpoint.Open(path);
            var source = new Llama2cWeightSource(ck);
            try { return Build(TransformerConfig.FromLlama2c(ck.Config), source, options); }
            catch { source.Dispose(); throw; }
        }
        if (File.Exists(path))
            throw new NotSupportedException($"{path}: running a bare {Path.GetExtension(path)} file is not supported; pass the Hugging Face folder (config.json + safetensors) or a llama2.c .bin");
        throw new FileNotFoundException($"no model at {path}: expected a Hugging Face folder or a llama2.c .bin file", path);
    }

    public static ICausalLM Build(TransformerConfig cfg, IWeightSource source, ModelOptions options) => cfg.Architecture switch
    {
        Architecture.Llama => new LlamaModel(cfg, source, options.Linears, options.MaxContext, options.MaxBatch),
        Architecture.Falcon => new FalconModel(cfg, source, options.Linears, options.MaxContext, options.MaxBatch),
        _ => throw new NotSupportedException($"architecture {cfg.Architecture}"),
    };
}
