/* bench_report: the campaign report at fleet size. A synthetic campaign of
 * MODELS models x 6 budgets (Linf 0.03/0.06/0.09, L2 0.5/1.0/1.5) x 4
 * methods (DeepPerform, random, ILFO, DeepSloth) x INPUTS inputs, measured
 * on 2 device classes (seeds too), is fed to core/report as the REPORT task
 * feeds it: per group one sample set (x' = a real Fashion-MNIST test image
 * plus a pattern of the budget, FLOPs drawn per input), one result.json and
 * one measure.json per class. Prints the time to build report.json and to
 * render report.html, and writes both to OUT_DIR; bench_report.sh then
 * opens the page in headless Chromium (page_check.py).
 *
 *   build/bench/bench_report OUT_DIR [MODELS [INPUTS]]   (default 5, 1000) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report/report.h"
#include "util/clock.h"
#include "util/rng.h"

#define FMNIST "/usr/share/datasets/fashion-mnist"

static const char *const methods[] = {"deepperform", "random", "ilfo", "deepsloth"};
static const perf_method_t mcodes[] = {PERF_METHOD_DEEPPERFORM, PERF_METHOD_RANDOM,
                                       PERF_METHOD_ILFO, PERF_METHOD_DEEPSLOTH};
static const char *const classes[] = {"jetson-nano", "rpi4"};

static double frand(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) / 9007199254740992.0;
}

static char *measure_json(int n, const double *flops, double scale, uint64_t *rng)
{
    size_t cap = 256 + (size_t)n * 160, o = 0;
    char *t = malloc(cap);
    if (!t) return NULL;
    o += (size_t)snprintf(t, cap,
                          "{\"device\":{\"device_class\":\"x\",\"cpu\":\"synthetic\"},"
                          "\"provenance\":{\"host\":\"bench\"},\"inputs\":[");
    for (int i = 0; i < n; i++)
        o += (size_t)snprintf(t + o, cap - o,
                              "%s{\"index\":%d,\"latency_median_ms\":%.4f,\"flops\":%.0f,"
                              "\"exec_fraction\":%.4f}",
                              i ? "," : "", i,
                              scale * (0.5 + flops[i] / 2e6) * (0.95 + 0.1 * frand(rng)), flops[i],
                              flops[i] / 1e7);
    snprintf(t + o, cap - o, "]}");
    return t;
}

static char *result_json(const char *kind, const char *model, const char *norm, double eps,
                         const char *method, const char *cls, int n)
{
    char *t = malloc(1024);
    if (t)
        snprintf(t, 1024,
                 "{\"kind\":\"%s\",\"model\":\"%s\",\"norm\":\"%s\",\"eps\":%g,\"l2_at_most\":true,"
                 "\"method\":\"%s\",\"device_class\":\"%s\",\"n\":%d,\"iflops_mean\":80,"
                 "\"iflops_max\":300,\"exec_fraction_seed_mean\":0.3,\"exec_fraction_mean\":0.55,"
                 "\"psnr_mean\":24,\"norm_max\":%g,\"within_budget\":true,\"seconds\":%g,"
                 "\"idpb_rate\":0.2,\"provenance\":{\"blas_core\":\"Haswell\",\"gemm_path\":"
                 "\"avx2\",\"threads\":2}}",
                 kind, model, norm, eps, method, cls, n, eps,
                 n * (strcmp(method, "ilfo") ? 0.01 : 2.0));
    return t;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_report OUT_DIR [MODELS [INPUTS]]\n");
        return 2;
    }
    const int nm = argc > 2 ? atoi(argv[2]) : 5, n = argc > 3 ? atoi(argv[3]) : 1000;
    if (nm < 1 || n < 1 || n > 10000) {
        fprintf(stderr, "bench_report: MODELS >= 1, 1 <= INPUTS <= 10000\n");
        return 2;
    }
    dp_dataset_t *test = NULL;
    if (dp_dataset_load_idx(FMNIST "/t10k-images-idx3-ubyte.gz",
                            FMNIST "/t10k-labels-idx1-ubyte.gz", &test)) {
        fprintf(stderr, "bench_report: %s\n", dp_err_detail());
        return 1;
    }
    dp_report_src_t *src = NULL;
    dp_report_src_new("fleet-1", &src);
    dp_report_src_set_seeds(src, test, FMNIST "/t10k-images-idx3-ubyte.gz");
    double t0 = dp_clock_s();
    uint64_t rng = 1;
    double *seed_flops = malloc((size_t)n * sizeof *seed_flops);
    double *flops = malloc((size_t)n * sizeof *flops);
    char key[256], model[32];
    for (int m = 0; m < nm; m++) {
        snprintf(model, sizeof model, "model-%d", m);
        for (int i = 0; i < n; i++) seed_flops[i] = 1e6 * (2 + 4 * frand(&rng));
        for (int c = 0; c < 2; c++) { /* the seeds on each class */
            char *r = result_json("measure", model, "", 0, "seeds", classes[c], n);
            char *mj = measure_json(n, seed_flops, 1 + c, &rng);
            snprintf(key, sizeof key, "fleet-1/%s/seeds/s0/measure-%s/result.json", model,
                     classes[c]);
            dp_report_src_add_result(src, key, r, mj);
            free(r), free(mj);
        }
        for (int b = 0; b < 6; b++) {
            const char *norm = b < 3 ? "linf" : "l2";
            const double eps = b < 3 ? 0.03 * (b + 1) : 0.5 * (b - 2);
            for (int k = 0; k < 4; k++) {
                perf_samples_t *s = perf_samples_new(n, 1, 28, 28);
                s->method = mcodes[k];
                s->budget.norm = b < 3 ? PERF_NORM_LINF : PERF_NORM_L2;
                s->budget.eps = (float)eps;
                s->budget.l2_at_most = 1;
                snprintf(s->model, sizeof s->model, "%s", model);
                s->flops_full = 1e7;
                for (int i = 0; i < n; i++) {
                    s->seed_index[i] = i;
                    for (int p = 0; p < 784; p++) {
                        float x = test->images[(size_t)(i % test->n) * 784 + p] +
                                  (float)(eps / 3 * (frand(&rng) - 0.5));
                        s->xadv[(size_t)i * 784 + p] = x < 0 ? 0 : x > 1 ? 1 : x;
                    }
                    s->flops_seed[i] = seed_flops[i];
                    flops[i] = fmin(1e7, seed_flops[i] * (1 + (3 - k * 0.7) * frand(&rng)));
                    s->flops_adv[i] = flops[i];
                    s->delta_norm[i] = (float)eps;
                    s->psnr[i] = 20 + 10 * (float)frand(&rng);
                }
                snprintf(key, sizeof key, "fleet-1/%s/%s-%g/%s/s0/samples.safetensors", model, norm,
                         eps, methods[k]);
                dp_report_src_add_samples(src, key, s);
                perf_samples_destroy(&s);
                char *r =
                    result_json(k ? "baseline" : "generate", model, norm, eps, methods[k], "", n);
                snprintf(key, sizeof key, "fleet-1/%s/%s-%g/%s/s0/result.json", model, norm, eps,
                         methods[k]);
                dp_report_src_add_result(src, key, r, NULL);
                free(r);
                for (int c = 0; c < 2; c++) {
                    r = result_json("measure", model, norm, eps, methods[k], classes[c], n);
                    char *mj = measure_json(n, flops, 1 + c, &rng);
                    snprintf(key, sizeof key, "fleet-1/%s/%s-%g/%s/s0/measure-%s/result.json",
                             model, norm, eps, methods[k], classes[c]);
                    dp_report_src_add_result(src, key, r, mj);
                    free(r), free(mj);
                }
            }
        }
    }
    double t1 = dp_clock_s();
    char *json = NULL, *html = NULL;
    size_t hlen = 0;
    dp_report_opts_t o;
    dp_report_opts_init(&o);
    dp_err_t err = dp_report_build(src, &o, &json);
    double t2 = dp_clock_s();
    if (!err) err = dp_report_html(json, strlen(json), &html, &hlen);
    double t3 = dp_clock_s();
    if (err) {
        fprintf(stderr, "bench_report: %s\n", dp_err_detail());
        return 1;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/report.json", argv[1]);
    FILE *f = fopen(path, "wb");
    if (f) fputs(json, f), fclose(f);
    snprintf(path, sizeof path, "%s/report.html", argv[1]);
    f = fopen(path, "wb");
    if (f) fwrite(html, 1, hlen, f), fclose(f);
    printf("bench_report: %d models x 6 budgets x 4 methods x %d inputs, 2 device classes\n", nm,
           n);
    printf("feed %.2f s, build report.json %.2f s (%zu bytes), render report.html %.3f s (%zu "
           "bytes)\n",
           t1 - t0, t2 - t1, strlen(json), t3 - t2, hlen);
    free(json), free(html), free(seed_flops), free(flops);
    dp_report_src_destroy(&src);
    dp_dataset_destroy(&test);
    return 0;
}
