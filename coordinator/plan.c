/* A campaign's tasks, ids, keys and dependencies (plan.h). */
#include "plan.h"

#include <stdio.h>
#include <string.h>

uint32_t dp_plan_budgets(const Dp__V1__Campaign *c)
{
    uint32_t n = 0;
    for (size_t i = 0; i < c->n_budgets; i++) n += (uint32_t)c->budgets[i]->n_eps;
    return n;
}

dp_plan_budget_t dp_plan_budget_at(const Dp__V1__Campaign *c, uint32_t k)
{
    for (size_t i = 0; i < c->n_budgets; i++) {
        const Dp__V1__Budget *b = c->budgets[i];
        if (k < b->n_eps)
            return (dp_plan_budget_t){b->norm, b->eps[k],
                                      b->norm == DP__V1__NORM__NORM_L2 && b->l2_exact};
        k -= (uint32_t)b->n_eps;
    }
    return (dp_plan_budget_t){DP__V1__NORM__NORM_UNSPECIFIED, 0.0f, 0};
}

static uint32_t shard_size(const Dp__V1__Campaign *c)
{
    const uint32_t s = c->datasets[0]->shard_size;
    return s ? s : DP_PLAN_SHARD_DEFAULT;
}

static void seed_range(const Dp__V1__Campaign *c, uint32_t *begin, uint32_t *end)
{
    const Dp__V1__IndexRange *r = c->datasets[0]->test_range;
    *begin = r ? r->begin : 0;
    *end = r ? r->end : 0;
}

uint32_t dp_plan_shards(const Dp__V1__Campaign *c)
{
    uint32_t b, e;
    seed_range(c, &b, &e);
    const uint32_t s = shard_size(c);
    return e > b ? (e - b + s - 1) / s : 0;
}

void dp_plan_shard_range(const Dp__V1__Campaign *c, uint32_t k, uint32_t *begin, uint32_t *end)
{
    uint32_t b, e;
    seed_range(c, &b, &e);
    const uint32_t s = shard_size(c);
    *begin = b + k * s;
    *end = *begin + s < e ? *begin + s : e;
}

/* Shards a device class measures: those holding its first `samples` seeds. */
static uint32_t measured_shards(const Dp__V1__Campaign *c, const Dp__V1__DeviceClass *d)
{
    const uint32_t all = dp_plan_shards(c);
    if (!d->samples) return all;
    const uint32_t s = shard_size(c), n = (d->samples + s - 1) / s;
    return n < all ? n : all;
}

static int early_exit(Dp__V1__ModelFamily f)
{
    return f == DP__V1__MODEL_FAMILY__MODEL_FAMILY_SDN_RESNET ||
           f == DP__V1__MODEL_FAMILY__MODEL_FAMILY_SDN_MOBILENET ||
           f == DP__V1__MODEL_FAMILY__MODEL_FAMILY_RANET;
}

static Dp__V1__Method method_of(Dp__V1__BaselineMethod m)
{
    switch (m) {
    case DP__V1__BASELINE_METHOD__BASELINE_METHOD_RANDOM:
        return DP__V1__METHOD__METHOD_RANDOM;
    case DP__V1__BASELINE_METHOD__BASELINE_METHOD_ILFO:
        return DP__V1__METHOD__METHOD_ILFO;
    case DP__V1__BASELINE_METHOD__BASELINE_METHOD_DEEPSLOTH:
        return DP__V1__METHOD__METHOD_DEEPSLOTH;
    default:
        return DP__V1__METHOD__METHOD_UNSPECIFIED;
    }
}

/* The baselines model m runs (DeepSloth: early-exit families only). */
static int runs_baseline(const Dp__V1__Campaign *c, uint32_t m, size_t b)
{
    const Dp__V1__Method k = method_of(c->baselines[b]->method);
    if (k == DP__V1__METHOD__METHOD_UNSPECIFIED) return 0;
    return k != DP__V1__METHOD__METHOD_DEEPSLOTH || early_exit(c->models[m]->family);
}

int dp_plan_each(const Dp__V1__Campaign *c, dp_plan_fn fn, void *ctx)
{
    const uint32_t nm = (uint32_t)c->n_models, nb = dp_plan_budgets(c), ns = dp_plan_shards(c);
    dp_plan_task_t t;
    int rc;
#define EMIT(...)                                                                                  \
    do {                                                                                           \
        t = (dp_plan_task_t){__VA_ARGS__};                                                         \
        if ((rc = fn(ctx, &t))) return rc;                                                         \
    } while (0)
    for (uint32_t m = 0; m < nm; m++)
        for (uint32_t b = 0; b < nb; b++)
            EMIT(.kind = DP__V1__TASK_KIND__TASK_KIND_TRAIN,
                 .method = DP__V1__METHOD__METHOD_DEEPPERFORM, .model = m, .budget = b,
                 .shard = DP_PLAN_NONE, .device = DP_PLAN_NONE);
    for (uint32_t m = 0; m < nm; m++)
        for (uint32_t b = 0; b < nb; b++)
            for (size_t k = 0; k < c->n_baselines; k++) {
                if (!runs_baseline(c, m, k)) continue;
                for (uint32_t s = 0; s < ns; s++)
                    EMIT(.kind = DP__V1__TASK_KIND__TASK_KIND_BASELINE,
                         .method = method_of(c->baselines[k]->method), .model = m, .budget = b,
                         .shard = s, .device = DP_PLAN_NONE);
            }
    for (uint32_t m = 0; m < nm; m++)
        for (uint32_t b = 0; b < nb; b++)
            for (uint32_t s = 0; s < ns; s++)
                EMIT(.kind = DP__V1__TASK_KIND__TASK_KIND_GENERATE,
                     .method = DP__V1__METHOD__METHOD_DEEPPERFORM, .model = m, .budget = b,
                     .shard = s, .device = DP_PLAN_NONE);
    for (uint32_t d = 0; d < (uint32_t)c->n_device_classes; d++) {
        const uint32_t ms = measured_shards(c, c->device_classes[d]);
        for (uint32_t m = 0; m < nm; m++) {
            for (uint32_t s = 0; s < ms; s++)
                EMIT(.kind = DP__V1__TASK_KIND__TASK_KIND_MEASURE,
                     .method = DP__V1__METHOD__METHOD_SEEDS, .model = m, .budget = DP_PLAN_NONE,
                     .shard = s, .device = d);
            for (uint32_t b = 0; b < nb; b++) {
                for (uint32_t s = 0; s < ms; s++)
                    EMIT(.kind = DP__V1__TASK_KIND__TASK_KIND_MEASURE,
                         .method = DP__V1__METHOD__METHOD_DEEPPERFORM, .model = m, .budget = b,
                         .shard = s, .device = d);
                for (size_t k = 0; k < c->n_baselines; k++) {
                    if (!runs_baseline(c, m, k)) continue;
                    for (uint32_t s = 0; s < ms; s++)
                        EMIT(.kind = DP__V1__TASK_KIND__TASK_KIND_MEASURE,
                             .method = method_of(c->baselines[k]->method), .model = m, .budget = b,
                             .shard = s, .device = d);
                }
            }
        }
    }
    EMIT(.kind = DP__V1__TASK_KIND__TASK_KIND_REPORT, .method = DP__V1__METHOD__METHOD_UNSPECIFIED,
         .model = DP_PLAN_NONE, .budget = DP_PLAN_NONE, .shard = DP_PLAN_NONE,
         .device = DP_PLAN_NONE);
#undef EMIT
    return 0;
}

static int count_one(void *ctx, const dp_plan_task_t *t)
{
    (void)t;
    uint64_t *n = ctx;
    return ++*n > DP_PLAN_MAX_TASKS;
}

dp_err_t dp_plan_count(const Dp__V1__Campaign *c, uint32_t *ntasks)
{
    if (c->n_datasets != 1)
        return dp_err_set(DP_ERR_INVALID, "campaign: datasets: one dataset per campaign, got %zu",
                          c->n_datasets);
    uint32_t b, e;
    seed_range(c, &b, &e);
    if (e <= b)
        return dp_err_set(DP_ERR_INVALID,
                          "campaign: datasets[0].test_range: the seeds need an end after begin "
                          "(got begin %u end %u)",
                          b, e);
    if (!c->n_models || !dp_plan_budgets(c))
        return dp_err_set(DP_ERR_INVALID, "campaign: needs at least one model and one eps");
    uint64_t n = 0;
    if (dp_plan_each(c, count_one, &n))
        return dp_err_set(DP_ERR_RANGE, "campaign: more than %u tasks", DP_PLAN_MAX_TASKS);
    *ntasks = (uint32_t)n;
    return DP_OK;
}

int dp_plan_deps(const Dp__V1__Campaign *c, const dp_plan_task_t *t, dp_plan_task_t *dep)
{
    (void)c;
    switch (t->kind) {
    case DP__V1__TASK_KIND__TASK_KIND_GENERATE:
        *dep = *t;
        dep->kind = DP__V1__TASK_KIND__TASK_KIND_TRAIN;
        dep->shard = DP_PLAN_NONE;
        return 1;
    case DP__V1__TASK_KIND__TASK_KIND_MEASURE:
        if (t->method == DP__V1__METHOD__METHOD_SEEDS) return 0;
        *dep = *t;
        dep->device = DP_PLAN_NONE;
        dep->kind = t->method == DP__V1__METHOD__METHOD_DEEPPERFORM
                        ? DP__V1__TASK_KIND__TASK_KIND_GENERATE
                        : DP__V1__TASK_KIND__TASK_KIND_BASELINE;
        return 1;
    default:
        return 0;
    }
}

const char *dp_plan_norm_word(const dp_plan_budget_t *b)
{
    if (b->norm == DP__V1__NORM__NORM_LINF) return "linf";
    return b->l2_exact ? "l2x" : "l2";
}

const char *dp_plan_method_word(Dp__V1__Method m)
{
    switch (m) {
    case DP__V1__METHOD__METHOD_SEEDS:
        return "seeds";
    case DP__V1__METHOD__METHOD_DEEPPERFORM:
        return "deepperform";
    case DP__V1__METHOD__METHOD_RANDOM:
        return "random";
    case DP__V1__METHOD__METHOD_ILFO:
        return "ilfo";
    case DP__V1__METHOD__METHOD_DEEPSLOTH:
        return "deepsloth";
    default:
        return "none";
    }
}

static int fits(int n, size_t size) { return n >= 0 && (size_t)n < size ? 0 : -1; }

/* "M/N-EPS" */
static int model_budget(const Dp__V1__Campaign *c, const dp_plan_task_t *t, char *buf, size_t size)
{
    const dp_plan_budget_t b = dp_plan_budget_at(c, t->budget);
    return snprintf(buf, size, "%s/%s-%g", c->models[t->model]->name, dp_plan_norm_word(&b),
                    (double)b.eps);
}

int dp_plan_task_id(const Dp__V1__Campaign *c, const char *cid, const dp_plan_task_t *t, char *buf,
                    size_t size)
{
    char mb[DP_PLAN_ID_MAX];
    if (t->budget != DP_PLAN_NONE && fits(model_budget(c, t, mb, sizeof mb), sizeof mb)) return -1;
    int n = -1;
    switch (t->kind) {
    case DP__V1__TASK_KIND__TASK_KIND_TRAIN:
        n = snprintf(buf, size, "%s/train/%s", cid, mb);
        break;
    case DP__V1__TASK_KIND__TASK_KIND_GENERATE:
        n = snprintf(buf, size, "%s/generate/%s/s%u", cid, mb, t->shard);
        break;
    case DP__V1__TASK_KIND__TASK_KIND_BASELINE:
        n = snprintf(buf, size, "%s/baseline/%s/%s/s%u", cid, mb, dp_plan_method_word(t->method),
                     t->shard);
        break;
    case DP__V1__TASK_KIND__TASK_KIND_MEASURE:
        if (t->method == DP__V1__METHOD__METHOD_SEEDS)
            n = snprintf(buf, size, "%s/measure/%s/%s/seeds/s%u", cid,
                         c->device_classes[t->device]->name, c->models[t->model]->name, t->shard);
        else
            n = snprintf(buf, size, "%s/measure/%s/%s/%s/s%u", cid,
                         c->device_classes[t->device]->name, mb, dp_plan_method_word(t->method),
                         t->shard);
        break;
    case DP__V1__TASK_KIND__TASK_KIND_REPORT:
        n = snprintf(buf, size, "%s/report", cid);
        break;
    default:
        break;
    }
    return fits(n, size);
}

/* Key of the inputs a MEASURE task measures (or GENERATE/BASELINE writes). */
static int inputs_key(const Dp__V1__Campaign *c, const char *cid, const dp_plan_task_t *t,
                      char *buf, size_t size)
{
    if (t->method == DP__V1__METHOD__METHOD_SEEDS)
        return fits(
            snprintf(buf, size, "%s/%s/seeds/s%u", cid, c->models[t->model]->name, t->shard), size);
    char mb[DP_PLAN_ID_MAX];
    if (fits(model_budget(c, t, mb, sizeof mb), sizeof mb)) return -1;
    return fits(
        snprintf(buf, size, "%s/%s/%s/s%u", cid, mb, dp_plan_method_word(t->method), t->shard),
        size);
}

int dp_plan_task_key(const Dp__V1__Campaign *c, const char *cid, const dp_plan_task_t *t, char *buf,
                     size_t size)
{
    char mb[DP_PLAN_ID_MAX], in[DP_PLAN_ID_MAX];
    switch (t->kind) {
    case DP__V1__TASK_KIND__TASK_KIND_TRAIN:
        if (fits(model_budget(c, t, mb, sizeof mb), sizeof mb)) return -1;
        return fits(snprintf(buf, size, "%s/%s/deepperform/generator", cid, mb), size);
    case DP__V1__TASK_KIND__TASK_KIND_GENERATE:
    case DP__V1__TASK_KIND__TASK_KIND_BASELINE:
        return inputs_key(c, cid, t, buf, size);
    case DP__V1__TASK_KIND__TASK_KIND_MEASURE:
        if (inputs_key(c, cid, t, in, sizeof in)) return -1;
        return fits(snprintf(buf, size, "%s/measure-%s", in, c->device_classes[t->device]->name),
                    size);
    case DP__V1__TASK_KIND__TASK_KIND_REPORT:
        return fits(snprintf(buf, size, "%s/report", cid), size);
    default:
        return -1;
    }
}

static Dp__V1__Baseline *baseline_of(const Dp__V1__Campaign *c, Dp__V1__Method m)
{
    for (size_t i = 0; i < c->n_baselines; i++)
        if (method_of(c->baselines[i]->method) == m) return c->baselines[i];
    return NULL;
}

void dp_plan_fill(const Dp__V1__Campaign *c, const char *cid, const dp_plan_task_t *t,
                  Dp__V1__Task *out, dp_plan_strings_t *st)
{
    dp__v1__task__init(out);
    memset(st->id, 0, sizeof st->id);
    snprintf(st->campaign, sizeof st->campaign, "%s", cid);
    dp_plan_task_id(c, cid, t, st->id, sizeof st->id);
    dp_plan_task_key(c, cid, t, st->prefix, sizeof st->prefix);
    out->id = st->id;
    out->campaign = st->campaign;
    out->kind = t->kind;
    out->method = t->method;
    out->output_prefix = st->prefix;
    out->store_uri = c->store_uri;
    out->dataset = c->datasets[0];
    out->thresholds = c->thresholds;
    if (t->kind == DP__V1__TASK_KIND__TASK_KIND_REPORT) out->regression = c->regression;
    out->max_attempts = DP_PLAN_ATTEMPTS;
    if (t->model != DP_PLAN_NONE) out->model = c->models[t->model];
    if (t->budget != DP_PLAN_NONE) {
        const dp_plan_budget_t b = dp_plan_budget_at(c, t->budget);
        out->norm = b.norm;
        out->eps = b.eps;
        out->l2_exact = b.l2_exact;
    }
    if (t->shard != DP_PLAN_NONE) {
        out->shard_index = t->shard;
        dp_plan_shard_range(c, t->shard, &out->shard_begin, &out->shard_end);
    }
    out->generator = c->generator;
    size_t ninputs = 0;
    switch (t->kind) {
    case DP__V1__TASK_KIND__TASK_KIND_TRAIN:
        if (fits(snprintf(st->resume, sizeof st->resume, "%.*s.ckpt", DP_PLAN_ID_MAX - 8,
                          st->prefix),
                 sizeof st->resume) == 0)
            out->resume_key = st->resume;
        break;
    case DP__V1__TASK_KIND__TASK_KIND_GENERATE: {
        dp_plan_task_t tr = *t;
        tr.kind = DP__V1__TASK_KIND__TASK_KIND_TRAIN;
        tr.shard = DP_PLAN_NONE;
        dp_plan_task_key(c, cid, &tr, st->inputs[ninputs++], DP_PLAN_ID_MAX);
        break;
    }
    case DP__V1__TASK_KIND__TASK_KIND_BASELINE:
        out->baseline = baseline_of(c, t->method);
        break;
    case DP__V1__TASK_KIND__TASK_KIND_MEASURE:
        out->device = c->device_classes[t->device];
        out->device_class = c->device_classes[t->device]->name;
        out->measure = c->measure;
        if (t->method != DP__V1__METHOD__METHOD_SEEDS)
            inputs_key(c, cid, t, st->inputs[ninputs++], DP_PLAN_ID_MAX);
        break;
    default:
        break;
    }
    for (size_t i = 0; i < ninputs; i++) st->input_ptrs[i] = st->inputs[i];
    out->n_input_keys = ninputs;
    out->input_keys = ninputs ? st->input_ptrs : NULL;
    dp_plan_task_t dep;
    if (dp_plan_deps(c, t, &dep) == 1 && !dp_plan_task_id(c, cid, &dep, st->dep, sizeof st->dep)) {
        st->dep_ptrs[0] = st->dep;
        out->n_depends_on = 1;
        out->depends_on = st->dep_ptrs;
    }
}
