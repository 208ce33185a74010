/* A minimal owned NCHW float32 tensor, for the code that wires layers together
 * (models, tests). Kernels take raw pointers, not this. */
#ifndef DP_NN_TENSOR_H
#define DP_NN_TENSOR_H

#include <stddef.h>

#define NN_MAX_DIMS 8

typedef struct nn_tensor {
    float *data; /* owned unless `view` */
    int ndim;
    int shape[NN_MAX_DIMS];
    size_t numel;
    int view; /* 1: data is borrowed */
} nn_tensor_t;

/* Returns a new zeroed tensor, caller destroys; NULL on overflow or no memory. */
nn_tensor_t *nn_tensor_new(int ndim, const int *shape);
nn_tensor_t *nn_tensor_new4(int n, int c, int h, int w);
void nn_tensor_destroy(nn_tensor_t **t);
/* Product of shape[0..ndim), or 0 on overflow past SIZE_MAX / sizeof(float). */
size_t nn_shape_numel(int ndim, const int *shape);

#endif
