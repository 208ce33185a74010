/* core/nn/norm.c: BatchNorm2d (train, eval, running statistics, backward) and
 * InstanceNorm2d against double references and central differences. */
#include "layers_util.h"

#include "nn/norm.h"

#define BN_N  3
#define BN_C  4
#define BN_HW 5
#define BN_SZ (BN_N * BN_C * BN_HW)

/* Double reference of training-mode BatchNorm (biased variance). */
static void bn_ref(double *out, double *mean, double *var, const float *x, const float *gamma,
                   const float *beta, int n, int c, int hw, double eps)
{
    for (int ch = 0; ch < c; ch++) {
        double s = 0, ss = 0;
        for (int b = 0; b < n; b++)
            for (int i = 0; i < hw; i++) s += x[(b * c + ch) * hw + i];
        double m = s / (n * hw);
        for (int b = 0; b < n; b++)
            for (int i = 0; i < hw; i++) {
                double d = x[(b * c + ch) * hw + i] - m;
                ss += d * d;
            }
        double v = ss / (n * hw);
        if (mean) mean[ch] = m;
        if (var) var[ch] = v;
        for (int b = 0; b < n; b++)
            for (int i = 0; i < hw; i++) {
                int j = (b * c + ch) * hw + i;
                out[j] = (x[j] - m) / sqrt(v + eps) * (gamma ? gamma[ch] : 1.0) +
                         (beta ? beta[ch] : 0.0);
            }
    }
}

struct bn_ctx {
    const float *x, *gamma, *beta, *r;
    double *out;
    int instance; /* 1: InstanceNorm (each image its own batch of one) */
};

static double bn_loss(void *p)
{
    struct bn_ctx *c = p;
    if (c->instance) {
        for (int b = 0; b < BN_N; b++)
            bn_ref(c->out + b * BN_C * BN_HW, NULL, NULL, c->x + b * BN_C * BN_HW, NULL, NULL, 1,
                   BN_C, BN_HW, 1e-5);
    } else {
        bn_ref(c->out, NULL, NULL, c->x, c->gamma, c->beta, BN_N, BN_C, BN_HW, 1e-5);
    }
    double s = 0;
    for (int i = 0; i < BN_SZ; i++) s += c->out[i] * c->r[i];
    return s;
}

struct bn_data {
    float x[BN_SZ], out[BN_SZ], r[BN_SZ], dx[BN_SZ];
    float gamma[BN_C], beta[BN_C], mean[BN_C], rstd[BN_C], rm[BN_C], rv[BN_C];
    float dgamma[BN_C], dbeta[BN_C];
    double ref[BN_SZ], rmean[BN_C], rvar[BN_C];
};

static void bn_setup(struct bn_data *d, uint64_t seed)
{
    memset(d, 0, sizeof *d);
    dp_rng_t rng;
    dp_rng_seed(&rng, seed);
    lt_fill(&rng, d->x, BN_SZ, -2.0f, 2.0f);
    for (int i = 0; i < BN_SZ; i++)
        d->x[i] += 0.5f * (float)(i / BN_HW % BN_C); /* channel offsets */
    lt_fill(&rng, d->r, BN_SZ, -1.0f, 1.0f);
    lt_fill(&rng, d->gamma, BN_C, 0.5f, 1.5f);
    lt_fill(&rng, d->beta, BN_C, -0.5f, 0.5f);
    lt_fill(&rng, d->rm, BN_C, -0.2f, 0.2f);
    lt_fill(&rng, d->rv, BN_C, 0.8f, 1.2f);
}

Test(norm, batchnorm_train_forward_and_running_stats)
{
    struct bn_data d;
    bn_setup(&d, 1);
    float rm0[BN_C], rv0[BN_C];
    memcpy(rm0, d.rm, sizeof rm0);
    memcpy(rv0, d.rv, sizeof rv0);
    nn_batchnorm_forward_train(d.out, d.mean, d.rstd, d.x, d.gamma, d.beta, d.rm, d.rv, BN_N, BN_C,
                               BN_HW, 0.1f, 1e-5f);
    bn_ref(d.ref, d.rmean, d.rvar, d.x, d.gamma, d.beta, BN_N, BN_C, BN_HW, 1e-5);
    lt_expect_fwd("batchnorm train", d.out, d.ref, BN_SZ);
    double cnt = BN_N * BN_HW;
    for (int c = 0; c < BN_C; c++) {
        cr_expect(fabs(d.mean[c] - d.rmean[c]) < 1e-6);
        cr_expect(fabs(d.rstd[c] - 1.0 / sqrt(d.rvar[c] + 1e-5)) < 1e-5 * d.rstd[c]);
        double want_m = 0.9 * rm0[c] + 0.1 * d.rmean[c];
        double want_v = 0.9 * rv0[c] + 0.1 * d.rvar[c] * cnt / (cnt - 1); /* unbiased */
        cr_expect(fabs(d.rm[c] - want_m) < 1e-6, "running_mean[%d] %g want %g", c, d.rm[c], want_m);
        cr_expect(fabs(d.rv[c] - want_v) < 1e-6, "running_var[%d] %g want %g", c, d.rv[c], want_v);
    }
    /* NULL running stats and NULL affine are allowed. */
    nn_batchnorm_forward_train(d.out, d.mean, d.rstd, d.x, NULL, NULL, NULL, NULL, BN_N, BN_C,
                               BN_HW, 0.1f, 1e-5f);
    bn_ref(d.ref, NULL, NULL, d.x, NULL, NULL, BN_N, BN_C, BN_HW, 1e-5);
    lt_expect_fwd("batchnorm train (no affine)", d.out, d.ref, BN_SZ);
}

Test(norm, batchnorm_running_stats_two_steps_momentum)
{
    /* One channel, values {1,2,3,4} then {0,0,0,4}: hand-computed. */
    float x1[4] = {1, 2, 3, 4}, x2[4] = {0, 0, 0, 4}, out[4], m, rs;
    float rm = 0.0f, rv = 1.0f;
    nn_batchnorm_forward_train(out, &m, &rs, x1, NULL, NULL, &rm, &rv, 2, 1, 2, 0.5f, 1e-5f);
    /* mean 2.5, biased var 1.25, unbiased 5/3 */
    cr_expect(fabsf(rm - 1.25f) < 1e-6f, "rm %g", rm);
    cr_expect(fabsf(rv - (0.5f + 0.5f * 5.0f / 3.0f)) < 1e-6f, "rv %g", rv);
    cr_expect(fabsf(out[0] - (float)(-1.5 / sqrt(1.25 + 1e-5))) < 1e-6f);
    nn_batchnorm_forward_train(out, &m, &rs, x2, NULL, NULL, &rm, &rv, 1, 1, 4, 0.5f, 1e-5f);
    /* mean 1, biased var 3, unbiased 4 */
    cr_expect(fabsf(rm - (0.5f * 1.25f + 0.5f)) < 1e-6f, "rm %g", rm);
    cr_expect(fabsf(rv - (0.5f * (0.5f + 0.5f * 5.0f / 3.0f) + 0.5f * 4.0f)) < 1e-6f, "rv %g", rv);
}

Test(norm, batchnorm_eval)
{
    struct bn_data d;
    bn_setup(&d, 2);
    nn_batchnorm_forward_eval(d.out, d.x, d.gamma, d.beta, d.rm, d.rv, BN_N, BN_C, BN_HW, 1e-5f);
    for (int i = 0; i < BN_SZ; i++) {
        int c = i / BN_HW % BN_C;
        d.ref[i] =
            (d.x[i] - (double)d.rm[c]) / sqrt((double)d.rv[c] + 1e-5) * d.gamma[c] + d.beta[c];
    }
    lt_expect_fwd("batchnorm eval", d.out, d.ref, BN_SZ);
}

Test(norm, batchnorm_backward)
{
    struct bn_data d;
    bn_setup(&d, 3);
    nn_batchnorm_forward_train(d.out, d.mean, d.rstd, d.x, d.gamma, d.beta, NULL, NULL, BN_N, BN_C,
                               BN_HW, 0.1f, 1e-5f);
    nn_batchnorm_backward(d.dx, d.dgamma, d.dbeta, d.r, d.x, d.mean, d.rstd, d.gamma, BN_N, BN_C,
                          BN_HW);
    struct bn_ctx ctx = {d.x, d.gamma, d.beta, d.r, d.ref, 0};
    lt_gradcheck("batchnorm dinp", bn_loss, &ctx, d.x, BN_SZ, d.dx, 1e-3);
    lt_gradcheck("batchnorm dgamma", bn_loss, &ctx, d.gamma, BN_C, d.dgamma, 1e-3);
    lt_gradcheck("batchnorm dbeta", bn_loss, &ctx, d.beta, BN_C, d.dbeta, 1e-3);

    /* Accumulation: a second pass doubles; NULL gradients are skipped. */
    float dx2[BN_SZ], dg2[BN_C], db2[BN_C];
    memcpy(dx2, d.dx, sizeof dx2);
    memcpy(dg2, d.dgamma, sizeof dg2);
    memcpy(db2, d.dbeta, sizeof db2);
    nn_batchnorm_backward(dx2, dg2, db2, d.r, d.x, d.mean, d.rstd, d.gamma, BN_N, BN_C, BN_HW);
    lt_expect_doubled("batchnorm dinp", d.dx, dx2, BN_SZ);
    lt_expect_doubled("batchnorm dgamma", d.dgamma, dg2, BN_C);
    lt_expect_doubled("batchnorm dbeta", d.dbeta, db2, BN_C);
    memcpy(dx2, d.dx, sizeof dx2);
    memcpy(db2, d.dbeta, sizeof db2);
    nn_batchnorm_backward(NULL, NULL, db2, d.r, d.x, d.mean, d.rstd, d.gamma, BN_N, BN_C, BN_HW);
    nn_batchnorm_backward(dx2, NULL, NULL, d.r, d.x, d.mean, d.rstd, d.gamma, BN_N, BN_C, BN_HW);
    lt_expect_doubled("batchnorm dbeta alone", d.dbeta, db2, BN_C);
    lt_expect_doubled("batchnorm dinp alone", d.dx, dx2, BN_SZ);
}

Test(norm, batchnorm_backward_no_affine)
{
    struct bn_data d;
    bn_setup(&d, 4);
    nn_batchnorm_forward_train(d.out, d.mean, d.rstd, d.x, NULL, NULL, NULL, NULL, BN_N, BN_C,
                               BN_HW, 0.1f, 1e-5f);
    nn_batchnorm_backward(d.dx, NULL, NULL, d.r, d.x, d.mean, d.rstd, NULL, BN_N, BN_C, BN_HW);
    struct bn_ctx ctx = {d.x, NULL, NULL, d.r, d.ref, 0};
    lt_gradcheck("batchnorm dinp (no affine)", bn_loss, &ctx, d.x, BN_SZ, d.dx, 1e-3);
}

Test(norm, instancenorm_forward_backward)
{
    struct bn_data d;
    bn_setup(&d, 5);
    float mean[BN_N * BN_C], rstd[BN_N * BN_C], dx2[BN_SZ];
    nn_instnorm_forward(d.out, mean, rstd, d.x, BN_N, BN_C, BN_HW, 1e-5f);
    struct bn_ctx ctx = {d.x, NULL, NULL, d.r, d.ref, 1};
    bn_loss(&ctx); /* fills ctx.out = d.ref with the reference forward */
    lt_expect_fwd("instancenorm", d.out, d.ref, BN_SZ);
    nn_instnorm_backward(d.dx, d.r, d.x, mean, rstd, BN_N, BN_C, BN_HW);
    memcpy(dx2, d.dx, sizeof dx2);
    nn_instnorm_backward(dx2, d.r, d.x, mean, rstd, BN_N, BN_C, BN_HW);
    lt_gradcheck("instancenorm dinp", bn_loss, &ctx, d.x, BN_SZ, d.dx, 1e-3);
    lt_expect_doubled("instancenorm dinp", d.dx, dx2, BN_SZ);
}

/* Large planes whose mean is several standard deviations from 0: the
 * statistics and the normalisation must not lose the signal. */
Test(norm, batchnorm_large_offset)
{
    enum { N = 4, C = 2, HW = 4096 };
    float *x = lt_floats(N * C * HW), *y = lt_floats(N * C * HW);
    double *ref = lt_doubles(N * C * HW);
    float mean[C], rstd[C];
    dp_rng_t rng;
    dp_rng_seed(&rng, 6);
    lt_fill(&rng, x, N * C * HW, 8.0f, 12.0f);
    nn_batchnorm_forward_train(y, mean, rstd, x, NULL, NULL, NULL, NULL, N, C, HW, 0.1f, 1e-5f);
    bn_ref(ref, NULL, NULL, x, NULL, NULL, N, C, HW, 1e-5);
    lt_expect_fwd("batchnorm large offset", y, ref, N * C * HW);
    free(x), free(y), free(ref);
}
