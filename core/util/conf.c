/* Settings files (conf.h): the file is read into one buffer, each setting's
 * name and value cut out of it in place, and its place ("PATH:LINE") kept
 * beside. */
#include "conf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct setting {
    const char *name, *value;
    char *where;
} setting_t;

struct dp_conf {
    char *text;
    setting_t *v;
    size_t n, cap;
};

static int is_blank(char ch) { return ch == ' ' || ch == '\t'; }

static int is_name(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-';
}

static dp_err_t read_all(const char *path, char **text, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return dp_err_set(DP_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    char *buf = malloc(DP_CONF_MAX_BYTES + 2); /* one byte over the limit, and the NUL */
    if (!buf) {
        fclose(f);
        return dp_err_set(DP_ERR_NOMEM, "out of memory reading %s", path);
    }
    const size_t n = fread(buf, 1, DP_CONF_MAX_BYTES + 1, f);
    const int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return dp_err_set(DP_ERR_IO, "cannot read %s", path);
    }
    buf[n] = '\0'; /* n may be DP_CONF_MAX_BYTES + 1: the parse refuses it */
    *text = buf;
    *len = n;
    return DP_OK;
}

static dp_err_t add(dp_conf_t *c, const char *path, int line, const char *name, const char *value)
{
    for (size_t i = 0; i < c->n; i++)
        if (!strcmp(c->v[i].name, name))
            return dp_err_set(DP_ERR_FORMAT, "%s:%d: '%s' is set again (first at %s)", path, line,
                              name, c->v[i].where);
    if (c->n == c->cap) {
        const size_t cap = c->cap ? 2 * c->cap : 16;
        setting_t *v = realloc(c->v, cap * sizeof *v);
        if (!v) return dp_err_set(DP_ERR_NOMEM, "out of memory reading %s", path);
        c->v = v, c->cap = cap;
    }
    const int len = snprintf(NULL, 0, "%s:%d", path, line);
    char *where = malloc((size_t)len + 1);
    if (!where) return dp_err_set(DP_ERR_NOMEM, "out of memory reading %s", path);
    snprintf(where, (size_t)len + 1, "%s:%d", path, line);
    c->v[c->n++] = (setting_t){name, value, where};
    return DP_OK;
}

/* One line, NUL-terminated in place (s), number line. */
static dp_err_t parse_line(dp_conf_t *c, const char *path, int line, char *s)
{
    while (is_blank(*s)) s++;
    if (!*s || *s == '#') return DP_OK;
    char *name = s;
    while (is_name(*s)) s++;
    char *name_end = s;
    while (is_blank(*s)) s++;
    if (*s != '=' && s == name_end && *s) /* a character no name has, inside or first */
        return dp_err_set(DP_ERR_FORMAT,
                          "%s:%d: a name is made of a-z, 0-9 and '-' (a flag without its dashes), "
                          "not '%c'",
                          path, line, *s);
    if (name_end == name || *s != '=')
        return dp_err_set(DP_ERR_FORMAT, "%s:%d: expected 'name = value'", path, line);
    *name_end = '\0';
    s++;
    while (is_blank(*s)) s++;
    char *value = s, *end = s + strlen(s);
    while (end > value && is_blank(end[-1])) end--;
    *end = '\0';
    if (*value == '"') {
        if (end - value < 2 || end[-1] != '"')
            return dp_err_set(DP_ERR_FORMAT,
                              "%s:%d: the value's opening quote is not closed at "
                              "the end of the line",
                              path, line);
        end[-1] = '\0';
        value++;
    }
    return add(c, path, line, name, value);
}

/* Cuts the settings out of c->text (len bytes, NUL-terminated). */
static dp_err_t parse(dp_conf_t *c, size_t len, const char *path)
{
    dp_err_t err = DP_OK;
    char *s = c->text;
    for (int line = 1; !err && s < c->text + len; line++) {
        char *nl = memchr(s, '\n', (size_t)(c->text + len - s));
        char *end = nl ? nl : c->text + len;
        if (end > s && end[-1] == '\r') end--;
        if (end - s > DP_CONF_MAX_LINE)
            return dp_err_set(DP_ERR_RANGE, "%s:%d: longer than %d bytes", path, line,
                              DP_CONF_MAX_LINE);
        for (char *p = s; p < end; p++)
            if ((unsigned char)*p < 0x20 && *p != '\t')
                return dp_err_set(DP_ERR_FORMAT,
                                  *p ? "%s:%d: a control character (0x%02x) in the line"
                                     : "%s:%d: a NUL byte in the line (0x%02x): not a text file",
                                  path, line, (unsigned)(unsigned char)*p);
        *end = '\0';
        err = parse_line(c, path, line, s);
        s = nl ? nl + 1 : c->text + len;
    }
    return err;
}

/* The parse of text (len bytes, NUL-terminated at len, owned: kept in *out
 * or freed). */
static dp_err_t parse_owned(char *text, size_t len, const char *path, dp_conf_t **out)
{
    *out = NULL;
    if (len > DP_CONF_MAX_BYTES) {
        free(text);
        return dp_err_set(DP_ERR_RANGE, "%s is larger than %u bytes: not a settings file", path,
                          DP_CONF_MAX_BYTES);
    }
    dp_conf_t *c = calloc(1, sizeof *c);
    if (!c) {
        free(text);
        return dp_err_set(DP_ERR_NOMEM, "out of memory reading %s", path);
    }
    c->text = text;
    const dp_err_t err = parse(c, len, path);
    if (err) {
        dp_conf_destroy(&c);
        return err;
    }
    *out = c;
    return DP_OK;
}

dp_err_t dp_conf_parse(const char *text, size_t len, const char *path, dp_conf_t **out)
{
    *out = NULL;
    if (len > DP_CONF_MAX_BYTES) return parse_owned(NULL, len, path, out);
    char *copy = malloc(len + 1);
    if (!copy) return dp_err_set(DP_ERR_NOMEM, "out of memory reading %s", path);
    memcpy(copy, text, len);
    copy[len] = '\0';
    return parse_owned(copy, len, path, out);
}

dp_err_t dp_conf_load(const char *path, dp_conf_t **out)
{
    *out = NULL;
    if (!path || !*path) return dp_err_set(DP_ERR_INVALID, "no settings file named");
    char *text = NULL;
    size_t len = 0;
    const dp_err_t err = read_all(path, &text, &len);
    return err ? err : parse_owned(text, len, path, out);
}

size_t dp_conf_count(const dp_conf_t *c) { return c ? c->n : 0; }
const char *dp_conf_name(const dp_conf_t *c, size_t i) { return c->v[i].name; }
const char *dp_conf_value(const dp_conf_t *c, size_t i) { return c->v[i].value; }
const char *dp_conf_where(const dp_conf_t *c, size_t i) { return c->v[i].where; }

dp_err_t dp_conf_each(const dp_conf_t *c, dp_conf_take_fn take, void *ctx)
{
    for (size_t i = 0; c && i < c->n; i++)
        if (take(ctx, c->v[i].name, c->v[i].value, c->v[i].where))
            return dp_err_set(DP_ERR_NOTFOUND, "%s: no setting '%s' (see --help)", c->v[i].where,
                              c->v[i].name);
    return DP_OK;
}

void dp_conf_destroy(dp_conf_t **pc)
{
    if (!pc || !*pc) return;
    dp_conf_t *c = *pc;
    for (size_t i = 0; i < c->n; i++) free(c->v[i].where);
    free(c->v);
    free(c->text);
    free(c);
    *pc = NULL;
}
