/* libFuzzer target for the S3 answer parsers of core/store (store_s3_xml.c).
 * Byte 0 picks the answer, byte 1 a parameter, the rest is the body:
 *   0  ListObjectsV2 page; byte 1: stop after that many objects (0: never)
 *   1  error body and its dp_err_t; byte 1: the HTTP status (from a table)
 *   2  InitiateMultipartUpload (UploadId)
 *   3  CompleteMultipartUpload; byte 1: the part count, 1..4
 *   4  ListMultipartUploads page; byte 1: stop after that many uploads (0: never)
 *   5  ListParts page
 * Besides "no crash": every key, ETag and token is a NUL-terminated string
 * within its buffer, a page's count is what the callback saw, stopping at k
 * gives the first k objects of the full page, and errors carry their kind
 * and a detail naming the bucket. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define KEY_MAX 4096 /* store_s3_list_page's key buffer */

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) __builtin_trap();                                                                \
    } while (0)

typedef struct seen {
    size_t calls, stop_at; /* stop_at 0: never stop */
    size_t prefix_at;      /* record hash after this many calls */
    size_t body_len;
    uint64_t hash, prefix_hash; /* of the objects in order; of the first prefix_at */
} seen_t;

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static int on_object(const dp_store_info_t *info, void *arg)
{
    seen_t *s = arg;
    CHECK(info->key);
    size_t kl = strnlen(info->key, KEY_MAX);
    CHECK(kl < KEY_MAX && kl <= s->body_len); /* entities only shrink */
    size_t el = strnlen(info->etag, sizeof info->etag);
    CHECK(el < sizeof info->etag);
    s->hash = mix(s->hash, info->key, kl + 1);
    s->hash = mix(s->hash, info->etag, el + 1);
    s->hash = mix(s->hash, &info->size, sizeof info->size);
    s->hash = mix(s->hash, &info->mtime, sizeof info->mtime);
    if (++s->calls == s->prefix_at) s->prefix_hash = s->hash;
    return s->stop_at && s->calls == s->stop_at;
}

static size_t count_of(const char *s, const char *what)
{
    size_t n = 0;
    for (const char *p = s; (p = strstr(p, what)); p += strlen(what)) n++;
    return n;
}

static dp_err_t list(const char *xml, seen_t *seen, size_t *count, int *stopped, char **next)
{
    seen->hash = 0xcbf29ce484222325ull;
    seen->calls = 0;
    *next = (char *)count; /* must be reset */
    dp_err_t err = store_s3_list_page(xml, "fuzz-bucket", on_object, seen, count, stopped, next);
    CHECK(*count == seen->calls && *stopped == (seen->stop_at && seen->calls == seen->stop_at));
    if (err) {
        CHECK(err == DP_ERR_FORMAT && !*next && strstr(dp_err_detail(), "s3://fuzz-bucket"));
        return err;
    }
    /* A token exactly when the page says it is truncated: the text of its
     * first <IsTruncated>, character references decoded ("&#116;rue" is
     * "true": the literal text is not required), read as the parser does
     * with the shared field reader, into the parser's 16 bytes. */
    char trunc[16] = "";
    store_xml_field(xml, "IsTruncated", trunc, sizeof trunc, NULL);
    CHECK(!*next == !!strcmp(trunc, "true"));
    if (*next) {
        CHECK(strlen(*next) < 2048);
        free(*next);
        *next = NULL;
    }
    return err;
}

static void fuzz_list(const char *xml, size_t len, unsigned param)
{
    seen_t all = {.body_len = len};
    size_t count, n;
    int stopped;
    char *next;
    dp_err_t err = list(xml, &all, &n, &stopped, &next);
    CHECK(n <= count_of(xml, "<Contents>"));
    if (!param || !n) return;
    /* stopped at k: the first k objects of the whole page, and the same ones */
    seen_t again = {.prefix_at = 1 + param % n, .body_len = len};
    CHECK(list(xml, &again, &count, &stopped, &next) == err);
    CHECK(count == n && again.hash == all.hash);
    seen_t part = {.stop_at = again.prefix_at, .body_len = len};
    list(xml, &part, &count, &stopped, &next);
    CHECK(stopped && count == part.stop_at && part.hash == again.prefix_hash);
}

static void fuzz_error(const char *xml, unsigned param)
{
    static const long statuses[] = {400, 401, 403, 404, 405, 409, 412, 429, 500, 501, 503, 301};
    long st = statuses[param % (sizeof statuses / sizeof statuses[0])];
    char code[128], msg[512];
    store_s3_error_fields(xml, code, sizeof code, msg, sizeof msg);
    CHECK(strnlen(code, sizeof code) < sizeof code && strnlen(msg, sizeof msg) < sizeof msg);
    dp_err_t err = store_s3_http_error("s3://fuzz-bucket/k", "GET", st, xml, 1 + (int)(param & 1));
    dp_err_t want = st == 404 && strcmp(code, "NoSuchUpload") ? DP_ERR_NOTFOUND
                    : st == 401 || st == 403                  ? DP_ERR_AUTH
                                                              : DP_ERR_REMOTE;
    CHECK(err == want && !strncmp(dp_err_detail(), "s3://fuzz-bucket", 16));
    /* no body at all: the same kind */
    CHECK(store_s3_http_error("s3://b/k", "PUT", st, NULL, 1) == (st == 404 ? DP_ERR_NOTFOUND
                                                                  : st == 401 || st == 403
                                                                      ? DP_ERR_AUTH
                                                                      : DP_ERR_REMOTE));
}

static void fuzz_initiate(const char *xml)
{
    char id[1024]; /* put_multipart's */
    dp_err_t err = store_s3_upload_id(xml, "fuzz-bucket", "k", id, sizeof id);
    if (err) {
        CHECK(err == DP_ERR_FORMAT && strstr(dp_err_detail(), "s3://fuzz-bucket/k"));
        return;
    }
    CHECK(strnlen(id, sizeof id) < sizeof id && strstr(xml, "<UploadId>"));
    char small[8]; /* truncated (before entities are decoded), still a string */
    CHECK(!store_s3_upload_id(xml, "fuzz-bucket", "k", small, sizeof small));
    CHECK(strnlen(small, sizeof small) < sizeof small);
}

static void fuzz_complete(const char *xml, unsigned param)
{
    int nparts = 1 + (int)(param % 4);
    unsigned char md5s[4][16];
    for (int i = 0; i < 4; i++) memset(md5s[i], i + 1, 16); /* as the seeds assume */
    dp_err_t err =
        store_s3_complete_answer(xml, "fuzz-bucket", "k", (const unsigned char(*)[16])md5s, nparts);
    if (strstr(xml, "<Error>")) CHECK(err == DP_ERR_REMOTE);
    CHECK(err == DP_OK || err == DP_ERR_REMOTE || err == DP_ERR_MISMATCH);
    if (err) CHECK(strstr(dp_err_detail(), "s3://fuzz-bucket/k"));
}

typedef struct up_seen {
    size_t calls, stop_at, body_len;
} up_seen_t;

static int on_upload(const dp_store_upload_t *u, void *arg)
{
    up_seen_t *s = arg;
    CHECK(u->key && u->upload_id);
    size_t kl = strnlen(u->key, KEY_MAX), il = strnlen(u->upload_id, 2048);
    CHECK(kl < KEY_MAX && kl <= s->body_len && il < 2048 && il <= s->body_len);
    return s->stop_at && ++s->calls == s->stop_at;
}

static void fuzz_uploads(const char *xml, size_t len, unsigned param)
{
    up_seen_t seen = {.stop_at = param, .body_len = len};
    int stopped = 0;
    char *nk = (char *)&seen, *ni = (char *)&seen; /* must be reset */
    dp_err_t err = store_s3_uploads_page(xml, "fuzz-bucket", on_upload, &seen, &stopped, &nk, &ni);
    CHECK(!nk == !ni);
    if (err) {
        CHECK((err == DP_ERR_FORMAT || err == DP_ERR_NOMEM) && !nk &&
              strstr(dp_err_detail(), "s3://fuzz-bucket"));
        return;
    }
    CHECK(stopped == (param && seen.calls == param));
    CHECK(seen.calls <= count_of(xml, "<Upload>"));
    if (nk) CHECK(*nk && strlen(nk) < KEY_MAX && strlen(ni) < 2048);
    free(nk);
    free(ni);
}

typedef struct part_seen {
    size_t calls, body_len;
} part_seen_t;

static void on_part(int number, uint64_t size, const char *etag, void *arg)
{
    part_seen_t *s = arg;
    (void)size;
    CHECK(number >= 1 && number <= 10000 && etag);
    CHECK(strnlen(etag, 72) < 72 && strlen(etag) <= s->body_len);
    s->calls++;
}

static void fuzz_parts(const char *xml, size_t len)
{
    part_seen_t seen = {.body_len = len};
    int next = -1; /* must be reset */
    dp_err_t err = store_s3_parts_page(xml, "fuzz-bucket", "k", on_part, &seen, &next);
    CHECK(next >= 0 && next <= 10000);
    CHECK(seen.calls <= count_of(xml, "<Part>"));
    if (err) CHECK(err == DP_ERR_FORMAT || err == DP_ERR_NOMEM);
    if (err) CHECK(!next && strstr(dp_err_detail(), "s3://fuzz-bucket/k"));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    size_t len = size - 2;
    char *xml = malloc(len + 1); /* a body as store_buf_t holds it */
    if (!xml) return 0;
    memcpy(xml, data + 2, len);
    xml[len] = '\0';
    switch (data[0] % 6) {
    case 0:
        fuzz_list(xml, len, data[1]);
        break;
    case 1:
        fuzz_error(xml, data[1]);
        break;
    case 2:
        fuzz_initiate(xml);
        break;
    case 3:
        fuzz_complete(xml, data[1]);
        break;
    case 4:
        fuzz_uploads(xml, len, data[1]);
        break;
    default:
        fuzz_parts(xml, len);
        break;
    }
    free(xml);
    return 0;
}
