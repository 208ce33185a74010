/* The quickstart campaign, encoded by protoc at build time, decodes with
 * protobuf-c into the fields the text file states; garbage is rejected. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "dp/v1/campaign.pb-c.h"

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

Test(campaign, quickstart_decodes)
{
    size_t len;
    uint8_t *buf = slurp(DP_BINARY_DIR "/examples/quickstart.pb", &len);
    Dp__V1__Campaign *c = dp__v1__campaign__unpack(NULL, len, buf);
    cr_assert_not_null(c);
    cr_assert_str_eq(c->name, "quickstart");
    cr_assert_str_eq(c->store_uri, "file://./dp-store");
    cr_assert_eq(c->n_models, 2);
    cr_assert_eq(c->models[0]->family, DP__V1__MODEL_FAMILY__MODEL_FAMILY_SKIPNET);
    cr_assert_str_eq(c->models[1]->name, "sdn_resnet");
    cr_assert_eq(c->n_datasets, 1);
    cr_assert_eq(c->datasets[0]->format, DP__V1__DATASET_FORMAT__DATASET_FORMAT_IDX);
    cr_assert_eq(c->datasets[0]->test_range->end, 64);
    cr_assert_eq(c->datasets[0]->shard_size, 32);
    cr_assert_eq(c->n_budgets, 1);
    cr_assert_eq(c->budgets[0]->norm, DP__V1__NORM__NORM_LINF);
    cr_assert_eq(c->budgets[0]->n_eps, 2);
    cr_assert_float_eq(c->budgets[0]->eps[1], 0.09f, 1e-7);
    cr_assert_not_null(c->generator->width);
    cr_assert_eq(c->generator->width->value, 16);
    cr_assert_null(c->generator->alpha_gan, "absent wrapper must stay absent");
    cr_assert_eq(c->generator->seed, 1);
    cr_assert_eq(c->n_baselines, 2);
    cr_assert_eq(c->baselines[1]->method, DP__V1__BASELINE_METHOD__BASELINE_METHOD_ILFO);
    cr_assert_eq(c->baselines[1]->iterations->value, 300);
    cr_assert_eq(c->n_device_classes, 1);
    cr_assert_eq(c->device_classes[0]->probe, DP__V1__ENERGY_PROBE__ENERGY_PROBE_NONE);
    cr_assert_float_eq(c->thresholds->exec_fraction->value, 0.9f, 1e-7);
    dp__v1__campaign__free_unpacked(c, NULL);
    free(buf);
}

Test(campaign, garbage_is_rejected)
{
    uint8_t junk[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 'x'}; /* string longer than data */
    cr_assert_null(dp__v1__campaign__unpack(NULL, sizeof junk, junk));
}
