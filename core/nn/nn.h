/* The neural-network engine: NCHW float32, plain kernels on raw pointers.
 *
 * Conventions for every kernel in core/nn (llm.c / darknet style):
 * - A layer is a pair of functions, nn_<layer>_forward and nn_<layer>_backward,
 *   taking raw float pointers and explicit shapes; each pointer's shape is given
 *   in a comment in the layer's header ("inp is (N,C,H,W)").
 * - Kernels do not allocate, log or fail; preconditions are asserts. Scratch
 *   memory comes from the caller as a workspace whose size a *_workspace()
 *   function tells (in floats).
 * - Backward functions ACCUMULATE into every gradient buffer (+=); the caller
 *   zeroes gradients once per step. A NULL gradient pointer means "not needed"
 *   and that part of the work is skipped.
 * - Every fast kernel has a slow, obvious reference (*_naive) in the same file
 *   or in nn_naive.c, used by the tests.
 *
 * This header is the umbrella: it includes every layer header. */
#ifndef DP_NN_NN_H
#define DP_NN_NN_H

#include "nn/blas.h"
#include "nn/tensor.h"
#include "nn/conv.h"
#include "nn/norm.h"
#include "nn/act.h"
#include "nn/pool.h"
#include "nn/linear.h"
#include "nn/lstm.h"
#include "nn/attention.h"
#include "nn/loss.h"
#include "nn/adam.h"
#include "nn/safetensors.h"

#endif
