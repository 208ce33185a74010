/* SkipNet extras beyond the adnn interface: overriding a gate's decision,
 * for tests and for analyses that ask "what if block k ran / was skipped". */
#ifndef DP_ADNN_SKIPNET_H
#define DP_ADNN_SKIPNET_H

#include "adnn/adnn.h"

#define ADNN_SKIP_GATE_AUTO   (-1) /* the gate decides (p_k > gate_threshold) */
#define ADNN_SKIP_GATE_CLOSED 0    /* block k never runs */
#define ADNN_SKIP_GATE_OPEN   1    /* block k always runs */

/* Overrides gate k's decision in adnn_forward_adaptive, adnn_eval_batch and
 * adnn_pk_grad (the gate is still evaluated: its FLOPs count, its LSTM state
 * advances, its p_k is reported). Training ignores overrides.
 * DP_ERR_INVALID for another family, DP_ERR_RANGE for a bad k or mode. */
dp_err_t adnn_skipnet_force_gate(adnn_model_t *m, int k, int mode);

/* The training objective of adnn_train_step for a SkipNet:
 *   CE + lambda * mean_k p_k + margin_weight * mean_k relu(margin - |t_k - t*|)
 * with t_k gate k's logit and t* = logit(gate_threshold). The first
 * soft_steps Adam steps mix with soft gates g_k = p_k, later ones with hard
 * gates g_k = [p_k > gate_threshold] and the straight-through gradient.
 * The margin term pushes each logit away from the threshold (its gradient
 * -margin_weight * sign(t_k - t*) inside the margin, the sign taken from the
 * decision), so the gates end up decided by the input instead of sitting on
 * the threshold, where the straight-through gradient alone leaves them (the
 * compute penalty closes a gate, the loss reopens it).
 * sample: the hard gates are drawn, g_k ~ Bernoulli(p_k), instead of
 * thresholded; the straight-through gradient then estimates the gradient of
 * the expected loss, p_k L(run) + (1 - p_k) L(skip) + lambda p_k, which is
 * linear in p_k and so drives each p_k towards 0 or 1, where the draw
 * agrees with the threshold at inference (the reference trains its gates
 * with sampled decisions, by REINFORCE).
 * target: when > 0, lambda is not fixed but a multiplier that keeps the
 * batches' mean p_k at target (dual ascent: after each step lambda +=
 * target_rate * (mean p_k - target), never below 0, starting from lambda).
 * A fixed lambda either runs every block or drops a fixed share; a target
 * fixes how much is dropped and leaves the gates to choose which blocks for
 * which inputs.
 * target_per_block: one multiplier per gate, each raised while its own
 * gate's batch mean p_k is above target (and never below 0), so a gate that
 * runs its block for most inputs is pushed, on its own, to choose which
 * inputs skip it (needs target > 0; DP_ERR_INVALID otherwise). */
typedef struct adnn_skipnet_train {
    float lambda;         /* compute penalty on mean p_k (default 0.1) */
    int soft_steps;       /* Adam steps with soft gates (default 500) */
    float margin;         /* logit margin (default 0) */
    float margin_weight;  /* weight of the margin term (default 0: off) */
    int sample;           /* hard gates drawn from Bernoulli(p_k) (default 0: off) */
    float target;         /* mean p_k the multiplier aims at (default 0: fixed lambda) */
    float target_rate;    /* the multiplier's step per batch (default 0.01) */
    int target_per_block; /* a multiplier per gate (default 0: one for all) */
} adnn_skipnet_train_t;

/* The defaults above. */
adnn_skipnet_train_t adnn_skipnet_train_default(void);

/* Sets the objective of later adnn_train_step calls (not saved with the
 * model; the multipliers restart from lambda). DP_ERR_INVALID for another
 * family or a target per block without a target, DP_ERR_RANGE for a
 * negative or non-finite value or a target of 1 or more. */
dp_err_t adnn_skipnet_set_train(adnn_model_t *m, const adnn_skipnet_train_t *o);

#endif
