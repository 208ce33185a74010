/* libFuzzer target for the IDX memory decoder. The first byte says where
 * the input splits into the images and the labels buffer (as a fraction of
 * the rest), so both headers, both bodies, gzip or raw, get mutated. */
#include <stddef.h>
#include <stdint.h>

#include "data/dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    size_t rest = size - 1, cut = rest * data[0] / 255;
    const uint8_t *img = data + 1, *lbl = data + 1 + cut;
    dp_dataset_t *d = NULL;
    dp_err_t e = dp_dataset_decode_idx(img, cut, lbl, rest - cut, "fuzz", &d);
    if (e == DP_OK) {
        /* what the decoder promises: labels in range, pixels in [0, 1] */
        size_t px = (size_t)d->n * dp_dataset_sample_size(d);
        for (uint32_t i = 0; i < d->n; i++)
            if (d->labels[i] < 0 || (uint32_t)d->labels[i] >= d->num_classes) __builtin_trap();
        for (size_t i = 0; i < px; i++)
            if (!(d->images[i] >= 0.0f && d->images[i] <= 1.0f)) __builtin_trap();
    } else if (d) {
        __builtin_trap(); /* *out stays NULL on failure */
    }
    dp_dataset_destroy(&d);
    return 0;
}
