/* Envelope decoding and validation. Two passes: a generic walk over the
 * protobuf-c descriptors checks what holds for every field of every nested
 * message (string bytes and UTF-8, list lengths, enum values), so a field
 * added to the .proto is covered without code here; then one function per
 * body checks what that body cannot do without. */
#include "wire/envelope.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define MAX_DEPTH 32

/* ---- generic walk ---- */

struct walk {
    char path[512]; /* "submit.campaign.models[1].name" */
    size_t len;
};

static size_t path_push(struct walk *w, const char *name, size_t index, int indexed)
{
    size_t save = w->len;
    size_t room = sizeof w->path - w->len;
    int n = indexed ? snprintf(w->path + w->len, room, "%s%s[%zu]", w->len ? "." : "", name, index)
                    : snprintf(w->path + w->len, room, "%s%s", w->len ? "." : "", name);
    if (n > 0) w->len = (size_t)n < room ? w->len + (size_t)n : sizeof w->path - 1;
    return save;
}

static void path_pop(struct walk *w, size_t save)
{
    w->len = save;
    w->path[save] = '\0';
}

/* Valid UTF-8: no overlong forms, no surrogates, nothing past U+10FFFF. */
static int utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        unsigned lo = 0x80, hi = 0xbf;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            k = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 2;
            if (c == 0xe0) lo = 0xa0;
            if (c == 0xed) hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3;
            if (c == 0xf0) lo = 0x90;
            if (c == 0xf4) hi = 0x8f;
        } else {
            return 0;
        }
        if (n - i <= k) return 0;
        if (s[i + 1] < lo || s[i + 1] > hi) return 0;
        for (size_t j = 2; j <= k; j++)
            if ((s[i + j] & 0xc0) != 0x80) return 0;
        i += k + 1;
    }
    return 1;
}

static dp_err_t walk_msg(const ProtobufCMessage *m, struct walk *w, int depth);

static dp_err_t walk_value(const ProtobufCFieldDescriptor *f, const void *p, struct walk *w,
                           int depth)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        if (!s) return DP_OK;
        size_t n = strlen(s),
               max = strcmp(f->name, "summary_json") ? DP_WIRE_MAX_STRING : DP_WIRE_MAX_JSON;
        if (n > max)
            return dp_err_set(DP_ERR_PROTOCOL, "envelope: %s: %zu bytes, above %zu", w->path, n,
                              max);
        if (!utf8_valid((const unsigned char *)s, n))
            return dp_err_set(DP_ERR_PROTOCOL, "envelope: %s: not valid UTF-8", w->path);
        return DP_OK;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = p;
        if (b->len > DP_WIRE_MAX_STRING)
            return dp_err_set(DP_ERR_PROTOCOL, "envelope: %s: %zu bytes, above %u", w->path, b->len,
                              DP_WIRE_MAX_STRING);
        return DP_OK;
    }
    case PROTOBUF_C_TYPE_ENUM: {
        int v = *(const int *)p;
        if (!protobuf_c_enum_descriptor_get_value(f->descriptor, v))
            return dp_err_set(DP_ERR_PROTOCOL, "envelope: %s: unknown %s value %d", w->path,
                              ((const ProtobufCEnumDescriptor *)f->descriptor)->short_name, v);
        return DP_OK;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(ProtobufCMessage *const *)p;
        return sub ? walk_msg(sub, w, depth + 1) : DP_OK;
    }
    default:
        return DP_OK;
    }
}

static size_t elem_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_ENUM:
        return sizeof(int);
    default:
        return 0; /* numbers: nothing to check */
    }
}

static dp_err_t walk_msg(const ProtobufCMessage *m, struct walk *w, int depth)
{
    if (depth > MAX_DEPTH)
        return dp_err_set(DP_ERR_PROTOCOL, "envelope: %s: nested deeper than %d", w->path,
                          MAX_DEPTH);
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const char *base = (const char *)m;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        dp_err_t err = DP_OK;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            if (n > DP_WIRE_MAX_REPEATED) {
                size_t save = path_push(w, f->name, 0, 0);
                err = dp_err_set(DP_ERR_PROTOCOL, "envelope: %s: %zu entries, above %u", w->path, n,
                                 DP_WIRE_MAX_REPEATED);
                path_pop(w, save);
                return err;
            }
            size_t es = elem_size(f->type);
            const char *arr = *(const char *const *)(base + f->offset);
            for (size_t k = 0; es && arr && k < n && !err; k++) {
                size_t save = path_push(w, f->name, k, 1);
                err = walk_value(f, arr + k * es, w, depth);
                path_pop(w, save);
            }
        } else {
            if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
                *(const uint32_t *)(base + f->quantifier_offset) != f->id)
                continue;
            if (f->label == PROTOBUF_C_LABEL_OPTIONAL && elem_size(f->type) != sizeof(void *) &&
                !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
                !*(const protobuf_c_boolean *)(base + f->quantifier_offset))
                continue; /* proto2 optional scalar, absent */
            size_t save = path_push(w, f->name, 0, 0);
            err = walk_value(f, base + f->offset, w, depth);
            path_pop(w, save);
        }
        if (err) return err;
    }
    return DP_OK;
}

/* ---- per body ---- */

static dp_err_t need_id(const char *s, const char *where, const char *field)
{
    if (!s || !*s) return dp_err_set(DP_ERR_PROTOCOL, "%s.%s is empty", where, field);
    size_t n = strlen(s);
    if (n > DP_WIRE_MAX_ID)
        return dp_err_set(DP_ERR_PROTOCOL, "%s.%s: %zu bytes, above %u", where, field, n,
                          DP_WIRE_MAX_ID);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return dp_err_set(DP_ERR_PROTOCOL, "%s.%s has a control character", where, field);
    return DP_OK;
}

static dp_err_t need_attempt(uint32_t attempt, const char *where)
{
    if (attempt == 0) return dp_err_set(DP_ERR_PROTOCOL, "%s.attempt is 0", where);
    return DP_OK;
}

static dp_err_t need(const void *p, const char *where, const char *field)
{
    if (!p) return dp_err_set(DP_ERR_PROTOCOL, "%s.%s is missing", where, field);
    return DP_OK;
}

dp_err_t dp_wire_validate_task(const Dp__V1__Task *t, const char *what)
{
    dp_err_t err;
    if (!t) return dp_err_set(DP_ERR_PROTOCOL, "%s is missing", what);
    if ((err = need_id(t->id, what, "id")) || (err = need_id(t->campaign, what, "campaign")))
        return err;
    if (t->kind == DP__V1__TASK_KIND__TASK_KIND_UNSPECIFIED ||
        !protobuf_c_enum_descriptor_get_value(&dp__v1__task_kind__descriptor, t->kind))
        return dp_err_set(DP_ERR_PROTOCOL, "%s.kind %d is not a task kind", what, (int)t->kind);
    if (!isfinite(t->eps) || t->eps < 0)
        return dp_err_set(DP_ERR_PROTOCOL, "%s.eps %g is not a finite value >= 0", what,
                          (double)t->eps);
    if (t->shard_begin > t->shard_end)
        return dp_err_set(DP_ERR_PROTOCOL, "%s: shard_begin %u after shard_end %u", what,
                          t->shard_begin, t->shard_end);
    if (t->kind == DP__V1__TASK_KIND__TASK_KIND_MEASURE &&
        (err = need_id(t->device_class, what, "device_class")))
        return err;
    for (size_t i = 0; i < t->n_input_keys; i++)
        if (!t->input_keys[i] || !*t->input_keys[i])
            return dp_err_set(DP_ERR_PROTOCOL, "%s.input_keys[%zu] is empty", what, i);
    for (size_t i = 0; i < t->n_depends_on; i++)
        if ((err = need_id(t->depends_on[i], what, "depends_on"))) return err;
    return DP_OK;
}

static dp_err_t check_hello(const Dp__V1__Hello *h)
{
    const char *w = "envelope: hello";
    dp_err_t err = need_id(h->worker_id, w, "worker_id");
    if (err) return err;
    switch (h->role) {
    case DP__V1__ROLE__ROLE_MEASURER:
        if ((err = need_id(h->device_class, w, "device_class"))) return err;
        /* fall through */
    case DP__V1__ROLE__ROLE_TRAINER:
        if (h->capacity < 1 || h->capacity > DP_WIRE_MAX_CAPACITY)
            return dp_err_set(DP_ERR_PROTOCOL, "%s.capacity %u is not in 1..%u", w, h->capacity,
                              DP_WIRE_MAX_CAPACITY);
        break;
    case DP__V1__ROLE__ROLE_SUBMITTER:
        break;
    default:
        return dp_err_set(DP_ERR_PROTOCOL, "%s.role is unspecified", w);
    }
    if (h->protocol_max && h->protocol_min > h->protocol_max)
        return dp_err_set(DP_ERR_PROTOCOL, "%s: protocol_min %u above protocol_max %u", w,
                          h->protocol_min, h->protocol_max);
    for (size_t i = 0; i < h->n_kinds; i++)
        if (h->kinds[i] == DP__V1__TASK_KIND__TASK_KIND_UNSPECIFIED)
            return dp_err_set(DP_ERR_PROTOCOL, "%s.kinds[%zu] is unspecified", w, i);
    return DP_OK;
}

static dp_err_t check_result(const Dp__V1__Result *r)
{
    const char *w = "envelope: result";
    dp_err_t err;
    if ((err = need_id(r->task_id, w, "task_id")) || (err = need_attempt(r->attempt, w)) ||
        (err = need(r->result, w, "result")))
        return err;
    if (!isfinite(r->result->seconds) || r->result->seconds < 0)
        return dp_err_set(DP_ERR_PROTOCOL, "%s.result.seconds %g is not a finite value >= 0", w,
                          r->result->seconds);
    for (size_t i = 0; i < r->result->n_artifact_keys; i++)
        if (!r->result->artifact_keys[i] || !*r->result->artifact_keys[i])
            return dp_err_set(DP_ERR_PROTOCOL, "%s.result.artifact_keys[%zu] is empty", w, i);
    for (size_t i = 0; i < r->result->n_summary; i++)
        if (!r->result->summary[i]->name || !*r->result->summary[i]->name)
            return dp_err_set(DP_ERR_PROTOCOL, "%s.result.summary[%zu].name is empty", w, i);
    return DP_OK;
}

static dp_err_t check_body(const Dp__V1__Envelope *e)
{
    dp_err_t err = DP_OK;
    switch (e->body_case) {
    case DP__V1__ENVELOPE__BODY_HELLO:
        return check_hello(e->hello);
    case DP__V1__ENVELOPE__BODY_WELCOME:
        if (!e->welcome->protocol_version || !e->welcome->heartbeat_ms || !e->welcome->liveness)
            return dp_err_set(DP_ERR_PROTOCOL,
                              "envelope: welcome needs protocol_version, heartbeat_ms and "
                              "liveness");
        return DP_OK;
    case DP__V1__ENVELOPE__BODY_READY:
    case DP__V1__ENVELOPE__BODY_STATUS_REQUEST:
    case DP__V1__ENVELOPE__BODY_DISCONNECT:
        return DP_OK;
    case DP__V1__ENVELOPE__BODY_ASSIGN:
        if ((err = dp_wire_validate_task(e->assign->task, "envelope: assign.task"))) return err;
        return need_attempt(e->assign->task->attempt, "envelope: assign.task");
    case DP__V1__ENVELOPE__BODY_HEARTBEAT:
        for (size_t i = 0; i < e->heartbeat->n_running && !err; i++)
            if (!(err = need_id(e->heartbeat->running[i]->task_id, "envelope: heartbeat.running",
                                "task_id")))
                err =
                    need_attempt(e->heartbeat->running[i]->attempt, "envelope: heartbeat.running");
        return err;
    case DP__V1__ENVELOPE__BODY_PROGRESS:
        if ((err = need_id(e->progress->task_id, "envelope: progress", "task_id")) ||
            (err = need_attempt(e->progress->attempt, "envelope: progress")))
            return err;
        if (e->progress->total && e->progress->done > e->progress->total)
            return dp_err_set(DP_ERR_PROTOCOL, "envelope: progress: done %llu above total %llu",
                              (unsigned long long)e->progress->done,
                              (unsigned long long)e->progress->total);
        return DP_OK;
    case DP__V1__ENVELOPE__BODY_RESULT:
        return check_result(e->result);
    case DP__V1__ENVELOPE__BODY_FAILURE:
        if ((err = need_id(e->failure->task_id, "envelope: failure", "task_id")) ||
            (err = need_attempt(e->failure->attempt, "envelope: failure")))
            return err;
        if (!e->failure->reason || !*e->failure->reason)
            return dp_err_set(DP_ERR_PROTOCOL, "envelope: failure.reason is empty");
        return DP_OK;
    case DP__V1__ENVELOPE__BODY_SUBMIT:
        return need(e->submit->campaign, "envelope: submit", "campaign");
    case DP__V1__ENVELOPE__BODY_SUBMIT_REPLY:
        return need_id(e->submit_reply->campaign_id, "envelope: submit_reply", "campaign_id");
    case DP__V1__ENVELOPE__BODY_STATUS_REPLY:
        for (size_t i = 0; i < e->status_reply->n_campaigns && !err; i++)
            err = need_id(e->status_reply->campaigns[i]->campaign_id,
                          "envelope: status_reply.campaigns", "campaign_id");
        for (size_t i = 0; i < e->status_reply->n_workers && !err; i++)
            err = need_id(e->status_reply->workers[i]->worker_id, "envelope: status_reply.workers",
                          "worker_id");
        return err;
    case DP__V1__ENVELOPE__BODY_CANCEL:
        return need_id(e->cancel->campaign_id, "envelope: cancel", "campaign_id");
    case DP__V1__ENVELOPE__BODY_CANCEL_REPLY:
        return need_id(e->cancel_reply->campaign_id, "envelope: cancel_reply", "campaign_id");
    case DP__V1__ENVELOPE__BODY_ACK:
        if ((err = need_id(e->ack->task_id, "envelope: ack", "task_id"))) return err;
        return need_attempt(e->ack->attempt, "envelope: ack");
    case DP__V1__ENVELOPE__BODY_ERROR:
        if (e->error->code == DP__V1__ERROR_CODE__ERROR_CODE_UNSPECIFIED)
            return dp_err_set(DP_ERR_PROTOCOL, "envelope: error.code is unspecified");
        return DP_OK;
    default:
        return dp_err_set(DP_ERR_PROTOCOL, "envelope: no body, or one this version does not know");
    }
}

dp_err_t dp_wire_validate(const Dp__V1__Envelope *env)
{
    if (!env) return dp_err_set(DP_ERR_INVALID, "envelope: none");
    if (env->version < 1 || env->version > DP_WIRE_VERSION)
        return dp_err_set(DP_ERR_UNSUPPORTED,
                          "envelope: protocol version %u (this build speaks 1..%u)", env->version,
                          DP_WIRE_VERSION);
    struct walk w = {.len = 0};
    dp_err_t err = walk_msg(&env->base, &w, 0);
    if (err) return err;
    return check_body(env);
}

dp_err_t dp_wire_decode(const uint8_t *buf, size_t len, size_t max, Dp__V1__Envelope **out)
{
    if (!out) return dp_err_set(DP_ERR_INVALID, "envelope: no output");
    *out = NULL;
    if (!max) max = DP_WIRE_MAX_MESSAGE;
    if (len > max)
        return dp_err_set(DP_ERR_RANGE, "envelope: %zu bytes, above the %zu-byte limit", len, max);
    if (!buf && len) return dp_err_set(DP_ERR_INVALID, "envelope: no bytes");
    Dp__V1__Envelope *e = dp__v1__envelope__unpack(NULL, len, buf);
    if (!e) return dp_err_set(DP_ERR_PROTOCOL, "envelope: %zu bytes that are no Envelope", len);
    dp_err_t err = dp_wire_validate(e);
    if (err) {
        dp__v1__envelope__free_unpacked(e, NULL);
        return err;
    }
    *out = e;
    return DP_OK;
}

void dp_wire_free(Dp__V1__Envelope **env)
{
    if (!env || !*env) return;
    dp__v1__envelope__free_unpacked(*env, NULL);
    *env = NULL;
}

const char *dp_wire_body_name(const Dp__V1__Envelope *env)
{
    if (!env) return "none";
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(&dp__v1__envelope__descriptor, env->body_case);
    return f && (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) ? f->name : "none";
}
