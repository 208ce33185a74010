/* dp-store: put, get, list, stat and delete objects of the store (s3:// or
 * file://) from the shell. Only parses options and calls core/store. */
#include <errno.h>
#include <getopt.h>
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
enum { MAX_RETRIES = 100, MAX_PART_MIB = 5120 };

static void usage(FILE *f)
{
    fprintf(f,
            "usage: dp-store [options] COMMAND ARGS\n"
            "\n"
            "commands:\n"
            "  put LOCAL URI     upload a file (LOCAL '-' reads stdin)\n"
            "  get URI LOCAL     download to a file, written atomically ('-' writes stdout)\n"
            "  ls URI            list objects under a prefix: s3://bucket[/prefix], file:///dir\n"
            "  stat URI          size, mtime and ETag of one object\n"
            "  rm URI            delete an object (a missing one is not an error)\n"
            "\n"
            "URIs: s3://bucket/key, file:///absolute/path\n"
            "\n"
            "options:\n"
            "  --endpoint URL          S3 endpoint (env DP_STORE_ENDPOINT, AWS_ENDPOINT_URL)\n"
            "  --region NAME           region (env AWS_REGION; default us-east-1)\n"
            "  --retries N             retries per request (default 5, 0: none; at most 100)\n"
            "  --part-size MIB         multipart part size (default 16, 5 to 5120)\n"
            "  --multipart-above MIB   files larger than this go multipart (default 64, at\n"
            "                          most 5120)\n"
            "  --no-verify-md5         put: skip the MD5-vs-ETag check (measurements only)\n"
            "  --no-fsync              get: rename without fsync, not durable (measurements only)\n"
            "  -v, --verbose           debug log on stderr\n"
            "  -h, --help              this text\n"
            "\n"
            "credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (AWS_SESSION_TOKEN),\n"
            "or files named by DP_STORE_ACCESS_KEY_FILE and DP_STORE_SECRET_KEY_FILE.\n"
            "exit status: 0 ok, 1 failed, 2 usage, 3 not found, 4 credentials rejected\n");
}

static int fail(dp_err_t err, const char *what)
{
    fprintf(stderr, "dp-store: %s: %s: %s\n", what, dp_strerror(err), dp_err_detail());
    return err == DP_ERR_NOTFOUND ? EXIT_NOTFOUND : err == DP_ERR_AUTH ? EXIT_AUTH : EXIT_FAILURE;
}

static int print_info(const dp_store_info_t *info, void *arg)
{
    const char *base = arg;
    char when[32] = "-";
    time_t t = (time_t)info->mtime;
    struct tm tm;
    if (t && gmtime_r(&t, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    printf("%12llu  %s  %s%s\n", (unsigned long long)info->size, when, base, info->key);
    return 0;
}

static int read_stdin(char **data, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *p = malloc(cap);
    while (p) {
        if (n == cap) {
            char *q = realloc(p, cap *= 2);
            if (!q) break;
            p = q;
        }
        size_t k = fread(p + n, 1, cap - n, stdin);
        n += k;
        if (k == 0) {
            if (ferror(stdin)) break;
            *data = p;
            *len = n;
            return 0;
        }
    }
    free(p);
    fprintf(stderr, "dp-store: reading stdin: %s\n", strerror(errno));
    return -1;
}

/* ls: "s3://bucket" and "s3://bucket/prefix" both work. */
static int cmd_ls(const char *uri, const dp_store_settings_t *st)
{
    dp_store_t *s = NULL;
    char *prefix = NULL;
    dp_err_t err;
    if (!strncmp(uri, "s3://", 5) && (!strchr(uri + 5, '/') || !strchr(uri + 5, '/')[1])) {
        char root[128];
        snprintf(root, sizeof root, "%s", uri);
        size_t n = strlen(root);
        if (n > 5 && root[n - 1] == '/') root[n - 1] = '\0'; /* not the one of "s3://" */
        err = dp_store_new(root, st, &s);
        if (!err && !(prefix = strdup(""))) err = DP_ERR_NOMEM;
    } else {
        err = dp_store_open_uri(uri, st, &s, &prefix);
    }
    if (err) return fail(err, uri);
    char base[160];
    snprintf(base, sizeof base, "%s%s", dp_store_root(s),
             strncmp(dp_store_root(s), "s3://", 5) ? "" : "/");
    err = dp_store_list(s, prefix, print_info, base);
    free(prefix);
    dp_store_destroy(&s);
    return err ? fail(err, uri) : 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"endpoint", required_argument, NULL, 'e'},
        {"region", required_argument, NULL, 'r'},
        {"retries", required_argument, NULL, 'R'},
        {"part-size", required_argument, NULL, 'p'},
        {"multipart-above", required_argument, NULL, 'm'},
        {"no-verify-md5", no_argument, NULL, 'M'},
        {"no-fsync", no_argument, NULL, 'F'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    dp_store_settings_t st;
    dp_store_settings_init(&st);
    dp_log_set_level(DP_LOG_WARN);
    int c, idx = 0;
    while ((c = getopt_long(argc, argv, "vh", opts, &idx)) != -1) {
        /* the numeric options: whole decimal integers, no overflow */
        char *end = NULL;
        long v = 0;
        int bad_num = 0;
        if (c == 'R' || c == 'p' || c == 'm') {
            errno = 0;
            v = strtol(optarg, &end, 10);
            bad_num = end == optarg || *end || errno || v < 0;
        }
        switch (c) {
        case 'e':
            st.endpoint = optarg;
            break;
        case 'r':
            st.region = optarg;
            break;
        case 'R':
            if (bad_num || v > MAX_RETRIES) goto bad;
            st.max_retries = v ? (int)v : -1;
            break;
        case 'p':
            if (bad_num || v < 5 || v > MAX_PART_MIB) goto bad;
            st.part_size = (uint64_t)v << 20;
            break;
        case 'm':
            if (bad_num || v > MAX_PART_MIB) goto bad;
            st.multipart_threshold = (uint64_t)v << 20;
            if (!v) st.multipart_threshold = 1; /* 0 MiB: everything non-empty goes multipart */
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
        continue;
    bad:
        fprintf(stderr, "dp-store: bad value '%s' for --%s (expects an integer in [%d, %d])\n",
                optarg, opts[idx].name, c == 'p' ? 5 : 0, c == 'R' ? MAX_RETRIES : MAX_PART_MIB);
        return EXIT_USAGE;
    }
    argc -= optind;
    argv += optind;
    if (argc < 1) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[0];
    int want = !strcmp(cmd, "put") || !strcmp(cmd, "get") ? 3 : 2;
    if ((strcmp(cmd, "put") && strcmp(cmd, "get") && strcmp(cmd, "ls") && strcmp(cmd, "stat") &&
         strcmp(cmd, "rm")) ||
        argc != want) {
        fprintf(stderr, "dp-store: %s: unknown command or wrong arguments (see --help)\n", cmd);
        return EXIT_USAGE;
    }
    if (!strcmp(cmd, "ls")) return cmd_ls(argv[1], &st);

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
    if (err) return fail(err, uri);
    int rc = 0;
    if (!strcmp(cmd, "put")) {
        if (!strcmp(argv[1], "-")) {
            char *data;
            size_t len;
            if (read_stdin(&data, &len)) {
                rc = EXIT_FAILURE;
            } else {
                err = dp_store_put_mem(s, key, data, len);
                free(data);
            }
        } else {
            err = dp_store_put_file(s, key, argv[1]);
        }
    } else if (!strcmp(cmd, "get")) {
        if (!strcmp(argv[2], "-")) {
            void *data;
            size_t len;
            err = dp_store_get_mem(s, key, &data, &len);
            if (!err && fwrite(data, 1, len, stdout) != len) {
                fprintf(stderr, "dp-store: writing stdout: %s\n", strerror(errno));
                rc = EXIT_FAILURE;
            }
            if (!err) free(data);
        } else {
            err = dp_store_get_file(s, key, argv[2]);
        }
    } else if (!strcmp(cmd, "stat")) {
        dp_store_info_t info;
        err = dp_store_head(s, key, &info);
        if (!err) {
            char base[160];
            snprintf(base, sizeof base, "%s%s", dp_store_root(s),
                     strncmp(dp_store_root(s), "s3://", 5) ? "" : "/");
            print_info(&info, base);
            if (info.etag[0]) printf("etag %s\n", info.etag);
        }
    } else {
        err = dp_store_delete(s, key);
    }
    if (err) rc = fail(err, uri);
    free(key);
    dp_store_destroy(&s);
    return rc;
}
