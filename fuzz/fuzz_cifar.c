/* libFuzzer target for the CIFAR memory decoder. The first byte's low bit
 * picks CIFAR-10 or CIFAR-100; the rest is one batch. Then a shard split and
 * a view of every shard, driven by the decoded size. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "data/dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int cifar100 = data[0] & 1;
    dp_dataset_t *d = NULL;
    if (dp_dataset_decode_cifar(data + 1, size - 1, cifar100, "fuzz", &d) != DP_OK) {
        if (d) __builtin_trap();
        return 0;
    }
    for (uint32_t i = 0; i < d->n; i++)
        if (d->labels[i] < 0 || (uint32_t)d->labels[i] >= d->num_classes) __builtin_trap();
    dp_shard_t *s = NULL;
    size_t k = 0;
    uint32_t shard = 1 + (data[0] >> 1);
    if (dp_shard_split(0, d->n, shard, &s, &k) == DP_OK) {
        uint32_t covered = 0;
        for (size_t i = 0; i < k; i++) {
            dp_dataset_view_t v;
            if (dp_dataset_view(d, s[i], &v) != DP_OK || v.begin != covered) __builtin_trap();
            covered += v.count;
        }
        if (covered != d->n) __builtin_trap();
        free(s);
    }
    dp_dataset_destroy(&d);
    return 0;
}
