/* The task layer: one function per task kind (TRAIN, GENERATE, BASELINE,
 * MEASURE, REPORT), shared by dp-perform and the pipeline's workers, and the
 * one place that maps campaign and task settings to the perform configs.
 *
 * Two levels:
 * - dp_task_run(task message, env): fetches the task's inputs from the
 *   object store into a scratch directory, runs the kind's function, uploads
 *   its artifacts under the task's output_prefix and returns their keys and
 *   a JSON summary. A worker calls this.
 * - dp_task_train / _generate / _baseline / _measure / _report: the same
 *   work on inputs already on this machine (a loaded model, a loaded
 *   dataset, local file paths). dp-perform calls these with its flags'
 *   settings; dp_task_run calls them after fetching.
 *
 * Settings (dp_task_settings_t) are the task layer's own struct, built from
 * a Task message (dp_task_settings_from_task) or from a CLI's flags on top
 * of dp_task_settings_default(): the defaults below are the only defaults.
 *
 * Artifacts under a task's output_prefix P (store keys):
 *   TRAIN     P/generator.safetensors; the checkpoint at the task's
 *             resume_key (uploaded after every epoch, resumed from when
 *             present, so a re-leased TRAIN goes on where the last attempt's
 *             last epoch ended)
 *   GENERATE  P/samples.safetensors (the generator at input_keys[0] +
 *   BASELINE  "/generator.safetensors")
 *   MEASURE   P/measure.json (docs/MEASURE.md: per input latency median
 *             and spread, energy, FLOPs, I-metrics and IDPB verdicts against
 *             its seed; per group percentiles with bounds, correlations;
 *             provenance); the inputs are the seeds (method SEEDS) or
 *             input_keys[0] + "/samples.safetensors" measured with their
 *             seeds (the test split) interleaved
 *   REPORT    P/summary.json: every result.json under the campaign's prefix,
 *             aggregated per model, budget and method
 *   every     P/result.json: the summary JSON the result carries
 *
 * Images. The generator trains on the training split's range
 * [train_begin, train_end) (the campaign's dataset.train_range; end 0: to
 * the end of the split), of which the LAST `heldout` images are held out to
 * pick the best epoch (heldout 0: 10% of the range, at most 500, at least
 * 1) and the rest are trained on. Seeds are the test split's images
 * [seed_begin, seed_end) (a task's shard). dp-perform: --train-n images from
 * 0, then --val-n held out (train range [0, train-n + val-n), heldout
 * val-n); seeds [--seed-offset, + --seeds).
 *
 * Bits. GENERATE runs the generator in batches whose slots follow the
 * seed's index in the test split (seed i in slot i mod batch), so a seed
 * gives the same x' whatever shard holds it; BASELINE batches start at the
 * shard's first seed, so its x' are the same for the same shards (and any
 * number of threads). docs/NUMERICS.md says what is bit-identical.
 *
 * Threads: the functions run on the calling thread with its nn thread count
 * (dp_task_run sets it from env->threads for the call and restores it);
 * ILFO, DeepSloth and the measuring step of GENERATE/BASELINE use that many
 * seed workers of one thread each.
 *
 * Errors: dp_err_t with a detail that names the stage ("cannot load the
 * generator: not found: PATH"); DP_ERR_CANCELLED when a hook cancelled.
 * Nothing here prints. */
#ifndef DP_TASK_TASK_H
#define DP_TASK_TASK_H

#include <stddef.h>
#include <stdint.h>

#include "adnn/adnn.h"
#include "data/dataset.h"
#include "dp/v1/wire.pb-c.h"
#include "perform/hooks.h"
#include "perform/perform.h"
#include "store/store.h"
#include "util/err.h"

#define DP_TASK_HELDOUT_MAX 500 /* held-out images at most, when the count is automatic */
#define MEASURE_MAX_ROUNDS  64  /* passes of a MEASURE over its inputs at most */

/* ------------------------------------------------------------- settings */

typedef struct dp_task_settings {
    /* What the task is about (borrowed strings; "" when not known). */
    Dp__V1__TaskKind kind;
    const char *task_id, *campaign;
    const char *model_name; /* the name sample sets and summaries carry */
    const char *device_class;
    uint32_t shard_index;

    /* The budget. l2_at_most = !Budget.l2_exact: by default an L2 delta is
     * scaled down to the ball only when it is outside (at most eps); the
     * published code's "exactly eps" is l2_at_most 0 (dp-perform
     * --l2-exact). Default Linf 0.09. */
    perf_budget_t budget;
    perf_method_t method; /* GENERATE: deepperform; BASELINE: its method (default random);
                             MEASURE: its inputs' */
    int seeds;            /* MEASURE: the inputs are the clean seeds (method SEEDS) */

    /* The generator and its training (campaign GeneratorSettings). */
    int width;           /* 16 (the paper's 64 is for 3x32x32) */
    int batch;           /* 32: training batch, the generator's batch when generating, and
                            the baselines' batch */
    int epochs;          /* 20 (the paper: 100) */
    int patience;        /* 20 */
    float lr;            /* 1e-3; x0.1 from lr_step1, x0.01 from lr_step2 */
    int lr_step1;        /* 0: 50% of epochs */
    int lr_step2;        /* 0: 80% of epochs */
    float alpha, beta;   /* L_GAN and L_per weights: 0, 0 (the published code) */
    float res_slope;     /* residual blocks' LeakyReLU slope: 0.01 (the published code: 1) */
    float adv_margin;    /* 0: L_adv over every decision (the published loss); > 0: only
                            those with p_k below it (perf_train_config_t) */
    int adv_hinge;       /* 0: -log p_k terms; 1: ILFO's margin - p_k (needs adv_margin) */
    uint64_t seed;       /* 1: generator init and shuffles, random noise, DeepSloth's start.
                            From a campaign: generator.seed as given (absent is 0) */
    double time_limit_s; /* 0: none */

    /* Images (see the file comment). */
    uint32_t train_begin, train_end; /* default [0, 5500): 5000 trained on, 500 held out */
    uint32_t heldout;                /* 0: automatic */
    uint32_t seed_begin, seed_end;   /* default [0, 1000) */

    /* Baselines (campaign Baseline). */
    int ilfo_iters;    /* 300 */
    float ilfo_lr;     /* 0.01 */
    int sloth_steps;   /* 0: 30 (Linf) or 550 (L2) */
    float sloth_lr;    /* 0: 0.002 (Linf step) or 1 (L2 starting lr) */
    int progress_secs; /* seconds between ILFO/DeepSloth progress reports: 5 */

    /* Measuring (campaign MeasureSettings, DeviceClass; docs/MEASURE.md). */
    int warmup;             /* 10 untimed forwards of each input before its timed ones */
    int repetitions;        /* 30: timed forwards per input at least ... */
    double min_time_s;      /* 0.1: ... and lasting at least this long, ... */
    int rounds;             /* 1: ... spread over this many passes over every input
                               (each a shuffled order of its own; MEASURE_MAX_ROUNDS
                               at most) */
    double energy_window_s; /* 1: energy from windows at least this long, per input */
    double idle_s;          /* 0: seconds of idle power measured first and subtracted */
    int pin_cpu;            /* 0; 1: pin the measuring thread to one CPU ... */
    int pin_cpu_index;      /* ... this one; -1 (default): the CPU it runs on */
    Dp__V1__EnergyProbe probe;
    const char *sysfs_root;   /* prefix of the probes' and governor's /sys, /proc; "" real */
    const char *probe_rails;  /* INA3221 rails; "" the probe's default */
    const char *rapl_domains; /* RAPL domains; "" the probe's default */
    double max_load;          /* warn when the load average is above this: 1.5 */
    uint32_t measure_max;     /* measure at most this many inputs (DeviceClass.samples counted
                                 from the test range's start); 0: all */

    /* Verdicts (campaign Thresholds). Device budgets: an input is an IDPB in
     * latency when its median latency > idpb_latency_ms or its I-Latency >=
     * idpb_ilatency; the same for energy. 0 (NAN for the percentages):
     * unused. */
    double idpb_exec;   /* IDPB when the executed fraction >= this: 0.9 */
    double idpb_iflops; /* 0: unused */
    double idpb_latency_ms, idpb_energy_mj;
    double idpb_ilatency, idpb_ienergy;

    int threads; /* compute threads; 0: every online CPU */
} dp_task_settings_t;

/* The defaults above. */
dp_task_settings_t dp_task_settings_default(void);

/* The settings of task t: the defaults, then what t carries (strings
 * borrowed from t, valid while it is). DP_ERR_INVALID (detail names the
 * field) for a task that cannot run: no model for a kind that needs one, a
 * norm or method the kind cannot use, eps not finite > 0, a shard with
 * begin > end. */
dp_err_t dp_task_settings_from_task(const Dp__V1__Task *t, dp_task_settings_t *out);

struct dp_task_measurer;
/* A measurer's own settings over s's (see dp_task_measurer_t). */
void dp_task_settings_measurer(dp_task_settings_t *s, const struct dp_task_measurer *m);

/* The perform configs of s: the only mapping from settings to configs. */
perf_train_config_t dp_task_train_config(const dp_task_settings_t *s);
perf_ilfo_config_t dp_task_ilfo_config(const dp_task_settings_t *s);
perf_sloth_config_t dp_task_sloth_config(const dp_task_settings_t *s);

/* The images a training uses out of a split of n images: trained on
 * [*train0, *train0 + *ntrain), held out [*val0, *val0 + *nval) (the end of
 * the range). DP_ERR_RANGE when the range exceeds n or leaves fewer than
 * batch images to train on (detail names both). */
dp_err_t dp_task_train_split(const dp_task_settings_t *s, uint32_t n, uint32_t *train0,
                             uint32_t *ntrain, uint32_t *val0, uint32_t *nval);

/* Task kind and method words ("train", "deepperform"), as in keys and JSON. */
const char *dp_task_kind_name(Dp__V1__TaskKind k);

/* ------------------------------------------------------------- inputs */

/* A model from a spec file (dp.v1.ModelSpec) and a weights file. The
 * weights are checked against the spec before the model is allocated.
 * Returns a new object in *out, caller destroys. */
dp_err_t dp_task_model_load(const char *spec_path, const char *weights_path, adnn_model_t **out);

/* DP_OK when the images of d have m's input shape, else DP_ERR_MISMATCH
 * "the images in WHAT are CxHxW, the model expects CxHxW". */
dp_err_t dp_task_check_shape(const adnn_model_t *m, const dp_dataset_t *d, const char *what);

/* ------------------------------------------------------------- one task on local inputs */

/* What a kind's function produced, beside its artifact file. */
typedef struct dp_task_output {
    char *summary_json;        /* the result's JSON summary; new, caller frees */
    perf_train_result_t train; /* TRAIN */
    perf_samples_t *samples;   /* GENERATE, BASELINE: the set written (when keep_samples) */
    double seconds;            /* wall time of the work */
} dp_task_output_t;

/* Frees what o holds and zeroes it. */
void dp_task_output_clear(dp_task_output_t *o);

/* The inputs and outputs of one local run. */
typedef struct dp_task_io {
    adnn_model_t *model;       /* borrowed; not used elsewhere meanwhile */
    const dp_dataset_t *train; /* TRAIN: the training split */
    const dp_dataset_t *test;  /* GENERATE, BASELINE, MEASURE of the seeds: the test split */
    const char *generator;     /* GENERATE: the generator file */
    const char *samples;       /* MEASURE of generated inputs: their sample set (NULL: the
                                  seeds) */
    const char *checkpoint;    /* TRAIN: resumed from when present, written every epoch;
                                  NULL: none */
    const char *out;           /* the artifact: generator, sample set or measure.json */
    perf_hooks_t hooks;
    int keep_samples;          /* GENERATE, BASELINE: leave the set in output->samples */
    int budget_from_generator; /* GENERATE: the generator file's budget (dp-perform); 0: it
                                  must be the settings' (DP_ERR_MISMATCH otherwise) */
} dp_task_io_t;

/* Each writes io->out and fills *out (zeroed first; clear it after). The
 * generator/sample set is written only when the work succeeded. */
dp_err_t dp_task_train(const dp_task_settings_t *s, const dp_task_io_t *io, dp_task_output_t *out);
dp_err_t dp_task_generate(const dp_task_settings_t *s, const dp_task_io_t *io,
                          dp_task_output_t *out);
dp_err_t dp_task_baseline(const dp_task_settings_t *s, const dp_task_io_t *io,
                          dp_task_output_t *out);
dp_err_t dp_task_measure(const dp_task_settings_t *s, const dp_task_io_t *io,
                         dp_task_output_t *out);

/* The summary JSON of a sample set (what GENERATE and BASELINE return):
 * identity, perf_summarize's figures, provenance. New string, caller frees
 * (NULL: no memory). */
char *dp_task_samples_json(const dp_task_settings_t *s, const perf_samples_t *set);

/* REPORT on texts already fetched: results[i] the result.json of key
 * keys[i] (a MEASURE result's measure.json in measures[i], else NULL).
 * Unreadable entries are skipped and counted. *json: new string, caller
 * frees. */
dp_err_t dp_task_report(const dp_task_settings_t *s, size_t n, const char *const *keys,
                        const char *const *results, const char *const *measures, char **json);

/* ------------------------------------------------------------- one task message */

/* Decoded dataset splits kept across the tasks of one process (cache.c):
 * a TRAIN decodes the training split once, not once per task, and every
 * GENERATE, BASELINE and MEASURE of the seeds shares one test split. Keyed
 * by the split's local files (format, path, size, modification time), so a
 * replaced file is decoded again. Unborrowed splits are dropped, least
 * recently used first, past max_bytes (0: DP_TASK_CACHE_BYTES).
 * Thread-safe; the splits are read-only. */
#define DP_TASK_CACHE_BYTES (1024u << 20)
typedef struct dp_task_cache dp_task_cache_t;

typedef struct dp_task_cache_stats {
    uint64_t hits, misses, evictions, uncached;
    size_t bytes;
} dp_task_cache_stats_t;

dp_err_t dp_task_cache_new(size_t max_bytes, dp_task_cache_t **out);
/* Not while a task borrows from it. Accepts NULL and *c == NULL. */
void dp_task_cache_destroy(dp_task_cache_t **c);
void dp_task_cache_stats(dp_task_cache_t *c, dp_task_cache_stats_t *out);

/* A measurer's own settings (dp-measurer's flags): its probe and sysfs
 * root, pinning. Strings borrowed. */
typedef struct dp_task_measurer {
    Dp__V1__EnergyProbe probe;              /* 0 (UNSPECIFIED): the device class's */
    const char *sysfs_root;                 /* NULL or "": the real one */
    const char *probe_rails, *rapl_domains; /* NULL or "": the probe's defaults */
    int pin_cpu;                            /* -1: as the campaign says; >= 0: pin to this CPU */
    double max_load;                        /* 0: the default */
} dp_task_measurer_t;

typedef struct dp_task_env {
    dp_store_t *store;   /* opened on the task's store_uri; NULL: dp_task_run opens one
                            (settings from the environment) for the call */
    const char *scratch; /* an existing directory: fetched inputs are cached in
                            SCRATCH/cache (by URI, checked against the object's size and
                            ETag), each task works in a directory of its own below it,
                            removed when it ends */
    int threads;         /* the calling thread's nn thread count for the call; 0: every
                            online CPU, < 0: as the thread has it */
    perf_hooks_t hooks;  /* progress and cancel (TRAIN's epoch_end is dp_task_run's own:
                            it uploads the checkpoint, then calls this one if set) */
    const dp_store_settings_t *store_settings; /* for stores dp_task_run opens; NULL: env */
    /* What a measurer knows of its machine, over the task's DeviceClass and
     * MeasureSettings (NULL: the task's as they are). */
    const struct dp_task_measurer *measurer;
    dp_task_cache_t *cache; /* decoded splits across tasks; NULL: each task decodes its own */
} dp_task_env_t;

typedef struct dp_task_result {
    char **artifact_keys; /* store keys written, relative to the task's store */
    size_t n_artifact_keys;
    char *summary_json;
    double seconds;
    int resumed_from; /* TRAIN: epochs taken from the checkpoint (0: fresh) */
} dp_task_result_t;

/* Frees what r holds and zeroes it. */
void dp_task_result_clear(dp_task_result_t *r);

/* Runs task t (see the file comment). *out is zeroed first, filled on
 * success; clear it after either way. */
dp_err_t dp_task_run(const Dp__V1__Task *t, const dp_task_env_t *env, dp_task_result_t *out);

#endif
