/* Budgets, projections and the per-input figures of core/perform: plain loops
 * over (n, d) buffers, in double where a sum is taken. The budget is checked
 * on the float32 values as stored, with no tolerance (perf_within_budget),
 * and every method's output is made to pass it (perf_apply_budget). */
#include <math.h>
#include <string.h>

#include "perform/perform.h"

const char *perf_norm_name(perf_norm_t n) { return n == PERF_NORM_L2 ? "l2" : "linf"; }

int perf_norm_parse(const char *s)
{
    if (strcmp(s, "linf") == 0) return PERF_NORM_LINF;
    if (strcmp(s, "l2") == 0) return PERF_NORM_L2;
    return -1;
}

double perf_norm_of(perf_norm_t norm, const float *v, size_t d)
{
    double acc = 0;
    for (size_t i = 0; i < d; i++) {
        double a = fabs((double)v[i]);
        if (norm == PERF_NORM_LINF)
            acc = a > acc ? a : acc;
        else
            acc += a * a;
    }
    return norm == PERF_NORM_LINF ? acc : sqrt(acc);
}

/* Scale of the L2 projection of one sample with norm nrm. */
static double l2_scale(const perf_budget_t *b, double nrm)
{
    if (b->l2_at_most && nrm <= b->eps) return 1.0;
    return nrm > 1e-12 ? b->eps / nrm : 0.0;
}

void perf_project(const perf_budget_t *b, const float *g, float *delta, int n, size_t d)
{
    for (int i = 0; i < n; i++) {
        const float *gi = g + (size_t)i * d;
        float *di = delta + (size_t)i * d;
        if (b->norm == PERF_NORM_LINF && b->linf_scaled) {
            /* |g| < 1 from the tanh; the clip keeps any other g inside too */
            for (size_t j = 0; j < d; j++) {
                float v = b->eps * gi[j];
                di[j] = v > b->eps ? b->eps : (v < -b->eps ? -b->eps : v);
            }
        } else if (b->norm == PERF_NORM_LINF) {
            for (size_t j = 0; j < d; j++)
                di[j] = gi[j] > b->eps ? b->eps : (gi[j] < -b->eps ? -b->eps : gi[j]);
        } else {
            double s = l2_scale(b, perf_norm_of(PERF_NORM_L2, gi, d));
            for (size_t j = 0; j < d; j++) di[j] = (float)(s * gi[j]);
        }
    }
}

void perf_project_backward(const perf_budget_t *b, const float *g, const float *ddelta, float *dg,
                           int n, size_t d)
{
    for (int i = 0; i < n; i++) {
        const float *gi = g + (size_t)i * d, *dd = ddelta + (size_t)i * d;
        float *o = dg + (size_t)i * d;
        if (b->norm == PERF_NORM_LINF && b->linf_scaled) {
            for (size_t j = 0; j < d; j++) o[j] = fabsf(gi[j]) <= 1.0f ? b->eps * dd[j] : 0.0f;
            continue;
        }
        if (b->norm == PERF_NORM_LINF) {
            for (size_t j = 0; j < d; j++) o[j] = fabsf(gi[j]) <= b->eps ? dd[j] : 0.0f;
            continue;
        }
        double nrm = perf_norm_of(PERF_NORM_L2, gi, d);
        if ((b->l2_at_most && nrm <= b->eps)) {
            if (o != dd) memcpy(o, dd, d * sizeof(float));
            continue;
        }
        if (nrm <= 1e-12) {
            memset(o, 0, d * sizeof(float));
            continue;
        }
        /* d(eps g/|g|) = eps/|g| (I - u u^T), u = g/|g| */
        double dot = 0;
        for (size_t j = 0; j < d; j++) dot += (double)gi[j] * dd[j];
        double s = b->eps / nrm, u = dot / (nrm * nrm);
        for (size_t j = 0; j < d; j++) o[j] = (float)(s * (dd[j] - u * gi[j]));
    }
}

void perf_apply(const float *x, const float *delta, float *xadv, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        float v = x[i] + delta[i];
        xadv[i] = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
    }
}

/* ||x' - x||_p with the differences taken in float32 (in_double 0) or in
 * double (exact for pixels of 0 or above 2^-29: then the real norm, but for
 * the rounding of the sum and the square root); the sums in double, in index
 * order. A NaN difference makes it NaN. */
static double dist(perf_norm_t norm, const float *x, const float *xadv, size_t d, int in_double)
{
    double acc = 0;
    for (size_t i = 0; i < d; i++) {
        float dl = xadv[i] - x[i];
        double a = in_double ? fabs((double)xadv[i] - (double)x[i]) : fabs((double)dl);
        if (norm == PERF_NORM_LINF)
            acc = (a > acc || a != a) ? a : acc;
        else
            acc += a * a;
    }
    return norm == PERF_NORM_LINF ? acc : sqrt(acc);
}

/* The larger of the two (NaN if either is). */
static double budget_dist(perf_norm_t norm, const float *x, const float *xadv, size_t d)
{
    double a = dist(norm, x, xadv, d, 0), b = dist(norm, x, xadv, d, 1);
    return (a != a || a > b) ? a : b;
}

float perf_budget_norm(perf_norm_t norm, const float *x, const float *xadv, size_t d)
{
    double v = budget_dist(norm, x, xadv, d);
    float f = (float)v;
    return (double)f < v ? nextafterf(f, INFINITY) : f; /* rounded up */
}

int perf_within_budget(const perf_budget_t *b, const float *x, const float *xadv, size_t d)
{
    for (size_t i = 0; i < d; i++)
        if (!(xadv[i] >= 0.0f && xadv[i] <= 1.0f)) return 0;
    return perf_budget_norm(b->norm, x, xadv, d) <= b->eps;
}

/* |v - x| <= eps in float32 and in double, one pixel. */
static int linf_ok(float x, float v, float eps)
{
    return fabsf(v - x) <= eps && fabs((double)v - (double)x) <= (double)eps;
}

/* One Linf pixel: clamp(x + clamp(delta, -eps, eps), 0, 1), then one float
 * at a time toward x while over eps (a few steps at most: the excess is the
 * rounding of x + delta). Never leaves [0, 1]: a seed outside it, or a NaN,
 * stops the steps. */
static float apply_linf(float x, float delta, float eps)
{
    float dl = delta > eps ? eps : (delta < -eps ? -eps : delta);
    float v = x + dl;
    v = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
    while (v != x && !linf_ok(x, v, eps)) {
        float nv = nextafterf(v, x);
        if (!(nv >= 0.0f && nv <= 1.0f)) break;
        v = nv;
    }
    return v;
}

/* Shrinks of the L2 scale before x' = x (the factor's margin doubles from
 * 2^-24 each time, so the 25th is 0). */
#define L2_SHRINKS 25

void perf_apply_budget(const perf_budget_t *b, const float *x, const float *delta, float *xadv,
                       int n, size_t d)
{
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * d, *di = delta + (size_t)i * d;
        float *ai = xadv + (size_t)i * d;
        if (b->norm == PERF_NORM_LINF) {
            for (size_t j = 0; j < d; j++) ai[j] = apply_linf(xi[j], di[j], b->eps);
            continue;
        }
        perf_apply(xi, di, ai, d); /* scale 1: perf_apply's bits */
        double s = 1.0, nrm = budget_dist(PERF_NORM_L2, xi, ai, d);
        for (int k = 0; k < L2_SHRINKS && nrm > (double)b->eps; k++) {
            s *= (double)b->eps / nrm * (1.0 - ldexp(1.0, k - 24));
            for (size_t j = 0; j < d; j++) {
                float v = xi[j] + (float)(s * di[j]);
                ai[j] = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
            }
            nrm = budget_dist(PERF_NORM_L2, xi, ai, d);
        }
    }
}

void perf_apply_backward(const float *x, const float *delta, const float *dxadv, float *ddelta,
                         size_t len)
{
    for (size_t i = 0; i < len; i++) {
        float v = x[i] + delta[i];
        ddelta[i] = (v >= 0.0f && v <= 1.0f) ? dxadv[i] : 0.0f;
    }
}

void perf_random_delta(const perf_budget_t *b, dp_rng_t *r, float *delta, size_t d)
{
    if (b->norm == PERF_NORM_LINF) {
        for (size_t j = 0; j < d; j++) delta[j] = b->eps * (2.0f * dp_rng_uniform(r) - 1.0f);
        return;
    }
    double s2 = 0;
    for (size_t j = 0; j < d; j++) {
        delta[j] = dp_rng_normal(r);
        s2 += (double)delta[j] * delta[j];
    }
    double rad = b->eps * pow((double)dp_rng_uniform(r), 1.0 / (double)d);
    double s = s2 > 0 ? rad / sqrt(s2) : 0.0;
    for (size_t j = 0; j < d; j++) delta[j] = (float)(s * delta[j]);
}

double perf_psnr(const float *x, const float *xadv, size_t d)
{
    double se = 0;
    for (size_t j = 0; j < d; j++) {
        double e = 255.0 * ((double)x[j] - xadv[j]);
        se += e * e;
    }
    double mse = se / (double)d;
    if (mse <= 0) return PERF_PSNR_MAX;
    double p = 10.0 * log10(255.0 * 255.0 / mse);
    return p > PERF_PSNR_MAX ? PERF_PSNR_MAX : p;
}

double perf_ladv(const float *p, int n, int k)
{
    if (n <= 0 || k <= 0) return 0;
    double l = 0;
    for (size_t i = 0; i < (size_t)n * k; i++) {
        double v = p[i] < PERF_LOG_FLOOR ? PERF_LOG_FLOOR : p[i];
        l -= log(v);
    }
    return l / ((double)n * k);
}

double perf_ladv_below(const float *p, int n, int k, float margin, int hinge, float *dp)
{
    if (n <= 0 || k <= 0) return 0;
    const double nk = (double)n * k;
    double l = 0;
    for (size_t i = 0; i < (size_t)n * k; i++) {
        float g = 0.0f;
        if (p[i] < margin) {
            if (hinge) {
                l += (double)margin - p[i];
                g = (float)(-1.0 / nk);
            } else if (p[i] < PERF_LOG_FLOOR) {
                l -= log(PERF_LOG_FLOOR);
            } else {
                l -= log(p[i]);
                g = (float)(-1.0 / (nk * p[i]));
            }
        }
        if (dp) dp[i] = g;
    }
    return l / nk;
}

double perf_lper(const perf_budget_t *b, const float *g, int n, size_t d, float weight, float *dg)
{
    double l = 0;
    for (int i = 0; i < n; i++) {
        const float *gi = g + (size_t)i * d;
        double nrm = perf_norm_of(b->norm, gi, d);
        if (nrm <= b->eps) continue;
        l += (nrm - b->eps) / n;
        if (!dg) continue;
        float *o = dg + (size_t)i * d;
        if (b->norm == PERF_NORM_L2) {
            for (size_t j = 0; j < d; j++) o[j] += (float)(weight * gi[j] / (nrm * n));
        } else { /* subgradient at the first largest entry */
            for (size_t j = 0; j < d; j++)
                if (fabs((double)gi[j]) == nrm) {
                    o[j] += (float)(weight * (gi[j] > 0 ? 1.0 : -1.0) / n);
                    break;
                }
        }
    }
    return l;
}

void perf_summarize(const perf_samples_t *s, double idpb_threshold, perf_summary_t *out)
{
    memset(out, 0, sizeof *out);
    out->n = s->n;
    out->pixels_ok = 1;
    out->within_budget = 1;
    if (s->n <= 0) return;
    size_t d = (size_t)s->c * s->h * s->w;
    double imax = -1e300, nmax = 0;
    int idpb = 0;
    for (int i = 0; i < s->n; i++) {
        double inc = (s->flops_adv[i] / s->flops_seed[i] - 1.0) * 100.0;
        out->iflops_mean += inc;
        imax = inc > imax ? inc : imax;
        double ef = s->flops_adv[i] / s->flops_full;
        out->exec_mean += ef;
        out->exec_seed_mean += s->flops_seed[i] / s->flops_full;
        idpb += ef >= idpb_threshold;
        out->psnr_mean += s->psnr[i];
        out->norm_mean += s->delta_norm[i];
        nmax = s->delta_norm[i] > nmax ? s->delta_norm[i] : nmax;
        if (!(s->delta_norm[i] <= s->budget.eps)) out->within_budget = 0;
        for (size_t j = 0; j < d; j++) {
            float v = s->xadv[(size_t)i * d + j];
            if (!(v >= 0.0f && v <= 1.0f)) out->pixels_ok = 0;
        }
    }
    double n = s->n;
    out->iflops_mean /= n;
    out->iflops_max = imax;
    out->exec_mean /= n;
    out->exec_seed_mean /= n;
    out->psnr_mean /= n;
    out->norm_mean /= n;
    out->norm_max = nmax;
    out->within_budget = out->within_budget && out->pixels_ok;
    out->idpb_rate = idpb / n;
    out->seconds_per_input = s->seconds / n;
}
