/* core/util: errors, logging sink and levels, RNG reproducibility, clock. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "util/path.h"
#include "util/rng.h"

Test(err, strerror_and_detail)
{
    cr_assert_str_eq(dp_strerror(DP_OK), "success");
    cr_assert_str_eq(dp_strerror(DP_ERR_FORMAT), "malformed data");
    cr_assert_str_eq(dp_strerror((dp_err_t)999), "unknown error");
    dp_err_t e = dp_err_set(DP_ERR_NOTFOUND, "%s: no tensor '%s'", "m.st", "w");
    cr_assert_eq(e, DP_ERR_NOTFOUND);
    cr_assert_str_eq(dp_err_detail(), "m.st: no tensor 'w'");
    dp_err_clear();
    cr_assert_str_eq(dp_err_detail(), "");
}

/* Wrapping the inner error's detail in an outer one: the detail is an
 * argument of the call that replaces it. */
Test(err, detail_wraps_itself)
{
    dp_err_set(DP_ERR_INVALID, "width %d too small", 0);
    dp_err_set(DP_ERR_FORMAT, "%s: config rejected: %s", "g.st", dp_err_detail());
    cr_assert_str_eq(dp_err_detail(), "g.st: config rejected: width 0 too small");
}

struct captured {
    int count;
    char last[256];
    char comp[32];
    dp_log_level_t level;
};

static void capture(dp_log_level_t level, const char *component, const char *line, void *arg)
{
    struct captured *c = arg;
    c->count++;
    c->level = level;
    snprintf(c->last, sizeof c->last, "%s", line);
    snprintf(c->comp, sizeof c->comp, "%s", component);
}

static int formatted;
static const char *count_format(void)
{
    formatted++;
    return "x";
}

Test(log, levels_sink_and_context)
{
    struct captured c = {0};
    dp_log_set_sink(capture, &c);
    dp_log_set_level(DP_LOG_WARN);
    dp_info("test", "dropped %s", count_format());
    cr_assert_eq(c.count, 0);
    cr_assert_eq(formatted, 0, "arguments of a filtered line must not be evaluated");
    dp_warn("test", "kept %d", 7);
    cr_assert_eq(c.count, 1);
    cr_assert_str_eq(c.last, "kept 7");
    cr_assert_str_eq(c.comp, "test");
    dp_log_set_context("c1", "t9");
    dp_error("store", "failed");
    cr_assert_str_eq(c.last, "campaign=c1 task=t9 failed");
    cr_assert_eq(c.level, DP_LOG_ERROR);
    dp_log_set_context(NULL, NULL);
    dp_log_set_sink(NULL, NULL);
    dp_log_set_level(DP_LOG_INFO);
    cr_assert_eq(dp_log_parse_level("debug"), DP_LOG_DEBUG);
    cr_assert_eq(dp_log_parse_level("WARN"), DP_LOG_WARN);
    cr_assert_eq(dp_log_parse_level("loud"), -1);
}

Test(rng, reproducible_and_distributed)
{
    dp_rng_t a, b;
    dp_rng_seed(&a, 42);
    dp_rng_seed(&b, 42);
    for (int i = 0; i < 1000; i++) cr_assert_eq(dp_rng_u64(&a), dp_rng_u64(&b));
    dp_rng_seed(&b, 43);
    cr_assert_neq(dp_rng_u64(&a), dp_rng_u64(&b));

    /* moments of uniform and normal over 200k draws */
    double su = 0, sn = 0, sn2 = 0;
    int n = 200000, hist[10] = {0};
    for (int i = 0; i < n; i++) {
        float u = dp_rng_uniform(&a);
        cr_assert(u >= 0.0f && u < 1.0f);
        su += u;
        float z = dp_rng_normal(&a);
        sn += z;
        sn2 += (double)z * z;
        hist[dp_rng_below(&a, 10)]++;
    }
    cr_assert(fabs(su / n - 0.5) < 0.005);
    cr_assert(fabs(sn / n) < 0.01);
    cr_assert(fabs(sn2 / n - 1.0) < 0.02);
    for (int i = 0; i < 10; i++)
        cr_assert(abs(hist[i] - n / 10) < n / 100, "bin %d: %d", i, hist[i]);

    uint32_t idx[100], seen[100] = {0};
    for (uint32_t i = 0; i < 100; i++) idx[i] = i;
    dp_rng_shuffle(&a, idx, 100);
    for (int i = 0; i < 100; i++) seen[idx[i]]++;
    for (int i = 0; i < 100; i++) cr_assert_eq(seen[i], 1);
}

Test(rng, known_first_value)
{
    /* xoshiro256** from splitmix64(0): a fixed stream across machines and builds */
    dp_rng_t r;
    dp_rng_seed(&r, 0);
    uint64_t first = dp_rng_u64(&r);
    dp_rng_seed(&r, 0);
    cr_assert_eq(dp_rng_u64(&r), first);
    cr_assert_eq(first, 0x99ec5f36cb75f2b4ULL, "got 0x%016llx", (unsigned long long)first);
}

Test(clock, monotonic)
{
    uint64_t a = dp_clock_ns();
    double s = dp_clock_s();
    uint64_t b = dp_clock_ns();
    cr_assert(b >= a);
    cr_assert(s > 0);
}

Test(path, parent_writable)
{
    char dir[] = "/tmp/dp-path-XXXXXX", p[128];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(p, sizeof p, "%s/out.st", dir);
    cr_assert_eq(dp_path_parent_writable(p), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(dp_path_parent_writable("relative-name"), DP_OK, "the working directory");
    snprintf(p, sizeof p, "%s/no/out.st", dir);
    cr_assert_eq(dp_path_parent_writable(p), DP_ERR_NOTFOUND);
    char want[160];
    snprintf(want, sizeof want, "the directory %s/no does not exist", dir);
    cr_assert_str_eq(dp_err_detail(), want);
    /* a file where the directory should be */
    snprintf(p, sizeof p, "%s/f", dir);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    fclose(f);
    snprintf(p, sizeof p, "%s/f/out.st", dir);
    cr_assert_eq(dp_path_parent_writable(p), DP_ERR_INVALID);
    snprintf(want, sizeof want, "%s/f is not a directory", dir);
    cr_assert_str_eq(dp_err_detail(), want);
    snprintf(p, sizeof p, "%s/f", dir);
    unlink(p);
    rmdir(dir);
}
