/* Elementwise activations and row softmax. Plain contiguous loops the compiler
 * can vectorise; backward passes accumulate into dinp. The softmax and the
 * leaky ReLU use GCC/Clang vector extensions (4 floats: SSE2 in the portable
 * build), because -O2 does not vectorise loops
 * that need a remainder, and the softmax's exp is a polynomial rather than a
 * call to expf per element: SAGAN attention at 23x23 positions takes 280 k
 * exponentials per image, which were a third of a width-16 forward. */
#include "nn/act.h"

#include <assert.h>
#include <math.h>
#include <string.h>

typedef float v4f __attribute__((vector_size(16)));
typedef int v4i __attribute__((vector_size(16)));

/* m ? a : b lanewise, m from a vector comparison (all ones or zero). */
static inline __attribute__((always_inline)) v4f v4_sel(v4i m, v4f a, v4f b)
{
    return (v4f)(((v4i)a & m) | ((v4i)b & ~m));
}

static inline __attribute__((always_inline)) v4f v4_load(const float *p)
{
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline __attribute__((always_inline)) void v4_store(float *p, v4f v)
{
    memcpy(p, &v, sizeof v);
}

static inline __attribute__((always_inline)) v4f v4_splat(float x) { return (v4f){x, x, x, x}; }

/* exp(x) for x <= 0 (softmax arguments): Cephes' expf (range reduction by
 * ln 2 in two parts, degree-5 polynomial, relative error ~1e-7); exactly 0
 * below -87.3 (where expf goes subnormal), NaN stays NaN. */
static inline __attribute__((always_inline)) v4f v4_exp_nonpos(v4f x)
{
    const v4f lo = v4_splat(-87.3f);
    const v4i under = x < lo;
    x = v4_sel(under, lo, x);
    const v4f magic = v4_splat(12582912.0f); /* 1.5 * 2^23: round to nearest */
    v4f n = x * v4_splat(1.44269504088896341f) + magic;
    n = n - magic;
    v4f r = x - n * v4_splat(0.693359375f);
    r = r + n * v4_splat(2.12194440e-4f);
    v4f p = v4_splat(1.9875691500e-4f);
    p = p * r + v4_splat(1.3981999507e-3f);
    p = p * r + v4_splat(8.3334519073e-3f);
    p = p * r + v4_splat(4.1665795894e-2f);
    p = p * r + v4_splat(1.6666665459e-1f);
    p = p * r + v4_splat(5.0000001201e-1f);
    p = p * r * r + r + v4_splat(1.0f);
    v4i e = (__builtin_convertvector(n, v4i) + 127) << 23;
    v4f scale;
    memcpy(&scale, &e, sizeof scale);
    v4f y = p * scale;
    return v4_sel(under, v4_splat(0.0f), y);
}

void nn_relu_forward(float *out, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}

void nn_relu_backward(float *dinp, const float *dout, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++) dinp[i] += inp[i] > 0.0f ? dout[i] : 0.0f;
}

void nn_leakyrelu_forward(float *out, const float *inp, size_t n, float slope)
{
    const v4f zero = v4_splat(0.0f), s = v4_splat(slope);
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        v4f x = v4_load(inp + i);
        v4_store(out + i, v4_sel(x > zero, x, s * x));
    }
    for (; i < n; i++) out[i] = inp[i] > 0.0f ? inp[i] : slope * inp[i];
}

/* PyTorch's rule: the slope applies where inp <= 0. */
void nn_leakyrelu_backward(float *dinp, const float *dout, const float *inp, size_t n, float slope)
{
    const v4f zero = v4_splat(0.0f), s = v4_splat(slope);
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        v4f x = v4_load(inp + i), dy = v4_load(dout + i);
        v4_store(dinp + i, v4_load(dinp + i) + v4_sel(x > zero, dy, s * dy));
    }
    for (; i < n; i++) dinp[i] += inp[i] > 0.0f ? dout[i] : slope * dout[i];
}

/* Stable on both sides: exp of a non-positive number only. */
void nn_sigmoid_forward(float *out, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        if (x >= 0.0f) {
            out[i] = 1.0f / (1.0f + expf(-x));
        } else {
            float e = expf(x);
            out[i] = e / (1.0f + e);
        }
    }
}

void nn_sigmoid_backward(float *dinp, const float *dout, const float *out, size_t n)
{
    for (size_t i = 0; i < n; i++) dinp[i] += dout[i] * out[i] * (1.0f - out[i]);
}

void nn_tanh_forward(float *out, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = tanhf(inp[i]);
}

void nn_tanh_backward(float *dinp, const float *dout, const float *out, size_t n)
{
    for (size_t i = 0; i < n; i++) dinp[i] += dout[i] * (1.0f - out[i] * out[i]);
}

/* Rows of k: max, then exp(x - max) and its sum in one pass, then the scale.
 * The last partial vector of a row goes through a padded copy. */
void nn_softmax_forward(float *out, const float *inp, int rows, int k)
{
    assert(rows >= 0 && k > 0);
    const int k4 = k & ~3, rem = k - k4;
    for (int r = 0; r < rows; r++) {
        const float *x = inp + (size_t)r * k;
        float *y = out + (size_t)r * k;
        float mx = x[0];
        v4f vm = v4_splat(x[0]);
        for (int j = 0; j < k4; j += 4) {
            v4f v = v4_load(x + j);
            vm = v4_sel(v > vm, v, vm);
        }
        for (int l = 0; l < 4; l++) mx = vm[l] > mx ? vm[l] : mx;
        for (int j = k4; j < k; j++) mx = x[j] > mx ? x[j] : mx;
        const v4f vmx = v4_splat(mx);
        v4f vs = v4_splat(0.0f);
        for (int j = 0; j < k4; j += 4) {
            v4f e = v4_exp_nonpos(v4_load(x + j) - vmx);
            v4_store(y + j, e);
            vs += e;
        }
        if (rem) {
            float t[4];
            for (int l = 0; l < 4; l++) t[l] = l < rem ? x[k4 + l] - mx : -INFINITY;
            v4f e = v4_exp_nonpos(v4_load(t));
            vs += e; /* padding lanes are exactly 0 */
            v4_store(t, e);
            memcpy(y + k4, t, sizeof(float) * (size_t)rem);
        }
        float sum = 0.0f;
        for (int l = 0; l < 4; l++) sum += vs[l];
        const v4f inv = v4_splat(1.0f / sum);
        for (int j = 0; j < k4; j += 4) v4_store(y + j, v4_load(y + j) * inv);
        for (int j = k4; j < k; j++) y[j] *= inv[0];
    }
}

/* dx_j = y_j (dy_j - sum_l dy_l y_l). */
void nn_softmax_backward(float *dinp, const float *dout, const float *out, int rows, int k)
{
    assert(rows >= 0 && k > 0);
    for (int r = 0; r < rows; r++) {
        const float *dy = dout + (size_t)r * k;
        const float *y = out + (size_t)r * k;
        float *dx = dinp + (size_t)r * k;
        float dot = 0.0f;
        for (int j = 0; j < k; j++) dot += dy[j] * y[j];
        for (int j = 0; j < k; j++) dx[j] += y[j] * (dy[j] - dot);
    }
}
