/* The store front end: parses the root URI, picks the backend, checks keys
 * and prepends the root's prefix, so backends see full keys only. */
#include "store/store_impl.h"

#include <stdlib.h>
#include <string.h>

void dp_store_settings_init(dp_store_settings_t *s) { memset(s, 0, sizeof *s); }

static dp_err_t check_key(const char *key)
{
    if (!key || !*key) return dp_err_set(DP_ERR_INVALID, "store: empty key");
    if (strlen(key) > 1024) return dp_err_set(DP_ERR_INVALID, "store: key longer than 1024 bytes");
    return DP_OK;
}

dp_err_t dp_store_new(const char *root_uri, const dp_store_settings_t *settings, dp_store_t **out)
{
    dp_store_settings_t defaults;
    if (!settings) {
        dp_store_settings_init(&defaults);
        settings = &defaults;
    }
    *out = NULL;
    if (!root_uri) return dp_err_set(DP_ERR_INVALID, "store: no URI");
    dp_store_t *s = calloc(1, sizeof *s);
    if (!s) return dp_err_set(DP_ERR_NOMEM, "store: new");
    dp_err_t err = DP_ERR_NOMEM;
    s->root = strdup(root_uri);
    if (!s->root) goto fail;
    if (!strncmp(root_uri, "s3://", 5)) {
        const char *b = root_uri + 5;
        const char *slash = strchr(b, '/');
        size_t blen = slash ? (size_t)(slash - b) : strlen(b);
        if (blen < 3 || blen > 63) {
            err = dp_err_set(DP_ERR_INVALID, "%s: bad bucket name", root_uri);
            goto fail;
        }
        char bucket[64];
        memcpy(bucket, b, blen);
        bucket[blen] = '\0';
        /* prefix: the rest, with one trailing '/' */
        const char *p = slash ? slash + 1 : "";
        size_t plen = strlen(p);
        s->prefix = malloc(plen + 2);
        if (!s->prefix) goto fail;
        memcpy(s->prefix, p, plen + 1);
        if (plen && p[plen - 1] != '/') strcat(s->prefix, "/");
        err = store_s3_open(s, bucket, settings);
        if (err) goto fail;
    } else if (!strncmp(root_uri, "file://", 7)) {
        const char *dir = root_uri + 7;
        if (dir[0] != '/') {
            err = dp_err_set(DP_ERR_INVALID, "%s: file:// needs an absolute path (file:///dir)",
                             root_uri);
            goto fail;
        }
        s->prefix = strdup("");
        if (!s->prefix) goto fail;
        err = store_file_open(s, dir);
        if (err) goto fail;
    } else {
        err = dp_err_set(DP_ERR_INVALID, "%s: unknown scheme (want s3:// or file://)", root_uri);
        goto fail;
    }
    *out = s;
    return DP_OK;
fail:
    if (err == DP_ERR_NOMEM) dp_err_set(err, "store: new");
    dp_store_destroy(&s);
    return err;
}

dp_err_t dp_store_open_uri(const char *uri, const dp_store_settings_t *settings, dp_store_t **out,
                           char **key)
{
    *out = NULL;
    *key = NULL;
    const char *k;
    char root[80];
    if (uri && !strncmp(uri, "s3://", 5)) {
        const char *slash = strchr(uri + 5, '/');
        if (!slash || !slash[1]) return dp_err_set(DP_ERR_INVALID, "%s: no key", uri);
        size_t n = (size_t)(slash - uri);
        if (n >= sizeof root) return dp_err_set(DP_ERR_INVALID, "%s: bad bucket name", uri);
        memcpy(root, uri, n);
        root[n] = '\0';
        k = slash + 1;
    } else if (uri && !strncmp(uri, "file:///", 8)) {
        strcpy(root, "file:///");
        k = uri + 8;
        if (!*k) return dp_err_set(DP_ERR_INVALID, "%s: no path", uri);
    } else {
        return dp_err_set(DP_ERR_INVALID, "%s: not an object URI (s3://bucket/key, file:///path)",
                          uri ? uri : "(null)");
    }
    char *kcopy = strdup(k);
    if (!kcopy) return dp_err_set(DP_ERR_NOMEM, "store: key");
    dp_err_t err = dp_store_new(root, settings, out);
    if (err) {
        free(kcopy);
        return err;
    }
    *key = kcopy;
    return DP_OK;
}

void dp_store_destroy(dp_store_t **ps)
{
    if (!ps || !*ps) return;
    dp_store_t *s = *ps;
    if (s->ops && s->impl) s->ops->destroy(s->impl);
    free(s->root);
    free(s->prefix);
    free(s->head_key);
    free(s);
    *ps = NULL;
}

const char *dp_store_root(const dp_store_t *s) { return s->root; }

/* The full key: the root's prefix and key; a new string, caller frees. */
static dp_err_t full_key(const dp_store_t *s, const char *key, char **out)
{
    dp_err_t err = check_key(key);
    if (err) return err;
    size_t a = strlen(s->prefix), b = strlen(key);
    *out = malloc(a + b + 1);
    if (!*out) return dp_err_set(DP_ERR_NOMEM, "store: key");
    memcpy(*out, s->prefix, a);
    memcpy(*out + a, key, b + 1);
    return DP_OK;
}

#define WITH_KEY(call)                                                                             \
    do {                                                                                           \
        char *fk;                                                                                  \
        dp_err_t err_ = full_key(s, key, &fk);                                                     \
        if (err_) return err_;                                                                     \
        err_ = (call);                                                                             \
        free(fk);                                                                                  \
        return err_;                                                                               \
    } while (0)

dp_err_t dp_store_put_mem(dp_store_t *s, const char *key, const void *data, size_t len)
{
    if (!data && len) return dp_err_set(DP_ERR_INVALID, "store: put_mem: no data");
    WITH_KEY(s->ops->put_mem(s, fk, data ? data : "", len));
}

dp_err_t dp_store_put_file(dp_store_t *s, const char *key, const char *path)
{
    WITH_KEY(s->ops->put_file(s, fk, path));
}

dp_err_t dp_store_get_mem(dp_store_t *s, const char *key, void **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    WITH_KEY(s->ops->get_mem(s, fk, data, len));
}

dp_err_t dp_store_get_file(dp_store_t *s, const char *key, const char *path)
{
    WITH_KEY(s->ops->get_file(s, fk, path));
}

dp_err_t dp_store_head(dp_store_t *s, const char *key, dp_store_info_t *info)
{
    memset(info, 0, sizeof *info);
    char *fk;
    dp_err_t err = full_key(s, key, &fk);
    if (err) return err;
    err = s->ops->head(s, fk, info);
    free(fk);
    if (err) return err;
    free(s->head_key);
    s->head_key = strdup(key);
    if (!s->head_key) return dp_err_set(DP_ERR_NOMEM, "store: head");
    info->key = s->head_key;
    return DP_OK;
}

struct strip {
    size_t n;
    dp_store_list_fn fn;
    void *arg;
};

static int strip_prefix(const dp_store_info_t *info, void *arg)
{
    struct strip *st = arg;
    dp_store_info_t rel = *info;
    rel.key += st->n;
    return st->fn(&rel, st->arg);
}

dp_err_t dp_store_list(dp_store_t *s, const char *prefix, dp_store_list_fn fn, void *arg)
{
    if (!prefix) prefix = "";
    size_t a = strlen(s->prefix), b = strlen(prefix);
    char *fp = malloc(a + b + 1);
    if (!fp) return dp_err_set(DP_ERR_NOMEM, "store: list");
    memcpy(fp, s->prefix, a);
    memcpy(fp + a, prefix, b + 1);
    struct strip st = {a, fn, arg};
    dp_err_t err = s->ops->list(s, fp, strip_prefix, &st);
    free(fp);
    return err;
}

dp_err_t dp_store_delete(dp_store_t *s, const char *key) { WITH_KEY(s->ops->del(s, fk)); }

dp_err_t dp_store_put_fd(dp_store_t *s, const char *key, int fd)
{
    WITH_KEY(s->ops->put_fd(s, fk, fd));
}

dp_err_t dp_store_get_fd(dp_store_t *s, const char *key, int fd)
{
    WITH_KEY(s->ops->get_fd(s, fk, fd));
}

dp_err_t dp_store_list_uploads(dp_store_t *s, const char *prefix, dp_store_upload_fn fn, void *arg)
{
    if (!prefix) prefix = "";
    size_t a = strlen(s->prefix), b = strlen(prefix);
    char *fp = malloc(a + b + 1);
    if (!fp) return dp_err_set(DP_ERR_NOMEM, "store: list uploads");
    memcpy(fp, s->prefix, a);
    memcpy(fp + a, prefix, b + 1);
    dp_err_t err = s->ops->list_uploads(s, fp, fn, arg);
    free(fp);
    return err;
}

dp_err_t dp_store_abort_upload(dp_store_t *s, const char *key, const char *upload_id)
{
    if (!upload_id || !*upload_id) return dp_err_set(DP_ERR_INVALID, "store: abort: no upload ID");
    WITH_KEY(s->ops->abort_upload(s, fk, upload_id));
}
