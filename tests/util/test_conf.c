/* core/util/conf: settings files read whole, every line checked; what a
 * good file gives and what each kind of bad line is refused with. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/conf.h"

static char path[64];

static void write_file(const void *text, size_t len)
{
    snprintf(path, sizeof path, "/tmp/dp-conf-test.%d", (int)getpid());
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(text, 1, len, f), len);
    fclose(f);
}

static dp_conf_t *load_ok(const char *text)
{
    write_file(text, strlen(text));
    dp_conf_t *c = NULL;
    cr_assert_eq(dp_conf_load(path, &c), DP_OK, "%s", dp_err_detail());
    unlink(path);
    return c;
}

/* The load's error, its detail into buf. */
static dp_err_t load_bad(const void *text, size_t len, char *buf, size_t size)
{
    write_file(text, len);
    dp_conf_t *c = NULL;
    const dp_err_t err = dp_conf_load(path, &c);
    snprintf(buf, size, "%s", dp_err_detail());
    cr_expect_null(c, "nothing is returned with an error");
    unlink(path);
    return err;
}

Test(conf, settings_in_order_with_their_place)
{
    dp_conf_t *c = load_ok("# the coordinator\n"
                           "\n"
                           "heartbeat-ms = 500\r\n"
                           "  bind=tcp://127.0.0.1:5555  \n"
                           "\tlog-level =\tdebug\n"
                           "id = \"  two words \"\n"
                           "http =\n"
                           "curve-secret = \"\"\n"
                           "no-fsync = 1");
    cr_assert_eq(dp_conf_count(c), 7);
    const char *want[7][3] = {{"heartbeat-ms", "500", ":3"},
                              {"bind", "tcp://127.0.0.1:5555", ":4"},
                              {"log-level", "debug", ":5"},
                              {"id", "  two words ", ":6"},
                              {"http", "", ":7"},
                              {"curve-secret", "", ":8"},
                              {"no-fsync", "1", ":9"}};
    for (size_t i = 0; i < 7; i++) {
        cr_expect_str_eq(dp_conf_name(c, i), want[i][0]);
        cr_expect_str_eq(dp_conf_value(c, i), want[i][1], "%s", want[i][0]);
        const char *w = dp_conf_where(c, i);
        cr_expect(!strncmp(w, path, strlen(path)) && !strcmp(w + strlen(path), want[i][2]),
                  "%s at %s", want[i][0], w);
    }
    dp_conf_destroy(&c);
    cr_expect_null(c);
    c = load_ok("");
    cr_expect_eq(dp_conf_count(c), 0, "an empty file sets nothing");
    dp_conf_destroy(&c);
}

static int take_known(void *ctx, const char *name, const char *value, const char *where)
{
    (void)value, (void)where;
    int *n = ctx;
    if (strcmp(name, "known")) return -1;
    (*n)++;
    return 0;
}

/* dp_conf_each gives the settings in order and stops at the first the
 * program does not have, naming it and its place. */
Test(conf, each_stops_at_an_unknown_name)
{
    dp_conf_t *c = load_ok("known = 1\n\nother = 2\n");
    int n = 0;
    cr_expect_eq(dp_conf_each(c, take_known, &n), DP_ERR_NOTFOUND);
    cr_expect_eq(n, 1, "the settings before the unknown one were given");
    cr_expect(strstr(dp_err_detail(), ":3: no setting 'other' (see --help)") != NULL, "%s",
              dp_err_detail());
    dp_conf_destroy(&c);
}

Test(conf, bad_lines_are_named)
{
    static const struct {
        const char *text;
        dp_err_t err;
        const char *detail; /* after "PATH:" */
    } cases[] = {
        {"heartbeat-ms 500\n", DP_ERR_FORMAT, "1: expected 'name = value'"},
        {"ok = 1\n= 5\n", DP_ERR_FORMAT, "2: expected 'name = value'"},
        {"Heartbeat = 5\n", DP_ERR_FORMAT, "1: a name is made of a-z, 0-9 and '-'"},
        {"heart_beat = 5\n", DP_ERR_FORMAT,
         "1: a name is made of a-z, 0-9 and '-' (a flag "
         "without its dashes), not '_'"},
        {"--bind = x\n", DP_ERR_FORMAT, ""}, /* dashes are allowed, the name is "--bind" */
        {"id = \"open\n", DP_ERR_FORMAT, "1: the value's opening quote is not closed"},
        {"id = \"\n", DP_ERR_FORMAT, "1: the value's opening quote is not closed"},
        {"a = 1\nb = 2\na = 3\n", DP_ERR_FORMAT, "3: 'a' is set again (first at "},
        {"a = x\x01y\n", DP_ERR_FORMAT, "1: a control character (0x01)"},
    };
    char d[512];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_file(cases[i].text, strlen(cases[i].text));
        dp_conf_t *c = NULL;
        const dp_err_t err = dp_conf_load(path, &c);
        snprintf(d, sizeof d, "%s", dp_err_detail());
        unlink(path);
        if (!*cases[i].detail) { /* accepted */
            cr_expect_eq(err, DP_OK, "'%s': %s", cases[i].text, d);
            dp_conf_destroy(&c);
            continue;
        }
        cr_expect_eq(err, cases[i].err, "'%s': %s", cases[i].text, d);
        cr_expect_null(c);
        cr_expect(!strncmp(d, path, strlen(path)) && d[strlen(path)] == ':' &&
                      !strncmp(d + strlen(path) + 1, cases[i].detail, strlen(cases[i].detail)),
                  "'%s': got '%s', want '%s:%s'", cases[i].text, d, path, cases[i].detail);
    }
    cr_expect_eq(load_bad("a = 1\n\0b = 2\n", 13, d, sizeof d), DP_ERR_FORMAT);
    cr_expect(strstr(d, ":2: a NUL byte") != NULL, "%s", d);
    char *longline = malloc(DP_CONF_MAX_LINE + 16);
    memset(longline, 'x', DP_CONF_MAX_LINE + 8);
    memcpy(longline, "a = ", 4);
    cr_expect_eq(load_bad(longline, DP_CONF_MAX_LINE + 8, d, sizeof d), DP_ERR_RANGE);
    cr_expect(strstr(d, ":1: longer than 4096 bytes") != NULL, "%s", d);
    free(longline);
    char *big = malloc(DP_CONF_MAX_BYTES + 2);
    memset(big, '#', DP_CONF_MAX_BYTES + 1);
    cr_expect_eq(load_bad(big, DP_CONF_MAX_BYTES + 1, d, sizeof d), DP_ERR_RANGE);
    cr_expect(strstr(d, "is larger than 1048576 bytes") != NULL, "%s", d);
    free(big);
    dp_conf_t *c = NULL;
    cr_expect_eq(dp_conf_load("/nonexistent/dp.conf", &c), DP_ERR_IO);
    cr_expect(strstr(dp_err_detail(), "cannot open /nonexistent/dp.conf") != NULL, "%s",
              dp_err_detail());
    cr_expect_eq(dp_conf_load("", &c), DP_ERR_INVALID);
    cr_expect_eq(dp_conf_load("/tmp", &c), DP_ERR_IO, "a directory: %s", dp_err_detail());
}
