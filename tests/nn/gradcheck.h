/* Finite-difference gradient checks for the nn tests, in double precision.
 *
 * The caller owns a float parameter buffer x and an analytic gradient g of a
 * scalar loss L(x). gc_check() perturbs chosen entries of x by +-h (in place,
 * restored afterwards), evaluates the loss callback (which should compute L in
 * double, e.g. with a double-precision naive forward, reading x as it is now),
 * and compares the central difference (L(x+h) - L(x-h)) / (x+h - x-h) to g.
 * The step actually stored in float is used as the denominator, so float
 * rounding of x +- h does not bias the estimate.
 *
 * Relative error per entry: |g - fd| / max(|g|, |fd|, floor). With floor <= 0 the
 * floor is 1e-3 * max |fd| over the checked entries, so near-zero entries that
 * come from cancellation do not dominate.
 *
 * Typical use (loss = sum(out * R) for a fixed random R):
 *     gc_result_t r = gc_check(my_loss, &ctx, w, nw, dw, NULL, 64, 1e-2, 0);
 *     cr_expect(r.max_rel <= 1e-3, "dweight: %s", gc_describe(&r, buf, sizeof buf));
 *
 * Header-only (static inline) so each test binary takes what it uses. */
#ifndef DP_TESTS_NN_GRADCHECK_H
#define DP_TESTS_NN_GRADCHECK_H

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

/* Scalar loss at the current contents of the perturbed buffer, in double. */
typedef double (*gc_loss_fn)(void *ctx);

typedef struct gc_result {
    double max_rel;   /* max relative error over checked entries */
    double max_abs;   /* max |analytic - numeric| */
    double scale;     /* max |numeric| over checked entries */
    size_t worst;     /* index of the entry with max_rel */
    double worst_ana; /* analytic and numeric gradient at `worst` */
    double worst_num;
    size_t checked; /* number of entries checked */
} gc_result_t;

/* Index of the i-th of `count` probe points spread evenly over [0, n). */
static inline size_t gc_probe_index(size_t i, size_t count, size_t n)
{
    if (count >= n) return i;
    return (size_t)(((unsigned long long)i * n + n / 2) / count);
}

/* Central difference of loss() with respect to x[j], in double. */
static inline double gc_numeric(gc_loss_fn loss, void *ctx, float *x, size_t j, double h)
{
    float saved = x[j];
    float xp = (float)((double)saved + h);
    float xm = (float)((double)saved - h);
    x[j] = xp;
    double lp = loss(ctx);
    x[j] = xm;
    double lm = loss(ctx);
    x[j] = saved;
    return (lp - lm) / ((double)xp - (double)xm);
}

/* Checks grad[j] against central differences at the entries idx[0..count)
 * of x (n floats), or, with idx NULL, at `count` entries spread over x (all of
 * them if count >= n). h is the step (1e-2 suits a loss that is linear or smooth
 * in x; keep ReLU-like kinks further than h from the probes). floor: see above.
 * On allocation failure returns max_rel = INFINITY and checked = 0. */
static inline gc_result_t gc_check(gc_loss_fn loss, void *ctx, float *x, size_t n,
                                   const float *grad, const size_t *idx, size_t count, double h,
                                   double floor)
{
    gc_result_t r = {0};
    if (idx == NULL && count > n) count = n;
    double *num = malloc((count ? count : 1) * sizeof *num);
    if (!num) {
        r.max_rel = INFINITY;
        return r;
    }
    for (size_t i = 0; i < count; i++) {
        num[i] = gc_numeric(loss, ctx, x, idx ? idx[i] : gc_probe_index(i, count, n), h);
        if (fabs(num[i]) > r.scale) r.scale = fabs(num[i]);
    }
    double f = fmax(floor > 0 ? floor : 1e-3 * r.scale, 1e-30);
    for (size_t i = 0; i < count; i++) {
        size_t j = idx ? idx[i] : gc_probe_index(i, count, n);
        double ana = (double)grad[j];
        double ad = fabs(ana - num[i]);
        double rel = ad / fmax(fmax(fabs(ana), fabs(num[i])), f);
        if (ad > r.max_abs) r.max_abs = ad;
        if (rel > r.max_rel || i == 0) {
            r.max_rel = rel;
            r.worst = j;
            r.worst_ana = ana;
            r.worst_num = num[i];
        }
    }
    r.checked = count;
    free(num);
    return r;
}

/* One line for an assertion message; returns buf. */
static inline const char *gc_describe(const gc_result_t *r, char *buf, size_t len)
{
    snprintf(buf, len,
             "max_rel %.3g max_abs %.3g (scale %.3g) worst [%zu] ana %.9g num %.9g, %zu checked",
             r->max_rel, r->max_abs, r->scale, r->worst, r->worst_ana, r->worst_num, r->checked);
    return buf;
}

/* sum_i a[i] * b[i] in double: the usual loss sum(out * R). */
static inline double gc_dot(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * (double)b[i];
    return s;
}

#endif
