/* The coordinator journal's figures: appends with a commit every N records
 * (group commit), with and without fdatasync, then replay of a journal of
 * 1,000,000 records (issue 12 asks <= 2 s).
 *
 *   bench_journal [DIR] [RECORDS]
 *
 * DIR holds the journal files (default $TMPDIR or /tmp; a tmpfs makes fsync
 * free, so its file system is printed). Records are what a busy coordinator
 * writes most: TaskAssigned and TaskDone (2 keys, 3 metrics, a JSON summary)
 * alternating. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "journal.h"
#include "util/clock.h"
#include "util/log.h"

#define TMPFS_MAGIC 0x01021994

static char task_id[64], worker[32], key0[96], key1[96];

static dp_err_t append_one(dp_journal_t *j, uint64_t i)
{
    snprintf(task_id, sizeof task_id, "c0001/generate/skipnet/linf-0.03/s%" PRIu64, i / 2);
    Dp__V1__JournalRecord r = DP__V1__JOURNAL_RECORD__INIT;
    r.unix_ms = 1765000000000ull + i;
    if (i % 2 == 0) {
        Dp__V1__TaskAssigned a = DP__V1__TASK_ASSIGNED__INIT;
        a.task_id = task_id;
        a.attempt = 1;
        a.worker_id = worker;
        a.lease_deadline_unix_ms = r.unix_ms + 3000;
        r.body_case = DP__V1__JOURNAL_RECORD__BODY_TASK_ASSIGNED;
        r.task_assigned = &a;
        return dp_journal_append(j, &r, NULL);
    }
    snprintf(key0, sizeof key0, "c0001/skipnet/linf-0.03/deepperform/s%" PRIu64 "/inputs", i / 2);
    snprintf(key1, sizeof key1, "c0001/skipnet/linf-0.03/deepperform/s%" PRIu64 "/flops", i / 2);
    char *keys[2] = {key0, key1};
    Dp__V1__Metric m[3] = {DP__V1__METRIC__INIT, DP__V1__METRIC__INIT, DP__V1__METRIC__INIT};
    Dp__V1__Metric *mp[3] = {&m[0], &m[1], &m[2]};
    m[0].name = "inputs";
    m[0].value = 250;
    m[1].name = "mean_exec_fraction";
    m[1].value = 0.93;
    m[2].name = "idpb";
    m[2].value = 41;
    Dp__V1__TaskResult res = DP__V1__TASK_RESULT__INIT;
    res.artifact_keys = keys;
    res.n_artifact_keys = 2;
    res.summary = mp;
    res.n_summary = 3;
    res.summary_json = "{\"inputs\":250,\"idpb\":41}";
    res.seconds = 12.5;
    Dp__V1__TaskDone d = DP__V1__TASK_DONE__INIT;
    d.task_id = task_id;
    d.attempt = 1;
    d.result = &res;
    r.body_case = DP__V1__JOURNAL_RECORD__BODY_TASK_DONE;
    r.task_done = &d;
    return dp_journal_append(j, &r, NULL);
}

static int check(dp_err_t err, const char *what)
{
    if (!err) return 0;
    fprintf(stderr, "bench_journal: %s: %s: %s\n", what, dp_strerror(err), dp_err_detail());
    return 1;
}

/* Appends `records` records, committing every `group`; prints one line. */
static int run_commits(const char *path, int fsync_on, uint64_t group, uint64_t records)
{
    dp_journal_opts_t o;
    dp_journal_opts_init(&o);
    o.no_fsync = !fsync_on;
    unlink(path);
    dp_journal_t *j = NULL;
    if (check(dp_journal_open(path, &o, NULL, NULL, &j, NULL), "open")) return 1;
    uint64_t t0 = dp_clock_ns();
    for (uint64_t i = 0; i < records; i++) {
        if (check(append_one(j, i), "append")) goto fail;
        if ((i + 1) % group == 0 && check(dp_journal_commit(j), "commit")) goto fail;
    }
    if (check(dp_journal_commit(j), "commit")) goto fail;
    double s = (double)(dp_clock_ns() - t0) * 1e-9;
    dp_journal_stats_t st;
    dp_journal_stats(j, &st);
    printf("  %-8s commit every %5" PRIu64 ": %9" PRIu64 " records in %6.3f s = %10.0f records/s, "
           "%8.0f commits/s, mean commit %8.1f us, max %8.1f us, %.1f B/record\n",
           fsync_on ? "fsync" : "no fsync", group, records, s, (double)records / s,
           (double)st.commits / s, (double)st.total_commit_ns / (double)st.commits * 1e-3,
           (double)st.max_commit_ns * 1e-3,
           (double)(st.bytes - DP_JOURNAL_HEADER_SIZE) / (double)records);
    dp_journal_destroy(&j);
    unlink(path);
    return 0;
fail:
    dp_journal_destroy(&j);
    return 1;
}

static dp_err_t count(const Dp__V1__JournalRecord *r, void *arg)
{
    uint64_t *n = arg;
    *n += r->body_case;
    return DP_OK;
}

int main(int argc, char **argv)
{
    const char *t = getenv("TMPDIR");
    const char *dir = argc > 1 ? argv[1] : (t && *t ? t : "/tmp");
    uint64_t replay_n = argc > 2 ? strtoull(argv[2], NULL, 10) : 1000000;
    char path[4096];
    snprintf(path, sizeof path, "%s/bench_journal.%d", dir, (int)getpid());
    struct statfs fs;
    if (statfs(dir, &fs) != 0) {
        perror(dir);
        return 1;
    }
    printf("bench_journal: %s (file system 0x%lx%s)\n", dir, (unsigned long)fs.f_type,
           fs.f_type == TMPFS_MAGIC ? ", tmpfs: fsync is free" : "");
    snprintf(worker, sizeof worker, "trainer-%02d", 7);
    dp_log_set_level(DP_LOG_WARN);

    printf("append + group commit:\n");
    const uint64_t groups[] = {1, 10, 100, 1000};
    for (size_t g = 0; g < sizeof groups / sizeof *groups; g++) {
        uint64_t n = groups[g] == 1 ? 1000 : groups[g] == 10 ? 10000 : 200000;
        if (run_commits(path, 1, groups[g], n)) return 1;
    }
    for (size_t g = 0; g < sizeof groups / sizeof *groups; g++)
        if (run_commits(path, 0, groups[g], groups[g] == 1 ? 200000 : 1000000)) return 1;

    /* replay */
    dp_journal_opts_t o;
    dp_journal_opts_init(&o);
    o.no_fsync = 1;
    unlink(path);
    dp_journal_t *j = NULL;
    if (check(dp_journal_open(path, &o, NULL, NULL, &j, NULL), "open")) return 1;
    for (uint64_t i = 0; i < replay_n; i++) {
        if (check(append_one(j, i), "append")) return 1;
        if ((i + 1) % 4096 == 0 && check(dp_journal_commit(j), "commit")) return 1;
    }
    if (check(dp_journal_commit(j), "commit")) return 1;
    dp_journal_stats_t st;
    dp_journal_stats(j, &st);
    dp_journal_destroy(&j);
    for (int rep = 0; rep < 3; rep++) {
        uint64_t sum = 0;
        dp_journal_replay_info_t info;
        uint64_t t0 = dp_clock_ns();
        if (check(dp_journal_open(path, NULL, count, &sum, &j, &info), "replay")) return 1;
        double s = (double)(dp_clock_ns() - t0) * 1e-9;
        dp_journal_destroy(&j);
        printf("replay %d: %" PRIu64
               " records (%.1f MB) in %.3f s = %.2f M records/s, %.0f MB/s%s\n",
               rep + 1, info.records, (double)st.bytes / 1e6, s, (double)info.records / s * 1e-6,
               (double)st.bytes / 1e6 / s, rep == 0 ? " (page cache warm from the writes)" : "");
    }
    unlink(path);
    return 0;
}
