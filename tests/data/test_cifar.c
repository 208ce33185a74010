/* core/data CIFAR-10/100 reader: synthetic batches from files and memory,
 * concatenation of several batches, and the malformed cases. */
#include "data_test.h"

enum { REC10 = 1 + 3072, REC100 = 2 + 3072 };

TestSuite(cifar, .init = scratch_setup, .fini = scratch_teardown);

/* n records; record r has label(s) derived from r and pixels (r + k) % 256. */
static uint8_t *cifar_make(int n, int cifar100, int label0)
{
    size_t rec = cifar100 ? REC100 : REC10;
    uint8_t *b = malloc(n * rec);
    for (int r = 0; r < n; r++) {
        uint8_t *p = b + r * rec;
        if (cifar100) *p++ = (uint8_t)((label0 + r) % 20);
        *p++ = (uint8_t)((label0 + r) % (cifar100 ? 100 : 10));
        for (int k = 0; k < 3072; k++) p[k] = (uint8_t)(r + k);
    }
    return b;
}

static void check_record(const dp_dataset_t *d, uint32_t i, int r, int label)
{
    cr_assert_eq(d->labels[i], label, "sample %u", i);
    const float *px = d->images + (size_t)i * 3072;
    for (int k = 0; k < 3072; k++) cr_assert_eq(px[k], (float)(uint8_t)(r + k) / 255.0f);
    /* CHW: green plane starts 1024 floats in */
    cr_assert_eq(px[1024], (float)(uint8_t)(r + 1024) / 255.0f);
}

Test(cifar, cifar10_two_batches)
{
    uint8_t *a = cifar_make(3, 0, 0), *b = cifar_make(4, 0, 7);
    const char *paths[2];
    paths[0] = scratch_write("data_batch_1.bin", a, 3 * REC10, 0);
    paths[1] = scratch_write("data_batch_2.bin", b, 4 * REC10, 0);
    dp_dataset_t *d = NULL;
    cr_assert_eq(dp_dataset_load_cifar(paths, 2, 0, &d), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(d->n, 7);
    cr_assert_eq(d->c, 3);
    cr_assert_eq(d->h, 32);
    cr_assert_eq(d->w, 32);
    cr_assert_eq(d->num_classes, 10);
    for (int r = 0; r < 3; r++) check_record(d, r, r, r);
    for (int r = 0; r < 4; r++) check_record(d, 3 + r, r, (7 + r) % 10);
    dp_dataset_destroy(&d);
    cr_assert_eq(dp_dataset_decode_cifar(b, 4 * REC10, 0, "mem", &d), DP_OK);
    cr_assert_eq(d->n, 4);
    check_record(d, 1, 1, 8);
    dp_dataset_destroy(&d);
    free(a);
    free(b);
}

Test(cifar, cifar100_fine_labels)
{
    uint8_t *a = cifar_make(5, 1, 17);
    const char *p = scratch_write("train.bin", a, 5 * REC100, 0);
    dp_dataset_t *d = NULL;
    cr_assert_eq(dp_dataset_load_cifar(&p, 1, 1, &d), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(d->n, 5);
    cr_assert_eq(d->num_classes, 100);
    for (int r = 0; r < 5; r++) check_record(d, r, r, 17 + r);
    dp_dataset_destroy(&d);
    free(a);
}

/* The same bytes through a file and through memory give the same error. */
static void expect_err(const uint8_t *b, size_t len, int cifar100, dp_err_t code, const char *field)
{
    const char *p = scratch_write("batch.bin", b, len, 0);
    dp_dataset_t *d = NULL;
    ASSERT_ERR(dp_dataset_load_cifar(&p, 1, cifar100, &d), code, p, field);
    cr_assert_null(d);
    ASSERT_ERR(dp_dataset_decode_cifar(b, len, cifar100, "obj/b", &d), code, "obj/b", field);
    cr_assert_null(d);
}

Test(cifar, wrong_size)
{
    uint8_t *a = cifar_make(3, 0, 0);
    expect_err(a, 0, 0, DP_ERR_FORMAT, "size: empty");
    expect_err(a, 2 * REC10 + 5, 0, DP_ERR_FORMAT, "size: 6151 bytes");
    expect_err(a, REC10 - 1, 0, DP_ERR_FORMAT, "3073-byte CIFAR-10 record");
    /* CIFAR-10 bytes read as CIFAR-100 */
    expect_err(a, 3 * REC10, 1, DP_ERR_FORMAT, "3074-byte CIFAR-100 record");
    free(a);
}

Test(cifar, bad_labels)
{
    uint8_t *a = cifar_make(3, 0, 0);
    a[1 * REC10] = 10;
    expect_err(a, 3 * REC10, 0, DP_ERR_RANGE, "label[record 1]: 10");
    free(a);
    uint8_t *b = cifar_make(3, 1, 0);
    b[2 * REC100] = 20;
    expect_err(b, 3 * REC100, 1, DP_ERR_RANGE, "coarse label[record 2]: 20");
    b[2 * REC100] = 0;
    b[2 * REC100 + 1] = 100;
    expect_err(b, 3 * REC100, 1, DP_ERR_RANGE, "fine label[record 2]: 100");
    free(b);
}

Test(cifar, bad_label_in_a_later_file_block)
{
    /* record 1500 lies in the second read block of the file */
    uint8_t *a = cifar_make(1600, 0, 0);
    a[(size_t)1500 * REC10] = 200;
    expect_err(a, (size_t)1600 * REC10, 0, DP_ERR_RANGE, "label[record 1500]: 200");
    free(a);
}

Test(cifar, missing_file_and_bad_args)
{
    uint8_t *a = cifar_make(1, 0, 0);
    char missing[300];
    snprintf(missing, sizeof missing, "%s/data_batch_9.bin", test_dir);
    const char *paths[2] = {scratch_write("ok.bin", a, REC10, 0), missing};
    dp_dataset_t *d = NULL;
    ASSERT_ERR(dp_dataset_load_cifar(paths, 2, 0, &d), DP_ERR_NOTFOUND, missing, "open");
    cr_assert_null(d);
    cr_assert_eq(dp_dataset_load_cifar(paths, 0, 0, &d), DP_ERR_INVALID);
    cr_assert_eq(dp_dataset_load_cifar(NULL, 1, 0, &d), DP_ERR_INVALID);
    cr_assert_eq(dp_dataset_decode_cifar(NULL, 5, 0, "x", &d), DP_ERR_INVALID);
    free(a);
}
