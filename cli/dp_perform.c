/* dp-perform: DeepPerform test-input generation and its baselines on local
 * files, through the same core/perform functions the pipeline's worker calls.
 *
 *   dp-perform train    --model M --norm linf --eps 0.09 --out G.safetensors
 *   dp-perform generate --model M --gen G.safetensors --out S.safetensors
 *   dp-perform baseline --model M --method ilfo --norm linf --eps 0.09 --out S.safetensors
 *   dp-perform evaluate [--json] S.safetensors...
 *
 * M is a model prefix (M.pb + M.safetensors). Seeds are the first --seeds
 * Fashion-MNIST test images (from --seed-offset); the generator trains on the
 * first --train-n training images and keeps the best epoch by the executed
 * fraction of the next --val-n training images (held out). */
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adnn/adnn.h"
#include "cli_util.h"
#include "data/dataset.h"
#include "nn/nn.h"
#include "perform/perform.h"
#include "util/err.h"
#include "util/utf8.h"

/* Defaults of the generator's data that live here rather than in
 * perf_train_config_t (which takes arrays, not counts). */
#define DEFAULT_TRAIN_N 5000
#define DEFAULT_VAL_N   500

static void usage(FILE *f)
{
    const perf_train_config_t d = perf_train_config_default();
    fprintf(
        f,
        "usage: dp-perform train    --model M --norm N --eps X --out GEN [options]\n"
        "       dp-perform generate --model M --gen GEN --out SAMPLES [options]\n"
        "       dp-perform baseline --model M --method random|ilfo|deepsloth --norm N --eps X\n"
        "                           --out SAMPLES [options]\n"
        "       dp-perform evaluate [--json] [--idpb X] SAMPLES...\n"
        "\n"
        "M is a model prefix (M.pb, M.safetensors). Norms: linf, l2.\n"
        "options:\n"
        "  --l2-at-most       L2 projection scales down only above eps (default: exactly eps)\n"
        "  --seeds N          test seeds: test images [offset, offset+N) (default 1000)\n"
        "  --seed-offset N    (default 0)\n"
        "  --train-n N        training images for the generator (default %d)\n"
        "  --val-n N          held-out training images after them (default %d)\n"
        "  --width N          generator base width (default %d; the paper's 64 is for 3x32x32)\n"
        "  --batch N          training / generation / baseline batch (default %d)\n"
        "  --epochs N         at most N epochs (default %d)\n"
        "  --patience N       early stop after N epochs without improvement (default %d)\n"
        "  --lr-step1 N       lr x0.1 from epoch N (default: half of --epochs)\n"
        "  --lr-step2 N       lr x0.01 from epoch N (default: 80%% of --epochs)\n"
        "  --alpha X          L_GAN weight (default 0: no discriminator)\n"
        "  --beta X           L_per weight (default 0)\n"
        "  --lr X             Adam learning rate (default %g)\n"
        "  --checkpoint PATH  (default GEN.ckpt; resumed from when present)\n"
        "  --time-limit S     train: start no epoch after S seconds; keep the best so far\n"
        "  --iters N          ILFO iterations (default 300)\n"
        "  --seed N           (default 1)\n"
        "  --idpb X           IDPB verdict threshold on the executed fraction (default 0.9)\n"
        "  --data-dir DIR     (default /usr/share/datasets/fashion-mnist)\n"
        "  --threads N        train: OpenBLAS threads. baseline: N seed workers, each with a\n"
        "                     copy of the model, one OpenBLAS thread and whole --batch batches\n"
        "                     (so at most seeds/batch workers); generate: N OpenBLAS threads\n"
        "                     for the generator, N workers for measuring. Default: all cores\n"
        "  --json, --quiet, -h/--help\n",
        DEFAULT_TRAIN_N, DEFAULT_VAL_N, d.width, d.batch, d.epochs, d.patience, (double)d.lr);
}

typedef struct opts {
    const char *cmd, *model, *gen, *out, *ckpt, *data_dir, *method;
    int norm, l2_at_most, json, quiet;
    double eps, alpha, beta, lr, idpb, time_limit;
    long seeds, offset, train_n, val_n, width, batch, epochs, patience, iters, seed, threads;
    long lr_step1, lr_step2;
} opts_t;

static volatile int g_stop;
static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static int parse_args(int argc, char **argv, opts_t *o)
{
    enum { O_L2M = 256, O_OFF, O_TRN, O_VAL, O_PAT, O_CKPT, O_IDPB, O_DATA, O_TL, O_LS1, O_LS2 };
    static const struct option lo[] = {{"model", required_argument, 0, 'm'},
                                       {"gen", required_argument, 0, 'g'},
                                       {"out", required_argument, 0, 'o'},
                                       {"method", required_argument, 0, 'M'},
                                       {"norm", required_argument, 0, 'n'},
                                       {"eps", required_argument, 0, 'e'},
                                       {"l2-at-most", no_argument, 0, O_L2M},
                                       {"seeds", required_argument, 0, 'S'},
                                       {"seed-offset", required_argument, 0, O_OFF},
                                       {"train-n", required_argument, 0, O_TRN},
                                       {"val-n", required_argument, 0, O_VAL},
                                       {"width", required_argument, 0, 'w'},
                                       {"batch", required_argument, 0, 'b'},
                                       {"epochs", required_argument, 0, 'E'},
                                       {"patience", required_argument, 0, O_PAT},
                                       {"lr-step1", required_argument, 0, O_LS1},
                                       {"lr-step2", required_argument, 0, O_LS2},
                                       {"alpha", required_argument, 0, 'a'},
                                       {"beta", required_argument, 0, 'B'},
                                       {"lr", required_argument, 0, 'l'},
                                       {"checkpoint", required_argument, 0, O_CKPT},
                                       {"iters", required_argument, 0, 'i'},
                                       {"seed", required_argument, 0, 's'},
                                       {"idpb", required_argument, 0, O_IDPB},
                                       {"data-dir", required_argument, 0, O_DATA},
                                       {"time-limit", required_argument, 0, O_TL},
                                       {"threads", required_argument, 0, 't'},
                                       {"json", no_argument, 0, 'j'},
                                       {"quiet", no_argument, 0, 'q'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'm':
            o->model = optarg;
            break;
        case 'g':
            o->gen = optarg;
            break;
        case 'o':
            o->out = optarg;
            break;
        case 'M':
            o->method = optarg;
            break;
        case 'n':
            if ((o->norm = perf_norm_parse(optarg)) < 0) {
                fprintf(stderr, "dp-perform: --norm is linf or l2, got '%s'\n", optarg);
                bad = 1;
            }
            break;
        case 'e':
            bad = cli_parse_double("--eps", optarg, 1e-9, 1e6, &o->eps);
            break;
        case O_L2M:
            o->l2_at_most = 1;
            break;
        case 'S':
            bad = cli_parse_long("--seeds", optarg, 1, 1 << 24, &o->seeds);
            break;
        case O_OFF:
            bad = cli_parse_long("--seed-offset", optarg, 0, 1 << 24, &o->offset);
            break;
        case O_TRN:
            bad = cli_parse_long("--train-n", optarg, 2, 1 << 24, &o->train_n);
            break;
        case O_VAL:
            bad = cli_parse_long("--val-n", optarg, 1, 1 << 24, &o->val_n);
            break;
        case 'w':
            bad = cli_parse_long("--width", optarg, 8, 256, &o->width);
            break;
        case 'b':
            bad = cli_parse_long("--batch", optarg, 1, 4096, &o->batch);
            break;
        case 'E':
            bad = cli_parse_long("--epochs", optarg, 1, 100000, &o->epochs);
            break;
        case O_PAT:
            bad = cli_parse_long("--patience", optarg, 1, 100000, &o->patience);
            break;
        case O_LS1:
            bad = cli_parse_long("--lr-step1", optarg, 1, 100000, &o->lr_step1);
            break;
        case O_LS2:
            bad = cli_parse_long("--lr-step2", optarg, 1, 100000, &o->lr_step2);
            break;
        case 'a':
            bad = cli_parse_double("--alpha", optarg, 0, 1e6, &o->alpha);
            break;
        case 'B':
            bad = cli_parse_double("--beta", optarg, 0, 1e6, &o->beta);
            break;
        case 'l':
            bad = cli_parse_double("--lr", optarg, 1e-9, 1, &o->lr);
            break;
        case O_CKPT:
            o->ckpt = optarg;
            break;
        case 'i':
            bad = cli_parse_long("--iters", optarg, 1, 1000000, &o->iters);
            break;
        case 's':
            bad = cli_parse_long("--seed", optarg, 0, 0x7fffffff, &o->seed);
            break;
        case O_IDPB:
            bad = cli_parse_double("--idpb", optarg, 0, 1, &o->idpb);
            break;
        case O_TL:
            bad = cli_parse_double("--time-limit", optarg, 0, 1e9, &o->time_limit);
            break;
        case O_DATA:
            o->data_dir = optarg;
            break;
        case 't':
            bad = cli_parse_long("--threads", optarg, 0, 256, &o->threads);
            break;
        case 'j':
            o->json = 1;
            break;
        case 'q':
            o->quiet = 1;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
        if (bad) return -1;
    }
    return 0;
}

static perf_budget_t budget_of(const opts_t *o)
{
    perf_budget_t b = {(perf_norm_t)o->norm, (float)o->eps, o->l2_at_most};
    return b;
}

/* 0 when the images of d have the model's input shape, else 1 after a line
 * naming both (the model would read past the images otherwise). */
static int check_shape(const adnn_model_t *m, const dp_dataset_t *d, const char *dir)
{
    const adnn_spec_t *s = adnn_model_spec(m);
    if ((int)d->c == s->c && (int)d->h == s->h && (int)d->w == s->w) return 0;
    fprintf(stderr, "dp-perform: the images in %s are %ux%ux%u, the model expects %dx%dx%d\n", dir,
            d->c, d->h, d->w, s->c, s->h, s->w);
    return 1;
}

/* 1 when --out is neither file of --model, else 0 after a line naming it. */
static int out_not_model(const opts_t *o)
{
    char pb[4096], st[4096];
    snprintf(pb, sizeof pb, "%s.pb", o->model);
    snprintf(st, sizeof st, "%s.safetensors", o->model);
    return cli_out_not_input("--out", o->out, "the --model spec", pb) &&
           cli_out_not_input("--out", o->out, "the --model weights", st);
}

/* Model and the seed images of the test split: the caller destroys both. */
static int load_model_seeds(const opts_t *o, adnn_model_t **m, dp_dataset_t **test,
                            perf_samples_t **s)
{
    dp_err_t err = adnn_model_load(o->model, m);
    if (err) return cli_fail("cannot load the model", err);
    if ((err = cli_load_split(o->data_dir, "t10k", test)))
        return cli_fail("cannot load Fashion-MNIST", err);
    if (check_shape(*m, *test, o->data_dir)) return 1;
    if ((uint32_t)(o->offset + o->seeds) > (*test)->n) {
        fprintf(stderr, "dp-perform: seeds [%ld, %ld) exceed the %u test images\n", o->offset,
                o->offset + o->seeds, (*test)->n);
        return 1;
    }
    *s = perf_samples_new((int)o->seeds, (int)(*test)->c, (int)(*test)->h, (int)(*test)->w);
    if (!*s) return cli_fail("samples", DP_ERR_NOMEM);
    for (long i = 0; i < o->seeds; i++) (*s)->seed_index[i] = o->offset + i;
    return 0;
}

static const float *seed_images(const opts_t *o, const dp_dataset_t *test)
{
    return test->images + (size_t)o->offset * dp_dataset_sample_size(test);
}

/* Seed workers of baseline and generate's measuring step: what --threads set
 * (main sets OpenBLAS to it), else OpenBLAS's default, all cores. Each
 * worker runs one OpenBLAS thread. */
static int seed_workers(void) { return nn_get_threads(); }

static void print_summary(const perf_samples_t *s, double idpb)
{
    perf_summary_t r;
    perf_summarize(s, idpb, &r);
    printf("%s %s %s eps %g: %d inputs, I-FLOPs mean %.2f%% max %.2f%%, executed fraction %.4f "
           "(seeds %.4f), PSNR %.2f dB, max norm %.6f, %.3g s/input, IDPB rate %.3f\n",
           s->model, perf_method_name(s->method), perf_norm_name(s->budget.norm), s->budget.eps,
           r.n, r.iflops_mean, r.iflops_max, r.exec_mean, r.exec_seed_mean, r.psnr_mean, r.norm_max,
           r.seconds_per_input, r.idpb_rate);
}

static int cmd_train(opts_t *o)
{
    if (cli_need("train", "--model", o->model) || cli_need("train", "--out", o->out) ||
        cli_need("train", "--norm and --eps", o->norm >= 0 && o->eps > 0 ? o : NULL))
        return 2;
    if (!cli_out_file_ok("--out", o->out) || !out_not_model(o) ||
        (o->ckpt && !cli_out_file_ok("--checkpoint", o->ckpt)))
        return 1;
    if (o->batch < 2) { /* BatchNorm's training statistics need two images */
        fprintf(stderr, "dp-perform train: --batch must be >= 2 for training, got %ld\n", o->batch);
        return 2;
    }
    if (o->train_n < o->batch) {
        fprintf(stderr, "dp-perform train: --train-n (%ld) must be at least --batch (%ld)\n",
                o->train_n, o->batch);
        return 2;
    }
    char ckpt[4096];
    snprintf(ckpt, sizeof ckpt, "%s.ckpt", o->out);
    adnn_model_t *m = NULL;
    dp_dataset_t *train = NULL;
    perf_gen_t *g = NULL;
    int rc = 1;
    dp_err_t err = adnn_model_load(o->model, &m);
    if (err) return cli_fail("cannot load the model", err);
    if ((err = cli_load_split(o->data_dir, "train", &train))) {
        rc = cli_fail("cannot load Fashion-MNIST", err);
        goto done;
    }
    if (check_shape(m, train, o->data_dir)) goto done;
    if ((uint32_t)(o->train_n + o->val_n) > train->n) {
        fprintf(stderr, "dp-perform train: --train-n + --val-n exceed %u images\n", train->n);
        goto done;
    }
    perf_train_config_t c = perf_train_config_default();
    c.budget = budget_of(o);
    c.width = (int)o->width;
    c.batch = (int)o->batch;
    c.epochs = (int)o->epochs;
    c.patience = (int)o->patience;
    c.lr_step1 = (int)o->lr_step1;
    c.lr_step2 = (int)o->lr_step2;
    c.alpha = (float)o->alpha;
    c.beta = (float)o->beta;
    c.lr = (float)o->lr;
    c.seed = (uint64_t)o->seed;
    c.checkpoint = o->ckpt ? o->ckpt : ckpt;
    c.time_limit_s = o->time_limit;
    c.verbose = !o->quiet;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    size_t isz = dp_dataset_sample_size(train);
    if (!o->quiet) {
        int s1, s2;
        perf_lr_steps(&c, &s1, &s2);
        printf("dp-perform train: %s, %s eps %g%s, width %d, batch %d, <= %d epochs (lr %g, x0.1 "
               "from epoch %d, x0.01 from %d, patience %d), %ld training + %ld held-out images, "
               "%d threads, checkpoint %s\n",
               cli_base_name(o->model), perf_norm_name(c.budget.norm), c.budget.eps,
               c.budget.l2_at_most ? " (at most)" : "", c.width, c.batch, c.epochs, (double)c.lr,
               s1, s2, c.patience, o->train_n, o->val_n, nn_get_threads(), c.checkpoint);
    }
    perf_train_result_t res;
    err = perf_train(m, train->images, (int)o->train_n, train->images + (size_t)o->train_n * isz,
                     (int)o->val_n, &c, &g_stop, &g, &res);
    if (err) {
        rc = cli_fail("train", err);
        goto done;
    }
    if ((err = perf_gen_save(g, &c.budget, o->out))) {
        rc = cli_fail("cannot save the generator", err);
        goto done;
    }
    if (!o->quiet)
        printf("dp-perform train: %.0f s this run, %d epochs (resumed after %d), best held-out "
               "executed fraction %.4f at epoch %d%s; wrote %s\n",
               res.seconds, res.epochs_run, res.resumed_from, res.best_exec, res.best_epoch,
               res.early_stopped ? " (early stop)" : (res.time_limited ? " (time limit)" : ""),
               o->out);
    rc = 0;
done:
    perf_gen_destroy(&g);
    adnn_model_destroy(&m);
    dp_dataset_destroy(&train);
    return rc;
}

static int cmd_generate(opts_t *o)
{
    if (cli_need("generate", "--model", o->model) || cli_need("generate", "--gen", o->gen) ||
        cli_need("generate", "--out", o->out))
        return 2;
    if (!cli_out_file_ok("--out", o->out) || !out_not_model(o) ||
        !cli_out_not_input("--out", o->out, "the --gen generator", o->gen))
        return 1;
    adnn_model_t *m = NULL;
    dp_dataset_t *test = NULL;
    perf_samples_t *s = NULL;
    perf_gen_t *g = NULL;
    perf_budget_t b;
    int rc = load_model_seeds(o, &m, &test, &s);
    dp_err_t err;
    if (rc) goto done;
    rc = 1;
    if ((err = perf_gen_load(o->gen, (int)o->batch, &g, &b))) {
        rc = cli_fail("cannot load the generator", err);
        goto done;
    }
    if ((err = perf_generate(g, m, &b, seed_images(o, test), s, seed_workers()))) {
        rc = cli_fail("generate", err);
        goto done;
    }
    dp_utf8_copy(s->model, sizeof s->model, cli_base_name(o->model)); /* whole characters */
    if ((err = perf_samples_save(s, o->out))) {
        rc = cli_fail("cannot save the samples", err);
        goto done;
    }
    if (!o->quiet) print_summary(s, o->idpb);
    rc = 0;
done:
    perf_gen_destroy(&g);
    perf_samples_destroy(&s);
    adnn_model_destroy(&m);
    dp_dataset_destroy(&test);
    return rc;
}

static int cmd_baseline(opts_t *o)
{
    if (cli_need("baseline", "--model", o->model) || cli_need("baseline", "--method", o->method) ||
        cli_need("baseline", "--out", o->out) ||
        cli_need("baseline", "--norm and --eps", o->norm >= 0 && o->eps > 0 ? o : NULL))
        return 2;
    if (!cli_out_file_ok("--out", o->out) || !out_not_model(o)) return 1;
    int meth = perf_method_parse(o->method);
    if (meth <= PERF_METHOD_DEEPPERFORM) {
        fprintf(stderr, "dp-perform baseline: --method is random, ilfo or deepsloth\n");
        return 2;
    }
    adnn_model_t *m = NULL;
    dp_dataset_t *test = NULL;
    perf_samples_t *s = NULL;
    int rc = load_model_seeds(o, &m, &test, &s);
    dp_err_t err = DP_OK;
    if (rc) goto done;
    perf_budget_t b = budget_of(o);
    const float *x = seed_images(o, test);
    /* --threads workers of one OpenBLAS thread each, one worker too: the
     * same bits whatever --threads (OpenBLAS's threads may move the last
     * bits, and they do not pay on these shapes) */
    int workers = seed_workers();
    nn_set_threads(1);
    if (meth == PERF_METHOD_RANDOM) {
        err = perf_random(m, &b, (uint64_t)o->seed, x, s, workers);
    } else if (meth == PERF_METHOD_ILFO) {
        perf_ilfo_config_t c = perf_ilfo_config_default();
        c.iters = (int)o->iters;
        c.batch = (int)o->batch;
        c.workers = workers;
        c.progress_every = o->quiet ? 0 : 5.0;
        err = perf_ilfo(m, &b, &c, x, s);
    } else {
        perf_sloth_config_t c = perf_sloth_config_default();
        c.batch = (int)o->batch;
        c.seed = (uint64_t)o->seed;
        c.workers = workers;
        c.progress_every = o->quiet ? 0 : 5.0;
        err = perf_deepsloth(m, &b, &c, x, s);
    }
    rc = 1;
    if (err) {
        rc = cli_fail(o->method, err);
        goto done;
    }
    dp_utf8_copy(s->model, sizeof s->model, cli_base_name(o->model)); /* whole characters */
    if ((err = perf_samples_save(s, o->out))) {
        rc = cli_fail("cannot save the samples", err);
        goto done;
    }
    if (!o->quiet) print_summary(s, o->idpb);
    rc = 0;
done:
    perf_samples_destroy(&s);
    adnn_model_destroy(&m);
    dp_dataset_destroy(&test);
    return rc;
}

/* A JSON string: quotes, backslashes and control bytes escaped (the model
 * name comes from a file name or a file's metadata), and always UTF-8: a
 * byte that does not start a valid character is written as U+FFFD. */
static void json_str(const char *s)
{
    putchar('"');
    for (size_t i = 0, n = strlen(s), k; i < n; i += k) {
        unsigned char ch = (unsigned char)s[i];
        k = dp_utf8_char_len(s + i, n - i);
        if (!k) {
            printf("\\ufffd");
            k = 1;
        } else if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            fwrite(s + i, 1, k, stdout);
    }
    putchar('"');
}

/* ,"key":v with printf format fmt, or null where v is not finite. */
static void json_num(const char *key, double v, const char *fmt)
{
    printf(",\"%s\":", key);
    if (isfinite(v))
        printf(fmt, v);
    else
        printf("null");
}

static void print_json_row(const perf_samples_t *s, const perf_summary_t *r, int within)
{
    printf("  {\"model\":");
    json_str(s->model);
    printf(",\"norm\":\"%s\"", perf_norm_name(s->budget.norm));
    json_num("eps", s->budget.eps, "%g");
    printf(",\"method\":\"%s\",\"n\":%d", perf_method_name(s->method), r->n);
    json_num("iflops_mean", r->iflops_mean, "%.4f");
    json_num("iflops_max", r->iflops_max, "%.4f");
    json_num("exec_fraction_seed_mean", r->exec_seed_mean, "%.4f");
    json_num("exec_fraction_mean", r->exec_mean, "%.4f");
    json_num("psnr_mean", r->psnr_mean, "%.3f");
    json_num("norm_mean", r->norm_mean, "%.6f");
    json_num("norm_max", r->norm_max, "%.6f");
    printf(",\"within_budget\":%s", within ? "true" : "false");
    json_num("seconds_per_input", r->seconds_per_input, "%.6g");
    json_num("idpb_rate", r->idpb_rate, "%.4f");
    printf(",\"blas_core\":");
    json_str(s->blas_core);
    printf(",\"gemm_path\":");
    json_str(s->gemm_path);
    printf("}");
}

static int cmd_evaluate(opts_t *o, int nfiles, char **files)
{
    if (nfiles < 1) {
        fprintf(stderr, "dp-perform evaluate: no sample files\n");
        return 2;
    }
    int rc = 0, rows = 0;
    if (o->json) printf("[");
    for (int i = 0; i < nfiles; i++) {
        perf_samples_t *s = NULL;
        dp_err_t err = perf_samples_load(files[i], &s);
        if (err) {
            rc = cli_fail(files[i], err);
            continue;
        }
        perf_summary_t r;
        perf_summarize(s, o->idpb, &r);
        int within = r.within_budget;
        if (o->json) { /* a file that fails to load leaves no row and no stray comma */
            printf("%s\n", rows++ ? "," : "");
            print_json_row(s, &r, within);
        } else
            print_summary(s, o->idpb);
        if (!within) {
            fprintf(
                stderr, "dp-perform evaluate: %s: outside the budget (max norm %.9g, eps %.9g%s)\n",
                files[i], r.norm_max, s->budget.eps, r.pixels_ok ? "" : ", a pixel outside [0, 1]");
            rc = 1;
        }
        perf_samples_destroy(&s);
    }
    if (o->json) printf("\n]\n");
    return rc;
}

int main(int argc, char **argv)
{
    cli_set_prog("dp-perform");
    opts_t o = {0};
    o.norm = -1;
    o.data_dir = "/usr/share/datasets/fashion-mnist";
    const perf_train_config_t d = perf_train_config_default();
    o.seeds = 1000, o.train_n = DEFAULT_TRAIN_N, o.val_n = DEFAULT_VAL_N, o.width = d.width;
    o.batch = d.batch, o.epochs = d.epochs, o.patience = d.patience, o.lr = d.lr;
    o.lr_step1 = d.lr_step1, o.lr_step2 = d.lr_step2;
    o.iters = 300, o.seed = 1, o.idpb = 0.9;
    o.threads = -1;
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return 0;
    }
    o.cmd = argv[1];
    if (strcmp(o.cmd, "train") && strcmp(o.cmd, "generate") && strcmp(o.cmd, "baseline") &&
        strcmp(o.cmd, "evaluate")) {
        fprintf(stderr, "dp-perform: unknown command '%s'\n", o.cmd);
        usage(stderr);
        return 2;
    }
    char prog[32]; /* getopt's own errors start with argv[0]: "dp-perform train: ..." */
    snprintf(prog, sizeof prog, "dp-perform %s", o.cmd);
    argv[1] = prog;
    if (parse_args(argc - 1, argv + 1, &o)) return 2;
    int nargs = argc - 1 - optind;
    char **args = argv + 1 + optind;
    if (strcmp(o.cmd, "evaluate") == 0) return cmd_evaluate(&o, nargs, args);
    if (nargs > 0) {
        fprintf(stderr, "dp-perform %s: unexpected argument '%s'\n", o.cmd, args[0]);
        return 2;
    }
    if (o.threads >= 0) nn_set_threads((int)o.threads);
    if (strcmp(o.cmd, "train") == 0) return cmd_train(&o);
    if (strcmp(o.cmd, "generate") == 0) return cmd_generate(&o);
    return cmd_baseline(&o);
}
