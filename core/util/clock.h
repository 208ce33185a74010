/* Monotonic clock. */
#ifndef DP_UTIL_CLOCK_H
#define DP_UTIL_CLOCK_H

#include <stdint.h>

/* Nanoseconds from CLOCK_MONOTONIC. */
uint64_t dp_clock_ns(void);
/* Seconds from CLOCK_MONOTONIC, as a double. */
double dp_clock_s(void);

#endif
