/* nn_sgemm against its naive reference: all transpose combinations, odd sizes,
 * padded leading dimensions, alpha/beta; products cut into units, which give
 * the same bits on any thread count; and the per-thread thread count. */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>
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

static void *other_thread(void *arg)
{
    int *seen = arg;
    seen[0] = nn_get_threads(); /* a new thread starts at 1 */
    nn_set_threads(7);
    seen[1] = nn_get_threads();
    return NULL;
}

/* The count is the calling thread's: another thread's setting changes nothing here. */
Test(blas, threads_per_thread)
{
    nn_set_threads(3);
    int seen[2] = {0, 0};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, other_thread, seen), 0);
    pthread_join(t, NULL);
    cr_expect_eq(seen[0], 1);
    cr_expect_eq(seen[1], 7);
    cr_expect_eq(nn_get_threads(), 3);
    nn_set_threads(1);
}

/* Products large enough to be cut into units (rows or columns, edges not on
 * a 16 boundary, every transpose, padded strides, beta != 0): bit-identical
 * on 1, 2, 3, 5 and 16 threads, and equal to the naive product to rounding. */
Test(blas, units_bit_identical_over_thread_counts)
{
    static const int shapes[][3] = {
        {512, 25, 4608}, /* rows: a single image's conv on a 5x5 map */
        {64, 784, 576},  /* columns: a 64->64 conv at 28x28 */
        {64, 576, 784},  /* its weight gradient */
        {203, 331, 197}, /* odd everywhere */
        {37, 1000, 300}, /* few rows, columns cut */
    };
    static const int threads[] = {1, 2, 3, 5, 16};
    dp_rng_t r;
    dp_rng_seed(&r, 99);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        cr_expect_gt(nn_sgemm_units(m, n, k), 1, "%dx%dx%d is cut", m, n, k);
        for (int t = 0; t < 4; t++) {
            const bool ta = t & 1, tb = t & 2;
            const int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 1, ldc = n + 5;
            float *a = rand_buf(&r, (size_t)(ta ? k : m) * lda);
            float *b = rand_buf(&r, (size_t)(tb ? n : k) * ldb);
            float *c0 = rand_buf(&r, (size_t)m * ldc);
            const size_t bytes = (size_t)m * ldc * sizeof(float);
            float *ref = malloc(bytes), *c = malloc(bytes), *naive = malloc(bytes);
            cr_assert(ref && c && naive);
            for (size_t i = 0; i < sizeof threads / sizeof threads[0]; i++) {
                nn_set_threads(threads[i]);
                memcpy(c, c0, bytes);
                nn_sgemm(ta, tb, m, n, k, 0.75f, a, lda, b, ldb, 0.5f, c, ldc);
                if (i == 0) {
                    memcpy(ref, c, bytes);
                    continue;
                }
                cr_expect(memcmp(c, ref, bytes) == 0,
                          "%dx%dx%d ta %d tb %d: %d threads differ from 1", m, n, k, ta, tb,
                          threads[i]);
            }
            nn_set_threads(1);
            memcpy(naive, c0, bytes);
            nn_sgemm_naive(ta, tb, m, n, k, 0.75f, a, lda, b, ldb, 0.5f, naive, ldc);
            double maxerr = 0.0;
            for (size_t i = 0; i < (size_t)m * ldc; i++) {
                const double e = fabs((double)ref[i] - naive[i]);
                if (!(e <= maxerr)) maxerr = e;
            }
            cr_expect(maxerr <= 1e-5 * k, "%dx%dx%d ta %d tb %d: max err %g", m, n, k, ta, tb,
                      maxerr);
            free(a), free(b), free(c0), free(ref), free(c), free(naive);
        }
    }
}

/* The kernel in use is named; scripts/test-kernels.sh sets DP_EXPECT_BLAS_CORE
 * to the core type it forces, so a forced pass that silently ran another
 * kernel fails here. */
Test(blas, corename_named)
{
    const char *name = nn_blas_corename();
    cr_assert_not_null(name);
    cr_expect_gt(strlen(name), 0);
    const char *want = getenv("DP_EXPECT_BLAS_CORE");
    if (want && *want)
        cr_expect(strcasecmp(name, want) == 0, "OpenBLAS runs %s, expected %s", name, want);
}
