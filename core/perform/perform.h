/* DeepPerform test-input generation and its baselines (docs/PERFORM.md) on
 * the model zoo's spend-more probabilities p_k (core/adnn).
 *
 * - Budgets and projections: Linf clamp, L2 "exactly eps" (the published
 *   code) or "at most eps"; x' = clamp(x + delta, 0, 1), for the outputs
 *   made to pass the budget check in float32 with no tolerance
 *   (perf_apply_budget, perf_within_budget).
 * - Losses: L_adv = -(1/B) sum_b (1/K) sum_k log p_bk, L_GAN (least-squares,
 *   AdvGAN's small discriminator below), L_per = mean_b max(0, ||g_b||_p -
 *   eps) on the raw generator output g (after projection it would be 0).
 * - Training (perf_train): Adam, lr 1e-3 / 1e-4 from epoch 50 / 1e-5 from
 *   epoch 80, held-out executed fraction after each epoch, best generator
 *   kept, early stop, a checkpoint after every epoch and resume from it.
 * - Generation and baselines (random, ILFO, DeepSloth) produce a sample set:
 *   x', delta norm, PSNR and executed FLOPs of seed and x' per input, stored
 *   as safetensors and summarised by perf_summarize.
 *
 * Not thread-safe: a model or generator object belongs to one thread. With
 * workers > 1, ILFO, DeepSloth and perf_samples_measure start threads of
 * their own (on copies of the model) and set OpenBLAS, process-wide, to one
 * thread until they return. */
#ifndef DP_PERFORM_PERFORM_H
#define DP_PERFORM_PERFORM_H

#include <stddef.h>
#include <stdint.h>

#include "adnn/adnn.h"
#include "perform/generator.h"
#include "perform/hooks.h"
#include "util/err.h"
#include "util/rng.h"

/* ------------------------------------------------------------- budgets */

typedef enum perf_norm { PERF_NORM_LINF = 0, PERF_NORM_L2 = 1 } perf_norm_t;

typedef struct perf_budget {
    perf_norm_t norm;
    float eps;
    int l2_at_most;  /* L2 only: 1 scales down only when ||g|| > eps; 0 sets ||delta|| = eps
                        (the published code). Default 1 (perf_train_config_default, the task
                        layer, dp-perform), as campaign.proto's Budget.l2_exact = false */
    int linf_scaled; /* Linf only: delta = eps * g (g in (-1, 1), the generator's tanh output)
                        instead of clip(g, -eps, eps), whose gradient is 0 on every clipped
                        pixel. A generator's setting, saved with it; baselines ignore it.
                        Default 0 (dp-perform train --linf-scaled sets it) */
} perf_budget_t;

/* "linf" / "l2"; parse returns -1 if unknown. */
const char *perf_norm_name(perf_norm_t n);
int perf_norm_parse(const char *s);

/* ||v||_p of d floats (in double). */
double perf_norm_of(perf_norm_t norm, const float *v, size_t d);

/* delta (n,d) = project(g (n,d)), per sample. delta may alias g. */
void perf_project(const perf_budget_t *b, const float *g, float *delta, int n, size_t d);
/* Backward of perf_project at g: dg (n,d) = ddelta^T d delta / d g
 * (OVERWRITTEN). dg may alias ddelta. */
void perf_project_backward(const perf_budget_t *b, const float *g, const float *ddelta, float *dg,
                           int n, size_t d);
/* xadv = clamp(x + delta, 0, 1), len floats. */
void perf_apply(const float *x, const float *delta, float *xadv, size_t len);
/* ||x' - x||_p as the budget is checked (a sample set's delta_norm): the
 * larger of two norms, rounded up to a float, so that it is <= eps exactly
 * when both are. Both take the differences x'_j - x_j, one in float32, one
 * in double (exact for pixels of 0 or above 2^-29, as every k/255 is), then
 * in double the largest |.| (Linf) or the square root of the sum of squares
 * in index order (L2). NaN if a difference is. */
float perf_budget_norm(perf_norm_t norm, const float *x, const float *xadv, size_t d);
/* 1 iff x' (d floats) is within budget b of x, with no tolerance: every
 * pixel in [0, 1] (not NaN) and perf_budget_norm <= eps. Both L2 modes
 * alike. */
int perf_within_budget(const perf_budget_t *b, const float *x, const float *xadv, size_t d);
/* xadv (n,d) = clamp(x + delta, 0, 1) made to pass perf_within_budget for
 * seeds x in [0, 1] (what every method's output goes through). Linf: delta
 * clamped to [-eps, eps]; a pixel still over eps (the rounding of x +
 * delta, in the float32 or the double difference) steps one float at a
 * time toward x until it is not. L2 (both modes): while the norm (the
 * larger of perf_budget_norm's two) is over eps, the scale s of delta
 * shrinks, s *= eps / norm * (1 - 2^(k-24)) at try k = 0, 1, ..., x' =
 * clamp(x + (float)(s delta), 0, 1); x' = x at the latest (k = 24). Where
 * perf_apply's x' passes (Linf: pixel by pixel), xadv is its bits. */
void perf_apply_budget(const perf_budget_t *b, const float *x, const float *delta, float *xadv,
                       int n, size_t d);
/* Backward of perf_apply: ddelta = dxadv where 0 <= x + delta <= 1, else 0
 * (OVERWRITTEN; may alias dxadv). */
void perf_apply_backward(const float *x, const float *delta, const float *dxadv, float *ddelta,
                         size_t len);

/* Uniform in the norm ball: Linf U[-eps, eps]^d; L2 a uniform direction
 * times eps * u^(1/d). */
void perf_random_delta(const perf_budget_t *b, dp_rng_t *r, float *delta, size_t d);

/* PSNR between x and xadv on a 0-255 scale, capped at PERF_PSNR_MAX dB
 * (identical images). */
#define PERF_PSNR_MAX 100.0
double perf_psnr(const float *x, const float *xadv, size_t d);

/* L_adv from p (n,K) with log floored at PERF_LOG_FLOOR. */
#define PERF_LOG_FLOOR 1e-6
double perf_ladv(const float *p, int n, int k);

/* L_adv over the decisions with p_k < margin only, averaged over all n*K:
 * hinge 0: -log max(p_k, PERF_LOG_FLOOR) (perf_ladv's terms, which it
 * equals where every p_k is below margin); hinge 1: margin - p_k (ILFO's
 * relu, whose gradient on a gate's logit, p(1-p), is largest at the
 * threshold where -log p's, 1-p, is flat). dp (n,K) (may be NULL) gets
 * dL/dp: -1/(n*K*p_k) (0 below the floor) or -1/(n*K) on those decisions,
 * 0 elsewhere. */
double perf_ladv_below(const float *p, int n, int k, float margin, int hinge, float *dp);

/* L_per = mean_b max(0, ||g_b||_p - eps); adds weight * dL_per/dg into dg
 * (may be NULL). */
double perf_lper(const perf_budget_t *b, const float *g, int n, size_t d, float weight, float *dg);

/* ------------------------------------------------------------- discriminator */

typedef struct perf_disc perf_disc_t;

/* AdvGAN's discriminator: conv4x4 s2 C->8, LeakyReLU(0.2); conv4x4 s2 ->16, BN, LeakyReLU;
 * conv4x4 s2 ->32, BN, LeakyReLU; conv1x1 ->1; sigmoid. Returns a new object,
 * caller destroys; NULL on a bad shape (needs h, w >= 22) or no memory. */
perf_disc_t *perf_disc_new(int c, int h, int w, int max_batch, uint64_t seed);
void perf_disc_destroy(perf_disc_t **d);
/* Least-squares GAN losses on the sigmoid outputs (mean over outputs):
 * perf_disc_step: one Adam step (lr) on (D(real)-1)^2 + D(fake)^2, returns
 * the loss. perf_disc_gen_loss: (D(x)-1)^2 with its input gradient times
 * weight ADDED to dx (may be NULL); D's parameters unchanged. */
double perf_disc_step(perf_disc_t *d, const float *real, const float *fake, int n, float lr);
double perf_disc_gen_loss(perf_disc_t *d, const float *x, int n, float weight, float *dx);
/* Flat state for checkpoints: params, Adam m, v (count floats each), BN
 * running statistics (nstats floats), Adam step; borrowed. */
size_t perf_disc_state(perf_disc_t *d, float **params, float **m, float **v, float **stats,
                       size_t *nstats, long **t);

/* ------------------------------------------------------------- training */

typedef struct perf_train_config {
    perf_budget_t budget;
    int width;              /* generator base width (default 16; 64 in the paper, see
                               docs/PERFORM.md "Defaults") */
    int batch;              /* training batch (default 32) */
    int epochs;             /* at most this many epochs (default 20; the paper: 100) */
    int patience;           /* stop after this many epochs without improvement (20) */
    float alpha;            /* L_GAN weight (0: no discriminator, as the published code) */
    float beta;             /* L_per weight (0) */
    float lr;               /* 1e-3; x0.1 from epoch lr_step1, x0.01 from lr_step2 */
    int lr_step1;           /* 0 (default): epochs * 50 / 100, rounded up (50 of 100) */
    int lr_step2;           /* 0 (default): epochs * 80 / 100, rounded up (80 of 100) */
    float res_slope;        /* residual-block LeakyReLU slope (0.01; the published code: 1.0) */
    float adv_margin;       /* 0 (the published loss): L_adv averages -log p_k over every
                               decision; in (0, 1]: only over those with p_k below it, as
                               ILFO's relu(0.5 - p_k) counts only the decisions not yet
                               taken (perf_ladv_below). Saved with the checkpoint */
    int adv_hinge;          /* with adv_margin > 0: 1 for ILFO's terms margin - p_k instead
                               of -log p_k (perf_ladv_below) */
    uint64_t seed;          /* generator init, shuffling, discriminator */
    int stop_after;         /* > 0: return DP_ERR_INTERRUPTED after this many epochs of
                               this call (simulates a kill; for tests) */
    double time_limit_s;    /* > 0: no new epoch once this call has run this long (the
                               best generator so far is the result) */
    const char *checkpoint; /* path or NULL; resumed from when it exists */
    perf_hooks_t hooks;     /* progress (stage "train": a line per epoch, done = epochs of
                               total), cancel (polled between batches), epoch_end (after each
                               checkpoint); zeroed: none */
} perf_train_config_t;

perf_train_config_t perf_train_config_default(void);

/* The 1-based epochs from which the lr is x0.1 and x0.01 under cfg (resolves
 * the 0 = "scaled to epochs" default; never before epoch 2). */
void perf_lr_steps(const perf_train_config_t *cfg, int *step1, int *step2);

typedef struct perf_train_result {
    int epochs_run;   /* epochs completed in total (including resumed ones) */
    int best_epoch;   /* 1-based */
    double best_exec; /* mean executed fraction on the held-out seeds */
    double seconds;   /* wall time of this call */
    int resumed_from; /* epochs loaded from the checkpoint (0: fresh) */
    int early_stopped;
    int time_limited; /* stopped by time_limit_s */
} perf_train_result_t;

/* Trains a generator for model m on train (ntrain, C,H,W) with the held-out
 * seeds val (nval, C,H,W). On success *out is a new generator holding the
 * best weights (inference mode), caller destroys. cfg->hooks.cancelled:
 * PERF_STOP_AFTER_EPOCH ends the training after the epoch's checkpoint,
 * PERF_STOP_NOW at the next batch (the epoch in progress is lost, the last
 * checkpoint stands); either returns DP_ERR_CANCELLED. An error of
 * cfg->hooks.epoch_end ends it with that error. */
dp_err_t perf_train(adnn_model_t *m, const float *train, int ntrain, const float *val, int nval,
                    const perf_train_config_t *cfg, perf_gen_t **out, perf_train_result_t *res);

/* Generator files: the named tensors (parameters and BN statistics) with
 * metadata (shape, width, slopes, norm, eps, l2_at_most). perf_gen_load
 * returns a new inference-only generator, caller destroys, and the budget it
 * was trained for. */
dp_err_t perf_gen_save(const perf_gen_t *g, const perf_budget_t *b, const char *path);
dp_err_t perf_gen_load(const char *path, int max_batch, perf_gen_t **out, perf_budget_t *b);

/* ------------------------------------------------------------- sample sets */

typedef enum perf_method {
    PERF_METHOD_DEEPPERFORM = 0,
    PERF_METHOD_RANDOM,
    PERF_METHOD_ILFO,
    PERF_METHOD_DEEPSLOTH,
} perf_method_t;
const char *perf_method_name(perf_method_t m);
int perf_method_parse(const char *s);

/* Test inputs generated from seeds, with per-input figures. */
typedef struct perf_samples {
    int n, c, h, w;
    int64_t *seed_index; /* (n) index of the seed in its dataset */
    float *xadv;         /* (n,C,H,W) */
    float *delta_norm;   /* (n) ||x' - x||_p: perf_budget_norm */
    float *psnr;         /* (n) */
    double *flops_seed;  /* (n) executed FLOPs (reference convention) of x */
    double *flops_adv;   /* (n) ... of x' */
    double flops_full;   /* full network */
    double seconds;      /* generation wall time for all n (training excluded) */
    perf_method_t method;
    perf_budget_t budget;
    char model[64];
    /* provenance: the OpenBLAS core type and nn_gemm path of the process that
       measured the set (docs/NUMERICS.md: they decide the last bits);
       "unknown" in files written before they were recorded */
    char blas_core[32];
    char gemm_path[16];
} perf_samples_t;

/* Returns a new zeroed set of n inputs, caller destroys. */
perf_samples_t *perf_samples_new(int n, int c, int h, int w);
void perf_samples_destroy(perf_samples_t **s);
dp_err_t perf_samples_save(const perf_samples_t *s, const char *path);
/* Returns a new set in *out, caller destroys. */
dp_err_t perf_samples_load(const char *path, perf_samples_t **out);

/* Fills flops, norms and PSNR of s from the seeds x (n,C,H,W) and s->xadv.
 * workers > 1: the seeds split into that many contiguous parts, each on a
 * thread of its own with a copy of m, OpenBLAS at one thread meanwhile (then
 * restored). 1 (or less): on the calling thread with m, OpenBLAS as set. The
 * figures do not depend on workers when OpenBLAS is set to one thread (more
 * threads may move the last bits of a forward, and so a decision). */
dp_err_t perf_samples_measure(adnn_model_t *m, const float *x, perf_samples_t *s, int workers);

/* ------------------------------------------------------------- methods */

/* Each writes s->xadv for the n seeds x (n,C,H,W), then measures (with
 * perf_samples_measure's workers). The timing covers the generation only
 * (wall time, whatever the workers). perf_generate runs batches of the
 * generator's max_batch (the last one padded), so input i gives the same
 * bits in any run with the same max_batch and i mod max_batch, whatever the
 * other inputs (another slot agrees to about 1e-6). */
dp_err_t perf_generate(perf_gen_t *g, adnn_model_t *m, const perf_budget_t *b, const float *x,
                       perf_samples_t *s, int workers);
/* Random noise; deterministic per (seed, seed_index). */
dp_err_t perf_random(adnn_model_t *m, const perf_budget_t *b, uint64_t seed, const float *x,
                     perf_samples_t *s, int workers);

typedef struct perf_ilfo_config {
    int iters;             /* 300 */
    float lr;              /* 0.01 */
    float weight;          /* 1e6 */
    float margin;          /* 0.5 */
    int batch;             /* inputs optimised together (independent losses); every
                              batch runs full, padded with copies of a real input */
    int first_slot;        /* 0: input i runs in slot (first_slot + i) mod batch, so a
                              caller that passes seed_index mod batch of input 0 (the
                              seeds consecutive) gets a seed's x' with the same bits
                              whatever the set it came in; [0, batch) */
    int workers;           /* 1: seed workers, as perf_samples_measure's, but each part
                              whole batches (at most ceil(n / batch) parts), so every
                              batch holds the same seeds and x' the same bits whatever
                              workers (with OpenBLAS at one thread, as the workers
                              run); the measuring step runs on the same workers */
    double progress_every; /* seconds between progress reports (0: none) */
    perf_hooks_t hooks;    /* progress (stage "ilfo", seeds done of n, from the calling
                              thread), cancel (polled after each batch of the calling
                              thread's part; the other parts stop at their next batch) */
} perf_ilfo_config_t;
perf_ilfo_config_t perf_ilfo_config_default(void);
dp_err_t perf_ilfo(adnn_model_t *m, const perf_budget_t *b, const perf_ilfo_config_t *cfg,
                   const float *x, perf_samples_t *s);

typedef struct perf_sloth_config {
    int linf_steps;   /* 30 */
    float linf_step;  /* 0.002 */
    float linf_start; /* 0.002: U(+-start) */
    int l2_steps;     /* 550 */
    float l2_lr_max;  /* 1 */
    float l2_lr_min;  /* 0.01 */
    int batch;        /* as perf_ilfo_config_t's (full batches) */
    int first_slot;   /* as perf_ilfo_config_t's */
    uint64_t seed;
    int workers;           /* 1: seed workers, as perf_ilfo_config_t's (whole batches) */
    double progress_every; /* as perf_ilfo_config_t's */
    perf_hooks_t hooks;    /* as perf_ilfo_config_t's (stage "deepsloth") */
} perf_sloth_config_t;
perf_sloth_config_t perf_sloth_config_default(void);
/* Early-exit families only (DP_ERR_UNSUPPORTED otherwise). */
dp_err_t perf_deepsloth(adnn_model_t *m, const perf_budget_t *b, const perf_sloth_config_t *cfg,
                        const float *x, perf_samples_t *s);

/* ------------------------------------------------------------- metrics */

typedef struct perf_summary {
    int n;
    double iflops_mean, iflops_max;   /* (flops(x')/flops(x) - 1) * 100 */
    double exec_seed_mean, exec_mean; /* executed fraction of x and x' */
    double psnr_mean, norm_mean, norm_max;
    double seconds_per_input;
    double idpb_rate;  /* share with exec fraction >= threshold */
    int pixels_ok;     /* every pixel of x' in [0, 1] */
    int within_budget; /* pixels_ok and every stored delta_norm <= eps (float32, no
                          tolerance; a NaN norm fails) */
} perf_summary_t;
void perf_summarize(const perf_samples_t *s, double idpb_threshold, perf_summary_t *out);

#endif
