/* Small helpers of the store: growable buffer, RFC 3986 encoding, digests
 * through libcrypto, a minimal XML field reader (S3 answers are flat enough),
 * and atomic local files (temporary file, fsync, rename). */
#define _GNU_SOURCE /* mkostemp */
#include "store/store_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static dp_err_t buf_reserve(store_buf_t *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap) return DP_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return dp_err_set(DP_ERR_NOMEM, "store: buffer of %zu bytes", cap);
    b->p = p;
    b->cap = cap;
    return DP_OK;
}

dp_err_t store_buf_add(store_buf_t *b, const void *data, size_t len)
{
    dp_err_t err = buf_reserve(b, len);
    if (err) return err;
    if (len) memcpy(b->p + b->len, data, len);
    b->len += len;
    b->p[b->len] = '\0';
    return DP_OK;
}

dp_err_t store_buf_addf(store_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return dp_err_set(DP_ERR_INVALID, "store: bad format");
    dp_err_t err = buf_reserve(b, (size_t)n);
    if (err) return err;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return DP_OK;
}

void store_buf_free(store_buf_t *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

dp_err_t store_uri_encode(store_buf_t *b, const char *s, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        int keep = (*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
                   (*c >= '0' && *c <= '9') || *c == '-' || *c == '.' || *c == '_' || *c == '~' ||
                   (keep_slash && *c == '/');
        char enc[3] = {'%', hex[*c >> 4], hex[*c & 15]};
        dp_err_t err = keep ? store_buf_add(b, c, 1) : store_buf_add(b, enc, 3);
        if (err) return err;
    }
    return DP_OK;
}

static void digest(const EVP_MD *md, const void *data, size_t len, unsigned char *out)
{
    unsigned int n = 0;
    EVP_Digest(data, len, out, &n, md, NULL);
}

void store_hex(const unsigned char *in, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[2 * n] = '\0';
}

int store_etag_matches(const char *etag, const unsigned char md5[16])
{
    char hex[33];
    store_hex(md5, 16, hex);
    return !strcasecmp(etag, hex);
}

void store_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char d[32];
    digest(EVP_sha256(), data, len, d);
    store_hex(d, 32, out);
}

void store_md5(const void *data, size_t len, unsigned char out[16])
{
    digest(EVP_md5(), data, len, out);
}

void store_base64(const unsigned char *in, size_t n, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

/* Decodes the five XML entities and numeric references in place. */
static void xml_unescape(char *s)
{
    static const struct {
        const char *name;
        char c;
    } ent[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    char *w = s;
    for (const char *r = s; *r;) {
        if (*r != '&') {
            *w++ = *r++;
            continue;
        }
        size_t i;
        for (i = 0; i < sizeof ent / sizeof ent[0]; i++) {
            size_t n = strlen(ent[i].name);
            if (!strncmp(r, ent[i].name, n)) {
                *w++ = ent[i].c;
                r += n;
                break;
            }
        }
        if (i < sizeof ent / sizeof ent[0]) continue;
        if (r[1] == '#') { /* &#NN; or &#xHH; as UTF-8 */
            char *end;
            unsigned long cp = r[2] == 'x' ? strtoul(r + 3, &end, 16) : strtoul(r + 2, &end, 10);
            if (*end == ';' && cp > 0 && cp < 0x110000) {
                if (cp < 0x80) {
                    *w++ = (char)cp;
                } else if (cp < 0x800) {
                    *w++ = (char)(0xC0 | (cp >> 6));
                    *w++ = (char)(0x80 | (cp & 0x3F));
                } else if (cp < 0x10000) {
                    *w++ = (char)(0xE0 | (cp >> 12));
                    *w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
                    *w++ = (char)(0x80 | (cp & 0x3F));
                } else {
                    *w++ = (char)(0xF0 | (cp >> 18));
                    *w++ = (char)(0x80 | ((cp >> 12) & 0x3F));
                    *w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
                    *w++ = (char)(0x80 | (cp & 0x3F));
                }
                r = end + 1;
                continue;
            }
        }
        *w++ = *r++;
    }
    *w = '\0';
}

int store_xml_field(const char *xml, const char *tag, char *out, size_t n, size_t *pos)
{
    char open[64], close[64];
    snprintf(open, sizeof open, "<%s>", tag);
    snprintf(close, sizeof close, "</%s>", tag);
    const char *start = strstr(xml + (pos ? *pos : 0), open);
    if (!start) return 0;
    start += strlen(open);
    const char *end = strstr(start, close);
    if (!end) return 0;
    size_t len = (size_t)(end - start);
    if (n) {
        if (len >= n) len = n - 1;
        memcpy(out, start, len);
        out[len] = '\0';
        xml_unescape(out);
    }
    if (pos) *pos = (size_t)(end - xml) + strlen(close);
    return 1;
}

dp_err_t store_write_all(int fd, const void *data, size_t len, const char *what)
{
    const char *p = data;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return dp_err_set(DP_ERR_IO, "%s: write: %s", what, strerror(errno));
        p += n;
        len -= (size_t)n;
    }
    return DP_OK;
}

/* Removes the temporaries of path ("PATH.dp-tmp-XXXXXX") that no process
 * holds: a live writer keeps an flock on its own, a killed one held none
 * after it died. Best effort: what cannot be removed stays. */
static void remove_stale_tmps(const char *path)
{
    char *copy = strdup(path), *copy2 = strdup(path);
    if (!copy || !copy2) goto out;
    const char *dir = dirname(copy), *base = basename(copy2);
    size_t bl = strlen(base), ml = strlen(STORE_TMP_MARK);
    DIR *d = opendir(dir);
    if (!d) goto out;
    int dfd = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        if (strlen(n) != bl + ml + 6 || strncmp(n, base, bl) || strncmp(n + bl, STORE_TMP_MARK, ml))
            continue;
        int fd = openat(dfd, n, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0) continue;
        struct stat st;
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && flock(fd, LOCK_EX | LOCK_NB) == 0)
            unlinkat(dfd, n, 0); /* its writer is gone (and sees nlink 0 if it just started) */
        close(fd);
    }
    closedir(d);
out:
    free(copy);
    free(copy2);
}

dp_err_t store_tmp_open(const char *path, char **tmp, int *fd)
{
    remove_stale_tmps(path);
    size_t n = strlen(path) + 16;
    char *t = malloc(n);
    if (!t) return dp_err_set(DP_ERR_NOMEM, "%s: temporary name", path);
    for (int tries = 0;; tries++) {
        snprintf(t, n, "%s" STORE_TMP_MARK "XXXXXX", path);
        int f = mkostemp(t, O_CLOEXEC);
        if (f < 0) {
            dp_err_t err =
                dp_err_set(errno == ENOENT ? DP_ERR_NOTFOUND : DP_ERR_IO,
                           "%s: cannot create a temporary file: %s", path, strerror(errno));
            free(t);
            return err;
        }
        /* held until commit or abort; another run's cleanup may have removed
         * the file between mkstemp and flock: then make a new one */
        struct stat st;
        if (flock(f, LOCK_EX) == 0 && fstat(f, &st) == 0 && st.st_nlink > 0) {
            fchmod(f, 0644);
            *tmp = t;
            *fd = f;
            return DP_OK;
        }
        close(f);
        unlink(t); /* a flock that failed; ENOENT when it was removed */
        if (tries == 8) {
            free(t);
            return dp_err_set(DP_ERR_IO, "%s: cannot hold a temporary file", path);
        }
    }
}

static void fsync_dir_of(const char *path)
{
    char *copy = strdup(path);
    if (!copy) return;
    int d = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (d >= 0) {
        fsync(d);
        close(d);
    }
    free(copy);
}

dp_err_t store_tmp_commit(int fd, const char *tmp, const char *path, int durable)
{
    if (durable && fsync(fd) != 0) {
        dp_err_t err = dp_err_set(DP_ERR_IO, "%s: fsync: %s", tmp, strerror(errno));
        store_tmp_abort(fd, tmp);
        return err;
    }
    if (close(fd) != 0) {
        dp_err_t err = dp_err_set(DP_ERR_IO, "%s: close: %s", tmp, strerror(errno));
        unlink(tmp);
        return err;
    }
    if (rename(tmp, path) != 0) {
        dp_err_t err = dp_err_set(DP_ERR_IO, "%s: rename: %s", path, strerror(errno));
        unlink(tmp);
        return err;
    }
    if (durable) fsync_dir_of(path);
    return DP_OK;
}

void store_tmp_abort(int fd, const char *tmp)
{
    if (fd >= 0) close(fd);
    if (tmp) unlink(tmp);
}

int store_thread_create(pthread_t *thread, void *(*fn)(void *), void *arg)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(thread, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}
