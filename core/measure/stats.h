/* Statistics of measurements (docs/MEASURE.md): nearest-rank percentiles as
 * MLPerf LoadGen reports them, a distribution-free upper confidence bound for
 * a percentile (the one-sided binomial order-statistic bound that LoadGen's
 * early-stopping estimate rests on), Pearson correlation, and the increase
 * of an input's cost over its seed's.
 *
 * Pure functions of their arguments: no allocation except where said. */
#ifndef DP_MEASURE_STATS_H
#define DP_MEASURE_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

/* Nearest rank of percentile p (0 < p <= 1) among n samples: ceil(p * n)
 * (1-based, in ascending order), at least 1. 0 when n is 0. */
uint64_t measure_nearest_rank(uint64_t n, double p);

/* P(X <= k) for X ~ Binomial(n, p), summed in log space with lgamma. */
double measure_binomial_cdf(uint64_t k, uint64_t n, double p);

/* The smallest rank r (1-based) with P(X <= r - 1) >= confidence for
 * X ~ Binomial(n, p): then the r-th smallest of n samples is at least the
 * true p-quantile with that confidence, whatever the distribution. Rank 0
 * and DP_ERR_RANGE when n is too small for any rank to qualify (e.g. fewer
 * than 459 samples for p = 0.99 at 99%). */
dp_err_t measure_upper_rank(uint64_t n, double p, double confidence, uint64_t *rank);

typedef struct measure_percentile {
    double p;            /* 0.5, 0.9, 0.99 */
    double value;        /* the sample at the nearest rank */
    uint64_t rank;       /* that rank, 1-based */
    uint64_t n;          /* samples behind it */
    double upper;        /* upper confidence bound; NAN when n is too small */
    uint64_t upper_rank; /* its rank; 0 when none */
    double confidence;   /* of the bound */
} measure_percentile_t;

/* Percentiles ps[0..k) of values[0..n) (copied and sorted; not modified)
 * with their upper bounds at `confidence` (e.g. 0.99). DP_ERR_INVALID for n
 * 0, a p outside (0, 1], a confidence outside (0, 1), or a NaN value;
 * DP_ERR_NOMEM. */
dp_err_t measure_percentiles(const double *values, size_t n, const double *ps, size_t k,
                             double confidence, measure_percentile_t *out);

/* Sorts v[0..n) ascending (qsort). */
void measure_sort(double *v, size_t n);

/* Pearson correlation of x and y. DP_ERR_INVALID when n < 2 or either has
 * no variance (the detail says which). */
dp_err_t measure_pearson(const double *x, const double *y, size_t n, double *r);

/* The largest of v[0..n) over the smallest: how far apart the rounds of one
 * input's timing are (1: alike). NAN when n is 0 or any value is not a
 * finite positive number. */
double measure_spread_ratio(const double *v, size_t n);

/* I-Latency / I-Energy of an input against its seed: (input / seed - 1) *
 * 100. NAN when seed is not > 0. */
double measure_increase(double seed, double input);

#endif
