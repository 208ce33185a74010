/* The coordinator's loop (server.h): peers, the message handlers, group
 * commit, heartbeats, lease reconciliation and compaction.
 *
 * Every state change goes through record(): append to the journal, apply to
 * the scheduler. Replies are packed into the outbox as they are decided and
 * sent only after the iteration's one commit. Peers are kept by routing id
 * in an open-addressing table; a worker peer also remembers the leases it
 * was given (or held before a restart), so that a lease whose Assign never
 * reached it (lost in a reconnect, or a crash between commit and send) is
 * failed when the worker's heartbeats keep leaving it out. */
#include "server.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "campaign/campaign.h"
#include "journal.h"
#include "plan.h"
#include "sched.h"
#include "util/log.h"
#include "wire/envelope.h"
#include "wire/sock.h"

#define LOG_COMP           "coordinator"
#define DROP_LOG_WINDOW_MS 10000u /* at most DROP_LOG_LINES drop lines per window */
#define DROP_LOG_LINES     20u
#define SUBMITTER_IDLE_MS  60000u /* a submitter silent this long is forgotten */

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
};

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t n = *cap ? *cap : 8;
    while (n < need) n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q) return -1;
    *p = q;
    *cap = n;
    return 0;
}

void dp_coord_server_opts_init(dp_coord_server_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->bind = "tcp://127.0.0.1:5555";
    o->journal_path = "./dp-coordinator.journal";
    o->heartbeat_ms = 1000;
    o->liveness = 3;
    o->max_attempts = DP_PLAN_ATTEMPTS;
    o->max_message = DP_WIRE_SOCK_MAX_MESSAGE;
    o->compact_bytes = 256ull << 20;
    o->drain = 1024;
}

/* ---------------------------------------------------------------- peers */

static uint64_t rid_hash(const dp_wire_peer_t *r)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < r->len; i++) h = (h ^ r->id[i]) * 1099511628211ULL;
    return h;
}

static int rid_eq(const dp_wire_peer_t *a, const dp_wire_peer_t *b)
{
    return a->len == b->len && !memcmp(a->id, b->id, a->len);
}

static peer_t *peer_find(const dp_coord_server_t *s, const dp_wire_peer_t *r)
{
    if (!s->nslots) return NULL;
    for (size_t h = rid_hash(r) & (s->nslots - 1);; h = (h + 1) & (s->nslots - 1)) {
        peer_t *p = s->slots[h];
        if (!p) return NULL;
        if (rid_eq(&p->rid, r)) return p;
    }
}

static void slot_put(peer_t **slots, size_t nslots, peer_t *p)
{
    size_t h = rid_hash(&p->rid) & (nslots - 1);
    while (slots[h]) h = (h + 1) & (nslots - 1);
    slots[h] = p;
}

static peer_t *peer_add(dp_coord_server_t *s, const dp_wire_peer_t *r)
{
    if (2 * (s->npeers + 1) > s->nslots) {
        const size_t n = s->nslots ? 2 * s->nslots : 64;
        peer_t **ns = calloc(n, sizeof *ns);
        if (!ns) return NULL;
        for (size_t i = 0; i < s->nslots; i++)
            if (s->slots[i]) slot_put(ns, n, s->slots[i]);
        free(s->slots);
        s->slots = ns;
        s->nslots = n;
    }
    peer_t *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->rid = *r;
    slot_put(s->slots, s->nslots, p);
    s->npeers++;
    return p;
}

static void leases_clear(peer_t *p)
{
    for (size_t i = 0; i < p->nleases; i++) free(p->leases[i].task_id);
    free(p->leases);
    p->leases = NULL;
    p->nleases = p->capleases = 0;
}

static void peer_free(peer_t *p)
{
    leases_clear(p);
    free(p->worker_id);
    free(p);
}

/* Removes p from the table (backward-shift deletion) and frees it. */
static void peer_remove(dp_coord_server_t *s, peer_t *p)
{
    size_t i = rid_hash(&p->rid) & (s->nslots - 1);
    while (s->slots[i] != p) i = (i + 1) & (s->nslots - 1);
    s->slots[i] = NULL;
    for (size_t j = (i + 1) & (s->nslots - 1); s->slots[j]; j = (j + 1) & (s->nslots - 1)) {
        peer_t *q = s->slots[j];
        s->slots[j] = NULL;
        slot_put(s->slots, s->nslots, q);
    }
    s->npeers--;
    peer_free(p);
}

static int is_worker(const peer_t *p)
{
    return p->worker_id &&
           (p->role == DP__V1__ROLE__ROLE_TRAINER || p->role == DP__V1__ROLE__ROLE_MEASURER);
}

static peer_t *peer_by_worker(const dp_coord_server_t *s, const char *worker_id)
{
    for (size_t i = 0; i < s->nslots; i++)
        if (s->slots[i] && is_worker(s->slots[i]) && !strcmp(s->slots[i]->worker_id, worker_id))
            return s->slots[i];
    return NULL;
}

static int lease_add(peer_t *p, const char *task_id, uint32_t attempt, uint64_t since)
{
    for (size_t i = 0; i < p->nleases; i++)
        if (!strcmp(p->leases[i].task_id, task_id)) {
            p->leases[i].attempt = attempt;
            p->leases[i].since_ms = since;
            return 0;
        }
    if (grow((void **)&p->leases, &p->capleases, p->nleases + 1, sizeof *p->leases)) return -1;
    char *id = strdup(task_id);
    if (!id) return -1;
    p->leases[p->nleases++] = (lease_t){id, attempt, since};
    return 0;
}

static void lease_drop(peer_t *p, size_t i)
{
    free(p->leases[i].task_id);
    p->leases[i] = p->leases[--p->nleases];
}

static void lease_forget(peer_t *p, const char *task_id)
{
    for (size_t i = 0; i < p->nleases; i++)
        if (!strcmp(p->leases[i].task_id, task_id)) {
            lease_drop(p, i);
            return;
        }
}

/* ---------------------------------------------------------------- logging */

static void drop_log(dp_coord_server_t *s, const dp_wire_peer_t *from, const char *why)
{
    if (s->now >= s->drop_window_ms + DROP_LOG_WINDOW_MS) {
        if (s->drop_suppressed)
            dp_warn(LOG_COMP, "%u more dropped messages were not logged", s->drop_suppressed);
        s->drop_window_ms = s->now;
        s->drop_lines = s->drop_suppressed = 0;
    }
    if (s->drop_lines >= DROP_LOG_LINES) {
        s->drop_suppressed++;
        return;
    }
    s->drop_lines++;
    char who[2 * DP_WIRE_ROUTING_ID_MAX + 3] = "?";
    if (from && from->len) dp_wire_peer_str(from, who, sizeof who);
    dp_warn(LOG_COMP, "dropped a message from peer %s: %s", who, why);
}

static void task_context(const char *task_id)
{
    char cid[DP_PLAN_ID_MAX];
    dp_sched_campaign_of(task_id, cid, sizeof cid);
    dp_log_set_context(cid, task_id);
}

/* ---------------------------------------------------------------- replies */

/* Packs env for peer `to` into the outbox (sent after the commit). */
static void reply(dp_coord_server_t *s, const dp_wire_peer_t *to, Dp__V1__Envelope *env,
                  uint64_t reply_to)
{
    env->reply_to = reply_to;
    env->sender_id = s->coord_id;
    uint8_t *buf;
    size_t len;
    if (grow((void **)&s->out, &s->capout, s->nout + 1, sizeof *s->out) ||
        dp_wire_pack(env, &s->seq, &buf, &len)) {
        s->st.send_failed++;
        dp_warn(LOG_COMP, "a reply (%s) was not sent: out of memory", dp_wire_body_name(env));
        return;
    }
    s->out[s->nout++] = (outmsg_t){*to, buf, len};
}

static void reply_error(dp_coord_server_t *s, const dp_wire_peer_t *to, uint64_t reply_to,
                        Dp__V1__ErrorCode code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void reply_error(dp_coord_server_t *s, const dp_wire_peer_t *to, uint64_t reply_to,
                        Dp__V1__ErrorCode code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;
    Dp__V1__Error er = DP__V1__ERROR__INIT;
    er.code = code;
    er.message = msg;
    e.body_case = DP__V1__ENVELOPE__BODY_ERROR;
    e.error = &er;
    reply(s, to, &e, reply_to);
}

static void send_outbox(dp_coord_server_t *s)
{
    for (size_t i = 0; i < s->nout; i++) {
        outmsg_t *m = &s->out[i];
        const dp_err_t err = dp_wire_send_bytes(s->router, &m->to, m->buf, m->len, ZMQ_DONTWAIT);
        if (err) {
            s->st.send_failed++;
            char who[2 * DP_WIRE_ROUTING_ID_MAX + 3];
            dp_wire_peer_str(&m->to, who, sizeof who);
            dp_debug(LOG_COMP, "a reply to peer %s was not sent: %s", who, dp_err_detail());
        } else {
            s->st.sent++;
        }
        free(m->buf);
    }
    s->nout = 0;
}

/* ---------------------------------------------------------------- records */

static void campaign_ended(dp_coord_server_t *s, const char *cid)
{
    if (grow((void **)&s->ended, &s->capended, s->nended + 1, sizeof *s->ended)) return;
    snprintf(s->ended[s->nended++], DP_PLAN_ID_MAX, "%s", cid);
}

/* Appends rec to the journal and applies it. DP_ERR_RANGE when it does not
 * fit in a record (nothing changed); a failure to apply an appended record
 * is fatal (the journal and the state would disagree): the loop stops
 * before the commit. */
static dp_err_t record(dp_coord_server_t *s, Dp__V1__JournalRecord *rec)
{
    if (s->fatal) return s->fatal;
    rec->unix_ms = s->now;
    char cid[DP_PLAN_ID_MAX] = "";
    switch (rec->body_case) {
    case DP__V1__JOURNAL_RECORD__BODY_TASK_DONE:
        dp_sched_campaign_of(rec->task_done->task_id, cid, sizeof cid);
        break;
    case DP__V1__JOURNAL_RECORD__BODY_TASK_FAILED:
        dp_sched_campaign_of(rec->task_failed->task_id, cid, sizeof cid);
        break;
    case DP__V1__JOURNAL_RECORD__BODY_CAMPAIGN_CANCELLED:
        snprintf(cid, sizeof cid, "%s", rec->campaign_cancelled->campaign_id);
        break;
    default:
        break;
    }
    const int was_running = *cid && dp_sched_campaign_running(s->sched, cid);
    dp_err_t err = dp_journal_append(s->j, rec, NULL);
    if (err) return err;
    err = dp_sched_apply(s->sched, rec, s->now);
    if (err) {
        dp_error(LOG_COMP, "journal record %llu cannot be applied: %s: %s",
                 (unsigned long long)rec->lsn, dp_strerror(err), dp_err_detail());
        s->fatal = DP_ERR_INVALID;
        return s->fatal;
    }
    s->st.records++;
    s->dirty = 1;
    if (was_running && !dp_sched_campaign_running(s->sched, cid)) campaign_ended(s, cid);
    return DP_OK;
}

static dp_err_t record_failed(dp_coord_server_t *s, const char *task_id, uint32_t attempt,
                              const char *reason, int final)
{
    Dp__V1__JournalRecord rec = DP__V1__JOURNAL_RECORD__INIT;
    Dp__V1__TaskFailed f = DP__V1__TASK_FAILED__INIT;
    f.task_id = (char *)task_id;
    f.attempt = attempt;
    f.reason = (char *)reason;
    f.final = final;
    rec.body_case = DP__V1__JOURNAL_RECORD__BODY_TASK_FAILED;
    rec.task_failed = &f;
    dp_err_t err = record(s, &rec);
    if (!err) s->st.failed++;
    return err;
}

static void on_expired(void *ctx, const char *task_id, uint32_t attempt, const char *worker_id,
                       const char *reason, int final)
{
    dp_coord_server_t *s = ctx;
    task_context(task_id);
    dp_warn(LOG_COMP, "attempt %u: %s%s", attempt, reason, final ? " (final)" : "");
    dp_log_set_context(NULL, NULL);
    record_failed(s, task_id, attempt, reason, final);
    peer_t *p = worker_id && *worker_id ? peer_by_worker(s, worker_id) : NULL;
    if (p) lease_forget(p, task_id);
}

/* ---------------------------------------------------------------- assigning */

/* Leases tasks to p while it wants them and the scheduler has one for it. */
static void assign(dp_coord_server_t *s, peer_t *p, uint64_t reply_to)
{
    char id[DP_PLAN_ID_MAX];
    uint32_t attempt;
    while (p->want > 0 && !s->fatal &&
           dp_sched_pick(s->sched, p->worker_id, s->now, id, sizeof id, &attempt)) {
        Dp__V1__JournalRecord rec = DP__V1__JOURNAL_RECORD__INIT;
        Dp__V1__TaskAssigned a = DP__V1__TASK_ASSIGNED__INIT;
        a.task_id = id;
        a.attempt = attempt;
        a.worker_id = p->worker_id;
        a.lease_deadline_unix_ms = dp_sched_lease_deadline(s->sched, s->now);
        rec.body_case = DP__V1__JOURNAL_RECORD__BODY_TASK_ASSIGNED;
        rec.task_assigned = &a;
        if (record(s, &rec)) return;
        Dp__V1__Task t;
        dp_plan_strings_t strs;
        if (dp_sched_task_msg(s->sched, id, &t, &strs)) continue; /* cannot happen: just picked */
        Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;
        Dp__V1__Assign as = DP__V1__ASSIGN__INIT;
        as.task = &t;
        as.lease_ms = s->period_ms;
        e.body_case = DP__V1__ENVELOPE__BODY_ASSIGN;
        e.assign = &as;
        reply(s, &p->rid, &e, reply_to);
        lease_add(p, id, attempt, s->now);
        p->want--;
        s->st.assigned++;
        dp_debug(LOG_COMP, "assigned %s attempt %u to %s", id, attempt, p->worker_id);
    }
}

static void assign_waiting(dp_coord_server_t *s)
{
    for (size_t i = 0; i < s->nslots && !s->fatal; i++)
        if (s->slots[i] && s->slots[i]->want && is_worker(s->slots[i])) assign(s, s->slots[i], 0);
}

/* ---------------------------------------------------------------- handlers */

static void on_hello(dp_coord_server_t *s, peer_t *p, const dp_wire_peer_t *from,
                     const Dp__V1__Envelope *env)
{
    const Dp__V1__Hello *h = env->hello;
    const uint32_t lo = h->protocol_min ? h->protocol_min : 1;
    const uint32_t hi = h->protocol_max ? h->protocol_max : lo;
    if (lo > DP_WIRE_VERSION || hi < DP_WIRE_VERSION) {
        reply_error(s, from, env->seq, DP__V1__ERROR_CODE__ERROR_CODE_VERSION,
                    "protocol %u..%u not spoken here (%u)", lo, hi, DP_WIRE_VERSION);
        return;
    }
    const int worker =
        h->role == DP__V1__ROLE__ROLE_TRAINER || h->role == DP__V1__ROLE__ROLE_MEASURER;
    if (worker) {
        dp_sched_hello_t sh = {.worker_id = h->worker_id,
                               .device_class = h->device_class,
                               .host = h->host && *h->host ? h->host : NULL,
                               .role = h->role,
                               .capacity = h->capacity};
        if (dp_sched_worker_hello(s->sched, &sh, s->now)) {
            reply_error(s, from, env->seq, DP__V1__ERROR_CODE__ERROR_CODE_BUSY,
                        "worker %s could not be registered", h->worker_id);
            return;
        }
    }
    /* the same worker on another connection: that one is gone */
    peer_t *old = worker ? peer_by_worker(s, h->worker_id) : NULL;
    if (!p && !(p = peer_add(s, from))) {
        reply_error(s, from, env->seq, DP__V1__ERROR_CODE__ERROR_CODE_BUSY, "out of memory");
        return;
    }
    if (is_worker(p) && (!worker || strcmp(p->worker_id, h->worker_id))) {
        dp_sched_worker_bye(s->sched, p->worker_id, s->now); /* this connection was another */
        leases_clear(p);
    }
    if (old && old != p) {
        leases_clear(p);
        p->leases = old->leases, p->nleases = old->nleases, p->capleases = old->capleases;
        old->leases = NULL, old->nleases = old->capleases = 0;
        peer_remove(s, old);
    }
    char *id = strdup(h->worker_id);
    if (!id) return;
    free(p->worker_id);
    p->worker_id = id;
    p->role = h->role;
    p->last_ms = s->now;
    p->want = 0;
    if (worker)
        for (size_t i = 0; i < s->norphans;) {
            orphan_t *o = &s->orphans[i];
            if (strcmp(o->worker_id, id)) {
                i++;
                continue;
            }
            lease_add(p, o->l.task_id, o->l.attempt, s->now);
            free(o->worker_id);
            free(o->l.task_id);
            s->orphans[i] = s->orphans[--s->norphans];
        }
    if (worker)
        dp_info(LOG_COMP, "hello from %s %s%s%s, capacity %u%s%s",
                h->role == DP__V1__ROLE__ROLE_MEASURER ? "measurer" : "trainer", h->worker_id,
                h->role == DP__V1__ROLE__ROLE_MEASURER ? " of class " : "",
                h->role == DP__V1__ROLE__ROLE_MEASURER ? h->device_class : "", h->capacity,
                h->host && *h->host ? " on " : "", h->host ? h->host : "");
    else
        dp_debug(LOG_COMP, "hello from submitter %s", h->worker_id);
    Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;
    Dp__V1__Welcome w = DP__V1__WELCOME__INIT;
    w.protocol_version = DP_WIRE_VERSION;
    w.heartbeat_ms = s->o.heartbeat_ms;
    w.liveness = s->o.liveness;
    w.coordinator_id = s->coord_id;
    w.session = s->session;
    e.body_case = DP__V1__ENVELOPE__BODY_WELCOME;
    e.welcome = &w;
    reply(s, from, &e, env->seq);
}

static void on_submit(dp_coord_server_t *s, const dp_wire_peer_t *from, const Dp__V1__Envelope *env)
{
    const Dp__V1__Submit *sub = env->submit;
    const char *token = sub->client_token && *sub->client_token ? sub->client_token : NULL;
    uint32_t n = 0;
    Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;
    Dp__V1__SubmitReply r = DP__V1__SUBMIT_REPLY__INIT;
    e.body_case = DP__V1__ENVELOPE__BODY_SUBMIT_REPLY;
    e.submit_reply = &r;
    const char *known = dp_sched_campaign_by_token(s->sched, token);
    if (known) {
        char cid[DP_PLAN_ID_MAX];
        snprintf(cid, sizeof cid, "%s", known);
        if (dp_plan_count(sub->campaign, &n)) n = 0;
        r.campaign_id = cid;
        r.tasks = n;
        r.duplicate = 1;
        dp_info(LOG_COMP, "campaign %s: submitted again with its token, nothing new", cid);
        reply(s, from, &e, env->seq);
        return;
    }
    dp_err_t err = campaign_validate(sub->campaign);
    if (!err) err = dp_plan_count(sub->campaign, &n);
    if (err) {
        dp_info(LOG_COMP, "a campaign was refused: %s", dp_err_detail());
        reply_error(s, from, env->seq, DP__V1__ERROR_CODE__ERROR_CODE_BAD_CAMPAIGN, "%s",
                    dp_err_detail());
        return;
    }
    char cid[DP_PLAN_ID_MAX];
    dp_sched_next_campaign_id(s->sched, sub->campaign->name, cid, sizeof cid);
    Dp__V1__JournalRecord rec = DP__V1__JOURNAL_RECORD__INIT;
    Dp__V1__CampaignAccepted a = DP__V1__CAMPAIGN_ACCEPTED__INIT;
    a.campaign_id = cid;
    a.campaign = sub->campaign;
    a.tasks_total = n;
    a.client_token = token ? (char *)token : "";
    a.accepted_unix_ms = s->now;
    rec.body_case = DP__V1__JOURNAL_RECORD__BODY_CAMPAIGN_ACCEPTED;
    rec.campaign_accepted = &a;
    if ((err = record(s, &rec))) {
        if (!s->fatal)
            reply_error(s, from, env->seq,
                        err == DP_ERR_RANGE ? DP__V1__ERROR_CODE__ERROR_CODE_BAD_CAMPAIGN
                                            : DP__V1__ERROR_CODE__ERROR_CODE_INTERNAL,
                        "campaign not accepted: %s", dp_err_detail());
        return;
    }
    s->st.campaigns_accepted++;
    dp_log_set_context(cid, NULL);
    dp_info(LOG_COMP, "accepted: %u tasks", n);
    dp_log_set_context(NULL, NULL);
    r.campaign_id = cid;
    r.tasks = n;
    reply(s, from, &e, env->seq);
}

static void on_ready(dp_coord_server_t *s, peer_t *p, const Dp__V1__Envelope *env)
{
    p->want = env->ready->slots ? env->ready->slots : 1;
    assign(s, p, env->seq);
}

static int listed(const Dp__V1__Heartbeat *hb, const char *task_id)
{
    for (size_t i = 0; i < hb->n_running; i++)
        if (!strcmp(hb->running[i]->task_id, task_id)) return 1;
    return 0;
}

static void send_cancel(dp_coord_server_t *s, const dp_wire_peer_t *to, const char *task_id,
                        const char *why)
{
    char cid[DP_PLAN_ID_MAX];
    dp_sched_campaign_of(task_id, cid, sizeof cid);
    Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;
    Dp__V1__Cancel c = DP__V1__CANCEL__INIT;
    c.campaign_id = cid;
    c.task_id = (char *)task_id;
    c.reason = (char *)why;
    e.body_case = DP__V1__ENVELOPE__BODY_CANCEL;
    e.cancel = &c;
    reply(s, to, &e, 0);
}

/* The worker says what it runs: a task that ended is cancelled on it; a
 * lease it keeps leaving out for a whole period never reached it. */
static void on_heartbeat(dp_coord_server_t *s, peer_t *p, const Dp__V1__Envelope *env)
{
    const Dp__V1__Heartbeat *hb = env->heartbeat;
    for (size_t i = 0; i < hb->n_running; i++) {
        const char *id = hb->running[i]->task_id;
        if (dp_sched_task_stopped(s->sched, id)) {
            task_context(id);
            dp_info(LOG_COMP, "%s still runs it: cancelled", p->worker_id);
            dp_log_set_context(NULL, NULL);
            send_cancel(s, &p->rid, id, "the task has ended or its campaign was cancelled");
        }
    }
    for (size_t i = 0; i < p->nleases;) {
        lease_t *l = &p->leases[i];
        int final = 0;
        if (dp_sched_failure_new(s->sched, l->task_id, l->attempt, 1, &final) != 1) {
            lease_drop(p, i); /* no longer this worker's lease */
            continue;
        }
        if (listed(hb, l->task_id)) {
            l->since_ms = s->now;
        } else if (s->now > l->since_ms + s->period_ms) {
            char why[256];
            snprintf(why, sizeof why, "worker %s does not hold the lease (its Assign was lost)",
                     p->worker_id);
            task_context(l->task_id);
            dp_warn(LOG_COMP, "attempt %u: %s%s", l->attempt, why, final ? " (final)" : "");
            dp_log_set_context(NULL, NULL);
            if (record_failed(s, l->task_id, l->attempt, why, final)) return;
            lease_drop(p, i);
            continue;
        }
        i++;
    }
}

static void ack(dp_coord_server_t *s, const dp_wire_peer_t *to, const char *task_id,
                uint32_t attempt, uint64_t reply_to)
{
    Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;
    Dp__V1__Ack a = DP__V1__ACK__INIT;
    a.task_id = (char *)task_id;
    a.attempt = attempt;
    e.body_case = DP__V1__ENVELOPE__BODY_ACK;
    e.ack = &a;
    reply(s, to, &e, reply_to);
}

static void on_result(dp_coord_server_t *s, peer_t *p, const Dp__V1__Envelope *env)
{
    const Dp__V1__Result *r = env->result;
    task_context(r->task_id);
    const int fresh = dp_sched_result_new(s->sched, r->task_id, r->attempt);
    if (fresh < 0) {
        dp_warn(LOG_COMP, "a result from %s for an unknown task", p->worker_id);
        reply_error(s, &p->rid, env->seq, DP__V1__ERROR_CODE__ERROR_CODE_NOT_FOUND, "no task '%s'",
                    r->task_id);
        dp_log_set_context(NULL, NULL);
        return;
    }
    if (fresh) {
        Dp__V1__TaskResult res = *r->result;
        if (!res.worker_id || !*res.worker_id) res.worker_id = p->worker_id;
        Dp__V1__JournalRecord rec = DP__V1__JOURNAL_RECORD__INIT;
        Dp__V1__TaskDone d = DP__V1__TASK_DONE__INIT;
        d.task_id = r->task_id;
        d.attempt = r->attempt;
        d.result = &res;
        rec.body_case = DP__V1__JOURNAL_RECORD__BODY_TASK_DONE;
        rec.task_done = &d;
        const dp_err_t err = record(s, &rec);
        if (err) {
            if (!s->fatal)
                reply_error(s, &p->rid, env->seq, DP__V1__ERROR_CODE__ERROR_CODE_INTERNAL,
                            "result not kept: %s", dp_err_detail());
            dp_log_set_context(NULL, NULL);
            return;
        }
        s->st.done++;
        dp_debug(LOG_COMP, "done by %s (attempt %u, %.3f s)", p->worker_id, r->attempt,
                 r->result->seconds);
    } else {
        dp_debug(LOG_COMP, "a repeated result from %s: acknowledged", p->worker_id);
    }
    dp_log_set_context(NULL, NULL);
    lease_forget(p, r->task_id);
    ack(s, &p->rid, r->task_id, r->attempt, env->seq);
}

static void on_failure(dp_coord_server_t *s, peer_t *p, const Dp__V1__Envelope *env)
{
    const Dp__V1__Failure *f = env->failure;
    int final = 0;
    const int fresh = dp_sched_failure_new(s->sched, f->task_id, f->attempt, f->retryable, &final);
    task_context(f->task_id);
    if (fresh < 0) {
        reply_error(s, &p->rid, env->seq, DP__V1__ERROR_CODE__ERROR_CODE_NOT_FOUND, "no task '%s'",
                    f->task_id);
        dp_log_set_context(NULL, NULL);
        return;
    }
    if (fresh) {
        char why[1024];
        snprintf(why, sizeof why, "worker %s: %s", p->worker_id, f->reason);
        dp_warn(LOG_COMP, "attempt %u failed: %s%s", f->attempt, why, final ? " (final)" : "");
        if (record_failed(s, f->task_id, f->attempt, why, final)) {
            if (!s->fatal)
                reply_error(s, &p->rid, env->seq, DP__V1__ERROR_CODE__ERROR_CODE_INTERNAL,
                            "failure not kept: %s", dp_err_detail());
            dp_log_set_context(NULL, NULL);
            return;
        }
    }
    dp_log_set_context(NULL, NULL);
    lease_forget(p, f->task_id);
    ack(s, &p->rid, f->task_id, f->attempt, env->seq);
}

/* The counts of one campaign, or zeros. */
static Dp__V1__TaskCounts counts_of(const dp_coord_server_t *s, const char *cid)
{
    Dp__V1__TaskCounts tc = DP__V1__TASK_COUNTS__INIT;
    Dp__V1__StatusRequest rq = DP__V1__STATUS_REQUEST__INIT;
    rq.campaign_id = (char *)cid;
    dp_err_t err;
    Dp__V1__StatusReply *r = dp_sched_status(s->sched, &rq, s->now, &err);
    if (r && r->n_campaigns == 1 && r->campaigns[0]->counts) tc = *r->campaigns[0]->counts;
    dp_sched_status_free(&r);
    return tc;
}

static void on_cancel(dp_coord_server_t *s, peer_t *p, const Dp__V1__Envelope *env)
{
    const Dp__V1__Cancel *c = env->cancel;
    if (!dp_sched_campaign_exists(s->sched, c->campaign_id)) {
        reply_error(s, &p->rid, env->seq, DP__V1__ERROR_CODE__ERROR_CODE_NOT_FOUND,
                    "no campaign '%s'", c->campaign_id);
        return;
    }
    Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;
    Dp__V1__CancelReply r = DP__V1__CANCEL_REPLY__INIT;
    r.campaign_id = c->campaign_id;
    e.body_case = DP__V1__ENVELOPE__BODY_CANCEL_REPLY;
    e.cancel_reply = &r;
    if (dp_sched_campaign_running(s->sched, c->campaign_id)) {
        const uint32_t before = counts_of(s, c->campaign_id).cancelled;
        char why[1024];
        snprintf(why, sizeof why, "cancelled by %s%s%s", p->worker_id,
                 c->reason && *c->reason ? ": " : "", c->reason ? c->reason : "");
        Dp__V1__JournalRecord rec = DP__V1__JOURNAL_RECORD__INIT;
        Dp__V1__CampaignCancelled x = DP__V1__CAMPAIGN_CANCELLED__INIT;
        x.campaign_id = c->campaign_id;
        x.reason = why;
        rec.body_case = DP__V1__JOURNAL_RECORD__BODY_CAMPAIGN_CANCELLED;
        rec.campaign_cancelled = &x;
        if (record(s, &rec)) {
            if (!s->fatal)
                reply_error(s, &p->rid, env->seq, DP__V1__ERROR_CODE__ERROR_CODE_INTERNAL,
                            "cancel not kept: %s", dp_err_detail());
            return;
        }
        r.tasks_cancelled = counts_of(s, c->campaign_id).cancelled - before;
    }
    reply(s, &p->rid, &e, env->seq);
}

static void on_status(dp_coord_server_t *s, const dp_wire_peer_t *from, const Dp__V1__Envelope *env)
{
    const Dp__V1__StatusRequest *rq = env->status_request;
    dp_err_t err;
    Dp__V1__StatusReply *r = dp_sched_status(s->sched, rq, s->now, &err);
    if (!r) {
        reply_error(s, from, env->seq,
                    err == DP_ERR_NOTFOUND ? DP__V1__ERROR_CODE__ERROR_CODE_NOT_FOUND
                                           : DP__V1__ERROR_CODE__ERROR_CODE_INTERNAL,
                    "%s", dp_err_detail());
        return;
    }
    dp_journal_stats_t js;
    dp_journal_stats(s->j, &js);
    r->journal_lsn = js.last_lsn;
    const int named = rq->campaign_id && *rq->campaign_id;
    for (size_t i = 0; named && i < r->n_campaigns; i++) {
        Dp__V1__CampaignStatus *cs = r->campaigns[i];
        if (cs->state == DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_RUNNING) continue;
        char *json = dp_sched_summary_json(s->sched, cs->campaign_id);
        if (json && strlen(json) <= DP_WIRE_MAX_JSON)
            cs->summary_json = json;
        else {
            if (json)
                dp_warn(LOG_COMP,
                        "campaign %s: the summary (%zu bytes) is too large for a status "
                        "reply",
                        cs->campaign_id, strlen(json));
            free(json);
        }
    }
    Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;
    e.body_case = DP__V1__ENVELOPE__BODY_STATUS_REPLY;
    e.status_reply = r;
    reply(s, from, &e, env->seq);
    for (size_t i = 0; i < r->n_campaigns; i++)
        if (r->campaigns[i]->summary_json != protobuf_c_empty_string) {
            free(r->campaigns[i]->summary_json);
            r->campaigns[i]->summary_json = NULL;
        }
    dp_sched_status_free(&r);
}

static void on_disconnect(dp_coord_server_t *s, peer_t *p, const Dp__V1__Envelope *env)
{
    dp_info(LOG_COMP, "%s disconnected%s%s", p->worker_id,
            env->disconnect->reason && *env->disconnect->reason ? ": " : "",
            env->disconnect->reason ? env->disconnect->reason : "");
    if (is_worker(p)) dp_sched_worker_bye(s->sched, p->worker_id, s->now);
    peer_remove(s, p);
}

/* One valid envelope from `from`. */
static void handle(dp_coord_server_t *s, const dp_wire_peer_t *from, const Dp__V1__Envelope *env)
{
    peer_t *p = peer_find(s, from);
    const Dp__V1__Envelope__BodyCase b = env->body_case;
    if (b == DP__V1__ENVELOPE__BODY_HELLO) {
        on_hello(s, p, from, env);
        return;
    }
    if (!p || !p->worker_id) {
        char why[128];
        snprintf(why, sizeof why, "%s before Hello", dp_wire_body_name(env));
        s->st.unregistered++;
        drop_log(s, from, why);
        reply_error(s, from, env->seq, DP__V1__ERROR_CODE__ERROR_CODE_NOT_REGISTERED,
                    "send Hello first");
        return;
    }
    p->last_ms = s->now;
    const int worker_body =
        b == DP__V1__ENVELOPE__BODY_READY || b == DP__V1__ENVELOPE__BODY_HEARTBEAT ||
        b == DP__V1__ENVELOPE__BODY_PROGRESS || b == DP__V1__ENVELOPE__BODY_RESULT ||
        b == DP__V1__ENVELOPE__BODY_FAILURE;
    if (worker_body && is_worker(p) && dp_sched_worker_seen(s->sched, p->worker_id, s->now)) {
        /* silent past its liveness: its leases went back; it must register again */
        char why[DP_WIRE_MAX_ID + 64];
        snprintf(why, sizeof why, "%s from %s, which was declared dead", dp_wire_body_name(env),
                 p->worker_id);
        s->st.unregistered++;
        drop_log(s, from, why);
        reply_error(s, from, env->seq, DP__V1__ERROR_CODE__ERROR_CODE_NOT_REGISTERED,
                    "declared dead: send Hello again");
        peer_remove(s, p);
        return;
    }
    if (worker_body && !is_worker(p)) {
        char why[128];
        snprintf(why, sizeof why, "%s from a submitter", dp_wire_body_name(env));
        s->st.dropped++;
        drop_log(s, from, why);
        reply_error(s, from, env->seq, DP__V1__ERROR_CODE__ERROR_CODE_PROTOCOL,
                    "%s is a worker's message", dp_wire_body_name(env));
        return;
    }
    switch (b) {
    case DP__V1__ENVELOPE__BODY_READY:
        on_ready(s, p, env);
        break;
    case DP__V1__ENVELOPE__BODY_HEARTBEAT:
        on_heartbeat(s, p, env);
        break;
    case DP__V1__ENVELOPE__BODY_PROGRESS:
        dp_debug(LOG_COMP, "progress of %s: %llu/%llu %s", env->progress->task_id,
                 (unsigned long long)env->progress->done, (unsigned long long)env->progress->total,
                 env->progress->message ? env->progress->message : "");
        break;
    case DP__V1__ENVELOPE__BODY_RESULT:
        on_result(s, p, env);
        break;
    case DP__V1__ENVELOPE__BODY_FAILURE:
        on_failure(s, p, env);
        break;
    case DP__V1__ENVELOPE__BODY_SUBMIT:
        on_submit(s, from, env);
        break;
    case DP__V1__ENVELOPE__BODY_STATUS_REQUEST:
        on_status(s, from, env);
        break;
    case DP__V1__ENVELOPE__BODY_CANCEL:
        on_cancel(s, p, env);
        break;
    case DP__V1__ENVELOPE__BODY_DISCONNECT:
        on_disconnect(s, p, env);
        break;
    default: {
        char why[128];
        snprintf(why, sizeof why, "%s is not a message for the coordinator",
                 dp_wire_body_name(env));
        s->st.dropped++;
        drop_log(s, from, why);
        reply_error(s, from, env->seq, DP__V1__ERROR_CODE__ERROR_CODE_PROTOCOL, "%s", why);
    }
    }
}

/* ---------------------------------------------------------------- periodic */

/* Heartbeats to the live workers; forgets the dead ones and idle submitters. */
static void tick(dp_coord_server_t *s)
{
    if (s->now < s->next_hb_ms) return;
    s->next_hb_ms = s->now + s->o.heartbeat_ms;
    peer_t **gone = NULL;
    size_t ngone = 0, capgone = 0;
    const uint64_t idle =
        SUBMITTER_IDLE_MS > 10 * s->period_ms ? SUBMITTER_IDLE_MS : 10 * s->period_ms;
    for (size_t i = 0; i < s->nslots; i++) {
        peer_t *p = s->slots[i];
        if (!p) continue;
        int drop = 0;
        if (is_worker(p)) {
            if (!dp_sched_worker_known(s->sched, p->worker_id)) {
                dp_warn(LOG_COMP, "worker %s: no message for %llu ms, dead", p->worker_id,
                        (unsigned long long)(s->now - p->last_ms));
                drop = 1;
            } else {
                Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;
                Dp__V1__Heartbeat hb = DP__V1__HEARTBEAT__INIT;
                e.body_case = DP__V1__ENVELOPE__BODY_HEARTBEAT;
                e.heartbeat = &hb;
                reply(s, &p->rid, &e, 0);
            }
        } else {
            drop = s->now > p->last_ms + idle;
        }
        if (drop && !grow((void **)&gone, &capgone, ngone + 1, sizeof *gone)) gone[ngone++] = p;
    }
    for (size_t i = 0; i < ngone; i++) peer_remove(s, gone[i]);
    free(gone);
    /* leases held before the restart whose worker never came back end by expiry */
    for (size_t i = 0; i < s->norphans;) {
        int final;
        if (dp_sched_failure_new(s->sched, s->orphans[i].l.task_id, s->orphans[i].l.attempt, 1,
                                 &final) == 1) {
            i++;
            continue;
        }
        free(s->orphans[i].worker_id);
        free(s->orphans[i].l.task_id);
        s->orphans[i] = s->orphans[--s->norphans];
    }
}

static dp_err_t compact_add(void *ctx, Dp__V1__JournalRecord *rec)
{
    dp_coord_server_t *s = ctx;
    rec->unix_ms = s->now;
    return dp_journal_compact_add(s->j, rec, NULL);
}

static void maybe_compact(dp_coord_server_t *s)
{
    if (!s->o.compact_bytes) return;
    dp_journal_stats_t js;
    dp_journal_stats(s->j, &js);
    if (js.bytes < s->o.compact_bytes || js.bytes < 2 * s->compacted_bytes) return;
    dp_err_t err = dp_journal_compact_begin(s->j);
    if (!err) {
        err = dp_sched_snapshot(s->sched, compact_add, s);
        if (err)
            dp_journal_compact_abort(s->j);
        else
            err = dp_journal_compact_finish(s->j);
    }
    dp_journal_stats(s->j, &js);
    if (err) dp_error(LOG_COMP, "compaction failed: %s: %s", dp_strerror(err), dp_err_detail());
    s->compacted_bytes = js.bytes;
}

/* ---------------------------------------------------------------- lifecycle */

static dp_err_t replay_one(const Dp__V1__JournalRecord *rec, void *arg)
{
    dp_coord_server_t *s = arg;
    return dp_sched_apply(s->sched, rec, rec->unix_ms);
}

/* The leases the journal holds, waiting for their workers to say Hello. */
static dp_err_t adopt_leases(dp_coord_server_t *s)
{
    Dp__V1__StatusRequest all = DP__V1__STATUS_REQUEST__INIT;
    dp_err_t err;
    Dp__V1__StatusReply *r = dp_sched_status(s->sched, &all, s->now, &err);
    if (!r) return err;
    size_t cap = 0;
    for (size_t i = 0; i < r->n_campaigns && !err; i++) {
        if (r->campaigns[i]->state != DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_RUNNING ||
            !r->campaigns[i]->counts->leased)
            continue;
        Dp__V1__StatusRequest one = DP__V1__STATUS_REQUEST__INIT;
        one.campaign_id = r->campaigns[i]->campaign_id;
        one.tasks = 1;
        Dp__V1__StatusReply *c = dp_sched_status(s->sched, &one, s->now, &err);
        for (size_t k = 0; c && c->n_campaigns && k < c->campaigns[0]->n_tasks; k++) {
            const Dp__V1__TaskStatus *t = c->campaigns[0]->tasks[k];
            if (t->state != DP__V1__TASK_STATE__TASK_STATE_LEASED) continue;
            if (grow((void **)&s->orphans, &cap, s->norphans + 1, sizeof *s->orphans)) {
                err = DP_ERR_NOMEM;
                break;
            }
            orphan_t *o = &s->orphans[s->norphans];
            o->worker_id = strdup(t->worker_id);
            o->l = (lease_t){strdup(t->task_id), t->attempt, s->now};
            if (!o->worker_id || !o->l.task_id) {
                free(o->worker_id);
                free(o->l.task_id);
                err = DP_ERR_NOMEM;
                break;
            }
            s->norphans++;
        }
        dp_sched_status_free(&c);
    }
    dp_sched_status_free(&r);
    return err;
}

static dp_err_t check_opts(const dp_coord_server_opts_t *o)
{
    if (!o->bind || !*o->bind) return dp_err_set(DP_ERR_INVALID, "server: no bind endpoint");
    if (!o->journal_path || !*o->journal_path)
        return dp_err_set(DP_ERR_INVALID, "server: no journal path");
    if (o->heartbeat_ms < 10 || o->heartbeat_ms > 3600000)
        return dp_err_set(DP_ERR_RANGE, "server: heartbeat_ms %u is not in [10, 3600000]",
                          o->heartbeat_ms);
    if (o->liveness < 1 || o->liveness > 1000)
        return dp_err_set(DP_ERR_RANGE, "server: liveness %u is not in [1, 1000]", o->liveness);
    if (o->max_attempts < 1 || o->max_attempts > 255)
        return dp_err_set(DP_ERR_RANGE, "server: max_attempts %u is not in [1, 255]",
                          o->max_attempts);
    if (o->max_message && (o->max_message < 4096 || o->max_message > DP_JOURNAL_MAX_RECORD_HARD))
        return dp_err_set(DP_ERR_RANGE, "server: max_message %zu is not in [4096, %u]",
                          o->max_message, DP_JOURNAL_MAX_RECORD_HARD);
    if (!o->curve_secret != !o->curve_authorized)
        return dp_err_set(DP_ERR_INVALID,
                          "server: CURVE needs both the secret key and the authorized keys");
    return DP_OK;
}

dp_err_t dp_coord_server_new(const dp_coord_server_opts_t *opts, dp_coord_server_t **out)
{
    *out = NULL;
    dp_coord_server_opts_t o;
    if (opts)
        o = *opts;
    else
        dp_coord_server_opts_init(&o);
    if (!o.drain) o.drain = 1024;
    if (!o.max_message) o.max_message = DP_WIRE_SOCK_MAX_MESSAGE;
    dp_err_t err = check_opts(&o);
    if (err) return err;
    dp_coord_server_t *s = calloc(1, sizeof *s);
    if (!s) return DP_ERR_NOMEM;
    atomic_init(&s->stop, 0);
    char host[256] = "coordinator";
    if (!o.coordinator_id && gethostname(host, sizeof host) == 0) host[sizeof host - 1] = '\0';
    s->bind = strdup(o.bind);
    s->journal_path = strdup(o.journal_path);
    s->coord_id = strdup(o.coordinator_id ? o.coordinator_id : host);
    s->o = o;
    s->o.bind = s->bind, s->o.journal_path = s->journal_path, s->o.coordinator_id = s->coord_id;
    s->o.curve_secret = s->o.curve_authorized = NULL; /* not kept */
    s->period_ms = (uint64_t)o.heartbeat_ms * o.liveness;
    s->now = wall_ms();
    s->session = s->now;
    if (!s->bind || !s->journal_path || !s->coord_id) {
        err = DP_ERR_NOMEM;
        goto fail;
    }
    dp_sched_opts_t so;
    dp_sched_opts_init(&so);
    so.heartbeat_ms = o.heartbeat_ms, so.liveness = o.liveness, so.max_attempts = o.max_attempts;
    if (!(s->sched = dp_sched_new(&so))) {
        err = DP_ERR_NOMEM;
        goto fail;
    }
    dp_journal_opts_t jo;
    dp_journal_opts_init(&jo);
    jo.no_fsync = o.no_fsync;
    if (o.max_message + (1u << 20) > jo.max_record)
        jo.max_record = (uint32_t)(o.max_message + (1u << 20) < DP_JOURNAL_MAX_RECORD_HARD
                                       ? o.max_message + (1u << 20)
                                       : DP_JOURNAL_MAX_RECORD_HARD);
    dp_journal_replay_info_t info;
    if ((err = dp_journal_open(o.journal_path, &jo, replay_one, s, &s->j, &info))) goto fail;
    dp_sched_after_replay(s->sched, s->now);
    if ((err = adopt_leases(s))) goto fail;
    dp_sched_counts_t sc;
    dp_sched_counts(s->sched, &sc);
    dp_info(LOG_COMP,
            "journal %s: %llu records replayed%s, %llu campaigns (%llu running), %zu leases "
            "held",
            o.journal_path, (unsigned long long)info.records, info.created ? " (new file)" : "",
            (unsigned long long)sc.campaigns_accepted,
            (unsigned long long)sc.campaigns[DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_RUNNING],
            s->norphans);

    if (o.zmq_ctx) {
        s->ctx = o.zmq_ctx;
    } else {
        if (!(s->ctx = zmq_ctx_new())) {
            err = dp_err_set(DP_ERR_NOMEM, "server: zmq_ctx_new: %s", zmq_strerror(errno));
            goto fail;
        }
        s->own_ctx = 1;
    }
    dp_wire_keypair_t kp;
    dp_wire_sock_opts_t wo;
    dp_wire_sock_opts_init(&wo);
    wo.max_message = o.max_message;
    wo.linger_ms = 200;
    wo.hwm = 100000;
    if (opts && opts->curve_secret) {
        if ((err = dp_wire_key_load_secret(opts->curve_secret, &kp))) goto fail;
        if ((err = dp_wire_zap_new(s->ctx, opts->curve_authorized, &s->zap))) {
            dp_wire_keypair_wipe(&kp);
            goto fail;
        }
        wo.curve_server = &kp;
        dp_info(LOG_COMP, "CURVE on: server key %s, %zu authorized keys", kp.public_key,
                dp_wire_zap_keys(s->zap));
    }
    err = dp_wire_socket(s->ctx, ZMQ_ROUTER, &wo, &s->router);
    if (wo.curve_server) dp_wire_keypair_wipe(&kp);
    if (err) goto fail;
    if ((err = dp_wire_bind(s->router, o.bind))) goto fail;
    if (dp_wire_last_endpoint(s->router, s->endpoint, sizeof s->endpoint))
        snprintf(s->endpoint, sizeof s->endpoint, "%s", o.bind);
    dp_info(LOG_COMP, "listening on %s (session %llu)", s->endpoint,
            (unsigned long long)s->session);
    *out = s;
    return DP_OK;
fail:
    dp_coord_server_destroy(&s);
    return err;
}

dp_err_t dp_coord_server_run(dp_coord_server_t *s, volatile sig_atomic_t *stop)
{
    zmq_pollitem_t items[2] = {{s->router, 0, ZMQ_POLLIN, 0}, {NULL, 0, ZMQ_POLLIN, 0}};
    const int nitems = s->zap ? 2 : 1;
    if (s->zap) items[1].socket = dp_wire_zap_socket(s->zap);
    dp_err_t ret = DP_OK;
    for (;;) {
        if ((stop && *stop) || atomic_load(&s->stop)) break;
        s->now = wall_ms();
        long timeout = (long)s->o.heartbeat_ms / 2;
        if (s->next_hb_ms > s->now && (long)(s->next_hb_ms - s->now) < timeout)
            timeout = (long)(s->next_hb_ms - s->now);
        if (s->next_hb_ms <= s->now) timeout = 0;
        const int rc = zmq_poll(items, nitems, timeout);
        if (rc < 0 && errno == ETERM) {
            ret = dp_err_set(DP_ERR_CLOSED, "server: the ZeroMQ context was terminated");
            break;
        }
        s->now = wall_ms();
        if (s->zap && (items[1].revents & ZMQ_POLLIN)) dp_wire_zap_handle(s->zap);
        s->dirty = 0;
        for (uint32_t n = 0; n < s->o.drain && !s->fatal; n++) {
            dp_wire_peer_t from;
            Dp__V1__Envelope *env = NULL;
            const dp_err_t err =
                dp_wire_recv(s->router, ZMQ_DONTWAIT, s->o.max_message, &from, &env);
            if (err == DP_ERR_TIMEOUT || err == DP_ERR_INTERRUPTED) break;
            if (err == DP_ERR_CLOSED) {
                ret = err;
                goto out;
            }
            s->st.received++;
            if (err) {
                s->st.dropped++;
                drop_log(s, &from, dp_err_detail());
                /* a peer that speaks another version or sends a broken envelope hears why */
                if (from.len && (err == DP_ERR_UNSUPPORTED || err == DP_ERR_PROTOCOL))
                    reply_error(s, &from, 0,
                                err == DP_ERR_UNSUPPORTED ? DP__V1__ERROR_CODE__ERROR_CODE_VERSION
                                                          : DP__V1__ERROR_CODE__ERROR_CODE_PROTOCOL,
                                "%s", dp_err_detail());
                continue;
            }
            handle(s, &from, env);
            dp_wire_free(&env);
        }
        if (!s->fatal) dp_sched_expired(s->sched, s->now, on_expired, s);
        if (s->dirty && !s->fatal) assign_waiting(s);
        if (!s->fatal) tick(s);
        if (s->fatal) {
            ret = s->fatal;
            break;
        }
        dp_journal_stats_t js;
        dp_journal_stats(s->j, &js);
        if (js.pending) {
            const dp_err_t err = dp_journal_commit(s->j);
            if (err) {
                dp_error(LOG_COMP, "journal commit failed: %s: %s (nothing unacknowledged is sent)",
                         dp_strerror(err), dp_err_detail());
                ret = err;
                break;
            }
            s->st.commits++;
        }
        send_outbox(s);
        for (size_t i = 0; i < s->nended; i++) {
            Dp__V1__StatusRequest rq = DP__V1__STATUS_REQUEST__INIT;
            rq.campaign_id = s->ended[i];
            dp_err_t e2;
            Dp__V1__StatusReply *r = dp_sched_status(s->sched, &rq, s->now, &e2);
            if (r && r->n_campaigns == 1) {
                const Dp__V1__CampaignStatus *cs = r->campaigns[0];
                dp_log_set_context(cs->campaign_id, NULL);
                dp_info(LOG_COMP, "ended %s: %u done, %u failed, %u cancelled%s%s",
                        cs->state == DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_DONE     ? "DONE"
                        : cs->state == DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_FAILED ? "FAILED"
                                                                                     : "CANCELLED",
                        cs->counts->done, cs->counts->failed, cs->counts->cancelled,
                        cs->reason && *cs->reason ? ": " : "", cs->reason ? cs->reason : "");
                dp_log_set_context(NULL, NULL);
            }
            dp_sched_status_free(&r);
        }
        s->nended = 0;
        maybe_compact(s);
    }
out:;
    /* what was handled before the stop is committed, then answered */
    dp_journal_stats_t js;
    dp_journal_stats(s->j, &js);
    if (!s->fatal && js.pending) {
        const dp_err_t err = dp_journal_commit(s->j);
        if (err && !ret) ret = err;
    }
    if (!ret || ret == DP_ERR_CLOSED) send_outbox(s);
    for (size_t i = 0; i < s->nout; i++) free(s->out[i].buf);
    s->nout = 0;
    if (!ret) dp_info(LOG_COMP, "stopped");
    return ret;
}

void dp_coord_server_stop(dp_coord_server_t *s) { atomic_store(&s->stop, 1); }

const char *dp_coord_server_endpoint(const dp_coord_server_t *s) { return s->endpoint; }

uint64_t dp_coord_server_session(const dp_coord_server_t *s) { return s->session; }

void dp_coord_server_stats(const dp_coord_server_t *s, dp_coord_server_stats_t *out)
{
    *out = s->st;
    if (s->zap) {
        dp_wire_zap_stats_t z;
        dp_wire_zap_stats(s->zap, &z);
        out->zap_admitted = z.admitted;
        out->zap_refused = z.refused;
    }
}

void dp_coord_server_destroy(dp_coord_server_t **ps)
{
    if (!ps || !*ps) return;
    dp_coord_server_t *s = *ps;
    if (s->router) {
        zmq_unbind(s->router, s->endpoint); /* at once: a restart may bind it again */
        zmq_close(s->router);               /* before the ZAP handler goes */
    }
    dp_wire_zap_destroy(&s->zap);
    if (s->own_ctx && s->ctx) zmq_ctx_term(s->ctx);
    dp_journal_destroy(&s->j);
    dp_sched_destroy(&s->sched);
    for (size_t i = 0; i < s->nslots; i++)
        if (s->slots[i]) peer_free(s->slots[i]);
    free(s->slots);
    for (size_t i = 0; i < s->norphans; i++) {
        free(s->orphans[i].worker_id);
        free(s->orphans[i].l.task_id);
    }
    free(s->orphans);
    for (size_t i = 0; i < s->nout; i++) free(s->out[i].buf);
    free(s->out);
    free(s->ended);
    free(s->bind);
    free(s->journal_path);
    free(s->coord_id);
    free(s);
    *ps = NULL;
}
