/* Helpers shared by the core/adnn Criterion suites: model construction,
 * random inputs, FLOPs formulas, the finite-difference probes, the weight
 * file round trip and malformed variants, and the shipped-model evaluation.
 * Every helper asserts with Criterion, so it may only run inside a Test(). */
#ifndef DP_TESTS_ADNN_TESTLIB_H
#define DP_TESTS_ADNN_TESTLIB_H

#include <stddef.h>
#include <stdint.h>

#include "adnn/adnn.h"

#define ADNN_TEST_IMG (28 * 28)

/* The family's default spec (asserted to exist). */
adnn_spec_t adnn_test_spec(adnn_family_t family);

/* A new model from s with seed; returns a new object, caller destroys. */
adnn_model_t *adnn_test_build(const adnn_spec_t *s, uint64_t seed);

/* A new model of the family's default spec with exit threshold tau; tau > 1
 * (exits disabled) is set after the spec is validated. Caller destroys. */
adnn_model_t *adnn_test_model(adnn_family_t family, float tau, uint64_t seed);

/* Random-ish BN statistics so inference is not trivially symmetric. */
void adnn_test_perturb_buffers(adnn_model_t *m, uint64_t seed);

/* x[0..n) uniform in [0, 1). */
void adnn_test_fill_images(float *x, size_t n, uint64_t seed);

/* The tensor called name (asserted to exist); borrowed, valid while m lives. */
float *adnn_test_tensor(adnn_model_t *m, const char *name, size_t *numel);

/* Reference-convention FLOPs of a k x k convolution with hout x hout outputs. */
double adnn_test_conv(int cin, int cout, int k, int hout);

/* The zoo's default ResNet backbone for 1x28x28 (SDN-ResNet, SkipNet and
 * BlockDrop) in the reference convention: stem conv3x3 1->16 at 28; basic
 * blocks 16@14 x2, 32@7 x2, 64@4 x2, each stage's first with a 1x1 shortcut;
 * GAP + linear to 10. */
double adnn_test_resnet_backbone_flops(void);

/* adnn_flops_full(m, 0) equals the formula's f (within 0.5); the exact count
 * adds BN, activations, pooling and biases: f < exact < max_ratio * f. what
 * names the variant in the failure message. */
void adnn_test_check_flops_full(adnn_model_t *m, double f, double max_ratio, const char *what);

/* A small SDN spec of the family for parameter-gradient checks: stem 4,
 * widths 4/6/8, one block per stage, exits after blocks 0 and 1 (weights
 * 0.3, 0.6, final 1.0). */
adnn_spec_t adnn_test_small_sdn_spec(adnn_family_t family);

int adnn_test_argmax(const float *z, int k);

/* max softmax(z) computed as 1 / sum exp(z - max z). */
double adnn_test_max_prob(const float *z, int k);

/* Early-exit families: with n images (seed 5), the batch-1 adaptive forward of
 * m runs every block (nblocks of them when nblocks > 0), takes the final exit
 * and agrees with adnn_eval_batch on every exit's confidence and the
 * prediction, and its FLOPs are the full network's. */
void adnn_test_check_adaptive_matches_batch(adnn_model_t *m, int n, int nblocks);

/* Image seed 9 through m (tau below 1/K): exit 0 fires and no block after it
 * runs. *t receives the trace. */
void adnn_test_check_first_exit_trace(adnn_model_t *m, adnn_trace_t *t);

/* Early-exit families (tau 1.5, seed 7, buffers 8): finds an image whose exit
 * k >= 2 is more confident than every exit before it, sets tau to that
 * confidence and checks that the network stops exactly at exit k with
 * expect[k] reference FLOPs. */
void adnn_test_check_later_exit(adnn_family_t family, const double *expect);

/* The p_k loss of x (n images) alone. */
double adnn_test_pk_loss(adnn_model_t *m, const float *x, int n);

/* Three directional derivatives of the p_k loss at x (n images) along random
 * directions (rng seed) against dx, central differences with step h:
 * |fd - dot| <= 5e-2 |fd| + 5e-5. what prefixes the failure message. */
void adnn_test_check_pk_fd(adnn_model_t *m, const float *x, int n, const float *dx, double h,
                           uint64_t seed, const char *what);

/* Early-exit families: p_k count K, each p in (0, 1], the loss is -mean log p
 * and its input gradient matches finite differences (model tau and seed,
 * buffers seed + 1, images seed + 2, directions seed + 3). */
void adnn_test_check_exit_pk_grad(adnn_family_t family, float tau, uint64_t seed, int K);

/* Early-exit families: with exit 0 firing, p_0 < 1 and p_1.. are 1 (seeds
 * 12, 13); then the gradient check at tau 0.05, seed 14. */
void adnn_test_check_first_exit_pk(adnn_family_t family, int K);

/* dL/dp of L = -(1/(nK)) sum log p, for adnn_pk_vjp. */
void adnn_test_dlogp(const float *p, int n, int k, float *dp, void *arg);

/* Early-exit families: adnn_pk_vjp with adnn_test_dlogp equals adnn_pk_grad
 * (p within 1e-6, |dx - dx'|^2 <= 1e-8 |dx|^2) at tau 1 and 0.2. */
void adnn_test_check_pk_vjp(adnn_family_t family, int K);

/* Parameter gradients of the training objective on 4 images (seed + 1) of a
 * model built from s (seed), against central differences (h 1e-4) along one
 * random direction per tensor (seed + 2). */
void adnn_test_check_train_grad(const adnn_spec_t *s, uint64_t seed);
/* The same on a model already built (and configured), which stays the
 * caller's. */
void adnn_test_check_model_train_grad(adnn_model_t *m, uint64_t seed);

/* "/tmp/dp_test_SUITE_TAG_PID" */
void adnn_test_tmp_prefix(char *buf, size_t n, const char *suite, const char *tag);

/* Removes PREFIX.pb and PREFIX.safetensors. */
void adnn_test_remove(const char *prefix);

/* Saves m under prefix and loads it back: same tensors, names and bytes.
 * Returns the loaded model, caller destroys. */
adnn_model_t *adnn_test_round_trip(adnn_model_t *m, const char *prefix);

/* Writes m's tensors to path, leaving out skip, reshaping reshape to [1] and
 * adding a tensor extra of shape [1] (each NULL for none). */
void adnn_test_write_variant(adnn_model_t *m, const char *path, const char *skip,
                             const char *reshape, const char *extra);

/* Weight files at path: missing tensor -> DP_ERR_NOTFOUND naming it, reshaped
 * tensor -> DP_ERR_MISMATCH naming it, truncated file -> DP_ERR_TRUNCATED
 * naming the file. The truncated file is left at path. */
void adnn_test_check_malformed(adnn_model_t *m, const char *path, const char *missing,
                               const char *reshaped);

/* Early-exit families: a model (tau 0.7, seed 21, buffers 22) saved under
 * /tmp/dp_test_SUITE_rt_PID loads back with the same family, tensors and
 * decision (prediction and exit) on image seed 23. */
void adnn_test_check_weights_round_trip(adnn_family_t family, const char *suite);

/* Early-exit families: adnn_test_check_malformed on a model (tau 0.9, seed
 * 31) at /tmp/dp_test_SUITE_bad_PID.safetensors, removed afterwards. */
void adnn_test_check_malformed_weights(adnn_family_t family, const char *suite, const char *missing,
                                       const char *reshaped);

/* A shipped model on the first 2,000 Fashion-MNIST test images. */
typedef struct adnn_test_shipped {
    adnn_spec_t spec;    /* the loaded model's spec */
    double accuracy;     /* correct / n */
    double mean, lo, hi; /* executed fraction (reference FLOPs) */
    int distinct_masks;  /* distinct run patterns of the first 6 blocks */
} adnn_test_shipped_t;

/* Skips the test when Fashion-MNIST is absent, or when PREFIX.pb is absent
 * and may_be_absent; asserts accuracy >= min_accuracy and a mean executed
 * fraction in [0.30, 0.80]; *r receives the figures. */
void adnn_test_check_shipped(const char *prefix, int may_be_absent, double min_accuracy,
                             adnn_test_shipped_t *r);

#endif
