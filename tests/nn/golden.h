/* Loader for the PyTorch golden fixtures (DPGF files written by
 * tests/ref/golden.py), and the error figures the golden tests compare with.
 *
 * File layout, little-endian: "DPGF", u32 version (1), u32 tensor count; per
 * tensor: u16 name length, name, u8 dtype (0 f32, 1 i32), u8 ndim (<= 8),
 * u32 dims[ndim], raw data. The loader validates every field and the file size,
 * so a truncated or foreign file fails with DP_ERR_FORMAT/DP_ERR_TRUNCATED and
 * a detail line (dp_err_detail) instead of reading garbage. */
#ifndef DP_TESTS_GOLDEN_H
#define DP_TESTS_GOLDEN_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define GOLDEN_MAGIC       "DPGF"
#define GOLDEN_VERSION     1u
#define GOLDEN_MAX_DIMS    8
#define GOLDEN_MAX_TENSORS 4096

typedef enum golden_dtype { GOLDEN_F32 = 0, GOLDEN_I32 = 1 } golden_dtype_t;

typedef struct golden_tensor {
    char *name;
    golden_dtype_t dtype;
    int ndim;
    int dims[GOLDEN_MAX_DIMS];
    size_t numel;
    void *data; /* float or int32_t, aligned, numel elements */
} golden_tensor_t;

typedef struct golden golden_t;

/* Loads a fixture. Returns a new object in *out, caller destroys with
 * golden_destroy; on failure *out is NULL and dp_err_detail() says why. */
dp_err_t golden_load(const char *path, golden_t **out);
/* Parses a fixture already in memory (path only names it in messages). */
dp_err_t golden_parse(const void *buf, size_t len, const char *path, golden_t **out);
void golden_destroy(golden_t **g);

int golden_count(const golden_t *g);
/* Borrowed, valid until golden_destroy; NULL if absent. */
const golden_tensor_t *golden_get(const golden_t *g, const char *name);

/* The data of tensor `name`, checked against dtype and the expected shape
 * (ndim ints follow; ndim < 0 accepts any shape). Borrowed, valid until
 * golden_destroy. NULL on absence or mismatch, with the reason in dp_err_detail(). */
const float *golden_f32(const golden_t *g, const char *name, int ndim, ...);
const int32_t *golden_i32(const golden_t *g, const char *name, int ndim, ...);

/* Error figures of got against want (the reference), n elements:
 * max_abs = max |got - want|, max_ref = max |want|,
 * rel = max_abs / max(max_ref, 1e-6)  (relative to the tensor's scale, not
 * elementwise, so entries near zero do not blow it up), worst = argmax index.
 * A NaN anywhere gives max_abs = rel = INFINITY. */
typedef struct golden_err {
    double max_abs, max_ref, rel;
    size_t worst;
} golden_err_t;

golden_err_t golden_compare(const float *got, const float *want, size_t n);

#endif
