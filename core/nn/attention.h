/* SAGAN self-attention over the positions of a feature map:
 *   q = Wq x + bq (C/8),  k = Wk x + bk (C/8),  v = Wv x + bv (C)    (1x1 convs)
 *   A = softmax over j of (q_i . k_j)        (HW x HW, row i sums to 1)
 *   out_i = gamma * sum_j A_ij v_j + x_i
 * (the reference's bmm(v, A^T) layout). C8 = max(1, C/8). */
#ifndef DP_NN_ATTENTION_H
#define DP_NN_ATTENTION_H

#include <stddef.h>

/* Cache for backward, in floats: q, k, v, A and the attended sum per image. */
size_t nn_attention_cache_size(int n, int c, int hw);
/* Scratch for backward, in floats. */
size_t nn_attention_workspace(int n, int c, int hw);

/* out, inp (N,C,HW); wq, wk (C8,C); bq, bk (C8); wv (C,C); bv (C); gamma (1). */
void nn_attention_forward(float *out, float *cache, const float *inp, const float *wq,
                          const float *bq, const float *wk, const float *bk, const float *wv,
                          const float *bv, const float *gamma, int n, int c, int hw);
/* The same with the BLAS left as it is and the row blocks of E, softmax and
 * O on up to `threads` threads (nn_parallel_for); nn_attention_forward sets
 * the BLAS to one thread and uses the BLAS's former count. The result does
 * not depend on the thread count. */
void nn_attention_forward_mt(float *out, float *cache, const float *inp, const float *wq,
                             const float *bq, const float *wk, const float *bk, const float *wv,
                             const float *bv, const float *gamma, int n, int c, int hw,
                             int threads);
/* Accumulates into every gradient (NULL: skip). */
void nn_attention_backward(float *dinp, float *dwq, float *dbq, float *dwk, float *dbk, float *dwv,
                           float *dbv, float *dgamma, const float *dout, const float *cache,
                           const float *inp, const float *wq, const float *wk, const float *wv,
                           const float *gamma, int n, int c, int hw, float *ws);

#endif
