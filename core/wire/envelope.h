/* Wire envelopes (proto/dp/v1/wire.proto): from bytes to a message that
 * means something. protobuf-c checks only the wire format; a decoded Envelope
 * may have no body, a string that is not UTF-8, an enum value nobody knows,
 * a Result with no task id or a million-entry list. dp_wire_validate says
 * whether the coordinator, a worker or dp-submit may act on it; its errors
 * name the field ("envelope: assign.task.attempt is 0").
 *
 * What it checks:
 * - the version: 1..DP_WIRE_VERSION (DP_ERR_UNSUPPORTED otherwise);
 * - a body this version knows (a newer peer's body decodes to none);
 * - everywhere, nested messages included (a submitted Campaign too): strings
 *   valid UTF-8 of at most DP_WIRE_MAX_STRING bytes (summary_json
 *   DP_WIRE_MAX_JSON), bytes fields at most DP_WIRE_MAX_STRING, repeated
 *   fields at most DP_WIRE_MAX_REPEATED entries, enum values the schema
 *   names;
 * - per body, the fields it cannot do without: ids (1..DP_WIRE_MAX_ID bytes,
 *   no control characters), attempts >= 1, a known role/kind that is not
 *   UNSPECIFIED, progress done <= total, finite non-negative eps and
 *   seconds, shard begin <= end, a device class on measurers and MEASURE
 *   tasks, capacity 1..DP_WIRE_MAX_CAPACITY on workers.
 * Unknown fields are ignored (that is how the protocol grows). Whether a
 * submitted campaign can run is core/campaign's campaign_validate, not this. */
#ifndef DP_WIRE_ENVELOPE_H
#define DP_WIRE_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "dp/v1/wire.pb-c.h"
#include "util/err.h"

#define DP_WIRE_VERSION      1u          /* the protocol version this build speaks */
#define DP_WIRE_MAX_MESSAGE  (64u << 20) /* default limit of an encoded envelope */
#define DP_WIRE_MAX_STRING   (64u << 10)
#define DP_WIRE_MAX_JSON     (4u << 20) /* TaskResult.summary_json */
#define DP_WIRE_MAX_ID       511u       /* bytes of an id (task, campaign, worker) */
#define DP_WIRE_MAX_REPEATED (1u << 20)
#define DP_WIRE_MAX_CAPACITY 4096u

/* DP_OK when env may be acted on (the rules above), else DP_ERR_UNSUPPORTED
 * (the version: answer ERROR_CODE_VERSION) or DP_ERR_PROTOCOL (anything
 * else), with a detail "envelope: FIELD ...". env is borrowed. */
dp_err_t dp_wire_validate(const Dp__V1__Envelope *env);

/* The per-task part of the rules (attempt aside), for a Task from elsewhere
 * (a journal replay): DP_OK or DP_ERR_PROTOCOL with a detail starting with
 * what. t is borrowed. */
dp_err_t dp_wire_validate_task(const Dp__V1__Task *t, const char *what);

/* Unpacks len bytes of an Envelope and validates it. len above max (0:
 * DP_WIRE_MAX_MESSAGE) is DP_ERR_RANGE before anything is decoded; bytes
 * that are no Envelope are DP_ERR_PROTOCOL, then dp_wire_validate's errors. On success *out is a
 * new message, caller frees it with dp_wire_free; on failure *out is NULL. */
dp_err_t dp_wire_decode(const uint8_t *buf, size_t len, size_t max, Dp__V1__Envelope **out);

/* Frees an envelope from dp_wire_decode; accepts NULL and sets *env = NULL. */
void dp_wire_free(Dp__V1__Envelope **env);

/* The body's field name ("hello", "assign", ...), or "none"; static. */
const char *dp_wire_body_name(const Dp__V1__Envelope *env);

#endif
