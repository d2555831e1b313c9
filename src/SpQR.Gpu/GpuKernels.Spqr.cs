// SpQR matvec y = Ŵ·x on the device, over the same bytes as the CPU format (docs/formats/spqr.md), uploaded once
// (GpuSpqrLayer). Two launches per call: a gather x' = x[perm] (zero past cols), then one warp per row, each lane
// taking whole groups of 16 (lane, lane + 32, …): it reads its group's 2·b code bytes and its F-bit stat field,
// dequantizes (s, z) from the row group's second-order planes (float32 or fp16 steps, as the layer says), adds
// s·(Σ q·x' − z·Σ x'), the warp adds the row's CSR outlier deltas and reduces with shuffles. Mirrors
// src/SpQR.Quant/Decode/SpqrMatVec.Cpu.cs (same algebra, float32 accumulation).
using ILGPU;
using ILGPU.Runtime;
using SpQR.Quant.Formats;

namespace SpQR.Gpu;

/// <summary>Scalar shape of a device SpQR layer (one kernel argument).</summary>
public struct SpqrDims
{
    public int Rows, Cols, Groups, WBits, RowBytes, StatRowBytes, StatBits, ScaleBits, QqGroupSize, Fp16;
}

/// <summary>A SpQR layer resident on the device: the stored bytes plus the widened second-order planes and outlier deltas.</summary>
public sealed class GpuSpqrLayer : IDisposable
{
    public SpqrDims Dims;
    public MemoryBuffer1D<byte, Stride1D.Dense> Codes { get; }
    public MemoryBuffer1D<byte, Stride1D.Dense> StatCodes { get; }
    /// <summary>ss, sz, zs, zz planes (rowGroups, groups) each, float32, concatenated.</summary>
    public MemoryBuffer1D<float, Stride1D.Dense> Planes { get; }
    public MemoryBuffer1D<int, Stride1D.Dense> Perm { get; }
    public MemoryBuffer1D<int, Stride1D.Dense> OutlierRowOffsets { get; }
    public MemoryBuffer1D<ushort, Stride1D.Dense> OutlierCols { get; }
    public MemoryBuffer1D<float, Stride1D.Dense> OutlierDeltas { get; }
    /// <summary>Device bytes a matvec reads (codes, stat codes, planes, CSR, permutation).</summary>
    public long Bytes { get; }

    public GpuSpqrLayer(Accelerator acc, SpqrLayer l)
    {
        if (!l.QuantizedStats) throw new NotSupportedException("the GPU SpQR kernel needs quantized (qq) statistics");
        Dims = new SpqrDims
        {
            Rows = l.Rows, Cols = l.Cols, Groups = l.Groups, WBits = l.WBits, RowBytes = l.RowBytes, StatRowBytes = l.StatRowBytes,
            StatBits = l.StatBits, ScaleBits = l.ScaleBits, QqGroupSize = l.QqGroupSize, Fp16 = l.Fp16Arithmetic ? 1 : 0,
        };
        long n = (long)l.RowGroups * l.Groups;
        var planes = new float[4 * n];
        for (long i = 0; i < n; i++)
        {
            planes[i] = (float)l.Stats2![i * 4]; planes[n + i] = (float)l.Stats2[i * 4 + 1];
            planes[2 * n + i] = (float)l.Stats2[i * 4 + 2]; planes[3 * n + i] = (float)l.Stats2[i * 4 + 3];
        }
        Codes = acc.Allocate1D(l.Codes);
        StatCodes = acc.Allocate1D(l.StatCodes!);
        Planes = acc.Allocate1D(planes);
        Perm = acc.Allocate1D(l.Perm);
        OutlierRowOffsets = acc.Allocate1D(l.OutlierRowOffsets);
        OutlierCols = acc.Allocate1D(l.OutlierCols.Length == 0 ? new ushort[1] : l.OutlierCols);
        OutlierDeltas = acc.Allocate1D(l.OutlierDeltas.Length == 0 ? new float[1] : l.OutlierDeltas);
        Bytes = Codes.LengthInBytes + StatCodes.LengthInBytes + Planes.LengthInBytes + Perm.LengthInBytes + OutlierRowOffsets.LengthInBytes
                + OutlierCols.LengthInBytes + OutlierDeltas.LengthInBytes;
    }

    public void Dispose()
    {
        Codes.Dispose(); StatCodes.Dispose(); Planes.Dispose(); Perm.Dispose();
        OutlierRowOffsets.Dispose(); OutlierCols.Dispose(); OutlierDeltas.Dispose();
    }
}

public sealed partial class GpuKernels
{
    private Action<KernelConfig, ArrayView<float>, ArrayView<int>, ArrayView<float>, int, int>? _gather;
    private Action<KernelConfig, ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<int>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, ArrayView<float>, SpqrDims>? _spqrMatVec;

    /// <summary>y (rows,) = Ŵ·x (cols,); xp is a device scratch of ≥ Groups·16 floats (x gathered through the permutation).</summary>
    public void SpqrMatVec(GpuSpqrLayer w, ArrayView<float> x, ArrayView<float> xp, ArrayView<float> y)
    {
        var d = w.Dims;
        if (xp.Length < (long)d.Groups * 16) throw new ArgumentException($"scratch x' holds {xp.Length} floats, need {d.Groups * 16}");
        _gather ??= _acc.LoadStreamKernel<ArrayView<float>, ArrayView<int>, ArrayView<float>, int, int>(GatherKernel);
        _spqrMatVec ??= _acc.LoadStreamKernel<ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<int>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, ArrayView<float>, SpqrDims>(SpqrMatVecKernel);
        int padded = d.Groups * 16;
        int block = Math.Min(256, _acc.MaxNumThreadsPerGroup);
        _gather(new KernelConfig((padded + block - 1) / block, block), x, w.Perm.View, xp, d.Cols, padded);
        _spqrMatVec(RowsConfig(d.Rows, out _), w.Codes.View, w.StatCodes.View, w.Planes.View, w.OutlierRowOffsets.View, w.OutlierCols.View,
                    w.OutlierDeltas.View, xp, y, d);
    }

    private static void GatherKernel(ArrayView<float> x, ArrayView<int> perm, ArrayView<float> xp, int cols, int padded)
    {
        int c = Grid.GlobalIndex.X;
        if (c < cols) xp[c] = x[perm[c]];
        else if (c < padded) xp[c] = 0;
    }

    // round to the nearest fp16 value (ties to even), as a float: SpqrLayer.H on the device (finite inputs)
    private static float H(float v)
    {
        int b = (int)Interop.FloatAsInt(v);
        int a = b & 0x7FFFFFFF;
        if (a < 0x38800000) return (v + 0.75f) - 0.75f;                  // |v| < 2^-14: multiples of 2^-24
        if (a >= 0x477FF000) return Interop.IntAsFloat((uint)((b & int.MinValue) | 0x7F800000)); // ≥ 65520: ±inf
        return Interop.IntAsFloat((uint)((b + 0x0FFF + ((b >> 13) & 1)) & ~0x1FFF));
    }

    // b-bit code k (0..7) of a half-group whose 8·b bits start at byte p
    private static int HalfCode(ArrayView<byte> codes, long p, int b, int k)
    {
        int bit = b * k, byte0 = bit >> 3, sh = bit & 7;
        int v = codes[p + byte0] | (codes[p + byte0 + 1] << 8); // b ≤ 8 and sh ≤ 7: two bytes hold the code
        return (v >> sh) & ((1 << b) - 1);
    }

    private static void SpqrMatVecKernel(ArrayView<byte> codes, ArrayView<byte> statCodes, ArrayView<float> planes, ArrayView<int> offsets,
                                         ArrayView<ushort> ocols, ArrayView<float> deltas, ArrayView<float> xp, ArrayView<float> y, SpqrDims d)
    {
        int r = RowIndex();
        if (r >= d.Rows) return;
        int b = d.WBits, groups = d.Groups;
        long n = (long)((d.Rows + d.QqGroupSize - 1) / d.QqGroupSize) * groups, pg = (long)(r / d.QqGroupSize) * groups;
        long rowCodes = (long)r * d.RowBytes, rowStats = (long)r * d.StatRowBytes * 8;
        int fmask = (1 << d.StatBits) - 1, smask = (1 << d.ScaleBits) - 1;
        float acc = 0;
        for (int g = Warp.LaneIdx; g < groups; g += Warp.WarpSize)
        {
            long bit = rowStats + (long)g * d.StatBits;
            int sv = statCodes[bit >> 3] | (statCodes[(bit >> 3) + 1] << 8);
            int f = (sv >> (int)(bit & 7)) & fmask;
            long i = pg + g;
            float s, z;
            if (d.Fp16 != 0)
            {
                s = H(planes[i] * H((f & smask) - planes[n + i]));
                z = H(planes[2 * n + i] * H((f >> d.ScaleBits) - planes[3 * n + i]));
            }
            else
            {
                s = planes[i] * ((f & smask) - planes[n + i]);
                z = planes[2 * n + i] * ((f >> d.ScaleBits) - planes[3 * n + i]);
            }
            long p = rowCodes + (long)g * 2 * b;
            int x0 = g * 16;
            if (d.Fp16 != 0)
            {
                for (int k = 0; k < 16; k++) acc += H(s * H(HalfCode(codes, p + (k >> 3) * b, b, k & 7) - z)) * xp[x0 + k];
                continue;
            }
            float dot = 0, xs = 0;
            if (b <= 4)
            {
                // each half-group's 8·b ≤ 32 bits in one word assembled from b bytes
                for (int h = 0; h < 2; h++)
                {
                    long q0 = p + h * b;
                    uint word = codes[q0];
                    for (int j = 1; j < b; j++) word |= (uint)codes[q0 + j] << (8 * j);
                    for (int k = 0; k < 8; k++)
                    {
                        float xv = xp[x0 + 8 * h + k];
                        dot += (int)((word >> (b * k)) & (uint)((1 << b) - 1)) * xv;
                        xs += xv;
                    }
                }
            }
            else
            {
                for (int k = 0; k < 16; k++)
                {
                    float xv = xp[x0 + k];
                    dot += HalfCode(codes, p + (k >> 3) * b, b, k & 7) * xv;
                    xs += xv;
                }
            }
            acc += s * (dot - z * xs);
        }
        for (int i = offsets[r] + Warp.LaneIdx; i < offsets[r + 1]; i += Warp.WarpSize) acc += deltas[i] * xp[(int)ocols[i]];
        acc = WarpSum(acc);
        if (Warp.IsFirstLane) y[r] = acc;
    }
}
