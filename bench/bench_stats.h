/*
 * bench/bench_stats.h - the timing and latency figures of the benchmark
 * clients (bench_pg_client, bench_rpc_client), computed the same way by
 * both so that their lines compare: a monotonic clock in seconds, and
 * nearest-rank percentiles (the median of an even count is the lower of
 * the two middle values).
 *
 * Header-only (static inline).
 */
#ifndef MERIDIAN_BENCH_STATS_H
#define MERIDIAN_BENCH_STATS_H

#include <stddef.h>
#include <stdlib.h>
#include <time.h>

/* CLOCK_MONOTONIC, in seconds. */
static inline double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Sorts @v ascending, for bench_pct(). */
static inline void bench_sort(double *v, size_t n)
{
	qsort(v, n, sizeof(*v), bench_cmp_double);
}

/* Nearest-rank percentile @p (0..1) of sorted @v; 0 when @n is 0. */
static inline double bench_pct(const double *v, size_t n, double p)
{
	size_t i = (size_t)(p * (double)n + 0.999999);

	if (n == 0)
		return 0;
	if (i == 0)
		i = 1;
	if (i > n)
		i = n;
	return v[i - 1];
}

#endif
