/* A pipeline worker as a library: dp-worker (role TRAINER: TRAIN,
 * GENERATE, BASELINE, REPORT) and dp-measurer (role MEASURER: MEASURE on
 * its device class) are this plus a config table, and dp-submit --local runs
 * one of each as threads over inproc:// on the coordinator's zmq context.
 *
 * Two threads. The socket thread (the one calling dp_worker_run) owns the
 * DEALER: Hello, Welcome, heartbeats every heartbeat_ms, Ready when idle,
 * Progress, Result/Failure kept until the coordinator's Ack, Cancel, and a
 * new socket and Hello when the coordinator has been silent for
 * heartbeat_ms x liveness (a restart). The compute thread runs one task at
 * a time (capacity 1) through the runner (dp_task_run by default) with the
 * worker's thread count; it reports progress and reads cancellation through
 * the perform hooks, never touching the socket. docs/PIPELINE.md has the
 * protocol.
 *
 * A task whose work fails is reported as a Failure with the error's detail;
 * it is not retryable when the input is bad (DP_ERR_FORMAT, DP_ERR_INVALID,
 * DP_ERR_UNSUPPORTED: another attempt would fail the same way). A task that
 * fails because the store cannot be reached (DP_ERR_NETWORK) is first run
 * again on this worker, holding its lease, until network_retry_s have
 * passed: an outage of the store costs no attempt (keys are deterministic,
 * a TRAIN resumes from its last uploaded checkpoint). A task
 * cancelled by the coordinator (Cancel) is reported as a retryable Failure
 * (the coordinator has already moved on, so it changes nothing).
 *
 * Nothing here prints or exits: lines go to util/log (component "worker"
 * or "measurer", with the campaign and task ids). */
#ifndef DP_WORKER_WORKER_H
#define DP_WORKER_WORKER_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "dp/v1/wire.pb-c.h"
#include "store/store.h"
#include "task/task.h"
#include "util/err.h"

#define DP_WORKER_ENDPOINT     "tcp://127.0.0.1:5555"
#define DP_WORKER_HEARTBEAT_MS 1000u /* until the Welcome says */
#define DP_WORKER_LIVENESS     3u
/* A task whose store cannot be reached is run again here this long (s). */
#define DP_WORKER_NETWORK_RETRY_S 300

/* Runs one task (dp_task_run's contract); tests and benchmarks put their
 * own here. Called on the compute thread. */
typedef dp_err_t (*dp_worker_run_fn)(void *arg, const Dp__V1__Task *t, const dp_task_env_t *env,
                                     dp_task_result_t *out);

typedef struct dp_worker_opts {
    Dp__V1__Role role;         /* ROLE_TRAINER or ROLE_MEASURER */
    const char *endpoint;      /* the coordinator; default DP_WORKER_ENDPOINT */
    void *zmq_ctx;             /* borrowed (inproc:// needs the coordinator's); NULL: own */
    const char *worker_id;     /* stable across reconnects; NULL: "HOST-PID" (measurers:
                                  "HOST-PID-CLASS") */
    const char *host;          /* NULL: gethostname */
    const char *device_class;  /* measurers: required */
    Dp__V1__EnergyProbe probe; /* measurers; 0: NONE */
    const char *scratch;       /* an existing directory for inputs and task files */
    int threads;               /* the compute thread's thread count; 0: every online CPU */
    uint32_t heartbeat_ms;     /* before the Welcome (and how long to wait for one) */
    uint32_t liveness;
    const char *curve_key;        /* our secret key file: CURVE on; NULL: off */
    const char *curve_server_key; /* the coordinator's public key file; with curve_key */
    size_t max_message;           /* bytes of a message; 0: DP_WIRE_SOCK_MAX_MESSAGE */
    const dp_store_settings_t *store_settings; /* NULL: the environment */
    /* A task failing with DP_ERR_NETWORK (the store cannot be reached, its
     * own retries spent) is run again here, after pauses of 1 s doubling to
     * 15 s, for this many seconds from its first such failure before the
     * Failure is sent; 0: DP_WORKER_NETWORK_RETRY_S, < 0: never. */
    int network_retry_s;
    dp_worker_run_fn run; /* NULL: dp_task_run */
    void *run_arg;
    dp_task_cache_t *cache; /* borrowed: decoded dataset splits kept across tasks (local mode
                               shares one between its workers); NULL: none */
    const char *http;       /* HOST:PORT serving /healthz (200 while registered and the
                               coordinator was heard from within its liveness period, 503
                               otherwise) and /metrics, from the socket thread; NULL: off */
    const dp_task_measurer_t *measurer; /* borrowed: a measurer's own settings over its
                                           tasks' (dp_task_env_t.measurer); NULL: none */
} dp_worker_opts_t;

typedef struct dp_worker_stats {
    uint64_t tasks_done, tasks_failed, tasks_cancelled;
    uint64_t connects; /* sockets made (1 + reconnects) */
    uint64_t welcomes; /* Welcomes received */
    uint64_t resends;  /* Results or Failures sent again */
    uint64_t reruns;   /* runs of a task again after the store could not be reached */
    uint64_t dropped;  /* messages that could not be decoded */
} dp_worker_stats_t;

typedef struct dp_worker dp_worker_t;

/* Defaults: the endpoint, heartbeat 1000 ms, liveness 3, role TRAINER. */
void dp_worker_opts_init(dp_worker_opts_t *o);

/* Checks the options, loads the CURVE keys and makes the context if none
 * was given. Connects nothing yet. DP_ERR_INVALID for a bad option (the
 * detail names it). On success *out is a new object, caller destroys. */
dp_err_t dp_worker_new(const dp_worker_opts_t *o, dp_worker_t **out);

/* The port /healthz and /metrics are served on; 0 when off. */
int dp_worker_http_port(const dp_worker_t *w);

/* The worker id in use; borrowed, valid until destroy. */
const char *dp_worker_id(const dp_worker_t *w);

/* Connects, registers and serves until *stop (may be NULL) becomes nonzero
 * or dp_worker_stop is called; then cancels a running task (its last
 * checkpoint stands), waits for the compute thread, tries once more to
 * deliver an unacknowledged result, says Disconnect and returns DP_OK.
 * DP_ERR_CLOSED when the context was terminated, DP_ERR_UNSUPPORTED when the
 * coordinator speaks no protocol version we do. */
dp_err_t dp_worker_run(dp_worker_t *w, volatile sig_atomic_t *stop);

/* Asks a running dp_worker_run to return; from any thread (or a signal
 * handler: it writes one byte to a pipe). */
void dp_worker_stop(dp_worker_t *w);

/* Counters; from any thread. */
void dp_worker_stats(dp_worker_t *w, dp_worker_stats_t *out);

/* Accepts NULL and *w == NULL; sets *w = NULL. Not while run is running. */
void dp_worker_destroy(dp_worker_t **w);

#endif
