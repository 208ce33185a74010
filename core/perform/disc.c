/* The least-squares GAN discriminator (AdvGAN's):
 * conv4x4 s2 C->8, LeakyReLU(0.2); conv4x4 s2 ->16, BN, LeakyReLU;
 * conv4x4 s2 ->32, BN, LeakyReLU; conv1x1 ->1; sigmoid.
 * One parameter block (with gradient and Adam twins), one statistics block,
 * one activation block for max_batch; BatchNorm always in training mode, as
 * the discriminator is only used while the generator trains. */
#include <stdlib.h>
#include <string.h>

#include "nn/nn.h"
#include "perform/perform.h"

#define D_SLOPE  0.2f
#define D_BN_EPS 1e-5f
#define D_BN_MOM 0.1f

enum { P_W1, P_B1, P_W2, P_B2, P_G2, P_BE2, P_W3, P_B3, P_G3, P_BE3, P_W4, P_B4, P__N };

struct perf_disc {
    int c, h, w, max_batch;
    nn_conv_t cv[4];
    size_t off[P__N + 1];
    float *params, *grads, *m, *v, *stats; /* stats: rm2 rv2 (16) rm3 rv3 (32) */
    nn_adam_t adam;
    /* activations (max_batch) */
    float *c1, *a1, *c2, *b2, *a2, *c3, *b3, *a3, *c4, *out, *mean, *rstd;
    /* activation gradients */
    float *g1, *g2, *g3, *gb2, *gb3, *gc2, *gc3, *g4;
    float *ws;
    size_t nact[4];
};

static float *P(perf_disc_t *d, int i) { return d->params + d->off[i]; }
static float *G(perf_disc_t *d, int i) { return d->grads + d->off[i]; }

perf_disc_t *perf_disc_new(int c, int h, int w, int max_batch, uint64_t seed)
{
    perf_disc_t *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->c = c, d->h = h, d->w = w, d->max_batch = max_batch;
    int cin[4] = {c, 8, 16, 32}, cout[4] = {8, 16, 32, 1}, k[4] = {4, 4, 4, 1}, s[4] = {2, 2, 2, 1};
    int hh = h, ww = w;
    size_t ws = 0;
    for (int i = 0; i < 4; i++) {
        if (nn_conv2d_init(&d->cv[i], max_batch, cin[i], hh, ww, cout[i], k[i], k[i], s[i], 0, 1) ||
            d->cv[i].hout < 1 || d->cv[i].wout < 1)
            goto fail;
        hh = d->cv[i].hout, ww = d->cv[i].wout;
        d->nact[i] = (size_t)max_batch * cout[i] * hh * ww;
        size_t wsi = nn_conv2d_workspace(&d->cv[i]);
        ws = wsi > ws ? wsi : ws;
    }
    size_t sz[P__N] = {(size_t)8 * c * 16, 8,  16 * 8 * 16, 16, 16, 16,
                       32 * 16 * 16,       32, 32,          32, 32, 1};
    d->off[0] = 0;
    for (int i = 0; i < P__N; i++) d->off[i + 1] = d->off[i] + sz[i];
    size_t np = d->off[P__N];
    d->params = calloc(np, sizeof(float));
    d->grads = calloc(np, sizeof(float));
    d->m = calloc(np, sizeof(float));
    d->v = calloc(np, sizeof(float));
    d->stats = calloc(96, sizeof(float));
    size_t n1 = d->nact[0], n2 = d->nact[1], n3 = d->nact[2], n4 = d->nact[3];
    float **bufs[] = {&d->c1, &d->a1, &d->g1, &d->c2, &d->b2,  &d->a2,  &d->g2, &d->gb2, &d->gc2,
                      &d->c3, &d->b3, &d->a3, &d->g3, &d->gb3, &d->gc3, &d->c4, &d->out, &d->g4};
    size_t lens[] = {n1, n1, n1, n2, n2, n2, n2, n2, n2, n3, n3, n3, n3, n3, n3, n4, n4, n4};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++)
        if (!(*bufs[i] = calloc(lens[i], sizeof(float)))) goto fail;
    d->mean = calloc(48, sizeof(float)); /* BN2 at 0..15, BN3 at 16..47 */
    d->rstd = calloc(48, sizeof(float));
    d->ws = calloc(ws ? ws : 1, sizeof(float));
    if (!d->params || !d->grads || !d->m || !d->v || !d->stats || !d->mean || !d->rstd || !d->ws)
        goto fail;
    dp_rng_t r;
    dp_rng_seed(&r, seed);
    for (int i = 0; i < P__N; i++) {
        float *p = P(d, i);
        for (size_t j = 0; j < sz[i]; j++) {
            if (i == P_W1 || i == P_W2 || i == P_W3 || i == P_W4)
                p[j] = 0.02f * dp_rng_normal(&r);
            else if (i == P_G2 || i == P_G3)
                p[j] = 1.0f + 0.02f * dp_rng_normal(&r);
        }
    }
    for (int j = 0; j < 16; j++) d->stats[16 + j] = 1.0f;
    for (int j = 0; j < 32; j++) d->stats[64 + j] = 1.0f;
    d->adam = nn_adam_default(2e-4f);
    return d;
fail:
    perf_disc_destroy(&d);
    return NULL;
}

void perf_disc_destroy(perf_disc_t **pd)
{
    if (!pd || !*pd) return;
    perf_disc_t *d = *pd;
    float *bufs[] = {d->params, d->grads, d->m,  d->v,   d->stats, d->c1,   d->a1,   d->g1, d->c2,
                     d->b2,     d->a2,    d->g2, d->gb2, d->gc2,   d->c3,   d->b3,   d->a3, d->g3,
                     d->gb3,    d->gc3,   d->c4, d->out, d->g4,    d->mean, d->rstd, d->ws};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(d);
    *pd = NULL;
}

static nn_conv_t conv_n(const perf_disc_t *d, int i, int n)
{
    nn_conv_t c = d->cv[i];
    c.n = n;
    return c;
}

/* x (n,C,H,W) -> d->out (n,1,h4,w4) */
static void d_forward(perf_disc_t *d, const float *x, int n)
{
    nn_conv_t c0 = conv_n(d, 0, n), c1 = conv_n(d, 1, n), c2 = conv_n(d, 2, n),
              c3 = conv_n(d, 3, n);
    size_t hw1 = (size_t)c1.hout * c1.wout, hw2 = (size_t)c2.hout * c2.wout;
    nn_conv2d_forward(&c0, d->c1, x, P(d, P_W1), P(d, P_B1), d->ws);
    nn_leakyrelu_forward(d->a1, d->c1, (size_t)n * 8 * c0.hout * c0.wout, D_SLOPE);
    nn_conv2d_forward(&c1, d->c2, d->a1, P(d, P_W2), P(d, P_B2), d->ws);
    nn_batchnorm_forward_train(d->b2, d->mean, d->rstd, d->c2, P(d, P_G2), P(d, P_BE2), d->stats,
                               d->stats + 16, n, 16, (int)hw1, D_BN_MOM, D_BN_EPS);
    nn_leakyrelu_forward(d->a2, d->b2, (size_t)n * 16 * hw1, D_SLOPE);
    nn_conv2d_forward(&c2, d->c3, d->a2, P(d, P_W3), P(d, P_B3), d->ws);
    nn_batchnorm_forward_train(d->b3, d->mean + 16, d->rstd + 16, d->c3, P(d, P_G3), P(d, P_BE3),
                               d->stats + 32, d->stats + 64, n, 32, (int)hw2, D_BN_MOM, D_BN_EPS);
    nn_leakyrelu_forward(d->a3, d->b3, (size_t)n * 32 * hw2, D_SLOPE);
    nn_conv2d_forward(&c3, d->c4, d->a3, P(d, P_W4), P(d, P_B4), d->ws);
    nn_sigmoid_forward(d->out, d->c4, (size_t)n * c3.hout * c3.wout);
}

/* dout (n,1,h4,w4) of the last forward; accumulates parameter gradients and
 * (dx != NULL) the input gradient. x is the last forward's input. */
static void d_backward(perf_disc_t *d, const float *x, int n, const float *dout, float *dx)
{
    nn_conv_t c0 = conv_n(d, 0, n), c1 = conv_n(d, 1, n), c2 = conv_n(d, 2, n),
              c3 = conv_n(d, 3, n);
    size_t n1 = (size_t)n * 8 * c0.hout * c0.wout, hw1 = (size_t)c1.hout * c1.wout,
           hw2 = (size_t)c2.hout * c2.wout, n4 = (size_t)n * c3.hout * c3.wout;
    size_t n2 = (size_t)n * 16 * hw1, n3 = (size_t)n * 32 * hw2;
    memset(d->g4, 0, n4 * sizeof(float));
    nn_sigmoid_backward(d->g4, dout, d->out, n4);
    memset(d->g3, 0, n3 * sizeof(float));
    nn_conv2d_backward(&c3, d->g3, G(d, P_W4), G(d, P_B4), d->g4, d->a3, P(d, P_W4), d->ws);
    memset(d->gb3, 0, n3 * sizeof(float));
    nn_leakyrelu_backward(d->gb3, d->g3, d->b3, n3, D_SLOPE);
    memset(d->gc3, 0, n3 * sizeof(float));
    nn_batchnorm_backward(d->gc3, G(d, P_G3), G(d, P_BE3), d->gb3, d->c3, d->mean + 16,
                          d->rstd + 16, P(d, P_G3), n, 32, (int)hw2);
    memset(d->g2, 0, n2 * sizeof(float));
    nn_conv2d_backward(&c2, d->g2, G(d, P_W3), G(d, P_B3), d->gc3, d->a2, P(d, P_W3), d->ws);
    memset(d->gb2, 0, n2 * sizeof(float));
    nn_leakyrelu_backward(d->gb2, d->g2, d->b2, n2, D_SLOPE);
    memset(d->gc2, 0, n2 * sizeof(float));
    nn_batchnorm_backward(d->gc2, G(d, P_G2), G(d, P_BE2), d->gb2, d->c2, d->mean, d->rstd,
                          P(d, P_G2), n, 16, (int)hw1);
    memset(d->g1, 0, n1 * sizeof(float));
    nn_conv2d_backward(&c1, d->g1, G(d, P_W2), G(d, P_B2), d->gc2, d->a1, P(d, P_W2), d->ws);
    float *gl = d->a1; /* a1 is no longer needed once conv2's weight gradient is done */
    memset(gl, 0, n1 * sizeof(float));
    nn_leakyrelu_backward(gl, d->g1, d->c1, n1, D_SLOPE);
    nn_conv2d_backward(&c0, dx, G(d, P_W1), G(d, P_B1), gl, x, P(d, P_W1), d->ws);
}

/* mean over m outputs of (o - target)^2; gradient scale*2(o-target)/m into g. */
static double lsq(const float *o, size_t m, float target, double scale, float *g)
{
    double l = 0;
    for (size_t i = 0; i < m; i++) {
        double e = (double)o[i] - target;
        l += e * e / (double)m;
        g[i] = (float)(scale * 2.0 * e / (double)m);
    }
    return l;
}

static size_t out_len(const perf_disc_t *d, int n)
{
    return (size_t)n * d->cv[3].hout * d->cv[3].wout;
}

double perf_disc_step(perf_disc_t *d, const float *real, const float *fake, int n, float lr)
{
    memset(d->grads, 0, d->off[P__N] * sizeof(float));
    size_t m = out_len(d, n);
    float *g = calloc(m, sizeof(float));
    if (!g) return -1;
    d_forward(d, real, n);
    double l = lsq(d->out, m, 1.0f, 1.0, g);
    d_backward(d, real, n, g, NULL);
    d_forward(d, fake, n);
    l += lsq(d->out, m, 0.0f, 1.0, g);
    d_backward(d, fake, n, g, NULL);
    free(g);
    d->adam.lr = lr;
    nn_adam_step(&d->adam, d->params, d->grads, d->m, d->v, d->off[P__N]);
    return l;
}

double perf_disc_gen_loss(perf_disc_t *d, const float *x, int n, float weight, float *dx)
{
    size_t m = out_len(d, n);
    float *g = calloc(m, sizeof(float));
    if (!g) return -1;
    d_forward(d, x, n);
    double l = lsq(d->out, m, 1.0f, weight, g);
    if (dx) d_backward(d, x, n, g, dx);
    free(g);
    return l;
}

size_t perf_disc_state(perf_disc_t *d, float **params, float **m, float **v, float **stats,
                       size_t *nstats, long **t)
{
    *params = d->params, *m = d->m, *v = d->v, *stats = d->stats;
    *nstats = 96;
    *t = &d->adam.t;
    return d->off[P__N];
}
