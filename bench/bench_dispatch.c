/* Dispatch throughput of the coordinator over tcp loopback (issue 12):
 *
 *   bench_dispatch [--workers 8] [--idle 0] [--tasks 20000] [--capacity 32]
 *                  [--no-fsync] [--dir /tmp]
 *
 * The coordinator (dp_coord_server, the loop dp-coordinator runs) serves on
 * tcp://127.0.0.1 from a thread of its own with its journal in DIR, fsync'ed
 * by group commit unless --no-fsync. A campaign of no-op tasks (one model,
 * one eps, the random baseline on TASKS seeds in shards of one: TASKS
 * BASELINE tasks, then the TRAIN, the TASKS GENERATE and the REPORT) is
 * submitted; WORKERS trainer threads, each a DEALER holding up to CAPACITY
 * leases (Ready{slots}), answer every Assign with a Result at once. IDLE more
 * workers (all on one thread) connect, say Hello and send a Heartbeat every
 * second without ever taking a task (--idle 1000: the 1,000 connected
 * workers of the issue).
 * Prints tasks completed per second from the first Assign to the campaign's
 * end, and the coordinator's records and commits. */
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <zmq.h>

#include "client.h"
#include "server.h"
#include "util/clock.h"
#include "util/log.h"
#include "wire/envelope.h"
#include "wire/sock.h"

static atomic_int g_stop;
static atomic_ullong g_done;
static char g_endpoint[256];
static void *g_ctx;

typedef struct worker_arg {
    int index, capacity;
} worker_arg_t;

static void send_hello(void *s, const char *id, uint32_t capacity, uint64_t *seq)
{
    Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;
    Dp__V1__Hello h = DP__V1__HELLO__INIT;
    h.role = DP__V1__ROLE__ROLE_TRAINER, h.worker_id = (char *)id, h.capacity = capacity;
    h.protocol_min = h.protocol_max = 1, h.host = (char *)id;
    e.body_case = DP__V1__ENVELOPE__BODY_HELLO, e.hello = &h;
    dp_wire_send(s, NULL, &e, seq, 0);
}

static void send_ready(void *s, uint32_t slots, uint64_t *seq)
{
    Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;
    Dp__V1__Ready r = DP__V1__READY__INIT;
    r.slots = slots;
    e.body_case = DP__V1__ENVELOPE__BODY_READY, e.ready = &r;
    dp_wire_send(s, NULL, &e, seq, 0);
}

static void send_heartbeat(void *s, uint64_t *seq)
{
    Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;
    Dp__V1__Heartbeat h = DP__V1__HEARTBEAT__INIT;
    e.body_case = DP__V1__ENVELOPE__BODY_HEARTBEAT, e.heartbeat = &h;
    dp_wire_send(s, NULL, &e, seq, 0);
}

static void send_result(void *s, const char *task_id, uint32_t attempt, uint64_t *seq)
{
    Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;
    Dp__V1__Result r = DP__V1__RESULT__INIT;
    Dp__V1__TaskResult tr = DP__V1__TASK_RESULT__INIT;
    tr.summary_json = "{\"noop\":1}";
    r.task_id = (char *)task_id, r.attempt = attempt, r.result = &tr;
    e.body_case = DP__V1__ENVELOPE__BODY_RESULT, e.result = &r;
    dp_wire_send(s, NULL, &e, seq, 0);
}

static void *worker_main(void *p)
{
    const worker_arg_t *a = p;
    char id[64];
    snprintf(id, sizeof id, "w-%d", a->index);
    dp_wire_sock_opts_t o;
    dp_wire_sock_opts_init(&o);
    o.routing_id = id, o.linger_ms = 0;
    void *s = NULL;
    if (dp_wire_socket(g_ctx, ZMQ_DEALER, &o, &s) || dp_wire_connect(s, g_endpoint)) return NULL;
    int timeout = 100;
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    uint64_t seq = 0;
    send_hello(s, id, (uint32_t)a->capacity, &seq);
    int outstanding = 0;
    double last_hb = dp_clock_s();
    while (!atomic_load(&g_stop)) {
        Dp__V1__Envelope *e = NULL;
        dp_err_t err = dp_wire_recv(s, 0, 0, NULL, &e);
        if (dp_clock_s() - last_hb >= 1.0) {
            send_heartbeat(s, &seq);
            last_hb = dp_clock_s();
        }
        if (err) continue;
        switch (e->body_case) {
        case DP__V1__ENVELOPE__BODY_WELCOME:
            send_ready(s, (uint32_t)a->capacity, &seq);
            break;
        case DP__V1__ENVELOPE__BODY_ASSIGN:
            outstanding++;
            send_result(s, e->assign->task->id, e->assign->task->attempt, &seq);
            break;
        case DP__V1__ENVELOPE__BODY_ACK:
            if (outstanding) outstanding--;
            atomic_fetch_add(&g_done, 1);
            send_ready(s, (uint32_t)(a->capacity - outstanding), &seq);
            break;
        case DP__V1__ENVELOPE__BODY_ERROR:
            send_hello(s, id, (uint32_t)a->capacity, &seq);
            break;
        default:
            break;
        }
        dp_wire_free(&e);
    }
    zmq_close(s);
    return NULL;
}

/* The idle workers: n DEALERs on one thread, each saying Hello, then a
 * Heartbeat every second, answering nothing else (cheaper than a thread
 * each, so the figure is the coordinator's, not the bench's). */
static void *idle_main(void *p)
{
    const int n = *(const int *)p;
    void **socks = calloc((size_t)n, sizeof *socks);
    zmq_pollitem_t *items = calloc((size_t)n, sizeof *items);
    uint64_t *seqs = calloc((size_t)n, sizeof *seqs);
    if (!socks || !items || !seqs) return NULL;
    for (int i = 0; i < n; i++) {
        char id[64];
        snprintf(id, sizeof id, "idle-%d", i);
        dp_wire_sock_opts_t o;
        dp_wire_sock_opts_init(&o);
        o.routing_id = id, o.linger_ms = 0;
        if (dp_wire_socket(g_ctx, ZMQ_DEALER, &o, &socks[i]) ||
            dp_wire_connect(socks[i], g_endpoint))
            return NULL;
        send_hello(socks[i], id, 1, &seqs[i]);
        items[i] = (zmq_pollitem_t){.socket = socks[i], .events = ZMQ_POLLIN};
    }
    double last_hb = dp_clock_s();
    while (!atomic_load(&g_stop)) {
        if (zmq_poll(items, n, 100) > 0)
            for (int i = 0; i < n; i++) {
                Dp__V1__Envelope *e = NULL;
                while (items[i].revents & ZMQ_POLLIN &&
                       !dp_wire_recv(socks[i], ZMQ_DONTWAIT, 0, NULL, &e))
                    dp_wire_free(&e);
            }
        if (dp_clock_s() - last_hb >= 1.0) {
            for (int i = 0; i < n; i++) send_heartbeat(socks[i], &seqs[i]);
            last_hb = dp_clock_s();
        }
    }
    for (int i = 0; i < n; i++) zmq_close(socks[i]);
    free(socks), free(items), free(seqs);
    return NULL;
}

static void *server_main(void *p)
{
    dp_coord_server_run(p, NULL);
    return NULL;
}

static Dp__V1__Campaign *campaign(uint32_t seeds)
{
    static Dp__V1__Model m = DP__V1__MODEL__INIT, *mp[1] = {&m};
    static Dp__V1__Dataset d = DP__V1__DATASET__INIT, *dp[1] = {&d};
    static Dp__V1__IndexRange tr = DP__V1__INDEX_RANGE__INIT;
    static float eps[1] = {0.09f};
    static Dp__V1__Budget b = DP__V1__BUDGET__INIT, *bp[1] = {&b};
    static Dp__V1__Baseline bl = DP__V1__BASELINE__INIT, *blp[1] = {&bl};
    static Dp__V1__Campaign c = DP__V1__CAMPAIGN__INIT;
    m.name = "noop", m.family = DP__V1__MODEL_FAMILY__MODEL_FAMILY_SKIPNET;
    m.spec_uri = "file:///nonexistent/noop.pb", m.weights_uri = "file:///nonexistent/noop.st";
    tr.begin = 0, tr.end = seeds;
    d.name = "noop", d.format = DP__V1__DATASET_FORMAT__DATASET_FORMAT_IDX, d.test_range = &tr;
    d.shard_size = 1;
    d.train_images_uri = d.train_labels_uri = d.test_images_uri = d.test_labels_uri =
        "file:///nonexistent/x";
    b.norm = DP__V1__NORM__NORM_LINF, b.n_eps = 1, b.eps = eps;
    bl.method = DP__V1__BASELINE_METHOD__BASELINE_METHOD_RANDOM;
    c.name = "dispatch", c.n_models = 1, c.models = mp, c.n_datasets = 1, c.datasets = dp;
    c.n_budgets = 1, c.budgets = bp, c.n_baselines = 1, c.baselines = blp;
    c.store_uri = "file:///tmp/dispatch-store";
    return &c;
}

int main(int argc, char **argv)
{
    int workers = 8, idle = 0, capacity = 32, no_fsync = 0;
    long tasks = 20000;
    const char *dir = "/tmp";
    static const struct option lo[] = {{"workers", required_argument, 0, 'w'},
                                       {"idle", required_argument, 0, 'i'},
                                       {"tasks", required_argument, 0, 't'},
                                       {"capacity", required_argument, 0, 'c'},
                                       {"no-fsync", no_argument, 0, 'n'},
                                       {"dir", required_argument, 0, 'd'},
                                       {0, 0, 0, 0}};
    for (int ch; (ch = getopt_long(argc, argv, "", lo, NULL)) != -1;) {
        switch (ch) {
        case 'w':
            workers = atoi(optarg);
            break;
        case 'i':
            idle = atoi(optarg);
            break;
        case 't':
            tasks = atol(optarg);
            break;
        case 'c':
            capacity = atoi(optarg);
            break;
        case 'n':
            no_fsync = 1;
            break;
        case 'd':
            dir = optarg;
            break;
        default:
            fprintf(stderr, "usage: bench_dispatch [--workers N] [--idle N] [--tasks N] "
                            "[--capacity N] [--no-fsync] [--dir DIR]\n");
            return 2;
        }
    }
    if (workers < 1 || idle < 0 || tasks < 1 || capacity < 1) {
        fprintf(stderr, "bench_dispatch: counts must be positive\n");
        return 2;
    }
    struct rlimit rl;
    if (!getrlimit(RLIMIT_NOFILE, &rl)) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    dp_log_set_level(DP_LOG_WARN);
    g_ctx = zmq_ctx_new();
    zmq_ctx_set(g_ctx, ZMQ_MAX_SOCKETS, idle + workers + 64);
    char journal[4096];
    snprintf(journal, sizeof journal, "%s/bench_dispatch.%ld.journal", dir, (long)getpid());
    dp_coord_server_opts_t so;
    dp_coord_server_opts_init(&so);
    so.bind = "tcp://127.0.0.1:*", so.journal_path = journal, so.no_fsync = no_fsync;
    so.zmq_ctx = g_ctx;
    dp_coord_server_t *srv = NULL;
    if (dp_coord_server_new(&so, &srv)) {
        fprintf(stderr, "bench_dispatch: server: %s\n", dp_err_detail());
        return 1;
    }
    snprintf(g_endpoint, sizeof g_endpoint, "%s", dp_coord_server_endpoint(srv));
    pthread_t st;
    pthread_create(&st, NULL, server_main, srv);

    worker_arg_t *args = calloc((size_t)workers, sizeof *args);
    pthread_t *th = calloc((size_t)workers, sizeof *th), idle_th;
    if (idle) {
        pthread_create(&idle_th, NULL, idle_main, &idle);
        sleep(3); /* let the idle ones connect and register first */
    }

    dp_client_opts_t co;
    dp_client_opts_init(&co);
    co.endpoint = g_endpoint, co.zmq_ctx = g_ctx;
    dp_client_t *cl = NULL;
    dp_client_submitted_t sub;
    if (dp_client_new(&co, &cl) ||
        dp_client_submit(cl, campaign((uint32_t)tasks), NULL, NULL, &sub)) {
        fprintf(stderr, "bench_dispatch: submit: %s\n", dp_err_detail());
        return 1;
    }
    const double t0 = dp_clock_s();
    for (int i = 0; i < workers; i++) {
        args[i] = (worker_arg_t){i, capacity};
        pthread_create(&th[i], NULL, worker_main, &args[i]);
    }
    const uint32_t ntasks = sub.tasks;
    while (atomic_load(&g_done) < ntasks && dp_clock_s() - t0 < 600) usleep(2000);
    const double secs = dp_clock_s() - t0;
    const unsigned long long done = atomic_load(&g_done);
    dp_coord_server_stats_t ss;
    dp_coord_server_stats(srv, &ss);
    printf("dispatch: %llu of %u no-op tasks in %.2f s with %d workers x %d slots, %d idle "
           "workers: %.0f tasks/s (journal %s: %" PRIu64 " records, %" PRIu64 " commits)\n",
           done, ntasks, secs, workers, capacity, idle, (double)done / secs,
           no_fsync ? "not fsync'ed" : "fsync'ed by group commit", ss.records, ss.commits);
    atomic_store(&g_stop, 1);
    for (int i = 0; i < workers; i++) pthread_join(th[i], NULL);
    if (idle) pthread_join(idle_th, NULL);
    dp_client_destroy(&cl);
    dp_coord_server_stop(srv);
    pthread_join(st, NULL);
    dp_coord_server_destroy(&srv);
    zmq_ctx_term(g_ctx);
    unlink(journal);
    free(args);
    free(th);
    return done == ntasks ? 0 : 1;
}
