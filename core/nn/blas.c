/* nn_sgemm: the one BLAS entry point (row-major cblas_sgemm from OpenBLAS),
 * and its naive double-accumulating reference for the tests. */
#include "nn/blas.h"

#include <assert.h>
#include <cblas.h>
#include <unistd.h>

void nn_sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a, int lda,
              const float *b, int ldb, float beta, float *c, int ldc)
{
    assert(m >= 0 && n >= 0 && k >= 0);
    assert(lda >= (trans_a ? m : k) && lda >= 1);
    assert(ldb >= (trans_b ? k : n) && ldb >= 1);
    assert(ldc >= n && ldc >= 1);
    if (m == 0 || n == 0) return;
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
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
    if (n <= 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n = cpus > 0 ? (int)cpus : 1;
    }
    openblas_set_num_threads(n);
}

int nn_get_threads(void) { return openblas_get_num_threads(); }
