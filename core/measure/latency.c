/* The latency protocol: pinning, a note of the environment, warm-up, timed
 * repetitions until a minimum time and count, median and spread; and the
 * interleaved order of seeds and test inputs.
 *
 * The timed loop does no more than two clock reads, one store and two
 * compares per repetition (bench/bench_measure.c measures what that costs);
 * sorting and statistics come after it. */
#define _GNU_SOURCE /* sched_setaffinity, CPU_SET */
#include "measure/latency.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "measure/measure_impl.h"
#include "measure/stats.h"
#include "util/rng.h"

_Static_assert(sizeof(cpu_set_t) <= sizeof(((measure_affinity_t *)0)->mask),
               "measure_affinity_t too small for cpu_set_t");

void measure_opts_init(measure_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->warmup = 5;
    o->min_time_s = 0.25;
    o->min_reps = 25;
    o->max_reps = 100000;
    o->pin_cpu = -1;
    o->max_load = 1.5;
    o->min_window_s = 1.0;
    o->windows = 1;
}

/* ------------------------------------------------------------ environment */

static void add_warning(measure_env_t *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void add_warning(measure_env_t *e, const char *fmt, ...)
{
    if (e->n_warnings >= MEASURE_MAX_WARNINGS) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->warnings[e->n_warnings++], MEASURE_WARNING_LEN, fmt, ap);
    va_end(ap);
}

static int is_cpu_dir(const char *name)
{
    if (strncmp(name, "cpu", 3) != 0 || !name[3]) return 0;
    for (const char *p = name + 3; *p; p++)
        if (!isdigit((unsigned char)*p)) return 0;
    return 1;
}

static void read_governors(const char *root, int cpu, measure_env_t *e)
{
    char dir[4096], path[4096 + 300], gov[sizeof e->governor];
    if (msr_path(dir, sizeof dir, root, "/sys/devices/system/cpu")) return;
    char first_bad[sizeof e->governor] = "";
    int first_bad_cpu = -1, seen = 0, mixed = 0;
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!is_cpu_dir(de->d_name)) continue;
        int c = atoi(de->d_name + 3);
        if (cpu >= 0 && c != cpu) continue;
        int len = snprintf(path, sizeof path, "%s/%s/cpufreq/scaling_governor", dir, de->d_name);
        if (len < 0 || (size_t)len >= sizeof path) continue;
        if (msr_read_str(path, gov, sizeof gov, NULL) != DP_OK || !gov[0]) continue;
        if (!seen)
            snprintf(e->governor, sizeof e->governor, "%s", gov);
        else if (strcmp(e->governor, gov) != 0)
            mixed = 1;
        seen = 1;
        if (strcmp(gov, "performance") != 0 && (first_bad_cpu < 0 || c < first_bad_cpu)) {
            first_bad_cpu = c;
            snprintf(first_bad, sizeof first_bad, "%s", gov);
        }
    }
    closedir(d);
    dp_err_clear();
    if (mixed) snprintf(e->governor, sizeof e->governor, "mixed");
    if (first_bad_cpu >= 0)
        add_warning(e,
                    "CPU frequency governor is '%s' on cpu%d, not 'performance': the clock "
                    "follows the load, so latencies vary; `cpupower frequency-set -g performance`",
                    first_bad, first_bad_cpu);
}

void measure_env_read(const char *root, int cpu, double max_load, measure_env_t *out)
{
    memset(out, 0, sizeof *out);
    out->loadavg1 = -1;
    out->pinned_cpu = -1;
    if (!(max_load > 0)) max_load = 1.5;
    read_governors(root, cpu, out);
    char path[4096], buf[256];
    if (msr_path(path, sizeof path, root, "/proc/loadavg") == DP_OK &&
        msr_read_str(path, buf, sizeof buf, NULL) == DP_OK) {
        double l;
        if (sscanf(buf, "%lf", &l) == 1) out->loadavg1 = l;
    }
    dp_err_clear();
    if (out->loadavg1 > max_load)
        add_warning(out,
                    "load average %.2f is above %.2f: other work shares the CPUs, so latencies "
                    "are inflated and noisy",
                    out->loadavg1, max_load);
}

/* ----------------------------------------------------------------- pinning */

dp_err_t measure_pin(int cpu, measure_affinity_t *saved)
{
    cpu_set_t *old = (cpu_set_t *)(void *)saved->mask;
    if (cpu < 0 || cpu >= CPU_SETSIZE)
        return dp_err_set(DP_ERR_INVALID, "pin: CPU %d is outside 0..%d", cpu, CPU_SETSIZE - 1);
    if (sched_getaffinity(0, sizeof(cpu_set_t), old) != 0)
        return dp_err_set(DP_ERR_IO, "pin: sched_getaffinity: %s", strerror(errno));
    if (!CPU_ISSET(cpu, old)) {
        char allowed[256] = "";
        size_t len = 0;
        for (int c = 0; c < CPU_SETSIZE && len + 8 < sizeof allowed; c++)
            if (CPU_ISSET(c, old))
                len += (size_t)snprintf(allowed + len, sizeof allowed - len, "%s%d", len ? "," : "",
                                        c);
        return dp_err_set(DP_ERR_INVALID,
                          "pin: this thread may not run on CPU %d (allowed: %s); pick one of those",
                          cpu, allowed);
    }
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    if (sched_setaffinity(0, sizeof one, &one) != 0)
        return dp_err_set(DP_ERR_IO, "pin: sched_setaffinity to CPU %d: %s", cpu, strerror(errno));
    return DP_OK;
}

void measure_unpin(const measure_affinity_t *saved)
{
    sched_setaffinity(0, sizeof(cpu_set_t), (const cpu_set_t *)(const void *)saved->mask);
}

/* ---------------------------------------------------------------- protocol */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static double at_rank(const uint64_t *s, uint64_t n, double p)
{
    return (double)s[measure_nearest_rank(n, p) - 1] * 1e-9;
}

static void summarize(uint64_t *ns, uint64_t n, measure_latency_t *out)
{
    qsort(ns, n, sizeof *ns, cmp_u64);
    out->count = n;
    out->min_s = (double)ns[0] * 1e-9;
    out->max_s = (double)ns[n - 1] * 1e-9;
    out->median_s = at_rank(ns, n, 0.5);
    out->q1_s = at_rank(ns, n, 0.25);
    out->q3_s = at_rank(ns, n, 0.75);
    out->iqr_s = out->q3_s - out->q1_s;
    double sum = 0;
    for (uint64_t i = 0; i < n; i++) sum += (double)ns[i];
    out->mean_s = sum / (double)n * 1e-9;
    /* MAD in place: |x - median| in ns, sorted again. */
    uint64_t med = ns[measure_nearest_rank(n, 0.5) - 1];
    for (uint64_t i = 0; i < n; i++) ns[i] = ns[i] > med ? ns[i] - med : med - ns[i];
    qsort(ns, n, sizeof *ns, cmp_u64);
    out->mad_s = at_rank(ns, n, 0.5);
}

dp_err_t measure_latency(measure_fn fn, void *ctx, const measure_opts_t *opts,
                         measure_latency_t *out)
{
    measure_opts_t defaults;
    if (!opts) {
        measure_opts_init(&defaults);
        opts = &defaults;
    }
    memset(out, 0, sizeof *out);
    if (!fn) return dp_err_set(DP_ERR_INVALID, "latency: no function to time");
    if (opts->max_reps == 0 || opts->min_reps > opts->max_reps)
        return dp_err_set(DP_ERR_INVALID,
                          "latency: min_reps %llu and max_reps %llu: need 1 <= "
                          "min_reps <= max_reps",
                          (unsigned long long)opts->min_reps, (unsigned long long)opts->max_reps);
    if (!(opts->min_time_s >= 0))
        return dp_err_set(DP_ERR_INVALID, "latency: min_time_s %g must be >= 0", opts->min_time_s);

    measure_affinity_t saved;
    int pinned = 0;
    if (opts->pin_cpu >= 0) {
        dp_err_t err = measure_pin(opts->pin_cpu, &saved);
        if (err) return err;
        pinned = 1;
    }
    measure_env_read(opts->root, opts->pin_cpu, opts->max_load, &out->env);
    out->env.pinned_cpu = opts->pin_cpu;

    uint64_t cap = opts->max_reps < 1024 ? opts->max_reps : 1024, n = 0;
    uint64_t *ns = malloc(cap * sizeof *ns);
    dp_err_t err = DP_OK;
    if (!ns) {
        err = dp_err_set(DP_ERR_NOMEM, "latency: %llu samples", (unsigned long long)cap);
        goto fail;
    }
    for (unsigned i = 0; i < opts->warmup; i++) fn(ctx);

    const uint64_t min_ns = (uint64_t)(opts->min_time_s * 1e9);
    const uint64_t begin = msr_now_ns();
    for (;;) {
        uint64_t t0 = msr_now_ns();
        fn(ctx);
        uint64_t t1 = msr_now_ns();
        if (n == cap) { /* rare: doubling, outside any timed interval */
            uint64_t ncap = cap * 2 < opts->max_reps ? cap * 2 : opts->max_reps;
            uint64_t *g = realloc(ns, ncap * sizeof *ns);
            if (!g) {
                err = dp_err_set(DP_ERR_NOMEM, "latency: %llu samples", (unsigned long long)ncap);
                goto fail;
            }
            ns = g;
            cap = ncap;
        }
        ns[n++] = t1 - t0;
        if (n >= opts->max_reps) break;
        if (n >= opts->min_reps && t1 - begin >= min_ns) break;
    }
    out->elapsed_s = (double)(msr_now_ns() - begin) * 1e-9;
    if (pinned) measure_unpin(&saved);
    pinned = 0;
    summarize(ns, n, out);
    free(ns);
    return DP_OK;
fail:
    if (pinned) measure_unpin(&saved);
    free(ns);
    return err;
}

/* -------------------------------------------------------------- interleave */

static void swap_slots(measure_slot_t *a, measure_slot_t *b)
{
    measure_slot_t t = *a;
    *a = *b;
    *b = t;
}

dp_err_t measure_interleave(uint32_t n, uint32_t variants, uint64_t seed, measure_slot_t *order)
{
    if (variants == 0) return dp_err_set(DP_ERR_INVALID, "interleave: 0 variants");
    if ((uint64_t)n * variants > UINT32_MAX)
        return dp_err_set(DP_ERR_INVALID, "interleave: %u inputs x %u variants is too many", n,
                          variants);
    dp_rng_t rng;
    dp_rng_seed(&rng, seed);
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t w = 0; w < variants; w++)
            order[(size_t)i * variants + w] = (measure_slot_t){i, w};
    /* Fisher-Yates over whole blocks of one input's variants... */
    for (uint32_t i = n; i > 1; i--) {
        uint32_t j = dp_rng_below(&rng, i);
        if (j == i - 1) continue;
        for (uint32_t w = 0; w < variants; w++)
            swap_slots(&order[(size_t)(i - 1) * variants + w], &order[(size_t)j * variants + w]);
    }
    /* ...then within each block. */
    for (uint32_t b = 0; b < n; b++) {
        measure_slot_t *blk = &order[(size_t)b * variants];
        for (uint32_t i = variants; i > 1; i--)
            swap_slots(&blk[i - 1], &blk[dp_rng_below(&rng, i)]);
    }
    return DP_OK;
}
