/* The coordinator's state: campaigns, their tasks and the workers, changed
 * only by journal records (dp_sched_apply), so that a restart that replays
 * the journal rebuilds exactly the state that was acknowledged. The loop
 * (server.c) decides with the read-only queries below (what to lease, which
 * leases ended, whether a result is new), turns each decision into a record,
 * appends it, applies it, and answers once the journal has committed.
 *
 * Workers are not journaled: they register again after a restart. A task
 * leased before a restart keeps its lease for one liveness period after the
 * replay, so a worker that reconnects and reports it running keeps it.
 *
 * Time is passed in (now_ms, wall-clock milliseconds), so tests drive it.
 * Not thread-safe: one loop owns it. */
#ifndef DP_COORDINATOR_SCHEDULER_H
#define DP_COORDINATOR_SCHEDULER_H

#include <stddef.h>
#include <stdint.h>

#include "dp/v1/journal.pb-c.h"
#include "dp/v1/wire.pb-c.h"
#include "plan.h"
#include "util/err.h"

typedef struct dp_sched dp_sched_t;

typedef struct dp_sched_opts {
    uint32_t heartbeat_ms; /* 1000 */
    uint32_t liveness;     /* 3: a worker silent for liveness heartbeats is dead */
    uint32_t max_attempts; /* 3: leases of a task before its cell fails */
    uint32_t retry_ms;     /* 1000: a failed task waits this long before its next lease,
                              doubled after each further attempt, at most 64x (0: no wait) */
} dp_sched_opts_t;

void dp_sched_opts_init(dp_sched_opts_t *o);

/* Returns a new, empty state, caller destroys; NULL when out of memory. */
dp_sched_t *dp_sched_new(const dp_sched_opts_t *o);
void dp_sched_destroy(dp_sched_t **s);

/* Applies one record (rec borrowed). DP_ERR_FORMAT / DP_ERR_NOTFOUND when it
 * cannot apply (a record naming an unknown task: a journal that is not this
 * coordinator's); the state is unchanged then. */
dp_err_t dp_sched_apply(dp_sched_t *s, const Dp__V1__JournalRecord *rec, uint64_t now_ms);

/* After a replay: every lease runs until at least now_ms plus one liveness
 * period, so the workers that held them can come back and say so. */
void dp_sched_after_replay(dp_sched_t *s, uint64_t now_ms);

/* ---- campaigns ---- */

/* The id a new campaign named name gets ("NAME-K", K = campaigns accepted so
 * far + 1), into buf. */
void dp_sched_next_campaign_id(const dp_sched_t *s, const char *name, char *buf, size_t size);
/* The campaign accepted with this client token, or NULL; borrowed. */
const char *dp_sched_campaign_by_token(const dp_sched_t *s, const char *token);
/* 1 when a campaign with this id exists and has not ended. */
int dp_sched_campaign_running(const dp_sched_t *s, const char *cid);
/* 1 when it exists. */
int dp_sched_campaign_exists(const dp_sched_t *s, const char *cid);

/* ---- workers ---- */

typedef struct dp_sched_hello {
    const char *worker_id, *device_class, *host;
    Dp__V1__Role role;
    uint32_t capacity;
} dp_sched_hello_t;

/* Registers (or re-registers) a worker; 0, or -1 when full or invalid. */
int dp_sched_worker_hello(dp_sched_t *s, const dp_sched_hello_t *h, uint64_t now_ms);
/* The worker was heard from: it lives, and its leases last one more period.
 * Returns 0, or -1 when it is not registered. */
int dp_sched_worker_seen(dp_sched_t *s, const char *worker_id, uint64_t now_ms);
/* The worker said goodbye: its leases end now (dp_sched_expired reports them). */
void dp_sched_worker_bye(dp_sched_t *s, const char *worker_id, uint64_t now_ms);
/* 1 when the worker is registered and alive. */
int dp_sched_worker_known(const dp_sched_t *s, const char *worker_id);

/* ---- decisions ---- */

/* The next task for the worker (fair across campaigns: round robin), its id
 * into id_buf and its attempt-to-be into *attempt. 1 when one was found, 0
 * when there is none for it now. MEASURE goes only to measurers of the
 * task's device class, and never to a host where a trainer holds a task;
 * trainer tasks never to a host where a measurer holds one. */
int dp_sched_pick(dp_sched_t *s, const char *worker_id, uint64_t now_ms, char *id_buf, size_t size,
                  uint32_t *attempt);

/* Failed tasks wait retry_ms (doubling per attempt) before they are leased
 * again. dp_sched_retry_due queues those whose wait has passed by now_ms
 * (dp_sched_pick does too) and returns how many; dp_sched_next_retry is the
 * earliest end of a wait still running, 0 when none is: the loop sleeps no
 * longer than that. Waits survive a restart: a replay of their TaskFailed
 * records ends each at its record's time plus the wait, and a snapshot
 * holds each wait's end. */
size_t dp_sched_retry_due(dp_sched_t *s, uint64_t now_ms);
/* How long a task waits after its attempt failed (ms). */
uint64_t dp_sched_retry_wait(const dp_sched_t *s, uint32_t attempt);
uint64_t dp_sched_next_retry(const dp_sched_t *s);

/* Fills out with the Task to send for task_id (plan.h's dp_plan_fill, with
 * the current attempt and max_attempts). -1 when unknown. out borrows from
 * the state and *st until the next change. */
int dp_sched_task_msg(const dp_sched_t *s, const char *task_id, Dp__V1__Task *out,
                      dp_plan_strings_t *st);

/* The lease deadline a new lease gets at now_ms. */
uint64_t dp_sched_lease_deadline(const dp_sched_t *s, uint64_t now_ms);

/* Ended leases: tasks whose holder is dead, gone or silent past the
 * deadline. fn gets each (task id, attempt, worker id, reason, final); the
 * caller journals a TaskFailed for each. Workers silent past liveness are
 * marked dead here. */
typedef void (*dp_sched_expired_fn)(void *ctx, const char *task_id, uint32_t attempt,
                                    const char *worker_id, const char *reason, int final);
void dp_sched_expired(dp_sched_t *s, uint64_t now_ms, dp_sched_expired_fn fn, void *ctx);

/* A Result for (task_id, attempt): 1 new (journal it), 0 already done or
 * cancelled (acknowledge, change nothing), -1 unknown task. */
int dp_sched_result_new(const dp_sched_t *s, const char *task_id, uint32_t attempt);
/* A Failure for (task_id, attempt) from a worker: 1 journal it, 0 stale
 * (the task is no longer this attempt's), -1 unknown. *final says whether
 * the task fails for good (not retryable, or attempts used up). */
int dp_sched_failure_new(const dp_sched_t *s, const char *task_id, uint32_t attempt, int retryable,
                         int *final);
/* 1 when the task is cancelled or ended, so a worker running it should stop. */
int dp_sched_task_stopped(const dp_sched_t *s, const char *task_id);
/* The campaign id of a task id; into buf. */
void dp_sched_campaign_of(const char *task_id, char *buf, size_t size);

/* ---- status ---- */

typedef struct dp_sched_counts {
    uint64_t by_state[8];      /* indexed by Dp__V1__TaskState */
    uint64_t by_kind[6][8];    /* [TaskKind][TaskState] */
    uint64_t campaigns[5];     /* by CampaignState */
    uint64_t workers_alive[4]; /* by Role */
    uint64_t campaigns_accepted;
} dp_sched_counts_t;
void dp_sched_counts(const dp_sched_t *s, dp_sched_counts_t *out);

/* Calls fn for each live worker with its role and device class ("" when it
 * has none). */
typedef void (*dp_sched_worker_fn)(void *ctx, Dp__V1__Role role, const char *cls);
void dp_sched_workers_alive(const dp_sched_t *s, dp_sched_worker_fn fn, void *ctx);

/* A reply to rq, allocated here: free with dp_sched_status_free. NULL when
 * out of memory, or (*err set) when rq names an unknown campaign. */
Dp__V1__StatusReply *dp_sched_status(const dp_sched_t *s, const Dp__V1__StatusRequest *rq,
                                     uint64_t now_ms, dp_err_t *err);
void dp_sched_status_free(Dp__V1__StatusReply **r);

/* The campaign summary as JSON (state, counts, each failed task with its
 * reason, each done task's summary JSON); a new string, caller frees. */
char *dp_sched_summary_json(const dp_sched_t *s, const char *cid);

/* ---- compaction ---- */

/* Calls fn with the records that rebuild the current state (one Snapshot
 * per campaign). Each record is valid only during the call. */
typedef dp_err_t (*dp_sched_record_fn)(void *ctx, Dp__V1__JournalRecord *rec);
dp_err_t dp_sched_snapshot(const dp_sched_t *s, dp_sched_record_fn fn, void *ctx);

#endif
