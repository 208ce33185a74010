/* The coordinator's client (client.h): one DEALER, requests that are resent
 * with the same content until a reply names one of their seqs, and the
 * status poll of --wait. Replies to an earlier seq of the same request are
 * as good as the latest (the coordinator may have been slow, not gone);
 * replies to earlier requests are dropped. */
#include "client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "util/log.h"
#include "wire/envelope.h"
#include "wire/sock.h"

#define LOG_COMP      "client"
#define HELLO_TRIES   3   /* NOT_REGISTERED answers before a request gives up */
#define STOP_SLICE_MS 100 /* how often a wait looks at *stop */

struct dp_client {
    void *ctx, *sock;
    int own_ctx;
    char *endpoint, *id;
    uint32_t timeout_ms, retry_ms;
    size_t max_message;
    uint64_t seq;
    int registered;
    Dp__V1__ErrorCode last_remote;
};

void dp_client_opts_init(dp_client_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->endpoint = DP_CLIENT_ENDPOINT;
    o->timeout_ms = DP_CLIENT_TIMEOUT_MS;
    o->retry_ms = DP_CLIENT_RETRY_MS;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static dp_err_t load_curve(const dp_client_opts_t *o, dp_wire_keypair_t *kp, char *server)
{
    if (!o->curve_key && !o->curve_server_key) return DP_OK;
    if (!o->curve_key || !o->curve_server_key)
        return dp_err_set(DP_ERR_INVALID, "client: CURVE needs both our secret key file and the "
                                          "coordinator's public key file");
    dp_err_t err = dp_wire_key_load_secret(o->curve_key, kp);
    if (!err) err = dp_wire_key_load_public(o->curve_server_key, server);
    return err;
}

dp_err_t dp_client_new(const dp_client_opts_t *o, dp_client_t **out)
{
    *out = NULL;
    if (!o->endpoint || !*o->endpoint)
        return dp_err_set(DP_ERR_INVALID, "client: no coordinator endpoint");
    if (!o->timeout_ms) return dp_err_set(DP_ERR_INVALID, "client: the timeout is 0");
    if (o->client_id && (!*o->client_id || strlen(o->client_id) > DP_WIRE_MAX_ID))
        return dp_err_set(DP_ERR_INVALID, "client: a client id of 1..%u bytes", DP_WIRE_MAX_ID);
    dp_wire_keypair_t kp;
    char server_key[DP_WIRE_KEY_Z85 + 1] = "";
    memset(&kp, 0, sizeof kp);
    dp_err_t err = load_curve(o, &kp, server_key);
    if (err) {
        dp_wire_keypair_wipe(&kp);
        return err;
    }
    dp_client_t *c = calloc(1, sizeof *c);
    if (!c) {
        dp_wire_keypair_wipe(&kp);
        return dp_err_set(DP_ERR_NOMEM, "client: out of memory");
    }
    c->timeout_ms = o->timeout_ms;
    c->retry_ms = o->retry_ms ? o->retry_ms : DP_CLIENT_RETRY_MS;
    c->max_message = o->max_message;
    c->endpoint = strdup(o->endpoint);
    if (o->client_id) {
        c->id = strdup(o->client_id);
    } else {
        char host[256] = "localhost", id[320];
        if (gethostname(host, sizeof host)) snprintf(host, sizeof host, "localhost");
        host[sizeof host - 1] = '\0';
        snprintf(id, sizeof id, "dp-submit-%s-%ld", host, (long)getpid());
        c->id = strdup(id);
    }
    if (!c->endpoint || !c->id) {
        err = dp_err_set(DP_ERR_NOMEM, "client: out of memory");
        goto fail;
    }
    c->ctx = o->zmq_ctx;
    if (!c->ctx) {
        if (!(c->ctx = zmq_ctx_new())) {
            err = dp_err_set(DP_ERR_NOMEM, "client: zmq_ctx_new: %s", zmq_strerror(errno));
            goto fail;
        }
        c->own_ctx = 1;
    }
    dp_wire_sock_opts_t so;
    dp_wire_sock_opts_init(&so);
    so.linger_ms = 0; /* an unanswered request must not hold the exit */
    so.max_message = o->max_message;
    if (o->curve_key) {
        so.curve_client = &kp;
        so.curve_server_key = server_key;
    }
    if ((err = dp_wire_socket(c->ctx, ZMQ_DEALER, &so, &c->sock))) goto fail;
    if ((err = dp_wire_connect(c->sock, c->endpoint))) goto fail;
    dp_wire_keypair_wipe(&kp);
    *out = c;
    return DP_OK;
fail:
    dp_wire_keypair_wipe(&kp);
    dp_client_destroy(&c);
    return err;
}

void dp_client_destroy(dp_client_t **pc)
{
    if (!pc || !*pc) return;
    dp_client_t *c = *pc;
    if (c->sock) zmq_close(c->sock);
    if (c->own_ctx) zmq_ctx_term(c->ctx);
    free(c->endpoint);
    free(c->id);
    free(c);
    *pc = NULL;
}

const char *dp_client_endpoint(const dp_client_t *c) { return c->endpoint; }

Dp__V1__ErrorCode dp_client_last_remote(const dp_client_t *c) { return c->last_remote; }

/* ---------------------------------------------------------------- requests */

static dp_err_t remote_error(dp_client_t *c, const Dp__V1__Error *e)
{
    c->last_remote = e->code;
    const char *msg = e->message && *e->message ? e->message : "(no message)";
    dp_err_t err;
    switch (e->code) {
    case DP__V1__ERROR_CODE__ERROR_CODE_BAD_CAMPAIGN:
        err = DP_ERR_INVALID;
        break;
    case DP__V1__ERROR_CODE__ERROR_CODE_NOT_FOUND:
        err = DP_ERR_NOTFOUND;
        break;
    case DP__V1__ERROR_CODE__ERROR_CODE_VERSION:
        err = DP_ERR_UNSUPPORTED;
        break;
    case DP__V1__ERROR_CODE__ERROR_CODE_AUTH:
        err = DP_ERR_AUTH;
        break;
    case DP__V1__ERROR_CODE__ERROR_CODE_PROTOCOL:
        err = DP_ERR_PROTOCOL;
        break;
    default:
        err = DP_ERR_REMOTE;
    }
    return dp_err_set(err, "coordinator: %s", msg);
}

static dp_err_t unreachable(const dp_client_t *c)
{
    return dp_err_set(DP_ERR_TIMEOUT, "cannot reach the coordinator at %s (no answer in %.3g s)",
                      c->endpoint, c->timeout_ms / 1000.0);
}

typedef enum { EX_REPLY, EX_HELLO_AGAIN } ex_t;

/* Sends env until a reply to one of its seqs arrives or the deadline (mono
 * ms) passes. A reply with body `want` is returned in *reply (caller frees);
 * an Error ends the request, except NOT_REGISTERED (*ex = EX_HELLO_AGAIN)
 * and BUSY (resent like silence). */
static dp_err_t exchange(dp_client_t *c, Dp__V1__Envelope *env, Dp__V1__Envelope__BodyCase want,
                         uint64_t deadline, volatile sig_atomic_t *stop, ex_t *ex,
                         Dp__V1__Envelope **reply)
{
    *reply = NULL;
    *ex = EX_REPLY;
    const uint64_t first = c->seq + 1;
    uint64_t gap = c->retry_ms, next = 0;
    for (;;) {
        uint64_t now = mono_ms();
        if (stop && *stop) return dp_err_set(DP_ERR_INTERRUPTED, "client: interrupted");
        if (now >= deadline) return unreachable(c);
        if (now >= next) {
            dp_err_t err = dp_wire_send(c->sock, NULL, env, &c->seq, ZMQ_DONTWAIT);
            if (err && err != DP_ERR_TIMEOUT) return err; /* TIMEOUT: the queue is full */
            dp_debug(LOG_COMP, "%s (seq %llu) to %s", dp_wire_body_name(env),
                     (unsigned long long)c->seq, c->endpoint);
            next = now + gap;
            const uint64_t cap = c->timeout_ms / 2 > c->retry_ms ? c->timeout_ms / 2 : c->retry_ms;
            gap = gap * 2 < cap ? gap * 2 : cap;
        }
        uint64_t until = next < deadline ? next : deadline;
        long wait = (long)(until > now ? until - now : 0);
        if (wait > STOP_SLICE_MS) wait = STOP_SLICE_MS;
        zmq_pollitem_t it = {.socket = c->sock, .events = ZMQ_POLLIN};
        const int n = zmq_poll(&it, 1, wait);
        if (n < 0) {
            if (errno == EINTR) continue;
            return dp_err_set(errno == ETERM ? DP_ERR_CLOSED : DP_ERR_NETWORK, "client: poll: %s",
                              zmq_strerror(errno));
        }
        if (n == 0) continue;
        Dp__V1__Envelope *r = NULL;
        dp_err_t err = dp_wire_recv(c->sock, ZMQ_DONTWAIT, c->max_message, NULL, &r);
        if (err == DP_ERR_TIMEOUT || err == DP_ERR_INTERRUPTED) continue;
        if (err == DP_ERR_CLOSED) return err;
        if (err) {
            dp_warn(LOG_COMP, "a reply from %s was dropped: %s", c->endpoint, dp_err_detail());
            continue;
        }
        if (r->reply_to < first || r->reply_to > c->seq) {
            dp_debug(LOG_COMP, "a stale %s (reply to %llu) dropped", dp_wire_body_name(r),
                     (unsigned long long)r->reply_to);
            dp_wire_free(&r);
            continue;
        }
        if (r->body_case == want) {
            *reply = r;
            return DP_OK;
        }
        if (r->body_case == DP__V1__ENVELOPE__BODY_ERROR) {
            const Dp__V1__ErrorCode code = r->error->code;
            if (code == DP__V1__ERROR_CODE__ERROR_CODE_NOT_REGISTERED) {
                dp_wire_free(&r);
                *ex = EX_HELLO_AGAIN;
                return DP_OK;
            }
            if (code == DP__V1__ERROR_CODE__ERROR_CODE_BUSY) {
                dp_debug(LOG_COMP, "coordinator busy: %s", r->error->message);
                dp_wire_free(&r);
                continue;
            }
            err = remote_error(c, r->error);
            dp_wire_free(&r);
            return err;
        }
        dp_warn(LOG_COMP, "an unexpected %s from %s dropped", dp_wire_body_name(r), c->endpoint);
        dp_wire_free(&r);
    }
}

static dp_err_t hello(dp_client_t *c, uint64_t deadline, volatile sig_atomic_t *stop, ex_t *ex)
{
    char host[256] = "";
    if (gethostname(host, sizeof host)) host[0] = '\0';
    host[sizeof host - 1] = '\0';
    Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;
    Dp__V1__Hello h = DP__V1__HELLO__INIT;
    h.role = DP__V1__ROLE__ROLE_SUBMITTER;
    h.worker_id = c->id;
    h.software_version = "dp-submit";
    h.protocol_min = h.protocol_max = DP_WIRE_VERSION;
    h.host = host;
    e.sender_id = c->id;
    e.body_case = DP__V1__ENVELOPE__BODY_HELLO;
    e.hello = &h;
    Dp__V1__Envelope *r;
    dp_err_t err = exchange(c, &e, DP__V1__ENVELOPE__BODY_WELCOME, deadline, stop, ex, &r);
    if (!err && *ex == EX_REPLY) {
        dp_debug(LOG_COMP, "welcome from %s (%s, protocol %u)", c->endpoint,
                 r->welcome->coordinator_id, r->welcome->protocol_version);
        c->registered = 1;
    }
    dp_wire_free(&r);
    return err;
}

/* One request: Hello first when needed (again after NOT_REGISTERED), then
 * env until its reply; one deadline for all of it. */
static dp_err_t request(dp_client_t *c, Dp__V1__Envelope *env, Dp__V1__Envelope__BodyCase want,
                        volatile sig_atomic_t *stop, Dp__V1__Envelope **reply)
{
    *reply = NULL;
    c->last_remote = DP__V1__ERROR_CODE__ERROR_CODE_UNSPECIFIED;
    env->sender_id = c->id;
    const uint64_t deadline = mono_ms() + c->timeout_ms;
    for (int tries = 0; tries < HELLO_TRIES; tries++) {
        ex_t ex = EX_REPLY;
        dp_err_t err = DP_OK;
        if (!c->registered) err = hello(c, deadline, stop, &ex);
        if (!err && ex == EX_REPLY) err = exchange(c, env, want, deadline, stop, &ex, reply);
        if (err) return err;
        if (ex == EX_REPLY) return DP_OK;
        dp_debug(LOG_COMP, "%s forgot us: hello again", c->endpoint);
        c->registered = 0;
    }
    c->last_remote = DP__V1__ERROR_CODE__ERROR_CODE_NOT_REGISTERED;
    return dp_err_set(DP_ERR_PROTOCOL, "coordinator: at %s refuses our Hello", c->endpoint);
}

/* ---------------------------------------------------------------- bodies */

static int token_ok(const char *t)
{
    const size_t n = strlen(t);
    if (!n || n > DP_CLIENT_TOKEN_MAX) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)t[i] < 0x21 || (unsigned char)t[i] > 0x7e) return 0;
    return 1;
}

dp_err_t dp_client_submit(dp_client_t *c, const Dp__V1__Campaign *camp, const char *token,
                          volatile sig_atomic_t *stop, dp_client_submitted_t *out)
{
    memset(out, 0, sizeof *out);
    char made[40];
    if (!token || !*token) {
        dp_client_token(NULL, 0, made, sizeof made);
        token = made;
    }
    if (!token_ok(token))
        return dp_err_set(DP_ERR_INVALID,
                          "client: a token is 1..%d printable ASCII characters, no spaces",
                          DP_CLIENT_TOKEN_MAX);
    Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;
    Dp__V1__Submit s = DP__V1__SUBMIT__INIT;
    s.campaign = (Dp__V1__Campaign *)camp;
    s.client_token = (char *)token;
    e.body_case = DP__V1__ENVELOPE__BODY_SUBMIT;
    e.submit = &s;
    Dp__V1__Envelope *r;
    dp_err_t err = request(c, &e, DP__V1__ENVELOPE__BODY_SUBMIT_REPLY, stop, &r);
    if (err) return err;
    snprintf(out->campaign_id, sizeof out->campaign_id, "%s", r->submit_reply->campaign_id);
    out->tasks = r->submit_reply->tasks;
    out->duplicate = r->submit_reply->duplicate;
    dp_wire_free(&r);
    return DP_OK;
}

dp_err_t dp_client_status(dp_client_t *c, const char *campaign_id, int tasks, int workers,
                          volatile sig_atomic_t *stop, Dp__V1__StatusReply **out)
{
    *out = NULL;
    Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;
    Dp__V1__StatusRequest rq = DP__V1__STATUS_REQUEST__INIT;
    rq.campaign_id = campaign_id ? (char *)campaign_id : "";
    rq.tasks = tasks != 0;
    rq.workers = workers != 0;
    e.body_case = DP__V1__ENVELOPE__BODY_STATUS_REQUEST;
    e.status_request = &rq;
    Dp__V1__Envelope *r;
    dp_err_t err = request(c, &e, DP__V1__ENVELOPE__BODY_STATUS_REPLY, stop, &r);
    if (err) return err;
    /* the reply outlives its envelope: both were allocated by protobuf-c */
    *out = r->status_reply;
    r->status_reply = NULL;
    r->body_case = DP__V1__ENVELOPE__BODY__NOT_SET;
    dp_wire_free(&r);
    return DP_OK;
}

void dp_client_status_free(Dp__V1__StatusReply **r)
{
    if (!r || !*r) return;
    dp__v1__status_reply__free_unpacked(*r, NULL);
    *r = NULL;
}

dp_err_t dp_client_cancel(dp_client_t *c, const char *campaign_id, const char *reason,
                          volatile sig_atomic_t *stop, uint32_t *tasks_cancelled)
{
    *tasks_cancelled = 0;
    if (!campaign_id || !*campaign_id)
        return dp_err_set(DP_ERR_INVALID, "client: cancel needs a campaign id");
    Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;
    Dp__V1__Cancel x = DP__V1__CANCEL__INIT;
    x.campaign_id = (char *)campaign_id;
    x.reason = reason ? (char *)reason : "";
    e.body_case = DP__V1__ENVELOPE__BODY_CANCEL;
    e.cancel = &x;
    Dp__V1__Envelope *r;
    dp_err_t err = request(c, &e, DP__V1__ENVELOPE__BODY_CANCEL_REPLY, stop, &r);
    if (err) return err;
    *tasks_cancelled = r->cancel_reply->tasks_cancelled;
    dp_wire_free(&r);
    return DP_OK;
}

static uint64_t tasks_of(const Dp__V1__CampaignStatus *cs)
{
    const Dp__V1__TaskCounts *k = cs->counts;
    if (!k) return 0;
    return (uint64_t)k->blocked + k->queued + k->leased + k->done + k->failed + k->cancelled;
}

dp_err_t dp_client_wait(dp_client_t *c, const char *campaign_id, uint32_t poll_ms,
                        dp_client_progress_fn fn, void *arg, volatile sig_atomic_t *stop,
                        Dp__V1__StatusReply **final)
{
    *final = NULL;
    if (!campaign_id || !*campaign_id)
        return dp_err_set(DP_ERR_INVALID, "client: wait needs a campaign id");
    if (!poll_ms) poll_ms = DP_CLIENT_POLL_MS;
    const uint64_t t0 = mono_ms();
    int tasks = 0; /* per-task states once the first reply says they are few */
    for (;;) {
        const uint64_t asked = mono_ms();
        Dp__V1__StatusReply *r;
        dp_err_t err = dp_client_status(c, campaign_id, tasks, 0, stop, &r);
        if (err) return err;
        if (r->n_campaigns != 1 || !r->campaigns[0]->campaign_id ||
            strcmp(r->campaigns[0]->campaign_id, campaign_id)) {
            dp_client_status_free(&r);
            return dp_err_set(DP_ERR_PROTOCOL, "coordinator: a status without campaign %s",
                              campaign_id);
        }
        const Dp__V1__CampaignStatus *cs = r->campaigns[0];
        const int few = tasks_of(cs) <= DP_CLIENT_TASKS_MAX;
        if (fn) fn(arg, r, mono_ms() - t0);
        if (cs->state != DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_RUNNING) {
            if (tasks || !few) {
                *final = r;
                return DP_OK;
            }
            /* ended: once more, with every task (the failed ones' reasons) */
            dp_client_status_free(&r);
            return dp_client_status(c, campaign_id, 1, 0, stop, final);
        }
        tasks = few;
        dp_client_status_free(&r);
        for (uint64_t now = mono_ms(); now < asked + poll_ms; now = mono_ms()) {
            if (stop && *stop) return dp_err_set(DP_ERR_INTERRUPTED, "client: interrupted");
            const uint64_t left = asked + poll_ms - now;
            struct timespec ts = {0,
                                  (long)(left < STOP_SLICE_MS ? left : STOP_SLICE_MS) * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
}

/* ---------------------------------------------------------------- tokens */

void dp_client_token(const uint8_t *bytes, size_t len, char *buf, size_t size)
{
    uint8_t r[16];
    size_t got = 0;
    while (got < sizeof r) {
        const ssize_t n = getrandom(r + got, sizeof r - got, GRND_NONBLOCK);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += (size_t)n;
    }
    if (got < sizeof r) { /* no entropy yet: the bytes, the time, the pid, the host */
        uint64_t h = 0xcbf29ce484222325ull;
#define FNV(b) (h = (h ^ (uint8_t)(b)) * 0x100000001b3ull)
        for (size_t i = 0; bytes && i < len; i++) FNV(bytes[i]);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        const uint64_t v[3] = {(uint64_t)ts.tv_sec, (uint64_t)ts.tv_nsec, (uint64_t)getpid()};
        for (size_t i = 0; i < sizeof v; i++) FNV(((const uint8_t *)v)[i]);
        char host[256] = "";
        if (!gethostname(host, sizeof host - 1))
            for (const char *p = host; *p; p++) FNV(*p);
        memcpy(r, &h, 8);
        FNV(0);
        memcpy(r + 8, &h, 8);
#undef FNV
    }
    size_t k = 0;
    for (size_t i = 0; i < sizeof r && k + 3 <= size; i++)
        k += (size_t)snprintf(buf + k, size - k, "%02x", r[i]);
    if (size) buf[k < size ? k : size - 1] = '\0';
}
