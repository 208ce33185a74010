/* Statistics of measurements: nearest-rank percentiles, the binomial upper
 * bound of a percentile, Pearson correlation, I-Latency / I-Energy. */
#include "measure/stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

uint64_t measure_nearest_rank(uint64_t n, double p)
{
    if (n == 0) return 0;
    /* p * n in floating point can land a hair above an integer (0.07 * 100 =
     * 7.000000000000001): forgive that much before rounding up. */
    double x = p * (double)n;
    double r = ceil(x - 1e-9 * fmax(1.0, x));
    if (r < 1) r = 1;
    if (r > (double)n) r = (double)n;
    return (uint64_t)r;
}

static double log_pmf(uint64_t k, uint64_t n, double lp, double lq)
{
    double dn = (double)n, dk = (double)k;
    return lgamma(dn + 1) - lgamma(dk + 1) - lgamma(dn - dk + 1) + dk * lp + (dn - dk) * lq;
}

double measure_binomial_cdf(uint64_t k, uint64_t n, double p)
{
    if (k >= n) return 1.0;
    if (p <= 0) return 1.0;
    if (p >= 1) return 0.0;
    double lp = log(p), lq = log1p(-p), sum = 0;
    for (uint64_t i = 0; i <= k; i++) sum += exp(log_pmf(i, n, lp, lq));
    return sum > 1.0 ? 1.0 : sum;
}

dp_err_t measure_upper_rank(uint64_t n, double p, double confidence, uint64_t *rank)
{
    *rank = 0;
    if (!(p > 0 && p < 1) || !(confidence > 0 && confidence < 1))
        return dp_err_set(DP_ERR_INVALID, "upper bound: p %g and confidence %g must be in (0, 1)",
                          p, confidence);
    /* P(X <= r - 1) grows with r: walk the CDF up from 0 in one pass. */
    double lp = log(p), lq = log1p(-p), cdf = 0;
    for (uint64_t r = 1; r <= n; r++) {
        cdf += exp(log_pmf(r - 1, n, lp, lq));
        if (cdf >= confidence) {
            *rank = r;
            return DP_OK;
        }
    }
    return dp_err_set(DP_ERR_RANGE,
                      "upper bound: %llu samples are too few for the %g quantile at %g "
                      "confidence",
                      (unsigned long long)n, p, confidence);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void measure_sort(double *v, size_t n) { qsort(v, n, sizeof *v, cmp_double); }

dp_err_t measure_percentiles(const double *values, size_t n, const double *ps, size_t k,
                             double confidence, measure_percentile_t *out)
{
    if (n == 0) return dp_err_set(DP_ERR_INVALID, "percentiles: no samples");
    if (!(confidence > 0 && confidence < 1))
        return dp_err_set(DP_ERR_INVALID, "percentiles: confidence %g must be in (0, 1)",
                          confidence);
    for (size_t j = 0; j < k; j++)
        if (!(ps[j] > 0 && ps[j] <= 1))
            return dp_err_set(DP_ERR_INVALID, "percentiles: p %g must be in (0, 1]", ps[j]);
    for (size_t i = 0; i < n; i++)
        if (isnan(values[i]))
            return dp_err_set(DP_ERR_INVALID, "percentiles: sample %zu is NaN", i);
    double *s = malloc(n * sizeof *s);
    if (!s) return dp_err_set(DP_ERR_NOMEM, "percentiles: %zu samples", n);
    memcpy(s, values, n * sizeof *s);
    measure_sort(s, n);
    for (size_t j = 0; j < k; j++) {
        measure_percentile_t *o = &out[j];
        o->p = ps[j];
        o->n = n;
        o->rank = measure_nearest_rank(n, ps[j]);
        o->value = s[o->rank - 1];
        o->confidence = confidence;
        o->upper = NAN;
        o->upper_rank = 0;
        uint64_t r;
        if (ps[j] < 1 && measure_upper_rank(n, ps[j], confidence, &r) == DP_OK) {
            o->upper_rank = r;
            o->upper = s[r - 1];
        }
    }
    free(s);
    return DP_OK;
}

dp_err_t measure_pearson(const double *x, const double *y, size_t n, double *r)
{
    *r = NAN;
    if (n < 2) return dp_err_set(DP_ERR_INVALID, "pearson: %zu pairs, need at least 2", n);
    double mx = 0, my = 0;
    for (size_t i = 0; i < n; i++) {
        mx += x[i];
        my += y[i];
    }
    mx /= (double)n;
    my /= (double)n;
    double sxy = 0, sxx = 0, syy = 0;
    for (size_t i = 0; i < n; i++) {
        double dx = x[i] - mx, dy = y[i] - my;
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if (!(sxx > 0)) return dp_err_set(DP_ERR_INVALID, "pearson: x has no variance");
    if (!(syy > 0)) return dp_err_set(DP_ERR_INVALID, "pearson: y has no variance");
    *r = sxy / sqrt(sxx * syy);
    return DP_OK;
}

double measure_spread_ratio(const double *v, size_t n)
{
    if (!n) return NAN;
    double lo = INFINITY, hi = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(v[i] > 0) || !isfinite(v[i])) return NAN;
        lo = v[i] < lo ? v[i] : lo, hi = v[i] > hi ? v[i] : hi;
    }
    return hi / lo;
}

double measure_increase(double seed, double input)
{
    if (!(seed > 0)) return NAN;
    return (input / seed - 1.0) * 100.0;
}
