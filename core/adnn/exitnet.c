/* The early-exit networks' objectives and family entry points (exitnet.h):
 * the weighted cross-entropy over every exit, the spend-more probabilities
 * p_k with their gradient, and the exits' logits in and out, around a
 * family's full forward and backward (adnn_exitnet_t, the start of m->fam). */
#include "adnn/exitnet.h"

#include <math.h>
#include <string.h>

/* The spend-more rule. logits[k] is (n,K) for each internal exit k < E. p (n,E):
 * p_k = 1 - c_k (at least `floor`) up to and including the first exit with
 * c_k >= tau, and 1 after it; taken (n): that exit, or E if none fires. */
static void exit_pk(const float *const *logits, int n, int E, int K, float tau, double floor,
                    float *p, int *taken)
{
    for (int i = 0; i < n; i++) {
        int t = E; /* E: no internal exit fires */
        for (int k = 0; k < E; k++) {
            float *pk = p + (size_t)i * E + k;
            if (k > t) {
                *pk = 1.0f;
                continue;
            }
            const float *z = logits[k] + (size_t)i * K;
            int b;
            float c = adnn_confidence(z, K, &b);
            /* 1 - c computed without cancellation: rest / (1 + rest) */
            double rest = 0;
            for (int j = 0; j < K; j++)
                if (j != b) rest += exp((double)z[j] - z[b]);
            double pv = rest / (1.0 + rest);
            *pk = (float)(pv < floor ? floor : pv);
            if (c >= tau) t = k;
        }
        taken[i] = t;
    }
}

/* dlogits[k] (n,K) from dL/dp (n,E) through p_k = 1 - c_k; rows of exits
 * past taken[i] (where p_k is the constant 1) are left as they are. */
static void exit_pk_backward(const float *const *logits, const float *dp, const int *taken, int n,
                             int E, int K, float *const *dlogits)
{
    for (int i = 0; i < n; i++)
        for (int k = 0; k < E && k <= taken[i]; k++) { /* later p_k = 1: constant */
            const float *z = logits[k] + (size_t)i * K;
            float *dz = dlogits[k] + (size_t)i * K;
            int b;
            float c = adnn_confidence(z, K, &b);
            double rest = 0;
            for (int j = 0; j < K; j++)
                if (j != b) rest += exp((double)z[j] - z[b]);
            /* p = 1 - c: dL/dz_j = -dL/dp * c (delta_jb - s_j) */
            double g = -(double)dp[(size_t)i * E + k], sum = 1.0 + rest;
            for (int j = 0; j < K; j++) {
                double sj = exp((double)z[j] - z[b]) / sum;
                dz[j] = (float)(g * c * ((j == b ? 1.0 : 0.0) - sj));
            }
        }
}

/* Every exit's logits (logits[k] (n,K), k <= E, final last) into out
 * (n, E+1, K), as adnn_eval_batch returns them. */
static void exits_copy(const float *const *logits, int n, int E, int K, float *out)
{
    for (int i = 0; i < n; i++)
        for (int k = 0; k <= E; k++)
            memcpy(out + ((size_t)i * (E + 1) + k) * K, logits[k] + (size_t)i * K,
                   (size_t)K * sizeof(float));
}

/* The training objective: cross-entropy of every exit (k <= E) weighted by
 * spec.exit_weights (normalised); dl[k] (n,K) come from the arena and receive
 * d loss / d logits[k]. *correct (may be NULL): the final exit's correct count. */
static dp_err_t exits_ce(adnn_model_t *m, const float *const *logits, const int32_t *y, int n,
                         float **dl, double *loss, int *correct)
{
    const adnn_spec_t *s = &m->spec;
    int E = s->nexits, K = s->num_classes;
    double wsum = 0, l = 0;
    for (int k = 0; k <= E; k++) wsum += s->exit_weights[k];
    if (wsum <= 0) wsum = 1;
    for (int k = 0; k <= E; k++) {
        float *probs = adnn_arena_get(m, (size_t)n * K);
        dl[k] = adnn_arena_get(m, (size_t)n * K);
        if (!probs || !dl[k])
            return dp_err_set(DP_ERR_NOMEM, "out of memory in %s training",
                              adnn_family_name(s->family));
        float wk = (float)(s->exit_weights[k] / wsum);
        l += wk * nn_crossentropy_forward(probs, logits[k], y, n, K);
        nn_crossentropy_backward(dl[k], probs, y, n, K, wk);
    }
    *loss = l;
    if (correct) *correct = adnn_count_correct(logits[E], y, n, K);
    return DP_OK;
}

/* The p_k entry points' preamble: dx (n images, may be NULL) and *loss (may
 * be NULL) zeroed; returns E, the number of internal exits (0: done). */
static int pk_clear(const adnn_model_t *m, int n, double *loss, float *dx)
{
    const adnn_spec_t *s = &m->spec;
    size_t isz = (size_t)s->c * s->h * s->w;
    if (dx) memset(dx, 0, (size_t)n * isz * sizeof(float));
    if (loss) *loss = 0;
    return s->nexits;
}

/* After a full inference forward: p (n,E) with p_k floored at 1e-30,
 * *loss = -(1/(nE)) sum log p_k over the exits each image reaches, and dl[k]
 * (n,K, from the arena) = dL/dlogits[k] for k < E. */
static dp_err_t pk_loss(adnn_model_t *m, const float *const *logits, int n, float *p, double *loss,
                        float **dl, const char *who)
{
    const adnn_spec_t *s = &m->spec;
    int E = s->nexits, K = s->num_classes;
    for (int k = 0; k < E; k++)
        if (!(dl[k] = adnn_arena_get(m, (size_t)n * K)))
            return dp_err_set(DP_ERR_NOMEM, "out of memory in %s p_k", who);
    float *dp = adnn_arena_get(m, (size_t)n * E);
    int *taken = (int *)adnn_arena_get(m, (size_t)n);
    if (!dp || !taken) return dp_err_set(DP_ERR_NOMEM, "out of memory in %s p_k", who);
    exit_pk(logits, n, E, K, s->exit_tau, 1e-30, p, taken);
    double l = 0, scale = 1.0 / ((double)n * E);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < E && k <= taken[i]; k++) {
            double pv = p[(size_t)i * E + k];
            l -= scale * log(pv);
            dp[(size_t)i * E + k] = (float)(-scale / pv); /* dL/dp */
        }
    exit_pk_backward(logits, dp, taken, n, E, K, dl);
    *loss = l;
    return DP_OK;
}

/* The same p (no floor), dL/dp from fn, dl[k] = dL/dlogits[k]. */
static dp_err_t pk_vjp_dlogits(adnn_model_t *m, const float *const *logits, int n,
                               adnn_pk_dloss_fn fn, void *arg, float *p, float **dl,
                               const char *who)
{
    const adnn_spec_t *s = &m->spec;
    int E = s->nexits, K = s->num_classes;
    float *dp = adnn_arena_get(m, (size_t)n * E);
    int *taken = (int *)adnn_arena_get(m, (size_t)n);
    if (!dp || !taken) return dp_err_set(DP_ERR_NOMEM, "out of memory in %s p_k", who);
    for (int k = 0; k < E; k++)
        if (!(dl[k] = adnn_arena_get(m, (size_t)n * K)))
            return dp_err_set(DP_ERR_NOMEM, "out of memory in %s p_k", who);
    exit_pk(logits, n, E, K, s->exit_tau, 0.0, p, taken);
    fn(p, n, E, dp, arg);
    exit_pk_backward(logits, dp, taken, n, E, K, dl);
    return DP_OK;
}

/* adnn_exits_backward's preamble: dx (n images) zeroed; dlogits
 * (n, E+1, K) split into dl[k] (n,K, from the arena) for k <= E, left NULL
 * where all zero. */
static dp_err_t exits_split(adnn_model_t *m, const float *dlogits, int n, float *dx, float **dl,
                            const char *who)
{
    int E = m->spec.nexits, K = m->spec.num_classes;
    memset(dx, 0, (size_t)n * m->spec.c * m->spec.h * m->spec.w * sizeof(float));
    for (int k = 0; k <= E; k++) {
        int any = 0;
        for (int i = 0; i < n && !any; i++)
            for (int j = 0; j < K; j++)
                if (dlogits[((size_t)i * (E + 1) + k) * K + j] != 0.0f) any = 1;
        if (!any) continue;
        if (!(dl[k] = adnn_arena_get(m, (size_t)n * K)))
            return dp_err_set(DP_ERR_NOMEM, "out of memory in %s exits backward", who);
        for (int i = 0; i < n; i++)
            memcpy(dl[k] + (size_t)i * K, dlogits + ((size_t)i * (E + 1) + k) * K,
                   (size_t)K * sizeof(float));
    }
    return DP_OK;
}

dp_err_t adnn_exitnet_eval_batch(adnn_model_t *m, const float *x, int n, float *out)
{
    adnn_exitnet_t *f = m->fam;
    dp_err_t err = f->forward(m, x, n, 0);
    if (err) return err;
    exits_copy((const float *const *)f->logits, n, m->spec.nexits, m->spec.num_classes, out);
    return DP_OK;
}

dp_err_t adnn_exitnet_train_step(adnn_model_t *m, const float *x, const int32_t *y, int n,
                                 double *loss, int *correct)
{
    adnn_exitnet_t *f = m->fam;
    dp_err_t err = f->forward(m, x, n, 1);
    if (err) return err;
    float *dl[ADNN_MAX_EXITS + 1];
    if ((err = exits_ce(m, (const float *const *)f->logits, y, n, dl, loss, correct))) return err;
    return f->backward(m, dl, NULL);
}

int adnn_exitnet_pk_count(const adnn_model_t *m) { return m->spec.nexits; }

dp_err_t adnn_exitnet_pk_grad(adnn_model_t *m, const float *x, int n, float *p, double *loss,
                              float *dx)
{
    if (pk_clear(m, n, loss, dx) == 0) return DP_OK;
    adnn_exitnet_t *f = m->fam;
    dp_err_t err = f->forward(m, x, n, 0);
    if (err) return err;
    float *dl[ADNN_MAX_EXITS + 1] = {0};
    if ((err = pk_loss(m, (const float *const *)f->logits, n, p, loss, dl, f->who))) return err;
    return f->backward(m, dl, dx);
}

/* p as in adnn_exitnet_pk_grad, then dlogits from the caller's dL/dp. */
dp_err_t adnn_exitnet_pk_vjp(adnn_model_t *m, const float *x, int n, adnn_pk_dloss_fn fn, void *arg,
                             float *p, float *dx)
{
    if (pk_clear(m, n, NULL, dx) == 0) return DP_OK;
    adnn_exitnet_t *f = m->fam;
    dp_err_t err = f->forward(m, x, n, 0);
    if (err) return err;
    float *dl[ADNN_MAX_EXITS + 1] = {0};
    if ((err = pk_vjp_dlogits(m, (const float *const *)f->logits, n, fn, arg, p, dl, f->who)))
        return err;
    return f->backward(m, dl, dx);
}

/* After adnn_exitnet_eval_batch (activations kept, arena not reset). */
dp_err_t adnn_exitnet_exits_backward(adnn_model_t *m, const float *dlogits, int n, float *dx)
{
    adnn_exitnet_t *f = m->fam;
    if (n != f->n)
        return dp_err_set(DP_ERR_INVALID, "adnn_exits_backward: n %d, last forward had %d", n,
                          f->n);
    float *dl[ADNN_MAX_EXITS + 1] = {0};
    dp_err_t err = exits_split(m, dlogits, n, dx, dl, f->who);
    if (err) return err;
    return f->backward(m, dl, dx);
}
