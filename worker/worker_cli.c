/* The command line of dp-worker and dp-measurer (one table of settings:
 * flag, environment variable, type, bounds, default; flags over the
 * environment over a --config file over the defaults), shared by both mains: they differ in the
 * role, the environment prefix (DP_WORKER_, DP_MEASURER_) and the
 * measurer's own settings (device class, energy probe, pinning) and its
 * --once mode (once.c). Everything else is in worker.c. The measuring
 * defaults shown are the task layer's (dp_task_settings_default). */
#include "worker_cli.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "measure/probe.h"
#include "nn/nn.h"
#include "once.h"
#include "util/conf.h"
#include "util/json.h"
#include "util/log.h"
#include "util/path.h"
#include "worker.h"

enum { EXIT_RUN = 1, EXIT_USAGE = 2, EXIT_START = 3 };

typedef enum { CFG_STR, CFG_UINT, CFG_LEVEL, CFG_NUM, CFG_BOOL } cfg_type_t;

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
    C_CONFIG,
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
    C_PROBE,
    C_SYSFS,
    C_RAILS,
    C_RAPL,
    C_PIN,
    C_MAX_LOAD,
    C_ONCE,
    C_MODEL,
    C_SAMPLES,
    C_OUT,
    C_DATA,
    C_SEEDS,
    C_SEED_OFFSET,
    C_WARMUP,
    C_REPS,
    C_MIN_TIME,
    C_ROUNDS,
    C_WINDOW,
    C_IDLE,
    C_B_LAT,
    C_B_EN,
    C_B_ILAT,
    C_B_IEN,
    C_COUNT
};

static char d_warmup[32], d_reps[32], d_min_time[32], d_window[32], d_idle[32], d_load[32];

static cfg_t cfg[C_COUNT] = {
    [C_CONFIG] = {"config", "CONFIG", CFG_STR, 0, 0, "",
                  "a settings file: NAME = VALUE lines, NAME an option below without --", 0, "", 0,
                  0},
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
                      "no connection (with --once: no measuring)",
                      0, "", 0, 0},
    [C_PROBE] = {"probe", "PROBE", CFG_STR, 0, 0, "",
                 "energy probe: none, rapl, ina3221 (jetson) or nvml (default: the\n"
                 "device class's in a campaign, none with --once)",
                 1, "", 0, 0},
    [C_SYSFS] = {"sysfs-root", "SYSFS_ROOT", CFG_STR, 0, 0, "",
                 "prefix of the /sys and /proc paths read (probes, governor, load)", 1, "", 0, 0},
    [C_RAILS] = {"rails", "RAILS", CFG_STR, 0, 0, "",
                 "ina3221: the board-total rail(s), alternatives comma-separated,\n"
                 "sums with '+' (default VDD_IN,POM_5V_IN)",
                 1, "", 0, 0},
    [C_RAPL] = {"rapl-domains", "RAPL_DOMAINS", CFG_STR, 0, 0, "",
                "rapl: domains summed (default package,dram)", 1, "", 0, 0},
    [C_PIN] = {"pin-cpu", "PIN_CPU", CFG_UINT, 0, 4095, "",
               "pin the measuring thread to this CPU (default: no pinning, or the\n"
               "campaign's measure.pin_cpu: the CPU it runs on)",
               1, "", 0, 0},
    [C_MAX_LOAD] = {"max-load", "MAX_LOAD", CFG_NUM, 0, 4096, d_load,
                    "warn when the 1-minute load average is above this", 1, "", 0, 0},
    [C_ONCE] = {"once", "ONCE", CFG_BOOL, 0, 0, "",
                "measure --model's --samples (and their seeds), or its seeds alone,\n"
                "write --out and exit: no coordinator",
                1, "", 0, 0},
    [C_MODEL] = {"model", "MODEL", CFG_STR, 0, 0, "",
                 "--once: the model prefix M (M.pb, M.safetensors)", 1, "", 0, 0},
    [C_SAMPLES] = {"samples", "SAMPLES", CFG_STR, 0, 0, "",
                   "--once: a sample set (dp-perform generate/baseline); none: the seeds", 1, "", 0,
                   0},
    [C_OUT] = {"out", "OUT", CFG_STR, 0, 0, "measure.json", "--once: the result file", 1, "", 0, 0},
    [C_DATA] = {"data-dir", "DATA_DIR", CFG_STR, 0, 0, "/usr/share/datasets/fashion-mnist",
                "--once: Fashion-MNIST, whose test images are the seeds", 1, "", 0, 0},
    [C_SEEDS] = {"seeds", "SEEDS", CFG_UINT, 1, 1u << 24, "1000",
                 "--once without --samples: seeds measured", 1, "", 0, 0},
    [C_SEED_OFFSET] = {"seed-offset", "SEED_OFFSET", CFG_UINT, 0, 1u << 24, "0",
                       "--once without --samples: the first seed", 1, "", 0, 0},
    [C_WARMUP] = {"warmup", "WARMUP", CFG_UINT, 0, 100000, d_warmup,
                  "--once: untimed forwards of each input first", 1, "", 0, 0},
    [C_REPS] = {"repetitions", "REPETITIONS", CFG_UINT, 1, 100000, d_reps,
                "--once: timed forwards per input, at least", 1, "", 0, 0},
    [C_MIN_TIME] = {"min-time-s", "MIN_TIME_S", CFG_NUM, 0, 3600, d_min_time,
                    "--once: timed forwards per input last at least this long", 1, "", 0, 0},
    [C_ROUNDS] = {"rounds", "ROUNDS", CFG_UINT, 1, MEASURE_MAX_ROUNDS, "1",
                  "--once: the repetitions and time of each input spread over this many\n"
                  "passes over all inputs (each in an order of its own)",
                  1, "", 0, 0},
    [C_WINDOW] = {"energy-window-s", "ENERGY_WINDOW_S", CFG_NUM, 1, 3600, d_window,
                  "--once: energy windows at least this long", 1, "", 0, 0},
    [C_IDLE] = {"idle-s", "IDLE_S", CFG_NUM, 0, 3600, d_idle,
                "--once: measure the idle power this long first and subtract it", 1, "", 0, 0},
    [C_B_LAT] = {"latency-budget-ms", "LATENCY_BUDGET_MS", CFG_NUM, 0, 1000000000, "",
                 "--once: IDPB when the median latency is above this", 1, "", 0, 0},
    [C_B_EN] = {"energy-budget-mj", "ENERGY_BUDGET_MJ", CFG_NUM, 0, 1000000000, "",
                "--once: IDPB when the energy per inference is above this", 1, "", 0, 0},
    [C_B_ILAT] = {"ilatency-budget", "ILATENCY_BUDGET", CFG_NUM, 0, 1000000, "",
                  "--once: IDPB when I-Latency (percent over the seed) is at least this", 1, "", 0,
                  0},
    [C_B_IEN] = {"ienergy-budget", "IENERGY_BUDGET", CFG_NUM, 0, 1000000, "",
                 "--once: IDPB when I-Energy (percent over the seed) is at least this", 1, "", 0,
                 0},
};

static const char *g_prog;
static int g_measurer;

static int shown(int i) { return !cfg[i].measurer_only || g_measurer; }

static void usage(FILE *f)
{
    fprintf(f, "usage: %s [options]\n\n", g_prog);
    fprintf(f, g_measurer ? "Measures the latency and energy of MEASURE tasks' inputs on this "
                            "machine for its device class; with --once, a sample set (and its "
                            "seeds) here, without a coordinator.\n\n"
                          : "Runs TRAIN, GENERATE, BASELINE and REPORT tasks of the "
                            "coordinator's campaigns.\n\n");
    fprintf(f, "options (flags override the environment, which overrides a --config file,\n"
               "which overrides the defaults):\n");
    for (int i = 0; i < C_COUNT; i++) {
        if (!shown(i)) continue;
        char left[64];
        snprintf(left, sizeof left, cfg[i].type == CFG_BOOL ? "--%s" : "--%s V", cfg[i].flag);
        fprintf(f, "  %-22s ", left);
        for (const char *p = cfg[i].help; *p; p++) { /* continuation lines indented */
            fputc(*p, f);
            if (*p == '\n') fprintf(f, "  %-22s ", "");
        }
        fprintf(f, "\n  %-22s env %s", "", cfg[i].env);
        if (*cfg[i].def) fprintf(f, ", default %s", cfg[i].def);
        if (cfg[i].type == CFG_UINT || cfg[i].type == CFG_NUM)
            fprintf(f, ", %" PRIu64 "..%" PRIu64, cfg[i].lo, cfg[i].hi);
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

static dp_conf_t *g_file; /* --config's settings, which the table points into */

static void free_file(void) { dp_conf_destroy(&g_file); }

/* A --config setting replaces its option's default (not the environment
 * or a flag); a measurer's setting is not a trainer's. */
static int take(void *ctx, const char *name, const char *value, const char *where)
{
    (void)ctx;
    for (int i = 0; i < C_COUNT; i++)
        if (i != C_CONFIG && shown(i) && !strcmp(cfg[i].flag, name)) {
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
        fprintf(stderr, "%s: --config (%s): %s\n", g_prog, cfg[C_CONFIG].from, dp_err_detail());
        return EXIT_USAGE;
    }
    return 0;
}

/* Defaults, then the environment, then the flags, then --config under
 * them. 0, -1 (--help printed), or an exit status. */
static int load_config(int argc, char **argv, const char *prefix)
{
    const dp_task_settings_t d = dp_task_settings_default();
    snprintf(d_warmup, sizeof d_warmup, "%d", d.warmup);
    snprintf(d_reps, sizeof d_reps, "%d", d.repetitions);
    snprintf(d_min_time, sizeof d_min_time, "%g", d.min_time_s);
    snprintf(d_window, sizeof d_window, "%g", d.energy_window_s);
    snprintf(d_idle, sizeof d_idle, "%g", d.idle_s);
    snprintf(d_load, sizeof d_load, "%g", d.max_load);
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
    return load_file();
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

static int has(int i) { return cfg[i].value && *cfg[i].value; }

static int parse_num(const cfg_t *c, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(c->value, &end);
    if (errno || end == c->value || *end || !(v >= (double)c->lo && v <= (double)c->hi)) {
        fprintf(stderr, "%s: --%s (%s) expects a number in [%" PRIu64 ", %" PRIu64 "], got '%s'\n",
                g_prog, c->flag, c->from, c->lo, c->hi, c->value);
        return -1;
    }
    *out = v;
    return 0;
}

/* A flag (or its variable): 1 on, 0 off, -1 after a line. */
static int flag_on(const cfg_t *c)
{
    static const char *on[] = {"1", "true", "yes", "on"}, *off[] = {"", "0", "false", "no", "off"};
    for (size_t i = 0; i < sizeof on / sizeof on[0]; i++)
        if (!strcmp(c->value, on[i])) return 1;
    for (size_t i = 0; i < sizeof off / sizeof off[0]; i++)
        if (!strcmp(c->value, off[i])) return 0;
    fprintf(stderr, "%s: %s (%s) is 1 or 0, got '%s'\n", g_prog, c->env, c->from, c->value);
    return -1;
}

/* The measurer's own settings (probe, sysfs root, pinning, load). 0 or the
 * exit status after a line. */
static int measurer_settings(dp_task_measurer_t *ms)
{
    memset(ms, 0, sizeof *ms);
    ms->pin_cpu = -1;
    if (has(C_PROBE)) {
        int k = measure_probe_parse_kind(cfg[C_PROBE].value);
        if (k < 0) {
            fprintf(stderr, "%s: --probe (%s) is none, rapl, ina3221 or nvml, got '%s'\n", g_prog,
                    cfg[C_PROBE].from, cfg[C_PROBE].value);
            return EXIT_USAGE;
        }
        /* the proto's enum: UNSPECIFIED, NONE, RAPL, INA3221, NVML */
        ms->probe = (Dp__V1__EnergyProbe)(k + 1);
    }
    ms->sysfs_root = cfg[C_SYSFS].value;
    ms->probe_rails = cfg[C_RAILS].value;
    ms->rapl_domains = cfg[C_RAPL].value;
    uint64_t cpu;
    if (has(C_PIN)) {
        if (parse_uint(&cfg[C_PIN], &cpu)) return EXIT_USAGE;
        ms->pin_cpu = (int)cpu;
    }
    if (parse_num(&cfg[C_MAX_LOAD], &ms->max_load)) return EXIT_USAGE;
    return 0;
}

static volatile sig_atomic_t g_stop;

static int once_cancelled(void *ctx)
{
    (void)ctx;
    return g_stop ? PERF_STOP_NOW : PERF_GO_ON;
}

static void once_progress(void *ctx, const char *stage, uint64_t done, uint64_t total,
                          const char *line)
{
    (void)ctx, (void)stage, (void)done, (void)total;
    dp_info("measurer", "%s", line);
}

/* Prints what a --once run found (from its summary). */
static void print_once(const char *json, const char *out)
{
    tj_val_t j;
    if (tj_parse(json, strlen(json), &j) != DP_OK) return;
    const int seeds = tj_get(&j, "seeds_measured") && tj_get(&j, "seeds_measured")->num != 0;
    printf("%s: %.0f inputs%s measured in %.1f s; wrote %s\n", g_prog, tj_get_num(&j, "n", 0),
           seeds ? " and their seeds" : "", tj_get_num(&j, "seconds", 0), out);
    printf("  latency ms   p50 %.4g  p90 %.4g  p99 %.4g  mean %.4g",
           tj_get_num(&j, "latency_p50_ms", NAN), tj_get_num(&j, "latency_p90_ms", NAN),
           tj_get_num(&j, "latency_p99_ms", NAN), tj_get_num(&j, "latency_mean_ms", NAN));
    if (seeds) printf("  (seeds: mean %.4g)", tj_get_num(&j, "seed_latency_mean_ms", NAN));
    printf("\n");
    if (seeds)
        printf("  I-FLOPs %% mean %.4g max %.4g; I-Latency %% mean %.4g max %.4g; I-Energy %% mean "
               "%.4g max %.4g\n",
               tj_get_num(&j, "iflops_mean", NAN), tj_get_num(&j, "iflops_max", NAN),
               tj_get_num(&j, "ilatency_mean", NAN), tj_get_num(&j, "ilatency_max", NAN),
               tj_get_num(&j, "ienergy_mean", NAN), tj_get_num(&j, "ienergy_max", NAN));
    printf("  Pearson(FLOPs, latency) %.4f, (FLOPs, energy) %.4f over %.0f measurements\n",
           tj_get_num(&j, "pearson_flops_latency", NAN),
           tj_get_num(&j, "pearson_flops_energy", NAN), tj_get_num(&j, "pearson_n", 0));
    const tj_val_t *w = tj_get(&j, "warnings");
    for (size_t i = 0; w && w->type == TJ_ARR && i < w->n; i++)
        if (w->items[i].type == TJ_STR)
            fprintf(stderr, "%s: warning: %s\n", g_prog, w->items[i].str);
    tj_val_free(&j);
}

/* --once: 0, or the exit status after a line; check: stop after the
 * settings. */
static int run_once(const dp_task_measurer_t *ms, uint64_t threads, int check)
{
    if (!has(C_MODEL)) {
        fprintf(stderr, "%s: --once needs --model\n", g_prog);
        return EXIT_USAGE;
    }
    dp_task_settings_t s = dp_task_settings_default();
    uint64_t warmup, reps, seeds, offset, rounds;
    double lat = 0, en = 0, ilat = NAN, ien = NAN;
    if (parse_uint(&cfg[C_WARMUP], &warmup) || parse_uint(&cfg[C_REPS], &reps) ||
        parse_uint(&cfg[C_SEEDS], &seeds) || parse_uint(&cfg[C_SEED_OFFSET], &offset) ||
        parse_uint(&cfg[C_ROUNDS], &rounds) || parse_num(&cfg[C_MIN_TIME], &s.min_time_s) ||
        parse_num(&cfg[C_WINDOW], &s.energy_window_s) || parse_num(&cfg[C_IDLE], &s.idle_s) ||
        (has(C_B_LAT) && parse_num(&cfg[C_B_LAT], &lat)) ||
        (has(C_B_EN) && parse_num(&cfg[C_B_EN], &en)) ||
        (has(C_B_ILAT) && parse_num(&cfg[C_B_ILAT], &ilat)) ||
        (has(C_B_IEN) && parse_num(&cfg[C_B_IEN], &ien)))
        return EXIT_USAGE;
    s.warmup = (int)warmup, s.repetitions = (int)reps, s.rounds = (int)rounds;
    s.seed_begin = (uint32_t)offset, s.seed_end = (uint32_t)(offset + seeds);
    s.idpb_latency_ms = lat, s.idpb_energy_mj = en, s.idpb_ilatency = ilat, s.idpb_ienergy = ien;
    s.device_class = has(C_CLASS) ? cfg[C_CLASS].value : "local";
    s.model_name = "";
    dp_task_settings_measurer(&s, ms);
    if (check) {
        printf("%s: arguments accepted\n", g_prog);
        return 0;
    }
    nn_set_threads((int)threads);
    s.threads = nn_get_threads();
    dp_measurer_once_t o = {
        .model = cfg[C_MODEL].value,
        .samples = has(C_SAMPLES) ? cfg[C_SAMPLES].value : NULL,
        .data_dir = cfg[C_DATA].value,
        .out = cfg[C_OUT].value,
        .settings = &s,
        .hooks = {.cancelled = once_cancelled, .progress = once_progress},
    };
    s.progress_secs = 10;
    dp_task_output_t out;
    dp_err_t err = dp_measurer_once(&o, &out);
    if (err) {
        fprintf(stderr, "%s: %s: %s\n", g_prog, dp_strerror(err), dp_err_detail());
        dp_task_output_clear(&out);
        return err == DP_ERR_CANCELLED ? 130 : EXIT_RUN;
    }
    print_once(out.summary_json, o.out);
    dp_task_output_clear(&out);
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
                                  : !strcmp(cfg[i].from, "default")     ? ""
                                                                        : "(file)");
    dp_info(g_measurer ? "measurer" : "worker", "config: %s", line);
}

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
    const char *check = cfg[C_CHECK_ARGS].value;
    if (*check && strcmp(check, "0") && strcmp(check, "1")) {
        fprintf(stderr, "%s: --check-args (%s) is 0 or 1, got '%s'\n", g_prog,
                cfg[C_CHECK_ARGS].from, check);
        return EXIT_USAGE;
    }
    dp_task_measurer_t ms;
    if (measurer && (rc = measurer_settings(&ms))) return rc;
    int once = measurer ? flag_on(&cfg[C_ONCE]) : 0;
    if (once < 0) return EXIT_USAGE;
    if (once) {
        if (!strcmp(check, "1")) return run_once(&ms, threads, 1);
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        return run_once(&ms, threads, 0);
    }
    if (measurer && !*cfg[C_CLASS].value) {
        fprintf(stderr, "%s: --device-class is required\n", g_prog);
        return EXIT_USAGE;
    }
    if (!*cfg[C_CURVE_KEY].value != !*cfg[C_CURVE_SERVER].value) {
        fprintf(stderr, "%s: --curve-key and --curve-server-key go together\n", g_prog);
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
    if (measurer) {
        o.measurer = &ms;
        o.probe = ms.probe;
    }
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
