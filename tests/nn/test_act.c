/* core/nn/act.c: elementwise activations and row softmax against double
 * references and double-precision central differences. Inputs are kept at
 * least 1e-2 from the ReLU/LeakyReLU kink at 0, further than the FD step. */
#include "layers_util.h"

#include "nn/act.h"

#define N_ELEM 257

enum act_kind { ACT_RELU, ACT_LEAKY, ACT_SIGMOID, ACT_TANH };

static double act_ref(enum act_kind k, double x, double slope)
{
    switch (k) {
    case ACT_RELU:
        return x > 0 ? x : 0;
    case ACT_LEAKY:
        return x > 0 ? x : slope * x;
    case ACT_SIGMOID:
        return 1.0 / (1.0 + exp(-x));
    case ACT_TANH:
        return tanh(x);
    }
    return 0;
}

struct act_ctx {
    enum act_kind kind;
    double slope;
    const float *x, *r;
    size_t n;
};

static double act_loss(void *p)
{
    struct act_ctx *c = p;
    double s = 0;
    for (size_t i = 0; i < c->n; i++) s += act_ref(c->kind, c->x[i], c->slope) * c->r[i];
    return s;
}

static void check_act(enum act_kind kind, const char *name, float slope)
{
    dp_rng_t rng;
    dp_rng_seed(&rng, 11 + kind);
    float *x = lt_floats(N_ELEM), *y = lt_floats(N_ELEM), *r = lt_floats(N_ELEM);
    float *dx = lt_floats(N_ELEM), *dx2 = lt_floats(N_ELEM);
    double *ref = lt_doubles(N_ELEM);
    lt_fill_away(&rng, x, N_ELEM, 4.0f, 1e-2f);
    lt_fill(&rng, r, N_ELEM, -1.0f, 1.0f);
    switch (kind) {
    case ACT_RELU:
        nn_relu_forward(y, x, N_ELEM);
        break;
    case ACT_LEAKY:
        nn_leakyrelu_forward(y, x, N_ELEM, slope);
        break;
    case ACT_SIGMOID:
        nn_sigmoid_forward(y, x, N_ELEM);
        break;
    case ACT_TANH:
        nn_tanh_forward(y, x, N_ELEM);
        break;
    }
    for (size_t i = 0; i < N_ELEM; i++) ref[i] = act_ref(kind, x[i], slope);
    lt_expect_fwd(name, y, ref, N_ELEM);
    for (int pass = 0; pass < 2; pass++) {
        float *g = pass == 0 ? dx : dx2;
        for (int rep = 0; rep <= pass; rep++) {
            switch (kind) {
            case ACT_RELU:
                nn_relu_backward(g, r, x, N_ELEM);
                break;
            case ACT_LEAKY:
                nn_leakyrelu_backward(g, r, x, N_ELEM, slope);
                break;
            case ACT_SIGMOID:
                nn_sigmoid_backward(g, r, y, N_ELEM);
                break;
            case ACT_TANH:
                nn_tanh_backward(g, r, y, N_ELEM);
                break;
            }
        }
    }
    struct act_ctx ctx = {kind, slope, x, r, N_ELEM};
    lt_gradcheck(name, act_loss, &ctx, x, N_ELEM, dx, 1e-3);
    lt_expect_doubled(name, dx, dx2, N_ELEM);
    free(x), free(y), free(r), free(dx), free(dx2), free(ref);
}

Test(act, relu) { check_act(ACT_RELU, "relu", 0); }
Test(act, leakyrelu) { check_act(ACT_LEAKY, "leakyrelu", 0.01f); }
Test(act, leakyrelu_02) { check_act(ACT_LEAKY, "leakyrelu(0.2)", 0.2f); }
Test(act, sigmoid) { check_act(ACT_SIGMOID, "sigmoid", 0); }
Test(act, tanh) { check_act(ACT_TANH, "tanh", 0); }

Test(act, in_place_forward)
{
    float x[4] = {-2.0f, -0.5f, 0.5f, 2.0f};
    nn_leakyrelu_forward(x, x, 4, 0.1f);
    cr_expect_float_eq(x[0], -0.2f, 1e-7f);
    cr_expect_float_eq(x[3], 2.0f, 1e-7f);
    nn_relu_forward(x, x, 4);
    cr_expect(x[0] == 0.0f && x[1] == 0.0f && x[2] == 0.5f);
}

Test(act, sigmoid_extremes)
{
    float x[4] = {-1000.0f, -90.0f, 90.0f, 1000.0f}, y[4];
    nn_sigmoid_forward(y, x, 4);
    for (int i = 0; i < 4; i++) cr_expect(isfinite(y[i]));
    cr_expect(y[0] == 0.0f && y[3] == 1.0f);
    cr_expect(y[1] >= 0.0f && y[1] < 1e-30f);
    float t[2] = {-50.0f, 50.0f};
    nn_tanh_forward(t, t, 2);
    cr_expect(t[0] == -1.0f && t[1] == 1.0f);
}

/* ---- softmax ---- */

#define SM_ROWS 5
#define SM_K    9

static void softmax_ref(double *y, const float *x, int rows, int k)
{
    for (int r = 0; r < rows; r++) {
        double mx = x[r * k];
        for (int j = 1; j < k; j++) mx = fmax(mx, x[r * k + j]);
        double s = 0;
        for (int j = 0; j < k; j++) s += exp(x[r * k + j] - mx);
        for (int j = 0; j < k; j++) y[r * k + j] = exp(x[r * k + j] - mx) / s;
    }
}

struct sm_ctx {
    const float *x, *r;
    double *y;
};

static double sm_loss(void *p)
{
    struct sm_ctx *c = p;
    softmax_ref(c->y, c->x, SM_ROWS, SM_K);
    double s = 0;
    for (int i = 0; i < SM_ROWS * SM_K; i++) s += c->y[i] * c->r[i];
    return s;
}

Test(act, softmax_forward_backward)
{
    dp_rng_t rng;
    dp_rng_seed(&rng, 5);
    size_t n = SM_ROWS * SM_K;
    float *x = lt_floats(n), *y = lt_floats(n), *r = lt_floats(n), *dx = lt_floats(n);
    float *dx2 = lt_floats(n);
    double *ref = lt_doubles(n);
    lt_fill(&rng, x, n, -3.0f, 3.0f);
    lt_fill(&rng, r, n, -1.0f, 1.0f);
    nn_softmax_forward(y, x, SM_ROWS, SM_K);
    softmax_ref(ref, x, SM_ROWS, SM_K);
    lt_expect_fwd("softmax", y, ref, n);
    for (int row = 0; row < SM_ROWS; row++) {
        double s = 0;
        for (int j = 0; j < SM_K; j++) s += y[row * SM_K + j];
        cr_expect(fabs(s - 1.0) < 1e-6, "row %d sums to %.9g", row, s);
    }
    nn_softmax_backward(dx, r, y, SM_ROWS, SM_K);
    nn_softmax_backward(dx2, r, y, SM_ROWS, SM_K);
    nn_softmax_backward(dx2, r, y, SM_ROWS, SM_K);
    struct sm_ctx ctx = {x, r, lt_doubles(n)};
    lt_gradcheck("softmax", sm_loss, &ctx, x, n, dx, 1e-3);
    lt_expect_doubled("softmax", dx, dx2, n);
    free(ctx.y);
    free(x), free(y), free(r), free(dx), free(dx2), free(ref);
}

/* Row lengths around the vector width (16) and the attention's 121 and 529
 * positions: full vectors, a partial last one, and rows shorter than one.
 * ctest runs this file once per instruction set (DP_GEMM). */
Test(act, softmax_row_lengths)
{
    static const int ks[] = {1, 2, 15, 16, 17, 31, 32, 33, 121, 529};
    dp_rng_t rng;
    dp_rng_seed(&rng, 11);
    for (size_t t = 0; t < sizeof ks / sizeof ks[0]; t++) {
        const int k = ks[t], rows = 3;
        const size_t n = (size_t)rows * (size_t)k;
        float *x = lt_floats(n), *y = lt_floats(n);
        double *ref = lt_doubles(n);
        lt_fill(&rng, x, n, -20.0f, 20.0f);
        nn_softmax_forward(y, x, rows, k);
        softmax_ref(ref, x, rows, k);
        for (size_t i = 0; i < n; i++)
            cr_expect(fabs(y[i] - ref[i]) <= 1e-6 + 1e-5 * ref[i], "k %d [%zu]: %.9g vs %.9g", k, i,
                      (double)y[i], ref[i]);
        nn_softmax_forward(x, x, rows, k); /* in place, as attention calls it */
        for (size_t i = 0; i < n; i++) cr_expect(x[i] == y[i], "k %d in place [%zu]", k, i);
        free(x), free(y), free(ref);
    }
}

Test(act, softmax_large_logits)
{
    float x[2][4] = {{1000.0f, 999.0f, 998.0f, -1000.0f}, {-1000.0f, -1000.0f, -1000.0f, -1000.0f}};
    float y[2][4];
    nn_softmax_forward(&y[0][0], &x[0][0], 2, 4);
    double e1 = exp(-1.0), e2 = exp(-2.0), z = 1.0 + e1 + e2;
    cr_expect(fabs(y[0][0] - 1.0 / z) < 1e-6);
    cr_expect(fabs(y[0][1] - e1 / z) < 1e-6);
    cr_expect(fabs(y[0][2] - e2 / z) < 1e-6);
    cr_expect(y[0][3] == 0.0f);
    for (int j = 0; j < 4; j++) cr_expect(fabs(y[1][j] - 0.25) < 1e-7);
    for (int r = 0; r < 2; r++) {
        double s = 0;
        for (int j = 0; j < 4; j++) {
            cr_expect(isfinite(y[r][j]));
            s += y[r][j];
        }
        cr_expect(fabs(s - 1.0) < 1e-6);
    }
}
