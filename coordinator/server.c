/* The coordinator's loop (server.h): lifecycle, the loop, replies and
 * records, heartbeats and peer expiry, compaction. server_impl.h says how
 * the three files of the loop share the work. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "server_impl.h"
#include "util/clock.h"
#include "util/log.h"
#include "wire/envelope.h"

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void dp_coord_server_opts_init(dp_coord_server_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->bind = "tcp://127.0.0.1:5555";
    o->journal_path = "./dp-coordinator.journal";
    o->heartbeat_ms = 1000;
    o->liveness = 3;
    o->max_attempts = DP_PLAN_ATTEMPTS;
    o->retry_ms = 1000;
    o->max_message = DP_WIRE_SOCK_MAX_MESSAGE;
    o->compact_bytes = 256ull << 20;
    o->drain = 1024;
}

/* ---------------------------------------------------------------- logging */

void srv_drop_log(dp_coord_server_t *s, const dp_wire_peer_t *from, const char *why)
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

void srv_task_context(const char *task_id)
{
    char cid[DP_PLAN_ID_MAX];
    dp_sched_campaign_of(task_id, cid, sizeof cid);
    dp_log_set_context(cid, task_id);
}

/* ---------------------------------------------------------------- replies */

/* Packs env for peer `to` into the outbox (sent after the commit). */
void srv_reply(dp_coord_server_t *s, const dp_wire_peer_t *to, Dp__V1__Envelope *env,
               uint64_t reply_to)
{
    env->reply_to = reply_to;
    env->sender_id = s->coord_id;
    uint8_t *buf;
    size_t len;
    if (srv_grow((void **)&s->out, &s->capout, s->nout + 1, sizeof *s->out) ||
        dp_wire_pack(env, &s->seq, &buf, &len)) {
        s->st.send_failed++;
        dp_warn(LOG_COMP, "a reply (%s) was not sent: out of memory", dp_wire_body_name(env));
        return;
    }
    s->out[s->nout++] = (outmsg_t){*to, buf, len};
}

void srv_reply_error(dp_coord_server_t *s, const dp_wire_peer_t *to, uint64_t reply_to,
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
    srv_reply(s, to, &e, reply_to);
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
    if (srv_grow((void **)&s->ended, &s->capended, s->nended + 1, sizeof *s->ended)) return;
    snprintf(s->ended[s->nended++], DP_PLAN_ID_MAX, "%s", cid);
}

/* Appends rec to the journal and applies it. DP_ERR_RANGE when it does not
 * fit in a record (nothing changed); a failure to apply an appended record
 * is fatal (the journal and the state would disagree): the loop stops
 * before the commit. */
dp_err_t srv_record(dp_coord_server_t *s, Dp__V1__JournalRecord *rec)
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

dp_err_t srv_record_failed(dp_coord_server_t *s, const char *task_id, uint32_t attempt,
                           const char *reason, int final)
{
    srv_task_context(task_id);
    if (final)
        dp_warn(LOG_COMP, "attempt %u failed: %s (final)", attempt, reason);
    else
        dp_warn(LOG_COMP, "attempt %u failed: %s (retry in %llu ms)", attempt, reason,
                (unsigned long long)dp_sched_retry_wait(s->sched, attempt));
    dp_log_set_context(NULL, NULL);
    Dp__V1__JournalRecord rec = DP__V1__JOURNAL_RECORD__INIT;
    Dp__V1__TaskFailed f = DP__V1__TASK_FAILED__INIT;
    f.task_id = (char *)task_id;
    f.attempt = attempt;
    f.reason = (char *)reason;
    f.final = final;
    rec.body_case = DP__V1__JOURNAL_RECORD__BODY_TASK_FAILED;
    rec.task_failed = &f;
    dp_err_t err = srv_record(s, &rec);
    if (!err) s->st.failed++;
    return err;
}

static void on_expired(void *ctx, const char *task_id, uint32_t attempt, const char *worker_id,
                       const char *reason, int final)
{
    dp_coord_server_t *s = ctx;
    srv_record_failed(s, task_id, attempt, reason, final);
    peer_t *p = worker_id && *worker_id ? srv_peer_by_worker(s, worker_id) : NULL;
    if (p) srv_lease_forget(p, task_id);
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
        if (srv_is_worker(p)) {
            if (!dp_sched_worker_known(s->sched, p->worker_id)) {
                dp_warn(LOG_COMP, "worker %s: no message for %llu ms, dead", p->worker_id,
                        (unsigned long long)(s->now - p->last_ms));
                drop = 1;
            } else {
                Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;
                Dp__V1__Heartbeat hb = DP__V1__HEARTBEAT__INIT;
                e.body_case = DP__V1__ENVELOPE__BODY_HEARTBEAT;
                e.heartbeat = &hb;
                srv_reply(s, &p->rid, &e, 0);
            }
        } else {
            drop = s->now > p->last_ms + idle;
        }
        if (drop && !srv_grow((void **)&gone, &capgone, ngone + 1, sizeof *gone)) gone[ngone++] = p;
    }
    for (size_t i = 0; i < ngone; i++) srv_peer_remove(s, gone[i]);
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
            if (srv_grow((void **)&s->orphans, &cap, s->norphans + 1, sizeof *s->orphans)) {
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
    if (o->retry_ms > 3600000)
        return dp_err_set(DP_ERR_RANGE, "server: retry_ms %u is not in [0, 3600000]", o->retry_ms);
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
    s->http_addr = o.http ? strdup(o.http) : NULL;
    s->o = o;
    s->o.bind = s->bind, s->o.journal_path = s->journal_path, s->o.coordinator_id = s->coord_id;
    s->o.curve_secret = s->o.curve_authorized = NULL; /* not kept */
    s->period_ms = (uint64_t)o.heartbeat_ms * o.liveness;
    s->now = wall_ms();
    s->session = s->now;
    s->o.http = s->http_addr;
    if (!s->bind || !s->journal_path || !s->coord_id || (o.http && !s->http_addr)) {
        err = DP_ERR_NOMEM;
        goto fail;
    }
    dp_sched_opts_t so;
    dp_sched_opts_init(&so);
    so.heartbeat_ms = o.heartbeat_ms, so.liveness = o.liveness, so.max_attempts = o.max_attempts;
    so.retry_ms = o.retry_ms;
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
    if ((err = srv_http_start(s))) goto fail;
    *out = s;
    return DP_OK;
fail:
    dp_coord_server_destroy(&s);
    return err;
}

dp_err_t dp_coord_server_run(dp_coord_server_t *s, volatile sig_atomic_t *stop)
{
    zmq_pollitem_t items[3] = {{s->router, 0, ZMQ_POLLIN, 0}};
    int nitems = 1, izap = -1, ihttp = -1;
    if (s->zap) {
        items[izap = nitems++] = (zmq_pollitem_t){dp_wire_zap_socket(s->zap), 0, ZMQ_POLLIN, 0};
    }
    if (s->http)
        items[ihttp = nitems++] = (zmq_pollitem_t){NULL, dp_http_fd(s->http), ZMQ_POLLIN, 0};
    dp_err_t ret = DP_OK;
    for (;;) {
        if ((stop && *stop) || atomic_load(&s->stop)) break;
        s->now = wall_ms();
        long timeout = (long)s->o.heartbeat_ms / 2;
        if (s->next_hb_ms > s->now && (long)(s->next_hb_ms - s->now) < timeout)
            timeout = (long)(s->next_hb_ms - s->now);
        if (s->next_hb_ms <= s->now) timeout = 0;
        const long http_timeout = s->http ? dp_http_timeout_ms(s->http) : -1;
        if (http_timeout >= 0 && http_timeout < timeout) timeout = http_timeout;
        const uint64_t retry = dp_sched_next_retry(s->sched); /* a failed task's wait ends */
        if (retry) {
            const long until = retry > s->now ? (long)(retry - s->now) : 0;
            if (until < timeout) timeout = until;
        }
        const int rc = zmq_poll(items, nitems, timeout);
        if (rc < 0 && errno == ETERM) {
            ret = dp_err_set(DP_ERR_CLOSED, "server: the ZeroMQ context was terminated");
            break;
        }
        s->now = wall_ms();
        if (izap >= 0 && (items[izap].revents & ZMQ_POLLIN)) dp_wire_zap_handle(s->zap);
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
                srv_drop_log(s, &from, dp_err_detail());
                /* a peer that speaks another version or sends a broken envelope hears why */
                if (from.len && (err == DP_ERR_UNSUPPORTED || err == DP_ERR_PROTOCOL))
                    srv_reply_error(s, &from, 0,
                                    err == DP_ERR_UNSUPPORTED
                                        ? DP__V1__ERROR_CODE__ERROR_CODE_VERSION
                                        : DP__V1__ERROR_CODE__ERROR_CODE_PROTOCOL,
                                    "%s", dp_err_detail());
                continue;
            }
            srv_handle(s, &from, env);
            dp_wire_free(&env);
        }
        if (!s->fatal) dp_sched_expired(s->sched, s->now, on_expired, s);
        if (dp_sched_retry_due(s->sched, s->now)) s->dirty = 1;
        if (s->dirty && !s->fatal) srv_assign_waiting(s);
        if (!s->fatal) tick(s);
        if (s->fatal) {
            ret = s->fatal;
            break;
        }
        dp_journal_stats_t js;
        dp_journal_stats(s->j, &js);
        if (js.pending) {
            const double t0 = s->http ? dp_clock_s() : 0;
            const dp_err_t err = dp_journal_commit(s->j);
            if (err) {
                dp_error(LOG_COMP, "journal commit failed: %s: %s (nothing unacknowledged is sent)",
                         dp_strerror(err), dp_err_detail());
                ret = err;
                break;
            }
            s->st.commits++;
            if (s->http) srv_http_commit(s, dp_clock_s() - t0);
        }
        send_outbox(s);
        if (s->http) {
            srv_http_tick(s);
            /* between iterations: what it reads is committed and answered */
            if ((ihttp >= 0 && items[ihttp].revents) || http_timeout == 0) dp_http_run(s->http);
        }
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

int dp_coord_server_http_port(const dp_coord_server_t *s)
{
    return s->http ? dp_http_port(s->http) : 0;
}

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
    dp_http_destroy(&s->http);
    free(s->http_addr);
    if (s->own_ctx && s->ctx) zmq_ctx_term(s->ctx);
    dp_journal_destroy(&s->j);
    dp_sched_destroy(&s->sched);
    for (size_t i = 0; i < s->nslots; i++)
        if (s->slots[i]) srv_peer_free(s->slots[i]);
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