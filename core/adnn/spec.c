/* Architectures: family names, the zoo's defaults for 1x28x28 inputs,
 * validation, and conversion to and from the dp.v1.ModelSpec protobuf. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "adnn/adnn.h"
#include "dp/v1/model.pb-c.h"

static const char *const family_names[] = {"?",          "skipnet",       "blockdrop",
                                           "sdn-resnet", "sdn-mobilenet", "ranet"};

const char *adnn_family_name(adnn_family_t f)
{
    if ((int)f < 1 || (int)f > ADNN_FAMILY_RANET) return "?";
    return family_names[f];
}

adnn_family_t adnn_family_parse(const char *s)
{
    for (int f = 1; f <= ADNN_FAMILY_RANET; f++)
        if (strcmp(s, family_names[f]) == 0) return (adnn_family_t)f;
    return ADNN_FAMILY_UNSPECIFIED;
}

dp_err_t adnn_spec_default(adnn_family_t f, adnn_spec_t *s)
{
    memset(s, 0, sizeof *s);
    s->family = f;
    s->c = 1;
    s->h = 28;
    s->w = 28;
    s->num_classes = 10;
    s->gate_threshold = 0.5f;
    s->gate_dim = 10;
    switch (f) {
    case ADNN_FAMILY_SDN_RESNET:
        /* A 28x28 stem, then 3 stages of 2 basic blocks at 14, 7, 4 pixels; an internal
         * classifier after each of the first 5 blocks (about 1/6 .. 5/6 of the
         * backbone's compute), the final classifier after block 6. */
        s->stem_width = 16;
        s->nstages = 3;
        s->widths[0] = 16, s->widths[1] = 32, s->widths[2] = 64;
        s->blocks[0] = 2, s->blocks[1] = 2, s->blocks[2] = 2;
        s->strides[0] = 2, s->strides[1] = 2, s->strides[2] = 2;
        s->nexits = 5;
        for (int k = 0; k < 5; k++) s->exit_after[k] = k;
        s->exit_tau = 0.9f;
        s->exit_pool = 4;
        /* SDN weights each internal classifier by its depth fraction. */
        for (int k = 0; k < 5; k++) s->exit_weights[k] = (float)(k + 1) / 6.0f;
        s->exit_weights[5] = 1.0f;
        snprintf(s->name, sizeof s->name, "sdn_resnet_fmnist");
        return DP_OK;
    case ADNN_FAMILY_SDN_MOBILENET:
        /* A 28x28 stem, then 3 stages of depthwise-separable blocks (2, 3, 2) at 14, 7,
         * 4 pixels; an internal classifier after each of the first 6 blocks (about
         * 16/33/41/56/72/81% of the exact backbone compute), the final one after block 7. */
        s->stem_width = 16;
        s->nstages = 3;
        s->widths[0] = 32, s->widths[1] = 64, s->widths[2] = 128;
        s->blocks[0] = 2, s->blocks[1] = 3, s->blocks[2] = 2;
        s->strides[0] = 2, s->strides[1] = 2, s->strides[2] = 2;
        s->nexits = 6;
        for (int k = 0; k < 6; k++) s->exit_after[k] = k;
        s->exit_tau = 0.9f;
        s->exit_pool = 4;
        for (int k = 0; k < 6; k++) s->exit_weights[k] = (float)(k + 1) / 7.0f;
        s->exit_weights[6] = 1.0f;
        snprintf(s->name, sizeof s->name, "sdn_mobilenet_fmnist");
        return DP_OK;
    case ADNN_FAMILY_SKIPNET:
        /* The SDN-ResNet backbone without exits (6 gated blocks) and a recurrent gate
         * (GAP, 1x1 conv to 10, LSTM(10,10) shared by the gates, linear, sigmoid). */
        s->stem_width = 16;
        s->nstages = 3;
        s->widths[0] = 16, s->widths[1] = 32, s->widths[2] = 64;
        s->blocks[0] = 2, s->blocks[1] = 2, s->blocks[2] = 2;
        s->strides[0] = 2, s->strides[1] = 2, s->strides[2] = 2;
        s->gate_kind = ADNN_GATE_RECURRENT;
        s->exit_weights[0] = 1.0f;
        snprintf(s->name, sizeof s->name, "skipnet_fmnist");
        return DP_OK;
    case ADNN_FAMILY_BLOCKDROP:
        /* The SDN-ResNet backbone without exits (6 droppable blocks) and a policy
         * network of width 8 (conv s2, two basic blocks s2 at 16, 32 channels). */
        s->stem_width = 16;
        s->nstages = 3;
        s->widths[0] = 16, s->widths[1] = 32, s->widths[2] = 64;
        s->blocks[0] = 2, s->blocks[1] = 2, s->blocks[2] = 2;
        s->strides[0] = 2, s->strides[1] = 2, s->strides[2] = 2;
        s->exit_weights[0] = 1.0f;
        s->policy_width = 8;
        snprintf(s->name, sizeof s->name, "blockdrop_fmnist");
        return DP_OK;
    case ADNN_FAMILY_RANET:
        /* 3 scales (14, 7, 4 pixels after a stride-2 cascade of base convs, 16 channels
         * each); flows of 2 dense layers, coarsest first, growth 16, 16, 8; an exit
         * after every block but the last (the final classifier's). */
        s->stem_width = 16;
        s->nstages = s->scales = 3;
        s->widths[0] = 16, s->widths[1] = 16, s->widths[2] = 8;
        s->blocks[0] = 2, s->blocks[1] = 2, s->blocks[2] = 2;
        s->strides[0] = 2, s->strides[1] = 2, s->strides[2] = 2;
        s->nexits = 5;
        for (int k = 0; k < 5; k++) s->exit_after[k] = k;
        s->exit_tau = 0.9f;
        s->exit_pool = 4; /* unused by RANet's heads */
        for (int k = 0; k <= 5; k++) s->exit_weights[k] = 1.0f;
        snprintf(s->name, sizeof s->name, "ranet_fmnist");
        return DP_OK;
    default:
        return dp_err_set(DP_ERR_UNSUPPORTED, "model family '%s' is not implemented yet",
                          adnn_family_name(f));
    }
}

static int total_blocks(const adnn_spec_t *s)
{
    int n = 0;
    for (int i = 0; i < s->nstages; i++) n += s->blocks[i];
    return n;
}

dp_err_t adnn_spec_validate(const adnn_spec_t *s)
{
    if ((int)s->family < 1 || (int)s->family > ADNN_FAMILY_RANET)
        return dp_err_set(DP_ERR_INVALID, "spec: family %d is not a known model family",
                          (int)s->family);
    if (s->c < 1 || s->c > 64 || s->h < 4 || s->h > 1024 || s->w < 4 || s->w > 1024)
        return dp_err_set(DP_ERR_RANGE, "spec: input shape %dx%dx%d out of range", s->c, s->h,
                          s->w);
    if (s->num_classes < 2 || s->num_classes > 1000)
        return dp_err_set(DP_ERR_RANGE, "spec: num_classes %d out of range [2, 1000]",
                          s->num_classes);
    if (s->nstages < 1 || s->nstages > ADNN_MAX_STAGES)
        return dp_err_set(DP_ERR_RANGE, "spec: %d stages, expected 1..%d", s->nstages,
                          ADNN_MAX_STAGES);
    if (s->stem_width < 1 || s->stem_width > 1024)
        return dp_err_set(DP_ERR_RANGE, "spec: stem_width %d out of range", s->stem_width);
    for (int i = 0; i < s->nstages; i++) {
        if (s->widths[i] < 1 || s->widths[i] > 1024)
            return dp_err_set(DP_ERR_RANGE, "spec: widths[%d] = %d out of range [1, 1024]", i,
                              s->widths[i]);
        if (s->blocks[i] < 1 || s->blocks[i] > ADNN_MAX_BLOCKS)
            return dp_err_set(DP_ERR_RANGE, "spec: blocks[%d] = %d out of range [1, %d]", i,
                              s->blocks[i], ADNN_MAX_BLOCKS);
        if (s->strides[i] < 1 || s->strides[i] > 2)
            return dp_err_set(DP_ERR_RANGE, "spec: strides[%d] = %d, expected 1 or 2", i,
                              s->strides[i]);
    }
    int nb = total_blocks(s);
    if (nb > ADNN_MAX_BLOCKS)
        return dp_err_set(DP_ERR_RANGE, "spec: %d blocks in all, at most %d", nb, ADNN_MAX_BLOCKS);
    int hh = s->h, ww = s->w;
    for (int i = 0; i < s->nstages; i++)
        hh = (hh + s->strides[i] - 1) / s->strides[i],
        ww = (ww + s->strides[i] - 1) / s->strides[i];
    if (hh < 1 || ww < 1) return dp_err_set(DP_ERR_RANGE, "spec: strides shrink the input to 0");
    if (s->nexits < 0 || s->nexits > ADNN_MAX_EXITS)
        return dp_err_set(DP_ERR_RANGE, "spec: %d exits, at most %d", s->nexits, ADNN_MAX_EXITS);
    for (int k = 0; k < s->nexits; k++) {
        if (s->exit_after[k] < 0 || s->exit_after[k] >= nb - 1)
            return dp_err_set(DP_ERR_RANGE,
                              "spec: exit_after[%d] = %d, expected a block index in [0, %d)", k,
                              s->exit_after[k], nb - 1);
        if (k > 0 && s->exit_after[k] <= s->exit_after[k - 1])
            return dp_err_set(DP_ERR_INVALID, "spec: exit_after must increase (index %d)", k);
    }
    if (s->family == ADNN_FAMILY_SDN_RESNET || s->family == ADNN_FAMILY_SDN_MOBILENET ||
        s->family == ADNN_FAMILY_RANET) {
        if (!(s->exit_tau > 0.0f && s->exit_tau <= 1.0f))
            return dp_err_set(DP_ERR_RANGE, "spec: exit_tau %g outside (0, 1]", s->exit_tau);
        if (s->exit_pool < 1 || s->exit_pool > 16)
            return dp_err_set(DP_ERR_RANGE, "spec: exit_pool %d out of range [1, 16]",
                              s->exit_pool);
    }
    if (s->family == ADNN_FAMILY_SKIPNET) {
        /* a ModelSpec gate_dim above 2^31 decodes to -1: it crashed adnn_model_new */
        if ((int)s->gate_kind < ADNN_GATE_UNSPECIFIED || (int)s->gate_kind > ADNN_GATE_FEEDFORWARD)
            return dp_err_set(DP_ERR_INVALID, "spec: gate_kind %d is not a known gate kind",
                              (int)s->gate_kind);
        if (s->gate_dim < 1 || s->gate_dim > 1024)
            return dp_err_set(DP_ERR_RANGE, "spec: gate_dim %d out of range [1, 1024]",
                              s->gate_dim);
    }
    for (int k = 0; k <= s->nexits; k++)
        if (!(s->exit_weights[k] >= 0.0f && s->exit_weights[k] <= 100.0f))
            return dp_err_set(DP_ERR_RANGE, "spec: exit_weights[%d] = %g out of range", k,
                              s->exit_weights[k]);
    return DP_OK;
}

dp_err_t adnn_spec_encode(const adnn_spec_t *s, uint8_t **buf, size_t *len)
{
    Dp__V1__ModelSpec pb = DP__V1__MODEL_SPEC__INIT;
    Dp__V1__InputShape in = DP__V1__INPUT_SHAPE__INIT;
    uint32_t widths[ADNN_MAX_STAGES], blocks[ADNN_MAX_STAGES], strides[ADNN_MAX_STAGES];
    uint32_t after[ADNN_MAX_EXITS];
    float weights[ADNN_MAX_EXITS + 1];
    in.c = (uint32_t)s->c, in.h = (uint32_t)s->h, in.w = (uint32_t)s->w;
    pb.family = (Dp__V1__ModelFamily)s->family;
    pb.input = &in;
    pb.num_classes = (uint32_t)s->num_classes;
    pb.stem_width = (uint32_t)s->stem_width;
    for (int i = 0; i < s->nstages; i++) {
        widths[i] = (uint32_t)s->widths[i];
        blocks[i] = (uint32_t)s->blocks[i];
        strides[i] = (uint32_t)s->strides[i];
    }
    pb.n_widths = pb.n_blocks = pb.n_strides = (size_t)s->nstages;
    pb.widths = widths, pb.blocks = blocks, pb.strides = strides;
    pb.gate_kind = (Dp__V1__GateKind)s->gate_kind;
    pb.gate_dim = (uint32_t)s->gate_dim;
    for (int k = 0; k < s->nexits; k++) after[k] = (uint32_t)s->exit_after[k];
    pb.n_exit_after = (size_t)s->nexits;
    pb.exit_after = after;
    pb.exit_tau = s->exit_tau;
    pb.exit_pool = (uint32_t)s->exit_pool;
    pb.gate_threshold = s->gate_threshold;
    pb.policy_width = (uint32_t)s->policy_width;
    pb.scales = (uint32_t)s->scales;
    for (int k = 0; k <= s->nexits; k++) weights[k] = s->exit_weights[k];
    pb.n_exit_weights = (size_t)s->nexits + 1;
    pb.exit_weights = weights;
    pb.name = (char *)s->name;
    pb.seed = s->seed;
    *len = dp__v1__model_spec__get_packed_size(&pb);
    *buf = malloc(*len ? *len : 1);
    if (!*buf) return dp_err_set(DP_ERR_NOMEM, "out of memory encoding a ModelSpec");
    dp__v1__model_spec__pack(&pb, *buf);
    return DP_OK;
}

dp_err_t adnn_spec_decode(const uint8_t *buf, size_t len, const char *what, adnn_spec_t *s)
{
    if (!what) what = "<memory>";
    memset(s, 0, sizeof *s);
    Dp__V1__ModelSpec *pb = dp__v1__model_spec__unpack(NULL, len, buf);
    if (!pb) return dp_err_set(DP_ERR_FORMAT, "%s: not a dp.v1.ModelSpec protobuf", what);
    dp_err_t err = DP_OK;
    if (!pb->input) {
        err = dp_err_set(DP_ERR_FORMAT, "%s: ModelSpec has no input shape", what);
        goto done;
    }
    if (pb->n_widths != pb->n_blocks || pb->n_widths < 1 || pb->n_widths > ADNN_MAX_STAGES) {
        err = dp_err_set(DP_ERR_FORMAT,
                         "%s: ModelSpec has %zu widths and %zu blocks, expected 1..%d of each",
                         what, pb->n_widths, pb->n_blocks, ADNN_MAX_STAGES);
        goto done;
    }
    if (pb->n_strides != 0 && pb->n_strides != pb->n_widths) {
        err = dp_err_set(DP_ERR_FORMAT, "%s: ModelSpec has %zu strides for %zu stages", what,
                         pb->n_strides, pb->n_widths);
        goto done;
    }
    if (pb->n_exit_after > ADNN_MAX_EXITS ||
        (pb->n_exit_weights != 0 && pb->n_exit_weights != pb->n_exit_after + 1)) {
        err = dp_err_set(DP_ERR_FORMAT, "%s: ModelSpec has %zu exits and %zu exit weights", what,
                         pb->n_exit_after, pb->n_exit_weights);
        goto done;
    }
#define CLAMP_INT(v) ((v) > 0x7fffffffu ? -1 : (int)(v))
    s->family = (adnn_family_t)pb->family;
    s->c = CLAMP_INT(pb->input->c), s->h = CLAMP_INT(pb->input->h), s->w = CLAMP_INT(pb->input->w);
    s->num_classes = CLAMP_INT(pb->num_classes);
    s->nstages = (int)pb->n_widths;
    for (int i = 0; i < s->nstages; i++) {
        s->widths[i] = CLAMP_INT(pb->widths[i]);
        s->blocks[i] = CLAMP_INT(pb->blocks[i]);
        s->strides[i] = pb->n_strides ? CLAMP_INT(pb->strides[i]) : (i == 0 ? 1 : 2);
    }
    s->stem_width = pb->stem_width ? CLAMP_INT(pb->stem_width) : s->widths[0];
    s->gate_kind = (adnn_gate_kind_t)pb->gate_kind;
    s->gate_dim = pb->gate_dim ? CLAMP_INT(pb->gate_dim) : 10;
    s->nexits = (int)pb->n_exit_after;
    for (int k = 0; k < s->nexits; k++) s->exit_after[k] = CLAMP_INT(pb->exit_after[k]);
    /* -0 as +0: proto3 does not write a zero, so -0 would not survive a
     * round trip */
    s->exit_tau = pb->exit_tau == 0.0f ? 0.0f : pb->exit_tau;
    s->exit_pool = pb->exit_pool ? CLAMP_INT(pb->exit_pool) : 4;
    s->gate_threshold = pb->gate_threshold != 0.0f ? pb->gate_threshold : 0.5f;
    s->policy_width = CLAMP_INT(pb->policy_width);
    s->scales = CLAMP_INT(pb->scales);
    for (int k = 0; k <= s->nexits; k++)
        s->exit_weights[k] = pb->n_exit_weights ? pb->exit_weights[k] : 1.0f;
    snprintf(s->name, sizeof s->name, "%s", pb->name ? pb->name : "");
    s->seed = pb->seed;
#undef CLAMP_INT
    err = adnn_spec_validate(s);
    if (err) {
        char detail[512];
        snprintf(detail, sizeof detail, "%s", dp_err_detail());
        err = dp_err_set(err, "%s: %s", what, detail);
    }
done:
    dp__v1__model_spec__free_unpacked(pb, NULL);
    return err;
}

dp_err_t adnn_spec_read(const char *path, adnn_spec_t *out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return dp_err_set(errno == ENOENT ? DP_ERR_NOTFOUND : DP_ERR_IO, "%s: %s", path,
                          strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return dp_err_set(DP_ERR_IO, "%s: not a regular file", path);
    }
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    dp_err_t err = DP_OK;
    for (;;) {
        if (len == cap) {
            if (cap >= ((size_t)1 << 20)) {
                err = dp_err_set(DP_ERR_RANGE, "%s: larger than 1 MiB, not a ModelSpec", path);
                break;
            }
            cap = cap ? 2 * cap : 4096;
            uint8_t *nb = realloc(buf, cap);
            if (!nb) {
                err = dp_err_set(DP_ERR_NOMEM, "%s: out of memory", path);
                break;
            }
            buf = nb;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0) {
            if (ferror(f)) err = dp_err_set(DP_ERR_IO, "%s: read error", path);
            break;
        }
    }
    fclose(f);
    if (!err) err = adnn_spec_decode(buf, len, path, out);
    free(buf);
    return err;
}

dp_err_t adnn_spec_write(const adnn_spec_t *s, const char *path)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    dp_err_t err = adnn_spec_encode(s, &buf, &len);
    if (err) return err;
    FILE *f = fopen(path, "wb");
    if (!f) {
        err = dp_err_set(DP_ERR_IO, "%s: %s", path, strerror(errno));
    } else {
        if (fwrite(buf, 1, len, f) != len) err = dp_err_set(DP_ERR_IO, "%s: write failed", path);
        if (fclose(f) != 0 && !err) err = dp_err_set(DP_ERR_IO, "%s: close failed", path);
    }
    free(buf);
    return err;
}
