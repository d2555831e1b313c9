// Programmatic dependent launch (PDL, sm_90+) between the kernels of a CUDA graph. Normally a kernel starts only after
// the one before it has finished and its writes are flushed: on a decode step of ~400 short kernels that gap (launch,
// ramp-up, the first loads' round trip) is a large share of the time. Over a programmatic edge the next kernel's blocks
// may be launched before that — once every block of the previous one has exited (ProgrammaticMode.AtExit), or already
// once every block of it has started (Early) — and `griddepcontrol.wait` in the dependent blocks until the previous grid
// has completed and its memory is visible; so whatever a kernel does before its wait overlaps the previous kernel: the
// SpQR matvec requests its first super-step's codes, planes and outlier entries there (weights only: never anything a
// previous kernel writes, and no stores). No kernel triggers its dependents early itself (griddepcontrol.launch_dependents):
// the edge's port says when.
//
// How, in ILGPU 1.5.3 (which knows nothing of PDL): every GpuKernels kernel is loaded through Load, which on a CUDA
// device of compute capability ≥ 9.0 compiles it with ILGPU, rewrites its PTX (.target raised to sm_90; the wait
// inserted at the top of the body unless the kernel places its own, GpuKernels.GridWait) and loads that; the kernel's
// CUfunction is registered. GpuGraph.Capture then turns each captured kernel → kernel edge whose destination is a
// registered kernel into a programmatic edge (cuGraph*Dependencies_v2, CUDA ≥ 12.3). Kernels launched
// outside graphs keep ordinary stream order (the wait is a no-op there). Elsewhere (older GPUs, ILGPU's CPU accelerator)
// kernels load as before and GridWait compiles to nothing (or is stripped from the PTX).
using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace SpQR.Gpu;

public sealed partial class GpuKernels
{
    // set once in the constructor: kernels are compiled for PDL (CUDA, compute capability ≥ 9.0)
    private bool _programmatic;
    // this backend's kernels loaded for PDL (CUfunction → kind): the only destinations GpuGraph makes programmatic
    private readonly System.Collections.Concurrent.ConcurrentDictionary<nint, KernelKind> _waiting = new();
    internal IReadOnlyDictionary<nint, KernelKind> WaitingKernels => _waiting;

    /// <summary>Whether this backend's kernels were loaded for programmatic dependent launch (a CUDA device of compute
    /// capability ≥ 9.0 and <c>SPQR_PDL</c> not set to 0).</summary>
    public bool ProgrammaticLaunch => _programmatic;

    /// <summary>The edges between kernels of graphs captured on this backend, where <see cref="ProgrammaticLaunch"/>.</summary>
    public ProgrammaticMode ProgrammaticEdges { get; set; } = ProgrammaticMode.EarlyExceptDenseGemv;

    private void InitProgrammatic()
        => _programmatic = _acc is CudaAccelerator { Architecture: { Major: >= 9 } } && GpuGraphDependencies.Available
            && Environment.GetEnvironmentVariable("SPQR_PDL") != "0";

    // on CUDA: an explicitly grouped kernel compiled by ILGPU, its PTX rewritten (for PDL, or without GridWait's
    // instruction where PDL is off), loaded; with PDL its CUfunction registered for GpuGraph's programmatic edges
    private Kernel LoadCuda(System.Reflection.MethodInfo method)
    {
        var compiled = (PTXCompiledKernel)_acc.CompileKernel(EntryPointDescription.FromExplicitlyGroupedKernel(method));
        string ptx = GridDependencyPtx.Rewrite(compiled.PTXAssembly, enable: _programmatic);
        // ILGPU 1.5.3 has no public way to build a compiled kernel from PTX text: its PTXAssembly is set in place
        var field = typeof(PTXCompiledKernel).GetField("<PTXAssembly>k__BackingField", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)
            ?? throw new InvalidOperationException($"kernel {method.Name}: this ILGPU version ({typeof(Accelerator).Assembly.GetName().Version}) keeps its PTX elsewhere; GpuKernels.Load was written against 1.5.3");
        field.SetValue(compiled, ptx);
        var k = _acc.LoadKernel(compiled);
        if (_programmatic)
        {
            bool gemv = method.Name.StartsWith("Gemv", StringComparison.Ordinal);
            _waiting[((CudaKernel)k).FunctionPtr] = gemv && GridDependencyPtx.WaitsAtTop(ptx) ? KernelKind.DenseGemv
                : gemv || method.Name.StartsWith("SpqrMatVec", StringComparison.Ordinal) ? KernelKind.Product : KernelKind.Small;
        }
        return k;
    }

    /// <summary>Inside a kernel: wait here (not at the top) for the kernels this one depends on to complete. Only
    /// what no earlier kernel writes may be read before it, and nothing stored. Compiles to nothing off CUDA; stripped
    /// from the PTX where PDL is off.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    internal static void GridWait()
    {
        if (CudaAsm.IsSupported) CudaAsm.Emit(GridDependencyPtx.Wait);
    }

    private Action<KernelConfig, T1> Load<T1>(Action<T1> kernel) where T1 : struct
    {
        if (_acc is not CudaAccelerator) return _acc.LoadStreamKernel(kernel);
        var l = LoadCuda(kernel.Method).CreateLauncherDelegate<Action<AcceleratorStream, KernelConfig, T1>>();
        return (c, a1) => l(_acc.DefaultStream, c, a1);
    }
    private Action<KernelConfig, T1, T2> Load<T1, T2>(Action<T1, T2> kernel) where T1 : struct where T2 : struct
    {
        if (_acc is not CudaAccelerator) return _acc.LoadStreamKernel(kernel);
        var l = LoadCuda(kernel.Method).CreateLauncherDelegate<Action<AcceleratorStream, KernelConfig, T1, T2>>();
        return (c, a1, a2) => l(_acc.DefaultStream, c, a1, a2);
    }
    private Action<KernelConfig, T1, T2, T3> Load<T1, T2, T3>(Action<T1, T2, T3> kernel) where T1 : struct where T2 : struct where T3 : struct
    {
        if (_acc is not CudaAccelerator) return _acc.LoadStreamKernel(kernel);
        var l = LoadCuda(kernel.Method).CreateLauncherDelegate<Action<AcceleratorStream, KernelConfig, T1, T2, T3>>();
        return (c, a1, a2, a3) => l(_acc.DefaultStream, c, a1, a2, a3);
    }
    private Action<KernelConfig, T1, T2, T3, T4> Load<T1, T2, T3, T4>(Action<T1, T2, T3, T4> kernel) where T1 : struct where T2 : struct where T3 : struct where T4 : struct
    {
        if (_acc is not CudaAccelerator) return _acc.LoadStreamKernel(kernel);
        var l = LoadCuda(kernel.Method).CreateLauncherDelegate<Action<AcceleratorStream, KernelConfig, T1, T2, T3, T4>>();
        return (c, a1, a2, a3, a4) => l(_acc.DefaultStream, c, a1, a2, a3, a4);
    }
    private Action<KernelConfig, T1, T2, T3, T4, T5> Load<T1, T2, T3, T4, T5>(Action<T1, T2, T3, T4, T5> kernel) where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct
    {
        if (_acc is not CudaAccelerator) return _acc.LoadStreamKernel(kernel);
        var l = LoadCuda(kernel.Method).CreateLauncherDelegate<Action<AcceleratorStream, KernelConfig, T1, T2, T3, T4, T5>>();
        return (c, a1, a2, a3, a4, a5) => l(_acc.DefaultStream, c, a1, a2, a3, a4, a5);
    }
    private Action<KernelConfig, T1, T2, T3, T4, T5, T6> Load<T1, T2, T3, T4, T5, T6>(Action<T1, T2, T3, T4, T5, T6> kernel) where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct
    {
        if (_acc is not CudaAccelerator) return _acc.LoadStreamKernel(kernel);
        var l = LoadCuda(kernel.Method).CreateLauncherDelegate<Action<AcceleratorStream, KernelConfig, T1, T2, T3, T4, T5, T6>>();
        return (c, a1, a2, a3, a4, a5, a6) => l(_acc.DefaultStream, c, a1, a2, a3, a4, a5, a6);
    }
    private Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7> Load<T1, T2, T3, T4, T5, T6, T7>(Action<T1, T2, T3, T4, T5, T6, T7> kernel) where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct where T7 : struct
    {
        if (_acc is not CudaAccelerator) return _acc.LoadStreamKernel(kernel);
        var l = LoadCuda(kernel.Method).CreateLauncherDelegate<Action<AcceleratorStream, KernelConfig, T1, T2, T3, T4, T5, T6, T7>>();
        return (c, a1, a2, a3, a4, a5, a6, a7) => l(_acc.DefaultStream, c, a1, a2, a3, a4, a5, a6, a7);
    }
    private Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8> Load<T1, T2, T3, T4, T5, T6, T7, T8>(Action<T1, T2, T3, T4, T5, T6, T7, T8> kernel) where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct where T7 : struct where T8 : struct
    {
        if (_acc is not CudaAccelerator) return _acc.LoadStreamKernel(kernel);
        var l = LoadCuda(kernel.Method).CreateLauncherDelegate<Action<AcceleratorStream, KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8>>();
        return (c, a1, a2, a3, a4, a5, a6, a7, a8) => l(_acc.DefaultStream, c, a1, a2, a3, a4, a5, a6, a7, a8);
    }
    private Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9> Load<T1, T2, T3, T4, T5, T6, T7, T8, T9>(Action<T1, T2, T3, T4, T5, T6, T7, T8, T9> kernel) where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct where T7 : struct where T8 : struct where T9 : struct
    {
        if (_acc is not CudaAccelerator) return _acc.LoadStreamKernel(kernel);
        var l = LoadCuda(kernel.Method).CreateLauncherDelegate<Action<AcceleratorStream, KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9>>();
        return (c, a1, a2, a3, a4, a5, a6, a7, a8, a9) => l(_acc.DefaultStream, c, a1, a2, a3, a4, a5, a6, a7, a8, a9);
    }
    private Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9, T10> Load<T1, T2, T3, T4, T5, T6, T7, T8, T9, T10>(Action<T1, T2, T3, T4, T5, T6, T7, T8, T9, T10> kernel) where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct where T7 : struct where T8 : struct where T9 : struct where T10 : struct
    {
        if (_acc is not CudaAccelerator) return _acc.LoadStreamKernel(kernel);
        var l = LoadCuda(kernel.Method).CreateLauncherDelegate<Action<AcceleratorStream, KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9, T10>>();
        return (c, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10) => l(_acc.DefaultStream, c, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10);
    }
}

/// <summary>When a kernel in a captured graph may be launched relative to the kernel before it (GpuKernels.Pdl.cs).</summary>
public enum ProgrammaticMode
{
    /// <summary>Plain edges: after the previous kernel has completed.</summary>
    Off,
    /// <summary>Once every block of the previous kernel has exited (before its completion is signalled).</summary>
    AtExit,
    /// <summary>Once every block of the previous kernel has started.</summary>
    Early,
    /// <summary>Early into the kernels that stream no weight matrix (norms, prepares, rotary, attention, adds), AtExit
    /// into the products (dense GEMVs, SpQR matvecs).</summary>
    EarlyIntoSmall,
    /// <summary>Early, but AtExit into the dense GEMVs that wait at their top (F32, and F16/BF16 where cols % 8 != 0 or
    /// x exceeds 48 KB): launched early, their waiting blocks took the multiprocessors' slots unevenly (H200, ninth
    /// session: F16 GEMV 4096x11008 62.6 against 44.4 µs). The staged half-precision GEMV requests its weights before its
    /// wait, like the SpQR matvecs, and is launched early (tenth session: 12.4 / 28.2 / 36.8 µs against 13.7 / 28.8 / 37.7
    /// from the exit port).</summary>
    EarlyExceptDenseGemv,
}

/// <summary>What a kernel loaded for programmatic launch is, for <see cref="ProgrammaticMode"/>: a product that requests
/// its weights before its wait (SpQR matvecs, the staged half-precision GEMV), a dense GEMV that waits at its top, or one
/// of the small kernels.</summary>
internal enum KernelKind { Small, Product, DenseGemv }

/// <summary>The PTX rewrite for programmatic dependent launch (file header).</summary>
public static class GridDependencyPtx
{
    public const string Wait = "griddepcontrol.wait;";
    private const string TopMarker = "// the wait at the top (GridDependencyPtx)";

    /// <summary>Whether the rewrite put the wait at the top of the kernel (it has no place of its own).</summary>
    public static bool WaitsAtTop(string rewritten) => rewritten.Contains(TopMarker, StringComparison.Ordinal);

    /// <summary>enable: the target raised to sm_90 and, unless the kernel has its own, the wait inserted before each
    /// entry's first instruction; else every griddepcontrol line removed.</summary>
    public static string Rewrite(string ptx, bool enable)
    {
        var output = new List<string>();
        bool ownWait = ptx.Contains(Wait, StringComparison.Ordinal);
        int state = 0; // 0: outside an entry; 1: in an .entry header; 2: in its body's declarations
        foreach (var line in ptx.Split('\n'))
        {
            string t = line.Trim();
            if (!enable)
            {
                if (!t.Contains("griddepcontrol", StringComparison.Ordinal)) output.Add(line);
                continue;
            }
            if (t.StartsWith(".target sm_", StringComparison.Ordinal) && int.TryParse(t.AsSpan(11), out int sm) && sm < 90)
            {
                output.Add(".target sm_90");
                continue;
            }
            if (state == 0 && t.Contains(".entry ", StringComparison.Ordinal)) state = 1;
            else if (state == 1 && t == "{") state = 2;
            else if (state == 2 && t.Length > 0 && !t.StartsWith(".reg", StringComparison.Ordinal) && !t.StartsWith(".local", StringComparison.Ordinal)
                     && !t.StartsWith(".shared", StringComparison.Ordinal) && !t.StartsWith("//", StringComparison.Ordinal))
            {
                if (!ownWait) { output.Add("\t" + TopMarker); output.Add("\t" + Wait); }
                state = 0;
            }
            output.Add(line);
        }
        return string.Join('\n', output);
    }
}
