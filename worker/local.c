/* Local mode (local.h): the coordinator, a trainer and the measurers as
 * threads of this process over inproc://, and a client that submits and
 * waits. The order of the end matters: the workers stop first (their
 * Disconnect gives a running task's lease back), then the coordinator
 * (it commits what it handled), then the context. */
#include "local.h"

#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "server.h"
#include "util/clock.h"
#include "util/log.h"

#define COMP             "local"
#define LOCAL_TIMEOUT_MS 60000u /* a request to our own coordinator: it is here or it failed */
#define REGISTER_WAIT_MS 5000u  /* for the workers' Hello before the first progress */

typedef struct local local_t;

typedef struct runner {
    local_t *l;
    int measurer;
} runner_t;

typedef struct wthread {
    dp_worker_t *w;
    runner_t r;
    pthread_t th;
    int started;
    dp_err_t rc;
    char detail[512];
    local_t *l;
} wthread_t;

struct local {
    const dp_local_opts_t *o;
    volatile sig_atomic_t *stop; /* the caller's */
    volatile sig_atomic_t halt;  /* the wait's: the caller's stop, or a part failed */
    atomic_int failed;           /* the coordinator or a worker ended on its own */
    atomic_int stopping;         /* we asked them to end */
    /* the coordinator */
    dp_coord_server_t *srv;
    pthread_t srv_th;
    int srv_started;
    dp_err_t srv_rc;
    char srv_detail[512];
    /* workers: [0] the trainer, then one measurer per device class */
    wthread_t *w;
    dp_task_cache_t *cache;
    size_t nw;
    /* spans */
    pthread_mutex_t mu;
    dp_local_span_t *spans;
    size_t n_spans, cap_spans;
};

void dp_local_opts_init(dp_local_opts_t *o) { memset(o, 0, sizeof *o); }

dp_err_t dp_local_default_dir(const Dp__V1__Campaign *c, char *buf, size_t size)
{
    const char *name = c && c->name && *c->name ? c->name : "campaign";
    const int n = snprintf(buf, size, DP_LOCAL_DIR_ROOT "/%s", name);
    if (n < 0 || (size_t)n >= size)
        return dp_err_set(DP_ERR_RANGE, "local: the directory " DP_LOCAL_DIR_ROOT "/%s is too long",
                          name);
    return DP_OK;
}

dp_err_t dp_local_token(const Dp__V1__Campaign *c, char *buf, size_t size)
{
    if (size < DP_LOCAL_TOKEN_LEN + 1)
        return dp_err_set(DP_ERR_RANGE, "local: a token needs %d bytes", DP_LOCAL_TOKEN_LEN + 1);
    const size_t n = protobuf_c_message_get_packed_size(&c->base);
    uint8_t *bytes = malloc(n ? n : 1);
    if (!bytes) return dp_err_set(DP_ERR_NOMEM, "local: out of memory");
    protobuf_c_message_pack(&c->base, bytes);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    const int ok = EVP_Digest(bytes, n, md, &mdlen, EVP_sha256(), NULL);
    free(bytes);
    if (!ok || mdlen < 16) return dp_err_set(DP_ERR_UNSUPPORTED, "local: SHA-256 failed");
    int at = snprintf(buf, size, "local-");
    for (int i = 0; i < 16; i++) at += snprintf(buf + at, size - (size_t)at, "%02x", md[i]);
    return DP_OK;
}

size_t dp_local_overlaps(const dp_local_span_t *spans, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!spans[i].measurer) continue;
        for (size_t j = 0; j < n; j++)
            if (!spans[j].measurer && spans[j].start_ns < spans[i].end_ns &&
                spans[i].start_ns < spans[j].end_ns) {
                k++;
                break;
            }
    }
    return k;
}

void dp_local_result_clear(dp_local_result_t *r)
{
    if (!r) return;
    dp_client_status_free(&r->final);
    free(r->spans);
    memset(r, 0, sizeof *r);
}

/* ------------------------------------------------------------- directories */

/* mkdir -p path (mode 0755). */
static dp_err_t make_dirs(const char *path)
{
    char p[PATH_MAX];
    if (snprintf(p, sizeof p, "%s", path) >= (int)sizeof p)
        return dp_err_set(DP_ERR_RANGE, "local: the path %s is too long", path);
    for (char *s = p + 1;; s++) {
        const char ch = *s;
        if (ch != '/' && ch != '\0') continue;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            return dp_err_set(errno == ENOENT ? DP_ERR_NOTFOUND : DP_ERR_IO,
                              "local: cannot make the directory %s: %s", p, strerror(errno));
        struct stat st;
        if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode))
            return dp_err_set(DP_ERR_IO, "local: %s is not a directory", p);
        *s = ch;
        if (!ch) break;
    }
    return DP_OK;
}

static dp_err_t sub_dir(const char *dir, const char *name, char *buf, size_t size)
{
    if (snprintf(buf, size, "%s/%s", dir, name) >= (int)size)
        return dp_err_set(DP_ERR_RANGE, "local: the path %s/%s is too long", dir, name);
    return make_dirs(buf);
}

/* ------------------------------------------------------------- threads */

static dp_err_t timed_run(void *arg, const Dp__V1__Task *t, const dp_task_env_t *env,
                          dp_task_result_t *out)
{
    runner_t *r = arg;
    local_t *l = r->l;
    const uint64_t t0 = dp_clock_ns();
    const dp_err_t err =
        l->o->run ? l->o->run(l->o->run_arg, t, env, out) : dp_task_run(t, env, out);
    const uint64_t t1 = dp_clock_ns();
    pthread_mutex_lock(&l->mu);
    if (l->n_spans == l->cap_spans) {
        const size_t cap = l->cap_spans ? 2 * l->cap_spans : 64;
        dp_local_span_t *s = realloc(l->spans, cap * sizeof *s);
        if (s) l->spans = s, l->cap_spans = cap;
    }
    if (l->n_spans < l->cap_spans) { /* out of memory: the span is not kept */
        dp_local_span_t *s = &l->spans[l->n_spans++];
        memset(s, 0, sizeof *s);
        s->measurer = r->measurer;
        s->kind = t->kind;
        snprintf(s->task_id, sizeof s->task_id, "%s", t->id ? t->id : "");
        s->attempt = t->attempt;
        s->start_ns = t0, s->end_ns = t1;
        s->err = err;
    }
    pthread_mutex_unlock(&l->mu);
    return err;
}

static void *server_main(void *arg)
{
    local_t *l = arg;
    l->srv_rc = dp_coord_server_run(l->srv, NULL);
    if (l->srv_rc) snprintf(l->srv_detail, sizeof l->srv_detail, "%s", dp_err_detail());
    if (!atomic_load(&l->stopping)) atomic_store(&l->failed, 1);
    return NULL;
}

static void *worker_main(void *arg)
{
    wthread_t *w = arg;
    w->rc = dp_worker_run(w->w, NULL);
    if (w->rc) snprintf(w->detail, sizeof w->detail, "%s", dp_err_detail());
    if (!atomic_load(&w->l->stopping)) atomic_store(&w->l->failed, 1);
    return NULL;
}

/* The caller's hook, then: stop waiting when asked to or when a part of
 * this process has ended on its own. */
static void on_poll(void *arg, const Dp__V1__StatusReply *r, uint64_t elapsed_ms)
{
    local_t *l = arg;
    if (l->o->progress) l->o->progress(l->o->progress_arg, r, elapsed_ms);
    if ((l->stop && *l->stop) || atomic_load(&l->failed)) l->halt = 1;
}

static dp_err_t start_worker(local_t *l, wthread_t *w, void *ctx, int measurer,
                             const Dp__V1__DeviceClass *dc, const char *scratch)
{
    const dp_local_opts_t *o = l->o;
    dp_worker_opts_t wo;
    dp_worker_opts_init(&wo);
    wo.role = measurer ? DP__V1__ROLE__ROLE_MEASURER : DP__V1__ROLE__ROLE_TRAINER;
    wo.endpoint = DP_LOCAL_ENDPOINT;
    wo.zmq_ctx = ctx;
    wo.host = measurer ? o->measurer_host : NULL; /* NULL: this machine's name, for both */
    wo.device_class = measurer ? dc->name : NULL;
    wo.probe = measurer ? dc->probe : 0;
    wo.scratch = scratch;
    wo.threads = o->threads;
    if (o->heartbeat_ms) wo.heartbeat_ms = o->heartbeat_ms;
    wo.store_settings = o->store_settings;
    wo.run = timed_run;
    wo.cache = l->cache;
    w->l = l;
    w->r.l = l;
    w->r.measurer = measurer;
    wo.run_arg = &w->r;
    dp_err_t err = dp_worker_new(&wo, &w->w);
    if (err) return err;
    if (pthread_create(&w->th, NULL, worker_main, w))
        return dp_err_set(DP_ERR_NOMEM, "local: cannot start a worker thread");
    w->started = 1;
    return DP_OK;
}

/* ------------------------------------------------------------- the run */

/* Waits (at most REGISTER_WAIT_MS) until the coordinator lists every worker
 * of l alive, so the first progress line does not say a class has no
 * measurer while its Hello is on the way. Best effort. */
static void await_workers(local_t *l, dp_client_t *c, volatile sig_atomic_t *stop)
{
    const uint64_t end = dp_clock_ns() / 1000000u + REGISTER_WAIT_MS;
    while (dp_clock_ns() / 1000000u < end && !(stop && *stop) && !atomic_load(&l->failed)) {
        Dp__V1__StatusReply *r = NULL;
        if (dp_client_status(c, NULL, 0, 1, stop, &r)) return;
        size_t alive = 0;
        for (size_t i = 0; i < l->nw; i++)
            for (size_t k = 0; k < r->n_workers; k++)
                if (r->workers[k]->alive && r->workers[k]->worker_id &&
                    !strcmp(r->workers[k]->worker_id, dp_worker_id(l->w[i].w))) {
                    alive++;
                    break;
                }
        dp_client_status_free(&r);
        if (alive == l->nw) return;
        const struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* Cancels the running campaigns of the journal other than cid. */
static dp_err_t supersede(dp_client_t *c, const char *cid, const char *dir,
                          volatile sig_atomic_t *stop, uint32_t *n)
{
    Dp__V1__StatusReply *r = NULL;
    dp_err_t err = dp_client_status(c, NULL, 0, 0, stop, &r);
    if (err) return err;
    char reason[2 * PATH_MAX + 1024];
    snprintf(reason, sizeof reason, "superseded by campaign %s (dp-submit --local on %s)", cid,
             dir);
    for (size_t i = 0; i < r->n_campaigns && !err; i++) {
        const Dp__V1__CampaignStatus *cs = r->campaigns[i];
        if (cs->state != DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_RUNNING || !cs->campaign_id ||
            !strcmp(cs->campaign_id, cid))
            continue;
        uint32_t k = 0;
        if (!(err = dp_client_cancel(c, cs->campaign_id, reason, stop, &k))) {
            dp_warn(COMP, "campaign %s was running in %s: cancelled (%u tasks), superseded by %s",
                    cs->campaign_id, dir, k, cid);
            (*n)++;
        }
    }
    dp_client_status_free(&r);
    return err;
}

dp_err_t dp_local_run(const Dp__V1__Campaign *camp, const dp_local_opts_t *o,
                      volatile sig_atomic_t *stop, dp_local_result_t *out)
{
    memset(out, 0, sizeof *out);
    if (!camp || !o) return dp_err_set(DP_ERR_INVALID, "local: no campaign");
    if (!o->dir || !*o->dir) return dp_err_set(DP_ERR_INVALID, "local: no directory");
    if (o->threads < 0 || o->threads > 4096)
        return dp_err_set(DP_ERR_INVALID, "local: threads %d not in [0, 4096]", o->threads);

    /* DIR and what lives in it */
    dp_err_t err = make_dirs(o->dir);
    if (err) return err;
    if (!realpath(o->dir, out->dir))
        return dp_err_set(DP_ERR_IO, "local: %s: %s", o->dir, strerror(errno));
    char scratch[PATH_MAX], path[PATH_MAX];
    if (snprintf(out->journal, sizeof out->journal, "%s/journal", out->dir) >=
        (int)sizeof out->journal)
        return dp_err_set(DP_ERR_RANGE, "local: the path %s is too long", out->dir);
    if ((err = sub_dir(out->dir, "scratch", scratch, sizeof scratch))) return err;
    Dp__V1__Campaign cc = *camp; /* shallow: only store_uri changes */
    if (!o->keep_store_uri) {
        if ((err = sub_dir(out->dir, "store", out->store_dir, sizeof out->store_dir))) return err;
        snprintf(out->store_uri, sizeof out->store_uri, "file://%s", out->store_dir);
    } else {
        snprintf(out->store_uri, sizeof out->store_uri, "%s", camp->store_uri);
        if (!strncmp(camp->store_uri, "file:///", 8))
            snprintf(out->store_dir, sizeof out->store_dir, "%s", camp->store_uri + 7);
    }
    cc.store_uri = out->store_uri;
    if (o->token)
        snprintf(out->token, sizeof out->token, "%s", o->token);
    else if ((err = dp_local_token(&cc, out->token, sizeof out->token)))
        return err;
    out->threads = o->threads > 0 ? o->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    out->measurers = (int)camp->n_device_classes;

    local_t l;
    memset(&l, 0, sizeof l);
    l.o = o;
    l.stop = stop;
    atomic_init(&l.failed, 0);
    atomic_init(&l.stopping, 0);
    if (pthread_mutex_init(&l.mu, NULL)) return dp_err_set(DP_ERR_NOMEM, "local: no mutex");
    dp_client_t *cl = NULL;
    Dp__V1__StatusReply *fin = NULL;
    void *ctx = zmq_ctx_new();
    if (!ctx) {
        err = dp_err_set(DP_ERR_NOMEM, "local: zmq_ctx_new: %s", zmq_strerror(errno));
        goto end;
    }

    /* the coordinator */
    dp_coord_server_opts_t so;
    dp_coord_server_opts_init(&so);
    so.bind = DP_LOCAL_ENDPOINT;
    so.journal_path = out->journal;
    so.zmq_ctx = ctx;
    so.coordinator_id = "local";
    if (o->heartbeat_ms) so.heartbeat_ms = o->heartbeat_ms;
    if (o->max_attempts) so.max_attempts = o->max_attempts;
    if ((err = dp_coord_server_new(&so, &l.srv))) {
        if (err == DP_ERR_EXISTS)
            err = dp_err_set(DP_ERR_EXISTS,
                             "local: another process runs a campaign on %s (%s is locked)",
                             out->dir, out->journal);
        goto end;
    }
    if (pthread_create(&l.srv_th, NULL, server_main, &l)) {
        err = dp_err_set(DP_ERR_NOMEM, "local: cannot start the coordinator's thread");
        goto end;
    }
    l.srv_started = 1;
    dp_info(COMP, "%s: journal %s, store %s, %d threads, %zu measurers", out->dir, out->journal,
            out->store_uri, out->threads, camp->n_device_classes);

    /* submit (a known token: the journal has it, nothing new) */
    dp_client_opts_t co;
    dp_client_opts_init(&co);
    co.endpoint = DP_LOCAL_ENDPOINT;
    co.zmq_ctx = ctx;
    co.timeout_ms = LOCAL_TIMEOUT_MS;
    co.client_id = "dp-submit-local";
    if ((err = dp_client_new(&co, &cl))) goto end;
    dp_client_submitted_t sub;
    if ((err = dp_client_submit(cl, &cc, out->token, stop, &sub))) goto end;
    snprintf(out->campaign_id, sizeof out->campaign_id, "%s", sub.campaign_id);
    out->tasks = sub.tasks;
    out->resumed = sub.duplicate;
    dp_info(COMP, "campaign %s: %s, %u tasks", sub.campaign_id,
            sub.duplicate ? "in the journal already: resumed" : "submitted", sub.tasks);
    if ((err = supersede(cl, sub.campaign_id, out->dir, stop, &out->superseded))) goto end;

    /* the workers: the trainer, then a measurer per device class, one cache */
    if (!o->no_split_cache && (err = dp_task_cache_new(o->split_cache_bytes, &l.cache))) goto end;
    l.nw = 1 + camp->n_device_classes;
    if (!(l.w = calloc(l.nw, sizeof *l.w))) {
        err = dp_err_set(DP_ERR_NOMEM, "local: out of memory");
        goto end;
    }
    if ((err = sub_dir(scratch, "trainer", path, sizeof path)) ||
        (err = start_worker(&l, &l.w[0], ctx, 0, NULL, path)))
        goto end;
    for (size_t i = 0; i < camp->n_device_classes; i++) {
        char name[300];
        snprintf(name, sizeof name, "measurer-%s", camp->device_classes[i]->name);
        if ((err = sub_dir(scratch, name, path, sizeof path)) ||
            (err = start_worker(&l, &l.w[1 + i], ctx, 1, camp->device_classes[i], path)))
            goto end;
    }

    /* wait */
    await_workers(&l, cl, stop);
    const uint64_t t0 = dp_clock_ns();
    err = dp_client_wait(cl, sub.campaign_id, o->poll_ms, on_poll, &l, &l.halt, &fin);
    out->seconds = (double)(dp_clock_ns() - t0) * 1e-9;
    if (err == DP_ERR_INTERRUPTED && !(stop && *stop))
        err = DP_OK; /* a part failed: said below */
    else if (err == DP_ERR_TIMEOUT)
        err = dp_err_set(DP_ERR_TIMEOUT, "local: the coordinator stopped answering");
    if (!err) {
        out->final = fin;
        fin = NULL;
    }

end:;
    /* the end, in order: the workers, the coordinator, the context */
    char detail[1024];
    snprintf(detail, sizeof detail, "%s", dp_err_detail());
    atomic_store(&l.stopping, 1);
    dp_client_destroy(&cl);
    for (size_t i = 0; i < l.nw; i++)
        if (l.w[i].started) dp_worker_stop(l.w[i].w);
    for (size_t i = 0; i < l.nw; i++)
        if (l.w[i].started) pthread_join(l.w[i].th, NULL);
    if (l.srv_started) {
        dp_coord_server_stop(l.srv);
        pthread_join(l.srv_th, NULL);
    }
    /* a part that ended on its own, when nothing else went wrong */
    if (!err && l.srv_started && l.srv_rc) {
        err = l.srv_rc;
        snprintf(detail, sizeof detail, "local: the coordinator failed: %s", l.srv_detail);
    }
    for (size_t i = 0; !err && i < l.nw; i++)
        if (l.w[i].started && l.w[i].rc) {
            err = l.w[i].rc;
            snprintf(detail, sizeof detail, "local: the %s failed: %s", i ? "measurer" : "trainer",
                     l.w[i].detail);
        }
    if (!err && !out->final && l.srv_started) {
        err = DP_ERR_INTERRUPTED; /* halted for a part that then stopped cleanly */
        snprintf(detail, sizeof detail, "local: a worker or the coordinator ended early");
    }
    for (size_t i = 0; i < l.nw; i++) dp_worker_destroy(&l.w[i].w);
    free(l.w);
    if (l.cache) dp_task_cache_stats(l.cache, &out->split_cache);
    dp_task_cache_destroy(&l.cache);
    dp_coord_server_destroy(&l.srv);
    if (ctx) zmq_ctx_term(ctx);
    dp_client_status_free(&fin);
    out->spans = l.spans;
    out->n_spans = l.n_spans;
    out->overlaps = dp_local_overlaps(l.spans, l.n_spans);
    pthread_mutex_destroy(&l.mu);
    if (err) {
        dp_client_status_free(&out->final);
        return dp_err_set(err, "%s", detail);
    }
    return DP_OK;
}
