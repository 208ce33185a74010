/* core/adnn: SDN on a MobileNet backbone.
 * - the batch-1 adaptive forward agrees with the batch forward when no exit
 *   can fire (tau > 1);
 * - an early exit really stops: trace and FLOPs say so;
 * - FLOPs of the full network by formula, in both conventions: the
 *   reference counts each depthwise conv groups (= channels) times its exact
 *   cost;
 * - the input gradient of the p_k loss and the parameter gradients of the
 *   training objective match central finite differences;
 * - weights round trip; malformed weight files fail naming the tensor;
 * - the shipped model meets the zoo's acceptance figures. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <unistd.h>

#include "adnn/adnn.h"
#include "adnn_testlib.h"

#define IMG  ADNN_TEST_IMG
#define conv adnn_test_conv /* FLOPs of a convolution, short for the formulas */

static adnn_model_t *new_model(float tau, uint64_t seed)
{
    return adnn_test_model(ADNN_FAMILY_SDN_MOBILENET, tau, seed);
}

Test(sdn_mobilenet, adaptive_matches_batch_with_exits_disabled)
{
    adnn_model_t *m = new_model(1.5f, 3);
    adnn_test_perturb_buffers(m, 4);
    adnn_test_check_adaptive_matches_batch(m, 3, 7);
    adnn_model_destroy(&m);
}

/* Elements read by PyTorch's adaptive pooling of h x h to 4 x 4 (per channel). */
static double window(int h)
{
    double r = 0;
    for (int i = 0; i < 4; i++) r += (double)(((i + 1) * h + 3) / 4 - i * h / 4);
    return r * r;
}

Test(sdn_mobilenet, flops_full_by_formula_both_conventions)
{
    adnn_model_t *m = new_model(0.9f, 1);
    /* stem 1->16 at 28; blocks (cin->cout @ res): 16->32@14, 32->32@14, 32->64@7,
     * 64->64@7 x2, 64->128@4, 128->128@4; exits after blocks 0..5 (pool 4x4,
     * linear to 10); final GAP + linear. */
    int cin[7] = {16, 32, 32, 64, 64, 64, 128}, cout[7] = {32, 32, 64, 64, 64, 128, 128};
    int res[7] = {14, 14, 7, 7, 7, 4, 4};
    double ref = conv(1, 16, 3, 28), ex = conv(1, 16, 3, 28) + 3.0 * 16 * 784;
    double dw_ref = 0, dw_ex = 0;
    for (int b = 0; b < 7; b++) {
        double hw = (double)res[b] * res[b];
        dw_ref += conv(cin[b], cin[b], 3, res[b]);         /* not divided by groups */
        dw_ex += conv(cin[b], cin[b], 3, res[b]) / cin[b]; /* groups = cin */
        ref += conv(cin[b], cin[b], 3, res[b]) + conv(cin[b], cout[b], 1, res[b]);
        ex += conv(cin[b], cin[b], 3, res[b]) / cin[b] + 3.0 * cin[b] * hw;
        ex += conv(cin[b], cout[b], 1, res[b]) + 3.0 * cout[b] * hw;
    }
    for (int k = 0; k < 6; k++) {
        double in = cout[k] * 16.0, win = window(res[k]) * cout[k];
        ref += 2.0 * in * 10;
        ex += 2.0 * in * 10 + 10 + win + (win + in) + 3.0 * in + 4.0 * 10;
    }
    ref += 2.0 * 128 * 10;
    ex += 2.0 * 128 * 10 + 10 + 128.0 * 16 + 128;
    cr_assert_float_eq(adnn_flops_full(m, 0), ref, 0.5, "reference %.0f vs formula %.0f",
                       adnn_flops_full(m, 0), ref);
    cr_assert_float_eq(adnn_flops_full(m, 1), ex, 0.5, "exact %.0f vs formula %.0f",
                       adnn_flops_full(m, 1), ex);
    /* the conventions differ mostly by the depthwise groups factor */
    cr_assert_gt(dw_ref, 10 * dw_ex);
    cr_assert_gt(adnn_flops_full(m, 0), 3 * adnn_flops_full(m, 1));
    adnn_model_destroy(&m);
}

Test(sdn_mobilenet, early_exit_really_stops)
{
    adnn_model_t *m = new_model(0.05f, 2); /* tau below 1/K: exit 0 always fires */
    adnn_trace_t t;
    adnn_test_check_first_exit_trace(m, &t);
    const adnn_spec_t *s = adnn_model_spec(m);
    for (int k = 1; k <= s->nexits; k++) cr_assert_eq(t.conf[k], 0.0f, "exit %d", k);
    double expect =
        conv(1, 16, 3, 28) + conv(16, 16, 3, 14) + conv(16, 32, 1, 14) + 2.0 * 32 * 16 * 10;
    cr_assert_float_eq(t.flops_ref, expect, 0.5);
    cr_assert_lt(t.flops_ref, 0.15 * adnn_flops_full(m, 0));
    cr_assert_lt(t.flops_exact, 0.25 * adnn_flops_full(m, 1));
    adnn_model_destroy(&m);
}

/* A later exit: find an image whose exit k >= 2 is more confident than every
 * exit before it, set tau to that confidence: the network must stop exactly
 * at exit k, never compute the blocks after it, and count exactly the
 * prefix's FLOPs (depthwise convs at the reference's undivided count). */
Test(sdn_mobilenet, stops_at_a_later_exit)
{
    int cin[6] = {16, 32, 32, 64, 64, 64}, cout[6] = {32, 32, 64, 64, 64, 128};
    int res[6] = {14, 14, 7, 7, 7, 4};
    double expect[6], f = conv(1, 16, 3, 28);
    for (int b = 0; b < 6; b++) {
        f += conv(cin[b], cin[b], 3, res[b]) + conv(cin[b], cout[b], 1, res[b]) +
             2.0 * cout[b] * 16 * 10;
        expect[b] = f; /* stopping at exit b: the prefix through block b */
    }
    adnn_test_check_later_exit(ADNN_FAMILY_SDN_MOBILENET, expect);
}

Test(sdn_mobilenet, pk_input_gradient_no_exit_fires)
{
    adnn_test_check_exit_pk_grad(ADNN_FAMILY_SDN_MOBILENET, 1.0f, 11, 6);
}

Test(sdn_mobilenet, pk_input_gradient_first_exit_fires)
{
    adnn_test_check_first_exit_pk(ADNN_FAMILY_SDN_MOBILENET, 6);
}

Test(sdn_mobilenet, pk_vjp_matches_pk_grad)
{
    adnn_test_check_pk_vjp(ADNN_FAMILY_SDN_MOBILENET, 6);
}

Test(sdn_mobilenet, train_param_gradient)
{
    adnn_spec_t s = adnn_test_small_sdn_spec(ADNN_FAMILY_SDN_MOBILENET);
    adnn_test_check_train_grad(&s, 51);
}

Test(sdn_mobilenet, weights_round_trip)
{
    adnn_test_check_weights_round_trip(ADNN_FAMILY_SDN_MOBILENET, "sdn_mobilenet");
}

Test(sdn_mobilenet, malformed_weights_name_the_tensor)
{
    /* a depthwise weight is (C, 1, 3, 3): any other shape is a mismatch */
    adnn_test_check_malformed_weights(ADNN_FAMILY_SDN_MOBILENET, "sdn_mobilenet",
                                      "blocks.2.dw.bn.running_var", "blocks.4.dw.conv.weight");
}

/* The shipped model meets the zoo's acceptance figures on the first 2,000
 * Fashion-MNIST test images (skipped when the dataset is absent). */
Test(sdn_mobilenet, shipped_model, .timeout = 120)
{
    adnn_test_shipped_t r;
    adnn_test_check_shipped(DP_SOURCE_DIR "/models/sdn_mobilenet", 1, 0.88, &r);
    cr_assert_lt(r.lo, 0.5 * r.hi, "no per-input spread: %g .. %g", r.lo, r.hi);
}
