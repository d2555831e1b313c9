// The kernels of a decoder layer on the device besides the products, mirroring the CPU files, for one token (a decode
// step) or T tokens at consecutive positions (a batched prefill pass; grid y is the token): rotary
// (Cpu/CpuKernels.Rope.cs, both layouts; fused with the KV-cache writes, the first position read on the device), causal
// attention over the KV cache with GQA/MQA (Cpu/CpuKernels.Attention.cs; a group per (head, query): a warp per cached
// position for the scores, group-wide max and sum, the weighted sum of V split over positions; a decode step's single
// query splits the cached positions over chunks instead, combined by each head's last block — and takes the step's
// rotary and cache writes itself, RopeAttention; it reads the older cache rows of its first round before its
// programmatic wait, overlapping the projections before it), LayerNorm per row,
// Falcon's qkv split, GELU, SwiGLU and the residual add (Cpu/CpuKernels.Activation.cs / Elementwise.cs).
using ILGPU;
using ILGPU.Runtime;

namespace SpQR.Gpu;

public sealed partial class GpuKernels
{
    private Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, RopeDims>? _ropeStore;
    private Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, AttentionDims>? _attention;
    private Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<int>, AttentionDims, int, RopeViews>? _attentionSplit;
    private Action<KernelConfig, ArrayView<float>, ArrayView<float>, int>? _swiglu, _add;
    private Action<KernelConfig, ArrayView<float>, int>? _gelu;
    private Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float>? _layerNorm;
    private Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int>? _splitQkv;

    /// <summary>Cached positions per block of the decode attention (AttentionSplitKernel): a query attends in
    /// ⌈positions / chunk⌉ blocks per head, the last to finish combines them (≤ 256; tests use small chunks to reach the
    /// combine; 0 turns the split kernel off). The per-head completion counters belong to this GpuKernels, so two
    /// decode attentions on it must not run at the same time (as with the GEMM's split-K partials).</summary>
    public int AttentionChunk { get; set; } = 256;

    /// <summary>A decode step's rotary and KV-cache writes inside the split attention kernel (<see cref="RopeAttention"/>;
    /// default): each block rotates its head's q as it loads it, and the blocks of the chunk holding the new position
    /// write its rotated k and its v into the cache before scoring — one launch per layer fewer. False: RopeStore, then
    /// Attention.</summary>
    public bool FuseRopeIntoAttention { get; set; } = true;

    /// <summary>Whether <see cref="Attention"/> takes the split decode kernel: one query, head dim a multiple of 4 (float4
    /// value loads) up to 256 and ≤ 4 × the block's threads, ≤ 64 chunks, and a scores scratch that holds the chunks'
    /// partial results (heads · chunks · (head dim + 2) floats); else the one-block-per-head kernel.</summary>
    public bool AttentionSplits(AttentionDims d, int tokens, long scoresLength)
    {
        int C = AttentionChunk;
        if (C is < 1 or > 256) return false; // 0: off (the one-block-per-head kernel)
        int chunks = (d.MaxContext + C - 1) / C;
        return tokens == 1 && d.HeadDim % 4 == 0 && d.HeadDim / 4 <= GroupThreads && d.HeadDim <= 256 && chunks <= 64
            && d.Heads <= _attnDone.Length && (long)d.Heads * chunks * (d.HeadDim + 2) <= scoresLength;
    }

    /// <summary>x (rows, n) -> dst = (x − mean)/√(var + eps)·w + b per row (torch LayerNorm, two-pass variance), a
    /// thread group per row.</summary>
    public void LayerNorm(ArrayView<float> x, ArrayView<float> w, ArrayView<float> b, ArrayView<float> dst, float eps, int rows = 1)
    {
        _layerNorm ??= Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float>(LayerNormKernel);
        _layerNorm(new KernelConfig(rows, GroupThreads), x, w, b, dst, (int)w.Length, eps);
    }

    /// <summary>x = GELU(x) in erf form over n (erf as the CPU kernel: Abramowitz &amp; Stegun 7.1.26).</summary>
    public void Gelu(ArrayView<float> x, int n)
    {
        _gelu ??= Load<ArrayView<float>, int>(GeluKernel);
        int blk = Math.Min(256, _acc.MaxNumThreadsPerGroup);
        _gelu(new KernelConfig((n + blk - 1) / blk, blk), x, n);
    }

    /// <summary>Falcon's fused qkv rows (tokens, kv·(group + 2)·hd), grouped per KV head as [q × group, k, v] × kv, into
    /// q (tokens, heads·hd), k and v (tokens, kv·hd).</summary>
    public void SplitQkv(ArrayView<float> qkv, ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, int kvHeads, int group, int headDim, int tokens = 1)
    {
        _splitQkv ??= Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int>(SplitQkvKernel);
        int n = tokens * kvHeads * (group + 2) * headDim, blk = Math.Min(256, _acc.MaxNumThreadsPerGroup);
        _splitQkv(new KernelConfig((n + blk - 1) / blk, blk), qkv, q, k, v, kvHeads, group, headDim, tokens);
    }

    private static void LayerNormKernel(ArrayView<float> x, ArrayView<float> w, ArrayView<float> b, ArrayView<float> dst, int n, float eps)
    {
        long o = (long)Grid.IdxX * n;
        float s = 0;
        for (int i = Group.IdxX; i < n; i += Group.DimX) s += x[o + i];
        float mean = BlockSum(s) / n;
        float v = 0;
        for (int i = Group.IdxX; i < n; i += Group.DimX) { float d = x[o + i] - mean; v += d * d; }
        float inv = 1f / MathF.Sqrt(BlockSum(v) / n + eps);
        for (int i = Group.IdxX; i < n; i += Group.DimX) dst[o + i] = (x[o + i] - mean) * inv * w[i] + b[i];
    }

    private static void GeluKernel(ArrayView<float> x, int n)
    {
        int i = Grid.GlobalIndex.X;
        if (i >= n) return;
        float v = x[i], z = Math.Abs(v * 0.707106781f);
        float t = 1f / (1f + 0.3275911f * z);
        float poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
        float erf = 1f - poly * Exp(-z * z);
        x[i] = 0.5f * v * (1f + (v < 0 ? -erf : erf));
    }

    private static void SplitQkvKernel(ArrayView<float> qkv, ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, int kvHeads, int group, int hd, int tokens)
    {
        int i = Grid.GlobalIndex.X, block = (group + 2) * hd, row = kvHeads * block;
        if (i >= tokens * row) return;
        int t = i / row, g = i % row / block, j = i % block;
        int qo = t * kvHeads * group * hd, ko = t * kvHeads * hd;
        if (j < group * hd) q[qo + g * group * hd + j] = qkv[i];
        else if (j < (group + 1) * hd) k[ko + g * hd + j - group * hd] = qkv[i];
        else v[ko + g * hd + j - (group + 1) * hd] = qkv[i];
    }

    /// <summary>One launch per layer for what follows the q/k/v projections of `tokens` tokens at positions pos[0]..:
    /// q (tokens, nHeads, headDim) rotated in place, k (tokens, nKv, headDim) rotated into rows pos.. of the key cache
    /// and v copied into rows pos.. of the value cache (caches (maxCtx, nKv·headDim)); cos/sin are the whole tables
    /// (maxCtx, headDim/2) and pos (1,) is read on the device, so the same launch serves every position (and a captured
    /// graph).</summary>
    public void RopeStore(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> cos, ArrayView<float> sin, ArrayView<int> pos,
                          ArrayView<float> keys, ArrayView<float> values, int nHeads, int nKv, int headDim, bool interleaved, int tokens = 1)
    {
        if (headDim % 2 != 0) throw new ArgumentException($"rotary needs an even head dimension, got {headDim}", nameof(headDim));
        _ropeStore ??= Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, RopeDims>(RopeStoreKernel);
        var d = new RopeDims { Heads = nHeads, KvHeads = nKv, HeadDim = headDim, Interleaved = interleaved ? 1 : 0 };
        int n = (nHeads + nKv) * (headDim / 2) + nKv * headDim, blk = Math.Min(128, _acc.MaxNumThreadsPerGroup);
        _ropeStore(new KernelConfig(new Index2D((n + blk - 1) / blk, tokens), new Index2D(blk, 1)), q, k, v, cos, sin, pos, keys, values, d);
    }

    /// <summary>A decode step's attention from the projections: rotary on q (at position pos[0]) and k, this token's k and
    /// v into the cache, then <see cref="Attention"/> — in the split attention kernel itself where it takes the shape and
    /// <see cref="FuseRopeIntoAttention"/> (q is then left unrotated in its buffer), else RopeStore then Attention.</summary>
    public void RopeAttention(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> cos, ArrayView<float> sin, ArrayView<int> pos,
                              ArrayView<float> keys, ArrayView<float> values, ArrayView<float> output, ArrayView<float> scores, AttentionDims d, bool interleaved)
    {
        if (FuseRopeIntoAttention && d.First == 0 && AttentionSplits(d, 1, scores.Length)) // (its head dim is a multiple of 4)
        {
            var rope = new RopeViews { Cos = cos, Sin = sin, K = k, V = v, Apply = 1, Interleaved = interleaved ? 1 : 0 };
            Attention(q, keys, values, output, scores, pos, d, 1, rope);
            return;
        }
        RopeStore(q, k, v, cos, sin, pos, keys, values, d.Heads, d.KvHeads, d.HeadDim, interleaved);
        Attention(q, keys, values, output, scores, pos, d);
    }

    /// <summary>Causal attention of `tokens` queries at positions pos[0] + d.First..: out (tokens, nHeads, headDim) =
    /// softmax(q kᵀ/√d) v, query t over cache positions [0, pos[0] + d.First + t] of one layer; keys and values (maxCtx,
    /// nKv, headDim); scores is a scratch of tokens·nHeads·maxCtx floats; pos (1,) is read on the device.</summary>
    public void Attention(ArrayView<float> q, ArrayView<float> keys, ArrayView<float> values, ArrayView<float> output, ArrayView<float> scores, ArrayView<int> pos, AttentionDims d,
                          int tokens = 1)
        => Attention(q, keys, values, output, scores, pos, d, tokens, default);

    private void Attention(ArrayView<float> q, ArrayView<float> keys, ArrayView<float> values, ArrayView<float> output, ArrayView<float> scores, ArrayView<int> pos, AttentionDims d,
                           int tokens, RopeViews rope)
    {
        if (scores.Length < (long)tokens * d.Heads * d.MaxContext) throw new ArgumentException($"scores holds {scores.Length} floats, need {tokens}x{d.Heads}x{d.MaxContext}");
        if (AttentionSplits(d, tokens, scores.Length))
        {
            // 1024 threads, as the one-block kernel: with 256 each warp's position loops were long enough to lose to it at
            // 50 positions on the H200 (11.0 against 7.4 µs)
            int C = AttentionChunk, chunks = (d.MaxContext + C - 1) / C;
            _attentionSplit ??= Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<int>, AttentionDims, int, RopeViews>(AttentionSplitKernel);
            if (rope.Apply == 0) rope = new RopeViews { Cos = q, Sin = q, K = q, V = q }; // unread
            _attentionSplit(new KernelConfig(new Index2D(d.Heads, chunks), new Index2D(GroupThreads, 1)), q, keys, values, output, scores, _attnDone.View, pos, d, C, rope);
            return;
        }
        if (rope.Apply != 0) throw new InvalidOperationException("the rotary is folded into the split decode attention only");
        _attention ??= Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, AttentionDims>(AttentionKernel);
        _attention(new KernelConfig(new Index2D(d.Heads, tokens), new Index2D(GroupThreads, 1)), q, keys, values, output, scores, pos, d);
    }

    /// <summary>gate = silu(gate) · up, element-wise over n.</summary>
    public void SwiGlu(ArrayView<float> gate, ArrayView<float> up, int n)
    {
        _swiglu ??= Load<ArrayView<float>, ArrayView<float>, int>(SwiGluKernel);
        int blk = Math.Min(256, _acc.MaxNumThreadsPerGroup);
        _swiglu(new KernelConfig((n + blk - 1) / blk, blk), gate, up, n);
    }

    /// <summary>x += y over n.</summary>
    public void Add(ArrayView<float> x, ArrayView<float> y, int n)
    {
        _add ??= Load<ArrayView<float>, ArrayView<float>, int>(AddKernel);
        int blk = Math.Min(256, _acc.MaxNumThreadsPerGroup);
        _add(new KernelConfig((n + blk - 1) / blk, blk), x, y, n);
    }

    // threads [0, (H + KV)·half): rotation pairs of q then k (k's go to the cache); then KV·headDim threads copy v
    private static void RopeStoreKernel(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> cos, ArrayView<float> sin,
                                        ArrayView<int> pos, ArrayView<float> keys, ArrayView<float> values, RopeDims d)
    {
        // token Grid.IdxY at position pos[0] + token; its q row at token·heads·hd, k and v rows at token·kvDim
        int t = Grid.IdxX * Group.DimX + Group.IdxX, token = Grid.IdxY, hd = d.HeadDim, half = hd / 2, p = pos[0] + token, kvDim = d.KvHeads * hd;
        int pairs = (d.Heads + d.KvHeads) * half, qo = token * d.Heads * hd, ko = token * kvDim;
        if (t >= pairs)
        {
            int j = t - pairs;
            if (j < kvDim) values[p * kvDim + j] = v[ko + j];
            return;
        }
        bool isK = t >= d.Heads * half;
        int tt = isK ? t - d.Heads * half : t, h = tt / half, i = tt % half, b = h * hd;
        int ia = d.Interleaved != 0 ? b + 2 * i : b + i, ib = d.Interleaved != 0 ? ia + 1 : b + i + half;
        float co = cos[p * half + i], si = sin[p * half + i];
        if (!isK)
        {
            float a = q[qo + ia], c = q[qo + ib];
            q[qo + ia] = a * co - c * si;
            q[qo + ib] = c * co + a * si;
        }
        else
        {
            float a = k[ko + ia], c = k[ko + ib];
            keys[p * kvDim + ia] = a * co - c * si;
            keys[p * kvDim + ib] = c * co + a * si;
        }
    }

    // e^x in plain arithmetic (PTX has no exp intrinsic without ILGPU.Algorithms): x = k·ln2 + r with |r| ≤ ln2/2,
    // e^r by its Taylor series to r^8 (relative error < 1e-8 there, below float rounding), 2^k from the exponent bits
    private static float Exp(float x)
    {
        if (x < -87.3f) return 0f;
        if (x > 88.7f) return float.PositiveInfinity;
        float y = x * 1.44269504f;
        int k = (int)(y + (y >= 0 ? 0.5f : -0.5f));
        float r = x - k * 0.693145752f - k * 1.42860677e-6f; // ln2 split in two for an exact reduction
        float p = 1f + r * (1f + r * (0.5f + r * (1f / 6 + r * (1f / 24 + r * (1f / 120 + r * (1f / 720 + r * (1f / 5040 + r * (1f / 40320))))))));
        // 2^k for k in [-126, 127], split in two factors so that k = -126..127 never leaves the normal range
        int k1 = k / 2, k2 = k - k1;
        return p * Interop.IntAsFloat((uint)((k1 + 127) << 23)) * Interop.IntAsFloat((uint)((k2 + 127) << 23));
    }

    // one thread group per head: scores with a warp per cached position (lanes over the head dimension, coalesced), the
    // softmax with group-wide max and sum, then o = Σ_t p_t·v_t with thread i % hd on dimension i and the positions split
    // among n / hd parts that meet in shared memory
    private static void AttentionKernel(ArrayView<float> q, ArrayView<float> keys, ArrayView<float> values, ArrayView<float> output, ArrayView<float> scores, ArrayView<int> pos, AttentionDims d)
    {
        // query Grid.IdxY of this launch (position pos[0] + First + token), head Grid.IdxX
        int token = Grid.IdxY, positions = pos[0] + d.First + token + 1;
        var part = SharedMemory.Allocate<float>(1024);
        int h = Grid.IdxX, tid = Group.IdxX, n = Group.DimX, W = Warp.WarpSize, nw = n / W, lane = Warp.LaneIdx;
        int kvh = h / (d.Heads / d.KvHeads), hd = d.HeadDim, stride = d.KvHeads * hd;
        int qb = (token * d.Heads + h) * hd, sb = (token * d.Heads + h) * d.MaxContext;
        float scale = 1f / MathF.Sqrt(hd);
        for (int t = Warp.WarpIdx; t < positions; t += nw)
        {
            int kb = t * stride + kvh * hd;
            float s = 0;
            for (int i = lane; i < hd; i += W) s += q[qb + i] * keys[kb + i];
            s = WarpSum(s);
            if (Warp.IsFirstLane) scores[sb + t] = s * scale;
        }
        Group.Barrier();
        float localMax = float.NegativeInfinity;
        for (int t = tid; t < positions; t += n) localMax = Math.Max(localMax, scores[sb + t]);
        float mx = BlockReduce(localMax, true);
        float localSum = 0;
        for (int t = tid; t < positions; t += n)
        {
            float e = Exp(scores[sb + t] - mx);
            scores[sb + t] = e;
            localSum += e;
        }
        float sum = BlockSum(localSum); // its barriers also publish the e values
        if (n >= hd)
        {
            int parts = n / hd, p = tid / hd, i = tid % hd;
            if (p < parts)
            {
                // two positions per iteration, two chains: their loads are independent
                float acc = 0, acc2 = 0;
                int t = p;
                for (; t + parts < positions; t += 2 * parts)
                {
                    acc += scores[sb + t] * values[t * stride + kvh * hd + i];
                    acc2 += scores[sb + t + parts] * values[(t + parts) * stride + kvh * hd + i];
                }
                if (t < positions) acc += scores[sb + t] * values[t * stride + kvh * hd + i];
                part[tid] = acc + acc2;
            }
            Group.Barrier();
            if (tid < hd)
            {
                float acc = 0;
                for (int k = 0; k < parts; k++) acc += part[k * hd + tid];
                output[qb + tid] = acc / sum;
            }
        }
        else
            for (int i = tid; i < hd; i += n)
            {
                float acc = 0;
                for (int t = 0; t < positions; t++) acc += scores[sb + t] * values[t * stride + kvh * hd + i];
                output[qb + i] = acc / sum;
            }
    }

    // Decode attention (one query) split over chunks of C cached positions (flash-decoding): grid (head, chunk). A block
    // scores its chunk (a warp per position, q·scale from shared memory), takes the chunk's max m and Σ e^(s−m) = l, and
    // sums e·v with thread (part, 4 dims) over float4 value loads; one chunk is the whole answer (o / l). Longer contexts:
    // each active chunk writes (o, m, l) to part[(head·chunks + chunk)·(hd + 2)], and the head's last block to count itself
    // in done[head] (device fence, then an atomic) combines them in chunk order (deterministic) and resets the counter.
    // With r.Apply (RopeAttention): q is rotated at position p = pos[0] as it is loaded (as RopeStoreKernel rotates it),
    // and the blocks of the chunk holding p write this token's rotated k and its v into cache row p (the heads of one KV
    // head write the same values) and keep them in shared memory, where their own scoring and value sum read row p.
    // The latency chain after the programmatic wait is what a decode step pays here (a few µs on ≤ 1.6 MB of cache):
    // before the wait, every cache row older than this token's that the first round of scores and of Σ e·v reads (two
    // rows a warp, two a thread) and the rotary's cos / sin; after it, one round trip (q, k, v) and four barriers — each
    // warp takes the chunk's max and sum itself (no block reductions).
    private static void AttentionSplitKernel(ArrayView<float> q, ArrayView<float> keys, ArrayView<float> values, ArrayView<float> output,
                                             ArrayView<float> part, ArrayView<int> done, ArrayView<int> pos, AttentionDims d, int C, RopeViews r)
    {
        var sc = SharedMemory.Allocate<float>(256);
        var es = SharedMemory.Allocate<float>(256); // e^(s − m)
        var qs = SharedMemory.Allocate<float>(256);
        var ks = SharedMemory.Allocate<float>(256); // this token's rotated k and its v (r.Apply, the chunk holding it)
        var vs = SharedMemory.Allocate<float>(256);
        var ov = SharedMemory.Allocate<float>(4096); // [part][dim]: n / (hd / 4) parts × hd ≤ 4·n floats
        var wk = SharedMemory.Allocate<float>(65);
        var last = SharedMemory.Allocate<int>(1);
        int h = Grid.IdxX, c = Grid.IdxY, chunks = Grid.DimY;
        int positions = pos[0] + d.First + 1, active = (positions + C - 1) / C;
        if (c >= active) return;
        int tid = Group.IdxX, n = Group.DimX, W = Warp.WarpSize, nw = n / W, lane = Warp.LaneIdx, wi = Warp.WarpIdx;
        int hd = d.HeadDim, kvh = h / (d.Heads / d.KvHeads), stride = d.KvHeads * hd, qb = h * hd, kb = kvh * hd;
        int t0 = c * C, cnt = Math.Min(C, positions - t0);
        float scale = 1f / MathF.Sqrt(hd);
        // Before the wait (programmatic launch: overlapping the kernel before) only what earlier steps wrote: cache rows
        // older than this token's — this step's row is written by RopeStore or below — for the first round of scores (a
        // float4 per lane of rows wi and wi + nw) and of Σ e·v (thread (p, dq)'s rows p and p + parts), and the rotary's
        // cos / sin at this position (thread tid's first pair)
        int older = Math.Min(cnt, positions - 1 - t0), hd4 = hd / 4, half = hd / 2, tp = positions - 1;
        int quads = hd4, parts = n / quads, p = tid / quads, dq = tid % quads;
        var k4 = keys.Cast<F4>(); var v4 = values.Cast<F4>();
        bool kPre1 = wi < older && lane < hd4, kPre2 = wi + nw < older && lane < hd4;
        bool vPre1 = p < parts && p < older, vPre2 = p < parts && p + parts < older;
        F4 kFirst1 = kPre1 ? k4[((long)(t0 + wi) * stride + kb) / 4 + lane] : default;
        F4 kFirst2 = kPre2 ? k4[((long)(t0 + wi + nw) * stride + kb) / 4 + lane] : default;
        F4 vFirst1 = vPre1 ? v4[((long)(t0 + p) * stride + kb) / 4 + dq] : default;
        F4 vFirst2 = vPre2 ? v4[((long)(t0 + p + parts) * stride + kb) / 4 + dq] : default;
        bool rot = r.Apply != 0 && tid < half;
        float co0 = rot ? r.Cos[tp * half + tid] : 0f, si0 = rot ? r.Sin[tp * half + tid] : 0f;
        GridWait();
        // the chunk holding this token's row (local index cnt − 1) reads it from ks / vs when it wrote it itself
        bool writes = r.Apply != 0 && c == active - 1;
        int own = writes ? cnt - 1 : -1;
        if (r.Apply == 0)
            for (int i = tid; i < hd; i += n) qs[i] = q[qb + i] * scale;
        else
        {
            for (int i = tid; i < half; i += n)
            {
                int ia = r.Interleaved != 0 ? 2 * i : i, ib = r.Interleaved != 0 ? ia + 1 : i + half;
                float co = i == tid ? co0 : r.Cos[tp * half + i], si = i == tid ? si0 : r.Sin[tp * half + i];
                float a = q[qb + ia], b = q[qb + ib];
                qs[ia] = (a * co - b * si) * scale;
                qs[ib] = (b * co + a * si) * scale;
                if (writes)
                {
                    long row = (long)tp * stride + kb;
                    float ka = r.K[kb + ia], kc = r.K[kb + ib];
                    float ra = ka * co - kc * si, rb = kc * co + ka * si;
                    keys[row + ia] = ra; keys[row + ib] = rb;
                    ks[ia] = ra; ks[ib] = rb;
                }
            }
            if (writes)
                for (int i = tid; i < hd; i += n)
                {
                    float vv = r.V[kb + i];
                    values[(long)tp * stride + kb + i] = vv;
                    vs[i] = vv;
                }
        }
        Group.Barrier();
        // scores: warp per position, two positions per iteration (their key loads in flight together), a float4 of dims per
        // lane (the first round's from before the wait where it read them, this token's row from ks)
        for (int j = wi; j < cnt; j += 2 * nw)
        {
            int j2 = j + nw;
            long r1 = ((long)(t0 + j) * stride + kb) / 4, r2 = ((long)(t0 + Math.Min(j2, cnt - 1)) * stride + kb) / 4;
            bool first = j == wi;
            float s1 = 0, s2 = 0;
            for (int i = lane; i < hd4; i += W)
            {
                var a = j == own ? SharedF4(ks, i) : first && i == lane && kPre1 ? kFirst1 : k4[r1 + i];
                var b = j2 == own ? SharedF4(ks, i) : first && i == lane && kPre2 ? kFirst2 : k4[r2 + i];
                float q0 = qs[4 * i], q1 = qs[4 * i + 1], q2 = qs[4 * i + 2], q3 = qs[4 * i + 3];
                s1 += q0 * a.X + q1 * a.Y + q2 * a.Z + q3 * a.W;
                s2 += q0 * b.X + q1 * b.Y + q2 * b.Z + q3 * b.W;
            }
            s1 = WarpSum(s1); s2 = WarpSum(s2);
            if (lane == 0) { sc[j] = s1; if (j2 < cnt) sc[j2] = s2; }
        }
        Group.Barrier();
        // the chunk's max m by every warp from the scores (the same in each: no block reduction), e = e^(s−m) once a
        // position into es, then l = Σ e by every warp (lanes in order, the same xor butterfly: the same bits in each)
        float m = float.NegativeInfinity;
        for (int j = lane; j < cnt; j += W) m = Math.Max(m, sc[j]);
        m = WarpAllReduce(m, true);
        for (int j = tid; j < cnt; j += n) es[j] = Exp(sc[j] - m);
        Group.Barrier();
        float l = 0;
        for (int j = lane; j < cnt; j += W) l += es[j];
        l = WarpAllReduce(l, false);
        // Σ e·v: thread (p, dq) takes dims 4dq..4dq+3 of positions p, p + parts, ..., two an iteration (their value loads in
        // flight together; the first two from before the wait where it read them, this token's row from vs)
        if (p < parts)
        {
            float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
            for (int j = p; j < cnt; j += 2 * parts)
            {
                int j2 = j + parts;
                bool two = j2 < cnt, first = j == p;
                var v = j == own ? SharedF4(vs, dq) : first && vPre1 ? vFirst1 : v4[((long)(t0 + j) * stride + kb) / 4 + dq];
                var u = !two ? default : j2 == own ? SharedF4(vs, dq) : first && vPre2 ? vFirst2 : v4[((long)(t0 + j2) * stride + kb) / 4 + dq];
                float e = es[j], f = two ? es[j2] : 0f;
                a0 += e * v.X; a1 += e * v.Y; a2 += e * v.Z; a3 += e * v.W;
                a0 += f * u.X; a1 += f * u.Y; a2 += f * u.Z; a3 += f * u.W;
            }
            int o = p * hd + 4 * dq;
            ov[o] = a0; ov[o + 1] = a1; ov[o + 2] = a2; ov[o + 3] = a3;
        }
        Group.Barrier();
        // the chunk's o: the answer when it is the only one, else its partial result
        long pb = ((long)h * chunks + c) * (hd + 2);
        for (int i = tid; i < hd; i += n)
        {
            float o = 0;
            for (int k = 0; k < parts; k++) o += ov[k * hd + i];
            if (active == 1) output[qb + i] = o / l;
            else part[pb + i] = o;
        }
        if (active == 1) return;
        if (tid == 0) { part[pb + hd] = m; part[pb + hd + 1] = l; }
        MemoryFence.DeviceLevel();
        Group.Barrier();
        if (tid == 0) last[0] = Atomic.Add(ref done[h], 1) == active - 1 ? 1 : 0;
        Group.Barrier();
        if (last[0] == 0) return;
        MemoryFence.DeviceLevel();
        // the last block: weights e^(m_k − M) / Σ l_k·e^(m_k − M) per chunk, then the weighted sum of the chunks' o
        long hb = (long)h * chunks * (hd + 2);
        if (tid == 0)
        {
            float M = float.NegativeInfinity;
            for (int k = 0; k < active; k++) M = Math.Max(M, part[hb + k * (hd + 2) + hd]);
            float L = 0;
            for (int k = 0; k < active; k++) { float e = Exp(part[hb + k * (hd + 2) + hd] - M); wk[k] = e; L += e * part[hb + k * (hd + 2) + hd + 1]; }
            wk[64] = 1f / L;
            done[h] = 0; // for the next launch
        }
        Group.Barrier();
        for (int i = tid; i < hd; i += n)
        {
            float o = 0;
            for (int k = 0; k < active; k++) o += wk[k] * part[hb + k * (hd + 2) + i];
            output[qb + i] = o * wk[64];
        }
    }

    // floats 4i..4i+3 of a shared array as a float4
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static F4 SharedF4(ArrayView<float> a, int i) => new() { X = a[4 * i], Y = a[4 * i + 1], Z = a[4 * i + 2], W = a[4 * i + 3] };

    private static void SwiGluKernel(ArrayView<float> gate, ArrayView<float> up, int n)
    {
        int i = Grid.GlobalIndex.X;
        if (i >= n) return;
        gate[i] = SiluTimes(gate[i], up[i]);
    }

    // silu(g)·u = g/(1 + e^−g)·u: SwiGLU's element (also in the tensor-core matvec's fused prepare)
    private static float SiluTimes(float g, float u) => g / (1f + Exp(-g)) * u;

    private static void AddKernel(ArrayView<float> x, ArrayView<float> y, int n)
    {
        int i = Grid.GlobalIndex.X;
        if (i < n) x[i] += y[i];
    }
}

/// <summary>Attention shape (the number of cached positions is read from the device: pos + First + query + 1).</summary>
public struct AttentionDims
{
    /// <summary>First: the index of the first query within its batch (its position is pos[0] + First; a long batch is
    /// attended in query chunks that share one scores scratch).</summary>
    public int Heads, KvHeads, HeadDim, MaxContext, First;
}

/// <summary>The rotary and cache writes of the split decode attention (RopeAttention): tables (maxCtx, headDim/2), this
/// token's k and v (KV heads · headDim); Apply 0: none (q is already rotated, the cache already written).</summary>
public struct RopeViews
{
    public ArrayView<float> Cos, Sin, K, V;
    public int Apply, Interleaved;
}

/// <summary>Rotary shape: heads of q, KV heads of k and v, head dimension (all of it rotated), layout.</summary>
public struct RopeDims
{
    public int Heads, KvHeads, HeadDim, Interleaved;
}
