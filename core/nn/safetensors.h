/* safetensors: the checkpoint format of HuggingFace and the Python
 * `safetensors` library, read and written here so that models trained in
 * PyTorch load without a conversion step.
 *
 * Layout: an 8-byte little-endian u64 N, then N bytes of UTF-8 JSON (padded
 * with trailing spaces), then the raw little-endian data buffer. The JSON maps
 * each tensor name to {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}
 * (offsets relative to the start of the data buffer) and may hold one
 * "__metadata__" object of string -> string.
 *
 * The reader trusts nothing: every length, offset and count is checked, the
 * tensors must tile the data buffer exactly (no overlap, no hole, no trailing
 * bytes), and every failure returns a specific code with a detail
 * (dp_err_detail()) that names the file and the problem. Error codes:
 *   DP_ERR_IO          the file cannot be opened or read
 *   DP_ERR_TRUNCATED   the input ends early: shorter than 8 bytes, shorter
 *                      than the header length says, JSON that stops mid-value,
 *                      a data buffer shorter than the tensors need
 *   DP_ERR_RANGE       a value out of bounds: header length over the cap,
 *                      negative numbers, integer or shape-product overflow,
 *                      data_offsets with begin > end
 *   DP_ERR_FORMAT      malformed JSON or invalid UTF-8, a missing or mistyped
 *                      key, duplicate names, a size that disagrees with
 *                      shape x dtype, overlapping tensors, a hole, bytes not
 *                      covered by any tensor
 *   DP_ERR_UNSUPPORTED a dtype name this reader does not know, a name with NUL
 *   DP_ERR_NOTFOUND    st_find()/st_read_*() of a missing tensor
 *   DP_ERR_MISMATCH    st_read_*(): dtype or shape differs from the caller's
 *   DP_ERR_NOMEM       allocation failed
 *
 * Data is stored little-endian; this code assumes a little-endian host. */
#ifndef DP_NN_SAFETENSORS_H
#define DP_NN_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

/* Largest JSON header accepted, as in the reference implementation. */
#define ST_MAX_HEADER 100000000u
/* Deepest JSON nesting accepted (only reachable inside ignored values). */
#define ST_MAX_DEPTH 64

/* Element types, in the order of the reference implementation's Dtype enum
 * (its writer sorts tensors by this order, descending, then by name). */
typedef enum st_dtype {
    ST_BOOL,
    ST_U8,
    ST_I8,
    ST_F8_E5M2,
    ST_F8_E4M3,
    ST_I16,
    ST_U16,
    ST_F16,
    ST_BF16,
    ST_I32,
    ST_U32,
    ST_F32,
    ST_F64,
    ST_I64,
    ST_U64,
    ST_DTYPE__COUNT
} st_dtype_t;

/* "F32", "I64", ...; "?" for an invalid value. */
const char *st_dtype_name(st_dtype_t dtype);
/* Bytes per element (BOOL is 1); 0 for an invalid value. */
size_t st_dtype_size(st_dtype_t dtype);

/* ------------------------------------------------------------------ reader */

typedef struct st_file st_file_t;

/* One tensor's description. Every pointer is borrowed, valid until st_close(). */
typedef struct st_tensor {
    const char *name;
    st_dtype_t dtype;
    int ndim;             /* 0 for a scalar */
    const int64_t *shape; /* ndim entries, each >= 0 */
    size_t numel;         /* product of shape (1 for a scalar) */
    const void *data;     /* nbytes of little-endian data; aligned to the
                             dtype when data_offsets[0] is a multiple of its
                             size (always so for files from the reference
                             writer or st_writer), else use memcpy */
    size_t nbytes;
} st_tensor_t;

/* Reads and validates the whole file into memory. On success *out is a new
 * object, caller closes with st_close(). */
dp_err_t st_open(const char *path, st_file_t **out);

/* Same from a buffer. COPIES: buf may be freed once this returns.
 * name_for_errors (may be NULL: "<memory>") prefixes error details. */
dp_err_t st_open_memory(const uint8_t *buf, size_t len, const char *name_for_errors,
                        st_file_t **out);

/* Frees the file and everything borrowed from it; accepts NULL, sets *f = NULL. */
void st_close(st_file_t **f);

/* The path or name_for_errors given at open; borrowed. */
const char *st_path(const st_file_t *f);

/* Number of tensors. */
size_t st_count(const st_file_t *f);

/* The i-th tensor in data-offset order (the file's order), 0 <= i < st_count. */
dp_err_t st_tensor_at(const st_file_t *f, size_t i, st_tensor_t *out);

/* The tensor called name; DP_ERR_NOTFOUND (detail names file and tensor). */
dp_err_t st_find(const st_file_t *f, const char *name, st_tensor_t *out);

/* Value of a "__metadata__" key, or NULL; borrowed, valid until st_close(). */
const char *st_metadata(const st_file_t *f, const char *key);
/* Metadata entries, sorted by key, for listing. */
size_t st_metadata_count(const st_file_t *f);
dp_err_t st_metadata_at(const st_file_t *f, size_t i, const char **key, const char **value);

/* Copies tensor `name` into dst after checking that its dtype is `dtype` and
 * its shape is exactly shape[0..ndim) (ndim 0: a scalar). dst holds numel
 * elements. Errors: DP_ERR_NOTFOUND, DP_ERR_MISMATCH with a detail such as
 * "model.st: tensor 'conv1.weight' has shape [16,1,3,3], expected [16,3,3,3]". */
dp_err_t st_read(const st_file_t *f, const char *name, st_dtype_t dtype, int ndim,
                 const int64_t *shape, void *dst);
dp_err_t st_read_f32(const st_file_t *f, const char *name, int ndim, const int64_t *shape,
                     float *dst);
dp_err_t st_read_i64(const st_file_t *f, const char *name, int ndim, const int64_t *shape,
                     int64_t *dst);
dp_err_t st_read_i32(const st_file_t *f, const char *name, int ndim, const int64_t *shape,
                     int32_t *dst);

/* ------------------------------------------------------------------ writer */

typedef struct st_writer st_writer_t;

/* Returns a new empty writer, caller destroys; NULL if out of memory. */
st_writer_t *st_writer_new(void);
/* Accepts NULL, sets *w = NULL. */
void st_writer_destroy(st_writer_t **w);

/* Adds a tensor. name and shape are copied; data is BORROWED: it must stay
 * valid and unchanged until the last st_writer_write()/st_writer_to_memory().
 * data may be NULL only when the tensor has no elements. Errors:
 * DP_ERR_INVALID (bad name: not UTF-8, contains NUL, "__metadata__"; negative
 * dim; ndim < 0), DP_ERR_EXISTS (name already added), DP_ERR_RANGE (size
 * overflow), DP_ERR_NOMEM. */
dp_err_t st_writer_add(st_writer_t *w, const char *name, st_dtype_t dtype, int ndim,
                       const int64_t *shape, const void *data);
dp_err_t st_writer_add_f32(st_writer_t *w, const char *name, int ndim, const int64_t *shape,
                           const float *data);
dp_err_t st_writer_add_i64(st_writer_t *w, const char *name, int ndim, const int64_t *shape,
                           const int64_t *data);

/* Sets a "__metadata__" entry (copied; replaces an earlier value of key).
 * Key and value must be UTF-8: DP_ERR_INVALID otherwise. */
dp_err_t st_writer_set_metadata(st_writer_t *w, const char *key, const char *value);

/* Serialises like the reference writer: compact JSON with "__metadata__"
 * first (keys sorted), tensors ordered by dtype (descending, see st_dtype_t)
 * then name (for all-F32 files: by name), data packed in that order, header
 * padded with spaces to a multiple of 8 bytes.
 * st_writer_to_memory: *buf is a new malloc'd buffer, caller frees. */
dp_err_t st_writer_to_memory(const st_writer_t *w, uint8_t **buf, size_t *len);

/* Writes atomically: to "<path>.tmp", fsync, rename over path, fsync the
 * directory. On failure path is untouched and the temporary file removed. */
dp_err_t st_writer_write(const st_writer_t *w, const char *path);

#endif
