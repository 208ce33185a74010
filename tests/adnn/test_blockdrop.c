/* core/adnn: BlockDrop.
 * - with every block forced on, the batch-1 adaptive forward agrees with the
 *   batch forward (every block run);
 * - a dropped block really is not computed: the trace says so and the FLOPs
 *   fall by exactly that block's FLOPs (its shortcut projection stays when it
 *   downsamples);
 * - FLOPs of the full network (policy included) equal the METHOD.md formula;
 * - p_k are the policy sigmoids, depend on the policy only, and the input
 *   gradient of their loss matches central finite differences;
 * - weights round trip; malformed weight files name the tensor;
 * - the shipped model meets the zoo's figures (skipped without the data). */
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

static adnn_model_t *new_bd(uint64_t seed)
{
    adnn_spec_t s;
    cr_assert_eq(adnn_spec_default(ADNN_FAMILY_BLOCKDROP, &s), DP_OK, "%s", dp_err_detail());
    adnn_model_t *m = NULL;
    cr_assert_eq(adnn_model_new(&s, seed, &m), DP_OK, "%s", dp_err_detail());
    return m;
}

static float *tensor(adnn_model_t *m, const char *name, size_t *numel)
{
    for (size_t i = 0; i < adnn_tensor_count(m); i++) {
        adnn_tensor_info_t t;
        adnn_tensor_at(m, i, &t);
        if (!strcmp(t.name, name)) {
            if (numel) *numel = t.numel;
            return t.data;
        }
    }
    cr_assert_fail("no tensor %s", name);
    return NULL;
}

/* Policy forced to a fixed mask: fc weights 0, bias +-10. */
static void force_mask(adnn_model_t *m, const int *on, int k)
{
    size_t nw;
    float *w = tensor(m, "policy.fc.weight", &nw), *b = tensor(m, "policy.fc.bias", NULL);
    memset(w, 0, nw * sizeof(float));
    for (int i = 0; i < k; i++) b[i] = on[i] ? 10.0f : -10.0f;
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

static double conv(int cin, int cout, int k, int hout)
{
    return 2.0 * cin * cout * k * k * hout * hout;
}

Test(blockdrop, all_blocks_on_matches_batch)
{
    adnn_model_t *m = new_bd(3);
    perturb_buffers(m, 4);
    int K = adnn_pk_count(m), on[6] = {1, 1, 1, 1, 1, 1};
    cr_assert_eq(K, 6);
    force_mask(m, on, K);
    int n = 4, C = adnn_model_spec(m)->num_classes;
    float x[4 * IMG], logits[4 * 10];
    fill_images(x, sizeof x / sizeof x[0], 5);
    cr_assert_eq(adnn_eval_batch(m, x, n, logits), DP_OK, "%s", dp_err_detail());
    for (int i = 0; i < n; i++) {
        adnn_trace_t t;
        adnn_forward_adaptive(m, x + i * IMG, &t);
        cr_assert_eq(t.nblocks, 6);
        cr_assert_eq(t.blocks_run, 6);
        const float *z = logits + i * C;
        int best = 0;
        for (int j = 1; j < C; j++)
            if (z[j] > z[best]) best = j;
        double se = 0;
        for (int j = 0; j < C; j++) se += exp(z[j] - z[best]);
        cr_assert_eq(t.pred, best, "image %d", i);
        cr_assert_float_eq(t.conf[0], 1.0 / se, 1e-4, "image %d", i);
        cr_assert_float_eq(t.flops_ref, adnn_flops_full(m, 0), 0.5);
        cr_assert_float_eq(t.flops_exact, adnn_flops_full(m, 1), 0.5);
    }
    adnn_model_destroy(&m);
}

Test(blockdrop, flops_full_by_formula)
{
    adnn_model_t *m = new_bd(1);
    /* policy (width 8): conv3x3 s2 1->8 at 14; block 8->16 s2 at 7; block 16->32 s2
     * at 4 (both with 1x1 shortcuts); GAP + linear 32 -> 6 */
    double f = conv(1, 8, 3, 14);
    f += conv(8, 16, 3, 7) + conv(16, 16, 3, 7) + conv(8, 16, 1, 7);
    f += conv(16, 32, 3, 4) + conv(32, 32, 3, 4) + conv(16, 32, 1, 4);
    f += 2.0 * 32 * 6;
    /* backbone: stem 1->16 at 28; blocks 16@14 x2, 32@7 x2, 64@4 x2; GAP + linear */
    f += conv(1, 16, 3, 28);
    f += conv(16, 16, 3, 14) * 2 + conv(16, 16, 1, 14) + conv(16, 16, 3, 14) * 2;
    f += conv(16, 32, 3, 7) + conv(32, 32, 3, 7) + conv(16, 32, 1, 7) + conv(32, 32, 3, 7) * 2;
    f += conv(32, 64, 3, 4) + conv(64, 64, 3, 4) + conv(32, 64, 1, 4) + conv(64, 64, 3, 4) * 2;
    f += 2.0 * 64 * 10;
    cr_assert_float_eq(adnn_flops_full(m, 0), f, 0.5, "reference %.0f vs formula %.0f",
                       adnn_flops_full(m, 0), f);
    cr_assert_gt(adnn_flops_full(m, 1), f);
    cr_assert_lt(adnn_flops_full(m, 1), 1.2 * f);
    adnn_model_destroy(&m);
}

Test(blockdrop, dropped_block_is_not_computed)
{
    adnn_model_t *m = new_bd(2);
    float x[IMG];
    fill_images(x, IMG, 9);
    double full = adnn_flops_full(m, 0), full_x = adnn_flops_full(m, 1);
    adnn_trace_t t;

    /* block 1 (16 channels at 14x14, identity shortcut) dropped: x = x */
    int on1[6] = {1, 0, 1, 1, 1, 1};
    force_mask(m, on1, 6);
    adnn_forward_adaptive(m, x, &t);
    cr_assert_eq(t.blocks_run, 5);
    for (int b = 0; b < 6; b++) cr_assert_eq(t.ran[b], b != 1, "block %d", b);
    cr_assert_float_eq(t.flops_ref, full - 2 * conv(16, 16, 3, 14), 0.5);
    /* exact: two convs, two BNs (2/element), the inner ReLU, the add and the ReLU */
    cr_assert_float_eq(t.flops_exact, full_x - 2 * conv(16, 16, 3, 14) - 7.0 * 16 * 196, 0.5);

    /* block 2 (downsampling 16->32): its 1x1 projection still runs */
    int on2[6] = {1, 1, 0, 1, 1, 1};
    force_mask(m, on2, 6);
    adnn_forward_adaptive(m, x, &t);
    cr_assert_eq(t.ran[2], 0);
    cr_assert_eq(t.blocks_run, 5);
    cr_assert_float_eq(t.flops_ref, full - conv(16, 32, 3, 7) - conv(32, 32, 3, 7), 0.5);

    /* nothing runs: policy, stem, the three projections and the classifier */
    int off[6] = {0};
    force_mask(m, off, 6);
    adnn_forward_adaptive(m, x, &t);
    cr_assert_eq(t.blocks_run, 0);
    double pol = conv(1, 8, 3, 14) + conv(8, 16, 3, 7) + conv(16, 16, 3, 7) + conv(8, 16, 1, 7) +
                 conv(16, 32, 3, 4) + conv(32, 32, 3, 4) + conv(16, 32, 1, 4) + 2.0 * 32 * 6;
    double expect = pol + conv(1, 16, 3, 28) + conv(16, 16, 1, 14) + conv(16, 32, 1, 7) +
                    conv(32, 64, 1, 4) + 2.0 * 64 * 10;
    cr_assert_float_eq(t.flops_ref, expect, 0.5);
    cr_assert(t.pred >= 0 && t.pred < 10);
    adnn_model_destroy(&m);
}

static double pk_loss(adnn_model_t *m, const float *x, int n)
{
    float p[2 * ADNN_MAX_BLOCKS];
    double l;
    cr_assert_eq(adnn_pk_grad(m, x, n, p, &l, NULL), DP_OK);
    return l;
}

Test(blockdrop, pk_input_gradient)
{
    adnn_model_t *m = new_bd(11);
    perturb_buffers(m, 12);
    int n = 2, K = adnn_pk_count(m);
    float x[2 * IMG], dx[2 * IMG], xp[2 * IMG], p[2 * 6], p2[2 * 6];
    fill_images(x, 2 * IMG, 13);
    double l;
    cr_assert_eq(adnn_pk_grad(m, x, n, p, &l, dx), DP_OK, "%s", dp_err_detail());
    double expect = 0;
    for (int i = 0; i < n * K; i++) {
        cr_assert(p[i] > 0 && p[i] < 1, "p[%d] = %g", i, p[i]);
        expect -= log(p[i]);
    }
    cr_assert_float_eq(l, expect / (n * K), 1e-5);
    /* p_k is the adaptive forward's decision */
    adnn_trace_t t;
    adnn_forward_adaptive(m, x, &t);
    for (int k = 0; k < K; k++) cr_assert_eq(t.ran[k], p[k] >= 0.5f, "block %d p %g", k, p[k]);
    /* p_k depends on the policy only: changing the backbone leaves it alone */
    size_t nw;
    float *w = tensor(m, "blocks.3.c1.conv.weight", &nw);
    for (size_t j = 0; j < nw; j++) w[j] *= -2.0f;
    cr_assert_eq(adnn_pk_grad(m, x, n, p2, &l, NULL), DP_OK);
    cr_assert_eq(memcmp(p, p2, sizeof p), 0);
    /* directional derivatives along random directions, central differences */
    dp_rng_t r;
    dp_rng_seed(&r, 14);
    const double h = 1e-3;
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
                  "trial %d: finite difference %.6g, gradient %.6g", trial, fd, dot);
    }
    adnn_model_destroy(&m);
}

/* dL/dp of L = -(1/(nK)) sum log p: pk_vjp must then agree with pk_grad. */
static void dlogp(const float *p, int n, int k, float *dp, void *arg)
{
    (void)arg;
    for (int i = 0; i < n * k; i++) dp[i] = -1.0f / ((float)(n * k) * p[i]);
}

Test(blockdrop, pk_vjp_matches_pk_grad)
{
    adnn_model_t *m = new_bd(15);
    perturb_buffers(m, 16);
    float x[2 * IMG], dx[2 * IMG], dx2[2 * IMG], p[12], p2[12];
    fill_images(x, 2 * IMG, 17);
    double l;
    cr_assert_eq(adnn_pk_grad(m, x, 2, p, &l, dx), DP_OK);
    cr_assert_eq(adnn_pk_vjp(m, x, 2, dlogp, NULL, p2, dx2), DP_OK, "%s", dp_err_detail());
    for (int i = 0; i < 12; i++) cr_assert_float_eq(p[i], p2[i], 1e-6);
    for (int i = 0; i < 2 * IMG; i++)
        cr_assert_float_eq(dx[i], dx2[i], 1e-5 * (fabs(dx[i]) + 1e-3), "%d: %g vs %g", i, dx[i],
                           dx2[i]);
    adnn_model_destroy(&m);
}

Test(blockdrop, training_step_updates_both_networks)
{
    adnn_model_t *m = new_bd(41);
    int n = 16;
    float x[16 * IMG];
    int32_t y[16];
    fill_images(x, 16 * IMG, 42);
    for (int i = 0; i < n; i++) y[i] = i % 10;
    double first = 0, loss = 0;
    for (int step = 0; step < 30; step++) {
        int c;
        cr_assert_eq(adnn_train_step(m, x, y, n, &loss, &c), DP_OK, "%s", dp_err_detail());
        cr_assert(isfinite(loss) && c >= 0 && c <= n);
        if (step == 0) first = loss;
        adnn_adam_step(m, 3e-3f);
    }
    cr_assert_lt(loss, 0.5 * first, "loss %g after 30 steps, %g at first", loss, first);
    adnn_model_destroy(&m);
}

static void tmp_prefix(char *buf, size_t n, const char *tag)
{
    snprintf(buf, n, "/tmp/dp_test_blockdrop_%s_%d", tag, (int)getpid());
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

Test(blockdrop, weights_round_trip_and_malformed_files)
{
    adnn_model_t *m = new_bd(21), *l = NULL;
    perturb_buffers(m, 22);
    char pre[256], path[300];
    tmp_prefix(pre, sizeof pre, "rt");
    cr_assert_eq(adnn_model_save(m, pre), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(adnn_model_load(pre, &l), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(adnn_model_spec(l)->family, ADNN_FAMILY_BLOCKDROP);
    cr_assert_eq(adnn_model_spec(l)->policy_width, 8);
    cr_assert_eq(adnn_tensor_count(l), adnn_tensor_count(m));
    for (size_t i = 0; i < adnn_tensor_count(m); i++) {
        adnn_tensor_info_t a, b;
        adnn_tensor_at(m, i, &a);
        adnn_tensor_at(l, i, &b);
        cr_assert_str_eq(a.name, b.name);
        cr_assert_eq(memcmp(a.data, b.data, a.numel * sizeof(float)), 0, "%s", a.name);
    }
    adnn_model_destroy(&l);

    snprintf(path, sizeof path, "%s.safetensors", pre);
    write_variant(m, path, "policy.fc.bias", NULL);
    cr_assert_eq(adnn_weights_load(m, path), DP_ERR_NOTFOUND);
    cr_assert(strstr(dp_err_detail(), "policy.fc.bias"), "%s", dp_err_detail());

    write_variant(m, path, NULL, "policy.blocks.1.c2.conv.weight");
    cr_assert_eq(adnn_weights_load(m, path), DP_ERR_MISMATCH);
    cr_assert(strstr(dp_err_detail(), "policy.blocks.1.c2.conv.weight"), "%s", dp_err_detail());

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

    /* a BlockDrop spec with no policy width does not build */
    adnn_spec_t s;
    cr_assert_eq(adnn_spec_default(ADNN_FAMILY_BLOCKDROP, &s), DP_OK);
    s.policy_width = 0;
    cr_assert_neq(adnn_model_new(&s, 1, &l), DP_OK);
    cr_assert(strstr(dp_err_detail(), "policy_width"), "%s", dp_err_detail());
    cr_assert_null(l);
    adnn_model_destroy(&m);
}

/* The shipped model loads and meets the zoo's figures on the first 2,000
 * Fashion-MNIST test images, with input-dependent masks. */
Test(blockdrop, shipped_blockdrop)
{
    const char *img = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
    const char *lbl = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz";
    if (access(img, R_OK) != 0) cr_skip_test("Fashion-MNIST not installed");
    if (access(DP_SOURCE_DIR "/models/blockdrop.pb", R_OK) != 0)
        cr_skip_test("models/blockdrop not shipped yet");
    dp_dataset_t *d = NULL;
    cr_assert_eq(dp_dataset_load_idx(img, lbl, &d), DP_OK, "%s", dp_err_detail());
    adnn_model_t *m = NULL;
    cr_assert_eq(adnn_model_load(DP_SOURCE_DIR "/models/blockdrop", &m), DP_OK, "%s",
                 dp_err_detail());
    double full = adnn_flops_full(m, 0), sum = 0, lo = 1, hi = 0;
    int correct = 0, n = 2000, seen[64] = {0}, distinct = 0;
    for (int i = 0; i < n; i++) {
        adnn_trace_t t;
        adnn_forward_adaptive(m, d->images + (size_t)i * IMG, &t);
        correct += t.pred == d->labels[i];
        double f = t.flops_ref / full;
        sum += f;
        lo = f < lo ? f : lo;
        hi = f > hi ? f : hi;
        int code = 0;
        for (int b = 0; b < t.nblocks && b < 6; b++) code |= t.ran[b] << b;
        distinct += !seen[code]++;
    }
    cr_assert_geq((double)correct / n, 0.90);
    cr_assert(sum / n >= 0.30 && sum / n <= 0.80, "mean executed fraction %g", sum / n);
    cr_assert_lt(lo, 0.8 * hi, "no per-input spread: %g .. %g", lo, hi);
    cr_assert_geq(distinct, 3, "%d distinct masks", distinct);
    adnn_model_destroy(&m);
    dp_dataset_destroy(&d);
}
