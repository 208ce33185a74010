/* SkipNet (Wang et al. 2018) on a small ResNet for 1x28x28 inputs: a conv3x3
 * stem, stages of residual basic blocks, and a gate before every block that
 * decides from the block's input whether the block runs.
 *
 * Block k with input x: executed y = B(x) = relu(F(x) + S(x)); skipped
 * y = S(x), where S is the identity or, for a block that changes the shape,
 * its 1x1-conv-BN shortcut (so a skipped downsampling block still computes
 * its shortcut). Gate k produces a logit t_k and p_k = sigmoid(t_k):
 * - recurrent (default): GAP(x), 1x1 conv to gate_dim, one LSTM(gate_dim,
 *   gate_dim) whose state runs through all gates of an input, linear to 1;
 * - feed-forward: conv3x3 s2 + BN + ReLU, GAP, 1x1 conv to 2, softmax,
 *   p_k = prob("execute") (= sigmoid of the logit difference).
 * Inference: block k runs iff p_k > gate_threshold; batch 1 really skips it.
 *
 * Training: y = S + g_k (B - S) over the whole batch (every block computed),
 * with soft gates g_k = p_k for the first SKIP_SOFT_STEPS Adam steps, then
 * hard gates g_k = [p_k > threshold] with the straight-through gradient
 * dL/dp_k = <dL/dy, B - S>. Loss = CE + lambda * mean_k p_k, plus an optional
 * margin term that pushes the gate logits away from the threshold
 * (adnn_skipnet_train_t in skipnet.h; defaults lambda 0.1, 500 soft steps),
 * and optionally hard gates drawn from Bernoulli(p_k) instead of thresholded.
 * Spend-more probabilities: p_k of every gate (K = number of blocks), in
 * inference mode along the hard path; the hard decisions carry no gradient. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adnn/adnn_impl.h"
#include "adnn/skipnet.h"
#include "util/rng.h"

#define SKIP_LAMBDA     0.1f /* default compute penalty on mean p_k */
#define SKIP_SOFT_STEPS 500  /* default Adam steps with soft gates before straight-through */

#define OOM() dp_err_set(DP_ERR_NOMEM, "out of memory in SkipNet")

typedef struct skip_gate {
    int c, h, w;
    float *pw, *pb;  /* recurrent: 1x1 conv (D, c) */
    adnn_cbn_t conv; /* feed-forward: conv3x3 s2 + BN + ReLU */
    float *fw, *fb;  /* feed-forward: 1x1 conv (2, c) */
} skip_gate_t;

typedef struct skip_gate_act {
    const float *in;
    float *pooled;              /* (n, c) */
    float *e, *h, *c, *cache;   /* recurrent: (n,D), (n,H), (n,H), (n,5H) */
    const float *hprev, *cprev; /* NULL at the first gate */
    adnn_cbn_act_t conv;        /* feed-forward */
    float *t, *p, *g;           /* (n): logit, probability, multiplier used */
} skip_gate_act_t;

typedef struct skip_fwd {
    adnn_cbn_act_t stem;
    skip_gate_act_t gate[ADNN_MAX_BLOCKS];
    adnn_basic_act_t blk[ADNN_MAX_BLOCKS];
    float *y[ADNN_MAX_BLOCKS]; /* mixed outputs */
    float *pooled, *logits;
    int n, train, soft;
} skip_fwd_t;

typedef struct skipnet {
    adnn_cbn_t stem;
    int nblocks;
    adnn_basic_t blocks[ADNN_MAX_BLOCKS];
    skip_gate_t gates[ADNN_MAX_BLOCKS];
    float *wih, *whh, *bih, *bhh, *gfw, *gfb; /* shared LSTM and linear (recurrent) */
    adnn_gap_head_t final;
    int force[ADNN_MAX_BLOCKS];
    adnn_skipnet_train_t opt;
    double mult;                    /* the compute penalty's multiplier when opt.target > 0 */
    double mult_k[ADNN_MAX_BLOCKS]; /* one per gate when opt.target_per_block */
    dp_rng_t rng;                   /* the sampled gates' draws, seeded from the spec's seed */
    int rng_ready;
    skip_fwd_t fwd;
} skipnet_t;

static int recurrent(const adnn_model_t *m) { return m->spec.gate_kind != ADNN_GATE_FEEDFORWARD; }

static dp_err_t skip_build(adnn_model_t *m)
{
    const adnn_spec_t *s = &m->spec;
    if (!m->fam) {
        if (!(m->fam = calloc(1, sizeof(skipnet_t))))
            return dp_err_set(DP_ERR_NOMEM, "out of memory building a SkipNet");
        skipnet_t *f0 = m->fam;
        for (int k = 0; k < ADNN_MAX_BLOCKS; k++) f0->force[k] = ADNN_SKIP_GATE_AUTO;
        f0->opt = adnn_skipnet_train_default();
        f0->mult = f0->opt.lambda;
        for (int k = 0; k < ADNN_MAX_BLOCKS; k++) f0->mult_k[k] = f0->opt.lambda;
    }
    skipnet_t *f = m->fam;
    char nm[64];
    int h = s->h, w = s->w, c = s->stem_width, D = s->gate_dim;
    adnn_cbn_reg(m, &f->stem, "stem", s->c, c, 3, 1, 1, 1, h, w, 1);
    f->nblocks = 0;
    for (int st = 0; st < s->nstages; st++)
        for (int b = 0; b < s->blocks[st]; b++) {
            int k = f->nblocks++;
            skip_gate_t *g = &f->gates[k];
            g->c = c, g->h = h, g->w = w;
            if (recurrent(m)) {
                snprintf(nm, sizeof nm, "gates.%d.proj.weight", k);
                g->pw = adnn_reg(m, nm, 1, ADNN_INIT_UNIFORM, c, 4, D, c, 1, 1);
                snprintf(nm, sizeof nm, "gates.%d.proj.bias", k);
                g->pb = adnn_reg(m, nm, 1, ADNN_INIT_UNIFORM, c, 1, D, 0, 0, 0);
            } else {
                snprintf(nm, sizeof nm, "gates.%d.c", k);
                adnn_cbn_reg(m, &g->conv, nm, c, c, 3, 2, 1, 1, h, w, 1);
                snprintf(nm, sizeof nm, "gates.%d.fc.weight", k);
                g->fw = adnn_reg(m, nm, 1, ADNN_INIT_UNIFORM, c, 4, 2, c, 1, 1);
                snprintf(nm, sizeof nm, "gates.%d.fc.bias", k);
                g->fb = adnn_reg(m, nm, 1, ADNN_INIT_ZERO, 0, 1, 2, 0, 0, 0);
            }
            adnn_basic_t *blk = &f->blocks[k];
            snprintf(nm, sizeof nm, "blocks.%d", k);
            adnn_basic_reg(m, blk, nm, c, s->widths[st], b == 0 ? s->strides[st] : 1, h, w);
            c = blk->cout, h = blk->hout, w = blk->wout;
        }
    if (recurrent(m)) { /* PyTorch nn.LSTM names; the gate bias starts at 1 (open) */
        f->wih = adnn_reg(m, "gate.rnn.weight_ih_l0", 1, ADNN_INIT_UNIFORM, D, 2, 4 * D, D, 0, 0);
        f->whh = adnn_reg(m, "gate.rnn.weight_hh_l0", 1, ADNN_INIT_UNIFORM, D, 2, 4 * D, D, 0, 0);
        f->bih = adnn_reg(m, "gate.rnn.bias_ih_l0", 1, ADNN_INIT_UNIFORM, D, 1, 4 * D, 0, 0, 0);
        f->bhh = adnn_reg(m, "gate.rnn.bias_hh_l0", 1, ADNN_INIT_UNIFORM, D, 1, 4 * D, 0, 0, 0);
        f->gfw = adnn_reg(m, "gate.fc.weight", 1, ADNN_INIT_UNIFORM, D, 2, 1, D, 0, 0);
        f->gfb = adnn_reg(m, "gate.fc.bias", 1, ADNN_INIT_ONE, 0, 1, 1, 0, 0, 0);
    }
    adnn_gap_head_reg(m, &f->final, "fc", c, h, w, s->num_classes);
    return DP_OK;
}

static void skip_destroy(adnn_model_t *m)
{
    free(m->fam);
    m->fam = NULL;
}

dp_err_t adnn_skipnet_force_gate(adnn_model_t *m, int k, int mode)
{
    if (m->spec.family != ADNN_FAMILY_SKIPNET)
        return dp_err_set(DP_ERR_INVALID, "adnn_skipnet_force_gate: model is '%s'",
                          adnn_family_name(m->spec.family));
    skipnet_t *f = m->fam;
    if (k < 0 || k >= f->nblocks || mode < ADNN_SKIP_GATE_AUTO || mode > ADNN_SKIP_GATE_OPEN)
        return dp_err_set(DP_ERR_RANGE, "adnn_skipnet_force_gate: gate %d mode %d", k, mode);
    f->force[k] = mode;
    return DP_OK;
}

adnn_skipnet_train_t adnn_skipnet_train_default(void)
{
    adnn_skipnet_train_t o = {
        .lambda = SKIP_LAMBDA, .soft_steps = SKIP_SOFT_STEPS, .target_rate = 0.01f};
    return o;
}

dp_err_t adnn_skipnet_set_train(adnn_model_t *m, const adnn_skipnet_train_t *o)
{
    if (m->spec.family != ADNN_FAMILY_SKIPNET)
        return dp_err_set(DP_ERR_INVALID, "adnn_skipnet_set_train: model is '%s'",
                          adnn_family_name(m->spec.family));
    if (!(o->lambda >= 0 && isfinite(o->lambda)) || o->soft_steps < 0 ||
        !(o->margin >= 0 && isfinite(o->margin)) ||
        !(o->margin_weight >= 0 && isfinite(o->margin_weight)) ||
        !(o->target >= 0 && o->target < 1) || !(o->target_rate >= 0 && isfinite(o->target_rate)))
        return dp_err_set(DP_ERR_RANGE,
                          "adnn_skipnet_set_train: lambda %g, soft steps %d, margin %g, margin "
                          "weight %g, target %g, target rate %g (none may be negative, the "
                          "target is below 1)",
                          o->lambda, o->soft_steps, o->margin, o->margin_weight, o->target,
                          o->target_rate);
    if (o->target_per_block && !(o->target > 0))
        return dp_err_set(DP_ERR_INVALID,
                          "adnn_skipnet_set_train: a target per block needs a target above 0");
    skipnet_t *f = m->fam;
    f->opt = *o;
    f->mult = o->lambda;
    for (int k = 0; k < ADNN_MAX_BLOCKS; k++) f->mult_k[k] = o->lambda;
    return DP_OK;
}

/* ------------------------------------------------------------- gates */

/* Gate k on its input (n, c, h, w): fills a->t and a->p; hprev/cprev the LSTM
 * state from the previous gate (NULL at the first). */
static dp_err_t gate_forward(adnn_model_t *m, int k, const float *in, int n, int train,
                             const float *hprev, const float *cprev, skip_gate_act_t *a)
{
    skipnet_t *f = m->fam;
    const skip_gate_t *g = &f->gates[k];
    int D = m->spec.gate_dim;
    memset(a, 0, sizeof *a);
    a->in = in;
    a->t = adnn_arena_get(m, (size_t)n);
    a->p = adnn_arena_get(m, (size_t)n);
    a->g = adnn_arena_get(m, (size_t)n);
    a->pooled = adnn_arena_get(m, (size_t)n * g->c);
    if (!a->t || !a->p || !a->g || !a->pooled) return OOM();
    if (recurrent(m)) {
        a->hprev = hprev, a->cprev = cprev;
        a->e = adnn_arena_get(m, (size_t)n * D);
        a->h = adnn_arena_get(m, (size_t)n * D);
        a->c = adnn_arena_get(m, (size_t)n * D);
        a->cache = adnn_arena_get(m, (size_t)n * 5 * D);
        if (!a->e || !a->h || !a->c || !a->cache) return OOM();
        nn_gap_forward(a->pooled, in, n, g->c, g->h * g->w);
        nn_linear_forward(a->e, a->pooled, g->pw, g->pb, n, g->c, D);
        nn_lstm_cell_forward(a->h, a->c, a->cache, a->e, hprev, cprev, f->wih, f->whh, f->bih,
                             f->bhh, n, D, D);
        nn_linear_forward(a->t, a->h, f->gfw, f->gfb, n, D, 1);
    } else {
        float z[2 * 64];
        float *zz = n <= 64 ? z : adnn_arena_get(m, (size_t)n * 2);
        if (!zz) return OOM();
        dp_err_t err = adnn_cbn_forward(m, &g->conv, in, n, train, &a->conv);
        if (err) return err;
        nn_gap_forward(a->pooled, a->conv.out, n, g->c, g->conv.hout * g->conv.wout);
        nn_linear_forward(zz, a->pooled, g->fw, g->fb, n, g->c, 2);
        for (int i = 0; i < n; i++) a->t[i] = zz[2 * i + 1] - zz[2 * i];
    }
    for (int i = 0; i < n; i++) a->p[i] = 1.0f / (1.0f + expf(-a->t[i]));
    return DP_OK;
}

/* dt (n): gradient on the gate logits; dh/dc (n,D): on this gate's LSTM
 * outputs from the next gate (NULL: none); writes the gradient on the LSTM
 * state it read into dhprev/dcprev (zeroed, n*D each) and accumulates into
 * din (n, c, h, w). */
static dp_err_t gate_backward(adnn_model_t *m, int k, const skip_gate_act_t *a, int n,
                              const float *dt, const float *dh, const float *dc, float *dhprev,
                              float *dcprev, float *din)
{
    skipnet_t *f = m->fam;
    const skip_gate_t *g = &f->gates[k];
    int D = m->spec.gate_dim;
    float *dpool = adnn_arena_get(m, (size_t)n * g->c);
    if (!dpool) return OOM();
    if (recurrent(m)) {
        float *dho = adnn_arena_get(m, (size_t)n * D), *de = adnn_arena_get(m, (size_t)n * D);
        float *ws = adnn_arena_get(m, (size_t)n * 4 * D);
        if (!dho || !de || !ws) return OOM();
        if (dh) memcpy(dho, dh, (size_t)n * D * sizeof(float));
        nn_linear_backward(dho, adnn_grad(m, f->gfw), adnn_grad(m, f->gfb), dt, a->h, f->gfw, n, D,
                           1);
        nn_lstm_cell_backward(de, a->hprev ? dhprev : NULL, a->cprev ? dcprev : NULL,
                              adnn_grad(m, f->wih), adnn_grad(m, f->whh), adnn_grad(m, f->bih),
                              adnn_grad(m, f->bhh), dho, dc, a->cache, a->e, a->hprev, a->cprev,
                              f->wih, f->whh, n, D, D, ws);
        nn_linear_backward(dpool, adnn_grad(m, g->pw), adnn_grad(m, g->pb), de, a->pooled, g->pw, n,
                           g->c, D);
        if (din) nn_gap_backward(din, dpool, n, g->c, g->h * g->w);
        return DP_OK;
    }
    int hw = g->conv.hout * g->conv.wout;
    float *dz = adnn_arena_get(m, (size_t)n * 2);
    float *dact = adnn_arena_get(m, (size_t)n * g->c * hw);
    if (!dz || !dact) return OOM();
    for (int i = 0; i < n; i++) dz[2 * i] = -dt[i], dz[2 * i + 1] = dt[i];
    nn_linear_backward(dpool, adnn_grad(m, g->fw), adnn_grad(m, g->fb), dz, a->pooled, g->fw, n,
                       g->c, 2);
    nn_gap_backward(dact, dpool, n, g->c, hw);
    return adnn_cbn_backward(m, &g->conv, &a->conv, dact, din);
}

static double gate_flops(const adnn_model_t *m, int k, int exact)
{
    const skipnet_t *f = m->fam;
    const skip_gate_t *g = &f->gates[k];
    double D = m->spec.gate_dim, c = g->c;
    if (recurrent(m)) {
        /* 1x1 conv on the pooled vector, LSTM (two linears), linear to 1 */
        double fl = 2.0 * c * D + 2.0 * D * 4 * D * 2 + 2.0 * D;
        if (!exact) return fl;
        /* GAP; biases (D, 2*4D, 1); gate sum 4D; 4D activations; cell and
         * output 5D; the final sigmoid 4 */
        return fl + c * g->h * g->w + c + D + 8 * D + 4 * D + 4 * D + 5 * D + 1 + 4;
    }
    double fl = adnn_cbn_flops(&g->conv, exact) + 2.0 * c * 2;
    if (!exact) return fl;
    return fl + c * g->conv.hout * g->conv.wout + c + 2 + adnn_softmax_flops(2);
}

/* ------------------------------------------------------------- batch */

/* Whole batch, every block computed, outputs mixed y = S + g (B - S).
 * train: BatchNorm in training mode, g = p (soft) or hard by the step count;
 * inference: g hard (with overrides). */
static dp_err_t skip_full_forward(adnn_model_t *m, const float *x, int n, int train)
{
    skipnet_t *f = m->fam;
    skip_fwd_t *a = &f->fwd;
    float thr = m->spec.gate_threshold;
    adnn_arena_reset(m);
    a->n = n, a->train = train;
    a->soft = train && m->adam_t < f->opt.soft_steps;
    int sample = train && !a->soft && f->opt.sample;
    if (sample && !f->rng_ready) {
        dp_rng_seed(&f->rng, m->spec.seed ^ 0x5c1b9a7eULL);
        f->rng_ready = 1;
    }
    dp_err_t err = adnn_cbn_forward(m, &f->stem, x, n, train, &a->stem);
    if (err) return err;
    const float *h = a->stem.out, *hs = NULL, *cs = NULL;
    for (int k = 0; k < f->nblocks; k++) {
        skip_gate_act_t *ga = &a->gate[k];
        const adnn_basic_t *b = &f->blocks[k];
        if ((err = gate_forward(m, k, h, n, train, hs, cs, ga))) return err;
        hs = ga->h, cs = ga->c;
        for (int i = 0; i < n; i++) {
            int open = sample ? dp_rng_uniform(&f->rng) < ga->p[i] : ga->p[i] > thr;
            if (!train && f->force[k] != ADNN_SKIP_GATE_AUTO) open = f->force[k];
            ga->g[i] = a->soft ? ga->p[i] : (float)open;
        }
        if ((err = adnn_basic_forward(m, b, h, n, train, &a->blk[k]))) return err;
        size_t per = (size_t)b->cout * b->hout * b->wout;
        const float *S = b->has_sc ? a->blk[k].asc.out : h, *B = a->blk[k].out;
        if (!(a->y[k] = adnn_arena_get(m, (size_t)n * per))) return OOM();
        for (int i = 0; i < n; i++) {
            float g = ga->g[i], *y = a->y[k] + i * per;
            const float *Bi = B + i * per, *Si = S + i * per;
            if (g == 1.0f)
                memcpy(y, Bi, per * sizeof(float));
            else if (g == 0.0f)
                memcpy(y, Si, per * sizeof(float));
            else
                for (size_t j = 0; j < per; j++) y[j] = Si[j] + g * (Bi[j] - Si[j]);
        }
        h = a->y[k];
    }
    a->logits = adnn_arena_get(m, (size_t)n * m->spec.num_classes);
    a->pooled = adnn_arena_get(m, (size_t)n * f->final.c);
    if (!a->logits || !a->pooled) return OOM();
    adnn_gap_head_forward(&f->final, h, n, a->pooled, a->logits);
    return DP_OK;
}

/* Backward of skip_full_forward. dlogits (n,K) or NULL; dt_ext (n,nblocks)
 * gradient on the gate logits or NULL; pen: the compute penalty's gradient
 * on each p (training only). In training the gate also gets the mixing
 * gradient <dL/dy, B - S> (exact for soft gates, straight-through for hard).
 * Accumulates into dx (may be NULL). */
static dp_err_t skip_backward(adnn_model_t *m, const float *dlogits, const float *dt_ext, float pen,
                              float *dx)
{
    skipnet_t *f = m->fam;
    skip_fwd_t *a = &f->fwd;
    int n = a->n, K = f->nblocks, D = m->spec.gate_dim;
    const adnn_basic_t *lb = &f->blocks[K - 1];
    float *d = adnn_arena_get(m, (size_t)n * lb->cout * lb->hout * lb->wout);
    float *dt = adnn_arena_get(m, (size_t)n);
    if (!d || !dt) return OOM();
    if (dlogits) adnn_gap_head_backward(m, &f->final, a->pooled, dlogits, n, d);
    float *dh = NULL, *dc = NULL;
    dp_err_t err;
    for (int k = K - 1; k >= 0; k--) {
        const adnn_basic_t *b = &f->blocks[k];
        const skip_gate_act_t *ga = &a->gate[k];
        size_t per = (size_t)b->cout * b->hout * b->wout, sz = (size_t)n * per;
        const float *S = b->has_sc ? a->blk[k].asc.out : ga->in, *B = a->blk[k].out;
        float *din = adnn_arena_get(m, (size_t)n * b->cin * b->h * b->w);
        float *dB = adnn_arena_get(m, sz), *dS = adnn_arena_get(m, sz);
        if (!din || !dB || !dS) return OOM();
        int anyB = 0, anyS = 0;
        for (int i = 0; i < n; i++) {
            float g = ga->g[i];
            const float *di = d + i * per;
            double mix = 0;
            for (size_t j = 0; j < per; j++) {
                dB[i * per + j] = g * di[j];
                dS[i * per + j] = (1.0f - g) * di[j];
                if (a->train) mix += (double)di[j] * (B[i * per + j] - S[i * per + j]);
            }
            anyB |= g != 0.0f, anyS |= g != 1.0f;
            double p = ga->p[i];
            double dp = a->train ? mix + pen : 0.0;
            dt[i] = (float)(dp * p * (1.0 - p)) + (dt_ext ? dt_ext[(size_t)i * K + k] : 0.0f);
        }
        if (anyB && (err = adnn_basic_backward(m, b, &a->blk[k], dB, din))) return err;
        if (anyS && (err = adnn_basic_shortcut_backward(m, b, &a->blk[k], dS, din))) return err;
        float *dhp = NULL, *dcp = NULL;
        if (recurrent(m)) {
            dhp = adnn_arena_get(m, (size_t)n * D);
            dcp = adnn_arena_get(m, (size_t)n * D);
            if (!dhp || !dcp) return OOM();
        }
        if ((err = gate_backward(m, k, ga, n, dt, dh, dc, dhp, dcp, din))) return err;
        dh = dhp, dc = dcp;
        d = din;
    }
    return adnn_cbn_backward(m, &f->stem, &a->stem, d, dx);
}

/* ------------------------------------------------------------- interface */

static void skip_forward_adaptive(adnn_model_t *m, const float *x, adnn_trace_t *t)
{
    skipnet_t *f = m->fam;
    skip_gate_act_t ga;
    adnn_arena_reset(m);
    t->nblocks = f->nblocks;
    t->nexits = 0;
    t->pred = -1;
    const float *h = adnn_cbn_adaptive(m, &f->stem, x, t), *hs = NULL, *cs = NULL;
    for (int k = 0; k < f->nblocks && h; k++) {
        if (gate_forward(m, k, h, 1, 0, hs, cs, &ga)) return;
        hs = ga.h, cs = ga.c;
        t->flops_ref += gate_flops(m, k, 0);
        t->flops_exact += gate_flops(m, k, 1);
        int open = ga.p[0] > m->spec.gate_threshold;
        if (k < ADNN_MAX_BLOCKS) t->gate_p[t->ngates++] = ga.p[0];
        if (f->force[k] != ADNN_SKIP_GATE_AUTO) open = f->force[k];
        h = adnn_basic_adaptive(m, &f->blocks[k], k, open, h, t);
    }
    if (h) adnn_gap_head_adaptive(&f->final, h, 0, t);
}

static double skip_flops_full(const adnn_model_t *m, int exact)
{
    const skipnet_t *f = m->fam;
    double fl = adnn_cbn_flops(&f->stem, exact);
    for (int k = 0; k < f->nblocks; k++)
        fl += gate_flops(m, k, exact) + adnn_basic_flops(&f->blocks[k], exact);
    return fl + adnn_gap_head_flops(&f->final, exact);
}

static dp_err_t skip_eval_batch(adnn_model_t *m, const float *x, int n, float *out)
{
    dp_err_t err = skip_full_forward(m, x, n, 0);
    if (err) return err;
    skipnet_t *f = m->fam;
    memcpy(out, f->fwd.logits, (size_t)n * m->spec.num_classes * sizeof(float));
    return DP_OK;
}

static dp_err_t skip_train_step(adnn_model_t *m, const float *x, const int32_t *y, int n,
                                double *loss, int *correct)
{
    dp_err_t err = skip_full_forward(m, x, n, 1);
    if (err) return err;
    skipnet_t *f = m->fam;
    const adnn_skipnet_train_t *o = &f->opt;
    int K = m->spec.num_classes, G = f->nblocks;
    float *probs = adnn_arena_get(m, (size_t)n * K), *dl = adnn_arena_get(m, (size_t)n * K);
    float *dt = adnn_arena_get(m, (size_t)n * G);
    if (!probs || !dl || !dt) return OOM();
    double l = nn_crossentropy_forward(probs, f->fwd.logits, y, n, K);
    nn_crossentropy_backward(dl, probs, y, n, K, 1.0f);
    /* margin term on the logits, its gradient handed to the gates as dt */
    double thr = m->spec.gate_threshold, tstar = log(thr / (1.0 - thr));
    double psum = 0, msum = 0, mw = (double)o->margin_weight / ((double)n * G), pen_k = 0;
    double pk[ADNN_MAX_BLOCKS];
    for (int k = 0; k < G; k++) {
        const skip_gate_act_t *ga = &f->fwd.gate[k];
        /* a multiplier per gate: its penalty's gradient on the logit,
         * mult_k p (1 - p) / (n G), goes to the gate through dt */
        double lk = o->target_per_block ? f->mult_k[k] / ((double)n * G) : 0.0;
        pk[k] = 0;
        for (int i = 0; i < n; i++) {
            double p = ga->p[i], d = (double)ga->t[i] - tstar, s = p > thr ? 1.0 : -1.0;
            pk[k] += p;
            int inside = o->margin_weight > 0 && s * d < o->margin;
            msum += inside ? o->margin - s * d : 0.0;
            dt[(size_t)i * G + k] =
                (inside ? (float)(-s * mw) : 0.0f) + (float)(lk * p * (1.0 - p));
        }
        psum += pk[k];
        pk[k] /= n;
        pen_k += o->target_per_block ? f->mult_k[k] * pk[k] / G : 0.0;
    }
    double lambda = o->target_per_block ? 0.0 : o->target > 0 ? f->mult : o->lambda;
    double mean_p = psum / ((double)n * G);
    *loss = l + lambda * mean_p + pen_k + mw * msum;
    *correct = adnn_count_correct(f->fwd.logits, y, n, K);
    if (o->target_per_block)
        for (int k = 0; k < G; k++)
            f->mult_k[k] = fmax(0.0, f->mult_k[k] + o->target_rate * (pk[k] - o->target));
    else if (o->target > 0)
        f->mult = fmax(0.0, f->mult + o->target_rate * (mean_p - o->target));
    return skip_backward(m, dl, dt, (float)(lambda / (n * G)), NULL);
}

static int skip_pk_count(const adnn_model_t *m) { return ((const skipnet_t *)m->fam)->nblocks; }

static dp_err_t skip_pk_grad(adnn_model_t *m, const float *x, int n, float *p, double *loss,
                             float *dx)
{
    skipnet_t *f = m->fam;
    int K = f->nblocks;
    if (dx) memset(dx, 0, (size_t)n * m->spec.c * m->spec.h * m->spec.w * sizeof(float));
    dp_err_t err = skip_full_forward(m, x, n, 0);
    if (err) return err;
    float *dt = adnn_arena_get(m, (size_t)n * K);
    if (!dt) return OOM();
    double l = 0, scale = 1.0 / ((double)n * K);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < K; k++) {
            const skip_gate_act_t *ga = &f->fwd.gate[k];
            double t = ga->t[i];
            p[(size_t)i * K + k] = ga->p[i];
            l -= scale * adnn_log_sigmoid(t); /* log p */
            dt[(size_t)i * K + k] = (float)(-scale * (1.0 - ga->p[i]));
        }
    *loss = l;
    if (!dx) return DP_OK;
    return skip_backward(m, NULL, dt, 0.0f, dx);
}

static dp_err_t skip_pk_vjp(adnn_model_t *m, const float *x, int n, adnn_pk_dloss_fn fn, void *arg,
                            float *p, float *dx)
{
    skipnet_t *f = m->fam;
    int K = f->nblocks;
    memset(dx, 0, (size_t)n * m->spec.c * m->spec.h * m->spec.w * sizeof(float));
    dp_err_t err = skip_full_forward(m, x, n, 0);
    if (err) return err;
    float *dt = adnn_arena_get(m, (size_t)n * K);
    if (!dt) return OOM();
    for (int i = 0; i < n; i++)
        for (int k = 0; k < K; k++) p[(size_t)i * K + k] = f->fwd.gate[k].p[i];
    fn(p, n, K, dt, arg); /* dL/dp, then dL/dt = dL/dp * p (1 - p) */
    for (size_t j = 0; j < (size_t)n * K; j++) dt[j] *= p[j] * (1.0f - p[j]);
    return skip_backward(m, NULL, dt, 0.0f, dx);
}

const adnn_family_ops_t adnn_skipnet_ops = {
    .family = ADNN_FAMILY_SKIPNET,
    .build = skip_build,
    .destroy = skip_destroy,
    .forward_adaptive = skip_forward_adaptive,
    .flops_full = skip_flops_full,
    .eval_batch = skip_eval_batch,
    .train_step = skip_train_step,
    .pk_count = skip_pk_count,
    .pk_grad = skip_pk_grad,
    .pk_vjp = skip_pk_vjp,
    .exits_backward = NULL,
};
