/* A campaign's tasks: a pure function of the campaign and its id, so the
 * journal keeps only the campaign and a restarted coordinator plans the same
 * tasks again.
 *
 * For the first dataset's seeds [test_range.begin, test_range.end) in shards
 * of shard_size (default 250), per model m and budget b (every eps of every
 * Budget, in order):
 *   TRAIN(m, b)                       the generator
 *   BASELINE(m, b, method, shard)     each baseline (DeepSloth only on the
 *                                     early-exit families: SDN, RANet)
 *   GENERATE(m, b, shard)             after TRAIN(m, b)
 *   MEASURE(class, m, seeds, shard)   per device class, the clean seeds
 *   MEASURE(class, m, b, method, shard)  after the GENERATE or BASELINE of
 *                                     that shard; only the shards holding
 *                                     the class's first `samples` seeds
 *   REPORT                            after every other task has ended
 *
 * Task ids and store keys (relative to the campaign's store URI) are
 * deterministic, so a retried task overwrites the same objects:
 *   id   CID/train/M/N-EPS             key CID/M/N-EPS/deepperform/generator
 *   id   CID/generate/M/N-EPS/sK       key CID/M/N-EPS/deepperform/sK
 *   id   CID/baseline/M/N-EPS/METHOD/sK key CID/M/N-EPS/METHOD/sK
 *   id   CID/measure/CLASS/M/N-EPS/METHOD/sK (seeds: CID/measure/CLASS/M/seeds/sK)
 *                                      key <the measured inputs' key>/measure-CLASS
 *   id   CID/report                    key CID/report
 * N is linf, l2 (at most eps) or l2x (exactly eps); EPS is %g of the float. */
#ifndef DP_COORDINATOR_PLAN_H
#define DP_COORDINATOR_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "dp/v1/campaign.pb-c.h"
#include "dp/v1/wire.pb-c.h"
#include "util/err.h"

#define DP_PLAN_NONE          UINT32_MAX
#define DP_PLAN_SHARD_DEFAULT 250u
#define DP_PLAN_ID_MAX        512 /* bytes of a task id or key, NUL included */
#define DP_PLAN_ATTEMPTS      3u  /* attempts of a task before its cell fails */
#define DP_PLAN_MAX_TASKS     (1u << 24)

typedef struct dp_plan_task {
    Dp__V1__TaskKind kind;
    Dp__V1__Method method; /* GENERATE: DEEPPERFORM; MEASURE: the inputs' */
    uint32_t model;        /* index in campaign->models */
    uint32_t budget;       /* index in the flattened budget list, or DP_PLAN_NONE */
    uint32_t shard;        /* shard index, or DP_PLAN_NONE */
    uint32_t device;       /* device class index (MEASURE), or DP_PLAN_NONE */
} dp_plan_task_t;

/* One eps of one Budget. */
typedef struct dp_plan_budget {
    Dp__V1__Norm norm;
    float eps;
    int l2_exact;
} dp_plan_budget_t;

/* The flattened budgets of c: count, and the i-th. */
uint32_t dp_plan_budgets(const Dp__V1__Campaign *c);
dp_plan_budget_t dp_plan_budget_at(const Dp__V1__Campaign *c, uint32_t i);

/* Seeds [*begin, *end) of shard s, and the number of shards. */
uint32_t dp_plan_shards(const Dp__V1__Campaign *c);
void dp_plan_shard_range(const Dp__V1__Campaign *c, uint32_t s, uint32_t *begin, uint32_t *end);

/* Checks what planning needs beyond campaign_validate (exactly one dataset,
 * a test range with an end, at most DP_PLAN_MAX_TASKS tasks), then counts
 * the tasks. DP_ERR_INVALID / DP_ERR_RANGE with a detail naming the field. */
dp_err_t dp_plan_count(const Dp__V1__Campaign *c, uint32_t *ntasks);

/* Calls fn for every task of c in plan order (the order above); stops at the
 * first nonzero return and returns it. */
typedef int (*dp_plan_fn)(void *ctx, const dp_plan_task_t *t);
int dp_plan_each(const Dp__V1__Campaign *c, dp_plan_fn fn, void *ctx);

/* The tasks t waits for, written to deps (at most 1 except REPORT, which
 * waits for every other task and is not listed here: the scheduler counts
 * them). Returns the count. */
int dp_plan_deps(const Dp__V1__Campaign *c, const dp_plan_task_t *t, dp_plan_task_t *dep);

/* Task id and store key prefix of t under campaign id cid; 0, or -1 if they
 * do not fit in DP_PLAN_ID_MAX. */
int dp_plan_task_id(const Dp__V1__Campaign *c, const char *cid, const dp_plan_task_t *t, char *buf,
                    size_t size);
int dp_plan_task_key(const Dp__V1__Campaign *c, const char *cid, const dp_plan_task_t *t, char *buf,
                     size_t size);

/* Strings a filled Task points into, owned by the caller's stack. */
typedef struct dp_plan_strings {
    char id[DP_PLAN_ID_MAX], campaign[DP_PLAN_ID_MAX], prefix[DP_PLAN_ID_MAX];
    char inputs[2][DP_PLAN_ID_MAX], dep[DP_PLAN_ID_MAX], resume[DP_PLAN_ID_MAX];
    char *input_ptrs[2], *dep_ptrs[1];
} dp_plan_strings_t;

/* Fills out (initialised here) with the self-contained Task for t: settings
 * copied by pointer from c (borrowed: valid while c is), strings in *st.
 * attempt and max_attempts are left for the caller. */
void dp_plan_fill(const Dp__V1__Campaign *c, const char *cid, const dp_plan_task_t *t,
                  Dp__V1__Task *out, dp_plan_strings_t *st);

/* "linf" / "l2" / "l2x"; the method's key word ("seeds", "deepperform", ...). */
const char *dp_plan_norm_word(const dp_plan_budget_t *b);
const char *dp_plan_method_word(Dp__V1__Method m);

#endif
