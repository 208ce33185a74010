/* Helpers shared by the user commands (cli_util.h). */
#include "cli_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util/path.h"

static const char *g_prog = "dp";

void cli_set_prog(const char *prog) { g_prog = prog; }

int cli_parse_long(const char *flag, const char *s, long lo, long hi, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "%s: %s expects an integer in [%ld, %ld], got '%s'\n", g_prog, flag, lo, hi,
                s);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_parse_double(const char *flag, const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || !(v >= lo && v <= hi)) {
        fprintf(stderr, "%s: %s expects a number in [%g, %g], got '%s'\n", g_prog, flag, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_parse_unit(const char *flag, const char *s, int one_ok, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (*end || !(v > 0 && (one_ok ? v <= 1 : v < 1))) {
        fprintf(stderr, "%s: %s expects a number in (0, 1%s, got '%s'\n", g_prog, flag,
                one_ok ? "]" : ")", s);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_fail(const char *what, dp_err_t err)
{
    fprintf(stderr, "%s: %s: %s: %s\n", g_prog, what, dp_strerror(err), dp_err_detail());
    return 1;
}

int cli_need(const char *cmd, const char *what, const void *v)
{
    if (v) return 0;
    fprintf(stderr, "%s %s: %s is required\n", g_prog, cmd, what);
    return -1;
}

/* 1 when a path check passed, else 0 after "PROG: FLAG PATH: DETAIL". */
static int out_ok(const char *flag, const char *path, dp_err_t err)
{
    if (err == DP_OK) return 1;
    fprintf(stderr, "%s: %s %s: %s\n", g_prog, flag, path, dp_err_detail());
    return 0;
}

int cli_out_dir_ok(const char *flag, const char *path)
{
    return out_ok(flag, path, dp_path_parent_writable(path));
}

int cli_out_file_ok(const char *flag, const char *path)
{
    return out_ok(flag, path, dp_path_file_writable(path));
}

int cli_out_not_input(const char *flag, const char *out, const char *what, const char *in)
{
    struct stat a, b;
    if (stat(out, &a) != 0 || stat(in, &b) != 0 || a.st_dev != b.st_dev || a.st_ino != b.st_ino)
        return 1;
    fprintf(stderr, "%s: %s %s is %s, it would be overwritten\n", g_prog, flag, out, what);
    return 0;
}

const char *cli_base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

dp_err_t cli_load_split(const char *dir, const char *split, dp_dataset_t **out)
{
    char img[4096], lbl[4096];
    snprintf(img, sizeof img, "%s/%s-images-idx3-ubyte.gz", dir, split);
    snprintf(lbl, sizeof lbl, "%s/%s-labels-idx1-ubyte.gz", dir, split);
    return dp_dataset_load_idx(img, lbl, out);
}
