/* Helpers shared by the core/data tests: a scratch directory per test, files
 * written raw or gzip, and an assertion on error code plus detail. */
#ifndef DP_TESTS_DATA_TEST_H
#define DP_TESTS_DATA_TEST_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "data/dataset.h"

/* Asserts the error code and that the detail names the file and the field. */
#define ASSERT_ERR(e, code, file, field)                                                           \
    do {                                                                                           \
        dp_err_t e_ = (e);                                                                         \
        cr_assert_eq(e_, (code), "got %s (%s), want %s", dp_strerror(e_), dp_err_detail(),         \
                     dp_strerror(code));                                                           \
        cr_assert(strstr(dp_err_detail(), (file)), "detail '%s' does not name '%s'",               \
                  dp_err_detail(), (file));                                                        \
        cr_assert(strstr(dp_err_detail(), (field)), "detail '%s' does not name field '%s'",        \
                  dp_err_detail(), (field));                                                       \
    } while (0)

static char test_dir[64];

static inline void scratch_setup(void)
{
    snprintf(test_dir, sizeof test_dir, "/tmp/dp_data_XXXXXX");
    cr_assert_not_null(mkdtemp(test_dir));
}

static inline void scratch_teardown(void)
{
    static const char *const names[] = {"i",
                                        "l",
                                        "i.gz",
                                        "l.gz",
                                        "img",
                                        "lbl",
                                        "img.gz",
                                        "lbl.gz",
                                        "batch.bin",
                                        "ok.bin",
                                        "train.bin",
                                        "data_batch_1.bin",
                                        "data_batch_2.bin"};
    char p[256];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", test_dir, names[i]);
        unlink(p);
    }
    if (test_dir[0]) cr_expect_eq(rmdir(test_dir), 0, "scratch dir %s left non-empty", test_dir);
}

/* Writes bytes to <scratch>/name (a name scratch_teardown knows), gzip-compressed if gz; returns a
 * static path. */
static inline const char *scratch_write(const char *name, const void *bytes, size_t len, int gz)
{
    static char paths[8][256];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, 256, "%s/%s", test_dir, name);
    if (gz) {
        gzFile f = gzopen(p, "wb");
        cr_assert_not_null(f);
        if (len) cr_assert_eq(gzwrite(f, bytes, (unsigned)len), (int)len);
        cr_assert_eq(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(p, "wb");
        cr_assert_not_null(f);
        if (len) cr_assert_eq(fwrite(bytes, 1, len, f), len);
        cr_assert_eq(fclose(f), 0);
    }
    return p;
}

/* One gzip member of bytes in a new buffer, caller frees. */
static inline uint8_t *gzip_mem(const void *bytes, size_t len, size_t *out_len)
{
    z_stream zs = {0};
    cr_assert_eq(deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&zs, len) + 64;
    uint8_t *out = malloc(cap);
    zs.next_in = (Bytef *)(uintptr_t)bytes;
    zs.avail_in = (uInt)len;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    cr_assert_eq(deflate(&zs, Z_FINISH), Z_STREAM_END);
    *out_len = zs.total_out;
    deflateEnd(&zs);
    return out;
}

#endif
