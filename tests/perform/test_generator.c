/* core/perform generator: whole-network backward against central differences,
 * shapes and range, parameter count, determinism, batch vs single eval,
 * eval outputs bit-identical over thread counts. */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../nn/gradcheck.h"
#include "nn/blas.h"
#include "nn/gemm.h"
#include "perform/generator.h"
#include "util/rng.h"

#ifndef SHARPEN
#define SHARPEN 10.0f
#endif

static perf_gen_config_t tiny_config(void)
{
    perf_gen_config_t c = perf_gen_config_default();
#ifndef TEST_HW
#define TEST_HW 16
#endif
    c.c = 1, c.h = TEST_HW, c.w = TEST_HW; /* 16 -> 14 -> 6 -> 2 (res) -> 5 -> 11 -> (k6) 16 */
    c.width = 8;
    c.max_batch = 2;
    c.seed = 7;
#ifndef TEST_SLOPE
#define TEST_SLOPE 1.0f
#endif
    /* slope 1 makes the network smooth: with float32 forwards, any step large
     * enough to rise above rounding crosses some LeakyReLU kink (see the
     * skipped counts with -DTEST_SLOPE=0.2f) */
    c.slope = TEST_SLOPE, c.res_slope = TEST_SLOPE;
    return c;
}

static const perf_gen_tensor_t *find_tensor(const perf_gen_t *g, const char *name)
{
    for (int i = 0; i < perf_gen_num_tensors(g); i++)
        if (strcmp(perf_gen_tensor(g, i)->name, name) == 0) return perf_gen_tensor(g, i);
    return NULL;
}

static void fill_uniform(float *p, size_t n, uint64_t seed, float lo, float hi)
{
    dp_rng_t r;
    dp_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * dp_rng_uniform(&r);
}

/* Closed-form parameter count (enc, res, dec, attention), for cross-checking. */
static size_t formula_params(size_t c, size_t w, size_t kh, size_t kw)
{
    size_t enc = c * w * 9 + w + w * 2 * w * 9 + 2 * w + 2 * w * 4 * w * 9 + 4 * w;
    size_t a = 4 * w, b = 8 * w;
    size_t res = (a * b * 9 + b * b * 9 + 4 * b + a * b + 2 * b) + 2 * (2 * b * b * 9 + 4 * b) +
                 (b * a * 9 + a * a * 9 + 4 * a + b * a + 2 * a);
    size_t c1 = 2 * w, c2 = w;
    size_t c18 = c1 / 8 ? c1 / 8 : 1, c28 = c2 / 8 ? c2 / 8 : 1;
    size_t att = 2 * (c18 * c1 + c18) + c1 * c1 + c1 + 1 + 2 * (c28 * c2 + c28) + c2 * c2 + c2 + 1;
    size_t dec = a * c1 * 9 + c1 + c1 * c2 * 9 + c2 + c2 * c * kh * kw + c;
    return enc + res + att + dec;
}

Test(generator, param_count_and_macs)
{
    perf_gen_config_t c = perf_gen_config_default();
    c.c = 3, c.h = 32, c.w = 32, c.width = 64, c.max_batch = 1, c.inference_only = 1;
    size_t np = perf_gen_count_params(&c);
    cr_expect_eq(np, formula_params(3, 64, 6, 6), "count %zu", np);
    cr_expect_eq(np, 15788853u, "METHOD says about 15.8M: %zu", np);
    perf_gen_t *g = perf_gen_new(&c);
    cr_assert_not_null(g);
    cr_expect_eq(perf_gen_num_params(g), np);
    double macs = perf_gen_macs(g);
    printf("generator w=64 3x32x32: %zu params, %.3f G MACs per image\n", np, macs / 1e9);
    cr_expect(macs > 0.60e9 && macs < 0.70e9, "MACs %.4g, METHOD says about 0.65G", macs);
    size_t sum = 0;
    for (int i = 0; i < perf_gen_num_tensors(g); i++)
        if (perf_gen_tensor(g, i)->trainable) sum += perf_gen_tensor(g, i)->numel;
    cr_expect_eq(sum, np, "named tensors cover the block");
    perf_gen_destroy(&g);
    cr_expect_null(g);

    perf_gen_config_t t = tiny_config();
    cr_expect_eq(perf_gen_count_params(&t), formula_params(1, 8, 6, 6));
    t.c = 1, t.h = t.w = 28, t.width = 16;
    cr_expect_eq(perf_gen_count_params(&t), formula_params(1, 16, 6, 6));
    t.h = t.w = 8;
    cr_expect_eq(perf_gen_count_params(&t), 0u, "too small an input is refused");
    cr_expect_null(perf_gen_new(&t));
}

Test(generator, names_follow_state_dict)
{
    perf_gen_config_t c = tiny_config();
    perf_gen_t *g = perf_gen_new(&c);
    cr_assert_not_null(g);
    cr_expect_str_eq(perf_gen_tensor(g, 0)->name, "enc0.weight");
    const perf_gen_tensor_t *t = find_tensor(g, "res0.bn1.running_var");
    cr_assert_not_null(t);
    cr_expect_eq(t->trainable, 0);
    cr_expect_null(t->grad);
    cr_expect_eq(t->data[0], 1.0f);
    t = find_tensor(g, "dec2.weight");
    cr_assert_not_null(t);
    cr_expect(t->ndim == 4 && t->shape[0] == 8 && t->shape[1] == 1 && t->shape[2] == 6 &&
              t->shape[3] == 6);
    t = find_tensor(g, "att1.query.weight");
    cr_assert_not_null(t);
    cr_expect(t->shape[0] == 1 && t->shape[1] == 8 && t->shape[2] == 1);
    cr_expect_not_null(find_tensor(g, "res3.sc_bn.bias"));
    cr_expect_null(find_tensor(g, "res1.sc_conv.weight"), "identity shortcut has no conv");
    cr_expect_str_eq(perf_gen_tensor(g, perf_gen_num_tensors(g) - 1)->name, "dec2.bias");
    perf_gen_destroy(&g);
}

Test(generator, shape_range_determinism)
{
    perf_gen_config_t c = perf_gen_config_default();
    c.width = 16, c.max_batch = 3, c.seed = 42;
    perf_gen_t *g1 = perf_gen_new(&c), *g2 = perf_gen_new(&c);
    cr_assert(g1 && g2);
    const size_t img = 28 * 28, np = perf_gen_num_params(g1);
    cr_expect(memcmp(perf_gen_params(g1), perf_gen_params(g2), np * sizeof(float)) == 0);
    float *x = malloc(3 * img * sizeof(float)), *o1 = malloc(3 * img * sizeof(float)),
          *o2 = malloc(3 * img * sizeof(float));
    fill_uniform(x, 3 * img, 3, 0.0f, 1.0f);
    for (int training = 0; training < 2; training++) {
        for (size_t i = 0; i < 3 * img; i++) o1[i] = o2[i] = NAN;
        perf_gen_forward(g1, x, 3, o1, training);
        perf_gen_forward(g2, x, 3, o2, training);
        cr_expect(memcmp(o1, o2, 3 * img * sizeof(float)) == 0, "bit-identical outputs");
        for (size_t i = 0; i < 3 * img; i++)
            cr_assert(isfinite(o1[i]) && o1[i] >= -1.0f && o1[i] <= 1.0f, "out[%zu] = %g", i,
                      o1[i]);
    }
    c.seed = 43;
    perf_gen_t *g3 = perf_gen_new(&c);
    cr_expect(memcmp(perf_gen_params(g1), perf_gen_params(g3), np * sizeof(float)) != 0);
    perf_gen_destroy(&g3);
    perf_gen_destroy(&g1);
    perf_gen_destroy(&g2);
    free(x), free(o1), free(o2);
}

Test(generator, eval_single_matches_batch_row)
{
    perf_gen_config_t c = perf_gen_config_default();
    c.width = 16, c.max_batch = 4;
    perf_gen_t *g = perf_gen_new(&c);
    cr_assert_not_null(g);
    const size_t img = 28 * 28;
    float *x = malloc(4 * img * sizeof(float)), *ob = malloc(4 * img * sizeof(float)),
          *o1 = malloc(img * sizeof(float)), *tmp = malloc(4 * img * sizeof(float));
    fill_uniform(x, 4 * img, 5, 0.0f, 1.0f);
    /* a few training steps so the running statistics are not the initial 0/1 */
    for (int s = 0; s < 3; s++) perf_gen_forward(g, x, 4, tmp, 1);
    perf_gen_forward(g, x, 4, ob, 0);
    for (int b = 0; b < 4; b++) {
        perf_gen_forward(g, x + b * img, 1, o1, 0);
        double md = 0;
        for (size_t i = 0; i < img; i++) md = fmax(md, fabs((double)o1[i] - ob[b * img + i]));
        cr_expect(md <= 1e-5, "image %d: max |single - batch row| = %g", b, md);
    }
    perf_gen_destroy(&g);
    free(x), free(ob), free(o1), free(tmp);
}

static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double md = 0;
    for (size_t i = 0; i < n; i++) md = fmax(md, fabs((double)a[i] - b[i]));
    return md;
}

/* The eval forward's packed-weight convs (nn_gemm) against the OpenBLAS
 * path (taken with the portable kernel), before and after a weight is
 * written through perf_gen_tensor: the packed copy must follow. */
Test(generator, packed_eval_matches_blas_and_follows_weights)
{
    const nn_gemm_path_t best = nn_gemm_get_path();
    if (best == NN_GEMM_PORTABLE) {
        cr_skip_test("no vector gemm kernel here: the eval forward does not pack");
    }
    perf_gen_config_t c = perf_gen_config_default();
    c.width = 16, c.max_batch = 2;
    perf_gen_t *g = perf_gen_new(&c);
    cr_assert_not_null(g);
    const size_t sz = 2 * 28 * 28;
    float *x = malloc(sz * sizeof(float)), *op = malloc(sz * sizeof(float)),
          *ob = malloc(sz * sizeof(float)), *before = malloc(sz * sizeof(float));
    fill_uniform(x, sz, 9, 0.0f, 1.0f);
    for (int step = 0; step < 2; step++) {
        for (int n = 1; n <= 2; n++) {
            perf_gen_forward(g, x, n, op, 0);
            cr_assert_eq(nn_gemm_set_path(NN_GEMM_PORTABLE), 0);
            perf_gen_forward(g, x, n, ob, 0);
            cr_assert_eq(nn_gemm_set_path(best), 0);
            const double md = max_abs_diff(op, ob, (size_t)n * 28 * 28);
            cr_expect(md <= 1e-5, "step %d n %d: max |packed - blas| = %g", step, n, md);
        }
        if (step == 0) {
            memcpy(before, op, sz * sizeof(float));
            const perf_gen_tensor_t *t = find_tensor(g, "res1.conv1.weight");
            for (size_t j = 0; j < t->numel; j++) t->data[j] *= 2.0f;
        }
    }
    cr_expect(max_abs_diff(before, op, sz) > 1e-4, "the weight change did not reach the output");
    perf_gen_destroy(&g);
    free(x), free(op), free(ob), free(before);
}

/* The eval forward on 1, 2 and 5 threads (batch slices on the worker pool,
 * fixed by the batch size; a single image's products cut into units fixed by
 * their shape) gives bit-identical outputs, on the packed path (nn_gemm) and
 * on OpenBLAS alone (portable), at every batch size; and a generator made on 5
 * threads gives the same as one made on 1. At width 32 the residual convs at
 * batch 1 are large enough to be cut. */
static void eval_over_thread_counts(int width, int nmax)
{
    static const int threads[] = {1, 2, 5};
    const int batches[] = {nmax, 2, 1};
    const int saved = nn_get_threads();
    const nn_gemm_path_t best = nn_gemm_get_path();
    perf_gen_config_t c = perf_gen_config_default();
    c.width = width, c.max_batch = nmax;
    const size_t img = 28 * 28, sz = (size_t)nmax * img * sizeof(float);
    float *x = malloc(sz), *ref = malloc(sz), *o1 = malloc(sz), *o5 = malloc(sz);
    fill_uniform(x, (size_t)nmax * img, 11, 0.0f, 1.0f);
    nn_set_threads(1);
    perf_gen_t *g1 = perf_gen_new(&c);
    nn_set_threads(5);
    perf_gen_t *g5 = perf_gen_new(&c);
    cr_assert(g1 && g5);
    nn_set_threads(1);
    /* two training steps so the running statistics are not the initial 0/1 */
    for (int s = 0; s < 2; s++)
        perf_gen_forward(g1, x, nmax, o1, 1), perf_gen_forward(g5, x, nmax, o5, 1);
    for (int path = 0; path < 2; path++) {
        if (path == 0 && best == NN_GEMM_PORTABLE) continue;
        if (path == 1) cr_assert_eq(nn_gemm_set_path(NN_GEMM_PORTABLE), 0);
        const char *pn = nn_gemm_path_name(nn_gemm_get_path());
        for (int b = 0; b < 3; b++) {
            const int n = batches[b];
            const size_t cnt = (size_t)n * img;
            for (int t = 0; t < 3; t++) {
                nn_set_threads(threads[t]);
                perf_gen_forward(g1, x, n, o1, 0);
                perf_gen_forward(g5, x, n, o5, 0);
                if (t == 0) memcpy(ref, o1, cnt * sizeof(float));
                cr_expect(memcmp(o1, ref, cnt * sizeof(float)) == 0,
                          "w%d %s n %d: %d threads vs 1: max |diff| %g", width, pn, n, threads[t],
                          max_abs_diff(o1, ref, cnt));
                cr_expect(memcmp(o5, ref, cnt * sizeof(float)) == 0,
                          "w%d %s n %d on %d threads: made on 5 threads vs 1: max |diff| %g", width,
                          pn, n, threads[t], max_abs_diff(o5, ref, cnt));
            }
        }
    }
    cr_assert_eq(nn_gemm_set_path(best), 0);
    nn_set_threads(saved);
    perf_gen_destroy(&g1);
    perf_gen_destroy(&g5);
    free(x), free(ref), free(o1), free(o5);
}

Test(generator, eval_bit_identical_over_thread_counts, .timeout = 240)
{
    eval_over_thread_counts(32, 7);
    eval_over_thread_counts(16, 20);
}

/* ------------------------------------------------ whole-network gradcheck */

/* The forward runs in float32, so each loss evaluation carries rounding noise
 * of about FLT_EPSILON * sum |out * r| (measured per tensor with gc_noise), and
 * entries differ by orders of magnitude in gradient and curvature. Every probe
 * therefore gets its own step from a ladder (gc_fd_ladder) and an error bar,
 * and must agree within GEN_RTOL plus that bar. A probe whose bar is within
 * GEN_RESOLVE of its gradient is resolved: there the check sees an error that
 * size. Half the probes of every tensor must be resolved, or its check would
 * have no teeth. */
#define GEN_RTOL    1e-3 /* the float32 backward's own rounding */
#define GEN_RESOLVE 2e-2 /* a resolved probe sees an error of 2% of its gradient */
#define GEN_LEVELS  12   /* steps 4 rms .. rms / 512 */

typedef struct fd_ctx {
    perf_gen_t *g;
    const float *x;
    float *out;
    const float *r;
    int n;
    size_t osz;
    uint64_t sig; /* kink signature at the unperturbed point */
    double terms; /* sum |out * r| at the unperturbed point */
} fd_ctx_t;

/* sum(out * r); NAN if the forward changed a LeakyReLU input's sign (only
 * possible with slope != 1), so gc_fd_ladder keeps to the smooth piece. */
static double gen_loss(void *p)
{
    fd_ctx_t *c = p;
    perf_gen_forward(c->g, c->x, c->n, c->out, 1);
    if (TEST_SLOPE != 1.0f && perf_gen_kink_signature(c->g) != c->sig) return NAN;
    return gc_dot(c->out, c->r, c->osz);
}

typedef struct probe_stats {
    double max_rel;       /* max |ana - num| / max(|ana|, |num|) */
    double max_ratio;     /* max |ana - num| / allowed; <= 1 passes */
    double ana, num, bar; /* at the entry with max_ratio */
    size_t worst;
    double eps; /* noise bound of one loss evaluation */
    int checked, failed, resolved, skipped;
} probe_stats_t;

/* Checks `want` entries of x against grad: half of them the largest |grad|,
 * half spread evenly; entries without an estimate (every step crossed a kink)
 * are counted as skipped and replaced by the next candidate. */
static probe_stats_t check_tensor(fd_ctx_t *c, float *x, const float *grad, size_t n, int want)
{
    probe_stats_t st = {0};
    double ss = 0;
    for (size_t j = 0; j < n; j++) ss += (double)x[j] * x[j];
    /* the steps follow the tensor's scale (a conv before a norm is scale
     * invariant): 4 rms down to rms / 512, wide enough for the best step of
     * every entry seen, from rms / 64 (some input pixels) to rms (weights in
     * a wide channel) */
    const double hmax = 4 * fmax(sqrt(ss / n), 0.02);
    /* noise of one evaluation: 4 sigma measured, at least the rounding of
     * the float32 outputs the loss sums */
    const double sigma = gc_noise(gen_loss, c, x, n / 2, 1e-4 * hmax, 16);
    st.eps = fmax(4 * sigma, FLT_EPSILON * c->terms);
    char *used = calloc(n, 1);
    size_t cand = 0;
    for (int k = 0; k < want && cand < 4 * (size_t)want + 8 && st.checked < (int)n; cand++) {
        size_t j = 0;
        if (cand % 2 == 0) { /* largest |grad| not tried yet */
            double best = -1;
            for (size_t i = 0; i < n; i++)
                if (!used[i] && fabs(grad[i]) > best) best = fabs(grad[i]), j = i;
        } else {
            j = gc_probe_index(cand / 2, 2 * (size_t)want + 4, n);
            if (used[j]) continue;
        }
        used[j] = 1;
        gc_fd_t e = gc_fd_ladder(gen_loss, c, x, j, hmax, GEN_LEVELS, st.eps);
        if (!isfinite(e.num)) {
            st.skipped++;
            continue;
        }
        const double ana = grad[j], big = fmax(fabs(ana), fabs(e.num));
        const double ratio = fabs(ana - e.num) / (GEN_RTOL * big + e.bar);
        if (ratio >= st.max_ratio)
            st.max_ratio = ratio, st.ana = ana, st.num = e.num, st.bar = e.bar, st.worst = j;
        st.max_rel = fmax(st.max_rel, fabs(ana - e.num) / fmax(big, 1e-30));
        st.failed += !gc_fd_agrees(&e, ana, GEN_RTOL);
        st.resolved += e.bar <= GEN_RESOLVE * fabs(e.num);
        st.checked++, k++;
    }
    free(used);
    return st;
}

/* The tiny generator with every path mattering, its loss context at x, and
 * the gradients of one forward and backward (parameters in the tensors, the
 * input's in dx). */
typedef struct gen_fd {
    fd_ctx_t ctx;
    float *x, *out, *r, *dx;
} gen_fd_t;

static void gen_fd_setup(gen_fd_t *s)
{
    perf_gen_config_t cfg = tiny_config();
    perf_gen_t *g = perf_gen_new(&cfg);
    cr_assert_not_null(g);
    const int n = 2;
    const size_t osz = (size_t)n * TEST_HW * TEST_HW;
    s->x = malloc(osz * sizeof(float)), s->out = malloc(osz * sizeof(float));
    s->r = malloc(osz * sizeof(float)), s->dx = calloc(osz, sizeof(float));
    cr_assert(s->x && s->out && s->r && s->dx);
    fill_uniform(s->x, osz, 11, 0.0f, 1.0f);
    fill_uniform(s->r, osz, 12, -1.0f, 1.0f);

    /* make every path matter: attention on (gamma != 0, sharper logits) and
     * non-trivial BatchNorm shifts */
    const char *gam[] = {"att0.gamma", "att1.gamma"};
    for (int i = 0; i < 2; i++) find_tensor(g, gam[i])->data[0] = 0.7f;
    const char *sharpen[] = {"att0.query.weight", "att0.key.weight", "att1.query.weight",
                             "att1.key.weight"};
    for (int i = 0; i < 4; i++) {
        const perf_gen_tensor_t *t = find_tensor(g, sharpen[i]);
        for (size_t j = 0; j < t->numel; j++) t->data[j] *= SHARPEN;
    }
    for (int i = 0; i < perf_gen_num_tensors(g); i++) {
        const perf_gen_tensor_t *t = perf_gen_tensor(g, i);
        if (t->trainable && strstr(t->name, "bn") && strstr(t->name, ".bias"))
            fill_uniform(t->data, t->numel, 100 + i, -0.3f, 0.3f);
    }

    s->ctx = (fd_ctx_t){g, s->x, s->out, s->r, n, osz, 0, 0};
    perf_gen_zero_grad(g);
    gen_loss(&s->ctx);
    s->ctx.sig = perf_gen_kink_signature(g);
    for (size_t i = 0; i < osz; i++) s->ctx.terms += fabs((double)s->out[i] * s->r[i]);
    perf_gen_backward(g, s->r, s->dx);
}

static void gen_fd_teardown(gen_fd_t *s)
{
    perf_gen_destroy(&s->ctx.g);
    free(s->x), free(s->out), free(s->r), free(s->dx);
}

/* Checks tensor `name` ("input" for the input) with grad in place of its
 * analytic gradient (NULL: its own). */
static probe_stats_t gen_fd_check(gen_fd_t *s, const char *name, const float *grad)
{
    if (strcmp(name, "input") == 0)
        return check_tensor(&s->ctx, s->x, grad ? grad : s->dx, s->ctx.osz, 8);
    const perf_gen_tensor_t *t = find_tensor(s->ctx.g, name);
    cr_assert(t, "%s", name);
    return check_tensor(&s->ctx, t->data, grad ? grad : t->grad, t->numel, 4);
}

static void print_stats(const char *name, const probe_stats_t *st)
{
    printf("gradcheck %-20s max_rel %.3g, worst [%zu] ana %.7g num %.7g bar %.2g (%.2g of "
           "allowed); %d checked, %d resolved, %d failed, %d skipped; noise %.2g\n",
           name, st->max_rel, st->worst, st->ana, st->num, st->bar, st->max_ratio, st->checked,
           st->resolved, st->failed, st->skipped, st->eps);
}

/* The tensors checked, and after them the input. Not probed, their gradient
 * is exactly zero and only FD noise remains: biases of convs before
 * InstanceNorm, the attention key bias (softmax is shift invariant), res0-2
 * bn2.bias (the next block's norms remove it), and at slope 1 the bn1 biases
 * too. */
static const char *const gen_probe[] = {
    "enc0.weight",         "enc1.weight",       "enc2.weight",       "res0.conv1.weight",
    "res0.bn1.weight",     "res3.bn1.weight",   "res0.conv2.weight", "res0.bn2.weight",
    "res0.sc_conv.weight", "res0.sc_bn.weight", "res1.conv1.weight", "res2.bn1.weight",
    "res3.conv2.weight",   "res3.bn2.bias",     "res3.sc_bn.bias",   "dec0.weight",
    "att0.query.weight",   "att0.key.weight",   "att0.value.weight", "att0.value.bias",
    "att0.gamma",          "dec1.weight",       "att1.query.weight", "att1.key.weight",
    "att1.value.weight",   "att1.gamma",        "dec2.weight",       "dec2.bias"};
#define GEN_NPROBE ((int)(sizeof gen_probe / sizeof gen_probe[0]) + 1)

static const char *probe_name(int i) { return i + 1 < GEN_NPROBE ? gen_probe[i] : "input"; }

Test(generator, backward_matches_finite_differences, .timeout = 240)
{
    gen_fd_t s;
    gen_fd_setup(&s);
    int checked = 0, skipped = 0;
    double worst = 0;
    for (int i = 0; i < GEN_NPROBE; i++) {
        const char *name = probe_name(i);
        probe_stats_t st = gen_fd_check(&s, name, NULL);
        print_stats(name, &st);
        cr_expect(st.failed == 0, "%s: %d of %d probes disagree, worst ana %.7g num %.7g bar %.2g",
                  name, st.failed, st.checked, st.ana, st.num, st.bar);
        cr_expect(2 * st.resolved >= st.checked && st.checked >= 1,
                  "%s: %d of %d probes resolve a %g error", name, st.resolved, st.checked,
                  GEN_RESOLVE);
        checked += st.checked, skipped += st.skipped;
        worst = fmax(worst, st.max_ratio);
    }
    printf("gradcheck worst error %.2g of allowed, %d checked, %d skipped at kinks\n", worst,
           checked, skipped);
    cr_expect(skipped * 10 <= checked, "%d probes skipped at kinks, %d checked", skipped, checked);
    gen_fd_teardown(&s);
}

/* A check that cannot fail is a defect: the same checker, handed a broken
 * analytic gradient for one tensor at a time, must report that tensor. Three
 * breakages: every entry 5% too large (a missed factor), the sign of the
 * largest entry flipped (the checker always probes it), and the entries in
 * reverse order (an indexing bug). The genuine gradient, checked beside
 * them, still passes. */
Test(generator, backward_check_catches_broken_gradients, .timeout = 240)
{
    gen_fd_t s;
    gen_fd_setup(&s);
    for (int i = 0; i < GEN_NPROBE; i++) {
        const char *name = probe_name(i);
        const int is_input = strcmp(name, "input") == 0;
        const perf_gen_tensor_t *t = is_input ? NULL : find_tensor(s.ctx.g, name);
        const float *grad = is_input ? s.dx : t->grad;
        const size_t n = is_input ? s.ctx.osz : t->numel;
        float *bad = malloc(n * sizeof(float));
        cr_assert_not_null(bad);
        size_t jmax = 0;
        for (size_t j = 0; j < n; j++)
            if (fabsf(grad[j]) > fabsf(grad[jmax])) jmax = j;

        probe_stats_t ok = gen_fd_check(&s, name, grad);
        for (size_t j = 0; j < n; j++) bad[j] = 1.05f * grad[j];
        probe_stats_t scaled = gen_fd_check(&s, name, bad);
        memcpy(bad, grad, n * sizeof(float));
        bad[jmax] = -bad[jmax];
        probe_stats_t flipped = gen_fd_check(&s, name, bad);
        for (size_t j = 0; j < n; j++) bad[j] = grad[n - 1 - j];
        probe_stats_t reversed = gen_fd_check(&s, name, bad);
        printf("gradcheck broken %-20s failed probes: genuine %d, x1.05 %d, sign flip %d, "
               "reversed %d (of %d)\n",
               name, ok.failed, scaled.failed, flipped.failed, reversed.failed, ok.checked);
        cr_expect(ok.failed == 0, "%s: genuine gradient rejected", name);
        cr_expect(scaled.failed >= 1, "%s: gradient x1.05 not caught (worst %.2g of allowed)", name,
                  scaled.max_ratio);
        cr_expect(flipped.failed >= 1, "%s: flipped sign of [%zu] not caught", name, jmax);
        /* a single entry reversed onto itself is the same gradient */
        if (n > 1)
            cr_expect(reversed.failed >= 1, "%s: reversed gradient not caught (worst %.2g)", name,
                      reversed.max_ratio);
        free(bad);
    }
    gen_fd_teardown(&s);
}
