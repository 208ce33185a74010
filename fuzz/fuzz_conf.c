/* libFuzzer target for settings files (core/util/conf): any bytes are
 * refused or give settings whose names are of [a-z0-9-], whose values hold
 * no control character but tab, and whose names are all different. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "util/conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dp_conf_t *c = NULL;
    const dp_err_t e = dp_conf_parse((const char *)data, size, "fuzz.conf", &c);
    if (e != DP_OK) {
        if (c) __builtin_trap(); /* *out stays NULL on failure */
        return 0;
    }
    for (size_t i = 0; i < dp_conf_count(c); i++) {
        const char *n = dp_conf_name(c, i), *v = dp_conf_value(c, i);
        if (!*n || strncmp(dp_conf_where(c, i), "fuzz.conf:", 10)) __builtin_trap();
        for (const char *p = n; *p; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
                __builtin_trap();
        for (const char *p = v; *p; p++)
            if ((unsigned char)*p < 0x20 && *p != '\t') __builtin_trap();
        for (size_t j = 0; j < i; j++)
            if (!strcmp(dp_conf_name(c, j), n)) __builtin_trap();
    }
    dp_conf_destroy(&c);
    return 0;
}
