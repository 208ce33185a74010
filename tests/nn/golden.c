/* DPGF fixture loader: see golden.h for the format. Everything is decoded
 * byte by byte (little-endian) and copied into aligned buffers, so the file
 * may be read on any host and its payload needs no alignment. */
#include "golden.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct golden {
    int count;
    golden_tensor_t *t;
};

static uint32_t rd_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void golden_destroy(golden_t **pg)
{
    if (!pg || !*pg) return;
    golden_t *g = *pg;
    for (int i = 0; i < g->count; i++) {
        free(g->t[i].name);
        free(g->t[i].data);
    }
    free(g->t);
    free(g);
    *pg = NULL;
}

dp_err_t golden_parse(const void *buf, size_t len, const char *path, golden_t **out)
{
    const unsigned char *p = buf;
    size_t off = 0;
    dp_err_t err = DP_OK;
    golden_t *g = NULL;
    *out = NULL;
    if (len < 12)
        return dp_err_set(DP_ERR_TRUNCATED, "%s: %zu bytes, shorter than the 12-byte header", path,
                          len);
    if (memcmp(p, GOLDEN_MAGIC, 4) != 0)
        return dp_err_set(DP_ERR_FORMAT, "%s: bad magic %02x%02x%02x%02x (want \"DPGF\")", path,
                          p[0], p[1], p[2], p[3]);
    uint32_t version = rd_u32(p + 4), count = rd_u32(p + 8);
    if (version != GOLDEN_VERSION)
        return dp_err_set(DP_ERR_UNSUPPORTED, "%s: version %u, this loader reads %u", path, version,
                          GOLDEN_VERSION);
    if (count > GOLDEN_MAX_TENSORS)
        return dp_err_set(DP_ERR_FORMAT, "%s: tensor count %u > %d", path, count,
                          GOLDEN_MAX_TENSORS);
    off = 12;
    g = calloc(1, sizeof *g);
    if (!g || (count && !(g->t = calloc(count, sizeof *g->t)))) {
        err = dp_err_set(DP_ERR_NOMEM, "%s: no memory", path);
        goto fail;
    }
    for (uint32_t i = 0; i < count; i++) {
        golden_tensor_t *t = &g->t[i];
        if (len - off < 2) {
            err = dp_err_set(DP_ERR_TRUNCATED, "%s: tensor %u: ends in the name length", path, i);
            goto fail;
        }
        size_t nl = (size_t)p[off] | (size_t)p[off + 1] << 8;
        off += 2;
        if (nl == 0 || len - off < nl + 2) {
            err = dp_err_set(nl ? DP_ERR_TRUNCATED : DP_ERR_FORMAT,
                             "%s: tensor %u: bad or truncated name (length %zu)", path, i, nl);
            goto fail;
        }
        if (memchr(p + off, 0, nl)) {
            err = dp_err_set(DP_ERR_FORMAT, "%s: tensor %u: NUL in name", path, i);
            goto fail;
        }
        if (!(t->name = malloc(nl + 1))) {
            err = dp_err_set(DP_ERR_NOMEM, "%s: no memory", path);
            goto fail;
        }
        g->count = (int)i + 1; /* from here on t is freed by destroy */
        memcpy(t->name, p + off, nl);
        t->name[nl] = '\0';
        off += nl;
        unsigned dtype = p[off], ndim = p[off + 1];
        off += 2;
        if (dtype != GOLDEN_F32 && dtype != GOLDEN_I32) {
            err = dp_err_set(DP_ERR_FORMAT, "%s: %s: unknown dtype %u", path, t->name, dtype);
            goto fail;
        }
        if (ndim > GOLDEN_MAX_DIMS) {
            err = dp_err_set(DP_ERR_FORMAT, "%s: %s: ndim %u > %d", path, t->name, ndim,
                             GOLDEN_MAX_DIMS);
            goto fail;
        }
        if (len - off < 4 * (size_t)ndim) {
            err = dp_err_set(DP_ERR_TRUNCATED, "%s: %s: ends in the dims", path, t->name);
            goto fail;
        }
        t->dtype = (golden_dtype_t)dtype;
        t->ndim = (int)ndim;
        size_t numel = 1;
        for (unsigned d = 0; d < ndim; d++) {
            uint32_t v = rd_u32(p + off + 4 * d);
            if (v > (uint32_t)INT32_MAX || (v && numel > (len / 4) / v)) {
                err = dp_err_set(DP_ERR_RANGE, "%s: %s: dim %u = %u is larger than the file", path,
                                 t->name, d, v);
                goto fail;
            }
            t->dims[d] = (int)v;
            numel *= v;
        }
        off += 4 * (size_t)ndim;
        t->numel = numel;
        if ((len - off) / 4 < numel) {
            err = dp_err_set(DP_ERR_TRUNCATED, "%s: %s: %zu elements but %zu bytes left", path,
                             t->name, numel, len - off);
            goto fail;
        }
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(g->t[j].name, t->name) == 0) {
                err = dp_err_set(DP_ERR_FORMAT, "%s: duplicate tensor %s", path, t->name);
                goto fail;
            }
        if (!(t->data = malloc(numel ? numel * 4 : 1))) {
            err = dp_err_set(DP_ERR_NOMEM, "%s: no memory", path);
            goto fail;
        }
        for (size_t e = 0; e < numel; e++) {
            uint32_t v = rd_u32(p + off + 4 * e);
            memcpy((char *)t->data + 4 * e, &v, 4); /* float and int32 share the bit copy */
        }
        off += 4 * numel;
    }
    if (off != len) {
        err = dp_err_set(DP_ERR_FORMAT, "%s: %zu trailing bytes after %u tensors", path, len - off,
                         count);
        goto fail;
    }
    g->count = (int)count;
    *out = g;
    return DP_OK;
fail:
    golden_destroy(&g);
    return err;
}

dp_err_t golden_load(const char *path, golden_t **out)
{
    dp_err_t err = DP_OK;
    unsigned char *buf = NULL;
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return dp_err_set(errno == ENOENT ? DP_ERR_NOTFOUND : DP_ERR_IO, "%s: %s", path,
                          strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) {
        err = dp_err_set(DP_ERR_IO, "%s: seek: %s", path, strerror(errno));
        goto done;
    }
    long size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0) {
        err = dp_err_set(DP_ERR_IO, "%s: cannot size the file", path);
        goto done;
    }
    if (!(buf = malloc(size ? (size_t)size : 1))) {
        err = dp_err_set(DP_ERR_NOMEM, "%s: no memory for %ld bytes", path, size);
        goto done;
    }
    if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
        err = dp_err_set(DP_ERR_IO, "%s: short read", path);
        goto done;
    }
    err = golden_parse(buf, (size_t)size, path, out);
done:
    free(buf);
    fclose(f);
    return err;
}

int golden_count(const golden_t *g) { return g->count; }

const golden_tensor_t *golden_get(const golden_t *g, const char *name)
{
    for (int i = 0; i < g->count; i++)
        if (strcmp(g->t[i].name, name) == 0) return &g->t[i];
    return NULL;
}

static void shape_str(char *s, size_t cap, int ndim, const int *dims)
{
    size_t o = (size_t)snprintf(s, cap, "(");
    for (int i = 0; i < ndim && o < cap; i++)
        o += (size_t)snprintf(s + o, cap - o, i ? ",%d" : "%d", dims[i]);
    if (o < cap) snprintf(s + o, cap - o, ")");
}

static const void *find_checked(const golden_t *g, const char *name, golden_dtype_t dtype, int ndim,
                                va_list ap)
{
    const golden_tensor_t *t = golden_get(g, name);
    if (!t) {
        dp_err_set(DP_ERR_NOTFOUND, "no tensor '%s' in the fixture", name);
        return NULL;
    }
    if (t->dtype != dtype) {
        dp_err_set(DP_ERR_MISMATCH, "tensor '%s' is %s, want %s", name,
                   t->dtype == GOLDEN_F32 ? "f32" : "i32", dtype == GOLDEN_F32 ? "f32" : "i32");
        return NULL;
    }
    if (ndim < 0) return t->data;
    int want[GOLDEN_MAX_DIMS] = {0};
    int ok = ndim == t->ndim && ndim <= GOLDEN_MAX_DIMS;
    for (int i = 0; i < ndim && i < GOLDEN_MAX_DIMS; i++) {
        want[i] = va_arg(ap, int);
        ok = ok && want[i] == t->dims[i];
    }
    if (!ok) {
        char a[128], b[128];
        shape_str(a, sizeof a, t->ndim, t->dims);
        shape_str(b, sizeof b, ndim < GOLDEN_MAX_DIMS ? ndim : GOLDEN_MAX_DIMS, want);
        dp_err_set(DP_ERR_MISMATCH, "tensor '%s' has shape %s, want %s", name, a, b);
        return NULL;
    }
    return t->data;
}

const float *golden_f32(const golden_t *g, const char *name, int ndim, ...)
{
    va_list ap;
    va_start(ap, ndim);
    const void *d = find_checked(g, name, GOLDEN_F32, ndim, ap);
    va_end(ap);
    return d;
}

const int32_t *golden_i32(const golden_t *g, const char *name, int ndim, ...)
{
    va_list ap;
    va_start(ap, ndim);
    const void *d = find_checked(g, name, GOLDEN_I32, ndim, ap);
    va_end(ap);
    return d;
}

golden_err_t golden_compare(const float *got, const float *want, size_t n)
{
    golden_err_t e = {0, 0, 0, 0};
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (isnan(d)) {
            e.max_abs = INFINITY;
            e.worst = i;
            break;
        }
        if (d > e.max_abs) {
            e.max_abs = d;
            e.worst = i;
        }
        if (fabs((double)want[i]) > e.max_ref) e.max_ref = fabs((double)want[i]);
    }
    e.rel = isinf(e.max_abs) ? INFINITY : e.max_abs / fmax(e.max_ref, 1e-6);
    return e;
}
