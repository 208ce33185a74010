/* dp-store: put, get, list, stat and delete objects of the store (s3:// or
 * file://), and list or abort unfinished multipart uploads, from the shell.
 * Only parses options and calls core/store. SIGINT and SIGTERM cancel the
 * store (an upload is aborted on the server, a download's temporary file
 * removed), then the program dies of the same signal, as without a
 * handler; a second signal ends it at once (the same one within a second
 * is taken for the first sent twice). */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"
#include "util/path.h"
#include "util/log.h"

enum { EXIT_USAGE = 2, EXIT_NOTFOUND = 3, EXIT_AUTH = 4 };
/* Bounds of the numeric options: S3 takes parts and single PUTs of at most
 * 5 GiB; more retries than this only hide an outage. */
enum { MAX_RETRIES = 100, MAX_PART_MIB = 5120, MAX_RETRY_FOR_S = 86400, MAX_PARALLEL = 64 };

static volatile sig_atomic_t stop_signal; /* the signal that cancels the store, 0: none */
static struct timespec stop_at;           /* when it came (set before stop_signal) */

static void on_signal(int sig)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now); /* async-signal-safe */
    if (stop_signal) {
        /* the same signal again within a second is the first one sent twice
         * (timeout(1) sends it to the process, then to its process group) */
        long ms =
            (long)(now.tv_sec - stop_at.tv_sec) * 1000 + (now.tv_nsec - stop_at.tv_nsec) / 1000000;
        if (sig == stop_signal && ms < 1000) return;
        signal(sig, SIG_DFL); /* a second one: no more cleanup */
        raise(sig);
        return;
    }
    stop_at = now;
    stop_signal = sig;
}

static void install_handlers(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

/* After a cancel: dies of the signal that caused it (exit status 128+N). */
static void die_of_signal(void)
{
    int sig = stop_signal;
    if (!sig) return;
    signal(sig, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    raise(sig);
    _exit(128 + sig);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: dp-store [options] COMMAND ARGS\n"
            "\n"
            "commands:\n"
            "  put LOCAL URI     upload a file (LOCAL '-' reads stdin, streamed in bounded\n"
            "                    memory: PARALLEL parts in memory at most)\n"
            "  get URI LOCAL     download to a file, written atomically ('-' writes stdout as\n"
            "                    it arrives, in bounded memory)\n"
            "  ls URI            list objects under a prefix: s3://bucket[/prefix], file:///dir\n"
            "                    (control characters in keys shown as \\n, \\t, \\xNN, \\\\)\n"
            "  stat URI          size, mtime and ETag of one object\n"
            "  rm URI            delete an object (a missing one is not an error)\n"
            "  uploads ls URI    unfinished multipart uploads under a prefix (what a killed\n"
            "                    put leaves: stored and billed until aborted)\n"
            "  uploads abort URI abort them (all under the prefix, or --upload-id ID)\n"
            "\n"
            "URIs: s3://bucket/key, file:///absolute/path\n"
            "\n"
            "options:\n"
            "  --endpoint URL          S3 endpoint (env DP_STORE_ENDPOINT, AWS_ENDPOINT_URL)\n"
            "  --region NAME           region (env AWS_REGION; default us-east-1)\n"
            "  --retry-for SECONDS     retry a failing request this long (default 60: a\n"
            "                          server restart; 1 to 86400)\n"
            "  --retries N             retries per request at most (default: as many as\n"
            "                          --retry-for allows; 0: none; at most 100)\n"
            "  --part-size MIB         multipart part size (default 8, more above 80 GB;\n"
            "                          5 to 5120)\n"
            "  --parallel N            multipart parts in flight, one in memory each (default\n"
            "                          4, 1 to 64)\n"
            "  --multipart-above MIB   files larger than this go multipart (default 64, at\n"
            "                          most 5120; 0: every file)\n"
            "  --older-than SECONDS    uploads ls/abort: only uploads started this long ago\n"
            "  --upload-id ID          uploads abort: only this upload\n"
            "  --no-verify-md5         put: skip the MD5-vs-ETag check (measurements only)\n"
            "  --no-fsync              get: rename without fsync, not durable (measurements only)\n"
            "  -v, --verbose           debug log on stderr\n"
            "  -h, --help              this text\n"
            "\n"
            "credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (AWS_SESSION_TOKEN),\n"
            "or files named by DP_STORE_ACCESS_KEY_FILE and DP_STORE_SECRET_KEY_FILE.\n"
            "exit status: 0 ok, 1 failed, 2 usage, 3 not found (the object or its bucket),\n"
            "4 credentials rejected; killed by SIGINT/SIGTERM: 130/143, after the cleanup\n");
}

static int fail(dp_err_t err, const char *what)
{
    const char *d = dp_err_detail();
    if (*d && strstr(d, what)) /* the detail names the object already */
        fprintf(stderr, "dp-store: %s: %s\n", dp_strerror(err), d);
    else
        fprintf(stderr, "dp-store: %s: %s%s%s\n", what, dp_strerror(err), *d ? ": " : "", d);
    die_of_signal(); /* a cancel: the signal's status, as without a handler */
    return err == DP_ERR_NOTFOUND ? EXIT_NOTFOUND : err == DP_ERR_AUTH ? EXIT_AUTH : EXIT_FAILURE;
}

/* A key with control characters and backslashes escaped, so that one line
 * is one object. */
static void print_key(const char *k)
{
    for (const unsigned char *p = (const unsigned char *)k; *p; p++) {
        if (*p == '\n')
            fputs("\\n", stdout);
        else if (*p == '\t')
            fputs("\\t", stdout);
        else if (*p == '\\')
            fputs("\\\\", stdout);
        else if (*p < 0x20 || *p == 0x7f)
            printf("\\x%02x", *p);
        else
            putchar(*p);
    }
}

static int print_info(const dp_store_info_t *info, void *arg)
{
    const char *base = arg;
    char when[32] = "-";
    time_t t = (time_t)info->mtime;
    struct tm tm;
    if (t && gmtime_r(&t, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    printf("%12llu  %s  %s", (unsigned long long)info->size, when, base);
    print_key(info->key);
    putchar('\n');
    return 0;
}

/* Opens the store of a prefix URI: "s3://bucket" and "s3://bucket/prefix"
 * both work. */
static dp_err_t open_prefix(const char *uri, const dp_store_settings_t *st, dp_store_t **out,
                            char **prefix)
{
    dp_err_t err;
    *out = NULL;
    *prefix = NULL;
    if (!strncmp(uri, "s3://", 5) && (!strchr(uri + 5, '/') || !strchr(uri + 5, '/')[1])) {
        char root[128];
        snprintf(root, sizeof root, "%s", uri);
        size_t n = strlen(root);
        if (n > 5 && root[n - 1] == '/') root[n - 1] = '\0'; /* not the one of "s3://" */
        err = dp_store_new(root, st, out);
        if (!err && !(*prefix = strdup(""))) err = dp_err_set(DP_ERR_NOMEM, "prefix");
    } else {
        err = dp_store_open_uri(uri, st, out, prefix);
    }
    return err;
}

/* "s3://bucket/" before keys relative to the store's root. */
static void base_of(const dp_store_t *s, char *base, size_t n)
{
    snprintf(base, n, "%s%s", dp_store_root(s), strncmp(dp_store_root(s), "s3://", 5) ? "" : "/");
}

static int cmd_ls(const char *uri, const dp_store_settings_t *st)
{
    dp_store_t *s;
    char *prefix, base[160];
    dp_err_t err = open_prefix(uri, st, &s, &prefix);
    if (!err) {
        base_of(s, base, sizeof base);
        err = dp_store_list(s, prefix, print_info, base);
    }
    free(prefix);
    dp_store_destroy(&s);
    return err ? fail(err, uri) : 0;
}

typedef struct uploads_cmd {
    dp_store_t *s;
    const char *base;
    int abort;
    long older_than; /* seconds; -1: any */
    const char *upload_id;
    int64_t now;
    int matched, aborted, failed;
    dp_err_t err;
} uploads_cmd_t;

static int on_upload(const dp_store_upload_t *u, void *arg)
{
    uploads_cmd_t *c = arg;
    if (c->upload_id && strcmp(c->upload_id, u->upload_id)) return 0;
    if (c->older_than >= 0 && (!u->initiated || c->now - u->initiated < c->older_than)) return 0;
    c->matched++;
    char when[32] = "-";
    time_t t = (time_t)u->initiated;
    struct tm tm;
    if (t && gmtime_r(&t, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (!c->abort) {
        printf("%s  %s  %s", when, u->upload_id, c->base);
        print_key(u->key);
        putchar('\n');
        return 0;
    }
    /* the listing holds its own copies of key and ID for this call */
    dp_err_t err = dp_store_abort_upload(c->s, u->key, u->upload_id);
    if (err && err != DP_ERR_NOTFOUND) {
        fprintf(stderr, "dp-store: uploads abort: %s: %s\n", dp_strerror(err), dp_err_detail());
        c->failed++;
        c->err = err;
        return stop_signal != 0;
    }
    printf("aborted  %s  %s", u->upload_id, c->base);
    print_key(u->key);
    putchar('\n');
    c->aborted++;
    return stop_signal != 0;
}

static int cmd_uploads(const char *sub, const char *uri, const dp_store_settings_t *st,
                       long older_than, const char *upload_id)
{
    dp_store_t *s;
    char *prefix, base[160];
    dp_err_t err = open_prefix(uri, st, &s, &prefix);
    uploads_cmd_t c = {.s = s, .base = base, .abort = !strcmp(sub, "abort")};
    c.older_than = older_than, c.upload_id = upload_id, c.now = (int64_t)time(NULL);
    if (!err) {
        base_of(s, base, sizeof base);
        err = dp_store_list_uploads(s, prefix, on_upload, &c);
    }
    free(prefix);
    dp_store_destroy(&s);
    if (err) return fail(err, uri);
    if (c.abort && upload_id && !c.matched) {
        fprintf(stderr, "dp-store: uploads abort: no unfinished upload %s under %s\n", upload_id,
                uri);
        return EXIT_NOTFOUND;
    }
    die_of_signal();
    return c.failed ? (c.err == DP_ERR_AUTH ? EXIT_AUTH : EXIT_FAILURE) : 0;
}

/* 1 when uri has the shape of an object URI: s3://BUCKET/KEY, file:///PATH. */
static int object_uri(const char *uri)
{
    if (!strncmp(uri, "s3://", 5)) {
        const char *slash = strchr(uri + 5, '/');
        return slash && slash > uri + 5 && slash[1];
    }
    return !strncmp(uri, "file:///", 8) && uri[8];
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"endpoint", required_argument, NULL, 'e'},
        {"region", required_argument, NULL, 'r'},
        {"retries", required_argument, NULL, 'R'},
        {"retry-for", required_argument, NULL, 'T'},
        {"part-size", required_argument, NULL, 'p'},
        {"parallel", required_argument, NULL, 'P'},
        {"multipart-above", required_argument, NULL, 'm'},
        {"older-than", required_argument, NULL, 'o'},
        {"upload-id", required_argument, NULL, 'u'},
        {"no-verify-md5", no_argument, NULL, 'M'},
        {"no-fsync", no_argument, NULL, 'F'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    dp_store_settings_t st;
    dp_store_settings_init(&st);
    st.cancel = &stop_signal;
    dp_log_set_level(DP_LOG_WARN);
    long older_than = -1;
    const char *upload_id = NULL;
    int c, idx = 0;
    while ((c = getopt_long(argc, argv, "vh", opts, &idx)) != -1) {
        /* the numeric options: whole decimal integers in their bounds */
        static const struct {
            int opt;
            long lo, hi;
        } bounds[] = {{'R', 0, MAX_RETRIES},  {'T', 1, MAX_RETRY_FOR_S},
                      {'p', 5, MAX_PART_MIB}, {'P', 1, MAX_PARALLEL},
                      {'m', 0, MAX_PART_MIB}, {'o', 0, 100L * 365 * 86400}};
        long v = 0;
        for (size_t i = 0; i < sizeof bounds / sizeof bounds[0]; i++) {
            if (bounds[i].opt != c) continue;
            char *end = NULL;
            errno = 0;
            v = strtol(optarg, &end, 10);
            if (end == optarg || *end || errno || v < bounds[i].lo || v > bounds[i].hi) {
                fprintf(stderr,
                        "dp-store: bad value '%s' for --%s (expects an integer in [%ld, %ld])\n",
                        optarg, opts[idx].name, bounds[i].lo, bounds[i].hi);
                return EXIT_USAGE;
            }
        }
        switch (c) {
        case 'e':
            st.endpoint = optarg;
            break;
        case 'r':
            st.region = optarg;
            break;
        case 'R':
            st.max_retries = v ? (int)v : -1;
            break;
        case 'T':
            st.retry_budget_ms = v * 1000;
            break;
        case 'p':
            st.part_size = (uint64_t)v << 20;
            break;
        case 'P':
            st.parallel = (int)v;
            break;
        case 'm': /* larger than v MiB; 0: every non-empty file */
            st.multipart_threshold = v ? ((uint64_t)v << 20) + 1 : 1;
            break;
        case 'o':
            older_than = v;
            break;
        case 'u':
            upload_id = optarg;
            break;
        case 'M':
            st.no_verify_md5 = 1;
            break;
        case 'F':
            st.no_fsync = 1;
            break;
        case 'v':
            dp_log_set_level(DP_LOG_DEBUG);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    argc -= optind;
    argv += optind;
    if (argc < 1) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[0];
    int want = !strcmp(cmd, "put") || !strcmp(cmd, "get") || !strcmp(cmd, "uploads") ? 3 : 2;
    int known = !strcmp(cmd, "put") || !strcmp(cmd, "get") || !strcmp(cmd, "ls") ||
                !strcmp(cmd, "stat") || !strcmp(cmd, "rm") ||
                (!strcmp(cmd, "uploads") && argc > 1 &&
                 (!strcmp(argv[1], "ls") || !strcmp(argv[1], "abort")));
    if (!known || argc != want) {
        fprintf(stderr, "dp-store: %s: unknown command or wrong arguments (see --help)\n", cmd);
        return EXIT_USAGE;
    }
    if (upload_id && strcmp(cmd, "uploads")) {
        fprintf(stderr, "dp-store: --upload-id goes with uploads abort\n");
        return EXIT_USAGE;
    }
    install_handlers();
    if (!strcmp(cmd, "ls")) return cmd_ls(argv[1], &st);
    if (!strcmp(cmd, "uploads")) return cmd_uploads(argv[1], argv[2], &st, older_than, upload_id);

    /* Local paths first: exit 3 means the object is missing, never a local file. */
    struct stat lst;
    if (!strcmp(cmd, "put") && strcmp(argv[1], "-") &&
        (access(argv[1], R_OK) != 0 || stat(argv[1], &lst) != 0)) {
        fprintf(stderr, "dp-store: %s: cannot read the local file: %s\n", argv[1], strerror(errno));
        return EXIT_FAILURE;
    }
    if (!strcmp(cmd, "put") && strcmp(argv[1], "-") && !S_ISREG(lst.st_mode)) {
        fprintf(stderr, "dp-store: %s: the local file is not a regular file\n", argv[1]);
        return EXIT_FAILURE;
    }
    if (!strcmp(cmd, "get") && strcmp(argv[2], "-") && dp_path_file_writable(argv[2])) {
        fprintf(stderr, "dp-store: %s: %s\n", argv[2], dp_err_detail());
        return EXIT_FAILURE;
    }

    const char *uri = !strcmp(cmd, "put") ? argv[2] : argv[1];
    dp_store_t *s = NULL;
    char *key = NULL;
    dp_err_t err = dp_store_open_uri(uri, &st, &s, &key);
    if (err == DP_ERR_INVALID && !object_uri(uri)) { /* "s3://bucket", "file:///", "x" */
        fprintf(stderr, "dp-store: %s (%s takes an object URI: s3://bucket/key, file:///path)\n",
                dp_err_detail(), cmd);
        return EXIT_USAGE;
    }
    if (err) return fail(err, uri);
    int rc = 0;
    if (!strcmp(cmd, "put")) {
        if (!strcmp(argv[1], "-"))
            err = dp_store_put_fd(s, key, STDIN_FILENO);
        else
            err = dp_store_put_file(s, key, argv[1]);
    } else if (!strcmp(cmd, "get")) {
        if (!strcmp(argv[2], "-")) {
            signal(SIGPIPE, SIG_IGN); /* a closed reader is an EPIPE error */
            err = dp_store_get_fd(s, key, STDOUT_FILENO);
        } else {
            err = dp_store_get_file(s, key, argv[2]);
        }
    } else if (!strcmp(cmd, "stat")) {
        dp_store_info_t info;
        err = dp_store_head(s, key, &info);
        if (!err) {
            char base[160];
            base_of(s, base, sizeof base);
            print_info(&info, base);
            if (info.etag[0]) printf("etag %s\n", info.etag);
        }
    } else {
        err = dp_store_delete(s, key);
    }
    if (err) rc = fail(err, uri);
    free(key);
    dp_store_destroy(&s);
    die_of_signal(); /* a signal after the work was done: the work stands, the status says so */
    return rc;
}
