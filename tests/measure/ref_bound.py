#!/usr/bin/env python3
"""Reference values for test_measure.c's upper-bound and binomial tests.

Exact rational arithmetic (fractions + math.comb), no scipy: for X ~
Binomial(n, p) the upper confidence bound of the p-quantile is the r-th
smallest sample, r the smallest rank with P(X <= r - 1) >= confidence.
Prints C initialisers: {n, p, confidence, rank} (rank 0: too few samples)
and {k, n, p, cdf}.  Run: python3 tests/measure/ref_bound.py
"""
from fractions import Fraction
from math import comb


def cdf(k, n, p):
    p = Fraction(p)
    return sum(comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(0, k + 1))


def upper_rank(n, p, conf):
    p, conf = Fraction(p), Fraction(conf)
    acc = Fraction(0)
    for r in range(1, n + 1):
        acc += comb(n, r - 1) * p ** (r - 1) * (1 - p) ** (n - r + 1)
        if acc >= conf:
            return r
    return 0


CASES = [(10, "0.9", "0.99"), (44, "0.9", "0.99"), (43, "0.9", "0.99"),
         (100, "0.9", "0.99"), (100, "0.9", "0.95"), (100, "0.99", "0.99"),
         (458, "0.99", "0.99"), (459, "0.99", "0.99"), (1000, "0.9", "0.99"),
         (1000, "0.99", "0.99"), (1000, "0.5", "0.95"), (5000, "0.99", "0.99")]
for n, p, c in CASES:
    print("    {%d, %s, %s, %d}," % (n, p, c, upper_rank(n, Fraction(p), Fraction(c))))
print()
for k, n, p in [(5, 20, "0.3"), (0, 10, "0.5"), (89, 100, "0.9"), (95, 100, "0.9"),
                (990, 1000, "0.99"), (3, 7, "0.25")]:
    print("    {%d, %d, %s, %.17g}," % (k, n, p, float(cdf(k, n, Fraction(p)))))
