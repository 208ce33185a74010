/* The worker's two threads (worker.h): the socket thread's loop and the
 * compute thread that runs one task. They share the job: the compute
 * thread writes its progress under the worker's lock and its outcome before
 * setting job->done (then a byte on the wake pipe); the socket thread reads
 * the outcome only after joining the thread. */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "http/http.h"
#include "util/clock.h"
#include "util/log.h"
#include "wire/envelope.h"
#include "wire/sock.h"

#define POLL_MAX_MS    250   /* the loop looks at progress and finished work this often */
#define STOP_WAIT_MS   1000  /* at stop: how long an unacknowledged result waits for its Ack */
#define RERUN_FIRST_MS 1000  /* the store unreachable: the first pause before a rerun */
#define RERUN_MAX_MS   15000 /* ... doubling up to this */

typedef struct job {
    struct dp_worker *w;
    Dp__V1__Envelope *env; /* owns the Assign, hence the task */
    const Dp__V1__Task *t;
    pthread_t tid;
    int started, joined;
    atomic_int done;   /* the compute thread has finished */
    atomic_int cancel; /* PERF_STOP_NOW when cancelled */
    int cancel_by_coordinator;
    /* progress, under the worker's lock */
    uint64_t p_done, p_total;
    char p_line[512];
    int p_dirty;
    uint64_t p_sent_ms;
    /* the outcome, written by the compute thread before done */
    dp_err_t err;
    char detail[1024];
    dp_task_result_t res;
    double seconds;
    /* delivery */
    uint64_t sent_ms; /* 0: not sent yet */
    int sends;
} job_t;

struct dp_worker {
    Dp__V1__Role role;
    const char *comp; /* log component */
    char *endpoint, *id, *host, *device_class, *scratch, *server_key;
    Dp__V1__EnergyProbe probe;
    const dp_task_measurer_t *measurer;
    int threads;
    uint32_t hb0, live0; /* before the Welcome */
    size_t max_message;
    dp_wire_keypair_t kp;
    int curve;
    dp_store_settings_t store_settings; /* the options' (or the environment's), and the stop
                                           flag of dp_worker_run as their cancel: a signal
                                           aborts an upload on the server, not mid-way */
    uint64_t rerun_ms;                  /* network_retry_s in ms; 0: never */
    dp_worker_run_fn run;
    void *run_arg;
    dp_task_cache_t *cache;
    void *ctx;
    int own_ctx;
    int wake[2];
    atomic_int stop;
    pthread_mutex_t lock; /* stats and job progress */
    dp_worker_stats_t st;

    /* the socket thread's */
    void *sock;
    uint64_t seq, hello_seq;
    int registered, ready_sent;
    uint32_t hb_ms, liveness;
    uint64_t session;
    uint64_t last_recv_ms, next_hb_ms;
    job_t *job; /* running, or finished and not yet acknowledged */
    dp_http_t *http;
};

static uint64_t now_ms(void) { return dp_clock_ns() / 1000000u; }

void dp_worker_opts_init(dp_worker_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->role = DP__V1__ROLE__ROLE_TRAINER;
    o->endpoint = DP_WORKER_ENDPOINT;
    o->heartbeat_ms = DP_WORKER_HEARTBEAT_MS;
    o->liveness = DP_WORKER_LIVENESS;
}

static char *dup_or_null(const char *s, int *fail)
{
    if (!s) return NULL;
    char *d = strdup(s);
    if (!d) *fail = 1;
    return d;
}

static void http_handle(void *ctx, const char *path, dp_http_reply_t *out);

static dp_err_t default_run(void *arg, const Dp__V1__Task *t, const dp_task_env_t *env,
                            dp_task_result_t *out)
{
    (void)arg;
    return dp_task_run(t, env, out);
}

dp_err_t dp_worker_new(const dp_worker_opts_t *o, dp_worker_t **out)
{
    *out = NULL;
    const int measurer = o->role == DP__V1__ROLE__ROLE_MEASURER;
    if (o->role != DP__V1__ROLE__ROLE_TRAINER && !measurer)
        return dp_err_set(DP_ERR_INVALID, "worker: the role is TRAINER or MEASURER");
    if (measurer && (!o->device_class || !*o->device_class))
        return dp_err_set(DP_ERR_INVALID, "measurer: a device class is required");
    if (!o->endpoint || !*o->endpoint)
        return dp_err_set(DP_ERR_INVALID, "worker: no coordinator endpoint");
    if (!o->scratch || !*o->scratch)
        return dp_err_set(DP_ERR_INVALID, "worker: no scratch directory");
    if (o->worker_id && (!*o->worker_id || strlen(o->worker_id) > DP_WIRE_MAX_ID))
        return dp_err_set(DP_ERR_INVALID, "worker: an id of 1..%u bytes", DP_WIRE_MAX_ID);
    if (o->threads < 0 || o->threads > 4096)
        return dp_err_set(DP_ERR_INVALID, "worker: threads %d not in [0, 4096]", o->threads);
    if ((o->curve_key != NULL) != (o->curve_server_key != NULL))
        return dp_err_set(DP_ERR_INVALID, "worker: CURVE needs both our secret key file and the "
                                          "coordinator's public key file");
    dp_worker_t *w = calloc(1, sizeof *w);
    if (!w) return dp_err_set(DP_ERR_NOMEM, "worker: out of memory");
    w->wake[0] = w->wake[1] = -1;
    dp_err_t err = DP_OK;
    if (pthread_mutex_init(&w->lock, NULL)) {
        free(w);
        return dp_err_set(DP_ERR_NOMEM, "worker: cannot make a mutex");
    }
    w->role = o->role;
    w->comp = measurer ? "measurer" : "worker";
    w->probe = o->probe ? o->probe : DP__V1__ENERGY_PROBE__ENERGY_PROBE_NONE;
    w->measurer = o->measurer;
    w->threads = o->threads;
    w->hb0 = o->heartbeat_ms ? o->heartbeat_ms : DP_WORKER_HEARTBEAT_MS;
    w->live0 = o->liveness ? o->liveness : DP_WORKER_LIVENESS;
    w->max_message = o->max_message;
    if (o->store_settings)
        w->store_settings = *o->store_settings;
    else
        dp_store_settings_init(&w->store_settings);
    w->rerun_ms = o->network_retry_s < 0    ? 0
                  : o->network_retry_s == 0 ? (uint64_t)DP_WORKER_NETWORK_RETRY_S * 1000u
                                            : (uint64_t)o->network_retry_s * 1000u;
    w->run = o->run ? o->run : default_run;
    w->run_arg = o->run_arg;
    w->cache = o->cache;
    atomic_init(&w->stop, 0);
    char host[256] = "localhost";
    if (o->host)
        snprintf(host, sizeof host, "%s", o->host);
    else if (gethostname(host, sizeof host - 1))
        snprintf(host, sizeof host, "localhost");
    int fail = 0;
    w->endpoint = dup_or_null(o->endpoint, &fail);
    w->host = dup_or_null(host, &fail);
    w->device_class = dup_or_null(o->device_class ? o->device_class : "", &fail);
    w->scratch = dup_or_null(o->scratch, &fail);
    if (o->worker_id) {
        w->id = dup_or_null(o->worker_id, &fail);
    } else {
        char id[DP_WIRE_MAX_ID + 1];
        if (measurer)
            snprintf(id, sizeof id, "%.200s-%ld-%.200s", host, (long)getpid(), o->device_class);
        else
            snprintf(id, sizeof id, "%.200s-%ld", host, (long)getpid());
        w->id = dup_or_null(id, &fail);
    }
    if (fail) {
        err = dp_err_set(DP_ERR_NOMEM, "worker: out of memory");
        goto fail;
    }
    if (o->curve_key) {
        char pub[DP_WIRE_KEY_Z85 + 1];
        if ((err = dp_wire_key_load_secret(o->curve_key, &w->kp)) ||
            (err = dp_wire_key_load_public(o->curve_server_key, pub)))
            goto fail;
        if (!(w->server_key = strdup(pub))) {
            err = dp_err_set(DP_ERR_NOMEM, "worker: out of memory");
            goto fail;
        }
        w->curve = 1;
    }
    if (pipe(w->wake) != 0) {
        err = dp_err_set(DP_ERR_IO, "worker: pipe: %s", strerror(errno));
        goto fail;
    }
    for (int i = 0; i < 2; i++) fcntl(w->wake[i], F_SETFL, O_NONBLOCK);
    w->ctx = o->zmq_ctx;
    if (!w->ctx) {
        if (!(w->ctx = zmq_ctx_new())) {
            err = dp_err_set(DP_ERR_NOMEM, "worker: zmq_ctx_new: %s", zmq_strerror(errno));
            goto fail;
        }
        w->own_ctx = 1;
    }
    if (o->http && (err = dp_http_new(o->http, http_handle, w, &w->http))) goto fail;
    *out = w;
    return DP_OK;
fail:
    dp_worker_destroy(&w);
    return err;
}

const char *dp_worker_id(const dp_worker_t *w) { return w->id; }

int dp_worker_http_port(const dp_worker_t *w) { return w->http ? dp_http_port(w->http) : 0; }

/* /healthz and /metrics, on the socket thread between its polls. */
static void http_handle(void *ctx, const char *path, dp_http_reply_t *out)
{
    dp_worker_t *w = ctx;
    const uint64_t now = now_ms(), period = (uint64_t)w->hb_ms * w->liveness;
    char line[512];
    if (!strcmp(path, "/healthz")) {
        if (!w->registered) {
            out->status = 503;
            snprintf(line, sizeof line, "not registered with the coordinator at %s\n", w->endpoint);
        } else if (now - w->last_recv_ms > period) {
            out->status = 503;
            snprintf(line, sizeof line, "nothing heard from the coordinator at %s for %llu ms\n",
                     w->endpoint, (unsigned long long)(now - w->last_recv_ms));
        } else {
            snprintf(line, sizeof line, "ok\n");
        }
        out->body = strdup(line);
        return;
    }
    if (strcmp(path, "/metrics")) {
        out->status = 404;
        out->body = strdup("not found: a worker serves /healthz and /metrics\n");
        return;
    }
    dp_worker_stats_t st;
    dp_worker_stats(w, &st);
    const char *role = w->role == DP__V1__ROLE__ROLE_MEASURER ? "measurer" : "trainer";
    char cls[160];
    dp_http_label(cls, sizeof cls, w->device_class);
    char *b = NULL;
    size_t len = 0, cap = 0;
    out->content_type = "text/plain; version=0.0.4; charset=utf-8";
    if (dp_http_appendf(&b, &len, &cap,
                        "# HELP dp_worker_registered 1 while registered with the coordinator.\n"
                        "# TYPE dp_worker_registered gauge\n"
                        "dp_worker_registered{role=\"%s\",device_class=\"%s\"} %d\n"
                        "# HELP dp_worker_busy 1 while a task runs or waits to be acknowledged.\n"
                        "# TYPE dp_worker_busy gauge\n"
                        "dp_worker_busy{role=\"%s\",device_class=\"%s\"} %d\n"
                        "# HELP dp_worker_tasks_total Tasks ended on this worker, by outcome.\n"
                        "# TYPE dp_worker_tasks_total counter\n"
                        "dp_worker_tasks_total{outcome=\"done\"} %llu\n"
                        "dp_worker_tasks_total{outcome=\"failed\"} %llu\n"
                        "dp_worker_tasks_total{outcome=\"cancelled\"} %llu\n"
                        "# HELP dp_worker_connects_total Sockets made (1 + reconnects).\n"
                        "# TYPE dp_worker_connects_total counter\n"
                        "dp_worker_connects_total %llu\n"
                        "# HELP dp_worker_store_reruns_total Tasks run again after the store "
                        "could not be reached.\n"
                        "# TYPE dp_worker_store_reruns_total counter\n"
                        "dp_worker_store_reruns_total %llu\n"
                        "# HELP dp_worker_messages_dropped_total Messages that could not be "
                        "decoded.\n"
                        "# TYPE dp_worker_messages_dropped_total counter\n"
                        "dp_worker_messages_dropped_total %llu\n",
                        role, cls, w->registered, role, cls, w->job != NULL,
                        (unsigned long long)st.tasks_done, (unsigned long long)st.tasks_failed,
                        (unsigned long long)st.tasks_cancelled, (unsigned long long)st.connects,
                        (unsigned long long)st.reruns, (unsigned long long)st.dropped)) {
        out->status = 500;
        return;
    }
    out->body = b;
}

void dp_worker_stop(dp_worker_t *w)
{
    atomic_store(&w->stop, 1);
    if (w->wake[1] >= 0) {
        ssize_t k = write(w->wake[1], "s", 1);
        (void)k;
    }
}

void dp_worker_stats(dp_worker_t *w, dp_worker_stats_t *out)
{
    pthread_mutex_lock(&w->lock);
    *out = w->st;
    pthread_mutex_unlock(&w->lock);
}

#define STAT_INC(w, f)                                                                             \
    do {                                                                                           \
        pthread_mutex_lock(&(w)->lock);                                                            \
        (w)->st.f++;                                                                               \
        pthread_mutex_unlock(&(w)->lock);                                                          \
    } while (0)

static void job_free(job_t **pj)
{
    job_t *j = *pj;
    if (!j) return;
    dp_wire_free(&j->env);
    dp_task_result_clear(&j->res);
    free(j);
    *pj = NULL;
}

void dp_worker_destroy(dp_worker_t **pw)
{
    if (!pw || !*pw) return;
    dp_worker_t *w = *pw;
    if (w->job) {
        if (w->job->started && !w->job->joined) {
            atomic_store(&w->job->cancel, PERF_STOP_NOW);
            pthread_join(w->job->tid, NULL);
        }
        job_free(&w->job);
    }
    dp_http_destroy(&w->http);
    if (w->sock) zmq_close(w->sock);
    if (w->own_ctx) zmq_ctx_term(w->ctx);
    for (int i = 0; i < 2; i++)
        if (w->wake[i] >= 0) close(w->wake[i]);
    dp_wire_keypair_wipe(&w->kp);
    pthread_mutex_destroy(&w->lock);
    free(w->endpoint);
    free(w->id);
    free(w->host);
    free(w->device_class);
    free(w->scratch);
    free(w->server_key);
    free(w);
    *pw = NULL;
}

/* ------------------------------------------------------------- sending */

static void send_env(dp_worker_t *w, Dp__V1__Envelope *e)
{
    e->sender_id = w->id;
    dp_err_t err = dp_wire_send(w->sock, NULL, e, &w->seq, ZMQ_DONTWAIT);
    if (err) dp_debug(w->comp, "%s not sent: %s", dp_wire_body_name(e), dp_err_detail());
}

static void send_hello(dp_worker_t *w)
{
    Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;
    Dp__V1__Hello h = DP__V1__HELLO__INIT;
    h.role = w->role;
    h.worker_id = w->id;
    h.device_class = w->device_class;
    if (w->role == DP__V1__ROLE__ROLE_MEASURER) h.energy_probe = w->probe;
    h.capacity = 1;
    h.software_version = "0.1.0";
    h.protocol_min = h.protocol_max = DP_WIRE_VERSION;
    h.threads = (uint32_t)(w->threads > 0 ? w->threads : sysconf(_SC_NPROCESSORS_ONLN));
    h.host = w->host;
    e.body_case = DP__V1__ENVELOPE__BODY_HELLO;
    e.hello = &h;
    send_env(w, &e);
    w->hello_seq = w->seq;
}

static void send_heartbeat(dp_worker_t *w)
{
    Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;
    Dp__V1__Heartbeat hb = DP__V1__HEARTBEAT__INIT;
    Dp__V1__TaskRef ref = DP__V1__TASK_REF__INIT, *refs[1] = {&ref};
    if (w->job) { /* running, or finished and not acknowledged: held either way */
        ref.task_id = w->job->t->id;
        ref.attempt = w->job->t->attempt;
        hb.n_running = 1;
        hb.running = refs;
    }
    e.body_case = DP__V1__ENVELOPE__BODY_HEARTBEAT;
    e.heartbeat = &hb;
    send_env(w, &e);
}

static void send_ready(dp_worker_t *w)
{
    Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;
    Dp__V1__Ready r = DP__V1__READY__INIT;
    r.slots = 1;
    e.body_case = DP__V1__ENVELOPE__BODY_READY;
    e.ready = &r;
    send_env(w, &e);
    w->ready_sent = 1;
}

/* A Failure for a task we do not run (busy, wrong kind). */
static void refuse(dp_worker_t *w, const Dp__V1__Task *t, const char *why)
{
    Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;
    Dp__V1__Failure f = DP__V1__FAILURE__INIT;
    f.task_id = t->id;
    f.attempt = t->attempt;
    f.reason = (char *)why;
    f.retryable = 1;
    f.code = DP_ERR_INVALID;
    e.body_case = DP__V1__ENVELOPE__BODY_FAILURE;
    e.failure = &f;
    send_env(w, &e);
    dp_warn(w->comp, "refused %s attempt %u: %s", t->id, t->attempt, why);
}

/* 1 when err says the input is bad: another attempt would fail alike. */
static int final_error(dp_err_t err)
{
    return err == DP_ERR_FORMAT || err == DP_ERR_INVALID || err == DP_ERR_UNSUPPORTED;
}

/* The finished job's Result or Failure (again). */
static void send_outcome(dp_worker_t *w)
{
    job_t *j = w->job;
    Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;
    Dp__V1__Result r = DP__V1__RESULT__INIT;
    Dp__V1__TaskResult tr = DP__V1__TASK_RESULT__INIT;
    Dp__V1__Failure f = DP__V1__FAILURE__INIT;
    if (!j->err) {
        tr.artifact_keys = j->res.artifact_keys;
        tr.n_artifact_keys = j->res.n_artifact_keys;
        tr.summary_json = j->res.summary_json ? j->res.summary_json : "";
        tr.seconds = j->seconds;
        tr.worker_id = w->id;
        r.task_id = j->t->id;
        r.attempt = j->t->attempt;
        r.result = &tr;
        e.body_case = DP__V1__ENVELOPE__BODY_RESULT;
        e.result = &r;
    } else {
        f.task_id = j->t->id;
        f.attempt = j->t->attempt;
        f.reason = j->detail;
        f.retryable = !final_error(j->err);
        f.code = (uint32_t)j->err;
        e.body_case = DP__V1__ENVELOPE__BODY_FAILURE;
        e.failure = &f;
    }
    send_env(w, &e);
    if (j->sends++) STAT_INC(w, resends);
    j->sent_ms = now_ms();
}

static void send_progress(dp_worker_t *w, uint64_t now)
{
    job_t *j = w->job;
    Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;
    Dp__V1__Progress p = DP__V1__PROGRESS__INIT;
    char line[sizeof j->p_line];
    pthread_mutex_lock(&w->lock);
    int dirty = j->p_dirty;
    p.done = j->p_done, p.total = j->p_total;
    memcpy(line, j->p_line, sizeof line);
    j->p_dirty = 0;
    pthread_mutex_unlock(&w->lock);
    if (!dirty) return;
    if (p.total && p.done > p.total) p.done = p.total;
    if (!p.total) p.done = 0; /* done <= total on the wire */
    p.task_id = j->t->id;
    p.attempt = j->t->attempt;
    p.message = line;
    e.body_case = DP__V1__ENVELOPE__BODY_PROGRESS;
    e.progress = &p;
    send_env(w, &e);
    j->p_sent_ms = now;
}

/* ------------------------------------------------------------- the socket */

static dp_err_t connect_(dp_worker_t *w)
{
    if (w->sock) {
        zmq_close(w->sock);
        w->sock = NULL;
    }
    dp_wire_sock_opts_t so;
    dp_wire_sock_opts_init(&so);
    so.linger_ms = 0;
    so.max_message = w->max_message;
    if (strlen(w->id) <= DP_WIRE_ROUTING_ID_MAX) so.routing_id = w->id;
    if (w->curve) {
        so.curve_client = &w->kp;
        so.curve_server_key = w->server_key;
    }
    dp_err_t err = dp_wire_socket(w->ctx, ZMQ_DEALER, &so, &w->sock);
    if (!err) err = dp_wire_connect(w->sock, w->endpoint);
    if (err) return err;
    STAT_INC(w, connects);
    w->registered = 0;
    w->ready_sent = 0;
    w->hb_ms = w->hb0;
    w->liveness = w->live0;
    w->last_recv_ms = now_ms();
    send_hello(w);
    return DP_OK;
}

/* ------------------------------------------------------------- the compute thread */

static void on_progress(void *ctx, const char *stage, uint64_t done, uint64_t total,
                        const char *line)
{
    job_t *j = ctx;
    dp_worker_t *w = j->w;
    pthread_mutex_lock(&w->lock);
    j->p_done = done, j->p_total = total;
    snprintf(j->p_line, sizeof j->p_line, "%s", line ? line : stage);
    j->p_dirty = 1;
    pthread_mutex_unlock(&w->lock);
    if (line) dp_info(w->comp, "%s", line);
}

static int on_cancelled(void *ctx)
{
    job_t *j = ctx;
    return atomic_load(&j->cancel);
}

/* Runs the task. While it fails because the store cannot be reached
 * (DP_ERR_NETWORK: the store's own retries are spent), it is run again
 * after a pause (RERUN_FIRST_MS doubling to RERUN_MAX_MS), for rerun_ms from
 * the first such failure at most; the socket thread meanwhile heartbeats
 * the task, so the lease holds and an outage costs no attempt. A rerun
 * redoes only what did not reach the store's deterministic keys (a TRAIN
 * resumes from its last uploaded checkpoint). A cancel ends a pause at once. */
static dp_err_t run_task(dp_worker_t *w, job_t *j, const dp_task_env_t *env)
{
    uint64_t first = 0, pause = RERUN_FIRST_MS;
    for (unsigned runs = 1;; runs++) {
        dp_err_t err = w->run(w->run_arg, j->t, env, &j->res);
        if (err != DP_ERR_NETWORK || !w->rerun_ms) return err;
        char detail[sizeof j->detail];
        snprintf(detail, sizeof detail, "%s", dp_err_detail());
        const uint64_t now = now_ms();
        if (!first) first = now;
        if (now + pause > first + w->rerun_ms) {
            if (runs == 1) return dp_err_set(err, "%s", detail);
            return dp_err_set(err, "%s (the store unreachable for %.0f s, %u runs)", detail,
                              (double)(now - first) / 1000.0, runs);
        }
        dp_warn(w->comp,
                "the store cannot be reached: run %u again in %.0f s (%.0f s of %.0f s): %s",
                runs + 1, (double)pause / 1000.0, (double)(now - first) / 1000.0,
                (double)w->rerun_ms / 1000.0, detail);
        dp_task_result_clear(&j->res);
        STAT_INC(w, reruns);
        for (const uint64_t end = now + pause; now_ms() < end;) {
            if (atomic_load(&j->cancel))
                return dp_err_set(DP_ERR_CANCELLED,
                                  "cancelled while waiting for the store to come back (%s)",
                                  detail);
            struct timespec ts = {0, 50 * 1000000L};
            nanosleep(&ts, NULL);
        }
        pause = pause * 2 < RERUN_MAX_MS ? pause * 2 : RERUN_MAX_MS;
    }
}

static void *compute_main(void *arg)
{
    job_t *j = arg;
    dp_worker_t *w = j->w;
    const Dp__V1__Task *t = j->t;
    dp_log_set_context(t->campaign, t->id);
    dp_info(w->comp, "%s attempt %u: started", dp_task_kind_name(t->kind), t->attempt);
    dp_task_env_t env;
    memset(&env, 0, sizeof env);
    env.scratch = w->scratch;
    env.threads = w->threads;
    env.store_settings = &w->store_settings;
    env.cache = w->cache;
    env.measurer = w->measurer;
    env.hooks.progress = on_progress;
    env.hooks.cancelled = on_cancelled;
    env.hooks.ctx = j;
    double t0 = dp_clock_s();
    j->err = run_task(w, j, &env);
    j->seconds = dp_clock_s() - t0;
    if (j->err) {
        snprintf(j->detail, sizeof j->detail, "%s", dp_err_detail());
        if (!j->detail[0]) snprintf(j->detail, sizeof j->detail, "%s", dp_strerror(j->err));
        dp_warn(w->comp, "failed after %.1f s: %s: %s", j->seconds, dp_strerror(j->err), j->detail);
    } else {
        dp_info(w->comp, "done in %.1f s", j->seconds);
    }
    dp_log_set_context(NULL, NULL);
    atomic_store(&j->done, 1);
    ssize_t k = write(w->wake[1], "d", 1);
    (void)k;
    return NULL;
}

/* Takes env (an Assign) and starts its task; env is freed here when the
 * task is refused. */
static void start(dp_worker_t *w, Dp__V1__Envelope *env)
{
    const Dp__V1__Task *t = env->assign->task;
    if (w->job) {
        if (!strcmp(w->job->t->id, t->id) && w->job->t->attempt == t->attempt) {
            dp_wire_free(&env); /* the same lease again: already ours */
            return;
        }
        refuse(w, t, "the worker is busy with another task");
        dp_wire_free(&env);
        return;
    }
    const int measure = t->kind == DP__V1__TASK_KIND__TASK_KIND_MEASURE;
    if (measure != (w->role == DP__V1__ROLE__ROLE_MEASURER)) {
        char why[160];
        snprintf(why, sizeof why, "a %s does not run %s tasks", w->comp,
                 dp_task_kind_name(t->kind));
        refuse(w, t, why);
        dp_wire_free(&env);
        return;
    }
    job_t *j = calloc(1, sizeof *j);
    if (!j) {
        refuse(w, t, "the worker is out of memory");
        dp_wire_free(&env);
        return;
    }
    j->w = w;
    j->env = env;
    j->t = t;
    atomic_init(&j->done, 0);
    atomic_init(&j->cancel, PERF_GO_ON);
    int rc = pthread_create(&j->tid, NULL, compute_main, j);
    if (rc) {
        refuse(w, t, "the worker cannot start a thread");
        job_free(&j);
        return;
    }
    j->started = 1;
    w->job = j;
    w->ready_sent = 1; /* the slot is taken */
}

/* After the compute thread has finished: join it and report. */
static void finished(dp_worker_t *w)
{
    job_t *j = w->job;
    pthread_join(j->tid, NULL);
    j->joined = 1;
    if (j->err == DP_ERR_CANCELLED && j->cancel_by_coordinator) STAT_INC(w, tasks_cancelled);
    if (w->registered) send_outcome(w);
}

/* ------------------------------------------------------------- receiving */

static void handle(dp_worker_t *w, Dp__V1__Envelope *env)
{
    const uint64_t now = now_ms();
    switch (env->body_case) {
    case DP__V1__ENVELOPE__BODY_WELCOME: {
        const Dp__V1__Welcome *wl = env->welcome;
        if (w->registered && env->reply_to != w->hello_seq) break; /* an old Hello's */
        w->registered = 1;
        w->hb_ms = wl->heartbeat_ms ? wl->heartbeat_ms : w->hb0;
        w->liveness = wl->liveness ? wl->liveness : w->live0;
        if (wl->session != w->session)
            dp_info(w->comp, "registered as %s with %s (session %" PRIu64 ")", w->id,
                    wl->coordinator_id ? wl->coordinator_id : "?", wl->session);
        w->session = wl->session;
        STAT_INC(w, welcomes);
        w->ready_sent = w->job != NULL;
        w->next_hb_ms = now; /* say at once what we hold */
        if (w->job && w->job->joined) send_outcome(w);
        break;
    }
    case DP__V1__ENVELOPE__BODY_ASSIGN:
        start(w, env);
        return; /* env is the job's now (or freed) */
    case DP__V1__ENVELOPE__BODY_ACK: {
        job_t *j = w->job;
        if (!j || !j->joined || strcmp(j->t->id, env->ack->task_id) ||
            j->t->attempt != env->ack->attempt)
            break;
        dp_log_set_context(j->t->campaign, j->t->id);
        dp_info(w->comp, "%s acknowledged", j->err ? "failure" : "result");
        dp_log_set_context(NULL, NULL);
        if (j->err)
            STAT_INC(w, tasks_failed);
        else
            STAT_INC(w, tasks_done);
        job_free(&w->job);
        w->ready_sent = 0;
        break;
    }
    case DP__V1__ENVELOPE__BODY_CANCEL: {
        const Dp__V1__Cancel *c = env->cancel;
        job_t *j = w->job;
        if (!j || j->joined) break;
        int match = c->task_id && *c->task_id
                        ? !strcmp(c->task_id, j->t->id)
                        : c->campaign_id && !strcmp(c->campaign_id, j->t->campaign);
        if (!match) break;
        dp_log_set_context(j->t->campaign, j->t->id);
        dp_info(w->comp, "cancelled by the coordinator: %s", c->reason ? c->reason : "");
        dp_log_set_context(NULL, NULL);
        j->cancel_by_coordinator = 1;
        atomic_store(&j->cancel, PERF_STOP_NOW);
        break;
    }
    case DP__V1__ENVELOPE__BODY_ERROR: {
        const Dp__V1__Error *er = env->error;
        if (er->code == DP__V1__ERROR_CODE__ERROR_CODE_NOT_REGISTERED) {
            dp_info(w->comp, "the coordinator does not know us (%s): Hello again",
                    er->message ? er->message : "");
            w->registered = 0;
            send_hello(w);
        } else if (er->code == DP__V1__ERROR_CODE__ERROR_CODE_NOT_FOUND && w->job &&
                   w->job->joined) {
            dp_warn(w->comp, "the coordinator has no task %s: dropping its outcome (%s)",
                    w->job->t->id, er->message ? er->message : "");
            job_free(&w->job);
            w->ready_sent = 0;
        } else {
            dp_warn(w->comp, "the coordinator answered error %d: %s", (int)er->code,
                    er->message ? er->message : "");
        }
        break;
    }
    case DP__V1__ENVELOPE__BODY_DISCONNECT:
        dp_info(w->comp, "the coordinator disconnected: %s",
                env->disconnect->reason ? env->disconnect->reason : "");
        w->registered = 0;
        break;
    case DP__V1__ENVELOPE__BODY_HEARTBEAT:
        break;
    default:
        dp_debug(w->comp, "ignored a %s", dp_wire_body_name(env));
        break;
    }
    dp_wire_free(&env);
}

/* Reads what is waiting. DP_ERR_CLOSED / DP_ERR_UNSUPPORTED end the loop. */
static dp_err_t receive(dp_worker_t *w)
{
    for (;;) {
        Dp__V1__Envelope *env = NULL;
        dp_err_t err = dp_wire_recv(w->sock, ZMQ_DONTWAIT, w->max_message, NULL, &env);
        if (err == DP_ERR_TIMEOUT || err == DP_ERR_INTERRUPTED) return DP_OK;
        if (err == DP_ERR_CLOSED) return err;
        if (err) {
            STAT_INC(w, dropped);
            dp_warn(w->comp, "dropped a message: %s", dp_err_detail());
            continue;
        }
        w->last_recv_ms = now_ms();
        if (env->body_case == DP__V1__ENVELOPE__BODY_ERROR &&
            env->error->code == DP__V1__ERROR_CODE__ERROR_CODE_VERSION) {
            dp_error(w->comp, "the coordinator speaks another protocol: %s",
                     env->error->message ? env->error->message : "");
            dp_wire_free(&env);
            return dp_err_set(DP_ERR_UNSUPPORTED, "the coordinator speaks another protocol");
        }
        handle(w, env);
    }
}

/* Timers: finished work, heartbeats, progress, resends, Ready, liveness. */
static dp_err_t tick(dp_worker_t *w)
{
    const uint64_t now = now_ms();
    job_t *j = w->job;
    if (j && !j->joined && atomic_load(&j->done)) finished(w);
    const uint64_t period = (uint64_t)w->hb_ms * w->liveness;
    if (w->registered) {
        if (now >= w->next_hb_ms) {
            send_heartbeat(w);
            w->next_hb_ms = now + w->hb_ms;
        }
        if ((j = w->job) && !j->joined && now >= j->p_sent_ms + w->hb_ms) send_progress(w, now);
        if ((j = w->job) && j->joined && now >= j->sent_ms + period) send_outcome(w);
        if (!w->job && !w->ready_sent) send_ready(w);
    }
    if (now > w->last_recv_ms + period) {
        dp_warn(w->comp, "no word from the coordinator at %s for %" PRIu64 " ms: reconnecting",
                w->endpoint, now - w->last_recv_ms);
        return connect_(w);
    }
    return DP_OK;
}

static int stopping(dp_worker_t *w, volatile sig_atomic_t *stop)
{
    return atomic_load(&w->stop) || (stop && *stop);
}

static void drain_wake(dp_worker_t *w)
{
    char b[64];
    while (read(w->wake[0], b, sizeof b) > 0) {
    }
}

/* At stop: the running task cancelled and joined, an outcome given one more
 * chance to be acknowledged, Disconnect. */
static void shutdown_(dp_worker_t *w)
{
    job_t *j = w->job;
    if (j && !j->joined) {
        dp_info(w->comp, "stopping: cancelling %s", j->t->id);
        atomic_store(&j->cancel, PERF_STOP_NOW);
        pthread_join(j->tid, NULL);
        j->joined = 1;
        /* stopped by us: the Disconnect gives the lease back, no Failure */
        if (j->err == DP_ERR_CANCELLED && !j->cancel_by_coordinator) job_free(&w->job);
    }
    if (w->job && w->registered) {
        send_outcome(w);
        uint64_t end = now_ms() + STOP_WAIT_MS;
        while (w->job && now_ms() < end) {
            zmq_pollitem_t it = {w->sock, 0, ZMQ_POLLIN, 0};
            if (zmq_poll(&it, 1, (long)(end - now_ms())) < 0 && errno != EINTR) break;
            if (receive(w)) break;
        }
    }
    if (w->sock) {
        Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;
        Dp__V1__Disconnect d = DP__V1__DISCONNECT__INIT;
        d.reason = "stopping";
        e.body_case = DP__V1__ENVELOPE__BODY_DISCONNECT;
        e.disconnect = &d;
        int linger = 500; /* let the Disconnect go out */
        zmq_setsockopt(w->sock, ZMQ_LINGER, &linger, sizeof linger);
        send_env(w, &e);
        zmq_close(w->sock);
        w->sock = NULL;
    }
    job_free(&w->job);
}

dp_err_t dp_worker_run(dp_worker_t *w, volatile sig_atomic_t *stop)
{
    w->store_settings.cancel = stop;
    dp_err_t err = connect_(w);
    if (err) return err;
    dp_info(w->comp, "%s connecting to %s (%d threads, scratch %s)", w->id, w->endpoint, w->threads,
            w->scratch);
    while (!stopping(w, stop)) {
        zmq_pollitem_t items[3] = {{w->sock, 0, ZMQ_POLLIN, 0},
                                   {NULL, w->wake[0], ZMQ_POLLIN, 0},
                                   {NULL, w->http ? dp_http_fd(w->http) : -1, ZMQ_POLLIN, 0}};
        long timeout = POLL_MAX_MS;
        if (w->registered) {
            uint64_t now = now_ms();
            long to_hb = w->next_hb_ms > now ? (long)(w->next_hb_ms - now) : 0;
            if (to_hb < timeout) timeout = to_hb;
        }
        const long http_timeout = w->http ? dp_http_timeout_ms(w->http) : -1;
        if (http_timeout >= 0 && http_timeout < timeout) timeout = http_timeout;
        int rc = zmq_poll(items, w->http ? 3 : 2, timeout);
        if (rc < 0) {
            if (errno == EINTR) continue;
            if (errno == ETERM) {
                err = dp_err_set(DP_ERR_CLOSED, "worker: the zmq context was terminated");
                break;
            }
            err = dp_err_set(DP_ERR_NETWORK, "worker: zmq_poll: %s", zmq_strerror(errno));
            break;
        }
        if (items[1].revents) drain_wake(w);
        if (items[0].revents && (err = receive(w))) break;
        if ((err = tick(w))) break;
        if (w->http && (items[2].revents || http_timeout == 0)) dp_http_run(w->http);
    }
    if (err == DP_ERR_CLOSED) { /* no socket to say goodbye on */
        if (w->job && !w->job->joined) {
            atomic_store(&w->job->cancel, PERF_STOP_NOW);
            pthread_join(w->job->tid, NULL);
            w->job->joined = 1;
        }
        job_free(&w->job);
        if (w->sock) zmq_close(w->sock);
        w->sock = NULL;
        return err;
    }
    shutdown_(w);
    dp_info(w->comp, "%s stopped", w->id);
    return err;
}
