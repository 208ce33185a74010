/* libFuzzer target for the ModelSpec decoder (adnn_spec_decode, core/adnn).
 * Whatever the input, it fails cleanly with a detail naming the input, or
 * returns a spec that passes adnn_spec_validate, re-encodes, and decodes
 * again to the very same spec (floats compared bit for bit). A small
 * accepted spec (up to 32x32 inputs, widths 32) must also build a model or
 * fail cleanly: an accepted file must never crash the program that uses it. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "adnn/adnn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) __builtin_trap();                                                                \
    } while (0)

#define SAME(field) CHECK(!memcmp(&a->field, &b->field, sizeof a->field))

static void check_same(const adnn_spec_t *a, const adnn_spec_t *b)
{
    SAME(family);
    SAME(c);
    SAME(h);
    SAME(w);
    SAME(num_classes);
    SAME(stem_width);
    SAME(nstages);
    for (int i = 0; i < a->nstages; i++) {
        SAME(widths[i]);
        SAME(blocks[i]);
        SAME(strides[i]);
    }
    SAME(gate_kind);
    SAME(gate_dim);
    SAME(nexits);
    for (int k = 0; k < a->nexits; k++) SAME(exit_after[k]);
    SAME(exit_tau);
    SAME(exit_pool);
    SAME(gate_threshold);
    for (int k = 0; k <= a->nexits; k++) SAME(exit_weights[k]);
    SAME(policy_width);
    SAME(scales);
    CHECK(!strcmp(a->name, b->name));
    SAME(seed);
}

/* Cheap enough to build on every input (a few ms at most). */
static int cheap(const adnn_spec_t *s)
{
    if (s->c > 3 || s->h > 32 || s->w > 32 || s->stem_width > 32 || s->num_classes > 16 ||
        s->gate_dim > 32 || s->policy_width > 16)
        return 0;
    for (int i = 0; i < s->nstages; i++)
        if (s->widths[i] > 32) return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    adnn_spec_t s, t;
    dp_err_t err = adnn_spec_decode(data, size, "fuzz.pb", &s);
    if (err) {
        CHECK(!strncmp(dp_err_detail(), "fuzz.pb: ", 9));
        return 0;
    }
    CHECK(adnn_spec_validate(&s) == DP_OK);
    CHECK(memchr(s.name, '\0', sizeof s.name));
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK(adnn_spec_encode(&s, &buf, &len) == DP_OK);
    CHECK(adnn_spec_decode(buf, len, "again.pb", &t) == DP_OK);
    check_same(&s, &t);
    free(buf);
    if (cheap(&s)) {
        adnn_model_t *m = NULL;
        if (adnn_model_new(&s, 1, &m) == DP_OK) {
            CHECK(m);
            adnn_model_destroy(&m);
        } else {
            CHECK(!m && *dp_err_detail());
        }
    }
    return 0;
}
