/* Seed workers for the per-input methods (ILFO, DeepSloth) and the measuring
 * step: seeds are independent, so W workers split them into W contiguous
 * parts and run the method's usual per-batch loop on their own part, each on
 * its own thread with its own copy of the model (adnn_model_clone), writing a
 * disjoint range of the sample set. The caller's thread count
 * (nn_set_threads, per thread) is set to one while the workers run and
 * restored afterwards: the workers take the other cores, and worker threads
 * start at one.
 *
 * Parts are runs of whole batches (nn_split_part over the batches), so each
 * batch holds the same seeds whatever W: an input's bits do depend on the
 * other inputs of its batch (BLAS blocking; at 1e-7, which L2 steps carry
 * into x'), so splitting seeds anywhere else would make x' depend on W.
 *
 * Part 0 runs on the calling thread with the caller's model; parts 1..W-1 on
 * threads of their own with copies. With one part (W = 1, or one batch)
 * nothing is copied, started or changed: the whole range runs on the caller,
 * as before.
 *
 * Internal to core/perform. */
#ifndef DP_PERFORM_WORKERS_H
#define DP_PERFORM_WORKERS_H

#include <stdatomic.h>

#include "adnn/adnn.h"
#include "util/err.h"

/* The part a worker runs. */
typedef struct perf_part {
    adnn_model_t *m;        /* this part's model; borrowed, for this worker only */
    int i0, n;              /* seeds [i0, i0 + n); i0 is a multiple of the batch */
    int index;              /* 0..parts-1 */
    const atomic_int *stop; /* set when another part failed: stop at the next batch */
} perf_part_t;

/* Nonzero when the part should stop early (another part failed; its own
 * results will not be used). */
static inline int perf_part_stopped(const perf_part_t *p) { return atomic_load(p->stop) != 0; }

/* Runs one part; a failure sets the error detail on the calling thread as
 * usual (dp_err_set). */
typedef dp_err_t (*perf_part_fn)(const perf_part_t *part, void *arg);

typedef struct perf_workers perf_workers_t;

/* Workers for n seeds in batches of `batch` (the last one shorter) on model
 * m (borrowed, must outlive the object and not be used elsewhere while it
 * runs): min(workers, batches) parts, at least 1; makes the copies of m and
 * sets OpenBLAS to one thread when there is more than one. Returns a new
 * object in *out, caller destroys. */
dp_err_t perf_workers_new(adnn_model_t *m, int workers, int n, int batch, perf_workers_t **out);

/* The number of parts. */
int perf_workers_parts(const perf_workers_t *w);

/* fn(part, arg) on every part at once; returns when all are done. The first
 * part to fail stops the others at their next batch and its error is the
 * result, with a detail naming the part ("seeds [i0, i1) (worker k of W):
 * ..."); with one part, fn's own error and detail. */
dp_err_t perf_workers_run(perf_workers_t *w, perf_part_fn fn, void *arg);

/* Destroys the copies and restores OpenBLAS's thread count. Accepts NULL;
 * sets *w = NULL. */
void perf_workers_destroy(perf_workers_t **w);

#endif
