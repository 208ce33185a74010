/* dp-worker and dp-measurer as libraries (worker/worker.h) against the real
 * coordinator loop, all threads of this process over inproc:// on one zmq
 * context (the shape of dp-submit --local):
 *
 * - a campaign runs to DONE with a trainer and a measurer whose runner is
 *   a stub: every task once, MEASURE only on the measurer;
 * - a bad input (DP_ERR_FORMAT) fails its cell at the first attempt with
 *   the reason; a network error is retried and the next attempt succeeds;
 * - a network error (the store unreachable) is run again on the worker
 *   within network_retry_s, costing no attempt; past it the attempt fails
 *   with how long the store was away; a cancel ends the pause;
 * - a campaign cancelled while its TRAIN runs: the coordinator's Cancel
 *   reaches the runner through the cancel hook;
 * - the coordinator stopped and started again on its journal while a TRAIN
 *   runs: the worker notices the silence, says Hello on a new socket, and
 *   the result it kept reaches the new coordinator (the task ran once);
 * - the real task layer (dp_task_run) on a tiny campaign: TRAIN, GENERATE,
 *   random and ILFO, MEASURE, REPORT, artifacts in a file:// store. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "campaign/campaign.h"
#include "client.h"
#include "server.h"
#include "util/log.h"
#include "util/path.h"
#include "worker.h"

#define SDN    DP_SOURCE_DIR "/models/sdn_resnet"
#define FMNIST "/usr/share/datasets/fashion-mnist"
#define WAIT_S 60

static char g_dir[64], g_journal[128], g_scratch[128], g_store[128];
static void *g_ctx;
static int g_threads = 1; /* the workers' */
static int g_net_retry_s; /* the workers' network_retry_s (0: the default) */

/* ------------------------------------------------------------- log capture */

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
    int found = strstr(log_buf, needle) != NULL;
    pthread_mutex_unlock(&log_mu);
    return found;
}

static void setup(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/dp-test-worker-XXXXXX");
    cr_assert_not_null(mkdtemp(g_dir));
    snprintf(g_journal, sizeof g_journal, "%s/journal", g_dir);
    snprintf(g_scratch, sizeof g_scratch, "%s/scratch", g_dir);
    snprintf(g_store, sizeof g_store, "%s/store", g_dir);
    cr_assert_eq(mkdir(g_scratch, 0700), 0);
    cr_assert_eq(mkdir(g_store, 0700), 0);
    cr_assert_not_null(g_ctx = zmq_ctx_new());
    g_net_retry_s = 0;
    log_len = 0;
    log_buf[0] = '\0';
    dp_log_set_sink(log_sink, NULL);
    dp_log_set_level(DP_LOG_INFO);
}

static void teardown(void)
{
    zmq_ctx_term(g_ctx);
    dp_log_set_sink(NULL, NULL);
    dp_path_remove_tree(g_dir);
}

/* ------------------------------------------------------------- a campaign */

typedef struct tiny {
    Dp__V1__Campaign c;
    Dp__V1__Model m, *mp;
    Dp__V1__Dataset d, *dp;
    Dp__V1__IndexRange train, test;
    Dp__V1__Budget b, *bp;
    float eps;
    Dp__V1__DeviceClass dc, *dcp;
    Dp__V1__GeneratorSettings g;
    Dp__V1__UInt32Value width, epochs, batch, iters, warmup, reps;
    Dp__V1__FloatValue min_time;
    Dp__V1__Baseline bl[2], *blp[2];
    Dp__V1__MeasureSettings ms;
    char store_uri[160];
} tiny_t;

/* seeds [0, seeds) in shards of shard, SDN-ResNet, Linf 0.09, class
 * "local", no baselines unless asked. */
static void tiny_init(tiny_t *t, uint32_t seeds, uint32_t shard, int baselines)
{
    memset(t, 0, sizeof *t);
    t->c = (Dp__V1__Campaign)DP__V1__CAMPAIGN__INIT;
    t->c.name = "tiny";
    snprintf(t->store_uri, sizeof t->store_uri, "file://%s", g_store);
    t->c.store_uri = t->store_uri;
    t->m = (Dp__V1__Model)DP__V1__MODEL__INIT;
    t->m.name = "sdn_resnet";
    t->m.family = DP__V1__MODEL_FAMILY__MODEL_FAMILY_SDN_RESNET;
    t->m.spec_uri = "file://" SDN ".pb";
    t->m.weights_uri = "file://" SDN ".safetensors";
    t->mp = &t->m;
    t->c.n_models = 1, t->c.models = &t->mp;
    t->d = (Dp__V1__Dataset)DP__V1__DATASET__INIT;
    t->d.name = "fmnist";
    t->d.format = DP__V1__DATASET_FORMAT__DATASET_FORMAT_IDX;
    t->d.train_images_uri = "file://" FMNIST "/train-images-idx3-ubyte.gz";
    t->d.train_labels_uri = "file://" FMNIST "/train-labels-idx1-ubyte.gz";
    t->d.test_images_uri = "file://" FMNIST "/t10k-images-idx3-ubyte.gz";
    t->d.test_labels_uri = "file://" FMNIST "/t10k-labels-idx1-ubyte.gz";
    t->train = t->test = (Dp__V1__IndexRange)DP__V1__INDEX_RANGE__INIT;
    t->train.end = 71;
    t->test.end = seeds;
    t->d.train_range = &t->train;
    t->d.test_range = &t->test;
    t->d.shard_size = shard;
    t->dp = &t->d;
    t->c.n_datasets = 1, t->c.datasets = &t->dp;
    t->eps = 0.09f;
    t->b = (Dp__V1__Budget)DP__V1__BUDGET__INIT;
    t->b.norm = DP__V1__NORM__NORM_LINF, t->b.n_eps = 1, t->b.eps = &t->eps;
    t->bp = &t->b;
    t->c.n_budgets = 1, t->c.budgets = &t->bp;
    t->dc = (Dp__V1__DeviceClass)DP__V1__DEVICE_CLASS__INIT;
    t->dc.name = "local";
    t->dc.probe = DP__V1__ENERGY_PROBE__ENERGY_PROBE_NONE;
    t->dcp = &t->dc;
    t->c.n_device_classes = 1, t->c.device_classes = &t->dcp;
    t->g = (Dp__V1__GeneratorSettings)DP__V1__GENERATOR_SETTINGS__INIT;
    t->width = t->epochs = t->batch = t->iters = t->warmup = t->reps =
        (Dp__V1__UInt32Value)DP__V1__UINT32_VALUE__INIT;
    t->width.value = 8, t->epochs.value = 1, t->batch.value = 32;
    t->g.width = &t->width, t->g.epochs = &t->epochs, t->g.batch_size = &t->batch;
    t->g.seed = 1;
    t->c.generator = &t->g;
    if (baselines) {
        for (int i = 0; i < 2; i++) {
            t->bl[i] = (Dp__V1__Baseline)DP__V1__BASELINE__INIT;
            t->blp[i] = &t->bl[i];
        }
        t->bl[0].method = DP__V1__BASELINE_METHOD__BASELINE_METHOD_RANDOM;
        t->bl[1].method = DP__V1__BASELINE_METHOD__BASELINE_METHOD_ILFO;
        t->iters.value = 2;
        t->bl[1].iterations = &t->iters;
        t->c.n_baselines = 2, t->c.baselines = t->blp;
    }
    t->ms = (Dp__V1__MeasureSettings)DP__V1__MEASURE_SETTINGS__INIT;
    t->warmup.value = 1, t->reps.value = 2;
    t->ms.warmup = &t->warmup, t->ms.repetitions = &t->reps;
    t->min_time = (Dp__V1__FloatValue)DP__V1__FLOAT_VALUE__INIT; /* 0: the count decides */
    t->ms.min_time_s = &t->min_time;
    t->c.measure = &t->ms;
    cr_assert_eq(campaign_validate(&t->c), DP_OK, "%s", dp_err_detail());
}

/* ------------------------------------------------------------- threads */

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

static void server_start(server_thread_t *t)
{
    dp_coord_server_opts_t o;
    dp_coord_server_opts_init(&o);
    o.bind = "inproc://coord";
    o.journal_path = g_journal;
    o.heartbeat_ms = 100;
    o.no_fsync = 1;
    o.coordinator_id = "test-coordinator";
    o.zmq_ctx = g_ctx;
    memset(t, 0, sizeof *t);
    cr_assert_eq(dp_coord_server_new(&o, &t->s), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(pthread_create(&t->th, NULL, server_main, t), 0);
}

static void server_stop(server_thread_t *t)
{
    dp_coord_server_stop(t->s);
    pthread_join(t->th, NULL);
    cr_assert_eq(t->rc, DP_OK, "server: %s", dp_err_detail());
    dp_coord_server_destroy(&t->s);
}

typedef struct worker_thread {
    dp_worker_t *w;
    pthread_t th;
    dp_err_t rc;
} worker_thread_t;

static void *worker_main(void *arg)
{
    worker_thread_t *t = arg;
    t->rc = dp_worker_run(t->w, NULL);
    return NULL;
}

static void worker_start(worker_thread_t *t, Dp__V1__Role role, const char *id,
                         dp_worker_run_fn run, void *arg)
{
    dp_worker_opts_t o;
    dp_worker_opts_init(&o);
    o.role = role;
    o.endpoint = "inproc://coord";
    o.zmq_ctx = g_ctx;
    o.worker_id = id;
    o.host = "one-host"; /* as in local mode: measuring never overlaps training */
    o.device_class = role == DP__V1__ROLE__ROLE_MEASURER ? "local" : NULL;
    o.scratch = g_scratch;
    o.threads = g_threads;
    o.network_retry_s = g_net_retry_s;
    o.heartbeat_ms = 100;
    o.run = run;
    o.run_arg = arg;
    memset(t, 0, sizeof *t);
    cr_assert_eq(dp_worker_new(&o, &t->w), DP_OK, "%s", dp_err_detail());
    cr_assert_str_eq(dp_worker_id(t->w), id);
    cr_assert_eq(pthread_create(&t->th, NULL, worker_main, t), 0);
}

static void worker_stop(worker_thread_t *t, dp_worker_stats_t *st)
{
    dp_worker_stop(t->w);
    pthread_join(t->th, NULL);
    cr_assert_eq(t->rc, DP_OK, "worker: %s", dp_err_detail());
    if (st) dp_worker_stats(t->w, st);
    dp_worker_destroy(&t->w);
}

static dp_client_t *client(void)
{
    dp_client_opts_t o;
    dp_client_opts_init(&o);
    o.endpoint = "inproc://coord";
    o.zmq_ctx = g_ctx;
    dp_client_t *c = NULL;
    cr_assert_eq(dp_client_new(&o, &c), DP_OK, "%s", dp_err_detail());
    return c;
}

/* Submits t and waits until its campaign ends; returns the final status
 * (caller frees), *cid its id. */
static Dp__V1__StatusReply *run_campaign(dp_client_t *c, const tiny_t *t, char *cid, size_t size)
{
    dp_client_submitted_t sub;
    cr_assert_eq(dp_client_submit(c, &t->c, NULL, NULL, &sub), DP_OK, "%s", dp_err_detail());
    snprintf(cid, size, "%s", sub.campaign_id);
    Dp__V1__StatusReply *r = NULL;
    cr_assert_eq(dp_client_wait(c, cid, 50, NULL, NULL, NULL, &r), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(r->n_campaigns, 1);
    return r;
}

static const Dp__V1__TaskStatus *task_of(const Dp__V1__StatusReply *r, Dp__V1__TaskKind k)
{
    const Dp__V1__CampaignStatus *cs = r->campaigns[0];
    for (size_t i = 0; i < cs->n_tasks; i++)
        if (cs->tasks[i]->kind == k) return cs->tasks[i];
    return NULL;
}

/* ------------------------------------------------------------- stub runners */

typedef struct stub {
    atomic_int runs[6];     /* per kind */
    atomic_int measured_on; /* MEASURE tasks run by a measurer's thread id mismatch: counted */
    Dp__V1__TaskKind fail_kind;
    dp_err_t fail_err;
    int fail_attempts;    /* fail attempts 1..fail_attempts */
    atomic_int fail_runs; /* or: fail this many runs, whatever the attempt */
    Dp__V1__TaskKind slow_kind;
    int slow_ms; /* 0: until cancelled */
    atomic_int slow_running;
    atomic_int saw_cancel;
} stub_t;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static dp_err_t stub_run(void *arg, const Dp__V1__Task *t, const dp_task_env_t *env,
                         dp_task_result_t *out)
{
    stub_t *s = arg;
    memset(out, 0, sizeof *out);
    atomic_fetch_add(&s->runs[t->kind], 1);
    if (t->kind == s->fail_kind && (int)t->attempt <= s->fail_attempts)
        return dp_err_set(s->fail_err, "stub: bad bytes in %s", t->id);
    if (t->kind == s->fail_kind && atomic_fetch_sub(&s->fail_runs, 1) > 0)
        return dp_err_set(s->fail_err, "stub: cannot reach the store for %s", t->id);
    if (t->kind == s->slow_kind) {
        atomic_store(&s->slow_running, 1);
        for (int waited = 0; !s->slow_ms || waited < s->slow_ms; waited += 10) {
            if (env->hooks.cancelled && env->hooks.cancelled(env->hooks.ctx)) {
                atomic_store(&s->saw_cancel, 1);
                atomic_store(&s->slow_running, 0);
                return dp_err_set(DP_ERR_CANCELLED, "stub: cancelled");
            }
            if (env->hooks.progress) env->hooks.progress(env->hooks.ctx, "stub", 1, 2, "halfway");
            sleep_ms(10);
        }
        atomic_store(&s->slow_running, 0);
    }
    out->summary_json = strdup("{\"stub\":true}");
    out->artifact_keys = malloc(sizeof(char *));
    out->artifact_keys[0] = strdup(t->output_prefix);
    out->n_artifact_keys = 1;
    return DP_OK;
}

/* ------------------------------------------------------------- tests */

TestSuite(worker, .init = setup, .fini = teardown, .timeout = 120);

Test(worker, campaign_done)
{
    server_thread_t s;
    worker_thread_t tr, me;
    stub_t stub = {0}, mstub = {0};
    server_start(&s);
    worker_start(&tr, DP__V1__ROLE__ROLE_TRAINER, "trainer-1", stub_run, &stub);
    worker_start(&me, DP__V1__ROLE__ROLE_MEASURER, "measurer-1", stub_run, &mstub);
    tiny_t t;
    tiny_init(&t, 8, 4, 1);
    dp_client_t *c = client();
    char cid[512];
    Dp__V1__StatusReply *r = run_campaign(c, &t, cid, sizeof cid);
    Dp__V1__CampaignState st = r->campaigns[0]->state;
    uint32_t attempt = task_of(r, DP__V1__TASK_KIND__TASK_KIND_TRAIN)->attempt;
    dp_client_status_free(&r);
    dp_client_destroy(&c);
    dp_worker_stats_t a, b;
    worker_stop(&tr, &a);
    worker_stop(&me, &b);
    cr_assert_eq(st, DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_DONE);
    cr_assert_eq(attempt, 1);
    /* 1 TRAIN, 2 GENERATE, 2x2 BASELINE, 1 REPORT on the trainer; 2 x 4
     * MEASURE (seeds and 3 methods) on the measurer */
    cr_assert_eq(atomic_load(&stub.runs[1]), 1);
    cr_assert_eq(atomic_load(&stub.runs[2]), 2);
    cr_assert_eq(atomic_load(&stub.runs[3]), 4);
    cr_assert_eq(atomic_load(&stub.runs[4]), 0);
    cr_assert_eq(atomic_load(&stub.runs[5]), 1);
    cr_assert_eq(atomic_load(&mstub.runs[4]), 8);
    cr_assert_eq(atomic_load(&mstub.runs[1]) + atomic_load(&mstub.runs[2]) +
                     atomic_load(&mstub.runs[3]) + atomic_load(&mstub.runs[5]),
                 0);
    cr_assert_eq(a.tasks_done, 8);
    cr_assert_eq(b.tasks_done, 8);
    cr_assert_eq(a.tasks_failed + b.tasks_failed, 0);
    sleep_ms(200);
    cr_assert(log_has("trainer-1 disconnected: stopping"), "%s", log_buf);
    server_stop(&s);
}

Test(worker, bad_input_fails_once_network_retries)
{
    server_thread_t s;
    worker_thread_t tr, me;
    stub_t stub = {0};
    stub.fail_kind = DP__V1__TASK_KIND__TASK_KIND_GENERATE;
    stub.fail_err = DP_ERR_FORMAT;
    stub.fail_attempts = 99;
    server_start(&s);
    g_net_retry_s = -1; /* a network error is a Failure at once, not run again here */
    worker_start(&tr, DP__V1__ROLE__ROLE_TRAINER, "trainer-1", stub_run, &stub);
    worker_start(&me, DP__V1__ROLE__ROLE_MEASURER, "measurer-1", stub_run, &stub);
    tiny_t t;
    tiny_init(&t, 4, 4, 0);
    dp_client_t *c = client();
    char cid[512];
    Dp__V1__StatusReply *r = run_campaign(c, &t, cid, sizeof cid);
    cr_assert_eq(r->campaigns[0]->state, DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_FAILED);
    const Dp__V1__TaskStatus *g = task_of(r, DP__V1__TASK_KIND__TASK_KIND_GENERATE);
    cr_assert_eq(g->state, DP__V1__TASK_STATE__TASK_STATE_FAILED);
    cr_assert_eq(g->attempt, 1, "a bad input was tried again");
    cr_assert(strstr(g->reason, "stub: bad bytes in"), "%s", g->reason);
    dp_client_status_free(&r);
    cr_assert_eq(atomic_load(&stub.runs[2]), 1);
    /* a network error: the next attempt runs and succeeds */
    stub.fail_kind = DP__V1__TASK_KIND__TASK_KIND_TRAIN;
    stub.fail_err = DP_ERR_NETWORK;
    stub.fail_attempts = 1;
    t.c.name = "tiny2";
    r = run_campaign(c, &t, cid, sizeof cid);
    cr_assert_eq(r->campaigns[0]->state, DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_DONE);
    const Dp__V1__TaskStatus *tt = task_of(r, DP__V1__TASK_KIND__TASK_KIND_TRAIN);
    cr_assert_eq(tt->attempt, 2);
    dp_client_status_free(&r);
    dp_client_destroy(&c);
    dp_worker_stats_t a;
    worker_stop(&tr, &a);
    worker_stop(&me, NULL);
    cr_assert_eq(a.tasks_failed, 2);
    server_stop(&s);
}

/* The store unreachable (DP_ERR_NETWORK) for two runs of TRAIN: the worker
 * runs it again after 1 s and 2 s, holding the lease; attempt 1 completes
 * and no Failure reaches the coordinator (an outage costs no attempt). */
Test(worker, network_error_run_again_on_the_worker)
{
    server_thread_t s;
    worker_thread_t tr, me;
    stub_t stub = {0}, mstub = {0};
    stub.fail_kind = DP__V1__TASK_KIND__TASK_KIND_TRAIN;
    stub.fail_err = DP_ERR_NETWORK;
    atomic_store(&stub.fail_runs, 2);
    server_start(&s);
    worker_start(&tr, DP__V1__ROLE__ROLE_TRAINER, "trainer-1", stub_run, &stub);
    worker_start(&me, DP__V1__ROLE__ROLE_MEASURER, "measurer-1", stub_run, &mstub);
    tiny_t t;
    tiny_init(&t, 4, 4, 0);
    dp_client_t *c = client();
    char cid[512];
    Dp__V1__StatusReply *r = run_campaign(c, &t, cid, sizeof cid);
    cr_assert_eq(r->campaigns[0]->state, DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_DONE);
    cr_assert_eq(task_of(r, DP__V1__TASK_KIND__TASK_KIND_TRAIN)->attempt, 1);
    dp_client_status_free(&r);
    dp_client_destroy(&c);
    dp_worker_stats_t a;
    worker_stop(&tr, &a);
    worker_stop(&me, NULL);
    cr_assert_eq(atomic_load(&stub.runs[DP__V1__TASK_KIND__TASK_KIND_TRAIN]), 3);
    cr_assert_eq(a.reruns, 2);
    cr_assert_eq(a.tasks_failed, 0);
    cr_assert(log_has("the store cannot be reached: run 2 again in 1 s"), "%s", log_buf);
    cr_assert(log_has("the store cannot be reached: run 3 again in 2 s"), "%s", log_buf);
    server_stop(&s);
}

/* The store unreachable for longer than network_retry_s (1 s): each
 * attempt's Failure says for how long, and after --max-attempts the cell
 * fails with that reason. A cancel ends a pause at once. */
Test(worker, network_error_past_the_budget_fails_the_attempt)
{
    server_thread_t s;
    worker_thread_t tr, me;
    stub_t stub = {0}, mstub = {0};
    stub.fail_kind = DP__V1__TASK_KIND__TASK_KIND_TRAIN;
    stub.fail_err = DP_ERR_NETWORK;
    atomic_store(&stub.fail_runs, 1000000);
    server_start(&s);
    g_net_retry_s = 1;
    worker_start(&tr, DP__V1__ROLE__ROLE_TRAINER, "trainer-1", stub_run, &stub);
    worker_start(&me, DP__V1__ROLE__ROLE_MEASURER, "measurer-1", stub_run, &mstub);
    tiny_t t;
    tiny_init(&t, 4, 4, 0);
    dp_client_t *c = client();
    char cid[512];
    Dp__V1__StatusReply *r = run_campaign(c, &t, cid, sizeof cid);
    cr_assert_eq(r->campaigns[0]->state, DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_FAILED);
    const Dp__V1__TaskStatus *tt = task_of(r, DP__V1__TASK_KIND__TASK_KIND_TRAIN);
    cr_assert_eq(tt->state, DP__V1__TASK_STATE__TASK_STATE_FAILED);
    cr_assert_eq(tt->attempt, 3);
    cr_assert(strstr(tt->reason, "stub: cannot reach the store"), "%s", tt->reason);
    cr_assert(strstr(tt->reason, "(the store unreachable for 1 s, 2 runs)"), "%s", tt->reason);
    dp_client_status_free(&r);
    /* 2 runs per attempt */
    cr_assert_eq(atomic_load(&stub.runs[DP__V1__TASK_KIND__TASK_KIND_TRAIN]), 6);
    worker_stop(&tr, NULL);
    /* a cancel during a pause of a long budget */
    g_net_retry_s = 300;
    worker_start(&tr, DP__V1__ROLE__ROLE_TRAINER, "trainer-2", stub_run, &stub);
    t.c.name = "tiny2";
    dp_client_submitted_t sub;
    cr_assert_eq(dp_client_submit(c, &t.c, NULL, NULL, &sub), DP_OK, "%s", dp_err_detail());
    for (int i = 0; i < WAIT_S * 100 && !log_has("run 2 again in 1 s (0 s of 300 s)"); i++)
        sleep_ms(10);
    cr_assert(log_has("run 2 again in 1 s (0 s of 300 s)"), "%s", log_buf);
    uint32_t n = 0;
    cr_assert_eq(dp_client_cancel(c, sub.campaign_id, "test", NULL, &n), DP_OK, "%s",
                 dp_err_detail());
    for (int i = 0; i < 300 && !log_has("cancelled while waiting for the store"); i++) sleep_ms(10);
    cr_assert(log_has("cancelled while waiting for the store to come back"), "%s", log_buf);
    dp_client_destroy(&c);
    worker_stop(&tr, NULL);
    worker_stop(&me, NULL);
    server_stop(&s);
}

Test(worker, cancel_reaches_the_task)
{
    server_thread_t s;
    worker_thread_t tr;
    stub_t stub = {0};
    stub.slow_kind = DP__V1__TASK_KIND__TASK_KIND_TRAIN; /* until cancelled */
    server_start(&s);
    worker_start(&tr, DP__V1__ROLE__ROLE_TRAINER, "trainer-1", stub_run, &stub);
    tiny_t t;
    tiny_init(&t, 4, 4, 0);
    dp_client_t *c = client();
    dp_client_submitted_t sub;
    cr_assert_eq(dp_client_submit(c, &t.c, NULL, NULL, &sub), DP_OK, "%s", dp_err_detail());
    for (int i = 0; i < WAIT_S * 100 && !atomic_load(&stub.slow_running); i++) sleep_ms(10);
    cr_assert(atomic_load(&stub.slow_running), "TRAIN never started");
    sleep_ms(300); /* a progress report or two */
    uint32_t n = 0;
    cr_assert_eq(dp_client_cancel(c, sub.campaign_id, "test", NULL, &n), DP_OK, "%s",
                 dp_err_detail());
    for (int i = 0; i < WAIT_S * 100 && !atomic_load(&stub.saw_cancel); i++) sleep_ms(10);
    cr_assert(atomic_load(&stub.saw_cancel), "the runner was not cancelled");
    dp_client_destroy(&c);
    sleep_ms(300);
    dp_worker_stats_t a;
    worker_stop(&tr, &a);
    cr_assert_eq(a.tasks_cancelled, 1);
    cr_assert(log_has("cancelled by the coordinator"), "%s", log_buf);
    server_stop(&s);
}

Test(worker, coordinator_restart)
{
    server_thread_t s;
    worker_thread_t tr, me;
    stub_t stub = {0};
    stub.slow_kind = DP__V1__TASK_KIND__TASK_KIND_TRAIN;
    stub.slow_ms = 1500;
    server_start(&s);
    worker_start(&tr, DP__V1__ROLE__ROLE_TRAINER, "trainer-1", stub_run, &stub);
    worker_start(&me, DP__V1__ROLE__ROLE_MEASURER, "measurer-1", stub_run, &stub);
    tiny_t t;
    tiny_init(&t, 4, 4, 0);
    dp_client_t *c = client();
    dp_client_submitted_t sub;
    cr_assert_eq(dp_client_submit(c, &t.c, NULL, NULL, &sub), DP_OK, "%s", dp_err_detail());
    dp_client_destroy(&c);
    for (int i = 0; i < WAIT_S * 100 && !atomic_load(&stub.slow_running); i++) sleep_ms(10);
    cr_assert(atomic_load(&stub.slow_running), "TRAIN never started");
    /* the coordinator goes away while the TRAIN runs, and comes back */
    server_stop(&s);
    sleep_ms(200);
    server_start(&s);
    c = client();
    Dp__V1__StatusReply *r = NULL;
    cr_assert_eq(dp_client_wait(c, sub.campaign_id, 50, NULL, NULL, NULL, &r), DP_OK, "%s",
                 dp_err_detail());
    cr_assert_eq(r->campaigns[0]->state, DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_DONE, "%s",
                 log_buf);
    const Dp__V1__TaskStatus *tt = task_of(r, DP__V1__TASK_KIND__TASK_KIND_TRAIN);
    cr_assert_eq(tt->attempt, 1, "the TRAIN was leased again");
    dp_client_status_free(&r);
    dp_client_destroy(&c);
    cr_assert_eq(atomic_load(&stub.runs[1]), 1, "the TRAIN ran twice");
    dp_worker_stats_t a;
    worker_stop(&tr, &a);
    worker_stop(&me, NULL);
    cr_assert_geq(a.connects, 2, "%s", log_buf);
    cr_assert_geq(a.welcomes, 2);
    server_stop(&s);
}

/* ------------------------------------------------------------- the real thing */

Test(worker, local_campaign, .timeout = 300)
{
    if (access(FMNIST "/t10k-images-idx3-ubyte.gz", R_OK) != 0)
        cr_skip_test("Fashion-MNIST is not installed in " FMNIST);
    server_thread_t s;
    worker_thread_t tr, me;
    server_start(&s);
    worker_start(&tr, DP__V1__ROLE__ROLE_TRAINER, "trainer-1", NULL, NULL);
    worker_start(&me, DP__V1__ROLE__ROLE_MEASURER, "measurer-1", NULL, NULL);
    tiny_t t;
    tiny_init(&t, 8, 8, 1);
    dp_client_t *c = client();
    char cid[512];
    Dp__V1__StatusReply *r = run_campaign(c, &t, cid, sizeof cid);
    cr_assert_eq(r->campaigns[0]->state, DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_DONE, "%s",
                 log_buf);
    dp_client_status_free(&r);
    dp_client_destroy(&c);
    char path[1280];
    const char *keys[] = {"linf-0.09/deepperform/generator/generator.safetensors",
                          "linf-0.09/deepperform/generator.ckpt",
                          "linf-0.09/deepperform/s0/samples.safetensors",
                          "linf-0.09/random/s0/samples.safetensors",
                          "linf-0.09/ilfo/s0/samples.safetensors",
                          "seeds/s0/measure-local/measure.json",
                          "linf-0.09/deepperform/s0/measure-local/measure.json"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        snprintf(path, sizeof path, "%s/%s/sdn_resnet/%s", g_store, cid, keys[i]);
        cr_assert_eq(access(path, R_OK), 0, "no %s", path);
    }
    snprintf(path, sizeof path, "%s/%s/report/summary.json", g_store, cid);
    cr_assert_eq(access(path, R_OK), 0, "no %s", path);
    worker_stop(&tr, NULL);
    worker_stop(&me, NULL);
    server_stop(&s);
}

/* examples/quickstart.txtpb in local mode with the real task layer: what
 * README command (a) runs, timed. Slow (minutes): only with
 * DP_TEST_QUICKSTART=1. */
Test(worker, quickstart, .timeout = 1800)
{
    if (!getenv("DP_TEST_QUICKSTART") || strcmp(getenv("DP_TEST_QUICKSTART"), "1"))
        cr_skip_test("set DP_TEST_QUICKSTART=1 to run the quickstart campaign");
    FILE *f = fopen(DP_BINARY_DIR "/examples/quickstart.pb", "rb");
    cr_assert_not_null(f, "build the examples target first");
    static uint8_t buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    Dp__V1__Campaign *camp = NULL;
    cr_assert_eq(campaign_decode(buf, n, "quickstart.pb", &camp), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(dp_client_campaign_resolve(camp, DP_SOURCE_DIR "/examples", NULL, NULL), DP_OK);
    char store[160], *orig = camp->store_uri;
    snprintf(store, sizeof store, "file://%s", g_store);
    camp->store_uri = store; /* borrowed: the campaign's own goes back before it is freed */
    g_threads = 0;           /* every core, as dp-submit --local */
    server_thread_t s;
    worker_thread_t tr, me;
    server_start(&s);
    worker_start(&tr, DP__V1__ROLE__ROLE_TRAINER, "trainer-1", NULL, NULL);
    worker_start(&me, DP__V1__ROLE__ROLE_MEASURER, "measurer-1", NULL, NULL);
    dp_client_t *c = client();
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    dp_client_submitted_t sub;
    cr_assert_eq(dp_client_submit(c, camp, NULL, NULL, &sub), DP_OK, "%s", dp_err_detail());
    Dp__V1__StatusReply *r = NULL;
    cr_assert_eq(dp_client_wait(c, sub.campaign_id, 500, NULL, NULL, NULL, &r), DP_OK, "%s",
                 dp_err_detail());
    clock_gettime(CLOCK_MONOTONIC, &t1);
    Dp__V1__CampaignState st = r->campaigns[0]->state;
    dp_client_status_free(&r);
    dp_client_destroy(&c);
    worker_stop(&tr, NULL);
    worker_stop(&me, NULL);
    server_stop(&s);
    fprintf(stderr, "quickstart: %u tasks, %.1f s\n", sub.tasks,
            (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9);
    char path[1280];
    snprintf(path, sizeof path, "%s/%s/report/summary.json", g_store, sub.campaign_id);
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "cp %s /tmp/quickstart-summary.json", path);
    if (system(cmd)) fprintf(stderr, "no %s\n", path);
    cr_assert_eq(st, DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_DONE, "%s", log_buf);
    camp->store_uri = orig;
    campaign_free(&camp);
}
