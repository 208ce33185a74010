/* Losses. Each forward returns the mean loss over the batch (double), each
 * backward accumulates dloss * d(mean loss)/d(input) into its gradient. */
#ifndef DP_NN_LOSS_H
#define DP_NN_LOSS_H

#include <stdint.h>

/* Cross-entropy from logits (N,K) and integer targets; probs (N,K) saved. */
double nn_crossentropy_forward(float *probs, const float *logits, const int32_t *targets, int n,
                               int k);
void nn_crossentropy_backward(float *dlogits, const float *probs, const int32_t *targets, int n,
                              int k, float dloss);

/* Binary cross-entropy on probabilities p in (0,1) against targets t in [0,1],
 * n elements; log clamped at -100 like PyTorch. */
double nn_bce_forward(const float *p, const float *t, int n);
void nn_bce_backward(float *dp, const float *p, const float *t, int n, float dloss);

/* Mean squared error over n elements. */
double nn_mse_forward(const float *x, const float *t, int n);
void nn_mse_backward(float *dx, const float *x, const float *t, int n, float dloss);

#endif
