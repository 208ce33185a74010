/* The coordinator's state machine on a fake clock: planning, leasing by role
 * and device class, dependencies, retries (after their wait) and final
 * failures, cancel, lease expiry of a silent worker, and a snapshot that
 * replays to the same state. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan.h"
#include "scheduler.h"

static Dp__V1__Campaign *make_campaign(uint32_t seeds, uint32_t shard, int classes)
{
    static Dp__V1__Model m[2];
    static Dp__V1__Model *mp[2] = {&m[0], &m[1]};
    static Dp__V1__Dataset d;
    static Dp__V1__Dataset *dp[1] = {&d};
    static Dp__V1__IndexRange tr;
    static float eps[2] = {0.03f, 0.09f};
    static Dp__V1__Budget b;
    static Dp__V1__Budget *bp[1] = {&b};
    static Dp__V1__Baseline bl[2];
    static Dp__V1__Baseline *blp[2] = {&bl[0], &bl[1]};
    static Dp__V1__DeviceClass dc[2];
    static Dp__V1__DeviceClass *dcp[2] = {&dc[0], &dc[1]};
    static Dp__V1__Campaign c;
    dp__v1__campaign__init(&c);
    for (int i = 0; i < 2; i++) dp__v1__model__init(&m[i]);
    m[0].name = "skipnet", m[0].family = DP__V1__MODEL_FAMILY__MODEL_FAMILY_SKIPNET;
    m[1].name = "sdn", m[1].family = DP__V1__MODEL_FAMILY__MODEL_FAMILY_SDN_RESNET;
    dp__v1__dataset__init(&d);
    dp__v1__index_range__init(&tr);
    tr.begin = 0, tr.end = seeds;
    d.name = "fmnist", d.test_range = &tr, d.shard_size = shard;
    dp__v1__budget__init(&b);
    b.norm = DP__V1__NORM__NORM_LINF, b.n_eps = 2, b.eps = eps;
    for (int i = 0; i < 2; i++) dp__v1__baseline__init(&bl[i]);
    bl[0].method = DP__V1__BASELINE_METHOD__BASELINE_METHOD_RANDOM;
    bl[1].method = DP__V1__BASELINE_METHOD__BASELINE_METHOD_DEEPSLOTH; /* sdn only */
    for (int i = 0; i < 2; i++) dp__v1__device_class__init(&dc[i]);
    dc[0].name = "x86", dc[1].name = "jetson", dc[1].samples = shard; /* jetson: first shard */
    c.name = "t", c.n_models = 2, c.models = mp, c.n_datasets = 1, c.datasets = dp;
    c.n_budgets = 1, c.budgets = bp, c.n_baselines = 2, c.baselines = blp;
    c.n_device_classes = (size_t)classes, c.device_classes = dcp, c.store_uri = "file:///tmp/x";
    return &c;
}

typedef struct harness {
    dp_sched_t *s;
    uint64_t now, lsn;
    Dp__V1__JournalRecord *log[4096];
    uint64_t at[4096]; /* the time each record was applied */
    size_t nlog;
} harness_t;

/* Applies rec and keeps a packed copy, as the journal would. */
static void apply(harness_t *h, Dp__V1__JournalRecord *rec)
{
    rec->lsn = ++h->lsn;
    cr_assert_eq(dp_sched_apply(h->s, rec, h->now), DP_OK, "%s", dp_err_detail());
    const size_t len = dp__v1__journal_record__get_packed_size(rec);
    uint8_t *buf = malloc(len + 1);
    dp__v1__journal_record__pack(rec, buf);
    cr_assert_lt(h->nlog, 4096);
    h->at[h->nlog] = h->now;
    h->log[h->nlog++] = dp__v1__journal_record__unpack(NULL, len, buf);
    free(buf);
}

static void submit(harness_t *h, Dp__V1__Campaign *c, const char *cid)
{
    Dp__V1__JournalRecord rec;
    Dp__V1__CampaignAccepted a;
    dp__v1__journal_record__init(&rec);
    dp__v1__campaign_accepted__init(&a);
    a.campaign_id = (char *)cid, a.campaign = c, a.accepted_unix_ms = h->now;
    rec.body_case = DP__V1__JOURNAL_RECORD__BODY_CAMPAIGN_ACCEPTED, rec.campaign_accepted = &a;
    apply(h, &rec);
}

static void hello(harness_t *h, const char *id, Dp__V1__Role role, const char *cls,
                  const char *host)
{
    dp_sched_hello_t hh = {
        .worker_id = id, .device_class = cls, .host = host, .role = role, .capacity = 1};
    cr_assert_eq(dp_sched_worker_hello(h->s, &hh, h->now), 0);
}

/* Leases the next task for worker w; returns 1 with its id in buf. */
static int lease(harness_t *h, const char *w, char *buf, size_t size)
{
    uint32_t attempt;
    if (!dp_sched_pick(h->s, w, h->now, buf, size, &attempt)) return 0;
    Dp__V1__JournalRecord rec;
    Dp__V1__TaskAssigned a;
    dp__v1__journal_record__init(&rec);
    dp__v1__task_assigned__init(&a);
    a.task_id = buf, a.attempt = attempt, a.worker_id = (char *)w;
    a.lease_deadline_unix_ms = dp_sched_lease_deadline(h->s, h->now);
    rec.body_case = DP__V1__JOURNAL_RECORD__BODY_TASK_ASSIGNED, rec.task_assigned = &a;
    apply(h, &rec);
    return 1;
}

static void done(harness_t *h, const char *id)
{
    Dp__V1__JournalRecord rec;
    Dp__V1__TaskDone d;
    Dp__V1__TaskResult r;
    dp__v1__journal_record__init(&rec);
    dp__v1__task_done__init(&d);
    dp__v1__task_result__init(&r);
    r.summary_json = "{\"ok\":1}";
    d.task_id = (char *)id, d.attempt = 1, d.result = &r;
    rec.body_case = DP__V1__JOURNAL_RECORD__BODY_TASK_DONE, rec.task_done = &d;
    apply(h, &rec);
}

static void failed(harness_t *h, const char *id, uint32_t attempt, int final)
{
    Dp__V1__JournalRecord rec;
    Dp__V1__TaskFailed f;
    dp__v1__journal_record__init(&rec);
    dp__v1__task_failed__init(&f);
    f.task_id = (char *)id, f.attempt = attempt, f.reason = "boom", f.final = final;
    rec.body_case = DP__V1__JOURNAL_RECORD__BODY_TASK_FAILED, rec.task_failed = &f;
    apply(h, &rec);
}

static void harness_init(harness_t *h)
{
    memset(h, 0, sizeof *h);
    h->s = dp_sched_new(NULL);
    h->now = 1000000;
    cr_assert_not_null(h->s);
}

static void harness_fini(harness_t *h)
{
    for (size_t i = 0; i < h->nlog; i++) dp__v1__journal_record__free_unpacked(h->log[i], NULL);
    dp_sched_destroy(&h->s);
}

static Dp__V1__StatusReply *status(harness_t *h, int tasks)
{
    Dp__V1__StatusRequest rq;
    dp__v1__status_request__init(&rq);
    rq.tasks = tasks, rq.workers = 1;
    dp_err_t err;
    Dp__V1__StatusReply *r = dp_sched_status(h->s, &rq, h->now, &err);
    cr_assert_not_null(r);
    return r;
}

Test(plan, counts_and_ids)
{
    Dp__V1__Campaign *c = make_campaign(10, 4, 2);
    uint32_t n;
    cr_assert_eq(dp_plan_count(c, &n), DP_OK, "%s", dp_err_detail());
    /* 3 shards; train 2x2; baseline: skipnet random 2x3, sdn random+deepsloth 2x2x3;
     * generate 2x2x3; measure x86: 2 models x (3 seeds + 2 eps x (dp + baselines) x 3);
     * jetson: the same on 1 shard; report 1 */
    const uint32_t train = 4, base = 6 + 12, gen = 12;
    const uint32_t mx86 = (3 + 2 * 2 * 3) + (3 + 2 * 3 * 3), mjet = mx86 / 3;
    cr_expect_eq(n, train + base + gen + mx86 + mjet + 1, "%u tasks", n);
    dp_plan_task_t t = {.kind = DP__V1__TASK_KIND__TASK_KIND_MEASURE,
                        .method = DP__V1__METHOD__METHOD_DEEPSLOTH,
                        .model = 1,
                        .budget = 1,
                        .shard = 2,
                        .device = 0};
    char id[DP_PLAN_ID_MAX], key[DP_PLAN_ID_MAX];
    cr_assert_eq(dp_plan_task_id(c, "t-1", &t, id, sizeof id), 0);
    cr_expect_str_eq(id, "t-1/measure/x86/sdn/linf-0.09/deepsloth/s2");
    cr_assert_eq(dp_plan_task_key(c, "t-1", &t, key, sizeof key), 0);
    cr_expect_str_eq(key, "t-1/sdn/linf-0.09/deepsloth/s2/measure-x86");
    uint32_t b, e;
    dp_plan_shard_range(c, 2, &b, &e);
    cr_expect(b == 8 && e == 10);
    Dp__V1__Campaign *bad = make_campaign(0, 4, 1);
    cr_expect_eq(dp_plan_count(bad, &n), DP_ERR_INVALID);
    cr_expect(strstr(dp_err_detail(), "test_range") != NULL, "%s", dp_err_detail());
}

/* A whole campaign by one trainer and one measurer per class: every task is
 * leased once, in dependency order, and the campaign ends DONE. */
Test(sched, campaign_runs_to_done)
{
    harness_t h;
    harness_init(&h);
    submit(&h, make_campaign(10, 4, 2), "t-1");
    hello(&h, "tr", DP__V1__ROLE__ROLE_TRAINER, NULL, "a");
    hello(&h, "mx", DP__V1__ROLE__ROLE_MEASURER, "x86", "b");
    hello(&h, "mj", DP__V1__ROLE__ROLE_MEASURER, "jetson", "c");
    char id[DP_PLAN_ID_MAX];
    int leases = 0, report_seen = 0;
    for (int round = 0; round < 1000; round++) {
        int any = 0;
        const char *ws[] = {"tr", "mx", "mj"};
        for (int w = 0; w < 3; w++) {
            if (!lease(&h, ws[w], id, sizeof id)) continue;
            any = 1, leases++;
            if (w == 1) cr_expect(strstr(id, "/measure/x86/") != NULL, "%s", id);
            if (w == 2) cr_expect(strstr(id, "/measure/jetson/") != NULL, "%s", id);
            if (strstr(id, "/generate/")) {
                /* its TRAIN is done by now */
                char tr[DP_PLAN_ID_MAX];
                snprintf(tr, sizeof tr, "%s", id);
                *strrchr(tr, '/') = 0;
                memcpy(strstr(tr, "/generate/"), "/train/", 7);
                memmove(strstr(tr, "/train/") + 7, strstr(tr, "/train/") + 10,
                        strlen(strstr(tr, "/train/") + 10) + 1);
                cr_expect(dp_sched_task_stopped(h.s, tr), "%s before %s", id, tr);
            }
            if (!strcmp(id, "t-1/report")) report_seen = 1;
            cr_expect_eq(dp_sched_result_new(h.s, id, 1), 1);
            done(&h, id);
            cr_expect_eq(dp_sched_result_new(h.s, id, 1), 0, "a second result is a duplicate");
        }
        if (!any) break;
    }
    uint32_t n;
    dp_plan_count(make_campaign(10, 4, 2), &n);
    cr_expect_eq(leases, (int)n);
    cr_expect(report_seen);
    Dp__V1__StatusReply *r = status(&h, 0);
    cr_assert_eq(r->n_campaigns, 1);
    cr_expect_eq(r->campaigns[0]->state, DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_DONE);
    cr_expect_eq(r->campaigns[0]->counts->done, n);
    dp_sched_status_free(&r);
    harness_fini(&h);
}

/* A task that fails every attempt fails its cell: the MEASURE tasks that read
 * it fail with the reason, the report still runs, the campaign ends FAILED. */
Test(sched, failing_task_fails_its_cell)
{
    harness_t h;
    harness_init(&h);
    submit(&h, make_campaign(4, 4, 1), "t-1");
    hello(&h, "tr", DP__V1__ROLE__ROLE_TRAINER, NULL, "a");
    hello(&h, "mx", DP__V1__ROLE__ROLE_MEASURER, "x86", "b");
    const char *bad = "t-1/baseline/skipnet/linf-0.03/random/s0";
    char id[DP_PLAN_ID_MAX];
    for (int round = 0; round < 500; round++) {
        int any = 0;
        h.now += 70000; /* past any retry wait (at most 64 x 1 s) */
        if (lease(&h, "tr", id, sizeof id)) {
            any = 1;
            if (!strcmp(id, bad)) {
                int final = -1;
                Dp__V1__StatusReply *r = status(&h, 1);
                uint32_t attempt = 0;
                for (size_t k = 0; k < r->campaigns[0]->n_tasks; k++)
                    if (!strcmp(r->campaigns[0]->tasks[k]->task_id, bad))
                        attempt = r->campaigns[0]->tasks[k]->attempt;
                dp_sched_status_free(&r);
                cr_assert_eq(dp_sched_failure_new(h.s, id, attempt, 1, &final), 1);
                cr_expect_eq(final, attempt >= 3);
                failed(&h, id, attempt, final);
            } else {
                done(&h, id);
            }
        }
        if (lease(&h, "mx", id, sizeof id)) {
            any = 1;
            cr_expect(strcmp(id, "t-1/measure/x86/skipnet/linf-0.03/random/s0"),
                      "the failed baseline's MEASURE is never leased");
            done(&h, id);
        }
        if (!any) break;
    }
    char *js = dp_sched_summary_json(h.s, "t-1");
    cr_assert_not_null(js);
    cr_expect(strstr(js, "\"state\":\"failed\"") != NULL);
    cr_expect(strstr(js, "did not complete") != NULL, "the dependent names its input");
    cr_expect(strstr(js, "\"reason\":\"boom\"") != NULL);
    free(js);
    Dp__V1__StatusReply *r = status(&h, 0);
    cr_expect_eq(r->campaigns[0]->state, DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_FAILED);
    cr_expect_eq(r->campaigns[0]->counts->failed, 2, "the baseline and its MEASURE");
    dp_sched_status_free(&r);
    harness_fini(&h);
}

typedef struct expired_log {
    int n, finals;
    char ids[16][DP_PLAN_ID_MAX];
    uint32_t attempts[16];
} expired_log_t;

static void on_expired(void *ctx, const char *id, uint32_t attempt, const char *w, const char *why,
                       int final)
{
    (void)w;
    expired_log_t *l = ctx;
    cr_expect(strstr(why, "silent") != NULL || strstr(why, "disconnected") != NULL, "%s", why);
    if (l->n < 16) {
        snprintf(l->ids[l->n], DP_PLAN_ID_MAX, "%s", id);
        l->attempts[l->n] = attempt;
    }
    l->n++, l->finals += final;
}

/* A silent trainer's lease ends after liveness heartbeats; the task goes to
 * another worker with the next attempt. MEASURE never goes to a host whose
 * trainer holds a task. */
Test(sched, silent_worker_lease_expires_and_host_exclusive)
{
    harness_t h;
    harness_init(&h);
    submit(&h, make_campaign(4, 4, 1), "t-1");
    hello(&h, "tr1", DP__V1__ROLE__ROLE_TRAINER, NULL, "hostA");
    hello(&h, "tr2", DP__V1__ROLE__ROLE_TRAINER, NULL, "hostB");
    hello(&h, "mx", DP__V1__ROLE__ROLE_MEASURER, "x86", "hostA");
    char id[DP_PLAN_ID_MAX], id2[DP_PLAN_ID_MAX];
    cr_assert(lease(&h, "tr1", id, sizeof id));
    cr_expect_eq(lease(&h, "mx", id2, sizeof id2), 0, "hostA's trainer is busy: no MEASURE");
    h.now += 2000;
    dp_sched_worker_seen(h.s, "tr2", h.now);
    expired_log_t l = {0};
    dp_sched_expired(h.s, h.now, on_expired, &l);
    cr_expect_eq(l.n, 0, "2 s of silence is within liveness");
    h.now += 1500;
    dp_sched_worker_seen(h.s, "tr2", h.now);
    dp_sched_expired(h.s, h.now, on_expired, &l);
    cr_assert_eq(l.n, 1);
    cr_expect_str_eq(l.ids[0], id);
    failed(&h, l.ids[0], l.attempts[0], 0);
    h.now += 1000; /* its retry wait */
    dp_sched_worker_seen(h.s, "tr2", h.now);
    /* the re-queued task went to the back of the queue: tr2 reaches it with attempt 2 */
    int seen = 0;
    for (int i = 0; i < 200 && !seen; i++) {
        uint32_t attempt = 0;
        char again[DP_PLAN_ID_MAX];
        if (!dp_sched_pick(h.s, "tr2", h.now, again, sizeof again, &attempt)) break;
        if (!strcmp(again, id)) {
            cr_expect_eq(attempt, 2);
            seen = 1;
        }
        lease(&h, "tr2", again, sizeof again);
        done(&h, again);
    }
    cr_expect(seen, "the expired task was leased again");
    harness_fini(&h);
}

/* A failed task is not leased again before retry_ms has passed, the wait
 * doubles per attempt, other tasks are leased meanwhile, and a replay of the
 * journal (each record at its own time) keeps when each wait ends. */
typedef struct snap_target {
    dp_sched_t *s;
    uint64_t now;
} snap_target_t;

/* Round-trips each snapshot record through its wire form, then applies it. */
static dp_err_t snap_apply(void *ctx, Dp__V1__JournalRecord *rec)
{
    snap_target_t *t = ctx;
    const size_t len = dp__v1__journal_record__get_packed_size(rec);
    uint8_t *buf = malloc(len + 1);
    dp__v1__journal_record__pack(rec, buf);
    Dp__V1__JournalRecord *copy = dp__v1__journal_record__unpack(NULL, len, buf);
    free(buf);
    cr_assert_not_null(copy);
    dp_err_t err = dp_sched_apply(t->s, copy, t->now);
    dp__v1__journal_record__free_unpacked(copy, NULL);
    return err;
}

Test(sched, failed_task_waits_before_its_retry)
{
    harness_t h;
    harness_init(&h);
    submit(&h, make_campaign(4, 4, 1), "t-1");
    hello(&h, "tr", DP__V1__ROLE__ROLE_TRAINER, NULL, "a");
    char id[DP_PLAN_ID_MAX], other[DP_PLAN_ID_MAX];
    cr_assert(lease(&h, "tr", id, sizeof id));
    cr_expect_eq(dp_sched_next_retry(h.s), 0, "nothing waits yet");
    const uint64_t t1 = h.now;
    failed(&h, id, 1, 0);
    cr_expect_eq(dp_sched_next_retry(h.s), t1 + 1000);
    /* within the wait: other tasks go out (and fail, so they wait too), the failed one does not */
    int others = 0;
    h.now = t1 + 999;
    while (lease(&h, "tr", other, sizeof other)) {
        cr_expect_str_neq(other, id);
        failed(&h, other, 1, 0);
        others++;
    }
    cr_expect_gt(others, 0, "the other trainer tasks were leased meanwhile");
    cr_expect_eq(dp_sched_retry_due(h.s, h.now), 0);
    cr_expect_eq(dp_sched_next_retry(h.s), t1 + 1000);
    h.now = t1 + 1000;
    cr_assert(lease(&h, "tr", other, sizeof other), "due at 1000 ms");
    cr_expect_str_eq(other, id, "the only task due");
    cr_expect_eq(dp_sched_next_retry(h.s), t1 + 1999, "the others' waits end later");
    /* attempt 2 fails: the wait doubles */
    h.now = t1 + 1500;
    const uint64_t t2 = h.now;
    failed(&h, id, 2, 0);
    /* a replay keeps when the waits end */
    dp_sched_t *r = dp_sched_new(NULL);
    for (size_t i = 0; i < h.nlog; i++) cr_assert_eq(dp_sched_apply(r, h.log[i], h.at[i]), DP_OK);
    cr_expect_eq(dp_sched_next_retry(r), dp_sched_next_retry(h.s));
    cr_expect_eq(dp_sched_retry_due(r, t2 + 1999), (size_t)others, "the others, not the task");
    cr_expect_eq(dp_sched_next_retry(r), t2 + 2000);
    cr_expect_eq(dp_sched_retry_due(r, t2 + 2000), 1);
    cr_expect_eq(dp_sched_next_retry(r), 0, "nothing waits any more");
    dp_sched_destroy(&r);
    /* so does a snapshot (a compaction, then a restart) */
    snap_target_t tgt = {dp_sched_new(NULL), h.now};
    cr_assert_eq(dp_sched_snapshot(h.s, snap_apply, &tgt), DP_OK);
    dp_sched_after_replay(tgt.s, h.now);
    cr_expect_eq(dp_sched_next_retry(tgt.s), dp_sched_next_retry(h.s));
    cr_expect_eq(dp_sched_retry_due(tgt.s, t2 + 1999), (size_t)others, "the others, not the task");
    cr_expect_eq(dp_sched_next_retry(tgt.s), t2 + 2000);
    cr_expect_eq(dp_sched_retry_due(tgt.s, t2 + 2000), 1);
    dp_sched_destroy(&tgt.s);
    int back = 0;
    for (h.now = t2 + 1999; !back && lease(&h, "tr", other, sizeof other);) {
        back = !strcmp(other, id);
        done(&h, other);
    }
    cr_expect_eq(back, 0, "not within 2 x retry_ms of its second failure");
    h.now = t2 + 2000;
    cr_assert(lease(&h, "tr", other, sizeof other));
    cr_expect_str_eq(other, id, "leased again 2 x retry_ms after its second failure");
    harness_fini(&h);
}

/* retry_ms 0: a failed task is queued again at once. */
Test(sched, retry_wait_zero_requeues_at_once)
{
    harness_t h;
    harness_init(&h);
    dp_sched_destroy(&h.s);
    dp_sched_opts_t o;
    dp_sched_opts_init(&o);
    o.retry_ms = 0;
    h.s = dp_sched_new(&o);
    submit(&h, make_campaign(1, 1, 1), "t-1");
    hello(&h, "tr", DP__V1__ROLE__ROLE_TRAINER, NULL, "a");
    char id[DP_PLAN_ID_MAX], again[DP_PLAN_ID_MAX];
    cr_assert(lease(&h, "tr", id, sizeof id));
    failed(&h, id, 1, 0);
    cr_expect_eq(dp_sched_next_retry(h.s), 0);
    int back = 0;
    for (int i = 0; i < 16 && !back && lease(&h, "tr", again, sizeof again); i++) {
        back = !strcmp(again, id);
        if (!back) done(&h, again);
    }
    cr_expect(back, "leased again at the same time");
    harness_fini(&h);
}

/* Cancel ends every open task; a snapshot of a campaign in progress replays
 * into a state with the same summary. */
Test(sched, snapshot_replays_and_cancel)
{
    harness_t h;
    harness_init(&h);
    submit(&h, make_campaign(10, 4, 1), "t-1");
    hello(&h, "tr", DP__V1__ROLE__ROLE_TRAINER, NULL, "a");
    char id[DP_PLAN_ID_MAX];
    for (int i = 0; i < 9 && lease(&h, "tr", id, sizeof id); i++)
        if (i % 3 != 2) done(&h, id);
    failed(&h, "t-1/train/skipnet/linf-0.03", 1, 0);
    char *before = dp_sched_summary_json(h.s, "t-1");
    /* replay the log into a fresh state: same summary */
    dp_sched_t *r1 = dp_sched_new(NULL);
    for (size_t i = 0; i < h.nlog; i++) cr_assert_eq(dp_sched_apply(r1, h.log[i], h.now), DP_OK);
    char *replayed = dp_sched_summary_json(r1, "t-1");
    cr_expect_str_eq(replayed, before);
    /* snapshot records into another: same summary */
    dp_sched_t *r2 = dp_sched_new(NULL);
    snap_target_t tgt = {r2, h.now};
    cr_assert_eq(dp_sched_snapshot(h.s, snap_apply, &tgt), DP_OK);
    dp_sched_after_replay(r2, h.now);
    char *snapped = dp_sched_summary_json(r2, "t-1");
    cr_expect_str_eq(snapped, before);
    /* cancel: every open task ends, the campaign is CANCELLED, nothing more is leased */
    Dp__V1__JournalRecord rec;
    Dp__V1__CampaignCancelled cc;
    dp__v1__journal_record__init(&rec);
    dp__v1__campaign_cancelled__init(&cc);
    cc.campaign_id = "t-1", cc.reason = "user";
    rec.body_case = DP__V1__JOURNAL_RECORD__BODY_CAMPAIGN_CANCELLED, rec.campaign_cancelled = &cc;
    apply(&h, &rec);
    cr_expect_eq(lease(&h, "tr", id, sizeof id), 0);
    Dp__V1__StatusReply *r = status(&h, 0);
    cr_expect_eq(r->campaigns[0]->state, DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_CANCELLED);
    cr_expect_eq(r->campaigns[0]->counts->queued + r->campaigns[0]->counts->blocked +
                     r->campaigns[0]->counts->leased,
                 0);
    dp_sched_status_free(&r);
    free(before);
    free(replayed);
    free(snapped);
    dp_sched_destroy(&r1);
    dp_sched_destroy(&r2);
    harness_fini(&h);
}
