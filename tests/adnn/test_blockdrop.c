/* core/adnn: BlockDrop.
 * - with every block forced on, the batch-1 adaptive forward agrees with the
 *   batch forward (every block run);
 * - a dropped block really is not computed: the trace says so and the FLOPs
 *   fall by exactly that block's FLOPs (its shortcut projection stays when it
 *   downsamples);
 * - FLOPs of the full network (policy included) equal the reference
 *   convention's formula (docs/ZOO.md, FLOPs conventions);
 * - p_k are the policy sigmoids, depend on the policy only, and the input
 *   gradient of their loss matches central finite differences;
 * - the training options: a frozen backbone stays bit for bit, the
 *   self-critical baseline trains otherwise than the batch mean, explore 0.5
 *   teaches the policy nothing, bad values are refused;
 * - weights round trip; malformed weight files name the tensor;
 * - the shipped model meets the zoo's figures (skipped without the data). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adnn/adnn.h"
#include "adnn/blockdrop.h"
#include "adnn_testlib.h"

#define IMG  ADNN_TEST_IMG
#define conv adnn_test_conv /* FLOPs of a convolution, short for the formulas */

static adnn_model_t *new_bd(uint64_t seed)
{
    adnn_spec_t s = adnn_test_spec(ADNN_FAMILY_BLOCKDROP);
    return adnn_test_build(&s, seed);
}

/* The policy's logits fixed whatever the image: fc weights 0, bias logit. */
static void fix_policy(adnn_model_t *m, const float *logit, int k)
{
    size_t nw;
    float *w = adnn_test_tensor(m, "policy.fc.weight", &nw),
          *b = adnn_test_tensor(m, "policy.fc.bias", NULL);
    memset(w, 0, nw * sizeof(float));
    memcpy(b, logit, (size_t)k * sizeof(float));
}

/* Policy forced to a fixed mask: logits +-10. */
static void force_mask(adnn_model_t *m, const int *on, int k)
{
    float logit[ADNN_MAX_BLOCKS];
    for (int i = 0; i < k; i++) logit[i] = on[i] ? 10.0f : -10.0f;
    fix_policy(m, logit, k);
}

/* The gradient of the policy's bias after the last training step. */
static const float *policy_bias_grad(const adnn_model_t *m)
{
    for (size_t i = 0; i < adnn_tensor_count(m); i++) {
        adnn_tensor_info_t t;
        adnn_tensor_at(m, i, &t);
        if (!strcmp(t.name, "policy.fc.bias")) return adnn_tensor_grad(m, i);
    }
    cr_assert_fail("no policy.fc.bias");
    return NULL;
}

Test(blockdrop, all_blocks_on_matches_batch)
{
    adnn_model_t *m = new_bd(3);
    adnn_test_perturb_buffers(m, 4);
    int K = adnn_pk_count(m), on[6] = {1, 1, 1, 1, 1, 1};
    cr_assert_eq(K, 6);
    force_mask(m, on, K);
    int n = 4, C = adnn_model_spec(m)->num_classes;
    float x[4 * IMG], logits[4 * 10];
    adnn_test_fill_images(x, sizeof x / sizeof x[0], 5);
    cr_assert_eq(adnn_eval_batch(m, x, n, logits), DP_OK, "%s", dp_err_detail());
    for (int i = 0; i < n; i++) {
        adnn_trace_t t;
        adnn_forward_adaptive(m, x + i * IMG, &t);
        cr_assert_eq(t.nblocks, 6);
        cr_assert_eq(t.blocks_run, 6);
        const float *z = logits + i * C;
        cr_assert_eq(t.pred, adnn_test_argmax(z, C), "image %d", i);
        cr_assert_float_eq(t.conf[0], adnn_test_max_prob(z, C), 1e-4, "image %d", i);
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
    f += adnn_test_resnet_backbone_flops();
    adnn_test_check_flops_full(m, f, 1.2, "reference");
    adnn_model_destroy(&m);
}

Test(blockdrop, dropped_block_is_not_computed)
{
    adnn_model_t *m = new_bd(2);
    float x[IMG];
    adnn_test_fill_images(x, IMG, 9);
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

Test(blockdrop, pk_input_gradient)
{
    adnn_model_t *m = new_bd(11);
    adnn_test_perturb_buffers(m, 12);
    int n = 2, K = adnn_pk_count(m);
    float x[2 * IMG], dx[2 * IMG], p[2 * 6], p2[2 * 6];
    adnn_test_fill_images(x, 2 * IMG, 13);
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
    float *w = adnn_test_tensor(m, "blocks.3.c1.conv.weight", &nw);
    for (size_t j = 0; j < nw; j++) w[j] *= -2.0f;
    cr_assert_eq(adnn_pk_grad(m, x, n, p2, &l, NULL), DP_OK);
    cr_assert_eq(memcmp(p, p2, sizeof p), 0);
    /* directional derivatives along random directions, central differences */
    adnn_test_check_pk_fd(m, x, n, dx, 1e-3, 14, "blockdrop");
    adnn_model_destroy(&m);
}

Test(blockdrop, pk_vjp_matches_pk_grad)
{
    adnn_model_t *m = new_bd(15);
    adnn_test_perturb_buffers(m, 16);
    float x[2 * IMG], dx[2 * IMG], dx2[2 * IMG], p[12], p2[12];
    adnn_test_fill_images(x, 2 * IMG, 17);
    double l;
    cr_assert_eq(adnn_pk_grad(m, x, 2, p, &l, dx), DP_OK);
    cr_assert_eq(adnn_pk_vjp(m, x, 2, adnn_test_dlogp, NULL, p2, dx2), DP_OK, "%s",
                 dp_err_detail());
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
    adnn_test_fill_images(x, 16 * IMG, 42);
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

/* Every tensor's values, trainable ones and BatchNorm statistics alike, in
 * model order. */
static float *copy_tensors(const adnn_model_t *m, size_t *total)
{
    size_t n = 0;
    for (size_t i = 0; i < adnn_tensor_count(m); i++) {
        adnn_tensor_info_t t;
        adnn_tensor_at(m, i, &t);
        n += t.numel;
    }
    float *all = malloc(n * sizeof *all), *p = all;
    cr_assert(all);
    for (size_t i = 0; i < adnn_tensor_count(m); i++) {
        adnn_tensor_info_t t;
        adnn_tensor_at(m, i, &t);
        memcpy(p, t.data, t.numel * sizeof *p);
        p += t.numel;
    }
    *total = n;
    return all;
}

/* After training steps, counts the tensors whose values changed, those of
 * the policy network ("policy.") and those of the backbone; weights only, or
 * BatchNorm statistics too. */
static void count_changed(const adnn_model_t *m, const float *before, int weights_only, int *policy,
                          int *backbone)
{
    *policy = *backbone = 0;
    const float *p = before;
    for (size_t i = 0; i < adnn_tensor_count(m); i++) {
        adnn_tensor_info_t t;
        adnn_tensor_at(m, i, &t);
        int changed = memcmp(p, t.data, t.numel * sizeof *p) != 0 && (t.trainable || !weights_only);
        if (!strncmp(t.name, "policy.", 7))
            *policy += changed;
        else
            *backbone += changed;
        p += t.numel;
    }
}

static void train_steps(adnn_model_t *m, int steps, uint64_t seed)
{
    float x[16 * IMG];
    int32_t y[16];
    adnn_test_fill_images(x, 16 * IMG, seed);
    for (int i = 0; i < 16; i++) y[i] = i % 10;
    for (int s = 0; s < steps; s++) {
        double loss;
        int c;
        cr_assert_eq(adnn_train_step(m, x, y, 16, &loss, &c), DP_OK, "%s", dp_err_detail());
        cr_assert(isfinite(loss), "step %d: loss %g", s, loss);
        adnn_adam_step(m, 3e-3f);
    }
}

/* policy_only: the backbone's weights and BatchNorm statistics stay as they
 * were, bit for bit, while the policy learns; by default both change. */
Test(blockdrop, policy_only_freezes_the_backbone)
{
    adnn_model_t *m = new_bd(43);
    adnn_blockdrop_train_t o = adnn_blockdrop_train_default();
    cr_assert_float_eq(o.penalty, 10.0f, 1e-7);
    cr_assert_float_eq(o.explore, 0.8f, 1e-7);
    cr_assert(!o.policy_only && !o.self_critical);
    o.policy_only = 1;
    o.penalty = 3;
    cr_assert_eq(adnn_blockdrop_set_train(m, &o), DP_OK);
    size_t n;
    float *before = copy_tensors(m, &n);
    train_steps(m, 5, 44);
    int policy, backbone;
    count_changed(m, before, 0, &policy, &backbone);
    cr_assert_eq(backbone, 0, "%d backbone tensors changed", backbone);
    cr_assert_gt(policy, 0, "the policy did not learn");
    free(before);
    adnn_model_destroy(&m);

    m = new_bd(43);
    before = copy_tensors(m, &n);
    train_steps(m, 5, 44);
    count_changed(m, before, 0, &policy, &backbone);
    cr_assert(policy > 0 && backbone > 0, "joint training: %d policy, %d backbone tensors changed",
              policy, backbone);
    free(before);
    adnn_model_destroy(&m);
}

/* The self-critical baseline changes what the policy learns (the same draws,
 * other advantages) and still trains; explore 0.5 gives the policy no
 * gradient at all (uniform masks). */
Test(blockdrop, self_critical_and_uniform_masks)
{
    adnn_model_t *a = new_bd(45), *b = new_bd(45), *c = new_bd(45);
    adnn_blockdrop_train_t o = adnn_blockdrop_train_default();
    o.policy_only = 1;
    cr_assert_eq(adnn_blockdrop_set_train(a, &o), DP_OK);
    o.self_critical = 1;
    cr_assert_eq(adnn_blockdrop_set_train(b, &o), DP_OK);
    o.self_critical = 0, o.explore = 0.5f;
    cr_assert_eq(adnn_blockdrop_set_train(c, &o), DP_OK);
    size_t n;
    float *before = copy_tensors(a, &n);
    train_steps(a, 3, 46);
    train_steps(b, 3, 46);
    train_steps(c, 3, 46);
    float *pa = copy_tensors(a, &n), *pb = copy_tensors(b, &n);
    cr_assert(memcmp(pa, pb, n * sizeof *pa) != 0, "the baselines gave the same weights");
    int policy, backbone;
    count_changed(b, before, 0, &policy, &backbone);
    cr_assert(policy > 0 && backbone == 0, "self-critical: %d policy, %d backbone", policy,
              backbone);
    count_changed(c, before, 1, &policy, &backbone); /* the policy's BatchNorm statistics move */
    cr_assert(policy == 0 && backbone == 0, "explore 0.5: %d policy, %d backbone weights", policy,
              backbone);
    free(before);
    free(pa);
    free(pb);
    adnn_model_destroy(&a);
    adnn_model_destroy(&b);
    adnn_model_destroy(&c);
}

/* The local gradient is the derivative of the expected reward: with the
 * policy's logits fixed (fc weights 0, so p_k = sigmoid(bias_k) whatever the
 * image), the mean of its per-step gradients on the policy's bias over many
 * draws agrees with -dE[R]/dz_k summed over all 2^K masks, each mask's
 * reward taken from the backbone's own prediction (adaptive forward). */
Test(blockdrop, local_grad_is_the_expected_reward_gradient)
{
    enum { K = 6, STEPS = 2000 };
    const float bias[K] = {0.4f, -0.3f, 0.1f, 1.2f, -0.8f, 0.0f};
    const double a = 0.8, pen = 2;
    adnn_model_t *m = new_bd(49), *ref = new_bd(49);
    float x[IMG];
    adnn_test_fill_images(x, IMG, 50);
    int all[K] = {1, 1, 1, 1, 1, 1};
    adnn_trace_t t;
    force_mask(ref, all, K);
    adnn_forward_adaptive(ref, x, &t);
    int32_t y = t.pred; /* right with every block: some masks are wrong */
    double R[1 << K];
    int wrong = 0;
    for (int code = 0; code < 1 << K; code++) {
        int on[K], kept = 0;
        for (int k = 0; k < K; k++) kept += on[k] = code >> k & 1;
        force_mask(ref, on, K);
        adnn_forward_adaptive(ref, x, &t);
        double frac = (double)kept / K;
        R[code] = t.pred == y ? 1.0 - frac * frac : -pen;
        wrong += t.pred != y;
    }
    double want[K];
    for (int k = 0; k < K; k++) {
        double p = 1.0 / (1.0 + exp(-(double)bias[k])), d = 0;
        for (int code = 0; code < 1 << K; code++) {
            if (code >> k & 1) continue;
            double pr = 1; /* P(the other decisions) */
            for (int j = 0; j < K; j++) {
                if (j == k) continue;
                double pj = 1.0 / (1.0 + exp(-(double)bias[j])), qj = a * pj + (1 - a) * (1 - pj);
                pr *= code >> j & 1 ? qj : 1 - qj;
            }
            d += pr * (R[code | 1 << k] - R[code]);
        }
        want[k] = -(2 * a - 1) * p * (1 - p) * d; /* dL/dz_k, L = -E[R] */
    }
    fix_policy(m, bias, K);
    adnn_blockdrop_train_t o = adnn_blockdrop_train_default();
    o.policy_only = o.local_grad = 1;
    o.penalty = (float)pen, o.explore = (float)a;
    cr_assert_eq(adnn_blockdrop_set_train(m, &o), DP_OK);
    double sum[K] = {0}, sq[K] = {0};
    for (int s = 0; s < STEPS; s++) { /* no Adam step: the same policy every time */
        double loss;
        cr_assert_eq(adnn_train_step(m, x, &y, 1, &loss, NULL), DP_OK, "%s", dp_err_detail());
        const float *g = policy_bias_grad(m);
        for (int k = 0; k < K; k++) sum[k] += g[k], sq[k] += (double)g[k] * g[k];
    }
    /* the mean of the estimates within 4 standard errors of the exact value,
     * and the exact values large enough against that error to tell */
    double largest = 0, worst_se = 0;
    for (int k = 0; k < K; k++) {
        double mean = sum[k] / STEPS, var = sq[k] / STEPS - mean * mean;
        double se = sqrt(fmax(var, 0) / STEPS);
        cr_assert_float_eq(mean, want[k], 4 * se + 1e-9,
                           "block %d: mean of the estimates %g, exact %g, standard error %g", k,
                           mean, want[k], se);
        largest = fmax(largest, fabs(want[k]));
        worst_se = fmax(worst_se, se);
    }
    cr_assert_gt(largest, 10 * worst_se,
                 "the exact gradients (largest %g) are too small against "
                 "the standard error %g",
                 largest, worst_se);
    cr_assert_gt(wrong, 0, "every mask is right: the penalty is never tested");
    adnn_model_destroy(&m);
    adnn_model_destroy(&ref);
}

/* max_run: a block the greedy policy runs for more than max_run of the batch
 * gets a price that rises by 0.05 * (share - max_run) per step; with the same
 * draws (same seed, no Adam step) each step's gradient on the policy's bias
 * then differs from the unpriced one by exactly price * (2a - 1) p (1 - p),
 * p the same for every image (fc weights 0). */
Test(blockdrop, max_run_prices_the_blocks_run_too_often)
{
    enum { K = 6, N = 4 };
    adnn_model_t *m[2] = {new_bd(51), new_bd(51)};
    float x[N * IMG];
    int32_t y[N] = {1, 4, 7, 9};
    adnn_test_fill_images(x, N * IMG, 52);
    const float half[K] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f}; /* p = 0.62: every block run */
    for (int v = 0; v < 2; v++) {
        fix_policy(m[v], half, K);
        adnn_blockdrop_train_t o = adnn_blockdrop_train_default();
        o.policy_only = o.local_grad = 1;
        o.max_run = v ? 0.5f : 1.0f;
        cr_assert_eq(adnn_blockdrop_set_train(m[v], &o), DP_OK);
    }
    double p = 1.0 / (1.0 + exp(-0.5)), scale = (2 * 0.8 - 1) * p * (1 - p);
    for (int s = 0; s < 3; s++) {
        float g[2][K];
        for (int v = 0; v < 2; v++) {
            double loss;
            cr_assert_eq(adnn_train_step(m[v], x, y, N, &loss, NULL), DP_OK, "%s", dp_err_detail());
            memcpy(g[v], policy_bias_grad(m[v]), sizeof g[v]);
        }
        double price = 0.05 * (1.0 - 0.5) * s; /* every image runs every block */
        for (int k = 0; k < K; k++)
            cr_assert_float_eq(g[1][k] - g[0][k], price * scale, 1e-6,
                               "step %d, block %d: %g vs unpriced %g, expected difference %g", s, k,
                               g[1][k], g[0][k], price * scale);
    }
    adnn_model_destroy(&m[0]);
    adnn_model_destroy(&m[1]);
}

Test(blockdrop, train_options_checked)
{
    adnn_model_t *m = new_bd(47);
    adnn_blockdrop_train_t o = adnn_blockdrop_train_default(), bad = o;
    bad.penalty = -1;
    cr_assert_eq(adnn_blockdrop_set_train(m, &bad), DP_ERR_RANGE);
    bad = o, bad.penalty = INFINITY;
    cr_assert_eq(adnn_blockdrop_set_train(m, &bad), DP_ERR_RANGE);
    bad = o, bad.explore = 0.49f;
    cr_assert_eq(adnn_blockdrop_set_train(m, &bad), DP_ERR_RANGE);
    bad = o, bad.explore = 1.01f;
    cr_assert_eq(adnn_blockdrop_set_train(m, &bad), DP_ERR_RANGE);
    bad = o, bad.explore = NAN;
    cr_assert_eq(adnn_blockdrop_set_train(m, &bad), DP_ERR_RANGE);
    bad = o, bad.max_run = 0;
    cr_assert_eq(adnn_blockdrop_set_train(m, &bad), DP_ERR_RANGE);
    bad = o, bad.max_run = 1.5f;
    cr_assert_eq(adnn_blockdrop_set_train(m, &bad), DP_ERR_RANGE);
    bad = o, bad.local_grad = 1; /* needs the backbone frozen */
    cr_assert_eq(adnn_blockdrop_set_train(m, &bad), DP_ERR_INVALID);
    cr_assert_eq(adnn_blockdrop_set_train(m, &o), DP_OK);
    adnn_model_destroy(&m);
    adnn_spec_t s = adnn_test_spec(ADNN_FAMILY_SKIPNET);
    m = adnn_test_build(&s, 48);
    cr_assert_eq(adnn_blockdrop_set_train(m, &o), DP_ERR_INVALID);
    adnn_model_destroy(&m);
}

Test(blockdrop, weights_round_trip_and_malformed_files)
{
    adnn_model_t *m = new_bd(21);
    adnn_test_perturb_buffers(m, 22);
    char pre[256], path[300];
    adnn_test_tmp_prefix(pre, sizeof pre, "blockdrop", "rt");
    adnn_model_t *l = adnn_test_round_trip(m, pre);
    cr_assert_eq(adnn_model_spec(l)->family, ADNN_FAMILY_BLOCKDROP);
    cr_assert_eq(adnn_model_spec(l)->policy_width, 8);
    adnn_model_destroy(&l);

    snprintf(path, sizeof path, "%s.safetensors", pre);
    adnn_test_check_malformed(m, path, "policy.fc.bias", "policy.blocks.1.c2.conv.weight");
    adnn_test_remove(pre);

    /* a BlockDrop spec with no policy width does not build */
    adnn_spec_t s = adnn_test_spec(ADNN_FAMILY_BLOCKDROP);
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
    adnn_test_shipped_t r;
    adnn_test_check_shipped(DP_SOURCE_DIR "/models/blockdrop", 1, 0.90, &r);
    cr_assert_lt(r.lo, 0.8 * r.hi, "no per-input spread: %g .. %g", r.lo, r.hi);
    cr_assert_geq(r.distinct_masks, 3, "%d distinct masks", r.distinct_masks);
}
