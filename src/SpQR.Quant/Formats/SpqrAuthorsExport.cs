// The SpQR authors' Hugging Face export (Vahe1994/SpQR convert_to_hf.py; layout in
// ../shared/fixtures/spqr-reference-export/llama-tiny-w3/FIXTURE.md), read, validated and converted to our format.
// Per quantized linear <name> with m outputs and n inputs (both multiples of 16), tiles of 16 rows x 16 columns:
//
//   <name>.dense_weights I64 [m·n/16]   one word per (row r, stored-column group c/16), word index
//                                        ((r/16)·(n/16) + c/16)·16 + r%16:
//        bit  0      3      6                                          54        62  63
//             | s_code | z_code | q_0 q_1 … q_15 (3 bits each)          | SO byte | 0 0 |
//        SO byte = byte (r%16)/2 of the tile's 64-bit second-order word SO = ss | zs << 16 | sz << 32 | zz << 48 (fp16)
//   <name>.row_offsets   I32 [m+1]      CSR over rows
//   <name>.col_vals      I32 [nnz]      stored column (bits 0-15) | fp16 value << 16, ascending columns per row
//   <name>.in_perm       I32 [n/2]      perm[2k] | perm[2k+1] << 16; stored column j is input feature perm[j]
//
// Their decode is fp16 arithmetic, s = ss ⊗ (s_code ⊖ sz), z = zs ⊗ (z_code ⊖ zz), w = s ⊗ (q ⊖ z), and their
// inference ADDS each outlier to the value decoded at its position (the quantizer replaced it). Converting keeps
// every code and second-order statistic, marks the layer for fp16-step decoding (SpqrLayer.Fp16Arithmetic) and
// stores each outlier as fp16(w + value), the value their decode yields there: the converted layer decodes to
// exactly their weights.
using SpQR.Tensors;
using SpQR.Tensors.IO;

namespace SpQR.Quant.Formats;

public static class SpqrAuthorsExport
{
    public const int Bits = 3, Tile = 16;

    /// <summary>One exported linear: rows m, cols n, the tile words, CSR outliers and the permutation.</summary>
    public sealed record Linear(int Rows, int Cols, ulong[] Words, int[] RowOffsets, uint[] ColVals, int[] Perm)
    {
        public long Word(int r, int c) => ((long)(r / Tile) * (Cols / Tile) + c / Tile) * Tile + r % Tile;
        public int Code(int r, int c) => (int)(Words[Word(r, c)] >> (6 + 3 * (c % Tile))) & 7;

        /// <summary>The tile's second-order statistics (ss, zs, sz, zz) reassembled from its 16 rows' bytes.</summary>
        public (Half Ss, Half Zs, Half Sz, Half Zz) SecondOrder(int r, int c)
        {
            ulong so = 0;
            long w0 = Word(r / Tile * Tile, c);
            for (int k = 0; k < Tile; k++) so |= ((Words[w0 + k] >> 54) & 0xFF) << (8 * (k / 2));
            return (BitConverter.UInt16BitsToHalf((ushort)so), BitConverter.UInt16BitsToHalf((ushort)(so >> 16)),
                    BitConverter.UInt16BitsToHalf((ushort)(so >> 32)), BitConverter.UInt16BitsToHalf((ushort)(so >> 48)));
        }
    }

    /// <summary>True when the checkpoint holds the authors' parts for this linear.</summary>
    public static bool Holds(string linear, Func<string, bool> contains) => contains($"{linear}.dense_weights");

    /// <summary>Reads and validates one exported linear; get(name) returns a tensor or null; file names errors.</summary>
    public static Linear Read(string linear, Func<string, Tensor?> get, string file)
    {
        Tensor Need(string part)
        {
            var t = get($"{linear}.{part}") ?? throw new ModelFormatException(file, $"tensor \"{linear}.{part}\"", "the SpQR export part to be present", "none");
            return t;
        }
        void Check(bool ok, string part, string expected, object found) { if (!ok) throw new ModelFormatException(file, $"tensor \"{linear}.{part}\"", expected, $"{found}", "the exported layer is corrupt"); }
        var dw = Need("dense_weights"); var ro = Need("row_offsets"); var cv = Need("col_vals"); var ip = Need("in_perm");
        Check(dw.DType == DType.I64, "dense_weights", "dtype I64", dw.DType);
        Check(ro.DType == DType.I32, "row_offsets", "dtype I32", ro.DType);
        Check(ip.DType == DType.I32, "in_perm", "dtype I32", ip.DType);
        // an outlier-free linear is exported as F32 [0] by the authors' merge_col_val
        Check(cv.DType == DType.I32 || (cv.ElementCount == 0 && cv.DType == DType.F32), "col_vals", "dtype I32", cv.DType);
        int rows = checked((int)ro.ElementCount - 1), cols = checked((int)(2 * ip.ElementCount));
        Check(rows > 0 && rows % Tile == 0, "row_offsets", $"m + 1 entries with m a positive multiple of {Tile}", ro.ElementCount);
        Check(cols > 0 && cols % Tile == 0 && cols <= 65536, "in_perm", $"n/2 entries with n a positive multiple of {Tile}, n <= 65536", ip.ElementCount);
        Check(dw.ElementCount == (long)rows * cols / Tile, "dense_weights", $"{(long)rows * cols / Tile} words (m·n/16 for {rows}x{cols})", dw.ElementCount);
        var words = System.Runtime.InteropServices.MemoryMarshal.Cast<long, ulong>(dw.AsReadOnlySpan<long>()).ToArray();
        foreach (ulong w in words) Check(w >> 62 == 0, "dense_weights", "bits 62-63 zero", $"0x{w:x16}");
        var packed = ip.AsReadOnlySpan<int>();
        var perm = new int[cols];
        for (int k = 0; k < packed.Length; k++) { perm[2 * k] = packed[k] & 0xFFFF; perm[2 * k + 1] = (int)((uint)packed[k] >> 16); }
        var seen = new bool[cols];
        foreach (int p in perm) { Check(p < cols && !seen[p], "in_perm", "a permutation of 0..n-1", p); seen[p] = true; }
        var off = ro.AsReadOnlySpan<int>().ToArray();
        Check(off[0] == 0, "row_offsets", "first offset 0", off[0]);
        for (int r = 0; r < rows; r++) Check(off[r + 1] >= off[r], "row_offsets", "monotone offsets", $"{off[r]} then {off[r + 1]} at row {r}");
        Check(off[rows] == cv.ElementCount, "col_vals", $"{off[rows]} entries (the last row offset)", cv.ElementCount);
        var colVals = cv.ElementCount == 0 ? [] : System.Runtime.InteropServices.MemoryMarshal.Cast<int, uint>(cv.AsReadOnlySpan<int>()).ToArray();
        for (int r = 0; r < rows; r++)
            for (int i = off[r]; i < off[r + 1]; i++)
            {
                int c = (int)(colVals[i] & 0xFFFF);
                Check(c < cols && (i == off[r] || c > (int)(colVals[i - 1] & 0xFFFF)), "col_vals", "columns below n, ascending within a row", c);
                Check(Half.IsFinite(BitConverter.UInt16BitsToHalf((ushort)(colVals[i] >> 16))), "col_vals", "finite fp16 values", $"0x{colVals[i] >> 16:x4}");
            }
        var l = new Linear(rows, cols, words, off, colVals, perm);
        // every tile's second-order statistics must be finite, and both rows of a pair must carry the same SO byte
        for (int r0 = 0; r0 < rows; r0 += Tile)
            for (int c0 = 0; c0 < cols; c0 += Tile)
            {
                for (int k = 0; k < Tile; k += 2)
                    Check(((words[l.Word(r0 + k, c0)] ^ words[l.Word(r0 + k + 1, c0)]) >> 54) == 0, "dense_weights", "rows 2t and 2t+1 of a tile carrying the same SO byte", $"tile ({r0}, {c0}) row {r0 + k}");
                var (ss, zs, sz, zz) = l.SecondOrder(r0, c0);
                Check(Half.IsFinite(ss) && Half.IsFinite(zs) && Half.IsFinite(sz) && Half.IsFinite(zz), "dense_weights", "finite second-order statistics", $"tile ({r0}, {c0})");
            }
        return l;
    }

    /// <summary>
    /// The authors' decode, bit for bit (call_dequantize_compressed): fp16 weights (rows, cols) in STORED column order,
    /// each step rounded to fp16, outliers added.
    /// </summary>
    public static Half[] DequantizeStored(Linear l)
    {
        var w = new Half[(long)l.Rows * l.Cols];
        for (int r = 0; r < l.Rows; r++)
        {
            for (int c = 0; c < l.Cols; c++) w[(long)r * l.Cols + c] = DecodeDense(l, r, c);
            for (int i = l.RowOffsets[r]; i < l.RowOffsets[r + 1]; i++) w[(long)r * l.Cols + (l.ColVals[i] & 0xFFFF)] = WithOutlier(l, r, i);
        }
        return w;
    }

    // the dense value at (row r, stored column c), fp16 steps: s = ss ⊗ (s_code ⊖ sz), z = zs ⊗ (z_code ⊖ zz), s ⊗ (q ⊖ z)
    private static Half DecodeDense(Linear l, int r, int c)
    {
        var (ss, zs, sz, zz) = l.SecondOrder(r, c);
        ulong word = l.Words[l.Word(r, c)];
        var s = (Half)((float)ss * (float)(Half)((float)(int)(word & 7) - (float)sz));
        var z = (Half)((float)zs * (float)(Half)((float)(int)((word >> 3) & 7) - (float)zz));
        return (Half)((float)s * (float)(Half)((float)l.Code(r, c) - (float)z));
    }

    // outlier i of row r as the authors' decode yields it: fp16(dense value under it + kept value)
    private static Half WithOutlier(Linear l, int r, int i)
        => (Half)((float)DecodeDense(l, r, (int)(l.ColVals[i] & 0xFFFF)) + (float)BitConverter.UInt16BitsToHalf((ushort)(l.ColVals[i] >> 16)));

    /// <summary>Converts to our format: same codes, permutation and second-order statistics, fp16-step decoding, outliers
    /// as fp16(w + value); it dequantizes to exactly <see cref="DequantizeStored"/> (unpermuted).</summary>
    public static SpqrLayer ToSpqrLayer(Linear l)
    {
        int rows = l.Rows, cols = l.Cols, groups = cols / Tile, rowGroups = rows / Tile;
        var codes = new byte[(long)rows * groups * 2 * Bits + 4];
        int statRow = (groups * 2 * Bits + 7) / 8;
        var statCodes = new byte[(long)rows * statRow + 8];
        var stats2 = new Half[(long)rowGroups * groups * 4];
        for (int r = 0; r < rows; r++)
            for (int g = 0; g < groups; g++)
            {
                ulong word = l.Words[l.Word(r, g * Tile)];
                // our group: two half-words of 8 codes, 24 bits each (docs/formats/spqr.md)
                ulong q = (word >> 6) & ((1UL << 48) - 1);
                long at = ((long)r * groups + g) * 2 * Bits;
                for (int b = 0; b < 2 * Bits; b++) codes[at + b] = (byte)(q >> (8 * b));
                long bit = (long)r * statRow * 8 + (long)g * 2 * Bits;
                int field = (int)(word & 0x3F) << (int)(bit % 8); // s_code | z_code << 3, as our (scale | zero << qs)
                statCodes[bit / 8] |= (byte)field; statCodes[bit / 8 + 1] |= (byte)(field >> 8);
                if (r % Tile == 0)
                {
                    var (ss, zs, sz, zz) = l.SecondOrder(r, g * Tile);
                    long s2 = ((long)(r / Tile) * groups + g) * 4;
                    stats2[s2] = ss; stats2[s2 + 1] = sz; stats2[s2 + 2] = zs; stats2[s2 + 3] = zz;
                }
            }
        var ocols = new ushort[l.ColVals.Length];
        var ovals = new Half[l.ColVals.Length];
        for (int r = 0; r < rows; r++)
            for (int i = l.RowOffsets[r]; i < l.RowOffsets[r + 1]; i++)
            {
                ocols[i] = (ushort)(l.ColVals[i] & 0xFFFF);
                ovals[i] = WithOutlier(l, r, i);
            }
        return new SpqrLayer
        {
            Rows = rows, Cols = cols, WBits = Bits, QqGroupSize = Tile, QuantizedStats = true, ScaleBits = Bits, ZeroBits = Bits, Fp16Arithmetic = true,
            Codes = codes, StatCodes = statCodes, Stats2 = stats2, Perm = (int[])l.Perm.Clone(),
            OutlierRowOffsets = (int[])l.RowOffsets.Clone(), OutlierCols = ocols, OutlierValues = ovals,
        };
    }
}
