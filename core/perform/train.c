/* Training of the DeepPerform generator (docs/PERFORM.md) with
 * checkpoint/resume, and generator files.
 *
 * One step: g = G(x); delta = project(g); x' = clamp(x + delta, 0, 1);
 * L = L_adv(p(x')) + alpha L_GAN(D(x')) + beta L_per(g); the gradient flows
 * back through the clamp and the projection into G (the AdNN is frozen; its
 * input gradient comes from adnn_pk_grad, or from adnn_pk_vjp on
 * perf_ladv_below's terms with adv_margin). With alpha > 0 the discriminator
 * then takes one step on (x real, x' fake).
 *
 * Every epoch ends with the mean executed fraction of the held-out seeds
 * (generator in inference mode, adaptive forward at batch 1) and a checkpoint
 * written atomically: current and best generator tensors, Adam moments and
 * step, the discriminator, the epoch counters. The shuffle of epoch e comes
 * from (seed, e) alone, so a resumed run equals an uninterrupted one bit for
 * bit (with the same BLAS thread count). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn/safetensors.h"
#include "perform/perform.h"
#include "util/clock.h"

#define GEN_FORMAT "dp.perform.generator.v1" /* a generator file's metadata "format" */

perf_train_config_t perf_train_config_default(void)
{
    perf_train_config_t c = {0};
    c.budget.norm = PERF_NORM_LINF;
    c.budget.eps = 0.09f;
    c.budget.l2_at_most = 1; /* at most eps, as a campaign's Budget.l2_exact = false */
    c.width = 16;
    c.batch = 32;
    c.epochs = 20;
    c.patience = 20;
    c.alpha = 0.0f;
    c.beta = 0.0f;
    c.lr = 1e-3f;
    c.lr_step1 = 0; /* 0: the paper's 50 and 80 of 100 epochs, scaled to c.epochs */
    c.lr_step2 = 0;
    c.res_slope = 0.01f;
    c.seed = 1;
    return c;
}

/* ------------------------------------------------------------- tensors */

static size_t gen_state_len(const perf_gen_t *g)
{
    size_t n = 0;
    for (int i = 0; i < perf_gen_num_tensors(g); i++) n += perf_gen_tensor(g, i)->numel;
    return n;
}

/* All named tensors, in order, to or from one flat buffer. */
static void gen_pack(const perf_gen_t *g, float *buf)
{
    for (int i = 0; i < perf_gen_num_tensors(g); i++) {
        const perf_gen_tensor_t *t = perf_gen_tensor(g, i);
        memcpy(buf, t->data, t->numel * sizeof(float));
        buf += t->numel;
    }
}

static void gen_unpack(perf_gen_t *g, const float *buf)
{
    for (int i = 0; i < perf_gen_num_tensors(g); i++) {
        const perf_gen_tensor_t *t = perf_gen_tensor(g, i);
        memcpy(t->data, buf, t->numel * sizeof(float));
        buf += t->numel;
    }
}

static dp_err_t add_gen_tensors(st_writer_t *w, const perf_gen_t *g, const char *prefix,
                                const float *flat)
{
    char nm[160];
    for (int i = 0; i < perf_gen_num_tensors(g); i++) {
        const perf_gen_tensor_t *t = perf_gen_tensor(g, i);
        int64_t shape[4];
        for (int k = 0; k < t->ndim; k++) shape[k] = t->shape[k];
        snprintf(nm, sizeof nm, "%s%s", prefix, t->name);
        dp_err_t err = st_writer_add_f32(w, nm, t->ndim, shape, flat ? flat : t->data);
        if (err) return err;
        if (flat) flat += t->numel;
    }
    return DP_OK;
}

static dp_err_t read_gen_tensors(const st_file_t *f, perf_gen_t *g, const char *prefix, float *flat)
{
    char nm[160];
    for (int i = 0; i < perf_gen_num_tensors(g); i++) {
        const perf_gen_tensor_t *t = perf_gen_tensor(g, i);
        int64_t shape[4];
        for (int k = 0; k < t->ndim; k++) shape[k] = t->shape[k];
        snprintf(nm, sizeof nm, "%s%s", prefix, t->name);
        dp_err_t err = st_read_f32(f, nm, t->ndim, shape, flat ? flat : t->data);
        if (err) return err;
        if (flat) flat += t->numel;
    }
    return DP_OK;
}

static dp_err_t set_meta_f(st_writer_t *w, const char *key, double v)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%.17g", v);
    return st_writer_set_metadata(w, key, buf);
}

static int meta_f(const st_file_t *f, const char *key, double *out)
{
    const char *s = st_metadata(f, key);
    if (!s) return -1;
    char *end;
    *out = strtod(s, &end);
    return *end ? -1 : 0;
}

static dp_err_t set_gen_meta(st_writer_t *w, const perf_gen_t *g, const perf_budget_t *b)
{
    const perf_gen_config_t *c = perf_gen_config(g);
    dp_err_t err;
    if ((err = set_meta_f(w, "c", c->c)) || (err = set_meta_f(w, "h", c->h)) ||
        (err = set_meta_f(w, "w", c->w)) || (err = set_meta_f(w, "width", c->width)) ||
        (err = set_meta_f(w, "slope", c->slope)) ||
        (err = set_meta_f(w, "res_slope", c->res_slope)) ||
        (err = st_writer_set_metadata(w, "norm", perf_norm_name(b->norm))) ||
        (err = set_meta_f(w, "eps", b->eps)) ||
        (err = set_meta_f(w, "l2_at_most", b->l2_at_most)) ||
        (err = set_meta_f(w, "linf_scaled", b->linf_scaled)))
        return err;
    return DP_OK;
}

dp_err_t perf_gen_save(const perf_gen_t *g, const perf_budget_t *b, const char *path)
{
    st_writer_t *w = st_writer_new();
    if (!w) return dp_err_set(DP_ERR_NOMEM, "out of memory saving %s", path);
    dp_err_t err = set_gen_meta(w, g, b);
    if (!err) err = st_writer_set_metadata(w, "format", GEN_FORMAT);
    if (!err) err = add_gen_tensors(w, g, "", NULL);
    if (!err) err = st_writer_write(w, path);
    st_writer_destroy(&w);
    return err;
}

static dp_err_t gen_config_from(const st_file_t *f, int max_batch, perf_gen_config_t *c,
                                perf_budget_t *b)
{
    double v[9];
    const char *keys[9] = {"c", "h", "w", "width", "slope", "res_slope", "eps", "l2_at_most", ""};
    for (int i = 0; i < 8; i++)
        if (meta_f(f, keys[i], &v[i]))
            return dp_err_set(DP_ERR_FORMAT, "%s: metadata '%s' missing or not a number",
                              st_path(f), keys[i]);
    /* bounds before the casts to int: a crafted file must not reach UB. The
     * slopes and eps are checked as the floats they become, against float
     * bounds: eps 1e-9 (dp-perform's least --eps) is 9.99999972e-10 as a
     * float, below the double 1e-9, and its saved file was refused. */
    static const double lo[8] = {1, 1, 1, 1, -1e3, -1e3, 1e-9, 0};
    static const double hi[8] = {64, 4096, 4096, 1024, 1e3, 1e3, 1e6, 1};
    for (int i = 0; i < 8; i++) {
        int whole = i < 4 || i == 7; /* c, h, w, width, l2_at_most */
        double x = v[i], l = lo[i], h = hi[i];
        if (i >= 4 && i <= 6 && fabs(x) <= 1e30) /* in float range; NaN stays NaN */
            x = (float)x, l = (float)l, h = (float)h;
        if (!(x >= l && x <= h) || (whole && v[i] != floor(v[i])))
            return dp_err_set(DP_ERR_FORMAT, "%s: metadata '%s' is %g, expected %s in [%g, %g]",
                              st_path(f), keys[i], v[i], whole ? "an integer" : "a number", lo[i],
                              hi[i]);
    }
    const char *norm = st_metadata(f, "norm");
    if (!norm || perf_norm_parse(norm) < 0)
        return dp_err_set(DP_ERR_FORMAT, "%s: metadata 'norm' missing or unknown", st_path(f));
    *c = perf_gen_config_default();
    c->c = (int)v[0], c->h = (int)v[1], c->w = (int)v[2], c->width = (int)v[3];
    c->slope = (float)v[4], c->res_slope = (float)v[5];
    c->max_batch = max_batch;
    b->norm = (perf_norm_t)perf_norm_parse(norm);
    b->eps = (float)v[6];
    b->l2_at_most = (int)v[7];
    /* absent in generators saved before it: the clip */
    double sc = 0;
    if (st_metadata(f, "linf_scaled") && (meta_f(f, "linf_scaled", &sc) || (sc != 0 && sc != 1)))
        return dp_err_set(DP_ERR_FORMAT, "%s: metadata 'linf_scaled' is not 0 or 1", st_path(f));
    b->linf_scaled = (int)sc;
    return DP_OK;
}

dp_err_t perf_gen_load(const char *path, int max_batch, perf_gen_t **out, perf_budget_t *b)
{
    *out = NULL;
    st_file_t *f = NULL;
    dp_err_t err = st_open(path, &f);
    if (err) return err;
    perf_gen_config_t c;
    perf_gen_t *g = NULL;
    const char *fmt = st_metadata(f, "format");
    if (!fmt || strcmp(fmt, GEN_FORMAT)) {
        err = dp_err_set(DP_ERR_FORMAT, "%s: not a generator (format '%s', not %s)", path,
                         fmt ? fmt : "none", GEN_FORMAT);
        goto done;
    }
    if ((err = gen_config_from(f, max_batch, &c, b))) goto done;
    c.inference_only = 1;
    if (!(g = perf_gen_new(&c))) {
        err = dp_err_set(DP_ERR_FORMAT, "%s: generator config rejected: %s", path, dp_err_detail());
        goto done;
    }
    if ((err = read_gen_tensors(f, g, "", NULL))) goto done;
    *out = g;
    g = NULL;
done:
    perf_gen_destroy(&g);
    st_close(&f);
    return err;
}

/* ------------------------------------------------------------- checkpoint */

typedef struct train_state {
    int epochs_done, best_epoch, since_best;
    double best_exec;
    float *best; /* gen_state_len floats */
} train_state_t;

static dp_err_t ckpt_save(const char *path, perf_gen_t *g, perf_disc_t *d,
                          const perf_train_config_t *cfg, const train_state_t *st)
{
    st_writer_t *w = st_writer_new();
    if (!w) return dp_err_set(DP_ERR_NOMEM, "out of memory saving %s", path);
    float *am, *av;
    long *at;
    perf_gen_adam_state(g, &am, &av, &at);
    int64_t np = (int64_t)perf_gen_num_params(g);
    dp_err_t err = set_gen_meta(w, g, &cfg->budget);
    if (!err) err = st_writer_set_metadata(w, "format", "dp.perform.checkpoint.v1");
    if (!err) err = set_meta_f(w, "epochs_done", st->epochs_done);
    if (!err) err = set_meta_f(w, "best_epoch", st->best_epoch);
    if (!err) err = set_meta_f(w, "since_best", st->since_best);
    if (!err) err = set_meta_f(w, "best_exec", st->best_exec);
    if (!err) err = set_meta_f(w, "adam_t", (double)*at);
    if (!err) err = set_meta_f(w, "seed", (double)cfg->seed);
    if (!err) err = set_meta_f(w, "alpha", cfg->alpha);
    if (!err) err = set_meta_f(w, "adv_margin", cfg->adv_margin);
    if (!err) err = set_meta_f(w, "adv_hinge", cfg->adv_hinge);
    if (!err) err = add_gen_tensors(w, g, "cur.", NULL);
    if (!err) err = add_gen_tensors(w, g, "best.", st->best);
    if (!err) err = st_writer_add_f32(w, "adam.m", 1, &np, am);
    if (!err) err = st_writer_add_f32(w, "adam.v", 1, &np, av);
    if (!err && d) {
        float *p, *m, *v, *s;
        size_t ns;
        long *dt;
        int64_t dn = (int64_t)perf_disc_state(d, &p, &m, &v, &s, &ns, &dt);
        int64_t dns = (int64_t)ns;
        if (!err) err = st_writer_add_f32(w, "disc.params", 1, &dn, p);
        if (!err) err = st_writer_add_f32(w, "disc.m", 1, &dn, m);
        if (!err) err = st_writer_add_f32(w, "disc.v", 1, &dn, v);
        if (!err) err = st_writer_add_f32(w, "disc.stats", 1, &dns, s);
        if (!err) err = set_meta_f(w, "disc_t", (double)*dt);
    }
    if (!err) err = st_writer_write(w, path);
    st_writer_destroy(&w);
    return err;
}

static dp_err_t ckpt_load(const char *path, perf_gen_t *g, perf_disc_t *d,
                          const perf_train_config_t *cfg, train_state_t *st)
{
    st_file_t *f = NULL;
    dp_err_t err = st_open(path, &f);
    if (err) return err;
    perf_gen_config_t c;
    perf_budget_t b;
    double v, margin = 0, hinge = 0; /* absent: a checkpoint of the published loss */
    if ((err = gen_config_from(f, 1, &c, &b))) goto done;
    if ((st_metadata(f, "adv_margin") && meta_f(f, "adv_margin", &margin)) ||
        (st_metadata(f, "adv_hinge") && meta_f(f, "adv_hinge", &hinge))) {
        err = dp_err_set(DP_ERR_FORMAT, "%s: metadata 'adv_margin' or 'adv_hinge' is not a number",
                         path);
        goto done;
    }
    const perf_gen_config_t *gc = perf_gen_config(g);
    if (c.c != gc->c || c.h != gc->h || c.w != gc->w || c.width != gc->width ||
        b.norm != cfg->budget.norm || b.eps != cfg->budget.eps ||
        b.l2_at_most != cfg->budget.l2_at_most || b.linf_scaled != cfg->budget.linf_scaled ||
        meta_f(f, "seed", &v) || v != (double)cfg->seed || meta_f(f, "alpha", &v) ||
        (float)v != cfg->alpha || (float)margin != cfg->adv_margin ||
        (int)hinge != cfg->adv_hinge) {
        err = dp_err_set(DP_ERR_MISMATCH,
                         "%s: checkpoint was written with other settings (shape, width, "
                         "budget, seed, alpha or the L_adv margin)",
                         path);
        goto done;
    }
    const char *keys[5] = {"epochs_done", "best_epoch", "since_best", "best_exec", "adam_t"};
    double vals[5];
    for (int i = 0; i < 5; i++)
        if (meta_f(f, keys[i], &vals[i])) {
            err = dp_err_set(DP_ERR_FORMAT, "%s: metadata '%s' missing", path, keys[i]);
            goto done;
        }
    if ((err = read_gen_tensors(f, g, "cur.", NULL)) ||
        (err = read_gen_tensors(f, g, "best.", st->best)))
        goto done;
    float *am, *av;
    long *at;
    perf_gen_adam_state(g, &am, &av, &at);
    int64_t np = (int64_t)perf_gen_num_params(g);
    if ((err = st_read_f32(f, "adam.m", 1, &np, am)) ||
        (err = st_read_f32(f, "adam.v", 1, &np, av)))
        goto done;
    if (d) {
        float *p, *m, *vv, *s;
        size_t ns;
        long *dt;
        int64_t dn = (int64_t)perf_disc_state(d, &p, &m, &vv, &s, &ns, &dt);
        int64_t dns = (int64_t)ns;
        if ((err = st_read_f32(f, "disc.params", 1, &dn, p)) ||
            (err = st_read_f32(f, "disc.m", 1, &dn, m)) ||
            (err = st_read_f32(f, "disc.v", 1, &dn, vv)) ||
            (err = st_read_f32(f, "disc.stats", 1, &dns, s)))
            goto done;
        if (meta_f(f, "disc_t", &v)) {
            err = dp_err_set(DP_ERR_FORMAT, "%s: metadata 'disc_t' missing", path);
            goto done;
        }
        *dt = (long)v;
    }
    st->epochs_done = (int)vals[0];
    st->best_epoch = (int)vals[1];
    st->since_best = (int)vals[2];
    st->best_exec = vals[3];
    *at = (long)vals[4];
done:
    st_close(&f);
    return err;
}

/* ------------------------------------------------------------- training */

/* Mean executed fraction (reference FLOPs) of G's outputs on n seeds. */
static dp_err_t eval_exec(perf_gen_t *g, adnn_model_t *m, const perf_budget_t *b, const float *x,
                          int n, int batch, float *gbuf, float *xadv, double *mean)
{
    const perf_gen_config_t *c = perf_gen_config(g);
    size_t d = (size_t)c->c * c->h * c->w;
    double full = adnn_flops_full(m, 0), sum = 0;
    for (int i = 0; i < n; i += batch) {
        int nb = n - i < batch ? n - i : batch;
        const float *xi = x + (size_t)i * d;
        perf_gen_forward(g, xi, nb, gbuf, 0);
        perf_project(b, gbuf, gbuf, nb, d);
        perf_apply(xi, gbuf, xadv, (size_t)nb * d);
        for (int j = 0; j < nb; j++) {
            adnn_trace_t t;
            adnn_forward_adaptive(m, xadv + (size_t)j * d, &t);
            sum += t.flops_ref / full;
        }
    }
    *mean = n > 0 ? sum / n : 0;
    return DP_OK;
}

/* The 1-based epochs from which the lr is x0.1 and x0.01: the settings, or
 * where 0, the paper's epochs 50 and 80 of 100 scaled to cfg->epochs (never
 * before epoch 2). */
void perf_lr_steps(const perf_train_config_t *cfg, int *step1, int *step2)
{
    int e = cfg->epochs > 0 ? cfg->epochs : 1;
    int s1 = cfg->lr_step1 > 0 ? cfg->lr_step1 : (e * 50 + 99) / 100;
    int s2 = cfg->lr_step2 > 0 ? cfg->lr_step2 : (e * 80 + 99) / 100;
    *step1 = s1 < 2 ? 2 : s1;
    *step2 = s2 < 2 ? 2 : s2;
}

static float lr_at(const perf_train_config_t *cfg, int epoch1)
{
    int s1, s2;
    perf_lr_steps(cfg, &s1, &s2);
    if (epoch1 >= s2) return cfg->lr * 0.01f;
    if (epoch1 >= s1) return cfg->lr * 0.1f;
    return cfg->lr;
}

static size_t sanitize(float *v, size_t n)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) {
            v[i] = 0.0f;
            bad++;
        }
    return bad;
}

/* adnn_pk_dloss_fn of perf_ladv_below; arg: the training config */
static void ladv_below_dloss(const float *p, int n, int k, float *dp, void *arg)
{
    const perf_train_config_t *c = arg;
    perf_ladv_below(p, n, k, c->adv_margin, c->adv_hinge, dp);
}

dp_err_t perf_train(adnn_model_t *m, const float *train, int ntrain, const float *val, int nval,
                    const perf_train_config_t *cfg, perf_gen_t **out, perf_train_result_t *res)
{
    const perf_hooks_t *hk = &cfg->hooks;
    char line[512];
    *out = NULL;
    memset(res, 0, sizeof *res);
    const adnn_spec_t *spec = adnn_model_spec(m);
    if (cfg->batch < 2 || ntrain < cfg->batch || nval < 1 || cfg->epochs < 1 || cfg->patience < 1 ||
        !(cfg->budget.eps > 0) || !(cfg->adv_margin >= 0 && cfg->adv_margin <= 1) ||
        (cfg->adv_hinge && !(cfg->adv_margin > 0)))
        return dp_err_set(DP_ERR_INVALID,
                          "perf_train: needs batch >= 2, ntrain >= batch, nval >= 1, epochs >= 1, "
                          "patience >= 1, eps > 0, adv_margin in [0, 1] (> 0 with adv_hinge)");
    double t0 = dp_clock_s();
    perf_gen_config_t gc = perf_gen_config_default();
    gc.c = spec->c, gc.h = spec->h, gc.w = spec->w;
    gc.width = cfg->width;
    gc.max_batch = cfg->batch;
    gc.seed = cfg->seed;
    gc.res_slope = cfg->res_slope;
    int K = adnn_pk_count(m), B = cfg->batch;
    size_t d = (size_t)gc.c * gc.h * gc.w;
    perf_gen_t *g = perf_gen_new(&gc);
    perf_disc_t *disc = NULL;
    train_state_t st = {0};
    uint32_t *order = malloc((size_t)ntrain * sizeof *order);
    float *xb = malloc((size_t)B * d * sizeof(float));
    float *gout = malloc((size_t)B * d * sizeof(float));
    float *delta = malloc((size_t)B * d * sizeof(float));
    float *xadv = malloc((size_t)B * d * sizeof(float));
    float *dx = malloc((size_t)B * d * sizeof(float));
    float *p = malloc((size_t)B * (K > 0 ? K : 1) * sizeof(float));
    dp_err_t err = DP_OK;
    if (!g) {
        err = dp_err_set(DP_ERR_INVALID, "perf_train: generator: %s", dp_err_detail());
        goto done;
    }
    st.best = malloc(gen_state_len(g) * sizeof(float));
    if (cfg->alpha > 0 && !(disc = perf_disc_new(gc.c, gc.h, gc.w, B, cfg->seed ^ 0xd15cULL))) {
        err =
            dp_err_set(DP_ERR_INVALID, "perf_train: discriminator for %dx%dx%d", gc.c, gc.h, gc.w);
        goto done;
    }
    if (!order || !xb || !gout || !delta || !xadv || !dx || !p || !st.best) {
        err = dp_err_set(DP_ERR_NOMEM, "perf_train: out of memory");
        goto done;
    }
    gen_pack(g, st.best);
    st.best_exec = -1;
    if (cfg->checkpoint && access(cfg->checkpoint, F_OK) == 0) {
        if ((err = ckpt_load(cfg->checkpoint, g, disc, cfg, &st))) goto done;
        res->resumed_from = st.epochs_done;
        snprintf(line, sizeof line,
                 "perf train: resumed from %s after epoch %d (best %.4f at epoch %d)",
                 cfg->checkpoint, st.epochs_done, st.best_exec, st.best_epoch);
        perf_hooks_progress(hk, "train", (uint64_t)st.epochs_done, (uint64_t)cfg->epochs, line);
    }
    int run_here = 0;
    while (st.epochs_done < cfg->epochs && st.since_best < cfg->patience) {
        if (cfg->time_limit_s > 0 && dp_clock_s() - t0 >= cfg->time_limit_s && st.best_epoch > 0) {
            res->time_limited = 1;
            break;
        }
        int e1 = st.epochs_done + 1;
        float lr = lr_at(cfg, e1);
        dp_rng_t r;
        dp_rng_seed(&r, cfg->seed * 0x9e3779b97f4a7c15ULL + (uint64_t)e1);
        for (int i = 0; i < ntrain; i++) order[i] = (uint32_t)i;
        dp_rng_shuffle(&r, order, (uint32_t)ntrain);
        double sadv = 0, sgan = 0, sper = 0;
        size_t bad = 0;
        int steps = 0;
        double te = dp_clock_s();
        for (int s0 = 0; s0 + 2 <= ntrain; s0 += B) {
            int nb = ntrain - s0 < B ? ntrain - s0 : B;
            if (nb < 2) break;
            if (perf_hooks_cancelled(hk) == PERF_STOP_NOW) {
                res->epochs_run = st.epochs_done;
                err = dp_err_set(DP_ERR_CANCELLED,
                                 "perf_train: cancelled in epoch %d (the checkpoint of epoch %d "
                                 "stands)",
                                 e1, st.epochs_done);
                goto done;
            }
            for (int j = 0; j < nb; j++)
                memcpy(xb + (size_t)j * d, train + (size_t)order[s0 + j] * d, d * sizeof(float));
            size_t len = (size_t)nb * d;
            perf_gen_forward(g, xb, nb, gout, 1);
            perf_project(&cfg->budget, gout, delta, nb, d);
            perf_apply(xb, delta, xadv, len);
            if (cfg->adv_margin > 0) {
                if ((err = adnn_pk_vjp(m, xadv, nb, ladv_below_dloss, (void *)cfg, p, dx)))
                    goto done;
                sadv += perf_ladv_below(p, nb, K, cfg->adv_margin, cfg->adv_hinge, NULL);
            } else {
                double ladv;
                if ((err = adnn_pk_grad(m, xadv, nb, p, &ladv, dx))) goto done;
                sadv += perf_ladv(p, nb, K);
            }
            if (disc) sgan += perf_disc_gen_loss(disc, xadv, nb, cfg->alpha, dx);
            perf_apply_backward(xb, delta, dx, dx, len);
            perf_project_backward(&cfg->budget, gout, dx, dx, nb, d);
            if (cfg->beta > 0) sper += perf_lper(&cfg->budget, gout, nb, d, cfg->beta, dx);
            bad += sanitize(dx, len);
            perf_gen_zero_grad(g);
            perf_gen_backward(g, dx, NULL);
            perf_gen_adam_step(g, lr);
            if (disc) perf_disc_step(disc, xb, xadv, nb, lr);
            steps++;
        }
        double ex;
        if ((err = eval_exec(g, m, &cfg->budget, val, nval, B, gout, xadv, &ex))) goto done;
        st.epochs_done = e1;
        if (ex > st.best_exec) {
            st.best_exec = ex;
            st.best_epoch = e1;
            st.since_best = 0;
            gen_pack(g, st.best);
        } else {
            st.since_best++;
        }
        if (cfg->checkpoint) {
            if ((err = ckpt_save(cfg->checkpoint, g, disc, cfg, &st))) goto done;
            if (hk->epoch_end && (err = hk->epoch_end(hk->ctx, e1, cfg->checkpoint))) goto done;
        }
        if (hk->progress) {
            int n = snprintf(line, sizeof line, "epoch %d/%d  lr %.0e  L_adv %.4f", e1, cfg->epochs,
                             lr, sadv / steps);
            if (disc) n += snprintf(line + n, sizeof line - n, "  L_GAN %.4f", sgan / steps);
            if (cfg->beta > 0)
                n += snprintf(line + n, sizeof line - n, "  L_per %.4f", sper / steps);
            snprintf(line + n, sizeof line - n,
                     "  held-out exec %.4f  best %.4f (epoch %d)  %.1fs%s", ex, st.best_exec,
                     st.best_epoch, dp_clock_s() - te,
                     bad ? "  (non-finite gradients zeroed)" : "");
            hk->progress(hk->ctx, "train", (uint64_t)e1, (uint64_t)cfg->epochs, line);
        }
        run_here++;
        const int cancel = perf_hooks_cancelled(hk);
        if (cancel != PERF_GO_ON || (cfg->stop_after > 0 && run_here >= cfg->stop_after)) {
            res->epochs_run = st.epochs_done;
            err = dp_err_set(cancel != PERF_GO_ON ? DP_ERR_CANCELLED : DP_ERR_INTERRUPTED,
                             "perf_train: stopped after epoch %d%s", st.epochs_done,
                             cfg->checkpoint ? " (checkpoint written)" : "");
            goto done;
        }
    }
    res->early_stopped = st.since_best >= cfg->patience;
    gen_unpack(g, st.best);
    res->epochs_run = st.epochs_done;
    res->best_epoch = st.best_epoch;
    res->best_exec = st.best_exec;
    *out = g;
    g = NULL;
done:
    res->seconds = dp_clock_s() - t0;
    perf_gen_destroy(&g);
    perf_disc_destroy(&disc);
    free(st.best);
    free(order);
    free(xb);
    free(gout);
    free(delta);
    free(xadv);
    free(dx);
    free(p);
    return err;
}
