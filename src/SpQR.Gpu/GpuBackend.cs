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
        if (accelerator is CudaAccelerator) UseOwnStream(accelerator);
        Kernels = new GpuKernels(accelerator);
    }

    /// <summary>
    /// ILGPU 1.5 launches every kernel and copy on Accelerator.DefaultStream, for CUDA the legacy NULL stream, which CUDA
    /// cannot capture into a graph (GpuGraph). The backend's accelerator therefore gets a stream of its own as its default
    /// stream (DefaultStream has a protected setter; set through reflection once, here). Ordering is unchanged: all work
    /// still goes to one stream, and Accelerator.Synchronize still waits for the whole device.
    /// </summary>
    private static void UseOwnStream(Accelerator acc)
    {
        var setter = typeof(Accelerator).GetProperty(nameof(Accelerator.DefaultStream))?.GetSetMethod(nonPublic: true);
        if (setter is null) return; // a later ILGPU: graphs fall back to replaying the work (GpuGraph.IsNative false)
        setter.Invoke(acc, [acc.CreateStream()]);
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
