/* The owned NCHW float32 tensor used where layers are wired together. */
#include "nn/tensor.h"

#include <stdint.h>
#include <stdlib.h>

size_t nn_shape_numel(int ndim, const int *shape)
{
    if (ndim < 0 || ndim > NN_MAX_DIMS) return 0;
    size_t n = 1;
    const size_t limit = SIZE_MAX / sizeof(float);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return 0;
        size_t d = (size_t)shape[i];
        if (d != 0 && n > limit / d) return 0;
        n *= d;
    }
    return n;
}

nn_tensor_t *nn_tensor_new(int ndim, const int *shape)
{
    if (ndim < 0 || ndim > NN_MAX_DIMS) return NULL;
    size_t numel = nn_shape_numel(ndim, shape);
    /* numel 0 is either an overflow or a zero-sized dimension: tell them apart. */
    int has_zero = 0;
    for (int i = 0; i < ndim; i++) has_zero |= shape[i] == 0;
    if (numel == 0 && !has_zero) return NULL;
    nn_tensor_t *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->data = calloc(numel ? numel : 1, sizeof(float));
    if (!t->data) {
        free(t);
        return NULL;
    }
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->numel = numel;
    t->view = 0;
    return t;
}

nn_tensor_t *nn_tensor_new4(int n, int c, int h, int w)
{
    int shape[4] = {n, c, h, w};
    return nn_tensor_new(4, shape);
}

void nn_tensor_destroy(nn_tensor_t **t)
{
    if (!t || !*t) return;
    if (!(*t)->view) free((*t)->data);
    free(*t);
    *t = NULL;
}
