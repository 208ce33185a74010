/* libFuzzer target for the safetensors reader (st_open_memory). Whatever the
 * input, the reader must fail cleanly or return a file whose tensors tile its
 * data buffer exactly; an accepted file must also survive a round trip
 * through the writer unchanged. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nn/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_same(const st_file_t *a, const st_file_t *b)
{
    if (st_count(a) != st_count(b) || st_metadata_count(a) != st_metadata_count(b))
        __builtin_trap();
    for (size_t i = 0; i < st_count(a); i++) {
        st_tensor_t x, y;
        if (st_tensor_at(a, i, &x) != DP_OK || st_find(b, x.name, &y) != DP_OK) __builtin_trap();
        if (x.dtype != y.dtype || x.ndim != y.ndim || x.nbytes != y.nbytes) __builtin_trap();
        if (x.ndim && memcmp(x.shape, y.shape, sizeof(int64_t) * (size_t)x.ndim)) __builtin_trap();
        if (x.nbytes && memcmp(x.data, y.data, x.nbytes)) __builtin_trap();
    }
    for (size_t i = 0; i < st_metadata_count(a); i++) {
        const char *k, *v, *w;
        if (st_metadata_at(a, i, &k, &v) != DP_OK) __builtin_trap();
        if (!(w = st_metadata(b, k)) || strcmp(v, w)) __builtin_trap();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    st_file_t *f = (st_file_t *)&size;
    if (st_open_memory(data, size, "fuzz.st", &f) != DP_OK) {
        if (f) __builtin_trap(); /* *out is NULL on failure */
        return 0;
    }
    /* the tensors tile the data buffer, in order, and can be found by name */
    size_t at = 0;
    const uint8_t *base = NULL;
    st_writer_t *w = st_writer_new();
    for (size_t i = 0; i < st_count(f); i++) {
        st_tensor_t t, u;
        if (st_tensor_at(f, i, &t) != DP_OK) __builtin_trap();
        if (!base) base = t.data;
        if ((const uint8_t *)t.data != base + at) __builtin_trap();
        if (t.nbytes != t.numel * st_dtype_size(t.dtype)) __builtin_trap();
        uint8_t sum = 0; /* touch every byte: ASan checks the bounds */
        for (size_t k = 0; k < t.nbytes; k++) sum ^= ((const uint8_t *)t.data)[k];
        __asm__ volatile("" : : "r"(sum));
        at += t.nbytes;
        if (st_find(f, t.name, &u) != DP_OK || u.data != t.data) __builtin_trap();
        if (st_writer_add(w, t.name, t.dtype, t.ndim, t.shape, t.data) != DP_OK) __builtin_trap();
    }
    for (size_t i = 0; i < st_metadata_count(f); i++) {
        const char *k, *v;
        if (st_metadata_at(f, i, &k, &v) != DP_OK || st_metadata(f, k) != v) __builtin_trap();
        if (st_writer_set_metadata(w, k, v) != DP_OK) __builtin_trap();
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    st_file_t *g = NULL;
    if (st_writer_to_memory(w, &buf, &len) != DP_OK) __builtin_trap();
    if (st_open_memory(buf, len, "again.st", &g) != DP_OK) __builtin_trap();
    check_same(f, g);
    check_same(g, f);
    free(buf);
    st_close(&g);
    st_writer_destroy(&w);
    st_close(&f);
    return 0;
}
