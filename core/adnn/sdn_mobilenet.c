/* SDN ("shallow-deep network", Kaya et al. 2019) on a small MobileNet (v1)
 * backbone for 1x28x28 inputs: a conv3x3 stem, then stages of depthwise-
 * separable blocks (depthwise conv3x3 + BN + ReLU, pointwise conv1x1 + BN +
 * ReLU; no residual, as in MobileNet v1), an internal classifier (the SDN
 * head of sdn_resnet.c: mixed max/avg pool with a learned mix, linear) after
 * chosen blocks, and GAP + linear at the end.
 *
 * Inference at batch 1 stops at the first exit k whose confidence
 * c_k = max softmax >= tau: the blocks after it are never computed.
 * Training minimises sum_k w_k CE_k / sum_k w_k over every exit.
 * Spend-more probabilities: one per INTERNAL exit, p_k = 1 - c_k for every
 * exit up to and including the one taken, p_k = 1 after it.
 *
 * FLOPs: the depthwise conv is a conv with groups == channels. The reference
 * convention counts it as 2*Cin*Cout*9*HW (not divided by groups, the
 * DeepPerform code's overcount); the exact count divides by groups. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adnn/adnn_impl.h"

/* Depthwise-separable block. */
typedef struct dws {
    adnn_cbn_t dw, pw;
} dws_t;
typedef struct dws_act {
    adnn_cbn_act_t adw, apw;
} dws_act_t;

typedef struct mbf {
    adnn_cbn_act_t stem;
    dws_act_t blk[ADNN_MAX_BLOCKS];
    adnn_sdn_head_act_t head[ADNN_MAX_EXITS];
    float *logits[ADNN_MAX_EXITS + 1]; /* (n,K) each; final last */
    float *pooled;                     /* (n, C) of the final classifier */
    int n;
} mbf_t;

typedef struct mbn {
    adnn_cbn_t stem;
    int nblocks;
    dws_t blocks[ADNN_MAX_BLOCKS];
    int exit_of_block[ADNN_MAX_BLOCKS]; /* -1 or internal exit index */
    adnn_sdn_head_t heads[ADNN_MAX_EXITS];
    adnn_gap_head_t final;
    mbf_t fwd;
} mbn_t;

#define OOM(what) dp_err_set(DP_ERR_NOMEM, "out of memory in SDN-MobileNet %s", what)

static void dws_reg(adnn_model_t *m, dws_t *b, const char *prefix, int cin, int cout, int stride,
                    int h, int w)
{
    char nm[64];
    snprintf(nm, sizeof nm, "%.56s.dw", prefix);
    adnn_cbn_reg(m, &b->dw, nm, cin, cin, 3, stride, 1, cin, h, w, 1);
    snprintf(nm, sizeof nm, "%.56s.pw", prefix);
    adnn_cbn_reg(m, &b->pw, nm, cin, cout, 1, 1, 0, 1, b->dw.hout, b->dw.wout, 1);
}

static dp_err_t dws_forward(adnn_model_t *m, const dws_t *b, const float *in, int n, int train,
                            dws_act_t *a)
{
    dp_err_t err = adnn_cbn_forward(m, &b->dw, in, n, train, &a->adw);
    if (!err) err = adnn_cbn_forward(m, &b->pw, a->adw.out, n, train, &a->apw);
    return err;
}

/* dout (n,cout,hout,wout) CLOBBERED; accumulates into din (n,cin,h,w). */
static dp_err_t dws_backward(adnn_model_t *m, const dws_t *b, const dws_act_t *a, float *dout,
                             float *din)
{
    float *dmid = adnn_arena_get(m, (size_t)a->adw.n * b->dw.cout * b->dw.hout * b->dw.wout);
    if (!dmid) return OOM("backward");
    dp_err_t err = adnn_cbn_backward(m, &b->pw, &a->apw, dout, dmid);
    if (!err) err = adnn_cbn_backward(m, &b->dw, &a->adw, dmid, din);
    return err;
}

static double dws_flops(const dws_t *b, int exact)
{
    return adnn_cbn_flops(&b->dw, exact) + adnn_cbn_flops(&b->pw, exact);
}

static dp_err_t mbn_build(adnn_model_t *m)
{
    const adnn_spec_t *s = &m->spec;
    if (!m->fam && !(m->fam = calloc(1, sizeof(mbn_t)))) return OOM("build");
    mbn_t *f = m->fam;
    char nm[64];
    int h = s->h, w = s->w, c = s->stem_width;
    adnn_cbn_reg(m, &f->stem, "stem", s->c, c, 3, 1, 1, 1, h, w, 1);
    f->nblocks = 0;
    for (int st = 0; st < s->nstages; st++)
        for (int b = 0; b < s->blocks[st]; b++) {
            dws_t *blk = &f->blocks[f->nblocks];
            snprintf(nm, sizeof nm, "blocks.%d", f->nblocks);
            dws_reg(m, blk, nm, c, s->widths[st], b == 0 ? s->strides[st] : 1, h, w);
            c = blk->pw.cout, h = blk->pw.hout, w = blk->pw.wout;
            f->exit_of_block[f->nblocks++] = -1;
        }
    for (int k = 0; k < s->nexits; k++) {
        const adnn_cbn_t *pw = &f->blocks[s->exit_after[k]].pw;
        snprintf(nm, sizeof nm, "exits.%d", k);
        adnn_sdn_head_reg(m, &f->heads[k], nm, pw->cout, pw->hout, pw->wout, s->exit_pool,
                          s->num_classes);
        f->exit_of_block[s->exit_after[k]] = k;
    }
    adnn_gap_head_reg(m, &f->final, "fc", c, h, w, s->num_classes);
    return DP_OK;
}

static void mbn_destroy(adnn_model_t *m)
{
    free(m->fam);
    m->fam = NULL;
}

/* Every block and every exit, batch n; activations kept in f->fwd. */
static dp_err_t mbn_full_forward(adnn_model_t *m, const float *x, int n, int train)
{
    mbn_t *f = m->fam;
    mbf_t *a = &f->fwd;
    int K = m->spec.num_classes, E = m->spec.nexits;
    adnn_arena_reset(m);
    a->n = n;
    dp_err_t err = adnn_cbn_forward(m, &f->stem, x, n, train, &a->stem);
    const float *h = a->stem.out;
    for (int b = 0; b < f->nblocks && !err; b++) {
        if ((err = dws_forward(m, &f->blocks[b], h, n, train, &a->blk[b]))) break;
        h = a->blk[b].apw.out;
        int k = f->exit_of_block[b];
        if (k >= 0) {
            if (!(a->logits[k] = adnn_arena_get(m, (size_t)n * K))) return OOM("forward");
            err = adnn_sdn_head_forward(m, &f->heads[k], h, n, a->logits[k], &a->head[k]);
        }
    }
    if (err) return err;
    a->logits[E] = adnn_arena_get(m, (size_t)n * K);
    a->pooled = adnn_arena_get(m, (size_t)n * f->final.c);
    if (!a->logits[E] || !a->pooled) return OOM("forward");
    adnn_gap_head_forward(&f->final, h, n, a->pooled, a->logits[E]);
    return DP_OK;
}

/* Backward from dlogits[k] (NULL: no gradient from exit k; index nexits is
 * the final classifier) down to the input; accumulates into dx (may be NULL). */
static dp_err_t mbn_backward(adnn_model_t *m, float *const *dlogits, float *dx)
{
    mbn_t *f = m->fam;
    mbf_t *a = &f->fwd;
    int n = a->n, E = m->spec.nexits;
    int last = f->nblocks - 1;
    if (!dlogits[E]) { /* start at the deepest exit that has a gradient */
        last = -1;
        for (int k = E - 1; k >= 0 && last < 0; k--)
            if (dlogits[k]) last = m->spec.exit_after[k];
        if (last < 0) return DP_OK;
    }
    const adnn_cbn_t *lp = &f->blocks[last].pw;
    float *d = adnn_arena_get(m, (size_t)n * lp->cout * lp->hout * lp->wout);
    if (!d) return OOM("backward");
    if (dlogits[E]) adnn_gap_head_backward(m, &f->final, a->pooled, dlogits[E], n, d);
    dp_err_t err = DP_OK;
    for (int b = last; b >= 0 && !err; b--) {
        int k = f->exit_of_block[b];
        if (k >= 0 && dlogits[k])
            err = adnn_sdn_head_backward(m, &f->heads[k], &a->head[k], dlogits[k], d);
        if (err) break;
        const adnn_cbn_t *dw = &f->blocks[b].dw;
        float *dprev = adnn_arena_get(m, (size_t)n * dw->cin * dw->h * dw->w);
        if (!dprev) return OOM("backward");
        err = dws_backward(m, &f->blocks[b], &a->blk[b], d, dprev);
        d = dprev;
    }
    if (!err) err = adnn_cbn_backward(m, &f->stem, &a->stem, d, dx);
    return err;
}

static void mbn_forward_adaptive(adnn_model_t *m, const float *x, adnn_trace_t *t)
{
    mbn_t *f = m->fam;
    const adnn_spec_t *s = &m->spec;
    int K = s->num_classes;
    adnn_cbn_act_t sa;
    dws_act_t ba;
    adnn_sdn_head_act_t ha;
    float logits[1024];
    adnn_arena_reset(m);
    t->nblocks = f->nblocks;
    t->nexits = s->nexits;
    t->pred = -1;
    if (adnn_cbn_forward(m, &f->stem, x, 1, 0, &sa)) return;
    t->flops_ref += adnn_cbn_flops(&f->stem, 0);
    t->flops_exact += adnn_cbn_flops(&f->stem, 1);
    const float *h = sa.out;
    for (int b = 0; b < f->nblocks; b++) {
        if (dws_forward(m, &f->blocks[b], h, 1, 0, &ba)) return;
        h = ba.apw.out;
        t->ran[b] = 1;
        t->blocks_run++;
        t->flops_ref += dws_flops(&f->blocks[b], 0);
        t->flops_exact += dws_flops(&f->blocks[b], 1);
        int k = f->exit_of_block[b];
        if (k < 0) continue;
        if (adnn_sdn_head_forward(m, &f->heads[k], h, 1, logits, &ha)) return;
        t->flops_ref += adnn_sdn_head_flops(&f->heads[k], 0);
        t->flops_exact += adnn_sdn_head_flops(&f->heads[k], 1) + adnn_softmax_flops(K);
        int arg;
        t->conf[k] = adnn_confidence(logits, K, &arg);
        if (t->conf[k] >= s->exit_tau) {
            t->pred = arg;
            t->exit_taken = k;
            return;
        }
    }
    float pooled[1024];
    adnn_gap_head_forward(&f->final, h, 1, pooled, logits);
    t->flops_ref += adnn_gap_head_flops(&f->final, 0);
    t->flops_exact += adnn_gap_head_flops(&f->final, 1);
    t->conf[s->nexits] = adnn_confidence(logits, K, &t->pred);
    t->exit_taken = s->nexits;
}

static double mbn_flops_full(const adnn_model_t *m, int exact)
{
    const mbn_t *f = m->fam;
    double fl = adnn_cbn_flops(&f->stem, exact);
    for (int b = 0; b < f->nblocks; b++) fl += dws_flops(&f->blocks[b], exact);
    for (int k = 0; k < m->spec.nexits; k++)
        fl += adnn_sdn_head_flops(&f->heads[k], exact) +
              (exact ? adnn_softmax_flops(m->spec.num_classes) : 0.0);
    return fl + adnn_gap_head_flops(&f->final, exact);
}

static dp_err_t mbn_eval_batch(adnn_model_t *m, const float *x, int n, float *out)
{
    dp_err_t err = mbn_full_forward(m, x, n, 0);
    if (err) return err;
    mbn_t *f = m->fam;
    adnn_exits_copy((const float *const *)f->fwd.logits, n, m->spec.nexits, m->spec.num_classes,
                    out);
    return DP_OK;
}

static dp_err_t mbn_train_step(adnn_model_t *m, const float *x, const int32_t *y, int n,
                               double *loss, int *correct)
{
    dp_err_t err = mbn_full_forward(m, x, n, 1);
    if (err) return err;
    mbn_t *f = m->fam;
    float *dl[ADNN_MAX_EXITS + 1];
    if ((err = adnn_exits_ce(m, (const float *const *)f->fwd.logits, y, n, dl, loss, correct)))
        return err;
    return mbn_backward(m, dl, NULL);
}

static int mbn_pk_count(const adnn_model_t *m) { return m->spec.nexits; }

static dp_err_t mbn_pk_grad(adnn_model_t *m, const float *x, int n, float *p, double *loss,
                            float *dx)
{
    if (adnn_exit_pk_clear(m, n, loss, dx) == 0) return DP_OK;
    dp_err_t err = mbn_full_forward(m, x, n, 0);
    if (err) return err;
    mbn_t *f = m->fam;
    float *dl[ADNN_MAX_EXITS + 1] = {0};
    if ((err = adnn_exit_pk_loss(m, (const float *const *)f->fwd.logits, n, p, loss, dl,
                                 "SDN-MobileNet")))
        return err;
    return mbn_backward(m, dl, dx);
}

/* p as in mbn_pk_grad, then dlogits from the caller's dL/dp. */
static dp_err_t mbn_pk_vjp(adnn_model_t *m, const float *x, int n, adnn_pk_dloss_fn fn, void *arg,
                           float *p, float *dx)
{
    if (adnn_exit_pk_clear(m, n, NULL, dx) == 0) return DP_OK;
    dp_err_t err = mbn_full_forward(m, x, n, 0);
    if (err) return err;
    mbn_t *f = m->fam;
    float *dl[ADNN_MAX_EXITS + 1] = {0};
    if ((err = adnn_exit_pk_vjp(m, (const float *const *)f->fwd.logits, n, fn, arg, p, dl,
                                "SDN-MobileNet")))
        return err;
    return mbn_backward(m, dl, dx);
}

/* After mbn_eval_batch (activations in f->fwd, arena not reset). */
static dp_err_t mbn_exits_backward(adnn_model_t *m, const float *dlogits, int n, float *dx)
{
    mbn_t *f = m->fam;
    if (n != f->fwd.n)
        return dp_err_set(DP_ERR_INVALID, "adnn_exits_backward: n %d, last forward had %d", n,
                          f->fwd.n);
    float *dl[ADNN_MAX_EXITS + 1] = {0};
    dp_err_t err = adnn_exits_split(m, dlogits, n, dx, dl, "SDN-MobileNet");
    if (err) return err;
    return mbn_backward(m, dl, dx);
}

const adnn_family_ops_t adnn_sdn_mobilenet_ops = {
    .family = ADNN_FAMILY_SDN_MOBILENET,
    .build = mbn_build,
    .destroy = mbn_destroy,
    .forward_adaptive = mbn_forward_adaptive,
    .flops_full = mbn_flops_full,
    .eval_batch = mbn_eval_batch,
    .train_step = mbn_train_step,
    .pk_count = mbn_pk_count,
    .pk_grad = mbn_pk_grad,
    .pk_vjp = mbn_pk_vjp,
    .exits_backward = mbn_exits_backward,
};
