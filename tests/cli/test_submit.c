/* dp-submit and its library (coordinator/client.h).
 *
 * - Campaign files, no coordinator needed: a missing file, bytes that are
 *   no protobuf, a campaign that fails validation, a .txtpb with a syntax
 *   error, protoc missing: the documented exit status and a message naming
 *   what is wrong; relative file:// URIs made absolute (-v says so).
 * - A coordinator nobody runs: exit 5, "cannot reach the coordinator at".
 * - The client against a scripted fake coordinator over inproc:// (the
 *   path --local takes): a lost Submit is resent with the same token and a
 *   late reply to the first send is taken; NOT_REGISTERED makes it say
 *   Hello again; BUSY is waited out; an Error maps to its code.
 * - End to end: the real dp-coordinator as a child process on a free
 *   tcp://127.0.0.1 port and a fake trainer and measurer in a thread of the
 *   test that answer every Assign with a Result (or a final Failure):
 *   `--wait` exits 0 (3 with failed cells, naming the task and its
 *   reason), `--status --json` is JSON that python3 parses, `--cancel`
 *   answers, and `--status ID --wait` on the cancelled campaign exits 4.
 *
 * In an argument or an expected message, "@/" stands for the temporary
 * directory. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "campaign/campaign.h"
#include "client.h"
#include "wire/envelope.h"
#include "wire/sock.h"
#include "../lib/free_port.h"

extern char **environ;

#define SUBMIT          DP_BINARY_DIR "/cli/dp-submit"
#define COORD           DP_BINARY_DIR "/coordinator/dp-coordinator"
#define MAX_ARGS        32
#define CHILD_TIMEOUT_S 60

/* ---------------------------------------------------------------- files */

static char g_dir[64];

static void setup(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/dp-submit-XXXXXX");
    cr_assert_not_null(mkdtemp(g_dir), "mkdtemp: %s", strerror(errno));
}

static pid_t g_coord = -1;

static void teardown(void)
{
    if (g_coord > 0) {
        kill(g_coord, SIGTERM);
        waitpid(g_coord, NULL, 0);
        g_coord = -1;
    }
    char cmd[128];
    if (g_dir[0]) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
        cr_expect_eq(system(cmd), 0);
    }
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
            p++;
        }
        *o++ = *p++;
    }
    *o = '\0';
    return out;
}

static const char *tmp(const char *name)
{
    static char buf[8][4096];
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

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    cr_assert_eq(fwrite(data, 1, len, f), len);
    cr_assert_eq(fclose(f), 0);
}

static void write_text(const char *path, const char *text)
{
    char *t = expand(text);
    write_file(path, t, strlen(t));
    free(t);
}

/* s with its first `from` replaced by `to`; a new string, caller frees. */
static char *replace(const char *s, const char *from, const char *to)
{
    const char *at = strstr(s, from);
    cr_assert_not_null(at, "'%s' not in the text", from);
    char *out = malloc(strlen(s) - strlen(from) + strlen(to) + 1);
    cr_assert_not_null(out);
    sprintf(out, "%.*s%s%s", (int)(at - s), s, to, at + strlen(from));
    return out;
}

/* ---------------------------------------------------------------- children */

typedef struct result {
    int status; /* exit status */
    char *out, *err;
} result_t;

static void result_free(result_t *r)
{
    free(r->out);
    free(r->err);
}

typedef struct child {
    pid_t pid;
    char out_path[128], err_path[128], what[256];
} child_t;

/* Starts SUBMIT with the arguments (NULL-terminated, "@/" expanded). */
static child_t spawn_va(const char *first, va_list ap)
{
    char *args[MAX_ARGS + 2];
    int n = 0;
    args[n++] = strdup(SUBMIT);
    for (const char *a = first; a; a = va_arg(ap, const char *)) {
        cr_assert_lt(n, MAX_ARGS);
        args[n++] = expand(a);
    }
    args[n] = NULL;
    static int serial;
    child_t c;
    snprintf(c.out_path, sizeof c.out_path, "%s/out-%d", g_dir, serial);
    snprintf(c.err_path, sizeof c.err_path, "%s/err-%d", g_dir, serial++);
    snprintf(c.what, sizeof c.what, "dp-submit %s %s", n > 1 ? args[1] : "", n > 2 ? args[2] : "");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, c.out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, c.err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int e = posix_spawn(&c.pid, args[0], &fa, NULL, args, environ);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(e, 0, "posix_spawn %s: %s", args[0], strerror(e));
    for (int i = 0; i < n; i++) free(args[i]);
    return c;
}

static child_t spawn(const char *first, ...)
{
    va_list ap;
    va_start(ap, first);
    child_t c = spawn_va(first, ap);
    va_end(ap);
    return c;
}

/* Waits for c; fails the test when it is killed by a signal or runs past
 * CHILD_TIMEOUT_S. */
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
            cr_assert_fail("%s ran past %d s", c->what, CHILD_TIMEOUT_S);
        }
        usleep(10000);
    }
    result_t r = {.out = slurp(c->out_path), .err = slurp(c->err_path)};
    cr_assert(WIFEXITED(st), "%s: killed by signal %d\nstderr: %s", c->what,
              WIFSIGNALED(st) ? WTERMSIG(st) : 0, r.err);
    r.status = WEXITSTATUS(st);
    return r;
}

/* Runs SUBMIT with the arguments to its end. */
static result_t run(const char *first, ...)
{
    va_list ap;
    va_start(ap, first);
    child_t c = spawn_va(first, ap);
    va_end(ap);
    return finish(&c);
}

#define expect_exit(r, code, needle)                                                               \
    do {                                                                                           \
        cr_expect_eq((r).status, (code), "exit %d, expected %d\nstdout: %s\nstderr: %s",           \
                     (r).status, (code), (r).out, (r).err);                                        \
        const char *needle_ = (needle);                                                            \
        if (needle_) {                                                                             \
            char *want_ = expand(needle_);                                                         \
            cr_expect(strstr((r).err, want_) || strstr((r).out, want_),                            \
                      "'%s' not in the output\nstdout: %s\nstderr: %s", want_, (r).out, (r).err);  \
            free(want_);                                                                           \
        }                                                                                          \
    } while (0)

/* A port on 127.0.0.1 that nobody listens on (bound, then closed). */

/* ---------------------------------------------------------------- campaigns */

static const char *tiny_txt = "name: \"tiny\"\n"
                              "store_uri: \"file:///tmp/dp-store\"\n"
                              "models { name: \"skipnet\" family: MODEL_FAMILY_SKIPNET\n"
                              "  spec_uri: \"file:///models/skipnet.spec.pb\"\n"
                              "  weights_uri: \"file:///models/skipnet.safetensors\" }\n"
                              "datasets { name: \"fmnist\" format: DATASET_FORMAT_IDX\n"
                              "  train_images_uri: \"file:///data/train-images\"\n"
                              "  train_labels_uri: \"file:///data/train-labels\"\n"
                              "  test_images_uri: \"file:///data/t10k-images\"\n"
                              "  test_labels_uri: \"file:///data/t10k-labels\"\n"
                              "  test_range { begin: 0 end: 4 } shard_size: 2 }\n"
                              "budgets { norm: NORM_LINF eps: 0.03 }\n"
                              "device_classes { name: \"x86\" probe: ENERGY_PROBE_NONE }\n";

/* The tiny campaign as a Campaign (caller frees with campaign_free). */
static Dp__V1__Campaign *tiny_campaign(void)
{
    const char *p = tmp("tiny-load.txtpb");
    write_text(p, tiny_txt);
    Dp__V1__Campaign *c = NULL;
    cr_assert_eq(dp_client_campaign_load(p, NULL, &c), DP_OK, "%s", dp_err_detail());
    return c;
}

/* The tiny campaign, renamed, as a binary file at path. */
static void write_pb(const char *path, const char *name)
{
    Dp__V1__Campaign *c = tiny_campaign();
    char *old = c->name;
    c->name = (char *)name;
    const size_t n = dp__v1__campaign__get_packed_size(c);
    uint8_t *b = malloc(n);
    dp__v1__campaign__pack(c, b);
    write_file(path, b, n);
    free(b);
    c->name = old;
    campaign_free(&c);
}

/* ---------------------------------------------------------------- campaign files */

TestSuite(submit_files, .init = setup, .fini = teardown, .timeout = 120);

Test(submit_files, usage)
{
    result_t r = run("--help", NULL);
    expect_exit(r, 0, "exit status:");
    cr_expect(strstr(r.out, "5  cannot reach the coordinator"), "%s", r.out);
    result_free(&r);
    r = run(NULL);
    expect_exit(r, 2, "no campaign file");
    result_free(&r);
    r = run("--status", "--cancel", "x", NULL);
    expect_exit(r, 2, "do not go together");
    result_free(&r);
    r = run("--timeout", "0", "--status", NULL);
    expect_exit(r, 2, "--timeout (flag) expects seconds");
    result_free(&r);
    r = run("--bogus", NULL);
    expect_exit(r, 2, "unrecognized option");
    result_free(&r);
    r = run("--curve-key", "@/k", "--status", NULL);
    expect_exit(r, 2, "go together");
    result_free(&r);
}

Test(submit_files, missing_file)
{
    result_t r = run("@/nothing.pb", NULL);
    expect_exit(r, 2, "@/nothing.pb: no such file");
    cr_expect_str_empty(r.out);
    result_free(&r);
    r = run("@/nothing.txtpb", NULL);
    expect_exit(r, 2, "@/nothing.txtpb: no such file");
    result_free(&r);
}

Test(submit_files, not_protobuf)
{
    write_text(tmp("junk.pb"), "this is not a protobuf\n\xff\xff\xff\xff");
    result_t r = run("@/junk.pb", NULL);
    expect_exit(r, 2, "@/junk.pb: not a dp.v1.Campaign protobuf");
    result_free(&r);
    write_file(tmp("empty.pb"), "", 0);
    r = run("@/empty.pb", NULL);
    expect_exit(r, 2, "@/empty.pb: empty");
    result_free(&r);
    mkdir(tmp("dir.pb"), 0755);
    r = run("@/dir.pb", NULL);
    expect_exit(r, 2, "not a regular file");
    result_free(&r);
}

Test(submit_files, invalid_campaign_names_the_field)
{
    /* binary: a model named twice */
    Dp__V1__Campaign *c = tiny_campaign();
    Dp__V1__Model m2 = *c->models[0], *ms[2] = {c->models[0], &m2};
    Dp__V1__Model **old = c->models;
    c->models = ms, c->n_models = 2;
    const size_t n = dp__v1__campaign__get_packed_size(c);
    uint8_t *b = malloc(n);
    dp__v1__campaign__pack(c, b);
    c->models = old, c->n_models = 1;
    campaign_free(&c);
    write_file(tmp("dup.pb"), b, n);
    free(b);
    result_t r = run("@/dup.pb", NULL);
    expect_exit(r, 2, "@/dup.pb: campaign: models[1].name 'skipnet' is also models[0]'s");
    result_free(&r);

    /* text: eps out of its bounds */
    char *t = replace(tiny_txt, "eps: 0.03", "eps: -1.0");
    write_text(tmp("eps.txtpb"), t);
    free(t);
    r = run("@/eps.txtpb", NULL);
    expect_exit(r, 2, "budgets[0].eps");
    result_free(&r);
}

Test(submit_files, txtpb_syntax_error)
{
    write_text(tmp("bad.txtpb"), "name: \"x\"\nmodels { nam: \"a\" }\n");
    result_t r = run("@/bad.txtpb", NULL);
    expect_exit(r, 2, "@/bad.txtpb:2:");
    cr_expect(strstr(r.err, "has no field named \"nam\""), "%s", r.err);
    cr_expect_null(strstr(r.err, "Failed to parse input"), "%s", r.err);
    result_free(&r);
    write_text(tmp("open.txtpb"), "name: \"x\"\nmodels { name: \"a\"\n");
    r = run("@/open.txtpb", NULL);
    expect_exit(r, 2, "@/open.txtpb:3:");
    result_free(&r);
}

Test(submit_files, protoc_missing)
{
    write_text(tmp("tiny.txtpb"), tiny_txt);
    result_t r = run("--protoc", "@/no-such-protoc", "@/tiny.txtpb", NULL);
    expect_exit(r, 1,
                "protoc not found: install protobuf-compiler, or encode the campaign with "
                "protoc --encode=dp.v1.Campaign");
    result_free(&r);
    r = run("--proto-dir", "@/", "@/tiny.txtpb", NULL);
    expect_exit(r, 2, "has no dp/v1/campaign.proto");
    result_free(&r);
}

Test(submit_files, relative_uris_resolved)
{
    mkdir(tmp("sub"), 0755);
    char *t = replace(tiny_txt, "file:///tmp/dp-store", "file://./dp-store");
    char *u = replace(t, "file:///models/skipnet.spec.pb", "file://models/skipnet.spec.pb");
    write_text(tmp("sub/rel.txtpb"), u);
    free(t);
    free(u);
    /* resolved, then nobody answers */
    result_t r =
        run("-v", "--timeout", "0.3", "--coordinator", "inproc://nobody", "@/sub/rel.txtpb", NULL);
    expect_exit(r, 5, "store_uri: file://./dp-store -> file://@/sub/dp-store");
    expect_exit(r, 5,
                "models[0].spec_uri: file://models/skipnet.spec.pb -> "
                "file://@/sub/models/skipnet.spec.pb");
    result_free(&r);

    Dp__V1__Campaign *c = tiny_campaign();
    free(c->store_uri);
    c->store_uri = strdup("file://.");
    free(c->datasets[0]->test_labels_uri);
    c->datasets[0]->test_labels_uri = strdup("file://././x/y");
    cr_assert_eq(dp_client_campaign_resolve(c, "/base", NULL, NULL), DP_OK);
    cr_expect_str_eq(c->store_uri, "file:///base");
    cr_expect_str_eq(c->datasets[0]->test_labels_uri, "file:///base/x/y");
    cr_expect_str_eq(c->datasets[0]->test_images_uri, "file:///data/t10k-images");
    campaign_free(&c);
}

Test(submit_files, tokens_differ)
{
    char a[40], b[40];
    dp_client_token(NULL, 0, a, sizeof a);
    dp_client_token((const uint8_t *)"x", 1, b, sizeof b);
    cr_expect_eq(strlen(a), 32);
    cr_expect_str_neq(a, b);
}

Test(submit_files, json_of_a_reply)
{
    Dp__V1__StatusReply r = DP__V1__STATUS_REPLY__INIT;
    Dp__V1__CampaignStatus cs = DP__V1__CAMPAIGN_STATUS__INIT, *csp = &cs;
    Dp__V1__TaskCounts k = DP__V1__TASK_COUNTS__INIT;
    cs.campaign_id = "tiny-1";
    cs.name = "say \"hi\"\n\x01";
    cs.state = DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_FAILED;
    cs.accepted_unix_ms = 1765000000123ull;
    k.done = 7;
    cs.counts = &k;
    r.n_campaigns = 1, r.campaigns = &csp;
    char *j = dp_client_json(&r.base);
    cr_assert_not_null(j);
    cr_expect(strstr(j, "\"campaign_id\":\"tiny-1\""), "%s", j);
    cr_expect(strstr(j, "\"name\":\"say \\\"hi\\\"\\n\\u0001\""), "%s", j);
    cr_expect(strstr(j, "\"state\":\"CAMPAIGN_STATE_FAILED\""), "%s", j);
    cr_expect(strstr(j, "\"accepted_unix_ms\":1765000000123"), "%s", j);
    cr_expect(strstr(j, "\"done\":7"), "%s", j);
    cr_expect(strstr(j, "\"workers\":[]"), "%s", j);
    cr_expect_null(strstr(j, "\"totals\""), "an absent message is left out: %s", j);
    write_file(tmp("r.json"), j, strlen(j));
    free(j);
    char *cmd = expand("python3 -c 'import json,sys; json.load(sys.stdin)' < @/r.json");
    cr_expect_eq(system(cmd), 0, "python3 could not parse the JSON");
    free(cmd);
}

/* ---------------------------------------------------------------- unreachable */

Test(submit_files, cannot_reach)
{
    char ep[64];
    const int port = free_port();
    cr_assert_gt(port, 0, "no free port on 127.0.0.1");
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", port);
    write_pb(tmp("tiny.pb"), "tiny");
    result_t r = run("--coordinator", ep, "--timeout", "0.5", "@/tiny.pb", "--wait", NULL);
    char want[128];
    snprintf(want, sizeof want, "cannot reach the coordinator at %s", ep);
    expect_exit(r, 5, want);
    cr_expect_str_empty(r.out);
    result_free(&r);
    r = run("--coordinator", ep, "--timeout", "0.3", "--status", NULL);
    expect_exit(r, 5, want);
    result_free(&r);
    r = run("--coordinator", ep, "--timeout", "0.3", "--cancel", "tiny-1", NULL);
    expect_exit(r, 5, want);
    result_free(&r);
}

/* ---------------------------------------------------------------- a scripted coordinator */

typedef struct fake {
    void *ctx, *router;
    int drop_first_submit, not_registered_once, busy_once;
    char tokens[4][DP_CLIENT_TOKEN_MAX + 1];
    int ntokens, hellos;
    volatile int stop;
    uint64_t first_submit_seq;
} fake_t;

static void fake_reply(fake_t *f, const dp_wire_peer_t *to, Dp__V1__Envelope *e, uint64_t reply_to)
{
    static uint64_t seq;
    e->reply_to = reply_to;
    cr_assert_eq(dp_wire_send(f->router, to, e, &seq, 0), DP_OK, "%s", dp_err_detail());
}

static void fake_error(fake_t *f, const dp_wire_peer_t *to, Dp__V1__ErrorCode code,
                       uint64_t reply_to)
{
    Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;
    Dp__V1__Error er = DP__V1__ERROR__INIT;
    er.code = code;
    er.message = "scripted";
    e.body_case = DP__V1__ENVELOPE__BODY_ERROR;
    e.error = &er;
    fake_reply(f, to, &e, reply_to);
}

/* Answers messages until the client socket has nothing more to say for a
 * while: the script of fake_t. */
static void *fake_main(void *arg)
{
    fake_t *f = arg;
    while (!f->stop) {
        zmq_pollitem_t it = {f->router, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 20) <= 0) continue;
        dp_wire_peer_t from;
        Dp__V1__Envelope *e = NULL;
        if (dp_wire_recv(f->router, ZMQ_DONTWAIT, 0, &from, &e)) continue;
        Dp__V1__Envelope r = DP__V1__ENVELOPE__INIT;
        switch (e->body_case) {
        case DP__V1__ENVELOPE__BODY_HELLO: {
            Dp__V1__Welcome w = DP__V1__WELCOME__INIT;
            cr_expect_eq(e->hello->role, DP__V1__ROLE__ROLE_SUBMITTER);
            f->hellos++;
            w.protocol_version = 1;
            w.heartbeat_ms = 1000;
            w.liveness = 3;
            w.coordinator_id = "fake";
            r.body_case = DP__V1__ENVELOPE__BODY_WELCOME;
            r.welcome = &w;
            fake_reply(f, &from, &r, e->seq);
            break;
        }
        case DP__V1__ENVELOPE__BODY_SUBMIT: {
            if (f->ntokens < 4)
                snprintf(f->tokens[f->ntokens++], sizeof f->tokens[0], "%s",
                         e->submit->client_token);
            if (f->drop_first_submit && f->ntokens == 1) {
                f->first_submit_seq = e->seq; /* lost: answered late, below */
                break;
            }
            Dp__V1__SubmitReply s = DP__V1__SUBMIT_REPLY__INIT;
            s.campaign_id = "tiny-1";
            s.tasks = 8;
            r.body_case = DP__V1__ENVELOPE__BODY_SUBMIT_REPLY;
            r.submit_reply = &s;
            fake_reply(f, &from, &r, f->first_submit_seq ? f->first_submit_seq : e->seq);
            break;
        }
        case DP__V1__ENVELOPE__BODY_STATUS_REQUEST: {
            if (f->not_registered_once) {
                f->not_registered_once = 0;
                fake_error(f, &from, DP__V1__ERROR_CODE__ERROR_CODE_NOT_REGISTERED, e->seq);
                break;
            }
            if (f->busy_once) {
                f->busy_once = 0;
                fake_error(f, &from, DP__V1__ERROR_CODE__ERROR_CODE_BUSY, e->seq);
                break;
            }
            Dp__V1__StatusReply s = DP__V1__STATUS_REPLY__INIT;
            r.body_case = DP__V1__ENVELOPE__BODY_STATUS_REPLY;
            r.status_reply = &s;
            fake_reply(f, &from, &r, e->seq);
            break;
        }
        case DP__V1__ENVELOPE__BODY_CANCEL:
            fake_error(f, &from, DP__V1__ERROR_CODE__ERROR_CODE_NOT_FOUND, e->seq);
            break;
        default:
            break;
        }
        dp_wire_free(&e);
    }
    return NULL;
}

TestSuite(submit_client, .timeout = 60);

Test(submit_client, resends_hello_again_busy_and_errors)
{
    void *ctx = zmq_ctx_new();
    fake_t f = {.ctx = ctx, .drop_first_submit = 1, .not_registered_once = 1, .busy_once = 0};
    dp_wire_sock_opts_t so;
    dp_wire_sock_opts_init(&so);
    so.linger_ms = 0;
    cr_assert_eq(dp_wire_socket(ctx, ZMQ_ROUTER, &so, &f.router), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(dp_wire_bind(f.router, "inproc://fake"), DP_OK, "%s", dp_err_detail());
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, fake_main, &f), 0);

    dp_client_opts_t o;
    dp_client_opts_init(&o);
    o.endpoint = "inproc://fake";
    o.zmq_ctx = ctx;
    o.timeout_ms = 5000;
    o.retry_ms = 100;
    dp_client_t *c = NULL;
    cr_assert_eq(dp_client_new(&o, &c), DP_OK, "%s", dp_err_detail());

    Dp__V1__Campaign *camp = NULL;
    setup();
    camp = tiny_campaign();
    dp_client_submitted_t sub;
    cr_assert_eq(dp_client_submit(c, camp, "tok-123", NULL, &sub), DP_OK, "%s", dp_err_detail());
    cr_expect_str_eq(sub.campaign_id, "tiny-1");
    cr_expect_eq(sub.tasks, 8);
    cr_assert_geq(f.ntokens, 2, "the lost Submit was sent again");
    cr_expect_str_eq(f.tokens[0], "tok-123");
    cr_expect_str_eq(f.tokens[1], "tok-123", "with the same token");

    /* NOT_REGISTERED: Hello again, then the status */
    Dp__V1__StatusReply *st = NULL;
    cr_assert_eq(dp_client_status(c, NULL, 0, 0, NULL, &st), DP_OK, "%s", dp_err_detail());
    cr_expect_eq(f.hellos, 2);
    dp_client_status_free(&st);
    f.busy_once = 1;
    cr_assert_eq(dp_client_status(c, "tiny-1", 1, 1, NULL, &st), DP_OK, "%s", dp_err_detail());
    dp_client_status_free(&st);

    uint32_t n = 1;
    cr_expect_eq(dp_client_cancel(c, "nope-1", NULL, NULL, &n), DP_ERR_NOTFOUND);
    cr_expect_eq(dp_client_last_remote(c), DP__V1__ERROR_CODE__ERROR_CODE_NOT_FOUND);
    cr_expect(strstr(dp_err_detail(), "coordinator: scripted"), "%s", dp_err_detail());

    /* a stop flag ends a request that gets no answer */
    volatile sig_atomic_t stop = 1;
    cr_expect_eq(dp_client_status(c, NULL, 0, 0, &stop, &st), DP_ERR_INTERRUPTED);

    cr_expect_eq(dp_client_submit(c, camp, "has space", NULL, &sub), DP_ERR_INVALID);
    campaign_free(&camp);
    dp_client_destroy(&c);
    f.stop = 1;
    pthread_join(th, NULL);
    zmq_close(f.router);
    zmq_ctx_term(ctx);
    teardown();
}

/* ---------------------------------------------------------------- end to end */

typedef struct worker {
    const char *endpoint;
    volatile int stop;
    int fail_train; /* TRAIN tasks fail for good */
    int results, failures;
} worker_t;

typedef struct wsock {
    void *s;
    uint64_t seq;
    const char *id, *cls;
    Dp__V1__Role role;
} wsock_t;

static void wsend(wsock_t *w, Dp__V1__Envelope *e)
{
    e->sender_id = (char *)w->id;
    dp_wire_send(w->s, NULL, e, &w->seq, ZMQ_DONTWAIT);
}

static void whello(wsock_t *w)
{
    Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;
    Dp__V1__Hello h = DP__V1__HELLO__INIT;
    h.role = w->role;
    h.worker_id = (char *)w->id;
    h.device_class = (char *)(w->cls ? w->cls : "");
    h.host = (char *)w->id; /* each its own host: measuring and training may overlap */
    h.capacity = 1;
    h.protocol_min = h.protocol_max = 1;
    e.body_case = DP__V1__ENVELOPE__BODY_HELLO;
    e.hello = &h;
    wsend(w, &e);
    Dp__V1__Envelope r = DP__V1__ENVELOPE__INIT;
    Dp__V1__Ready rd = DP__V1__READY__INIT;
    rd.slots = 1;
    r.body_case = DP__V1__ENVELOPE__BODY_READY;
    r.ready = &rd;
    wsend(w, &r);
}

static void *worker_main(void *arg)
{
    worker_t *wk = arg;
    void *ctx = zmq_ctx_new();
    wsock_t ws[2] = {{.id = "fake-trainer", .role = DP__V1__ROLE__ROLE_TRAINER},
                     {.id = "fake-measurer", .cls = "x86", .role = DP__V1__ROLE__ROLE_MEASURER}};
    for (int i = 0; i < 2; i++) {
        dp_wire_sock_opts_t so;
        dp_wire_sock_opts_init(&so);
        so.linger_ms = 0;
        so.routing_id = ws[i].id;
        if (dp_wire_socket(ctx, ZMQ_DEALER, &so, &ws[i].s) ||
            dp_wire_connect(ws[i].s, wk->endpoint))
            return NULL;
        whello(&ws[i]);
    }
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long next_hb = 0;
    while (!wk->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        const long now = (ts.tv_sec - t0.tv_sec) * 1000 + (ts.tv_nsec - t0.tv_nsec) / 1000000;
        if (now >= next_hb) {
            for (int i = 0; i < 2; i++) {
                Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;
                Dp__V1__Heartbeat hb = DP__V1__HEARTBEAT__INIT;
                e.body_case = DP__V1__ENVELOPE__BODY_HEARTBEAT;
                e.heartbeat = &hb;
                wsend(&ws[i], &e);
            }
            next_hb = now + 40;
        }
        zmq_pollitem_t it[2] = {{ws[0].s, 0, ZMQ_POLLIN, 0}, {ws[1].s, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(it, 2, 20) <= 0) continue;
        for (int i = 0; i < 2; i++) {
            if (!(it[i].revents & ZMQ_POLLIN)) continue;
            Dp__V1__Envelope *e = NULL;
            if (dp_wire_recv(ws[i].s, ZMQ_DONTWAIT, 0, NULL, &e)) continue;
            Dp__V1__Envelope r = DP__V1__ENVELOPE__INIT;
            if (e->body_case == DP__V1__ENVELOPE__BODY_ASSIGN) {
                const Dp__V1__Task *t = e->assign->task;
                if (wk->fail_train && t->kind == DP__V1__TASK_KIND__TASK_KIND_TRAIN) {
                    Dp__V1__Failure fl = DP__V1__FAILURE__INIT;
                    fl.task_id = t->id;
                    fl.attempt = t->attempt;
                    fl.reason = "fake: the generator diverged";
                    fl.retryable = 0;
                    r.body_case = DP__V1__ENVELOPE__BODY_FAILURE;
                    r.failure = &fl;
                    wsend(&ws[i], &r);
                    wk->failures++;
                } else {
                    Dp__V1__Result res = DP__V1__RESULT__INIT;
                    Dp__V1__TaskResult tr = DP__V1__TASK_RESULT__INIT;
                    tr.summary_json = "{\"ok\":true}";
                    tr.seconds = 0.001;
                    res.task_id = t->id;
                    res.attempt = t->attempt;
                    res.result = &tr;
                    r.body_case = DP__V1__ENVELOPE__BODY_RESULT;
                    r.result = &res;
                    wsend(&ws[i], &r);
                    wk->results++;
                }
            } else if (e->body_case == DP__V1__ENVELOPE__BODY_ACK) {
                Dp__V1__Ready rd = DP__V1__READY__INIT;
                rd.slots = 1;
                r.body_case = DP__V1__ENVELOPE__BODY_READY;
                r.ready = &rd;
                wsend(&ws[i], &r);
            } else if (e->body_case == DP__V1__ENVELOPE__BODY_ERROR &&
                       e->error->code == DP__V1__ERROR_CODE__ERROR_CODE_NOT_REGISTERED) {
                whello(&ws[i]);
            }
            dp_wire_free(&e);
        }
    }
    for (int i = 0; i < 2; i++) zmq_close(ws[i].s);
    zmq_ctx_term(ctx);
    return NULL;
}

/* dp-coordinator on ep (a free port when *ep is ""), journal in the
 * temporary directory, with up to 4 more arguments (NULL-terminated). */
static void coordinator_start(char *ep, size_t size, ...)
{
    if (!*ep) {
        const int port = free_port();
        cr_assert_gt(port, 0, "no free port on 127.0.0.1");
        snprintf(ep, size, "tcp://127.0.0.1:%d", port);
    }
    char *journal = expand("@/coord.journal"), *log = expand("@/coord.log");
    char *args[16] = {
        COORD,        "--bind",      ep,    "--journal", journal, "--heartbeat-ms", "100",
        "--no-fsync", "--log-level", "info"};
    int n = 10;
    va_list ap;
    va_start(ap, size);
    for (char *a; n < 15 && (a = va_arg(ap, char *));) args[n++] = a;
    va_end(ap);
    args[n] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    const int e = posix_spawn(&g_coord, COORD, &fa, NULL, args, environ);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(e, 0, "posix_spawn %s: %s", COORD, strerror(e));
    free(journal);
    free(log);
}

/* The campaign id in dp-submit's first line of stdout ("ID: accepted, N tasks"). */
static char *campaign_id_of(const char *out)
{
    const char *colon = strchr(out, ':');
    cr_assert_not_null(colon, "no campaign id in '%s'", out);
    return strndup(out, (size_t)(colon - out));
}

TestSuite(submit_e2e, .init = setup, .fini = teardown, .timeout = 180);

Test(submit_e2e, wait_status_cancel)
{
    char ep[64] = "";
    coordinator_start(ep, sizeof ep, NULL);
    write_pb(tmp("tiny.pb"), "tiny");
    write_pb(tmp("held.pb"), "held");

    /* no workers yet: a campaign that stays queued, then is cancelled */
    result_t r = run("--coordinator", ep, "@/held.pb", NULL);
    expect_exit(r, 0, "held-1: accepted, 8 tasks");
    char *held = campaign_id_of(r.out);
    cr_expect_str_eq(held, "held-1");
    result_free(&r);
    r = run("--coordinator", ep, "--status", held, NULL);
    expect_exit(r, 0, "held-1  running");
    cr_expect(strstr(r.out, "device class x86: 0 live measurers"), "%s", r.out);
    result_free(&r);
    r = run("--coordinator", ep, "--cancel", held, "--reason", "test cancel", "--json", NULL);
    expect_exit(r, 0, "\"campaign_id\":\"held-1\"");
    cr_expect(strstr(r.out, "\"tasks_cancelled\":8"), "%s", r.out);
    result_free(&r);
    r = run("--coordinator", ep, "--status", held, "--wait", NULL);
    expect_exit(r, 4, "campaign held-1 (held): cancelled");
    cr_expect(strstr(r.out, "test cancel"), "the reason is shown: %s", r.out);
    result_free(&r);

    /* the same token twice: one campaign */
    r = run("--coordinator", ep, "--token", "tok-A", "@/tiny.pb", "--json", NULL);
    expect_exit(r, 0, "\"campaign_id\":\"tiny-2\"");
    cr_expect(strstr(r.out, "\"duplicate\":false"), "%s", r.out);
    result_free(&r);

    worker_t wk = {.endpoint = ep};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, worker_main, &wk), 0);
    r = run("--coordinator", ep, "--token", "tok-A", "@/tiny.pb", "--wait", "--poll", "0.2", NULL);
    expect_exit(r, 0, "tiny-2: submitted before with this token (nothing new), 8 tasks");
    cr_expect(strstr(r.out, "campaign tiny-2 (tiny): done"), "%s", r.out);
    cr_expect(strstr(r.out, "tasks: 8, 8 done, 0 failed, 0 cancelled"), "%s", r.out);
    cr_expect(strstr(r.out, "results: file:///tmp/dp-store/tiny-2/"), "%s", r.out);
    cr_expect(strstr(r.err, "dp-submit: tiny-2: "), "a plain progress line: %s", r.err);
    cr_expect_null(strstr(r.err, "\033["), "no terminal codes off a terminal: %s", r.err);
    result_free(&r);

    r = run("--coordinator", ep, "--status", "tiny-2", "--json", NULL);
    expect_exit(r, 0, "\"state\":\"CAMPAIGN_STATE_DONE\"");
    write_file(tmp("status.json"), r.out, strlen(r.out));
    result_free(&r);
    char *cmd = expand("python3 -c 'import json,sys; d=json.load(sys.stdin); "
                       "assert d[\"campaigns\"][0][\"counts\"][\"done\"] == 8' < @/status.json");
    cr_expect_eq(system(cmd), 0, "python3 could not parse the status JSON");
    free(cmd);
    r = run("--coordinator", ep, "--status", "--workers", NULL);
    expect_exit(r, 0, "worker fake-measurer: measurer of x86");
    cr_expect(strstr(r.out, "tiny-2  done"), "%s", r.out);
    result_free(&r);
    r = run("--coordinator", ep, "--status", "nope-9", NULL);
    expect_exit(r, 2, "no campaign 'nope-9'");
    result_free(&r);
    r = run("--coordinator", ep, "--status", "nope-9", "--wait", NULL);
    expect_exit(r, 2, "no campaign 'nope-9'");
    result_free(&r);
    r = run("--coordinator", ep, "--cancel", "nope-9", NULL);
    expect_exit(r, 2, "no campaign 'nope-9'");
    result_free(&r);

    /* a cell that fails for good */
    wk.fail_train = 1;
    r = run("--coordinator", ep, "@/tiny.pb", "--wait", "--poll", "0.2", NULL);
    expect_exit(r, 3, "campaign tiny-3 (tiny): failed");
    cr_expect(strstr(r.out, "failed tasks:\n  tiny-3/train/"), "%s", r.out);
    cr_expect(strstr(r.out, "fake: the generator diverged"), "%s", r.out);
    result_free(&r);
    r = run("--coordinator", ep, "--status", "tiny-3", "--wait", "--json", NULL);
    expect_exit(r, 3, "\"state\":\"CAMPAIGN_STATE_FAILED\"");
    result_free(&r);

    wk.stop = 1;
    pthread_join(th, NULL);
    free(held);
}

/* dp-coordinator killed with SIGKILL while dp-submit --wait follows a
 * campaign, and restarted on its journal: the wait goes on (Hello again)
 * and ends with the campaign done. */
Test(submit_e2e, wait_survives_a_coordinator_restart)
{
    char ep[64] = "";
    coordinator_start(ep, sizeof ep, NULL);
    write_pb(tmp("tiny.pb"), "tiny");
    child_t w = spawn("--coordinator", ep, "@/tiny.pb", "--wait", "--poll", "0.2", NULL);
    usleep(800000);
    kill(g_coord, SIGKILL);
    waitpid(g_coord, NULL, 0);
    g_coord = -1;
    usleep(300000);
    coordinator_start(ep, sizeof ep, NULL);
    worker_t wk = {.endpoint = ep};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, worker_main, &wk), 0);
    result_t r = finish(&w);
    expect_exit(r, 0, "campaign tiny-1 (tiny): done");
    cr_expect(strstr(r.out, "tasks: 8, 8 done"), "%s", r.out);
    result_free(&r);
    wk.stop = 1;
    pthread_join(th, NULL);
}

/* CURVE: with the coordinator's public key and a listed key pair dp-submit
 * is answered; without CURVE, or with a key not listed, nothing answers. */
Test(submit_e2e, curve)
{
    dp_wire_keypair_t server, client, other;
    cr_assert_eq(dp_wire_keygen(g_dir, "server", &server), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(dp_wire_keygen(g_dir, "client", &client), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(dp_wire_keygen(g_dir, "other", &other), DP_OK, "%s", dp_err_detail());
    char line[128];
    snprintf(line, sizeof line, "%s dp-submit\n", client.public_key);
    write_file(tmp("authorized"), line, strlen(line));
    char *secret = expand("@/server.key"), *auth = expand("@/authorized");
    char ep[64] = "";
    coordinator_start(ep, sizeof ep, "--curve-secret", secret, "--curve-authorized", auth, NULL);
    free(secret);
    free(auth);
    result_t r = run("--coordinator", ep, "--curve-key", "@/client.key", "--curve-server-key",
                     "@/server.pub", "--status", NULL);
    expect_exit(r, 0, "no campaigns");
    result_free(&r);
    r = run("--coordinator", ep, "--timeout", "0.5", "--status", NULL);
    expect_exit(r, 5, "cannot reach the coordinator at");
    result_free(&r);
    r = run("--coordinator", ep, "--timeout", "0.5", "--curve-key", "@/other.key",
            "--curve-server-key", "@/server.pub", "--status", NULL);
    expect_exit(r, 5, "cannot reach the coordinator at");
    result_free(&r);
    r = run("--coordinator", ep, "--curve-key", "@/missing.key", "--curve-server-key",
            "@/server.pub", "--status", NULL);
    expect_exit(r, 2, "missing.key");
    result_free(&r);
    write_text(tmp("junk.key"), "not a key\n");
    r = run("--coordinator", ep, "--curve-key", "@/junk.key", "--curve-server-key", "@/server.pub",
            "--status", NULL);
    expect_exit(r, 2, "junk.key");
    result_free(&r);
    dp_wire_keypair_wipe(&server);
    dp_wire_keypair_wipe(&client);
    dp_wire_keypair_wipe(&other);
}
