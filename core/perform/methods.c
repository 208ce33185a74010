/* Test-input methods on the same seeds and budgets (docs/PERFORM.md):
 * DeepPerform (one generator forward per batch), random noise in the norm
 * ball, ILFO (per-input SGD) and DeepSloth (early-exit networks), and the
 * sample sets they fill (safetensors files). */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/blas.h"
#include "nn/gemm.h"
#include "nn/safetensors.h"
#include "perform/perform.h"
#include "perform/workers.h"
#include "util/clock.h"
#include "util/utf8.h"

static const char *const method_names[] = {"deepperform", "random", "ilfo", "deepsloth"};

const char *perf_method_name(perf_method_t m) { return (unsigned)m < 4 ? method_names[m] : "?"; }

int perf_method_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, method_names[i]) == 0) return i;
    return -1;
}

/* ------------------------------------------------------------- sample sets */

perf_samples_t *perf_samples_new(int n, int c, int h, int w)
{
    perf_samples_t *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->n = n, s->c = c, s->h = h, s->w = w;
    size_t nn = n > 0 ? (size_t)n : 1;
    s->seed_index = calloc(nn, sizeof(int64_t));
    s->xadv = calloc(nn * c * h * w, sizeof(float));
    s->delta_norm = calloc(nn, sizeof(float));
    s->psnr = calloc(nn, sizeof(float));
    s->flops_seed = calloc(nn, sizeof(double));
    s->flops_adv = calloc(nn, sizeof(double));
    if (!s->seed_index || !s->xadv || !s->delta_norm || !s->psnr || !s->flops_seed || !s->flops_adv)
        perf_samples_destroy(&s);
    return s;
}

void perf_samples_destroy(perf_samples_t **ps)
{
    if (!ps || !*ps) return;
    perf_samples_t *s = *ps;
    free(s->seed_index);
    free(s->xadv);
    free(s->delta_norm);
    free(s->psnr);
    free(s->flops_seed);
    free(s->flops_adv);
    free(s);
    *ps = NULL;
}

static dp_err_t meta_num(st_writer_t *w, const char *k, double v)
{
    char b[64];
    snprintf(b, sizeof b, "%.17g", v);
    return st_writer_set_metadata(w, k, b);
}

/* Largest budget eps of a sample set (the generator files and dp-perform's
 * --eps allow the same). */
#define SAMPLES_EPS_MAX 1e6

/* What a sample set may hold beyond its shapes: a model name that is UTF-8
 * and fits s->model, known method and norm, a budget (eps checked as the
 * float it is used as: a double > 0 can round to 0), the full network's
 * FLOPs finite and > 0 (the executed fraction divides by them), a finite wall
 * time >= 0 and per-input FLOPs finite and >= 0. perf_samples_save refuses
 * what perf_samples_load would, so whatever saves loads back, bit for bit
 * (%.17g does not keep a NaN's payload); and a loaded set never carries a
 * NaN or an infinity into the metrics. tag goes between path and reason. */
static dp_err_t check_samples(const perf_samples_t *s, const char *path, dp_err_t kind,
                              const char *tag)
{
    size_t ml = strnlen(s->model, sizeof s->model);
    if (ml == sizeof s->model || !dp_utf8_valid(s->model, ml))
        return dp_err_set(kind, "%s: %smodel name is not UTF-8 of at most %zu bytes", path, tag,
                          sizeof s->model - 1);
    if ((unsigned)s->method > PERF_METHOD_DEEPSLOTH ||
        (s->budget.norm != PERF_NORM_LINF && s->budget.norm != PERF_NORM_L2))
        return dp_err_set(kind, "%s: %smethod %d or norm %d unknown", path, tag, (int)s->method,
                          (int)s->budget.norm);
    if (!(s->budget.eps > 0 && s->budget.eps <= SAMPLES_EPS_MAX) ||
        (s->budget.l2_at_most != 0 && s->budget.l2_at_most != 1))
        return dp_err_set(kind, "%s: %sbudget eps %g, l2_at_most %d out of range", path, tag,
                          s->budget.eps, s->budget.l2_at_most);
    if (!(isfinite(s->flops_full) && s->flops_full > 0))
        return dp_err_set(kind, "%s: %sflops_full is %g, expected a finite number > 0", path, tag,
                          s->flops_full);
    if (!(isfinite(s->seconds) && s->seconds >= 0))
        return dp_err_set(kind, "%s: %sseconds is %g, expected a finite number >= 0", path, tag,
                          s->seconds);
    for (int i = 0; i < s->n; i++) {
        double fs = s->flops_seed[i], fa = s->flops_adv[i];
        if (!(isfinite(fs) && fs >= 0 && isfinite(fa) && fa >= 0))
            return dp_err_set(kind,
                              "%s: %sinput %d: FLOPs %g (seed), %g (x'), expected finite "
                              "numbers >= 0",
                              path, tag, i, fs, fa);
    }
    return DP_OK;
}

dp_err_t perf_samples_save(const perf_samples_t *s, const char *path)
{
    dp_err_t err = check_samples(s, path, DP_ERR_INVALID, "not saved: ");
    if (err) return err;
    st_writer_t *w = st_writer_new();
    if (!w) return dp_err_set(DP_ERR_NOMEM, "out of memory saving %s", path);
    int64_t n = s->n, img[4] = {s->n, s->c, s->h, s->w};
    err = st_writer_set_metadata(w, "format", "dp.perform.samples.v1");
    if (!err) err = st_writer_set_metadata(w, "model", s->model);
    if (!err) err = st_writer_set_metadata(w, "method", perf_method_name(s->method));
    if (!err) err = st_writer_set_metadata(w, "norm", perf_norm_name(s->budget.norm));
    if (!err) err = meta_num(w, "eps", s->budget.eps);
    if (!err) err = meta_num(w, "l2_at_most", s->budget.l2_at_most);
    if (!err) err = meta_num(w, "flops_full", s->flops_full);
    if (!err) err = meta_num(w, "seconds", s->seconds);
    if (!err && s->blas_core[0]) err = st_writer_set_metadata(w, "blas_core", s->blas_core);
    if (!err && s->gemm_path[0]) err = st_writer_set_metadata(w, "gemm_path", s->gemm_path);
    if (!err) err = st_writer_add_i64(w, "seed_index", 1, &n, s->seed_index);
    if (!err) err = st_writer_add_f32(w, "x_adv", 4, img, s->xadv);
    if (!err) err = st_writer_add_f32(w, "delta_norm", 1, &n, s->delta_norm);
    if (!err) err = st_writer_add_f32(w, "psnr", 1, &n, s->psnr);
    if (!err) err = st_writer_add(w, "flops_seed", ST_F64, 1, &n, s->flops_seed);
    if (!err) err = st_writer_add(w, "flops_adv", ST_F64, 1, &n, s->flops_adv);
    if (!err) err = st_writer_write(w, path);
    st_writer_destroy(&w);
    return err;
}

/* An optional provenance name: absent, or 1..size-1 printable ASCII bytes. */
static int provenance_ok(const char *v, size_t size)
{
    if (!v) return 1;
    const size_t n = strlen(v);
    if (n == 0 || n >= size) return 0;
    for (size_t i = 0; i < n; i++)
        if (v[i] < 0x21 || v[i] > 0x7e) return 0;
    return 1;
}

/* A metadata number: the whole string, not empty (strtod reads "" as 0). */
static int get_num(const st_file_t *f, const char *k, double *v)
{
    const char *s = st_metadata(f, k);
    char *end;
    if (!s) return -1;
    *v = strtod(s, &end);
    return end == s || *end ? -1 : 0;
}

dp_err_t perf_samples_load(const char *path, perf_samples_t **out)
{
    *out = NULL;
    st_file_t *f = NULL;
    perf_samples_t *s = NULL;
    dp_err_t err = st_open(path, &f);
    if (err) return err;
    st_tensor_t t;
    double eps, atm, full, secs;
    const char *method = st_metadata(f, "method"), *norm = st_metadata(f, "norm"),
               *model = st_metadata(f, "model");
    if (!method || !norm || !model || perf_method_parse(method) < 0 || perf_norm_parse(norm) < 0 ||
        get_num(f, "eps", &eps) || get_num(f, "l2_at_most", &atm) ||
        get_num(f, "flops_full", &full) || get_num(f, "seconds", &secs)) {
        err = dp_err_set(DP_ERR_FORMAT, "%s: not a sample set (metadata)", path);
        goto done;
    }
    /* before the casts below; eps also after its own (1e-50 is 0 as a float) */
    if (!(eps > 0 && eps <= SAMPLES_EPS_MAX) || !((float)eps > 0) || (atm != 0 && atm != 1)) {
        err = dp_err_set(DP_ERR_FORMAT, "%s: budget eps %g%s, l2_at_most %g out of range", path,
                         eps, eps > 0 && eps <= SAMPLES_EPS_MAX ? " (0 as a float)" : "", atm);
        goto done;
    }
    if (strlen(model) >= sizeof s->model) { /* it was cut to fit, inside a character maybe */
        err = dp_err_set(DP_ERR_FORMAT, "%s: metadata 'model' is %zu bytes, at most %zu", path,
                         strlen(model), sizeof s->model - 1);
        goto done;
    }
    if (!(isfinite(full) && full > 0) || !(isfinite(secs) && secs >= 0)) {
        const char *k = isfinite(full) && full > 0 ? "seconds" : "flops_full";
        err = dp_err_set(DP_ERR_FORMAT, "%s: metadata '%s' is '%s', expected a finite number %s",
                         path, k, st_metadata(f, k), k[0] == 's' ? ">= 0" : "> 0");
        goto done;
    }
    const char *core = st_metadata(f, "blas_core"), *gpath = st_metadata(f, "gemm_path");
    if (!provenance_ok(core, sizeof s->blas_core) || !provenance_ok(gpath, sizeof s->gemm_path)) {
        err = dp_err_set(DP_ERR_FORMAT,
                         "%s: metadata 'blas_core' or 'gemm_path' is not a short printable name",
                         path);
        goto done;
    }
    if ((err = st_find(f, "x_adv", &t))) goto done;
    if (t.ndim != 4 || t.shape[0] < 1 || t.shape[0] > (1 << 24) || t.shape[1] < 1 ||
        t.shape[1] > 64 || t.shape[2] < 1 || t.shape[2] > 4096 || t.shape[3] < 1 ||
        t.shape[3] > 4096) {
        err = dp_err_set(DP_ERR_FORMAT, "%s: x_adv has a bad shape", path);
        goto done;
    }
    if (!(s = perf_samples_new((int)t.shape[0], (int)t.shape[1], (int)t.shape[2],
                               (int)t.shape[3]))) {
        err = dp_err_set(DP_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    int64_t n = s->n;
    if ((err = st_read_f32(f, "x_adv", 4, t.shape, s->xadv)) ||
        (err = st_read_i64(f, "seed_index", 1, &n, s->seed_index)) ||
        (err = st_read_f32(f, "delta_norm", 1, &n, s->delta_norm)) ||
        (err = st_read_f32(f, "psnr", 1, &n, s->psnr)) ||
        (err = st_read(f, "flops_seed", ST_F64, 1, &n, s->flops_seed)) ||
        (err = st_read(f, "flops_adv", ST_F64, 1, &n, s->flops_adv)))
        goto done;
    s->method = (perf_method_t)perf_method_parse(method);
    s->budget.norm = (perf_norm_t)perf_norm_parse(norm);
    s->budget.eps = (float)eps;
    s->budget.l2_at_most = (int)atm;
    s->flops_full = full;
    s->seconds = secs;
    snprintf(s->model, sizeof s->model, "%s", model);
    snprintf(s->blas_core, sizeof s->blas_core, "%s", core ? core : "unknown");
    snprintf(s->gemm_path, sizeof s->gemm_path, "%s", gpath ? gpath : "unknown");
    if ((err = check_samples(s, path, DP_ERR_FORMAT, ""))) goto done;
    *out = s;
    s = NULL;
done:
    perf_samples_destroy(&s);
    st_close(&f);
    return err;
}

typedef struct measure_job {
    const float *x;
    perf_samples_t *s;
    int shift; /* a part's index i is input i - shift (parts made for shift + n) */
} measure_job_t;

static dp_err_t measure_part(const perf_part_t *pt, void *arg)
{
    const measure_job_t *j = arg;
    perf_samples_t *s = j->s;
    size_t d = (size_t)s->c * s->h * s->w;
    int lo = pt->i0 - j->shift, hi = pt->i0 + pt->n - j->shift;
    if (lo < 0) lo = 0;
    if (hi > s->n) hi = s->n;
    for (int i = lo; i < hi && !perf_part_stopped(pt); i++) {
        const float *xi = j->x + (size_t)i * d, *ai = s->xadv + (size_t)i * d;
        adnn_trace_t t;
        adnn_forward_adaptive(pt->m, xi, &t);
        s->flops_seed[i] = t.flops_ref;
        adnn_forward_adaptive(pt->m, ai, &t);
        s->flops_adv[i] = t.flops_ref;
        s->delta_norm[i] = perf_budget_norm(s->budget.norm, xi, ai, d);
        s->psnr[i] = (float)perf_psnr(xi, ai, d);
    }
    return DP_OK;
}

/* perf_samples_measure on workers made for shift + s->n seeds of m. */
static dp_err_t measure(perf_workers_t *w, adnn_model_t *m, const float *x, perf_samples_t *s,
                        int shift)
{
    s->flops_full = adnn_flops_full(m, 0);
    snprintf(s->blas_core, sizeof s->blas_core, "%s", nn_blas_corename());
    snprintf(s->gemm_path, sizeof s->gemm_path, "%s", nn_gemm_path_name(nn_gemm_get_path()));
    measure_job_t j = {x, s, shift};
    return perf_workers_run(w, measure_part, &j);
}

dp_err_t perf_samples_measure(adnn_model_t *m, const float *x, perf_samples_t *s, int workers)
{
    perf_workers_t *w = NULL;
    dp_err_t err = perf_workers_new(m, workers, s->n, 1, &w);
    if (!err) err = measure(w, m, x, s, 0);
    perf_workers_destroy(&w);
    return err;
}

static void fill_header(adnn_model_t *m, const perf_budget_t *b, perf_method_t meth,
                        perf_samples_t *s)
{
    s->method = meth;
    s->budget = *b;
    /* whole characters: a name cut inside one could not be saved */
    dp_utf8_copy(s->model, sizeof s->model, adnn_model_spec(m)->name);
    if (!s->model[0])
        dp_utf8_copy(s->model, sizeof s->model, adnn_family_name(adnn_model_spec(m)->family));
}

/* ------------------------------------------------------------- DeepPerform */

dp_err_t perf_generate(perf_gen_t *g, adnn_model_t *m, const perf_budget_t *b, const float *x,
                       perf_samples_t *s, int workers)
{
    const perf_gen_config_t *c = perf_gen_config(g);
    size_t d = (size_t)s->c * s->h * s->w;
    if (c->c != s->c || c->h != s->h || c->w != s->w)
        return dp_err_set(DP_ERR_MISMATCH, "perf_generate: generator is %dx%dx%d, seeds %dx%dx%d",
                          c->c, c->h, c->w, s->c, s->h, s->w);
    int B = c->max_batch;
    float *gb = malloc((size_t)B * d * sizeof(float)), *pad = malloc((size_t)B * d * sizeof(float));
    if (!gb || !pad) {
        free(gb);
        free(pad);
        return dp_err_set(DP_ERR_NOMEM, "perf_generate: out of memory");
    }
    fill_header(m, b, PERF_METHOD_DEEPPERFORM, s);
    double t0 = dp_clock_s();
    for (int i = 0; i < s->n; i += B) {
        int nb = s->n - i < B ? s->n - i : B;
        const float *xi = x + (size_t)i * d;
        if (nb < B) { /* pad the last batch: every input runs in a full batch */
            memcpy(pad, xi, (size_t)nb * d * sizeof(float));
            for (int j = nb; j < B; j++) memcpy(pad + (size_t)j * d, xi, d * sizeof(float));
            xi = pad;
        }
        perf_gen_forward(g, xi, xi == pad ? B : nb, gb, 0);
        perf_project(b, gb, gb, nb, d);
        perf_apply_budget(b, x + (size_t)i * d, gb, s->xadv + (size_t)i * d, nb, d);
    }
    s->seconds = dp_clock_s() - t0;
    free(gb);
    free(pad);
    return perf_samples_measure(m, x, s, workers);
}

/* ------------------------------------------------------------- random */

dp_err_t perf_random(adnn_model_t *m, const perf_budget_t *b, uint64_t seed, const float *x,
                     perf_samples_t *s, int workers)
{
    size_t d = (size_t)s->c * s->h * s->w;
    float *delta = malloc(d * sizeof(float));
    if (!delta) return dp_err_set(DP_ERR_NOMEM, "perf_random: out of memory");
    fill_header(m, b, PERF_METHOD_RANDOM, s);
    double t0 = dp_clock_s();
    for (int i = 0; i < s->n; i++) {
        dp_rng_t r;
        dp_rng_seed(&r, seed * 0x9e3779b97f4a7c15ULL ^ (uint64_t)s->seed_index[i]);
        perf_random_delta(b, &r, delta, d);
        perf_apply_budget(b, x + (size_t)i * d, delta, s->xadv + (size_t)i * d, 1, d);
    }
    s->seconds = dp_clock_s() - t0;
    free(delta);
    return perf_samples_measure(m, x, s, workers);
}

/* Projection of a batch of deltas onto the budget, "at most eps" for L2
 * (a baseline must stay inside the ball; it need not sit on its surface). */
static void project_ball(const perf_budget_t *b, float *delta, int n, size_t d)
{
    perf_budget_t bb = *b;
    bb.l2_at_most = 1;
    bb.linf_scaled = 0;
    perf_project(&bb, delta, delta, n, d);
}

/* ------------------------------------------------------------- ILFO */

perf_ilfo_config_t perf_ilfo_config_default(void)
{
    perf_ilfo_config_t c = {
        .iters = 300, .lr = 0.01f, .weight = 1e6f, .margin = 0.5f, .batch = 16, .workers = 1};
    return c;
}

/* dL/dp of weight * sum_k relu(margin - p_k), per input (not averaged). */
static void ilfo_dloss(const float *p, int n, int k, float *dp, void *arg)
{
    const perf_ilfo_config_t *c = arg;
    for (size_t i = 0; i < (size_t)n * k; i++) dp[i] = p[i] < c->margin ? -c->weight : 0.0f;
}

/* What every part of a method's run shares (read only, but for the part's
 * own range of s). */
typedef struct method_job {
    const perf_budget_t *b;
    const void *cfg; /* perf_ilfo_config_t or perf_sloth_config_t */
    const float *x;
    perf_samples_t *s;
    /* progress: seeds finished by every part; part 0 (on the caller's
     * thread) reports at most every `every` seconds (0: never) through the
     * hooks, and asks them whether to stop: then every part stops at its
     * next batch */
    const char *name;
    double every;
    const perf_hooks_t *hooks;
    atomic_int done, cancelled;
    double t0, last;
    int first_slot; /* a part's index v is input v - first_slot */
} method_job_t;

/* The inputs of the batch at a part's index v0 (a multiple of B): [lo, hi)
 * at slots [slot, slot + hi - lo). 0 when it holds none. */
static int batch_span(const method_job_t *j, int v0, int B, int *lo, int *hi, int *slot)
{
    *lo = v0 - j->first_slot < 0 ? 0 : v0 - j->first_slot;
    *hi = v0 + B - j->first_slot < j->s->n ? v0 + B - j->first_slot : j->s->n;
    *slot = *lo + j->first_slot - v0;
    return *lo < *hi;
}

/* A full batch of B inputs: x[lo, hi) at slots [slot, ...), copies of x[lo]
 * in the others (their results dropped). x itself when it is one already. */
static const float *full_batch(const float *x, int lo, int hi, int slot, int B, size_t d, float *xb)
{
    if (slot == 0 && hi - lo == B) return x + (size_t)lo * d;
    for (int q = 0; q < B; q++) {
        int i = q >= slot && q - slot < hi - lo ? lo + q - slot : lo;
        memcpy(xb + (size_t)q * d, x + (size_t)i * d, d * sizeof(float));
    }
    return xb;
}

static dp_err_t check_slot(const char *name, int first_slot, int batch)
{
    int B = batch > 0 ? batch : 1;
    if (first_slot < 0 || first_slot >= B)
        return dp_err_set(DP_ERR_INVALID, "%s: first_slot %d is outside [0, %d)", name, first_slot,
                          B);
    return DP_OK;
}

/* 1 when the part should stop: another part failed, or a cancel. */
static int method_stopped(method_job_t *j, const perf_part_t *pt)
{
    return perf_part_stopped(pt) || atomic_load(&j->cancelled);
}

/* After a part finished nb seeds: counts them, and part 0 says how far the
 * whole run is ("ilfo: 320/1000 seeds, 41 s, about 87 s left") and polls
 * the cancel hook. */
static void method_progress(method_job_t *j, const perf_part_t *pt, int nb)
{
    int done = atomic_fetch_add(&j->done, nb) + nb;
    if (pt->index != 0) return;
    if (perf_hooks_cancelled(j->hooks) != PERF_GO_ON) atomic_store(&j->cancelled, 1);
    if (j->every <= 0 || !j->hooks->progress) return;
    double now = dp_clock_s(), t = now - j->t0;
    if (now - j->last < j->every || done >= j->s->n) return;
    j->last = now;
    char line[160];
    snprintf(line, sizeof line, "%s: %d/%d seeds, %.0f s, about %.0f s left", j->name, done,
             j->s->n, t, t * (j->s->n - done) / (done > 0 ? done : 1));
    j->hooks->progress(j->hooks->ctx, j->name, (uint64_t)done, (uint64_t)j->s->n, line);
}

/* ILFO on the seeds of one part, batch by batch. */
static dp_err_t ilfo_part(const perf_part_t *pt, void *arg)
{
    method_job_t *j = arg;
    const perf_budget_t *b = j->b;
    const perf_ilfo_config_t *cfg = j->cfg;
    perf_samples_t *s = j->s;
    adnn_model_t *m = pt->m;
    size_t d = (size_t)s->c * s->h * s->w;
    int B = cfg->batch > 0 ? cfg->batch : 1, K = adnn_pk_count(m), end = pt->i0 + pt->n;
    float *delta = malloc((size_t)B * d * sizeof(float)),
          *xa = malloc((size_t)B * d * sizeof(float)), *gx = malloc((size_t)B * d * sizeof(float)),
          *p = malloc((size_t)B * (K > 0 ? K : 1) * sizeof(float)),
          *xb = malloc((size_t)B * d * sizeof(float));
    dp_err_t err = DP_OK;
    if (!delta || !xa || !gx || !p || !xb) {
        err = dp_err_set(DP_ERR_NOMEM, "perf_ilfo: out of memory");
        goto done;
    }
    for (int v0 = pt->i0; v0 < end && !method_stopped(j, pt); v0 += B) {
        int lo, hi, slot, nb = B;
        if (!batch_span(j, v0, B, &lo, &hi, &slot)) continue;
        const float *xi = full_batch(j->x, lo, hi, slot, B, d, xb);
        size_t len = (size_t)nb * d;
        memset(delta, 0, len * sizeof(float)); /* delta starts at 0 */
        for (int it = 0; it < cfg->iters; it++) {
            perf_apply(xi, delta, xa, len);
            /* the gradient is recomputed from zero every iteration */
            if ((err = adnn_pk_vjp(m, xa, nb, ilfo_dloss, (void *)cfg, p, gx))) goto done;
            perf_apply_backward(xi, delta, gx, gx, len);
            for (int q0 = 0; q0 < nb; q0++) { /* + d||delta||_p / d delta */
                float *dj = delta + (size_t)q0 * d, *gj = gx + (size_t)q0 * d;
                double nrm = perf_norm_of(b->norm, dj, d);
                if (nrm <= 0) continue;
                if (b->norm == PERF_NORM_L2) {
                    for (size_t q = 0; q < d; q++) gj[q] += (float)(dj[q] / nrm);
                } else {
                    for (size_t q = 0; q < d; q++)
                        if (fabs((double)dj[q]) == nrm) {
                            gj[q] += dj[q] > 0 ? 1.0f : -1.0f;
                            break;
                        }
                }
            }
            for (size_t q = 0; q < len; q++) delta[q] -= cfg->lr * gx[q];
        }
        project_ball(b, delta, nb, d); /* Linf: clamp to [-eps, eps] */
        perf_apply_budget(b, xi + (size_t)slot * d, delta + (size_t)slot * d,
                          s->xadv + (size_t)lo * d, hi - lo, d);
        method_progress(j, pt, hi - lo);
    }
done:
    free(delta);
    free(xa);
    free(gx);
    free(p);
    free(xb);
    return err;
}

/* Runs fn on `workers` parts of s's seeds, whole batches each (the
 * generation, timed: s->seconds is its wall time, the model copies
 * included), then measures on the same workers. */
static dp_err_t run_method(adnn_model_t *m, int workers, int batch, perf_part_fn fn,
                           method_job_t *j)
{
    perf_workers_t *w = NULL;
    double t0 = dp_clock_s();
    j->t0 = j->last = t0;
    atomic_init(&j->done, 0);
    atomic_init(&j->cancelled, perf_hooks_cancelled(j->hooks) != PERF_GO_ON);
    dp_err_t err = perf_workers_new(m, workers, j->first_slot + j->s->n, batch > 0 ? batch : 1, &w);
    if (!err) err = perf_workers_run(w, fn, j);
    if (!err && atomic_load(&j->cancelled))
        err = dp_err_set(DP_ERR_CANCELLED, "%s: cancelled after %d of %d seeds", j->name,
                         atomic_load(&j->done), j->s->n);
    if (!err) {
        j->s->seconds = dp_clock_s() - t0;
        err = measure(w, m, j->x, j->s, j->first_slot);
    }
    perf_workers_destroy(&w);
    return err;
}

dp_err_t perf_ilfo(adnn_model_t *m, const perf_budget_t *b, const perf_ilfo_config_t *cfg,
                   const float *x, perf_samples_t *s)
{
    dp_err_t err = check_slot("perf_ilfo", cfg->first_slot, cfg->batch);
    if (err) return err;
    fill_header(m, b, PERF_METHOD_ILFO, s);
    method_job_t j = {.b = b,
                      .cfg = cfg,
                      .x = x,
                      .s = s,
                      .name = "ilfo",
                      .every = cfg->progress_every,
                      .hooks = &cfg->hooks,
                      .first_slot = cfg->first_slot};
    return run_method(m, cfg->workers, cfg->batch, ilfo_part, &j);
}

/* ------------------------------------------------------------- DeepSloth */

perf_sloth_config_t perf_sloth_config_default(void)
{
    perf_sloth_config_t c = {.linf_steps = 30,
                             .linf_step = 0.002f,
                             .linf_start = 0.002f,
                             .l2_steps = 550,
                             .l2_lr_max = 1.0f,
                             .l2_lr_min = 0.01f,
                             .batch = 16,
                             .seed = 1,
                             .workers = 1};
    return c;
}

/* CE(uniform, softmax(z_k)) summed over the internal exits, per input; its
 * gradient into dl (n, E+1, K) (final classifier rows 0). */
static double sloth_loss(const float *logits, int n, int E, int K, float *dl)
{
    double l = 0;
    memset(dl, 0, (size_t)n * (E + 1) * K * sizeof(float));
    for (int i = 0; i < n; i++)
        for (int k = 0; k < E; k++) {
            const float *z = logits + ((size_t)i * (E + 1) + k) * K;
            float *g = dl + ((size_t)i * (E + 1) + k) * K;
            double mx = z[0], sum = 0;
            for (int j = 1; j < K; j++) mx = z[j] > mx ? z[j] : mx;
            for (int j = 0; j < K; j++) sum += exp((double)z[j] - mx);
            double lse = mx + log(sum);
            for (int j = 0; j < K; j++) {
                l += (lse - z[j]) / K;
                g[j] = (float)(exp((double)z[j] - lse) - 1.0 / K);
            }
        }
    return l;
}

/* DeepSloth on the seeds of one part, batch by batch. */
static dp_err_t sloth_part(const perf_part_t *pt, void *arg)
{
    method_job_t *j = arg;
    const perf_budget_t *b = j->b;
    const perf_sloth_config_t *cfg = j->cfg;
    perf_samples_t *s = j->s;
    adnn_model_t *m = pt->m;
    const adnn_spec_t *sp = adnn_model_spec(m);
    size_t d = (size_t)s->c * s->h * s->w;
    int B = cfg->batch > 0 ? cfg->batch : 1, E = sp->nexits, K = sp->num_classes,
        end = pt->i0 + pt->n;
    size_t lsz = (size_t)B * (E + 1) * K;
    float *delta = malloc((size_t)B * d * sizeof(float)),
          *xa = malloc((size_t)B * d * sizeof(float)), *gx = malloc((size_t)B * d * sizeof(float)),
          *lg = malloc(lsz * sizeof(float)), *dl = malloc(lsz * sizeof(float)),
          *xb = malloc((size_t)B * d * sizeof(float));
    dp_err_t err = DP_OK;
    if (!delta || !xa || !gx || !lg || !dl || !xb) {
        err = dp_err_set(DP_ERR_NOMEM, "perf_deepsloth: out of memory");
        goto done;
    }
    int linf = b->norm == PERF_NORM_LINF;
    int steps = linf ? cfg->linf_steps : cfg->l2_steps;
    for (int v0 = pt->i0; v0 < end && !method_stopped(j, pt); v0 += B) {
        int lo, hi, slot, nb = B;
        if (!batch_span(j, v0, B, &lo, &hi, &slot)) continue;
        const float *xi = full_batch(j->x, lo, hi, slot, B, d, xb);
        size_t len = (size_t)nb * d;
        if (linf) {
            for (int q0 = 0; q0 < nb; q0++) { /* random start, per seed index */
                int i = q0 >= slot && q0 - slot < hi - lo ? lo + q0 - slot : lo;
                dp_rng_t r;
                dp_rng_seed(&r, cfg->seed * 0x9e3779b97f4a7c15ULL ^ (uint64_t)s->seed_index[i]);
                for (size_t q = 0; q < d; q++)
                    delta[(size_t)q0 * d + q] =
                        cfg->linf_start * (2.0f * dp_rng_uniform(&r) - 1.0f);
            }
            project_ball(b, delta, nb, d);
        } else {
            memset(delta, 0, len * sizeof(float));
        }
        for (int it = 0; it < steps; it++) {
            perf_apply(xi, delta, xa, len);
            if ((err = adnn_eval_batch(m, xa, nb, lg))) goto done;
            sloth_loss(lg, nb, E, K, dl);
            if ((err = adnn_exits_backward(m, dl, nb, gx))) goto done;
            perf_apply_backward(xi, delta, gx, gx, len);
            if (linf) {
                for (size_t q = 0; q < len; q++)
                    delta[q] -= cfg->linf_step * (gx[q] > 0 ? 1.0f : (gx[q] < 0 ? -1.0f : 0.0f));
            } else {
                double lr = cfg->l2_lr_min + 0.5 * (cfg->l2_lr_max - cfg->l2_lr_min) *
                                                 (1.0 + cos(M_PI * it / (double)steps));
                for (size_t q = 0; q < len; q++) delta[q] -= (float)(lr * gx[q]);
            }
            project_ball(b, delta, nb, d);
        }
        perf_apply_budget(b, xi + (size_t)slot * d, delta + (size_t)slot * d,
                          s->xadv + (size_t)lo * d, hi - lo, d);
        method_progress(j, pt, hi - lo);
    }
done:
    free(delta);
    free(xa);
    free(gx);
    free(lg);
    free(dl);
    free(xb);
    return err;
}

dp_err_t perf_deepsloth(adnn_model_t *m, const perf_budget_t *b, const perf_sloth_config_t *cfg,
                        const float *x, perf_samples_t *s)
{
    const adnn_spec_t *sp = adnn_model_spec(m);
    if (sp->nexits < 1 ||
        (sp->family != ADNN_FAMILY_SDN_RESNET && sp->family != ADNN_FAMILY_SDN_MOBILENET &&
         sp->family != ADNN_FAMILY_RANET))
        return dp_err_set(DP_ERR_UNSUPPORTED, "DeepSloth needs an early-exit network, not %s",
                          adnn_family_name(sp->family));
    dp_err_t err = check_slot("perf_deepsloth", cfg->first_slot, cfg->batch);
    if (err) return err;
    fill_header(m, b, PERF_METHOD_DEEPSLOTH, s);
    method_job_t j = {.b = b,
                      .cfg = cfg,
                      .x = x,
                      .s = s,
                      .name = "deepsloth",
                      .every = cfg->progress_every,
                      .hooks = &cfg->hooks,
                      .first_slot = cfg->first_slot};
    return run_method(m, cfg->workers, cfg->batch, sloth_part, &j);
}
