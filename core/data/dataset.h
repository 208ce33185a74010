/* Image classification datasets in memory, and shards of them.
 *
 * Readers for IDX (MNIST, Fashion-MNIST; raw or gzip) and the CIFAR-10/100
 * binary format decode into one plain container: float32 pixels NCHW scaled to
 * [0,1] and int32 labels. Every header field is validated before anything is
 * trusted, and memory grows only with bytes actually present, so a lying
 * header or a gzip bomb fails with an error instead of exhausting memory.
 * Errors carry detail through dp_err_set(): the file (or name) and the field.
 *
 * A shard is an index range [begin, end) of a dataset; workers train or
 * measure on views of shards without copying. */
#ifndef DP_DATA_DATASET_H
#define DP_DATA_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

/* Bounds a header must respect before anything is allocated. */
#define DP_DATA_MAX_DIM    (1u << 24)          /* any single dimension */
#define DP_DATA_MAX_ELEMS  (UINT64_C(1) << 31) /* n*c*h*w, i.e. 8 GiB of floats */
#define DP_IDX_NUM_CLASSES 10                  /* MNIST and Fashion-MNIST */

/* A small public data container; fields are read-only for users. */
typedef struct dp_dataset {
    float *images;        /* (n, c, h, w), values in [0, 1] */
    int32_t *labels;      /* (n), values in [0, num_classes) */
    uint32_t n, c, h, w;  /* sample count and per-sample shape */
    uint32_t num_classes; /* 10 for IDX and CIFAR-10, 100 for CIFAR-100 (fine labels) */
} dp_dataset_t;

/* Floats per sample, c*h*w. */
static inline size_t dp_dataset_sample_size(const dp_dataset_t *d)
{
    return (size_t)d->c * d->h * d->w;
}

/* A zero-filled dataset of the given shape; every argument must be >= 1 and
 * n*c*h*w <= DP_DATA_MAX_ELEMS. Returns a new object, caller destroys. */
dp_err_t dp_dataset_new(uint32_t n, uint32_t c, uint32_t h, uint32_t w, uint32_t num_classes,
                        dp_dataset_t **out);

/* Accepts NULL and *d == NULL; sets *d = NULL. */
void dp_dataset_destroy(dp_dataset_t **d);

/* Loads an IDX images file (magic 0x00000803, u8, n x h x w) and an IDX labels
 * file (magic 0x00000801, u8, n), each raw or gzip. c = 1, num_classes = 10.
 * Missing file: DP_ERR_NOTFOUND; short file: DP_ERR_TRUNCATED; bad header or
 * trailing bytes: DP_ERR_FORMAT; unsupported dtype: DP_ERR_UNSUPPORTED; absurd
 * sizes or labels >= 10: DP_ERR_RANGE; count mismatch: DP_ERR_MISMATCH.
 * On success returns a new object in *out, caller destroys. */
dp_err_t dp_dataset_load_idx(const char *images_path, const char *labels_path, dp_dataset_t **out);

/* The same from memory (e.g. an object store download). Each buffer is raw
 * IDX or one gzip member (detected by its 1f 8b magic); inflating stops at the
 * size the header declares, plus one byte to detect trailing data. Errors name
 * "<name_for_errors>:images" / ":labels" (name may be NULL). Buffers are
 * borrowed for the call. On success returns a new object, caller destroys. */
dp_err_t dp_dataset_decode_idx(const uint8_t *img, size_t img_len, const uint8_t *lbl,
                               size_t lbl_len, const char *name_for_errors, dp_dataset_t **out);

/* Loads and concatenates CIFAR binary batches (e.g. data_batch_1..5.bin):
 * CIFAR-10 records are 1 label byte + 3072 pixel bytes, CIFAR-100 records
 * (cifar100 != 0) are coarse + fine label bytes + 3072; pixels are R, G, B
 * planes of 32x32. Labels kept are the fine ones (< 100; coarse must be < 20).
 * A size that is zero or not a multiple of the record: DP_ERR_FORMAT; a label
 * out of range: DP_ERR_RANGE. On success returns a new object, caller destroys. */
dp_err_t dp_dataset_load_cifar(const char *const *paths, int npaths, int cifar100,
                               dp_dataset_t **out);

/* One CIFAR batch from memory; buf is borrowed for the call. On success
 * returns a new object, caller destroys. */
dp_err_t dp_dataset_decode_cifar(const uint8_t *buf, size_t len, int cifar100,
                                 const char *name_for_errors, dp_dataset_t **out);

/* An index range [begin, end) of a dataset. */
typedef struct dp_shard {
    uint32_t begin, end;
} dp_shard_t;

/* Splits [begin, end) into consecutive shards of `size` samples, the last one
 * shorter if size does not divide the range. size must be >= 1 and
 * begin <= end (DP_ERR_INVALID otherwise). An empty range gives *count = 0 and
 * *out = NULL. On success *out is a new array, caller frees with free(). */
dp_err_t dp_shard_split(uint32_t begin, uint32_t end, uint32_t size, dp_shard_t **out,
                        size_t *count);

/* Samples [begin, begin + count) of a dataset, without copying. */
typedef struct dp_dataset_view {
    const float *images;   /* (count, c, h, w) */
    const int32_t *labels; /* (count) */
    uint32_t begin, count;
} dp_dataset_view_t;

/* The view of shard s within d; s must satisfy begin <= end <= d->n
 * (DP_ERR_RANGE otherwise). Borrowed, valid until d is destroyed. */
dp_err_t dp_dataset_view(const dp_dataset_t *d, dp_shard_t s, dp_dataset_view_t *out);

/* Copies samples idx[0..count) of d into caller buffers, in that order (for a
 * shuffled epoch). images_out is (count, c, h, w); labels_out is (count) and
 * may be NULL. Every index is checked against d->n before anything is written
 * (DP_ERR_RANGE names the first bad one). */
dp_err_t dp_dataset_gather(const dp_dataset_t *d, const uint32_t *idx, size_t count,
                           float *images_out, int32_t *labels_out);

#endif
