/* libFuzzer target: the Campaign decoder (protobuf-c generated code).
 * Anything it accepts must re-encode to exactly get_packed_size() bytes, and
 * free cleanly. (No decode-again check: protobuf-c keeps unknown fields even
 * with the invalid field number 0, which it then cannot read back; the
 * campaign loader of dp-submit must reject those.) */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dp/v1/campaign.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Dp__V1__Campaign *c = dp__v1__campaign__unpack(NULL, size, data);
    if (!c) return 0;
    size_t n = dp__v1__campaign__get_packed_size(c);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) abort();
    if (dp__v1__campaign__pack(c, buf) != n) abort();
    free(buf);
    dp__v1__campaign__free_unpacked(c, NULL);
    return 0;
}
