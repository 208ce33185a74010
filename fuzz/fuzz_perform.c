/* libFuzzer target for the DeepPerform file loaders (core/perform):
 * perf_samples_load and perf_gen_load. They read a path, so each input is
 * written to a scratch file first and both loaders read it. Whatever the
 * input, they fail cleanly with a detail naming the file, or return an object
 * within the bounds they promise, which saves and loads again to the same
 * bits; a loaded generator also runs a forward (outputs in [-1, 1] or NaN).
 *
 * The generator memory limit is set to 128 MiB (perf_gen_set_memory_limit):
 * a file whose shape needs more (the loader's per-field bounds allow 4096
 * pixels and width 1024, gigabytes to terabytes) must be refused with an
 * error naming the file, before anything is allocated.
 *
 * Seeds: DP_FUZZ_PERFORM_SEEDS=DIR ./fuzz_perform writes small valid files
 * with the project's own writers (perf_samples_save, perf_gen_save) into DIR
 * and exits (fuzz/corpus/perform was made so).
 *
 * Scratch: one directory per run, $TMPDIR/dp-fuzz-XXXXXX, emptied after each
 * input and removed however the run ends. libFuzzer ends a crash, a timeout,
 * an out-of-memory or an interrupt with _Exit (atexit handlers do not run),
 * and a process can be killed: a watcher process, forked at start, waits
 * for the fuzzer's end (its pipe closes) and removes the directory; an atexit
 * handler does it at once on a normal exit. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include "nn/blas.h"
#include "perform/perform.h"
#include "util/utf8.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) __builtin_trap();                                                                \
    } while (0)

#define GEN_MEMORY_LIMIT ((size_t)128 << 20)

static char scratch[48], in_path[64], out_path[64];

static void remove_scratch(void)
{
    unlink(in_path);
    unlink(out_path);
    rmdir(scratch);
}

/* Forks the watcher: it holds the read end of a pipe whose write end only
 * this process holds (close-on-exec), so read() returns when this process
 * is gone, however it went; it ignores the signals that end a fuzzing
 * session (a group-wide ^C or kill reaches it too) and removes the scratch
 * directory. Without a watcher (fork failed) the atexit handler remains. */
static void start_watcher(void)
{
    int fds[2];
    if (pipe(fds)) return;
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return;
    }
    if (pid == 0) {
        close(fds[1]);
        signal(SIGINT, SIG_IGN), signal(SIGTERM, SIG_IGN), signal(SIGHUP, SIG_IGN);
        signal(SIGQUIT, SIG_IGN), signal(SIGPIPE, SIG_IGN);
        int null = open("/dev/null", O_RDWR); /* let go of the fuzzer's output pipes */
        if (null >= 0) dup2(null, 0), dup2(null, 1), dup2(null, 2);
        char c;
        ssize_t r;
        do r = read(fds[0], &c, 1);
        while (r > 0 || (r < 0 && errno == EINTR));
        remove_scratch();
        _exit(0);
    }
    close(fds[0]);
    fcntl(fds[1], F_SETFD, FD_CLOEXEC); /* the write end stays open until this process ends */
}

static void write_file(const char *path, const void *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    CHECK(f);
    CHECK(fwrite(data, 1, size, f) == size);
    CHECK(fclose(f) == 0);
}

static void bits_same(const void *a, const void *b, size_t n) { CHECK(!n || !memcmp(a, b, n)); }

static void check_samples(const perf_samples_t *s)
{
    CHECK(s->n >= 1 && s->c >= 1 && s->c <= 64 && s->h >= 1 && s->h <= 4096 && s->w >= 1 &&
          s->w <= 4096);
    CHECK((unsigned)s->method <= PERF_METHOD_DEEPSLOTH);
    CHECK(s->budget.norm == PERF_NORM_LINF || s->budget.norm == PERF_NORM_L2);
    CHECK(s->budget.eps > 0 && (s->budget.l2_at_most == 0 || s->budget.l2_at_most == 1));
    CHECK(memchr(s->model, '\0', sizeof s->model) && dp_utf8_valid(s->model, strlen(s->model)));
    /* no NaN or infinity reaches the metrics */
    CHECK(isfinite(s->budget.eps) && isfinite(s->flops_full) && s->flops_full > 0);
    CHECK(isfinite(s->seconds) && s->seconds >= 0);
    for (int i = 0; i < s->n; i++)
        CHECK(isfinite(s->flops_seed[i]) && s->flops_seed[i] >= 0 && isfinite(s->flops_adv[i]) &&
              s->flops_adv[i] >= 0);
    /* save, load again: the same set */
    CHECK(perf_samples_save(s, out_path) == DP_OK);
    perf_samples_t *t = NULL;
    CHECK(perf_samples_load(out_path, &t) == DP_OK);
    CHECK(t->n == s->n && t->c == s->c && t->h == s->h && t->w == s->w);
    CHECK(t->method == s->method && !strcmp(t->model, s->model));
    bits_same(&t->budget.eps, &s->budget.eps, sizeof s->budget.eps);
    CHECK(t->budget.norm == s->budget.norm && t->budget.l2_at_most == s->budget.l2_at_most);
    bits_same(&t->flops_full, &s->flops_full, sizeof s->flops_full);
    bits_same(&t->seconds, &s->seconds, sizeof s->seconds);
    size_t n = (size_t)s->n, img = n * (size_t)s->c * (size_t)s->h * (size_t)s->w;
    bits_same(t->seed_index, s->seed_index, n * sizeof *s->seed_index);
    bits_same(t->xadv, s->xadv, img * sizeof *s->xadv);
    bits_same(t->delta_norm, s->delta_norm, n * sizeof *s->delta_norm);
    bits_same(t->psnr, s->psnr, n * sizeof *s->psnr);
    bits_same(t->flops_seed, s->flops_seed, n * sizeof *s->flops_seed);
    bits_same(t->flops_adv, s->flops_adv, n * sizeof *s->flops_adv);
    perf_samples_destroy(&t);
}

static void check_gen(perf_gen_t *g, const perf_budget_t *b)
{
    const perf_gen_config_t *c = perf_gen_config(g);
    CHECK(c->c >= 1 && c->h >= 13 && c->w >= 13 && c->width >= 1 && c->inference_only);
    CHECK(b->eps >= (float)1e-9 && b->eps <= 1e6f);
    CHECK(b->norm == PERF_NORM_LINF || b->norm == PERF_NORM_L2);
    CHECK(isfinite(c->slope) && isfinite(c->res_slope));
    CHECK(b->l2_at_most == 0 || b->l2_at_most == 1);
    CHECK(b->linf_scaled == 0 || b->linf_scaled == 1);
    /* save, load again: the same tensors, config and budget */
    CHECK(perf_gen_save(g, b, out_path) == DP_OK);
    perf_gen_t *h = NULL;
    perf_budget_t b2;
    CHECK(perf_gen_load(out_path, 1, &h, &b2) == DP_OK);
    const perf_gen_config_t *d = perf_gen_config(h);
    CHECK(d->c == c->c && d->h == c->h && d->w == c->w && d->width == c->width);
    bits_same(&d->slope, &c->slope, sizeof c->slope);
    bits_same(&d->res_slope, &c->res_slope, sizeof c->res_slope);
    CHECK(b2.norm == b->norm && b2.l2_at_most == b->l2_at_most && b2.linf_scaled == b->linf_scaled);
    bits_same(&b2.eps, &b->eps, sizeof b->eps);
    CHECK(perf_gen_num_tensors(h) == perf_gen_num_tensors(g));
    for (int i = 0; i < perf_gen_num_tensors(g); i++) {
        const perf_gen_tensor_t *x = perf_gen_tensor(g, i), *y = perf_gen_tensor(h, i);
        CHECK(x->numel == y->numel && !strcmp(x->name, y->name));
        bits_same(x->data, y->data, x->numel * sizeof(float));
    }
    perf_gen_destroy(&h);
    /* it runs: tanh outputs */
    size_t len = (size_t)c->c * (size_t)c->h * (size_t)c->w;
    float *x = calloc(len, sizeof *x), *y = calloc(len, sizeof *y);
    CHECK(x && y);
    for (size_t i = 0; i < len; i++) x[i] = (float)(i % 7) / 7.0f;
    perf_gen_forward(g, x, 1, y, 0);
    for (size_t i = 0; i < len; i++) CHECK(isnan(y[i]) || fabsf(y[i]) <= 1.0f);
    free(x);
    free(y);
}

static void write_seeds(const char *dir)
{
    char path[4096];
    perf_samples_t *s = perf_samples_new(2, 1, 4, 4);
    CHECK(s);
    for (int i = 0; i < 2 * 16; i++) s->xadv[i] = (float)i / 32.0f;
    for (int i = 0; i < 2; i++) {
        s->seed_index[i] = 7 + i;
        s->delta_norm[i] = 0.05f;
        s->psnr[i] = 30.0f + (float)i;
        s->flops_seed[i] = 1e6;
        s->flops_adv[i] = 1.5e6;
    }
    s->flops_full = 2e6, s->seconds = 0.25, s->method = PERF_METHOD_RANDOM;
    s->budget = (perf_budget_t){PERF_NORM_L2, 0.5f, 1, 0};
    snprintf(s->model, sizeof s->model, "sdn_resnet_fmnist");
    snprintf(path, sizeof path, "%s/samples_2x1x4x4.st", dir);
    CHECK(perf_samples_save(s, path) == DP_OK);
    perf_samples_destroy(&s);

    perf_gen_config_t c = perf_gen_config_default();
    c.h = c.w = 13, c.width = 1, c.max_batch = 1, c.inference_only = 1;
    perf_gen_t *g = perf_gen_new(&c);
    CHECK(g);
    perf_budget_t b = {PERF_NORM_LINF, 0.09f, 0, 0};
    snprintf(path, sizeof path, "%s/gen_1x13x13_w1.st", dir);
    CHECK(perf_gen_save(g, &b, path) == DP_OK);
    perf_gen_destroy(&g);
    printf("seeds written to %s\n", dir);
    exit(0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    nn_set_threads(1);
    perf_gen_set_memory_limit(GEN_MEMORY_LIMIT);
    const char *seeds = getenv("DP_FUZZ_PERFORM_SEEDS");
    if (seeds) write_seeds(seeds);
    const char *tmp = getenv("TMPDIR");
    snprintf(scratch, sizeof scratch, "%s/dp-fuzz-XXXXXX", tmp && strlen(tmp) < 30 ? tmp : "/tmp");
    CHECK(mkdtemp(scratch));
    snprintf(in_path, sizeof in_path, "%s/in.st", scratch);
    snprintf(out_path, sizeof out_path, "%s/out.st", scratch);
    atexit(remove_scratch);
    start_watcher();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    write_file(in_path, data, size);
    perf_samples_t *s = (perf_samples_t *)&size;
    dp_err_t err = perf_samples_load(in_path, &s);
    if (err) {
        CHECK(!s && strstr(dp_err_detail(), in_path));
    } else {
        check_samples(s);
        perf_samples_destroy(&s);
    }
    perf_gen_t *g = (perf_gen_t *)&size;
    perf_budget_t b;
    err = perf_gen_load(in_path, 1, &g, &b);
    if (err) {
        CHECK(!g && strstr(dp_err_detail(), in_path));
    } else {
        check_gen(g, &b);
        perf_gen_destroy(&g);
    }
    unlink(in_path); /* nothing of an input outlives it */
    unlink(out_path);
    return 0;
}
