/*
 * lib/clock.h - the two clocks the agent reads.  Cores never call these:
 * they are handed the time (see gossip/gossip.h).
 */
#ifndef MERIDIAN_LIB_CLOCK_H
#define MERIDIAN_LIB_CLOCK_H

#include <stdint.h>

/* Monotonic milliseconds (CLOCK_MONOTONIC), for timeouts and intervals. */
uint64_t clock_mono_ms(void);
/* Monotonic microseconds, for latency measurements. */
uint64_t clock_mono_us(void);
/* Wall-clock milliseconds since the Unix epoch, for timestamps that
 * cross machines (seal timestamps, "since" fields). */
uint64_t clock_wall_ms(void);
/* Formats wall time @ms as RFC 3339 UTC with milliseconds into @out
 * (at least 25 bytes): "2026-11-21T22:14:16.123Z". */
void clock_format_rfc3339(uint64_t ms, char *out, unsigned long outlen);

#endif
