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
#include <stdio.h>
#include <unistd.h>

#include "adnn/adnn.h"
#include "adnn_testlib.h"

#define IMG  ADNN_TEST_IMG
#define conv adnn_test_conv /* FLOPs of a convolution, short for the formulas */

static adnn_model_t *new_model(float tau, uint64_t seed)
{
    return adnn_test_model(ADNN_FAMILY_RANET, tau, seed);
}

Test(ranet, adaptive_matches_batch_with_exits_disabled)
{
    adnn_model_t *m = new_model(1.5f, 3);
    adnn_test_perturb_buffers(m, 4);
    adnn_test_check_adaptive_matches_batch(m, 3, 6);
    adnn_model_destroy(&m);
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
    /* no depthwise convs here: the exact count only adds BN, ReLU, pooling, biases */
    adnn_test_check_flops_full(m, f, 1.05, "reference");
    adnn_model_destroy(&m);
}

Test(ranet, early_exit_really_stops)
{
    adnn_model_t *m = new_model(0.05f, 2); /* tau below 1/K: exit 0 always fires */
    adnn_trace_t t;
    adnn_test_check_first_exit_trace(m, &t);
    const adnn_spec_t *s = adnn_model_spec(m);
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
    /* per block: the layer conv, then the exit head on it (formula test above) */
    double layer[6] = {conv(16, 16, 3, 4), conv(32, 16, 3, 4), conv(48, 16, 3, 7),
                       conv(80, 16, 3, 7), conv(48, 8, 3, 14), conv(72, 8, 3, 14)};
    double hd[6] = {head(32, 4), head(48, 4), head(32, 7), head(48, 7), head(24, 14), head(32, 14)};
    double expect[6], f = base_flops();
    for (int b = 0; b < 6; b++) {
        f += layer[b] + hd[b];
        expect[b] = f; /* stopping at exit b: the prefix through block b */
    }
    adnn_test_check_later_exit(ADNN_FAMILY_RANET, expect);
}

Test(ranet, pk_input_gradient_no_exit_fires)
{
    adnn_test_check_exit_pk_grad(ADNN_FAMILY_RANET, 1.0f, 11, 5);
}

Test(ranet, pk_input_gradient_first_exit_fires)
{
    adnn_test_check_first_exit_pk(ADNN_FAMILY_RANET, 5);
}

Test(ranet, pk_vjp_matches_pk_grad) { adnn_test_check_pk_vjp(ADNN_FAMILY_RANET, 5); }

Test(ranet, train_param_gradient)
{
    adnn_spec_t s = adnn_test_spec(ADNN_FAMILY_RANET);
    s.stem_width = 4;
    s.widths[0] = 3, s.widths[1] = 4, s.widths[2] = 2;
    s.blocks[0] = 2, s.blocks[1] = 1, s.blocks[2] = 2; /* flow 2 layer 1 fuses flow 1's last */
    s.nexits = 3;
    s.exit_after[0] = 0, s.exit_after[1] = 2, s.exit_after[2] = 3;
    s.exit_weights[0] = 0.3f, s.exit_weights[1] = 0.6f, s.exit_weights[2] = 0.8f;
    s.exit_weights[3] = 1.0f;
    adnn_test_check_train_grad(&s, 51);
}

Test(ranet, weights_round_trip) { adnn_test_check_weights_round_trip(ADNN_FAMILY_RANET, "ranet"); }

Test(ranet, malformed_weights_name_the_tensor)
{
    adnn_test_check_malformed_weights(ADNN_FAMILY_RANET, "ranet", "blocks.2.bn.running_var",
                                      "exits.3.c2.conv.weight");
}

/* The shipped model meets the zoo's acceptance figures on the first 2,000
 * Fashion-MNIST test images (skipped when the dataset is absent). */
Test(ranet, shipped_model, .timeout = 120)
{
    adnn_test_shipped_t r;
    adnn_test_check_shipped(DP_SOURCE_DIR "/models/ranet", 1, 0.88, &r);
    cr_assert_lt(r.lo, 0.5 * r.hi, "no per-input spread: %g .. %g", r.lo, r.hi);
}
