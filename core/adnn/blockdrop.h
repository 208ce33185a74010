/* BlockDrop extras beyond the adnn interface: the training objective. */
#ifndef DP_ADNN_BLOCKDROP_H
#define DP_ADNN_BLOCKDROP_H

#include "adnn/adnn.h"

/* The training objective of adnn_train_step for a BlockDrop network: masks
 * a_k ~ Bernoulli(q_k) with q = explore * p + (1 - explore) * (1 - p); the
 * backbone learns by cross-entropy under the mask, the policy by REINFORCE
 * with reward 1 - (|a| / K)^2 for a right prediction and -penalty for a wrong
 * one, minus the batch mean. The penalty sets the price of an error against
 * the blocks saved: at 10 dropping one block of six pays only when it costs
 * under 3% more errors, so the policy keeps every block whose loss shows in
 * accuracy; lower penalties let it drop blocks for the inputs that do not
 * need them. explore keeps every block dropped (or run) at least
 * 1 - explore of the time in training, so the backbone tolerates the skips
 * (at 0.5 the masks are uniform and the policy learns nothing: stochastic
 * depth for the backbone alone). policy_only: the backbone is frozen and runs
 * in inference mode (its BatchNorm running statistics), and only the policy
 * learns, the reference's first stage: trained beside a backbone that adapts
 * to it, the policy settles on one or two masks for every input; against a
 * fixed backbone it finds, per input, the blocks that input needs.
 * self_critical: the REINFORCE baseline of each image is the reward of the
 * mask the policy would take at inference (p_k >= threshold), one more
 * backbone forward per step, instead of the batch's mean reward: a hard image
 * is then not punished for being hard, only for a draw worse than its
 * greedy mask, so the policy learns which blocks each input needs.
 * local_grad (with policy_only): instead of REINFORCE, each decision's
 * gradient is the difference of the image's reward with that block run and
 * skipped, the other decisions as drawn (one more backbone forward per block
 * per step): the exact derivative of the expected reward in that decision's
 * probability given the others, where REINFORCE credits every decision of an
 * image with the image's whole reward.
 * max_run < 1: running block k costs price_k, subtracted from the reward of
 * every image that runs it; each price starts at 0 and moves after every step
 * by 0.05 * (share of the batch whose p_k >= threshold - max_run), never below
 * 0. The expected reward alone has one best mask for nearly every image when
 * the blocks are interchangeable; a block the policy would run for everyone
 * then gets dearer until it is dropped for the images that need it least. */
typedef struct adnn_blockdrop_train {
    float penalty;     /* reward of a wrong prediction is -penalty (default 10) */
    float explore;     /* in [0.5, 1]: the policy's weight in q (default 0.8) */
    int policy_only;   /* the backbone frozen, only the policy learns (default 0) */
    int self_critical; /* baseline: each image's greedy-mask reward (default 0: batch mean) */
    int local_grad;    /* each decision tried both ways, no REINFORCE (default 0) */
    float max_run;     /* in (0, 1]: the share of images that may run a block (default 1) */
} adnn_blockdrop_train_t;

/* The defaults above. */
adnn_blockdrop_train_t adnn_blockdrop_train_default(void);

/* Sets the objective of later adnn_train_step calls (not saved with the
 * model). DP_ERR_INVALID for another family or local_grad without
 * policy_only, DP_ERR_RANGE for a negative or non-finite penalty or explore
 * outside [0.5, 1] or max_run outside (0, 1]. */
dp_err_t adnn_blockdrop_set_train(adnn_model_t *m, const adnn_blockdrop_train_t *o);

#endif
