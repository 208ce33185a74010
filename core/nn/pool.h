/* Max and average pooling (square kernel, stride, zero padding; avg counts
 * padding like PyTorch's count_include_pad=True), global average pooling, and
 * adaptive pooling to a fixed output size (PyTorch's bin rule). */
#ifndef DP_NN_POOL_H
#define DP_NN_POOL_H

/* Output side: (h + 2p - k)/s + 1. */
int nn_pool_out(int h, int k, int s, int p);

/* out (N,C,Ho,Wo); argmax (N,C,Ho,Wo) flat index into the input plane, saved for backward. */
void nn_maxpool2d_forward(float *out, int *argmax, const float *inp, int n, int c, int h, int w,
                          int k, int s, int p);
void nn_maxpool2d_backward(float *dinp, const float *dout, const int *argmax, int n, int c, int h,
                           int w, int k, int s, int p);
void nn_avgpool2d_forward(float *out, const float *inp, int n, int c, int h, int w, int k, int s,
                          int p);
void nn_avgpool2d_backward(float *dinp, const float *dout, int n, int c, int h, int w, int k, int s,
                           int p);

/* out (N,C); inp (N,C,H*W). */
void nn_gap_forward(float *out, const float *inp, int n, int c, int hw);
void nn_gap_backward(float *dinp, const float *dout, int n, int c, int hw);

/* Adaptive pooling to (oh,ow): bin i spans [floor(i*h/oh), ceil((i+1)*h/oh)).
 * out (N,C,oh,ow); argmax as above for max. */
void nn_adaptive_maxpool2d_forward(float *out, int *argmax, const float *inp, int n, int c, int h,
                                   int w, int oh, int ow);
void nn_adaptive_maxpool2d_backward(float *dinp, const float *dout, const int *argmax, int n, int c,
                                    int h, int w, int oh, int ow);
void nn_adaptive_avgpool2d_forward(float *out, const float *inp, int n, int c, int h, int w, int oh,
                                   int ow);
void nn_adaptive_avgpool2d_backward(float *dinp, const float *dout, int n, int c, int h, int w,
                                    int oh, int ow);

#endif
