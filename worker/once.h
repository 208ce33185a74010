/* dp-measurer --once: measure a sample set (and its seeds), or the seeds
 * alone, on this machine outside any cluster, writing the measure.json a
 * MEASURE task writes (docs/MEASURE.md). */
#ifndef DP_WORKER_ONCE_H
#define DP_WORKER_ONCE_H

#include "task/task.h"

typedef struct dp_measurer_once {
    const char *model;    /* prefix: MODEL.pb + MODEL.safetensors */
    const char *samples;  /* a sample set; NULL: the seeds [seed_begin, seed_end) alone */
    const char *data_dir; /* Fashion-MNIST: the seeds are its test split */
    const char *out;      /* measure.json */
    const dp_task_settings_t *settings; /* measuring settings and budgets */
    perf_hooks_t hooks;
} dp_measurer_once_t;

/* Loads the model and the test split, runs dp_task_measure. *out as
 * dp_task_measure's (clear it after). Errors name what could not load. */
dp_err_t dp_measurer_once(const dp_measurer_once_t *o, dp_task_output_t *out);

#endif
