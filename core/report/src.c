/* The report's source: a campaign's results gathered per cell (model,
 * norm, eps, l2_at_most, method). result.json gives the shard summaries,
 * the sample sets the per-input figures and the images of the worst
 * inputs, measure.json the per-input latencies (and energy where the
 * class has a probe). Collecting from a store reads DeepPerform's sample
 * sets before the baselines', so the baselines' images of DeepPerform's
 * worst seeds are kept without keeping every image. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "report/report_impl.h"

int rpt_method_rank(const char *m)
{
    static const char *const order[] = {"seeds", "deepperform", "random", "ilfo", "deepsloth"};
    for (int i = 0; i < 5; i++)
        if (!strcmp(m, order[i])) return i;
    return 5;
}

static char *dup_(const char *s) { return strdup(s ? s : ""); }

dp_err_t dp_report_src_new(const char *campaign, dp_report_src_t **out)
{
    *out = NULL;
    if (!campaign || !*campaign || strlen(campaign) >= 256)
        return dp_err_set(DP_ERR_INVALID, "report: a campaign id of 1 to 255 bytes is needed");
    dp_report_src_t *s = calloc(1, sizeof *s);
    if (!s) return dp_err_set(DP_ERR_NOMEM, "report: out of memory");
    snprintf(s->campaign, sizeof s->campaign, "%s", campaign);
    s->idpb_exec = 0.9;
    s->budget_ms = s->budget_mj = NAN;
    s->worst_keep = 8;
    *out = s;
    return DP_OK;
}

static void group_free(rpt_group_t *g)
{
    free(g->in);
    free(g->artifacts);
    for (size_t k = 0; k < g->nlat; k++) free(g->lat[k].v);
    free(g->lat);
    for (size_t k = 0; k < g->nmeas; k++) {
        free(g->meas_keys[k]);
        free(g->meas_device[k]);
        free(g->meas_prov[k]);
        free(g->meas_cls[k]);
    }
    free(g->meas_keys);
    free(g->meas_device);
    free(g->meas_prov);
    free(g->meas_cls);
    for (size_t k = 0; k < g->nworst; k++) {
        for (size_t j = 0; j < g->worst[k].nimg; j++) free(g->worst[k].img[j].x);
        free(g->worst[k].img);
    }
}

void dp_report_src_destroy(dp_report_src_t **p)
{
    if (!p || !*p) return;
    dp_report_src_t *s = *p;
    for (size_t i = 0; i < s->ng; i++) group_free(&s->g[i]);
    free(s->g);
    for (size_t i = 0; i < s->nskipped; i++) free(s->skipped[i]);
    free(s->skipped);
    free(s->kernels);
    for (size_t i = 0; i < s->nfail; i++) {
        free(s->fail[i].task);
        free(s->fail[i].key);
        free(s->fail[i].state);
        free(s->fail[i].reason);
    }
    free(s->fail);
    free(s->store_uri);
    free(s->dataset_uri);
    free(s);
    *p = NULL;
}

void dp_report_src_set_seeds(dp_report_src_t *s, const dp_dataset_t *test, const char *uri)
{
    s->test = test;
    free(s->dataset_uri);
    s->dataset_uri = uri ? strdup(uri) : NULL;
}

void dp_report_src_set_threshold(dp_report_src_t *s, double idpb_exec)
{
    if (isfinite(idpb_exec) && idpb_exec > 0) s->idpb_exec = idpb_exec;
}

void dp_report_src_set_device_budgets(dp_report_src_t *s, double latency_ms, double energy_mj)
{
    s->budget_ms = isfinite(latency_ms) && latency_ms > 0 ? latency_ms : NAN;
    s->budget_mj = isfinite(energy_mj) && energy_mj > 0 ? energy_mj : NAN;
}

void dp_report_src_set_store_uri(dp_report_src_t *s, const char *uri)
{
    free(s->store_uri);
    s->store_uri = uri ? strdup(uri) : NULL;
}

size_t dp_report_src_count(const dp_report_src_t *s)
{
    size_t n = s->used + s->nskipped + s->nfail;
    for (size_t i = 0; i < s->ng; i++) n += s->g[i].nart;
    return n;
}

static int same_eps(double a, double b) { return (float)a == (float)b; }

const rpt_group_t *rpt_group_find(const dp_report_src_t *s, const char *model, const char *norm,
                                  double eps, int l2_at_most, const char *method)
{
    const int seeds = !strcmp(method, "seeds");
    for (size_t i = 0; i < s->ng; i++) {
        const rpt_group_t *g = &s->g[i];
        if (strcmp(g->model, model) || strcmp(g->method, method)) continue;
        if (seeds ||
            (!strcmp(g->norm, norm) && same_eps(g->eps, eps) && g->l2_at_most == l2_at_most))
            return g;
    }
    return NULL;
}

rpt_group_t *rpt_group_of(dp_report_src_t *s, const char *model, const char *norm, double eps,
                          int l2_at_most, const char *method)
{
    const rpt_group_t *f = rpt_group_find(s, model, norm, eps, l2_at_most, method);
    if (f) return (rpt_group_t *)f;
    if (s->ng == s->capg) {
        size_t cap = s->capg ? s->capg * 2 : 16;
        rpt_group_t *g = realloc(s->g, cap * sizeof *g);
        if (!g) return NULL;
        s->g = g, s->capg = cap;
    }
    rpt_group_t *g = &s->g[s->ng++];
    memset(g, 0, sizeof *g);
    const int seeds = !strcmp(method, "seeds");
    snprintf(g->model, sizeof g->model, "%s", model);
    snprintf(g->norm, sizeof g->norm, "%s", seeds ? "" : norm);
    snprintf(g->method, sizeof g->method, "%s", method);
    g->eps = seeds ? 0 : (double)(float)eps;
    g->l2_at_most = seeds ? 0 : l2_at_most != 0;
    g->within = 1;
    return g;
}

static int skip(dp_report_src_t *s, const char *key)
{
    char **k = realloc(s->skipped, (s->nskipped + 1) * sizeof *k);
    if (!k) return -1;
    s->skipped = k;
    if (!(k[s->nskipped] = dup_(key))) return -1;
    s->nskipped++;
    return 0;
}

static void kernel_seen(dp_report_src_t *s, const tj_val_t *r)
{
    const tj_val_t *p = tj_get(r, "provenance");
    if (!p) return;
    char k[96];
    snprintf(k, sizeof k, "%s/%s/%d", tj_get_str(p, "blas_core", "?"),
             tj_get_str(p, "gemm_path", "?"), (int)tj_get_num(p, "threads", 0));
    for (size_t i = 0; i < s->nkernels; i++)
        if (!strcmp(s->kernels[i], k)) return;
    char(*ks)[96] = realloc(s->kernels, (s->nkernels + 1) * sizeof *ks);
    if (!ks) return;
    s->kernels = ks;
    snprintf(s->kernels[s->nkernels++], sizeof ks[0], "%s", k);
}

static rpt_lats_t *lats_of(rpt_group_t *g, const char *cls)
{
    for (size_t i = 0; i < g->nlat; i++)
        if (!strcmp(g->lat[i].cls, cls)) return &g->lat[i];
    rpt_lats_t *l = realloc(g->lat, (g->nlat + 1) * sizeof *l);
    if (!l) return NULL;
    g->lat = l;
    l = &g->lat[g->nlat++];
    memset(l, 0, sizeof *l);
    snprintf(l->cls, sizeof l->cls, "%s", cls);
    return l;
}

/* Energy of one measured input in mJ, from whichever field the measurer
 * wrote (NaN when none). */
static double energy_of(const tj_val_t *in)
{
    double e = tj_get_num(in, "energy_median_mj", NAN);
    if (isnan(e)) e = tj_get_num(in, "energy_mj", NAN);
    if (isnan(e)) e = tj_get_num(in, "energy_j", NAN) * 1e3;
    if (isnan(e)) e = tj_get_num(in, "energy_median_j", NAN) * 1e3;
    return e;
}

static char *val_text(const tj_val_t *v)
{
    if (!v) return strdup("null");
    tj_writer_t w;
    tj_init(&w);
    rpt_write_val(&w, v);
    return tj_take(&w);
}

static int add_measure(rpt_group_t *g, const char *key, const char *cls, const tj_val_t *m)
{
    const tj_val_t *in = tj_get(m, "inputs");
    if (!in || in->type != TJ_ARR) return -1;
    rpt_lats_t *l = lats_of(g, cls);
    if (!l) return -1;
    if (l->n + in->n > l->cap) {
        size_t cap = l->cap ? l->cap : 64;
        while (cap < l->n + in->n) cap *= 2;
        rpt_meas_t *v = realloc(l->v, cap * sizeof *v);
        if (!v) return -1;
        l->v = v, l->cap = cap;
    }
    for (size_t i = 0; i < in->n; i++) {
        const tj_val_t *x = &in->items[i];
        double ms = tj_get_num(x, "latency_median_ms", NAN);
        if (!isfinite(ms)) continue;
        l->v[l->n++] =
            (rpt_meas_t){(int64_t)tj_get_num(x, "index", -1), ms, tj_get_num(x, "flops", NAN),
                         tj_get_num(x, "exec_fraction", NAN), energy_of(x)};
    }
    size_t k = g->nmeas;
    char **a = realloc(g->meas_keys, (k + 1) * sizeof *a);
    if (!a) return -1;
    g->meas_keys = a;
    char **b = realloc(g->meas_device, (k + 1) * sizeof *b);
    if (!b) return -1;
    g->meas_device = b;
    char **c = realloc(g->meas_prov, (k + 1) * sizeof *c);
    if (!c) return -1;
    g->meas_prov = c;
    char **d = realloc(g->meas_cls, (k + 1) * sizeof *d);
    if (!d) return -1;
    g->meas_cls = d;
    char mk[600];
    size_t base = strlen(key) >= strlen("result.json") ? strlen(key) - strlen("result.json") : 0;
    snprintf(mk, sizeof mk, "%.*smeasure.json", (int)base, key);
    a[k] = strdup(mk), b[k] = val_text(tj_get(m, "device")),
    c[k] = val_text(tj_get(m, "provenance"));
    d[k] = strdup(cls);
    g->nmeas++;
    return a[k] && b[k] && c[k] && d[k] ? 0 : -1;
}

/* 0 used, 1 not usable (skipped), -1 out of memory. */
static int add_one(dp_report_src_t *s, const char *key, const char *result, const char *measure)
{
    tj_val_t r, m;
    memset(&m, 0, sizeof m);
    if (!result || tj_parse(result, strlen(result), &r)) return 1;
    int rc = 1;
    const char *kind = tj_get_str(&r, "kind", ""), *model = tj_get_str(&r, "model", "");
    const char *norm = tj_get_str(&r, "norm", ""), *method = tj_get_str(&r, "method", "");
    double eps = tj_get_num(&r, "eps", 0);
    int atm = tj_get_num(&r, "l2_at_most", 0) != 0;
    if (!*model || strlen(model) >= RPT_NAME) goto done;
    kernel_seen(s, &r);
    if (!strcmp(kind, "train")) {
        rpt_group_t *g = rpt_group_of(s, model, norm, eps, atm, "deepperform");
        if (!g) goto oom;
        g->has_train = 1;
        g->epochs_run = (int)tj_get_num(&r, "epochs_run", 0);
        g->best_epoch = (int)tj_get_num(&r, "best_epoch", 0);
        g->resumed_from = (int)tj_get_num(&r, "resumed_from", 0);
        g->early_stopped = tj_get_num(&r, "early_stopped", 0) != 0;
        g->best_exec = tj_get_num(&r, "best_exec", NAN);
        g->train_seconds = tj_get_num(&r, "seconds", NAN);
        rc = 0;
    } else if (!strcmp(kind, "generate") || !strcmp(kind, "baseline")) {
        double n = tj_get_num(&r, "n", 0);
        if (!(n > 0) || !*method || strlen(method) >= 16) goto done;
        rpt_group_t *g = rpt_group_of(s, model, norm, eps, atm, method);
        if (!g) goto oom;
        g->n += (size_t)n;
        g->shards++;
        g->s_iflops += n * tj_get_num(&r, "iflops_mean", NAN);
        g->s_exec_seed += n * tj_get_num(&r, "exec_fraction_seed_mean", NAN);
        g->s_exec += n * tj_get_num(&r, "exec_fraction_mean", NAN);
        g->s_psnr += n * tj_get_num(&r, "psnr_mean", NAN);
        g->s_idpb += n * tj_get_num(&r, "idpb_rate", NAN);
        g->seconds += tj_get_num(&r, "seconds", NAN);
        double mx = tj_get_num(&r, "iflops_max", NAN), nm = tj_get_num(&r, "norm_max", NAN);
        if (g->shards == 1 || mx > g->max_iflops) g->max_iflops = mx;
        if (g->shards == 1 || nm > g->norm_max) g->norm_max = nm;
        if (!tj_get_num(&r, "within_budget", 0)) g->within = 0;
        rc = 0;
    } else if (!strcmp(kind, "measure")) {
        const char *cls = tj_get_str(&r, "device_class", "");
        if (!*method || strlen(method) >= 16 || !*cls || strlen(cls) >= RPT_NAME) goto done;
        if (!measure || tj_parse(measure, strlen(measure), &m)) goto done;
        rpt_group_t *g = rpt_group_of(s, model, norm, eps, atm, method);
        if (!g) goto oom;
        rc = add_measure(g, key, cls, &m) ? -1 : 0;
    }
    goto done;
oom:
    rc = -1;
done:
    tj_val_free(&r);
    tj_val_free(&m);
    return rc;
}

dp_err_t dp_report_src_add_result(dp_report_src_t *s, const char *key, const char *result,
                                  const char *measure)
{
    int rc = add_one(s, key ? key : "", result, measure);
    if (rc == 0) s->used++;
    if (rc == 1 && skip(s, key) == 0) return DP_OK;
    if (rc == 0) return DP_OK;
    return dp_err_set(DP_ERR_NOMEM, "report: out of memory");
}

static float *copy_image(const perf_samples_t *set, int i)
{
    size_t d = (size_t)set->c * set->h * set->w;
    float *x = malloc(d * sizeof *x);
    if (x) memcpy(x, set->xadv + (size_t)i * d, d * sizeof *x);
    return x;
}

static int add_img(rpt_worst_t *w, const char *method, const char *key, float exec, float *x)
{
    for (size_t j = 0; j < w->nimg; j++)
        if (!strcmp(w->img[j].method, method)) {
            free(x); /* a second set with the same seed: the first stands */
            return 0;
        }
    rpt_img_t *im = realloc(w->img, (w->nimg + 1) * sizeof *im);
    if (!im) {
        free(x);
        return -1;
    }
    w->img = im;
    im = &w->img[w->nimg++];
    memset(im, 0, sizeof *im);
    snprintf(im->method, sizeof im->method, "%s", method);
    snprintf(im->key, sizeof im->key, "%s", key);
    im->exec = exec, im->x = x;
    return 0;
}

/* DeepPerform's worst inputs of g (highest executed fraction of x'). */
static int keep_worst(dp_report_src_t *s, rpt_group_t *g, const char *key,
                      const perf_samples_t *set, int i, float exec)
{
    size_t slot = g->nworst;
    if (g->nworst == (size_t)s->worst_keep) {
        slot = 0;
        for (size_t k = 1; k < g->nworst; k++)
            if (g->worst[k].exec < g->worst[slot].exec) slot = k;
        if (!(exec > g->worst[slot].exec)) return 0;
        for (size_t j = 0; j < g->worst[slot].nimg; j++) free(g->worst[slot].img[j].x);
        free(g->worst[slot].img);
    } else {
        g->nworst++;
    }
    rpt_worst_t *w = &g->worst[slot];
    memset(w, 0, sizeof *w);
    w->index = set->seed_index[i], w->exec = exec;
    float *x = copy_image(set, i);
    return x ? add_img(w, "deepperform", key, exec, x) : -1;
}

dp_err_t dp_report_src_add_samples(dp_report_src_t *s, const char *key, const perf_samples_t *set)
{
    const char *method = perf_method_name(set->method);
    if (!set->model[0] || set->n <= 0) return DP_OK;
    rpt_group_t *g = rpt_group_of(s, set->model, perf_norm_name(set->budget.norm), set->budget.eps,
                                  set->budget.l2_at_most, method);
    if (!g) return dp_err_set(DP_ERR_NOMEM, "report: out of memory");
    if (g->nin + (size_t)set->n > g->capin) {
        size_t cap = g->capin ? g->capin : 64;
        while (cap < g->nin + (size_t)set->n) cap *= 2;
        rpt_input_t *v = realloc(g->in, cap * sizeof *v);
        if (!v) return dp_err_set(DP_ERR_NOMEM, "report: out of memory");
        g->in = v, g->capin = cap;
    }
    char(*a)[512] = realloc(g->artifacts, (g->nart + 1) * sizeof *a);
    if (!a) return dp_err_set(DP_ERR_NOMEM, "report: out of memory");
    g->artifacts = a;
    snprintf(a[g->nart++], sizeof a[0], "%s", key);
    g->c = set->c, g->h = set->h, g->w = set->w;
    const double full = set->flops_full > 0 ? set->flops_full : NAN;
    const rpt_group_t *dp = NULL;
    if (set->method != PERF_METHOD_DEEPPERFORM)
        dp = rpt_group_find(s, set->model, perf_norm_name(set->budget.norm), set->budget.eps,
                            set->budget.l2_at_most, "deepperform");
    for (int i = 0; i < set->n; i++) {
        rpt_input_t *in = &g->in[g->nin++];
        in->index = set->seed_index[i];
        in->exec = (float)(set->flops_adv[i] / full);
        in->exec_seed = (float)(set->flops_seed[i] / full);
        in->iflops = set->flops_seed[i] > 0
                         ? (float)((set->flops_adv[i] / set->flops_seed[i] - 1) * 100)
                         : NAN;
        in->psnr = set->psnr[i];
        in->norm = set->delta_norm[i];
        if (set->method == PERF_METHOD_DEEPPERFORM) {
            if (keep_worst(s, g, key, set, i, in->exec))
                return dp_err_set(DP_ERR_NOMEM, "report: out of memory");
        } else if (dp) {
            for (size_t k = 0; k < dp->nworst; k++) {
                rpt_worst_t *w = (rpt_worst_t *)&dp->worst[k];
                if (w->index != in->index) continue;
                float *x = copy_image(set, i);
                if (!x || add_img(w, method, key, in->exec, x))
                    return dp_err_set(DP_ERR_NOMEM, "report: out of memory");
            }
        }
    }
    return DP_OK;
}

dp_err_t dp_report_src_add_failure(dp_report_src_t *s, const char *task, const char *key,
                                   const char *state, int attempts, const char *reason)
{
    rpt_fail_t *f = realloc(s->fail, (s->nfail + 1) * sizeof *f);
    if (!f) return dp_err_set(DP_ERR_NOMEM, "report: out of memory");
    s->fail = f;
    f = &f[s->nfail];
    f->task = dup_(task), f->key = dup_(key), f->state = dup_(state), f->reason = dup_(reason);
    f->attempts = attempts;
    if (!f->task || !f->key || !f->state || !f->reason) {
        free(f->task), free(f->key), free(f->state), free(f->reason);
        return dp_err_set(DP_ERR_NOMEM, "report: out of memory");
    }
    s->nfail++;
    return DP_OK;
}

/* ------------------------------------------------------------- collect */

typedef struct keys {
    char **v;
    size_t n, cap;
    int nomem;
} keys_t;

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static int on_key(const dp_store_info_t *info, void *arg)
{
    keys_t *k = arg;
    if (!ends_with(info->key, "/result.json") && !ends_with(info->key, "/samples.safetensors") &&
        !ends_with(info->key, "/failure.json"))
        return 0;
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 64;
        char **v = realloc(k->v, cap * sizeof *v);
        if (!v) return k->nomem = 1;
        k->v = v, k->cap = cap;
    }
    if (!(k->v[k->n] = strdup(info->key))) return k->nomem = 1;
    k->n++;
    return 0;
}

static int has_key(const keys_t *k, const char *key)
{
    for (size_t i = 0; i < k->n; i++)
        if (!strcmp(k->v[i], key)) return 1;
    return 0;
}

/* Sample sets of DeepPerform first (see the file comment), then by key. */
static int cmp_key(const void *a, const void *b)
{
    const char *x = *(char *const *)a, *y = *(char *const *)b;
    int dx = strstr(x, "/deepperform/") != NULL, dy = strstr(y, "/deepperform/") != NULL;
    if (dx != dy) return dy - dx;
    return strcmp(x, y);
}

static dp_err_t collect_samples(dp_report_src_t *s, dp_store_t *store, const char *scratch,
                                const char *key)
{
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/report-samples-%d.safetensors", scratch,
                         (int)getpid()) >= sizeof path)
        return dp_err_set(DP_ERR_INVALID, "report: scratch path too long: %s", scratch);
    perf_samples_t *set = NULL;
    dp_err_t err = dp_store_get_file(store, key, path);
    if (!err) err = perf_samples_load(path, &set);
    unlink(path);
    if (err == DP_ERR_NOMEM) return err;
    if (err) return skip(s, key) ? dp_err_set(DP_ERR_NOMEM, "report: out of memory") : DP_OK;
    err = dp_report_src_add_samples(s, key, set);
    perf_samples_destroy(&set);
    return err;
}

static dp_err_t collect_failure(dp_report_src_t *s, dp_store_t *store, const char *key)
{
    char *text = NULL;
    size_t len;
    if (dp_store_get_mem(store, key, (void **)&text, &len)) return DP_OK;
    tj_val_t v;
    dp_err_t err = DP_OK;
    if (tj_parse(text, len, &v) == DP_OK) {
        char k[600];
        snprintf(k, sizeof k, "%.*s", (int)(strlen(key) - strlen("/failure.json")), key);
        err = dp_report_src_add_failure(s, tj_get_str(&v, "task_id", ""), k, "failed",
                                        (int)tj_get_num(&v, "attempt", 0),
                                        tj_get_str(&v, "reason", ""));
        tj_val_free(&v);
    }
    free(text);
    return err;
}

dp_err_t dp_report_collect(dp_report_src_t *s, dp_store_t *store, const char *scratch,
                           const char *skip_key, int (*cancel)(void *), void *cancel_arg)
{
    char prefix[300];
    snprintf(prefix, sizeof prefix, "%s/", s->campaign);
    keys_t k = {0};
    dp_err_t err = dp_store_list(store, prefix, on_key, &k);
    if (err) {
        dp_err_set(err, "cannot list the results: %s", dp_err_detail());
        goto done;
    }
    if (k.nomem) {
        err = dp_err_set(DP_ERR_NOMEM, "report: out of memory listing");
        goto done;
    }
    rpt_qsort(k.v, k.n, sizeof *k.v, cmp_key);
    for (size_t i = 0; i < k.n && !err; i++) {
        const char *key = k.v[i];
        if (cancel && cancel(cancel_arg)) {
            err = dp_err_set(DP_ERR_CANCELLED, "report: cancelled");
            break;
        }
        if (skip_key && !strcmp(key, skip_key)) continue;
        if (ends_with(key, "/samples.safetensors")) {
            err = collect_samples(s, store, scratch, key);
            continue;
        }
        if (ends_with(key, "/failure.json")) {
            char rk[600];
            snprintf(rk, sizeof rk, "%.*sresult.json", (int)(strlen(key) - strlen("failure.json")),
                     key);
            if (!has_key(&k, rk)) err = collect_failure(s, store, key);
            continue;
        }
        char *res = NULL, *meas = NULL;
        size_t len;
        if ((err = dp_store_get_mem(store, key, (void **)&res, &len))) {
            dp_err_set(err, "cannot fetch a result: %s", dp_err_detail());
            break;
        }
        if (strstr(res, "\"kind\":\"report\"")) { /* an earlier report's own result */
            free(res);
            continue;
        }
        if (strstr(res, "\"kind\":\"measure\"")) {
            char mk[600];
            snprintf(mk, sizeof mk, "%.*smeasure.json", (int)(strlen(key) - strlen("result.json")),
                     key);
            if (dp_store_get_mem(store, mk, (void **)&meas, &len)) meas = NULL;
        }
        err = dp_report_src_add_result(s, key, res, meas);
        free(res);
        free(meas);
    }
done:
    for (size_t i = 0; i < k.n; i++) free(k.v[i]);
    free(k.v);
    return err;
}
