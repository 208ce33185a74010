/* Campaigns (proto/dp/v1/campaign.proto): from bytes to a campaign that means
 * something. protobuf-c only checks the wire format: a decoded Campaign may
 * have no models, a model named "" or named twice, an enum value no one
 * knows, eps NaN or 0, a URI with no scheme. campaign_validate says whether
 * it can be run; its errors name the field ("campaign: models[1].name 'a' is
 * also models[0]'s").
 *
 * What it checks:
 * - names (campaign, models, datasets, device classes): 1..63 bytes of
 *   [A-Za-z0-9._-], the first a letter or digit (they become store keys and
 *   fill 64-byte fields), unique within their list;
 * - enums: a known value, not UNSPECIFIED (model family, dataset format,
 *   norm, baseline method, energy probe);
 * - URIs: file://PATH or s3://BUCKET[/KEY], PATH and BUCKET not empty, no
 *   control characters or spaces; IDX datasets need all four files, CIFAR
 *   ones the two image files and no label files (the batches hold labels);
 * - ranges: begin < end (end 0: "to the end"), shard_size in [1, 2^24];
 * - budgets: a known norm, 1..64 eps each, every eps finite in [1e-9, 1e6]
 *   as the float it is (the generator files' bounds), no eps twice under the
 *   same norm and mode; l2_exact only on L2 budgets;
 * - generator settings, baselines, measuring and thresholds: within the
 *   bounds dp-perform's flags allow (width 8..256, batch 2..4096, lr in
 *   [1e-9, 1], ...), finite; one baseline per method, iterations and lr only
 *   where the method has them;
 * - at least one model, dataset and budget, and a store URI; at most
 *   CAMPAIGN_MAX_LIST entries in any list. */
#ifndef DP_CAMPAIGN_CAMPAIGN_H
#define DP_CAMPAIGN_CAMPAIGN_H

#include <stddef.h>
#include <stdint.h>

#include "dp/v1/campaign.pb-c.h"
#include "util/err.h"

#define CAMPAIGN_NAME_MAX  63 /* bytes of a name */
#define CAMPAIGN_MAX_LIST  256
#define CAMPAIGN_MAX_EPS   64
#define CAMPAIGN_SHARD_MAX (1u << 24)

/* DP_OK when c is a campaign that can be run (the rules above), else
 * DP_ERR_INVALID (a missing, unknown, duplicate or malformed value) or
 * DP_ERR_RANGE (a number outside its bounds) with a detail "campaign: FIELD
 * ...". c is borrowed. */
dp_err_t campaign_validate(const Dp__V1__Campaign *c);

/* Unpacks len bytes of a dp.v1.Campaign and validates it. On success *out is
 * a new message, caller frees it with campaign_free. DP_ERR_FORMAT when the
 * bytes are not a Campaign or hold fields this version does not know
 * (protobuf-c keeps those, and cannot always encode them back), else
 * campaign_validate's errors; the detail starts with what (a file name, or
 * NULL for "<memory>"). */
dp_err_t campaign_decode(const uint8_t *buf, size_t len, const char *what, Dp__V1__Campaign **out);

/* Frees a campaign from campaign_decode; accepts NULL and sets *c = NULL. */
void campaign_free(Dp__V1__Campaign **c);

#endif
