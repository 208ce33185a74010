/* Task settings: the defaults, what a Task message sets, and the perform
 * configs they map to. The one place where a campaign's settings meet the
 * perform library's configs: dp-perform starts from the same defaults. */
#include <math.h>
#include <string.h>

#include "task/task.h"

dp_task_settings_t dp_task_settings_default(void)
{
    dp_task_settings_t s;
    memset(&s, 0, sizeof s);
    s.task_id = s.campaign = s.model_name = s.device_class = "";
    s.budget.norm = PERF_NORM_LINF;
    s.budget.eps = 0.09f;
    s.budget.l2_at_most = 1; /* Budget.l2_exact = false */
    s.method = PERF_METHOD_RANDOM;
    const perf_train_config_t t = perf_train_config_default();
    s.width = 16;
    s.batch = 32;
    s.epochs = 20;
    s.patience = 20;
    s.lr = 1e-3f;
    s.alpha = s.beta = 0.0f;
    s.res_slope = t.res_slope;
    s.seed = 1;
    s.train_begin = 0;
    s.train_end = 5500;
    s.heldout = 500;
    s.seed_begin = 0;
    s.seed_end = 1000;
    s.ilfo_iters = 300;
    s.ilfo_lr = 0.01f;
    s.progress_secs = 5;
    s.warmup = 10;
    s.repetitions = 30;
    s.min_time_s = 0.1;
    s.rounds = 1;
    s.energy_window_s = 1.0;
    s.pin_cpu_index = -1;
    s.probe = DP__V1__ENERGY_PROBE__ENERGY_PROBE_NONE;
    s.sysfs_root = s.probe_rails = s.rapl_domains = "";
    s.max_load = 1.5;
    s.idpb_exec = 0.9;
    s.idpb_ilatency = s.idpb_ienergy = NAN;
    return s;
}

static perf_method_t method_of(Dp__V1__Method m, int *seeds)
{
    *seeds = 0;
    switch (m) {
    case DP__V1__METHOD__METHOD_SEEDS:
        *seeds = 1;
        return PERF_METHOD_DEEPPERFORM;
    case DP__V1__METHOD__METHOD_DEEPPERFORM:
        return PERF_METHOD_DEEPPERFORM;
    case DP__V1__METHOD__METHOD_RANDOM:
        return PERF_METHOD_RANDOM;
    case DP__V1__METHOD__METHOD_ILFO:
        return PERF_METHOD_ILFO;
    case DP__V1__METHOD__METHOD_DEEPSLOTH:
        return PERF_METHOD_DEEPSLOTH;
    default:
        return (perf_method_t)-1;
    }
}

static const char *str_or(const char *s) { return s ? s : ""; }

static dp_err_t need(int ok, const char *what)
{
    return ok ? DP_OK : dp_err_set(DP_ERR_INVALID, "task: %s", what);
}

void dp_task_settings_measurer(dp_task_settings_t *s, const dp_task_measurer_t *m)
{
    if (m->probe) s->probe = m->probe;
    if (m->sysfs_root && *m->sysfs_root) s->sysfs_root = m->sysfs_root;
    if (m->probe_rails && *m->probe_rails) s->probe_rails = m->probe_rails;
    if (m->rapl_domains && *m->rapl_domains) s->rapl_domains = m->rapl_domains;
    if (m->pin_cpu >= 0) s->pin_cpu = 1, s->pin_cpu_index = m->pin_cpu;
    if (m->max_load > 0) s->max_load = m->max_load;
}

dp_err_t dp_task_settings_from_task(const Dp__V1__Task *t, dp_task_settings_t *out)
{
    dp_task_settings_t s = dp_task_settings_default();
    dp_err_t err;
    s.kind = t->kind;
    s.task_id = str_or(t->id);
    s.campaign = str_or(t->campaign);
    s.device_class = str_or(t->device_class);
    s.shard_index = t->shard_index;
    const int kind_ok = t->kind >= DP__V1__TASK_KIND__TASK_KIND_TRAIN &&
                        t->kind <= DP__V1__TASK_KIND__TASK_KIND_REPORT;
    if ((err = need(kind_ok, "kind is not TRAIN, GENERATE, BASELINE, MEASURE or REPORT")))
        return err;
    const int report = t->kind == DP__V1__TASK_KIND__TASK_KIND_REPORT;
    if (!report) {
        if ((err = need(t->model && t->model->name && *t->model->name, "model.name is missing")) ||
            (err = need(t->model->spec_uri && *t->model->spec_uri, "model.spec_uri is missing")) ||
            (err = need(t->model->weights_uri && *t->model->weights_uri,
                        "model.weights_uri is missing")) ||
            (err = need(t->dataset != NULL, "dataset is missing")))
            return err;
        s.model_name = t->model->name;
    }
    /* the method and whether the kind can use it */
    s.method = method_of(t->method, &s.seeds);
    switch (t->kind) {
    case DP__V1__TASK_KIND__TASK_KIND_GENERATE:
        err = need(t->method == DP__V1__METHOD__METHOD_DEEPPERFORM,
                   "a GENERATE task's method must be DEEPPERFORM");
        break;
    case DP__V1__TASK_KIND__TASK_KIND_BASELINE:
        err = need(t->method >= DP__V1__METHOD__METHOD_RANDOM &&
                       t->method <= DP__V1__METHOD__METHOD_DEEPSLOTH,
                   "a BASELINE task's method must be RANDOM, ILFO or DEEPSLOTH");
        break;
    case DP__V1__TASK_KIND__TASK_KIND_MEASURE:
        err = need((int)s.method >= 0, "a MEASURE task needs the method of its inputs");
        break;
    default:
        s.method = PERF_METHOD_DEEPPERFORM;
        break;
    }
    if (err) return err;
    /* the budget: every kind but REPORT and a MEASURE of the seeds */
    if (!report && !s.seeds) {
        if ((err = need(t->norm == DP__V1__NORM__NORM_LINF || t->norm == DP__V1__NORM__NORM_L2,
                        "norm must be LINF or L2")))
            return err;
        if (!(isfinite(t->eps) && t->eps >= 1e-9f && t->eps <= 1e6f))
            return dp_err_set(DP_ERR_INVALID, "task: eps %g is not in [1e-9, 1e6]", (double)t->eps);
        s.budget.norm = t->norm == DP__V1__NORM__NORM_L2 ? PERF_NORM_L2 : PERF_NORM_LINF;
        s.budget.eps = t->eps;
        s.budget.l2_at_most = !t->l2_exact;
    }
    /* the images */
    const Dp__V1__Dataset *d = t->dataset;
    if (d && d->train_range) {
        s.train_begin = d->train_range->begin;
        s.train_end = d->train_range->end; /* 0: to the end of the split */
    } else if (d) {
        s.train_begin = s.train_end = 0; /* absent: the whole split */
    }
    s.heldout = 0; /* automatic */
    if (t->kind >= DP__V1__TASK_KIND__TASK_KIND_GENERATE &&
        t->kind <= DP__V1__TASK_KIND__TASK_KIND_MEASURE) {
        if ((err = need(t->shard_begin < t->shard_end, "shard_begin must be below shard_end")))
            return err;
        s.seed_begin = t->shard_begin;
        s.seed_end = t->shard_end;
    }
    /* the generator */
    const Dp__V1__GeneratorSettings *g = t->generator;
    if (g) {
        if (g->width) s.width = (int)g->width->value;
        if (g->epochs) s.epochs = (int)g->epochs->value;
        if (g->batch_size) s.batch = (int)g->batch_size->value;
        if (g->lr) s.lr = g->lr->value;
        if (g->alpha_gan) s.alpha = g->alpha_gan->value;
        if (g->beta_per) s.beta = g->beta_per->value;
        if (g->patience) s.patience = (int)g->patience->value;
        s.seed = g->seed;
    }
    if (s.width < 8 || s.width > 256 || s.batch < 2 || s.batch > 4096 || s.epochs < 1 ||
        s.patience < 1 || !(s.lr > 0 && s.lr <= 1) || !(s.alpha >= 0) || !(s.beta >= 0))
        return dp_err_set(DP_ERR_INVALID,
                          "task: generator settings out of bounds (width %d, batch %d, epochs %d, "
                          "patience %d, lr %g)",
                          s.width, s.batch, s.epochs, s.patience, (double)s.lr);
    /* the baseline */
    const Dp__V1__Baseline *b = t->baseline;
    if (b && t->kind == DP__V1__TASK_KIND__TASK_KIND_BASELINE) {
        if (s.method == PERF_METHOD_ILFO) {
            if (b->iterations) s.ilfo_iters = (int)b->iterations->value;
            if (b->lr) s.ilfo_lr = b->lr->value;
        } else if (s.method == PERF_METHOD_DEEPSLOTH) {
            if (b->iterations) s.sloth_steps = (int)b->iterations->value;
            if (b->lr) s.sloth_lr = b->lr->value;
        }
    }
    /* measuring */
    const Dp__V1__MeasureSettings *m = t->measure;
    if (m) {
        if (m->warmup) s.warmup = (int)m->warmup->value;
        if (m->repetitions) s.repetitions = (int)m->repetitions->value;
        if (m->energy_window_s) s.energy_window_s = m->energy_window_s->value;
        if (m->min_time_s) s.min_time_s = m->min_time_s->value;
        if (m->idle_s) s.idle_s = m->idle_s->value;
        if (m->rounds) s.rounds = (int)m->rounds->value;
        s.pin_cpu = m->pin_cpu;
    }
    if (s.repetitions < 1 || s.warmup < 0)
        return dp_err_set(DP_ERR_INVALID, "task: measure.repetitions must be >= 1");
    if (t->device) {
        if (t->device->probe) s.probe = t->device->probe;
        if (t->device->samples && t->kind == DP__V1__TASK_KIND__TASK_KIND_MEASURE) {
            /* the class measures the first `samples` seeds of the test range */
            uint32_t first = d && d->test_range ? d->test_range->begin : 0;
            uint64_t before = s.seed_begin > first ? s.seed_begin - first : 0;
            uint64_t left = t->device->samples > before ? t->device->samples - before : 1;
            s.measure_max = left > UINT32_MAX ? UINT32_MAX : (uint32_t)left;
        }
    }
    /* verdicts */
    const Dp__V1__Thresholds *th = t->thresholds;
    if (th && th->exec_fraction) s.idpb_exec = th->exec_fraction->value;
    if (th && th->iflops_percent) s.idpb_iflops = th->iflops_percent->value;
    if (th && th->latency_ms) s.idpb_latency_ms = th->latency_ms->value;
    if (th && th->energy_mj) s.idpb_energy_mj = th->energy_mj->value;
    if (th && th->ilatency_percent) s.idpb_ilatency = th->ilatency_percent->value;
    if (th && th->ienergy_percent) s.idpb_ienergy = th->ienergy_percent->value;
    *out = s;
    return DP_OK;
}

perf_train_config_t dp_task_train_config(const dp_task_settings_t *s)
{
    perf_train_config_t c = perf_train_config_default();
    c.budget = s->budget;
    c.width = s->width;
    c.batch = s->batch;
    c.epochs = s->epochs;
    c.patience = s->patience;
    c.alpha = s->alpha;
    c.beta = s->beta;
    c.lr = s->lr;
    c.lr_step1 = s->lr_step1;
    c.lr_step2 = s->lr_step2;
    c.res_slope = s->res_slope;
    c.adv_margin = s->adv_margin;
    c.adv_hinge = s->adv_hinge;
    c.seed = s->seed;
    c.time_limit_s = s->time_limit_s;
    return c;
}

perf_ilfo_config_t dp_task_ilfo_config(const dp_task_settings_t *s)
{
    perf_ilfo_config_t c = perf_ilfo_config_default();
    c.iters = s->ilfo_iters;
    c.lr = s->ilfo_lr;
    c.batch = s->batch;
    c.progress_every = s->progress_secs;
    return c;
}

perf_sloth_config_t dp_task_sloth_config(const dp_task_settings_t *s)
{
    perf_sloth_config_t c = perf_sloth_config_default();
    c.batch = s->batch;
    c.seed = s->seed;
    if (s->budget.norm == PERF_NORM_LINF) {
        if (s->sloth_steps > 0) c.linf_steps = s->sloth_steps;
        if (s->sloth_lr > 0) c.linf_step = s->sloth_lr;
    } else {
        if (s->sloth_steps > 0) c.l2_steps = s->sloth_steps;
        if (s->sloth_lr > 0) c.l2_lr_max = s->sloth_lr;
    }
    c.progress_every = s->progress_secs;
    return c;
}

dp_err_t dp_task_train_split(const dp_task_settings_t *s, uint32_t n, uint32_t *train0,
                             uint32_t *ntrain, uint32_t *val0, uint32_t *nval)
{
    uint32_t b = s->train_begin, e = s->train_end ? s->train_end : n;
    if (e > n || b >= e)
        return dp_err_set(DP_ERR_RANGE, "training images [%u, %u) exceed the %u images", b, e, n);
    uint32_t len = e - b, hv = s->heldout;
    if (!hv) {
        hv = len / 10;
        if (hv > DP_TASK_HELDOUT_MAX) hv = DP_TASK_HELDOUT_MAX;
        if (hv < 1) hv = 1;
    }
    if (hv >= len || len - hv < (uint32_t)s->batch)
        return dp_err_set(DP_ERR_RANGE,
                          "training images [%u, %u) less %u held out leave fewer than a batch (%d)",
                          b, e, hv, s->batch);
    *train0 = b;
    *ntrain = len - hv;
    *val0 = e - hv;
    *nval = hv;
    return DP_OK;
}

const char *dp_task_kind_name(Dp__V1__TaskKind k)
{
    static const char *const names[] = {"unspecified", "train",   "generate",
                                        "baseline",    "measure", "report"};
    return (unsigned)k < 6 ? names[k] : "unspecified";
}
