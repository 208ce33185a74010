/* core/data shards: splitting covers a range exactly once, views check their
 * range, gathering copies shuffled samples and refuses bad indices. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"

static void check_split(uint32_t begin, uint32_t end, uint32_t size)
{
    dp_shard_t *s = NULL;
    size_t k = 99;
    cr_assert_eq(dp_shard_split(begin, end, size, &s, &k), DP_OK, "%s", dp_err_detail());
    if (begin == end) {
        cr_assert_eq(k, 0);
        cr_assert_null(s);
        return;
    }
    cr_assert_eq(k, ((uint64_t)end - begin + size - 1) / size);
    uint32_t next = begin;
    for (size_t i = 0; i < k; i++) {
        cr_assert_eq(s[i].begin, next, "shard %zu of [%u,%u)/%u: gap or overlap", i, begin, end,
                     size);
        cr_assert(s[i].end > s[i].begin);
        cr_assert_eq(s[i].end - s[i].begin, i + 1 < k ? size : s[i].end - s[i].begin);
        cr_assert(s[i].end - s[i].begin <= size);
        next = s[i].end;
    }
    cr_assert_eq(next, end);
    free(s);
}

Test(shard, split_covers_range_without_overlap)
{
    for (uint32_t b = 0; b < 5; b++)
        for (uint32_t e = b; e < b + 40; e++)
            for (uint32_t sz = 1; sz < 45; sz++) check_split(b, e, sz);
    check_split(0, 60000, 128); /* 468 full shards and one of 96 */
    check_split(UINT32_MAX - 10, UINT32_MAX, 3);
    check_split(0, UINT32_MAX, UINT32_MAX);
    check_split(0, UINT32_MAX, 1u << 31);
}

Test(shard, split_edge_cases)
{
    dp_shard_t *s = NULL;
    size_t k = 0;
    cr_assert_eq(dp_shard_split(10, 20, 1000, &s, &k), DP_OK);
    cr_assert_eq(k, 1);
    cr_assert_eq(s[0].begin, 10);
    cr_assert_eq(s[0].end, 20);
    free(s);
    cr_assert_eq(dp_shard_split(0, 100, 7, &s, &k), DP_OK);
    cr_assert_eq(k, 15);
    cr_assert_eq(s[14].begin, 98);
    cr_assert_eq(s[14].end, 100);
    free(s);
    cr_assert_eq(dp_shard_split(5, 5, 3, &s, &k), DP_OK);
    cr_assert_eq(k, 0);
    cr_assert_null(s);
    cr_assert_eq(dp_shard_split(6, 5, 3, &s, &k), DP_ERR_INVALID);
    cr_assert(strstr(dp_err_detail(), "begin > end"));
    cr_assert_eq(dp_shard_split(0, 5, 0, &s, &k), DP_ERR_INVALID);
    cr_assert(strstr(dp_err_detail(), "size"));
    cr_assert_eq(dp_shard_split(0, 5, 1, NULL, &k), DP_ERR_INVALID);
}

static dp_dataset_t *small(void)
{
    dp_dataset_t *d = NULL;
    cr_assert_eq(dp_dataset_new(10, 2, 3, 1, 4, &d), DP_OK);
    for (size_t i = 0; i < 10 * dp_dataset_sample_size(d); i++) d->images[i] = (float)i;
    for (int i = 0; i < 10; i++) d->labels[i] = i % 4;
    return d;
}

Test(shard, views)
{
    dp_dataset_t *d = small();
    dp_dataset_view_t v;
    cr_assert_eq(dp_dataset_view(d, (dp_shard_t){3, 7}, &v), DP_OK);
    cr_assert_eq(v.begin, 3);
    cr_assert_eq(v.count, 4);
    cr_assert_eq(v.images, d->images + 18);
    cr_assert_eq(v.images[0], 18.0f);
    cr_assert_eq(v.labels, d->labels + 3);
    cr_assert_eq(dp_dataset_view(d, (dp_shard_t){0, 10}, &v), DP_OK);
    cr_assert_eq(v.count, 10);
    cr_assert_eq(dp_dataset_view(d, (dp_shard_t){10, 10}, &v), DP_OK);
    cr_assert_eq(v.count, 0);
    cr_assert_eq(dp_dataset_view(d, (dp_shard_t){5, 11}, &v), DP_ERR_RANGE);
    cr_assert(strstr(dp_err_detail(), "[5, 11)") && strstr(dp_err_detail(), "10 samples"));
    cr_assert_eq(dp_dataset_view(d, (dp_shard_t){7, 3}, &v), DP_ERR_RANGE);
    cr_assert_eq(dp_dataset_view(d, (dp_shard_t){UINT32_MAX, UINT32_MAX}, &v), DP_ERR_RANGE);
    dp_dataset_destroy(&d);
}

Test(shard, views_of_split_cover_dataset)
{
    dp_dataset_t *d = small();
    dp_shard_t *s;
    size_t k;
    cr_assert_eq(dp_shard_split(0, d->n, 3, &s, &k), DP_OK);
    uint32_t total = 0;
    for (size_t i = 0; i < k; i++) {
        dp_dataset_view_t v;
        cr_assert_eq(dp_dataset_view(d, s[i], &v), DP_OK);
        cr_assert_eq(v.labels[0], d->labels[total]);
        total += v.count;
    }
    cr_assert_eq(total, d->n);
    free(s);
    dp_dataset_destroy(&d);
}

Test(shard, gather)
{
    dp_dataset_t *d = small();
    uint32_t idx[4] = {9, 0, 4, 4};
    float img[4 * 6];
    int32_t lab[4];
    cr_assert_eq(dp_dataset_gather(d, idx, 4, img, lab), DP_OK);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(lab[i], d->labels[idx[i]]);
        for (int k = 0; k < 6; k++) cr_assert_eq(img[i * 6 + k], (float)(idx[i] * 6 + k));
    }
    cr_assert_eq(dp_dataset_gather(d, idx, 2, img, NULL), DP_OK);
    uint32_t bad[3] = {1, 10, 2};
    memset(img, 0, sizeof img);
    cr_assert_eq(dp_dataset_gather(d, bad, 3, img, lab), DP_ERR_RANGE);
    cr_assert(strstr(dp_err_detail(), "idx[1] = 10"));
    cr_assert_eq(img[0], 0.0f, "nothing written before the check");
    cr_assert_eq(dp_dataset_gather(d, NULL, 0, NULL, NULL), DP_OK);
    dp_dataset_destroy(&d);
}

Test(shard, dataset_new_checks)
{
    dp_dataset_t *d = (dp_dataset_t *)1;
    cr_assert_eq(dp_dataset_new(0, 1, 1, 1, 2, &d), DP_ERR_INVALID);
    cr_assert_null(d);
    cr_assert_eq(dp_dataset_new(1u << 24, 3, 1u << 24, 1u << 24, 2, &d), DP_ERR_RANGE);
    cr_assert_eq(dp_dataset_new(UINT32_MAX, UINT32_MAX, UINT32_MAX, UINT32_MAX, 2, &d),
                 DP_ERR_RANGE);
    dp_dataset_destroy(&d);
}
