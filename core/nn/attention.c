/* SAGAN self-attention. Per image, x is (C,HW) and every product is one
 * nn_sgemm:
 *   q = Wq x + bq (C8,HW), k = Wk x + bk (C8,HW), v = Wv x + bv (C,HW)
 *   E = q^T k (HW,HW), A = softmax_rows(E), O = v A^T (C,HW)
 *   out = gamma O + x
 * The cache keeps q, k, v, A, O per image; backward reuses one image-sized
 * workspace for dv, dA (then dE in place), dq, dk. */
#include "nn/attention.h"

#include <assert.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include "nn/act.h"
#include "nn/blas.h"

static int c8_of(int c) { return c / 8 > 0 ? c / 8 : 1; }

static size_t cache_per_image(int c, int hw)
{
    size_t c8 = (size_t)c8_of(c), s = (size_t)hw;
    return 2 * c8 * s + 2 * (size_t)c * s + s * s;
}

size_t nn_attention_cache_size(int n, int c, int hw) { return (size_t)n * cache_per_image(c, hw); }

size_t nn_attention_workspace(int n, int c, int hw)
{
    (void)n;
    size_t c8 = (size_t)c8_of(c), s = (size_t)hw;
    return (size_t)c * s + s * s + 2 * c8 * s;
}

/* y (co,HW) = W (co,C) x (C,HW) + bias, as one sgemm onto the broadcast bias. */
static void conv1x1(float *y, const float *w, const float *bias, const float *x, int co, int c,
                    int hw)
{
    for (int o = 0; o < co; o++) {
        float bv = bias ? bias[o] : 0.0f;
        float *r = y + (size_t)o * hw;
        for (int i = 0; i < hw; i++) r[i] = bv;
    }
    nn_sgemm(false, false, co, hw, c, 1.0f, w, c, x, hw, 1.0f, y, hw);
}

/* Backward of conv1x1 given dy (co,HW): dW += dy x^T, db += rowsum dy,
 * dx += W^T dy. */
static void conv1x1_backward(float *dx, float *dw, float *db, const float *dy, const float *w,
                             const float *x, int co, int c, int hw)
{
    if (dw) nn_sgemm(false, true, co, c, hw, 1.0f, dy, hw, x, hw, 1.0f, dw, c);
    if (db) {
        for (int o = 0; o < co; o++) {
            const float *r = dy + (size_t)o * hw;
            float s = 0.0f;
            for (int i = 0; i < hw; i++) s += r[i];
            db[o] += s;
        }
    }
    if (dx) nn_sgemm(true, false, c, hw, co, 1.0f, w, c, dy, hw, 1.0f, dx, hw);
}

/* Rows [i0, i1) of E = q^T k, their softmax (A's rows), and the matching
 * columns of O = v A^T. Row blocks are independent: several threads share an
 * image's attention this way. */
typedef struct att_rows {
    const float *q, *k, *v;
    float *a, *o;
    int c, c8, hw, i0, i1;
} att_rows_t;

static void *att_rows_run(void *arg)
{
    const att_rows_t *j = arg;
    const int rows = j->i1 - j->i0, hw = j->hw;
    if (rows <= 0) return NULL;
    float *a = j->a + (size_t)j->i0 * hw;
    nn_sgemm(true, false, rows, hw, j->c8, 1.0f, j->q + j->i0, hw, j->k, hw, 0.0f, a, hw);
    nn_softmax_forward(a, a, rows, hw);
    nn_sgemm(false, true, j->c, rows, hw, 1.0f, j->v, hw, a, hw, 0.0f, j->o + j->i0, hw);
    return NULL;
}

#define ATT_SPLIT_MAX      8
#define ATT_SPLIT_MIN_MACS ((size_t)2 << 20) /* per thread */

/* Threads for one image's E, softmax, O: the BLAS's thread count while that
 * work is large, each thread then with a one-thread BLAS (OpenBLAS threads
 * these thin products and the softmax not at all). */
static int att_split(int c, int c8, int hw)
{
    int t = nn_get_threads();
    t = t < ATT_SPLIT_MAX ? t : ATT_SPLIT_MAX;
    const size_t macs = (size_t)hw * hw * (size_t)(c + c8);
    while (t > 1 && (macs / (size_t)t < ATT_SPLIT_MIN_MACS || hw / t < 8)) t--;
    return t;
}

static void att_rows_parallel(int t, att_rows_t base)
{
    att_rows_t jobs[ATT_SPLIT_MAX];
    pthread_t tid[ATT_SPLIT_MAX];
    int started[ATT_SPLIT_MAX] = {0};
    for (int i = 0, r0 = 0; i < t; i++) {
        const int rows = base.hw / t + (i < base.hw % t);
        jobs[i] = base;
        jobs[i].i0 = r0, jobs[i].i1 = r0 + rows;
        r0 += rows;
    }
    for (int i = 1; i < t; i++)
        started[i] = pthread_create(&tid[i], NULL, att_rows_run, &jobs[i]) == 0;
    att_rows_run(&jobs[0]);
    for (int i = 1; i < t; i++) {
        if (started[i])
            pthread_join(tid[i], NULL);
        else
            att_rows_run(&jobs[i]);
    }
}

void nn_attention_forward(float *out, float *cache, const float *inp, const float *wq,
                          const float *bq, const float *wk, const float *bk, const float *wv,
                          const float *bv, const float *gamma, int n, int c, int hw)
{
    assert(n > 0 && c > 0 && hw > 0);
    int c8 = c8_of(c);
    size_t plane = (size_t)c * hw;
    const int saved = nn_get_threads(), split = att_split(c, c8, hw);
    if (split > 1) nn_set_threads(1); /* the 1x1 convs too: thin, and BLAS workers spin */
    for (int b = 0; b < n; b++) {
        const float *x = inp + b * plane;
        float *y = out + b * plane;
        float *q = cache + b * cache_per_image(c, hw);
        float *k = q + (size_t)c8 * hw, *v = k + (size_t)c8 * hw, *a = v + plane;
        float *o = a + (size_t)hw * hw;
        conv1x1(q, wq, bq, x, c8, c, hw);
        conv1x1(k, wk, bk, x, c8, c, hw);
        conv1x1(v, wv, bv, x, c, c, hw);
        /* E (HW,HW) = q^T (HW,C8) k (C8,HW), row softmax in place (A), then
         * O (C,HW) = v (C,HW) A^T (HW,HW) */
        att_rows_t job = {q, k, v, a, o, c, c8, hw, 0, hw};
        if (split > 1) {
            att_rows_parallel(split, job);
        } else {
            att_rows_run(&job);
        }
        float g = gamma[0];
        for (size_t i = 0; i < plane; i++) y[i] = g * o[i] + x[i];
    }
    if (split > 1) nn_set_threads(saved);
}

void nn_attention_backward(float *dinp, float *dwq, float *dbq, float *dwk, float *dbk, float *dwv,
                           float *dbv, float *dgamma, const float *dout, const float *cache,
                           const float *inp, const float *wq, const float *wk, const float *wv,
                           const float *gamma, int n, int c, int hw, float *ws)
{
    assert(n > 0 && c > 0 && hw > 0);
    int c8 = c8_of(c);
    size_t plane = (size_t)c * hw;
    float g = gamma[0];
    /* gamma = 0 (its initial value) makes every path through O vanish. */
    bool need_v = g != 0.0f && (dinp || dwv || dbv);
    bool need_qk = g != 0.0f && (dinp || dwq || dbq || dwk || dbk);
    float *dv = ws, *da = dv + plane, *dq = da + (size_t)hw * hw, *dk = dq + (size_t)c8 * hw;
    double dg = 0.0;
    for (int b = 0; b < n; b++) {
        const float *x = inp + b * plane;
        const float *dy = dout + b * plane;
        const float *q = cache + b * cache_per_image(c, hw);
        const float *k = q + (size_t)c8 * hw, *v = k + (size_t)c8 * hw, *a = v + plane;
        const float *o = a + (size_t)hw * hw;
        float *dx = dinp ? dinp + b * plane : NULL;
        if (dgamma) {
            float s = 0.0f;
            for (size_t i = 0; i < plane; i++) s += dy[i] * o[i];
            dg += s;
        }
        if (dx)
            for (size_t i = 0; i < plane; i++) dx[i] += dy[i]; /* residual */
        /* dO = gamma dy, folded into alpha below. */
        if (need_v) {
            /* dv (C,HW) = dO (C,HW) A (HW,HW) */
            nn_sgemm(false, false, c, hw, hw, g, dy, hw, a, hw, 0.0f, dv, hw);
            conv1x1_backward(dx, dwv, dbv, dv, wv, x, c, c, hw);
        }
        if (need_qk) {
            /* dA (HW,HW) = dO^T (HW,C) v (C,HW); dE = softmax backward, in place */
            nn_sgemm(true, false, hw, hw, c, g, dy, hw, v, hw, 0.0f, da, hw);
            for (int i = 0; i < hw; i++) {
                float *dr = da + (size_t)i * hw;
                const float *ar = a + (size_t)i * hw;
                float dot = 0.0f;
                for (int j = 0; j < hw; j++) dot += dr[j] * ar[j];
                for (int j = 0; j < hw; j++) dr[j] = ar[j] * (dr[j] - dot);
            }
            /* dq (C8,HW) = k (C8,HW) dE^T; dk (C8,HW) = q (C8,HW) dE */
            nn_sgemm(false, true, c8, hw, hw, 1.0f, k, hw, da, hw, 0.0f, dq, hw);
            nn_sgemm(false, false, c8, hw, hw, 1.0f, q, hw, da, hw, 0.0f, dk, hw);
            conv1x1_backward(dx, dwq, dbq, dq, wq, x, c8, c, hw);
            conv1x1_backward(dx, dwk, dbk, dk, wk, x, c8, c, hw);
        }
    }
    if (dgamma) dgamma[0] += (float)dg;
}
