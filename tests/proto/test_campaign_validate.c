/* core/campaign: what a campaign means (campaign_validate) and the decoder
 * that refuses fields this version does not know (campaign_decode). Each
 * case breaks one field of a valid campaign; the detail must name it. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "campaign/campaign.h"

/* A valid campaign (the quickstart's shape) in one block of stack objects. */
typedef struct fixture {
    Dp__V1__Campaign c;
    Dp__V1__Model m[2], *mp[2];
    Dp__V1__Dataset d, *dp;
    Dp__V1__IndexRange train, test;
    Dp__V1__Budget b[2], *bp[2];
    float eps0[3], eps1[2];
    Dp__V1__GeneratorSettings g;
    Dp__V1__UInt32Value width, epochs, batch, patience, iters, spare;
    Dp__V1__FloatValue lr, alpha, ilfo_lr, window, exec;
    Dp__V1__Baseline bl[3], *blp[3];
    Dp__V1__DeviceClass dc, *dcp;
    Dp__V1__MeasureSettings ms;
    Dp__V1__Thresholds th;
} fixture_t;

static void fixture_init(fixture_t *f)
{
    memset(f, 0, sizeof *f);
    f->c = (Dp__V1__Campaign)DP__V1__CAMPAIGN__INIT;
    f->c.name = "quickstart";
    f->c.store_uri = "file://./dp-store";
    static const char *const names[2] = {"skipnet", "sdn-resnet"};
    for (int i = 0; i < 2; i++) {
        f->m[i] = (Dp__V1__Model)DP__V1__MODEL__INIT;
        f->m[i].name = (char *)names[i];
        f->m[i].family = i ? DP__V1__MODEL_FAMILY__MODEL_FAMILY_SDN_RESNET
                           : DP__V1__MODEL_FAMILY__MODEL_FAMILY_SKIPNET;
        f->m[i].spec_uri = "file://models/m.spec.pb";
        f->m[i].weights_uri = "s3://bucket/models/m.safetensors";
        f->mp[i] = &f->m[i];
    }
    f->c.n_models = 2, f->c.models = f->mp;
    f->d = (Dp__V1__Dataset)DP__V1__DATASET__INIT;
    f->d.name = "fashion-mnist";
    f->d.format = DP__V1__DATASET_FORMAT__DATASET_FORMAT_IDX;
    f->d.train_images_uri = "file:///data/train-images";
    f->d.train_labels_uri = "file:///data/train-labels";
    f->d.test_images_uri = "file:///data/t10k-images";
    f->d.test_labels_uri = "file:///data/t10k-labels";
    f->train = (Dp__V1__IndexRange)DP__V1__INDEX_RANGE__INIT;
    f->train.end = 60000;
    f->test = f->train;
    f->test.end = 1000;
    f->d.train_range = &f->train, f->d.test_range = &f->test;
    f->d.shard_size = 250;
    f->dp = &f->d;
    f->c.n_datasets = 1, f->c.datasets = &f->dp;
    f->eps0[0] = 0.03f, f->eps0[1] = 0.06f, f->eps0[2] = 0.09f;
    f->eps1[0] = 0.5f, f->eps1[1] = 1.0f;
    for (int i = 0; i < 2; i++) {
        f->b[i] = (Dp__V1__Budget)DP__V1__BUDGET__INIT;
        f->bp[i] = &f->b[i];
    }
    f->b[0].norm = DP__V1__NORM__NORM_LINF, f->b[0].n_eps = 3, f->b[0].eps = f->eps0;
    f->b[1].norm = DP__V1__NORM__NORM_L2, f->b[1].n_eps = 2, f->b[1].eps = f->eps1;
    f->c.n_budgets = 2, f->c.budgets = f->bp;
    Dp__V1__UInt32Value u = DP__V1__UINT32_VALUE__INIT;
    Dp__V1__FloatValue fl = DP__V1__FLOAT_VALUE__INIT;
    f->width = f->epochs = f->batch = f->patience = f->iters = f->spare = u;
    f->lr = f->alpha = f->ilfo_lr = f->window = f->exec = fl;
    f->width.value = 16, f->epochs.value = 20, f->batch.value = 64, f->patience.value = 20;
    f->lr.value = 1e-3f, f->alpha.value = 0;
    f->g = (Dp__V1__GeneratorSettings)DP__V1__GENERATOR_SETTINGS__INIT;
    f->g.width = &f->width, f->g.epochs = &f->epochs, f->g.batch_size = &f->batch;
    f->g.patience = &f->patience, f->g.lr = &f->lr, f->g.alpha_gan = &f->alpha, f->g.seed = 1;
    f->c.generator = &f->g;
    for (int i = 0; i < 3; i++) {
        f->bl[i] = (Dp__V1__Baseline)DP__V1__BASELINE__INIT;
        f->bl[i].method = (Dp__V1__BaselineMethod)(i + 1);
        f->blp[i] = &f->bl[i];
    }
    f->iters.value = 300, f->ilfo_lr.value = 0.01f;
    f->bl[1].iterations = &f->iters, f->bl[1].lr = &f->ilfo_lr;
    f->c.n_baselines = 3, f->c.baselines = f->blp;
    f->dc = (Dp__V1__DeviceClass)DP__V1__DEVICE_CLASS__INIT;
    f->dc.name = "x86-local", f->dc.probe = DP__V1__ENERGY_PROBE__ENERGY_PROBE_RAPL;
    f->dc.samples = 200;
    f->dcp = &f->dc;
    f->c.n_device_classes = 1, f->c.device_classes = &f->dcp;
    f->ms = (Dp__V1__MeasureSettings)DP__V1__MEASURE_SETTINGS__INIT;
    f->window.value = 1.0f;
    f->ms.energy_window_s = &f->window;
    f->c.measure = &f->ms;
    f->th = (Dp__V1__Thresholds)DP__V1__THRESHOLDS__INIT;
    f->exec.value = 0.9f;
    f->th.exec_fraction = &f->exec;
    f->c.thresholds = &f->th;
}

/* campaign_validate(c) fails with err and a detail holding needle. */
#define EXPECT_BAD(fx, err_, needle)                                                               \
    do {                                                                                           \
        dp_err_t e_ = campaign_validate(&(fx)->c);                                                 \
        cr_assert_eq(e_, err_, "want %s for '%s', got %s: %s", dp_strerror(err_), needle,          \
                     dp_strerror(e_), dp_err_detail());                                            \
        cr_assert(strstr(dp_err_detail(), needle), "detail '%s' lacks '%s'", dp_err_detail(),      \
                  needle);                                                                         \
        cr_assert_eq(strncmp(dp_err_detail(), "campaign: ", 10), 0, "%s", dp_err_detail());        \
    } while (0)

/* Each case: a fresh valid fixture, one change, the error. */
#define CASE(err_, needle, ...)                                                                    \
    do {                                                                                           \
        fixture_t fx_;                                                                             \
        fixture_init(&fx_);                                                                        \
        fixture_t *f = &fx_;                                                                       \
        __VA_ARGS__;                                                                               \
        EXPECT_BAD(f, err_, needle);                                                               \
    } while (0)

Test(campaign_validate, valid_ones_pass)
{
    fixture_t f;
    fixture_init(&f);
    cr_assert_eq(campaign_validate(&f.c), DP_OK, "%s", dp_err_detail());
    /* optional parts absent; CIFAR without label files; the least eps */
    f.c.generator = NULL, f.c.measure = NULL, f.c.thresholds = NULL;
    f.c.n_baselines = 0, f.c.n_device_classes = 0;
    f.d.format = DP__V1__DATASET_FORMAT__DATASET_FORMAT_CIFAR10;
    f.d.train_labels_uri = f.d.test_labels_uri = "";
    f.d.train_range = f.d.test_range = NULL;
    f.eps0[0] = (float)1e-9, f.eps0[1] = 1e6f;
    f.b[1].l2_exact = 1;
    cr_assert_eq(campaign_validate(&f.c), DP_OK, "%s", dp_err_detail());
    f.c.name = "a";
    f.test.end = 0; /* to the end */
    f.d.test_range = &f.test;
    cr_assert_eq(campaign_validate(&f.c), DP_OK, "%s", dp_err_detail());
}

Test(campaign_validate, names)
{
    CASE(DP_ERR_INVALID, "campaign: name is empty", f->c.name = "");
    CASE(DP_ERR_INVALID, "name '../x': byte 0 is not allowed", f->c.name = "../x");
    CASE(DP_ERR_INVALID, "name 'a b': byte 1 is not allowed", f->c.name = "a b");
    CASE(DP_ERR_INVALID, "name is 64 bytes, at most 63",
         f->c.name = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    CASE(DP_ERR_INVALID, "models[1].name is empty", f->m[1].name = "");
    CASE(DP_ERR_INVALID, "models[1].name 'skipnet' is also models[0]'s", f->m[1].name = "skipnet");
    CASE(DP_ERR_INVALID, "models[0].name 'sk?': byte 2 is not allowed", f->m[0].name = "sk\xff");
    CASE(DP_ERR_INVALID, "models[0].name 'a/b'", f->m[0].name = "a/b");
    CASE(DP_ERR_INVALID, "datasets[0].name is empty", f->d.name = "");
    CASE(DP_ERR_INVALID, "device_classes[0].name '-x': byte 0", f->dc.name = "-x");
    CASE(DP_ERR_INVALID, "models: 0 given, expected 1 to 256", f->c.n_models = 0);
    CASE(DP_ERR_INVALID, "datasets: 0 given", f->c.n_datasets = 0);
    CASE(DP_ERR_INVALID, "budgets: 0 given", f->c.n_budgets = 0);
    CASE(DP_ERR_RANGE, "models: 257 given, expected 1 to 256", f->c.n_models = 257);
}

Test(campaign_validate, enums)
{
    CASE(DP_ERR_INVALID, "models[0].family 0 is not a known model family",
         f->m[0].family = DP__V1__MODEL_FAMILY__MODEL_FAMILY_UNSPECIFIED);
    CASE(DP_ERR_INVALID, "models[1].family 7 is not", f->m[1].family = (Dp__V1__ModelFamily)7);
    CASE(DP_ERR_INVALID, "models[1].family -1 is not", f->m[1].family = (Dp__V1__ModelFamily)-1);
    CASE(DP_ERR_INVALID, "datasets[0].format 4 is not a known dataset format",
         f->d.format = (Dp__V1__DatasetFormat)4);
    CASE(DP_ERR_INVALID, "budgets[1].norm 0 is not a known norm",
         f->b[1].norm = DP__V1__NORM__NORM_UNSPECIFIED);
    CASE(DP_ERR_INVALID, "baselines[0].method 0 is not a known baseline method",
         f->bl[0].method = DP__V1__BASELINE_METHOD__BASELINE_METHOD_UNSPECIFIED);
    CASE(DP_ERR_INVALID, "baselines[2].method is also baselines[1]'s",
         f->bl[2].method = DP__V1__BASELINE_METHOD__BASELINE_METHOD_ILFO);
    CASE(DP_ERR_INVALID, "device_classes[0].probe 0 is not a known energy probe",
         f->dc.probe = DP__V1__ENERGY_PROBE__ENERGY_PROBE_UNSPECIFIED);
    CASE(DP_ERR_INVALID, "device_classes[0].probe 5", f->dc.probe = (Dp__V1__EnergyProbe)5);
}

Test(campaign_validate, uris)
{
    CASE(DP_ERR_INVALID, "store_uri is empty", f->c.store_uri = "");
    CASE(DP_ERR_INVALID, "store_uri 'http://x' is not a file:// or s3:// URI",
         f->c.store_uri = "http://x");
    CASE(DP_ERR_INVALID, "store_uri 'file://' has no path", f->c.store_uri = "file://");
    CASE(DP_ERR_INVALID, "store_uri 's3:///k' has no bucket", f->c.store_uri = "s3:///k");
    CASE(DP_ERR_INVALID, "models[1].spec_uri 'models/m.pb' is not a file:// or s3:// URI",
         f->m[1].spec_uri = "models/m.pb");
    CASE(DP_ERR_INVALID, "models[0].weights_uri 'file://a b' has a space or control character",
         f->m[0].weights_uri = "file://a b");
    CASE(DP_ERR_INVALID, "models[0].weights_uri is not UTF-8", f->m[0].weights_uri = "s3://b/\xe2");
    CASE(DP_ERR_INVALID, "datasets[0].test_labels_uri is empty", f->d.test_labels_uri = "");
    CASE(DP_ERR_INVALID, "datasets[0].train_labels_uri is set: CIFAR batches hold their labels",
         f->d.format = DP__V1__DATASET_FORMAT__DATASET_FORMAT_CIFAR100);
    CASE(DP_ERR_INVALID, "datasets[0].train_images_uri is empty",
         f->d.format = DP__V1__DATASET_FORMAT__DATASET_FORMAT_CIFAR10,
         f->d.train_labels_uri = f->d.test_labels_uri = "", f->d.train_images_uri = "");
}

Test(campaign_validate, ranges_and_shards)
{
    CASE(DP_ERR_RANGE, "datasets[0].test_range is [5, 5): empty", f->test.begin = 5,
         f->test.end = 5);
    CASE(DP_ERR_RANGE, "datasets[0].train_range is [9, 3)", f->train.begin = 9, f->train.end = 3);
    CASE(DP_ERR_RANGE, "datasets[0].shard_size is 0, expected [1, 16777216]", f->d.shard_size = 0);
    CASE(DP_ERR_RANGE, "datasets[0].shard_size is 16777217", f->d.shard_size = (1u << 24) + 1);
}

/* eps is a float in the message: NaN, infinities, 0, negative, denormal and
 * 1e-9's neighbour below all refused; duplicates too. */
Test(campaign_validate, budgets)
{
    CASE(DP_ERR_RANGE, "budgets[0].eps[1] is nan, expected a finite number in [1e-09, 1e+06]",
         f->eps0[1] = NAN);
    CASE(DP_ERR_RANGE, "budgets[0].eps[0] is inf", f->eps0[0] = INFINITY);
    CASE(DP_ERR_RANGE, "budgets[1].eps[1] is 0,", f->eps1[1] = 0);
    CASE(DP_ERR_RANGE, "budgets[1].eps[1] is -0.5", f->eps1[1] = -0.5f);
    CASE(DP_ERR_RANGE, "budgets[1].eps[0] is 1.40129846e-45", f->eps1[0] = 1e-45f);
    CASE(DP_ERR_RANGE, "budgets[1].eps[0] is 9.99999", f->eps1[0] = nextafterf((float)1e-9, 0));
    CASE(DP_ERR_RANGE, "budgets[1].eps[0] is 1000000.06", f->eps1[0] = nextafterf(1e6f, INFINITY));
    CASE(DP_ERR_INVALID, "budgets[0].eps: 0 given, expected 1 to 64", f->b[0].n_eps = 0);
    CASE(DP_ERR_INVALID, "budgets[0].eps[2] 0.03 is also budgets[0].eps[0]", f->eps0[2] = 0.03f);
    CASE(DP_ERR_INVALID, "budgets[1].eps[0] 0.09 is also budgets[0].eps[2]",
         f->b[1].norm = DP__V1__NORM__NORM_LINF, f->eps1[0] = 0.09f);
    CASE(DP_ERR_INVALID, "budgets[0].l2_exact is set on a Linf budget", f->b[0].l2_exact = 1);
    /* the same eps under another norm or L2 mode is another budget */
    fixture_t f;
    fixture_init(&f);
    f.eps1[0] = 0.09f;
    cr_assert_eq(campaign_validate(&f.c), DP_OK, "%s", dp_err_detail());
    f.b[0].norm = DP__V1__NORM__NORM_L2, f.b[1].l2_exact = 1;
    cr_assert_eq(campaign_validate(&f.c), DP_OK, "%s", dp_err_detail());
}

Test(campaign_validate, settings)
{
    CASE(DP_ERR_RANGE, "generator.width is 4, expected [8, 256]", f->width.value = 4);
    CASE(DP_ERR_RANGE, "generator.epochs is 0", f->epochs.value = 0);
    CASE(DP_ERR_RANGE, "generator.batch_size is 1, expected [2, 4096]", f->batch.value = 1);
    CASE(DP_ERR_RANGE, "generator.patience is 0", f->patience.value = 0);
    CASE(DP_ERR_RANGE, "generator.lr is nan", f->lr.value = NAN);
    CASE(DP_ERR_RANGE, "generator.lr is 2", f->lr.value = 2);
    CASE(DP_ERR_RANGE, "generator.alpha_gan is -1", f->alpha.value = -1);
    CASE(DP_ERR_RANGE, "baselines[1].iterations is 0", f->iters.value = 0);
    CASE(DP_ERR_RANGE, "baselines[1].lr is inf", f->ilfo_lr.value = INFINITY);
    CASE(DP_ERR_INVALID, "baselines[0] is random noise: it has no iterations or lr to set",
         f->bl[0].lr = &f->ilfo_lr);
    CASE(DP_ERR_RANGE, "measure.energy_window_s is 0.5, expected a finite number in [1, 3600]",
         f->window.value = 0.5f);
    CASE(DP_ERR_RANGE, "measure.repetitions is 0", f->ms.repetitions = &f->spare);
    CASE(DP_ERR_RANGE, "thresholds.exec_fraction is 1.5", f->exec.value = 1.5f);
    CASE(DP_ERR_RANGE, "thresholds.latency_ms is 0", f->th.latency_ms = &f->alpha);
}

Test(campaign_validate, regression)
{
    fixture_t f;
    fixture_init(&f);
    Dp__V1__Regression r = DP__V1__REGRESSION__INIT;
    Dp__V1__FloatValue tol = DP__V1__FLOAT_VALUE__INIT;
    r.baseline_report_uri = "s3://bucket/nightly-6/report/report.json";
    tol.value = 5;
    r.tolerance_pct = &tol;
    f.c.regression = &r;
    cr_assert_eq(campaign_validate(&f.c), DP_OK, "%s", dp_err_detail());
    r.tolerance_pct = NULL; /* the default */
    cr_assert_eq(campaign_validate(&f.c), DP_OK, "%s", dp_err_detail());
    r.baseline_report_uri = "";
    EXPECT_BAD(&f, DP_ERR_INVALID, "regression.baseline_report_uri is empty");
    r.baseline_report_uri = "http://x/report.json";
    EXPECT_BAD(&f, DP_ERR_INVALID, "regression.baseline_report_uri 'http://x/report.json' is not");
    r.baseline_report_uri = "file:///tmp/report.json";
    r.tolerance_pct = &tol;
    tol.value = NAN;
    EXPECT_BAD(&f, DP_ERR_RANGE, "regression.tolerance_pct is nan");
    tol.value = -1;
    EXPECT_BAD(&f, DP_ERR_RANGE, "regression.tolerance_pct is -1");
}

/* ------------------------------------------------------------- decode */

static uint8_t *pack(const Dp__V1__Campaign *c, size_t extra, size_t *len)
{
    *len = dp__v1__campaign__get_packed_size(c);
    uint8_t *b = malloc(*len + extra);
    cr_assert_not_null(b);
    cr_assert_eq(dp__v1__campaign__pack(c, b), *len);
    return b;
}

Test(campaign_decode, valid_invalid_and_unknown_fields)
{
    fixture_t f;
    fixture_init(&f);
    size_t len;
    uint8_t *b = pack(&f.c, 16, &len);
    Dp__V1__Campaign *c = NULL;
    cr_assert_eq(campaign_decode(b, len, "c.pb", &c), DP_OK, "%s", dp_err_detail());
    cr_assert_str_eq(c->models[1]->name, "sdn-resnet");
    campaign_free(&c);
    cr_assert_null(c);
    campaign_free(&c);
    /* field 99 (varint 1) at the top level */
    memcpy(b + len, "\x98\x06\x01", 3);
    cr_assert_eq(campaign_decode(b, len + 3, "c.pb", &c), DP_ERR_FORMAT);
    cr_assert_str_eq(dp_err_detail(),
                     "c.pb: campaign has a field unknown to this version (number 99)");
    cr_assert_null(c);
    /* a third model: name "z" and field 9 */
    memcpy(b + len, "\x12\x05\x0a\x01z\x48\x01", 7);
    cr_assert_eq(campaign_decode(b, len + 7, NULL, &c), DP_ERR_FORMAT);
    cr_assert_str_eq(dp_err_detail(), "<memory>: campaign: models[2] has a field unknown to this "
                                      "version (number 9)");
    /* a third model without the unknown field: decodes, and is invalid */
    memcpy(b + len, "\x12\x03\x0a\x01z", 5);
    cr_assert_eq(campaign_decode(b, len + 5, "c.pb", &c), DP_ERR_INVALID);
    cr_assert_str_eq(dp_err_detail(), "c.pb: campaign: models[2].family 0 is not a known model "
                                      "family");
    cr_assert_null(c);
    free(b);
    /* not a protobuf */
    static const uint8_t junk[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 'x'};
    cr_assert_eq(campaign_decode(junk, sizeof junk, "j.pb", &c), DP_ERR_FORMAT);
    cr_assert_str_eq(dp_err_detail(), "j.pb: not a dp.v1.Campaign protobuf");
}

/* The quickstart campaign (encoded by protoc at build time) is valid. */
Test(campaign_decode, quickstart)
{
    FILE *fp = fopen(DP_BINARY_DIR "/examples/quickstart.pb", "rb");
    cr_assert_not_null(fp);
    uint8_t buf[4096];
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    cr_assert(n > 0 && n < sizeof buf);
    Dp__V1__Campaign *c = NULL;
    cr_assert_eq(campaign_decode(buf, n, "quickstart.pb", &c), DP_OK, "%s", dp_err_detail());
    cr_assert_str_eq(c->name, "quickstart");
    campaign_free(&c);
}
