/* IDX reader (MNIST, Fashion-MNIST): images u8 n x h x w, labels u8 n.
 *
 * Files and memory buffers go through one small byte source: a file is read
 * with gzread (raw or gzip, transparently), a buffer is copied or inflated as
 * it is consumed. The header is read and validated first; the body then grows
 * a buffer only as bytes arrive, capped at the declared size, and one extra
 * byte is asked for to detect trailing data. So no allocation ever exceeds
 * what the input really holds, whatever the header or a gzip bomb claims. */
#include "data/dataset.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define IDX_MAGIC_IMAGES 0x00000803u
#define IDX_MAGIC_LABELS 0x00000801u

typedef struct idx_src {
    const char *name;
    gzFile gz;          /* a file, raw or gzip */
    const uint8_t *mem; /* or a buffer, raw or (inflating) gzip */
    size_t len, pos;    /* pos: bytes consumed (raw) or handed to zlib */
    z_stream zs;
    int inflating, zdone;
    int cut; /* the gzip stream ended before its trailer */
} idx_src_t;

static dp_err_t src_open_file(idx_src_t *s, const char *path)
{
    memset(s, 0, sizeof *s);
    s->name = path;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dp_err_set(errno == ENOENT ? DP_ERR_NOTFOUND : DP_ERR_IO, "%s: open: %s", path,
                          strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return dp_err_set(DP_ERR_IO, "%s: open: not a regular file", path);
    }
    s->gz = gzdopen(fd, "rb");
    if (!s->gz) {
        close(fd);
        return dp_err_set(DP_ERR_NOMEM, "%s: open: gzdopen failed", path);
    }
    gzbuffer(s->gz, 1u << 17);
    return DP_OK;
}

static dp_err_t src_open_mem(idx_src_t *s, const char *name, const uint8_t *buf, size_t len)
{
    memset(s, 0, sizeof *s);
    s->name = name;
    s->mem = buf;
    s->len = len;
    if (len >= 2 && buf[0] == 0x1f && buf[1] == 0x8b) {
        if (inflateInit2(&s->zs, 16 + MAX_WBITS) != Z_OK)
            return dp_err_set(DP_ERR_NOMEM, "%s: gzip: inflateInit2 failed", name);
        s->inflating = 1;
    }
    return DP_OK;
}

static void src_close(idx_src_t *s)
{
    if (s->gz) gzclose(s->gz);
    if (s->inflating) inflateEnd(&s->zs);
    s->gz = NULL;
    s->inflating = 0;
}

static dp_err_t src_read_gz(idx_src_t *s, uint8_t *buf, size_t n, size_t *got)
{
    while (*got < n) {
        unsigned chunk = n - *got > (1u << 30) ? (1u << 30) : (unsigned)(n - *got);
        int r = gzread(s->gz, buf + *got, chunk);
        if (r > 0) {
            *got += (size_t)r;
            continue;
        }
        int zerr = Z_OK;
        const char *msg = gzerror(s->gz, &zerr);
        if (zerr == Z_OK) break; /* end of file */
        if (zerr == Z_BUF_ERROR) {
            s->cut = 1;
            break;
        }
        if (zerr == Z_ERRNO) return dp_err_set(DP_ERR_IO, "%s: read: %s", s->name, strerror(errno));
        if (zerr == Z_MEM_ERROR)
            return dp_err_set(DP_ERR_NOMEM, "%s: gzip: out of memory", s->name);
        return dp_err_set(DP_ERR_FORMAT, "%s: gzip: %s", s->name, msg);
    }
    return DP_OK;
}

static dp_err_t src_read_inflate(idx_src_t *s, uint8_t *buf, size_t n, size_t *got)
{
    while (*got < n && !s->zdone) {
        if (s->zs.avail_in == 0 && s->pos < s->len) {
            size_t k = s->len - s->pos > UINT_MAX ? UINT_MAX : s->len - s->pos;
            s->zs.next_in = (Bytef *)(uintptr_t)(s->mem + s->pos);
            s->zs.avail_in = (uInt)k;
            s->pos += k;
        }
        size_t want = n - *got > UINT_MAX ? UINT_MAX : n - *got;
        s->zs.next_out = buf + *got;
        s->zs.avail_out = (uInt)want;
        int r = inflate(&s->zs, Z_NO_FLUSH);
        *got += want - s->zs.avail_out;
        if (r == Z_STREAM_END) {
            s->zdone = 1;
            size_t rest = s->zs.avail_in + (s->len - s->pos);
            if (rest)
                return dp_err_set(DP_ERR_FORMAT, "%s: gzip: %zu trailing bytes after the stream",
                                  s->name, rest);
        } else if (r == Z_BUF_ERROR && s->zs.avail_in == 0 && s->pos == s->len) {
            s->zdone = s->cut = 1;
        } else if (r == Z_MEM_ERROR) {
            return dp_err_set(DP_ERR_NOMEM, "%s: gzip: out of memory", s->name);
        } else if (r != Z_OK) {
            return dp_err_set(DP_ERR_FORMAT, "%s: gzip: %s", s->name,
                              s->zs.msg ? s->zs.msg : "corrupt stream");
        }
    }
    return DP_OK;
}

/* Reads up to n bytes; *got < n only at the end of the data. */
static dp_err_t src_read(idx_src_t *s, uint8_t *buf, size_t n, size_t *got)
{
    *got = 0;
    if (s->gz) return src_read_gz(s, buf, n, got);
    if (s->inflating) return src_read_inflate(s, buf, n, got);
    *got = s->len - s->pos < n ? s->len - s->pos : n;
    if (*got) memcpy(buf, s->mem + s->pos, *got);
    s->pos += *got;
    return DP_OK;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static const char *idx_dtype_name(uint8_t t)
{
    switch (t) {
    case 0x08:
        return "u8";
    case 0x09:
        return "i8";
    case 0x0B:
        return "i16";
    case 0x0C:
        return "i32";
    case 0x0D:
        return "f32";
    case 0x0E:
        return "f64";
    default:
        return NULL;
    }
}

/* Reads and validates the header of an u8 IDX of the given rank; dims[rank]
 * and *body (bytes of data after the header) are set on success. */
static dp_err_t idx_header(idx_src_t *s, uint8_t rank, const char *const *dim_names, uint32_t *dims,
                           uint64_t *body)
{
    uint8_t h[4 + 4 * 3];
    size_t got;
    dp_err_t e = src_read(s, h, 4, &got);
    if (e) return e;
    if (got < 4)
        return dp_err_set(DP_ERR_TRUNCATED,
                          "%s: magic: header truncated, expected 4 bytes, got %zu", s->name, got);
    uint32_t magic = be32(h), want = 0x0800u | rank;
    if (h[0] || h[1])
        return dp_err_set(DP_ERR_FORMAT, "%s: magic: 0x%08x is not an IDX magic (expected 0x%08x)",
                          s->name, magic, want);
    if (h[2] != 0x08) {
        const char *t = idx_dtype_name(h[2]);
        if (t)
            return dp_err_set(DP_ERR_UNSUPPORTED,
                              "%s: dtype: %s (0x%02x) in magic 0x%08x, only u8 (0x08) is supported",
                              s->name, t, h[2], magic);
        return dp_err_set(DP_ERR_FORMAT, "%s: dtype: 0x%02x in magic 0x%08x is not an IDX type",
                          s->name, h[2], magic);
    }
    if (h[3] != rank)
        return dp_err_set(DP_ERR_FORMAT, "%s: rank: %u in magic 0x%08x, expected %u (magic 0x%08x)",
                          s->name, h[3], magic, rank, want);
    if ((e = src_read(s, h + 4, 4u * rank, &got))) return e;
    if (got < 4u * rank)
        return dp_err_set(DP_ERR_TRUNCATED,
                          "%s: dims: header truncated, expected %u bytes, got %zu", s->name,
                          4 + 4u * rank, 4 + got);
    uint64_t elems = 1;
    for (unsigned i = 0; i < rank; i++) {
        dims[i] = be32(h + 4 + 4 * i);
        if (dims[i] == 0)
            return dp_err_set(DP_ERR_FORMAT, "%s: dim[%u] (%s): zero", s->name, i, dim_names[i]);
        if (dims[i] > DP_DATA_MAX_DIM)
            return dp_err_set(DP_ERR_RANGE, "%s: dim[%u] (%s): %u exceeds the bound %u", s->name, i,
                              dim_names[i], dims[i], DP_DATA_MAX_DIM);
        elems *= dims[i]; /* < 2^31 * 2^24 before the check: no overflow */
        if (elems > DP_DATA_MAX_ELEMS)
            return dp_err_set(DP_ERR_RANGE,
                              "%s: size: product of dims up to dim[%u] (%s) exceeds %llu", s->name,
                              i, dim_names[i], (unsigned long long)DP_DATA_MAX_ELEMS);
    }
    *body = elems;
    return DP_OK;
}

/* Reads exactly `body` bytes after a header of hdr_len bytes, then checks that
 * nothing follows. Returns a new buffer in *out, caller frees. */
static dp_err_t idx_body(idx_src_t *s, uint32_t hdr_len, uint64_t body, uint8_t **out)
{
    size_t cap = body < (1u << 20) ? (size_t)body : (1u << 20), have = 0, got;
    uint8_t *buf = malloc(cap), probe;
    dp_err_t e = DP_OK;
    if (!buf) goto nomem;
    for (;;) {
        if ((e = src_read(s, buf + have, cap - have, &got))) goto fail;
        have += got;
        if (have < cap || cap == body) break;
        size_t ncap = cap > body / 2 ? (size_t)body : cap * 2;
        uint8_t *nbuf = realloc(buf, ncap);
        if (!nbuf) goto nomem;
        buf = nbuf;
        cap = ncap;
    }
    if (have < body) {
        e = dp_err_set(DP_ERR_TRUNCATED, "%s: body: truncated, expected %llu bytes, got %llu%s",
                       s->name, (unsigned long long)(hdr_len + body),
                       (unsigned long long)(hdr_len + have),
                       s->cut ? " (gzip stream cut short)" : "");
        goto fail;
    }
    if ((e = src_read(s, &probe, 1, &got))) goto fail;
    if (got) {
        e = dp_err_set(DP_ERR_FORMAT, "%s: trailing: bytes after the %llu declared by the header",
                       s->name, (unsigned long long)(hdr_len + body));
        goto fail;
    }
    if (s->cut) {
        e = dp_err_set(DP_ERR_TRUNCATED, "%s: gzip: stream ends before its trailer", s->name);
        goto fail;
    }
    *out = buf;
    return DP_OK;
nomem:
    e = dp_err_set(DP_ERR_NOMEM, "%s: body: cannot allocate %llu bytes", s->name,
                   (unsigned long long)body);
fail:
    free(buf);
    return e;
}

static dp_err_t idx_decode(idx_src_t *img, idx_src_t *lbl, dp_dataset_t **out)
{
    static const char *const img_dims[] = {"count", "rows", "cols"};
    static const char *const lbl_dims[] = {"count"};
    uint32_t id[3] = {0}, ld[1] = {0};
    uint64_t ib = 0, lb = 0;
    uint8_t *ibuf = NULL, *lbuf = NULL;
    dp_dataset_t *d = NULL;
    dp_err_t e;

    if ((e = idx_header(img, 3, img_dims, id, &ib))) goto fail;
    if ((e = idx_header(lbl, 1, lbl_dims, ld, &lb))) goto fail;
    if (id[0] != ld[0]) {
        e = dp_err_set(DP_ERR_MISMATCH, "%s: count: %u images, but %s: count: %u labels", img->name,
                       id[0], lbl->name, ld[0]);
        goto fail;
    }
    if ((e = idx_body(img, 16, ib, &ibuf))) goto fail;
    if ((e = idx_body(lbl, 8, lb, &lbuf))) goto fail;
    for (uint32_t i = 0; i < ld[0]; i++) {
        if (lbuf[i] >= DP_IDX_NUM_CLASSES) {
            e = dp_err_set(DP_ERR_RANGE, "%s: label[%u]: %u is not below %d classes", lbl->name, i,
                           lbuf[i], DP_IDX_NUM_CLASSES);
            goto fail;
        }
    }
    if ((e = dp_dataset_new(id[0], 1, id[1], id[2], DP_IDX_NUM_CLASSES, &d))) goto fail;
    float lut[256];
    for (int v = 0; v < 256; v++) lut[v] = (float)v / 255.0f;
    for (size_t i = 0; i < ib; i++) d->images[i] = lut[ibuf[i]];
    for (uint32_t i = 0; i < d->n; i++) d->labels[i] = lbuf[i];
    free(ibuf);
    free(lbuf);
    *out = d;
    return DP_OK;
fail:
    free(ibuf);
    free(lbuf);
    dp_dataset_destroy(&d);
    return e;
}

dp_err_t dp_dataset_load_idx(const char *images_path, const char *labels_path, dp_dataset_t **out)
{
    if (!out) return dp_err_set(DP_ERR_INVALID, "idx: out is NULL");
    *out = NULL;
    if (!images_path || !labels_path)
        return dp_err_set(DP_ERR_INVALID, "idx: images or labels path is NULL");
    idx_src_t img, lbl;
    dp_err_t e = src_open_file(&img, images_path);
    if (e) return e;
    if ((e = src_open_file(&lbl, labels_path))) {
        src_close(&img);
        return e;
    }
    e = idx_decode(&img, &lbl, out);
    src_close(&img);
    src_close(&lbl);
    return e;
}

dp_err_t dp_dataset_decode_idx(const uint8_t *img, size_t img_len, const uint8_t *lbl,
                               size_t lbl_len, const char *name_for_errors, dp_dataset_t **out)
{
    if (!out) return dp_err_set(DP_ERR_INVALID, "idx: out is NULL");
    *out = NULL;
    const char *name = name_for_errors ? name_for_errors : "<memory>";
    if ((!img && img_len) || (!lbl && lbl_len))
        return dp_err_set(DP_ERR_INVALID, "%s: images or labels buffer is NULL", name);
    char iname[256], lname[256];
    snprintf(iname, sizeof iname, "%s:images", name);
    snprintf(lname, sizeof lname, "%s:labels", name);
    idx_src_t is, ls;
    dp_err_t e = src_open_mem(&is, iname, img, img_len);
    if (e) return e;
    if ((e = src_open_mem(&ls, lname, lbl, lbl_len))) {
        src_close(&is);
        return e;
    }
    e = idx_decode(&is, &ls, out);
    src_close(&is);
    src_close(&ls);
    return e;
}
