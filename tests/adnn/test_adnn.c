/* core/adnn: the adaptive model zoo (SDN-ResNet).
 * - the batch-1 adaptive forward agrees with the batch forward when every
 *   block runs;
 * - FLOPs of the full network equal the reference convention's formula
 *   (docs/ZOO.md, FLOPs conventions);
 * - an early exit really skips: the trace and the FLOPs say so;
 * - the input gradient of the p_k loss matches central finite differences;
 * - spec round trip; malformed weight and spec files fail with errors that
 *   name the tensor or the file. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "adnn/adnn.h"
#include "adnn_testlib.h"

#define IMG  ADNN_TEST_IMG
#define conv adnn_test_conv /* FLOPs of a convolution, short for the formulas */

static adnn_model_t *new_sdn(float tau, uint64_t seed)
{
    return adnn_test_model(ADNN_FAMILY_SDN_RESNET, tau, seed);
}

Test(adnn, adaptive_matches_batch_when_every_block_runs)
{
    adnn_model_t *m = new_sdn(1.0f, 3); /* c_k >= 1 never holds for these weights */
    adnn_test_perturb_buffers(m, 4);
    adnn_test_check_adaptive_matches_batch(m, 4, 0);
    adnn_model_destroy(&m);
}

Test(adnn, flops_full_by_formula)
{
    adnn_model_t *m = new_sdn(0.9f, 1);
    /* default zoo SDN-ResNet: the zoo's ResNet backbone (stem 1->16 at 28; blocks
     * 16@14 x2, 32@7 x2, 64@4 x2; final GAP + linear), plus exits after blocks
     * 0..4 (pool to 4x4, linear to 10). */
    double f = adnn_test_resnet_backbone_flops();
    int head_c[5] = {16, 16, 32, 32, 64};
    for (int k = 0; k < 5; k++) f += 2.0 * head_c[k] * 16 * 10;
    /* the exact count adds BN, activations, pooling and biases */
    adnn_test_check_flops_full(m, f, 1.2, "reference");
    adnn_model_destroy(&m);
}

Test(adnn, early_exit_really_skips)
{
    /* tau below 1/K: the first exit always fires */
    adnn_model_t *m = new_sdn(0.05f, 2);
    adnn_trace_t t;
    adnn_test_check_first_exit_trace(m, &t);
    double expect =
        conv(1, 16, 3, 28) + conv(16, 16, 3, 14) * 2 + conv(16, 16, 1, 14) + 2.0 * 16 * 16 * 10;
    cr_assert_float_eq(t.flops_ref, expect, 0.5);
    cr_assert_lt(t.flops_ref, 0.25 * adnn_flops_full(m, 0));
    cr_assert_lt(t.flops_exact, 0.25 * adnn_flops_full(m, 1));
    adnn_model_destroy(&m);
}

Test(adnn, pk_input_gradient_no_exit_fires)
{
    adnn_test_check_exit_pk_grad(ADNN_FAMILY_SDN_RESNET, 1.0f, 11, 5);
}

Test(adnn, pk_input_gradient_first_exit_fires)
{
    adnn_test_check_first_exit_pk(ADNN_FAMILY_SDN_RESNET, 5);
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

/* A spec whose exit_tau is -0 (unused by SkipNet) decodes as +0: proto3
 * does not write a zero, so -0 would come back +0 from a round trip. */
Test(adnn, spec_negative_zero_round_trips)
{
    adnn_spec_t s, t, u;
    cr_assert_eq(adnn_spec_default(ADNN_FAMILY_SKIPNET, &s), DP_OK);
    uint8_t *buf;
    size_t len;
    cr_assert_eq(adnn_spec_encode(&s, &buf, &len), DP_OK);
    uint8_t *pb = malloc(len + 5);
    memcpy(pb, buf, len);
    const uint8_t tau[] = {0x5d, 0x00, 0x00, 0x00, 0x80}; /* field 11, fixed32, -0.0f */
    memcpy(pb + len, tau, sizeof tau);
    cr_assert_eq(adnn_spec_decode(pb, len + sizeof tau, "mem", &t), DP_OK, "%s", dp_err_detail());
    cr_assert(!signbit(t.exit_tau), "exit_tau decoded as -0");
    free(buf);
    cr_assert_eq(adnn_spec_encode(&t, &buf, &len), DP_OK);
    cr_assert_eq(adnn_spec_decode(buf, len, "again", &u), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(memcmp(&t, &u, sizeof t), 0);
    free(buf);
    free(pb);
}

/* fuzz_spec: a SkipNet ModelSpec with gate_dim 0xafffffff (decoded as -1)
 * passed validation and overflowed the heap in adnn_model_new. */
Test(adnn, spec_gate_dim_out_of_range)
{
    const uint8_t pb[] = {18, 6,  8, 1, 16, 28, 24,  28,  24,  10,  40,
                          1,  48, 2, 8, 1,  72, 255, 255, 255, 255, 10};
    adnn_spec_t s;
    cr_assert_eq(adnn_spec_decode(pb, sizeof pb, "fuzz.pb", &s), DP_ERR_RANGE);
    cr_assert_str_eq(dp_err_detail(), "fuzz.pb: spec: gate_dim -1 out of range [1, 1024]");
    cr_assert_eq(adnn_spec_default(ADNN_FAMILY_SKIPNET, &s), DP_OK);
    s.gate_dim = 1025;
    cr_assert_eq(adnn_spec_validate(&s), DP_ERR_RANGE);
    s.gate_dim = 10;
    s.gate_kind = (adnn_gate_kind_t)7;
    cr_assert_eq(adnn_spec_validate(&s), DP_ERR_INVALID);
    cr_assert(strstr(dp_err_detail(), "gate_kind 7"), "%s", dp_err_detail());
}

Test(adnn, save_load_round_trip)
{
    adnn_model_t *m = new_sdn(0.7f, 21);
    adnn_test_perturb_buffers(m, 22);
    char pre[256];
    adnn_test_tmp_prefix(pre, sizeof pre, "adnn", "rt");
    adnn_model_t *l = adnn_test_round_trip(m, pre);
    cr_assert_float_eq(adnn_model_spec(l)->exit_tau, 0.7f, 1e-7);
    adnn_test_remove(pre);
    adnn_model_destroy(&m);
    adnn_model_destroy(&l);
}

Test(adnn, malformed_weights_name_the_problem)
{
    adnn_model_t *m = new_sdn(0.9f, 31);
    char pre[256], path[300];
    adnn_test_tmp_prefix(pre, sizeof pre, "adnn", "bad");
    snprintf(path, sizeof path, "%s.safetensors", pre);

    /* missing, reshaped and truncated */
    adnn_test_check_malformed(m, path, "blocks.3.c2.bn.weight", "exits.2.fc.weight");

    /* an unexpected extra tensor */
    adnn_test_write_variant(m, path, NULL, NULL, "blocks.99.c1.conv.weight");
    cr_assert_eq(adnn_weights_load(m, path), DP_ERR_MISMATCH);
    cr_assert(strstr(dp_err_detail(), "blocks.99.c1.conv.weight"), "%s", dp_err_detail());

    /* a model whose spec file is garbage */
    snprintf(path, sizeof path, "%s.pb", pre);
    FILE *f = fopen(path, "wb");
    fputs("this is not a protobuf", f);
    fclose(f);
    adnn_model_t *l = NULL;
    dp_err_t err = adnn_model_load(pre, &l);
    cr_assert(err == DP_ERR_FORMAT || err == DP_ERR_RANGE || err == DP_ERR_INVALID, "%s",
              dp_strerror(err));
    cr_assert(strstr(dp_err_detail(), path), "%s", dp_err_detail());
    cr_assert_null(l);
    adnn_test_remove(pre);
    /* missing files */
    cr_assert_eq(adnn_model_load("/nonexistent/model", &l), DP_ERR_NOTFOUND);
    adnn_model_destroy(&m);
}

/* A spec that needs more weights than its weights file holds is refused
 * before the model's blocks are allocated: widths within the spec's bounds
 * can ask for gigabytes. */
Test(adnn, spec_larger_than_its_weights)
{
    adnn_model_t *m = new_sdn(0.9f, 33);
    char pre[256], path[300];
    adnn_test_tmp_prefix(pre, sizeof pre, "adnn", "big");
    cr_assert_eq(adnn_model_save(m, pre), DP_OK, "%s", dp_err_detail());
    adnn_model_t *l = NULL;
    cr_assert_eq(adnn_model_load(pre, &l), DP_OK, "%s", dp_err_detail());
    adnn_model_destroy(&l);
    adnn_spec_t s = *adnn_model_spec(m);
    for (int i = 0; i < ADNN_MAX_STAGES; i++)
        if (s.widths[i]) s.widths[i] *= 4;
    snprintf(path, sizeof path, "%s.pb", pre);
    cr_assert_eq(adnn_spec_write(&s, path), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(adnn_model_load(pre, &l), DP_ERR_MISMATCH, "%s", dp_err_detail());
    cr_assert_null(l);
    char want[800];
    snprintf(want, sizeof want, "%s.safetensors: the sdn-resnet model of %s needs ", pre, path);
    cr_assert(strstr(dp_err_detail(), want) && strstr(dp_err_detail(), "weights, the file holds"),
              "%s", dp_err_detail());
    adnn_test_remove(pre);
    adnn_model_destroy(&m);
}

Test(adnn, training_lowers_the_loss)
{
    adnn_model_t *m = new_sdn(0.9f, 41);
    int n = 16;
    float x[16 * IMG];
    int32_t y[16];
    adnn_test_fill_images(x, 16 * IMG, 42);
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
    adnn_spec_t s = adnn_test_small_sdn_spec(ADNN_FAMILY_SDN_RESNET);
    adnn_test_check_train_grad(&s, 51);
}

/* The shipped model loads and meets the zoo's acceptance figures on the first
 * 2,000 Fashion-MNIST test images (skipped when the dataset is absent). */
Test(adnn, shipped_sdn_resnet)
{
    adnn_test_shipped_t r;
    adnn_test_check_shipped(DP_SOURCE_DIR "/models/sdn_resnet", 0, 0.90, &r);
    cr_assert_lt(r.lo, 0.5 * r.hi, "no per-input spread: %g .. %g", r.lo, r.hi);
}
