/* conv2d, transposed conv2d and reflection padding: fast paths against the
 * naive references over a shape table, backward against central differences of
 * a double-precision forward (gradcheck.h), accumulation semantics, and
 * bit-identical results on 1, 2 and 5 threads. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"
#include "nn/blas.h"
#include "nn/conv.h"
#include "util/rng.h"

static float *rand_buf(dp_rng_t *r, size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    cr_assert_not_null(p);
    for (size_t i = 0; i < n; i++) p[i] = 2.0f * dp_rng_uniform(r) - 1.0f;
    return p;
}

static float *zeros(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof *p);
    cr_assert_not_null(p);
    return p;
}

/* Max |a - b| / (1 + max |b|). */
static double max_err(const float *a, const float *b, size_t n)
{
    double e = 0.0, m = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= e)) e = d;
        if (fabs(b[i]) > m) m = fabs(b[i]);
    }
    return e / (1.0 + m);
}

/* Images per sgemm to test: per image, chunks of 2 (a remainder chunk at n = 3),
 * the whole batch. */
static const int batch_modes[] = {0, 2, 64};

typedef struct shape {
    int n, cin, h, w, cout, kh, kw, stride, pad, groups, out_pad;
} shape_t;

static const shape_t conv_table[] = {
    /* n cin h  w cout kh kw s p g op */
    {1, 1, 28, 28, 8, 3, 3, 1, 0, 1, 0}, {1, 8, 26, 26, 16, 3, 3, 2, 0, 1, 0},
    {3, 3, 7, 9, 5, 3, 3, 1, 1, 1, 0},   {3, 4, 8, 6, 6, 3, 3, 2, 1, 2, 0},
    {1, 4, 9, 7, 4, 3, 3, 1, 1, 4, 0},   {3, 6, 8, 8, 6, 3, 3, 2, 1, 6, 0},
    {3, 6, 8, 8, 12, 3, 3, 1, 2, 6, 0},  {1, 5, 6, 7, 7, 1, 1, 1, 0, 1, 0},
    {3, 4, 6, 7, 6, 1, 1, 1, 0, 2, 0},   {3, 5, 9, 8, 3, 1, 1, 2, 0, 1, 0},
    {1, 3, 10, 11, 4, 4, 4, 2, 1, 1, 0}, {3, 2, 9, 10, 4, 4, 4, 2, 2, 2, 0},
    {1, 3, 11, 12, 2, 6, 6, 1, 0, 1, 0}, {3, 2, 12, 13, 3, 6, 6, 1, 2, 1, 0},
    {3, 4, 5, 5, 8, 3, 3, 1, 0, 1, 0},   {2, 3, 7, 5, 4, 3, 1, 1, 1, 1, 0},
    {2, 3, 5, 7, 4, 1, 3, 2, 1, 1, 0},   {1, 2, 3, 3, 2, 3, 3, 1, 0, 1, 0},
};
#define NCONV (sizeof conv_table / sizeof conv_table[0])

static const shape_t convt_table[] = {
    /* n cin h w cout kh kw s p g op */
    {1, 8, 5, 5, 4, 3, 3, 2, 0, 1, 0},   {3, 8, 5, 5, 4, 3, 3, 2, 0, 1, 0},
    {1, 4, 11, 11, 2, 3, 3, 2, 0, 1, 0}, {3, 4, 6, 7, 6, 3, 3, 2, 1, 1, 1},
    {1, 4, 5, 6, 2, 6, 6, 1, 0, 1, 0},   {3, 3, 4, 5, 1, 6, 6, 1, 0, 1, 0},
    {3, 4, 5, 4, 6, 3, 3, 1, 1, 2, 0},   {2, 4, 5, 5, 4, 3, 3, 2, 1, 4, 1},
    {3, 5, 4, 6, 3, 1, 1, 1, 0, 1, 0},   {1, 4, 4, 6, 6, 1, 1, 1, 0, 2, 0},
    {2, 3, 4, 5, 2, 4, 4, 2, 1, 1, 0},   {2, 3, 4, 5, 2, 4, 4, 3, 2, 1, 2},
    {3, 2, 3, 4, 3, 1, 1, 2, 0, 1, 1},
};
#define NCONVT (sizeof convt_table / sizeof convt_table[0])

static int init_shape(nn_conv_t *c, const shape_t *s, int transposed)
{
    if (transposed)
        return nn_convt2d_init(c, s->n, s->cin, s->h, s->w, s->cout, s->kh, s->kw, s->stride,
                               s->pad, s->out_pad, s->groups);
    return nn_conv2d_init(c, s->n, s->cin, s->h, s->w, s->cout, s->kh, s->kw, s->stride, s->pad,
                          s->groups);
}

/* Buffers of one layer instance. */
typedef struct layer {
    nn_conv_t c;
    int transposed;
    size_t ni, nw, no;
    float *inp, *w, *b, *out, *ws, *r;
    float *dinp, *dw, *db;
} layer_t;

static void layer_setup(layer_t *L, const shape_t *s, int transposed, int batch_gemm, uint64_t seed)
{
    memset(L, 0, sizeof *L);
    L->transposed = transposed;
    cr_assert_eq(init_shape(&L->c, s, transposed), 0);
    if (batch_gemm >= 0) L->c.batch_gemm = L->c.groups == 1 ? batch_gemm : 0;
    nn_conv_t *c = &L->c;
    dp_rng_t r;
    dp_rng_seed(&r, seed);
    L->ni = (size_t)c->n * c->cin * c->h * c->w;
    L->no = (size_t)c->n * c->cout * c->hout * c->wout;
    L->nw = transposed ? (size_t)c->cin * (c->cout / c->groups) * c->kh * c->kw
                       : (size_t)c->cout * (c->cin / c->groups) * c->kh * c->kw;
    L->inp = rand_buf(&r, L->ni);
    L->w = rand_buf(&r, L->nw);
    L->b = rand_buf(&r, (size_t)c->cout);
    L->r = rand_buf(&r, L->no);
    L->out = zeros(L->no);
    size_t nws = transposed ? nn_convt2d_workspace(c) : nn_conv2d_workspace(c);
    L->ws = malloc((nws ? nws : 1) * sizeof(float)); /* exact size: ASan checks it */
    cr_assert_not_null(L->ws);
    L->dinp = zeros(L->ni);
    L->dw = zeros(L->nw);
    L->db = zeros((size_t)c->cout);
}

static void layer_free(layer_t *L)
{
    float **p[] = {&L->inp, &L->w, &L->b, &L->out, &L->ws, &L->r, &L->dinp, &L->dw, &L->db};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) {
        free(*p[i]);
        *p[i] = NULL;
    }
}

static void layer_forward(layer_t *L, const float *bias)
{
    if (L->transposed)
        nn_convt2d_forward(&L->c, L->out, L->inp, L->w, bias, L->ws);
    else
        nn_conv2d_forward(&L->c, L->out, L->inp, L->w, bias, L->ws);
}

static void layer_backward(layer_t *L, float *dinp, float *dw, float *db)
{
    if (L->transposed)
        nn_convt2d_backward(&L->c, dinp, dw, db, L->r, L->inp, L->w, L->ws);
    else
        nn_conv2d_backward(&L->c, dinp, dw, db, L->r, L->inp, L->w, L->ws);
}

static void describe(const nn_conv_t *c, char *buf, size_t len)
{
    snprintf(buf, len, "n%d cin%d %dx%d cout%d k%dx%d s%d p%d g%d op%d -> %dx%d batch_gemm %d",
             c->n, c->cin, c->h, c->w, c->cout, c->kh, c->kw, c->stride, c->pad, c->groups,
             c->out_pad, c->hout, c->wout, c->batch_gemm);
}

/* ---- forward against the naive references ---- */

static void forward_table(const shape_t *table, size_t count, int transposed)
{
    for (size_t t = 0; t < count; t++)
        for (int bg = 0; bg < 3; bg++)
            for (int with_bias = 0; with_bias <= 1; with_bias++) {
                layer_t L;
                layer_setup(&L, &table[t], transposed, batch_modes[bg], 100 + t);
                float *ref = zeros(L.no);
                /* garbage in out: the kernel must overwrite, not accumulate */
                for (size_t i = 0; i < L.no; i++) L.out[i] = 1e6f;
                layer_forward(&L, with_bias ? L.b : NULL);
                if (transposed)
                    nn_convt2d_forward_naive(&L.c, ref, L.inp, L.w, with_bias ? L.b : NULL);
                else
                    nn_conv2d_forward_naive(&L.c, ref, L.inp, L.w, with_bias ? L.b : NULL);
                char d[160];
                describe(&L.c, d, sizeof d);
                cr_expect(max_err(L.out, ref, L.no) <= 1e-4, "%s bias %d: err %g", d, with_bias,
                          max_err(L.out, ref, L.no));
                free(ref);
                layer_free(&L);
            }
}

Test(conv, forward_matches_naive) { forward_table(conv_table, NCONV, 0); }
Test(convt, forward_matches_naive) { forward_table(convt_table, NCONVT, 1); }

Test(conv, output_shapes)
{
    nn_conv_t c;
    cr_assert_eq(nn_conv2d_init(&c, 1, 1, 28, 28, 64, 3, 3, 1, 0, 1), 0);
    cr_expect(c.hout == 26 && c.wout == 26);
    cr_assert_eq(nn_conv2d_init(&c, 1, 64, 26, 26, 128, 3, 3, 2, 0, 1), 0);
    cr_expect(c.hout == 12 && c.wout == 12);
    cr_assert_eq(nn_conv2d_init(&c, 1, 128, 12, 12, 256, 3, 3, 2, 0, 1), 0);
    cr_expect(c.hout == 5 && c.wout == 5);
    cr_assert_eq(nn_convt2d_init(&c, 1, 256, 5, 5, 128, 3, 3, 2, 0, 0, 1), 0);
    cr_expect(c.hout == 11 && c.wout == 11);
    cr_assert_eq(nn_convt2d_init(&c, 1, 128, 11, 11, 64, 3, 3, 2, 0, 0, 1), 0);
    cr_expect(c.hout == 23 && c.wout == 23);
    cr_assert_eq(nn_convt2d_init(&c, 1, 64, 23, 23, 1, 6, 6, 1, 0, 0, 1), 0);
    cr_expect(c.hout == 28 && c.wout == 28);
    /* invalid shapes */
    cr_expect_eq(nn_conv2d_init(&c, 1, 3, 8, 8, 4, 3, 3, 1, 0, 2), -1);
    cr_expect_eq(nn_conv2d_init(&c, 1, 4, 2, 8, 4, 3, 3, 1, 0, 1), -1);
    cr_expect_eq(nn_conv2d_init(&c, 1, 4, 8, 8, 4, 3, 3, 0, 0, 1), -1);
    cr_expect_eq(nn_convt2d_init(&c, 1, 4, 8, 8, 4, 3, 3, 2, 0, 2, 1), -1);
}

/* ---- backward against central differences ---- */

/* Loss = sum(out * R) with out from a double-precision direct forward. */
static double loss_double(void *ctx)
{
    const layer_t *L = ctx;
    const nn_conv_t *c = &L->c;
    const int G = c->groups;
    double s = 0.0;
    if (!L->transposed) {
        const int cg = c->cin / G, og = c->cout / G;
        for (int i = 0; i < c->n; i++)
            for (int co = 0; co < c->cout; co++)
                for (int oh = 0; oh < c->hout; oh++)
                    for (int ow = 0; ow < c->wout; ow++) {
                        int g = co / og;
                        double o = L->b[co];
                        for (int ci = 0; ci < cg; ci++)
                            for (int ki = 0; ki < c->kh; ki++)
                                for (int kj = 0; kj < c->kw; kj++) {
                                    int ih = oh * c->stride - c->pad + ki;
                                    int iw = ow * c->stride - c->pad + kj;
                                    if (ih < 0 || ih >= c->h || iw < 0 || iw >= c->w) continue;
                                    o +=
                                        (double)L
                                            ->inp[(((size_t)i * c->cin + g * cg + ci) * c->h + ih) *
                                                      c->w +
                                                  iw] *
                                        L->w[(((size_t)co * cg + ci) * c->kh + ki) * c->kw + kj];
                                }
                        s += o * L->r[(((size_t)i * c->cout + co) * c->hout + oh) * c->wout + ow];
                    }
        return s;
    }
    /* transposed: sum over input positions of inp * w * R at the hit output */
    const int cig = c->cin / G, cog = c->cout / G;
    for (int i = 0; i < c->n; i++) {
        for (int co = 0; co < c->cout; co++)
            for (int j = 0; j < c->hout * c->wout; j++)
                s += (double)L->b[co] * L->r[((size_t)i * c->cout + co) * c->hout * c->wout + j];
        for (int ci = 0; ci < c->cin; ci++) {
            int g = ci / cig;
            for (int ih = 0; ih < c->h; ih++)
                for (int iw = 0; iw < c->w; iw++) {
                    double x = L->inp[(((size_t)i * c->cin + ci) * c->h + ih) * c->w + iw];
                    for (int co = 0; co < cog; co++)
                        for (int ki = 0; ki < c->kh; ki++)
                            for (int kj = 0; kj < c->kw; kj++) {
                                int oh = ih * c->stride - c->pad + ki;
                                int ow = iw * c->stride - c->pad + kj;
                                if (oh < 0 || oh >= c->hout || ow < 0 || ow >= c->wout) continue;
                                s += x * L->w[(((size_t)ci * cog + co) * c->kh + ki) * c->kw + kj] *
                                     L->r[(((size_t)i * c->cout + g * cog + co) * c->hout + oh) *
                                              c->wout +
                                          ow];
                            }
                }
        }
    }
    return s;
}

static void backward_table(const shape_t *table, size_t count, int transposed)
{
    for (size_t t = 0; t < count; t++)
        for (int bg = 0; bg < 3; bg++) {
            layer_t L;
            layer_setup(&L, &table[t], transposed, batch_modes[bg], 200 + t);
            layer_backward(&L, L.dinp, L.dw, L.db);
            char d[160], m[256];
            describe(&L.c, d, sizeof d);
            gc_result_t r;
            r = gc_check(loss_double, &L, L.inp, L.ni, L.dinp, NULL, 48, 1e-2, 0);
            cr_expect(r.max_rel <= 1e-3, "%s dinp: %s", d, gc_describe(&r, m, sizeof m));
            r = gc_check(loss_double, &L, L.w, L.nw, L.dw, NULL, 48, 1e-2, 0);
            cr_expect(r.max_rel <= 1e-3, "%s dweight: %s", d, gc_describe(&r, m, sizeof m));
            r = gc_check(loss_double, &L, L.b, (size_t)L.c.cout, L.db, NULL, 16, 1e-2, 0);
            cr_expect(r.max_rel <= 1e-3, "%s dbias: %s", d, gc_describe(&r, m, sizeof m));
            layer_free(&L);
        }
}

Test(conv, backward_matches_finite_differences, .timeout = 120)
{
    backward_table(conv_table, NCONV, 0);
}
Test(convt, backward_matches_finite_differences, .timeout = 120)
{
    backward_table(convt_table, NCONVT, 1);
}

/* Backward accumulates (+=), and NULL gradients are skipped. */
static void accumulation(int transposed, const shape_t *s)
{
    for (int bg = 0; bg < 3; bg++) {
        layer_t L;
        layer_setup(&L, s, transposed, batch_modes[bg], 300);
        layer_backward(&L, L.dinp, L.dw, L.db);
        float *di = malloc(L.ni * sizeof(float)), *dw = malloc(L.nw * sizeof(float));
        float *db = malloc((size_t)L.c.cout * sizeof(float));
        cr_assert(di && dw && db);
        memcpy(di, L.dinp, L.ni * sizeof(float));
        memcpy(dw, L.dw, L.nw * sizeof(float));
        memcpy(db, L.db, (size_t)L.c.cout * sizeof(float));
        layer_backward(&L, L.dinp, L.dw, L.db);
        for (size_t i = 0; i < L.ni; i++) di[i] *= 2;
        for (size_t i = 0; i < L.nw; i++) dw[i] *= 2;
        for (int i = 0; i < L.c.cout; i++) db[i] *= 2;
        cr_expect(max_err(L.dinp, di, L.ni) <= 1e-6, "dinp not accumulated");
        cr_expect(max_err(L.dw, dw, L.nw) <= 1e-6, "dweight not accumulated");
        cr_expect(max_err(L.db, db, (size_t)L.c.cout) <= 1e-6, "dbias not accumulated");
        /* each gradient alone, the others NULL, adds the same amount */
        layer_backward(&L, L.dinp, NULL, NULL);
        layer_backward(&L, NULL, L.dw, NULL);
        layer_backward(&L, NULL, NULL, L.db);
        for (size_t i = 0; i < L.ni; i++) di[i] *= 1.5f;
        for (size_t i = 0; i < L.nw; i++) dw[i] *= 1.5f;
        for (int i = 0; i < L.c.cout; i++) db[i] *= 1.5f;
        cr_expect(max_err(L.dinp, di, L.ni) <= 1e-6, "dinp alone");
        cr_expect(max_err(L.dw, dw, L.nw) <= 1e-6, "dweight alone");
        cr_expect(max_err(L.db, db, (size_t)L.c.cout) <= 1e-6, "dbias alone");
        free(di);
        free(dw);
        free(db);
        layer_free(&L);
    }
}

Test(conv, backward_accumulates)
{
    accumulation(0, &conv_table[2]);
    accumulation(0, &conv_table[8]);
}
Test(convt, backward_accumulates)
{
    accumulation(1, &convt_table[1]);
    accumulation(1, &convt_table[8]);
}

/* ---- thread count ----
 * Forward (plain and packed) and backward on 1, 2 and 5 threads:
 * bit-identical. Every product goes through nn_sgemm, which cuts large ones
 * into units fixed by the shape (row or column blocks, each a one-thread
 * OpenBLAS call), or nn_gemm, which splits by 16-row panels; neither
 * depends on the thread count. The last shape is a one-image 64->64 conv at
 * 28x28 whose weight gradient (64x576 over 784 columns) OpenBLAS's own
 * threading computed differently on 2 threads. */

static const shape_t thread_table[] = {
    /* n cin h w cout kh kw s p g op */
    {1, 128, 5, 5, 256, 3, 3, 1, 1, 1, 0}, /* one image, row blocks */
    {1, 256, 7, 7, 128, 3, 3, 1, 1, 1, 0}, /* uneven row blocks */
    {3, 16, 5, 5, 32, 3, 3, 1, 1, 1, 0},   /* batched columns */
    {2, 8, 12, 11, 16, 3, 3, 2, 1, 2, 0},  /* groups, per image */
    {1, 64, 28, 28, 64, 3, 3, 1, 1, 1, 0}, /* weight gradient cut by columns */
};
static const shape_t thread_table_t[] = {
    {1, 64, 5, 5, 32, 3, 3, 2, 0, 1, 0},
    {3, 16, 6, 7, 8, 3, 3, 2, 1, 1, 1},
};

/* out, packed out, dinp, dweight, dbias of L at the current thread count. */
static float *conv_run_all(layer_t *L, size_t *len)
{
    const nn_conv_t *c = &L->c;
    const int packed = c->groups == 1;
    *len = L->no * (packed ? 2 : 1) + L->ni + L->nw + (size_t)c->cout;
    float *res = zeros(*len), *p = res;
    layer_forward(L, L->b);
    memcpy(p, L->out, L->no * sizeof(float)), p += L->no;
    if (packed) {
        const size_t psz = L->transposed ? nn_convt2d_packed_size(c) : nn_conv2d_packed_size(c);
        float *pw = aligned_alloc(64, (psz * sizeof(float) + 63) / 64 * 64);
        cr_assert_not_null(pw);
        if (L->transposed) {
            nn_convt2d_pack_weight(c, pw, L->w);
            nn_convt2d_forward_packed(c, p, L->inp, pw, L->b, L->ws);
        } else {
            nn_conv2d_pack_weight(c, pw, L->w);
            nn_conv2d_forward_packed(c, p, L->inp, pw, L->b, L->ws);
        }
        free(pw);
        p += L->no;
    }
    memset(L->dinp, 0, L->ni * sizeof(float));
    memset(L->dw, 0, L->nw * sizeof(float));
    memset(L->db, 0, (size_t)c->cout * sizeof(float));
    layer_backward(L, L->dinp, L->dw, L->db);
    memcpy(p, L->dinp, L->ni * sizeof(float)), p += L->ni;
    memcpy(p, L->dw, L->nw * sizeof(float)), p += L->nw;
    memcpy(p, L->db, (size_t)c->cout * sizeof(float));
    return res;
}

static void threads_table(const shape_t *table, size_t count, int transposed)
{
    static const int threads[] = {1, 2, 5};
    const int saved = nn_get_threads();
    for (size_t t = 0; t < count; t++) {
        layer_t L;
        layer_setup(&L, &table[t], transposed, -1, 300 + t);
        char d[160];
        describe(&L.c, d, sizeof d);
        float *ref = NULL;
        for (int i = 0; i < 3; i++) {
            nn_set_threads(threads[i]);
            size_t len;
            float *res = conv_run_all(&L, &len);
            if (i == 0)
                ref = res;
            else {
                cr_expect(memcmp(res, ref, len * sizeof(float)) == 0,
                          "%s: %d threads differ from 1", d, threads[i]);
                free(res);
            }
        }
        free(ref);
        layer_free(&L);
    }
    nn_set_threads(saved);
}

Test(conv, bit_identical_over_thread_counts)
{
    threads_table(thread_table, sizeof thread_table / sizeof thread_table[0], 0);
}
Test(convt, bit_identical_over_thread_counts)
{
    threads_table(thread_table_t, sizeof thread_table_t / sizeof thread_table_t[0], 1);
}

/* ---- reflection padding ---- */

Test(reflpad, forward_hand_computed)
{
    const float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    const float want[25] = {5, 4, 5, 6, 5, 2, 1, 2, 3, 2, 5, 4, 5,
                            6, 5, 8, 7, 8, 9, 8, 5, 4, 5, 6, 5};
    float out[25];
    nn_reflpad2d_forward(out, x, 1, 1, 3, 3, 1);
    for (int i = 0; i < 25; i++)
        cr_expect_eq(out[i], want[i], "at %d: %g != %g", i, out[i], want[i]);
    /* p = 2 on a 3x4 plane: output rows 0..6 read input rows 2,1,0,1,2,1,0 */
    const float y[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    float o2[7 * 8];
    nn_reflpad2d_forward(o2, y, 1, 1, 3, 4, 2);
    const float row0[8] = {11, 10, 9, 10, 11, 12, 11, 10};
    const float row2[8] = {3, 2, 1, 2, 3, 4, 3, 2};
    for (int j = 0; j < 8; j++) {
        cr_expect_eq(o2[j], row0[j]);
        cr_expect_eq(o2[2 * 8 + j], row2[j]);
        cr_expect_eq(o2[6 * 8 + j], row2[j]); /* input row 4 reflects to 0 */
    }
}

Test(reflpad, backward_is_adjoint)
{
    dp_rng_t r;
    dp_rng_seed(&r, 5);
    const int n = 2, c = 3, h = 5, w = 4;
    for (int p = 0; p <= 3; p++) {
        size_t ni = (size_t)n * c * h * w, no = (size_t)n * c * (h + 2 * p) * (w + 2 * p);
        float *x = rand_buf(&r, ni), *y = rand_buf(&r, no), *px = zeros(no), *pty = zeros(ni);
        nn_reflpad2d_forward(px, x, n, c, h, w, p);
        nn_reflpad2d_backward(pty, y, n, c, h, w, p);
        double a = gc_dot(px, y, no), b = gc_dot(x, pty, ni);
        cr_expect(fabs(a - b) <= 1e-5 * (1 + fabs(a)), "p=%d: <pad x, y> %g != <x, pad^T y> %g", p,
                  a, b);
        /* accumulation */
        nn_reflpad2d_backward(pty, y, n, c, h, w, p);
        cr_expect(fabs(gc_dot(x, pty, ni) - 2 * b) <= 1e-5 * (1 + fabs(b)));
        free(x);
        free(y);
        free(px);
        free(pty);
    }
}

/* init's choice of images per sgemm, and the workspace when n is lowered later. */
Test(conv, batch_choice)
{
    nn_conv_t c;
    cr_assert_eq(nn_conv2d_init(&c, 64, 512, 5, 5, 512, 3, 3, 1, 1, 1), 0);
    cr_expect_eq(c.batch_gemm, 36, "4608 x 25 columns per image, 16 MB chunks: %d", c.batch_gemm);
    size_t ws64 = nn_conv2d_workspace(&c);
    c.n = 5;
    cr_expect_leq(nn_conv2d_workspace(&c), ws64);
    c.n = 1;
    cr_expect_eq(nn_conv2d_workspace(&c), (size_t)4608 * 25, "n = 1 is per image");
    cr_assert_eq(nn_conv2d_init(&c, 64, 64, 26, 26, 128, 3, 3, 2, 0, 1), 0);
    cr_expect_eq(c.batch_gemm, 0, "P = 144 stays per image: %d", c.batch_gemm);
    cr_assert_eq(nn_conv2d_init(&c, 64, 64, 14, 14, 128, 3, 3, 2, 1, 1), 0);
    cr_expect_eq(c.batch_gemm, 64, "576 x 49 columns per image: %d", c.batch_gemm);
    cr_assert_eq(nn_conv2d_init(&c, 64, 1, 28, 28, 64, 3, 3, 1, 0, 1), 0);
    cr_expect_eq(c.batch_gemm, 0, "P = 676 stays per image");
    cr_assert_eq(nn_conv2d_init(&c, 64, 4, 5, 5, 4, 3, 3, 1, 1, 2), 0);
    cr_expect_eq(c.batch_gemm, 0, "groups > 1 stays per image");
    cr_assert_eq(nn_conv2d_init(&c, 1, 4, 5, 5, 4, 3, 3, 1, 1, 1), 0);
    cr_expect_eq(c.batch_gemm, 0);
    cr_assert_eq(nn_convt2d_init(&c, 64, 256, 5, 5, 128, 3, 3, 2, 0, 0, 1), 0);
    cr_expect_eq(c.batch_gemm, 64);
}
