/* Pooling. Windows are clipped to the input; max pooling records the flat
 * index of the winner inside its input plane (first maximum wins, like
 * PyTorch), so its backward is a scatter. Average pooling divides by the
 * window size including padding (count_include_pad=True). */
#include "nn/pool.h"

#include <assert.h>
#include <stddef.h>

int nn_pool_out(int h, int k, int s, int p) { return (h + 2 * p - k) / s + 1; }

void nn_maxpool2d_forward(float *out, int *argmax, const float *inp, int n, int c, int h, int w,
                          int k, int s, int p)
{
    assert(k > 0 && s > 0 && p >= 0 && 2 * p <= k);
    int ho = nn_pool_out(h, k, s, p), wo = nn_pool_out(w, k, s, p);
    for (size_t pl = 0; pl < (size_t)n * c; pl++) {
        const float *x = inp + pl * h * w;
        float *y = out + pl * ho * wo;
        int *am = argmax + pl * ho * wo;
        for (int oy = 0; oy < ho; oy++) {
            int y0 = oy * s - p, y1 = y0 + k;
            y0 = y0 < 0 ? 0 : y0;
            y1 = y1 > h ? h : y1;
            for (int ox = 0; ox < wo; ox++) {
                int x0 = ox * s - p, x1 = x0 + k;
                x0 = x0 < 0 ? 0 : x0;
                x1 = x1 > w ? w : x1;
                int best = y0 * w + x0;
                float bv = x[best];
                for (int iy = y0; iy < y1; iy++)
                    for (int ix = x0; ix < x1; ix++)
                        if (x[iy * w + ix] > bv) {
                            bv = x[iy * w + ix];
                            best = iy * w + ix;
                        }
                y[oy * wo + ox] = bv;
                am[oy * wo + ox] = best;
            }
        }
    }
}

static void scatter_argmax(float *dinp, const float *dout, const int *argmax, int n, int c, int hw,
                           int ohw)
{
    for (size_t pl = 0; pl < (size_t)n * c; pl++) {
        float *dx = dinp + pl * hw;
        const float *dy = dout + pl * ohw;
        const int *am = argmax + pl * ohw;
        for (int i = 0; i < ohw; i++) dx[am[i]] += dy[i];
    }
}

void nn_maxpool2d_backward(float *dinp, const float *dout, const int *argmax, int n, int c, int h,
                           int w, int k, int s, int p)
{
    int ho = nn_pool_out(h, k, s, p), wo = nn_pool_out(w, k, s, p);
    scatter_argmax(dinp, dout, argmax, n, c, h * w, ho * wo);
}

void nn_avgpool2d_forward(float *out, const float *inp, int n, int c, int h, int w, int k, int s,
                          int p)
{
    assert(k > 0 && s > 0 && p >= 0 && 2 * p <= k);
    int ho = nn_pool_out(h, k, s, p), wo = nn_pool_out(w, k, s, p);
    for (size_t pl = 0; pl < (size_t)n * c; pl++) {
        const float *x = inp + pl * h * w;
        float *y = out + pl * ho * wo;
        for (int oy = 0; oy < ho; oy++) {
            int y0 = oy * s - p, y1 = y0 + k;
            int ye = y1 > h + p ? h + p : y1;
            for (int ox = 0; ox < wo; ox++) {
                int x0 = ox * s - p, x1 = x0 + k;
                int xe = x1 > w + p ? w + p : x1;
                float inv = 1.0f / (float)((ye - y0) * (xe - x0));
                int cy0 = y0 < 0 ? 0 : y0, cy1 = y1 > h ? h : y1;
                int cx0 = x0 < 0 ? 0 : x0, cx1 = x1 > w ? w : x1;
                float sum = 0.0f;
                for (int iy = cy0; iy < cy1; iy++)
                    for (int ix = cx0; ix < cx1; ix++) sum += x[iy * w + ix];
                y[oy * wo + ox] = sum * inv;
            }
        }
    }
}

void nn_avgpool2d_backward(float *dinp, const float *dout, int n, int c, int h, int w, int k, int s,
                           int p)
{
    int ho = nn_pool_out(h, k, s, p), wo = nn_pool_out(w, k, s, p);
    for (size_t pl = 0; pl < (size_t)n * c; pl++) {
        float *dx = dinp + pl * h * w;
        const float *dy = dout + pl * ho * wo;
        for (int oy = 0; oy < ho; oy++) {
            int y0 = oy * s - p, y1 = y0 + k;
            int ye = y1 > h + p ? h + p : y1;
            for (int ox = 0; ox < wo; ox++) {
                int x0 = ox * s - p, x1 = x0 + k;
                int xe = x1 > w + p ? w + p : x1;
                float g = dy[oy * wo + ox] / (float)((ye - y0) * (xe - x0));
                int cy0 = y0 < 0 ? 0 : y0, cy1 = y1 > h ? h : y1;
                int cx0 = x0 < 0 ? 0 : x0, cx1 = x1 > w ? w : x1;
                for (int iy = cy0; iy < cy1; iy++)
                    for (int ix = cx0; ix < cx1; ix++) dx[iy * w + ix] += g;
            }
        }
    }
}

void nn_gap_forward(float *out, const float *inp, int n, int c, int hw)
{
    assert(hw > 0);
    for (size_t pl = 0; pl < (size_t)n * c; pl++) {
        const float *x = inp + pl * hw;
        float sum = 0.0f;
        for (int i = 0; i < hw; i++) sum += x[i];
        out[pl] = sum / (float)hw;
    }
}

void nn_gap_backward(float *dinp, const float *dout, int n, int c, int hw)
{
    for (size_t pl = 0; pl < (size_t)n * c; pl++) {
        float g = dout[pl] / (float)hw;
        float *dx = dinp + pl * hw;
        for (int i = 0; i < hw; i++) dx[i] += g;
    }
}

/* PyTorch's adaptive bin: [floor(i*h/o), ceil((i+1)*h/o)). */
static int bin_start(int i, int h, int o) { return (i * h) / o; }
static int bin_end(int i, int h, int o) { return ((i + 1) * h + o - 1) / o; }

void nn_adaptive_maxpool2d_forward(float *out, int *argmax, const float *inp, int n, int c, int h,
                                   int w, int oh, int ow)
{
    assert(oh > 0 && ow > 0 && h > 0 && w > 0);
    for (size_t pl = 0; pl < (size_t)n * c; pl++) {
        const float *x = inp + pl * h * w;
        float *y = out + pl * oh * ow;
        int *am = argmax + pl * oh * ow;
        for (int oy = 0; oy < oh; oy++) {
            int y0 = bin_start(oy, h, oh), y1 = bin_end(oy, h, oh);
            for (int ox = 0; ox < ow; ox++) {
                int x0 = bin_start(ox, w, ow), x1 = bin_end(ox, w, ow);
                int best = y0 * w + x0;
                float bv = x[best];
                for (int iy = y0; iy < y1; iy++)
                    for (int ix = x0; ix < x1; ix++)
                        if (x[iy * w + ix] > bv) {
                            bv = x[iy * w + ix];
                            best = iy * w + ix;
                        }
                y[oy * ow + ox] = bv;
                am[oy * ow + ox] = best;
            }
        }
    }
}

void nn_adaptive_maxpool2d_backward(float *dinp, const float *dout, const int *argmax, int n, int c,
                                    int h, int w, int oh, int ow)
{
    scatter_argmax(dinp, dout, argmax, n, c, h * w, oh * ow);
}

void nn_adaptive_avgpool2d_forward(float *out, const float *inp, int n, int c, int h, int w, int oh,
                                   int ow)
{
    assert(oh > 0 && ow > 0 && h > 0 && w > 0);
    for (size_t pl = 0; pl < (size_t)n * c; pl++) {
        const float *x = inp + pl * h * w;
        float *y = out + pl * oh * ow;
        for (int oy = 0; oy < oh; oy++) {
            int y0 = bin_start(oy, h, oh), y1 = bin_end(oy, h, oh);
            for (int ox = 0; ox < ow; ox++) {
                int x0 = bin_start(ox, w, ow), x1 = bin_end(ox, w, ow);
                float sum = 0.0f;
                for (int iy = y0; iy < y1; iy++)
                    for (int ix = x0; ix < x1; ix++) sum += x[iy * w + ix];
                y[oy * ow + ox] = sum / (float)((y1 - y0) * (x1 - x0));
            }
        }
    }
}

void nn_adaptive_avgpool2d_backward(float *dinp, const float *dout, int n, int c, int h, int w,
                                    int oh, int ow)
{
    for (size_t pl = 0; pl < (size_t)n * c; pl++) {
        float *dx = dinp + pl * h * w;
        const float *dy = dout + pl * oh * ow;
        for (int oy = 0; oy < oh; oy++) {
            int y0 = bin_start(oy, h, oh), y1 = bin_end(oy, h, oh);
            for (int ox = 0; ox < ow; ox++) {
                int x0 = bin_start(ox, w, ow), x1 = bin_end(ox, w, ow);
                float g = dy[oy * ow + ox] / (float)((y1 - y0) * (x1 - x0));
                for (int iy = y0; iy < y1; iy++)
                    for (int ix = x0; ix < x1; ix++) dx[iy * w + ix] += g;
            }
        }
    }
}
