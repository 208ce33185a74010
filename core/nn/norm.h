/* BatchNorm2d (train and eval, running statistics, PyTorch semantics: biased
 * variance to normalise, unbiased for the running estimate) and InstanceNorm2d
 * without affine parameters. x is (N,C,HW) with HW = H*W. */
#ifndef DP_NN_NORM_H
#define DP_NN_NORM_H

/* Training mode. out, inp (N,C,HW); gamma, beta (C) (NULL: 1 and 0);
 * saves mean, rstd (C) for backward; updates running_mean, running_var (C)
 * with momentum (PyTorch default 0.1) when they are not NULL. */
void nn_batchnorm_forward_train(float *out, float *mean, float *rstd, const float *inp,
                                const float *gamma, const float *beta, float *running_mean,
                                float *running_var, int n, int c, int hw, float momentum,
                                float eps);
/* Eval mode: uses running statistics. */
void nn_batchnorm_forward_eval(float *out, const float *inp, const float *gamma, const float *beta,
                               const float *running_mean, const float *running_var, int n, int c,
                               int hw, float eps);
/* Backward of training mode; accumulates into dinp, dgamma, dbeta (NULL: skip). */
void nn_batchnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                           const float *inp, const float *mean, const float *rstd,
                           const float *gamma, int n, int c, int hw);

/* InstanceNorm (no affine): out, inp (N,C,HW); saves mean, rstd (N*C). */
void nn_instnorm_forward(float *out, float *mean, float *rstd, const float *inp, int n, int c,
                         int hw, float eps);
/* Accumulates into dinp. */
void nn_instnorm_backward(float *dinp, const float *dout, const float *inp, const float *mean,
                          const float *rstd, int n, int c, int hw);

#endif
