/* Any protobuf-c message as JSON (client.h), walked through its descriptor,
 * so a field added to wire.proto shows up in `dp-submit --status --json`
 * without a change here. Close to protobuf's JSON mapping, with the proto
 * field names (as protoc's preserving_proto_field_name) and 64-bit
 * integers as numbers; every field is written, defaults included, except
 * absent messages and unset oneof members. */
#include "client.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct jbuf {
    char *s;
    size_t len, cap;
    int fail;
} jbuf_t;

static void put(jbuf_t *b, const char *s, size_t n)
{
    if (b->fail) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->len + n + 1 > cap) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->fail = 1;
            return;
        }
        b->s = p, b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void puts_(jbuf_t *b, const char *s) { put(b, s, strlen(s)); }

static void printf_(jbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void printf_(jbuf_t *b, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    const int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* A JSON string: quotes, backslashes and control characters escaped; bytes
 * above 0x7f pass (the wire's strings are checked UTF-8). */
static void str(jbuf_t *b, const char *s, size_t n)
{
    put(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        const unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\' && ch != 0x7f) continue;
        put(b, s + run, i - run);
        run = i + 1;
        switch (ch) {
        case '"':
            puts_(b, "\\\"");
            break;
        case '\\':
            puts_(b, "\\\\");
            break;
        case '\n':
            puts_(b, "\\n");
            break;
        case '\t':
            puts_(b, "\\t");
            break;
        case '\r':
            puts_(b, "\\r");
            break;
        default:
            printf_(b, "\\u%04x", ch);
        }
    }
    put(b, s + run, n - run);
    put(b, "\"", 1);
}

static void real(jbuf_t *b, double v, int is_float)
{
    if (isnan(v))
        puts_(b, "\"NaN\"");
    else if (isinf(v))
        puts_(b, v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
    else
        printf_(b, is_float ? "%.9g" : "%.17g", v);
}

static void message(jbuf_t *b, const ProtobufCMessage *m);

/* One value of field f at p. */
static void value(jbuf_t *b, const ProtobufCFieldDescriptor *f, const void *p)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        printf_(b, "%d", *(const int32_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        printf_(b, "%u", *(const uint32_t *)p);
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        printf_(b, "%lld", (long long)*(const int64_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        printf_(b, "%llu", (unsigned long long)*(const uint64_t *)p);
        break;
    case PROTOBUF_C_TYPE_FLOAT:
        real(b, *(const float *)p, 1);
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
        real(b, *(const double *)p, 0);
        break;
    case PROTOBUF_C_TYPE_BOOL:
        puts_(b, *(const protobuf_c_boolean *)p ? "true" : "false");
        break;
    case PROTOBUF_C_TYPE_ENUM: {
        const int v = *(const int *)p;
        const ProtobufCEnumValue *ev =
            protobuf_c_enum_descriptor_get_value((const ProtobufCEnumDescriptor *)f->descriptor, v);
        if (ev)
            str(b, ev->name, strlen(ev->name));
        else
            printf_(b, "%d", v);
        break;
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        str(b, s ? s : "", s ? strlen(s) : 0);
        break;
    }
    case PROTOBUF_C_TYPE_BYTES: { /* as hex: nothing on the wire carries bytes today */
        const ProtobufCBinaryData *d = p;
        put(b, "\"", 1);
        for (size_t i = 0; i < d->len; i++) printf_(b, "%02x", d->data[i]);
        put(b, "\"", 1);
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE:
        message(b, *(ProtobufCMessage *const *)p);
        break;
    }
}

static size_t type_size(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_ENUM:
        return sizeof(int);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    default:
        return 4;
    }
}

static void message(jbuf_t *b, const ProtobufCMessage *m)
{
    if (!m) {
        puts_(b, "null");
        return;
    }
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const char *base = (const char *)m;
    int first = 1;
    put(b, "{", 1);
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const void *p = base + f->offset;
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            const uint32_t which = *(const uint32_t *)(base + f->quantifier_offset);
            if (which != f->id) continue;
        }
        if (f->label != PROTOBUF_C_LABEL_REPEATED && f->type == PROTOBUF_C_TYPE_MESSAGE &&
            !*(ProtobufCMessage *const *)p)
            continue;
        if (!first) put(b, ",", 1);
        first = 0;
        str(b, f->name, strlen(f->name));
        put(b, ":", 1);
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            const size_t n = *(const size_t *)(base + f->quantifier_offset);
            const char *arr = *(char *const *)p;
            const size_t sz = type_size(f);
            put(b, "[", 1);
            for (size_t k = 0; k < n; k++) {
                if (k) put(b, ",", 1);
                value(b, f, arr + k * sz);
            }
            put(b, "]", 1);
        } else {
            value(b, f, p);
        }
    }
    put(b, "}", 1);
}

char *dp_client_json(const ProtobufCMessage *m)
{
    jbuf_t b = {0};
    message(&b, m);
    if (b.fail) {
        free(b.s);
        return NULL;
    }
    return b.s;
}
