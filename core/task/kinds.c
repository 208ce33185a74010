/* TRAIN, GENERATE and BASELINE on local inputs (task.h), and what the task
 * layer's files share: stage errors, the summaries' identity and
 * provenance members. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn/blas.h"
#include "nn/gemm.h"
#include "task/task_impl.h"
#include "util/clock.h"
#include "util/utf8.h"

/* ------------------------------------------------------------- shared */

dp_err_t task_stage(dp_err_t err, const char *what)
{
    char detail[768];
    snprintf(detail, sizeof detail, "%s", dp_err_detail());
    return dp_err_set(err, "%s: %s: %s", what, dp_strerror(err), detail);
}

dp_err_t task_check_cancel(const perf_hooks_t *h)
{
    if (perf_hooks_cancelled(h) != PERF_GO_ON)
        return dp_err_set(DP_ERR_CANCELLED, "cancelled before the work started");
    return DP_OK;
}

const char *task_method_word(const dp_task_settings_t *s)
{
    return s->seeds ? "seeds" : perf_method_name(s->method);
}

void task_json_identity(tj_writer_t *w, const dp_task_settings_t *s)
{
    tj_kstr(w, "kind", dp_task_kind_name(s->kind));
    if (*s->task_id) tj_kstr(w, "task_id", s->task_id);
    if (*s->campaign) tj_kstr(w, "campaign", s->campaign);
    if (s->kind == DP__V1__TASK_KIND__TASK_KIND_REPORT) return;
    tj_kstr(w, "model", s->model_name);
    if (!s->seeds) {
        tj_kstr(w, "norm", perf_norm_name(s->budget.norm));
        tj_kfloat(w, "eps", s->budget.eps);
        tj_kbool(w, "l2_at_most", s->budget.l2_at_most);
    }
    if (s->kind != DP__V1__TASK_KIND__TASK_KIND_TRAIN) {
        tj_kstr(w, "method", task_method_word(s));
        tj_kint(w, "shard", s->shard_index);
        tj_kint(w, "seed_begin", s->seed_begin);
        tj_kint(w, "seed_end", s->seed_end);
    }
    if (*s->device_class) tj_kstr(w, "device_class", s->device_class);
}

void task_json_provenance(tj_writer_t *w)
{
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
    tj_key(w, "provenance");
    tj_obj(w);
    tj_kstr(w, "blas_core", nn_blas_corename());
    tj_kstr(w, "gemm_path", nn_gemm_path_name(nn_gemm_get_path()));
    tj_kint(w, "threads", nn_get_threads());
    tj_kstr(w, "host", host);
    tj_obj_end(w);
}

dp_err_t task_write_file(const char *path, const char *data, size_t len)
{
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path) >= sizeof tmp)
        return dp_err_set(DP_ERR_INVALID, "%s: path too long", path);
    int fd = mkstemp(tmp);
    if (fd < 0) return dp_err_set(DP_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    size_t off = 0;
    while (off < len) {
        ssize_t k = write(fd, data + off, len - off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        off += (size_t)k;
    }
    int bad = off != len;
    if (close(fd) != 0) bad = 1;
    if (bad || rename(tmp, path) != 0) {
        dp_err_t err = dp_err_set(DP_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        unlink(tmp);
        return err;
    }
    return DP_OK;
}

void dp_task_output_clear(dp_task_output_t *o)
{
    free(o->summary_json);
    perf_samples_destroy(&o->samples);
    memset(o, 0, sizeof *o);
}

dp_err_t dp_task_check_shape(const adnn_model_t *m, const dp_dataset_t *d, const char *what)
{
    const adnn_spec_t *s = adnn_model_spec(m);
    if ((int)d->c == s->c && (int)d->h == s->h && (int)d->w == s->w) return DP_OK;
    return dp_err_set(DP_ERR_MISMATCH, "the images in %s are %ux%ux%u, the model expects %dx%dx%d",
                      what, d->c, d->h, d->w, s->c, s->h, s->w);
}

dp_err_t dp_task_model_load(const char *spec_path, const char *weights_path, adnn_model_t **out)
{
    return adnn_model_load_files(spec_path, weights_path, out);
}

/* ------------------------------------------------------------- TRAIN */

static char *train_json(const dp_task_settings_t *s, const perf_train_result_t *r, int ntrain,
                        int nval)
{
    tj_writer_t w;
    tj_init(&w);
    tj_obj(&w);
    task_json_identity(&w, s);
    tj_kint(&w, "width", s->width);
    tj_kint(&w, "batch", s->batch);
    tj_kint(&w, "epochs", s->epochs);
    tj_kint(&w, "train_images", ntrain);
    tj_kint(&w, "heldout_images", nval);
    tj_kint(&w, "epochs_run", r->epochs_run);
    tj_kint(&w, "best_epoch", r->best_epoch);
    tj_knum(&w, "best_exec", r->best_exec);
    tj_kint(&w, "resumed_from", r->resumed_from);
    tj_kbool(&w, "early_stopped", r->early_stopped);
    tj_kbool(&w, "time_limited", r->time_limited);
    tj_knum(&w, "seconds", r->seconds);
    task_json_provenance(&w);
    tj_obj_end(&w);
    return tj_take(&w);
}

dp_err_t dp_task_train(const dp_task_settings_t *s, const dp_task_io_t *io, dp_task_output_t *out)
{
    memset(out, 0, sizeof *out);
    uint32_t t0, nt, v0, nv;
    dp_err_t err = dp_task_train_split(s, io->train->n, &t0, &nt, &v0, &nv);
    if (err) return err;
    if ((err = dp_task_check_shape(io->model, io->train, "the training split"))) return err;
    perf_train_config_t c = dp_task_train_config(s);
    c.checkpoint = io->checkpoint;
    c.hooks = io->hooks;
    size_t d = dp_dataset_sample_size(io->train);
    perf_gen_t *g = NULL;
    double t = dp_clock_s();
    err = perf_train(io->model, io->train->images + (size_t)t0 * d, (int)nt,
                     io->train->images + (size_t)v0 * d, (int)nv, &c, &g, &out->train);
    if (err) return task_stage(err, "train");
    if ((err = perf_gen_save(g, &c.budget, io->out))) {
        perf_gen_destroy(&g);
        return task_stage(err, "cannot save the generator");
    }
    perf_gen_destroy(&g);
    out->seconds = dp_clock_s() - t;
    if (!(out->summary_json = train_json(s, &out->train, (int)nt, (int)nv)))
        return dp_err_set(DP_ERR_NOMEM, "train: out of memory for the summary");
    return DP_OK;
}

/* ------------------------------------------------------------- samples */

char *dp_task_samples_json(const dp_task_settings_t *s, const perf_samples_t *set)
{
    perf_summary_t r;
    perf_summarize(set, s->idpb_exec, &r);
    tj_writer_t w;
    tj_init(&w);
    tj_obj(&w);
    task_json_identity(&w, s);
    tj_kint(&w, "n", r.n);
    tj_knum(&w, "iflops_mean", r.iflops_mean);
    tj_knum(&w, "iflops_max", r.iflops_max);
    tj_knum(&w, "exec_fraction_seed_mean", r.exec_seed_mean);
    tj_knum(&w, "exec_fraction_mean", r.exec_mean);
    tj_knum(&w, "psnr_mean", r.psnr_mean);
    tj_knum(&w, "norm_mean", r.norm_mean);
    tj_knum(&w, "norm_max", r.norm_max);
    tj_kbool(&w, "within_budget", r.within_budget);
    tj_knum(&w, "seconds", set->seconds);
    tj_knum(&w, "seconds_per_input", r.seconds_per_input);
    tj_knum(&w, "idpb_threshold", s->idpb_exec);
    tj_knum(&w, "idpb_rate", r.idpb_rate);
    tj_knum(&w, "flops_full", set->flops_full);
    task_json_provenance(&w);
    tj_obj_end(&w);
    return tj_take(&w);
}

/* The n = seed_end - seed_begin seeds of the test split (after the shape
 * check) into a new sample set with their indices. */
static dp_err_t seed_set(const dp_task_settings_t *s, const dp_task_io_t *io, perf_samples_t **out,
                         const float **x)
{
    const dp_dataset_t *t = io->test;
    dp_err_t err = dp_task_check_shape(io->model, t, "the test split");
    if (err) return err;
    if (s->seed_begin >= s->seed_end || s->seed_end > t->n)
        return dp_err_set(DP_ERR_RANGE, "seeds [%u, %u) exceed the %u test images", s->seed_begin,
                          s->seed_end, t->n);
    int n = (int)(s->seed_end - s->seed_begin);
    if (!(*out = perf_samples_new(n, (int)t->c, (int)t->h, (int)t->w)))
        return dp_err_set(DP_ERR_NOMEM, "samples: out of memory for %d inputs", n);
    for (int i = 0; i < n; i++) (*out)->seed_index[i] = (int64_t)s->seed_begin + i;
    *x = t->images + (size_t)s->seed_begin * dp_dataset_sample_size(t);
    return DP_OK;
}

/* Names the set after the settings' model (whole characters), saves it,
 * summarises it. */
static dp_err_t finish_set(const dp_task_settings_t *s, const dp_task_io_t *io, perf_samples_t *set,
                           dp_task_output_t *out)
{
    if (s->model_name && *s->model_name) dp_utf8_copy(set->model, sizeof set->model, s->model_name);
    dp_err_t err = perf_samples_save(set, io->out);
    if (err) return task_stage(err, "cannot save the samples");
    if (!(out->summary_json = dp_task_samples_json(s, set)))
        return dp_err_set(DP_ERR_NOMEM, "out of memory for the summary");
    return DP_OK;
}

/* ------------------------------------------------------------- GENERATE */

/* perf_generate with seed i in batch slot i mod B: the first batch is
 * padded in front with copies of the first seed (their figures dropped), so
 * a seed's x' does not depend on where its shard starts. */
static dp_err_t generate_aligned(perf_gen_t *g, adnn_model_t *m, const perf_budget_t *b,
                                 const float *x, perf_samples_t *set, uint32_t first, int workers)
{
    int B = perf_gen_config(g)->max_batch, off = (int)(first % (uint32_t)B);
    if (off == 0) return perf_generate(g, m, b, x, set, workers);
    size_t d = (size_t)set->c * set->h * set->w;
    int n = set->n + off;
    perf_samples_t *run = perf_samples_new(n, set->c, set->h, set->w);
    float *xr = malloc((size_t)n * d * sizeof(float));
    dp_err_t err = DP_OK;
    if (!run || !xr) {
        err = dp_err_set(DP_ERR_NOMEM, "generate: out of memory for %d inputs", n);
        goto done;
    }
    for (int i = 0; i < off; i++) {
        memcpy(xr + (size_t)i * d, x, d * sizeof(float));
        run->seed_index[i] = set->seed_index[0];
    }
    memcpy(xr + (size_t)off * d, x, (size_t)set->n * d * sizeof(float));
    memcpy(run->seed_index + off, set->seed_index, (size_t)set->n * sizeof(int64_t));
    if ((err = perf_generate(g, m, b, xr, run, workers))) goto done;
    int k = set->n;
    memcpy(set->xadv, run->xadv + (size_t)off * d, (size_t)k * d * sizeof(float));
    memcpy(set->delta_norm, run->delta_norm + off, (size_t)k * sizeof(float));
    memcpy(set->psnr, run->psnr + off, (size_t)k * sizeof(float));
    memcpy(set->flops_seed, run->flops_seed + off, (size_t)k * sizeof(double));
    memcpy(set->flops_adv, run->flops_adv + off, (size_t)k * sizeof(double));
    set->flops_full = run->flops_full;
    set->seconds = run->seconds * k / n; /* the share of the seeds kept */
    set->method = run->method;
    set->budget = run->budget;
    memcpy(set->model, run->model, sizeof set->model);
done:
    perf_samples_destroy(&run);
    free(xr);
    return err;
}

dp_err_t dp_task_generate(const dp_task_settings_t *s, const dp_task_io_t *io,
                          dp_task_output_t *out)
{
    memset(out, 0, sizeof *out);
    perf_samples_t *set = NULL;
    perf_gen_t *g = NULL;
    perf_budget_t b;
    const float *x = NULL;
    dp_err_t err = seed_set(s, io, &set, &x);
    if (err) goto done;
    if ((err = perf_gen_load(io->generator, s->batch, &g, &b))) {
        err = task_stage(err, "cannot load the generator");
        goto done;
    }
    if (!io->budget_from_generator &&
        (b.norm != s->budget.norm || b.eps != s->budget.eps ||
         (b.norm == PERF_NORM_L2 && b.l2_at_most != s->budget.l2_at_most))) {
        err = dp_err_set(DP_ERR_MISMATCH,
                         "generate: the generator %s was trained for %s eps %g%s, the task is %s "
                         "eps %g%s",
                         io->generator, perf_norm_name(b.norm), (double)b.eps,
                         b.l2_at_most ? "" : " (exactly)", perf_norm_name(s->budget.norm),
                         (double)s->budget.eps, s->budget.l2_at_most ? "" : " (exactly)");
        goto done;
    }
    if ((err = task_check_cancel(&io->hooks))) goto done;
    double t = dp_clock_s();
    if ((err = generate_aligned(g, io->model, &b, x, set, s->seed_begin, nn_get_threads()))) {
        err = task_stage(err, "generate");
        goto done;
    }
    out->seconds = dp_clock_s() - t;
    dp_task_settings_t sb = *s;
    sb.budget = b;
    if ((err = finish_set(&sb, io, set, out))) goto done;
    if (io->keep_samples) {
        out->samples = set;
        set = NULL;
    }
done:
    perf_gen_destroy(&g);
    perf_samples_destroy(&set);
    return err;
}

/* ------------------------------------------------------------- BASELINE */

dp_err_t dp_task_baseline(const dp_task_settings_t *s, const dp_task_io_t *io,
                          dp_task_output_t *out)
{
    memset(out, 0, sizeof *out);
    if (s->method == PERF_METHOD_DEEPPERFORM || (unsigned)s->method > PERF_METHOD_DEEPSLOTH)
        return dp_err_set(DP_ERR_INVALID, "baseline: the method is random, ilfo or deepsloth");
    perf_samples_t *set = NULL;
    const float *x = NULL;
    dp_err_t err = seed_set(s, io, &set, &x);
    if (err) goto done;
    if ((err = task_check_cancel(&io->hooks))) goto done;
    /* the thread count as seed workers of one thread each (one worker too):
     * the same bits whatever the count */
    const int workers = nn_get_threads();
    /* ILFO and DeepSloth: seed i in batch slot i mod batch (full batches),
     * so a seed's x' does not depend on where its shard starts */
    double t = dp_clock_s();
    nn_set_threads(1);
    if (s->method == PERF_METHOD_RANDOM) {
        err = perf_random(io->model, &s->budget, s->seed, x, set, workers);
    } else if (s->method == PERF_METHOD_ILFO) {
        perf_ilfo_config_t c = dp_task_ilfo_config(s);
        c.first_slot = (int)(s->seed_begin % (uint32_t)(c.batch > 0 ? c.batch : 1));
        c.workers = workers;
        c.hooks = io->hooks;
        err = perf_ilfo(io->model, &s->budget, &c, x, set);
    } else {
        perf_sloth_config_t c = dp_task_sloth_config(s);
        c.first_slot = (int)(s->seed_begin % (uint32_t)(c.batch > 0 ? c.batch : 1));
        c.workers = workers;
        c.hooks = io->hooks;
        err = perf_deepsloth(io->model, &s->budget, &c, x, set);
    }
    nn_set_threads(workers);
    if (err) {
        err = task_stage(err, perf_method_name(s->method));
        goto done;
    }
    out->seconds = dp_clock_s() - t;
    if ((err = finish_set(s, io, set, out))) goto done;
    if (io->keep_samples) {
        out->samples = set;
        set = NULL;
    }
done:
    perf_samples_destroy(&set);
    return err;
}
