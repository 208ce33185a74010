/* A seeded, reproducible RNG (xoshiro256** seeded through splitmix64): the same
 * seed gives the same stream on every machine. Not for cryptography. */
#ifndef DP_UTIL_RNG_H
#define DP_UTIL_RNG_H

#include <stdint.h>

typedef struct dp_rng {
    uint64_t s[4];
} dp_rng_t;

void dp_rng_seed(dp_rng_t *r, uint64_t seed);
uint64_t dp_rng_u64(dp_rng_t *r);
/* Uniform in [0, 1) with 24 random bits. */
float dp_rng_uniform(dp_rng_t *r);
/* Uniform integer in [0, n); n > 0. */
uint32_t dp_rng_below(dp_rng_t *r, uint32_t n);
/* Standard normal (Box-Muller). */
float dp_rng_normal(dp_rng_t *r);
/* Fisher-Yates shuffle of idx[0..n). */
void dp_rng_shuffle(dp_rng_t *r, uint32_t *idx, uint32_t n);

#endif
