/* The regression gate of a campaign that named a baseline report
 * (Campaign.regression): which of the figures a release is judged on got
 * worse than the baseline's by more than the tolerance.
 *
 * The figures judged, per model, budget, method and device class, are the
 * ones the device farm ships on: the IDPB rate, the mean and max I-FLOPs,
 * and the I-Latency and I-Energy figures. Wall-clock figures (seconds per
 * input, absolute latency) move with the machine's load and are shown by
 * the report but never gate. */
#ifndef DP_REPORT_GATE_H
#define DP_REPORT_GATE_H

#include <stddef.h>

#include "store/store.h"
#include "util/err.h"

typedef struct dp_report_gate {
    int asked;            /* the campaign named a baseline */
    int compared;         /* and its report was compared with it */
    int changed, worse;   /* gated figures that changed; worse beyond the tolerance */
    double tolerance_pct; /* percent (points for I-Latency and I-Energy) */
    char baseline[512];   /* the baseline's URI */
    char why[512];        /* not compared: why (the REPORT's reason, or the report unread) */
    char *text;           /* a line per gated figure that changed ("worse" marked), or NULL */
} dp_report_gate_t;

/* 1 when a figure of report.json's regression section ("MODEL/NORM-EPS/
 * METHOD[/CLASS]/NAME") is one the gate judges. */
int dp_report_gate_figure(const char *figure);

/* The verdict of an ended campaign from its summary (a coordinator's
 * campaign summary JSON: the REPORT's result says whether and how it
 * compared) and its report.json, read from store (the REPORT's report_key).
 * DP_OK with *out filled (asked 0: no baseline named; compared 0: why says
 * why); DP_ERR_FORMAT for a summary or report that cannot be read as one,
 * or the store's error when the report cannot be fetched. Clear *out after. */
dp_err_t dp_report_gate(const char *summary_json, size_t len, dp_store_t *store,
                        dp_report_gate_t *out);
void dp_report_gate_clear(dp_report_gate_t *g);

#endif
