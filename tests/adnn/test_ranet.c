/* core/adnn: RANet (3 scales, dense scale flows, coarse-to-fine fusion).
 * - the batch-1 adaptive forward agrees with the batch forward when no exit
 *   can fire (tau > 1);
 * - an early exit really stops: the finer flows are not computed;
 * - FLOPs of the full network by formula (reference convention);
 * - the input gradient of the p_k loss and the parameter gradients of the
 *   training objective (through the dense concatenations and the nearest
 *   upsampling of the fusion) match central finite differences;
 * - weights round trip; malformed weight files fail naming the tensor;
 * - the shipped model meets the zoo's acceptance figures. */
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

#define IMG (28 * 28)

static adnn_model_t *new_model(float tau, uint64_t seed)
{
    adnn_spec_t s;
    cr_assert_eq(adnn_spec_default(ADNN_FAMILY_RANET, &s), DP_OK);
    s.exit_tau = tau > 1.0f ? 1.0f : tau;
    adnn_model_t *m = NULL;
    cr_assert_eq(adnn_model_new(&s, seed, &m), DP_OK, "%s", dp_err_detail());
    if (tau > 1.0f) ((adnn_spec_t *)adnn_model_spec(m))->exit_tau = tau; /* exits disabled */
    return m;
}

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

Test(ranet, adaptive_matches_batch_with_exits_disabled)
{
    adnn_model_t *m = new_model(1.5f, 3);
    perturb_buffers(m, 4);
    const adnn_spec_t *s = adnn_model_spec(m);
    int n = 3, E = s->nexits, K = s->num_classes;
    float x[3 * IMG], *logits = malloc(sizeof(float) * (size_t)n * (E + 1) * K);
    fill_images(x, sizeof x / sizeof x[0], 5);
    cr_assert_eq(adnn_eval_batch(m, x, n, logits), DP_OK);
    for (int i = 0; i < n; i++) {
        adnn_trace_t t;
        adnn_forward_adaptive(m, x + i * IMG, &t);
        cr_assert_eq(t.blocks_run, t.nblocks);
        cr_assert_eq(t.nblocks, 6);
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

static int half(int h) { return (h + 2 - 3) / 2 + 1; }

/* RANet exit head on c channels at res: 2 x conv3x3 s2 -> 32, GAP, linear. */
static double head(int c, int res)
{
    return conv(c, 32, 3, half(res)) + conv(32, 32, 3, half(half(res))) + 2.0 * 32 * 10;
}

static double base_flops(void)
{
    return conv(1, 16, 3, 14) + conv(16, 16, 3, 7) + conv(16, 16, 3, 4);
}

Test(ranet, flops_full_by_formula)
{
    adnn_model_t *m = new_model(0.9f, 1);
    /* base cascade 1->16 @14, 16->16 @7, 16->16 @4. Flows (coarsest first), growth
     * 16, 16, 8; a layer's conv sees own features + the coarser flow's output:
     * @4: 16->16, 32->16; @7: 16+32->16, 32+48->16; @14: 16+32->8, 24+48->8.
     * Own channels after each block: 32, 48 @4; 32, 48 @7; 24, 32 @14. */
    double f = base_flops();
    f += conv(16, 16, 3, 4) + conv(32, 16, 3, 4);
    f += conv(48, 16, 3, 7) + conv(80, 16, 3, 7);
    f += conv(48, 8, 3, 14) + conv(72, 8, 3, 14);
    f += head(32, 4) + head(48, 4) + head(32, 7) + head(48, 7) + head(24, 14) + head(32, 14);
    cr_assert_float_eq(adnn_flops_full(m, 0), f, 0.5, "reference %.0f vs formula %.0f",
                       adnn_flops_full(m, 0), f);
    /* no depthwise convs here: the exact count only adds BN, ReLU, pooling, biases */
    cr_assert_gt(adnn_flops_full(m, 1), f);
    cr_assert_lt(adnn_flops_full(m, 1), 1.05 * f);
    adnn_model_destroy(&m);
}

Test(ranet, early_exit_really_stops)
{
    adnn_model_t *m = new_model(0.05f, 2); /* tau below 1/K: exit 0 always fires */
    float x[IMG];
    fill_images(x, IMG, 9);
    adnn_trace_t t;
    adnn_forward_adaptive(m, x, &t);
    const adnn_spec_t *s = adnn_model_spec(m);
    cr_assert_eq(t.exit_taken, 0);
    cr_assert_eq(t.blocks_run, s->exit_after[0] + 1);
    for (int b = s->exit_after[0] + 1; b < t.nblocks; b++) cr_assert_eq(t.ran[b], 0, "block %d", b);
    for (int k = 1; k <= s->nexits; k++) cr_assert_eq(t.conf[k], 0.0f, "exit %d", k);
    double expect = base_flops() + conv(16, 16, 3, 4) + head(32, 4);
    cr_assert_float_eq(t.flops_ref, expect, 0.5);
    cr_assert_lt(t.flops_ref, 0.10 * adnn_flops_full(m, 0));
    cr_assert_lt(t.flops_exact, 0.10 * adnn_flops_full(m, 1));
    adnn_model_destroy(&m);
}

/* A later exit: find an image whose exit k >= 2 (a finer flow) is more
 * confident than every exit before it, set tau to that confidence: the
 * network must stop exactly at exit k, never compute the layers after it,
 * and count exactly the prefix's FLOPs. */
Test(ranet, stops_at_a_later_exit)
{
    adnn_model_t *m = new_model(1.5f, 7);
    perturb_buffers(m, 8);
    adnn_spec_t *s = (adnn_spec_t *)adnn_model_spec(m);
    /* per block: the layer conv, then the exit head on it (formula test above) */
    double layer[6] = {conv(16, 16, 3, 4), conv(32, 16, 3, 4), conv(48, 16, 3, 7),
                       conv(80, 16, 3, 7), conv(48, 8, 3, 14), conv(72, 8, 3, 14)};
    double hd[6] = {head(32, 4), head(48, 4), head(32, 7), head(48, 7), head(24, 14), head(32, 14)};
    float x[IMG];
    int found = 0;
    for (int img = 0; img < 200 && !found; img++) {
        fill_images(x, IMG, 100 + (uint64_t)img);
        adnn_trace_t t;
        s->exit_tau = 1.5f;
        adnn_forward_adaptive(m, x, &t);
        float best = t.conf[0];
        for (int k = 1; k < s->nexits; k++) {
            if (t.conf[k] > best && k >= 2) {
                s->exit_tau = t.conf[k];
                adnn_trace_t u;
                adnn_forward_adaptive(m, x, &u);
                cr_assert_eq(u.exit_taken, k, "image %d", img);
                cr_assert_eq(u.blocks_run, k + 1);
                for (int b = k + 1; b < u.nblocks; b++) cr_assert_eq(u.ran[b], 0, "block %d", b);
                double expect = base_flops();
                for (int b = 0; b <= k; b++) expect += layer[b] + hd[b];
                cr_assert_float_eq(u.flops_ref, expect, 0.5);
                cr_assert_lt(u.flops_exact, adnn_flops_full(m, 1));
                found = 1;
                break;
            }
            if (t.conf[k] > best) best = t.conf[k];
        }
    }
    cr_assert(found, "no image with a later exit more confident than the earlier ones");
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
    adnn_model_t *m = new_model(tau, seed);
    perturb_buffers(m, seed + 1);
    int n = 2, K = adnn_pk_count(m);
    cr_assert_eq(K, 5);
    float x[2 * IMG], dx[2 * IMG], xp[2 * IMG], p[2 * 5];
    fill_images(x, 2 * IMG, seed + 2);
    double l;
    cr_assert_eq(adnn_pk_grad(m, x, n, p, &l, dx), DP_OK);
    double expect = 0;
    for (int i = 0; i < n * K; i++) {
        cr_assert(p[i] > 0 && p[i] <= 1, "p[%d] = %g", i, p[i]);
        expect -= log(p[i]);
    }
    cr_assert_float_eq(l, expect / (n * K), 1e-5);
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
                  "tau %g trial %d: finite difference %.6g, gradient %.6g", tau, trial, fd, dot);
    }
    adnn_model_destroy(&m);
}

Test(ranet, pk_input_gradient_no_exit_fires) { check_pk_grad(1.0f, 11); }

Test(ranet, pk_input_gradient_first_exit_fires)
{
    adnn_model_t *m = new_model(0.05f, 12);
    float x[IMG], dx[IMG], p[5];
    fill_images(x, IMG, 13);
    double l;
    cr_assert_eq(adnn_pk_grad(m, x, 1, p, &l, dx), DP_OK);
    cr_assert(p[0] < 1.0f);
    for (int k = 1; k < 5; k++) cr_assert_eq(p[k], 1.0f);
    adnn_model_destroy(&m);
    check_pk_grad(0.05f, 14);
}

/* dL/dp of L = -(1/(nK)) sum log p: adnn_pk_vjp must then equal adnn_pk_grad. */
static void dlog(const float *p, int n, int k, float *dp, void *arg)
{
    (void)arg;
    for (int i = 0; i < n * k; i++) dp[i] = -1.0f / ((float)(n * k) * p[i]);
}

Test(ranet, pk_vjp_matches_pk_grad)
{
    for (int trial = 0; trial < 2; trial++) {
        adnn_model_t *m = new_model(trial ? 0.2f : 1.0f, 61 + trial);
        perturb_buffers(m, 62);
        float x[2 * IMG], g1[2 * IMG], g2[2 * IMG], p1[2 * 5], p2[2 * 5];
        fill_images(x, 2 * IMG, 63);
        double l;
        cr_assert_eq(adnn_pk_grad(m, x, 2, p1, &l, g1), DP_OK);
        cr_assert_eq(adnn_pk_vjp(m, x, 2, dlog, NULL, p2, g2), DP_OK, "%s", dp_err_detail());
        for (int i = 0; i < 2 * 5; i++) cr_assert_float_eq(p1[i], p2[i], 1e-6, "p[%d]", i);
        double num = 0, den = 0;
        for (int i = 0; i < 2 * IMG; i++) {
            num += ((double)g1[i] - g2[i]) * ((double)g1[i] - g2[i]);
            den += (double)g1[i] * g1[i];
        }
        cr_assert(den > 0 && num <= 1e-8 * den, "relative error %g", sqrt(num / den));
        adnn_model_destroy(&m);
    }
}

Test(ranet, train_param_gradient)
{
    adnn_spec_t s;
    cr_assert_eq(adnn_spec_default(ADNN_FAMILY_RANET, &s), DP_OK);
    s.stem_width = 4;
    s.widths[0] = 3, s.widths[1] = 4, s.widths[2] = 2;
    s.blocks[0] = 2, s.blocks[1] = 1, s.blocks[2] = 2; /* flow 2 layer 1 fuses flow 1's last */
    s.nexits = 3;
    s.exit_after[0] = 0, s.exit_after[1] = 2, s.exit_after[2] = 3;
    s.exit_weights[0] = 0.3f, s.exit_weights[1] = 0.6f, s.exit_weights[2] = 0.8f;
    s.exit_weights[3] = 1.0f;
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

static void tmp_prefix(char *buf, size_t n, const char *tag)
{
    snprintf(buf, n, "/tmp/dp_test_ranet_%s_%d", tag, (int)getpid());
}

Test(ranet, weights_round_trip)
{
    adnn_model_t *m = new_model(0.7f, 21), *l = NULL;
    perturb_buffers(m, 22);
    char pre[256], p[300];
    tmp_prefix(pre, sizeof pre, "rt");
    cr_assert_eq(adnn_model_save(m, pre), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(adnn_model_load(pre, &l), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(adnn_model_spec(l)->family, ADNN_FAMILY_RANET);
    cr_assert_eq(adnn_tensor_count(l), adnn_tensor_count(m));
    for (size_t i = 0; i < adnn_tensor_count(m); i++) {
        adnn_tensor_info_t a, b;
        adnn_tensor_at(m, i, &a);
        adnn_tensor_at(l, i, &b);
        cr_assert_str_eq(a.name, b.name);
        cr_assert_eq(memcmp(a.data, b.data, a.numel * sizeof(float)), 0, "%s", a.name);
    }
    float x[IMG];
    fill_images(x, IMG, 23);
    adnn_trace_t ta, tb;
    adnn_forward_adaptive(m, x, &ta);
    adnn_forward_adaptive(l, x, &tb);
    cr_assert_eq(ta.pred, tb.pred);
    cr_assert_eq(ta.exit_taken, tb.exit_taken);
    snprintf(p, sizeof p, "%s.pb", pre);
    unlink(p);
    snprintf(p, sizeof p, "%s.safetensors", pre);
    unlink(p);
    adnn_model_destroy(&m);
    adnn_model_destroy(&l);
}

static void write_variant(adnn_model_t *m, const char *path, const char *skip, const char *reshape)
{
    st_writer_t *w = st_writer_new();
    float one = 1.0f;
    int64_t s1[1] = {1};
    for (size_t i = 0; i < adnn_tensor_count(m); i++) {
        adnn_tensor_info_t t;
        adnn_tensor_at(m, i, &t);
        if (skip && !strcmp(t.name, skip)) continue;
        if (reshape && !strcmp(t.name, reshape))
            cr_assert_eq(st_writer_add_f32(w, t.name, 1, s1, &one), DP_OK);
        else
            cr_assert_eq(st_writer_add_f32(w, t.name, t.ndim, t.shape, t.data), DP_OK);
    }
    cr_assert_eq(st_writer_write(w, path), DP_OK);
    st_writer_destroy(&w);
}

Test(ranet, malformed_weights_name_the_tensor)
{
    adnn_model_t *m = new_model(0.9f, 31);
    char pre[256], path[300];
    tmp_prefix(pre, sizeof pre, "bad");
    snprintf(path, sizeof path, "%s.safetensors", pre);
    write_variant(m, path, "blocks.2.bn.running_var", NULL);
    cr_assert_eq(adnn_weights_load(m, path), DP_ERR_NOTFOUND);
    cr_assert(strstr(dp_err_detail(), "blocks.2.bn.running_var"), "%s", dp_err_detail());
    write_variant(m, path, NULL, "exits.3.c2.conv.weight");
    cr_assert_eq(adnn_weights_load(m, path), DP_ERR_MISMATCH);
    cr_assert(strstr(dp_err_detail(), "exits.3.c2.conv.weight"), "%s", dp_err_detail());
    write_variant(m, path, NULL, NULL);
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fclose(f);
    cr_assert_eq(truncate(path, len - 100), 0);
    cr_assert_eq(adnn_weights_load(m, path), DP_ERR_TRUNCATED);
    cr_assert(strstr(dp_err_detail(), path), "%s", dp_err_detail());
    unlink(path);
    adnn_model_destroy(&m);
}

/* The shipped model meets the zoo's acceptance figures on the first 2,000
 * Fashion-MNIST test images (skipped when the dataset is absent). */
Test(ranet, shipped_model, .timeout = 120)
{
    const char *img = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
    const char *lbl = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz";
    if (access(img, R_OK) != 0) cr_skip_test("Fashion-MNIST not installed");
    if (access(DP_SOURCE_DIR "/models/ranet.pb", R_OK) != 0)
        cr_skip_test("models/ranet not shipped yet");
    dp_dataset_t *d = NULL;
    cr_assert_eq(dp_dataset_load_idx(img, lbl, &d), DP_OK, "%s", dp_err_detail());
    adnn_model_t *m = NULL;
    cr_assert_eq(adnn_model_load(DP_SOURCE_DIR "/models/ranet", &m), DP_OK, "%s", dp_err_detail());
    double full = adnn_flops_full(m, 0), sum = 0, lo = 1, hi = 0;
    int correct = 0, n = 2000;
    for (int i = 0; i < n; i++) {
        adnn_trace_t t;
        adnn_forward_adaptive(m, d->images + (size_t)i * IMG, &t);
        correct += t.pred == d->labels[i];
        double fr = t.flops_ref / full;
        sum += fr;
        lo = fr < lo ? fr : lo;
        hi = fr > hi ? fr : hi;
    }
    cr_assert_geq((double)correct / n, 0.88);
    cr_assert(sum / n >= 0.30 && sum / n <= 0.80, "mean executed fraction %g", sum / n);
    cr_assert_lt(lo, 0.5 * hi, "no per-input spread: %g .. %g", lo, hi);
    adnn_model_destroy(&m);
    dp_dataset_destroy(&d);
}
