/* Object store: one interface over two backends, s3:// (MinIO and S3 through
 * libcurl, SigV4, path-style URLs) and file:// (atomic local writes). Every
 * artifact of the system (models, generators, samples, measurements, reports)
 * goes through it.
 *
 * A store is opened on a root URI ("s3://bucket", "s3://bucket/prefix",
 * "file:///var/lib/dp") and objects are named by keys relative to that root.
 * dp_store_open_uri() splits a full object URI into both for tools that think
 * in URIs. Objects move from and to memory or files; file transfers stream, so
 * a large object never sits in memory whole.
 *
 * A store is not thread-safe: use one per thread (they are cheap; each keeps
 * one connection). Errors: DP_ERR_NOTFOUND for a missing key, DP_ERR_AUTH for
 * rejected credentials, DP_ERR_NETWORK when the server cannot be reached,
 * DP_ERR_REMOTE for other server errors (S3 code and message in
 * dp_err_detail()), DP_ERR_MISMATCH when an integrity check fails. Secrets are
 * never logged nor put in error details. */
#ifndef DP_STORE_STORE_H
#define DP_STORE_STORE_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

typedef struct dp_store dp_store_t;

/* What dp_store_settings_t.trace receives (tests use it to check signatures). */
typedef enum dp_store_trace_kind {
    DP_STORE_TRACE_HEADER_OUT, /* the request line and headers, as sent */
    DP_STORE_TRACE_DATA_OUT,   /* request body bytes, as sent */
    DP_STORE_TRACE_HEADER_IN,  /* one response header line */
} dp_store_trace_kind_t;
typedef void (*dp_store_trace_fn)(dp_store_trace_kind_t kind, const char *data, size_t len,
                                  void *arg);

/* Settings of a store. Start from dp_store_settings_init(); a NULL string or
 * a zero number means "from the environment, else the default":
 *   endpoint     DP_STORE_ENDPOINT, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL,
 *                else https://s3.REGION.amazonaws.com
 *   region       AWS_REGION, AWS_DEFAULT_REGION, else us-east-1
 *   credentials  access_key/secret_key given here; else the files named here
 *                (Kubernetes Secret mounts); else AWS_ACCESS_KEY_ID,
 *                AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN; else the files
 *                named by DP_STORE_ACCESS_KEY_FILE, DP_STORE_SECRET_KEY_FILE,
 *                DP_STORE_SESSION_TOKEN_FILE. Trailing newlines in files are
 *                dropped.
 * All strings are borrowed for the duration of dp_store_new() (it copies). */
typedef struct dp_store_settings {
    const char *endpoint; /* "http://127.0.0.1:9000" */
    const char *region;
    const char *access_key;
    const char *secret_key;
    const char *session_token;
    const char *access_key_file;
    const char *secret_key_file;
    const char *session_token_file;
    int max_retries;              /* retries after the first try; default: as many as
                                     retry_budget_ms allows; -1: none */
    long retry_base_ms;           /* first backoff; default 100 */
    long retry_max_ms;            /* one backoff at most; default 2000 */
    long retry_budget_ms;         /* all tries of one request together; DP_STORE_RETRY_FOR_S
                                     (seconds), else 60000: a server restart */
    long connect_timeout_ms;      /* default 5000 */
    long stall_timeout_s;         /* abort a transfer below 1 byte/s this long; default 30 */
    uint64_t multipart_threshold; /* objects of this size or more go multipart; default
                                     64 MiB + 1 (above 64 MiB) */
    uint64_t part_size;           /* multipart part size, >= 5 MiB; default: from the size
                                     (8 MiB, more for objects above 80 GB) */
    int parallel;                 /* multipart parts in flight, each on its own connection
                                     and thread, one part in memory each; default 4 */
    /* Nonzero: stop. Every transfer and backoff ends soon with
     * DP_ERR_INTERRUPTED; a multipart upload is still aborted on the server
     * (within the retry budget) and a download's temporary file removed.
     * Borrowed for the store's life; a signal handler may set it. NULL: none. */
    const volatile sig_atomic_t *cancel;
    /* Guarantees that cost throughput, on by default; set only to measure
     * what they cost (bench/bench_store.sh). s3:// only. */
    int no_verify_md5;       /* 1: streamed single-part put_file skips the MD5-vs-ETag check */
    int no_fsync;            /* 1: get_file renames without fsync: atomic, not durable */
    dp_store_trace_fn trace; /* optional, for tests; NULL: none; called from the
                                parallel senders of a multipart upload too */
    void *trace_arg;
} dp_store_settings_t;

/* One object as head and list report it. */
typedef struct dp_store_info {
    const char *key; /* borrowed, valid during the callback (list) or until the next call (head) */
    uint64_t size;
    int64_t mtime; /* seconds since the epoch; 0 if unknown */
    char etag[72]; /* without quotes; "" if unknown (file://) */
} dp_store_info_t;

/* Called once per object by dp_store_list(), in key order; return nonzero to
 * stop listing (dp_store_list then returns DP_OK). */
typedef int (*dp_store_list_fn)(const dp_store_info_t *info, void *arg);

/* Fills *s with zeros and NULLs, i.e. environment and defaults. */
void dp_store_settings_init(dp_store_settings_t *s);

/* Opens a store on root URI "s3://bucket[/prefix]" or "file:///dir"; settings
 * may be NULL (environment and defaults). Returns a new object in *out, caller
 * destroys. Checks settings, not the server: nothing is sent. */
dp_err_t dp_store_new(const char *root_uri, const dp_store_settings_t *settings, dp_store_t **out);

/* Splits an object URI ("s3://bucket/a/b.bin", "file:///tmp/x/y.bin") into a
 * store on its root ("s3://bucket", "file:///") and the key ("a/b.bin",
 * "tmp/x/y.bin"). Returns a new store in *out, caller destroys; *key is a new
 * string, caller frees. */
dp_err_t dp_store_open_uri(const char *uri, const dp_store_settings_t *settings, dp_store_t **out,
                           char **key);

/* Accepts NULL; sets *s to NULL. */
void dp_store_destroy(dp_store_t **s);

/* Writes an object from memory (data borrowed for the call). Replaces an
 * existing object; a reader sees the old or the new object, never a part. */
dp_err_t dp_store_put_mem(dp_store_t *s, const char *key, const void *data, size_t len);

/* Writes an object from a local file, streamed (multipart above the threshold
 * on s3://). On failure no partial object is visible. */
dp_err_t dp_store_put_file(dp_store_t *s, const char *key, const char *path);

/* Reads an object into memory. On success *data is a new buffer of *len bytes
 * plus a terminating NUL (not counted), caller frees. */
dp_err_t dp_store_get_mem(dp_store_t *s, const char *key, void **data, size_t *len);

/* Reads an object into a local file, streamed, written atomically (temporary
 * file, fsync, rename) after its size was checked. On s3:// the writeback
 * of the file is started as it arrives (sync_file_range), so the final fsync
 * finds little left to do. */
dp_err_t dp_store_get_file(dp_store_t *s, const char *key, const char *path);

/* Writes an object from fd, read to its end (a pipe: stdin), streamed in
 * bounded memory (parallel parts of part_size at most in memory): one PUT
 * when the stream ends within the first part, else multipart. */
dp_err_t dp_store_put_fd(dp_store_t *s, const char *key, int fd);

/* Writes an object to fd (a pipe: stdout) as it arrives, in bounded memory.
 * A transfer cut off is resumed where it stopped (a ranged GET of the same
 * ETag); on failure fd may have received part of the object. */
dp_err_t dp_store_get_fd(dp_store_t *s, const char *key, int fd);

/* Size, mtime and ETag of an object; info->key points into the store, valid
 * until the next call on it. */
dp_err_t dp_store_head(dp_store_t *s, const char *key, dp_store_info_t *info);

/* Calls fn for every object whose key starts with prefix ("" or NULL: all),
 * following pagination. */
dp_err_t dp_store_list(dp_store_t *s, const char *prefix, dp_store_list_fn fn, void *arg);

/* Deletes an object. A missing key is not an error (S3 semantics). */
dp_err_t dp_store_delete(dp_store_t *s, const char *key);

/* An unfinished multipart upload, as dp_store_list_uploads reports it. */
typedef struct dp_store_upload {
    const char *key;       /* relative to the root; borrowed, valid during the callback */
    const char *upload_id; /* borrowed, valid during the callback */
    int64_t initiated;     /* seconds since the epoch; 0 if unknown */
} dp_store_upload_t;
typedef int (*dp_store_upload_fn)(const dp_store_upload_t *u, void *arg);

/* Calls fn for every unfinished multipart upload whose key starts with
 * prefix, following pagination (what a killed upload leaves; stored and
 * billed until aborted). file:// has none. fn returns nonzero to stop. */
dp_err_t dp_store_list_uploads(dp_store_t *s, const char *prefix, dp_store_upload_fn fn, void *arg);

/* Aborts one unfinished multipart upload: its parts are removed. */
dp_err_t dp_store_abort_upload(dp_store_t *s, const char *key, const char *upload_id);

/* The root URI the store was opened on; borrowed, valid until destroy. */
const char *dp_store_root(const dp_store_t *s);

#endif
