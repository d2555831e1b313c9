// The device float64 factorization U = chol(H⁻¹) upper against the CPU's Cholesky.UpperFactorOfInverse, ragged
// against the block size, and its typed error on a matrix that is not positive definite.
using SpQR.Quant.Encode;
using SpQR.TestUtil;
using Xunit;

namespace SpQR.Gpu.Tests;

public class GpuCholeskyTests(BackendFixture fx) : IClassFixture<BackendFixture>
{
    private static double[] Spd(int n, int seed)
    {
        var b = TestData.Uniform(n * n, seed);
        var h = new double[n * n];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
            {
                double s = i == j ? n : 0;
                for (int k = 0; k < n; k++) s += (double)b[k * n + i] * b[k * n + j];
                h[i * n + j] = s;
            }
        return h;
    }

    [Theory]
    [InlineData(1)] [InlineData(16)] [InlineData(17)] [InlineData(70)] [InlineData(129)]
    public void Upper_factor_of_the_inverse_matches_the_cpu(int n)
    {
        var h = Spd(n, n);
        var e = Cholesky.UpperFactorOfInverse(h, n);
        var a = GpuCholesky.UpperFactorOfInverse(fx.Backend, h, n);
        double scale = e.Max(Math.Abs), worst = 0;
        for (int i = 0; i < e.Length; i++) worst = Math.Max(worst, Math.Abs(a[i] - e[i]));
        Assert.True(worst <= 1e-12 * scale, $"n = {n}: device U differs by {worst} (scale {scale})");
        for (int p = 0; p < n; p++) for (int q = 0; q < p; q++) Assert.Equal(0.0, a[p * n + q]);
    }

    [Fact]
    public void A_matrix_that_is_not_positive_definite_is_a_typed_error_naming_it_and_the_pivot()
    {
        int n = 40;
        var h = Spd(n, 3);
        h[9 * n + 9] = -1000; // row 9 of H is row 30 of J·H·J
        var cpu = Assert.Throws<NotPositiveDefiniteException>(() => Cholesky.UpperFactorOfInverse(h, n, "the damped Hessian of q_proj"));
        var gpu = Assert.Throws<NotPositiveDefiniteException>(() => GpuCholesky.UpperFactorOfInverse(fx.Backend, h, n, "the damped Hessian of q_proj"));
        Assert.Contains("the damped Hessian of q_proj is not positive definite", gpu.Message);
        Assert.Contains("(pivot 30 of 40", cpu.Message);
        Assert.Contains("(pivot 30 of 40", gpu.Message);
    }
}
