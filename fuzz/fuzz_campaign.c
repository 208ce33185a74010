/* libFuzzer target: Campaign messages, from bytes to what they mean
 * (campaign_decode: the protobuf-c decoder, then campaign_validate). In a fuzz
 * build both are instrumented: dp_proto holds the generated code and
 * protobuf-c's own runtime (fuzz/third_party/protobuf-c), dp_campaign the
 * validation. For any input:
 * - campaign_decode fails with DP_ERR_FORMAT when protobuf-c cannot unpack
 *   the bytes or they hold unknown fields, else with the validation's error,
 *   the detail naming the source; it leaves *out NULL;
 * - or it succeeds, and the campaign holds what a valid one must (checked
 *   here again, independently, for the core rules), validates again,
 *   re-encodes to exactly get_packed_size() bytes, and those decode again
 *   to a campaign that encodes to the same bytes. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "campaign/campaign.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) __builtin_trap();                                                                \
    } while (0)

static uint8_t *pack(const Dp__V1__Campaign *c, size_t *n)
{
    *n = dp__v1__campaign__get_packed_size(c);
    uint8_t *buf = malloc(*n ? *n : 1);
    CHECK(buf);
    CHECK(dp__v1__campaign__pack(c, buf) == *n);
    return buf;
}

static void check_names_unique(char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        CHECK(names[i][0] && strlen(names[i]) <= CAMPAIGN_NAME_MAX);
        for (size_t j = 0; j < i; j++) CHECK(strcmp(names[i], names[j]));
    }
}

/* What a valid campaign holds, restated without campaign.c's code. */
static void check_meaning(const Dp__V1__Campaign *c)
{
    CHECK(c->n_models >= 1 && c->n_datasets >= 1 && c->n_budgets >= 1);
    char *names[CAMPAIGN_MAX_LIST];
    CHECK(c->n_models <= CAMPAIGN_MAX_LIST && c->n_datasets <= CAMPAIGN_MAX_LIST);
    for (size_t i = 0; i < c->n_models; i++) {
        names[i] = c->models[i]->name;
        CHECK(c->models[i]->family != DP__V1__MODEL_FAMILY__MODEL_FAMILY_UNSPECIFIED);
    }
    check_names_unique(names, c->n_models);
    for (size_t i = 0; i < c->n_datasets; i++) {
        names[i] = c->datasets[i]->name;
        CHECK(c->datasets[i]->shard_size >= 1);
    }
    check_names_unique(names, c->n_datasets);
    for (size_t i = 0; i < c->n_budgets; i++) {
        const Dp__V1__Budget *b = c->budgets[i];
        CHECK(b->norm == DP__V1__NORM__NORM_LINF || b->norm == DP__V1__NORM__NORM_L2);
        CHECK(b->n_eps >= 1);
        for (size_t k = 0; k < b->n_eps; k++) CHECK(isfinite(b->eps[k]) && b->eps[k] > 0);
    }
    CHECK(!strncmp(c->store_uri, "file://", 7) || !strncmp(c->store_uri, "s3://", 5));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Dp__V1__Campaign *c = (Dp__V1__Campaign *)&size; /* must be reset */
    dp_err_t err = campaign_decode(data, size, "<fuzz>", &c);
    if (err) {
        CHECK(!c && !strncmp(dp_err_detail(), "<fuzz>: ", 8));
        Dp__V1__Campaign *raw = dp__v1__campaign__unpack(NULL, size, data);
        if (!raw)
            CHECK(err == DP_ERR_FORMAT && strstr(dp_err_detail(), "not a dp.v1.Campaign"));
        else if (err == DP_ERR_FORMAT)
            CHECK(strstr(dp_err_detail(), "unknown to this version"));
        else
            CHECK((err == DP_ERR_INVALID || err == DP_ERR_RANGE) &&
                  strstr(dp_err_detail(), "<fuzz>: campaign: ") && campaign_validate(raw) == err);
        if (raw) dp__v1__campaign__free_unpacked(raw, NULL);
        return 0;
    }
    CHECK(c);
    check_meaning(c);
    CHECK(campaign_validate(c) == DP_OK);
    size_t n, n2;
    uint8_t *buf = pack(c, &n);
    Dp__V1__Campaign *d = NULL;
    CHECK(campaign_decode(buf, n, "<again>", &d) == DP_OK);
    uint8_t *buf2 = pack(d, &n2);
    CHECK(n2 == n && !memcmp(buf, buf2, n));
    free(buf);
    free(buf2);
    campaign_free(&d);
    campaign_free(&c);
    CHECK(!c);
    return 0;
}
