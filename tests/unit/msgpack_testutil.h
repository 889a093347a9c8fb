/*
 * tests/unit/msgpack_testutil.h - hand-built msgpack for the wire-format
 * tests (test_proto.c for gossip packets, test_rpc_proto.c for RPC
 * frames): what a correct encoder cannot produce is packed here with
 * msgpack_pack_*, and every decode reads an exact-size heap copy so that
 * AddressSanitizer catches a read one byte too far.
 *
 * enum hb_val is every kind of value a mutation can put where a known
 * key's value goes.  Each suite picks its own wrong values from it: a
 * str-to-str map (V_TAGS) is valid in a gossip alive message, while no
 * RPC frame has one, so test_rpc_proto.c leaves it out.
 *
 * hb_fill() packs from a static buffer of HB_FILL_MAX bytes; a suite that
 * needs longer strings defines HB_FILL_MAX before including this.
 *
 * Header-only (static inline): each test binary includes it once.
 */
#ifndef MERIDIAN_TESTS_MSGPACK_TESTUTIL_H
#define MERIDIAN_TESTS_MSGPACK_TESTUTIL_H

#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#ifndef HB_FILL_MAX
#define HB_FILL_MAX 1024
#endif

/* An exact-size heap copy: one byte too far and ASan reports it. */
static inline uint8_t *exact_copy(const uint8_t *buf, size_t len)
{
	uint8_t *c = malloc(len ? len : 1);

	ck_assert_ptr_nonnull(c);
	if (len)
		memcpy(c, buf, len);
	return c;
}

struct hb {
	msgpack_sbuffer sb;
	msgpack_packer pk;
};

static inline void hb_init(struct hb *h)
{
	msgpack_sbuffer_init(&h->sb);
	msgpack_packer_init(&h->pk, &h->sb, msgpack_sbuffer_write);
}

static inline void hb_free(struct hb *h)
{
	msgpack_sbuffer_destroy(&h->sb);
}

static inline const uint8_t *hb_buf(const struct hb *h)
{
	return (const uint8_t *)h->sb.data;
}

static inline void hb_str(struct hb *h, const char *s)
{
	ck_assert_int_eq(msgpack_pack_str_with_body(&h->pk, s, strlen(s)), 0);
}

/* A str (or, with @bin, a bin) of @n bytes @c. */
static inline void hb_fill(struct hb *h, bool bin, char c, size_t n)
{
	static char buf[HB_FILL_MAX];

	ck_assert_uint_le(n, sizeof(buf));
	memset(buf, c, n);
	if (bin)
		ck_assert_int_eq(msgpack_pack_bin_with_body(&h->pk, buf, n), 0);
	else
		ck_assert_int_eq(msgpack_pack_str_with_body(&h->pk, buf, n), 0);
}

/* The kinds of value a mutation can put where a known key's value goes. */
enum hb_val {
	V_UINT,     /* 42 */
	V_STR,      /* "node" */
	V_BIN,      /* bin "data" */
	V_BOOL,     /* true */
	V_NIL,
	V_NEG,      /* -1 */
	V_FLOAT,    /* 1.5 */
	V_ARRAY,    /* [1] */
	V_MAP,      /* {"x": 1}: a map, but not of str to str */
	V_TAGS,     /* {"region": "iad"} */
	V_COUNT
};

static inline void hb_value(struct hb *h, enum hb_val v)
{
	switch (v) {
	case V_UINT:
		msgpack_pack_uint64(&h->pk, 42);
		break;
	case V_STR:
		hb_str(h, "node");
		break;
	case V_BIN:
		msgpack_pack_bin_with_body(&h->pk, "data", 4);
		break;
	case V_BOOL:
		msgpack_pack_true(&h->pk);
		break;
	case V_NIL:
		msgpack_pack_nil(&h->pk);
		break;
	case V_NEG:
		msgpack_pack_int64(&h->pk, -1);
		break;
	case V_FLOAT:
		msgpack_pack_double(&h->pk, 1.5);
		break;
	case V_ARRAY:
		msgpack_pack_array(&h->pk, 1);
		msgpack_pack_uint64(&h->pk, 1);
		break;
	case V_MAP:
		msgpack_pack_map(&h->pk, 1);
		hb_str(h, "x");
		msgpack_pack_uint64(&h->pk, 1);
		break;
	case V_TAGS:
		msgpack_pack_map(&h->pk, 1);
		hb_str(h, "region");
		hb_str(h, "iad");
		break;
	case V_COUNT:
		break;
	}
}

#endif
