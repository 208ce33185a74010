/* nn_gemm_packed: C = PA * B + beta*C with a pre-packed left operand, and the
 * persistent worker pool that splits it over threads.
 *
 * Packing layout (NN_GEMM_MR = 16): panel p of PA is rows [16p, 16p+16) of
 * op(A), stored k-major: PA[p*16*K + kk*16 + r] = op(A)[16p + r][kk]; the
 * last panel's rows past M are zero. One panel is 16*K contiguous floats,
 * read once, front to back, per micro-kernel call.
 *
 * Micro-kernel: a 16 x nr tile of C over the whole K, one 16-float vector of
 * the panel against nr broadcast scalars of a row of B per k (AVX-512: nr <=
 * 28 accumulators, so one call covers the 25 output pixels of a 5x5 map;
 * AVX2+FMA: nr <= 6 in two ymm halves; portable C: nr <= 8). B is read in
 * place (row stride ldb, no packing): for the thin products here (N = 25) a
 * row of B is 100 bytes and all of B stays in L2 while the weight streams
 * through once. The tile is written column by column into a small buffer,
 * then stored transposed into C (once per tile, not per k).
 *
 * Each C element is summed over k in order by one thread whatever the thread
 * count; the AVX paths use FMA, the portable path multiply-then-add, so paths
 * differ in the last bits but a path is deterministic. */
#include "nn/gemm.h"

#include "nn/blas.h"

#include <assert.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define NN_GEMM_X86 1
#include <immintrin.h>
#endif

#define NR_512      28
#define NR_AVX2     6
#define NR_PORTABLE 8
#define NR_MAX      28
/* Below this many multiply-adds per thread, fewer threads. */
#define MIN_MACS_PER_THREAD ((size_t)1 << 18)

/* ---------------------------------------------------------------- kernels */

/* Each kernel: t (nr, 16) = the 16 x nr tile of PA_panel (16,K) * B[:, 0..nr). */
typedef void (*kern_fn)(int nr, int k, const float *pa, const float *b, int ldb, float *t);

static void kern_portable(int nr, int k, const float *pa, const float *b, int ldb, float *t)
{
    float acc[NR_PORTABLE][NN_GEMM_MR];
    assert(nr >= 1 && nr <= NR_PORTABLE);
    memset(acc, 0, sizeof acc);
    for (int p = 0; p < k; p++) {
        const float *ap = pa + (size_t)p * NN_GEMM_MR, *bp = b + (size_t)p * ldb;
        for (int j = 0; j < nr; j++) {
            const float bv = bp[j];
            for (int r = 0; r < NN_GEMM_MR; r++) acc[j][r] += ap[r] * bv;
        }
    }
    memcpy(t, acc, sizeof(float) * NN_GEMM_MR * (size_t)nr);
}

#ifdef NN_GEMM_X86
__attribute__((target("avx2,fma"), always_inline)) static inline void
k256_body(const int nr, int k, const float *pa, const float *b, int ldb, float *t)
{
    __m256 lo[NR_AVX2], hi[NR_AVX2];
#pragma GCC unroll 6
    for (int j = 0; j < nr; j++) lo[j] = hi[j] = _mm256_setzero_ps();
    for (int p = 0; p < k; p++) {
        const __m256 a0 = _mm256_load_ps(pa + (size_t)p * NN_GEMM_MR);
        const __m256 a1 = _mm256_load_ps(pa + (size_t)p * NN_GEMM_MR + 8);
        const float *bp = b + (size_t)p * ldb;
#pragma GCC unroll 6
        for (int j = 0; j < nr; j++) {
            const __m256 bv = _mm256_broadcast_ss(bp + j);
            lo[j] = _mm256_fmadd_ps(a0, bv, lo[j]);
            hi[j] = _mm256_fmadd_ps(a1, bv, hi[j]);
        }
    }
#pragma GCC unroll 6
    for (int j = 0; j < nr; j++) {
        _mm256_store_ps(t + NN_GEMM_MR * j, lo[j]);
        _mm256_store_ps(t + NN_GEMM_MR * j + 8, hi[j]);
    }
}

__attribute__((target("avx2,fma"))) static void kern_avx2(int nr, int k, const float *pa,
                                                          const float *b, int ldb, float *t)
{
    assert(nr >= 1 && nr <= NR_AVX2);
    switch (nr) {
#define K256_CASE(n)                                                                               \
    case n:                                                                                        \
        k256_body(n, k, pa, b, ldb, t);                                                            \
        break;
        // clang-format off
        K256_CASE(1) K256_CASE(2) K256_CASE(3) K256_CASE(4) K256_CASE(5) K256_CASE(6)
        // clang-format on
#undef K256_CASE
    }
}

__attribute__((target("avx512f"), always_inline)) static inline void
k512_body(const int nr, int k, const float *pa, const float *b, int ldb, float *t)
{
    __m512 acc[NR_512];
#pragma GCC unroll 28
    for (int j = 0; j < nr; j++) acc[j] = _mm512_setzero_ps();
    for (int p = 0; p < k; p++) {
        const __m512 a = _mm512_load_ps(pa + (size_t)p * NN_GEMM_MR);
        const float *bp = b + (size_t)p * ldb;
#pragma GCC unroll 28
        for (int j = 0; j < nr; j++) acc[j] = _mm512_fmadd_ps(a, _mm512_set1_ps(bp[j]), acc[j]);
    }
#pragma GCC unroll 28
    for (int j = 0; j < nr; j++) _mm512_store_ps(t + NN_GEMM_MR * j, acc[j]);
}

__attribute__((target("avx512f"))) static void kern_avx512(int nr, int k, const float *pa,
                                                           const float *b, int ldb, float *t)
{
    assert(nr >= 1 && nr <= NR_512);
    switch (nr) {
#define K512_CASE(n)                                                                               \
    case n:                                                                                        \
        k512_body(n, k, pa, b, ldb, t);                                                            \
        break;
        // clang-format off
        K512_CASE(1) K512_CASE(2) K512_CASE(3) K512_CASE(4) K512_CASE(5) K512_CASE(6) K512_CASE(7)
        K512_CASE(8) K512_CASE(9) K512_CASE(10) K512_CASE(11) K512_CASE(12) K512_CASE(13) K512_CASE(14)
        K512_CASE(15) K512_CASE(16) K512_CASE(17) K512_CASE(18) K512_CASE(19) K512_CASE(20) K512_CASE(21)
        K512_CASE(22) K512_CASE(23) K512_CASE(24) K512_CASE(25) K512_CASE(26) K512_CASE(27) K512_CASE(28)
        // clang-format on
#undef K512_CASE
    }
}
#endif

/* --------------------------------------------------------------- dispatch */

static int path_supported(nn_gemm_path_t p)
{
    switch (p) {
    case NN_GEMM_PORTABLE:
        return 1;
#ifdef NN_GEMM_X86
    case NN_GEMM_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case NN_GEMM_AVX512:
        return __builtin_cpu_supports("avx512f");
#endif
    default:
        return 0;
    }
}

static _Atomic int g_path = -1;

static nn_gemm_path_t choose_path(void)
{
    const char *env = getenv("DP_GEMM");
    static const char *const names[] = {"portable", "avx2", "avx512"};
    if (env) {
        for (int p = 0; p < 3; p++)
            if (strcmp(env, names[p]) == 0 && path_supported((nn_gemm_path_t)p))
                return (nn_gemm_path_t)p;
    }
    if (path_supported(NN_GEMM_AVX512)) return NN_GEMM_AVX512;
    if (path_supported(NN_GEMM_AVX2)) return NN_GEMM_AVX2;
    return NN_GEMM_PORTABLE;
}

nn_gemm_path_t nn_gemm_get_path(void)
{
    int p = atomic_load(&g_path);
    if (p < 0) {
        p = (int)choose_path();
        atomic_store(&g_path, p);
    }
    return (nn_gemm_path_t)p;
}

int nn_gemm_set_path(nn_gemm_path_t path)
{
    if (!path_supported(path)) return -1;
    atomic_store(&g_path, (int)path);
    return 0;
}

const char *nn_gemm_path_name(nn_gemm_path_t path)
{
    switch (path) {
    case NN_GEMM_AVX512:
        return "avx512";
    case NN_GEMM_AVX2:
        return "avx2";
    default:
        return "portable";
    }
}

static void path_kernel(nn_gemm_path_t p, kern_fn *fn, int *nrmax)
{
#ifdef NN_GEMM_X86
    if (p == NN_GEMM_AVX512) {
        *fn = kern_avx512, *nrmax = NR_512;
        return;
    }
    if (p == NN_GEMM_AVX2) {
        *fn = kern_avx2, *nrmax = NR_AVX2;
        return;
    }
#endif
    (void)p;
    *fn = kern_portable, *nrmax = NR_PORTABLE;
}

/* ---------------------------------------------------------------- packing */

size_t nn_gemm_packed_size(int m, int k)
{
    assert(m >= 0 && k >= 0);
    return (size_t)((m + NN_GEMM_MR - 1) / NN_GEMM_MR) * NN_GEMM_MR * (size_t)k;
}

void nn_gemm_pack_a(float *pa, bool trans_a, int m, int k, const float *a, int lda)
{
    assert(m >= 0 && k >= 0 && lda >= 1 && lda >= (trans_a ? m : k));
    const int np = (m + NN_GEMM_MR - 1) / NN_GEMM_MR;
    for (int p = 0; p < np; p++) {
        float *dst = pa + (size_t)p * NN_GEMM_MR * k;
        const int r0 = p * NN_GEMM_MR, mr = m - r0 < NN_GEMM_MR ? m - r0 : NN_GEMM_MR;
        if (trans_a) { /* op(A)[r][kk] = a[kk*lda + r]: rows of a are contiguous groups */
            for (int kk = 0; kk < k; kk++) {
                float *d = dst + (size_t)kk * NN_GEMM_MR;
                memcpy(d, a + (size_t)kk * lda + r0, sizeof(float) * (size_t)mr);
                for (int r = mr; r < NN_GEMM_MR; r++) d[r] = 0.0f;
            }
        } else {
            for (int r = 0; r < NN_GEMM_MR; r++) {
                const float *src = a + (size_t)(r0 + r) * lda;
                for (int kk = 0; kk < k; kk++)
                    dst[(size_t)kk * NN_GEMM_MR + r] = r < mr ? src[kk] : 0.0f;
            }
        }
    }
}

/* ---------------------------------------------------------------- driver */

typedef struct gemm_job {
    int m, n, k, nb, ncp, nrmax;
    const float *pa, *b;
    size_t sb, sc;
    int ldb, ldc;
    float beta;
    float *c;
    kern_fn kern;
} gemm_job_t;

/* C (mr, nr) = t^T + beta*C; t is (nr, 16). */
static void store_tile(const float *t, int mr, int nr, float beta, float *c, int ldc)
{
    for (int r = 0; r < mr; r++) {
        float *cr = c + (size_t)r * ldc;
        const float *tr = t + r;
        if (beta == 0.0f) {
            for (int j = 0; j < nr; j++) cr[j] = tr[NN_GEMM_MR * j];
        } else if (beta == 1.0f) {
            for (int j = 0; j < nr; j++) cr[j] += tr[NN_GEMM_MR * j];
        } else {
            for (int j = 0; j < nr; j++) cr[j] = tr[NN_GEMM_MR * j] + beta * cr[j];
        }
    }
}

/* One unit: row panel p, every image and column panel. */
static void gemm_task(void *ctx, int p)
{
    const gemm_job_t *j = ctx;
    _Alignas(64) float tile[NR_MAX * NN_GEMM_MR];
    {
        const float *ap = j->pa + (size_t)p * NN_GEMM_MR * j->k;
        const int r0 = p * NN_GEMM_MR, mr = j->m - r0 < NN_GEMM_MR ? j->m - r0 : NN_GEMM_MR;
        for (int i = 0; i < j->nb; i++) {
            const float *bi = j->b + (size_t)i * j->sb;
            float *ci = j->c + (size_t)i * j->sc + (size_t)r0 * j->ldc;
            for (int q = 0, j0 = 0; q < j->ncp; q++) {
                const int w = j->n / j->ncp + (q < j->n % j->ncp);
                if (j->k > 0)
                    j->kern(w, j->k, ap, bi + j0, j->ldb, tile);
                else
                    memset(tile, 0, sizeof(float) * NN_GEMM_MR * (size_t)w);
                store_tile(tile, mr, w, j->beta, ci + j0, j->ldc);
                j0 += w;
            }
        }
    }
}

void nn_gemm_packed_batch(int m, int n, int k, const float *pa, int nb, const float *b,
                          size_t stride_b, int ldb, float beta, float *c, size_t stride_c, int ldc,
                          int threads)
{
    assert(m >= 0 && n >= 0 && k >= 0 && nb >= 0);
    assert(ldb >= n && ldb >= 1 && ldc >= n && ldc >= 1);
    assert(((uintptr_t)pa & 63) == 0);
    if (m == 0 || n == 0 || nb == 0) return;
    gemm_job_t j = {.m = m,
                    .n = n,
                    .k = k,
                    .nb = nb,
                    .pa = pa,
                    .b = b,
                    .sb = stride_b,
                    .sc = stride_c,
                    .ldb = ldb,
                    .ldc = ldc,
                    .beta = beta,
                    .c = c};
    path_kernel(nn_gemm_get_path(), &j.kern, &j.nrmax);
    j.ncp = (n + j.nrmax - 1) / j.nrmax;
    const int np = (m + NN_GEMM_MR - 1) / NN_GEMM_MR;
    const size_t macs = (size_t)m * n * (size_t)k * (size_t)nb;
    int nt = threads < np ? threads : np;
    while (nt > 1 && macs / (size_t)nt < MIN_MACS_PER_THREAD) nt--;
    nn_parallel_for(np, nt, gemm_task, &j);
}

void nn_gemm_packed(int m, int n, int k, const float *pa, const float *b, int ldb, float beta,
                    float *c, int ldc, int threads)
{
    nn_gemm_packed_batch(m, n, k, pa, 1, b, 0, ldb, beta, c, 0, ldc, threads);
}

/* ------------------------------------------------------------------- pool
 * Units are claimed one at a time from a counter tagged with the job's
 * number, so a worker that wakes late finds nothing left instead of holding
 * the caller up, and the caller waits only for units in progress. Workers
 * spin for a while after a job (the next product of a forward pass comes
 * ~0.1 ms later), then sleep on a condition variable. One job at a time: a
 * second caller (or a unit calling back in) runs its units alone. */

#define POOL_MAX   16
#define POOL_SPINS 20000 /* pause loops before sleeping */

static struct {
    pthread_mutex_t run_mu; /* held for a whole job */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int nworkers;       /* started, numbered 1..nworkers */
    unsigned job;       /* number of the current job (under run_mu) */
    atomic_uint gen;    /* last published job number */
    atomic_ullong next; /* (job << 32) | next unit */
    atomic_int done;    /* units finished */
    nn_par_fn fn;       /* the job, valid while a claim succeeds */
    void *ctx;
    atomic_int nunits;
    atomic_int nt;
} g_pool = {.run_mu = PTHREAD_MUTEX_INITIALIZER,
            .mu = PTHREAD_MUTEX_INITIALIZER,
            .cv = PTHREAD_COND_INITIALIZER};

static inline void cpu_relax(void)
{
#ifdef NN_GEMM_X86
    _mm_pause();
#endif
}

/* Claims and runs units of job number `job` until none is left. */
static void pool_claim(unsigned job)
{
    for (;;) {
        unsigned long long v = atomic_load_explicit(&g_pool.next, memory_order_acquire);
        if ((unsigned)(v >> 32) != job) return;
        const int u = (int)(v & 0xffffffffu);
        if (u >= atomic_load_explicit(&g_pool.nunits, memory_order_relaxed)) return;
        if (!atomic_compare_exchange_weak_explicit(&g_pool.next, &v, v + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        g_pool.fn(g_pool.ctx, u); /* job still open: its fields are stable */
        atomic_fetch_add_explicit(&g_pool.done, 1, memory_order_release);
    }
}

static void *pool_worker(void *arg)
{
    const int id = (int)(intptr_t)arg;
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        long spins = 0;
        while ((g = atomic_load_explicit(&g_pool.gen, memory_order_acquire)) == seen) {
            if (++spins < POOL_SPINS) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&g_pool.mu);
            while (atomic_load(&g_pool.gen) == seen) pthread_cond_wait(&g_pool.cv, &g_pool.mu);
            pthread_mutex_unlock(&g_pool.mu);
            spins = 0;
        }
        seen = g;
        if (id < atomic_load(&g_pool.nt)) pool_claim(g);
    }
    return NULL;
}

void nn_parallel_for(int nunits, int nt, nn_par_fn fn, void *ctx)
{
    if (nt > POOL_MAX) nt = POOL_MAX;
    if (nt > nunits) nt = nunits;
    /* units see a thread count of 1: a nested call runs inline */
    const int caller_threads = nn_get_threads();
    nn_set_threads(1);
    if (nt <= 1 || pthread_mutex_trylock(&g_pool.run_mu) != 0) {
        for (int u = 0; u < nunits; u++) fn(ctx, u);
        nn_set_threads(caller_threads);
        return;
    }
    while (g_pool.nworkers < nt - 1) { /* first use: start the workers */
        pthread_t tid;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        const int ok =
            pthread_create(&tid, &attr, pool_worker, (void *)(intptr_t)(g_pool.nworkers + 1)) == 0;
        pthread_attr_destroy(&attr);
        if (!ok) break;
        g_pool.nworkers++;
    }
    const unsigned job = ++g_pool.job;
    /* Close the counter under the new job's tag before changing the job's
     * fields: a worker still in pool_claim for the last job may hold a
     * stale counter value whose unit number is below the new nunits, and
     * its compare-exchange would succeed while the old tag is there, running
     * a unit of the new job twice and miscounting `done`. The closed
     * counter's unit, INT_MAX, is past any job's units. */
    atomic_store_explicit(&g_pool.next, ((unsigned long long)job << 32) | 0x7fffffffu,
                          memory_order_release);
    g_pool.fn = fn, g_pool.ctx = ctx;
    atomic_store(&g_pool.nunits, nunits);
    atomic_store(&g_pool.nt, nt);
    atomic_store(&g_pool.done, 0);
    atomic_store_explicit(&g_pool.next, (unsigned long long)job << 32, memory_order_release);
    pthread_mutex_lock(&g_pool.mu);
    atomic_store_explicit(&g_pool.gen, job, memory_order_release);
    pthread_cond_broadcast(&g_pool.cv);
    pthread_mutex_unlock(&g_pool.mu);
    pool_claim(job);
    for (long spins = 0; atomic_load_explicit(&g_pool.done, memory_order_acquire) < nunits;) {
        if (++spins < 4096) {
            cpu_relax();
        } else {
            sched_yield();
            spins = 0;
        }
    }
    pthread_mutex_unlock(&g_pool.run_mu);
    nn_set_threads(caller_threads);
}
