/* Campaign decoding and validation (campaign.h). One check function per
 * message, each naming its fields by their path in the campaign; the bounds
 * of numbers are dp-perform's (cli/dp_perform.c) and the generator files'
 * (core/perform/train.c), so a campaign that passes can run. */
#include "campaign/campaign.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util/utf8.h"

/* Sets "campaign: " + the formatted text as the detail; returns kind. */
static dp_err_t bad(dp_err_t kind, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static dp_err_t bad(dp_err_t kind, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return dp_err_set(kind, "campaign: %s", msg);
}

/* s for an error message: at most 64 bytes, printable ASCII and whole UTF-8
 * characters, anything else as '?'. */
static const char *shown(const char *s, char buf[72])
{
    char tmp[72];
    dp_utf8_copy(tmp, 65, s ? s : "");
    size_t o = 0;
    for (size_t i = 0; tmp[i]; i++) buf[o++] = (unsigned char)tmp[i] < 0x20 ? '?' : tmp[i];
    buf[o] = '\0';
    return buf;
}

static const char *str(const char *s) { return s ? s : ""; }

static int name_char(char ch, int first)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (!first && (ch == '.' || ch == '_' || ch == '-'));
}

static dp_err_t check_name(const char *s, const char *field)
{
    char b[72];
    size_t n = strlen(str(s));
    if (!n) return bad(DP_ERR_INVALID, "%s is empty", field);
    if (n > CAMPAIGN_NAME_MAX)
        return bad(DP_ERR_INVALID, "%s is %zu bytes, at most %d", field, n, CAMPAIGN_NAME_MAX);
    for (size_t i = 0; i < n; i++)
        if (!name_char(s[i], i == 0))
            return bad(DP_ERR_INVALID,
                       "%s '%s': byte %zu is not allowed (a name is letters, digits, '.', '_' "
                       "and '-', starting with a letter or digit)",
                       field, shown(s, b), i);
    return DP_OK;
}

/* names[i] (got by fn) unique among the n; what: "models" */
static dp_err_t check_names(const void *const *items, size_t n, const char *what,
                            const char *(*name_of)(const void *))
{
    char f[64], b[72];
    for (size_t i = 0; i < n; i++) {
        snprintf(f, sizeof f, "%s[%zu].name", what, i);
        dp_err_t err = check_name(name_of(items[i]), f);
        if (err) return err;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(name_of(items[i]), name_of(items[j])))
                return bad(DP_ERR_INVALID, "%s '%s' is also %s[%zu]'s", f,
                           shown(name_of(items[i]), b), what, j);
    }
    return DP_OK;
}

static const char *model_name(const void *p) { return str(((const Dp__V1__Model *)p)->name); }
static const char *dataset_name(const void *p) { return str(((const Dp__V1__Dataset *)p)->name); }
static const char *device_name(const void *p)
{
    return str(((const Dp__V1__DeviceClass *)p)->name);
}

/* file://PATH or s3://BUCKET[/KEY]: PATH, BUCKET not empty; UTF-8 without
 * spaces or control characters. */
static dp_err_t check_uri(const char *s, const char *field)
{
    char b[72];
    s = str(s);
    size_t n = strlen(s);
    if (!n) return bad(DP_ERR_INVALID, "%s is empty", field);
    if (!dp_utf8_valid(s, n)) return bad(DP_ERR_INVALID, "%s is not UTF-8", field);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
            return bad(DP_ERR_INVALID, "%s '%s' has a space or control character at byte %zu",
                       field, shown(s, b), i);
    if (!strncmp(s, "file://", 7)) {
        if (!s[7]) return bad(DP_ERR_INVALID, "%s '%s' has no path", field, shown(s, b));
    } else if (!strncmp(s, "s3://", 5)) {
        if (!s[5] || s[5] == '/')
            return bad(DP_ERR_INVALID, "%s '%s' has no bucket", field, shown(s, b));
    } else {
        return bad(DP_ERR_INVALID, "%s '%s' is not a file:// or s3:// URI", field, shown(s, b));
    }
    return DP_OK;
}

/* v in [lo, hi] compared as floats (a bound such as 1e-9 is not a float:
 * the float nearest it is the bound); NaN fails. */
static dp_err_t check_float(float v, double lo, double hi, const char *field)
{
    if (!(v >= (float)lo && v <= (float)hi))
        return bad(DP_ERR_RANGE, "%s is %.9g, expected a finite number in [%g, %g]", field, v, lo,
                   hi);
    return DP_OK;
}

static dp_err_t check_u32(uint32_t v, uint32_t lo, uint32_t hi, const char *field)
{
    if (v < lo || v > hi) return bad(DP_ERR_RANGE, "%s is %u, expected [%u, %u]", field, v, lo, hi);
    return DP_OK;
}

static dp_err_t check_count(size_t n, size_t lo, size_t hi, const char *field)
{
    if (n < lo || n > hi)
        return bad(n < lo ? DP_ERR_INVALID : DP_ERR_RANGE, "%s: %zu given, expected %zu to %zu",
                   field, n, lo, hi);
    return DP_OK;
}

/* ------------------------------------------------------------- messages */

static dp_err_t check_model(const Dp__V1__Model *m, size_t i)
{
    char f[64];
    if ((int)m->family < DP__V1__MODEL_FAMILY__MODEL_FAMILY_SKIPNET ||
        (int)m->family > DP__V1__MODEL_FAMILY__MODEL_FAMILY_CNN)
        return bad(DP_ERR_INVALID, "models[%zu].family %d is not a known model family", i,
                   (int)m->family);
    snprintf(f, sizeof f, "models[%zu].spec_uri", i);
    dp_err_t err = check_uri(m->spec_uri, f);
    if (err) return err;
    snprintf(f, sizeof f, "models[%zu].weights_uri", i);
    return check_uri(m->weights_uri, f);
}

static dp_err_t check_range(const Dp__V1__IndexRange *r, size_t i, const char *which)
{
    if (r && r->end != 0 && r->begin >= r->end)
        return bad(DP_ERR_RANGE, "datasets[%zu].%s is [%u, %u): empty (end 0 means to the end)", i,
                   which, r->begin, r->end);
    return DP_OK;
}

static dp_err_t check_dataset(const Dp__V1__Dataset *d, size_t i)
{
    char f[64];
    dp_err_t err;
    int idx = d->format == DP__V1__DATASET_FORMAT__DATASET_FORMAT_IDX;
    if ((int)d->format < DP__V1__DATASET_FORMAT__DATASET_FORMAT_IDX ||
        (int)d->format > DP__V1__DATASET_FORMAT__DATASET_FORMAT_CIFAR100)
        return bad(DP_ERR_INVALID, "datasets[%zu].format %d is not a known dataset format", i,
                   (int)d->format);
    const char *uris[4] = {d->train_images_uri, d->train_labels_uri, d->test_images_uri,
                           d->test_labels_uri};
    static const char *const keys[4] = {"train_images_uri", "train_labels_uri", "test_images_uri",
                                        "test_labels_uri"};
    for (int k = 0; k < 4; k++) {
        snprintf(f, sizeof f, "datasets[%zu].%s", i, keys[k]);
        if (k % 2 && !idx) { /* CIFAR: the labels are in the batches */
            if (*str(uris[k]))
                return bad(DP_ERR_INVALID, "%s is set: CIFAR batches hold their labels", f);
        } else if ((err = check_uri(uris[k], f))) {
            return err;
        }
    }
    if ((err = check_range(d->train_range, i, "train_range")) ||
        (err = check_range(d->test_range, i, "test_range")))
        return err;
    snprintf(f, sizeof f, "datasets[%zu].shard_size", i);
    return check_u32(d->shard_size, 1, CAMPAIGN_SHARD_MAX, f);
}

static dp_err_t check_budget(const Dp__V1__Budget *const *budgets, size_t i)
{
    const Dp__V1__Budget *b = budgets[i];
    char f[64];
    dp_err_t err;
    if (b->norm != DP__V1__NORM__NORM_LINF && b->norm != DP__V1__NORM__NORM_L2)
        return bad(DP_ERR_INVALID, "budgets[%zu].norm %d is not a known norm", i, (int)b->norm);
    if (b->l2_exact && b->norm != DP__V1__NORM__NORM_L2)
        return bad(DP_ERR_INVALID, "budgets[%zu].l2_exact is set on a Linf budget", i);
    snprintf(f, sizeof f, "budgets[%zu].eps", i);
    if ((err = check_count(b->n_eps, 1, CAMPAIGN_MAX_EPS, f))) return err;
    for (size_t k = 0; k < b->n_eps; k++) {
        snprintf(f, sizeof f, "budgets[%zu].eps[%zu]", i, k);
        if ((err = check_float(b->eps[k], 1e-9, 1e6, f))) return err;
        /* the same eps under the same norm and mode: the same store keys */
        for (size_t j = 0; j <= i; j++) {
            const Dp__V1__Budget *o = budgets[j];
            if (o->norm != b->norm || o->l2_exact != b->l2_exact) continue;
            for (size_t q = 0; q < (j == i ? k : o->n_eps); q++)
                if (o->eps[q] == b->eps[k])
                    return bad(DP_ERR_INVALID, "%s %g is also budgets[%zu].eps[%zu]", f, b->eps[k],
                               j, q);
        }
    }
    return DP_OK;
}

static dp_err_t check_generator(const Dp__V1__GeneratorSettings *g)
{
    dp_err_t err = DP_OK;
    if (!g) return DP_OK;
    if (g->width && (err = check_u32(g->width->value, 8, 256, "generator.width"))) return err;
    if (g->epochs && (err = check_u32(g->epochs->value, 1, 100000, "generator.epochs"))) return err;
    if (g->batch_size && (err = check_u32(g->batch_size->value, 2, 4096, "generator.batch_size")))
        return err;
    if (g->patience && (err = check_u32(g->patience->value, 1, 100000, "generator.patience")))
        return err;
    if (g->lr && (err = check_float(g->lr->value, 1e-9, 1, "generator.lr"))) return err;
    if (g->alpha_gan && (err = check_float(g->alpha_gan->value, 0, 1e6, "generator.alpha_gan")))
        return err;
    if (g->beta_per && (err = check_float(g->beta_per->value, 0, 1e6, "generator.beta_per")))
        return err;
    return DP_OK;
}

static dp_err_t check_baselines(const Dp__V1__Campaign *c)
{
    char f[64];
    dp_err_t err;
    for (size_t i = 0; i < c->n_baselines; i++) {
        const Dp__V1__Baseline *b = c->baselines[i];
        if ((int)b->method < DP__V1__BASELINE_METHOD__BASELINE_METHOD_RANDOM ||
            (int)b->method > DP__V1__BASELINE_METHOD__BASELINE_METHOD_DEEPSLOTH)
            return bad(DP_ERR_INVALID, "baselines[%zu].method %d is not a known baseline method", i,
                       (int)b->method);
        for (size_t j = 0; j < i; j++)
            if (c->baselines[j]->method == b->method)
                return bad(DP_ERR_INVALID, "baselines[%zu].method is also baselines[%zu]'s", i, j);
        if (b->method == DP__V1__BASELINE_METHOD__BASELINE_METHOD_RANDOM &&
            (b->iterations || b->lr))
            return bad(DP_ERR_INVALID,
                       "baselines[%zu] is random noise: it has no iterations or lr to set", i);
        snprintf(f, sizeof f, "baselines[%zu].iterations", i);
        if (b->iterations && (err = check_u32(b->iterations->value, 1, 1000000, f))) return err;
        snprintf(f, sizeof f, "baselines[%zu].lr", i);
        if (b->lr && (err = check_float(b->lr->value, 1e-9, 1e3, f))) return err;
    }
    return DP_OK;
}

static dp_err_t check_measuring(const Dp__V1__Campaign *c)
{
    dp_err_t err;
    for (size_t i = 0; i < c->n_device_classes; i++) {
        const Dp__V1__DeviceClass *d = c->device_classes[i];
        if ((int)d->probe < DP__V1__ENERGY_PROBE__ENERGY_PROBE_NONE ||
            (int)d->probe > DP__V1__ENERGY_PROBE__ENERGY_PROBE_NVML)
            return bad(
                DP_ERR_INVALID,
                "device_classes[%zu].probe %d is not a known energy probe (ENERGY_PROBE_NONE "
                "for none)",
                i, (int)d->probe);
    }
    const Dp__V1__MeasureSettings *m = c->measure;
    if (m) {
        if (m->warmup && (err = check_u32(m->warmup->value, 0, 100000, "measure.warmup")))
            return err;
        if (m->repetitions &&
            (err = check_u32(m->repetitions->value, 1, 100000, "measure.repetitions")))
            return err;
        if (m->energy_window_s &&
            (err = check_float(m->energy_window_s->value, 1, 3600, "measure.energy_window_s")))
            return err;
        if (m->min_time_s &&
            (err = check_float(m->min_time_s->value, 0, 3600, "measure.min_time_s")))
            return err;
        if (m->idle_s && (err = check_float(m->idle_s->value, 0, 3600, "measure.idle_s")))
            return err;
        if (m->rounds && (err = check_u32(m->rounds->value, 1, 64, "measure.rounds"))) return err;
    }
    const Dp__V1__Thresholds *t = c->thresholds;
    if (t) {
        if (t->exec_fraction &&
            (err = check_float(t->exec_fraction->value, 0, 1, "thresholds.exec_fraction")))
            return err;
        if (t->iflops_percent &&
            (err = check_float(t->iflops_percent->value, 0, 1e6, "thresholds.iflops_percent")))
            return err;
        if (t->latency_ms &&
            (err = check_float(t->latency_ms->value, 1e-6, 1e9, "thresholds.latency_ms")))
            return err;
        if (t->energy_mj &&
            (err = check_float(t->energy_mj->value, 1e-6, 1e9, "thresholds.energy_mj")))
            return err;
        if (t->ilatency_percent && (err = check_float(t->ilatency_percent->value, -100, 1e6,
                                                      "thresholds.ilatency_percent")))
            return err;
        if (t->ienergy_percent &&
            (err = check_float(t->ienergy_percent->value, -100, 1e6, "thresholds.ienergy_percent")))
            return err;
    }
    return DP_OK;
}

dp_err_t campaign_validate(const Dp__V1__Campaign *c)
{
    dp_err_t err;
    if ((err = check_name(c->name, "name")) || (err = check_uri(c->store_uri, "store_uri")) ||
        (err = check_count(c->n_models, 1, CAMPAIGN_MAX_LIST, "models")) ||
        (err = check_count(c->n_datasets, 1, CAMPAIGN_MAX_LIST, "datasets")) ||
        (err = check_count(c->n_budgets, 1, CAMPAIGN_MAX_LIST, "budgets")) ||
        (err = check_count(c->n_baselines, 0, CAMPAIGN_MAX_LIST, "baselines")) ||
        (err = check_count(c->n_device_classes, 0, CAMPAIGN_MAX_LIST, "device_classes")))
        return err;
    if ((err = check_names((const void *const *)c->models, c->n_models, "models", model_name)) ||
        (err = check_names((const void *const *)c->datasets, c->n_datasets, "datasets",
                           dataset_name)) ||
        (err = check_names((const void *const *)c->device_classes, c->n_device_classes,
                           "device_classes", device_name)))
        return err;
    for (size_t i = 0; i < c->n_models; i++)
        if ((err = check_model(c->models[i], i))) return err;
    for (size_t i = 0; i < c->n_datasets; i++)
        if ((err = check_dataset(c->datasets[i], i))) return err;
    for (size_t i = 0; i < c->n_budgets; i++)
        if ((err = check_budget((const Dp__V1__Budget *const *)c->budgets, i))) return err;
    if ((err = check_generator(c->generator)) || (err = check_baselines(c)) ||
        (err = check_measuring(c)))
        return err;
    const Dp__V1__Regression *r = c->regression;
    if (r) {
        if ((err = check_uri(r->baseline_report_uri, "regression.baseline_report_uri"))) return err;
        if (r->tolerance_pct &&
            (err = check_float(r->tolerance_pct->value, 0, 1e6, "regression.tolerance_pct")))
            return err;
    }
    return DP_OK;
}

/* ------------------------------------------------------------- decoding */

/* The path (into path, n bytes) of the first message under m, m included,
 * that holds fields this version does not know, and the first such field's
 * number; 0 if none. Walks the descriptors, so it covers every message. */
static uint32_t unknown_field(const ProtobufCMessage *m, char *path, size_t n)
{
    if (m->n_unknown_fields) return m->unknown_fields[0].tag;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    size_t len = strlen(path);
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE) continue;
        const char *base = (const char *)m + f->offset;
        size_t count = 1;
        const ProtobufCMessage *const *subs = (const ProtobufCMessage *const *)base;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            count = *(const size_t *)((const char *)m + f->quantifier_offset);
            subs = *(const ProtobufCMessage *const *const *)base;
        }
        for (size_t k = 0; k < count; k++) {
            if (!subs[k]) continue;
            if (f->label == PROTOBUF_C_LABEL_REPEATED)
                snprintf(path + len, n - len, "%s%s[%zu]", len ? "." : "", f->name, k);
            else
                snprintf(path + len, n - len, "%s%s", len ? "." : "", f->name);
            uint32_t tag = unknown_field(subs[k], path, n);
            if (tag) return tag;
            path[len] = '\0';
        }
    }
    return 0;
}

dp_err_t campaign_decode(const uint8_t *buf, size_t len, const char *what, Dp__V1__Campaign **out)
{
    *out = NULL;
    if (!what) what = "<memory>";
    Dp__V1__Campaign *c = dp__v1__campaign__unpack(NULL, len, buf);
    if (!c) return dp_err_set(DP_ERR_FORMAT, "%s: not a dp.v1.Campaign protobuf", what);
    char path[256] = "";
    uint32_t tag = unknown_field(&c->base, path, sizeof path);
    dp_err_t err = DP_OK;
    if (tag) {
        err = dp_err_set(DP_ERR_FORMAT,
                         "%s: campaign%s%s has a field unknown to this version (number %u)", what,
                         path[0] ? ": " : "", path, tag);
    } else if ((err = campaign_validate(c))) {
        char detail[600];
        snprintf(detail, sizeof detail, "%s", dp_err_detail());
        err = dp_err_set(err, "%s: %s", what, detail);
    }
    if (err)
        dp__v1__campaign__free_unpacked(c, NULL);
    else
        *out = c;
    return err;
}

void campaign_free(Dp__V1__Campaign **c)
{
    if (!c || !*c) return;
    dp__v1__campaign__free_unpacked(*c, NULL);
    *c = NULL;
}
