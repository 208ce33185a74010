/* Adam (PyTorch semantics, L2 weight decay added to the gradient), one flat
 * loop over a parameter block. */
#ifndef DP_NN_ADAM_H
#define DP_NN_ADAM_H

#include <stddef.h>

/* Hyperparameters are double, like PyTorch's Python floats: 1 - beta2 taken
 * from a float 0.999f would be off by 5e-5 relative. */
typedef struct nn_adam {
    double lr, beta1, beta2, eps, weight_decay;
    long t; /* steps taken; nn_adam_step increments it first */
} nn_adam_t;

/* lr 1e-3, betas (0.9, 0.999), eps 1e-8, no weight decay, t = 0. */
nn_adam_t nn_adam_default(float lr);
/* params, grads, m, v: n floats each. */
void nn_adam_step(nn_adam_t *opt, float *params, const float *grads, float *m, float *v, size_t n);

#endif
