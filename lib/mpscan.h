/*
 * lib/mpscan.h - a raw, allocation-free pre-scan of one msgpack object.
 *
 * msgpack-c's C unpacker allocates every array and map in its zone as soon
 * as it reads the header, trusting the count found in the input, and
 * reports nesting deeper than its fixed stack as "out of memory".  Both
 * wire formats (gossip/proto.c, region/rpc_proto.c) therefore walk the raw
 * bytes first with mpscan_check(), and only hand the unpacker input whose
 * counts are backed by bytes and whose nesting is bounded.  The scan says
 * what went wrong and where; each caller words its own error message.
 * Pure: no allocation, no global state.
 */
#ifndef MERIDIAN_LIB_MPSCAN_H
#define MERIDIAN_LIB_MPSCAN_H

#include <stddef.h>
#include <stdint.h>

/* The deepest nesting any caller may ask for (sizes the scan's stack). */
#define MPSCAN_DEPTH_LIMIT 64

/* Why a scan refused its input. */
enum mpscan_why {
	MPSCAN_OK = 0,
	MPSCAN_TRUNCATED,      /* a header, payload or owed element lies past the end */
	MPSCAN_BAD_BYTE,       /* 0xc1, the one type byte msgpack never uses */
	MPSCAN_TOO_MANY,       /* more than objects_max objects announced */
	MPSCAN_TOO_DEEP,       /* containers nested deeper than depth_max */
	MPSCAN_TRAILING,       /* bytes left after the one object */
};

/* What the caller allows. */
struct mpscan_limits {
	int depth_max;         /* 0..MPSCAN_DEPTH_LIMIT; the root is depth 0 */
	uint64_t objects_max;  /* objects in all, the root included; 0: no cap */
};

/* Where and why a scan failed. */
struct mpscan_fail {
	enum mpscan_why why;
	size_t pos;            /* MPSCAN_BAD_BYTE: offset of the bad type byte */
	uint8_t byte;          /* MPSCAN_BAD_BYTE: its value */
	size_t trailing;       /* MPSCAN_TRAILING: how many bytes trail */
};

/*
 * Checks that @buf[0..@len) holds exactly one complete msgpack object:
 * every header and payload inside the buffer, the elements still owed
 * never outnumbering the bytes left (each needs at least one), at most
 * @lim->objects_max objects, nesting at most @lim->depth_max deep, and
 * nothing trailing.  @buf may be NULL only when @len is 0.  Returns 0;
 * -EBADMSG with @fail filled in (@fail->why stays MPSCAN_OK on success);
 * or -EINVAL if @lim->depth_max is out of range.  Allocates nothing.
 */
int mpscan_check(const uint8_t *buf, size_t len, const struct mpscan_limits *lim,
		 struct mpscan_fail *fail);

#endif
