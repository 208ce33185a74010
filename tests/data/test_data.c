/* core/data IDX reader: the real Fashion-MNIST files, synthetic round trips
 * (raw, gzip, file and memory) and one test per malformed-header case, each
 * checking the error code and that the detail names the file and the field. */
#include "data_test.h"

#define FMNIST "/usr/share/datasets/fashion-mnist/"

/* Builds an IDX file image: big-endian magic and dims, then data. */
static size_t idx_make(uint8_t *out, uint32_t magic, const uint32_t *dims, int rank,
                       const uint8_t *data, size_t ndata)
{
    size_t k = 0;
    uint32_t words[5] = {magic};
    for (int i = 0; i < rank; i++) words[1 + i] = dims[i];
    for (int i = 0; i <= rank; i++)
        for (int b = 3; b >= 0; b--) out[k++] = (uint8_t)(words[i] >> (8 * b));
    if (ndata) memcpy(out + k, data, ndata);
    return k + ndata;
}

enum { N = 5, H = 3, W = 4 };
static uint8_t pix[N * H * W], lab[N];
static uint8_t img_file[16 + N * H * W + 16], lbl_file[8 + N + 16];
static size_t img_len, lbl_len;

/* The good synthetic pair: 5 images of 3x4 with 0 and 255 among the pixels. */
static void synth(void)
{
    scratch_setup();
    for (int i = 0; i < N * H * W; i++) pix[i] = (uint8_t)(i * 37 + 11);
    pix[0] = 0;
    pix[1] = 255;
    for (int i = 0; i < N; i++) lab[i] = (uint8_t)(9 - 2 * i);
    img_len = idx_make(img_file, 0x803, (uint32_t[]){N, H, W}, 3, pix, sizeof pix);
    lbl_len = idx_make(lbl_file, 0x801, (uint32_t[]){N}, 1, lab, sizeof lab);
}

TestSuite(idx, .init = synth, .fini = scratch_teardown);

static void check_synth(const dp_dataset_t *d)
{
    cr_assert_not_null(d);
    cr_assert_eq(d->n, N);
    cr_assert_eq(d->c, 1);
    cr_assert_eq(d->h, H);
    cr_assert_eq(d->w, W);
    cr_assert_eq(d->num_classes, 10);
    for (int i = 0; i < N * H * W; i++)
        cr_assert_eq(d->images[i], (float)pix[i] / 255.0f, "pixel %d", i);
    cr_assert_eq(d->images[0], 0.0f);
    cr_assert_eq(d->images[1], 1.0f);
    for (int i = 0; i < N; i++) cr_assert_eq(d->labels[i], lab[i]);
}

static void load_real(const char *split, uint32_t n, int first_labels[3], int per_class)
{
    char ip[256], lp[256];
    snprintf(ip, sizeof ip, FMNIST "%s-images-idx3-ubyte.gz", split);
    snprintf(lp, sizeof lp, FMNIST "%s-labels-idx1-ubyte.gz", split);
    dp_dataset_t *d = NULL;
    dp_err_t e = dp_dataset_load_idx(ip, lp, &d);
    cr_assert_eq(e, DP_OK, "%s", dp_err_detail());
    cr_assert_eq(d->n, n);
    cr_assert_eq(d->c, 1);
    cr_assert_eq(d->h, 28);
    cr_assert_eq(d->w, 28);
    cr_assert_eq(d->num_classes, 10);
    int count[10] = {0};
    for (uint32_t i = 0; i < d->n; i++) {
        cr_assert(d->labels[i] >= 0 && d->labels[i] < 10);
        count[d->labels[i]]++;
    }
    for (int k = 0; k < 10; k++) cr_assert_eq(count[k], per_class, "class %d", k);
    for (int i = 0; i < 3; i++) cr_assert_eq(d->labels[i], first_labels[i]);
    float lo = 1, hi = 0;
    for (size_t i = 0; i < (size_t)d->n * 784; i++) {
        lo = d->images[i] < lo ? d->images[i] : lo;
        hi = d->images[i] > hi ? d->images[i] : hi;
    }
    cr_assert_eq(lo, 0.0f);
    cr_assert_eq(hi, 1.0f);
    dp_dataset_destroy(&d);
    cr_assert_null(d);
}

Test(idx, fashion_mnist_train, .timeout = 60)
{
    load_real("train", 60000, (int[]){9, 0, 0}, 6000);
    /* spot values of the first image, read with Python's gzip module */
    dp_dataset_t *d = NULL;
    cr_assert_eq(dp_dataset_load_idx(FMNIST "train-images-idx3-ubyte.gz",
                                     FMNIST "train-labels-idx1-ubyte.gz", &d),
                 DP_OK);
    double sum = 0;
    for (int i = 0; i < 784; i++) sum += d->images[i];
    cr_assert_float_eq(sum, 76247.0 / 255.0, 1e-3);
    cr_assert_eq(d->images[417], 1.0f);
    cr_assert_eq(d->images[14 * 28 + 14], 217.0f / 255.0f);
    dp_dataset_destroy(&d);
}

Test(idx, fashion_mnist_test, .timeout = 60) { load_real("t10k", 10000, (int[]){9, 2, 1}, 1000); }

Test(idx, roundtrip_raw_and_gzip_files)
{
    for (int gz = 0; gz < 2; gz++) {
        const char *ip = scratch_write(gz ? "i.gz" : "i", img_file, img_len, gz);
        const char *lp = scratch_write(gz ? "l.gz" : "l", lbl_file, lbl_len, gz);
        dp_dataset_t *d = NULL;
        cr_assert_eq(dp_dataset_load_idx(ip, lp, &d), DP_OK, "%s", dp_err_detail());
        check_synth(d);
        dp_dataset_destroy(&d);
    }
}

Test(idx, roundtrip_memory_raw_and_gzip)
{
    size_t gil, gll;
    uint8_t *gi = gzip_mem(img_file, img_len, &gil), *gl = gzip_mem(lbl_file, lbl_len, &gll);
    dp_dataset_t *d = NULL;
    cr_assert_eq(dp_dataset_decode_idx(img_file, img_len, lbl_file, lbl_len, "m", &d), DP_OK);
    check_synth(d);
    dp_dataset_destroy(&d);
    cr_assert_eq(dp_dataset_decode_idx(gi, gil, gl, gll, "m", &d), DP_OK, "%s", dp_err_detail());
    check_synth(d);
    dp_dataset_destroy(&d);
    cr_assert_eq(dp_dataset_decode_idx(gi, gil, lbl_file, lbl_len, NULL, &d), DP_OK);
    check_synth(d);
    dp_dataset_destroy(&d);
    dp_dataset_destroy(&d); /* twice, and NULL: both fine */
    dp_dataset_destroy(NULL);
    free(gi);
    free(gl);
}

/* Loads img/lbl bytes through a file (raw, then gzip) and through memory
 * (raw, then gzip) and asserts the same error each time. */
static void expect_err(const uint8_t *ib, size_t il, const uint8_t *lb, size_t ll, dp_err_t code,
                       int bad_is_labels, const char *field)
{
    for (int gz = 0; gz < 2; gz++) {
        const char *ip = scratch_write(gz ? "img.gz" : "img", ib, il, gz);
        const char *lp = scratch_write(gz ? "lbl.gz" : "lbl", lb, ll, gz);
        dp_dataset_t *d = NULL;
        ASSERT_ERR(dp_dataset_load_idx(ip, lp, &d), code, bad_is_labels ? lp : ip, field);
        cr_assert_null(d);

        size_t gil = il, gll = ll;
        uint8_t *gi = gz ? gzip_mem(ib, il, &gil) : NULL, *gl = gz ? gzip_mem(lb, ll, &gll) : NULL;
        ASSERT_ERR(dp_dataset_decode_idx(gz ? gi : ib, gil, gz ? gl : lb, gll, "obj/x", &d), code,
                   bad_is_labels ? "obj/x:labels" : "obj/x:images", field);
        cr_assert_null(d);
        free(gi);
        free(gl);
    }
}

Test(idx, truncated_header)
{
    expect_err(img_file, 2, lbl_file, lbl_len, DP_ERR_TRUNCATED, 0, "magic");
    expect_err(img_file, 0, lbl_file, lbl_len, DP_ERR_TRUNCATED, 0, "got 0");
    expect_err(img_file, 10, lbl_file, lbl_len, DP_ERR_TRUNCATED, 0, "dims");
    expect_err(img_file, img_len, lbl_file, 7, DP_ERR_TRUNCATED, 1, "expected 8 bytes, got 7");
}

Test(idx, truncated_body)
{
    expect_err(img_file, img_len - 7, lbl_file, lbl_len, DP_ERR_TRUNCATED, 0,
               "body: truncated, expected 76 bytes, got 69");
    expect_err(img_file, img_len, lbl_file, lbl_len - 1, DP_ERR_TRUNCATED, 1,
               "expected 13 bytes, got 12");
}

Test(idx, wrong_magic_and_dtype)
{
    uint8_t bad[sizeof img_file];
    memcpy(bad, img_file, img_len);
    bad[0] = 0x12;
    expect_err(bad, img_len, lbl_file, lbl_len, DP_ERR_FORMAT, 0, "magic: 0x12000803");
    memcpy(bad, img_file, img_len);
    bad[2] = 0x0D; /* f32 is IDX, just not ours */
    expect_err(bad, img_len, lbl_file, lbl_len, DP_ERR_UNSUPPORTED, 0, "dtype: f32");
    bad[2] = 0x07;
    expect_err(bad, img_len, lbl_file, lbl_len, DP_ERR_FORMAT, 0, "dtype: 0x07");
}

Test(idx, wrong_rank)
{
    /* images given where labels belong and the other way round */
    expect_err(lbl_file, lbl_len, lbl_file, lbl_len, DP_ERR_FORMAT, 0, "rank: 1");
    expect_err(img_file, img_len, img_file, img_len, DP_ERR_FORMAT, 1, "rank: 3");
    uint8_t r4[64];
    size_t n = idx_make(r4, 0x804, (uint32_t[]){1, 1, 2, 2}, 4, pix, 4);
    expect_err(r4, n, lbl_file, lbl_len, DP_ERR_FORMAT, 0, "expected 3");
}

Test(idx, header_lies_about_size)
{
    uint8_t more[sizeof img_file], fewer[sizeof lbl_file];
    idx_make(more, 0x803, (uint32_t[]){N, H + 1, W}, 3, NULL, 0);
    memcpy(more + 16, pix, sizeof pix);
    expect_err(more, img_len, lbl_file, lbl_len, DP_ERR_TRUNCATED, 0, "expected 96 bytes, got 76");
    /* both files declare 4 samples but hold 5 */
    idx_make(more, 0x803, (uint32_t[]){N - 1, H, W}, 3, NULL, 0);
    idx_make(fewer, 0x801, (uint32_t[]){N - 1}, 1, lab, sizeof lab);
    expect_err(more, img_len, fewer, lbl_len, DP_ERR_FORMAT, 0, "trailing");
}

Test(idx, trailing_bytes)
{
    uint8_t lbl2[sizeof lbl_file];
    memcpy(lbl2, lbl_file, lbl_len);
    lbl2[lbl_len] = 0;
    expect_err(img_file, img_len, lbl2, lbl_len + 1, DP_ERR_FORMAT, 1, "trailing");
}

Test(idx, absurd_dimensions)
{
    uint8_t h[32];
    size_t n = idx_make(h, 0x803, (uint32_t[]){0x7fffffff, 0x7fffffff, 0x7fffffff}, 3, NULL, 0);
    expect_err(h, n, lbl_file, lbl_len, DP_ERR_RANGE, 0, "dim[0] (count): 2147483647");
    n = idx_make(h, 0x803, (uint32_t[]){1u << 24, 1u << 24, 1u << 24}, 3, NULL, 0);
    expect_err(h, n, lbl_file, lbl_len, DP_ERR_RANGE, 0, "size");
    n = idx_make(h, 0x803, (uint32_t[]){N, 0, W}, 3, NULL, 0);
    expect_err(h, n, lbl_file, lbl_len, DP_ERR_FORMAT, 0, "dim[1] (rows): zero");
    n = idx_make(h, 0x801, (uint32_t[]){0xffffffff}, 1, NULL, 0);
    expect_err(img_file, img_len, h, n, DP_ERR_RANGE, 1, "dim[0]");
}

Test(idx, count_mismatch)
{
    uint8_t l4[sizeof lbl_file];
    size_t n = idx_make(l4, 0x801, (uint32_t[]){N - 1}, 1, lab, N - 1);
    expect_err(img_file, img_len, l4, n, DP_ERR_MISMATCH, 0, "count: 5 images");
    expect_err(img_file, img_len, l4, n, DP_ERR_MISMATCH, 1, "count: 4 labels");
}

Test(idx, label_out_of_range)
{
    uint8_t l[sizeof lbl_file];
    memcpy(l, lbl_file, lbl_len);
    l[8 + 3] = 10;
    expect_err(img_file, img_len, l, lbl_len, DP_ERR_RANGE, 1, "label[3]: 10");
    l[8 + 3] = 255;
    expect_err(img_file, img_len, l, lbl_len, DP_ERR_RANGE, 1, "label[3]: 255");
}

Test(idx, missing_file)
{
    char missing[300];
    snprintf(missing, sizeof missing, "%s/no-such-images.gz", test_dir);
    const char *lp = scratch_write("l", lbl_file, lbl_len, 0);
    dp_dataset_t *d = (dp_dataset_t *)1;
    ASSERT_ERR(dp_dataset_load_idx(missing, lp, &d), DP_ERR_NOTFOUND, missing, "open");
    cr_assert_null(d);
    const char *ip = scratch_write("i", img_file, img_len, 0);
    ASSERT_ERR(dp_dataset_load_idx(ip, missing, &d), DP_ERR_NOTFOUND, missing, "open");
    ASSERT_ERR(dp_dataset_load_idx(test_dir, lp, &d), DP_ERR_IO, test_dir, "regular file");
    cr_assert_eq(dp_dataset_load_idx(NULL, lp, &d), DP_ERR_INVALID);
    cr_assert_eq(dp_dataset_decode_idx(NULL, 3, lbl_file, lbl_len, "x", &d), DP_ERR_INVALID);
}

Test(idx, gzip_damage_in_memory)
{
    size_t gil;
    uint8_t *gi = gzip_mem(img_file, img_len, &gil);
    dp_dataset_t *d = NULL;
    /* a stream cut inside the deflate data, and one cut inside its trailer */
    ASSERT_ERR(dp_dataset_decode_idx(gi, gil - 20, lbl_file, lbl_len, "g", &d), DP_ERR_TRUNCATED,
               "g:images", "body");
    ASSERT_ERR(dp_dataset_decode_idx(gi, gil - 2, lbl_file, lbl_len, "g", &d), DP_ERR_TRUNCATED,
               "g:images", "gzip");
    /* garbage after the member */
    uint8_t *g2 = malloc(gil + 3);
    memcpy(g2, gi, gil);
    memcpy(g2 + gil, "xyz", 3);
    ASSERT_ERR(dp_dataset_decode_idx(g2, gil + 3, lbl_file, lbl_len, "g", &d), DP_ERR_FORMAT,
               "g:images", "3 trailing bytes");
    /* a damaged CRC */
    memcpy(g2, gi, gil);
    g2[gil - 8] ^= 0xff;
    ASSERT_ERR(dp_dataset_decode_idx(g2, gil, lbl_file, lbl_len, "g", &d), DP_ERR_FORMAT,
               "g:images", "gzip");
    cr_assert_null(d);
    free(g2);
    free(gi);
}

Test(idx, gzip_bomb_stops_at_declared_size, .timeout = 20)
{
    /* 256 MiB of zeros behind a header declaring one 1x1 image: the decoder
     * must stop one byte past the declared body, not inflate it all */
    size_t big = 256u << 20;
    uint8_t *raw = calloc(1, big);
    idx_make(raw, 0x803, (uint32_t[]){1, 1, 1}, 3, NULL, 0);
    size_t gl;
    uint8_t *gz = gzip_mem(raw, big, &gl);
    free(raw);
    uint8_t l1[9];
    size_t ll = idx_make(l1, 0x801, (uint32_t[]){1}, 1, (uint8_t[]){0}, 1);
    dp_dataset_t *d = NULL;
    ASSERT_ERR(dp_dataset_decode_idx(gz, gl, l1, ll, "bomb", &d), DP_ERR_FORMAT, "bomb:images",
               "trailing");
    free(gz);
}

Test(idx, gzip_file_cut_short)
{
    size_t gil;
    uint8_t *gi = gzip_mem(img_file, img_len, &gil);
    const char *lp = scratch_write("l", lbl_file, lbl_len, 0);
    dp_dataset_t *d = NULL;
    /* cut inside the deflate data, then inside the 8-byte trailer */
    const char *ip = scratch_write("i", gi, gil - 20, 0);
    ASSERT_ERR(dp_dataset_load_idx(ip, lp, &d), DP_ERR_TRUNCATED, ip, "body");
    ip = scratch_write("i", gi, gil - 3, 0);
    ASSERT_ERR(dp_dataset_load_idx(ip, lp, &d), DP_ERR_TRUNCATED, ip, "gzip");
    /* a damaged deflate block */
    memcpy(gi + 12, "\xff\xff\xff\xff", 4);
    ip = scratch_write("i", gi, gil, 0);
    dp_err_t e = dp_dataset_load_idx(ip, lp, &d);
    cr_assert(e == DP_ERR_FORMAT || e == DP_ERR_TRUNCATED, "%s", dp_err_detail());
    cr_assert(strstr(dp_err_detail(), ip));
    cr_assert_null(d);
    free(gi);
}
