/* dp-cnn: trains a small CNN on Fashion-MNIST with the project's NN engine and
 * prints its test accuracy. It is the end-to-end smoke job of the foundation:
 * dataset reader -> conv/BN/ReLU/pool/linear kernels -> cross-entropy -> Adam.
 *
 *   conv3x3(1->16,p1) BN ReLU maxpool2 -> conv3x3(16->32,p1) BN ReLU maxpool2
 *   -> linear(32*7*7 -> 128) ReLU -> linear(128 -> 10)
 *
 * Parameters, gradients and Adam moments each live in one block with named
 * pointers into it (llm.c style); activations in another. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"
#include "data/dataset.h"
#include "nn/nn.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/rng.h"

enum { C1 = 16, C2 = 32, HID = 128, NCLS = 10, IMG = 28 };

/* parameter tensors, in block order */
enum {
    P_C1W,
    P_C1B,
    P_BN1G,
    P_BN1B,
    P_C2W,
    P_C2B,
    P_BN2G,
    P_BN2B,
    P_F1W,
    P_F1B,
    P_F2W,
    P_F2B,
    P_COUNT
};
static const char *const param_names[P_COUNT] = {
    "conv1.weight", "conv1.bias", "bn1.weight", "bn1.bias", "conv2.weight", "conv2.bias",
    "bn2.weight",   "bn2.bias",   "fc1.weight", "fc1.bias", "fc2.weight",   "fc2.bias"};

typedef struct cnn {
    int max_batch;
    nn_conv_t conv1, conv2; /* shapes for max_batch; per-call copies set n */
    size_t sizes[P_COUNT], nparams;
    float *params, *grads, *m, *v; /* one block each */
    float *p[P_COUNT], *g[P_COUNT];
    float bn1_rm[C1], bn1_rv[C1], bn2_rm[C2], bn2_rv[C2];
    float bn1_mean[C1], bn1_rstd[C1], bn2_mean[C2], bn2_rstd[C2];
    /* activations for max_batch */
    float *a_c1, *a_bn1, *a_r1, *a_p1, *a_c2, *a_bn2, *a_r2, *a_p2, *a_f1, *a_h1, *a_logits,
        *a_probs;
    int *arg1, *arg2;
    float *d_buf1, *d_buf2; /* gradient scratch, largest activation */
    float *ws;
    size_t ws_size;
    float *act_block;
} cnn_t;

static size_t act_count(int b)
{
    size_t s1 = (size_t)b * C1 * IMG * IMG, p1 = (size_t)b * C1 * 14 * 14;
    size_t s2 = (size_t)b * C2 * 14 * 14, p2 = (size_t)b * C2 * 7 * 7;
    return 3 * s1 + p1 + 3 * s2 + p2 + 2 * (size_t)b * HID + 2 * (size_t)b * NCLS + 2 * s1;
}

static cnn_t *cnn_new(int max_batch, uint64_t seed)
{
    cnn_t *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->max_batch = max_batch;
    nn_conv2d_init(&m->conv1, max_batch, 1, IMG, IMG, C1, 3, 3, 1, 1, 1);
    nn_conv2d_init(&m->conv2, max_batch, C1, 14, 14, C2, 3, 3, 1, 1, 1);
    size_t sz[P_COUNT] = {C1 * 9,        C1,  C1,         C1,  C2 * C1 * 9, C2, C2, C2,
                          HID * C2 * 49, HID, NCLS * HID, NCLS};
    for (int i = 0; i < P_COUNT; i++) {
        m->sizes[i] = sz[i];
        m->nparams += sz[i];
    }
    float *block = calloc(4 * m->nparams, sizeof(float));
    size_t nact = act_count(max_batch);
    m->act_block = calloc(nact, sizeof(float));
    m->arg1 = calloc((size_t)max_batch * C1 * 14 * 14, sizeof(int));
    m->arg2 = calloc((size_t)max_batch * C2 * 7 * 7, sizeof(int));
    size_t w1 = nn_conv2d_workspace(&m->conv1), w2 = nn_conv2d_workspace(&m->conv2);
    m->ws_size = w1 > w2 ? w1 : w2;
    m->ws = calloc(m->ws_size, sizeof(float));
    if (!block || !m->act_block || !m->arg1 || !m->arg2 || !m->ws) {
        free(block);
        free(m->act_block);
        free(m->arg1);
        free(m->arg2);
        free(m->ws);
        free(m);
        return NULL;
    }
    m->params = block;
    m->grads = block + m->nparams;
    m->m = block + 2 * m->nparams;
    m->v = block + 3 * m->nparams;
    size_t off = 0;
    for (int i = 0; i < P_COUNT; i++) {
        m->p[i] = m->params + off;
        m->g[i] = m->grads + off;
        off += m->sizes[i];
    }
    float *a = m->act_block;
    size_t s1 = (size_t)max_batch * C1 * IMG * IMG, p1 = (size_t)max_batch * C1 * 14 * 14;
    size_t s2 = (size_t)max_batch * C2 * 14 * 14, p2 = (size_t)max_batch * C2 * 7 * 7;
    m->a_c1 = a, a += s1;
    m->a_bn1 = a, a += s1;
    m->a_r1 = a, a += s1;
    m->a_p1 = a, a += p1;
    m->a_c2 = a, a += s2;
    m->a_bn2 = a, a += s2;
    m->a_r2 = a, a += s2;
    m->a_p2 = a, a += p2;
    m->a_f1 = a, a += (size_t)max_batch * HID;
    m->a_h1 = a, a += (size_t)max_batch * HID;
    m->a_logits = a, a += (size_t)max_batch * NCLS;
    m->a_probs = a, a += (size_t)max_batch * NCLS;
    m->d_buf1 = a, a += s1;
    m->d_buf2 = a;

    /* PyTorch-like init: kaiming-uniform-ish scale 1/sqrt(fan_in) */
    dp_rng_t rng;
    dp_rng_seed(&rng, seed);
    int fan_in[P_COUNT] = {9, 9, 0, 0, C1 * 9, C1 * 9, 0, 0, C2 * 49, C2 * 49, HID, HID};
    for (int i = 0; i < P_COUNT; i++) {
        if (i == P_BN1G || i == P_BN2G) {
            for (size_t j = 0; j < m->sizes[i]; j++) m->p[i][j] = 1.0f;
        } else if (fan_in[i]) {
            float bound = 1.0f / sqrtf((float)fan_in[i]);
            for (size_t j = 0; j < m->sizes[i]; j++)
                m->p[i][j] = (2.0f * dp_rng_uniform(&rng) - 1.0f) * bound;
        }
    }
    for (int c = 0; c < C1; c++) m->bn1_rv[c] = 1.0f;
    for (int c = 0; c < C2; c++) m->bn2_rv[c] = 1.0f;
    return m;
}

static void cnn_destroy(cnn_t **pm)
{
    if (!pm || !*pm) return;
    cnn_t *m = *pm;
    free(m->params);
    free(m->act_block);
    free(m->arg1);
    free(m->arg2);
    free(m->ws);
    free(m);
    *pm = NULL;
}

/* x (b,1,28,28) -> m->a_logits (b,10) */
static void cnn_forward(cnn_t *m, const float *x, int b, int training)
{
    nn_conv_t c1 = m->conv1, c2 = m->conv2;
    c1.n = b;
    c2.n = b;
    size_t s1 = (size_t)b * C1 * IMG * IMG, s2 = (size_t)b * C2 * 14 * 14;
    nn_conv2d_forward(&c1, m->a_c1, x, m->p[P_C1W], m->p[P_C1B], m->ws);
    if (training)
        nn_batchnorm_forward_train(m->a_bn1, m->bn1_mean, m->bn1_rstd, m->a_c1, m->p[P_BN1G],
                                   m->p[P_BN1B], m->bn1_rm, m->bn1_rv, b, C1, IMG * IMG, 0.1f,
                                   1e-5f);
    else
        nn_batchnorm_forward_eval(m->a_bn1, m->a_c1, m->p[P_BN1G], m->p[P_BN1B], m->bn1_rm,
                                  m->bn1_rv, b, C1, IMG * IMG, 1e-5f);
    nn_relu_forward(m->a_r1, m->a_bn1, s1);
    nn_maxpool2d_forward(m->a_p1, m->arg1, m->a_r1, b, C1, IMG, IMG, 2, 2, 0);
    nn_conv2d_forward(&c2, m->a_c2, m->a_p1, m->p[P_C2W], m->p[P_C2B], m->ws);
    if (training)
        nn_batchnorm_forward_train(m->a_bn2, m->bn2_mean, m->bn2_rstd, m->a_c2, m->p[P_BN2G],
                                   m->p[P_BN2B], m->bn2_rm, m->bn2_rv, b, C2, 14 * 14, 0.1f, 1e-5f);
    else
        nn_batchnorm_forward_eval(m->a_bn2, m->a_c2, m->p[P_BN2G], m->p[P_BN2B], m->bn2_rm,
                                  m->bn2_rv, b, C2, 14 * 14, 1e-5f);
    nn_relu_forward(m->a_r2, m->a_bn2, s2);
    nn_maxpool2d_forward(m->a_p2, m->arg2, m->a_r2, b, C2, 14, 14, 2, 2, 0);
    nn_linear_forward(m->a_f1, m->a_p2, m->p[P_F1W], m->p[P_F1B], b, C2 * 49, HID);
    nn_relu_forward(m->a_h1, m->a_f1, (size_t)b * HID);
    nn_linear_forward(m->a_logits, m->a_h1, m->p[P_F2W], m->p[P_F2B], b, HID, NCLS);
}

/* Backward from the cross-entropy already computed into a_probs. */
static void cnn_backward(cnn_t *m, const float *x, const int32_t *y, int b)
{
    nn_conv_t c1 = m->conv1, c2 = m->conv2;
    c1.n = b;
    c2.n = b;
    size_t s1 = (size_t)b * C1 * IMG * IMG, s2 = (size_t)b * C2 * 14 * 14;
    size_t p1 = (size_t)b * C1 * 14 * 14, p2 = (size_t)b * C2 * 49;
    float *d1 = m->d_buf1, *d2 = m->d_buf2;
    memset(m->grads, 0, m->nparams * sizeof(float));

    memset(d1, 0, (size_t)b * NCLS * sizeof(float));
    nn_crossentropy_backward(d1, m->a_probs, y, b, NCLS, 1.0f); /* dlogits */
    memset(d2, 0, (size_t)b * HID * sizeof(float));
    nn_linear_backward(d2, m->g[P_F2W], m->g[P_F2B], d1, m->a_h1, m->p[P_F2W], b, HID, NCLS);
    memset(d1, 0, (size_t)b * HID * sizeof(float));
    nn_relu_backward(d1, d2, m->a_f1, (size_t)b * HID);
    memset(d2, 0, p2 * sizeof(float));
    nn_linear_backward(d2, m->g[P_F1W], m->g[P_F1B], d1, m->a_p2, m->p[P_F1W], b, C2 * 49, HID);
    memset(d1, 0, s2 * sizeof(float));
    nn_maxpool2d_backward(d1, d2, m->arg2, b, C2, 14, 14, 2, 2, 0);
    memset(d2, 0, s2 * sizeof(float));
    nn_relu_backward(d2, d1, m->a_bn2, s2);
    memset(d1, 0, s2 * sizeof(float));
    nn_batchnorm_backward(d1, m->g[P_BN2G], m->g[P_BN2B], d2, m->a_c2, m->bn2_mean, m->bn2_rstd,
                          m->p[P_BN2G], b, C2, 14 * 14);
    memset(d2, 0, p1 * sizeof(float));
    nn_conv2d_backward(&c2, d2, m->g[P_C2W], m->g[P_C2B], d1, m->a_p1, m->p[P_C2W], m->ws);
    memset(d1, 0, s1 * sizeof(float));
    nn_maxpool2d_backward(d1, d2, m->arg1, b, C1, IMG, IMG, 2, 2, 0);
    memset(d2, 0, s1 * sizeof(float));
    nn_relu_backward(d2, d1, m->a_bn1, s1);
    memset(d1, 0, s1 * sizeof(float));
    nn_batchnorm_backward(d1, m->g[P_BN1G], m->g[P_BN1B], d2, m->a_c1, m->bn1_mean, m->bn1_rstd,
                          m->p[P_BN1G], b, C1, IMG * IMG);
    nn_conv2d_backward(&c1, NULL, m->g[P_C1W], m->g[P_C1B], d1, x, m->p[P_C1W], m->ws);
}

static double evaluate(cnn_t *m, const dp_dataset_t *test)
{
    size_t correct = 0, isz = dp_dataset_sample_size(test);
    for (uint32_t i = 0; i < test->n; i += (uint32_t)m->max_batch) {
        int b =
            (int)((test->n - i) < (uint32_t)m->max_batch ? test->n - i : (uint32_t)m->max_batch);
        cnn_forward(m, test->images + (size_t)i * isz, b, 0);
        for (int r = 0; r < b; r++) {
            const float *l = m->a_logits + (size_t)r * NCLS;
            int best = 0;
            for (int k = 1; k < NCLS; k++)
                if (l[k] > l[best]) best = k;
            correct += best == test->labels[i + (uint32_t)r];
        }
    }
    return (double)correct / test->n;
}

static dp_err_t save_weights(const cnn_t *m, const char *path)
{
    st_writer_t *w = st_writer_new();
    if (!w) return dp_err_set(DP_ERR_NOMEM, "cannot allocate a safetensors writer");
    int64_t shapes[P_COUNT][4] = {{C1, 1, 3, 3},  {C1},  {C1},        {C1},
                                  {C2, C1, 3, 3}, {C2},  {C2},        {C2},
                                  {HID, C2 * 49}, {HID}, {NCLS, HID}, {NCLS}};
    int ndims[P_COUNT] = {4, 1, 1, 1, 4, 1, 1, 1, 2, 1, 2, 1};
    dp_err_t err = DP_OK;
    for (int i = 0; i < P_COUNT && !err; i++)
        err = st_writer_add_f32(w, param_names[i], ndims[i], shapes[i], m->p[i]);
    if (!err) err = st_writer_set_metadata(w, "model", "dp-cnn");
    if (!err) err = st_writer_write(w, path);
    st_writer_destroy(&w);
    return err;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: dp-cnn [options]\n"
               "Trains a small CNN on Fashion-MNIST with the project's NN engine and prints\n"
               "its test accuracy.\n\n"
               "  --data-dir DIR   IDX files (default /usr/share/datasets/fashion-mnist)\n"
               "  --epochs N       training epochs (default 1)\n"
               "  --batch N        batch size (default 64)\n"
               "  --lr X           peak Adam learning rate, cosine-decayed (default 0.002)\n"
               "  --seed N         RNG seed for init and shuffling (default 1)\n"
               "  --threads N      OpenBLAS threads (default: all cores)\n"
               "  --limit N        use only the first N training images (default all)\n"
               "  --save PATH      write the trained weights as safetensors\n"
               "  --quiet          no progress lines\n"
               "  -h, --help       this text\n");
}

int main(int argc, char **argv)
{
    const char *data_dir = "/usr/share/datasets/fashion-mnist", *save = NULL;
    long epochs = 1, batch = 64, seed = 1, threads = 0, limit = 0;
    double lr = 2e-3;
    int quiet = 0;
    cli_set_prog("dp-cnn");
    static const struct option opts[] = {{"data-dir", required_argument, 0, 'd'},
                                         {"epochs", required_argument, 0, 'e'},
                                         {"batch", required_argument, 0, 'b'},
                                         {"lr", required_argument, 0, 'l'},
                                         {"seed", required_argument, 0, 's'},
                                         {"threads", required_argument, 0, 't'},
                                         {"limit", required_argument, 0, 'n'},
                                         {"save", required_argument, 0, 'o'},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'd':
            data_dir = optarg;
            break;
        case 'e':
            bad = cli_parse_long("--epochs", optarg, 1, 1000, &epochs);
            break;
        case 'b':
            bad = cli_parse_long("--batch", optarg, 1, 4096, &batch);
            break;
        case 's':
            bad = cli_parse_long("--seed", optarg, 0, 0x7fffffff, &seed);
            break;
        case 't':
            bad = cli_parse_long("--threads", optarg, 0, 256, &threads);
            break;
        case 'n':
            bad = cli_parse_long("--limit", optarg, 0, 0x7fffffff, &limit);
            break;
        case 'o':
            save = optarg;
            break;
        case 'q':
            quiet = 1;
            break;
        case 'l':
            bad = cli_parse_unit("--lr", optarg, 0, &lr);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
        if (bad) return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "dp-cnn: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (save && !cli_out_file_ok("--save", save)) return 1;
    nn_set_threads((int)threads);

    dp_dataset_t *train = NULL, *test = NULL;
    dp_err_t err = cli_load_split(data_dir, "train", &train);
    if (!err) err = cli_load_split(data_dir, "t10k", &test);
    if (err) {
        fprintf(stderr, "dp-cnn: %s: %s\n", dp_strerror(err), dp_err_detail());
        dp_dataset_destroy(&train);
        return 1;
    }
    if (train->c != 1 || train->h != IMG || train->w != IMG || test->h != IMG || test->w != IMG) {
        fprintf(stderr, "dp-cnn: expected 1x28x28 images, got %ux%ux%u\n", train->c, train->h,
                train->w);
        dp_dataset_destroy(&train);
        dp_dataset_destroy(&test);
        return 1;
    }
    uint32_t ntrain = train->n;
    if (limit > 0 && (uint32_t)limit < ntrain) ntrain = (uint32_t)limit;

    int rc = 1;
    cnn_t *m = cnn_new((int)batch, (uint64_t)seed);
    uint32_t *order = malloc(ntrain * sizeof *order);
    float *xb = malloc((size_t)batch * IMG * IMG * sizeof(float));
    int32_t *yb = malloc((size_t)batch * sizeof(int32_t));
    if (!m || !order || !xb || !yb) {
        fprintf(stderr, "dp-cnn: out of memory\n");
        goto done;
    }
    if (!quiet)
        printf("dp-cnn: %zu parameters, %u training images, %u test images, %d threads\n",
               m->nparams, ntrain, test->n, nn_get_threads());
    nn_adam_t opt = nn_adam_default((float)lr);
    dp_rng_t rng;
    dp_rng_seed(&rng, (uint64_t)seed ^ 0x5eedULL);
    double t0 = dp_clock_s();
    long steps_per_epoch = (long)((ntrain + (uint32_t)batch - 1) / (uint32_t)batch);
    for (long ep = 0; ep < epochs; ep++) {
        for (uint32_t i = 0; i < ntrain; i++) order[i] = i;
        dp_rng_shuffle(&rng, order, ntrain);
        double loss_sum = 0;
        long correct = 0, seen = 0;
        for (long s = 0; s < steps_per_epoch; s++) {
            uint32_t begin = (uint32_t)(s * batch);
            int b = (int)((ntrain - begin) < (uint32_t)batch ? ntrain - begin : (uint32_t)batch);
            err = dp_dataset_gather(train, order + begin, (size_t)b, xb, yb);
            if (err) {
                fprintf(stderr, "dp-cnn: %s: %s\n", dp_strerror(err), dp_err_detail());
                goto done;
            }
            cnn_forward(m, xb, b, 1);
            double loss = nn_crossentropy_forward(m->a_probs, m->a_logits, yb, b, NCLS);
            cnn_backward(m, xb, yb, b);
            /* cosine decay over the whole run: most of one epoch's gain */
            long total = epochs * steps_per_epoch, t = ep * steps_per_epoch + s;
            opt.lr = 0.5 * lr * (1.0 + cos(3.141592653589793 * (double)t / (double)total));
            nn_adam_step(&opt, m->params, m->grads, m->m, m->v, m->nparams);
            loss_sum += loss * b;
            seen += b;
            for (int r = 0; r < b; r++) {
                const float *l = m->a_logits + (size_t)r * NCLS;
                int best = 0;
                for (int k = 1; k < NCLS; k++)
                    if (l[k] > l[best]) best = k;
                correct += best == yb[r];
            }
            long done_steps = ep * steps_per_epoch + s + 1;
            if (!quiet && (done_steps % 100 == 0 || s == steps_per_epoch - 1)) {
                double el = dp_clock_s() - t0;
                double left =
                    el / (double)done_steps * (double)(epochs * steps_per_epoch - done_steps);
                printf("epoch %ld/%ld step %ld/%ld  loss %.4f  train acc %.4f  %.1fs elapsed, "
                       "%.1fs left\n",
                       ep + 1, epochs, s + 1, steps_per_epoch, loss_sum / (double)seen,
                       (double)correct / (double)seen, el, left);
                fflush(stdout);
            }
        }
    }
    double train_s = dp_clock_s() - t0;
    double acc = evaluate(m, test);
    printf("test accuracy: %.4f (%u images, %ld epoch%s, %.1f s training)\n", acc, test->n, epochs,
           epochs == 1 ? "" : "s", train_s);
    if (save) {
        err = save_weights(m, save);
        if (err) {
            fprintf(stderr, "dp-cnn: cannot save %s: %s: %s\n", save, dp_strerror(err),
                    dp_err_detail());
            goto done;
        }
        printf("weights written to %s\n", save);
    }
    rc = 0;
done:
    free(order);
    free(xb);
    free(yb);
    cnn_destroy(&m);
    dp_dataset_destroy(&train);
    dp_dataset_destroy(&test);
    return rc;
}
