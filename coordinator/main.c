/* dp-coordinator: parses its settings (one table: flag, environment
 * variable, type, bounds, default; flags over the environment over a
 * --config file over the defaults),
 * logs the effective ones, builds the server and runs its loop until
 * SIGINT or SIGTERM. `dp-coordinator keygen DIR [NAME]` writes a CURVE key
 * pair. Everything else is in server.c. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server.h"
#include "util/conf.h"
#include "util/log.h"
#include "wire/sock.h"

enum { EXIT_RUN = 1, EXIT_USAGE = 2, EXIT_START = 3 };

typedef enum { CFG_STR, CFG_UINT, CFG_BOOL, CFG_LEVEL } cfg_type_t;

typedef struct cfg {
    const char *flag, *env;
    cfg_type_t type;
    uint64_t lo, hi;
    const char *def, *help;
    int secret; /* logged as *** */
    const char *value, *from;
} cfg_t;

enum {
    C_CONFIG,
    C_BIND,
    C_JOURNAL,
    C_HEARTBEAT,
    C_LIVENESS,
    C_ATTEMPTS,
    C_RETRY,
    C_MAX_MESSAGE,
    C_COMPACT,
    C_CURVE_SECRET,
    C_CURVE_AUTH,
    C_NO_FSYNC,
    C_ID,
    C_HTTP,
    C_LOG_LEVEL,
    C_CHECK_ARGS,
    C_COUNT
};

static cfg_t cfg[C_COUNT] = {
    [C_CONFIG] = {"config", "DP_COORD_CONFIG", CFG_STR, 0, 0, "",
                  "a settings file: NAME = VALUE lines, NAME an option below without --", 0, 0, 0},
    [C_BIND] = {"bind", "DP_COORD_BIND", CFG_STR, 0, 0, "tcp://127.0.0.1:5555",
                "endpoint of the ROUTER (tcp://HOST:PORT, PORT * picks one)", 0, 0, 0},
    [C_JOURNAL] = {"journal", "DP_COORD_JOURNAL", CFG_STR, 0, 0, "./dp-coordinator.journal",
                   "the journal file (created, or replayed)", 0, 0, 0},
    [C_HEARTBEAT] = {"heartbeat-ms", "DP_COORD_HEARTBEAT_MS", CFG_UINT, 10, 3600000, "1000",
                     "heartbeat interval, both ways", 0, 0, 0},
    [C_LIVENESS] = {"liveness", "DP_COORD_LIVENESS", CFG_UINT, 1, 1000, "3",
                    "heartbeats a worker may miss before it is dead", 0, 0, 0},
    [C_ATTEMPTS] = {"max-attempts", "DP_COORD_MAX_ATTEMPTS", CFG_UINT, 1, 255, "3",
                    "leases of a task before its cell fails", 0, 0, 0},
    [C_RETRY] = {"retry-ms", "DP_COORD_RETRY_MS", CFG_UINT, 0, 3600000, "1000",
                 "a failed task's wait before its next lease, doubled per attempt (0: none)", 0, 0,
                 0},
    [C_MAX_MESSAGE] = {"max-message", "DP_COORD_MAX_MESSAGE", CFG_UINT, 4096, 1u << 30, "16777216",
                       "bytes of a message; larger ones are refused unread", 0, 0, 0},
    [C_COMPACT] = {"compact-bytes", "DP_COORD_COMPACT_BYTES", CFG_UINT, 0, UINT64_C(1) << 50,
                   "268435456", "compact the journal past this size (0: never)", 0, 0, 0},
    [C_CURVE_SECRET] = {"curve-secret", "DP_COORD_CURVE_SECRET", CFG_STR, 0, 0, "",
                        "the server's CURVE secret key file: encryption on", 0, 0, 0},
    [C_CURVE_AUTH] = {"curve-authorized", "DP_COORD_CURVE_AUTHORIZED", CFG_STR, 0, 0, "",
                      "the public keys admitted, one per line", 0, 0, 0},
    [C_NO_FSYNC] = {"no-fsync", "DP_COORD_NO_FSYNC", CFG_BOOL, 0, 1, "0",
                    "never sync the journal (benchmarks only: not durable)", 0, 0, 0},
    [C_ID] = {"id", "DP_COORD_ID", CFG_STR, 0, 0, "", "coordinator id in Welcome (default: host)",
              0, 0, 0},
    [C_HTTP] = {"http", "DP_COORD_HTTP", CFG_STR, 0, 0, "",
                "HOST:PORT serving /healthz and /metrics, e.g. 0.0.0.0:8080 (empty: off)", 0, 0, 0},
    [C_LOG_LEVEL] = {"log-level", "DP_LOG_LEVEL", CFG_LEVEL, 0, 0, "info",
                     "debug, info, warn, error or off", 0, 0, 0},
    [C_CHECK_ARGS] = {"check-args", "DP_COORD_CHECK_ARGS", CFG_BOOL, 0, 1, "0",
                      "check the settings, exit 0 (2 if refused): no journal, no bind", 0, 0, 0},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: dp-coordinator [options]\n"
               "       dp-coordinator keygen DIR [NAME]   write DIR/NAME.key (secret) and\n"
               "                                          DIR/NAME.pub; NAME defaults to\n"
               "                                          'coordinator'\n\n"
               "options (flags override the environment, which overrides a --config file,\n"
               "which overrides the defaults):\n");
    for (int i = 0; i < C_COUNT; i++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s", cfg[i].flag, cfg[i].type == CFG_BOOL ? "" : " V");
        fprintf(f, "  %-22s %s\n  %-22s env %s", left, cfg[i].help, "", cfg[i].env);
        if (*cfg[i].def && cfg[i].type != CFG_BOOL) fprintf(f, ", default %s", cfg[i].def);
        if (cfg[i].type == CFG_UINT) fprintf(f, ", %" PRIu64 "..%" PRIu64, cfg[i].lo, cfg[i].hi);
        fputc('\n', f);
    }
    fprintf(f,
            "  %-22s this text\n\n"
            "SIGINT or SIGTERM: commit, answer, stop.\n"
            "exit status: 0 stopped by a signal, 1 the journal failed while running (restart:\n"
            "it replays), 2 usage or a bad setting, 3 could not start (journal locked by\n"
            "another coordinator or unreadable, keys, endpoint: the log says which)\n",
            "-h, --help");
}

static int parse_uint(const cfg_t *c, uint64_t *out)
{
    char *end;
    errno = 0;
    const unsigned long long v = strtoull(c->value, &end, 10);
    if (errno || end == c->value || *end || c->value[0] == '-' || v < c->lo || v > c->hi) {
        fprintf(stderr,
                "dp-coordinator: %s (%s) expects an integer in [%" PRIu64 ", %" PRIu64
                "], got '%s'\n",
                c->flag, c->from, c->lo, c->hi, c->value);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_bool(const cfg_t *c, int *out)
{
    const char *v = c->value;
    if (!strcmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on"))
        *out = 1;
    else if (!strcmp(v, "0") || !strcasecmp(v, "false") || !strcasecmp(v, "no") ||
             !strcasecmp(v, "off") || !*v)
        *out = 0;
    else {
        fprintf(stderr, "dp-coordinator: %s (%s) expects 0/1/true/false, got '%s'\n", c->flag,
                c->from, v);
        return -1;
    }
    return 0;
}

static dp_conf_t *g_file; /* --config's settings, which the table points into */

static void free_file(void) { dp_conf_destroy(&g_file); }

/* A --config setting replaces its option's default (not the environment
 * or a flag). */
static int take(void *ctx, const char *name, const char *value, const char *where)
{
    (void)ctx;
    for (int i = 0; i < C_COUNT; i++)
        if (i != C_CONFIG && !strcmp(cfg[i].flag, name)) {
            if (!strcmp(cfg[i].from, "default")) cfg[i].value = value, cfg[i].from = where;
            return 0;
        }
    return -1;
}

/* --config's settings under the environment and the flags. 0, or an exit
 * status. */
static int load_file(void)
{
    if (!*cfg[C_CONFIG].value) return 0;
    atexit(free_file);
    if (dp_conf_load(cfg[C_CONFIG].value, &g_file) || dp_conf_each(g_file, take, NULL)) {
        fprintf(stderr, "dp-coordinator: --config (%s): %s\n", cfg[C_CONFIG].from, dp_err_detail());
        return EXIT_USAGE;
    }
    return 0;
}

/* Defaults, then the environment, then the flags, then --config under
 * them. 0, or an exit status. */
static int load_config(int argc, char **argv)
{
    for (int i = 0; i < C_COUNT; i++) {
        const char *e = getenv(cfg[i].env);
        cfg[i].value = e ? e : cfg[i].def;
        cfg[i].from = e ? "environment" : "default";
    }
    struct option opts[C_COUNT + 2];
    for (int i = 0; i < C_COUNT; i++)
        opts[i] = (struct option){
            cfg[i].flag, cfg[i].type == CFG_BOOL ? no_argument : required_argument, NULL, 1000 + i};
    opts[C_COUNT] = (struct option){"help", no_argument, NULL, 'h'};
    opts[C_COUNT + 1] = (struct option){NULL, 0, NULL, 0};
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            exit(0);
        }
        if (c < 1000 || c >= 1000 + C_COUNT) {
            usage(stderr);
            return EXIT_USAGE;
        }
        cfg_t *k = &cfg[c - 1000];
        k->value = k->type == CFG_BOOL ? "1" : optarg;
        k->from = "flag";
    }
    if (optind < argc) {
        fprintf(stderr, "dp-coordinator: unexpected argument '%s'\n", argv[optind]);
        return EXIT_USAGE;
    }
    return load_file();
}

static void log_config(void)
{
    char line[2048];
    size_t n = 0;
    for (int i = 0; i < C_COUNT && n < sizeof line; i++)
        n += (size_t)snprintf(line + n, sizeof line - n, "%s%s=%s%s", i ? " " : "", cfg[i].flag,
                              cfg[i].secret && *cfg[i].value ? "***" : cfg[i].value,
                              !strcmp(cfg[i].from, "flag")          ? "(flag)"
                              : !strcmp(cfg[i].from, "environment") ? "(env)"
                              : !strcmp(cfg[i].from, "default")     ? ""
                                                                    : "(file)");
    dp_info("dp-coordinator", "config: %s", line);
}

static int keygen(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: dp-coordinator keygen DIR [NAME]\n");
        return EXIT_USAGE;
    }
    const char *name = argc == 4 ? argv[3] : "coordinator";
    dp_wire_keypair_t kp;
    const dp_err_t err = dp_wire_keygen(argv[2], name, &kp);
    if (err) {
        fprintf(stderr, "dp-coordinator: keygen: %s: %s\n", dp_strerror(err), dp_err_detail());
        return EXIT_FAILURE;
    }
    printf("%s/%s.key  secret key (keep it private)\n%s/%s.pub  public key %s\n", argv[2], name,
           argv[2], name, kp.public_key);
    dp_wire_keypair_wipe(&kp);
    return 0;
}

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "keygen")) return keygen(argc, argv);
    int rc = load_config(argc, argv);
    if (rc) return rc;
    const int level = dp_log_parse_level(cfg[C_LOG_LEVEL].value);
    if (level < 0) {
        fprintf(stderr,
                "dp-coordinator: log-level (%s): '%s' is not debug, info, warn, error or "
                "off\n",
                cfg[C_LOG_LEVEL].from, cfg[C_LOG_LEVEL].value);
        return EXIT_USAGE;
    }
    dp_log_set_level((dp_log_level_t)level);
    dp_coord_server_opts_t o;
    dp_coord_server_opts_init(&o);
    uint64_t hb, live, att, retry, maxm, compact;
    int no_fsync, check_args;
    if (parse_uint(&cfg[C_HEARTBEAT], &hb) || parse_uint(&cfg[C_LIVENESS], &live) ||
        parse_uint(&cfg[C_ATTEMPTS], &att) || parse_uint(&cfg[C_RETRY], &retry) ||
        parse_uint(&cfg[C_MAX_MESSAGE], &maxm) || parse_uint(&cfg[C_COMPACT], &compact) ||
        parse_bool(&cfg[C_NO_FSYNC], &no_fsync) || parse_bool(&cfg[C_CHECK_ARGS], &check_args))
        return EXIT_USAGE;
    if (!*cfg[C_CURVE_SECRET].value != !*cfg[C_CURVE_AUTH].value) {
        fprintf(stderr, "dp-coordinator: --curve-secret and --curve-authorized go together\n");
        return EXIT_USAGE;
    }
    if (!*cfg[C_BIND].value || !*cfg[C_JOURNAL].value) {
        fprintf(stderr, "dp-coordinator: --bind and --journal must not be empty\n");
        return EXIT_USAGE;
    }
    o.bind = cfg[C_BIND].value;
    o.journal_path = cfg[C_JOURNAL].value;
    o.heartbeat_ms = (uint32_t)hb;
    o.liveness = (uint32_t)live;
    o.max_attempts = (uint32_t)att;
    o.retry_ms = (uint32_t)retry;
    o.max_message = (size_t)maxm;
    o.compact_bytes = compact;
    o.no_fsync = no_fsync;
    o.curve_secret = *cfg[C_CURVE_SECRET].value ? cfg[C_CURVE_SECRET].value : NULL;
    o.curve_authorized = *cfg[C_CURVE_AUTH].value ? cfg[C_CURVE_AUTH].value : NULL;
    o.coordinator_id = *cfg[C_ID].value ? cfg[C_ID].value : NULL;
    o.http = *cfg[C_HTTP].value ? cfg[C_HTTP].value : NULL;
    log_config();
    if (check_args) {
        printf("dp-coordinator: arguments accepted\n");
        return 0;
    }
    if (no_fsync) dp_warn("dp-coordinator", "--no-fsync: the journal is not durable");

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: the poll wakes up */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    dp_coord_server_t *s = NULL;
    dp_err_t err = dp_coord_server_new(&o, &s);
    if (err) {
        dp_error("dp-coordinator", "cannot start: %s: %s", dp_strerror(err), dp_err_detail());
        return err == DP_ERR_INVALID || err == DP_ERR_RANGE ? EXIT_USAGE : EXIT_START;
    }
    err = dp_coord_server_run(s, &stop_flag);
    if (err) dp_error("dp-coordinator", "stopped: %s: %s", dp_strerror(err), dp_err_detail());
    dp_coord_server_destroy(&s);
    return err ? EXIT_RUN : 0;
}
