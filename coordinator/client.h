/* The coordinator's client: what dp-submit does, as a library, so the
 * command, the tests and `dp-submit --local` (over inproc://, on the
 * server's zmq context) share one code path.
 *
 * A client is a DEALER connected to the coordinator's ROUTER. Its first
 * request says Hello (role SUBMITTER); every request then waits for the
 * envelope whose reply_to is one of the seqs it was sent under. A request
 * that gets no answer is sent again (first after retry_ms, then doubling),
 * the same request with the same client token, until timeout_ms has passed
 * since it was first sent: DP_ERR_TIMEOUT "cannot reach the coordinator at
 * ENDPOINT". A coordinator that restarted and forgot the Hello answers
 * NOT_REGISTERED: the client says Hello again and sends the request again.
 *
 * Campaign files (client_campaign.c): binary dp.v1.Campaign (.pb), or text
 * format (.txtpb) encoded by running protoc; relative file:// URIs are made
 * absolute against the campaign file's directory (the store refuses
 * relative ones). JSON (client_json.c): any reply as JSON, for --json.
 *
 * Nothing here prints, exits or looks at the environment: progress goes to
 * a hook; the caller maps results to words and exit codes. Not thread-safe:
 * one thread per client. */
#ifndef DP_COORDINATOR_CLIENT_H
#define DP_COORDINATOR_CLIENT_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "dp/v1/campaign.pb-c.h"
#include "dp/v1/wire.pb-c.h"
#include "util/err.h"

#define DP_CLIENT_ENDPOINT   "tcp://127.0.0.1:5555"
#define DP_CLIENT_TIMEOUT_MS 10000u
#define DP_CLIENT_RETRY_MS   1000u
#define DP_CLIENT_POLL_MS    750u
#define DP_CLIENT_TOKEN_MAX  128    /* bytes of a client token */
#define DP_CLIENT_TASKS_MAX  20000u /* --wait asks for per-task states up to this many tasks */

typedef struct dp_client dp_client_t;

typedef struct dp_client_opts {
    const char *endpoint;  /* tcp://HOST:PORT, ipc://, inproc://NAME; default DP_CLIENT_ENDPOINT */
    uint32_t timeout_ms;   /* how long one request may go unanswered, resends included */
    uint32_t retry_ms;     /* first resend after this; then doubling, at most timeout / 2 */
    const char *client_id; /* Hello.worker_id; NULL: "dp-submit-HOST-PID" */
    const char *curve_key; /* our secret key file (public derived): CURVE on; NULL: off */
    const char *curve_server_key; /* the coordinator's public key file; with curve_key */
    size_t max_message;           /* bytes of a reply; 0: DP_WIRE_SOCK_MAX_MESSAGE */
    void *zmq_ctx;                /* borrowed: the context (inproc:// needs the server's);
                                     NULL: the client makes its own */
} dp_client_opts_t;

/* Defaults as above. */
void dp_client_opts_init(dp_client_opts_t *o);

/* Checks the options, loads the CURVE keys and connects (ZeroMQ connects in
 * the background: nothing is sent yet, so an absent coordinator is found by
 * the first request). DP_ERR_INVALID for a bad option or endpoint, the key
 * files' errors (the detail names the file), DP_ERR_UNSUPPORTED for CURVE on
 * a libzmq without it. On success *out is a new object, caller destroys; on
 * failure NULL. */
dp_err_t dp_client_new(const dp_client_opts_t *o, dp_client_t **out);

/* Closes the socket without waiting for unsent messages, and the context if
 * the client made it. Accepts NULL and *c == NULL; sets *c = NULL. */
void dp_client_destroy(dp_client_t **c);

/* The endpoint connected to; borrowed, valid until destroy. */
const char *dp_client_endpoint(const dp_client_t *c);

/* Where a request ended when it did not succeed: the coordinator's Error
 * (code and message), or 0 when none came. Valid until the next request. */
Dp__V1__ErrorCode dp_client_last_remote(const dp_client_t *c);

/* Errors of the requests below: DP_ERR_TIMEOUT (no answer within
 * timeout_ms: the detail is "cannot reach the coordinator at ENDPOINT (no
 * answer in N s)"); DP_ERR_INTERRUPTED when *stop became nonzero; and for a
 * coordinator's Error (dp_client_last_remote has its code): BAD_CAMPAIGN ->
 * DP_ERR_INVALID, NOT_FOUND -> DP_ERR_NOTFOUND, VERSION -> DP_ERR_UNSUPPORTED,
 * AUTH -> DP_ERR_AUTH, PROTOCOL -> DP_ERR_PROTOCOL, others DP_ERR_REMOTE;
 * the detail is "coordinator: MESSAGE". BUSY is retried like silence.
 * stop may be NULL everywhere. */

typedef struct dp_client_submitted {
    char campaign_id[512];
    uint32_t tasks;
    int duplicate; /* the token was known: the campaign was accepted before */
} dp_client_submitted_t;

/* Submits camp (borrowed) under token (1..DP_CLIENT_TOKEN_MAX bytes; NULL
 * or "": one is made with dp_client_token). Resends carry the same token,
 * so a lost reply never makes a second campaign. */
dp_err_t dp_client_submit(dp_client_t *c, const Dp__V1__Campaign *camp, const char *token,
                          volatile sig_atomic_t *stop, dp_client_submitted_t *out);

/* The coordinator's status: of campaign_id, or of every campaign when it is
 * NULL or ""; per-task states when tasks, workers when workers. On success
 * *out is a new reply, caller frees with dp_client_status_free. */
dp_err_t dp_client_status(dp_client_t *c, const char *campaign_id, int tasks, int workers,
                          volatile sig_atomic_t *stop, Dp__V1__StatusReply **out);

/* Frees a reply of dp_client_status or dp_client_wait; accepts NULL and
 * *r == NULL; sets *r = NULL. */
void dp_client_status_free(Dp__V1__StatusReply **r);

/* Cancels campaign_id, with reason (may be NULL). A campaign that has
 * ended already is no error: *tasks_cancelled is 0 then. */
dp_err_t dp_client_cancel(dp_client_t *c, const char *campaign_id, const char *reason,
                          volatile sig_atomic_t *stop, uint32_t *tasks_cancelled);

/* Called by dp_client_wait after each status poll: r is borrowed for the
 * call (one campaign, and per-task states when the campaign has at most
 * DP_CLIENT_TASKS_MAX tasks); elapsed_ms since the wait began. */
typedef void (*dp_client_progress_fn)(void *arg, const Dp__V1__StatusReply *r, uint64_t elapsed_ms);

/* Polls the status of campaign_id every poll_ms (0: DP_CLIENT_POLL_MS)
 * until it is no longer RUNNING, calling fn (may be NULL) after each poll.
 * Each poll is a request with the timeouts above. On DP_OK *final is the
 * ended campaign's status with its summary JSON, and every task's state
 * when there are at most DP_CLIENT_TASKS_MAX; caller frees with
 * dp_client_status_free. */
dp_err_t dp_client_wait(dp_client_t *c, const char *campaign_id, uint32_t poll_ms,
                        dp_client_progress_fn fn, void *arg, volatile sig_atomic_t *stop,
                        Dp__V1__StatusReply **final);

/* A fresh client token: 32 hex characters from getrandom(), or, when that
 * fails, a 64-bit FNV-1a hash of the bytes (may be NULL), the time, the pid
 * and the host name. buf holds at least 33 bytes. */
void dp_client_token(const uint8_t *bytes, size_t len, char *buf, size_t size);

/* ---- campaign files (client_campaign.c) ---- */

/* Told each URI made absolute: the field ("models[0].spec_uri"), the URI
 * as written and as it will be submitted. */
typedef void (*dp_client_uri_fn)(void *arg, const char *field, const char *from, const char *to);

typedef struct dp_client_load_opts {
    const char *proto_dir;   /* holds dp/v1/campaign.proto; NULL: dp_client_proto_dir's search */
    const char *protoc;      /* the protoc program; NULL: "protoc" on PATH */
    int text;                /* 1: text format, 0: binary, -1: by the name (.txtpb, .textproto,
                                .txt and .pbtxt are text, the rest binary) */
    dp_client_uri_fn on_uri; /* may be NULL */
    void *uri_arg;
} dp_client_load_opts_t;

void dp_client_load_opts_init(dp_client_load_opts_t *o);

/* Reads the campaign at path, encodes it with protoc when it is text, makes
 * its relative file:// URIs absolute against path's directory, and checks
 * it (campaign_decode, then campaign_validate after the change). Errors:
 * DP_ERR_NOTFOUND / DP_ERR_IO for the file; DP_ERR_FORMAT when it is not a
 * Campaign (text: protoc's message with the file name, line and column);
 * DP_ERR_INVALID / DP_ERR_RANGE from campaign_validate (the detail names the
 * field); DP_ERR_UNSUPPORTED when protoc is not installed ("protoc not
 * found: install protobuf-compiler, or ...") or no directory holds
 * dp/v1/campaign.proto (dp_client_proto_dir). On success *out is a new campaign,
 * caller frees with campaign_free; on failure NULL. */
dp_err_t dp_client_campaign_load(const char *path, const dp_client_load_opts_t *o,
                                 Dp__V1__Campaign **out);

/* Makes the relative file:// URIs of c absolute against dir (an absolute
 * directory), telling fn (may be NULL) each. "file://./x" and "file://x"
 * become "file://DIR/x"; "file:///x" and s3:// stay. DP_ERR_NOMEM, or
 * DP_ERR_RANGE when a result would be longer than PATH_MAX. */
dp_err_t dp_client_campaign_resolve(Dp__V1__Campaign *c, const char *dir, dp_client_uri_fn fn,
                                    void *arg);

/* The directory holding dp/v1/campaign.proto, into buf: want when given
 * (DP_ERR_NOTFOUND when it does not hold it), else the first of
 * DP_PROTO_INSTALL_DIR and the source tree's proto/ (DP_SOURCE_DIR) that
 * does (DP_ERR_UNSUPPORTED when neither). */
dp_err_t dp_client_proto_dir(const char *want, char *buf, size_t size);

/* ---- JSON (client_json.c) ---- */

/* Any protobuf-c message as one line of JSON: proto field names, enums by
 * name, 64-bit integers as numbers, NaN and infinities as strings, absent
 * messages left out, repeated fields as arrays. Returns a new string,
 * caller frees; NULL when out of memory. */
char *dp_client_json(const ProtobufCMessage *m);

#endif
