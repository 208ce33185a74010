/* core/nn/pool.c: max/avg pooling with padding, global average pooling and
 * adaptive pooling against naive double references (written from PyTorch's
 * definitions) and central differences. Max-pool inputs are a shuffled ramp,
 * so every window has a unique maximum further than the FD step from the
 * runner-up. */
#include "layers_util.h"

#include "nn/pool.h"

enum pool_kind { POOL_MAX, POOL_AVG, POOL_AMAX, POOL_AAVG };

struct pool_cfg {
    enum pool_kind kind;
    int n, c, h, w, k, s, p; /* fixed window */
    int oh, ow;              /* output side */
};

/* Naive reference. For the fixed window, PyTorch's avg divisor counts padding
 * (the window clipped to [-p, h+p)); the adaptive bin is
 * [floor(i*h/o), ceil((i+1)*h/o)). */
static void pool_ref(double *out, const float *x, const struct pool_cfg *g)
{
    for (int pl = 0; pl < g->n * g->c; pl++)
        for (int oy = 0; oy < g->oh; oy++)
            for (int ox = 0; ox < g->ow; ox++) {
                int y0, y1, x0, x1, div;
                if (g->kind == POOL_MAX || g->kind == POOL_AVG) {
                    y0 = oy * g->s - g->p, y1 = y0 + g->k, x0 = ox * g->s - g->p, x1 = x0 + g->k;
                    div = (int)(fmin(y1, g->h + g->p) - y0) * (int)(fmin(x1, g->w + g->p) - x0);
                } else {
                    y0 = (int)floor((double)oy * g->h / g->oh);
                    y1 = (int)ceil((double)(oy + 1) * g->h / g->oh);
                    x0 = (int)floor((double)ox * g->w / g->ow);
                    x1 = (int)ceil((double)(ox + 1) * g->w / g->ow);
                    div = (y1 - y0) * (x1 - x0);
                }
                double best = -INFINITY, sum = 0;
                for (int iy = y0; iy < y1; iy++)
                    for (int ix = x0; ix < x1; ix++) {
                        if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w) continue;
                        double v = x[(pl * g->h + iy) * g->w + ix];
                        best = fmax(best, v);
                        sum += v;
                    }
                int is_max = g->kind == POOL_MAX || g->kind == POOL_AMAX;
                out[(pl * g->oh + oy) * g->ow + ox] = is_max ? best : sum / div;
            }
}

struct pool_ctx {
    const struct pool_cfg *g;
    const float *x, *r;
    double *out;
};

static double pool_loss(void *p)
{
    struct pool_ctx *c = p;
    pool_ref(c->out, c->x, c->g);
    size_t no = (size_t)c->g->n * c->g->c * c->g->oh * c->g->ow;
    double s = 0;
    for (size_t i = 0; i < no; i++) s += c->out[i] * c->r[i];
    return s;
}

static void run_pool(struct pool_cfg g, const char *name)
{
    if (g.kind == POOL_MAX || g.kind == POOL_AVG) {
        g.oh = nn_pool_out(g.h, g.k, g.s, g.p);
        g.ow = nn_pool_out(g.w, g.k, g.s, g.p);
    }
    size_t ni = (size_t)g.n * g.c * g.h * g.w, no = (size_t)g.n * g.c * g.oh * g.ow;
    float *x = lt_floats(ni), *y = lt_floats(no), *r = lt_floats(no);
    float *dx = lt_floats(ni), *dx2 = lt_floats(ni);
    int *am = calloc(no, sizeof(int));
    double *ref = lt_doubles(no);
    dp_rng_t rng;
    dp_rng_seed(&rng, 100 + g.kind);
    /* distinct values 0.05 apart (FD step 1e-3), in random order, centred */
    uint32_t *perm = malloc(ni * sizeof *perm);
    for (uint32_t i = 0; i < ni; i++) perm[i] = i;
    dp_rng_shuffle(&rng, perm, (uint32_t)ni);
    for (size_t i = 0; i < ni; i++) x[i] = 0.05f * ((float)perm[i] - (float)ni / 2);
    lt_fill(&rng, r, no, -1.0f, 1.0f);

    for (int pass = 0; pass < 2; pass++) {
        float *gbuf = pass == 0 ? dx : dx2;
        for (int rep = 0; rep <= pass; rep++) {
            switch (g.kind) {
            case POOL_MAX:
                nn_maxpool2d_forward(y, am, x, g.n, g.c, g.h, g.w, g.k, g.s, g.p);
                nn_maxpool2d_backward(gbuf, r, am, g.n, g.c, g.h, g.w, g.k, g.s, g.p);
                break;
            case POOL_AVG:
                nn_avgpool2d_forward(y, x, g.n, g.c, g.h, g.w, g.k, g.s, g.p);
                nn_avgpool2d_backward(gbuf, r, g.n, g.c, g.h, g.w, g.k, g.s, g.p);
                break;
            case POOL_AMAX:
                nn_adaptive_maxpool2d_forward(y, am, x, g.n, g.c, g.h, g.w, g.oh, g.ow);
                nn_adaptive_maxpool2d_backward(gbuf, r, am, g.n, g.c, g.h, g.w, g.oh, g.ow);
                break;
            case POOL_AAVG:
                nn_adaptive_avgpool2d_forward(y, x, g.n, g.c, g.h, g.w, g.oh, g.ow);
                nn_adaptive_avgpool2d_backward(gbuf, r, g.n, g.c, g.h, g.w, g.oh, g.ow);
                break;
            }
        }
    }
    pool_ref(ref, x, &g);
    lt_expect_fwd(name, y, ref, no);
    if (g.kind == POOL_MAX || g.kind == POOL_AMAX) {
        for (size_t i = 0; i < no; i++) {
            size_t plane = i / ((size_t)g.oh * g.ow);
            cr_expect(am[i] >= 0 && am[i] < g.h * g.w);
            cr_expect(x[plane * g.h * g.w + am[i]] == y[i], "argmax of output %zu", i);
        }
    }
    struct pool_ctx ctx = {&g, x, r, lt_doubles(no)};
    lt_gradcheck(name, pool_loss, &ctx, x, ni, dx, 1e-3);
    lt_expect_doubled(name, dx, dx2, ni);
    free(ctx.out), free(perm), free(x), free(y), free(r), free(dx), free(dx2), free(am), free(ref);
}

Test(pool, maxpool_k2s2)
{
    run_pool((struct pool_cfg){POOL_MAX, 2, 3, 6, 7, 2, 2, 0, 0, 0}, "maxpool k2s2");
}
Test(pool, maxpool_k3s2p1)
{
    run_pool((struct pool_cfg){POOL_MAX, 2, 2, 7, 6, 3, 2, 1, 0, 0}, "maxpool k3s2p1");
}
Test(pool, maxpool_k3s1p1)
{
    run_pool((struct pool_cfg){POOL_MAX, 1, 2, 5, 5, 3, 1, 1, 0, 0}, "maxpool k3s1p1");
}
Test(pool, avgpool_k2s2)
{
    run_pool((struct pool_cfg){POOL_AVG, 2, 3, 6, 7, 2, 2, 0, 0, 0}, "avgpool k2s2");
}
Test(pool, avgpool_k3s2p1_count_pad)
{
    run_pool((struct pool_cfg){POOL_AVG, 2, 2, 7, 6, 3, 2, 1, 0, 0}, "avgpool k3s2p1");
}
Test(pool, adaptive_max)
{
    run_pool((struct pool_cfg){POOL_AMAX, 2, 2, 7, 10, .oh = 3, .ow = 4}, "adaptive max 7x10->3x4");
    run_pool((struct pool_cfg){POOL_AMAX, 1, 2, 8, 8, .oh = 4, .ow = 4}, "adaptive max 8x8->4x4");
    run_pool((struct pool_cfg){POOL_AMAX, 1, 1, 3, 5, .oh = 4, .ow = 6}, "adaptive max 3x5->4x6");
}
Test(pool, adaptive_avg)
{
    run_pool((struct pool_cfg){POOL_AAVG, 2, 2, 7, 10, .oh = 3, .ow = 4}, "adaptive avg 7x10->3x4");
    run_pool((struct pool_cfg){POOL_AAVG, 1, 2, 5, 5, .oh = 1, .ow = 1}, "adaptive avg 5x5->1x1");
    run_pool((struct pool_cfg){POOL_AAVG, 1, 1, 3, 5, .oh = 4, .ow = 6}, "adaptive avg 3x5->4x6");
}

/* Hand values: count_include_pad and the adaptive bins of 5 -> 3
 * ([0,2), [1,4), [3,5)). */
Test(pool, hand_values)
{
    float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, y[4];
    nn_avgpool2d_forward(y, x, 1, 1, 3, 3, 2, 2, 1); /* 2x2 out, each window 1 real value... */
    cr_expect_float_eq(y[0], 1.0f / 4, 1e-7f);
    cr_expect_float_eq(y[1], (2.0f + 3.0f) / 4, 1e-7f);
    cr_expect_float_eq(y[3], (5.0f + 6.0f + 8.0f + 9.0f) / 4, 1e-7f);
    float row[5] = {1, 2, 3, 4, 5}, o[3];
    nn_adaptive_avgpool2d_forward(o, row, 1, 1, 1, 5, 1, 3);
    cr_expect_float_eq(o[0], 1.5f, 1e-7f);
    cr_expect_float_eq(o[1], 3.0f, 1e-7f);
    cr_expect_float_eq(o[2], 4.5f, 1e-7f);
    int am[3];
    nn_adaptive_maxpool2d_forward(o, am, row, 1, 1, 1, 5, 1, 3);
    cr_expect(am[0] == 1 && am[1] == 3 && am[2] == 4);
    /* ties: the first maximum wins, as in PyTorch */
    float tie[4] = {2, 2, 2, 2}, t1;
    int ta;
    nn_maxpool2d_forward(&t1, &ta, tie, 1, 1, 2, 2, 2, 2, 0);
    cr_expect(ta == 0 && t1 == 2.0f);
}

Test(pool, global_average)
{
    enum { N = 2, C = 3, HW = 10 };
    float x[N * C * HW], y[N * C], r[N * C], dx[N * C * HW] = {0}, dx2[N * C * HW] = {0};
    dp_rng_t rng;
    dp_rng_seed(&rng, 9);
    lt_fill(&rng, x, N * C * HW, -1.0f, 1.0f);
    lt_fill(&rng, r, N * C, -1.0f, 1.0f);
    nn_gap_forward(y, x, N, C, HW);
    for (int p = 0; p < N * C; p++) {
        double s = 0;
        for (int i = 0; i < HW; i++) s += x[p * HW + i];
        cr_expect(fabs(y[p] - s / HW) < 1e-6);
    }
    nn_gap_backward(dx, r, N, C, HW);
    nn_gap_backward(dx2, r, N, C, HW);
    nn_gap_backward(dx2, r, N, C, HW);
    for (int i = 0; i < N * C * HW; i++) cr_expect(fabsf(dx[i] - r[i / HW] / HW) < 1e-7f);
    lt_expect_doubled("gap", dx, dx2, N * C * HW);
}
