/* libFuzzer target: the wire envelope (core/wire/envelope) as the coordinator
 * meets it: any bytes from a socket through dp_wire_decode.
 *
 * Checks, beyond the sanitizers: dp_wire_decode accepts exactly what
 * protobuf-c unpacks and dp_wire_validate passes; validation is stable (a
 * second call answers the same); an accepted envelope re-encodes to exactly
 * get_packed_size() bytes and has a body name. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wire/envelope.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Dp__V1__Envelope *raw = dp__v1__envelope__unpack(NULL, size, data);
    Dp__V1__Envelope *env = NULL;
    dp_err_t err = dp_wire_decode(data, size, 0, &env);
    if (!raw) {
        if (err != DP_ERR_PROTOCOL || env) abort();
        return 0;
    }
    dp_err_t v = dp_wire_validate(raw);
    if (v != err || dp_wire_validate(raw) != v) abort();
    if (v != DP_OK && v != DP_ERR_PROTOCOL && v != DP_ERR_UNSUPPORTED) abort();
    if (!err) {
        if (!env || !strcmp(dp_wire_body_name(env), "none")) abort();
        size_t n = dp__v1__envelope__get_packed_size(env);
        uint8_t *buf = malloc(n ? n : 1);
        if (!buf) abort();
        if (dp__v1__envelope__pack(env, buf) != n) abort();
        free(buf);
    } else if (env) {
        abort();
    }
    dp_wire_free(&env);
    dp__v1__envelope__free_unpacked(raw, NULL);
    return 0;
}
