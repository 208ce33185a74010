/* One LSTM cell step (PyTorch gate order i, f, g, o). The pre-activation
 * gates are written straight into the cache rows (row stride 5H) by two
 * nn_sgemm calls onto the summed biases, then activated in place; the last H
 * floats of each cache row hold tanh(c'). */
#include "nn/lstm.h"

#include <assert.h>
#include <math.h>
#include <stddef.h>

#include "nn/blas.h"

static float sigmoidf(float x)
{
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

void nn_lstm_cell_forward(float *h_out, float *c_out, float *cache, const float *x,
                          const float *h_prev, const float *c_prev, const float *w_ih,
                          const float *w_hh, const float *b_ih, const float *b_hh, int n, int in,
                          int hid)
{
    assert(n > 0 && in > 0 && hid > 0);
    int g4 = 4 * hid, ld = 5 * hid;
    for (int b = 0; b < n; b++) {
        float *row = cache + (size_t)b * ld;
        for (int j = 0; j < g4; j++) row[j] = (b_ih ? b_ih[j] : 0.0f) + (b_hh ? b_hh[j] : 0.0f);
    }
    /* gates (N,4H) += x (N,I) * w_ih^T (I,4H) + h_prev (N,H) * w_hh^T (H,4H) */
    nn_sgemm(false, true, n, g4, in, 1.0f, x, in, w_ih, in, 1.0f, cache, ld);
    if (h_prev) nn_sgemm(false, true, n, g4, hid, 1.0f, h_prev, hid, w_hh, hid, 1.0f, cache, ld);
    for (int b = 0; b < n; b++) {
        float *ig = cache + (size_t)b * ld, *fg = ig + hid, *gg = fg + hid, *og = gg + hid;
        float *tc = og + hid;
        const float *cp = c_prev ? c_prev + (size_t)b * hid : NULL;
        float *co = c_out + (size_t)b * hid, *ho = h_out + (size_t)b * hid;
        for (int j = 0; j < hid; j++) {
            ig[j] = sigmoidf(ig[j]);
            fg[j] = sigmoidf(fg[j]);
            gg[j] = tanhf(gg[j]);
            og[j] = sigmoidf(og[j]);
            float cn = ig[j] * gg[j] + (cp ? fg[j] * cp[j] : 0.0f);
            tc[j] = tanhf(cn);
            co[j] = cn;
            ho[j] = og[j] * tc[j];
        }
    }
}

void nn_lstm_cell_backward(float *dx, float *dh_prev, float *dc_prev, float *dw_ih, float *dw_hh,
                           float *db_ih, float *db_hh, const float *dh_out, const float *dc_out,
                           const float *cache, const float *x, const float *h_prev,
                           const float *c_prev, const float *w_ih, const float *w_hh, int n, int in,
                           int hid, float *ws)
{
    assert(n > 0 && in > 0 && hid > 0);
    int g4 = 4 * hid, ld = 5 * hid;
    /* ws (N,4H): gradient of the pre-activation gates. */
    for (int b = 0; b < n; b++) {
        const float *ig = cache + (size_t)b * ld, *fg = ig + hid, *gg = fg + hid, *og = gg + hid;
        const float *tc = og + hid;
        const float *dh = dh_out + (size_t)b * hid;
        const float *dcn = dc_out ? dc_out + (size_t)b * hid : NULL;
        const float *cp = c_prev ? c_prev + (size_t)b * hid : NULL;
        float *di = ws + (size_t)b * g4, *df = di + hid, *dg = df + hid, *dov = dg + hid;
        float *dcp = dc_prev ? dc_prev + (size_t)b * hid : NULL;
        for (int j = 0; j < hid; j++) {
            float dc = (dcn ? dcn[j] : 0.0f) + dh[j] * og[j] * (1.0f - tc[j] * tc[j]);
            dov[j] = dh[j] * tc[j] * og[j] * (1.0f - og[j]);
            di[j] = dc * gg[j] * ig[j] * (1.0f - ig[j]);
            df[j] = cp ? dc * cp[j] * fg[j] * (1.0f - fg[j]) : 0.0f;
            dg[j] = dc * ig[j] * (1.0f - gg[j] * gg[j]);
            if (dcp) dcp[j] += dc * fg[j];
        }
    }
    /* dx (N,I) += dgates (N,4H) * w_ih (4H,I); dh_prev (N,H) += dgates * w_hh (4H,H) */
    if (dx) nn_sgemm(false, false, n, in, g4, 1.0f, ws, g4, w_ih, in, 1.0f, dx, in);
    if (dh_prev) nn_sgemm(false, false, n, hid, g4, 1.0f, ws, g4, w_hh, hid, 1.0f, dh_prev, hid);
    /* dw_ih (4H,I) += dgates^T (4H,N) * x (N,I); dw_hh (4H,H) += dgates^T * h_prev (N,H) */
    if (dw_ih) nn_sgemm(true, false, g4, in, n, 1.0f, ws, g4, x, in, 1.0f, dw_ih, in);
    if (dw_hh && h_prev)
        nn_sgemm(true, false, g4, hid, n, 1.0f, ws, g4, h_prev, hid, 1.0f, dw_hh, hid);
    for (int b = 0; b < n; b++) {
        const float *dgt = ws + (size_t)b * g4;
        if (db_ih)
            for (int j = 0; j < g4; j++) db_ih[j] += dgt[j];
        if (db_hh)
            for (int j = 0; j < g4; j++) db_hh[j] += dgt[j];
    }
}
