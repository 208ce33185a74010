/* JSON for the task layer's summaries and the campaign report: a writer
 * into a growing buffer that keeps the commas and escapes for its caller,
 * and a small reader for the summaries and reports (core/task, core/report). Numbers that are
 * not finite are written as null; strings are written as valid UTF-8 (a byte
 * that starts no character becomes U+FFFD). */
#ifndef DP_UTIL_JSON_H
#define DP_UTIL_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define TJ_DEPTH 16

typedef struct tj_writer {
    char *buf;
    size_t len, cap;
    int failed; /* out of memory: every later call does nothing */
    int depth;
    int count[TJ_DEPTH]; /* values written at each level (commas) */
    int after_key;       /* a key was written: the value needs no comma */
} tj_writer_t;

void tj_init(tj_writer_t *w);
/* The text (NULL after a failure); the writer is reset, caller frees. */
char *tj_take(tj_writer_t *w);
void tj_free(tj_writer_t *w);

void tj_obj(tj_writer_t *w);
void tj_obj_end(tj_writer_t *w);
void tj_arr(tj_writer_t *w);
void tj_arr_end(tj_writer_t *w);
void tj_key(tj_writer_t *w, const char *k);
void tj_str(tj_writer_t *w, const char *s);
void tj_num(tj_writer_t *w, double v); /* %.17g, shortest that reads back; null if not finite */
void tj_numf(tj_writer_t *w, const char *fmt, double v);
/* A float32 value as the shortest decimal that reads back as that float
 * (0.03f is 0.03, not 0.029999999329447746). */
void tj_float(tj_writer_t *w, float v);
void tj_int(tj_writer_t *w, int64_t v);
void tj_bool(tj_writer_t *w, int v);
void tj_null(tj_writer_t *w);
/* Raw text as one value (another writer's output). */
void tj_raw(tj_writer_t *w, const char *json);

/* key: value members in one call. */
void tj_kstr(tj_writer_t *w, const char *k, const char *s);
void tj_knum(tj_writer_t *w, const char *k, double v);
void tj_kfloat(tj_writer_t *w, const char *k, float v);
void tj_kint(tj_writer_t *w, const char *k, int64_t v);
void tj_kbool(tj_writer_t *w, const char *k, int v);

/* ------------------------------------------------------------- reading */

typedef enum tj_type { TJ_NULL, TJ_BOOL, TJ_NUM, TJ_STR, TJ_ARR, TJ_OBJ } tj_type_t;

typedef struct tj_val {
    tj_type_t type;
    double num;           /* TJ_NUM; TJ_BOOL 0/1 */
    char *str;            /* TJ_STR (NUL-terminated; an embedded \u0000 ends it) */
    size_t n;             /* TJ_ARR, TJ_OBJ: members */
    struct tj_val *items; /* n values */
    char **keys;          /* TJ_OBJ: n keys */
} tj_val_t;

/* Parses text (len bytes) into *out (freed with tj_val_free). DP_ERR_FORMAT
 * with the byte offset for text that is not one JSON value; nesting is
 * limited to 64 levels. */
dp_err_t tj_parse(const char *text, size_t len, tj_val_t *out);
void tj_val_free(tj_val_t *v);

/* Member k of object o (NULL if o is no object or lacks it). */
const tj_val_t *tj_get(const tj_val_t *o, const char *k);
/* The member's number / string, or dflt when absent or of another type. */
double tj_get_num(const tj_val_t *o, const char *k, double dflt);
const char *tj_get_str(const tj_val_t *o, const char *k, const char *dflt);

#endif
