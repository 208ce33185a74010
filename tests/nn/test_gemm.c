/* nn_gemm_packed against nn_sgemm_naive on every micro-kernel path this CPU
 * runs (portable C, AVX2+FMA, AVX-512): odd shapes (M, N, K not multiples of
 * the tile, N = 1, K = 1), both packings (op(A) = A and A^T), padded strides,
 * beta 0/1/other, batches, several thread counts (results bit-identical
 * across them); the packed convolutions against the naive ones; and the
 * worker pool (every unit once, nested calls). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "nn/blas.h"
#include "nn/conv.h"
#include "nn/gemm.h"
#include "util/rng.h"

static float *rand_buf(dp_rng_t *r, size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    cr_assert_not_null(p);
    for (size_t i = 0; i < n; i++) p[i] = 2.0f * dp_rng_uniform(r) - 1.0f;
    return p;
}

static float *packed_buf(size_t n)
{
    void *p = NULL;
    cr_assert(posix_memalign(&p, 64, (n ? n : 1) * sizeof(float)) == 0);
    return p;
}

/* One shape on the current path: nb products, threads 1, 2 and 5 must agree
 * bit for bit, and with the naive reference to rounding. */
static void check_case(dp_rng_t *r, bool ta, int m, int n, int k, int pad, float beta, int nb)
{
    const int arows = ta ? k : m, acols = ta ? m : k;
    const int lda = acols + pad > 0 ? acols + pad : 1, ldb = n + pad, ldc = n + pad;
    const size_t sb = (size_t)k * ldb + pad, sc = (size_t)m * ldc + pad;
    float *a = rand_buf(r, (size_t)arows * lda);
    float *b = rand_buf(r, sb * nb);
    float *c0 = rand_buf(r, sc * nb);
    float *ref = malloc(sc * nb * sizeof *ref), *c = malloc(sc * nb * sizeof *c);
    float *first = malloc(sc * nb * sizeof *first);
    float *pa = packed_buf(nn_gemm_packed_size(m, k));
    cr_assert(ref && c && first);
    if (beta == 0.0f) /* C must not be read when beta == 0 */
        for (int i = 0; i < nb; i++)
            for (int row = 0; row < m; row++)
                for (int j = 0; j < n; j++) c0[i * sc + (size_t)row * ldc + j] = NAN;
    memcpy(ref, c0, sc * nb * sizeof *ref);
    for (int i = 0; i < nb; i++)
        nn_sgemm_naive(ta, false, m, n, k, 1.0f, a, lda, b + i * sb, ldb, beta, ref + i * sc, ldc);
    nn_gemm_pack_a(pa, ta, m, k, a, lda);
    static const int threads[] = {1, 2, 5};
    for (int t = 0; t < 3; t++) {
        memcpy(c, c0, sc * nb * sizeof *c);
        if (nb == 1)
            nn_gemm_packed(m, n, k, pa, b, ldb, beta, c, ldc, threads[t]);
        else
            nn_gemm_packed_batch(m, n, k, pa, nb, b, sb, ldb, beta, c, sc, ldc, threads[t]);
        double maxerr = 0.0;
        for (size_t i = 0; i < sc * nb; i++) {
            double e = fabs((double)c[i] - ref[i]);
            if (!(e <= maxerr) && !(isnan(c[i]) && isnan(ref[i]))) maxerr = e;
        }
        cr_expect(maxerr <= 1e-5 * (1 + sqrt((double)k)),
                  "%s ta=%d m=%d n=%d k=%d pad=%d beta=%g nb=%d threads=%d: max err %g",
                  nn_gemm_path_name(nn_gemm_get_path()), ta, m, n, k, pad, beta, nb, threads[t],
                  maxerr);
        if (t == 0)
            memcpy(first, c, sc * nb * sizeof *c);
        else
            cr_expect(memcmp(first, c, sc * nb * sizeof *c) == 0,
                      "%s m=%d n=%d k=%d: threads %d differ from 1",
                      nn_gemm_path_name(nn_gemm_get_path()), m, n, k, threads[t]);
    }
    free(a), free(b), free(c0), free(ref), free(c), free(first), free(pa);
}

static void check_all_shapes(void)
{
    static const int sizes[][3] = {{1, 1, 1},   {3, 5, 7},      {17, 13, 11},  {33, 1, 65},
                                   {1, 47, 29}, {16, 28, 16},   {16, 29, 1},   {64, 63, 65},
                                   {5, 129, 3}, {127, 31, 200}, {40, 25, 300}, {48, 6, 9},
                                   {20, 57, 0}};
    dp_rng_t r;
    dp_rng_seed(&r, 11);
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (int ta = 0; ta < 2; ta++) {
            const int m = sizes[s][0], n = sizes[s][1], k = sizes[s][2];
            check_case(&r, ta, m, n, k, 0, 0.0f, 1);
            check_case(&r, ta, m, n, k, 3, 1.0f, 1);
            check_case(&r, ta, m, n, k, 1, -0.5f, 1);
            check_case(&r, ta, m, n, k, 2, 0.0f, 3);
        }
}

static void run_path(nn_gemm_path_t p)
{
    const nn_gemm_path_t saved = nn_gemm_get_path();
    if (nn_gemm_set_path(p) != 0) {
        /* a skip, not a warning: Criterion exits 1 after any warning */
        cr_skip_test("gemm path %s not supported by this CPU", nn_gemm_path_name(p));
    }
    cr_expect_eq(nn_gemm_get_path(), p);
    check_all_shapes();
    nn_gemm_set_path(saved);
}

Test(gemm, portable_matches_naive) { run_path(NN_GEMM_PORTABLE); }
Test(gemm, avx2_matches_naive) { run_path(NN_GEMM_AVX2); }
Test(gemm, avx512_matches_naive) { run_path(NN_GEMM_AVX512); }

Test(gemm, pack_layout)
{
    /* 18 x 2: panel 0 rows 0..15, panel 1 rows 16, 17 then zeros */
    float a[36], pa[2 * 16 * 2] __attribute__((aligned(64)));
    for (int i = 0; i < 36; i++) a[i] = (float)i;
    cr_assert_eq(nn_gemm_packed_size(18, 2), 64);
    nn_gemm_pack_a(pa, false, 18, 2, a, 2);
    cr_expect_eq(pa[0], a[0]);           /* row 0, k 0 */
    cr_expect_eq(pa[1], a[2]);           /* row 1, k 0 */
    cr_expect_eq(pa[16], a[1]);          /* row 0, k 1 */
    cr_expect_eq(pa[32 + 1], a[17 * 2]); /* row 17, k 0 */
    cr_expect_eq(pa[32 + 2], 0.0f);      /* padding */
    cr_expect_eq(pa[63], 0.0f);
}

/* The packed convolutions against the naive ones, per image and batched. */
static void check_conv(int n, int cin, int h, int w, int cout, int k, int s, int p, int transposed,
                       int threads)
{
    dp_rng_t r;
    dp_rng_seed(&r, 5);
    nn_conv_t c;
    if (transposed)
        cr_assert_eq(nn_convt2d_init(&c, n, cin, h, w, cout, k, k, s, p, 0, 1), 0);
    else
        cr_assert_eq(nn_conv2d_init(&c, n, cin, h, w, cout, k, k, s, p, 1), 0);
    c.threads = threads;
    const size_t in = (size_t)n * cin * h * w, out = (size_t)n * cout * c.hout * c.wout;
    const size_t wsz = (size_t)cin * cout * k * k;
    float *x = rand_buf(&r, in), *wt = rand_buf(&r, wsz), *bias = rand_buf(&r, (size_t)cout);
    float *y = rand_buf(&r, out), *ref = rand_buf(&r, out);
    const size_t wss = transposed ? nn_convt2d_workspace(&c) : nn_conv2d_workspace(&c);
    float *ws = rand_buf(&r, wss);
    float *pw = packed_buf(transposed ? nn_convt2d_packed_size(&c) : nn_conv2d_packed_size(&c));
    if (transposed) {
        nn_convt2d_pack_weight(&c, pw, wt);
        nn_convt2d_forward_packed(&c, y, x, pw, bias, ws);
        nn_convt2d_forward_naive(&c, ref, x, wt, bias);
    } else {
        nn_conv2d_pack_weight(&c, pw, wt);
        nn_conv2d_forward_packed(&c, y, x, pw, bias, ws);
        nn_conv2d_forward_naive(&c, ref, x, wt, bias);
    }
    double maxerr = 0.0;
    for (size_t i = 0; i < out; i++) {
        double e = fabs((double)y[i] - ref[i]);
        if (!(e <= maxerr)) maxerr = e;
    }
    cr_expect(maxerr < 1e-4, "%s n=%d cin=%d %dx%d cout=%d k=%d s=%d p=%d: max err %g",
              transposed ? "convt" : "conv", n, cin, h, w, cout, k, s, p, maxerr);
    free(x), free(wt), free(bias), free(y), free(ref), free(ws), free(pw);
}

Test(gemm, conv_packed_matches_naive)
{
    check_conv(1, 3, 9, 9, 5, 3, 1, 0, 0, 1);    /* odd channels */
    check_conv(1, 20, 7, 7, 33, 3, 1, 0, 0, 2);  /* the residual shape, small */
    check_conv(3, 20, 7, 7, 33, 3, 1, 0, 0, 2);  /* batched columns (P = 25) */
    check_conv(2, 8, 12, 11, 17, 3, 2, 1, 0, 3); /* stride, padding */
    check_conv(4, 6, 5, 5, 10, 1, 1, 0, 0, 2);   /* pointwise: no im2col */
    check_conv(1, 7, 5, 5, 4, 3, 2, 0, 1, 1);    /* transposed */
    check_conv(2, 16, 5, 5, 9, 3, 2, 0, 1, 2);
    check_conv(3, 6, 4, 4, 5, 1, 1, 0, 1, 2); /* transposed pointwise */
}

static atomic_int g_counts[200];

static void count_unit(void *ctx, int u)
{
    (void)ctx;
    atomic_fetch_add(&g_counts[u], 1);
}

static void nested_unit(void *ctx, int u)
{
    (void)ctx;
    atomic_fetch_add(&g_counts[u], 1);
    nn_parallel_for(4, 3, count_unit, NULL); /* runs inline: pool busy */
}

Test(gemm, parallel_for_runs_each_unit_once)
{
    for (int nt = 1; nt <= 4; nt++)
        for (int rep = 0; rep < 50; rep++) {
            memset(g_counts, 0, sizeof g_counts);
            nn_parallel_for(37 + rep, nt, count_unit, NULL);
            for (int u = 0; u < 200; u++) cr_assert_eq(g_counts[u], u < 37 + rep ? 1 : 0);
        }
    memset(g_counts, 0, sizeof g_counts);
    nn_parallel_for(10, 2, nested_unit, NULL);
    for (int u = 0; u < 10; u++) cr_assert_eq(g_counts[u], u < 4 ? 11 : 1);
}
