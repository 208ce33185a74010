/* report.json from the collected source (docs/REPORT.md lists every
 * field). Cells are sorted by model, norm, budget and method; shards add
 * up (means weighted by their input counts). Distributions are kept small
 * enough for a page of 120 cells: histograms of 20 bins, CDFs of 51
 * nearest-rank percentiles, scatter plots of at most 400 points (the
 * correlation over every point). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "measure/stats.h"
#include "report/report_impl.h"

#define HIST_BINS   20
#define CDF_POINTS  51
#define SCATTER_MAX 400

void dp_report_opts_init(dp_report_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->worst = 4;
    o->regress_pct = 5;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double rpt_rank_pct(const double *sorted, size_t n, double p)
{
    /* the measurer's nearest rank, so the report and measure.json agree */
    return n ? sorted[measure_nearest_rank(n, p / 100.0) - 1] : NAN;
}

static int cmp_group(const void *a, const void *b)
{
    const rpt_group_t *x = a, *y = b;
    int k;
    if ((k = strcmp(x->model, y->model))) return k;
    int sx = !strcmp(x->method, "seeds"), sy = !strcmp(y->method, "seeds");
    if (sx != sy) return sy - sx;
    if ((k = strcmp(x->norm, y->norm))) return k;
    if (x->l2_at_most != y->l2_at_most) return x->l2_at_most - y->l2_at_most;
    if (x->eps != y->eps) return x->eps < y->eps ? -1 : 1;
    return rpt_method_rank(x->method) - rpt_method_rank(y->method);
}

static int cmp_meas_index(const void *a, const void *b)
{
    int64_t x = ((const rpt_meas_t *)a)->index, y = ((const rpt_meas_t *)b)->index;
    return (x > y) - (x < y);
}

static int cmp_input_index(const void *a, const void *b)
{
    int64_t x = ((const rpt_input_t *)a)->index, y = ((const rpt_input_t *)b)->index;
    return (x > y) - (x < y);
}

void rpt_write_val(tj_writer_t *w, const tj_val_t *v)
{
    switch (v->type) {
    case TJ_NULL:
        tj_null(w);
        break;
    case TJ_BOOL:
        tj_bool(w, v->num != 0);
        break;
    case TJ_NUM:
        tj_num(w, v->num);
        break;
    case TJ_STR:
        tj_str(w, v->str);
        break;
    case TJ_ARR:
        tj_arr(w);
        for (size_t i = 0; i < v->n; i++) rpt_write_val(w, &v->items[i]);
        tj_arr_end(w);
        break;
    case TJ_OBJ:
        tj_obj(w);
        for (size_t i = 0; i < v->n; i++) {
            tj_key(w, v->keys[i]);
            rpt_write_val(w, &v->items[i]);
        }
        tj_obj_end(w);
        break;
    }
}

char *rpt_base64(const uint8_t *p, size_t n)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *o = malloc((n + 2) / 3 * 4 + 1), *q = o;
    if (!o) return NULL;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n) v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n) v |= p[i + 2];
        *q++ = t[v >> 18 & 63];
        *q++ = t[v >> 12 & 63];
        *q++ = i + 1 < n ? t[v >> 6 & 63] : '=';
        *q++ = i + 2 < n ? t[v & 63] : '=';
    }
    *q = '\0';
    return o;
}

/* ------------------------------------------------------------- distributions */

static void hist(tj_writer_t *w, const char *key, const float *v, size_t n, size_t stride)
{
    int64_t bins[HIST_BINS] = {0};
    for (size_t i = 0; i < n; i++) {
        float x = *(const float *)((const char *)v + i * stride);
        if (!isfinite(x)) continue;
        int b = (int)(x * HIST_BINS);
        bins[b < 0 ? 0 : b >= HIST_BINS ? HIST_BINS - 1 : b]++;
    }
    tj_key(w, key);
    tj_arr(w);
    for (int b = 0; b < HIST_BINS; b++) tj_int(w, bins[b]);
    tj_arr_end(w);
}

/* p50/p90/p99, mean and max of v (sorted here), under prefix. */
static void pcts(tj_writer_t *w, const char *prefix, double *v, size_t n)
{
    char k[64];
    double sum = 0, mx = NAN;
    for (size_t i = 0; i < n; i++) sum += v[i], mx = i == 0 || v[i] > mx ? v[i] : mx;
    rpt_qsort(v, n, sizeof *v, cmp_double);
    snprintf(k, sizeof k, "%s_mean", prefix);
    tj_knum(w, k, n ? sum / (double)n : NAN);
    static const int p[] = {50, 90, 99};
    for (int i = 0; i < 3; i++) {
        snprintf(k, sizeof k, "%s_p%d", prefix, p[i]);
        tj_knum(w, k, rpt_rank_pct(v, n, p[i]));
    }
    snprintf(k, sizeof k, "%s_max", prefix);
    tj_knum(w, k, mx);
}

static const rpt_lats_t *seeds_lats(const dp_report_src_t *s, const char *model, const char *cls)
{
    const rpt_group_t *g = rpt_group_find(s, model, "", 0, 0, "seeds");
    if (!g) return NULL;
    for (size_t k = 0; k < g->nlat; k++)
        if (!strcmp(g->lat[k].cls, cls)) return &g->lat[k];
    return NULL;
}

static const rpt_meas_t *find_meas(const rpt_lats_t *l, int64_t index)
{
    rpt_meas_t key = {.index = index};
    return l && l->n ? bsearch(&key, l->v, l->n, sizeof key, cmp_meas_index) : NULL;
}

static void json_lats(tj_writer_t *w, const dp_report_src_t *s, const rpt_group_t *g,
                      const rpt_lats_t *l)
{
    const int is_seeds = !strcmp(g->method, "seeds");
    const rpt_lats_t *seeds = is_seeds ? NULL : seeds_lats(s, g->model, l->cls);
    size_t n = l->n, ne = 0, ni = 0, nie = 0, over = 0, over_ms = 0, over_mj = 0;
    double *v = malloc((n ? n : 1) * sizeof *v), *e = malloc((n ? n : 1) * sizeof *e);
    double *il = malloc((n ? n : 1) * sizeof *il), *ie = malloc((n ? n : 1) * sizeof *ie);
    if (!v || !e || !il || !ie) {
        w->failed = 1;
        goto done;
    }
    tj_obj(w);
    tj_kstr(w, "device_class", l->cls);
    tj_kint(w, "n", (int64_t)n);
    double seed_p99 = NAN;
    if (seeds && seeds->n) {
        for (size_t i = 0; i < seeds->n; i++) v[i] = seeds->v[i].ms;
        rpt_qsort(v, seeds->n, sizeof *v, cmp_double);
        seed_p99 = rpt_rank_pct(v, seeds->n, 99);
    }
    for (size_t i = 0; i < n; i++) {
        const rpt_meas_t *m = &l->v[i];
        if (isfinite(m->energy_mj)) e[ne++] = m->energy_mj;
        if (m->ms > seed_p99) over++;
        over_ms += m->ms > s->budget_ms;
        over_mj += m->energy_mj > s->budget_mj;
        const rpt_meas_t *sm = find_meas(seeds, m->index);
        if (sm && sm->ms > 0) il[ni++] = (m->ms / sm->ms - 1) * 100;
        if (sm && sm->energy_mj > 0 && isfinite(m->energy_mj))
            ie[nie++] = (m->energy_mj / sm->energy_mj - 1) * 100;
    }
    for (size_t i = 0; i < n; i++) v[i] = l->v[i].ms;
    pcts(w, "latency_ms", v, n);
    tj_key(w, "latency_cdf_ms");
    tj_arr(w);
    for (int k = 0; n && k < CDF_POINTS; k++)
        tj_numf(w, "%.5g", rpt_rank_pct(v, n, 100.0 * k / (CDF_POINTS - 1)));
    tj_arr_end(w);
    if (ne) {
        tj_kint(w, "energy_n", (int64_t)ne);
        pcts(w, "energy_mj", e, ne);
    }
    if (isfinite(s->budget_ms)) tj_kint(w, "over_latency_budget", (int64_t)over_ms);
    if (isfinite(s->budget_mj) && ne) tj_kint(w, "over_energy_budget", (int64_t)over_mj);
    if (!is_seeds) {
        tj_kint(w, "ilatency_n", (int64_t)ni);
        pcts(w, "ilatency", il, ni);
        if (isfinite(seed_p99)) {
            tj_knum(w, "seed_latency_p99_ms", seed_p99);
            tj_kint(w, "over_seed_p99", (int64_t)over);
        }
        if (nie) {
            tj_kint(w, "ienergy_n", (int64_t)nie);
            pcts(w, "ienergy", ie, nie);
        }
    }
    tj_key(w, "measurements");
    tj_arr(w);
    for (size_t k = 0; k < g->nmeas; k++) {
        if (strcmp(g->meas_cls[k], l->cls)) continue;
        tj_obj(w);
        tj_kstr(w, "key", g->meas_keys[k]);
        tj_key(w, "device");
        tj_raw(w, g->meas_device[k]);
        tj_key(w, "provenance");
        tj_raw(w, g->meas_prov[k]);
        tj_obj_end(w);
    }
    tj_arr_end(w);
    tj_obj_end(w);
done:
    free(v), free(e), free(il), free(ie);
}

/* The seeds' per-input figures of model (from every sample set of it, one
 * entry per seed index); *n of them, new array. */
static rpt_input_t *seed_inputs(const dp_report_src_t *s, const char *model, size_t *n)
{
    size_t total = 0;
    for (size_t i = 0; i < s->ng; i++)
        if (!strcmp(s->g[i].model, model)) total += s->g[i].nin;
    rpt_input_t *v = malloc((total ? total : 1) * sizeof *v);
    *n = 0;
    if (!v) return NULL;
    for (size_t i = 0; i < s->ng; i++)
        if (!strcmp(s->g[i].model, model))
            for (size_t k = 0; k < s->g[i].nin; k++) v[(*n)++] = s->g[i].in[k];
    rpt_qsort(v, *n, sizeof *v, cmp_input_index);
    size_t u = 0;
    for (size_t k = 0; k < *n; k++)
        if (u == 0 || v[u - 1].index != v[k].index) v[u++] = v[k];
    *n = u;
    return v;
}

static void json_group(tj_writer_t *w, const dp_report_src_t *s, const rpt_group_t *g)
{
    tj_obj(w);
    tj_kstr(w, "model", g->model);
    const int is_seeds = !strcmp(g->method, "seeds");
    if (!is_seeds) {
        tj_kstr(w, "norm", g->norm);
        tj_kfloat(w, "eps", (float)g->eps);
        tj_kbool(w, "l2_at_most", g->l2_at_most);
    }
    tj_kstr(w, "method", g->method);
    if (is_seeds) {
        size_t n = 0;
        rpt_input_t *v = seed_inputs(s, g->model, &n);
        if (!v) {
            w->failed = 1;
        } else if (n) {
            double sum = 0;
            for (size_t k = 0; k < n; k++) sum += v[k].exec_seed;
            tj_kint(w, "n", (int64_t)n);
            tj_knum(w, "exec_fraction_mean", sum / (double)n);
            hist(w, "exec_fraction_hist", &v[0].exec_seed, n, sizeof *v);
        }
        free(v);
    } else if (g->n) {
        double n = (double)g->n;
        size_t idpb = 0;
        double emax = NAN;
        for (size_t k = 0; k < g->nin; k++) {
            idpb += g->in[k].exec >= s->idpb_exec;
            if (k == 0 || g->in[k].exec > emax) emax = g->in[k].exec;
        }
        tj_kint(w, "n", (int64_t)g->n);
        tj_kint(w, "shards", (int64_t)g->shards);
        tj_knum(w, "iflops_mean", g->s_iflops / n);
        tj_knum(w, "iflops_max", g->max_iflops);
        tj_knum(w, "exec_fraction_seed_mean", g->s_exec_seed / n);
        tj_knum(w, "exec_fraction_mean", g->s_exec / n);
        tj_knum(w, "exec_fraction_max", emax);
        tj_knum(w, "psnr_mean", g->s_psnr / n);
        tj_knum(w, "norm_max", g->norm_max);
        tj_kbool(w, "within_budget", g->within);
        tj_knum(w, "seconds", g->seconds);
        tj_knum(w, "seconds_per_input", g->seconds / n);
        tj_knum(w, "idpb_rate", g->s_idpb / n);
        tj_kint(w, "idpb_count", g->nin ? (int64_t)idpb : (int64_t)llround(g->s_idpb));
        if (g->nin) hist(w, "exec_fraction_hist", &g->in[0].exec, g->nin, sizeof g->in[0]);
    }
    if (g->has_train) {
        tj_key(w, "train");
        tj_obj(w);
        tj_knum(w, "best_exec", g->best_exec);
        tj_kint(w, "best_epoch", g->best_epoch);
        tj_kint(w, "epochs_run", g->epochs_run);
        tj_kint(w, "resumed_from", g->resumed_from);
        tj_kbool(w, "early_stopped", g->early_stopped);
        tj_knum(w, "seconds", g->train_seconds);
        tj_obj_end(w);
    }
    tj_key(w, "artifacts");
    tj_arr(w);
    for (size_t k = 0; k < g->nart; k++) tj_str(w, g->artifacts[k]);
    tj_arr_end(w);
    tj_key(w, "latency");
    tj_arr(w);
    for (size_t k = 0; k < g->nlat; k++) json_lats(w, s, g, &g->lat[k]);
    tj_arr_end(w);
    tj_obj_end(w);
}

/* ------------------------------------------------------------- scatter */

static void json_scatter(tj_writer_t *w, const dp_report_src_t *s, const char *model,
                         const char *cls)
{
    size_t n = 0;
    double sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
    for (size_t i = 0; i < s->ng; i++) {
        const rpt_group_t *g = &s->g[i];
        if (strcmp(g->model, model)) continue;
        for (size_t k = 0; k < g->nlat; k++) {
            if (strcmp(g->lat[k].cls, cls)) continue;
            for (size_t j = 0; j < g->lat[k].n; j++) {
                const rpt_meas_t *m = &g->lat[k].v[j];
                if (!isfinite(m->flops)) continue;
                double x = m->flops / 1e6, y = m->ms;
                n++, sx += x, sy += y, sxx += x * x, syy += y * y, sxy += x * y;
            }
        }
    }
    if (!n) return;
    double cov = sxy - sx * sy / (double)n, vx = sxx - sx * sx / (double)n,
           vy = syy - sy * sy / (double)n;
    tj_obj(w);
    tj_kstr(w, "model", model);
    tj_kstr(w, "device_class", cls);
    tj_kint(w, "n", (int64_t)n);
    tj_knum(w, "pearson", vx > 0 && vy > 0 ? cov / sqrt(vx * vy) : NAN);
    tj_key(w, "points"); /* [MFLOPs, ms, method rank] */
    tj_arr(w);
    size_t stride = (n + SCATTER_MAX - 1) / SCATTER_MAX, at = 0;
    for (size_t i = 0; i < s->ng; i++) {
        const rpt_group_t *g = &s->g[i];
        if (strcmp(g->model, model)) continue;
        for (size_t k = 0; k < g->nlat; k++) {
            if (strcmp(g->lat[k].cls, cls)) continue;
            for (size_t j = 0; j < g->lat[k].n; j++) {
                const rpt_meas_t *m = &g->lat[k].v[j];
                if (!isfinite(m->flops) || at++ % stride) continue;
                tj_arr(w);
                tj_numf(w, "%.5g", m->flops / 1e6);
                tj_numf(w, "%.5g", m->ms);
                tj_int(w, rpt_method_rank(g->method));
                tj_arr_end(w);
            }
        }
    }
    tj_arr_end(w);
    tj_obj_end(w);
}

/* ------------------------------------------------------------- images */

#define STRIP_GAP 2 /* white pixels between the tiles of a strip */

/* Strips of one-channel images are palette PNGs (a third of the bytes of
 * RGB): 128 grays, then 64 shades of red (x' above the seed) and 64 of
 * blue (below), white the lightest of each. */
#define PAL_GRAY 0
#define PAL_RED  128
#define PAL_BLUE 192

static void palette(uint8_t *rgb)
{
    for (int i = 0; i < 128; i++)
        rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = (uint8_t)lround(i * 255.0 / 127);
    for (int i = 0; i < 64; i++) {
        uint8_t lo = (uint8_t)lround(255 * (1 - i / 63.0));
        uint8_t *r = rgb + 3 * (PAL_RED + i), *b = rgb + 3 * (PAL_BLUE + i);
        r[0] = 255, r[1] = lo, r[2] = lo;
        b[0] = lo, b[1] = lo, b[2] = 255;
    }
}

/* Tile t of a strip (bytes per pixel bpp: 1 palette index, 3 RGB; stride
 * bytes a row): x (c,h,w in [0, 1]); with seed, the perturbation x - seed
 * magnified by scale, red up, blue down. */
static void tile(uint8_t *strip, size_t stride, int bpp, int t, const float *x, const float *seed,
                 int c, int h, int wd, double scale)
{
    const size_t plane = (size_t)h * wd;
    for (int yy = 0; yy < h; yy++)
        for (int xx = 0; xx < wd; xx++) {
            const size_t p = (size_t)yy * wd + xx;
            uint8_t *px = strip + (size_t)yy * stride + ((size_t)t * (wd + STRIP_GAP) + xx) * bpp;
            if (seed) {
                double d = 0;
                for (int k = 0; k < c; k++) d += x[k * plane + p] - seed[k * plane + p];
                d = d / c * scale;
                double a = fmin(1, fabs(d));
                if (bpp == 1) {
                    *px = (uint8_t)((d < 0 ? PAL_BLUE : PAL_RED) + lround(a * 63));
                } else {
                    uint8_t lo = (uint8_t)lround(255 * (1 - a));
                    px[0] = d > 0 ? 255 : lo;
                    px[1] = lo;
                    px[2] = d < 0 ? 255 : lo;
                }
            } else if (bpp == 1) {
                *px = (uint8_t)(PAL_GRAY + lround(127 * fmin(1, fmax(0, x[p]))));
            } else {
                for (int k = 0; k < 3; k++) {
                    double v = x[(c == 3 ? k : 0) * plane + p];
                    px[k] = (uint8_t)lround(255 * fmin(1, fmax(0, v)));
                }
            }
        }
}

static int cmp_worst(const void *a, const void *b)
{
    const rpt_worst_t *x = a, *y = b;
    if (x->exec != y->exec) return x->exec < y->exec ? 1 : -1;
    return (x->index > y->index) - (x->index < y->index);
}

static int cmp_img(const void *a, const void *b)
{
    return rpt_method_rank(((const rpt_img_t *)a)->method) -
           rpt_method_rank(((const rpt_img_t *)b)->method);
}

static void json_column(tj_writer_t *w, const char *method, const char *kind, const char *artifact,
                        double exec, double scale)
{
    tj_obj(w);
    tj_kstr(w, "method", method);
    tj_kstr(w, "kind", kind);
    if (artifact) tj_kstr(w, "artifact", artifact);
    tj_knum(w, "exec_fraction", exec);
    if (!strcmp(kind, "delta")) tj_knum(w, "delta_scale", scale);
    tj_obj_end(w);
}

/* DeepPerform's keep worst inputs of g, each one strip: the seed, then per
 * method x' and its magnified perturbation (one PNG, so the page decodes
 * one image per input, not one per tile). */
static void json_worst(tj_writer_t *w, const dp_report_src_t *s, rpt_group_t *g, int keep)
{
    rpt_qsort(g->worst, g->nworst, sizeof g->worst[0], cmp_worst);
    const size_t d = (size_t)g->c * g->h * g->w;
    const int seeds_ok = s->test && dp_dataset_sample_size(s->test) == d && d;
    /* the magnification: the budget's largest pixel change fills the scale */
    double scale = !strcmp(g->norm, "linf") && g->eps > 0 ? 1 / g->eps : 10;
    for (size_t k = 0; k < g->nworst && k < (size_t)keep; k++) {
        rpt_worst_t *wr = &g->worst[k];
        rpt_qsort(wr->img, wr->nimg, sizeof *wr->img, cmp_img);
        const float *seed = seeds_ok && wr->index >= 0 && (uint64_t)wr->index < s->test->n
                                ? s->test->images + (size_t)wr->index * d
                                : NULL;
        const int tiles = (seed ? 1 : 0) + (int)wr->nimg * (seed ? 2 : 1);
        const int bpp = g->c == 1 ? 1 : 3;
        const size_t width = (size_t)tiles * (g->w + STRIP_GAP) - STRIP_GAP, stride = width * bpp;
        uint8_t *strip = malloc(stride * g->h);
        if (!strip) {
            w->failed = 1;
            return;
        }
        memset(strip, bpp == 1 ? PAL_GRAY + 127 : 255, stride * g->h);
        int t = 0;
        double seed_exec = NAN;
        for (size_t j = 0; j < g->nin; j++)
            if (g->in[j].index == wr->index) seed_exec = g->in[j].exec_seed;
        tj_obj(w);
        tj_kstr(w, "model", g->model);
        tj_kstr(w, "norm", g->norm);
        tj_kfloat(w, "eps", (float)g->eps);
        tj_kbool(w, "l2_at_most", g->l2_at_most);
        tj_kint(w, "seed_index", wr->index);
        tj_kint(w, "width", g->w);
        tj_kint(w, "height", g->h);
        tj_kint(w, "gap", STRIP_GAP);
        tj_key(w, "columns");
        tj_arr(w);
        if (seed) {
            tile(strip, stride, bpp, t++, seed, NULL, g->c, g->h, g->w, 1);
            json_column(w, "seeds", "input", NULL, seed_exec, 0);
        }
        for (size_t j = 0; j < wr->nimg; j++) {
            const rpt_img_t *im = &wr->img[j];
            tile(strip, stride, bpp, t++, im->x, NULL, g->c, g->h, g->w, 1);
            json_column(w, im->method, "input", im->key, im->exec, 0);
            if (seed) {
                tile(strip, stride, bpp, t++, im->x, seed, g->c, g->h, g->w, scale);
                json_column(w, im->method, "delta", im->key, im->exec, scale);
            }
        }
        tj_arr_end(w);
        uint8_t *png = NULL;
        size_t len = 0;
        char *b64 = NULL;
        uint8_t pal[256 * 3];
        palette(pal);
        if ((bpp == 1 ? dp_report_png_palette(strip, (int)width, g->h, pal, 256, &png, &len)
                      : dp_report_png(strip, (int)width, g->h, 3, &png, &len)) == DP_OK)
            b64 = rpt_base64(png, len);
        if (!b64) w->failed = 1;
        tj_kstr(w, "png", b64 ? b64 : "");
        tj_obj_end(w);
        free(b64);
        free(png);
        free(strip);
    }
}

/* ------------------------------------------------------------- lists */

typedef struct names {
    char (*v)[RPT_NAME];
    size_t n;
} names_t;

static int name_add(names_t *l, const char *x)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->v[i], x)) return 0;
    char(*v)[RPT_NAME] = realloc(l->v, (l->n + 1) * sizeof *v);
    if (!v) return -1;
    l->v = v;
    snprintf(v[l->n++], RPT_NAME, "%s", x);
    return 0;
}

static int cmp_name(const void *a, const void *b) { return strcmp(a, b); }

static int cmp_method_name(const void *a, const void *b)
{
    int k = rpt_method_rank(a) - rpt_method_rank(b);
    return k ? k : strcmp(a, b);
}

/* The budgets of every cell but the seeds', once each, by norm then eps. */
static void json_budgets(tj_writer_t *w, const dp_report_src_t *s)
{
    const rpt_group_t **b = malloc((s->ng ? s->ng : 1) * sizeof *b);
    size_t n = 0;
    if (!b) {
        w->failed = 1;
        return;
    }
    for (size_t i = 0; i < s->ng; i++) {
        const rpt_group_t *g = &s->g[i];
        int seen = !strcmp(g->method, "seeds");
        for (size_t k = 0; k < n && !seen; k++)
            seen = !strcmp(b[k]->norm, g->norm) && b[k]->eps == g->eps &&
                   b[k]->l2_at_most == g->l2_at_most;
        if (!seen) b[n++] = g;
    }
    for (size_t i = 1; i < n; i++) /* insertion sort: a handful */
        for (size_t k = i; k > 0; k--) {
            const rpt_group_t *x = b[k - 1], *y = b[k];
            int c = strcmp(x->norm, y->norm);
            if (!c) c = x->l2_at_most - y->l2_at_most;
            if (!c) c = (x->eps > y->eps) - (x->eps < y->eps);
            if (c <= 0) break;
            b[k - 1] = y, b[k] = x;
        }
    for (size_t i = 0; i < n; i++) {
        tj_obj(w);
        tj_kstr(w, "norm", b[i]->norm);
        tj_kfloat(w, "eps", (float)b[i]->eps);
        tj_kbool(w, "l2_at_most", b[i]->l2_at_most);
        tj_obj_end(w);
    }
    free(b);
}

/* ------------------------------------------------------------- build */

dp_err_t dp_report_build(const dp_report_src_t *src, const dp_report_opts_t *o, char **json)
{
    *json = NULL;
    dp_report_opts_t def;
    if (!o) dp_report_opts_init(&def), o = &def;
    dp_report_src_t *s = (dp_report_src_t *)src; /* sorted in place; the content stays */
    dp_err_t err = DP_OK;
    for (size_t i = 0; i < s->ng; i++)
        for (size_t k = 0; k < s->g[i].nlat; k++)
            rpt_qsort(s->g[i].lat[k].v, s->g[i].lat[k].n, sizeof(rpt_meas_t), cmp_meas_index);
    /* a model measured clean but whose groups came without seeds still gets
     * its seeds group; so does any model with sample sets */
    for (size_t i = 0, n = s->ng; i < n; i++) {
        char model[RPT_NAME];
        snprintf(model, sizeof model, "%s", s->g[i].model); /* s->g may move */
        if (!rpt_group_of(s, model, "", 0, 0, "seeds"))
            return dp_err_set(DP_ERR_NOMEM, "report: out of memory");
    }
    rpt_qsort(s->g, s->ng, sizeof *s->g, cmp_group);
    names_t models = {0}, classes = {0}, methods = {0};
    tj_writer_t w;
    tj_init(&w);
    for (size_t i = 0; i < s->ng; i++) {
        int bad = name_add(&models, s->g[i].model) || name_add(&methods, s->g[i].method);
        for (size_t k = 0; k < s->g[i].nlat; k++) bad |= name_add(&classes, s->g[i].lat[k].cls);
        if (bad) w.failed = 1;
    }
    rpt_qsort(classes.v, classes.n, sizeof *classes.v, cmp_name);
    rpt_qsort(methods.v, methods.n, sizeof *methods.v, cmp_method_name);
    tj_obj(&w);
    tj_kstr(&w, "format", "dp-report");
    tj_kint(&w, "version", DP_REPORT_VERSION);
    tj_key(&w, "campaign");
    tj_obj(&w);
    tj_kstr(&w, "id", s->campaign);
    if (s->store_uri) tj_kstr(&w, "store_uri", s->store_uri);
    if (s->dataset_uri) tj_kstr(&w, "dataset", s->dataset_uri);
    tj_kint(&w, "generated_unix", (int64_t)time(NULL));
    tj_obj_end(&w);
    tj_key(&w, "thresholds");
    tj_obj(&w);
    tj_knum(&w, "idpb_exec", s->idpb_exec);
    if (isfinite(s->budget_ms)) tj_knum(&w, "latency_ms", s->budget_ms);
    if (isfinite(s->budget_mj)) tj_knum(&w, "energy_mj", s->budget_mj);
    tj_knum(&w, "regress_pct", o->regress_pct);
    tj_obj_end(&w);
    tj_key(&w, "models");
    tj_arr(&w);
    for (size_t i = 0; i < models.n; i++) tj_str(&w, models.v[i]);
    tj_arr_end(&w);
    tj_key(&w, "budgets");
    tj_arr(&w);
    json_budgets(&w, s);
    tj_arr_end(&w);
    tj_key(&w, "methods");
    tj_arr(&w);
    for (size_t i = 0; i < methods.n; i++) tj_str(&w, methods.v[i]);
    tj_arr_end(&w);
    tj_key(&w, "device_classes");
    tj_arr(&w);
    for (size_t i = 0; i < classes.n; i++) tj_str(&w, classes.v[i]);
    tj_arr_end(&w);
    tj_kint(&w, "results", (int64_t)s->used);
    tj_kint(&w, "skipped", (int64_t)s->nskipped);
    tj_key(&w, "skipped_keys");
    tj_arr(&w);
    for (size_t i = 0; i < s->nskipped; i++) tj_str(&w, s->skipped[i]);
    tj_arr_end(&w);
    tj_key(&w, "groups");
    tj_arr(&w);
    for (size_t i = 0; i < s->ng; i++) json_group(&w, s, &s->g[i]);
    tj_arr_end(&w);
    tj_key(&w, "scatter");
    tj_arr(&w);
    for (size_t m = 0; m < models.n; m++)
        for (size_t c = 0; c < classes.n; c++) json_scatter(&w, s, models.v[m], classes.v[c]);
    tj_arr_end(&w);
    tj_key(&w, "worst");
    tj_arr(&w);
    for (size_t i = 0; i < s->ng; i++)
        if (!strcmp(s->g[i].method, "deepperform"))
            json_worst(&w, s, &s->g[i], o->worst < 0 ? 0 : o->worst);
    tj_arr_end(&w);
    tj_key(&w, "failures");
    tj_arr(&w);
    for (size_t i = 0; i < s->nfail; i++) {
        tj_obj(&w);
        tj_kstr(&w, "task", s->fail[i].task);
        tj_kstr(&w, "key", s->fail[i].key);
        tj_kstr(&w, "state", s->fail[i].state);
        tj_kint(&w, "attempts", s->fail[i].attempts);
        tj_kstr(&w, "reason", s->fail[i].reason);
        tj_obj_end(&w);
    }
    tj_arr_end(&w);
    tj_key(&w, "provenance");
    tj_obj(&w);
    tj_key(&w, "kernels");
    tj_arr(&w);
    for (size_t i = 0; i < s->nkernels; i++) tj_str(&w, s->kernels[i]);
    tj_arr_end(&w);
    tj_obj_end(&w);
    tj_obj_end(&w);
    free(models.v), free(classes.v), free(methods.v);
    char *body = tj_take(&w);
    if (!body) return dp_err_set(DP_ERR_NOMEM, "report: out of memory");
    if (!o->baseline_json) {
        *json = body;
        return DP_OK;
    }
    /* the regression section: body without its closing brace, then it */
    size_t blen = strlen(body);
    tj_writer_t r;
    tj_init(&r);
    tj_obj(&r);
    err = rpt_regression(&r, o->baseline_json, o->baseline_len, body, blen,
                         o->baseline_label ? o->baseline_label : "baseline", o->regress_pct);
    tj_obj_end(&r);
    char *reg = tj_take(&r);
    if (err || !reg) {
        free(body);
        free(reg);
        return err ? err : dp_err_set(DP_ERR_NOMEM, "report: out of memory");
    }
    size_t rlen = strlen(reg);
    char *out = malloc(blen + rlen + 16);
    if (!out) {
        free(body);
        free(reg);
        return dp_err_set(DP_ERR_NOMEM, "report: out of memory");
    }
    /* reg is {"regression":{...}}: its members go inside body */
    memcpy(out, body, blen - 1);
    out[blen - 1] = ',';
    memcpy(out + blen, reg + 1, rlen - 1);
    out[blen + rlen - 1] = '\0';
    free(body);
    free(reg);
    *json = out;
    return DP_OK;
}
