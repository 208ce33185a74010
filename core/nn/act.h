/* Elementwise activations over n floats, and softmax over rows.
 * out may alias inp in forward; backward accumulates into dinp. */
#ifndef DP_NN_ACT_H
#define DP_NN_ACT_H

#include <stddef.h>

void nn_relu_forward(float *out, const float *inp, size_t n);
void nn_relu_backward(float *dinp, const float *dout, const float *inp, size_t n);
void nn_leakyrelu_forward(float *out, const float *inp, size_t n, float slope);
void nn_leakyrelu_backward(float *dinp, const float *dout, const float *inp, size_t n, float slope);
/* sigmoid and tanh backward take the forward OUTPUT. */
void nn_sigmoid_forward(float *out, const float *inp, size_t n);
void nn_sigmoid_backward(float *dinp, const float *dout, const float *out, size_t n);
void nn_tanh_forward(float *out, const float *inp, size_t n);
void nn_tanh_backward(float *dinp, const float *dout, const float *out, size_t n);

/* Softmax over the last dimension: out, inp (rows, k); numerically stable. */
void nn_softmax_forward(float *out, const float *inp, int rows, int k);
/* Backward takes the forward output; accumulates into dinp. */
void nn_softmax_backward(float *dinp, const float *dout, const float *out, int rows, int k);

#endif
