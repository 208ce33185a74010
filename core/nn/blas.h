/* The one BLAS entry point, in BLAS argument order but row-major, so a naive
 * version can stand in for tests. C = alpha * op(A) * op(B) + beta * C,
 * op(A) is (M,K), op(B) is (K,N), C is (M,N); lda/ldb/ldc are row strides. */
#ifndef DP_NN_BLAS_H
#define DP_NN_BLAS_H

#include <stdbool.h>

void nn_sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a, int lda,
              const float *b, int ldb, float beta, float *c, int ldc);
/* Triple loop with double accumulation: the reference. */
void nn_sgemm_naive(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a,
                    int lda, const float *b, int ldb, float beta, float *c, int ldc);

/* OpenBLAS thread count; n <= 0 means "number of cores". */
void nn_set_threads(int n);
int nn_get_threads(void);

#endif
