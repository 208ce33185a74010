/* The coordinator's journal: framing, replay with torn-tail truncation, group
 * commit and compaction by atomic rename. The file format is in journal.h and
 * docs/PIPELINE.md.
 *
 * Replay maps the file and walks its frames in place, so a frame that claims a
 * huge length costs nothing: nothing is allocated before its CRC has passed.
 * A bad frame is a torn tail when no valid frame follows it anywhere in the
 * file (a byte-by-byte search, cheap because almost every offset fails the
 * length test before any CRC is computed), and corruption otherwise. */
#include "journal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "util/clock.h"
#include "util/log.h"

#define LOG_COMP    "journal"
#define FLUSH_BYTES (1u << 20) /* appends past this are written early (not synced) */

static const uint8_t journal_magic[8] = {'D', 'P', 'J', 'O', 'U', 'R', 'N', 'L'};

/* One file being appended to: the journal, or the compacted file. */
struct jwriter {
    int fd;
    uint64_t size; /* bytes written to the file */
    uint8_t *buf;  /* packed frames not yet written */
    size_t len, cap;
    int unsynced; /* written since the last sync */
};

struct dp_journal {
    char *path, *tmp_path, *dir;
    dp_journal_opts_t opts;
    struct jwriter w, c; /* c: the compacted file, while compacting */
    int compacting;
    int failed; /* a write or sync failed: everything refuses */
    uint64_t next_lsn;
    uint64_t committed_bytes;
    uint64_t c_records;
    dp_journal_stats_t st;
};

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

uint32_t dp_journal_frame_crc(const uint8_t *payload, uint32_t len)
{
    uint8_t l[4];
    put_le32(l, len);
    return dp_crc32c(dp_crc32c(0, l, 4), payload, len);
}

void dp_journal_header(uint8_t out[DP_JOURNAL_HEADER_SIZE])
{
    memcpy(out, journal_magic, 8);
    put_le32(out + 8, DP_JOURNAL_VERSION);
    put_le32(out + 12, dp_crc32c(0, out, 12));
}

void dp_journal_opts_init(dp_journal_opts_t *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->max_record = DP_JOURNAL_MAX_RECORD;
}

static dp_err_t opts_resolve(const dp_journal_opts_t *in, dp_journal_opts_t *out)
{
    if (in)
        *out = *in;
    else
        dp_journal_opts_init(out);
    if (out->max_record == 0) out->max_record = DP_JOURNAL_MAX_RECORD;
    if (out->max_record > DP_JOURNAL_MAX_RECORD_HARD)
        return dp_err_set(DP_ERR_INVALID, "journal: max_record %" PRIu32 " is above %u",
                          out->max_record, DP_JOURNAL_MAX_RECORD_HARD);
    return DP_OK;
}

/* ---- replay ---- */

typedef enum frame_status {
    FRAME_OK = 0,
    FRAME_SHORT_HEADER,
    FRAME_BAD_LENGTH,
    FRAME_SHORT_PAYLOAD,
    FRAME_CRC,
} frame_status_t;

static const char *const frame_why[] = {
    [FRAME_OK] = "valid",
    [FRAME_SHORT_HEADER] = "short frame header",
    [FRAME_BAD_LENGTH] = "bad length",
    [FRAME_SHORT_PAYLOAD] = "short payload",
    [FRAME_CRC] = "CRC mismatch",
};

static frame_status_t frame_at(const uint8_t *d, size_t n, size_t off, uint32_t max, uint32_t *len)
{
    if (n - off < DP_JOURNAL_FRAME_SIZE) return FRAME_SHORT_HEADER;
    uint32_t l = get_le32(d + off);
    if (l == 0 || l > max) return FRAME_BAD_LENGTH;
    if (l > n - off - DP_JOURNAL_FRAME_SIZE) return FRAME_SHORT_PAYLOAD;
    if (dp_journal_frame_crc(d + off + DP_JOURNAL_FRAME_SIZE, l) != get_le32(d + off + 4))
        return FRAME_CRC;
    *len = l;
    return FRAME_OK;
}

/* The offset of the first valid frame at or after from, or 0 if none. */
static size_t next_valid_frame(const uint8_t *d, size_t n, size_t from, uint32_t max)
{
    uint32_t len;
    for (size_t p = from; p < n && n - p >= DP_JOURNAL_FRAME_SIZE; p++)
        if (frame_at(d, n, p, max, &len) == FRAME_OK) return p;
    return 0;
}

static dp_err_t check_header(const uint8_t *d, size_t n)
{
    uint8_t want[DP_JOURNAL_HEADER_SIZE];
    dp_journal_header(want);
    if (n < DP_JOURNAL_HEADER_SIZE)
        return dp_err_set(DP_ERR_TRUNCATED, "%zu bytes, shorter than the journal header", n);
    if (memcmp(d, journal_magic, sizeof journal_magic) != 0)
        return dp_err_set(DP_ERR_FORMAT, "not a journal (bad magic)");
    if (get_le32(d + 8) != DP_JOURNAL_VERSION)
        return dp_err_set(DP_ERR_UNSUPPORTED, "journal version %" PRIu32 " (this build reads %u)",
                          get_le32(d + 8), DP_JOURNAL_VERSION);
    if (memcmp(d, want, DP_JOURNAL_HEADER_SIZE) != 0)
        return dp_err_set(DP_ERR_FORMAT, "journal header CRC mismatch");
    return DP_OK;
}

/* Replay decodes every record into one reused block: a record's fields are
 * bump-allocated and dropped together (no free_unpacked walk unless a field
 * spilled to malloc), a third of the replay time of malloc per field. */
#define ARENA_BYTES (64u * 1024)

struct arena {
    size_t used;
    size_t spilled; /* allocations that went to malloc */
    _Alignas(16) uint8_t buf[ARENA_BYTES];
};

static void *arena_alloc(void *data, size_t size)
{
    struct arena *a = data;
    size_t at = (a->used + 15) & ~(size_t)15;
    if (size <= ARENA_BYTES && at <= ARENA_BYTES - size) {
        a->used = at + size;
        return a->buf + at;
    }
    a->spilled++;
    return malloc(size);
}

static void arena_free(void *data, void *p)
{
    struct arena *a = data;
    if ((uint8_t *)p >= a->buf && (uint8_t *)p < a->buf + ARENA_BYTES) return;
    free(p);
}

dp_err_t dp_journal_scan(const uint8_t *data, size_t n, const dp_journal_opts_t *opts,
                         dp_journal_replay_fn fn, void *arg, dp_journal_replay_info_t *info)
{
    dp_journal_replay_info_t dummy;
    if (!info) info = &dummy;
    memset(info, 0, sizeof *info);
    if (!data && n) return dp_err_set(DP_ERR_INVALID, "journal scan: no data");
    dp_journal_opts_t o;
    dp_err_t err = opts_resolve(opts, &o);
    if (err) return err;
    err = check_header(data, n);
    if (err) return err;
    struct arena *ar = malloc(sizeof *ar);
    if (!ar) return dp_err_set(DP_ERR_NOMEM, "journal scan: decoding arena");
    ProtobufCAllocator alloc = {.alloc = arena_alloc, .free = arena_free, .allocator_data = ar};
    Dp__V1__JournalRecord *rec = NULL;

    size_t off = DP_JOURNAL_HEADER_SIZE;
    while (off < n) {
        uint32_t len = 0;
        frame_status_t fs = frame_at(data, n, off, o.max_record, &len);
        if (fs != FRAME_OK) {
            size_t next = next_valid_frame(data, n, off + 1, o.max_record);
            if (next && !o.repair) {
                err = dp_err_set(DP_ERR_FORMAT,
                                 "journal corrupt at offset %zu (%s), a valid record follows at "
                                 "offset %zu",
                                 off, frame_why[fs], next);
                goto fail;
            }
            if (next)
                dp_warn(LOG_COMP,
                        "repair: cutting at offset %zu (%s), before a valid record at offset %zu",
                        off, frame_why[fs], next);
            info->dropped_bytes = n - off;
            info->dropped_why = frame_why[fs];
            break;
        }
        ar->used = ar->spilled = 0;
        rec = dp__v1__journal_record__unpack(&alloc, len, data + off + DP_JOURNAL_FRAME_SIZE);
        if (!rec) {
            err = dp_err_set(DP_ERR_FORMAT,
                             "journal record at offset %zu passes its CRC but is no JournalRecord",
                             off);
            goto fail;
        }
        if (rec->lsn == 0 || rec->lsn <= info->last_lsn) {
            err = dp_err_set(DP_ERR_FORMAT,
                             "journal record at offset %zu has lsn %" PRIu64 " after %" PRIu64, off,
                             rec->lsn, info->last_lsn);
            goto fail;
        }
        if (fn && (err = fn(rec, arg)) != DP_OK) {
            err = dp_err_set(err, "journal record lsn %" PRIu64 " at offset %zu: %s", rec->lsn, off,
                             dp_err_detail());
            goto fail;
        }
        if (!info->records) info->first_lsn = rec->lsn;
        info->last_lsn = rec->lsn;
        info->records++;
        if (ar->spilled) dp__v1__journal_record__free_unpacked(rec, &alloc);
        rec = NULL;
        off += DP_JOURNAL_FRAME_SIZE + len;
    }
    info->valid_bytes = n - info->dropped_bytes;
    free(ar);
    return DP_OK;

fail:
    if (rec) dp__v1__journal_record__free_unpacked(rec, &alloc);
    free(ar);
    return err;
}

/* ---- files ---- */

static dp_err_t errno_err(const char *path, const char *what, int e)
{
    return dp_err_set(DP_ERR_IO, "journal %s: %s: %s", path, what, strerror(e));
}

static int write_all(int fd, const uint8_t *p, size_t n, uint64_t off)
{
    while (n) {
        ssize_t r = pwrite(fd, p, n, (off_t)off);
        if (r < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

static int sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return errno;
    int e = fsync(fd) ? errno : 0;
    close(fd);
    return e;
}

/* Writes the buffered frames; 0 or an errno. */
static int writer_flush(struct jwriter *w)
{
    if (!w->len) return 0;
    int e = write_all(w->fd, w->buf, w->len, w->size);
    if (e) return e;
    w->size += w->len;
    w->len = 0;
    w->unsynced = 1;
    return 0;
}

static dp_err_t writer_reserve(struct jwriter *w, size_t more)
{
    if (w->cap - w->len >= more) return DP_OK;
    size_t cap = w->cap ? w->cap : 64 * 1024;
    while (cap - w->len < more) cap *= 2;
    uint8_t *b = realloc(w->buf, cap);
    if (!b) return dp_err_set(DP_ERR_NOMEM, "journal: %zu-byte commit buffer", cap);
    w->buf = b;
    w->cap = cap;
    return DP_OK;
}

/* The journal is unusable from now on: log once, keep the detail. */
static dp_err_t fail(dp_journal_t *j, const char *what, int e)
{
    j->failed = 1;
    /* best effort: the unsynced tail would be dropped on replay anyway */
    if (ftruncate(j->w.fd, (off_t)j->committed_bytes) != 0) { /* replay cuts it */
    }
    dp_error(LOG_COMP, "%s: %s failed: %s; the journal refuses everything until reopened", j->path,
             what, strerror(e));
    return errno_err(j->path, what, e);
}

static dp_err_t usable(const dp_journal_t *j, int compacting)
{
    if (j->failed)
        return dp_err_set(DP_ERR_IO, "journal %s: an earlier write or sync failed; reopen it",
                          j->path);
    if (j->compacting != compacting)
        return dp_err_set(DP_ERR_INVALID, "journal %s: %s", j->path,
                          compacting ? "not compacting" : "compaction in progress");
    return DP_OK;
}

/* Assigns the next lsn and packs rec as a frame into w's buffer. */
static dp_err_t put(dp_journal_t *j, struct jwriter *w, Dp__V1__JournalRecord *rec, uint64_t *lsn)
{
    uint64_t old = rec->lsn;
    rec->lsn = j->next_lsn;
    size_t n = dp__v1__journal_record__get_packed_size(rec);
    if (n > j->opts.max_record) {
        rec->lsn = old;
        return dp_err_set(DP_ERR_RANGE,
                          "journal %s: a %zu-byte record is above the %" PRIu32 "-byte limit",
                          j->path, n, j->opts.max_record);
    }
    dp_err_t err = writer_reserve(w, DP_JOURNAL_FRAME_SIZE + n);
    if (err) {
        rec->lsn = old;
        return err;
    }
    uint8_t *f = w->buf + w->len;
    size_t packed = dp__v1__journal_record__pack(rec, f + DP_JOURNAL_FRAME_SIZE);
    if (packed != n) {
        rec->lsn = old;
        return dp_err_set(DP_ERR_FORMAT, "journal: record packed to %zu bytes, not %zu", packed, n);
    }
    put_le32(f, (uint32_t)n);
    put_le32(f + 4, dp_journal_frame_crc(f + DP_JOURNAL_FRAME_SIZE, (uint32_t)n));
    w->len += DP_JOURNAL_FRAME_SIZE + n;
    j->next_lsn++;
    if (lsn) *lsn = rec->lsn;
    return DP_OK;
}

/* Makes path a fresh journal if it is empty or holds a prefix of the header
 * (a crash while it was being created); the caller holds its lock. */
static dp_err_t init_short_file(dp_journal_t *j, size_t size)
{
    uint8_t hdr[DP_JOURNAL_HEADER_SIZE], have[DP_JOURNAL_HEADER_SIZE];
    dp_journal_header(hdr);
    if (size) {
        ssize_t r = pread(j->w.fd, have, size, 0);
        if (r < 0 || (size_t)r != size) return errno_err(j->path, "read", r < 0 ? errno : EIO);
        if (memcmp(have, hdr, size) != 0)
            return dp_err_set(DP_ERR_FORMAT, "journal %s: %zu bytes, not a journal", j->path, size);
    }
    int e = write_all(j->w.fd, hdr, sizeof hdr, 0);
    if (!e && !j->opts.no_fsync) e = fsync(j->w.fd) ? errno : sync_dir(j->dir);
    if (e) return errno_err(j->path, "writing the header", e);
    return DP_OK;
}

static char *dir_of(const char *path)
{
    const char *s = strrchr(path, '/');
    if (!s) return strdup(".");
    if (s == path) return strdup("/");
    return strndup(path, (size_t)(s - path));
}

dp_err_t dp_journal_open(const char *path, const dp_journal_opts_t *opts, dp_journal_replay_fn fn,
                         void *arg, dp_journal_t **out, dp_journal_replay_info_t *info)
{
    dp_journal_replay_info_t dummy;
    if (!info) info = &dummy;
    memset(info, 0, sizeof *info);
    if (!out) return dp_err_set(DP_ERR_INVALID, "journal open: no output");
    *out = NULL;
    if (!path || !*path) return dp_err_set(DP_ERR_INVALID, "journal open: no path");

    dp_err_t err;
    void *map = MAP_FAILED;
    size_t size = 0;
    dp_journal_t *j = calloc(1, sizeof *j);
    if (!j) return dp_err_set(DP_ERR_NOMEM, "journal %s", path);
    j->w.fd = j->c.fd = -1;
    err = opts_resolve(opts, &j->opts);
    if (err) goto fail;
    size_t plen = strlen(path);
    j->path = strdup(path);
    j->tmp_path = malloc(plen + 5);
    j->dir = dir_of(path);
    if (!j->path || !j->tmp_path || !j->dir) {
        err = dp_err_set(DP_ERR_NOMEM, "journal %s", path);
        goto fail;
    }
    memcpy(j->tmp_path, path, plen);
    memcpy(j->tmp_path + plen, ".tmp", 5);

    j->w.fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (j->w.fd < 0) {
        err = errno_err(path, "open", errno);
        goto fail;
    }
    if (flock(j->w.fd, LOCK_EX | LOCK_NB) != 0) {
        err = errno == EWOULDBLOCK
                  ? dp_err_set(DP_ERR_EXISTS, "journal %s: in use by another process", path)
                  : errno_err(path, "flock", errno);
        goto fail;
    }
    /* ours now: a compaction that never finished left this behind */
    if (unlink(j->tmp_path) == 0) dp_warn(LOG_COMP, "%s: removed an unfinished compaction", path);

    struct stat sb;
    if (fstat(j->w.fd, &sb) != 0) {
        err = errno_err(path, "stat", errno);
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        err = dp_err_set(DP_ERR_INVALID, "journal %s: not a regular file", path);
        goto fail;
    }
    size = (size_t)sb.st_size;
    if (size < DP_JOURNAL_HEADER_SIZE) {
        err = init_short_file(j, size);
        if (err) goto fail;
        info->created = 1;
        size = DP_JOURNAL_HEADER_SIZE;
        dp_info(LOG_COMP, "%s: new journal", path);
    }
    map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, j->w.fd, 0);
    if (map == MAP_FAILED) {
        err = errno_err(path, "mmap", errno);
        goto fail;
    }
    int created = info->created;
    err = dp_journal_scan(map, size, &j->opts, fn, arg, info);
    info->created = created;
    if (err) {
        err = dp_err_set(err, "%s: %s", path, dp_err_detail());
        goto fail;
    }
    munmap(map, size);
    map = MAP_FAILED;
    if (info->dropped_bytes) {
        dp_warn(LOG_COMP, "%s: dropped a torn tail of %" PRIu64 " bytes at offset %" PRIu64 " (%s)",
                path, info->dropped_bytes, info->valid_bytes, info->dropped_why);
        int e = ftruncate(j->w.fd, (off_t)info->valid_bytes) ? errno : 0;
        if (!e && !j->opts.no_fsync) e = fsync(j->w.fd) ? errno : 0;
        if (e) {
            err = errno_err(path, "truncating the torn tail", e);
            goto fail;
        }
    }
    j->w.size = j->committed_bytes = info->valid_bytes;
    j->next_lsn = info->last_lsn + 1;
    j->st.records = info->records;
    j->st.committed_lsn = j->st.last_lsn = info->last_lsn;
    dp_debug(LOG_COMP, "%s: replayed %" PRIu64 " records, last lsn %" PRIu64, path, info->records,
             info->last_lsn);
    *out = j;
    return DP_OK;

fail:
    if (map != MAP_FAILED) munmap(map, size);
    dp_journal_destroy(&j);
    return err;
}

void dp_journal_destroy(dp_journal_t **jp)
{
    if (!jp || !*jp) return;
    dp_journal_t *j = *jp;
    if (j->compacting) dp_journal_compact_abort(j);
    if (j->w.fd >= 0) close(j->w.fd);
    free(j->w.buf);
    free(j->c.buf);
    free(j->path);
    free(j->tmp_path);
    free(j->dir);
    free(j);
    *jp = NULL;
}

dp_err_t dp_journal_append(dp_journal_t *j, Dp__V1__JournalRecord *rec, uint64_t *lsn)
{
    if (!j || !rec) return dp_err_set(DP_ERR_INVALID, "journal append: no journal or record");
    dp_err_t err = usable(j, 0);
    if (err) return err;
    err = put(j, &j->w, rec, lsn);
    if (err) return err;
    j->st.pending++;
    j->st.last_lsn = rec->lsn;
    if (j->w.len >= FLUSH_BYTES) {
        int e = writer_flush(&j->w);
        if (e) return fail(j, "write", e);
    }
    return DP_OK;
}

dp_err_t dp_journal_commit(dp_journal_t *j)
{
    if (!j) return dp_err_set(DP_ERR_INVALID, "journal commit: no journal");
    dp_err_t err = usable(j, 0);
    if (err) return err;
    if (!j->st.pending && !j->w.len && !j->w.unsynced) return DP_OK;
    uint64_t t0 = dp_clock_ns();
    int e = writer_flush(&j->w);
    if (e) return fail(j, "write", e);
    if (!j->opts.no_fsync) {
        if (fdatasync(j->w.fd) != 0) return fail(j, "fdatasync", errno);
        j->st.syncs++;
    }
    j->w.unsynced = 0;
    uint64_t dt = dp_clock_ns() - t0;
    j->st.commits++;
    j->st.last_commit_ns = dt;
    j->st.total_commit_ns += dt;
    if (dt > j->st.max_commit_ns) j->st.max_commit_ns = dt;
    j->st.records += j->st.pending;
    j->st.pending = 0;
    j->committed_bytes = j->w.size;
    j->st.committed_lsn = j->next_lsn - 1;
    return DP_OK;
}

/* ---- compaction ---- */

dp_err_t dp_journal_compact_begin(dp_journal_t *j)
{
    if (!j) return dp_err_set(DP_ERR_INVALID, "journal compaction: no journal");
    dp_err_t err = dp_journal_commit(j);
    if (err) return err;
    j->c.fd = open(j->tmp_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (j->c.fd < 0) return errno_err(j->tmp_path, "open", errno);
    j->c.size = 0;
    j->c.len = 0;
    j->c.unsynced = 0;
    err = writer_reserve(&j->c, DP_JOURNAL_HEADER_SIZE);
    if (err) {
        close(j->c.fd);
        j->c.fd = -1;
        unlink(j->tmp_path);
        return err;
    }
    dp_journal_header(j->c.buf);
    j->c.len = DP_JOURNAL_HEADER_SIZE;
    j->c_records = 0;
    j->compacting = 1;
    return DP_OK;
}

dp_err_t dp_journal_compact_add(dp_journal_t *j, Dp__V1__JournalRecord *rec, uint64_t *lsn)
{
    if (!j || !rec) return dp_err_set(DP_ERR_INVALID, "journal compaction: no journal or record");
    dp_err_t err = usable(j, 1);
    if (err) return err;
    err = put(j, &j->c, rec, lsn);
    if (err) return err;
    j->c_records++;
    j->st.last_lsn = rec->lsn;
    if (j->c.len >= FLUSH_BYTES) {
        int e = writer_flush(&j->c);
        if (e) return errno_err(j->tmp_path, "write", e);
    }
    return DP_OK;
}

void dp_journal_compact_abort(dp_journal_t *j)
{
    if (!j || !j->compacting) return;
    if (j->c.fd >= 0) close(j->c.fd);
    j->c.fd = -1;
    j->c.len = 0;
    unlink(j->tmp_path);
    j->compacting = 0;
}

dp_err_t dp_journal_compact_finish(dp_journal_t *j)
{
    if (!j) return dp_err_set(DP_ERR_INVALID, "journal compaction: no journal");
    dp_err_t err = usable(j, 1);
    if (err) return err;
    const char *what = "write";
    int e = writer_flush(&j->c);
    if (!e && !j->opts.no_fsync) {
        what = "fsync";
        e = fsync(j->c.fd) ? errno : 0;
    }
    if (!e) {
        what = "flock";
        e = flock(j->c.fd, LOCK_EX | LOCK_NB) ? errno : 0;
    }
    if (!e) {
        what = "rename";
        e = rename(j->tmp_path, j->path) ? errno : 0;
    }
    if (e) {
        err = errno_err(j->tmp_path, what, e);
        dp_journal_compact_abort(j);
        return err;
    }
    /* the new file is the journal now, whatever the directory sync says */
    close(j->w.fd);
    struct jwriter old = j->w;
    j->w = j->c;
    j->w.unsynced = 0;
    j->c = old;
    j->c.fd = -1;
    j->c.len = 0;
    j->compacting = 0;
    j->committed_bytes = j->w.size;
    j->st.records = j->c_records;
    j->st.committed_lsn = j->next_lsn - 1;
    j->st.compactions++;
    if (!j->opts.no_fsync && (e = sync_dir(j->dir)) != 0) return fail(j, "directory fsync", e);
    dp_info(LOG_COMP, "%s: compacted to %" PRIu64 " records, %" PRIu64 " bytes", j->path,
            j->c_records, j->w.size);
    return DP_OK;
}

/* ---- queries ---- */

void dp_journal_stats(const dp_journal_t *j, dp_journal_stats_t *out)
{
    *out = j->st;
    out->bytes = j->committed_bytes;
    out->pending_bytes = j->w.size + j->w.len - j->committed_bytes;
}

const char *dp_journal_path(const dp_journal_t *j) { return j->path; }
