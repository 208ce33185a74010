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
 * A loss evaluated in float32 (a whole network's forward) carries rounding
 * noise of about FLT_EPSILON * sum |terms| per evaluation; a fixed step and a
 * fixed relative tolerance then either drown small gradients in noise / h or
 * the large ones in truncation error. For such losses gc_fd_ladder() gives an
 * estimate with an error bar (truncation from Richardson differences plus the
 * noise bound eps / h), gc_noise() measures eps, and gc_fd_agrees() compares:
 *     double eps = fmax(4 * gc_noise(loss, &ctx, w, j, 1e-4 * scale, 16),
 *                       FLT_EPSILON * sum_abs_terms);
 *     gc_fd_t e = gc_fd_ladder(loss, &ctx, w, j, 4 * scale, 12, eps);
 *     cr_expect(gc_fd_agrees(&e, dw[j], 1e-3));
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

/* ------------------------------------------- float32 losses: error bars */

/* Standard deviation of the evaluation noise of loss() near x[j]: loss at
 * x[j] + i * delta for i = 0..m-1 (4 < m <= 64), whose 4th differences are
 * noise alone for a smooth loss and a small delta (delta^4 L'''' is far below
 * rounding), with variance 70 sigma^2 for independent noise (More and Wild,
 * "Estimating computational noise", 2011). Each difference mixes five
 * evaluations, so a few of them already give sigma within a factor of about 2;
 * take a multiple of it as a bound. x[j] is restored. NAN if loss() returned
 * a non-finite value. */
static inline double gc_noise(gc_loss_fn loss, void *ctx, float *x, size_t j, double delta, int m)
{
    double f[64];
    if (m > 64) m = 64;
    if (m < 5) m = 5;
    const float saved = x[j];
    for (int i = 0; i < m; i++) {
        x[j] = (float)((double)saved + i * delta);
        f[i] = loss(ctx);
    }
    x[j] = saved;
    for (int o = 0; o < 4; o++)
        for (int i = 0; i + o + 1 < m; i++) f[i] = f[i + 1] - f[i];
    double ss = 0;
    for (int i = 0; i < m - 4; i++) ss += f[i] * f[i];
    return sqrt(ss / (m - 4) / 70.0);
}

#define GC_LADDER_MAX 24

/* A derivative estimate with its error bar. */
typedef struct gc_fd {
    double num;  /* estimate of dL/dx[j]; NAN when there is none (skipped) */
    double bar;  /* estimated bound on |num - exact|: truncation + noise */
    double step; /* the larger of the two steps num came from */
    int levels;  /* step levels whose evaluations were all valid */
} gc_fd_t;

/* Central differences D(s_k) at the steps s_k = hmax / 2^k, k = 0..levels-1
 * (levels <= GC_LADDER_MAX), combined pairwise by Richardson extrapolation,
 * R_k = (4 D(s_k / 2) - D(s_k)) / 3 (truncation O(s^4)). With eps a bound on
 * the error of one loss evaluation, the noise in R_k is at most 3 eps / s_k
 * (D(s) is off by at most eps / s). R_k's truncation error is estimated by its
 * distance to both neighbours R_{k-1} (16x the truncation) and R_{k+1} (twice
 * the noise): bar_k = max(|R_k - R_{k-1}|, |R_k - R_{k+1}|) + 3 eps / s_k.
 * Returns the R_k with the smallest bar, so each entry gets the step where
 * truncation and noise balance, whatever its curvature.
 *
 * Kinks: loss() returns NAN (or another non-finite value) when an evaluation
 * left the smooth piece around the unperturbed point (a ReLU input changed
 * sign). The steps are tried from the smallest up and the ladder stops at the
 * first such step, so only steps within the smooth piece are used. With fewer
 * than 4 valid levels num is NAN: the entry is skipped, and the caller counts
 * it. A loss that cannot tell must keep its kinks away from the probes: a kink
 * inside the steps bends D(s) roughly linearly in s, which the O(s^2) model
 * behind the bar does not reliably notice.
 *
 * Whether an entry is skipped or its bar large depends on the loss alone, never
 * on the analytic gradient, so neither can hide a wrong backward. */
static inline gc_fd_t gc_fd_ladder(gc_loss_fn loss, void *ctx, float *x, size_t j, double hmax,
                                   int levels, double eps)
{
    gc_fd_t e = {NAN, INFINITY, 0, 0};
    double d[GC_LADDER_MAX], s[GC_LADDER_MAX], r[GC_LADDER_MAX];
    if (levels > GC_LADDER_MAX) levels = GC_LADDER_MAX;
    const float saved = x[j];
    int lo = levels; /* d[lo..levels) are valid */
    for (int k = levels - 1; k >= 0; k--) {
        s[k] = ldexp(hmax, -k);
        const float xp = (float)((double)saved + s[k]), xm = (float)((double)saved - s[k]);
        if (xp == xm) break;
        x[j] = xp;
        const double lp = loss(ctx);
        x[j] = xm;
        const double lm = loss(ctx);
        x[j] = saved;
        if (!isfinite(lp) || !isfinite(lm)) break;
        d[k] = (lp - lm) / ((double)xp - (double)xm);
        lo = k;
    }
    x[j] = saved;
    e.levels = levels - lo;
    for (int k = lo; k + 1 < levels; k++) r[k] = (4 * d[k + 1] - d[k]) / 3;
    for (int k = lo + 1; k + 2 < levels; k++) {
        const double t = fmax(fabs(r[k] - r[k - 1]), fabs(r[k] - r[k + 1]));
        const double bar = t + 3 * eps / s[k];
        if (bar < e.bar) e.num = r[k], e.bar = bar, e.step = s[k];
    }
    return e;
}

/* Whether the analytic gradient g agrees with the estimate e:
 * |g - num| <= rtol * max(|g|, |num|) + bar, where rtol covers the analytic
 * gradient's own float32 rounding and bar the estimate's error. False when e
 * has no estimate. */
static inline int gc_fd_agrees(const gc_fd_t *e, double g, double rtol)
{
    if (!isfinite(e->num)) return 0;
    return fabs(g - e->num) <= rtol * fmax(fabs(g), fabs(e->num)) + e->bar;
}

/* sum_i a[i] * b[i] in double: the usual loss sum(out * R). */
static inline double gc_dot(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * (double)b[i];
    return s;
}

#endif
