/* The SDN shared by SDN-ResNet and SDN-MobileNet (sdn.h): build, full and
 * early-exit forwards, backward and FLOPs, over a family's block
 * (adnn_sdn_block_ops_t); the entry points that train and differentiate
 * through the exits are exitnet.c's. The blocks and their activations
 * sit in two arrays allocated here with the family's struct sizes, reached
 * by index (blk, act). */
#include "adnn/sdn.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct sdn {
    adnn_exitnet_t exits; /* first: what the entry points of exitnet.c see */
    const adnn_sdn_block_ops_t *bops;
    adnn_cbn_t stem;
    int nblocks;
    char *blocks; /* ADNN_MAX_BLOCKS of bops->block_size bytes */
    char *acts;   /* ADNN_MAX_BLOCKS + 1 of bops->act_size: the last is
                     forward_adaptive's */
    adnn_sdn_dims_t in[ADNN_MAX_BLOCKS], out[ADNN_MAX_BLOCKS];
    int exit_of_block[ADNN_MAX_BLOCKS]; /* -1 or internal exit index */
    adnn_sdn_head_t heads[ADNN_MAX_EXITS];
    adnn_gap_head_t final;
    /* the last full forward, batch n */
    adnn_cbn_act_t astem;
    adnn_sdn_head_act_t ahead[ADNN_MAX_EXITS];
    float *pooled; /* (n, C) of the final classifier */
} sdn_t;

static void *blk(const sdn_t *f, int b) { return f->blocks + (size_t)b * f->bops->block_size; }
static void *act(const sdn_t *f, int b) { return f->acts + (size_t)b * f->bops->act_size; }

static size_t numel(adnn_sdn_dims_t d) { return (size_t)d.c * d.h * d.w; }

static dp_err_t full_forward(adnn_model_t *m, const float *x, int n, int train);
static dp_err_t backward(adnn_model_t *m, float *const *dlogits, float *dx);

dp_err_t adnn_sdn_build(adnn_model_t *m, const adnn_sdn_block_ops_t *bops, const char *who)
{
    const adnn_spec_t *s = &m->spec;
    if (!m->fam) {
        sdn_t *f = calloc(1, sizeof *f);
        if (f) f->blocks = calloc(ADNN_MAX_BLOCKS, bops->block_size);
        if (f) f->acts = calloc(ADNN_MAX_BLOCKS + 1, bops->act_size);
        m->fam = f;
        if (!f || !f->blocks || !f->acts) {
            adnn_sdn_destroy(m);
            return dp_err_set(DP_ERR_NOMEM, "out of memory in %s build", who);
        }
    }
    sdn_t *f = m->fam;
    f->bops = bops;
    f->exits = (adnn_exitnet_t){.who = who, .forward = full_forward, .backward = backward};
    char nm[64];
    adnn_sdn_dims_t d = {s->stem_width, s->h, s->w};
    adnn_cbn_reg(m, &f->stem, "stem", s->c, d.c, 3, 1, 1, 1, d.h, d.w, 1);
    f->nblocks = 0;
    for (int st = 0; st < s->nstages; st++)
        for (int b = 0; b < s->blocks[st]; b++) {
            const int i = f->nblocks++;
            snprintf(nm, sizeof nm, "blocks.%d", i);
            f->in[i] = d;
            bops->reg(m, blk(f, i), nm, d.c, s->widths[st], b == 0 ? s->strides[st] : 1, d.h, d.w,
                      &f->out[i]);
            d = f->out[i];
            f->exit_of_block[i] = -1;
        }
    for (int k = 0; k < s->nexits; k++) {
        const adnn_sdn_dims_t o = f->out[s->exit_after[k]];
        snprintf(nm, sizeof nm, "exits.%d", k);
        adnn_sdn_head_reg(m, &f->heads[k], nm, o.c, o.h, o.w, s->exit_pool, s->num_classes);
        f->exit_of_block[s->exit_after[k]] = k;
    }
    adnn_gap_head_reg(m, &f->final, "fc", d.c, d.h, d.w, s->num_classes);
    return DP_OK;
}

void adnn_sdn_destroy(adnn_model_t *m)
{
    sdn_t *f = m->fam;
    if (f) {
        free(f->blocks);
        free(f->acts);
        free(f);
    }
    m->fam = NULL;
}

#define OOM(f, what) dp_err_set(DP_ERR_NOMEM, "out of memory in %s " what, (f)->exits.who)

/* Every block and every exit, batch n; activations kept for backward. */
static dp_err_t full_forward(adnn_model_t *m, const float *x, int n, int train)
{
    sdn_t *f = m->fam;
    const adnn_sdn_block_ops_t *bo = f->bops;
    int K = m->spec.num_classes, E = m->spec.nexits;
    adnn_arena_reset(m);
    f->exits.n = n;
    dp_err_t err = adnn_cbn_forward(m, &f->stem, x, n, train, &f->astem);
    const float *h = f->astem.out;
    for (int b = 0; b < f->nblocks && !err; b++) {
        if ((err = bo->forward(m, blk(f, b), h, n, train, act(f, b)))) break;
        h = bo->out(act(f, b));
        int k = f->exit_of_block[b];
        if (k >= 0) {
            if (!(f->exits.logits[k] = adnn_arena_get(m, (size_t)n * K))) return OOM(f, "forward");
            err = adnn_sdn_head_forward(m, &f->heads[k], h, n, f->exits.logits[k], &f->ahead[k]);
        }
    }
    if (err) return err;
    f->exits.logits[E] = adnn_arena_get(m, (size_t)n * K);
    f->pooled = adnn_arena_get(m, (size_t)n * f->final.c);
    if (!f->exits.logits[E] || !f->pooled) return OOM(f, "forward");
    adnn_gap_head_forward(&f->final, h, n, f->pooled, f->exits.logits[E]);
    return DP_OK;
}

/* Backward from dlogits[k] (NULL: no gradient from exit k; index nexits is
 * the final classifier) down to the input; accumulates into dx (may be NULL). */
static dp_err_t backward(adnn_model_t *m, float *const *dlogits, float *dx)
{
    sdn_t *f = m->fam;
    int n = f->exits.n, E = m->spec.nexits;
    int last = f->nblocks - 1;
    if (!dlogits[E]) { /* start at the deepest exit that has a gradient */
        last = -1;
        for (int k = E - 1; k >= 0 && last < 0; k--)
            if (dlogits[k]) last = m->spec.exit_after[k];
        if (last < 0) return DP_OK;
    }
    float *d = adnn_arena_get(m, (size_t)n * numel(f->out[last]));
    if (!d) return OOM(f, "backward");
    if (dlogits[E]) adnn_gap_head_backward(m, &f->final, f->pooled, dlogits[E], n, d);
    dp_err_t err = DP_OK;
    for (int b = last; b >= 0 && !err; b--) {
        int k = f->exit_of_block[b];
        if (k >= 0 && dlogits[k])
            err = adnn_sdn_head_backward(m, &f->heads[k], &f->ahead[k], dlogits[k], d);
        if (err) break;
        float *dprev = adnn_arena_get(m, (size_t)n * numel(f->in[b]));
        if (!dprev) return OOM(f, "backward");
        err = f->bops->backward(m, blk(f, b), act(f, b), d, dprev);
        d = dprev;
    }
    if (!err) err = adnn_cbn_backward(m, &f->stem, &f->astem, d, dx);
    return err;
}

void adnn_sdn_forward_adaptive(adnn_model_t *m, const float *x, adnn_trace_t *t)
{
    sdn_t *f = m->fam;
    const adnn_sdn_block_ops_t *bo = f->bops;
    const adnn_spec_t *s = &m->spec;
    int K = s->num_classes;
    void *ba = act(f, ADNN_MAX_BLOCKS);
    adnn_sdn_head_act_t ha;
    float logits[1024];
    adnn_arena_reset(m);
    t->nblocks = f->nblocks;
    t->nexits = s->nexits;
    t->pred = -1;
    const float *h = adnn_cbn_adaptive(m, &f->stem, x, t);
    if (!h) return;
    for (int b = 0; b < f->nblocks; b++) {
        if (bo->forward(m, blk(f, b), h, 1, 0, ba)) return;
        h = bo->out(ba);
        t->ran[b] = 1;
        t->blocks_run++;
        t->flops_ref += bo->flops(blk(f, b), 0);
        t->flops_exact += bo->flops(blk(f, b), 1);
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
    adnn_gap_head_adaptive(&f->final, h, s->nexits, t);
}

double adnn_sdn_flops_full(const adnn_model_t *m, int exact)
{
    const sdn_t *f = m->fam;
    double fl = adnn_cbn_flops(&f->stem, exact);
    for (int b = 0; b < f->nblocks; b++) fl += f->bops->flops(blk(f, b), exact);
    for (int k = 0; k < m->spec.nexits; k++)
        fl += adnn_sdn_head_flops(&f->heads[k], exact) +
              (exact ? adnn_softmax_flops(m->spec.num_classes) : 0.0);
    return fl + adnn_gap_head_flops(&f->final, exact);
}
