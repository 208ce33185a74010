/* What the task layer's files share (internal to core/task). */
#ifndef DP_TASK_TASK_IMPL_H
#define DP_TASK_TASK_IMPL_H

#include "util/json.h"
#include "task/task.h"

/* err again, its detail now "WHAT: STRERROR: DETAIL" (what dp-perform
 * prints after its name, and a worker's failure reason). */
dp_err_t task_stage(dp_err_t err, const char *what);

/* Members naming the task: kind, task id, campaign, model, budget (unless
 * a MEASURE of the seeds), method, seeds range, device class. */
void task_json_identity(tj_writer_t *w, const dp_task_settings_t *s);

/* "provenance": {blas_core, gemm_path, threads, host}. */
void task_json_provenance(tj_writer_t *w);

/* The method's word: "seeds" for a MEASURE of the seeds, else perform's. */
const char *task_method_word(const dp_task_settings_t *s);

/* DP_ERR_CANCELLED when the hooks say stop. */
dp_err_t task_check_cancel(const perf_hooks_t *h);

/* Writes len bytes to path atomically (a temporary file beside it, then a
 * rename). */
dp_err_t task_write_file(const char *path, const char *data, size_t len);

/* Decodes a split into *out (new, caller destroys). */
typedef dp_err_t (*task_split_load_fn)(void *arg, dp_dataset_t **out);

/* The split of format whose files are images and labels (labels may be
 * NULL): from cache c when it holds those files unchanged, else decoded by
 * load and kept. *out is borrowed until task_cache_release. */
dp_err_t task_cache_get(dp_task_cache_t *c, int format, const char *images, const char *labels,
                        task_split_load_fn load, void *arg, const dp_dataset_t **out);

/* Gives back a split of task_cache_get; sets *d = NULL. */
void task_cache_release(dp_task_cache_t *c, const dp_dataset_t **d);

#endif
