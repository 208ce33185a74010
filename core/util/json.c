/* JSON writer and reader (json.h). */
#include "util/json.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/utf8.h"

/* ------------------------------------------------------------- writing */

void tj_init(tj_writer_t *w) { memset(w, 0, sizeof *w); }

void tj_free(tj_writer_t *w)
{
    free(w->buf);
    tj_init(w);
}

char *tj_take(tj_writer_t *w)
{
    char *s = w->failed ? NULL : w->buf;
    if (!s) free(w->buf);
    tj_init(w);
    return s;
}

static void put(tj_writer_t *w, const char *s, size_t n)
{
    if (w->failed) return;
    if (w->len + n + 1 > w->cap) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap < w->len + n + 1) cap *= 2;
        char *b = realloc(w->buf, cap);
        if (!b) {
            w->failed = 1;
            return;
        }
        w->buf = b, w->cap = cap;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = '\0';
}

static void puts_(tj_writer_t *w, const char *s) { put(w, s, strlen(s)); }

static void putf(tj_writer_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(tj_writer_t *w, const char *fmt, ...)
{
    char b[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b, sizeof b, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    put(w, b, (size_t)n < sizeof b ? (size_t)n : sizeof b - 1);
}

/* The comma before a value, unless it follows its key. */
static void sep(tj_writer_t *w)
{
    if (w->after_key) {
        w->after_key = 0;
        return;
    }
    if (w->count[w->depth]++) put(w, ",", 1);
}

static void open_(tj_writer_t *w, const char *c)
{
    sep(w);
    put(w, c, 1);
    if (w->depth + 1 < TJ_DEPTH) w->depth++;
    w->count[w->depth] = 0;
}

static void close_(tj_writer_t *w, const char *c)
{
    put(w, c, 1);
    if (w->depth > 0) w->depth--;
}

void tj_obj(tj_writer_t *w) { open_(w, "{"); }
void tj_obj_end(tj_writer_t *w) { close_(w, "}"); }
void tj_arr(tj_writer_t *w) { open_(w, "["); }
void tj_arr_end(tj_writer_t *w) { close_(w, "]"); }

static void quoted(tj_writer_t *w, const char *s)
{
    put(w, "\"", 1);
    for (size_t i = 0, n = strlen(s), k; i < n; i += k) {
        unsigned char ch = (unsigned char)s[i];
        k = dp_utf8_char_len(s + i, n - i);
        if (!k) {
            puts_(w, "\\ufffd");
            k = 1;
        } else if (ch == '"' || ch == '\\') {
            char e[2] = {'\\', (char)ch};
            put(w, e, 2);
        } else if (ch < 0x20) {
            putf(w, "\\u%04x", ch);
        } else {
            put(w, s + i, k);
        }
    }
    put(w, "\"", 1);
}

void tj_key(tj_writer_t *w, const char *k)
{
    sep(w);
    quoted(w, k);
    put(w, ":", 1);
    w->after_key = 1;
}

void tj_str(tj_writer_t *w, const char *s)
{
    sep(w);
    quoted(w, s ? s : "");
}

void tj_numf(tj_writer_t *w, const char *fmt, double v)
{
    sep(w);
    if (!isfinite(v)) {
        puts_(w, "null");
        return;
    }
    char b[64];
    snprintf(b, sizeof b, fmt, v);
    puts_(w, b);
}

/* The shortest %g that reads back as v (up to 17 digits). */
void tj_num(tj_writer_t *w, double v)
{
    sep(w);
    if (!isfinite(v)) {
        puts_(w, "null");
        return;
    }
    char b[64];
    for (int p = 6; p <= 17; p++) {
        snprintf(b, sizeof b, "%.*g", p, v);
        if (strtod(b, NULL) == v) break;
    }
    puts_(w, b);
}

void tj_float(tj_writer_t *w, float v)
{
    sep(w);
    if (!isfinite(v)) {
        puts_(w, "null");
        return;
    }
    char b[64];
    for (int p = 1; p <= 9; p++) {
        snprintf(b, sizeof b, "%.*g", p, (double)v);
        if (strtof(b, NULL) == v) break;
    }
    puts_(w, b);
}

void tj_int(tj_writer_t *w, int64_t v)
{
    sep(w);
    putf(w, "%lld", (long long)v);
}

void tj_bool(tj_writer_t *w, int v)
{
    sep(w);
    puts_(w, v ? "true" : "false");
}

void tj_null(tj_writer_t *w)
{
    sep(w);
    puts_(w, "null");
}

void tj_raw(tj_writer_t *w, const char *json)
{
    sep(w);
    puts_(w, json);
}

void tj_kstr(tj_writer_t *w, const char *k, const char *s)
{
    tj_key(w, k);
    tj_str(w, s);
}

void tj_knum(tj_writer_t *w, const char *k, double v)
{
    tj_key(w, k);
    tj_num(w, v);
}

void tj_kfloat(tj_writer_t *w, const char *k, float v)
{
    tj_key(w, k);
    tj_float(w, v);
}

void tj_kint(tj_writer_t *w, const char *k, int64_t v)
{
    tj_key(w, k);
    tj_int(w, v);
}

void tj_kbool(tj_writer_t *w, const char *k, int v)
{
    tj_key(w, k);
    tj_bool(w, v);
}

/* ------------------------------------------------------------- reading */

#define TJ_MAX_NEST 64

typedef struct rd {
    const char *s;
    size_t n, i;
} rd_t;

static void ws(rd_t *r)
{
    while (r->i < r->n &&
           (r->s[r->i] == ' ' || r->s[r->i] == '\t' || r->s[r->i] == '\n' || r->s[r->i] == '\r'))
        r->i++;
}

static dp_err_t bad(const rd_t *r, const char *what)
{
    return dp_err_set(DP_ERR_FORMAT, "JSON: %s at byte %zu", what, r->i);
}

static void utf8_put(char *out, size_t *o, unsigned cp)
{
    if (cp < 0x80) {
        out[(*o)++] = (char)cp;
    } else if (cp < 0x800) {
        out[(*o)++] = (char)(0xc0 | cp >> 6);
        out[(*o)++] = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        out[(*o)++] = (char)(0xe0 | cp >> 12);
        out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[(*o)++] = (char)(0x80 | (cp & 0x3f));
    } else {
        out[(*o)++] = (char)(0xf0 | cp >> 18);
        out[(*o)++] = (char)(0x80 | ((cp >> 12) & 0x3f));
        out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[(*o)++] = (char)(0x80 | (cp & 0x3f));
    }
}

static int hex4(const char *s, unsigned *v)
{
    *v = 0;
    for (int k = 0; k < 4; k++) {
        char c = s[k];
        unsigned d = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
                     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                     : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10)
                                            : 16u;
        if (d > 15) return -1;
        *v = *v << 4 | d;
    }
    return 0;
}

/* A string at r->i (the opening quote); *out new. */
static dp_err_t str_(rd_t *r, char **out)
{
    size_t start = ++r->i, end = start;
    while (end < r->n && r->s[end] != '"') end += r->s[end] == '\\' ? 2 : 1;
    if (end >= r->n) return bad(r, "unterminated string");
    char *o = malloc(end - start + 1); /* escapes only shrink */
    if (!o) return dp_err_set(DP_ERR_NOMEM, "JSON: out of memory");
    size_t k = 0;
    while (r->i < end) {
        char c = r->s[r->i++];
        if (c != '\\') {
            o[k++] = c;
            continue;
        }
        char e = r->s[r->i++];
        unsigned cp;
        switch (e) {
        case 'n':
            o[k++] = '\n';
            break;
        case 't':
            o[k++] = '\t';
            break;
        case 'r':
            o[k++] = '\r';
            break;
        case 'b':
            o[k++] = '\b';
            break;
        case 'f':
            o[k++] = '\f';
            break;
        case 'u':
            if (r->i + 4 > end || hex4(r->s + r->i, &cp)) {
                free(o);
                return bad(r, "bad \\u escape");
            }
            r->i += 4;
            if (cp >= 0xd800 && cp < 0xdc00 && r->i + 6 <= end && r->s[r->i] == '\\' &&
                r->s[r->i + 1] == 'u') {
                unsigned lo;
                if (!hex4(r->s + r->i + 2, &lo) && lo >= 0xdc00 && lo < 0xe000) {
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    r->i += 6;
                }
            }
            if (cp >= 0xd800 && cp < 0xe000) cp = 0xfffd;
            utf8_put(o, &k, cp); /* at most 4 bytes for 6 or 12 read */
            break;
        default:
            o[k++] = e; /* \" \\ \/ */
        }
    }
    o[k] = '\0';
    r->i = end + 1;
    *out = o;
    return DP_OK;
}

static dp_err_t value(rd_t *r, tj_val_t *v, int depth);

static dp_err_t push(tj_val_t *v, size_t *cap, int obj)
{
    if (v->n < *cap) return DP_OK;
    size_t c = *cap ? *cap * 2 : 4;
    tj_val_t *it = realloc(v->items, c * sizeof *it);
    if (!it) return dp_err_set(DP_ERR_NOMEM, "JSON: out of memory");
    v->items = it;
    if (obj) {
        char **ks = realloc(v->keys, c * sizeof *ks);
        if (!ks) return dp_err_set(DP_ERR_NOMEM, "JSON: out of memory");
        v->keys = ks;
    }
    *cap = c;
    return DP_OK;
}

static dp_err_t container(rd_t *r, tj_val_t *v, int depth, int obj)
{
    v->type = obj ? TJ_OBJ : TJ_ARR;
    r->i++;
    ws(r);
    char close = obj ? '}' : ']';
    if (r->i < r->n && r->s[r->i] == close) {
        r->i++;
        return DP_OK;
    }
    size_t cap = 0;
    for (;;) {
        dp_err_t err = push(v, &cap, obj);
        if (err) return err;
        char *key = NULL;
        if (obj) {
            ws(r);
            if (r->i >= r->n || r->s[r->i] != '"') return bad(r, "expected a key");
            if ((err = str_(r, &key))) return err;
            ws(r);
            if (r->i >= r->n || r->s[r->i] != ':') {
                free(key);
                return bad(r, "expected ':'");
            }
            r->i++;
        }
        memset(&v->items[v->n], 0, sizeof v->items[0]);
        if (obj) v->keys[v->n] = key;
        v->n++; /* counted now, so a failure below frees it */
        if ((err = value(r, &v->items[v->n - 1], depth + 1))) return err;
        ws(r);
        if (r->i < r->n && r->s[r->i] == ',') {
            r->i++;
            continue;
        }
        if (r->i < r->n && r->s[r->i] == close) {
            r->i++;
            return DP_OK;
        }
        return bad(r, obj ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static dp_err_t value(rd_t *r, tj_val_t *v, int depth)
{
    if (depth > TJ_MAX_NEST) return bad(r, "nested too deep");
    ws(r);
    if (r->i >= r->n) return bad(r, "expected a value");
    char c = r->s[r->i];
    if (c == '{' || c == '[') return container(r, v, depth, c == '{');
    if (c == '"') {
        v->type = TJ_STR;
        return str_(r, &v->str);
    }
    static const struct {
        const char *w;
        tj_type_t t;
        double n;
    } words[] = {{"null", TJ_NULL, 0}, {"true", TJ_BOOL, 1}, {"false", TJ_BOOL, 0}};
    for (int k = 0; k < 3; k++) {
        size_t l = strlen(words[k].w);
        if (r->n - r->i >= l && !memcmp(r->s + r->i, words[k].w, l)) {
            v->type = words[k].t, v->num = words[k].n;
            r->i += l;
            return DP_OK;
        }
    }
    size_t j = r->i;
    while (j < r->n && strchr("+-0123456789.eE", r->s[j])) j++;
    if (j == r->i || j - r->i > 63) return bad(r, "unexpected character");
    char b[64], *end;
    memcpy(b, r->s + r->i, j - r->i);
    b[j - r->i] = '\0';
    v->num = strtod(b, &end);
    if (*end) return bad(r, "bad number");
    v->type = TJ_NUM;
    r->i = j;
    return DP_OK;
}

dp_err_t tj_parse(const char *text, size_t len, tj_val_t *out)
{
    memset(out, 0, sizeof *out);
    rd_t r = {text, len, 0};
    dp_err_t err = value(&r, out, 0);
    if (!err) {
        ws(&r);
        if (r.i != r.n) err = bad(&r, "text after the value");
    }
    if (err) tj_val_free(out);
    return err;
}

void tj_val_free(tj_val_t *v)
{
    if (!v) return;
    for (size_t i = 0; i < v->n; i++) {
        tj_val_free(&v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->str);
    memset(v, 0, sizeof *v);
}

const tj_val_t *tj_get(const tj_val_t *o, const char *k)
{
    if (!o || o->type != TJ_OBJ) return NULL;
    for (size_t i = 0; i < o->n; i++)
        if (!strcmp(o->keys[i], k)) return &o->items[i];
    return NULL;
}

double tj_get_num(const tj_val_t *o, const char *k, double dflt)
{
    const tj_val_t *v = tj_get(o, k);
    return v && (v->type == TJ_NUM || v->type == TJ_BOOL) ? v->num : dflt;
}

const char *tj_get_str(const tj_val_t *o, const char *k, const char *dflt)
{
    const tj_val_t *v = tj_get(o, k);
    return v && v->type == TJ_STR ? v->str : dflt;
}
