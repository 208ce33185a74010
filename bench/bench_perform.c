/* bench_perform: the cost figures of DeepPerform against ILFO on the shipped
 * SDN-ResNet and Fashion-MNIST.
 *
 *   bench_perform [MODEL] [WIDTH] [STEPS] [ILFO_INPUTS] [THREADS]
 *   (DP_DATA_DIR: Fashion-MNIST folder, default /usr/share/datasets/fashion-mnist)
 *
 * - training: seconds per step (batch 32) of one generator at WIDTH (default:
 *   perf_train_config_default's), measured over STEPS steps, with the held-out
 *   evaluation of 500 seeds, extrapolated to one epoch of 5,000 images (the
 *   dp-perform default) and to the default epoch count (early stopping only
 *   shortens it); bench/bench_train.sh times a whole real training instead;
 * - generation: seconds per input (batch 32, 256 inputs);
 * - ILFO: seconds per input (300 iterations, batch 16, or ILFO_INPUTS/THREADS
 *   when smaller, on THREADS seed workers) on ILFO_INPUTS inputs, and the
 *   ratio to generation. */
#include <stdio.h>
#include <stdlib.h>

#include "adnn/adnn.h"
#include "data/dataset.h"
#include "nn/nn.h"
#include "perform/perform.h"
#include "util/clock.h"

int main(int argc, char **argv)
{
    const char *model = argc > 1 ? argv[1] : "models/sdn_resnet";
    const perf_train_config_t defaults = perf_train_config_default();
    int width = argc > 2 ? atoi(argv[2]) : defaults.width;
    int steps = argc > 3 ? atoi(argv[3]) : 5;
    int nilfo = argc > 4 ? atoi(argv[4]) : 16;
    int threads = argc > 5 ? atoi(argv[5]) : 1;
    nn_set_threads(threads);
    adnn_model_t *m = NULL;
    dp_dataset_t *d = NULL;
    const char *dir =
        getenv("DP_DATA_DIR") ? getenv("DP_DATA_DIR") : "/usr/share/datasets/fashion-mnist";
    char img[4096], lbl[4096];
    snprintf(img, sizeof img, "%s/t10k-images-idx3-ubyte.gz", dir);
    snprintf(lbl, sizeof lbl, "%s/t10k-labels-idx1-ubyte.gz", dir);
    if (adnn_model_load(model, &m) || dp_dataset_load_idx(img, lbl, &d)) {
        fprintf(stderr, "bench_perform: %s\n", dp_err_detail());
        return 1;
    }
    const int B = 32;
    perf_train_config_t c = defaults;
    c.width = width, c.batch = B, c.epochs = 1;
    /* one epoch of steps*B images, then the held-out evaluation of 500 */
    perf_gen_t *g = NULL;
    perf_train_result_t res;
    double t0 = dp_clock_s();
    dp_err_t err =
        perf_train(m, d->images, steps * B, d->images + (size_t)5000 * 784, 500, &c, &g, &res);
    double t_train = dp_clock_s() - t0;
    if (err) {
        fprintf(stderr, "bench_perform: %s\n", dp_err_detail());
        return 1;
    }
    /* separate the evaluation: time generation + adaptive forward of 500 */
    perf_samples_t *s = perf_samples_new(256, 1, 28, 28);
    perf_budget_t b = c.budget;
    t0 = dp_clock_s();
    perf_samples_t *ev = perf_samples_new(500, 1, 28, 28);
    perf_generate(g, m, &b, d->images + (size_t)5000 * 784, ev, 1);
    double t_eval = dp_clock_s() - t0;
    double step_s = (t_train - t_eval) / steps;
    if (step_s < 0) step_s = t_train / steps;
    double epoch_s = step_s * (5000.0 / B) + t_eval;
    perf_generate(g, m, &b, d->images, s, 1);
    double gen_s = s->seconds / s->n;
    perf_samples_t *si = perf_samples_new(nilfo, 1, 28, 28);
    perf_ilfo_config_t ic = perf_ilfo_config_default();
    /* ILFO at its fastest on the same cores: one seed worker per thread
     * (whole batches each, so at least `threads` batches) */
    ic.workers = threads;
    if (threads > 1 && ic.batch * threads > nilfo)
        ic.batch = nilfo / threads > 0 ? nilfo / threads : 1;
    perf_ilfo(m, &b, &ic, d->images, si);
    double ilfo_s = si->seconds / si->n;
    printf("bench_perform: %s, generator width %d (%zu parameters), %d thread(s)\n", model, width,
           perf_gen_num_params(g), threads);
    printf("  training: %.3f s/step (batch %d), held-out eval of 500 %.1f s -> %.0f s/epoch of "
           "5,000 images, %.1f min for %d epochs\n",
           step_s, B, t_eval, epoch_s, epoch_s * defaults.epochs / 60, defaults.epochs);
    printf("  generation: %.3g s/input (batch %d, %d inputs)\n", gen_s, B, s->n);
    printf("  ILFO (300 iterations, batch %d, %d seed worker(s)): %.3g s/input over %d inputs; "
           "ratio %.0fx\n",
           ic.batch, ic.workers, ilfo_s, si->n, ilfo_s / gen_s);
    perf_samples_destroy(&s);
    perf_samples_destroy(&ev);
    perf_samples_destroy(&si);
    perf_gen_destroy(&g);
    adnn_model_destroy(&m);
    dp_dataset_destroy(&d);
    return 0;
}
