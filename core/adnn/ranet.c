/* RANet ("Resolution Adaptive Networks", Yang et al. 2020), a smaller
 * variant for 1x28x28 inputs (docs/ZOO.md says what differs).
 *
 * Initial layer: a cascade of conv3x3 (stride strides[s]) + BN + ReLU
 * producing base features of stem_width channels at every scale, highest
 * resolution first (28 -> 14 -> 7 -> 4 with 3 scales). Then one scale flow
 * per scale, LOWEST resolution first (s = 0 is the coarsest). Flow s is
 * blocks[s] dense layers of growth widths[s]: layer i computes
 *   new = relu(bn(conv3x3(concat(own_{i-1}, up(low_i)))))
 *   own_i = concat(own_{i-1}, new)
 * where own_{-1} is the base feature of the scale and low_i (flows s > 0
 * only) is the output of layer min(i, blocks[s-1]-1) of the next coarser
 * flow, nearest-upsampled to this resolution: the fusion of RANet, by which
 * a finer flow reuses what the coarser flows computed.
 *
 * Exits sit after chosen blocks (global index, flows in order); the final
 * classifier after the last block. Every exit head is RANet's:
 * 2 x (conv3x3 s2 -> RANET_HEAD_WIDTH, BN, ReLU), global average pool,
 * linear. Inference at batch 1 stops at the first exit with max softmax
 * c_k >= tau: later layers, and the finer flows, are never computed.
 * Training (weighted CE over every exit) and the spend-more probabilities p_k
 * are every early-exit network's: exitnet.c runs them on ra_run's logits. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adnn/exitnet.h"

#define RANET_HEAD_WIDTH 32

typedef struct ra_layer {
    adnn_cbn_t conv;
    int s, i;             /* flow and layer in the flow */
    int res;              /* spatial size (res x res) */
    int cprev, cup, cown; /* channels: own_{i-1}, upsampled coarse input, own_i */
    int src;              /* block whose output is upsampled in, -1 for none */
    int src_res;
} ra_layer_t;

typedef struct ra_head {
    adnn_cbn_t c1, c2;
    adnn_gap_head_t fc;
} ra_head_t;

typedef struct ra_head_act {
    adnn_cbn_act_t a1, a2;
    float *pooled;
} ra_head_act_t;

typedef struct ra_fwd {
    adnn_cbn_act_t base[ADNN_MAX_STAGES];
    adnn_cbn_act_t lay[ADNN_MAX_BLOCKS];
    float *own[ADNN_MAX_BLOCKS]; /* (n, cown, res, res) */
    ra_head_act_t head[ADNN_MAX_EXITS + 1];
} ra_fwd_t;

typedef struct ranet {
    adnn_exitnet_t exits; /* first: what the entry points of exitnet.c see */
    int S;
    adnn_cbn_t base[ADNN_MAX_STAGES]; /* base[s]: features of scale s */
    int nblocks;
    ra_layer_t lay[ADNN_MAX_BLOCKS];
    int exit_of_block[ADNN_MAX_BLOCKS]; /* -1, internal exit index, or nexits (final) */
    int block_of_exit[ADNN_MAX_EXITS + 1];
    ra_head_t heads[ADNN_MAX_EXITS + 1];
    ra_fwd_t fwd;
} ranet_t;

#define OOM(what) dp_err_set(DP_ERR_NOMEM, "out of memory in RANet %s", what)

static dp_err_t ra_full_forward(adnn_model_t *m, const float *x, int n, int train);
static dp_err_t ra_backward(adnn_model_t *m, float *const *dlogits, float *dx);

/* ------------------------------------------------------------- pieces */

/* Nearest upsampling (PyTorch 'nearest': src = floor(dst * in / out)).
 * out (n,c,ho,ho) with image stride ostride floats; in (n,c,hi,hi). */
static void up_forward(float *out, size_t ostride, const float *in, int n, int c, int hi, int ho)
{
    for (int b = 0; b < n; b++)
        for (int ch = 0; ch < c; ch++) {
            const float *src = in + ((size_t)b * c + ch) * hi * hi;
            float *dst = out + (size_t)b * ostride + (size_t)ch * ho * ho;
            for (int y = 0; y < ho; y++)
                for (int x = 0; x < ho; x++)
                    dst[y * ho + x] = src[(y * hi / ho) * hi + x * hi / ho];
        }
}

/* Accumulates into din (n,c,hi,hi) from dout with image stride ostride. */
static void up_backward(float *din, const float *dout, size_t ostride, int n, int c, int hi, int ho)
{
    for (int b = 0; b < n; b++)
        for (int ch = 0; ch < c; ch++) {
            float *dst = din + ((size_t)b * c + ch) * hi * hi;
            const float *g = dout + (size_t)b * ostride + (size_t)ch * ho * ho;
            for (int y = 0; y < ho; y++)
                for (int x = 0; x < ho; x++) dst[(y * hi / ho) * hi + x * hi / ho] += g[y * ho + x];
        }
}

static void head_reg(adnn_model_t *m, ra_head_t *hd, const char *prefix, int c, int res, int k)
{
    char nm[64];
    snprintf(nm, sizeof nm, "%.56s.c1", prefix);
    adnn_cbn_reg(m, &hd->c1, nm, c, RANET_HEAD_WIDTH, 3, 2, 1, 1, res, res, 1);
    snprintf(nm, sizeof nm, "%.56s.c2", prefix);
    adnn_cbn_reg(m, &hd->c2, nm, RANET_HEAD_WIDTH, RANET_HEAD_WIDTH, 3, 2, 1, 1, hd->c1.hout,
                 hd->c1.wout, 1);
    snprintf(nm, sizeof nm, "%.56s.fc", prefix);
    adnn_gap_head_reg(m, &hd->fc, nm, RANET_HEAD_WIDTH, hd->c2.hout, hd->c2.wout, k);
}

static dp_err_t head_forward(adnn_model_t *m, const ra_head_t *hd, const float *in, int n,
                             int train, float *logits, ra_head_act_t *a)
{
    dp_err_t err = adnn_cbn_forward(m, &hd->c1, in, n, train, &a->a1);
    if (!err) err = adnn_cbn_forward(m, &hd->c2, a->a1.out, n, train, &a->a2);
    if (err) return err;
    if (!(a->pooled = adnn_arena_get(m, (size_t)n * hd->fc.c))) return OOM("exit head");
    adnn_gap_head_forward(&hd->fc, a->a2.out, n, a->pooled, logits);
    return DP_OK;
}

/* Accumulates into din. */
static dp_err_t head_backward(adnn_model_t *m, const ra_head_t *hd, const ra_head_act_t *a,
                              const float *dlogits, int n, float *din)
{
    float *d2 = adnn_arena_get(m, (size_t)n * hd->c2.cout * hd->c2.hout * hd->c2.wout);
    float *d1 = adnn_arena_get(m, (size_t)n * hd->c1.cout * hd->c1.hout * hd->c1.wout);
    if (!d2 || !d1) return OOM("exit head backward");
    adnn_gap_head_backward(m, &hd->fc, a->pooled, dlogits, n, d2);
    dp_err_t err = adnn_cbn_backward(m, &hd->c2, &a->a2, d2, d1);
    if (!err) err = adnn_cbn_backward(m, &hd->c1, &a->a1, d1, din);
    return err;
}

static double head_flops(const ra_head_t *hd, int exact)
{
    return adnn_cbn_flops(&hd->c1, exact) + adnn_cbn_flops(&hd->c2, exact) +
           adnn_gap_head_flops(&hd->fc, exact);
}

/* ------------------------------------------------------------- build */

static dp_err_t ra_build(adnn_model_t *m)
{
    const adnn_spec_t *s = &m->spec;
    if (s->scales != s->nstages)
        return dp_err_set(DP_ERR_INVALID, "RANet spec: scales %d but %d stages (one per scale)",
                          s->scales, s->nstages);
    if (!m->fam && !(m->fam = calloc(1, sizeof(ranet_t)))) return OOM("build");
    ranet_t *f = m->fam;
    f->exits =
        (adnn_exitnet_t){.who = "RANet", .forward = ra_full_forward, .backward = ra_backward};
    char nm[64];
    int S = f->S = s->nstages, C0 = s->stem_width;
    int res[ADNN_MAX_STAGES];
    /* base cascade, finest scale first */
    int h = s->h, cin = s->c;
    for (int sc = S - 1; sc >= 0; sc--) {
        snprintf(nm, sizeof nm, "base.%d", sc);
        adnn_cbn_reg(m, &f->base[sc], nm, cin, C0, 3, s->strides[sc], 1, 1, h, h, 1);
        h = res[sc] = f->base[sc].hout;
        cin = C0;
    }
    if (s->h != s->w) return dp_err_set(DP_ERR_INVALID, "RANet spec: square inputs only");
    f->nblocks = 0;
    int first[ADNN_MAX_STAGES];
    for (int sc = 0; sc < S; sc++) {
        first[sc] = f->nblocks;
        for (int i = 0; i < s->blocks[sc]; i++) {
            ra_layer_t *L = &f->lay[f->nblocks];
            L->s = sc, L->i = i, L->res = res[sc];
            L->cprev = C0 + i * s->widths[sc];
            L->cown = L->cprev + s->widths[sc];
            L->src = -1, L->cup = 0, L->src_res = 0;
            if (sc > 0) {
                int j = i < s->blocks[sc - 1] ? i : s->blocks[sc - 1] - 1;
                const ra_layer_t *src = &f->lay[first[sc - 1] + j];
                L->src = first[sc - 1] + j;
                L->cup = src->cown;
                L->src_res = src->res;
            }
            snprintf(nm, sizeof nm, "blocks.%d", f->nblocks);
            adnn_cbn_reg(m, &L->conv, nm, L->cprev + L->cup, s->widths[sc], 3, 1, 1, 1, L->res,
                         L->res, 1);
            f->exit_of_block[f->nblocks++] = -1;
        }
    }
    int E = s->nexits;
    for (int k = 0; k <= E; k++) {
        int b = k < E ? s->exit_after[k] : f->nblocks - 1;
        if (k < E)
            snprintf(nm, sizeof nm, "exits.%d", k);
        else
            snprintf(nm, sizeof nm, "final");
        head_reg(m, &f->heads[k], nm, f->lay[b].cown, f->lay[b].res, s->num_classes);
        f->exit_of_block[b] = k;
        f->block_of_exit[k] = b;
    }
    return DP_OK;
}

static void ra_destroy(adnn_model_t *m)
{
    free(m->fam);
    m->fam = NULL;
}

/* ------------------------------------------------------------- forward */

static dp_err_t layer_forward(adnn_model_t *m, int b, int n, int train)
{
    ranet_t *f = m->fam;
    ra_fwd_t *a = &f->fwd;
    const ra_layer_t *L = &f->lay[b];
    size_t hw = (size_t)L->res * L->res, cin = (size_t)(L->cprev + L->cup);
    const float *prev = L->i == 0 ? a->base[L->s].out : a->own[b - 1];
    float *cat = adnn_arena_get(m, (size_t)n * cin * hw);
    a->own[b] = adnn_arena_get(m, (size_t)n * L->cown * hw);
    if (!cat || !a->own[b]) return OOM("forward");
    for (int i = 0; i < n; i++)
        memcpy(cat + i * cin * hw, prev + i * L->cprev * hw, L->cprev * hw * sizeof(float));
    if (L->src >= 0)
        up_forward(cat + L->cprev * hw, cin * hw, a->own[L->src], n, L->cup, L->src_res, L->res);
    dp_err_t err = adnn_cbn_forward(m, &L->conv, cat, n, train, &a->lay[b]);
    if (err) return err;
    size_t g = (size_t)L->conv.cout;
    for (int i = 0; i < n; i++) {
        float *o = a->own[b] + i * L->cown * hw;
        memcpy(o, prev + i * L->cprev * hw, L->cprev * hw * sizeof(float));
        memcpy(o + L->cprev * hw, a->lay[b].out + i * g * hw, g * hw * sizeof(float));
    }
    return DP_OK;
}

/* Runs the network on a batch. With t (batch 1), stops at the first exit
 * that fires and records the trace; without, computes every exit. */
static dp_err_t ra_run(adnn_model_t *m, const float *x, int n, int train, adnn_trace_t *t)
{
    ranet_t *f = m->fam;
    ra_fwd_t *a = &f->fwd;
    const adnn_spec_t *s = &m->spec;
    int K = s->num_classes, E = s->nexits;
    adnn_arena_reset(m);
    f->exits.n = n;
    dp_err_t err = DP_OK;
    for (int sc = f->S - 1; sc >= 0 && !err; sc--) {
        err = adnn_cbn_forward(m, &f->base[sc], sc == f->S - 1 ? x : a->base[sc + 1].out, n, train,
                               &a->base[sc]);
        if (t) t->flops_ref += adnn_cbn_flops(&f->base[sc], 0);
        if (t) t->flops_exact += adnn_cbn_flops(&f->base[sc], 1);
    }
    for (int b = 0; b < f->nblocks && !err; b++) {
        if ((err = layer_forward(m, b, n, train))) break;
        if (t) {
            t->ran[b] = 1;
            t->blocks_run++;
            t->flops_ref += adnn_cbn_flops(&f->lay[b].conv, 0);
            t->flops_exact += adnn_cbn_flops(&f->lay[b].conv, 1);
        }
        int k = f->exit_of_block[b];
        if (k < 0) continue;
        if (!(f->exits.logits[k] = adnn_arena_get(m, (size_t)n * K))) return OOM("forward");
        err = head_forward(m, &f->heads[k], a->own[b], n, train, f->exits.logits[k], &a->head[k]);
        if (err || !t) continue;
        t->flops_ref += head_flops(&f->heads[k], 0);
        t->flops_exact += head_flops(&f->heads[k], 1) + (k < E ? adnn_softmax_flops(K) : 0.0);
        int arg;
        t->conf[k] = adnn_confidence(f->exits.logits[k], K, &arg);
        if (k == E || t->conf[k] >= s->exit_tau) {
            t->pred = arg;
            t->exit_taken = k;
            return DP_OK;
        }
    }
    return err;
}

static dp_err_t ra_full_forward(adnn_model_t *m, const float *x, int n, int train)
{
    return ra_run(m, x, n, train, NULL);
}

/* Backward from dlogits[k] (NULL: no gradient from exit k; index nexits is
 * the final classifier) to the input; accumulates into dx (may be NULL). */
static dp_err_t ra_backward(adnn_model_t *m, float *const *dlogits, float *dx)
{
    ranet_t *f = m->fam;
    ra_fwd_t *a = &f->fwd;
    int n = f->exits.n, E = m->spec.nexits, last = -1;
    for (int k = 0; k <= E; k++)
        if (dlogits[k] && f->block_of_exit[k] > last) last = f->block_of_exit[k];
    if (last < 0) return DP_OK;
    float *gown[ADNN_MAX_BLOCKS] = {0}, *gbase[ADNN_MAX_STAGES] = {0};
    for (int b = 0; b <= last; b++) {
        const ra_layer_t *L = &f->lay[b];
        if (!(gown[b] = adnn_arena_get(m, (size_t)n * L->cown * L->res * L->res)))
            return OOM("backward");
    }
    for (int sc = 0; sc < f->S; sc++) {
        const adnn_cbn_t *u = &f->base[sc];
        if (!(gbase[sc] = adnn_arena_get(m, (size_t)n * u->cout * u->hout * u->wout)))
            return OOM("backward");
    }
    dp_err_t err = DP_OK;
    for (int b = last; b >= 0 && !err; b--) {
        const ra_layer_t *L = &f->lay[b];
        int k = f->exit_of_block[b];
        if (k >= 0 && dlogits[k])
            if ((err = head_backward(m, &f->heads[k], &a->head[k], dlogits[k], n, gown[b]))) break;
        size_t hw = (size_t)L->res * L->res, cin = (size_t)(L->cprev + L->cup);
        size_t g = (size_t)L->conv.cout;
        float *gprev = L->i == 0 ? gbase[L->s] : gown[b - 1];
        float *dnew = adnn_arena_get(m, (size_t)n * g * hw);
        float *dcat = adnn_arena_get(m, (size_t)n * cin * hw);
        if (!dnew || !dcat) return OOM("backward");
        for (int i = 0; i < n; i++) {
            const float *go = gown[b] + i * L->cown * hw;
            float *gp = gprev + i * L->cprev * hw;
            for (size_t j = 0; j < L->cprev * hw; j++) gp[j] += go[j];
            memcpy(dnew + i * g * hw, go + L->cprev * hw, g * hw * sizeof(float));
        }
        if ((err = adnn_cbn_backward(m, &L->conv, &a->lay[b], dnew, dcat))) break;
        for (int i = 0; i < n; i++) {
            const float *dc = dcat + i * cin * hw;
            float *gp = gprev + i * L->cprev * hw;
            for (size_t j = 0; j < L->cprev * hw; j++) gp[j] += dc[j];
        }
        if (L->src >= 0)
            up_backward(gown[L->src], dcat + L->cprev * hw, cin * hw, n, L->cup, L->src_res,
                        L->res);
    }
    for (int sc = 0; sc < f->S && !err; sc++)
        err = adnn_cbn_backward(m, &f->base[sc], &a->base[sc], gbase[sc],
                                sc == f->S - 1 ? dx : gbase[sc + 1]);
    return err;
}

/* ------------------------------------------------------------- interface */

static void ra_forward_adaptive(adnn_model_t *m, const float *x, adnn_trace_t *t)
{
    ranet_t *f = m->fam;
    t->nblocks = f->nblocks;
    t->nexits = m->spec.nexits;
    t->pred = -1;
    (void)ra_run(m, x, 1, 0, t);
}

static double ra_flops_full(const adnn_model_t *m, int exact)
{
    const ranet_t *f = m->fam;
    int E = m->spec.nexits;
    double fl = 0;
    for (int sc = 0; sc < f->S; sc++) fl += adnn_cbn_flops(&f->base[sc], exact);
    for (int b = 0; b < f->nblocks; b++) fl += adnn_cbn_flops(&f->lay[b].conv, exact);
    for (int k = 0; k <= E; k++)
        fl += head_flops(&f->heads[k], exact) +
              (exact && k < E ? adnn_softmax_flops(m->spec.num_classes) : 0.0);
    return fl;
}

const adnn_family_ops_t adnn_ranet_ops = {
    .family = ADNN_FAMILY_RANET,
    .build = ra_build,
    .destroy = ra_destroy,
    .forward_adaptive = ra_forward_adaptive,
    .flops_full = ra_flops_full,
    ADNN_EXITNET_OPS,
};
