// CUDA graphs for ILGPU launches: a fixed sequence of kernel launches recorded once (stream capture) and replayed with
// one driver call, so a decode step costs one host launch instead of hundreds (ILGPU spends ~5 µs of host time per
// launch). ILGPU 1.5 has no graph API, so the few driver entry points are bound here from libcuda (the driver ILGPU
// itself loads). ILGPU launches on the accelerator's DefaultStream, which for CUDA is the legacy NULL stream that CUDA
// cannot capture; GpuBackend gives the CUDA accelerator a stream of its own (GpuBackend.UseOwnStream).
// On any other accelerator (ILGPU's CPU accelerator in CI) a graph is the recorded delegate, run again on each Launch:
// the same enqueue code runs either way, only the capture differs.
// Contract: the recorded work must not depend on host state that changes between launches (per-step values live in
// device buffers the kernels read), and every buffer it touches must outlive the graph.
using System.Runtime.InteropServices;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace SpQR.Gpu;

public sealed class GpuGraphException(string message) : Exception(message);

/// <summary>A recorded sequence of device work, replayed by <see cref="Launch"/>.</summary>
public sealed unsafe class GpuGraph : IDisposable
{
    private readonly Accelerator _acc;
    private readonly Action? _replay;
    private nint _graph, _exec, _stream;

    /// <summary>True when the work was captured into a CUDA graph; false when Launch re-runs the delegate.</summary>
    public bool IsNative => _exec != 0;
    /// <summary>Nodes (kernels, copies) in the CUDA graph; 0 when not native.</summary>
    public int Nodes { get; }

    /// <summary>Kernel → kernel edges made programmatic (GpuKernels.Pdl.cs); 0 when none or not native.</summary>
    public int ProgrammaticEdges { get; }

    private GpuGraph(Accelerator acc, Action? replay, nint graph, nint exec, nint stream, int nodes, int programmatic = 0)
    {
        _acc = acc; _replay = replay; _graph = graph; _exec = exec; _stream = stream; Nodes = nodes; ProgrammaticEdges = programmatic;
    }

    /// <summary>Records what <paramref name="enqueue"/> queues on the backend's stream. Kernels it launches must have
    /// been loaded before (run the work once first): capture records launches, not module loads.</summary>
    public static GpuGraph Capture(GpuBackend gpu, Action enqueue)
    {
        var acc = gpu.Accelerator;
        if (acc is not CudaAccelerator || acc.DefaultStream is not CudaStream { StreamPtr: not 0 } cs || !CudaDriver.Available)
            return new GpuGraph(acc, enqueue, 0, 0, 0, 0);
        acc.Bind(); // the driver calls below act on the calling thread's current context
        acc.Synchronize();
        nint s = cs.StreamPtr, graph = 0, exec = 0;
        CudaDriver.Check(CudaDriver.StreamBeginCapture(s, 2 /* CU_STREAM_CAPTURE_MODE_RELAXED */), "cuStreamBeginCapture");
        try { enqueue(); }
        catch
        {
            CudaDriver.StreamEndCapture(s, &graph);
            if (graph != 0) CudaDriver.GraphDestroy(graph);
            throw;
        }
        CudaDriver.Check(CudaDriver.StreamEndCapture(s, &graph), "cuStreamEndCapture (was a synchronous copy or a synchronize queued inside the captured work?)");
        try
        {
            int programmatic = gpu.Kernels.ProgrammaticLaunch ? GpuGraphDependencies.MakeProgrammatic(graph, gpu.Kernels.ProgrammaticEdges, gpu.Kernels.WaitingKernels) : 0;
            CudaDriver.Check(CudaDriver.GraphInstantiateWithFlags(&exec, graph, 0), "cuGraphInstantiateWithFlags");
            nuint n = 0;
            CudaDriver.Check(CudaDriver.GraphGetNodes(graph, null, &n), "cuGraphGetNodes");
            return new GpuGraph(acc, null, graph, exec, s, (int)n, programmatic);
        }
        catch { CudaDriver.GraphDestroy(graph); throw; }
    }

    /// <summary>Queues the recorded work on the backend's stream (asynchronous, like a kernel launch).</summary>
    public void Launch()
    {
        if (_exec == 0) { _replay!(); return; }
        _acc.Bind();
        CudaDriver.Check(CudaDriver.GraphLaunch(_exec, _stream), "cuGraphLaunch");
    }

    public void Dispose()
    {
        if (_exec != 0) { CudaDriver.GraphExecDestroy(_exec); _exec = 0; }
        if (_graph != 0) { CudaDriver.GraphDestroy(_graph); _graph = 0; }
    }
}

/// <summary>The CUDA driver entry points ILGPU 1.5 does not expose (stream capture, graphs, events), bound from libcuda.</summary>
internal static unsafe class CudaDriver
{
    private static readonly nint Lib = Load();
    public static bool Available => Lib != 0 && StreamBeginCapture != null && EventCreate != null && StreamWaitEventFn != null && EventRecordFn != null;

    /// <summary>An event without timing (CU_EVENT_DISABLE_TIMING), for ordering streams.</summary>
    public static nint NewEvent()
    {
        nint e = 0;
        Check(EventCreate(&e, 2), "cuEventCreate");
        return e;
    }

    public static readonly delegate* unmanaged<nint, int, int> StreamBeginCapture = (delegate* unmanaged<nint, int, int>)Export("cuStreamBeginCapture_v2");
    public static readonly delegate* unmanaged<nint, nint*, int> StreamEndCapture = (delegate* unmanaged<nint, nint*, int>)Export("cuStreamEndCapture");
    public static readonly delegate* unmanaged<nint*, nint, ulong, int> GraphInstantiateWithFlags = (delegate* unmanaged<nint*, nint, ulong, int>)Export("cuGraphInstantiateWithFlags");
    public static readonly delegate* unmanaged<nint, nint, int> GraphLaunch = (delegate* unmanaged<nint, nint, int>)Export("cuGraphLaunch");
    public static readonly delegate* unmanaged<nint, nint*, nuint*, int> GraphGetNodes = (delegate* unmanaged<nint, nint*, nuint*, int>)Export("cuGraphGetNodes");
    public static readonly delegate* unmanaged<nint, int> GraphExecDestroy = (delegate* unmanaged<nint, int>)Export("cuGraphExecDestroy");
    public static readonly delegate* unmanaged<nint, int> GraphDestroy = (delegate* unmanaged<nint, int>)Export("cuGraphDestroy");
    private static readonly delegate* unmanaged<nint*, uint, int> EventCreate = (delegate* unmanaged<nint*, uint, int>)Export("cuEventCreate");
    private static readonly delegate* unmanaged<nint, nint, int> EventRecordFn = (delegate* unmanaged<nint, nint, int>)Export("cuEventRecord");
    private static readonly delegate* unmanaged<nint, nint, uint, int> StreamWaitEventFn = (delegate* unmanaged<nint, nint, uint, int>)Export("cuStreamWaitEvent");
    private static readonly delegate* unmanaged<nint, int> EventDestroyFn = (delegate* unmanaged<nint, int>)Export("cuEventDestroy_v2");

    /// <summary>Event e marks the work queued on stream s so far.</summary>
    public static void EventRecord(nint e, nint s) => Check(EventRecordFn(e, s), "cuEventRecord");
    /// <summary>Work queued on stream s after this waits for event e.</summary>
    public static void StreamWaitEvent(nint s, nint e) => Check(StreamWaitEventFn(s, e, 0), "cuStreamWaitEvent");
    public static void EventDestroy(nint e) => EventDestroyFn(e);
    private static readonly delegate* unmanaged<int, byte**, int> GetErrorName = (delegate* unmanaged<int, byte**, int>)Export("cuGetErrorName");

    private static nint Load()
    {
        foreach (var name in OperatingSystem.IsWindows() ? new[] { "nvcuda.dll" } : new[] { "libcuda.so.1", "libcuda.so" })
            if (NativeLibrary.TryLoad(name, out var h)) return h;
        return 0;
    }

    public static nint Export(string name) => Lib != 0 && NativeLibrary.TryGetExport(Lib, name, out var p) ? p : 0;

    public static void Check(int result, string call)
    {
        if (result == 0) return;
        string text = $"error {result}";
        byte* s = null;
        if (GetErrorName != null && GetErrorName(result, &s) == 0 && s != null) text = Marshal.PtrToStringAnsi((nint)s) ?? text;
        throw new GpuGraphException($"{call} failed: {text}");
    }
}

/// <summary>Programmatic edges in captured graphs (GpuKernels.Pdl.cs): the edge rewrite over a backend's registered kernels.</summary>
internal static unsafe class GpuGraphDependencies
{
    [StructLayout(LayoutKind.Sequential)]
    private struct EdgeData { public byte FromPort, ToPort, Type, R0, R1, R2, R3, R4; }

    private static readonly delegate* unmanaged<nint, nint*, nint*, EdgeData*, nuint*, int> GetEdges = (delegate* unmanaged<nint, nint*, nint*, EdgeData*, nuint*, int>)CudaDriver.Export("cuGraphGetEdges_v2");
    private static readonly delegate* unmanaged<nint, nint*, nint*, EdgeData*, nuint, int> RemoveDeps = (delegate* unmanaged<nint, nint*, nint*, EdgeData*, nuint, int>)CudaDriver.Export("cuGraphRemoveDependencies_v2");
    private static readonly delegate* unmanaged<nint, nint*, nint*, EdgeData*, nuint, int> AddDeps = (delegate* unmanaged<nint, nint*, nint*, EdgeData*, nuint, int>)CudaDriver.Export("cuGraphAddDependencies_v2");
    private static readonly delegate* unmanaged<nint, int*, int> NodeGetType = (delegate* unmanaged<nint, int*, int>)CudaDriver.Export("cuGraphNodeGetType");
    private static readonly delegate* unmanaged<nint, byte*, int> KernelNodeGetParams = (delegate* unmanaged<nint, byte*, int>)CudaDriver.Export("cuGraphKernelNodeGetParams_v2");

    /// <summary>The driver has the edge-data graph calls (CUDA ≥ 12.3).</summary>
    public static bool Available => CudaDriver.Available && GetEdges != null && RemoveDeps != null && AddDeps != null && NodeGetType != null && KernelNodeGetParams != null;

    // a kernel node's CUfunction (the first field of CUDA_KERNEL_NODE_PARAMS_v2), or 0 for other nodes
    private static nint KernelFunction(nint node)
    {
        int type = -1;
        CudaDriver.Check(NodeGetType(node, &type), "cuGraphNodeGetType");
        if (type != 0 /* CU_GRAPH_NODE_TYPE_KERNEL */) return 0;
        byte* p = stackalloc byte[256];
        new Span<byte>(p, 256).Clear();
        CudaDriver.Check(KernelNodeGetParams(node, p), "cuGraphKernelNodeGetParams_v2");
        return *(nint*)p;
    }

    /// <summary>Each default edge from a kernel node to a kernel loaded for PDL becomes programmatic, from the source's
    /// programmatic port (the dependent may launch once every source block has exited: no kernel triggers early) or its
    /// launch-order port (once every source block has started), as the mode says for the destination's kind. Returns
    /// the count.</summary>
    public static int MakeProgrammatic(nint graph, ProgrammaticMode mode, IReadOnlyDictionary<nint, KernelKind> waiting)
    {
        if (mode == ProgrammaticMode.Off) return 0;
        nuint n = 0;
        CudaDriver.Check(GetEdges(graph, null, null, null, &n), "cuGraphGetEdges_v2");
        if (n == 0) return 0;
        var from = new nint[n]; var to = new nint[n]; var data = new EdgeData[n];
        fixed (nint* f = from, t = to) fixed (EdgeData* d = data)
            CudaDriver.Check(GetEdges(graph, f, t, d, &n), "cuGraphGetEdges_v2");
        var fs = new List<nint>(); var ts = new List<nint>(); var ds = new List<EdgeData>(); var port = new List<byte>();
        var func = new Dictionary<nint, nint>();
        nint Func(nint node) => func.TryGetValue(node, out var v) ? v : func[node] = KernelFunction(node);
        for (int i = 0; i < (int)n; i++)
        {
            if (data[i].Type != 0 || data[i].FromPort != 0 || data[i].ToPort != 0) continue;
            if (Func(from[i]) == 0) continue;
            nint g = Func(to[i]);
            if (g == 0 || !waiting.TryGetValue(g, out var kind)) continue;
            fs.Add(from[i]); ts.Add(to[i]); ds.Add(data[i]);
            bool early = mode switch
            {
                ProgrammaticMode.Early => true,
                ProgrammaticMode.EarlyIntoSmall => kind == KernelKind.Small,
                ProgrammaticMode.EarlyExceptDenseGemv => kind != KernelKind.DenseGemv,
                _ => false,
            };
            port.Add(early ? (byte)2 /* CU_GRAPH_KERNEL_NODE_PORT_LAUNCH_ORDER */ : (byte)1 /* CU_GRAPH_KERNEL_NODE_PORT_PROGRAMMATIC */);
        }
        if (fs.Count == 0) return 0;
        var fa = fs.ToArray(); var ta = ts.ToArray(); var da = ds.ToArray();
        var pa = new EdgeData[fa.Length];
        for (int i = 0; i < pa.Length; i++) pa[i] = new EdgeData { FromPort = port[i], Type = 1 /* CU_GRAPH_DEPENDENCY_TYPE_PROGRAMMATIC */ };
        fixed (nint* f = fa, t = ta) fixed (EdgeData* d = da, p = pa)
        {
            CudaDriver.Check(RemoveDeps(graph, f, t, d, (nuint)fa.Length), "cuGraphRemoveDependencies_v2");
            CudaDriver.Check(AddDeps(graph, f, t, p, (nuint)fa.Length), "cuGraphAddDependencies_v2");
        }
        return fa.Length;
    }
}
