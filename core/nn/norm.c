/* BatchNorm2d and InstanceNorm2d (PyTorch semantics). Statistics are summed in
 * 8 float lanes over blocks of a plane and folded into double: a BatchNorm
 * channel spans N*H*W values, too many for one float running sum, and plain
 * double sums do not vectorise. The normalisation and its backward are one
 * contiguous loop per (image, channel) plane. */
#include "nn/norm.h"

#include <assert.h>
#include <math.h>
#include <stddef.h>

/* Sums over one plane in 8 float lanes (vectorisable), folded into double
 * every block so the lanes never sum more than NORM_BLOCK/8 values. */
#define NORM_LANES 8
#define NORM_BLOCK 1024

static double plane_sum(const float *x, int hw)
{
    double s = 0.0;
    for (int b0 = 0; b0 < hw; b0 += NORM_BLOCK) {
        int e = b0 + NORM_BLOCK < hw ? b0 + NORM_BLOCK : hw, i = b0;
        float acc[NORM_LANES] = {0};
        for (; i + NORM_LANES <= e; i += NORM_LANES)
            for (int l = 0; l < NORM_LANES; l++) acc[l] += x[i + l];
        for (; i < e; i++) acc[0] += x[i];
        for (int l = 0; l < NORM_LANES; l++) s += acc[l];
    }
    return s;
}

/* sum (x - m)^2 */
static double plane_sqdev(const float *x, int hw, float m)
{
    double s = 0.0;
    for (int b0 = 0; b0 < hw; b0 += NORM_BLOCK) {
        int e = b0 + NORM_BLOCK < hw ? b0 + NORM_BLOCK : hw, i = b0;
        float acc[NORM_LANES] = {0};
        for (; i + NORM_LANES <= e; i += NORM_LANES)
            for (int l = 0; l < NORM_LANES; l++) {
                float d = x[i + l] - m;
                acc[l] += d * d;
            }
        for (; i < e; i++) acc[0] += (x[i] - m) * (x[i] - m);
        for (int l = 0; l < NORM_LANES; l++) s += acc[l];
    }
    return s;
}

/* sum dy and sum dy (x - m), for the backward passes. */
static void plane_dsums(const float *dy, const float *x, int hw, float m, double *sdy, double *sdyx)
{
    for (int b0 = 0; b0 < hw; b0 += NORM_BLOCK) {
        int e = b0 + NORM_BLOCK < hw ? b0 + NORM_BLOCK : hw, i = b0;
        float a[NORM_LANES] = {0}, b[NORM_LANES] = {0};
        for (; i + NORM_LANES <= e; i += NORM_LANES)
            for (int l = 0; l < NORM_LANES; l++) {
                a[l] += dy[i + l];
                b[l] += dy[i + l] * (x[i + l] - m);
            }
        for (; i < e; i++) {
            a[0] += dy[i];
            b[0] += dy[i] * (x[i] - m);
        }
        for (int l = 0; l < NORM_LANES; l++) {
            *sdy += a[l];
            *sdyx += b[l];
        }
    }
}

/* Mean and biased variance of one channel across the batch: planes of hw
 * floats, stride floats apart. Two passes, for accuracy when |mean| >> std;
 * the deviations are taken from the float mean that the kernels will use. */
static void channel_stats(const float *x, int n, int hw, size_t stride, double *mean, double *var)
{
    double s = 0.0;
    for (int b = 0; b < n; b++) s += plane_sum(x + (size_t)b * stride, hw);
    double cnt = (double)n * hw, m = s / cnt;
    float mf = (float)m;
    double ss = 0.0;
    for (int b = 0; b < n; b++) ss += plane_sqdev(x + (size_t)b * stride, hw, mf);
    double dm = m - mf; /* sum (x - m)^2 = sum (x - mf)^2 - cnt (m - mf)^2 */
    *mean = m;
    *var = ss / cnt - dm * dm;
}

void nn_batchnorm_forward_train(float *out, float *mean, float *rstd, const float *inp,
                                const float *gamma, const float *beta, float *running_mean,
                                float *running_var, int n, int c, int hw, float momentum, float eps)
{
    assert(n > 0 && c > 0 && hw > 0);
    size_t stride = (size_t)c * hw;
    double cnt = (double)n * hw;
    for (int ch = 0; ch < c; ch++) {
        double m, var;
        channel_stats(inp + (size_t)ch * hw, n, hw, stride, &m, &var);
        float mf = (float)m;
        float rs = (float)(1.0 / sqrt(var + eps));
        mean[ch] = mf;
        rstd[ch] = rs;
        if (running_mean) running_mean[ch] = (1.0f - momentum) * running_mean[ch] + momentum * mf;
        if (running_var) {
            double unbiased = cnt > 1.0 ? var * cnt / (cnt - 1.0) : var;
            running_var[ch] = (1.0f - momentum) * running_var[ch] + momentum * (float)unbiased;
        }
        /* (x - mean) first: exact for x near the mean, so a large common
         * offset does not cancel away the signal. */
        float scale = (gamma ? gamma[ch] : 1.0f) * rs;
        float shift = beta ? beta[ch] : 0.0f;
        for (int b = 0; b < n; b++) {
            const float *x = inp + (size_t)b * stride + (size_t)ch * hw;
            float *y = out + (size_t)b * stride + (size_t)ch * hw;
            for (int i = 0; i < hw; i++) y[i] = (x[i] - mf) * scale + shift;
        }
    }
}

void nn_batchnorm_forward_eval(float *out, const float *inp, const float *gamma, const float *beta,
                               const float *running_mean, const float *running_var, int n, int c,
                               int hw, float eps)
{
    assert(n > 0 && c > 0 && hw > 0);
    size_t stride = (size_t)c * hw;
    for (int ch = 0; ch < c; ch++) {
        float rs = (float)(1.0 / sqrt((double)running_var[ch] + eps));
        float scale = (gamma ? gamma[ch] : 1.0f) * rs;
        float shift = beta ? beta[ch] : 0.0f, m = running_mean[ch];
        for (int b = 0; b < n; b++) {
            const float *x = inp + (size_t)b * stride + (size_t)ch * hw;
            float *y = out + (size_t)b * stride + (size_t)ch * hw;
            for (int i = 0; i < hw; i++) y[i] = (x[i] - m) * scale + shift;
        }
    }
}

/* With xhat = (x - mean) * rstd and M values per channel:
 *   dbeta = sum dy, dgamma = sum dy * xhat,
 *   dx = gamma * rstd / M * (M dy - dbeta - xhat * dgamma). */
void nn_batchnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                           const float *inp, const float *mean, const float *rstd,
                           const float *gamma, int n, int c, int hw)
{
    assert(n > 0 && c > 0 && hw > 0);
    size_t stride = (size_t)c * hw;
    double cnt = (double)n * hw;
    for (int ch = 0; ch < c; ch++) {
        float m = mean[ch], rs = rstd[ch];
        double sdy = 0.0, sdyx = 0.0;
        for (int b = 0; b < n; b++) {
            size_t off = (size_t)b * stride + (size_t)ch * hw;
            plane_dsums(dout + off, inp + off, hw, m, &sdy, &sdyx);
        }
        sdyx *= rs; /* sum dy * xhat */
        if (dbeta) dbeta[ch] += (float)sdy;
        if (dgamma) dgamma[ch] += (float)sdyx;
        if (!dinp) continue;
        float k = (gamma ? gamma[ch] : 1.0f) * rs;
        float a = (float)(sdy / cnt);
        float bx = (float)(sdyx / cnt) * rs; /* per unit of xhat, folded with rstd */
        for (int b = 0; b < n; b++) {
            const float *x = inp + (size_t)b * stride + (size_t)ch * hw;
            const float *dy = dout + (size_t)b * stride + (size_t)ch * hw;
            float *dx = dinp + (size_t)b * stride + (size_t)ch * hw;
            for (int i = 0; i < hw; i++) dx[i] += k * (dy[i] - a - (x[i] - m) * bx);
        }
    }
}

void nn_instnorm_forward(float *out, float *mean, float *rstd, const float *inp, int n, int c,
                         int hw, float eps)
{
    assert(n > 0 && c > 0 && hw > 0);
    for (size_t p = 0; p < (size_t)n * c; p++) {
        const float *x = inp + p * hw;
        float *y = out + p * hw;
        double m, var;
        channel_stats(x, 1, hw, 0, &m, &var);
        float mf = (float)m;
        float rs = (float)(1.0 / sqrt(var + eps));
        mean[p] = mf;
        rstd[p] = rs;
        for (int i = 0; i < hw; i++) y[i] = (x[i] - mf) * rs;
    }
}

void nn_instnorm_backward(float *dinp, const float *dout, const float *inp, const float *mean,
                          const float *rstd, int n, int c, int hw)
{
    assert(n > 0 && c > 0 && hw > 0);
    for (size_t p = 0; p < (size_t)n * c; p++) {
        const float *x = inp + p * hw;
        const float *dy = dout + p * hw;
        float *dx = dinp + p * hw;
        float m = mean[p], rs = rstd[p];
        double sdy = 0.0, sdyx = 0.0;
        plane_dsums(dy, x, hw, m, &sdy, &sdyx);
        float a = (float)(sdy / hw);
        float bx = (float)(sdyx / hw) * rs * rs;
        for (int i = 0; i < hw; i++) dx[i] += rs * (dy[i] - a - (x[i] - m) * bx);
    }
}
