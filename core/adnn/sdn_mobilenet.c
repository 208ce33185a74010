/* SDN ("shallow-deep network", Kaya et al. 2019) on a small MobileNet (v1)
 * backbone for 1x28x28 inputs: a conv3x3 stem, then stages of depthwise-
 * separable blocks (depthwise conv3x3 + BN + ReLU, pointwise conv1x1 + BN +
 * ReLU; no residual, as in MobileNet v1), an internal classifier (the SDN
 * head: mixed max/avg pool with a learned mix, linear) after chosen blocks,
 * and GAP + linear at the end.
 *
 * The early exits, training objective and spend-more probabilities are
 * sdn.c's (sdn.h); this file names the block.
 *
 * FLOPs: the depthwise conv is a conv with groups == channels. The reference
 * convention counts it as 2*Cin*Cout*9*HW (not divided by groups, the
 * DeepPerform code's overcount); the exact count divides by groups. */
#include <stdio.h>

#include "adnn/sdn.h"

/* Depthwise-separable block. */
typedef struct dws {
    adnn_cbn_t dw, pw;
} dws_t;
typedef struct dws_act {
    adnn_cbn_act_t adw, apw;
} dws_act_t;

static void dws_reg(adnn_model_t *m, void *blk, const char *prefix, int cin, int cout, int stride,
                    int h, int w, adnn_sdn_dims_t *out)
{
    dws_t *b = blk;
    char nm[64];
    snprintf(nm, sizeof nm, "%.56s.dw", prefix);
    adnn_cbn_reg(m, &b->dw, nm, cin, cin, 3, stride, 1, cin, h, w, 1);
    snprintf(nm, sizeof nm, "%.56s.pw", prefix);
    adnn_cbn_reg(m, &b->pw, nm, cin, cout, 1, 1, 0, 1, b->dw.hout, b->dw.wout, 1);
    *out = (adnn_sdn_dims_t){b->pw.cout, b->pw.hout, b->pw.wout};
}

static dp_err_t dws_forward(adnn_model_t *m, const void *blk, const float *in, int n, int train,
                            void *act)
{
    const dws_t *b = blk;
    dws_act_t *a = act;
    dp_err_t err = adnn_cbn_forward(m, &b->dw, in, n, train, &a->adw);
    if (!err) err = adnn_cbn_forward(m, &b->pw, a->adw.out, n, train, &a->apw);
    return err;
}

static const float *dws_out(const void *act) { return ((const dws_act_t *)act)->apw.out; }

/* dout (n,cout,hout,wout) CLOBBERED; accumulates into din (n,cin,h,w). */
static dp_err_t dws_backward(adnn_model_t *m, const void *blk, const void *act, float *dout,
                             float *din)
{
    const dws_t *b = blk;
    const dws_act_t *a = act;
    float *dmid = adnn_arena_get(m, (size_t)a->adw.n * b->dw.cout * b->dw.hout * b->dw.wout);
    if (!dmid) return dp_err_set(DP_ERR_NOMEM, "out of memory in SDN-MobileNet backward");
    dp_err_t err = adnn_cbn_backward(m, &b->pw, &a->apw, dout, dmid);
    if (!err) err = adnn_cbn_backward(m, &b->dw, &a->adw, dmid, din);
    return err;
}

static double dws_flops(const void *blk, int exact)
{
    const dws_t *b = blk;
    return adnn_cbn_flops(&b->dw, exact) + adnn_cbn_flops(&b->pw, exact);
}

static const adnn_sdn_block_ops_t dws_ops = {
    .block_size = sizeof(dws_t),
    .act_size = sizeof(dws_act_t),
    .reg = dws_reg,
    .forward = dws_forward,
    .out = dws_out,
    .backward = dws_backward,
    .flops = dws_flops,
};

static dp_err_t mbn_build(adnn_model_t *m) { return adnn_sdn_build(m, &dws_ops, "SDN-MobileNet"); }

const adnn_family_ops_t adnn_sdn_mobilenet_ops = {
    .family = ADNN_FAMILY_SDN_MOBILENET,
    .build = mbn_build,
    ADNN_SDN_FAMILY_OPS,
};
