/* Fully connected layer: one nn_sgemm each way. The bias is broadcast into the
 * output first so the product accumulates onto it (beta = 1). */
#include "nn/linear.h"

#include <assert.h>
#include <stddef.h>
#include <string.h>

#include "nn/blas.h"

void nn_linear_forward(float *out, const float *inp, const float *weight, const float *bias, int n,
                       int in, int outf)
{
    assert(n > 0 && in > 0 && outf > 0);
    if (bias) {
        for (int b = 0; b < n; b++) memcpy(out + (size_t)b * outf, bias, sizeof(float) * outf);
    }
    /* out (N,OUT) = inp (N,IN) * weight^T (IN,OUT) */
    nn_sgemm(false, true, n, outf, in, 1.0f, inp, in, weight, in, bias ? 1.0f : 0.0f, out, outf);
}

void nn_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, int n, int in, int outf)
{
    assert(n > 0 && in > 0 && outf > 0);
    /* dinp (N,IN) += dout (N,OUT) * weight (OUT,IN) */
    if (dinp) nn_sgemm(false, false, n, in, outf, 1.0f, dout, outf, weight, in, 1.0f, dinp, in);
    /* dweight (OUT,IN) += dout^T (OUT,N) * inp (N,IN) */
    if (dweight) nn_sgemm(true, false, outf, in, n, 1.0f, dout, outf, inp, in, 1.0f, dweight, in);
    if (dbias) {
        for (int b = 0; b < n; b++) {
            const float *dy = dout + (size_t)b * outf;
            for (int o = 0; o < outf; o++) dbias[o] += dy[o];
        }
    }
}
