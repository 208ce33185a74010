/* The dataset container, shards and batch gathering. Loaders live in idx.c
 * and cifar.c; everything here is plain index arithmetic with range checks. */
#include "data/dataset.h"

#include <stdlib.h>
#include <string.h>

dp_err_t dp_dataset_new(uint32_t n, uint32_t c, uint32_t h, uint32_t w, uint32_t num_classes,
                        dp_dataset_t **out)
{
    if (!out) return dp_err_set(DP_ERR_INVALID, "dataset: out is NULL");
    *out = NULL;
    if (!n || !c || !h || !w || !num_classes)
        return dp_err_set(DP_ERR_INVALID, "dataset: shape %ux%ux%ux%u, %u classes has a zero", n, c,
                          h, w, num_classes);
    uint64_t elems = (uint64_t)n * c; /* each factor < 2^32: check step by step */
    if (elems > DP_DATA_MAX_ELEMS || (elems *= h) > DP_DATA_MAX_ELEMS ||
        (elems *= w) > DP_DATA_MAX_ELEMS)
        return dp_err_set(DP_ERR_RANGE, "dataset: shape %ux%ux%ux%u exceeds %llu elements", n, c, h,
                          w, (unsigned long long)DP_DATA_MAX_ELEMS);

    dp_dataset_t *d = calloc(1, sizeof *d);
    if (!d) goto fail;
    d->images = calloc((size_t)elems, sizeof *d->images);
    d->labels = calloc(n, sizeof *d->labels);
    if (!d->images || !d->labels) goto fail;
    d->n = n;
    d->c = c;
    d->h = h;
    d->w = w;
    d->num_classes = num_classes;
    *out = d;
    return DP_OK;
fail:
    dp_dataset_destroy(&d);
    return dp_err_set(DP_ERR_NOMEM, "dataset: cannot allocate %ux%ux%ux%u floats", n, c, h, w);
}

void dp_dataset_destroy(dp_dataset_t **d)
{
    if (!d || !*d) return;
    free((*d)->images);
    free((*d)->labels);
    free(*d);
    *d = NULL;
}

dp_err_t dp_shard_split(uint32_t begin, uint32_t end, uint32_t size, dp_shard_t **out,
                        size_t *count)
{
    if (!out || !count) return dp_err_set(DP_ERR_INVALID, "shard: out or count is NULL");
    *out = NULL;
    *count = 0;
    if (size == 0) return dp_err_set(DP_ERR_INVALID, "shard: size is 0");
    if (begin > end)
        return dp_err_set(DP_ERR_INVALID, "shard: range [%u, %u) has begin > end", begin, end);
    uint32_t len = end - begin;
    if (len == 0) return DP_OK;
    size_t k = len / size + (len % size != 0);
    dp_shard_t *s = malloc(k * sizeof *s);
    if (!s) return dp_err_set(DP_ERR_NOMEM, "shard: cannot allocate %zu shards", k);
    for (size_t i = 0; i < k; i++) {
        s[i].begin = begin + (uint32_t)(i * size);
        s[i].end = i + 1 < k ? s[i].begin + size : end;
    }
    *out = s;
    *count = k;
    return DP_OK;
}

dp_err_t dp_dataset_view(const dp_dataset_t *d, dp_shard_t s, dp_dataset_view_t *out)
{
    if (!d || !out) return dp_err_set(DP_ERR_INVALID, "view: dataset or out is NULL");
    if (s.begin > s.end || s.end > d->n)
        return dp_err_set(DP_ERR_RANGE, "view: shard [%u, %u) outside dataset of %u samples",
                          s.begin, s.end, d->n);
    out->images = d->images + (size_t)s.begin * dp_dataset_sample_size(d);
    out->labels = d->labels + s.begin;
    out->begin = s.begin;
    out->count = s.end - s.begin;
    return DP_OK;
}

dp_err_t dp_dataset_gather(const dp_dataset_t *d, const uint32_t *idx, size_t count,
                           float *images_out, int32_t *labels_out)
{
    if (!d || (count && (!idx || !images_out)))
        return dp_err_set(DP_ERR_INVALID, "gather: dataset, idx or images_out is NULL");
    for (size_t i = 0; i < count; i++)
        if (idx[i] >= d->n)
            return dp_err_set(DP_ERR_RANGE, "gather: idx[%zu] = %u outside dataset of %u samples",
                              i, idx[i], d->n);
    size_t ss = dp_dataset_sample_size(d);
    for (size_t i = 0; i < count; i++) {
        memcpy(images_out + i * ss, d->images + (size_t)idx[i] * ss, ss * sizeof *images_out);
        if (labels_out) labels_out[i] = d->labels[idx[i]];
    }
    return DP_OK;
}
