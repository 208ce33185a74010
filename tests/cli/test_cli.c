/* The command-line tools of cli/ run for real: each check starts the built
 * dp-perform, dp-store, dp-zoo or dp-cnn as a child process (posix_spawn,
 * stdout and stderr into files of the test's own temporary directory) and
 * asserts on its exit status, its messages and the files it wrote. A child
 * killed by a signal (a crash, a sanitizer abort) fails the test, and so does
 * one still running after CHILD_TIMEOUT_S.
 *
 * - dp-perform end to end on tiny settings: a one-epoch generator on 64
 *   images, generation and the three baselines on 16 seeds, evaluate --json;
 *   ILFO at batch 1 and 4 must give the same bits.
 * - For every tool: --help, then tables of wrong flags (exit 2, nothing on
 *   stdout, stderr naming the flag) and wrong paths or files (missing,
 *   garbage, truncated, another model's weights, images of the wrong shape:
 *   the exact exit status, stderr naming the file).
 * - dp-store on file:// only (no server): put/get/ls/stat/rm round trips of
 *   real bytes; s3:// without credentials or with a bad endpoint.
 *
 * In an argument or an expected message, "@/" stands for the temporary
 * directory ("file://@/s" is "file:///tmp/dp-cli-XXXXXX/s"). */
#define _GNU_SOURCE /* nftw */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "data/dataset.h"
#include "nn/blas.h"
#include "nn/safetensors.h"
#include "perform/perform.h"
#include "util/json.h"
#include "util/utf8.h"

extern char **environ;

#define PERFORM   DP_BINARY_DIR "/cli/dp-perform"
#define STORE     DP_BINARY_DIR "/cli/dp-store"
#define ZOO       DP_BINARY_DIR "/cli/dp-zoo"
#define CNN       DP_BINARY_DIR "/cli/dp-cnn"
#define SDN       DP_SOURCE_DIR "/models/sdn_resnet"
#define BLOCKDROP DP_SOURCE_DIR "/models/blockdrop"
#define FMNIST    "/usr/share/datasets/fashion-mnist"

#define MAX_ARGS        40
#define CHILD_TIMEOUT_S 120

/* ------------------------------------------------------------- temp dir */

static char g_dir[64];

static void setup(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/dp-cli-XXXXXX");
    cr_assert_not_null(mkdtemp(g_dir), "mkdtemp: %s", strerror(errno));
}

static int remove_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static void teardown(void)
{
    if (g_dir[0]) nftw(g_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* s with every "@/" replaced by the temporary directory and '/'; a new
 * string, caller frees. */
static char *expand(const char *s)
{
    size_t n = 0, dl = strlen(g_dir);
    for (const char *p = s; (p = strstr(p, "@/")); p += 2) n++;
    char *out = malloc(strlen(s) + n * dl + 1), *o = out;
    cr_assert_not_null(out);
    for (const char *p = s; *p;) {
        if (p[0] == '@' && p[1] == '/') {
            memcpy(o, g_dir, dl);
            o += dl;
            p++; /* the '/' is copied below */
        }
        *o++ = *p++;
    }
    *o = '\0';
    return out;
}

/* The path of name in the temporary directory; one of 8 rotating buffers. */
static const char *tmp(const char *name)
{
    static char buf[8][4096];
    static int next;
    char *b = buf[next++ % 8];
    snprintf(b, sizeof buf[0], "%s/%s", g_dir, name);
    return b;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    size_t cap = 4096, n = 0, k;
    char *b = malloc(cap);
    while (b && (k = fread(b + n, 1, cap - n - 1, f)) > 0)
        if ((n += k) + 1 == cap) b = realloc(b, cap *= 2);
    cr_assert_not_null(b);
    fclose(f);
    b[n] = '\0';
    if (len) *len = n;
    return b;
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    cr_assert_eq(fwrite(data, 1, len, f), len);
    cr_assert_eq(fclose(f), 0);
}

static void copy_file(const char *from, const char *to, size_t max_len)
{
    size_t n;
    char *b = slurp(from, &n);
    write_file(to, b, n < max_len ? n : max_len);
    free(b);
}

static int exists(const char *path) { return access(path, F_OK) == 0; }

static void need_fmnist(void)
{
    if (!exists(FMNIST "/t10k-images-idx3-ubyte.gz")) cr_skip_test("Fashion-MNIST not installed");
}

/* ------------------------------------------------------------- children */

typedef struct proc {
    int status;      /* exit status */
    char *out, *err; /* all of stdout and stderr, NUL-terminated */
    size_t out_len;
    char cmd[2048]; /* the command line, for messages */
} proc_t;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Runs argv (NULL-terminated, "@/" expanded) with stdin from in_path
 * (NULL: /dev/null) and waits for it. Fails the test on a signal or a
 * timeout; the caller frees with proc_free. */
static proc_t run_in(const char *in_path, const char *const *argv)
{
    static int seq;
    proc_t p = {0};
    char *args[MAX_ARGS + 1] = {0};
    size_t cl = 0;
    for (int i = 0; argv[i]; i++) {
        cr_assert_lt(i, MAX_ARGS);
        args[i] = expand(argv[i]);
        if (cl < sizeof p.cmd)
            cl += (size_t)snprintf(p.cmd + cl, sizeof p.cmd - cl, "%s%s", i ? " " : "",
                                   i ? args[i] : strrchr(args[0], '/') + 1);
    }
    char out_path[128], err_path[128];
    snprintf(out_path, sizeof out_path, "%s/.stdout.%d", g_dir, seq);
    snprintf(err_path, sizeof err_path, "%s/.stderr.%d", g_dir, seq++);
    char *in = expand(in_path ? in_path : "/dev/null");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, in, O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid;
    int e = posix_spawn(&pid, args[0], &fa, NULL, args, environ);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(e, 0, "%s: posix_spawn: %s", p.cmd, strerror(e));
    int st = 0;
    double t0 = now_s();
    for (;;) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid) break;
        cr_assert_eq(w, 0, "waitpid: %s", strerror(errno));
        if (now_s() - t0 > CHILD_TIMEOUT_S) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            cr_assert_fail("%s: still running after %d s, killed", p.cmd, CHILD_TIMEOUT_S);
        }
        nanosleep(&(struct timespec){0, 2000000}, NULL);
    }
    p.out = slurp(out_path, &p.out_len);
    p.err = slurp(err_path, NULL);
    cr_assert(!WIFSIGNALED(st), "%s: killed by signal %d (%s)\nstderr:\n%s", p.cmd, WTERMSIG(st),
              strsignal(WTERMSIG(st)), p.err);
    cr_assert(WIFEXITED(st), "%s: did not exit", p.cmd);
    p.status = WEXITSTATUS(st);
    for (int i = 0; args[i]; i++) free(args[i]);
    free(in);
    return p;
}

#define ARGV(...) ((const char *const[]){__VA_ARGS__, NULL})
#define RUN(...)  run_in(NULL, ARGV(__VA_ARGS__))

static void proc_free(proc_t *p)
{
    free(p->out);
    free(p->err);
    p->out = p->err = NULL;
}

static void expect_status(const proc_t *p, int status)
{
    cr_assert_eq(p->status, status, "%s: exit status %d, expected %d\nstdout:\n%s\nstderr:\n%s",
                 p->cmd, p->status, status, p->out, p->err);
}

static void expect_in(const proc_t *p, const char *text, const char *which, const char *needle)
{
    char *n = expand(needle);
    cr_assert_not_null(strstr(text, n), "%s: %s lacks \"%s\":\n%s", p->cmd, which, n, text);
    free(n);
}

#define expect_err(p, needle) expect_in(p, (p)->err, "stderr", needle)
#define expect_out(p, needle) expect_in(p, (p)->out, "stdout", needle)

static void expect_ok(const proc_t *p)
{
    expect_status(p, 0);
    cr_assert_str_empty(p->err, "%s: stderr not empty:\n%s", p->cmd, p->err);
}

/* One way to get a tool wrong: its arguments, the exit status and a text
 * stderr must hold. */
typedef struct bad_case {
    int status;
    const char *needle;
    const char *argv[MAX_ARGS];
} bad_case_t;

/* Runs each case: the status, the needle and the tool's name on stderr, and
 * nothing on stdout (errors go to stderr). */
static void run_cases(const char *tool, const bad_case_t *c, size_t n)
{
    const char *name = strrchr(tool, '/') + 1;
    for (size_t i = 0; i < n; i++) {
        const char *argv[MAX_ARGS + 2] = {tool};
        for (int j = 0; j < MAX_ARGS && c[i].argv[j]; j++) argv[j + 1] = c[i].argv[j];
        proc_t p = run_in(NULL, argv);
        expect_status(&p, c[i].status);
        expect_err(&p, c[i].needle);
        expect_err(&p, name);
        cr_assert_eq(p.out_len, 0, "%s: an error, yet stdout holds:\n%s", p.cmd, p.out);
        proc_free(&p);
    }
}

#define RUN_CASES(tool, cases) run_cases(tool, cases, sizeof cases / sizeof cases[0])

/* ------------------------------------------------------------- fixtures */

/* Raw (not gzip'd) IDX files DIR/SPLIT-images-idx3-ubyte.gz and -labels-: the
 * reader takes raw bytes under the .gz name. Pixels from src (n, h, w) when
 * given, else a fixed pattern. */
static void write_idx(const char *dir, const char *split, uint32_t n, uint32_t h, uint32_t w,
                      const dp_dataset_t *src)
{
    char p[4096];
    size_t np = (size_t)n * h * w;
    uint8_t *b = malloc(16 + np);
    cr_assert_not_null(b);
    uint32_t hdr[4] = {0x803, n, h, w};
    for (int k = 0; k < 4; k++)
        for (int j = 0; j < 4; j++) b[4 * k + j] = (uint8_t)(hdr[k] >> (24 - 8 * j));
    for (size_t i = 0; i < np; i++)
        b[16 + i] = src ? (uint8_t)lroundf(src->images[i] * 255.0f) : (uint8_t)(i * 37 % 251);
    snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte.gz", dir, split);
    write_file(p, b, 16 + np);
    hdr[0] = 0x801;
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < 4; j++) b[4 * k + j] = (uint8_t)(hdr[k] >> (24 - 8 * j));
    for (uint32_t i = 0; i < n; i++) b[8 + i] = src ? (uint8_t)src->labels[i] : (uint8_t)(i % 10);
    snprintf(p, sizeof p, "%s/%s-labels-idx1-ubyte.gz", dir, split);
    write_file(p, b, 8 + n);
    free(b);
}

/* @/d10: 10x10 images (no model of the zoo takes them); @/d28: 28x28. */
static void make_pattern_sets(void)
{
    cr_assert_eq(mkdir(tmp("d10"), 0755), 0);
    cr_assert_eq(mkdir(tmp("d28"), 0755), 0);
    write_idx(tmp("d10"), "train", 64, 10, 10, NULL);
    write_idx(tmp("d10"), "t10k", 32, 10, 10, NULL);
    write_idx(tmp("d28"), "train", 64, 28, 28, NULL);
    write_idx(tmp("d28"), "t10k", 32, 28, 28, NULL);
}

/* Model prefixes in the temporary directory that fail to load, each in its
 * own way; the names say how. */
static void make_bad_models(void)
{
    static const char garbage[] = "\x12\x34 this is not a model \xff\xfe\x00\x01";
    write_file(tmp("garbage_pb.pb"), garbage, sizeof garbage);
    cr_assert_eq(symlink(SDN ".safetensors", tmp("garbage_pb.safetensors")), 0);
    copy_file(SDN ".pb", tmp("garbage_st.pb"), SIZE_MAX);
    write_file(tmp("garbage_st.safetensors"), garbage, sizeof garbage);
    copy_file(SDN ".pb", tmp("truncated.pb"), SIZE_MAX);
    copy_file(SDN ".safetensors", tmp("truncated.safetensors"), 400000);
    copy_file(SDN ".pb", tmp("mixed.pb"), SIZE_MAX); /* BlockDrop's weights */
    cr_assert_eq(symlink(BLOCKDROP ".safetensors", tmp("mixed.safetensors")), 0);
    write_file(tmp("empty.pb"), "", 0);
    cr_assert_eq(symlink(SDN ".safetensors", tmp("empty.safetensors")), 0);
}

/* The bad models and what a load of each must report. */
static const struct {
    const char *prefix, *needle;
} bad_models[] = {
    {"@/nope", "cannot load the model: not found: @/nope.pb"},
    {"@/garbage_pb", "@/garbage_pb.pb: not a dp.v1.ModelSpec protobuf"},
    {"@/garbage_st", "cannot load the model: value out of range: @/garbage_st.safetensors"},
    {"@/truncated", "cannot load the model: truncated data: @/truncated.safetensors"},
    {"@/mixed", "cannot load the model: mismatch: @/mixed.safetensors: the sdn-resnet model of "
                "@/mixed.pb needs 202065 weights, the file holds 195208"},
    {"@/empty", "@/empty.pb: ModelSpec has no input shape"},
};

/* A safetensors file with metadata only (key, value pairs up to NULL). */
static void write_meta_only(const char *path, const char *const *kv)
{
    st_writer_t *w = st_writer_new();
    cr_assert_not_null(w);
    for (int i = 0; kv[i]; i += 2) cr_assert_eq(st_writer_set_metadata(w, kv[i], kv[i + 1]), DP_OK);
    cr_assert_eq(st_writer_write(w, path), DP_OK, "%s", dp_err_detail());
    st_writer_destroy(&w);
}

#define GEN_META(fmt, h, width)                                                                    \
    ARGV("format", fmt, "c", "1", "h", h, "w", h, "width", width, "slope", "0.01", "res_slope",    \
         "0.01", "norm", "linf", "eps", "0.09", "l2_at_most", "0")

/* ------------------------------------------------------------- JSON rows */

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++;
    return p;
}

/* The rows of a flat JSON array of flat objects (dp-perform evaluate --json):
 * checks '[', objects separated by single commas, ']' and nothing after. Each
 * row is a new string in rows[], caller frees; returns the count. */
static int json_rows(const char *s, char **rows, int max)
{
    const char *p = skip_ws(s);
    cr_assert_eq(*p, '[', "not a JSON array:\n%s", s);
    p = skip_ws(p + 1);
    int n = 0;
    while (*p != ']') {
        cr_assert_eq(*p, '{', "row %d does not start with '{':\n%s", n, s);
        const char *q = strchr(p, '}');
        cr_assert_not_null(q, "unterminated row %d:\n%s", n, s);
        cr_assert_lt(n, max);
        rows[n++] = strndup(p, (size_t)(q - p + 1));
        p = skip_ws(q + 1);
        if (*p == ',') {
            p = skip_ws(p + 1);
            cr_assert_eq(*p, '{', "a comma not followed by a row:\n%s", s);
        } else {
            cr_assert_eq(*p, ']', "rows not separated by commas:\n%s", s);
        }
    }
    cr_assert_eq(*skip_ws(p + 1), '\0', "text after the array:\n%s", s);
    return n;
}

/* The raw value text of "key" in row (up to ',' or '}'), into buf. */
static const char *json_raw(const char *row, const char *key, char *buf, size_t cap)
{
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = strstr(row, k);
    cr_assert_not_null(p, "row lacks key \"%s\": %s", key, row);
    p += strlen(k);
    size_t n = strcspn(p, ",}");
    cr_assert_lt(n, cap);
    memcpy(buf, p, n);
    buf[n] = '\0';
    return buf;
}

static double json_num(const char *row, const char *key)
{
    char buf[64], *end;
    json_raw(row, key, buf, sizeof buf);
    double v = strtod(buf, &end);
    cr_assert(end != buf && *end == '\0' && isfinite(v), "\"%s\" is not a number: %s", key, row);
    return v;
}

/* A string value, without its quotes. */
static const char *json_text(const char *row, const char *key, char *buf, size_t cap)
{
    json_raw(row, key, buf, cap);
    size_t n = strlen(buf);
    cr_assert(n >= 2 && buf[0] == '"' && buf[n - 1] == '"', "\"%s\" is not a string: %s", key, row);
    memmove(buf, buf + 1, n - 2);
    buf[n - 2] = '\0';
    return buf;
}

/* ------------------------------------------------------------- --help */

TestSuite(cli_help, .init = setup, .fini = teardown);

Test(cli_help, every_tool)
{
    static const struct {
        const char *tool, *arg, *usage;
    } h[] = {
        {PERFORM, "--help", "usage: dp-perform train"}, {PERFORM, "-h", "usage: dp-perform"},
        {STORE, "--help", "usage: dp-store [options]"}, {STORE, "-h", "usage: dp-store"},
        {ZOO, "--help", "usage: dp-zoo train"},         {ZOO, "-h", "usage: dp-zoo"},
        {CNN, "--help", "usage: dp-cnn [options]"},     {CNN, "-h", "usage: dp-cnn"},
    };
    for (size_t i = 0; i < sizeof h / sizeof h[0]; i++) {
        proc_t p = RUN(h[i].tool, h[i].arg);
        expect_ok(&p);
        cr_assert_eq(strncmp(p.out, h[i].usage, strlen(h[i].usage)), 0,
                     "%s: stdout does not start with \"%s\":\n%s", p.cmd, h[i].usage, p.out);
        proc_free(&p);
    }
    /* after a command too, and with the options the text documents */
    proc_t p = RUN(PERFORM, "train", "--help");
    expect_ok(&p);
    expect_out(&p, "--train-n N");
    expect_out(&p, "--method random|ilfo|deepsloth");
    proc_free(&p);
    p = RUN(ZOO, "eval", "--help");
    expect_ok(&p);
    expect_out(&p, "Families: sdn-resnet");
    proc_free(&p);
    p = RUN(STORE, "--help");
    expect_out(&p, "exit status: 0 ok, 1 failed, 2 usage, 3 not found (the object or its bucket),");
    proc_free(&p);
}

/* ------------------------------------------------------------- dp-perform */

TestSuite(cli_perform, .init = setup, .fini = teardown);

#define TRAIN_ARGS "train", "--model", SDN, "--norm", "linf", "--eps", "0.09", "--out", "@/g.st"
#define BASELINE_ARGS                                                                              \
    "baseline", "--model", SDN, "--method", "random", "--norm", "linf", "--eps", "0.09", "--out",  \
        "@/x.st", "--seeds", "4"
#define GENERATE_ARGS                                                                              \
    "generate", "--model", SDN, "--gen", "@/g.st", "--out", "@/x.st", "--seeds", "4"

Test(cli_perform, usage_errors)
{
    static const bad_case_t cases[] = {
        {2, "usage: dp-perform train", {NULL}},
        {2, "dp-perform: unknown command 'frob'", {"frob", "--model", SDN}},
        {2, "dp-perform: unknown command '--batch'", {"--batch", "0"}},
        {2, "dp-perform train: unrecognized option '--bogus'", {"train", "--bogus"}},
        {2, "dp-perform baseline: option '--eps' requires an argument", {BASELINE_ARGS, "--eps"}},
        /* required options */
        {2, "dp-perform train: --model is required", {"train", "--out", "@/g.st"}},
        {2, "dp-perform train: --out is required", {"train", "--model", SDN}},
        {2, "--norm and --eps is required", {"train", "--model", SDN, "--out", "@/g.st"}},
        {2,
         "--norm and --eps is required",
         {"train", "--model", SDN, "--out", "@/g", "--norm", "l2"}},
        {2, "dp-perform generate: --gen is required", {"generate", "--model", SDN, "--out", "@/x"}},
        {2,
         "dp-perform generate: --model is required",
         {"generate", "--gen", "@/g", "--out", "@/x"}},
        {2, "dp-perform generate: --out is required", {"generate", "--model", SDN, "--gen", "@/g"}},
        {2,
         "dp-perform baseline: --method is required",
         {"baseline", "--model", SDN, "--out", "@/x"}},
        {2,
         "dp-perform baseline: --norm and --eps is required",
         {"baseline", "--model", SDN, "--method", "ilfo", "--out", "@/x", "--eps", "0.1"}},
        {2, "dp-perform evaluate: no sample files", {"evaluate", "--json"}},
        /* values */
        {2, "--method is random, ilfo or deepsloth", {BASELINE_ARGS, "--method", "foo"}},
        {2, "--method is random, ilfo or deepsloth", {BASELINE_ARGS, "--method", "deepperform"}},
        {2, "--norm is linf or l2, got 'foo'", {BASELINE_ARGS, "--norm", "foo"}},
        {2, "--eps expects a number in [1e-09, 1e+06], got '-1'", {BASELINE_ARGS, "--eps", "-1"}},
        {2, "--eps expects a number in [1e-09, 1e+06], got '0'", {BASELINE_ARGS, "--eps", "0"}},
        {2, "--eps expects a number in [1e-09, 1e+06], got 'abc'", {BASELINE_ARGS, "--eps", "abc"}},
        {2, "--eps expects a number in [1e-09, 1e+06], got 'nan'", {BASELINE_ARGS, "--eps", "nan"}},
        {2, "--eps expects a number in [1e-09, 1e+06], got 'inf'", {BASELINE_ARGS, "--eps", "inf"}},
        {2,
         "--eps expects a number in [1e-09, 1e+06], got '0.1x'",
         {BASELINE_ARGS, "--eps", "0.1x"}},
        {2, "--batch expects an integer in [1, 4096], got '0'", {BASELINE_ARGS, "--batch", "0"}},
        {2,
         "--batch expects an integer in [1, 4096], got '4097'",
         {BASELINE_ARGS, "--batch", "4097"}},
        {2,
         "--batch expects an integer in [1, 4096], got 'abc'",
         {BASELINE_ARGS, "--batch", "abc"}},
        {2,
         "--batch expects an integer in [1, 4096], got '12x'",
         {BASELINE_ARGS, "--batch", "12x"}},
        {2, "--batch expects an integer in [1, 4096], got ''", {BASELINE_ARGS, "--batch", ""}},
        {2,
         "--batch expects an integer in [1, 4096], got '99999999999999999999999'",
         {BASELINE_ARGS, "--batch", "99999999999999999999999"}},
        {2,
         "--seeds expects an integer in [1, 16777216], got '0'",
         {BASELINE_ARGS, "--seeds", "0"}},
        {2,
         "--seed-offset expects an integer in [0, 16777216], got '-1'",
         {BASELINE_ARGS, "--seed-offset", "-1"}},
        {2, "--iters expects an integer in [1, 1000000], got '0'", {BASELINE_ARGS, "--iters", "0"}},
        {2,
         "--seed expects an integer in [0, 2147483647], got '-1'",
         {BASELINE_ARGS, "--seed", "-1"}},
        {2,
         "--threads expects an integer in [0, 256], got '-1'",
         {BASELINE_ARGS, "--threads", "-1"}},
        {2,
         "--idpb expects a number in [0, 1], got '1.5'",
         {"evaluate", "--idpb", "1.5", "@/x.st"}},
        {2, "--width expects an integer in [8, 256], got '3'", {TRAIN_ARGS, "--width", "3"}},
        {2, "--width expects an integer in [8, 256], got '257'", {TRAIN_ARGS, "--width", "257"}},
        {2, "--epochs expects an integer in [1, 100000], got '0'", {TRAIN_ARGS, "--epochs", "0"}},
        {2,
         "--patience expects an integer in [1, 100000], got '0'",
         {TRAIN_ARGS, "--patience", "0"}},
        {2,
         "--lr-step1 expects an integer in [1, 100000], got '0'",
         {TRAIN_ARGS, "--lr-step1", "0"}},
        {2, "--lr expects a number in [1e-09, 1], got '2'", {TRAIN_ARGS, "--lr", "2"}},
        {2, "--alpha expects a number in [0, 1e+06], got '-1'", {TRAIN_ARGS, "--alpha", "-1"}},
        {2, "--beta expects a number in [0, 1e+06], got 'x'", {TRAIN_ARGS, "--beta", "x"}},
        {2,
         "--adv-margin expects a number in [0, 1], got '1.5'",
         {TRAIN_ARGS, "--adv-margin", "1.5"}},
        {2,
         "--train-n expects an integer in [2, 16777216], got '1'",
         {TRAIN_ARGS, "--train-n", "1"}},
        {2, "--val-n expects an integer in [1, 16777216], got '0'", {TRAIN_ARGS, "--val-n", "0"}},
        {2,
         "--time-limit expects a number in [0, 1e+09], got '-5'",
         {TRAIN_ARGS, "--time-limit", "-5"}},
        /* combinations */
        {2,
         "dp-perform train: --batch must be >= 2 for training, got 1",
         {TRAIN_ARGS, "--batch", "1"}},
        {2, "dp-perform train: --adv-hinge needs --adv-margin X > 0", {TRAIN_ARGS, "--adv-hinge"}},
        {2,
         "dp-perform train: --linf-scaled applies to --norm linf only",
         {"train", "--model", "@/m", "--norm", "l2", "--eps", "1", "--out", "@/g.st",
          "--linf-scaled"}},
        {2,
         "dp-perform train: --train-n (8) must be at least --batch (32)",
         {TRAIN_ARGS, "--train-n", "8"}},
        {2, "dp-perform generate: unexpected argument 'extra'", {GENERATE_ARGS, "extra"}},
        {2, "dp-perform train: unexpected argument 'x.st'", {TRAIN_ARGS, "x.st"}},
    };
    RUN_CASES(PERFORM, cases);
    cr_assert_not(exists(tmp("x.st")) || exists(tmp("g.st")), "a failed command wrote its output");
}

/* Paths and files that cannot be used; none needs Fashion-MNIST (the model
 * loads first, and the images of the wrong shape are made here). */
Test(cli_perform, bad_files)
{
    make_bad_models();
    make_pattern_sets();
    for (size_t i = 0; i < sizeof bad_models / sizeof bad_models[0]; i++) {
        proc_t p = RUN(PERFORM, "baseline", "--model", bad_models[i].prefix, "--method", "random",
                       "--norm", "linf", "--eps", "0.09", "--out", "@/x.st");
        expect_status(&p, 1);
        expect_err(&p, bad_models[i].needle);
        proc_free(&p);
    }
    write_file(tmp("garbage.st"), "garbage", 7);
    write_meta_only(tmp("eps.st"), ARGV("format", "dp.perform.samples.v1", "method", "random",
                                        "norm", "linf", "model", "m", "eps", "-1", "l2_at_most",
                                        "0", "flops_full", "1", "seconds", "0"));
    static const bad_case_t cases[] = {
        {1, "dp-perform: @/nope.st: not found: @/nope.st", {"evaluate", "@/nope.st"}},
        {1, "dp-perform: @/garbage.st: truncated data: @/garbage.st", {"evaluate", "@/garbage.st"}},
        {1, "not a sample set (metadata)", {"evaluate", SDN ".safetensors"}},
        {1, "@/eps.st: budget eps -1, l2_at_most 0 out of range", {"evaluate", "@/eps.st"}},
        {1,
         "dp-perform: the images in @/d10 are 1x10x10, the model expects 1x28x28",
         {BASELINE_ARGS, "--data-dir", "@/d10"}},
        {1,
         "dp-perform: the images in @/d10 are 1x10x10, the model expects 1x28x28",
         {TRAIN_ARGS, "--data-dir", "@/d10", "--train-n", "16", "--val-n", "8", "--batch", "4"}},
        {1,
         "dp-perform: cannot load Fashion-MNIST: not found: @/none/t10k-images-idx3-ubyte.gz",
         {BASELINE_ARGS, "--data-dir", "@/none"}},
        {1,
         "cannot load Fashion-MNIST: not found: @/none/train-images-idx3-ubyte.gz",
         {TRAIN_ARGS, "--data-dir", "@/none"}},
        {1,
         "dp-perform train: --train-n + --val-n exceed 64 images",
         {TRAIN_ARGS, "--data-dir", "@/d28", "--train-n", "60", "--val-n", "5", "--batch", "4"}},
        {1,
         "dp-perform: seeds [30, 34) exceed the 32 test images",
         {BASELINE_ARGS, "--data-dir", "@/d28", "--seed-offset", "30"}},
        {1,
         "dp-perform: --out @/no/dir/x.st: the directory @/no/dir does not exist",
         {BASELINE_ARGS, "--data-dir", "@/d28", "--out", "@/no/dir/x.st"}},
        {1,
         "dp-perform: --out @/no/dir/g.st: the directory @/no/dir does not exist",
         {TRAIN_ARGS, "--data-dir", "@/d28", "--out", "@/no/dir/g.st"}},
        {1,
         "dp-perform: --checkpoint @/no/dir/c: the directory @/no/dir does not exist",
         {TRAIN_ARGS, "--data-dir", "@/d28", "--checkpoint", "@/no/dir/c"}},
        {1,
         "dp-perform: --out @/no/dir/x.st: the directory @/no/dir does not exist",
         {GENERATE_ARGS, "--data-dir", "@/d28", "--out", "@/no/dir/x.st"}},
        /* an output that cannot be a file: refused before the work, not at the save */
        {1, "dp-perform: --out @/d28: it is a directory", {BASELINE_ARGS, "--out", "@/d28"}},
        {1, "dp-perform: --out @/d28: it is a directory", {GENERATE_ARGS, "--out", "@/d28"}},
        {1, "dp-perform: --out @/: no file name after the last '/'", {TRAIN_ARGS, "--out", "@/"}},
        {1, "dp-perform: --out : an empty path", {TRAIN_ARGS, "--out", ""}},
        {1,
         "dp-perform: --checkpoint @/d28: it is a directory",
         {TRAIN_ARGS, "--data-dir", "@/d28", "--checkpoint", "@/d28"}},
        /* an output that is an input of the run */
        {1,
         "dp-perform: --out @/mc.safetensors is the --model weights, it would be overwritten",
         {BASELINE_ARGS, "--model", "@/mc", "--out", "@/mc.safetensors"}},
        {1,
         "dp-perform: --out @/mc.pb is the --model spec, it would be overwritten",
         {TRAIN_ARGS, "--model", "@/mc", "--out", "@/mc.pb"}},
    };
    copy_file(SDN ".pb", tmp("mc.pb"), SIZE_MAX);
    copy_file(SDN ".safetensors", tmp("mc.safetensors"), SIZE_MAX);
    RUN_CASES(PERFORM, cases);
    cr_assert_not(exists(tmp("x.st")) || exists(tmp("g.st")), "a failed command wrote its output");
    cr_assert_not(exists(tmp("d28.ckpt")) || exists(tmp(".ckpt")), "a failed train checkpointed");
    struct stat st;
    cr_assert(stat(tmp("mc.safetensors"), &st) == 0 && st.st_size > 100000, "the model was lost");
}

/* Generator files that cannot be used (the seeds come from the 28x28
 * pattern set, as generate loads them before the generator). */
Test(cli_perform, bad_generators)
{
    make_pattern_sets();
    write_file(tmp("garbage.st"), "garbage", 7);
    write_meta_only(tmp("ckpt.st"), GEN_META("dp.perform.checkpoint.v1", "28", "8"));
    write_meta_only(tmp("width0.st"), GEN_META("dp.perform.generator.v1", "28", "0"));
    write_meta_only(tmp("small.st"), GEN_META("dp.perform.generator.v1", "4", "8"));
    write_meta_only(tmp("empty.st"), GEN_META("dp.perform.generator.v1", "28", "8"));
#define GEN(g)                                                                                     \
    "generate", "--model", SDN, "--data-dir", "@/d28", "--seeds", "4", "--out", "@/x.st", "--gen", g
    static const bad_case_t cases[] = {
        {1, "cannot load the generator: not found: @/nope.st", {GEN("@/nope.st")}},
        {1, "cannot load the generator: truncated data: @/garbage.st", {GEN("@/garbage.st")}},
        {1, "@/ckpt.st: not a generator (format 'dp.perform.checkpoint.v1'", {GEN("@/ckpt.st")}},
        {1, "not a generator (format 'dp.perform.samples.v1'", {GEN("@/x0.st")}},
        {1,
         "@/width0.st: metadata 'width' is 0, expected an integer in [1, 1024]",
         {GEN("@/width0.st")}},
        /* the inner detail survives the wrapping (it used to be garbled) */
        {1,
         "@/small.st: generator config rejected: perf_gen_new: input 1x4x4 width 8 too small",
         {GEN("@/small.st")}},
        {1, "@/empty.st: no tensor", {GEN("@/empty.st")}},
        {1,
         "dp-perform: --out @/ckpt.st is the --gen generator, it would be overwritten",
         {GEN("@/ckpt.st"), "--out", "@/ckpt.st"}},
    };
#undef GEN
    /* a sample set given as a generator */
    proc_t p = RUN(PERFORM, BASELINE_ARGS, "--data-dir", "@/d28", "--out", "@/x0.st", "--quiet");
    expect_ok(&p);
    proc_free(&p);
    RUN_CASES(PERFORM, cases);
    cr_assert_not(exists(tmp("x.st")), "a failed command wrote its output");
    st_file_t *f = NULL;
    cr_assert_eq(st_open(tmp("ckpt.st"), &f), DP_OK, "the --gen file was lost: %s",
                 dp_err_detail());
    cr_assert_str_eq(st_metadata(f, "format"), "dp.perform.checkpoint.v1");
    st_close(&f);
}

/* Issue 18: a model whose file name is 62 ASCII bytes and a 3-byte
 * character. The sample set's 64-byte name was cut inside the character, so
 * the save failed after the run; now the name is cut before it, and
 * evaluate --json prints it, valid UTF-8. Hand-made sets whose metadata the
 * old loader took and could not save back are refused, naming the field. */
Test(cli_perform, model_names_and_metadata)
{
    make_pattern_sets();
    char name[80], prefix[128], pb[160], st[160];
    memset(name, 'a', 62);
    strcpy(name + 62, "\xe2\x82\xac"); /* U+20AC */
    snprintf(prefix, sizeof prefix, "@/%s", name);
    snprintf(pb, sizeof pb, "%s.pb", name);
    snprintf(st, sizeof st, "%s.safetensors", name);
    copy_file(SDN ".pb", tmp(pb), SIZE_MAX);
    copy_file(SDN ".safetensors", tmp(st), SIZE_MAX);
    proc_t p =
        RUN(PERFORM, "baseline", "--model", prefix, "--method", "random", "--norm", "linf", "--eps",
            "0.09", "--seeds", "4", "--data-dir", "@/d28", "--out", "@/long.st", "--quiet");
    expect_ok(&p);
    proc_free(&p);
    p = RUN(PERFORM, "evaluate", "--json", "@/long.st");
    expect_ok(&p);
    cr_assert(dp_utf8_valid(p.out, p.out_len), "not UTF-8:\n%s", p.out);
    char *rows[2], buf[128];
    cr_assert_eq(json_rows(p.out, rows, 2), 1);
    name[62] = '\0'; /* the whole characters that fit 63 bytes */
    cr_assert_str_eq(json_text(rows[0], "model", buf, sizeof buf), name);
    free(rows[0]);
    proc_free(&p);

    memset(name, 'b', 62);
    strcpy(name + 62, "\xe2\x82\xac");
#define SAMPLES_META(model, eps, flops_full)                                                       \
    ARGV("format", "dp.perform.samples.v1", "method", "random", "norm", "linf", "model", model,    \
         "eps", eps, "l2_at_most", "0", "flops_full", flops_full, "seconds", "0")
    write_meta_only(tmp("name.st"), SAMPLES_META(name, "0.09", "1"));
    write_meta_only(tmp("eps.st"), SAMPLES_META("m", "1e-50", "1"));
    write_meta_only(tmp("nan.st"), SAMPLES_META("m", "0.09", "nan(123)"));
#undef SAMPLES_META
    static const bad_case_t cases[] = {
        {1, "@/name.st: metadata 'model' is 65 bytes, at most 63", {"evaluate", "@/name.st"}},
        {1,
         "@/eps.st: budget eps 1e-50 (0 as a float), l2_at_most 0 out of range",
         {"evaluate", "@/eps.st"}},
        {1,
         "@/nan.st: metadata 'flops_full' is 'nan(123)', expected a finite number > 0",
         {"evaluate", "@/nan.st"}},
    };
    RUN_CASES(PERFORM, cases);
    /* --json: the refused files leave no row; the output stays a valid array */
    p = RUN(PERFORM, "evaluate", "--json", "@/name.st", "@/long.st", "@/nan.st");
    expect_status(&p, 1);
    cr_assert(dp_utf8_valid(p.out, p.out_len), "not UTF-8:\n%s", p.out);
    cr_assert_eq(json_rows(p.out, rows, 2), 1);
    free(rows[0]);
    proc_free(&p);
}

/* Every sample set must hold n inputs of the method and budget, from the
 * seeds 0..n-1, inside the budget and [0, 1]. Returns it, caller destroys. */
static perf_samples_t *load_samples(const char *name, perf_method_t method, int n)
{
    perf_samples_t *s = NULL;
    cr_assert_eq(perf_samples_load(tmp(name), &s), DP_OK, "%s: %s", name, dp_err_detail());
    cr_assert_eq(s->n, n, "%s", name);
    cr_assert_eq(s->method, method, "%s: method %s", name, perf_method_name(s->method));
    cr_assert_str_eq(s->model, "sdn_resnet", "%s", name);
    cr_assert_eq(s->budget.norm, PERF_NORM_LINF, "%s", name);
    cr_assert_float_eq(s->budget.eps, 0.09f, 1e-7, "%s", name);
    cr_assert_eq(s->c * s->h * s->w, 784, "%s", name);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(s->seed_index[i], i, "%s: seed %d", name, i);
        cr_assert_leq(s->delta_norm[i], 0.09f, "%s: input %d outside the budget", name, i);
        cr_assert_gt(s->flops_adv[i], 0, "%s: input %d", name, i);
        cr_assert_leq(s->flops_adv[i], s->flops_full * (1 + 1e-9), "%s: input %d", name, i);
    }
    for (int i = 0; i < n * 784; i++)
        cr_assert(s->xadv[i] >= 0 && s->xadv[i] <= 1, "%s: pixel %d is %g", name, i,
                  (double)s->xadv[i]);
    return s;
}

Test(cli_perform, end_to_end, .timeout = 300)
{
    need_fmnist();
    /* train: one epoch of a narrow generator on 64 images */
    proc_t p = RUN(PERFORM, TRAIN_ARGS, "--epochs", "1", "--train-n", "64", "--val-n", "32",
                   "--width", "8", "--threads", "1", "--quiet");
    expect_ok(&p);
    cr_assert_eq(p.out_len, 0, "--quiet, yet:\n%s", p.out);
    proc_free(&p);
    cr_assert(exists(tmp("g.st.ckpt")), "no checkpoint");
    perf_gen_t *g = NULL;
    perf_budget_t b;
    cr_assert_eq(perf_gen_load(tmp("g.st"), 1, &g, &b), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(perf_gen_config(g)->width, 8);
    cr_assert_eq(b.norm, PERF_NORM_LINF);
    cr_assert_float_eq(b.eps, 0.09f, 1e-7);
    perf_gen_destroy(&g);

    /* generate and the baselines on the first 16 test images */
#define SEEDS   "--seeds", "16", "--threads", "1"
#define BASE(m) "baseline", "--model", SDN, "--method", m, "--norm", "linf", "--eps", "0.09", SEEDS
    p = RUN(PERFORM, "generate", "--model", SDN, "--gen", "@/g.st", "--out", "@/dp.st", SEEDS);
    expect_ok(&p);
    expect_out(&p, "sdn_resnet deepperform linf eps 0.09: 16 inputs, I-FLOPs mean ");
    proc_free(&p);
    const char *const *runs[] = {
        ARGV(PERFORM, BASE("random"), "--out", "@/random.st", "--quiet"),
        ARGV(PERFORM, BASE("ilfo"), "--iters", "3", "--batch", "1", "--out", "@/ilfo1.st",
             "--quiet"),
        ARGV(PERFORM, BASE("ilfo"), "--iters", "3", "--batch", "4", "--out", "@/ilfo4.st",
             "--quiet"),
        ARGV(PERFORM, BASE("deepsloth"), "--out", "@/sloth.st", "--quiet"),
    };
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        p = run_in(NULL, runs[i]);
        expect_ok(&p);
        cr_assert_eq(p.out_len, 0, "%s: --quiet, yet:\n%s", p.cmd, p.out);
        proc_free(&p);
    }
    /* DeepSloth needs early exits: BlockDrop has none */
    p = RUN(PERFORM, "baseline", "--model", BLOCKDROP, "--method", "deepsloth", "--norm", "linf",
            "--eps", "0.09", SEEDS, "--out", "@/sloth_bd.st");
    expect_status(&p, 1);
    expect_err(&p, "dp-perform: deepsloth: not supported: DeepSloth needs an early-exit network, "
                   "not blockdrop");
    cr_assert_not(exists(tmp("sloth_bd.st")));
    proc_free(&p);
#undef BASE
#undef SEEDS

    /* the files: within the budget; ILFO's x' do not depend on its batch */
    static const char *const files[] = {"dp.st", "random.st", "ilfo1.st", "ilfo4.st", "sloth.st"};
    static const perf_method_t methods[] = {PERF_METHOD_DEEPPERFORM, PERF_METHOD_RANDOM,
                                            PERF_METHOD_ILFO, PERF_METHOD_ILFO,
                                            PERF_METHOD_DEEPSLOTH};
    perf_samples_t *s[5];
    for (int i = 0; i < 5; i++) s[i] = load_samples(files[i], methods[i], 16);
    cr_assert_eq(memcmp(s[2]->xadv, s[3]->xadv, 16 * 784 * sizeof(float)), 0,
                 "ILFO x' differ between --batch 1 and --batch 4");
    cr_assert_eq(memcmp(s[2]->flops_adv, s[3]->flops_adv, 16 * sizeof(double)), 0);
    int moved = 0;
    for (int i = 0; i < 16; i++) moved += s[2]->delta_norm[i] > 0.01f;
    cr_assert_gt(moved, 0, "ILFO left every seed as it was");

    /* evaluate --json: one row per file, in order, every key, the figures of
     * perf_summarize on the same files */
    p = RUN(PERFORM, "evaluate", "--json", "@/dp.st", "@/random.st", "@/ilfo1.st", "@/ilfo4.st",
            "@/sloth.st");
    expect_ok(&p);
    char *rows[8], txt[64];
    int n = json_rows(p.out, rows, 8);
    cr_assert_eq(n, 5, "%d rows:\n%s", n, p.out);
    static const char *const keys[] = {"model",
                                       "norm",
                                       "eps",
                                       "method",
                                       "n",
                                       "iflops_mean",
                                       "iflops_max",
                                       "exec_fraction_seed_mean",
                                       "exec_fraction_mean",
                                       "psnr_mean",
                                       "norm_mean",
                                       "norm_max",
                                       "within_budget",
                                       "seconds_per_input",
                                       "idpb_rate"};
    for (int i = 0; i < n; i++) {
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
            json_raw(rows[i], keys[k], txt, sizeof txt);
        cr_assert_str_eq(json_text(rows[i], "model", txt, sizeof txt), "sdn_resnet");
        cr_assert_str_eq(json_text(rows[i], "norm", txt, sizeof txt), "linf");
        cr_assert_str_eq(json_text(rows[i], "method", txt, sizeof txt),
                         perf_method_name(methods[i]));
        cr_assert_str_eq(json_raw(rows[i], "within_budget", txt, sizeof txt), "true");
        cr_assert_float_eq(json_num(rows[i], "eps"), 0.09, 1e-9);
        cr_assert_eq(json_num(rows[i], "n"), 16);
        perf_summary_t r;
        perf_summarize(s[i], 0.9, &r);
        cr_assert_float_eq(json_num(rows[i], "iflops_mean"), r.iflops_mean, 1e-4, "%s", rows[i]);
        cr_assert_float_eq(json_num(rows[i], "iflops_max"), r.iflops_max, 1e-4, "%s", rows[i]);
        cr_assert_float_eq(json_num(rows[i], "exec_fraction_mean"), r.exec_mean, 1e-4);
        cr_assert_float_eq(json_num(rows[i], "exec_fraction_seed_mean"), r.exec_seed_mean, 1e-4);
        cr_assert_float_eq(json_num(rows[i], "psnr_mean"), r.psnr_mean, 1e-3);
        cr_assert_float_eq(json_num(rows[i], "idpb_rate"), r.idpb_rate, 1e-4);
        cr_assert_leq(json_num(rows[i], "norm_max"), (double)0.09f);
        char core[64]; /* provenance: the kernel this process runs */
        snprintf(core, sizeof core, "\"%s\"", nn_blas_corename());
        cr_assert_str_eq(json_raw(rows[i], "blas_core", txt, sizeof txt), core);
        double spi = json_num(rows[i], "seconds_per_input");
        cr_assert(spi > 0 && spi < 60, "%s", rows[i]);
    }
    for (int k = 0; k < 3; k++) /* ILFO rows agree but for the time */
        cr_assert_eq(json_num(rows[2], keys[5 + k]), json_num(rows[3], keys[5 + k]));
    for (int i = 0; i < n; i++) free(rows[i]);
    proc_free(&p);

    /* the text form: one line per file */
    p = RUN(PERFORM, "evaluate", "@/dp.st", "@/random.st", "@/sloth.st");
    expect_ok(&p);
    int lines = 0;
    for (const char *q = p.out; (q = strchr(q, '\n')); q++) lines++;
    cr_assert_eq(lines, 3, "%s", p.out);
    expect_out(&p, "sdn_resnet random linf eps 0.09: 16 inputs");
    expect_out(&p, "sdn_resnet deepsloth linf eps 0.09: 16 inputs");
    proc_free(&p);

    /* a file that fails in the middle: exit 1, the others still as valid JSON */
    p = RUN(PERFORM, "evaluate", "--json", "@/dp.st", "@/missing.st", "@/random.st");
    expect_status(&p, 1);
    expect_err(&p, "@/missing.st: not found");
    n = json_rows(p.out, rows, 8);
    cr_assert_eq(n, 2, "%s", p.out);
    cr_assert_str_eq(json_text(rows[1], "method", txt, sizeof txt), "random");
    for (int i = 0; i < n; i++) free(rows[i]);
    proc_free(&p);
    for (int i = 0; i < 5; i++) perf_samples_destroy(&s[i]);
}

/* ------------------------------------------------------------- dp-store */

TestSuite(cli_store, .init = setup, .fini = teardown);

Test(cli_store, usage_errors)
{
    static const bad_case_t cases[] = {
        {2, "usage: dp-store", {NULL}},
        {2, "dp-store: unrecognized option '--bogus'", {"--bogus", "ls", "file://@/s"}},
        {2, "option '--endpoint' requires an argument", {"--endpoint"}},
        {2,
         "dp-store: bad value 'abc' for --retries (expects an integer in [0, 100])",
         {"--retries", "abc", "ls", "file://@/s"}},
        {2, "bad value '-1' for --retries", {"--retries", "-1", "ls", "file://@/s"}},
        {2, "bad value '101' for --retries", {"--retries", "101", "ls", "file://@/s"}},
        {2, "bad value '' for --retries", {"--retries", "", "ls", "file://@/s"}},
        {2,
         "bad value '4' for --part-size (expects an integer in [5, 5120])",
         {"--part-size", "4", "ls", "file://@/s"}},
        {2,
         "bad value '99999999999999999999' for --part-size",
         {"--part-size", "99999999999999999999", "ls", "file://@/s"}},
        {2,
         "bad value '17592186044416' for --part-size",
         {"--part-size", "17592186044416", "ls", "file://@/s"}},
        {2,
         "bad value '5121' for --multipart-above (expects an integer in [0, 5120])",
         {"--multipart-above", "5121", "ls", "file://@/s"}},
        {2,
         "bad value '1e3' for --multipart-above",
         {"--multipart-above", "1e3", "ls", "file://@/s"}},
        {2, "dp-store: frob: unknown command or wrong arguments", {"frob", "x"}},
        {2, "dp-store: put: unknown command or wrong arguments", {"put", "@/f"}},
        {2, "dp-store: get: unknown command or wrong arguments", {"get", "file://@/s/k"}},
        {2, "dp-store: ls: unknown command or wrong arguments", {"ls"}},
        {2, "dp-store: rm: unknown command or wrong arguments", {"rm", "file://@/s/a", "b"}},
    };
    RUN_CASES(STORE, cases);
}

/* put, get (to a file and to stdout), ls, stat, replace, rm on file://,
 * with bytes of every value. */
Test(cli_store, file_round_trip)
{
    enum { N = 70001 };
    unsigned char *data = malloc(N);
    for (int i = 0; i < N; i++) data[i] = (unsigned char)(i * 131 + (i >> 8));
    write_file(tmp("in.bin"), data, N);

    proc_t p = RUN(STORE, "put", "@/in.bin", "file://@/store/models/x.bin");
    expect_ok(&p);
    proc_free(&p);
    size_t n;
    char *back = slurp(tmp("store/models/x.bin"), &n); /* file:///dir maps key k to /dir/k */
    cr_assert(n == N && memcmp(back, data, N) == 0, "the stored object differs");
    free(back);

    p = RUN(STORE, "get", "file://@/store/models/x.bin", "@/out.bin");
    expect_ok(&p);
    proc_free(&p);
    back = slurp(tmp("out.bin"), &n);
    cr_assert(n == N && memcmp(back, data, N) == 0, "get gave other bytes");
    free(back);

    p = RUN(STORE, "get", "file://@/store/models/x.bin", "-");
    expect_ok(&p);
    cr_assert(p.out_len == N && memcmp(p.out, data, N) == 0, "get - gave other bytes");
    proc_free(&p);

    p = run_in("@/in.bin", ARGV(STORE, "put", "-", "file://@/store/stdin.bin"));
    expect_ok(&p);
    proc_free(&p);
    back = slurp(tmp("store/stdin.bin"), &n);
    cr_assert(n == N && memcmp(back, data, N) == 0, "put - stored other bytes");
    free(back);

    p = RUN(STORE, "ls", "file://@/store");
    expect_ok(&p);
    expect_out(&p, "70001  ");
    expect_out(&p, "file://@/store/models/x.bin\n");
    expect_out(&p, "file://@/store/stdin.bin\n");
    proc_free(&p);
    p = RUN(STORE, "ls", "file://@/store/models");
    expect_ok(&p);
    expect_out(&p, "models/x.bin");
    cr_assert_null(strstr(p.out, "stdin.bin"), "ls of a prefix lists other keys:\n%s", p.out);
    proc_free(&p);
    p = RUN(STORE, "stat", "file://@/store/models/x.bin");
    expect_ok(&p);
    expect_out(&p, "       70001  ");
    proc_free(&p);

    /* a put replaces */
    write_file(tmp("small.bin"), "abc", 3);
    p = RUN(STORE, "put", "@/small.bin", "file://@/store/models/x.bin");
    expect_ok(&p);
    proc_free(&p);
    p = RUN(STORE, "get", "file://@/store/models/x.bin", "-");
    expect_ok(&p);
    cr_assert(p.out_len == 3 && memcmp(p.out, "abc", 3) == 0);
    proc_free(&p);

    /* rm; then the key is gone (exit 3), and rm of a missing key is fine */
    p = RUN(STORE, "rm", "file://@/store/models/x.bin");
    expect_ok(&p);
    proc_free(&p);
    cr_assert_not(exists(tmp("store/models/x.bin")));
    static const bad_case_t gone[] = {
        {3,
         "dp-store: file://@/store/models/x.bin: not found",
         {"get", "file://@/store/models/x.bin", "@/o"}},
        {3,
         "dp-store: file://@/store/models/x.bin: not found",
         {"get", "file://@/store/models/x.bin", "-"}},
        {3,
         "dp-store: file://@/store/models/x.bin: not found",
         {"stat", "file://@/store/models/x.bin"}},
    };
    RUN_CASES(STORE, gone);
    cr_assert_not(exists(tmp("o")), "a failed get wrote its output");
    p = RUN(STORE, "rm", "file://@/store/models/x.bin");
    expect_ok(&p);
    proc_free(&p);
    p = RUN(STORE, "ls", "file://@/store");
    expect_ok(&p);
    cr_assert_null(strstr(p.out, "x.bin"), "%s", p.out);
    expect_out(&p, "stdin.bin");
    proc_free(&p);
    free(data);
}

Test(cli_store, bad_uris_and_s3)
{
    write_file(tmp("f"), "x", 1);
    /* no credentials anywhere: the child inherits this environment */
    static const char *const creds[] = {"AWS_ACCESS_KEY_ID",        "AWS_SECRET_ACCESS_KEY",
                                        "AWS_SESSION_TOKEN",        "DP_STORE_ACCESS_KEY_FILE",
                                        "DP_STORE_SECRET_KEY_FILE", "DP_STORE_SESSION_TOKEN_FILE",
                                        "DP_STORE_ENDPOINT",        "AWS_ENDPOINT_URL",
                                        "AWS_ENDPOINT_URL_S3",      "AWS_SHARED_CREDENTIALS_FILE"};
    for (size_t i = 0; i < sizeof creds / sizeof creds[0]; i++) unsetenv(creds[i]);
    static const bad_case_t cases[] = {
        /* no object URI: a usage error */
        {2,
         "file://relative/x: not an object URI (s3://bucket/key, file:///path)",
         {"put", "@/f", "file://relative/x"}},
        {2, "dp-store: file:///: no path (put takes an object URI", {"put", "@/f", "file:///"}},
        {2,
         "dp-store: s3://bucket: no key (put takes an object URI",
         {"put", "@/f", "s3://bucket"}},
        {2, "http://example.com/x: not an object URI", {"get", "http://example.com/x", "@/o"}},
        /* local paths: exit 1 (3 would say the object is missing) */
        {1,
         "dp-store: @/nonexistent.local: cannot read the local file: No such file",
         {"put", "@/nonexistent.local", "file://@/s/k"}},
        {1,
         "dp-store: @/no/dir/o: the directory @/no/dir does not exist",
         {"get", "file://@/s/k", "@/no/dir/o"}},
        {4,
         "s3://bucket/key: authentication failed: s3://bucket: no credentials: set "
         "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
         {"put", "@/f", "s3://bucket/key"}},
        {4, "no credentials", {"get", "s3://bucket/key", "@/o"}},
        {4, "no credentials", {"ls", "s3://bucket"}},
        /* a local path that cannot be the file: refused before the transfer */
        {1, "dp-store: @/s: it is a directory", {"get", "file://@/s/k", "@/s"}},
        {1, "dp-store: : an empty path", {"get", "file://@/s/k", ""}},
        {1, "dp-store: @/s: the local file is not a regular file", {"put", "@/s", "file://@/s/d"}},
        {1, "dp-store: invalid argument: s3://: bad bucket name", {"ls", "s3://"}},
        {1,
         "endpoint 'ftp://example.com' is not http:// or https://",
         {"--endpoint", "ftp://example.com", "get", "s3://bucket/key", "@/o"}},
    };
    /* get into a missing directory needs an object to get */
    proc_t p = RUN(STORE, "put", "@/f", "file://@/s/k");
    expect_ok(&p);
    proc_free(&p);
    RUN_CASES(STORE, cases);
    cr_assert_not(exists(tmp("o")));

    /* credentials but nobody listening: a network error, not a hang */
    setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", 1);
    p = RUN(STORE, "--endpoint", "http://127.0.0.1:1", "--retries", "0", "get", "s3://bucket/key",
            "@/o");
    expect_status(&p, 1);
    /* a get to a file asks the object's size first (ranged downloads) */
    expect_err(&p, "dp-store: network error: s3://bucket/key: HEAD: ");
    cr_assert_eq(p.out_len, 0);
    cr_assert_not(exists(tmp("o")));
    proc_free(&p);
    /* with one connection it is one GET */
    p = RUN(STORE, "--endpoint", "http://127.0.0.1:1", "--retries", "0", "--parallel", "1", "get",
            "s3://bucket/key", "@/o");
    expect_status(&p, 1);
    expect_err(&p, "dp-store: network error: s3://bucket/key: GET: ");
    proc_free(&p);
}

/* ------------------------------------------------------------- dp-zoo */

TestSuite(cli_zoo, .init = setup, .fini = teardown);

Test(cli_zoo, usage_errors)
{
#define FAM  "train", "--family", "sdn-resnet", "--out", "@/m"
#define SKIP "train", "--family", "skipnet", "--out", "@/m"
#define BD   "train", "--family", "blockdrop", "--out", "@/m"
    static const bad_case_t cases[] = {
        {2, "usage: dp-zoo train", {NULL}},
        {2, "dp-zoo: unknown command 'frob' (train, eval, info)", {"frob", SDN}},
        {2, "dp-zoo info: unrecognized option '--bogus'", {"info", "--bogus", SDN}},
        {2, "dp-zoo eval: option '--limit' requires an argument", {"eval", SDN, "--limit"}},
        {2, "dp-zoo info: expects exactly one MODEL prefix", {"info"}},
        {2, "dp-zoo eval: expects exactly one MODEL prefix", {"eval", SDN, SDN}},
        {2,
         "dp-zoo: --limit expects an integer in [0, 2147483647], got '-1'",
         {"eval", "--limit", "-1", SDN}},
        {2, "dp-zoo: --tau expects a number in (0, 1], got '0'", {"eval", "--tau", "0", SDN}},
        {2, "dp-zoo: --tau expects a number in (0, 1], got '1.5'", {"eval", "--tau", "1.5", SDN}},
        {2, "dp-zoo: --tau expects a number in (0, 1], got 'abc'", {"eval", "--tau", "abc", SDN}},
        {2,
         "dp-zoo: --threads expects an integer in [0, 256], got '300'",
         {"eval", "--threads", "300", SDN}},
        {2, "dp-zoo train: --family and --out are required", {"train", "--out", "@/m"}},
        {2, "dp-zoo train: --family and --out are required", {"train", "--family", "ranet"}},
        {2, "dp-zoo train: unknown family 'foo'", {"train", "--family", "foo", "--out", "@/m"}},
        {2, "dp-zoo train: --widths needs 3 values", {FAM, "--widths", "8,16"}},
        {2, "dp-zoo train: --blocks needs 3 values", {FAM, "--blocks", "1,1,1,1"}},
        {2,
         "dp-zoo: --widths expects an integer in [1, 1024], got 'a'",
         {FAM, "--widths", "8,a,3"}},
        {2,
         "dp-zoo: --widths expects an integer in [1, 1024], got '0'",
         {FAM, "--widths", "8,0,3"}},
        {2, "dp-zoo: --widths expects a comma-separated list", {FAM, "--widths", ",,"}},
        {2, "dp-zoo: --blocks takes at most", {FAM, "--blocks", "1,2,3,4,5,6,7,8,9"}},
        {2, "dp-zoo train: --gate expects recurrent or feedforward", {FAM, "--gate", "foo"}},
        {2, "dp-zoo: --lr expects a number in (0, 1), got '1'", {FAM, "--lr", "1"}},
        {2, "dp-zoo: --epochs expects an integer in [1, 1000], got '0'", {FAM, "--epochs", "0"}},
        {2, "dp-zoo: --batch expects an integer in [1, 4096], got '0'", {FAM, "--batch", "0"}},
        {2, "dp-zoo train: unexpected argument 'extra'", {FAM, "extra"}},
        {2,
         "dp-zoo train: the --gate-* options apply to skipnet only",
         {FAM, "--gate-target", "0.5"}},
        {2, "dp-zoo train: the --policy-* options apply to blockdrop only", {FAM, "--policy-only"}},
        {2, "dp-zoo: --gate-target must be above 0 and below 1", {SKIP, "--gate-target", "1"}},
        {2, "dp-zoo: --gate-target must be above 0 and below 1", {SKIP, "--gate-target", "0"}},
        {2,
         "dp-zoo: --gate-target-rate expects a number in [0, 100], got '-1'",
         {SKIP, "--gate-target-rate", "-1"}},
        {2,
         "dp-zoo train: --gate-target-per-block needs --gate-target",
         {SKIP, "--gate-target-per-block"}},
        {2,
         "dp-zoo train: the --gate-* options apply to skipnet only",
         {FAM, "--gate-target-per-block"}},
        {2, "dp-zoo train: --policy-local-grad needs --policy-only", {BD, "--policy-local-grad"}},
        {2,
         "dp-zoo: --policy-explore expects a number in [0.5, 1], got '0.4'",
         {BD, "--policy-explore", "0.4"}},
        {2,
         "dp-zoo: --policy-penalty expects a number in [0, 1000], got '-1'",
         {BD, "--policy-penalty", "-1"}},
        {2, "dp-zoo: --policy-max-run must be above 0", {BD, "--policy-max-run", "0"}},
        {2,
         "dp-zoo: --policy-max-run expects a number in [0, 1], got '1.5'",
         {BD, "--policy-max-run", "1.5"}},
    };
    RUN_CASES(ZOO, cases);
#undef FAM
#undef SKIP
#undef BD
}

Test(cli_zoo, bad_files)
{
    make_bad_models();
    make_pattern_sets();
    for (size_t i = 0; i < sizeof bad_models / sizeof bad_models[0]; i++) {
        for (int cmd = 0; cmd < 2; cmd++) {
            proc_t p = RUN(ZOO, cmd ? "eval" : "info", bad_models[i].prefix);
            expect_status(&p, 1);
            expect_err(&p, bad_models[i].needle);
            proc_free(&p);
        }
    }
    cr_assert_eq(mkdir(tmp("dir.pb"), 0755), 0);
    static const bad_case_t cases[] = {
        {1,
         "dp-zoo: cannot load the model: input/output error: @/dir.pb: not a regular file",
         {"info", "@/dir"}},
        {1,
         "dp-zoo: cannot load Fashion-MNIST: not found: @/none/t10k-images-idx3-ubyte.gz",
         {"eval", "--data-dir", "@/none", SDN}},
        {1,
         "dp-zoo eval: images are 1x10x10, the model expects 1x28x28",
         {"eval", "--data-dir", "@/d10", SDN}},
        {1,
         "cannot load Fashion-MNIST: not found: @/none/train-images-idx3-ubyte.gz",
         {"train", "--family", "blockdrop", "--out", "@/m", "--data-dir", "@/none"}},
        {1,
         "dp-zoo train: images are 1x10x10, the spec expects 1x28x28",
         {"train", "--family", "blockdrop", "--out", "@/m", "--data-dir", "@/d10"}},
        {1,
         "dp-zoo: cannot load the --init weights: not found: @/nope.safetensors",
         {"train", "--family", "blockdrop", "--out", "@/m", "--data-dir", "@/d28", "--init",
          "@/nope", "--quiet"}},
        {1,
         "dp-zoo: cannot load the --init weights: not found: @/garbage_pb.safetensors",
         {"train", "--family", "blockdrop", "--out", "@/m", "--data-dir", "@/d28", "--init",
          "@/garbage_pb", "--quiet"}}, /* SDN's weights */
        {1,
         "dp-zoo: --out @/no/dir/m: the directory @/no/dir does not exist",
         {"train", "--family", "blockdrop", "--out", "@/no/dir/m", "--data-dir", "@/d28",
          "--epochs", "1", "--quiet"}},
    };
    RUN_CASES(ZOO, cases);
    cr_assert_not(exists(tmp("m.pb")) || exists(tmp("m.safetensors")));
}

Test(cli_zoo, info_train_eval)
{
    proc_t p = RUN(ZOO, "info", SDN);
    expect_ok(&p);
    expect_out(&p, "family        sdn-resnet\n");
    expect_out(&p, "input         1x28x28, 10 classes\n");
    expect_out(&p, "  exits.0.");
    proc_free(&p);

    /* a tiny training run writes a model that info and eval take back */
    make_pattern_sets();
    p = RUN(ZOO, "train", "--family", "blockdrop", "--out", "@/m", "--data-dir", "@/d28",
            "--epochs", "1", "--batch", "32", "--threads", "1", "--quiet");
    expect_ok(&p);
    cr_assert_eq(p.out_len, 0, "--quiet, yet:\n%s", p.out);
    proc_free(&p);
    p = RUN(ZOO, "info", "@/m");
    expect_ok(&p);
    expect_out(&p, "family        blockdrop\n");
    proc_free(&p);
    p = RUN(ZOO, "eval", "--json", "--data-dir", "@/d28", "--threads", "1", "@/m");
    expect_ok(&p);
    expect_out(&p, "{\"family\":\"blockdrop\",\"accuracy\":");
    expect_out(&p, "\"images\":32,");
    proc_free(&p);

    need_fmnist();
    p = RUN(ZOO, "eval", "--json", "--limit", "20", "--threads", "1", SDN);
    expect_ok(&p);
    char txt[64];
    cr_assert_eq(p.out[p.out_len - 1], '\n');
    cr_assert_eq(p.out[0], '{');
    cr_assert_str_eq(json_text(p.out, "family", txt, sizeof txt), "sdn-resnet");
    cr_assert_eq(json_num(p.out, "images"), 20);
    double acc = json_num(p.out, "accuracy");
    cr_assert(acc >= 0.5 && acc <= 1, "accuracy %g of the shipped model on 20 images", acc);
    /* every image leaves by one exit: the counts add up to 20 */
    const char *e = strstr(p.out, "\"exits\":[");
    cr_assert_not_null(e);
    long sum = 0;
    for (char *q = (char *)e + 9; *q != ']'; q += *q == ',') sum += strtol(q, &q, 10);
    cr_assert_eq(sum, 20, "%s", p.out);
    proc_free(&p);
}

/* eval --json's decision margins against --trace's per-image lines: the
 * shipped SkipNet on 40 images, 6 gates each; every count in the summary
 * recomputed from the trace. */
Test(cli_zoo, decisions_and_trace)
{
    need_fmnist();
    const char *skip = DP_SOURCE_DIR "/models/skipnet";
    proc_t p =
        RUN(ZOO, "eval", "--json", "--limit", "40", "--threads", "1", "--trace", "@/t.jsonl", skip);
    expect_ok(&p);
    tj_val_t j;
    cr_assert_eq(tj_parse(p.out, p.out_len, &j), DP_OK, "%s", dp_err_detail());
    const tj_val_t *dec = tj_get(&j, "decisions");
    cr_assert_not_null(dec, "%s", p.out);
    cr_assert_eq(tj_get_num(dec, "n", -1), 240, "%s", p.out);
    cr_assert_eq(tj_get_num(dec, "threshold", -1), 0.5);
    size_t len = 0;
    char *tr = slurp(tmp("t.jsonl"), &len);
    cr_assert_not_null(tr);
    long lines = 0, near = 0, decisions = 0, runs[6] = {0};
    double minm = INFINITY;
    for (char *line = tr, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        cr_assert_not_null(nl, "the trace's last line is cut");
        tj_val_t l;
        cr_assert_eq(tj_parse(line, (size_t)(nl - line), &l), DP_OK, "line %ld: %s", lines,
                     dp_err_detail());
        cr_assert_eq(tj_get_num(&l, "i", -1), lines);
        const tj_val_t *ps = tj_get(&l, "decisions");
        cr_assert(ps && ps->type == TJ_ARR && ps->n == 6, "line %ld", lines);
        const char *mask = tj_get_str(&l, "mask", "");
        cr_assert_eq(strlen(mask), 6, "line %ld mask %s", lines, mask);
        double lm = INFINITY;
        for (size_t k = 0; k < ps->n; k++) {
            double mg = fabs(ps->items[k].num - 0.5);
            lm = fmin(lm, mg);
            near += mg < 0.05;
            decisions++;
            /* a gate above the threshold runs its block */
            cr_assert_eq(mask[k] == '1', ps->items[k].num > 0.5, "line %ld block %zu", lines, k);
            runs[k] += mask[k] == '1';
        }
        cr_assert_float_eq(tj_get_num(&l, "margin", -1), lm, 1e-6, "line %ld", lines);
        minm = fmin(minm, lm);
        tj_val_free(&l);
        lines++;
    }
    cr_assert_eq(lines, 40);
    cr_assert_eq(decisions, 240);
    cr_assert_eq(tj_get_num(dec, "within_0_05", -1), near, "%s", p.out);
    cr_assert_float_eq(tj_get_num(dec, "min_margin", -1), minm, 1e-6);
    const tj_val_t *share = tj_get(&j, "block_run_share");
    cr_assert(share && share->n == 6);
    for (int k = 0; k < 6; k++) cr_assert_float_eq(share->items[k].num, runs[k] / 40.0, 1e-6);
    free(tr);
    tj_val_free(&j);
    proc_free(&p);
    /* a trace that cannot be written is named, and nothing is printed */
    p = RUN(ZOO, "eval", "--json", "--limit", "2", "--trace", "@/no/dir/t.jsonl", skip);
    expect_status(&p, 1);
    expect_err(&p, "--trace @/no/dir/t.jsonl: No such file or directory");
    cr_assert_eq(p.out_len, 0);
    proc_free(&p);
}

/* ------------------------------------------------------------- dp-cnn */

TestSuite(cli_cnn, .init = setup, .fini = teardown);

Test(cli_cnn, usage_and_bad_files)
{
    make_pattern_sets();
    cr_assert_eq(mkdir(tmp("bad"), 0755), 0);
    write_file(tmp("bad/train-images-idx3-ubyte.gz"), "\x00\x00\x08\x03\x00", 5);
    copy_file(tmp("d28/train-labels-idx1-ubyte.gz"), tmp("bad/train-labels-idx1-ubyte.gz"),
              SIZE_MAX);
    static const bad_case_t cases[] = {
        {2, "dp-cnn: unrecognized option '--bogus'", {"--bogus"}},
        {2, "option '--save' requires an argument", {"--save"}},
        {2, "dp-cnn: --epochs expects an integer in [1, 1000], got '0'", {"--epochs", "0"}},
        {2, "dp-cnn: --batch expects an integer in [1, 4096], got '0'", {"--batch", "0"}},
        {2, "dp-cnn: --batch expects an integer in [1, 4096], got '5000'", {"--batch", "5000"}},
        {2, "dp-cnn: --lr expects a number in (0, 1), got '0'", {"--lr", "0"}},
        {2, "dp-cnn: --lr expects a number in (0, 1), got '1'", {"--lr", "1"}},
        {2, "dp-cnn: --lr expects a number in (0, 1), got 'x'", {"--lr", "x"}},
        {2, "dp-cnn: --limit expects an integer in [0, 2147483647], got '-5'", {"--limit", "-5"}},
        {2, "dp-cnn: --seed expects an integer in [0, 2147483647], got '-1'", {"--seed", "-1"}},
        {2, "dp-cnn: --threads expects an integer in [0, 256], got '999'", {"--threads", "999"}},
        {2, "dp-cnn: unexpected argument 'extra'", {"--quiet", "extra"}},
        {1, "dp-cnn: not found: @/none/train-images-idx3-ubyte.gz", {"--data-dir", "@/none"}},
        {1, "dp-cnn: truncated data: @/bad/train-images-idx3-ubyte.gz", {"--data-dir", "@/bad"}},
        {1, "dp-cnn: expected 1x28x28 images, got 1x10x10", {"--data-dir", "@/d10"}},
        {1, "dp-cnn: --save @/d28: it is a directory", {"--data-dir", "@/d28", "--save", "@/d28"}},
    };
    RUN_CASES(CNN, cases);
}

/* One short epoch on 512 Fashion-MNIST images, tested on 500: better than
 * chance, and the saved weights are the CNN's tensors. */
Test(cli_cnn, short_run)
{
    need_fmnist();
    dp_dataset_t *d = NULL;
    cr_assert_eq(dp_dataset_load_idx(FMNIST "/t10k-images-idx3-ubyte.gz",
                                     FMNIST "/t10k-labels-idx1-ubyte.gz", &d),
                 DP_OK, "%s", dp_err_detail());
    cr_assert_eq(mkdir(tmp("mini"), 0755), 0);
    write_idx(tmp("mini"), "train", 512, 28, 28, d); /* test images 0..511 */
    dp_dataset_t tail = *d;                          /* and 9500..9999 */
    tail.images += (size_t)9500 * 784;
    tail.labels += 9500;
    write_idx(tmp("mini"), "t10k", 500, 28, 28, &tail);
    dp_dataset_destroy(&d);

    proc_t p = RUN(CNN, "--data-dir", "@/mini", "--batch", "32", "--threads", "1", "--quiet",
                   "--save", "@/cnn.safetensors");
    expect_ok(&p);
    const char *a = strstr(p.out, "test accuracy: ");
    cr_assert_not_null(a, "%s", p.out);
    double acc = strtod(a + 15, NULL);
    cr_assert(acc > 0.3 && acc <= 1, "accuracy %g after one epoch on 512 images", acc);
    expect_out(&p, "(500 images, 1 epoch, ");
    expect_out(&p, "weights written to @/cnn.safetensors\n");
    proc_free(&p);

    st_file_t *f = NULL;
    cr_assert_eq(st_open(tmp("cnn.safetensors"), &f), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(st_count(f), 12);
    cr_assert_str_eq(st_metadata(f, "model"), "dp-cnn");
    st_tensor_t t;
    cr_assert_eq(st_find(f, "conv1.weight", &t), DP_OK);
    cr_assert(t.ndim == 4 && t.shape[0] == 16 && t.shape[1] == 1 && t.shape[2] == 3);
    cr_assert_eq(st_find(f, "fc2.weight", &t), DP_OK);
    cr_assert(t.ndim == 2 && t.shape[0] == 10 && t.shape[1] == 128);
    st_close(&f);

    /* the weights could not be saved: exit 1 naming the path, before training */
    p = RUN(CNN, "--data-dir", "@/mini", "--batch", "64", "--threads", "1", "--save",
            "@/no/dir/cnn.safetensors");
    expect_status(&p, 1);
    expect_err(&p,
               "dp-cnn: --save @/no/dir/cnn.safetensors: the directory @/no/dir does not exist");
    cr_assert_eq(p.out_len, 0, "dp-cnn trained before finding --save unusable: %s", p.out);
    proc_free(&p);
    p = RUN(CNN, "--data-dir", "@/mini", "--quiet", "--save",
            "@/mini/train-labels-idx1-ubyte.gz/w");
    expect_status(&p, 1);
    expect_err(&p, "dp-cnn: --save @/mini/train-labels-idx1-ubyte.gz/w: "
                   "@/mini/train-labels-idx1-ubyte.gz is not a directory");
    proc_free(&p);
}
