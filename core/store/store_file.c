/* file:// backend: objects are files under a root directory, keys are
 * relative paths. Writes go to a temporary file beside the target, are
 * fsynced and renamed over it, so a reader sees the old or the new object,
 * never half of one; listings skip those temporaries. */
#include "store/store_impl.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct file_store {
    char *dir; /* without trailing '/', "" for the file system root */
} file_store_t;

#define COPY_CHUNK (1u << 20)

static void file_destroy(void *impl)
{
    file_store_t *f = impl;
    free(f->dir);
    free(f);
}

/* dir + "/" + key after checking key is a plain relative path; new string. */
static dp_err_t key_path(dp_store_t *s, const char *key, char **out)
{
    file_store_t *f = s->impl;
    if (key[0] == '/') return dp_err_set(DP_ERR_INVALID, "%s: key starts with '/'", key);
    for (const char *seg = key; seg;) {
        const char *end = strchr(seg, '/');
        size_t n = end ? (size_t)(end - seg) : strlen(seg);
        if (n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && !strncmp(seg, "..", 2)))
            return dp_err_set(DP_ERR_INVALID, "%s: key has an empty, '.' or '..' segment", key);
        seg = end ? end + 1 : NULL;
    }
    if (strstr(key, STORE_TMP_MARK))
        return dp_err_set(DP_ERR_INVALID, "%s: key contains '%s'", key, STORE_TMP_MARK);
    size_t n = strlen(f->dir) + strlen(key) + 2;
    *out = malloc(n);
    if (!*out) return dp_err_set(DP_ERR_NOMEM, "store: path");
    snprintf(*out, n, "%s/%s", f->dir, key);
    return DP_OK;
}

/* mkdir -p of the directories above path. */
static dp_err_t make_parents(const char *path)
{
    char *p = strdup(path);
    if (!p) return dp_err_set(DP_ERR_NOMEM, "store: path");
    for (char *c = p + 1; *c; c++) {
        if (*c != '/') continue;
        *c = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            dp_err_t err = dp_err_set(DP_ERR_IO, "%s: mkdir: %s", p, strerror(errno));
            free(p);
            return err;
        }
        *c = '/';
    }
    free(p);
    return DP_OK;
}

/* Opens a regular file for reading. not_regular: the error for anything
 * else: DP_ERR_NOTFOUND for an object (a directory under the root is no
 * object), DP_ERR_INVALID for a local file to upload (as the s3 backend's). */
static dp_err_t open_read(const char *path, int *fd, uint64_t *size, dp_err_t not_regular)
{
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*fd < 0)
        return dp_err_set(errno == ENOENT ? DP_ERR_NOTFOUND : DP_ERR_IO, "%s: %s", path,
                          errno == ENOENT ? "not found" : strerror(errno));
    struct stat st;
    if (fstat(*fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(*fd);
        *fd = -1;
        return dp_err_set(not_regular, "%s: not a regular file", path);
    }
    *size = (uint64_t)st.st_size;
    return DP_OK;
}

/* Copies size bytes from in to out; fails if in has fewer or more
 * (UINT64_MAX: to the end of in, whatever it holds). */
static dp_err_t copy_fd(int in, int out, uint64_t size, const char *what)
{
    char *buf = malloc(COPY_CHUNK);
    if (!buf) return dp_err_set(DP_ERR_NOMEM, "store: copy buffer");
    dp_err_t err = DP_OK;
    uint64_t done = 0;
    for (;;) {
        ssize_t n = read(in, buf, COPY_CHUNK);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            err = dp_err_set(DP_ERR_IO, "%s: read: %s", what, strerror(errno));
            break;
        }
        if (n == 0) break;
        done += (uint64_t)n;
        if ((err = store_write_all(out, buf, (size_t)n, what))) break;
    }
    free(buf);
    if (!err && size != UINT64_MAX && done != size)
        err = dp_err_set(DP_ERR_MISMATCH, "%s: size changed while copying (%llu, want %llu)", what,
                         (unsigned long long)done, (unsigned long long)size);
    return err;
}

static dp_err_t file_put_mem(dp_store_t *s, const char *key, const void *data, size_t len)
{
    char *path = NULL, *tmp = NULL;
    int fd = -1;
    dp_err_t err = key_path(s, key, &path);
    if (!err) err = make_parents(path);
    if (!err) err = store_tmp_open(path, &tmp, &fd);
    if (!err) err = store_write_all(fd, data, len, tmp);
    if (!err) {
        err = store_tmp_commit(fd, tmp, path, 1);
    } else if (fd >= 0) {
        store_tmp_abort(fd, tmp);
    }
    free(tmp);
    free(path);
    return err;
}

static dp_err_t file_put_file(dp_store_t *s, const char *key, const char *src)
{
    char *path = NULL, *tmp = NULL;
    int in = -1, fd = -1;
    uint64_t size = 0;
    dp_err_t err = open_read(src, &in, &size, DP_ERR_INVALID);
    if (!err) err = key_path(s, key, &path);
    if (!err) err = make_parents(path);
    if (!err) err = store_tmp_open(path, &tmp, &fd);
    if (!err) err = copy_fd(in, fd, size, src);
    if (!err) {
        err = store_tmp_commit(fd, tmp, path, 1);
    } else if (fd >= 0) {
        store_tmp_abort(fd, tmp);
    }
    if (in >= 0) close(in);
    free(tmp);
    free(path);
    return err;
}

static dp_err_t file_get_mem(dp_store_t *s, const char *key, void **data, size_t *len)
{
    char *path = NULL, *buf = NULL;
    int fd = -1;
    uint64_t size = 0;
    dp_err_t err = key_path(s, key, &path);
    if (!err) err = open_read(path, &fd, &size, DP_ERR_NOTFOUND);
    if (!err && size > SIZE_MAX - 1) err = dp_err_set(DP_ERR_RANGE, "%s: too large", path);
    if (!err && !(buf = malloc((size_t)size + 1))) err = dp_err_set(DP_ERR_NOMEM, "%s", path);
    size_t done = 0;
    while (!err && done < size) {
        ssize_t n = read(fd, buf + done, (size_t)size - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0)
            err = dp_err_set(DP_ERR_IO, "%s: read: %s", path, strerror(errno));
        else if (n == 0)
            err = dp_err_set(DP_ERR_TRUNCATED, "%s: shrank while reading", path);
        else
            done += (size_t)n;
    }
    if (fd >= 0) close(fd);
    free(path);
    if (err) {
        free(buf);
        return err;
    }
    buf[size] = '\0';
    *data = buf;
    *len = (size_t)size;
    return DP_OK;
}

static dp_err_t file_get_file(dp_store_t *s, const char *key, const char *dst)
{
    char *path = NULL, *tmp = NULL;
    int in = -1, fd = -1;
    uint64_t size = 0;
    dp_err_t err = key_path(s, key, &path);
    if (!err) err = open_read(path, &in, &size, DP_ERR_NOTFOUND);
    if (!err) err = store_tmp_open(dst, &tmp, &fd);
    if (!err) err = copy_fd(in, fd, size, path);
    if (!err) {
        err = store_tmp_commit(fd, tmp, dst, 1);
    } else if (fd >= 0) {
        store_tmp_abort(fd, tmp);
    }
    if (in >= 0) close(in);
    free(tmp);
    free(path);
    return err;
}

static dp_err_t file_put_fd(dp_store_t *s, const char *key, int in)
{
    char *path = NULL, *tmp = NULL;
    int fd = -1;
    dp_err_t err = key_path(s, key, &path);
    if (!err) err = make_parents(path);
    if (!err) err = store_tmp_open(path, &tmp, &fd);
    if (!err) err = copy_fd(in, fd, UINT64_MAX, "input");
    if (!err) {
        err = store_tmp_commit(fd, tmp, path, 1);
    } else if (fd >= 0) {
        store_tmp_abort(fd, tmp);
    }
    free(tmp);
    free(path);
    return err;
}

static dp_err_t file_get_fd(dp_store_t *s, const char *key, int out)
{
    char *path = NULL;
    int in = -1;
    uint64_t size = 0;
    dp_err_t err = key_path(s, key, &path);
    if (!err) err = open_read(path, &in, &size, DP_ERR_NOTFOUND);
    if (!err) err = copy_fd(in, out, size, path);
    if (in >= 0) close(in);
    free(path);
    return err;
}

/* file:// writes are atomic files: no unfinished uploads exist. */
static dp_err_t file_list_uploads(dp_store_t *s, const char *prefix, dp_store_upload_fn fn,
                                  void *arg)
{
    (void)s, (void)prefix, (void)fn, (void)arg;
    return DP_OK;
}

static dp_err_t file_abort_upload(dp_store_t *s, const char *key, const char *upload_id)
{
    (void)s;
    return dp_err_set(DP_ERR_NOTFOUND, "%s: no unfinished upload %s (file:// has none)", key,
                      upload_id);
}

static dp_err_t file_head(dp_store_t *s, const char *key, dp_store_info_t *info)
{
    char *path;
    dp_err_t err = key_path(s, key, &path);
    if (err) return err;
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
        err = dp_err_set(DP_ERR_NOTFOUND, "%s: not found", path);
    } else {
        info->size = (uint64_t)st.st_size;
        info->mtime = (int64_t)st.st_mtime;
    }
    free(path);
    return err;
}

static dp_err_t file_del(dp_store_t *s, const char *key)
{
    char *path;
    dp_err_t err = key_path(s, key, &path);
    if (err) return err;
    if (unlink(path) != 0 && errno != ENOENT)
        err = dp_err_set(DP_ERR_IO, "%s: unlink: %s", path, strerror(errno));
    free(path);
    return err;
}

/* Listing: walk the directory tree below the prefix's directory, gather the
 * keys that start with the prefix, sort them, then report. */
typedef struct key_list {
    char **keys;
    size_t n, cap;
} key_list_t;

static dp_err_t walk(const char *root, const char *rel, const char *prefix, key_list_t *kl)
{
    size_t rn = strlen(root) + strlen(rel) + 2;
    char *dirpath = malloc(rn);
    if (!dirpath) return dp_err_set(DP_ERR_NOMEM, "store: list");
    snprintf(dirpath, rn, "%s/%s", root, rel);
    DIR *d = opendir(dirpath);
    free(dirpath);
    if (!d) return DP_OK; /* a missing directory holds no keys */
    dp_err_t err = DP_OK;
    struct dirent *e;
    while (!err && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (strstr(e->d_name, STORE_TMP_MARK)) continue;
        size_t kn = strlen(rel) + strlen(e->d_name) + 2;
        char *key = malloc(kn);
        if (!key) {
            err = dp_err_set(DP_ERR_NOMEM, "store: list");
            break;
        }
        snprintf(key, kn, "%s%s", rel, e->d_name);
        size_t pn = strlen(root) + kn + 1;
        char *path = malloc(pn);
        struct stat st;
        if (!path || stat((snprintf(path, pn, "%s/%s", root, key), path), &st) != 0) {
            free(path);
            free(key);
            continue;
        }
        free(path);
        size_t klen = strlen(key), plen = strlen(prefix);
        size_t m = klen < plen ? klen : plen;
        if (S_ISDIR(st.st_mode)) {
            if (!strncmp(key, prefix, m)) { /* could hold matching keys */
                strcat(key, "/");
                err = walk(root, key, prefix, kl);
            }
            free(key);
        } else if (S_ISREG(st.st_mode) && !strncmp(key, prefix, plen)) {
            if (kl->n == kl->cap) {
                size_t cap = kl->cap ? 2 * kl->cap : 64;
                char **k = realloc(kl->keys, cap * sizeof *k);
                if (!k) {
                    free(key);
                    err = dp_err_set(DP_ERR_NOMEM, "store: list");
                    break;
                }
                kl->keys = k;
                kl->cap = cap;
            }
            kl->keys[kl->n++] = key;
        } else {
            free(key);
        }
    }
    closedir(d);
    return err;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static dp_err_t file_list(dp_store_t *s, const char *prefix, dp_store_list_fn fn, void *arg)
{
    file_store_t *f = s->impl;
    key_list_t kl = {0};
    dp_err_t err = walk(f->dir, "", prefix, &kl);
    if (!err && kl.n) qsort(kl.keys, kl.n, sizeof *kl.keys, cmp_str);
    int stop = 0;
    for (size_t i = 0; i < kl.n; i++) {
        if (!err && !stop) {
            size_t pn = strlen(f->dir) + strlen(kl.keys[i]) + 2;
            char *path = malloc(pn);
            struct stat st;
            if (path && stat((snprintf(path, pn, "%s/%s", f->dir, kl.keys[i]), path), &st) == 0) {
                dp_store_info_t info = {
                    .key = kl.keys[i], .size = (uint64_t)st.st_size, .mtime = (int64_t)st.st_mtime};
                stop = fn(&info, arg);
            }
            free(path);
        }
        free(kl.keys[i]);
    }
    free(kl.keys);
    return err;
}

static const store_ops_t file_ops = {
    .put_mem = file_put_mem,
    .put_file = file_put_file,
    .get_mem = file_get_mem,
    .get_file = file_get_file,
    .head = file_head,
    .list = file_list,
    .del = file_del,
    .put_fd = file_put_fd,
    .get_fd = file_get_fd,
    .list_uploads = file_list_uploads,
    .abort_upload = file_abort_upload,
    .destroy = file_destroy,
};

dp_err_t store_file_open(dp_store_t *s, const char *dir)
{
    file_store_t *f = calloc(1, sizeof *f);
    if (!f) return dp_err_set(DP_ERR_NOMEM, "store: file");
    f->dir = strdup(dir);
    if (!f->dir) {
        free(f);
        return dp_err_set(DP_ERR_NOMEM, "store: file");
    }
    size_t n = strlen(f->dir);
    while (n > 0 && f->dir[n - 1] == '/') f->dir[--n] = '\0';
    s->ops = &file_ops;
    s->impl = f;
    return DP_OK;
}
