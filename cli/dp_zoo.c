/* dp-zoo: trains, evaluates and describes the adaptive networks of the model
 * zoo (core/adnn) on Fashion-MNIST.
 *
 *   dp-zoo train --family sdn-resnet --out models/sdn_resnet [options]
 *   dp-zoo eval [--json] [--trace F] MODEL   accuracy, executed fraction and
 *                                   decision margins, batch 1
 *   dp-zoo info MODEL               architecture, tensors, FLOPs
 *
 * MODEL is a prefix: MODEL.pb (dp.v1.ModelSpec) and MODEL.safetensors. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adnn/adnn.h"
#include "adnn/blockdrop.h"
#include "adnn/skipnet.h"
#include "cli_util.h"
#include "data/dataset.h"
#include "nn/nn.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/rng.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: dp-zoo train --family FAMILY --out PREFIX [options]\n"
               "       dp-zoo eval [--json] [--trace FILE] [--tau X] [--limit N] MODEL\n"
               "       dp-zoo info MODEL\n"
               "\n"
               "Adaptive networks on Fashion-MNIST. MODEL is a prefix: MODEL.pb holds the\n"
               "dp.v1.ModelSpec, MODEL.safetensors the weights.\n"
               "Families: sdn-resnet, sdn-mobilenet, ranet, blockdrop, skipnet.\n"
               "\n"
               "train options:\n"
               "  --family NAME     model family (required)\n"
               "  --out PREFIX      where to write PREFIX.pb and PREFIX.safetensors (required)\n"
               "  --epochs N        training epochs (default 3)\n"
               "  --batch N         batch size (default 64)\n"
               "  --lr X            Adam learning rate, cosine-annealed to 0 (default 0.003)\n"
               "  --seed N          seed for init and shuffling (default 1)\n"
               "  --limit N         use only the first N training images (default all)\n"
               "  --widths A,B,C    channels per stage (default: the family's)\n"
               "  --blocks A,B,C    blocks per stage (default: the family's)\n"
               "  --tau X           exit threshold stored in the spec (default: the family's)\n"
               "  --init PREFIX     start from PREFIX.safetensors (same architecture)\n"
               "  --gate KIND       SkipNet gate: recurrent (default) or feedforward\n"
               "  --gate-lambda X   SkipNet: compute penalty on mean p_k (default 0.1)\n"
               "  --gate-soft-steps N  SkipNet: Adam steps with soft gates before hard\n"
               "                    gates and the straight-through gradient (default 500)\n"
               "  --gate-margin M   SkipNet: logit margin of the margin term (default 0)\n"
               "  --gate-margin-weight W  SkipNet: weight of the margin term W * mean\n"
               "                    relu(M - |t_k - logit(threshold)|) that makes the gates\n"
               "                    decisive (default 0: off)\n"
               "  --gate-sample     SkipNet: draw the hard gates from Bernoulli(p_k) in\n"
               "                    training instead of thresholding p_k (default off)\n"
               "  --gate-target F   SkipNet: keep the batches' mean p_k at F (0 < F < 1) by\n"
               "                    adapting the compute penalty, which starts at\n"
               "                    --gate-lambda (default off: the penalty is fixed)\n"
               "  --gate-target-rate R  SkipNet: the penalty's step per batch (default 0.01)\n"
               "  --gate-target-per-block  SkipNet: a penalty per gate, each raised while its\n"
               "                    gate's mean p_k is above --gate-target, so no block runs\n"
               "                    for every input (default: one penalty for all gates)\n"
               "  --policy-penalty X  BlockDrop: the policy's reward for a wrong prediction\n"
               "                    is -X (default 10; lower drops more blocks)\n"
               "  --policy-explore A  BlockDrop: masks drawn from A p + (1 - A)(1 - p),\n"
               "                    A in [0.5, 1] (default 0.8; 0.5: uniform masks, the\n"
               "                    policy learns nothing)\n"
               "  --policy-only     BlockDrop: train the policy alone against the frozen\n"
               "                    backbone (default: both)\n"
               "  --policy-self-critical  BlockDrop: REINFORCE baseline per image, the reward\n"
               "                    of its greedy mask (default: the batch's mean reward)\n"
               "  --policy-local-grad  BlockDrop, with --policy-only: each decision's gradient\n"
               "                    from the image's reward with the block run and skipped\n"
               "                    (one more backbone forward per block), not REINFORCE\n"
               "  --policy-max-run F  BlockDrop: a block runs for at most a share F of the\n"
               "                    images, by a price on running it that adapts to the\n"
               "                    batches (default 1: no price)\n"
               "common options:\n"
               "  --data-dir DIR    IDX files (default /usr/share/datasets/fashion-mnist)\n"
               "  --threads N       OpenBLAS threads (default: all cores)\n"
               "  --json            eval: one JSON object on stdout (accuracy, executed\n"
               "                    fractions, exits, the decisions' margins to their\n"
               "                    threshold, blocks run, the masks used)\n"
               "  --trace FILE      eval: one JSON line per image (prediction, exit, mask,\n"
               "                    FLOPs, each decision's value and the closest margin)\n"
               "  --quiet           no progress lines\n"
               "  -h, --help        this text\n");
}

typedef struct opts {
    const char *cmd, *family, *out, *data_dir, *model, *gate, *init, *trace;
    long epochs, batch, seed, threads, limit;
    double lr, tau;
    double gate_lambda, gate_margin, gate_margin_weight; /* < 0: the family's default */
    long gate_soft_steps;                                /* < 0: the family's default */
    double policy_penalty, policy_explore;               /* < 0: the family's default */
    double gate_target, gate_target_rate;                /* < 0: the family's default */
    double policy_max_run;                               /* < 0: the family's default */
    int policy_only, policy_self_critical, policy_local_grad;
    int gate_sample, gate_target_per_block;
    int json, quiet;
    int nwidths, widths[ADNN_MAX_STAGES], nblocks, blocks[ADNN_MAX_STAGES];
} opts_t;

static int parse_list(const char *flag, const char *s, int *out, int *count)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    *count = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        long v;
        if (*count == ADNN_MAX_STAGES) {
            fprintf(stderr, "dp-zoo: %s takes at most %d values\n", flag, ADNN_MAX_STAGES);
            return -1;
        }
        if (cli_parse_long(flag, tok, 1, 1024, &v)) return -1;
        out[(*count)++] = (int)v;
    }
    if (*count == 0) {
        fprintf(stderr, "dp-zoo: %s expects a comma-separated list\n", flag);
        return -1;
    }
    return 0;
}

static int parse_args(int argc, char **argv, opts_t *o)
{
    static const struct option lo[] = {{"family", required_argument, 0, 'f'},
                                       {"out", required_argument, 0, 'o'},
                                       {"epochs", required_argument, 0, 'e'},
                                       {"batch", required_argument, 0, 'b'},
                                       {"lr", required_argument, 0, 'l'},
                                       {"seed", required_argument, 0, 's'},
                                       {"limit", required_argument, 0, 'n'},
                                       {"widths", required_argument, 0, 'W'},
                                       {"blocks", required_argument, 0, 'B'},
                                       {"tau", required_argument, 0, 'T'},
                                       {"data-dir", required_argument, 0, 'd'},
                                       {"threads", required_argument, 0, 't'},
                                       {"json", no_argument, 0, 'j'},
                                       {"quiet", no_argument, 0, 'q'},
                                       {"help", no_argument, 0, 'h'},
                                       {"gate", required_argument, 0, 'G'},
                                       {"init", required_argument, 0, 'I'},
                                       {"trace", required_argument, 0, 'R'},
                                       {"gate-lambda", required_argument, 0, 'L'},
                                       {"gate-soft-steps", required_argument, 0, 'S'},
                                       {"gate-margin", required_argument, 0, 'M'},
                                       {"gate-margin-weight", required_argument, 0, 'w'},
                                       {"gate-sample", no_argument, 0, 'P'},
                                       {"gate-target", required_argument, 0, 'g'},
                                       {"gate-target-rate", required_argument, 0, 'r'},
                                       {"gate-target-per-block", no_argument, 0, 'K'},
                                       {"policy-penalty", required_argument, 0, 'Y'},
                                       {"policy-explore", required_argument, 0, 'X'},
                                       {"policy-only", no_argument, 0, 'O'},
                                       {"policy-self-critical", no_argument, 0, 'C'},
                                       {"policy-local-grad", no_argument, 0, 'D'},
                                       {"policy-max-run", required_argument, 0, 'U'},
                                       {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'f':
            o->family = optarg;
            break;
        case 'o':
            o->out = optarg;
            break;
        case 'I':
            o->init = optarg;
            break;
        case 'e':
            bad = cli_parse_long("--epochs", optarg, 1, 1000, &o->epochs);
            break;
        case 'b':
            bad = cli_parse_long("--batch", optarg, 1, 4096, &o->batch);
            break;
        case 's':
            bad = cli_parse_long("--seed", optarg, 0, 0x7fffffff, &o->seed);
            break;
        case 'n':
            bad = cli_parse_long("--limit", optarg, 0, 0x7fffffff, &o->limit);
            break;
        case 't':
            bad = cli_parse_long("--threads", optarg, 0, 256, &o->threads);
            break;
        case 'W':
            bad = parse_list("--widths", optarg, o->widths, &o->nwidths);
            break;
        case 'B':
            bad = parse_list("--blocks", optarg, o->blocks, &o->nblocks);
            break;
        case 'G':
            o->gate = optarg;
            break;
        case 'R':
            o->trace = optarg;
            break;
        case 'P':
            o->gate_sample = 1;
            break;
        case 'L':
            bad = cli_parse_double("--gate-lambda", optarg, 0, 100, &o->gate_lambda);
            break;
        case 'S':
            bad = cli_parse_long("--gate-soft-steps", optarg, 0, 0x7fffffff, &o->gate_soft_steps);
            break;
        case 'M':
            bad = cli_parse_double("--gate-margin", optarg, 0, 100, &o->gate_margin);
            break;
        case 'w':
            bad = cli_parse_double("--gate-margin-weight", optarg, 0, 100, &o->gate_margin_weight);
            break;
        case 'g':
            bad = cli_parse_double("--gate-target", optarg, 0, 1, &o->gate_target);
            if (!bad && !(o->gate_target > 0 && o->gate_target < 1)) {
                fprintf(stderr, "dp-zoo: --gate-target must be above 0 and below 1\n");
                bad = 1;
            }
            break;
        case 'r':
            bad = cli_parse_double("--gate-target-rate", optarg, 0, 100, &o->gate_target_rate);
            break;
        case 'K':
            o->gate_target_per_block = 1;
            break;
        case 'O':
            o->policy_only = 1;
            break;
        case 'C':
            o->policy_self_critical = 1;
            break;
        case 'D':
            o->policy_local_grad = 1;
            break;
        case 'U':
            bad = cli_parse_double("--policy-max-run", optarg, 0, 1, &o->policy_max_run);
            if (!bad && !(o->policy_max_run > 0)) {
                fprintf(stderr, "dp-zoo: --policy-max-run must be above 0\n");
                bad = 1;
            }
            break;
        case 'Y':
            bad = cli_parse_double("--policy-penalty", optarg, 0, 1000, &o->policy_penalty);
            break;
        case 'X':
            bad = cli_parse_double("--policy-explore", optarg, 0.5, 1, &o->policy_explore);
            break;
        case 'd':
            o->data_dir = optarg;
            break;
        case 'j':
            o->json = 1;
            break;
        case 'q':
            o->quiet = 1;
            break;
        case 'l':
            bad = cli_parse_unit("--lr", optarg, 0, &o->lr);
            break;
        case 'T':
            bad = cli_parse_unit("--tau", optarg, 1, &o->tau);
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

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Adaptive batch-1 evaluation over the first n images of d. */
#define MAX_MASKS 4096

typedef struct mask_count {
    char mask[ADNN_MAX_BLOCKS + 1]; /* '1' block run, '0' skipped */
    long n;
} mask_count_t;

typedef struct eval_res {
    double acc, mean, min, p50, max, mean_exact;
    long exits[ADNN_MAX_EXITS + 1];
    /* decisions (adnn_trace_decisions): how close each came to its threshold */
    long decisions, near; /* near: within MARGIN of the threshold */
    double min_margin;    /* the closest */
    float threshold;
    int nblocks;
    long block_run[ADNN_MAX_BLOCKS];
    mask_count_t *masks;  /* distinct masks, first seen first */
    size_t nmasks, other; /* other: inputs past MAX_MASKS distinct masks */
} eval_res_t;

#define MARGIN 0.05

static int cmp_mask(const void *a, const void *b)
{
    long x = ((const mask_count_t *)a)->n, y = ((const mask_count_t *)b)->n;
    return (x < y) - (x > y);
}

static void count_mask(eval_res_t *r, const char *mask)
{
    for (size_t j = 0; j < r->nmasks; j++)
        if (!strcmp(r->masks[j].mask, mask)) {
            r->masks[j].n++;
            return;
        }
    if (r->nmasks == MAX_MASKS) {
        r->other++;
        return;
    }
    snprintf(r->masks[r->nmasks].mask, sizeof r->masks[0].mask, "%s", mask);
    r->masks[r->nmasks++].n = 1;
}

/* One JSON line per input into trace (when not NULL): what it decided. */
static void trace_line(FILE *trace, uint32_t i, int label, const adnn_trace_t *t, const char *mask,
                       double fraction, const float *p, int np, float thr)
{
    fprintf(trace,
            "{\"i\":%u,\"label\":%d,\"pred\":%d,\"exit\":%d,\"mask\":\"%s\",\"flops\":%.0f,"
            "\"exec_fraction\":%.6f,\"threshold\":%.9g,\"decisions\":[",
            i, label, t->pred, t->exit_taken, mask, t->flops_ref, fraction, (double)thr);
    double mm = INFINITY;
    for (int k = 0; k < np; k++) {
        fprintf(trace, "%s%.9g", k ? "," : "", (double)p[k]);
        mm = fmin(mm, fabs((double)p[k] - thr));
    }
    if (np)
        fprintf(trace, "],\"margin\":%.9g}\n", mm);
    else
        fprintf(trace, "],\"margin\":null}\n");
}

static int eval_adaptive(adnn_model_t *m, const dp_dataset_t *d, uint32_t n, FILE *trace,
                         eval_res_t *r)
{
    double *fr = malloc((n ? n : 1) * sizeof *fr);
    memset(r, 0, sizeof *r);
    r->masks = malloc(MAX_MASKS * sizeof *r->masks);
    if (!fr || !r->masks) {
        free(fr);
        free(r->masks);
        r->masks = NULL;
        return -1;
    }
    r->min_margin = INFINITY;
    double full = adnn_flops_full(m, 0), full_x = adnn_flops_full(m, 1);
    size_t isz = dp_dataset_sample_size(d);
    long correct = 0;
    double sum = 0, sumx = 0;
    for (uint32_t i = 0; i < n; i++) {
        adnn_trace_t t;
        adnn_forward_adaptive(m, d->images + (size_t)i * isz, &t);
        correct += t.pred == d->labels[i];
        fr[i] = t.flops_ref / full;
        sum += fr[i];
        sumx += t.flops_exact / full_x;
        if (t.exit_taken >= 0 && t.exit_taken <= ADNN_MAX_EXITS) r->exits[t.exit_taken]++;
        float p[ADNN_MAX_BLOCKS], thr;
        int np = adnn_trace_decisions(m, &t, p, &thr);
        r->threshold = thr;
        for (int k = 0; k < np; k++) {
            double mg = fabs((double)p[k] - thr);
            r->decisions++;
            r->near += mg < MARGIN;
            r->min_margin = fmin(r->min_margin, mg);
        }
        char mask[ADNN_MAX_BLOCKS + 1];
        int nb = t.nblocks < ADNN_MAX_BLOCKS ? t.nblocks : ADNN_MAX_BLOCKS;
        for (int b = 0; b < nb; b++) {
            mask[b] = t.ran[b] ? '1' : '0';
            r->block_run[b] += t.ran[b] != 0;
        }
        mask[nb] = '\0';
        r->nblocks = nb;
        count_mask(r, mask);
        if (trace) trace_line(trace, i, d->labels[i], &t, mask, fr[i], p, np, thr);
    }
    qsort(fr, n, sizeof *fr, cmp_double);
    r->acc = (double)correct / n;
    r->mean = sum / n;
    r->mean_exact = sumx / n;
    r->min = fr[0];
    r->max = fr[n - 1];
    r->p50 = fr[(n + 1) / 2 - 1]; /* nearest rank */
    free(fr);
    return 0;
}

static int cmd_train(opts_t *o)
{
    if (!o->family || !o->out) {
        fprintf(stderr, "dp-zoo train: --family and --out are required\n");
        return 2;
    }
    adnn_family_t fam = adnn_family_parse(o->family);
    if (fam == ADNN_FAMILY_UNSPECIFIED) {
        fprintf(stderr,
                "dp-zoo train: unknown family '%s' (skipnet, blockdrop, sdn-resnet, "
                "sdn-mobilenet, ranet)\n",
                o->family);
        return 2;
    }
    if (!cli_out_dir_ok("--out", o->out)) return 1;
    adnn_spec_t spec;
    dp_err_t err = adnn_spec_default(fam, &spec);
    if (err) return cli_fail("train", err);
    if (o->nwidths) {
        if (o->nwidths != spec.nstages) {
            fprintf(stderr, "dp-zoo train: --widths needs %d values\n", spec.nstages);
            return 2;
        }
        for (int i = 0; i < spec.nstages; i++) spec.widths[i] = o->widths[i];
        spec.stem_width = spec.widths[0];
    }
    if (o->nblocks) {
        if (o->nblocks != spec.nstages) {
            fprintf(stderr, "dp-zoo train: --blocks needs %d values\n", spec.nstages);
            return 2;
        }
        for (int i = 0; i < spec.nstages; i++) spec.blocks[i] = o->blocks[i];
    }
    if (o->tau > 0) spec.exit_tau = (float)o->tau;
    if (o->gate) {
        if (strcmp(o->gate, "recurrent") && strcmp(o->gate, "feedforward")) {
            fprintf(stderr, "dp-zoo train: --gate expects recurrent or feedforward\n");
            return 2;
        }
        spec.gate_kind = o->gate[0] == 'r' ? ADNN_GATE_RECURRENT : ADNN_GATE_FEEDFORWARD;
    }
    int gate_opts = o->gate_lambda >= 0 || o->gate_soft_steps >= 0 || o->gate_margin >= 0 ||
                    o->gate_margin_weight >= 0 || o->gate_sample || o->gate_target >= 0 ||
                    o->gate_target_rate >= 0 || o->gate_target_per_block;
    if (gate_opts && fam != ADNN_FAMILY_SKIPNET) {
        fprintf(stderr, "dp-zoo train: the --gate-* options apply to skipnet only\n");
        return 2;
    }
    int policy_opts = o->policy_penalty >= 0 || o->policy_explore >= 0 || o->policy_only ||
                      o->policy_self_critical || o->policy_local_grad || o->policy_max_run >= 0;
    if (policy_opts && fam != ADNN_FAMILY_BLOCKDROP) {
        fprintf(stderr, "dp-zoo train: the --policy-* options apply to blockdrop only\n");
        return 2;
    }
    if (o->gate_target_per_block && !(o->gate_target > 0)) {
        fprintf(stderr, "dp-zoo train: --gate-target-per-block needs --gate-target\n");
        return 2;
    }
    if (o->policy_local_grad && !o->policy_only) {
        fprintf(stderr, "dp-zoo train: --policy-local-grad needs --policy-only (the flips are "
                        "judged by the frozen backbone)\n");
        return 2;
    }

    dp_dataset_t *train = NULL, *test = NULL;
    adnn_model_t *m = NULL;
    uint32_t *order = NULL;
    float *xb = NULL;
    int32_t *yb = NULL;
    int rc = 1;
    if ((err = cli_load_split(o->data_dir, "train", &train)) ||
        (err = cli_load_split(o->data_dir, "t10k", &test))) {
        rc = cli_fail("cannot load Fashion-MNIST", err);
        goto done;
    }
    if ((int)train->c != spec.c || (int)train->h != spec.h || (int)train->w != spec.w) {
        fprintf(stderr, "dp-zoo train: images are %ux%ux%u, the spec expects %dx%dx%d\n", train->c,
                train->h, train->w, spec.c, spec.h, spec.w);
        goto done;
    }
    if ((err = adnn_model_new(&spec, (uint64_t)o->seed, &m))) {
        rc = cli_fail("cannot build the model", err);
        goto done;
    }
    if (o->init) { /* continue from a saved model's weights (same architecture) */
        char p[4096];
        snprintf(p, sizeof p, "%s.safetensors", o->init);
        if ((err = adnn_weights_load(m, p))) {
            rc = cli_fail("cannot load the --init weights", err);
            goto done;
        }
    }
    if (fam == ADNN_FAMILY_SKIPNET) {
        adnn_skipnet_train_t g = adnn_skipnet_train_default();
        if (o->gate_lambda >= 0) g.lambda = (float)o->gate_lambda;
        if (o->gate_soft_steps >= 0) g.soft_steps = (int)o->gate_soft_steps;
        if (o->gate_margin >= 0) g.margin = (float)o->gate_margin;
        if (o->gate_margin_weight >= 0) g.margin_weight = (float)o->gate_margin_weight;
        g.sample = o->gate_sample;
        if (o->gate_target >= 0) g.target = (float)o->gate_target;
        if (o->gate_target_rate >= 0) g.target_rate = (float)o->gate_target_rate;
        g.target_per_block = o->gate_target_per_block;
        if ((err = adnn_skipnet_set_train(m, &g))) {
            rc = cli_fail("train", err);
            goto done;
        }
        if (!o->quiet)
            printf("dp-zoo train: gates: lambda %g%s, %d soft steps, margin %g weight %g, %s\n",
                   g.lambda, g.target > 0 ? " (adapted to the target)" : "", g.soft_steps, g.margin,
                   g.margin_weight, g.sample ? "sampled" : "thresholded");
        if (!o->quiet && g.target > 0)
            printf("dp-zoo train: gates: target mean p_k %g%s, rate %g\n", g.target,
                   g.target_per_block ? " per gate" : "", g.target_rate);
    }
    if (fam == ADNN_FAMILY_BLOCKDROP) {
        adnn_blockdrop_train_t g = adnn_blockdrop_train_default();
        if (o->policy_penalty >= 0) g.penalty = (float)o->policy_penalty;
        if (o->policy_explore >= 0) g.explore = (float)o->policy_explore;
        g.policy_only = o->policy_only;
        g.self_critical = o->policy_self_critical;
        g.local_grad = o->policy_local_grad;
        if (o->policy_max_run >= 0) g.max_run = (float)o->policy_max_run;
        if ((err = adnn_blockdrop_set_train(m, &g))) {
            rc = cli_fail("train", err);
            goto done;
        }
        if (!o->quiet)
            printf("dp-zoo train: policy: penalty %g, explore %g, max run %g%s, baseline %s\n",
                   g.penalty, g.explore, g.max_run, g.policy_only ? ", the backbone frozen" : "",
                   g.local_grad      ? "none (each decision tried both ways)"
                   : g.self_critical ? "the greedy mask's reward"
                                     : "the batch mean");
    }
    uint32_t ntrain = train->n;
    if (o->limit > 0 && (uint32_t)o->limit < ntrain) ntrain = (uint32_t)o->limit;
    size_t isz = dp_dataset_sample_size(train);
    order = malloc(ntrain * sizeof *order);
    xb = malloc((size_t)o->batch * isz * sizeof(float));
    yb = malloc((size_t)o->batch * sizeof(int32_t));
    if (!order || !xb || !yb) {
        fprintf(stderr, "dp-zoo: out of memory\n");
        goto done;
    }
    if (!o->quiet)
        printf("dp-zoo train: %s, %zu parameters, %.2f MFLOPs full (reference), %u training "
               "images, %d threads\n",
               adnn_family_name(fam), adnn_param_count(m), adnn_flops_full(m, 0) / 1e6, ntrain,
               nn_get_threads());
    dp_rng_t rng;
    dp_rng_seed(&rng, (uint64_t)o->seed ^ 0x5eedULL);
    long steps = (long)((ntrain + (uint32_t)o->batch - 1) / (uint32_t)o->batch);
    long total = steps * o->epochs;
    double t0 = dp_clock_s();
    const uint32_t probe = test->n < 1000 ? test->n : 1000;
    for (long ep = 0; ep < o->epochs; ep++) {
        for (uint32_t i = 0; i < ntrain; i++) order[i] = i;
        dp_rng_shuffle(&rng, order, ntrain);
        double lsum = 0;
        long correct = 0, seen = 0;
        for (long s = 0; s < steps; s++) {
            uint32_t begin = (uint32_t)(s * o->batch);
            int b =
                (int)((ntrain - begin) < (uint32_t)o->batch ? ntrain - begin : (uint32_t)o->batch);
            if ((err = dp_dataset_gather(train, order + begin, (size_t)b, xb, yb))) {
                rc = cli_fail("gather", err);
                goto done;
            }
            double loss;
            int c;
            if ((err = adnn_train_step(m, xb, yb, b, &loss, &c))) {
                rc = cli_fail("train step", err);
                goto done;
            }
            long done_steps = ep * steps + s + 1;
            double lr = 0.5 * o->lr * (1.0 + cos(M_PI * (double)(done_steps - 1) / (double)total));
            adnn_adam_step(m, (float)lr);
            lsum += loss * b;
            correct += c;
            seen += b;
            if (!o->quiet && (done_steps % 100 == 0 || s == steps - 1)) {
                double el = dp_clock_s() - t0;
                printf("epoch %ld/%ld step %ld/%ld  loss %.4f  train acc %.4f  lr %.5f  %.0fs "
                       "elapsed, %.0fs left\n",
                       ep + 1, o->epochs, s + 1, steps, lsum / (double)seen,
                       (double)correct / (double)seen, lr, el,
                       el / (double)done_steps * (double)(total - done_steps));
                fflush(stdout);
            }
        }
        if (!o->quiet) {
            eval_res_t r;
            if (eval_adaptive(m, test, probe, NULL, &r) == 0)
                printf("epoch %ld/%ld done: test[0:%u] adaptive accuracy %.4f, executed fraction "
                       "mean %.3f (min %.3f, max %.3f)\n",
                       ep + 1, o->epochs, probe, r.acc, r.mean, r.min, r.max);
            free(r.masks);
            fflush(stdout);
        }
    }
    if ((err = adnn_model_save(m, o->out))) {
        rc = cli_fail("cannot save the model", err);
        goto done;
    }
    if (!o->quiet)
        printf("dp-zoo train: %.0f s; wrote %s.pb and %s.safetensors\n", dp_clock_s() - t0, o->out,
               o->out);
    rc = 0;
done:
    free(order);
    free(xb);
    free(yb);
    adnn_model_destroy(&m);
    dp_dataset_destroy(&train);
    dp_dataset_destroy(&test);
    return rc;
}

static int cmd_eval(opts_t *o)
{
    adnn_model_t *m = NULL;
    dp_dataset_t *test = NULL;
    dp_err_t err = adnn_model_load(o->model, &m);
    if (err) return cli_fail("cannot load the model", err);
    int rc = 1;
    if ((err = cli_load_split(o->data_dir, "t10k", &test))) {
        rc = cli_fail("cannot load Fashion-MNIST", err);
        goto done;
    }
    const adnn_spec_t *s = adnn_model_spec(m);
    if ((int)test->c != s->c || (int)test->h != s->h || (int)test->w != s->w) {
        fprintf(stderr, "dp-zoo eval: images are %ux%ux%u, the model expects %dx%dx%d\n", test->c,
                test->h, test->w, s->c, s->h, s->w);
        goto done;
    }
    if (o->tau > 0) ((adnn_spec_t *)s)->exit_tau = (float)o->tau; /* evaluation override */
    uint32_t n = test->n;
    if (o->limit > 0 && (uint32_t)o->limit < n) n = (uint32_t)o->limit;
    FILE *trace = NULL;
    if (o->trace && !(trace = fopen(o->trace, "w"))) {
        fprintf(stderr, "dp-zoo eval: --trace %s: %s\n", o->trace, strerror(errno));
        goto done;
    }
    eval_res_t r;
    int bad = eval_adaptive(m, test, n, trace, &r);
    if (trace && (fclose(trace) != 0 || bad)) {
        if (!bad) fprintf(stderr, "dp-zoo eval: --trace %s: %s\n", o->trace, strerror(errno));
        free(r.masks);
        goto done;
    }
    if (bad) {
        fprintf(stderr, "dp-zoo: out of memory\n");
        goto done;
    }
    /* the masks, most used first */
    qsort(r.masks, r.nmasks, sizeof *r.masks, cmp_mask);
    if (o->json) {
        printf("{\"family\":\"%s\",\"accuracy\":%.4f,\"exec_fraction\":{\"mean\":%.4f,\"min\":%.4f,"
               "\"p50\":%.4f,\"max\":%.4f},\"flops_full\":%.0f,\"flops_full_exact\":%.0f,"
               "\"exec_fraction_exact_mean\":%.4f,\"tau\":%g,\"images\":%u,\"exits\":[",
               adnn_family_name(s->family), r.acc, r.mean, r.min, r.p50, r.max,
               adnn_flops_full(m, 0), adnn_flops_full(m, 1), r.mean_exact, s->exit_tau, n);
        for (int k = 0; k <= s->nexits; k++) printf("%s%ld", k ? "," : "", r.exits[k]);
        printf("],\"decisions\":{\"n\":%ld,\"threshold\":%.9g,\"within_0_05\":%ld,"
               "\"within_0_05_share\":%.6f,\"min_margin\":",
               r.decisions, (double)r.threshold, r.near,
               r.decisions ? (double)r.near / (double)r.decisions : 0.0);
        if (r.decisions)
            printf("%.9g}", r.min_margin);
        else
            printf("null}");
        printf(",\"block_run_share\":[");
        for (int b = 0; b < r.nblocks; b++)
            printf("%s%.6f", b ? "," : "", (double)r.block_run[b] / n);
        printf("],\"masks\":{\"distinct\":%zu,\"used_by_0_5pct\":[", r.nmasks + (r.other > 0));
        int first = 1;
        for (size_t j = 0; j < r.nmasks; j++) {
            if ((double)r.masks[j].n / n < 0.005) continue;
            printf("%s{\"mask\":\"%s\",\"share\":%.6f}", first ? "" : ",", r.masks[j].mask,
                   (double)r.masks[j].n / n);
            first = 0;
        }
        printf("]}}\n");
    } else {
        printf("%s on %u test images (batch 1, adaptive, tau %g)\n", o->model, n, s->exit_tau);
        printf("  accuracy          %.4f\n", r.acc);
        printf("  executed fraction mean %.4f  min %.4f  p50 %.4f  max %.4f (reference FLOPs)\n",
               r.mean, r.min, r.p50, r.max);
        printf("  executed fraction mean %.4f (exact FLOPs)\n", r.mean_exact);
        printf("  full network      %.0f FLOPs (reference), %.0f (exact)\n", adnn_flops_full(m, 0),
               adnn_flops_full(m, 1));
        printf("  exits taken      ");
        for (int k = 0; k <= s->nexits; k++) printf(" %ld", r.exits[k]);
        printf("\n");
        if (r.decisions)
            printf("  decisions         %ld against %g: %ld (%.2f%%) within %.2f of it, the "
                   "closest %.3g away\n",
                   r.decisions, (double)r.threshold, r.near,
                   100.0 * (double)r.near / (double)r.decisions, MARGIN, r.min_margin);
        printf("  blocks run (share)");
        for (int b = 0; b < r.nblocks; b++) printf(" %.3f", (double)r.block_run[b] / n);
        printf("\n  masks             %zu distinct%s; used by >= 0.5%% of the images:", r.nmasks,
               r.other ? " (and more)" : "");
        for (size_t j = 0; j < r.nmasks; j++)
            if ((double)r.masks[j].n / n >= 0.005)
                printf(" %s (%.1f%%)", r.masks[j].mask, 100.0 * (double)r.masks[j].n / n);
        printf("\n");
        /* accuracy of every exit on its own (batched, all blocks run) */
        int E = s->nexits, K = s->num_classes, bs = 100;
        size_t isz = dp_dataset_sample_size(test);
        float *lg = malloc(sizeof(float) * (size_t)bs * (E + 1) * K);
        long hit[ADNN_MAX_EXITS + 1] = {0};
        for (uint32_t i = 0; lg && i < n; i += (uint32_t)bs) {
            int b = (int)(n - i < (uint32_t)bs ? n - i : (uint32_t)bs);
            if ((err = adnn_eval_batch(m, test->images + (size_t)i * isz, b, lg))) break;
            for (int j = 0; j < b; j++)
                for (int k = 0; k <= E; k++) {
                    const float *z = lg + ((size_t)j * (E + 1) + k) * K;
                    int best = 0;
                    for (int c = 1; c < K; c++)
                        if (z[c] > z[best]) best = c;
                    hit[k] += best == test->labels[i + (uint32_t)j];
                }
        }
        if (lg && !err) {
            printf("  accuracy per exit");
            for (int k = 0; k <= E; k++) printf(" %.4f", (double)hit[k] / n);
            printf(" (each exit alone)\n");
        }
        free(lg);
    }
    free(r.masks);
    rc = 0;
done:
    adnn_model_destroy(&m);
    dp_dataset_destroy(&test);
    return rc;
}

static int cmd_info(opts_t *o)
{
    adnn_model_t *m = NULL;
    dp_err_t err = adnn_model_load(o->model, &m);
    if (err) return cli_fail("cannot load the model", err);
    const adnn_spec_t *s = adnn_model_spec(m);
    printf("family        %s\n", adnn_family_name(s->family));
    printf("name          %s\n", s->name);
    printf("input         %dx%dx%d, %d classes\n", s->c, s->h, s->w, s->num_classes);
    printf("stem width    %d\n", s->stem_width);
    printf("stages        ");
    for (int i = 0; i < s->nstages; i++)
        printf("%s%d x %d ch (stride %d)", i ? ", " : "", s->blocks[i], s->widths[i],
               s->strides[i]);
    printf("\nexits after   ");
    for (int k = 0; k < s->nexits; k++) printf("%s%d", k ? "," : "", s->exit_after[k]);
    printf(" (tau %g, pool %d)\n", s->exit_tau, s->exit_pool);
    printf("parameters    %zu trainable floats, %zu tensors\n", adnn_param_count(m),
           adnn_tensor_count(m));
    printf("FLOPs full    %.0f (reference), %.0f (exact)\n", adnn_flops_full(m, 0),
           adnn_flops_full(m, 1));
    printf("seed          %llu\n", (unsigned long long)s->seed);
    for (size_t i = 0; i < adnn_tensor_count(m); i++) {
        adnn_tensor_info_t t;
        adnn_tensor_at(m, i, &t);
        printf("  %-32s [", t.name);
        for (int d = 0; d < t.ndim; d++) printf("%s%lld", d ? "," : "", (long long)t.shape[d]);
        printf("]%s\n", t.trainable ? "" : " (buffer)");
    }
    adnn_model_destroy(&m);
    return 0;
}

int main(int argc, char **argv)
{
    opts_t o = {.data_dir = "/usr/share/datasets/fashion-mnist",
                .epochs = 3,
                .batch = 64,
                .seed = 1,
                .lr = 3e-3,
                .gate_lambda = -1,
                .gate_soft_steps = -1,
                .gate_margin = -1,
                .gate_margin_weight = -1,
                .gate_target = -1,
                .gate_target_rate = -1,
                .policy_max_run = -1,
                .policy_penalty = -1,
                .policy_explore = -1};
    cli_set_prog("dp-zoo");
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(stdout);
        return 0;
    }
    o.cmd = argv[1];
    if (strcmp(o.cmd, "train") && strcmp(o.cmd, "eval") && strcmp(o.cmd, "info")) {
        fprintf(stderr, "dp-zoo: unknown command '%s' (train, eval, info)\n", o.cmd);
        return 2;
    }
    char prog[16]; /* getopt's own errors start with argv[0]: "dp-zoo eval: ..." */
    snprintf(prog, sizeof prog, "dp-zoo %s", o.cmd);
    argv[1] = prog;
    if (parse_args(argc - 1, argv + 1, &o)) return 2;
    nn_set_threads((int)o.threads);
    if (!strcmp(o.cmd, "train")) {
        if (optind + 1 < argc) {
            fprintf(stderr, "dp-zoo train: unexpected argument '%s'\n", argv[optind + 1]);
            return 2;
        }
        return cmd_train(&o);
    }
    if (optind + 1 != argc - 1) {
        fprintf(stderr, "dp-zoo %s: expects exactly one MODEL prefix\n", o.cmd);
        return 2;
    }
    o.model = argv[optind + 1];
    return !strcmp(o.cmd, "eval") ? cmd_eval(&o) : cmd_info(&o);
}
