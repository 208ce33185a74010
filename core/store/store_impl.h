/* Internals shared by the store front end and its two backends: the backend
 * table, the store object, and small helpers (growable buffer, RFC 3986
 * encoding, SHA-256/MD5, XML field extraction, atomic local files). */
#ifndef DP_STORE_STORE_IMPL_H
#define DP_STORE_STORE_IMPL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

typedef struct store_ops {
    dp_err_t (*put_mem)(dp_store_t *s, const char *key, const void *data, size_t len);
    dp_err_t (*put_file)(dp_store_t *s, const char *key, const char *path);
    dp_err_t (*get_mem)(dp_store_t *s, const char *key, void **data, size_t *len);
    dp_err_t (*get_file)(dp_store_t *s, const char *key, const char *path);
    dp_err_t (*head)(dp_store_t *s, const char *key, dp_store_info_t *info);
    dp_err_t (*list)(dp_store_t *s, const char *prefix, dp_store_list_fn fn, void *arg);
    dp_err_t (*del)(dp_store_t *s, const char *key);
    dp_err_t (*put_fd)(dp_store_t *s, const char *key, int fd);
    dp_err_t (*get_fd)(dp_store_t *s, const char *key, int fd);
    dp_err_t (*list_uploads)(dp_store_t *s, const char *prefix, dp_store_upload_fn fn, void *arg);
    dp_err_t (*abort_upload)(dp_store_t *s, const char *key, const char *upload_id);
    void (*destroy)(void *impl);
} store_ops_t;

struct dp_store {
    const store_ops_t *ops;
    char *root;     /* the URI it was opened on */
    char *prefix;   /* prepended to every key: "" or "a/b/" */
    char *head_key; /* storage behind dp_store_info_t.key of head() */
    void *impl;
};

/* Backends: fill s->ops and s->impl. where is the part of the root URI after
 * the scheme ("bucket" for s3://bucket/prefix, "/dir" for file:///dir). */
dp_err_t store_s3_open(dp_store_t *s, const char *bucket, const dp_store_settings_t *settings);
dp_err_t store_file_open(dp_store_t *s, const char *dir);

/* A growable byte buffer, always NUL-terminated when p != NULL. */
typedef struct store_buf {
    char *p;
    size_t len, cap;
} store_buf_t;

dp_err_t store_buf_add(store_buf_t *b, const void *data, size_t len);
dp_err_t store_buf_addf(store_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void store_buf_free(store_buf_t *b);

/* Appends s percent-encoded per RFC 3986: unreserved characters kept, '/' kept
 * when keep_slash, everything else %XX in upper case. */
dp_err_t store_uri_encode(store_buf_t *b, const char *s, int keep_slash);

/* Hex SHA-256 (65 bytes with NUL) and base64 MD5 (25 bytes) of a buffer. */
void store_sha256_hex(const void *data, size_t len, char out[65]);
void store_md5(const void *data, size_t len, unsigned char out[16]);
void store_hex(const unsigned char *in, size_t n, char *out);
/* 1 when etag (hex, either case, no quotes) is the hex of md5. */
int store_etag_matches(const char *etag, const unsigned char md5[16]);
void store_base64(const unsigned char *in, size_t n, char *out);

/* Text of the first <tag>...</tag> at or after *pos in xml, entities decoded,
 * into out (truncated to n). Advances *pos past it when pos is not NULL.
 * Returns 1 if found, 0 if not. */
int store_xml_field(const char *xml, const char *tag, char *out, size_t n, size_t *pos);

/* S3 answers, bytes to results (store_s3_xml.c): no I/O, so fuzz/fuzz_s3.c
 * can call them on anything. xml is the body as received, NUL-terminated (read
 * up to a NUL inside), or NULL for none; errors name bucket (and key).
 *
 * store_s3_list_page: one ListObjectsV2 page. Calls fn for each <Contents>
 * with a <Key>, in order (key, size, mtime, ETag without quotes), until fn
 * returns nonzero (then *stopped = 1); *count is the number of calls. *next
 * is the continuation token when <IsTruncated> is true (a new string, caller
 * frees), else NULL. DP_ERR_FORMAT for an unterminated <Contents> or a
 * truncated page without a token. */
dp_err_t store_s3_list_page(const char *xml, const char *bucket, dp_store_list_fn fn, void *arg,
                            size_t *count, int *stopped, char **next);
/* Code and Message of an <Error> body into code and msg (truncated to ncode
 * and nmsg; "" when absent). */
void store_s3_error_fields(const char *xml, char *code, size_t ncode, char *msg, size_t nmsg);
/* The error for a final non-2xx answer of status with body: DP_ERR_NOTFOUND
 * for 404 (but NoSuchBucket), DP_ERR_AUTH for 401 and 403, else
 * DP_ERR_REMOTE; the detail has where ("s3://bucket/key"), method, status,
 * the S3 code and message, and tries > 1 says it gave up after retries. */
dp_err_t store_s3_http_error(const char *where, const char *method, long status, const char *body,
                             int tries);
/* One ListMultipartUploads page: fn for each <Upload> with a <Key> and an
 * <UploadId>, in order, until fn returns nonzero (*stopped = 1). When
 * <IsTruncated> is true, *next_key and *next_id are the markers of the next
 * page (new strings, caller frees), else NULL; DP_ERR_FORMAT for an
 * unterminated <Upload> or a truncated page without markers. */
dp_err_t store_s3_uploads_page(const char *xml, const char *bucket, dp_store_upload_fn fn,
                               void *arg, int *stopped, char **next_key, char **next_id);
/* One ListParts page: fn for each <Part> with a <PartNumber> from 1 to
 * 10,000, in order (number, Size, ETag without quotes). When <IsTruncated> is
 * true, *next is the NextPartNumberMarker (1 to 10,000), else 0;
 * DP_ERR_FORMAT for an unterminated <Part> or a truncated page without a
 * marker. */
typedef void (*store_part_fn)(int number, uint64_t size, const char *etag, void *arg);
dp_err_t store_s3_parts_page(const char *xml, const char *bucket, const char *key, store_part_fn fn,
                             void *arg, int *next);
/* The UploadId of an InitiateMultipartUpload answer into id (truncated to n
 * bytes); DP_ERR_FORMAT when there is none. */
dp_err_t store_s3_upload_id(const char *xml, const char *bucket, const char *key, char *id,
                            size_t n);
/* Checks a 200 answer to CompleteMultipartUpload for the nparts part MD5s
 * sent: an <Error> in it is DP_ERR_REMOTE; an ETag "HEX-N" that is not the
 * MD5 of the part MD5s with N = nparts is DP_ERR_MISMATCH. */
dp_err_t store_s3_complete_answer(const char *xml, const char *bucket, const char *key,
                                  const unsigned char (*md5s)[16], int nparts);

/* Atomic local write: opens a new temporary file beside path (*tmp is a new
 * string, caller frees) and holds an flock on it until commit or abort;
 * first removes the temporaries of path that no process holds (those of
 * killed runs). Then store_tmp_commit() fsyncs, renames it over path
 * and fsyncs the directory (durable = 0: renames only, still atomic but not
 * durable across a crash), or store_tmp_abort() removes it. Both close fd. */
#define STORE_TMP_MARK ".dp-tmp-" /* temporary names: path STORE_TMP_MARK XXXXXX */
dp_err_t store_tmp_open(const char *path, char **tmp, int *fd);
dp_err_t store_tmp_commit(int fd, const char *tmp, const char *path, int durable);
void store_tmp_abort(int fd, const char *tmp);

/* pthread_create with every signal blocked in the new thread: the store's own
 * threads (multipart senders, range getters, the MD5 thread) never take the
 * application's signals, which go to its threads as without them (a cancel
 * flag set by a handler; timeout(1) sends SIGTERM twice at once, which two
 * threads would each take, as two signals). */
int store_thread_create(pthread_t *thread, void *(*fn)(void *), void *arg);

/* Writes all of len bytes to fd, retrying on EINTR and short writes. */
dp_err_t store_write_all(int fd, const void *data, size_t len, const char *what);

#endif
