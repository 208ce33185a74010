/* S3 answers, bytes to results: the ListObjectsV2 page, the error body (Code,
 * Message) and its dp_err_t, the UploadId of InitiateMultipartUpload and the
 * answer to CompleteMultipartUpload, the ListMultipartUploads and ListParts
 * pages. No I/O here: store_s3.c hands over the
 * bodies it received, fuzz/fuzz_s3.c hands over anything. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/store_impl.h"

#define KEY_MAX   4096 /* S3 keys are at most 1024 bytes of UTF-8 */
#define TOKEN_MAX 2048

/* Seconds since the epoch of "YYYY-MM-DDThh:mm:ss..."; 0 if not that shape
 * or a field is out of range (a crafted year must not overflow the tm). */
static int64_t parse_iso8601(const char *s)
{
    struct tm tm = {0};
    if (sscanf(s, "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec) != 6)
        return 0;
    if (tm.tm_year < 1 || tm.tm_year > 9999 || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 ||
        tm.tm_mday > 31 || tm.tm_hour < 0 || tm.tm_hour > 23 || tm.tm_min < 0 || tm.tm_min > 59 ||
        tm.tm_sec < 0 || tm.tm_sec > 60)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm);
}

/* The next <TAG>...</TAG> element of xml at or after *pos, copied into
 * *block (grown as needed, NUL-terminated, from the opening tag to just before
 * the closing one), *pos moved past it. 1: found; 0: none left; -1: an
 * opening tag without its closing one; -2: out of memory. */
static int next_element(const char *xml, size_t *pos, const char *tag, char **block)
{
    char open[32], close[33];
    snprintf(open, sizeof open, "<%s>", tag);
    snprintf(close, sizeof close, "</%s>", tag);
    const char *start = strstr(xml + *pos, open);
    if (!start) return 0;
    const char *end = strstr(start, close);
    if (!end) return -1;
    size_t bl = (size_t)(end - start);
    char *nb = realloc(*block, bl + 1);
    if (!nb) return -2;
    *block = nb;
    memcpy(nb, start, bl);
    nb[bl] = '\0';
    *pos = (size_t)(end - xml) + strlen(close);
    return 1;
}

/* An ETag without the double quotes S3 puts around it, in place. */
static char *unquote(char *etag)
{
    char *e = etag[0] == '"' ? etag + 1 : etag;
    size_t el = strlen(e);
    if (el && e[el - 1] == '"') e[el - 1] = '\0';
    return e;
}

dp_err_t store_s3_list_page(const char *xml, const char *bucket, dp_store_list_fn fn, void *arg,
                            size_t *count, int *stopped, char **next)
{
    *count = 0;
    *stopped = 0;
    *next = NULL;
    if (!xml) xml = "";
    char *key = malloc(KEY_MAX), *block = NULL;
    if (!key) return dp_err_set(DP_ERR_NOMEM, "store: list");
    dp_err_t err = DP_OK;
    size_t pos = 0;
    while (!*stopped) {
        int got = next_element(xml, &pos, "Contents", &block);
        if (got < 0)
            err = got == -1 ? dp_err_set(DP_ERR_FORMAT, "s3://%s: listing: unterminated <Contents>",
                                         bucket)
                            : dp_err_set(DP_ERR_NOMEM, "store: list");
        if (got <= 0) break;
        char num[32] = "", date[64] = "";
        dp_store_info_t info = {.key = key};
        if (!store_xml_field(block, "Key", key, KEY_MAX, NULL)) continue;
        if (store_xml_field(block, "Size", num, sizeof num, NULL))
            info.size = strtoull(num, NULL, 10);
        if (store_xml_field(block, "LastModified", date, sizeof date, NULL))
            info.mtime = parse_iso8601(date);
        if (store_xml_field(block, "ETag", info.etag, sizeof info.etag, NULL)) {
            char *e = unquote(info.etag);
            memmove(info.etag, e, strlen(e) + 1);
        }
        ++*count;
        *stopped = fn(&info, arg) != 0;
    }
    free(block);
    free(key);
    if (err) return err;
    char trunc[16] = "";
    store_xml_field(xml, "IsTruncated", trunc, sizeof trunc, NULL);
    if (strcmp(trunc, "true")) return DP_OK;
    char token[TOKEN_MAX];
    if (!store_xml_field(xml, "NextContinuationToken", token, sizeof token, NULL))
        return dp_err_set(DP_ERR_FORMAT, "s3://%s: truncated listing without a token", bucket);
    if (!(*next = strdup(token))) return dp_err_set(DP_ERR_NOMEM, "store: list");
    return DP_OK;
}

void store_s3_error_fields(const char *xml, char *code, size_t ncode, char *msg, size_t nmsg)
{
    if (ncode) code[0] = '\0';
    if (nmsg) msg[0] = '\0';
    if (!xml) return;
    store_xml_field(xml, "Code", code, ncode, NULL);
    store_xml_field(xml, "Message", msg, nmsg, NULL);
}

dp_err_t store_s3_http_error(const char *where, const char *method, long status, const char *body,
                             int tries)
{
    char code[128], msg[512];
    store_s3_error_fields(body, code, sizeof code, msg, sizeof msg);
    (void)tries; /* the retry loop says how many */
    if (status == 404 && !strcmp(code, "NoSuchUpload"))
        return dp_err_set(DP_ERR_REMOTE, "%s: %s: the server has no such upload (NoSuchUpload)",
                          where, method);
    if (status == 404 && !strcmp(code, "NoSuchBucket")) {
        const char *slash = strchr(where + (strncmp(where, "s3://", 5) ? 0 : 5), '/');
        int bl = slash ? (int)(slash - where) : (int)strlen(where);
        return dp_err_set(DP_ERR_NOTFOUND, "%.*s: the bucket does not exist (NoSuchBucket)", bl,
                          where);
    }
    if (status == 404)
        return dp_err_set(DP_ERR_NOTFOUND, "%s: not found (%s)", where, *code ? code : "HTTP 404");
    if (status == 401 || status == 403) {
        return dp_err_set(
            DP_ERR_AUTH,
            "%s: %s: access denied by the server, check credentials (HTTP %ld%s%s%s%s)", where,
            method, status, *code ? " " : "", code, *msg ? ": " : "", msg);
    }
    return dp_err_set(DP_ERR_REMOTE, "%s: %s: HTTP %ld%s%s%s%s", where, method, status,
                      *code ? " " : "", code, *msg ? ": " : "", msg);
}

dp_err_t store_s3_upload_id(const char *xml, const char *bucket, const char *key, char *id,
                            size_t n)
{
    if (!xml || !store_xml_field(xml, "UploadId", id, n, NULL))
        return dp_err_set(DP_ERR_FORMAT, "s3://%s/%s: no UploadId in the answer", bucket, key);
    return DP_OK;
}

dp_err_t store_s3_complete_answer(const char *xml, const char *bucket, const char *key,
                                  const unsigned char (*md5s)[16], int nparts)
{
    if (!xml) return DP_OK;
    /* S3 may answer 200 and put the error in the body */
    if (strstr(xml, "<Error>")) {
        char code[128], msg[256];
        store_s3_error_fields(xml, code, sizeof code, msg, sizeof msg);
        return dp_err_set(DP_ERR_REMOTE, "s3://%s/%s: completing the upload: %s: %s", bucket, key,
                          code, msg);
    }
    /* the ETag of a multipart object: MD5 of the parts' MD5s, "-N" */
    char etag[72] = "";
    store_xml_field(xml, "ETag", etag, sizeof etag, NULL);
    char *e = unquote(etag);
    char *dash = strchr(e, '-');
    if (!dash) return DP_OK;
    unsigned char all[16];
    store_md5(md5s, (size_t)nparts * 16, all);
    *dash = '\0';
    long n = strtol(dash + 1, NULL, 10); /* not atoi: "4294967297" is not 1 part */
    if (!store_etag_matches(e, all) || n != nparts)
        return dp_err_set(DP_ERR_MISMATCH,
                          "s3://%s/%s: multipart ETag %s-%s is not the MD5 of the %d parts sent",
                          bucket, key, e, dash + 1, nparts);
    return DP_OK;
}

dp_err_t store_s3_uploads_page(const char *xml, const char *bucket, dp_store_upload_fn fn,
                               void *arg, int *stopped, char **next_key, char **next_id)
{
    *stopped = 0;
    *next_key = *next_id = NULL;
    if (!xml) xml = "";
    char *key = malloc(KEY_MAX), *id = malloc(TOKEN_MAX), *block = NULL;
    dp_err_t err = DP_OK;
    if (!key || !id) {
        err = dp_err_set(DP_ERR_NOMEM, "store: list uploads");
        goto out;
    }
    size_t pos = 0;
    while (!*stopped) {
        int got = next_element(xml, &pos, "Upload", &block);
        if (got < 0) {
            err = got == -1 ? dp_err_set(DP_ERR_FORMAT,
                                         "s3://%s: uploads listing: unterminated <Upload>", bucket)
                            : dp_err_set(DP_ERR_NOMEM, "store: list uploads");
            goto out;
        }
        if (!got) break;
        char date[64] = "";
        if (!store_xml_field(block, "Key", key, KEY_MAX, NULL) ||
            !store_xml_field(block, "UploadId", id, TOKEN_MAX, NULL))
            continue;
        dp_store_upload_t u = {.key = key, .upload_id = id};
        if (store_xml_field(block, "Initiated", date, sizeof date, NULL))
            u.initiated = parse_iso8601(date);
        *stopped = fn(&u, arg) != 0;
    }
    char trunc[16] = "";
    /* the page's own fields come before its first <Upload> */
    store_xml_field(xml, "IsTruncated", trunc, sizeof trunc, NULL);
    if (strcmp(trunc, "true")) goto out;
    if (!store_xml_field(xml, "NextKeyMarker", key, KEY_MAX, NULL) || !*key) {
        err = dp_err_set(DP_ERR_FORMAT, "s3://%s: truncated uploads listing without a marker",
                         bucket);
        goto out;
    }
    if (!store_xml_field(xml, "NextUploadIdMarker", id, TOKEN_MAX, NULL)) id[0] = '\0';
    if (!(*next_key = strdup(key)) || !(*next_id = strdup(id))) {
        free(*next_key);
        *next_key = NULL;
        err = dp_err_set(DP_ERR_NOMEM, "store: list uploads");
    }
out:
    free(block);
    free(key);
    free(id);
    return err;
}

dp_err_t store_s3_parts_page(const char *xml, const char *bucket, const char *key, store_part_fn fn,
                             void *arg, int *next)
{
    *next = 0;
    if (!xml) xml = "";
    char *block = NULL;
    dp_err_t err = DP_OK;
    size_t pos = 0;
    for (;;) {
        int got = next_element(xml, &pos, "Part", &block);
        if (got < 0) {
            err = got == -1
                      ? dp_err_set(DP_ERR_FORMAT, "s3://%s/%s: parts listing: unterminated <Part>",
                                   bucket, key)
                      : dp_err_set(DP_ERR_NOMEM, "store: list parts");
            goto out;
        }
        if (!got) break;
        char num[32] = "", size[32] = "", etag[72] = "";
        if (!store_xml_field(block, "PartNumber", num, sizeof num, NULL)) continue;
        long n = strtol(num, NULL, 10);
        if (n < 1 || n > 10000) continue; /* S3 numbers parts 1 to 10,000 */
        store_xml_field(block, "Size", size, sizeof size, NULL);
        store_xml_field(block, "ETag", etag, sizeof etag, NULL);
        fn((int)n, strtoull(size, NULL, 10), unquote(etag), arg);
    }
    char trunc[16] = "", marker[32] = "";
    store_xml_field(xml, "IsTruncated", trunc, sizeof trunc, NULL);
    if (strcmp(trunc, "true")) goto out;
    long m = store_xml_field(xml, "NextPartNumberMarker", marker, sizeof marker, NULL)
                 ? strtol(marker, NULL, 10)
                 : 0;
    if (m < 1 || m > 10000)
        err = dp_err_set(DP_ERR_FORMAT, "s3://%s/%s: truncated parts listing without a marker",
                         bucket, key);
    else
        *next = (int)m;
out:
    free(block);
    return err;
}
