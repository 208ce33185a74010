/* Internals shared by the model object and the families of core/adnn: the
 * model struct, tensor registration, the activation arena, and the building
 * blocks (conv+BN(+ReLU) unit, residual basic block, exit heads) with their
 * forward (train or inference mode), backward and FLOPs counts. */
#ifndef DP_ADNN_ADNN_IMPL_H
#define DP_ADNN_ADNN_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "adnn/adnn.h"
#include "nn/nn.h"
#include "util/rng.h"

#define ADNN_BN_EPS      1e-5f
#define ADNN_BN_MOMENTUM 0.1f

typedef struct adnn_family_ops {
    adnn_family_t family;
    /* Registers every tensor with adnn_reg and keeps the returned pointers.
     * Called twice: first to count (pointers are NULL), then to point. */
    dp_err_t (*build)(adnn_model_t *m);
    void (*destroy)(adnn_model_t *m);
    void (*forward_adaptive)(adnn_model_t *m, const float *x, adnn_trace_t *t);
    double (*flops_full)(const adnn_model_t *m, int exact);
    dp_err_t (*eval_batch)(adnn_model_t *m, const float *x, int n, float *out);
    dp_err_t (*train_step)(adnn_model_t *m, const float *x, const int32_t *y, int n, double *loss,
                           int *correct);
    int (*pk_count)(const adnn_model_t *m);
    dp_err_t (*pk_grad)(adnn_model_t *m, const float *x, int n, float *p, double *loss, float *dx);
    /* optional (NULL: DP_ERR_UNSUPPORTED): see adnn_pk_vjp, adnn_exits_backward */
    dp_err_t (*pk_vjp)(adnn_model_t *m, const float *x, int n, adnn_pk_dloss_fn fn, void *arg,
                       float *p, float *dx);
    dp_err_t (*exits_backward)(adnn_model_t *m, const float *dlogits, int n, float *dx);
} adnn_family_ops_t;

extern const adnn_family_ops_t adnn_sdn_resnet_ops;
extern const adnn_family_ops_t adnn_skipnet_ops;
extern const adnn_family_ops_t adnn_blockdrop_ops;
extern const adnn_family_ops_t adnn_sdn_mobilenet_ops;
extern const adnn_family_ops_t adnn_ranet_ops;

typedef enum adnn_init {
    ADNN_INIT_ZERO,
    ADNN_INIT_ONE,
    ADNN_INIT_KAIMING,
    ADNN_INIT_UNIFORM
} adnn_init_t;

typedef struct adnn_tensor_rec {
    char name[64];
    int ndim;
    int64_t shape[ADNN_MAX_DIMS];
    size_t numel, offset; /* offset into params (trainable) or buffers */
    int trainable;
    adnn_init_t init;
    int fan_in;
} adnn_tensor_rec_t;

typedef struct adnn_chunk {
    float *data;
    size_t cap;
} adnn_chunk_t;

struct adnn_model {
    adnn_spec_t spec;
    const adnn_family_ops_t *ops;
    adnn_tensor_rec_t *tensors;
    size_t ntensors, tcap, next_tensor; /* next_tensor: cursor of the pointing pass */
    int pointing;                       /* 1 during the second build pass */
    size_t nparams, nbuffers;
    float *params, *grads, *adam_m, *adam_v, *buffers;
    long adam_t;
    int want_param_grads; /* 0 in pk_grad: only the input gradient */
    /* activation arena: chunks reused across calls, reset per forward */
    adnn_chunk_t chunks[64];
    int nchunks, cur_chunk;
    size_t cur_off;
    /* conv workspace, grown on demand */
    float *ws;
    size_t ws_size;
    void *fam; /* family state */
};

/* Registers a tensor; returns its data (NULL in the counting pass). */
float *adnn_reg(adnn_model_t *m, const char *name, int trainable, adnn_init_t init, int fan_in,
                int ndim, int d0, int d1, int d2, int d3);
/* The gradient of parameter p (a pointer returned by adnn_reg), or NULL when
 * the model does not want parameter gradients now. */
float *adnn_grad(adnn_model_t *m, const float *p);

/* Arena: adnn_arena_reset at the start of a forward; adnn_arena_get returns
 * zeroed floats valid until the next reset, or NULL if out of memory. */
void adnn_arena_reset(adnn_model_t *m);
float *adnn_arena_get(adnn_model_t *m, size_t n);
/* Conv workspace of at least n floats (NULL if out of memory). */
float *adnn_ws(adnn_model_t *m, size_t n);

/* ------------------------------------------------------------- layers */

/* conv (no bias) + BatchNorm (+ ReLU). */
typedef struct adnn_cbn {
    int cin, cout, k, stride, pad, groups, h, w, hout, wout, relu;
    float *wt, *gamma, *beta, *rm, *rv;
} adnn_cbn_t;

/* What a forward saved for backward. out is relu(bn) or bn. */
typedef struct adnn_cbn_act {
    const float *in;
    float *conv, *bn, *out, *mean, *rstd;
    int n, train;
} adnn_cbn_act_t;

/* Registers "<prefix>.conv.weight", "<prefix>.bn.{weight,bias,running_mean,running_var}". */
void adnn_cbn_reg(adnn_model_t *m, adnn_cbn_t *u, const char *prefix, int cin, int cout, int k,
                  int stride, int pad, int groups, int h, int w, int relu);
/* in (n,cin,h,w); fills a (out is (n,cout,hout,wout)). NULL a: out of memory. */
dp_err_t adnn_cbn_forward(adnn_model_t *m, const adnn_cbn_t *u, const float *in, int n, int train,
                          adnn_cbn_act_t *a);
/* dout (n,cout,hout,wout) is CLOBBERED; accumulates into din (may be NULL). */
dp_err_t adnn_cbn_backward(adnn_model_t *m, const adnn_cbn_t *u, const adnn_cbn_act_t *a,
                           float *dout, float *din);
double adnn_cbn_flops(const adnn_cbn_t *u, int exact);

/* Residual basic block: relu(cbn2(cbn1(x)) + shortcut(x)). */
typedef struct adnn_basic {
    adnn_cbn_t c1, c2, sc;
    int has_sc;
    int cin, cout, h, w, hout, wout;
} adnn_basic_t;
typedef struct adnn_basic_act {
    adnn_cbn_act_t a1, a2, asc;
    const float *in;
    float *sum, *out;
    int n;
} adnn_basic_act_t;
void adnn_basic_reg(adnn_model_t *m, adnn_basic_t *b, const char *prefix, int cin, int cout,
                    int stride, int h, int w);
dp_err_t adnn_basic_forward(adnn_model_t *m, const adnn_basic_t *b, const float *in, int n,
                            int train, adnn_basic_act_t *a);
/* dout CLOBBERED; accumulates into din. */
dp_err_t adnn_basic_backward(adnn_model_t *m, const adnn_basic_t *b, const adnn_basic_act_t *a,
                             float *dout, float *din);
/* The shortcut path alone: dsc (n,cout,hout,wout), the gradient on sc(x),
 * CLOBBERED; accumulates into din (may be NULL) through the projection, or
 * as is for the identity. */
dp_err_t adnn_basic_shortcut_backward(adnn_model_t *m, const adnn_basic_t *b,
                                      const adnn_basic_act_t *a, float *dsc, float *din);
double adnn_basic_flops(const adnn_basic_t *b, int exact);

/* SDN internal classifier: mixed max/avg adaptive pool to PxP with a learned
 * mix s = sigmoid(alpha): s*max + (1-s)*avg, then linear (C*P*P -> K). */
typedef struct adnn_sdn_head {
    int c, h, w, p, k;
    float *alpha, *fw, *fb;
} adnn_sdn_head_t;
typedef struct adnn_sdn_head_act {
    const float *in;
    float *mx, *av, *mix;
    int *argmax;
    int n;
} adnn_sdn_head_act_t;
void adnn_sdn_head_reg(adnn_model_t *m, adnn_sdn_head_t *hd, const char *prefix, int c, int h,
                       int w, int p, int k);
/* logits (n,k) */
dp_err_t adnn_sdn_head_forward(adnn_model_t *m, const adnn_sdn_head_t *hd, const float *in, int n,
                               float *logits, adnn_sdn_head_act_t *a);
/* accumulates into din */
dp_err_t adnn_sdn_head_backward(adnn_model_t *m, const adnn_sdn_head_t *hd,
                                const adnn_sdn_head_act_t *a, const float *dlogits, float *din);
double adnn_sdn_head_flops(const adnn_sdn_head_t *hd, int exact);

/* Final classifier: global average pool then linear (C -> K). */
typedef struct adnn_gap_head {
    int c, h, w, k;
    float *fw, *fb;
} adnn_gap_head_t;
void adnn_gap_head_reg(adnn_model_t *m, adnn_gap_head_t *hd, const char *prefix, int c, int h,
                       int w, int k);
/* pooled (n,c) saved by the caller for backward */
void adnn_gap_head_forward(const adnn_gap_head_t *hd, const float *in, int n, float *pooled,
                           float *logits);
void adnn_gap_head_backward(adnn_model_t *m, const adnn_gap_head_t *hd, const float *pooled,
                            const float *dlogits, int n, float *din);
double adnn_gap_head_flops(const adnn_gap_head_t *hd, int exact);

/* Softmax confidence: max softmax of logits (k), its argmax in *arg. */
float adnn_confidence(const float *logits, int k, int *arg);
/* Images of a batch whose argmax of logits (n,k) is their label y (n). */
int adnn_count_correct(const float *logits, const int32_t *y, int n, int k);
/* log sigmoid(z) without overflow (= -softplus(-z)). */
double adnn_log_sigmoid(double z);

/* Exact FLOPs of the exit decision (softmax + max) over k classes. */
double adnn_softmax_flops(int k);

/* ------------------------------------------------------------- batch 1 */

/* The pieces of an adaptive forward (batch 1, inference mode) that add
 * their FLOPs to the trace t as they run. Each returns its output (valid
 * until the next arena reset), or NULL when out of memory. */

/* One conv+BN(+ReLU) unit. */
const float *adnn_cbn_adaptive(adnn_model_t *m, const adnn_cbn_t *u, const float *in,
                               adnn_trace_t *t);
/* Block k: run (t->ran[k], t->blocks_run) or skipped; a skipped block
 * computes only its shortcut projection, or nothing (returns in) for the
 * identity. */
const float *adnn_basic_adaptive(adnn_model_t *m, const adnn_basic_t *b, int k, int run,
                                 const float *in, adnn_trace_t *t);
/* The final classifier as exit `exit`: t->conf[exit], t->pred, t->exit_taken. */
void adnn_gap_head_adaptive(const adnn_gap_head_t *hd, const float *in, int exit, adnn_trace_t *t);

#endif
