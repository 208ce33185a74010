/* core/nn/linear.c and lstm.c: forward against double references, every
 * gradient against central differences, accumulation and NULL skipping. */
#include "layers_util.h"

#include "nn/linear.h"
#include "nn/lstm.h"

/* ---- linear ---- */

enum { LN = 3, LIN = 7, LOUT = 5 };

struct lin_ctx {
    const float *x, *w, *b, *r;
};

static void linear_ref(double *y, const float *x, const float *w, const float *b)
{
    for (int i = 0; i < LN; i++)
        for (int o = 0; o < LOUT; o++) {
            double s = b ? b[o] : 0;
            for (int k = 0; k < LIN; k++) s += (double)x[i * LIN + k] * w[o * LIN + k];
            y[i * LOUT + o] = s;
        }
}

static double lin_loss(void *p)
{
    struct lin_ctx *c = p;
    double y[LN * LOUT], s = 0;
    linear_ref(y, c->x, c->w, c->b);
    for (int i = 0; i < LN * LOUT; i++) s += y[i] * c->r[i];
    return s;
}

Test(linear, forward_backward)
{
    float x[LN * LIN], w[LOUT * LIN], b[LOUT], y[LN * LOUT], r[LN * LOUT];
    float dx[LN * LIN] = {0}, dw[LOUT * LIN] = {0}, db[LOUT] = {0};
    double ref[LN * LOUT];
    dp_rng_t rng;
    dp_rng_seed(&rng, 21);
    lt_fill(&rng, x, LN * LIN, -1, 1);
    lt_fill(&rng, w, LOUT * LIN, -1, 1);
    lt_fill(&rng, b, LOUT, -1, 1);
    lt_fill(&rng, r, LN * LOUT, -1, 1);
    nn_linear_forward(y, x, w, b, LN, LIN, LOUT);
    linear_ref(ref, x, w, b);
    lt_expect_fwd("linear", y, ref, LN * LOUT);
    nn_linear_forward(y, x, w, NULL, LN, LIN, LOUT);
    linear_ref(ref, x, w, NULL);
    lt_expect_fwd("linear (no bias)", y, ref, LN * LOUT);

    nn_linear_backward(dx, dw, db, r, x, w, LN, LIN, LOUT);
    struct lin_ctx ctx = {x, w, b, r};
    lt_gradcheck("linear dinp", lin_loss, &ctx, x, LN * LIN, dx, 1e-2);
    lt_gradcheck("linear dweight", lin_loss, &ctx, w, LOUT * LIN, dw, 1e-2);
    lt_gradcheck("linear dbias", lin_loss, &ctx, b, LOUT, db, 1e-2);

    float dx2[LN * LIN], dw2[LOUT * LIN], db2[LOUT];
    memcpy(dx2, dx, sizeof dx);
    memcpy(dw2, dw, sizeof dw);
    memcpy(db2, db, sizeof db);
    nn_linear_backward(dx2, NULL, NULL, r, x, w, LN, LIN, LOUT);
    nn_linear_backward(NULL, dw2, NULL, r, x, w, LN, LIN, LOUT);
    nn_linear_backward(NULL, NULL, db2, r, x, w, LN, LIN, LOUT);
    lt_expect_doubled("linear dinp", dx, dx2, LN * LIN);
    lt_expect_doubled("linear dweight", dw, dw2, LOUT * LIN);
    lt_expect_doubled("linear dbias", db, db2, LOUT);
}

/* ---- LSTM cell ---- */

enum { SN = 2, SI = 3, SH = 4 };

struct lstm_ctx {
    const float *x, *h, *c, *wih, *whh, *bih, *bhh, *rh, *rc;
};

static double sigm(double z) { return 1.0 / (1.0 + exp(-z)); }

static void lstm_ref(double *h_out, double *c_out, const struct lstm_ctx *p)
{
    for (int b = 0; b < SN; b++) {
        double gate[4 * SH];
        for (int j = 0; j < 4 * SH; j++) {
            double s = (p->bih ? p->bih[j] : 0) + (p->bhh ? p->bhh[j] : 0);
            for (int k = 0; k < SI; k++) s += (double)p->x[b * SI + k] * p->wih[j * SI + k];
            if (p->h)
                for (int k = 0; k < SH; k++) s += (double)p->h[b * SH + k] * p->whh[j * SH + k];
            gate[j] = s;
        }
        for (int j = 0; j < SH; j++) {
            double i = sigm(gate[j]), f = sigm(gate[SH + j]), g = tanh(gate[2 * SH + j]);
            double o = sigm(gate[3 * SH + j]);
            double c = f * (p->c ? p->c[b * SH + j] : 0) + i * g;
            c_out[b * SH + j] = c;
            h_out[b * SH + j] = o * tanh(c);
        }
    }
}

/* loss = sum(h' * rh) + sum(c' * rc) */
static double lstm_loss(void *vp)
{
    const struct lstm_ctx *p = vp;
    double h[SN * SH], c[SN * SH], s = 0;
    lstm_ref(h, c, p);
    for (int i = 0; i < SN * SH; i++) s += h[i] * p->rh[i] + (p->rc ? c[i] * p->rc[i] : 0);
    return s;
}

struct lstm_data {
    float x[SN * SI], h[SN * SH], c[SN * SH], wih[4 * SH * SI], whh[4 * SH * SH];
    float bih[4 * SH], bhh[4 * SH], rh[SN * SH], rc[SN * SH];
    float ho[SN * SH], co[SN * SH], cache[SN * 5 * SH], ws[SN * 4 * SH];
    float dx[SN * SI], dh[SN * SH], dc[SN * SH], dwih[4 * SH * SI], dwhh[4 * SH * SH];
    float dbih[4 * SH], dbhh[4 * SH];
};

static void lstm_setup(struct lstm_data *d)
{
    memset(d, 0, sizeof *d);
    dp_rng_t rng;
    dp_rng_seed(&rng, 33);
    lt_fill(&rng, d->x, SN * SI, -1, 1);
    lt_fill(&rng, d->h, SN * SH, -1, 1);
    lt_fill(&rng, d->c, SN * SH, -1, 1);
    lt_fill(&rng, d->wih, 4 * SH * SI, -0.8f, 0.8f);
    lt_fill(&rng, d->whh, 4 * SH * SH, -0.8f, 0.8f);
    lt_fill(&rng, d->bih, 4 * SH, -0.5f, 0.5f);
    lt_fill(&rng, d->bhh, 4 * SH, -0.5f, 0.5f);
    lt_fill(&rng, d->rh, SN * SH, -1, 1);
    lt_fill(&rng, d->rc, SN * SH, -1, 1);
}

static void lstm_backward_all(struct lstm_data *d, const float *rc)
{
    nn_lstm_cell_backward(d->dx, d->dh, d->dc, d->dwih, d->dwhh, d->dbih, d->dbhh, d->rh, rc,
                          d->cache, d->x, d->h, d->c, d->wih, d->whh, SN, SI, SH, d->ws);
}

Test(lstm, forward_backward)
{
    struct lstm_data d;
    lstm_setup(&d);
    nn_lstm_cell_forward(d.ho, d.co, d.cache, d.x, d.h, d.c, d.wih, d.whh, d.bih, d.bhh, SN, SI,
                         SH);
    struct lstm_ctx ctx = {d.x, d.h, d.c, d.wih, d.whh, d.bih, d.bhh, d.rh, d.rc};
    double rh[SN * SH], rc[SN * SH];
    lstm_ref(rh, rc, &ctx);
    lt_expect_fwd("lstm h'", d.ho, rh, SN * SH);
    lt_expect_fwd("lstm c'", d.co, rc, SN * SH);
    for (int b = 0; b < SN; b++)
        for (int j = 0; j < SH; j++)
            cr_expect(fabs(d.cache[b * 5 * SH + 4 * SH + j] - tanh(rc[b * SH + j])) < 1e-6);

    lstm_backward_all(&d, d.rc);
    lt_gradcheck("lstm dx", lstm_loss, &ctx, d.x, SN * SI, d.dx, 1e-3);
    lt_gradcheck("lstm dh_prev", lstm_loss, &ctx, d.h, SN * SH, d.dh, 1e-3);
    lt_gradcheck("lstm dc_prev", lstm_loss, &ctx, d.c, SN * SH, d.dc, 1e-3);
    lt_gradcheck("lstm dw_ih", lstm_loss, &ctx, d.wih, 4 * SH * SI, d.dwih, 1e-3);
    lt_gradcheck("lstm dw_hh", lstm_loss, &ctx, d.whh, 4 * SH * SH, d.dwhh, 1e-3);
    lt_gradcheck("lstm db_ih", lstm_loss, &ctx, d.bih, 4 * SH, d.dbih, 1e-3);
    lt_gradcheck("lstm db_hh", lstm_loss, &ctx, d.bhh, 4 * SH, d.dbhh, 1e-3);

    struct lstm_data d2 = d;
    lstm_backward_all(&d2, d.rc);
    lt_expect_doubled("lstm dx", d.dx, d2.dx, SN * SI);
    lt_expect_doubled("lstm dh_prev", d.dh, d2.dh, SN * SH);
    lt_expect_doubled("lstm dc_prev", d.dc, d2.dc, SN * SH);
    lt_expect_doubled("lstm dw_ih", d.dwih, d2.dwih, 4 * SH * SI);
    lt_expect_doubled("lstm dw_hh", d.dwhh, d2.dwhh, 4 * SH * SH);
    lt_expect_doubled("lstm db_ih", d.dbih, d2.dbih, 4 * SH);
    lt_expect_doubled("lstm db_hh", d.dbhh, d2.dbhh, 4 * SH);
}

/* First step of a sequence: no previous state, no biases, no dc_out. */
Test(lstm, zero_state_no_bias)
{
    struct lstm_data d;
    lstm_setup(&d);
    nn_lstm_cell_forward(d.ho, d.co, d.cache, d.x, NULL, NULL, d.wih, d.whh, NULL, NULL, SN, SI,
                         SH);
    struct lstm_ctx ctx = {d.x, NULL, NULL, d.wih, d.whh, NULL, NULL, d.rh, NULL};
    double rh[SN * SH], rc[SN * SH];
    lstm_ref(rh, rc, &ctx);
    lt_expect_fwd("lstm h' (zero state)", d.ho, rh, SN * SH);
    lt_expect_fwd("lstm c' (zero state)", d.co, rc, SN * SH);
    nn_lstm_cell_backward(d.dx, NULL, NULL, d.dwih, d.dwhh, NULL, NULL, d.rh, NULL, d.cache, d.x,
                          NULL, NULL, d.wih, d.whh, SN, SI, SH, d.ws);
    lt_gradcheck("lstm dx (zero state)", lstm_loss, &ctx, d.x, SN * SI, d.dx, 1e-3);
    lt_gradcheck("lstm dw_ih (zero state)", lstm_loss, &ctx, d.wih, 4 * SH * SI, d.dwih, 1e-3);
    for (int i = 0; i < 4 * SH * SH; i++) cr_expect(d.dwhh[i] == 0.0f);
}
