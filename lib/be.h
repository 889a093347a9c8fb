/*
 * lib/be.h - big-endian (network order) integer reads and writes on byte
 * buffers.  Every wire format of ours (seal timestamps, the leader
 * announcement, replication copy messages, pgoutput, msgpack lengths)
 * is big-endian; byte-at-a-time shifts keep these free of alignment and
 * host-order assumptions.  Callers check the length first: these neither
 * know nor check it.
 */
#ifndef MERIDIAN_LIB_BE_H
#define MERIDIAN_LIB_BE_H

#include <stddef.h>
#include <stdint.h>

/* The first n (at most 8) bytes of p as one big-endian unsigned number. */
static inline uint64_t get_ben(const uint8_t *p, size_t n)
{
	uint64_t v = 0;

	for (size_t i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

static inline uint16_t get_be16(const uint8_t *p)
{
	return (uint16_t)get_ben(p, 2);
}

static inline uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)get_ben(p, 4);
}

static inline uint64_t get_be64(const uint8_t *p)
{
	return get_ben(p, 8);
}

static inline void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

#endif
