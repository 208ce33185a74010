/* core/adnn: SkipNet, both gate kinds (recurrent, feed-forward).
 * - with every gate forced open the batch-1 adaptive forward equals the batch
 *   forward (and the full network's FLOPs); with the gates deciding, the two
 *   agree too and a block runs iff p_k > 0.5;
 * - a forced-closed gate really skips: the trace says so and the FLOPs drop
 *   by exactly that block's FLOPs (less its shortcut when it downsamples);
 * - FLOPs of the full network equal the METHOD.md section 4 formula;
 * - the input gradient of the p_k loss and the parameter gradients of the
 *   training objective (soft gates) match central finite differences;
 * - weights round trip; malformed weight files name the tensor;
 * - the shipped models meet the zoo's acceptance figures. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adnn/adnn.h"
#include "adnn/skipnet.h"
#include "data/dataset.h"
#include "nn/safetensors.h"
#include "util/rng.h"

#define IMG 784
#define NB  6

static adnn_model_t *new_skip(adnn_gate_kind_t kind, uint64_t seed)
{
    adnn_spec_t s;
    cr_assert_eq(adnn_spec_default(ADNN_FAMILY_SKIPNET, &s), DP_OK, "%s", dp_err_detail());
    s.gate_kind = kind;
    adnn_model_t *m = NULL;
    cr_assert_eq(adnn_model_new(&s, seed, &m), DP_OK, "%s", dp_err_detail());
    return m;
}

/* Random-ish BN statistics so inference is not trivially symmetric. */
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

static void force_all(adnn_model_t *m, int mode)
{
    for (int k = 0; k < NB; k++) cr_assert_eq(adnn_skipnet_force_gate(m, k, mode), DP_OK);
}

static int argmax(const float *z, int k)
{
    int b = 0;
    for (int j = 1; j < k; j++)
        if (z[j] > z[b]) b = j;
    return b;
}

static void check_adaptive_matches_batch(adnn_gate_kind_t kind, uint64_t seed)
{
    adnn_model_t *m = new_skip(kind, seed);
    perturb_buffers(m, seed + 1);
    const adnn_spec_t *s = adnn_model_spec(m);
    int n = 4, K = s->num_classes;
    cr_assert_eq(s->nexits, 0);
    cr_assert_eq(adnn_pk_count(m), NB);
    float x[4 * IMG], logits[4 * 10], p[4 * NB];
    fill_images(x, 4 * IMG, seed + 2);
    /* every gate forced open: the full network */
    force_all(m, ADNN_SKIP_GATE_OPEN);
    cr_assert_eq(adnn_eval_batch(m, x, n, logits), DP_OK, "%s", dp_err_detail());
    for (int i = 0; i < n; i++) {
        adnn_trace_t t;
        adnn_forward_adaptive(m, x + i * IMG, &t);
        cr_assert_eq(t.nblocks, NB);
        cr_assert_eq(t.blocks_run, NB);
        cr_assert_eq(t.exit_taken, 0);
        int best = argmax(logits + i * K, K);
        cr_assert_eq(t.pred, best, "image %d", i);
        double se = 0;
        for (int j = 0; j < K; j++) se += exp(logits[i * K + j] - logits[i * K + best]);
        cr_assert_float_eq(t.conf[0], 1.0 / se, 1e-4, "image %d", i);
        cr_assert_float_eq(t.flops_ref, adnn_flops_full(m, 0), 0.5);
        cr_assert_float_eq(t.flops_exact, adnn_flops_full(m, 1), 0.5);
    }
    /* the gates deciding: same decisions and logits, block k runs iff p_k > 0.5;
     * shift the gate bias so that the decisions differ across gates */
    force_all(m, ADNN_SKIP_GATE_AUTO);
    for (size_t i = 0; i < adnn_tensor_count(m); i++) {
        adnn_tensor_info_t ti;
        adnn_tensor_at(m, i, &ti);
        if (!strcmp(ti.name, "gate.fc.bias")) ti.data[0] = 0.0f;
    }
    double l;
    cr_assert_eq(adnn_pk_grad(m, x, n, p, &l, NULL), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(adnn_eval_batch(m, x, n, logits), DP_OK);
    for (int i = 0; i < n; i++) {
        adnn_trace_t t;
        adnn_forward_adaptive(m, x + i * IMG, &t);
        int run = 0;
        for (int k = 0; k < NB; k++) {
            cr_assert_eq(t.ran[k], p[i * NB + k] > 0.5f, "image %d gate %d p %g", i, k,
                         p[i * NB + k]);
            run += t.ran[k];
        }
        cr_assert_eq(t.blocks_run, run);
        cr_assert_eq(t.pred, argmax(logits + i * K, K), "image %d", i);
        cr_assert_leq(t.flops_ref, adnn_flops_full(m, 0) + 0.5);
    }
    adnn_model_destroy(&m);
}

Test(skipnet, adaptive_matches_batch_recurrent)
{
    check_adaptive_matches_batch(ADNN_GATE_RECURRENT, 3);
}
Test(skipnet, adaptive_matches_batch_feedforward)
{
    check_adaptive_matches_batch(ADNN_GATE_FEEDFORWARD, 4);
}

static double conv(int cin, int cout, int k, int hout)
{
    return 2.0 * cin * cout * k * k * hout * hout;
}

/* Backbone (stem, 6 blocks, GAP + linear) in the reference convention. */
static double backbone_ref(void)
{
    double f = conv(1, 16, 3, 28);
    f += conv(16, 16, 3, 14) * 2 + conv(16, 16, 1, 14);
    f += conv(16, 16, 3, 14) * 2;
    f += conv(16, 32, 3, 7) + conv(32, 32, 3, 7) + conv(16, 32, 1, 7);
    f += conv(32, 32, 3, 7) * 2;
    f += conv(32, 64, 3, 4) + conv(64, 64, 3, 4) + conv(32, 64, 1, 4);
    f += conv(64, 64, 3, 4) * 2;
    return f + 2.0 * 64 * 10;
}

static const int gate_c[NB] = {16, 16, 16, 32, 32, 64}; /* channels of each gate's input */
static const int gate_h[NB] = {28, 14, 14, 7, 7, 4};

Test(skipnet, flops_full_by_formula)
{
    adnn_model_t *m = new_skip(ADNN_GATE_RECURRENT, 1);
    double f = backbone_ref();
    /* recurrent gate: 1x1 conv C->10 on the pooled vector, LSTM(10,10), linear 10->1 */
    for (int k = 0; k < NB; k++) f += 2.0 * gate_c[k] * 10 + 2.0 * 10 * 40 * 2 + 2.0 * 10;
    cr_assert_float_eq(adnn_flops_full(m, 0), f, 0.5, "recurrent %.0f vs formula %.0f",
                       adnn_flops_full(m, 0), f);
    cr_assert_gt(adnn_flops_full(m, 1), f);
    cr_assert_lt(adnn_flops_full(m, 1), 1.2 * f);
    adnn_model_destroy(&m);

    m = new_skip(ADNN_GATE_FEEDFORWARD, 1);
    f = backbone_ref();
    /* feed-forward gate: conv3x3 s2 C->C, 1x1 conv C->2 on the pooled vector */
    for (int k = 0; k < NB; k++)
        f += conv(gate_c[k], gate_c[k], 3, (gate_h[k] - 1) / 2 + 1) + 2.0 * gate_c[k] * 2;
    cr_assert_float_eq(adnn_flops_full(m, 0), f, 0.5, "feed-forward %.0f vs formula %.0f",
                       adnn_flops_full(m, 0), f);
    cr_assert_gt(adnn_flops_full(m, 1), f);
    cr_assert_lt(adnn_flops_full(m, 1), 1.2 * f);
    adnn_model_destroy(&m);
}

/* Exact FLOPs of a basic block without shortcut: two conv+BN, one ReLU inside,
 * add + ReLU at the end. */
static double block_exact(int cin, int cout, int hout)
{
    double e = (double)cout * hout * hout;
    return conv(cin, cout, 3, hout) + conv(cout, cout, 3, hout) + 2 * 2 * e + e + 2 * e;
}

static void check_closed_gate_skips(adnn_gate_kind_t kind, uint64_t seed)
{
    adnn_model_t *m = new_skip(kind, seed);
    perturb_buffers(m, seed + 1);
    float x[IMG];
    fill_images(x, IMG, seed + 2);
    force_all(m, ADNN_SKIP_GATE_OPEN);
    adnn_trace_t full, t;
    adnn_forward_adaptive(m, x, &full);
    cr_assert_eq(full.blocks_run, NB);
    /* block 1: identity shortcut, 16 channels at 14x14 */
    cr_assert_eq(adnn_skipnet_force_gate(m, 1, ADNN_SKIP_GATE_CLOSED), DP_OK);
    adnn_forward_adaptive(m, x, &t);
    cr_assert_eq(t.ran[1], 0);
    cr_assert_eq(t.blocks_run, NB - 1);
    for (int k = 0; k < NB; k++)
        if (k != 1) cr_assert_eq(t.ran[k], 1, "block %d", k);
    cr_assert_float_eq(full.flops_ref - t.flops_ref, 2 * conv(16, 16, 3, 14), 0.5);
    cr_assert_float_eq(full.flops_exact - t.flops_exact, block_exact(16, 16, 14), 0.5);
    /* block 2 downsamples (16@14 -> 32@7): its shortcut is still computed */
    cr_assert_eq(adnn_skipnet_force_gate(m, 1, ADNN_SKIP_GATE_OPEN), DP_OK);
    cr_assert_eq(adnn_skipnet_force_gate(m, 2, ADNN_SKIP_GATE_CLOSED), DP_OK);
    adnn_forward_adaptive(m, x, &t);
    cr_assert_eq(t.ran[2], 0);
    cr_assert_eq(t.blocks_run, NB - 1);
    cr_assert_float_eq(full.flops_ref - t.flops_ref, conv(16, 32, 3, 7) + conv(32, 32, 3, 7), 0.5);
    cr_assert_float_eq(full.flops_exact - t.flops_exact, block_exact(16, 32, 7), 0.5);
    /* everything closed: stem, gates, three shortcuts and the classifier */
    force_all(m, ADNN_SKIP_GATE_CLOSED);
    adnn_forward_adaptive(m, x, &t);
    cr_assert_eq(t.blocks_run, 0);
    cr_assert_lt(t.flops_ref, 0.2 * adnn_flops_full(m, 0));
    cr_assert_geq(t.pred, 0);
    cr_assert_eq(adnn_skipnet_force_gate(m, NB, ADNN_SKIP_GATE_OPEN), DP_ERR_RANGE);
    adnn_model_destroy(&m);
}

Test(skipnet, closed_gate_really_skips_recurrent)
{
    check_closed_gate_skips(ADNN_GATE_RECURRENT, 5);
}
Test(skipnet, closed_gate_really_skips_feedforward)
{
    check_closed_gate_skips(ADNN_GATE_FEEDFORWARD, 6);
}

static double pk_loss(adnn_model_t *m, const float *x, int n)
{
    float p[2 * NB];
    double l;
    cr_assert_eq(adnn_pk_grad(m, x, n, p, &l, NULL), DP_OK);
    return l;
}

/* pattern: forced decision per gate, or NULL (the gates decide) */
static void check_pk_grad(adnn_gate_kind_t kind, uint64_t seed, const int *pattern)
{
    adnn_model_t *m = new_skip(kind, seed);
    perturb_buffers(m, seed + 1);
    if (pattern)
        for (int k = 0; k < NB; k++) cr_assert_eq(adnn_skipnet_force_gate(m, k, pattern[k]), DP_OK);
    int n = 2;
    float x[2 * IMG], dx[2 * IMG], xp[2 * IMG], p[2 * NB];
    fill_images(x, 2 * IMG, seed + 2);
    double l;
    cr_assert_eq(adnn_pk_grad(m, x, n, p, &l, dx), DP_OK, "%s", dp_err_detail());
    double expect = 0;
    for (int i = 0; i < n * NB; i++) {
        cr_assert(p[i] > 0 && p[i] < 1, "p[%d] = %g", i, p[i]);
        if (!pattern) /* keep the hard decisions away from the probe steps */
            cr_assert(fabs(p[i] - 0.5) > 1e-3, "p[%d] = %g too close to the threshold", i, p[i]);
        expect -= log(p[i]);
    }
    cr_assert_float_eq(l, expect / (n * NB), 1e-5);
    dp_rng_t r;
    dp_rng_seed(&r, seed + 3);
    const double h = 2e-3;
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
                  "kind %d trial %d: finite difference %.6g, gradient %.6g", kind, trial, fd, dot);
    }
    adnn_model_destroy(&m);
}

static const int mixed[NB] = {1, 0, 0, 1, 0, 1}; /* block 1 identity-skipped, 2 and 4 by shortcut */

Test(skipnet, pk_input_gradient_recurrent)
{
    check_pk_grad(ADNN_GATE_RECURRENT, 11, NULL);
    check_pk_grad(ADNN_GATE_RECURRENT, 12, mixed);
}
Test(skipnet, pk_input_gradient_feedforward)
{
    check_pk_grad(ADNN_GATE_FEEDFORWARD, 13, NULL);
    check_pk_grad(ADNN_GATE_FEEDFORWARD, 14, mixed);
}

static void dl_sum_p(const float *p, int n, int k, float *dp, void *arg)
{
    (void)p, (void)arg;
    for (int i = 0; i < n * k; i++) dp[i] = 1.0f;
}

Test(skipnet, pk_vjp_matches_pk_grad)
{
    /* L = sum p: dL/dx = sum_k dp_k/dx; L = -mean log p: its dp is -1/(nK p) */
    adnn_model_t *m = new_skip(ADNN_GATE_RECURRENT, 15);
    perturb_buffers(m, 16);
    float x[IMG], dx[IMG], dv[IMG], p[NB], q[NB];
    fill_images(x, IMG, 17);
    double l;
    cr_assert_eq(adnn_pk_grad(m, x, 1, p, &l, dx), DP_OK);
    cr_assert_eq(adnn_pk_vjp(m, x, 1, dl_sum_p, NULL, q, dv), DP_OK);
    for (int k = 0; k < NB; k++) cr_assert_float_eq(p[k], q[k], 1e-7);
    /* with dp = 1 everywhere dv = sum dp/dx; dx = -(1/K) sum (1/p) dp/dx: both
     * nonzero and finite */
    double nv = 0, nx = 0;
    for (int i = 0; i < IMG; i++) nv += fabs(dv[i]), nx += fabs(dx[i]);
    cr_assert(nv > 0 && isfinite(nv) && nx > 0 && isfinite(nx));
    adnn_model_destroy(&m);
}

/* Parameter gradients of the training objective (soft gates at the first
 * steps, BatchNorm in training mode) on a small SkipNet, against central
 * differences along random directions. */
static void check_train_grad(adnn_gate_kind_t kind, uint64_t seed)
{
    adnn_spec_t s;
    cr_assert_eq(adnn_spec_default(ADNN_FAMILY_SKIPNET, &s), DP_OK);
    s.gate_kind = kind;
    s.stem_width = 4;
    s.widths[0] = 4, s.widths[1] = 6, s.widths[2] = 8;
    s.blocks[0] = 1, s.blocks[1] = 2, s.blocks[2] = 1;
    s.gate_dim = 5;
    adnn_model_t *m = NULL;
    cr_assert_eq(adnn_model_new(&s, seed, &m), DP_OK, "%s", dp_err_detail());
    int n = 4;
    float x[4 * IMG];
    int32_t y[4] = {1, 3, 5, 7};
    fill_images(x, 4 * IMG, seed + 1);
    double l0;
    cr_assert_eq(adnn_train_step(m, x, y, n, &l0, NULL), DP_OK, "%s", dp_err_detail());
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
    dp_rng_seed(&r, seed + 2);
    const double h = 1e-4;
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

Test(skipnet, train_param_gradient_recurrent) { check_train_grad(ADNN_GATE_RECURRENT, 21); }
Test(skipnet, train_param_gradient_feedforward) { check_train_grad(ADNN_GATE_FEEDFORWARD, 22); }

static void tmp_prefix(char *buf, size_t n, const char *tag)
{
    snprintf(buf, n, "/tmp/dp_test_skipnet_%s_%d", tag, (int)getpid());
}

static void write_variant(adnn_model_t *m, const char *path, const char *skip, const char *reshape)
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
    cr_assert_eq(st_writer_write(w, path), DP_OK);
    st_writer_destroy(&w);
}

static void check_weights(adnn_gate_kind_t kind, uint64_t seed, const char *missing,
                          const char *reshaped)
{
    adnn_model_t *m = new_skip(kind, seed), *l = NULL;
    perturb_buffers(m, seed + 1);
    char pre[256], path[300];
    tmp_prefix(pre, sizeof pre, kind == ADNN_GATE_RECURRENT ? "rnn" : "ff");
    cr_assert_eq(adnn_model_save(m, pre), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(adnn_model_load(pre, &l), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(adnn_model_spec(l)->family, ADNN_FAMILY_SKIPNET);
    cr_assert_eq(adnn_model_spec(l)->gate_kind, kind);
    cr_assert_eq(adnn_tensor_count(l), adnn_tensor_count(m));
    for (size_t i = 0; i < adnn_tensor_count(m); i++) {
        adnn_tensor_info_t a, b;
        adnn_tensor_at(m, i, &a);
        adnn_tensor_at(l, i, &b);
        cr_assert_str_eq(a.name, b.name);
        cr_assert_eq(memcmp(a.data, b.data, a.numel * sizeof(float)), 0, "%s", a.name);
    }
    /* same decisions after the round trip */
    float x[IMG];
    fill_images(x, IMG, seed + 2);
    adnn_trace_t t1, t2;
    adnn_forward_adaptive(m, x, &t1);
    adnn_forward_adaptive(l, x, &t2);
    cr_assert_eq(memcmp(t1.ran, t2.ran, sizeof t1.ran), 0);
    cr_assert_eq(t1.pred, t2.pred);
    adnn_model_destroy(&l);

    snprintf(path, sizeof path, "%s.safetensors", pre);
    write_variant(m, path, missing, NULL);
    cr_assert_eq(adnn_weights_load(m, path), DP_ERR_NOTFOUND);
    cr_assert(strstr(dp_err_detail(), missing), "%s", dp_err_detail());
    write_variant(m, path, NULL, reshaped);
    cr_assert_eq(adnn_weights_load(m, path), DP_ERR_MISMATCH);
    cr_assert(strstr(dp_err_detail(), reshaped), "%s", dp_err_detail());
    /* truncated */
    write_variant(m, path, NULL, NULL);
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fclose(f);
    cr_assert_eq(truncate(path, len - 100), 0);
    cr_assert_eq(adnn_weights_load(m, path), DP_ERR_TRUNCATED);
    cr_assert(strstr(dp_err_detail(), path), "%s", dp_err_detail());
    unlink(path);
    snprintf(path, sizeof path, "%s.pb", pre);
    unlink(path);
    adnn_model_destroy(&m);
}

Test(skipnet, weights_round_trip_and_malformed_recurrent)
{
    check_weights(ADNN_GATE_RECURRENT, 31, "gate.rnn.weight_hh_l0", "gates.2.proj.weight");
}
Test(skipnet, weights_round_trip_and_malformed_feedforward)
{
    check_weights(ADNN_GATE_FEEDFORWARD, 32, "gates.3.c.bn.running_var", "gates.5.fc.weight");
}

/* A shipped model loads and meets the zoo's acceptance figures on the first
 * 2,000 Fashion-MNIST test images (skipped when the dataset or model is absent). */
static void check_shipped(const char *prefix, adnn_gate_kind_t kind)
{
    const char *img = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
    const char *lbl = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz";
    char pb[512];
    snprintf(pb, sizeof pb, "%s.pb", prefix);
    if (access(img, R_OK) != 0) cr_skip_test("Fashion-MNIST not installed");
    if (access(pb, R_OK) != 0) cr_skip_test("%s not shipped", pb);
    dp_dataset_t *d = NULL;
    cr_assert_eq(dp_dataset_load_idx(img, lbl, &d), DP_OK, "%s", dp_err_detail());
    adnn_model_t *m = NULL;
    cr_assert_eq(adnn_model_load(prefix, &m), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(adnn_model_spec(m)->gate_kind, kind);
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
    cr_assert_geq((double)correct / n, 0.90, "accuracy %g", (double)correct / n);
    cr_assert(sum / n >= 0.30 && sum / n <= 0.80, "mean executed fraction %g", sum / n);
    cr_assert_lt(lo + 0.1, hi, "no per-input spread: %g .. %g", lo, hi);
    adnn_model_destroy(&m);
    dp_dataset_destroy(&d);
}

Test(skipnet, shipped_skipnet, .timeout = 120)
{
    check_shipped(DP_SOURCE_DIR "/models/skipnet", ADNN_GATE_RECURRENT);
}
Test(skipnet, shipped_skipnet_ff, .timeout = 120)
{
    check_shipped(DP_SOURCE_DIR "/models/skipnet_ff", ADNN_GATE_FEEDFORWARD);
}
