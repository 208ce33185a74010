/* Internal to core/measure: the clock, small sysfs readers with the error
 * messages every probe shares, and the probe back-end table. */
#ifndef DP_MEASURE_IMPL_H
#define DP_MEASURE_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "util/err.h"

/* CLOCK_MONOTONIC_RAW in ns: not slewed by NTP, in the vDSO on x86-64 and
 * arm64, so a reading costs tens of nanoseconds. */
static inline uint64_t msr_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* root + rel into buf ("" or NULL root: rel alone); DP_ERR_RANGE if too long. */
dp_err_t msr_path(char *buf, size_t cap, const char *root, const char *rel);

/* Reads a small file whole into buf, NUL-terminated, trailing whitespace
 * dropped. Errors name path: DP_ERR_NOTFOUND when it does not exist,
 * DP_ERR_IO otherwise; on permission denied the detail ends with
 * perm_hint when given ("chmod o+r ..."). */
dp_err_t msr_read_str(const char *path, char *buf, size_t cap, const char *perm_hint);
/* The same, parsed as a decimal integer (DP_ERR_FORMAT if it is not). */
dp_err_t msr_read_i64(const char *path, int64_t *v, const char *perm_hint);

/* Back ends. Counters fill read_energy (cumulative joules since open);
 * power sensors fill read_power (watts now). */
typedef struct msr_backend {
    void *impl;
    dp_err_t (*read_energy)(void *impl, double *joules);
    dp_err_t (*read_power)(void *impl, double *watts);
    void (*destroy)(void *impl);
    char desc[512];
} msr_backend_t;

struct measure_probe_opts;
dp_err_t msr_rapl_open(const struct measure_probe_opts *o, msr_backend_t *b);
dp_err_t msr_ina3221_open(const struct measure_probe_opts *o, msr_backend_t *b);
dp_err_t msr_nvml_open(const struct measure_probe_opts *o, msr_backend_t *b);

#endif
