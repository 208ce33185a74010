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

#endif
