/* SAGAN self-attention. Per image, x is (C,HW) and every product is one
 * nn_sgemm:
 *   q = Wq x + bq (C8,HW), k = Wk x + bk (C8,HW), v = Wv x + bv (C,HW)
 *   E = q^T k (HW,HW), A = softmax_rows(E), O = v A^T (C,HW)
 *   out = gamma O + x
 * The cache keeps q, k, v, A, O per image; backward reuses one image-sized
 * workspace for dv, dA (then dE in place), dq, dk. */
#include "nn/attention.h"

#include <assert.h>
#include <stdbool.h>
#include <string.h>

#include "nn/act.h"
#include "nn/blas.h"
#include "nn/gemm.h"

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

static void att_rows_run(const att_rows_t *j)
{
    const int rows = j->i1 - j->i0, hw = j->hw;
    if (rows <= 0) return;
    float *a = j->a + (size_t)j->i0 * hw;
    nn_sgemm(true, false, rows, hw, j->c8, 1.0f, j->q + j->i0, hw, j->k, hw, 0.0f, a, hw);
    nn_softmax_forward(a, a, rows, hw);
    nn_sgemm(false, true, j->c, rows, hw, 1.0f, j->v, hw, a, hw, 0.0f, j->o + j->i0, hw);
}

#define ATT_UNITS_MAX 16
#define ATT_UNIT_MACS ((size_t)1 << 20)

/* Row blocks of one image: a fixed partition by the shape alone (about 1 M
 * multiply-adds each), so the result does not depend on the thread count. */
typedef struct att_units {
    att_rows_t base;
    int nunits;
} att_units_t;

static int att_nunits(int c, int c8, int hw)
{
    const size_t macs = (size_t)hw * hw * (size_t)(c + c8);
    size_t u = macs / ATT_UNIT_MACS;
    if (u > ATT_UNITS_MAX) u = ATT_UNITS_MAX;
    if (u > (size_t)hw / 8) u = (size_t)hw / 8;
    return u > 1 ? (int)u : 1;
}

static void att_unit_run(void *ctx, int u)
{
    const att_units_t *p = ctx;
    att_rows_t j = p->base;
    const int hw = j.hw;
    j.i0 = (int)((long)hw * u / p->nunits);
    j.i1 = (int)((long)hw * (u + 1) / p->nunits);
    att_rows_run(&j);
}

void nn_attention_forward(float *out, float *cache, const float *inp, const float *wq,
                          const float *bq, const float *wk, const float *bk, const float *wv,
                          const float *bv, const float *gamma, int n, int c, int hw)
{
    nn_attention_forward_mt(out, cache, inp, wq, bq, wk, bk, wv, bv, gamma, n, c, hw,
                            nn_get_threads());
}

void nn_attention_forward_mt(float *out, float *cache, const float *inp, const float *wq,
                             const float *bq, const float *wk, const float *bk, const float *wv,
                             const float *bv, const float *gamma, int n, int c, int hw, int threads)
{
    assert(n > 0 && c > 0 && hw > 0);
    int c8 = c8_of(c);
    size_t plane = (size_t)c * hw;
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
        att_units_t job = {{q, k, v, a, o, c, c8, hw, 0, hw}, att_nunits(c, c8, hw)};
        nn_parallel_for(job.nunits, threads, att_unit_run, &job);
        float g = gamma[0];
        for (size_t i = 0; i < plane; i++) y[i] = g * o[i] + x[i];
    }
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
