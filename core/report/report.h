/* The campaign report (docs/REPORT.md): report.json, the complete figures
 * of a campaign, and report.html, one self-contained page rendered from it
 * (tables, inline SVG charts, PNG image grids as data: URIs; no script, no
 * network at view time).
 *
 * Three steps, each usable alone:
 * - collect: a campaign's results (every result.json, each MEASURE's
 *   measure.json, the GENERATE/BASELINE sample sets, failure notes) into a
 *   dp_report_src_t, from a store (dp_report_collect) or fed one by one
 *   (dp_report_src_add_*), with the test split for the seed images;
 * - build: the source into report.json text (dp_report_build), optionally
 *   compared against a baseline report.json (the regression section);
 * - render: any report.json text into report.html (dp_report_html), and
 *   two report.json texts into the lines of what changed (dp_report_diff).
 *
 * report.json from outside (a file, a store) is untrusted: dp_report_read
 * checks it field by field (DP_ERR_FORMAT naming the field) before
 * anything renders it; fuzz/fuzz_report.c holds it to that.
 *
 * Nothing here prints or starts threads. */
#ifndef DP_REPORT_REPORT_H
#define DP_REPORT_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "data/dataset.h"
#include "perform/perform.h"
#include "store/store.h"
#include "util/err.h"

#define DP_REPORT_VERSION   1
#define DP_REPORT_MAX_BYTES (256u << 20) /* report.json larger than this is refused */

/* ------------------------------------------------------------- collect */

typedef struct dp_report_src dp_report_src_t;

/* campaign: the campaign id (the store prefix); returns a new object in
 * *out, caller destroys. */
dp_err_t dp_report_src_new(const char *campaign, dp_report_src_t **out);
void dp_report_src_destroy(dp_report_src_t **s);

/* One task's result.json (text, len bytes) stored at key; measure: that
 * MEASURE's measure.json (NULL otherwise). An entry that cannot be used is
 * counted and its key listed as skipped, not an error; DP_ERR_NOMEM only. */
dp_err_t dp_report_src_add_result(dp_report_src_t *s, const char *key, const char *result,
                                  const char *measure);
/* A GENERATE/BASELINE sample set stored at key (per-input figures and the
 * images of the worst inputs). The set is copied from; caller keeps it. */
dp_err_t dp_report_src_add_samples(dp_report_src_t *s, const char *key, const perf_samples_t *set);
/* A task that did not complete: its id, output key, attempts and reason. */
dp_err_t dp_report_src_add_failure(dp_report_src_t *s, const char *task, const char *key,
                                   const char *state, int attempts, const char *reason);
/* The test split the seeds index (borrowed until dp_report_build returns);
 * uri: where it came from (recorded in the report). Without it the image
 * grids show x' and no seed or perturbation. */
void dp_report_src_set_seeds(dp_report_src_t *s, const dp_dataset_t *test, const char *uri);
/* The IDPB threshold on the executed fraction (default 0.9) and the store
 * URI the report's links are relative to (recorded). */
void dp_report_src_set_threshold(dp_report_src_t *s, double idpb_exec);
/* The device budgets (the campaign's thresholds.latency_ms and energy_mj):
 * an input slower or costlier than these is an IDPB on its device class.
 * NaN or <= 0: none (the default). */
void dp_report_src_set_device_budgets(dp_report_src_t *s, double latency_ms, double energy_mj);
void dp_report_src_set_store_uri(dp_report_src_t *s, const char *uri);

/* Everything under CAMPAIGN/ in store: result.json, measure.json beside a
 * MEASURE's, samples.safetensors beside a GENERATE's or BASELINE's (fetched
 * into scratch, an existing directory, and removed), failure.json of
 * tasks without a result. skip_key: a result.json to leave out (the REPORT
 * task's own), or NULL. cancel: polled between objects, may be NULL. */
dp_err_t dp_report_collect(dp_report_src_t *s, dp_store_t *store, const char *scratch,
                           const char *skip_key, int (*cancel)(void *), void *cancel_arg);

/* What s holds: results used and skipped, sample sets and failures
 * together (0: nothing of the campaign was found). */
size_t dp_report_src_count(const dp_report_src_t *s);

/* ------------------------------------------------------------- build */

typedef struct dp_report_opts {
    int worst;                 /* inputs in each image grid: 4 */
    const char *baseline_json; /* a previous report.json to compare against, or NULL */
    size_t baseline_len;
    const char *baseline_label; /* how the page names it ("quickstart-1", a path) */
    double regress_pct;         /* a figure this much worse is a regression: 5 (percent) */
} dp_report_opts_t;

void dp_report_opts_init(dp_report_opts_t *o);

/* report.json of s: new string in *json, caller frees. A baseline that is
 * not a report is DP_ERR_FORMAT naming what was wrong. */
dp_err_t dp_report_build(const dp_report_src_t *s, const dp_report_opts_t *o, char **json);

/* ------------------------------------------------------------- read, render, compare */

/* DP_OK when text is a report.json this version renders, else
 * DP_ERR_FORMAT with the byte offset or the field that is wrong. */
dp_err_t dp_report_check(const char *text, size_t len);

/* report.html of report.json text: new string in *html (its length in
 * *len), caller frees. Checks text first (dp_report_check's errors). */
dp_err_t dp_report_html(const char *text, size_t len, char **html, size_t *hlen);

/* What changed from old to new (two report.json texts), one line per
 * change: new string, caller frees; *changes counts the figures that
 * changed and *worse those that got worse by more than regress_pct. */
dp_err_t dp_report_diff(const char *old_text, size_t old_len, const char *new_text, size_t new_len,
                        double regress_pct, char **text, int *changes, int *worse);

/* ------------------------------------------------------------- images */

/* A PNG (libpng) of a w x h image, 1 (gray) or 3 (RGB) channels, rows top
 * to bottom, bytes in *png (new, caller frees). */
dp_err_t dp_report_png(const uint8_t *pixels, int w, int h, int channels, uint8_t **png,
                       size_t *len);
/* The same with a palette: index holds one colour number per pixel, rgb
 * ncolors (1..256) colours of 3 bytes. */
dp_err_t dp_report_png_palette(const uint8_t *index, int w, int h, const uint8_t *rgb, int ncolors,
                               uint8_t **png, size_t *len);

#endif
