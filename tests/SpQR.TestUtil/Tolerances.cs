// Every numeric tolerance the tests use, in one place, each with where it comes from.
namespace SpQR.TestUtil;

public static class Tolerances
{
    /// <summary>Unit roundoff of float32 (2^-24).</summary>
    public const double U32 = 5.960464477539063e-8;

    /// <summary>
    /// Float32 sums of n terms in any order: |fast - exact| ≤ γ_n · Σ|terms| with γ_n ≈ n·u (Higham, Accuracy and
    /// Stability, §4.2). We allow (n + 4)·u·Σ|terms|, plus the final rounding of the reference.
    /// </summary>
    public static double Reduction(long n, double sumAbs) => (n + 4) * U32 * sumAbs + 1e-30;

    /// <summary>
    /// Elementwise float32 transcendental kernels (exp-based SiLU/softmax/tanh-GELU, ~2 ulp) against double:
    /// relative 4e-6 plus an absolute floor for results near zero.
    /// </summary>
    public const double ElementwiseRel = 4e-6, ElementwiseAbs = 1e-6;

    /// <summary>
    /// GELU (erf form): the vector erf is Abramowitz &amp; Stegun 7.1.26 with |error| ≤ 1.5e-7, so
    /// |ΔGELU| ≤ 0.5·|x|·1.5e-7; on |x| ≤ 10 that is ≤ 7.5e-7 absolute.
    /// </summary>
    public const double GeluErfAbs = 1e-6;

    /// <summary>Norms: one reduction (n terms) then one multiply per element; relative to the output magnitude.</summary>
    public static double Norm(int n) => (n + 8) * U32;

    /// <summary>GPU vs CPU float32 kernels: normalised MSE (ggml's test-backend-ops default).</summary>
    public const double GpuNmse = 1e-7;

    /// <summary>Logits against PyTorch float32 dumps: relative L2 error (llm.c-style comparisons).</summary>
    public const double LogitsRelL2 = 1e-4;

    /// <summary>Logits of BF16/F16 checkpoints (the bound: the reference ran the rounded weights in float32).</summary>
    public const double LogitsRelL2Half = 1e-3;
}
