/* The coordinator's loop: a ZeroMQ ROUTER in front of the journal and the
 * scheduler. Peers (trainers, measurers, dp-submit) are DEALERs speaking
 * dp.v1.Envelope (core/wire); docs/PIPELINE.md has the protocol.
 *
 * One iteration: poll the ROUTER (and the ZAP handler) for at most
 * heartbeat_ms / 2; handle up to `drain` messages, each turned into journal
 * records that are appended and applied to the scheduler at once, and into
 * replies that are held back; journal the ended leases; commit the journal
 * once for all of it (group commit); only then send the replies. Nothing is
 * acknowledged before it is durable. Then heartbeats to the workers, and
 * compaction when the journal has grown past its threshold.
 *
 * A message that cannot be decoded or validated, or that arrives before its
 * peer's Hello, is dropped with a logged reason (rate limited) and counted;
 * the peer gets an Error when it can use one. The loop never exits for a
 * peer's fault; it stops when asked, or when the journal fails (a failed
 * write or fsync leaves the file's state unknown: exit, restart, replay).
 *
 * Not thread-safe, except dp_coord_server_stop. */
#ifndef DP_COORDINATOR_SERVER_H
#define DP_COORDINATOR_SERVER_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

typedef struct dp_coord_server dp_coord_server_t;

typedef struct dp_coord_server_opts {
    const char *bind;             /* endpoint: tcp://HOST:PORT (PORT * picks one), inproc://NAME */
    const char *journal_path;     /* opened (created) and replayed by dp_coord_server_new */
    uint32_t heartbeat_ms;        /* 1000: heartbeats both ways; the poll waits half of it */
    uint32_t liveness;            /* 3: heartbeats a worker may miss before it is dead */
    uint32_t max_attempts;        /* 3: leases of a task before its cell fails */
    uint32_t retry_ms;            /* 1000: a failed task's wait before its next lease, doubled
                                     per further attempt, at most 64x (0: none) */
    size_t max_message;           /* bytes of a message (ZMQ_MAXMSGSIZE); 0: 16 MiB */
    const char *curve_secret;     /* the server's secret key file: CURVE on; NULL: off */
    const char *curve_authorized; /* the public keys admitted; required with curve_secret */
    int no_fsync;                 /* benchmarks only: commits are not synced */
    uint64_t compact_bytes;       /* compact when the journal passes this (and twice its
                                     last compacted size); 0: never */
    uint32_t drain;               /* messages handled per iteration: 1024 */
    const char *coordinator_id;   /* in Welcome; NULL: the host name */
    void *zmq_ctx;                /* borrowed: the context to use (inproc:// peers must share
                                     it); NULL: the server makes its own */
    const char *http;             /* HOST:PORT serving /healthz and /metrics (Prometheus
                                     text) from the loop's thread; NULL: off */
} dp_coord_server_opts_t;

typedef struct dp_coord_server_stats {
    uint64_t received;     /* messages received, good or bad */
    uint64_t dropped;      /* not decoded, invalid, or another protocol version */
    uint64_t unregistered; /* a peer's message before its Hello */
    uint64_t sent, send_failed;
    uint64_t records, commits;
    uint64_t assigned, done, failed;
    uint64_t campaigns_accepted;
    uint64_t zap_admitted, zap_refused;
} dp_coord_server_stats_t;

/* Defaults as above; bind "tcp://127.0.0.1:5555", journal
 * "./dp-coordinator.journal", compaction at 256 MiB. */
void dp_coord_server_opts_init(dp_coord_server_opts_t *o);

/* Checks the options, opens the journal and replays it into a new scheduler
 * (a torn tail is dropped and logged), loads the CURVE keys, and binds.
 * DP_ERR_INVALID / DP_ERR_RANGE for a bad option (the detail names it), the
 * journal's errors (DP_ERR_EXISTS: another coordinator holds it), the key
 * files' errors, DP_ERR_NETWORK when the endpoint cannot be bound. On
 * success *out is a new object, caller destroys; on failure NULL. */
dp_err_t dp_coord_server_new(const dp_coord_server_opts_t *o, dp_coord_server_t **out);

/* Runs the loop until *stop (may be NULL) becomes nonzero, or
 * dp_coord_server_stop is called; commits what is pending and returns DP_OK.
 * A signal that interrupts the poll makes the loop look at *stop at once.
 * Returns DP_ERR_IO when the journal failed (nothing unacknowledged was
 * sent), DP_ERR_CLOSED when the context was terminated. */
dp_err_t dp_coord_server_run(dp_coord_server_t *s, volatile sig_atomic_t *stop);

/* Asks a running loop to return; from any thread, within heartbeat_ms / 2. */
void dp_coord_server_stop(dp_coord_server_t *s);

/* The endpoint bound (a tcp port * resolved); borrowed, valid until destroy. */
const char *dp_coord_server_endpoint(const dp_coord_server_t *s);

/* The port /healthz and /metrics are served on (a port 0 resolved); 0 when
 * off. */
int dp_coord_server_http_port(const dp_coord_server_t *s);

/* The session number in Welcome: the start time in unix milliseconds. */
uint64_t dp_coord_server_session(const dp_coord_server_t *s);

/* Counters; from the loop's thread, or after run returned. */
void dp_coord_server_stats(const dp_coord_server_t *s, dp_coord_server_stats_t *out);

/* Closes the sockets and the journal (what is not committed is lost: run
 * commits before it returns). Accepts NULL and *s == NULL; sets *s = NULL. */
void dp_coord_server_destroy(dp_coord_server_t **s);

#endif
