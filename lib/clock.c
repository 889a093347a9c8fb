/*
 * lib/clock.c - monotonic and wall clocks for the agent (see clock.h).
 */
#include "lib/clock.h"

#include <stdio.h>
#include <time.h>

static uint64_t clock_read_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t clock_mono_ms(void)
{
	return clock_read_ns(CLOCK_MONOTONIC) / 1000000ull;
}

uint64_t clock_mono_us(void)
{
	return clock_read_ns(CLOCK_MONOTONIC) / 1000ull;
}

uint64_t clock_wall_ms(void)
{
	return clock_read_ns(CLOCK_REALTIME) / 1000000ull;
}

void clock_format_rfc3339(uint64_t ms, char *out, unsigned long outlen)
{
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&secs, &tm);
	snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 (unsigned)(ms % 1000));
}
