/* Seed workers (workers.h): contiguous parts of the seeds on threads of their
 * own, each with a copy of the model, OpenBLAS at one thread meanwhile; the
 * first failure wins and stops the rest. */
#include "perform/workers.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/blas.h"
#include "nn/gemm.h"

typedef struct slot {
    perf_workers_t *w;
    perf_part_t part;
    perf_part_fn fn;
    void *arg;
    pthread_t tid;
} slot_t;

struct perf_workers {
    int parts, n, batch, batches;
    adnn_model_t **models; /* [0] is the caller's (borrowed), the rest copies */
    slot_t *slots;
    int saved_threads; /* OpenBLAS threads to restore; 0: left as it was */
    atomic_int stop;
    pthread_mutex_t lock; /* guards err and msg */
    dp_err_t err;
    char msg[512];
};

dp_err_t perf_workers_new(adnn_model_t *m, int workers, int n, int batch, perf_workers_t **out)
{
    *out = NULL;
    perf_workers_t *w = calloc(1, sizeof *w);
    if (!w) return dp_err_set(DP_ERR_NOMEM, "seed workers: out of memory");
    w->n = n > 0 ? n : 0;
    w->batch = batch > 0 ? batch : 1;
    w->batches = (int)(((long)w->n + w->batch - 1) / w->batch);
    w->parts = workers < w->batches ? workers : w->batches;
    if (w->parts < 1) w->parts = 1;
    atomic_init(&w->stop, 0);
    if (pthread_mutex_init(&w->lock, NULL) != 0) {
        free(w);
        return dp_err_set(DP_ERR_NOMEM, "seed workers: cannot create a mutex");
    }
    w->models = calloc((size_t)w->parts, sizeof *w->models);
    w->slots = calloc((size_t)w->parts, sizeof *w->slots);
    dp_err_t err = DP_OK;
    if (!w->models || !w->slots) {
        err = dp_err_set(DP_ERR_NOMEM, "seed workers: out of memory for %d workers", w->parts);
        goto fail;
    }
    w->models[0] = m;
    for (int k = 1; k < w->parts; k++) {
        if ((err = adnn_model_clone(m, &w->models[k]))) {
            char why[256]; /* dp_err_set overwrites the detail it would read */
            snprintf(why, sizeof why, "%s", dp_err_detail());
            err = dp_err_set(err, "seed workers: cannot copy the model for worker %d of %d: %s",
                             k + 1, w->parts, why);
            goto fail;
        }
    }
    if (w->parts > 1) {
        int saved = nn_get_threads();
        if (saved != 1) {
            nn_set_threads(1);
            w->saved_threads = saved;
        }
    }
    *out = w;
    return DP_OK;
fail:
    perf_workers_destroy(&w);
    return err;
}

int perf_workers_parts(const perf_workers_t *w) { return w->parts; }

void perf_workers_destroy(perf_workers_t **pw)
{
    if (!pw || !*pw) return;
    perf_workers_t *w = *pw;
    if (w->models)
        for (int k = 1; k < w->parts; k++) adnn_model_destroy(&w->models[k]);
    if (w->saved_threads > 0) nn_set_threads(w->saved_threads);
    pthread_mutex_destroy(&w->lock);
    free(w->models);
    free(w->slots);
    free(w);
    *pw = NULL;
}

/* Keeps the first failure (with its part in the detail) and stops the rest. */
static void record(perf_workers_t *w, const perf_part_t *p, dp_err_t err, const char *detail)
{
    pthread_mutex_lock(&w->lock);
    if (!w->err) {
        w->err = err;
        snprintf(w->msg, sizeof w->msg, "seeds [%d, %d) (worker %d of %d): %s", p->i0, p->i0 + p->n,
                 p->index + 1, w->parts, detail);
    }
    pthread_mutex_unlock(&w->lock);
    atomic_store(&w->stop, 1);
}

static void run_slot(slot_t *s)
{
    dp_err_t err = s->fn(&s->part, s->arg);
    if (err) record(s->w, &s->part, err, dp_err_detail());
}

static void *slot_main(void *arg)
{
    run_slot(arg);
    return NULL;
}

dp_err_t perf_workers_run(perf_workers_t *w, perf_part_fn fn, void *arg)
{
    atomic_store(&w->stop, 0);
    w->err = DP_OK;
    w->msg[0] = '\0';
    for (int k = 0; k < w->parts; k++) {
        slot_t *s = &w->slots[k];
        s->w = w, s->fn = fn, s->arg = arg;
        s->part.m = w->models[k];
        int b0, nb = nn_split_part(w->batches, w->parts, k, &b0); /* whole batches */
        long end = (long)(b0 + nb) * w->batch;
        s->part.i0 = b0 * w->batch;
        s->part.n = (int)(end < w->n ? end : w->n) - s->part.i0;
        s->part.index = k;
        s->part.stop = &w->stop;
    }
    if (w->parts == 1) return fn(&w->slots[0].part, arg);
    int started = 1;
    for (; started < w->parts; started++) {
        int rc = pthread_create(&w->slots[started].tid, NULL, slot_main, &w->slots[started]);
        if (rc != 0) {
            dp_err_set(DP_ERR_NOMEM, "cannot start a thread: %s", strerror(rc));
            record(w, &w->slots[started].part, DP_ERR_NOMEM, dp_err_detail());
            break;
        }
    }
    if (!atomic_load(&w->stop)) run_slot(&w->slots[0]);
    for (int k = 1; k < started; k++) pthread_join(w->slots[k].tid, NULL);
    if (w->err) return dp_err_set(w->err, "%s", w->msg);
    return DP_OK;
}
