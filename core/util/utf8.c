/* UTF-8 checks and character-boundary copies (utf8.h). */
#include "util/utf8.h"

#include <stdint.h>

size_t dp_utf8_char_len(const char *s, size_t n)
{
    if (!n) return 0;
    const unsigned char *b = (const unsigned char *)s;
    size_t len;
    uint32_t cp, min;
    if (b[0] < 0x80)
        return 1;
    else if ((b[0] & 0xe0) == 0xc0)
        len = 2, cp = b[0] & 0x1fu, min = 0x80;
    else if ((b[0] & 0xf0) == 0xe0)
        len = 3, cp = b[0] & 0x0fu, min = 0x800;
    else if ((b[0] & 0xf8) == 0xf0)
        len = 4, cp = b[0] & 0x07u, min = 0x10000;
    else
        return 0;
    if (n < len) return 0;
    for (size_t k = 1; k < len; k++) {
        if ((b[k] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (b[k] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

int dp_utf8_valid(const char *s, size_t n)
{
    for (size_t i = 0, k; i < n; i += k)
        if (!(k = dp_utf8_char_len(s + i, n - i))) return 0;
    return 1;
}

int dp_utf8_copy(char *dst, size_t cap, const char *src)
{
    size_t i = 0, o = 0;
    int same = 1;
    while (src[i]) {
        size_t rest = 0;
        while (rest < 4 && src[i + rest]) rest++; /* never read past the NUL */
        size_t k = dp_utf8_char_len(src + i, rest), out = k ? k : 1;
        if (o + out > cap - 1) {
            same = 0;
            break;
        }
        if (k) {
            for (size_t j = 0; j < k; j++) dst[o + j] = src[i + j];
        } else {
            dst[o] = '?';
            same = 0;
        }
        o += out, i += out;
    }
    dst[o] = '\0';
    return same;
}
