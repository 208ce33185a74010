/* Elementwise activations and row softmax. Plain contiguous loops the compiler
 * can vectorise; backward passes accumulate into dinp. The softmax and the
 * leaky ReLU use GCC/Clang vector extensions (16 floats: four SSE2 registers
 * in the portable build), because -O2 does not vectorise loops that need a
 * remainder, and the softmax's exp is a polynomial rather than a call to expf
 * per element: SAGAN attention at 23x23 positions takes 280 k exponentials
 * per image, which were a third of a width-16 forward. The softmax is also
 * compiled for AVX2+FMA and AVX-512F and picked at run time on x86-64 (one
 * zmm register per vector there; the same polynomial, so the paths differ by
 * rounding only: FMA contraction and nothing else). */
#include "nn/act.h"
#include "nn/gemm.h"

#include <assert.h>
#include <math.h>
#include <string.h>

#if defined(__GNUC__) /* GCC and Clang */
/* The 64-byte vectors only pass between always_inline helpers: no call ABI. */
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
#define VW 16 /* floats per vector */
typedef float vf __attribute__((vector_size(VW * 4)));
typedef int vi __attribute__((vector_size(VW * 4)));

/* m ? a : b lanewise, m from a vector comparison (all ones or zero). */
static inline __attribute__((always_inline)) vf v_sel(vi m, vf a, vf b)
{
    return (vf)(((vi)a & m) | ((vi)b & ~m));
}

static inline __attribute__((always_inline)) vf v_load(const float *p)
{
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline __attribute__((always_inline)) void v_store(float *p, vf v)
{
    memcpy(p, &v, sizeof v);
}

static inline __attribute__((always_inline)) vf v_splat(float x) { return x - (vf){0}; }

/* exp(x) for x <= 0 (softmax arguments): Cephes' expf (range reduction by
 * ln 2 in two parts, degree-5 polynomial, relative error ~1e-7); exactly 0
 * below -87.3 (where expf goes subnormal), NaN stays NaN. */
static inline __attribute__((always_inline)) vf v_exp_nonpos(vf x)
{
    const vf lo = v_splat(-87.3f);
    const vi under = x < lo;
    x = v_sel(under, lo, x);
    const vf magic = v_splat(12582912.0f); /* 1.5 * 2^23: round to nearest */
    vf n = x * v_splat(1.44269504088896341f) + magic;
    n = n - magic;
    vf r = x - n * v_splat(0.693359375f);
    r = r + n * v_splat(2.12194440e-4f);
    vf p = v_splat(1.9875691500e-4f);
    p = p * r + v_splat(1.3981999507e-3f);
    p = p * r + v_splat(8.3334519073e-3f);
    p = p * r + v_splat(4.1665795894e-2f);
    p = p * r + v_splat(1.6666665459e-1f);
    p = p * r + v_splat(5.0000001201e-1f);
    p = p * r * r + r + v_splat(1.0f);
    vi e = (__builtin_convertvector(n, vi) + 127) << 23;
    vf scale;
    memcpy(&scale, &e, sizeof scale);
    vf y = p * scale;
    return v_sel(under, v_splat(0.0f), y);
}

static inline __attribute__((always_inline)) float v_hsum(vf v)
{
    float s = 0.0f;
    for (int l = 0; l < VW; l++) s += v[l];
    return s;
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
    const vf zero = v_splat(0.0f), s = v_splat(slope);
    size_t i = 0;
    for (; i + VW <= n; i += VW) {
        vf x = v_load(inp + i);
        v_store(out + i, v_sel(x > zero, x, s * x));
    }
    for (; i < n; i++) out[i] = inp[i] > 0.0f ? inp[i] : slope * inp[i];
}

/* PyTorch's rule: the slope applies where inp <= 0. */
void nn_leakyrelu_backward(float *dinp, const float *dout, const float *inp, size_t n, float slope)
{
    const vf zero = v_splat(0.0f), s = v_splat(slope);
    size_t i = 0;
    for (; i + VW <= n; i += VW) {
        vf x = v_load(inp + i), dy = v_load(dout + i);
        v_store(dinp + i, v_load(dinp + i) + v_sel(x > zero, dy, s * dy));
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
 * The last partial vector of a row goes through a padded copy. Inlined into
 * one function per instruction set below. */
static inline __attribute__((always_inline)) void softmax_rows(float *out, const float *inp,
                                                               int rows, int k)
{
    const int kv = k - k % VW, rem = k - kv;
    for (int r = 0; r < rows; r++) {
        const float *x = inp + (size_t)r * k;
        float *y = out + (size_t)r * k;
        float mx = x[0];
        vf vm = v_splat(x[0]);
        for (int j = 0; j < kv; j += VW) {
            vf v = v_load(x + j);
            vm = v_sel(v > vm, v, vm);
        }
        for (int l = 0; l < VW; l++) mx = vm[l] > mx ? vm[l] : mx;
        for (int j = kv; j < k; j++) mx = x[j] > mx ? x[j] : mx;
        const vf vmx = v_splat(mx);
        vf vs = v_splat(0.0f);
        for (int j = 0; j < kv; j += VW) {
            vf e = v_exp_nonpos(v_load(x + j) - vmx);
            v_store(y + j, e);
            vs += e;
        }
        if (rem) {
            float t[VW];
            for (int l = 0; l < VW; l++) t[l] = l < rem ? x[kv + l] - mx : -INFINITY;
            vf e = v_exp_nonpos(v_load(t));
            vs += e; /* padding lanes are exactly 0 */
            v_store(t, e);
            memcpy(y + kv, t, sizeof(float) * (size_t)rem);
        }
        const float inv = 1.0f / v_hsum(vs);
        const vf vinv = v_splat(inv);
        for (int j = 0; j < kv; j += VW) v_store(y + j, v_load(y + j) * vinv);
        for (int j = kv; j < k; j++) y[j] *= inv;
    }
}

static void softmax_portable(float *out, const float *inp, int rows, int k)
{
    softmax_rows(out, inp, rows, k);
}

#if defined(__x86_64__) && defined(__GNUC__)
#define ACT_X86 1
__attribute__((target("avx2,fma"))) static void softmax_avx2(float *out, const float *inp, int rows,
                                                             int k)
{
    softmax_rows(out, inp, rows, k);
}

__attribute__((target("avx512f"))) static void softmax_avx512(float *out, const float *inp,
                                                              int rows, int k)
{
    softmax_rows(out, inp, rows, k);
}
#endif

/* The instruction set is nn_gemm's choice (the best this CPU has; DP_GEMM or
 * nn_gemm_set_path forces one, which is how the tests run every path). */
void nn_softmax_forward(float *out, const float *inp, int rows, int k)
{
    assert(rows >= 0 && k > 0);
    switch (nn_gemm_get_path()) {
#ifdef ACT_X86
    case NN_GEMM_AVX512:
        softmax_avx512(out, inp, rows, k);
        return;
    case NN_GEMM_AVX2:
        softmax_avx2(out, inp, rows, k);
        return;
#endif
    default:
        softmax_portable(out, inp, rows, k);
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
