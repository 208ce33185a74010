/* bench_steady: how well this machine can repeat a latency at all. The
 * measurer's own protocol (measure_latency, rounds as dp-measurer runs
 * them: each point's repetitions spread over R passes over all points, its
 * latency the median of the rounds' medians) applied to one fixed piece of
 * work: a chain of dependent floating-point multiply-adds in registers, no
 * memory traffic, no branches that depend on data, the same work for every
 * point. Two runs back to back, then the figures issue 14 asks of a model's
 * inputs: the share of points whose latencies agree within 5% (and 10%)
 * between the runs, and how many points' rounds disagree by more than 25%
 * (dp-measurer's "unsteady"). A model's inputs cannot repeat better than
 * identical work does on the same machine, so this is the ceiling of the
 * repeatability figure here.
 *
 *     bench_steady [--points N] [--work-ms MS] [--min-time S] [--reps K]
 *                  [--rounds R] [--warmup W] [--pin CPU]
 *
 * Defaults are bench/bench_measure_zoo.sh's: 2,000 points (1,000 seeds and
 * their 1,000 test inputs), 0.5 ms of work (a BlockDrop forward here),
 * >= 0.045 s and >= 15 repetitions per point over 3 rounds, 2 warm-up runs,
 * no pinning. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli_util.h"
#include "measure/latency.h"
#include "measure/stats.h"

enum { CHAINS = 8, MAX_ROUNDS = 64, UNSTEADY_PCT = 25 };

typedef struct work {
    long iters;  /* multiply-add steps per chain */
    double sink; /* keeps the result alive */
} work_t;

/* CHAINS independent chains of x = x * a + b: a fixed number of dependent
 * multiply-adds each, enough parallelism to keep the FP units busy the same
 * way every time. */
static void run_work(void *ctx)
{
    work_t *w = ctx;
    double x[CHAINS];
    for (int c = 0; c < CHAINS; c++) x[c] = 1.0 + c * 1e-3;
    const double a = 0.999999, b = 1e-6;
    for (long i = 0; i < w->iters; i++)
        for (int c = 0; c < CHAINS; c++) x[c] = x[c] * a + b;
    double s = 0;
    for (int c = 0; c < CHAINS; c++) s += x[c];
    w->sink += s;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double median_of(double *v, size_t n)
{
    measure_sort(v, n);
    return v[measure_nearest_rank(n, 0.5) - 1];
}

/* One run: every point's latency (median of its rounds' medians) in lat[],
 * the number of unsteady points returned in *unsteady. */
static int one_run(work_t *w, size_t points, unsigned rounds, const measure_opts_t *round_opts,
                   double *rs, double *lat, size_t *unsteady)
{
    for (unsigned r = 0; r < rounds; r++)
        for (size_t p = 0; p < points; p++) {
            measure_latency_t l;
            if (measure_latency(run_work, w, round_opts, &l) != DP_OK) return -1;
            rs[p * rounds + r] = l.median_s;
        }
    *unsteady = 0;
    for (size_t p = 0; p < points; p++) {
        double v[MAX_ROUNDS];
        memcpy(v, rs + p * rounds, rounds * sizeof *v);
        if (measure_spread_ratio(v, rounds) > 1.0 + UNSTEADY_PCT / 100.0) ++*unsteady;
        lat[p] = median_of(v, rounds);
    }
    return 0;
}

static void usage(FILE *f)
{
    fputs("usage: bench_steady [--points N] [--work-ms MS] [--min-time S] [--reps K]\n"
          "                    [--rounds R] [--warmup W] [--pin CPU]\n"
          "The measurer's latency protocol on one fixed piece of work, two runs back to\n"
          "back: the share of points that repeat within 5% and 10% is the ceiling of\n"
          "any model's repeatability on this machine.\n",
          f);
}

int main(int argc, char **argv)
{
    long points = 2000, reps = 15, rounds = 3, warmup = 2, pin = -1;
    double work_ms = 0.5, min_time = 0.045;
    static const struct option lo[] = {{"points", required_argument, 0, 'n'},
                                       {"work-ms", required_argument, 0, 'w'},
                                       {"min-time", required_argument, 0, 't'},
                                       {"reps", required_argument, 0, 'k'},
                                       {"rounds", required_argument, 0, 'r'},
                                       {"warmup", required_argument, 0, 'u'},
                                       {"pin", required_argument, 0, 'p'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    cli_set_prog("bench_steady");
    int c, bad = 0;
    while (!bad && (c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'n':
            bad = cli_parse_long("--points", optarg, 2, 1L << 24, &points);
            break;
        case 'w':
            bad = cli_parse_double("--work-ms", optarg, 1e-6, 1e4, &work_ms);
            break;
        case 't':
            bad = cli_parse_double("--min-time", optarg, 0, 3600, &min_time);
            break;
        case 'k':
            bad = cli_parse_long("--reps", optarg, 1, 1L << 30, &reps);
            break;
        case 'r':
            bad = cli_parse_long("--rounds", optarg, 1, MAX_ROUNDS, &rounds);
            break;
        case 'u':
            bad = cli_parse_long("--warmup", optarg, 0, 1L << 20, &warmup);
            break;
        case 'p':
            bad = cli_parse_long("--pin", optarg, -1, 4095, &pin);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            bad = 1;
        }
    }
    if (bad || optind != argc) {
        usage(stderr);
        return 2;
    }

    /* calibrate the work to about work_ms */
    work_t w = {.iters = 1000, .sink = 0};
    for (;;) {
        double t0 = now_s();
        run_work(&w);
        double dt = now_s() - t0;
        if (dt > 0.01) {
            w.iters = (long)((double)w.iters * work_ms * 1e-3 / dt);
            break;
        }
        w.iters *= 4;
    }
    if (w.iters < 1) w.iters = 1;

    measure_opts_t o;
    measure_opts_init(&o);
    o.warmup = (unsigned)warmup;
    o.min_time_s = min_time / (double)rounds;
    o.min_reps = (uint64_t)((reps + rounds - 1) / rounds);
    o.pin_cpu = (int)pin;

    size_t n = (size_t)points;
    double *rs = malloc(n * (size_t)rounds * sizeof *rs);
    double *lat[2] = {malloc(n * sizeof(double)), malloc(n * sizeof(double))};
    if (!rs || !lat[0] || !lat[1]) {
        fprintf(stderr, "bench_steady: out of memory\n");
        return 1;
    }
    printf("bench_steady: %zu points of fixed work (%ld x %d multiply-adds), %ld round(s), "
           ">= %.3g s and >= %ld repetitions per point, warm-up %ld, pin %ld\n",
           n, w.iters, CHAINS, rounds, min_time, reps, warmup, pin);
    size_t unsteady[2];
    double wall[2];
    for (int run = 0; run < 2; run++) {
        double t0 = now_s();
        if (one_run(&w, n, (unsigned)rounds, &o, rs, lat[run], &unsteady[run]) != 0) {
            fprintf(stderr, "bench_steady: measure_latency failed (is CPU %ld allowed?)\n", pin);
            return 1;
        }
        wall[run] = now_s() - t0;
    }
    size_t in5 = 0, in10 = 0;
    for (size_t p = 0; p < n; p++) {
        double d = fabs(lat[1][p] / lat[0][p] - 1.0);
        in5 += d <= 0.05;
        in10 += d <= 0.10;
    }
    for (int run = 0; run < 2; run++) {
        double *v = lat[run];
        measure_sort(v, n);
        printf("  run %d: %6.1f s  latency p5 %.4f  p50 %.4f  p95 %.4f ms  (p95/p5 %.2f)  "
               "unsteady %zu of %zu\n",
               run + 1, wall[run], 1e3 * v[measure_nearest_rank(n, 0.05) - 1],
               1e3 * v[measure_nearest_rank(n, 0.5) - 1],
               1e3 * v[measure_nearest_rank(n, 0.95) - 1],
               v[measure_nearest_rank(n, 0.95) - 1] / v[measure_nearest_rank(n, 0.05) - 1],
               unsteady[run], n);
    }
    printf("  repeatability: %.1f%% of points within 5%%, %.1f%% within 10%% (target 90%% within "
           "5%%)\n",
           100.0 * (double)in5 / (double)n, 100.0 * (double)in10 / (double)n);
    free(rs);
    free(lat[0]);
    free(lat[1]);
    return w.sink == 12345.678 ? 3 : 0;
}
