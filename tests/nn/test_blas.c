/* nn_sgemm against its naive reference: all transpose combinations, odd sizes,
 * padded leading dimensions, alpha/beta; and the thread-count knob. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "nn/blas.h"
#include "util/rng.h"

static float *rand_buf(dp_rng_t *r, size_t n)
{
    float *p = malloc(n * sizeof *p);
    cr_assert_not_null(p);
    for (size_t i = 0; i < n; i++) p[i] = 2.0f * dp_rng_uniform(r) - 1.0f;
    return p;
}

static void check_case(dp_rng_t *r, bool ta, bool tb, int m, int n, int k, int pad, float alpha,
                       float beta)
{
    int arows = ta ? k : m, acols = ta ? m : k;
    int brows = tb ? n : k, bcols = tb ? k : n;
    int lda = acols + pad, ldb = bcols + pad, ldc = n + pad;
    float *a = rand_buf(r, (size_t)arows * lda);
    float *b = rand_buf(r, (size_t)brows * ldb);
    float *c1 = rand_buf(r, (size_t)m * ldc);
    float *c2 = malloc((size_t)m * ldc * sizeof *c2);
    cr_assert_not_null(c2);
    for (size_t i = 0; i < (size_t)m * ldc; i++) c2[i] = c1[i];
    if (beta == 0.0f) /* BLAS must not read C when beta == 0 */
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) c1[(size_t)i * ldc + j] = c2[(size_t)i * ldc + j] = NAN;
    nn_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c1, ldc);
    nn_sgemm_naive(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c2, ldc);
    double maxerr = 0.0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < ldc; j++) {
            double e = fabs((double)c1[(size_t)i * ldc + j] - c2[(size_t)i * ldc + j]);
            if (!(e <= maxerr)) maxerr = e; /* NaN propagates */
        }
    cr_expect(maxerr <= 1e-5 * (1 + sqrt((double)k)), "ta=%d tb=%d m=%d n=%d k=%d: max err %g", ta,
              tb, m, n, k, maxerr);
    free(a);
    free(b);
    free(c1);
    free(c2);
}

Test(blas, sgemm_matches_naive)
{
    static const int sizes[][3] = {{1, 1, 1},   {3, 5, 7},    {17, 13, 11}, {33, 1, 65},
                                   {1, 47, 29}, {64, 63, 65}, {5, 129, 3},  {127, 31, 200}};
    dp_rng_t r;
    dp_rng_seed(&r, 7);
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (int t = 0; t < 4; t++)
            for (int pad = 0; pad <= 3; pad += 3) {
                check_case(&r, t & 1, t & 2, sizes[s][0], sizes[s][1], sizes[s][2], pad, 1.0f,
                           0.0f);
                check_case(&r, t & 1, t & 2, sizes[s][0], sizes[s][1], sizes[s][2], pad, -0.5f,
                           1.0f);
                check_case(&r, t & 1, t & 2, sizes[s][0], sizes[s][1], sizes[s][2], pad, 2.0f,
                           0.25f);
            }
}

Test(blas, k_zero_scales_c)
{
    float c[4] = {1, 2, 3, 4}, a[1] = {0}, b[1] = {0};
    nn_sgemm(false, false, 2, 2, 0, 1.0f, a, 1, b, 2, 0.5f, c, 2);
    cr_expect_float_eq(c[0], 0.5f, 1e-7);
    cr_expect_float_eq(c[3], 2.0f, 1e-7);
}

Test(blas, threads)
{
    int before = nn_get_threads();
    nn_set_threads(1);
    cr_expect_eq(nn_get_threads(), 1);
    nn_set_threads(0);
    cr_expect_geq(nn_get_threads(), 1);
    nn_set_threads(before);
}
