/* The DeepPerform generator G (AdvGAN lineage, docs/PERFORM.md): an
 * encoder of three conv3x3 + InstanceNorm + LeakyReLU, four residual blocks,
 * and a decoder of transposed convs with SAGAN self-attention, ending in tanh.
 *
 * Shaped like llm.c: one parameter block with named pointers into it, the same
 * layout for gradients and the two Adam moments; one block of BatchNorm running
 * statistics; one activation block sized for max_batch, with a twin for the
 * activation gradients; one workspace sized for the largest layer. A forward
 * call allocates nothing.
 *
 * For 1x28x28: 28 -conv s1-> 26 -conv s2-> 12 -conv s2-> 5 (res blocks)
 * -convT s2-> 11 -convT s2-> 23 -convT k6 s1-> 28. The last kernel is chosen
 * as H - h + 1 so the output is H x W.
 *
 * Biases: the encoder and decoder convs keep a bias (PyTorch's default, so the
 * state dict matches bench/ref_generator.py) initialised to 0; the bias of a
 * conv followed by InstanceNorm has no effect and its gradient is ~0. The convs
 * followed by BatchNorm (residual blocks and their shortcuts) have none. */
#ifndef DP_PERFORM_GENERATOR_H
#define DP_PERFORM_GENERATOR_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

typedef struct perf_gen perf_gen_t;

typedef struct perf_gen_config {
    int c, h, w;        /* input image shape; h, w >= 13 */
    int width;          /* base width w (64 in the paper; 16 for small runs) */
    int max_batch;      /* largest n a forward call may take */
    uint64_t seed;      /* initial weights */
    float res_slope;    /* LeakyReLU slope in the residual blocks (published code: 1.0) */
    float slope;        /* LeakyReLU slope in encoder/decoder (0.01) */
    int inference_only; /* 1: no gradient, Adam or activation-gradient blocks */
} perf_gen_config_t;

/* c=1, h=w=28, width 64, max_batch 64, seed 1, slopes 0.01, trainable. */
perf_gen_config_t perf_gen_config_default(void);

/* Returns a new object, caller destroys; NULL on a bad config (detail in
 * dp_err_detail()), one that needs more than perf_gen_memory_limit() bytes,
 * or no memory. */
perf_gen_t *perf_gen_new(const perf_gen_config_t *cfg);
/* Bytes perf_gen_new would allocate for cfg (0 on a bad config). */
double perf_gen_memory_bytes(const perf_gen_config_t *cfg);
/* The most perf_gen_new allocates: by default this machine's physical memory;
 * perf_gen_set_memory_limit(0) restores that default. */
size_t perf_gen_memory_limit(void);
void perf_gen_set_memory_limit(size_t bytes);

/* Accepts NULL; sets *g = NULL. */
void perf_gen_destroy(perf_gen_t **g);

/* Borrowed, valid until perf_gen_destroy. */
const perf_gen_config_t *perf_gen_config(const perf_gen_t *g);

/* x is (n,C,H,W), out is (n,C,H,W) in [-1,1]; 1 <= n <= max_batch.
 * training=1: BatchNorm uses batch statistics and updates the running ones,
 * and the activations are kept for perf_gen_backward. training=0: running
 * statistics. out may not alias x. */
void perf_gen_forward(perf_gen_t *g, const float *x, int n, float *out, int training);

/* dout is (n,C,H,W) for the n of the last training forward. Accumulates into
 * the parameter gradients; if dx is not NULL, also accumulates the gradient
 * with respect to the input into dx (n,C,H,W). Needs !inference_only and a
 * preceding perf_gen_forward(..., training=1). */
void perf_gen_backward(perf_gen_t *g, const float *dout, float *dx);

void perf_gen_zero_grad(perf_gen_t *g);
/* One Adam step (PyTorch defaults, betas 0.9/0.999, eps 1e-8) at lr. */
void perf_gen_adam_step(perf_gen_t *g, float lr);

/* The Adam state for checkpoints: the two moment blocks (num_params floats
 * each) and the step count; borrowed, valid until perf_gen_destroy. Needs
 * !inference_only (all NULL otherwise). */
void perf_gen_adam_state(perf_gen_t *g, float **m, float **v, long **t);

/* Number of trainable parameters (the length of the parameter block). */
size_t perf_gen_num_params(const perf_gen_t *g);
/* The same count from the config alone. */
size_t perf_gen_count_params(const perf_gen_config_t *cfg);
/* Multiply-adds per image of one forward (convs, 1x1 convs, attention
 * matmuls; not norms or activations). */
double perf_gen_macs(const perf_gen_t *g);

/* The parameter block (num_params floats) and its gradient (NULL when
 * inference_only); borrowed, valid until perf_gen_destroy. */
float *perf_gen_params(perf_gen_t *g);
float *perf_gen_grads(perf_gen_t *g);

/* One named tensor in state_dict order: the trainable parameters and the
 * BatchNorm running statistics (trainable = 0). Names are the PyTorch
 * state_dict keys of bench/ref_generator.py ("res0.bn1.running_mean").
 * BatchNorm's num_batches_tracked is not kept. */
typedef struct perf_gen_tensor {
    const char *name;
    int ndim;
    int shape[4];
    size_t numel;
    float *data; /* borrowed, valid until perf_gen_destroy */
    float *grad; /* NULL for statistics or when inference_only */
    int trainable;
} perf_gen_tensor_t;

/* For gradient checks: a hash of the sign pattern of every LeakyReLU input in
 * the last forward, so a test can tell that a perturbation crossed a kink. */
uint64_t perf_gen_kink_signature(const perf_gen_t *g);

/* Number of named tensors, and the i-th (0 <= i < count); borrowed. */
int perf_gen_num_tensors(const perf_gen_t *g);
const perf_gen_tensor_t *perf_gen_tensor(const perf_gen_t *g, int i);

#endif
