/* 2D convolution, transposed convolution and reflection padding (NCHW float32).
 *
 * Convolution: im2col of one image's group into the workspace, a (K, P) matrix
 * with K = Cin/g * KH * KW and P = Hout * Wout, then one sgemm with the group's
 * (Cout/g, K) weight. Transposed convolution is the adjoint: sgemm into columns,
 * then col2im (scatter-add) into the output. 1x1 stride-1 unpadded layers use
 * the image itself as the column matrix.
 *
 * With c->batch_gemm = nb > 1 (groups == 1), chunks of nb images are processed
 * together: their column matrices sit side by side, (K, nb*P), one sgemm covers
 * the chunk, and the result is scattered back to NCHW. On the generator's 5x5
 * bottleneck at batch 64 that turns 64 products 512x4608x25 into two of
 * 512x4608x(36*25 and 28*25).
 *
 * Workspace layout (floats): A = column matrix (K, nb*P); B (batched only) =
 * the chunk's other operand laid out as (C, nb*P). */
#include "nn/conv.h"

#include <assert.h>
#include <string.h>

#include "nn/blas.h"
#include "nn/gemm.h"

/* Batched sgemm pays a gather/scatter through memory. Measured on the generator
 * at batch 64 (bench_gemm, 2 busy cores, noisy): 1.3-2.7x faster at P = 25 (the
 * 5x5 bottleneck, enc3, dec1), a wash or a loss at P = 121/144 (dec2, enc2),
 * slower at P >= 529 (enc1, dec3), where per-image columns stay in cache. */
#define NN_CONV_BATCH_MAX_P 100
/* Chunk so the column matrix stays within 16 MB. */
#define NN_CONV_BATCH_MAX_COL ((size_t)1 << 22)

/* Images per sgemm chosen by init: 0 (per image) unless groups == 1 and P small. */
static int choose_batch(int n, int groups, size_t K, size_t P)
{
    if (groups != 1 || n < 2 || P > NN_CONV_BATCH_MAX_P) return 0;
    size_t nb = NN_CONV_BATCH_MAX_COL / (K * P);
    if (nb > (size_t)n) nb = (size_t)n;
    return nb > 1 ? (int)nb : 0;
}

/* Images per sgemm at the current c->n: 1 means the per-image path. */
static int images_per_gemm(const nn_conv_t *c)
{
    int nb = c->batch_gemm < c->n ? c->batch_gemm : c->n;
    assert(nb <= 1 || c->groups == 1);
    return nb > 1 ? nb : 1;
}

/* ---- geometry helpers ---- */

/* Range [lo, hi) of output columns ow whose input column ow*s - p + kj lies in [0, w). */
static void valid_span(int kj, int p, int s, int w, int wout, int *lo, int *hi)
{
    int a = p - kj;
    int l = a > 0 ? (a + s - 1) / s : 0;
    int b = w - 1 + p - kj;
    int h = b < 0 ? 0 : b / s + 1;
    if (h > wout) h = wout;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

/* Copies of a few floats (a 5x5 map's row is 5): memcpy calls would cost
 * more than the copy. Fixed-size memcpys compile to plain moves. */
static inline void copy_row(float *d, const float *s, int n)
{
    int t = 0;
    for (; t + 4 <= n; t += 4) memcpy(d + t, s + t, 4 * sizeof(float));
    switch (n - t) {
    case 3:
        d[t + 2] = s[t + 2]; /* fall through */
    case 2:
        d[t + 1] = s[t + 1]; /* fall through */
    case 1:
        d[t] = s[t]; /* fall through */
    default:
        break;
    }
}

static inline void zero_row(float *d, int n)
{
    static const float z[4] = {0};
    int t = 0;
    for (; t + 4 <= n; t += 4) memcpy(d + t, z, sizeof z);
    for (; t < n; t++) d[t] = 0.0f;
}

/* col (C*KH*KW, hout*wout) with row stride ld; img (C,H,W). */
static void im2col(float *col, size_t ld, const float *img, int C, int H, int W, int kh, int kw,
                   int s, int p, int hout, int wout)
{
    if (s == 1 && p == 0) { /* every window inside the image: plain row copies */
        for (int ch = 0; ch < C; ch++) {
            const float *plane = img + (size_t)ch * H * W;
            for (int ki = 0; ki < kh; ki++) {
                for (int kj = 0; kj < kw; kj++) {
                    float *row = col + ((size_t)(ch * kh + ki) * kw + kj) * ld;
                    const float *src = plane + (size_t)ki * W + kj;
                    for (int oh = 0; oh < hout; oh++)
                        copy_row(row + (size_t)oh * wout, src + (size_t)oh * W, wout);
                }
            }
        }
        return;
    }
    for (int ch = 0; ch < C; ch++) {
        const float *plane = img + (size_t)ch * H * W;
        for (int ki = 0; ki < kh; ki++) {
            for (int kj = 0; kj < kw; kj++) {
                float *row = col + ((size_t)(ch * kh + ki) * kw + kj) * ld;
                int lo, hi;
                valid_span(kj, p, s, W, wout, &lo, &hi);
                for (int oh = 0; oh < hout; oh++) {
                    float *dst = row + (size_t)oh * wout;
                    int ih = oh * s - p + ki;
                    if (ih < 0 || ih >= H || lo == hi) {
                        zero_row(dst, wout);
                        continue;
                    }
                    /* input element for output column ow: src[ow * s] */
                    const float *src = plane + (size_t)ih * W + (size_t)(lo * s - p + kj);
                    for (int ow = 0; ow < lo; ow++) dst[ow] = 0.0f;
                    if (s == 1) {
                        copy_row(dst + lo, src, hi - lo);
                    } else {
                        float *d = dst + lo;
                        for (int t = 0; t < hi - lo; t++) d[t] = src[(size_t)t * s];
                    }
                    for (int ow = hi; ow < wout; ow++) dst[ow] = 0.0f;
                }
            }
        }
    }
}

/* im2col on several threads (nn_parallel_for over channel blocks). */
typedef struct im2col_job {
    float *col;
    size_t ld;
    const float *img;
    const nn_conv_t *c;
    int nunits;
} im2col_job_t;

static void im2col_unit(void *ctx, int u)
{
    const im2col_job_t *j = ctx;
    const nn_conv_t *c = j->c;
    const int c0 = (int)((long)c->cin * u / j->nunits),
              c1 = (int)((long)c->cin * (u + 1) / j->nunits);
    const size_t kk = (size_t)c->kh * c->kw;
    im2col(j->col + (size_t)c0 * kk * j->ld, j->ld, j->img + (size_t)c0 * c->h * c->w, c1 - c0,
           c->h, c->w, c->kh, c->kw, c->stride, c->pad, c->hout, c->wout);
}

static void im2col_par(float *col, size_t ld, const float *img, const nn_conv_t *c, int threads)
{
    const size_t elems = (size_t)c->cin * c->kh * c->kw * c->hout * c->wout;
    int nunits = threads > 1 && elems >= ((size_t)1 << 15) ? 4 * threads : 1;
    if (nunits > c->cin) nunits = c->cin;
    im2col_job_t j = {col, ld, img, c, nunits};
    nn_parallel_for(nunits, threads, im2col_unit, &j);
}

/* img (C,H,W) += col2im(col); col (C*KH*KW, hout*wout) with row stride ld. */
static void col2im_add(float *img, const float *col, size_t ld, int C, int H, int W, int kh, int kw,
                       int s, int p, int hout, int wout)
{
    for (int ch = 0; ch < C; ch++) {
        float *plane = img + (size_t)ch * H * W;
        for (int ki = 0; ki < kh; ki++) {
            for (int kj = 0; kj < kw; kj++) {
                const float *row = col + ((size_t)(ch * kh + ki) * kw + kj) * ld;
                int lo, hi;
                valid_span(kj, p, s, W, wout, &lo, &hi);
                if (lo == hi) continue;
                for (int oh = 0; oh < hout; oh++) {
                    int ih = oh * s - p + ki;
                    if (ih < 0 || ih >= H) continue;
                    const float *srow = row + (size_t)oh * wout + lo;
                    float *d = plane + (size_t)ih * W + (size_t)(lo * s - p + kj);
                    if (s == 1) {
                        for (int t = 0; t < hi - lo; t++) d[t] += srow[t];
                    } else {
                        for (int t = 0; t < hi - lo; t++) d[(size_t)t * s] += srow[t];
                    }
                }
            }
        }
    }
}

/* dst (C, nb*P) <- channels [c0, c0+C) of nb images of src (nb, ctot, P). */
static void gather(float *dst, const float *src, int nb, int ctot, int c0, int C, int P)
{
    size_t ld = (size_t)nb * P;
    for (int i = 0; i < nb; i++)
        for (int ch = 0; ch < C; ch++)
            memcpy(dst + ch * ld + (size_t)i * P, src + ((size_t)i * ctot + c0 + ch) * P,
                   sizeof(float) * (size_t)P);
}

/* dst (nb, C, P) = src (C, nb*P) + bias, or += src when accumulate. */
static void scatter(float *dst, const float *src, const float *bias, int nb, int C, int P,
                    int accumulate)
{
    size_t ld = (size_t)nb * P;
    for (int i = 0; i < nb; i++) {
        for (int ch = 0; ch < C; ch++) {
            float *d = dst + ((size_t)i * C + ch) * P;
            const float *s = src + ch * ld + (size_t)i * P;
            if (accumulate) {
                for (int j = 0; j < P; j++) d[j] += s[j];
            } else if (bias) {
                float b = bias[ch];
                for (int j = 0; j < P; j++) d[j] = s[j] + b;
            } else {
                memcpy(d, s, sizeof(float) * (size_t)P);
            }
        }
    }
}

static void add_bias(float *out, const float *bias, int C, int P)
{
    for (int ch = 0; ch < C; ch++) {
        float b = bias[ch];
        float *o = out + (size_t)ch * P;
        for (int j = 0; j < P; j++) o[j] += b;
    }
}

/* dbias (C) += sum over n and positions of dout (N,C,P). */
static void bias_backward(float *dbias, const float *dout, int N, int C, int P)
{
    for (int ch = 0; ch < C; ch++) {
        double s = 0.0;
        for (int i = 0; i < N; i++) {
            const float *d = dout + ((size_t)i * C + ch) * P;
            float t = 0.0f;
            for (int j = 0; j < P; j++) t += d[j];
            s += t;
        }
        dbias[ch] += (float)s;
    }
}

/* The packed path's product runs on c->threads threads of the worker pool
 * (0: the caller's nn_get_threads()); nn_sgemm cuts the others itself. */
static int conv_threads(const nn_conv_t *c)
{
    return c->threads > 0 ? c->threads : nn_get_threads();
}

static int is_pointwise(const nn_conv_t *c)
{
    return c->kh == 1 && c->kw == 1 && c->stride == 1 && c->pad == 0 && c->out_pad == 0;
}

/* ---- convolution ---- */

int nn_conv2d_init(nn_conv_t *c, int n, int cin, int h, int w, int cout, int kh, int kw, int stride,
                   int pad, int groups)
{
    memset(c, 0, sizeof *c);
    if (n < 1 || cin < 1 || h < 1 || w < 1 || cout < 1 || kh < 1 || kw < 1 || stride < 1 ||
        pad < 0 || groups < 1 || cin % groups || cout % groups)
        return -1;
    if (h + 2 * pad < kh || w + 2 * pad < kw) return -1;
    *c = (nn_conv_t){.n = n,
                     .cin = cin,
                     .h = h,
                     .w = w,
                     .cout = cout,
                     .kh = kh,
                     .kw = kw,
                     .stride = stride,
                     .pad = pad,
                     .groups = groups,
                     .hout = (h + 2 * pad - kh) / stride + 1,
                     .wout = (w + 2 * pad - kw) / stride + 1};
    c->batch_gemm = choose_batch(n, groups, (size_t)cin * kh * kw, (size_t)c->hout * c->wout);
    return 0;
}

size_t nn_conv2d_workspace(const nn_conv_t *c)
{
    size_t K = (size_t)(c->cin / c->groups) * c->kh * c->kw;
    size_t P = (size_t)c->hout * c->wout;
    const size_t nb = (size_t)images_per_gemm(c);
    if (nb > 1) return (K + (size_t)c->cout) * nb * P;
    return is_pointwise(c) ? 0 : K * P;
}

void nn_conv2d_forward(const nn_conv_t *c, float *out, const float *inp, const float *weight,
                       const float *bias, float *ws)
{
    const int G = c->groups, cg = c->cin / G, og = c->cout / G;
    const int K = cg * c->kh * c->kw, HW = c->h * c->w, P = c->hout * c->wout;
    assert(out && inp && weight && (ws || nn_conv2d_workspace(c) == 0));
    const int nb = images_per_gemm(c);
    if (nb > 1) {
        float *A = ws, *B = ws + (size_t)K * nb * P;
        for (int n0 = 0; n0 < c->n; n0 += nb) {
            const int cur = c->n - n0 < nb ? c->n - n0 : nb;
            const size_t ld = (size_t)cur * P;
            for (int i = 0; i < cur; i++)
                im2col(A + (size_t)i * P, ld, inp + (size_t)(n0 + i) * c->cin * HW, c->cin, c->h,
                       c->w, c->kh, c->kw, c->stride, c->pad, c->hout, c->wout);
            nn_sgemm(false, false, c->cout, (int)ld, K, 1.0f, weight, K, A, (int)ld, 0.0f, B,
                     (int)ld);
            scatter(out + (size_t)n0 * c->cout * P, B, bias, cur, c->cout, P, 0);
        }
        return;
    }
    const int direct = is_pointwise(c);
    for (int i = 0; i < c->n; i++) {
        for (int g = 0; g < G; g++) {
            const float *img = inp + ((size_t)i * c->cin + (size_t)g * cg) * HW;
            const float *col = img;
            if (!direct) {
                im2col(ws, (size_t)P, img, cg, c->h, c->w, c->kh, c->kw, c->stride, c->pad, c->hout,
                       c->wout);
                col = ws;
            }
            float *o = out + ((size_t)i * c->cout + (size_t)g * og) * P;
            const float *w = weight + (size_t)g * og * K;
            nn_sgemm(false, false, og, P, K, 1.0f, w, K, col, P, 0.0f, o, P);
            if (bias) add_bias(o, bias + (size_t)g * og, og, P);
        }
    }
}

/* ---- convolution with a pre-packed weight (nn_gemm) ----
 * The weight (Cout, K) is packed once; a chunk of nb images is im2col'd into
 * nb contiguous (K, P) matrices, then one batched product writes every
 * image's (Cout, P) output in place (no gather/scatter). */

size_t nn_conv2d_packed_size(const nn_conv_t *c)
{
    assert(c->groups == 1);
    return nn_gemm_packed_size(c->cout, c->cin * c->kh * c->kw);
}

void nn_conv2d_pack_weight(const nn_conv_t *c, float *pw, const float *weight)
{
    assert(c->groups == 1);
    const int K = c->cin * c->kh * c->kw;
    nn_gemm_pack_a(pw, false, c->cout, K, weight, K);
}

void nn_conv2d_forward_packed(const nn_conv_t *c, float *out, const float *inp, const float *pw,
                              const float *bias, float *ws)
{
    assert(c->groups == 1 && out && inp && pw && (ws || nn_conv2d_workspace(c) == 0));
    const int K = c->cin * c->kh * c->kw, HW = c->h * c->w, P = c->hout * c->wout;
    const size_t osz = (size_t)c->cout * P;
    const int threads = conv_threads(c);
    if (is_pointwise(c)) {
        nn_gemm_packed_batch(c->cout, P, K, pw, c->n, inp, (size_t)c->cin * HW, P, 0.0f, out, osz,
                             P, threads);
    } else {
        const int nb = images_per_gemm(c);
        for (int n0 = 0; n0 < c->n; n0 += nb) {
            const int cur = c->n - n0 < nb ? c->n - n0 : nb;
            for (int i = 0; i < cur; i++)
                im2col_par(ws + (size_t)i * K * P, (size_t)P, inp + (size_t)(n0 + i) * c->cin * HW,
                           c, threads);
            nn_gemm_packed_batch(c->cout, P, K, pw, cur, ws, (size_t)K * P, P, 0.0f,
                                 out + (size_t)n0 * osz, osz, P, threads);
        }
    }
    if (bias)
        for (int i = 0; i < c->n; i++) add_bias(out + (size_t)i * osz, bias, c->cout, P);
}

void nn_conv2d_backward(const nn_conv_t *c, float *dinp, float *dweight, float *dbias,
                        const float *dout, const float *inp, const float *weight, float *ws)
{
    const int G = c->groups, cg = c->cin / G, og = c->cout / G;
    const int K = cg * c->kh * c->kw, HW = c->h * c->w, P = c->hout * c->wout;
    assert(dout && inp && weight);
    if (dbias) bias_backward(dbias, dout, c->n, c->cout, P);
    if (!dinp && !dweight) return;
    assert(ws || nn_conv2d_workspace(c) == 0);
    const int nb = images_per_gemm(c);
    if (nb > 1) {
        float *A = ws, *B = ws + (size_t)K * nb * P;
        for (int n0 = 0; n0 < c->n; n0 += nb) {
            const int cur = c->n - n0 < nb ? c->n - n0 : nb;
            const size_t ld = (size_t)cur * P;
            const float *x = inp + (size_t)n0 * c->cin * HW;
            float *dx = dinp ? dinp + (size_t)n0 * c->cin * HW : NULL;
            gather(B, dout + (size_t)n0 * c->cout * P, cur, c->cout, 0, c->cout, P);
            if (dweight) {
                for (int i = 0; i < cur; i++)
                    im2col(A + (size_t)i * P, ld, x + (size_t)i * c->cin * HW, c->cin, c->h, c->w,
                           c->kh, c->kw, c->stride, c->pad, c->hout, c->wout);
                nn_sgemm(false, true, c->cout, K, (int)ld, 1.0f, B, (int)ld, A, (int)ld, 1.0f,
                         dweight, K);
            }
            if (dx) {
                nn_sgemm(true, false, K, (int)ld, c->cout, 1.0f, weight, K, B, (int)ld, 0.0f, A,
                         (int)ld);
                for (int i = 0; i < cur; i++)
                    col2im_add(dx + (size_t)i * c->cin * HW, A + (size_t)i * P, ld, c->cin, c->h,
                               c->w, c->kh, c->kw, c->stride, c->pad, c->hout, c->wout);
            }
        }
        return;
    }
    const int direct = is_pointwise(c);
    for (int i = 0; i < c->n; i++) {
        for (int g = 0; g < G; g++) {
            const size_t ioff = ((size_t)i * c->cin + (size_t)g * cg) * HW;
            const float *d = dout + ((size_t)i * c->cout + (size_t)g * og) * P;
            const float *w = weight + (size_t)g * og * K;
            if (dweight) {
                const float *col = inp + ioff;
                if (!direct) {
                    im2col(ws, (size_t)P, inp + ioff, cg, c->h, c->w, c->kh, c->kw, c->stride,
                           c->pad, c->hout, c->wout);
                    col = ws;
                }
                nn_sgemm(false, true, og, K, P, 1.0f, d, P, col, P, 1.0f,
                         dweight + (size_t)g * og * K, K);
            }
            if (dinp) {
                if (direct) {
                    nn_sgemm(true, false, K, P, og, 1.0f, w, K, d, P, 1.0f, dinp + ioff, P);
                } else {
                    nn_sgemm(true, false, K, P, og, 1.0f, w, K, d, P, 0.0f, ws, P);
                    col2im_add(dinp + ioff, ws, (size_t)P, cg, c->h, c->w, c->kh, c->kw, c->stride,
                               c->pad, c->hout, c->wout);
                }
            }
        }
    }
}

void nn_conv2d_forward_naive(const nn_conv_t *c, float *out, const float *inp, const float *weight,
                             const float *bias)
{
    const int G = c->groups, cg = c->cin / G, og = c->cout / G;
    for (int i = 0; i < c->n; i++)
        for (int co = 0; co < c->cout; co++)
            for (int oh = 0; oh < c->hout; oh++)
                for (int ow = 0; ow < c->wout; ow++) {
                    int g = co / og;
                    double s = bias ? bias[co] : 0.0;
                    for (int ci = 0; ci < cg; ci++)
                        for (int ki = 0; ki < c->kh; ki++)
                            for (int kj = 0; kj < c->kw; kj++) {
                                int ih = oh * c->stride - c->pad + ki;
                                int iw = ow * c->stride - c->pad + kj;
                                if (ih < 0 || ih >= c->h || iw < 0 || iw >= c->w) continue;
                                float x =
                                    inp[(((size_t)i * c->cin + g * cg + ci) * c->h + ih) * c->w +
                                        iw];
                                float wv =
                                    weight[(((size_t)co * cg + ci) * c->kh + ki) * c->kw + kj];
                                s += (double)x * wv;
                            }
                    out[(((size_t)i * c->cout + co) * c->hout + oh) * c->wout + ow] = (float)s;
                }
}

/* ---- transposed convolution ----
 * The adjoint of a convolution from (Cout, Hout, Wout) to (Cin, H, W) with the
 * same weight (Cin, Cout/g, KH, KW): that conv's K is Cout/g*KH*KW, its P is H*W. */

int nn_convt2d_init(nn_conv_t *c, int n, int cin, int h, int w, int cout, int kh, int kw,
                    int stride, int pad, int out_pad, int groups)
{
    memset(c, 0, sizeof *c);
    if (n < 1 || cin < 1 || h < 1 || w < 1 || cout < 1 || kh < 1 || kw < 1 || stride < 1 ||
        pad < 0 || out_pad < 0 || out_pad >= stride || groups < 1 || cin % groups || cout % groups)
        return -1;
    int hout = (h - 1) * stride - 2 * pad + kh + out_pad;
    int wout = (w - 1) * stride - 2 * pad + kw + out_pad;
    if (hout < 1 || wout < 1) return -1;
    *c = (nn_conv_t){.n = n,
                     .cin = cin,
                     .h = h,
                     .w = w,
                     .cout = cout,
                     .kh = kh,
                     .kw = kw,
                     .stride = stride,
                     .pad = pad,
                     .groups = groups,
                     .out_pad = out_pad,
                     .hout = hout,
                     .wout = wout};
    c->batch_gemm = choose_batch(n, groups, (size_t)cout * kh * kw, (size_t)h * w);
    return 0;
}

size_t nn_convt2d_workspace(const nn_conv_t *c)
{
    size_t K = (size_t)(c->cout / c->groups) * c->kh * c->kw;
    size_t P = (size_t)c->h * c->w;
    const size_t nb = (size_t)images_per_gemm(c);
    if (nb > 1) return (K + (size_t)c->cin) * nb * P;
    return is_pointwise(c) ? 0 : K * P;
}

void nn_convt2d_forward(const nn_conv_t *c, float *out, const float *inp, const float *weight,
                        const float *bias, float *ws)
{
    const int G = c->groups, cig = c->cin / G, cog = c->cout / G;
    const int K = cog * c->kh * c->kw, P = c->h * c->w, OP = c->hout * c->wout;
    const size_t out_n = (size_t)c->cout * OP;
    assert(out && inp && weight && (ws || nn_convt2d_workspace(c) == 0));
    /* The output is a sum of scattered columns: start from the bias (or 0). */
    for (int i = 0; i < c->n; i++) {
        float *o = out + i * out_n;
        if (bias) {
            for (int ch = 0; ch < c->cout; ch++)
                for (int j = 0; j < OP; j++) o[(size_t)ch * OP + j] = bias[ch];
        } else if (!(is_pointwise(c) && images_per_gemm(c) == 1)) {
            memset(o, 0, sizeof(float) * out_n);
        }
    }
    const int nb = images_per_gemm(c);
    if (nb > 1) {
        float *A = ws, *B = ws + (size_t)K * nb * P;
        for (int n0 = 0; n0 < c->n; n0 += nb) {
            const int cur = c->n - n0 < nb ? c->n - n0 : nb;
            const size_t ld = (size_t)cur * P;
            gather(B, inp + (size_t)n0 * c->cin * P, cur, c->cin, 0, c->cin, P);
            nn_sgemm(true, false, K, (int)ld, c->cin, 1.0f, weight, K, B, (int)ld, 0.0f, A,
                     (int)ld);
            for (int i = 0; i < cur; i++)
                col2im_add(out + (n0 + i) * out_n, A + (size_t)i * P, ld, c->cout, c->hout, c->wout,
                           c->kh, c->kw, c->stride, c->pad, c->h, c->w);
        }
        return;
    }
    const int direct = is_pointwise(c);
    for (int i = 0; i < c->n; i++) {
        for (int g = 0; g < G; g++) {
            const float *x = inp + ((size_t)i * c->cin + (size_t)g * cig) * P;
            const float *w = weight + (size_t)g * cig * K;
            float *o = out + i * out_n + (size_t)g * cog * OP;
            if (direct) {
                nn_sgemm(true, false, K, P, cig, 1.0f, w, K, x, P, bias ? 1.0f : 0.0f, o, P);
            } else {
                nn_sgemm(true, false, K, P, cig, 1.0f, w, K, x, P, 0.0f, ws, P);
                col2im_add(o, ws, (size_t)P, cog, c->hout, c->wout, c->kh, c->kw, c->stride, c->pad,
                           c->h, c->w);
            }
        }
    }
}

/* Transposed conv with the weight packed as the (Cout/g*KH*KW, Cin) left
 * operand W^T (groups == 1): per image, columns = W^T x, then col2im. */

size_t nn_convt2d_packed_size(const nn_conv_t *c)
{
    assert(c->groups == 1);
    return nn_gemm_packed_size(c->cout * c->kh * c->kw, c->cin);
}

void nn_convt2d_pack_weight(const nn_conv_t *c, float *pw, const float *weight)
{
    assert(c->groups == 1);
    const int K = c->cout * c->kh * c->kw;
    nn_gemm_pack_a(pw, true, K, c->cin, weight, K);
}

void nn_convt2d_forward_packed(const nn_conv_t *c, float *out, const float *inp, const float *pw,
                               const float *bias, float *ws)
{
    assert(c->groups == 1 && out && inp && pw && (ws || nn_convt2d_workspace(c) == 0));
    const int K = c->cout * c->kh * c->kw, P = c->h * c->w, OP = c->hout * c->wout;
    const size_t out_n = (size_t)c->cout * OP;
    const int threads = conv_threads(c);
    if (is_pointwise(c)) {
        nn_gemm_packed_batch(K, P, c->cin, pw, c->n, inp, (size_t)c->cin * P, P, 0.0f, out, out_n,
                             P, threads);
        if (bias)
            for (int i = 0; i < c->n; i++) add_bias(out + (size_t)i * out_n, bias, c->cout, OP);
        return;
    }
    for (int i = 0; i < c->n; i++) {
        float *o = out + i * out_n;
        if (bias) {
            for (int ch = 0; ch < c->cout; ch++)
                for (int j = 0; j < OP; j++) o[(size_t)ch * OP + j] = bias[ch];
        } else {
            memset(o, 0, sizeof(float) * out_n);
        }
        nn_gemm_packed(K, P, c->cin, pw, inp + (size_t)i * c->cin * P, P, 0.0f, ws, P, threads);
        col2im_add(o, ws, (size_t)P, c->cout, c->hout, c->wout, c->kh, c->kw, c->stride, c->pad,
                   c->h, c->w);
    }
}

void nn_convt2d_backward(const nn_conv_t *c, float *dinp, float *dweight, float *dbias,
                         const float *dout, const float *inp, const float *weight, float *ws)
{
    const int G = c->groups, cig = c->cin / G, cog = c->cout / G;
    const int K = cog * c->kh * c->kw, P = c->h * c->w, OP = c->hout * c->wout;
    const size_t out_n = (size_t)c->cout * OP;
    assert(dout && inp && weight);
    if (dbias) bias_backward(dbias, dout, c->n, c->cout, OP);
    if (!dinp && !dweight) return;
    assert(ws || nn_convt2d_workspace(c) == 0);
    const int nb = images_per_gemm(c);
    if (nb > 1) {
        float *A = ws, *B = ws + (size_t)K * nb * P;
        for (int n0 = 0; n0 < c->n; n0 += nb) {
            const int cur = c->n - n0 < nb ? c->n - n0 : nb;
            const size_t ld = (size_t)cur * P;
            for (int i = 0; i < cur; i++) /* dcol: the conv's im2col of dout */
                im2col(A + (size_t)i * P, ld, dout + (n0 + i) * out_n, c->cout, c->hout, c->wout,
                       c->kh, c->kw, c->stride, c->pad, c->h, c->w);
            if (dweight) {
                gather(B, inp + (size_t)n0 * c->cin * P, cur, c->cin, 0, c->cin, P);
                nn_sgemm(false, true, c->cin, K, (int)ld, 1.0f, B, (int)ld, A, (int)ld, 1.0f,
                         dweight, K);
            }
            if (dinp) {
                nn_sgemm(false, false, c->cin, (int)ld, K, 1.0f, weight, K, A, (int)ld, 0.0f, B,
                         (int)ld);
                scatter(dinp + (size_t)n0 * c->cin * P, B, NULL, cur, c->cin, P, 1);
            }
        }
        return;
    }
    const int direct = is_pointwise(c);
    for (int i = 0; i < c->n; i++) {
        for (int g = 0; g < G; g++) {
            const size_t ioff = ((size_t)i * c->cin + (size_t)g * cig) * P;
            const float *w = weight + (size_t)g * cig * K;
            const float *dcol = dout + i * out_n + (size_t)g * cog * OP;
            if (!direct) {
                im2col(ws, (size_t)P, dcol, cog, c->hout, c->wout, c->kh, c->kw, c->stride, c->pad,
                       c->h, c->w);
                dcol = ws;
            }
            if (dweight)
                nn_sgemm(false, true, cig, K, P, 1.0f, inp + ioff, P, dcol, P, 1.0f,
                         dweight + (size_t)g * cig * K, K);
            if (dinp) nn_sgemm(false, false, cig, P, K, 1.0f, w, K, dcol, P, 1.0f, dinp + ioff, P);
        }
    }
}

void nn_convt2d_forward_naive(const nn_conv_t *c, float *out, const float *inp, const float *weight,
                              const float *bias)
{
    const int G = c->groups, cig = c->cin / G, cog = c->cout / G;
    const size_t OP = (size_t)c->hout * c->wout;
    for (int i = 0; i < c->n; i++)
        for (int co = 0; co < c->cout; co++)
            for (size_t j = 0; j < OP; j++)
                out[((size_t)i * c->cout + co) * OP + j] = bias ? bias[co] : 0.0f;
    for (int i = 0; i < c->n; i++)
        for (int ci = 0; ci < c->cin; ci++) {
            int g = ci / cig;
            for (int ih = 0; ih < c->h; ih++)
                for (int iw = 0; iw < c->w; iw++) {
                    float x = inp[(((size_t)i * c->cin + ci) * c->h + ih) * c->w + iw];
                    for (int co = 0; co < cog; co++)
                        for (int ki = 0; ki < c->kh; ki++)
                            for (int kj = 0; kj < c->kw; kj++) {
                                int oh = ih * c->stride - c->pad + ki;
                                int ow = iw * c->stride - c->pad + kj;
                                if (oh < 0 || oh >= c->hout || ow < 0 || ow >= c->wout) continue;
                                float wv =
                                    weight[(((size_t)ci * cog + co) * c->kh + ki) * c->kw + kj];
                                out[(((size_t)i * c->cout + g * cog + co) * c->hout + oh) *
                                        c->wout +
                                    ow] += x * wv;
                            }
                }
        }
}

/* ---- reflection padding (PyTorch ReflectionPad2d: the edge is not repeated) ---- */

static int reflect(int x, int n)
{
    if (x < 0) return -x;
    if (x >= n) return 2 * (n - 1) - x;
    return x;
}

void nn_reflpad2d_forward(float *out, const float *inp, int n, int c, int h, int w, int p)
{
    assert(p >= 0 && p < h && p < w);
    const int ho = h + 2 * p, wo = w + 2 * p;
    for (size_t pl = 0; pl < (size_t)n * c; pl++) {
        const float *src = inp + pl * h * w;
        float *dst = out + pl * ho * wo;
        for (int oh = 0; oh < ho; oh++) {
            const float *srow = src + (size_t)reflect(oh - p, h) * w;
            float *drow = dst + (size_t)oh * wo;
            for (int j = 0; j < p; j++) drow[j] = srow[p - j];
            memcpy(drow + p, srow, sizeof(float) * (size_t)w);
            for (int j = 0; j < p; j++) drow[p + w + j] = srow[w - 2 - j];
        }
    }
}

void nn_reflpad2d_backward(float *dinp, const float *dout, int n, int c, int h, int w, int p)
{
    assert(p >= 0 && p < h && p < w);
    const int ho = h + 2 * p, wo = w + 2 * p;
    for (size_t pl = 0; pl < (size_t)n * c; pl++) {
        float *dst = dinp + pl * h * w;
        const float *src = dout + pl * ho * wo;
        for (int oh = 0; oh < ho; oh++) {
            float *drow = dst + (size_t)reflect(oh - p, h) * w;
            const float *srow = src + (size_t)oh * wo;
            for (int j = 0; j < p; j++) drow[p - j] += srow[j];
            for (int j = 0; j < w; j++) drow[j] += srow[p + j];
            for (int j = 0; j < p; j++) drow[w - 2 - j] += srow[p + w + j];
        }
    }
}
