// The stored form of one SpQR-quantized linear layer W (rows = out_features, cols = in_features), as the decode
// kernels read it. Columns are in permuted order; groups of β1 columns; row groups of β2 rows.
//
//   codes      U8  [rows, groups · 2·wbits]   per row, per group: 16 codes × wbits bits, LSB-first; a group is two
//                                              half-words of 8 codes (8·wbits bits = wbits bytes each), so 8 codes
//                                              sit in one little-endian 32-bit load for wbits ≤ 4. β1 must be 16.
//                                              Ragged last group: codes past cols are 0.
//   stat_codes U8  [rows, ⌈groups·F/8⌉]      qq codes, F = qs + qz bits per group, LSB-first: group g's field at
//                                              bit g·F of its row = scale code (low qs bits) | zero code << qs  (qq on)
//   stats2     F16 [rowGroups, groups, 4]     (scale, zero) of the scale codes, (scale, zero) of the zero codes
//   stats      F16 [rows, groups, 2]          first-order (scale, zero) as FP16                           (qq off)
//   perm       I32 [cols]                     permuted column c is original column perm[c]
//   outlier_row_offsets I32 [rows + 1]        CSR: outliers of row r are entries [off[r], off[r+1])
//   outlier_cols        U16 [n]               permuted column, ascending within a row
//   outlier_values      F16 [n]               the kept weight
//
// Reconstruction, row r, permuted column c, g = c / 16:
//   s = ss·(scale_code − sz),  z = zs·(zero_code − zz)          (qq; second-order stats of (r / β2, g))
//   ŵ[r, perm[c]] = outlier value if (r, c) is an outlier, else s·(code − z)
// Bits per weight (the paper's accounting): wbits + (qs + qz)/β1 + 64/(β1·β2) + 32 · outlier share; stored bytes add
// only the CSR row offsets (32 bits per row), the permutation (32 bits per column) and each row's stat-code padding
// to a whole byte.
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using SpQR.Quant.Encode;

namespace SpQR.Quant.Formats;

public sealed class SpqrLayer
{
    public const int GroupSize = 16;
    public int Rows { get; init; }
    public int Cols { get; init; }
    public int WBits { get; init; }
    public int QqGroupSize { get; init; }
    public bool QuantizedStats { get; init; }
    /// <summary>qs and qz, the widths of the scale and zero codes (0 with FP16 statistics).</summary>
    public int ScaleBits { get; init; }
    public int ZeroBits { get; init; }
    public int StatBits => ScaleBits + ZeroBits;
    /// <summary>
    /// Decode in fp16 steps, s = h(ss·h(sc − sz)), z = h(zs·h(zc − zz)), ŵ = h(s·h(q − z)) with h = round to fp16, as the
    /// SpQR authors' kernels do (layers converted from their export); otherwise every step is float32.
    /// </summary>
    public bool Fp16Arithmetic { get; init; }
    public int StatRowBytes => (Groups * StatBits + 7) / 8;
    public int Groups => (Cols + GroupSize - 1) / GroupSize;
    public int RowGroups => (Rows + QqGroupSize - 1) / QqGroupSize;
    public int GroupBytes => 2 * WBits;
    public int RowBytes => Groups * GroupBytes;

    public required SpqrBytes Codes { get; init; }       // (rows, RowBytes) + padding for unaligned loads (in place when mapped)
    public SpqrBytes? StatCodes { get; init; }           // (rows, StatRowBytes) + padding for 64-bit loads (in place when mapped)
    public Half[]? Stats2 { get; init; }                 // (rowGroups, groups, 4)
    public Half[]? Stats { get; init; }                  // (rows, groups, 2)
    public required int[] Perm { get; init; }            // (cols,)
    public required int[] OutlierRowOffsets { get; init; } // (rows + 1,)
    public required ushort[] OutlierCols { get; init; }  // (n,)
    public required Half[] OutlierValues { get; init; }  // (n,)

    public long OutlierCount => OutlierCols.Length;

    private float[]? _ss, _sz, _zs, _zz, _statsF;
    /// <summary>Stats2 widened to float once and split into four (rowGroups, groups) planes for vector decoding.</summary>
    private void EnsurePlanes()
    {
        if (_ss is not null) return;
        long n = (long)RowGroups * Groups;
        var ss = new float[n]; var sz = new float[n]; var zs = new float[n]; var zz = new float[n];
        for (long i = 0; i < n; i++) { ss[i] = (float)Stats2![i * 4]; sz[i] = (float)Stats2[i * 4 + 1]; zs[i] = (float)Stats2[i * 4 + 2]; zz[i] = (float)Stats2[i * 4 + 3]; }
        (_sz, _zs, _zz) = (sz, zs, zz);
        _ss = ss;
    }
    // s = ss·(scale code − sz), z = zs·(zero code − zz), second-order statistics at plane index i
    private (float Scale, float Zero) DequantStat(int field, long i) => Fp16Arithmetic
        ? (H(_ss![i] * H((field & ((1 << ScaleBits) - 1)) - _sz![i])), H(_zs![i] * H((field >> ScaleBits) - _zz![i])))
        : (_ss![i] * ((field & ((1 << ScaleBits) - 1)) - _sz![i]), _zs![i] * ((field >> ScaleBits) - _zz![i]));

    /// <summary>x rounded to the nearest fp16 value (ties to even), as a float.</summary>
    internal static float H(float x) => (float)(Half)x;

    /// <summary>The value code q decodes to in a group with first-order (s, z): s·(q − z), in fp16 steps when so stored.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public float Decode(int q, float s, float z) => Fp16Arithmetic ? H(s * H(q - z)) : s * (q - z);

    /// <summary>Vector twin of <see cref="H"/> for finite inputs: normal results keep 10 significand bits (round to nearest
    /// even on the bit pattern), fp16-subnormal ones become multiples of 2^−24, overflow becomes ±∞.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> H(Vector256<float> v)
    {
        var b = v.AsInt32();
        var normal = ((b + Vector256.Create(0x0FFF) + ((b >>> 13) & Vector256<int>.One)) & Vector256.Create(~0x1FFF)).AsSingle();
        var sub = (v + Vector256.Create(0.75f)) - Vector256.Create(0.75f);
        var abs = Vector256.Abs(v);
        var r = Vector256.ConditionalSelect(Vector256.LessThan(abs, Vector256.Create(1f / 16384)), sub, normal);
        // past the largest fp16 (65504) plus half an ulp: infinity of the same sign
        return Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(abs, Vector256.Create(65520f)), (b & Vector256.Create(int.MinValue) | Vector256.Create(0x7F800000)).AsSingle(), r);
    }

    /// <summary>The F-bit stat field (scale code | zero code &lt;&lt; qs) of (row r, group g).</summary>
    internal int StatField(int r, int g)
    {
        long bit = (long)r * StatRowBytes * 8 + (long)g * StatBits;
        int v = StatCodes![bit / 8] | (StatCodes[bit / 8 + 1] << 8);
        return (v >> (int)(bit % 8)) & ((1 << StatBits) - 1);
    }

    /// <summary>The stat fields of 8 consecutive groups starting at byte p (8·F bits): fields 0-3 sit in the low 32 bits,
    /// fields 4-7 in the next 4F; shifts = (0, F, 2F, 3F, 0, F, 2F, 3F), mask = 2^F − 1 (hoisted by the callers).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector256<int> StatFields8(byte* p, int f, Vector256<uint> shifts, Vector256<uint> mask)
    {
        ulong u = *(ulong*)p;
        var lanes = Vector256.Create(Vector128.Create((uint)u), Vector128.Create((uint)(u >> (4 * f))));
        return (Avx2.ShiftRightLogicalVariable(lanes, shifts) & mask).AsInt32();
    }

    private Vector256<uint> StatShifts => Vector256.Create(0u, (uint)StatBits, (uint)(2 * StatBits), (uint)(3 * StatBits), 0u, (uint)StatBits, (uint)(2 * StatBits), (uint)(3 * StatBits));

    internal float[] StatsF => _statsF ??= Stats!.Select(h => (float)h).ToArray();

    private float[]? _outlierDeltas;
    /// <summary>Per outlier: kept value − what its code decodes to; the fused kernels add delta·x' (computed once).</summary>
    public float[] OutlierDeltas
    {
        get
        {
            if (_outlierDeltas is not null) return _outlierDeltas;
            var d = new float[OutlierCols.Length];
            for (int r = 0; r < Rows; r++)
                for (int i = OutlierRowOffsets[r]; i < OutlierRowOffsets[r + 1]; i++)
                {
                    int c = OutlierCols[i];
                    var (s, z) = Stat(r, c / GroupSize);
                    d[i] = (float)OutlierValues[i] - Decode(Code(r, c), s, z);
                }
            return _outlierDeltas = d;
        }
    }

    /// <summary>Row r's first-order scales and zeros for every group: s (groups,), z (groups,).</summary>
    internal unsafe void RowStats(int r, Span<float> s, Span<float> z)
    {
        if (s.Length < Groups || z.Length < Groups) throw new ArgumentException($"RowStats: need {Groups} scales and zeros");
        fixed (float* ps = s, pz = z) DecodeRowStats(r, ps, pz, null);
    }

    /// <summary>
    /// Row r's scales s and zeros z (groups,) and its zero-point correction Σ_g s_g·z_g·xsum_g in one pass (the
    /// matvec's per-row setup).
    /// </summary>
    internal unsafe float RowScalesAndCorrection(int r, float* s, float* z, float* xsum) => DecodeRowStats(r, s, z, xsum);

    // The one decoder of a row's statistics: the same float operations as Stat (fp16 steps when so stored), 8 groups
    // per step with AVX2 (unpack the F-bit fields, split scale and zero codes, dequantize with the row group's planes);
    // with xsum it also returns Σ s·z·xsum.
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private unsafe float DecodeRowStats(int r, float* s, float* z, float* xsum)
    {
        int groups = Groups, g0 = 0;
        float corr = 0;
        if (!QuantizedStats)
        {
            fixed (float* f = StatsF)
            {
                float* p = f + (long)r * groups * 2;
                for (int g = 0; g < groups; g++) { s[g] = p[2 * g]; z[g] = p[2 * g + 1]; }
            }
        }
        else
        {
            EnsurePlanes();
            long b2 = (long)(r / QqGroupSize) * groups;
            byte* codes = StatCodes!.Pointer;
            fixed (float* pss = _ss, psz = _sz, pzs = _zs, pzz = _zz)
            {
                float* ss = pss + b2, sz = psz + b2, zs = pzs + b2, zz = pzz + b2;
                if (Avx2.IsSupported)
                {
                    byte* c = codes + (long)r * StatRowBytes;
                    var shifts = StatShifts;
                    g0 = groups & ~7;
                    corr = Fp16Arithmetic ? StatsRowV256<Fp16Round>(c, g0, StatBits, ScaleBits, ss, sz, zs, zz, s, z, xsum, shifts)
                                          : StatsRowV256<NoRound>(c, g0, StatBits, ScaleBits, ss, sz, zs, zz, s, z, xsum, shifts);
                }
                for (int g = g0; g < groups; g++) (s[g], z[g]) = DequantStat(StatField(r, g), b2 + g);
            }
        }
        if (xsum != null) for (int g = g0; g < groups; g++) corr += s[g] * z[g] * xsum[g];
        return corr;
    }

    private interface IRound { static abstract Vector256<float> R(Vector256<float> v); }
    private struct NoRound : IRound { public static Vector256<float> R(Vector256<float> v) => v; }
    private struct Fp16Round : IRound { public static Vector256<float> R(Vector256<float> v) => H(v); }

    // groups [0, n) (n a multiple of 8) of one row: s = R(ss·R(sc − sz)), z = R(zs·R(zc − zz)); returns Σ s·z·xsum when
    // xsum is given. A static loop with every pointer a parameter, so the JIT keeps them all in registers.
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static unsafe float StatsRowV256<TR>(byte* c, int n, int fb, int qs, float* ss, float* sz, float* zs, float* zz,
                                                 float* s, float* z, float* xsum, Vector256<uint> shifts) where TR : struct, IRound
    {
        var sm = Vector256.Create((1 << qs) - 1);
        var fm = Vector256.Create((1u << fb) - 1);
        var cv = Vector256<float>.Zero;
        for (int g = 0; g < n; g += 8, c += fb)
        {
            var f = StatFields8(c, fb, shifts, fm);
            var sv = TR.R(Vector256.Load(ss + g) * TR.R(Vector256.ConvertToSingle(f & sm) - Vector256.Load(sz + g)));
            var zv = TR.R(Vector256.Load(zs + g) * TR.R(Vector256.ConvertToSingle(f >>> qs) - Vector256.Load(zz + g)));
            sv.Store(s + g);
            zv.Store(z + g);
            if (xsum != null) cv = Vector256.FusedMultiplyAdd(sv * zv, Vector256.Load(xsum + g), cv);
        }
        return Vector256.Sum(cv);
    }

    /// <summary>Bytes of the stored form (codes, statistics, outliers, permutation).</summary>
    public long StoredBytes => (long)Rows * RowBytes + (QuantizedStats ? (long)Rows * StatRowBytes : 0) + 2L * (Stats2?.Length ?? 0) + 2L * (Stats?.Length ?? 0)
                               + 4L * Perm.Length + 4L * OutlierRowOffsets.Length + 4L * OutlierCols.Length;

    /// <summary>First-order (scale, zero) of (row r, group g), exactly as the encoder used them.</summary>
    public (float Scale, float Zero) Stat(int r, int g)
    {
        if (!QuantizedStats) return (StatsF[((long)r * Groups + g) * 2], StatsF[((long)r * Groups + g) * 2 + 1]);
        EnsurePlanes();
        return DequantStat(StatField(r, g), r / QqGroupSize * Groups + g);
    }

    public int Code(int r, int c)
    {
        int g = c / GroupSize, k = c % GroupSize;
        long bit = ((long)r * RowBytes + (long)g * GroupBytes) * 8 + (k < 8 ? k * WBits : WBits * 8 + (k - 8) * WBits);
        int v = Codes[bit / 8] | (Codes[bit / 8 + 1] << 8);
        return (v >> (int)(bit % 8)) & ((1 << WBits) - 1);
    }

    /// <summary>Packs an encoder result (β1 = 16, qq bits ≤ 4 or FP16 statistics, StorageExact).</summary>
    public static SpqrLayer Pack(SpqrLayerResult q)
    {
        var o = q.Options;
        if (o.GroupSize != GroupSize) throw new NotSupportedException($"the SpQR format stores groups of {GroupSize} columns; got groupsize {o.GroupSize}");
        if (!o.StorageExact) throw new ArgumentException("pack results encoded with StorageExact: the format stores FP16 statistics and outliers");
        if ((o.QqScaleBits is null) != (o.QqZeroBits is null)) throw new NotSupportedException("quantize both scales and zeros, or neither");
        if (o.QqScaleBits + o.QqZeroBits > 8) throw new NotSupportedException($"the stat field holds at most 8 bits; got qq_scale_bits {o.QqScaleBits} + qq_zero_bits {o.QqZeroBits}");
        if (o.RoundZero && o.QqZeroBits is not null && o.QqZeroBits >= o.WBits) throw new NotSupportedException("round_zero with unquantized integer zeros is not stored");
        if (q.Cols > 65536) throw new NotSupportedException($"outlier columns are 16-bit; {q.Cols} input features is too many");
        int rows = q.Rows, cols = q.Cols, groups = q.Groups;
        bool qq = o.QqScaleBits is not null;
        var layer = new SpqrLayer
        {
            Rows = rows, Cols = cols, WBits = o.WBits, QqGroupSize = o.QqGroupSize, QuantizedStats = qq, ScaleBits = o.QqScaleBits ?? 0, ZeroBits = o.QqZeroBits ?? 0,
            Codes = new byte[(long)rows * groups * 2 * o.WBits + SpqrBytes.Padding],
            StatCodes = qq ? new SpqrBytes(new byte[(long)rows * ((groups * (o.QqScaleBits!.Value + o.QqZeroBits!.Value) + 7) / 8) + SpqrBytes.Padding]) : null,
            Stats2 = qq ? new Half[(long)q.RowGroups * groups * 4] : null,
            Stats = qq ? null : new Half[(long)rows * groups * 2],
            Perm = (int[])q.Permutation.Clone(),
            OutlierRowOffsets = new int[rows + 1],
            OutlierCols = q.OutlierCols.Select(c => (ushort)c).ToArray(),
            OutlierValues = q.OutlierValues.Select(v => (Half)v).ToArray(),
        };
        int rowBytes = layer.RowBytes;
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
            {
                int g = c / GroupSize, k = c % GroupSize;
                long bit = ((long)r * rowBytes + (long)g * layer.GroupBytes) * 8 + (k < 8 ? k * o.WBits : o.WBits * 8 + (k - 8) * o.WBits);
                int v = q.Codes[(long)r * cols + c] << (int)(bit % 8);
                layer.Codes[bit / 8] |= (byte)v; layer.Codes[bit / 8 + 1] |= (byte)(v >> 8);
            }
        for (int g = 0; g < groups; g++)
            for (int r = 0; r < rows; r++)
            {
                long at = (long)g * rows + r;
                if (qq) layer.SetStatField(r, g, q.ScaleCodes![at] | (q.ZeroCodes![at] << layer.ScaleBits));
                else { layer.Stats![((long)r * groups + g) * 2] = (Half)q.Scale[at]; layer.Stats[((long)r * groups + g) * 2 + 1] = (Half)q.Zero[at]; }
            }
        if (qq)
            for (int g = 0; g < groups; g++)
                for (int rg = 0; rg < q.RowGroups; rg++)
                {
                    long src = (long)g * q.RowGroups + rg, dst = ((long)rg * groups + g) * 4;
                    layer.Stats2![dst] = (Half)q.ScaleStatScale![src]; layer.Stats2[dst + 1] = (Half)q.ScaleStatZero![src];
                    layer.Stats2[dst + 2] = (Half)q.ZeroStatScale![src]; layer.Stats2[dst + 3] = (Half)q.ZeroStatZero![src];
                }
        foreach (int r in q.OutlierRows) layer.OutlierRowOffsets[r + 1]++;
        for (int r = 0; r < rows; r++) layer.OutlierRowOffsets[r + 1] += layer.OutlierRowOffsets[r];
        return layer;
    }

    private void SetStatField(int r, int g, int field)
    {
        long bit = (long)r * StatRowBytes * 8 + (long)g * StatBits;
        int v = field << (int)(bit % 8);
        StatCodes![bit / 8] |= (byte)v; StatCodes[bit / 8 + 1] |= (byte)(v >> 8);
    }

    /// <summary>Scalar reference: Ŵ (rows, cols) in the original column order.</summary>
    public float[] Dequantize()
    {
        var w = new float[(long)Rows * Cols];
        for (int r = 0; r < Rows; r++)
        {
            for (int c = 0; c < Cols; c++)
            {
                var (s, z) = Stat(r, c / GroupSize);
                w[(long)r * Cols + Perm[c]] = Decode(Code(r, c), s, z);
            }
            for (int i = OutlierRowOffsets[r]; i < OutlierRowOffsets[r + 1]; i++) w[(long)r * Cols + Perm[OutlierCols[i]]] = (float)OutlierValues[i];
        }
        return w;
    }

    /// <summary>A layer with uniformly random codes and statistics and a uniform random outlier set (speed tests).</summary>
    public static SpqrLayer Random(int rows, int cols, int wbits, double outlierShare, int seed = 1, bool integerValued = false, bool fp16Arithmetic = false)
    {
        var r = new System.Random(seed);
        int groups = (cols + 15) / 16, b2 = 16, rowGroups = (rows + b2 - 1) / b2;
        var codes = new byte[(long)rows * groups * 2 * wbits + 4];
        r.NextBytes(codes.AsSpan(0, codes.Length - 4));
        var statCodes = new byte[(long)rows * ((groups * 6 + 7) / 8) + 8];
        r.NextBytes(statCodes.AsSpan(0, statCodes.Length - 8)); // 3-bit scale and zero codes: any bit pattern is valid
        var stats2 = new Half[(long)rowGroups * groups * 4];
        // integerValued: s = scale code, z = zero code and outliers whole numbers, so every product and sum is exact
        for (long i = 0; i < stats2.Length; i += 4) { stats2[i] = (Half)(integerValued ? 1f : 0.001f); stats2[i + 1] = (Half)(integerValued ? 0f : -1f); stats2[i + 2] = (Half)1f; stats2[i + 3] = (Half)0f; }
        var perm = Enumerable.Range(0, cols).OrderBy(_ => r.Next()).ToArray();
        var offsets = new int[rows + 1]; var ocols = new List<ushort>(); var ovals = new List<Half>();
        for (int row = 0; row < rows; row++)
        {
            var cs = new SortedSet<int>();
            int n = (int)Math.Round(cols * outlierShare);
            while (cs.Count < n) cs.Add(r.Next(cols));
            foreach (int c in cs) { ocols.Add((ushort)c); ovals.Add(integerValued ? (Half)r.Next(-20, 21) : (Half)(r.NextDouble() - 0.5)); }
            offsets[row + 1] = ocols.Count;
        }
        return new SpqrLayer
        {
            Rows = rows, Cols = cols, WBits = wbits, QqGroupSize = b2, QuantizedStats = true, ScaleBits = 3, ZeroBits = 3, Fp16Arithmetic = fp16Arithmetic, Codes = codes, StatCodes = statCodes, Stats2 = stats2,
            Perm = perm, OutlierRowOffsets = offsets, OutlierCols = [.. ocols], OutlierValues = [.. ovals],
        };
    }
}
