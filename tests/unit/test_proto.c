/*
 * tests/unit/test_proto.c - gossip/proto: the wire format.
 *
 * - golden bytes: hand-computed packets, so that any change to the frozen
 *   format fails here before it fails in a rolling deploy;
 * - round trips of every message type and of a push-pull state;
 * - compound packets never exceed the encoder's limit;
 * - picohttpparser-style: every valid input truncated at every length, and
 *   every byte replaced by awkward values, decoded from an exact-size heap
 *   copy so that AddressSanitizer catches any read past the end;
 * - every known key of every message given the wrong type, omitted,
 *   repeated or too long: rejected with an error naming the field;
 * - unknown message types and unknown keys from a newer version skipped;
 * - versions below GOSSIP_PROTO_MIN refused.
 *
 * Packets that a correct encoder cannot produce are built by hand with
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

#include "gossip/proto.h"
#include "tests/seed_testutil.h"
#include "tests/unit/msgpack_testutil.h"
#include "tests/unit/proto_testutil.h"

#define B(s) ((struct gossip_bytes){ (s), (uint32_t)strlen(s) })
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

static char long_name[GOSSIP_NAME_MAX + 1];   /* exactly GOSSIP_NAME_MAX bytes */
static uint8_t user_data[GOSSIP_USER_DATA_MAX];

/* One message of every type, with awkward values. */
static size_t sample_msgs(struct gossip_msg *m)
{
	memset(long_name, 'n', GOSSIP_NAME_MAX);
	for (size_t i = 0; i < sizeof(user_data); i++)
		user_data[i] = (uint8_t)(i * 7);

	memset(m, 0, 9 * sizeof(*m));
	m[0].type = GOSSIP_MSG_PING;
	m[0].u.ping.seq = UINT32_MAX;
	m[0].u.ping.target = B("node-b");
	m[1].type = GOSSIP_MSG_ACK;
	m[1].u.ack.seq = 0;
	m[2].type = GOSSIP_MSG_NACK;
	m[2].u.nack.seq = 65536;
	m[3].type = GOSSIP_MSG_PING_REQ;
	m[3].u.ping_req.seq = 127;
	m[3].u.ping_req.target = B(long_name);
	m[3].u.ping_req.target_addr = B("[2001:db8::1]:7600");
	m[3].u.ping_req.want_nack = true;
	m[4].type = GOSSIP_MSG_SUSPECT;
	m[4].u.suspect.node = B("c");
	m[4].u.suspect.incarnation = UINT64_MAX;
	m[4].u.suspect.id = 0;
	m[4].u.suspect.from = B("a1");
	m[5].type = GOSSIP_MSG_ALIVE;
	m[5].u.alive.node = B("a1");
	m[5].u.alive.incarnation = 1;
	m[5].u.alive.id = 0xdeadbeefcafe;
	m[5].u.alive.addr = B("10.0.0.1:7600");
	gossip_tags_clear(&m[5].u.alive.tags);
	ck_assert_int_eq(gossip_tags_set(&m[5].u.alive.tags, "region", "iad"), 0);
	ck_assert_int_eq(gossip_tags_set(&m[5].u.alive.tags, "primary_region", "fra"), 0);
	ck_assert_int_eq(gossip_tags_set(&m[5].u.alive.tags, "empty", ""), 0);
	m[6].type = GOSSIP_MSG_DEAD;
	m[6].u.dead.node = B("c");
	m[6].u.dead.incarnation = 300;
	m[6].u.dead.id = 1;
	m[6].u.dead.from = B("c");
	m[7].type = GOSSIP_MSG_LEAVE;
	m[7].u.leave.node = B("f1");
	m[7].u.leave.incarnation = 70000;
	m[7].u.leave.id = UINT64_MAX;
	m[8].type = GOSSIP_MSG_USER;
	m[8].u.user.origin = B("a1");
	m[8].u.user.key = B("election.leader");
	m[8].u.user.version = 9;
	m[8].u.user.id = 0x0123456789abcdef;
	m[8].u.user.data = (struct gossip_bytes){ (const char *)user_data, sizeof(user_data) };
	return 9;
}

/* Encodes @n messages as one packet into @out; returns its length. */
static size_t encode_msgs(const struct gossip_msg *m, size_t n, uint8_t *out)
{
	struct gossip_encoder *e = gossip_encoder_new(GOSSIP_PACKET_MAX);
	const uint8_t *buf;
	size_t len;

	ck_assert_ptr_nonnull(e);
	for (size_t i = 0; i < n; i++)
		ck_assert_int_eq(gossip_encoder_add(e, &m[i]), 0);
	ck_assert_int_eq(gossip_encoder_finish(e, &buf, &len), 0);
	memcpy(out, buf, len);
	gossip_encoder_delete(e);
	return len;
}

/* Decodes @buf and expects -EBADMSG with an error that contains @want. */
static void expect_bad(const uint8_t *buf, size_t len, const char *want)
{
	static struct gossip_packet p;
	char err[128];
	uint8_t *c = exact_copy(buf, len);
	int r = gossip_packet_decode(c, len, &p, err, sizeof(err));

	ck_assert_msg(r == -EBADMSG, "expected -EBADMSG for \"%s\", got %d (%s)", want, r, err);
	ck_assert_msg(strstr(err, want) != NULL, "error \"%s\" does not name \"%s\"", err, want);
	free(c);
}

/* ------------------------------------------------------------------ */
/* Hand-built packets                                                  */
/* ------------------------------------------------------------------ */

static void hb_key(struct hb *h, char k)
{
	ck_assert_int_eq(msgpack_pack_str_with_body(&h->pk, &k, 1), 0);
}

static void hb_packet_head(struct hb *h, uint64_t version, size_t nmsgs)
{
	msgpack_pack_map(&h->pk, 2);
	hb_key(h, 'v');
	msgpack_pack_uint64(&h->pk, version);
	hb_key(h, 'm');
	msgpack_pack_array(&h->pk, nmsgs);
}

/* Each message type's keys ("t" aside) and the kind of each:
 * u uint, s str, b bin, o bool, g tag map. */
struct spec {
	enum gossip_msg_type type;
	const char *keys;
	const char *kinds;
};

static const struct spec specs[] = {
	{ GOSSIP_MSG_PING, "sn", "us" },
	{ GOSSIP_MSG_ACK, "s", "u" },
	{ GOSSIP_MSG_NACK, "s", "u" },
	{ GOSSIP_MSG_PING_REQ, "snak", "usso" },
	{ GOSSIP_MSG_SUSPECT, "nidf", "suus" },
	{ GOSSIP_MSG_ALIVE, "nidag", "suusg" },
	{ GOSSIP_MSG_DEAD, "nidf", "suus" },
	{ GOSSIP_MSG_LEAVE, "nid", "suu" },
	{ GOSSIP_MSG_USER, "nkrbd", "ssubu" },
};

static enum hb_val kind_val(char kind)
{
	switch (kind) {
	case 'u':
		return V_UINT;
	case 's':
		return V_STR;
	case 'b':
		return V_BIN;
	case 'o':
		return V_BOOL;
	default:
		return V_TAGS;
	}
}

/* The byte bound of a str or bin key. */
static size_t key_bound(enum gossip_msg_type t, char key, char kind)
{
	if (kind == 'b')
		return GOSSIP_USER_DATA_MAX;
	if (t == GOSSIP_MSG_USER && key == 'k')
		return GOSSIP_USER_KEY_MAX;
	if (key == 'a')
		return GOSSIP_ADDR_MAX;
	return GOSSIP_NAME_MAX;
}

enum mut_mode { M_NONE, M_WRONG, M_OMIT, M_LEN, M_DUP, M_NEWLINE };

struct mut {
	enum mut_mode mode;
	char key;
	enum hb_val val;   /* M_WRONG */
	size_t len;     /* M_LEN: str/bin length */
};

/* Packs one message of @sp, valid except for @mu. */
static void hb_msg(struct hb *h, const struct spec *sp, const struct mut *mu)
{
	size_t n = 1 + strlen(sp->keys);

	if (mu->mode == M_OMIT)
		n--;
	if (mu->mode == M_DUP)
		n++;
	msgpack_pack_map(&h->pk, n);
	hb_key(h, 't');
	msgpack_pack_uint64(&h->pk, sp->type);
	for (size_t i = 0; sp->keys[i]; i++) {
		char key = sp->keys[i], kind = sp->kinds[i];
		bool target = mu->key == key;

		if (target && mu->mode == M_OMIT)
			continue;
		hb_key(h, key);
		if (target && mu->mode == M_WRONG) {
			hb_value(h, mu->val);
		} else if (target && mu->mode == M_LEN && kind == 'b') {
			char buf[1024];

			memset(buf, 'b', mu->len);
			msgpack_pack_bin_with_body(&h->pk, buf, mu->len);
		} else if (target && mu->mode == M_LEN) {
			hb_fill(h, false, 'x', mu->len);
		} else if (target && mu->mode == M_NEWLINE && kind == 's') {
			msgpack_pack_str_with_body(&h->pk, "a\nb", 3);
		} else {
			hb_value(h, kind_val(kind));
		}
		if (target && mu->mode == M_DUP) {
			hb_key(h, key);
			hb_value(h, kind_val(kind));
		}
	}
}

static void hb_one_msg_packet(struct hb *h, const struct spec *sp, const struct mut *mu)
{
	hb_init(h);
	hb_packet_head(h, GOSSIP_PROTO_VERSION, 1);
	hb_msg(h, sp, mu);
}

/* ------------------------------------------------------------------ */
/* Golden bytes                                                        */
/* ------------------------------------------------------------------ */

static const uint8_t golden_ping[] = {
	0x82,                               /* map, 2 pairs */
	0xa1, 'v', 0x01,                    /* "v": 1 */
	0xa1, 'm', 0x91,                    /* "m": array, 1 element */
	0x83,                               /* map, 3 pairs */
	0xa1, 't', 0x01,                    /* "t": 1 (ping) */
	0xa1, 's', 0xcd, 0x01, 0x2c,        /* "s": 300 (uint16) */
	0xa1, 'n', 0xa6, 'n', 'o', 'd', 'e', '-', 'b',   /* "n": "node-b" */
};

static const uint8_t golden_alive[] = {
	0x82,
	0xa1, 'v', 0x01,
	0xa1, 'm', 0x91,
	0x86,                                           /* map, 6 pairs */
	0xa1, 't', 0x06,                                /* "t": 6 (alive) */
	0xa1, 'n', 0xa2, 'a', '1',                      /* "n": "a1" */
	0xa1, 'i', 0x05,                                /* "i": 5 */
	0xa1, 'd', 0xcf, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,  /* "d": uint64 */
	0xa1, 'a', 0xae, '1', '2', '7', '.', '0', '.', '0', '.', '1', ':', '7', '6', '0', '0',
	0xa1, 'g', 0x81,                                /* "g": map, 1 pair */
	0xa6, 'r', 'e', 'g', 'i', 'o', 'n', 0xa3, 'i', 'a', 'd',
};

/* ack 70000 + user {n "a", k "k", r 0, b ""} in one compound packet. */
static const uint8_t golden_compound[] = {
	0x82,
	0xa1, 'v', 0x01,
	0xa1, 'm', 0x92,                                /* 2 messages */
	0x82, 0xa1, 't', 0x02, 0xa1, 's', 0xce, 0x00, 0x01, 0x11, 0x70,
	0x85, 0xa1, 't', 0x09, 0xa1, 'n', 0xa1, 'a', 0xa1, 'k', 0xa1, 'k',
	0xa1, 'r', 0x00, 0xa1, 'b', 0xc4, 0x00,
};

/* user {n "a", k "k", r 1, b "x", d 0x1122334455667788}: the origin's
 * process id "d" follows the keys the message had before it. */
static const uint8_t golden_user_id[] = {
	0x82,
	0xa1, 'v', 0x01,
	0xa1, 'm', 0x91,
	0x86, 0xa1, 't', 0x09,                          /* map, 6 pairs; user */
	0xa1, 'n', 0xa1, 'a', 0xa1, 'k', 0xa1, 'k',
	0xa1, 'r', 0x01, 0xa1, 'b', 0xc4, 0x01, 'x',
	0xa1, 'd', 0xcf, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
};

/* A push-pull state: join, one member with one user record. */
static const uint8_t golden_state[] = {
	0x83,
	0xa1, 'v', 0x01,
	0xa1, 'j', 0xc3,                                /* "j": true */
	0xa1, 'm', 0x91,
	0x87,                                           /* member: 7 pairs */
	0xa1, 'n', 0xa1, 'a',
	0xa1, 'i', 0x01,
	0xa1, 'd', 0x02,
	0xa1, 'a', 0xa3, 'x', ':', '1',
	0xa1, 'g', 0x80,                                /* no tags */
	0xa1, 's', 0x00,
	0xa1, 'u', 0x91,
	0x83, 0xa1, 'k', 0xa1, 'k', 0xa1, 'r', 0x03, 0xa1, 'b', 0xc4, 0x02, 0x00, 0xff,
};

static void assert_bytes(const uint8_t *got, size_t got_len, const uint8_t *want, size_t want_len)
{
	for (size_t i = 0; i < got_len && i < want_len; i++)
		ck_assert_msg(got[i] == want[i], "byte %zu: got 0x%02x, want 0x%02x", i, got[i],
			      want[i]);
	ck_assert_uint_eq(got_len, want_len);
}

START_TEST(test_golden_ping)
{
	struct gossip_msg m = { .type = GOSSIP_MSG_PING };
	static struct gossip_packet p;
	uint8_t out[GOSSIP_PACKET_MAX];
	char err[128];
	size_t len;

	m.u.ping.seq = 300;
	m.u.ping.target = B("node-b");
	len = encode_msgs(&m, 1, out);
	assert_bytes(out, len, golden_ping, sizeof(golden_ping));

	ck_assert_int_eq(gossip_packet_decode(golden_ping, sizeof(golden_ping), &p, err,
					      sizeof(err)), 0);
	ck_assert_uint_eq(p.version, 1);
	ck_assert_uint_eq(p.count, 1);
	ck_assert_uint_eq(p.skipped, 0);
	ck_assert(msg_eq(&p.msgs[0], &m));
	/* The decoded name points into the input, not into a freed zone. */
	ck_assert_ptr_eq(p.msgs[0].u.ping.target.ptr, (const char *)golden_ping + 19);
}
END_TEST

START_TEST(test_golden_alive)
{
	struct gossip_msg m = { .type = GOSSIP_MSG_ALIVE };
	static struct gossip_packet p;
	uint8_t out[GOSSIP_PACKET_MAX];
	char err[128];
	size_t len;

	m.u.alive.node = B("a1");
	m.u.alive.incarnation = 5;
	m.u.alive.id = 0x1122334455667788;
	m.u.alive.addr = B("127.0.0.1:7600");
	gossip_tags_clear(&m.u.alive.tags);
	ck_assert_int_eq(gossip_tags_set(&m.u.alive.tags, "region", "iad"), 0);
	len = encode_msgs(&m, 1, out);
	assert_bytes(out, len, golden_alive, sizeof(golden_alive));

	ck_assert_int_eq(gossip_packet_decode(golden_alive, sizeof(golden_alive), &p, err,
					      sizeof(err)), 0);
	ck_assert_uint_eq(p.count, 1);
	ck_assert(msg_eq(&p.msgs[0], &m));
	ck_assert_str_eq(gossip_tags_get(&p.msgs[0].u.alive.tags, "region"), "iad");
}
END_TEST

START_TEST(test_golden_compound)
{
	struct gossip_msg m[2] = { { .type = GOSSIP_MSG_ACK }, { .type = GOSSIP_MSG_USER } };
	static struct gossip_packet p;
	uint8_t out[GOSSIP_PACKET_MAX];
	char err[128];
	size_t len;

	m[0].u.ack.seq = 70000;
	m[1].u.user.origin = B("a");
	m[1].u.user.key = B("k");
	m[1].u.user.version = 0;
	m[1].u.user.data = (struct gossip_bytes){ NULL, 0 };
	len = encode_msgs(m, 2, out);
	assert_bytes(out, len, golden_compound, sizeof(golden_compound));
	ck_assert_int_eq(gossip_packet_decode(golden_compound, sizeof(golden_compound), &p, err,
					      sizeof(err)), 0);
	ck_assert_uint_eq(p.count, 2);
	ck_assert(msg_eq(&p.msgs[0], &m[0]));
	ck_assert(msg_eq(&p.msgs[1], &m[1]));
}
END_TEST

static void check_truncations(const uint8_t *buf, size_t len);

START_TEST(test_golden_user_id)
{
	struct gossip_msg m = { .type = GOSSIP_MSG_USER };
	static struct gossip_packet p;
	uint8_t out[GOSSIP_PACKET_MAX];
	char err[128];
	size_t len;

	m.u.user.origin = B("a");
	m.u.user.key = B("k");
	m.u.user.version = 1;
	m.u.user.data = B("x");
	m.u.user.id = 0x1122334455667788;
	len = encode_msgs(&m, 1, out);
	assert_bytes(out, len, golden_user_id, sizeof(golden_user_id));
	ck_assert_int_eq(gossip_packet_decode(golden_user_id, sizeof(golden_user_id), &p, err,
					      sizeof(err)), 0);
	ck_assert_uint_eq(p.count, 1);
	ck_assert(msg_eq(&p.msgs[0], &m));
	ck_assert_uint_eq(p.msgs[0].u.user.id, 0x1122334455667788);
	/* Without "d" (an older sender, see golden_compound) the id is 0. */
	ck_assert_int_eq(gossip_packet_decode(golden_compound, sizeof(golden_compound), &p, err,
					      sizeof(err)), 0);
	ck_assert_uint_eq(p.msgs[1].u.user.id, 0);
	check_truncations(golden_user_id, sizeof(golden_user_id));
}
END_TEST

static int copy_record_cb(void *ctx, const struct gossip_member_record *r)
{
	struct gossip_member_record *out = ctx;

	*out = *r;
	return 0;
}

START_TEST(test_golden_state)
{
	struct gossip_member_record rec, got;
	struct gossip_buf buf = { 0 };
	char err[128];
	bool join = false;

	memset(&rec, 0, sizeof(rec));
	rec.node = B("a");
	rec.incarnation = 1;
	rec.id = 2;
	rec.addr = B("x:1");
	gossip_tags_clear(&rec.tags);
	rec.status = 0;
	rec.user_count = 1;
	rec.user[0].key = B("k");
	rec.user[0].version = 3;
	rec.user[0].data = (struct gossip_bytes){ "\x00\xff", 2 };
	ck_assert_int_eq(gossip_state_encode(&buf, true, &rec, 1), 0);
	assert_bytes(buf.data, buf.len, golden_state, sizeof(golden_state));
	gossip_buf_free(&buf);
	ck_assert_ptr_null(buf.data);

	ck_assert_int_eq(gossip_state_decode(golden_state, sizeof(golden_state), &join,
					     copy_record_cb, &got, err, sizeof(err)), 0);
	ck_assert(join);
	ck_assert(record_eq(&got, &rec));
}
END_TEST

/* ------------------------------------------------------------------ */
/* Round trips                                                         */
/* ------------------------------------------------------------------ */

START_TEST(test_roundtrip_each)
{
	struct gossip_msg m[9];
	static struct gossip_packet p;
	uint8_t out[GOSSIP_PACKET_MAX];
	size_t n = sample_msgs(m);
	char err[128];

	for (size_t i = 0; i < n; i++) {
		size_t len = encode_msgs(&m[i], 1, out);
		uint8_t *c = exact_copy(out, len);

		ck_assert_msg(gossip_packet_decode(c, len, &p, err, sizeof(err)) == 0, "%s: %s",
			      gossip_msg_type_name(m[i].type), err);
		ck_assert_uint_eq(p.count, 1);
		ck_assert_uint_eq(p.version, GOSSIP_PROTO_VERSION);
		ck_assert_msg(msg_eq(&p.msgs[0], &m[i]), "%s differs",
			      gossip_msg_type_name(m[i].type));
		free(c);
	}
}
END_TEST

START_TEST(test_roundtrip_compound)
{
	struct gossip_msg m[9];
	static struct gossip_packet p;
	uint8_t out[GOSSIP_PACKET_MAX];
	size_t n = sample_msgs(m), len;
	char err[128];

	len = encode_msgs(m, n, out);
	ck_assert_uint_le(len, GOSSIP_PACKET_MAX);
	ck_assert_int_eq(gossip_packet_decode(out, len, &p, err, sizeof(err)), 0);
	ck_assert_uint_eq(p.count, n);
	for (size_t i = 0; i < n; i++)
		ck_assert_msg(msg_eq(&p.msgs[i], &m[i]), "message %zu differs", i);
}
END_TEST

START_TEST(test_roundtrip_full_tags)
{
	struct gossip_msg m = { .type = GOSSIP_MSG_ALIVE };
	static struct gossip_packet p;
	uint8_t out[GOSSIP_PACKET_MAX];
	char key[8], val[GOSSIP_TAG_VALUE_MAX + 1], err[128];
	size_t len;

	memset(long_name, 'q', GOSSIP_NAME_MAX);
	m.u.alive.node = B(long_name);
	m.u.alive.addr = B("255.255.255.255:65535");
	gossip_tags_clear(&m.u.alive.tags);
	/* 16 pairs of 4 + 1 + 26 + 1 = 32 bytes: exactly GOSSIP_TAGS_BYTES. */
	memset(val, '~', 26);
	val[26] = '\0';
	for (int i = 0; i < GOSSIP_TAGS_MAX; i++) {
		snprintf(key, sizeof(key), "k%03d", i);
		ck_assert_int_eq(gossip_tags_set(&m.u.alive.tags, key, val), 0);
	}
	ck_assert_uint_eq(m.u.alive.tags.len, GOSSIP_TAGS_BYTES);
	len = encode_msgs(&m, 1, out);
	ck_assert_int_eq(gossip_packet_decode(out, len, &p, err, sizeof(err)), 0);
	ck_assert(msg_eq(&p.msgs[0], &m));
}
END_TEST

struct collect {
	size_t n;
	size_t stop_at;   /* return 42 at this record (0: never) */
	struct gossip_member_record rec[8];
};

static int collect_cb(void *ctx, const struct gossip_member_record *r)
{
	struct collect *c = ctx;

	ck_assert_uint_lt(c->n, ARRAY_LEN(c->rec));
	c->rec[c->n++] = *r;
	return c->n == c->stop_at ? 42 : 0;
}

static size_t sample_records(struct gossip_member_record *r)
{
	memset(r, 0, 3 * sizeof(*r));
	memset(long_name, 'n', GOSSIP_NAME_MAX);
	for (size_t i = 0; i < sizeof(user_data); i++)
		user_data[i] = (uint8_t)(255 - i);

	r[0].node = B("a1");
	r[0].incarnation = 3;
	r[0].id = 77;
	r[0].addr = B("127.0.0.1:7600");
	gossip_tags_clear(&r[0].tags);
	ck_assert_int_eq(gossip_tags_set(&r[0].tags, "region", "iad"), 0);
	r[0].status = 0;
	r[0].user_count = GOSSIP_USER_KEYS;
	r[0].user[0] = (struct gossip_user_record){ B("election"), 1, B("leader=a1") };
	r[0].user[1] = (struct gossip_user_record){
		B("k"), UINT64_MAX, { (const char *)user_data, sizeof(user_data) }
	};
	r[0].user[2] = (struct gossip_user_record){ B("empty"), 0, { NULL, 0 } };
	r[0].user[3] = (struct gossip_user_record){ B("sixteen-bytes-ok"), 5, B("x") };

	r[1].node = B(long_name);
	r[1].incarnation = UINT64_MAX;
	r[1].addr = B("[::1]:7600");
	gossip_tags_clear(&r[1].tags);
	r[1].status = 3;

	r[2].node = B("f1");
	r[2].addr = B("10.1.2.3:1");
	gossip_tags_clear(&r[2].tags);
	ck_assert_int_eq(gossip_tags_set(&r[2].tags, "primary_region", "iad"), 0);
	ck_assert_int_eq(gossip_tags_set(&r[2].tags, "region", "fra"), 0);
	r[2].status = UINT32_MAX;
	return 3;
}

START_TEST(test_state_roundtrip)
{
	struct gossip_member_record r[3];
	struct gossip_buf buf = { 0 };
	static struct collect c;
	size_t n = sample_records(r), start;
	char err[128];
	bool join = true;

	/* Appends after what the buffer already holds. */
	ck_assert_int_eq(gossip_state_encode(&buf, false, NULL, 0), 0);
	start = buf.len;
	ck_assert_int_eq(gossip_state_encode(&buf, false, r, n), 0);

	memset(&c, 0, sizeof(c));
	ck_assert_int_eq(gossip_state_decode(buf.data + start, buf.len - start, &join, collect_cb,
					     &c, err, sizeof(err)), 0);
	ck_assert(!join);
	ck_assert_uint_eq(c.n, n);
	for (size_t i = 0; i < n; i++)
		ck_assert_msg(record_eq(&c.rec[i], &r[i]), "record %zu differs", i);

	/* The empty one decodes too. */
	memset(&c, 0, sizeof(c));
	ck_assert_int_eq(gossip_state_decode(buf.data, start, &join, collect_cb, &c, err,
					     sizeof(err)), 0);
	ck_assert_uint_eq(c.n, 0);

	/* A callback's non-zero return stops decoding and is returned. */
	memset(&c, 0, sizeof(c));
	c.stop_at = 2;
	ck_assert_int_eq(gossip_state_decode(buf.data + start, buf.len - start, &join, collect_cb,
					     &c, err, sizeof(err)), 42);
	ck_assert_uint_eq(c.n, 2);
	gossip_buf_free(&buf);
}
END_TEST

START_TEST(test_state_encode_invalid)
{
	struct gossip_member_record r[3];
	struct gossip_buf buf = { 0 };
	char big[GOSSIP_USER_DATA_MAX + 1];

	sample_records(r);
	memset(big, 'b', sizeof(big));
	r[0].user_count = GOSSIP_USER_KEYS + 1;
	ck_assert_int_eq(gossip_state_encode(&buf, false, r, 3), -EINVAL);
	r[0].user_count = 2;
	r[0].user[1].key = r[0].user[0].key;   /* the same key twice */
	ck_assert_int_eq(gossip_state_encode(&buf, false, r, 3), -EINVAL);
	sample_records(r);
	r[1].node = B("");
	ck_assert_int_eq(gossip_state_encode(&buf, false, r, 3), -EINVAL);
	sample_records(r);
	r[2].user_count = 1;
	r[2].user[0] = (struct gossip_user_record){ B("k"), 1, { big, sizeof(big) } };
	ck_assert_int_eq(gossip_state_encode(&buf, false, r, 3), -EINVAL);
	r[2].user[0] = (struct gossip_user_record){ B("seventeen-bytes!!"), 1, B("") };
	ck_assert_int_eq(gossip_state_encode(&buf, false, r, 3), -EINVAL);
	ck_assert_int_eq(gossip_state_encode(&buf, false, r, GOSSIP_STATE_MEMBERS_MAX + 1),
			 -EINVAL);
	ck_assert_int_eq(gossip_state_encode(&buf, false, NULL, 1), -EINVAL);
	ck_assert_uint_eq(buf.len, 0);
	gossip_buf_free(&buf);
}
END_TEST

START_TEST(test_state_buf_bound)
{
	/* 8192 members of about 1.7 KiB each: ~14 MiB fits; a second such state
	 * does not fit under 16 MiB, and the failed append leaves the buffer as
	 * it was. */
	struct gossip_member_record *r = calloc(GOSSIP_STATE_MEMBERS_MAX, sizeof(*r));
	struct gossip_buf buf = { 0 };
	char val[GOSSIP_TAG_VALUE_MAX + 1], key[8];
	size_t first;
	int r2;

	ck_assert_ptr_nonnull(r);
	memset(long_name, 'n', GOSSIP_NAME_MAX);
	memset(val, 'v', GOSSIP_TAG_VALUE_MAX);
	val[GOSSIP_TAG_VALUE_MAX] = '\0';
	memset(user_data, 1, sizeof(user_data));
	r[0].node = B(long_name);
	r[0].addr = B(long_name);
	gossip_tags_clear(&r[0].tags);
	/* Three pairs of 2 + 1 + 128 + 1 and one of 2 + 1 + 112 + 1: 512 bytes. */
	for (int i = 0; i < 4; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		if (i == 3)
			val[112] = '\0';
		ck_assert_int_eq(gossip_tags_set(&r[0].tags, key, val), 0);
	}
	ck_assert_uint_eq(r[0].tags.len, GOSSIP_TAGS_BYTES);
	r[0].user_count = GOSSIP_USER_KEYS;
	for (int i = 0; i < GOSSIP_USER_KEYS; i++)
		r[0].user[i] = (struct gossip_user_record){
			{ &"k0k1k2k3"[2 * i], 2 }, 1, { (const char *)user_data, sizeof(user_data) }
		};
	for (size_t i = 1; i < GOSSIP_STATE_MEMBERS_MAX; i++)
		r[i] = r[0];
	ck_assert_int_eq(gossip_state_encode(&buf, true, r, GOSSIP_STATE_MEMBERS_MAX), 0);
	first = buf.len;
	ck_assert_uint_gt(first, 8u * 1024 * 1024);
	r2 = gossip_state_encode(&buf, true, r, GOSSIP_STATE_MEMBERS_MAX);
	ck_assert_int_eq(r2, -ENOMEM);
	ck_assert_uint_eq(buf.len, first);
	ck_assert_uint_le(buf.cap, 16u * 1024 * 1024);
	gossip_buf_free(&buf);
	free(r);
}
END_TEST

/* ------------------------------------------------------------------ */
/* The encoder's limit                                                 */
/* ------------------------------------------------------------------ */

START_TEST(test_compound_limit)
{
	struct gossip_encoder *e;
	struct gossip_msg m[9], added[GOSSIP_PACKET_MSGS_MAX];
	static struct gossip_packet p;
	const uint8_t *buf;
	uint8_t before[GOSSIP_PACKET_MAX];
	size_t n = sample_msgs(m), len, before_len = 0, packets = 0;
	uint64_t rng = test_seed("test_compound_limit", 0x6d6572696469616eULL);
	char err[128];

	for (size_t limit = 0; limit <= GOSSIP_PACKET_MAX + 100; limit += 1 + limit / 16) {
		size_t count = 0;
		int r = 0;

		e = gossip_encoder_new(limit);
		ck_assert_ptr_nonnull(e);
		ck_assert_int_eq(gossip_encoder_finish(e, &buf, &len), -ENODATA);
		/* Bounded: the encoder refuses the 65th message at the latest. */
		for (int tries = 0; tries <= GOSSIP_PACKET_MSGS_MAX; tries++) {
			const struct gossip_msg *next = &m[splitmix64(&rng) % n];

			if (count > 0) {
				ck_assert_int_eq(gossip_encoder_finish(e, &buf, &len), 0);
				memcpy(before, buf, len);
				before_len = len;
			}
			r = gossip_encoder_add(e, next);
			if (r == -EMSGSIZE)
				break;
			ck_assert_int_eq(r, 0);
			added[count++] = *next;
			ck_assert_uint_eq(gossip_encoder_count(e), count);
		}
		ck_assert_int_eq(r, -EMSGSIZE);
		ck_assert_uint_eq(gossip_encoder_count(e), count);
		if (count == 0) {
			ck_assert_int_eq(gossip_encoder_finish(e, &buf, &len), -ENODATA);
			gossip_encoder_delete(e);
			continue;
		}
		/* The refused message left the packet exactly as it was. */
		ck_assert_int_eq(gossip_encoder_finish(e, &buf, &len), 0);
		ck_assert_uint_eq(len, before_len);
		ck_assert(memcmp(buf, before, len) == 0);
		ck_assert_uint_le(len, limit);
		ck_assert_uint_le(len, GOSSIP_PACKET_MAX);
		ck_assert_int_eq(gossip_packet_decode(buf, len, &p, err, sizeof(err)), 0);
		ck_assert_uint_eq(p.count, count);
		for (size_t i = 0; i < count; i++)
			ck_assert(msg_eq(&p.msgs[i], &added[i]));
		packets++;

		/* Reset starts an empty packet. */
		gossip_encoder_reset(e);
		ck_assert_uint_eq(gossip_encoder_count(e), 0);
		ck_assert_int_eq(gossip_encoder_finish(e, &buf, &len), -ENODATA);
		gossip_encoder_delete(e);
	}
	ck_assert_uint_gt(packets, 10);
}
END_TEST

START_TEST(test_compound_count_and_header)
{
	struct gossip_encoder *e = gossip_encoder_new(GOSSIP_PACKET_MAX);
	struct gossip_msg ack = { .type = GOSSIP_MSG_ACK };
	static struct gossip_packet p;
	const uint8_t *buf;
	size_t len;
	char err[128];

	/* Small messages hit the message count bound before the byte limit. */
	ck_assert_ptr_nonnull(e);
	for (int i = 0; i < GOSSIP_PACKET_MSGS_MAX; i++) {
		ack.u.ack.seq = (uint32_t)i;
		ck_assert_int_eq(gossip_encoder_add(e, &ack), 0);
	}
	ck_assert_int_eq(gossip_encoder_add(e, &ack), -EMSGSIZE);
	ck_assert_int_eq(gossip_encoder_finish(e, &buf, &len), 0);
	ck_assert_int_eq(gossip_packet_decode(buf, len, &p, err, sizeof(err)), 0);
	ck_assert_uint_eq(p.count, GOSSIP_PACKET_MSGS_MAX);
	ck_assert_uint_eq(p.msgs[63].u.ack.seq, 63);
	gossip_encoder_delete(e);

	/* The array header grows at the 16th message: a limit that fits 15
	 * acks (seq < 128: 7 bytes each) plus the 1-byte header, and 16 acks
	 * only with a 1-byte header, must stop at 15. */
	e = gossip_encoder_new(6 + 1 + 16 * 7);
	ck_assert_ptr_nonnull(e);
	ack.u.ack.seq = 1;
	for (int i = 0; i < 15; i++)
		ck_assert_int_eq(gossip_encoder_add(e, &ack), 0);
	ck_assert_int_eq(gossip_encoder_add(e, &ack), -EMSGSIZE);
	ck_assert_int_eq(gossip_encoder_finish(e, &buf, &len), 0);
	ck_assert_uint_eq(len, 6 + 1 + 15 * 7);
	gossip_encoder_delete(e);

	e = gossip_encoder_new(6 + 3 + 16 * 7);
	ck_assert_ptr_nonnull(e);
	for (int i = 0; i < 16; i++)
		ck_assert_int_eq(gossip_encoder_add(e, &ack), 0);
	ck_assert_int_eq(gossip_encoder_finish(e, &buf, &len), 0);
	ck_assert_uint_eq(len, 6 + 3 + 16 * 7);
	ck_assert_int_eq(buf[6], 0xdc);
	ck_assert_int_eq(gossip_packet_decode(buf, len, &p, err, sizeof(err)), 0);
	ck_assert_uint_eq(p.count, 16);
	gossip_encoder_delete(e);

	/* A limit above GOSSIP_PACKET_MAX is clamped to it. */
	e = gossip_encoder_new(100000);
	ck_assert_ptr_nonnull(e);
	gossip_encoder_delete(e);
	gossip_encoder_delete(NULL);
}
END_TEST

START_TEST(test_encoder_invalid)
{
	struct gossip_encoder *e = gossip_encoder_new(GOSSIP_PACKET_MAX);
	struct gossip_msg m[9], bad;
	char big[GOSSIP_USER_DATA_MAX + 2];
	size_t n = sample_msgs(m);

	ck_assert_ptr_nonnull(e);
	memset(big, 'x', sizeof(big));
	for (size_t i = 0; i < n; i++)
		ck_assert_int_eq(gossip_encoder_add(e, &m[i]), 0);
	gossip_encoder_reset(e);

	bad = m[0];
	bad.u.ping.target = B("");
	ck_assert_int_eq(gossip_encoder_add(e, &bad), -EINVAL);
	bad.u.ping.target = (struct gossip_bytes){ big, GOSSIP_NAME_MAX + 1 };
	ck_assert_int_eq(gossip_encoder_add(e, &bad), -EINVAL);
	bad = m[3];
	bad.u.ping_req.target_addr = (struct gossip_bytes){ big, GOSSIP_ADDR_MAX + 1 };
	ck_assert_int_eq(gossip_encoder_add(e, &bad), -EINVAL);
	bad = m[4];
	bad.u.suspect.from = B("");
	ck_assert_int_eq(gossip_encoder_add(e, &bad), -EINVAL);
	bad = m[5];
	bad.u.alive.tags.count++;   /* inconsistent tags */
	ck_assert_int_eq(gossip_encoder_add(e, &bad), -EINVAL);
	bad = m[5];
	bad.u.alive.tags.data[0] = 'Z';   /* a key the decoder would refuse */
	ck_assert_int_eq(gossip_encoder_add(e, &bad), -EINVAL);
	bad = m[8];
	bad.u.user.key = (struct gossip_bytes){ big, GOSSIP_USER_KEY_MAX + 1 };
	ck_assert_int_eq(gossip_encoder_add(e, &bad), -EINVAL);
	bad = m[8];
	bad.u.user.data = (struct gossip_bytes){ big, GOSSIP_USER_DATA_MAX + 1 };
	ck_assert_int_eq(gossip_encoder_add(e, &bad), -EINVAL);
	bad = m[8];
	bad.u.user.data = (struct gossip_bytes){ NULL, 3 };
	ck_assert_int_eq(gossip_encoder_add(e, &bad), -EINVAL);
	bad = m[1];
	bad.type = (enum gossip_msg_type)0;
	ck_assert_int_eq(gossip_encoder_add(e, &bad), -EINVAL);
	bad.type = (enum gossip_msg_type)10;
	ck_assert_int_eq(gossip_encoder_add(e, &bad), -EINVAL);
	ck_assert_int_eq(gossip_encoder_add(e, NULL), -EINVAL);
	ck_assert_uint_eq(gossip_encoder_count(e), 0);
	gossip_encoder_delete(e);

	ck_assert_str_eq(gossip_msg_type_name(GOSSIP_MSG_PING_REQ), "ping-req");
	ck_assert_str_eq(gossip_msg_type_name((enum gossip_msg_type)77), "unknown");
}
END_TEST

/* ------------------------------------------------------------------ */
/* Truncation and byte mutation                                        */
/* ------------------------------------------------------------------ */

static void check_truncations(const uint8_t *buf, size_t len)
{
	static struct gossip_packet p;
	char err[128];

	for (size_t n = 0; n < len; n++) {
		uint8_t *c = exact_copy(buf, n);
		int r = gossip_packet_decode(c, n, &p, err, sizeof(err));

		ck_assert_msg(r == -EBADMSG, "prefix of %zu/%zu bytes: %d", n, len, r);
		ck_assert_msg(err[0] != '\0', "prefix of %zu bytes: no reason", n);
		free(c);
	}
}

START_TEST(test_truncated_packets)
{
	struct gossip_msg m[9];
	uint8_t out[GOSSIP_PACKET_MAX];
	size_t n = sample_msgs(m);

	check_truncations(golden_ping, sizeof(golden_ping));
	check_truncations(golden_alive, sizeof(golden_alive));
	check_truncations(golden_compound, sizeof(golden_compound));
	for (size_t i = 0; i < n; i++)
		check_truncations(out, encode_msgs(&m[i], 1, out));
	check_truncations(out, encode_msgs(m, n, out));
}
END_TEST

START_TEST(test_truncated_states)
{
	struct gossip_member_record r[3];
	struct gossip_buf buf = { 0 };
	static struct collect c;
	size_t nrec = sample_records(r);
	char err[128];
	bool join;

	ck_assert_int_eq(gossip_state_encode(&buf, true, r, nrec), 0);
	for (size_t n = 0; n < buf.len; n++) {
		uint8_t *copy = exact_copy(buf.data, n);
		int rc;

		memset(&c, 0, sizeof(c));
		rc = gossip_state_decode(copy, n, &join, collect_cb, &c, err, sizeof(err));
		ck_assert_msg(rc == -EBADMSG, "prefix of %zu/%zu bytes: %d", n, buf.len, rc);
		ck_assert_uint_eq(c.n, 0);   /* nothing delivered from a bad state */
		free(copy);
	}
	gossip_buf_free(&buf);
}
END_TEST

/* Re-encodes what was decoded and checks that it decodes the same. */
static void check_reencode(const struct gossip_packet *p)
{
	struct gossip_encoder *e = gossip_encoder_new(GOSSIP_PACKET_MAX);
	static struct gossip_packet q;
	const uint8_t *buf;
	size_t len, i = 0, done = 0;
	char err[128];

	ck_assert_ptr_nonnull(e);
	while (i < p->count) {
		int r = gossip_encoder_add(e, &p->msgs[i]);

		if (r == 0) {
			i++;
			if (i < p->count)
				continue;
		} else {
			ck_assert_int_eq(r, -EMSGSIZE);
			ck_assert_uint_gt(gossip_encoder_count(e), 0);
		}
		ck_assert_int_eq(gossip_encoder_finish(e, &buf, &len), 0);
		ck_assert_int_eq(gossip_packet_decode(buf, len, &q, err, sizeof(err)), 0);
		for (size_t j = 0; j < q.count; j++)
			ck_assert(msg_eq(&q.msgs[j], &p->msgs[done + j]));
		done += q.count;
		gossip_encoder_reset(e);
	}
	ck_assert_uint_eq(done, p->count);
	gossip_encoder_delete(e);
}

START_TEST(test_mutated_bytes)
{
	static const uint8_t values[] = { 0x00, 0x01, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf,
					  0xc0, 0xc1, 0xc3, 0xc4, 0xc7, 0xca, 0xcf, 0xd4, 0xd8,
					  0xd9, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xff };
	struct gossip_msg m[9];
	static struct gossip_packet p;
	uint8_t out[GOSSIP_PACKET_MAX];
	size_t len = encode_msgs(m, sample_msgs(m), out);
	size_t ok = 0, bad = 0;
	char err[128];

	for (size_t pos = 0; pos < len; pos++) {
		for (size_t v = 0; v <= ARRAY_LEN(values); v++) {
			uint8_t *c = exact_copy(out, len);
			int r;

			c[pos] = v < ARRAY_LEN(values) ? values[v] : (uint8_t)(out[pos] ^ 0x01);
			r = gossip_packet_decode(c, len, &p, err, sizeof(err));
			ck_assert_msg(r == 0 || r == -EBADMSG || r == -EPROTONOSUPPORT,
				      "byte %zu = 0x%02x: %d", pos, c[pos], r);
			if (r == 0) {
				check_reencode(&p);
				ok++;
			} else {
				ck_assert(err[0] != '\0');
				bad++;
			}
			free(c);
		}
	}
	ck_assert_uint_gt(ok, 0);
	ck_assert_uint_gt(bad, 0);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Mutated fields                                                      */
/* ------------------------------------------------------------------ */

START_TEST(test_wrong_types)
{
	static const char *type_word[] = { ['u'] = "should be a uint", ['s'] = "should be a str",
					   ['b'] = "should be a bin", ['o'] = "should be a bool",
					   ['g'] = "alive.g" };
	size_t cases = 0;

	for (size_t s = 0; s < ARRAY_LEN(specs); s++) {
		const struct spec *sp = &specs[s];
		const char *name = gossip_msg_type_name(sp->type);

		for (size_t k = 0; sp->keys[k]; k++) {
			char key = sp->keys[k], kind = sp->kinds[k];
			char want[64];

			snprintf(want, sizeof(want), "%s.%c", name, key);
			for (int v = 0; v < V_COUNT; v++) {
				struct mut mu = { .mode = M_WRONG, .key = key, .val = v };
				struct hb h;

				if ((enum hb_val)v == kind_val(kind))
					continue;
				hb_one_msg_packet(&h, sp, &mu);
				expect_bad(hb_buf(&h), h.sb.size, want);
				expect_bad(hb_buf(&h), h.sb.size, type_word[(int)kind]);
				hb_free(&h);
				cases++;
			}
		}
	}
	ck_assert_uint_gt(cases, 150);
}
END_TEST

START_TEST(test_missing_and_repeated_keys)
{
	for (size_t s = 0; s < ARRAY_LEN(specs); s++) {
		const struct spec *sp = &specs[s];
		const char *name = gossip_msg_type_name(sp->type);

		for (size_t k = 0; sp->keys[k]; k++) {
			struct mut omit = { .mode = M_OMIT, .key = sp->keys[k] };
			struct mut dup = { .mode = M_DUP, .key = sp->keys[k] };
			static struct gossip_packet p;
			char want[64], err[128];
			struct hb h;

			hb_one_msg_packet(&h, sp, &omit);
			if (sp->keys[k] == 'd') {
				/* "d" is optional: a missing id decodes as 0. */
				ck_assert_int_eq(gossip_packet_decode(hb_buf(&h), h.sb.size, &p,
								      err, sizeof(err)), 0);
				ck_assert_uint_eq(p.count, 1);
			} else {
				snprintf(want, sizeof(want), "%s.%c missing", name, sp->keys[k]);
				expect_bad(hb_buf(&h), h.sb.size, want);
			}
			hb_free(&h);

			hb_one_msg_packet(&h, sp, &dup);
			snprintf(want, sizeof(want), "%s.%c repeated", name, sp->keys[k]);
			expect_bad(hb_buf(&h), h.sb.size, want);
			hb_free(&h);
		}
	}
}
END_TEST

START_TEST(test_lengths)
{
	for (size_t s = 0; s < ARRAY_LEN(specs); s++) {
		const struct spec *sp = &specs[s];
		const char *name = gossip_msg_type_name(sp->type);

		for (size_t k = 0; sp->keys[k]; k++) {
			char key = sp->keys[k], kind = sp->kinds[k];
			size_t bound = key_bound(sp->type, key, kind);
			struct mut at = { .mode = M_LEN, .key = key, .len = bound };
			struct mut over = { .mode = M_LEN, .key = key, .len = bound + 1 };
			struct mut empty = { .mode = M_LEN, .key = key, .len = 0 };
			static struct gossip_packet p;
			char want[64], err[128];
			struct hb h;

			if (kind != 's' && kind != 'b')
				continue;
			hb_one_msg_packet(&h, sp, &at);
			ck_assert_msg(gossip_packet_decode(hb_buf(&h), h.sb.size, &p, err,
							   sizeof(err)) == 0,
				      "%s.%c at its bound: %s", name, key, err);
			hb_free(&h);

			hb_one_msg_packet(&h, sp, &over);
			snprintf(want, sizeof(want), "%s.%c longer than %zu bytes", name, key,
				 bound);
			expect_bad(hb_buf(&h), h.sb.size, want);
			hb_free(&h);

			hb_one_msg_packet(&h, sp, &empty);
			if (kind == 'b') {
				ck_assert_int_eq(gossip_packet_decode(hb_buf(&h), h.sb.size, &p,
								      err, sizeof(err)), 0);
				ck_assert_uint_eq(p.msgs[0].u.user.data.len, 0);
			} else {
				snprintf(want, sizeof(want), "%s.%c is empty", name, key);
				expect_bad(hb_buf(&h), h.sb.size, want);
			}
			hb_free(&h);
		}
	}
	/* The brief's own example. */
	{
		struct mut over = { .mode = M_LEN, .key = 'n', .len = 65 };
		struct hb h;

		hb_one_msg_packet(&h, &specs[5], &over);
		expect_bad(hb_buf(&h), h.sb.size, "alive.n longer than 64 bytes");
		hb_free(&h);
	}
}
END_TEST

/* Names, addresses and keys become C strings and log lines: a control
 * byte in any of them is malformed, never passed on. */
START_TEST(test_unprintable_strings)
{
	for (size_t s = 0; s < ARRAY_LEN(specs); s++) {
		const struct spec *sp = &specs[s];

		for (size_t k = 0; sp->keys[k]; k++) {
			struct mut nl = { .mode = M_NEWLINE, .key = sp->keys[k] };
			char want[64];
			struct hb h;

			if (sp->kinds[k] != 's')
				continue;
			hb_one_msg_packet(&h, sp, &nl);
			snprintf(want, sizeof(want), "%s.%c should be printable ASCII",
				 gossip_msg_type_name(sp->type), sp->keys[k]);
			expect_bad(hb_buf(&h), h.sb.size, want);
			hb_free(&h);
		}
	}
}
END_TEST

START_TEST(test_uint_ranges)
{
	static struct gossip_packet p;
	char err[128];
	struct hb h;

	/* seq is 32 bits on the wire contract. */
	hb_init(&h);
	hb_packet_head(&h, 1, 1);
	msgpack_pack_map(&h.pk, 2);
	hb_key(&h, 't');
	msgpack_pack_uint64(&h.pk, GOSSIP_MSG_ACK);
	hb_key(&h, 's');
	msgpack_pack_uint64(&h.pk, (uint64_t)UINT32_MAX + 1);
	expect_bad(hb_buf(&h), h.sb.size, "ack.s out of range");
	hb_free(&h);

	/* A positive value in a signed format is still a uint. */
	hb_init(&h);
	hb_packet_head(&h, 1, 1);
	msgpack_pack_map(&h.pk, 2);
	hb_key(&h, 't');
	msgpack_pack_int8(&h.pk, GOSSIP_MSG_ACK);
	hb_key(&h, 's');
	msgpack_pack_int64(&h.pk, 5);
	ck_assert_int_eq(gossip_packet_decode(hb_buf(&h), h.sb.size, &p, err, sizeof(err)), 0);
	ck_assert_uint_eq(p.msgs[0].u.ack.seq, 5);
	hb_free(&h);

	/* v past 32 bits is malformed, not "newer". */
	hb_init(&h);
	hb_packet_head(&h, (uint64_t)UINT32_MAX + 1, 0);
	expect_bad(hb_buf(&h), h.sb.size, "packet.v out of range");
	hb_free(&h);
}
END_TEST

/* An alive packet whose "g" is built by @fill. */
static void hb_alive_with_tags(struct hb *h, void (*fill)(struct hb *h))
{
	hb_init(h);
	hb_packet_head(h, 1, 1);
	msgpack_pack_map(&h->pk, 5);
	hb_key(h, 't');
	msgpack_pack_uint64(&h->pk, GOSSIP_MSG_ALIVE);
	hb_key(h, 'n');
	hb_str(h, "a1");
	hb_key(h, 'i');
	msgpack_pack_uint64(&h->pk, 1);
	hb_key(h, 'a');
	hb_str(h, "x:1");
	hb_key(h, 'g');
	fill(h);
}

static void tags_too_many(struct hb *h)
{
	char key[8];

	msgpack_pack_map(&h->pk, GOSSIP_TAGS_MAX + 1);
	for (int i = 0; i <= GOSSIP_TAGS_MAX; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		hb_str(h, key);
		hb_str(h, "v");
	}
}

static void tags_too_long(struct hb *h)
{
	char key[8];

	msgpack_pack_map(&h->pk, 4);
	for (int i = 0; i < 4; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		hb_str(h, key);
		hb_fill(h, false, 'v', GOSSIP_TAG_VALUE_MAX);
	}
}

static void tags_bad_key(struct hb *h)
{
	msgpack_pack_map(&h->pk, 1);
	hb_str(h, "Region");
	hb_str(h, "iad");
}

static void tags_bad_value(struct hb *h)
{
	msgpack_pack_map(&h->pk, 1);
	hb_str(h, "region");
	hb_str(h, "i\nad");
}

static void tags_repeated(struct hb *h)
{
	msgpack_pack_map(&h->pk, 2);
	hb_str(h, "region");
	hb_str(h, "iad");
	hb_str(h, "region");
	hb_str(h, "fra");
}

static void tags_bin_value(struct hb *h)
{
	msgpack_pack_map(&h->pk, 1);
	hb_str(h, "region");
	msgpack_pack_bin_with_body(&h->pk, "iad", 3);
}

static void tags_unsorted(struct hb *h)
{
	msgpack_pack_map(&h->pk, 2);
	hb_str(h, "z");
	hb_str(h, "1");
	hb_str(h, "a");
	hb_str(h, "2");
}

START_TEST(test_tag_maps)
{
	static struct gossip_packet p;
	char err[128];
	struct hb h;

	hb_alive_with_tags(&h, tags_too_many);
	expect_bad(hb_buf(&h), h.sb.size, "alive.g has more than 16 tags");
	hb_free(&h);
	hb_alive_with_tags(&h, tags_too_long);
	expect_bad(hb_buf(&h), h.sb.size, "alive.g longer than 512 bytes");
	hb_free(&h);
	hb_alive_with_tags(&h, tags_bad_key);
	expect_bad(hb_buf(&h), h.sb.size, "alive.g has a bad tag");
	hb_free(&h);
	hb_alive_with_tags(&h, tags_bad_value);
	expect_bad(hb_buf(&h), h.sb.size, "alive.g has a bad tag");
	hb_free(&h);
	hb_alive_with_tags(&h, tags_repeated);
	expect_bad(hb_buf(&h), h.sb.size, "alive.g repeats a tag");
	hb_free(&h);
	hb_alive_with_tags(&h, tags_bin_value);
	expect_bad(hb_buf(&h), h.sb.size, "alive.g should map str to str");
	hb_free(&h);

	/* Order on the wire does not matter: the tags come out sorted. */
	hb_alive_with_tags(&h, tags_unsorted);
	ck_assert_int_eq(gossip_packet_decode(hb_buf(&h), h.sb.size, &p, err, sizeof(err)), 0);
	ck_assert_str_eq(gossip_tags_get(&p.msgs[0].u.alive.tags, "a"), "2");
	ck_assert_str_eq(p.msgs[0].u.alive.tags.data, "a");
	ck_assert_uint_eq(p.msgs[0].u.alive.id, 0);   /* "d" absent */
	hb_free(&h);
}
END_TEST

START_TEST(test_packet_level)
{
	static const uint8_t not_map[] = { 0x92, 0x01, 0x02 };
	static const uint8_t no_v[] = { 0x81, 0xa1, 'm', 0x91, 0x82, 0xa1, 't', 0x02, 0xa1, 's',
					0x01 };
	static const uint8_t v_str[] = { 0x82, 0xa1, 'v', 0xa1, '1', 0xa1, 'm', 0x90 };
	static const uint8_t no_m[] = { 0x81, 0xa1, 'v', 0x01 };
	static const uint8_t m_map[] = { 0x82, 0xa1, 'v', 0x01, 0xa1, 'm', 0x80 };
	static const uint8_t m_empty[] = { 0x82, 0xa1, 'v', 0x01, 0xa1, 'm', 0x90 };
	static const uint8_t msg_not_map[] = { 0x82, 0xa1, 'v', 0x01, 0xa1, 'm', 0x91, 0x01 };
	static const uint8_t no_t[] = { 0x82, 0xa1, 'v', 0x01, 0xa1, 'm', 0x91, 0x81, 0xa1, 's',
					0x01 };
	static const uint8_t t_str[] = { 0x82, 0xa1, 'v', 0x01, 0xa1, 'm', 0x91, 0x82, 0xa1, 't',
					 0xa1, '2', 0xa1, 's', 0x01 };
	static const uint8_t t_neg[] = { 0x82, 0xa1, 'v', 0x01, 0xa1, 'm', 0x91, 0x82, 0xa1, 't',
					 0xff, 0xa1, 's', 0x01 };
	static const uint8_t reserved[] = { 0x81, 0xa1, 'v', 0xc1 };
	/* Headers that promise more than the buffer holds must not allocate. */
	static const uint8_t huge_array[] = { 0xdd, 0xff, 0xff, 0xff, 0xff };
	static const uint8_t huge_map[] = { 0x82, 0xa1, 'v', 0x01, 0xa1, 'm',
					    0xdf, 0x7f, 0xff, 0xff, 0xff, 0x00 };
	static const uint8_t huge_str[] = { 0xdb, 0xff, 0xff, 0xff, 0xff, 'x' };
	static const uint8_t huge_ext[] = { 0xc9, 0xff, 0xff, 0xff, 0xff, 0x01 };
	uint8_t deep[64], trailing[sizeof(golden_ping) + 1];
	struct hb h;

	expect_bad(not_map, sizeof(not_map), "packet should be a map");
	expect_bad(no_v, sizeof(no_v), "packet.v missing");
	expect_bad(v_str, sizeof(v_str), "packet.v should be a uint");
	expect_bad(no_m, sizeof(no_m), "packet.m missing");
	expect_bad(m_map, sizeof(m_map), "packet.m should be an array");
	expect_bad(m_empty, sizeof(m_empty), "packet.m is empty");
	expect_bad(msg_not_map, sizeof(msg_not_map), "packet.m[0] should be a map");
	expect_bad(no_t, sizeof(no_t), "msg.t missing");
	expect_bad(t_str, sizeof(t_str), "msg.t should be a uint");
	expect_bad(t_neg, sizeof(t_neg), "msg.t should be a uint");
	expect_bad(reserved, sizeof(reserved), "packet is not msgpack");
	expect_bad(huge_array, sizeof(huge_array), "packet truncated");
	expect_bad(huge_map, sizeof(huge_map), "packet truncated");
	expect_bad(huge_str, sizeof(huge_str), "packet truncated");
	expect_bad(huge_ext, sizeof(huge_ext), "packet truncated");
	expect_bad(NULL, 0, "packet truncated");

	memcpy(trailing, golden_ping, sizeof(golden_ping));
	trailing[sizeof(golden_ping)] = 0xc0;
	expect_bad(trailing, sizeof(trailing), "packet has 1 trailing byte");

	/* Nesting far past any real format: refused before the unpacker sees it. */
	memset(deep, 0x91, sizeof(deep));
	deep[sizeof(deep) - 1] = 0x01;
	expect_bad(deep, sizeof(deep), "packet nested deeper than");

	/* Too many messages. */
	hb_init(&h);
	hb_packet_head(&h, 1, GOSSIP_PACKET_MSGS_MAX + 1);
	for (int i = 0; i <= GOSSIP_PACKET_MSGS_MAX; i++) {
		msgpack_pack_map(&h.pk, 2);
		hb_key(&h, 't');
		msgpack_pack_uint64(&h.pk, GOSSIP_MSG_ACK);
		hb_key(&h, 's');
		msgpack_pack_uint64(&h.pk, (uint64_t)i);
	}
	expect_bad(hb_buf(&h), h.sb.size, "packet.m has more than 64 messages");
	hb_free(&h);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Compatibility                                                       */
/* ------------------------------------------------------------------ */

/* A packet as a newer version might send it: an unknown packet key, unknown
 * keys (of every kind, nested too) in known messages, and messages of
 * unknown types carrying keys that would be wrong in a known type. */
static void hb_newer_packet(struct hb *h, uint64_t version)
{
	hb_init(h);
	msgpack_pack_map(&h->pk, 3);
	hb_key(h, 'm');
	msgpack_pack_array(&h->pk, 4);

	msgpack_pack_map(&h->pk, 6);
	hb_str(h, "zz");                            /* unknown key before "t" */
	msgpack_pack_map(&h->pk, 1);
	hb_str(h, "deep");
	msgpack_pack_array(&h->pk, 3);
	msgpack_pack_nil(&h->pk);
	msgpack_pack_double(&h->pk, 2.5);
	msgpack_pack_ext_with_body(&h->pk, "abc", 3, 7);
	hb_key(h, 't');
	msgpack_pack_uint64(&h->pk, GOSSIP_MSG_PING);
	hb_key(h, 's');
	msgpack_pack_uint64(&h->pk, 9);
	msgpack_pack_uint64(&h->pk, 7);            /* a non-string key */
	hb_str(h, "seven");
	hb_key(h, 'a');                             /* known letter, not a ping key */
	msgpack_pack_nil(&h->pk);
	hb_key(h, 'n');
	hb_str(h, "b");

	msgpack_pack_map(&h->pk, 3);                /* type 99 */
	hb_key(h, 't');
	msgpack_pack_uint64(&h->pk, 99);
	hb_key(h, 's');
	hb_str(h, "not a uint, but who knows what 99 wants");
	hb_key(h, 'n');
	msgpack_pack_array(&h->pk, 0);

	msgpack_pack_map(&h->pk, 1);                /* type 0 */
	hb_key(h, 't');
	msgpack_pack_uint64(&h->pk, 0);

	msgpack_pack_map(&h->pk, 2);
	hb_key(h, 't');
	msgpack_pack_uint64(&h->pk, GOSSIP_MSG_ACK);
	hb_key(h, 's');
	msgpack_pack_uint64(&h->pk, 10);

	hb_str(h, "x-new");                         /* unknown packet key */
	msgpack_pack_true(&h->pk);
	hb_key(h, 'v');
	msgpack_pack_uint64(&h->pk, version);
}

START_TEST(test_unknown_skipped)
{
	static struct gossip_packet p;
	char err[128];
	struct hb h;

	hb_newer_packet(&h, GOSSIP_PROTO_VERSION + 1);
	ck_assert_msg(gossip_packet_decode(hb_buf(&h), h.sb.size, &p, err, sizeof(err)) == 0,
		      "%s", err);
	ck_assert_uint_eq(p.version, GOSSIP_PROTO_VERSION + 1);
	ck_assert_uint_eq(p.count, 2);
	ck_assert_uint_eq(p.skipped, 2);
	ck_assert_int_eq(p.msgs[0].type, GOSSIP_MSG_PING);
	ck_assert_uint_eq(p.msgs[0].u.ping.seq, 9);
	ck_assert(bytes_eq(p.msgs[0].u.ping.target, B("b")));
	ck_assert_int_eq(p.msgs[1].type, GOSSIP_MSG_ACK);
	ck_assert_uint_eq(p.msgs[1].u.ack.seq, 10);
	check_truncations(hb_buf(&h), h.sb.size);
	hb_free(&h);

	/* A much newer version is still read. */
	hb_newer_packet(&h, 1000);
	ck_assert_int_eq(gossip_packet_decode(hb_buf(&h), h.sb.size, &p, err, sizeof(err)), 0);
	ck_assert_uint_eq(p.version, 1000);
	hb_free(&h);
}
END_TEST

START_TEST(test_old_version)
{
	static struct gossip_packet p;
	struct gossip_buf buf = { 0 };
	char err[128];
	uint8_t *c;
	struct hb h;
	bool join;

	hb_newer_packet(&h, GOSSIP_PROTO_MIN - 1);
	ck_assert_int_eq(gossip_packet_decode(hb_buf(&h), h.sb.size, &p, err, sizeof(err)),
			 -EPROTONOSUPPORT);
	ck_assert_ptr_nonnull(strstr(err, "packet.v"));
	hb_free(&h);

	/* The state's version is checked the same way. */
	ck_assert_int_eq(gossip_state_encode(&buf, false, NULL, 0), 0);
	c = exact_copy(buf.data, buf.len);
	ck_assert_int_eq(c[3], GOSSIP_PROTO_VERSION);
	c[3] = GOSSIP_PROTO_MIN - 1;
	ck_assert_int_eq(gossip_state_decode(c, buf.len, &join, NULL, NULL, err, sizeof(err)),
			 -EPROTONOSUPPORT);
	ck_assert_ptr_nonnull(strstr(err, "state.v"));
	free(c);
	gossip_buf_free(&buf);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Malformed states                                                    */
/* ------------------------------------------------------------------ */

/* Ways to spoil a push-pull state. */
enum state_mut { S_NONE, S_NO_ADDR, S_STATUS_BIG, S_USER_TOO_MANY, S_USER_KEY_LONG,
		 S_USER_DUP, S_USER_BIN_STR, S_J_UINT, S_M_MAP, S_REC_STR, S_UNKNOWN_KEYS };

/* One member record, valid except as @mu says. */
static void hb_record(struct hb *h, enum state_mut mu)
{
	size_t users = mu == S_USER_TOO_MANY ? GOSSIP_USER_KEYS + 1 : 2;

	msgpack_pack_map(&h->pk, (mu == S_NO_ADDR ? 5 : 6) + (mu == S_UNKNOWN_KEYS));
	hb_key(h, 'n');
	hb_str(h, "a1");
	hb_key(h, 'i');
	msgpack_pack_uint64(&h->pk, 1);
	if (mu != S_NO_ADDR) {
		hb_key(h, 'a');
		hb_str(h, "x:1");
	}
	hb_key(h, 'g');
	msgpack_pack_map(&h->pk, 0);
	hb_key(h, 's');
	msgpack_pack_uint64(&h->pk, mu == S_STATUS_BIG ? (uint64_t)UINT32_MAX + 1 : 1);
	if (mu == S_UNKNOWN_KEYS) {
		hb_key(h, 'x');
		msgpack_pack_nil(&h->pk);
	}
	hb_key(h, 'u');
	msgpack_pack_array(&h->pk, users);
	for (size_t i = 0; i < users; i++) {
		char key[24];

		snprintf(key, sizeof(key), "%s%zu",
			 mu == S_USER_KEY_LONG ? "very-long-user-key" : "k",
			 mu == S_USER_DUP ? 0 : i);
		msgpack_pack_map(&h->pk, 3);
		hb_key(h, 'k');
		hb_str(h, key);
		hb_key(h, 'r');
		msgpack_pack_uint64(&h->pk, i);
		hb_key(h, 'b');
		if (mu == S_USER_BIN_STR)
			hb_str(h, "data");
		else
			msgpack_pack_bin_with_body(&h->pk, "data", 4);
	}
}

/*
 * A state of two records.  The second is spoiled as @mu says; the first is
 * valid, or with @first_bad an incomplete {n, i}.  Either way a state with
 * one bad record must deliver none.
 */
static void hb_state(struct hb *h, enum state_mut mu, bool first_bad)
{
	hb_init(h);
	msgpack_pack_map(&h->pk, mu == S_UNKNOWN_KEYS ? 4 : 3);
	hb_key(h, 'v');
	msgpack_pack_uint64(&h->pk, 1);
	hb_key(h, 'j');
	if (mu == S_J_UINT)
		msgpack_pack_uint64(&h->pk, 1);
	else
		msgpack_pack_true(&h->pk);
	if (mu == S_UNKNOWN_KEYS) {
		hb_str(h, "later");
		msgpack_pack_array(&h->pk, 0);
	}
	hb_key(h, 'm');
	if (mu == S_M_MAP) {
		msgpack_pack_map(&h->pk, 0);
		return;
	}
	msgpack_pack_array(&h->pk, 2);
	if (mu == S_REC_STR) {
		hb_str(h, "record");
	} else if (first_bad) {
		msgpack_pack_map(&h->pk, 2);
		hb_key(h, 'n');
		hb_str(h, "first");
		hb_key(h, 'i');
		msgpack_pack_uint64(&h->pk, 0);
	} else {
		hb_record(h, S_NONE);
	}
	hb_record(h, mu);
}

static void expect_bad_state(const struct hb *h, const char *want)
{
	static struct collect c;
	uint8_t *copy = exact_copy(hb_buf(h), h->sb.size);
	char err[128];
	bool join;
	int r;

	memset(&c, 0, sizeof(c));
	r = gossip_state_decode(copy, h->sb.size, &join, collect_cb, &c, err, sizeof(err));
	ck_assert_msg(r == -EBADMSG, "expected -EBADMSG for \"%s\", got %d (%s)", want, r, err);
	ck_assert_msg(strstr(err, want) != NULL, "error \"%s\" does not name \"%s\"", err, want);
	ck_assert_uint_eq(c.n, 0);
	free(copy);
}

START_TEST(test_state_malformed)
{
	static const struct {
		enum state_mut mu;
		const char *want;
	} cases[] = {
		{ S_NONE, "member.a missing" },   /* the first record is invalid */
		{ S_REC_STR, "state.m[0] should be a map" },
		{ S_J_UINT, "state.j should be a bool" },
		{ S_M_MAP, "state.m should be an array" },
	};
	static const struct {
		enum state_mut mu;
		const char *want;
	} second[] = {
		{ S_NO_ADDR, "member.a missing" },
		{ S_STATUS_BIG, "member.s out of range" },
		{ S_USER_TOO_MANY, "member.u has more than 4 records" },
		{ S_USER_KEY_LONG, "member.u.k longer than 16 bytes" },
		{ S_USER_DUP, "member.u repeats key k0" },
		{ S_USER_BIN_STR, "member.u.b should be a bin" },
	};
	struct hb h;

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		hb_state(&h, cases[i].mu, true);
		expect_bad_state(&h, cases[i].want);
		hb_free(&h);
	}
	/* The first record was invalid in all of those; these make only the
	 * second one bad, and still nothing is delivered. */
	for (size_t i = 0; i < ARRAY_LEN(second); i++) {
		hb_state(&h, second[i].mu, false);
		expect_bad_state(&h, second[i].want);
		hb_free(&h);
	}
}
END_TEST

START_TEST(test_state_members_bound)
{
	size_t len = 1 + 3 + 3 + 2 + 3 + GOSSIP_STATE_MEMBERS_MAX + 1;
	uint8_t *buf = malloc(len), *p = buf;
	char err[128];
	bool join;
	int r;

	/* {v:1, j:false, m:[{} x 8193]}: the count is refused before any record. */
	ck_assert_ptr_nonnull(buf);
	*p++ = 0x83;
	*p++ = 0xa1, *p++ = 'v', *p++ = 0x01;
	*p++ = 0xa1, *p++ = 'j', *p++ = 0xc2;
	*p++ = 0xa1, *p++ = 'm';
	*p++ = 0xdc, *p++ = (GOSSIP_STATE_MEMBERS_MAX + 1) >> 8;
	*p++ = (GOSSIP_STATE_MEMBERS_MAX + 1) & 0xff;
	memset(p, 0x80, GOSSIP_STATE_MEMBERS_MAX + 1);
	p += GOSSIP_STATE_MEMBERS_MAX + 1;
	ck_assert_uint_eq((size_t)(p - buf), len);
	r = gossip_state_decode(buf, len, &join, NULL, NULL, err, sizeof(err));
	ck_assert_int_eq(r, -EBADMSG);
	ck_assert_ptr_nonnull(strstr(err, "state.m has more than 8192 members"));
	free(buf);
}
END_TEST

START_TEST(test_state_unknown_keys)
{
	static struct collect c;
	char err[128];
	bool join = false;
	struct hb h;

	/* Unknown keys in the state and in a record are skipped. */
	hb_state(&h, S_UNKNOWN_KEYS, false);
	memset(&c, 0, sizeof(c));
	ck_assert_msg(gossip_state_decode(hb_buf(&h), h.sb.size, &join, collect_cb, &c, err,
					  sizeof(err)) == 0, "%s", err);
	ck_assert(join);
	ck_assert_uint_eq(c.n, 2);
	ck_assert_uint_eq(c.rec[1].status, 1);
	ck_assert_uint_eq(c.rec[1].id, 0);   /* "d" absent */
	ck_assert_uint_eq(c.rec[1].user_count, 2);
	ck_assert(bytes_eq(c.rec[1].user[1].key, B("k1")));
	ck_assert(bytes_eq(c.rec[1].user[1].data, B("data")));
	hb_free(&h);

	/* And the same with a bad first record is still refused whole. */
	hb_state(&h, S_UNKNOWN_KEYS, true);
	expect_bad_state(&h, "member.a missing");
	hb_free(&h);
}
END_TEST

static Suite *proto_suite(void)
{
	Suite *s = suite_create("proto");
	TCase *golden = tcase_create("golden");
	TCase *rt = tcase_create("roundtrip");
	TCase *limit = tcase_create("limit");
	TCase *bad = tcase_create("malformed");
	TCase *compat = tcase_create("compat");
	TCase *state = tcase_create("state");

	tcase_add_test(golden, test_golden_ping);
	tcase_add_test(golden, test_golden_alive);
	tcase_add_test(golden, test_golden_compound);
	tcase_add_test(golden, test_golden_state);
	tcase_add_test(golden, test_golden_user_id);
	tcase_add_test(rt, test_roundtrip_each);
	tcase_add_test(rt, test_roundtrip_compound);
	tcase_add_test(rt, test_roundtrip_full_tags);
	tcase_add_test(limit, test_compound_limit);
	tcase_add_test(limit, test_compound_count_and_header);
	tcase_add_test(limit, test_encoder_invalid);
	tcase_add_test(bad, test_truncated_packets);
	tcase_add_test(bad, test_mutated_bytes);
	tcase_add_test(bad, test_wrong_types);
	tcase_add_test(bad, test_missing_and_repeated_keys);
	tcase_add_test(bad, test_lengths);
	tcase_add_test(bad, test_unprintable_strings);
	tcase_add_test(bad, test_uint_ranges);
	tcase_add_test(bad, test_tag_maps);
	tcase_add_test(bad, test_packet_level);
	tcase_add_test(compat, test_unknown_skipped);
	tcase_add_test(compat, test_old_version);
	tcase_add_test(state, test_state_roundtrip);
	tcase_add_test(state, test_state_encode_invalid);
	tcase_add_test(state, test_state_buf_bound);
	tcase_add_test(state, test_truncated_states);
	tcase_add_test(state, test_state_malformed);
	tcase_add_test(state, test_state_members_bound);
	tcase_add_test(state, test_state_unknown_keys);
	suite_add_tcase(s, golden);
	suite_add_tcase(s, rt);
	suite_add_tcase(s, limit);
	suite_add_tcase(s, bad);
	suite_add_tcase(s, compat);
	suite_add_tcase(s, state);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(proto_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
