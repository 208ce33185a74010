/* The coordinator's message handlers, one per body, and leasing: each
 * turns a message into journal records (srv_record) and replies
 * (srv_reply), which the loop sends after its commit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "campaign/campaign.h"
#include "server_impl.h"
#include "util/log.h"
#include "wire/envelope.h"

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
        if (srv_record(s, &rec)) return;
        Dp__V1__Task t;
        dp_plan_strings_t strs;
        if (dp_sched_task_msg(s->sched, id, &t, &strs)) continue; /* cannot happen: just picked */
        Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;
        Dp__V1__Assign as = DP__V1__ASSIGN__INIT;
        as.task = &t;
        as.lease_ms = s->period_ms;
        e.body_case = DP__V1__ENVELOPE__BODY_ASSIGN;
        e.assign = &as;
        srv_reply(s, &p->rid, &e, reply_to);
        srv_lease_add(p, id, attempt, s->now);
        p->want--;
        s->st.assigned++;
        dp_debug(LOG_COMP, "assigned %s attempt %u to %s", id, attempt, p->worker_id);
    }
}

void srv_assign_waiting(dp_coord_server_t *s)
{
    for (size_t i = 0; i < s->nslots && !s->fatal; i++)
        if (s->slots[i] && s->slots[i]->want && srv_is_worker(s->slots[i]))
            assign(s, s->slots[i], 0);
}

/* ---------------------------------------------------------------- handlers */

static void on_hello(dp_coord_server_t *s, peer_t *p, const dp_wire_peer_t *from,
                     const Dp__V1__Envelope *env)
{
    const Dp__V1__Hello *h = env->hello;
    const uint32_t lo = h->protocol_min ? h->protocol_min : 1;
    const uint32_t hi = h->protocol_max ? h->protocol_max : lo;
    if (lo > DP_WIRE_VERSION || hi < DP_WIRE_VERSION) {
        srv_reply_error(s, from, env->seq, DP__V1__ERROR_CODE__ERROR_CODE_VERSION,
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
            srv_reply_error(s, from, env->seq, DP__V1__ERROR_CODE__ERROR_CODE_BUSY,
                            "worker %s could not be registered", h->worker_id);
            return;
        }
    }
    /* the same worker on another connection: that one is gone */
    peer_t *old = worker ? srv_peer_by_worker(s, h->worker_id) : NULL;
    if (!p && !(p = srv_peer_add(s, from))) {
        srv_reply_error(s, from, env->seq, DP__V1__ERROR_CODE__ERROR_CODE_BUSY, "out of memory");
        return;
    }
    if (srv_is_worker(p) && (!worker || strcmp(p->worker_id, h->worker_id))) {
        dp_sched_worker_bye(s->sched, p->worker_id, s->now); /* this connection was another */
        srv_leases_clear(p);
    }
    if (old && old != p) {
        srv_leases_clear(p);
        p->leases = old->leases, p->nleases = old->nleases, p->capleases = old->capleases;
        old->leases = NULL, old->nleases = old->capleases = 0;
        srv_peer_remove(s, old);
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
            srv_lease_add(p, o->l.task_id, o->l.attempt, s->now);
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
    srv_reply(s, from, &e, env->seq);
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
        srv_reply(s, from, &e, env->seq);
        return;
    }
    dp_err_t err = campaign_validate(sub->campaign);
    if (!err) err = dp_plan_count(sub->campaign, &n);
    if (err) {
        dp_info(LOG_COMP, "a campaign was refused: %s", dp_err_detail());
        srv_reply_error(s, from, env->seq, DP__V1__ERROR_CODE__ERROR_CODE_BAD_CAMPAIGN, "%s",
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
    if ((err = srv_record(s, &rec))) {
        if (!s->fatal)
            srv_reply_error(s, from, env->seq,
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
    srv_reply(s, from, &e, env->seq);
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
    srv_reply(s, to, &e, 0);
}

/* The worker says what it runs: a task that ended is cancelled on it; a
 * lease it keeps leaving out for a whole period never reached it. */
static void on_heartbeat(dp_coord_server_t *s, peer_t *p, const Dp__V1__Envelope *env)
{
    const Dp__V1__Heartbeat *hb = env->heartbeat;
    for (size_t i = 0; i < hb->n_running; i++) {
        const char *id = hb->running[i]->task_id;
        if (dp_sched_task_stopped(s->sched, id)) {
            srv_task_context(id);
            dp_info(LOG_COMP, "%s still runs it: cancelled", p->worker_id);
            dp_log_set_context(NULL, NULL);
            send_cancel(s, &p->rid, id, "the task has ended or its campaign was cancelled");
        }
    }
    for (size_t i = 0; i < p->nleases;) {
        lease_t *l = &p->leases[i];
        int final = 0;
        if (dp_sched_failure_new(s->sched, l->task_id, l->attempt, 1, &final) != 1) {
            srv_lease_drop(p, i); /* no longer this worker's lease */
            continue;
        }
        if (listed(hb, l->task_id)) {
            l->since_ms = s->now;
        } else if (s->now > l->since_ms + s->period_ms) {
            char why[256];
            snprintf(why, sizeof why, "worker %s does not hold the lease (its Assign was lost)",
                     p->worker_id);
            if (srv_record_failed(s, l->task_id, l->attempt, why, final)) return;
            srv_lease_drop(p, i);
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
    srv_reply(s, to, &e, reply_to);
}

static void on_result(dp_coord_server_t *s, peer_t *p, const Dp__V1__Envelope *env)
{
    const Dp__V1__Result *r = env->result;
    srv_task_context(r->task_id);
    const int fresh = dp_sched_result_new(s->sched, r->task_id, r->attempt);
    if (fresh < 0) {
        dp_warn(LOG_COMP, "a result from %s for an unknown task", p->worker_id);
        srv_reply_error(s, &p->rid, env->seq, DP__V1__ERROR_CODE__ERROR_CODE_NOT_FOUND,
                        "no task '%s'", r->task_id);
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
        const dp_err_t err = srv_record(s, &rec);
        if (err) {
            if (!s->fatal)
                srv_reply_error(s, &p->rid, env->seq, DP__V1__ERROR_CODE__ERROR_CODE_INTERNAL,
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
    srv_lease_forget(p, r->task_id);
    ack(s, &p->rid, r->task_id, r->attempt, env->seq);
}

static void on_failure(dp_coord_server_t *s, peer_t *p, const Dp__V1__Envelope *env)
{
    const Dp__V1__Failure *f = env->failure;
    int final = 0;
    const int fresh = dp_sched_failure_new(s->sched, f->task_id, f->attempt, f->retryable, &final);
    srv_task_context(f->task_id);
    if (fresh < 0) {
        srv_reply_error(s, &p->rid, env->seq, DP__V1__ERROR_CODE__ERROR_CODE_NOT_FOUND,
                        "no task '%s'", f->task_id);
        dp_log_set_context(NULL, NULL);
        return;
    }
    if (fresh) {
        char why[1024];
        snprintf(why, sizeof why, "worker %s: %s", p->worker_id, f->reason);
        if (srv_record_failed(s, f->task_id, f->attempt, why, final)) {
            if (!s->fatal)
                srv_reply_error(s, &p->rid, env->seq, DP__V1__ERROR_CODE__ERROR_CODE_INTERNAL,
                                "failure not kept: %s", dp_err_detail());
            dp_log_set_context(NULL, NULL);
            return;
        }
    }
    dp_log_set_context(NULL, NULL);
    srv_lease_forget(p, f->task_id);
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
        srv_reply_error(s, &p->rid, env->seq, DP__V1__ERROR_CODE__ERROR_CODE_NOT_FOUND,
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
        if (srv_record(s, &rec)) {
            if (!s->fatal)
                srv_reply_error(s, &p->rid, env->seq, DP__V1__ERROR_CODE__ERROR_CODE_INTERNAL,
                                "cancel not kept: %s", dp_err_detail());
            return;
        }
        r.tasks_cancelled = counts_of(s, c->campaign_id).cancelled - before;
    }
    srv_reply(s, &p->rid, &e, env->seq);
}

static void on_status(dp_coord_server_t *s, const dp_wire_peer_t *from, const Dp__V1__Envelope *env)
{
    const Dp__V1__StatusRequest *rq = env->status_request;
    dp_err_t err;
    Dp__V1__StatusReply *r = dp_sched_status(s->sched, rq, s->now, &err);
    if (!r) {
        srv_reply_error(s, from, env->seq,
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
    srv_reply(s, from, &e, env->seq);
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
    if (srv_is_worker(p)) dp_sched_worker_bye(s->sched, p->worker_id, s->now);
    srv_peer_remove(s, p);
}

/* One valid envelope from `from`. */
void srv_handle(dp_coord_server_t *s, const dp_wire_peer_t *from, const Dp__V1__Envelope *env)
{
    peer_t *p = srv_peer_find(s, from);
    const Dp__V1__Envelope__BodyCase b = env->body_case;
    if (b == DP__V1__ENVELOPE__BODY_HELLO) {
        on_hello(s, p, from, env);
        return;
    }
    if (!p || !p->worker_id) {
        char why[128];
        snprintf(why, sizeof why, "%s before Hello", dp_wire_body_name(env));
        s->st.unregistered++;
        srv_drop_log(s, from, why);
        srv_reply_error(s, from, env->seq, DP__V1__ERROR_CODE__ERROR_CODE_NOT_REGISTERED,
                        "send Hello first");
        return;
    }
    p->last_ms = s->now;
    const int worker_body =
        b == DP__V1__ENVELOPE__BODY_READY || b == DP__V1__ENVELOPE__BODY_HEARTBEAT ||
        b == DP__V1__ENVELOPE__BODY_PROGRESS || b == DP__V1__ENVELOPE__BODY_RESULT ||
        b == DP__V1__ENVELOPE__BODY_FAILURE;
    if (worker_body && srv_is_worker(p) && dp_sched_worker_seen(s->sched, p->worker_id, s->now)) {
        /* silent past its liveness: its leases went back; it must register again */
        char why[DP_WIRE_MAX_ID + 64];
        snprintf(why, sizeof why, "%s from %s, which was declared dead", dp_wire_body_name(env),
                 p->worker_id);
        s->st.unregistered++;
        srv_drop_log(s, from, why);
        srv_reply_error(s, from, env->seq, DP__V1__ERROR_CODE__ERROR_CODE_NOT_REGISTERED,
                        "declared dead: send Hello again");
        srv_peer_remove(s, p);
        return;
    }
    if (worker_body && !srv_is_worker(p)) {
        char why[128];
        snprintf(why, sizeof why, "%s from a submitter", dp_wire_body_name(env));
        s->st.dropped++;
        srv_drop_log(s, from, why);
        srv_reply_error(s, from, env->seq, DP__V1__ERROR_CODE__ERROR_CODE_PROTOCOL,
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
        srv_drop_log(s, from, why);
        srv_reply_error(s, from, env->seq, DP__V1__ERROR_CODE__ERROR_CODE_PROTOCOL, "%s", why);
    }
    }
}