// The GPU device behind SpQR.Native: one ILGPU context and accelerator, picked by --device cpu|gpu|auto.
// "gpu" without a CUDA device fails with GpuUnavailableException (never a silent CPU fallback); "cpu" uses ILGPU's
// CPU accelerator, which runs the same kernels (tests in CI use it); "auto" prefers CUDA and says what it picked.
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;

namespace SpQR.Gpu;

public enum DeviceChoice { Cpu, Gpu, Auto }

public sealed class GpuUnavailableException(string message) : Exception(message);

public sealed class GpuBackend : IDisposable
{
    public Context Context { get; }
    public Accelerator Accelerator { get; }
    public string Description => $"{Accelerator.AcceleratorType} {Accelerator.Name}";
    public GpuKernels Kernels { get; }

    private GpuBackend(Context context, Accelerator accelerator)
    {
        Context = context; Accelerator = accelerator;
        Kernels = new GpuKernels(accelerator);
    }

    /// <summary>True when ILGPU finds a CUDA device (the driver, libcuda, is loadable and reports a GPU).</summary>
    public static bool CudaAvailable()
    {
        using var context = Context.Create(b => b.Cuda());
        return context.GetCudaDevices().Count > 0;
    }

    public static GpuBackend Create(DeviceChoice choice)
    {
        var context = Context.Create(b => b.CPU().Cuda().Optimize(OptimizationLevel.O2));
        try
        {
            var cuda = context.GetCudaDevices();
            Accelerator acc = choice switch
            {
                DeviceChoice.Gpu when cuda.Count == 0 => throw new GpuUnavailableException(
                    "--device gpu: no CUDA device was found (ILGPU needs an NVIDIA GPU and its driver, libcuda); use --device cpu or auto"),
                DeviceChoice.Gpu or DeviceChoice.Auto when cuda.Count > 0 => cuda[0].CreateAccelerator(context),
                _ => context.GetCPUDevice(0).CreateAccelerator(context),
            };
            return new GpuBackend(context, acc);
        }
        catch { context.Dispose(); throw; }
    }

    public void Dispose()
    {
        Accelerator.Dispose();
        Context.Dispose();
    }
}
