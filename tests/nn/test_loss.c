/* core/nn/loss.c and adam.c: hand values, gradients against central
 * differences (with dloss != 1), accumulation, PyTorch's BCE clamp, and a
 * hand-computed two-step Adam trajectory. */
#include "layers_util.h"

#include "nn/adam.h"
#include "nn/loss.h"

Test(loss, crossentropy_hand_value)
{
    float logits[6] = {1, 2, 3, 0, 0, 0}, probs[6];
    int32_t t[2] = {2, 0};
    double l = nn_crossentropy_forward(probs, logits, t, 2, 3);
    /* (log(1 + e^-1 + e^-2) + log 3) / 2 */
    cr_expect(fabs(l - 0.7531091265562451) < 1e-6, "ce %.9g", l);
    cr_expect(fabsf(probs[3] - 1.0f / 3) < 1e-7f);
    /* large logits stay finite */
    float big[3] = {1000, 0, -1000};
    int32_t t1 = 1;
    l = nn_crossentropy_forward(probs, big, &t1, 1, 3);
    cr_expect(fabs(l - 1000.0) < 1e-3, "ce %.9g", l);
}

enum { CN = 4, CK = 5 };

struct ce_ctx {
    const float *z;
    const int32_t *t;
    double dloss;
};

static double ce_loss(void *p)
{
    struct ce_ctx *c = p;
    double total = 0;
    for (int b = 0; b < CN; b++) {
        double s = 0;
        for (int j = 0; j < CK; j++) s += exp((double)c->z[b * CK + j]);
        total += log(s) - c->z[b * CK + c->t[b]];
    }
    return c->dloss * total / CN;
}

Test(loss, crossentropy_backward)
{
    float z[CN * CK], probs[CN * CK], dz[CN * CK] = {0}, dz2[CN * CK];
    int32_t t[CN] = {0, 3, 4, 1};
    dp_rng_t rng;
    dp_rng_seed(&rng, 50);
    lt_fill(&rng, z, CN * CK, -3, 3);
    struct ce_ctx ctx = {z, t, 0.7};
    double l = nn_crossentropy_forward(probs, z, t, CN, CK);
    cr_expect(fabs(l - ce_loss(&ctx) / 0.7) < 1e-6);
    nn_crossentropy_backward(dz, probs, t, CN, CK, 0.7f);
    lt_gradcheck("crossentropy dlogits", ce_loss, &ctx, z, CN * CK, dz, 1e-3);
    memcpy(dz2, dz, sizeof dz);
    nn_crossentropy_backward(dz2, probs, t, CN, CK, 0.7f);
    lt_expect_doubled("crossentropy", dz, dz2, CN * CK);
}

static double bce_ref(const float *p, const float *t, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s -= t[i] * fmax(log(p[i]), -100.0) + (1.0 - t[i]) * fmax(log(1.0 - p[i]), -100.0);
    return s / n;
}

struct bce_ctx {
    const float *p, *t;
    int n;
    double dloss;
};

static double bce_loss(void *v)
{
    struct bce_ctx *c = v;
    return c->dloss * bce_ref(c->p, c->t, c->n);
}

Test(loss, bce)
{
    float p2[2] = {0.9f, 0.2f}, t2[2] = {1, 0};
    double l = nn_bce_forward(p2, t2, 2);
    cr_expect(fabs(l - 0.164252033486018) < 1e-6, "bce %.9g", l);
    /* PyTorch clamps each log at -100 */
    float pc[3] = {0.0f, 1.0f, 1.0f}, tc[3] = {1, 0, 1};
    l = nn_bce_forward(pc, tc, 3);
    cr_expect(fabs(l - 200.0 / 3) < 1e-9, "bce clamp %.9g", l);
    /* and divides the gradient by max(p (1-p), 1e-12) */
    float dpc[3] = {0};
    nn_bce_backward(dpc, pc, tc, 3, 1.0f);
    cr_expect(fabsf(dpc[0] - (-1.0f / 3 / 1e-12f)) < 1e5f, "dp %g", (double)dpc[0]);
    cr_expect(dpc[2] == 0.0f);

    enum { BN = 12 };
    float p[BN], t[BN], dp[BN] = {0}, dp2[BN];
    dp_rng_t rng;
    dp_rng_seed(&rng, 51);
    lt_fill(&rng, p, BN, 0.05f, 0.95f);
    lt_fill(&rng, t, BN, 0.0f, 1.0f);
    t[0] = 0, t[1] = 1;
    cr_expect(fabs(nn_bce_forward(p, t, BN) - bce_ref(p, t, BN)) < 1e-9);
    nn_bce_backward(dp, p, t, BN, 1.3f);
    struct bce_ctx ctx = {p, t, BN, 1.3};
    lt_gradcheck("bce dp", bce_loss, &ctx, p, BN, dp, 1e-4);
    memcpy(dp2, dp, sizeof dp);
    nn_bce_backward(dp2, p, t, BN, 1.3f);
    lt_expect_doubled("bce", dp, dp2, BN);
}

struct mse_ctx {
    const float *x, *t;
    int n;
    double dloss;
};

static double mse_loss(void *v)
{
    struct mse_ctx *c = v;
    double s = 0;
    for (int i = 0; i < c->n; i++) s += ((double)c->x[i] - c->t[i]) * ((double)c->x[i] - c->t[i]);
    return c->dloss * s / c->n;
}

Test(loss, mse)
{
    float x2[2] = {1, 2}, z2[2] = {0, 0};
    cr_expect(fabs(nn_mse_forward(x2, z2, 2) - 2.5) < 1e-12);
    enum { MN = 10 };
    float x[MN], t[MN], dx[MN] = {0}, dx2[MN];
    dp_rng_t rng;
    dp_rng_seed(&rng, 52);
    lt_fill(&rng, x, MN, -2, 2);
    lt_fill(&rng, t, MN, -2, 2);
    nn_mse_backward(dx, x, t, MN, 0.5f);
    struct mse_ctx ctx = {x, t, MN, 0.5};
    lt_gradcheck("mse dx", mse_loss, &ctx, x, MN, dx, 1e-2);
    memcpy(dx2, dx, sizeof dx);
    nn_mse_backward(dx2, x, t, MN, 0.5f);
    lt_expect_doubled("mse", dx, dx2, MN);
}

/* Trajectories computed by hand (in double, from the PyTorch formulas). */
Test(adam, two_steps)
{
    nn_adam_t opt = nn_adam_default(0.1f);
    cr_expect(opt.beta1 == 0.9 && opt.beta2 == 0.999 && opt.eps == 1e-8 && opt.t == 0);
    cr_expect(opt.weight_decay == 0.0 && opt.lr == 0.1f);
    float p = 1.0f, m = 0, v = 0, g = 0.5f;
    nn_adam_step(&opt, &p, &g, &m, &v, 1);
    cr_expect(opt.t == 1);
    cr_expect(fabs(p - 0.900000002) < 1e-7, "step 1: %.9g", (double)p);
    cr_expect(fabs(m - 0.05) < 1e-8 && fabs(v - 0.00025) < 1e-10);
    g = -0.25f;
    nn_adam_step(&opt, &p, &g, &m, &v, 1);
    cr_expect(fabs(p - 0.8733662987078463) < 1e-6, "step 2: %.9g", (double)p);

    nn_adam_t wd = nn_adam_default(0.01f);
    wd.weight_decay = 0.1;
    float q[2] = {-2.0f, 1.0f}, gq[2] = {0.1f, 0.0f}, mq[2] = {0}, vq[2] = {0};
    nn_adam_step(&wd, q, gq, mq, vq, 2);
    cr_expect(fabs(q[0] - -1.9900000009999999) < 1e-6, "wd step 1: %.9g", (double)q[0]);
    /* a zero gradient still moves a decayed parameter toward 0 */
    cr_expect(q[1] < 1.0f && fabs(q[1] - 0.99) < 1e-6, "wd zero grad: %.9g", (double)q[1]);
    gq[0] = 0.3f;
    nn_adam_step(&wd, q, gq, mq, vq, 2);
    cr_expect(fabs(q[0] - -1.990576059408093) < 1e-6, "wd step 2: %.9g", (double)q[0]);
}
