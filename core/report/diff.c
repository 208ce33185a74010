/* Comparing two reports: both are flattened into named figures
 * ("sdn_resnet/linf-0.09/deepperform/exec_fraction_mean",
 * "sdn_resnet/seeds/local/latency_ms_p90"), matched by name, and each
 * change is given in percent of the old value. Every figure but PSNR is
 * worse when it grows (more executed work, more IDPBs, more latency or
 * energy, slower generation); PSNR is reported, never called worse. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report/report_impl.h"

typedef struct fig {
    char name[200];
    double v;
} fig_t;

typedef struct figs {
    fig_t *v;
    size_t n, cap;
    int nomem;
} figs_t;

static void put(figs_t *f, const char *prefix, const char *k, double v)
{
    if (!isfinite(v)) return;
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 256;
        fig_t *x = realloc(f->v, cap * sizeof *x);
        if (!x) {
            f->nomem = 1;
            return;
        }
        f->v = x, f->cap = cap;
    }
    /* a name too long to hold is left out rather than cut, so two cut
     * names never compare as one figure */
    if (snprintf(f->v[f->n].name, sizeof f->v[0].name, "%s/%s", prefix, k) >=
        (int)sizeof f->v[0].name)
        return;
    f->v[f->n++].v = v;
}

static const char *const gfig[] = {"exec_fraction_mean", "exec_fraction_max", "iflops_mean",
                                   "iflops_max",         "idpb_rate",         "psnr_mean",
                                   "seconds_per_input"};
static const char *const lfig[] = {
    "latency_ms_p50", "latency_ms_p90", "latency_ms_p99", "ilatency_p50",  "ilatency_p90",
    "ilatency_p99",   "energy_mj_p50",  "energy_mj_p90",  "energy_mj_p99", "ienergy_p50",
    "ienergy_p90",    "ienergy_p99",    "over_seed_p99"};

/* "M/seeds" or "M/linf-0.09/deepperform" ("l2x-" for exactly eps). */
static void group_name(const tj_val_t *g, char *buf, size_t size)
{
    const char *m = tj_get_str(g, "method", "?");
    if (!strcmp(m, "seeds")) {
        snprintf(buf, size, "%s/seeds", tj_get_str(g, "model", "?"));
        return;
    }
    const char *norm = tj_get_str(g, "norm", "?");
    int exact = !strcmp(norm, "l2") && !tj_get_num(g, "l2_at_most", 1);
    snprintf(buf, size, "%s/%s%s-%g/%s", tj_get_str(g, "model", "?"), norm, exact ? "x" : "",
             tj_get_num(g, "eps", 0), m);
}

static int cmp_fig(const void *a, const void *b)
{
    return strcmp(((const fig_t *)a)->name, ((const fig_t *)b)->name);
}

static void flatten(const tj_val_t *r, figs_t *f)
{
    const tj_val_t *gs = tj_get(r, "groups");
    for (size_t i = 0; gs && i < gs->n; i++) {
        const tj_val_t *g = &gs->items[i];
        char gn[160], ln[200];
        group_name(g, gn, sizeof gn);
        for (size_t k = 0; k < sizeof gfig / sizeof *gfig; k++)
            put(f, gn, gfig[k], tj_get_num(g, gfig[k], NAN));
        const tj_val_t *ls = tj_get(g, "latency");
        for (size_t j = 0; ls && j < ls->n; j++) {
            snprintf(ln, sizeof ln, "%s/%s", gn, tj_get_str(&ls->items[j], "device_class", "?"));
            for (size_t k = 0; k < sizeof lfig / sizeof *lfig; k++)
                put(f, ln, lfig[k], tj_get_num(&ls->items[j], lfig[k], NAN));
        }
    }
    const tj_val_t *fl = tj_get(r, "failures");
    put(f, "campaign", "failures", fl ? (double)fl->n : 0);
    rpt_qsort(f->v, f->n, sizeof *f->v, cmp_fig);
}

static int is_worse(const char *name, double old, double now, double pct)
{
    if (strstr(name, "/psnr_mean")) return 0;
    if (!strcmp(name, "campaign/failures")) return now > old;
    double ch = old != 0 ? (now - old) / fabs(old) * 100 : (now > old ? INFINITY : 0);
    /* I-Latency and I-Energy are already percentages: compare in points */
    if (strstr(name, "/ilatency_") || strstr(name, "/ienergy_")) ch = now - old;
    return ch > pct;
}

typedef void (*change_fn)(void *ctx, const char *name, const double *old, const double *now,
                          int worse);

static dp_err_t compare(const char *a, size_t alen, const char *b, size_t blen, double pct,
                        change_fn fn, void *ctx)
{
    tj_val_t ra, rb;
    dp_err_t err = rpt_read(a, alen, &ra);
    if (err) return dp_err_set(err, "the old report: %s", dp_err_detail());
    if ((err = rpt_read(b, blen, &rb))) {
        tj_val_free(&ra);
        return dp_err_set(err, "the new report: %s", dp_err_detail());
    }
    figs_t fa = {0}, fb = {0};
    flatten(&ra, &fa);
    flatten(&rb, &fb);
    if (fa.nomem || fb.nomem) {
        err = dp_err_set(DP_ERR_NOMEM, "report: out of memory");
        goto done;
    }
    size_t i = 0, k = 0;
    while (i < fa.n || k < fb.n) {
        int c = i == fa.n ? 1 : k == fb.n ? -1 : strcmp(fa.v[i].name, fb.v[k].name);
        if (c < 0) {
            fn(ctx, fa.v[i].name, &fa.v[i].v, NULL, 0);
            i++;
        } else if (c > 0) {
            fn(ctx, fb.v[k].name, NULL, &fb.v[k].v, 0);
            k++;
        } else {
            if (fa.v[i].v != fb.v[k].v)
                fn(ctx, fa.v[i].name, &fa.v[i].v, &fb.v[k].v,
                   is_worse(fa.v[i].name, fa.v[i].v, fb.v[k].v, pct));
            i++, k++;
        }
    }
done:
    free(fa.v), free(fb.v);
    tj_val_free(&ra);
    tj_val_free(&rb);
    return err;
}

static double change_pct(double old, double now)
{
    return old != 0 ? (now - old) / fabs(old) * 100 : NAN;
}

/* ------------------------------------------------------------- the report's section */

typedef struct reg {
    tj_writer_t *w;
    int changes, worse;
} reg_t;

static void on_reg(void *ctx, const char *name, const double *old, const double *now, int worse)
{
    reg_t *r = ctx;
    tj_obj(r->w);
    tj_kstr(r->w, "figure", name);
    if (old) tj_knum(r->w, "old", *old);
    if (now) tj_knum(r->w, "new", *now);
    if (old && now) tj_knum(r->w, "change_pct", change_pct(*old, *now));
    tj_kbool(r->w, "worse", worse);
    tj_obj_end(r->w);
    r->changes++, r->worse += worse;
}

dp_err_t rpt_regression(tj_writer_t *w, const char *old_text, size_t old_len, const char *new_text,
                        size_t new_len, const char *label, double pct)
{
    reg_t r = {.w = w};
    tj_key(w, "regression");
    tj_obj(w);
    tj_kstr(w, "baseline", label);
    tj_knum(w, "threshold_pct", pct);
    tj_key(w, "changes");
    tj_arr(w);
    dp_err_t err = compare(old_text, old_len, new_text, new_len, pct, on_reg, &r);
    tj_arr_end(w);
    tj_kint(w, "changed", r.changes);
    tj_kint(w, "worse", r.worse);
    tj_obj_end(w);
    if (err) return dp_err_set(err, "the baseline report: %s", dp_err_detail());
    return DP_OK;
}

/* ------------------------------------------------------------- dp-report diff */

typedef struct txt {
    char *p;
    size_t len, cap;
    int nomem, changes, worse;
} txt_t;

static void txt_add(txt_t *t, const char *s)
{
    size_t n = strlen(s);
    if (t->nomem) return;
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 4096;
        while (cap < t->len + n + 1) cap *= 2;
        char *p = realloc(t->p, cap);
        if (!p) {
            t->nomem = 1;
            return;
        }
        t->p = p, t->cap = cap;
    }
    memcpy(t->p + t->len, s, n + 1);
    t->len += n;
}

static void on_txt(void *ctx, const char *name, const double *old, const double *now, int worse)
{
    txt_t *t = ctx;
    char line[400];
    if (!old)
        snprintf(line, sizeof line, "+ %s: %.6g (new)\n", name, *now);
    else if (!now)
        snprintf(line, sizeof line, "- %s: %.6g (gone)\n", name, *old);
    else
        snprintf(line, sizeof line, "%c %s: %.6g -> %.6g (%+.1f%%)%s\n", worse ? '!' : '~', name,
                 *old, *now, change_pct(*old, *now), worse ? " worse" : "");
    txt_add(t, line);
    t->changes++, t->worse += worse;
}

dp_err_t dp_report_diff(const char *old_text, size_t old_len, const char *new_text, size_t new_len,
                        double regress_pct, char **text, int *changes, int *worse)
{
    *text = NULL, *changes = 0, *worse = 0;
    txt_t t = {0};
    txt_add(&t, "");
    dp_err_t err = compare(old_text, old_len, new_text, new_len, regress_pct, on_txt, &t);
    if (!err && t.nomem) err = dp_err_set(DP_ERR_NOMEM, "report: out of memory");
    if (err) {
        free(t.p);
        return err;
    }
    *text = t.p, *changes = t.changes, *worse = t.worse;
    return DP_OK;
}
