/* 2D convolution and transposed convolution (NCHW), and reflection padding.
 * Convolution is im2col into the caller's workspace then one nn_sgemm per
 * (image, group); 1x1 stride-1 unpadded convolutions skip im2col. With
 * groups == 1 and a batch of small images, the whole batch goes through one
 * sgemm instead (columns of all images side by side, then a scatter to NCHW):
 * thin per-image matrices waste most of the BLAS's speed. */
#ifndef DP_NN_CONV_H
#define DP_NN_CONV_H

#include <stddef.h>

typedef struct nn_conv {
    int n, cin, h, w; /* input (N,Cin,H,W) */
    int cout, kh, kw; /* weight (Cout, Cin/groups, KH, KW) for conv,
                         (Cin, Cout/groups, KH, KW) for transposed conv */
    int stride, pad, groups;
    int out_pad;    /* transposed conv only */
    int hout, wout; /* filled in by nn_conv2d_init / nn_convt2d_init */
    int batch_gemm; /* images per sgemm, set by init: > 1 only with groups == 1, n > 1 and
                       small images; 0 or 1 = per image. May be changed (e.g. 0 to force
                       the per-image path) before sizing the workspace. */
    int threads;    /* the packed forwards' products (nn_gemm) and im2col run on this
                       many threads of the worker pool (nn/gemm.h); 0 (init's value)
                       = the caller's nn_get_threads(). The plain forward's sgemm is
                       cut into shape-fixed units by nn_sgemm itself. Results do not
                       depend on it. */
} nn_conv_t;

/* Fills hout/wout: (h + 2p - kh)/s + 1. Returns 0, or -1 if the shape is invalid. */
int nn_conv2d_init(nn_conv_t *c, int n, int cin, int h, int w, int cout, int kh, int kw, int stride,
                   int pad, int groups);
/* hout = (h-1)*s - 2p + kh + out_pad. Returns 0, or -1 if invalid. */
int nn_convt2d_init(nn_conv_t *c, int n, int cin, int h, int w, int cout, int kh, int kw,
                    int stride, int pad, int out_pad, int groups);

/* Workspace in floats for forward and backward (the larger of the two). It does
 * not grow when c->n is lowered after sizing, so a workspace sized at the
 * largest batch serves every smaller one. */
size_t nn_conv2d_workspace(const nn_conv_t *c);
size_t nn_convt2d_workspace(const nn_conv_t *c);

/* out (N,Cout,Hout,Wout); inp (N,Cin,H,W); weight (Cout,Cin/g,KH,KW); bias (Cout) or NULL. */
void nn_conv2d_forward(const nn_conv_t *c, float *out, const float *inp, const float *weight,
                       const float *bias, float *ws);
/* Accumulates into dinp, dweight, dbias (each may be NULL). */
void nn_conv2d_backward(const nn_conv_t *c, float *dinp, float *dweight, float *dbias,
                        const float *dout, const float *inp, const float *weight, float *ws);
void nn_conv2d_forward_naive(const nn_conv_t *c, float *out, const float *inp, const float *weight,
                             const float *bias);

/* Forward with the weight pre-packed (groups == 1; nn/gemm.h): pw holds
 * nn_conv2d_packed_size(c) floats, 64-byte aligned, filled by
 * nn_conv2d_pack_weight from weight (Cout,Cin,KH,KW). Same workspace and
 * result (to rounding) as nn_conv2d_forward; the product runs on c->threads
 * threads (0 = nn_get_threads()), split by output channels. */
size_t nn_conv2d_packed_size(const nn_conv_t *c);
void nn_conv2d_pack_weight(const nn_conv_t *c, float *pw, const float *weight);
void nn_conv2d_forward_packed(const nn_conv_t *c, float *out, const float *inp, const float *pw,
                              const float *bias, float *ws);

/* Transposed conv (PyTorch ConvTranspose2d): out (N,Cout,Hout,Wout); inp (N,Cin,H,W);
 * weight (Cin, Cout/g, KH, KW); bias (Cout) or NULL. */
void nn_convt2d_forward(const nn_conv_t *c, float *out, const float *inp, const float *weight,
                        const float *bias, float *ws);
void nn_convt2d_backward(const nn_conv_t *c, float *dinp, float *dweight, float *dbias,
                         const float *dout, const float *inp, const float *weight, float *ws);
void nn_convt2d_forward_naive(const nn_conv_t *c, float *out, const float *inp, const float *weight,
                              const float *bias);

/* The same with the weight (Cin,Cout,KH,KW) pre-packed as its transpose
 * (groups == 1), like nn_conv2d_forward_packed. */
size_t nn_convt2d_packed_size(const nn_conv_t *c);
void nn_convt2d_pack_weight(const nn_conv_t *c, float *pw, const float *weight);
void nn_convt2d_forward_packed(const nn_conv_t *c, float *out, const float *inp, const float *pw,
                               const float *bias, float *ws);

/* Reflection padding by p on every side (p < H, p < W):
 * out (N,C,H+2p,W+2p); inp (N,C,H,W). Backward accumulates into dinp. */
void nn_reflpad2d_forward(float *out, const float *inp, int n, int c, int h, int w, int p);
void nn_reflpad2d_backward(float *dinp, const float *dout, int n, int c, int h, int w, int p);

#endif
