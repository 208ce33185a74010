/* Local mode (dp-submit --local): a whole campaign on this machine, in one
 * process, on the cluster's code paths. On one zmq context:
 *
 *   - the coordinator loop (coordinator/server.h) bound to inproc://, its
 *     journal at DIR/journal (fsync'ed as in the cluster);
 *   - one trainer (worker/worker.h, ROLE_TRAINER) and one measurer per
 *     device class of the campaign (ROLE_MEASURER), each a dp_worker on its
 *     own threads, connected over inproc://, with scratch directories under
 *     DIR/scratch. Both report this machine's host name, so the
 *     coordinator's host exclusivity (scheduler.h) never hands a MEASURE to
 *     the measurer while the trainer holds a task, nor a task to the
 *     trainer while a measurer holds one: latency is never measured while a
 *     training, generation or baseline runs. Every task's run is timed here
 *     (dp_local_span_t), so that rule can be checked;
 *   - a dp_client (coordinator/client.h) that submits the campaign and
 *     waits for it, with the caller's progress hook.
 *
 * The store: file://DIR/store replaces the campaign's store_uri unless
 * keep_store_uri. The submission's client token is derived from the
 * campaign's bytes (after that replacement; dp_local_token), so running the
 * same campaign again on the same DIR finds it in the journal (the
 * coordinator answers "submitted before") and resumes it: tasks acknowledged
 * before stay done, a TRAIN goes on from its last uploaded checkpoint. A
 * different campaign on the same DIR is a new campaign in the same journal;
 * other campaigns still running there are cancelled first, so that two
 * campaigns never share the workers.
 *
 * Datasets: one dp_task_cache_t for the workers, so the training split
 * is decoded once for every TRAIN and the test split once for every task
 * that reads the seeds (a fresh process per task would decode them again).
 *
 * Threads: the trainer's compute thread runs tasks with `threads` threads
 * (0: every online CPU); the measurers the same (they never run beside the
 * trainer). Nothing here touches a thread count globally.
 *
 * Stop: when *stop becomes nonzero (a signal), the workers are stopped (a
 * running task is cancelled; its lease goes back and its last checkpoint
 * stands), then the coordinator commits and stops; DP_ERR_INTERRUPTED. The
 * campaign stays RUNNING in the journal: the same call resumes it.
 *
 * Nothing here prints or exits: lines go to util/log (component "local"). */
#ifndef DP_WORKER_LOCAL_H
#define DP_WORKER_LOCAL_H

#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "client.h"
#include "dp/v1/campaign.pb-c.h"
#include "dp/v1/wire.pb-c.h"
#include "store/store.h"
#include "util/err.h"
#include "worker.h"

#define DP_LOCAL_DIR_ROOT  "dp-runs" /* the default DIR: dp-runs/<campaign name> */
#define DP_LOCAL_ENDPOINT  "inproc://dp-local"
#define DP_LOCAL_TOKEN_LEN 38 /* "local-" and 32 hex digits */

typedef struct dp_local_opts {
    const char *dir;       /* required; created (with its parent) when missing */
    int keep_store_uri;    /* 1: the campaign's store_uri stands; 0: file://DIR/store */
    int threads;           /* compute threads of a task; 0: every online CPU */
    const char *token;     /* NULL: dp_local_token of the campaign as submitted */
    uint32_t heartbeat_ms; /* coordinator and workers; 0: 1000 */
    uint32_t poll_ms;      /* between status polls (the progress hook); 0: DP_CLIENT_POLL_MS */
    uint32_t max_attempts; /* leases of a task before its cell fails; 0: the coordinator's 3 */
    dp_client_progress_fn progress; /* may be NULL; called on the caller's thread */
    void *progress_arg;
    const dp_store_settings_t *store_settings; /* for s3:// stores; NULL: the environment */
    size_t split_cache_bytes; /* decoded dataset splits kept across tasks, shared by the
                                 workers (dp_task_cache_t), at most this many bytes unborrowed;
                                 0: DP_TASK_CACHE_BYTES */
    int no_split_cache;       /* 1: every task decodes its splits again */
    /* tests */
    dp_worker_run_fn run; /* NULL: dp_task_run */
    void *run_arg;
    const char *measurer_host; /* NULL: the trainer's (this machine's); another name lets
                                  measuring overlap training */
} dp_local_opts_t;

/* One task's run on a worker of this process (monotonic clock). */
typedef struct dp_local_span {
    int measurer; /* run by a measurer (else by the trainer) */
    Dp__V1__TaskKind kind;
    char task_id[256];
    uint32_t attempt;
    uint64_t start_ns, end_ns;
    dp_err_t err;
} dp_local_span_t;

typedef struct dp_local_result {
    char dir[PATH_MAX];           /* DIR, absolute */
    char journal[PATH_MAX];       /* DIR/journal */
    char store_uri[PATH_MAX + 8]; /* the store the campaign used */
    char store_dir[PATH_MAX];     /* its directory when it is file://; "" otherwise */
    char token[DP_CLIENT_TOKEN_MAX + 1];
    char campaign_id[512];
    uint32_t tasks;
    int resumed;                /* the journal knew the campaign: nothing new was submitted */
    uint32_t superseded;        /* other running campaigns in the journal, cancelled */
    int measurers;              /* measurers run (one per device class) */
    int threads;                /* the compute thread count used */
    Dp__V1__StatusReply *final; /* the ended campaign's status, every task's state (free
                                   with dp_local_result_clear); NULL when it did not end */
    dp_local_span_t *spans;     /* every task run, in order of their ends */
    size_t n_spans;
    size_t overlaps;                   /* measurer spans that overlap a trainer span in time */
    dp_task_cache_stats_t split_cache; /* hits and misses of the decoded splits */
    double seconds;                    /* from the submission to the end */
} dp_local_result_t;

/* Defaults: every field 0 / NULL (dir must be set). */
void dp_local_opts_init(dp_local_opts_t *o);

/* The default DIR of campaign c: "dp-runs/NAME" (relative to the working
 * directory). DP_ERR_RANGE when it does not fit size bytes. */
dp_err_t dp_local_default_dir(const Dp__V1__Campaign *c, char *buf, size_t size);

/* The client token of campaign c: "local-" and the first 128 bits of the
 * SHA-256 of its packed bytes, in hex, into buf (at least
 * DP_LOCAL_TOKEN_LEN + 1 bytes). The same campaign gives the same token. */
dp_err_t dp_local_token(const Dp__V1__Campaign *c, char *buf, size_t size);

/* Runs campaign c (borrowed; validated, relative URIs already made
 * absolute, as dp_client_campaign_load leaves it) to its end (see the file
 * comment). *out is zeroed first; clear it after either way. DP_OK when the
 * campaign ended (done, failed cells or cancelled: out->final says which).
 * Errors: DP_ERR_INVALID for a bad option or a campaign the coordinator
 * refused; DP_ERR_IO / DP_ERR_NOTFOUND for DIR; DP_ERR_EXISTS when another
 * process runs a campaign on DIR (its journal is locked); DP_ERR_INTERRUPTED
 * when *stop became nonzero (everything stopped cleanly; out->campaign_id is
 * set when the campaign had been submitted); the coordinator's or a
 * worker's error when one of them failed. */
dp_err_t dp_local_run(const Dp__V1__Campaign *c, const dp_local_opts_t *o,
                      volatile sig_atomic_t *stop, dp_local_result_t *out);

/* Frees what r holds and zeroes it. */
void dp_local_result_clear(dp_local_result_t *r);

/* Measurer spans of spans[0..n) that overlap a trainer span in time. */
size_t dp_local_overlaps(const dp_local_span_t *spans, size_t n);

#endif
