/* The shallow-deep network (SDN, Kaya et al. 2019) that SDN-ResNet
 * (sdn_resnet.c) and SDN-MobileNet (sdn_mobilenet.c) share: a conv3x3 stem,
 * a chain of backbone blocks, an internal classifier (adnn_sdn_head_t) after
 * chosen blocks, and GAP + linear at the end. All of it but the block lives
 * in sdn.c; a family names its block's functions in an adnn_sdn_block_ops_t,
 * and its ops table is ADNN_SDN_FAMILY_OPS with its build.
 *
 * Inference at batch 1 stops at the first exit k whose confidence
 * c_k = max softmax >= tau: the blocks after it are never computed.
 * Training minimises sum_k w_k CE_k / sum_k w_k over every exit.
 * Spend-more probabilities (METHOD.md section 2), one per INTERNAL exit (the
 * final classifier's confidence never changes the cost): p_k = 1 - c_k for
 * every exit up to and including the one taken, p_k = 1 after it. */
#ifndef DP_ADNN_SDN_H
#define DP_ADNN_SDN_H

#include <stddef.h>

#include "adnn/adnn_impl.h"

typedef struct adnn_sdn_dims {
    int c, h, w;
} adnn_sdn_dims_t;

/* A backbone block, through pointers to the family's block and activation
 * structs (block_size and act_size bytes). */
typedef struct adnn_sdn_block_ops {
    size_t block_size, act_size;
    /* Registers "<prefix>.*" for input (cin,h,w); *out: the output's shape. */
    void (*reg)(adnn_model_t *m, void *blk, const char *prefix, int cin, int cout, int stride,
                int h, int w, adnn_sdn_dims_t *out);
    /* in (n,cin,h,w); fills act, whose output (n,c,h,w) `out` returns. */
    dp_err_t (*forward)(adnn_model_t *m, const void *blk, const float *in, int n, int train,
                        void *act);
    const float *(*out)(const void *act);
    /* dout (n,c,h,w) CLOBBERED; accumulates into din (n,cin,h,w). */
    dp_err_t (*backward)(adnn_model_t *m, const void *blk, const void *act, float *dout,
                         float *din);
    double (*flops)(const void *blk, int exact);
} adnn_sdn_block_ops_t;

/* Builds m->fam as an SDN of m->spec with blocks of bops (borrowed, static);
 * `who` (static) names the family in errors ("SDN", "SDN-MobileNet"). */
dp_err_t adnn_sdn_build(adnn_model_t *m, const adnn_sdn_block_ops_t *bops, const char *who);

/* The adnn_family_ops_t entries, shared by every SDN family. */
void adnn_sdn_destroy(adnn_model_t *m);
void adnn_sdn_forward_adaptive(adnn_model_t *m, const float *x, adnn_trace_t *t);
double adnn_sdn_flops_full(const adnn_model_t *m, int exact);
dp_err_t adnn_sdn_eval_batch(adnn_model_t *m, const float *x, int n, float *out);
dp_err_t adnn_sdn_train_step(adnn_model_t *m, const float *x, const int32_t *y, int n, double *loss,
                             int *correct);
int adnn_sdn_pk_count(const adnn_model_t *m);
dp_err_t adnn_sdn_pk_grad(adnn_model_t *m, const float *x, int n, float *p, double *loss,
                          float *dx);
dp_err_t adnn_sdn_pk_vjp(adnn_model_t *m, const float *x, int n, adnn_pk_dloss_fn fn, void *arg,
                         float *p, float *dx);
dp_err_t adnn_sdn_exits_backward(adnn_model_t *m, const float *dlogits, int n, float *dx);

/* An SDN family's ops table: {.family = ..., .build = ..., ADNN_SDN_FAMILY_OPS}. */
#define ADNN_SDN_FAMILY_OPS                                                                        \
    .destroy = adnn_sdn_destroy, .forward_adaptive = adnn_sdn_forward_adaptive,                    \
    .flops_full = adnn_sdn_flops_full, .eval_batch = adnn_sdn_eval_batch,                          \
    .train_step = adnn_sdn_train_step, .pk_count = adnn_sdn_pk_count, .pk_grad = adnn_sdn_pk_grad, \
    .pk_vjp = adnn_sdn_pk_vjp, .exits_backward = adnn_sdn_exits_backward

#endif
