/* Adam, written the way torch.optim.Adam's single-tensor path computes it:
 *   g += wd p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 *   p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps),  bci = 1 - beta_i^t. */
#include "nn/adam.h"

#include <assert.h>
#include <math.h>

nn_adam_t nn_adam_default(float lr)
{
    nn_adam_t a = {
        .lr = lr, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.0f, .t = 0};
    return a;
}

void nn_adam_step(nn_adam_t *opt, float *params, const float *grads, float *m, float *v, size_t n)
{
    assert(opt);
    opt->t++;
    double bc1 = 1.0 - pow(opt->beta1, (double)opt->t);
    double bc2 = 1.0 - pow(opt->beta2, (double)opt->t);
    float step = (float)(opt->lr / bc1);
    float sbc2 = (float)sqrt(bc2);
    float b1 = opt->beta1, b2 = opt->beta2, eps = opt->eps, wd = opt->weight_decay;
    for (size_t i = 0; i < n; i++) {
        float g = grads[i] + wd * params[i];
        m[i] = b1 * m[i] + (1.0f - b1) * g;
        v[i] = b2 * v[i] + (1.0f - b2) * g * g;
        params[i] -= step * (m[i] / (sqrtf(v[i]) / sbc2 + eps));
    }
}
