/* BlockDrop (Wu et al. 2018) on a small ResNet for 1x28x28 inputs: a conv3x3
 * stem, stages of residual basic blocks, GAP + linear; beside it a small
 * ResNet policy network on the full input (conv3x3 s2 at policy_width, two
 * basic blocks s2 at 2x and 4x that width, GAP, linear to K = number of
 * blocks) whose sigmoids p_k decide every block up front.
 *
 * Inference at batch 1: block k runs iff p_k >= gate_threshold (0.5):
 * x = relu(x + F(x)); a dropped block is never computed: x = x, or, for a
 * block that downsamples, x = sc(x), its 1x1-conv+BN shortcut projection
 * (the reference's dropped downsampling blocks keep their shortcut too).
 *
 * Training (one objective per step, both networks at once, documented in
 * docs/ZOO.md): a mask a_k ~ Bernoulli(q_k) is drawn per image from the policy
 * with exploration q = a p + (1 - a)(1 - p) (the reference's alpha, a = 0.8), the
 * backbone is trained with cross-entropy under that mask (stochastic depth
 * driven by the policy, so it tolerates the skips the policy makes), and the
 * policy with REINFORCE on the same forward: reward 1 - (|a|/K)^2 when the
 * prediction is right, -penalty otherwise, minus a baseline: the batch mean
 * reward, or each image's reward under its greedy mask (self-critical, as the
 * reference's code does) (adnn_blockdrop_train_t, blockdrop.h).
 * Spend-more probabilities: p_k = policy sigmoid k (depends only on the
 * policy network). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adnn/adnn_impl.h"
#include "adnn/blockdrop.h"

#define BD_PBLOCKS    2    /* basic blocks of the policy network */
#define BD_PRICE_RATE 0.05 /* step of a block's price per batch (max_run < 1) */

typedef struct bd_fwd {
    adnn_cbn_act_t stem;
    adnn_basic_act_t blk[ADNN_MAX_BLOCKS];
    float *logits, *pooled;
    int n;
} bd_fwd_t;

typedef struct bd_pfwd {
    adnn_cbn_act_t stem;
    adnn_basic_act_t blk[BD_PBLOCKS];
    float *logits, *pooled; /* (n,K) policy logits, (n,C) */
    int n;
} bd_pfwd_t;

typedef struct bd {
    adnn_cbn_t stem;
    int nblocks;
    adnn_basic_t blocks[ADNN_MAX_BLOCKS];
    adnn_gap_head_t final;
    adnn_cbn_t pstem;
    adnn_basic_t pblocks[BD_PBLOCKS];
    adnn_gap_head_t pfc; /* policy logits, one per block */
    bd_fwd_t fwd;
    bd_pfwd_t pfwd;
    dp_rng_t rng;
    int rng_ready;
    adnn_blockdrop_train_t opt;
    double price[ADNN_MAX_BLOCKS]; /* each block's price when opt.max_run < 1 */
} bd_t;

#define OOM(what) dp_err_set(DP_ERR_NOMEM, "out of memory in BlockDrop %s", what)

static dp_err_t bd_build(adnn_model_t *m)
{
    const adnn_spec_t *s = &m->spec;
    if (s->nexits != 0)
        return dp_err_set(DP_ERR_INVALID, "spec: BlockDrop has no internal exits (%d given)",
                          s->nexits);
    if (s->policy_width < 1 || s->policy_width > 256)
        return dp_err_set(DP_ERR_RANGE, "spec: policy_width %d out of range [1, 256]",
                          s->policy_width);
    if (!m->fam) {
        bd_t *f0 = calloc(1, sizeof(bd_t));
        if (!f0) return dp_err_set(DP_ERR_NOMEM, "out of memory building a BlockDrop network");
        f0->opt = adnn_blockdrop_train_default();
        m->fam = f0;
    }
    bd_t *f = m->fam;
    char nm[64];
    int h = s->h, w = s->w, c = s->stem_width;
    adnn_cbn_reg(m, &f->stem, "stem", s->c, c, 3, 1, 1, 1, h, w, 1);
    f->nblocks = 0;
    for (int st = 0; st < s->nstages; st++)
        for (int b = 0; b < s->blocks[st]; b++) {
            adnn_basic_t *blk = &f->blocks[f->nblocks];
            snprintf(nm, sizeof nm, "blocks.%d", f->nblocks++);
            adnn_basic_reg(m, blk, nm, c, s->widths[st], b == 0 ? s->strides[st] : 1, h, w);
            c = blk->cout, h = blk->hout, w = blk->wout;
        }
    adnn_gap_head_reg(m, &f->final, "fc", c, h, w, s->num_classes);
    /* policy: conv3x3 s2, then basic blocks s2 doubling the width */
    int pw = s->policy_width;
    adnn_cbn_reg(m, &f->pstem, "policy.stem", s->c, pw, 3, 2, 1, 1, s->h, s->w, 1);
    c = pw, h = f->pstem.hout, w = f->pstem.wout;
    for (int j = 0; j < BD_PBLOCKS; j++) {
        snprintf(nm, sizeof nm, "policy.blocks.%d", j);
        adnn_basic_reg(m, &f->pblocks[j], nm, c, 2 * c, 2, h, w);
        c = f->pblocks[j].cout, h = f->pblocks[j].hout, w = f->pblocks[j].wout;
    }
    /* the policy head by hand: its bias starts at 1 (p = 0.73), so training
     * begins with most blocks on and learns to drop them */
    adnn_gap_head_t *pf = &f->pfc;
    pf->c = c, pf->h = h, pf->w = w, pf->k = f->nblocks;
    pf->fw = adnn_reg(m, "policy.fc.weight", 1, ADNN_INIT_UNIFORM, c, 2, f->nblocks, c, 0, 0);
    pf->fb = adnn_reg(m, "policy.fc.bias", 1, ADNN_INIT_ONE, c, 1, f->nblocks, 0, 0, 0);
    return DP_OK;
}

adnn_blockdrop_train_t adnn_blockdrop_train_default(void)
{
    return (adnn_blockdrop_train_t){.penalty = 10.0f, .explore = 0.8f, .max_run = 1.0f};
}

dp_err_t adnn_blockdrop_set_train(adnn_model_t *m, const adnn_blockdrop_train_t *o)
{
    if (m->spec.family != ADNN_FAMILY_BLOCKDROP)
        return dp_err_set(DP_ERR_INVALID, "adnn_blockdrop_set_train: model is '%s'",
                          adnn_family_name(m->spec.family));
    if (o->local_grad && !o->policy_only)
        return dp_err_set(DP_ERR_INVALID, "adnn_blockdrop_set_train: the local gradient needs the "
                                          "backbone frozen (policy_only)");
    if (!(o->penalty >= 0 && isfinite(o->penalty)) || !(o->explore >= 0.5f && o->explore <= 1.0f) ||
        !(o->max_run > 0 && o->max_run <= 1))
        return dp_err_set(DP_ERR_RANGE,
                          "adnn_blockdrop_set_train: penalty %g (not negative), explore %g (in "
                          "[0.5, 1]), max run %g (in (0, 1])",
                          o->penalty, o->explore, o->max_run);
    bd_t *f = m->fam;
    f->opt = *o;
    memset(f->price, 0, sizeof f->price);
    return DP_OK;
}

static void bd_destroy(adnn_model_t *m)
{
    free(m->fam);
    m->fam = NULL;
}

/* ------------------------------------------------------------- policy */

/* Policy logits for a batch into f->pfwd.logits (n,K). Does not reset the arena. */
static dp_err_t policy_forward(adnn_model_t *m, const float *x, int n, int train)
{
    bd_t *f = m->fam;
    bd_pfwd_t *a = &f->pfwd;
    a->n = n;
    dp_err_t err = adnn_cbn_forward(m, &f->pstem, x, n, train, &a->stem);
    const float *h = a->stem.out;
    for (int j = 0; j < BD_PBLOCKS && !err; j++) {
        err = adnn_basic_forward(m, &f->pblocks[j], h, n, train, &a->blk[j]);
        h = a->blk[j].out;
    }
    if (err) return err;
    a->pooled = adnn_arena_get(m, (size_t)n * f->pfc.c);
    a->logits = adnn_arena_get(m, (size_t)n * f->pfc.k);
    if (!a->pooled || !a->logits) return OOM("policy");
    adnn_gap_head_forward(&f->pfc, h, n, a->pooled, a->logits);
    return DP_OK;
}

/* dlogits (n,K) down to the input; accumulates into dx (may be NULL). */
static dp_err_t policy_backward(adnn_model_t *m, const float *dlogits, float *dx)
{
    bd_t *f = m->fam;
    bd_pfwd_t *a = &f->pfwd;
    int n = a->n;
    const adnn_basic_t *lb = &f->pblocks[BD_PBLOCKS - 1];
    float *d = adnn_arena_get(m, (size_t)n * lb->cout * lb->hout * lb->wout);
    if (!d) return OOM("policy backward");
    adnn_gap_head_backward(m, &f->pfc, a->pooled, dlogits, n, d);
    dp_err_t err = DP_OK;
    for (int j = BD_PBLOCKS - 1; j >= 0 && !err; j--) {
        const adnn_basic_t *b = &f->pblocks[j];
        float *dprev = adnn_arena_get(m, (size_t)n * b->cin * b->h * b->w);
        if (!dprev) return OOM("policy backward");
        err = adnn_basic_backward(m, b, &a->blk[j], d, dprev);
        d = dprev;
    }
    if (!err) err = adnn_cbn_backward(m, &f->pstem, &a->stem, d, dx);
    return err;
}

static double policy_flops(const bd_t *f, int exact)
{
    double fl = adnn_cbn_flops(&f->pstem, exact) + adnn_gap_head_flops(&f->pfc, exact);
    for (int j = 0; j < BD_PBLOCKS; j++) fl += adnn_basic_flops(&f->pblocks[j], exact);
    if (exact) fl += 4.0 * f->pfc.k; /* sigmoid and threshold per block */
    return fl;
}

static double sigmoid(double z) { return 1.0 / (1.0 + exp(-z)); }

/* ------------------------------------------------------------- backbone */

/* Every block computed for the whole batch; with mask (n,nblocks), image i
 * then keeps block b's output iff mask[i][b], else its skip path (x or
 * sc(x)). Masking is for training and batch evaluation only: the adaptive
 * forward below really skips. Logits in f->fwd.logits. */
static dp_err_t backbone_forward(adnn_model_t *m, const float *x, int n, int train,
                                 const uint8_t *mask)
{
    bd_t *f = m->fam;
    bd_fwd_t *a = &f->fwd;
    int B = f->nblocks;
    a->n = n;
    dp_err_t err = adnn_cbn_forward(m, &f->stem, x, n, train, &a->stem);
    const float *h = a->stem.out;
    for (int b = 0; b < B && !err; b++) {
        const adnn_basic_t *blk = &f->blocks[b];
        adnn_basic_act_t *ba = &a->blk[b];
        if ((err = adnn_basic_forward(m, blk, h, n, train, ba))) break;
        if (!mask) {
            h = ba->out;
            continue;
        }
        size_t per = (size_t)blk->cout * blk->hout * blk->wout;
        const float *skip = blk->has_sc ? ba->asc.out : h;
        for (int i = 0; i < n; i++)
            if (!mask[(size_t)i * B + b]) /* out of a dropped image: its skip path */
                memcpy(ba->out + i * per, skip + i * per, per * sizeof(float));
        h = ba->out;
    }
    if (err) return err;
    a->pooled = adnn_arena_get(m, (size_t)n * f->final.c);
    a->logits = adnn_arena_get(m, (size_t)n * f->final.k);
    if (!a->pooled || !a->logits) return OOM("forward");
    adnn_gap_head_forward(&f->final, h, n, a->pooled, a->logits);
    return DP_OK;
}

/* Backward of the masked backbone from dlogits (parameter gradients only). */
static dp_err_t backbone_backward(adnn_model_t *m, const float *dlogits, const uint8_t *mask)
{
    bd_t *f = m->fam;
    bd_fwd_t *a = &f->fwd;
    int n = a->n, B = f->nblocks;
    const adnn_basic_t *lb = &f->blocks[B - 1];
    float *d = adnn_arena_get(m, (size_t)n * lb->cout * lb->hout * lb->wout);
    if (!d) return OOM("backward");
    adnn_gap_head_backward(m, &f->final, a->pooled, dlogits, n, d);
    for (int b = B - 1; b >= 0; b--) {
        const adnn_basic_t *blk = &f->blocks[b];
        const adnn_basic_act_t *ba = &a->blk[b];
        size_t per = (size_t)blk->cout * blk->hout * blk->wout, sz = (size_t)n * per;
        float *dprev = adnn_arena_get(m, (size_t)n * blk->cin * blk->h * blk->w);
        float *dsum = adnn_arena_get(m, sz), *dskip = adnn_arena_get(m, sz);
        float *da1 = adnn_arena_get(m, sz);
        if (!dprev || !dsum || !dskip || !da1) return OOM("backward");
        for (int i = 0; i < n; i++) {
            size_t o = i * per;
            if (mask[(size_t)i * B + b])
                for (size_t j = 0; j < per; j++) dsum[o + j] = ba->sum[o + j] > 0 ? d[o + j] : 0;
            else
                memcpy(dskip + o, d + o, per * sizeof(float));
        }
        dp_err_t err = adnn_cbn_backward(m, &blk->c2, &ba->a2, dsum, da1);
        if (!err) err = adnn_cbn_backward(m, &blk->c1, &ba->a1, da1, dprev);
        if (err) return err;
        for (size_t j = 0; j < sz; j++) dskip[j] += dsum[j];
        if ((err = adnn_basic_shortcut_backward(m, blk, ba, dskip, dprev))) return err;
        d = dprev;
    }
    return adnn_cbn_backward(m, &f->stem, &a->stem, d, NULL);
}

/* ------------------------------------------------------------- interface */

static void bd_forward_adaptive(adnn_model_t *m, const float *x, adnn_trace_t *t)
{
    bd_t *f = m->fam;
    adnn_arena_reset(m);
    t->nblocks = f->nblocks;
    t->nexits = 0;
    t->pred = -1;
    if (policy_forward(m, x, 1, 0)) return;
    t->flops_ref += policy_flops(f, 0);
    t->flops_exact += policy_flops(f, 1);
    uint8_t run[ADNN_MAX_BLOCKS];
    for (int b = 0; b < f->nblocks; b++) {
        run[b] = sigmoid(f->pfwd.logits[b]) >= (double)m->spec.gate_threshold;
        t->gate_p[t->ngates++] = (float)sigmoid(f->pfwd.logits[b]);
    }
    const float *h = adnn_cbn_adaptive(m, &f->stem, x, t);
    /* a dropped downsampling block computes its projection only */
    for (int b = 0; b < f->nblocks && h; b++)
        h = adnn_basic_adaptive(m, &f->blocks[b], b, run[b], h, t);
    if (h) adnn_gap_head_adaptive(&f->final, h, 0, t);
}

static double bd_flops_full(const adnn_model_t *m, int exact)
{
    const bd_t *f = m->fam;
    double fl = policy_flops(f, exact) + adnn_cbn_flops(&f->stem, exact);
    for (int b = 0; b < f->nblocks; b++) fl += adnn_basic_flops(&f->blocks[b], exact);
    return fl + adnn_gap_head_flops(&f->final, exact);
}

/* The backbone with every block run (the policy is not consulted). */
static dp_err_t bd_eval_batch(adnn_model_t *m, const float *x, int n, float *out)
{
    adnn_arena_reset(m);
    dp_err_t err = backbone_forward(m, x, n, 0, NULL);
    if (err) return err;
    bd_t *f = m->fam;
    memcpy(out, f->fwd.logits, (size_t)n * f->final.k * sizeof(float));
    return DP_OK;
}

/* The reward of one image's run: 1 - (|a|/K)^2 when its prediction is right,
 * -penalty otherwise. */
static double bd_reward(const float *logits, int C, int32_t y, const uint8_t *mask, int B,
                        double pen, int *right)
{
    int arg, kept = 0;
    adnn_confidence(logits, C, &arg);
    for (int b = 0; b < B; b++) kept += mask[b];
    double frac = (double)kept / B;
    *right = arg == y;
    return *right ? 1.0 - frac * frac : -pen;
}

static dp_err_t bd_train_step(adnn_model_t *m, const float *x, const int32_t *y, int n,
                              double *loss, int *correct)
{
    bd_t *f = m->fam;
    int B = f->nblocks, C = m->spec.num_classes;
    if (!f->rng_ready) {
        dp_rng_seed(&f->rng, m->spec.seed ^ 0xb10cd409ULL);
        f->rng_ready = 1;
    }
    adnn_arena_reset(m);
    dp_err_t err = policy_forward(m, x, n, 1);
    if (err) return err;
    uint8_t *mask = (uint8_t *)adnn_arena_get(m, (size_t)n * B / sizeof(float) + 1);
    float *dz = adnn_arena_get(m, (size_t)n * B), *probs = adnn_arena_get(m, (size_t)n * C);
    float *dl = adnn_arena_get(m, (size_t)n * C);
    double *reward = (double *)adnn_arena_get(m, 2 * (size_t)n);
    double *base = (double *)adnn_arena_get(m, 2 * (size_t)n);
    double *raw = (double *)adnn_arena_get(m, 2 * (size_t)n); /* reward[] before the prices */
    if (!mask || !dz || !probs || !dl || !reward || !base || !raw) return OOM("training");
    const float *z = f->pfwd.logits;
    double a = f->opt.explore, pen = f->opt.penalty;
    int right;
    if (f->opt.self_critical) { /* each image's baseline: the reward of its greedy mask */
        for (size_t j = 0; j < (size_t)n * B; j++)
            mask[j] = sigmoid(z[j]) >= m->spec.gate_threshold;
        if ((err = backbone_forward(m, x, n, 0, mask))) return err;
        for (int i = 0; i < n; i++)
            base[i] = bd_reward(f->fwd.logits + (size_t)i * C, C, y[i], mask + (size_t)i * B, B,
                                pen, &right);
    }
    for (size_t j = 0; j < (size_t)n * B; j++) {
        double p = sigmoid(z[j]), q = a * p + (1.0 - a) * (1.0 - p);
        mask[j] = dp_rng_uniform(&f->rng) < q;
    }
    double *flip = NULL; /* (n, B): the reward with block b's decision flipped */
    if (f->opt.local_grad) {
        flip = (double *)adnn_arena_get(m, 2 * (size_t)n * B);
        uint8_t *m2 = (uint8_t *)adnn_arena_get(m, (size_t)n * B / sizeof(float) + 1);
        if (!flip || !m2) return OOM("training");
        memcpy(m2, mask, (size_t)n * B);
        for (int b = 0; b < B; b++) {
            for (int i = 0; i < n; i++) m2[(size_t)i * B + b] ^= 1;
            if ((err = backbone_forward(m, x, n, 0, m2))) return err;
            for (int i = 0; i < n; i++)
                flip[(size_t)i * B + b] = bd_reward(f->fwd.logits + (size_t)i * C, C, y[i],
                                                    m2 + (size_t)i * B, B, pen, &right);
            for (int i = 0; i < n; i++) m2[(size_t)i * B + b] ^= 1;
        }
    }
    if ((err = backbone_forward(m, x, n, !f->opt.policy_only, mask))) return err;
    *loss = nn_crossentropy_forward(probs, f->fwd.logits, y, n, C);
    nn_crossentropy_backward(dl, probs, y, n, C, 1.0f);
    double mean = 0;
    int c = 0;
    for (int i = 0; i < n; i++) {
        raw[i] = reward[i] =
            bd_reward(f->fwd.logits + (size_t)i * C, C, y[i], mask + (size_t)i * B, B, pen, &right);
        c += right;
        for (int b = 0; b < B; b++) reward[i] -= f->price[b] * mask[(size_t)i * B + b];
        mean += reward[i] / n;
    }
    if (!f->opt.self_critical)
        for (int i = 0; i < n; i++) base[i] = mean;
    *correct = c;
    /* REINFORCE: L = -(1/n) sum_i (R_i - baseline_i) sum_k log pi(a_ik); with
     * local_grad, L = -(1/n) sum_i E[R_i] differentiated one decision at a
     * time: dE[R_i]/dq_ik = R_i(a_ik = 1) - R_i(a_ik = 0), the others as drawn */
    for (int i = 0; i < n; i++)
        for (int b = 0; b < B; b++) {
            size_t j = (size_t)i * B + b;
            double p = sigmoid(z[j]), q = a * p + (1.0 - a) * (1.0 - p), g;
            if (flip) /* the other blocks' prices are the same both ways */
                g = (mask[j] ? raw[i] - flip[j] : flip[j] - raw[i]) - f->price[b];
            else
                g = (reward[i] - base[i]) * (mask[j] ? 1.0 / q : -1.0 / (1.0 - q));
            dz[j] = (float)(-g / n * (2.0 * a - 1.0) * p * (1.0 - p));
        }
    /* each block's price rises while more than max_run of the batch would run
     * it at inference (p >= threshold), falls otherwise, never below 0 */
    if (f->opt.max_run < 1)
        for (int b = 0; b < B; b++) {
            int runs = 0;
            for (int i = 0; i < n; i++)
                runs += sigmoid(z[(size_t)i * B + b]) >= m->spec.gate_threshold;
            f->price[b] =
                fmax(0.0, f->price[b] + BD_PRICE_RATE * ((double)runs / n - f->opt.max_run));
        }
    if (!f->opt.policy_only && (err = backbone_backward(m, dl, mask))) return err;
    return policy_backward(m, dz, NULL);
}

static int bd_pk_count(const adnn_model_t *m) { return ((const bd_t *)m->fam)->nblocks; }

static dp_err_t bd_pk_grad(adnn_model_t *m, const float *x, int n, float *p, double *loss,
                           float *dx)
{
    bd_t *f = m->fam;
    const adnn_spec_t *s = &m->spec;
    int K = f->nblocks;
    if (dx) memset(dx, 0, (size_t)n * s->c * s->h * s->w * sizeof(float));
    adnn_arena_reset(m);
    dp_err_t err = policy_forward(m, x, n, 0);
    if (err) return err;
    float *dz = adnn_arena_get(m, (size_t)n * K);
    if (!dz) return OOM("p_k");
    double l = 0, scale = 1.0 / ((double)n * K);
    for (size_t j = 0; j < (size_t)n * K; j++) {
        double z = f->pfwd.logits[j], pv = sigmoid(z);
        p[j] = (float)(pv < 1e-30 ? 1e-30 : pv);
        l -= scale * adnn_log_sigmoid(z);
        dz[j] = (float)(-scale * (1.0 - pv)); /* d(-log sigmoid z)/dz = -(1 - p) */
    }
    *loss = l;
    if (!dx) return DP_OK;
    return policy_backward(m, dz, dx);
}

/* Any loss of p: dp = dL/dp from fn, then dz = dp * p (1 - p) through the policy. */
static dp_err_t bd_pk_vjp(adnn_model_t *m, const float *x, int n, adnn_pk_dloss_fn fn, void *arg,
                          float *p, float *dx)
{
    bd_t *f = m->fam;
    const adnn_spec_t *s = &m->spec;
    int K = f->nblocks;
    memset(dx, 0, (size_t)n * s->c * s->h * s->w * sizeof(float));
    adnn_arena_reset(m);
    dp_err_t err = policy_forward(m, x, n, 0);
    if (err) return err;
    float *dp = adnn_arena_get(m, (size_t)n * K), *dz = adnn_arena_get(m, (size_t)n * K);
    if (!dp || !dz) return OOM("p_k");
    for (size_t j = 0; j < (size_t)n * K; j++) p[j] = (float)sigmoid(f->pfwd.logits[j]);
    fn(p, n, K, dp, arg);
    for (size_t j = 0; j < (size_t)n * K; j++) {
        double pv = sigmoid(f->pfwd.logits[j]);
        dz[j] = (float)(dp[j] * pv * (1.0 - pv));
    }
    return policy_backward(m, dz, dx);
}

const adnn_family_ops_t adnn_blockdrop_ops = {
    .family = ADNN_FAMILY_BLOCKDROP,
    .build = bd_build,
    .destroy = bd_destroy,
    .forward_adaptive = bd_forward_adaptive,
    .flops_full = bd_flops_full,
    .eval_batch = bd_eval_batch,
    .train_step = bd_train_step,
    .pk_count = bd_pk_count,
    .pk_grad = bd_pk_grad,
    .pk_vjp = bd_pk_vjp,
};
