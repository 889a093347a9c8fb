/*
 * lib/splitmix.h - splitmix64, the small PRNG behind every jitter and
 * every seeded test: one 64-bit state, advanced by each call.  Not for
 * secrets (libsodium is); for spreading retries and replaying test runs.
 */
#ifndef MERIDIAN_LIB_SPLITMIX_H
#define MERIDIAN_LIB_SPLITMIX_H

#include <stdint.h>

static inline uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

#endif
