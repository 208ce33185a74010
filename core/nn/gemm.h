/* Own single-precision GEMM for products whose left operand is reused many
 * times (convolution weights): the weight is packed once into micro-panel
 * order, then each product streams it once against a small right operand.
 *
 * C (M,N) = PA * B + beta * C, where PA is the packed form of op(A) (M,K),
 * B is (K,N) row-major with row stride ldb, C is (M,N) with row stride ldc.
 * A batch form shares PA over nb right operands / results at fixed strides.
 *
 * The micro-kernel is chosen at run time: AVX-512F, AVX2+FMA, or portable C
 * (environment DP_GEMM=avx512|avx2|portable forces one; nn_gemm_set_path for
 * tests). Work is split over output-row panels, so each C element is
 * computed by one thread in a fixed order: results do not depend on the
 * thread count. */
#ifndef DP_NN_GEMM_H
#define DP_NN_GEMM_H

#include <stdbool.h>
#include <stddef.h>

/* Rows per micro-panel of the packed left operand. */
#define NN_GEMM_MR 16

typedef enum nn_gemm_path {
    NN_GEMM_PORTABLE = 0,
    NN_GEMM_AVX2 = 1,
    NN_GEMM_AVX512 = 2,
} nn_gemm_path_t;

/* Floats of a packed (M,K) operand: ceil(M/16)*16*K. */
size_t nn_gemm_packed_size(int m, int k);
/* pa (packed_size floats, 64-byte aligned) <- op(A) (M,K); a is (M,K) with
 * row stride lda, or (K,M) when trans_a. Layout: panel p holds rows
 * [16p, 16p+16) as K groups of 16 consecutive floats (group kk holds
 * op(A)[16p..16p+15][kk]); rows past M are zero. */
void nn_gemm_pack_a(float *pa, bool trans_a, int m, int k, const float *a, int lda);

/* C (M,N) = PA * B + beta*C (beta == 0: C is not read). threads <= 1 runs on
 * the calling thread; more uses the shared worker pool. */
void nn_gemm_packed(int m, int n, int k, const float *pa, const float *b, int ldb, float beta,
                    float *c, int ldc, int threads);
/* nb products C_i = PA * B_i + beta*C_i, B_i = b + i*stride_b, C_i = c + i*stride_c. */
void nn_gemm_packed_batch(int m, int n, int k, const float *pa, int nb, const float *b,
                          size_t stride_b, int ldb, float beta, float *c, size_t stride_c, int ldc,
                          int threads);

/* The path in use (chosen at the first call); set_path forces one and returns
 * 0, or -1 if this CPU cannot run it. */
nn_gemm_path_t nn_gemm_get_path(void);
int nn_gemm_set_path(nn_gemm_path_t path);
const char *nn_gemm_path_name(nn_gemm_path_t path);

/* Runs fn(ctx, u) once for every unit u in [0, nunits) on up to nt threads:
 * the calling thread and a persistent pool of workers (created at first use,
 * never joined) claim units one at a time. If the pool is busy (another
 * caller, or a call from inside a unit), the calling thread runs them all.
 * So which thread runs a unit varies: a unit's result must not depend on it.
 * While the units run, the calling thread's nn_get_threads() is 1 (the pool's
 * workers are always at 1), so a nested nn_sgemm or nn_parallel_for runs its
 * units inline, the same units. */
typedef void (*nn_par_fn)(void *ctx, int unit);
void nn_parallel_for(int nunits, int nt, nn_par_fn fn, void *ctx);

/* Part u of n items split into `parts` near-equal runs (the first n % parts
 * one longer): sets *start, returns the count. */
static inline int nn_split_part(int n, int parts, int u, int *start)
{
    const int q = n / parts, rem = n % parts;
    *start = u * q + (u < rem ? u : rem);
    return q + (u < rem);
}

#endif
