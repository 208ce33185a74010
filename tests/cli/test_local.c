/* dp-submit --local and its library (worker/local.h).
 *
 * The library, with a stub runner that sleeps (tasks of every kind, 58 of
 * them, so a trainer task and a measuring run would overlap if nothing kept
 * them apart):
 * - measuring never overlaps a trainer task: every task run is timed by the
 *   library, and no measurer span meets a trainer span, while the two kinds
 *   interleave; the control: a measurer that reports another host does
 *   overlap, so the check can see an overlap;
 * - a second run on the same directory finds the campaign in the journal
 *   (the same token from the same bytes) and runs nothing;
 * - a stop while a TRAIN runs: DP_ERR_INTERRUPTED, everything stopped;
 *   the same call again resumes the campaign (the TRAIN's next attempt)
 *   and ends it; another campaign on that directory cancels the first.
 * The command, as a child process, with the real task layer:
 * - a tiny campaign (width 8, 1 epoch, 8 seeds) exits 0, prints where the
 *   results and summary.json are, and they exist; no measuring run
 *   overlapped a trainer task (-v says so);
 * - a campaign whose second model has broken weights exits 3 and names
 *   the failed tasks with their reason;
 * - SIGINT while training: exit 130 and "the same command resumes"; the
 *   same command then exits 0 with "resumed";
 * - flags that do not go with --local, or need it: exit 2.
 * The split cache: the tiny campaign with the real task layer, once with
 * the decoded splits shared across tasks and once without: every sample
 * set bit-identical, the training split decoded once and the test split
 * once, then reused. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "campaign/campaign.h"
#include "client.h"
#include "local.h"
#include "perform/perform.h"
#include "util/log.h"
#include "util/path.h"

extern char **environ;

#define SUBMIT          DP_BINARY_DIR "/cli/dp-submit"
#define MODELS          DP_SOURCE_DIR "/models"
#define FMNIST          "/usr/share/datasets/fashion-mnist"
#define CHILD_TIMEOUT_S 240

static char g_dir[64];

static void setup(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/dp-test-local-XXXXXX");
    cr_assert_not_null(mkdtemp(g_dir), "mkdtemp: %s", strerror(errno));
    dp_log_set_level(DP_LOG_WARN);
}

static void teardown(void)
{
    if (g_dir[0]) dp_path_remove_tree(g_dir);
}

static const char *tmp(const char *name)
{
    static char buf[8][512];
    static int next;
    char *b = buf[next++ % 8];
    snprintf(b, sizeof buf[0], "%s/%s", g_dir, name);
    return b;
}

static char *slurp(const char *path)
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
    return b;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    cr_assert_eq(fputs(text, f) >= 0, 1);
    cr_assert_eq(fclose(f), 0);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---------------------------------------------------------------- campaigns */

/* A campaign in text format: NAME, the second model's weights WEIGHTS2
 * (NULL: one model), train images [0, TRAIN), seeds [0, SEEDS) in shards
 * of SHARD, generator seed GSEED. */
static void campaign_text(const char *path, const char *name, const char *weights2, unsigned train,
                          unsigned seeds, unsigned shard, unsigned gseed)
{
    char model2[1024] = "";
    if (weights2)
        snprintf(model2, sizeof model2,
                 "models { name: \"broken\" family: MODEL_FAMILY_SDN_RESNET\n"
                 "  spec_uri: \"file://" MODELS "/sdn_resnet.pb\"\n"
                 "  weights_uri: \"file://%s\" }\n",
                 weights2);
    char text[8192];
    snprintf(text, sizeof text,
             "name: \"%s\"\n"
             "store_uri: \"file://./campaign-store\"\n"
             "models { name: \"sdn_resnet\" family: MODEL_FAMILY_SDN_RESNET\n"
             "  spec_uri: \"file://" MODELS "/sdn_resnet.pb\"\n"
             "  weights_uri: \"file://" MODELS "/sdn_resnet.safetensors\" }\n"
             "%s"
             "datasets { name: \"fmnist\" format: DATASET_FORMAT_IDX\n"
             "  train_images_uri: \"file://" FMNIST "/train-images-idx3-ubyte.gz\"\n"
             "  train_labels_uri: \"file://" FMNIST "/train-labels-idx1-ubyte.gz\"\n"
             "  test_images_uri: \"file://" FMNIST "/t10k-images-idx3-ubyte.gz\"\n"
             "  test_labels_uri: \"file://" FMNIST "/t10k-labels-idx1-ubyte.gz\"\n"
             "  train_range { begin: 0 end: %u }\n"
             "  test_range { begin: 0 end: %u }\n"
             "  shard_size: %u }\n"
             "budgets { norm: NORM_LINF eps: [0.09] }\n"
             "generator { width { value: 8 } epochs { value: 1 } batch_size { value: 32 } "
             "seed: %u }\n"
             "baselines { method: BASELINE_METHOD_RANDOM }\n"
             "baselines { method: BASELINE_METHOD_ILFO iterations { value: 2 } }\n"
             "device_classes { name: \"local\" probe: ENERGY_PROBE_NONE }\n"
             "measure { warmup { value: 1 } repetitions { value: 2 } min_time_s { value: 0 } }\n",
             name, model2, train, seeds, shard, gseed);
    write_text(path, text);
}

static Dp__V1__Campaign *load(const char *path)
{
    dp_client_load_opts_t lo;
    dp_client_load_opts_init(&lo);
    Dp__V1__Campaign *c = NULL;
    cr_assert_eq(dp_client_campaign_load(path, &lo, &c), DP_OK, "%s", dp_err_detail());
    return c;
}

static void need_data(void)
{
    if (access(FMNIST "/t10k-images-idx3-ubyte.gz", R_OK) != 0)
        cr_skip_test("Fashion-MNIST is not installed in " FMNIST);
}

/* ---------------------------------------------------------------- stub runner */

typedef struct stub {
    int ms;        /* each task sleeps this long */
    int slow_kind; /* this kind runs until cancelled */
    atomic_int runs[6];
    atomic_int slow_running;
} stub_t;

static dp_err_t stub_run(void *arg, const Dp__V1__Task *t, const dp_task_env_t *env,
                         dp_task_result_t *out)
{
    stub_t *s = arg;
    memset(out, 0, sizeof *out);
    atomic_fetch_add(&s->runs[t->kind], 1);
    if ((int)t->kind == s->slow_kind) {
        atomic_store(&s->slow_running, 1);
        while (!(env->hooks.cancelled && env->hooks.cancelled(env->hooks.ctx))) sleep_ms(5);
        atomic_store(&s->slow_running, 0);
        return dp_err_set(DP_ERR_CANCELLED, "stub: cancelled");
    }
    sleep_ms(s->ms);
    out->summary_json = strdup("{\"stub\":true}");
    out->artifact_keys = malloc(sizeof(char *));
    out->artifact_keys[0] = strdup(t->output_prefix);
    out->n_artifact_keys = 1;
    return DP_OK;
}

static void local_opts(dp_local_opts_t *o, const char *dir, stub_t *s)
{
    dp_local_opts_init(o);
    o->dir = dir;
    o->threads = 1;
    o->heartbeat_ms = 100;
    o->poll_ms = 50;
    o->run = s ? stub_run : NULL;
    o->run_arg = s;
}

static Dp__V1__CampaignState state_of(const dp_local_result_t *r)
{
    cr_assert_not_null(r->final);
    cr_assert_eq(r->final->n_campaigns, 1);
    return r->final->campaigns[0]->state;
}

/* ---------------------------------------------------------------- library */

TestSuite(local, .init = setup, .fini = teardown, .timeout = 120);

Test(local, measuring_never_overlaps_training)
{
    campaign_text(tmp("c.txtpb"), "stub", NULL, 71, 64, 8, 1);
    Dp__V1__Campaign *c = load(tmp("c.txtpb"));
    stub_t s = {.ms = 15, .slow_kind = -1};
    dp_local_opts_t o;
    local_opts(&o, tmp("run"), &s);
    dp_local_result_t r;
    cr_assert_eq(dp_local_run(c, &o, NULL, &r), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(state_of(&r), DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_DONE);
    cr_assert_eq(r.tasks, 58);
    cr_assert_eq(r.n_spans, 58, "every task ran once here: %zu", r.n_spans);
    size_t measured = 0;
    uint64_t first_measure = UINT64_MAX, last_trainer_start = 0;
    for (size_t i = 0; i < r.n_spans; i++) {
        const dp_local_span_t *sp = &r.spans[i];
        cr_assert_eq(sp->measurer, sp->kind == DP__V1__TASK_KIND__TASK_KIND_MEASURE, "%s",
                     sp->task_id);
        cr_assert_leq(sp->start_ns, sp->end_ns);
        if (sp->measurer) {
            measured++;
            if (sp->start_ns < first_measure) first_measure = sp->start_ns;
        } else if (sp->start_ns > last_trainer_start) {
            last_trainer_start = sp->start_ns;
        }
    }
    cr_assert_eq(measured, 32);
    /* they interleave: the rule had work to do */
    cr_assert_lt(first_measure, last_trainer_start, "every measurement came after training");
    cr_assert_eq(r.overlaps, 0, "%zu measuring runs overlapped a trainer task", r.overlaps);
    cr_assert_eq(dp_local_overlaps(r.spans, r.n_spans), 0);
    /* the store is file://DIR/store, not the campaign's */
    cr_assert(strstr(r.store_uri, "/run/store") != NULL, "%s", r.store_uri);
    cr_assert_eq(access(tmp("campaign-store"), F_OK), -1);
    cr_assert_eq(access(tmp("run/journal"), R_OK), 0);
    dp_local_result_clear(&r);
    campaign_free(&c);
}

/* The control: with the measurer on "another host", nothing keeps them
 * apart, and the spans show it. */
Test(local, overlap_is_seen_without_host_exclusivity)
{
    campaign_text(tmp("c.txtpb"), "stub", NULL, 71, 64, 8, 1);
    Dp__V1__Campaign *c = load(tmp("c.txtpb"));
    stub_t s = {.ms = 15, .slow_kind = -1};
    dp_local_opts_t o;
    local_opts(&o, tmp("run"), &s);
    o.measurer_host = "another-host";
    dp_local_result_t r;
    cr_assert_eq(dp_local_run(c, &o, NULL, &r), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(state_of(&r), DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_DONE);
    cr_assert_gt(r.overlaps, 0, "no overlap even on two hosts: the check cannot see one");
    dp_local_result_clear(&r);
    campaign_free(&c);
}

Test(local, rerun_finds_the_campaign)
{
    campaign_text(tmp("c.txtpb"), "stub", NULL, 71, 16, 8, 1);
    Dp__V1__Campaign *c = load(tmp("c.txtpb"));
    stub_t s = {.ms = 1, .slow_kind = -1};
    dp_local_opts_t o;
    local_opts(&o, tmp("run"), &s);
    dp_local_result_t r;
    cr_assert_eq(dp_local_run(c, &o, NULL, &r), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(state_of(&r), DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_DONE);
    cr_assert_eq(r.resumed, 0);
    char cid[512], token[DP_CLIENT_TOKEN_MAX + 1];
    snprintf(cid, sizeof cid, "%s", r.campaign_id);
    snprintf(token, sizeof token, "%s", r.token);
    cr_assert_eq(strncmp(token, "local-", 6), 0, "%s", token);
    dp_local_result_clear(&r);
    const int runs = atomic_load(&s.runs[DP__V1__TASK_KIND__TASK_KIND_TRAIN]);
    /* again, with a relative spelling of the same directory */
    char rel[600];
    snprintf(rel, sizeof rel, "%s/run/../run", g_dir);
    o.dir = rel;
    cr_assert_eq(dp_local_run(c, &o, NULL, &r), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(state_of(&r), DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_DONE);
    cr_assert_eq(r.resumed, 1);
    cr_assert_str_eq(r.campaign_id, cid);
    cr_assert_str_eq(r.token, token);
    cr_assert_eq(r.n_spans, 0, "a finished campaign ran %zu tasks again", r.n_spans);
    cr_assert_eq(atomic_load(&s.runs[DP__V1__TASK_KIND__TASK_KIND_TRAIN]), runs);
    dp_local_result_clear(&r);
    campaign_free(&c);
}

typedef struct stopper {
    stub_t *s;
    volatile sig_atomic_t *stop;
} stopper_t;

static void *stop_when_slow(void *arg)
{
    stopper_t *st = arg;
    for (int i = 0; i < 20000 && !atomic_load(&st->s->slow_running); i++) sleep_ms(1);
    sleep_ms(50);
    *st->stop = 1;
    return NULL;
}

Test(local, stop_then_resume_then_supersede)
{
    campaign_text(tmp("c.txtpb"), "stub", NULL, 71, 16, 8, 1);
    Dp__V1__Campaign *c = load(tmp("c.txtpb"));
    stub_t s = {.ms = 1, .slow_kind = DP__V1__TASK_KIND__TASK_KIND_TRAIN};
    dp_local_opts_t o;
    local_opts(&o, tmp("run"), &s);
    volatile sig_atomic_t stop = 0;
    stopper_t st = {&s, &stop};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, stop_when_slow, &st), 0);
    dp_local_result_t r;
    const dp_err_t err = dp_local_run(c, &o, &stop, &r);
    pthread_join(th, NULL);
    cr_assert_eq(err, DP_ERR_INTERRUPTED, "%d: %s", err, dp_err_detail());
    cr_assert_str_eq(r.campaign_id, "stub-1");
    cr_assert_null(r.final);
    cr_assert_eq(atomic_load(&s.slow_running), 0, "the TRAIN still runs");
    dp_local_result_clear(&r);

    /* the same call again: resumed, the TRAIN's next attempt, done */
    s.slow_kind = -1;
    cr_assert_eq(dp_local_run(c, &o, NULL, &r), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(state_of(&r), DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_DONE);
    cr_assert_eq(r.resumed, 1);
    cr_assert_str_eq(r.campaign_id, "stub-1");
    cr_assert_eq(atomic_load(&s.runs[DP__V1__TASK_KIND__TASK_KIND_TRAIN]), 2);
    cr_assert_eq(r.superseded, 0);
    dp_local_result_clear(&r);

    /* a new campaign stopped, then another one on the same directory:
       the first is cancelled, not run beside it */
    campaign_text(tmp("c2.txtpb"), "stub", NULL, 71, 16, 8, 2);
    Dp__V1__Campaign *c2 = load(tmp("c2.txtpb"));
    s.slow_kind = DP__V1__TASK_KIND__TASK_KIND_TRAIN;
    stop = 0;
    cr_assert_eq(pthread_create(&th, NULL, stop_when_slow, &st), 0);
    cr_assert_eq(dp_local_run(c2, &o, &stop, &r), DP_ERR_INTERRUPTED, "%s", dp_err_detail());
    pthread_join(th, NULL);
    cr_assert_str_eq(r.campaign_id, "stub-2");
    dp_local_result_clear(&r);
    campaign_text(tmp("c3.txtpb"), "stub", NULL, 71, 16, 8, 3);
    Dp__V1__Campaign *c3 = load(tmp("c3.txtpb"));
    s.slow_kind = -1;
    cr_assert_eq(dp_local_run(c3, &o, NULL, &r), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(state_of(&r), DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_DONE);
    cr_assert_str_eq(r.campaign_id, "stub-3");
    cr_assert_eq(r.superseded, 1);
    for (size_t i = 0; i < r.n_spans; i++)
        cr_assert(strncmp(r.spans[i].task_id, "stub-3/", 7) == 0, "%s ran beside stub-3",
                  r.spans[i].task_id);
    dp_local_result_clear(&r);
    campaign_free(&c);
    campaign_free(&c2);
    campaign_free(&c3);
}

Test(local, bad_options)
{
    campaign_text(tmp("c.txtpb"), "stub", NULL, 71, 16, 8, 1);
    Dp__V1__Campaign *c = load(tmp("c.txtpb"));
    dp_local_opts_t o;
    local_opts(&o, NULL, NULL);
    dp_local_result_t r;
    cr_assert_eq(dp_local_run(c, &o, NULL, &r), DP_ERR_INVALID);
    o.dir = tmp("run");
    o.threads = -1;
    cr_assert_eq(dp_local_run(c, &o, NULL, &r), DP_ERR_INVALID);
    write_text(tmp("file"), "x");
    o.threads = 1;
    o.dir = tmp("file/run");
    cr_assert_neq(dp_local_run(c, &o, NULL, &r), DP_OK);
    char dir[64];
    cr_assert_eq(dp_local_default_dir(c, dir, sizeof dir), DP_OK);
    cr_assert_str_eq(dir, "dp-runs/stub");
    char t1[64], t2[64];
    cr_assert_eq(dp_local_token(c, t1, sizeof t1), DP_OK);
    cr_assert_eq(dp_local_token(c, t2, sizeof t2), DP_OK);
    cr_assert_str_eq(t1, t2);
    cr_assert_eq(strlen(t1), DP_LOCAL_TOKEN_LEN);
    campaign_free(&c);
}

/* ---------------------------------------------------------------- the command */

typedef struct result {
    int status;
    char *out, *err;
} result_t;

static void result_free(result_t *r)
{
    free(r->out);
    free(r->err);
}

typedef struct child {
    pid_t pid;
    char out_path[128], err_path[128];
} child_t;

static child_t spawn(const char *const *argv)
{
    static int serial;
    child_t c;
    snprintf(c.out_path, sizeof c.out_path, "%s/out-%d", g_dir, serial);
    snprintf(c.err_path, sizeof c.err_path, "%s/err-%d", g_dir, serial++);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, c.out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, c.err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int e = posix_spawn(&c.pid, SUBMIT, &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(e, 0, "posix_spawn: %s", strerror(e));
    return c;
}

static result_t finish(child_t *c)
{
    int st = 0;
    for (int waited = 0;; waited++) {
        const pid_t w = waitpid(c->pid, &st, WNOHANG);
        if (w == c->pid) break;
        cr_assert_eq(w, 0, "waitpid: %s", strerror(errno));
        if (waited >= CHILD_TIMEOUT_S * 100) {
            kill(c->pid, SIGKILL);
            waitpid(c->pid, &st, 0);
            cr_assert_fail("dp-submit ran past %d s", CHILD_TIMEOUT_S);
        }
        usleep(10000);
    }
    result_t r = {.out = slurp(c->out_path), .err = slurp(c->err_path)};
    cr_assert(WIFEXITED(st), "killed by signal %d\nstderr: %s", WIFSIGNALED(st) ? WTERMSIG(st) : 0,
              r.err);
    r.status = WEXITSTATUS(st);
    return r;
}

static result_t run(const char *const *argv)
{
    child_t c = spawn(argv);
    return finish(&c);
}

#define expect_exit(r, code)                                                                       \
    cr_expect_eq((r).status, (code), "exit %d, expected %d\nstdout: %s\nstderr: %s", (r).status,   \
                 (code), (r).out, (r).err)
#define expect_in(r, needle)                                                                       \
    cr_expect(strstr((r).out, (needle)) || strstr((r).err, (needle)),                              \
              "'%s' not in the output\nstdout: %s\nstderr: %s", (needle), (r).out, (r).err)

TestSuite(local_cli, .init = setup, .fini = teardown, .timeout = 600);

Test(local_cli, tiny_campaign_done)
{
    need_data();
    campaign_text(tmp("tiny.txtpb"), "tiny", NULL, 71, 8, 8, 1);
    const char *argv[] = {
        SUBMIT, "--local", tmp("tiny.txtpb"), "--dir", tmp("run"), "--threads", "1", "-v", NULL};
    result_t r = run(argv);
    expect_exit(r, 0);
    expect_in(r, "campaign tiny-1 (tiny): done");
    expect_in(r, "tasks: 9, 9 done, 0 failed");
    expect_in(r, "4 measuring), 0 measuring runs overlapped a trainer task");
    char want[600];
    snprintf(want, sizeof want, "summary: %s/run/store/tiny-1/report/summary.json", g_dir);
    expect_in(r, want);
    cr_assert_eq(access(tmp("run/store/tiny-1/report/summary.json"), R_OK), 0);
    cr_assert_eq(
        access(tmp("run/store/tiny-1/sdn_resnet/linf-0.09/deepperform/s0/samples.safetensors"),
               R_OK),
        0);
    cr_assert_eq(
        access(tmp("run/store/tiny-1/sdn_resnet/seeds/s0/measure-local/measure.json"), R_OK), 0);
    result_free(&r);
    /* again: found in the journal, nothing runs, the same summary */
    const char *again[] = {SUBMIT, "--local", tmp("tiny.txtpb"), "--dir", tmp("run"), NULL};
    r = run(again);
    expect_exit(r, 0);
    expect_in(r, "it had ended, nothing ran");
    expect_in(r, want);
    result_free(&r);
}

Test(local_cli, failed_cell_exits_3)
{
    need_data();
    write_text(tmp("broken.safetensors"), "these are not tensors");
    campaign_text(tmp("two.txtpb"), "two", tmp("broken.safetensors"), 71, 8, 8, 1);
    const char *argv[] = {SUBMIT, "--local", tmp("two.txtpb"), "--dir", tmp("run"), "--threads",
                          "1",    NULL};
    result_t r = run(argv);
    expect_exit(r, 3);
    expect_in(r, "campaign two-1 (two): failed");
    expect_in(r, "failed tasks:");
    expect_in(r, "two-1/train/broken/linf-0.09 (attempt ");
    expect_in(r, "cannot load the model");
    /* the good model's cells are done, and the summary says what ran */
    cr_assert_eq(access(tmp("run/store/two-1/sdn_resnet/linf-0.09/deepperform/s0/"
                            "samples.safetensors"),
                        R_OK),
                 0);
    result_free(&r);
}

Test(local_cli, sigint_stops_and_the_same_command_resumes)
{
    need_data();
    /* a training of some seconds on one thread */
    campaign_text(tmp("long.txtpb"), "long", NULL, 2000, 8, 8, 1);
    const char *argv[] = {SUBMIT,      "--local", tmp("long.txtpb"), "--dir", tmp("run"),
                          "--threads", "1",       "--poll",          "0.1",   NULL};
    child_t c = spawn(argv);
    /* the TRAIN has started when its task has a line in the progress */
    for (int i = 0; i < 3000; i++) {
        char *e = slurp(c.err_path);
        const int started = strstr(e, "1 running") != NULL;
        free(e);
        if (started) break;
        sleep_ms(10);
    }
    sleep_ms(500);
    cr_assert_eq(kill(c.pid, SIGINT), 0);
    result_t r = finish(&c);
    expect_exit(r, 130);
    expect_in(r, "interrupted: the workers and the coordinator stopped; campaign long-1");
    expect_in(r, "the same command resumes it");
    result_free(&r);
    r = run(argv);
    expect_exit(r, 0);
    expect_in(r, "campaign long-1 was in");
    expect_in(r, "resumed, nothing resubmitted");
    expect_in(r, "campaign long-1 (long): done");
    result_free(&r);
}

Test(local_cli, flags)
{
    campaign_text(tmp("c.txtpb"), "c", NULL, 71, 8, 8, 1);
    const char *a[] = {SUBMIT, "--dir", tmp("run"), tmp("c.txtpb"), NULL};
    result_t r = run(a);
    expect_exit(r, 2);
    expect_in(r, "--dir goes with --local");
    result_free(&r);
    const char *b[] = {SUBMIT, "--local", "--status", NULL};
    r = run(b);
    expect_exit(r, 2);
    result_free(&r);
    const char *d[] = {SUBMIT,         "--local", "--coordinator", "tcp://127.0.0.1:1",
                       tmp("c.txtpb"), NULL};
    r = run(d);
    expect_exit(r, 2);
    expect_in(r, "--coordinator does not go with --local");
    result_free(&r);
    const char *e[] = {SUBMIT, "--local", "--threads", "x", tmp("c.txtpb"), NULL};
    r = run(e);
    expect_exit(r, 2);
    expect_in(r, "--threads (flag) expects a whole number");
    result_free(&r);
    const char *f[] = {SUBMIT, "--local", tmp("missing.txtpb"), NULL};
    r = run(f);
    expect_exit(r, 2);
    result_free(&r);
}

/* ---------------------------------------------------------------- the split cache */

static void same_samples(const char *a, const char *b)
{
    perf_samples_t *x = NULL, *y = NULL;
    cr_assert_eq(perf_samples_load(a, &x), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(perf_samples_load(b, &y), DP_OK, "%s", dp_err_detail());
    cr_assert(x->n == y->n && x->c == y->c && x->h == y->h && x->w == y->w);
    const size_t n = (size_t)x->n, px = n * (size_t)x->c * x->h * x->w;
    cr_assert_eq(memcmp(x->xadv, y->xadv, px * sizeof(float)), 0, "x' differ: %s %s", a, b);
    cr_assert_eq(memcmp(x->seed_index, y->seed_index, n * sizeof(int64_t)), 0);
    cr_assert_eq(memcmp(x->flops_adv, y->flops_adv, n * sizeof(double)), 0);
    cr_assert_eq(memcmp(x->psnr, y->psnr, n * sizeof(float)), 0);
    perf_samples_destroy(&x);
    perf_samples_destroy(&y);
}

Test(local, split_cache_same_bits, .timeout = 300)
{
    need_data();
    campaign_text(tmp("c.txtpb"), "tiny", NULL, 71, 16, 8, 1);
    Dp__V1__Campaign *c = load(tmp("c.txtpb"));
    dp_local_opts_t o;
    dp_local_result_t r;
    local_opts(&o, tmp("cached"), NULL);
    cr_assert_eq(dp_local_run(c, &o, NULL, &r), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(state_of(&r), DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_DONE);
    /* the training split once, the test split once; then reused by the
       other GENERATE, BASELINE and MEASURE tasks (2 + 4 + 2 of the seeds
       + 6 of the sample sets, which measure their seeds beside them) and
       the REPORT (the seeds of its image grids) */
    cr_assert_eq(r.split_cache.misses + r.split_cache.uncached, 2, "decoded %llu times",
                 (unsigned long long)(r.split_cache.misses + r.split_cache.uncached));
    cr_assert_eq(r.split_cache.hits, 14, "reused %llu times",
                 (unsigned long long)r.split_cache.hits);
    /* the real task layer's measuring runs (their CLOCK_MONOTONIC spans, as
       the library took them) never meet a trainer task's */
    size_t measured = 0;
    for (size_t i = 0; i < r.n_spans; i++) {
        const dp_local_span_t *m = &r.spans[i];
        cr_assert_lt(m->start_ns, m->end_ns, "%s: an empty span", m->task_id);
        if (!m->measurer) continue;
        measured++;
        for (size_t k = 0; k < r.n_spans; k++) {
            const dp_local_span_t *t = &r.spans[k];
            cr_assert(t->measurer || t->end_ns <= m->start_ns || m->end_ns <= t->start_ns,
                      "%s [%llu, %llu] overlaps %s [%llu, %llu]", m->task_id,
                      (unsigned long long)m->start_ns, (unsigned long long)m->end_ns, t->task_id,
                      (unsigned long long)t->start_ns, (unsigned long long)t->end_ns);
        }
    }
    cr_assert_eq(measured, 8, "MEASURE tasks run: %zu", measured);
    cr_assert_eq(r.overlaps, 0);
    dp_local_result_clear(&r);
    local_opts(&o, tmp("uncached"), NULL);
    o.no_split_cache = 1;
    cr_assert_eq(dp_local_run(c, &o, NULL, &r), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(state_of(&r), DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_DONE);
    cr_assert_eq(r.split_cache.hits + r.split_cache.misses, 0);
    dp_local_result_clear(&r);
    const char *sets[] = {"deepperform/s0", "deepperform/s1", "random/s0",
                          "random/s1",      "ilfo/s0",        "ilfo/s1"};
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) {
        char a[600], b[600];
        snprintf(a, sizeof a, "%s/cached/store/tiny-1/sdn_resnet/linf-0.09/%s/samples.safetensors",
                 g_dir, sets[i]);
        snprintf(b, sizeof b,
                 "%s/uncached/store/tiny-1/sdn_resnet/linf-0.09/%s/samples.safetensors", g_dir,
                 sets[i]);
        same_samples(a, b);
    }
    campaign_free(&c);
}
