/*
 * tests/unit/test_rpc_proto.c - region/rpc_proto: the RPC wire format.
 *
 * - golden bytes for a request, an ok and a failed response and a cancel,
 *   so that any change to the frozen format fails here before it fails in
 *   a rolling deploy;
 * - round trips, with every field at its bound, several frames in one
 *   buffer;
 * - picohttpparser-style: every valid frame truncated at every length, and
 *   every byte replaced by awkward values, decoded from an exact-size heap
 *   copy so that AddressSanitizer catches any read past the end;
 * - every known key of every frame type given the wrong type, omitted,
 *   repeated: refused with an error naming the field;
 * - bounds and charsets on both sides (encoder -EINVAL/-EMSGSIZE, decoder
 *   -EBADMSG naming the field); hostile msgpack counts and nesting;
 * - unknown keys skipped; a "v" out of range still yields "t" and "id", so
 *   that the peer can answer version_mismatch;
 * - rpc_message_clean() always yields a message the encoder takes.
 *
 * Frames that a correct encoder cannot produce are built by hand with
 * msgpack_pack_*.  The one random test prints its seed; set MERIDIAN_SEED to
 * replay it.
 */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "cmd/config.h"
#include "gossip/proto.h"
#include "gossip/seal.h"
#include "region/rpc_proto.h"
#include "tests/seed_testutil.h"

/* Strings and bins up to a whole frame. */
#define HB_FILL_MAX (RPC_FRAME_MAX + 16)
#include "tests/unit/msgpack_testutil.h"
#include "tests/unit/rpc_testutil.h"

/* The bounds this format shares with the layers around it. */
_Static_assert(SEAL_OVERHEAD_MAX <= RPC_SEAL_ROOM, "the seal must fit in RPC_SEAL_ROOM");
_Static_assert(RPC_NODE_MAX == GOSSIP_NAME_MAX, "an RPC node is a gossip node");
_Static_assert(RPC_NODE_MAX == SEAL_NAME_MAX, "an RPC node is a seal sender");
_Static_assert(RPC_REGION_MAX == CONFIG_REGION_MAX, "an RPC region is a configured one");

#define B(s) ((struct rpc_bytes){ (s), (uint32_t)strlen(s) })
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

/* Decodes an exact copy of @buf; returns the result, the frame in @f. */
static int decode_copy(const uint8_t *buf, size_t len, struct rpc_frame *f, char *err,
		       size_t errlen)
{
	uint8_t *c = exact_copy(buf, len);
	int r = rpc_frame_decode(c, len, f, err, errlen);

	/* Nothing may point into the copy once it is gone: callers only
	 * look at scalars after this. */
	free(c);
	return r;
}

/* Expects -EBADMSG with an error that contains @want. */
static void expect_bad(const uint8_t *buf, size_t len, const char *want)
{
	struct rpc_frame f;
	char err[160];
	int r = decode_copy(buf, len, &f, err, sizeof(err));

	ck_assert_msg(r == -EBADMSG, "expected -EBADMSG for \"%s\", got %d (%s)", want, r, err);
	ck_assert_msg(strstr(err, want) != NULL, "error \"%s\" does not name \"%s\"", err, want);
}

/* Decodes @buf (kept alive by the caller) and expects success. */
static void expect_ok(const uint8_t *buf, size_t len, struct rpc_frame *f)
{
	char err[160];
	int r = rpc_frame_decode(buf, len, f, err, sizeof(err));

	ck_assert_msg(r == 0, "decode failed: %d (%s)", r, err);
}

static struct rpc_request sample_request(void)
{
	return (struct rpc_request){
		.id = 7,
		.method = B("ping"),
		.args = { "\x80", 1 },
		.deadline_ms = 5000,
		.origin_node = B("a1"),
		.origin_region = B("iad"),
	};
}

static struct rpc_response sample_ok(void)
{
	return (struct rpc_response){
		.id = 7,
		.ok = true,
		.result = { "\xc0", 1 },
		.node = B("b2"),
		.node_version = B("0.1.0"),
	};
}

static struct rpc_response sample_failed(void)
{
	return (struct rpc_response){
		.id = 300,
		.ok = false,
		.error = RPC_E_UNAVAILABLE,
		.message = B("leaving"),
		.retry_after_ms = 2000,
		.node = B("b2"),
		.node_version = B("0.1.0"),
	};
}

/* ------------------------------------------------------------------ */
/* Hand-built frames                                                   */
/* ------------------------------------------------------------------ */

/* Starts a frame: the kind byte, then whatever the test packs. */
static void hb_frame_init(struct hb *h)
{
	hb_init(h);
	ck_assert_int_eq(msgpack_sbuffer_write(&h->sb, "R", 1), 0);
}

/* One key of a frame and its valid value: kind u uint, s str, b bin,
 * o bool; the value is u (uints, bools) or s (strs, bins). */
struct key_val {
	const char *key;
	char kind;
	uint64_t u;
	const char *s;
};

struct frame_spec {
	const char *what;          /* the error prefix: "request", ... */
	const char *required;      /* keys whose omission is malformed */
	size_t n;
	struct key_val keys[10];
};

static const struct frame_spec spec_request = {
	"request", "v t id m a dl on or", 8, {
		{ "v", 'u', 1, NULL }, { "t", 'u', 1, NULL }, { "id", 'u', 7, NULL },
		{ "m", 's', 0, "ping" }, { "a", 'b', 0, "\x80" }, { "dl", 'u', 5000, NULL },
		{ "on", 's', 0, "a1" }, { "or", 's', 0, "iad" },
	},
};

static const struct frame_spec spec_ok = {
	"response", "v t id ok r n nv", 7, {
		{ "v", 'u', 1, NULL }, { "t", 'u', 2, NULL }, { "id", 'u', 7, NULL },
		{ "ok", 'o', 1, NULL }, { "r", 'b', 0, "\xc0" }, { "n", 's', 0, "b2" },
		{ "nv", 's', 0, "0.1.0" },
	},
};

static const struct frame_spec spec_failed = {
	"response", "v t id ok e n nv", 9, {
		{ "v", 'u', 1, NULL }, { "t", 'u', 2, NULL }, { "id", 'u', 300, NULL },
		{ "ok", 'o', 0, NULL }, { "e", 's', 0, "unavailable" },
		{ "em", 's', 0, "leaving" }, { "ra", 'u', 2000, NULL }, { "n", 's', 0, "b2" },
		{ "nv", 's', 0, "0.1.0" },
	},
};

static const struct frame_spec spec_cancel = {
	"cancel", "v t id", 3, {
		{ "v", 'u', 1, NULL }, { "t", 'u', 3, NULL }, { "id", 'u', 7, NULL },
	},
};

static const struct frame_spec *const specs[] = {
	&spec_request, &spec_ok, &spec_failed, &spec_cancel,
};

enum mut_mode {
	M_NONE,
	M_WRONG,    /* value replaced by one of enum hb_val */
	M_OMIT,
	M_DUP,      /* the key given twice */
	M_UINT,     /* value replaced by the uint u */
	M_STR,      /* value replaced by the str s */
	M_LEN,      /* value replaced by a str/bin of len bytes */
};

struct mut {
	enum mut_mode mode;
	const char *key;
	enum hb_val val;
	uint64_t u;
	const char *s;
	size_t len;
	bool extras;    /* unknown keys added (before and after) */
};

static void hb_valid(struct hb *h, const struct key_val *kv)
{
	switch (kv->kind) {
	case 'u':
		msgpack_pack_uint64(&h->pk, kv->u);
		break;
	case 'o':
		if (kv->u)
			msgpack_pack_true(&h->pk);
		else
			msgpack_pack_false(&h->pk);
		break;
	case 's':
		hb_str(h, kv->s);
		break;
	default:
		msgpack_pack_bin_with_body(&h->pk, kv->s, strlen(kv->s));
		break;
	}
}

/* Unknown keys of every shape: a newer version's, and keys that are
 * someone else's ("m" in a response is skipped, not misread). */
static size_t hb_extras(struct hb *h, bool pack)
{
	if (pack) {
		hb_str(h, "zz");
		msgpack_pack_map(&h->pk, 2);
		hb_str(h, "deep");
		msgpack_pack_array(&h->pk, 2);
		msgpack_pack_nil(&h->pk);
		msgpack_pack_double(&h->pk, 2.5);
		hb_str(h, "k");
		msgpack_pack_ext_with_body(&h->pk, "xyz", 3, 5);
		msgpack_pack_uint64(&h->pk, 99);    /* a non-str key */
		hb_str(h, "x");
		hb_str(h, "vvv");
		msgpack_pack_int64(&h->pk, -5);
		hb_str(h, "");
		msgpack_pack_true(&h->pk);
	}
	return 4;
}

/* Packs a frame of @sp, valid except for @mu. */
static void hb_frame(struct hb *h, const struct frame_spec *sp, const struct mut *mu)
{
	size_t n = sp->n;

	if (mu->mode == M_OMIT)
		n--;
	if (mu->mode == M_DUP)
		n++;
	if (mu->extras)
		n += 2 * hb_extras(h, false);
	hb_frame_init(h);
	msgpack_pack_map(&h->pk, n);
	if (mu->extras)
		hb_extras(h, true);
	for (size_t i = 0; i < sp->n; i++) {
		const struct key_val *kv = &sp->keys[i];
		bool target = mu->key && strcmp(mu->key, kv->key) == 0;

		if (target && mu->mode == M_OMIT)
			continue;
		hb_str(h, kv->key);
		if (target && mu->mode == M_WRONG)
			hb_value(h, mu->val);
		else if (target && mu->mode == M_UINT)
			msgpack_pack_uint64(&h->pk, mu->u);
		else if (target && mu->mode == M_STR)
			hb_str(h, mu->s);
		else if (target && mu->mode == M_LEN)
			hb_fill(h, kv->kind == 'b', 'x', mu->len);
		else
			hb_valid(h, kv);
		if (target && mu->mode == M_DUP) {
			hb_str(h, kv->key);
			hb_valid(h, kv);
		}
	}
	if (mu->extras)
		hb_extras(h, true);
}

static void expect_bad_mut(const struct frame_spec *sp, const struct mut *mu, const char *want)
{
	struct hb h;

	hb_frame(&h, sp, mu);
	expect_bad(hb_buf(&h), h.sb.size, want);
	hb_free(&h);
}

/* ------------------------------------------------------------------ */
/* Golden bytes                                                        */
/* ------------------------------------------------------------------ */

static const uint8_t golden_request[] = {
	'R',                                        /* kind */
	0x88,                                       /* map, 8 pairs */
	0xa1, 'v', 0x01,                            /* "v": 1 */
	0xa1, 't', 0x01,                            /* "t": 1 (request) */
	0xa2, 'i', 'd', 0x07,                       /* "id": 7 */
	0xa1, 'm', 0xa4, 'p', 'i', 'n', 'g',        /* "m": "ping" */
	0xa1, 'a', 0xc4, 0x01, 0x80,                /* "a": bin [0x80] (an empty map) */
	0xa2, 'd', 'l', 0xcd, 0x13, 0x88,           /* "dl": 5000 (uint16) */
	0xa2, 'o', 'n', 0xa2, 'a', '1',             /* "on": "a1" */
	0xa2, 'o', 'r', 0xa3, 'i', 'a', 'd',        /* "or": "iad" */
};

static const uint8_t golden_ok[] = {
	'R',
	0x87,                                       /* map, 7 pairs */
	0xa1, 'v', 0x01,
	0xa1, 't', 0x02,                            /* response */
	0xa2, 'i', 'd', 0x07,
	0xa2, 'o', 'k', 0xc3,                       /* "ok": true */
	0xa1, 'r', 0xc4, 0x01, 0xc0,                /* "r": bin [0xc0] (nil) */
	0xa1, 'n', 0xa2, 'b', '2',                  /* "n": "b2" */
	0xa2, 'n', 'v', 0xa5, '0', '.', '1', '.', '0',   /* "nv": "0.1.0" */
};

static const uint8_t golden_failed[] = {
	'R',
	0x89,                                       /* map, 9 pairs */
	0xa1, 'v', 0x01,
	0xa1, 't', 0x02,
	0xa2, 'i', 'd', 0xcd, 0x01, 0x2c,           /* "id": 300 */
	0xa2, 'o', 'k', 0xc2,                       /* "ok": false */
	0xa1, 'e', 0xab, 'u', 'n', 'a', 'v', 'a', 'i', 'l', 'a', 'b', 'l', 'e',
	0xa2, 'e', 'm', 0xa7, 'l', 'e', 'a', 'v', 'i', 'n', 'g',
	0xa2, 'r', 'a', 0xcd, 0x07, 0xd0,           /* "ra": 2000 */
	0xa1, 'n', 0xa2, 'b', '2',
	0xa2, 'n', 'v', 0xa5, '0', '.', '1', '.', '0',
};

static const uint8_t golden_cancel[] = {
	'R',
	0x83,
	0xa1, 'v', 0x01,
	0xa1, 't', 0x03,                            /* cancel */
	0xa2, 'i', 'd', 0xcf, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
};

static void expect_bytes(const struct rpc_buf *b, const uint8_t *want, size_t len)
{
	ck_assert_uint_eq(b->len, len);
	for (size_t i = 0; i < len; i++)
		ck_assert_msg(b->data[i] == want[i], "byte %zu: 0x%02x, want 0x%02x", i,
			      b->data[i], want[i]);
}

START_TEST(test_golden_request)
{
	struct rpc_request q = sample_request();
	struct rpc_buf b = { 0 };
	struct rpc_frame f;

	ck_assert_int_eq(rpc_request_encode(&b, &q), 0);
	expect_bytes(&b, golden_request, sizeof(golden_request));
	rpc_buf_free(&b);

	expect_ok(golden_request, sizeof(golden_request), &f);
	ck_assert_int_eq(f.type, RPC_T_REQUEST);
	ck_assert_uint_eq(f.version, 1);
	ck_assert(f.have_id);
	ck_assert_uint_eq(f.id, 7);
	ck_assert(request_eq(&f.u.req, &q));
	/* Zero copy: the fields point into the input. */
	ck_assert_ptr_eq(f.u.req.method.ptr, (const char *)golden_request + 15);
}
END_TEST

START_TEST(test_golden_response)
{
	struct rpc_response ok = sample_ok(), failed = sample_failed();
	struct rpc_buf b = { 0 };
	struct rpc_frame f;

	ck_assert_int_eq(rpc_response_encode(&b, &ok), 0);
	expect_bytes(&b, golden_ok, sizeof(golden_ok));
	b.len = 0;
	ck_assert_int_eq(rpc_response_encode(&b, &failed), 0);
	expect_bytes(&b, golden_failed, sizeof(golden_failed));
	rpc_buf_free(&b);

	expect_ok(golden_ok, sizeof(golden_ok), &f);
	ck_assert_int_eq(f.type, RPC_T_RESPONSE);
	ck_assert(response_eq(&f.u.resp, &ok));
	ck_assert_int_eq(f.u.resp.error, RPC_E_NONE);

	expect_ok(golden_failed, sizeof(golden_failed), &f);
	ck_assert(response_eq(&f.u.resp, &failed));
	ck_assert_int_eq(f.u.resp.error, RPC_E_UNAVAILABLE);
	ck_assert(bytes_eq(f.u.resp.code, B("unavailable")));
	ck_assert_uint_eq(f.u.resp.retry_after_ms, 2000);
}
END_TEST

START_TEST(test_golden_cancel)
{
	struct rpc_buf b = { 0 };
	struct rpc_frame f;

	ck_assert_int_eq(rpc_cancel_encode(&b, 0x1122334455667788ull), 0);
	expect_bytes(&b, golden_cancel, sizeof(golden_cancel));
	rpc_buf_free(&b);
	expect_ok(golden_cancel, sizeof(golden_cancel), &f);
	ck_assert_int_eq(f.type, RPC_T_CANCEL);
	ck_assert_uint_eq(f.id, 0x1122334455667788ull);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Round trips                                                         */
/* ------------------------------------------------------------------ */

static char big_body[RPC_BODY_MAX + 1];

static void fill_body(void)
{
	for (size_t i = 0; i < sizeof(big_body); i++)
		big_body[i] = (char)(i * 31 + 7);
}

/* Strings exactly at their bounds. */
static char max_method[RPC_METHOD_MAX + 1], max_node[RPC_NODE_MAX + 1];
static char max_region[RPC_REGION_MAX + 1], max_version[RPC_NODE_VERSION_MAX + 1];
static char max_code[RPC_CODE_MAX + 1], max_message[RPC_MESSAGE_MAX + 1];

static void fill_max(void)
{
	static const char method_chars[] = "abcxyz0189_.-";
	static const char *const euro = "\xe2\x82\xac";   /* 3 bytes */

	for (size_t i = 0; i < RPC_METHOD_MAX; i++)
		max_method[i] = method_chars[i % (sizeof(method_chars) - 1)];
	for (size_t i = 0; i < RPC_NODE_MAX; i++)
		max_node[i] = (char)(0x21 + i % 94);
	memset(max_region, 'z', RPC_REGION_MAX);
	max_region[0] = '-';
	for (size_t i = 0; i < RPC_NODE_VERSION_MAX; i++)
		max_version[i] = (char)(0x7e - i);
	memset(max_code, '_', RPC_CODE_MAX);
	/* 341 euro signs and a newline: multi-byte text up to the bound. */
	for (size_t i = 0; i + 3 <= RPC_MESSAGE_MAX; i += 3)
		memcpy(max_message + i, euro, 3);
	max_message[RPC_MESSAGE_MAX - 1] = '\n';
}

START_TEST(test_roundtrip_max)
{
	struct rpc_request q = {
		.id = UINT64_MAX,
		.method = B(max_method),
		.args = { big_body, RPC_BODY_MAX },
		.deadline_ms = RPC_DEADLINE_MAX_MS,
		.origin_node = B(max_node),
		.origin_region = B(max_region),
	};
	struct rpc_response ok = {
		.id = UINT64_MAX,
		.ok = true,
		.result = { big_body, RPC_BODY_MAX },
		.node = B(max_node),
		.node_version = B(max_version),
	};
	struct rpc_response failed = {
		.id = 0,
		.error = RPC_E_OTHER,
		.code = B(max_code),
		.message = { max_message, RPC_MESSAGE_MAX },
		.retry_after_ms = UINT32_MAX,
		.node = B(max_node),
		.node_version = B(max_version),
	};
	struct rpc_buf b = { 0 };
	struct rpc_frame f;

	ck_assert_int_eq(rpc_request_encode(&b, &q), 0);
	ck_assert_uint_le(b.len, RPC_PLAIN_MAX);
	ck_assert_uint_gt(b.len, RPC_PLAIN_MAX - RPC_OVERHEAD_MAX);
	expect_ok(b.data, b.len, &f);
	ck_assert(request_eq(&f.u.req, &q));
	/* Zero copy: the args point into the frame. */
	ck_assert(f.u.req.args.ptr > (const char *)b.data &&
		  f.u.req.args.ptr + RPC_BODY_MAX < (const char *)b.data + b.len);

	b.len = 0;
	ck_assert_int_eq(rpc_response_encode(&b, &ok), 0);
	ck_assert_uint_le(b.len, RPC_PLAIN_MAX);
	expect_ok(b.data, b.len, &f);
	ck_assert(response_eq(&f.u.resp, &ok));

	b.len = 0;
	ck_assert_int_eq(rpc_response_encode(&b, &failed), 0);
	expect_ok(b.data, b.len, &f);
	ck_assert(response_eq(&f.u.resp, &failed));
	ck_assert_int_eq(f.u.resp.error, RPC_E_OTHER);
	ck_assert_uint_le(b.len, RPC_OVERHEAD_MAX + RPC_MESSAGE_MAX);
	rpc_buf_free(&b);
}
END_TEST

START_TEST(test_roundtrip_each_error)
{
	struct rpc_buf b = { 0 };
	struct rpc_frame f;

	for (enum rpc_error e = RPC_E_NO_SUCH_METHOD; e <= RPC_E_BAD_REQUEST; e++) {
		struct rpc_response s = sample_failed();

		s.error = e;
		s.retry_after_ms = e == RPC_E_OVERLOADED ? 1 : 0;
		s.message = e == RPC_E_TIMEOUT ? B("") : B("tab\there\nand \xc3\xa9");
		b.len = 0;
		ck_assert_int_eq(rpc_response_encode(&b, &s), 0);
		expect_ok(b.data, b.len, &f);
		ck_assert_msg(response_eq(&f.u.resp, &s), "%s", rpc_error_name(e));
		ck_assert(bytes_eq(f.u.resp.code, B(rpc_error_name(e))));
		ck_assert_int_eq(rpc_error_parse(f.u.resp.code.ptr, f.u.resp.code.len), e);
	}
	/* Empty args and result are fine (and their pointers normalized). */
	{
		struct rpc_request q = sample_request();
		struct rpc_response s = sample_ok();

		q.args = (struct rpc_bytes){ NULL, 0 };
		s.result = (struct rpc_bytes){ NULL, 0 };
		b.len = 0;
		ck_assert_int_eq(rpc_request_encode(&b, &q), 0);
		expect_ok(b.data, b.len, &f);
		ck_assert(request_eq(&f.u.req, &q));
		ck_assert_ptr_null(f.u.req.args.ptr);
		b.len = 0;
		ck_assert_int_eq(rpc_response_encode(&b, &s), 0);
		expect_ok(b.data, b.len, &f);
		ck_assert(response_eq(&f.u.resp, &s));
	}
	rpc_buf_free(&b);
}
END_TEST

/* Frames appended one after the other; each decodes from its offset. */
START_TEST(test_roundtrip_appended)
{
	struct rpc_request q = sample_request();
	struct rpc_response ok = sample_ok(), failed = sample_failed();
	struct rpc_buf b = { 0 };
	size_t off[5];
	struct rpc_frame f;

	off[0] = 0;
	ck_assert_int_eq(rpc_request_encode(&b, &q), 0);
	off[1] = b.len;
	ck_assert_int_eq(rpc_response_encode(&b, &ok), 0);
	off[2] = b.len;
	ck_assert_int_eq(rpc_response_encode(&b, &failed), 0);
	off[3] = b.len;
	ck_assert_int_eq(rpc_cancel_encode(&b, 9), 0);
	off[4] = b.len;

	expect_ok(b.data + off[0], off[1] - off[0], &f);
	ck_assert(request_eq(&f.u.req, &q));
	expect_ok(b.data + off[1], off[2] - off[1], &f);
	ck_assert(response_eq(&f.u.resp, &ok));
	expect_ok(b.data + off[2], off[3] - off[2], &f);
	ck_assert(response_eq(&f.u.resp, &failed));
	expect_ok(b.data + off[3], off[4] - off[3], &f);
	ck_assert_int_eq(f.type, RPC_T_CANCEL);
	ck_assert_uint_eq(f.id, 9);
	/* Two frames back to back are one frame with trailing bytes. */
	expect_bad(b.data, off[2], "trailing");
	rpc_buf_free(&b);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Truncations and mutations                                           */
/* ------------------------------------------------------------------ */

static const struct {
	const uint8_t *buf;
	size_t len;
} goldens[] = {
	{ golden_request, sizeof(golden_request) },
	{ golden_ok, sizeof(golden_ok) },
	{ golden_failed, sizeof(golden_failed) },
	{ golden_cancel, sizeof(golden_cancel) },
};

/* Every prefix of a valid frame is refused, with a reason, never read
 * past its end. */
static void truncations(const uint8_t *buf, size_t len, size_t step)
{
	struct rpc_frame f;
	char err[160];

	for (size_t n = 0; n < len; n += (n < 64 || len - n <= 64) ? 1 : step) {
		int r = decode_copy(buf, n, &f, err, sizeof(err));

		ck_assert_msg(r == -EBADMSG, "prefix %zu of %zu: %d", n, len, r);
		ck_assert_msg(err[0] != '\0', "prefix %zu: no reason", n);
		if (n > 1)
			ck_assert_msg(strstr(err, "truncated"), "prefix %zu: %s", n, err);
	}
}

START_TEST(test_truncated)
{
	struct rpc_request q = sample_request();
	struct rpc_buf b = { 0 };

	for (size_t i = 0; i < ARRAY_LEN(goldens); i++)
		truncations(goldens[i].buf, goldens[i].len, 1);
	expect_bad(golden_request, 0, "frame is empty");
	expect_bad(golden_request, 1, "frame truncated");
	ck_assert_int_eq(rpc_frame_decode(NULL, 0, &(struct rpc_frame){ 0 }, NULL, 0), -EBADMSG);

	/* A megabyte frame: every length near both ends, a stride between. */
	q.args = (struct rpc_bytes){ big_body, RPC_BODY_MAX };
	ck_assert_int_eq(rpc_request_encode(&b, &q), 0);
	truncations(b.data, b.len, 4099);
	rpc_buf_free(&b);
}
END_TEST

START_TEST(test_mutated_bytes)
{
	static const uint8_t values[] = { 0x00, 0x01, 0x02, 0x7f, 0x80, 0x8f, 0x90, 0xa0, 0xbf,
					  0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xcc, 0xcf, 0xd3, 0xd9,
					  0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xff };
	struct rpc_buf b = { 0 };
	size_t accepted = 0, refused = 0;

	for (size_t g = 0; g < ARRAY_LEN(goldens); g++) {
		const uint8_t *buf = goldens[g].buf;
		size_t len = goldens[g].len;

		for (size_t i = 0; i < len; i++) {
			for (size_t v = 0; v < ARRAY_LEN(values) + 2; v++) {
				uint8_t *c = exact_copy(buf, len);
				struct rpc_frame f, f2;
				char err[160];
				int r;

				c[i] = v < ARRAY_LEN(values) ? values[v] :
				       v == ARRAY_LEN(values) ? (uint8_t)(c[i] ^ 1) :
				       (uint8_t)(c[i] + 1);
				r = rpc_frame_decode(c, len, &f, err, sizeof(err));
				ck_assert_msg(r == 0 || r == -EBADMSG || r == -EPROTONOSUPPORT,
					      "golden %zu byte %zu: %d", g, i, r);
				if (r) {
					ck_assert(err[0] != '\0');
					refused++;
					free(c);
					continue;
				}
				/* Whatever is accepted re-encodes to the same. */
				accepted++;
				b.len = 0;
				if (f.type == RPC_T_REQUEST)
					r = rpc_request_encode(&b, &f.u.req);
				else if (f.type == RPC_T_RESPONSE)
					r = rpc_response_encode(&b, &f.u.resp);
				else
					r = rpc_cancel_encode(&b, f.id);
				ck_assert_msg(r == 0, "golden %zu byte %zu: re-encode %d", g, i, r);
				expect_ok(b.data, b.len, &f2);
				ck_assert_int_eq(f2.type, f.type);
				ck_assert_uint_eq(f2.id, f.id);
				if (f.type == RPC_T_REQUEST)
					ck_assert(request_eq(&f.u.req, &f2.u.req));
				if (f.type == RPC_T_RESPONSE)
					ck_assert(response_eq(&f.u.resp, &f2.u.resp));
				free(c);
			}
		}
	}
	ck_assert_uint_gt(accepted, 0);
	ck_assert_uint_gt(refused, 0);
	rpc_buf_free(&b);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Malformed: types, missing, repeated                                 */
/* ------------------------------------------------------------------ */

static const char *kind_name(char kind)
{
	switch (kind) {
	case 'u':
		return "a uint";
	case 's':
		return "a str";
	case 'b':
		return "a bin";
	default:
		return "a bool";
	}
}

static bool val_fits(enum hb_val v, char kind)
{
	return (v == V_UINT && kind == 'u') || (v == V_STR && kind == 's') ||
	       (v == V_BIN && kind == 'b') || (v == V_BOOL && kind == 'o');
}

START_TEST(test_wrong_types)
{
	char want[64];
	size_t checked = 0;

	for (size_t s = 0; s < ARRAY_LEN(specs); s++) {
		const struct frame_spec *sp = specs[s];

		for (size_t k = 0; k < sp->n; k++) {
			const struct key_val *kv = &sp->keys[k];

			for (enum hb_val v = 0; v < V_COUNT; v++) {
				struct mut mu = { .mode = M_WRONG, .key = kv->key, .val = v };

				/* No RPC frame holds a str-to-str map: not one
				 * of this suite's wrong values. */
				if (v == V_TAGS || val_fits(v, kv->kind))
					continue;
				/* A bad "t" leaves the type unknown: "frame.t". */
				snprintf(want, sizeof(want), "%s.%s should be %s",
					 strcmp(kv->key, "t") == 0 ? "frame" : sp->what, kv->key,
					 kind_name(kv->kind));
				expect_bad_mut(sp, &mu, want);
				checked++;
			}
		}
	}
	ck_assert_uint_gt(checked, 200);
}
END_TEST

START_TEST(test_missing_and_repeated)
{
	char want[64];

	for (size_t s = 0; s < ARRAY_LEN(specs); s++) {
		const struct frame_spec *sp = specs[s];

		for (size_t k = 0; k < sp->n; k++) {
			const char *key = sp->keys[k].key;
			struct mut omit = { .mode = M_OMIT, .key = key };
			struct mut dup = { .mode = M_DUP, .key = key };
			char padded[8], required[64];
			struct hb h;

			snprintf(want, sizeof(want), "%s.%s repeated", sp->what, key);
			expect_bad_mut(sp, &dup, want);

			snprintf(padded, sizeof(padded), " %s ", key);
			snprintf(required, sizeof(required), " %s ", sp->required);
			if (!strstr(required, padded)) {
				/* Optional: "em", "ra". */
				struct rpc_frame f;

				hb_frame(&h, sp, &omit);
				expect_ok(hb_buf(&h), h.sb.size, &f);
				hb_free(&h);
				continue;
			}
			snprintf(want, sizeof(want), "%s.%s missing",
				 strcmp(key, "t") == 0 ? "frame" : sp->what, key);
			expect_bad_mut(sp, &omit, want);
		}
	}
}
END_TEST

START_TEST(test_frame_level)
{
	static const uint8_t huge_map[] = { 'R', 0xdf, 0xff, 0xff, 0xff, 0xff };
	static const uint8_t huge_array[] = { 'R', 0xdd, 0xff, 0xff, 0xff, 0xff, 0x00 };
	static const uint8_t huge_bin[] = { 'R', 0xc6, 0xff, 0xff, 0xff, 0xff, 0x00 };
	static const uint8_t unused_byte[] = { 'R', 0x81, 0xc1, 0x00 };
	static const uint8_t not_map[] = { 'R', 0x91, 0x01 };
	static const uint8_t scalar[] = { 'R', 0x2a };
	static const uint8_t trailing[] = { 'R', 0x80, 0x00 };
	uint8_t wrong_kind[sizeof(golden_request)];
	uint8_t deep[64], *many;
	struct hb h;
	size_t n;

	memcpy(wrong_kind, golden_request, sizeof(wrong_kind));
	wrong_kind[0] = 'P';
	expect_bad(wrong_kind, sizeof(wrong_kind), "frame kind 0x50 is not 'R'");
	expect_bad(golden_request + 1, sizeof(golden_request) - 1, "frame kind 0x88");
	/* Hostile counts never reach msgpack's allocator. */
	expect_bad(huge_map, sizeof(huge_map), "frame truncated");
	expect_bad(huge_array, sizeof(huge_array), "frame truncated");
	expect_bad(huge_bin, sizeof(huge_bin), "frame truncated");
	expect_bad(unused_byte, sizeof(unused_byte), "not msgpack (byte 0xc1 at 2)");
	expect_bad(not_map, sizeof(not_map), "frame should be a map");
	expect_bad(scalar, sizeof(scalar), "frame should be a map");
	expect_bad(trailing, sizeof(trailing), "frame has 1 trailing byte(s)");

	/* Nesting: 16 levels under the root are fine for msgpack, refused
	 * at 17. */
	n = 0;
	deep[n++] = 'R';
	for (int i = 0; i < 17; i++)
		deep[n++] = 0x91;
	deep[n++] = 0x00;
	expect_bad(deep, n, "nested deeper than 16");

	/* Object count: 600 unknown pairs (1200 objects + 1) fit the bytes
	 * but not SCAN_OBJECTS_MAX. */
	hb_frame_init(&h);
	msgpack_pack_map(&h.pk, 600);
	for (int i = 0; i < 600; i++) {
		msgpack_pack_uint64(&h.pk, (uint64_t)i);
		msgpack_pack_nil(&h.pk);
	}
	expect_bad(hb_buf(&h), h.sb.size, "more than 1024 msgpack objects");
	hb_free(&h);

	/* Longer than RPC_PLAIN_MAX, whatever it holds. */
	many = calloc(1, RPC_PLAIN_MAX + 1);
	ck_assert_ptr_nonnull(many);
	many[0] = 'R';
	expect_bad(many, RPC_PLAIN_MAX + 1, "frame longer than");
	free(many);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Bounds and charsets, both sides                                     */
/* ------------------------------------------------------------------ */

START_TEST(test_decode_bounds)
{
	static const struct {
		const struct frame_spec *sp;
		struct mut mu;
		const char *want;
	} cases[] = {
		{ &spec_request, { M_LEN, "m", .len = RPC_METHOD_MAX + 1 },
		  "request.m longer than 64 bytes" },
		{ &spec_request, { M_STR, "m", .s = "" }, "request.m is empty" },
		{ &spec_request, { M_STR, "m", .s = "Ping" }, "request.m should be [a-z0-9_.-]" },
		{ &spec_request, { M_STR, "m", .s = "a b" }, "request.m should be [a-z0-9_.-]" },
		{ &spec_request, { M_STR, "m", .s = "a/b" }, "request.m should be [a-z0-9_.-]" },
		{ &spec_request, { M_LEN, "a", .len = RPC_BODY_MAX + 1 },
		  "request.a longer than" },
		{ &spec_request, { M_UINT, "dl", .u = 0 }, "request.dl 0 out of range" },
		{ &spec_request, { M_UINT, "dl", .u = RPC_DEADLINE_MAX_MS + 1ull },
		  "request.dl 86400001 out of range" },
		{ &spec_request, { M_UINT, "id", .u = 0 }, "request.id 0 out of range" },
		{ &spec_request, { M_LEN, "on", .len = RPC_NODE_MAX + 1 },
		  "request.on longer than 64 bytes" },
		{ &spec_request, { M_STR, "on", .s = "a 1" },
		  "request.on should be printable ASCII" },
		{ &spec_request, { M_STR, "on", .s = "" }, "request.on is empty" },
		{ &spec_request, { M_STR, "or", .s = "IAD" }, "request.or should be [a-z0-9-]" },
		{ &spec_request, { M_STR, "or", .s = "us_east" },
		  "request.or should be [a-z0-9-]" },
		{ &spec_request, { M_LEN, "or", .len = RPC_REGION_MAX + 1 },
		  "request.or longer than 32 bytes" },
		{ &spec_cancel, { M_UINT, "id", .u = 0 }, "cancel.id 0 out of range" },
		{ &spec_request, { M_UINT, "t", .u = 4 }, "frame.t 4 is not a known frame type" },
		{ &spec_request, { M_UINT, "t", .u = 0 }, "frame.t 0 is not a known frame type" },
		{ &spec_ok, { M_LEN, "r", .len = RPC_BODY_MAX + 1 }, "response.r longer than" },
		{ &spec_ok, { M_STR, "nv", .s = "1.0 beta" },
		  "response.nv should be printable ASCII" },
		{ &spec_ok, { M_LEN, "nv", .len = RPC_NODE_VERSION_MAX + 1 },
		  "response.nv longer than 32 bytes" },
		{ &spec_ok, { M_STR, "n", .s = "" }, "response.n is empty" },
		{ &spec_failed, { M_LEN, "em", .len = RPC_MESSAGE_MAX + 1 },
		  "response.em longer than 1024 bytes" },
		{ &spec_failed, { M_STR, "em", .s = "bell\a" },
		  "response.em should be UTF-8 text without control bytes" },
		{ &spec_failed, { M_STR, "em", .s = "cr\r" }, "response.em should be UTF-8" },
		{ &spec_failed, { M_STR, "em", .s = "del\x7f" }, "response.em should be UTF-8" },
		{ &spec_failed, { M_STR, "em", .s = "c1 \xc2\x9b" },
		  "response.em should be UTF-8" },
		{ &spec_failed, { M_STR, "em", .s = "\xff" }, "response.em should be UTF-8" },
		{ &spec_failed, { M_STR, "em", .s = "\xc0\x80" }, "response.em should be UTF-8" },
		{ &spec_failed, { M_STR, "em", .s = "\xed\xa0\x80" },
		  "response.em should be UTF-8" },
		{ &spec_failed, { M_STR, "em", .s = "\xf4\x90\x80\x80" },
		  "response.em should be UTF-8" },
		{ &spec_failed, { M_STR, "em", .s = "cut \xe2\x82" },
		  "response.em should be UTF-8" },
		{ &spec_failed, { M_STR, "e", .s = "" }, "response.e is empty" },
		{ &spec_failed, { M_STR, "e", .s = "Timeout" }, "response.e should be [a-z0-9_]" },
		{ &spec_failed, { M_STR, "e", .s = "no-such" }, "response.e should be [a-z0-9_]" },
		{ &spec_failed, { M_LEN, "e", .len = RPC_CODE_MAX + 1 },
		  "response.e longer than 32 bytes" },
		{ &spec_failed, { M_UINT, "ra", .u = UINT32_MAX + 1ull },
		  "response.ra 4294967296 out of range" },
		{ &spec_failed, { M_WRONG, "r", .val = V_BIN }, "response.r given with ok false" },
	};
	struct hb h;

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct mut mu = cases[i].mu;

		/* M_WRONG on a key the spec lacks: add it by duplicating the
		 * map instead. */
		if (mu.mode == M_WRONG && strcmp(mu.key, "r") == 0) {
			hb_frame_init(&h);
			msgpack_pack_map(&h.pk, spec_failed.n + 1);
			for (size_t k = 0; k < spec_failed.n; k++) {
				hb_str(&h, spec_failed.keys[k].key);
				hb_valid(&h, &spec_failed.keys[k]);
			}
			hb_str(&h, "r");
			hb_value(&h, V_BIN);
			expect_bad(hb_buf(&h), h.sb.size, cases[i].want);
			hb_free(&h);
			continue;
		}
		expect_bad_mut(cases[i].sp, &mu, cases[i].want);
	}

	/* ok true with any failure key. */
	for (int k = 0; k < 3; k++) {
		static const char *const keys[] = { "e", "em", "ra" };
		char want[64];

		hb_frame_init(&h);
		msgpack_pack_map(&h.pk, spec_ok.n + 1);
		for (size_t j = 0; j < spec_ok.n; j++) {
			hb_str(&h, spec_ok.keys[j].key);
			hb_valid(&h, &spec_ok.keys[j]);
		}
		hb_str(&h, keys[k]);
		if (k == 2)
			msgpack_pack_uint64(&h.pk, 5);
		else
			hb_str(&h, "timeout");
		snprintf(want, sizeof(want), "response.%s given with ok true", keys[k]);
		expect_bad(hb_buf(&h), h.sb.size, want);
		hb_free(&h);
	}
}
END_TEST

/* Values at their bounds are accepted by the decoder. */
START_TEST(test_decode_edges)
{
	static const struct {
		const struct frame_spec *sp;
		struct mut mu;
	} cases[] = {
		{ &spec_request, { M_LEN, "m", .len = RPC_METHOD_MAX } },
		{ &spec_request, { M_UINT, "dl", .u = 1 } },
		{ &spec_request, { M_UINT, "dl", .u = RPC_DEADLINE_MAX_MS } },
		{ &spec_request, { M_UINT, "id", .u = UINT64_MAX } },
		{ &spec_request, { M_LEN, "a", .len = 0 } },
		{ &spec_request, { M_STR, "m", .s = "a.b-c_9" } },
		{ &spec_request, { M_STR, "on", .s = "!~" } },
		{ &spec_request, { M_STR, "or", .s = "-" } },
		{ &spec_ok, { M_UINT, "id", .u = 0 } },   /* answers an unreadable id */
		{ &spec_failed, { M_UINT, "ra", .u = 0 } },
		{ &spec_failed, { M_UINT, "ra", .u = UINT32_MAX } },
		{ &spec_failed, { M_STR, "em", .s = "" } },
		{ &spec_failed, { M_STR, "em", .s = "\xf0\x9f\x98\x80 \xc2\xa0\t\n" } },
		{ &spec_failed, { M_LEN, "em", .len = RPC_MESSAGE_MAX } },
		{ &spec_failed, { M_STR, "e", .s = "brand_new_code_2" } },
	};
	struct hb h;
	struct rpc_frame f;

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		hb_frame(&h, cases[i].sp, &cases[i].mu);
		expect_ok(hb_buf(&h), h.sb.size, &f);
		hb_free(&h);
	}
	hb_frame(&h, &spec_failed, &(struct mut){ M_STR, "e", .s = "brand_new_code_2" });
	expect_ok(hb_buf(&h), h.sb.size, &f);
	ck_assert_int_eq(f.u.resp.error, RPC_E_OTHER);
	ck_assert(bytes_eq(f.u.resp.code, B("brand_new_code_2")));
	hb_free(&h);
}
END_TEST

/* Checks that encoding @q fails with @want and leaves @b untouched. */
static void expect_request_refused(struct rpc_buf *b, const struct rpc_request *q, int want)
{
	size_t len = b->len;

	ck_assert_int_eq(rpc_request_encode(b, q), want);
	ck_assert_uint_eq(b->len, len);
}

static void expect_response_refused(struct rpc_buf *b, const struct rpc_response *s, int want)
{
	size_t len = b->len;

	ck_assert_int_eq(rpc_response_encode(b, s), want);
	ck_assert_uint_eq(b->len, len);
}

START_TEST(test_encode_invalid)
{
	struct rpc_buf b = { 0 };
	struct rpc_request q;
	struct rpc_response s;

	/* Something already in the buffer must survive every refusal. */
	ck_assert_int_eq(rpc_cancel_encode(&b, 1), 0);

	ck_assert_int_eq(rpc_request_encode(&b, NULL), -EINVAL);
	ck_assert_int_eq(rpc_response_encode(&b, NULL), -EINVAL);
	ck_assert_int_eq(rpc_cancel_encode(&b, 0), -EINVAL);
#define REQ(field, value, want) \
	do { \
		q = sample_request(); \
		q.field = value; \
		expect_request_refused(&b, &q, want); \
	} while (0)
	REQ(id, 0, -EINVAL);
	REQ(method, B(""), -EINVAL);
	REQ(method, B("Ping"), -EINVAL);
	REQ(method, ((struct rpc_bytes){ max_method, RPC_METHOD_MAX + 1 }), -EINVAL);
	REQ(method, ((struct rpc_bytes){ NULL, 4 }), -EINVAL);
	REQ(args, ((struct rpc_bytes){ NULL, 4 }), -EINVAL);
	REQ(args, ((struct rpc_bytes){ big_body, RPC_BODY_MAX + 1 }), -EMSGSIZE);
	REQ(deadline_ms, 0, -EINVAL);
	REQ(deadline_ms, RPC_DEADLINE_MAX_MS + 1, -EINVAL);
	REQ(origin_node, B(""), -EINVAL);
	REQ(origin_node, B("a\n"), -EINVAL);
	REQ(origin_node, ((struct rpc_bytes){ max_node, RPC_NODE_MAX + 1 }), -EINVAL);
	REQ(origin_region, B("Fra"), -EINVAL);
	REQ(origin_region, B(""), -EINVAL);
#undef REQ

#define RESP(base, field, value, want) \
	do { \
		s = base(); \
		s.field = value; \
		expect_response_refused(&b, &s, want); \
	} while (0)
	RESP(sample_ok, result, ((struct rpc_bytes){ big_body, RPC_BODY_MAX + 1 }), -EMSGSIZE);
	RESP(sample_ok, result, ((struct rpc_bytes){ NULL, 1 }), -EINVAL);
	RESP(sample_ok, node, B(""), -EINVAL);
	RESP(sample_ok, node_version, B("1 0"), -EINVAL);
	RESP(sample_ok, node_version,
	     ((struct rpc_bytes){ max_node, RPC_NODE_VERSION_MAX + 1 }), -EINVAL);
	RESP(sample_failed, error, RPC_E_NONE, -EINVAL);
	RESP(sample_failed, error, (enum rpc_error)(RPC_E_OTHER + 1), -EINVAL);
	RESP(sample_failed, message, B("bell\a"), -EINVAL);
	RESP(sample_failed, message, ((struct rpc_bytes){ max_message, RPC_MESSAGE_MAX + 1 }),
	     -EINVAL);
	/* RPC_E_OTHER: the code text must be valid and not a known code. */
	s = sample_failed();
	s.error = RPC_E_OTHER;
	s.code = B("timeout");
	expect_response_refused(&b, &s, -EINVAL);
	s.code = B("Weird");
	expect_response_refused(&b, &s, -EINVAL);
	s.code = B("");
	expect_response_refused(&b, &s, -EINVAL);
	s.code = B("weird");
	ck_assert_int_eq(rpc_response_encode(&b, &s), 0);
#undef RESP

	/* The buffer's own bound: refused whole, nothing appended. */
	{
		struct rpc_buf full = { malloc(RPC_BUF_MAX), RPC_BUF_MAX - 64, RPC_BUF_MAX };

		ck_assert_ptr_nonnull(full.data);
		q = sample_request();
		expect_request_refused(&full, &q, -ENOMEM);
		ck_assert_int_eq(rpc_cancel_encode(&full, 5), 0);   /* 12 bytes fit */
		ck_assert_uint_eq(full.len, RPC_BUF_MAX - 64 + 12);
		rpc_buf_free(&full);
	}

	/* A failed response ignores "r", an ok one "e", "em", "ra". */
	s = sample_ok();
	s.error = RPC_E_TIMEOUT;
	s.message = B("bell\a");
	s.retry_after_ms = 5;
	b.len = 0;
	ck_assert_int_eq(rpc_response_encode(&b, &s), 0);
	expect_bytes(&b, golden_ok, sizeof(golden_ok));
	rpc_buf_free(&b);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Compatibility                                                       */
/* ------------------------------------------------------------------ */

START_TEST(test_unknown_keys_skipped)
{
	for (size_t s = 0; s < ARRAY_LEN(specs); s++) {
		struct mut mu = { .mode = M_NONE, .extras = true };
		struct rpc_frame f;
		struct hb h;

		hb_frame(&h, specs[s], &mu);
		expect_ok(hb_buf(&h), h.sb.size, &f);
		ck_assert_uint_eq(f.id, specs[s]->keys[2].u);
		hb_free(&h);
	}
}
END_TEST

/* Keys that belong to another frame type are skipped, not misread. */
START_TEST(test_foreign_keys_skipped)
{
	struct rpc_frame f;
	struct hb h;

	hb_frame_init(&h);
	msgpack_pack_map(&h.pk, 5);
	hb_str(&h, "v");
	msgpack_pack_uint64(&h.pk, 1);
	hb_str(&h, "t");
	msgpack_pack_uint64(&h.pk, 3);
	hb_str(&h, "id");
	msgpack_pack_uint64(&h.pk, 12);
	hb_str(&h, "m");
	msgpack_pack_nil(&h.pk);        /* a request's key, wrong type: skipped */
	hb_str(&h, "ok");
	hb_str(&h, "yes");
	expect_ok(hb_buf(&h), h.sb.size, &f);
	ck_assert_int_eq(f.type, RPC_T_CANCEL);
	ck_assert_uint_eq(f.id, 12);
	hb_free(&h);
}
END_TEST

/* Packs a request of version @v whose other fields this build would
 * refuse: a peer of another version may mean anything by them. */
static void hb_versioned(struct hb *h, bool with_v, uint64_t v, bool with_id, uint64_t t)
{
	hb_frame_init(h);
	msgpack_pack_map(&h->pk, 2 + with_v + with_id);
	if (with_v) {
		hb_str(h, "v");
		msgpack_pack_uint64(&h->pk, v);
	}
	hb_str(h, "m");
	msgpack_pack_map(&h->pk, 0);
	hb_str(h, "t");
	msgpack_pack_uint64(&h->pk, t);
	if (with_id) {
		hb_str(h, "id");
		msgpack_pack_uint64(&h->pk, 41);
	}
}

START_TEST(test_version_mismatch)
{
	static const uint64_t versions[] = { 0, RPC_PROTO_VERSION + 1, 1000, UINT64_MAX };
	struct rpc_frame f;
	char err[160];
	struct hb h;
	int r;

	for (size_t i = 0; i < ARRAY_LEN(versions); i++) {
		char want[80];

		hb_versioned(&h, true, versions[i], true, 1);
		r = decode_copy(hb_buf(&h), h.sb.size, &f, err, sizeof(err));
		ck_assert_msg(r == -EPROTONOSUPPORT, "v %" PRIu64 ": %d (%s)", versions[i], r, err);
		ck_assert_int_eq(f.type, RPC_T_REQUEST);
		ck_assert(f.have_id);
		ck_assert_uint_eq(f.id, 41);
		ck_assert_uint_eq(f.version,
				  versions[i] > UINT32_MAX ? UINT32_MAX : versions[i]);
		snprintf(want, sizeof(want), "request.v %" PRIu64 " not supported (this node "
			 "speaks %d..%d)", versions[i], RPC_PROTO_MIN, RPC_PROTO_VERSION);
		ck_assert_str_eq(err, want);
		hb_free(&h);
	}

	/* A newer response: the caller can still fail the matching call. */
	hb_versioned(&h, true, 2, true, 2);
	r = decode_copy(hb_buf(&h), h.sb.size, &f, err, sizeof(err));
	ck_assert_int_eq(r, -EPROTONOSUPPORT);
	ck_assert_int_eq(f.type, RPC_T_RESPONSE);
	ck_assert_uint_eq(f.id, 41);
	hb_free(&h);

	/* Without an id, nothing to answer: the caller sees have_id false. */
	hb_versioned(&h, true, 2, false, 1);
	r = decode_copy(hb_buf(&h), h.sb.size, &f, err, sizeof(err));
	ck_assert_int_eq(r, -EPROTONOSUPPORT);
	ck_assert(!f.have_id);
	hb_free(&h);

	/* "v" missing is malformed, but the id is still there to answer
	 * bad_request with. */
	hb_versioned(&h, false, 0, true, 1);
	r = decode_copy(hb_buf(&h), h.sb.size, &f, err, sizeof(err));
	ck_assert_int_eq(r, -EBADMSG);
	ck_assert_str_eq(err, "request.v missing");
	ck_assert(f.have_id);
	ck_assert_uint_eq(f.id, 41);
	hb_free(&h);

	/* So is an unknown "t" at a supported version... */
	hb_versioned(&h, true, 1, true, 7);
	r = decode_copy(hb_buf(&h), h.sb.size, &f, err, sizeof(err));
	ck_assert_int_eq(r, -EBADMSG);
	ck_assert_int_eq(f.type, RPC_T_NONE);
	ck_assert(f.have_id);
	hb_free(&h);

	/* ...and a malformed request of this version. */
	hb_versioned(&h, true, 1, true, 1);
	r = decode_copy(hb_buf(&h), h.sb.size, &f, err, sizeof(err));
	ck_assert_int_eq(r, -EBADMSG);
	ck_assert_str_eq(err, "request.m should be a str");
	ck_assert_int_eq(f.type, RPC_T_REQUEST);
	ck_assert(f.have_id);
	ck_assert_uint_eq(f.id, 41);
	ck_assert_uint_eq(f.version, 1);
	hb_free(&h);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Names and text                                                      */
/* ------------------------------------------------------------------ */

START_TEST(test_names)
{
	static const char *const wire[] = { "no_such_method", "timeout", "version_mismatch",
					    "unavailable", "overloaded", "remote_error",
					    "bad_request" };

	for (size_t i = 0; i < ARRAY_LEN(wire); i++) {
		enum rpc_error e = (enum rpc_error)(RPC_E_NO_SUCH_METHOD + i);

		ck_assert_str_eq(rpc_error_name(e), wire[i]);
		ck_assert_int_eq(rpc_error_parse(wire[i], strlen(wire[i])), e);
	}
	ck_assert_int_eq(rpc_error_parse("none", 4), RPC_E_OTHER);
	ck_assert_int_eq(rpc_error_parse("other", 5), RPC_E_OTHER);
	ck_assert_int_eq(rpc_error_parse("timeou", 6), RPC_E_OTHER);
	ck_assert_int_eq(rpc_error_parse("timeout", 7), RPC_E_TIMEOUT);
	ck_assert_str_eq(rpc_error_name((enum rpc_error)99), "unknown");
	ck_assert_str_eq(rpc_type_name(RPC_T_REQUEST), "request");
	ck_assert_str_eq(rpc_type_name(RPC_T_NONE), "frame");
	ck_assert(rpc_method_valid("upcase", 6));
	ck_assert(rpc_method_valid("a.b_c-9", 7));
	ck_assert(!rpc_method_valid("", 0));
	ck_assert(!rpc_method_valid("Upcase", 6));
	ck_assert(!rpc_method_valid(NULL, 3));
	ck_assert(rpc_method_valid(max_method, RPC_METHOD_MAX));
	ck_assert(!rpc_method_valid(max_method, RPC_METHOD_MAX + 1));
}
END_TEST

/* Encodes a failed response carrying @msg: the cleaned text must always
 * be accepted. */
static void expect_message_encodes(const char *msg, size_t len)
{
	struct rpc_response s = sample_failed();
	struct rpc_buf b = { 0 };
	struct rpc_frame f;

	s.message = (struct rpc_bytes){ msg, (uint32_t)len };
	ck_assert_int_eq(rpc_response_encode(&b, &s), 0);
	expect_ok(b.data, b.len, &f);
	ck_assert(bytes_eq(f.u.resp.message, s.message));
	rpc_buf_free(&b);
}

START_TEST(test_message_clean)
{
	static const char stderr_tail[] =
		"line 1\r\n\x1b[31mred\x1b[0m \xff\xfe caf\xc3\xa9\t\x00" "end";
	char out[RPC_MESSAGE_MAX + 8];
	size_t n;

	n = rpc_message_clean(out, sizeof(out), stderr_tail, sizeof(stderr_tail) - 1);
	ck_assert_uint_eq(n, sizeof(stderr_tail) - 1);
	ck_assert_int_eq(memcmp(out, "line 1?\n?[31mred?[0m ?? caf\xc3\xa9\t?end", n), 0);
	expect_message_encodes(out, n);

	/* A character that does not fit whole is left out, never cut. */
	n = rpc_message_clean(out, 5, "ab\xe2\x82\xac", 5);
	ck_assert_uint_eq(n, 5);
	n = rpc_message_clean(out, 4, "ab\xe2\x82\xac", 5);
	ck_assert_uint_eq(n, 2);
	/* A cut character at the end of the source becomes '?'s. */
	n = rpc_message_clean(out, sizeof(out), "ab\xe2\x82", 4);
	ck_assert_uint_eq(n, 4);
	ck_assert_int_eq(memcmp(out, "ab??", 4), 0);
	/* Never past RPC_MESSAGE_MAX, whatever the room. */
	{
		static char src[3 * RPC_MESSAGE_MAX];

		memset(src, 'x', sizeof(src));
		n = rpc_message_clean(out, sizeof(out), src, sizeof(src));
		ck_assert_uint_eq(n, RPC_MESSAGE_MAX);
		expect_message_encodes(out, n);
	}
	ck_assert_uint_eq(rpc_message_clean(out, sizeof(out), NULL, 5), 0);
	ck_assert_uint_eq(rpc_message_clean(out, 0, "abc", 3), 0);
}
END_TEST

START_TEST(test_message_clean_random)
{
	uint64_t rng = test_seed("test_message_clean_random", 0x5eed2024u);
	char src[1500], out[RPC_MESSAGE_MAX];

	for (int round = 0; round < 2000; round++) {
		size_t len = splitmix64(&rng) % sizeof(src), n;

		for (size_t i = 0; i < len; i++) {
			uint64_t x = splitmix64(&rng);

			/* Mostly text, some bytes that start or continue UTF-8. */
			src[i] = (char)(x % 4 == 0 ? 0x80 + (x >> 8) % 0x80 :
					x % 4 == 1 ? (x >> 8) % 0x20 : 0x20 + (x >> 8) % 0x5f);
		}
		n = rpc_message_clean(out, sizeof(out), src, len);
		ck_assert_uint_le(n, RPC_MESSAGE_MAX);
		expect_message_encodes(out, n);
	}
}
END_TEST

static Suite *rpc_proto_suite(void)
{
	Suite *s = suite_create("rpc_proto");
	TCase *golden = tcase_create("golden");
	TCase *rt = tcase_create("roundtrip");
	TCase *bad = tcase_create("malformed");
	TCase *bounds = tcase_create("bounds");
	TCase *compat = tcase_create("compat");
	TCase *text = tcase_create("text");

	tcase_add_test(golden, test_golden_request);
	tcase_add_test(golden, test_golden_response);
	tcase_add_test(golden, test_golden_cancel);
	tcase_add_test(rt, test_roundtrip_max);
	tcase_add_test(rt, test_roundtrip_each_error);
	tcase_add_test(rt, test_roundtrip_appended);
	tcase_add_test(bad, test_truncated);
	tcase_add_test(bad, test_mutated_bytes);
	tcase_add_test(bad, test_wrong_types);
	tcase_add_test(bad, test_missing_and_repeated);
	tcase_add_test(bad, test_frame_level);
	tcase_add_test(bounds, test_decode_bounds);
	tcase_add_test(bounds, test_decode_edges);
	tcase_add_test(bounds, test_encode_invalid);
	tcase_add_test(compat, test_unknown_keys_skipped);
	tcase_add_test(compat, test_foreign_keys_skipped);
	tcase_add_test(compat, test_version_mismatch);
	tcase_add_test(text, test_names);
	tcase_add_test(text, test_message_clean);
	tcase_add_test(text, test_message_clean_random);
	suite_add_tcase(s, golden);
	suite_add_tcase(s, rt);
	suite_add_tcase(s, bad);
	suite_add_tcase(s, bounds);
	suite_add_tcase(s, compat);
	suite_add_tcase(s, text);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(rpc_proto_suite());
	int failed;

	/* Shared read-only inputs, filled once before the tests fork. */
	fill_body();
	fill_max();

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
