/* Helpers for the layer tests (test_act.c, test_norm.c, ...): seeded random
 * fills, kink-free fills, and the relative error of a float result against a
 * double reference. Header-only (static inline). */
#ifndef DP_TESTS_NN_LAYERS_UTIL_H
#define DP_TESTS_NN_LAYERS_UTIL_H

#include <criterion/criterion.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"
#include "util/rng.h"

/* The acceptance bar, for every backward vs finite differences and every
 * float forward vs its double reference (measured as in lt_max_rel). */
#define LT_GRAD_TOL 1e-3
#define LT_FWD_TOL  1e-3

static inline float *lt_floats(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof(float));
    cr_assert(p != NULL);
    return p;
}

static inline double *lt_doubles(size_t n)
{
    double *p = calloc(n ? n : 1, sizeof(double));
    cr_assert(p != NULL);
    return p;
}

/* Uniform in [lo, hi). */
static inline void lt_fill(dp_rng_t *r, float *x, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * dp_rng_uniform(r);
}

/* Uniform in [-hi, hi) resampled until |x| > gap: keeps kinks at 0 away. */
static inline void lt_fill_away(dp_rng_t *r, float *x, size_t n, float hi, float gap)
{
    for (size_t i = 0; i < n; i++) {
        do {
            x[i] = -hi + 2.0f * hi * dp_rng_uniform(r);
        } while (fabsf(x[i]) <= gap);
    }
}

/* Max over i of |a - ref| / max(|a|, |ref|, 1e-3 * max|ref|): the same
 * measure gradcheck.h uses for gradients. */
static inline double lt_max_rel(const float *a, const double *ref, size_t n)
{
    double scale = 0.0, worst = 0.0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(ref[i]));
    double floor = fmax(1e-3 * scale, 1e-30);
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        double rel = d / fmax(fmax(fabs((double)a[i]), fabs(ref[i])), floor);
        worst = fmax(worst, rel);
    }
    return worst;
}

/* Same for two float arrays (b is the reference). */
static inline double lt_max_rel_ff(const float *a, const float *b, size_t n)
{
    double scale = 0.0, worst = 0.0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs((double)b[i]));
    double floor = fmax(1e-3 * scale, 1e-30);
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        worst = fmax(worst, d / fmax(fmax(fabs((double)a[i]), fabs((double)b[i])), floor));
    }
    return worst;
}

/* Runs gc_check over every entry of x (n floats) and asserts the bar; prints
 * the worst error so the test log records it. */
static inline double lt_gradcheck(const char *what, gc_loss_fn loss, void *ctx, float *x, size_t n,
                                  const float *grad, double h)
{
    char buf[256];
    gc_result_t r = gc_check(loss, ctx, x, n, grad, NULL, n, h, 0);
    cr_log_info("%s: %s", what, gc_describe(&r, buf, sizeof buf));
    cr_expect(r.checked == n && r.max_rel <= LT_GRAD_TOL, "%s: %s", what,
              gc_describe(&r, buf, sizeof buf));
    return r.max_rel;
}

static inline void lt_expect_fwd(const char *what, const float *a, const double *ref, size_t n)
{
    double e = lt_max_rel(a, ref, n);
    cr_log_info("%s forward: max_rel %.3g", what, e);
    cr_expect(e <= LT_FWD_TOL, "%s forward: max_rel %.3g", what, e);
}

/* After a second identical backward pass, grad2 must be twice grad1. */
static inline void lt_expect_doubled(const char *what, const float *g1, const float *g2, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float want = 2.0f * g1[i];
        cr_expect(fabsf(g2[i] - want) <= 1e-5f * (1.0f + fabsf(want)),
                  "%s: accumulation at [%zu]: %g after two passes, %g after one", what, i,
                  (double)g2[i], (double)g1[i]);
    }
}

#endif
