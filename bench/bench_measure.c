/* bench_measure: what the latency protocol itself costs per timed
 * repetition (two CLOCK_MONOTONIC_RAW reads, one store, two compares, the
 * call), measured with an empty function, in ns and as a fraction of a
 * model's batch-1 latency. Issue 14 asks for <= 1% of the fastest zoo
 * model's (RaNet: 0.161 ms mean per input, bench/README bench_zoo).
 *
 *     bench_measure [latency_ms [reps]]     # defaults 0.161 and 1000000
 *
 * Prints, each the median of 7 runs of `reps` repetitions:
 * - clock read: one clock_gettime(CLOCK_MONOTONIC_RAW), back to back;
 * - empty sample: what a repetition of an empty function reads (the floor
 *   of every measured latency: one clock read plus the call);
 * - in-loop: wall time of the timed phase / repetitions (what runs between
 *   two inferences: the perturbation a measured input sees);
 * - whole call: measure_latency's wall time / repetitions, the sort and
 *   statistics after the loop included. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "measure/latency.h"
#include "measure/stats.h"

static void empty(void *ctx) { (void)ctx; }

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static double median(double *v, size_t n)
{
    measure_sort(v, n);
    return v[measure_nearest_rank(n, 0.5) - 1];
}

int main(int argc, char **argv)
{
    double latency_ms = argc > 1 ? atof(argv[1]) : 0.161;
    long reps = argc > 2 ? atol(argv[2]) : 1000000;
    if (!(latency_ms > 0) || reps < 1000) {
        fprintf(stderr, "usage: bench_measure [latency_ms > 0 [reps >= 1000]]\n");
        return 2;
    }
    enum { RUNS = 7 };
    double clock_ns[RUNS], sample_ns[RUNS], loop_ns[RUNS], call_ns[RUNS];
    measure_opts_t o;
    measure_opts_init(&o);
    o.warmup = 1000;
    o.min_time_s = 0;
    o.min_reps = (uint64_t)reps;
    o.max_reps = (uint64_t)reps;
    for (int r = 0; r < RUNS; r++) {
        struct timespec ts;
        double t0 = now_ns();
        for (long i = 0; i < reps; i++) clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
        clock_ns[r] = (now_ns() - t0) / (double)reps;

        measure_latency_t l;
        t0 = now_ns();
        if (measure_latency(empty, NULL, &o, &l) != DP_OK) {
            fprintf(stderr, "bench_measure: measure_latency failed\n");
            return 1;
        }
        double call = now_ns() - t0;
        sample_ns[r] = l.median_s * 1e9;
        loop_ns[r] = l.elapsed_s * 1e9 / (double)l.count;
        call_ns[r] = call / (double)l.count; /* the 1000 warm-up calls are noise here */
    }
    double c = median(clock_ns, RUNS), s = median(sample_ns, RUNS), lo = median(loop_ns, RUNS),
           ca = median(call_ns, RUNS);
    double lat_ns = latency_ms * 1e6;
    printf("bench_measure: empty function, %ld repetitions x %d runs (medians); latency %.3f ms\n",
           reps, RUNS, latency_ms);
    printf("  clock read (CLOCK_MONOTONIC_RAW)   %8.1f ns\n", c);
    printf("  empty sample (timer floor)         %8.1f ns\n", s);
    printf("  in-loop per repetition             %8.1f ns   %.4f%% of %.3f ms\n", lo,
           100.0 * lo / lat_ns, latency_ms);
    printf("  whole call per repetition          %8.1f ns   %.4f%% of %.3f ms (bound: 1%%)\n", ca,
           100.0 * ca / lat_ns, latency_ms);
    return ca / lat_ns <= 0.01 ? 0 : 1;
}
