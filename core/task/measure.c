/* MEASURE: latency and energy of seeds and test inputs on this machine
 * through core/measure (docs/MEASURE.md, "measure.json" field by field).
 *
 * The inputs are the seeds (method SEEDS), or a sample set's test inputs
 * and, when the test split is at hand, their seeds beside them: each seed
 * and its test input adjacent in a shuffled order (measure_interleave), so
 * drift and heat hit both and I-Latency / I-Energy compare like with like.
 * Per (input, variant): one forward for the trace (executed FLOPs), then
 * measure_latency (the zoo's adaptive forward at batch size 1, warm-up,
 * repetitions until a minimum time and count, CLOCK_MONOTONIC_RAW), then,
 * with a probe that reads, measure_energy (windows of >= 1 s, minus the
 * idle power measured first when asked). A probe that cannot open or read
 * leaves its detail in the result and a warning; latency goes on.
 *
 * Then per group: nearest-rank p50/p90/p99 with the samples behind them and
 * upper confidence bounds, I-metrics, Pearson(FLOPs, latency/energy), IDPB
 * verdicts against the campaign's budgets, and the provenance. */
#define _GNU_SOURCE /* sched_getcpu */
#include <math.h>
#include <stdarg.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include "measure/latency.h"
#include "measure/probe.h"
#include "measure/stats.h"
#include "nn/nn.h"
#include "task/task_impl.h"
#include "util/clock.h"

#ifndef DP_VERSION
#define DP_VERSION "unknown"
#endif
/* The measuring protocol's own version: bumped when the numbers it gives
 * for the same inputs could change meaning (docs/MEASURE.md). */
#define MEASURE_PROTOCOL 2
#define UPPER_CONFIDENCE 0.99
/* A point's rounds are "unsteady" when its slowest round's median exceeds
 * its fastest's by this factor: far beyond the noise of a quiet machine,
 * and what a host that changes speed between rounds (another tenant on the
 * core, frequency steps) gives. Above UNSTEADY_SHARE of the points, the run
 * warns that its medians will not repeat. */
#define UNSTEADY_RATIO 1.25
#define UNSTEADY_SHARE 0.05

/* One round's latency summary of a point (seconds). */
typedef struct rsum {
    double med, q1, q3, mad, min, max, mean;
    uint64_t count;
} rsum_t;

/* One (input, variant) measured. Seconds and joules. lat: over the rounds
 * (docs/MEASURE.md: the median of the rounds' medians; with one round, the
 * protocol's summary as it is). */
typedef struct point {
    measure_latency_t lat;
    double energy_j; /* per inference; NAN: not measured */
    double power_w;  /* mean power of the last window, idle not subtracted */
    double window_s; /* its length */
    uint64_t window_reps;
    double flops, flops_exact, exec;
    int exit_taken, blocks_run;
} point_t;

typedef struct fwd {
    adnn_model_t *m;
    const float *x;
    adnn_trace_t tr;
} fwd_t;

static void forward_one(void *ctx)
{
    fwd_t *f = ctx;
    adnn_forward_adaptive(f->m, f->x, &f->tr);
}

/* The CPU's model name from /proc/cpuinfo ("" if unknown). */
static void cpu_model(char *buf, size_t size)
{
    buf[0] = '\0';
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) && strncmp(line, "Model", 5)) continue;
        const char *c = strchr(line, ':');
        if (!c) continue;
        for (c++; *c == ' ' || *c == '\t'; c++) {
        }
        snprintf(buf, size, "%s", c);
        buf[strcspn(buf, "\n")] = '\0';
        break;
    }
    fclose(f);
}

static measure_probe_kind_t probe_kind(Dp__V1__EnergyProbe p)
{
    switch (p) {
    case DP__V1__ENERGY_PROBE__ENERGY_PROBE_RAPL:
        return MEASURE_PROBE_RAPL;
    case DP__V1__ENERGY_PROBE__ENERGY_PROBE_INA3221:
        return MEASURE_PROBE_INA3221;
    case DP__V1__ENERGY_PROBE__ENERGY_PROBE_NVML:
        return MEASURE_PROBE_NVML;
    default:
        return MEASURE_PROBE_NONE;
    }
}

/* ------------------------------------------------------------- the run */

#define MAX_WARNINGS 8

typedef struct run {
    const dp_task_settings_t *s;
    const dp_task_io_t *io;
    size_t n;           /* inputs */
    size_t d;           /* floats per image */
    unsigned variants;  /* 2: seed (0) and test input (1); 1: the inputs alone */
    const float *x;     /* the inputs (n, C, H, W) */
    const float **seed; /* variants 2: seed image of input i */
    const int64_t *index;
    const perf_samples_t *set; /* NULL for a MEASURE of the seeds */
    point_t *pts;              /* (n, variants) */
    unsigned rounds;           /* passes over every point */
    rsum_t *rs;                /* (n, variants, rounds) */
    double flops_full;
    /* the machine */
    measure_env_t env_start, env_end;
    double load_max;
    size_t load_high; /* measurements begun with the load above max_load */
    size_t unsteady;  /* points whose rounds' medians differ by more than UNSTEADY_RATIO */
    int pinned_cpu;   /* -1: none */
    /* energy */
    measure_probe_t *probe;
    char probe_desc[256];
    char energy_error[512];
    double idle_w;
    int energy_tried;
    char warnings[MAX_WARNINGS][1024];
    unsigned n_warnings;
    double seconds;
} run_t;

/* Formats into buf (truncating). */
__attribute__((format(printf, 3, 4))) static void fmt_into(char *buf, size_t size, const char *fmt,
                                                           ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, size, fmt, ap);
    va_end(ap);
}

__attribute__((format(printf, 2, 3))) static void warn(run_t *r, const char *fmt, ...)
{
    if (r->n_warnings == MAX_WARNINGS) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->warnings[r->n_warnings++], sizeof r->warnings[0], fmt, ap);
    va_end(ap);
}

/* Opens the probe and measures the idle power when asked; a failure leaves
 * the detail in r->energy_error and latency only. */
static void open_probe(run_t *r)
{
    const dp_task_settings_t *s = r->s;
    measure_probe_kind_t kind = probe_kind(s->probe);
    if (kind == MEASURE_PROBE_NONE) return;
    r->energy_tried = 1;
    measure_probe_opts_t po;
    measure_probe_opts_init(&po);
    po.root = s->sysfs_root;
    if (s->probe_rails && *s->probe_rails) po.rails = s->probe_rails;
    if (s->rapl_domains && *s->rapl_domains) po.rapl_domains = s->rapl_domains;
    dp_err_t err = measure_probe_open(kind, &po, &r->probe);
    if (!err) {
        snprintf(r->probe_desc, sizeof r->probe_desc, "%s", measure_probe_describe(r->probe));
        if (s->idle_s > 0) err = measure_idle_power(r->probe, s->idle_s, &r->idle_w);
    }
    if (err) {
        fmt_into(r->energy_error, sizeof r->energy_error, "%s: %s", dp_strerror(err),
                 dp_err_detail());
        warn(r, "energy probe %s cannot read (%s); latency only", measure_probe_kind_name(kind),
             r->energy_error);
        measure_probe_destroy(&r->probe);
        r->idle_w = 0;
    }
}

/* Round `round` of point (i, v): its trace in the first round, its
 * share of the timed repetitions, and its energy in the first round. */
static dp_err_t measure_point(run_t *r, size_t i, unsigned v, unsigned round, fwd_t *f)
{
    const dp_task_settings_t *s = r->s;
    const size_t k = i * r->variants + v;
    point_t *p = &r->pts[k];
    f->x = r->variants == 2 && v == 0 ? r->seed[i] : r->x + i * r->d;
    forward_one(f); /* the trace; also the first warm-up run */
    p->flops = f->tr.flops_ref, p->flops_exact = f->tr.flops_exact;
    p->exec = f->tr.flops_ref / r->flops_full;
    p->exit_taken = f->tr.exit_taken, p->blocks_run = f->tr.blocks_run;
    measure_opts_t mo;
    measure_opts_init(&mo);
    mo.warmup = (unsigned)s->warmup;
    mo.min_time_s = s->min_time_s / r->rounds;
    mo.min_reps = ((uint64_t)s->repetitions + r->rounds - 1) / r->rounds;
    if (mo.max_reps < mo.min_reps) mo.max_reps = mo.min_reps;
    mo.pin_cpu = -1; /* pinned once for the whole run */
    mo.root = s->sysfs_root;
    mo.max_load = s->max_load;
    mo.min_window_s = s->energy_window_s;
    measure_latency_t l;
    dp_err_t err = measure_latency(forward_one, f, &mo, &l);
    if (err) return task_stage(err, "cannot time an input");
    r->rs[k * r->rounds + round] =
        (rsum_t){l.median_s, l.q1_s, l.q3_s, l.mad_s, l.min_s, l.max_s, l.mean_s, l.count};
    if (l.env.loadavg1 > r->load_max) r->load_max = l.env.loadavg1;
    if (l.env.loadavg1 > s->max_load) r->load_high++;
    if (round) return DP_OK;
    p->energy_j = p->power_w = p->window_s = NAN;
    if (r->probe) {
        measure_energy_t e;
        mo.warmup = 0;
        if ((err = measure_energy(r->probe, forward_one, f, &mo, r->idle_w, &e))) {
            fmt_into(r->energy_error, sizeof r->energy_error, "%s: %s", dp_strerror(err),
                     dp_err_detail());
            warn(r, "energy probe %s stopped reading (%s); latency only from here",
                 measure_probe_kind_name(measure_probe_kind(r->probe)), r->energy_error);
            measure_probe_destroy(&r->probe);
        } else {
            p->energy_j = e.joules_per_inference;
            p->power_w = e.mean_power_w, p->window_s = e.window_s, p->window_reps = e.window_reps;
        }
    }
    return DP_OK;
}

/* The nearest-rank median of v[0..n) (sorted in place). */
static double median_of(double *v, size_t n)
{
    measure_sort(v, n);
    return v[measure_nearest_rank(n, 0.5) - 1];
}

/* Each point's latency over its rounds: the median, quartiles and MAD of
 * the rounds' (their median), the extremes, the count and the mean over
 * every repetition. One round: its summary as it is. */
static void merge_rounds(run_t *r)
{
    const unsigned R = r->rounds;
    double v[4][64];
    for (size_t k = 0; k < r->n * r->variants; k++) {
        const rsum_t *q = &r->rs[k * R];
        measure_latency_t *l = &r->pts[k].lat;
        double sum = 0;
        l->count = 0, l->min_s = INFINITY, l->max_s = -INFINITY;
        for (unsigned j = 0; j < R; j++) {
            v[0][j] = q[j].med, v[1][j] = q[j].q1, v[2][j] = q[j].q3, v[3][j] = q[j].mad;
            l->min_s = fmin(l->min_s, q[j].min), l->max_s = fmax(l->max_s, q[j].max);
            l->count += q[j].count, sum += q[j].mean * (double)q[j].count;
        }
        if (R > 1 && measure_spread_ratio(v[0], R) > UNSTEADY_RATIO) r->unsteady++;
        l->median_s = median_of(v[0], R), l->q1_s = median_of(v[1], R);
        l->q3_s = median_of(v[2], R), l->mad_s = median_of(v[3], R);
        l->iqr_s = l->q3_s - l->q1_s;
        l->mean_s = l->count ? sum / (double)l->count : NAN;
    }
}

/* ------------------------------------------------------------- statistics */

/* "ms"/"mj" percentiles of vals[0..n) (in units already) as an array member. */
static void json_percentiles(tj_writer_t *w, const char *key, const double *vals, size_t n)
{
    static const double ps[3] = {0.5, 0.9, 0.99};
    measure_percentile_t pc[3];
    tj_key(w, key);
    if (!n || measure_percentiles(vals, n, ps, 3, UPPER_CONFIDENCE, pc)) {
        tj_null(w);
        return;
    }
    tj_arr(w);
    for (int k = 0; k < 3; k++) {
        tj_obj(w);
        tj_knum(w, "p", pc[k].p);
        tj_knum(w, "value", pc[k].value);
        tj_kint(w, "rank", (int64_t)pc[k].rank);
        tj_kint(w, "n", (int64_t)pc[k].n);
        tj_knum(w, "upper", pc[k].upper);
        tj_kint(w, "upper_rank", (int64_t)pc[k].upper_rank);
        tj_knum(w, "confidence", pc[k].confidence);
        tj_obj_end(w);
    }
    tj_arr_end(w);
}

/* Mean and max of the finite values of v[0..n); NAN when none. */
static void mean_max(const double *v, size_t n, double *mean, double *max, size_t *count)
{
    double sum = 0, mx = -INFINITY;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(v[i])) sum += v[i], mx = v[i] > mx ? v[i] : mx, k++;
    *mean = k ? sum / (double)k : NAN;
    *max = k ? mx : NAN;
    if (count) *count = k;
}

static double pearson_or_nan(const double *x, const double *y, size_t n)
{
    double r;
    return measure_pearson(x, y, n, &r) ? NAN : r;
}

typedef struct verdict {
    int exec, iflops, latency, energy; /* 1 yes, 0 no, -1 no budget or no figure */
} verdict_t;

static int over(double v, double limit, int strict)
{
    if (!isfinite(v)) return -1;
    return strict ? v > limit : v >= limit;
}

/* An input's verdicts: exec fraction and I-FLOPs (the model's), latency and
 * energy (the device's: absolute, or against its seed). */
static verdict_t verdict_of(const dp_task_settings_t *s, const point_t *p, double iflops,
                            double ilat, double ien)
{
    verdict_t v = {.exec = p->exec >= s->idpb_exec, .iflops = -1, .latency = -1, .energy = -1};
    if (s->idpb_iflops > 0) v.iflops = over(iflops, s->idpb_iflops, 0);
    int a = -1, b = -1;
    if (s->idpb_latency_ms > 0) a = over(p->lat.median_s * 1e3, s->idpb_latency_ms, 1);
    if (isfinite(s->idpb_ilatency)) b = over(ilat, s->idpb_ilatency, 0);
    v.latency = a == 1 || b == 1 ? 1 : a == 0 || b == 0 ? 0 : -1;
    a = b = -1;
    if (s->idpb_energy_mj > 0) a = over(p->energy_j * 1e3, s->idpb_energy_mj, 1);
    if (isfinite(s->idpb_ienergy)) b = over(ien, s->idpb_ienergy, 0);
    v.energy = a == 1 || b == 1 ? 1 : a == 0 || b == 0 ? 0 : -1;
    return v;
}

static void json_tri(tj_writer_t *w, const char *k, int v)
{
    tj_key(w, k);
    if (v < 0)
        tj_null(w);
    else
        tj_bool(w, v);
}

static void json_budget(tj_writer_t *w, const char *k, double v, int set)
{
    tj_key(w, k);
    if (set)
        tj_num(w, v);
    else
        tj_null(w);
}

/* The latency summary of one point as members (ms). */
static void json_point(tj_writer_t *w, const point_t *p)
{
    const measure_latency_t *l = &p->lat;
    tj_knum(w, "latency_median_ms", l->median_s * 1e3);
    tj_knum(w, "latency_min_ms", l->min_s * 1e3);
    tj_knum(w, "latency_max_ms", l->max_s * 1e3);
    tj_knum(w, "latency_iqr_ms", l->iqr_s * 1e3);
    tj_knum(w, "latency_q1_ms", l->q1_s * 1e3);
    tj_knum(w, "latency_q3_ms", l->q3_s * 1e3);
    tj_knum(w, "latency_mad_ms", l->mad_s * 1e3);
    tj_knum(w, "latency_mean_ms", l->mean_s * 1e3);
    tj_kint(w, "repetitions", (int64_t)l->count);
    tj_knum(w, "energy_mj", p->energy_j * 1e3);
    tj_knum(w, "power_w", p->power_w);
    tj_knum(w, "energy_window_s", p->window_s);
    tj_kint(w, "energy_window_reps", (int64_t)p->window_reps);
    tj_knum(w, "flops", p->flops);
    tj_knum(w, "flops_exact", p->flops_exact);
    tj_knum(w, "exec_fraction", p->exec);
    tj_kint(w, "blocks_run", p->blocks_run);
    tj_kint(w, "exit_taken", p->exit_taken);
}

typedef struct derived {
    double *lat, *en, *slat, *sen;     /* (n) ms / mJ of the inputs and their seeds */
    double *ilat, *ien, *iflops;       /* (n) */
    double *fl_all, *lat_all, *en_all; /* (n * variants) */
    verdict_t *v;                      /* (n) */
    size_t counts[4], judged[4];       /* exec, iflops, latency, energy */
    size_t any;                        /* IDPB on latency or energy */
} derived_t;

static void derived_free(derived_t *d)
{
    free(d->lat), free(d->en), free(d->slat), free(d->sen), free(d->ilat), free(d->ien);
    free(d->iflops), free(d->fl_all), free(d->lat_all), free(d->en_all), free(d->v);
}

static dp_err_t derive(const run_t *r, derived_t *d)
{
    const size_t n = r->n, m = n * r->variants, n1 = n ? n : 1, m1 = m ? m : 1;
    memset(d, 0, sizeof *d);
    d->lat = malloc(n1 * sizeof(double)), d->en = malloc(n1 * sizeof(double));
    d->slat = malloc(n1 * sizeof(double)), d->sen = malloc(n1 * sizeof(double));
    d->ilat = malloc(n1 * sizeof(double)), d->ien = malloc(n1 * sizeof(double));
    d->iflops = malloc(n1 * sizeof(double));
    d->fl_all = malloc(m1 * sizeof(double)), d->lat_all = malloc(m1 * sizeof(double));
    d->en_all = malloc(m1 * sizeof(double));
    d->v = malloc(n1 * sizeof *d->v);
    if (!d->lat || !d->en || !d->slat || !d->sen || !d->ilat || !d->ien || !d->iflops ||
        !d->fl_all || !d->lat_all || !d->en_all || !d->v) {
        derived_free(d);
        return dp_err_set(DP_ERR_NOMEM, "measure: out of memory");
    }
    for (size_t k = 0; k < m; k++) {
        const point_t *p = &r->pts[k];
        d->fl_all[k] = p->flops, d->lat_all[k] = p->lat.median_s * 1e3;
        d->en_all[k] = p->energy_j * 1e3;
    }
    for (size_t i = 0; i < n; i++) {
        const point_t *p = &r->pts[i * r->variants + r->variants - 1];
        const point_t *q = r->variants == 2 ? &r->pts[i * 2] : NULL;
        d->lat[i] = p->lat.median_s * 1e3, d->en[i] = p->energy_j * 1e3;
        d->slat[i] = q ? q->lat.median_s * 1e3 : NAN;
        d->sen[i] = q ? q->energy_j * 1e3 : NAN;
        d->ilat[i] = measure_increase(d->slat[i], d->lat[i]);
        d->ien[i] = measure_increase(d->sen[i], d->en[i]);
        double fs = q ? q->flops : r->set ? r->set->flops_seed[i] : NAN;
        d->iflops[i] = r->set ? measure_increase(fs, p->flops) : NAN;
        verdict_t v = d->v[i] = verdict_of(r->s, p, d->iflops[i], d->ilat[i], d->ien[i]);
        const int vs[4] = {v.exec, v.iflops, v.latency, v.energy};
        for (int k = 0; k < 4; k++) d->judged[k] += vs[k] >= 0, d->counts[k] += vs[k] == 1;
        d->any += v.latency == 1 || v.energy == 1;
    }
    return DP_OK;
}

/* Compacts the finite values of v[0..n) into buf; returns how many. */
static size_t finite_of(const double *v, size_t n, double *buf)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(v[i])) buf[k++] = v[i];
    return k;
}

/* Members shared by measure.json and the result's summary. */
static void json_totals(tj_writer_t *w, const run_t *r, const derived_t *d, double *scratch)
{
    const dp_task_settings_t *s = r->s;
    const size_t n = r->n, m = n * r->variants;
    tj_kint(w, "format_version", MEASURE_PROTOCOL);
    tj_kint(w, "n", (int64_t)n);
    tj_kbool(w, "seeds_measured", r->variants == 2);
    tj_kint(w, "warmup", s->warmup);
    tj_kint(w, "repetitions", s->repetitions);
    tj_knum(w, "min_time_s", s->min_time_s);
    tj_kint(w, "rounds", r->rounds);
    double mean, max, fmean, xmean;
    mean_max(d->lat, n, &mean, &max, NULL);
    tj_knum(w, "latency_mean_ms", mean);
    size_t k = finite_of(d->lat, n, scratch);
    measure_sort(scratch, k);
    const uint64_t r50 = measure_nearest_rank(k, 0.5), r90 = measure_nearest_rank(k, 0.9),
                   r99 = measure_nearest_rank(k, 0.99);
    tj_knum(w, "latency_p50_ms", k ? scratch[r50 - 1] : NAN);
    tj_knum(w, "latency_p90_ms", k ? scratch[r90 - 1] : NAN);
    tj_knum(w, "latency_p99_ms", k ? scratch[r99 - 1] : NAN);
    double *fl = scratch;
    for (size_t i = 0; i < n; i++) fl[i] = r->pts[i * r->variants + r->variants - 1].flops;
    mean_max(fl, n, &fmean, &max, NULL);
    tj_knum(w, "flops_mean", fmean);
    for (size_t i = 0; i < n; i++) fl[i] = r->pts[i * r->variants + r->variants - 1].exec;
    mean_max(fl, n, &xmean, &max, NULL);
    tj_knum(w, "exec_fraction_mean", xmean);
    tj_knum(w, "flops_full", r->flops_full);
    tj_knum(w, "seconds", r->seconds);
    /* percentiles with the samples behind them and upper bounds */
    tj_key(w, "percentiles");
    tj_obj(w);
    json_percentiles(w, "latency_ms", scratch, finite_of(d->lat, n, scratch));
    json_percentiles(w, "seed_latency_ms", scratch, finite_of(d->slat, n, scratch));
    json_percentiles(w, "energy_mj", scratch, finite_of(d->en, n, scratch));
    json_percentiles(w, "seed_energy_mj", scratch, finite_of(d->sen, n, scratch));
    tj_obj_end(w);
    /* against the seeds */
    size_t cnt;
    mean_max(d->iflops, n, &mean, &max, NULL);
    tj_knum(w, "iflops_mean", mean);
    tj_knum(w, "iflops_max", max);
    mean_max(d->ilat, n, &mean, &max, &cnt);
    tj_knum(w, "ilatency_mean", mean);
    tj_knum(w, "ilatency_max", max);
    tj_kint(w, "ilatency_inputs", (int64_t)cnt);
    mean_max(d->ien, n, &mean, &max, &cnt);
    tj_knum(w, "ienergy_mean", mean);
    tj_knum(w, "ienergy_max", max);
    tj_kint(w, "ienergy_inputs", (int64_t)cnt);
    mean_max(d->slat, n, &mean, &max, NULL);
    tj_knum(w, "seed_latency_mean_ms", mean);
    mean_max(d->en, n, &mean, &max, NULL);
    tj_knum(w, "energy_mean_mj", mean);
    mean_max(d->sen, n, &mean, &max, NULL);
    tj_knum(w, "seed_energy_mean_mj", mean);
    /* FLOPs against latency and energy, over every point (seeds included) */
    tj_kint(w, "pearson_n", (int64_t)m);
    tj_knum(w, "pearson_flops_latency", pearson_or_nan(d->fl_all, d->lat_all, m));
    tj_knum(w, "pearson_flops_energy", pearson_or_nan(d->fl_all, d->en_all, m));
    /* energy */
    tj_key(w, "energy");
    tj_obj(w);
    tj_kstr(w, "probe", measure_probe_kind_name(probe_kind(s->probe)));
    tj_kstr(w, "source", r->probe_desc);
    size_t have = finite_of(d->en_all, m, scratch);
    tj_kbool(w, "measured", have > 0);
    tj_kint(w, "points", (int64_t)have);
    tj_kstr(w, "error", r->energy_error);
    tj_knum(w, "window_s", s->energy_window_s);
    tj_knum(w, "idle_s", s->idle_s);
    tj_knum(w, "idle_w", r->idle_w);
    tj_obj_end(w);
    /* IDPB verdicts */
    tj_key(w, "idpb");
    tj_obj(w);
    tj_key(w, "budgets");
    tj_obj(w);
    tj_knum(w, "exec_fraction", s->idpb_exec);
    json_budget(w, "iflops_percent", s->idpb_iflops, s->idpb_iflops > 0);
    json_budget(w, "latency_ms", s->idpb_latency_ms, s->idpb_latency_ms > 0);
    json_budget(w, "energy_mj", s->idpb_energy_mj, s->idpb_energy_mj > 0);
    json_budget(w, "ilatency_percent", s->idpb_ilatency, isfinite(s->idpb_ilatency));
    json_budget(w, "ienergy_percent", s->idpb_ienergy, isfinite(s->idpb_ienergy));
    tj_obj_end(w);
    static const char *names[4] = {"exec", "iflops", "latency", "energy"};
    for (int j = 0; j < 4; j++) {
        tj_key(w, names[j]);
        if (!d->judged[j]) {
            tj_null(w);
            continue;
        }
        tj_obj(w);
        tj_kint(w, "count", (int64_t)d->counts[j]);
        tj_kint(w, "judged", (int64_t)d->judged[j]);
        tj_knum(w, "rate", (double)d->counts[j] / (double)d->judged[j]);
        tj_obj_end(w);
    }
    tj_kint(w, "device", (int64_t)d->any);
    tj_obj_end(w);
    /* warnings, then where it ran */
    tj_key(w, "warnings");
    tj_arr(w);
    for (unsigned i = 0; i < r->n_warnings; i++) tj_str(w, r->warnings[i]);
    tj_arr_end(w);
    char cpu[256];
    struct utsname u;
    cpu_model(cpu, sizeof cpu);
    if (uname(&u) != 0) memset(&u, 0, sizeof u);
    tj_key(w, "device");
    tj_obj(w);
    tj_kstr(w, "device_class", s->device_class);
    tj_kstr(w, "cpu", cpu);
    char kernel[2 * sizeof u.release + 2];
    snprintf(kernel, sizeof kernel, "%s %s", u.sysname, u.release);
    tj_kstr(w, "kernel", kernel);
    tj_kstr(w, "governor", r->env_start.governor);
    tj_knum(w, "loadavg1_start", r->env_start.loadavg1);
    tj_knum(w, "loadavg1_end", r->env_end.loadavg1);
    tj_knum(w, "loadavg1_max", r->load_max);
    tj_kint(w, "load_high_measurements", (int64_t)r->load_high);
    tj_kint(w, "unsteady_measurements", (int64_t)r->unsteady);
    tj_kbool(w, "pinned", r->pinned_cpu >= 0);
    tj_kint(w, "pinned_cpu", r->pinned_cpu);
    tj_kint(w, "threads", nn_get_threads());
    tj_kstr(w, "clock", "CLOCK_MONOTONIC_RAW");
    tj_kstr(w, "energy_probe", measure_probe_kind_name(probe_kind(s->probe)));
    char ver[64];
    snprintf(ver, sizeof ver, "%s protocol %d", DP_VERSION, MEASURE_PROTOCOL);
    tj_kstr(w, "measurer_version", ver);
    tj_obj_end(w);
    task_json_provenance(w);
    if (r->set) {
        tj_key(w, "samples_provenance");
        tj_obj(w);
        tj_kstr(w, "model", r->set->model);
        tj_kstr(w, "blas_core", r->set->blas_core);
        tj_kstr(w, "gemm_path", r->set->gemm_path);
        tj_obj_end(w);
    }
}

static void json_inputs(tj_writer_t *w, const run_t *r, const derived_t *d)
{
    tj_key(w, "inputs");
    tj_arr(w);
    for (size_t i = 0; i < r->n; i++) {
        const point_t *p = &r->pts[i * r->variants + r->variants - 1];
        tj_obj(w);
        tj_kint(w, "index", r->index[i]);
        json_point(w, p);
        if (r->variants == 2) {
            tj_key(w, "seed");
            tj_obj(w);
            json_point(w, &r->pts[i * 2]);
            tj_obj_end(w);
        }
        tj_knum(w, "iflops_percent", d->iflops[i]);
        tj_knum(w, "ilatency_percent", d->ilat[i]);
        tj_knum(w, "ienergy_percent", d->ien[i]);
        tj_key(w, "idpb");
        tj_obj(w);
        json_tri(w, "exec", d->v[i].exec);
        json_tri(w, "iflops", d->v[i].iflops);
        json_tri(w, "latency", d->v[i].latency);
        json_tri(w, "energy", d->v[i].energy);
        tj_obj_end(w);
        tj_obj_end(w);
    }
    tj_arr_end(w);
}

static dp_err_t write_results(run_t *r, dp_task_output_t *out)
{
    derived_t d;
    tj_writer_t w;
    dp_err_t err = derive(r, &d);
    if (err) return err;
    double *scratch = malloc((r->n * r->variants + 1) * sizeof *scratch);
    if (!scratch) {
        derived_free(&d);
        return dp_err_set(DP_ERR_NOMEM, "measure: out of memory");
    }
    tj_init(&w);
    tj_obj(&w);
    task_json_identity(&w, r->s);
    json_totals(&w, r, &d, scratch);
    json_inputs(&w, r, &d);
    tj_obj_end(&w);
    char *text = tj_take(&w);
    if (!text) {
        err = dp_err_set(DP_ERR_NOMEM, "measure: out of memory");
        goto done;
    }
    err = task_write_file(r->io->out, text, strlen(text));
    free(text);
    if (err) {
        err = task_stage(err, "cannot write the measurements");
        goto done;
    }
    tj_obj(&w); /* the summary: the same without the inputs */
    task_json_identity(&w, r->s);
    json_totals(&w, r, &d, scratch);
    tj_obj_end(&w);
    if (!(out->summary_json = tj_take(&w)))
        err = dp_err_set(DP_ERR_NOMEM, "measure: out of memory");
done:
    tj_free(&w);
    free(scratch);
    derived_free(&d);
    return err;
}

/* ------------------------------------------------------------- the task */

/* The inputs of the run: the seeds, or a sample set (and its seeds when
 * the test split is given). */
static dp_err_t load_inputs(run_t *r, perf_samples_t **set, int64_t **seed_idx)
{
    const dp_task_settings_t *s = r->s;
    const dp_task_io_t *io = r->io;
    const adnn_spec_t *sp = adnn_model_spec(io->model);
    const size_t d = r->d = (size_t)sp->c * sp->h * sp->w;
    const dp_dataset_t *t = io->test;
    dp_err_t err;
    if (t && (err = dp_task_check_shape(io->model, t, "the test split"))) return err;
    if (io->samples) {
        if ((err = perf_samples_load(io->samples, set)))
            return task_stage(err, "cannot load the inputs");
        perf_samples_t *ps = *set;
        if (ps->c != sp->c || ps->h != sp->h || ps->w != sp->w)
            return dp_err_set(DP_ERR_MISMATCH,
                              "the inputs in %s are %dx%dx%d, the model expects %dx%dx%d",
                              io->samples, ps->c, ps->h, ps->w, sp->c, sp->h, sp->w);
        r->set = ps;
        r->x = ps->xadv, r->index = ps->seed_index, r->n = (size_t)ps->n;
        r->variants = t ? 2 : 1;
        if (t)
            for (size_t i = 0; i < r->n; i++)
                if (ps->seed_index[i] < 0 || ps->seed_index[i] >= (int64_t)t->n)
                    return dp_err_set(DP_ERR_RANGE,
                                      "input %zu of %s has seed %lld, the test split has %u "
                                      "images",
                                      i, io->samples, (long long)ps->seed_index[i], t->n);
    } else {
        if (!t) return dp_err_set(DP_ERR_INVALID, "measure: neither inputs nor seeds given");
        if (s->seed_begin >= s->seed_end || s->seed_end > t->n)
            return dp_err_set(DP_ERR_RANGE, "seeds [%u, %u) exceed the %u test images",
                              s->seed_begin, s->seed_end, t->n);
        r->n = s->seed_end - s->seed_begin;
        r->x = t->images + (size_t)s->seed_begin * d;
        if (!(*seed_idx = malloc(r->n * sizeof **seed_idx))) goto nomem;
        for (size_t i = 0; i < r->n; i++) (*seed_idx)[i] = (int64_t)s->seed_begin + (int64_t)i;
        r->index = *seed_idx;
        r->variants = 1;
    }
    if (s->measure_max && r->n > s->measure_max) r->n = s->measure_max;
    if (r->variants == 2) {
        if (!(r->seed = malloc((r->n ? r->n : 1) * sizeof *r->seed))) goto nomem;
        for (size_t i = 0; i < r->n; i++)
            r->seed[i] = t->images + (size_t)r->set->seed_index[i] * d;
    }
    return DP_OK;
nomem:
    return dp_err_set(DP_ERR_NOMEM, "measure: out of memory");
}

dp_err_t dp_task_measure(const dp_task_settings_t *s, const dp_task_io_t *io, dp_task_output_t *out)
{
    memset(out, 0, sizeof *out);
    run_t r = {.s = s, .io = io, .pinned_cpu = -1, .load_max = -1};
    perf_samples_t *set = NULL;
    int64_t *seed_idx = NULL;
    measure_slot_t *order = NULL;
    measure_affinity_t saved;
    fwd_t *f = NULL;
    dp_err_t err = load_inputs(&r, &set, &seed_idx);
    if (err) goto done;
    const size_t m = r.n * r.variants;
    r.rounds = s->rounds < 1 ? 1 : s->rounds > MEASURE_MAX_ROUNDS ? MEASURE_MAX_ROUNDS : s->rounds;
    r.pts = calloc(m ? m : 1, sizeof *r.pts);
    r.rs = calloc((m ? m : 1) * r.rounds, sizeof *r.rs);
    order = malloc((m ? m : 1) * sizeof *order);
    f = calloc(1, sizeof *f);
    if (!r.pts || !r.rs || !order || !f) {
        err = dp_err_set(DP_ERR_NOMEM, "measure: out of memory");
        goto done;
    }
    if (r.n > UINT32_MAX) {
        err = dp_err_set(DP_ERR_RANGE, "measure: %zu inputs, at most %u", r.n, UINT32_MAX);
        goto done;
    }
    if (m && (err = measure_interleave((uint32_t)r.n, r.variants,
                                       s->seed ^ ((uint64_t)s->shard_index << 32), order)))
        goto done;
    if ((err = task_check_cancel(&io->hooks))) goto done;
    f->m = io->model;
    r.flops_full = adnn_flops_full(io->model, 0);
    const double t_start = dp_clock_s();
    if (s->pin_cpu) {
        int cpu = s->pin_cpu_index >= 0 ? s->pin_cpu_index : sched_getcpu();
        if (cpu < 0) err = dp_err_set(DP_ERR_INVALID, "sched_getcpu failed");
        if (err || (err = measure_pin(cpu, &saved))) {
            err = task_stage(err, "cannot pin the measuring thread");
            goto done;
        }
        r.pinned_cpu = cpu;
    }
    measure_env_read(s->sysfs_root, r.pinned_cpu, s->max_load, &r.env_start);
    for (unsigned i = 0; i < r.env_start.n_warnings; i++) warn(&r, "%s", r.env_start.warnings[i]);
    open_probe(&r);
    double last = t_start;
    const size_t total = m * r.rounds;
    for (unsigned rd = 0; rd < r.rounds; rd++) {
        /* each round in an order of its own */
        const uint64_t seed = s->seed ^ ((uint64_t)s->shard_index << 32) ^ ((uint64_t)rd << 48);
        if (rd && m && (err = measure_interleave((uint32_t)r.n, r.variants, seed, order)))
            goto done;
        for (size_t k = 0; k < m; k++) {
            const size_t done_ = rd * m + k + 1;
            if ((err = measure_point(&r, order[k].input, order[k].which, rd, f))) goto done;
            if (perf_hooks_cancelled(&io->hooks) != PERF_GO_ON) {
                err = dp_err_set(DP_ERR_CANCELLED,
                                 "measure: cancelled after %zu of %zu measurements", done_, total);
                goto done;
            }
            double now = dp_clock_s();
            if (s->progress_secs > 0 && now - last >= s->progress_secs && done_ < total) {
                char line[128];
                snprintf(line, sizeof line, "measure: %zu/%zu measurements, %.0f s", done_, total,
                         now - t_start);
                perf_hooks_progress(&io->hooks, "measure", done_, total, line);
                last = now;
            }
        }
    }
    merge_rounds(&r);
    if ((double)r.unsteady > UNSTEADY_SHARE * (double)m)
        warn(&r,
             "the rounds of %zu of %zu measurements disagree by more than %.0f%% (slowest "
             "round's median over the fastest's): this machine's speed changed during the run "
             "(another tenant on the core, frequency or thermal steps); its medians will not "
             "repeat closely",
             r.unsteady, m, (UNSTEADY_RATIO - 1) * 100);
    measure_env_read(s->sysfs_root, r.pinned_cpu, s->max_load, &r.env_end);
    if (r.load_high)
        warn(&r,
             "the load average was above %.2f during %zu of %zu measurements (at most %.2f): "
             "other processes shared the CPUs; medians resist it, tails do not",
             s->max_load, r.load_high, total, r.load_max);
    r.seconds = out->seconds = dp_clock_s() - t_start;
    err = write_results(&r, out);
done:
    if (r.pinned_cpu >= 0) measure_unpin(&saved);
    measure_probe_destroy(&r.probe);
    perf_samples_destroy(&set);
    free(seed_idx);
    free(r.seed);
    free(r.pts);
    free(r.rs);
    free(order);
    free(f);
    return err;
}
