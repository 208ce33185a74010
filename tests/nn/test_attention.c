/* core/nn/attention.c: SAGAN self-attention against a naive double reference
 * written from the PyTorch module (out = gamma * bmm(v, A^T) + x), and every
 * gradient (input, q/k/v weights and biases, gamma) against central
 * differences. */
#include "layers_util.h"

#include "nn/attention.h"

struct att_cfg {
    int n, c, hw;
};

struct att_ctx {
    struct att_cfg g;
    const float *x, *wq, *bq, *wk, *bk, *wv, *bv, *gamma, *r;
};

static int c8_of(int c) { return c / 8 > 0 ? c / 8 : 1; }

static void att_ref(double *out, const struct att_ctx *p)
{
    int c = p->g.c, hw = p->g.hw, c8 = c8_of(c);
    double *q = malloc(sizeof(double) * c8 * hw), *k = malloc(sizeof(double) * c8 * hw);
    double *v = malloc(sizeof(double) * c * hw), *a = malloc(sizeof(double) * hw * hw);
    for (int b = 0; b < p->g.n; b++) {
        const float *x = p->x + (size_t)b * c * hw;
        for (int o = 0; o < c8; o++)
            for (int i = 0; i < hw; i++) {
                double sq = p->bq[o], sk = p->bk[o];
                for (int ci = 0; ci < c; ci++) {
                    sq += (double)p->wq[o * c + ci] * x[ci * hw + i];
                    sk += (double)p->wk[o * c + ci] * x[ci * hw + i];
                }
                q[o * hw + i] = sq, k[o * hw + i] = sk;
            }
        for (int o = 0; o < c; o++)
            for (int i = 0; i < hw; i++) {
                double s = p->bv[o];
                for (int ci = 0; ci < c; ci++) s += (double)p->wv[o * c + ci] * x[ci * hw + i];
                v[o * hw + i] = s;
            }
        for (int i = 0; i < hw; i++) {
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j < hw; j++) {
                double e = 0;
                for (int o = 0; o < c8; o++) e += q[o * hw + i] * k[o * hw + j];
                a[i * hw + j] = e;
                mx = fmax(mx, e);
            }
            for (int j = 0; j < hw; j++) sum += (a[i * hw + j] = exp(a[i * hw + j] - mx));
            for (int j = 0; j < hw; j++) a[i * hw + j] /= sum;
        }
        for (int o = 0; o < c; o++)
            for (int i = 0; i < hw; i++) {
                double s = 0;
                for (int j = 0; j < hw; j++) s += v[o * hw + j] * a[i * hw + j];
                out[(size_t)b * c * hw + o * hw + i] = p->gamma[0] * s + x[o * hw + i];
            }
    }
    free(q), free(k), free(v), free(a);
}

static double att_loss(void *vp)
{
    const struct att_ctx *p = vp;
    size_t n = (size_t)p->g.n * p->g.c * p->g.hw;
    double *out = malloc(sizeof(double) * n), s = 0;
    att_ref(out, p);
    for (size_t i = 0; i < n; i++) s += out[i] * p->r[i];
    free(out);
    return s;
}

static void run_attention(struct att_cfg g, float gamma, const char *name)
{
    int c8 = c8_of(g.c);
    size_t nx = (size_t)g.n * g.c * g.hw;
    size_t nq = (size_t)c8 * g.c, nv = (size_t)g.c * g.c;
    float *x = lt_floats(nx), *y = lt_floats(nx), *r = lt_floats(nx), *dx = lt_floats(nx);
    float *wq = lt_floats(nq), *wk = lt_floats(nq), *wv = lt_floats(nv);
    float *bq = lt_floats(c8), *bk = lt_floats(c8), *bv = lt_floats(g.c);
    float *dwq = lt_floats(nq), *dwk = lt_floats(nq), *dwv = lt_floats(nv);
    float *dbq = lt_floats(c8), *dbk = lt_floats(c8), *dbv = lt_floats(g.c), dgamma = 0;
    float *cache = lt_floats(nn_attention_cache_size(g.n, g.c, g.hw));
    float *ws = lt_floats(nn_attention_workspace(g.n, g.c, g.hw));
    double *ref = lt_doubles(nx);
    dp_rng_t rng;
    dp_rng_seed(&rng, 40 + g.c);
    lt_fill(&rng, x, nx, -1, 1);
    lt_fill(&rng, r, nx, -1, 1);
    float sc = 1.0f / sqrtf((float)g.c);
    lt_fill(&rng, wq, nq, -2 * sc, 2 * sc);
    lt_fill(&rng, wk, nq, -2 * sc, 2 * sc);
    lt_fill(&rng, wv, nv, -sc, sc);
    lt_fill(&rng, bq, c8, -0.3f, 0.3f);
    lt_fill(&rng, bk, c8, -0.3f, 0.3f);
    lt_fill(&rng, bv, g.c, -0.3f, 0.3f);

    struct att_ctx ctx = {g, x, wq, bq, wk, bk, wv, bv, &gamma, r};
    nn_attention_forward(y, cache, x, wq, bq, wk, bk, wv, bv, &gamma, g.n, g.c, g.hw);
    att_ref(ref, &ctx);
    lt_expect_fwd(name, y, ref, nx);
    nn_attention_backward(dx, dwq, dbq, dwk, dbk, dwv, dbv, &dgamma, r, cache, x, wq, wk, wv,
                          &gamma, g.n, g.c, g.hw, ws);
    char what[128];
#define CHECK(label, buf, cnt, grad)                                                               \
    do {                                                                                           \
        snprintf(what, sizeof what, "%s d%s", name, label);                                        \
        lt_gradcheck(what, att_loss, &ctx, buf, cnt, grad, 1e-3);                                  \
    } while (0)
    CHECK("x", x, nx, dx);
    CHECK("wq", wq, nq, dwq);
    CHECK("bq", bq, (size_t)c8, dbq);
    CHECK("wk", wk, nq, dwk);
    /* bk shifts every energy of row i by q_i . bk, which the softmax ignores:
     * its true gradient is 0, so only an absolute bound makes sense. */
    for (int o = 0; o < c8; o++)
        cr_expect(fabsf(dbk[o]) <= 1e-6f, "%s dbk[%d] = %g, want 0", name, o, (double)dbk[o]);
    CHECK("wv", wv, nv, dwv);
    CHECK("bv", bv, (size_t)g.c, dbv);
    CHECK("gamma", &gamma, 1, &dgamma);
#undef CHECK

    /* A second pass doubles every gradient; NULL gradients are skipped. */
    float *dx2 = lt_floats(nx), *dwq2 = lt_floats(nq), *dbk2 = lt_floats(c8), dgamma2;
    memcpy(dx2, dx, nx * sizeof(float));
    memcpy(dwq2, dwq, nq * sizeof(float));
    memcpy(dbk2, dbk, c8 * sizeof(float));
    dgamma2 = dgamma;
    nn_attention_backward(dx2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, r, cache, x, wq, wk, wv,
                          &gamma, g.n, g.c, g.hw, ws);
    nn_attention_backward(NULL, dwq2, NULL, NULL, dbk2, NULL, NULL, &dgamma2, r, cache, x, wq, wk,
                          wv, &gamma, g.n, g.c, g.hw, ws);
    lt_expect_doubled("attention dinp", dx, dx2, nx);
    lt_expect_doubled("attention dwq", dwq, dwq2, nq);
    lt_expect_doubled("attention dbk", dbk, dbk2, c8);
    lt_expect_doubled("attention dgamma", &dgamma, &dgamma2, 1);

    free(x), free(y), free(r), free(dx), free(wq), free(wk), free(wv), free(bq), free(bk);
    free(bv), free(dwq), free(dwk), free(dwv), free(dbq), free(dbk), free(dbv), free(cache);
    free(ws), free(ref), free(dx2), free(dwq2), free(dbk2);
}

Test(attention, c16_hw12)
{
    run_attention((struct att_cfg){2, 16, 12}, 0.7f, "attention c16 hw12");
}
/* C < 8: C8 = max(1, C/8) = 1. */
Test(attention, c4_hw9) { run_attention((struct att_cfg){2, 4, 9}, -0.4f, "attention c4 hw9"); }
Test(attention, c24_hw20)
{
    run_attention((struct att_cfg){1, 24, 20}, 1.3f, "attention c24 hw20");
}

/* gamma = 0 (the initial value): out = x, but dgamma is still the sum of
 * dout * attended values, and the other gradients vanish except dinp = dout. */
Test(attention, gamma_zero) { run_attention((struct att_cfg){2, 8, 6}, 0.0f, "attention gamma 0"); }
