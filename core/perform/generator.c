/* The DeepPerform generator: layout of the blocks, forward, backward, Adam.
 * See generator.h for the architecture. Every layer's geometry is one
 * nn_conv_t built once for max_batch; a call copies it and sets n. */
#include "perform/generator.h"

#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn/act.h"
#include "nn/adam.h"
#include "nn/attention.h"
#include "nn/blas.h"
#include "nn/conv.h"
#include "nn/gemm.h"
#include "nn/norm.h"
#include "util/rng.h"

#define GEN_MAX_TENSORS  96
#define GEN_CHUNK_FLOATS ((size_t)1 << 21) /* column matrix of a batched conv */
#define GEN_MAX_WORKERS  8                 /* eval forward: most batch slices on the pool */
#define GEN_NAME_LEN     40
#define BN_MOMENTUM      0.1f
#define NORM_EPS         1e-5f

/* ---------------------------------------------------------------- geometry */

typedef struct gen_dims {
    nn_conv_t enc[3];                 /* conv3x3 p0, strides 1,2,2 */
    nn_conv_t rc1[4], rc2[4], rsc[4]; /* residual convs on padded input; 1x1 shortcut */
    int rcin[4], rcout[4], rh, rw;    /* residual blocks' channels, spatial size */
    nn_conv_t dec[3];                 /* transposed convs */
    int ac[2], ahw[2];                /* attention channels, positions */
} gen_dims_t;

static int dims_init(gen_dims_t *d, const perf_gen_config_t *cfg, int n)
{
    const int w = cfg->width;
    if (cfg->c < 1 || cfg->h < 1 || cfg->w < 1 || w < 1 || n < 1) return -1;
    const int ec[4] = {cfg->c, w, 2 * w, 4 * w};
    const int es[3] = {1, 2, 2};
    int h = cfg->h, ww = cfg->w;
    for (int i = 0; i < 3; i++) {
        if (h < 3 || ww < 3 ||
            nn_conv2d_init(&d->enc[i], n, ec[i], h, ww, ec[i + 1], 3, 3, es[i], 0, 1))
            return -1;
        h = d->enc[i].hout, ww = d->enc[i].wout;
    }
    if (h < 2 || ww < 2) /* reflection pad 1 needs 2 */
        return -1;
    d->rh = h, d->rw = ww;
    const int rc[5] = {4 * w, 8 * w, 8 * w, 8 * w, 4 * w};
    for (int r = 0; r < 4; r++) {
        d->rcin[r] = rc[r], d->rcout[r] = rc[r + 1];
        if (nn_conv2d_init(&d->rc1[r], n, rc[r], h + 2, ww + 2, rc[r + 1], 3, 3, 1, 0, 1) ||
            nn_conv2d_init(&d->rc2[r], n, rc[r + 1], h + 2, ww + 2, rc[r + 1], 3, 3, 1, 0, 1) ||
            nn_conv2d_init(&d->rsc[r], n, rc[r], h, ww, rc[r + 1], 1, 1, 1, 0, 1))
            return -1;
    }
    const int dc[4] = {4 * w, 2 * w, w, cfg->c};
    for (int i = 0; i < 2; i++) {
        if (nn_convt2d_init(&d->dec[i], n, dc[i], h, ww, dc[i + 1], 3, 3, 2, 0, 0, 1)) return -1;
        h = d->dec[i].hout, ww = d->dec[i].wout;
        d->ac[i] = dc[i + 1], d->ahw[i] = h * ww;
    }
    const int kh = cfg->h - h + 1, kw = cfg->w - ww + 1;
    if (kh < 1 || kw < 1 || nn_convt2d_init(&d->dec[2], n, w, h, ww, cfg->c, kh, kw, 1, 0, 0, 1))
        return -1;
    assert(d->dec[2].hout == cfg->h && d->dec[2].wout == cfg->w);
    return 0;
}

static size_t conv_in(const nn_conv_t *c) { return (size_t)c->cin * c->h * c->w; }
static size_t conv_out(const nn_conv_t *c) { return (size_t)c->cout * c->hout * c->wout; }
static int c8_of(int c) { return c / 8 > 1 ? c / 8 : 1; }

/* ------------------------------------------------------------- parameters */

typedef struct bn_params {
    float *w, *b;   /* (C) */
    float *rm, *rv; /* running statistics (C); NULL in the gradient struct */
} bn_params_t;

typedef struct res_params {
    float *c1w; /* (Cout,Cin,3,3) */
    bn_params_t bn1;
    float *c2w; /* (Cout,Cout,3,3) */
    bn_params_t bn2;
    float *scw; /* (Cout,Cin,1,1), NULL when Cin == Cout */
    bn_params_t scbn;
} res_params_t;

typedef struct att_params {
    float *wq, *bq, *wk, *bk; /* (C8,C), (C8) */
    float *wv, *bv;           /* (C,C), (C) */
    float *gamma;             /* (1) */
} att_params_t;

typedef struct gen_params {
    float *enc_w[3], *enc_b[3]; /* (Cout,Cin,3,3), (Cout) */
    res_params_t res[4];
    float *dec_w[3], *dec_b[3]; /* (Cin,Cout,KH,KW), (Cout) */
    att_params_t att[2];
} gen_params_t;

typedef struct tensor_rec {
    perf_gen_tensor_t t;
    char name[GEN_NAME_LEN];
    size_t off; /* in the parameter block (trainable) or the statistics block */
} tensor_rec_t;

/* Walks the tensors in state_dict order, pointing slots into the blocks
 * (NULL bases give NULL pointers) and, when recs is set, recording them. */
typedef struct walker {
    float *pbase, *sbase;
    size_t np, ns;
    tensor_rec_t *recs;
    int nrec;
} walker_t;

static void take(walker_t *wk, float **slot, int stat, const char *name, int ndim, int s0, int s1,
                 int s2, int s3)
{
    const int s[4] = {s0, s1, s2, s3};
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) numel *= (size_t)s[i];
    size_t off = stat ? wk->ns : wk->np;
    float *base = stat ? wk->sbase : wk->pbase;
    *slot = base ? base + off : NULL;
    if (stat)
        wk->ns += numel;
    else
        wk->np += numel;
    if (wk->recs) {
        assert(wk->nrec < GEN_MAX_TENSORS);
        tensor_rec_t *r = &wk->recs[wk->nrec++];
        snprintf(r->name, sizeof r->name, "%s", name);
        r->t.ndim = ndim;
        for (int i = 0; i < 4; i++) r->t.shape[i] = i < ndim ? s[i] : 1;
        r->t.numel = numel;
        r->t.trainable = !stat;
        r->off = off;
    }
}

static void take_bn(walker_t *wk, bn_params_t *bn, const char *prefix, int c)
{
    char nm[GEN_NAME_LEN];
    snprintf(nm, sizeof nm, "%s.weight", prefix);
    take(wk, &bn->w, 0, nm, 1, c, 1, 1, 1);
    snprintf(nm, sizeof nm, "%s.bias", prefix);
    take(wk, &bn->b, 0, nm, 1, c, 1, 1, 1);
    snprintf(nm, sizeof nm, "%s.running_mean", prefix);
    take(wk, &bn->rm, 1, nm, 1, c, 1, 1, 1);
    snprintf(nm, sizeof nm, "%s.running_var", prefix);
    take(wk, &bn->rv, 1, nm, 1, c, 1, 1, 1);
}

static void layout_params(walker_t *wk, gen_params_t *p, const gen_dims_t *d)
{
    char nm[GEN_NAME_LEN];
    memset(p, 0, sizeof *p);
    for (int i = 0; i < 3; i++) {
        const nn_conv_t *c = &d->enc[i];
        snprintf(nm, sizeof nm, "enc%d.weight", i);
        take(wk, &p->enc_w[i], 0, nm, 4, c->cout, c->cin, 3, 3);
        snprintf(nm, sizeof nm, "enc%d.bias", i);
        take(wk, &p->enc_b[i], 0, nm, 1, c->cout, 1, 1, 1);
    }
    for (int r = 0; r < 4; r++) {
        res_params_t *rp = &p->res[r];
        const int ci = d->rcin[r], co = d->rcout[r];
        char pre[GEN_NAME_LEN / 2];
        snprintf(nm, sizeof nm, "res%d.conv1.weight", r);
        take(wk, &rp->c1w, 0, nm, 4, co, ci, 3, 3);
        snprintf(pre, sizeof pre, "res%d.bn1", r);
        take_bn(wk, &rp->bn1, pre, co);
        snprintf(nm, sizeof nm, "res%d.conv2.weight", r);
        take(wk, &rp->c2w, 0, nm, 4, co, co, 3, 3);
        snprintf(pre, sizeof pre, "res%d.bn2", r);
        take_bn(wk, &rp->bn2, pre, co);
        if (ci != co) {
            snprintf(nm, sizeof nm, "res%d.sc_conv.weight", r);
            take(wk, &rp->scw, 0, nm, 4, co, ci, 1, 1);
            snprintf(pre, sizeof pre, "res%d.sc_bn", r);
            take_bn(wk, &rp->scbn, pre, co);
        }
    }
    for (int i = 0; i < 3; i++) {
        const nn_conv_t *c = &d->dec[i];
        snprintf(nm, sizeof nm, "dec%d.weight", i);
        take(wk, &p->dec_w[i], 0, nm, 4, c->cin, c->cout, c->kh, c->kw);
        snprintf(nm, sizeof nm, "dec%d.bias", i);
        take(wk, &p->dec_b[i], 0, nm, 1, c->cout, 1, 1, 1);
        if (i == 2) break;
        att_params_t *a = &p->att[i];
        const int ch = d->ac[i], c8 = c8_of(ch);
        snprintf(nm, sizeof nm, "att%d.query.weight", i);
        take(wk, &a->wq, 0, nm, 4, c8, ch, 1, 1);
        snprintf(nm, sizeof nm, "att%d.query.bias", i);
        take(wk, &a->bq, 0, nm, 1, c8, 1, 1, 1);
        snprintf(nm, sizeof nm, "att%d.key.weight", i);
        take(wk, &a->wk, 0, nm, 4, c8, ch, 1, 1);
        snprintf(nm, sizeof nm, "att%d.key.bias", i);
        take(wk, &a->bk, 0, nm, 1, c8, 1, 1, 1);
        snprintf(nm, sizeof nm, "att%d.value.weight", i);
        take(wk, &a->wv, 0, nm, 4, ch, ch, 1, 1);
        snprintf(nm, sizeof nm, "att%d.value.bias", i);
        take(wk, &a->bv, 0, nm, 1, ch, 1, 1, 1);
        snprintf(nm, sizeof nm, "att%d.gamma", i);
        take(wk, &a->gamma, 0, nm, 1, 1, 1, 1, 1);
    }
}

/* ------------------------------------------------------------- activations */

typedef struct res_acts {
    float *pad1, *c1, *bn1, *a1, *pad2, *c2, *bn2, *sc, *scbn, *out;
    float *m1, *r1, *m2, *r2, *msc, *rsc; /* batch statistics (C) */
} res_acts_t;

typedef struct gen_acts {
    float *inp; /* copy of the input (N,C,H,W), for enc0's weight gradient */
    float *enc_c[3], *enc_n[3], *enc_a[3]; /* conv, InstanceNorm, LeakyReLU */
    float *enc_m[3], *enc_r[3];            /* InstanceNorm mean, rstd (N*C) */
    res_acts_t res[4];
    float *dec_c[3], *dec_n[2], *dec_a[2], *att[2]; /* dec_c[2] is pre-tanh */
    float *dec_m[2], *dec_r[2], *att_cache[2];
    float *out; /* tanh output */
} gen_acts_t;

typedef struct alayout {
    float *base;
    size_t off;
} alayout_t;

static float *takea(alayout_t *l, size_t count)
{
    float *p = l->base ? l->base + l->off : NULL;
    l->off += (count + 15) & ~(size_t)15; /* 64-byte aligned tensors */
    return p;
}

/* grads = 1 lays out the activation-gradient twin: no statistics, no caches. */
static size_t layout_acts(gen_acts_t *a, float *base, const gen_dims_t *d, int nb, int grads)
{
    alayout_t l = {base, 0};
    const size_t n = (size_t)nb, st = grads ? 0 : 1;
    memset(a, 0, sizeof *a);
    a->inp = takea(&l, st * n * conv_in(&d->enc[0]));
    for (int i = 0; i < 3; i++) {
        const size_t sz = n * conv_out(&d->enc[i]);
        a->enc_c[i] = takea(&l, sz);
        a->enc_n[i] = takea(&l, sz);
        a->enc_a[i] = takea(&l, sz);
        a->enc_m[i] = takea(&l, st * n * d->enc[i].cout);
        a->enc_r[i] = takea(&l, st * n * d->enc[i].cout);
    }
    for (int r = 0; r < 4; r++) {
        res_acts_t *ra = &a->res[r];
        const size_t co = (size_t)d->rcout[r], sz = n * conv_out(&d->rc1[r]);
        ra->pad1 = takea(&l, n * conv_in(&d->rc1[r]));
        ra->c1 = takea(&l, sz);
        ra->bn1 = takea(&l, sz);
        ra->a1 = takea(&l, sz);
        ra->pad2 = takea(&l, n * conv_in(&d->rc2[r]));
        ra->c2 = takea(&l, sz);
        ra->bn2 = takea(&l, sz);
        if (d->rcin[r] != d->rcout[r]) {
            ra->sc = takea(&l, sz);
            ra->scbn = takea(&l, sz);
            ra->msc = takea(&l, st * co);
            ra->rsc = takea(&l, st * co);
        }
        ra->out = takea(&l, sz);
        ra->m1 = takea(&l, st * co);
        ra->r1 = takea(&l, st * co);
        ra->m2 = takea(&l, st * co);
        ra->r2 = takea(&l, st * co);
    }
    for (int i = 0; i < 3; i++) {
        const size_t sz = n * conv_out(&d->dec[i]);
        a->dec_c[i] = takea(&l, sz);
        if (i == 2) break;
        a->dec_n[i] = takea(&l, sz);
        a->dec_a[i] = takea(&l, sz);
        a->att[i] = takea(&l, sz);
        a->dec_m[i] = takea(&l, st * n * d->dec[i].cout);
        a->dec_r[i] = takea(&l, st * n * d->dec[i].cout);
        a->att_cache[i] = takea(&l, st * nn_attention_cache_size(nb, d->ac[i], d->ahw[i]));
    }
    a->out = takea(&l, grads ? 0 : n * conv_out(&d->dec[2]));
    return l.off;
}

/* ------------------------------------------------------------ packed weights
 * The eval forward runs the convs through nn_gemm with weights packed once
 * (nn_conv2d_pack_weight) instead of OpenBLAS, which re-packs a 9 MB weight
 * on every call. The copy is refreshed at the first eval forward after
 * anything that may change the weights: creation, an Adam step, or handing
 * out a pointer to them (perf_gen_params, perf_gen_tensor). enc0 (K = 9) and
 * dec2 stay on OpenBLAS (NULL here): too little K for the packed kernel. */

typedef struct gen_packed {
    int valid;
    float *block;
    float *enc[3], *rc1[4], *rc2[4], *rsc[4], *dec[3];
} gen_packed_t;

/* Lays out (base NULL: sizes) the packed weights; returns the floats used. */
static size_t layout_packed(gen_packed_t *pk, float *base, const gen_dims_t *d)
{
    alayout_t l = {base, 0};
    for (int i = 1; i < 3; i++) pk->enc[i] = takea(&l, nn_conv2d_packed_size(&d->enc[i]));
    for (int r = 0; r < 4; r++) {
        pk->rc1[r] = takea(&l, nn_conv2d_packed_size(&d->rc1[r]));
        pk->rc2[r] = takea(&l, nn_conv2d_packed_size(&d->rc2[r]));
        if (d->rcin[r] != d->rcout[r]) pk->rsc[r] = takea(&l, nn_conv2d_packed_size(&d->rsc[r]));
    }
    for (int i = 0; i < 2; i++) pk->dec[i] = takea(&l, nn_convt2d_packed_size(&d->dec[i]));
    return l.off;
}

static void pack_weights(gen_packed_t *pk, const gen_params_t *p, const gen_dims_t *d)
{
    for (int i = 1; i < 3; i++) nn_conv2d_pack_weight(&d->enc[i], pk->enc[i], p->enc_w[i]);
    for (int r = 0; r < 4; r++) {
        nn_conv2d_pack_weight(&d->rc1[r], pk->rc1[r], p->res[r].c1w);
        nn_conv2d_pack_weight(&d->rc2[r], pk->rc2[r], p->res[r].c2w);
        if (pk->rsc[r]) nn_conv2d_pack_weight(&d->rsc[r], pk->rsc[r], p->res[r].scw);
    }
    for (int i = 0; i < 2; i++) nn_convt2d_pack_weight(&d->dec[i], pk->dec[i], p->dec_w[i]);
    pk->valid = 1;
}

/* The eval forward only, and only with a vector micro-kernel: the portable C
 * one is slower than OpenBLAS. */
static int use_packed(int training) { return !training && nn_gemm_get_path() != NN_GEMM_PORTABLE; }

/* ------------------------------------------------------------------ object */

struct perf_gen {
    perf_gen_config_t cfg;
    gen_dims_t dims; /* for max_batch */
    size_t nparams, nstats, nacts, ndacts, nws;
    float *params, *grads, *adam_m, *adam_v, *stats, *acts, *dacts, *ws;
    float *wws[GEN_MAX_WORKERS]; /* workspaces of the eval forward's slices 1.. */
    int nworkers;                /* slices of an eval batch: min(max_batch, 8) */
    gen_params_t p, gp;          /* named pointers into params (and stats), grads */
    gen_acts_t a, da;
    nn_adam_t adam;
    gen_packed_t *pk; /* packed conv weights for the eval forward (own block: the
                         const accessors invalidate it) */
    int last_n;       /* batch of the last training forward, 0 if none */
    int fwd_n;        /* batch of the last forward */
    int ntensors;
    tensor_rec_t recs[GEN_MAX_TENSORS];
};

perf_gen_config_t perf_gen_config_default(void)
{
    perf_gen_config_t c = {.c = 1,
                           .h = 28,
                           .w = 28,
                           .width = 64,
                           .max_batch = 64,
                           .seed = 1,
                           .res_slope = 0.01f,
                           .slope = 0.01f,
                           .inference_only = 0};
    return c;
}

size_t perf_gen_count_params(const perf_gen_config_t *cfg)
{
    gen_dims_t d;
    if (!cfg || dims_init(&d, cfg, 1)) return 0;
    walker_t wk = {0};
    gen_params_t p;
    layout_params(&wk, &p, &d);
    return wk.np;
}

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

static size_t workspace_size(const gen_dims_t *d, int nb)
{
    size_t ws = 0;
    for (int i = 0; i < 3; i++) ws = max_sz(ws, nn_conv2d_workspace(&d->enc[i]));
    for (int r = 0; r < 4; r++) {
        ws = max_sz(ws, nn_conv2d_workspace(&d->rc1[r]));
        ws = max_sz(ws, nn_conv2d_workspace(&d->rc2[r]));
        if (d->rcin[r] != d->rcout[r]) ws = max_sz(ws, nn_conv2d_workspace(&d->rsc[r]));
    }
    for (int i = 0; i < 3; i++) ws = max_sz(ws, nn_convt2d_workspace(&d->dec[i]));
    for (int i = 0; i < 2; i++) ws = max_sz(ws, nn_attention_workspace(nb, d->ac[i], d->ahw[i]));
    return ws;
}

static float *alloc_floats(size_t n)
{
    void *p = NULL;
    size_t bytes = (n ? n : 1) * sizeof(float);
    bytes = (bytes + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, bytes)) return NULL;
    return p;
}

static void fill_normal(dp_rng_t *rng, float *p, size_t n, float mean, float std)
{
    for (size_t i = 0; i < n; i++) p[i] = mean + std * dp_rng_normal(rng);
}

static void init_weights(perf_gen_t *g)
{
    dp_rng_t rng;
    dp_rng_seed(&rng, g->cfg.seed);
    memset(g->params, 0, g->nparams * sizeof(float));
    for (int i = 0; i < g->ntensors; i++) {
        tensor_rec_t *r = &g->recs[i];
        const char *dot = strrchr(r->name, '.');
        if (!r->t.trainable) { /* running_mean 0, running_var 1 */
            float v = strcmp(dot, ".running_var") == 0 ? 1.0f : 0.0f;
            for (size_t j = 0; j < r->t.numel; j++) r->t.data[j] = v;
        } else if (strcmp(dot, ".weight") == 0) {
            int is_bn = strstr(r->name, "bn") != NULL;
            fill_normal(&rng, r->t.data, r->t.numel, is_bn ? 1.0f : 0.0f, 0.02f);
        } /* biases and gamma stay 0 */
    }
}

/* What perf_gen_new allocates, in floats, from the config alone: the
 * parameter, statistics, activation and workspace blocks, the packed weights,
 * the eval forward's extra slice workspaces and, when trainable, gradients,
 * Adam moments and activation gradients. */
typedef struct gen_plan {
    gen_dims_t dims;
    size_t nparams, nstats, nacts, ndacts, nws, nwws, npacked;
    int nworkers;
} gen_plan_t;

static size_t g_memory_limit; /* bytes; 0: this machine's physical memory */

static size_t physical_memory(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    return pages > 0 && psz > 0 ? (size_t)pages * (size_t)psz : SIZE_MAX;
}

void perf_gen_set_memory_limit(size_t bytes) { g_memory_limit = bytes; }

size_t perf_gen_memory_limit(void) { return g_memory_limit ? g_memory_limit : physical_memory(); }

/* -1 on a bad shape. */
static int gen_plan(gen_plan_t *pl, const perf_gen_config_t *cfg)
{
    memset(pl, 0, sizeof *pl);
    if (dims_init(&pl->dims, cfg, cfg->max_batch)) return -1;
    walker_t wk = {0};
    gen_params_t p;
    layout_params(&wk, &p, &pl->dims);
    pl->nparams = wk.np, pl->nstats = wk.ns;
    gen_acts_t a;
    pl->nacts = layout_acts(&a, NULL, &pl->dims, cfg->max_batch, 0);
    gen_dims_t d1; /* kernels may choose another strategy at n = 1 */
    dims_init(&d1, cfg, 1);
    pl->nws = max_sz(workspace_size(&pl->dims, cfg->max_batch), workspace_size(&d1, 1));
    gen_packed_t pk;
    pl->npacked = layout_packed(&pk, NULL, &pl->dims);
    /* An eval forward of n > 1 images runs min(n, nworkers) slices of the
     * batch on the worker pool, each with a workspace of its own (slice 0:
     * the main one) sized for the largest slice of any n <= max_batch,
     * ceil(max_batch / nworkers) images. */
    pl->nworkers = cfg->max_batch < GEN_MAX_WORKERS ? cfg->max_batch : GEN_MAX_WORKERS;
    if (pl->nworkers > 1) {
        const int most = (cfg->max_batch + pl->nworkers - 1) / pl->nworkers;
        gen_dims_t ds;
        dims_init(&ds, cfg, most);
        pl->nwws = max_sz(workspace_size(&ds, ds.enc[0].n), workspace_size(&d1, 1));
    }
    if (!cfg->inference_only) pl->ndacts = layout_acts(&a, NULL, &pl->dims, cfg->max_batch, 1);
    return 0;
}

static double plan_bytes(const gen_plan_t *pl, const perf_gen_config_t *cfg)
{
    double f = (double)pl->nparams + (double)pl->nstats + (double)pl->nacts + (double)pl->nws +
               (double)pl->npacked + (double)(pl->nworkers - 1) * (double)pl->nwws;
    if (!cfg->inference_only) f += 3.0 * (double)pl->nparams + (double)pl->ndacts;
    return f * sizeof(float);
}

double perf_gen_memory_bytes(const perf_gen_config_t *cfg)
{
    gen_plan_t pl;
    if (!cfg || cfg->max_batch < 1 || gen_plan(&pl, cfg)) return 0;
    return plan_bytes(&pl, cfg);
}

perf_gen_t *perf_gen_new(const perf_gen_config_t *cfg)
{
    perf_gen_t *g = NULL;
    if (!cfg || cfg->max_batch < 1) {
        dp_err_set(DP_ERR_INVALID, "perf_gen_new: no config or max_batch < 1");
        return NULL;
    }
    gen_plan_t pl;
    if (gen_plan(&pl, cfg)) {
        dp_err_set(DP_ERR_INVALID, "perf_gen_new: input %dx%dx%d width %d too small or invalid",
                   cfg->c, cfg->h, cfg->w, cfg->width);
        return NULL;
    }
    /* before any allocation: a crafted generator file must not get the
     * gigabytes its shape implies (the last self-attention alone holds
     * (H-5)^2 x (W-5)^2 floats per image) */
    const double need = plan_bytes(&pl, cfg), limit = (double)perf_gen_memory_limit();
    if (need > limit) {
        dp_err_set(DP_ERR_INVALID,
                   "perf_gen_new: a %dx%dx%d generator of width %d at batch %d needs %.3g GiB, "
                   "above the limit of %.3g GiB%s",
                   cfg->c, cfg->h, cfg->w, cfg->width, cfg->max_batch, need / 1073741824.0,
                   limit / 1073741824.0, g_memory_limit ? "" : " (this machine's memory)");
        return NULL;
    }
    g = calloc(1, sizeof *g);
    if (!g) goto nomem;
    g->cfg = *cfg;
    g->dims = pl.dims;
    walker_t wk = {.recs = g->recs};
    layout_params(&wk, &g->p, &g->dims);
    g->nparams = pl.nparams, g->nstats = pl.nstats, g->ntensors = wk.nrec;
    g->nacts = pl.nacts, g->nws = pl.nws;
    g->params = alloc_floats(g->nparams);
    g->stats = alloc_floats(g->nstats);
    g->acts = alloc_floats(g->nacts);
    g->ws = alloc_floats(g->nws);
    if (!g->params || !g->stats || !g->acts || !g->ws) goto nomem;
    if (!(g->pk = calloc(1, sizeof *g->pk))) goto nomem;
    if (!(g->pk->block = alloc_floats(pl.npacked))) goto nomem;
    layout_packed(g->pk, g->pk->block, &g->dims);
    g->nworkers = pl.nworkers;
    for (int i = 1; i < g->nworkers; i++)
        if (!(g->wws[i] = alloc_floats(pl.nwws))) goto nomem;
    if (!cfg->inference_only) {
        g->ndacts = pl.ndacts;
        g->grads = alloc_floats(g->nparams);
        g->adam_m = alloc_floats(g->nparams);
        g->adam_v = alloc_floats(g->nparams);
        g->dacts = alloc_floats(g->ndacts);
        if (!g->grads || !g->adam_m || !g->adam_v || !g->dacts) goto nomem;
        memset(g->grads, 0, g->nparams * sizeof(float));
        memset(g->adam_m, 0, g->nparams * sizeof(float));
        memset(g->adam_v, 0, g->nparams * sizeof(float));
        layout_acts(&g->da, g->dacts, &g->dims, cfg->max_batch, 1);
        walker_t wg = {.pbase = g->grads};
        layout_params(&wg, &g->gp, &g->dims);
    }
    walker_t wp = {.pbase = g->params, .sbase = g->stats};
    layout_params(&wp, &g->p, &g->dims);
    layout_acts(&g->a, g->acts, &g->dims, cfg->max_batch, 0);
    for (int i = 0; i < g->ntensors; i++) {
        tensor_rec_t *r = &g->recs[i];
        r->t.name = r->name;
        r->t.data = (r->t.trainable ? g->params : g->stats) + r->off;
        r->t.grad = r->t.trainable && g->grads ? g->grads + r->off : NULL;
    }
    init_weights(g);
    g->adam = nn_adam_default(1e-3f);
    return g;
nomem:
    dp_err_set(DP_ERR_NOMEM, "perf_gen_new: out of memory");
    perf_gen_destroy(&g);
    return NULL;
}

void perf_gen_destroy(perf_gen_t **pg)
{
    if (!pg || !*pg) return;
    perf_gen_t *g = *pg;
    free(g->params);
    free(g->grads);
    free(g->adam_m);
    free(g->adam_v);
    free(g->stats);
    free(g->acts);
    free(g->dacts);
    free(g->ws);
    if (g->pk) free(g->pk->block);
    free(g->pk);
    for (int i = 1; i < GEN_MAX_WORKERS; i++) free(g->wws[i]);
    free(g);
    *pg = NULL;
}

const perf_gen_config_t *perf_gen_config(const perf_gen_t *g) { return &g->cfg; }
size_t perf_gen_num_params(const perf_gen_t *g) { return g->nparams; }
float *perf_gen_params(perf_gen_t *g)
{
    g->pk->valid = 0; /* the caller may write the weights */
    return g->params;
}
float *perf_gen_grads(perf_gen_t *g) { return g->grads; }
int perf_gen_num_tensors(const perf_gen_t *g) { return g->ntensors; }

const perf_gen_tensor_t *perf_gen_tensor(const perf_gen_t *g, int i)
{
    assert(i >= 0 && i < g->ntensors);
    g->pk->valid = 0; /* the caller may write the weights */
    return &g->recs[i].t;
}

double perf_gen_macs(const perf_gen_t *g)
{
    const gen_dims_t *d = &g->dims;
    double m = 0;
    for (int i = 0; i < 3; i++) m += (double)conv_out(&d->enc[i]) * d->enc[i].cin * 9;
    for (int r = 0; r < 4; r++) {
        m += (double)conv_out(&d->rc1[r]) * d->rc1[r].cin * 9;
        m += (double)conv_out(&d->rc2[r]) * d->rc2[r].cin * 9;
        if (d->rcin[r] != d->rcout[r]) m += (double)conv_out(&d->rsc[r]) * d->rsc[r].cin;
    }
    for (int i = 0; i < 3; i++) /* each input pixel scatters cout*kh*kw */
        m += (double)conv_in(&d->dec[i]) * d->dec[i].cout * d->dec[i].kh * d->dec[i].kw;
    for (int i = 0; i < 2; i++) {
        const double c = d->ac[i], c8 = c8_of(d->ac[i]), hw = d->ahw[i];
        m += hw * c * (2 * c8 + c) + hw * hw * (c8 + c);
    }
    return m;
}

/* ----------------------------------------------------------------- forward */

/* The layer's geometry for a batch of n (the conv kernels choose their
 * strategy, e.g. one batch-wide sgemm, from n). */
static nn_conv_t conv_n(const nn_conv_t *c, int n)
{
    nn_conv_t r;
    int rc = nn_conv2d_init(&r, n, c->cin, c->h, c->w, c->cout, c->kh, c->kw, c->stride, c->pad,
                            c->groups);
    assert(rc == 0);
    (void)rc;
    /* Smaller chunks than the kernel's default (16 MB of columns): measured on
     * the 5x5 bottleneck at batch 64 (one thread, CPU time), 8 MB chunks (18
     * images, N = 450) beat 16 MB (36) by ~7% and 4 MB (9) by ~10%. */
    const size_t colsz = (size_t)c->cin * c->kh * c->kw * r.hout * r.wout;
    if (r.batch_gemm > 1 && colsz * r.batch_gemm > GEN_CHUNK_FLOATS) {
        const size_t nb = GEN_CHUNK_FLOATS / colsz;
        r.batch_gemm = nb > 1 ? (int)nb : 2;
    }
    return r;
}

static nn_conv_t convt_n(const nn_conv_t *c, int n)
{
    nn_conv_t r;
    int rc = nn_convt2d_init(&r, n, c->cin, c->h, c->w, c->cout, c->kh, c->kw, c->stride, c->pad,
                             c->out_pad, c->groups);
    assert(rc == 0);
    (void)rc;
    return r;
}

static void bn_forward(perf_gen_t *g, float *out, float *m, float *r, const float *inp,
                       const bn_params_t *bn, int n, int c, int hw, int training)
{
    if (training)
        nn_batchnorm_forward_train(out, m, r, inp, bn->w, bn->b, bn->rm, bn->rv, n, c, hw,
                                   BN_MOMENTUM, NORM_EPS);
    else
        nn_batchnorm_forward_eval(out, inp, bn->w, bn->b, bn->rm, bn->rv, n, c, hw, NORM_EPS);
}

/* The activations of images i0.. of the block: every per-image tensor
 * shifted by i0 images (the batch statistics, used in training only, stay). */
static void acts_at(gen_acts_t *s, const gen_acts_t *a, const gen_dims_t *d, int i0)
{
    const size_t k = (size_t)i0;
    *s = *a;
#define SHIFT(field, per) s->field = a->field ? a->field + k * (per) : NULL
    SHIFT(inp, conv_in(&d->enc[0]));
    for (int i = 0; i < 3; i++) {
        SHIFT(enc_c[i], conv_out(&d->enc[i]));
        SHIFT(enc_n[i], conv_out(&d->enc[i]));
        SHIFT(enc_a[i], conv_out(&d->enc[i]));
        SHIFT(enc_m[i], (size_t)d->enc[i].cout);
        SHIFT(enc_r[i], (size_t)d->enc[i].cout);
    }
    for (int r = 0; r < 4; r++) {
        const size_t sz = conv_out(&d->rc1[r]);
        SHIFT(res[r].pad1, conv_in(&d->rc1[r]));
        SHIFT(res[r].c1, sz);
        SHIFT(res[r].bn1, sz);
        SHIFT(res[r].a1, sz);
        SHIFT(res[r].pad2, conv_in(&d->rc2[r]));
        SHIFT(res[r].c2, sz);
        SHIFT(res[r].bn2, sz);
        SHIFT(res[r].sc, sz);
        SHIFT(res[r].scbn, sz);
        SHIFT(res[r].out, sz);
    }
    for (int i = 0; i < 3; i++) {
        const size_t sz = conv_out(&d->dec[i]);
        SHIFT(dec_c[i], sz);
        if (i == 2) break;
        SHIFT(dec_n[i], sz);
        SHIFT(dec_a[i], sz);
        SHIFT(att[i], sz);
        SHIFT(dec_m[i], (size_t)d->dec[i].cout);
        SHIFT(dec_r[i], (size_t)d->dec[i].cout);
        SHIFT(att_cache[i], nn_attention_cache_size(1, d->ac[i], d->ahw[i]));
    }
    SHIFT(out, conv_out(&d->dec[2]));
#undef SHIFT
}

/* conv2d forward, through the packed weight when there is one. */
static void conv_fwd(const nn_conv_t *c, float *out, const float *inp, const float *w,
                     const float *pw, const float *bias, float *ws)
{
    if (pw)
        nn_conv2d_forward_packed(c, out, inp, pw, bias, ws);
    else
        nn_conv2d_forward(c, out, inp, w, bias, ws);
}

/* The forward of n images x into the activations a (already shifted to the
 * first of them), with workspace ws; out gets the tanh output. */
static void forward_range(perf_gen_t *g, gen_acts_t *a, float *ws, const float *x, int n,
                          float *out, int training)
{
    const gen_dims_t *d = &g->dims;
    const gen_params_t *p = &g->p;
    const float slope = g->cfg.slope, rslope = g->cfg.res_slope;
    const gen_packed_t *pk = use_packed(training) ? g->pk : NULL;

    const float *cur = x;
    if (training) {
        memcpy(a->inp, x, (size_t)n * conv_in(&d->enc[0]) * sizeof(float));
        cur = a->inp;
    }
    for (int i = 0; i < 3; i++) {
        nn_conv_t c = conv_n(&d->enc[i], n);
        const int hw = c.hout * c.wout;
        conv_fwd(&c, a->enc_c[i], cur, p->enc_w[i], pk ? pk->enc[i] : NULL, p->enc_b[i], ws);
        nn_instnorm_forward(a->enc_n[i], a->enc_m[i], a->enc_r[i], a->enc_c[i], n, c.cout, hw,
                            NORM_EPS);
        nn_leakyrelu_forward(a->enc_a[i], a->enc_n[i], (size_t)n * c.cout * hw, slope);
        cur = a->enc_a[i];
    }
    const int rh = d->rh, rw = d->rw, hw = rh * rw;
    for (int r = 0; r < 4; r++) {
        const res_params_t *rp = &p->res[r];
        res_acts_t *ra = &a->res[r];
        const int ci = d->rcin[r], co = d->rcout[r];
        const size_t sz = (size_t)n * co * hw;
        nn_conv_t c1 = conv_n(&d->rc1[r], n), c2 = conv_n(&d->rc2[r], n);
        nn_reflpad2d_forward(ra->pad1, cur, n, ci, rh, rw, 1);
        conv_fwd(&c1, ra->c1, ra->pad1, rp->c1w, pk ? pk->rc1[r] : NULL, NULL, ws);
        bn_forward(g, ra->bn1, ra->m1, ra->r1, ra->c1, &rp->bn1, n, co, hw, training);
        nn_leakyrelu_forward(ra->a1, ra->bn1, sz, rslope);
        nn_reflpad2d_forward(ra->pad2, ra->a1, n, co, rh, rw, 1);
        conv_fwd(&c2, ra->c2, ra->pad2, rp->c2w, pk ? pk->rc2[r] : NULL, NULL, ws);
        bn_forward(g, ra->bn2, ra->m2, ra->r2, ra->c2, &rp->bn2, n, co, hw, training);
        const float *sc = cur;
        if (ci != co) {
            nn_conv_t cs = conv_n(&d->rsc[r], n);
            conv_fwd(&cs, ra->sc, cur, rp->scw, pk ? pk->rsc[r] : NULL, NULL, ws);
            bn_forward(g, ra->scbn, ra->msc, ra->rsc, ra->sc, &rp->scbn, n, co, hw, training);
            sc = ra->scbn;
        }
        for (size_t j = 0; j < sz; j++) ra->out[j] = sc[j] + ra->bn2[j];
        cur = ra->out;
    }
    for (int i = 0; i < 2; i++) {
        nn_conv_t c = convt_n(&d->dec[i], n);
        const int ahw = d->ahw[i], ch = d->ac[i];
        const att_params_t *ap = &p->att[i];
        if (pk)
            nn_convt2d_forward_packed(&c, a->dec_c[i], cur, pk->dec[i], p->dec_b[i], ws);
        else
            nn_convt2d_forward(&c, a->dec_c[i], cur, p->dec_w[i], p->dec_b[i], ws);
        nn_instnorm_forward(a->dec_n[i], a->dec_m[i], a->dec_r[i], a->dec_c[i], n, ch, ahw,
                            NORM_EPS);
        nn_leakyrelu_forward(a->dec_a[i], a->dec_n[i], (size_t)n * ch * ahw, slope);
        nn_attention_forward(a->att[i], a->att_cache[i], a->dec_a[i], ap->wq, ap->bq, ap->wk,
                             ap->bk, ap->wv, ap->bv, ap->gamma, n, ch, ahw);
        cur = a->att[i];
    }
    nn_conv_t c = convt_n(&d->dec[2], n);
    const size_t osz = (size_t)n * conv_out(&c);
    nn_convt2d_forward(&c, a->dec_c[2], cur, p->dec_w[2], p->dec_b[2], ws);
    nn_tanh_forward(a->out, a->dec_c[2], osz);
    memcpy(out, a->out, osz * sizeof(float));
}

/* The eval forward's batch split: slice u (of nslices) of the batch, with
 * workspace u. */
typedef struct fwd_split {
    perf_gen_t *g;
    const float *x;
    float *out;
    int n, nslices;
} fwd_split_t;

static void fwd_slice(void *ctx, int u)
{
    const fwd_split_t *s = ctx;
    perf_gen_t *g = s->g;
    const size_t in_sz = conv_in(&g->dims.enc[0]), out_sz = conv_out(&g->dims.dec[2]);
    int i0;
    const int cnt = nn_split_part(s->n, s->nslices, u, &i0);
    gen_acts_t a;
    acts_at(&a, &g->a, &g->dims, i0);
    forward_range(g, &a, u ? g->wws[u] : g->ws, s->x + (size_t)i0 * in_sz, cnt,
                  s->out + (size_t)i0 * out_sz, 0);
}

void perf_gen_forward(perf_gen_t *g, const float *x, int n, float *out, int training)
{
    assert(g && x && out && n >= 1 && n <= g->cfg.max_batch);
    if (use_packed(training) && !g->pk->valid) pack_weights(g->pk, &g->p, &g->dims);
    if (training || n == 1) {
        /* the products (nn_sgemm's units, nn_gemm's panels) and the
         * attention's row blocks run on the caller's threads */
        forward_range(g, &g->a, g->ws, x, n, out, training);
    } else {
        /* Eval: every layer is per image (BatchNorm uses running statistics),
         * so slices of the batch run in parallel on the worker pool
         * (nn_parallel_for), each on one thread with its own workspace: the
         * im2col, norm and attention work between the products runs in
         * parallel too. The slices are fixed by n alone (min(n, nworkers)
         * of them), never by the thread count, so the images that share a
         * batched product are the same on 1 thread or 16. */
        const int nslices = n < g->nworkers ? n : g->nworkers;
        fwd_split_t sp = {.g = g, .x = x, .out = out, .n = n, .nslices = nslices};
        nn_parallel_for(nslices, nn_get_threads(), fwd_slice, &sp);
    }
    g->last_n = training ? n : 0;
    g->fwd_n = n;
}

static uint64_t sign_hash(uint64_t h, const float *p, size_t count)
{
    for (size_t i = 0; i < count; i++) h = (h ^ (uint64_t)(p[i] > 0.0f)) * 0x100000001b3ULL;
    return h;
}

uint64_t perf_gen_kink_signature(const perf_gen_t *g)
{
    const gen_dims_t *d = &g->dims;
    const size_t n = (size_t)g->fwd_n;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (int i = 0; i < 3; i++) h = sign_hash(h, g->a.enc_n[i], n * conv_out(&d->enc[i]));
    for (int r = 0; r < 4; r++) h = sign_hash(h, g->a.res[r].bn1, n * conv_out(&d->rc1[r]));
    for (int i = 0; i < 2; i++) h = sign_hash(h, g->a.dec_n[i], n * conv_out(&d->dec[i]));
    return h;
}

/* ---------------------------------------------------------------- backward */

/* Zeroes an activation-gradient buffer before the kernels accumulate into it. */
static float *dz(float *p, size_t count)
{
    memset(p, 0, count * sizeof(float));
    return p;
}

void perf_gen_backward(perf_gen_t *g, const float *dout, float *dx)
{
    assert(g && dout && g->grads && g->last_n > 0);
    const int n = g->last_n;
    const gen_dims_t *d = &g->dims;
    const gen_params_t *p = &g->p, *gp = &g->gp;
    const gen_acts_t *a = &g->a;
    gen_acts_t *da = &g->da;
    const float slope = g->cfg.slope, rslope = g->cfg.res_slope;

    /* tanh and the last transposed conv */
    nn_conv_t c = convt_n(&d->dec[2], n);
    nn_tanh_backward(dz(da->dec_c[2], (size_t)n * conv_out(&c)), dout, a->out,
                     (size_t)n * conv_out(&c));
    nn_convt2d_backward(&c, dz(da->att[1], (size_t)n * conv_in(&c)), gp->dec_w[2], gp->dec_b[2],
                        da->dec_c[2], a->att[1], p->dec_w[2], g->ws);

    for (int i = 1; i >= 0; i--) {
        nn_conv_t ct = convt_n(&d->dec[i], n);
        const int ahw = d->ahw[i], ch = d->ac[i];
        const size_t sz = (size_t)n * ch * ahw;
        const att_params_t *ap = &p->att[i], *gap = &gp->att[i];
        nn_attention_backward(dz(da->dec_a[i], sz), gap->wq, gap->bq, gap->wk, gap->bk, gap->wv,
                              gap->bv, gap->gamma, da->att[i], a->att_cache[i], a->dec_a[i], ap->wq,
                              ap->wk, ap->wv, ap->gamma, n, ch, ahw, g->ws);
        nn_leakyrelu_backward(dz(da->dec_n[i], sz), da->dec_a[i], a->dec_n[i], sz, slope);
        nn_instnorm_backward(dz(da->dec_c[i], sz), da->dec_n[i], a->dec_c[i], a->dec_m[i],
                             a->dec_r[i], n, ch, ahw);
        float *dinp = i == 1 ? da->att[0] : da->res[3].out;
        const float *inp = i == 1 ? a->att[0] : a->res[3].out;
        nn_convt2d_backward(&ct, dz(dinp, (size_t)n * conv_in(&ct)), gp->dec_w[i], gp->dec_b[i],
                            da->dec_c[i], inp, p->dec_w[i], g->ws);
    }

    const int rh = d->rh, rw = d->rw, hw = rh * rw;
    for (int r = 3; r >= 0; r--) {
        const res_params_t *rp = &p->res[r], *grp = &gp->res[r];
        const res_acts_t *ra = &a->res[r];
        res_acts_t *dra = &da->res[r];
        const int ci = d->rcin[r], co = d->rcout[r];
        const size_t sz = (size_t)n * co * hw, szi = (size_t)n * ci * hw;
        const float *xin = r == 0 ? a->enc_a[2] : a->res[r - 1].out;
        float *dxin = dz(r == 0 ? da->enc_a[2] : da->res[r - 1].out, szi);
        nn_conv_t c1 = conv_n(&d->rc1[r], n), c2 = conv_n(&d->rc2[r], n);

        nn_batchnorm_backward(dz(dra->c2, sz), grp->bn2.w, grp->bn2.b, dra->out, ra->c2, ra->m2,
                              ra->r2, rp->bn2.w, n, co, hw);
        nn_conv2d_backward(&c2, dz(dra->pad2, (size_t)n * conv_in(&c2)), grp->c2w, NULL, dra->c2,
                           ra->pad2, rp->c2w, g->ws);
        nn_reflpad2d_backward(dz(dra->a1, sz), dra->pad2, n, co, rh, rw, 1);
        nn_leakyrelu_backward(dz(dra->bn1, sz), dra->a1, ra->bn1, sz, rslope);
        nn_batchnorm_backward(dz(dra->c1, sz), grp->bn1.w, grp->bn1.b, dra->bn1, ra->c1, ra->m1,
                              ra->r1, rp->bn1.w, n, co, hw);
        nn_conv2d_backward(&c1, dz(dra->pad1, (size_t)n * conv_in(&c1)), grp->c1w, NULL, dra->c1,
                           ra->pad1, rp->c1w, g->ws);
        nn_reflpad2d_backward(dxin, dra->pad1, n, ci, rh, rw, 1);
        if (ci != co) {
            nn_conv_t cs = conv_n(&d->rsc[r], n);
            nn_batchnorm_backward(dz(dra->sc, sz), grp->scbn.w, grp->scbn.b, dra->out, ra->sc,
                                  ra->msc, ra->rsc, rp->scbn.w, n, co, hw);
            nn_conv2d_backward(&cs, dxin, grp->scw, NULL, dra->sc, xin, rp->scw, g->ws);
        } else {
            for (size_t j = 0; j < sz; j++) dxin[j] += dra->out[j];
        }
    }

    for (int i = 2; i >= 0; i--) {
        nn_conv_t ce = conv_n(&d->enc[i], n);
        const int ehw = ce.hout * ce.wout;
        const size_t sz = (size_t)n * ce.cout * ehw;
        nn_leakyrelu_backward(dz(da->enc_n[i], sz), da->enc_a[i], a->enc_n[i], sz, slope);
        nn_instnorm_backward(dz(da->enc_c[i], sz), da->enc_n[i], a->enc_c[i], a->enc_m[i],
                             a->enc_r[i], n, ce.cout, ehw);
        float *dinp = i > 0 ? dz(da->enc_a[i - 1], (size_t)n * conv_in(&ce)) : dx;
        const float *inp = i > 0 ? a->enc_a[i - 1] : a->inp;
        nn_conv2d_backward(&ce, dinp, gp->enc_w[i], gp->enc_b[i], da->enc_c[i], inp, p->enc_w[i],
                           g->ws);
    }
}

void perf_gen_zero_grad(perf_gen_t *g)
{
    assert(g->grads);
    memset(g->grads, 0, g->nparams * sizeof(float));
}

void perf_gen_adam_step(perf_gen_t *g, float lr)
{
    assert(g->grads);
    g->adam.lr = lr;
    nn_adam_step(&g->adam, g->params, g->grads, g->adam_m, g->adam_v, g->nparams);
    g->pk->valid = 0;
}

void perf_gen_adam_state(perf_gen_t *g, float **m, float **v, long **t)
{
    *m = g->adam_m;
    *v = g->adam_v;
    *t = g->grads ? &g->adam.t : NULL;
}
