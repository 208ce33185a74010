/* The shallow-deep network (SDN, Kaya et al. 2019) that SDN-ResNet
 * (sdn_resnet.c) and SDN-MobileNet (sdn_mobilenet.c) share: a conv3x3 stem,
 * a chain of backbone blocks, an internal classifier (adnn_sdn_head_t) after
 * chosen blocks, and GAP + linear at the end. All of it but the block lives
 * in sdn.c (and what every early-exit network shares, in exitnet.c); a family
 * names its block's functions in an adnn_sdn_block_ops_t, and its ops table
 * is ADNN_SDN_FAMILY_OPS with its build.
 *
 * Inference at batch 1 stops at the first exit k whose confidence
 * c_k = max softmax >= tau: the blocks after it are never computed.
 * Training and the spend-more probabilities p_k are every early-exit
 * network's (exitnet.h). */
#ifndef DP_ADNN_SDN_H
#define DP_ADNN_SDN_H

#include <stddef.h>

#include "adnn/exitnet.h"

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

/* An SDN family's ops table: {.family = ..., .build = ..., ADNN_SDN_FAMILY_OPS}. */
#define ADNN_SDN_FAMILY_OPS                                                                        \
    .destroy = adnn_sdn_destroy, .forward_adaptive = adnn_sdn_forward_adaptive,                    \
    .flops_full = adnn_sdn_flops_full, ADNN_EXITNET_OPS

#endif
