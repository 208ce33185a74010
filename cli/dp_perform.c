/* dp-perform: DeepPerform test-input generation and its baselines on local
 * files, through the task layer the pipeline's workers run (core/task): the
 * flags become task settings (their defaults are the task layer's), the
 * files are loaded here, and dp_task_train / _generate / _baseline do the
 * work; this file parses, loads, prints and picks the exit status.
 *
 *   dp-perform train    --model M --norm linf --eps 0.09 --out G.safetensors
 *   dp-perform generate --model M --gen G.safetensors --out S.safetensors
 *   dp-perform baseline --model M --method ilfo --norm linf --eps 0.09 --out S.safetensors
 *   dp-perform evaluate [--json] S.safetensors...
 *
 * M is a model prefix (M.pb + M.safetensors). Seeds are the first --seeds
 * Fashion-MNIST test images (from --seed-offset); the generator trains on the
 * first --train-n training images and keeps the best epoch by the executed
 * fraction of the next --val-n training images (held out). Every flag can
 * also be set in the environment (DP_PERFORM_<FLAG>, e.g. DP_PERFORM_THREADS);
 * flags win. */
#include <getopt.h>
#include <stddef.h>
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
#include "task/task.h"
#include "util/err.h"
#include "util/utf8.h"

/* ------------------------------------------------------------- settings */

typedef enum { T_STR, T_LONG, T_DOUBLE, T_FLAG, T_NORM } ftype_t;

typedef struct opts {
    const char *cmd, *model, *gen, *out, *ckpt, *data_dir, *method;
    long norm, l2_at_most, l2_exact, linf_scaled, adv_hinge, json, quiet;
    double eps, alpha, beta, lr, idpb, time_limit, adv_margin;
    long seeds, offset, train_n, val_n, width, batch, epochs, patience, iters, seed, threads;
    long lr_step1, lr_step2;
} opts_t;

/* One setting: its flag, environment variable, type, bounds, where it goes
 * and its help ("%D" in help: the default). Defaults are the task layer's,
 * set in opts_default. */
typedef struct flag {
    const char *name, *env, *arg;
    ftype_t type;
    double lo, hi;
    size_t off; /* into opts_t */
    const char *help;
} flag_t;

#define O(f) offsetof(opts_t, f)
static const flag_t flags[] = {
    {"model", "DP_PERFORM_MODEL", "M", T_STR, 0, 0, O(model), NULL},
    {"gen", "DP_PERFORM_GEN", "GEN", T_STR, 0, 0, O(gen), NULL},
    {"out", "DP_PERFORM_OUT", "OUT", T_STR, 0, 0, O(out), NULL},
    {"method", "DP_PERFORM_METHOD", "M", T_STR, 0, 0, O(method), NULL},
    {"norm", "DP_PERFORM_NORM", "N", T_NORM, 0, 0, O(norm), NULL},
    {"eps", "DP_PERFORM_EPS", "X", T_DOUBLE, 1e-9, 1e6, O(eps), NULL},
    {"l2-at-most", "DP_PERFORM_L2_AT_MOST", NULL, T_FLAG, 0, 0, O(l2_at_most),
     "L2 projection scales down only above eps (the default)"},
    {"l2-exact", "DP_PERFORM_L2_EXACT", NULL, T_FLAG, 0, 0, O(l2_exact),
     "L2 projection sets the norm to exactly eps (the published code)"},
    {"linf-scaled", "DP_PERFORM_LINF_SCALED", NULL, T_FLAG, 0, 0, O(linf_scaled),
     "train, Linf: delta = eps * g instead of clip(g, -eps, eps) (saved with the generator)"},
    {"seeds", "DP_PERFORM_SEEDS", "N", T_LONG, 1, 1 << 24, O(seeds),
     "test seeds: test images [offset, offset+N) (default %D)"},
    {"seed-offset", "DP_PERFORM_SEED_OFFSET", "N", T_LONG, 0, 1 << 24, O(offset), "(default %D)"},
    {"train-n", "DP_PERFORM_TRAIN_N", "N", T_LONG, 2, 1 << 24, O(train_n),
     "training images for the generator (default %D)"},
    {"val-n", "DP_PERFORM_VAL_N", "N", T_LONG, 1, 1 << 24, O(val_n),
     "held-out training images after them (default %D)"},
    {"width", "DP_PERFORM_WIDTH", "N", T_LONG, 8, 256, O(width),
     "generator base width (default %D; the paper's 64 is for 3x32x32)"},
    {"batch", "DP_PERFORM_BATCH", "N", T_LONG, 1, 4096, O(batch),
     "training / generation / baseline batch (default %D)"},
    {"epochs", "DP_PERFORM_EPOCHS", "N", T_LONG, 1, 100000, O(epochs),
     "at most N epochs (default %D)"},
    {"patience", "DP_PERFORM_PATIENCE", "N", T_LONG, 1, 100000, O(patience),
     "early stop after N epochs without improvement (default %D)"},
    {"lr-step1", "DP_PERFORM_LR_STEP1", "N", T_LONG, 1, 100000, O(lr_step1),
     "lr x0.1 from epoch N (default: half of --epochs)"},
    {"lr-step2", "DP_PERFORM_LR_STEP2", "N", T_LONG, 1, 100000, O(lr_step2),
     "lr x0.01 from epoch N (default: 80% of --epochs)"},
    {"alpha", "DP_PERFORM_ALPHA", "X", T_DOUBLE, 0, 1e6, O(alpha),
     "L_GAN weight (default %D: no discriminator)"},
    {"beta", "DP_PERFORM_BETA", "X", T_DOUBLE, 0, 1e6, O(beta), "L_per weight (default %D)"},
    {"adv-margin", "DP_PERFORM_ADV_MARGIN", "X", T_DOUBLE, 0, 1, O(adv_margin),
     "train: L_adv over the decisions with p_k < X only, as ILFO's margin (default %D: all)"},
    {"adv-hinge", "DP_PERFORM_ADV_HINGE", NULL, T_FLAG, 0, 0, O(adv_hinge),
     "train, with --adv-margin X: L_adv terms X - p_k (ILFO's) instead of -log p_k"},
    {"lr", "DP_PERFORM_LR", "X", T_DOUBLE, 1e-9, 1, O(lr), "Adam learning rate (default %D)"},
    {"checkpoint", "DP_PERFORM_CHECKPOINT", "PATH", T_STR, 0, 0, O(ckpt),
     "(default GEN.ckpt; resumed from when present)"},
    {"time-limit", "DP_PERFORM_TIME_LIMIT", "S", T_DOUBLE, 0, 1e9, O(time_limit),
     "train: start no epoch after S seconds; keep the best so far"},
    {"iters", "DP_PERFORM_ITERS", "N", T_LONG, 1, 1000000, O(iters),
     "ILFO iterations (default %D)"},
    {"seed", "DP_PERFORM_SEED", "N", T_LONG, 0, 0x7fffffff, O(seed), "(default %D)"},
    {"idpb", "DP_PERFORM_IDPB", "X", T_DOUBLE, 0, 1, O(idpb),
     "IDPB verdict threshold on the executed fraction (default %D)"},
    {"data-dir", "DP_PERFORM_DATA_DIR", "DIR", T_STR, 0, 0, O(data_dir), "(default %D)"},
    {"threads", "DP_PERFORM_THREADS", "N", T_LONG, 0, 256, O(threads),
     "train: threads. baseline: N seed workers, each with a copy of the model, one thread\n"
     "and whole --batch batches (so at most seeds/batch workers); generate: N threads for\n"
     "the generator, N workers for measuring. Default (0): all cores"},
    {"json", "DP_PERFORM_JSON", NULL, T_FLAG, 0, 0, O(json), NULL},
    {"quiet", "DP_PERFORM_QUIET", NULL, T_FLAG, 0, 0, O(quiet), NULL},
};
#undef O
#define NFLAGS (sizeof flags / sizeof flags[0])

#define DATA_DIR_DEFAULT "/usr/share/datasets/fashion-mnist"

/* The task layer's defaults, in dp-perform's terms. */
static void opts_default(opts_t *o)
{
    const dp_task_settings_t d = dp_task_settings_default();
    memset(o, 0, sizeof *o);
    o->norm = -1;
    o->data_dir = DATA_DIR_DEFAULT;
    o->seeds = (long)(d.seed_end - d.seed_begin), o->offset = (long)d.seed_begin;
    o->val_n = (long)d.heldout;
    o->train_n = (long)(d.train_end - d.train_begin) - o->val_n;
    o->width = d.width, o->batch = d.batch, o->epochs = d.epochs, o->patience = d.patience;
    o->lr = d.lr, o->alpha = d.alpha, o->beta = d.beta, o->adv_margin = d.adv_margin;
    o->lr_step1 = d.lr_step1, o->lr_step2 = d.lr_step2;
    o->iters = d.ilfo_iters, o->seed = (long)d.seed, o->idpb = d.idpb_exec;
    o->threads = d.threads;
}

static void default_text(const flag_t *f, const opts_t *d, char *buf, size_t size)
{
    const char *p = (const char *)d + f->off;
    if (f->type == T_LONG)
        snprintf(buf, size, "%ld", *(const long *)p);
    else if (f->type == T_DOUBLE)
        snprintf(buf, size, "%g", *(const double *)p);
    else if (f->type == T_STR)
        snprintf(buf, size, "%s", *(const char *const *)p ? *(const char *const *)p : "");
    else
        buf[0] = '\0';
}

static void usage(FILE *f)
{
    opts_t d;
    opts_default(&d);
    fprintf(f,
            "usage: dp-perform train    --model M --norm N --eps X --out GEN [options]\n"
            "       dp-perform generate --model M --gen GEN --out SAMPLES [options]\n"
            "       dp-perform baseline --model M --method random|ilfo|deepsloth --norm N --eps X\n"
            "                           --out SAMPLES [options]\n"
            "       dp-perform evaluate [--json] [--idpb X] SAMPLES...\n"
            "\n"
            "M is a model prefix (M.pb, M.safetensors). Norms: linf, l2.\n"
            "options (each also from the environment variable DP_PERFORM_<FLAG>; flags win):\n");
    for (size_t i = 0; i < NFLAGS; i++) {
        const flag_t *fl = &flags[i];
        if (!fl->help) continue;
        char left[40], def[64], help[512];
        snprintf(left, sizeof left, "--%s%s%s", fl->name, fl->arg ? " " : "",
                 fl->arg ? fl->arg : "");
        default_text(fl, &d, def, sizeof def);
        const char *at = strstr(fl->help, "%D");
        if (at)
            snprintf(help, sizeof help, "%.*s%s%s", (int)(at - fl->help), fl->help, def, at + 2);
        else
            snprintf(help, sizeof help, "%s", fl->help);
        fprintf(f, "  %-18s ", left);
        for (const char *p = help; *p; p++) { /* continuation lines indented */
            fputc(*p, f);
            if (*p == '\n') fprintf(f, "%21s", "");
        }
        fputc('\n', f);
    }
    fprintf(f, "  --json, --quiet, -h/--help\n");
}

/* One setting's text into opts; 0, or -1 after the reason on stderr. */
static int set_value(opts_t *o, const flag_t *f, const char *label, const char *v)
{
    char *p = (char *)o + f->off;
    if (f->type == T_STR) {
        *(const char **)p = v;
    } else if (f->type == T_FLAG) {
        *(long *)p = 1;
    } else if (f->type == T_NORM) {
        if ((*(long *)p = perf_norm_parse(v)) < 0) {
            fprintf(stderr, "dp-perform: %s is linf or l2, got '%s'\n", label, v);
            return -1;
        }
    } else if (f->type == T_LONG) {
        return cli_parse_long(label, v, (long)f->lo, (long)f->hi, (long *)p);
    } else {
        return cli_parse_double(label, v, f->lo, f->hi, (double *)p);
    }
    return 0;
}

/* The environment, then the flags. */
static int parse_args(int argc, char **argv, opts_t *o)
{
    for (size_t i = 0; i < NFLAGS; i++) {
        const char *e = getenv(flags[i].env);
        if (!e || (flags[i].type == T_FLAG && (!*e || !strcmp(e, "0")))) continue;
        if (set_value(o, &flags[i], flags[i].env, e)) return -1;
    }
    struct option lo[NFLAGS + 2];
    for (size_t i = 0; i < NFLAGS; i++)
        lo[i] = (struct option){flags[i].name,
                                flags[i].type == T_FLAG ? no_argument : required_argument, NULL,
                                1000 + (int)i};
    lo[NFLAGS] = (struct option){"help", no_argument, NULL, 'h'};
    lo[NFLAGS + 1] = (struct option){NULL, 0, NULL, 0};
    int c;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            exit(0);
        }
        if (c < 1000 || c >= 1000 + (int)NFLAGS) {
            usage(stderr);
            return -1;
        }
        const flag_t *f = &flags[c - 1000];
        char label[40];
        snprintf(label, sizeof label, "--%s", f->name);
        if (set_value(o, f, label, optarg)) return -1;
    }
    return 0;
}

/* The task settings the flags describe. */
static dp_task_settings_t settings_of(const opts_t *o)
{
    dp_task_settings_t s = dp_task_settings_default();
    if (o->norm >= 0) s.budget.norm = (perf_norm_t)o->norm;
    s.budget.eps = (float)o->eps;
    s.budget.l2_at_most = !o->l2_exact;
    s.budget.linf_scaled = s.budget.norm == PERF_NORM_LINF && o->linf_scaled;
    s.model_name = o->model ? cli_base_name(o->model) : "";
    s.width = (int)o->width, s.batch = (int)o->batch, s.epochs = (int)o->epochs;
    s.patience = (int)o->patience, s.lr_step1 = (int)o->lr_step1, s.lr_step2 = (int)o->lr_step2;
    s.alpha = (float)o->alpha, s.beta = (float)o->beta, s.lr = (float)o->lr;
    s.adv_margin = (float)o->adv_margin;
    s.adv_hinge = (int)o->adv_hinge;
    s.seed = (uint64_t)o->seed;
    s.time_limit_s = o->time_limit;
    s.train_begin = 0;
    s.train_end = (uint32_t)(o->train_n + o->val_n);
    s.heldout = (uint32_t)o->val_n;
    s.seed_begin = (uint32_t)o->offset;
    s.seed_end = (uint32_t)(o->offset + o->seeds);
    s.ilfo_iters = (int)o->iters;
    s.progress_secs = o->quiet ? 0 : 5;
    s.idpb_exec = o->idpb;
    s.threads = (int)o->threads;
    return s;
}

/* ------------------------------------------------------------- hooks */

static volatile sig_atomic_t g_signals;
static void on_signal(int sig)
{
    (void)sig;
    g_signals++;
}

/* The first SIGINT/SIGTERM ends a training after its epoch (checkpoint
 * written) and a baseline at its next batch; the second ends a training at
 * its next batch too. */
static int signalled(void *ctx)
{
    (void)ctx;
    return g_signals == 0 ? PERF_GO_ON : g_signals == 1 ? PERF_STOP_AFTER_EPOCH : PERF_STOP_NOW;
}

static void print_line(void *ctx, const char *stage, uint64_t done, uint64_t total,
                       const char *line)
{
    (void)ctx, (void)stage, (void)done, (void)total;
    printf("%s\n", line);
    fflush(stdout);
}

static perf_hooks_t hooks_of(const opts_t *o)
{
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    perf_hooks_t h = {o->quiet ? NULL : print_line, signalled, NULL, NULL};
    return h;
}

/* "dp-perform: DETAIL" (the task layer's detail names the stage); 1. */
static int task_fail(void)
{
    fprintf(stderr, "dp-perform: %s\n", dp_err_detail());
    return 1;
}

/* ------------------------------------------------------------- inputs */

/* 1 when --out is neither file of --model, else 0 after a line naming it. */
static int out_not_model(const opts_t *o)
{
    char pb[4096], st[4096];
    snprintf(pb, sizeof pb, "%s.pb", o->model);
    snprintf(st, sizeof st, "%s.safetensors", o->model);
    return cli_out_not_input("--out", o->out, "the --model spec", pb) &&
           cli_out_not_input("--out", o->out, "the --model weights", st);
}

/* The model and a split of --data-dir, the split's shape checked: 0, or the
 * exit status after a line. The caller destroys both. */
static int load_inputs(const opts_t *o, const char *split, adnn_model_t **m, dp_dataset_t **d)
{
    dp_err_t err = adnn_model_load(o->model, m);
    if (err) return cli_fail("cannot load the model", err);
    if ((err = cli_load_split(o->data_dir, split, d)))
        return cli_fail("cannot load Fashion-MNIST", err);
    if (dp_task_check_shape(*m, *d, o->data_dir)) return task_fail();
    return 0;
}

/* The seeds [offset, offset + seeds) must be test images. */
static int check_seeds(const opts_t *o, const dp_dataset_t *test)
{
    if ((uint32_t)(o->offset + o->seeds) <= test->n) return 0;
    fprintf(stderr, "dp-perform: seeds [%ld, %ld) exceed the %u test images\n", o->offset,
            o->offset + o->seeds, test->n);
    return 1;
}

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

/* ------------------------------------------------------------- commands */

static int cmd_train(opts_t *o)
{
    if (cli_need("train", "--model", o->model) || cli_need("train", "--out", o->out) ||
        cli_need("train", "--norm and --eps", o->norm >= 0 && o->eps > 0 ? o : NULL))
        return 2;
    if (!cli_out_file_ok("--out", o->out) || !out_not_model(o) ||
        (o->ckpt && !cli_out_file_ok("--checkpoint", o->ckpt)))
        return 1;
    if (o->adv_hinge && !(o->adv_margin > 0)) {
        fprintf(stderr, "dp-perform train: --adv-hinge needs --adv-margin X > 0\n");
        return 2;
    }
    if (o->linf_scaled && o->norm != PERF_NORM_LINF) {
        fprintf(stderr, "dp-perform train: --linf-scaled applies to --norm linf only\n");
        return 2;
    }
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
    dp_task_output_t out = {0};
    int rc = load_inputs(o, "train", &m, &train);
    if (rc) goto done;
    rc = 1;
    if ((uint32_t)(o->train_n + o->val_n) > train->n) {
        fprintf(stderr, "dp-perform train: --train-n + --val-n exceed %u images\n", train->n);
        goto done;
    }
    const dp_task_settings_t s = settings_of(o);
    dp_task_io_t io = {.model = m, .train = train, .checkpoint = o->ckpt ? o->ckpt : ckpt};
    io.out = o->out;
    io.hooks = hooks_of(o);
    if (!o->quiet) {
        const perf_train_config_t c = dp_task_train_config(&s);
        int s1, s2;
        perf_lr_steps(&c, &s1, &s2);
        char adv[64] = "";
        if (c.adv_margin > 0)
            snprintf(adv, sizeof adv, ", L_adv %s on p_k < %g only",
                     c.adv_hinge ? "margin - p_k" : "-log p_k", (double)c.adv_margin);
        printf("dp-perform train: %s, %s eps %g%s, width %d, batch %d, <= %d epochs (lr %g, x0.1 "
               "from epoch %d, x0.01 from %d, patience %d)%s, %ld training + %ld held-out images, "
               "%d threads, checkpoint %s\n",
               cli_base_name(o->model), perf_norm_name(c.budget.norm), c.budget.eps,
               c.budget.norm == PERF_NORM_L2 && !c.budget.l2_at_most ? " (exactly)"
               : c.budget.linf_scaled                                ? " (scaled)"
                                                                     : "",
               c.width, c.batch, c.epochs, (double)c.lr, s1, s2, c.patience, adv, o->train_n,
               o->val_n, nn_get_threads(), io.checkpoint);
    }
    if (dp_task_train(&s, &io, &out)) {
        rc = task_fail();
        goto done;
    }
    const perf_train_result_t *r = &out.train;
    if (!o->quiet)
        printf("dp-perform train: %.0f s this run, %d epochs (resumed after %d), best held-out "
               "executed fraction %.4f at epoch %d%s; wrote %s\n",
               r->seconds, r->epochs_run, r->resumed_from, r->best_exec, r->best_epoch,
               r->early_stopped ? " (early stop)" : (r->time_limited ? " (time limit)" : ""),
               o->out);
    rc = 0;
done:
    dp_task_output_clear(&out);
    adnn_model_destroy(&m);
    dp_dataset_destroy(&train);
    return rc;
}

/* generate and baseline: the same inputs, another task function. */
static int cmd_samples(opts_t *o, int generate)
{
    const char *cmd = generate ? "generate" : "baseline";
    if (cli_need(cmd, "--model", o->model) ||
        (generate ? cli_need(cmd, "--gen", o->gen) : cli_need(cmd, "--method", o->method)) ||
        cli_need(cmd, "--out", o->out) ||
        (!generate && cli_need(cmd, "--norm and --eps", o->norm >= 0 && o->eps > 0 ? o : NULL)))
        return 2;
    if (!cli_out_file_ok("--out", o->out) || !out_not_model(o) ||
        (generate && !cli_out_not_input("--out", o->out, "the --gen generator", o->gen)))
        return 1;
    dp_task_settings_t s = settings_of(o);
    if (!generate) {
        int meth = perf_method_parse(o->method);
        if (meth <= PERF_METHOD_DEEPPERFORM) {
            fprintf(stderr, "dp-perform baseline: --method is random, ilfo or deepsloth\n");
            return 2;
        }
        s.method = (perf_method_t)meth;
    }
    adnn_model_t *m = NULL;
    dp_dataset_t *test = NULL;
    dp_task_output_t out = {0};
    int rc = load_inputs(o, "t10k", &m, &test);
    if (rc || (rc = check_seeds(o, test))) goto done;
    dp_task_io_t io = {.model = m, .test = test, .generator = o->gen, .out = o->out};
    io.hooks = hooks_of(o);
    io.keep_samples = !o->quiet;
    io.budget_from_generator = 1;
    dp_err_t err = generate ? dp_task_generate(&s, &io, &out) : dp_task_baseline(&s, &io, &out);
    if (err) {
        rc = task_fail();
        goto done;
    }
    if (!o->quiet) print_summary(out.samples, o->idpb);
    rc = 0;
done:
    dp_task_output_clear(&out);
    adnn_model_destroy(&m);
    dp_dataset_destroy(&test);
    return rc;
}

/* ------------------------------------------------------------- evaluate */

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
    opts_t o;
    opts_default(&o);
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
    nn_set_threads((int)o.threads); /* 0: every online CPU */
    if (strcmp(o.cmd, "train") == 0) return cmd_train(&o);
    return cmd_samples(&o, strcmp(o.cmd, "generate") == 0);
}
