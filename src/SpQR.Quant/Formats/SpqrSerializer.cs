// SpqrLayer <-> safetensors tensors named "<linear>.spqr.<part>" (docs/formats/spqr.md). Reading validates every part
// before use: shapes consistent with (rows, cols, wbits, β2), stat codes in range, CSR offsets monotone and in bounds,
// outlier columns in range and ascending per row, the permutation a permutation, FP16 values finite.
using SpQR.Tensors;
using SpQR.Tensors.IO;

namespace SpQR.Quant.Formats;

public static class SpqrSerializer
{
    public const int FormatVersion = 2;

    public static List<(string Name, Tensor Tensor)> ToTensors(string linear, SpqrLayer l)
    {
        var list = new List<(string, Tensor)>
        {
            ($"{linear}.spqr.codes", Bytes(l.Codes.Span[..(l.Rows * l.RowBytes)], l.Rows, l.RowBytes)),
            ($"{linear}.spqr.perm", Ints(l.Perm)),
            ($"{linear}.spqr.outlier_row_offsets", Ints(l.OutlierRowOffsets)),
            ($"{linear}.spqr.outlier_cols", Copy(DType.U16, System.Runtime.InteropServices.MemoryMarshal.AsBytes(l.OutlierCols.AsSpan()), l.OutlierCols.Length)),
            ($"{linear}.spqr.outlier_values", Copy(DType.F16, System.Runtime.InteropServices.MemoryMarshal.AsBytes(l.OutlierValues.AsSpan()), l.OutlierValues.Length)),
            ($"{linear}.spqr.shape", Ints([l.Rows, l.Cols, l.WBits, l.QqGroupSize, l.ScaleBits, l.ZeroBits, l.Fp16Arithmetic ? 1 : 0])),
        };
        if (l.QuantizedStats)
        {
            list.Add(($"{linear}.spqr.stat_codes", Bytes(l.StatCodes!.Span[..(l.Rows * l.StatRowBytes)], l.Rows, l.StatRowBytes)));
            list.Add(($"{linear}.spqr.stats2", Copy(DType.F16, System.Runtime.InteropServices.MemoryMarshal.AsBytes(l.Stats2!.AsSpan()), l.RowGroups, l.Groups, 4)));
        }
        else list.Add(($"{linear}.spqr.stats", Copy(DType.F16, System.Runtime.InteropServices.MemoryMarshal.AsBytes(l.Stats!.AsSpan()), l.Rows, l.Groups, 2)));
        return list;
    }

    private static Tensor Bytes(ReadOnlySpan<byte> b, params long[] shape) => Copy(DType.U8, b, shape);
    private static Tensor Ints(int[] v) => Copy(DType.I32, System.Runtime.InteropServices.MemoryMarshal.AsBytes(v.AsSpan()), v.Length);

    private static unsafe Tensor Copy(DType dt, ReadOnlySpan<byte> bytes, params long[] shape)
    {
        var t = Tensor.Zeros(dt, shape);
        bytes.CopyTo(new Span<byte>(t.Pointer, (int)t.ByteLength));
        return t;
    }

    /// <summary>Reads and validates one layer; get(name) returns a tensor or null when absent; file names errors.</summary>
    public static SpqrLayer Read(string linear, Func<string, Tensor?> get, string file)
    {
        Tensor Need(string part, DType dt)
        {
            var t = get($"{linear}.spqr.{part}") ?? throw new ModelFormatException(file, $"tensor \"{linear}.spqr.{part}\"", "the SpQR part to be present", "none");
            if (t.DType != dt) throw new ModelFormatException(file, $"tensor \"{linear}.spqr.{part}\"", $"dtype {dt}", $"{t.DType}");
            return t;
        }
        void Check(bool ok, string part, string expected, object found) { if (!ok) throw new ModelFormatException(file, $"tensor \"{linear}.spqr.{part}\"", expected, $"{found}", "the compressed layer is corrupt"); }
        var shape = Need("shape", DType.I32).AsReadOnlySpan<int>().ToArray();
        if (shape.Length == 4)
            throw new ModelFormatException(file, $"tensor \"{linear}.spqr.shape\"", $"SpQR format version {FormatVersion} ([rows, cols, wbits, qq_groupsize, qs, qz, fp16_arithmetic])",
                                           "format version 1 (byte-aligned stat codes)", "re-quantize the model with this version");
        Check(shape.Length == 7, "shape", "[rows, cols, wbits, qq_groupsize, qs, qz, fp16_arithmetic]", shape.Length);
        int rows = shape[0], cols = shape[1], wbits = shape[2], b2 = shape[3], qs = shape[4], qz = shape[5];
        Check(shape[6] is 0 or 1 && (shape[6] == 0 || qs > 0), "shape", "fp16_arithmetic 0 or 1 (1 only with quantized statistics)", shape[6]);
        bool fp16 = shape[6] == 1;
        Check(rows > 0 && cols > 0 && cols <= 65536, "shape", "0 < rows, 0 < cols <= 65536", $"{rows}x{cols}");
        Check(wbits is >= 2 and <= 8, "shape", "wbits 2..8", wbits);
        Check(b2 > 0, "shape", "qq_groupsize > 0", b2);
        Check((qs == 0 && qz == 0) || (qs >= 1 && qz >= 1 && qs + qz <= 8), "shape", "qs = qz = 0 (FP16 statistics) or 1 <= qs, qz with qs + qz <= 8", $"qs {qs}, qz {qz}");
        int groups = (cols + SpqrLayer.GroupSize - 1) / SpqrLayer.GroupSize, rowGroups = (rows + b2 - 1) / b2;
        var codesT = Need("codes", DType.U8);
        Check(codesT.Shape == new Shape(rows, (long)groups * 2 * wbits), "codes", $"shape [{rows}, {groups * 2 * wbits}]", codesT.Shape);
        var codes = SpqrBytes.InPlaceOrCopy(codesT); // used in place from the mapped file (every bit pattern is a valid code)
        var perm = Need("perm", DType.I32).AsReadOnlySpan<int>().ToArray();
        Check(perm.Length == cols, "perm", $"{cols} entries", perm.Length);
        var seen = new bool[cols];
        foreach (int p in perm) { Check((uint)p < (uint)cols && !seen[p], "perm", "a permutation of 0..cols-1", p); seen[p] = true; }
        var off = Need("outlier_row_offsets", DType.I32).AsReadOnlySpan<int>().ToArray();
        Check(off.Length == rows + 1 && off[0] == 0, "outlier_row_offsets", $"{rows + 1} offsets starting at 0", off.Length);
        for (int r = 0; r < rows; r++) Check(off[r + 1] >= off[r], "outlier_row_offsets", "monotone offsets", $"{off[r]} then {off[r + 1]} at row {r}");
        var oc = Need("outlier_cols", DType.U16).AsReadOnlySpan<ushort>().ToArray();
        var ov = Need("outlier_values", DType.F16).AsReadOnlySpan<Half>().ToArray();
        Check(oc.Length == off[rows] && ov.Length == off[rows], "outlier_cols", $"{off[rows]} outliers (the last offset)", $"{oc.Length} columns, {ov.Length} values");
        for (int r = 0; r < rows; r++)
            for (int i = off[r]; i < off[r + 1]; i++)
            {
                Check(oc[i] < cols && (i == off[r] || oc[i] > oc[i - 1]), "outlier_cols", "columns below cols, ascending within a row", oc[i]);
                Check(Half.IsFinite(ov[i]), "outlier_values", "finite values", ov[i]);
            }
        var statCodes = get($"{linear}.spqr.stat_codes");
        if (qs > 0)
        {
            int statRow = (groups * (qs + qz) + 7) / 8;
            Check(statCodes is not null, "stat_codes", "the SpQR part to be present (qs, qz > 0)", "none");
            Check(statCodes!.DType == DType.U8 && statCodes.Shape == new Shape(rows, statRow), "stat_codes", $"U8 [{rows}, {statRow}]", $"{statCodes.DType} {statCodes.Shape}");
            var sc = SpqrBytes.InPlaceOrCopy(statCodes); // in place too: every F-bit field is a valid (scale, zero) code pair
            var s2 = Need("stats2", DType.F16);
            Check(s2.Shape == new Shape(rowGroups, groups, 4), "stats2", $"shape [{rowGroups}, {groups}, 4]", s2.Shape);
            var s2v = s2.AsReadOnlySpan<Half>().ToArray();
            foreach (var h in s2v) Check(Half.IsFinite(h), "stats2", "finite statistics", h);
            return new SpqrLayer
            {
                Rows = rows, Cols = cols, WBits = wbits, QqGroupSize = b2, QuantizedStats = true, ScaleBits = qs, ZeroBits = qz, Fp16Arithmetic = fp16, Codes = codes, StatCodes = sc,
                Stats2 = s2v, Perm = perm, OutlierRowOffsets = off, OutlierCols = oc, OutlierValues = ov,
            };
        }
        Check(statCodes is null, "stat_codes", "no stat codes with FP16 statistics (qs = qz = 0)", "a stat_codes tensor");
        var st = Need("stats", DType.F16);
        Check(st.Shape == new Shape(rows, groups, 2), "stats", $"shape [{rows}, {groups}, 2]", st.Shape);
        var stv = st.AsReadOnlySpan<Half>().ToArray();
        foreach (var h in stv) Check(Half.IsFinite(h), "stats", "finite statistics", h);
        return new SpqrLayer
        {
            Rows = rows, Cols = cols, WBits = wbits, QqGroupSize = b2, QuantizedStats = false, Codes = codes, Stats = stv, Perm = perm,
            OutlierRowOffsets = off, OutlierCols = oc, OutlierValues = ov,
        };
    }
}
