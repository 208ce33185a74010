/* The one BLAS entry point, in BLAS argument order but row-major, so a naive
 * version can stand in for tests. C = alpha * op(A) * op(B) + beta * C,
 * op(A) is (M,K), op(B) is (K,N), C is (M,N); lda/ldb/ldc are row strides.
 *
 * Threads: OpenBLAS always runs on one thread (its own threading splits a
 * product at boundaries that depend on the thread count, and some of its
 * kernels compute an element differently at a tile's edge, so results would
 * depend on the thread count). nn_sgemm instead cuts a large product into
 * units fixed by its shape alone (row or column blocks, each a one-thread
 * OpenBLAS call) and runs them on the nn_parallel_for pool: the same units
 * are computed on 1 thread or on 16, so the result is bit-identical.
 *
 * The thread count is per calling thread (nn_set_threads sets it for the
 * caller only; a new thread starts at 1), so one part of a process (a
 * trainer) cannot change another's (a measurer). Units running on the pool
 * see a count of 1, so nested calls run inline. */
#ifndef DP_NN_BLAS_H
#define DP_NN_BLAS_H

#include <stdbool.h>

void nn_sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a, int lda,
              const float *b, int ldb, float beta, float *c, int ldc);
/* Triple loop with double accumulation: the reference. */
void nn_sgemm_naive(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a,
                    int lda, const float *b, int ldb, float beta, float *c, int ldc);

/* Units nn_sgemm cuts an (m,n,k) product into (1: one call); a function of
 * the shape only. */
int nn_sgemm_units(int m, int n, int k);

/* The calling thread's thread count for nn_sgemm and the kernels that split
 * work over the pool; n <= 0 means "number of online CPUs". */
void nn_set_threads(int n);
int nn_get_threads(void);

/* The OpenBLAS core type in use (e.g. "Haswell"), for provenance. */
const char *nn_blas_corename(void);

#endif
