/* REPORT on results already fetched: every task's result.json (and each
 * MEASURE's measure.json) aggregated per model, budget and method.
 *
 * A cell is (model, norm, eps, l2_at_most, method); the clean seeds are the
 * cells of method "seeds" (no budget). GENERATE and BASELINE shards add up:
 * means weighted by their input counts, maxima, the summed seconds over the
 * summed inputs. TRAIN adds the generator's figures to its deepperform
 * cell. MEASURE adds each input's median latency, per device class; the
 * report gives nearest-rank percentiles across inputs and, where the same
 * seeds were measured clean on the class, I-Latency per input (lat(x') /
 * lat(x) - 1) * 100, mean and max. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "measure/stats.h"
#include "task/task_impl.h"

typedef struct lat {
    int64_t index;
    double ms;
} lat_t;

typedef struct lats {
    char cls[64];
    lat_t *v;
    size_t n, cap;
} lats_t;

typedef struct cell {
    char model[64], norm[8], method[16];
    double eps;
    int l2_at_most;
    /* GENERATE, BASELINE */
    size_t n, shards;
    double s_iflops, max_iflops, s_exec_seed, s_exec, s_psnr, norm_max, seconds, s_idpb;
    int within;
    /* TRAIN */
    int has_train, epochs_run, best_epoch, resumed_from;
    double best_exec, train_seconds;
    /* MEASURE, per device class */
    lats_t *lat;
    size_t nlat;
} cell_t;

typedef struct agg {
    cell_t *c;
    size_t n, cap;
    char (*kernels)[96];
    size_t nkernels;
} agg_t;

static cell_t *cell_of(agg_t *a, const tj_val_t *r, const char *method)
{
    const char *model = tj_get_str(r, "model", ""), *norm = tj_get_str(r, "norm", "");
    int seeds = !strcmp(method, "seeds");
    double eps = seeds ? 0 : tj_get_num(r, "eps", 0);
    int atm = seeds ? 0 : tj_get_num(r, "l2_at_most", 0) != 0;
    if (seeds) norm = "";
    for (size_t i = 0; i < a->n; i++) {
        cell_t *c = &a->c[i];
        if (!strcmp(c->model, model) && !strcmp(c->norm, norm) && !strcmp(c->method, method) &&
            c->eps == eps && c->l2_at_most == atm)
            return c;
    }
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 16;
        cell_t *c = realloc(a->c, cap * sizeof *c);
        if (!c) return NULL;
        a->c = c, a->cap = cap;
    }
    cell_t *c = &a->c[a->n++];
    memset(c, 0, sizeof *c);
    snprintf(c->model, sizeof c->model, "%s", model);
    snprintf(c->norm, sizeof c->norm, "%s", norm);
    snprintf(c->method, sizeof c->method, "%s", method);
    c->eps = eps, c->l2_at_most = atm, c->within = 1;
    return c;
}

static lats_t *lats_of(cell_t *c, const char *cls)
{
    for (size_t i = 0; i < c->nlat; i++)
        if (!strcmp(c->lat[i].cls, cls)) return &c->lat[i];
    lats_t *l = realloc(c->lat, (c->nlat + 1) * sizeof *l);
    if (!l) return NULL;
    c->lat = l;
    l = &c->lat[c->nlat++];
    memset(l, 0, sizeof *l);
    snprintf(l->cls, sizeof l->cls, "%s", cls);
    return l;
}

static int lat_add(lats_t *l, int64_t index, double ms)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        lat_t *v = realloc(l->v, cap * sizeof *v);
        if (!v) return -1;
        l->v = v, l->cap = cap;
    }
    l->v[l->n++] = (lat_t){index, ms};
    return 0;
}

static void kernel_seen(agg_t *a, const tj_val_t *r)
{
    const tj_val_t *p = tj_get(r, "provenance");
    if (!p) return;
    char k[96];
    snprintf(k, sizeof k, "%s/%s/%d", tj_get_str(p, "blas_core", "?"),
             tj_get_str(p, "gemm_path", "?"), (int)tj_get_num(p, "threads", 0));
    for (size_t i = 0; i < a->nkernels; i++)
        if (!strcmp(a->kernels[i], k)) return;
    char(*ks)[96] = realloc(a->kernels, (a->nkernels + 1) * sizeof *ks);
    if (!ks) return;
    a->kernels = ks;
    snprintf(a->kernels[a->nkernels++], sizeof ks[0], "%s", k);
}

/* One result; 0, or -1 when it cannot be used. */
static int add(agg_t *a, const char *result, const char *measure)
{
    tj_val_t r, m;
    memset(&m, 0, sizeof m);
    if (!result || tj_parse(result, strlen(result), &r)) return -1;
    int rc = -1;
    const char *kind = tj_get_str(&r, "kind", "");
    if (!*tj_get_str(&r, "model", "")) goto done;
    kernel_seen(a, &r);
    if (!strcmp(kind, "train")) {
        cell_t *c = cell_of(a, &r, "deepperform");
        if (!c) goto done;
        c->has_train = 1;
        c->epochs_run = (int)tj_get_num(&r, "epochs_run", 0);
        c->best_epoch = (int)tj_get_num(&r, "best_epoch", 0);
        c->resumed_from = (int)tj_get_num(&r, "resumed_from", 0);
        c->best_exec = tj_get_num(&r, "best_exec", NAN);
        c->train_seconds = tj_get_num(&r, "seconds", NAN);
        rc = 0;
    } else if (!strcmp(kind, "generate") || !strcmp(kind, "baseline")) {
        cell_t *c = cell_of(a, &r, tj_get_str(&r, "method", "?"));
        double n = tj_get_num(&r, "n", 0);
        if (!c || !(n > 0)) goto done;
        c->n += (size_t)n;
        c->shards++;
        c->s_iflops += n * tj_get_num(&r, "iflops_mean", NAN);
        c->s_exec_seed += n * tj_get_num(&r, "exec_fraction_seed_mean", NAN);
        c->s_exec += n * tj_get_num(&r, "exec_fraction_mean", NAN);
        c->s_psnr += n * tj_get_num(&r, "psnr_mean", NAN);
        c->s_idpb += n * tj_get_num(&r, "idpb_rate", NAN);
        c->seconds += tj_get_num(&r, "seconds", NAN);
        double mx = tj_get_num(&r, "iflops_max", NAN), nm = tj_get_num(&r, "norm_max", NAN);
        if (c->shards == 1 || mx > c->max_iflops) c->max_iflops = mx;
        if (c->shards == 1 || nm > c->norm_max) c->norm_max = nm;
        if (!tj_get_num(&r, "within_budget", 0)) c->within = 0;
        rc = 0;
    } else if (!strcmp(kind, "measure")) {
        cell_t *c = cell_of(a, &r, tj_get_str(&r, "method", "?"));
        lats_t *l = c ? lats_of(c, tj_get_str(&r, "device_class", "")) : NULL;
        if (!l || !measure || tj_parse(measure, strlen(measure), &m)) goto done;
        const tj_val_t *in = tj_get(&m, "inputs");
        if (!in || in->type != TJ_ARR) goto done;
        for (size_t i = 0; i < in->n; i++)
            if (lat_add(l, (int64_t)tj_get_num(&in->items[i], "index", -1),
                        tj_get_num(&in->items[i], "latency_median_ms", NAN)))
                goto done;
        rc = 0;
    }
done:
    tj_val_free(&r);
    tj_val_free(&m);
    return rc;
}

static int cmp_lat_index(const void *a, const void *b)
{
    int64_t x = ((const lat_t *)a)->index, y = ((const lat_t *)b)->index;
    return (x > y) - (x < y);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int method_rank(const char *m)
{
    static const char *const order[] = {"seeds", "deepperform", "random", "ilfo", "deepsloth"};
    for (int i = 0; i < 5; i++)
        if (!strcmp(m, order[i])) return i;
    return 5;
}

static int cmp_cell(const void *a, const void *b)
{
    const cell_t *x = a, *y = b;
    int k;
    if ((k = strcmp(x->model, y->model))) return k;
    if ((k = strcmp(x->norm, y->norm))) return k;
    if (x->l2_at_most != y->l2_at_most) return x->l2_at_most - y->l2_at_most;
    if (x->eps != y->eps) return x->eps < y->eps ? -1 : 1;
    return method_rank(x->method) - method_rank(y->method);
}

static double rank_pct(const double *sorted, size_t n, double p)
{
    /* the measurer's nearest rank, so the report and measure.json agree */
    return n ? sorted[measure_nearest_rank(n, p / 100.0) - 1] : NAN;
}

/* The latency members of l; seeds (sorted by index, may be NULL) for
 * I-Latency. */
static void json_lats(tj_writer_t *w, const lats_t *l, const lats_t *seeds)
{
    double *v = malloc((l->n ? l->n : 1) * sizeof *v), sum = 0, isum = 0, imax = NAN;
    size_t ni = 0;
    tj_obj(w);
    tj_kstr(w, "device_class", l->cls);
    tj_kint(w, "n", (int64_t)l->n);
    if (v) {
        for (size_t i = 0; i < l->n; i++) v[i] = l->v[i].ms, sum += v[i];
        qsort(v, l->n, sizeof *v, cmp_double);
        tj_knum(w, "latency_mean_ms", l->n ? sum / l->n : NAN);
        tj_knum(w, "latency_p50_ms", rank_pct(v, l->n, 50));
        tj_knum(w, "latency_p90_ms", rank_pct(v, l->n, 90));
        tj_knum(w, "latency_p99_ms", rank_pct(v, l->n, 99));
    }
    if (seeds) {
        for (size_t i = 0; i < l->n; i++) {
            lat_t key = {l->v[i].index, 0};
            const lat_t *s = bsearch(&key, seeds->v, seeds->n, sizeof key, cmp_lat_index);
            if (!s || !(s->ms > 0)) continue;
            double il = (l->v[i].ms / s->ms - 1) * 100;
            isum += il, ni++;
            if (!(il <= imax)) imax = il;
        }
        tj_kint(w, "ilatency_inputs", (int64_t)ni);
        tj_knum(w, "ilatency_mean", ni ? isum / ni : NAN);
        tj_knum(w, "ilatency_max", ni ? imax : NAN);
    }
    tj_obj_end(w);
    free(v);
}

static const lats_t *seeds_lats(const agg_t *a, const char *model, const char *cls)
{
    for (size_t i = 0; i < a->n; i++)
        if (!strcmp(a->c[i].model, model) && !strcmp(a->c[i].method, "seeds"))
            for (size_t k = 0; k < a->c[i].nlat; k++)
                if (!strcmp(a->c[i].lat[k].cls, cls)) return &a->c[i].lat[k];
    return NULL;
}

static void json_cell(tj_writer_t *w, const agg_t *a, const cell_t *c)
{
    tj_obj(w);
    tj_kstr(w, "model", c->model);
    const int seeds = !strcmp(c->method, "seeds");
    if (!seeds) {
        tj_kstr(w, "norm", c->norm);
        tj_knum(w, "eps", c->eps);
        tj_kbool(w, "l2_at_most", c->l2_at_most);
    }
    tj_kstr(w, "method", c->method);
    if (c->n) {
        double n = (double)c->n;
        tj_kint(w, "n", (int64_t)c->n);
        tj_kint(w, "shards", (int64_t)c->shards);
        tj_knum(w, "iflops_mean", c->s_iflops / n);
        tj_knum(w, "iflops_max", c->max_iflops);
        tj_knum(w, "exec_fraction_seed_mean", c->s_exec_seed / n);
        tj_knum(w, "exec_fraction_mean", c->s_exec / n);
        tj_knum(w, "psnr_mean", c->s_psnr / n);
        tj_knum(w, "norm_max", c->norm_max);
        tj_kbool(w, "within_budget", c->within);
        tj_knum(w, "seconds_per_input", c->seconds / n);
        tj_knum(w, "idpb_rate", c->s_idpb / n);
    }
    if (c->has_train) {
        tj_key(w, "train");
        tj_obj(w);
        tj_knum(w, "best_exec", c->best_exec);
        tj_kint(w, "best_epoch", c->best_epoch);
        tj_kint(w, "epochs_run", c->epochs_run);
        tj_kint(w, "resumed_from", c->resumed_from);
        tj_knum(w, "seconds", c->train_seconds);
        tj_obj_end(w);
    }
    if (c->nlat) {
        tj_key(w, "latency");
        tj_arr(w);
        for (size_t k = 0; k < c->nlat; k++)
            json_lats(w, &c->lat[k], seeds ? NULL : seeds_lats(a, c->model, c->lat[k].cls));
        tj_arr_end(w);
    }
    tj_obj_end(w);
}

dp_err_t dp_task_report(const dp_task_settings_t *s, size_t n, const char *const *keys,
                        const char *const *results, const char *const *measures, char **json)
{
    *json = NULL;
    agg_t a;
    memset(&a, 0, sizeof a);
    size_t used = 0, skipped = 0;
    tj_writer_t w;
    tj_init(&w);
    tj_obj(&w);
    task_json_identity(&w, s);
    tj_key(&w, "skipped_keys");
    tj_arr(&w);
    for (size_t i = 0; i < n; i++) {
        if (add(&a, results[i], measures ? measures[i] : NULL) == 0) {
            used++;
        } else {
            skipped++;
            tj_str(&w, keys ? keys[i] : "");
        }
    }
    tj_arr_end(&w);
    for (size_t i = 0; i < a.n; i++)
        for (size_t k = 0; k < a.c[i].nlat; k++)
            qsort(a.c[i].lat[k].v, a.c[i].lat[k].n, sizeof(lat_t), cmp_lat_index);
    qsort(a.c, a.n, sizeof *a.c, cmp_cell);
    tj_kint(&w, "results", (int64_t)used);
    tj_kint(&w, "skipped", (int64_t)skipped);
    tj_key(&w, "cells");
    tj_arr(&w);
    for (size_t i = 0; i < a.n; i++) json_cell(&w, &a, &a.c[i]);
    tj_arr_end(&w);
    tj_key(&w, "kernels");
    tj_arr(&w);
    for (size_t i = 0; i < a.nkernels; i++) tj_str(&w, a.kernels[i]);
    tj_arr_end(&w);
    task_json_provenance(&w);
    tj_obj_end(&w);
    for (size_t i = 0; i < a.n; i++) {
        for (size_t k = 0; k < a.c[i].nlat; k++) free(a.c[i].lat[k].v);
        free(a.c[i].lat);
    }
    free(a.c);
    free(a.kernels);
    if (!(*json = tj_take(&w))) return dp_err_set(DP_ERR_NOMEM, "report: out of memory");
    return DP_OK;
}
