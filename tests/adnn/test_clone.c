/* core/adnn: adnn_model_clone. For every model the zoo ships (models/), the
 * copy holds the same tensors bit for bit in blocks of its own, and gives
 * the same bits as the original on Fashion-MNIST test images (adaptive
 * forward traces, every exit's logits, p_k and their input gradient) after
 * the original is destroyed; a training copy carries the Adam state. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adnn/adnn.h"
#include "adnn_testlib.h"
#include "data/dataset.h"

#define IMG           ADNN_TEST_IMG
#define NIMG          4
#define FMNIST        "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
#define FMNIST_LABELS "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz"

/* What a model gives on x (NIMG images): traces, logits, p_k and dx. */
typedef struct outputs {
    adnn_trace_t trace[NIMG];
    float *logits, *p, *dx;
    double loss;
} outputs_t;

static void run_model(adnn_model_t *m, const float *x, outputs_t *o, const char *name)
{
    const adnn_spec_t *s = adnn_model_spec(m);
    int K = adnn_pk_count(m);
    o->logits = calloc((size_t)NIMG * (s->nexits + 1) * s->num_classes, sizeof(float));
    o->p = calloc((size_t)NIMG * K, sizeof(float));
    o->dx = calloc((size_t)NIMG * IMG, sizeof(float));
    cr_assert(o->logits && o->p && o->dx);
    for (int i = 0; i < NIMG; i++) adnn_forward_adaptive(m, x + (size_t)i * IMG, &o->trace[i]);
    cr_assert_eq(adnn_eval_batch(m, x, NIMG, o->logits), DP_OK, "%s: %s", name, dp_err_detail());
    cr_assert_eq(adnn_pk_grad(m, x, NIMG, o->p, &o->loss, o->dx), DP_OK, "%s: %s", name,
                 dp_err_detail());
}

static void free_outputs(outputs_t *o)
{
    free(o->logits);
    free(o->p);
    free(o->dx);
}

static void check_shipped(const char *name)
{
    if (access(FMNIST, R_OK) != 0) cr_skip_test("Fashion-MNIST not installed");
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%s/models/%s", DP_SOURCE_DIR, name);
    dp_dataset_t *d = NULL;
    cr_assert_eq(dp_dataset_load_idx(FMNIST, FMNIST_LABELS, &d), DP_OK, "%s", dp_err_detail());
    adnn_model_t *m = NULL, *c = NULL;
    cr_assert_eq(adnn_model_load(prefix, &m), DP_OK, "%s: %s", name, dp_err_detail());
    const float *x = d->images + (size_t)100 * IMG; /* a few images past the first */
    outputs_t a, b;
    run_model(m, x, &a, name); /* the original has used its arena before the copy */
    cr_assert_eq(adnn_model_clone(m, &c), DP_OK, "%s: %s", name, dp_err_detail());
    cr_assert_not_null(c);
    const adnn_spec_t *sm = adnn_model_spec(m), *sc = adnn_model_spec(c);
    cr_assert_eq(memcmp(sm, sc, sizeof *sm), 0, "%s: spec differs", name);
    cr_assert_eq(adnn_tensor_count(c), adnn_tensor_count(m));
    int buffers = 0;
    for (size_t i = 0; i < adnn_tensor_count(m); i++) {
        adnn_tensor_info_t tm, tc;
        adnn_tensor_at(m, i, &tm);
        adnn_tensor_at(c, i, &tc);
        cr_assert_str_eq(tc.name, tm.name);
        cr_assert(tc.numel == tm.numel && tc.trainable == tm.trainable && tc.ndim == tm.ndim);
        cr_assert_neq(tc.data, tm.data, "%s: %s shared", name, tm.name);
        cr_assert_eq(memcmp(tc.data, tm.data, tm.numel * sizeof(float)), 0, "%s: %s differs", name,
                     tm.name);
        buffers += !tm.trainable;
    }
    cr_assert_gt(buffers, 0, "%s: no BatchNorm statistics to copy", name);
    adnn_model_destroy(&m); /* the copy must not lean on the original */
    run_model(c, x, &b, name);
    size_t nl = (size_t)NIMG * (sc->nexits + 1) * sc->num_classes;
    size_t np = (size_t)NIMG * adnn_pk_count(c);
    cr_assert_eq(memcmp(a.trace, b.trace, sizeof a.trace), 0, "%s: adaptive traces differ", name);
    cr_assert_eq(memcmp(a.logits, b.logits, nl * sizeof(float)), 0, "%s: logits differ", name);
    cr_assert_eq(memcmp(a.p, b.p, np * sizeof(float)), 0, "%s: p_k differ", name);
    cr_assert_eq(memcmp(a.dx, b.dx, (size_t)NIMG * IMG * sizeof(float)), 0, "%s: dx differs", name);
    cr_assert(a.loss == b.loss, "%s: loss %.17g vs %.17g", name, a.loss, b.loss);
    free_outputs(&a);
    free_outputs(&b);
    adnn_model_destroy(&c);
    dp_dataset_destroy(&d);
}

Test(clone, blockdrop) { check_shipped("blockdrop"); }
Test(clone, ranet) { check_shipped("ranet"); }
Test(clone, sdn_mobilenet) { check_shipped("sdn_mobilenet"); }
Test(clone, sdn_resnet) { check_shipped("sdn_resnet"); }
Test(clone, skipnet) { check_shipped("skipnet"); }
Test(clone, skipnet_ff) { check_shipped("skipnet_ff"); }

/* A copy taken mid-training carries the Adam moments and step: one more
 * train step and Adam step on each gives the same parameters. */
Test(clone, carries_training_state)
{
    adnn_spec_t s = adnn_test_small_sdn_spec(ADNN_FAMILY_SDN_RESNET);
    adnn_model_t *m = adnn_test_build(&s, 3), *c = NULL;
    float x[4 * IMG];
    int32_t y[4] = {1, 7, 3, 0};
    adnn_test_fill_images(x, 4 * IMG, 4);
    double la, lb;
    for (int it = 0; it < 2; it++) {
        cr_assert_eq(adnn_train_step(m, x, y, 4, &la, NULL), DP_OK, "%s", dp_err_detail());
        adnn_adam_step(m, 1e-2f);
    }
    cr_assert_eq(adnn_model_clone(m, &c), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(adnn_train_step(m, x, y, 4, &la, NULL), DP_OK);
    adnn_adam_step(m, 1e-2f);
    cr_assert_eq(adnn_train_step(c, x, y, 4, &lb, NULL), DP_OK);
    adnn_adam_step(c, 1e-2f);
    cr_assert(la == lb, "loss %.17g vs %.17g", la, lb);
    for (size_t i = 0; i < adnn_tensor_count(m); i++) {
        adnn_tensor_info_t tm, tc;
        adnn_tensor_at(m, i, &tm);
        adnn_tensor_at(c, i, &tc);
        cr_assert_eq(memcmp(tc.data, tm.data, tm.numel * sizeof(float)), 0, "%s differs", tm.name);
    }
    adnn_model_destroy(&m);
    adnn_model_destroy(&c);
}
