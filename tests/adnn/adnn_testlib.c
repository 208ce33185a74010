/* Helpers shared by the core/adnn Criterion suites (adnn_testlib.h). The
 * thresholds, seeds and images are the ones each suite used when it carried
 * its own copy; a suite passes its family-specific figures as arguments. */
#include "adnn_testlib.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/dataset.h"
#include "nn/safetensors.h"
#include "util/rng.h"

#define IMG ADNN_TEST_IMG

adnn_spec_t adnn_test_spec(adnn_family_t family)
{
    adnn_spec_t s;
    cr_assert_eq(adnn_spec_default(family, &s), DP_OK, "%s", dp_err_detail());
    return s;
}

adnn_model_t *adnn_test_build(const adnn_spec_t *s, uint64_t seed)
{
    adnn_model_t *m = NULL;
    cr_assert_eq(adnn_model_new(s, seed, &m), DP_OK, "%s", dp_err_detail());
    return m;
}

adnn_model_t *adnn_test_model(adnn_family_t family, float tau, uint64_t seed)
{
    adnn_spec_t s = adnn_test_spec(family);
    s.exit_tau = tau > 1.0f ? 1.0f : tau;
    adnn_model_t *m = adnn_test_build(&s, seed);
    if (tau > 1.0f) ((adnn_spec_t *)adnn_model_spec(m))->exit_tau = tau; /* exits disabled */
    return m;
}

void adnn_test_perturb_buffers(adnn_model_t *m, uint64_t seed)
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

void adnn_test_fill_images(float *x, size_t n, uint64_t seed)
{
    dp_rng_t r;
    dp_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) x[i] = dp_rng_uniform(&r);
}

float *adnn_test_tensor(adnn_model_t *m, const char *name, size_t *numel)
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

double adnn_test_conv(int cin, int cout, int k, int hout)
{
    return 2.0 * cin * cout * k * k * hout * hout;
}

double adnn_test_resnet_backbone_flops(void)
{
    double f = adnn_test_conv(1, 16, 3, 28);
    /* block 0 (stride 2, 1x1 shortcut), block 1 */
    f += adnn_test_conv(16, 16, 3, 14) * 2 + adnn_test_conv(16, 16, 1, 14);
    f += adnn_test_conv(16, 16, 3, 14) * 2;
    f += adnn_test_conv(16, 32, 3, 7) + adnn_test_conv(32, 32, 3, 7) + adnn_test_conv(16, 32, 1, 7);
    f += adnn_test_conv(32, 32, 3, 7) * 2;
    f += adnn_test_conv(32, 64, 3, 4) + adnn_test_conv(64, 64, 3, 4) + adnn_test_conv(32, 64, 1, 4);
    f += adnn_test_conv(64, 64, 3, 4) * 2;
    return f + 2.0 * 64 * 10;
}

void adnn_test_check_flops_full(adnn_model_t *m, double f, double max_ratio, const char *what)
{
    cr_assert_float_eq(adnn_flops_full(m, 0), f, 0.5, "%s %.0f vs formula %.0f", what,
                       adnn_flops_full(m, 0), f);
    cr_assert_gt(adnn_flops_full(m, 1), f);
    cr_assert_lt(adnn_flops_full(m, 1), max_ratio * f);
}

adnn_spec_t adnn_test_small_sdn_spec(adnn_family_t family)
{
    adnn_spec_t s = adnn_test_spec(family);
    s.stem_width = 4;
    s.widths[0] = 4, s.widths[1] = 6, s.widths[2] = 8;
    s.blocks[0] = 1, s.blocks[1] = 1, s.blocks[2] = 1;
    s.nexits = 2;
    s.exit_after[0] = 0, s.exit_after[1] = 1;
    s.exit_weights[0] = 0.3f, s.exit_weights[1] = 0.6f, s.exit_weights[2] = 1.0f;
    return s;
}

int adnn_test_argmax(const float *z, int k)
{
    int b = 0;
    for (int j = 1; j < k; j++)
        if (z[j] > z[b]) b = j;
    return b;
}

double adnn_test_max_prob(const float *z, int k)
{
    int best = adnn_test_argmax(z, k);
    double se = 0;
    for (int j = 0; j < k; j++) se += exp(z[j] - z[best]);
    return 1.0 / se;
}

void adnn_test_check_adaptive_matches_batch(adnn_model_t *m, int n, int nblocks)
{
    const adnn_spec_t *s = adnn_model_spec(m);
    int E = s->nexits, K = s->num_classes;
    float *x = malloc(sizeof(float) * (size_t)n * IMG);
    float *logits = malloc(sizeof(float) * (size_t)n * (E + 1) * K);
    adnn_test_fill_images(x, (size_t)n * IMG, 5);
    cr_assert_eq(adnn_eval_batch(m, x, n, logits), DP_OK);
    for (int i = 0; i < n; i++) {
        adnn_trace_t t;
        adnn_forward_adaptive(m, x + i * IMG, &t);
        cr_assert_eq(t.blocks_run, t.nblocks);
        if (nblocks > 0) cr_assert_eq(t.nblocks, nblocks);
        cr_assert_eq(t.exit_taken, E);
        for (int k = 0; k <= E; k++) {
            const float *z = logits + ((size_t)i * (E + 1) + k) * K;
            cr_assert_float_eq(t.conf[k], adnn_test_max_prob(z, K), 1e-4, "image %d exit %d", i, k);
            if (k == E) cr_assert_eq(t.pred, adnn_test_argmax(z, K), "image %d", i);
        }
        cr_assert_float_eq(t.flops_ref, adnn_flops_full(m, 0), 0.5);
        cr_assert_float_eq(t.flops_exact, adnn_flops_full(m, 1), 0.5);
    }
    free(logits);
    free(x);
}

void adnn_test_check_first_exit_trace(adnn_model_t *m, adnn_trace_t *t)
{
    float x[IMG];
    adnn_test_fill_images(x, IMG, 9);
    adnn_forward_adaptive(m, x, t);
    const adnn_spec_t *s = adnn_model_spec(m);
    cr_assert_eq(t->exit_taken, 0);
    cr_assert_eq(t->blocks_run, s->exit_after[0] + 1);
    for (int b = s->exit_after[0] + 1; b < t->nblocks; b++)
        cr_assert_eq(t->ran[b], 0, "block %d", b);
}

void adnn_test_check_later_exit(adnn_family_t family, const double *expect)
{
    adnn_model_t *m = adnn_test_model(family, 1.5f, 7);
    adnn_test_perturb_buffers(m, 8);
    adnn_spec_t *s = (adnn_spec_t *)adnn_model_spec(m);
    float x[IMG];
    int found = 0;
    for (int img = 0; img < 200 && !found; img++) {
        adnn_test_fill_images(x, IMG, 100 + (uint64_t)img);
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
                cr_assert_float_eq(u.flops_ref, expect[k], 0.5);
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

double adnn_test_pk_loss(adnn_model_t *m, const float *x, int n)
{
    float *p = malloc(sizeof(float) * (size_t)n * (size_t)adnn_pk_count(m));
    double l;
    cr_assert_eq(adnn_pk_grad(m, x, n, p, &l, NULL), DP_OK);
    free(p);
    return l;
}

void adnn_test_check_pk_fd(adnn_model_t *m, const float *x, int n, const float *dx, double h,
                           uint64_t seed, const char *what)
{
    size_t len = (size_t)n * IMG;
    float *v = malloc(len * sizeof(float)), *xp = malloc(len * sizeof(float));
    dp_rng_t r;
    dp_rng_seed(&r, seed);
    for (int trial = 0; trial < 3; trial++) {
        double dot = 0;
        for (size_t i = 0; i < len; i++) {
            v[i] = dp_rng_normal(&r) / 28.0f;
            dot += (double)v[i] * dx[i];
        }
        for (size_t i = 0; i < len; i++) xp[i] = x[i] + (float)h * v[i];
        double lp = adnn_test_pk_loss(m, xp, n);
        for (size_t i = 0; i < len; i++) xp[i] = x[i] - (float)h * v[i];
        double lm = adnn_test_pk_loss(m, xp, n);
        double fd = (lp - lm) / (2 * h);
        cr_assert(fabs(fd - dot) <= 5e-2 * fabs(fd) + 5e-5,
                  "%s trial %d: finite difference %.6g, gradient %.6g", what, trial, fd, dot);
    }
    free(v);
    free(xp);
}

void adnn_test_check_exit_pk_grad(adnn_family_t family, float tau, uint64_t seed, int K)
{
    adnn_model_t *m = adnn_test_model(family, tau, seed);
    adnn_test_perturb_buffers(m, seed + 1);
    int n = 2;
    cr_assert_eq(adnn_pk_count(m), K);
    float x[2 * IMG], dx[2 * IMG], p[2 * ADNN_MAX_EXITS];
    adnn_test_fill_images(x, 2 * IMG, seed + 2);
    double l;
    cr_assert_eq(adnn_pk_grad(m, x, n, p, &l, dx), DP_OK);
    double expect = 0;
    for (int i = 0; i < n * K; i++) {
        cr_assert(p[i] > 0 && p[i] <= 1, "p[%d] = %g", i, p[i]);
        expect -= log(p[i]);
    }
    cr_assert_float_eq(l, expect / (n * K), 1e-5);
    /* h = 2e-3: larger steps cross ReLU and max-pool kinks */
    char what[32];
    snprintf(what, sizeof what, "tau %g", tau);
    adnn_test_check_pk_fd(m, x, n, dx, 2e-3, seed + 3, what);
    adnn_model_destroy(&m);
}

void adnn_test_check_first_exit_pk(adnn_family_t family, int K)
{
    /* tau below 1/K: exit 0 fires, p_1.. are 1 and carry no gradient */
    adnn_model_t *m = adnn_test_model(family, 0.05f, 12);
    float x[IMG], dx[IMG], p[ADNN_MAX_EXITS];
    adnn_test_fill_images(x, IMG, 13);
    double l;
    cr_assert_eq(adnn_pk_grad(m, x, 1, p, &l, dx), DP_OK);
    cr_assert(p[0] < 1.0f);
    for (int k = 1; k < K; k++) cr_assert_eq(p[k], 1.0f);
    adnn_model_destroy(&m);
    adnn_test_check_exit_pk_grad(family, 0.05f, 14, K);
}

void adnn_test_dlogp(const float *p, int n, int k, float *dp, void *arg)
{
    (void)arg;
    for (int i = 0; i < n * k; i++) dp[i] = -1.0f / ((float)(n * k) * p[i]);
}

void adnn_test_check_pk_vjp(adnn_family_t family, int K)
{
    for (int trial = 0; trial < 2; trial++) {
        adnn_model_t *m = adnn_test_model(family, trial ? 0.2f : 1.0f, 61 + trial);
        adnn_test_perturb_buffers(m, 62);
        float x[2 * IMG], g1[2 * IMG], g2[2 * IMG], p1[2 * ADNN_MAX_EXITS], p2[2 * ADNN_MAX_EXITS];
        adnn_test_fill_images(x, 2 * IMG, 63);
        double l;
        cr_assert_eq(adnn_pk_grad(m, x, 2, p1, &l, g1), DP_OK);
        cr_assert_eq(adnn_pk_vjp(m, x, 2, adnn_test_dlogp, NULL, p2, g2), DP_OK, "%s",
                     dp_err_detail());
        for (int i = 0; i < 2 * K; i++) cr_assert_float_eq(p1[i], p2[i], 1e-6, "p[%d]", i);
        double num = 0, den = 0;
        for (int i = 0; i < 2 * IMG; i++) {
            num += ((double)g1[i] - g2[i]) * ((double)g1[i] - g2[i]);
            den += (double)g1[i] * g1[i];
        }
        cr_assert(den > 0 && num <= 1e-8 * den, "relative error %g", sqrt(num / den));
        adnn_model_destroy(&m);
    }
}

void adnn_test_check_train_grad(const adnn_spec_t *s, uint64_t seed)
{
    adnn_model_t *m = adnn_test_build(s, seed);
    adnn_test_check_model_train_grad(m, seed);
    adnn_model_destroy(&m);
}

void adnn_test_check_model_train_grad(adnn_model_t *m, uint64_t seed)
{
    int n = 4;
    float x[4 * IMG];
    int32_t y[4] = {1, 3, 5, 7};
    adnn_test_fill_images(x, 4 * IMG, seed + 1);
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
    const double h = 1e-4; /* larger steps cross ReLU kinks (checked: converges as h falls) */
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
}

void adnn_test_tmp_prefix(char *buf, size_t n, const char *suite, const char *tag)
{
    snprintf(buf, n, "/tmp/dp_test_%s_%s_%d", suite, tag, (int)getpid());
}

void adnn_test_remove(const char *prefix)
{
    char p[512];
    snprintf(p, sizeof p, "%s.pb", prefix);
    unlink(p);
    snprintf(p, sizeof p, "%s.safetensors", prefix);
    unlink(p);
}

adnn_model_t *adnn_test_round_trip(adnn_model_t *m, const char *prefix)
{
    adnn_model_t *l = NULL;
    cr_assert_eq(adnn_model_save(m, prefix), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(adnn_model_load(prefix, &l), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(adnn_tensor_count(l), adnn_tensor_count(m));
    for (size_t i = 0; i < adnn_tensor_count(m); i++) {
        adnn_tensor_info_t a, b;
        adnn_tensor_at(m, i, &a);
        adnn_tensor_at(l, i, &b);
        cr_assert_str_eq(a.name, b.name);
        cr_assert_eq(memcmp(a.data, b.data, a.numel * sizeof(float)), 0, "%s", a.name);
    }
    return l;
}

void adnn_test_write_variant(adnn_model_t *m, const char *path, const char *skip,
                             const char *reshape, const char *extra)
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
    if (extra) cr_assert_eq(st_writer_add_f32(w, extra, 1, s1, &one), DP_OK);
    cr_assert_eq(st_writer_write(w, path), DP_OK);
    st_writer_destroy(&w);
}

void adnn_test_check_malformed(adnn_model_t *m, const char *path, const char *missing,
                               const char *reshaped)
{
    adnn_test_write_variant(m, path, missing, NULL, NULL);
    cr_assert_eq(adnn_weights_load(m, path), DP_ERR_NOTFOUND);
    cr_assert(strstr(dp_err_detail(), missing), "%s", dp_err_detail());

    adnn_test_write_variant(m, path, NULL, reshaped, NULL);
    cr_assert_eq(adnn_weights_load(m, path), DP_ERR_MISMATCH);
    cr_assert(strstr(dp_err_detail(), reshaped), "%s", dp_err_detail());

    /* truncated: the data buffer ends early */
    adnn_test_write_variant(m, path, NULL, NULL, NULL);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fclose(f);
    cr_assert_eq(truncate(path, len - 100), 0);
    cr_assert_eq(adnn_weights_load(m, path), DP_ERR_TRUNCATED);
    cr_assert(strstr(dp_err_detail(), path), "%s", dp_err_detail());
}

void adnn_test_check_weights_round_trip(adnn_family_t family, const char *suite)
{
    adnn_model_t *m = adnn_test_model(family, 0.7f, 21);
    adnn_test_perturb_buffers(m, 22);
    char pre[256];
    adnn_test_tmp_prefix(pre, sizeof pre, suite, "rt");
    adnn_model_t *l = adnn_test_round_trip(m, pre);
    cr_assert_eq(adnn_model_spec(l)->family, family);
    float x[IMG];
    adnn_test_fill_images(x, IMG, 23);
    adnn_trace_t ta, tb;
    adnn_forward_adaptive(m, x, &ta);
    adnn_forward_adaptive(l, x, &tb);
    cr_assert_eq(ta.pred, tb.pred);
    cr_assert_eq(ta.exit_taken, tb.exit_taken);
    adnn_test_remove(pre);
    adnn_model_destroy(&m);
    adnn_model_destroy(&l);
}

void adnn_test_check_malformed_weights(adnn_family_t family, const char *suite, const char *missing,
                                       const char *reshaped)
{
    adnn_model_t *m = adnn_test_model(family, 0.9f, 31);
    char pre[256], path[300];
    adnn_test_tmp_prefix(pre, sizeof pre, suite, "bad");
    snprintf(path, sizeof path, "%s.safetensors", pre);
    adnn_test_check_malformed(m, path, missing, reshaped);
    unlink(path);
    adnn_model_destroy(&m);
}

void adnn_test_check_shipped(const char *prefix, int may_be_absent, double min_accuracy,
                             adnn_test_shipped_t *r)
{
    const char *img = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
    const char *lbl = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz";
    char pb[512];
    snprintf(pb, sizeof pb, "%s.pb", prefix);
    if (access(img, R_OK) != 0) cr_skip_test("Fashion-MNIST not installed");
    if (may_be_absent && access(pb, R_OK) != 0) cr_skip_test("%s not shipped", pb);
    dp_dataset_t *d = NULL;
    cr_assert_eq(dp_dataset_load_idx(img, lbl, &d), DP_OK, "%s", dp_err_detail());
    adnn_model_t *m = NULL;
    cr_assert_eq(adnn_model_load(prefix, &m), DP_OK, "%s", dp_err_detail());
    r->spec = *adnn_model_spec(m);
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
    r->accuracy = (double)correct / n;
    r->mean = sum / n;
    r->lo = lo;
    r->hi = hi;
    r->distinct_masks = distinct;
    cr_assert_geq(r->accuracy, min_accuracy, "accuracy %g", r->accuracy);
    cr_assert(r->mean >= 0.30 && r->mean <= 0.80, "mean executed fraction %g", r->mean);
    adnn_model_destroy(&m);
    dp_dataset_destroy(&d);
}
