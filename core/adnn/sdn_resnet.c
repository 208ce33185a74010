/* SDN ("shallow-deep network", Kaya et al. 2019) on a small ResNet for
 * 1x28x28 inputs: a conv3x3 stem, stages of residual basic blocks, an
 * internal classifier (mixed max/avg pool with a learned mix, linear) after
 * chosen blocks, and the usual GAP + linear classifier at the end.
 *
 * Inference at batch 1 stops at the first exit k whose confidence
 * c_k = max softmax >= tau: the blocks after it are never computed.
 * Training minimises sum_k w_k CE_k / sum_k w_k over every exit.
 * Spend-more probabilities (METHOD.md section 2), one per INTERNAL exit (the
 * final classifier's confidence never changes the cost): p_k = 1 - c_k for
 * every exit up to and including the one taken, p_k = 1 after it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adnn/adnn_impl.h"

typedef struct sdn_fwd {
    adnn_cbn_act_t stem;
    adnn_basic_act_t blk[ADNN_MAX_BLOCKS];
    adnn_sdn_head_act_t head[ADNN_MAX_EXITS];
    float *logits[ADNN_MAX_EXITS + 1]; /* (n,K) each; final last */
    float *pooled;                     /* (n, C) of the final classifier */
    int n;
} sdn_fwd_t;

typedef struct sdn {
    adnn_cbn_t stem;
    int nblocks;
    adnn_basic_t blocks[ADNN_MAX_BLOCKS];
    int exit_of_block[ADNN_MAX_BLOCKS]; /* -1 or internal exit index */
    adnn_sdn_head_t heads[ADNN_MAX_EXITS];
    adnn_gap_head_t final;
    sdn_fwd_t fwd;
} sdn_t;

static dp_err_t sdn_build(adnn_model_t *m)
{
    const adnn_spec_t *s = &m->spec;
    if (!m->fam && !(m->fam = calloc(1, sizeof(sdn_t))))
        return dp_err_set(DP_ERR_NOMEM, "out of memory building an SDN");
    sdn_t *f = m->fam;
    char nm[64];
    int h = s->h, w = s->w, c = s->stem_width;
    adnn_cbn_reg(m, &f->stem, "stem", s->c, c, 3, 1, 1, 1, h, w, 1);
    f->nblocks = 0;
    for (int st = 0; st < s->nstages; st++)
        for (int b = 0; b < s->blocks[st]; b++) {
            adnn_basic_t *blk = &f->blocks[f->nblocks];
            snprintf(nm, sizeof nm, "blocks.%d", f->nblocks);
            adnn_basic_reg(m, blk, nm, c, s->widths[st], b == 0 ? s->strides[st] : 1, h, w);
            c = blk->cout, h = blk->hout, w = blk->wout;
            f->exit_of_block[f->nblocks++] = -1;
        }
    for (int k = 0; k < s->nexits; k++) {
        const adnn_basic_t *blk = &f->blocks[s->exit_after[k]];
        snprintf(nm, sizeof nm, "exits.%d", k);
        adnn_sdn_head_reg(m, &f->heads[k], nm, blk->cout, blk->hout, blk->wout, s->exit_pool,
                          s->num_classes);
        f->exit_of_block[s->exit_after[k]] = k;
    }
    adnn_gap_head_reg(m, &f->final, "fc", c, h, w, s->num_classes);
    return DP_OK;
}

static void sdn_destroy(adnn_model_t *m)
{
    free(m->fam);
    m->fam = NULL;
}

/* Every block and every exit, batch n; activations kept in f->fwd. */
static dp_err_t sdn_full_forward(adnn_model_t *m, const float *x, int n, int train)
{
    sdn_t *f = m->fam;
    sdn_fwd_t *a = &f->fwd;
    int K = m->spec.num_classes;
    adnn_arena_reset(m);
    a->n = n;
    dp_err_t err = adnn_cbn_forward(m, &f->stem, x, n, train, &a->stem);
    const float *h = a->stem.out;
    for (int b = 0; b < f->nblocks && !err; b++) {
        err = adnn_basic_forward(m, &f->blocks[b], h, n, train, &a->blk[b]);
        if (err) break;
        h = a->blk[b].out;
        int k = f->exit_of_block[b];
        if (k >= 0) {
            if (!(a->logits[k] = adnn_arena_get(m, (size_t)n * K)))
                return dp_err_set(DP_ERR_NOMEM, "out of memory in SDN forward");
            err = adnn_sdn_head_forward(m, &f->heads[k], h, n, a->logits[k], &a->head[k]);
        }
    }
    if (err) return err;
    int E = m->spec.nexits;
    a->logits[E] = adnn_arena_get(m, (size_t)n * K);
    a->pooled = adnn_arena_get(m, (size_t)n * f->final.c);
    if (!a->logits[E] || !a->pooled)
        return dp_err_set(DP_ERR_NOMEM, "out of memory in SDN forward");
    adnn_gap_head_forward(&f->final, h, n, a->pooled, a->logits[E]);
    return DP_OK;
}

/* Backward from dlogits[k] (NULL: no gradient from exit k; index nexits is
 * the final classifier) down to the input; accumulates into dx (may be NULL). */
static dp_err_t sdn_backward(adnn_model_t *m, float *const *dlogits, float *dx)
{
    sdn_t *f = m->fam;
    sdn_fwd_t *a = &f->fwd;
    int n = a->n, E = m->spec.nexits;
    int last = f->nblocks - 1;
    if (!dlogits[E]) { /* start at the deepest exit that has a gradient */
        last = -1;
        for (int k = E - 1; k >= 0 && last < 0; k--)
            if (dlogits[k]) last = m->spec.exit_after[k];
        if (last < 0) return DP_OK;
    }
    const adnn_basic_t *lb = &f->blocks[last];
    float *d = adnn_arena_get(m, (size_t)n * lb->cout * lb->hout * lb->wout);
    if (!d) return dp_err_set(DP_ERR_NOMEM, "out of memory in SDN backward");
    if (dlogits[E]) adnn_gap_head_backward(m, &f->final, a->pooled, dlogits[E], n, d);
    dp_err_t err = DP_OK;
    for (int b = last; b >= 0 && !err; b--) {
        int k = f->exit_of_block[b];
        if (k >= 0 && dlogits[k])
            err = adnn_sdn_head_backward(m, &f->heads[k], &a->head[k], dlogits[k], d);
        if (err) break;
        const adnn_basic_t *blk = &f->blocks[b];
        float *dprev = adnn_arena_get(m, (size_t)n * blk->cin * blk->h * blk->w);
        if (!dprev) return dp_err_set(DP_ERR_NOMEM, "out of memory in SDN backward");
        err = adnn_basic_backward(m, blk, &a->blk[b], d, dprev);
        d = dprev;
    }
    if (!err) err = adnn_cbn_backward(m, &f->stem, &a->stem, d, dx);
    return err;
}

static void sdn_forward_adaptive(adnn_model_t *m, const float *x, adnn_trace_t *t)
{
    sdn_t *f = m->fam;
    const adnn_spec_t *s = &m->spec;
    int K = s->num_classes;
    adnn_cbn_act_t sa;
    adnn_basic_act_t ba;
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
        if (adnn_basic_forward(m, &f->blocks[b], h, 1, 0, &ba)) return;
        h = ba.out;
        t->ran[b] = 1;
        t->blocks_run++;
        t->flops_ref += adnn_basic_flops(&f->blocks[b], 0);
        t->flops_exact += adnn_basic_flops(&f->blocks[b], 1);
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

static double sdn_flops_full(const adnn_model_t *m, int exact)
{
    const sdn_t *f = m->fam;
    double fl = adnn_cbn_flops(&f->stem, exact);
    for (int b = 0; b < f->nblocks; b++) fl += adnn_basic_flops(&f->blocks[b], exact);
    for (int k = 0; k < m->spec.nexits; k++)
        fl += adnn_sdn_head_flops(&f->heads[k], exact) +
              (exact ? adnn_softmax_flops(m->spec.num_classes) : 0.0);
    return fl + adnn_gap_head_flops(&f->final, exact);
}

static dp_err_t sdn_eval_batch(adnn_model_t *m, const float *x, int n, float *out)
{
    dp_err_t err = sdn_full_forward(m, x, n, 0);
    if (err) return err;
    sdn_t *f = m->fam;
    adnn_exits_copy((const float *const *)f->fwd.logits, n, m->spec.nexits, m->spec.num_classes,
                    out);
    return DP_OK;
}

static dp_err_t sdn_train_step(adnn_model_t *m, const float *x, const int32_t *y, int n,
                               double *loss, int *correct)
{
    dp_err_t err = sdn_full_forward(m, x, n, 1);
    if (err) return err;
    sdn_t *f = m->fam;
    float *dl[ADNN_MAX_EXITS + 1];
    if ((err = adnn_exits_ce(m, (const float *const *)f->fwd.logits, y, n, dl, loss, correct)))
        return err;
    return sdn_backward(m, dl, NULL);
}

static int sdn_pk_count(const adnn_model_t *m) { return m->spec.nexits; }

static dp_err_t sdn_pk_grad(adnn_model_t *m, const float *x, int n, float *p, double *loss,
                            float *dx)
{
    if (adnn_exit_pk_clear(m, n, loss, dx) == 0) return DP_OK;
    dp_err_t err = sdn_full_forward(m, x, n, 0);
    if (err) return err;
    sdn_t *f = m->fam;
    float *dl[ADNN_MAX_EXITS + 1] = {0};
    if ((err = adnn_exit_pk_loss(m, (const float *const *)f->fwd.logits, n, p, loss, dl, "SDN")))
        return err;
    return sdn_backward(m, dl, dx);
}

/* p as in sdn_pk_grad, then dlogits from the caller's dL/dp. */
static dp_err_t sdn_pk_vjp(adnn_model_t *m, const float *x, int n, adnn_pk_dloss_fn fn, void *arg,
                           float *p, float *dx)
{
    if (adnn_exit_pk_clear(m, n, NULL, dx) == 0) return DP_OK;
    dp_err_t err = sdn_full_forward(m, x, n, 0);
    if (err) return err;
    sdn_t *f = m->fam;
    float *dl[ADNN_MAX_EXITS + 1] = {0};
    if ((err = adnn_exit_pk_vjp(m, (const float *const *)f->fwd.logits, n, fn, arg, p, dl, "SDN")))
        return err;
    return sdn_backward(m, dl, dx);
}

/* After sdn_eval_batch (activations in f->fwd, arena not reset). */
static dp_err_t sdn_exits_backward(adnn_model_t *m, const float *dlogits, int n, float *dx)
{
    sdn_t *f = m->fam;
    if (n != f->fwd.n)
        return dp_err_set(DP_ERR_INVALID, "adnn_exits_backward: n %d, last forward had %d", n,
                          f->fwd.n);
    float *dl[ADNN_MAX_EXITS + 1] = {0};
    dp_err_t err = adnn_exits_split(m, dlogits, n, dx, dl, "SDN");
    if (err) return err;
    return sdn_backward(m, dl, dx);
}

const adnn_family_ops_t adnn_sdn_resnet_ops = {
    .family = ADNN_FAMILY_SDN_RESNET,
    .build = sdn_build,
    .destroy = sdn_destroy,
    .forward_adaptive = sdn_forward_adaptive,
    .flops_full = sdn_flops_full,
    .eval_batch = sdn_eval_batch,
    .train_step = sdn_train_step,
    .pk_count = sdn_pk_count,
    .pk_grad = sdn_pk_grad,
    .pk_vjp = sdn_pk_vjp,
    .exits_backward = sdn_exits_backward,
};
