/* Reading report.json, which may come from anywhere (a file, a store, a
 * baseline from last month): parsed, then checked member by member, so the
 * renderer and the comparison only meet the types and sizes they expect.
 * Unknown members are allowed (a newer writer's); known ones must have
 * their type. Images must be base64 (they become data: URIs verbatim). */
#include <stdio.h>
#include <string.h>

#include "report/report_impl.h"

#define MAX_LIST 1000000 /* entries of any list */

static dp_err_t fail(const char *path, const char *what)
{
    return dp_err_set(DP_ERR_FORMAT, "report.json: %s: %s", path, what);
}

static int is_b64(const char *s)
{
    size_t n = 0;
    for (; *s; s++, n++) {
        char c = *s;
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '+' || c == '/' || c == '=';
        if (!ok) return 0;
    }
    return n % 4 == 0;
}

/* Member k of o, which must be absent or of type t (TJ_NUM also takes
 * null: a figure that could not be computed). */
static dp_err_t opt(const tj_val_t *o, const char *path, const char *k, tj_type_t t)
{
    const tj_val_t *v = tj_get(o, k);
    if (!v) return DP_OK;
    if (v->type == t || (t == TJ_NUM && (v->type == TJ_NULL || v->type == TJ_BOOL))) {
        if ((t == TJ_ARR || t == TJ_OBJ) && v->n > MAX_LIST) {
            char p[256];
            snprintf(p, sizeof p, "%s.%s", path, k);
            return fail(p, "too many entries");
        }
        return DP_OK;
    }
    static const char *const names[] = {"null",     "a boolean", "a number",
                                        "a string", "a list",    "an object"};
    char p[256], w[64];
    snprintf(p, sizeof p, "%s.%s", path, k);
    snprintf(w, sizeof w, "%s is needed", names[t]);
    return fail(p, w);
}

static dp_err_t req(const tj_val_t *o, const char *path, const char *k, tj_type_t t)
{
    if (!tj_get(o, k)) {
        char p[256];
        snprintf(p, sizeof p, "%s.%s", path, k);
        return fail(p, "missing");
    }
    return opt(o, path, k, t);
}

/* Every entry of list o.k (absent is fine) of type t. */
static dp_err_t each(const tj_val_t *o, const char *path, const char *k, tj_type_t t)
{
    dp_err_t err = opt(o, path, k, TJ_ARR);
    const tj_val_t *a = tj_get(o, k);
    if (err || !a) return err;
    for (size_t i = 0; i < a->n; i++)
        if (a->items[i].type != t && !(t == TJ_NUM && a->items[i].type == TJ_NULL)) {
            char p[256];
            snprintf(p, sizeof p, "%s.%s[%zu]", path, k, i);
            return fail(p, t == TJ_NUM   ? "a number is needed"
                           : t == TJ_STR ? "a string is needed"
                                         : "an object is needed");
        }
    return DP_OK;
}

static const char *const group_nums[] = {"n",
                                         "shards",
                                         "iflops_mean",
                                         "iflops_max",
                                         "exec_fraction_seed_mean",
                                         "exec_fraction_mean",
                                         "exec_fraction_max",
                                         "psnr_mean",
                                         "norm_max",
                                         "seconds",
                                         "seconds_per_input",
                                         "idpb_rate",
                                         "idpb_count",
                                         "eps"};

static dp_err_t check_lat(const tj_val_t *l, const char *path)
{
    dp_err_t err = req(l, path, "device_class", TJ_STR);
    if (!err) err = each(l, path, "latency_cdf_ms", TJ_NUM);
    if (!err) err = each(l, path, "measurements", TJ_OBJ);
    for (size_t i = 0; i < l->n && !err; i++)
        if (strcmp(l->keys[i], "measurements") && strcmp(l->keys[i], "latency_cdf_ms") &&
            strcmp(l->keys[i], "device_class"))
            err = opt(l, path, l->keys[i], TJ_NUM);
    return err;
}

static dp_err_t check_group(const tj_val_t *g, const char *path)
{
    dp_err_t err = req(g, path, "model", TJ_STR);
    if (!err) err = req(g, path, "method", TJ_STR);
    if (!err) err = opt(g, path, "norm", TJ_STR);
    for (size_t i = 0; i < sizeof group_nums / sizeof *group_nums && !err; i++)
        err = opt(g, path, group_nums[i], TJ_NUM);
    if (!err) err = opt(g, path, "train", TJ_OBJ);
    if (!err) err = each(g, path, "exec_fraction_hist", TJ_NUM);
    if (!err) err = each(g, path, "artifacts", TJ_STR);
    if (!err) err = each(g, path, "latency", TJ_OBJ);
    const tj_val_t *l = tj_get(g, "latency");
    for (size_t i = 0; l && i < l->n && !err; i++) {
        char p[200];
        snprintf(p, sizeof p, "%s.latency[%zu]", path, i);
        err = check_lat(&l->items[i], p);
    }
    const tj_val_t *t = tj_get(g, "train");
    for (size_t i = 0; t && i < t->n && !err; i++) err = opt(t, path, t->keys[i], TJ_NUM);
    return err;
}

static dp_err_t check_worst(const tj_val_t *w, const char *path)
{
    dp_err_t err = req(w, path, "model", TJ_STR);
    if (!err) err = opt(w, path, "norm", TJ_STR);
    if (!err) err = opt(w, path, "seed_index", TJ_NUM);
    if (!err) err = opt(w, path, "eps", TJ_NUM);
    if (!err) err = opt(w, path, "width", TJ_NUM);
    if (!err) err = opt(w, path, "height", TJ_NUM);
    if (!err) err = opt(w, path, "gap", TJ_NUM);
    if (!err) err = opt(w, path, "png", TJ_STR);
    if (!err && !is_b64(tj_get_str(w, "png", ""))) err = fail(path, "an image that is not base64");
    if (!err) err = each(w, path, "columns", TJ_OBJ);
    const tj_val_t *cs = tj_get(w, "columns");
    for (size_t i = 0; cs && i < cs->n && !err; i++) {
        const tj_val_t *x = &cs->items[i];
        char p[200];
        snprintf(p, sizeof p, "%s.columns[%zu]", path, i);
        if (!(err = req(x, p, "method", TJ_STR)) && !(err = opt(x, p, "kind", TJ_STR)) &&
            !(err = opt(x, p, "artifact", TJ_STR)) && !(err = opt(x, p, "exec_fraction", TJ_NUM)))
            err = opt(x, p, "delta_scale", TJ_NUM);
    }
    return err;
}

static dp_err_t check_scatter(const tj_val_t *s, const char *path)
{
    dp_err_t err = req(s, path, "model", TJ_STR);
    if (!err) err = req(s, path, "device_class", TJ_STR);
    if (!err) err = opt(s, path, "pearson", TJ_NUM);
    if (!err) err = opt(s, path, "n", TJ_NUM);
    if (!err) err = each(s, path, "points", TJ_ARR);
    const tj_val_t *pt = tj_get(s, "points");
    for (size_t i = 0; pt && i < pt->n && !err; i++) {
        const tj_val_t *p = &pt->items[i];
        int ok = p->n == 3;
        for (size_t k = 0; ok && k < 3; k++) ok = p->items[k].type == TJ_NUM;
        if (!ok) {
            char q[200];
            snprintf(q, sizeof q, "%s.points[%zu]", path, i);
            err = fail(q, "[MFLOPs, ms, method rank] is needed");
        }
    }
    return err;
}

typedef dp_err_t (*check_fn)(const tj_val_t *, const char *);

static dp_err_t list_of(const tj_val_t *r, const char *k, check_fn fn)
{
    dp_err_t err = each(r, "report", k, TJ_OBJ);
    const tj_val_t *a = tj_get(r, k);
    for (size_t i = 0; a && i < a->n && !err; i++) {
        char p[128];
        snprintf(p, sizeof p, "%s[%zu]", k, i);
        err = fn(&a->items[i], p);
    }
    return err;
}

static dp_err_t check_failure(const tj_val_t *f, const char *path)
{
    dp_err_t err = opt(f, path, "task", TJ_STR);
    if (!err) err = opt(f, path, "key", TJ_STR);
    if (!err) err = opt(f, path, "state", TJ_STR);
    if (!err) err = opt(f, path, "reason", TJ_STR);
    if (!err) err = opt(f, path, "attempts", TJ_NUM);
    return err;
}

static dp_err_t check_budget(const tj_val_t *b, const char *path)
{
    dp_err_t err = req(b, path, "norm", TJ_STR);
    if (!err) err = req(b, path, "eps", TJ_NUM);
    return err;
}

static dp_err_t check_change(const tj_val_t *c, const char *path)
{
    dp_err_t err = req(c, path, "figure", TJ_STR);
    if (!err) err = opt(c, path, "old", TJ_NUM);
    if (!err) err = opt(c, path, "new", TJ_NUM);
    if (!err) err = opt(c, path, "change_pct", TJ_NUM);
    if (!err) err = opt(c, path, "worse", TJ_BOOL);
    return err;
}

dp_err_t rpt_read(const char *text, size_t len, tj_val_t *out)
{
    memset(out, 0, sizeof *out);
    if (!text) return fail("report", "no text");
    if (len > DP_REPORT_MAX_BYTES)
        return dp_err_set(DP_ERR_RANGE, "report.json: %zu bytes, more than the %u accepted", len,
                          DP_REPORT_MAX_BYTES);
    tj_val_t r;
    dp_err_t err = tj_parse(text, len, &r);
    if (err) return dp_err_set(DP_ERR_FORMAT, "report.json: %s", dp_err_detail());
    if (r.type != TJ_OBJ) {
        err = fail("report", "an object is needed");
        goto done;
    }
    if (strcmp(tj_get_str(&r, "format", ""), "dp-report")) {
        err = fail("format", "not \"dp-report\": not a campaign report");
        goto done;
    }
    if (tj_get_num(&r, "version", 0) != DP_REPORT_VERSION) {
        err = dp_err_set(DP_ERR_UNSUPPORTED, "report.json: version %g, this program reads %d",
                         tj_get_num(&r, "version", 0), DP_REPORT_VERSION);
        goto done;
    }
    if ((err = req(&r, "report", "campaign", TJ_OBJ)) ||
        (err = req(tj_get(&r, "campaign"), "campaign", "id", TJ_STR)) ||
        (err = opt(tj_get(&r, "campaign"), "campaign", "store_uri", TJ_STR)) ||
        (err = opt(tj_get(&r, "campaign"), "campaign", "dataset", TJ_STR)) ||
        (err = opt(tj_get(&r, "campaign"), "campaign", "generated_unix", TJ_NUM)) ||
        (err = opt(&r, "report", "thresholds", TJ_OBJ)) ||
        (err = each(&r, "report", "models", TJ_STR)) ||
        (err = each(&r, "report", "methods", TJ_STR)) ||
        (err = each(&r, "report", "device_classes", TJ_STR)) ||
        (err = each(&r, "report", "skipped_keys", TJ_STR)) ||
        (err = opt(&r, "report", "results", TJ_NUM)) ||
        (err = opt(&r, "report", "skipped", TJ_NUM)) ||
        (err = list_of(&r, "budgets", check_budget)) ||
        (err = list_of(&r, "groups", check_group)) ||
        (err = list_of(&r, "scatter", check_scatter)) ||
        (err = list_of(&r, "worst", check_worst)) ||
        (err = list_of(&r, "failures", check_failure)) ||
        (err = opt(&r, "report", "provenance", TJ_OBJ)) ||
        (err = opt(&r, "report", "regression", TJ_OBJ)))
        goto done;
    const tj_val_t *th = tj_get(&r, "thresholds");
    for (size_t i = 0; th && i < th->n && !err; i++)
        err = opt(th, "thresholds", th->keys[i], TJ_NUM);
    const tj_val_t *pv = tj_get(&r, "provenance");
    if (!err && pv) err = each(pv, "provenance", "kernels", TJ_STR);
    const tj_val_t *rg = tj_get(&r, "regression");
    if (!err && rg) {
        if (!(err = opt(rg, "regression", "baseline", TJ_STR)) &&
            !(err = opt(rg, "regression", "threshold_pct", TJ_NUM)))
            err = list_of(rg, "changes", check_change);
    }
done:
    if (err) {
        tj_val_free(&r);
        return err;
    }
    *out = r;
    return DP_OK;
}

dp_err_t dp_report_check(const char *text, size_t len)
{
    tj_val_t r;
    dp_err_t err = rpt_read(text, len, &r);
    if (!err) tj_val_free(&r);
    return err;
}
