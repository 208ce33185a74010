/* Multipart uploads of the s3:// backend: parts sent in parallel, each
 * thread on its own connection with one part in memory; a failed part is
 * retried by itself (s3_request_on's time budget); an unfinished upload of
 * the same key whose stored parts (ListParts) are this object's parts is
 * continued, sending only the parts it lacks; an upload ID the server
 * lost (NoSuchUpload: a restart with fresh state) starts a new upload once,
 * and any other failure or a cancel aborts the upload, itself retried within
 * the retry budget, so no unfinished upload is left behind unless the
 * server cannot be reached at all; then the warning names the upload ID and
 * the command that removes it. Also listing and aborting unfinished uploads
 * (what a SIGKILL leaves). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store_s3.h"
#include "util/log.h"

#define LOG_COMP "store"

typedef struct mp {
    s3_t *s3;
    const char *key;
    const char *mem; /* the object in memory, or NULL: from fd */
    int fd;
    uint64_t len; /* known size (not stream) */
    int stream;   /* fd is read to its end, size unknown */
    char *first;  /* stream: part 1, already read; owned, then a sender's buffer */
    size_t first_len;
    uint64_t part;
    char upload_id[1024];
    unsigned char (*md5s)[16]; /* MAX_PARTS */
    pthread_mutex_t mu;
    int next;   /* the next part to send (0-based) */
    int nparts; /* known parts; a stream: -1 until it ends */
    dp_err_t err;
    char detail[1024];
    int vanished; /* the server answered NoSuchUpload */
    char *done;   /* not stream: done[i], part i+1 is already stored (resumed); or NULL */
} mp_t;

static dp_err_t initiate(s3_t *s3, const char *key, char *upload_id, size_t n)
{
    store_buf_t q = {0}, body = {0};
    qparam_t p[] = {{"uploads", ""}};
    dp_err_t err = s3_make_query(p, 1, &q);
    s3_req_t r = s3_req_init("POST", key);
    r.query = q.p;
    r.ctype = "application/octet-stream";
    r.mem = "";
    r.out_mem = &body;
    s3_resp_t resp = {0};
    if (!err) err = s3_request_on(s3, &s3->conn, &r, &resp);
    if (!err) err = store_s3_upload_id(body.p, s3->bucket, key, upload_id, n);
    store_buf_free(&resp.err);
    store_buf_free(&body);
    store_buf_free(&q);
    return err;
}

/* 1 when a failed answer says the upload ID is gone. */
static int no_such_upload(const s3_resp_t *resp)
{
    char code[64], msg[8];
    store_s3_error_fields(resp->err.p, code, sizeof code, msg, sizeof msg);
    return resp->status == 404 && !strcmp(code, "NoSuchUpload");
}

/* Sends one part, signed UNSIGNED-PAYLOAD with Content-MD5 (the server checks
 * the MD5, and the ETag is checked against it here), so the only hash taken
 * is the MD5. */
static dp_err_t upload_part(s3_t *s3, s3_conn_t *conn, const char *key, const char *upload_id,
                            int num, const char *data, size_t len, unsigned char md5[16],
                            int *vanished)
{
    char b64[32], nbuf[16];
    store_md5(data, len, md5);
    store_base64(md5, 16, b64);
    snprintf(nbuf, sizeof nbuf, "%d", num);
    store_buf_t q = {0};
    qparam_t p[] = {{"uploadId", upload_id}, {"partNumber", nbuf}};
    dp_err_t err = s3_make_query(p, 2, &q);
    s3_req_t r = s3_req_init("PUT", key);
    r.query = q.p;
    r.sha256 = UNSIGNED;
    r.md5_b64 = b64;
    r.ctype = "application/octet-stream";
    r.mem = data;
    r.len = len;
    s3_resp_t resp = {0};
    if (!err) err = s3_request_on(s3, conn, &r, &resp);
    if (err && no_such_upload(&resp)) *vanished = 1;
    if (!err && !resp.etag[0])
        err = dp_err_set(DP_ERR_FORMAT, "s3://%s/%s: part %d: no ETag", s3->bucket, key, num);
    if (!err && !store_etag_matches(resp.etag, md5))
        err = dp_err_set(DP_ERR_MISMATCH, "s3://%s/%s: part %d: ETag %s is not the MD5 sent",
                         s3->bucket, key, num, resp.etag);
    store_buf_free(&resp.err);
    store_buf_free(&q);
    return err;
}

static dp_err_t complete(s3_t *s3, const char *key, const char *upload_id,
                         const unsigned char (*md5s)[16], int nparts, int *vanished)
{
    store_buf_t q = {0}, xml = {0}, body = {0};
    qparam_t p[] = {{"uploadId", upload_id}};
    dp_err_t err = s3_make_query(p, 1, &q);
    if (!err) err = store_buf_addf(&xml, "<CompleteMultipartUpload>");
    for (int i = 0; i < nparts && !err; i++) {
        char hex[33];
        store_hex(md5s[i], 16, hex);
        err = store_buf_addf(&xml, "<Part><PartNumber>%d</PartNumber><ETag>\"%s\"</ETag></Part>",
                             i + 1, hex);
    }
    if (!err) err = store_buf_addf(&xml, "</CompleteMultipartUpload>");
    char sha[65];
    s3_req_t r = s3_req_init("POST", key);
    s3_resp_t resp = {0};
    if (!err) {
        store_sha256_hex(xml.p, xml.len, sha);
        r.query = q.p;
        r.sha256 = sha;
        r.ctype = "application/xml";
        r.mem = xml.p;
        r.len = xml.len;
        r.out_mem = &body;
        err = s3_request_on(s3, &s3->conn, &r, &resp);
        if (err && no_such_upload(&resp)) *vanished = 1;
    }
    if (!err) err = store_s3_complete_answer(body.p, s3->bucket, key, md5s, nparts);
    store_buf_free(&resp.err);
    store_buf_free(&body);
    store_buf_free(&xml);
    store_buf_free(&q);
    return err;
}

/* DELETE ?uploadId= on conn; 404 (NoSuchUpload) is DP_ERR_NOTFOUND. */
static dp_err_t abort_request(s3_t *s3, s3_conn_t *conn, const char *key, const char *upload_id)
{
    store_buf_t q = {0};
    qparam_t p[] = {{"uploadId", upload_id}};
    s3_req_t r = s3_req_init("DELETE", key);
    s3_resp_t resp = {0};
    dp_err_t err = s3_make_query(p, 1, &q);
    if (!err) {
        r.query = q.p;
        err = s3_request_on(s3, conn, &r, &resp);
        if (err && resp.status == 404)
            err = dp_err_set(DP_ERR_NOTFOUND, "s3://%s/%s: no unfinished upload %s", s3->bucket,
                             key, upload_id);
    }
    store_buf_free(&resp.err);
    store_buf_free(&q);
    return err;
}

/* Aborts a failed upload even when the store is cancelled, within the retry
 * budget. The error detail of the failure is kept; when the abort fails,
 * the upload ID and how to remove it are added to it and logged. */
static void abort_failed(s3_t *s3, const char *key, const char *upload_id, dp_err_t failure)
{
    char saved[1024];
    snprintf(saved, sizeof saved, "%s", dp_err_detail());
    s3->conn.no_cancel = 1;
    dp_err_t err = abort_request(s3, &s3->conn, key, upload_id);
    s3->conn.no_cancel = 0;
    if (!err || err == DP_ERR_NOTFOUND) {
        dp_debug(LOG_COMP, "aborted upload %s of s3://%s/%s", upload_id, s3->bucket, key);
        dp_err_set(failure, "%s", saved);
        return;
    }
    dp_warn(LOG_COMP,
            "the unfinished upload %s of s3://%s/%s could not be aborted (%s); its parts stay "
            "on the server until: dp-store uploads abort --upload-id %s s3://%s/%s",
            upload_id, s3->bucket, key, dp_err_detail(), upload_id, s3->bucket, key);
    dp_err_set(failure,
               "%s (upload %s left on the server: dp-store uploads abort --upload-id %s "
               "s3://%s/%s)",
               saved, upload_id, upload_id, s3->bucket, key);
}

/* Reads up to n bytes of a stream; the count read (< n only at its end), or
 * -1 with the error set. */
static ssize_t read_full(int fd, char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = read(fd, buf + got, n - got);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) {
            dp_err_set(DP_ERR_IO, "read: %s", strerror(errno));
            return -1;
        }
        if (k == 0) break;
        got += (size_t)k;
    }
    return (ssize_t)got;
}

static void record(mp_t *m, dp_err_t err, int vanished)
{
    if (!m->err) {
        m->err = err;
        snprintf(m->detail, sizeof m->detail, "%s", dp_err_detail());
    }
    if (vanished) m->vanished = 1;
}

/* One sender: takes the next part, reads it (a stream: under the lock, in
 * order), sends it; until the parts run out or one fails. */
static void *sender(void *arg)
{
    mp_t *m = arg;
    s3_t *s3 = m->s3;
    s3_conn_t conn = {0}, *c = &conn;
    char *buf = NULL; /* allocated when first needed: a stream's part 1 needs none */
    dp_err_t err = s3_conn_init(c);
    pthread_mutex_lock(&m->mu);
    if (err) record(m, err, 0);
    while (!m->err) {
        if (s3_cancelled(s3, c)) {
            record(m, dp_err_set(DP_ERR_INTERRUPTED, "s3://%s/%s: cancelled", s3->bucket, m->key),
                   0);
            break;
        }
        if (m->nparts >= 0 && m->next >= m->nparts) break;
        int i = m->next++;
        if (m->done && m->done[i]) continue; /* stored by the upload this one continues */
        const char *data = NULL;
        size_t n = 0;
        if (m->stream) {
            if (i == 0) {
                data = m->first, n = m->first_len;
            } else if (i >= MAX_PARTS) {
                record(m,
                       dp_err_set(DP_ERR_RANGE,
                                  "s3://%s/%s: the stream is longer than %d parts of %llu bytes",
                                  s3->bucket, m->key, MAX_PARTS, (unsigned long long)m->part),
                       0);
                break;
            } else {
                if (!buf && !(buf = malloc((size_t)m->part))) {
                    record(m,
                           dp_err_set(DP_ERR_NOMEM, "store: a part of %llu bytes",
                                      (unsigned long long)m->part),
                           0);
                    break;
                }
                ssize_t k = read_full(m->fd, buf, (size_t)m->part);
                if (k < 0) {
                    record(m, DP_ERR_IO, 0);
                    break;
                }
                data = buf, n = (size_t)k;
            }
            if (n < m->part) m->nparts = n ? i + 1 : i; /* the end of the stream */
            if (!n) break;
        }
        pthread_mutex_unlock(&m->mu);
        if (!m->stream && !m->mem && !buf && !(buf = malloc((size_t)m->part)))
            err = dp_err_set(DP_ERR_NOMEM, "store: a part of %llu bytes",
                             (unsigned long long)m->part);
        if (!m->stream && !err) {
            uint64_t off = (uint64_t)i * m->part;
            n = (size_t)(m->len - off < m->part ? m->len - off : m->part);
            data = m->mem ? m->mem + off : buf;
            for (size_t got = 0; !m->mem && got < n && !err;) {
                ssize_t k = pread(m->fd, buf + got, n - got, (off_t)(off + got));
                if (k < 0 && errno == EINTR) continue;
                if (k < 0)
                    err = dp_err_set(DP_ERR_IO, "read: %s", strerror(errno));
                else if (k == 0)
                    err = dp_err_set(DP_ERR_TRUNCATED, "file shrank during upload");
                else
                    got += (size_t)k;
            }
        }
        int vanished = 0;
        if (!err)
            err = upload_part(s3, c, m->key, m->upload_id, i + 1, data, n, m->md5s[i], &vanished);
        pthread_mutex_lock(&m->mu);
        if (err) record(m, err, vanished);
        if (m->stream && i == 0 && !buf && m->first_len == m->part) { /* one buffer less */
            buf = m->first;
            m->first = NULL;
        }
    }
    pthread_mutex_unlock(&m->mu);
    free(buf);
    s3_conn_free(c);
    return NULL;
}

/* Sends every part with up to nthreads senders (the calling thread is one). */
static dp_err_t send_parts(mp_t *m, int nthreads)
{
    pthread_t th[64];
    int started = 0;
    for (int t = 1; t < nthreads && t < 64; t++) {
        if (store_thread_create(&th[started], sender, m)) break; /* fewer senders */
        started++;
    }
    sender(m);
    for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
    if (m->err) dp_err_set(m->err, "%s", m->detail);
    return m->err;
}

/* ---- continuing an unfinished upload ------------------------------------------------ */

typedef struct newest {
    const char *key;
    char id[1024];
    int64_t initiated;
    int found;
} newest_t;

static int keep_newest(const dp_store_upload_t *u, void *arg)
{
    newest_t *w = arg;
    if (strcmp(u->key, w->key) || strlen(u->upload_id) >= sizeof w->id) return 0;
    if (!w->found || u->initiated >= w->initiated) {
        snprintf(w->id, sizeof w->id, "%s", u->upload_id);
        w->initiated = u->initiated;
        w->found = 1;
    }
    return 0;
}

static dp_err_t uploads_on(s3_t *s3, const char *prefix, dp_store_upload_fn fn, void *arg);

typedef struct stored {
    uint64_t size;
    char etag[40]; /* "" : not stored */
} stored_t;

typedef struct parts_seen {
    stored_t *parts; /* MAX_PARTS */
    int count;
} parts_seen_t;

static void on_part(int number, uint64_t size, const char *etag, void *arg)
{
    parts_seen_t *p = arg;
    stored_t *st = &p->parts[number - 1];
    if (!st->etag[0]) p->count++;
    st->size = size;
    snprintf(st->etag, sizeof st->etag, "%s", *etag ? etag : "-");
}

/* Every part of upload_id the server holds (ListParts, all pages). */
static dp_err_t list_parts(s3_t *s3, const char *key, const char *upload_id, parts_seen_t *seen)
{
    dp_err_t err = DP_OK;
    int marker = 0;
    do {
        store_buf_t q = {0}, body = {0};
        char mbuf[16];
        snprintf(mbuf, sizeof mbuf, "%d", marker);
        qparam_t p[2] = {{"uploadId", upload_id}, {"part-number-marker", mbuf}};
        err = s3_make_query(p, marker ? 2 : 1, &q);
        s3_req_t r = s3_req_init("GET", key);
        r.query = q.p;
        r.out_mem = &body;
        s3_resp_t resp = {0};
        if (!err) err = s3_request_on(s3, &s3->conn, &r, &resp);
        store_buf_free(&resp.err);
        store_buf_free(&q);
        int next = 0;
        if (!err) err = store_s3_parts_page(body.p, s3->bucket, key, on_part, seen, &next);
        store_buf_free(&body);
        if (!err && next <= marker) break; /* the last page, or a marker that does not advance */
        marker = next;
    } while (!err);
    return err;
}

/* Continues the newest unfinished upload of the object's key when every part
 * it holds is a part of this object (same number, size and MD5, read from
 * mem or the file here): m->upload_id, m->md5s and m->done take its parts,
 * and 1 is returned. Anything else (no such upload, a server without
 * ListMultipartUploads or ListParts, a part that differs: another object's
 * upload, left alone) returns 0 and a new upload is made. */
static int resume(mp_t *m)
{
    s3_t *s3 = m->s3;
    newest_t w = {.key = m->key};
    if (uploads_on(s3, m->key, keep_newest, &w) || !w.found) return 0;
    parts_seen_t seen = {calloc(MAX_PARTS, sizeof(stored_t)), 0};
    char *buf = m->mem ? NULL : malloc((size_t)m->part);
    int ok = seen.parts && (m->mem || buf);
    if (ok && list_parts(s3, m->key, w.id, &seen)) {
        dp_debug(LOG_COMP, "s3://%s/%s: listing the parts of upload %s: %s", s3->bucket, m->key,
                 w.id, dp_err_detail());
        ok = 0;
    }
    ok = ok && seen.count > 0; /* nothing to tell whose upload it is */
    for (int i = 0; ok && i < MAX_PARTS; i++) {
        const stored_t *st = &seen.parts[i];
        if (!st->etag[0]) continue;
        uint64_t off = (uint64_t)i * m->part;
        size_t n = (size_t)(m->len - off < m->part ? m->len - off : m->part);
        if (i >= m->nparts || st->size != n) {
            ok = 0;
            break;
        }
        const char *data = m->mem ? m->mem + off : buf;
        for (size_t got = 0; !m->mem && got < n;) {
            ssize_t k = pread(m->fd, buf + got, n - got, (off_t)(off + got));
            if (k < 0 && errno == EINTR) continue;
            if (k <= 0) {
                ok = 0;
                break;
            }
            got += (size_t)k;
        }
        if (!ok) break;
        store_md5(data, n, m->md5s[i]);
        ok = store_etag_matches(st->etag, m->md5s[i]);
    }
    if (ok) {
        for (int i = 0; i < m->nparts; i++) m->done[i] = seen.parts[i].etag[0] != '\0';
        snprintf(m->upload_id, sizeof m->upload_id, "%s", w.id);
        dp_debug(LOG_COMP, "multipart s3://%s/%s: continuing upload %s: %d of %d parts stored",
                 s3->bucket, m->key, w.id, seen.count, m->nparts);
    } else {
        dp_debug(LOG_COMP, "multipart s3://%s/%s: upload %s is not continued", s3->bucket, m->key,
                 w.id);
    }
    free(buf);
    free(seen.parts);
    return ok;
}

/* 1 when the object at key is already the one these parts make (its ETag is
 * the multipart ETag of md5s): a completion whose answer was lost took
 * effect, or another put of the same object completed the same upload. */
static int completed_already(s3_t *s3, const char *key, const unsigned char (*md5s)[16], int nparts)
{
    s3_req_t r = s3_req_init("HEAD", key);
    s3_resp_t resp = {0};
    dp_err_t err = s3_request_on(s3, &s3->conn, &r, &resp);
    store_buf_free(&resp.err);
    if (err || !strchr(resp.etag, '-')) return 0;
    store_buf_t xml = {0};
    int ok = !store_buf_addf(&xml, "<ETag>%s</ETag>", resp.etag) &&
             !store_s3_complete_answer(xml.p, s3->bucket, key, md5s, nparts);
    store_buf_free(&xml);
    return ok;
}

dp_err_t s3_put_multipart(s3_t *s3, const char *key, const char *mem, int fd, uint64_t len,
                          int stream, char *first, size_t first_len)
{
    mp_t m = {.s3 = s3, .key = key, .mem = mem, .fd = fd, .len = len, .stream = stream};
    m.first = first, m.first_len = first_len;
    m.part = s3->cfg.part_size ? s3->cfg.part_size : (8ull << 20);
    if (stream) m.part = first_len;
    while (!stream && (len + m.part - 1) / m.part > MAX_PARTS) m.part *= 2;
    m.nparts = stream ? -1 : (int)((len + m.part - 1) / m.part);
    if (m.nparts == 0) m.nparts = 1;
    int nthreads = s3->cfg.parallel > 0 ? s3->cfg.parallel : 4;
    if (!stream && nthreads > m.nparts) nthreads = m.nparts;
    if (!(m.md5s = calloc(MAX_PARTS, 16))) return dp_err_set(DP_ERR_NOMEM, "store: part MD5s");
    if (!stream && !(m.done = calloc((size_t)m.nparts, 1))) {
        free(m.md5s);
        return dp_err_set(DP_ERR_NOMEM, "store: part MD5s");
    }
    pthread_mutex_init(&m.mu, NULL);
    dp_err_t err = DP_OK;
    for (int round = 0;; round++) {
        if (!(round == 0 && !stream && resume(&m))) {
            if (m.done) memset(m.done, 0, (size_t)m.nparts);
            if ((err = initiate(s3, key, m.upload_id, sizeof m.upload_id))) break;
        }
        dp_debug(LOG_COMP, "multipart s3://%s/%s: upload %s, %s parts of %llu bytes, %d in flight",
                 s3->bucket, key, m.upload_id, stream ? "streamed" : "known",
                 (unsigned long long)m.part, nthreads);
        m.next = 0, m.err = DP_OK, m.vanished = 0;
        err = send_parts(&m, nthreads);
        int vanished = m.vanished;
        if (!err)
            err = complete(s3, key, m.upload_id, (const unsigned char(*)[16])m.md5s, m.nparts,
                           &vanished);
        if (err && vanished &&
            completed_already(s3, key, (const unsigned char(*)[16])m.md5s, m.nparts)) {
            dp_debug(LOG_COMP, "s3://%s/%s: upload %s was completed already", s3->bucket, key,
                     m.upload_id);
            err = DP_OK;
        }
        if (!err) break;
        if (vanished && round == 0 && !stream) { /* the server lost it: once more, anew */
            dp_warn(LOG_COMP,
                    "s3://%s/%s: the server lost upload %s (NoSuchUpload); starting a "
                    "new upload",
                    s3->bucket, key, m.upload_id);
            continue;
        }
        if (vanished) {
            err = dp_err_set(DP_ERR_REMOTE,
                             "s3://%s/%s: the server lost the upload %s (NoSuchUpload)%s",
                             s3->bucket, key, m.upload_id,
                             stream ? "; a stream cannot be read again" : ", twice");
            break;
        }
        abort_failed(s3, key, m.upload_id, err);
        break;
    }
    pthread_mutex_destroy(&m.mu);
    free(m.first);
    free(m.md5s);
    free(m.done);
    return err;
}

/* ---- unfinished uploads ---------------------------------------------------------------- */

typedef struct strip_up {
    size_t n; /* the root's prefix, taken off keys */
    dp_store_upload_fn fn;
    void *arg;
} strip_up_t;

static int strip_upload(const dp_store_upload_t *u, void *arg)
{
    strip_up_t *st = arg;
    dp_store_upload_t rel = *u;
    rel.key = strlen(u->key) >= st->n ? u->key + st->n : u->key;
    return st->fn(&rel, st->arg);
}

/* Every unfinished upload under prefix (full keys), all pages. */
static dp_err_t uploads_on(s3_t *s3, const char *prefix, dp_store_upload_fn fn, void *arg)
{
    char *kmark = NULL, *imark = NULL;
    dp_err_t err = DP_OK;
    int stop = 0;
    while (!err && !stop) {
        store_buf_t q = {0}, body = {0};
        qparam_t p[4] = {{"uploads", ""}, {"prefix", prefix}};
        size_t np = 2;
        if (kmark) p[np++] = (qparam_t){"key-marker", kmark};
        if (imark) p[np++] = (qparam_t){"upload-id-marker", imark};
        err = s3_make_query(p, np, &q);
        s3_req_t r = s3_req_init("GET", NULL);
        r.query = q.p;
        r.out_mem = &body;
        s3_resp_t resp = {0};
        if (!err) err = s3_request_on(s3, &s3->conn, &r, &resp);
        if (err && resp.status == 501)
            err = dp_err_set(DP_ERR_UNSUPPORTED,
                             "s3://%s: this server does not list multipart uploads (HTTP 501)",
                             s3->bucket);
        store_buf_free(&resp.err);
        store_buf_free(&q);
        free(kmark);
        free(imark);
        kmark = imark = NULL;
        if (!err) err = store_s3_uploads_page(body.p, s3->bucket, fn, arg, &stop, &kmark, &imark);
        store_buf_free(&body);
        if (!kmark) break;
    }
    free(kmark);
    free(imark);
    return err;
}

dp_err_t s3_list_uploads(dp_store_t *s, const char *prefix, dp_store_upload_fn fn, void *arg)
{
    strip_up_t st = {strlen(s->prefix), fn, arg};
    return uploads_on(s->impl, prefix, strip_upload, &st);
}

dp_err_t s3_abort_upload_op(dp_store_t *s, const char *key, const char *upload_id)
{
    s3_t *s3 = s->impl;
    return abort_request(s3, &s3->conn, key, upload_id);
}
