/* core/report: report.json built from results fed one by one (sample sets
 * whose x' are real Fashion-MNIST test images plus a perturbation), the
 * figures it derives (IDPB counts, I-Latency against the seeds, the worst
 * inputs and their PNGs, which libpng decodes back), the reader's errors
 * naming the field, the page's escaping, and the comparison. */
#include <criterion/criterion.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report/report.h"
#include "util/json.h"

#define FMNIST "/usr/share/datasets/fashion-mnist"

static dp_dataset_t *g_test;

static void load_test(void)
{
    if (dp_dataset_load_idx(FMNIST "/t10k-images-idx3-ubyte.gz",
                            FMNIST "/t10k-labels-idx1-ubyte.gz", &g_test) != DP_OK)
        cr_skip_test("Fashion-MNIST is not installed in " FMNIST);
}

static void drop_test(void) { dp_dataset_destroy(&g_test); }

/* A sample set of method m on seeds [0, n): x' = x + sign * eps on every
 * 7th pixel (clipped); executed fraction of seed i: 0.3, of x': exec(i). */
static perf_samples_t *samples(perf_method_t m, int n, double (*exec)(int))
{
    perf_samples_t *s = perf_samples_new(n, 1, 28, 28);
    cr_assert_not_null(s);
    s->method = m;
    s->budget.norm = PERF_NORM_LINF;
    s->budget.eps = 0.09f;
    s->budget.l2_at_most = 1;
    snprintf(s->model, sizeof s->model, "sdn_resnet");
    s->flops_full = 1e7;
    for (int i = 0; i < n; i++) {
        s->seed_index[i] = i;
        for (int p = 0; p < 784; p++) {
            float x = g_test->images[(size_t)i * 784 + p];
            float d = p % 7 ? 0.f : (p % 2 ? 0.09f : -0.09f);
            float v = x + d;
            s->xadv[(size_t)i * 784 + p] = v < 0 ? 0 : v > 1 ? 1 : v;
        }
        s->delta_norm[i] = 0.09f;
        s->psnr[i] = 25;
        s->flops_seed[i] = 3e6;
        s->flops_adv[i] = exec(i) * 1e7;
    }
    s->seconds = 0.5;
    return s;
}

static double exec_dp(int i) { return i < 3 ? 1.0 : 0.5; }
static double exec_random(int i) { return i == 0 ? 0.95 : 0.3; }

static char *result(const char *kind, const char *method, int n, const char *extra)
{
    char *t = malloc(1024);
    snprintf(t, 1024,
             "{\"kind\":\"%s\",\"model\":\"sdn_resnet\",\"norm\":\"linf\",\"eps\":0.09,"
             "\"l2_at_most\":true,\"method\":\"%s\",\"n\":%d,\"iflops_mean\":50,"
             "\"iflops_max\":233,\"exec_fraction_seed_mean\":0.3,\"exec_fraction_mean\":0.6,"
             "\"psnr_mean\":25,\"norm_max\":0.09,\"within_budget\":true,\"seconds\":0.5,"
             "\"idpb_rate\":0.3,\"device_class\":\"pi\",\"provenance\":{\"blas_core\":\"Haswell\","
             "\"gemm_path\":\"avx2\",\"threads\":1}%s}",
             kind, method, n, extra);
    return t;
}

/* measure.json of n inputs at ms(i) milliseconds. */
static char *measure(int n, double ms)
{
    size_t cap = 256 + (size_t)n * 128;
    char *t = malloc(cap);
    size_t o = (size_t)snprintf(t, cap,
                                "{\"device\":{\"device_class\":\"pi\",\"cpu\":\"x\"},"
                                "\"inputs\":[");
    for (int i = 0; i < n; i++)
        o += (size_t)snprintf(t + o, cap - o,
                              "%s{\"index\":%d,\"latency_median_ms\":%g,\"flops\":%g,"
                              "\"exec_fraction\":0.5}",
                              i ? "," : "", i, ms * (1 + i * 0.01), 1e6 * (i + 1));
    snprintf(t + o, cap - o, "]}");
    return t;
}

/* The report of 10 seeds: DeepPerform and random, measured on "pi" with
 * the seeds at 1 ms and DeepPerform at dp_ms. */
static char *build(double dp_ms, const char *baseline)
{
    dp_report_src_t *s = NULL;
    cr_assert_eq(dp_report_src_new("c-1", &s), DP_OK);
    dp_report_src_set_seeds(s, g_test, "t10k");
    dp_report_src_set_device_budgets(s, 2.05, NAN); /* seeds 1-1.09 ms, DeepPerform 2-2.18 */
    const int n = 10;
    perf_samples_t *dp = samples(PERF_METHOD_DEEPPERFORM, n, exec_dp);
    perf_samples_t *rnd = samples(PERF_METHOD_RANDOM, n, exec_random);
    cr_assert_eq(dp_report_src_add_samples(s,
                                           "c-1/sdn_resnet/linf-0.09/deepperform/s0/"
                                           "samples.safetensors",
                                           dp),
                 DP_OK);
    cr_assert_eq(dp_report_src_add_samples(s,
                                           "c-1/sdn_resnet/linf-0.09/random/s0/"
                                           "samples.safetensors",
                                           rnd),
                 DP_OK);
    char *r1 = result("generate", "deepperform", n, ""), *r2 = result("baseline", "random", n, "");
    char *r3 = result("measure", "seeds", n, ""), *r4 = result("measure", "deepperform", n, "");
    char *m3 = measure(n, 1.0), *m4 = measure(n, dp_ms);
    cr_assert_eq(dp_report_src_add_result(s, "k1/result.json", r1, NULL), DP_OK);
    cr_assert_eq(dp_report_src_add_result(s, "k2/result.json", r2, NULL), DP_OK);
    cr_assert_eq(dp_report_src_add_result(s, "k3/result.json", r3, m3), DP_OK);
    cr_assert_eq(dp_report_src_add_result(s, "k4/result.json", r4, m4), DP_OK);
    cr_assert_eq(dp_report_src_add_result(s, "k5/result.json", "not json", NULL), DP_OK);
    cr_assert_eq(dp_report_src_add_failure(s, "c-1/train/skipnet/linf-0.09", "c-1/skipnet",
                                           "failed", 3, "cannot load the model: not found"),
                 DP_OK);
    dp_report_opts_t o;
    dp_report_opts_init(&o);
    o.worst = 2;
    if (baseline) o.baseline_json = baseline, o.baseline_len = strlen(baseline);
    char *json = NULL;
    cr_assert_eq(dp_report_build(s, &o, &json), DP_OK, "%s", dp_err_detail());
    free(r1), free(r2), free(r3), free(r4), free(m3), free(m4);
    perf_samples_destroy(&dp);
    perf_samples_destroy(&rnd);
    dp_report_src_destroy(&s);
    return json;
}

static const tj_val_t *group(const tj_val_t *r, const char *method)
{
    const tj_val_t *gs = tj_get(r, "groups");
    for (size_t i = 0; i < gs->n; i++)
        if (!strcmp(tj_get_str(&gs->items[i], "method", ""), method)) return &gs->items[i];
    cr_assert_fail("no group %s", method);
    return NULL;
}

/* Decodes a base64 PNG with libpng: width, height, and the first pixel. */
static void png_check(const char *b64, int w, int h)
{
    size_t n = strlen(b64), k = 0;
    unsigned char *bin = malloc(n);
    unsigned acc = 0, bits = 0;
    for (size_t i = 0; i < n && b64[i] != '='; i++) {
        const char *tab = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        acc = acc << 6 | (unsigned)(strchr(tab, b64[i]) - tab), bits += 6;
        if (bits >= 8) bin[k++] = (unsigned char)(acc >> (bits - 8)), bits -= 8;
    }
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    cr_assert(png_image_begin_read_from_memory(&im, bin, k), "%s", im.message);
    cr_assert_eq((int)im.width, w);
    cr_assert_eq((int)im.height, h);
    png_image_free(&im);
    free(bin);
}

TestSuite(report, .init = load_test, .fini = drop_test);

Test(report, figures_from_results_and_sample_sets)
{
    char *json = build(2.0, NULL);
    cr_assert_eq(dp_report_check(json, strlen(json)), DP_OK, "%s", dp_err_detail());
    tj_val_t r;
    cr_assert_eq(tj_parse(json, strlen(json), &r), DP_OK);
    cr_assert_eq(tj_get_num(&r, "results", 0), 4);
    cr_assert_eq(tj_get_num(&r, "skipped", 0), 1);
    const tj_val_t *dp = group(&r, "deepperform"), *seeds = group(&r, "seeds");
    /* 3 of 10 x' execute the whole network (>= 0.9) */
    cr_assert_eq(tj_get_num(dp, "idpb_count", -1), 3);
    cr_assert_float_eq(tj_get_num(dp, "exec_fraction_max", 0), 1.0, 1e-6);
    const tj_val_t *h = tj_get(dp, "exec_fraction_hist");
    cr_assert_eq(h->n, 20);
    cr_assert_eq(h->items[19].num, 3); /* the 1.0s */
    cr_assert_eq(h->items[10].num, 7); /* the 0.5s */
    cr_assert_eq(tj_get_num(seeds, "n", 0), 10);
    cr_assert_eq(tj_get(seeds, "exec_fraction_hist")->items[6].num, 10); /* 0.3 */
    /* seed i at 1 ms * (1 + i/100), DeepPerform at twice that: +100% each */
    const tj_val_t *l = &tj_get(dp, "latency")->items[0];
    cr_assert_str_eq(tj_get_str(l, "device_class", ""), "pi");
    cr_assert_float_eq(tj_get_num(l, "ilatency_p50", 0), 100, 1e-9);
    cr_assert_float_eq(tj_get_num(l, "ilatency_p99", 0), 100, 1e-9);
    cr_assert_float_eq(tj_get_num(l, "latency_ms_p50", 0), 2 * 1.04, 1e-9);
    cr_assert_eq(tj_get_num(l, "over_seed_p99", -1), 10);
    /* 2 * (1 + i/100) > 2.05 for i >= 3 */
    cr_assert_eq(tj_get_num(l, "over_latency_budget", -1), 7);
    cr_assert_null(tj_get(l, "over_energy_budget"), "no energy measured, no budget set");
    cr_assert_float_eq(tj_get_num(tj_get(&r, "thresholds"), "latency_ms", 0), 2.05, 1e-12);
    cr_assert_eq(tj_get(l, "latency_cdf_ms")->n, 51);
    /* worst 2 of DeepPerform's (exec 1.0: seeds 0, 1), each with the seed,
     * DeepPerform's and random's x' and their magnified deltas */
    const tj_val_t *w = tj_get(&r, "worst");
    cr_assert_eq(w->n, 2);
    cr_assert_eq(tj_get_num(&w->items[0], "seed_index", -1), 0);
    cr_assert_eq(tj_get_num(&w->items[1], "seed_index", -1), 1);
    /* one strip: seed | DeepPerform x' | its delta | random x' | its delta */
    const tj_val_t *cols = tj_get(&w->items[0], "columns");
    cr_assert_eq(cols->n, 5);
    static const char *const cols_want[][2] = {{"seeds", "input"},
                                               {"deepperform", "input"},
                                               {"deepperform", "delta"},
                                               {"random", "input"},
                                               {"random", "delta"}};
    for (size_t i = 0; i < 5; i++) {
        cr_assert_str_eq(tj_get_str(&cols->items[i], "method", ""), cols_want[i][0]);
        cr_assert_str_eq(tj_get_str(&cols->items[i], "kind", ""), cols_want[i][1]);
    }
    cr_assert_str_eq(tj_get_str(&cols->items[3], "artifact", ""),
                     "c-1/sdn_resnet/linf-0.09/random/s0/samples.safetensors");
    cr_assert_float_eq(tj_get_num(&cols->items[1], "exec_fraction", 0), 1.0, 1e-6);
    png_check(tj_get_str(&w->items[0], "png", ""), 5 * 28 + 4 * 2, 28);
    const tj_val_t *f = &tj_get(&r, "failures")->items[0];
    cr_assert_str_eq(tj_get_str(f, "reason", ""), "cannot load the model: not found");
    const tj_val_t *sc = &tj_get(&r, "scatter")->items[0];
    cr_assert_eq(tj_get_num(sc, "n", 0), 20);
    double sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0; /* the same points, by hand */
    for (int k = 0; k < 20; k++) {
        double x = (k % 10 + 1), y = (k < 10 ? 1.0 : 2.0) * (1 + (k % 10) * 0.01);
        sx += x, sy += y, sxx += x * x, syy += y * y, sxy += x * y;
    }
    double want = (sxy - sx * sy / 20) / sqrt((sxx - sx * sx / 20) * (syy - sy * sy / 20));
    cr_assert_float_eq(tj_get_num(sc, "pearson", 0), want, 1e-9);
    tj_val_free(&r);

    char *html = NULL;
    size_t len = 0;
    cr_assert_eq(dp_report_html(json, strlen(json), &html, &len), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(strlen(html), len);
    cr_assert(strstr(html, "href=\"../sdn_resnet/linf-0.09/random/s0/samples.safetensors\""),
              "tiles link to their sample set, relative to CAMPAIGN/report/");
    cr_assert(strstr(html, "usemap=\"#strip1\""));
    cr_assert(strstr(html, "pi: &gt; 2.05 ms"), "the summary counts against the budget");
    cr_assert(strstr(html, "cannot load the model: not found"));
    cr_assert(!strstr(html, "<script"));
    free(html);
    free(json);
}

Test(report, png_round_trip)
{
    uint8_t gray[15], rgb[45];
    for (int i = 0; i < 15; i++) gray[i] = (uint8_t)(i * 17);
    for (int i = 0; i < 45; i++) rgb[i] = (uint8_t)(i * 5);
    for (int ch = 1; ch <= 3; ch += 2) {
        uint8_t *png = NULL;
        size_t len = 0;
        cr_assert_eq(dp_report_png(ch == 1 ? gray : rgb, 5, 3, ch, &png, &len), DP_OK);
        png_image im;
        memset(&im, 0, sizeof im);
        im.version = PNG_IMAGE_VERSION;
        cr_assert(png_image_begin_read_from_memory(&im, png, len), "%s", im.message);
        im.format = ch == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
        uint8_t out[45];
        cr_assert(png_image_finish_read(&im, NULL, out, 0, NULL), "%s", im.message);
        cr_assert_arr_eq(out, ch == 1 ? gray : rgb, (size_t)(15 * ch));
        free(png);
    }
    /* a palette image reads back as the palette's colours */
    uint8_t idx[15], pal[3 * 4] = {0, 0, 0, 255, 0, 0, 0, 0, 255, 255, 255, 255}, want[45];
    for (int i = 0; i < 15; i++)
        idx[i] = (uint8_t)(i % 4), memcpy(want + 3 * i, pal + 3 * (i % 4), 3);
    uint8_t *png = NULL;
    size_t len;
    cr_assert_eq(dp_report_png_palette(idx, 5, 3, pal, 4, &png, &len), DP_OK);
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    cr_assert(png_image_begin_read_from_memory(&im, png, len), "%s", im.message);
    cr_assert(im.format & PNG_FORMAT_FLAG_COLORMAP, "stored with a palette");
    im.format = PNG_FORMAT_RGB;
    uint8_t out[45];
    cr_assert(png_image_finish_read(&im, NULL, out, 0, NULL), "%s", im.message);
    cr_assert_arr_eq(out, want, 45);
    free(png);
    idx[7] = 4; /* no such colour */
    cr_assert_eq(dp_report_png_palette(idx, 5, 3, pal, 4, &png, &len), DP_ERR_INVALID);
    cr_assert(strstr(dp_err_detail(), "pixel 7"), "%s", dp_err_detail());
    cr_assert_eq(dp_report_png(gray, 0, 3, 1, &png, &len), DP_ERR_INVALID);
    cr_assert_eq(dp_report_png(gray, 5, 3, 2, &png, &len), DP_ERR_INVALID);
}

typedef struct bad {
    const char *text;
    dp_err_t err;
    const char *detail;
} bad_t;

Test(report, reader_names_what_is_wrong)
{
    static const bad_t cases[] = {
        {"", DP_ERR_FORMAT, "at byte 0"},
        {"{\"format\":", DP_ERR_FORMAT, "report.json: JSON"},
        {"[]", DP_ERR_FORMAT, "an object is needed"},
        {"{\"format\":\"other\"}", DP_ERR_FORMAT, "not a campaign report"},
        {"{\"format\":\"dp-report\",\"version\":2}", DP_ERR_UNSUPPORTED, "version 2"},
        {"{\"format\":\"dp-report\",\"version\":1}", DP_ERR_FORMAT, "campaign: missing"},
        {"{\"format\":\"dp-report\",\"version\":1,\"campaign\":{}}", DP_ERR_FORMAT,
         "campaign.id: missing"},
        {"{\"format\":\"dp-report\",\"version\":1,\"campaign\":{\"id\":\"c\"},"
         "\"groups\":[{\"model\":3,\"method\":\"x\"}]}",
         DP_ERR_FORMAT, "groups[0].model: a string is needed"},
        {"{\"format\":\"dp-report\",\"version\":1,\"campaign\":{\"id\":\"c\"},"
         "\"groups\":[{\"model\":\"m\",\"method\":\"x\",\"latency\":[{\"device_class\":\"d\","
         "\"latency_ms_p50\":\"fast\"}]}]}",
         DP_ERR_FORMAT, "groups[0].latency[0].latency_ms_p50: a number is needed"},
        {"{\"format\":\"dp-report\",\"version\":1,\"campaign\":{\"id\":\"c\"},"
         "\"worst\":[{\"model\":\"m\",\"png\":\"a\\\"><b>\"}]}",
         DP_ERR_FORMAT, "worst[0]: an image that is not base64"},
        {"{\"format\":\"dp-report\",\"version\":1,\"campaign\":{\"id\":\"c\"},"
         "\"worst\":[{\"model\":\"m\",\"columns\":[{\"kind\":\"input\"}]}]}",
         DP_ERR_FORMAT, "worst[0].columns[0].method: missing"},
        {"{\"format\":\"dp-report\",\"version\":1,\"campaign\":{\"id\":\"c\"},"
         "\"scatter\":[{\"model\":\"m\",\"device_class\":\"d\",\"points\":[[1,2]]}]}",
         DP_ERR_FORMAT, "scatter[0].points[0]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        dp_err_t err = dp_report_check(cases[i].text, strlen(cases[i].text));
        cr_assert_eq(err, cases[i].err, "case %zu: %d (%s)", i, err, dp_err_detail());
        cr_assert(strstr(dp_err_detail(), cases[i].detail), "case %zu: '%s' lacks '%s'", i,
                  dp_err_detail(), cases[i].detail);
        char *html = (char *)1;
        size_t len;
        cr_assert_eq(dp_report_html(cases[i].text, strlen(cases[i].text), &html, &len),
                     cases[i].err);
        cr_assert_null(html);
    }
}

Test(report, page_escapes_every_string)
{
    const char *j =
        "{\"format\":\"dp-report\",\"version\":1,\"campaign\":{\"id\":\"<c>\"},"
        "\"models\":[\"<script>alert(1)</script>\"],"
        "\"methods\":[\"seeds\"],\"groups\":[{\"model\":\"<script>alert(1)</script>\","
        "\"method\":\"seeds\",\"n\":1,\"exec_fraction_hist\":[1]}],"
        "\"failures\":[{\"task\":\"t\",\"reason\":\"\\\"><img src=x onerror=alert(1)>\"}],"
        "\"budgets\":[{\"norm\":\"linf\",\"eps\":1}],"
        "\"worst\":[{\"model\":\"<script>alert(1)</script>\",\"norm\":\"linf\",\"eps\":1,"
        "\"png\":\"QUJD\",\"columns\":[{\"method\":\"\\\"><b>\","
        "\"artifact\":\"javascript:alert(1)\"}]}]}";
    char *html = NULL;
    size_t len;
    cr_assert_eq(dp_report_html(j, strlen(j), &html, &len), DP_OK, "%s", dp_err_detail());
    cr_assert(!strstr(html, "<script"));
    cr_assert(!strstr(html, "<img src=x"));
    cr_assert(!strstr(html, "href=\"javascript:"), "a key is a path: ../../javascript%%3Aalert");
    cr_assert(strstr(html, "href=\"../../javascript%3Aalert%281%29\""), "%s", html);
    cr_assert(!strstr(html, "\"><b>"));
    cr_assert(strstr(html, "&lt;script&gt;alert(1)&lt;/script&gt;"));
    free(html);
}

Test(report, diff_and_regression)
{
    char *old = build(2.0, NULL), *now = build(3.0, NULL);
    char *text = NULL;
    int changes, worse;
    cr_assert_eq(dp_report_diff(old, strlen(old), old, strlen(old), 5, &text, &changes, &worse),
                 DP_OK);
    cr_assert_eq(changes, 0);
    cr_assert_eq(worse, 0);
    free(text);
    cr_assert_eq(dp_report_diff(old, strlen(old), now, strlen(now), 5, &text, &changes, &worse),
                 DP_OK);
    cr_assert(worse >= 2, "latency and I-Latency up 50%%: %d worse\n%s", worse, text);
    cr_assert(strstr(text, "! sdn_resnet/linf-0.09/deepperform/pi/latency_ms_p50: 2.08 -> 3.12 "
                           "(+50.0%) worse\n"),
              "%s", text);
    free(text);
    /* the other way round nothing is worse */
    cr_assert_eq(dp_report_diff(now, strlen(now), old, strlen(old), 5, &text, &changes, &worse),
                 DP_OK);
    cr_assert_eq(worse, 0, "%s", text);
    cr_assert(changes >= 2);
    free(text);
    cr_assert_eq(dp_report_diff("{}", 2, now, strlen(now), 5, &text, &changes, &worse),
                 DP_ERR_FORMAT);
    cr_assert(strstr(dp_err_detail(), "the old report"), "%s", dp_err_detail());

    char *with = build(3.0, old);
    tj_val_t r;
    cr_assert_eq(tj_parse(with, strlen(with), &r), DP_OK);
    const tj_val_t *reg = tj_get(&r, "regression");
    cr_assert_not_null(reg);
    cr_assert(tj_get_num(reg, "worse", 0) >= 2);
    tj_val_free(&r);
    char *html = NULL;
    size_t len;
    cr_assert_eq(dp_report_html(with, strlen(with), &html, &len), DP_OK);
    cr_assert(strstr(html, "id=\"regression\""));
    free(html);
    char *bad = NULL;
    dp_report_src_t *s = NULL;
    cr_assert_eq(dp_report_src_new("c-1", &s), DP_OK);
    dp_report_opts_t o;
    dp_report_opts_init(&o);
    o.baseline_json = "not a report", o.baseline_len = 12;
    cr_assert_eq(dp_report_build(s, &o, &bad), DP_ERR_FORMAT);
    cr_assert(strstr(dp_err_detail(), "baseline"), "%s", dp_err_detail());
    cr_assert_null(bad);
    dp_report_src_destroy(&s);
    free(old), free(now), free(with);
}
