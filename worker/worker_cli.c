/* The command line of dp-worker and dp-measurer (one table of settings:
 * flag, environment variable, type, bounds, default; flags over the
 * environment over the defaults), shared by both mains: they differ only in
 * the role, the environment prefix (DP_WORKER_, DP_MEASURER_) and the
 * measurer's --device-class. Everything else is in worker.c. */
#include "worker_cli.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/log.h"
#include "util/path.h"
#include "worker.h"

enum { EXIT_RUN = 1, EXIT_USAGE = 2, EXIT_START = 3 };

typedef enum { CFG_STR, CFG_UINT, CFG_LEVEL, CFG_BOOL } cfg_type_t;

typedef struct cfg {
    const char *flag, *env_suffix; /* env: PREFIX + suffix; "=NAME": NAME as is */
    cfg_type_t type;
    uint64_t lo, hi;
    const char *def, *help;
    int measurer_only;
    char env[64];
    const char *value, *from;
} cfg_t;

enum {
    C_COORD,
    C_CLASS,
    C_SCRATCH,
    C_THREADS,
    C_ID,
    C_HOST,
    C_NET_RETRY,
    C_CURVE_KEY,
    C_CURVE_SERVER,
    C_HTTP,
    C_LOG,
    C_CHECK_ARGS,
    C_COUNT
};

static cfg_t cfg[C_COUNT] = {
    [C_COORD] = {"coordinator", "=DP_COORDINATOR", CFG_STR, 0, 0, DP_WORKER_ENDPOINT,
                 "the coordinator's endpoint (tcp://HOST:PORT, ipc://, inproc://)", 0, "", 0, 0},
    [C_CLASS] = {"device-class", "DEVICE_CLASS", CFG_STR, 0, 0, "",
                 "the device class measured here (required)", 1, "", 0, 0},
    [C_SCRATCH] = {"scratch", "SCRATCH", CFG_STR, 0, 0, "",
                   "directory for fetched inputs (a cache) and task files (default: a\n"
                   "private temporary directory, removed at exit)",
                   0, "", 0, 0},
    [C_THREADS] = {"threads", "THREADS", CFG_UINT, 0, 4096, "0",
                   "compute threads of a task (0: every online CPU)", 0, "", 0, 0},
    [C_ID] = {"id", "ID", CFG_STR, 0, 0, "",
              "worker id, stable across restarts of the coordinator (default HOST-PID)", 0, "", 0,
              0},
    [C_HOST] = {"host", "HOST", CFG_STR, 0, 0, "",
                "the host said to the coordinator, which never runs a measurer's and\n"
                "a trainer's tasks at once on one host (default: the host name; in\n"
                "Kubernetes, the node's name)",
                0, "", 0, 0},
    [C_NET_RETRY] = {"network-retry-s", "NETWORK_RETRY_S", CFG_UINT, 0, 86400, "300",
                     "a task that cannot reach the store is run again here, holding its\n"
                     "lease, this long before it is reported failed (0: at once)",
                     0, "", 0, 0},
    [C_CURVE_KEY] = {"curve-key", "CURVE_KEY", CFG_STR, 0, 0, "",
                     "our CURVE secret key file: encryption on", 0, "", 0, 0},
    [C_CURVE_SERVER] = {"curve-server-key", "CURVE_SERVER_KEY", CFG_STR, 0, 0, "",
                        "the coordinator's CURVE public key file (with --curve-key)", 0, "", 0, 0},
    [C_HTTP] = {"http", "HTTP", CFG_STR, 0, 0, "",
                "HOST:PORT serving /healthz and /metrics, e.g. 0.0.0.0:8081 (empty: off)", 0, "", 0,
                0},
    [C_LOG] = {"log-level", "=DP_LOG_LEVEL", CFG_LEVEL, 0, 0, "info",
               "debug, info, warn, error or off", 0, "", 0, 0},
    [C_CHECK_ARGS] = {"check-args", "CHECK_ARGS", CFG_BOOL, 0, 1, "",
                      "check the settings, exit 0 (2 if refused): no scratch directory,\n"
                      "no connection",
                      0, "", 0, 0},
};

static const char *g_prog;
static int g_measurer;

static int shown(int i) { return !cfg[i].measurer_only || g_measurer; }

static void usage(FILE *f)
{
    fprintf(f, "usage: %s [options]\n\n", g_prog);
    fprintf(f, g_measurer ? "Measures the latency of MEASURE tasks' inputs on this machine for "
                            "its device class.\n\n"
                          : "Runs TRAIN, GENERATE, BASELINE and REPORT tasks of the "
                            "coordinator's campaigns.\n\n");
    fprintf(f, "options (flags override the environment, which overrides the defaults):\n");
    for (int i = 0; i < C_COUNT; i++) {
        if (!shown(i)) continue;
        char left[64];
        snprintf(left, sizeof left, "--%s%s", cfg[i].flag, cfg[i].type == CFG_BOOL ? "" : " V");
        fprintf(f, "  %-22s ", left);
        for (const char *p = cfg[i].help; *p; p++) { /* continuation lines indented */
            fputc(*p, f);
            if (*p == '\n') fprintf(f, "  %-22s ", "");
        }
        fprintf(f, "\n  %-22s env %s", "", cfg[i].env);
        if (*cfg[i].def) fprintf(f, ", default %s", cfg[i].def);
        if (cfg[i].type == CFG_UINT) fprintf(f, ", %" PRIu64 "..%" PRIu64, cfg[i].lo, cfg[i].hi);
        fputc('\n', f);
    }
    fprintf(f,
            "  %-22s this text\n\n"
            "SIGINT or SIGTERM: cancel the running task (a training keeps its last uploaded\n"
            "checkpoint), say Disconnect, stop.\n"
            "exit status: 0 stopped by a signal, 1 failed while running (the log says why),\n"
            "2 usage or a bad setting, 3 could not start (scratch directory, keys, endpoint)\n",
            "-h, --help");
}

static int load_config(int argc, char **argv, const char *prefix)
{
    for (int i = 0; i < C_COUNT; i++) {
        if (cfg[i].env_suffix[0] == '=')
            snprintf(cfg[i].env, sizeof cfg[i].env, "%s", cfg[i].env_suffix + 1);
        else
            snprintf(cfg[i].env, sizeof cfg[i].env, "%s%s", prefix, cfg[i].env_suffix);
        const char *e = shown(i) ? getenv(cfg[i].env) : NULL;
        cfg[i].value = e ? e : cfg[i].def;
        cfg[i].from = e ? "environment" : "default";
    }
    struct option opts[C_COUNT + 2];
    int n = 0;
    for (int i = 0; i < C_COUNT; i++)
        if (shown(i))
            opts[n++] = (struct option){cfg[i].flag,
                                        cfg[i].type == CFG_BOOL ? no_argument : required_argument,
                                        NULL, 1000 + i};
    opts[n++] = (struct option){"help", no_argument, NULL, 'h'};
    opts[n] = (struct option){NULL, 0, NULL, 0};
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return -1;
        }
        if (c < 1000 || c >= 1000 + C_COUNT) {
            usage(stderr);
            return EXIT_USAGE;
        }
        cfg[c - 1000].value = cfg[c - 1000].type == CFG_BOOL ? "1" : optarg;
        cfg[c - 1000].from = "flag";
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", g_prog, argv[optind]);
        return EXIT_USAGE;
    }
    return 0;
}

static int parse_uint(const cfg_t *c, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(c->value, &end, 10);
    if (errno || end == c->value || *end || c->value[0] == '-' || v < c->lo || v > c->hi) {
        fprintf(stderr,
                "%s: --%s (%s) expects an integer in [%" PRIu64 ", %" PRIu64 "], got '%s'\n",
                g_prog, c->flag, c->from, c->lo, c->hi, c->value);
        return -1;
    }
    *out = v;
    return 0;
}

static void log_config(void)
{
    char line[2048];
    size_t n = 0;
    for (int i = 0; i < C_COUNT && n < sizeof line; i++)
        if (shown(i))
            n += (size_t)snprintf(line + n, sizeof line - n, "%s%s=%s%s", n ? " " : "", cfg[i].flag,
                                  cfg[i].value,
                                  !strcmp(cfg[i].from, "flag")          ? "(flag)"
                                  : !strcmp(cfg[i].from, "environment") ? "(env)"
                                                                        : "");
    dp_info(g_measurer ? "measurer" : "worker", "config: %s", line);
}

static volatile sig_atomic_t g_stop;
static dp_worker_t *g_worker;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
    if (g_worker) dp_worker_stop(g_worker);
}

int dp_worker_cli_main(int argc, char **argv, int measurer)
{
    g_measurer = measurer;
    g_prog = measurer ? "dp-measurer" : "dp-worker";
    int rc = load_config(argc, argv, measurer ? "DP_MEASURER_" : "DP_WORKER_");
    if (rc) return rc < 0 ? 0 : rc;
    int level = dp_log_parse_level(cfg[C_LOG].value);
    if (level < 0) {
        fprintf(stderr, "%s: --log-level (%s) is debug, info, warn, error or off, got '%s'\n",
                g_prog, cfg[C_LOG].from, cfg[C_LOG].value);
        return EXIT_USAGE;
    }
    dp_log_set_level((dp_log_level_t)level);
    uint64_t threads, net_retry;
    if (parse_uint(&cfg[C_THREADS], &threads)) return EXIT_USAGE;
    if (parse_uint(&cfg[C_NET_RETRY], &net_retry)) return EXIT_USAGE;
    if (measurer && !*cfg[C_CLASS].value) {
        fprintf(stderr, "%s: --device-class is required\n", g_prog);
        return EXIT_USAGE;
    }
    if (!*cfg[C_CURVE_KEY].value != !*cfg[C_CURVE_SERVER].value) {
        fprintf(stderr, "%s: --curve-key and --curve-server-key go together\n", g_prog);
        return EXIT_USAGE;
    }
    const char *check = cfg[C_CHECK_ARGS].value;
    if (*check && strcmp(check, "0") && strcmp(check, "1")) {
        fprintf(stderr, "%s: --check-args (%s) is 0 or 1, got '%s'\n", g_prog,
                cfg[C_CHECK_ARGS].from, check);
        return EXIT_USAGE;
    }
    log_config();
    if (!strcmp(check, "1")) {
        printf("%s: arguments accepted\n", g_prog);
        return 0;
    }
    /* the scratch directory: given (made if missing), or private */
    char scratch[4096];
    int private_dir = !*cfg[C_SCRATCH].value;
    if (private_dir) {
        const char *tmp = getenv("TMPDIR");
        snprintf(scratch, sizeof scratch, "%s/%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", g_prog);
        if (!mkdtemp(scratch)) {
            fprintf(stderr, "%s: cannot make a scratch directory %s: %s\n", g_prog, scratch,
                    strerror(errno));
            return EXIT_START;
        }
    } else {
        snprintf(scratch, sizeof scratch, "%s", cfg[C_SCRATCH].value);
        struct stat st;
        if (mkdir(scratch, 0700) != 0 && errno != EEXIST) {
            fprintf(stderr, "%s: --scratch %s: %s\n", g_prog, scratch, strerror(errno));
            return EXIT_START;
        }
        if (stat(scratch, &st) != 0 || !S_ISDIR(st.st_mode) || access(scratch, W_OK | X_OK)) {
            fprintf(stderr, "%s: --scratch %s: not a writable directory\n", g_prog, scratch);
            return EXIT_START;
        }
    }
    dp_worker_opts_t o;
    dp_worker_opts_init(&o);
    o.role = measurer ? DP__V1__ROLE__ROLE_MEASURER : DP__V1__ROLE__ROLE_TRAINER;
    o.endpoint = cfg[C_COORD].value;
    o.device_class = measurer ? cfg[C_CLASS].value : NULL;
    o.worker_id = *cfg[C_ID].value ? cfg[C_ID].value : NULL;
    o.host = *cfg[C_HOST].value ? cfg[C_HOST].value : NULL;
    o.scratch = scratch;
    o.threads = (int)threads;
    o.network_retry_s = net_retry ? (int)net_retry : -1;
    o.curve_key = *cfg[C_CURVE_KEY].value ? cfg[C_CURVE_KEY].value : NULL;
    o.curve_server_key = *cfg[C_CURVE_SERVER].value ? cfg[C_CURVE_SERVER].value : NULL;
    o.http = *cfg[C_HTTP].value ? cfg[C_HTTP].value : NULL;
    dp_worker_t *w = NULL;
    dp_err_t err = dp_worker_new(&o, &w);
    if (err) {
        fprintf(stderr, "%s: %s: %s\n", g_prog, dp_strerror(err), dp_err_detail());
        rc = err == DP_ERR_INVALID ? EXIT_USAGE : EXIT_START;
        goto done;
    }
    g_worker = w;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: the poll returns at once */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    err = dp_worker_run(w, &g_stop);
    if (err) {
        dp_error(measurer ? "measurer" : "worker", "%s: %s", dp_strerror(err), dp_err_detail());
        rc = err == DP_ERR_INVALID ? EXIT_START : EXIT_RUN; /* INVALID: the endpoint */
    }
    g_worker = NULL;
    dp_worker_destroy(&w);
done:
    if (private_dir) dp_path_remove_tree(scratch);
    return rc;
}
