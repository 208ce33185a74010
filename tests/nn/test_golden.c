/* Golden tests: every core/nn kernel against PyTorch on fixed inputs.
 *
 * The fixtures are written by tests/ref/make_fixtures.py (see tests/ref/README.md)
 * and hold inputs, parameters, outputs, a fixed upstream gradient and every
 * gradient PyTorch computed. Each test reads its shapes from the fixture's
 * "meta" tensor, runs our kernels and compares:
 *   forward outputs  max |ours - torch|                          <= 1e-4
 *   gradients        max |ours - torch| / max(max |torch|, 1e-6) <= 1e-3
 * (the relative error is taken against the tensor's largest magnitude, not
 * elementwise, so entries that are nearly zero do not blow it up). A mismatch
 * fails the test and prints both figures and the worst index. Backward passes
 * are run twice where cheap, to check that they accumulate (2x the gradient).
 * GOLDEN_VERBOSE=1 in the environment prints every figure. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden.h"
#include "nn/act.h"
#include "nn/adam.h"
#include "nn/attention.h"
#include "nn/conv.h"
#include "nn/linear.h"
#include "nn/loss.h"
#include "nn/lstm.h"
#include "nn/norm.h"
#include "nn/pool.h"

#define FIXTURE(name) DP_SOURCE_DIR "/tests/fixtures/golden/" name ".bin"
#define FWD_TOL       1e-4
#define GRAD_TOL      1e-3

/* ---------------------------------------------------------------- helpers */

/* Buffers of one test, freed together at its end (the arena keeps each test
 * free of cleanup paths; a failed assert ends the test process anyway). */
static void *arena[256];
static int arena_n;

static float *fbuf(size_t n)
{
    cr_assert(arena_n < (int)(sizeof arena / sizeof arena[0]), "arena full");
    float *p = calloc(n ? n : 1, sizeof(float));
    cr_assert(p, "no memory for %zu floats", n);
    arena[arena_n++] = p;
    return p;
}

static float *fcopy(const float *src, size_t n)
{
    float *p = fbuf(n);
    memcpy(p, src, n * sizeof *p);
    return p;
}

static float *fscaled(const float *src, size_t n, float s)
{
    float *p = fbuf(n);
    for (size_t i = 0; i < n; i++) p[i] = s * src[i];
    return p;
}

static golden_t *open_fixture(const char *path)
{
    golden_t *g = NULL;
    dp_err_t err = golden_load(path, &g);
    cr_assert(err == DP_OK, "cannot load %s: %s (%s); regenerate with tests/ref/make_fixtures.py",
              path, dp_strerror(err), dp_err_detail());
    return g;
}

static void done(golden_t **g)
{
    golden_destroy(g);
    for (int i = 0; i < arena_n; i++) free(arena[i]);
    arena_n = 0;
}

static const void *need(const void *p, const char *fx, const char *name)
{
    cr_assert(p, "%s: %s", fx, dp_err_detail());
    return p;
}
/* GF(g, "w", ndim, dims...): the f32 tensor with exactly that shape, or the test fails. */
#define GF(g, name, ...) ((const float *)need(golden_f32(g, name, __VA_ARGS__), fx, name))
#define GI(g, name, ...) ((const int32_t *)need(golden_i32(g, name, __VA_ARGS__), fx, name))

static void report(const char *fx, const char *what, golden_err_t e, bool ok, const char *rule)
{
    if (!ok || getenv("GOLDEN_VERBOSE"))
        fprintf(stderr, "%-24s %-22s max_abs %.3e rel %.3e (max|ref| %.3e, worst [%zu]) %s%s\n", fx,
                what, e.max_abs, e.rel, e.max_ref, e.worst, ok ? "ok" : "FAIL ", ok ? "" : rule);
}

/* Forward output: max abs error. */
static void check_fwd(const char *fx, const char *what, const float *got, const float *want,
                      size_t n)
{
    golden_err_t e = golden_compare(got, want, n);
    bool ok = e.max_abs <= FWD_TOL;
    report(fx, what, e, ok, "(max_abs > 1e-4)");
    cr_expect(ok, "%s: %s: max abs error %.3e > %.0e (worst [%zu]: ours %.7g torch %.7g)", fx, what,
              e.max_abs, FWD_TOL, e.worst, (double)got[e.worst], (double)want[e.worst]);
}

/* Gradient: error relative to the largest reference magnitude. */
static void check_grad(const char *fx, const char *what, const float *got, const float *want,
                       size_t n)
{
    golden_err_t e = golden_compare(got, want, n);
    bool ok = e.rel <= GRAD_TOL;
    report(fx, what, e, ok, "(rel > 1e-3)");
    cr_expect(ok,
              "%s: %s: relative error %.3e > %.0e (max abs %.3e, max|torch| %.3e; worst [%zu]: "
              "ours %.7g torch %.7g)",
              fx, what, e.rel, GRAD_TOL, e.max_abs, e.max_ref, e.worst, (double)got[e.worst],
              (double)want[e.worst]);
}

/* A gradient that is zero in exact arithmetic (both sides hold rounding noise):
 * the error is taken relative to `scale`, the size of a sibling gradient. */
static void check_grad_vs(const char *fx, const char *what, const float *got, const float *want,
                          size_t n, double scale)
{
    golden_err_t e = golden_compare(got, want, n);
    e.rel = e.max_abs / fmax(fmax(e.max_ref, scale), 1e-6);
    bool ok = e.rel <= GRAD_TOL;
    report(fx, what, e, ok, "(rel to sibling > 1e-3)");
    cr_expect(ok, "%s: %s: error %.3e relative to a scale of %.3e > %.0e", fx, what, e.max_abs,
              scale, GRAD_TOL);
}

/* After a second backward into the same buffers: the gradient must be doubled. */
static void check_grad2(const char *fx, const char *what, const float *got, const float *want,
                        size_t n)
{
    char w[64];
    snprintf(w, sizeof w, "%s (x2 accum)", what);
    check_grad(fx, w, got, fscaled(want, n, 2.0f), n);
}

static void check_scalar(const char *fx, const char *what, double got, float want)
{
    float g = (float)got;
    check_fwd(fx, what, &g, &want, 1);
}

/* ---------------------------------------------------------------- convolution */

static const char *const conv_cases[] = {
    "conv_g1_s1_p1", "conv_s2_p0",           "conv_g2",         "conv_depthwise", "conv_1x1",
    "conv_batch2",   "conv_k4_s2_p1_nobias", "conv_1x1_batch3", "conv_1x1_s2",
};

/* One pass over a conv fixture; batch_gemm < 0 keeps init's choice of path,
 * 0 forces the per-image path. */
static void conv_once(const char *fx, golden_t *g, int batch_gemm)
{
    const int32_t *m = GI(g, "meta", 1, 10);
    int n = m[0], cin = m[1], h = m[2], w = m[3], cout = m[4], k = m[5], s = m[6], p = m[7],
        grp = m[8], has_bias = m[9];
    nn_conv_t c;
    cr_assert_eq(nn_conv2d_init(&c, n, cin, h, w, cout, k, k, s, p, grp), 0, "%s: init", fx);
    if (batch_gemm >= 0) c.batch_gemm = batch_gemm;
    size_t nx = (size_t)n * cin * h * w, nw = (size_t)cout * (cin / grp) * k * k;
    size_t ny = (size_t)n * cout * c.hout * c.wout;
    const float *x = GF(g, "x", 4, n, cin, h, w);
    const float *wt = GF(g, "w", 4, cout, cin / grp, k, k);
    const float *b = has_bias ? GF(g, "b", 1, cout) : NULL;
    const float *y = GF(g, "y", 4, n, cout, c.hout, c.wout);
    const float *dy = GF(g, "dy", 4, n, cout, c.hout, c.wout);
    float *ws = fbuf(nn_conv2d_workspace(&c));
    float *out = fbuf(ny);
    nn_conv2d_forward(&c, out, x, wt, b, ws);
    check_fwd(fx, "y", out, y, ny);
    float *out_naive = fbuf(ny);
    nn_conv2d_forward_naive(&c, out_naive, x, wt, b);
    check_fwd(fx, "y (naive)", out_naive, y, ny);

    float *dx = fbuf(nx), *dw = fbuf(nw), *db = has_bias ? fbuf(cout) : NULL;
    for (int rep = 1; rep <= 2; rep++) {
        nn_conv2d_backward(&c, dx, dw, db, dy, x, wt, ws);
        void (*chk)(const char *, const char *, const float *, const float *, size_t) =
            rep == 1 ? check_grad : check_grad2;
        chk(fx, "dx", dx, GF(g, "dx", 4, n, cin, h, w), nx);
        chk(fx, "dw", dw, GF(g, "dw", 4, cout, cin / grp, k, k), nw);
        if (has_bias) chk(fx, "db", db, GF(g, "db", 1, cout), (size_t)cout);
    }
    /* NULL gradients are skipped: only dw. */
    float *dw_only = fbuf(nw);
    nn_conv2d_backward(&c, NULL, dw_only, NULL, dy, x, wt, ws);
    check_grad(fx, "dw (dx,db NULL)", dw_only, GF(g, "dw", 4, cout, cin / grp, k, k), nw);
}

static void run_conv(const char *fx, const char *path)
{
    golden_t *g = open_fixture(path);
    conv_once(fx, g, -1);
    const int32_t *m = GI(g, "meta", 1, 10);
    if (m[0] > 1 && m[8] == 1) { /* batched-sgemm candidate: the per-image path too */
        char name[64];
        snprintf(name, sizeof name, "%s/per-image", fx);
        conv_once(name, g, 0);
    }
    done(&g);
}

Test(golden, conv2d)
{
    static const char *const paths[] = {
        FIXTURE("conv_g1_s1_p1"),        FIXTURE("conv_s2_p0"),      FIXTURE("conv_g2"),
        FIXTURE("conv_depthwise"),       FIXTURE("conv_1x1"),        FIXTURE("conv_batch2"),
        FIXTURE("conv_k4_s2_p1_nobias"), FIXTURE("conv_1x1_batch3"), FIXTURE("conv_1x1_s2"),
    };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) run_conv(conv_cases[i], paths[i]);
}

static void convt_once(const char *fx, golden_t *g, int batch_gemm)
{
    const int32_t *m = GI(g, "meta", 1, 10);
    int n = m[0], cin = m[1], h = m[2], w = m[3], cout = m[4], k = m[5], s = m[6], p = m[7],
        op = m[8], grp = m[9];
    nn_conv_t c;
    cr_assert_eq(nn_convt2d_init(&c, n, cin, h, w, cout, k, k, s, p, op, grp), 0, "%s: init", fx);
    if (batch_gemm >= 0) c.batch_gemm = batch_gemm;
    size_t nx = (size_t)n * cin * h * w, nw = (size_t)cin * (cout / grp) * k * k;
    size_t ny = (size_t)n * cout * c.hout * c.wout;
    const float *x = GF(g, "x", 4, n, cin, h, w);
    const float *wt = GF(g, "w", 4, cin, cout / grp, k, k);
    const float *b = GF(g, "b", 1, cout);
    const float *y = GF(g, "y", 4, n, cout, c.hout, c.wout);
    const float *dy = GF(g, "dy", 4, n, cout, c.hout, c.wout);
    float *ws = fbuf(nn_convt2d_workspace(&c));
    float *out = fbuf(ny);
    nn_convt2d_forward(&c, out, x, wt, b, ws);
    check_fwd(fx, "y", out, y, ny);
    float *out_naive = fbuf(ny);
    nn_convt2d_forward_naive(&c, out_naive, x, wt, b);
    check_fwd(fx, "y (naive)", out_naive, y, ny);
    float *dx = fbuf(nx), *dw = fbuf(nw), *db = fbuf(cout);
    for (int rep = 1; rep <= 2; rep++) {
        nn_convt2d_backward(&c, dx, dw, db, dy, x, wt, ws);
        void (*chk)(const char *, const char *, const float *, const float *, size_t) =
            rep == 1 ? check_grad : check_grad2;
        chk(fx, "dx", dx, GF(g, "dx", 4, n, cin, h, w), nx);
        chk(fx, "dw", dw, GF(g, "dw", 4, cin, cout / grp, k, k), nw);
        chk(fx, "db", db, GF(g, "db", 1, cout), (size_t)cout);
    }
}

static void run_convt(const char *fx, const char *path)
{
    golden_t *g = open_fixture(path);
    convt_once(fx, g, -1);
    const int32_t *m = GI(g, "meta", 1, 10);
    if (m[0] > 1 && m[9] == 1) {
        char name[64];
        snprintf(name, sizeof name, "%s/per-image", fx);
        convt_once(name, g, 0);
    }
    done(&g);
}

Test(golden, convt2d)
{
    run_convt("convt_k3_s2_p0", FIXTURE("convt_k3_s2_p0"));
    run_convt("convt_k6_s1", FIXTURE("convt_k6_s1"));
    run_convt("convt_k3_s2_p1_op1", FIXTURE("convt_k3_s2_p1_op1"));
    run_convt("convt_g2", FIXTURE("convt_g2"));
}

Test(golden, reflpad2d)
{
    const char *fx = "reflpad";
    golden_t *g = open_fixture(FIXTURE("reflpad"));
    const int32_t *m = GI(g, "meta", 1, 5);
    int n = m[0], c = m[1], h = m[2], w = m[3], p = m[4];
    size_t nx = (size_t)n * c * h * w, ny = (size_t)n * c * (h + 2 * p) * (w + 2 * p);
    float *out = fbuf(ny), *dx = fbuf(nx);
    nn_reflpad2d_forward(out, GF(g, "x", 4, n, c, h, w), n, c, h, w, p);
    check_fwd(fx, "y", out, GF(g, "y", 4, n, c, h + 2 * p, w + 2 * p), ny);
    const float *dy = GF(g, "dy", 4, n, c, h + 2 * p, w + 2 * p);
    nn_reflpad2d_backward(dx, dy, n, c, h, w, p);
    check_grad(fx, "dx", dx, GF(g, "dx", 4, n, c, h, w), nx);
    nn_reflpad2d_backward(dx, dy, n, c, h, w, p);
    check_grad2(fx, "dx", dx, GF(g, "dx", 4, n, c, h, w), nx);
    done(&g);
}

/* ---------------------------------------------------------------- normalisation */

Test(golden, batchnorm_train)
{
    const char *fx = "bn_train";
    golden_t *g = open_fixture(FIXTURE("bn_train"));
    const int32_t *m = GI(g, "meta", 1, 4);
    int n = m[0], c = m[1], hw = m[2] * m[3];
    size_t nx = (size_t)n * c * hw;
    const float *x = GF(g, "x", 4, n, c, m[2], m[3]);
    const float *gamma = GF(g, "gamma", 1, c), *beta = GF(g, "beta", 1, c);
    float *rm = fcopy(GF(g, "running_mean0", 1, c), (size_t)c);
    float *rv = fcopy(GF(g, "running_var0", 1, c), (size_t)c);
    float *out = fbuf(nx), *mean = fbuf((size_t)c), *rstd = fbuf((size_t)c);
    nn_batchnorm_forward_train(out, mean, rstd, x, gamma, beta, rm, rv, n, c, hw, 0.1f, 1e-5f);
    check_fwd(fx, "y", out, GF(g, "y", 4, n, c, m[2], m[3]), nx);
    check_fwd(fx, "mean", mean, GF(g, "mean", 1, c), (size_t)c);
    check_fwd(fx, "rstd", rstd, GF(g, "rstd", 1, c), (size_t)c);
    check_fwd(fx, "running_mean", rm, GF(g, "running_mean", 1, c), (size_t)c);
    check_fwd(fx, "running_var", rv, GF(g, "running_var", 1, c), (size_t)c);
    const float *dy = GF(g, "dy", 4, n, c, m[2], m[3]);
    float *dx = fbuf(nx), *dgamma = fbuf((size_t)c), *dbeta = fbuf((size_t)c);
    for (int rep = 1; rep <= 2; rep++) {
        nn_batchnorm_backward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma, n, c, hw);
        void (*chk)(const char *, const char *, const float *, const float *, size_t) =
            rep == 1 ? check_grad : check_grad2;
        chk(fx, "dx", dx, GF(g, "dx", 4, n, c, m[2], m[3]), nx);
        chk(fx, "dgamma", dgamma, GF(g, "dgamma", 1, c), (size_t)c);
        chk(fx, "dbeta", dbeta, GF(g, "dbeta", 1, c), (size_t)c);
    }
    done(&g);
}

Test(golden, batchnorm_eval)
{
    const char *fx = "bn_eval";
    golden_t *g = open_fixture(FIXTURE("bn_eval"));
    const int32_t *m = GI(g, "meta", 1, 4);
    int n = m[0], c = m[1], hw = m[2] * m[3];
    size_t nx = (size_t)n * c * hw;
    float *out = fbuf(nx);
    nn_batchnorm_forward_eval(out, GF(g, "x", 4, n, c, m[2], m[3]), GF(g, "gamma", 1, c),
                              GF(g, "beta", 1, c), GF(g, "running_mean", 1, c),
                              GF(g, "running_var", 1, c), n, c, hw, 1e-5f);
    check_fwd(fx, "y", out, GF(g, "y", 4, n, c, m[2], m[3]), nx);
    done(&g);
}

Test(golden, instancenorm)
{
    const char *fx = "instnorm";
    golden_t *g = open_fixture(FIXTURE("instnorm"));
    const int32_t *m = GI(g, "meta", 1, 4);
    int n = m[0], c = m[1], hw = m[2] * m[3];
    size_t nx = (size_t)n * c * hw;
    const float *x = GF(g, "x", 4, n, c, m[2], m[3]);
    float *out = fbuf(nx), *mean = fbuf((size_t)n * c), *rstd = fbuf((size_t)n * c);
    nn_instnorm_forward(out, mean, rstd, x, n, c, hw, 1e-5f);
    check_fwd(fx, "y", out, GF(g, "y", 4, n, c, m[2], m[3]), nx);
    const float *dy = GF(g, "dy", 4, n, c, m[2], m[3]);
    float *dx = fbuf(nx);
    nn_instnorm_backward(dx, dy, x, mean, rstd, n, c, hw);
    check_grad(fx, "dx", dx, GF(g, "dx", 4, n, c, m[2], m[3]), nx);
    nn_instnorm_backward(dx, dy, x, mean, rstd, n, c, hw);
    check_grad2(fx, "dx", dx, GF(g, "dx", 4, n, c, m[2], m[3]), nx);
    done(&g);
}

/* ---------------------------------------------------------------- LSTM */

Test(golden, lstm_step)
{
    const char *fx = "lstm_step";
    golden_t *g = open_fixture(FIXTURE("lstm_step"));
    const int32_t *m = GI(g, "meta", 1, 3);
    int n = m[0], in = m[1], hd = m[2];
    size_t nh = (size_t)n * hd, nx = (size_t)n * in, nwi = (size_t)4 * hd * in,
           nwh = (size_t)4 * hd * hd, nb = (size_t)4 * hd;
    const float *x = GF(g, "x", 2, n, in), *h0 = GF(g, "h0", 2, n, hd), *c0 = GF(g, "c0", 2, n, hd);
    const float *w_ih = GF(g, "w_ih", 2, 4 * hd, in), *w_hh = GF(g, "w_hh", 2, 4 * hd, hd);
    const float *b_ih = GF(g, "b_ih", 1, 4 * hd), *b_hh = GF(g, "b_hh", 1, 4 * hd);
    float *h1 = fbuf(nh), *c1 = fbuf(nh), *cache = fbuf(5 * nh), *ws = fbuf(4 * nh);
    nn_lstm_cell_forward(h1, c1, cache, x, h0, c0, w_ih, w_hh, b_ih, b_hh, n, in, hd);
    check_fwd(fx, "h1", h1, GF(g, "h1", 2, n, hd), nh);
    check_fwd(fx, "c1", c1, GF(g, "c1", 2, n, hd), nh);
    float *dx = fbuf(nx), *dh0 = fbuf(nh), *dc0 = fbuf(nh), *dwi = fbuf(nwi), *dwh = fbuf(nwh),
          *dbi = fbuf(nb), *dbh = fbuf(nb);
    for (int rep = 1; rep <= 2; rep++) {
        nn_lstm_cell_backward(dx, dh0, dc0, dwi, dwh, dbi, dbh, GF(g, "dh1", 2, n, hd),
                              GF(g, "dc1", 2, n, hd), cache, x, h0, c0, w_ih, w_hh, n, in, hd, ws);
        void (*chk)(const char *, const char *, const float *, const float *, size_t) =
            rep == 1 ? check_grad : check_grad2;
        chk(fx, "dx", dx, GF(g, "dx", 2, n, in), nx);
        chk(fx, "dh0", dh0, GF(g, "dh0", 2, n, hd), nh);
        chk(fx, "dc0", dc0, GF(g, "dc0", 2, n, hd), nh);
        chk(fx, "dw_ih", dwi, GF(g, "dw_ih", 2, 4 * hd, in), nwi);
        chk(fx, "dw_hh", dwh, GF(g, "dw_hh", 2, 4 * hd, hd), nwh);
        chk(fx, "db_ih", dbi, GF(g, "db_ih", 1, 4 * hd), nb);
        chk(fx, "db_hh", dbh, GF(g, "db_hh", 1, 4 * hd), nb);
    }
    done(&g);
}

/* Two chained steps from a zero state (NULL h_prev, c_prev in forward), loss
 * <h1,dh1> + <h2,dh2> + <c2,dc2>: backprop through time by hand. */
Test(golden, lstm_two_steps)
{
    const char *fx = "lstm_two_steps";
    golden_t *g = open_fixture(FIXTURE("lstm_two_steps"));
    const int32_t *m = GI(g, "meta", 1, 3);
    int n = m[0], in = m[1], hd = m[2];
    size_t nh = (size_t)n * hd, nx = (size_t)n * in, nwi = (size_t)4 * hd * in,
           nwh = (size_t)4 * hd * hd, nb = (size_t)4 * hd;
    const float *x1 = GF(g, "x1", 2, n, in), *x2 = GF(g, "x2", 2, n, in);
    const float *w_ih = GF(g, "w_ih", 2, 4 * hd, in), *w_hh = GF(g, "w_hh", 2, 4 * hd, hd);
    const float *b_ih = GF(g, "b_ih", 1, 4 * hd), *b_hh = GF(g, "b_hh", 1, 4 * hd);
    float *h1 = fbuf(nh), *c1 = fbuf(nh), *h2 = fbuf(nh), *c2 = fbuf(nh), *zero = fbuf(nh);
    float *cache1 = fbuf(5 * nh), *cache2 = fbuf(5 * nh), *ws = fbuf(4 * nh);
    nn_lstm_cell_forward(h1, c1, cache1, x1, NULL, NULL, w_ih, w_hh, b_ih, b_hh, n, in, hd);
    nn_lstm_cell_forward(h2, c2, cache2, x2, h1, c1, w_ih, w_hh, b_ih, b_hh, n, in, hd);
    check_fwd(fx, "h1", h1, GF(g, "h1", 2, n, hd), nh);
    check_fwd(fx, "c1", c1, GF(g, "c1", 2, n, hd), nh);
    check_fwd(fx, "h2", h2, GF(g, "h2", 2, n, hd), nh);
    check_fwd(fx, "c2", c2, GF(g, "c2", 2, n, hd), nh);
    float *dx1 = fbuf(nx), *dx2 = fbuf(nx), *dwi = fbuf(nwi), *dwh = fbuf(nwh), *dbi = fbuf(nb),
          *dbh = fbuf(nb);
    float *dh1 = fcopy(GF(g, "dh1", 2, n, hd), nh), *dc1 = fbuf(nh);
    nn_lstm_cell_backward(dx2, dh1, dc1, dwi, dwh, dbi, dbh, GF(g, "dh2", 2, n, hd),
                          GF(g, "dc2", 2, n, hd), cache2, x2, h1, c1, w_ih, w_hh, n, in, hd, ws);
    nn_lstm_cell_backward(dx1, NULL, NULL, dwi, dwh, dbi, dbh, dh1, dc1, cache1, x1, zero, zero,
                          w_ih, w_hh, n, in, hd, ws);
    check_grad(fx, "dx1", dx1, GF(g, "dx1", 2, n, in), nx);
    check_grad(fx, "dx2", dx2, GF(g, "dx2", 2, n, in), nx);
    check_grad(fx, "dw_ih", dwi, GF(g, "dw_ih", 2, 4 * hd, in), nwi);
    check_grad(fx, "dw_hh", dwh, GF(g, "dw_hh", 2, 4 * hd, hd), nwh);
    check_grad(fx, "db_ih", dbi, GF(g, "db_ih", 1, 4 * hd), nb);
    check_grad(fx, "db_hh", dbh, GF(g, "db_hh", 1, 4 * hd), nb);
    done(&g);
}

/* ---------------------------------------------------------------- self-attention */

static void run_attention(const char *fx, const char *path)
{
    golden_t *g = open_fixture(path);
    const int32_t *m = GI(g, "meta", 1, 4);
    int n = m[0], c = m[1], h = m[2], w = m[3], hw = h * w, c8 = c / 8 > 1 ? c / 8 : 1;
    size_t nx = (size_t)n * c * hw, nq = (size_t)c8 * c, nv = (size_t)c * c;
    const float *x = GF(g, "x", 4, n, c, h, w);
    const float *wq = GF(g, "wq", 2, c8, c), *bq = GF(g, "bq", 1, c8);
    const float *wk = GF(g, "wk", 2, c8, c), *bk = GF(g, "bk", 1, c8);
    const float *wv = GF(g, "wv", 2, c, c), *bv = GF(g, "bv", 1, c);
    const float *gamma = GF(g, "gamma", 1, 1);
    cr_assert(gamma[0] != 0.0f, "%s: gamma must be nonzero to exercise the attention path", fx);
    float *out = fbuf(nx), *cache = fbuf(nn_attention_cache_size(n, c, hw));
    float *ws = fbuf(nn_attention_workspace(n, c, hw));
    nn_attention_forward(out, cache, x, wq, bq, wk, bk, wv, bv, gamma, n, c, hw);
    check_fwd(fx, "y", out, GF(g, "y", 4, n, c, h, w), nx);
    float *dx = fbuf(nx), *dwq = fbuf(nq), *dbq = fbuf((size_t)c8), *dwk = fbuf(nq),
          *dbk = fbuf((size_t)c8), *dwv = fbuf(nv), *dbv = fbuf((size_t)c), *dgamma = fbuf(1);
    for (int rep = 1; rep <= 2; rep++) {
        nn_attention_backward(dx, dwq, dbq, dwk, dbk, dwv, dbv, dgamma, GF(g, "dy", 4, n, c, h, w),
                              cache, x, wq, wk, wv, gamma, n, c, hw, ws);
        void (*chk)(const char *, const char *, const float *, const float *, size_t) =
            rep == 1 ? check_grad : check_grad2;
        chk(fx, "dx", dx, GF(g, "dx", 4, n, c, h, w), nx);
        chk(fx, "dwq", dwq, GF(g, "dwq", 2, c8, c), nq);
        chk(fx, "dbq", dbq, GF(g, "dbq", 1, c8), (size_t)c8);
        chk(fx, "dwk", dwk, GF(g, "dwk", 2, c8, c), nq);
        /* bk adds q_i . bk to a whole row of energies, which softmax ignores:
         * dbk is zero up to rounding, so it is compared at the scale of dbq. */
        const float *dbq_ref = GF(g, "dbq", 1, c8);
        double sq = 0;
        for (int i = 0; i < c8; i++) sq = fmax(sq, fabs(rep * (double)dbq_ref[i]));
        check_grad_vs(fx, rep == 1 ? "dbk (zero)" : "dbk (zero, x2)", dbk, GF(g, "dbk", 1, c8),
                      (size_t)c8, sq);
        chk(fx, "dwv", dwv, GF(g, "dwv", 2, c, c), nv);
        chk(fx, "dbv", dbv, GF(g, "dbv", 1, c), (size_t)c);
        chk(fx, "dgamma", dgamma, GF(g, "dgamma", 1, 1), 1);
    }
    done(&g);
}

Test(golden, attention)
{
    run_attention("attention_c16", FIXTURE("attention_c16"));
    run_attention("attention_c8_3x5", FIXTURE("attention_c8_3x5"));
}

/* ---------------------------------------------------------------- small layers */

Test(golden, linear)
{
    const char *fx = "linear";
    golden_t *g = open_fixture(FIXTURE("linear"));
    const int32_t *m = GI(g, "meta", 1, 3);
    int n = m[0], in = m[1], o = m[2];
    const float *x = GF(g, "x", 2, n, in), *wt = GF(g, "w", 2, o, in), *b = GF(g, "b", 1, o);
    float *out = fbuf((size_t)n * o);
    nn_linear_forward(out, x, wt, b, n, in, o);
    check_fwd(fx, "y", out, GF(g, "y", 2, n, o), (size_t)n * o);
    float *dx = fbuf((size_t)n * in), *dw = fbuf((size_t)o * in), *db = fbuf((size_t)o);
    for (int rep = 1; rep <= 2; rep++) {
        nn_linear_backward(dx, dw, db, GF(g, "dy", 2, n, o), x, wt, n, in, o);
        void (*chk)(const char *, const char *, const float *, const float *, size_t) =
            rep == 1 ? check_grad : check_grad2;
        chk(fx, "dx", dx, GF(g, "dx", 2, n, in), (size_t)n * in);
        chk(fx, "dw", dw, GF(g, "dw", 2, o, in), (size_t)o * in);
        chk(fx, "db", db, GF(g, "db", 1, o), (size_t)o);
    }
    done(&g);
}

Test(golden, activations)
{
    const char *fx = "act";
    golden_t *g = open_fixture(FIXTURE("act"));
    const int32_t *m = GI(g, "meta", 1, 2);
    int r = m[0], k = m[1];
    size_t n = (size_t)r * k;
    const float *x = GF(g, "x", 2, r, k), *dy = GF(g, "dy", 2, r, k);
    float *y = fbuf(n), *dx = fbuf(n), *inplace = fbuf(n);

    nn_relu_forward(y, x, n);
    check_fwd(fx, "y_relu", y, GF(g, "y_relu", 2, r, k), n);
    nn_relu_backward(dx, dy, x, n);
    check_grad(fx, "dx_relu", dx, GF(g, "dx_relu", 2, r, k), n);

    memset(dx, 0, n * sizeof *dx);
    nn_leakyrelu_forward(y, x, n, 0.2f);
    check_fwd(fx, "y_lrelu", y, GF(g, "y_lrelu", 2, r, k), n);
    nn_leakyrelu_backward(dx, dy, x, n, 0.2f);
    check_grad(fx, "dx_lrelu", dx, GF(g, "dx_lrelu", 2, r, k), n);
    memcpy(inplace, x, n * sizeof *x);
    nn_leakyrelu_forward(inplace, inplace, n, 0.2f);
    check_fwd(fx, "y_lrelu (in place)", inplace, GF(g, "y_lrelu", 2, r, k), n);

    memset(dx, 0, n * sizeof *dx);
    nn_sigmoid_forward(y, x, n);
    check_fwd(fx, "y_sigmoid", y, GF(g, "y_sigmoid", 2, r, k), n);
    nn_sigmoid_backward(dx, dy, y, n);
    check_grad(fx, "dx_sigmoid", dx, GF(g, "dx_sigmoid", 2, r, k), n);

    memset(dx, 0, n * sizeof *dx);
    nn_tanh_forward(y, x, n);
    check_fwd(fx, "y_tanh", y, GF(g, "y_tanh", 2, r, k), n);
    nn_tanh_backward(dx, dy, y, n);
    check_grad(fx, "dx_tanh", dx, GF(g, "dx_tanh", 2, r, k), n);
    nn_tanh_backward(dx, dy, y, n);
    check_grad2(fx, "dx_tanh", dx, GF(g, "dx_tanh", 2, r, k), n);
    done(&g);
}

Test(golden, softmax)
{
    const char *fx = "softmax";
    golden_t *g = open_fixture(FIXTURE("softmax"));
    const int32_t *m = GI(g, "meta", 1, 2);
    int r = m[0], k = m[1];
    size_t n = (size_t)r * k;
    float *y = fbuf(n), *dx = fbuf(n);
    nn_softmax_forward(y, GF(g, "x", 2, r, k), r, k);
    check_fwd(fx, "y", y, GF(g, "y", 2, r, k), n);
    nn_softmax_backward(dx, GF(g, "dy", 2, r, k), y, r, k);
    check_grad(fx, "dx", dx, GF(g, "dx", 2, r, k), n);
    nn_softmax_backward(dx, GF(g, "dy", 2, r, k), y, r, k);
    check_grad2(fx, "dx", dx, GF(g, "dx", 2, r, k), n);
    done(&g);
}

Test(golden, softmax_big_logits)
{
    const char *fx = "softmax_big";
    golden_t *g = open_fixture(FIXTURE("softmax_big"));
    const int32_t *m = GI(g, "meta", 1, 2);
    int r = m[0], k = m[1];
    size_t n = (size_t)r * k;
    const float *x = GF(g, "x", 2, r, k);
    float *y = fbuf(n), *dx = fbuf(n), *probs = fbuf(n), *dl = fbuf(n);
    nn_softmax_forward(y, x, r, k);
    check_fwd(fx, "y", y, GF(g, "y", 2, r, k), n);
    nn_softmax_backward(dx, GF(g, "dy", 2, r, k), y, r, k);
    check_grad(fx, "dx", dx, GF(g, "dx", 2, r, k), n);
    const int32_t *t = GI(g, "targets", 1, r);
    check_scalar(fx, "ce", nn_crossentropy_forward(probs, x, t, r, k), GF(g, "ce", 1, 1)[0]);
    nn_crossentropy_backward(dl, probs, t, r, k, 1.0f);
    check_grad(fx, "dlogits", dl, GF(g, "dlogits", 2, r, k), n);
    done(&g);
}

Test(golden, losses)
{
    const char *fx = "losses";
    golden_t *g = open_fixture(FIXTURE("losses"));
    const int32_t *m = GI(g, "meta", 1, 4);
    int n = m[0], k = m[1], nb = m[2], nm = m[3];
    size_t nl = (size_t)n * k;
    const float *logits = GF(g, "logits", 2, n, k);
    const int32_t *t = GI(g, "targets", 1, n);
    float *probs = fbuf(nl), *dl = fbuf(nl);
    check_scalar(fx, "ce", nn_crossentropy_forward(probs, logits, t, n, k), GF(g, "ce", 1, 1)[0]);
    check_fwd(fx, "probs", probs, GF(g, "probs", 2, n, k), nl);
    nn_crossentropy_backward(dl, probs, t, n, k, 1.0f);
    check_grad(fx, "dlogits", dl, GF(g, "dlogits", 2, n, k), nl);
    /* dloss scales, and accumulates: 1 + 0.5 = 1.5x. */
    nn_crossentropy_backward(dl, probs, t, n, k, 0.5f);
    check_grad(fx, "dlogits (x1.5)", dl, fscaled(GF(g, "dlogits", 2, n, k), nl, 1.5f), nl);

    const float *p = GF(g, "bce_p", 2, 2, nb / 2), *bt = GF(g, "bce_t", 2, 2, nb / 2);
    float *dp = fbuf((size_t)nb);
    check_scalar(fx, "bce", nn_bce_forward(p, bt, nb), GF(g, "bce", 1, 1)[0]);
    check_scalar(fx, "bce (p = 0, 1: log clamped)",
                 nn_bce_forward(GF(g, "bce_edge_p", 1, 5), GF(g, "bce_edge_t", 1, 5), 5),
                 GF(g, "bce_edge", 1, 1)[0]);
    nn_bce_backward(dp, p, bt, nb, 1.0f);
    check_grad(fx, "bce_dp", dp, GF(g, "bce_dp", 2, 2, nb / 2), (size_t)nb);

    const float *mx = GF(g, "mse_x", 2, 3, nm / 3), *mt = GF(g, "mse_t", 2, 3, nm / 3);
    float *dmx = fbuf((size_t)nm);
    check_scalar(fx, "mse", nn_mse_forward(mx, mt, nm), GF(g, "mse", 1, 1)[0]);
    nn_mse_backward(dmx, mx, mt, nm, 1.0f);
    check_grad(fx, "mse_dx", dmx, GF(g, "mse_dx", 2, 3, nm / 3), (size_t)nm);
    nn_mse_backward(dmx, mx, mt, nm, 2.0f);
    check_grad(fx, "mse_dx (x3)", dmx, fscaled(GF(g, "mse_dx", 2, 3, nm / 3), (size_t)nm, 3.0f),
               (size_t)nm);
    done(&g);
}

/* ---------------------------------------------------------------- pooling */

enum pool_kind { POOL_MAX, POOL_AVG, POOL_AMAX, POOL_AAVG, POOL_GAP };

static void run_pool(golden_t *g, const char *op, enum pool_kind kind, int k, int s, int p, int oh,
                     int ow)
{
    const char *fx = "pool";
    const int32_t *m = GI(g, "meta", 1, 4);
    int n = m[0], c = m[1], h = m[2], w = m[3];
    if (kind == POOL_MAX || kind == POOL_AVG) {
        oh = nn_pool_out(h, k, s, p);
        ow = nn_pool_out(w, k, s, p);
    }
    size_t nx = (size_t)n * c * h * w, ny = (size_t)n * c * oh * ow;
    char yn[32], dyn[32], dxn[32];
    snprintf(yn, sizeof yn, "y_%s", op);
    snprintf(dyn, sizeof dyn, "dy_%s", op);
    snprintf(dxn, sizeof dxn, "dx_%s", op);
    const float *x = GF(g, "x", 4, n, c, h, w);
    const float *y = kind == POOL_GAP ? GF(g, yn, 2, n, c) : GF(g, yn, 4, n, c, oh, ow);
    const float *dy = kind == POOL_GAP ? GF(g, dyn, 2, n, c) : GF(g, dyn, 4, n, c, oh, ow);
    float *out = fbuf(ny), *dx = fbuf(nx);
    int *argmax = (int *)fbuf(ny); /* int and float are both 4 bytes here */
    for (int rep = 1; rep <= 2; rep++) {
        switch (kind) {
        case POOL_MAX:
            if (rep == 1) nn_maxpool2d_forward(out, argmax, x, n, c, h, w, k, s, p);
            nn_maxpool2d_backward(dx, dy, argmax, n, c, h, w, k, s, p);
            break;
        case POOL_AVG:
            if (rep == 1) nn_avgpool2d_forward(out, x, n, c, h, w, k, s, p);
            nn_avgpool2d_backward(dx, dy, n, c, h, w, k, s, p);
            break;
        case POOL_AMAX:
            if (rep == 1) nn_adaptive_maxpool2d_forward(out, argmax, x, n, c, h, w, oh, ow);
            nn_adaptive_maxpool2d_backward(dx, dy, argmax, n, c, h, w, oh, ow);
            break;
        case POOL_AAVG:
            if (rep == 1) nn_adaptive_avgpool2d_forward(out, x, n, c, h, w, oh, ow);
            nn_adaptive_avgpool2d_backward(dx, dy, n, c, h, w, oh, ow);
            break;
        case POOL_GAP:
            if (rep == 1) nn_gap_forward(out, x, n, c, h * w);
            nn_gap_backward(dx, dy, n, c, h * w);
            break;
        }
        char what[48];
        if (rep == 1) {
            check_fwd(fx, yn, out, y, ny);
            check_grad(fx, dxn, dx, GF(g, dxn, 4, n, c, h, w), nx);
        } else {
            snprintf(what, sizeof what, "%s", dxn);
            check_grad2(fx, what, dx, GF(g, dxn, 4, n, c, h, w), nx);
        }
    }
}

Test(golden, pooling)
{
    _Static_assert(sizeof(int) == sizeof(float), "argmax buffers share fbuf");
    golden_t *g = open_fixture(FIXTURE("pool"));
    run_pool(g, "max_k2_s2", POOL_MAX, 2, 2, 0, 0, 0);
    run_pool(g, "max_k3_s2_p1", POOL_MAX, 3, 2, 1, 0, 0);
    run_pool(g, "avg_k2_s2", POOL_AVG, 2, 2, 0, 0, 0);
    run_pool(g, "avg_k3_s2_p1", POOL_AVG, 3, 2, 1, 0, 0);
    run_pool(g, "gap", POOL_GAP, 0, 0, 0, 1, 1);
    run_pool(g, "amax_3x4", POOL_AMAX, 0, 0, 0, 3, 4);
    run_pool(g, "aavg_3x4", POOL_AAVG, 0, 0, 0, 3, 4);
    done(&g);
}

/* ---------------------------------------------------------------- Adam */

Test(golden, adam)
{
    const char *fx = "adam";
    golden_t *g = open_fixture(FIXTURE("adam"));
    const int32_t *m = GI(g, "meta", 1, 2);
    int n = m[0];
    const float *p0 = GF(g, "p0", 1, n), *p3 = GF(g, "p3", 1, n);
    const float *gs[3] = {GF(g, "g1", 1, n), GF(g, "g2", 1, n), GF(g, "g3", 1, n)};
    float *p = fcopy(p0, (size_t)n), *mm = fbuf((size_t)n), *vv = fbuf((size_t)n);
    nn_adam_t opt = nn_adam_default(1e-2f);
    opt.weight_decay = 0.1f;
    for (int i = 0; i < 3; i++) nn_adam_step(&opt, p, gs[i], mm, vv, (size_t)n);
    cr_expect_eq(opt.t, 3, "adam: t = %ld after 3 steps", opt.t);
    check_fwd(fx, "p3", p, p3, (size_t)n);
    /* The update itself, relative: params move by ~3 lr, so this is the strict check. */
    float *d = fbuf((size_t)n), *dref = fbuf((size_t)n);
    for (int i = 0; i < n; i++) {
        d[i] = p[i] - p0[i];
        dref[i] = p3[i] - p0[i];
    }
    check_grad(fx, "p3 - p0", d, dref, (size_t)n);
    done(&g);
}

/* ---------------------------------------------------------------- composite network */

/* conv3x3(1->4, p1, no bias) -> BN (train) -> ReLU -> maxpool2 -> conv3x3(4->8, s2, p1)
 * -> LeakyReLU(0.2) -> flatten -> linear(32->3) -> cross-entropy, on (4,1,8,8);
 * wired by hand as a model would be: one parameter block (named pointers into
 * it), one gradient block, Adam over the whole block in one call. */
enum { NET_N = 4, NET_K = 3 };

struct net {
    /* parameters, in the fixture's (PyTorch's) order */
    float *w1, *bnw, *bnb, *w2, *b2, *fcw, *fcb;
    float *params, *grads, *m, *v;
    size_t nparams;
    float *rm, *rv;
    nn_conv_t c1, c2;
    float *ws;
    /* activations and their gradients */
    float *a1, *mean, *rstd, *b1, *r1, *p1, *a2, *l2, *logits, *probs;
    int *argmax;
    float *da1, *db1, *dr1, *dp1, *da2, *dl2, *dlogits, *dx;
};

static const char *const net_names[] = {"conv1.weight", "bn.weight", "bn.bias", "conv2.weight",
                                        "conv2.bias",   "fc.weight", "fc.bias"};
static const size_t net_sizes[] = {4 * 1 * 3 * 3, 4, 4, 8 * 4 * 3 * 3, 8, NET_K * 32, NET_K};

static float **net_param_ptr(struct net *t, int i)
{
    float **p[] = {&t->w1, &t->bnw, &t->bnb, &t->w2, &t->b2, &t->fcw, &t->fcb};
    return p[i];
}

static void net_init(struct net *t, golden_t *g, const char *fx)
{
    memset(t, 0, sizeof *t);
    for (int i = 0; i < 7; i++) t->nparams += net_sizes[i];
    t->params = fbuf(t->nparams);
    t->grads = fbuf(t->nparams);
    t->m = fbuf(t->nparams);
    t->v = fbuf(t->nparams);
    size_t off = 0;
    for (int i = 0; i < 7; i++) {
        *net_param_ptr(t, i) = t->params + off;
        const golden_tensor_t *gt = golden_get(g, net_names[i]);
        cr_assert(gt && gt->dtype == GOLDEN_F32 && gt->numel == net_sizes[i],
                  "%s: parameter %s missing or of the wrong size", fx, net_names[i]);
        memcpy(t->params + off, gt->data, net_sizes[i] * sizeof(float));
        off += net_sizes[i];
    }
    t->rm = fbuf(4);
    t->rv = fbuf(4);
    for (int i = 0; i < 4; i++) t->rv[i] = 1.0f;
    cr_assert_eq(nn_conv2d_init(&t->c1, NET_N, 1, 8, 8, 4, 3, 3, 1, 1, 1), 0);
    cr_assert_eq(nn_conv2d_init(&t->c2, NET_N, 4, 4, 4, 8, 3, 3, 2, 1, 1), 0);
    cr_assert(t->c1.hout == 8 && t->c2.hout == 2, "%s: conv output sides", fx);
    size_t w1 = nn_conv2d_workspace(&t->c1), w2 = nn_conv2d_workspace(&t->c2);
    t->ws = fbuf(w1 > w2 ? w1 : w2);
    size_t n1 = NET_N * 4 * 64, np = NET_N * 4 * 16, n2 = NET_N * 32, nl = NET_N * NET_K;
    t->a1 = fbuf(n1), t->b1 = fbuf(n1), t->r1 = fbuf(n1), t->mean = fbuf(4), t->rstd = fbuf(4);
    t->p1 = fbuf(np), t->argmax = (int *)fbuf(np);
    t->a2 = fbuf(n2), t->l2 = fbuf(n2), t->logits = fbuf(nl), t->probs = fbuf(nl);
    t->da1 = fbuf(n1), t->db1 = fbuf(n1), t->dr1 = fbuf(n1), t->dp1 = fbuf(np);
    t->da2 = fbuf(n2), t->dl2 = fbuf(n2), t->dlogits = fbuf(nl), t->dx = fbuf(NET_N * 64);
}

/* Forward, loss, backward into zeroed gradients; returns the loss. */
static double net_step(struct net *t, const float *x, const int32_t *labels)
{
    nn_conv2d_forward(&t->c1, t->a1, x, t->w1, NULL, t->ws);
    nn_batchnorm_forward_train(t->b1, t->mean, t->rstd, t->a1, t->bnw, t->bnb, t->rm, t->rv, NET_N,
                               4, 64, 0.1f, 1e-5f);
    nn_relu_forward(t->r1, t->b1, NET_N * 4 * 64);
    nn_maxpool2d_forward(t->p1, t->argmax, t->r1, NET_N, 4, 8, 8, 2, 2, 0);
    nn_conv2d_forward(&t->c2, t->a2, t->p1, t->w2, t->b2, t->ws);
    nn_leakyrelu_forward(t->l2, t->a2, NET_N * 32, 0.2f);
    nn_linear_forward(t->logits, t->l2, t->fcw, t->fcb, NET_N, 32, NET_K);
    double loss = nn_crossentropy_forward(t->probs, t->logits, labels, NET_N, NET_K);

    memset(t->grads, 0, t->nparams * sizeof(float));
    float *gw1 = t->grads, *gbnw = gw1 + 36, *gbnb = gbnw + 4, *gw2 = gbnb + 4, *gb2 = gw2 + 288,
          *gfcw = gb2 + 8, *gfcb = gfcw + 96;
    float *acts[] = {t->da1, t->db1, t->dr1, t->dp1, t->da2, t->dl2, t->dlogits, t->dx};
    size_t sizes[] = {NET_N * 256, NET_N * 256, NET_N * 256,   NET_N * 64,
                      NET_N * 32,  NET_N * 32,  NET_N * NET_K, NET_N * 64};
    for (int i = 0; i < 8; i++) memset(acts[i], 0, sizes[i] * sizeof(float));
    nn_crossentropy_backward(t->dlogits, t->probs, labels, NET_N, NET_K, 1.0f);
    nn_linear_backward(t->dl2, gfcw, gfcb, t->dlogits, t->l2, t->fcw, NET_N, 32, NET_K);
    nn_leakyrelu_backward(t->da2, t->dl2, t->a2, NET_N * 32, 0.2f);
    nn_conv2d_backward(&t->c2, t->dp1, gw2, gb2, t->da2, t->p1, t->w2, t->ws);
    nn_maxpool2d_backward(t->dr1, t->dp1, t->argmax, NET_N, 4, 8, 8, 2, 2, 0);
    nn_relu_backward(t->db1, t->dr1, t->b1, NET_N * 4 * 64);
    nn_batchnorm_backward(t->da1, gbnw, gbnb, t->db1, t->a1, t->mean, t->rstd, t->bnw, NET_N, 4,
                          64);
    nn_conv2d_backward(&t->c1, t->dx, gw1, NULL, t->da1, x, t->w1, t->ws);
    return loss;
}

Test(golden, composite_net_adam)
{
    const char *fx = "net";
    golden_t *g = open_fixture(FIXTURE("net"));
    const int32_t *m = GI(g, "meta", 1, 2);
    cr_assert(m[0] == NET_N && m[1] == NET_K, "%s: meta (%d,%d)", fx, m[0], m[1]);
    const float *x = GF(g, "x", 4, NET_N, 1, 8, 8);
    const int32_t *labels = GI(g, "labels", 1, NET_N);
    const float *losses = GF(g, "losses", 1, 3);
    struct net t;
    net_init(&t, g, fx);
    float *p0 = fcopy(t.params, t.nparams);
    nn_adam_t opt = nn_adam_default(1e-2f);
    for (int step = 0; step < 3; step++) {
        double loss = net_step(&t, x, labels);
        char what[32];
        snprintf(what, sizeof what, "loss step %d", step);
        check_scalar(fx, what, loss, losses[step]);
        if (step == 0) {
            check_scalar(fx, "loss", loss, GF(g, "loss", 1, 1)[0]);
            check_fwd(fx, "logits", t.logits, GF(g, "logits", 2, NET_N, NET_K), NET_N * NET_K);
            check_grad(fx, "dx", t.dx, GF(g, "dx", 4, NET_N, 1, 8, 8), NET_N * 64);
            size_t off = 0;
            for (int i = 0; i < 7; i++) {
                char name[48];
                snprintf(name, sizeof name, "d%s", net_names[i]);
                check_grad(fx, name, t.grads + off, GF(g, name, -1), net_sizes[i]);
                cr_assert_eq(golden_get(g, name)->numel, net_sizes[i], "%s: %s size", fx, name);
                off += net_sizes[i];
            }
        }
        nn_adam_step(&opt, t.params, t.grads, t.m, t.v, t.nparams);
    }
    size_t off = 0;
    for (int i = 0; i < 7; i++) {
        char name[48], dname[64];
        snprintf(name, sizeof name, "final.%s", net_names[i]);
        const float *want = GF(g, name, -1);
        cr_assert_eq(golden_get(g, name)->numel, net_sizes[i], "%s: %s size", fx, name);
        check_fwd(fx, name, t.params + off, want, net_sizes[i]);
        /* the change Adam made, relative to its size (about 3 lr) */
        float *d = fbuf(net_sizes[i]), *dref = fbuf(net_sizes[i]);
        for (size_t j = 0; j < net_sizes[i]; j++) {
            d[j] = t.params[off + j] - p0[off + j];
            dref[j] = want[j] - p0[off + j];
        }
        snprintf(dname, sizeof dname, "%s - initial", name);
        check_grad(fx, dname, d, dref, net_sizes[i]);
        off += net_sizes[i];
    }
    check_fwd(fx, "final.bn.running_mean", t.rm, GF(g, "final.bn.running_mean", 1, 4), 4);
    check_fwd(fx, "final.bn.running_var", t.rv, GF(g, "final.bn.running_var", 1, 4), 4);
    done(&g);
}

/* ---------------------------------------------------------------- the loader itself */

Test(golden, loader_rejects_bad_files)
{
    static const unsigned char ok[] = {'D', 'P', 'G', 'F', 1, 0, 0, 0, 1, 0, 0, 0, /* header */
                                       1,   0,   'a', 0,   1, 2, 0, 0, 0,          /* f32 (2) */
                                       0,   0,   128, 63,  0, 0, 0, 64};           /* 1.0 2.0 */
    golden_t *g = NULL;
    cr_assert_eq(golden_parse(ok, sizeof ok, "ok", &g), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(golden_count(g), 1);
    const float *a = golden_f32(g, "a", 1, 2);
    cr_assert(a && a[0] == 1.0f && a[1] == 2.0f);
    cr_assert_null(golden_f32(g, "a", 1, 3));
    cr_assert(strstr(dp_err_detail(), "shape (2), want (3)"), "%s", dp_err_detail());
    cr_assert_null(golden_i32(g, "a", -1));
    cr_assert_null(golden_f32(g, "b", -1));
    golden_destroy(&g);
    cr_assert_null(g);

    unsigned char bad[sizeof ok];
    memcpy(bad, ok, sizeof ok);
    bad[0] = 'X';
    cr_assert_eq(golden_parse(bad, sizeof bad, "magic", &g), DP_ERR_FORMAT);
    cr_assert_null(g);
    memcpy(bad, ok, sizeof ok);
    bad[4] = 2;
    cr_assert_eq(golden_parse(bad, sizeof bad, "version", &g), DP_ERR_UNSUPPORTED);
    memcpy(bad, ok, sizeof ok);
    bad[15] = 7; /* dtype */
    cr_assert_eq(golden_parse(bad, sizeof bad, "dtype", &g), DP_ERR_FORMAT);
    memcpy(bad, ok, sizeof ok);
    bad[16] = 9; /* ndim */
    cr_assert_eq(golden_parse(bad, sizeof bad, "ndim", &g), DP_ERR_FORMAT);
    memcpy(bad, ok, sizeof ok);
    bad[17] = 0xff, bad[18] = 0xff, bad[19] = 0xff; /* huge dim */
    cr_assert_neq(golden_parse(bad, sizeof bad, "dim", &g), DP_OK);
    memcpy(bad, ok, sizeof ok);
    bad[8] = 2; /* count says 2 tensors */
    cr_assert_eq(golden_parse(bad, sizeof bad, "count", &g), DP_ERR_TRUNCATED);
    for (size_t len = 0; len < sizeof ok; len++) {
        cr_assert_neq(golden_parse(ok, len, "cut", &g), DP_OK, "accepted %zu of %zu bytes", len,
                      sizeof ok);
        cr_assert_null(g);
    }
    unsigned char longer[sizeof ok + 1];
    memcpy(longer, ok, sizeof ok);
    longer[sizeof ok] = 0;
    cr_assert_eq(golden_parse(longer, sizeof longer, "trailing", &g), DP_ERR_FORMAT);
    cr_assert_eq(golden_load(DP_SOURCE_DIR "/tests/fixtures/golden/no-such.bin", &g),
                 DP_ERR_NOTFOUND);
}

/* Every committed fixture loads and carries a meta tensor. */
Test(golden, fixtures_load)
{
    static const char *const all[] = {
        FIXTURE("conv_g1_s1_p1"),
        FIXTURE("conv_s2_p0"),
        FIXTURE("conv_g2"),
        FIXTURE("conv_depthwise"),
        FIXTURE("conv_1x1"),
        FIXTURE("conv_batch2"),
        FIXTURE("conv_k4_s2_p1_nobias"),
        FIXTURE("conv_1x1_batch3"),
        FIXTURE("conv_1x1_s2"),
        FIXTURE("convt_k3_s2_p0"),
        FIXTURE("convt_k6_s1"),
        FIXTURE("convt_k3_s2_p1_op1"),
        FIXTURE("convt_g2"),
        FIXTURE("reflpad"),
        FIXTURE("bn_train"),
        FIXTURE("bn_eval"),
        FIXTURE("instnorm"),
        FIXTURE("lstm_step"),
        FIXTURE("lstm_two_steps"),
        FIXTURE("attention_c16"),
        FIXTURE("attention_c8_3x5"),
        FIXTURE("linear"),
        FIXTURE("act"),
        FIXTURE("softmax"),
        FIXTURE("softmax_big"),
        FIXTURE("losses"),
        FIXTURE("pool"),
        FIXTURE("adam"),
        FIXTURE("net"),
    };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        golden_t *g = open_fixture(all[i]);
        cr_expect(golden_get(g, "meta") != NULL, "%s: no meta", all[i]);
        golden_destroy(&g);
    }
}
