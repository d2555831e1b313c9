// Causal scaled dot-product attention of T new query tokens over a key/value cache, with grouped KV heads
// (head h reads KV head h / (nHeads / nKvHeads): MHA, GQA and MQA alike). Eager-PyTorch semantics: scores =
// q·kᵀ / sqrt(headDim), softmax in float32 over positions 0..pos, output = Σ p·v. Threaded over heads (fixed work
// per head, so results do not depend on the thread count). Scalar twin: ReferenceKernels.CausalAttention.
namespace SpQR.Tensors.Cpu;

public static partial class CpuKernels
{
    // q (T, nHeads*hd) at positions pos0..pos0+T-1; keys, values (pos0+T, nKvHeads*hd) -> out (T, nHeads*hd)
    // scratch: at least nHeads * (pos0 + T) floats
    public static void CausalAttention(ReadOnlySpan<float> q, ReadOnlySpan<float> keys, ReadOnlySpan<float> values, Span<float> output,
                                       int T, int pos0, int nHeads, int nKvHeads, int headDim, Span<float> scratch)
        => CausalAttention(q, keys, values, output, T, pos0, nHeads, nKvHeads, headDim, scratch, Simd.Best);

    internal static unsafe void CausalAttention(ReadOnlySpan<float> q, ReadOnlySpan<float> keys, ReadOnlySpan<float> values, Span<float> output,
                                                int T, int pos0, int nHeads, int nKvHeads, int headDim, Span<float> scratch, SimdPath path)
    {
        int ctx = pos0 + T, qDim = nHeads * headDim, kvDim = nKvHeads * headDim;
        if (nKvHeads <= 0 || nHeads % nKvHeads != 0) throw new ArgumentException($"{nHeads} heads cannot share {nKvHeads} KV heads");
        if (q.Length < (long)T * qDim || output.Length < (long)T * qDim) throw new ArgumentException($"q/output need {T} x {qDim} floats");
        if (keys.Length < (long)ctx * kvDim || values.Length < (long)ctx * kvDim) throw new ArgumentException($"keys/values need {ctx} x {kvDim} floats");
        if (scratch.Length < (long)nHeads * ctx) throw new ArgumentException($"scratch needs {nHeads} x {ctx} floats");
        int group = nHeads / nKvHeads;
        float scale = 1f / MathF.Sqrt(headDim);
        if (T >= 4) { CausalAttentionGemm(q, keys, values, output, T, pos0, nHeads, nKvHeads, headDim, path); return; }
        fixed (float* pq = q) fixed (float* pk = keys) fixed (float* pv = values) fixed (float* po = output) fixed (float* ps = scratch)
        {
            nint aq = (nint)pq, ak = (nint)pk, av = (nint)pv, ao = (nint)po, asc = (nint)ps;
            Action<int> head = h =>
            {
                float* sc = (float*)asc + (long)h * ctx;
                int kvOff = h / group * headDim;
                for (int t = 0; t < T; t++)
                {
                    int n = pos0 + t + 1;
                    float* qt = (float*)aq + (long)t * qDim + h * headDim;
                    for (int j = 0; j < n; j++) sc[j] = Dot(qt, (float*)ak + (long)j * kvDim + kvOff, headDim, path) * scale;
                    var s = new Span<float>(sc, n);
                    Softmax(s, s, path);
                    var o = new Span<float>((float*)ao + (long)t * qDim + h * headDim, headDim);
                    o.Clear();
                    for (int j = 0; j < n; j++) Axpy(sc[j], new ReadOnlySpan<float>((float*)av + (long)j * kvDim + kvOff, headDim), o, path);
                }
            };
            if ((long)T * ctx * qDim < 1 << 15) for (int h = 0; h < nHeads; h++) head(h);
            else CpuThreads.For(nHeads, head);
        }
    }

    // Prefill: per head, S (T, ctx) = Q_h · K_hᵀ and O_h (T, hd) = softmax(S) · V_h as two GEMMs (strided views of
    // the packed q/k/v rows); rows are masked causally before the softmax. Heads run in parallel, GEMMs serially.
    private static unsafe void CausalAttentionGemm(ReadOnlySpan<float> q, ReadOnlySpan<float> keys, ReadOnlySpan<float> values, Span<float> output,
                                                   int T, int pos0, int nHeads, int nKvHeads, int headDim, SimdPath path)
    {
        int ctx = pos0 + T, qDim = nHeads * headDim, kvDim = nKvHeads * headDim, group = nHeads / nKvHeads;
        float scale = 1f / MathF.Sqrt(headDim);
        fixed (float* pq = q) fixed (float* pk = keys) fixed (float* pv = values) fixed (float* po = output)
        {
            nint aq = (nint)pq, ak = (nint)pk, av = (nint)pv, ao = (nint)po;
            int qLen = q.Length, kLen = keys.Length, vLen = values.Length, oLen = output.Length;
            Action<int> head = h =>
            {
                var s = System.Buffers.ArrayPool<float>.Shared.Rent(T * ctx);
                try
                {
                    int kvOff = h / group * headDim;
                    var qh = new ReadOnlySpan<float>((float*)aq + h * headDim, qLen - h * headDim);
                    var kh = new ReadOnlySpan<float>((float*)ak + kvOff, kLen - kvOff);
                    var vh = new ReadOnlySpan<float>((float*)av + kvOff, vLen - kvOff);
                    // S = Q_h K_hᵀ   (T, hd) x (hd, ctx)
                    Gemm(qh, false, qDim, System.Runtime.InteropServices.MemoryMarshal.AsBytes(kh), WeightType.F32, true, kvDim,
                         s, ctx, T, ctx, headDim, false, path, threaded: false);
                    for (int t = 0; t < T; t++)
                    {
                        int n = pos0 + t + 1;
                        var row = s.AsSpan(t * ctx, ctx);
                        Scale(row[..n], scale, row[..n], path);
                        Softmax(row[..n], row[..n], path);
                        row[n..].Clear(); // causal mask: future positions get probability 0
                    }
                    // O_h = P V_h   (T, ctx) x (ctx, hd)
                    var oh = new Span<float>((float*)ao + h * headDim, oLen - h * headDim);
                    Gemm(s.AsSpan(0, T * ctx), false, ctx, System.Runtime.InteropServices.MemoryMarshal.AsBytes(vh), WeightType.F32, false, kvDim,
                         oh, qDim, T, headDim, ctx, false, path, threaded: false);
                }
                finally { System.Buffers.ArrayPool<float>.Shared.Return(s); }
            };
            CpuThreads.For(nHeads, head);
        }
    }
}
