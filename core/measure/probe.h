/* Energy probes behind one interface (docs/MEASURE.md): Linux powercap/RAPL
 * counters, Jetson INA3221 power rails (IIO on older JetPack, hwmon on
 * JetPack 5+), NVML total GPU energy (loaded with dlopen, so nothing NVIDIA
 * is needed to build or run without it), and "none".
 *
 * Two kinds of sensor sit behind the same calls:
 * - energy counters (RAPL, NVML): cumulative joules read at the ends of a
 *   window; RAPL's wrap at max_energy_range_uj is folded in at every read;
 * - power sensors (INA3221): watts only, so a window starts a sampling thread
 *   that reads the rail every period_s and integrates P dt (trapezoid). This
 *   thread is the only one the measuring library starts: the probe owns it,
 *   from measure_probe_start() to measure_probe_stop() (or destroy).
 *
 * Each probe reads files under a configurable root ("" or NULL: the real
 * "/"), so tests run on a fake sysfs tree. The library never prints: a probe
 * that cannot read returns an error whose detail names the file or library
 * and how to fix it (permissions, missing rail, driver); the caller goes on
 * with latency only.
 *
 * A probe is not thread-safe: one thread calls it (its sampler is internal). */
#ifndef DP_MEASURE_PROBE_H
#define DP_MEASURE_PROBE_H

#include <stdint.h>

#include "measure/latency.h"
#include "util/err.h"

typedef enum measure_probe_kind {
    MEASURE_PROBE_NONE = 0,
    MEASURE_PROBE_RAPL,    /* ROOT/sys/class/powercap/intel-rapl:N[:M]/energy_uj */
    MEASURE_PROBE_INA3221, /* ROOT/sys/bus/i2c/drivers/ina3221x (IIO) or ina3221 (hwmon) */
    MEASURE_PROBE_NVML,    /* libnvidia-ml.so.1, nvmlDeviceGetTotalEnergyConsumption */
    MEASURE_PROBE__COUNT
} measure_probe_kind_t;

/* "none", "rapl", "ina3221", "nvml". */
const char *measure_probe_kind_name(measure_probe_kind_t kind);
/* The inverse (case-insensitive; "jetson" is ina3221); -1 if unknown. */
int measure_probe_parse_kind(const char *name);

/* Settings; start from measure_probe_opts_init(). Strings are borrowed for
 * the duration of measure_probe_open() (it copies). */
typedef struct measure_probe_opts {
    const char *root;         /* prefix of /sys paths; NULL or "": the real root */
    const char *rapl_domains; /* comma-separated RAPL domain names; "package" also matches
                               * "package-0", "package-1"...; default "package,dram" */
    const char *rails;        /* INA3221 board-total rail: comma-separated alternatives, the
                               * first found wins; an alternative may sum rails with '+'
                               * ("GPU+CPU+SOC"); default "VDD_IN,POM_5V_IN" */
    double period_s;          /* power sensors' sampling period; default 0.01 */
    const char *nvml_path;    /* default "libnvidia-ml.so.1" */
    unsigned nvml_index;      /* GPU index for NVML; default 0 */
} measure_probe_opts_t;

void measure_probe_opts_init(measure_probe_opts_t *o);

typedef struct measure_probe measure_probe_t;

/* Opens a probe of the given kind and reads it once, so a probe that cannot
 * read fails here. opts may be NULL (defaults). Returns a new object in
 * *out, caller destroys. Errors: DP_ERR_NOTFOUND (no such sysfs file, domain,
 * rail or library), DP_ERR_IO (permission denied and others), DP_ERR_FORMAT,
 * DP_ERR_UNSUPPORTED (NVML: no energy counter on this GPU); the detail names
 * the file or library and the fix. */
dp_err_t measure_probe_open(measure_probe_kind_t kind, const measure_probe_opts_t *opts,
                            measure_probe_t **out);
/* Stops a running window and frees; accepts NULL and sets *p = NULL. */
void measure_probe_destroy(measure_probe_t **p);

measure_probe_kind_t measure_probe_kind(const measure_probe_t *p);
/* 0 for "none", 1 otherwise. */
int measure_probe_has_energy(const measure_probe_t *p);
/* 1 for power sensors (sampled by a thread during a window), 0 for counters. */
int measure_probe_is_sampled(const measure_probe_t *p);
/* What the probe reads, e.g. "rapl: package-0 (intel-rapl:0), dram
 * (intel-rapl:0:0)" or "ina3221 hwmon: VDD_IN (.../hwmon1/in1)"; borrowed,
 * valid until destroy. */
const char *measure_probe_describe(const measure_probe_t *p);

typedef struct measure_reading {
    double joules; /* cumulative since open (power sensors: integrated over windows so far) */
    uint64_t t_ns; /* CLOCK_MONOTONIC_RAW of the reading */
} measure_reading_t;

/* Cumulative energy now. Counters: read at once (RAPL: call at least once
 * per wrap period, max_energy_range_uj / power, for the wrap to be seen;
 * windows do it). Power sensors: what the sampler has integrated. */
dp_err_t measure_probe_read(measure_probe_t *p, measure_reading_t *out);

/* Opens a window: counters read their start; power sensors take a first
 * sample and start the sampling thread. DP_ERR_INVALID if one is open. */
dp_err_t measure_probe_start(measure_probe_t *p);
/* Closes the window: joules spent and seconds elapsed between start and stop
 * (either pointer may be NULL). A read error of the sampler is returned here,
 * with its detail. The probe can start again afterwards. */
dp_err_t measure_probe_stop(measure_probe_t *p, double *joules, double *seconds);

/* Mean power over `seconds` of sleep (the caller keeps the machine idle):
 * the baseline measure_energy() subtracts. */
dp_err_t measure_idle_power(measure_probe_t *p, double seconds, double *watts);

typedef struct measure_energy {
    double joules_per_inference; /* median over windows of (E - idle_w * t) / reps */
    double window_joules;        /* energy of the last window, idle not subtracted */
    double window_s;             /* its length */
    uint64_t window_reps;        /* its repetitions */
    double mean_power_w;         /* window_joules / window_s */
    double idle_w;               /* what was subtracted (0: none) */
    unsigned windows;            /* windows measured */
} measure_energy_t;

/* Energy per inference of fn(ctx): opts->warmup runs, then opts->windows
 * windows (default 1) of repetitions of the same input, each at least
 * opts->min_window_s long (default 1 s: sensors refresh every 20-100 ms)
 * and at least one repetition; per window (E - idle_w * t) / reps; the
 * median over windows. idle_w = 0 subtracts nothing (measure_idle_power
 * gives it). Counters are read every 100 ms inside a window (RAPL wraps).
 * opts may be NULL. DP_ERR_UNSUPPORTED for the "none" probe. */
dp_err_t measure_energy(measure_probe_t *p, measure_fn fn, void *ctx, const measure_opts_t *opts,
                        double idle_w, measure_energy_t *out);

#endif
