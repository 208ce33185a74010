/* Adam, written the way torch.optim.Adam computes it (float tensors, scalars
 * from double hyperparameters rounded to float):
 *   g += wd p; m = lerp(m, g, 1-b1) = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 *   p -= (lr / bc1) * (m / (sqrt(v) / sqrt(bc2) + eps)),  bci = 1 - beta_i^t. */
#include "nn/adam.h"

#include <assert.h>
#include <math.h>

nn_adam_t nn_adam_default(float lr)
{
    nn_adam_t a = {
        .lr = lr, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.0, .t = 0};
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
    float b2 = (float)opt->beta2, omb1 = (float)(1.0 - opt->beta1),
          omb2 = (float)(1.0 - opt->beta2);
    float eps = (float)opt->eps, wd = (float)opt->weight_decay;
    for (size_t i = 0; i < n; i++) {
        float g = grads[i] + wd * params[i];
        m[i] += omb1 * (g - m[i]);
        v[i] = b2 * v[i] + omb2 * (g * g);
        params[i] -= step * (m[i] / (sqrtf(v[i]) / sbc2 + eps));
    }
}
