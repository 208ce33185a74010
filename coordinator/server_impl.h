/* Inside the coordinator's loop (server.h), shared by its three files:
 * server.c (lifecycle, the loop, replies, records, heartbeats, compaction),
 * server_peers.c (the peer table and the leases each worker holds) and
 * server_msgs.c (one handler per message body, and leasing).
 *
 * Every state change goes through srv_record(): append to the journal,
 * apply to the scheduler. Replies are packed into the outbox as they are
 * decided (srv_reply) and sent only after the iteration's one commit. Peers
 * are kept by routing id in an open-addressing table; a worker peer also
 * remembers the leases it was given (or held before a restart), so that a
 * lease whose Assign never reached it (lost in a reconnect, or a crash
 * between commit and send) fails when the worker's heartbeats keep leaving
 * it out. */
#ifndef DP_COORDINATOR_SERVER_IMPL_H
#define DP_COORDINATOR_SERVER_IMPL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "dp/v1/journal.pb-c.h"
#include "dp/v1/wire.pb-c.h"
#include "http/http.h"
#include "journal.h"
#include "plan.h"
#include "scheduler.h"
#include "server.h"
#include "wire/sock.h"

#define LOG_COMP           "coordinator"
#define DROP_LOG_WINDOW_MS 10000u /* at most DROP_LOG_LINES drop lines per window */
#define DROP_LOG_LINES     20u
#define SUBMITTER_IDLE_MS  60000u /* a submitter silent this long is forgotten */
#define SRV_COMMIT_BUCKETS 12     /* journal commit latency buckets (srv_commit_le_s) */
#define SRV_RATE_SLOTS     11     /* dispatch rate: the last 10 s, one sample a second */

typedef struct lease {
    char *task_id;
    uint32_t attempt;
    uint64_t since_ms; /* assigned, or last listed in the worker's heartbeat */
} lease_t;

typedef struct peer {
    dp_wire_peer_t rid;
    char *worker_id; /* from Hello */
    Dp__V1__Role role;
    uint64_t last_ms;
    uint32_t want; /* free slots of the last Ready not yet filled */
    lease_t *leases;
    size_t nleases, capleases;
} peer_t;

/* A lease held before a restart, until its worker says Hello again. */
typedef struct orphan {
    char *worker_id;
    lease_t l;
} orphan_t;

typedef struct outmsg {
    dp_wire_peer_t to;
    uint8_t *buf;
    size_t len;
} outmsg_t;

struct dp_coord_server {
    dp_coord_server_opts_t o;
    char *bind, *journal_path, *coord_id;
    char endpoint[256];
    void *ctx;
    int own_ctx;
    void *router;
    dp_wire_zap_t *zap;
    dp_journal_t *j;
    dp_sched_t *sched;
    uint64_t now, session, seq, period_ms;
    uint64_t next_hb_ms, compacted_bytes;
    atomic_int stop;
    dp_err_t fatal;
    int dirty; /* records changed the state this iteration: try the waiting workers */
    peer_t **slots;
    size_t nslots, npeers;
    orphan_t *orphans;
    size_t norphans;
    outmsg_t *out;
    size_t nout, capout;
    char (*ended)[DP_PLAN_ID_MAX]; /* campaigns that ended this iteration */
    size_t nended, capended;
    uint64_t drop_window_ms;
    uint32_t drop_lines, drop_suppressed;
    dp_coord_server_stats_t st;
    /* /healthz and /metrics */
    dp_http_t *http;
    char *http_addr;
    uint64_t commit_le[SRV_COMMIT_BUCKETS + 1]; /* commits per latency bucket, +Inf last */
    double commit_sum_s;
    uint64_t rate_ms[SRV_RATE_SLOTS], rate_assigned[SRV_RATE_SLOTS]; /* a sample per second */
    unsigned rate_next;
};

/* ---- server.c ---- */

/* Packs env (reply_to set) for peer `to` into the outbox. */
void srv_reply(dp_coord_server_t *s, const dp_wire_peer_t *to, Dp__V1__Envelope *env,
               uint64_t reply_to);
void srv_reply_error(dp_coord_server_t *s, const dp_wire_peer_t *to, uint64_t reply_to,
                     Dp__V1__ErrorCode code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Appends rec and applies it (server.c says when that fails). */
dp_err_t srv_record(dp_coord_server_t *s, Dp__V1__JournalRecord *rec);
dp_err_t srv_record_failed(dp_coord_server_t *s, const char *task_id, uint32_t attempt,
                           const char *reason, int final);
/* A dropped message's reason, rate limited. */
void srv_drop_log(dp_coord_server_t *s, const dp_wire_peer_t *from, const char *why);
/* The log context of a task (its campaign and id); NULL, NULL clears it. */
void srv_task_context(const char *task_id);

/* ---- server_peers.c ---- */

int srv_grow(void **p, size_t *cap, size_t need, size_t elem);
peer_t *srv_peer_find(const dp_coord_server_t *s, const dp_wire_peer_t *r);
/* A new peer for r in the table, or NULL when out of memory. */
peer_t *srv_peer_add(dp_coord_server_t *s, const dp_wire_peer_t *r);
void srv_peer_remove(dp_coord_server_t *s, peer_t *p);
void srv_peer_free(peer_t *p);
/* 1 for a registered trainer or measurer. */
int srv_is_worker(const peer_t *p);
peer_t *srv_peer_by_worker(const dp_coord_server_t *s, const char *worker_id);
int srv_lease_add(peer_t *p, const char *task_id, uint32_t attempt, uint64_t since);
void srv_lease_drop(peer_t *p, size_t i);
void srv_lease_forget(peer_t *p, const char *task_id);
void srv_leases_clear(peer_t *p);

/* ---- server_msgs.c ---- */

/* One valid envelope from `from`. */
void srv_handle(dp_coord_server_t *s, const dp_wire_peer_t *from, const Dp__V1__Envelope *env);
/* Leases tasks to every worker waiting with free slots. */
void srv_assign_waiting(dp_coord_server_t *s);

/* server_http.c: /healthz and /metrics */
extern const double srv_commit_le_s[SRV_COMMIT_BUCKETS];
dp_err_t srv_http_start(dp_coord_server_t *s);
/* A journal commit that took secs. */
void srv_http_commit(dp_coord_server_t *s, double secs);
/* Once per loop iteration: the dispatch rate's samples. */
void srv_http_tick(dp_coord_server_t *s);

#endif
