/* dp-submit: submits a campaign to a coordinator, follows it, reads its
 * status, cancels it; with --local, runs it on this machine (the
 * coordinator, a trainer and the measurers as threads: worker/local.h).
 * Parses its settings (one table: flag, environment variable, type, bounds,
 * default; flags over environment over defaults), calls the client library
 * (coordinator/client.h) or the local one and prints; the exit status says
 * how the campaign ended (see usage()). */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "campaign/campaign.h"
#include "client.h"
#include "local.h"
#include "report/gate.h"
#include "store/store.h"
#include "util/log.h"

#define PROG "dp-submit"

enum {
    EXIT_DONE = 0,
    EXIT_OTHER = 1,
    EXIT_USAGE = 2, /* bad usage, a bad campaign file, a campaign the coordinator refused */
    EXIT_FAILED = 3,
    EXIT_CANCELLED = 4,
    EXIT_UNREACHABLE = 5,
    EXIT_REGRESSED = 6,     /* done, and worse than the campaign's baseline report */
    EXIT_INTERRUPTED = 130, /* --local: SIGINT or SIGTERM; the same command resumes */
};

typedef enum { CFG_STR, CFG_SECONDS, CFG_BOOL, CFG_LEVEL, CFG_UINT } cfg_type_t;

typedef struct cfg {
    const char *flag, *env; /* env NULL: a flag only */
    cfg_type_t type;
    double lo, hi;
    const char *def, *arg, *help;
    const char *value, *from;
} cfg_t;

enum {
    C_COORD,
    C_TIMEOUT,
    C_POLL,
    C_WAIT,
    C_STATUS,
    C_CANCEL,
    C_REASON,
    C_JSON,
    C_TOKEN,
    C_PROTO_DIR,
    C_PROTOC,
    C_CURVE_KEY,
    C_CURVE_SERVER,
    C_WORKERS,
    C_LOCAL,
    C_DIR,
    C_THREADS,
    C_KEEP_STORE,
    C_SPLIT_CACHE,
    C_LOG_LEVEL,
    C_CHECK_ARGS,
    C_COUNT
};

static cfg_t cfg[C_COUNT] = {
    [C_COORD] = {"coordinator", "DP_COORDINATOR", CFG_STR, 0, 0, DP_CLIENT_ENDPOINT, "ENDPOINT",
                 "the coordinator (tcp://HOST:PORT, ipc://PATH)", 0, 0},
    [C_TIMEOUT] = {"timeout", "DP_SUBMIT_TIMEOUT", CFG_SECONDS, 0.1, 86400, "10", "SECONDS",
                   "how long a request may go unanswered (resent meanwhile)", 0, 0},
    [C_POLL] = {"poll", "DP_SUBMIT_POLL", CFG_SECONDS, 0.1, 60, "0.75", "SECONDS",
                "--wait: time between status requests", 0, 0},
    [C_WAIT] = {"wait", NULL, CFG_BOOL, 0, 1, "0", NULL,
                "follow the campaign until it ends, then print its summary", 0, 0},
    [C_STATUS] = {"status", NULL, CFG_BOOL, 0, 1, "0", NULL,
                  "print the status of CAMPAIGN_ID (or of every campaign)", 0, 0},
    [C_CANCEL] = {"cancel", NULL, CFG_STR, 0, 0, "", "CAMPAIGN_ID", "cancel a campaign", 0, 0},
    [C_REASON] = {"reason", NULL, CFG_STR, 0, 0, "", "TEXT", "--cancel: why (kept in its status)",
                  0, 0},
    [C_JSON] = {"json", NULL, CFG_BOOL, 0, 1, "0", NULL, "print replies as JSON on stdout", 0, 0},
    [C_TOKEN] = {"token", NULL, CFG_STR, 0, 0, "", "TOKEN",
                 "client token of the submission (default: random); submitting again with the "
                 "same token gets the same campaign",
                 0, 0},
    [C_PROTO_DIR] = {"proto-dir", "DP_PROTO_DIR", CFG_STR, 0, 0, "", "DIR",
                     ".txtpb: the directory holding dp/v1/campaign.proto (default: the installed "
                     "one, else the source tree's proto/)",
                     0, 0},
    [C_PROTOC] = {"protoc", "DP_PROTOC", CFG_STR, 0, 0, "protoc", "PROGRAM",
                  ".txtpb: the protoc that encodes it", 0, 0},
    [C_CURVE_KEY] = {"curve-key", "DP_SUBMIT_CURVE_KEY", CFG_STR, 0, 0, "", "FILE",
                     "our CURVE secret key file (NAME.key; the public key is derived): CURVE on", 0,
                     0},
    [C_CURVE_SERVER] = {"curve-server-key", "DP_SUBMIT_CURVE_SERVER_KEY", CFG_STR, 0, 0, "", "FILE",
                        "the coordinator's public key file (NAME.pub)", 0, 0},
    [C_WORKERS] = {"workers", NULL, CFG_BOOL, 0, 1, "0", NULL,
                   "--status: list the workers and measurers too", 0, 0},
    [C_LOCAL] = {"local", NULL, CFG_BOOL, 0, 1, "0", NULL,
                 "run the campaign on this machine: the coordinator, a trainer and a measurer "
                 "per device class as threads of this process, until it ends (resumed when run "
                 "again on the same --dir)",
                 0, 0},
    [C_DIR] =
        {"dir", "DP_LOCAL_DIR", CFG_STR, 0, 0, "", "DIR",
         "--local: the journal, the store (DIR/store) and scratch (default: " DP_LOCAL_DIR_ROOT
         "/CAMPAIGN_NAME)",
         0, 0},
    [C_THREADS] = {"threads", "DP_LOCAL_THREADS", CFG_UINT, 0, 4096, "0", "N",
                   "--local: compute threads of a task (0: every online CPU)", 0, 0},
    [C_KEEP_STORE] = {"keep-store-uri", NULL, CFG_BOOL, 0, 1, "0", NULL,
                      "--local: use the campaign's store_uri instead of file://DIR/store", 0, 0},
    [C_SPLIT_CACHE] = {"split-cache-mb", "DP_LOCAL_SPLIT_CACHE_MB", CFG_UINT, 0, 1048576, "1024",
                       "MB",
                       "--local: decoded dataset splits kept across tasks, at most MB (0: every "
                       "task decodes its own)",
                       0, 0},
    [C_LOG_LEVEL] = {"log-level", "DP_LOG_LEVEL", CFG_LEVEL, 0, 0, "warn", "LEVEL",
                     "debug, info, warn, error or off (-v: info, -vv: debug)", 0, 0},
    [C_CHECK_ARGS] = {"check-args", NULL, CFG_BOOL, 0, 1, "0", NULL,
                      "check the flags and the environment as a run would (values, bounds, "
                      "what goes together), then exit 0 (2 if refused); reads no file and "
                      "asks no coordinator",
                      0, 0},
};

/* text from column `col` (the cursor is there), wrapped before `width`. */
static void wrap(FILE *f, const char *text, int col, int width)
{
    int at = col;
    for (const char *w = text; *w;) {
        const size_t n = strcspn(w, " ");
        if (at > col && at + 1 + (int)n > width) {
            fprintf(f, "\n%*s", col, "");
            at = col;
        }
        at += fprintf(f, " %.*s", (int)n, w);
        w += n;
        while (*w == ' ') w++;
    }
    fputc('\n', f);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: " PROG " [options] CAMPAIGN.pb|CAMPAIGN.txtpb [--wait]   submit\n"
               "       " PROG " [options] --status [CAMPAIGN_ID] [--wait]          status\n"
               "       " PROG " [options] --cancel CAMPAIGN_ID [--reason TEXT]     cancel\n"
               "       " PROG " --local CAMPAIGN.pb|.txtpb [--dir DIR] [--threads N]  run here\n\n"
               "A .txtpb (.textproto, .pbtxt) campaign is encoded with protoc --encode; relative\n"
               "file:// URIs in it are made absolute against the campaign file's directory.\n\n"
               "options (flags override the environment, which overrides the defaults):\n");
    for (int i = 0; i < C_COUNT; i++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", cfg[i].flag, cfg[i].arg ? " " : "",
                 cfg[i].arg ? cfg[i].arg : "");
        fprintf(f, "  %-26s", left);
        wrap(f, cfg[i].help, 28, 88);
        if (!cfg[i].env && (cfg[i].type == CFG_BOOL || !*cfg[i].def)) continue;
        fprintf(f, "  %-26s", "");
        if (cfg[i].env) fprintf(f, " env %s", cfg[i].env);
        if (*cfg[i].def && cfg[i].type != CFG_BOOL)
            fprintf(f, "%sdefault %s", cfg[i].env ? ", " : " ", cfg[i].def);
        if (cfg[i].type == CFG_SECONDS || cfg[i].type == CFG_UINT)
            fprintf(f, ", %g..%g", cfg[i].lo, cfg[i].hi);
        fputc('\n', f);
    }
    fprintf(f,
            "  %-26s more log lines (info; -vv debug), and what was resolved\n"
            "  %-26s this text\n\n"
            "exit status:\n"
            "  0  done: the campaign ended with every task done (--wait), or the request\n"
            "     succeeded (submit without --wait, --status, --cancel)\n"
            "  1  any other error (an interrupted --wait: the campaign goes on)\n"
            "  2  bad usage, or a bad campaign file (missing, not a campaign, invalid: the\n"
            "     message names the field), or a campaign or id the coordinator refused\n"
            "  3  the campaign finished with failed cells (--wait)\n"
            "  4  the campaign was cancelled (--wait)\n"
            "  5  cannot reach the coordinator (no answer within --timeout)\n"
            "  6  done, but a regression: the campaign names a baseline report\n"
            "     (regression.baseline_report_uri) and its IDPB rate, I-FLOPs, I-Latency\n"
            "     or I-Energy got worse than the baseline's beyond regression.tolerance_pct\n"
            "     (--wait; what regressed and by how much is printed)\n"
            "  130  --local: interrupted (SIGINT, SIGTERM): the workers and the coordinator\n"
            "     stopped cleanly; the same command resumes the campaign (a second signal\n"
            "     ends at once; the journal is safe)\n"
            "--local exits 0, 1, 2, 3, 4, 6 or 130 as above (--wait is implied).\n",
            "-v", "-h, --help");
}

/* ---------------------------------------------------------------- settings */

static int parse_seconds(const cfg_t *c, double *out)
{
    char *end;
    errno = 0;
    const double v = strtod(c->value, &end);
    if (errno || end == c->value || *end || !isfinite(v) || v < c->lo || v > c->hi) {
        fprintf(stderr, PROG ": --%s (%s) expects seconds in [%g, %g], got '%s'\n", c->flag,
                c->from, c->lo, c->hi, c->value);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_uint(const cfg_t *c, unsigned long *out)
{
    char *end;
    errno = 0;
    const unsigned long v = strtoul(c->value, &end, 10);
    if (errno || end == c->value || *end || c->value[0] == '-' || v < c->lo || v > c->hi) {
        fprintf(stderr, PROG ": --%s (%s) expects a whole number in [%g, %g], got '%s'\n", c->flag,
                c->from, c->lo, c->hi, c->value);
        return -1;
    }
    *out = v;
    return 0;
}

static int on(int i) { return !strcmp(cfg[i].value, "1"); }
static const char *str(int i) { return *cfg[i].value ? cfg[i].value : NULL; }

/* Defaults, then the environment, then the flags; the positional argument
 * into *arg. 0, or an exit status. */
static int load_config(int argc, char **argv, const char **arg, int *verbose)
{
    for (int i = 0; i < C_COUNT; i++) {
        const char *e = cfg[i].env ? getenv(cfg[i].env) : NULL;
        cfg[i].value = e ? e : cfg[i].def;
        cfg[i].from = e ? cfg[i].env : "default";
    }
    struct option opts[C_COUNT + 2];
    for (int i = 0; i < C_COUNT; i++)
        opts[i] = (struct option){
            cfg[i].flag, cfg[i].type == CFG_BOOL ? no_argument : required_argument, NULL, 1000 + i};
    opts[C_COUNT] = (struct option){"help", no_argument, NULL, 'h'};
    opts[C_COUNT + 1] = (struct option){NULL, 0, NULL, 0};
    int c;
    while ((c = getopt_long(argc, argv, "hv", opts, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            exit(EXIT_DONE);
        }
        if (c == 'v') {
            (*verbose)++;
            continue;
        }
        if (c < 1000 || c >= 1000 + C_COUNT) {
            fprintf(stderr, PROG ": see " PROG " --help\n");
            return EXIT_USAGE;
        }
        cfg_t *k = &cfg[c - 1000];
        k->value = k->type == CFG_BOOL ? "1" : optarg;
        k->from = "flag";
    }
    *arg = optind < argc ? argv[optind] : NULL;
    if (optind + 1 < argc) {
        fprintf(stderr, PROG ": unexpected argument '%s'\n", argv[optind + 1]);
        return EXIT_USAGE;
    }
    return 0;
}

/* ---------------------------------------------------------------- progress */

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static const char *kind_word[] = {"?", "train", "generate", "baseline", "measure", "report"};
static const char *kind_short[] = {"?", "train", "gen", "base", "meas", "report"};

static const char *state_word(Dp__V1__CampaignState s)
{
    switch (s) {
    case DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_RUNNING:
        return "running";
    case DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_DONE:
        return "done";
    case DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_FAILED:
        return "failed";
    case DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_CANCELLED:
        return "cancelled";
    default:
        return "unknown";
    }
}

static void fmt_elapsed(uint64_t ms, char *buf, size_t size)
{
    const uint64_t s = ms / 1000;
    if (s >= 3600)
        snprintf(buf, size, "%lluh%02llum", (unsigned long long)(s / 3600),
                 (unsigned long long)(s / 60 % 60));
    else
        snprintf(buf, size, "%llum%02llus", (unsigned long long)(s / 60),
                 (unsigned long long)(s % 60));
}

static uint64_t total_of(const Dp__V1__TaskCounts *k)
{
    return k ? (uint64_t)k->blocked + k->queued + k->leased + k->done + k->failed + k->cancelled
             : 0;
}

typedef struct progress {
    int tty;
    uint64_t last_line_ms; /* plain lines: when the last one was printed */
    int printed;
    int drawn; /* a bar is on the terminal's last line */
    uint64_t polls;
} progress_t;

/* done/total per kind ("train 4/4 generate 10/40 ..."), or "" without tasks. */
static void kinds_line(const Dp__V1__CampaignStatus *cs, const char *const *word, char *buf,
                       size_t size)
{
    uint32_t done[6] = {0}, all[6] = {0};
    for (size_t i = 0; i < cs->n_tasks; i++) {
        const unsigned k = (unsigned)cs->tasks[i]->kind;
        if (k >= 6) continue;
        all[k]++;
        done[k] += cs->tasks[i]->state == DP__V1__TASK_STATE__TASK_STATE_DONE;
    }
    size_t n = 0;
    buf[0] = '\0';
    for (unsigned k = 1; k < 6 && n < size; k++)
        if (all[k])
            n += (size_t)snprintf(buf + n, size - n, "%s%s %u/%u", n ? " " : "", word[k], done[k],
                                  all[k]);
}

/* "x86-local: no live measurer (12 tasks wait)", for each such class;
 * short: "x86-local: no measurer (12 wait)". */
static void warn_line(const Dp__V1__StatusReply *r, int short_form, char *buf, size_t size)
{
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < r->n_device_classes && n < size; i++) {
        const Dp__V1__DeviceClassStatus *d = r->device_classes[i];
        if (d->live_measurers) continue;
        n += (size_t)snprintf(buf + n, size - n,
                              short_form ? "%s%s: no measurer (%u wait)"
                                         : "%s%s: no live measurer (%u tasks wait)",
                              n ? "; " : "", d->name, d->waiting_tasks);
    }
}

static void on_progress(void *arg, const Dp__V1__StatusReply *r, uint64_t elapsed_ms)
{
    progress_t *p = arg;
    p->polls++;
    const Dp__V1__CampaignStatus *cs = r->campaigns[0];
    const Dp__V1__TaskCounts *k = cs->counts;
    const uint64_t total = total_of(k);
    const uint32_t done = k ? k->done : 0, failed = k ? k->failed : 0, running = k ? k->leased : 0;
    char el[32], kinds[256], warn[512];
    fmt_elapsed(elapsed_ms, el, sizeof el);
    kinds_line(cs, p->tty ? kind_short : kind_word, kinds, sizeof kinds);
    warn_line(r, p->tty, warn, sizeof warn);
    if (p->tty) {
        struct winsize ws;
        int width = ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col ? ws.ws_col : 80;
        char bar[13];
        const int fill = total ? (int)((done + failed) * 12 / total) : 0;
        for (int i = 0; i < 12; i++) bar[i] = i < fill ? '#' : '.';
        bar[12] = '\0';
        char line[1024];
        /* what matters most first: the line is cut at the terminal's width */
        snprintf(line, sizeof line, "%s [%s] %u/%llu, %u failed, %u running, %s%s%s%s%s",
                 cs->campaign_id, bar, done, (unsigned long long)total, failed, running, el,
                 *warn ? " | ! " : "", warn, *kinds ? " | " : "", kinds);
        if (width > 1 && strlen(line) >= (size_t)width) line[width - 1] = '\0';
        fprintf(stderr, "\r\033[K%s", line);
        fflush(stderr);
        p->drawn = 1;
        return;
    }
    if (p->printed && elapsed_ms < p->last_line_ms + 5000) return;
    p->printed = 1;
    p->last_line_ms = elapsed_ms;
    fprintf(stderr, PROG ": %s: %u/%llu tasks done, %u failed, %u running, %s elapsed%s%s\n",
            cs->campaign_id, done, (unsigned long long)total, failed, running, el,
            *kinds ? "; " : "", kinds);
    if (*warn) fprintf(stderr, PROG ": warning: %s\n", warn);
}

static void progress_end(progress_t *p)
{
    if (p->drawn) fprintf(stderr, "\r\033[K");
    p->drawn = 0;
}

/* ---------------------------------------------------------------- output */

static int exit_of_state(Dp__V1__CampaignState s)
{
    switch (s) {
    case DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_DONE:
        return EXIT_DONE;
    case DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_FAILED:
        return EXIT_FAILED;
    case DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_CANCELLED:
        return EXIT_CANCELLED;
    default:
        return EXIT_OTHER;
    }
}

/* A campaign that ended done and named a baseline report: the gated
 * figures that got worse beyond the tolerance make it EXIT_REGRESSED; what
 * changed is printed (to stderr with --json, whose stdout is the status). */
static int regression_gate(const Dp__V1__CampaignStatus *cs, const char *store_uri, int json,
                           int rc)
{
    if (rc != EXIT_DONE || !cs->summary_json || !*cs->summary_json) return rc;
    FILE *out = json ? stderr : stdout;
    dp_store_t *st = NULL;
    char why[512] = "";
    if (store_uri && *store_uri && dp_store_new(store_uri, NULL, &st))
        snprintf(why, sizeof why, "%s", dp_err_detail());
    dp_report_gate_t g;
    const dp_err_t err = dp_report_gate(cs->summary_json, strlen(cs->summary_json), st, &g);
    dp_store_destroy(&st);
    if (err) {
        fprintf(stderr, PROG ": regression: cannot judge: %s%s%s\n", dp_err_detail(),
                *why ? "; the store: " : "", why);
        return EXIT_OTHER;
    }
    if (!g.asked) return rc;
    if (!g.compared) {
        fprintf(out, "regression: not compared with %s: %s\n", g.baseline, g.why);
    } else if (g.worse) {
        fprintf(out,
                "regression: %d figure%s worse than the baseline %s by more than %.3g%% "
                "(points for I-Latency and I-Energy):\n%s",
                g.worse, g.worse == 1 ? "" : "s", g.baseline, g.tolerance_pct,
                g.text ? g.text : "");
        rc = EXIT_REGRESSED;
    } else if (g.changed) {
        fprintf(out, "regression: none beyond %.3g%% against %s; %d figure%s changed:\n%s",
                g.tolerance_pct, g.baseline, g.changed, g.changed == 1 ? "" : "s",
                g.text ? g.text : "");
    } else {
        fprintf(out, "regression: none against %s (the gated figures are equal)\n", g.baseline);
    }
    dp_report_gate_clear(&g);
    return rc;
}

static int print_json(const ProtobufCMessage *m)
{
    char *j = dp_client_json(m);
    if (!j) {
        fprintf(stderr, PROG ": out of memory\n");
        return EXIT_OTHER;
    }
    printf("%s\n", j);
    free(j);
    return EXIT_DONE;
}

/* The summary of an ended campaign; store_uri may be NULL (not known);
 * with local (--local), where the files are on this machine. */
static void print_summary(const Dp__V1__CampaignStatus *cs, const char *store_uri,
                          const dp_local_result_t *local)
{
    const Dp__V1__TaskCounts *k = cs->counts;
    printf("campaign %s (%s): %s", cs->campaign_id, cs->name ? cs->name : "",
           state_word(cs->state));
    if (cs->reason && *cs->reason) printf(": %s", cs->reason);
    putchar('\n');
    if (k) {
        printf("tasks: %llu, %u done, %u failed, %u cancelled", (unsigned long long)total_of(k),
               k->done, k->failed, k->cancelled);
        if (cs->accepted_unix_ms && cs->finished_unix_ms >= cs->accepted_unix_ms) {
            char el[32];
            fmt_elapsed(cs->finished_unix_ms - cs->accepted_unix_ms, el, sizeof el);
            printf(", %s from acceptance to the end", el);
        }
        putchar('\n');
    }
    int header = 0;
    for (size_t i = 0; i < cs->n_tasks; i++) {
        const Dp__V1__TaskStatus *t = cs->tasks[i];
        if (t->state != DP__V1__TASK_STATE__TASK_STATE_FAILED) continue;
        if (!header) printf("failed tasks:\n");
        header = 1;
        printf("  %s (attempt %u): %s\n", t->task_id, t->attempt,
               t->reason && *t->reason ? t->reason : "(no reason given)");
    }
    if (!header && k && k->failed)
        printf("failed tasks: %u (their reasons: " PROG " --status %s --json)\n", k->failed,
               cs->campaign_id);
    if (local && local->store_dir[0]) {
        char p[2 * PATH_MAX + 600];
        printf("results: %s/%s/ (a result.json per task; sample sets, generators, "
               "measure.json)\n",
               local->store_dir, cs->campaign_id);
        snprintf(p, sizeof p, "%s/%s/report/summary.json", local->store_dir, cs->campaign_id);
        if (access(p, R_OK) == 0)
            printf("summary: %s\n", p);
        else
            printf("summary: none (the report task did not run: %s)\n", p);
        snprintf(p, sizeof p, "%s/%s/report/report.html", local->store_dir, cs->campaign_id);
        if (access(p, R_OK) == 0) printf("report: %s\n", p);
        printf("journal: %s (run the same command again to resume, or to print this again)\n",
               local->journal);
    } else if (store_uri) {
        const size_t n = strlen(store_uri);
        const char *sep = n && store_uri[n - 1] == '/' ? "" : "/";
        printf("results: %s%s%s/ (report: %s%s%s/report)\n", store_uri, sep, cs->campaign_id,
               store_uri, sep, cs->campaign_id);
    } else {
        printf("results: under %s/ in the campaign's store (report: %s/report)\n", cs->campaign_id,
               cs->campaign_id);
    }
}

static void print_status(const Dp__V1__StatusReply *r)
{
    if (!r->n_campaigns) printf("no campaigns\n");
    for (size_t i = 0; i < r->n_campaigns; i++) {
        const Dp__V1__CampaignStatus *cs = r->campaigns[i];
        const Dp__V1__TaskCounts *k = cs->counts;
        char kinds[256];
        kinds_line(cs, kind_word, kinds, sizeof kinds);
        printf("%s  %-9s %u/%llu done, %u failed, %u running, %u queued, %u blocked, "
               "%u cancelled%s%s%s%s\n",
               cs->campaign_id, state_word(cs->state), k ? k->done : 0,
               (unsigned long long)total_of(k), k ? k->failed : 0, k ? k->leased : 0,
               k ? k->queued : 0, k ? k->blocked : 0, k ? k->cancelled : 0, *kinds ? "; " : "",
               kinds, cs->reason && *cs->reason ? "; " : "", cs->reason ? cs->reason : "");
        for (size_t t = 0; t < cs->n_tasks; t++)
            if (cs->tasks[t]->state == DP__V1__TASK_STATE__TASK_STATE_FAILED)
                printf("  failed %s (attempt %u): %s\n", cs->tasks[t]->task_id,
                       cs->tasks[t]->attempt, cs->tasks[t]->reason);
    }
    for (size_t i = 0; i < r->n_device_classes; i++) {
        const Dp__V1__DeviceClassStatus *d = r->device_classes[i];
        printf("device class %s: %u live measurers, %u tasks wait%s\n", d->name, d->live_measurers,
               d->waiting_tasks,
               d->live_measurers || !d->waiting_tasks ? "" : " (warning: none measures them)");
    }
    for (size_t i = 0; i < r->n_workers; i++) {
        const Dp__V1__WorkerStatus *w = r->workers[i];
        printf("worker %s: %s%s%s, %u/%u running, %s, silent %.1f s\n", w->worker_id,
               w->role == DP__V1__ROLE__ROLE_MEASURER ? "measurer" : "trainer",
               w->device_class && *w->device_class ? " of " : "",
               w->device_class ? w->device_class : "", w->running, w->capacity,
               w->alive ? "alive" : "dead", w->silent_ms / 1000.0);
    }
}

/* ---------------------------------------------------------------- commands */

/* The exit status of a failed request. */
static int request_failed(const char *what, const dp_client_t *c, dp_err_t err)
{
    if (err == DP_ERR_TIMEOUT) {
        fprintf(stderr, PROG ": %s\n", dp_err_detail());
        return EXIT_UNREACHABLE;
    }
    if (err == DP_ERR_INTERRUPTED) {
        fprintf(stderr, PROG ": %s: interrupted\n", what);
        return EXIT_OTHER;
    }
    fprintf(stderr, PROG ": %s: %s\n", what, dp_err_detail());
    const Dp__V1__ErrorCode rc = c ? dp_client_last_remote(c) : 0;
    return rc == DP__V1__ERROR_CODE__ERROR_CODE_BAD_CAMPAIGN ||
                   rc == DP__V1__ERROR_CODE__ERROR_CODE_NOT_FOUND
               ? EXIT_USAGE
               : EXIT_OTHER;
}

/* --wait on campaign id: follow it, print the summary, return its exit. */
static int follow(dp_client_t *c, const char *id, double poll_s, int json, const char *store_uri)
{
    progress_t p = {.tty = isatty(STDERR_FILENO)};
    Dp__V1__StatusReply *fin = NULL;
    const dp_err_t err =
        dp_client_wait(c, id, (uint32_t)(poll_s * 1000), on_progress, &p, &g_stop, &fin);
    progress_end(&p);
    if (err) {
        if (err == DP_ERR_INTERRUPTED) {
            fprintf(stderr,
                    PROG ": stopped waiting; campaign %s goes on (" PROG " --status %s --wait)\n",
                    id, id);
            return EXIT_OTHER;
        }
        const int rc = request_failed("waiting", c, err);
        /* unknown at once: the user's id; gone later: not the user's doing */
        return rc == EXIT_USAGE && p.polls ? EXIT_OTHER : rc;
    }
    const Dp__V1__CampaignStatus *cs = fin->campaigns[0];
    int rc = exit_of_state(cs->state);
    if (json) {
        if (print_json(&fin->base)) {
            dp_client_status_free(&fin);
            return EXIT_OTHER;
        }
    } else {
        print_summary(cs, store_uri, NULL);
    }
    rc = regression_gate(cs, store_uri, json, rc);
    dp_client_status_free(&fin);
    return rc;
}

static void on_uri(void *arg, const char *field, const char *from, const char *to)
{
    if (*(int *)arg) fprintf(stderr, PROG ": %s: %s -> %s\n", field, from, to);
}

/* Reads and checks the campaign file: 0, or an exit status. */
static int load(const char *path, int verbose, Dp__V1__Campaign **camp)
{
    dp_client_load_opts_t lo;
    dp_client_load_opts_init(&lo);
    lo.proto_dir = str(C_PROTO_DIR);
    lo.protoc = str(C_PROTOC);
    lo.on_uri = on_uri;
    lo.uri_arg = &verbose;
    const dp_err_t err = dp_client_campaign_load(path, &lo, camp);
    if (!err) return 0;
    fprintf(stderr, PROG ": %s\n", dp_err_detail());
    /* protoc missing, out of memory: not the file's fault */
    return err == DP_ERR_UNSUPPORTED || err == DP_ERR_NOMEM ? EXIT_OTHER : EXIT_USAGE;
}

static int submit(dp_client_t *c, const char *path, const Dp__V1__Campaign *camp, double poll_s,
                  int verbose)
{
    dp_err_t err;
    char token[DP_CLIENT_TOKEN_MAX + 1];
    if (str(C_TOKEN))
        snprintf(token, sizeof token, "%s", str(C_TOKEN));
    else
        dp_client_token(NULL, 0, token, sizeof token);
    if (verbose) fprintf(stderr, PROG ": submitting %s with token %s\n", path, token);
    dp_client_submitted_t sub;
    err = dp_client_submit(c, camp, token, &g_stop, &sub);
    int rc;
    if (err) {
        rc = request_failed("submit", c, err);
        goto done;
    }
    if (!on(C_WAIT) || !on(C_JSON)) {
        if (on(C_JSON)) {
            printf("{\"campaign_id\":\"%s\",\"tasks\":%u,\"duplicate\":%s,\"token\":\"%s\"}\n",
                   sub.campaign_id, sub.tasks, sub.duplicate ? "true" : "false", token);
        } else {
            fprintf(on(C_WAIT) ? stderr : stdout, "%s: %s, %u tasks\n", sub.campaign_id,
                    sub.duplicate ? "submitted before with this token (nothing new)" : "accepted",
                    sub.tasks);
        }
        fflush(stdout);
    }
    rc = on(C_WAIT) ? follow(c, sub.campaign_id, poll_s, on(C_JSON), camp->store_uri) : EXIT_DONE;
done:
    return rc;
}

static int status(dp_client_t *c, const char *id, double poll_s)
{
    if (on(C_WAIT)) {
        if (!id) {
            fprintf(stderr, PROG ": --status --wait needs a CAMPAIGN_ID\n");
            return EXIT_USAGE;
        }
        return follow(c, id, poll_s, on(C_JSON), NULL);
    }
    Dp__V1__StatusReply *r = NULL;
    dp_err_t err = dp_client_status(c, id, 0, on(C_WORKERS), &g_stop, &r);
    /* one campaign: again with its tasks, when they are not too many */
    if (!err && id && r->n_campaigns == 1 &&
        total_of(r->campaigns[0]->counts) <= DP_CLIENT_TASKS_MAX) {
        dp_client_status_free(&r);
        err = dp_client_status(c, id, 1, on(C_WORKERS), &g_stop, &r);
    }
    if (err) return request_failed("status", c, err);
    const int rc = on(C_JSON) ? print_json(&r->base) : (print_status(r), EXIT_DONE);
    dp_client_status_free(&r);
    return rc;
}

static int cancel(dp_client_t *c, const char *id)
{
    uint32_t n = 0;
    const dp_err_t err = dp_client_cancel(c, id, str(C_REASON), &g_stop, &n);
    if (err) return request_failed("cancel", c, err);
    if (on(C_JSON)) {
        Dp__V1__CancelReply r = DP__V1__CANCEL_REPLY__INIT;
        r.campaign_id = (char *)id;
        r.tasks_cancelled = n;
        return print_json(&r.base);
    }
    printf("%s: cancelled, %u tasks%s\n", id, n, n ? "" : " (it had ended already, or had none)");
    return EXIT_DONE;
}

/* --local: progress as --wait's, the summary with where the files are. */
static int local(const char *path, const Dp__V1__Campaign *camp, double poll_s, int verbose)
{
    char dir[PATH_MAX];
    if (str(C_DIR))
        snprintf(dir, sizeof dir, "%s", str(C_DIR));
    else if (dp_local_default_dir(camp, dir, sizeof dir)) {
        fprintf(stderr, PROG ": %s\n", dp_err_detail());
        return EXIT_USAGE;
    }
    unsigned long threads = 0, cache_mb = 0;
    if (parse_uint(&cfg[C_THREADS], &threads) || parse_uint(&cfg[C_SPLIT_CACHE], &cache_mb))
        return EXIT_USAGE;
    progress_t p = {.tty = isatty(STDERR_FILENO)};
    dp_local_opts_t lo;
    dp_local_opts_init(&lo);
    lo.dir = dir;
    lo.keep_store_uri = on(C_KEEP_STORE);
    lo.threads = (int)threads;
    lo.no_split_cache = cache_mb == 0;
    lo.split_cache_bytes = (size_t)cache_mb << 20;
    lo.token = str(C_TOKEN);
    lo.poll_ms = (uint32_t)lround(poll_s * 1000);
    lo.progress = on_progress;
    lo.progress_arg = &p;
    fprintf(stderr, PROG ": running %s here: %s, a trainer and %zu measurer%s, %s threads\n", path,
            dir, camp->n_device_classes, camp->n_device_classes == 1 ? "" : "s",
            threads ? cfg[C_THREADS].value : "all");
    dp_local_result_t r;
    const dp_err_t err = dp_local_run(camp, &lo, &g_stop, &r);
    progress_end(&p);
    int rc;
    if (err == DP_ERR_INTERRUPTED && g_stop) {
        if (r.campaign_id[0])
            fprintf(stderr,
                    PROG ": interrupted: the workers and the coordinator stopped; campaign %s is "
                         "kept in %s (the same command resumes it)\n",
                    r.campaign_id, r.journal);
        else
            fprintf(stderr, PROG ": interrupted before the campaign was submitted\n");
        rc = EXIT_INTERRUPTED;
    } else if (err) {
        fprintf(stderr, PROG ": %s\n", dp_err_detail());
        rc = err == DP_ERR_INVALID ? EXIT_USAGE : EXIT_OTHER;
    } else {
        const Dp__V1__CampaignStatus *cs = r.final->campaigns[0];
        if (r.resumed)
            fprintf(stderr, PROG ": campaign %s was in %s already: %s\n", r.campaign_id, r.journal,
                    r.n_spans ? "resumed, nothing resubmitted" : "it had ended, nothing ran");
        if (r.superseded)
            fprintf(stderr, PROG ": %u other running campaign%s in %s cancelled (superseded)\n",
                    r.superseded, r.superseded == 1 ? "" : "s", r.journal);
        if (verbose) {
            size_t m = 0;
            double busy[2] = {0, 0}; /* the trainer's, the measurers' */
            for (size_t i = 0; i < r.n_spans; i++) {
                m += r.spans[i].measurer;
                busy[r.spans[i].measurer != 0] +=
                    (double)(r.spans[i].end_ns - r.spans[i].start_ns) * 1e-9;
            }
            fprintf(stderr,
                    PROG ": %zu task runs here (%zu measuring), %zu measuring runs overlapped a "
                         "trainer task; %.1f s: the trainer busy %.1f s, the measurers %.1f s\n",
                    r.n_spans, m, r.overlaps, r.seconds, busy[0], busy[1]);
            if (!lo.no_split_cache)
                fprintf(stderr, PROG ": dataset splits decoded %llu times, reused %llu times\n",
                        (unsigned long long)(r.split_cache.misses + r.split_cache.uncached),
                        (unsigned long long)r.split_cache.hits);
        }
        rc = exit_of_state(cs->state);
        if (on(C_JSON)) {
            if (print_json(&r.final->base)) rc = EXIT_OTHER;
        } else {
            print_summary(cs, r.store_uri, &r);
        }
        rc = regression_gate(cs, r.store_uri, on(C_JSON), rc);
    }
    dp_local_result_clear(&r);
    return rc;
}

int main(int argc, char **argv)
{
    const char *arg = NULL;
    int verbose = 0;
    int rc = load_config(argc, argv, &arg, &verbose);
    if (rc) return rc;
    int level = dp_log_parse_level(cfg[C_LOG_LEVEL].value);
    if (level < 0) {
        fprintf(stderr, PROG ": --log-level (%s): '%s' is not debug, info, warn, error or off\n",
                cfg[C_LOG_LEVEL].from, cfg[C_LOG_LEVEL].value);
        return EXIT_USAGE;
    }
    if (verbose && level > DP_LOG_INFO) level = verbose > 1 ? DP_LOG_DEBUG : DP_LOG_INFO;
    dp_log_set_level((dp_log_level_t)level);
    double timeout_s, poll_s;
    if (parse_seconds(&cfg[C_TIMEOUT], &timeout_s) || parse_seconds(&cfg[C_POLL], &poll_s))
        return EXIT_USAGE;
    const int do_status = on(C_STATUS), do_cancel = str(C_CANCEL) != NULL;
    if (do_status + do_cancel > 1) {
        fprintf(stderr, PROG ": --status and --cancel do not go together\n");
        return EXIT_USAGE;
    }
    if (do_cancel && (arg || on(C_WAIT))) {
        fprintf(stderr, PROG ": --cancel takes no campaign file and no --wait\n");
        return EXIT_USAGE;
    }
    if (!do_status && !do_cancel && !arg) {
        fprintf(stderr, PROG ": no campaign file (see " PROG " --help)\n");
        return EXIT_USAGE;
    }
    if (str(C_REASON) && !do_cancel) {
        fprintf(stderr, PROG ": --reason goes with --cancel\n");
        return EXIT_USAGE;
    }
    if (!str(C_CURVE_KEY) != !str(C_CURVE_SERVER)) {
        fprintf(stderr, PROG ": --curve-key and --curve-server-key go together\n");
        return EXIT_USAGE;
    }
    const int do_local = on(C_LOCAL);
    if (do_local && (do_status || do_cancel)) {
        fprintf(stderr, PROG ": --local runs a campaign file; --status and --cancel are for a "
                             "coordinator\n");
        return EXIT_USAGE;
    }
    if (do_local) {
        static const int remote_only[] = {C_COORD, C_CURVE_KEY, C_CURVE_SERVER, C_WORKERS};
        for (size_t i = 0; i < sizeof remote_only / sizeof remote_only[0]; i++)
            if (!strcmp(cfg[remote_only[i]].from, "flag")) {
                fprintf(stderr, PROG ": --%s does not go with --local\n", cfg[remote_only[i]].flag);
                return EXIT_USAGE;
            }
    } else {
        static const int local_only[] = {C_DIR, C_THREADS, C_KEEP_STORE, C_SPLIT_CACHE};
        for (size_t i = 0; i < sizeof local_only / sizeof local_only[0]; i++)
            if (!strcmp(cfg[local_only[i]].from, "flag")) {
                fprintf(stderr, PROG ": --%s goes with --local\n", cfg[local_only[i]].flag);
                return EXIT_USAGE;
            }
    }
    if (on(C_CHECK_ARGS)) {
        unsigned long threads, cache_mb;
        if (parse_uint(&cfg[C_THREADS], &threads) || parse_uint(&cfg[C_SPLIT_CACHE], &cache_mb))
            return EXIT_USAGE;
        printf(PROG ": arguments accepted\n");
        return EXIT_DONE;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    /* --local: a second signal ends at once (the journal is synced at every commit) */
    if (do_local) sa.sa_flags = SA_RESETHAND;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* a campaign file is checked before the coordinator is asked anything */
    Dp__V1__Campaign *camp = NULL;
    if (!do_status && !do_cancel && (rc = load(arg, verbose, &camp))) return rc;
    if (do_local) {
        rc = local(arg, camp, poll_s, verbose);
        campaign_free(&camp);
        fflush(stdout);
        return rc;
    }
    dp_client_opts_t co;
    dp_client_opts_init(&co);
    co.endpoint = cfg[C_COORD].value;
    co.timeout_ms = (uint32_t)lround(timeout_s * 1000);
    co.retry_ms = co.timeout_ms / 8 < DP_CLIENT_RETRY_MS ? co.timeout_ms / 8 + 1 : 0;
    co.curve_key = str(C_CURVE_KEY);
    co.curve_server_key = str(C_CURVE_SERVER);
    dp_client_t *c = NULL;
    dp_err_t err = dp_client_new(&co, &c);
    if (err) {
        fprintf(stderr, PROG ": %s\n", dp_err_detail());
        campaign_free(&camp);
        /* a bad endpoint, a key file that is missing or holds no key */
        return err == DP_ERR_INVALID || err == DP_ERR_NOTFOUND || err == DP_ERR_FORMAT ? EXIT_USAGE
                                                                                       : EXIT_OTHER;
    }
    if (do_cancel)
        rc = cancel(c, str(C_CANCEL));
    else if (do_status)
        rc = status(c, arg, poll_s);
    else
        rc = submit(c, arg, camp, poll_s, verbose);
    dp_client_destroy(&c);
    campaign_free(&camp);
    fflush(stdout);
    return rc;
}
