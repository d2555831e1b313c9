// The GPU device behind SpQR.Native: one ILGPU context and accelerator, picked by --device cpu|gpu|auto.
// "gpu" without a CUDA device fails with GpuUnavailableException (never a silent CPU fallback); "cpu" uses ILGPU's
// CPU accelerator, which runs the same kernels (tests in CI use it); "auto" prefers CUDA and says what it picked.
// On CUDA the backend owns the accelerator's stream (capturable into graphs, GpuGraph) and side streams for Fork
// (independent work as concurrent branches).
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
    /// stream (DefaultStream has a protected setter, used through reflection here and by Fork). Accelerator.Synchronize
    /// still waits for the whole device.
    /// </summary>
    private void UseOwnStream(Accelerator acc)
    {
        var setter = typeof(Accelerator).GetProperty(nameof(Accelerator.DefaultStream))?.GetSetMethod(nonPublic: true);
        if (setter is null) return; // a later ILGPU: graphs fall back to replaying the work (GpuGraph.IsNative false)
        _setStream = s => setter.Invoke(acc, [s]);
        _main = acc.CreateStream();
        _setStream(_main);
    }

    private Action<AcceleratorStream>? _setStream;
    private AcceleratorStream? _main;
    private readonly List<(AcceleratorStream Stream, nint Done)> _side = new();
    private nint _forked;

    /// <summary>
    /// Runs independent pieces of device work concurrently: branch 0 on the backend's stream, branch i on side stream i,
    /// each side stream first waiting for the work queued so far, the backend's stream then waiting for all of them (CUDA
    /// events). Inside a GpuGraph capture this records parallel branches. The branches must not share buffers they write
    /// (e.g. each SpQR matvec its own scratch). On accelerators without streams (ILGPU's CPU accelerator) the branches run
    /// one after another.
    /// </summary>
    public void Fork(params Action[] branches)
    {
        if (_setStream is null || _main is not CudaStream main || !CudaDriver.Available || branches.Length < 2)
        {
            foreach (var b in branches) b();
            return;
        }
        Accelerator.Bind();
        if (_forked == 0) _forked = CudaDriver.NewEvent();
        while (_side.Count < branches.Length - 1) _side.Add((Accelerator.CreateStream(), CudaDriver.NewEvent()));
        CudaDriver.EventRecord(_forked, main.StreamPtr);
        try
        {
            for (int i = 1; i < branches.Length; i++)
            {
                var (side, done) = _side[i - 1];
                nint sp = ((CudaStream)side).StreamPtr;
                CudaDriver.StreamWaitEvent(sp, _forked);
                _setStream(side);
                branches[i]();
                CudaDriver.EventRecord(done, sp);
            }
        }
        finally { _setStream(main); }
        branches[0]();
        for (int i = 1; i < branches.Length; i++) CudaDriver.StreamWaitEvent(main.StreamPtr, _side[i - 1].Done);
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

    /// <summary>ILGPU's CPU accelerator emulating a given device kind (tests: CPUDeviceKind.Nvidia has 32-lane warps, which
    /// the tensor-core kernels' fragments need; the default CPU device has 4).</summary>
    public static GpuBackend CreateCpu(CPUDeviceKind kind)
    {
        var context = Context.Create(b => b.CPU(kind).Optimize(OptimizationLevel.O2));
        try { return new GpuBackend(context, context.GetCPUDevice(0).CreateAccelerator(context)); }
        catch { context.Dispose(); throw; }
    }

    public void Dispose()
    {
        foreach (var (_, done) in _side) CudaDriver.EventDestroy(done);
        if (_forked != 0) CudaDriver.EventDestroy(_forked);
        Accelerator.Dispose();
        Context.Dispose();
    }
}
