/* The coordinator's journal: an append-only file of JournalRecord messages
 * (proto/dp/v1/journal.proto), each made durable before the state change it
 * records is acknowledged. Restart = open = replay in order.
 *
 * File: a 16-byte header (magic "DPJOURNL", u32 version 1, u32 CRC-32C of the
 * first 12 bytes), then frames [u32 length][u32 CRC-32C][payload], little
 * endian, the CRC (crc32c.h) taken over the 4 length bytes and the payload,
 * so that a zero-filled tail is never a valid frame. docs/PIPELINE.md
 * has the details.
 *
 * Shaped for group commit: appends only pack into a buffer; one commit writes
 * them all and calls fdatasync once. The coordinator's loop appends the
 * records of every message it has in hand, commits, then sends the replies.
 *
 * One thread at a time uses a journal. A process holds its file locked
 * (flock), so a second coordinator on the same file is refused. */
#ifndef DP_COORDINATOR_JOURNAL_H
#define DP_COORDINATOR_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#include "dp/v1/journal.pb-c.h"
#include "util/err.h"

#define DP_JOURNAL_VERSION         1u
#define DP_JOURNAL_HEADER_SIZE     16u
#define DP_JOURNAL_FRAME_SIZE      8u          /* length + CRC before each payload */
#define DP_JOURNAL_MAX_RECORD      (64u << 20) /* default payload limit */
#define DP_JOURNAL_MAX_RECORD_HARD (1u << 30)  /* no setting goes above this */

typedef struct dp_journal dp_journal_t;

typedef struct dp_journal_opts {
    uint32_t max_record; /* payload bytes; 0: DP_JOURNAL_MAX_RECORD. Larger appends are refused,
                            larger frames on replay are corrupt (nothing is allocated for them) */
    int no_fsync;        /* benchmarks and tests only: commit writes but never syncs */
    int repair;          /* open cuts the file at the first bad frame even when valid frames
                            follow it (an operator's choice, after reading the error) */
} dp_journal_opts_t;

/* What open (or dp_journal_scan) found. */
typedef struct dp_journal_replay_info {
    uint64_t records;        /* records replayed */
    uint64_t first_lsn;      /* 0 when there are none */
    uint64_t last_lsn;       /* 0 when there are none */
    uint64_t valid_bytes;    /* the good prefix: header and whole records */
    uint64_t dropped_bytes;  /* the torn tail cut away at valid_bytes; 0: a clean end */
    const char *dropped_why; /* "short frame header", "short payload", "bad length",
                                "CRC mismatch"; NULL when nothing was dropped */
    int created;             /* open made a new file */
} dp_journal_replay_info_t;

typedef struct dp_journal_stats {
    uint64_t records; /* committed records in the file */
    uint64_t bytes;   /* committed file size, header included */
    uint64_t pending; /* appended, not yet committed */
    uint64_t pending_bytes;
    uint64_t last_lsn;       /* last lsn handed out */
    uint64_t committed_lsn;  /* every record up to it is durable */
    uint64_t commits;        /* commits that wrote something */
    uint64_t syncs;          /* fdatasync calls */
    uint64_t last_commit_ns; /* latency of the last commit: write + fdatasync */
    uint64_t max_commit_ns;
    uint64_t total_commit_ns;
    uint64_t compactions;
} dp_journal_stats_t;

/* Called once per record, in file order. rec is borrowed, valid until the
 * callback returns. A non-DP_OK return stops the replay and open returns it. */
typedef dp_err_t (*dp_journal_replay_fn)(const Dp__V1__JournalRecord *rec, void *arg);

/* Defaults: 64 MiB records, fsync on, no repair. */
void dp_journal_opts_init(dp_journal_opts_t *opts);

/* Opens the journal at path, creating it (and syncing its directory) when
 * missing, and replays every record through fn (may be NULL). A torn or
 * corrupt tail (a short frame header, a short payload, a bad length or a CRC
 * mismatch with no valid frame after it) is truncated away, logged, and
 * reported in info; it is never an error. A bad frame followed by a valid one
 * is DP_ERR_FORMAT naming the offset (unless opts->repair); so is a frame
 * whose payload passes its CRC but is no JournalRecord or whose lsn does not
 * increase. A file that is not a journal is DP_ERR_FORMAT, another version
 * DP_ERR_UNSUPPORTED, a journal locked by another process DP_ERR_EXISTS.
 * opts may be NULL (defaults); info may be NULL.
 * On success *out is a new object, caller destroys; on failure *out is NULL. */
dp_err_t dp_journal_open(const char *path, const dp_journal_opts_t *opts, dp_journal_replay_fn fn,
                         void *arg, dp_journal_t **out, dp_journal_replay_info_t *info);

/* Closes the journal; records appended and not committed are discarded.
 * Accepts NULL and *j == NULL; sets *j = NULL. */
void dp_journal_destroy(dp_journal_t **j);

/* Gives rec the next lsn (rec->lsn is overwritten; also in *lsn if not NULL)
 * and packs it into the commit buffer; nothing is durable until
 * dp_journal_commit. rec is borrowed for the call. A record packing to more
 * than max_record bytes is DP_ERR_RANGE and takes no lsn. */
dp_err_t dp_journal_append(dp_journal_t *j, Dp__V1__JournalRecord *rec, uint64_t *lsn);

/* Writes every appended record and syncs the file once (group commit): on
 * DP_OK each of them is durable. With nothing appended it returns at once.
 * A failed write or sync is DP_ERR_IO and sticks: every later call fails,
 * because after a failed fsync the file's state is unknown; the coordinator
 * exits and replays. */
dp_err_t dp_journal_commit(dp_journal_t *j);

/* Compaction: begin commits what is pending and starts "<path>.tmp"; add
 * appends records to it (the Snapshot parts of the whole state, then any
 * other records) with the next lsns; finish syncs it, renames it over the
 * journal atomically, syncs the directory and continues appending to it.
 * Between begin and finish/abort, append and commit are refused
 * (DP_ERR_INVALID). abort removes the new file and leaves the old journal as
 * it was. A failure in finish before the rename aborts; after it (the
 * directory sync) it sticks like a failed commit. */
dp_err_t dp_journal_compact_begin(dp_journal_t *j);
dp_err_t dp_journal_compact_add(dp_journal_t *j, Dp__V1__JournalRecord *rec, uint64_t *lsn);
dp_err_t dp_journal_compact_finish(dp_journal_t *j);
void dp_journal_compact_abort(dp_journal_t *j);

/* Counters and latencies; out is filled. */
void dp_journal_stats(const dp_journal_t *j, dp_journal_stats_t *out);

/* Borrowed, valid until destroy. */
const char *dp_journal_path(const dp_journal_t *j);

/* Replays a journal image held in memory (header included) exactly as open
 * does, without touching any file: what open would keep is
 * info->valid_bytes. For tools and the fuzzer. data is borrowed. */
dp_err_t dp_journal_scan(const uint8_t *data, size_t n, const dp_journal_opts_t *opts,
                         dp_journal_replay_fn fn, void *arg, dp_journal_replay_info_t *info);

/* The 16 header bytes of a new journal, for tools and tests. */
void dp_journal_header(uint8_t out[DP_JOURNAL_HEADER_SIZE]);

/* The frame CRC: CRC-32C over the little-endian length then the payload. */
uint32_t dp_journal_frame_crc(const uint8_t *payload, uint32_t len);

#endif
