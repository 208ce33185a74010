/* SDN ("shallow-deep network", Kaya et al. 2019) on a small ResNet for
 * 1x28x28 inputs: a conv3x3 stem, stages of residual basic blocks, an
 * internal classifier (mixed max/avg pool with a learned mix, linear) after
 * chosen blocks, and the usual GAP + linear classifier at the end.
 *
 * The early exits, training objective and spend-more probabilities are
 * sdn.c's (sdn.h); this file names the block: adnn_basic_t (layers.c). */
#include "adnn/sdn.h"

static void basic_reg(adnn_model_t *m, void *blk, const char *prefix, int cin, int cout, int stride,
                      int h, int w, adnn_sdn_dims_t *out)
{
    adnn_basic_t *b = blk;
    adnn_basic_reg(m, b, prefix, cin, cout, stride, h, w);
    *out = (adnn_sdn_dims_t){b->cout, b->hout, b->wout};
}

static dp_err_t basic_forward(adnn_model_t *m, const void *blk, const float *in, int n, int train,
                              void *act)
{
    return adnn_basic_forward(m, blk, in, n, train, act);
}

static const float *basic_out(const void *act) { return ((const adnn_basic_act_t *)act)->out; }

static dp_err_t basic_backward(adnn_model_t *m, const void *blk, const void *act, float *dout,
                               float *din)
{
    return adnn_basic_backward(m, blk, act, dout, din);
}

static double basic_flops(const void *blk, int exact) { return adnn_basic_flops(blk, exact); }

static const adnn_sdn_block_ops_t basic_ops = {
    .block_size = sizeof(adnn_basic_t),
    .act_size = sizeof(adnn_basic_act_t),
    .reg = basic_reg,
    .forward = basic_forward,
    .out = basic_out,
    .backward = basic_backward,
    .flops = basic_flops,
};

static dp_err_t sdn_build(adnn_model_t *m) { return adnn_sdn_build(m, &basic_ops, "SDN"); }

const adnn_family_ops_t adnn_sdn_resnet_ops = {
    .family = ADNN_FAMILY_SDN_RESNET,
    .build = sdn_build,
    ADNN_SDN_FAMILY_OPS,
};
