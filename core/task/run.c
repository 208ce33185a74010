/* dp_task_run: one Task message end to end. Inputs named by URI (model spec
 * and weights, dataset files) are read in place when they are file:// and
 * fetched into SCRATCH/cache otherwise, under a name made of the URI's hash,
 * the object's size and ETag, and its base name, so a worker fetches
 * Fashion-MNIST once and notices a replaced object. Inputs named by store
 * key (a generator, a sample set, a checkpoint) come from the task's own
 * store into the task's directory, which is removed at the end. Artifacts
 * go to the task's store under its output_prefix. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nn/blas.h"
#include "report/report.h"
#include "task/task_impl.h"
#include "util/clock.h"
#include "util/path.h"

#define PATH_MAX_ 4096

void dp_task_result_clear(dp_task_result_t *r)
{
    for (size_t i = 0; i < r->n_artifact_keys; i++) free(r->artifact_keys[i]);
    free(r->artifact_keys);
    free(r->summary_json);
    memset(r, 0, sizeof *r);
}

/* What one run holds. */
typedef struct run {
    const Dp__V1__Task *t;
    const dp_task_env_t *env;
    dp_task_settings_t s;
    dp_store_t *store;
    char dir[PATH_MAX_]; /* the task's own directory */
    dp_task_result_t *out;
} run_t;

static uint64_t fnv(const void *p, size_t n, uint64_t h)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

static dp_err_t join(char *buf, size_t size, const char *a, const char *b)
{
    if ((size_t)snprintf(buf, size, "%s/%s", a, b) >= size)
        return dp_err_set(DP_ERR_INVALID, "path or key too long: %s/%s", a, b);
    return DP_OK;
}

static void progress(const run_t *r, const char *stage, const char *fmt, const char *arg)
{
    if (!r->env->hooks.progress) return;
    char line[600];
    snprintf(line, sizeof line, fmt, arg);
    perf_hooks_progress(&r->env->hooks, stage, 0, 0, line);
}

/* A local path for the object at uri: file:// in place, s3:// through the
 * cache. */
static dp_err_t fetch_uri(run_t *r, const char *uri, char *path, size_t size)
{
    if (!strncmp(uri, "file:///", 8)) {
        if ((size_t)snprintf(path, size, "%s", uri + 7) >= size)
            return dp_err_set(DP_ERR_INVALID, "%s: path too long", uri);
        return DP_OK;
    }
    if (strncmp(uri, "s3://", 5))
        return dp_err_set(DP_ERR_INVALID, "%s: not an object URI (file:///PATH or s3://BUCKET/KEY)",
                          uri);
    dp_store_t *st = NULL;
    char *key = NULL, cache[PATH_MAX_];
    dp_store_info_t info;
    dp_err_t err = dp_store_open_uri(uri, r->env->store_settings, &st, &key);
    if (!err) err = dp_store_head(st, key, &info);
    if (err) goto done;
    const char *base = strrchr(key, '/');
    base = base ? base + 1 : key;
    uint64_t h = fnv(uri, strlen(uri), 0xcbf29ce484222325ULL);
    uint64_t v = fnv(info.etag, strlen(info.etag), fnv(&info.size, sizeof info.size, h));
    if ((err = join(cache, sizeof cache, r->env->scratch, "cache"))) goto done;
    if (mkdir(cache, 0700) != 0 && errno != EEXIST) {
        err = dp_err_set(DP_ERR_IO, "%s: cannot create: %s", cache, strerror(errno));
        goto done;
    }
    if ((size_t)snprintf(path, size, "%s/%016llx-%08llx-%.100s", cache, (unsigned long long)h,
                         (unsigned long long)(v & 0xffffffffu), base) >= size) {
        err = dp_err_set(DP_ERR_INVALID, "%s: cache path too long", uri);
        goto done;
    }
    struct stat sb;
    if (stat(path, &sb) == 0 && (uint64_t)sb.st_size == info.size) goto done; /* cached */
    progress(r, "fetch", "fetching %s", uri);
    err = dp_store_get_file(st, key, path);
done:
    if (err) err = task_stage(err, uri);
    free(key);
    dp_store_destroy(&st);
    return err;
}

/* A key of the task's store into the task's directory as name. */
static dp_err_t fetch_key(run_t *r, const char *key, const char *name, char *path, size_t size)
{
    dp_err_t err = join(path, size, r->dir, name);
    if (!err) err = dp_store_get_file(r->store, key, path);
    return err;
}

static dp_err_t add_key(run_t *r, const char *key)
{
    char **k = realloc(r->out->artifact_keys, (r->out->n_artifact_keys + 1) * sizeof *k);
    if (!k) return dp_err_set(DP_ERR_NOMEM, "out of memory");
    r->out->artifact_keys = k;
    if (!(k[r->out->n_artifact_keys] = strdup(key)))
        return dp_err_set(DP_ERR_NOMEM, "out of memory");
    r->out->n_artifact_keys++;
    return DP_OK;
}

/* Uploads the local file (or text) as PREFIX/name and lists the key. */
static dp_err_t upload(run_t *r, const char *name, const char *file, const char *text)
{
    char key[PATH_MAX_];
    dp_err_t err = join(key, sizeof key, r->t->output_prefix, name);
    if (!err)
        err = file ? dp_store_put_file(r->store, key, file)
                   : dp_store_put_mem(r->store, key, text, strlen(text));
    if (err) return task_stage(err, "cannot upload the results");
    return add_key(r, key);
}

/* The task's model, its family checked against the campaign's. */
static dp_err_t load_model(run_t *r, adnn_model_t **m)
{
    const Dp__V1__Model *mm = r->t->model;
    char spec[PATH_MAX_], weights[PATH_MAX_];
    dp_err_t err = fetch_uri(r, mm->spec_uri, spec, sizeof spec);
    if (!err) err = fetch_uri(r, mm->weights_uri, weights, sizeof weights);
    if (err) return err;
    if ((err = dp_task_model_load(spec, weights, m)))
        return task_stage(err, "cannot load the model");
    adnn_family_t f = adnn_model_spec(*m)->family;
    if (mm->family == DP__V1__MODEL_FAMILY__MODEL_FAMILY_CNN)
        err = dp_err_set(DP_ERR_UNSUPPORTED,
                         "model %s: family CNN is not an adaptive network (no spend-more "
                         "probabilities to test)",
                         mm->name);
    else if (mm->family && (int)mm->family != (int)f)
        err =
            dp_err_set(DP_ERR_MISMATCH, "model %s: the campaign says family %d, its spec %s is %s",
                       mm->name, (int)mm->family, mm->spec_uri, adnn_family_name(f));
    if (err) adnn_model_destroy(m);
    return err;
}

typedef struct split_src {
    const Dp__V1__Dataset *d;
    const char *ip, *lp;
} split_src_t;

static dp_err_t decode_split(void *arg, dp_dataset_t **out)
{
    const split_src_t *s = arg;
    if (s->d->format == DP__V1__DATASET_FORMAT__DATASET_FORMAT_IDX)
        return dp_dataset_load_idx(s->ip, s->lp, out);
    const char *paths[1] = {s->ip};
    return dp_dataset_load_cifar(
        paths, 1, s->d->format == DP__V1__DATASET_FORMAT__DATASET_FORMAT_CIFAR100, out);
}

/* The training (train != 0) or test split of the task's dataset, from the
 * env's cache when there is one; give it back with drop_split. */
static dp_err_t load_split(run_t *r, int train, const dp_dataset_t **out)
{
    const Dp__V1__Dataset *d = r->t->dataset;
    const char *img = train ? d->train_images_uri : d->test_images_uri;
    const char *lbl = train ? d->train_labels_uri : d->test_labels_uri;
    const char *what = train ? "cannot load the training split" : "cannot load the test split";
    char ip[PATH_MAX_], lp[PATH_MAX_];
    if (!img || !*img)
        return dp_err_set(DP_ERR_INVALID, "dataset %s: no %s images URI", d->name,
                          train ? "train" : "test");
    dp_err_t err = fetch_uri(r, img, ip, sizeof ip);
    if (err) return err;
    if (d->format == DP__V1__DATASET_FORMAT__DATASET_FORMAT_IDX) {
        if (!lbl || !*lbl)
            return dp_err_set(DP_ERR_INVALID, "dataset %s: no %s labels URI", d->name,
                              train ? "train" : "test");
        if ((err = fetch_uri(r, lbl, lp, sizeof lp))) return err;
    } else if (d->format != DP__V1__DATASET_FORMAT__DATASET_FORMAT_CIFAR10 &&
               d->format != DP__V1__DATASET_FORMAT__DATASET_FORMAT_CIFAR100) {
        return dp_err_set(DP_ERR_UNSUPPORTED, "dataset %s: unknown format %d", d->name,
                          (int)d->format);
    }
    const int idx = d->format == DP__V1__DATASET_FORMAT__DATASET_FORMAT_IDX;
    split_src_t src = {d, ip, idx ? lp : NULL};
    if (r->env->cache) {
        err =
            task_cache_get(r->env->cache, (int)d->format, src.ip, src.lp, decode_split, &src, out);
    } else {
        dp_dataset_t *own = NULL;
        err = decode_split(&src, &own);
        *out = own;
    }
    return err ? task_stage(err, what) : DP_OK;
}

static void drop_split(run_t *r, const dp_dataset_t **d)
{
    if (r->env->cache) {
        task_cache_release(r->env->cache, d);
    } else {
        dp_dataset_t *own = (dp_dataset_t *)*d; /* load_split made it for us */
        dp_dataset_destroy(&own);
        *d = NULL;
    }
}

/* ------------------------------------------------------------- TRAIN */

typedef struct train_ctx {
    run_t *r;
    int uploads_failed;
} train_ctx_t;

/* The caller's progress and cancel, under the training's own ctx. */
static void train_progress(void *ctx, const char *stage, uint64_t done, uint64_t total,
                           const char *line)
{
    perf_hooks_progress(&((train_ctx_t *)ctx)->r->env->hooks, stage, done, total, line);
}

static int train_cancelled(void *ctx)
{
    return perf_hooks_cancelled(&((train_ctx_t *)ctx)->r->env->hooks);
}

/* After every epoch: the checkpoint to the store, so a re-leased task
 * resumes from it. A failed upload is not fatal (the next epoch tries
 * again; at worst a retry resumes from an older one). */
static dp_err_t on_epoch(void *ctx, int epoch, const char *ckpt)
{
    train_ctx_t *c = ctx;
    const dp_task_env_t *env = c->r->env;
    const char *rk = c->r->t->resume_key;
    if (rk && *rk) {
        dp_err_t err = dp_store_put_file(c->r->store, rk, ckpt);
        if (err) {
            c->uploads_failed++;
            char line[700];
            snprintf(line, sizeof line, "checkpoint of epoch %d not uploaded: %s", epoch,
                     dp_err_detail());
            perf_hooks_progress(&env->hooks, "checkpoint", (uint64_t)epoch, 0, line);
        }
    }
    return env->hooks.epoch_end ? env->hooks.epoch_end(env->hooks.ctx, epoch, ckpt) : DP_OK;
}

static dp_err_t run_train(run_t *r)
{
    adnn_model_t *m = NULL;
    const dp_dataset_t *train = NULL;
    dp_task_output_t o = {0};
    char ckpt[PATH_MAX_], gen[PATH_MAX_];
    dp_err_t err = load_model(r, &m);
    if (!err) err = load_split(r, 1, &train);
    if (!err) err = join(ckpt, sizeof ckpt, r->dir, "train.ckpt");
    if (!err) err = join(gen, sizeof gen, r->dir, "generator.safetensors");
    if (err) goto done;
    const char *rk = r->t->resume_key;
    if (rk && *rk) {
        err = dp_store_get_file(r->store, rk, ckpt);
        if (err == DP_ERR_NOTFOUND) {
            err = DP_OK; /* the first attempt */
        } else if (err) {
            err = task_stage(err, "cannot fetch the checkpoint");
            goto done;
        } else {
            progress(r, "fetch", "resuming from %s", rk);
        }
    }
    train_ctx_t tc = {r, 0};
    dp_task_io_t io = {.model = m, .train = train, .checkpoint = ckpt, .out = gen};
    io.hooks = (perf_hooks_t){train_progress, train_cancelled, on_epoch, &tc};
    if ((err = dp_task_train(&r->s, &io, &o))) goto done;
    r->out->resumed_from = o.train.resumed_from;
    if ((err = upload(r, "generator.safetensors", gen, NULL)) ||
        (err = upload(r, "result.json", NULL, o.summary_json)))
        goto done;
    if (rk && *rk && !tc.uploads_failed && (err = add_key(r, rk))) goto done;
    r->out->summary_json = o.summary_json;
    o.summary_json = NULL;
done:
    dp_task_output_clear(&o);
    adnn_model_destroy(&m);
    drop_split(r, &train);
    return err;
}

/* ------------------------------------------------------------- GENERATE, BASELINE, MEASURE */

static dp_err_t run_samples(run_t *r)
{
    const Dp__V1__Task *t = r->t;
    const int gen = t->kind == DP__V1__TASK_KIND__TASK_KIND_GENERATE;
    const int meas = t->kind == DP__V1__TASK_KIND__TASK_KIND_MEASURE;
    adnn_model_t *m = NULL;
    const dp_dataset_t *test = NULL;
    dp_task_output_t o = {0};
    char in[PATH_MAX_], key[PATH_MAX_], out[PATH_MAX_];
    dp_err_t err = load_model(r, &m);
    if (err) goto done;
    dp_task_io_t io = {.model = m, .hooks = r->env->hooks};
    /* every kind needs the seeds: a MEASURE of generated inputs measures
       them beside the inputs */
    if ((err = load_split(r, 0, &test))) goto done;
    io.test = test;
    if (gen || (meas && !r->s.seeds)) {
        if (t->n_input_keys < 1 || !t->input_keys[0] || !*t->input_keys[0]) {
            err = dp_err_set(DP_ERR_INVALID, "task: input_keys[0] is missing");
            goto done;
        }
        const char *name = gen ? "generator.safetensors" : "samples.safetensors";
        if ((err = join(key, sizeof key, t->input_keys[0], name)) ||
            (err = fetch_key(r, key, name, in, sizeof in))) {
            err = task_stage(err, gen ? "cannot fetch the generator" : "cannot fetch the inputs");
            goto done;
        }
        if (gen)
            io.generator = in;
        else
            io.samples = in;
    }
    const char *artifact = meas ? "measure.json" : "samples.safetensors";
    if ((err = join(out, sizeof out, r->dir, artifact))) goto done;
    io.out = out;
    if ((err = task_check_cancel(&io.hooks))) goto done;
    err = gen    ? dp_task_generate(&r->s, &io, &o)
          : meas ? dp_task_measure(&r->s, &io, &o)
                 : dp_task_baseline(&r->s, &io, &o);
    if (err) goto done;
    if ((err = upload(r, artifact, out, NULL)) ||
        (err = upload(r, "result.json", NULL, o.summary_json)))
        goto done;
    r->out->summary_json = o.summary_json;
    o.summary_json = NULL;
done:
    dp_task_output_clear(&o);
    adnn_model_destroy(&m);
    drop_split(r, &test);
    return err;
}

/* ------------------------------------------------------------- REPORT */

typedef struct keys {
    char **v;
    size_t n, cap;
    const char *skip; /* the report's own result */
    int nomem;
} keys_t;

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static int on_key(const dp_store_info_t *info, void *arg)
{
    keys_t *k = arg;
    if (!ends_with(info->key, "/result.json") || !strcmp(info->key, k->skip)) return 0;
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 64;
        char **v = realloc(k->v, cap * sizeof *v);
        if (!v) return k->nomem = 1;
        k->v = v, k->cap = cap;
    }
    if (!(k->v[k->n] = strdup(info->key))) return k->nomem = 1;
    k->n++;
    return 0;
}

static int report_cancelled(void *arg) { return perf_hooks_cancelled(arg); }

/* report.json and report.html (core/report) from everything under the
 * campaign's prefix; the seeds' images from the test split when it loads
 * (the page goes without them otherwise). */
/* What the comparison with the campaign's baseline report found. */
typedef struct verdict {
    int asked, compared, changed, worse;
    double tolerance_pct;
    char missing[600]; /* why the baseline could not be read */
} verdict_t;

/* The baseline report.json named by uri (file:// in place, s3:// through
 * the cache) into *text; new, caller frees. */
static dp_err_t read_baseline(run_t *r, const char *uri, char **text, size_t *len)
{
    char path[PATH_MAX_];
    *text = NULL;
    dp_err_t err = fetch_uri(r, uri, path, sizeof path);
    if (err) return err;
    FILE *f = fopen(path, "rb");
    if (!f) return dp_err_set(DP_ERR_NOTFOUND, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *p = malloc(cap + 1);
    while (p) {
        if (n == cap) {
            char *q = cap < DP_REPORT_MAX_BYTES ? realloc(p, (cap *= 2) + 1) : NULL;
            if (!q) break;
            p = q;
        }
        size_t k = fread(p + n, 1, cap - n, f);
        n += k;
        if (k == 0) break;
    }
    const dp_err_t bad = !p          ? DP_ERR_NOMEM
                         : ferror(f) ? DP_ERR_IO
                         : n == cap  ? DP_ERR_RANGE
                                     : DP_OK;
    fclose(f);
    if (bad) {
        free(p);
        return dp_err_set(bad, "%s: cannot read it whole", path);
    }
    p[n] = '\0';
    *text = p, *len = n;
    return DP_OK;
}

static dp_err_t report_page(run_t *r, const char *own, verdict_t *v)
{
    dp_report_src_t *src = NULL;
    const dp_dataset_t *test = NULL;
    char *json = NULL, *html = NULL, *base = NULL, *diff = NULL;
    size_t hlen = 0, blen = 0;
    dp_err_t err = dp_report_src_new(r->t->campaign, &src);
    if (err) return err;
    dp_report_src_set_store_uri(src, r->t->store_uri);
    dp_report_src_set_threshold(src, r->s.idpb_exec);
    const Dp__V1__Thresholds *th = r->t->thresholds;
    dp_report_src_set_device_budgets(src, th && th->latency_ms ? th->latency_ms->value : NAN,
                                     th && th->energy_mj ? th->energy_mj->value : NAN);
    if (r->t->dataset && r->t->dataset->test_images_uri && *r->t->dataset->test_images_uri) {
        if (load_split(r, 0, &test) == DP_OK)
            dp_report_src_set_seeds(src, test, r->t->dataset->test_images_uri);
        else
            test = NULL;
    }
    dp_report_opts_t o;
    dp_report_opts_init(&o);
    const Dp__V1__Regression *rg = r->t->regression;
    if (rg && rg->baseline_report_uri && *rg->baseline_report_uri) {
        /* a baseline that cannot be read (the first night: there is none
         * yet) leaves the report without its comparison, and says why */
        v->asked = 1;
        v->tolerance_pct = rg->tolerance_pct ? rg->tolerance_pct->value : o.regress_pct;
        o.regress_pct = v->tolerance_pct;
        if (read_baseline(r, rg->baseline_report_uri, &base, &blen) == DP_OK &&
            dp_report_check(base, blen) == DP_OK) {
            o.baseline_json = base, o.baseline_len = blen;
            o.baseline_label = rg->baseline_report_uri;
        } else {
            snprintf(v->missing, sizeof v->missing, "%s", dp_err_detail());
        }
    }
    if ((err = dp_report_collect(src, r->store, r->dir, own, report_cancelled,
                                 (void *)&r->env->hooks)) ||
        (err = dp_report_build(src, &o, &json)) ||
        (err = dp_report_html(json, strlen(json), &html, &hlen)))
        goto done;
    if ((err = upload(r, "report.json", NULL, json))) goto done;
    if ((err = upload(r, "report.html", NULL, html))) goto done;
    if (o.baseline_json) {
        err = dp_report_diff(base, blen, json, strlen(json), o.regress_pct, &diff, &v->changed,
                             &v->worse);
        v->compared = !err;
    }
done:
    if (err && err != DP_ERR_CANCELLED) err = task_stage(err, "cannot make the report");
    free(json);
    free(html);
    free(base);
    free(diff);
    dp_report_src_destroy(&src);
    if (test) drop_split(r, &test);
    return err;
}

static dp_err_t run_report(run_t *r)
{
    const Dp__V1__Task *t = r->t;
    char prefix[PATH_MAX_], own[PATH_MAX_];
    keys_t k = {0};
    char **res = NULL, **meas = NULL, *report = NULL;
    dp_err_t err = join(own, sizeof own, t->output_prefix, "result.json");
    if (err) return err;
    const char *cid = t->campaign && *t->campaign ? t->campaign : NULL;
    if (!cid) return dp_err_set(DP_ERR_INVALID, "task: a REPORT needs its campaign id");
    snprintf(prefix, sizeof prefix, "%s/", cid);
    k.skip = own;
    if ((err = dp_store_list(r->store, prefix, on_key, &k))) {
        err = task_stage(err, "cannot list the results");
        goto done;
    }
    if (k.nomem) {
        err = dp_err_set(DP_ERR_NOMEM, "report: out of memory listing");
        goto done;
    }
    res = calloc(k.n ? k.n : 1, sizeof *res);
    meas = calloc(k.n ? k.n : 1, sizeof *meas);
    if (!res || !meas) {
        err = dp_err_set(DP_ERR_NOMEM, "report: out of memory");
        goto done;
    }
    for (size_t i = 0; i < k.n; i++) {
        if ((err = task_check_cancel(&r->env->hooks))) goto done;
        size_t len;
        if ((err = dp_store_get_mem(r->store, k.v[i], (void **)&res[i], &len))) {
            err = task_stage(err, "cannot fetch a result");
            goto done;
        }
        if (strstr(res[i], "\"kind\":\"measure\"")) {
            char mk[PATH_MAX_];
            size_t base = strlen(k.v[i]) - strlen("result.json");
            snprintf(mk, sizeof mk, "%.*smeasure.json", (int)base, k.v[i]);
            if (dp_store_get_mem(r->store, mk, (void **)&meas[i], &len)) meas[i] = NULL;
        }
    }
    if ((err = dp_task_report(&r->s, k.n, (const char *const *)k.v, (const char *const *)res,
                              (const char *const *)meas, &report)))
        goto done;
    if ((err = upload(r, "summary.json", NULL, report))) goto done;
    const size_t summary_at = r->out->n_artifact_keys - 1;
    verdict_t v = {0};
    if ((err = report_page(r, own, &v))) goto done;
    /* the result's summary: the counts and where the report is (the report
     * itself may be large; the journal keeps the summary) */
    tj_writer_t w;
    tj_init(&w);
    tj_obj(&w);
    task_json_identity(&w, &r->s);
    tj_kint(&w, "results", (int64_t)k.n);
    tj_kstr(&w, "summary_key", r->out->artifact_keys[summary_at]);
    tj_kstr(&w, "report_key", r->out->artifact_keys[summary_at + 1]);
    tj_kstr(&w, "page_key", r->out->artifact_keys[summary_at + 2]);
    if (v.asked) {
        tj_key(&w, "regression");
        tj_obj(&w);
        tj_kstr(&w, "baseline_report_uri", t->regression->baseline_report_uri);
        tj_knum(&w, "tolerance_pct", v.tolerance_pct);
        tj_kbool(&w, "compared", v.compared);
        if (v.compared) {
            tj_kint(&w, "changed", v.changed);
            tj_kint(&w, "worse", v.worse);
        } else {
            tj_kstr(&w, "baseline_missing", v.missing);
        }
        tj_obj_end(&w);
    }
    task_json_provenance(&w);
    tj_obj_end(&w);
    if (!(r->out->summary_json = tj_take(&w))) {
        err = dp_err_set(DP_ERR_NOMEM, "report: out of memory");
        goto done;
    }
    err = upload(r, "result.json", NULL, r->out->summary_json);
done:
    for (size_t i = 0; i < k.n; i++) {
        free(k.v[i]);
        if (res) free(res[i]);
        if (meas) free(meas[i]);
    }
    free(k.v);
    free(res);
    free(meas);
    free(report);
    return err;
}

/* ------------------------------------------------------------- dp_task_run */

/* PREFIX/failure.json: why this attempt failed, for the report (a later
 * attempt's result.json beside it supersedes it). Best effort: a store
 * that cannot take it changes nothing; the error's detail is kept. */
static void note_failure(run_t *r, dp_err_t err)
{
    char keep[1024], key[PATH_MAX_];
    snprintf(keep, sizeof keep, "%s", dp_err_detail());
    tj_writer_t w;
    tj_init(&w);
    tj_obj(&w);
    tj_kstr(&w, "kind", dp_task_kind_name(r->t->kind));
    tj_kstr(&w, "task_id", r->t->id ? r->t->id : "");
    tj_kint(&w, "attempt", r->t->attempt);
    tj_kstr(&w, "error", dp_strerror(err));
    tj_kstr(&w, "reason", keep);
    tj_obj_end(&w);
    char *text = tj_take(&w);
    if (text && !join(key, sizeof key, r->t->output_prefix, "failure.json"))
        dp_store_put_mem(r->store, key, text, strlen(text));
    free(text);
    dp_err_set(err, "%s", keep);
}

dp_err_t dp_task_run(const Dp__V1__Task *t, const dp_task_env_t *env, dp_task_result_t *out)
{
    memset(out, 0, sizeof *out);
    run_t r = {.t = t, .env = env, .out = out};
    dp_err_t err = dp_task_settings_from_task(t, &r.s);
    if (err) return err;
    if (env->measurer) dp_task_settings_measurer(&r.s, env->measurer);
    if (!t->output_prefix || !*t->output_prefix)
        return dp_err_set(DP_ERR_INVALID, "task: output_prefix is missing");
    if (!env->scratch || !*env->scratch)
        return dp_err_set(DP_ERR_INVALID, "task: no scratch directory");
    if (env->store) {
        r.store = env->store;
    } else {
        if (!t->store_uri || !*t->store_uri)
            return dp_err_set(DP_ERR_INVALID, "task: store_uri is missing");
        if ((err = dp_store_new(t->store_uri, env->store_settings, &r.store)))
            return task_stage(err, "cannot open the store");
    }
    if ((err = join(r.dir, sizeof r.dir, env->scratch, "task-XXXXXX"))) goto close;
    if (!mkdtemp(r.dir)) {
        err = dp_err_set(DP_ERR_IO, "%s: cannot create: %s", r.dir, strerror(errno));
        goto close;
    }
    const int saved = nn_get_threads();
    if (env->threads >= 0) nn_set_threads(env->threads);
    r.s.threads = nn_get_threads();
    double t0 = dp_clock_s();
    switch (t->kind) {
    case DP__V1__TASK_KIND__TASK_KIND_TRAIN:
        err = run_train(&r);
        break;
    case DP__V1__TASK_KIND__TASK_KIND_REPORT:
        err = run_report(&r);
        break;
    default:
        err = run_samples(&r);
        break;
    }
    out->seconds = dp_clock_s() - t0;
    nn_set_threads(saved);
    dp_path_remove_tree(r.dir);
    /* not when the store is away: the note would only wait out its retries */
    if (err && err != DP_ERR_CANCELLED && err != DP_ERR_NETWORK && err != DP_ERR_TIMEOUT)
        note_failure(&r, err);
close:
    if (r.store != env->store) dp_store_destroy(&r.store);
    if (err) {
        char keep[1024];
        snprintf(keep, sizeof keep, "%s", dp_err_detail());
        dp_task_result_clear(out);
        dp_err_set(err, "%s", keep);
    }
    return err;
}
