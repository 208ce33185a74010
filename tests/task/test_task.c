/* The task layer (core/task) on a tiny setup: SDN-ResNet, a width-8
 * generator trained one epoch on 64 Fashion-MNIST images, 8 seeds, a
 * file:// store and a scratch directory in a temporary directory.
 *
 * - every kind through dp_task_run: the artifacts exist where task.h says
 *   and load back; GENERATE's sample set is bit for bit dp-perform
 *   generate's on the same seeds; MEASURE's JSON has a row per input;
 *   REPORT aggregates the results above;
 * - a seed's x' does not depend on where its shard starts;
 * - TRAIN cancelled after epoch 1 (the cancel hook) resumes from the
 *   checkpoint the epoch-end hook uploaded (resumed_from = 1) and gives the
 *   generator of an uninterrupted run;
 * - MEASURE of a sample set: the seeds measured beside their inputs,
 *   energy through a RAPL probe on a fake sysfs tree at a known 5 W, the
 *   budgets' verdicts, a probe that cannot read (its detail, a warning,
 *   latency only), and dp-measurer --once on the same inputs writing a file
 *   of the same format; --once on bad input (exit status and message);
 * - settings from task messages, their refusals, the train split;
 * - the JSON writer and reader. */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nn/blas.h"
#include "perform/perform.h"
#include "util/json.h"
#include "task/task.h"
#include "util/path.h"

#define SDN      DP_SOURCE_DIR "/models/sdn_resnet"
#define FMNIST   "/usr/share/datasets/fashion-mnist"
#define PERFORM  DP_BINARY_DIR "/cli/dp-perform"
#define MEASURER DP_BINARY_DIR "/measurer/dp-measurer"
#define TRAIN_K  "c1/sdn_resnet/linf-0.09/deepperform/generator"

static char g_dir[64], g_store[96], g_scratch[96];

static void setup(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/dp-task-XXXXXX");
    cr_assert_not_null(mkdtemp(g_dir));
    snprintf(g_store, sizeof g_store, "%s/store", g_dir);
    snprintf(g_scratch, sizeof g_scratch, "%s/scratch", g_dir);
    cr_assert_eq(mkdir(g_store, 0700), 0);
    cr_assert_eq(mkdir(g_scratch, 0700), 0);
}

static void teardown(void) { dp_path_remove_tree(g_dir); }

static void need_fmnist(void)
{
    if (access(FMNIST "/t10k-images-idx3-ubyte.gz", R_OK) != 0)
        cr_skip_test("Fashion-MNIST is not installed in " FMNIST);
}

/* A path under the temporary directory (static, rotating). */
static const char *tmp(const char *name)
{
    static char buf[8][256];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, 256, "%s/%s", g_dir, name);
    return b;
}

/* A store key's file. */
static const char *obj(const char *key)
{
    static char buf[4][1024];
    static int k;
    char *b = buf[k++ % 4];
    snprintf(b, 1024, "%s/%.900s", g_store, key);
    return b;
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* ------------------------------------------------------------- task messages */

typedef struct tk {
    Dp__V1__Task t;
    Dp__V1__Model m;
    Dp__V1__Dataset d;
    Dp__V1__IndexRange train, test;
    Dp__V1__GeneratorSettings g;
    Dp__V1__UInt32Value width, epochs, batch;
    Dp__V1__Baseline b;
    Dp__V1__UInt32Value iters;
    Dp__V1__MeasureSettings ms;
    Dp__V1__UInt32Value warmup, reps;
    Dp__V1__DeviceClass dc;
    char store_uri[128], id[256], prefix[256], input[256], resume[256];
    char *inputs[1];
} tk_t;

/* A task of kind on seeds [b, e), its prefix, input and resume keys. */
static void tk_init(tk_t *k, Dp__V1__TaskKind kind, Dp__V1__Method method, uint32_t b, uint32_t e,
                    const char *prefix)
{
    memset(k, 0, sizeof *k);
    k->t = (Dp__V1__Task)DP__V1__TASK__INIT;
    k->m = (Dp__V1__Model)DP__V1__MODEL__INIT;
    k->d = (Dp__V1__Dataset)DP__V1__DATASET__INIT;
    k->train = k->test = (Dp__V1__IndexRange)DP__V1__INDEX_RANGE__INIT;
    k->g = (Dp__V1__GeneratorSettings)DP__V1__GENERATOR_SETTINGS__INIT;
    k->width = k->epochs = k->batch = k->iters = k->warmup = k->reps =
        (Dp__V1__UInt32Value)DP__V1__UINT32_VALUE__INIT;
    k->b = (Dp__V1__Baseline)DP__V1__BASELINE__INIT;
    k->ms = (Dp__V1__MeasureSettings)DP__V1__MEASURE_SETTINGS__INIT;
    k->dc = (Dp__V1__DeviceClass)DP__V1__DEVICE_CLASS__INIT;
    snprintf(k->store_uri, sizeof k->store_uri, "file://%s", g_store);
    snprintf(k->prefix, sizeof k->prefix, "%s", prefix);
    snprintf(k->id, sizeof k->id, "%s", prefix);
    k->t.id = k->id;
    k->t.campaign = "c1";
    k->t.kind = kind;
    k->t.attempt = 1;
    k->m.name = "sdn_resnet";
    k->m.family = DP__V1__MODEL_FAMILY__MODEL_FAMILY_SDN_RESNET;
    k->m.spec_uri = "file://" SDN ".pb";
    k->m.weights_uri = "file://" SDN ".safetensors";
    k->t.model = &k->m;
    k->d.name = "fmnist";
    k->d.format = DP__V1__DATASET_FORMAT__DATASET_FORMAT_IDX;
    k->d.train_images_uri = "file://" FMNIST "/train-images-idx3-ubyte.gz";
    k->d.train_labels_uri = "file://" FMNIST "/train-labels-idx1-ubyte.gz";
    k->d.test_images_uri = "file://" FMNIST "/t10k-images-idx3-ubyte.gz";
    k->d.test_labels_uri = "file://" FMNIST "/t10k-labels-idx1-ubyte.gz";
    k->train.end = 71; /* 64 trained on, 7 held out (10%) */
    k->test.end = 8;
    k->d.train_range = &k->train;
    k->d.test_range = &k->test;
    k->d.shard_size = 8;
    k->t.dataset = &k->d;
    k->t.norm = DP__V1__NORM__NORM_LINF;
    k->t.eps = 0.09f;
    k->t.method = method;
    k->t.shard_begin = b;
    k->t.shard_end = e;
    k->width.value = 8, k->epochs.value = 1, k->batch.value = 32;
    k->g.width = &k->width, k->g.epochs = &k->epochs, k->g.batch_size = &k->batch;
    k->g.seed = 1;
    k->t.generator = &k->g;
    k->t.output_prefix = k->prefix;
    k->t.store_uri = k->store_uri;
    if (kind == DP__V1__TASK_KIND__TASK_KIND_TRAIN) {
        snprintf(k->resume, sizeof k->resume, "%s.ckpt", prefix);
        k->t.resume_key = k->resume;
    }
    if (kind == DP__V1__TASK_KIND__TASK_KIND_BASELINE) {
        k->b.method = method == DP__V1__METHOD__METHOD_ILFO
                          ? DP__V1__BASELINE_METHOD__BASELINE_METHOD_ILFO
                          : DP__V1__BASELINE_METHOD__BASELINE_METHOD_RANDOM;
        if (method == DP__V1__METHOD__METHOD_ILFO) {
            k->iters.value = 2;
            k->b.iterations = &k->iters;
        }
        k->t.baseline = &k->b;
    }
    if (kind == DP__V1__TASK_KIND__TASK_KIND_MEASURE) {
        k->warmup.value = 2, k->reps.value = 3;
        k->ms.warmup = &k->warmup, k->ms.repetitions = &k->reps;
        k->t.measure = &k->ms;
        k->dc.name = "local";
        k->dc.probe = DP__V1__ENERGY_PROBE__ENERGY_PROBE_NONE;
        k->t.device = &k->dc;
        k->t.device_class = "local";
    }
}

static void tk_input(tk_t *k, const char *key)
{
    snprintf(k->input, sizeof k->input, "%s", key);
    k->inputs[0] = k->input;
    k->t.n_input_keys = 1;
    k->t.input_keys = k->inputs;
}

static dp_task_env_t env_of(void)
{
    dp_task_env_t e;
    memset(&e, 0, sizeof e);
    e.scratch = g_scratch;
    e.threads = 1;
    return e;
}

/* dp_task_run that must succeed; the result is cleared by the caller. */
static void run_ok(tk_t *k, const dp_task_env_t *env, dp_task_result_t *r)
{
    dp_err_t err = dp_task_run(&k->t, env, r);
    cr_assert_eq(err, DP_OK, "%s: %s: %s", k->t.id, dp_strerror(err), dp_err_detail());
    cr_assert_not_null(r->summary_json);
}

/* The result.json of prefix, parsed; it equals the summary. */
static void result_json(const char *prefix, const dp_task_result_t *r, tj_val_t *out)
{
    char key[512];
    snprintf(key, sizeof key, "%s/result.json", prefix);
    FILE *f = fopen(obj(key), "rb");
    cr_assert_not_null(f, "no %s", key);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    cr_assert_str_eq(buf, r->summary_json);
    cr_assert_eq(tj_parse(buf, n, out), DP_OK, "%s: %s", key, dp_err_detail());
}

static int has_key(const dp_task_result_t *r, const char *key)
{
    for (size_t i = 0; i < r->n_artifact_keys; i++)
        if (!strcmp(r->artifact_keys[i], key)) return 1;
    return 0;
}

/* TRAIN of TRAIN_K (or prefix) with epochs; the result is checked. */
static void train(const char *prefix, uint32_t epochs)
{
    tk_t k;
    tk_init(&k, DP__V1__TASK_KIND__TASK_KIND_TRAIN, DP__V1__METHOD__METHOD_DEEPPERFORM, 0, 0,
            prefix);
    k.epochs.value = epochs;
    dp_task_env_t env = env_of();
    dp_task_result_t r;
    run_ok(&k, &env, &r);
    char key[512];
    snprintf(key, sizeof key, "%s/generator.safetensors", prefix);
    cr_assert(has_key(&r, key) && exists(obj(key)), "no %s", key);
    cr_assert(has_key(&r, k.resume) && exists(obj(k.resume)), "no checkpoint");
    cr_assert_eq(r.resumed_from, 0);
    tj_val_t j;
    result_json(prefix, &r, &j);
    cr_assert_str_eq(tj_get_str(&j, "kind", ""), "train");
    cr_assert_eq(tj_get_num(&j, "epochs_run", 0), epochs);
    cr_assert_eq(tj_get_num(&j, "train_images", 0), 64);
    cr_assert_eq(tj_get_num(&j, "heldout_images", 0), 7);
    cr_assert_not_null(tj_get(tj_get(&j, "provenance"), "blas_core"));
    tj_val_free(&j);
    dp_task_result_clear(&r);
}

static void samples_equal(const perf_samples_t *a, const perf_samples_t *b, int i0, int n)
{
    size_t d = (size_t)a->c * a->h * a->w;
    cr_assert_eq(memcmp(a->xadv + (size_t)i0 * d, b->xadv, (size_t)n * d * sizeof(float)), 0,
                 "x' differ");
    cr_assert_eq(memcmp(a->flops_adv + i0, b->flops_adv, (size_t)n * sizeof(double)), 0);
    cr_assert_eq(memcmp(a->flops_seed + i0, b->flops_seed, (size_t)n * sizeof(double)), 0);
    cr_assert_eq(memcmp(a->delta_norm + i0, b->delta_norm, (size_t)n * sizeof(float)), 0);
    cr_assert_eq(memcmp(a->seed_index + i0, b->seed_index, (size_t)n * sizeof(int64_t)), 0);
}

/* ------------------------------------------------------------- every kind */

TestSuite(task, .init = setup, .fini = teardown);

Test(task, every_kind, .timeout = 240)
{
    need_fmnist();
    train(TRAIN_K, 1);
    dp_task_env_t env = env_of();
    dp_task_result_t r;
    tj_val_t j;
    const char *gen_p = "c1/sdn_resnet/linf-0.09/deepperform/s0";

    /* GENERATE: samples.safetensors, the same bits as dp-perform generate */
    tk_t k;
    tk_init(&k, DP__V1__TASK_KIND__TASK_KIND_GENERATE, DP__V1__METHOD__METHOD_DEEPPERFORM, 0, 8,
            gen_p);
    tk_input(&k, TRAIN_K);
    run_ok(&k, &env, &r);
    char key[512];
    snprintf(key, sizeof key, "%s/samples.safetensors", gen_p);
    cr_assert(has_key(&r, key));
    perf_samples_t *s = NULL, *c = NULL;
    cr_assert_eq(perf_samples_load(obj(key), &s), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(s->n, 8);
    cr_assert_eq(s->method, PERF_METHOD_DEEPPERFORM);
    cr_assert_str_eq(s->model, "sdn_resnet");
    for (int i = 0; i < 8; i++) cr_assert_eq(s->seed_index[i], i);
    result_json(gen_p, &r, &j);
    cr_assert_str_eq(tj_get_str(&j, "kind", ""), "generate");
    cr_assert_str_eq(tj_get_str(&j, "method", ""), "deepperform");
    cr_assert_eq(tj_get_num(&j, "n", 0), 8);
    cr_assert_eq(tj_get_num(&j, "within_budget", 0), 1);
    tj_val_free(&j);
    dp_task_result_clear(&r);
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "%s generate --model %s --gen %s --seeds 8 --threads 1 --out %s --quiet "
             "> %s 2>&1",
             PERFORM, SDN, obj(TRAIN_K "/generator.safetensors"), tmp("cli.st"), tmp("cli.log"));
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    cr_assert_eq(perf_samples_load(tmp("cli.st"), &c), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(c->n, 8);
    samples_equal(s, c, 0, 8);
    cr_assert(c->budget.norm == s->budget.norm && c->budget.eps == s->budget.eps &&
              c->budget.l2_at_most == s->budget.l2_at_most);
    perf_samples_destroy(&c);

    /* BASELINE: random and ILFO */
    const Dp__V1__Method bm[2] = {DP__V1__METHOD__METHOD_RANDOM, DP__V1__METHOD__METHOD_ILFO};
    const char *bp[2] = {"c1/sdn_resnet/linf-0.09/random/s0", "c1/sdn_resnet/linf-0.09/ilfo/s0"};
    for (int i = 0; i < 2; i++) {
        tk_init(&k, DP__V1__TASK_KIND__TASK_KIND_BASELINE, bm[i], 0, 8, bp[i]);
        run_ok(&k, &env, &r);
        snprintf(key, sizeof key, "%s/samples.safetensors", bp[i]);
        cr_assert_eq(perf_samples_load(obj(key), &c), DP_OK, "%s", dp_err_detail());
        cr_assert_eq(c->n, 8);
        cr_assert_eq(c->method, i ? PERF_METHOD_ILFO : PERF_METHOD_RANDOM);
        perf_summary_t sum;
        perf_summarize(c, 0.9, &sum);
        cr_assert(sum.within_budget);
        perf_samples_destroy(&c);
        result_json(bp[i], &r, &j);
        cr_assert_str_eq(tj_get_str(&j, "kind", ""), "baseline");
        tj_val_free(&j);
        dp_task_result_clear(&r);
    }

    /* MEASURE: the seeds, and the generated inputs */
    const char *mp[2] = {"c1/sdn_resnet/seeds/s0/measure-local", "c1/sdn_resnet/linf-0.09/"
                                                                 "deepperform/s0/measure-local"};
    for (int i = 0; i < 2; i++) {
        tk_init(&k, DP__V1__TASK_KIND__TASK_KIND_MEASURE,
                i ? DP__V1__METHOD__METHOD_DEEPPERFORM : DP__V1__METHOD__METHOD_SEEDS, 0, 8, mp[i]);
        if (i) tk_input(&k, gen_p);
        run_ok(&k, &env, &r);
        snprintf(key, sizeof key, "%s/measure.json", mp[i]);
        cr_assert(has_key(&r, key));
        FILE *f = fopen(obj(key), "rb");
        cr_assert_not_null(f);
        static char buf[1 << 16];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        cr_assert_eq(tj_parse(buf, n, &j), DP_OK, "%s", dp_err_detail());
        const tj_val_t *in = tj_get(&j, "inputs");
        cr_assert(in && in->type == TJ_ARR && in->n == 8);
        for (size_t q = 0; q < 8; q++) {
            cr_assert_eq(tj_get_num(&in->items[q], "index", -1), (double)q);
            cr_assert_gt(tj_get_num(&in->items[q], "latency_median_ms", 0), 0);
            cr_assert_gt(tj_get_num(&in->items[q], "flops", 0), 0);
            if (i) /* the generated input's FLOPs, as the sample set has them */
                cr_assert_eq(tj_get_num(&in->items[q], "flops", 0), s->flops_adv[q]);
        }
        cr_assert_eq(tj_get_num(&j, "n", 0), 8);
        cr_assert_eq(tj_get_num(&j, "repetitions", 0), 3);
        cr_assert_str_eq(tj_get_str(tj_get(&j, "device"), "device_class", ""), "local");
        cr_assert_not_null(tj_get(tj_get(&j, "device"), "kernel"));
        cr_assert_not_null(tj_get(tj_get(&j, "provenance"), "gemm_path"));
        cr_assert_str_eq(tj_get_str(&j, "method", ""), i ? "deepperform" : "seeds");
        tj_val_free(&j);
        result_json(mp[i], &r, &j);
        cr_assert_null(tj_get(&j, "inputs"), "the summary carries the rows");
        cr_assert_gt(tj_get_num(&j, "latency_p50_ms", 0), 0);
        tj_val_free(&j);
        dp_task_result_clear(&r);
    }

    /* REPORT: every result above, per cell */
    tk_init(&k, DP__V1__TASK_KIND__TASK_KIND_REPORT, DP__V1__METHOD__METHOD_UNSPECIFIED, 0, 0,
            "c1/report");
    k.t.model = NULL;
    run_ok(&k, &env, &r);
    cr_assert(has_key(&r, "c1/report/summary.json"));
    FILE *f = fopen(obj("c1/report/summary.json"), "rb");
    cr_assert_not_null(f);
    static char rep[1 << 16];
    size_t n = fread(rep, 1, sizeof rep - 1, f);
    fclose(f);
    cr_assert_eq(tj_parse(rep, n, &j), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(tj_get_num(&j, "results", 0), 6, "%s",
                 rep); /* train, generate, 2 baselines, 2 measures */
    cr_assert_eq(tj_get_num(&j, "skipped", -1), 0, "%s", rep);
    const tj_val_t *cells = tj_get(&j, "cells");
    cr_assert(cells && cells->type == TJ_ARR && cells->n == 4, "%s", rep);
    const tj_val_t *dp = NULL;
    for (size_t i = 0; i < cells->n; i++)
        if (!strcmp(tj_get_str(&cells->items[i], "method", ""), "deepperform"))
            dp = &cells->items[i];
    cr_assert_not_null(dp, "%s", rep);
    cr_assert_eq(tj_get_num(dp, "n", 0), 8);
    cr_assert_eq(tj_get_num(tj_get(dp, "train"), "epochs_run", 0), 1);
    const tj_val_t *lat = tj_get(dp, "latency");
    cr_assert(lat && lat->type == TJ_ARR && lat->n == 1, "%s", rep);
    cr_assert_eq(tj_get_num(&lat->items[0], "ilatency_inputs", 0), 8, "%s", rep);
    cr_assert(isfinite(tj_get_num(&lat->items[0], "ilatency_mean", NAN)), "%s", rep);
    tj_val_free(&j);
    cr_assert(has_key(&r, "c1/report/report.json"));
    cr_assert(has_key(&r, "c1/report/report.html"));
    dp_task_result_clear(&r);

    /* REPORT against a baseline (Task.regression): one whose DeepPerform
     * executed fraction was lower is beaten, so the figure is worse; a
     * baseline that is not there leaves the comparison out and says why */
    f = fopen(obj("c1/report/report.json"), "rb");
    cr_assert_not_null(f);
    static char full[1 << 20];
    n = fread(full, 1, sizeof full - 1, f);
    fclose(f);
    full[n] = '\0';
    char *at = strstr(full, "\"method\":\"deepperform\",\"n\":8,");
    cr_assert_not_null(at, "the DeepPerform group");
    at = strstr(at, "\"exec_fraction_mean\":");
    cr_assert_not_null(at);
    double was = strtod(at + strlen("\"exec_fraction_mean\":"), NULL);
    char base[1 << 20 | 64];
    snprintf(base, sizeof base, "%.*s\"exec_fraction_mean\":%.17g%s", (int)(at - full), full,
             was / 2, strchr(at + strlen("\"exec_fraction_mean\":"), ','));
    f = fopen(tmp("base.json"), "wb");
    cr_assert_not_null(f);
    fputs(base, f);
    fclose(f);
    char uri[4200];
    snprintf(uri, sizeof uri, "file://%s", tmp("base.json"));
    Dp__V1__Regression rg = DP__V1__REGRESSION__INIT;
    rg.baseline_report_uri = uri;
    k.t.regression = &rg;
    run_ok(&k, &env, &r);
    cr_assert_eq(tj_parse(r.summary_json, strlen(r.summary_json), &j), DP_OK);
    const tj_val_t *v = tj_get(&j, "regression");
    cr_assert_not_null(v, "%s", r.summary_json);
    cr_assert_eq(tj_get_num(v, "compared", 0), 1, "%s", r.summary_json);
    cr_assert_eq(tj_get_num(v, "tolerance_pct", 0), 5, "%s", r.summary_json);
    cr_assert_geq(tj_get_num(v, "worse", 0), 1, "%s", r.summary_json);
    tj_val_free(&j);
    dp_task_result_clear(&r);
    snprintf(uri, sizeof uri, "file://%s", tmp("no-such-report.json"));
    run_ok(&k, &env, &r);
    cr_assert_eq(tj_parse(r.summary_json, strlen(r.summary_json), &j), DP_OK);
    v = tj_get(&j, "regression");
    cr_assert_eq(tj_get_num(v, "compared", 1), 0, "%s", r.summary_json);
    cr_assert(strstr(tj_get_str(v, "baseline_missing", ""), "no-such-report.json"), "%s",
              r.summary_json);
    tj_val_free(&j);
    dp_task_result_clear(&r);
    k.t.regression = NULL;
    perf_samples_destroy(&s);
}

/* A seed gives the same x' whichever shard holds it: seeds [5, 8) agree
 * with the same seeds of [0, 8), and [30, 40) with [32, 40) (the batch is
 * 32, so seed 32 starts a batch in both). */
/* ------------------------------------------------------------- MEASURE */

/* A RAPL package counter under ROOT advanced as a machine drawing `watts`
 * would, until stop (rename-atomic writes every 2 ms). */
typedef struct rapl_writer {
    char path[512];
    double watts, t0;
    atomic_int stop;
} rapl_writer_t;

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void put_file(const char *path, const char *text)
{
    char tmpf[512];
    snprintf(tmpf, sizeof tmpf, "%s.tmp", path);
    FILE *f = fopen(tmpf, "w");
    cr_assert_not_null(f, "%s", tmpf);
    fputs(text, f);
    fclose(f);
    cr_assert_eq(rename(tmpf, path), 0);
}

static void *rapl_write(void *arg)
{
    rapl_writer_t *w = arg;
    while (!atomic_load(&w->stop)) {
        char v[64];
        snprintf(v, sizeof v, "%llu\n",
                 (unsigned long long)((mono_s() - w->t0) * w->watts * 1e6) + 1000u);
        put_file(w->path, v);
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* A fake /sys under root with one RAPL package zone. */
static void rapl_root(const char *root, rapl_writer_t *w)
{
    char dir[256], p[300];
    snprintf(dir, sizeof dir, "%s/sys/class/powercap/intel-rapl:0", root);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    snprintf(p, sizeof p, "%s/name", dir);
    put_file(p, "package-0\n");
    snprintf(p, sizeof p, "%s/max_energy_range_uj", dir);
    put_file(p, "262143328850\n");
    snprintf(w->path, sizeof w->path, "%s/energy_uj", dir);
    put_file(w->path, "1000\n");
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void parse_file(const char *path, tj_val_t *j)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "no %s", path);
    static char buf[1 << 18];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    cr_assert_lt(n, sizeof buf - 1, "%s is larger than the test's buffer", path);
    cr_assert_eq(tj_parse(buf, n, j), DP_OK, "%s: %s", path, dp_err_detail());
}

/* Every member path of v ("a.b", "inputs[].seed.flops"), array items
 * merged, appended to out as "path\n" lines. */
static void key_paths(const tj_val_t *v, const char *path, char *out, size_t size)
{
    char sub[512];
    if (v->type == TJ_OBJ) {
        for (size_t i = 0; i < v->n; i++) {
            snprintf(sub, sizeof sub, "%s.%s", path, v->keys[i]);
            size_t len = strlen(out);
            char line[520];
            snprintf(line, sizeof line, "%s\n", sub);
            if (!strstr(out, line)) snprintf(out + len, size - len, "%s", line);
            key_paths(&v->items[i], sub, out, size);
        }
    } else if (v->type == TJ_ARR) {
        snprintf(sub, sizeof sub, "%s[]", path);
        for (size_t i = 0; i < v->n; i++) key_paths(&v->items[i], sub, out, size);
    }
}

static int cmp_line(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The sorted member paths of a measure.json without those naming the task
 * (task_id, campaign), which --once has no task to give. */
static char *format_of(const tj_val_t *j)
{
    static char raw[1 << 16];
    raw[0] = '\0';
    key_paths(j, "", raw, sizeof raw);
    char *lines[1024];
    size_t n = 0;
    for (char *s = strtok(raw, "\n"); s && n < 1024; s = strtok(NULL, "\n"))
        if (strcmp(s, ".task_id") && strcmp(s, ".campaign")) lines[n++] = s;
    qsort(lines, n, sizeof *lines, cmp_line);
    char *out = calloc(1, 1 << 16);
    cr_assert_not_null(out);
    for (size_t i = 0; i < n; i++) strcat(strcat(out, lines[i]), "\n");
    return out;
}

static const tj_val_t *at(const tj_val_t *a, size_t i)
{
    cr_assert(a && a->type == TJ_ARR && i < a->n);
    return &a->items[i];
}

/* The MEASURE of a sample set (random noise, 8 seeds): the seeds measured
 * beside their inputs; energy through a RAPL probe on a fake sysfs tree
 * drawing a known 5 W; budgets give verdicts; a probe that cannot read
 * leaves its detail and a warning, and latency goes on; dp-measurer --once
 * on the same inputs writes a file of the same format. */
Test(task, measure_energy_budgets_once, .timeout = 240)
{
    need_fmnist();
    dp_task_env_t env = env_of();
    dp_task_result_t r;
    tj_val_t j;
    const char *bl = "c1/sdn_resnet/linf-0.09/random/s0";
    tk_t k;
    tk_init(&k, DP__V1__TASK_KIND__TASK_KIND_BASELINE, DP__V1__METHOD__METHOD_RANDOM, 0, 8, bl);
    run_ok(&k, &env, &r);
    dp_task_result_clear(&r);
    char samples[512];
    snprintf(samples, sizeof samples, "%s",
             obj("c1/sdn_resnet/linf-0.09/random/s0/samples.safetensors"));
    perf_samples_t *set = NULL;
    cr_assert_eq(perf_samples_load(samples, &set), DP_OK, "%s", dp_err_detail());

    rapl_writer_t w = {.watts = 5.0, .t0 = mono_s()};
    rapl_root(tmp("root"), &w);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, rapl_write, &w), 0);
    dp_task_measurer_t ms = {.probe = DP__V1__ENERGY_PROBE__ENERGY_PROBE_RAPL,
                             .sysfs_root = tmp("root"),
                             .rapl_domains = "package",
                             .pin_cpu = -1};
    env.measurer = &ms;
    const char *mp = "c1/sdn_resnet/linf-0.09/random/s0/measure-local";
    Dp__V1__Thresholds th_ = DP__V1__THRESHOLDS__INIT;
    Dp__V1__FloatValue lat = DP__V1__FLOAT_VALUE__INIT, en = DP__V1__FLOAT_VALUE__INIT,
                       ilat = DP__V1__FLOAT_VALUE__INIT, mt = DP__V1__FLOAT_VALUE__INIT;
    lat.value = 1e-6f; /* every input is over: an IDPB in latency */
    en.value = 1e6f;   /* none is over */
    ilat.value = 1e5f; /* none is 1000x slower than its seed */
    th_.latency_ms = &lat, th_.energy_mj = &en, th_.ilatency_percent = &ilat;
    tk_init(&k, DP__V1__TASK_KIND__TASK_KIND_MEASURE, DP__V1__METHOD__METHOD_RANDOM, 0, 8, mp);
    tk_input(&k, bl);
    k.t.thresholds = &th_;
    mt.value = 0.005f;
    k.ms.min_time_s = &mt;
    Dp__V1__UInt32Value rounds = DP__V1__UINT32_VALUE__INIT;
    rounds.value = 2; /* 3 repetitions over 2 rounds: 2 in each */
    k.ms.rounds = &rounds;
    k.dc.samples = 3; /* 3 inputs and their seeds: 6 energy windows of >= 1 s */
    run_ok(&k, &env, &r);
    atomic_store(&w.stop, 1);
    pthread_join(th, NULL);
    char key[512];
    snprintf(key, sizeof key, "%s/measure.json", mp);
    cr_assert(has_key(&r, key));
    parse_file(obj(key), &j);
    cr_assert_eq(tj_get_num(&j, "n", 0), 3);
    cr_assert_eq(tj_get(&j, "seeds_measured")->num, 1);
    cr_assert_eq(tj_get_num(&j, "pearson_n", 0), 6);
    cr_assert_eq(tj_get_num(&j, "rounds", 0), 2);
    const tj_val_t *e = tj_get(&j, "energy");
    cr_assert_eq(tj_get(e, "measured")->num, 1, "%s", tj_get_str(e, "error", ""));
    cr_assert_eq(tj_get_num(e, "points", 0), 6);
    cr_assert(strstr(tj_get_str(e, "source", ""), "package-0"));
    const tj_val_t *in = tj_get(&j, "inputs");
    cr_assert(in && in->type == TJ_ARR && in->n == 3);
    double powers[6];
    size_t n_powers = 0;
    for (size_t q = 0; q < 3; q++) {
        const tj_val_t *x = &in->items[q], *sd = tj_get(x, "seed");
        cr_assert_eq(tj_get_num(x, "index", -1), (double)q);
        cr_assert_not_null(sd, "no seed beside input %zu", q);
        cr_assert_eq(tj_get_num(sd, "flops", 0), set->flops_seed[q]);
        cr_assert_eq(tj_get_num(x, "flops", 0), set->flops_adv[q]);
        cr_assert_float_eq(tj_get_num(x, "iflops_percent", NAN),
                           (set->flops_adv[q] / set->flops_seed[q] - 1) * 100, 1e-9);
        const double l = tj_get_num(x, "latency_median_ms", 0),
                     ls = tj_get_num(sd, "latency_median_ms", 0);
        cr_assert_gt(l, 0);
        cr_assert_gt(ls, 0);
        cr_assert_float_eq(tj_get_num(x, "ilatency_percent", NAN), (l / ls - 1) * 100, 1e-9);
        cr_assert_geq(tj_get_num(x, "repetitions", 0), 4);
        cr_assert_geq(tj_get_num(sd, "repetitions", 0), 4);
        /* the window's mean power is the fake machine's 5 W, and the energy
           per inference is its share of the window. The counter is a file a
           thread rewrites every 2 ms; on a loaded machine that thread can be
           late by hundreds of ms at an end of a 1 s window: each window
           within a factor of 2, their median within 25% (the probes' own
           accuracy, 1%, is test_measure's) */
        const tj_val_t *pts[2] = {x, sd};
        for (int v = 0; v < 2; v++) {
            double emj = tj_get_num(pts[v], "energy_mj", NAN),
                   pw = tj_get_num(pts[v], "power_w", NAN),
                   ws = tj_get_num(pts[v], "energy_window_s", NAN),
                   reps = tj_get_num(pts[v], "energy_window_reps", 0);
            cr_assert(pw > 2.5 && pw < 10, "input %zu/%d: %.4f W, want 5 W", q, v, pw);
            powers[n_powers++] = pw;
            cr_assert_geq(ws, 1.0, "a window shorter than 1 s");
            cr_assert_gt(reps, 0);
            cr_assert_float_eq(emj, pw * ws / reps * 1e3, 1e-9 * emj, "input %zu/%d", q, v);
        }
        const tj_val_t *v = tj_get(x, "idpb");
        cr_assert_eq(tj_get(v, "latency")->type, TJ_BOOL);
        cr_assert_eq(tj_get(v, "latency")->num, 1);
        cr_assert_eq(tj_get(v, "energy")->num, 0);
        cr_assert_eq(tj_get(v, "iflops")->type, TJ_NULL, "no I-FLOPs budget, no verdict");
    }
    qsort(powers, n_powers, sizeof *powers, cmp_double);
    cr_assert_eq(n_powers, 6);
    cr_assert(fabs(powers[2] - 5.0) <= 1.25, "median window power %.4f W, want 5 W", powers[2]);
    const tj_val_t *idpb = tj_get(&j, "idpb");
    cr_assert_eq(tj_get_num(tj_get(idpb, "latency"), "count", -1), 3);
    cr_assert_eq(tj_get_num(tj_get(idpb, "energy"), "count", -1), 0);
    cr_assert_eq(tj_get_num(tj_get(idpb, "energy"), "judged", -1), 3);
    cr_assert_float_eq(tj_get_num(tj_get(idpb, "budgets"), "latency_ms", 0), 1e-6, 1e-9);
    const tj_val_t *pc = tj_get(tj_get(&j, "percentiles"), "latency_ms");
    cr_assert_eq(tj_get_num(at(pc, 2), "p", 0), 0.99);
    cr_assert_eq(tj_get_num(at(pc, 2), "n", 0), 3);
    cr_assert_eq(tj_get(at(pc, 2), "upper")->type, TJ_NULL, "no bound from 3 samples");
    cr_assert_not_null(tj_get(tj_get(&j, "percentiles"), "seed_energy_mj"));
    const tj_val_t *dev = tj_get(&j, "device");
    cr_assert_str_eq(tj_get_str(dev, "energy_probe", ""), "rapl");
    cr_assert(strlen(tj_get_str(dev, "measurer_version", "")) > 0);
    const double unsteady = tj_get_num(dev, "unsteady_measurements", -1);
    cr_assert(unsteady >= 0 && unsteady <= tj_get_num(&j, "n", 0) * 2, "unsteady %g", unsteady);
    cr_assert_str_eq(tj_get_str(tj_get(&j, "samples_provenance"), "gemm_path", ""), set->gemm_path);
    cr_assert_str_eq(tj_get_str(tj_get(&j, "provenance"), "blas_core", ""), nn_blas_corename());
    char *task_format = format_of(&j);
    tj_val_free(&j);
    dp_task_result_clear(&r);

    /* the probe cannot read: its detail and a warning; latency goes on */
    ms.sysfs_root = tmp("no-such-root");
    k.dc.samples = 2;
    run_ok(&k, &env, &r);
    parse_file(obj(key), &j);
    e = tj_get(&j, "energy");
    cr_assert_eq(tj_get(e, "measured")->num, 0);
    cr_assert(strstr(tj_get_str(e, "error", ""), "no-such-root/sys/class/powercap"), "%s",
              tj_get_str(e, "error", ""));
    const tj_val_t *wr = tj_get(&j, "warnings");
    int said = 0;
    for (size_t i = 0; wr && i < wr->n; i++)
        said |= strstr(wr->items[i].str, "latency only") != NULL;
    cr_assert(said, "no warning that energy is off");
    cr_assert_gt(tj_get_num(&tj_get(&j, "inputs")->items[1], "latency_median_ms", 0), 0);
    cr_assert_eq(tj_get(&tj_get(&j, "inputs")->items[1], "energy_mj")->type, TJ_NULL);
    tj_val_free(&j);
    dp_task_result_clear(&r);

    /* dp-measurer --once on the same inputs: the same format */
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "%s --once --model %s --samples %s --out %s --warmup 1 --repetitions 3 "
             "--min-time-s 0.005 --probe rapl --rapl-domains package --sysfs-root %s --threads 1 "
             "--latency-budget-ms 0.000001 --energy-budget-mj 1000000 --ilatency-budget 100000 "
             "> %s 2>&1",
             MEASURER, SDN, samples, tmp("once.json"), tmp("root"), tmp("once.log"));
    w.stop = 0;
    cr_assert_eq(pthread_create(&th, NULL, rapl_write, &w), 0);
    int rc = system(cmd);
    atomic_store(&w.stop, 1);
    pthread_join(th, NULL);
    cr_assert_eq(rc, 0, "%s", cmd);
    parse_file(tmp("once.json"), &j);
    cr_assert_eq(tj_get_num(&j, "n", 0), 8);
    cr_assert_str_eq(tj_get_str(&j, "method", ""), "random");
    char *once_format = format_of(&j);
    cr_assert_str_eq(once_format, task_format);
    cr_assert_eq(tj_get_num(tj_get(tj_get(&j, "idpb"), "latency"), "count", -1), 8);
    tj_val_free(&j);
    free(once_format);
    free(task_format);
    perf_samples_destroy(&set);
}

/* dp-measurer --once on bad input: an exit status and a line naming what
 * was wrong, never a crash. */
Test(task, measurer_once_bad_input, .timeout = 60)
{
    need_fmnist();
    put_file(tmp("not-a-set"), "not a sample set\n");
    static const struct {
        const char *args, *says;
        int rc;
    } cases[] = {
        {"--once", "--once needs --model", 2},
        {"--once --model " SDN " --probe sonar", "--probe (flag) is none, rapl, ina3221 or nvml",
         2},
        {"--once --model " SDN " --min-time-s -1", "--min-time-s (flag) expects a number", 2},
        {"--once --model " SDN " --repetitions 0", "--repetitions (flag) expects an integer", 2},
        {"--once --model /no/such/model", "cannot load the model /no/such/model", 1},
        {"--once --model " SDN " --samples /no/such/set", "cannot load the inputs: /no/such/set",
         1},
        {"--once --model " SDN " --samples @NOTASET", "not-a-set", 1},
        {"--once --model " SDN " --seeds 5 --seed-offset 9999", "exceed the 10000 test images", 1},
        {"--once --model " SDN " --seeds 2 --pin-cpu 1023", "may not run on CPU 1023", 1},
        {"--once --model " SDN " --data-dir /no/such/dir", "cannot load the seeds", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char args[1024], cmd[2048];
        const char *at_ = strstr(cases[i].args, "@NOTASET");
        if (at_)
            snprintf(args, sizeof args, "%.*s%s", (int)(at_ - cases[i].args), cases[i].args,
                     tmp("not-a-set"));
        else
            snprintf(args, sizeof args, "%s", cases[i].args);
        snprintf(cmd, sizeof cmd, "%s %s --out %s --min-time-s 0 > %s 2>&1", MEASURER, args,
                 tmp("bad.json"), tmp("bad.log"));
        if (strstr(args, "--min-time-s -1")) /* the case's own value must be the one parsed */
            snprintf(cmd, sizeof cmd, "%s %s --out %s > %s 2>&1", MEASURER, args, tmp("bad.json"),
                     tmp("bad.log"));
        int st = system(cmd);
        cr_assert(WIFEXITED(st), "%s: killed by a signal", args);
        FILE *f = fopen(tmp("bad.log"), "r");
        cr_assert_not_null(f);
        char log[4096];
        size_t n = fread(log, 1, sizeof log - 1, f);
        fclose(f);
        log[n] = '\0';
        cr_expect_eq(WEXITSTATUS(st), cases[i].rc, "%s: exit %d, want %d: %s", args,
                     WEXITSTATUS(st), cases[i].rc, log);
        cr_expect(strstr(log, cases[i].says) != NULL, "%s: '%s' not in: %s", args, cases[i].says,
                  log);
        cr_expect_eq(access(tmp("bad.json"), F_OK), -1, "%s: a result file was written", args);
    }
}

Test(task, shard_independent, .timeout = 120)
{
    need_fmnist();
    train(TRAIN_K, 1);
    adnn_model_t *m = NULL;
    dp_dataset_t *test = NULL;
    cr_assert_eq(adnn_model_load(SDN, &m), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(dp_dataset_load_idx(FMNIST "/t10k-images-idx3-ubyte.gz",
                                     FMNIST "/t10k-labels-idx1-ubyte.gz", &test),
                 DP_OK);
    dp_task_settings_t st = dp_task_settings_default();
    st.model_name = "sdn_resnet";
    const uint32_t ranges[4][2] = {{0, 8}, {5, 8}, {30, 40}, {32, 40}};
    perf_samples_t *out[4];
    for (int i = 0; i < 4; i++) {
        st.seed_begin = ranges[i][0], st.seed_end = ranges[i][1];
        dp_task_io_t io = {.model = m, .test = test, .keep_samples = 1};
        io.generator = obj(TRAIN_K "/generator.safetensors");
        io.out = tmp("shard.st");
        dp_task_output_t o;
        cr_assert_eq(dp_task_generate(&st, &io, &o), DP_OK, "%s", dp_err_detail());
        out[i] = o.samples;
        o.samples = NULL;
        dp_task_output_clear(&o);
    }
    samples_equal(out[0], out[1], 5, 3);
    samples_equal(out[2], out[3], 2, 8);
    for (int i = 0; i < 4; i++) perf_samples_destroy(&out[i]);
    adnn_model_destroy(&m);
    dp_dataset_destroy(&test);
}

/* ------------------------------------------------------------- cancel and resume */

typedef struct watch {
    int epochs_seen;
} watch_t;

static void count_epochs(void *ctx, const char *stage, uint64_t done, uint64_t total,
                         const char *line)
{
    (void)total, (void)line;
    if (!strcmp(stage, "train")) ((watch_t *)ctx)->epochs_seen = (int)done;
}

/* after the first epoch: finish it (checkpoint) and stop */
static int stop_after_first(void *ctx)
{
    return ((watch_t *)ctx)->epochs_seen >= 1 ? PERF_STOP_AFTER_EPOCH : PERF_GO_ON;
}

static void gen_equal(const char *a, const char *b)
{
    perf_gen_t *ga = NULL, *gb = NULL;
    perf_budget_t ba, bb;
    cr_assert_eq(perf_gen_load(a, 1, &ga, &ba), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(perf_gen_load(b, 1, &gb, &bb), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(perf_gen_num_tensors(ga), perf_gen_num_tensors(gb));
    for (int i = 0; i < perf_gen_num_tensors(ga); i++) {
        const perf_gen_tensor_t *x = perf_gen_tensor(ga, i), *y = perf_gen_tensor(gb, i);
        cr_assert_eq(x->numel, y->numel);
        cr_assert_eq(memcmp(x->data, y->data, x->numel * sizeof(float)), 0, "tensor %s differs",
                     x->name);
    }
    perf_gen_destroy(&ga);
    perf_gen_destroy(&gb);
}

Test(task, train_cancel_resume, .timeout = 180)
{
    need_fmnist();
    const char *p = "c1/sdn_resnet/linf-0.09/deepperform/generator";
    tk_t k;
    tk_init(&k, DP__V1__TASK_KIND__TASK_KIND_TRAIN, DP__V1__METHOD__METHOD_DEEPPERFORM, 0, 0, p);
    k.epochs.value = 2;
    /* killed after epoch 1: the checkpoint of epoch 1 is in the store */
    watch_t wt = {0};
    dp_task_env_t env = env_of();
    env.hooks = (perf_hooks_t){count_epochs, stop_after_first, NULL, &wt};
    dp_task_result_t r;
    cr_assert_eq(dp_task_run(&k.t, &env, &r), DP_ERR_CANCELLED, "%s", dp_err_detail());
    cr_assert(strstr(dp_err_detail(), "stopped after epoch 1"), "%s", dp_err_detail());
    cr_assert_eq(r.n_artifact_keys, 0);
    dp_task_result_clear(&r);
    cr_assert(exists(obj(k.resume)), "no checkpoint uploaded");
    cr_assert_not(exists(obj("c1/sdn_resnet/linf-0.09/deepperform/generator/"
                             "generator.safetensors")));
    /* the next attempt resumes */
    k.t.attempt = 2;
    env.hooks = (perf_hooks_t){0};
    run_ok(&k, &env, &r);
    cr_assert_eq(r.resumed_from, 1);
    tj_val_t j;
    result_json(p, &r, &j);
    cr_assert_eq(tj_get_num(&j, "resumed_from", 0), 1);
    cr_assert_eq(tj_get_num(&j, "epochs_run", 0), 2);
    tj_val_free(&j);
    dp_task_result_clear(&r);
    /* an uninterrupted run elsewhere */
    train("c2/generator", 2);
    gen_equal(obj("c1/sdn_resnet/linf-0.09/deepperform/generator/generator.safetensors"),
              obj("c2/generator/generator.safetensors"));
}

static int stop_now(void *ctx)
{
    (void)ctx;
    return PERF_STOP_NOW;
}

/* Cancelled before it starts: each kind returns DP_ERR_CANCELLED and
 * writes nothing. */
Test(task, cancelled_at_once, .timeout = 60)
{
    need_fmnist();
    dp_task_env_t env = env_of();
    env.hooks.cancelled = stop_now;
    const Dp__V1__TaskKind kinds[3] = {DP__V1__TASK_KIND__TASK_KIND_TRAIN,
                                       DP__V1__TASK_KIND__TASK_KIND_BASELINE,
                                       DP__V1__TASK_KIND__TASK_KIND_MEASURE};
    for (int i = 0; i < 3; i++) {
        tk_t k;
        tk_init(&k, kinds[i],
                i == 0   ? DP__V1__METHOD__METHOD_DEEPPERFORM
                : i == 1 ? DP__V1__METHOD__METHOD_ILFO
                         : DP__V1__METHOD__METHOD_SEEDS,
                0, 8, "c1/x");
        dp_task_result_t r;
        cr_assert_eq(dp_task_run(&k.t, &env, &r), DP_ERR_CANCELLED, "kind %d: %s", (int)kinds[i],
                     dp_err_detail());
        dp_task_result_clear(&r);
        cr_assert_not(exists(obj("c1/x/result.json")));
    }
}

/* ------------------------------------------------------------- refusals */

Test(task, bad_tasks, .timeout = 60)
{
    need_fmnist();
    dp_task_env_t env = env_of();
    dp_task_result_t r;
    tk_t k;
    /* no generator in the store yet */
    tk_init(&k, DP__V1__TASK_KIND__TASK_KIND_GENERATE, DP__V1__METHOD__METHOD_DEEPPERFORM, 0, 8,
            "c1/g");
    tk_input(&k, "c1/none");
    cr_assert_eq(dp_task_run(&k.t, &env, &r), DP_ERR_NOTFOUND);
    cr_assert(strstr(dp_err_detail(), "cannot fetch the generator: not found"), "%s",
              dp_err_detail());
    /* a model file that is not there */
    tk_init(&k, DP__V1__TASK_KIND__TASK_KIND_BASELINE, DP__V1__METHOD__METHOD_RANDOM, 0, 8, "c1/b");
    k.m.spec_uri = "file:///nonexistent/m.pb";
    cr_assert_eq(dp_task_run(&k.t, &env, &r), DP_ERR_NOTFOUND);
    cr_assert(strstr(dp_err_detail(), "cannot load the model: not found: /nonexistent/m.pb"), "%s",
              dp_err_detail());
    /* a relative file:// URI, a family that disagrees with the spec, CNN */
    tk_init(&k, DP__V1__TASK_KIND__TASK_KIND_BASELINE, DP__V1__METHOD__METHOD_RANDOM, 0, 8, "c1/b");
    k.m.weights_uri = "file://models/sdn_resnet.safetensors";
    cr_assert_eq(dp_task_run(&k.t, &env, &r), DP_ERR_INVALID, "%s", dp_err_detail());
    tk_init(&k, DP__V1__TASK_KIND__TASK_KIND_BASELINE, DP__V1__METHOD__METHOD_RANDOM, 0, 8, "c1/b");
    k.m.family = DP__V1__MODEL_FAMILY__MODEL_FAMILY_SKIPNET;
    cr_assert_eq(dp_task_run(&k.t, &env, &r), DP_ERR_MISMATCH, "%s", dp_err_detail());
    k.m.family = DP__V1__MODEL_FAMILY__MODEL_FAMILY_CNN;
    cr_assert_eq(dp_task_run(&k.t, &env, &r), DP_ERR_UNSUPPORTED, "%s", dp_err_detail());
    /* seeds past the test split */
    tk_init(&k, DP__V1__TASK_KIND__TASK_KIND_BASELINE, DP__V1__METHOD__METHOD_RANDOM, 9990, 10010,
            "c1/b");
    cr_assert_eq(dp_task_run(&k.t, &env, &r), DP_ERR_RANGE, "%s", dp_err_detail());
    cr_assert(strstr(dp_err_detail(), "seeds [9990, 10010) exceed the 10000 test images"), "%s",
              dp_err_detail());
    /* DeepSloth on a network without exits is a bad input, not a retry */
    tk_init(&k, DP__V1__TASK_KIND__TASK_KIND_BASELINE, DP__V1__METHOD__METHOD_DEEPSLOTH, 0, 8,
            "c1/b");
    k.m.family = DP__V1__MODEL_FAMILY__MODEL_FAMILY_BLOCKDROP;
    k.m.spec_uri = "file://" DP_SOURCE_DIR "/models/blockdrop.pb";
    k.m.weights_uri = "file://" DP_SOURCE_DIR "/models/blockdrop.safetensors";
    cr_assert_eq(dp_task_run(&k.t, &env, &r), DP_ERR_UNSUPPORTED, "%s", dp_err_detail());
    cr_assert(strstr(dp_err_detail(), "deepsloth: not supported: DeepSloth needs an early-exit"),
              "%s", dp_err_detail());
    cr_assert_not(exists(obj("c1/b/result.json")));
    dp_task_result_clear(&r);
}

Test(task, settings)
{
    const dp_task_settings_t d = dp_task_settings_default();
    cr_assert_eq(d.budget.norm, PERF_NORM_LINF);
    cr_assert_eq(d.budget.l2_at_most, 1, "the default is at most eps (Budget.l2_exact false)");
    cr_assert_eq(perf_train_config_default().budget.l2_at_most, 1);
    cr_assert_eq(d.width, 16);
    cr_assert_eq(d.batch, 32);
    cr_assert_eq(d.epochs, 20);
    cr_assert_eq(d.warmup, 10);
    cr_assert_eq(d.repetitions, 30);
    tk_t k;
    tk_init(&k, DP__V1__TASK_KIND__TASK_KIND_TRAIN, DP__V1__METHOD__METHOD_DEEPPERFORM, 0, 0,
            "c1/t");
    dp_task_settings_t s;
    cr_assert_eq(dp_task_settings_from_task(&k.t, &s), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(s.width, 8);
    cr_assert_eq(s.epochs, 1);
    cr_assert_eq(s.batch, 32);
    cr_assert_eq(s.seed, 1);
    cr_assert_eq(s.train_end, 71);
    const perf_train_config_t c = dp_task_train_config(&s);
    cr_assert(c.width == 8 && c.epochs == 1 && c.batch == 32 && c.budget.eps == 0.09f);
    /* the split: 10% held out, at most 500, at least 1 */
    uint32_t t0, nt, v0, nv;
    cr_assert_eq(dp_task_train_split(&s, 60000, &t0, &nt, &v0, &nv), DP_OK);
    cr_assert(t0 == 0 && nt == 64 && v0 == 64 && nv == 7, "%u %u %u %u", t0, nt, v0, nv);
    s.train_end = 0; /* to the end */
    cr_assert_eq(dp_task_train_split(&s, 60000, &t0, &nt, &v0, &nv), DP_OK);
    cr_assert(nt == 59500 && v0 == 59500 && nv == 500);
    s.train_begin = 100, s.train_end = 130; /* 27 to train on: less than a batch */
    cr_assert_eq(dp_task_train_split(&s, 60000, &t0, &nt, &v0, &nv), DP_ERR_RANGE);
    s.train_end = 70000;
    cr_assert_eq(dp_task_train_split(&s, 60000, &t0, &nt, &v0, &nv), DP_ERR_RANGE);
    /* L2, exactly */
    k.t.norm = DP__V1__NORM__NORM_L2, k.t.eps = 1.5f, k.t.l2_exact = 1;
    cr_assert_eq(dp_task_settings_from_task(&k.t, &s), DP_OK);
    cr_assert(s.budget.norm == PERF_NORM_L2 && s.budget.eps == 1.5f && !s.budget.l2_at_most);
    k.t.l2_exact = 0;
    cr_assert_eq(dp_task_settings_from_task(&k.t, &s), DP_OK);
    cr_assert_eq(s.budget.l2_at_most, 1);
    /* refusals */
    k.t.eps = 0;
    cr_assert_eq(dp_task_settings_from_task(&k.t, &s), DP_ERR_INVALID);
    tk_init(&k, DP__V1__TASK_KIND__TASK_KIND_GENERATE, DP__V1__METHOD__METHOD_RANDOM, 0, 8, "c");
    cr_assert_eq(dp_task_settings_from_task(&k.t, &s), DP_ERR_INVALID);
    cr_assert(strstr(dp_err_detail(), "GENERATE"), "%s", dp_err_detail());
    tk_init(&k, DP__V1__TASK_KIND__TASK_KIND_BASELINE, DP__V1__METHOD__METHOD_ILFO, 8, 8, "c");
    cr_assert_eq(dp_task_settings_from_task(&k.t, &s), DP_ERR_INVALID);
    tk_init(&k, DP__V1__TASK_KIND__TASK_KIND_BASELINE, DP__V1__METHOD__METHOD_ILFO, 0, 8, "c");
    k.t.model = NULL;
    cr_assert_eq(dp_task_settings_from_task(&k.t, &s), DP_ERR_INVALID);
    /* ILFO's iterations, DeepSloth's steps by norm; the class's samples */
    tk_init(&k, DP__V1__TASK_KIND__TASK_KIND_BASELINE, DP__V1__METHOD__METHOD_ILFO, 0, 8, "c");
    cr_assert_eq(dp_task_settings_from_task(&k.t, &s), DP_OK);
    cr_assert_eq(dp_task_ilfo_config(&s).iters, 2);
    cr_assert_eq(dp_task_ilfo_config(&s).batch, 32);
    tk_init(&k, DP__V1__TASK_KIND__TASK_KIND_MEASURE, DP__V1__METHOD__METHOD_SEEDS, 16, 24, "c");
    k.dc.samples = 20; /* the first 20 seeds of the range: 4 of this shard */
    cr_assert_eq(dp_task_settings_from_task(&k.t, &s), DP_OK);
    cr_assert(s.seeds && s.measure_max == 4 && s.warmup == 2 && s.repetitions == 3);
}

Test(task, json)
{
    tj_writer_t w;
    tj_init(&w);
    tj_obj(&w);
    tj_kstr(&w, "s", "a\"b\\c\n\x01\xe2\x82\xac\xff");
    tj_knum(&w, "x", 0.1);
    tj_kfloat(&w, "f", 0.03f);
    tj_knum(&w, "nan", NAN);
    tj_kint(&w, "i", -42);
    tj_key(&w, "a");
    tj_arr(&w);
    tj_bool(&w, 1);
    tj_null(&w);
    tj_obj(&w);
    tj_obj_end(&w);
    tj_arr_end(&w);
    tj_obj_end(&w);
    char *t = tj_take(&w);
    cr_assert_str_eq(t, "{\"s\":\"a\\\"b\\\\c\\u000a\\u0001\xe2\x82\xac\\ufffd\",\"x\":0.1,"
                        "\"f\":0.03,\"nan\":null,\"i\":-42,\"a\":[true,null,{}]}");
    tj_val_t v;
    cr_assert_eq(tj_parse(t, strlen(t), &v), DP_OK, "%s", dp_err_detail());
    cr_assert_str_eq(tj_get_str(&v, "s", ""), "a\"b\\c\n\x01\xe2\x82\xac\xef\xbf\xbd");
    cr_assert_eq(tj_get_num(&v, "x", 0), 0.1);
    cr_assert_eq((float)tj_get_num(&v, "f", 0), 0.03f);
    cr_assert_eq(tj_get(&v, "nan")->type, TJ_NULL);
    cr_assert_eq(tj_get_num(&v, "i", 0), -42);
    cr_assert_eq(tj_get(&v, "a")->n, 3);
    tj_val_free(&v);
    free(t);
    static const char *const bad[] = {"",
                                      "{",
                                      "{\"a\"}",
                                      "[1,]",
                                      "{\"a\":1} x",
                                      "\"\\u12\"",
                                      "tru",
                                      "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
                                      "[[[[[[[[[[[[[[[[[[[1]]]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(tj_parse(bad[i], strlen(bad[i]), &v), DP_ERR_FORMAT, "%s", bad[i]);
    cr_assert_eq(tj_parse("\"\\ud83d\\ude00\"", 14, &v), DP_OK);
    cr_assert_str_eq(v.str, "\xf0\x9f\x98\x80");
    tj_val_free(&v);
}

/* ------------------------------------------------------------- s3:// */

#define S3_AK "S3RVER"

static void put(dp_store_t *st, const char *key, const char *path)
{
    cr_assert_eq(dp_store_put_file(st, key, path), DP_OK, "%s: %s", key, dp_err_detail());
}

/* The names in SCRATCH/cache and their inode numbers, as one string. */
static void cache_listing(char *buf, size_t size)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "ls -i %s/cache | sort", g_scratch);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(buf, 1, size - 1, p);
    buf[n] = '\0';
    pclose(p);
}

/* Inputs and artifacts on s3:// (s3rver; tests/store/run-tests.sh sets
 * DP_TEST_S3_ENDPOINT): inputs fetched once into the cache, fetched again
 * when the object changes; the sample set lands in the bucket. */
Test(task, s3_store, .timeout = 120)
{
    need_fmnist();
    const char *ep = getenv("DP_TEST_S3_ENDPOINT");
    if (!ep || !*ep) cr_skip_test("DP_TEST_S3_ENDPOINT unset: run through run-tests.sh");
    dp_store_settings_t ss;
    dp_store_settings_init(&ss);
    ss.endpoint = ep;
    ss.access_key = ss.secret_key = S3_AK;
    dp_store_t *st = NULL;
    cr_assert_eq(dp_store_new("s3://dp-test", &ss, &st), DP_OK, "%s", dp_err_detail());
    put(st, "in/sdn.pb", SDN ".pb");
    put(st, "in/sdn.safetensors", SDN ".safetensors");
    put(st, "in/t10k-images.gz", FMNIST "/t10k-images-idx3-ubyte.gz");
    put(st, "in/t10k-labels.gz", FMNIST "/t10k-labels-idx1-ubyte.gz");
    dp_task_env_t env = env_of();
    env.store_settings = &ss;
    char listing[3][4096];
    for (int round = 0; round < 3; round++) {
        if (round == 2) { /* the labels object replaced: a new ETag, fetched again */
            FILE *f = fopen(tmp("labels"), "wb");
            cr_assert_not_null(f);
            static const uint8_t hdr[8] = {0, 0, 8, 1, 0, 0, 0x27, 0x10}; /* 10000 labels */
            fwrite(hdr, 1, 8, f);
            for (int i = 0; i < 10000; i++) fputc(i % 10, f);
            fclose(f);
            put(st, "in/t10k-labels.gz", tmp("labels"));
        }
        tk_t k;
        char prefix[64];
        snprintf(prefix, sizeof prefix, "c1/sdn_resnet/linf-0.09/random/s%d", round);
        tk_init(&k, DP__V1__TASK_KIND__TASK_KIND_BASELINE, DP__V1__METHOD__METHOD_RANDOM, 0, 8,
                prefix);
        snprintf(k.store_uri, sizeof k.store_uri, "s3://dp-test");
        k.m.spec_uri = "s3://dp-test/in/sdn.pb";
        k.m.weights_uri = "s3://dp-test/in/sdn.safetensors";
        k.d.test_images_uri = "s3://dp-test/in/t10k-images.gz";
        k.d.test_labels_uri = "s3://dp-test/in/t10k-labels.gz";
        dp_task_result_t r;
        run_ok(&k, &env, &r);
        char key[256];
        snprintf(key, sizeof key, "%s/samples.safetensors", prefix);
        cr_assert(has_key(&r, key));
        cr_assert_eq(dp_store_get_file(st, key, tmp("s3.st")), DP_OK, "%s", dp_err_detail());
        perf_samples_t *s = NULL;
        cr_assert_eq(perf_samples_load(tmp("s3.st"), &s), DP_OK, "%s", dp_err_detail());
        cr_assert_eq(s->n, 8);
        perf_samples_destroy(&s);
        dp_task_result_clear(&r);
        cache_listing(listing[round], sizeof listing[round]);
    }
    /* four inputs cached; the second run fetched nothing (same files, same
     * inodes); the third fetched the changed labels only */
    int lines = 0;
    for (const char *p = listing[0]; *p; p++) lines += *p == '\n';
    cr_assert_eq(lines, 4, "%s", listing[0]);
    cr_assert_str_eq(listing[0], listing[1]);
    lines = 0;
    for (const char *p = listing[2]; *p; p++) lines += *p == '\n';
    cr_assert_eq(lines, 5, "%s", listing[2]);
    cr_assert(strstr(listing[2], "t10k-labels.gz"));
    dp_store_destroy(&st);
}
