/* The adaptive model zoo: networks that spend a different amount of
 * computation on each input (docs/ZOO.md).
 *
 * A model is one object built from an architecture (adnn_spec_t, stored as a
 * dp.v1.ModelSpec protobuf) and a list of named tensors living in two blocks
 * (llm.c style): trainable parameters (with gradient and Adam blocks of the
 * same size) and buffers (BatchNorm running statistics). Weights are saved as
 * safetensors; loading checks every tensor's name, dtype and shape against the
 * spec and names the first mismatch.
 *
 * Each family implements, behind one interface:
 * - adnn_forward_adaptive: batch size 1 with REAL branching (a skipped block
 *   is not computed, an early exit stops the network), returning the
 *   prediction, the executed FLOPs in two conventions and the trace;
 * - adnn_train_step: a training batch with soft gates / all exits;
 * - adnn_eval_batch: every exit's logits for a batch (accuracy);
 * - adnn_pk_grad: the "spend more" probabilities p_k and the gradient of
 *   L = -(1/(N*K)) sum_n sum_k log p_{n,k} with respect to the input.
 *
 * Not thread-safe: a model owns its activation scratch; use one model object
 * per thread. */
#ifndef DP_ADNN_ADNN_H
#define DP_ADNN_ADNN_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define ADNN_MAX_STAGES 4
#define ADNN_MAX_BLOCKS 64
#define ADNN_MAX_EXITS  16
#define ADNN_MAX_DIMS   4

/* Values equal dp.v1.ModelFamily. */
typedef enum adnn_family {
    ADNN_FAMILY_UNSPECIFIED = 0,
    ADNN_FAMILY_SKIPNET = 1,
    ADNN_FAMILY_BLOCKDROP = 2,
    ADNN_FAMILY_SDN_RESNET = 3,
    ADNN_FAMILY_SDN_MOBILENET = 4,
    ADNN_FAMILY_RANET = 5,
} adnn_family_t;

/* Values equal dp.v1.GateKind. */
typedef enum adnn_gate_kind {
    ADNN_GATE_UNSPECIFIED = 0,
    ADNN_GATE_RECURRENT = 1,
    ADNN_GATE_FEEDFORWARD = 2,
} adnn_gate_kind_t;

/* The architecture; mirrors dp.v1.ModelSpec with defaults filled in. */
typedef struct adnn_spec {
    adnn_family_t family;
    int c, h, w;
    int num_classes;
    int stem_width;
    int nstages;
    int widths[ADNN_MAX_STAGES];
    int blocks[ADNN_MAX_STAGES];
    int strides[ADNN_MAX_STAGES];
    adnn_gate_kind_t gate_kind;
    int gate_dim;
    int nexits;                             /* internal exits (the final one not counted) */
    int exit_after[ADNN_MAX_EXITS];         /* block index after which each exit sits */
    float exit_tau;                         /* exit rule c_k >= tau */
    int exit_pool;                          /* SDN head pooling size */
    float gate_threshold;                   /* SkipNet / BlockDrop */
    float exit_weights[ADNN_MAX_EXITS + 1]; /* training weights, internal exits then final */
    int policy_width;                       /* BlockDrop */
    int scales;                             /* RANet */
    char name[64];
    uint64_t seed;
} adnn_spec_t;

/* Family name as used on the command line ("sdn-resnet"), or "?". */
const char *adnn_family_name(adnn_family_t f);
/* Parses a family name; ADNN_FAMILY_UNSPECIFIED if unknown. */
adnn_family_t adnn_family_parse(const char *s);

/* The zoo's default architecture of a family for a 1x28x28, 10-class input.
 * DP_ERR_UNSUPPORTED for a family this build does not implement. */
dp_err_t adnn_spec_default(adnn_family_t f, adnn_spec_t *out);
/* Checks ranges and consistency (detail names the field). */
dp_err_t adnn_spec_validate(const adnn_spec_t *s);

/* Spec <-> dp.v1.ModelSpec bytes. adnn_spec_encode: *buf is new, caller frees. */
dp_err_t adnn_spec_encode(const adnn_spec_t *s, uint8_t **buf, size_t *len);
dp_err_t adnn_spec_decode(const uint8_t *buf, size_t len, const char *name_for_errors,
                          adnn_spec_t *out);
dp_err_t adnn_spec_read(const char *path, adnn_spec_t *out);
dp_err_t adnn_spec_write(const adnn_spec_t *s, const char *path);

typedef struct adnn_model adnn_model_t;

/* Builds a model with freshly initialised weights (seeded). Returns a new
 * object in *out, caller destroys. */
dp_err_t adnn_model_new(const adnn_spec_t *spec, uint64_t seed, adnn_model_t **out);
/* An independent copy of m for another thread: the same spec, every tensor
 * (parameters, BatchNorm running statistics), gradient and Adam moment
 * copied bit for bit, its own activation arena and workspaces (so it gives
 * the same bits as m on any input). m is only read, and must not be in use
 * on another thread meanwhile. Returns a new object in *out, caller
 * destroys. */
dp_err_t adnn_model_clone(const adnn_model_t *m, adnn_model_t **out);
/* Accepts NULL; sets *m = NULL. */
void adnn_model_destroy(adnn_model_t **m);

/* Borrowed, valid until the model is destroyed. */
const adnn_spec_t *adnn_model_spec(const adnn_model_t *m);

/* Named tensors, in registration order. */
typedef struct adnn_tensor_info {
    const char *name; /* borrowed */
    int ndim;
    int64_t shape[ADNN_MAX_DIMS];
    size_t numel;
    float *data;   /* borrowed, inside the parameter or buffer block */
    int trainable; /* 0: a buffer (BN running statistics) */
} adnn_tensor_info_t;
size_t adnn_tensor_count(const adnn_model_t *m);
void adnn_tensor_at(const adnn_model_t *m, size_t i, adnn_tensor_info_t *out);
size_t adnn_param_count(const adnn_model_t *m); /* trainable floats */
/* Gradient of tensor i after adnn_train_step (same shape), NULL for a buffer.
 * Borrowed, valid until the model is destroyed. */
float *adnn_tensor_grad(const adnn_model_t *m, size_t i);

/* Weights: safetensors with the model's tensors (and metadata "family").
 * Load checks each tensor (name, dtype F32, shape) against the model's spec:
 * DP_ERR_NOTFOUND / DP_ERR_MISMATCH name the first bad tensor; extra tensors
 * in the file are DP_ERR_MISMATCH too. */
dp_err_t adnn_weights_save(const adnn_model_t *m, const char *path);
dp_err_t adnn_weights_load(adnn_model_t *m, const char *path);

/* A model file pair: "<prefix>.pb" (ModelSpec) and "<prefix>.safetensors".
 * adnn_model_load returns a new object, caller destroys. */
dp_err_t adnn_model_save(const adnn_model_t *m, const char *prefix);
dp_err_t adnn_model_load(const char *prefix, adnn_model_t **out);
/* The same from a spec file and a weights file that need not share a
 * prefix (a campaign names a spec URI and a weights URI). The weights are
 * checked to cover the spec before the model is allocated. */
dp_err_t adnn_model_load_files(const char *spec_path, const char *weights_path, adnn_model_t **out);

/* ------------------------------------------------------------- inference */

/* What one adaptive forward did. */
typedef struct adnn_trace {
    int pred;                     /* predicted class */
    int nblocks;                  /* backbone blocks in the network */
    uint8_t ran[ADNN_MAX_BLOCKS]; /* 1: block k was computed */
    int blocks_run;
    int exit_taken;                 /* 0..nexits-1 internal, nexits = final; -1: none */
    int nexits;                     /* internal exits */
    float conf[ADNN_MAX_EXITS + 1]; /* c_k of each exit evaluated (0 if not reached) */
    double flops_ref;               /* reference convention (conv, linear; no /groups) */
    double flops_exact;             /* conv/groups, linear, BN, activations, pooling */
    int ngates;                     /* SkipNet, BlockDrop: blocks decided by a gate */
    float gate_p[ADNN_MAX_BLOCKS];  /* each one's run probability (against gate_threshold) */
} adnn_trace_t;

/* The decisions a forward took, each as the value compared with its
 * threshold: SkipNet's gates and BlockDrop's policy (run probabilities
 * against gate_threshold), or the confidence of each internal exit reached
 * (against exit_tau; the final classifier decides nothing). Writes up to
 * ADNN_MAX_BLOCKS values into p and the threshold into *threshold; returns
 * the count. A decision whose value is within a small margin of its
 * threshold is a coin flip: rounding decides it. */
int adnn_trace_decisions(const adnn_model_t *m, const adnn_trace_t *t, float *p, float *threshold);

/* Batch size 1, real branching. x is (C,H,W). */
void adnn_forward_adaptive(adnn_model_t *m, const float *x, adnn_trace_t *trace);

/* FLOPs of the full network (every block and every exit head evaluated):
 * the denominator of the executed fraction. */
double adnn_flops_full(const adnn_model_t *m, int exact);

/* Logits of every exit for a batch, inference mode: out is (n, nexits+1, K),
 * internal exits first, final classifier last. x is (n,C,H,W). */
dp_err_t adnn_eval_batch(adnn_model_t *m, const float *x, int n, float *out);

/* Input gradient of any loss L(p) of the spend-more probabilities (e.g.
 * ILFO's 1e6 * sum_k relu(0.5 - p_k)): one inference-mode forward computes
 * p (n, K); fn(p, n, K, dp, arg) then writes dp = dL/dp (n, K); dx
 * (n,C,H,W) is OVERWRITTEN with sum dp * dp/dx (p_k that the hard decision
 * makes constant, such as exits after the one taken, contribute nothing).
 * Optional per family: DP_ERR_UNSUPPORTED where missing. */
typedef void (*adnn_pk_dloss_fn)(const float *p, int n, int k, float *dp, void *arg);
dp_err_t adnn_pk_vjp(adnn_model_t *m, const float *x, int n, adnn_pk_dloss_fn fn, void *arg,
                     float *p, float *dx);

/* Input gradient of any loss on the exits' logits (e.g. DeepSloth's CE to
 * the uniform distribution on every early exit), for early-exit families.
 * Needs a preceding adnn_eval_batch(m, x, n, ...) on the same model with the
 * same n, and nothing else run on the model in between (its activations are
 * reused). dlogits is (n, nexits+1, K) in adnn_eval_batch's layout (all-zero
 * rows contribute nothing); dx (n,C,H,W) is OVERWRITTEN. Parameter gradients
 * are untouched. DP_ERR_UNSUPPORTED for families without exits. */
dp_err_t adnn_exits_backward(adnn_model_t *m, const float *dlogits, int n, float *dx);

/* ------------------------------------------------------------- training */

/* One forward/backward of the training objective on a batch (BatchNorm in
 * training mode); gradients are zeroed first and written to the gradient
 * block. Returns the loss in *loss and the final classifier's correct count
 * in *correct (may be NULL). */
dp_err_t adnn_train_step(adnn_model_t *m, const float *x, const int32_t *y, int n, double *loss,
                         int *correct);
/* One Adam step over the parameter block (moments live in the model). */
void adnn_adam_step(adnn_model_t *m, float lr);

/* ------------------------------------------------------------- p_k */

/* Number of "spend more" probabilities per input (blocks or exits). */
int adnn_pk_count(const adnn_model_t *m);
/* For a batch in inference mode: p (n, K) the spend-more probabilities
 * (docs/ZOO.md), *loss = -(1/(n*K)) sum log p, and dx (n,C,H,W)
 * (may be NULL) = d loss / d x, OVERWRITTEN. */
dp_err_t adnn_pk_grad(adnn_model_t *m, const float *x, int n, float *p, double *loss, float *dx);

#endif
