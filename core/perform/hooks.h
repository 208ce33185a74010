/* What long-running perform work (training, ILFO, DeepSloth) reports and
 * asks while it runs, instead of printing or reading a global: the library
 * never prints, and one process may run a training and a
 * measurement side by side (dp-submit --local), each with its own hooks.
 *
 * Every member may be NULL (a zeroed struct: no progress, never cancelled,
 * nothing at epoch ends). The hooks are called on the thread that called
 * the perform function (never on its seed workers), so ctx needs no lock
 * against the work itself; a hook that another thread also reads (a
 * worker's socket thread) locks for itself. */
#ifndef DP_PERFORM_HOOKS_H
#define DP_PERFORM_HOOKS_H

#include <stdint.h>

#include "util/err.h"

/* What cancelled() returns. */
#define PERF_GO_ON 0
#define PERF_STOP_AFTER_EPOCH                                                                      \
    1 /* training: finish the epoch, checkpoint, stop; ILFO and                                    \
         DeepSloth: stop at the next batch */
#define PERF_STOP_NOW                                                                              \
    2 /* stop at the next batch (a training's epoch in progress is                                 \
         lost; its last checkpoint stands) */

typedef struct perf_hooks {
    /* How far a stage is: stage "train" (done epochs of total), "ilfo" and
     * "deepsloth" (seeds), others from core/task; line is a readable line
     * without a newline (what dp-perform prints), borrowed for the call. */
    void (*progress)(void *ctx, const char *stage, uint64_t done, uint64_t total, const char *line);
    /* PERF_GO_ON, PERF_STOP_AFTER_EPOCH or PERF_STOP_NOW; polled between
     * batches, so it must be cheap (an atomic load). The work then returns
     * DP_ERR_CANCELLED. */
    int (*cancelled)(void *ctx);
    /* Training: called after the checkpoint of a finished epoch (1-based)
     * was written to checkpoint_path (so a worker can upload it); an error
     * ends the training with it. */
    dp_err_t (*epoch_end)(void *ctx, int epoch, const char *checkpoint_path);
    void *ctx;
} perf_hooks_t;

/* The hooks' answers, NULL members taken as "nothing". */
static inline int perf_hooks_cancelled(const perf_hooks_t *h)
{
    return h && h->cancelled ? h->cancelled(h->ctx) : PERF_GO_ON;
}

static inline void perf_hooks_progress(const perf_hooks_t *h, const char *stage, uint64_t done,
                                       uint64_t total, const char *line)
{
    if (h && h->progress) h->progress(h->ctx, stage, done, total, line);
}

#endif
