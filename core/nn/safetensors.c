/* safetensors reader and writer (see safetensors.h for the format).
 *
 * The reader copies the data buffer into its own allocation (so tensor data is
 * aligned whenever its offset is) and parses the JSON header with a small
 * strict recursive-descent parser that knows the schema: the top level is an
 * object of tensor entries plus an optional "__metadata__"; unknown keys inside
 * a tensor entry are skipped, as the reference implementation does, by a
 * generic value skipper with a depth limit. Integers are parsed exactly with
 * overflow checks; nothing goes through floating point. After parsing, the
 * tensors are sorted by offset and must tile the data buffer exactly. */
#include "nn/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host"
#endif

#define ST_MAX_DIMS 64
/* Names in error details are cut to this many bytes. */
#define NM "%.200s"

static const struct {
    const char *name;
    size_t size;
} dtypes[ST_DTYPE__COUNT] = {
    [ST_BOOL] = {"BOOL", 1},       [ST_U8] = {"U8", 1},           [ST_I8] = {"I8", 1},
    [ST_F8_E5M2] = {"F8_E5M2", 1}, [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_I16] = {"I16", 2},
    [ST_U16] = {"U16", 2},         [ST_F16] = {"F16", 2},         [ST_BF16] = {"BF16", 2},
    [ST_I32] = {"I32", 4},         [ST_U32] = {"U32", 4},         [ST_F32] = {"F32", 4},
    [ST_F64] = {"F64", 8},         [ST_I64] = {"I64", 8},         [ST_U64] = {"U64", 8},
};

const char *st_dtype_name(st_dtype_t dtype)
{
    if ((int)dtype < 0 || dtype >= ST_DTYPE__COUNT) return "?";
    return dtypes[dtype].name;
}

size_t st_dtype_size(st_dtype_t dtype)
{
    if ((int)dtype < 0 || dtype >= ST_DTYPE__COUNT) return 0;
    return dtypes[dtype].size;
}

/* "[16,1,3,3]" into buf, cut with "..." if it does not fit. */
static const char *fmt_shape(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t n = 0;
    buf[n++] = '[';
    for (int i = 0; i < ndim; i++) {
        char num[24];
        int k = snprintf(num, sizeof num, "%s%lld", i ? "," : "", (long long)shape[i]);
        if (n + (size_t)k + 5 >= cap) {
            memcpy(buf + n, "...", 3);
            n += 3;
            break;
        }
        memcpy(buf + n, num, (size_t)k);
        n += (size_t)k;
    }
    buf[n++] = ']';
    buf[n] = '\0';
    return buf;
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* ------------------------------------------------------------ the file */

typedef struct st_entry {
    char *name;
    st_dtype_t dtype;
    int ndim;
    int64_t *shape;
    size_t numel, nbytes;
    uint64_t begin, end;
} st_entry_t;

typedef struct st_kv {
    char *key, *value;
} st_kv_t;

struct st_file {
    char *path;
    uint8_t *data;
    size_t data_len;
    st_entry_t *t; /* sorted by data offset */
    size_t nt, cap_t;
    const st_entry_t **by_name; /* into t, sorted by name */
    st_kv_t *meta;              /* sorted by key */
    size_t nmeta, cap_meta;
};

/* ------------------------------------------------------------ JSON parser */

typedef struct jp {
    const uint8_t *s;
    size_t n, pos;
    const char *path;
} jp_t;

static dp_err_t jp_end(const jp_t *p)
{
    return dp_err_set(DP_ERR_TRUNCATED, "%s: JSON header (%zu bytes) ends in the middle of a value",
                      p->path, p->n);
}

static dp_err_t jp_bad(const jp_t *p, const char *what)
{
    return dp_err_set(DP_ERR_FORMAT, "%s: invalid JSON header at byte %zu: %s", p->path, p->pos,
                      what);
}

static void jp_ws(jp_t *p)
{
    while (p->pos < p->n) {
        uint8_t c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

/* Skips whitespace, then consumes c or fails naming what was expected. */
static dp_err_t jp_expect(jp_t *p, char c, const char *what)
{
    jp_ws(p);
    if (p->pos >= p->n) return jp_end(p);
    if (p->s[p->pos] != (uint8_t)c) return jp_bad(p, what);
    p->pos++;
    return DP_OK;
}

/* Peeks the next non-space byte; DP_ERR_TRUNCATED at the end. */
static dp_err_t jp_peek(jp_t *p, uint8_t *c)
{
    jp_ws(p);
    *c = 0;
    if (p->pos >= p->n) return jp_end(p);
    *c = p->s[p->pos];
    return DP_OK;
}

/* Whole header must be UTF-8 (as the reference implementation requires):
 * no overlong forms, no surrogates, nothing past U+10FFFF. */
static dp_err_t check_utf8(const uint8_t *s, size_t n, const char *path)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t len;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            goto bad;
        }
        if (n - i < len) goto bad;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) goto bad;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) goto bad;
        i += len;
    }
    return DP_OK;
bad:
    return dp_err_set(DP_ERR_FORMAT, "%s: JSON header is not valid UTF-8 at byte %zu", path, i);
}

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static dp_err_t jp_hex4(jp_t *p, uint32_t *out)
{
    if (p->n - p->pos < 4) return jp_end(p);
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        int h = hexval(p->s[p->pos]);
        if (h < 0) return jp_bad(p, "bad \\u escape");
        v = (v << 4) | (uint32_t)h;
        p->pos++;
    }
    *out = v;
    return DP_OK;
}

/* Parses a string at the cursor (after whitespace). With out != NULL returns
 * it decoded in a new buffer (caller frees) and *has_nul if it holds U+0000;
 * with out == NULL only validates. The decoded text is never longer than the
 * raw one, so one allocation of the raw length suffices (an escape is >= 2
 * raw bytes, a \\u escape 6 for at most 3 UTF-8 bytes, a surrogate pair 12
 * for 4). */
static dp_err_t jp_string(jp_t *p, char **out, int *has_nul)
{
    dp_err_t err = jp_expect(p, '"', "expected a string");
    if (err) return err;
    size_t start = p->pos, len = 0;
    char *buf = NULL;
    if (out) {
        /* raw length up to the closing quote: the decoded text is no longer */
        size_t cap = 0;
        while (start + cap < p->n && p->s[start + cap] != '"')
            cap += p->s[start + cap] == '\\' ? 2 : 1;
        buf = malloc(cap + 1);
        if (!buf) return dp_err_set(DP_ERR_NOMEM, "%s: out of memory parsing header", p->path);
        *has_nul = 0;
    }
    for (;;) {
        if (p->pos >= p->n) {
            err = jp_end(p);
            goto fail;
        }
        uint8_t c = p->s[p->pos];
        if (c == '"') {
            p->pos++;
            break;
        }
        if (c < 0x20) {
            err = jp_bad(p, "control character in string");
            goto fail;
        }
        if (c != '\\') {
            if (buf) buf[len++] = (char)c;
            p->pos++;
            continue;
        }
        p->pos++;
        if (p->pos >= p->n) {
            err = jp_end(p);
            goto fail;
        }
        c = p->s[p->pos++];
        uint32_t cp = 0;
        switch (c) {
        case '"':
            cp = '"';
            break;
        case '\\':
            cp = '\\';
            break;
        case '/':
            cp = '/';
            break;
        case 'b':
            cp = '\b';
            break;
        case 'f':
            cp = '\f';
            break;
        case 'n':
            cp = '\n';
            break;
        case 'r':
            cp = '\r';
            break;
        case 't':
            cp = '\t';
            break;
        case 'u':
            if ((err = jp_hex4(p, &cp))) goto fail;
            if (cp >= 0xdc00 && cp <= 0xdfff) {
                err = jp_bad(p, "lone low surrogate in \\u escape");
                goto fail;
            }
            if (cp >= 0xd800 && cp <= 0xdbff) {
                uint32_t lo = 0;
                if (p->n - p->pos < 2) {
                    err = jp_end(p);
                    goto fail;
                }
                if (p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u') {
                    err = jp_bad(p, "lone high surrogate in \\u escape");
                    goto fail;
                }
                p->pos += 2;
                if ((err = jp_hex4(p, &lo))) goto fail;
                if (lo < 0xdc00 || lo > 0xdfff) {
                    err = jp_bad(p, "high surrogate not followed by a low one");
                    goto fail;
                }
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            break;
        default:
            p->pos--;
            err = jp_bad(p, "unknown escape in string");
            goto fail;
        }
        if (!buf) continue;
        /* an escape is >= 2 raw bytes (6 or 12 for \u): UTF-8 never exceeds it */
        if (cp == 0) *has_nul = 1;
        if (cp < 0x80) {
            buf[len++] = (char)cp;
        } else if (cp < 0x800) {
            buf[len++] = (char)(0xc0 | (cp >> 6));
            buf[len++] = (char)(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
            buf[len++] = (char)(0xe0 | (cp >> 12));
            buf[len++] = (char)(0x80 | ((cp >> 6) & 0x3f));
            buf[len++] = (char)(0x80 | (cp & 0x3f));
        } else {
            buf[len++] = (char)(0xf0 | (cp >> 18));
            buf[len++] = (char)(0x80 | ((cp >> 12) & 0x3f));
            buf[len++] = (char)(0x80 | ((cp >> 6) & 0x3f));
            buf[len++] = (char)(0x80 | (cp & 0x3f));
        }
    }
    if (buf) {
        buf[len] = '\0';
        *out = buf;
    }
    return DP_OK;
fail:
    free(buf);
    return err;
}

static int is_digit(uint8_t c) { return c >= '0' && c <= '9'; }

/* Validates any JSON number at the cursor (for skipped values). */
static dp_err_t jp_number_skip(jp_t *p)
{
    if (p->pos < p->n && p->s[p->pos] == '-') p->pos++;
    if (p->pos >= p->n) return jp_end(p);
    if (p->s[p->pos] == '0') {
        p->pos++;
    } else if (is_digit(p->s[p->pos])) {
        while (p->pos < p->n && is_digit(p->s[p->pos])) p->pos++;
    } else {
        return jp_bad(p, "bad number");
    }
    if (p->pos < p->n && p->s[p->pos] == '.') {
        p->pos++;
        if (p->pos >= p->n) return jp_end(p);
        if (!is_digit(p->s[p->pos])) return jp_bad(p, "bad number");
        while (p->pos < p->n && is_digit(p->s[p->pos])) p->pos++;
    }
    if (p->pos < p->n && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
        p->pos++;
        if (p->pos < p->n && (p->s[p->pos] == '+' || p->s[p->pos] == '-')) p->pos++;
        if (p->pos >= p->n) return jp_end(p);
        if (!is_digit(p->s[p->pos])) return jp_bad(p, "bad number");
        while (p->pos < p->n && is_digit(p->s[p->pos])) p->pos++;
    }
    return DP_OK;
}

/* A non-negative integer that fits in int64 (shape entries, offsets). `what`
 * and `name` say which, for the error. */
static dp_err_t jp_uint(jp_t *p, const char *name, const char *what, uint64_t *out)
{
    uint8_t c;
    dp_err_t err = jp_peek(p, &c);
    if (err) return err;
    if (c == '-') {
        size_t at = p->pos;
        if ((err = jp_number_skip(p))) return err;
        return dp_err_set(DP_ERR_RANGE, "%s: tensor '" NM "': negative %s %.*s", p->path, name,
                          what, (int)(p->pos - at > 40 ? 40 : p->pos - at), p->s + at);
    }
    if (!is_digit(c)) {
        return dp_err_set(DP_ERR_FORMAT, "%s: tensor '" NM "': %s is not an integer (byte %zu)",
                          p->path, name, what, p->pos);
    }
    if (c == '0' && p->pos + 1 < p->n && is_digit(p->s[p->pos + 1]))
        return jp_bad(p, "number with a leading zero");
    uint64_t v = 0;
    int over = 0;
    while (p->pos < p->n && is_digit(p->s[p->pos])) {
        uint64_t d = p->s[p->pos++] - '0';
        if (v > ((uint64_t)INT64_MAX - d) / 10)
            over = 1;
        else
            v = v * 10 + d;
    }
    if (p->pos < p->n && (p->s[p->pos] == '.' || p->s[p->pos] == 'e' || p->s[p->pos] == 'E'))
        return dp_err_set(DP_ERR_FORMAT, "%s: tensor '" NM "': %s is not an integer (byte %zu)",
                          p->path, name, what, p->pos);
    if (over)
        return dp_err_set(DP_ERR_RANGE, "%s: tensor '" NM "': %s does not fit in 63 bits", p->path,
                          name, what);
    *out = v;
    return DP_OK;
}

static dp_err_t jp_literal(jp_t *p, const char *lit)
{
    size_t k = strlen(lit);
    if (p->n - p->pos < k) {
        if (memcmp(p->s + p->pos, lit, p->n - p->pos) == 0) return jp_end(p);
        return jp_bad(p, "unexpected character");
    }
    if (memcmp(p->s + p->pos, lit, k) != 0) return jp_bad(p, "unexpected character");
    p->pos += k;
    return DP_OK;
}

/* Skips any JSON value, validating it; depth counts enclosing containers. */
static dp_err_t jp_skip(jp_t *p, int depth)
{
    uint8_t c;
    dp_err_t err = jp_peek(p, &c);
    if (err) return err;
    if (c == '{' || c == '[') {
        if (depth >= ST_MAX_DEPTH) {
            return dp_err_set(DP_ERR_FORMAT, "%s: JSON header nests deeper than %d at byte %zu",
                              p->path, ST_MAX_DEPTH, p->pos);
        }
        uint8_t close = c == '{' ? '}' : ']';
        p->pos++;
        if ((err = jp_peek(p, &c))) return err;
        if (c == close) {
            p->pos++;
            return DP_OK;
        }
        for (;;) {
            if (close == '}') {
                if ((err = jp_string(p, NULL, NULL))) return err;
                if ((err = jp_expect(p, ':', "expected ':'"))) return err;
            }
            if ((err = jp_skip(p, depth + 1))) return err;
            if ((err = jp_peek(p, &c))) return err;
            p->pos++;
            if (c == close) return DP_OK;
            if (c != ',') {
                p->pos--;
                return jp_bad(p, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
            }
        }
    }
    if (c == '"') return jp_string(p, NULL, NULL);
    if (c == '-' || is_digit(c)) return jp_number_skip(p);
    if (c == 't') return jp_literal(p, "true");
    if (c == 'f') return jp_literal(p, "false");
    if (c == 'n') return jp_literal(p, "null");
    return jp_bad(p, "expected a value");
}

/* Starts a container: consumes `open`; *empty when it closes at once. */
static dp_err_t jp_open(jp_t *p, char open, const char *what, int *empty)
{
    dp_err_t err = jp_expect(p, open, what);
    if (err) return err;
    uint8_t c;
    if ((err = jp_peek(p, &c))) return err;
    *empty = c == (open == '{' ? '}' : ']');
    if (*empty) p->pos++;
    return DP_OK;
}

/* After an element: ',' (returns 0 in *done) or the closing byte (1). */
static dp_err_t jp_next(jp_t *p, char close, int *done)
{
    uint8_t c;
    dp_err_t err = jp_peek(p, &c);
    if (err) return err;
    if (c == (uint8_t)close) {
        p->pos++;
        *done = 1;
        return DP_OK;
    }
    if (c != ',') return jp_bad(p, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
    p->pos++;
    *done = 0;
    return DP_OK;
}

/* ------------------------------------------------------------ schema */

static dp_err_t parse_dtype(jp_t *p, const char *name, st_dtype_t *out)
{
    char *s = NULL;
    int nul = 0;
    uint8_t c;
    dp_err_t err = jp_peek(p, &c);
    if (err) return err;
    if (c != '"')
        return dp_err_set(DP_ERR_FORMAT, "%s: tensor '" NM "': dtype is not a string (byte %zu)",
                          p->path, name, p->pos);
    if ((err = jp_string(p, &s, &nul))) return err;
    for (int d = 0; d < ST_DTYPE__COUNT; d++) {
        if (!nul && strcmp(s, dtypes[d].name) == 0) {
            *out = (st_dtype_t)d;
            free(s);
            return DP_OK;
        }
    }
    err = dp_err_set(DP_ERR_UNSUPPORTED, "%s: tensor '" NM "': unknown dtype \"%.40s\"", p->path,
                     name, s);
    free(s);
    return err;
}

static dp_err_t parse_shape(jp_t *p, st_entry_t *e)
{
    int64_t dims[ST_MAX_DIMS];
    int n = 0, empty, done = 0;
    uint8_t c;
    dp_err_t err = jp_peek(p, &c);
    if (err) return err;
    if (c != '[')
        return dp_err_set(DP_ERR_FORMAT, "%s: tensor '" NM "': shape is not an array (byte %zu)",
                          p->path, e->name, p->pos);
    if ((err = jp_open(p, '[', "expected '['", &empty))) return err;
    while (!empty && !done) {
        uint64_t v = 0;
        if (n == ST_MAX_DIMS)
            return dp_err_set(DP_ERR_UNSUPPORTED, "%s: tensor '" NM "': more than %d dimensions",
                              p->path, e->name, ST_MAX_DIMS);
        if ((err = jp_uint(p, e->name, "shape entry", &v))) return err;
        dims[n++] = (int64_t)v;
        if ((err = jp_next(p, ']', &done))) return err;
    }
    free(e->shape);
    e->shape = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    if (!e->shape) return dp_err_set(DP_ERR_NOMEM, "%s: out of memory", p->path);
    memcpy(e->shape, dims, sizeof(int64_t) * (size_t)n);
    e->ndim = n;
    return DP_OK;
}

static dp_err_t parse_offsets(jp_t *p, st_entry_t *e)
{
    uint64_t v[2] = {0, 0};
    int empty, done = 0;
    uint8_t c;
    dp_err_t err = jp_peek(p, &c);
    if (err) return err;
    if (c != '[')
        return dp_err_set(DP_ERR_FORMAT,
                          "%s: tensor '" NM "': data_offsets is not an array (byte %zu)", p->path,
                          e->name, p->pos);
    if ((err = jp_open(p, '[', "expected '['", &empty))) return err;
    for (int i = 0; i < 2; i++) {
        if (empty || done)
            return dp_err_set(DP_ERR_FORMAT,
                              "%s: tensor '" NM "': data_offsets has %d entries, expected 2",
                              p->path, e->name, i);
        if ((err = jp_uint(p, e->name, "data offset", &v[i]))) return err;
        if ((err = jp_next(p, ']', &done))) return err;
    }
    if (!done)
        return dp_err_set(DP_ERR_FORMAT,
                          "%s: tensor '" NM "': data_offsets has more than 2 entries", p->path,
                          e->name);
    e->begin = v[0];
    e->end = v[1];
    return DP_OK;
}

/* One tensor entry: {"dtype":..,"shape":..,"data_offsets":..}, e->name set. */
static dp_err_t parse_tensor(jp_t *p, st_entry_t *e)
{
    int have[3] = {0, 0, 0}, empty, done = 0;
    uint8_t c;
    dp_err_t err = jp_peek(p, &c);
    if (err) return err;
    if (c != '{')
        return dp_err_set(DP_ERR_FORMAT, "%s: tensor '" NM "': entry is not an object (byte %zu)",
                          p->path, e->name, p->pos);
    if ((err = jp_open(p, '{', "expected '{'", &empty))) return err;
    while (!empty && !done) {
        char *key = NULL;
        int nul = 0, k = -1;
        if ((err = jp_string(p, &key, &nul))) return err;
        if (!nul && strcmp(key, "dtype") == 0) k = 0;
        if (!nul && strcmp(key, "shape") == 0) k = 1;
        if (!nul && strcmp(key, "data_offsets") == 0) k = 2;
        free(key);
        if ((err = jp_expect(p, ':', "expected ':'"))) return err;
        if (k >= 0 && have[k])
            return dp_err_set(DP_ERR_FORMAT, "%s: tensor '" NM "': key \"%s\" given twice", p->path,
                              e->name,
                              k == 0   ? "dtype"
                              : k == 1 ? "shape"
                                       : "data_offsets");
        if (k == 0)
            err = parse_dtype(p, e->name, &e->dtype);
        else if (k == 1)
            err = parse_shape(p, e);
        else if (k == 2)
            err = parse_offsets(p, e);
        else
            err = jp_skip(p, 2);
        if (err) return err;
        if (k >= 0) have[k] = 1;
        if ((err = jp_next(p, '}', &done))) return err;
    }
    static const char *const keys[3] = {"dtype", "shape", "data_offsets"};
    for (int k = 0; k < 3; k++) {
        if (!have[k])
            return dp_err_set(DP_ERR_FORMAT, "%s: tensor '" NM "': missing \"%s\"", p->path,
                              e->name, keys[k]);
    }
    return DP_OK;
}

static dp_err_t parse_metadata(jp_t *p, st_file_t *f)
{
    int empty, done = 0;
    uint8_t c;
    dp_err_t err = jp_peek(p, &c);
    if (err) return err;
    if (c == 'n') return jp_literal(p, "null");
    if (c != '{')
        return dp_err_set(DP_ERR_FORMAT, "%s: \"__metadata__\" is not an object (byte %zu)",
                          p->path, p->pos);
    if ((err = jp_open(p, '{', "expected '{'", &empty))) return err;
    while (!empty && !done) {
        st_kv_t kv = {NULL, NULL};
        int nul1 = 0, nul2 = 0;
        if ((err = jp_string(p, &kv.key, &nul1))) return err;
        if ((err = jp_expect(p, ':', "expected ':'"))) goto fail;
        if ((err = jp_peek(p, &c))) goto fail;
        if (c != '"') {
            err = dp_err_set(DP_ERR_FORMAT, "%s: metadata '" NM "' is not a string (byte %zu)",
                             p->path, kv.key, p->pos);
            goto fail;
        }
        if ((err = jp_string(p, &kv.value, &nul2))) goto fail;
        if (nul1 || nul2) {
            err = dp_err_set(DP_ERR_UNSUPPORTED, "%s: metadata '" NM "' contains a NUL character",
                             p->path, kv.key);
            goto fail;
        }
        if (f->nmeta == f->cap_meta) {
            size_t cap = f->cap_meta ? 2 * f->cap_meta : 8;
            st_kv_t *m = realloc(f->meta, cap * sizeof *m);
            if (!m) {
                err = dp_err_set(DP_ERR_NOMEM, "%s: out of memory", p->path);
                goto fail;
            }
            f->meta = m;
            f->cap_meta = cap;
        }
        f->meta[f->nmeta++] = kv;
        if ((err = jp_next(p, '}', &done))) return err;
        continue;
    fail:
        free(kv.key);
        free(kv.value);
        return err;
    }
    return DP_OK;
}

static dp_err_t parse_header(st_file_t *f, const uint8_t *hdr, size_t n)
{
    jp_t p = {hdr, n, 0, f->path};
    int empty, done = 0, seen_meta = 0;
    dp_err_t err = check_utf8(hdr, n, f->path);
    if (err) return err;
    uint8_t c;
    if ((err = jp_peek(&p, &c))) return err;
    if (c != '{')
        return dp_err_set(DP_ERR_FORMAT, "%s: JSON header does not start with '{'", f->path);
    if ((err = jp_open(&p, '{', "expected '{'", &empty))) return err;
    while (!empty && !done) {
        char *name = NULL;
        int nul = 0;
        if ((err = jp_string(&p, &name, &nul))) return err;
        if ((err = jp_expect(&p, ':', "expected ':'"))) {
            free(name);
            return err;
        }
        if (!nul && strcmp(name, "__metadata__") == 0) {
            free(name);
            if (seen_meta)
                return dp_err_set(DP_ERR_FORMAT, "%s: \"__metadata__\" given twice", f->path);
            seen_meta = 1;
            if ((err = parse_metadata(&p, f))) return err;
        } else {
            if (nul) {
                err =
                    dp_err_set(DP_ERR_UNSUPPORTED,
                               "%s: tensor name '" NM "' contains a NUL character", f->path, name);
                free(name);
                return err;
            }
            if (f->nt == f->cap_t) {
                size_t cap = f->cap_t ? 2 * f->cap_t : 16;
                st_entry_t *t = realloc(f->t, cap * sizeof *t);
                if (!t) {
                    free(name);
                    return dp_err_set(DP_ERR_NOMEM, "%s: out of memory", f->path);
                }
                f->t = t;
                f->cap_t = cap;
            }
            st_entry_t *e = &f->t[f->nt++];
            memset(e, 0, sizeof *e);
            e->name = name;
            if ((err = parse_tensor(&p, e))) return err;
        }
        if ((err = jp_next(&p, '}', &done))) return err;
    }
    jp_ws(&p);
    if (p.pos != n) return jp_bad(&p, "trailing characters after the JSON object");
    return DP_OK;
}

/* ------------------------------------------------------------ validation */

static int cmp_offset(const void *a, const void *b)
{
    const st_entry_t *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int cmp_name_ptr(const void *a, const void *b)
{
    return strcmp((*(const st_entry_t *const *)a)->name, (*(const st_entry_t *const *)b)->name);
}

static int cmp_kv(const void *a, const void *b)
{
    return strcmp(((const st_kv_t *)a)->key, ((const st_kv_t *)b)->key);
}

/* numel and nbytes from shape and dtype, with overflow checks. */
static dp_err_t entry_size(const char *path, st_entry_t *e)
{
    size_t numel = 1, esz = dtypes[e->dtype].size;
    int zero = 0;
    for (int i = 0; i < e->ndim; i++) zero |= e->shape[i] == 0;
    if (zero) numel = 0;
    for (int i = 0; i < e->ndim && !zero; i++) {
        uint64_t d = (uint64_t)e->shape[i];
        if (d > (SIZE_MAX / esz) / numel) {
            char sb[160];
            return dp_err_set(DP_ERR_RANGE, "%s: tensor '" NM "': shape %s of %s overflows", path,
                              e->name, fmt_shape(sb, sizeof sb, e->ndim, e->shape),
                              dtypes[e->dtype].name);
        }
        numel *= (size_t)d;
    }
    e->numel = numel;
    e->nbytes = numel * esz;
    return DP_OK;
}

static dp_err_t validate(st_file_t *f)
{
    dp_err_t err;
    for (size_t i = 0; i < f->nt; i++) {
        st_entry_t *e = &f->t[i];
        if ((err = entry_size(f->path, e))) return err;
        if (e->begin > e->end)
            return dp_err_set(
                DP_ERR_RANGE, "%s: tensor '" NM "': data_offsets [%llu,%llu] begin after end",
                f->path, e->name, (unsigned long long)e->begin, (unsigned long long)e->end);
        if (e->end - e->begin != e->nbytes) {
            char sb[160];
            return dp_err_set(DP_ERR_FORMAT,
                              "%s: tensor '" NM "': data_offsets [%llu,%llu] hold %llu bytes but "
                              "shape %s of %s needs %zu",
                              f->path, e->name, (unsigned long long)e->begin,
                              (unsigned long long)e->end, (unsigned long long)(e->end - e->begin),
                              fmt_shape(sb, sizeof sb, e->ndim, e->shape), dtypes[e->dtype].name,
                              e->nbytes);
        }
    }
    if (f->nt) qsort(f->t, f->nt, sizeof *f->t, cmp_offset);
    f->by_name = malloc(sizeof *f->by_name * (f->nt ? f->nt : 1));
    if (!f->by_name) return dp_err_set(DP_ERR_NOMEM, "%s: out of memory", f->path);
    for (size_t i = 0; i < f->nt; i++) f->by_name[i] = &f->t[i];
    if (f->nt) qsort(f->by_name, f->nt, sizeof *f->by_name, cmp_name_ptr);
    for (size_t i = 1; i < f->nt; i++) {
        if (strcmp(f->by_name[i - 1]->name, f->by_name[i]->name) == 0)
            return dp_err_set(DP_ERR_FORMAT, "%s: duplicate tensor name '" NM "'", f->path,
                              f->by_name[i]->name);
    }
    if (f->nmeta) qsort(f->meta, f->nmeta, sizeof *f->meta, cmp_kv);
    for (size_t i = 1; i < f->nmeta; i++) {
        if (strcmp(f->meta[i - 1].key, f->meta[i].key) == 0)
            return dp_err_set(DP_ERR_FORMAT, "%s: duplicate metadata key '" NM "'", f->path,
                              f->meta[i].key);
    }
    /* the tensors must tile [0, data_len) exactly */
    uint64_t at = 0;
    for (size_t i = 0; i < f->nt; i++) {
        const st_entry_t *e = &f->t[i];
        if (e->begin < at)
            return dp_err_set(DP_ERR_FORMAT,
                              "%s: tensor '" NM "' [%llu,%llu] overlaps tensor '" NM "' (ends at "
                              "%llu)",
                              f->path, e->name, (unsigned long long)e->begin,
                              (unsigned long long)e->end, f->t[i - 1].name, (unsigned long long)at);
        if (e->begin > at)
            return dp_err_set(DP_ERR_FORMAT,
                              "%s: hole in the data buffer: bytes [%llu,%llu) before tensor '" NM
                              "' belong to no tensor",
                              f->path, (unsigned long long)at, (unsigned long long)e->begin,
                              e->name);
        if (e->end > f->data_len)
            return dp_err_set(DP_ERR_TRUNCATED,
                              "%s: tensor '" NM "' [%llu,%llu] runs past the end of the %zu-byte "
                              "data buffer (truncated file?)",
                              f->path, e->name, (unsigned long long)e->begin,
                              (unsigned long long)e->end, f->data_len);
        at = e->end;
    }
    if (at != f->data_len)
        return dp_err_set(DP_ERR_FORMAT,
                          "%s: hole in the data buffer: the last %llu bytes (from offset %llu) "
                          "belong to no tensor",
                          f->path, (unsigned long long)(f->data_len - at), (unsigned long long)at);
    return DP_OK;
}

/* ------------------------------------------------------------ open/close */

static st_file_t *file_new(const char *path)
{
    st_file_t *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->path = strdup(path);
    if (!f->path) {
        free(f);
        return NULL;
    }
    return f;
}

void st_close(st_file_t **fp)
{
    if (!fp || !*fp) return;
    st_file_t *f = *fp;
    for (size_t i = 0; i < f->nt; i++) {
        free(f->t[i].name);
        free(f->t[i].shape);
    }
    for (size_t i = 0; i < f->nmeta; i++) {
        free(f->meta[i].key);
        free(f->meta[i].value);
    }
    free(f->t);
    free(f->meta);
    free(f->by_name);
    free(f->data);
    free(f->path);
    free(f);
    *fp = NULL;
}

/* Header length from the first 8 bytes, checked against the total size. */
static dp_err_t check_header_len(const char *path, const uint8_t *first8, uint64_t total,
                                 uint64_t *n)
{
    if (total < 8)
        return dp_err_set(DP_ERR_TRUNCATED,
                          "%s: %llu bytes, too short for the 8-byte header length", path,
                          (unsigned long long)total);
    *n = le64(first8);
    if (*n > ST_MAX_HEADER)
        return dp_err_set(DP_ERR_RANGE, "%s: header length %llu exceeds the %u-byte limit", path,
                          (unsigned long long)*n, ST_MAX_HEADER);
    if (*n > total - 8)
        return dp_err_set(DP_ERR_TRUNCATED,
                          "%s: header length %llu but only %llu bytes follow (truncated file?)",
                          path, (unsigned long long)*n, (unsigned long long)(total - 8));
    return DP_OK;
}

dp_err_t st_open_memory(const uint8_t *buf, size_t len, const char *name_for_errors,
                        st_file_t **out)
{
    const char *name = name_for_errors ? name_for_errors : "<memory>";
    uint64_t n = 0;
    dp_err_t err;
    *out = NULL;
    if (!buf && len) return dp_err_set(DP_ERR_INVALID, "%s: NULL buffer", name);
    if ((err = check_header_len(name, buf, len, &n))) return err;
    st_file_t *f = file_new(name);
    if (!f) return dp_err_set(DP_ERR_NOMEM, "%s: out of memory", name);
    f->data_len = len - 8 - (size_t)n;
    f->data = malloc(f->data_len ? f->data_len : 1);
    if (!f->data) {
        err = dp_err_set(DP_ERR_NOMEM, "%s: out of memory for %zu data bytes", name, f->data_len);
        goto fail;
    }
    if (f->data_len) memcpy(f->data, buf + 8 + n, f->data_len);
    if ((err = parse_header(f, buf + 8, (size_t)n))) goto fail;
    if ((err = validate(f))) goto fail;
    *out = f;
    return DP_OK;
fail:
    st_close(&f);
    return err;
}

static dp_err_t read_full(FILE *fp, const char *path, void *dst, size_t n)
{
    if (n && fread(dst, 1, n, fp) != n) {
        if (ferror(fp)) return dp_err_set(DP_ERR_IO, "%s: read failed: %s", path, strerror(errno));
        return dp_err_set(DP_ERR_TRUNCATED, "%s: file shrank while being read", path);
    }
    return DP_OK;
}

dp_err_t st_open(const char *path, st_file_t **out)
{
    uint8_t first8[8] = {0};
    uint8_t *hdr = NULL;
    uint64_t n = 0;
    st_file_t *f = NULL;
    struct stat sb;
    dp_err_t err;
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        return dp_err_set(errno == ENOENT ? DP_ERR_NOTFOUND : DP_ERR_IO, "%s: cannot open: %s",
                          path, strerror(errno));
    }
    if (fstat(fileno(fp), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        err = dp_err_set(DP_ERR_IO, "%s: not a regular file", path);
        goto fail;
    }
    uint64_t total = (uint64_t)sb.st_size;
    if (total > SIZE_MAX) {
        err = dp_err_set(DP_ERR_RANGE, "%s: file too large", path);
        goto fail;
    }
    if ((err = read_full(fp, path, first8, total < 8 ? (size_t)total : 8))) goto fail;
    if ((err = check_header_len(path, first8, total, &n))) goto fail;
    if (!(f = file_new(path))) {
        err = dp_err_set(DP_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    hdr = malloc(n ? (size_t)n : 1);
    f->data_len = (size_t)(total - 8 - n);
    f->data = malloc(f->data_len ? f->data_len : 1);
    if (!hdr || !f->data) {
        err = dp_err_set(DP_ERR_NOMEM, "%s: out of memory reading %llu bytes", path,
                         (unsigned long long)total);
        goto fail;
    }
    if ((err = read_full(fp, path, hdr, (size_t)n))) goto fail;
    if ((err = read_full(fp, path, f->data, f->data_len))) goto fail;
    if ((err = parse_header(f, hdr, (size_t)n))) goto fail;
    if ((err = validate(f))) goto fail;
    free(hdr);
    fclose(fp);
    *out = f;
    return DP_OK;
fail:
    free(hdr);
    st_close(&f);
    fclose(fp);
    return err;
}

/* ------------------------------------------------------------ access */

const char *st_path(const st_file_t *f) { return f->path; }

size_t st_count(const st_file_t *f) { return f->nt; }

static void fill(const st_file_t *f, const st_entry_t *e, st_tensor_t *out)
{
    out->name = e->name;
    out->dtype = e->dtype;
    out->ndim = e->ndim;
    out->shape = e->shape;
    out->numel = e->numel;
    out->data = f->data + e->begin;
    out->nbytes = e->nbytes;
}

dp_err_t st_tensor_at(const st_file_t *f, size_t i, st_tensor_t *out)
{
    if (i >= f->nt)
        return dp_err_set(DP_ERR_RANGE, "%s: tensor index %zu out of range (%zu tensors)", f->path,
                          i, f->nt);
    fill(f, &f->t[i], out);
    return DP_OK;
}

static const st_entry_t *lookup(const st_file_t *f, const char *name)
{
    size_t lo = 0, hi = f->nt;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const st_entry_t *e = f->by_name[mid];
        int c = strcmp(e->name, name);
        if (c == 0) return e;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

dp_err_t st_find(const st_file_t *f, const char *name, st_tensor_t *out)
{
    const st_entry_t *e = lookup(f, name);
    if (!e) return dp_err_set(DP_ERR_NOTFOUND, "%s: no tensor '" NM "'", f->path, name);
    fill(f, e, out);
    return DP_OK;
}

const char *st_metadata(const st_file_t *f, const char *key)
{
    size_t lo = 0, hi = f->nmeta;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->meta[mid].key, key);
        if (c == 0) return f->meta[mid].value;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

size_t st_metadata_count(const st_file_t *f) { return f->nmeta; }

dp_err_t st_metadata_at(const st_file_t *f, size_t i, const char **key, const char **value)
{
    if (i >= f->nmeta)
        return dp_err_set(DP_ERR_RANGE, "%s: metadata index %zu out of range (%zu entries)",
                          f->path, i, f->nmeta);
    *key = f->meta[i].key;
    *value = f->meta[i].value;
    return DP_OK;
}

dp_err_t st_read(const st_file_t *f, const char *name, st_dtype_t dtype, int ndim,
                 const int64_t *shape, void *dst)
{
    const st_entry_t *e = lookup(f, name);
    if (!e) return dp_err_set(DP_ERR_NOTFOUND, "%s: no tensor '" NM "'", f->path, name);
    if (e->dtype != dtype)
        return dp_err_set(DP_ERR_MISMATCH, "%s: tensor '" NM "' has dtype %s, expected %s", f->path,
                          name, st_dtype_name(e->dtype), st_dtype_name(dtype));
    int same = e->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = e->shape[i] == shape[i];
    if (!same) {
        char have[160], want[160];
        return dp_err_set(DP_ERR_MISMATCH, "%s: tensor '" NM "' has shape %s, expected %s", f->path,
                          name, fmt_shape(have, sizeof have, e->ndim, e->shape),
                          fmt_shape(want, sizeof want, ndim < 0 ? 0 : ndim, shape));
    }
    if (e->nbytes) memcpy(dst, f->data + e->begin, e->nbytes);
    return DP_OK;
}

dp_err_t st_read_f32(const st_file_t *f, const char *name, int ndim, const int64_t *shape,
                     float *dst)
{
    return st_read(f, name, ST_F32, ndim, shape, dst);
}

dp_err_t st_read_i64(const st_file_t *f, const char *name, int ndim, const int64_t *shape,
                     int64_t *dst)
{
    return st_read(f, name, ST_I64, ndim, shape, dst);
}

dp_err_t st_read_i32(const st_file_t *f, const char *name, int ndim, const int64_t *shape,
                     int32_t *dst)
{
    return st_read(f, name, ST_I32, ndim, shape, dst);
}

/* ------------------------------------------------------------ writer */

typedef struct st_wtensor {
    char *name;
    st_dtype_t dtype;
    int ndim;
    int64_t *shape;
    size_t nbytes;
    const void *data; /* borrowed */
} st_wtensor_t;

struct st_writer {
    st_wtensor_t *t;
    size_t nt, cap_t;
    st_kv_t *meta;
    size_t nmeta, cap_meta;
    size_t *slots; /* open-addressing set of names: index + 1, 0 = empty */
    size_t nslots; /* power of two, at most half full */
};

static size_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (size_t)h;
}

/* The slot of name: holds its index + 1 if added, else is the empty slot
 * where it would go. */
static size_t *name_slot(const st_writer_t *w, const char *name)
{
    size_t mask = w->nslots - 1, i = name_hash(name) & mask;
    while (w->slots[i] && strcmp(w->t[w->slots[i] - 1].name, name) != 0) i = (i + 1) & mask;
    return &w->slots[i];
}

/* Room for one more name; -1 when out of memory. */
static int reserve_slot(st_writer_t *w)
{
    if ((w->nt + 1) * 2 <= w->nslots) return 0;
    size_t n = w->nslots ? 2 * w->nslots : 64;
    size_t *s = calloc(n, sizeof *s);
    if (!s) return -1;
    free(w->slots);
    w->slots = s;
    w->nslots = n;
    for (size_t i = 0; i < w->nt; i++) *name_slot(w, w->t[i].name) = i + 1;
    return 0;
}

st_writer_t *st_writer_new(void) { return calloc(1, sizeof(st_writer_t)); }

void st_writer_destroy(st_writer_t **wp)
{
    if (!wp || !*wp) return;
    st_writer_t *w = *wp;
    for (size_t i = 0; i < w->nt; i++) {
        free(w->t[i].name);
        free(w->t[i].shape);
    }
    for (size_t i = 0; i < w->nmeta; i++) {
        free(w->meta[i].key);
        free(w->meta[i].value);
    }
    free(w->t);
    free(w->meta);
    free(w->slots);
    free(w);
    *wp = NULL;
}

static int valid_text(const char *s)
{
    return check_utf8((const uint8_t *)s, strlen(s), "") == DP_OK;
}

dp_err_t st_writer_add(st_writer_t *w, const char *name, st_dtype_t dtype, int ndim,
                       const int64_t *shape, const void *data)
{
    if (!name || !valid_text(name) || strcmp(name, "__metadata__") == 0)
        return dp_err_set(DP_ERR_INVALID, "safetensors writer: bad tensor name '" NM "'",
                          name ? name : "(null)");
    if ((int)dtype < 0 || dtype >= ST_DTYPE__COUNT || ndim < 0 || ndim > ST_MAX_DIMS ||
        (ndim && !shape))
        return dp_err_set(DP_ERR_INVALID, "safetensors writer: tensor '" NM "': bad dtype or ndim",
                          name);
    if (reserve_slot(w)) return dp_err_set(DP_ERR_NOMEM, "safetensors writer: out of memory");
    size_t *slot = name_slot(w, name);
    if (*slot)
        return dp_err_set(DP_ERR_EXISTS, "safetensors writer: tensor '" NM "' added twice", name);
    size_t numel = 1, esz = dtypes[dtype].size;
    int zero = 0;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return dp_err_set(DP_ERR_INVALID, "safetensors writer: tensor '" NM "': negative dim",
                              name);
        zero |= shape[i] == 0;
    }
    for (int i = 0; i < ndim && !zero; i++) {
        if ((uint64_t)shape[i] > (SIZE_MAX / esz) / numel)
            return dp_err_set(DP_ERR_RANGE, "safetensors writer: tensor '" NM "': size overflows",
                              name);
        numel *= (size_t)shape[i];
    }
    if (zero) numel = 0;
    if (numel && !data)
        return dp_err_set(DP_ERR_INVALID, "safetensors writer: tensor '" NM "': NULL data", name);
    if (w->nt == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 16;
        st_wtensor_t *t = realloc(w->t, cap * sizeof *t);
        if (!t) return dp_err_set(DP_ERR_NOMEM, "safetensors writer: out of memory");
        w->t = t;
        w->cap_t = cap;
    }
    st_wtensor_t *e = &w->t[w->nt];
    e->name = strdup(name);
    e->shape = malloc(sizeof(int64_t) * (size_t)(ndim ? ndim : 1));
    if (!e->name || !e->shape) {
        free(e->name);
        free(e->shape);
        return dp_err_set(DP_ERR_NOMEM, "safetensors writer: out of memory");
    }
    if (ndim) memcpy(e->shape, shape, sizeof(int64_t) * (size_t)ndim);
    e->dtype = dtype;
    e->ndim = ndim;
    e->nbytes = numel * esz;
    e->data = data;
    *slot = ++w->nt;
    return DP_OK;
}

dp_err_t st_writer_add_f32(st_writer_t *w, const char *name, int ndim, const int64_t *shape,
                           const float *data)
{
    return st_writer_add(w, name, ST_F32, ndim, shape, data);
}

dp_err_t st_writer_add_i64(st_writer_t *w, const char *name, int ndim, const int64_t *shape,
                           const int64_t *data)
{
    return st_writer_add(w, name, ST_I64, ndim, shape, data);
}

dp_err_t st_writer_set_metadata(st_writer_t *w, const char *key, const char *value)
{
    if (!key || !value || !valid_text(key) || !valid_text(value))
        return dp_err_set(DP_ERR_INVALID, "safetensors writer: metadata must be UTF-8 strings");
    char *v = strdup(value);
    if (!v) return dp_err_set(DP_ERR_NOMEM, "safetensors writer: out of memory");
    for (size_t i = 0; i < w->nmeta; i++) {
        if (strcmp(w->meta[i].key, key) == 0) {
            free(w->meta[i].value);
            w->meta[i].value = v;
            return DP_OK;
        }
    }
    if (w->nmeta == w->cap_meta) {
        size_t cap = w->cap_meta ? 2 * w->cap_meta : 8;
        st_kv_t *m = realloc(w->meta, cap * sizeof *m);
        if (!m) {
            free(v);
            return dp_err_set(DP_ERR_NOMEM, "safetensors writer: out of memory");
        }
        w->meta = m;
        w->cap_meta = cap;
    }
    char *k = strdup(key);
    if (!k) {
        free(v);
        return dp_err_set(DP_ERR_NOMEM, "safetensors writer: out of memory");
    }
    w->meta[w->nmeta].key = k;
    w->meta[w->nmeta].value = v;
    w->nmeta++;
    return DP_OK;
}

/* A growable byte buffer; `failed` latches allocation failure. */
typedef struct sbuf {
    char *p;
    size_t len, cap;
    int failed;
} sbuf_t;

static void sb_put(sbuf_t *b, const char *s, size_t n)
{
    if (b->failed) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void sb_str(sbuf_t *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_u64(sbuf_t *b, uint64_t v)
{
    char num[24];
    int k = snprintf(num, sizeof num, "%llu", (unsigned long long)v);
    sb_put(b, num, (size_t)k);
}

/* A JSON string escaped as serde_json does (and so the reference writer). */
static void sb_json(sbuf_t *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        const char *esc = NULL;
        switch (c) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\f':
            esc = "\\f";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        default:
            break;
        }
        if (esc) {
            sb_str(b, esc);
        } else if (c < 0x20) {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            sb_put(b, u, 6);
        } else {
            sb_put(b, (const char *)&c, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static int cmp_wtensor(const void *a, const void *b)
{
    const st_wtensor_t *x = *(const st_wtensor_t *const *)a, *y = *(const st_wtensor_t *const *)b;
    if (x->dtype != y->dtype) return x->dtype > y->dtype ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Builds the 8-byte length + padded header in *hdr (caller frees) and the
 * tensor order in *order (caller frees). */
static dp_err_t build_header(const st_writer_t *w, sbuf_t *hdr, const st_wtensor_t ***order)
{
    const st_wtensor_t **ord = malloc(sizeof *ord * (w->nt ? w->nt : 1));
    st_kv_t *meta = malloc(sizeof *meta * (w->nmeta ? w->nmeta : 1));
    sbuf_t b = {0};
    if (!ord || !meta) goto nomem;
    for (size_t i = 0; i < w->nt; i++) ord[i] = &w->t[i];
    if (w->nt) qsort(ord, w->nt, sizeof *ord, cmp_wtensor);
    if (w->nmeta) memcpy(meta, w->meta, sizeof *meta * w->nmeta);
    if (w->nmeta) qsort(meta, w->nmeta, sizeof *meta, cmp_kv);

    sb_put(&b, "\0\0\0\0\0\0\0\0", 8);
    sb_put(&b, "{", 1);
    if (w->nmeta) {
        sb_str(&b, "\"__metadata__\":{");
        for (size_t i = 0; i < w->nmeta; i++) {
            if (i) sb_put(&b, ",", 1);
            sb_json(&b, meta[i].key);
            sb_put(&b, ":", 1);
            sb_json(&b, meta[i].value);
        }
        sb_put(&b, "}", 1);
    }
    uint64_t at = 0;
    for (size_t i = 0; i < w->nt; i++) {
        const st_wtensor_t *e = ord[i];
        if (i || w->nmeta) sb_put(&b, ",", 1);
        sb_json(&b, e->name);
        sb_str(&b, ":{\"dtype\":\"");
        sb_str(&b, dtypes[e->dtype].name);
        sb_str(&b, "\",\"shape\":[");
        for (int d = 0; d < e->ndim; d++) {
            if (d) sb_put(&b, ",", 1);
            sb_u64(&b, (uint64_t)e->shape[d]);
        }
        sb_str(&b, "],\"data_offsets\":[");
        sb_u64(&b, at);
        sb_put(&b, ",", 1);
        if (e->nbytes > SIZE_MAX - at) {
            free(ord);
            free(meta);
            free(b.p);
            return dp_err_set(DP_ERR_RANGE, "safetensors writer: total size overflows");
        }
        at += e->nbytes;
        sb_u64(&b, at);
        sb_str(&b, "]}");
    }
    sb_put(&b, "}", 1);
    while ((b.len - 8) % 8) sb_put(&b, " ", 1);
    if (b.failed) goto nomem;
    if (b.len - 8 > ST_MAX_HEADER) {
        free(ord);
        free(meta);
        free(b.p);
        return dp_err_set(DP_ERR_RANGE, "safetensors writer: header over %u bytes", ST_MAX_HEADER);
    }
    uint64_t n = b.len - 8;
    for (int i = 0; i < 8; i++) b.p[i] = (char)(n >> (8 * i));
    free(meta);
    *hdr = b;
    *order = ord;
    return DP_OK;
nomem:
    free(ord);
    free(meta);
    free(b.p);
    return dp_err_set(DP_ERR_NOMEM, "safetensors writer: out of memory");
}

dp_err_t st_writer_to_memory(const st_writer_t *w, uint8_t **buf, size_t *len)
{
    sbuf_t hdr;
    const st_wtensor_t **ord;
    dp_err_t err = build_header(w, &hdr, &ord);
    if (err) return err;
    size_t total = hdr.len;
    for (size_t i = 0; i < w->nt; i++) total += ord[i]->nbytes; /* checked in build_header */
    uint8_t *out = malloc(total);
    if (!out) {
        free(hdr.p);
        free(ord);
        return dp_err_set(DP_ERR_NOMEM, "safetensors writer: out of memory for %zu bytes", total);
    }
    memcpy(out, hdr.p, hdr.len);
    size_t at = hdr.len;
    for (size_t i = 0; i < w->nt; i++) {
        if (ord[i]->nbytes) memcpy(out + at, ord[i]->data, ord[i]->nbytes);
        at += ord[i]->nbytes;
    }
    free(hdr.p);
    free(ord);
    *buf = out;
    *len = total;
    return DP_OK;
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t k = write(fd, c, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

dp_err_t st_writer_write(const st_writer_t *w, const char *path)
{
    sbuf_t hdr = {0};
    const st_wtensor_t **ord = NULL;
    char *tmp = NULL;
    int fd = -1;
    dp_err_t err = build_header(w, &hdr, &ord);
    if (err) return err;
    size_t plen = strlen(path);
    tmp = malloc(plen + 5);
    if (!tmp) {
        err = dp_err_set(DP_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        err = dp_err_set(DP_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        goto fail;
    }
    int bad = write_all(fd, hdr.p, hdr.len);
    for (size_t i = 0; i < w->nt && !bad; i++) bad = write_all(fd, ord[i]->data, ord[i]->nbytes);
    if (bad || fsync(fd) != 0) {
        err = dp_err_set(DP_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
        goto fail;
    }
    int rc = close(fd);
    fd = -1;
    if (rc != 0) {
        err = dp_err_set(DP_ERR_IO, "%s: close failed: %s", tmp, strerror(errno));
        goto fail;
    }
    if (rename(tmp, path) != 0) {
        err = dp_err_set(DP_ERR_IO, "%s: rename from %s failed: %s", path, tmp, strerror(errno));
        goto fail;
    }
    /* make the rename durable: fsync the directory (best effort) */
    const char *slash = strrchr(path, '/');
    if (slash) {
        size_t dl = slash == path ? 1 : (size_t)(slash - path);
        memcpy(tmp, path, dl);
        tmp[dl] = '\0';
    } else {
        strcpy(tmp, ".");
    }
    int dfd = open(tmp, O_RDONLY);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    free(tmp);
    free(hdr.p);
    free(ord);
    return DP_OK;
fail:
    if (fd >= 0) close(fd);
    if (tmp) unlink(tmp);
    free(tmp);
    free(hdr.p);
    free(ord);
    return err;
}
