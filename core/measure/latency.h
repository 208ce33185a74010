/* The latency protocol (docs/MEASURE.md), in the spirit of MLPerf LoadGen's
 * SingleStream: one inference at a time, warm-up runs, then timed
 * repetitions until both a minimum time and a minimum count (or a maximum
 * count), each timed alone with CLOCK_MONOTONIC_RAW; the result is the median
 * and its spread. The forward is a callback, so this module knows nothing of
 * models.
 *
 * Around the timed runs: optional pinning of the calling thread to one CPU
 * (restored afterwards), and a note of the environment (CPU frequency
 * governor, load average) with warnings, as strings in the result, when it
 * can bias the numbers. And a helper that interleaves seeds and their test
 * inputs in a seeded shuffled order, so drift and heat hit both alike.
 *
 * Never prints; no threads. */
#ifndef DP_MEASURE_LATENCY_H
#define DP_MEASURE_LATENCY_H

#include <stdint.h>

#include "util/err.h"

/* Runs one inference on ctx (a model and one input, prepared by the caller). */
typedef void (*measure_fn)(void *ctx);

/* Settings of a measurement; start from measure_opts_init(). */
typedef struct measure_opts {
    unsigned warmup;     /* untimed runs first; default 5 */
    double min_time_s;   /* timed runs last at least this long; default 0.25 */
    uint64_t min_reps;   /* and number at least this many; default 25 */
    uint64_t max_reps;   /* and stop at this many whatever the time; default 100000 */
    int pin_cpu;         /* pin the calling thread to this CPU; -1 (default): no pinning */
    const char *root;    /* prefix of /sys and /proc paths; NULL or "": the real root */
    double max_load;     /* warn when the 1-minute load average is above; default 1.5 */
    double min_window_s; /* energy: window length at least; default 1.0 */
    unsigned windows;    /* energy: windows per input; default 1 */
} measure_opts_t;

void measure_opts_init(measure_opts_t *o);

#define MEASURE_MAX_WARNINGS 4
#define MEASURE_WARNING_LEN  200

/* What the machine looked like before a measurement. */
typedef struct measure_env {
    char governor[32]; /* "performance", "powersave", ...; "mixed" when CPUs differ
                        * (the first non-performance one in `warnings`); "" unknown */
    double loadavg1;   /* 1-minute load average; -1 unknown */
    int pinned_cpu;    /* the CPU pinned to, -1 none */
    unsigned n_warnings;
    char warnings[MEASURE_MAX_WARNINGS][MEASURE_WARNING_LEN];
} measure_env_t;

/* Reads ROOT/sys/devices/system/cpu/cpuN/cpufreq/scaling_governor (of cpu
 * only when cpu >= 0) and ROOT/proc/loadavg. A governor other than
 * "performance" and a load above max_load (<= 0: 1.5) add warnings; files
 * that are absent (a VM has no cpufreq) leave the field unknown, no
 * warning. root: NULL or "" for the real one. Never fails. */
void measure_env_read(const char *root, int cpu, double max_load, measure_env_t *out);

typedef struct measure_latency {
    uint64_t count;  /* timed repetitions */
    double median_s; /* nearest-rank p50 of the repetitions */
    double q1_s;     /* nearest-rank p25 */
    double q3_s;     /* nearest-rank p75 */
    double iqr_s;    /* q3 - q1 */
    double mad_s;    /* median absolute deviation from the median */
    double min_s;
    double max_s;
    double mean_s;
    double elapsed_s; /* wall time of the timed phase, bookkeeping included */
    measure_env_t env;
} measure_latency_t;

/* Measures fn(ctx) with the protocol above; opts may be NULL (defaults).
 * Errors: DP_ERR_INVALID (min_reps > max_reps, max_reps 0, a CPU that this
 * thread may not run on: the detail says which), DP_ERR_NOMEM. The thread's
 * CPU affinity is the same on return as on entry. */
dp_err_t measure_latency(measure_fn fn, void *ctx, const measure_opts_t *opts,
                         measure_latency_t *out);

/* Pins the calling thread to cpu, saving its affinity in *saved (an opaque
 * cpu_set_t-sized buffer: pass measure_affinity_t); measure_unpin restores. */
typedef struct measure_affinity {
    unsigned char mask[128];
} measure_affinity_t;
dp_err_t measure_pin(int cpu, measure_affinity_t *saved);
void measure_unpin(const measure_affinity_t *saved);

/* One slot of an interleaved order: run input `input` in variant `which`
 * (0: the seed, 1: its DeepPerform input, 2...: other methods' inputs). */
typedef struct measure_slot {
    uint32_t input;
    uint32_t which;
} measure_slot_t;

/* Fills order[0 .. n*variants) with every (input, which) once: the inputs in
 * a shuffled order, and each input's variants adjacent, in a shuffled order
 * of their own. So a seed and its test input are measured close in time
 * (their ratio sees little drift) and neither always first (no bias from
 * warming the cache or the clock). Same seed, same order. DP_ERR_INVALID
 * when variants is 0 or n*variants overflows. */
dp_err_t measure_interleave(uint32_t n, uint32_t variants, uint64_t seed, measure_slot_t *order);

#endif
