/* The regression gate (gate.h). */
#include "report/gate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/json.h"

static const char *const gated[] = {"/idpb_rate", "/iflops_mean", "/iflops_max", "/ilatency_",
                                    "/ienergy_"};

int dp_report_gate_figure(const char *figure)
{
    const char *last = strrchr(figure, '/');
    if (!last) return 0;
    for (size_t i = 0; i < sizeof gated / sizeof gated[0]; i++) {
        size_t n = strlen(gated[i]);
        if (gated[i][n - 1] == '_' ? !strncmp(last, gated[i], n) : !strcmp(last, gated[i]))
            return 1;
    }
    return 0;
}

static int add_line(char **buf, size_t *len, size_t *cap, const char *line)
{
    size_t n = strlen(line);
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap * 2 : 1024;
        while (c < *len + n + 1) c *= 2;
        char *b = realloc(*buf, c);
        if (!b) return -1;
        *buf = b, *cap = c;
    }
    memcpy(*buf + *len, line, n + 1);
    *len += n;
    return 0;
}

/* The REPORT's result in the summary: the result whose summary has a
 * report_key. */
static const tj_val_t *report_result(const tj_val_t *sum)
{
    const tj_val_t *rs = tj_get(sum, "results");
    for (size_t i = 0; rs && rs->type == TJ_ARR && i < rs->n; i++) {
        const tj_val_t *s = tj_get(&rs->items[i], "summary");
        if (s && tj_get_str(s, "report_key", NULL)) return s;
    }
    return NULL;
}

dp_err_t dp_report_gate(const char *summary_json, size_t len, dp_store_t *store,
                        dp_report_gate_t *out)
{
    memset(out, 0, sizeof *out);
    tj_val_t sum, rep;
    dp_err_t err = tj_parse(summary_json, len, &sum);
    if (err) return dp_err_set(DP_ERR_FORMAT, "the campaign summary: %s", dp_err_detail());
    const tj_val_t *rr = report_result(&sum);
    const tj_val_t *reg = rr ? tj_get(rr, "regression") : NULL;
    if (!reg) { /* no baseline named, or no REPORT ran */
        tj_val_free(&sum);
        return DP_OK;
    }
    out->asked = 1;
    out->tolerance_pct = tj_get_num(reg, "tolerance_pct", 5);
    snprintf(out->baseline, sizeof out->baseline, "%s",
             tj_get_str(reg, "baseline_report_uri", "?"));
    const tj_val_t *cmp = tj_get(reg, "compared");
    if (!cmp || cmp->type != TJ_BOOL || !cmp->num) {
        snprintf(out->why, sizeof out->why, "%s",
                 tj_get_str(reg, "baseline_missing", "the report was not compared"));
        tj_val_free(&sum);
        return DP_OK;
    }
    char key[1024];
    snprintf(key, sizeof key, "%s", tj_get_str(rr, "report_key", ""));
    tj_val_free(&sum);
    void *data = NULL;
    size_t dlen = 0;
    if (!store) return dp_err_set(DP_ERR_INVALID, "the regression gate: no store to read %s", key);
    if ((err = dp_store_get_mem(store, key, &data, &dlen))) {
        char why[512];
        snprintf(why, sizeof why, "%s", dp_err_detail());
        return dp_err_set(err, "the regression gate cannot read the report %s: %s", key, why);
    }
    err = tj_parse(data, dlen, &rep);
    free(data);
    if (err) return dp_err_set(DP_ERR_FORMAT, "the report %s: %s", key, dp_err_detail());
    const tj_val_t *ch = tj_get(tj_get(&rep, "regression"), "changes");
    if (!ch || ch->type != TJ_ARR) {
        tj_val_free(&rep);
        return dp_err_set(DP_ERR_FORMAT, "the report %s has no regression.changes", key);
    }
    out->compared = 1;
    size_t tl = 0, tc = 0;
    for (size_t i = 0; i < ch->n; i++) {
        const tj_val_t *c = &ch->items[i];
        const char *fig = tj_get_str(c, "figure", "");
        if (!dp_report_gate_figure(fig)) continue;
        const tj_val_t *w = tj_get(c, "worse");
        int worse = w && w->type == TJ_BOOL && w->num;
        double o = tj_get_num(c, "old", NAN), n = tj_get_num(c, "new", NAN);
        char line[768];
        if (isnan(o) || isnan(n))
            snprintf(line, sizeof line, "  %s: %s%s\n", fig,
                     isnan(o) ? "new (not in the baseline)" : "gone (only in the baseline)",
                     worse ? "  WORSE" : "");
        else
            snprintf(line, sizeof line, "  %s: %.6g -> %.6g (%+.3g%s)%s\n", fig, o, n,
                     strstr(fig, "/ilatency_") || strstr(fig, "/ienergy_")
                         ? n - o
                         : (o != 0 ? (n - o) / fabs(o) * 100 : INFINITY),
                     strstr(fig, "/ilatency_") || strstr(fig, "/ienergy_") ? " points" : "%",
                     worse ? "  WORSE" : "");
        out->changed++;
        out->worse += worse;
        if (add_line(&out->text, &tl, &tc, line)) {
            tj_val_free(&rep);
            dp_report_gate_clear(out);
            return dp_err_set(DP_ERR_NOMEM, "the regression gate: out of memory");
        }
    }
    tj_val_free(&rep);
    return DP_OK;
}

void dp_report_gate_clear(dp_report_gate_t *g)
{
    free(g->text);
    g->text = NULL;
}
