/* core/adnn: the adaptive model zoo (SDN-ResNet).
 * - the batch-1 adaptive forward agrees with the batch forward when every
 *   block runs;
 * - FLOPs of the full network equal the METHOD.md section 4 formula;
 * - an early exit really skips: the trace and the FLOPs say so;
 * - the input gradient of the p_k loss matches central finite differences;
 * - spec round trip; malformed weight and spec files fail with errors that
 *   name the tensor or the file. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adnn/adnn.h"
#include "data/dataset.h"
#include "nn/safetensors.h"
#include "util/rng.h"

static adnn_model_t *new_sdn(float tau, uint64_t seed)
{
    adnn_spec_t s;
    cr_assert_eq(adnn_spec_default(ADNN_FAMILY_SDN_RESNET, &s), DP_OK);
    s.exit_tau = tau;
    adnn_model_t *m = NULL;
    cr_assert_eq(adnn_model_new(&s, seed, &m), DP_OK, "%s", dp_err_detail());
    return m;
}

/* Random-ish BN statistics and images so inference is not trivially symmetric. */
static void perturb_buffers(adnn_model_t *m, uint64_t seed)
{
    dp_rng_t r;
    dp_rng_seed(&r, seed);
    for (size_t i = 0; i < adnn_tensor_count(m); i++) {
        adnn_tensor_info_t t;
        adnn_tensor_at(m, i, &t);
        if (t.trainable) continue;
        int var = strstr(t.name, "running_var") != NULL;
        for (size_t j = 0; j < t.numel; j++)
            t.data[j] = var ? 0.5f + dp_rng_uniform(&r) : 0.2f * dp_rng_normal(&r);
    }
}

static void fill_images(float *x, size_t n, uint64_t seed)
{
    dp_rng_t r;
    dp_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) x[i] = dp_rng_uniform(&r);
}

#define IMG (28 * 28)

Test(adnn, adaptive_matches_batch_when_every_block_runs)
{
    adnn_model_t *m = new_sdn(1.0f, 3); /* c_k >= 1 never holds for these weights */
    perturb_buffers(m, 4);
    const adnn_spec_t *s = adnn_model_spec(m);
    int n = 4, E = s->nexits, K = s->num_classes;
    float x[4 * IMG], *logits = malloc(sizeof(float) * (size_t)n * (E + 1) * K);
    fill_images(x, sizeof x / sizeof x[0], 5);
    cr_assert_eq(adnn_eval_batch(m, x, n, logits), DP_OK);
    for (int i = 0; i < n; i++) {
        adnn_trace_t t;
        adnn_forward_adaptive(m, x + i * IMG, &t);
        cr_assert_eq(t.blocks_run, t.nblocks);
        cr_assert_eq(t.exit_taken, E);
        for (int k = 0; k <= E; k++) {
            const float *z = logits + ((size_t)i * (E + 1) + k) * K;
            int best = 0;
            for (int j = 1; j < K; j++)
                if (z[j] > z[best]) best = j;
            double se = 0;
            for (int j = 0; j < K; j++) se += exp(z[j] - z[best]);
            cr_assert_float_eq(t.conf[k], 1.0 / se, 1e-4, "image %d exit %d", i, k);
            if (k == E) cr_assert_eq(t.pred, best, "image %d", i);
        }
        cr_assert_float_eq(t.flops_ref, adnn_flops_full(m, 0), 0.5);
        cr_assert_float_eq(t.flops_exact, adnn_flops_full(m, 1), 0.5);
    }
    free(logits);
    adnn_model_destroy(&m);
}

static double conv(int cin, int cout, int k, int hout)
{
    return 2.0 * cin * cout * k * k * hout * hout;
}

Test(adnn, flops_full_by_formula)
{
    adnn_model_t *m = new_sdn(0.9f, 1);
    /* default zoo SDN-ResNet: stem 1->16 at 28; blocks 16@14 x2, 32@7 x2, 64@4 x2;
     * exits after blocks 0..4 (pool to 4x4, linear to 10); final GAP + linear. */
    double f = conv(1, 16, 3, 28);
    f += conv(16, 16, 3, 14) * 2 + conv(16, 16, 1, 14); /* block 0 (stride 2, 1x1 shortcut) */
    f += conv(16, 16, 3, 14) * 2;                       /* block 1 */
    f += conv(16, 32, 3, 7) + conv(32, 32, 3, 7) + conv(16, 32, 1, 7);
    f += conv(32, 32, 3, 7) * 2;
    f += conv(32, 64, 3, 4) + conv(64, 64, 3, 4) + conv(32, 64, 1, 4);
    f += conv(64, 64, 3, 4) * 2;
    int head_c[5] = {16, 16, 32, 32, 64};
    for (int k = 0; k < 5; k++) f += 2.0 * head_c[k] * 16 * 10;
    f += 2.0 * 64 * 10;
    cr_assert_float_eq(adnn_flops_full(m, 0), f, 0.5, "reference %.0f vs formula %.0f",
                       adnn_flops_full(m, 0), f);
    /* the exact count adds BN, activations, pooling and biases */
    cr_assert_gt(adnn_flops_full(m, 1), f);
    cr_assert_lt(adnn_flops_full(m, 1), 1.2 * f);
    adnn_model_destroy(&m);
}

Test(adnn, early_exit_really_skips)
{
    /* tau below 1/K: the first exit always fires */
    adnn_model_t *m = new_sdn(0.05f, 2);
    float x[IMG];
    fill_images(x, IMG, 9);
    adnn_trace_t t;
    adnn_forward_adaptive(m, x, &t);
    const adnn_spec_t *s = adnn_model_spec(m);
    cr_assert_eq(t.exit_taken, 0);
    cr_assert_eq(t.blocks_run, s->exit_after[0] + 1);
    for (int b = s->exit_after[0] + 1; b < t.nblocks; b++) cr_assert_eq(t.ran[b], 0, "block %d", b);
    double expect =
        conv(1, 16, 3, 28) + conv(16, 16, 3, 14) * 2 + conv(16, 16, 1, 14) + 2.0 * 16 * 16 * 10;
    cr_assert_float_eq(t.flops_ref, expect, 0.5);
    cr_assert_lt(t.flops_ref, 0.25 * adnn_flops_full(m, 0));
    cr_assert_lt(t.flops_exact, 0.25 * adnn_flops_full(m, 1));
    adnn_model_destroy(&m);
}

static double pk_loss(adnn_model_t *m, const float *x, int n)
{
    float p[2 * ADNN_MAX_EXITS];
    double l;
    cr_assert_eq(adnn_pk_grad(m, x, n, p, &l, NULL), DP_OK);
    return l;
}

static void check_pk_grad(float tau, uint64_t seed)
{
    adnn_model_t *m = new_sdn(tau, seed);
    perturb_buffers(m, seed + 1);
    int n = 2, K = adnn_pk_count(m);
    cr_assert_eq(K, 5);
    float x[2 * IMG], dx[2 * IMG], xp[2 * IMG], p[2 * 5];
    fill_images(x, 2 * IMG, seed + 2);
    double l;
    cr_assert_eq(adnn_pk_grad(m, x, n, p, &l, dx), DP_OK);
    for (int i = 0; i < n * K; i++) cr_assert(p[i] > 0 && p[i] <= 1, "p[%d] = %g", i, p[i]);
    double expect = 0;
    for (int i = 0; i < n * K; i++) expect -= log(p[i]);
    cr_assert_float_eq(l, expect / (n * K), 1e-5);
    /* directional derivatives along random directions, central differences */
    dp_rng_t r;
    dp_rng_seed(&r, seed + 3);
    const double h = 2e-3; /* larger steps cross ReLU and max-pool kinks */
    for (int trial = 0; trial < 3; trial++) {
        float v[2 * IMG];
        double dot = 0;
        for (int i = 0; i < 2 * IMG; i++) {
            v[i] = dp_rng_normal(&r) / 28.0f;
            dot += (double)v[i] * dx[i];
        }
        for (int i = 0; i < 2 * IMG; i++) xp[i] = x[i] + (float)h * v[i];
        double lp = pk_loss(m, xp, n);
        for (int i = 0; i < 2 * IMG; i++) xp[i] = x[i] - (float)h * v[i];
        double lm = pk_loss(m, xp, n);
        double fd = (lp - lm) / (2 * h);
        cr_assert(fabs(fd - dot) <= 5e-2 * fabs(fd) + 5e-5,
                  "tau %g trial %d: finite difference %.6g, gradient %.6g", tau, trial, fd, dot);
    }
    adnn_model_destroy(&m);
}

Test(adnn, pk_input_gradient_no_exit_fires) { check_pk_grad(1.0f, 11); }

Test(adnn, pk_input_gradient_first_exit_fires)
{
    /* tau below 1/K: exit 0 fires, p_1.. are 1 and carry no gradient */
    adnn_model_t *m = new_sdn(0.05f, 12);
    float x[IMG], dx[IMG], p[5];
    fill_images(x, IMG, 13);
    double l;
    cr_assert_eq(adnn_pk_grad(m, x, 1, p, &l, dx), DP_OK);
    cr_assert(p[0] < 1.0f);
    for (int k = 1; k < 5; k++) cr_assert_eq(p[k], 1.0f);
    adnn_model_destroy(&m);
    check_pk_grad(0.05f, 14);
}

Test(adnn, spec_round_trip)
{
    adnn_spec_t s, t;
    cr_assert_eq(adnn_spec_default(ADNN_FAMILY_SDN_RESNET, &s), DP_OK);
    s.seed = 42;
    uint8_t *buf;
    size_t len;
    cr_assert_eq(adnn_spec_encode(&s, &buf, &len), DP_OK);
    cr_assert_eq(adnn_spec_decode(buf, len, "mem", &t), DP_OK, "%s", dp_err_detail());
    free(buf);
    cr_assert_eq(memcmp(&s, &t, sizeof s), 0);
    const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
    cr_assert_eq(adnn_spec_decode(junk, sizeof junk, "junk.pb", &t), DP_ERR_FORMAT);
    cr_assert(strstr(dp_err_detail(), "junk.pb"), "%s", dp_err_detail());
    cr_assert_eq(adnn_spec_default(ADNN_FAMILY_UNSPECIFIED, &t), DP_ERR_UNSUPPORTED);
}

static void tmp_prefix(char *buf, size_t n, const char *tag)
{
    snprintf(buf, n, "/tmp/dp_test_adnn_%s_%d", tag, (int)getpid());
}

Test(adnn, save_load_round_trip)
{
    adnn_model_t *m = new_sdn(0.7f, 21), *l = NULL;
    perturb_buffers(m, 22);
    char pre[256];
    tmp_prefix(pre, sizeof pre, "rt");
    cr_assert_eq(adnn_model_save(m, pre), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(adnn_model_load(pre, &l), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(adnn_tensor_count(l), adnn_tensor_count(m));
    for (size_t i = 0; i < adnn_tensor_count(m); i++) {
        adnn_tensor_info_t a, b;
        adnn_tensor_at(m, i, &a);
        adnn_tensor_at(l, i, &b);
        cr_assert_str_eq(a.name, b.name);
        cr_assert_eq(memcmp(a.data, b.data, a.numel * sizeof(float)), 0, "%s", a.name);
    }
    cr_assert_float_eq(adnn_model_spec(l)->exit_tau, 0.7f, 1e-7);
    char p[300];
    snprintf(p, sizeof p, "%s.pb", pre);
    unlink(p);
    snprintf(p, sizeof p, "%s.safetensors", pre);
    unlink(p);
    adnn_model_destroy(&m);
    adnn_model_destroy(&l);
}

/* Writes m's tensors, leaving out `skip` and reshaping `reshape` to [1]. */
static void write_variant(adnn_model_t *m, const char *path, const char *skip, const char *reshape,
                          const char *extra)
{
    st_writer_t *w = st_writer_new();
    float one = 1.0f;
    for (size_t i = 0; i < adnn_tensor_count(m); i++) {
        adnn_tensor_info_t t;
        adnn_tensor_at(m, i, &t);
        if (skip && !strcmp(t.name, skip)) continue;
        if (reshape && !strcmp(t.name, reshape)) {
            int64_t s1[1] = {1};
            cr_assert_eq(st_writer_add_f32(w, t.name, 1, s1, &one), DP_OK);
            continue;
        }
        cr_assert_eq(st_writer_add_f32(w, t.name, t.ndim, t.shape, t.data), DP_OK);
    }
    if (extra) {
        int64_t s1[1] = {1};
        cr_assert_eq(st_writer_add_f32(w, extra, 1, s1, &one), DP_OK);
    }
    cr_assert_eq(st_writer_write(w, path), DP_OK);
    st_writer_destroy(&w);
}

Test(adnn, malformed_weights_name_the_problem)
{
    adnn_model_t *m = new_sdn(0.9f, 31);
    char pre[256], path[300];
    tmp_prefix(pre, sizeof pre, "bad");
    snprintf(path, sizeof path, "%s.safetensors", pre);

    write_variant(m, path, "blocks.3.c2.bn.weight", NULL, NULL);
    cr_assert_eq(adnn_weights_load(m, path), DP_ERR_NOTFOUND);
    cr_assert(strstr(dp_err_detail(), "blocks.3.c2.bn.weight"), "%s", dp_err_detail());

    write_variant(m, path, NULL, "exits.2.fc.weight", NULL);
    cr_assert_eq(adnn_weights_load(m, path), DP_ERR_MISMATCH);
    cr_assert(strstr(dp_err_detail(), "exits.2.fc.weight"), "%s", dp_err_detail());

    write_variant(m, path, NULL, NULL, "blocks.99.c1.conv.weight");
    cr_assert_eq(adnn_weights_load(m, path), DP_ERR_MISMATCH);
    cr_assert(strstr(dp_err_detail(), "blocks.99.c1.conv.weight"), "%s", dp_err_detail());

    /* truncated: the data buffer ends early */
    write_variant(m, path, NULL, NULL, NULL);
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fclose(f);
    cr_assert_eq(truncate(path, len - 100), 0);
    cr_assert_eq(adnn_weights_load(m, path), DP_ERR_TRUNCATED);
    cr_assert(strstr(dp_err_detail(), path), "%s", dp_err_detail());

    /* a model whose spec file is garbage */
    snprintf(path, sizeof path, "%s.pb", pre);
    f = fopen(path, "wb");
    fputs("this is not a protobuf", f);
    fclose(f);
    adnn_model_t *l = NULL;
    dp_err_t err = adnn_model_load(pre, &l);
    cr_assert(err == DP_ERR_FORMAT || err == DP_ERR_RANGE || err == DP_ERR_INVALID, "%s",
              dp_strerror(err));
    cr_assert(strstr(dp_err_detail(), path), "%s", dp_err_detail());
    cr_assert_null(l);
    unlink(path);
    snprintf(path, sizeof path, "%s.safetensors", pre);
    unlink(path);
    /* missing files */
    cr_assert_eq(adnn_model_load("/nonexistent/model", &l), DP_ERR_NOTFOUND);
    adnn_model_destroy(&m);
}

Test(adnn, training_lowers_the_loss)
{
    adnn_model_t *m = new_sdn(0.9f, 41);
    int n = 16;
    float x[16 * IMG];
    int32_t y[16];
    fill_images(x, 16 * IMG, 42);
    for (int i = 0; i < n; i++) y[i] = i % 10;
    double first = 0, loss = 0;
    for (int step = 0; step < 30; step++) {
        cr_assert_eq(adnn_train_step(m, x, y, n, &loss, NULL), DP_OK);
        if (step == 0) first = loss;
        adnn_adam_step(m, 3e-3f);
    }
    cr_assert_lt(loss, 0.5 * first, "loss %g after 30 steps, %g at first", loss, first);
    adnn_model_destroy(&m);
}

/* Parameter gradients of the training objective (BatchNorm in training mode)
 * on a small SDN, against central differences along random directions. */
Test(adnn, train_param_gradient)
{
    adnn_spec_t s;
    cr_assert_eq(adnn_spec_default(ADNN_FAMILY_SDN_RESNET, &s), DP_OK);
    s.stem_width = 4;
    s.widths[0] = 4, s.widths[1] = 6, s.widths[2] = 8;
    s.blocks[0] = 1, s.blocks[1] = 1, s.blocks[2] = 1;
    s.nexits = 2;
    s.exit_after[0] = 0, s.exit_after[1] = 1;
    s.exit_weights[0] = 0.3f, s.exit_weights[1] = 0.6f, s.exit_weights[2] = 1.0f;
    adnn_model_t *m = NULL;
    cr_assert_eq(adnn_model_new(&s, 51, &m), DP_OK, "%s", dp_err_detail());
    int n = 4;
    float x[4 * IMG];
    int32_t y[4] = {1, 3, 5, 7};
    fill_images(x, 4 * IMG, 52);
    double l0;
    cr_assert_eq(adnn_train_step(m, x, y, n, &l0, NULL), DP_OK);
    size_t nt = adnn_tensor_count(m);
    float **g = calloc(nt, sizeof *g);
    for (size_t i = 0; i < nt; i++) {
        float *gi = adnn_tensor_grad(m, i);
        adnn_tensor_info_t t;
        adnn_tensor_at(m, i, &t);
        if (gi) {
            g[i] = malloc(t.numel * sizeof(float));
            memcpy(g[i], gi, t.numel * sizeof(float));
        }
    }
    dp_rng_t r;
    dp_rng_seed(&r, 53);
    const double h = 1e-4; /* larger steps cross ReLU kinks (checked: converges as h falls) */
    for (size_t i = 0; i < nt; i++) {
        if (!g[i]) continue;
        adnn_tensor_info_t t;
        adnn_tensor_at(m, i, &t);
        float *v = malloc(t.numel * sizeof(float)), *orig = malloc(t.numel * sizeof(float));
        memcpy(orig, t.data, t.numel * sizeof(float));
        double dot = 0;
        for (size_t j = 0; j < t.numel; j++) {
            v[j] = dp_rng_normal(&r);
            dot += (double)v[j] * g[i][j];
        }
        double lp, lm;
        for (size_t j = 0; j < t.numel; j++) t.data[j] = orig[j] + (float)h * v[j];
        cr_assert_eq(adnn_train_step(m, x, y, n, &lp, NULL), DP_OK);
        for (size_t j = 0; j < t.numel; j++) t.data[j] = orig[j] - (float)h * v[j];
        cr_assert_eq(adnn_train_step(m, x, y, n, &lm, NULL), DP_OK);
        memcpy(t.data, orig, t.numel * sizeof(float));
        double fd = (lp - lm) / (2 * h);
        cr_assert(fabs(fd - dot) <= 5e-2 * fmax(fabs(fd), fabs(dot)) + 5e-3,
                  "%s: finite difference %.6g, gradient %.6g", t.name, fd, dot);
        free(v);
        free(orig);
        free(g[i]);
    }
    free(g);
    adnn_model_destroy(&m);
}

/* The shipped model loads and meets the zoo's acceptance figures on the first
 * 2,000 Fashion-MNIST test images (skipped when the dataset is absent). */
Test(adnn, shipped_sdn_resnet)
{
    const char *img = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
    const char *lbl = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz";
    if (access(img, R_OK) != 0) cr_skip_test("Fashion-MNIST not installed");
    dp_dataset_t *d = NULL;
    cr_assert_eq(dp_dataset_load_idx(img, lbl, &d), DP_OK, "%s", dp_err_detail());
    adnn_model_t *m = NULL;
    cr_assert_eq(adnn_model_load(DP_SOURCE_DIR "/models/sdn_resnet", &m), DP_OK, "%s",
                 dp_err_detail());
    double full = adnn_flops_full(m, 0), sum = 0, lo = 1, hi = 0;
    int correct = 0, n = 2000;
    for (int i = 0; i < n; i++) {
        adnn_trace_t t;
        adnn_forward_adaptive(m, d->images + (size_t)i * IMG, &t);
        correct += t.pred == d->labels[i];
        double f = t.flops_ref / full;
        sum += f;
        lo = f < lo ? f : lo;
        hi = f > hi ? f : hi;
    }
    cr_assert_geq((double)correct / n, 0.90);
    cr_assert(sum / n >= 0.30 && sum / n <= 0.80, "mean executed fraction %g", sum / n);
    cr_assert_lt(lo, 0.5 * hi, "no per-input spread: %g .. %g", lo, hi);
    adnn_model_destroy(&m);
    dp_dataset_destroy(&d);
}
