/* Losses with PyTorch's reductions ('mean') and clamps. The forward sums in
 * double and returns the mean as double; backward accumulates
 * dloss * d(mean)/d(input). */
#include "nn/loss.h"

#include <assert.h>
#include <math.h>
#include <stddef.h>

#include "nn/act.h"

/* Loss per row is logsumexp(z) - z_t, computed in double from the logits
 * (not from log(probs), which underflows). */
double nn_crossentropy_forward(float *probs, const float *logits, const int32_t *targets, int n,
                               int k)
{
    assert(n > 0 && k > 0);
    nn_softmax_forward(probs, logits, n, k);
    double total = 0.0;
    for (int b = 0; b < n; b++) {
        const float *z = logits + (size_t)b * k;
        int32_t t = targets[b];
        assert(t >= 0 && t < k);
        float mx = z[0];
        for (int j = 1; j < k; j++) mx = z[j] > mx ? z[j] : mx;
        double s = 0.0;
        for (int j = 0; j < k; j++) s += exp((double)z[j] - mx);
        total += log(s) + mx - z[t];
    }
    return total / n;
}

void nn_crossentropy_backward(float *dlogits, const float *probs, const int32_t *targets, int n,
                              int k, float dloss)
{
    float sc = dloss / (float)n;
    for (int b = 0; b < n; b++) {
        const float *p = probs + (size_t)b * k;
        float *d = dlogits + (size_t)b * k;
        for (int j = 0; j < k; j++) d[j] += sc * p[j];
        d[targets[b]] -= sc;
    }
}

static double clamped_log(double x)
{
    double l = log(x);
    return l < -100.0 ? -100.0 : l;
}

double nn_bce_forward(const float *p, const float *t, int n)
{
    assert(n > 0);
    double total = 0.0;
    for (int i = 0; i < n; i++)
        total -= t[i] * clamped_log(p[i]) + (1.0 - t[i]) * clamped_log(1.0 - (double)p[i]);
    return total / n;
}

/* PyTorch: (p - t) / max(p (1 - p), 1e-12). */
void nn_bce_backward(float *dp, const float *p, const float *t, int n, float dloss)
{
    float sc = dloss / (float)n;
    for (int i = 0; i < n; i++) {
        float den = p[i] * (1.0f - p[i]);
        den = den > 1e-12f ? den : 1e-12f;
        dp[i] += sc * (p[i] - t[i]) / den;
    }
}

double nn_mse_forward(const float *x, const float *t, int n)
{
    assert(n > 0);
    double total = 0.0;
    for (int i = 0; i < n; i++) {
        double d = (double)x[i] - t[i];
        total += d * d;
    }
    return total / n;
}

void nn_mse_backward(float *dx, const float *x, const float *t, int n, float dloss)
{
    float sc = 2.0f * dloss / (float)n;
    for (int i = 0; i < n; i++) dx[i] += sc * (x[i] - t[i]);
}
