/* The coordinator's state at scale (issue 12's memory and replay targets):
 *
 *   bench_coord [TASKS] [DIR]
 *
 * 1. Memory: a campaign of TASKS seeds in shards of 1 with one model, one eps
 *    and the random baseline plans 2 * TASKS + 2 tasks, TASKS + 1 of them
 *    queued at once (the baselines and the TRAIN); the growth of the
 *    process's resident set over the empty state, per task and per queued
 *    task (target <= 1 KiB per queued task at 1,000,000 queued).
 * 2. Leasing without sockets: pick + TaskAssigned + TaskDone applied, per
 *    second (the state machine's own ceiling on dispatch).
 * 3. Replay: a journal of the CampaignAccepted record and TASKS / 2 leases
 *    and results (TASKS records in all), written without fsync, then opened
 *    with every record applied to a fresh state (target <= 2 s for
 *    1,000,000 records).
 * DIR holds the journal (default /tmp). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "journal.h"
#include "scheduler.h"
#include "util/clock.h"

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &res) != 2) res = 0;
        fclose(f);
    }
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static Dp__V1__Campaign *campaign(uint32_t seeds)
{
    static Dp__V1__Model m = DP__V1__MODEL__INIT, *mp[1] = {&m};
    static Dp__V1__Dataset d = DP__V1__DATASET__INIT, *dp[1] = {&d};
    static Dp__V1__IndexRange tr = DP__V1__INDEX_RANGE__INIT;
    static float eps[1] = {0.09f};
    static Dp__V1__Budget b = DP__V1__BUDGET__INIT, *bp[1] = {&b};
    static Dp__V1__Baseline bl = DP__V1__BASELINE__INIT, *blp[1] = {&bl};
    static Dp__V1__Campaign c = DP__V1__CAMPAIGN__INIT;
    m.name = "skipnet", m.family = DP__V1__MODEL_FAMILY__MODEL_FAMILY_SKIPNET;
    tr.begin = 0, tr.end = seeds;
    d.name = "fmnist", d.test_range = &tr, d.shard_size = 1;
    b.norm = DP__V1__NORM__NORM_LINF, b.n_eps = 1, b.eps = eps;
    bl.method = DP__V1__BASELINE_METHOD__BASELINE_METHOD_RANDOM;
    c.name = "bench", c.n_models = 1, c.models = mp, c.n_datasets = 1, c.datasets = dp;
    c.n_budgets = 1, c.budgets = bp, c.n_baselines = 1, c.baselines = blp;
    c.store_uri = "file:///tmp/bench";
    return &c;
}

static dp_err_t accept(dp_sched_t *s, dp_journal_t *j, uint32_t seeds)
{
    Dp__V1__JournalRecord rec = DP__V1__JOURNAL_RECORD__INIT;
    Dp__V1__CampaignAccepted a = DP__V1__CAMPAIGN_ACCEPTED__INIT;
    a.campaign_id = "bench-1", a.campaign = campaign(seeds);
    rec.body_case = DP__V1__JOURNAL_RECORD__BODY_CAMPAIGN_ACCEPTED, rec.campaign_accepted = &a;
    dp_err_t err = j ? dp_journal_append(j, &rec, NULL) : DP_OK;
    return err ? err : dp_sched_apply(s, &rec, 0);
}

/* Leases and completes up to n tasks for worker w; returns how many. */
static uint64_t run_tasks(dp_sched_t *s, dp_journal_t *j, uint64_t n)
{
    char id[DP_PLAN_ID_MAX];
    uint32_t attempt;
    uint64_t done = 0;
    while (done < n && dp_sched_pick(s, "w", 0, id, sizeof id, &attempt)) {
        Dp__V1__JournalRecord rec = DP__V1__JOURNAL_RECORD__INIT;
        Dp__V1__TaskAssigned a = DP__V1__TASK_ASSIGNED__INIT;
        a.task_id = id, a.attempt = attempt, a.worker_id = "w", a.lease_deadline_unix_ms = 3000;
        rec.body_case = DP__V1__JOURNAL_RECORD__BODY_TASK_ASSIGNED, rec.task_assigned = &a;
        if ((j && dp_journal_append(j, &rec, NULL)) || dp_sched_apply(s, &rec, 0)) break;
        Dp__V1__JournalRecord rd = DP__V1__JOURNAL_RECORD__INIT;
        Dp__V1__TaskDone d = DP__V1__TASK_DONE__INIT;
        Dp__V1__TaskResult r = DP__V1__TASK_RESULT__INIT;
        r.summary_json = "{\"n\":1}", r.seconds = 0.5;
        d.task_id = id, d.attempt = attempt, d.result = &r;
        rd.body_case = DP__V1__JOURNAL_RECORD__BODY_TASK_DONE, rd.task_done = &d;
        if ((j && dp_journal_append(j, &rd, NULL)) || dp_sched_apply(s, &rd, 0)) break;
        done++;
    }
    return done;
}

static dp_err_t replay_apply(const Dp__V1__JournalRecord *rec, void *arg)
{
    return dp_sched_apply(arg, rec, 0);
}

static void hello(dp_sched_t *s)
{
    dp_sched_hello_t h = {.worker_id = "w", .role = DP__V1__ROLE__ROLE_TRAINER, .capacity = 1};
    dp_sched_worker_hello(s, &h, 0);
}

int main(int argc, char **argv)
{
    const uint32_t seeds = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 10) : 1000000u;
    const char *dir = argc > 2 ? argv[2] : "/tmp";
    char path[4096];
    snprintf(path, sizeof path, "%s/bench_coord.%ld.journal", dir, (long)getpid());

    /* 1. memory */
    dp_sched_t *s = dp_sched_new(NULL);
    const long before = rss_kib();
    double t0 = dp_clock_s();
    if (!s || accept(s, NULL, seeds)) {
        fprintf(stderr, "bench_coord: cannot plan: %s\n", dp_err_detail());
        return 1;
    }
    const double plan_s = dp_clock_s() - t0;
    const long after = rss_kib();
    dp_sched_counts_t c;
    dp_sched_counts(s, &c);
    const uint64_t ntasks = c.by_state[DP__V1__TASK_STATE__TASK_STATE_BLOCKED] +
                            c.by_state[DP__V1__TASK_STATE__TASK_STATE_QUEUED];
    const uint64_t queued = c.by_state[DP__V1__TASK_STATE__TASK_STATE_QUEUED];
    printf("memory: %" PRIu64 " tasks (%" PRIu64 " queued) planned in %.2f s, RSS +%ld KiB: "
           "%.0f bytes per task, %.0f bytes per queued task\n",
           ntasks, queued, plan_s, after - before, (after - before) * 1024.0 / (double)ntasks,
           (after - before) * 1024.0 / (double)queued);

    /* 2. leasing without sockets */
    hello(s);
    const uint64_t nlease = queued < 200000 ? queued : 200000;
    t0 = dp_clock_s();
    const uint64_t leased = run_tasks(s, NULL, nlease);
    const double lease_s = dp_clock_s() - t0;
    printf("state machine: %" PRIu64 " tasks picked, assigned and done in %.2f s: %.0f tasks/s\n",
           leased, lease_s, (double)leased / lease_s);
    dp_sched_destroy(&s);

    /* 3. replay of a journal of `seeds` records */
    unlink(path);
    dp_journal_opts_t o;
    dp_journal_opts_init(&o);
    o.no_fsync = 1;
    dp_journal_t *j = NULL;
    s = dp_sched_new(NULL);
    if (dp_journal_open(path, &o, NULL, NULL, &j, NULL) || accept(s, j, seeds)) {
        fprintf(stderr, "bench_coord: journal %s: %s\n", path, dp_err_detail());
        return 1;
    }
    hello(s);
    const uint64_t pairs = (seeds - 1) / 2;
    const uint64_t wrote = run_tasks(s, j, pairs);
    if (dp_journal_commit(j)) {
        fprintf(stderr, "bench_coord: commit: %s\n", dp_err_detail());
        return 1;
    }
    dp_journal_stats_t st;
    dp_journal_stats(j, &st);
    dp_journal_destroy(&j);
    dp_sched_destroy(&s);
    s = dp_sched_new(NULL);
    dp_journal_replay_info_t info;
    t0 = dp_clock_s();
    dp_err_t err = dp_journal_open(path, &o, replay_apply, s, &j, &info);
    const double replay_s = dp_clock_s() - t0;
    if (err) {
        fprintf(stderr, "bench_coord: replay: %s\n", dp_err_detail());
        return 1;
    }
    dp_sched_counts(s, &c);
    printf("replay: %" PRIu64 " records (%.1f MB, %" PRIu64 " tasks done) replayed into the state "
           "in %.2f s (%s 2 s)\n",
           info.records, (double)st.bytes / 1e6, c.by_state[DP__V1__TASK_STATE__TASK_STATE_DONE],
           replay_s, replay_s <= 2.0 ? "<=" : ">");
    (void)wrote;
    dp_journal_destroy(&j);
    dp_sched_destroy(&s);
    unlink(path);
    return 0;
}
