/* bench_gemm: OpenBLAS sgemm GFLOP/s over square sizes (peak = best seen), then
 * our conv2d / transposed-conv forward (im2col + sgemm + scatter, all included)
 * on the DeepPerform generator's layer shapes for 1x28x28 at width 64, at batch
 * 1 and 64, as GFLOP/s and fraction of that peak; then the same for the
 * backward (dinp, dweight, dbias). Batch 64 runs both the per-image and the
 * whole-batch sgemm paths. The conv shapes as single products also run through
 * nn_gemm_packed (weight packed once beforehand, as the generator does) on the
 * same thread count, beside OpenBLAS.
 *
 * Usage: bench_gemm [threads] [min_seconds_per_point]   (threads 0 = all cores) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/blas.h"
#include "nn/conv.h"
#include "nn/gemm.h"
#include "util/clock.h"
#include "util/rng.h"

static double min_time = 0.25;

static float *rand_buf(dp_rng_t *r, size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) p[i] = 2.0f * dp_rng_uniform(r) - 1.0f;
    return p;
}

/* Best seconds per call of fn over >= min_time total (after one warm-up call). */
typedef void (*bench_fn)(void *ctx);
static double best_time(bench_fn fn, void *ctx)
{
    fn(ctx);
    double best = 1e30, start = dp_clock_s();
    int reps = 0;
    while (reps < 3 || dp_clock_s() - start < min_time) {
        double t0 = dp_clock_s();
        fn(ctx);
        double t = dp_clock_s() - t0;
        if (t < best) best = t;
        reps++;
    }
    return best;
}

typedef struct gemm_ctx {
    int m, n, k;
    float *a, *b, *c;
} gemm_ctx_t;

static void run_gemm(void *p)
{
    gemm_ctx_t *g = p;
    nn_sgemm(false, false, g->m, g->n, g->k, 1.0f, g->a, g->k, g->b, g->n, 0.0f, g->c, g->n);
}

static double gemm_gflops(dp_rng_t *r, int m, int n, int k)
{
    gemm_ctx_t g = {m,
                    n,
                    k,
                    rand_buf(r, (size_t)m * k),
                    rand_buf(r, (size_t)k * n),
                    rand_buf(r, (size_t)m * n)};
    double t = best_time(run_gemm, &g);
    free(g.a);
    free(g.b);
    free(g.c);
    return 2.0 * m * n * k / t * 1e-9;
}

typedef struct packed_ctx {
    int m, n, k, threads;
    float *pa, *b, *c;
} packed_ctx_t;

static void run_packed(void *p)
{
    packed_ctx_t *g = p;
    nn_gemm_packed(g->m, g->n, g->k, g->pa, g->b, g->n, 0.0f, g->c, g->n, g->threads);
}

/* GFLOP/s of nn_gemm_packed on an (m,k) weight packed once. */
static double packed_gflops(dp_rng_t *r, int m, int n, int k, int threads)
{
    float *a = rand_buf(r, (size_t)m * k);
    packed_ctx_t g = {
        m, n, k, threads, NULL, rand_buf(r, (size_t)k * n), rand_buf(r, (size_t)m * n)};
    void *pa = NULL;
    if (posix_memalign(&pa, 64, nn_gemm_packed_size(m, k) * sizeof(float))) exit(1);
    g.pa = pa;
    nn_gemm_pack_a(g.pa, false, m, k, a, k);
    double t = best_time(run_packed, &g);
    free(a);
    free(g.pa);
    free(g.b);
    free(g.c);
    return 2.0 * m * n * k / t * 1e-9;
}

typedef struct layer {
    const char *name;
    int transposed;
    int cin, h, w, cout, k, stride, pad;
} layer_t;

/* Generator at 1x28x28, w = 64 (core/perform/generator.h). Residual convs are
 * reflect-pad 1 then conv p0: the same arithmetic as conv p1 on 5x5. */
static const layer_t layers[] = {
    {"enc1 1->64 3x3 s1 28x28", 0, 1, 28, 28, 64, 3, 1, 0},
    {"enc2 64->128 3x3 s2 26x26", 0, 64, 26, 26, 128, 3, 2, 0},
    {"enc3 128->256 3x3 s2 12x12", 0, 128, 12, 12, 256, 3, 2, 0},
    {"res 256->512 3x3 7x7(pad)", 0, 256, 7, 7, 512, 3, 1, 0},
    {"res 512->512 3x3 7x7(pad)", 0, 512, 7, 7, 512, 3, 1, 0},
    {"res 512->256 3x3 7x7(pad)", 0, 512, 7, 7, 256, 3, 1, 0},
    {"short 256->512 1x1 5x5", 0, 256, 5, 5, 512, 1, 1, 0},
    {"dec1 T 256->128 3x3 s2 5x5", 1, 256, 5, 5, 128, 3, 2, 0},
    {"dec2 T 128->64 3x3 s2 11x11", 1, 128, 11, 11, 64, 3, 2, 0},
    {"dec3 T 64->1 6x6 s1 23x23", 1, 64, 23, 23, 1, 6, 1, 0},
};

typedef struct conv_ctx {
    nn_conv_t c;
    int transposed, backward;
    float *inp, *w, *b, *out, *ws, *dinp, *dw, *db;
} conv_ctx_t;

static void run_conv(void *p)
{
    conv_ctx_t *x = p;
    if (x->backward && x->transposed)
        nn_convt2d_backward(&x->c, x->dinp, x->dw, x->db, x->out, x->inp, x->w, x->ws);
    else if (x->backward)
        nn_conv2d_backward(&x->c, x->dinp, x->dw, x->db, x->out, x->inp, x->w, x->ws);
    else if (x->transposed)
        nn_convt2d_forward(&x->c, x->out, x->inp, x->w, x->b, x->ws);
    else
        nn_conv2d_forward(&x->c, x->out, x->inp, x->w, x->b, x->ws);
}

/* GFLOP/s of one layer's forward (or backward: dinp, dweight, dbias; twice the
 * forward's multiply-adds) at batch n; batch_gemm < 0 keeps the init's choice. */
static double conv_gflops(dp_rng_t *r, const layer_t *L, int n, int backward, int batch_gemm,
                          double *ms, int *used_batch_gemm)
{
    conv_ctx_t x = {.transposed = L->transposed, .backward = backward};
    int rc = L->transposed ? nn_convt2d_init(&x.c, n, L->cin, L->h, L->w, L->cout, L->k, L->k,
                                             L->stride, L->pad, 0, 1)
                           : nn_conv2d_init(&x.c, n, L->cin, L->h, L->w, L->cout, L->k, L->k,
                                            L->stride, L->pad, 1);
    if (rc != 0) {
        fprintf(stderr, "bad layer %s\n", L->name);
        exit(1);
    }
    if (batch_gemm >= 0) x.c.batch_gemm = batch_gemm;
    *used_batch_gemm = x.c.batch_gemm;
    size_t ni = (size_t)n * L->cin * L->h * L->w;
    size_t no = (size_t)n * L->cout * x.c.hout * x.c.wout;
    size_t nw = (size_t)L->cin * L->cout * L->k * L->k;
    size_t nws = L->transposed ? nn_convt2d_workspace(&x.c) : nn_conv2d_workspace(&x.c);
    x.inp = rand_buf(r, ni);
    x.w = rand_buf(r, nw);
    x.b = rand_buf(r, (size_t)L->cout);
    x.out = rand_buf(r, no);
    x.ws = rand_buf(r, nws);
    if (backward) {
        x.dinp = rand_buf(r, ni);
        x.dw = rand_buf(r, nw);
        x.db = rand_buf(r, (size_t)L->cout);
    }
    double t = best_time(run_conv, &x);
    /* multiply-adds: every (input pixel, weight) pair for convT, every
     * (output pixel, weight) pair for conv (borders counted as in the usual
     * 2*Cin*Cout*k*k*Hout*Wout convention) */
    double macs = L->transposed ? (double)n * L->cin * L->h * L->w * L->cout * L->k * L->k
                                : (double)n * L->cin * x.c.hout * x.c.wout * L->cout * L->k * L->k;
    free(x.inp);
    free(x.w);
    free(x.b);
    free(x.out);
    free(x.ws);
    free(x.dinp);
    free(x.dw);
    free(x.db);
    *ms = t * 1e3;
    return (backward ? 4.0 : 2.0) * macs / t * 1e-9;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 0;
    if (argc > 2) min_time = atof(argv[2]);
    nn_set_threads(threads);
    dp_rng_t r;
    dp_rng_seed(&r, 1);
    printf("threads %d, min %.2f s per point\n\n", nn_get_threads(), min_time);

    printf("sgemm (row-major, NN)        GFLOP/s\n");
    double peak = 0.0;
    static const int sq[] = {256, 512, 1024, 1536, 2048};
    for (size_t i = 0; i < sizeof sq / sizeof sq[0]; i++) {
        double g = gemm_gflops(&r, sq[i], sq[i], sq[i]);
        if (g > peak) peak = g;
        printf("  %4d x %4d x %4d          %7.1f\n", sq[i], sq[i], sq[i], g);
    }
    printf("peak (best square)           %7.1f\n\n", peak);

    printf("generator conv shapes as one sgemm (M=Cout, N=P, K=Cin*k*k)\n");
    static const int gs[][3] = {{64, 676, 9},    {128, 144, 576}, {256, 25, 1152},
                                {512, 25, 2304}, {512, 25, 4608}, {512, 1600, 4608},
                                {256, 9216, 576}};
    for (size_t i = 0; i < sizeof gs / sizeof gs[0]; i++) {
        double g = gemm_gflops(&r, gs[i][0], gs[i][1], gs[i][2]);
        printf("  M %4d N %5d K %5d        %7.1f  (%.2f of peak)\n", gs[i][0], gs[i][1], gs[i][2],
               g, g / peak);
    }
    printf("\nthe same through nn_gemm_packed (%s kernel, weight packed once)\n",
           nn_gemm_path_name(nn_gemm_get_path()));
    for (size_t i = 0; i < sizeof gs / sizeof gs[0]; i++) {
        double g = packed_gflops(&r, gs[i][0], gs[i][1], gs[i][2], nn_get_threads());
        printf("  M %4d N %5d K %5d        %7.1f  (%.2f of peak)\n", gs[i][0], gs[i][1], gs[i][2],
               g, g / peak);
    }

    for (int backward = 0; backward <= 1; backward++) {
        printf(
            "\nconv %s (incl. im2col/col2im, bias)  batch  path  imgs     ms  GFLOP/s  of peak\n",
            backward ? "backward" : "forward ");
        for (size_t i = 0; i < sizeof layers / sizeof layers[0]; i++) {
            const int batches[] = {1, 64};
            for (int b = 0; b < 2; b++) {
                /* batch 1: init's choice; batch 64: per image, init's choice (auto), all
                 * 64 images in one sgemm */
                static const int modes[] = {0, -1, 64};
                static const char *names[] = {"image", "auto", "full"};
                for (int m = batches[b] == 1 ? 1 : 0; m < (batches[b] == 1 ? 2 : 3); m++) {
                    double ms;
                    int used;
                    double g =
                        conv_gflops(&r, &layers[i], batches[b], backward, modes[m], &ms, &used);
                    printf("  %-38s %5d  %-5s %3d %8.3f %8.1f   %5.2f\n", layers[i].name,
                           batches[b], names[m], used > 1 ? used : 1, ms, g, g / peak);
                }
            }
        }
    }
    return 0;
}
