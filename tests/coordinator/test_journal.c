/* coordinator/journal: round trip, group commit, torn tails at every byte,
 * corruption in the middle, length claims, compaction, locking, a failed
 * write that sticks, and a record that survives kill -9 of its writer. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crc32c.h"
#include "journal.h"
#include "util/log.h"

/* ---- files ---- */

static char dir[256], path[300];

static void quiet(dp_log_level_t level, const char *component, const char *line, void *arg) {}

static void setup(void)
{
    const char *t = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/dpj.XXXXXX", t && *t ? t : "/tmp");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/journal", dir);
    dp_log_set_sink(quiet, NULL);
}

static void teardown(void)
{
    char p[320];
    unlink(path);
    snprintf(p, sizeof p, "%s.tmp", path);
    unlink(p);
    rmdir(dir);
}

static uint8_t *slurp(size_t *n)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)len + 1);
    cr_assert_eq(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static void spit(const uint8_t *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(b, 1, n, f), n);
    fclose(f);
}

static size_t file_size(void)
{
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0);
    return (size_t)sb.st_size;
}

/* ---- a small coordinator state, rebuilt from records ---- */

#define MAXT 16
struct task_st {
    char id[32];
    int state;
    uint32_t attempt;
    char worker[32];
    char reason[64];
    char artifact[64];
};
struct model {
    char campaign[32];
    int cancelled;
    int ntasks;
    struct task_st t[MAXT];
    uint64_t records, last_lsn;
};

static struct task_st *find(struct model *m, const char *id)
{
    for (int i = 0; i < m->ntasks; i++)
        if (!strcmp(m->t[i].id, id)) return &m->t[i];
    return NULL;
}

static dp_err_t apply(const Dp__V1__JournalRecord *r, void *arg)
{
    struct model *m = arg;
    struct task_st *t;
    m->records++;
    m->last_lsn = r->lsn;
    switch (r->body_case) {
    case DP__V1__JOURNAL_RECORD__BODY_CAMPAIGN_ACCEPTED:
        snprintf(m->campaign, sizeof m->campaign, "%s", r->campaign_accepted->campaign_id);
        for (size_t i = 0; i < r->campaign_accepted->n_tasks && m->ntasks < MAXT; i++) {
            t = &m->t[m->ntasks++];
            snprintf(t->id, sizeof t->id, "%s", r->campaign_accepted->tasks[i]->id);
            t->state = DP__V1__TASK_STATE__TASK_STATE_QUEUED;
        }
        break;
    case DP__V1__JOURNAL_RECORD__BODY_TASK_ASSIGNED:
        if (!(t = find(m, r->task_assigned->task_id)))
            return dp_err_set(DP_ERR_NOTFOUND, "no task %s", r->task_assigned->task_id);
        t->state = DP__V1__TASK_STATE__TASK_STATE_LEASED;
        t->attempt = r->task_assigned->attempt;
        snprintf(t->worker, sizeof t->worker, "%s", r->task_assigned->worker_id);
        break;
    case DP__V1__JOURNAL_RECORD__BODY_TASK_DONE:
        if (!(t = find(m, r->task_done->task_id))) return DP_ERR_NOTFOUND;
        t->state = DP__V1__TASK_STATE__TASK_STATE_DONE;
        if (r->task_done->result && r->task_done->result->n_artifact_keys)
            snprintf(t->artifact, sizeof t->artifact, "%s", r->task_done->result->artifact_keys[0]);
        break;
    case DP__V1__JOURNAL_RECORD__BODY_TASK_FAILED:
        if (!(t = find(m, r->task_failed->task_id))) return DP_ERR_NOTFOUND;
        t->state = r->task_failed->final ? DP__V1__TASK_STATE__TASK_STATE_FAILED
                                         : DP__V1__TASK_STATE__TASK_STATE_QUEUED;
        snprintf(t->reason, sizeof t->reason, "%s", r->task_failed->reason);
        break;
    case DP__V1__JOURNAL_RECORD__BODY_CAMPAIGN_CANCELLED:
        m->cancelled = 1;
        break;
    case DP__V1__JOURNAL_RECORD__BODY_SNAPSHOT: {
        const Dp__V1__Snapshot *s = r->snapshot;
        for (size_t i = 0; i < s->n_campaigns; i++) {
            snprintf(m->campaign, sizeof m->campaign, "%s", s->campaigns[i]->campaign_id);
            m->cancelled =
                s->campaigns[i]->state == DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_CANCELLED;
        }
        for (size_t i = 0; i < s->n_tasks && m->ntasks < MAXT; i++) {
            const Dp__V1__TaskSnapshot *ts = s->tasks[i];
            t = &m->t[m->ntasks++];
            snprintf(t->id, sizeof t->id, "%s", ts->task->id);
            t->state = ts->state;
            t->attempt = ts->task->attempt;
            snprintf(t->worker, sizeof t->worker, "%s", ts->worker_id);
            snprintf(t->reason, sizeof t->reason, "%s", ts->reason);
            if (ts->result && ts->result->n_artifact_keys)
                snprintf(t->artifact, sizeof t->artifact, "%s", ts->result->artifact_keys[0]);
        }
        break;
    }
    default:
        return dp_err_set(DP_ERR_FORMAT, "unknown record");
    }
    return DP_OK;
}

/* Record builders: every record is appended from stack messages. */
static dp_err_t add_accepted(dp_journal_t *j, const char *campaign, int ntasks)
{
    Dp__V1__Task tasks[MAXT], *tp[MAXT];
    char ids[MAXT][32];
    for (int i = 0; i < ntasks; i++) {
        dp__v1__task__init(&tasks[i]);
        snprintf(ids[i], sizeof ids[i], "%s/t%d", campaign, i);
        tasks[i].id = ids[i];
        tasks[i].campaign = (char *)campaign;
        tasks[i].kind = DP__V1__TASK_KIND__TASK_KIND_GENERATE;
        tasks[i].shard_index = (uint32_t)i;
        tp[i] = &tasks[i];
    }
    Dp__V1__Campaign c = DP__V1__CAMPAIGN__INIT;
    c.name = "nightly";
    Dp__V1__CampaignAccepted a = DP__V1__CAMPAIGN_ACCEPTED__INIT;
    a.campaign_id = (char *)campaign;
    a.campaign = &c;
    a.tasks = tp;
    a.n_tasks = (size_t)ntasks;
    a.tasks_total = (uint32_t)ntasks;
    Dp__V1__JournalRecord r = DP__V1__JOURNAL_RECORD__INIT;
    r.body_case = DP__V1__JOURNAL_RECORD__BODY_CAMPAIGN_ACCEPTED;
    r.campaign_accepted = &a;
    return dp_journal_append(j, &r, NULL);
}

static dp_err_t add_assigned(dp_journal_t *j, const char *task, uint32_t attempt,
                             const char *worker)
{
    Dp__V1__TaskAssigned a = DP__V1__TASK_ASSIGNED__INIT;
    a.task_id = (char *)task;
    a.attempt = attempt;
    a.worker_id = (char *)worker;
    a.lease_deadline_unix_ms = 1700000000000ull;
    Dp__V1__JournalRecord r = DP__V1__JOURNAL_RECORD__INIT;
    r.body_case = DP__V1__JOURNAL_RECORD__BODY_TASK_ASSIGNED;
    r.task_assigned = &a;
    return dp_journal_append(j, &r, NULL);
}

static dp_err_t add_done(dp_journal_t *j, const char *task, uint32_t attempt, const char *key)
{
    char *keys[1] = {(char *)key};
    Dp__V1__Metric m = DP__V1__METRIC__INIT, *mp = &m;
    m.name = "seconds";
    m.value = 1.5;
    Dp__V1__TaskResult res = DP__V1__TASK_RESULT__INIT;
    res.artifact_keys = keys;
    res.n_artifact_keys = 1;
    res.summary = &mp;
    res.n_summary = 1;
    res.summary_json = "{\"ok\":true}";
    Dp__V1__TaskDone d = DP__V1__TASK_DONE__INIT;
    d.task_id = (char *)task;
    d.attempt = attempt;
    d.result = &res;
    Dp__V1__JournalRecord r = DP__V1__JOURNAL_RECORD__INIT;
    r.body_case = DP__V1__JOURNAL_RECORD__BODY_TASK_DONE;
    r.task_done = &d;
    return dp_journal_append(j, &r, NULL);
}

static dp_err_t add_failed(dp_journal_t *j, const char *task, uint32_t attempt, const char *why,
                           int final)
{
    Dp__V1__TaskFailed f = DP__V1__TASK_FAILED__INIT;
    f.task_id = (char *)task;
    f.attempt = attempt;
    f.reason = (char *)why;
    f.final = final;
    Dp__V1__JournalRecord r = DP__V1__JOURNAL_RECORD__INIT;
    r.body_case = DP__V1__JOURNAL_RECORD__BODY_TASK_FAILED;
    r.task_failed = &f;
    return dp_journal_append(j, &r, NULL);
}

static dp_journal_opts_t fast_opts(void)
{
    dp_journal_opts_t o;
    dp_journal_opts_init(&o);
    o.no_fsync = 1;
    return o;
}

/* Three records; the offsets where the second and third begin. */
static void three_records(size_t *second, size_t *third)
{
    dp_journal_opts_t o = fast_opts();
    dp_journal_t *j = NULL;
    cr_assert_eq(dp_journal_open(path, &o, NULL, NULL, &j, NULL), DP_OK);
    cr_assert_eq(add_accepted(j, "c1", 3), DP_OK);
    cr_assert_eq(dp_journal_commit(j), DP_OK);
    dp_journal_stats_t st;
    dp_journal_stats(j, &st);
    *second = st.bytes;
    cr_assert_eq(add_assigned(j, "c1/t0", 1, "w1"), DP_OK);
    cr_assert_eq(dp_journal_commit(j), DP_OK);
    dp_journal_stats(j, &st);
    *third = st.bytes;
    cr_assert_eq(add_done(j, "c1/t0", 1, "c1/m/linf-0.03/s0/inputs.bin"), DP_OK);
    cr_assert_eq(dp_journal_commit(j), DP_OK);
    dp_journal_destroy(&j);
}

TestSuite(journal, .init = setup, .fini = teardown);

Test(crc32c, check_value_and_paths_agree)
{
    cr_assert_eq(dp_crc32c(0, "123456789", 9), 0xe3069283u);
    cr_assert_eq(dp_crc32c_portable(0, "123456789", 9), 0xe3069283u);
    cr_assert_eq(dp_crc32c(0, "", 0), 0);
    uint8_t zeros[32] = {0};
    cr_assert_eq(dp_crc32c(0, zeros, 32), 0x8a9136aau); /* RFC 3720 B.4 */
    uint8_t b[1031];
    for (size_t i = 0; i < sizeof b; i++) b[i] = (uint8_t)(i * 131 + 7);
    for (size_t at = 0; at < 9; at++)
        for (size_t n = 0; n + at <= sizeof b; n += 1 + n / 3) {
            uint32_t c = dp_crc32c(0, b + at, n);
            cr_assert_eq(c, dp_crc32c_portable(0, b + at, n), "at %zu n %zu", at, n);
            cr_assert_eq(dp_crc32c(dp_crc32c(0, b + at, n / 2), b + at + n / 2, n - n / 2), c);
        }
}

Test(journal, round_trip_and_group_commit)
{
    dp_journal_t *j = NULL;
    dp_journal_replay_info_t info;
    cr_assert_eq(dp_journal_open(path, NULL, NULL, NULL, &j, &info), DP_OK, "%s", dp_err_detail());
    cr_assert(info.created);
    cr_assert_eq(info.records, 0);
    cr_assert_eq(file_size(), DP_JOURNAL_HEADER_SIZE);

    cr_assert_eq(add_accepted(j, "c1", 10), DP_OK);
    for (int i = 0; i < 10; i++) {
        char id[32];
        snprintf(id, sizeof id, "c1/t%d", i);
        cr_assert_eq(add_assigned(j, id, 1, "w1"), DP_OK);
    }
    dp_journal_stats_t st;
    dp_journal_stats(j, &st);
    cr_assert_eq(st.pending, 11);
    cr_assert_eq(st.last_lsn, 11);
    cr_assert_eq(st.committed_lsn, 0);
    cr_assert_eq(file_size(), DP_JOURNAL_HEADER_SIZE, "appends alone write nothing");
    cr_assert_eq(dp_journal_commit(j), DP_OK);
    dp_journal_stats(j, &st);
    cr_assert_eq(st.syncs, 1, "one commit, one sync for 11 records");
    cr_assert_eq(st.commits, 1);
    cr_assert_eq(st.records, 11);
    cr_assert_eq(st.committed_lsn, 11);
    cr_assert_eq(st.pending, 0);
    cr_assert_eq(st.bytes, file_size());
    cr_assert_gt(st.last_commit_ns, 0);

    /* an empty commit syncs nothing */
    cr_assert_eq(dp_journal_commit(j), DP_OK);
    dp_journal_stats(j, &st);
    cr_assert_eq(st.syncs, 1);

    for (int i = 0; i < 5; i++) {
        char id[32];
        snprintf(id, sizeof id, "c1/t%d", i);
        cr_assert_eq(add_done(j, id, 1, "key"), DP_OK);
    }
    cr_assert_eq(add_failed(j, "c1/t5", 1, "out of memory", 0), DP_OK);
    cr_assert_eq(add_failed(j, "c1/t6", 1, "bad spec", 1), DP_OK);
    cr_assert_eq(dp_journal_commit(j), DP_OK);
    /* uncommitted appends are gone after destroy */
    cr_assert_eq(add_done(j, "c1/t9", 1, "lost"), DP_OK);
    dp_journal_destroy(&j);
    cr_assert_null(j);

    struct model m = {0};
    cr_assert_eq(dp_journal_open(path, NULL, apply, &m, &j, &info), DP_OK, "%s", dp_err_detail());
    cr_assert_not(info.created);
    cr_assert_eq(info.records, 18);
    cr_assert_eq(info.first_lsn, 1);
    cr_assert_eq(info.last_lsn, 18);
    cr_assert_eq(info.dropped_bytes, 0);
    cr_assert_null(info.dropped_why);
    cr_assert_eq(m.records, 18);
    cr_assert_str_eq(m.campaign, "c1");
    cr_assert_eq(m.ntasks, 10);
    cr_assert_eq(m.t[0].state, DP__V1__TASK_STATE__TASK_STATE_DONE);
    cr_assert_str_eq(m.t[0].artifact, "key");
    cr_assert_eq(m.t[5].state, DP__V1__TASK_STATE__TASK_STATE_QUEUED);
    cr_assert_str_eq(m.t[5].reason, "out of memory");
    cr_assert_eq(m.t[6].state, DP__V1__TASK_STATE__TASK_STATE_FAILED);
    cr_assert_eq(m.t[9].state, DP__V1__TASK_STATE__TASK_STATE_LEASED,
                 "t9's done was never "
                 "committed");
    /* lsns continue after a reopen */
    uint64_t lsn = 0;
    Dp__V1__CampaignCancelled cc = DP__V1__CAMPAIGN_CANCELLED__INIT;
    cc.campaign_id = "c1";
    Dp__V1__JournalRecord r = DP__V1__JOURNAL_RECORD__INIT;
    r.body_case = DP__V1__JOURNAL_RECORD__BODY_CAMPAIGN_CANCELLED;
    r.campaign_cancelled = &cc;
    cr_assert_eq(dp_journal_append(j, &r, &lsn), DP_OK);
    cr_assert_eq(lsn, 19);
    cr_assert_eq(r.lsn, 19);
    dp_journal_destroy(&j);
}

/* The file cut at every byte inside the last record: the first two records
 * stay, the rest is truncated away, and the journal appends after them. */
Test(journal, torn_tail_at_every_offset)
{
    size_t second, third, n;
    three_records(&second, &third);
    uint8_t *full = slurp(&n);
    dp_journal_opts_t o = fast_opts();
    for (size_t cut = third; cut < n; cut++) {
        spit(full, cut);
        struct model m = {0};
        dp_journal_t *j = NULL;
        dp_journal_replay_info_t info;
        cr_assert_eq(dp_journal_open(path, &o, apply, &m, &j, &info), DP_OK, "cut %zu: %s", cut,
                     dp_err_detail());
        cr_assert_eq(info.records, 2, "cut %zu", cut);
        cr_assert_eq(info.valid_bytes, third);
        cr_assert_eq(info.dropped_bytes, cut - third, "cut %zu", cut);
        if (cut > third) cr_assert_not_null(info.dropped_why);
        if (cut > third && cut < third + DP_JOURNAL_FRAME_SIZE)
            cr_assert_str_eq(info.dropped_why, "short frame header");
        if (cut >= third + DP_JOURNAL_FRAME_SIZE)
            cr_assert_str_eq(info.dropped_why, "short payload");
        cr_assert_eq(file_size(), third, "cut %zu: the tail is truncated", cut);
        cr_assert_eq(m.t[0].state, DP__V1__TASK_STATE__TASK_STATE_LEASED);
        /* appends continue where the good records end */
        uint64_t lsn;
        cr_assert_eq(add_done(j, "c1/t0", 1, "again"), DP_OK);
        cr_assert_eq(dp_journal_commit(j), DP_OK);
        dp_journal_stats_t st;
        dp_journal_stats(j, &st);
        lsn = st.committed_lsn;
        cr_assert_eq(lsn, 3);
        dp_journal_destroy(&j);
        memset(&m, 0, sizeof m);
        cr_assert_eq(dp_journal_open(path, &o, apply, &m, &j, &info), DP_OK);
        cr_assert_eq(info.records, 3);
        cr_assert_eq(info.dropped_bytes, 0);
        cr_assert_str_eq(m.t[0].artifact, "again");
        dp_journal_destroy(&j);
    }
    /* a zero-filled tail (blocks allocated, data never written) is no frame */
    uint8_t *z = calloc(1, n + 4096);
    memcpy(z, full, n);
    spit(z, n + 4096);
    dp_journal_t *j = NULL;
    dp_journal_replay_info_t info;
    cr_assert_eq(dp_journal_open(path, &o, NULL, NULL, &j, &info), DP_OK);
    cr_assert_eq(info.records, 3);
    cr_assert_eq(info.dropped_bytes, 4096);
    cr_assert_str_eq(info.dropped_why, "bad length");
    dp_journal_destroy(&j);
    free(z);
    free(full);
}

Test(journal, crc_flip_in_last_record_dropped)
{
    size_t second, third, n;
    three_records(&second, &third);
    uint8_t *b = slurp(&n);
    for (size_t at = third + 4; at < n; at++) { /* the CRC field and every payload byte */
        b[at] ^= 0x20;
        spit(b, n);
        dp_journal_t *j = NULL;
        dp_journal_replay_info_t info;
        dp_journal_opts_t o = fast_opts();
        cr_assert_eq(dp_journal_open(path, &o, NULL, NULL, &j, &info), DP_OK, "at %zu: %s", at,
                     dp_err_detail());
        cr_assert_eq(info.records, 2);
        cr_assert_str_eq(info.dropped_why, "CRC mismatch");
        cr_assert_eq(file_size(), third);
        dp_journal_destroy(&j);
        b[at] ^= 0x20;
    }
    free(b);
}

Test(journal, crc_flip_in_middle_refused_with_offset)
{
    size_t second, third, n;
    three_records(&second, &third);
    uint8_t *b = slurp(&n);
    b[second + 10] ^= 0x01;
    spit(b, n);
    dp_journal_t *j = NULL;
    dp_journal_opts_t o = fast_opts();
    cr_assert_eq(dp_journal_open(path, &o, NULL, NULL, &j, NULL), DP_ERR_FORMAT);
    cr_assert_null(j);
    char want[64];
    snprintf(want, sizeof want, "corrupt at offset %zu (CRC mismatch)", second);
    cr_assert(strstr(dp_err_detail(), want), "%s", dp_err_detail());
    snprintf(want, sizeof want, "valid record follows at offset %zu", third);
    cr_assert(strstr(dp_err_detail(), want), "%s", dp_err_detail());
    cr_assert_eq(file_size(), n, "a refused journal is left as it was");

    /* the operator's repair cuts there */
    o.repair = 1;
    dp_journal_replay_info_t info;
    cr_assert_eq(dp_journal_open(path, &o, NULL, NULL, &j, &info), DP_OK);
    cr_assert_eq(info.records, 1);
    cr_assert_eq(file_size(), second);
    dp_journal_destroy(&j);
    free(b);
}

Test(journal, huge_length_claim_refused)
{
    size_t second, third, n;
    three_records(&second, &third);
    uint8_t *b = slurp(&n);
    dp_journal_opts_t o = fast_opts();
    o.max_record = DP_JOURNAL_MAX_RECORD_HARD;
    const uint32_t claims[] = {0xffffffffu, DP_JOURNAL_MAX_RECORD_HARD, 0x7fffffffu};
    for (size_t k = 0; k < sizeof claims / sizeof *claims; k++) {
        uint8_t save[4];
        /* at the tail: a torn frame, dropped */
        memcpy(save, b + third, 4);
        memcpy(b + third, &claims[k], 4); /* little-endian host */
        spit(b, n);
        dp_journal_t *j = NULL;
        dp_journal_replay_info_t info;
        cr_assert_eq(dp_journal_open(path, &o, NULL, NULL, &j, &info), DP_OK, "%s",
                     dp_err_detail());
        cr_assert_eq(info.records, 2);
        cr_assert_eq(info.valid_bytes, third);
        dp_journal_destroy(&j);
        memcpy(b + third, save, 4);
        /* in the middle: refused with the offset */
        memcpy(save, b + second, 4);
        memcpy(b + second, &claims[k], 4);
        spit(b, n);
        cr_assert_eq(dp_journal_open(path, &o, NULL, NULL, &j, &info), DP_ERR_FORMAT);
        char want[48];
        snprintf(want, sizeof want, "offset %zu", second);
        cr_assert(strstr(dp_err_detail(), want), "%s", dp_err_detail());
        memcpy(b + second, save, 4);
    }
    free(b);

    /* appends above the limit are refused and take no lsn */
    dp_journal_t *j = NULL;
    o.max_record = 64;
    unlink(path);
    cr_assert_eq(dp_journal_open(path, &o, NULL, NULL, &j, NULL), DP_OK);
    cr_assert_eq(add_accepted(j, "a-campaign-with-tasks", 8), DP_ERR_RANGE);
    cr_assert_eq(add_assigned(j, "t", 1, "w"), DP_OK);
    dp_journal_stats_t st;
    dp_journal_stats(j, &st);
    cr_assert_eq(st.last_lsn, 1);
    dp_journal_destroy(&j);
    o.max_record = DP_JOURNAL_MAX_RECORD_HARD + 1u;
    cr_assert_eq(dp_journal_open(path, &o, NULL, NULL, &j, NULL), DP_ERR_INVALID);
}

/* Hand-made frames: a payload that passes its CRC but is no record, and lsns
 * that do not increase, are corruption wherever they are. */
static void put_frame(uint8_t **b, size_t *n, const uint8_t *payload, uint32_t len)
{
    *b = realloc(*b, *n + 8 + len);
    uint32_t crc = dp_journal_frame_crc(payload, len);
    memcpy(*b + *n, &len, 4);
    memcpy(*b + *n + 4, &crc, 4);
    memcpy(*b + *n + 8, payload, len);
    *n += 8 + len;
}

static void put_record(uint8_t **b, size_t *n, uint64_t lsn)
{
    Dp__V1__JournalRecord r = DP__V1__JOURNAL_RECORD__INIT;
    r.lsn = lsn;
    uint8_t p[64];
    size_t len = dp__v1__journal_record__pack(&r, p);
    put_frame(b, n, p, (uint32_t)len);
}

Test(journal, bad_payloads_and_lsns)
{
    uint8_t *b = malloc(DP_JOURNAL_HEADER_SIZE);
    size_t n = DP_JOURNAL_HEADER_SIZE;
    dp_journal_header(b);
    put_record(&b, &n, 1);
    put_record(&b, &n, 2);
    dp_journal_replay_info_t info;
    cr_assert_eq(dp_journal_scan(b, n, NULL, NULL, NULL, &info), DP_OK);
    cr_assert_eq(info.records, 2);
    size_t good = n;
    put_record(&b, &n, 2);
    cr_assert_eq(dp_journal_scan(b, n, NULL, NULL, NULL, &info), DP_ERR_FORMAT);
    cr_assert(strstr(dp_err_detail(), "lsn 2 after 2"), "%s", dp_err_detail());
    n = good;
    const uint8_t junk[] = {0xff, 0xff, 0xff};
    put_frame(&b, &n, junk, sizeof junk);
    cr_assert_eq(dp_journal_scan(b, n, NULL, NULL, NULL, &info), DP_ERR_FORMAT);
    cr_assert(strstr(dp_err_detail(), "no JournalRecord"), "%s", dp_err_detail());

    /* not a journal, another version, a short file */
    uint8_t h[DP_JOURNAL_HEADER_SIZE];
    dp_journal_header(h);
    h[0] = 'X';
    cr_assert_eq(dp_journal_scan(h, sizeof h, NULL, NULL, NULL, NULL), DP_ERR_FORMAT);
    dp_journal_header(h);
    h[8] = 2;
    cr_assert_eq(dp_journal_scan(h, sizeof h, NULL, NULL, NULL, NULL), DP_ERR_UNSUPPORTED);
    cr_assert_eq(dp_journal_scan(h, 5, NULL, NULL, NULL, NULL), DP_ERR_TRUNCATED);
    free(b);
}

Test(journal, short_or_foreign_files)
{
    dp_journal_opts_t o = fast_opts();
    dp_journal_t *j = NULL;
    dp_journal_replay_info_t info;
    /* a crash while creating: a prefix of the header becomes a new journal */
    uint8_t h[DP_JOURNAL_HEADER_SIZE];
    dp_journal_header(h);
    spit(h, 7);
    cr_assert_eq(dp_journal_open(path, &o, NULL, NULL, &j, &info), DP_OK, "%s", dp_err_detail());
    cr_assert(info.created);
    cr_assert_eq(file_size(), DP_JOURNAL_HEADER_SIZE);
    dp_journal_destroy(&j);
    /* anything else is left alone */
    spit((const uint8_t *)"hello", 5);
    cr_assert_eq(dp_journal_open(path, &o, NULL, NULL, &j, NULL), DP_ERR_FORMAT);
    spit((const uint8_t *)"hello, this is not a journal", 28);
    cr_assert_eq(dp_journal_open(path, &o, NULL, NULL, &j, NULL), DP_ERR_FORMAT);
    cr_assert_eq(file_size(), 28);
}

Test(journal, second_opener_refused)
{
    dp_journal_t *a = NULL, *b = NULL;
    cr_assert_eq(dp_journal_open(path, NULL, NULL, NULL, &a, NULL), DP_OK);
    cr_assert_eq(dp_journal_open(path, NULL, NULL, NULL, &b, NULL), DP_ERR_EXISTS);
    cr_assert(strstr(dp_err_detail(), "in use"), "%s", dp_err_detail());
    dp_journal_destroy(&a);
    cr_assert_eq(dp_journal_open(path, NULL, NULL, NULL, &b, NULL), DP_OK);
    dp_journal_destroy(&b);
}

Test(journal, callback_error_stops_open)
{
    dp_journal_t *j = NULL;
    size_t second, third;
    three_records(&second, &third);
    /* apply() refuses an assignment of a task it does not know */
    struct model m = {0};
    cr_assert_eq(dp_journal_open(path, NULL, apply, &m, &j, NULL), DP_OK);
    cr_assert_eq(add_assigned(j, "nope", 1, "w"), DP_OK);
    cr_assert_eq(dp_journal_commit(j), DP_OK);
    dp_journal_destroy(&j);
    memset(&m, 0, sizeof m);
    cr_assert_eq(dp_journal_open(path, NULL, apply, &m, &j, NULL), DP_ERR_NOTFOUND);
    cr_assert(strstr(dp_err_detail(), "lsn 4"), "%s", dp_err_detail());
    cr_assert(strstr(dp_err_detail(), "no task nope"), "%s", dp_err_detail());
    cr_assert_null(j);
}

/* Snapshot of the model as compaction records: tasks split over parts. */
static void write_snapshot(dp_journal_t *j, struct model *m, int parts)
{
    Dp__V1__Campaign camp = DP__V1__CAMPAIGN__INIT;
    Dp__V1__CampaignSnapshot cs = DP__V1__CAMPAIGN_SNAPSHOT__INIT, *csp = &cs;
    cs.campaign_id = m->campaign;
    cs.campaign = &camp;
    cs.state = m->cancelled ? DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_CANCELLED
                            : DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_RUNNING;
    Dp__V1__Task tasks[MAXT];
    Dp__V1__TaskResult res[MAXT];
    Dp__V1__TaskSnapshot ts[MAXT], *tsp[MAXT];
    char *keys[MAXT];
    for (int i = 0; i < m->ntasks; i++) {
        dp__v1__task__init(&tasks[i]);
        tasks[i].id = m->t[i].id;
        tasks[i].attempt = m->t[i].attempt;
        dp__v1__task_snapshot__init(&ts[i]);
        ts[i].task = &tasks[i];
        ts[i].state = m->t[i].state;
        ts[i].worker_id = m->t[i].worker;
        ts[i].reason = m->t[i].reason;
        if (m->t[i].artifact[0]) {
            dp__v1__task_result__init(&res[i]);
            keys[i] = m->t[i].artifact;
            res[i].artifact_keys = &keys[i];
            res[i].n_artifact_keys = 1;
            ts[i].result = &res[i];
        }
        tsp[i] = &ts[i];
    }
    int per = (m->ntasks + parts - 1) / parts;
    for (int p = 0; p < parts; p++) {
        Dp__V1__Snapshot s = DP__V1__SNAPSHOT__INIT;
        s.part = (uint32_t)p + 1;
        s.parts = (uint32_t)parts;
        s.covers_lsn = m->last_lsn;
        if (p == 0) {
            s.campaigns = &csp;
            s.n_campaigns = 1;
        }
        int lo = p * per, hi = lo + per > m->ntasks ? m->ntasks : lo + per;
        s.tasks = tsp + lo;
        s.n_tasks = hi > lo ? (size_t)(hi - lo) : 0;
        Dp__V1__JournalRecord r = DP__V1__JOURNAL_RECORD__INIT;
        r.body_case = DP__V1__JOURNAL_RECORD__BODY_SNAPSHOT;
        r.snapshot = &s;
        cr_assert_eq(dp_journal_compact_add(j, &r, NULL), DP_OK, "%s", dp_err_detail());
    }
}

static void assert_same_tasks(const struct model *a, const struct model *b)
{
    cr_assert_str_eq(a->campaign, b->campaign);
    cr_assert_eq(a->cancelled, b->cancelled);
    cr_assert_eq(a->ntasks, b->ntasks);
    cr_assert_eq(memcmp(a->t, b->t, sizeof a->t), 0, "task states differ");
}

Test(journal, compaction_keeps_state_and_appends_after)
{
    dp_journal_t *j = NULL;
    struct model live = {0};
    cr_assert_eq(dp_journal_open(path, NULL, NULL, NULL, &j, NULL), DP_OK);
    cr_assert_eq(add_accepted(j, "c7", 12), DP_OK);
    for (int round = 1; round <= 3; round++)
        for (int i = 0; i < 12; i++) {
            char id[32];
            snprintf(id, sizeof id, "c7/t%d", i);
            cr_assert_eq(add_assigned(j, id, (uint32_t)round, "w2"), DP_OK);
            if (round < 3)
                cr_assert_eq(add_failed(j, id, (uint32_t)round, "flaky", 0), DP_OK);
            else if (i % 4 == 3)
                cr_assert_eq(add_failed(j, id, 3, "gave up", 1), DP_OK);
            else if (i % 2)
                cr_assert_eq(add_done(j, id, 3, "k"), DP_OK);
        }
    cr_assert_eq(dp_journal_commit(j), DP_OK);
    dp_journal_destroy(&j);
    size_t before = file_size();
    cr_assert_eq(dp_journal_open(path, NULL, apply, &live, &j, NULL), DP_OK);

    cr_assert_eq(dp_journal_compact_begin(j), DP_OK);
    cr_assert_eq(add_assigned(j, "c7/t0", 4, "w3"), DP_ERR_INVALID, "no appends while compacting");
    cr_assert_eq(dp_journal_commit(j), DP_ERR_INVALID);
    write_snapshot(j, &live, 3);
    cr_assert_eq(dp_journal_compact_finish(j), DP_OK, "%s", dp_err_detail());
    dp_journal_stats_t st;
    dp_journal_stats(j, &st);
    cr_assert_eq(st.records, 3);
    cr_assert_eq(st.compactions, 1);
    cr_assert_eq(st.bytes, file_size());
    cr_assert_lt(file_size(), before);
    char tmp[320];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    cr_assert_eq(access(tmp, F_OK), -1);

    /* the compacted journal takes appends, and a replay gives the same state */
    cr_assert_eq(add_assigned(j, "c7/t0", 4, "w3"), DP_OK);
    cr_assert_eq(dp_journal_commit(j), DP_OK);
    dp_journal_destroy(&j);
    struct model again = {0};
    dp_journal_replay_info_t info;
    cr_assert_eq(dp_journal_open(path, NULL, apply, &again, &j, &info), DP_OK, "%s",
                 dp_err_detail());
    cr_assert_eq(info.records, 4);
    cr_assert_gt(info.first_lsn, live.last_lsn, "lsns keep increasing across compaction");
    struct task_st *t0 = find(&live, "c7/t0");
    t0->state = DP__V1__TASK_STATE__TASK_STATE_LEASED;
    t0->attempt = 4;
    snprintf(t0->worker, sizeof t0->worker, "w3");
    assert_same_tasks(&live, &again);

    /* an aborted compaction leaves the journal as it was */
    size_t sz = file_size();
    cr_assert_eq(dp_journal_compact_begin(j), DP_OK);
    write_snapshot(j, &again, 1);
    dp_journal_compact_abort(j);
    cr_assert_eq(access(tmp, F_OK), -1);
    cr_assert_eq(file_size(), sz);
    cr_assert_eq(add_done(j, "c7/t0", 4, "k4"), DP_OK);
    cr_assert_eq(dp_journal_commit(j), DP_OK);
    dp_journal_destroy(&j);
    memset(&again, 0, sizeof again);
    cr_assert_eq(dp_journal_open(path, NULL, apply, &again, &j, &info), DP_OK);
    cr_assert_eq(info.records, 5);
    cr_assert_str_eq(find(&again, "c7/t0")->artifact, "k4");
    dp_journal_destroy(&j);
}

/* An unfinished compaction's file is removed by the next open. */
Test(journal, stale_compaction_file_removed)
{
    char tmp[320];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    cr_assert_not_null(f);
    fputs("left behind by a crash", f);
    fclose(f);
    dp_journal_t *j = NULL;
    cr_assert_eq(dp_journal_open(path, NULL, NULL, NULL, &j, NULL), DP_OK);
    cr_assert_eq(access(tmp, F_OK), -1);
    dp_journal_destroy(&j);
}

/* A write that fails (file size limit) sticks: nothing after it is accepted. */
Test(journal, failed_write_sticks)
{
    dp_journal_t *j = NULL;
    cr_assert_eq(dp_journal_open(path, NULL, NULL, NULL, &j, NULL), DP_OK);
    cr_assert_eq(add_assigned(j, "t", 1, "w"), DP_OK);
    cr_assert_eq(dp_journal_commit(j), DP_OK);
    dp_journal_stats_t st;
    dp_journal_stats(j, &st);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {.rlim_cur = st.bytes + 10, .rlim_max = RLIM_INFINITY};
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    cr_assert_eq(add_assigned(j, "t", 2, "a-worker-with-a-long-name"), DP_OK);
    cr_assert_eq(dp_journal_commit(j), DP_ERR_IO);
    rl.rlim_cur = RLIM_INFINITY;
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    cr_assert_eq(add_assigned(j, "t", 3, "w"), DP_ERR_IO);
    cr_assert_eq(dp_journal_commit(j), DP_ERR_IO);
    cr_assert(strstr(dp_err_detail(), "reopen"), "%s", dp_err_detail());
    dp_journal_destroy(&j);
    dp_journal_replay_info_t info;
    cr_assert_eq(dp_journal_open(path, NULL, NULL, NULL, &j, &info), DP_OK);
    cr_assert_eq(info.records, 1);
    dp_journal_destroy(&j);
}

/* A real writer process commits in a loop and reports each committed lsn on a
 * pipe; it is killed with SIGKILL; every lsn it reported is in the journal. */
Test(journal, committed_record_survives_kill_9)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        dp_journal_t *j = NULL;
        if (dp_journal_open(path, NULL, NULL, NULL, &j, NULL)) _exit(2);
        for (uint32_t i = 1;; i++) {
            if (add_assigned(j, "c/t", i, "w") || add_done(j, "c/t", i, "k")) _exit(3);
            if (dp_journal_commit(j)) _exit(4);
            dp_journal_stats_t st;
            dp_journal_stats(j, &st);
            if (write(fds[1], &st.committed_lsn, sizeof st.committed_lsn) != 8) _exit(5);
        }
    }
    close(fds[1]);
    uint64_t lsn = 0, last = 0;
    for (int k = 0; k < 20; k++) {
        cr_assert_eq(read(fds[0], &lsn, 8), 8);
        last = lsn;
    }
    cr_assert_eq(kill(pid, SIGKILL), 0);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    while (read(fds[0], &lsn, 8) == 8) last = lsn; /* reported before it died */
    close(fds[0]);

    dp_journal_t *j = NULL;
    dp_journal_replay_info_t info;
    cr_assert_eq(dp_journal_open(path, NULL, NULL, NULL, &j, &info), DP_OK, "%s", dp_err_detail());
    cr_assert_geq(info.last_lsn, last, "reported %llu, replayed %llu", (unsigned long long)last,
                  (unsigned long long)info.last_lsn);
    cr_assert_geq(last, 40);
    dp_journal_destroy(&j);
}
