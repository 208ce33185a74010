/* Times the adaptive forward of every shipped zoo model (models/NAME.pb +
 * NAME.safetensors) at batch 1 over the first N Fashion-MNIST test images:
 * - --reps rounds over all inputs; in each, per input, one untimed warm-up
 *   adnn_forward_adaptive and 3 timed ones back to back (see time_ours); the
 *   input's latency is the median of its 3 * reps runs (wall clock); its
 *   thread CPU time too (r(cpu): the same without time spent preempted);
 * - Pearson correlation, over the inputs, of the executed FLOPs (reference
 *   convention, from the trace) with that latency: does the cost model the
 *   generator optimises track wall time? (acceptance >= 0.9); r(exact) is
 *   the same with the exact FLOPs (depthwise convs divided by groups);
 * - in the same run, bench/ref_zoo.py (PyTorch eager, same weights, same
 *   inputs, same thread count, same round structure with --torch-reps rounds
 *   (fewer by default: only its mean matters, and it is 10x slower)) through
 *   popen; its per-input FLOPs must equal ours (same decisions). ms/input is
 *   the mean of the per-input medians on both sides; speedup = torch / ours.
 * Single-threaded by default (nn_set_threads(1), torch.set_num_threads(1)):
 * the realistic batch-1 device setting, and less noisy on a shared machine.
 *
 * usage: bench_zoo [--models DIR] [--data DIR] [--n N] [--reps R (11)] [--torch-reps R (3)]
 *                  [--threads T] [--only NAME] [--csv FILE] [--no-torch]
 * --csv writes one line per model and input: model,index,flops_ref,flops_exact,ms,cpu_ms.
 * Run from the repository root (or set DP_SOURCE_DIR) so the script is found. */
#include <dirent.h>
#include <time.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adnn/adnn.h"
#include "data/dataset.h"
#include "nn/blas.h"
#include "util/clock.h"

#define MAX_MODELS 32
#define MAX_REPS   51
#define ZOO_BURST  3 /* timed runs back to back per input and round */

typedef struct zoo_row {
    char name[64];
    double pearson, pearson_cpu, pearson_exact, ours_ms, torch_ms, flops_mean;
    int agree, n; /* inputs with the same FLOPs in PyTorch; -1: no PyTorch */
} zoo_row_t;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static double pearson(const double *x, const double *y, int n)
{
    double mx = 0, my = 0, sxy = 0, sxx = 0, syy = 0;
    for (int i = 0; i < n; i++) mx += x[i] / n, my += y[i] / n;
    for (int i = 0; i < n; i++) {
        sxy += (x[i] - mx) * (y[i] - my);
        sxx += (x[i] - mx) * (x[i] - mx);
        syy += (y[i] - my) * (y[i] - my);
    }
    return sxx > 0 && syy > 0 ? sxy / sqrt(sxx * syy) : NAN;
}

static double cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static double median(double *v, int k)
{
    qsort(v, (size_t)k, sizeof v[0], cmp_double);
    return k % 2 ? v[k / 2] : 0.5 * (v[k / 2 - 1] + v[k / 2]);
}

/* Our side: per input the median wall latency (ms) and thread CPU time (ms)
 * of reps * ZOO_BURST runs, and its FLOPs (reference and exact). The runs
 * come in reps ROUNDS over all inputs; in each round an input gets one
 * untimed warm-up run, then ZOO_BURST timed runs back to back. On the shared
 * machine two kinds of noise meet: the load drifts over a run (1.6x between
 * the fastest and slowest tenth of a run), which rounds spread over every
 * input instead of making the inputs measured in a slow minute look
 * expensive; and preemptions, which rarely hit more than one run of a short
 * burst, so the median drops them. Returns 0, or -1 when out of memory. */
static int time_ours(adnn_model_t *m, const dp_dataset_t *d, int n, int reps, double *lat,
                     double *cpu, double *flops, double *flops_exact)
{
    size_t isz = dp_dataset_sample_size(d), per = (size_t)reps * ZOO_BURST;
    double *w = malloc(sizeof(double) * (size_t)n * per);
    double *c = malloc(sizeof(double) * (size_t)n * per);
    if (!w || !c) {
        free(w);
        free(c);
        return -1;
    }
    adnn_trace_t tr;
    for (int r = 0; r < reps; r++)
        for (int i = 0; i < n; i++) {
            const float *x = d->images + (size_t)i * isz;
            adnn_forward_adaptive(m, x, &tr); /* warm-up */
            flops[i] = tr.flops_ref;
            flops_exact[i] = tr.flops_exact;
            for (int b = 0; b < ZOO_BURST; b++) {
                size_t o = (size_t)i * per + (size_t)r * ZOO_BURST + b;
                double c0 = cpu_ms(), t0 = dp_clock_s();
                adnn_forward_adaptive(m, x, &tr);
                w[o] = (dp_clock_s() - t0) * 1e3;
                c[o] = cpu_ms() - c0;
            }
        }
    for (int i = 0; i < n; i++) {
        lat[i] = median(w + (size_t)i * per, (int)per);
        cpu[i] = median(c + (size_t)i * per, (int)per);
    }
    free(w);
    free(c);
    return 0;
}

/* PyTorch side through bench/ref_zoo.py; fills torch_ms and agree. 0 on success. */
static int time_torch(zoo_row_t *row, const char *prefix, const char *data, int n, int reps,
                      int threads, const double *flops)
{
    const char *root = getenv("DP_SOURCE_DIR");
    char script[1024], cmd[4096];
    snprintf(script, sizeof script, "%s/bench/ref_zoo.py", root ? root : ".");
    if (access(script, R_OK) != 0) {
        fprintf(stderr,
                "bench_zoo: %s not found (run from the repository root or set "
                "DP_SOURCE_DIR)\n",
                script);
        return -1;
    }
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 %s --model %s --data %s --n %d --reps %d --burst %d --threads %d "
             "2>&1",
             script, prefix, data, n, reps, ZOO_BURST, threads);
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    size_t cap = 1 << 20, len = 0, r;
    char *buf = malloc(cap);
    if (!buf) {
        pclose(f);
        return -1;
    }
    while ((r = fread(buf + len, 1, cap - 1 - len, f)) > 0) len += r;
    buf[len] = 0;
    int rc = pclose(f);
    const char *ms = strstr(buf, "\"ms_per_input\": ");
    const char *fl = strstr(buf, "\"flops\": [");
    if (rc != 0 || !ms || !fl) {
        fprintf(stderr, "bench_zoo: PyTorch reference failed for %s (exit %d): %.2000s\n", prefix,
                rc, buf);
        free(buf);
        return -1;
    }
    row->torch_ms = strtod(ms + 16, NULL);
    const char *p = fl + 10;
    row->agree = 0;
    for (int i = 0; i < n && *p && *p != ']'; i++) {
        char *end;
        double v = strtod(p, &end);
        if (end == p) break;
        row->agree += v == flops[i];
        p = end + strspn(end, ", ");
    }
    free(buf);
    return 0;
}

static void print_load(const char *when)
{
    double la[3];
    if (getloadavg(la, 3) == 3)
        printf("load average %s: %.2f %.2f %.2f (%ld cores)\n", when, la[0], la[1], la[2],
               sysconf(_SC_NPROCESSORS_ONLN));
}

int main(int argc, char **argv)
{
    const char *models = "models", *data = "/usr/share/datasets/fashion-mnist", *only = NULL;
    const char *csv_path = NULL;
    int n = 1000, reps = 11, torch_reps = 3, threads = 1, use_torch = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--models") && i + 1 < argc)
            models = argv[++i];
        else if (!strcmp(argv[i], "--data") && i + 1 < argc)
            data = argv[++i];
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
        else if (!strcmp(argv[i], "--n") && i + 1 < argc)
            n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--torch-reps") && i + 1 < argc)
            torch_reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--csv") && i + 1 < argc)
            csv_path = argv[++i];
        else if (!strcmp(argv[i], "--no-torch"))
            use_torch = 0;
        else {
            fprintf(stderr,
                    "usage: bench_zoo [--models DIR] [--data DIR] [--n N] [--reps R] "
                    "[--torch-reps R] [--threads T] [--only NAME] [--csv FILE] [--no-torch]\n");
            return 2;
        }
    }
    if (n < 2 || reps < 1 || reps > MAX_REPS || torch_reps < 1 || threads < 1) {
        fprintf(stderr, "bench_zoo: need --n >= 2, --reps in [1, %d], --threads >= 1\n", MAX_REPS);
        return 2;
    }
    char img[1024], lbl[1024];
    snprintf(img, sizeof img, "%s/t10k-images-idx3-ubyte.gz", data);
    snprintf(lbl, sizeof lbl, "%s/t10k-labels-idx1-ubyte.gz", data);
    dp_dataset_t *test = NULL;
    dp_err_t err = dp_dataset_load_idx(img, lbl, &test);
    if (err) {
        fprintf(stderr, "bench_zoo: %s\n", dp_err_detail());
        return 1;
    }
    if ((uint32_t)n > test->n) n = (int)test->n;

    char names[MAX_MODELS][64];
    int nm = 0;
    DIR *dir = opendir(models);
    if (!dir) {
        fprintf(stderr, "bench_zoo: cannot open %s\n", models);
        dp_dataset_destroy(&test);
        return 1;
    }
    for (struct dirent *e; (e = readdir(dir)) && nm < MAX_MODELS;) {
        size_t l = strlen(e->d_name);
        if (l > 3 && l < 64 && !strcmp(e->d_name + l - 3, ".pb") &&
            (!only || (strncmp(e->d_name, only, l - 3) == 0 && strlen(only) == l - 3))) {
            memcpy(names[nm], e->d_name, l - 3);
            names[nm++][l - 3] = 0;
        }
    }
    closedir(dir);
    qsort(names, (size_t)nm, sizeof names[0], cmp_str);

    nn_set_threads(threads);
    printf("bench_zoo: %d models in %s, %d test images, batch 1; per input the median of %d "
           "rounds x (1 warm-up + %d timed runs), PyTorch %d rounds; %d thread(s) both sides\n",
           nm, models, n, reps, ZOO_BURST, torch_reps, threads);
    print_load("at start");
    zoo_row_t rows[MAX_MODELS];
    double *lat = malloc(sizeof(double) * (size_t)n), *flops = malloc(sizeof(double) * (size_t)n);
    double *fexact = malloc(sizeof(double) * (size_t)n), *cpu = malloc(sizeof(double) * (size_t)n);
    int rc = 0;
    FILE *csv = csv_path ? fopen(csv_path, "w") : NULL;
    if (csv) fprintf(csv, "model,index,flops_ref,flops_exact,ms,cpu_ms\n");
    for (int k = 0; k < nm && lat && flops && fexact && cpu; k++) {
        zoo_row_t *row = &rows[k];
        memset(row, 0, sizeof *row);
        snprintf(row->name, sizeof row->name, "%s", names[k]);
        row->agree = -1;
        row->n = n;
        char prefix[1024];
        snprintf(prefix, sizeof prefix, "%s/%s", models, names[k]);
        adnn_model_t *m = NULL;
        if ((err = adnn_model_load(prefix, &m))) {
            fprintf(stderr, "bench_zoo: %s: %s\n", prefix, dp_err_detail());
            row->pearson = row->pearson_exact = row->pearson_cpu = row->ours_ms = NAN;
            rc = 1;
            continue;
        }
        int terr = time_ours(m, test, n, reps, lat, cpu, flops, fexact);
        adnn_model_destroy(&m);
        if (terr) {
            fprintf(stderr, "bench_zoo: out of memory\n");
            rc = 1;
            break;
        }
        double sum = 0, fsum = 0;
        for (int i = 0; i < n; i++) sum += lat[i], fsum += flops[i];
        row->ours_ms = sum / n;
        row->flops_mean = fsum / n;
        row->pearson = pearson(flops, lat, n);
        row->pearson_exact = pearson(fexact, lat, n);
        row->pearson_cpu = pearson(flops, cpu, n);
        for (int i = 0; csv && i < n; i++)
            fprintf(csv, "%s,%d,%.0f,%.0f,%.6f,%.6f\n", row->name, i, flops[i], fexact[i], lat[i],
                    cpu[i]);
        row->torch_ms = NAN;
        if (use_torch) time_torch(row, prefix, data, n, torch_reps, threads, flops);
        printf("  %-16s done: pearson %.3f, ours %.3f ms, torch %.3f ms\n", row->name, row->pearson,
               row->ours_ms, row->torch_ms);
        fflush(stdout);
    }
    print_load("at end");
    printf("\n%-16s %8s %8s %9s %11s %9s %9s %8s %10s\n", "model", "pearson", "r(cpu)", "r(exact)",
           "MFLOPs/inp", "ours ms", "torch ms", "speedup", "same path");
    for (int k = 0; k < nm; k++) {
        const zoo_row_t *r = &rows[k];
        char agree[32] = "-";
        if (r->agree >= 0) snprintf(agree, sizeof agree, "%d/%d", r->agree, r->n);
        printf("%-16s %8.3f %8.3f %9.3f %11.3f %9.3f %9.3f %7.2fx %10s\n", r->name, r->pearson,
               r->pearson_cpu, r->pearson_exact, r->flops_mean / 1e6, r->ours_ms, r->torch_ms,
               r->torch_ms / r->ours_ms, agree);
    }
    free(lat);
    free(flops);
    free(fexact);
    free(cpu);
    if (csv) fclose(csv);
    dp_dataset_destroy(&test);
    return rc;
}
