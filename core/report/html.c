/* report.html from report.json: one self-contained page (a style sheet,
 * tables, inline SVG charts, PNG images as data: URIs; no script and no
 * URL that is fetched at view time). Every string from the report is
 * escaped; images are base64 checked by the reader. Links to artifacts
 * are relative to CAMPAIGN/report/, where the page is stored, so they
 * work on a file:// store and behind an HTTP front of the bucket alike.
 *
 * Sections: summary (IDPBs per model and device class against the
 * budgets, failures, the regression against a baseline), tables per
 * model, norm, eps and method, charts per model (executed-fraction
 * distributions, latency CDFs and FLOPs-latency scatter per device class),
 * generation cost per method, image grids of the worst inputs, and
 * provenance. Data marks in charts carry class "d" (tests count them). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "report/report_impl.h"

typedef struct sb {
    char *p;
    size_t len, cap;
    int nomem;
} sb_t;

static void sb_put(sb_t *b, const char *s, size_t n)
{
    if (b->nomem) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1 << 16;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->nomem = 1;
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_s(sb_t *b, const char *s) { sb_put(b, s, strlen(s)); }

__attribute__((format(printf, 2, 3))) static void sb_f(sb_t *b, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        sb_put(b, tmp, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->nomem = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb_put(b, big, (size_t)n);
    free(big);
}

/* Text escaped for HTML element content and attribute values. */
static void esc(sb_t *b, const char *s)
{
    for (const char *p = s; *p; p++) {
        switch (*p) {
        case '<':
            sb_s(b, "&lt;");
            break;
        case '>':
            sb_s(b, "&gt;");
            break;
        case '&':
            sb_s(b, "&amp;");
            break;
        case '"':
            sb_s(b, "&quot;");
            break;
        case '\'':
            sb_s(b, "&#39;");
            break;
        default:
            sb_put(b, p, 1);
        }
    }
}

/* A URL path escaped (percent-encoding everything but unreserved and '/'). */
static void esc_url(sb_t *b, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            strchr("-._~/", *p))
            sb_put(b, (const char *)p, 1);
        else
            sb_f(b, "%%%02X", *p);
    }
}

static void num(sb_t *b, double v, const char *fmt)
{
    if (isfinite(v))
        sb_f(b, fmt, v);
    else
        sb_s(b, "&ndash;");
}

static const char *method_color(const char *m)
{
    static const char *const c[] = {"#555555", "#d62728", "#1f77b4",
                                    "#2ca02c", "#9467bd", "#ff7f0e"};
    return c[rpt_method_rank(m)];
}

static const char *rank_method(int r)
{
    static const char *const m[] = {"seeds", "deepperform", "random", "ilfo", "deepsloth", "other"};
    return r >= 0 && r < 6 ? m[r] : "other";
}

static const char *const dashes[] = {"", "6,3", "2,2", "8,3,2,3", "1,3", "10,4"};

/* ------------------------------------------------------------- helpers over the report */

typedef struct page {
    const tj_val_t *r;
    const char *cid;
    sb_t b;
    int charts, maps;
} page_t;

static const tj_val_t *arr(const tj_val_t *o, const char *k)
{
    const tj_val_t *a = tj_get(o, k);
    return a && a->type == TJ_ARR ? a : NULL;
}

static size_t count(const tj_val_t *o, const char *k)
{
    const tj_val_t *a = arr(o, k);
    return a ? a->n : 0;
}

static void budget_label(const tj_val_t *g, char *buf, size_t size)
{
    const char *norm = tj_get_str(g, "norm", "?");
    int exact = !strcmp(norm, "l2") && tj_get(g, "l2_at_most") && !tj_get_num(g, "l2_at_most", 1);
    snprintf(buf, size, "%s%s %g", norm, exact ? " (exactly)" : "", tj_get_num(g, "eps", 0));
}

static int same_budget(const tj_val_t *a, const tj_val_t *b)
{
    return !strcmp(tj_get_str(a, "norm", ""), tj_get_str(b, "norm", "")) &&
           (float)tj_get_num(a, "eps", 0) == (float)tj_get_num(b, "eps", 0) &&
           (tj_get_num(a, "l2_at_most", 1) != 0) == (tj_get_num(b, "l2_at_most", 1) != 0);
}

static const tj_val_t *lat_of(const tj_val_t *g, const char *cls)
{
    const tj_val_t *l = arr(g, "latency");
    for (size_t i = 0; l && i < l->n; i++)
        if (!strcmp(tj_get_str(&l->items[i], "device_class", ""), cls)) return &l->items[i];
    return NULL;
}

/* The group of model, budget b (NULL: seeds) and method. */
static const tj_val_t *group(const page_t *pg, const char *model, const tj_val_t *b,
                             const char *method)
{
    const tj_val_t *gs = arr(pg->r, "groups");
    for (size_t i = 0; gs && i < gs->n; i++) {
        const tj_val_t *g = &gs->items[i];
        if (strcmp(tj_get_str(g, "model", ""), model) ||
            strcmp(tj_get_str(g, "method", ""), method))
            continue;
        if (!b || same_budget(g, b)) return g;
    }
    return NULL;
}

/* The link to a store key from CAMPAIGN/report/. */
static void artifact_href(page_t *pg, const char *key)
{
    size_t n = strlen(pg->cid);
    if (!strncmp(key, pg->cid, n) && key[n] == '/') {
        sb_s(&pg->b, "../");
        esc_url(&pg->b, key + n + 1);
    } else {
        sb_s(&pg->b, "../../");
        esc_url(&pg->b, key);
    }
}

/* ------------------------------------------------------------- charts */

typedef struct chart {
    double x0, x1, y0, y1;
    int w, h, l, r, t, bm; /* size and margins */
    int logx, logy;
} chart_t;

static double cx(const chart_t *c, double x)
{
    double a = c->logx ? log10(x) : x, a0 = c->logx ? log10(c->x0) : c->x0,
           a1 = c->logx ? log10(c->x1) : c->x1;
    double v = c->l + (a - a0) / (a1 - a0) * (c->w - c->l - c->r);
    return isfinite(v) ? fmax(-1e6, fmin(1e6, v)) : 0;
}

static double cy(const chart_t *c, double y)
{
    double a = c->logy ? log10(y) : y, a0 = c->logy ? log10(c->y0) : c->y0,
           a1 = c->logy ? log10(c->y1) : c->y1;
    double v = c->h - c->bm - (a - a0) / (a1 - a0) * (c->h - c->t - c->bm);
    return isfinite(v) ? fmax(-1e6, fmin(1e6, v)) : 0;
}

static void chart_begin(page_t *pg, chart_t *c, const char *title, const char *xlabel,
                        const char *ylabel)
{
    sb_t *b = &pg->b;
    if (!(c->x1 > c->x0)) c->x1 = c->x0 + 1;
    if (!(c->y1 > c->y0)) c->y1 = c->y0 + 1;
    pg->charts++;
    sb_f(b,
         "<figure class=\"chart\"><svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" "
         "width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\"><title>",
         c->w, c->h, c->w, c->h);
    esc(b, title);
    sb_f(b, "</title><rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" class=\"frame\"/>", c->l,
         c->t, c->w - c->l - c->r, c->h - c->t - c->bm);
    for (int k = 0; k <= 4; k++) { /* ticks */
        double fx = c->logx ? pow(10, log10(c->x0) + k * (log10(c->x1) - log10(c->x0)) / 4)
                            : c->x0 + k * (c->x1 - c->x0) / 4;
        double fy = c->logy ? pow(10, log10(c->y0) + k * (log10(c->y1) - log10(c->y0)) / 4)
                            : c->y0 + k * (c->y1 - c->y0) / 4;
        sb_f(b, "<text x=\"%.1f\" y=\"%d\" class=\"tx\">%.3g</text>", cx(c, fx), c->h - c->bm + 14,
             fx);
        sb_f(b, "<text x=\"%d\" y=\"%.1f\" class=\"ty\">%.3g</text>", c->l - 4, cy(c, fy) + 4, fy);
        sb_f(b, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>", c->l,
             c->w - c->r, cy(c, fy), cy(c, fy));
    }
    sb_f(b, "<text x=\"%d\" y=\"%d\" class=\"xl\">", (c->l + c->w - c->r) / 2, c->h - 4);
    esc(b, xlabel);
    sb_f(b, "</text><text x=\"12\" y=\"%d\" class=\"yl\" transform=\"rotate(-90 12 %d)\">",
         (c->t + c->h - c->bm) / 2, (c->t + c->h - c->bm) / 2);
    esc(b, ylabel);
    sb_s(b, "</text>");
}

static void chart_end(page_t *pg, const char *caption)
{
    sb_s(&pg->b, "</svg><figcaption>");
    esc(&pg->b, caption);
    sb_s(&pg->b, "</figcaption></figure>\n");
}

static void legend(page_t *pg, const chart_t *c, int i, const char *color, const char *dash,
                   const char *label)
{
    int y = c->t + 12 + 14 * i, x = c->w - c->r - 150;
    sb_f(&pg->b,
         "<line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\" "
         "stroke-dasharray=\"%s\"/><text x=\"%d\" y=\"%d\" class=\"lg\">",
         x, x + 18, y - 4, y - 4, color, dash, x + 22, y);
    esc(&pg->b, label);
    sb_s(&pg->b, "</text>");
}

/* Executed fraction of seeds and of every method's x' at budget b. */
static void chart_exec(page_t *pg, const char *model, const tj_val_t *b)
{
    const tj_val_t *ms = arr(pg->r, "methods");
    chart_t c = {.x0 = 0,
                 .x1 = 1,
                 .y0 = 0,
                 .y1 = 0,
                 .w = 460,
                 .h = 260,
                 .l = 46,
                 .r = 10,
                 .t = 10,
                 .bm = 34};
    const tj_val_t *gs[16];
    size_t ng = 0;
    for (size_t i = 0; ms && i < ms->n && ng < 16; i++) {
        const char *m = ms->items[i].str;
        const tj_val_t *g = group(pg, model, strcmp(m, "seeds") ? b : NULL, m);
        const tj_val_t *h = g ? arr(g, "exec_fraction_hist") : NULL;
        if (!h || !h->n) continue;
        double tot = 0;
        for (size_t k = 0; k < h->n; k++) tot += h->items[k].num;
        if (!(tot > 0)) continue;
        for (size_t k = 0; k < h->n; k++) c.y1 = fmax(c.y1, h->items[k].num / tot);
        gs[ng++] = g;
    }
    if (!ng) return;
    char title[200], bl[64];
    budget_label(b, bl, sizeof bl);
    snprintf(title, sizeof title, "%s, %s: executed fraction", model, bl);
    c.y1 *= 1.1;
    chart_begin(pg, &c, title, "executed fraction of the network", "share of inputs");
    for (size_t i = 0; i < ng; i++) {
        const tj_val_t *h = arr(gs[i], "exec_fraction_hist");
        const char *m = tj_get_str(gs[i], "method", "");
        double tot = 0;
        for (size_t k = 0; k < h->n; k++) tot += h->items[k].num;
        sb_f(&pg->b,
             "<polyline class=\"d\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"",
             method_color(m));
        for (size_t k = 0; k < h->n; k++) {
            double y = h->items[k].num / tot;
            sb_f(&pg->b, "%.1f,%.1f %.1f,%.1f ", cx(&c, (double)k / h->n), cy(&c, y),
                 cx(&c, (double)(k + 1) / h->n), cy(&c, y));
        }
        sb_s(&pg->b, "\"/>");
        char lab[96];
        snprintf(lab, sizeof lab, "%s (n %g)", m, tj_get_num(gs[i], "n", 0));
        legend(pg, &c, (int)i, method_color(m), "", lab);
    }
    chart_end(pg,
              "Distribution of the executed fraction (20 bins): seeds and each method's inputs");
}

/* Latency CDF on one device class: seeds and every method at every budget. */
static void chart_cdf(page_t *pg, const char *model, const char *cls)
{
    const tj_val_t *gs = arr(pg->r, "groups"), *bs = arr(pg->r, "budgets");
    chart_t c = {.x0 = INFINITY,
                 .x1 = -INFINITY,
                 .y0 = 0,
                 .y1 = 1,
                 .w = 460,
                 .h = 260,
                 .l = 46,
                 .r = 10,
                 .t = 10,
                 .bm = 34};
    int any = 0;
    for (size_t i = 0; gs && i < gs->n; i++) {
        const tj_val_t *g = &gs->items[i];
        const tj_val_t *l = strcmp(tj_get_str(g, "model", ""), model) ? NULL : lat_of(g, cls);
        const tj_val_t *q = l ? arr(l, "latency_cdf_ms") : NULL;
        for (size_t k = 0; q && k < q->n; k++)
            if (isfinite(q->items[k].num) && q->items[k].type == TJ_NUM) {
                c.x0 = fmin(c.x0, q->items[k].num), c.x1 = fmax(c.x1, q->items[k].num);
                any = 1;
            }
    }
    if (!any) return;
    double pad = (c.x1 - c.x0) * 0.05 + 1e-6;
    c.x0 -= pad, c.x1 += pad;
    char title[200];
    snprintf(title, sizeof title, "%s on %s: latency CDF", model, cls);
    chart_begin(pg, &c, title, "latency per inference (ms, median of repetitions)",
                "share of inputs");
    int nl = 0;
    for (size_t i = 0; gs && i < gs->n; i++) {
        const tj_val_t *g = &gs->items[i];
        const tj_val_t *l = strcmp(tj_get_str(g, "model", ""), model) ? NULL : lat_of(g, cls);
        const tj_val_t *q = l ? arr(l, "latency_cdf_ms") : NULL;
        if (!q || q->n < 2) continue;
        const char *m = tj_get_str(g, "method", "");
        size_t bi = 0;
        for (size_t k = 0; bs && k < bs->n && strcmp(m, "seeds"); k++)
            if (same_budget(g, &bs->items[k])) bi = k + 1;
        const char *dash = dashes[bi % 6];
        sb_f(&pg->b,
             "<polyline class=\"d\" fill=\"none\" stroke=\"%s\" stroke-width=\"%s\" "
             "stroke-dasharray=\"%s\" points=\"",
             method_color(m), strcmp(m, "seeds") ? "1.5" : "2.5", dash);
        for (size_t k = 0; k < q->n; k++)
            if (q->items[k].type == TJ_NUM && isfinite(q->items[k].num))
                sb_f(&pg->b, "%.1f,%.1f ", cx(&c, q->items[k].num),
                     cy(&c, (double)k / (double)(q->n - 1)));
        sb_s(&pg->b, "\"/>");
        if (nl < 12) {
            char lab[96], bl[64] = "";
            if (strcmp(m, "seeds")) budget_label(g, bl, sizeof bl);
            snprintf(lab, sizeof lab, "%s %s", m, bl);
            legend(pg, &c, nl++, method_color(m), dash, lab);
        }
    }
    chart_end(pg, "Latency CDF of the seeds (thick) and of each method's inputs; dashes mark the "
                  "budget");
}

static void chart_scatter(page_t *pg, const tj_val_t *s)
{
    const tj_val_t *pts = arr(s, "points");
    if (!pts || !pts->n) return;
    chart_t c = {.x0 = INFINITY,
                 .x1 = -INFINITY,
                 .y0 = INFINITY,
                 .y1 = -INFINITY,
                 .w = 460,
                 .h = 260,
                 .l = 46,
                 .r = 10,
                 .t = 10,
                 .bm = 34};
    for (size_t i = 0; i < pts->n; i++) {
        const tj_val_t *p = &pts->items[i];
        if (!isfinite(p->items[0].num) || !isfinite(p->items[1].num)) continue;
        c.x0 = fmin(c.x0, p->items[0].num), c.x1 = fmax(c.x1, p->items[0].num);
        c.y0 = fmin(c.y0, p->items[1].num), c.y1 = fmax(c.y1, p->items[1].num);
    }
    if (!(c.x1 >= c.x0)) return;
    double px = (c.x1 - c.x0) * 0.05 + 1e-6, py = (c.y1 - c.y0) * 0.05 + 1e-6;
    c.x0 -= px, c.x1 += px, c.y0 -= py, c.y1 += py;
    char title[240];
    snprintf(title, sizeof title, "%s on %s: FLOPs against latency, r = %.3f",
             tj_get_str(s, "model", ""), tj_get_str(s, "device_class", ""),
             tj_get_num(s, "pearson", NAN));
    chart_begin(pg, &c, title, "executed MFLOPs", "latency (ms)");
    int seen[6] = {0};
    for (size_t i = 0; i < pts->n; i++) {
        const tj_val_t *p = &pts->items[i];
        if (!isfinite(p->items[0].num) || !isfinite(p->items[1].num)) continue;
        int r = (int)p->items[2].num;
        r = r < 0 || r > 5 ? 5 : r;
        seen[r] = 1;
        sb_f(&pg->b, "<circle class=\"d\" cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>",
             cx(&c, p->items[0].num), cy(&c, p->items[1].num), method_color(rank_method(r)));
    }
    for (int r = 0, k = 0; r < 6; r++)
        if (seen[r]) legend(pg, &c, k++, method_color(rank_method(r)), "", rank_method(r));
    char cap[200];
    snprintf(cap, sizeof cap,
             "Each point one measured input (%g in all, at most 400 drawn); "
             "Pearson r over all of them: %.3f",
             tj_get_num(s, "n", 0), tj_get_num(s, "pearson", NAN));
    chart_end(pg, cap);
}

/* Seconds per input of every method, per model (log scale). */
static void chart_cost(page_t *pg)
{
    const tj_val_t *gs = arr(pg->r, "groups"), *models = arr(pg->r, "models"),
                   *ms = arr(pg->r, "methods");
    if (!gs || !models || !ms) return;
    typedef struct bar {
        const char *model, *method;
        double s;
    } bar_t;
    size_t nb = 0, cap = models->n * ms->n;
    bar_t *bars = calloc(cap ? cap : 1, sizeof *bars);
    if (!bars) {
        pg->b.nomem = 1;
        return;
    }
    double lo = INFINITY, hi = 0;
    for (size_t m = 0; m < models->n; m++)
        for (size_t k = 0; k < ms->n; k++) {
            double sum = 0, n = 0;
            for (size_t i = 0; i < gs->n; i++) {
                const tj_val_t *g = &gs->items[i];
                double v = tj_get_num(g, "seconds_per_input", NAN);
                if (!strcmp(tj_get_str(g, "model", ""), models->items[m].str) &&
                    !strcmp(tj_get_str(g, "method", ""), ms->items[k].str) && v > 0 && isfinite(v))
                    sum += v, n++;
            }
            if (n > 0) {
                bars[nb++] = (bar_t){models->items[m].str, ms->items[k].str, sum / n};
                lo = fmin(lo, sum / n), hi = fmax(hi, sum / n);
            }
        }
    if (!nb) {
        free(bars);
        return;
    }
    lo = fmax(lo, 1e-9), hi = fmin(fmax(hi, lo), 1e9); /* ticks stay few */
    const int row = 16;
    chart_t c = {.x0 = pow(10, floor(log10(lo))),
                 .x1 = pow(10, ceil(log10(hi))),
                 .y0 = 0,
                 .y1 = (double)nb,
                 .w = 700,
                 .h = 50 + row * (int)nb,
                 .l = 200,
                 .r = 20,
                 .t = 10,
                 .bm = 34,
                 .logx = 1};
    if (!(c.x1 > c.x0)) c.x1 = c.x0 * 10;
    pg->charts++;
    sb_t *b = &pg->b;
    sb_f(b,
         "<figure class=\"chart\"><svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" "
         "width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\"><title>Generation cost "
         "per method</title>",
         c.w, c.h, c.w, c.h);
    for (double t = c.x0; t <= c.x1 * 1.0001; t *= 10)
        sb_f(b,
             "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" class=\"grid\"/><text x=\"%.1f\" "
             "y=\"%d\" class=\"tx\">%.3g s</text>",
             cx(&c, t), cx(&c, t), c.t, c.h - c.bm, cx(&c, t), c.h - c.bm + 14, t);
    for (size_t i = 0; i < nb; i++) {
        double y = c.t + row * (double)i;
        sb_f(b, "<text x=\"%d\" y=\"%.1f\" class=\"ty\">", c.l - 6, y + row - 4);
        esc(b, bars[i].model);
        sb_s(b, " &#183; ");
        esc(b, bars[i].method);
        sb_f(b,
             "</text><rect class=\"d\" x=\"%d\" y=\"%.1f\" width=\"%.1f\" height=\"%d\" "
             "fill=\"%s\"/><text x=\"%.1f\" y=\"%.1f\" class=\"lg\">%.3g s</text>",
             c.l, y + 2, fmax(1, cx(&c, bars[i].s) - c.l), row - 4, method_color(bars[i].method),
             cx(&c, bars[i].s) + 4, y + row - 4, bars[i].s);
    }
    sb_f(b, "<text x=\"%d\" y=\"%d\" class=\"xl\">seconds per input (log scale)</text>",
         (c.l + c.w) / 2, c.h - 4);
    free(bars);
    chart_end(pg, "Generation cost: seconds per input of each method, the mean over budgets "
                  "(DeepPerform's training is listed in the tables)");
}

/* ------------------------------------------------------------- sections */

static void head(page_t *pg)
{
    sb_t *b = &pg->b;
    sb_s(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<link rel=\"icon\" href=\"data:,\"><title>Campaign ");
    esc(b, pg->cid);
    sb_s(b, " &#8211; DeepPerform report</title><style>\n"
            "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:1500px}\n"
            "h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;margin-top:2em}\n"
            "table{border-collapse:collapse;margin:.5em 0 1em}\n"
            "td,th{border:1px solid #ddd;padding:2px 6px;text-align:right}\n"
            "th{background:#f4f4f4}td.l,th.l{text-align:left}\n"
            "tr.worse td{background:#fde2e2}.bad{color:#b00;font-weight:600}\n"
            ".ok{color:#070}.meta{color:#555}\n"
            "figure.chart{display:inline-block;margin:0 12px 12px 0;vertical-align:top}\n"
            "figcaption{font-size:12px;color:#555;max-width:460px}\n"
            "svg.chart{background:#fff}svg .frame{fill:none;stroke:#999}\n"
            "svg .grid{stroke:#eee}svg text{font:10px sans-serif;fill:#333}\n"
            "svg .tx{text-anchor:middle}svg .ty{text-anchor:end}svg .xl{text-anchor:middle}\n"
            "svg .yl{text-anchor:middle}\n"
            "table.grid td{font-size:11px}.ex{color:#555}\n"
            "img.strip{image-rendering:pixelated;display:block}\n"
            "details{margin:.5em 0}code{font-size:12px}\n"
            /* a model's section below the fold is laid out when scrolled to */
            "section.model{content-visibility:auto;contain-intrinsic-size:auto 4000px}\n"
            "</style></head><body>\n");
}

static void summary(page_t *pg)
{
    sb_t *b = &pg->b;
    const tj_val_t *r = pg->r, *c = tj_get(r, "campaign");
    const tj_val_t *models = arr(r, "models"), *bs = arr(r, "budgets"),
                   *cls = arr(r, "device_classes"), *fl = arr(r, "failures");
    sb_s(b, "<h1>Campaign ");
    esc(b, pg->cid);
    sb_s(b, "</h1><p class=\"meta\">");
    double gen = tj_get_num(c, "generated_unix", NAN);
    if (isfinite(gen) && gen >= 0 && gen < 1e12) {
        time_t t = (time_t)gen;
        struct tm tm;
        char when[64];
        gmtime_r(&t, &tm);
        strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", &tm);
        sb_f(b, "Generated %s. ", when);
    }
    if (*tj_get_str(c, "store_uri", "")) {
        sb_s(b, "Store <code>");
        esc(b, tj_get_str(c, "store_uri", ""));
        sb_s(b, "</code>. ");
    }
    sb_f(b, "%g results read, %g skipped. IDPB: executed fraction &#8805; %g.</p>\n",
         tj_get_num(r, "results", 0), tj_get_num(r, "skipped", 0),
         tj_get_num(tj_get(r, "thresholds"), "idpb_exec", 0.9));

    sb_s(b, "<h2 id=\"summary\">Summary</h2><p>IDPBs found per model and budget: inputs whose "
            "executed fraction reaches the threshold (of those generated), and per device "
            "class, the inputs over the campaign's latency (and energy) budget, or without "
            "one slower than the seeds' p99 latency, and the p90 I-Latency.</p>"
            "<table class=\"summary\"><tr><th class=\"l\">model</th><th class=\"l\">budget</th>"
            "<th class=\"l\">method</th><th>IDPBs (exec)</th>");
    /* against the device budgets when the campaign sets them, else against
     * the seeds' own p99 */
    const tj_val_t *th = tj_get(r, "thresholds");
    const double bud_ms = tj_get_num(th, "latency_ms", NAN),
                 bud_mj = tj_get_num(th, "energy_mj", NAN);
    const char *lat_key = isfinite(bud_ms) ? "over_latency_budget" : "over_seed_p99";
    for (size_t k = 0; cls && k < cls->n; k++) {
        sb_s(b, "<th>");
        esc(b, cls->items[k].str);
        if (isfinite(bud_ms))
            sb_f(b, ": &gt; %g ms</th>", bud_ms);
        else
            sb_s(b, ": &gt; seeds p99</th>");
        if (isfinite(bud_mj)) {
            sb_s(b, "<th>");
            esc(b, cls->items[k].str);
            sb_f(b, ": &gt; %g mJ</th>", bud_mj);
        }
        sb_s(b, "<th>");
        esc(b, cls->items[k].str);
        sb_s(b, ": I-Latency p90</th>");
    }
    sb_s(b, "</tr>\n");
    const tj_val_t *ms = arr(r, "methods");
    for (size_t m = 0; models && m < models->n; m++)
        for (size_t j = 0; bs && j < bs->n; j++)
            for (size_t k = 0; ms && k < ms->n; k++) {
                const tj_val_t *g =
                    group(pg, models->items[m].str, &bs->items[j], ms->items[k].str);
                if (!g || !strcmp(ms->items[k].str, "seeds")) continue;
                char bl[64];
                budget_label(&bs->items[j], bl, sizeof bl);
                double ic = tj_get_num(g, "idpb_count", NAN), n = tj_get_num(g, "n", NAN);
                sb_s(b, "<tr><td class=\"l\">");
                esc(b, models->items[m].str);
                sb_s(b, "</td><td class=\"l\">");
                esc(b, bl);
                sb_s(b, "</td><td class=\"l\">");
                esc(b, ms->items[k].str);
                sb_f(b, "</td><td class=\"%s\">", ic > 0 ? "bad" : "");
                num(b, ic, "%.0f");
                sb_s(b, " / ");
                num(b, n, "%.0f");
                sb_s(b, "</td>");
                for (size_t q = 0; cls && q < cls->n; q++) {
                    const tj_val_t *l = lat_of(g, cls->items[q].str);
                    double ov = tj_get_num(l, lat_key, NAN);
                    sb_f(b, "<td class=\"%s\">", ov > 0 ? "bad" : "");
                    num(b, ov, "%.0f");
                    sb_s(b, " / ");
                    num(b, tj_get_num(l, "n", NAN), "%.0f");
                    if (isfinite(bud_mj)) {
                        double oe = tj_get_num(l, "over_energy_budget", NAN);
                        sb_f(b, "</td><td class=\"%s\">", oe > 0 ? "bad" : "");
                        num(b, oe, "%.0f");
                        sb_s(b, " / ");
                        num(b, tj_get_num(l, "energy_n", NAN), "%.0f");
                    }
                    sb_s(b, "</td><td>");
                    num(b, tj_get_num(l, "ilatency_p90", NAN), "%+.1f%%");
                    sb_s(b, "</td>");
                }
                sb_s(b, "</tr>\n");
            }
    sb_s(b, "</table>\n");
    size_t nf = fl ? fl->n : 0, ns = count(r, "skipped_keys");
    if (!nf && !ns) {
        sb_s(b,
             "<p class=\"ok\" id=\"failures\">Nothing failed: every task's result was read.</p>\n");
    } else {
        sb_f(b,
             "<p class=\"bad\" id=\"failures\">%zu task%s did not complete; %zu result%s could "
             "not be read.</p>",
             nf, nf == 1 ? "" : "s", ns, ns == 1 ? "" : "s");
        if (nf) {
            sb_s(b, "<table><tr><th class=\"l\">task</th><th class=\"l\">state</th><th>attempts"
                    "</th><th class=\"l\">reason</th></tr>\n");
            for (size_t i = 0; i < nf; i++) {
                const tj_val_t *f = &fl->items[i];
                sb_s(b, "<tr><td class=\"l\">");
                esc(b, tj_get_str(f, "task", tj_get_str(f, "key", "")));
                sb_s(b, "</td><td class=\"l\">");
                esc(b, tj_get_str(f, "state", ""));
                sb_s(b, "</td><td>");
                num(b, tj_get_num(f, "attempts", NAN), "%.0f");
                sb_s(b, "</td><td class=\"l\">");
                esc(b, tj_get_str(f, "reason", ""));
                sb_s(b, "</td></tr>\n");
            }
            sb_s(b, "</table>\n");
        }
        const tj_val_t *sk = arr(r, "skipped_keys");
        for (size_t i = 0; i < ns; i++) {
            sb_s(b, i ? ", <code>" : "<p>Unreadable: <code>");
            esc(b, sk->items[i].str);
            sb_s(b, i + 1 == ns ? "</code></p>\n" : "</code>");
        }
    }
}

static void regression(page_t *pg)
{
    const tj_val_t *rg = tj_get(pg->r, "regression");
    if (!rg) return;
    sb_t *b = &pg->b;
    const tj_val_t *ch = arr(rg, "changes");
    size_t worse = 0, n = ch ? ch->n : 0;
    for (size_t i = 0; i < n; i++) worse += tj_get_num(&ch->items[i], "worse", 0) != 0;
    sb_s(b, "<h2 id=\"regression\">Against the baseline ");
    esc(b, tj_get_str(rg, "baseline", ""));
    sb_f(b, "</h2><p class=\"%s\">%zu figure%s worse by more than %g%% (%zu changed).</p>",
         worse ? "bad" : "ok", worse, worse == 1 ? "" : "s", tj_get_num(rg, "threshold_pct", 5), n);
    if (!n) return;
    sb_s(b, "<table><tr><th class=\"l\">figure</th><th>baseline</th><th>now</th><th>change</th>"
            "</tr>\n");
    size_t shown = 0;
    for (int pass = 0; pass < 2; pass++) /* the worse ones first */
        for (size_t i = 0; i < n && shown < 300; i++) {
            const tj_val_t *c = &ch->items[i];
            int w = tj_get_num(c, "worse", 0) != 0;
            if (w != (pass == 0)) continue;
            shown++;
            sb_f(b, "<tr%s><td class=\"l\">", w ? " class=\"worse\"" : "");
            esc(b, tj_get_str(c, "figure", ""));
            sb_s(b, "</td><td>");
            num(b, tj_get_num(c, "old", NAN), "%.4g");
            sb_s(b, "</td><td>");
            num(b, tj_get_num(c, "new", NAN), "%.4g");
            sb_s(b, "</td><td>");
            num(b, tj_get_num(c, "change_pct", NAN), "%+.1f%%");
            sb_s(b, "</td></tr>\n");
        }
    sb_s(b, "</table>\n");
    if (shown < n)
        sb_f(b, "<p>%zu more changes: <code>dp-report diff</code> lists them.</p>", n - shown);
}

static void model_tables(page_t *pg, const char *model)
{
    sb_t *b = &pg->b;
    const tj_val_t *gs = arr(pg->r, "groups"), *cls = arr(pg->r, "device_classes");
    sb_s(b, "<h3>Figures per norm, eps and method</h3><table class=\"groups\"><tr>"
            "<th class=\"l\">budget</th><th class=\"l\">method</th><th>n</th><th>exec seed</th>"
            "<th>exec x'</th><th>exec max</th><th>I-FLOPs mean</th><th>I-FLOPs max</th>"
            "<th>PSNR</th><th>norm max</th><th>in budget</th><th>s / input</th>"
            "<th>IDPB rate</th><th>IDPBs</th><th class=\"l\">training</th></tr>\n");
    for (size_t i = 0; gs && i < gs->n; i++) {
        const tj_val_t *g = &gs->items[i];
        if (strcmp(tj_get_str(g, "model", ""), model)) continue;
        const char *m = tj_get_str(g, "method", "");
        char bl[64] = "";
        if (strcmp(m, "seeds")) budget_label(g, bl, sizeof bl);
        sb_s(b, "<tr><td class=\"l\">");
        esc(b, bl);
        sb_s(b, "</td><td class=\"l\">");
        esc(b, m);
        sb_s(b, "</td><td>");
        num(b, tj_get_num(g, "n", NAN), "%.0f");
        sb_s(b, "</td><td>");
        num(b,
            tj_get_num(g, strcmp(m, "seeds") ? "exec_fraction_seed_mean" : "exec_fraction_mean",
                       NAN),
            "%.3f");
        sb_s(b, "</td><td>");
        num(b, strcmp(m, "seeds") ? tj_get_num(g, "exec_fraction_mean", NAN) : NAN, "%.3f");
        sb_s(b, "</td><td>");
        num(b, tj_get_num(g, "exec_fraction_max", NAN), "%.3f");
        sb_s(b, "</td><td>");
        num(b, tj_get_num(g, "iflops_mean", NAN), "%+.1f%%");
        sb_s(b, "</td><td>");
        num(b, tj_get_num(g, "iflops_max", NAN), "%+.1f%%");
        sb_s(b, "</td><td>");
        num(b, tj_get_num(g, "psnr_mean", NAN), "%.1f");
        sb_s(b, "</td><td>");
        num(b, tj_get_num(g, "norm_max", NAN), "%.4g");
        sb_s(b, "</td><td>");
        const tj_val_t *wb = tj_get(g, "within_budget");
        sb_s(b, !wb ? "&ndash;" : wb->num != 0 ? "yes" : "<span class=\"bad\">no</span>");
        sb_s(b, "</td><td>");
        num(b, tj_get_num(g, "seconds_per_input", NAN), "%.3g");
        sb_s(b, "</td><td>");
        num(b, tj_get_num(g, "idpb_rate", NAN) * 100, "%.1f%%");
        sb_s(b, "</td><td>");
        num(b, tj_get_num(g, "idpb_count", NAN), "%.0f");
        sb_s(b, "</td><td class=\"l\">");
        const tj_val_t *t = tj_get(g, "train");
        if (t && t->type == TJ_OBJ) {
            sb_f(b, "best exec %.3f at epoch %.0f of %.0f, ", tj_get_num(t, "best_exec", NAN),
                 tj_get_num(t, "best_epoch", NAN), tj_get_num(t, "epochs_run", NAN));
            num(b, tj_get_num(t, "seconds", NAN), "%.1f s");
        }
        sb_s(b, "</td></tr>\n");
    }
    sb_s(b, "</table>\n");
    if (!cls || !cls->n) return;
    int energy = 0;
    for (size_t i = 0; gs && i < gs->n; i++)
        for (size_t k = 0; k < count(&gs->items[i], "latency"); k++)
            energy |= tj_get(&arr(&gs->items[i], "latency")->items[k], "energy_mj_p50") != NULL;
    sb_s(b, "<h3>Latency per device class</h3><table class=\"latency\"><tr><th class=\"l\">budget"
            "</th><th class=\"l\">method</th><th class=\"l\">class</th><th>n</th><th>p50 ms</th>"
            "<th>p90 ms</th><th>p99 ms</th><th>I-Latency p50</th><th>I-Latency p90</th>"
            "<th>I-Latency p99</th><th>&gt; seeds p99</th>");
    if (energy)
        sb_s(b, "<th>energy p50 mJ</th><th>energy p90 mJ</th><th>energy p99 mJ</th><th>I-Energy "
                "p50</th><th>I-Energy p90</th><th>I-Energy p99</th>");
    sb_s(b, "</tr>\n");
    for (size_t i = 0; gs && i < gs->n; i++) {
        const tj_val_t *g = &gs->items[i];
        if (strcmp(tj_get_str(g, "model", ""), model)) continue;
        const char *m = tj_get_str(g, "method", "");
        const tj_val_t *ls = arr(g, "latency");
        for (size_t k = 0; ls && k < ls->n; k++) {
            const tj_val_t *l = &ls->items[k];
            char bl[64] = "";
            if (strcmp(m, "seeds")) budget_label(g, bl, sizeof bl);
            sb_s(b, "<tr><td class=\"l\">");
            esc(b, bl);
            sb_s(b, "</td><td class=\"l\">");
            esc(b, m);
            sb_s(b, "</td><td class=\"l\">");
            esc(b, tj_get_str(l, "device_class", ""));
            sb_s(b, "</td><td>");
            num(b, tj_get_num(l, "n", NAN), "%.0f");
            static const char *const f[] = {"latency_ms_p50", "latency_ms_p90", "latency_ms_p99",
                                            "ilatency_p50",   "ilatency_p90",   "ilatency_p99",
                                            "over_seed_p99",  "energy_mj_p50",  "energy_mj_p90",
                                            "energy_mj_p99",  "ienergy_p50",    "ienergy_p90",
                                            "ienergy_p99"};
            for (int q = 0; q < (energy ? 13 : 7); q++) {
                sb_s(b, "</td><td>");
                num(b, tj_get_num(l, f[q], NAN),
                    q < 3 || (q >= 7 && q < 10) ? "%.3f"
                    : q == 6                    ? "%.0f"
                                                : "%+.1f%%");
            }
            sb_s(b, "</td></tr>\n");
        }
    }
    sb_s(b, "</table>\n");
}

static void model_charts(page_t *pg, const char *model)
{
    const tj_val_t *bs = arr(pg->r, "budgets"), *cls = arr(pg->r, "device_classes"),
                   *sc = arr(pg->r, "scatter");
    sb_s(&pg->b, "<h3>Charts</h3><div class=\"charts\">\n");
    for (size_t j = 0; bs && j < bs->n; j++) chart_exec(pg, model, &bs->items[j]);
    for (size_t k = 0; cls && k < cls->n; k++) chart_cdf(pg, model, cls->items[k].str);
    for (size_t k = 0; sc && k < sc->n; k++)
        if (!strcmp(tj_get_str(&sc->items[k], "model", ""), model))
            chart_scatter(pg, &sc->items[k]);
    sb_s(&pg->b, "</div>\n");
}

/* One worst input: its strip (seed, then per method x' and the magnified
 * perturbation) shown 3x, each tile linked through an image map. */
static void strip(page_t *pg, const tj_val_t *w)
{
    sb_t *b = &pg->b;
    const tj_val_t *cs = arr(w, "columns");
    const double tw = fmin(256, fmax(1, tj_get_num(w, "width", 28))),
                 th = fmin(256, fmax(1, tj_get_num(w, "height", 28))),
                 gap = fmin(16, fmax(0, tj_get_num(w, "gap", 0)));
    const size_t nc = cs ? (cs->n < 64 ? cs->n : 64) : 0;
    const int z = 3, map = ++pg->maps;
    const double width = nc ? nc * (tw + gap) - gap : tw;
    sb_f(b, "<tr><td>%.0f</td><td class=\"l\">", tj_get_num(w, "seed_index", NAN));
    if (*tj_get_str(w, "png", "")) {
        sb_f(b, "<img class=\"strip\" width=\"%.0f\" height=\"%.0f\" usemap=\"#strip%d\" alt=\"",
             width * z, th * z, map);
        for (size_t i = 0; i < nc; i++) {
            if (i) sb_s(b, " | ");
            esc(b, tj_get_str(&cs->items[i], "method", ""));
            if (!strcmp(tj_get_str(&cs->items[i], "kind", ""), "delta")) sb_s(b, " delta");
        }
        sb_s(b, "\" src=\"data:image/png;base64,");
        sb_s(b, tj_get_str(w, "png", "")); /* base64, checked */
        sb_f(b, "\"><map name=\"strip%d\">", map);
        for (size_t i = 0; i < nc; i++) {
            const tj_val_t *c = &cs->items[i];
            const char *key = tj_get_str(c, "artifact", "");
            if (!*key) continue;
            double x0 = i * (tw + gap) * z;
            sb_f(b, "<area shape=\"rect\" coords=\"%.0f,0,%.0f,%.0f\" href=\"", x0, x0 + tw * z,
                 th * z);
            artifact_href(pg, key);
            sb_s(b, "\" alt=\"");
            esc(b, tj_get_str(c, "method", ""));
            sb_s(b, "\" title=\"");
            esc(b, tj_get_str(c, "method", ""));
            sb_f(b, ", seed %.0f, executed fraction %.3f: ", tj_get_num(w, "seed_index", NAN),
                 tj_get_num(c, "exec_fraction", NAN));
            esc(b, key);
            sb_s(b, "\">");
        }
        sb_s(b, "</map>");
    }
    sb_s(b, "<div class=\"ex\">executed fraction: ");
    for (size_t i = 0, k = 0; i < nc; i++) {
        const tj_val_t *c = &cs->items[i];
        if (!strcmp(tj_get_str(c, "kind", ""), "delta")) continue;
        if (k++) sb_s(b, " &#183; ");
        esc(b, tj_get_str(c, "method", ""));
        sb_s(b, " ");
        num(b, tj_get_num(c, "exec_fraction", NAN), "%.3f");
    }
    sb_s(b, "</div></td></tr>\n");
}

static void grids(page_t *pg, const char *model)
{
    sb_t *b = &pg->b;
    const tj_val_t *ws = arr(pg->r, "worst"), *bs = arr(pg->r, "budgets");
    for (size_t j = 0; bs && j < bs->n; j++) {
        const tj_val_t *first = NULL;
        for (size_t i = 0; ws && i < ws->n && !first; i++)
            if (!strcmp(tj_get_str(&ws->items[i], "model", ""), model) &&
                same_budget(&ws->items[i], &bs->items[j]))
                first = &ws->items[i];
        if (!first) continue;
        char bl[64];
        budget_label(&bs->items[j], bl, sizeof bl);
        sb_s(b, "<h3>Worst inputs, ");
        esc(b, bl);
        sb_s(b, "</h3><p>DeepPerform's inputs with the highest executed fraction, beside their "
                "seed and the baselines' inputs from the same seed; &#916; is x' &#8722; x "
                "magnified (red brighter, blue darker). Each tile links to its sample set. "
                "Tiles: ");
        const tj_val_t *cs = arr(first, "columns");
        for (size_t k = 0; cs && k < cs->n; k++) {
            const tj_val_t *c = &cs->items[k];
            if (k) sb_s(b, " | ");
            if (!strcmp(tj_get_str(c, "kind", ""), "delta")) {
                sb_s(b, "&#916; ");
                esc(b, tj_get_str(c, "method", ""));
                sb_f(b, " &#215;%.3g", tj_get_num(c, "delta_scale", NAN));
            } else {
                esc(b, tj_get_str(c, "method", ""));
            }
        }
        sb_s(b, ".</p><table class=\"grid\"><tr><th>seed index</th><th class=\"l\">inputs</th>"
                "</tr>\n");
        for (size_t i = 0; ws && i < ws->n; i++) {
            const tj_val_t *w = &ws->items[i];
            if (!strcmp(tj_get_str(w, "model", ""), model) && same_budget(w, &bs->items[j]))
                strip(pg, w);
        }
        sb_s(b, "</table>\n");
    }
}

static void provenance(page_t *pg)
{
    sb_t *b = &pg->b;
    const tj_val_t *gs = arr(pg->r, "groups"), *k = arr(tj_get(pg->r, "provenance"), "kernels");
    sb_s(b, "<h2 id=\"provenance\">Provenance</h2><p>Kernels (OpenBLAS core / nn_gemm path / "
            "threads): ");
    for (size_t i = 0; k && i < k->n; i++) {
        if (i) sb_s(b, ", ");
        sb_s(b, "<code>");
        esc(b, k->items[i].str);
        sb_s(b, "</code>");
    }
    const tj_val_t *c = tj_get(pg->r, "campaign");
    if (*tj_get_str(c, "dataset", "")) {
        sb_s(b, ". Seeds from <code>");
        esc(b, tj_get_str(c, "dataset", ""));
        sb_s(b, "</code>");
    }
    sb_s(b, ".</p><details><summary>Every measurement</summary><table><tr><th class=\"l\">"
            "measure.json</th><th class=\"l\">device</th></tr>\n");
    for (size_t i = 0; gs && i < gs->n; i++) {
        const tj_val_t *ls = arr(&gs->items[i], "latency");
        for (size_t j = 0; ls && j < ls->n; j++) {
            const tj_val_t *ms = arr(&ls->items[j], "measurements");
            for (size_t q = 0; ms && q < ms->n; q++) {
                const tj_val_t *m = &ms->items[q], *d = tj_get(m, "device");
                const char *key = tj_get_str(m, "key", "");
                sb_s(b, "<tr><td class=\"l\"><a href=\"");
                artifact_href(pg, key);
                sb_s(b, "\">");
                esc(b, key);
                sb_s(b, "</a></td><td class=\"l\">");
                esc(b, tj_get_str(d, "device_class", ""));
                sb_s(b, ", ");
                esc(b, tj_get_str(d, "cpu", ""));
                sb_s(b, ", ");
                esc(b, tj_get_str(d, "kernel", ""));
                sb_s(b, tj_get_num(d, "pinned", 0) ? ", pinned" : "");
                sb_s(b, "</td></tr>\n");
            }
        }
    }
    sb_s(b, "</table></details>\n");
}

dp_err_t dp_report_html(const char *text, size_t len, char **html, size_t *hlen)
{
    *html = NULL;
    if (hlen) *hlen = 0;
    tj_val_t r;
    dp_err_t err = rpt_read(text, len, &r);
    if (err) return err;
    page_t pg = {.r = &r};
    pg.cid = tj_get_str(tj_get(&r, "campaign"), "id", "");
    head(&pg);
    summary(&pg);
    regression(&pg);
    const tj_val_t *models = arr(&r, "models");
    for (size_t m = 0; models && m < models->n; m++) {
        const char *model = models->items[m].str;
        sb_s(&pg.b, "<section class=\"model\"><h2 class=\"model\">Model ");
        esc(&pg.b, model);
        sb_s(&pg.b, "</h2>\n");
        model_tables(&pg, model);
        model_charts(&pg, model);
        grids(&pg, model);
        sb_s(&pg.b, "</section>\n");
    }
    sb_s(&pg.b, "<h2 id=\"cost\">Generation cost</h2>\n");
    chart_cost(&pg);
    provenance(&pg);
    sb_s(&pg.b, "</body></html>\n");
    tj_val_free(&r);
    if (pg.b.nomem) {
        free(pg.b.p);
        return dp_err_set(DP_ERR_NOMEM, "report: out of memory rendering the page");
    }
    *html = pg.b.p;
    if (hlen) *hlen = pg.b.len;
    return DP_OK;
}
