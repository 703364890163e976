/* SPDX-License-Identifier: MIT */
/*
 * The daemon's two clocks. now_ns() (monotonic) drives every timer, window and
 * age; unix_ms() (wall clock) is only for what other hosts check against theirs:
 * sealed tokens and request timestamps, status lines.
 */
#ifndef R2P2D_CLOCK_H
#define R2P2D_CLOCK_H

#include <stdint.h>
#include <time.h>

#define NS_PER_MS 1000000ull
#define NS_PER_S 1000000000ull

/* now_ns returns CLOCK_MONOTONIC in nanoseconds. */
static inline uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* unix_ms returns CLOCK_REALTIME in milliseconds since the epoch. */
static inline uint64_t unix_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / NS_PER_MS;
}

#endif /* R2P2D_CLOCK_H */
