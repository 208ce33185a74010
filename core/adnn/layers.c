/* Building blocks of the zoo's networks, wired from the core/nn kernels:
 * conv+BN(+ReLU), the residual basic block, the SDN mixed-pool exit head and
 * the global-average-pool classifier. Each has a forward in training mode
 * (batch statistics) or inference mode (running statistics), a backward that
 * matches the mode (so the input gradient of an inference-mode network, what
 * the test generators need, is exact), and a FLOPs count per input in two
 * conventions (docs/ZOO.md):
 *   reference: 2*Cin*Cout*k*k*Hout*Wout per conv (no division by groups),
 *              2*in*out per linear; BN, activations, pooling ignored;
 *   exact:     conv divided by groups; BN 2/element; ReLU and residual add
 *              1/element; pooling 1 per window element read (+1 per average);
 *              linear 2*in*out + out (bias); softmax 4/class.
 * At the end, the batch-1 steps the adaptive forwards of BlockDrop, SkipNet
 * and SDN share: a unit, a block run or skipped, the final classifier, each
 * adding its FLOPs to the trace. */
#include <math.h>
#include <stdio.h>

#include "adnn/adnn_impl.h"

#define OOM(what) dp_err_set(DP_ERR_NOMEM, "out of memory in %s", what)

/* ------------------------------------------------------------- conv+BN */

void adnn_cbn_reg(adnn_model_t *m, adnn_cbn_t *u, const char *prefix, int cin, int cout, int k,
                  int stride, int pad, int groups, int h, int w, int relu)
{
    char nm[64];
    u->cin = cin, u->cout = cout, u->k = k, u->stride = stride, u->pad = pad, u->groups = groups;
    u->h = h, u->w = w, u->relu = relu;
    u->hout = (h + 2 * pad - k) / stride + 1;
    u->wout = (w + 2 * pad - k) / stride + 1;
    snprintf(nm, sizeof nm, "%s.conv.weight", prefix);
    u->wt =
        adnn_reg(m, nm, 1, ADNN_INIT_KAIMING, cin / groups * k * k, 4, cout, cin / groups, k, k);
    snprintf(nm, sizeof nm, "%s.bn.weight", prefix);
    u->gamma = adnn_reg(m, nm, 1, ADNN_INIT_ONE, 0, 1, cout, 0, 0, 0);
    snprintf(nm, sizeof nm, "%s.bn.bias", prefix);
    u->beta = adnn_reg(m, nm, 1, ADNN_INIT_ZERO, 0, 1, cout, 0, 0, 0);
    snprintf(nm, sizeof nm, "%s.bn.running_mean", prefix);
    u->rm = adnn_reg(m, nm, 0, ADNN_INIT_ZERO, 0, 1, cout, 0, 0, 0);
    snprintf(nm, sizeof nm, "%s.bn.running_var", prefix);
    u->rv = adnn_reg(m, nm, 0, ADNN_INIT_ONE, 0, 1, cout, 0, 0, 0);
}

static void cbn_conv(const adnn_cbn_t *u, int n, nn_conv_t *c)
{
    nn_conv2d_init(c, n, u->cin, u->h, u->w, u->cout, u->k, u->k, u->stride, u->pad, u->groups);
}

dp_err_t adnn_cbn_forward(adnn_model_t *m, const adnn_cbn_t *u, const float *in, int n, int train,
                          adnn_cbn_act_t *a)
{
    nn_conv_t c;
    cbn_conv(u, n, &c);
    int hw = u->hout * u->wout;
    size_t sz = (size_t)n * u->cout * hw;
    a->in = in, a->n = n, a->train = train;
    a->conv = adnn_arena_get(m, sz);
    a->bn = adnn_arena_get(m, sz);
    a->out = u->relu ? adnn_arena_get(m, sz) : a->bn;
    a->mean = adnn_arena_get(m, (size_t)u->cout);
    a->rstd = adnn_arena_get(m, (size_t)u->cout);
    float *ws = adnn_ws(m, nn_conv2d_workspace(&c));
    if (!a->conv || !a->bn || !a->out || !a->mean || !a->rstd || !ws) return OOM("conv forward");
    nn_conv2d_forward(&c, a->conv, in, u->wt, NULL, ws);
    if (train)
        nn_batchnorm_forward_train(a->bn, a->mean, a->rstd, a->conv, u->gamma, u->beta, u->rm,
                                   u->rv, n, u->cout, hw, ADNN_BN_MOMENTUM, ADNN_BN_EPS);
    else
        nn_batchnorm_forward_eval(a->bn, a->conv, u->gamma, u->beta, u->rm, u->rv, n, u->cout, hw,
                                  ADNN_BN_EPS);
    if (u->relu) nn_relu_forward(a->out, a->bn, sz);
    return DP_OK;
}

dp_err_t adnn_cbn_backward(adnn_model_t *m, const adnn_cbn_t *u, const adnn_cbn_act_t *a,
                           float *dout, float *din)
{
    nn_conv_t c;
    cbn_conv(u, a->n, &c);
    int hw = u->hout * u->wout, n = a->n;
    size_t sz = (size_t)n * u->cout * hw;
    float *d = dout;
    if (u->relu) {
        d = adnn_arena_get(m, sz);
        if (!d) return OOM("conv backward");
        nn_relu_backward(d, dout, a->bn, sz);
    }
    float *dconv = adnn_arena_get(m, sz);
    float *ws = adnn_ws(m, nn_conv2d_workspace(&c));
    if (!dconv || !ws) return OOM("conv backward");
    float *dgamma = adnn_grad(m, u->gamma), *dbeta = adnn_grad(m, u->beta);
    if (a->train) {
        nn_batchnorm_backward(dconv, dgamma, dbeta, d, a->conv, a->mean, a->rstd, u->gamma, n,
                              u->cout, hw);
    } else { /* inference mode: an affine map per channel */
        for (int i = 0; i < n; i++)
            for (int ch = 0; ch < u->cout; ch++) {
                float rs = 1.0f / sqrtf(u->rv[ch] + ADNN_BN_EPS);
                size_t o = ((size_t)i * u->cout + ch) * hw;
                double dg = 0, db = 0;
                for (int j = 0; j < hw; j++) {
                    dconv[o + j] = d[o + j] * u->gamma[ch] * rs;
                    dg += d[o + j] * (a->conv[o + j] - u->rm[ch]) * rs;
                    db += d[o + j];
                }
                if (dgamma) dgamma[ch] += (float)dg;
                if (dbeta) dbeta[ch] += (float)db;
            }
    }
    if (din || adnn_grad(m, u->wt))
        nn_conv2d_backward(&c, din, adnn_grad(m, u->wt), NULL, dconv, a->in, u->wt, ws);
    return DP_OK;
}

double adnn_cbn_flops(const adnn_cbn_t *u, int exact)
{
    double hw = (double)u->hout * u->wout;
    double conv = 2.0 * u->cin * u->cout * u->k * u->k * hw;
    if (!exact) return conv;
    return conv / u->groups + 2.0 * u->cout * hw + (u->relu ? u->cout * hw : 0.0);
}

/* ------------------------------------------------------------- basic block */

void adnn_basic_reg(adnn_model_t *m, adnn_basic_t *b, const char *prefix, int cin, int cout,
                    int stride, int h, int w)
{
    char nm[64];
    b->cin = cin, b->cout = cout, b->h = h, b->w = w;
    snprintf(nm, sizeof nm, "%s.c1", prefix);
    adnn_cbn_reg(m, &b->c1, nm, cin, cout, 3, stride, 1, 1, h, w, 1);
    b->hout = b->c1.hout, b->wout = b->c1.wout;
    snprintf(nm, sizeof nm, "%s.c2", prefix);
    adnn_cbn_reg(m, &b->c2, nm, cout, cout, 3, 1, 1, 1, b->hout, b->wout, 0);
    b->has_sc = stride != 1 || cin != cout;
    if (b->has_sc) {
        snprintf(nm, sizeof nm, "%s.sc", prefix);
        adnn_cbn_reg(m, &b->sc, nm, cin, cout, 1, stride, 0, 1, h, w, 0);
    }
}

dp_err_t adnn_basic_forward(adnn_model_t *m, const adnn_basic_t *b, const float *in, int n,
                            int train, adnn_basic_act_t *a)
{
    dp_err_t err;
    a->in = in, a->n = n;
    if ((err = adnn_cbn_forward(m, &b->c1, in, n, train, &a->a1))) return err;
    if ((err = adnn_cbn_forward(m, &b->c2, a->a1.out, n, train, &a->a2))) return err;
    const float *sc = in;
    if (b->has_sc) {
        if ((err = adnn_cbn_forward(m, &b->sc, in, n, train, &a->asc))) return err;
        sc = a->asc.out;
    }
    size_t sz = (size_t)n * b->cout * b->hout * b->wout;
    a->sum = adnn_arena_get(m, sz);
    a->out = adnn_arena_get(m, sz);
    if (!a->sum || !a->out) return OOM("block forward");
    for (size_t i = 0; i < sz; i++) a->sum[i] = a->a2.out[i] + sc[i];
    nn_relu_forward(a->out, a->sum, sz);
    return DP_OK;
}

dp_err_t adnn_basic_backward(adnn_model_t *m, const adnn_basic_t *b, const adnn_basic_act_t *a,
                             float *dout, float *din)
{
    size_t sz = (size_t)a->n * b->cout * b->hout * b->wout;
    float *dsum = adnn_arena_get(m, sz);
    float *da1 = adnn_arena_get(m, sz);
    if (!dsum || !da1) return OOM("block backward");
    nn_relu_backward(dsum, dout, a->sum, sz);
    dp_err_t err;
    if ((err = adnn_cbn_backward(m, &b->c2, &a->a2, dsum, da1))) return err;
    if ((err = adnn_cbn_backward(m, &b->c1, &a->a1, da1, din))) return err;
    return adnn_basic_shortcut_backward(m, b, a, dsum, din);
}

dp_err_t adnn_basic_shortcut_backward(adnn_model_t *m, const adnn_basic_t *b,
                                      const adnn_basic_act_t *a, float *dsc, float *din)
{
    if (b->has_sc) return adnn_cbn_backward(m, &b->sc, &a->asc, dsc, din);
    size_t sz = (size_t)a->n * b->cout * b->hout * b->wout;
    if (din)
        for (size_t i = 0; i < sz; i++) din[i] += dsc[i];
    return DP_OK;
}

double adnn_basic_flops(const adnn_basic_t *b, int exact)
{
    double f = adnn_cbn_flops(&b->c1, exact) + adnn_cbn_flops(&b->c2, exact);
    if (b->has_sc) f += adnn_cbn_flops(&b->sc, exact);
    if (exact) f += 2.0 * b->cout * b->hout * b->wout; /* add, ReLU */
    return f;
}

/* ------------------------------------------------------------- SDN head */

void adnn_sdn_head_reg(adnn_model_t *m, adnn_sdn_head_t *hd, const char *prefix, int c, int h,
                       int w, int p, int k)
{
    char nm[64];
    hd->c = c, hd->h = h, hd->w = w, hd->p = p, hd->k = k;
    int in = c * p * p;
    snprintf(nm, sizeof nm, "%s.alpha", prefix);
    hd->alpha = adnn_reg(m, nm, 1, ADNN_INIT_ZERO, 0, 1, 1, 0, 0, 0);
    snprintf(nm, sizeof nm, "%s.fc.weight", prefix);
    hd->fw = adnn_reg(m, nm, 1, ADNN_INIT_UNIFORM, in, 2, k, in, 0, 0);
    snprintf(nm, sizeof nm, "%s.fc.bias", prefix);
    hd->fb = adnn_reg(m, nm, 1, ADNN_INIT_UNIFORM, in, 1, k, 0, 0, 0);
}

dp_err_t adnn_sdn_head_forward(adnn_model_t *m, const adnn_sdn_head_t *hd, const float *in, int n,
                               float *logits, adnn_sdn_head_act_t *a)
{
    size_t sz = (size_t)n * hd->c * hd->p * hd->p;
    a->in = in, a->n = n;
    a->mx = adnn_arena_get(m, sz);
    a->av = adnn_arena_get(m, sz);
    a->mix = adnn_arena_get(m, sz);
    a->argmax = (int *)adnn_arena_get(m, sz);
    if (!a->mx || !a->av || !a->mix || !a->argmax) return OOM("exit head");
    nn_adaptive_maxpool2d_forward(a->mx, a->argmax, in, n, hd->c, hd->h, hd->w, hd->p, hd->p);
    nn_adaptive_avgpool2d_forward(a->av, in, n, hd->c, hd->h, hd->w, hd->p, hd->p);
    float s = 1.0f / (1.0f + expf(-hd->alpha[0]));
    for (size_t i = 0; i < sz; i++) a->mix[i] = s * a->mx[i] + (1.0f - s) * a->av[i];
    nn_linear_forward(logits, a->mix, hd->fw, hd->fb, n, hd->c * hd->p * hd->p, hd->k);
    return DP_OK;
}

dp_err_t adnn_sdn_head_backward(adnn_model_t *m, const adnn_sdn_head_t *hd,
                                const adnn_sdn_head_act_t *a, const float *dlogits, float *din)
{
    int n = a->n, in = hd->c * hd->p * hd->p;
    size_t sz = (size_t)n * in;
    float *dmix = adnn_arena_get(m, sz), *dmx = adnn_arena_get(m, sz), *dav = adnn_arena_get(m, sz);
    if (!dmix || !dmx || !dav) return OOM("exit head backward");
    nn_linear_backward(dmix, adnn_grad(m, hd->fw), adnn_grad(m, hd->fb), dlogits, a->mix, hd->fw, n,
                       in, hd->k);
    float s = 1.0f / (1.0f + expf(-hd->alpha[0]));
    double da = 0;
    for (size_t i = 0; i < sz; i++) {
        da += (double)dmix[i] * (a->mx[i] - a->av[i]);
        dmx[i] = s * dmix[i];
        dav[i] = (1.0f - s) * dmix[i];
    }
    float *dalpha = adnn_grad(m, hd->alpha);
    if (dalpha) dalpha[0] += (float)(da * s * (1.0f - s));
    if (din) {
        nn_adaptive_maxpool2d_backward(din, dmx, a->argmax, n, hd->c, hd->h, hd->w, hd->p, hd->p);
        nn_adaptive_avgpool2d_backward(din, dav, n, hd->c, hd->h, hd->w, hd->p, hd->p);
    }
    return DP_OK;
}

/* Elements read by adaptive pooling of (h,w) to (p,p), PyTorch's bin rule. */
static double adaptive_window_sum(int h, int w, int p)
{
    double rows = 0, cols = 0;
    for (int i = 0; i < p; i++) {
        rows += (double)((((i + 1) * h + p - 1) / p) - (i * h / p));
        cols += (double)((((i + 1) * w + p - 1) / p) - (i * w / p));
    }
    return rows * cols;
}

double adnn_sdn_head_flops(const adnn_sdn_head_t *hd, int exact)
{
    double in = (double)hd->c * hd->p * hd->p;
    double f = 2.0 * in * hd->k;
    if (!exact) return f;
    double win = adaptive_window_sum(hd->h, hd->w, hd->p) * hd->c;
    /* max: one comparison per element read; avg: one add per element + a divide;
     * mix: 3 per element; bias: k */
    return f + hd->k + win + (win + in) + 3.0 * in;
}

/* ------------------------------------------------------------- GAP head */

void adnn_gap_head_reg(adnn_model_t *m, adnn_gap_head_t *hd, const char *prefix, int c, int h,
                       int w, int k)
{
    char nm[64];
    hd->c = c, hd->h = h, hd->w = w, hd->k = k;
    snprintf(nm, sizeof nm, "%s.fc.weight", prefix);
    hd->fw = adnn_reg(m, nm, 1, ADNN_INIT_UNIFORM, c, 2, k, c, 0, 0);
    snprintf(nm, sizeof nm, "%s.fc.bias", prefix);
    hd->fb = adnn_reg(m, nm, 1, ADNN_INIT_UNIFORM, c, 1, k, 0, 0, 0);
}

void adnn_gap_head_forward(const adnn_gap_head_t *hd, const float *in, int n, float *pooled,
                           float *logits)
{
    nn_gap_forward(pooled, in, n, hd->c, hd->h * hd->w);
    nn_linear_forward(logits, pooled, hd->fw, hd->fb, n, hd->c, hd->k);
}

void adnn_gap_head_backward(adnn_model_t *m, const adnn_gap_head_t *hd, const float *pooled,
                            const float *dlogits, int n, float *din)
{
    float *dp = adnn_arena_get(m, (size_t)n * hd->c);
    if (!dp) return; /* a few hundred floats: the arena's first chunk always has them */
    nn_linear_backward(dp, adnn_grad(m, hd->fw), adnn_grad(m, hd->fb), dlogits, pooled, hd->fw, n,
                       hd->c, hd->k);
    if (din) nn_gap_backward(din, dp, n, hd->c, hd->h * hd->w);
}

double adnn_gap_head_flops(const adnn_gap_head_t *hd, int exact)
{
    double f = 2.0 * hd->c * hd->k;
    if (!exact) return f;
    return f + hd->k + (double)hd->c * hd->h * hd->w + hd->c;
}

float adnn_confidence(const float *logits, int k, int *arg)
{
    int best = 0;
    for (int j = 1; j < k; j++)
        if (logits[j] > logits[best]) best = j;
    double s = 0;
    for (int j = 0; j < k; j++) s += exp((double)logits[j] - logits[best]);
    if (arg) *arg = best;
    return (float)(1.0 / s);
}

int adnn_count_correct(const float *logits, const int32_t *y, int n, int k)
{
    int c = 0;
    for (int i = 0; i < n; i++) {
        int arg;
        adnn_confidence(logits + (size_t)i * k, k, &arg);
        c += arg == y[i];
    }
    return c;
}

double adnn_log_sigmoid(double z) { return z >= 0 ? -log1p(exp(-z)) : z - log1p(exp(z)); }

double adnn_softmax_flops(int k) { return 4.0 * k; }

/* ------------------------------------------------------------- batch 1 */

const float *adnn_cbn_adaptive(adnn_model_t *m, const adnn_cbn_t *u, const float *in,
                               adnn_trace_t *t)
{
    adnn_cbn_act_t a;
    if (adnn_cbn_forward(m, u, in, 1, 0, &a)) return NULL;
    t->flops_ref += adnn_cbn_flops(u, 0);
    t->flops_exact += adnn_cbn_flops(u, 1);
    return a.out;
}

const float *adnn_basic_adaptive(adnn_model_t *m, const adnn_basic_t *b, int k, int run,
                                 const float *in, adnn_trace_t *t)
{
    if (!run) return b->has_sc ? adnn_cbn_adaptive(m, &b->sc, in, t) : in;
    adnn_basic_act_t a;
    if (adnn_basic_forward(m, b, in, 1, 0, &a)) return NULL;
    t->ran[k] = 1;
    t->blocks_run++;
    t->flops_ref += adnn_basic_flops(b, 0);
    t->flops_exact += adnn_basic_flops(b, 1);
    return a.out;
}

void adnn_gap_head_adaptive(const adnn_gap_head_t *hd, const float *in, int exit, adnn_trace_t *t)
{
    float pooled[1024], logits[1024]; /* the spec bounds widths and classes by 1024 */
    adnn_gap_head_forward(hd, in, 1, pooled, logits);
    t->flops_ref += adnn_gap_head_flops(hd, 0);
    t->flops_exact += adnn_gap_head_flops(hd, 1);
    t->conf[exit] = adnn_confidence(logits, hd->k, &t->pred);
    t->exit_taken = exit;
}
