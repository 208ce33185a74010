/* dp-measurer --once (once.h): one MEASURE outside any cluster, through
 * the same task function as a MEASURE task (dp_task_measure), so the file
 * it writes has the same format and fields. */
#include "once.h"

#include <stdio.h>
#include <string.h>

#include "adnn/adnn.h"
#include "data/dataset.h"

dp_err_t dp_measurer_once(const dp_measurer_once_t *o, dp_task_output_t *out)
{
    memset(out, 0, sizeof *out);
    adnn_model_t *m = NULL;
    dp_dataset_t *test = NULL;
    dp_err_t err = adnn_model_load(o->model, &m);
    if (err) return dp_err_set(err, "cannot load the model %s: %s", o->model, dp_err_detail());
    char img[4096], lbl[4096];
    snprintf(img, sizeof img, "%s/t10k-images-idx3-ubyte.gz", o->data_dir);
    snprintf(lbl, sizeof lbl, "%s/t10k-labels-idx1-ubyte.gz", o->data_dir);
    if ((err = dp_dataset_load_idx(img, lbl, &test))) {
        err = dp_err_set(err, "cannot load the seeds (the test split of %s): %s", o->data_dir,
                         dp_err_detail());
        goto done;
    }
    dp_task_settings_t s = *o->settings;
    s.kind = DP__V1__TASK_KIND__TASK_KIND_MEASURE;
    s.seeds = !o->samples;
    if (!*s.model_name) s.model_name = o->model;
    if (o->samples) {
        /* the identity of a MEASURE of a sample set: its method and budget */
        perf_samples_t *set = NULL;
        if ((err = perf_samples_load(o->samples, &set))) {
            err = dp_err_set(err, "cannot load the inputs: %s", dp_err_detail());
            goto done;
        }
        s.method = set->method;
        s.budget = set->budget;
        if (set->n > 0) {
            s.seed_begin = (uint32_t)set->seed_index[0];
            s.seed_end = (uint32_t)set->seed_index[set->n - 1] + 1;
        }
        perf_samples_destroy(&set);
    }
    dp_task_io_t io = {.model = m, .test = test, .samples = o->samples, .out = o->out};
    io.hooks = o->hooks;
    err = dp_task_measure(&s, &io, out);
done:
    dp_dataset_destroy(&test);
    adnn_model_destroy(&m);
    return err;
}
