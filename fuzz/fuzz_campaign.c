/* libFuzzer target: the Campaign decoder (protobuf-c generated code).
 * Anything it accepts must re-encode to a message that decodes again to the
 * same encoding. */
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
    Dp__V1__Campaign *again = dp__v1__campaign__unpack(NULL, n, buf);
    if (!again) abort();
    size_t n2 = dp__v1__campaign__get_packed_size(again);
    uint8_t *buf2 = malloc(n2 ? n2 : 1);
    if (!buf2) abort();
    dp__v1__campaign__pack(again, buf2);
    if (n2 != n || memcmp(buf, buf2, n) != 0) abort();
    free(buf2);
    free(buf);
    dp__v1__campaign__free_unpacked(again, NULL);
    dp__v1__campaign__free_unpacked(c, NULL);
    return 0;
}
