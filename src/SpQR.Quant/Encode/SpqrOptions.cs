// SpQR options, named as in the authors' reference (main.py / spqr_engine.py). The defaults here are the paper's
// recommended recipe (wbits 3, β1 = β2 = 16, 3-bit statistics, τ 0.2, act_order, percdamp 1.0), not the
// reference argparse defaults (which use percdamp 0.01). RTN and GPTQ are presets of the same options.
namespace SpQR.Quant.Encode;

public enum PermutationOrder { Identity, ActOrder }

public sealed record SpqrOptions
{
    public int WBits { get; init; } = 3;                     // wbits: bits per weight code (2..8)
    public int GroupSize { get; init; } = 16;                // groupsize β1: columns sharing first-order statistics
    public int? QqScaleBits { get; init; } = 3;              // qq_scale_bits: bits of the quantized scales (null: FP16 scales)
    public int? QqZeroBits { get; init; } = 3;               // qq_zero_bits: bits of the quantized zeros (null: FP16 zeros)
    public int QqGroupSize { get; init; } = 16;              // qq_groupsize β2: rows sharing second-order statistics
    public double? OutlierThreshold { get; init; } = 0.2;    // outlier_relative_threshold τ (null: no outliers)
    public double? OutlierBudget { get; init; }              // target outlier share; τ found by bisection (beyond the reference)
    public PermutationOrder PermutationOrder { get; init; } = PermutationOrder.ActOrder;
    public double PercDamp { get; init; } = 1.0;             // percdamp: H += percdamp · mean(diag H) · I
    public int BlockSize { get; init; } = 128;               // blocksize of the lazy batch updates
    public bool SimplifiedOutliers { get; init; }            // simplified_outliers: skip the leave-one-out pre-screen
    public bool RoundZero { get; init; }                     // round_zero: integer first-order zeros
    /// <summary>
    /// Quantize with the values the compressed format stores: FP16 second-order statistics (or FP16 first-order
    /// statistics without qq) and FP16 outlier values, so decoding reproduces Ŵ bit for bit. The reference keeps them
    /// in float32 (turn off to compare with it).
    /// </summary>
    public bool StorageExact { get; init; } = true;

    public static SpqrOptions Rtn(int wbits = 3, int groupSize = 16) => new()
    {
        WBits = wbits, GroupSize = groupSize, QqScaleBits = null, QqZeroBits = null, OutlierThreshold = null, PermutationOrder = PermutationOrder.Identity,
    };

    public static SpqrOptions Gptq(int wbits = 3, int groupSize = 16) => new()
    {
        WBits = wbits, GroupSize = groupSize, QqScaleBits = null, QqZeroBits = null, OutlierThreshold = null,
    };

    public void Validate()
    {
        if (WBits is < 2 or > 8) throw new ArgumentOutOfRangeException(nameof(WBits), WBits, "wbits must be 2..8");
        if (GroupSize < 1) throw new ArgumentOutOfRangeException(nameof(GroupSize), GroupSize, "groupsize must be positive");
        if (QqScaleBits is < 1 or > 8) throw new ArgumentOutOfRangeException(nameof(QqScaleBits), QqScaleBits, "qq_scale_bits must be 1..8");
        if (QqZeroBits is < 1 or > 8) throw new ArgumentOutOfRangeException(nameof(QqZeroBits), QqZeroBits, "qq_zero_bits must be 1..8");
        if (QqGroupSize < 1) throw new ArgumentOutOfRangeException(nameof(QqGroupSize), QqGroupSize, "qq_groupsize must be positive");
        if (OutlierThreshold is <= 0) throw new ArgumentOutOfRangeException(nameof(OutlierThreshold), OutlierThreshold, "outlier threshold must be positive");
        if (OutlierBudget is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(OutlierBudget), OutlierBudget, "outlier budget is a share in [0, 1)");
        if (PercDamp < 0) throw new ArgumentOutOfRangeException(nameof(PercDamp), PercDamp, "percdamp must be non-negative");
        if (BlockSize < 1) throw new ArgumentOutOfRangeException(nameof(BlockSize), BlockSize, "blocksize must be positive");
    }
}
