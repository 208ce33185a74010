/* s3:// backend: S3 and MinIO through libcurl's SigV4 signer, path-style
 * URLs (endpoint/bucket/key).
 *
 * libcurl 7.88 signs the query string verbatim and, without help, hashes an
 * empty body for uploads. So every request carries x-amz-content-sha256 (the
 * real SHA-256 where the body is in hand, UNSIGNED-PAYLOAD where it streams),
 * query strings are built here sorted and RFC 3986-encoded with value-less
 * parameters as "name=", and keys are percent-encoded here.
 *
 * Every request goes through s3_request_on(): a retry loop bounded by time
 * (retry_budget_ms) with exponential backoff and jitter on connection
 * errors, 5xx but 501 and 429, ended early by settings.cancel, then one
 * translation of the outcome into dp_err_t. Downloads cut off resume with a
 * ranged GET. Uploads from the threshold on go multipart (store_s3_mp.c). */
#define _GNU_SOURCE /* sync_file_range */
#include "store/store_s3.h"

#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/clock.h"
#include "util/log.h"

#define LOG_COMP "store"

typedef struct xfer {
    s3_t *s3;
    s3_conn_t *conn;
    const s3_req_t *req;
    s3_resp_t *resp;
    uint64_t pos;              /* body bytes sent */
    size_t wlen;               /* bytes staged in conn->wbuf for req->out_fd */
    uint64_t written, flushed; /* bytes written to req->out_fd; of those, handed to writeback */
} xfer_t;

/* ---- MD5 of an uploaded file, beside the send path --------------------------------------- */

/* A thread reads the file itself (pread, from the page cache the upload
 * reads too) and hashes it while the upload runs; the sending thread reads
 * straight into curl's buffer, as without the check. Both read the same
 * range, so a match means the server holds the bytes this thread hashed;
 * a file changed during the upload can only make them differ, which the
 * check reports (it never passes a wrong object). The sum does not depend
 * on the try, so retries reuse it. Without a thread (store_thread_create
 * failed) the file is hashed before the upload. */
#define MD5_CHUNK ((size_t)256 << 10)

typedef struct file_md5 {
    int fd;
    uint64_t len;
    unsigned char sum[16];
    int ok, threaded;
    atomic_int stop;  /* the upload failed: the sum is not wanted */
    char detail[160]; /* why not ok */
    pthread_t thread;
} file_md5_t;

static void *file_md5_main(void *arg)
{
    file_md5_t *h = arg;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    char *buf = malloc(MD5_CHUNK);
    uint64_t pos = 0;
    if (!ctx || !buf || !EVP_DigestInit_ex(ctx, EVP_md5(), NULL)) {
        snprintf(h->detail, sizeof h->detail, "out of memory for the MD5");
        goto done;
    }
    while (pos < h->len) {
        if (atomic_load(&h->stop)) {
            snprintf(h->detail, sizeof h->detail, "MD5 stopped");
            goto done;
        }
        size_t want = h->len - pos < MD5_CHUNK ? (size_t)(h->len - pos) : MD5_CHUNK;
        ssize_t got;
        do got = pread(h->fd, buf, want, (off_t)pos);
        while (got < 0 && errno == EINTR);
        if (got <= 0) {
            snprintf(h->detail, sizeof h->detail, "reading for the MD5: %s",
                     got < 0 ? strerror(errno) : "file shrank during upload");
            goto done;
        }
        if (!EVP_DigestUpdate(ctx, buf, (size_t)got)) {
            snprintf(h->detail, sizeof h->detail, "MD5 failed");
            goto done;
        }
        pos += (uint64_t)got;
    }
    h->ok = EVP_DigestFinal_ex(ctx, h->sum, NULL);
    if (!h->ok) snprintf(h->detail, sizeof h->detail, "MD5 failed");
done:
    free(buf);
    EVP_MD_CTX_free(ctx);
    return NULL;
}

/* Starts hashing the first len bytes of fd (in a thread, else at once). */
static void file_md5_start(file_md5_t *h, int fd, uint64_t len)
{
    memset(h, 0, sizeof *h);
    h->fd = fd, h->len = len;
    atomic_init(&h->stop, 0);
    h->threaded = store_thread_create(&h->thread, file_md5_main, h) == 0;
    if (!h->threaded) file_md5_main(h);
}

/* Waits for the sum (wanted = 0: stops the thread early); 0 and h->detail
 * when it could not be taken. */
static int file_md5_finish(file_md5_t *h, int wanted)
{
    if (!wanted) atomic_store(&h->stop, 1);
    if (h->threaded) pthread_join(h->thread, NULL);
    h->threaded = 0;
    return h->ok;
}

/* Writes all of n bytes at off (a range of a parallel download). */
static dp_err_t pwrite_all(int fd, const void *data, size_t n, uint64_t off)
{
    const char *p = data;
    while (n) {
        ssize_t k = pwrite(fd, p, n, (off_t)off);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return dp_err_set(DP_ERR_IO, "download: %s", strerror(errno));
        p += k, n -= (size_t)k, off += (uint64_t)k;
    }
    return DP_OK;
}

/* Writes n body bytes to the output file and starts the writeback of every
 * SYNC_STEP written, so that the fsync before the rename finds little left to
 * do (it cost ~40 ms per 64 MiB at the end, ~15% of a download; with 8 MiB
 * windows ~3 ms were left, with 2 MiB ones ~0.8 ms, strace -T, 64 MiB). */
static int out_write(xfer_t *x, const void *data, size_t n)
{
    int fd = x->req->out_fd;
    const uint64_t base = x->req->range_len ? x->req->range_off : 0;
    if (x->req->range_len ? pwrite_all(fd, data, n, base + x->written)
                          : store_write_all(fd, data, n, "download")) {
        x->resp->werr = DP_ERR_IO;
        snprintf(x->resp->werr_detail, sizeof x->resp->werr_detail, "%s", dp_err_detail());
        return -1;
    }
    x->written += n;
    x->resp->streamed += n;
#if defined SYNC_FILE_RANGE_WRITE && !defined DP_STORE_NO_WRITEBACK
    if (!x->s3->cfg.no_fsync && !x->req->out_stream && x->written - x->flushed >= SYNC_STEP) {
        /* advisory: an error here shows again at fsync (without one, no
         * writeback is started: the page cache keeps the bytes, as curl's) */
        (void)sync_file_range(fd, (off_t)(base + x->flushed), (off_t)(x->written - x->flushed),
                              SYNC_FILE_RANGE_WRITE);
        x->flushed = x->written;
    }
#endif
    return 0;
}

/* Writes the staged download bytes to the output file. */
static int flush_out(xfer_t *x)
{
    if (!x->wlen) return 0;
    size_t n = x->wlen;
    x->wlen = 0;
    return out_write(x, x->conn->wbuf, n);
}

static size_t read_cb(char *buf, size_t size, size_t n, void *arg)
{
    xfer_t *x = arg;
    const s3_req_t *r = x->req;
    size_t want = size * n;
    if (want > r->len - x->pos) want = (size_t)(r->len - x->pos);
    if (!want) return 0;
    if (r->mem) {
        memcpy(buf, r->mem + x->pos, want);
    } else {
        ssize_t got;
        do got = pread(r->fd, buf, want, (off_t)(r->off + x->pos));
        while (got < 0 && errno == EINTR);
        if (got <= 0) {
            x->resp->werr = got < 0 ? DP_ERR_IO : DP_ERR_TRUNCATED;
            snprintf(x->resp->werr_detail, sizeof x->resp->werr_detail, "read: %s",
                     got < 0 ? strerror(errno) : "file shrank during upload");
            return CURL_READFUNC_ABORT;
        }
        want = (size_t)got;
    }
    x->pos += want;
    return want;
}

static size_t write_cb(char *data, size_t size, size_t n, void *arg)
{
    xfer_t *x = arg;
    size_t len = size * n;
    long status = x->resp->last_status;
    if (status < 200 || status >= 300) {
        if (x->resp->err.len < ERRBODY_MAX && store_buf_add(&x->resp->err, data, len)) return 0;
        return len;
    }
    x->resp->received += len;
    if (x->req->out_mem) {
        if (store_buf_add(x->req->out_mem, data, len)) {
            x->resp->werr = DP_ERR_NOMEM;
            snprintf(x->resp->werr_detail, sizeof x->resp->werr_detail, "response buffer");
            return 0;
        }
    } else if (x->req->out_fd >= 0) {
        if (x->wlen + len > WBUF_SIZE && flush_out(x)) return 0;
        if (!x->conn->wbuf || len >= WBUF_SIZE) {
            if (out_write(x, data, len)) return 0;
        } else {
            memcpy(x->conn->wbuf + x->wlen, data, len);
            x->wlen += len;
        }
    }
    return len;
}

/* Copies the value of header line "Name: value\r\n" into out when name matches. */
static int header_value(const char *line, size_t len, const char *name, char *out, size_t n)
{
    size_t nl = strlen(name);
    if (len <= nl || strncasecmp(line, name, nl) || line[nl] != ':') return 0;
    const char *v = line + nl + 1, *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t')) v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ')) end--;
    size_t vl = (size_t)(end - v);
    if (vl >= n) vl = n - 1;
    memcpy(out, v, vl);
    out[vl] = '\0';
    return 1;
}

static size_t header_cb(char *data, size_t size, size_t n, void *arg)
{
    xfer_t *x = arg;
    size_t len = size * n;
    s3_resp_t *r = x->resp;
    char v[128];
    if (x->s3->cfg.trace)
        x->s3->cfg.trace(DP_STORE_TRACE_HEADER_IN, data, len, x->s3->cfg.trace_arg);
    if (len > 5 && !strncmp(data, "HTTP/", 5)) { /* a new response (after 100 Continue) */
        r->etag[0] = '\0';
        r->has_length = 0;
        r->total = 0;
        const char *sp = memchr(data, ' ', len);
        r->last_status = sp && sp + 4 <= data + len ? strtol(sp + 1, NULL, 10) : 0;
    } else if (header_value(data, len, "ETag", v, sizeof v)) {
        char *e = v;
        size_t el = strlen(e);
        if (el >= 2 && e[0] == '"' && e[el - 1] == '"') {
            e[el - 1] = '\0';
            e++;
        }
        size_t el2 = strlen(e) < sizeof r->etag - 1 ? strlen(e) : sizeof r->etag - 1;
        memcpy(r->etag, e, el2);
        r->etag[el2] = '\0';
    } else if (header_value(data, len, "Content-Length", v, sizeof v)) {
        r->length = strtoull(v, NULL, 10);
        r->has_length = 1;
        if (x->req->out_mem && r->length < (1ull << 40)) { /* reserve up front */
            store_buf_t *b = x->req->out_mem;
            if (b->cap < b->len + r->length + 1) {
                char *p = realloc(b->p, b->len + r->length + 1);
                if (p) {
                    b->p = p;
                    b->cap = b->len + r->length + 1;
                }
            }
        }
    } else if (header_value(data, len, "Content-Range", v, sizeof v)) {
        const char *slash = strchr(v, '/'); /* "bytes FIRST-LAST/TOTAL" */
        r->total = slash && slash[1] != '*' ? strtoull(slash + 1, NULL, 10) : 0;
    } else if (header_value(data, len, "Last-Modified", v, sizeof v)) {
        r->mtime = (int64_t)curl_getdate(v, NULL);
    }
    return len;
}

static int debug_cb(CURL *c, curl_infotype type, char *data, size_t len, void *arg)
{
    s3_t *s3 = arg;
    if (type == CURLINFO_HEADER_OUT)
        s3->cfg.trace(DP_STORE_TRACE_HEADER_OUT, data, len, s3->cfg.trace_arg);
    else if (type == CURLINFO_DATA_OUT)
        s3->cfg.trace(DP_STORE_TRACE_DATA_OUT, data, len, s3->cfg.trace_arg);
    return 0;
}

/* The URL of key (NULL: the bucket) with an optional query. */
static dp_err_t make_url(s3_t *s3, const char *key, const char *query, store_buf_t *url)
{
    dp_err_t err = store_buf_addf(url, "%s/%s", s3->endpoint, s3->bucket);
    if (!err && key) err = store_buf_add(url, "/", 1);
    if (!err && key) err = store_uri_encode(url, key, 1);
    if (!err && query && *query) err = store_buf_addf(url, "?%s", query);
    return err;
}

int s3_cancelled(const s3_t *s3, const s3_conn_t *conn)
{
    return s3->cfg.cancel && *s3->cfg.cancel && !conn->no_cancel;
}

/* Progress callback: ends the transfer when the store is cancelled. */
static int progress_cb(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt, (void)dn, (void)ut, (void)un;
    xfer_t *x = arg;
    return s3_cancelled(x->s3, x->conn);
}

static CURLcode perform_once(s3_t *s3, s3_conn_t *conn, const s3_req_t *r, const char *url,
                             struct curl_slist *hdrs, s3_resp_t *resp)
{
    CURL *c = conn->curl;
    xfer_t x = {s3, conn, r, resp, 0, 0, resp->streamed, resp->streamed};
    resp->last_status = 0;
    curl_easy_reset(c);
    conn->errbuf[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_AWS_SIGV4, s3->sigv4);
    curl_easy_setopt(c, CURLOPT_USERNAME, s3->access_key);
    curl_easy_setopt(c, CURLOPT_PASSWORD, s3->secret_key);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, conn->errbuf);
    if (s3->cfg.cancel && !conn->no_cancel) {
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, progress_cb);
        curl_easy_setopt(c, CURLOPT_XFERINFODATA, &x);
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    }
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, s3->cfg.connect_timeout_ms);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, s3->cfg.stall_timeout_s);
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 512L * 1024);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &x);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &x);
    if (s3->cfg.trace) {
        curl_easy_setopt(c, CURLOPT_DEBUGFUNCTION, debug_cb);
        curl_easy_setopt(c, CURLOPT_DEBUGDATA, s3);
        curl_easy_setopt(c, CURLOPT_VERBOSE, 1L);
    }
    if (!strcmp(r->method, "HEAD")) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (!strcmp(r->method, "PUT")) {
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        if (r->len > (uint64_t)UPLOAD_BUFFER)
            curl_easy_setopt(c, CURLOPT_UPLOAD_BUFFERSIZE, UPLOAD_BUFFER);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, read_cb);
        curl_easy_setopt(c, CURLOPT_READDATA, &x);
        curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->len);
    } else if (!strcmp(r->method, "POST")) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, read_cb);
        curl_easy_setopt(c, CURLOPT_READDATA, &x);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->len);
    } else if (strcmp(r->method, "GET")) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r->method);
    }
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
    if (flush_out(&x) && rc == CURLE_OK) rc = CURLE_WRITE_ERROR;
    return rc;
}

static int retryable_curl(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return 1;
    default:
        return 0;
    }
}

/* "s3://bucket/key" for messages. */
static void where(const s3_t *s3, const s3_req_t *r, char *out, size_t n)
{
    snprintf(out, n, "s3://%s/%s", s3->bucket, r->key ? r->key : "");
}

/* Turns a final non-2xx answer into an error with the S3 code and message. */
static dp_err_t http_error(s3_t *s3, const s3_req_t *r, s3_resp_t *resp, int tries)
{
    char w[512];
    where(s3, r, w, sizeof w);
    return store_s3_http_error(w, r->method, resp->status, resp->err.p, tries);
}

/* The headers of one try of r; range_from > 0: a ranged GET of the rest,
 * If-Match etag. NULL when out of memory. */
static struct curl_slist *make_headers(const s3_t *s3, const s3_req_t *r, uint64_t range_from,
                                       const char *etag)
{
    struct curl_slist *hdrs = NULL, *h;
    char line[256];
    snprintf(line, sizeof line, "x-amz-content-sha256: %s", r->sha256 ? r->sha256 : EMPTY_SHA256);
    if (!(hdrs = curl_slist_append(hdrs, line))) return NULL;
    if (r->md5_b64) {
        snprintf(line, sizeof line, "Content-MD5: %s", r->md5_b64);
        if (!(h = curl_slist_append(hdrs, line))) goto fail;
    }
    if (r->ctype) {
        snprintf(line, sizeof line, "Content-Type: %s", r->ctype);
        if (!(h = curl_slist_append(hdrs, line))) goto fail;
    }
    if (r->range_len) {
        snprintf(line, sizeof line, "Range: bytes=%llu-%llu",
                 (unsigned long long)(r->range_off + range_from),
                 (unsigned long long)(r->range_off + r->range_len - 1));
        if (!(h = curl_slist_append(hdrs, line))) goto fail;
        if (etag && *etag) {
            snprintf(line, sizeof line, "If-Match: \"%s\"", etag);
            if (!(h = curl_slist_append(hdrs, line))) goto fail;
        }
    } else if (range_from) {
        snprintf(line, sizeof line, "Range: bytes=%llu-", (unsigned long long)range_from);
        if (!(h = curl_slist_append(hdrs, line))) goto fail;
        if (etag && *etag) {
            snprintf(line, sizeof line, "If-Match: \"%s\"", etag);
            if (!(h = curl_slist_append(hdrs, line))) goto fail;
        }
    }
    if (s3->token) {
        store_buf_t t = {0};
        h = NULL;
        if (!store_buf_addf(&t, "x-amz-security-token: %s", s3->token))
            h = curl_slist_append(hdrs, t.p);
        if (t.p) OPENSSL_cleanse(t.p, t.len);
        store_buf_free(&t);
        if (!h) goto fail;
    }
    return hdrs;
fail:
    curl_slist_free_all(hdrs);
    return NULL;
}

/* Sleeps ms, in steps, returning early (1) when the store is cancelled. */
static int backoff_sleep(const s3_t *s3, const s3_conn_t *conn, long ms)
{
    while (ms > 0) {
        long step = ms < 50 ? ms : 50;
        struct timespec ts = {0, step * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
            if (s3_cancelled(s3, conn)) return 1;
        }
        ms -= step;
        if (s3_cancelled(s3, conn)) return 1;
    }
    return 0;
}

/* Sends r on conn with retries; on 2xx returns DP_OK with resp filled.
 * resp->err is freed by the caller. Retries (connection errors, 5xx but 501,
 * 429) go on with exponential backoff and jitter until retry_budget_ms has
 * passed (or max_retries when set). */
dp_err_t s3_request_on(s3_t *s3, s3_conn_t *conn, const s3_req_t *r, s3_resp_t *resp)
{
    store_buf_t url = {0};
    dp_err_t err = make_url(s3, r->key, r->query, &url);
    if (err) return err;
    const dp_store_settings_t *cfg = &s3->cfg;
    uint64_t t0 = dp_clock_ns();
    char w[512];
    where(s3, r, w, sizeof w);
    resp->streamed = 0;
    resp->stream_etag[0] = '\0';
    for (int attempt = 0;; attempt++) {
        size_t out_start = r->out_mem ? r->out_mem->len : 0;
        resp->err.len = 0;
        resp->received = 0;
        resp->werr = DP_OK;
        resp->etag[0] = '\0';
        resp->has_length = 0;
        if (s3_cancelled(s3, conn)) {
            err = dp_err_set(DP_ERR_INTERRUPTED, "%s: %s: cancelled", w, r->method);
            break;
        }
        if (r->out_fd >= 0 && !r->resume && attempt > 0) {
            resp->streamed = 0;
            if (ftruncate(r->out_fd, 0) != 0 || lseek(r->out_fd, 0, SEEK_SET) != 0) {
                err = dp_err_set(DP_ERR_IO, "%s: rewinding the download: %s", w, strerror(errno));
                break;
            }
        }
        uint64_t from = r->resume ? resp->streamed : 0;
        struct curl_slist *hdrs =
            make_headers(s3, r, from, r->if_match ? r->if_match : resp->stream_etag);
        if (!hdrs) {
            err = dp_err_set(DP_ERR_NOMEM, "store: headers");
            break;
        }
        CURLcode rc = perform_once(s3, conn, r, url.p, hdrs, resp);
        curl_slist_free_all(hdrs);
        if (r->resume && !from && resp->etag[0] && resp->status >= 200 && resp->status < 300)
            snprintf(resp->stream_etag, sizeof resp->stream_etag, "%s", resp->etag);
        if (rc == CURLE_OK && resp->status >= 200 && resp->status < 300) {
            /* a range: 206, but the first range of an object may be answered
             * 200, the whole object (a server that ignores Range) */
            if ((from || (r->range_len && r->range_off)) && resp->status != 206) {
                err = dp_err_set(DP_ERR_REMOTE, "%s: GET: resuming at %llu: HTTP %ld, not 206", w,
                                 (unsigned long long)from, resp->status);
                break;
            }
            /* a server that ignores If-Match (s3rver does) serves a range of
             * the object that replaced this one: its ETag says so */
            const char *want = r->if_match ? r->if_match : resp->stream_etag;
            if ((from || r->range_len) && want[0] && resp->etag[0] && strcmp(resp->etag, want)) {
                err = dp_err_set(DP_ERR_REMOTE,
                                 "%s: GET: range at %llu: the object changed during the download "
                                 "(ETag %s, was %s)",
                                 w, (unsigned long long)(r->range_off + from), resp->etag, want);
                break;
            }
            err = DP_OK;
            break;
        }
        if (resp->werr) {
            err = dp_err_set(resp->werr, "%s: %s: %s", w, r->method, resp->werr_detail);
            break;
        }
        if (rc == CURLE_ABORTED_BY_CALLBACK && s3_cancelled(s3, conn)) {
            err = dp_err_set(DP_ERR_INTERRUPTED, "%s: %s: cancelled", w, r->method);
            break;
        }
        int retry = rc == CURLE_OK
                        ? (resp->status >= 500 && resp->status != 501) || resp->status == 429
                        : retryable_curl(rc);
        char why[300];
        if (rc != CURLE_OK) {
            snprintf(why, sizeof why, "%s (curl %d: %s)", curl_easy_strerror(rc), (int)rc,
                     conn->errbuf);
            err = dp_err_set(rc == CURLE_ABORTED_BY_CALLBACK ? DP_ERR_INTERRUPTED
                             : retryable_curl(rc)            ? DP_ERR_NETWORK
                                                             : DP_ERR_REMOTE,
                             "%s: %s: %s", w, r->method, why);
        } else {
            err = http_error(s3, r, resp, attempt + 1);
            snprintf(why, sizeof why, "HTTP %ld", resp->status);
        }
        if (!retry) break;
        char detail[1024];
        snprintf(detail, sizeof detail, "%s", dp_err_detail());
        uint64_t spent_ms = (dp_clock_ns() - t0) / 1000000u;
        if (cfg->max_retries < 0 || attempt >= cfg->max_retries) {
            dp_err_set(err, "%s (gave up after %d %s, %.1f s)", detail, attempt + 1,
                       attempt ? "tries" : "try", (double)spent_ms / 1e3);
            break;
        }
        long cap = cfg->retry_base_ms;
        for (int i = 0; i < attempt && cap < cfg->retry_max_ms; i++) cap *= 2;
        if (cap > cfg->retry_max_ms) cap = cfg->retry_max_ms;
        long delay = cap / 2 + (long)(rand_r(&conn->rng) % (unsigned)(cap / 2 + 1));
        if (spent_ms >= (uint64_t)cfg->retry_budget_ms) {
            dp_err_set(err, "%s (gave up after %d %s, %.1f s)", detail, attempt + 1,
                       attempt ? "tries" : "try", (double)spent_ms / 1e3);
            break;
        }
        if (spent_ms + (uint64_t)delay > (uint64_t)cfg->retry_budget_ms) /* one last try */
            delay = (long)((uint64_t)cfg->retry_budget_ms - spent_ms);
        dp_warn(LOG_COMP, "%s %s: %s; retry %d in %ld ms (%.1f of %.1f s spent)", r->method, w, why,
                attempt + 1, delay, (double)spent_ms / 1e3, (double)cfg->retry_budget_ms / 1e3);
        if (r->out_mem) r->out_mem->len = out_start;
        if (backoff_sleep(s3, conn, delay)) {
            err = dp_err_set(DP_ERR_INTERRUPTED, "%s: %s: cancelled", w, r->method);
            break;
        }
    }
    store_buf_free(&url);
    if (!err && strcmp(r->method, "HEAD") && resp->has_length && resp->received != resp->length &&
        (r->out_mem || r->out_fd >= 0))
        err = dp_err_set(DP_ERR_TRUNCATED, "%s: got %llu bytes, Content-Length says %llu", w,
                         (unsigned long long)resp->received, (unsigned long long)resp->length);
    if (!err) dp_debug(LOG_COMP, "%s %s: HTTP %ld", r->method, w, resp->status);
    return err;
}

static dp_err_t s3_request(s3_t *s3, const s3_req_t *r, s3_resp_t *resp)
{
    return s3_request_on(s3, &s3->conn, r, resp);
}

/* ---- query strings -------------------------------------------------------------------- */

static int cmp_param(const void *a, const void *b)
{
    const qparam_t *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->value, y->value);
}

/* Sorted, RFC 3986-encoded, "&"-joined; names here are plain ASCII so sorting
 * the raw names sorts the encoded ones. */
dp_err_t s3_make_query(qparam_t *p, size_t n, store_buf_t *q)
{
    qsort(p, n, sizeof *p, cmp_param);
    dp_err_t err = DP_OK;
    for (size_t i = 0; i < n && !err; i++) {
        if (i) err = store_buf_add(q, "&", 1);
        if (!err) err = store_uri_encode(q, p[i].name, 0);
        if (!err) err = store_buf_add(q, "=", 1);
        if (!err) err = store_uri_encode(q, p[i].value, 0);
    }
    if (!err && !q->p) err = store_buf_add(q, "", 0);
    return err;
}

/* ---- objects -------------------------------------------------------------------------- */

s3_req_t s3_req_init(const char *method, const char *key)
{
    s3_req_t r = {.method = method, .key = key, .fd = -1, .out_fd = -1};
    return r;
}

dp_err_t s3_check_etag(s3_t *s3, const char *key, const char *etag, const unsigned char md5[16])
{
    if (!*etag || store_etag_matches(etag, md5)) return DP_OK;
    char hex[33];
    store_hex(md5, 16, hex);
    return dp_err_set(DP_ERR_MISMATCH, "s3://%s/%s: ETag %s does not match the MD5 %s sent",
                      s3->bucket, key, etag, hex);
}

static dp_err_t put_single_mem(s3_t *s3, const char *key, const void *data, size_t len)
{
    char sha[65], b64[32];
    unsigned char md5[16];
    store_sha256_hex(data, len, sha);
    store_md5(data, len, md5);
    store_base64(md5, 16, b64);
    s3_req_t r = s3_req_init("PUT", key);
    r.sha256 = sha;
    r.md5_b64 = b64;
    r.ctype = "application/octet-stream";
    r.mem = data;
    r.len = len;
    s3_resp_t resp = {0};
    dp_err_t err = s3_request(s3, &r, &resp);
    store_buf_free(&resp.err);
    return err ? err : s3_check_etag(s3, key, resp.etag, md5);
}

static dp_err_t s3_put_mem(dp_store_t *s, const char *key, const void *data, size_t len)
{
    s3_t *s3 = s->impl;
    if (len >= s3->cfg.multipart_threshold)
        return s3_put_multipart(s3, key, data, -1, len, 0, NULL, 0);
    return put_single_mem(s3, key, data, len);
}

static dp_err_t s3_put_file(dp_store_t *s, const char *key, const char *path)
{
    s3_t *s3 = s->impl;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dp_err_set(errno == ENOENT ? DP_ERR_NOTFOUND : DP_ERR_IO, "%s: %s", path,
                          strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return dp_err_set(DP_ERR_INVALID, "%s: not a regular file", path);
    }
    uint64_t len = (uint64_t)st.st_size;
    dp_err_t err;
    if (len >= s3->cfg.multipart_threshold) {
        err = s3_put_multipart(s3, key, NULL, fd, len, 0, NULL, 0);
        close(fd);
        return err;
    }
    /* single PUT, streamed: the body is signed as UNSIGNED-PAYLOAD (a first
     * pass to hash it cost ~30% of the throughput); the file's MD5, taken
     * by a thread beside the upload (file_md5_t), is checked against the
     * ETag and a mismatching object is deleted. The MD5 is the one cost
     * curl does not pay: ~0.09 s of CPU per 64 MiB (OpenSSL, ~720 MB/s);
     * settings.no_verify_md5 drops it, for measurements only. */
    file_md5_t md5;
    const int check = !s3->cfg.no_verify_md5;
    if (check) file_md5_start(&md5, fd, len);
    s3_req_t r = s3_req_init("PUT", key);
    r.sha256 = UNSIGNED;
    r.ctype = "application/octet-stream";
    r.fd = fd;
    r.len = len;
    s3_resp_t resp = {0};
    err = s3_request(s3, &r, &resp);
    store_buf_free(&resp.err);
    const int sent = !err;
    if (check && !file_md5_finish(&md5, sent) && sent)
        err = dp_err_set(DP_ERR_IO, "%s: %s", path, md5.detail);
    else if (check && sent)
        err = s3_check_etag(s3, key, resp.etag, md5.sum);
    if (check && sent && err) { /* stored but not verified, or not matching: it goes */
        char saved[1024];
        snprintf(saved, sizeof saved, "%s", dp_err_detail());
        s3_req_t d = s3_req_init("DELETE", key);
        s3_resp_t dr = {0};
        if (s3_request(s3, &d, &dr))
            dp_warn(LOG_COMP, "could not delete the corrupt s3://%s/%s: %s", s3->bucket, key,
                    dp_err_detail());
        store_buf_free(&dr.err);
        dp_err_set(err, "%s (object deleted)", saved);
    }
    close(fd);
    return err;
}

static dp_err_t s3_get_mem(dp_store_t *s, const char *key, void **data, size_t *len)
{
    s3_t *s3 = s->impl;
    store_buf_t b = {0};
    s3_req_t r = s3_req_init("GET", key);
    r.out_mem = &b;
    s3_resp_t resp = {0};
    dp_err_t err = s3_request(s3, &r, &resp);
    if (!err && !b.p) err = store_buf_add(&b, "", 0);
    store_buf_free(&resp.err);
    if (err) {
        store_buf_free(&b);
        return err;
    }
    *data = b.p;
    *len = b.len;
    return DP_OK;
}

/* ---- ranged parallel downloads -------------------------------------------------------- */

/* One range of key into fd at its offset, on conn: a cut transfer resumes
 * where it stopped; etag (If-Match, and each answer's ETag compared with it)
 * keeps every range to one object. */
static dp_err_t get_range(s3_t *s3, s3_conn_t *conn, const char *key, int fd, uint64_t off,
                          uint64_t len, const char *etag, s3_resp_t *resp)
{
    s3_req_t r = s3_req_init("GET", key);
    r.out_fd = fd;
    r.resume = 1;
    r.range_off = off;
    r.range_len = len;
    r.if_match = etag && *etag ? etag : NULL;
    dp_err_t err = s3_request_on(s3, conn, &r, resp);
    if (!err && resp->streamed != len)
        err = dp_err_set(DP_ERR_TRUNCATED, "s3://%s/%s: range at %llu: %llu bytes, not %llu",
                         s3->bucket, key, (unsigned long long)off,
                         (unsigned long long)resp->streamed, (unsigned long long)len);
    return err;
}

typedef struct ranges {
    s3_t *s3;
    const char *key;
    int fd;
    const char *etag;
    uint64_t total, part;
    pthread_mutex_t mu;
    uint64_t next; /* offset of the next range to fetch */
    dp_err_t err;
    char detail[1024];
} ranges_t;

/* One downloader: takes the next range and fetches it on its own
 * connection (one 1 MiB staging buffer), until none is left or one fails. */
static void *range_getter(void *arg)
{
    ranges_t *g = arg;
    s3_conn_t conn;
    dp_err_t err = s3_conn_init(&conn);
    if (!err) conn.wbuf = malloc(WBUF_SIZE); /* NULL: unstaged writes, correct */
    for (;;) {
        pthread_mutex_lock(&g->mu);
        if (err && !g->err) {
            g->err = err;
            snprintf(g->detail, sizeof g->detail, "%s", dp_err_detail());
        }
        uint64_t off = g->next;
        int stop = g->err || off >= g->total;
        if (!stop) g->next += g->part;
        pthread_mutex_unlock(&g->mu);
        if (stop) break;
        uint64_t len = g->total - off < g->part ? g->total - off : g->part;
        s3_resp_t resp = {0};
        err = get_range(g->s3, &conn, g->key, g->fd, off, len, g->etag, &resp);
        store_buf_free(&resp.err);
    }
    s3_conn_free(&conn);
    return NULL;
}

/* key into fd in ranges of part_size fetched by up to settings.parallel
 * threads, one range each at a time, written at their offsets, every range
 * with If-Match on the ETag a HEAD gave first. *whole = 0 when the object
 * fits one range (or has no ETag to hold the ranges to), for one plain GET.
 * (A HEAD, not a first range: s3rver answers a range of an empty object with
 * a byte it never sends.) */
static dp_err_t get_parallel(s3_t *s3, const char *key, int fd, int *whole)
{
    uint64_t part = s3->cfg.part_size ? s3->cfg.part_size : (8ull << 20);
    *whole = 0;
    s3_req_t h = s3_req_init("HEAD", key);
    s3_resp_t head = {0};
    dp_err_t err = s3_request(s3, &h, &head);
    store_buf_free(&head.err);
    if (err) return err;
    if (!head.has_length || head.length <= part || !head.etag[0]) return DP_OK;
    *whole = 1;
    ranges_t g = {.s3 = s3, .key = key, .fd = fd, .total = head.length, .part = part};
    g.etag = head.etag;
    pthread_mutex_init(&g.mu, NULL);
    uint64_t nranges = (head.length + part - 1) / part;
    int nthreads = (uint64_t)s3->cfg.parallel < nranges ? s3->cfg.parallel : (int)nranges;
    pthread_t th[64];
    int started = 0;
    for (int t = 0; t < nthreads && t < 64; t++) {
        if (store_thread_create(&th[started], range_getter, &g)) break; /* fewer getters */
        started++;
    }
    if (!started) range_getter(&g);
    for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
    pthread_mutex_destroy(&g.mu);
    if (g.err) return dp_err_set(g.err, "%s", g.detail);
    struct stat st;
    if (fstat(fd, &st) != 0 || (uint64_t)st.st_size != head.length)
        return dp_err_set(DP_ERR_TRUNCATED, "s3://%s/%s: downloaded %lld bytes of %llu", s3->bucket,
                          key, (long long)st.st_size, (unsigned long long)head.length);
    dp_debug(LOG_COMP, "GET s3://%s/%s: %llu bytes in %llu ranges, %d in flight", s3->bucket, key,
             (unsigned long long)head.length, (unsigned long long)nranges, nthreads);
    return DP_OK;
}

static dp_err_t s3_get_file(dp_store_t *s, const char *key, const char *path)
{
    s3_t *s3 = s->impl;
    char *tmp;
    int fd;
    dp_err_t err = store_tmp_open(path, &tmp, &fd);
    if (err) return err;
    if (!s3->conn.wbuf) s3->conn.wbuf = malloc(WBUF_SIZE); /* NULL: unstaged writes, correct */
    int whole = 0;
    if (s3->cfg.parallel > 1) err = get_parallel(s3, key, fd, &whole);
    if (!err && !whole) { /* one GET */
        s3_req_t r = s3_req_init("GET", key);
        r.out_fd = fd;
        r.resume = 1;
        s3_resp_t resp = {0};
        err = s3_request(s3, &r, &resp);
        store_buf_free(&resp.err);
    }
    if (!err) {
        err = store_tmp_commit(fd, tmp, path, !s3->cfg.no_fsync);
    } else {
        store_tmp_abort(fd, tmp);
    }
    free(tmp);
    return err;
}

/* A stream: the first part is read; a stream that ends within it (and below
 * the threshold) is one PUT, else the rest follows as multipart. */
static dp_err_t s3_put_fd(dp_store_t *s, const char *key, int fd)
{
    s3_t *s3 = s->impl;
    uint64_t part = s3->cfg.part_size ? s3->cfg.part_size : (8ull << 20);
    if (part > s3->cfg.multipart_threshold && s3->cfg.multipart_threshold >= MIN_PART)
        part = s3->cfg.multipart_threshold;
    char *first = malloc((size_t)part);
    if (!first)
        return dp_err_set(DP_ERR_NOMEM, "store: a part of %llu bytes", (unsigned long long)part);
    size_t got = 0;
    dp_err_t err = DP_OK;
    while (got < part) {
        ssize_t k = read(fd, first + got, (size_t)part - got);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) {
            err = dp_err_set(DP_ERR_IO, "reading the input: %s", strerror(errno));
            break;
        }
        if (k == 0) break;
        got += (size_t)k;
    }
    if (!err && (got < part && got < s3->cfg.multipart_threshold))
        err = put_single_mem(s3, key, first, got);
    else if (!err)
        return s3_put_multipart(s3, key, NULL, fd, 0, 1, first, got); /* takes first */
    free(first);
    return err;
}

static dp_err_t s3_get_fd(dp_store_t *s, const char *key, int fd)
{
    s3_t *s3 = s->impl;
    if (!s3->conn.wbuf) s3->conn.wbuf = malloc(WBUF_SIZE);
    s3_req_t r = s3_req_init("GET", key);
    r.out_fd = fd;
    r.out_stream = 1;
    r.resume = 1;
    s3_resp_t resp = {0};
    dp_err_t err = s3_request(s3, &r, &resp);
    store_buf_free(&resp.err);
    return err;
}

static dp_err_t s3_head(dp_store_t *s, const char *key, dp_store_info_t *info)
{
    s3_t *s3 = s->impl;
    s3_req_t r = s3_req_init("HEAD", key);
    s3_resp_t resp = {0};
    dp_err_t err = s3_request(s3, &r, &resp);
    store_buf_free(&resp.err);
    if (err) return err;
    info->size = resp.length;
    info->mtime = resp.mtime > 0 ? resp.mtime : 0;
    snprintf(info->etag, sizeof info->etag, "%s", resp.etag);
    return DP_OK;
}

static dp_err_t s3_del(dp_store_t *s, const char *key)
{
    s3_t *s3 = s->impl;
    s3_req_t r = s3_req_init("DELETE", key);
    s3_resp_t resp = {0};
    dp_err_t err = s3_request(s3, &r, &resp);
    store_buf_free(&resp.err);
    if (err == DP_ERR_NOTFOUND) err = DP_OK;
    return err;
}

static dp_err_t s3_list(dp_store_t *s, const char *prefix, dp_store_list_fn fn, void *arg)
{
    s3_t *s3 = s->impl;
    char *token = NULL;
    dp_err_t err = DP_OK;
    int stop = 0;
    while (!err && !stop) {
        store_buf_t q = {0}, body = {0};
        qparam_t p[3] = {{"list-type", "2"}, {"prefix", prefix}};
        size_t np = 2;
        if (token) p[np++] = (qparam_t){"continuation-token", token};
        err = s3_make_query(p, np, &q);
        s3_req_t r = s3_req_init("GET", NULL);
        r.query = q.p;
        r.out_mem = &body;
        s3_resp_t resp = {0};
        if (!err) err = s3_request(s3, &r, &resp);
        store_buf_free(&resp.err);
        store_buf_free(&q);
        free(token);
        token = NULL;
        size_t count;
        if (!err) err = store_s3_list_page(body.p, s3->bucket, fn, arg, &count, &stop, &token);
        store_buf_free(&body);
        if (!token) break;
    }
    free(token);
    return err;
}

/* ---- settings and credentials ----------------------------------------------------------- */

static void wipe_free(char *s)
{
    if (!s) return;
    OPENSSL_cleanse(s, strlen(s));
    free(s);
}

dp_err_t s3_conn_init(s3_conn_t *conn)
{
    memset(conn, 0, sizeof *conn);
    conn->rng = (unsigned)dp_clock_ns() ^ (unsigned)getpid() ^ (unsigned)(uintptr_t)conn;
    if (!(conn->curl = curl_easy_init())) return dp_err_set(DP_ERR_NOMEM, "store: curl_easy_init");
    return DP_OK;
}

void s3_conn_free(s3_conn_t *conn)
{
    if (conn->curl) curl_easy_cleanup(conn->curl);
    free(conn->wbuf);
    memset(conn, 0, sizeof *conn);
}

static void s3_destroy(void *impl)
{
    s3_t *s3 = impl;
    s3_conn_free(&s3->conn);
    free(s3->endpoint);
    free(s3->region);
    free(s3->sigv4);
    free(s3->bucket);
    wipe_free(s3->access_key);
    wipe_free(s3->secret_key);
    wipe_free(s3->token);
    free(s3);
}

/* Reads a small secret file, dropping trailing whitespace; never logs content. */
static dp_err_t read_secret(const char *path, char **out)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return dp_err_set(DP_ERR_AUTH, "%s: cannot read credentials file: %s", path,
                          strerror(errno));
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ')) buf[--n] = '\0';
    if (!n) return dp_err_set(DP_ERR_AUTH, "%s: credentials file is empty", path);
    *out = strdup(buf);
    OPENSSL_cleanse(buf, sizeof buf);
    return *out ? DP_OK : dp_err_set(DP_ERR_NOMEM, "store: credentials");
}

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static dp_err_t load_credentials(s3_t *s3, const dp_store_settings_t *st)
{
    dp_err_t err = DP_OK;
    const char *src;
    if (st->access_key && st->secret_key) {
        src = "settings";
        s3->access_key = strdup(st->access_key);
        s3->secret_key = strdup(st->secret_key);
        if (st->session_token) s3->token = strdup(st->session_token);
    } else if (st->access_key_file && st->secret_key_file) {
        src = "settings files";
        err = read_secret(st->access_key_file, &s3->access_key);
        if (!err) err = read_secret(st->secret_key_file, &s3->secret_key);
        if (!err && st->session_token_file) err = read_secret(st->session_token_file, &s3->token);
        if (err) return err;
    } else if (env("AWS_ACCESS_KEY_ID") && env("AWS_SECRET_ACCESS_KEY")) {
        src = "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY";
        s3->access_key = strdup(env("AWS_ACCESS_KEY_ID"));
        s3->secret_key = strdup(env("AWS_SECRET_ACCESS_KEY"));
        if (env("AWS_SESSION_TOKEN")) s3->token = strdup(env("AWS_SESSION_TOKEN"));
    } else if (env("DP_STORE_ACCESS_KEY_FILE") && env("DP_STORE_SECRET_KEY_FILE")) {
        src = "DP_STORE_ACCESS_KEY_FILE/DP_STORE_SECRET_KEY_FILE";
        err = read_secret(env("DP_STORE_ACCESS_KEY_FILE"), &s3->access_key);
        if (!err) err = read_secret(env("DP_STORE_SECRET_KEY_FILE"), &s3->secret_key);
        if (!err && env("DP_STORE_SESSION_TOKEN_FILE"))
            err = read_secret(env("DP_STORE_SESSION_TOKEN_FILE"), &s3->token);
        if (err) return err;
    } else {
        return dp_err_set(DP_ERR_AUTH,
                          "s3://%s: no credentials: set AWS_ACCESS_KEY_ID and "
                          "AWS_SECRET_ACCESS_KEY, or DP_STORE_ACCESS_KEY_FILE and "
                          "DP_STORE_SECRET_KEY_FILE",
                          s3->bucket);
    }
    if (!s3->access_key || !s3->secret_key) return dp_err_set(DP_ERR_NOMEM, "store: credentials");
    dp_debug(LOG_COMP, "s3://%s: credentials from %s (secret not shown)", s3->bucket, src);
    return DP_OK;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

static const store_ops_t s3_ops = {
    .put_mem = s3_put_mem,
    .put_file = s3_put_file,
    .get_mem = s3_get_mem,
    .get_file = s3_get_file,
    .head = s3_head,
    .list = s3_list,
    .del = s3_del,
    .put_fd = s3_put_fd,
    .get_fd = s3_get_fd,
    .list_uploads = s3_list_uploads,
    .abort_upload = s3_abort_upload_op,
    .destroy = s3_destroy,
};

dp_err_t store_s3_open(dp_store_t *s, const char *bucket, const dp_store_settings_t *st)
{
    pthread_once(&curl_once, curl_init);
    s3_t *s3 = calloc(1, sizeof *s3);
    if (!s3) return dp_err_set(DP_ERR_NOMEM, "store: s3");
    dp_err_t err = DP_ERR_NOMEM;
    s3->cfg = *st;
    dp_store_settings_t *c = &s3->cfg;
    c->endpoint = c->region = c->access_key = c->secret_key = c->session_token = NULL;
    c->access_key_file = c->secret_key_file = c->session_token_file = NULL;
    if (!c->max_retries) c->max_retries = INT_MAX; /* bounded by the budget */
    if (c->retry_base_ms <= 0) c->retry_base_ms = 100;
    if (c->retry_max_ms <= 0) c->retry_max_ms = 2000;
    if (c->retry_budget_ms <= 0 && env("DP_STORE_RETRY_FOR_S")) {
        char *end;
        long v = strtol(env("DP_STORE_RETRY_FOR_S"), &end, 10);
        if (*end || v < 1 || v > 86400) {
            err = dp_err_set(DP_ERR_INVALID,
                             "DP_STORE_RETRY_FOR_S='%s': expects whole seconds in "
                             "[1, 86400]",
                             env("DP_STORE_RETRY_FOR_S"));
            goto fail;
        }
        c->retry_budget_ms = v * 1000;
    }
    if (c->retry_budget_ms <= 0) c->retry_budget_ms = 60000;
    if (c->connect_timeout_ms <= 0) c->connect_timeout_ms = 5000;
    if (c->stall_timeout_s <= 0) c->stall_timeout_s = 30;
    if (!c->multipart_threshold) c->multipart_threshold = (64ull << 20) + 1;
    if (c->parallel <= 0) c->parallel = 4;
    if (c->parallel > 64) c->parallel = 64;
    if (c->part_size && c->part_size < MIN_PART) {
        err = dp_err_set(DP_ERR_RANGE, "store: part_size %llu below the S3 minimum of 5 MiB",
                         (unsigned long long)c->part_size);
        goto fail;
    }
    if (!(s3->bucket = strdup(bucket))) goto fail;

    const char *region = st->region                  ? st->region
                         : env("AWS_REGION")         ? env("AWS_REGION")
                         : env("AWS_DEFAULT_REGION") ? env("AWS_DEFAULT_REGION")
                                                     : "us-east-1";
    if (!(s3->region = strdup(region))) goto fail;
    const char *ep = st->endpoint                 ? st->endpoint
                     : env("DP_STORE_ENDPOINT")   ? env("DP_STORE_ENDPOINT")
                     : env("AWS_ENDPOINT_URL_S3") ? env("AWS_ENDPOINT_URL_S3")
                                                  : env("AWS_ENDPOINT_URL");
    store_buf_t b = {0};
    if (ep)
        err = store_buf_addf(&b, "%s", ep);
    else
        err = store_buf_addf(&b, "https://s3.%s.amazonaws.com", region);
    if (err) goto fail;
    while (b.len && b.p[b.len - 1] == '/') b.p[--b.len] = '\0';
    s3->endpoint = b.p;
    if (strncmp(s3->endpoint, "http://", 7) && strncmp(s3->endpoint, "https://", 8)) {
        err = dp_err_set(DP_ERR_INVALID, "store: endpoint '%s' is not http:// or https://",
                         s3->endpoint);
        goto fail;
    }
    b = (store_buf_t){0};
    if ((err = store_buf_addf(&b, "aws:amz:%s:s3", s3->region))) goto fail;
    s3->sigv4 = b.p;
    if ((err = load_credentials(s3, st))) goto fail;
    if ((err = s3_conn_init(&s3->conn))) goto fail;
    s->ops = &s3_ops;
    s->impl = s3;
    return DP_OK;
fail:
    if (err == DP_ERR_NOMEM) dp_err_set(err, "store: s3");
    s3_destroy(s3);
    return err;
}
