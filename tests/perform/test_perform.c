/* core/perform: projections and their backward, random noise in the ball,
 * every method's outputs within the budget (group budget: next to its
 * boundary in float32, the checker, perf_apply_budget, every method on 8-bit
 * seeds), the adnn gradient entry points the baselines use, bit-identical
 * training and resume, file round trips, seed workers (the same bits
 * whatever their number; parts, errors), the generator's memory limit. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn/nn.h"
#include "nn/safetensors.h"
#include "perform/perform.h"
#include "perform/workers.h"
#include "util/rng.h"

#define D 784

static void fill_uniform(float *p, size_t n, uint64_t seed, float lo, float hi)
{
    dp_rng_t r;
    dp_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * dp_rng_uniform(&r);
}

static adnn_model_t *load_sdn(void)
{
    adnn_model_t *m = NULL;
    dp_err_t err = adnn_model_load(DP_SOURCE_DIR "/models/sdn_resnet", &m);
    cr_assert_eq(err, DP_OK, "load: %s", dp_err_detail());
    return m;
}

/* Synthetic seeds: blurred blobs so the model's exits are not all confident. */
static float *seeds(int n, uint64_t seed)
{
    float *x = malloc((size_t)n * D * sizeof(float));
    fill_uniform(x, (size_t)n * D, seed, 0.0f, 1.0f);
    for (size_t i = 0; i < (size_t)n * D; i++) x[i] = x[i] * x[i] * x[i];
    return x;
}

Test(perform, projections_linf_l2)
{
    float g[2 * D], dl[2 * D];
    fill_uniform(g, 2 * D, 1, -1, 1);
    perf_budget_t b = {PERF_NORM_LINF, 0.05f, 0, 0};
    perf_project(&b, g, dl, 2, D);
    for (int i = 0; i < 2; i++) cr_assert_leq(perf_norm_of(b.norm, dl + i * D, D), 0.05 + 1e-7);
    b.norm = PERF_NORM_L2;
    b.eps = 1.0f;
    perf_project(&b, g, dl, 2, D);
    for (int i = 0; i < 2; i++)
        cr_assert_float_eq(perf_norm_of(b.norm, dl + i * D, D), 1.0, 1e-5, "exact eps");
    /* at most: a small g is kept as is, a large one scaled to eps */
    for (int j = 0; j < D; j++) g[j] *= 1e-3f;
    b.l2_at_most = 1;
    perf_project(&b, g, dl, 2, D);
    cr_assert_eq(memcmp(g, dl, D * sizeof(float)), 0);
    cr_assert_float_eq(perf_norm_of(b.norm, dl + D, D), 1.0, 1e-5);
    /* Linf scaled: delta = eps * g, inside the budget with no pixel clipped */
    fill_uniform(g, 2 * D, 1, -1, 1);
    b = (perf_budget_t){PERF_NORM_LINF, 0.03f, 0, 1};
    perf_project(&b, g, dl, 2, D);
    for (int j = 0; j < 2 * D; j++) cr_assert_eq(dl[j], 0.03f * g[j], "pixel %d", j);
    for (int i = 0; i < 2; i++) cr_assert_leq(perf_norm_of(b.norm, dl + i * D, D), 0.03);
}

/* Directional derivative of <w, project(g)> against central differences. */
Test(perform, projection_backward_fd)
{
    double *gd = malloc(D * sizeof(double));
    float g[D], w[D], dg[D], v[D], gp[D], out[D];
    fill_uniform(w, D, 3, -1, 1);
    fill_uniform(v, D, 4, -1, 1);
    for (int mode = 0; mode < 4; mode++) { /* clip, L2 exact, L2 at most, Linf scaled */
        perf_budget_t b = {mode == 0 || mode == 3 ? PERF_NORM_LINF : PERF_NORM_L2,
                           mode == 0   ? 0.5f
                           : mode == 3 ? 0.03f
                                       : 2.0f,
                           mode == 2, mode == 3};
        fill_uniform(g, D, 5 + mode, -1, 1);
        perf_project_backward(&b, g, w, dg, 1, D);
        double ana = 0, h = 1e-3, f[2];
        for (int j = 0; j < D; j++) ana += (double)dg[j] * v[j];
        for (int s = 0; s < 2; s++) {
            for (int j = 0; j < D; j++) gp[j] = g[j] + (float)((s ? -h : h) * v[j]);
            perf_project(&b, gp, out, 1, D);
            f[s] = 0;
            for (int j = 0; j < D; j++) f[s] += (double)w[j] * out[j];
        }
        double num = (f[0] - f[1]) / (2 * h);
        cr_assert(fabs(num - ana) <= 2e-2 * fabs(ana) + 1e-3, "mode %d: fd %g analytic %g", mode,
                  num, ana);
    }
    free(gd);
}

Test(perform, random_in_ball)
{
    float d[D];
    dp_rng_t r;
    dp_rng_seed(&r, 9);
    double mean_r = 0;
    for (int i = 0; i < 200; i++) {
        perf_budget_t b = {PERF_NORM_L2, 1.5f, 1, 0};
        perf_random_delta(&b, &r, d, D);
        double n = perf_norm_of(PERF_NORM_L2, d, D);
        cr_assert_leq(n, 1.5 + 1e-6);
        mean_r += n / 200;
        b.norm = PERF_NORM_LINF;
        b.eps = 0.03f;
        perf_random_delta(&b, &r, d, D);
        cr_assert_leq(perf_norm_of(PERF_NORM_LINF, d, D), 0.03 + 1e-7);
    }
    /* u^(1/d) with d = 784 puts almost all the mass near the surface */
    cr_assert_gt(mean_r, 1.49);
    float x[4] = {0, 1, 0.5f, 0.99f}, dl[4] = {-0.1f, 0.1f, 0.2f, 0.05f}, xa[4];
    perf_apply(x, dl, xa, 4);
    cr_assert(xa[0] == 0 && xa[1] == 1 && xa[2] == 0.7f && xa[3] == 1);
    cr_assert_float_eq(perf_psnr(x, x, 4), PERF_PSNR_MAX, 1e-9);
    float p[3] = {1.0f, 0.0f, 0.5f};
    cr_assert_float_eq(perf_ladv(p, 1, 3), (-log(1e-6) - log(0.5)) / 3, 1e-9);
}

static void check_budget(const perf_samples_t *s, const float *x, const char *what)
{
    for (int i = 0; i < s->n; i++) {
        float dl[D];
        for (int j = 0; j < D; j++) {
            float v = s->xadv[(size_t)i * D + j];
            cr_assert(v >= 0.0f && v <= 1.0f, "%s: pixel %d of %d is %g", what, j, i, v);
            dl[j] = v - x[(size_t)i * D + j];
        }
        double n = perf_norm_of(s->budget.norm, dl, D);
        cr_assert_leq(n, s->budget.eps, "%s: input %d norm %.9g > eps %.9g", what, i, n,
                      s->budget.eps);
        cr_assert(perf_within_budget(&s->budget, x + (size_t)i * D, s->xadv + (size_t)i * D, D),
                  "%s: input %d outside the budget", what, i);
        cr_assert_float_eq(s->delta_norm[i], n, 1e-6);
        cr_assert_eq(
            s->delta_norm[i],
            perf_budget_norm(s->budget.norm, x + (size_t)i * D, s->xadv + (size_t)i * D, D),
            "%s: input %d", what, i);
    }
}

/* Every output of every method on both norms (both L2 modes for the
 * generator) stays within the budget and in [0,1]. */
Test(perform, budget_all_outputs, .timeout = 600)
{
    adnn_model_t *m = load_sdn();
    const int n = 6;
    float *x = seeds(n, 11);
    perf_gen_config_t gc = perf_gen_config_default();
    gc.width = 8, gc.max_batch = 4, gc.inference_only = 1, gc.seed = 3;
    perf_gen_t *g = perf_gen_new(&gc);
    cr_assert_not_null(g);
    perf_budget_t budgets[5] = {{PERF_NORM_LINF, 0.03f, 0, 0},
                                {PERF_NORM_LINF, 0.09f, 0, 0},
                                {PERF_NORM_L2, 0.5f, 0, 0},
                                {PERF_NORM_L2, 1.5f, 0, 0},
                                {PERF_NORM_L2, 1.0f, 1, 0}};
    for (int bi = 0; bi < 5; bi++) {
        const perf_budget_t *b = &budgets[bi];
        for (int meth = 0; meth < 4; meth++) {
            perf_samples_t *s = perf_samples_new(n, 1, 28, 28);
            for (int i = 0; i < n; i++) s->seed_index[i] = i;
            dp_err_t err = DP_OK;
            if (meth == PERF_METHOD_DEEPPERFORM) {
                err = perf_generate(g, m, b, x, s, 1);
            } else if (meth == PERF_METHOD_RANDOM) {
                err = perf_random(m, b, 1, x, s, 1);
            } else if (meth == PERF_METHOD_ILFO) {
                perf_ilfo_config_t c = perf_ilfo_config_default();
                c.iters = 5, c.batch = 4;
                err = perf_ilfo(m, b, &c, x, s);
            } else {
                perf_sloth_config_t c = perf_sloth_config_default();
                c.linf_steps = 5, c.l2_steps = 5, c.batch = 4;
                c.linf_step = 0.05f; /* large steps reach the boundary */
                err = perf_deepsloth(m, b, &c, x, s);
            }
            cr_assert_eq(err, DP_OK, "%s: %s", perf_method_name(meth), dp_err_detail());
            check_budget(s, x, perf_method_name(meth));
            if (meth == PERF_METHOD_DEEPPERFORM && b->norm == PERF_NORM_L2 && !b->l2_at_most)
                for (int i = 0; i < n; i++) /* exactly eps unless pixels clipped */
                    cr_assert_gt(s->delta_norm[i], 0.3 * b->eps);
            perf_summary_t r;
            perf_summarize(s, 0.9, &r);
            cr_assert(r.pixels_ok && r.norm_max <= b->eps && r.within_budget);
            perf_samples_destroy(&s);
        }
    }
    perf_gen_destroy(&g);
    adnn_model_destroy(&m);
    free(x);
}

/* ------------------------------------------------------------- budget, in float32 */

/* The paper's Linf grid, DeepSloth's 8/255 and two odd ones. */
static const float edge_eps[] = {0.03f, 0.06f, 0.09f, 0.12f, 0.15f, 8.0f / 255.0f, 0.5f, 1e-3f};
#define N_EDGE_EPS (sizeof edge_eps / sizeof edge_eps[0])

/* |v - x| <= eps in real arithmetic (long double: exact for these floats)
 * and as the checkers compute it (float32 difference). */
static int linf_within(float x, float v, float eps)
{
    long double e = (long double)v - (long double)x;
    return fabsl(e) <= eps && fabsf(v - x) <= eps;
}

/* The float in [0, 1] farthest from x in direction dir (+1, -1) that is
 * within eps of it, found by single steps from the nearest float to x +
 * dir * eps (independent of budget.c). */
static float linf_edge(float x, float eps, int dir)
{
    float v = (float)((long double)x + dir * (long double)eps);
    v = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
    while (!linf_within(x, v, eps)) v = nextafterf(v, x);
    for (;;) {
        float nv = nextafterf(v, dir > 0 ? 2.0f : -1.0f);
        if (!(nv >= 0.0f && nv <= 1.0f) || !linf_within(x, nv, eps)) return v;
        v = nv;
    }
}

/* Seeds: every 8-bit pixel value k/255, values next to 0 and 1 (clamping),
 * eps itself and 1 - eps, and uniform floats. */
static int edge_seeds(float *x, int cap, float eps)
{
    int n = 0;
    for (int k = 0; k <= 255; k++) x[n++] = (float)k / 255.0f;
    const float fixed[] = {0.0f,
                           1.0f,
                           1e-30f,
                           1e-8f,
                           nextafterf(0.0f, 1.0f),
                           nextafterf(1.0f, 0.0f),
                           eps,
                           nextafterf(eps, 0.0f),
                           nextafterf(eps, 1.0f),
                           1.0f - eps,
                           nextafterf(1.0f - eps, 0.0f),
                           nextafterf(1.0f - eps, 1.0f),
                           0.5f,
                           nextafterf(0.5f, 0.0f),
                           0.25f};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) x[n++] = fixed[i];
    dp_rng_t r;
    dp_rng_seed(&r, 77);
    while (n < cap) x[n++] = dp_rng_uniform(&r);
    return n;
}

/* The case of the report: seed 187/255 at Linf 0.09. perf_apply's x' is
 * 0.0900000334 from the seed in float32, over float32(0.09) = 0.0900000036;
 * the checker refuses it, perf_apply_budget gives the last float within. */
Test(budget, reported_case)
{
    perf_budget_t b = {PERF_NORM_LINF, 0.09f, 0, 0};
    float x = 187.0f / 255.0f, delta = 0.09f, old, v;
    cr_assert_eq(x, 0.733333349f);
    perf_apply(&x, &delta, &old, 1);
    cr_assert_eq(old, 0.823333383f);
    cr_assert_eq(old - x, 0.0900000334f);
    cr_assert_gt(old - x, b.eps);
    cr_assert_not(perf_within_budget(&b, &x, &old, 1), "1 ulp over is refused");
    perf_apply_budget(&b, &x, &delta, &v, 1, 1);
    cr_assert(perf_within_budget(&b, &x, &v, 1));
    cr_assert_eq(v, nextafterf(old, 0.0f), "%.9g: one float below perf_apply's", v);
    cr_assert_eq(v, linf_edge(x, b.eps, 1));
    cr_assert_eq(perf_budget_norm(PERF_NORM_LINF, &x, &v, 1), v - x);
    cr_assert_leq(v - x, b.eps);
}

/* The checker accepts the last float within eps of the seed and refuses
 * the next one (1 ulp over), on both sides, for every eps; NaN and pixels
 * outside [0, 1] are refused whatever the norm. */
Test(budget, checker_refuses_one_ulp_over)
{
    static float xs[2000], x[D], xa[D];
    for (size_t e = 0; e < N_EDGE_EPS; e++) {
        perf_budget_t b = {PERF_NORM_LINF, edge_eps[e], 0, 0};
        int n = edge_seeds(xs, 2000, b.eps), refused = 0;
        for (int i = 0; i < n; i++)
            for (int dir = -1; dir <= 1; dir += 2) {
                for (int j = 0; j < D; j++) x[j] = xa[j] = xs[(i + j) % n];
                float v = linf_edge(xs[i], b.eps, dir), over = nextafterf(v, dir * 2.0f);
                xa[0] = v;
                cr_assert(perf_within_budget(&b, x, xa, D), "eps %.9g x %.9g v %.9g", b.eps, xs[i],
                          v);
                if (!(over >= 0.0f && over <= 1.0f)) continue; /* the edge is 0 or 1 */
                cr_assert_not(linf_within(xs[i], over, b.eps));
                xa[0] = over;
                cr_assert_not(perf_within_budget(&b, x, xa, D), "eps %.9g x %.9g over %.9g", b.eps,
                              xs[i], over);
                refused++;
            }
        cr_assert_gt(refused, n / 2, "eps %.9g: %d of %d refused", b.eps, refused, 2 * n);
    }
    perf_budget_t b = {PERF_NORM_LINF, 0.09f, 0, 0};
    for (int j = 0; j < D; j++) x[j] = xa[j] = 0.5f;
    xa[3] = NAN;
    cr_assert_not(perf_within_budget(&b, x, xa, D), "NaN");
    x[3] = xa[3] = nextafterf(1.0f, 2.0f);
    cr_assert_not(perf_within_budget(&b, x, xa, D), "a pixel above 1, even at distance 0");
    x[3] = xa[3] = -0.0f;
    cr_assert(perf_within_budget(&b, x, xa, D), "-0 is in [0, 1]");
    /* L2: 4 pixels at eps/2 each (norm about eps), the first walked to the
     * last float within and one beyond. The excess there is below half an
     * ulp of eps, which plain rounding of the norm to float32 would hide:
     * perf_budget_norm (a set's delta_norm) rounds up and shows it. */
    const float eps_l2[] = {0.25f, 0.5f, 1.0f, 1.5f, 0.1f, 0.03f}; /* x + eps/2 < 1 */
    int hidden = 0;
    for (size_t e = 0; e < sizeof eps_l2 / sizeof eps_l2[0]; e++)
        for (int m = 0; m < 2; m++) {
            perf_budget_t l2 = {PERF_NORM_L2, eps_l2[e], m, 0};
            for (int j = 0; j < D; j++) x[j] = xa[j] = (float)(j % 256) / 255.0f * 0.5f + 0.2f;
            for (int j = 0; j < 4; j++) xa[j] = x[j] + l2.eps / 2;
            while (!perf_within_budget(&l2, x, xa, D)) xa[0] = nextafterf(xa[0], 0.0f);
            while (perf_within_budget(&l2, x, xa, D)) xa[0] = nextafterf(xa[0], 2.0f);
            long double ss = 0, s32 = 0; /* really over, in long double: the real
                                            differences or the float32 ones */
            for (int j = 0; j < D; j++) {
                long double q = (long double)xa[j] - x[j], q32 = xa[j] - x[j];
                ss += q * q, s32 += q32 * q32;
            }
            long double nrm = sqrtl(ss > s32 ? ss : s32);
            cr_assert_gt(nrm, (long double)l2.eps, "eps %g", l2.eps);
            cr_assert_gt(perf_budget_norm(PERF_NORM_L2, x, xa, D), l2.eps);
            hidden += (float)nrm == l2.eps;
            xa[0] = nextafterf(xa[0], 0.0f);
            cr_assert(perf_within_budget(&l2, x, xa, D));
            cr_assert_leq(perf_budget_norm(PERF_NORM_L2, x, xa, D), l2.eps);
        }
    cr_assert_gt(hidden, 0, "no case below half an ulp of eps was reached");
}

/* perf_apply_budget on single pixels next to the boundary: within (exactly
 * and in float32), in [0, 1], the farthest float within when delta is +-eps
 * or beyond (nothing given up but what rounding takes), and perf_apply's
 * bits wherever those were within. */
Test(budget, apply_linf_boundary)
{
    static float xs[3000];
    int nudged = 0;
    for (size_t e = 0; e < N_EDGE_EPS; e++) {
        perf_budget_t b = {PERF_NORM_LINF, edge_eps[e], 0, 0};
        int n = edge_seeds(xs, 3000, b.eps);
        dp_rng_t r;
        dp_rng_seed(&r, 5 + e);
        for (int i = 0; i < n; i++) {
            float x = xs[i], eps = b.eps;
            float deltas[] = {eps,
                              -eps,
                              nextafterf(eps, 0.0f),
                              -nextafterf(eps, 0.0f),
                              2 * eps,
                              -2 * eps,
                              eps * (2.0f * dp_rng_uniform(&r) - 1.0f),
                              0.0f};
            for (size_t k = 0; k < sizeof deltas / sizeof deltas[0]; k++) {
                float dl = deltas[k], v, old;
                perf_apply_budget(&b, &x, &dl, &v, 1, 1);
                cr_assert(v >= 0.0f && v <= 1.0f);
                cr_assert(linf_within(x, v, eps), "eps %.9g x %.9g delta %.9g: x' %.9g", eps, x, dl,
                          v);
                cr_assert(perf_within_budget(&b, &x, &v, 1));
                if (fabsf(dl) >= eps) {
                    float edge = linf_edge(x, eps, dl > 0 ? 1 : -1);
                    cr_assert_eq(v, edge, "eps %.9g x %.9g delta %.9g: %.9g, edge %.9g", eps, x, dl,
                                 v, edge);
                }
                if (fabsf(dl) > eps) continue; /* perf_apply does not project */
                perf_apply(&x, &dl, &old, 1);
                if (linf_within(x, old, eps))
                    cr_assert_eq(v, old);
                else
                    nudged++;
            }
        }
    }
    cr_assert_gt(nudged, 100, "the boundary cases were reached (%d)", nudged);
    /* a whole image and a batch: the same as pixel by pixel */
    static float x[3 * D], dl[3 * D], xa[3 * D];
    perf_budget_t b = {PERF_NORM_LINF, 0.09f, 0, 0};
    fill_uniform(dl, 3 * D, 8, -0.2f, 0.2f);
    for (int j = 0; j < 3 * D; j++) x[j] = (float)(j % 256) / 255.0f;
    perf_apply_budget(&b, x, dl, xa, 3, D);
    for (int j = 0; j < 3 * D; j++) {
        float v;
        perf_apply_budget(&b, x + j, dl + j, &v, 1, 1);
        cr_assert_eq(xa[j], v);
    }
    for (int i = 0; i < 3; i++) cr_assert(perf_within_budget(&b, x + i * D, xa + i * D, D));
}

/* L2, both modes: within eps (no tolerance) on image-like seeds, clipped or
 * not; "exactly eps" where no pixel clips stays within the documented
 * tolerance, eps - ||x' - x|| <= sqrt(d) 2^-24 + eps 2^-20; perf_apply's
 * bits wherever those were within; a delta far outside the ball still ends
 * within. */
Test(budget, apply_l2_boundary)
{
    static float x[D], g[D], dl[D], xa[D], old[D];
    const float eps_l2[] = {0.5f, 1.0f, 1.5f, 2.0f, 2.5f, 0.1f};
    int shrunk = 0, trials = 0;
    for (size_t e = 0; e < sizeof eps_l2 / sizeof eps_l2[0]; e++)
        for (int t = 0; t < 200; t++) {
            int clip = t % 2, at_most = t % 4 >= 2;
            perf_budget_t b = {PERF_NORM_L2, eps_l2[e], at_most, 0};
            fill_uniform(x, D, 1000 + t, 0.0f, 1.0f);
            for (int j = 0; j < D; j++) /* 8-bit pixels; interior ones unless clip */
                x[j] = clip ? (float)(int)(x[j] * x[j] * 255.0f + 0.5f) / 255.0f
                            : (float)(int)(x[j] * 127.0f + 64.0f) / 255.0f;
            fill_uniform(g, D, 5000 + t, -1.0f, 1.0f);
            if (at_most) /* a norm right at eps: the projection's own rounding */
                for (int j = 0; j < D; j++) g[j] *= (float)(b.eps / perf_norm_of(b.norm, g, D));
            perf_project(&b, g, dl, 1, D);
            perf_apply_budget(&b, x, dl, xa, 1, D);
            perf_apply(x, dl, old, D);
            float nrm = perf_budget_norm(b.norm, x, xa, D);
            cr_assert(perf_within_budget(&b, x, xa, D), "eps %g trial %d: %.17g", b.eps, t, nrm);
            long double ss = 0;
            for (int j = 0; j < D; j++)
                ss += ((long double)xa[j] - x[j]) * ((long double)xa[j] - x[j]);
            cr_assert_leq(sqrtl(ss), (long double)b.eps * (1 + 1e-12L));
            if (perf_within_budget(&b, x, old, D))
                cr_assert_eq(memcmp(xa, old, sizeof xa), 0, "eps %g trial %d", b.eps, t);
            else
                shrunk++;
            if (!clip && !at_most && b.eps <= 1.0f) /* no pixel clips at these */
                cr_assert_geq(nrm, b.eps - (sqrt(D) * 0x1p-24 + b.eps * 0x1p-20),
                              "eps %g trial %d: %.17g", b.eps, t, nrm);
            trials++;
        }
    cr_assert_gt(shrunk, trials / 10, "%d of %d needed a shrink", shrunk, trials);
    /* far outside the ball, and a delta of zeros */
    perf_budget_t b = {PERF_NORM_L2, 1.0f, 1, 0};
    fill_uniform(dl, D, 9, -1.0f, 1.0f);
    for (int j = 0; j < D; j++) x[j] = (float)(j % 256) / 255.0f;
    perf_apply_budget(&b, x, dl, xa, 1, D);
    cr_assert(perf_within_budget(&b, x, xa, D));
    cr_assert_gt(perf_budget_norm(b.norm, x, xa, D), 0.9f);
    memset(dl, 0, sizeof dl);
    perf_apply_budget(&b, x, dl, xa, 1, D);
    cr_assert_eq(memcmp(xa, x, sizeof xa), 0);
}

/* perf_summarize's within_budget (what dp-perform evaluate reports): the
 * stored norms against eps with no slack. */
Test(budget, summary_no_slack)
{
    perf_samples_t *s = perf_samples_new(2, 1, 2, 2);
    s->budget = (perf_budget_t){PERF_NORM_LINF, 0.09f, 0, 0};
    s->flops_full = 10;
    for (int i = 0; i < 2; i++) s->flops_seed[i] = s->flops_adv[i] = 5;
    for (int j = 0; j < 8; j++) s->xadv[j] = 0.5f;
    perf_summary_t r;
    s->delta_norm[0] = 0.09f, s->delta_norm[1] = 0.01f;
    perf_summarize(s, 0.9, &r);
    cr_assert(r.within_budget && r.pixels_ok, "at eps");
    s->delta_norm[0] = 0.0900000334f; /* the reported sets' norm, 4 ulps of 0.09 over */
    perf_summarize(s, 0.9, &r);
    cr_assert_not(r.within_budget, "the reported norm");
    cr_assert(r.pixels_ok);
    s->delta_norm[0] = nextafterf(0.09f, 1.0f);
    perf_summarize(s, 0.9, &r);
    cr_assert_not(r.within_budget, "1 ulp over");
    s->delta_norm[0] = NAN;
    perf_summarize(s, 0.9, &r);
    cr_assert_not(r.within_budget, "NaN norm");
    s->delta_norm[0] = 0.09f;
    s->xadv[5] = nextafterf(1.0f, 2.0f);
    perf_summarize(s, 0.9, &r);
    cr_assert_not(r.within_budget || r.pixels_ok, "pixel above 1");
    perf_samples_destroy(&s);
}

/* Every method on 8-bit seeds (k/255, as Fashion-MNIST's) at the budgets of
 * the report: every output passes the strict checker, and delta_norm is
 * perf_budget_norm's value. */
Test(budget, methods_strict_on_8bit_seeds, .timeout = 600)
{
    adnn_model_t *m = load_sdn();
    const int n = 8;
    float *x = seeds(n, 41);
    for (int i = 0; i < n * D; i++) x[i] = (float)(int)(x[i] * 255.0f + 0.5f) / 255.0f;
    perf_gen_config_t gc = perf_gen_config_default();
    gc.width = 8, gc.max_batch = 4, gc.inference_only = 1, gc.seed = 7;
    perf_gen_t *g = perf_gen_new(&gc);
    cr_assert_not_null(g);
    perf_budget_t budgets[] = {{PERF_NORM_LINF, 0.09f, 0, 0},
                               {PERF_NORM_LINF, 8.0f / 255.0f, 0, 0},
                               {PERF_NORM_LINF, 0.03f, 0, 0},
                               {PERF_NORM_L2, 1.0f, 0, 0},
                               {PERF_NORM_L2, 0.5f, 1, 0}};
    for (size_t bi = 0; bi < sizeof budgets / sizeof budgets[0]; bi++)
        for (int meth = 0; meth < 4; meth++) {
            const perf_budget_t *b = &budgets[bi];
            perf_samples_t *s = perf_samples_new(n, 1, 28, 28);
            for (int i = 0; i < n; i++) s->seed_index[i] = i;
            dp_err_t err;
            if (meth == PERF_METHOD_DEEPPERFORM) {
                err = perf_generate(g, m, b, x, s, 1);
            } else if (meth == PERF_METHOD_RANDOM) {
                err = perf_random(m, b, 3, x, s, 1);
            } else if (meth == PERF_METHOD_ILFO) {
                perf_ilfo_config_t c = perf_ilfo_config_default();
                c.iters = 3, c.batch = 4, c.lr = 1.0f; /* large steps reach the boundary */
                err = perf_ilfo(m, b, &c, x, s);
            } else {
                perf_sloth_config_t c = perf_sloth_config_default();
                c.linf_steps = 3, c.l2_steps = 3, c.batch = 4, c.linf_step = 0.05f;
                err = perf_deepsloth(m, b, &c, x, s);
            }
            cr_assert_eq(err, DP_OK, "%s: %s", perf_method_name(meth), dp_err_detail());
            check_budget(s, x, perf_method_name(meth));
            for (int i = 0; i < n; i++)
                cr_assert_eq(s->delta_norm[i],
                             perf_budget_norm(b->norm, x + i * D, s->xadv + i * D, D));
            perf_summary_t r;
            perf_summarize(s, 0.9, &r);
            cr_assert(r.within_budget, "%s %s %g", perf_method_name(meth), perf_norm_name(b->norm),
                      b->eps);
            perf_samples_destroy(&s);
        }
    perf_gen_destroy(&g);
    adnn_model_destroy(&m);
    free(x);
}

/* ILFO or DeepSloth (meth) on x[lo, hi) as seeds lo.. at slot lo mod 4. */
static perf_samples_t *baseline_run(adnn_model_t *m, int meth, const float *x, int lo, int hi,
                                    int workers)
{
    const perf_budget_t b = {PERF_NORM_LINF, 0.09f, 0, 0};
    perf_samples_t *s = perf_samples_new(hi - lo, 1, 28, 28);
    cr_assert_not_null(s);
    for (int i = lo; i < hi; i++) s->seed_index[i - lo] = i;
    dp_err_t err;
    if (meth == PERF_METHOD_ILFO) {
        perf_ilfo_config_t c = perf_ilfo_config_default();
        c.iters = 3, c.batch = 4, c.lr = 1.0f, c.first_slot = lo % 4, c.workers = workers;
        err = perf_ilfo(m, &b, &c, x + (size_t)lo * D, s);
    } else {
        perf_sloth_config_t c = perf_sloth_config_default();
        c.linf_steps = 3, c.batch = 4, c.first_slot = lo % 4, c.workers = workers;
        err = perf_deepsloth(m, &b, &c, x + (size_t)lo * D, s);
    }
    cr_assert_eq(err, DP_OK, "%s [%d, %d): %s", perf_method_name(meth), lo, hi, dp_err_detail());
    return s;
}

/* A seed's x' and FLOPs have the same bits whatever the set it came in, when
 * the caller gives the slot of its first seed: sets that start inside a
 * batch, end inside one, or are shorter than one, on 1 or 2 workers. */
Test(perform, baselines_same_bits_whatever_the_set, .timeout = 600)
{
    adnn_model_t *m = load_sdn();
    const int n = 11;
    float *x = seeds(n, 77);
    for (int meth = PERF_METHOD_ILFO; meth <= PERF_METHOD_DEEPSLOTH; meth++) {
        perf_samples_t *all = baseline_run(m, meth, x, 0, n, 1);
        const int sets[][3] = {{3, 9, 1}, {5, 11, 2}, {6, 7, 1}, {0, 11, 2}, {8, 11, 1}};
        for (size_t k = 0; k < sizeof sets / sizeof sets[0]; k++) {
            int lo = sets[k][0], hi = sets[k][1];
            perf_samples_t *s = baseline_run(m, meth, x, lo, hi, sets[k][2]);
            for (int i = lo; i < hi; i++) {
                cr_assert(!memcmp(s->xadv + (size_t)(i - lo) * D, all->xadv + (size_t)i * D,
                                  D * sizeof(float)),
                          "%s: seed %d's x' differs in the set [%d, %d)", perf_method_name(meth), i,
                          lo, hi);
                cr_assert_eq(s->flops_adv[i - lo], all->flops_adv[i]);
                cr_assert_eq(s->flops_seed[i - lo], all->flops_seed[i]);
            }
            perf_samples_destroy(&s);
        }
        perf_samples_destroy(&all);
    }
    /* a slot outside the batch is refused, naming it */
    const perf_budget_t b = {PERF_NORM_LINF, 0.09f, 0, 0};
    perf_samples_t *s = perf_samples_new(2, 1, 28, 28);
    perf_ilfo_config_t c = perf_ilfo_config_default();
    c.batch = 4, c.first_slot = 4;
    cr_assert_eq(perf_ilfo(m, &b, &c, x, s), DP_ERR_INVALID);
    cr_assert(strstr(dp_err_detail(), "first_slot 4"), "%s", dp_err_detail());
    perf_sloth_config_t sc = perf_sloth_config_default();
    sc.batch = 4, sc.first_slot = -1;
    cr_assert_eq(perf_deepsloth(m, &b, &sc, x, s), DP_ERR_INVALID);
    perf_samples_destroy(&s);
    free(x);
    adnn_model_destroy(&m);
}

/* adnn_pk_vjp with dL/dp = -1/(nK p) equals adnn_pk_grad. */
static void logp_dloss(const float *p, int n, int k, float *dp, void *arg)
{
    (void)arg;
    for (int i = 0; i < n * k; i++) dp[i] = (float)(-1.0 / ((double)n * k * p[i]));
}

Test(perform, pk_vjp_matches_pk_grad)
{
    adnn_model_t *m = load_sdn();
    int n = 3, K = adnn_pk_count(m);
    float *x = seeds(n, 21), *d1 = malloc(n * D * 4), *d2 = malloc(n * D * 4);
    float p1[3 * 16], p2[3 * 16];
    double loss;
    cr_assert_eq(adnn_pk_grad(m, x, n, p1, &loss, d1), DP_OK);
    cr_assert_eq(adnn_pk_vjp(m, x, n, logp_dloss, NULL, p2, d2), DP_OK);
    double mx = 0, md = 0;
    for (int i = 0; i < n * K; i++) cr_assert_float_eq(p1[i], p2[i], 1e-6);
    for (int i = 0; i < n * D; i++) {
        md = fmax(md, fabs(d1[i] - d2[i]));
        mx = fmax(mx, fabs(d1[i]));
    }
    cr_assert_leq(md, 1e-3 * mx + 1e-9, "max diff %g of %g", md, mx);
    free(x), free(d1), free(d2);
    adnn_model_destroy(&m);
}

/* perf_ladv_below: the published L_adv over the decisions below the margin
 * only, on the same scale; its dL/dp drives adnn_pk_vjp to the same input
 * gradient as adnn_pk_grad when no decision is excluded. */
static void below_dloss(const float *p, int n, int k, float *dp, void *arg)
{
    perf_ladv_below(p, n, k, *(const float *)arg, 0, dp);
}

Test(perform, ladv_below_value_and_gradient)
{
    const float p[6] = {0.2f, 0.7f, 1e-8f, 0.5f, 0.49f, 0.9f};
    float dp[6];
    double l = perf_ladv_below(p, 2, 3, 0.5f, 0, dp);
    double want = -(log((double)0.2f) + log(PERF_LOG_FLOOR) + log((double)0.49f)) / 6;
    cr_assert_float_eq(l, want, 1e-9, "loss %.9g, want %.9g", l, want);
    const double dwant[6] = {-1.0 / (6 * 0.2f), 0, 0, 0, -1.0 / (6 * (double)0.49f), 0};
    for (int i = 0; i < 6; i++)
        cr_assert_float_eq(dp[i], dwant[i], 1e-6, "dp[%d] %g, want %g", i, dp[i], dwant[i]);
    /* every decision below the margin: the published loss */
    cr_assert_float_eq(perf_ladv_below(p, 2, 3, 2.0f, 0, NULL), perf_ladv(p, 2, 3), 1e-12);
    /* hinge: ILFO's relu(margin - p_k), averaged */
    l = perf_ladv_below(p, 2, 3, 0.5f, 1, dp);
    want = ((0.5 - (double)0.2f) + (0.5 - 1e-8) + (0.5 - (double)0.49f)) / 6;
    cr_assert_float_eq(l, want, 1e-7, "hinge loss %.9g, want %.9g", l, want);
    const double hwant[6] = {-1.0 / 6, 0, -1.0 / 6, 0, -1.0 / 6, 0};
    for (int i = 0; i < 6; i++)
        cr_assert_float_eq(dp[i], hwant[i], 1e-7, "hinge dp[%d] %g, want %g", i, dp[i], hwant[i]);

    adnn_model_t *m = load_sdn();
    int n = 3, K = adnn_pk_count(m);
    float *x = seeds(n, 22), *d1 = malloc(n * D * 4), *d2 = malloc(n * D * 4);
    float p1[3 * 16], p2[3 * 16], all = 2.0f;
    double loss;
    cr_assert_eq(adnn_pk_grad(m, x, n, p1, &loss, d1), DP_OK);
    cr_assert_eq(adnn_pk_vjp(m, x, n, below_dloss, &all, p2, d2), DP_OK);
    double mx = 0, md = 0;
    for (int i = 0; i < n * D; i++) {
        md = fmax(md, fabs(d1[i] - d2[i]));
        mx = fmax(mx, fabs(d1[i]));
    }
    cr_assert_gt(mx, 0);
    cr_assert_leq(md, 1e-3 * mx + 1e-9, "margin 2: max diff %g of %g", md, mx);
    /* a margin that keeps the lowest decision only changes the gradient */
    float lo = 1.0f, hi = 0.0f;
    for (int i = 0; i < n * K; i++) lo = fminf(lo, p1[i]), hi = fmaxf(hi, p1[i]);
    cr_assert_lt(lo, hi, "the seeds' decisions differ");
    float just = nextafterf(lo, 1.0f);
    cr_assert_eq(adnn_pk_vjp(m, x, n, below_dloss, &just, p2, d2), DP_OK);
    md = 0;
    for (int i = 0; i < n * D; i++) md = fmax(md, fabs(d1[i] - d2[i]));
    cr_assert_gt(md, 1e-2 * mx, "margin %g: the gradient is the published one's", just);
    free(x), free(d1), free(d2);
    adnn_model_destroy(&m);
}

/* adnn_exits_backward: directional derivative of sum_k w_k . z_k. */
Test(perform, exits_backward_fd)
{
    adnn_model_t *m = load_sdn();
    const adnn_spec_t *s = adnn_model_spec(m);
    int E = s->nexits, K = s->num_classes, L = (E + 1) * K;
    float *x = seeds(1, 31), xp[D], v[D], dx[D];
    float *w = malloc(L * 4), *lg = malloc(L * 4);
    fill_uniform(w, L, 32, -1, 1);
    for (int j = 0; j < K; j++) w[E * K + j] = 0; /* final classifier: no gradient */
    fill_uniform(v, D, 33, -1, 1);
    cr_assert_eq(adnn_eval_batch(m, x, 1, lg), DP_OK);
    cr_assert_eq(adnn_exits_backward(m, w, 1, dx), DP_OK, "%s", dp_err_detail());
    double ana = 0, f[2], h = 1e-3;
    for (int j = 0; j < D; j++) ana += (double)dx[j] * v[j];
    for (int sg = 0; sg < 2; sg++) {
        for (int j = 0; j < D; j++) xp[j] = x[j] + (float)((sg ? -h : h) * v[j]);
        adnn_eval_batch(m, xp, 1, lg);
        f[sg] = 0;
        for (int j = 0; j < L; j++) f[sg] += (double)w[j] * lg[j];
    }
    double num = (f[0] - f[1]) / (2 * h);
    cr_assert(fabs(num - ana) <= 5e-2 * fabs(ana) + 1e-3, "fd %g analytic %g", num, ana);
    free(x), free(w), free(lg);
    adnn_model_destroy(&m);
}

static perf_train_config_t tiny_train(const char *ckpt)
{
    perf_train_config_t c = perf_train_config_default();
    c.width = 8, c.batch = 4, c.epochs = 3, c.patience = 5, c.seed = 5;
    c.alpha = 0.1f, c.beta = 1.0f; /* exercise L_GAN and L_per too */
    c.budget.norm = PERF_NORM_L2, c.budget.eps = 1.0f, c.budget.l2_at_most = 1;
    c.lr_step1 = 2; /* cross an lr change within 3 epochs */
    c.checkpoint = ckpt;
    return c;
}

static perf_gen_t *train_once(adnn_model_t *m, const float *x, const char *ckpt, int stop_after,
                              dp_err_t *err)
{
    perf_train_config_t c = tiny_train(ckpt);
    c.stop_after = stop_after;
    perf_gen_t *g = NULL;
    perf_train_result_t res;
    *err = perf_train(m, x, 8, x + 8 * D, 4, &c, &g, &res);
    return g;
}

/* The name of the first tensor whose bits differ between a and b, or NULL. */
static const char *differing_tensor(perf_gen_t *a, perf_gen_t *b)
{
    cr_assert_eq(perf_gen_num_tensors(a), perf_gen_num_tensors(b));
    for (int i = 0; i < perf_gen_num_tensors(a); i++) {
        const perf_gen_tensor_t *ta = perf_gen_tensor(a, i), *tb = perf_gen_tensor(b, i);
        if (memcmp(ta->data, tb->data, ta->numel * sizeof(float))) return ta->name;
    }
    return NULL;
}

static void assert_same_weights(perf_gen_t *a, perf_gen_t *b)
{
    const char *name = differing_tensor(a, b);
    cr_assert_null(name, "tensor %s differs", name);
}

/* Same seed + thread count: bit-identical weights; a run killed after one
 * epoch and resumed from its checkpoint equals the uninterrupted run. */
/* The paper's schedule (x0.1 from epoch 50, x0.01 from 80 of 100) scales to
 * the epoch count unless the steps are set; never before epoch 2. */
Test(perform, lr_steps_scale_with_epochs)
{
    perf_train_config_t c = perf_train_config_default();
    int s1, s2;
    c.epochs = 100;
    perf_lr_steps(&c, &s1, &s2);
    cr_expect(s1 == 50 && s2 == 80, "100 epochs: %d %d", s1, s2);
    c.epochs = 20;
    perf_lr_steps(&c, &s1, &s2);
    cr_expect(s1 == 10 && s2 == 16, "20 epochs: %d %d", s1, s2);
    c.epochs = 1;
    perf_lr_steps(&c, &s1, &s2);
    cr_expect(s1 == 2 && s2 == 2, "1 epoch: %d %d", s1, s2);
    c.epochs = 20, c.lr_step1 = 7, c.lr_step2 = 30;
    perf_lr_steps(&c, &s1, &s2);
    cr_expect(s1 == 7 && s2 == 30, "explicit: %d %d", s1, s2);
}

Test(perform, train_deterministic_and_resume, .timeout = 600)
{
    nn_set_threads(1);
    adnn_model_t *m = load_sdn();
    float *x = seeds(12, 41);
    char ck[256];
    snprintf(ck, sizeof ck, "%s/test_perform_%d.ckpt", DP_BINARY_DIR, (int)getpid());
    unlink(ck);
    dp_err_t err;
    perf_gen_t *a = train_once(m, x, NULL, 0, &err);
    cr_assert_eq(err, DP_OK, "%s", dp_err_detail());
    perf_gen_t *b = train_once(m, x, NULL, 0, &err);
    cr_assert_eq(err, DP_OK);
    assert_same_weights(a, b);
    perf_gen_destroy(&b);
    /* "killed" after epoch 1, then resumed */
    b = train_once(m, x, ck, 1, &err);
    cr_assert_eq(err, DP_ERR_INTERRUPTED);
    cr_assert_null(b);
    cr_assert_eq(access(ck, F_OK), 0, "checkpoint written");
    b = train_once(m, x, ck, 0, &err);
    cr_assert_eq(err, DP_OK, "%s", dp_err_detail());
    assert_same_weights(a, b);
    /* a checkpoint of other settings is refused */
    perf_train_config_t c = tiny_train(ck);
    c.seed = 6;
    perf_gen_t *g = NULL;
    perf_train_result_t res;
    cr_assert_eq(perf_train(m, x, 8, x + 8 * D, 4, &c, &g, &res), DP_ERR_MISMATCH);
    unlink(ck);
    /* generator file round trip gives the same test inputs */
    char gp[256];
    snprintf(gp, sizeof gp, "%s/test_perform_%d.gen", DP_BINARY_DIR, (int)getpid());
    perf_budget_t bud = tiny_train(NULL).budget, bud2;
    cr_assert_eq(perf_gen_save(a, &bud, gp), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(perf_gen_load(gp, 4, &g, &bud2), DP_OK, "%s", dp_err_detail());
    cr_assert(bud2.norm == bud.norm && bud2.eps == bud.eps && bud2.l2_at_most == 1 &&
              bud2.linf_scaled == 0);
    perf_gen_destroy(&g);
    perf_budget_t scaled = bud;
    scaled.linf_scaled = 1;
    cr_assert_eq(perf_gen_save(a, &scaled, gp), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(perf_gen_load(gp, 4, &g, &bud2), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(bud2.linf_scaled, 1, "the scaled Linf mapping is saved with the generator");
    perf_samples_t *s1 = perf_samples_new(4, 1, 28, 28), *s2 = perf_samples_new(4, 1, 28, 28);
    cr_assert_eq(perf_generate(a, m, &bud, x, s1, 1), DP_OK);
    cr_assert_eq(perf_generate(g, m, &bud, x, s2, 1), DP_OK);
    cr_assert_eq(memcmp(s1->xadv, s2->xadv, 4 * D * sizeof(float)), 0);
    /* sample set round trip */
    snprintf(gp, sizeof gp, "%s/test_perform_%d.samples", DP_BINARY_DIR, (int)getpid());
    s1->seconds = 0.25;
    cr_assert_eq(perf_samples_save(s1, gp), DP_OK, "%s", dp_err_detail());
    perf_samples_t *s3 = NULL;
    cr_assert_eq(perf_samples_load(gp, &s3), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(memcmp(s1->xadv, s3->xadv, 4 * D * sizeof(float)), 0);
    cr_assert_eq(memcmp(s1->flops_adv, s3->flops_adv, 4 * sizeof(double)), 0);
    cr_assert(s3->seconds == 0.25 && s3->method == PERF_METHOD_DEEPPERFORM);
    unlink(gp);
    perf_samples_destroy(&s1), perf_samples_destroy(&s2), perf_samples_destroy(&s3);
    perf_gen_destroy(&g);
    perf_gen_destroy(&a);
    perf_gen_destroy(&b);
    adnn_model_destroy(&m);
    free(x);
}

/* Training with adv_margin: runs, gives another generator than the
 * published loss, and its checkpoint is not resumed under another margin;
 * a margin outside [0, 1] is refused. */
Test(perform, train_adv_margin, .timeout = 600)
{
    nn_set_threads(1);
    adnn_model_t *m = load_sdn();
    float *x = seeds(12, 41);
    char ck[256];
    snprintf(ck, sizeof ck, "%s/test_perform_margin_%d.ckpt", DP_BINARY_DIR, (int)getpid());
    unlink(ck);
    perf_train_result_t res;
    dp_err_t err;
    perf_gen_t *a = train_once(m, x, NULL, 0, &err), *b = NULL;
    cr_assert_eq(err, DP_OK, "%s", dp_err_detail());
    perf_train_config_t c = tiny_train(ck);
    c.adv_margin = 0.3f;
    cr_assert_eq(perf_train(m, x, 8, x + 8 * D, 4, &c, &b, &res), DP_OK, "%s", dp_err_detail());
    cr_assert_not_null(differing_tensor(a, b),
                       "adv_margin 0.3 trained the same generator as the published loss");
    c.adv_hinge = 1; /* the checkpoint's loss was -log p_k */
    perf_gen_t *g = NULL;
    cr_assert_eq(perf_train(m, x, 8, x + 8 * D, 4, &c, &g, &res), DP_ERR_MISMATCH);
    c.adv_hinge = 0;
    c.adv_margin = 0.0f;
    cr_assert_eq(perf_train(m, x, 8, x + 8 * D, 4, &c, &g, &res), DP_ERR_MISMATCH);
    cr_assert(strstr(dp_err_detail(), "L_adv margin"), "%s", dp_err_detail());
    unlink(ck);
    c.checkpoint = NULL;
    c.adv_margin = 1.5f;
    cr_assert_eq(perf_train(m, x, 8, x + 8 * D, 4, &c, &g, &res), DP_ERR_INVALID);
    cr_assert(strstr(dp_err_detail(), "adv_margin in [0, 1]"), "%s", dp_err_detail());
    c.adv_margin = 0.0f, c.adv_hinge = 1;
    cr_assert_eq(perf_train(m, x, 8, x + 8 * D, 4, &c, &g, &res), DP_ERR_INVALID);
    cr_assert_null(g);
    perf_gen_destroy(&a), perf_gen_destroy(&b);
    adnn_model_destroy(&m);
    free(x);
}

/* Generation is deterministic per seed input for a given batch size (the
 * same input in the same slot gives the same bits whatever the other inputs
 * are, and however many seeds the run has); another slot agrees to within
 * 1e-6 (the BLAS sums in another order). */
Test(perform, generate_per_input_deterministic)
{
    adnn_model_t *m = load_sdn();
    float *x = seeds(5, 51), *y = seeds(5, 52);
    perf_gen_config_t gc = perf_gen_config_default();
    gc.width = 8, gc.max_batch = 5, gc.inference_only = 1;
    perf_gen_t *g = perf_gen_new(&gc);
    perf_budget_t b = {PERF_NORM_LINF, 0.09f, 0, 0};
    perf_samples_t *all = perf_samples_new(5, 1, 28, 28), *one = perf_samples_new(1, 1, 28, 28),
                   *mix = perf_samples_new(5, 1, 28, 28);
    cr_assert_eq(perf_generate(g, m, &b, x, all, 1), DP_OK);
    memcpy(y + 2 * D, x + 2 * D, D * sizeof(float)); /* input 2 among other inputs */
    cr_assert_eq(perf_generate(g, m, &b, y, mix, 1), DP_OK);
    cr_assert_eq(memcmp(mix->xadv + 2 * D, all->xadv + 2 * D, D * sizeof(float)), 0);
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(perf_generate(g, m, &b, x + i * D, one, 1), DP_OK);
        for (int j = 0; j < D; j++)
            cr_assert_float_eq(one->xadv[j], all->xadv[i * D + j], 1e-6, "input %d", i);
    }
    /* 7 seeds vs the same 7 followed by 5 others: the same bits */
    float *z = seeds(12, 53);
    perf_samples_t *s7 = perf_samples_new(7, 1, 28, 28), *s12 = perf_samples_new(12, 1, 28, 28);
    cr_assert_eq(perf_generate(g, m, &b, z, s7, 1), DP_OK);
    cr_assert_eq(perf_generate(g, m, &b, z, s12, 1), DP_OK);
    cr_assert_eq(memcmp(s7->xadv, s12->xadv, 7 * D * sizeof(float)), 0);
    perf_samples_destroy(&s7), perf_samples_destroy(&s12);
    free(z);
    perf_samples_destroy(&all), perf_samples_destroy(&one), perf_samples_destroy(&mix);
    perf_gen_destroy(&g);
    adnn_model_destroy(&m);
    free(x), free(y);
}

/* ------------------------------------------------------------- seed workers */

static adnn_model_t *load_model(const char *name)
{
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%s/models/%s", DP_SOURCE_DIR, name);
    adnn_model_t *m = NULL;
    cr_assert_eq(adnn_model_load(prefix, &m), DP_OK, "load %s: %s", name, dp_err_detail());
    return m;
}

/* ILFO (meth PERF_METHOD_ILFO) or DeepSloth on n seeds of x with `workers`
 * seed workers, batch 2, a few iterations, Linf 0.09 or L2 1. */
static perf_samples_t *run_workers(adnn_model_t *m, int meth, perf_norm_t norm, const float *x,
                                   int n, int workers)
{
    perf_samples_t *s = perf_samples_new(n, 1, 28, 28);
    cr_assert_not_null(s);
    for (int i = 0; i < n; i++) s->seed_index[i] = 100 + i;
    perf_budget_t b = {norm, norm == PERF_NORM_LINF ? 0.09f : 1.0f, 0, 0};
    dp_err_t err;
    if (meth == PERF_METHOD_ILFO) {
        perf_ilfo_config_t c = perf_ilfo_config_default();
        c.iters = 4, c.batch = 2, c.workers = workers;
        c.lr = norm == PERF_NORM_L2 ? 1e-8f : c.lr; /* steps inside the ball: no clamping */
        err = perf_ilfo(m, &b, &c, x, s);
    } else {
        perf_sloth_config_t c = perf_sloth_config_default();
        c.linf_steps = 4, c.linf_step = 0.02f, c.l2_steps = 4, c.batch = 2, c.workers = workers;
        err = perf_deepsloth(m, &b, &c, x, s);
    }
    cr_assert_eq(err, DP_OK, "%s, %d workers: %s", perf_method_name(meth), workers,
                 dp_err_detail());
    return s;
}

static void assert_same_samples(const perf_samples_t *a, const perf_samples_t *b, const char *what)
{
    size_t n = (size_t)a->n;
    cr_assert_eq(memcmp(a->xadv, b->xadv, n * D * sizeof(float)), 0, "%s: x' differ", what);
    cr_assert_eq(memcmp(a->flops_seed, b->flops_seed, n * sizeof(double)), 0, "%s: seed FLOPs",
                 what);
    cr_assert_eq(memcmp(a->flops_adv, b->flops_adv, n * sizeof(double)), 0, "%s: x' FLOPs", what);
    cr_assert_eq(memcmp(a->delta_norm, b->delta_norm, n * sizeof(float)), 0, "%s: norms", what);
    cr_assert_eq(memcmp(a->psnr, b->psnr, n * sizeof(float)), 0, "%s: PSNR", what);
    cr_assert(a->flops_full == b->flops_full, "%s: full FLOPs", what);
}

/* 1, 2 and 3 workers give the same bits on 7 seeds in batches of 2, on both
 * norms (L2 steps carry the BLAS's 1e-7 into x', so a batch split
 * differently would show). The one-worker run has OpenBLAS at one thread, as
 * the workers do (at two threads OpenBLAS may change the last bits); the
 * others start from two, which must be restored. */
static void check_workers_same_bits(const char *name)
{
    adnn_model_t *m = load_model(name);
    const int n = 7;
    float *x = seeds(n, 61);
    for (int norm = PERF_NORM_LINF; norm <= PERF_NORM_L2; norm++)
        for (int meth = PERF_METHOD_ILFO; meth <= PERF_METHOD_DEEPSLOTH; meth++) {
            nn_set_threads(1);
            perf_samples_t *ref = run_workers(m, meth, norm, x, n, 1);
            nn_set_threads(2);
            int blas = nn_get_threads();
            int moved = 0;
            for (int i = 0; i < n; i++) moved += ref->delta_norm[i] > 1e-4f;
            cr_assert_gt(moved, 0, "%s %s %s: no seed moved", name, perf_method_name(meth),
                         perf_norm_name(norm));
            for (int w = 2; w <= 3; w++) {
                perf_samples_t *s = run_workers(m, meth, norm, x, n, w);
                char what[96];
                snprintf(what, sizeof what, "%s %s %s, %d workers", name, perf_method_name(meth),
                         perf_norm_name(norm), w);
                assert_same_samples(ref, s, what);
                cr_assert_eq(nn_get_threads(), blas, "%s: OpenBLAS threads not restored", what);
                perf_samples_destroy(&s);
            }
            perf_samples_destroy(&ref);
        }
    /* more workers than batches, and the measuring step alone */
    nn_set_threads(1);
    perf_samples_t *a = run_workers(m, PERF_METHOD_ILFO, PERF_NORM_LINF, x, 3, 1),
                   *b = run_workers(m, PERF_METHOD_ILFO, PERF_NORM_LINF, x, 3, 5);
    assert_same_samples(a, b, "3 seeds on 5 workers");
    memset(b->flops_adv, 0, 3 * sizeof(double));
    cr_assert_eq(perf_samples_measure(m, x, b, 3), DP_OK, "%s", dp_err_detail());
    assert_same_samples(a, b, "measure on 3 workers");
    perf_samples_destroy(&a), perf_samples_destroy(&b);
    adnn_model_destroy(&m);
    free(x);
}

Test(perform, workers_same_bits_sdn_resnet, .timeout = 600)
{
    check_workers_same_bits("sdn_resnet");
}

Test(perform, workers_same_bits_ranet, .timeout = 600) { check_workers_same_bits("ranet"); }

/* Each part runs on its own model (part 0 on the caller's), one OpenBLAS
 * thread meanwhile; parts cover the seeds in order. */
typedef struct parts_seen {
    adnn_model_t *m[4];
    int i0[4], n[4], blas[4];
} parts_seen_t;

static dp_err_t note_part(const perf_part_t *p, void *arg)
{
    parts_seen_t *ps = arg;
    ps->m[p->index] = p->m, ps->i0[p->index] = p->i0, ps->n[p->index] = p->n;
    ps->blas[p->index] = nn_get_threads();
    return DP_OK;
}

/* Part 1 fails at once; the others wait (bounded) for the stop flag.
 * seen[0][k]: part k ran; seen[1][k]: it saw the stop. */
static dp_err_t fail_part_1(const perf_part_t *p, void *arg)
{
    int(*seen)[3] = arg;
    seen[0][p->index] = 1;
    if (p->index == 1) return dp_err_set(DP_ERR_RANGE, "part failed on purpose");
    for (int i = 0; i < 5000 && !perf_part_stopped(p); i++) usleep(1000);
    seen[1][p->index] = perf_part_stopped(p);
    return DP_OK;
}

Test(perform, workers_parts_and_errors)
{
    adnn_model_t *m = load_sdn();
    nn_set_threads(2);
    int blas = nn_get_threads();
    perf_workers_t *w = NULL;
    cr_assert_eq(perf_workers_new(m, 3, 10, 1, &w), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(perf_workers_parts(w), 3);
    parts_seen_t ps = {0};
    cr_assert_eq(perf_workers_run(w, note_part, &ps), DP_OK);
    cr_assert(ps.m[0] == m && ps.m[1] && ps.m[2] && ps.m[1] != m && ps.m[2] != m &&
              ps.m[1] != ps.m[2]);
    int next = 0;
    for (int k = 0; k < 3; k++) {
        cr_assert_eq(ps.i0[k], next, "part %d starts at %d", k, ps.i0[k]);
        cr_assert(ps.n[k] == 3 || ps.n[k] == 4);
        cr_assert_eq(ps.blas[k], 1, "part %d ran with %d OpenBLAS threads", k, ps.blas[k]);
        next += ps.n[k];
    }
    cr_assert_eq(next, 10);
    int seen[2][3] = {{0}};
    dp_err_t err = perf_workers_run(w, fail_part_1, seen);
    cr_assert_eq(err, DP_ERR_RANGE);
    cr_assert_str_eq(dp_err_detail(), "seeds [4, 7) (worker 2 of 3): part failed on purpose");
    /* part 2 has a thread of its own; part 0, on the caller, is not started
     * when part 1 has already failed */
    cr_assert(seen[0][2] && seen[1][2], "part 2 did not see the stop");
    cr_assert(!seen[0][0] || seen[1][0], "part 0 did not see the stop");
    perf_workers_destroy(&w);
    cr_assert_null(w);
    cr_assert_eq(nn_get_threads(), blas, "OpenBLAS threads not restored");
    /* whole batches: 10 seeds in batches of 3 are 4 batches, split 2, 1, 1 */
    cr_assert_eq(perf_workers_new(m, 3, 10, 3, &w), DP_OK, "%s", dp_err_detail());
    memset(&ps, 0, sizeof ps);
    cr_assert_eq(perf_workers_run(w, note_part, &ps), DP_OK);
    cr_assert(ps.i0[0] == 0 && ps.n[0] == 6 && ps.i0[1] == 6 && ps.n[1] == 3 && ps.i0[2] == 9 &&
                  ps.n[2] == 1,
              "parts [%d +%d) [%d +%d) [%d +%d)", ps.i0[0], ps.n[0], ps.i0[1], ps.n[1], ps.i0[2],
              ps.n[2]);
    perf_workers_destroy(&w);
    /* one part (one batch): the caller's model, OpenBLAS untouched */
    cr_assert_eq(perf_workers_new(m, 4, 5, 8, &w), DP_OK);
    cr_assert_eq(perf_workers_parts(w), 1);
    memset(&ps, 0, sizeof ps);
    cr_assert_eq(perf_workers_run(w, note_part, &ps), DP_OK);
    cr_assert(ps.m[0] == m && ps.i0[0] == 0 && ps.n[0] == 5 && ps.blas[0] == blas);
    perf_workers_destroy(&w);
    adnn_model_destroy(&m);
}

/* A generator the memory cannot hold is refused before anything is
 * allocated: perf_gen_new against the limit, and a crafted generator file
 * whose metadata asks for 1x4096x4096 at width 1024 (within the loader's
 * per-field bounds) gets an error naming the file and the size. */
Test(perform, generator_memory_limit)
{
    perf_gen_config_t gc = perf_gen_config_default();
    gc.width = 16, gc.max_batch = 8, gc.inference_only = 1;
    const double need = perf_gen_memory_bytes(&gc);
    cr_assert(need > 4.0 * (double)perf_gen_count_params(&gc), "need %g", need);
    gc.inference_only = 0; /* gradients, two Adam moments, activation gradients */
    cr_assert(perf_gen_memory_bytes(&gc) > need + 12.0 * (double)perf_gen_count_params(&gc));
    gc.inference_only = 1;
    perf_gen_set_memory_limit((size_t)need - 1);
    perf_gen_t *g = perf_gen_new(&gc);
    cr_assert_null(g);
    cr_assert(strstr(dp_err_detail(), "1x28x28 generator of width 16 at batch 8 needs"), "%s",
              dp_err_detail());
    perf_gen_set_memory_limit((size_t)need);
    g = perf_gen_new(&gc);
    cr_assert_not_null(g, "%s", dp_err_detail());
    perf_gen_destroy(&g);
    perf_gen_set_memory_limit(0);
    cr_assert(perf_gen_memory_limit() > ((size_t)1 << 28), "this machine's memory");

    char gp[256];
    snprintf(gp, sizeof gp, "%s/test_perform_big_%d.gen", DP_BINARY_DIR, (int)getpid());
    st_writer_t *w = st_writer_new();
    const char *kv[][2] = {{"format", "dp.perform.generator.v1"},
                           {"c", "1"},
                           {"h", "4096"},
                           {"w", "4096"},
                           {"width", "1024"},
                           {"slope", "0.01"},
                           {"res_slope", "0.01"},
                           {"norm", "linf"},
                           {"eps", "0.09"},
                           {"l2_at_most", "0"}};
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        cr_assert_eq(st_writer_set_metadata(w, kv[i][0], kv[i][1]), DP_OK);
    float one = 1.0f;
    int64_t shape = 1;
    cr_assert_eq(st_writer_add_f32(w, "enc.0.weight", 1, &shape, &one), DP_OK);
    cr_assert_eq(st_writer_write(w, gp), DP_OK, "%s", dp_err_detail());
    st_writer_destroy(&w);
    perf_budget_t b;
    cr_assert_eq(perf_gen_load(gp, 32, &g, &b), DP_ERR_FORMAT);
    cr_assert_null(g);
    cr_assert(strstr(dp_err_detail(), gp) && strstr(dp_err_detail(), "1x4096x4096") &&
                  strstr(dp_err_detail(), "GiB, above the limit"),
              "%s", dp_err_detail());
    unlink(gp);
}

/* What train_hooks' hooks saw. */
typedef struct seen {
    int lines, epoch_ends, last_epoch, stop_at;
    char ckpt[256];
} seen_t;

static void seen_line(void *ctx, const char *stage, uint64_t done, uint64_t total, const char *l)
{
    seen_t *s = ctx;
    cr_assert_str_eq(stage, "train");
    cr_assert(done <= total && total == 3, "%llu of %llu", (unsigned long long)done,
              (unsigned long long)total);
    cr_assert(strstr(l, "held-out exec"), "%s", l);
    s->lines++;
}

static dp_err_t seen_epoch(void *ctx, int epoch, const char *ckpt)
{
    seen_t *s = ctx;
    cr_assert_eq(epoch, s->last_epoch + 1);
    cr_assert_eq(access(ckpt, F_OK), 0, "the checkpoint is written before the hook");
    snprintf(s->ckpt, sizeof s->ckpt, "%s", ckpt);
    s->last_epoch = epoch;
    s->epoch_ends++;
    return DP_OK;
}

static int seen_cancel(void *ctx)
{
    seen_t *s = ctx;
    return s->stop_at && s->last_epoch >= s->stop_at ? PERF_STOP_AFTER_EPOCH : PERF_GO_ON;
}

static int cancel_now(void *ctx)
{
    (void)ctx;
    return PERF_STOP_NOW;
}

/* Training reports through its hooks, prints nothing, calls epoch_end after
 * each checkpoint, stops after the epoch a cancel asks for (and resumes from
 * it to the uninterrupted run's weights), and at once on PERF_STOP_NOW. */
Test(perform, train_hooks, .init = cr_redirect_stdout, .timeout = 600)
{
    nn_set_threads(1);
    adnn_model_t *m = load_sdn();
    float *x = seeds(12, 41);
    char ck[256];
    snprintf(ck, sizeof ck, "%s/test_perform_hooks_%d.ckpt", DP_BINARY_DIR, (int)getpid());
    unlink(ck);
    dp_err_t err;
    perf_gen_t *a = train_once(m, x, NULL, 0, &err), *b = NULL;
    cr_assert_eq(err, DP_OK, "%s", dp_err_detail());
    seen_t seen = {0};
    seen.stop_at = 2;
    perf_train_config_t c = tiny_train(ck);
    c.hooks = (perf_hooks_t){seen_line, seen_cancel, seen_epoch, &seen};
    perf_train_result_t res;
    cr_assert_eq(perf_train(m, x, 8, x + 8 * D, 4, &c, &b, &res), DP_ERR_CANCELLED);
    cr_assert(strstr(dp_err_detail(), "stopped after epoch 2 (checkpoint written)"), "%s",
              dp_err_detail());
    cr_assert_null(b);
    cr_assert(seen.lines == 2 && seen.epoch_ends == 2, "%d lines, %d epoch ends", seen.lines,
              seen.epoch_ends);
    cr_assert_str_eq(seen.ckpt, ck);
    /* cancelled at once: no epoch, the checkpoint of epoch 2 untouched */
    c.hooks = (perf_hooks_t){NULL, cancel_now, NULL, NULL};
    cr_assert_eq(perf_train(m, x, 8, x + 8 * D, 4, &c, &b, &res), DP_ERR_CANCELLED);
    cr_assert(strstr(dp_err_detail(), "cancelled in epoch 3 (the checkpoint of epoch 2 stands)"),
              "%s", dp_err_detail());
    /* resumed without hooks: the uninterrupted run's weights */
    c.hooks = (perf_hooks_t){0};
    cr_assert_eq(perf_train(m, x, 8, x + 8 * D, 4, &c, &b, &res), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(res.resumed_from, 2);
    assert_same_weights(a, b);
    fflush(stdout);
    char printed[64] = {0};
    cr_assert_eq(fread(printed, 1, sizeof printed - 1, cr_get_redirected_stdout()), 0,
                 "the library printed: %s", printed);
    unlink(ck);
    perf_gen_destroy(&a);
    perf_gen_destroy(&b);
    adnn_model_destroy(&m);
    free(x);
}

/* What the progress hook of baseline_progress_lines receives. */
typedef struct lines {
    char out[1024];
    size_t len;
    uint64_t last_done, last_total;
} lines_t;

static void keep_line(void *ctx, const char *stage, uint64_t done, uint64_t total, const char *line)
{
    lines_t *l = ctx;
    l->len += (size_t)snprintf(l->out + l->len, sizeof l->out - l->len, "%s\n", line);
    l->last_done = done, l->last_total = total;
    cr_assert(!strcmp(stage, "ilfo") || !strcmp(stage, "deepsloth"), "stage %s", stage);
}

/* Progress lines of a baseline run: part 0 reports the seeds every part has
 * finished, after each of its batches but the last (here 3 of 2 seeds),
 * through the progress hook; the library prints nothing. */
Test(perform, baseline_progress_lines, .init = cr_redirect_stdout)
{
    lines_t got = {{0}, 0, 0, 0};
    const perf_hooks_t hooks = {keep_line, NULL, NULL, &got};
    adnn_model_t *m = load_sdn();
    float *x = seeds(6, 91);
    perf_samples_t *s = perf_samples_new(6, 1, 28, 28);
    for (int i = 0; i < 6; i++) s->seed_index[i] = i;
    perf_budget_t b = {PERF_NORM_LINF, 0.09f, 0, 0};
    perf_ilfo_config_t c = perf_ilfo_config_default();
    c.iters = 2, c.batch = 2, c.progress_every = 1e-9, c.hooks = hooks;
    cr_assert_eq(perf_ilfo(m, &b, &c, x, s), DP_OK, "%s", dp_err_detail());
    perf_sloth_config_t sc = perf_sloth_config_default();
    sc.linf_steps = 2, sc.batch = 3, sc.hooks = hooks; /* quiet by default */
    cr_assert_eq(perf_deepsloth(m, &b, &sc, x, s), DP_OK, "%s", dp_err_detail());
    sc.progress_every = 1e-9;
    cr_assert_eq(perf_deepsloth(m, &b, &sc, x, s), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(got.last_done, 3);
    cr_assert_eq(got.last_total, 6);
    fflush(stdout);
    char printed[64] = {0};
    cr_assert_eq(fread(printed, 1, sizeof printed - 1, cr_get_redirected_stdout()), 0,
                 "the library printed: %s", printed);
    const char *out = got.out;
    const char *want[] = {"ilfo: 2/6 seeds, ", "ilfo: 4/6 seeds, ", "deepsloth: 3/6 seeds, "};
    const char *at = out;
    for (int i = 0; i < 3; i++) {
        const char *f = strstr(at, want[i]);
        cr_assert_not_null(f, "no '%s' in order in:\n%s", want[i], out);
        at = f + strlen(want[i]);
    }
    cr_assert_null(strstr(out, "6/6"), "a line for the last batch:\n%s", out);
    cr_assert(strstr(out, " s left\n"), "%s", out);
    /* three lines in all: the quiet DeepSloth run printed none */
    int lines = 0;
    for (const char *p = out; *p; p++) lines += *p == '\n';
    cr_assert_eq(lines, 3, "%s", out);
    perf_samples_destroy(&s);
    adnn_model_destroy(&m);
    free(x);
}
