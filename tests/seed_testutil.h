/*
 * tests/seed_testutil.h - the seed of a deterministic test: MERIDIAN_SEED
 * when set, else the suite's default; printed so that a failing run can be
 * replayed exactly.
 */
#ifndef MERIDIAN_TESTS_SEED_TESTUTIL_H
#define MERIDIAN_TESTS_SEED_TESTUTIL_H

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "lib/splitmix.h"

static inline uint64_t test_seed(const char *test, uint64_t def)
{
	const char *env = getenv("MERIDIAN_SEED");
	uint64_t seed = def;

	if (env && *env)
		seed = strtoull(env, NULL, 0);
	printf("%s: seed %" PRIu64 " (replay: MERIDIAN_SEED=%" PRIu64 ")\n", test, seed, seed);
	fflush(stdout);
	return seed;
}

#endif
