/* libFuzzer target: journal replay (coordinator/journal) of arbitrary bytes.
 *
 * Byte 0 says how the rest is read. Bit 0: the rest has no file header and a
 * valid one is put in front. Bit 1: every frame's CRC is rewritten (walking
 * by the claimed lengths), so that mutated payloads get past the CRC to the
 * protobuf decoder and the lsn checks instead of all being torn tails.
 *
 * Checks, beyond the sanitizers: a replay that succeeds keeps a prefix of
 * whole frames, and replaying just that prefix gives the same records with
 * nothing dropped; opening a file holding the bytes (no fsync) answers as
 * the in-memory replay did, leaves exactly the kept prefix on disk (or the
 * file untouched when it refuses), and takes an append that the next open
 * replays. Every Task of a CampaignAccepted goes through
 * dp_wire_validate_task, as the coordinator's replay does. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "journal.h"
#include "util/log.h"
#include "wire/envelope.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static char path[64];

static void quiet(dp_log_level_t level, const char *component, const char *line, void *arg) {}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct stat sb;
    const char *dir = stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) ? "/dev/shm" : "/tmp";
    snprintf(path, sizeof path, "%s/fuzz_journal.%d", dir, (int)getpid());
    dp_log_set_sink(quiet, NULL);
    return 0;
}

struct seen {
    uint64_t records, tasks;
};

static dp_err_t visit(const Dp__V1__JournalRecord *r, void *arg)
{
    struct seen *s = arg;
    s->records++;
    if (r->body_case == DP__V1__JOURNAL_RECORD__BODY_CAMPAIGN_ACCEPTED)
        for (size_t i = 0; i < r->campaign_accepted->n_tasks; i++)
            if (dp_wire_validate_task(r->campaign_accepted->tasks[i], "task") == DP_OK) s->tasks++;
    return DP_OK;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void spit(const uint8_t *b, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || (n && write(fd, b, n) != (ssize_t)n)) abort();
    close(fd);
}

static size_t file_size(void)
{
    struct stat sb;
    if (stat(path, &sb) != 0) abort();
    return (size_t)sb.st_size;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int mode = data[0];
    data++;
    size--;
    size_t hdr = mode & 1 ? DP_JOURNAL_HEADER_SIZE : 0;
    size_t n = hdr + size;
    uint8_t *b = malloc(n ? n : 1);
    if (!b) abort();
    if (hdr) dp_journal_header(b);
    if (size) memcpy(b + hdr, data, size);
    if (mode & 2)
        for (size_t off = DP_JOURNAL_HEADER_SIZE; off + DP_JOURNAL_FRAME_SIZE <= n;) {
            uint32_t len = get_le32(b + off);
            if (len > n - off - DP_JOURNAL_FRAME_SIZE) break;
            put_le32(b + off + 4, dp_journal_frame_crc(b + off + DP_JOURNAL_FRAME_SIZE, len));
            off += DP_JOURNAL_FRAME_SIZE + len;
        }

    dp_journal_opts_t o;
    dp_journal_opts_init(&o);
    o.no_fsync = 1;
    struct seen s1 = {0}, s2 = {0};
    dp_journal_replay_info_t i1, i2;
    dp_err_t e1 = dp_journal_scan(b, n, &o, visit, &s1, &i1);
    if (e1 == DP_OK) {
        if (i1.valid_bytes + i1.dropped_bytes != n || i1.records != s1.records) abort();
        if (i1.valid_bytes < DP_JOURNAL_HEADER_SIZE) abort();
        if (!i1.dropped_bytes != !i1.dropped_why) abort();
        if (dp_journal_scan(b, i1.valid_bytes, &o, visit, &s2, &i2) != DP_OK) abort();
        if (i2.records != i1.records || i2.dropped_bytes || i2.last_lsn != i1.last_lsn ||
            s2.tasks != s1.tasks)
            abort();
    } else {
        o.repair = 1; /* what an operator's repair would keep */
        dp_journal_scan(b, n, &o, NULL, NULL, &i2);
        o.repair = 0;
    }

    if (n >= DP_JOURNAL_HEADER_SIZE) {
        spit(b, n);
        dp_journal_t *j = NULL;
        struct seen s3 = {0};
        dp_journal_replay_info_t i3;
        dp_err_t e3 = dp_journal_open(path, &o, visit, &s3, &j, &i3);
        if (e3 != e1) abort();
        if (e3 != DP_OK) {
            if (file_size() != n) abort(); /* a refused journal is left as it was */
        } else {
            if (i3.records != i1.records || file_size() != i1.valid_bytes) abort();
            Dp__V1__TaskAssigned a = DP__V1__TASK_ASSIGNED__INIT;
            a.task_id = "t";
            a.attempt = 1;
            Dp__V1__JournalRecord r = DP__V1__JOURNAL_RECORD__INIT;
            r.body_case = DP__V1__JOURNAL_RECORD__BODY_TASK_ASSIGNED;
            r.task_assigned = &a;
            if (dp_journal_append(j, &r, NULL) || dp_journal_commit(j)) abort();
            if (r.lsn != i1.last_lsn + 1) abort();
            dp_journal_destroy(&j);
            if (dp_journal_open(path, &o, NULL, NULL, &j, &i3) != DP_OK) abort();
            if (i3.records != i1.records + 1 || i3.dropped_bytes || i3.last_lsn != r.lsn) abort();
        }
        dp_journal_destroy(&j);
        unlink(path);
    }
    free(b);
    return 0;
}
