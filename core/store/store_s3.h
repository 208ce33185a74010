/* Internals of the s3:// backend shared by its request layer (store_s3.c)
 * and its multipart uploads (store_s3_mp.c): one connection, one request and
 * its answer, and the calls between the two files. */
#ifndef DP_STORE_STORE_S3_H
#define DP_STORE_STORE_S3_H

#include <curl/curl.h>

#include "store/store_impl.h"

#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define UNSIGNED     "UNSIGNED-PAYLOAD"
#define ERRBODY_MAX  (64u << 10)
#define MIN_PART     (5ull << 20)
#define MAX_PARTS    10000
/* Downloads to a file are staged here and written 1 MiB at a time: libcurl
 * hands the body over in 16 KiB pieces, one write(2) each otherwise. */
#define WBUF_SIZE (1u << 20)
/* Request bodies are read 1 MiB at a time (libcurl's default is 64 KiB): 16x
 * fewer read/send/poll rounds. */
#define UPLOAD_BUFFER (1L << 20)
#define SYNC_STEP     (2u << 20)

/* One connection: a curl handle and what goes with it. The store has one;
 * each thread of a parallel transfer makes its own. */
typedef struct s3_conn {
    CURL *curl;
    unsigned rng;
    int no_cancel; /* 1: settings.cancel is ignored (the abort of an upload) */
    char *wbuf;    /* download staging buffer (WBUF_SIZE), allocated on first use */
    char errbuf[CURL_ERROR_SIZE];
} s3_conn_t;

typedef struct s3 {
    s3_conn_t conn;
    char *endpoint, *region, *sigv4, *bucket;
    char *access_key, *secret_key, *token; /* never logged; wiped on destroy */
    dp_store_settings_t cfg;               /* numbers and trace; strings cleared */
} s3_t;

/* ---- one request ---------------------------------------------------------------------- */

typedef struct s3_req {
    const char *method;   /* GET HEAD PUT POST DELETE */
    const char *key;      /* full key, NULL for the bucket */
    const char *query;    /* canonical query string or NULL */
    const char *sha256;   /* x-amz-content-sha256; NULL: EMPTY_SHA256 */
    const char *md5_b64;  /* Content-MD5 or NULL */
    const char *ctype;    /* Content-Type for PUT/POST */
    const char *mem;      /* body from memory ... */
    int fd;               /* ... or from fd at off (-1: none) */
    uint64_t off, len;    /* body length */
    store_buf_t *out_mem; /* 2xx response body to memory ... */
    int out_fd;           /* ... or to fd (-1: none) */
    int out_stream;       /* out_fd is a pipe: no writeback to start */
    int resume;           /* a retry resumes out_fd with a ranged GET of the same ETag
                             from where it stopped, instead of starting over */
    uint64_t range_off;   /* range_len > 0: GET bytes [range_off, range_off + range_len) */
    uint64_t range_len;   /* only, written to out_fd at their offsets (pwrite) */
    const char *if_match; /* If-Match on every try, or NULL */
} s3_req_t;

typedef struct s3_resp {
    long status;
    long last_status; /* of the latest status line received (after 100 Continue) */
    char etag[72];
    uint64_t length;
    int has_length;
    int64_t mtime;
    uint64_t received;
    store_buf_t err; /* body of a non-2xx answer */
    dp_err_t werr;   /* local failure inside a callback */
    char werr_detail[256];
    uint64_t streamed;    /* bytes written to a stream out_fd, all tries together */
    char stream_etag[72]; /* ETag of the first answer of a streamed GET */
    uint64_t total;       /* the object's size from Content-Range (a 206), else 0 */
} s3_resp_t;

typedef struct qparam {
    const char *name, *value; /* value "" is written "name=" */
} qparam_t;

/* Sends r on conn with retries (store_s3.c); on 2xx returns DP_OK with resp
 * filled; resp->err is freed by the caller. */
dp_err_t s3_request_on(s3_t *s3, s3_conn_t *conn, const s3_req_t *r, s3_resp_t *resp);
/* Sorted, RFC 3986-encoded, "&"-joined query of p (sorted in place). */
dp_err_t s3_make_query(qparam_t *p, size_t n, store_buf_t *q);
s3_req_t s3_req_init(const char *method, const char *key);
/* A new connection (curl handle) for a thread; s3_conn_free undoes it. */
dp_err_t s3_conn_init(s3_conn_t *conn);
void s3_conn_free(s3_conn_t *conn);
/* 1 when the store was cancelled (settings.cancel) and conn heeds it. */
int s3_cancelled(const s3_t *s3, const s3_conn_t *conn);

/* Multipart (store_s3_mp.c). s3_put_multipart: len bytes from mem, or from
 * fd (len: its size; stream = 1: read fd to its end, size unknown, with
 * first[0..first_len) already read from it, a malloc'ed buffer the call
 * takes; NULL unless stream). Parts go up in parallel
 * (settings.parallel), one part in memory per thread; any failure or a
 * cancel aborts the upload. */
dp_err_t s3_put_multipart(s3_t *s3, const char *key, const char *mem, int fd, uint64_t len,
                          int stream, char *first, size_t first_len);
dp_err_t s3_list_uploads(dp_store_t *s, const char *prefix, dp_store_upload_fn fn, void *arg);
dp_err_t s3_abort_upload_op(dp_store_t *s, const char *key, const char *upload_id);
dp_err_t s3_check_etag(s3_t *s3, const char *key, const char *etag, const unsigned char md5[16]);

#endif
