/* Elementwise activations and row softmax. Plain contiguous loops the compiler
 * can vectorise; backward passes accumulate into dinp. */
#include "nn/act.h"

#include <assert.h>
#include <math.h>

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
    for (size_t i = 0; i < n; i++) out[i] = inp[i] > 0.0f ? inp[i] : slope * inp[i];
}

/* PyTorch's rule: the slope applies where inp <= 0. */
void nn_leakyrelu_backward(float *dinp, const float *dout, const float *inp, size_t n, float slope)
{
    for (size_t i = 0; i < n; i++) dinp[i] += inp[i] > 0.0f ? dout[i] : slope * dout[i];
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

void nn_softmax_forward(float *out, const float *inp, int rows, int k)
{
    assert(rows >= 0 && k > 0);
    for (int r = 0; r < rows; r++) {
        const float *x = inp + (size_t)r * k;
        float *y = out + (size_t)r * k;
        float mx = x[0];
        for (int j = 1; j < k; j++) mx = x[j] > mx ? x[j] : mx;
        float sum = 0.0f;
        for (int j = 0; j < k; j++) {
            y[j] = expf(x[j] - mx);
            sum += y[j];
        }
        float inv = 1.0f / sum;
        for (int j = 0; j < k; j++) y[j] *= inv;
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
