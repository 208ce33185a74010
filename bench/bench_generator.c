/* Times the DeepPerform generator (core/perform) against PyTorch in the same
 * run: forward at batch 1 and 64 (eval mode) and one training step at batch
 * 64 (train-mode forward, loss mean(out^2), backward, Adam), widths 64 and 16,
 * input 1x28x28. Then runs bench/ref_generator.py with /usr/bin/python3 and
 * prints one table: case, ours ms, PyTorch ms, PyTorch / ours.
 *
 * usage: bench_generator [--threads N] [--reps N] [--budget S] [--widths 64,16]
 *                        [--no-torch]
 * Run from the repository root (or set DP_SOURCE_DIR) so the script is found. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn/blas.h"
#include "perform/generator.h"
#include "util/clock.h"
#include "util/rng.h"

#define MAX_CASES 16
#define BATCH     64

typedef struct bench_case {
    char name[32];
    double ours_ms, torch_ms;
} bench_case_t;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef void (*bench_fn)(void *ctx);

/* Median of at least min_reps timed runs, continuing up to budget_s seconds
 * (at most MAX_RUNS runs), after a warmup of `warmup` runs and at least
 * WARMUP_S seconds: the previous case's threads (OpenBLAS's spin for about
 * 0.1 s after a call) must have settled before a 1 ms case is timed.
 * bench/ref_generator.py times PyTorch the same way. */
#define MAX_RUNS 100
#define WARMUP_S 0.3
static double median_ms(bench_fn fn, void *ctx, int warmup, int min_reps, double budget_s)
{
    double t[MAX_RUNS];
    int k = 0;
    double wend = dp_clock_s() + WARMUP_S;
    for (int i = 0; i < warmup || dp_clock_s() < wend; i++) fn(ctx);
    double end = dp_clock_s() + budget_s;
    while (k < MAX_RUNS && (k < min_reps || dp_clock_s() < end)) {
        double t0 = dp_clock_s();
        fn(ctx);
        t[k++] = (dp_clock_s() - t0) * 1e3;
    }
    qsort(t, (size_t)k, sizeof t[0], cmp_double);
    return k % 2 ? t[k / 2] : 0.5 * (t[k / 2 - 1] + t[k / 2]);
}

typedef struct run_ctx {
    perf_gen_t *g;
    const float *x;
    float *out, *dout;
    int n;
} run_ctx_t;

static void run_forward(void *p)
{
    run_ctx_t *c = p;
    perf_gen_forward(c->g, c->x, c->n, c->out, 0);
}

static void run_train_step(void *p)
{
    run_ctx_t *c = p;
    const size_t sz = (size_t)c->n * 28 * 28;
    perf_gen_zero_grad(c->g);
    perf_gen_forward(c->g, c->x, c->n, c->out, 1);
    for (size_t i = 0; i < sz; i++) /* loss = mean(out^2) */
        c->dout[i] = 2.0f * c->out[i] / (float)sz;
    perf_gen_backward(c->g, c->dout, NULL);
    perf_gen_adam_step(c->g, 1e-4f);
}

/* Fills torch_ms of the cases from the script's JSON; returns 0 on success. */
static int run_torch(bench_case_t *cases, int ncases, int threads, int reps, double budget,
                     const char *widths)
{
    const char *root = getenv("DP_SOURCE_DIR");
    char script[1024], cmd[2048];
    snprintf(script, sizeof script, "%s/bench/ref_generator.py", root ? root : ".");
    if (access(script, R_OK) != 0) {
        fprintf(stderr,
                "bench_generator: %s not found (run from the repository root or set "
                "DP_SOURCE_DIR); PyTorch column left empty\n",
                script);
        return -1;
    }
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 %s --widths %s --threads %d --reps %d --budget %g --batch %d "
             "2>&1",
             script, widths, threads, reps, budget, BATCH);
    FILE *f = popen(cmd, "r");
    if (!f) {
        fprintf(stderr, "bench_generator: cannot run %s\n", cmd);
        return -1;
    }
    static char buf[1 << 16];
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    buf[len] = 0;
    int rc = pclose(f);
    if (rc != 0 || !strstr(buf, "\"results\"")) {
        fprintf(stderr,
                "bench_generator: PyTorch reference unavailable (exit %d): %s\n"
                "  (needs torch for /usr/bin/python3, e.g. Debian's python3-torch); "
                "showing our figures only\n",
                rc, buf);
        return -1;
    }
    for (int i = 0; i < ncases; i++) {
        char key[96];
        snprintf(key, sizeof key, "\"case\": \"%.31s\", \"ms\": ", cases[i].name);
        const char *p = strstr(buf, key);
        if (p) cases[i].torch_ms = strtod(p + strlen(key), NULL);
    }
    const char *t = strstr(buf, "\"torch\": \""), *th = strstr(buf, "\"threads\": ");
    if (t)
        printf("PyTorch %.*s, %d threads (torch.get_num_threads())\n", (int)strcspn(t + 10, "\""),
               t + 10, th ? atoi(th + 11) : -1);
    return 0;
}

int main(int argc, char **argv)
{
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN), reps = 5, use_torch = 1;
    double budget = 3.0;
    const char *widths = "64,16";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--budget") && i + 1 < argc)
            budget = atof(argv[++i]);
        else if (!strcmp(argv[i], "--widths") && i + 1 < argc)
            widths = argv[++i];
        else if (!strcmp(argv[i], "--no-torch"))
            use_torch = 0;
        else {
            fprintf(stderr,
                    "usage: %s [--threads N] [--reps N] [--budget S] [--widths 64,16] "
                    "[--no-torch]\n",
                    argv[0]);
            return 2;
        }
    }
    nn_set_threads(threads);
    printf("bench_generator: 1x28x28, batch 1 and %d, %d threads (BLAS %d)\n", BATCH, threads,
           nn_get_threads());

    bench_case_t cases[MAX_CASES];
    int nc = 0;
    float *x = malloc((size_t)BATCH * 784 * sizeof(float));
    float *out = malloc((size_t)BATCH * 784 * sizeof(float));
    float *dout = malloc((size_t)BATCH * 784 * sizeof(float));
    if (!x || !out || !dout) return 1;
    dp_rng_t rng;
    dp_rng_seed(&rng, 1);
    for (int i = 0; i < BATCH * 784; i++) x[i] = dp_rng_uniform(&rng);

    char wl[64];
    snprintf(wl, sizeof wl, "%s", widths);
    for (char *tok = strtok(wl, ","); tok && nc + 3 <= MAX_CASES; tok = strtok(NULL, ",")) {
        perf_gen_config_t cfg = perf_gen_config_default();
        cfg.width = atoi(tok);
        cfg.max_batch = BATCH;
        perf_gen_t *g = perf_gen_new(&cfg);
        cfg.max_batch = 1, cfg.inference_only = 1;
        perf_gen_t *g1 = perf_gen_new(&cfg);
        if (!g || !g1) {
            fprintf(stderr, "bench_generator: cannot build width %s\n", tok);
            return 1;
        }
        printf("width %d: %zu params, %.1f M MACs per image\n", cfg.width, perf_gen_num_params(g),
               perf_gen_macs(g) / 1e6);
        run_ctx_t c1 = {g1, x, out, dout, 1}, cb = {g, x, out, dout, BATCH};
        snprintf(cases[nc].name, sizeof cases[nc].name, "w%d fwd b1", cfg.width);
        cases[nc++].ours_ms = median_ms(run_forward, &c1, 3, reps, budget);
        snprintf(cases[nc].name, sizeof cases[nc].name, "w%d fwd b%d", cfg.width, BATCH);
        cases[nc++].ours_ms = median_ms(run_forward, &cb, 2, reps, budget);
        snprintf(cases[nc].name, sizeof cases[nc].name, "w%d train b%d", cfg.width, BATCH);
        cases[nc++].ours_ms = median_ms(run_train_step, &cb, 2, reps, budget);
        perf_gen_destroy(&g);
        perf_gen_destroy(&g1);
    }
    for (int i = 0; i < nc; i++) cases[i].torch_ms = 0;
    int have_torch = use_torch && run_torch(cases, nc, threads, reps, budget, widths) == 0;

    printf("%-16s %12s %12s %10s\n", "case", "ours ms", "PyTorch ms", "speedup");
    for (int i = 0; i < nc; i++) {
        if (have_torch && cases[i].torch_ms > 0)
            printf("%-16s %12.2f %12.2f %9.2fx\n", cases[i].name, cases[i].ours_ms,
                   cases[i].torch_ms, cases[i].torch_ms / cases[i].ours_ms);
        else
            printf("%-16s %12.2f %12s %10s\n", cases[i].name, cases[i].ours_ms, "-", "-");
    }
    free(x), free(out), free(dout);
    return 0;
}
