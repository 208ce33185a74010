/* Monotonic clock. */
#include "util/clock.h"

#include <time.h>

uint64_t dp_clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

double dp_clock_s(void) { return (double)dp_clock_ns() * 1e-9; }
