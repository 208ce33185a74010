/* UTF-8 text for names that travel into files and JSON: whole characters
 * only, so a name cut to fit a fixed buffer stays valid UTF-8 (a cut inside a
 * character made the safetensors writer refuse the name, and JSON output
 * invalid). Valid means what the safetensors reader accepts: no overlong
 * forms, no surrogates, nothing past U+10FFFF. */
#ifndef DP_UTIL_UTF8_H
#define DP_UTIL_UTF8_H

#include <stddef.h>

/* Bytes of the valid UTF-8 character at s (1 to 4; at most n are read), or
 * 0 when the bytes at s are not one (or n is 0). */
size_t dp_utf8_char_len(const char *s, size_t n);

/* 1 when the n bytes at s are valid UTF-8, else 0. */
int dp_utf8_valid(const char *s, size_t n);

/* Copies the string src into dst (cap >= 1 bytes, NUL included) as valid
 * UTF-8: whole characters while they fit, each byte that does not start a
 * valid character replaced by '?'. Returns 1 when dst holds src unchanged,
 * 0 when it was cut or a byte replaced. */
int dp_utf8_copy(char *dst, size_t cap, const char *src);

#endif
