/* dp-report: the campaign report (report.json and report.html) rebuilt
 * from a campaign's results in a store or a directory, rendered again
 * from a report.json, or two reports compared. Only parses options,
 * reads and writes files and calls core/report (docs/REPORT.md). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_util.h"
#include "report/report.h"
#include "store/store.h"
#include "util/log.h"

#define PROG "dp-report"

enum { EXIT_USAGE = 2, EXIT_WORSE = 3 };

/* The options: flag, environment variable, default, bounds, what. */
typedef struct opt_row {
    const char *flag, *env, *dflt, *bounds, *what;
} opt_row_t;

enum { O_OUT, O_BASELINE, O_DATASET, O_WORST, O_REGRESS, O_THRESHOLD, O_LAT, O_ENERGY, O__N };

static const opt_row_t rows[O__N] = {
    [O_OUT] = {"out", "DP_REPORT_OUT", "./CAMPAIGN-report", "",
               "the directory report.json and report.html are written to (--json: the "
               "report.json's directory)"},
    [O_BASELINE] = {"baseline", "DP_REPORT_BASELINE", "", "",
                    "a previous report.json: the page compares against it"},
    [O_DATASET] = {"dataset", "DP_REPORT_DATASET", "", "",
                   "a directory with t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz: "
                   "the seeds of the image grids"},
    [O_WORST] = {"worst", "DP_REPORT_WORST", "4", "0..16", "inputs in each image grid"},
    [O_REGRESS] = {"regress-pct", "DP_REPORT_REGRESS_PCT", "5", "0..1000",
                   "a figure this much worse (percent; points for I-Latency) is a regression"},
    [O_THRESHOLD] = {"threshold", "DP_REPORT_THRESHOLD", "0.9", "(0, 1]",
                     "IDPB: the executed fraction at least this"},
    [O_LAT] = {"latency-budget-ms", "DP_REPORT_LATENCY_BUDGET_MS", "0", "0..1e9",
               "the device budget: an input slower is an IDPB on its class (0: none)"},
    [O_ENERGY] = {"energy-budget-mj", "DP_REPORT_ENERGY_BUDGET_MJ", "0", "0..1e9",
                  "the energy budget per input, likewise (0: none)"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: " PROG " [options] STORE CAMPAIGN_ID   report of a campaign's results\n"
               "       " PROG " [options] --json REPORT.json  render a report.json again\n"
               "       " PROG " diff [--regress-pct P] OLD.json NEW.json   what changed\n"
               "\n"
               "STORE: file:///DIR, s3://BUCKET[/PREFIX], or a directory (the store's root,\n"
               "e.g. dp-runs/quickstart/store); the results are under CAMPAIGN_ID/.\n"
               "\noptions (flag, environment, default):\n");
    for (int i = 0; i < O__N; i++)
        fprintf(f, "  --%-18s %-28s %-18s %s%s%s\n", rows[i].flag, rows[i].env,
                *rows[i].dflt ? rows[i].dflt : "(none)", rows[i].what, *rows[i].bounds ? ", " : "",
                rows[i].bounds);
    fprintf(f, "  -v, --verbose    debug log on stderr\n"
               "  -h, --help       this text\n"
               "\nexit status: 0 done (diff: nothing worse), 1 failed, 2 usage or an input that\n"
               "is not a report, 3 diff: a figure got worse by more than --regress-pct\n");
}

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, PROG ": ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (" PROG " --help)\n");
    return EXIT_USAGE;
}

static int read_file(const char *path, char **text, size_t *len)
{
    *text = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t cap = 1 << 16, n = 0;
    char *p = malloc(cap + 1);
    while (p) {
        if (n == cap) {
            if (cap >= DP_REPORT_MAX_BYTES) break; /* the reader refuses it */
            char *q = realloc(p, (cap *= 2) + 1);
            if (!q) break;
            p = q;
        }
        size_t k = fread(p + n, 1, cap - n, f);
        n += k;
        if (k == 0) break;
    }
    int bad = ferror(f) || !p;
    fclose(f);
    if (bad) {
        free(p);
        return -1;
    }
    p[n] = '\0';
    *text = p, *len = n;
    return 0;
}

static int write_file(const char *dir, const char *name, const char *text, size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(text, 1, len, f) == len;
    if (f && fclose(f) != 0) ok = 0;
    if (!ok) fprintf(stderr, PROG ": cannot write %s\n", path);
    return ok ? 0 : -1;
}

static int do_diff(int argc, char **argv, double pct)
{
    if (argc != 2) return usage_error("diff needs OLD.json and NEW.json%s", "");
    char *a = NULL, *b = NULL, *text = NULL;
    size_t alen, blen;
    int rc = EXIT_USAGE, changes, worse;
    if (read_file(argv[0], &a, &alen)) {
        fprintf(stderr, PROG ": cannot read %s\n", argv[0]);
        goto done;
    }
    if (read_file(argv[1], &b, &blen)) {
        fprintf(stderr, PROG ": cannot read %s\n", argv[1]);
        goto done;
    }
    dp_err_t err = dp_report_diff(a, alen, b, blen, pct, &text, &changes, &worse);
    if (err) {
        fprintf(stderr, PROG ": %s\n", dp_err_detail());
        rc = err == DP_ERR_NOMEM ? EXIT_FAILURE : EXIT_USAGE;
        goto done;
    }
    fputs(text, stdout);
    printf("%d figure%s changed, %d worse by more than %g%%\n", changes, changes == 1 ? "" : "s",
           worse, pct);
    rc = worse ? EXIT_WORSE : 0;
done:
    free(a), free(b), free(text);
    return rc;
}

static const char *setting(int i, const char *flagval)
{
    if (flagval) return flagval;
    const char *e = getenv(rows[i].env);
    return e && *e ? e : rows[i].dflt;
}

int main(int argc, char **argv)
{
    cli_set_prog(PROG);
    dp_log_set_level(DP_LOG_WARN);
    const char *val[O__N] = {0}, *json_in = NULL;
    static const struct option lo[] = {{"out", required_argument, 0, 'o'},
                                       {"baseline", required_argument, 0, 'b'},
                                       {"dataset", required_argument, 0, 'd'},
                                       {"worst", required_argument, 0, 'w'},
                                       {"regress-pct", required_argument, 0, 'r'},
                                       {"threshold", required_argument, 0, 't'},
                                       {"json", required_argument, 0, 'j'},
                                       {"latency-budget-ms", required_argument, 0, 'L'},
                                       {"energy-budget-mj", required_argument, 0, 'E'},
                                       {"verbose", no_argument, 0, 'v'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "o:vh", lo, NULL)) != -1) {
        switch (c) {
        case 'o':
            val[O_OUT] = optarg;
            break;
        case 'b':
            val[O_BASELINE] = optarg;
            break;
        case 'd':
            val[O_DATASET] = optarg;
            break;
        case 'w':
            val[O_WORST] = optarg;
            break;
        case 'r':
            val[O_REGRESS] = optarg;
            break;
        case 't':
            val[O_THRESHOLD] = optarg;
            break;
        case 'j':
            json_in = optarg;
            break;
        case 'L':
            val[O_LAT] = optarg;
            break;
        case 'E':
            val[O_ENERGY] = optarg;
            break;
        case 'v':
            dp_log_set_level(DP_LOG_DEBUG);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            return usage_error("unknown option%s", "");
        }
    }
    long worst;
    double pct, thr, bud_ms, bud_mj;
    if (cli_parse_double("--latency-budget-ms", setting(O_LAT, val[O_LAT]), 0, 1e9, &bud_ms) ||
        cli_parse_double("--energy-budget-mj", setting(O_ENERGY, val[O_ENERGY]), 0, 1e9, &bud_mj) ||
        cli_parse_long("--worst", setting(O_WORST, val[O_WORST]), 0, 16, &worst) ||
        cli_parse_double("--regress-pct", setting(O_REGRESS, val[O_REGRESS]), 0, 1000, &pct) ||
        cli_parse_unit("--threshold", setting(O_THRESHOLD, val[O_THRESHOLD]), 1, &thr))
        return EXIT_USAGE;
    argc -= optind, argv += optind;
    if (argc >= 1 && !strcmp(argv[0], "diff")) return do_diff(argc - 1, argv + 1, pct);
    if (json_in ? argc != 0 : argc != 2)
        return usage_error("%s", json_in ? "--json takes no STORE or CAMPAIGN_ID"
                                         : "STORE and CAMPAIGN_ID are needed");

    dp_report_src_t *src = NULL;
    dp_store_t *store = NULL;
    dp_dataset_t *test = NULL;
    char *json = NULL, *html = NULL, *base = NULL, out[4096], uri[4096];
    size_t jlen = 0, hlen = 0, base_len = 0;
    int rc = EXIT_FAILURE;
    dp_err_t err;
    if (json_in) {
        if (read_file(json_in, &json, &jlen)) {
            fprintf(stderr, PROG ": cannot read %s\n", json_in);
            return EXIT_USAGE;
        }
        if ((err = dp_report_check(json, jlen))) {
            fprintf(stderr, PROG ": %s: %s\n", json_in, dp_err_detail());
            rc = EXIT_USAGE;
            goto done;
        }
    }
    const char *cid = json_in ? "" : argv[1];
    const char *o = setting(O_OUT, val[O_OUT]);
    if (strcmp(o, rows[O_OUT].dflt))
        snprintf(out, sizeof out, "%s", o);
    else if (json_in && cli_base_name(json_in) != json_in) /* beside the report.json */
        snprintf(out, sizeof out, "%.*s", (int)(cli_base_name(json_in) - json_in - 1), json_in);
    else if (json_in)
        snprintf(out, sizeof out, ".");
    else
        snprintf(out, sizeof out, "%s-report", cli_base_name(cid));
    struct stat st;
    if (mkdir(out, 0755) != 0 && !(stat(out, &st) == 0 && S_ISDIR(st.st_mode))) {
        fprintf(stderr, PROG ": --out %s: cannot create the directory\n", out);
        rc = EXIT_USAGE;
        goto done;
    }
    if (!json_in) {
        const char *s = argv[0];
        if (strstr(s, "://"))
            snprintf(uri, sizeof uri, "%s", s);
        else if (s[0] == '/')
            snprintf(uri, sizeof uri, "file://%s", s);
        else {
            char cwd[2048];
            if (!getcwd(cwd, sizeof cwd)) cwd[0] = '\0';
            snprintf(uri, sizeof uri, "file://%s/%s", cwd, s);
        }
        if ((err = dp_store_new(uri, NULL, &store))) {
            rc = cli_fail("cannot open the store", err);
            if (err == DP_ERR_INVALID || err == DP_ERR_NOTFOUND) rc = EXIT_USAGE;
            goto done;
        }
        if ((err = dp_report_src_new(cid, &src))) {
            cli_fail("campaign id", err);
            rc = EXIT_USAGE;
            goto done;
        }
        dp_report_src_set_store_uri(src, uri);
        dp_report_src_set_threshold(src, thr);
        dp_report_src_set_device_budgets(src, bud_ms, bud_mj);
        const char *ds = setting(O_DATASET, val[O_DATASET]);
        if (*ds) {
            if ((err = cli_load_split(ds, "t10k", &test))) {
                cli_fail("--dataset", err);
                rc = EXIT_USAGE;
                goto done;
            }
            char d[4200];
            snprintf(d, sizeof d, "%s/t10k-images-idx3-ubyte.gz", ds);
            dp_report_src_set_seeds(src, test, d);
        }
        if ((err = dp_report_collect(src, store, out, NULL, NULL, NULL))) {
            rc = cli_fail("cannot read the results", err);
            goto done;
        }
        if (!dp_report_src_count(src)) {
            fprintf(stderr, PROG ": nothing of campaign %s in %s (no %s/.../result.json)\n", cid,
                    uri, cid);
            rc = EXIT_USAGE;
            goto done;
        }
        const char *bl = setting(O_BASELINE, val[O_BASELINE]);
        dp_report_opts_t ro;
        dp_report_opts_init(&ro);
        ro.worst = (int)worst;
        ro.regress_pct = pct;
        if (*bl) {
            if (read_file(bl, &base, &base_len)) {
                fprintf(stderr, PROG ": --baseline %s: cannot read it\n", bl);
                rc = EXIT_USAGE;
                goto done;
            }
            ro.baseline_json = base, ro.baseline_len = base_len, ro.baseline_label = bl;
        }
        if ((err = dp_report_build(src, &ro, &json))) {
            rc = cli_fail("cannot build the report", err);
            if (err == DP_ERR_FORMAT || err == DP_ERR_UNSUPPORTED) rc = EXIT_USAGE;
            goto done;
        }
        jlen = strlen(json);
    }
    if ((err = dp_report_html(json, jlen, &html, &hlen))) {
        rc = cli_fail("cannot render the page", err);
        goto done;
    }
    if ((!json_in && write_file(out, "report.json", json, jlen)) ||
        write_file(out, "report.html", html, hlen))
        goto done;
    printf("report: %s/report.html\n", out);
    if (!json_in) printf("data: %s/report.json\n", out);
    rc = 0;
done:
    free(json), free(html), free(base);
    dp_report_src_destroy(&src);
    dp_store_destroy(&store);
    dp_dataset_destroy(&test);
    return rc;
}
