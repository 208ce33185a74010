/* What the report's parts share inside core/report: the collected source
 * (src.c fills it, build.c turns it into report.json). */
#ifndef DP_REPORT_IMPL_H
#define DP_REPORT_IMPL_H

#include <stdlib.h>

#include "report/report.h"
#include "util/json.h"

#define RPT_NAME      64
#define RPT_WORST_MAX 16

/* One measured input of a MEASURE. */
typedef struct rpt_meas {
    int64_t index;
    double ms, flops, exec, energy_mj; /* energy NaN when the class has no probe */
} rpt_meas_t;

/* The measurements of one group on one device class. */
typedef struct rpt_lats {
    char cls[RPT_NAME];
    rpt_meas_t *v;
    size_t n, cap;
} rpt_lats_t;

/* One input of a sample set. */
typedef struct rpt_input {
    int64_t index;
    float exec, exec_seed, iflops, psnr, norm;
} rpt_input_t;

/* x' of one worst input, by method. */
typedef struct rpt_img {
    char method[16];
    char key[512]; /* the sample set it is in */
    float exec;
    float *x; /* (c,h,w) */
} rpt_img_t;

typedef struct rpt_worst {
    int64_t index;
    float exec; /* DeepPerform's */
    rpt_img_t *img;
    size_t nimg;
} rpt_worst_t;

/* A cell: (model, norm, eps, l2_at_most, method); seeds have method "seeds"
 * and no budget. */
typedef struct rpt_group {
    char model[RPT_NAME], norm[8], method[16];
    double eps;
    int l2_at_most;
    /* result.json of GENERATE / BASELINE */
    size_t n, shards;
    double s_iflops, max_iflops, s_exec_seed, s_exec, s_psnr, norm_max, seconds, s_idpb;
    int within;
    /* TRAIN */
    int has_train, epochs_run, best_epoch, resumed_from, early_stopped;
    double best_exec, train_seconds;
    /* sample sets */
    rpt_input_t *in;
    size_t nin, capin;
    char (*artifacts)[512];
    size_t nart;
    /* MEASURE */
    rpt_lats_t *lat;
    size_t nlat;
    /* measure.json provenance: key, device and provenance as JSON text */
    char **meas_keys, **meas_device, **meas_prov, **meas_cls;
    size_t nmeas;
    /* image grid (DeepPerform groups) */
    rpt_worst_t worst[RPT_WORST_MAX];
    size_t nworst;
    int c, h, w;
} rpt_group_t;

typedef struct rpt_fail {
    char *task, *key, *state, *reason;
    int attempts;
} rpt_fail_t;

struct dp_report_src {
    char campaign[256];
    char *store_uri, *dataset_uri;
    const dp_dataset_t *test;
    double idpb_exec;
    double budget_ms, budget_mj; /* device budgets; NaN: none */
    int worst_keep;              /* images kept per DeepPerform group while collecting */
    rpt_group_t *g;
    size_t ng, capg;
    char **skipped;
    size_t nskipped, used;
    char (*kernels)[96];
    size_t nkernels;
    rpt_fail_t *fail;
    size_t nfail;
    int nomem;
};

/* The group of (model, norm, eps, l2_at_most, method), made when missing
 * (NULL: no memory). eps is compared as float. */
rpt_group_t *rpt_group_of(dp_report_src_t *s, const char *model, const char *norm, double eps,
                          int l2_at_most, const char *method);
const rpt_group_t *rpt_group_find(const dp_report_src_t *s, const char *model, const char *norm,
                                  double eps, int l2_at_most, const char *method);

/* qsort that accepts an empty (NULL) array. */
static inline void rpt_qsort(void *base, size_t n, size_t size,
                             int (*cmp)(const void *, const void *))
{
    if (n > 1) qsort(base, n, size, cmp);
}

/* Order of methods on the page: seeds, deepperform, random, ilfo, deepsloth. */
int rpt_method_rank(const char *m);

/* Writes value v (a parsed JSON value) with w. */
void rpt_write_val(tj_writer_t *w, const tj_val_t *v);

/* Standard base64 of n bytes: new string, NULL without memory. */
char *rpt_base64(const uint8_t *p, size_t n);

/* Parses and checks report.json text (dp_report_check's errors); *out
 * freed with tj_val_free. */
dp_err_t rpt_read(const char *text, size_t len, tj_val_t *out);

/* The "regression" member (inside an open object of w): the figures of
 * new_text against old_text. */
dp_err_t rpt_regression(tj_writer_t *w, const char *old_text, size_t old_len, const char *new_text,
                        size_t new_len, const char *label, double pct);

/* Nearest-rank percentile p of sorted[0..n) (NaN when n is 0). */
double rpt_rank_pct(const double *sorted, size_t n, double p);

#endif
