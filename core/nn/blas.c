/* nn_sgemm: the one BLAS entry point (row-major cblas_sgemm from OpenBLAS, on
 * one thread, cut into shape-fixed units on the worker pool), and its naive
 * double-accumulating reference for the tests. */
#include "nn/blas.h"

#include <assert.h>
#include <cblas.h>
#include <pthread.h>
#include <stddef.h>
#include <unistd.h>

#include "nn/gemm.h"

/* A unit is at least this many multiply-adds (OpenBLAS's own threshold for
 * threading a product; about 10 us on one core) and
 * NN_SGEMM_ALIGN rows or columns; at most NN_SGEMM_UNITS_MAX units. */
#define NN_SGEMM_UNIT_MACS ((size_t)1 << 18)
#define NN_SGEMM_UNITS_MAX 16
#define NN_SGEMM_ALIGN     16

static _Thread_local int tl_threads; /* 0: never set, i.e. 1 */
static pthread_once_t g_blas_once = PTHREAD_ONCE_INIT;

static void blas_init(void) { openblas_set_num_threads(1); }

static void blas_call(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda,
                      const float *b, int ldb, float beta, float *c, int ldc)
{
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n,
                k, alpha, a, lda, b, ldb, beta, c, ldc);
}

int nn_sgemm_units(int m, int n, int k)
{
    const size_t macs = (size_t)m * (size_t)n * (size_t)k;
    const int dim = m >= n ? m : n;
    size_t u = macs / NN_SGEMM_UNIT_MACS;
    if (u > NN_SGEMM_UNITS_MAX) u = NN_SGEMM_UNITS_MAX;
    if (u > (size_t)(dim / NN_SGEMM_ALIGN)) u = (size_t)(dim / NN_SGEMM_ALIGN);
    return u > 1 ? (int)u : 1;
}

typedef struct sgemm_job {
    bool ta, tb, rows; /* rows: split op(A)'s rows (m), else op(B)'s columns (n) */
    int m, n, k, lda, ldb, ldc, nunits;
    float alpha, beta;
    const float *a, *b;
    float *c;
} sgemm_job_t;

/* Unit u: a run of whole NN_SGEMM_ALIGN-blocks of the split dimension. */
static void sgemm_unit(void *ctx, int u)
{
    const sgemm_job_t *j = ctx;
    const int dim = j->rows ? j->m : j->n;
    const int blocks = (dim + NN_SGEMM_ALIGN - 1) / NN_SGEMM_ALIGN;
    int b0;
    const int nb = nn_split_part(blocks, j->nunits, u, &b0);
    const int lo = b0 * NN_SGEMM_ALIGN;
    int hi = (b0 + nb) * NN_SGEMM_ALIGN;
    if (hi > dim) hi = dim;
    if (hi <= lo) return;
    if (j->rows) {
        const float *a = j->ta ? j->a + lo : j->a + (size_t)lo * j->lda;
        blas_call(j->ta, j->tb, hi - lo, j->n, j->k, j->alpha, a, j->lda, j->b, j->ldb, j->beta,
                  j->c + (size_t)lo * j->ldc, j->ldc);
    } else {
        const float *b = j->tb ? j->b + (size_t)lo * j->ldb : j->b + lo;
        blas_call(j->ta, j->tb, j->m, hi - lo, j->k, j->alpha, j->a, j->lda, b, j->ldb, j->beta,
                  j->c + lo, j->ldc);
    }
}

void nn_sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a, int lda,
              const float *b, int ldb, float beta, float *c, int ldc)
{
    assert(m >= 0 && n >= 0 && k >= 0);
    assert(lda >= (trans_a ? m : k) && lda >= 1);
    assert(ldb >= (trans_b ? k : n) && ldb >= 1);
    assert(ldc >= n && ldc >= 1);
    if (m == 0 || n == 0) return;
    pthread_once(&g_blas_once, blas_init);
    const int units = nn_sgemm_units(m, n, k);
    if (units == 1) {
        blas_call(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    sgemm_job_t j = {.ta = trans_a,
                     .tb = trans_b,
                     .rows = m >= n,
                     .m = m,
                     .n = n,
                     .k = k,
                     .lda = lda,
                     .ldb = ldb,
                     .ldc = ldc,
                     .nunits = units,
                     .alpha = alpha,
                     .beta = beta,
                     .a = a,
                     .b = b,
                     .c = c};
    nn_parallel_for(units, nn_get_threads(), sgemm_unit, &j);
}

void nn_sgemm_naive(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a,
                    int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    assert(m >= 0 && n >= 0 && k >= 0);
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < n; j++) {
            double s = 0.0;
            for (int p = 0; p < k; p++) {
                float av = trans_a ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p];
                float bv = trans_b ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j];
                s += (double)av * (double)bv;
            }
            float *cij = &c[(size_t)i * ldc + j];
            /* BLAS semantics: with beta == 0, C is not read (may hold NaN). */
            double prev = beta == 0.0f ? 0.0 : (double)beta * (double)*cij;
            *cij = (float)((double)alpha * s + prev);
        }
    }
}

void nn_set_threads(int n)
{
    pthread_once(&g_blas_once, blas_init);
    if (n <= 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n = cpus > 0 ? (int)cpus : 1;
    }
    tl_threads = n;
}

int nn_get_threads(void) { return tl_threads > 0 ? tl_threads : 1; }

const char *nn_blas_corename(void)
{
    const char *s = openblas_get_corename();
    return s ? s : "unknown";
}
