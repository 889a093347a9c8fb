/*
 * lib/mpscan.c - the raw msgpack pre-scan (see mpscan.h).
 *
 * One pass, no allocation: a stack of "elements still owed" per nesting
 * level, and their sum.  The sum is what bounds the unpacker's zone: each
 * owed element needs at least one more byte, so a header announcing more
 * elements than bytes remain is truncation, whatever it claims.  The
 * optional object cap exists for inputs that may legitimately be large
 * (an RPC frame of a megabyte) where "one object per byte" is still too
 * many.
 */
#include "lib/mpscan.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "lib/be.h"

/* The shape of one msgpack header: what follows the type byte. */
struct mp_head {
	uint8_t lenbytes;   /* bytes of a length/count field */
	uint8_t fixed;      /* payload bytes besides a length-given body */
	uint8_t kind;       /* 0 scalar, 'b' length-given body, 'a' array, 'm' map */
	uint8_t count;      /* fixmap / fixarray element count (pairs for maps) */
};

/* false for 0xc1, the one byte msgpack never uses. */
static bool mp_head_parse(uint8_t c, struct mp_head *h)
{
	static const struct { uint8_t c, lenbytes, fixed, kind; } table[] = {
		{ 0xc0, 0, 0, 0 },   { 0xc2, 0, 0, 0 },   { 0xc3, 0, 0, 0 },
		{ 0xc4, 1, 0, 'b' }, { 0xc5, 2, 0, 'b' }, { 0xc6, 4, 0, 'b' },   /* bin */
		{ 0xc7, 1, 1, 'b' }, { 0xc8, 2, 1, 'b' }, { 0xc9, 4, 1, 'b' },   /* ext */
		{ 0xca, 0, 4, 0 },   { 0xcb, 0, 8, 0 },                          /* float */
		{ 0xcc, 0, 1, 0 },   { 0xcd, 0, 2, 0 },   { 0xce, 0, 4, 0 },   { 0xcf, 0, 8, 0 },
		{ 0xd0, 0, 1, 0 },   { 0xd1, 0, 2, 0 },   { 0xd2, 0, 4, 0 },   { 0xd3, 0, 8, 0 },
		{ 0xd4, 0, 2, 0 },   { 0xd5, 0, 3, 0 },   { 0xd6, 0, 5, 0 },   /* fixext */
		{ 0xd7, 0, 9, 0 },   { 0xd8, 0, 17, 0 },
		{ 0xd9, 1, 0, 'b' }, { 0xda, 2, 0, 'b' }, { 0xdb, 4, 0, 'b' },   /* str */
		{ 0xdc, 2, 0, 'a' }, { 0xdd, 4, 0, 'a' },
		{ 0xde, 2, 0, 'm' }, { 0xdf, 4, 0, 'm' },
	};

	memset(h, 0, sizeof(*h));
	if (c <= 0x7f || c >= 0xe0)
		return true;                 /* positive / negative fixint */
	if (c <= 0x8f) {
		h->kind = 'm';
		h->count = c & 0x0f;
		return true;
	}
	if (c <= 0x9f) {
		h->kind = 'a';
		h->count = c & 0x0f;
		return true;
	}
	if (c <= 0xbf) {
		h->fixed = c & 0x1f;         /* fixstr */
		return true;
	}
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		if (table[i].c == c) {
			h->lenbytes = table[i].lenbytes;
			h->fixed = table[i].fixed;
			h->kind = table[i].kind;
			return true;
		}
	}
	return false;
}

static int scan_fail(struct mpscan_fail *fail, enum mpscan_why why)
{
	fail->why = why;
	return -EBADMSG;
}

int mpscan_check(const uint8_t *buf, size_t len, const struct mpscan_limits *lim,
		 struct mpscan_fail *fail)
{
	uint64_t left[MPSCAN_DEPTH_LIMIT + 1];   /* elements still owed, per level */
	uint64_t pending = 1;                    /* sum of left[] */
	uint64_t objects = 1;                    /* announced so far, the root included */
	size_t pos = 0;
	int depth = 0;

	memset(fail, 0, sizeof(*fail));
	if (lim->depth_max < 0 || lim->depth_max > MPSCAN_DEPTH_LIMIT)
		return -EINVAL;
	left[0] = 1;
	while (pending > 0) {
		struct mp_head h;
		uint64_t n, body, children = 0;

		while (left[depth] == 0)
			depth--;
		if (pos >= len)
			return scan_fail(fail, MPSCAN_TRUNCATED);
		if (!mp_head_parse(buf[pos], &h)) {
			fail->pos = pos;
			fail->byte = buf[pos];
			return scan_fail(fail, MPSCAN_BAD_BYTE);
		}
		pos++;
		if (h.lenbytes > len - pos)
			return scan_fail(fail, MPSCAN_TRUNCATED);
		n = h.lenbytes ? get_ben(buf + pos, h.lenbytes) : h.count;
		pos += h.lenbytes;
		body = h.fixed + (h.kind == 'b' ? n : 0);
		if (body > len - pos)
			return scan_fail(fail, MPSCAN_TRUNCATED);
		pos += (size_t)body;
		if (h.kind == 'a')
			children = n;
		else if (h.kind == 'm')
			children = 2 * n;

		left[depth]--;
		pending--;
		if (children == 0)
			continue;
		/* Each element owed needs one byte at least. */
		if (children > len - pos || pending + children > len - pos)
			return scan_fail(fail, MPSCAN_TRUNCATED);
		if (lim->objects_max && children > lim->objects_max - objects)
			return scan_fail(fail, MPSCAN_TOO_MANY);
		if (depth == lim->depth_max)
			return scan_fail(fail, MPSCAN_TOO_DEEP);
		objects += children;
		pending += children;
		left[++depth] = children;
	}
	if (pos != len) {
		fail->trailing = len - pos;
		return scan_fail(fail, MPSCAN_TRAILING);
	}
	return 0;
}
