/* core/store without an external server: the file:// backend, the helpers
 * (RFC 3986 encoding, XML fields), the S3 answer parsers, URI splitting,
 * credentials, and the s3:// retry policy against a loopback HTTP server in a
 * thread that answers 503, 429 or 403 a few times before 200. */
#define _GNU_SOURCE /* strcasestr */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store.h"
#include "store/store_impl.h"
#include "util/clock.h"
#include "util/log.h"

/* ---- helpers ---- */

Test(store_util, uri_encode)
{
    store_buf_t b = {0};
    cr_assert_eq(store_uri_encode(&b, "a b+c=d&e/f~g_h.i-j\xc3\xbc", 1), DP_OK);
    cr_assert_str_eq(b.p, "a%20b%2Bc%3Dd%26e/f~g_h.i-j%C3%BC");
    b.len = 0;
    cr_assert_eq(store_uri_encode(&b, "x/y*'()", 0), DP_OK);
    cr_assert_str_eq(b.p, "x%2Fy%2A%27%28%29");
    store_buf_free(&b);
}

Test(store_util, xml_field)
{
    const char *xml = "<R><Key>a&amp;b &lt;&#252;&#x65e5;&gt;</Key><Key>two</Key><N></N></R>";
    char out[64];
    size_t pos = 0;
    cr_assert(store_xml_field(xml, "Key", out, sizeof out, &pos));
    cr_assert_str_eq(out, "a&b <\xc3\xbc\xe6\x97\xa5>");
    cr_assert(store_xml_field(xml, "Key", out, sizeof out, &pos));
    cr_assert_str_eq(out, "two");
    cr_assert_not(store_xml_field(xml, "Key", out, sizeof out, &pos));
    cr_assert(store_xml_field(xml, "N", out, sizeof out, NULL));
    cr_assert_str_eq(out, "");
}

/* ---- S3 answers (store_s3_xml.c), the parsers fuzz/fuzz_s3.c runs ---- */

typedef struct listed {
    int n, stop_at;
    char keys[4][64], etags[4][72];
    uint64_t sizes[4];
    int64_t mtimes[4];
} listed_t;

static int on_listed(const dp_store_info_t *info, void *arg)
{
    listed_t *l = arg;
    if (l->n < 4) {
        snprintf(l->keys[l->n], sizeof l->keys[0], "%s", info->key);
        snprintf(l->etags[l->n], sizeof l->etags[0], "%s", info->etag);
        l->sizes[l->n] = info->size;
        l->mtimes[l->n] = info->mtime;
    }
    return ++l->n == l->stop_at;
}

Test(store_s3_xml, list_page)
{
    const char *xml = "<ListBucketResult><IsTruncated>true</IsTruncated>"
                      "<NextContinuationToken>t/1=</NextContinuationToken>"
                      "<Contents><Key>a&amp;b</Key><LastModified>1970-01-02T00:00:01.000Z"
                      "</LastModified><ETag>&quot;abc&quot;</ETag><Size>12</Size></Contents>"
                      "<Contents><Size>5</Size></Contents>" /* no key: skipped */
                      "<Contents><Key>z</Key><ETag>\"</ETag></Contents></ListBucketResult>";
    listed_t l = {0};
    size_t count;
    int stopped;
    char *next;
    cr_assert_eq(store_s3_list_page(xml, "b", on_listed, &l, &count, &stopped, &next), DP_OK);
    cr_assert_eq(count, 2);
    cr_assert_eq(l.n, 2);
    cr_assert_not(stopped);
    cr_assert_str_eq(l.keys[0], "a&b");
    cr_assert_str_eq(l.etags[0], "abc");
    cr_assert_eq(l.sizes[0], 12);
    cr_assert_eq(l.mtimes[0], 86401);
    cr_assert_str_eq(l.keys[1], "z");
    cr_assert_str_eq(l.etags[1], "");
    cr_assert_str_eq(next, "t/1=");
    free(next);

    listed_t one = {.stop_at = 1};
    cr_assert_eq(store_s3_list_page(xml, "b", on_listed, &one, &count, &stopped, &next), DP_OK);
    cr_assert(stopped);
    cr_assert_eq(count, 1);
    free(next);

    cr_assert_eq(store_s3_list_page(NULL, "b", on_listed, &l, &count, &stopped, &next), DP_OK);
    cr_assert_eq(count, 0);
    cr_assert_null(next);
    cr_assert_eq(store_s3_list_page("<IsTruncated>true</IsTruncated>", "bk", on_listed, &l, &count,
                                    &stopped, &next),
                 DP_ERR_FORMAT);
    cr_assert(strstr(dp_err_detail(), "s3://bk: truncated listing without a token"));
    cr_assert_null(next);
    cr_assert_eq(
        store_s3_list_page("<Contents><Key>k</Key>", "bk", on_listed, &l, &count, &stopped, &next),
        DP_ERR_FORMAT);
    cr_assert(strstr(dp_err_detail(), "unterminated <Contents>"));
}

/* A LastModified year of INT_MIN overflowed tm_year -= 1900 (UBSan): now out
 * of range, mtime unknown (0). */
Test(store_s3_xml, list_date_out_of_range)
{
    const char *bad[] = {"-2147483648-01-01T00:00:00Z", "2024--2147483648-01T00:00:00Z",
                         "2024-13-01T00:00:00Z", "99999-01-01T00:00:00Z", "2024-01-01T24:00:00Z"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char xml[256];
        snprintf(xml, sizeof xml,
                 "<Contents><Key>k</Key><LastModified>%s</LastModified></Contents>", bad[i]);
        listed_t l = {0};
        size_t count;
        int stopped;
        char *next;
        cr_assert_eq(store_s3_list_page(xml, "b", on_listed, &l, &count, &stopped, &next), DP_OK);
        cr_assert_eq(l.n, 1);
        cr_assert_eq(l.mtimes[0], 0, "%s", bad[i]);
    }
}

Test(store_s3_xml, http_error_kinds)
{
    const char *body = "<Error><Code>NoSuchKey</Code><Message>a &lt;b&gt;</Message></Error>";
    cr_assert_eq(store_s3_http_error("s3://b/k", "GET", 404, body, 1), DP_ERR_NOTFOUND);
    cr_assert_str_eq(dp_err_detail(), "s3://b/k: not found (NoSuchKey)");
    cr_assert_eq(store_s3_http_error("s3://b/k", "GET", 404, NULL, 1), DP_ERR_NOTFOUND);
    cr_assert_str_eq(dp_err_detail(), "s3://b/k: not found (HTTP 404)");
    /* a missing bucket is "not found" everywhere (HEAD has no body to tell) */
    cr_assert_eq(store_s3_http_error("s3://b/k", "GET", 404, "<Code>NoSuchBucket</Code>", 1),
                 DP_ERR_NOTFOUND);
    cr_assert_str_eq(dp_err_detail(), "s3://b: the bucket does not exist (NoSuchBucket)");
    /* a lost upload ID is no missing object */
    cr_assert_eq(store_s3_http_error("s3://b/k", "PUT", 404, "<Code>NoSuchUpload</Code>", 1),
                 DP_ERR_REMOTE);
    cr_assert(strstr(dp_err_detail(), "NoSuchUpload"), "%s", dp_err_detail());
    cr_assert_eq(store_s3_http_error("s3://b/k", "PUT", 403, body, 1), DP_ERR_AUTH);
    cr_assert_eq(store_s3_http_error("s3://b/k", "HEAD", 403, NULL, 1), DP_ERR_AUTH);
    cr_assert(strstr(dp_err_detail(), "(HTTP 403)"), "%s", dp_err_detail());
    cr_assert_eq(store_s3_http_error("s3://b/k", "PUT", 500, body, 3), DP_ERR_REMOTE);
    cr_assert_str_eq(dp_err_detail(), "s3://b/k: PUT: HTTP 500 NoSuchKey: a <b>");
}

Test(store_s3_xml, upload_id_and_complete)
{
    char id[64];
    cr_assert_eq(store_s3_upload_id("<R><UploadId>x&amp;y</UploadId></R>", "b", "k", id, sizeof id),
                 DP_OK);
    cr_assert_str_eq(id, "x&y");
    cr_assert_eq(store_s3_upload_id("<R></R>", "b", "k", id, sizeof id), DP_ERR_FORMAT);
    cr_assert_str_eq(dp_err_detail(), "s3://b/k: no UploadId in the answer");
    cr_assert_eq(store_s3_upload_id(NULL, "b", "k", id, sizeof id), DP_ERR_FORMAT);

    unsigned char md5s[2][16];
    memset(md5s[0], 1, 16);
    memset(md5s[1], 2, 16);
    unsigned char all[16];
    char hex[33], xml[256];
    store_md5(md5s, sizeof md5s, all);
    store_hex(all, 16, hex);
    const unsigned char(*parts)[16] = (const unsigned char(*)[16])md5s;
    snprintf(xml, sizeof xml, "<R><ETag>&quot;%s-2&quot;</ETag></R>", hex);
    cr_assert_eq(store_s3_complete_answer(xml, "b", "k", parts, 2), DP_OK);
    cr_assert_eq(store_s3_complete_answer(xml, "b", "k", parts, 1), DP_ERR_MISMATCH);
    /* the part count was read with atoi: 2^32 + 2 passed for 2 parts */
    snprintf(xml, sizeof xml, "<R><ETag>\"%s-4294967298\"</ETag></R>", hex);
    cr_assert_eq(store_s3_complete_answer(xml, "b", "k", parts, 2), DP_ERR_MISMATCH);
    cr_assert(strstr(dp_err_detail(), "is not the MD5 of the 2 parts sent"));
    cr_assert_eq(store_s3_complete_answer("<R><ETag>\"0123-2\"</ETag></R>", "b", "k", parts, 2),
                 DP_ERR_MISMATCH);
    cr_assert_eq(store_s3_complete_answer("<R><ETag>\"abc\"</ETag></R>", "b", "k", parts, 2),
                 DP_OK);
    cr_assert_eq(store_s3_complete_answer("<Error><Code>InternalError</Code><Message>m</Message>"
                                          "</Error>",
                                          "b", "k", parts, 2),
                 DP_ERR_REMOTE);
    cr_assert_str_eq(dp_err_detail(), "s3://b/k: completing the upload: InternalError: m");
    cr_assert_eq(store_s3_complete_answer(NULL, "b", "k", parts, 2), DP_OK);
}

Test(store_util, digests)
{
    char hex[65], b64[32];
    unsigned char md5[16];
    store_sha256_hex("abc", 3, hex);
    cr_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    store_md5("", 0, md5);
    store_base64(md5, 16, b64);
    cr_assert_str_eq(b64, "1B2M2Y8AsgTpgAmY7PhCfg==");
}

static int collect_upload(const dp_store_upload_t *u, void *arg)
{
    store_buf_t *b = arg;
    store_buf_addf(b, "%s|%s|%lld\n", u->key, u->upload_id, (long long)u->initiated);
    return 0;
}

static int stop_at_first_upload(const dp_store_upload_t *u, void *arg)
{
    (void)u;
    ++*(int *)arg;
    return 1;
}

Test(store_s3_xml, uploads_page)
{
    const char *page =
        "<ListMultipartUploadsResult><Bucket>b</Bucket><NextKeyMarker>a/k</NextKeyMarker>"
        "<NextUploadIdMarker>id2</NextUploadIdMarker><IsTruncated>true</IsTruncated>"
        "<Upload><Key>a/k &amp; x</Key><UploadId>id1</UploadId>"
        "<Initiated>2026-12-06T17:00:00.000Z</Initiated></Upload>"
        "<Upload><Key>a/k</Key><UploadId>id2</UploadId></Upload>"
        "<Upload><Key>no id</Key></Upload></ListMultipartUploadsResult>";
    store_buf_t b = {0};
    int stopped;
    char *nk, *ni;
    cr_assert_eq(store_s3_uploads_page(page, "b", collect_upload, &b, &stopped, &nk, &ni), DP_OK);
    cr_assert_str_eq(b.p, "a/k & x|id1|1796576400\na/k|id2|0\n");
    cr_assert_str_eq(nk, "a/k");
    cr_assert_str_eq(ni, "id2");
    cr_assert_not(stopped);
    free(nk);
    free(ni);
    store_buf_free(&b);
    int calls = 0;
    cr_assert_eq(store_s3_uploads_page(page, "b", stop_at_first_upload, &calls, &stopped, &nk, &ni),
                 DP_OK);
    cr_assert(stopped && calls == 1);
    free(nk);
    free(ni);
    /* the last page: no markers; a truncated page without them, an unterminated
     * <Upload>: DP_ERR_FORMAT naming the bucket */
    cr_assert_eq(store_s3_uploads_page("<IsTruncated>false</IsTruncated>", "b", collect_upload, &b,
                                       &stopped, &nk, &ni),
                 DP_OK);
    cr_assert(!nk && !ni && !b.p);
    cr_assert_eq(store_s3_uploads_page("<IsTruncated>true</IsTruncated>", "b", collect_upload, &b,
                                       &stopped, &nk, &ni),
                 DP_ERR_FORMAT);
    cr_assert(!nk && strstr(dp_err_detail(), "s3://b"), "%s", dp_err_detail());
    cr_assert_eq(
        store_s3_uploads_page("<Upload><Key>k</Key>", "b", collect_upload, &b, &stopped, &nk, &ni),
        DP_ERR_FORMAT);
    cr_assert_eq(store_s3_uploads_page(NULL, "b", collect_upload, &b, &stopped, &nk, &ni), DP_OK);
}

static void collect_part(int number, uint64_t size, const char *etag, void *arg)
{
    store_buf_addf(arg, "%d|%llu|%s\n", number, (unsigned long long)size, etag);
}

Test(store_s3_xml, parts_page)
{
    const char *page = "<ListPartsResult><Bucket>b</Bucket><Key>k</Key>"
                       "<NextPartNumberMarker>3</NextPartNumberMarker>"
                       "<IsTruncated>true</IsTruncated>"
                       "<Part><PartNumber>1</PartNumber><ETag>&quot;0a1b&quot;</ETag>"
                       "<Size>5242880</Size></Part>"
                       "<Part><PartNumber>3</PartNumber><ETag>\"ff\"</ETag><Size>7</Size></Part>"
                       "<Part><PartNumber>0</PartNumber><ETag>x</ETag></Part>"
                       "<Part><PartNumber>10001</PartNumber><ETag>x</ETag></Part>"
                       "<Part><ETag>no number</ETag></Part></ListPartsResult>";
    store_buf_t b = {0};
    int next;
    cr_assert_eq(store_s3_parts_page(page, "b", "k", collect_part, &b, &next), DP_OK);
    cr_assert_str_eq(b.p, "1|5242880|0a1b\n3|7|ff\n");
    cr_assert_eq(next, 3);
    store_buf_free(&b);
    /* the last page: no marker; a truncated page without one, an unterminated
     * <Part>: DP_ERR_FORMAT naming the object */
    cr_assert_eq(
        store_s3_parts_page("<IsTruncated>false</IsTruncated>", "b", "k", collect_part, &b, &next),
        DP_OK);
    cr_assert(!next && !b.p);
    cr_assert_eq(
        store_s3_parts_page("<IsTruncated>true</IsTruncated>", "b", "k", collect_part, &b, &next),
        DP_ERR_FORMAT);
    cr_assert(strstr(dp_err_detail(), "s3://b/k"), "%s", dp_err_detail());
    cr_assert_eq(
        store_s3_parts_page("<Part><PartNumber>1</PartNumber>", "b", "k", collect_part, &b, &next),
        DP_ERR_FORMAT);
    cr_assert_eq(store_s3_parts_page(NULL, "b", "k", collect_part, &b, &next), DP_OK);
    cr_assert_null(b.p);
}

/* ---- file:// ---- */

static char *tmpdir(void)
{
    char *d = strdup("/tmp/dp-store-file-XXXXXX");
    cr_assert(mkdtemp(d));
    return d;
}

static void rmtree(const char *d)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    cr_assert_eq(system(cmd), 0);
}

static dp_store_t *open_file_store(const char *dir)
{
    char uri[512];
    snprintf(uri, sizeof uri, "file://%s", dir);
    dp_store_t *s = NULL;
    cr_assert_eq(dp_store_new(uri, NULL, &s), DP_OK, "%s", dp_err_detail());
    return s;
}

static int collect(const dp_store_info_t *info, void *arg)
{
    store_buf_t *b = arg;
    store_buf_addf(b, "%s|%llu\n", info->key, (unsigned long long)info->size);
    return 0;
}

/* Listing an empty store or a prefix with no keys: no callback, DP_OK (the
 * sort of an empty key list once passed NULL to qsort, caught by UBSan). */
Test(store_file, empty_listing)
{
    char *dir = tmpdir();
    dp_store_t *s = open_file_store(dir);
    store_buf_t b = {0};
    cr_assert_eq(dp_store_list(s, "", collect, &b), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(dp_store_list(s, "no/such/prefix", collect, &b), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(b.len, 0);
    store_buf_free(&b);
    dp_store_destroy(&s);
    rmtree(dir);
    free(dir);
}

Test(store_file, round_trip_and_list)
{
    char *dir = tmpdir();
    dp_store_t *s = open_file_store(dir);
    cr_assert_eq(dp_store_put_mem(s, "models/a b/m.st", "weights", 7), DP_OK, "%s",
                 dp_err_detail());
    cr_assert_eq(dp_store_put_mem(s, "models/z.bin", "zz", 2), DP_OK);
    cr_assert_eq(dp_store_put_mem(s, "reports/r+1=&.json", "{}", 2), DP_OK);
    cr_assert_eq(dp_store_put_mem(s, "models/z.bin", "zzz", 3), DP_OK, "replace");
    void *d;
    size_t n;
    cr_assert_eq(dp_store_get_mem(s, "models/a b/m.st", &d, &n), DP_OK);
    cr_assert_eq(n, 7);
    cr_assert_str_eq(d, "weights");
    free(d);
    dp_store_info_t info;
    cr_assert_eq(dp_store_head(s, "models/z.bin", &info), DP_OK);
    cr_assert_eq(info.size, 3);
    cr_assert_str_eq(info.key, "models/z.bin");
    /* a temporary file of a write in flight is not an object */
    char stale[512];
    snprintf(stale, sizeof stale, "%s/models/q.bin" STORE_TMP_MARK "abcdef", dir);
    FILE *f = fopen(stale, "w");
    cr_assert(f);
    fclose(f);
    store_buf_t b = {0};
    cr_assert_eq(dp_store_list(s, "", collect, &b), DP_OK, "%s", dp_err_detail());
    cr_assert_str_eq(b.p, "models/a b/m.st|7\nmodels/z.bin|3\nreports/r+1=&.json|2\n");
    b.len = 0;
    cr_assert_eq(dp_store_list(s, "models/a", collect, &b), DP_OK);
    cr_assert_str_eq(b.p, "models/a b/m.st|7\n");
    b.len = 0;
    cr_assert_eq(dp_store_list(s, "nothing/", collect, &b), DP_OK);
    cr_assert_eq(b.len, 0);
    store_buf_free(&b);
    cr_assert_eq(dp_store_delete(s, "models/z.bin"), DP_OK);
    cr_assert_eq(dp_store_delete(s, "models/z.bin"), DP_OK, "missing is fine");
    cr_assert_eq(dp_store_get_mem(s, "models/z.bin", &d, &n), DP_ERR_NOTFOUND);
    cr_assert(strstr(dp_err_detail(), "not found"), "%s", dp_err_detail());
    cr_assert_eq(dp_store_head(s, "models/z.bin", &info), DP_ERR_NOTFOUND);
    dp_store_destroy(&s);
    cr_assert_null(s);
    dp_store_destroy(&s);
    rmtree(dir);
    free(dir);
}

Test(store_file, files_stream_and_writes_are_atomic)
{
    char *dir = tmpdir();
    dp_store_t *s = open_file_store(dir);
    size_t big = (3u << 20) + 7;
    char *data = malloc(big);
    for (size_t i = 0; i < big; i++) data[i] = (char)(i * 31 + (i >> 9));
    char src[600], dst[600];
    snprintf(src, sizeof src, "%s/src.bin", dir);
    snprintf(dst, sizeof dst, "%s/out/dst.bin", dir);
    FILE *f = fopen(src, "wb");
    fwrite(data, 1, big, f);
    fclose(f);
    cr_assert_eq(dp_store_put_file(s, "obj/big.bin", src), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(dp_store_get_file(s, "obj/big.bin", dst), DP_ERR_NOTFOUND, "no parent dir");
    snprintf(dst, sizeof dst, "%s/dst.bin", dir);
    cr_assert_eq(dp_store_get_file(s, "obj/big.bin", dst), DP_OK, "%s", dp_err_detail());
    void *d;
    size_t n;
    cr_assert_eq(dp_store_get_mem(s, "obj/big.bin", &d, &n), DP_OK);
    cr_assert_eq(n, big);
    cr_assert_eq(memcmp(d, data, big), 0);
    free(d);
    /* a failed put leaves the old object whole */
    cr_assert_eq(dp_store_put_file(s, "obj/big.bin", "/nonexistent/file"), DP_ERR_NOTFOUND);
    /* a directory to upload is a bad argument, not a missing object (as s3's) */
    cr_assert_eq(dp_store_put_file(s, "obj/big.bin", dir), DP_ERR_INVALID);
    cr_assert(strstr(dp_err_detail(), "not a regular file"), "%s", dp_err_detail());
    /* while a key naming a directory under the root is no object */
    cr_assert_eq(dp_store_get_mem(s, "obj", &d, &n), DP_ERR_NOTFOUND);
    dp_store_info_t info;
    cr_assert_eq(dp_store_head(s, "obj/big.bin", &info), DP_OK);
    cr_assert_eq(info.size, big);
    /* no temporaries left anywhere */
    char cmd[700];
    snprintf(cmd, sizeof cmd, "find '%s' -name '*" STORE_TMP_MARK "*' | grep -q .", dir);
    cr_assert_neq(system(cmd), 0, "temporary files left behind");
    dp_store_destroy(&s);
    free(data);
    rmtree(dir);
    free(dir);
}

/* A temporary file of a killed run (no flock on it) is removed by the next
 * write to the same path; one a live writer holds is kept. */
Test(store_file, stale_temporaries_removed_held_ones_kept)
{
    char *dir = tmpdir();
    dp_store_t *s = open_file_store(dir);
    cr_assert_eq(dp_store_put_mem(s, "obj", "x", 1), DP_OK, "%s", dp_err_detail());
    char dst[512], stale[600], held[600], other[600];
    snprintf(dst, sizeof dst, "%s/out", dir);
    snprintf(stale, sizeof stale, "%s" STORE_TMP_MARK "AAAAAA", dst);
    snprintf(held, sizeof held, "%s" STORE_TMP_MARK "BBBBBB", dst);
    snprintf(other, sizeof other, "%s/outer" STORE_TMP_MARK "CCCCCC", dir);
    FILE *f = fopen(stale, "w");
    cr_assert(f);
    fputs("half a download", f);
    fclose(f);
    cr_assert(fclose(fopen(other, "w")) == 0);
    char *tmp;
    int fd;
    cr_assert_eq(store_tmp_open(dst, &tmp, &fd), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(rename(tmp, held), 0); /* held by this fd's flock, as a live writer's */
    cr_assert_eq(access(stale, F_OK), -1, "the stale one was removed when the write began");
    cr_assert_eq(dp_store_get_file(s, "obj", dst), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(access(held, F_OK), 0, "the held one was kept");
    cr_assert_eq(access(other, F_OK), 0, "another path's was kept");
    store_tmp_abort(fd, held);
    free(tmp);
    cr_assert_eq(access(held, F_OK), -1);
    dp_store_destroy(&s);
    rmtree(dir);
    free(dir);
}

Test(store_file, bad_keys_and_uris)
{
    char *dir = tmpdir();
    dp_store_t *s = open_file_store(dir);
    const char *bad[] = {"", "/abs", "../up", "a/../b", "a//b", "a/./b", "x" STORE_TMP_MARK "y"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(dp_store_put_mem(s, bad[i], "x", 1), DP_ERR_INVALID, "key '%s'", bad[i]);
    dp_store_destroy(&s);
    cr_assert_eq(dp_store_new("ftp://x", NULL, &s), DP_ERR_INVALID);
    cr_assert_eq(dp_store_new("file://relative", NULL, &s), DP_ERR_INVALID);
    cr_assert_null(s);

    char uri[600], *key;
    snprintf(uri, sizeof uri, "file://%s/sub/obj.txt", dir);
    cr_assert_eq(dp_store_open_uri(uri, NULL, &s, &key), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(strncmp(key, dir + 1, strlen(dir) - 1), 0, "%s", key);
    cr_assert_str_eq(key + strlen(dir) - 1, "/sub/obj.txt");
    cr_assert_eq(dp_store_put_mem(s, key, "hi", 2), DP_OK, "%s", dp_err_detail());
    free(key);
    dp_store_destroy(&s);

    dp_store_settings_t st;
    dp_store_settings_init(&st);
    st.access_key = "AK";
    st.secret_key = "SK";
    cr_assert_eq(dp_store_open_uri("s3://bucket/a/b c.bin", &st, &s, &key), DP_OK);
    cr_assert_str_eq(key, "a/b c.bin");
    cr_assert_str_eq(dp_store_root(s), "s3://bucket");
    free(key);
    dp_store_destroy(&s);
    cr_assert_eq(dp_store_open_uri("s3://bucket", &st, &s, &key), DP_ERR_INVALID);
    cr_assert_eq(dp_store_open_uri("s3://bucket/", &st, &s, &key), DP_ERR_INVALID);
    st.part_size = 1u << 20;
    cr_assert_eq(dp_store_new("s3://bucket", &st, &s), DP_ERR_RANGE, "parts below 5 MiB");
    rmtree(dir);
    free(dir);
}

/* ---- a loopback HTTP server ---- */

#define MAX_HITS 64
typedef struct fake {
    int lfd, port;
    pthread_t th;
    int fail_n; /* answer fail_status to this many requests first */
    int fail_status;
    const char *fail_code; /* S3 error code in the XML body */
    const char *ok_body;
    int bad_etag; /* answer an ETag that is not the MD5 of the body */
    volatile int stop;
    int hits;
    uint64_t t_ns[MAX_HITS];
    char last_head[4096];
    size_t last_body_len;
    unsigned char last_md5[16];
} fake_t;

static void send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k <= 0) return;
        p += k;
        n -= (size_t)k;
    }
}

static void serve_one(fake_t *f, int c)
{
    store_buf_t req = {0};
    char buf[65536];
    char *end = NULL;
    while (!end) {
        ssize_t k = recv(c, buf, sizeof buf, 0);
        if (k <= 0) goto out;
        store_buf_add(&req, buf, (size_t)k);
        end = strstr(req.p, "\r\n\r\n");
    }
    size_t hlen = (size_t)(end - req.p) + 4;
    int hit = f->hits++;
    if (hit < MAX_HITS) f->t_ns[hit] = dp_clock_ns();
    snprintf(f->last_head, sizeof f->last_head, "%.*s", (int)hlen, req.p);
    size_t clen = 0;
    const char *cl = strcasestr(f->last_head, "\r\nContent-Length:");
    if (cl) clen = strtoull(cl + 17, NULL, 10);
    if (clen && strcasestr(f->last_head, "\r\nExpect: 100-continue"))
        send_all(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    while (req.len - hlen < clen) {
        ssize_t k = recv(c, buf, sizeof buf, 0);
        if (k <= 0) goto out;
        store_buf_add(&req, buf, (size_t)k);
    }
    f->last_body_len = req.len - hlen;
    store_md5(req.p + hlen, req.len - hlen, f->last_md5);
    char etag[33], resp[2048], body[512];
    store_hex(f->last_md5, 16, etag);
    if (f->bad_etag) memset(etag, '0', 32);
    int status = hit < f->fail_n ? f->fail_status : 200;
    if (status == 200) {
        snprintf(body, sizeof body, "%s", f->ok_body ? f->ok_body : "");
    } else {
        snprintf(body, sizeof body,
                 "<?xml version=\"1.0\"?><Error><Code>%s</Code><Message>fake says %d</Message>"
                 "</Error>",
                 f->fail_code ? f->fail_code : "Fake", status);
    }
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 %d X\r\nContent-Length: %zu\r\nETag: \"%s\"\r\n"
                     "Connection: close\r\n\r\n%s",
                     status, strncmp(f->last_head, "HEAD ", 5) ? strlen(body) : 0, etag,
                     strncmp(f->last_head, "HEAD ", 5) ? body : "");
    send_all(c, resp, (size_t)n);
out:
    store_buf_free(&req);
    close(c);
}

static void *fake_main(void *arg)
{
    fake_t *f = arg;
    while (!f->stop) {
        struct pollfd p = {f->lfd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0) continue;
        int c = accept(f->lfd, NULL, NULL);
        if (c >= 0) serve_one(f, c);
    }
    return NULL;
}

static int listen_any(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(fd, 16), 0);
    getsockname(fd, (struct sockaddr *)&a, &len);
    *port = ntohs(a.sin_port);
    return fd;
}

static void fake_start(fake_t *f)
{
    f->lfd = listen_any(&f->port);
    cr_assert_eq(pthread_create(&f->th, NULL, fake_main, f), 0);
}

static void fake_stop(fake_t *f)
{
    f->stop = 1;
    pthread_join(f->th, NULL);
    close(f->lfd);
}

static dp_store_t *fake_store(fake_t *f, dp_store_settings_t *st)
{
    char ep[64];
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d", f->port);
    st->endpoint = ep;
    if (!st->access_key_file) {
        st->access_key = "AKFAKE";
        st->secret_key = "SUPERSECRET-do-not-log";
    }
    dp_store_t *s = NULL;
    cr_assert_eq(dp_store_new("s3://bucket", st, &s), DP_OK, "%s", dp_err_detail());
    return s;
}

Test(store_retry, backoff_503_then_ok)
{
    fake_t f = {.fail_n = 3, .fail_status = 503, .fail_code = "SlowDown", .ok_body = "payload"};
    fake_start(&f);
    dp_store_settings_t st;
    dp_store_settings_init(&st);
    st.retry_base_ms = 40;
    dp_store_t *s = fake_store(&f, &st);
    void *d;
    size_t n;
    uint64_t t0 = dp_clock_ns();
    cr_assert_eq(dp_store_get_mem(s, "k", &d, &n), DP_OK, "%s", dp_err_detail());
    double ms = (double)(dp_clock_ns() - t0) / 1e6;
    cr_assert_eq(f.hits, 4);
    cr_assert_str_eq(d, "payload");
    free(d);
    /* backoff i waits between cap/2 and cap, cap = 40 ms * 2^i */
    for (int i = 1; i < 4; i++) {
        double gap = (double)(f.t_ns[i] - f.t_ns[i - 1]) / 1e6;
        double cap = 40.0 * (1 << (i - 1));
        cr_assert(gap >= cap / 2 - 1 && gap <= cap + 100, "gap %d: %.1f ms (cap %.0f)", i, gap,
                  cap);
    }
    cr_assert_lt(ms, 2000);
    dp_store_destroy(&s);
    fake_stop(&f);
}

Test(store_retry, bounded_in_count)
{
    fake_t f = {.fail_n = 1000, .fail_status = 503, .fail_code = "SlowDown"};
    fake_start(&f);
    dp_store_settings_t st;
    dp_store_settings_init(&st);
    st.retry_base_ms = 5;
    st.max_retries = 2;
    dp_store_t *s = fake_store(&f, &st);
    dp_store_info_t info;
    dp_err_t err = dp_store_head(s, "k", &info);
    cr_assert_eq(err, DP_ERR_REMOTE, "%s", dp_strerror(err));
    cr_assert_eq(f.hits, 3);
    cr_assert(strstr(dp_err_detail(), "HTTP 503"), "%s", dp_err_detail());
    cr_assert(strstr(dp_err_detail(), "after 3 tries"), "%s", dp_err_detail());
    dp_store_destroy(&s);
    fake_stop(&f);
}

Test(store_retry, bounded_in_time)
{
    fake_t f = {.fail_n = 1000, .fail_status = 500, .fail_code = "InternalError"};
    fake_start(&f);
    dp_store_settings_t st;
    dp_store_settings_init(&st);
    st.retry_base_ms = 100;
    st.max_retries = 50;
    st.retry_budget_ms = 500;
    dp_store_t *s = fake_store(&f, &st);
    void *d;
    size_t n;
    uint64_t t0 = dp_clock_ns();
    dp_err_t err = dp_store_get_mem(s, "k", &d, &n);
    double ms = (double)(dp_clock_ns() - t0) / 1e6;
    cr_assert_eq(err, DP_ERR_REMOTE);
    cr_assert(strstr(dp_err_detail(), "InternalError"), "%s", dp_err_detail());
    cr_assert(strstr(dp_err_detail(), "gave up after ") && strstr(dp_err_detail(), " s)"), "%s",
              dp_err_detail());
    cr_assert_lt(ms, 700, "took %.0f ms", ms);
    cr_assert_lt(f.hits, 8);
    dp_store_destroy(&s);
    fake_stop(&f);
}

Test(store_retry, on_429_and_not_on_400)
{
    fake_t f = {.fail_n = 2, .fail_status = 429, .fail_code = "TooManyRequests", .ok_body = "x"};
    fake_start(&f);
    dp_store_settings_t st;
    dp_store_settings_init(&st);
    st.retry_base_ms = 5;
    dp_store_t *s = fake_store(&f, &st);
    void *d;
    size_t n;
    cr_assert_eq(dp_store_get_mem(s, "k", &d, &n), DP_OK, "%s", dp_err_detail());
    free(d);
    cr_assert_eq(f.hits, 3);
    f.hits = 0;
    f.fail_n = 5;
    f.fail_status = 400;
    f.fail_code = "InvalidArgument";
    cr_assert_eq(dp_store_get_mem(s, "k", &d, &n), DP_ERR_REMOTE);
    cr_assert_eq(f.hits, 1, "4xx is not retried");
    cr_assert(strstr(dp_err_detail(), "InvalidArgument: fake says 400"), "%s", dp_err_detail());
    dp_store_destroy(&s);
    fake_stop(&f);
}

Test(store_retry, put_is_resent_whole)
{
    fake_t f = {.fail_n = 2, .fail_status = 503, .fail_code = "SlowDown"};
    fake_start(&f);
    dp_store_settings_t st;
    dp_store_settings_init(&st);
    st.retry_base_ms = 5;
    dp_store_t *s = fake_store(&f, &st);
    size_t len = 300000;
    char *data = malloc(len);
    for (size_t i = 0; i < len; i++) data[i] = (char)(i % 251);
    cr_assert_eq(dp_store_put_mem(s, "k", data, len), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(f.hits, 3);
    cr_assert_eq(f.last_body_len, len);
    unsigned char md5[16];
    store_md5(data, len, md5);
    cr_assert_eq(memcmp(md5, f.last_md5, 16), 0);
    cr_assert(strcasestr(f.last_head, "\r\nContent-MD5: "), "%s", f.last_head);
    cr_assert(strcasestr(f.last_head, "\r\nx-amz-content-sha256: "), "%s", f.last_head);
    free(data);
    dp_store_destroy(&s);
    fake_stop(&f);
}

/* A streamed put_file (UNSIGNED-PAYLOAD, MD5 taken as the body is sent in
 * 1 MiB reads) is resent whole after a 503 and its MD5 restarted. */
Test(store_retry, streamed_put_file_resent_and_checked)
{
    fake_t f = {.fail_n = 1, .fail_status = 503, .fail_code = "SlowDown"};
    fake_start(&f);
    dp_store_settings_t st;
    dp_store_settings_init(&st);
    st.retry_base_ms = 5;
    dp_store_t *s = fake_store(&f, &st);
    size_t len = (3u << 20) + 777;
    char *data = malloc(len);
    for (size_t i = 0; i < len; i++) data[i] = (char)(i % 253);
    char path[] = "/tmp/dp-put-file-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(store_write_all(fd, data, len, "test"), DP_OK);
    close(fd);
    cr_assert_eq(dp_store_put_file(s, "k", path), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(f.hits, 2);
    cr_assert_eq(f.last_body_len, len);
    cr_assert(strcasestr(f.last_head, "\r\nx-amz-content-sha256: UNSIGNED-PAYLOAD"), "%s",
              f.last_head);
    unsigned char md5[16];
    store_md5(data, len, md5);
    cr_assert_eq(memcmp(md5, f.last_md5, 16), 0);

    /* an ETag that is not the MD5 sent: mismatch, and the object is deleted */
    f.bad_etag = 1;
    f.hits = f.fail_n = 0;
    cr_assert_eq(dp_store_put_file(s, "k", path), DP_ERR_MISMATCH);
    cr_assert(strstr(dp_err_detail(), "object deleted"), "%s", dp_err_detail());
    cr_assert_eq(f.hits, 2);
    cr_assert(!strncmp(f.last_head, "DELETE ", 7), "%s", f.last_head);
    dp_store_destroy(&s);

    /* no_verify_md5 (measurements only) does not look */
    st.no_verify_md5 = 1;
    s = fake_store(&f, &st);
    f.hits = 0;
    cr_assert_eq(dp_store_put_file(s, "k", path), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(f.hits, 1);
    unlink(path);
    free(data);
    dp_store_destroy(&s);
    fake_stop(&f);
}

Test(store_retry, signature_rejected_is_auth)
{
    fake_t f = {.fail_n = 1000, .fail_status = 403, .fail_code = "SignatureDoesNotMatch"};
    fake_start(&f);
    dp_store_settings_t st;
    dp_store_settings_init(&st);
    dp_store_t *s = fake_store(&f, &st);
    dp_err_t err = dp_store_put_mem(s, "k", "x", 1);
    cr_assert_eq(err, DP_ERR_AUTH, "%s", dp_strerror(err));
    cr_assert(strstr(dp_err_detail(), "SignatureDoesNotMatch"), "%s", dp_err_detail());
    cr_assert(strstr(dp_err_detail(), "check credentials"), "%s", dp_err_detail());
    cr_assert_eq(f.hits, 1);
    dp_store_destroy(&s);
    fake_stop(&f);
}

Test(store_retry, connection_refused_is_network)
{
    int port;
    int fd = listen_any(&port);
    close(fd); /* nothing listens there now */
    char ep[64];
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d", port);
    dp_store_settings_t st;
    dp_store_settings_init(&st);
    st.endpoint = ep;
    st.access_key = "AK";
    st.secret_key = "SK";
    st.retry_base_ms = 5;
    st.max_retries = 3;
    dp_store_t *s = NULL;
    cr_assert_eq(dp_store_new("s3://bucket", &st, &s), DP_OK);
    dp_store_info_t info;
    dp_err_t err = dp_store_head(s, "k", &info);
    cr_assert_eq(err, DP_ERR_NETWORK, "%s", dp_strerror(err));
    cr_assert(strstr(dp_err_detail(), "after 4 tries"), "%s", dp_err_detail());
    dp_store_destroy(&s);
}

/* ---- credentials ---- */

struct logcap {
    pthread_mutex_t mu;
    store_buf_t lines;
};

static void log_sink(dp_log_level_t level, const char *comp, const char *line, void *arg)
{
    struct logcap *c = arg;
    pthread_mutex_lock(&c->mu);
    store_buf_addf(&c->lines, "%s\n", line);
    pthread_mutex_unlock(&c->mu);
}

Test(store_creds, secrets_never_logged)
{
    struct logcap lc = {.mu = PTHREAD_MUTEX_INITIALIZER};
    dp_log_set_sink(log_sink, &lc);
    dp_log_set_level(DP_LOG_DEBUG);
    fake_t f = {.fail_n = 2, .fail_status = 503, .fail_code = "SlowDown", .ok_body = "x"};
    fake_start(&f);
    dp_store_settings_t st;
    dp_store_settings_init(&st);
    st.retry_base_ms = 5;
    dp_store_t *s = fake_store(&f, &st);
    void *d;
    size_t n;
    cr_assert_eq(dp_store_get_mem(s, "k", &d, &n), DP_OK);
    free(d);
    f.fail_n = 1000;
    f.fail_status = 403;
    cr_assert_eq(dp_store_get_mem(s, "k", &d, &n), DP_ERR_AUTH);
    dp_log_set_sink(NULL, NULL);
    cr_assert(lc.lines.p && strstr(lc.lines.p, "retry"), "the retries were logged");
    cr_assert_null(strstr(lc.lines.p, "SUPERSECRET"), "secret in the log:\n%s", lc.lines.p);
    cr_assert_null(strstr(dp_err_detail(), "SUPERSECRET"));
    cr_assert_null(strstr(f.last_head, "SUPERSECRET"), "secret on the wire");
    cr_assert(strstr(f.last_head, "Credential=AKFAKE/"), "%s", f.last_head);
    store_buf_free(&lc.lines);
    dp_store_destroy(&s);
    fake_stop(&f);
}

Test(store_creds, from_files_and_environment)
{
    fake_t f = {.ok_body = "x"};
    fake_start(&f);
    char ak[] = "/tmp/dp-ak-XXXXXX", sk[] = "/tmp/dp-sk-XXXXXX";
    int fa = mkstemp(ak), fs = mkstemp(sk);
    cr_assert_eq(write(fa, "FILEKEY\n", 8), 8);
    cr_assert_eq(write(fs, "filesecret\n", 11), 11);
    close(fa);
    close(fs);
    dp_store_settings_t st;
    dp_store_settings_init(&st);
    st.access_key_file = ak;
    st.secret_key_file = sk;
    dp_store_t *s = fake_store(&f, &st);
    dp_store_info_t info;
    cr_assert_eq(dp_store_head(s, "k", &info), DP_OK, "%s", dp_err_detail());
    cr_assert(strstr(f.last_head, "Credential=FILEKEY/"), "%s", f.last_head);
    dp_store_destroy(&s);

    /* environment: AWS_* first, then the DP_STORE_*_FILE files */
    char ep[64];
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d", f.port);
    setenv("DP_STORE_ENDPOINT", ep, 1);
    setenv("AWS_REGION", "eu-west-3", 1);
    setenv("DP_STORE_ACCESS_KEY_FILE", ak, 1);
    setenv("DP_STORE_SECRET_KEY_FILE", sk, 1);
    setenv("AWS_ACCESS_KEY_ID", "ENVKEY", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
    cr_assert_eq(dp_store_new("s3://bucket", NULL, &s), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(dp_store_head(s, "k", &info), DP_OK, "%s", dp_err_detail());
    cr_assert(strstr(f.last_head, "Credential=ENVKEY/"), "%s", f.last_head);
    cr_assert(strstr(f.last_head, "/eu-west-3/s3/aws4_request"), "%s", f.last_head);
    dp_store_destroy(&s);
    unsetenv("AWS_ACCESS_KEY_ID");
    cr_assert_eq(dp_store_new("s3://bucket", NULL, &s), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(dp_store_head(s, "k", &info), DP_OK, "%s", dp_err_detail());
    cr_assert(strstr(f.last_head, "Credential=FILEKEY/"), "%s", f.last_head);
    dp_store_destroy(&s);
    unsetenv("DP_STORE_ACCESS_KEY_FILE");
    dp_err_t err = dp_store_new("s3://bucket", NULL, &s);
    cr_assert_eq(err, DP_ERR_AUTH);
    cr_assert(strstr(dp_err_detail(), "no credentials"), "%s", dp_err_detail());
    unlink(ak);
    unlink(sk);
    fake_stop(&f);
}
