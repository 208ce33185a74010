/* The early-exit networks' objectives and family entry points, shared by
 * the SDNs (sdn.c) and RANet (ranet.c): everything after "run every block
 * and every exit" and before "backward from the exits' logits" is the same
 * for them, and lives in exitnet.c.
 *
 * A family's state (m->fam) starts with an adnn_exitnet_t: its full forward
 * and backward, and the logits of its last full forward. Its ops table then
 * names the entry points with ADNN_EXITNET_OPS.
 *
 * Training minimises sum_k w_k CE_k / sum_k w_k over every exit (w_k:
 * spec.exit_weights). Spend-more probabilities (docs/ZOO.md), one per
 * INTERNAL exit (the final classifier's confidence never changes the cost):
 * p_k = 1 - c_k for every exit up to and including the first with
 * c_k = max softmax >= tau, p_k = 1 after it. */
#ifndef DP_ADNN_EXITNET_H
#define DP_ADNN_EXITNET_H

#include "adnn/adnn_impl.h"

typedef struct adnn_exitnet {
    const char *who; /* static: names the family in errors ("SDN", "RANet") */
    /* Every block and every exit, batch n, activations kept for backward:
     * resets the arena, sets n and logits. */
    dp_err_t (*forward)(adnn_model_t *m, const float *x, int n, int train);
    /* Backward from dlogits[k] (NULL: no gradient from exit k; index nexits
     * is the final classifier) to the input; accumulates into dx (may be NULL). */
    dp_err_t (*backward)(adnn_model_t *m, float *const *dlogits, float *dx);
    float *logits[ADNN_MAX_EXITS + 1]; /* (n,K) each, in the arena; final last */
    int n;
} adnn_exitnet_t;

/* The adnn_family_ops_t entries; m->fam starts with an adnn_exitnet_t. */
dp_err_t adnn_exitnet_eval_batch(adnn_model_t *m, const float *x, int n, float *out);
dp_err_t adnn_exitnet_train_step(adnn_model_t *m, const float *x, const int32_t *y, int n,
                                 double *loss, int *correct);
int adnn_exitnet_pk_count(const adnn_model_t *m);
dp_err_t adnn_exitnet_pk_grad(adnn_model_t *m, const float *x, int n, float *p, double *loss,
                              float *dx);
dp_err_t adnn_exitnet_pk_vjp(adnn_model_t *m, const float *x, int n, adnn_pk_dloss_fn fn, void *arg,
                             float *p, float *dx);
dp_err_t adnn_exitnet_exits_backward(adnn_model_t *m, const float *dlogits, int n, float *dx);

/* An early-exit family's ops table: {.family = ..., .build = ..., .destroy =
 * ..., .forward_adaptive = ..., .flops_full = ..., ADNN_EXITNET_OPS}. */
#define ADNN_EXITNET_OPS                                                                           \
    .eval_batch = adnn_exitnet_eval_batch, .train_step = adnn_exitnet_train_step,                  \
    .pk_count = adnn_exitnet_pk_count, .pk_grad = adnn_exitnet_pk_grad,                            \
    .pk_vjp = adnn_exitnet_pk_vjp, .exits_backward = adnn_exitnet_exits_backward

#endif
