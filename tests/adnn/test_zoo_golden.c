/* Cross-check of the shipped zoo models against PyTorch.
 *
 * tests/ref/make_zoo_fixtures.py defines each family in PyTorch
 * (tests/ref/zoo_models.py), loads the same models/NAME.safetensors and writes
 * tests/fixtures/zoo/NAME.bin for a few fixed Fashion-MNIST test images. Here
 * the C model loaded from models/NAME runs the same images and must agree:
 * - same decisions: prediction, exit taken, blocks run (each block), and the
 *   reference-convention FLOPs of the adaptive forward (exactly);
 * - every exit's logits (adnn_eval_batch at batch 1) within 1e-4 absolute,
 *   exit confidences within 1e-4;
 * - p_k: |log p_ours - log p_torch| <= 1e-3 (p_k can be 1e-6 for a
 *   confident exit, so the log is the meaningful scale), the batch-1 loss
 *   within 1e-4 relative, and dL/dx within 1e-3 of its largest magnitude;
 * - the same at batch n (all fixture images at once): loss = mean of the
 *   per-image losses, dx = per-image dx / n.
 * A family whose model is not shipped (models/NAME.pb absent) or has no
 * fixture yet is skipped with a message. ZOO_VERBOSE=1 prints the error
 * figures; ZOO_MODELS_DIR and ZOO_FIXTURES_DIR point the test elsewhere (to
 * check a mirror against a model that is not shipped). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../nn/golden.h"
#include "adnn/adnn.h"

#define LOGIT_TOL 1e-4
#define CONF_TOL  1e-4
#define LOGP_TOL  1e-3
#define LOSS_TOL  1e-4
#define GRAD_TOL  1e-3

typedef struct zoo_figs {
    double logit, conf, logp, loss, dx, dx_batch;
} zoo_figs_t;

static double max_d(double a, double b) { return a > b ? a : b; }

static void check_model(const char *name)
{
    char fix[1024], prefix[1024], pb[1100];
    const char *fdir = getenv("ZOO_FIXTURES_DIR"), *mdir = getenv("ZOO_MODELS_DIR");
    if (fdir)
        snprintf(fix, sizeof fix, "%s/%s.bin", fdir, name);
    else
        snprintf(fix, sizeof fix, "%s/tests/fixtures/zoo/%s.bin", DP_SOURCE_DIR, name);
    if (mdir)
        snprintf(prefix, sizeof prefix, "%s/%s", mdir, name);
    else
        snprintf(prefix, sizeof prefix, "%s/models/%s", DP_SOURCE_DIR, name);
    snprintf(pb, sizeof pb, "%s.pb", prefix);
    if (access(pb, R_OK) != 0) cr_skip_test("%s: model not shipped (%s)", name, pb);
    if (access(fix, R_OK) != 0)
        cr_skip_test("%s: no fixture %s: run tests/ref/make_zoo_fixtures.py --only %s", name, fix,
                     name);
    golden_t *g = NULL;
    cr_assert_eq(golden_load(fix, &g), DP_OK, "%s", dp_err_detail());
    adnn_model_t *m = NULL;
    cr_assert_eq(adnn_model_load(prefix, &m), DP_OK, "%s", dp_err_detail());
    const adnn_spec_t *s = adnn_model_spec(m);

    const int32_t *meta = golden_i32(g, "meta", 1, 7);
    cr_assert_not_null(meta, "%s", dp_err_detail());
    int n = meta[0], E = meta[2], K = meta[3], nb = meta[4], npk = meta[5];
    cr_assert_eq((int)s->family, meta[1], "%s: family", name);
    cr_assert_eq(s->nexits, E, "%s: exits", name);
    cr_assert_eq(s->num_classes, K, "%s: classes", name);
    cr_assert_eq(adnn_pk_count(m), npk, "%s: p_k count", name);
    cr_assert_eq(adnn_flops_full(m, 0), (double)meta[6], "%s: full FLOPs %.0f, torch %d", name,
                 adnn_flops_full(m, 0), meta[6]);
    int c = s->c, h = s->h, w = s->w;
    size_t isz = (size_t)c * h * w;
    const float *x = golden_f32(g, "x", 4, n, c, h, w);
    const int32_t *pred = golden_i32(g, "pred", 1, n);
    const int32_t *taken = golden_i32(g, "exit_taken", 1, n);
    const int32_t *brun = golden_i32(g, "blocks_run", 1, n);
    const int32_t *ran = golden_i32(g, "ran", 2, n, nb);
    const float *conf = golden_f32(g, "conf", 2, n, E + 1);
    const float *logits = golden_f32(g, "logits", 3, n, E + 1, K);
    const int32_t *flops = golden_i32(g, "flops_ref", 1, n);
    const float *pk = golden_f32(g, "pk", 2, n, npk);
    const float *loss = golden_f32(g, "loss", 1, n);
    const float *dx = golden_f32(g, "dx", 4, n, c, h, w);
    cr_assert(x && pred && taken && brun && ran && conf && logits && flops && pk && loss && dx,
              "%s: %s", fix, dp_err_detail());

    float *z = malloc(sizeof(float) * (size_t)(E + 1) * K);
    float *p = malloc(sizeof(float) * (size_t)n * (npk ? npk : 1));
    float *gx = malloc(sizeof(float) * (size_t)n * isz);
    cr_assert(z && p && gx);
    zoo_figs_t f = {0};
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * isz;
        adnn_trace_t t;
        adnn_forward_adaptive(m, xi, &t);
        cr_assert_eq(t.pred, pred[i], "%s image %d: pred %d, torch %d", name, i, t.pred, pred[i]);
        cr_assert_eq(t.exit_taken, taken[i], "%s image %d: exit %d, torch %d", name, i,
                     t.exit_taken, taken[i]);
        cr_assert_eq(t.blocks_run, brun[i], "%s image %d: blocks run %d, torch %d", name, i,
                     t.blocks_run, brun[i]);
        cr_assert_eq(t.nblocks, nb);
        for (int b = 0; b < nb; b++)
            cr_assert_eq(t.ran[b], ran[i * nb + b], "%s image %d: block %d ran %d, torch %d", name,
                         i, b, t.ran[b], ran[i * nb + b]);
        cr_assert_eq(t.flops_ref, (double)flops[i], "%s image %d: FLOPs %.0f, torch %d", name, i,
                     t.flops_ref, flops[i]);
        for (int k = 0; k <= E; k++) {
            double e = fabs(t.conf[k] - conf[i * (E + 1) + k]);
            f.conf = max_d(f.conf, e);
            cr_assert_leq(e, CONF_TOL, "%s image %d exit %d: conf %g, torch %g", name, i, k,
                          t.conf[k], conf[i * (E + 1) + k]);
        }
        /* every exit's logits, all blocks run */
        cr_assert_eq(adnn_eval_batch(m, xi, 1, z), DP_OK, "%s", dp_err_detail());
        golden_err_t el = golden_compare(z, logits + (size_t)i * (E + 1) * K, (size_t)(E + 1) * K);
        f.logit = max_d(f.logit, el.max_abs);
        cr_assert_leq(el.max_abs, LOGIT_TOL, "%s image %d: logits differ by %g at [%zu]", name, i,
                      el.max_abs, el.worst);
        /* p_k and the input gradient at batch 1 */
        double l = 0;
        cr_assert_eq(adnn_pk_grad(m, xi, 1, p, &l, gx), DP_OK, "%s", dp_err_detail());
        for (int k = 0; k < npk; k++) {
            double e = fabs(log((double)p[k]) - log((double)pk[i * npk + k]));
            f.logp = max_d(f.logp, e);
            cr_assert_leq(e, LOGP_TOL, "%s image %d: p_%d %g, torch %g", name, i, k, p[k],
                          pk[i * npk + k]);
        }
        double el2 = fabs(l - loss[i]) / max_d(fabs(loss[i]), 1.0);
        f.loss = max_d(f.loss, el2);
        cr_assert_leq(el2, LOSS_TOL, "%s image %d: loss %.7g, torch %.7g", name, i, l, loss[i]);
        golden_err_t eg = golden_compare(gx, dx + (size_t)i * isz, isz);
        f.dx = max_d(f.dx, eg.rel);
        cr_assert_leq(eg.rel, GRAD_TOL, "%s image %d: dx differs by %g (rel %g, max |dx| %g)", name,
                      i, eg.max_abs, eg.rel, eg.max_ref);
    }
    /* batch n: the loss is the mean over images, so each dx is scaled by 1/n */
    double lb = 0, lmean = 0;
    cr_assert_eq(adnn_pk_grad(m, x, n, p, &lb, gx), DP_OK, "%s", dp_err_detail());
    for (int i = 0; i < n; i++) lmean += loss[i] / n;
    cr_assert_leq(fabs(lb - lmean) / max_d(fabs(lmean), 1.0), LOSS_TOL,
                  "%s batch %d: loss %.7g, torch mean %.7g", name, n, lb, lmean);
    for (int i = 0; i < n; i++) {
        float *gi = gx + (size_t)i * isz;
        for (size_t j = 0; j < isz; j++) gi[j] *= (float)n;
        golden_err_t eg = golden_compare(gi, dx + (size_t)i * isz, isz);
        f.dx_batch = max_d(f.dx_batch, eg.rel);
        cr_assert_leq(eg.rel, GRAD_TOL, "%s batch %d image %d: dx rel %g", name, n, i, eg.rel);
    }
    if (getenv("ZOO_VERBOSE"))
        fprintf(stderr,
                "%s: %d images, decisions agree; max |logit| err %.2e, conf %.2e, log p_k %.2e, "
                "loss rel %.2e, dx rel %.2e (batch %d: %.2e)\n",
                name, n, f.logit, f.conf, f.logp, f.loss, f.dx, n, f.dx_batch);
    free(z);
    free(p);
    free(gx);
    adnn_model_destroy(&m);
    golden_destroy(&g);
}

Test(zoo_golden, sdn_resnet) { check_model("sdn_resnet"); }
Test(zoo_golden, sdn_mobilenet) { check_model("sdn_mobilenet"); }
Test(zoo_golden, blockdrop) { check_model("blockdrop"); }
Test(zoo_golden, ranet) { check_model("ranet"); }
Test(zoo_golden, skipnet) { check_model("skipnet"); }
