/* Fully connected layer, PyTorch layout: y = x W^T + b. */
#ifndef DP_NN_LINEAR_H
#define DP_NN_LINEAR_H

/* out (N,OUT); inp (N,IN); weight (OUT,IN); bias (OUT) or NULL. */
void nn_linear_forward(float *out, const float *inp, const float *weight, const float *bias, int n,
                       int in, int outf);
/* Accumulates into dinp, dweight, dbias (NULL: skip). */
void nn_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, int n, int in, int outf);

#endif
