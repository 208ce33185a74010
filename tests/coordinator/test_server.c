/* The coordinator's loop over real ZeroMQ sockets: a campaign runs to DONE
 * with a trainer and a measurer (inproc:// with the server in a thread, and
 * tcp:// loopback); garbage, wrongly typed envelopes, messages before Hello,
 * a message above the size limit and a raw ZMTP frame claiming 1 GiB are
 * dropped with a logged reason while the server keeps serving; CURVE admits
 * only listed keys; a cancelled campaign's running task is cancelled on its
 * worker; and dp-coordinator killed with SIGKILL mid-campaign and restarted
 * on its journal keeps the campaign id and every acknowledged result, and
 * re-leases the task whose holder never heard of it. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "campaign/campaign.h"
#include "plan.h"
#include "server.h"
#include "util/log.h"
#include "wire/envelope.h"
#include "wire/sock.h"
#include "../lib/free_port.h"

#define WAIT_MS 10000 /* a reply that should come comes well within this */

/* ---------------------------------------------------------------- log capture */

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char log_buf[1 << 20];
static size_t log_len;

static void log_sink(dp_log_level_t level, const char *comp, const char *line, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&log_mu);
    int n = snprintf(log_buf + log_len, sizeof log_buf - log_len, "%s %s: %s\n",
                     dp_log_level_name(level), comp, line);
    if (n > 0 && log_len + (size_t)n < sizeof log_buf) log_len += (size_t)n;
    pthread_mutex_unlock(&log_mu);
}

static int log_has(const char *needle)
{
    pthread_mutex_lock(&log_mu);
    const int found = strstr(log_buf, needle) != NULL;
    pthread_mutex_unlock(&log_mu);
    return found;
}

static void log_capture(void)
{
    log_len = 0;
    log_buf[0] = '\0';
    dp_log_set_sink(log_sink, NULL);
    dp_log_set_level(DP_LOG_INFO);
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---------------------------------------------------------------- a campaign */

/* seeds [0, seeds) in shards of shard, one model, one eps, one device class:
 * TRAIN, GENERATE per shard, MEASURE of the seeds and of the generated
 * inputs per shard, REPORT. */
typedef struct tiny {
    Dp__V1__Campaign c;
    Dp__V1__Model m, *mp;
    Dp__V1__Dataset d, *dp;
    Dp__V1__IndexRange test;
    Dp__V1__Budget b, *bp;
    float eps;
    Dp__V1__DeviceClass dc, *dcp;
} tiny_t;

static void tiny_init(tiny_t *t, const char *name, uint32_t seeds, uint32_t shard)
{
    memset(t, 0, sizeof *t);
    t->c = (Dp__V1__Campaign)DP__V1__CAMPAIGN__INIT;
    t->c.name = (char *)name;
    t->c.store_uri = "file:///tmp/dp-store";
    t->m = (Dp__V1__Model)DP__V1__MODEL__INIT;
    t->m.name = "skipnet";
    t->m.family = DP__V1__MODEL_FAMILY__MODEL_FAMILY_SKIPNET;
    t->m.spec_uri = "file:///models/skipnet.spec.pb";
    t->m.weights_uri = "file:///models/skipnet.safetensors";
    t->mp = &t->m;
    t->c.n_models = 1, t->c.models = &t->mp;
    t->d = (Dp__V1__Dataset)DP__V1__DATASET__INIT;
    t->d.name = "fmnist";
    t->d.format = DP__V1__DATASET_FORMAT__DATASET_FORMAT_IDX;
    t->d.train_images_uri = "file:///data/train-images";
    t->d.train_labels_uri = "file:///data/train-labels";
    t->d.test_images_uri = "file:///data/t10k-images";
    t->d.test_labels_uri = "file:///data/t10k-labels";
    t->test = (Dp__V1__IndexRange)DP__V1__INDEX_RANGE__INIT;
    t->test.end = seeds;
    t->d.test_range = &t->test;
    t->d.shard_size = shard;
    t->dp = &t->d;
    t->c.n_datasets = 1, t->c.datasets = &t->dp;
    t->eps = 0.03f;
    t->b = (Dp__V1__Budget)DP__V1__BUDGET__INIT;
    t->b.norm = DP__V1__NORM__NORM_LINF, t->b.n_eps = 1, t->b.eps = &t->eps;
    t->bp = &t->b;
    t->c.n_budgets = 1, t->c.budgets = &t->bp;
    t->dc = (Dp__V1__DeviceClass)DP__V1__DEVICE_CLASS__INIT;
    t->dc.name = "x86";
    t->dc.probe = DP__V1__ENERGY_PROBE__ENERGY_PROBE_NONE;
    t->dcp = &t->dc;
    t->c.n_device_classes = 1, t->c.device_classes = &t->dcp;
    cr_assert_eq(campaign_validate(&t->c), DP_OK, "%s", dp_err_detail());
}

static uint32_t tiny_tasks(const tiny_t *t)
{
    uint32_t n;
    cr_assert_eq(dp_plan_count(&t->c, &n), DP_OK, "%s", dp_err_detail());
    return n;
}

/* ---------------------------------------------------------------- a server thread */

typedef struct server_thread {
    dp_coord_server_t *s;
    pthread_t th;
    dp_err_t rc;
} server_thread_t;

static void *server_main(void *arg)
{
    server_thread_t *t = arg;
    t->rc = dp_coord_server_run(t->s, NULL);
    return NULL;
}

static void server_start(server_thread_t *t, const dp_coord_server_opts_t *o)
{
    memset(t, 0, sizeof *t);
    cr_assert_eq(dp_coord_server_new(o, &t->s), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(pthread_create(&t->th, NULL, server_main, t), 0);
}

static void server_stop(server_thread_t *t, dp_coord_server_stats_t *st)
{
    dp_coord_server_stop(t->s);
    pthread_join(t->th, NULL);
    cr_assert_eq(t->rc, DP_OK, "run: %d %s", t->rc, dp_err_detail());
    if (st) dp_coord_server_stats(t->s, st);
    dp_coord_server_destroy(&t->s);
}

static void test_opts(dp_coord_server_opts_t *o, const char *bind, const char *journal)
{
    dp_coord_server_opts_init(o);
    o->bind = bind;
    o->journal_path = journal;
    o->heartbeat_ms = 100;
    o->no_fsync = 1;
    o->coordinator_id = "test-coordinator";
}

static char *tmp_dir(void)
{
    static char dir[64];
    snprintf(dir, sizeof dir, "/tmp/dp-test-server-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    return dir;
}

static void rm_dir(const char *dir)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
}

/* ---------------------------------------------------------------- a client */

typedef struct client {
    void *sock;
    uint64_t seq;
} client_t;

static void client_open(client_t *c, void *ctx, const char *endpoint, const char *rid,
                        const dp_wire_sock_opts_t *extra)
{
    memset(c, 0, sizeof *c);
    dp_wire_sock_opts_t o;
    if (extra)
        o = *extra;
    else
        dp_wire_sock_opts_init(&o);
    o.routing_id = rid;
    o.linger_ms = 0;
    cr_assert_eq(dp_wire_socket(ctx, ZMQ_DEALER, &o, &c->sock), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(dp_wire_connect(c->sock, endpoint), DP_OK, "%s", dp_err_detail());
}

static void client_close(client_t *c)
{
    if (c->sock) zmq_close(c->sock);
    c->sock = NULL;
}

static uint64_t client_send(client_t *c, Dp__V1__Envelope *e)
{
    e->sender_id = "test";
    cr_assert_eq(dp_wire_send(c->sock, NULL, e, &c->seq, 0), DP_OK, "%s", dp_err_detail());
    return e->seq;
}

/* The next message within ms, or NULL. */
static Dp__V1__Envelope *client_recv(client_t *c, int ms)
{
    zmq_pollitem_t it = {c->sock, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, ms) <= 0) return NULL;
    Dp__V1__Envelope *e = NULL;
    const dp_err_t err = dp_wire_recv(c->sock, ZMQ_DONTWAIT, 0, NULL, &e);
    cr_assert_eq(err, DP_OK, "client recv: %s", dp_err_detail());
    return e;
}

/* The next message with body b within ms (heartbeats and others skipped). */
static Dp__V1__Envelope *client_expect(client_t *c, Dp__V1__Envelope__BodyCase b, int ms)
{
    const uint64_t end = mono_ms() + (uint64_t)ms;
    for (uint64_t now = mono_ms(); now < end; now = mono_ms()) {
        Dp__V1__Envelope *e = client_recv(c, (int)(end - now));
        if (!e) return NULL;
        if (e->body_case == b) return e;
        dp_wire_free(&e);
    }
    return NULL;
}

static uint64_t send_hello(client_t *c, Dp__V1__Role role, const char *id, const char *cls,
                           const char *host, uint32_t capacity)
{
    Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;
    Dp__V1__Hello h = DP__V1__HELLO__INIT;
    h.role = role;
    h.worker_id = (char *)id;
    h.device_class = (char *)(cls ? cls : "");
    h.host = (char *)(host ? host : "");
    h.capacity = capacity;
    h.protocol_min = h.protocol_max = 1;
    e.body_case = DP__V1__ENVELOPE__BODY_HELLO;
    e.hello = &h;
    return client_send(c, &e);
}

/* Hello, and its Welcome (answering that Hello). */
static void hello(client_t *c, Dp__V1__Role role, const char *id, const char *cls, const char *host)
{
    const uint64_t seq = send_hello(c, role, id, cls, host, 1);
    Dp__V1__Envelope *w = client_expect(c, DP__V1__ENVELOPE__BODY_WELCOME, WAIT_MS);
    cr_assert_not_null(w, "no Welcome for %s", id);
    cr_assert_eq(w->reply_to, seq);
    cr_assert_eq(w->welcome->protocol_version, 1);
    cr_assert_gt(w->welcome->heartbeat_ms, 0);
    cr_assert_gt(w->welcome->session, 0);
    dp_wire_free(&w);
}

static char *submit(client_t *c, const Dp__V1__Campaign *camp, const char *token, int *duplicate,
                    uint32_t *tasks)
{
    Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;
    Dp__V1__Submit s = DP__V1__SUBMIT__INIT;
    s.campaign = (Dp__V1__Campaign *)camp;
    s.client_token = (char *)token;
    e.body_case = DP__V1__ENVELOPE__BODY_SUBMIT;
    e.submit = &s;
    const uint64_t seq = client_send(c, &e);
    Dp__V1__Envelope *r = client_expect(c, DP__V1__ENVELOPE__BODY_SUBMIT_REPLY, WAIT_MS);
    cr_assert_not_null(r, "no SubmitReply");
    cr_assert_eq(r->reply_to, seq);
    char *id = strdup(r->submit_reply->campaign_id);
    if (duplicate) *duplicate = r->submit_reply->duplicate;
    if (tasks) *tasks = r->submit_reply->tasks;
    dp_wire_free(&r);
    return id;
}

/* A StatusReply (caller frees), or NULL when none came. */
static Dp__V1__Envelope *status(client_t *c, const char *cid, int tasks, int ms)
{
    Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;
    Dp__V1__StatusRequest rq = DP__V1__STATUS_REQUEST__INIT;
    rq.campaign_id = (char *)(cid ? cid : "");
    rq.tasks = tasks;
    rq.workers = 1;
    e.body_case = DP__V1__ENVELOPE__BODY_STATUS_REQUEST;
    e.status_request = &rq;
    const uint64_t seq = client_send(c, &e);
    const uint64_t end = mono_ms() + (uint64_t)ms;
    for (uint64_t now = mono_ms(); now < end; now = mono_ms()) {
        Dp__V1__Envelope *r = client_recv(c, (int)(end - now));
        if (!r) return NULL;
        if (r->body_case == DP__V1__ENVELOPE__BODY_STATUS_REPLY && r->reply_to == seq) return r;
        dp_wire_free(&r);
    }
    return NULL;
}

static Dp__V1__CampaignState campaign_state(client_t *c, const char *cid)
{
    Dp__V1__Envelope *r = status(c, cid, 0, WAIT_MS);
    cr_assert_not_null(r, "no status reply");
    cr_assert_eq(r->status_reply->n_campaigns, 1);
    const Dp__V1__CampaignState st = r->status_reply->campaigns[0]->state;
    dp_wire_free(&r);
    return st;
}

static void send_ready(client_t *c, uint32_t slots)
{
    Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;
    Dp__V1__Ready r = DP__V1__READY__INIT;
    r.slots = slots;
    e.body_case = DP__V1__ENVELOPE__BODY_READY;
    e.ready = &r;
    client_send(c, &e);
}

static uint64_t send_result(client_t *c, const char *task_id, uint32_t attempt)
{
    Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;
    Dp__V1__Result r = DP__V1__RESULT__INIT;
    Dp__V1__TaskResult tr = DP__V1__TASK_RESULT__INIT;
    tr.summary_json = "{\"ok\":true}";
    tr.seconds = 0.01;
    r.task_id = (char *)task_id;
    r.attempt = attempt;
    r.result = &tr;
    e.body_case = DP__V1__ENVELOPE__BODY_RESULT;
    e.result = &r;
    return client_send(c, &e);
}

static void send_heartbeat(client_t *c, const char *const *running, const uint32_t *attempts,
                           size_t n)
{
    Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;
    Dp__V1__Heartbeat hb = DP__V1__HEARTBEAT__INIT;
    Dp__V1__TaskRef refs[8], *rp[8];
    cr_assert_leq(n, 8);
    for (size_t i = 0; i < n; i++) {
        refs[i] = (Dp__V1__TaskRef)DP__V1__TASK_REF__INIT;
        refs[i].task_id = (char *)running[i];
        refs[i].attempt = attempts[i];
        rp[i] = &refs[i];
    }
    hb.n_running = n;
    hb.running = rp;
    e.body_case = DP__V1__ENVELOPE__BODY_HEARTBEAT;
    e.heartbeat = &hb;
    client_send(c, &e);
}

/* An Error for the bad message, with the code. */
static void expect_error(client_t *c, Dp__V1__ErrorCode code, const char *what)
{
    Dp__V1__Envelope *e = client_expect(c, DP__V1__ENVELOPE__BODY_ERROR, WAIT_MS);
    cr_assert_not_null(e, "no Error after %s", what);
    cr_assert_eq(e->error->code, code, "%s: code %d (%s)", what, e->error->code, e->error->message);
    dp_wire_free(&e);
}

/* ---------------------------------------------------------------- the campaign driver */

#define MAX_TASKS 64

typedef struct run {
    char done[MAX_TASKS][DP_PLAN_ID_MAX]; /* acknowledged results */
    size_t ndone;
    size_t assigns;
    int trainer_got_measure, measurer_got_other;
} run_t;

static int is_done(const run_t *r, const char *id)
{
    for (size_t i = 0; i < r->ndone; i++)
        if (!strcmp(r->done[i], id)) return 1;
    return 0;
}

/* A message to worker w (a measurer or a trainer): an Assign is answered
 * with a Result at once, an Ack with the next Ready. e is borrowed. */
static void worker_handle(run_t *r, client_t *w, int measurer, const Dp__V1__Envelope *e)
{
    if (e->body_case == DP__V1__ENVELOPE__BODY_ASSIGN) {
        const Dp__V1__Task *t = e->assign->task;
        cr_assert_eq(dp_wire_validate_task(t, "assign.task"), DP_OK, "%s", dp_err_detail());
        cr_assert_gt(e->assign->lease_ms, 0);
        cr_assert_not(is_done(r, t->id), "%s assigned again after its result was acknowledged",
                      t->id);
        const int meas = t->kind == DP__V1__TASK_KIND__TASK_KIND_MEASURE;
        if (measurer && !meas) r->measurer_got_other = 1;
        if (!measurer && meas) r->trainer_got_measure = 1;
        if (meas) cr_assert_str_eq(t->device_class, "x86");
        r->assigns++;
        send_result(w, t->id, t->attempt);
    } else if (e->body_case == DP__V1__ENVELOPE__BODY_ACK) {
        cr_assert_lt(r->ndone, MAX_TASKS);
        if (!is_done(r, e->ack->task_id))
            snprintf(r->done[r->ndone++], DP_PLAN_ID_MAX, "%s", e->ack->task_id);
        send_ready(w, 1);
    } else {
        cr_assert(e->body_case == DP__V1__ENVELOPE__BODY_HEARTBEAT, "unexpected %s to a worker",
                  dp_wire_body_name(e));
    }
}

static void worker_step(run_t *r, client_t *w, int measurer, int ms)
{
    Dp__V1__Envelope *e = client_recv(w, ms);
    if (!e) return;
    worker_handle(r, w, measurer, e);
    dp_wire_free(&e);
}

/* Trainer, measurer and submitter against endpoint: submit, run to DONE. */
static void campaign_to_done(void *ctx, const char *endpoint)
{
    client_t tr, ms, sub;
    client_open(&tr, ctx, endpoint, "tr-1", NULL);
    client_open(&ms, ctx, endpoint, "ms-1", NULL);
    client_open(&sub, ctx, endpoint, NULL, NULL);
    hello(&tr, DP__V1__ROLE__ROLE_TRAINER, "tr-1", NULL, "host-a");
    hello(&ms, DP__V1__ROLE__ROLE_MEASURER, "ms-1", "x86", "host-b");
    hello(&sub, DP__V1__ROLE__ROLE_SUBMITTER, "submit-1", NULL, NULL);

    tiny_t t;
    tiny_init(&t, "tiny", 4, 2);
    const uint32_t ntasks = tiny_tasks(&t);
    int dup = -1;
    uint32_t n = 0;
    char *cid = submit(&sub, &t.c, "token-1", &dup, &n);
    cr_assert_str_eq(cid, "tiny-1");
    cr_assert_eq(dup, 0);
    cr_assert_eq(n, ntasks);
    char *cid2 = submit(&sub, &t.c, "token-1", &dup, NULL);
    cr_assert_str_eq(cid2, cid, "a resubmission with the token is the same campaign");
    cr_assert_eq(dup, 1);
    free(cid2);

    run_t *r = calloc(1, sizeof *r);
    send_ready(&tr, 1);
    send_ready(&ms, 1);
    const uint64_t end = mono_ms() + 30000;
    Dp__V1__CampaignState st = DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_RUNNING;
    uint64_t next_hb = 0;
    while (mono_ms() < end && st == DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_RUNNING) {
        if (mono_ms() >= next_hb) { /* results are sent at once: nothing is running */
            send_heartbeat(&tr, NULL, NULL, 0);
            send_heartbeat(&ms, NULL, NULL, 0);
            next_hb = mono_ms() + 50;
        }
        worker_step(r, &tr, 0, 20);
        worker_step(r, &ms, 1, 20);
        if (r->ndone == ntasks) st = campaign_state(&sub, cid);
    }
    cr_assert_eq(st, DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_DONE, "state %d, %zu of %u done", st,
                 r->ndone, ntasks);
    cr_assert_eq(r->assigns, ntasks, "every task leased once");
    cr_assert_not(r->trainer_got_measure);
    cr_assert_not(r->measurer_got_other);

    Dp__V1__Envelope *rep = status(&sub, cid, 1, WAIT_MS);
    cr_assert_not_null(rep);
    const Dp__V1__CampaignStatus *cs = rep->status_reply->campaigns[0];
    cr_assert_eq(cs->counts->done, ntasks);
    cr_assert_eq(cs->n_tasks, ntasks);
    for (size_t i = 0; i < cs->n_tasks; i++)
        cr_assert_eq(cs->tasks[i]->state, DP__V1__TASK_STATE__TASK_STATE_DONE);
    cr_assert(strstr(cs->summary_json, "\"state\":\"done\""), "summary: %s", cs->summary_json);
    cr_assert_gt(rep->status_reply->journal_lsn, ntasks);
    cr_assert_eq(rep->status_reply->n_workers, 2);
    dp_wire_free(&rep);
    cr_assert(log_has("campaign=tiny-1 ended DONE"), "%s", log_buf);
    free(cid);
    free(r);
    client_close(&tr);
    client_close(&ms);
    client_close(&sub);
}

/* ---------------------------------------------------------------- tests */

Test(server, campaign_inproc, .timeout = 60)
{
    log_capture();
    char *dir = tmp_dir(), journal[128];
    snprintf(journal, sizeof journal, "%s/j", dir);
    void *ctx = zmq_ctx_new();
    dp_coord_server_opts_t o;
    test_opts(&o, "inproc://coordinator", journal);
    o.zmq_ctx = ctx;
    server_thread_t st;
    server_start(&st, &o);
    cr_assert_str_eq(dp_coord_server_endpoint(st.s), "inproc://coordinator");
    campaign_to_done(ctx, "inproc://coordinator");
    dp_coord_server_stats_t stats;
    server_stop(&st, &stats);
    cr_assert_eq(stats.dropped, 0);
    cr_assert_eq(stats.campaigns_accepted, 1);
    cr_assert_gt(stats.commits, 0);
    zmq_ctx_term(ctx);
    rm_dir(dir);
}

Test(server, campaign_tcp, .timeout = 60)
{
    log_capture();
    char *dir = tmp_dir(), journal[128];
    snprintf(journal, sizeof journal, "%s/j", dir);
    dp_coord_server_opts_t o;
    test_opts(&o, "tcp://127.0.0.1:*", journal);
    server_thread_t st;
    server_start(&st, &o);
    char ep[256];
    snprintf(ep, sizeof ep, "%s", dp_coord_server_endpoint(st.s));
    cr_assert(strncmp(ep, "tcp://127.0.0.1:", 16) == 0 && strcmp(ep + 16, "*"), "%s", ep);
    void *ctx = zmq_ctx_new();
    campaign_to_done(ctx, ep);
    zmq_ctx_term(ctx);
    server_stop(&st, NULL);
    rm_dir(dir);
}

/* A journal compacted while the campaign ran replays to the same state. */
Test(server, compaction_keeps_state, .timeout = 60)
{
    log_capture();
    char *dir = tmp_dir(), journal[128];
    snprintf(journal, sizeof journal, "%s/j", dir);
    void *ctx = zmq_ctx_new();
    dp_coord_server_opts_t o;
    test_opts(&o, "inproc://compact", journal);
    o.zmq_ctx = ctx;
    o.compact_bytes = 1024;
    server_thread_t st;
    server_start(&st, &o);
    campaign_to_done(ctx, "inproc://compact");
    server_stop(&st, NULL);
    cr_assert(log_has("compacted to"), "%s", log_buf);

    server_start(&st, &o);
    client_t c;
    client_open(&c, ctx, "inproc://compact", NULL, NULL);
    hello(&c, DP__V1__ROLE__ROLE_SUBMITTER, "sub", NULL, NULL);
    Dp__V1__Envelope *r = status(&c, "tiny-1", 1, WAIT_MS);
    cr_assert_not_null(r);
    const Dp__V1__CampaignStatus *cs = r->status_reply->campaigns[0];
    cr_assert_eq(cs->state, DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_DONE);
    cr_assert_eq(cs->counts->done, cs->n_tasks);
    cr_assert(strstr(cs->summary_json, "{\"ok\":true}"), "%s", cs->summary_json);
    dp_wire_free(&r);
    client_close(&c);
    server_stop(&st, NULL);
    zmq_ctx_term(ctx);
    rm_dir(dir);
}

/* A worker that goes silent loses its lease to a live one, and must say
 * Hello again. */
Test(server, silent_worker_loses_its_lease, .timeout = 60)
{
    log_capture();
    char *dir = tmp_dir(), journal[128];
    snprintf(journal, sizeof journal, "%s/j", dir);
    void *ctx = zmq_ctx_new();
    dp_coord_server_opts_t o;
    test_opts(&o, "inproc://silent", journal);
    o.zmq_ctx = ctx;
    server_thread_t st;
    server_start(&st, &o);
    client_t a, b, sub;
    client_open(&a, ctx, "inproc://silent", "tr-a", NULL);
    client_open(&b, ctx, "inproc://silent", "tr-b", NULL);
    client_open(&sub, ctx, "inproc://silent", NULL, NULL);
    hello(&a, DP__V1__ROLE__ROLE_TRAINER, "tr-a", NULL, NULL);
    hello(&sub, DP__V1__ROLE__ROLE_SUBMITTER, "sub", NULL, NULL);
    tiny_t t;
    tiny_init(&t, "tiny", 4, 2);
    t.c.n_device_classes = 0;
    char *cid = submit(&sub, &t.c, NULL, NULL, NULL);
    send_ready(&a, 1);
    Dp__V1__Envelope *as = client_expect(&a, DP__V1__ENVELOPE__BODY_ASSIGN, WAIT_MS);
    cr_assert_not_null(as);
    char id[DP_PLAN_ID_MAX];
    snprintf(id, sizeof id, "%s", as->assign->task->id);
    cr_assert_eq(as->assign->task->attempt, 1);
    dp_wire_free(&as);

    hello(&b, DP__V1__ROLE__ROLE_TRAINER, "tr-b", NULL, NULL);
    send_ready(&b, 1);
    Dp__V1__Envelope *got = NULL;
    const uint64_t end = mono_ms() + WAIT_MS;
    while (!got && mono_ms() < end) {
        send_heartbeat(&b, NULL, NULL, 0);
        got = client_expect(&b, DP__V1__ENVELOPE__BODY_ASSIGN, 50);
    }
    cr_assert_not_null(got, "the silent worker's task was not leased again");
    cr_assert_str_eq(got->assign->task->id, id);
    cr_assert_eq(got->assign->task->attempt, 2);
    dp_wire_free(&got);
    cr_assert(log_has("attempt 1 failed: lease expired"), "%s", log_buf);
    cr_assert(log_has("(retry in 1000 ms)"), "%s", log_buf);

    usleep(300 * 1000); /* past its liveness (0.3 s) for sure */
    send_heartbeat(&a, NULL, NULL, 0);
    expect_error(&a, DP__V1__ERROR_CODE__ERROR_CODE_NOT_REGISTERED, "a dead worker's heartbeat");
    free(cid);
    client_close(&a);
    client_close(&b);
    client_close(&sub);
    server_stop(&st, NULL);
    zmq_ctx_term(ctx);
    rm_dir(dir);
}

/* A failure that is not retryable fails its task and the tasks after it; the
 * campaign ends FAILED with the reason in its summary. */
Test(server, final_failure_fails_the_cell, .timeout = 60)
{
    log_capture();
    char *dir = tmp_dir(), journal[128];
    snprintf(journal, sizeof journal, "%s/j", dir);
    void *ctx = zmq_ctx_new();
    dp_coord_server_opts_t o;
    test_opts(&o, "inproc://fail", journal);
    o.zmq_ctx = ctx;
    server_thread_t st;
    server_start(&st, &o);
    client_t tr, sub;
    client_open(&tr, ctx, "inproc://fail", "tr-1", NULL);
    client_open(&sub, ctx, "inproc://fail", NULL, NULL);
    hello(&tr, DP__V1__ROLE__ROLE_TRAINER, "tr-1", NULL, NULL);
    hello(&sub, DP__V1__ROLE__ROLE_SUBMITTER, "sub", NULL, NULL);
    tiny_t t;
    tiny_init(&t, "tiny", 4, 2);
    t.c.n_device_classes = 0; /* TRAIN, GENERATE x2, REPORT */
    char *cid = submit(&sub, &t.c, NULL, NULL, NULL);
    send_ready(&tr, 1);
    Dp__V1__Envelope *as = client_expect(&tr, DP__V1__ENVELOPE__BODY_ASSIGN, WAIT_MS);
    cr_assert_not_null(as);
    cr_assert_eq(as->assign->task->kind, DP__V1__TASK_KIND__TASK_KIND_TRAIN);
    Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;
    Dp__V1__Failure f = DP__V1__FAILURE__INIT;
    f.task_id = as->assign->task->id;
    f.attempt = as->assign->task->attempt;
    f.reason = "boom";
    f.retryable = 0;
    e.body_case = DP__V1__ENVELOPE__BODY_FAILURE;
    e.failure = &f;
    const uint64_t seq = client_send(&tr, &e);
    dp_wire_free(&as);
    Dp__V1__Envelope *ack = client_expect(&tr, DP__V1__ENVELOPE__BODY_ACK, WAIT_MS);
    cr_assert_not_null(ack);
    cr_assert_eq(ack->reply_to, seq);
    dp_wire_free(&ack);
    send_ready(&tr, 1);
    as = client_expect(&tr, DP__V1__ENVELOPE__BODY_ASSIGN, WAIT_MS);
    cr_assert_not_null(as, "REPORT runs once every other task has ended");
    cr_assert_eq(as->assign->task->kind, DP__V1__TASK_KIND__TASK_KIND_REPORT);
    send_result(&tr, as->assign->task->id, as->assign->task->attempt);
    dp_wire_free(&as);
    cr_assert_not_null(ack = client_expect(&tr, DP__V1__ENVELOPE__BODY_ACK, WAIT_MS));
    dp_wire_free(&ack);
    Dp__V1__Envelope *r = status(&sub, cid, 0, WAIT_MS);
    cr_assert_not_null(r);
    const Dp__V1__CampaignStatus *cs = r->status_reply->campaigns[0];
    cr_assert_eq(cs->state, DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_FAILED);
    cr_assert_eq(cs->counts->failed, 3);
    cr_assert(strstr(cs->summary_json, "worker tr-1: boom"), "%s", cs->summary_json);
    cr_assert(strstr(cs->summary_json, "did not complete"), "%s", cs->summary_json);
    dp_wire_free(&r);
    cr_assert(log_has("ended FAILED"), "%s", log_buf);
    free(cid);
    client_close(&tr);
    client_close(&sub);
    server_stop(&st, NULL);
    zmq_ctx_term(ctx);
    rm_dir(dir);
}

/* Raw frames on a DEALER: whatever bytes the test wants. */
static void send_raw(client_t *c, const void *buf, size_t n, int more)
{
    cr_assert_eq(zmq_send(c->sock, buf, n, more ? ZMQ_SNDMORE : 0), (int)n);
}

static void send_packed(client_t *c, Dp__V1__Envelope *e)
{
    e->version = 1;
    e->seq = ++c->seq;
    const size_t n = dp__v1__envelope__get_packed_size(e);
    uint8_t *b = malloc(n);
    dp__v1__envelope__pack(e, b);
    send_raw(c, b, n, 0);
    free(b);
}

Test(server, bad_messages_are_dropped, .timeout = 60)
{
    log_capture();
    char *dir = tmp_dir(), journal[128];
    snprintf(journal, sizeof journal, "%s/j", dir);
    dp_coord_server_opts_t o;
    test_opts(&o, "tcp://127.0.0.1:*", journal);
    server_thread_t st;
    server_start(&st, &o);
    void *ctx = zmq_ctx_new();
    client_t c;
    client_open(&c, ctx, dp_coord_server_endpoint(st.s), NULL, NULL);

    /* a message before Hello */
    Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;
    Dp__V1__StatusRequest rq = DP__V1__STATUS_REQUEST__INIT;
    e.body_case = DP__V1__ENVELOPE__BODY_STATUS_REQUEST;
    e.status_request = &rq;
    client_send(&c, &e);
    expect_error(&c, DP__V1__ERROR_CODE__ERROR_CODE_NOT_REGISTERED, "status before hello");
    cr_assert(log_has("status_request before Hello"), "%s", log_buf);

    /* garbage bytes */
    static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x80, 0x01, 0xde, 0xad};
    send_raw(&c, garbage, sizeof garbage, 0);
    expect_error(&c, DP__V1__ERROR_CODE__ERROR_CODE_PROTOCOL, "garbage");
    cr_assert(log_has("that are no Envelope"), "%s", log_buf);

    /* a Hello with role 77 */
    Dp__V1__Envelope he = DP__V1__ENVELOPE__INIT;
    Dp__V1__Hello h = DP__V1__HELLO__INIT;
    h.role = (Dp__V1__Role)77;
    h.worker_id = "w";
    h.capacity = 1;
    he.body_case = DP__V1__ENVELOPE__BODY_HELLO;
    he.hello = &h;
    send_packed(&c, &he);
    expect_error(&c, DP__V1__ERROR_CODE__ERROR_CODE_PROTOCOL, "role 77");
    cr_assert(log_has("hello.role: unknown Role value 77"), "%s", log_buf);

    /* a string field holding invalid UTF-8 */
    h.role = DP__V1__ROLE__ROLE_TRAINER;
    h.worker_id = "w\xc3\x28";
    send_packed(&c, &he);
    expect_error(&c, DP__V1__ERROR_CODE__ERROR_CODE_PROTOCOL, "bad UTF-8");
    cr_assert(log_has("hello.worker_id: not valid UTF-8"), "%s", log_buf);

    /* another protocol version */
    h.worker_id = "w";
    he.version = 9;
    const size_t hn = dp__v1__envelope__get_packed_size(&he);
    uint8_t *hb = malloc(hn);
    dp__v1__envelope__pack(&he, hb);
    send_raw(&c, hb, hn, 0);
    free(hb);
    expect_error(&c, DP__V1__ERROR_CODE__ERROR_CODE_VERSION, "version 9");

    /* two frames */
    send_raw(&c, "a", 1, 1);
    send_raw(&c, "b", 1, 0);
    expect_error(&c, DP__V1__ERROR_CODE__ERROR_CODE_PROTOCOL, "two frames");
    cr_assert(log_has("a message of 2 frames"), "%s", log_buf);

    /* a coordinator's message sent to the coordinator, after Hello */
    hello(&c, DP__V1__ROLE__ROLE_SUBMITTER, "sub", NULL, NULL);
    Dp__V1__Envelope we = DP__V1__ENVELOPE__INIT;
    Dp__V1__Welcome w = DP__V1__WELCOME__INIT;
    w.protocol_version = 1, w.heartbeat_ms = 1, w.liveness = 1;
    we.body_case = DP__V1__ENVELOPE__BODY_WELCOME;
    we.welcome = &w;
    client_send(&c, &we);
    expect_error(&c, DP__V1__ERROR_CODE__ERROR_CODE_PROTOCOL, "welcome to the coordinator");
    /* and a worker's message from a submitter */
    send_ready(&c, 1);
    expect_error(&c, DP__V1__ERROR_CODE__ERROR_CODE_PROTOCOL, "ready from a submitter");

    /* still serving */
    Dp__V1__Envelope *r = status(&c, NULL, 0, WAIT_MS);
    cr_assert_not_null(r, "the server stopped answering");
    dp_wire_free(&r);
    client_close(&c);
    zmq_ctx_term(ctx);
    dp_coord_server_stats_t stats;
    server_stop(&st, &stats);
    cr_assert_eq(stats.unregistered, 1);
    cr_assert_eq(stats.dropped, 7, "dropped %llu", (unsigned long long)stats.dropped);
    rm_dir(dir);
}

/* Connects a plain TCP socket to a tcp:// endpoint; the fd. */
static int tcp_connect(const char *endpoint)
{
    const char *colon = strrchr(endpoint, ':');
    cr_assert_not_null(colon);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0, "%s", strerror(errno));
    return fd;
}

/* Reads exactly n bytes within ms; 0, or -1. */
static int read_exact(int fd, uint8_t *buf, size_t n, int ms)
{
    const uint64_t end = mono_ms() + (uint64_t)ms;
    size_t got = 0;
    while (got < n) {
        const uint64_t now = mono_ms();
        struct pollfd p = {fd, POLLIN, 0};
        if (now >= end || poll(&p, 1, (int)(end - now)) <= 0) return -1;
        const ssize_t k = recv(fd, buf + got, n - got, 0);
        if (k <= 0) return -1;
        got += (size_t)k;
    }
    return 0;
}

/* Reads until the peer closes; 1 when it did within ms. */
static int closed_within(int fd, int ms)
{
    const uint64_t end = mono_ms() + (uint64_t)ms;
    char buf[4096];
    for (uint64_t now = mono_ms(); now < end; now = mono_ms()) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, (int)(end - now)) <= 0) return 0;
        const ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) return 1;
    }
    return 0;
}

Test(server, oversized_messages_are_refused, .timeout = 60)
{
    log_capture();
    char *dir = tmp_dir(), journal[128];
    snprintf(journal, sizeof journal, "%s/j", dir);
    dp_coord_server_opts_t o;
    test_opts(&o, "tcp://127.0.0.1:*", journal);
    o.max_message = 1u << 20;
    server_thread_t st;
    server_start(&st, &o);
    char ep[256];
    snprintf(ep, sizeof ep, "%s", dp_coord_server_endpoint(st.s));
    void *ctx = zmq_ctx_new();

    /* 2 MiB against a 1 MiB limit: the connection is dropped, nothing answered */
    client_t big;
    client_open(&big, ctx, ep, NULL, NULL);
    hello(&big, DP__V1__ROLE__ROLE_SUBMITTER, "big", NULL, NULL);
    const size_t n = 2u << 20;
    uint8_t *blob = calloc(1, n);
    send_raw(&big, blob, n, 0);
    free(blob);
    Dp__V1__Envelope *none = client_recv(&big, 500);
    cr_assert_null(none, "a reply to a message above the limit");
    client_close(&big);

    /* ZMTP 3.0 by hand: greeting, READY, then a frame header claiming 1 GiB */
    const int fd = tcp_connect(ep);
    uint8_t greet[64] = {0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 3, 0};
    memcpy(greet + 12, "NULL", 4);
    cr_assert_eq(send(fd, greet, sizeof greet, 0), (ssize_t)sizeof greet);
    static const uint8_t ready[] = {0x04, 28,  0x05, 'R', 'E', 'A', 'D', 'Y', 0x0b, 'S',
                                    'o',  'c', 'k',  'e', 't', '-', 'T', 'y', 'p',  'e',
                                    0,    0,   0,    6,   'D', 'E', 'A', 'L', 'E',  'R'};
    cr_assert_eq(send(fd, ready, sizeof ready, 0), (ssize_t)sizeof ready);
    uint8_t in[512];
    cr_assert_eq(read_exact(fd, in, 64, WAIT_MS), 0, "no ZMTP greeting");
    cr_assert_eq(in[0], 0xff);
    cr_assert_eq(in[10], 3, "ZMTP major version %u", in[10]);
    cr_assert_eq(read_exact(fd, in, 2, WAIT_MS), 0);
    cr_assert_eq(in[0], 0x04, "a short command");
    const size_t rn = in[1];
    cr_assert_eq(read_exact(fd, in, rn, WAIT_MS), 0);
    cr_assert(rn > 6 && !memcmp(in, "\x05READY", 6), "no READY");
    /* the handshake holds: a message before Hello is answered */
    Dp__V1__Envelope se = DP__V1__ENVELOPE__INIT;
    Dp__V1__StatusRequest srq = DP__V1__STATUS_REQUEST__INIT;
    se.version = 1, se.seq = 1;
    se.body_case = DP__V1__ENVELOPE__BODY_STATUS_REQUEST;
    se.status_request = &srq;
    uint8_t frame[64] = {0x00, (uint8_t)dp__v1__envelope__get_packed_size(&se)};
    dp__v1__envelope__pack(&se, frame + 2);
    cr_assert_eq(send(fd, frame, 2u + frame[1], 0), (ssize_t)(2u + frame[1]));
    cr_assert_eq(read_exact(fd, in, 2, WAIT_MS), 0, "no reply over raw ZMTP");
    cr_assert_eq(in[0], 0x00, "a short last frame");
    const size_t en = in[1];
    cr_assert_eq(read_exact(fd, in, en, WAIT_MS), 0);
    Dp__V1__Envelope *er = NULL;
    cr_assert_eq(dp_wire_decode(in, en, 0, &er), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(er->body_case, DP__V1__ENVELOPE__BODY_ERROR);
    cr_assert_eq(er->error->code, DP__V1__ERROR_CODE__ERROR_CODE_NOT_REGISTERED);
    dp_wire_free(&er);
    static const uint8_t claim[] = {0x02, 0, 0, 0, 0, 0x40, 0, 0, 0, 'x', 'y', 'z'};
    cr_assert_eq(send(fd, claim, sizeof claim, 0), (ssize_t)sizeof claim);
    cr_assert(closed_within(fd, 5000), "the server kept a connection that claimed 1 GiB");
    close(fd);

    /* still serving */
    client_t c;
    client_open(&c, ctx, ep, NULL, NULL);
    hello(&c, DP__V1__ROLE__ROLE_SUBMITTER, "after", NULL, NULL);
    Dp__V1__Envelope *r = status(&c, NULL, 0, WAIT_MS);
    cr_assert_not_null(r, "the server stopped answering");
    dp_wire_free(&r);
    client_close(&c);
    zmq_ctx_term(ctx);
    server_stop(&st, NULL);
    rm_dir(dir);
}

Test(server, curve_admits_listed_keys_only, .timeout = 60)
{
    log_capture();
    char *dir = tmp_dir(), journal[128], secret[128], auth[128];
    snprintf(journal, sizeof journal, "%s/j", dir);
    dp_wire_keypair_t srv, good, bad;
    cr_assert_eq(dp_wire_keygen(dir, "server", &srv), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(dp_wire_keygen(dir, "good", &good), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(dp_wire_keygen(dir, "bad", &bad), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(dp_wire_keygen(dir, "good", NULL), DP_ERR_EXISTS, "keys are never replaced");
    struct stat sb;
    snprintf(secret, sizeof secret, "%s/server.key", dir);
    cr_assert_eq(stat(secret, &sb), 0);
    cr_assert_eq(sb.st_mode & 0777, 0600);
    dp_wire_keypair_t back;
    cr_assert_eq(dp_wire_key_load_secret(secret, &back), DP_OK, "%s", dp_err_detail());
    cr_assert_str_eq(back.public_key, srv.public_key);
    char pub[DP_WIRE_KEY_Z85 + 1], path[128];
    snprintf(path, sizeof path, "%s/server.pub", dir);
    cr_assert_eq(dp_wire_key_load_public(path, pub), DP_OK, "%s", dp_err_detail());
    cr_assert_str_eq(pub, srv.public_key);
    snprintf(auth, sizeof auth, "%s/authorized", dir);
    FILE *f = fopen(auth, "w");
    fprintf(f, "# trainers\n\n%s good-worker\n", good.public_key);
    fclose(f);

    dp_coord_server_opts_t o;
    test_opts(&o, "tcp://127.0.0.1:*", journal);
    o.curve_secret = secret;
    o.curve_authorized = auth;
    server_thread_t st;
    server_start(&st, &o);
    char ep[256];
    snprintf(ep, sizeof ep, "%s", dp_coord_server_endpoint(st.s));
    void *ctx = zmq_ctx_new();

    dp_wire_sock_opts_t co;
    dp_wire_sock_opts_init(&co);
    co.curve_server_key = srv.public_key;
    co.curve_client = &bad;
    client_t cb;
    client_open(&cb, ctx, ep, NULL, &co);
    send_hello(&cb, DP__V1__ROLE__ROLE_TRAINER, "intruder", NULL, NULL, 1);
    cr_assert_null(client_recv(&cb, 1000), "an unlisted key got a reply");
    client_close(&cb);

    client_t plain;
    client_open(&plain, ctx, ep, NULL, NULL);
    send_hello(&plain, DP__V1__ROLE__ROLE_TRAINER, "plain", NULL, NULL, 1);
    cr_assert_null(client_recv(&plain, 500), "a client without CURVE got a reply");
    client_close(&plain);

    co.curve_client = &good;
    client_t cg;
    client_open(&cg, ctx, ep, NULL, &co);
    hello(&cg, DP__V1__ROLE__ROLE_TRAINER, "good-1", NULL, NULL);
    client_close(&cg);
    zmq_ctx_term(ctx);

    cr_assert(log_has("not in the authorized keys"), "%s", log_buf);
    cr_assert_not(strstr(log_buf, srv.secret_key), "a secret key in the log");
    dp_coord_server_stats_t stats;
    server_stop(&st, &stats);
    cr_assert_geq(stats.zap_refused, 1);
    cr_assert_geq(stats.zap_admitted, 1);
    dp_wire_keypair_wipe(&srv);
    dp_wire_keypair_wipe(&good);
    dp_wire_keypair_wipe(&bad);
    rm_dir(dir);
}

/* Key files: comments and blank lines, a bad line named by its number, and
 * a CURVE server refused without a ZAP handler. */
Test(server, key_files)
{
    log_capture();
    char *dir = tmp_dir(), path[128];
    char pub[DP_WIRE_KEY_Z85 + 1], sec[DP_WIRE_KEY_Z85 + 1];
    cr_assert_eq(zmq_curve_keypair(pub, sec), 0);
    snprintf(path, sizeof path, "%s/shared.key", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "# a comment\n#\n\n  %s  \n", sec);
    fclose(f);
    dp_wire_keypair_t kp;
    cr_assert_eq(dp_wire_key_load_secret(path, &kp), DP_OK, "%s", dp_err_detail());
    cr_assert_str_eq(kp.public_key, pub);
    cr_assert(log_has("others can read"), "a world-readable secret key is worth a warning");

    snprintf(path, sizeof path, "%s/auth", dir);
    f = fopen(path, "w");
    fprintf(f, "%s first\nnot-a-key\n", pub);
    fclose(f);
    void *ctx = zmq_ctx_new();
    dp_wire_zap_t *z = NULL;
    cr_assert_eq(dp_wire_zap_new(ctx, path, &z), DP_ERR_FORMAT);
    cr_assert(strstr(dp_err_detail(), "auth:2:"), "%s", dp_err_detail());
    cr_assert_null(z);
    snprintf(path, sizeof path, "%s/missing", dir);
    cr_assert_eq(dp_wire_key_load_public(path, pub), DP_ERR_NOTFOUND);

    dp_wire_sock_opts_t o;
    dp_wire_sock_opts_init(&o);
    o.curve_server = &kp;
    void *sock = NULL;
    cr_assert_eq(dp_wire_socket(ctx, ZMQ_ROUTER, &o, &sock), DP_ERR_INVALID,
                 "a CURVE server without a ZAP handler would admit everyone");
    cr_assert_null(sock);
    dp_wire_keypair_wipe(&kp);
    zmq_ctx_term(ctx);
    rm_dir(dir);
}

Test(server, cancel_reaches_the_worker, .timeout = 60)
{
    log_capture();
    char *dir = tmp_dir(), journal[128];
    snprintf(journal, sizeof journal, "%s/j", dir);
    void *ctx = zmq_ctx_new();
    dp_coord_server_opts_t o;
    test_opts(&o, "inproc://cancel", journal);
    o.zmq_ctx = ctx;
    server_thread_t st;
    server_start(&st, &o);
    client_t tr, sub;
    client_open(&tr, ctx, "inproc://cancel", "tr-1", NULL);
    client_open(&sub, ctx, "inproc://cancel", NULL, NULL);
    hello(&tr, DP__V1__ROLE__ROLE_TRAINER, "tr-1", NULL, NULL);
    hello(&sub, DP__V1__ROLE__ROLE_SUBMITTER, "sub", NULL, NULL);
    tiny_t t;
    tiny_init(&t, "tiny", 4, 2);
    char *cid = submit(&sub, &t.c, NULL, NULL, NULL);
    send_ready(&tr, 1);
    Dp__V1__Envelope *a = client_expect(&tr, DP__V1__ENVELOPE__BODY_ASSIGN, WAIT_MS);
    cr_assert_not_null(a);
    char held[DP_PLAN_ID_MAX];
    snprintf(held, sizeof held, "%s", a->assign->task->id);
    const uint32_t attempt = a->assign->task->attempt;
    dp_wire_free(&a);

    Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;
    Dp__V1__Cancel c = DP__V1__CANCEL__INIT;
    c.campaign_id = cid;
    c.reason = "test";
    e.body_case = DP__V1__ENVELOPE__BODY_CANCEL;
    e.cancel = &c;
    client_send(&sub, &e);
    Dp__V1__Envelope *cr = client_expect(&sub, DP__V1__ENVELOPE__BODY_CANCEL_REPLY, WAIT_MS);
    cr_assert_not_null(cr);
    cr_assert_eq(cr->cancel_reply->tasks_cancelled, tiny_tasks(&t));
    dp_wire_free(&cr);
    cr_assert_eq(campaign_state(&sub, cid), DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_CANCELLED);

    const char *running[1] = {held};
    send_heartbeat(&tr, running, &attempt, 1);
    Dp__V1__Envelope *x = client_expect(&tr, DP__V1__ENVELOPE__BODY_CANCEL, WAIT_MS);
    cr_assert_not_null(x, "the worker was not told to stop");
    cr_assert_str_eq(x->cancel->task_id, held);
    cr_assert_str_eq(x->cancel->campaign_id, cid);
    dp_wire_free(&x);
    /* its late result is acknowledged and changes nothing */
    const uint64_t seq = send_result(&tr, held, attempt);
    Dp__V1__Envelope *ack = client_expect(&tr, DP__V1__ENVELOPE__BODY_ACK, WAIT_MS);
    cr_assert_not_null(ack);
    cr_assert_eq(ack->reply_to, seq);
    dp_wire_free(&ack);
    cr_assert_eq(campaign_state(&sub, cid), DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_CANCELLED);
    free(cid);
    client_close(&tr);
    client_close(&sub);
    server_stop(&st, NULL);
    zmq_ctx_term(ctx);
    rm_dir(dir);
}

/* ---------------------------------------------------------------- kill -9 */

static pid_t spawn_coordinator(const char *ep, const char *journal, const char *logfile)
{
    const pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        FILE *f = freopen(logfile, "a", stderr);
        (void)f;
        execl(DP_BINARY_DIR "/coordinator/dp-coordinator", "dp-coordinator", "--bind", ep,
              "--journal", journal, "--heartbeat-ms", "100", "--liveness", "20", "--log-level",
              "info", (char *)NULL);
        _exit(127);
    }
    return pid;
}

Test(server, kill9_keeps_acknowledged_results, .timeout = 120)
{
    char *dir = tmp_dir(), journal[128], logfile[128], ep[64];
    snprintf(journal, sizeof journal, "%s/j", dir);
    snprintf(logfile, sizeof logfile, "%s/log", dir);
    const int port = free_port();
    cr_assert_gt(port, 0, "no free port on 127.0.0.1");
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", port);
    pid_t pid = spawn_coordinator(ep, journal, logfile);
    void *ctx = zmq_ctx_new();
    client_t tr, sub;
    client_open(&tr, ctx, ep, "tr-1", NULL);
    client_open(&sub, ctx, ep, NULL, NULL);
    hello(&tr, DP__V1__ROLE__ROLE_TRAINER, "tr-1", NULL, NULL);
    hello(&sub, DP__V1__ROLE__ROLE_SUBMITTER, "sub", NULL, NULL);
    tiny_t t;
    tiny_init(&t, "tiny", 8, 2);
    t.c.n_device_classes = 0; /* trainer tasks only */
    const uint32_t ntasks = tiny_tasks(&t);
    char *cid = submit(&sub, &t.c, "tok", NULL, NULL);

    /* three results acknowledged, a fourth task held without answering */
    run_t *r = calloc(1, sizeof *r);
    char held[DP_PLAN_ID_MAX] = "";
    send_ready(&tr, 1);
    while (!*held) {
        Dp__V1__Envelope *e = client_recv(&tr, WAIT_MS);
        cr_assert_not_null(e, "the coordinator stopped answering");
        if (e->body_case == DP__V1__ENVELOPE__BODY_ASSIGN) {
            if (r->ndone < 3)
                send_result(&tr, e->assign->task->id, e->assign->task->attempt);
            else
                snprintf(held, sizeof held, "%s", e->assign->task->id);
        } else if (e->body_case == DP__V1__ENVELOPE__BODY_ACK) {
            snprintf(r->done[r->ndone++], DP_PLAN_ID_MAX, "%s", e->ack->task_id);
            send_ready(&tr, 1);
        }
        dp_wire_free(&e);
    }
    cr_assert_eq(kill(pid, SIGKILL), 0);
    int wst;
    cr_assert_eq(waitpid(pid, &wst, 0), pid);
    cr_assert(WIFSIGNALED(wst));
    client_close(&tr);
    client_close(&sub);

    pid = spawn_coordinator(ep, journal, logfile);
    client_open(&tr, ctx, ep, "tr-1", NULL);
    client_open(&sub, ctx, ep, NULL, NULL);
    hello(&sub, DP__V1__ROLE__ROLE_SUBMITTER, "sub", NULL, NULL);
    Dp__V1__Envelope *rep = status(&sub, cid, 1, WAIT_MS);
    cr_assert_not_null(rep, "no status after the restart");
    cr_assert_eq(rep->status_reply->n_campaigns, 1, "the campaign is gone");
    const Dp__V1__CampaignStatus *cs = rep->status_reply->campaigns[0];
    cr_assert_str_eq(cs->campaign_id, cid);
    size_t done_seen = 0;
    for (size_t i = 0; i < cs->n_tasks; i++) {
        if (is_done(r, cs->tasks[i]->task_id)) {
            cr_assert_eq(cs->tasks[i]->state, DP__V1__TASK_STATE__TASK_STATE_DONE, "%s",
                         cs->tasks[i]->task_id);
            done_seen++;
        }
        if (!strcmp(cs->tasks[i]->task_id, held))
            cr_assert_eq(cs->tasks[i]->state, DP__V1__TASK_STATE__TASK_STATE_LEASED);
    }
    cr_assert_eq(done_seen, 3);
    dp_wire_free(&rep);
    int dup = 0;
    char *again = submit(&sub, &t.c, "tok", &dup, NULL);
    cr_assert_str_eq(again, cid);
    cr_assert(dup);
    free(again);

    /* the worker is back and holds nothing: its old lease fails, everything
     * else runs; no acknowledged task comes back */
    hello(&tr, DP__V1__ROLE__ROLE_TRAINER, "tr-1", NULL, NULL);
    send_ready(&tr, 1);
    const uint64_t end = mono_ms() + 60000;
    uint64_t next_hb = 0;
    Dp__V1__CampaignState state = DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_RUNNING;
    size_t held_again = 0;
    while (mono_ms() < end && state == DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_RUNNING) {
        if (mono_ms() >= next_hb) {
            send_heartbeat(&tr, NULL, NULL, 0);
            next_hb = mono_ms() + 100;
        }
        Dp__V1__Envelope *e = client_recv(&tr, 50);
        if (e && e->body_case == DP__V1__ENVELOPE__BODY_ASSIGN &&
            !strcmp(e->assign->task->id, held)) {
            held_again++;
            cr_assert_eq(e->assign->task->attempt, 2);
        }
        if (e) worker_handle(r, &tr, 0, e);
        dp_wire_free(&e);
        if (r->ndone == ntasks) state = campaign_state(&sub, cid);
    }
    cr_assert_eq(state, DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_DONE, "state %d, %zu of %u", state,
                 r->ndone, ntasks);
    cr_assert_eq(held_again, 1, "the lost lease was leased again once");
    free(cid);
    free(r);
    client_close(&tr);
    client_close(&sub);
    zmq_ctx_term(ctx);
    cr_assert_eq(kill(pid, SIGTERM), 0);
    cr_assert_eq(waitpid(pid, &wst, 0), pid);
    cr_assert(WIFEXITED(wst) && WEXITSTATUS(wst) == 0, "dp-coordinator exit %d", wst);
    FILE *lf = fopen(logfile, "r");
    static char text[1 << 16];
    const size_t n = fread(text, 1, sizeof text - 1, lf);
    text[n] = '\0';
    fclose(lf);
    cr_assert(strstr(text, "does not hold the lease"), "%s", text);
    cr_assert(strstr(text, "stopped"), "%s", text);
    rm_dir(dir);
}
