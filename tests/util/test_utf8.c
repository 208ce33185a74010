/* core/util/utf8: validity as the safetensors reader has it, and copies cut
 * on character boundaries (issue 18: a 64-byte snprintf cut a model name
 * inside a character). */
#include <criterion/criterion.h>
#include <string.h>

#include "util/utf8.h"

Test(utf8, char_len_and_valid)
{
    static const struct {
        const char *s;
        size_t len; /* of the first character, 0 if invalid */
    } c[] = {
        {"a", 1},
        {"\xc3\xa9", 2},         /* U+00E9 */
        {"\xe2\x82\xac", 3},     /* U+20AC */
        {"\xf0\x9f\x98\x80", 4}, /* U+1F600 */
        {"\x80", 0},             /* a continuation byte */
        {"\xc0\xaf", 0},         /* overlong '/' */
        {"\xe0\x80\xaf", 0},     /* overlong */
        {"\xed\xa0\x80", 0},     /* a surrogate */
        {"\xf4\x90\x80\x80", 0}, /* past U+10FFFF */
        {"\xf8\x88\x80\x80", 0}, /* 5-byte form */
        {"\xe2\x82", 0},         /* cut */
        {"\xe2\x28\xac", 0},     /* not a continuation */
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        size_t n = strlen(c[i].s);
        cr_assert_eq(dp_utf8_char_len(c[i].s, n), c[i].len, "case %zu", i);
        cr_assert_eq(dp_utf8_valid(c[i].s, n), c[i].len == n, "case %zu", i);
    }
    cr_assert_eq(dp_utf8_char_len("\xe2\x82\xac", 2), 0, "n bounds the read");
    cr_assert_eq(dp_utf8_char_len("", 0), 0);
    cr_assert(dp_utf8_valid("", 0));
}

Test(utf8, copy_cuts_on_character_boundaries)
{
    char name[80], out[64];
    memset(name, 'a', 62);
    strcpy(name + 62, "\xe2\x82\xac"); /* 65 bytes: the 64-byte snprintf cut inside the euro */
    cr_assert_eq(dp_utf8_copy(out, sizeof out, name), 0);
    cr_assert_eq(strlen(out), 62);
    cr_assert(dp_utf8_valid(out, strlen(out)));
    cr_assert_eq(dp_utf8_copy(out, sizeof out, name + 2), 1, "63 bytes fit whole");
    cr_assert_str_eq(out, name + 2);
    /* a byte that starts no character becomes '?'; the rest is kept */
    cr_assert_eq(dp_utf8_copy(out, sizeof out,
                              "a\xff"
                              "b\xe2\x82"),
                 0);
    cr_assert_str_eq(out, "a?b??");
    /* the smallest buffers */
    cr_assert_eq(dp_utf8_copy(out, 1, "x"), 0);
    cr_assert_str_eq(out, "");
    cr_assert_eq(dp_utf8_copy(out, 1, ""), 1);
    cr_assert_eq(dp_utf8_copy(out, 3, "\xe2\x82\xac"), 0);
    cr_assert_str_eq(out, "", "no room for the whole character");
    cr_assert_eq(dp_utf8_copy(out, 4, "\xe2\x82\xac"), 1);
    cr_assert_str_eq(out, "\xe2\x82\xac");
}
