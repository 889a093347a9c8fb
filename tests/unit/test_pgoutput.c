/*
 * tests/unit/test_pgoutput.c - the pgoutput decoder and change JSON
 * (storage/pgoutput.h).
 *
 * Two sources of messages:
 *   - hand-built ones (struct enc below writes the wire format), for each
 *     message type's fields and for every error kind: its errno, its
 *     counter, the message type and field named in the line;
 *   - real bytes captured from PostgreSQL 15 (pgoutput_fixture.h, made by
 *     gen_pgoutput_fixture.sh; its statements are what test_fixture
 *     expects): every message type, every tuple form ('n', 'u', 't'; 'N',
 *     'K', 'O' tuples), a 100 kB TOASTed value, relations sent again after
 *     a TRUNCATE.  Every one decodes to the expected values; every
 *     truncation of every one fails cleanly (-EBADMSG, counted, nothing
 *     cached); seeded random bit flips never crash (under ASan each
 *     message sits in an allocation of exactly its size).
 * Plus the bounds (names, columns, relations, cached columns), the time
 * conversion, and JSON of hand-made changes.
 *
 * Random tests are seeded: MERIDIAN_SEED (decimal or 0x...) if set, else a
 * fixed default, printed so that a failure can be replayed.
 */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_ASAN 1
#endif
#endif
#ifdef HAVE_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#include "storage/lsn.h"
#include "storage/pgoutput.h"
#include "tests/unit/pgoutput_fixture.h"
#include "tests/seed_testutil.h"

#define DEFAULT_SEED 0x50474f5554503031ULL  /* "PGOUTP01" */
#define FLIPS_PER_MESSAGE 400
#define NFIX (sizeof(pgoutput_fixture) / sizeof(pgoutput_fixture[0]))

static uint64_t seed_of(const char *test)
{
	return test_seed(test, DEFAULT_SEED);
}

/* ---- an encoder for hand-built messages ------------------------------ */

struct enc {
	uint8_t *b;
	size_t len, cap;
};

static void put(struct enc *e, const void *p, size_t n)
{
	if (e->len + n > e->cap) {
		e->cap = (e->len + n) * 2 + 64;
		e->b = realloc(e->b, e->cap);
		ck_assert_ptr_nonnull(e->b);
	}
	memcpy(e->b + e->len, p, n);
	e->len += n;
}

static void u8(struct enc *e, uint8_t v)
{
	put(e, &v, 1);
}

static void u16(struct enc *e, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };

	put(e, b, 2);
}

static void u32(struct enc *e, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };

	put(e, b, 4);
}

static void u64(struct enc *e, uint64_t v)
{
	u32(e, (uint32_t)(v >> 32));
	u32(e, (uint32_t)v);
}

static void str(struct enc *e, const char *s)
{
	put(e, s, strlen(s) + 1);
}

static void text(struct enc *e, const char *s)
{
	u8(e, 't');
	u32(e, (uint32_t)strlen(s));
	put(e, s, strlen(s));
}

static void reset(struct enc *e)
{
	e->len = 0;
}

/* Relation @relid "public.@name" with @n columns c1..cN of type text,
 * column 1 the key. */
static void relation(struct enc *e, uint32_t relid, const char *name, unsigned n)
{
	char col[16];

	reset(e);
	u8(e, 'R');
	u32(e, relid);
	str(e, "public");
	str(e, name);
	u8(e, 'd');
	u16(e, (uint16_t)n);
	for (unsigned i = 0; i < n; i++) {
		snprintf(col, sizeof(col), "c%u", i + 1);
		u8(e, i == 0 ? 1 : 0);
		str(e, col);
		u32(e, 25);
		u32(e, 0xffffffffu);
	}
}

/* Decodes @e in a buffer of exactly its size (so ASan sees over-reads). */
static int dec(struct pgoutput *p, const struct enc *e, struct pgoutput_msg *m)
{
	uint8_t *copy = malloc(e->len ? e->len : 1);
	int rc;

	ck_assert_ptr_nonnull(copy);
	memcpy(copy, e->b, e->len);
	rc = pgoutput_decode(p, copy, e->len, m);
	/* Results point into the input: only look at them through e->b. */
	if (rc == 0 && (m->kind == PGOUTPUT_INSERT || m->kind == PGOUTPUT_UPDATE ||
			m->kind == PGOUTPUT_DELETE)) {
		struct pgoutput_tuple *ts[2] = { &m->change.old_tuple, &m->change.new_tuple };

		for (int t = 0; t < 2; t++)
			for (unsigned i = 0; i < ts[t]->ncolumns; i++) {
				struct pgoutput_value *v =
					(struct pgoutput_value *)&ts[t]->values[i];

				if (v->data)
					v->data = (const char *)e->b + (v->data - (const char *)copy);
			}
	}
	if (rc == 0 && m->kind == PGOUTPUT_ORIGIN)
		m->origin.name = (const char *)e->b + (m->origin.name - (const char *)copy);
	if (rc == 0 && m->kind == PGOUTPUT_TYPE) {
		m->type.nspname = (const char *)e->b + (m->type.nspname - (const char *)copy);
		m->type.name = (const char *)e->b + (m->type.name - (const char *)copy);
	}
	if (rc == 0 && m->kind == PGOUTPUT_MESSAGE) {
		m->message.prefix = (const char *)e->b + (m->message.prefix - (const char *)copy);
		m->message.content = e->b + (m->message.content - copy);
	}
	free(copy);
	return rc;
}

static uint64_t total_errors(const struct pgoutput *p)
{
	uint64_t n = 0;

	for (int k = 0; k < PGOUTPUT_ERR_KINDS; k++)
		n += pgoutput_counters(p)[k];
	return n;
}

/* Decoding @e fails with @errnum, counted once under @kind, the line
 * containing every one of the (NULL-terminated) fragments. */
static void expect_fail(struct pgoutput *p, const struct enc *e, int errnum,
			enum pgoutput_errkind kind, ...)
{
	static const struct pgoutput_msg zero;
	struct pgoutput_msg m;
	uint64_t before = pgoutput_counters(p)[kind], all = total_errors(p);
	const char *frag;
	va_list ap;
	int rc = dec(p, e, &m);

	ck_assert_msg(rc == errnum, "rc %d (%s), expected %d", rc, pgoutput_error(p), errnum);
	ck_assert_uint_eq(pgoutput_counters(p)[kind], before + 1);
	ck_assert_uint_eq(total_errors(p), all + 1);
	ck_assert(memcmp(&m, &zero, sizeof(m)) == 0);
	va_start(ap, kind);
	while ((frag = va_arg(ap, const char *)))
		ck_assert_msg(strstr(pgoutput_error(p), frag), "error \"%s\" lacks \"%s\"",
			      pgoutput_error(p), frag);
	va_end(ap);
}

static void expect_ok(struct pgoutput *p, const struct enc *e, struct pgoutput_msg *m)
{
	int rc = dec(p, e, m);

	ck_assert_msg(rc == 0, "rc %d: %s", rc, pgoutput_error(p));
	ck_assert_str_eq(pgoutput_error(p), "");
}

static bool value_is(const struct pgoutput_value *v, const char *s)
{
	if (!s)
		return v->state == PGOUTPUT_NULL && !v->data && v->len == 0;
	return v->state == PGOUTPUT_TEXT && v->len == strlen(s) && memcmp(v->data, s, v->len) == 0;
}

/* ---- hand-built messages ---------------------------------------------- */

START_TEST(test_each_type)
{
	struct pgoutput *p = pgoutput_new();
	struct enc e = { 0 };
	struct pgoutput_msg m;
	const struct pgoutput_relation *rel;

	ck_assert_ptr_nonnull(p);
	reset(&e);
	u8(&e, 'B');
	u64(&e, 0x16B374D848ULL);
	u64(&e, (uint64_t)-5);
	u32(&e, 4000000000u);
	expect_ok(p, &e, &m);
	ck_assert_int_eq(m.kind, PGOUTPUT_BEGIN);
	ck_assert_uint_eq(m.begin.final_lsn, 0x16B374D848ULL);
	ck_assert_int_eq(m.begin.commit_time, -5);
	ck_assert_uint_eq(m.begin.xid, 4000000000u);

	reset(&e);
	u8(&e, 'C');
	u8(&e, 0);
	u64(&e, 10);
	u64(&e, 20);
	u64(&e, 0x8000000000000000ULL);
	expect_ok(p, &e, &m);
	ck_assert_int_eq(m.kind, PGOUTPUT_COMMIT);
	ck_assert_uint_eq(m.commit.commit_lsn, 10);
	ck_assert_uint_eq(m.commit.end_lsn, 20);
	ck_assert(m.commit.commit_time == INT64_MIN);

	reset(&e);
	u8(&e, 'O');
	u64(&e, 77);
	str(&e, "up");
	expect_ok(p, &e, &m);
	ck_assert_int_eq(m.kind, PGOUTPUT_ORIGIN);
	ck_assert_uint_eq(m.origin.lsn, 77);
	ck_assert_str_eq(m.origin.name, "up");

	reset(&e);
	u8(&e, 'Y');
	u32(&e, 16385);
	str(&e, "");
	str(&e, "mood");
	expect_ok(p, &e, &m);
	ck_assert_int_eq(m.kind, PGOUTPUT_TYPE);
	ck_assert_uint_eq(m.type.oid, 16385);
	ck_assert_str_eq(m.type.nspname, "");
	ck_assert_str_eq(m.type.name, "mood");

	reset(&e);
	u8(&e, 'M');
	u8(&e, 1);
	u64(&e, 99);
	str(&e, "pfx");
	u32(&e, 3);
	put(&e, "a\0b", 3);
	expect_ok(p, &e, &m);
	ck_assert_int_eq(m.kind, PGOUTPUT_MESSAGE);
	ck_assert_uint_eq(m.message.flags, 1);
	ck_assert_uint_eq(m.message.lsn, 99);
	ck_assert_str_eq(m.message.prefix, "pfx");
	ck_assert_uint_eq(m.message.content_len, 3);
	ck_assert(memcmp(m.message.content, "a\0b", 3) == 0);

	/* Relation: the cache holds a copy (the input may go away). */
	reset(&e);
	u8(&e, 'R');
	u32(&e, 16400);
	str(&e, "");
	str(&e, "t");
	u8(&e, 'i');
	u16(&e, 3);
	u8(&e, 1), str(&e, "id"), u32(&e, 23), u32(&e, 0xffffffffu);
	u8(&e, 0), str(&e, "v"), u32(&e, 1043), u32(&e, 24);
	u8(&e, 0), str(&e, "big"), u32(&e, 25), u32(&e, 0xffffffffu);
	expect_ok(p, &e, &m);
	ck_assert_int_eq(m.kind, PGOUTPUT_RELATION);
	rel = m.relation;
	ck_assert_ptr_eq(rel, pgoutput_relation(p, 16400));
	memset(e.b, 0xee, e.len);
	ck_assert_str_eq(rel->nspname, "");
	ck_assert_str_eq(rel->relname, "t");
	ck_assert_int_eq(rel->replident, 'i');
	ck_assert_uint_eq(rel->ncolumns, 3);
	ck_assert_str_eq(rel->columns[0].name, "id");
	ck_assert_uint_eq(rel->columns[0].flags, PGOUTPUT_COLUMN_KEY);
	ck_assert_uint_eq(rel->columns[0].type_oid, 23);
	ck_assert_int_eq(rel->columns[0].typmod, -1);
	ck_assert_str_eq(rel->columns[1].name, "v");
	ck_assert_int_eq(rel->columns[1].typmod, 24);
	ck_assert_str_eq(rel->columns[2].name, "big");
	ck_assert_uint_eq(pgoutput_relation_count(p), 1);

	/* Insert: every value form but 'b'. */
	reset(&e);
	u8(&e, 'I');
	u32(&e, 16400);
	u8(&e, 'N');
	u16(&e, 3);
	text(&e, "7");
	u8(&e, 'n');
	u8(&e, 'u');
	expect_ok(p, &e, &m);
	ck_assert_int_eq(m.kind, PGOUTPUT_INSERT);
	ck_assert_ptr_eq(m.change.rel, rel);
	ck_assert_int_eq(m.change.old_tuple.kind, 0);
	ck_assert_int_eq(m.change.new_tuple.kind, 'N');
	ck_assert_uint_eq(m.change.new_tuple.ncolumns, 3);
	ck_assert(value_is(&m.change.new_tuple.values[0], "7"));
	ck_assert(value_is(&m.change.new_tuple.values[1], NULL));
	ck_assert_int_eq(m.change.new_tuple.values[2].state, PGOUTPUT_UNCHANGED);

	/* Update with each old-tuple form, and none; an empty text. */
	for (int form = 0; form < 3; form++) {
		reset(&e);
		u8(&e, 'U');
		u32(&e, 16400);
		if (form) {
			u8(&e, form == 1 ? 'K' : 'O');
			u16(&e, 3);
			text(&e, "1");
			text(&e, "old");
			u8(&e, 'n');
		}
		u8(&e, 'N');
		u16(&e, 3);
		text(&e, "2");
		text(&e, "");
		u8(&e, 'u');
		expect_ok(p, &e, &m);
		ck_assert_int_eq(m.kind, PGOUTPUT_UPDATE);
		ck_assert_int_eq(m.change.old_tuple.kind, form == 0 ? 0 : form == 1 ? 'K' : 'O');
		if (form) {
			ck_assert(value_is(&m.change.old_tuple.values[0], "1"));
			ck_assert(value_is(&m.change.old_tuple.values[1], "old"));
			ck_assert(value_is(&m.change.old_tuple.values[2], NULL));
		} else {
			ck_assert_uint_eq(m.change.old_tuple.ncolumns, 0);
		}
		ck_assert(value_is(&m.change.new_tuple.values[0], "2"));
		ck_assert(value_is(&m.change.new_tuple.values[1], ""));
		ck_assert_int_eq(m.change.new_tuple.values[2].state, PGOUTPUT_UNCHANGED);
	}

	reset(&e);
	u8(&e, 'D');
	u32(&e, 16400);
	u8(&e, 'K');
	u16(&e, 3);
	text(&e, "9");
	u8(&e, 'n');
	u8(&e, 'n');
	expect_ok(p, &e, &m);
	ck_assert_int_eq(m.kind, PGOUTPUT_DELETE);
	ck_assert_int_eq(m.change.old_tuple.kind, 'K');
	ck_assert_int_eq(m.change.new_tuple.kind, 0);
	ck_assert(value_is(&m.change.old_tuple.values[0], "9"));

	relation(&e, 16500, "u", 1);
	expect_ok(p, &e, &m);
	reset(&e);
	u8(&e, 'T');
	u32(&e, 2);
	u8(&e, 3);
	u32(&e, 16500);
	u32(&e, 16400);
	expect_ok(p, &e, &m);
	ck_assert_int_eq(m.kind, PGOUTPUT_TRUNCATE);
	ck_assert_uint_eq(m.truncate.nrelids, 2);
	ck_assert_uint_eq(m.truncate.options, 3);
	ck_assert_str_eq(m.truncate.rels[0]->relname, "u");
	ck_assert_ptr_eq(m.truncate.rels[1], rel);

	reset(&e);
	u8(&e, 'T');
	u32(&e, 0);
	u8(&e, 0);
	expect_ok(p, &e, &m);
	ck_assert_uint_eq(m.truncate.nrelids, 0);

	ck_assert_uint_eq(total_errors(p), 0);
	free(e.b);
	pgoutput_delete(p);
}
END_TEST

START_TEST(test_errors)
{
	struct pgoutput *p = pgoutput_new();
	struct enc e = { 0 };
	struct pgoutput_msg m;
	const struct pgoutput_relation *rel;

	ck_assert_ptr_nonnull(p);
	relation(&e, 100, "t", 2);
	expect_ok(p, &e, &m);
	rel = m.relation;

	reset(&e);
	expect_fail(p, &e, -EPROTONOSUPPORT, PGOUTPUT_ERR_UNKNOWN_TYPE, "empty", NULL);
	ck_assert_int_eq(pgoutput_decode(p, NULL, 0, &m), -EPROTONOSUPPORT);
	/* Streaming (v2), two-phase (v3) and nonsense types. */
	static const uint8_t unknown[] = { 'S', 'E', 'c', 'A', 'b', 'P', 'K', 'r', 'p', 0, 0xff };
	for (size_t i = 0; i < sizeof(unknown); i++) {
		reset(&e);
		u8(&e, unknown[i]);
		u32(&e, 1);
		expect_fail(p, &e, -EPROTONOSUPPORT, PGOUTPUT_ERR_UNKNOWN_TYPE,
			    "unknown message type", NULL);
	}

	/* Trailing bytes, on every kind of message. */
	reset(&e);
	u8(&e, 'B'), u64(&e, 1), u64(&e, 2), u32(&e, 3), u8(&e, 0);
	expect_fail(p, &e, -EBADMSG, PGOUTPUT_ERR_TRAILING, "begin: 1 bytes after the end", NULL);
	relation(&e, 100, "t2", 2);
	u8(&e, 0);
	expect_fail(p, &e, -EBADMSG, PGOUTPUT_ERR_TRAILING, "relation:", NULL);
	ck_assert_ptr_eq(pgoutput_relation(p, 100), rel);   /* not replaced */
	ck_assert_str_eq(rel->relname, "t");

	/* Unknown relations. */
	reset(&e);
	u8(&e, 'I'), u32(&e, 101), u8(&e, 'N'), u16(&e, 2), u8(&e, 'n'), u8(&e, 'n');
	expect_fail(p, &e, -ENOENT, PGOUTPUT_ERR_UNKNOWN_RELATION, "insert:", "relation id 101",
		    NULL);
	e.b[0] = 'U';
	expect_fail(p, &e, -ENOENT, PGOUTPUT_ERR_UNKNOWN_RELATION, "update:", NULL);
	e.b[0] = 'D';
	e.b[5] = 'O';
	expect_fail(p, &e, -ENOENT, PGOUTPUT_ERR_UNKNOWN_RELATION, "delete:", NULL);
	reset(&e);
	u8(&e, 'T'), u32(&e, 2), u8(&e, 0), u32(&e, 100), u32(&e, 102);
	expect_fail(p, &e, -ENOENT, PGOUTPUT_ERR_UNKNOWN_RELATION, "truncate:", "102", NULL);

	/* Column counts. */
	reset(&e);
	u8(&e, 'I'), u32(&e, 100), u8(&e, 'N'), u16(&e, 3), u8(&e, 'n'), u8(&e, 'n'), u8(&e, 'n');
	expect_fail(p, &e, -EPROTO, PGOUTPUT_ERR_COLUMN_COUNT,
		    "insert: new tuple column count: 3, relation public.t has 2", NULL);
	reset(&e);
	u8(&e, 'U'), u32(&e, 100), u8(&e, 'K'), u16(&e, 1), u8(&e, 'n');
	expect_fail(p, &e, -EPROTO, PGOUTPUT_ERR_COLUMN_COUNT, "update: key tuple column count",
		    NULL);
	reset(&e);
	u8(&e, 'D'), u32(&e, 100), u8(&e, 'O'), u16(&e, 0xffff);
	expect_fail(p, &e, -EINVAL, PGOUTPUT_ERR_INVALID, "delete: old tuple column count: negative",
		    NULL);

	/* Tuple and value kinds. */
	static const struct {
		char type, k1, k2;
	} kinds[] = {
		{ 'I', 'K', 0 }, { 'I', 'O', 0 }, { 'I', 'n', 0 }, { 'U', 'X', 0 },
		{ 'U', 'K', 'K' }, { 'U', 'O', 'O' }, { 'D', 'N', 0 }, { 'D', 0, 0 },
	};
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		reset(&e);
		u8(&e, (uint8_t)kinds[i].type), u32(&e, 100), u8(&e, (uint8_t)kinds[i].k1);
		if (kinds[i].k2) {
			u16(&e, 2), u8(&e, 'n'), u8(&e, 'n');
			u8(&e, (uint8_t)kinds[i].k2);
		}
		u16(&e, 2), u8(&e, 'n'), u8(&e, 'n');
		expect_fail(p, &e, -EPROTO, PGOUTPUT_ERR_BAD_KIND, "tuple kind", NULL);
	}
	reset(&e);
	u8(&e, 'I'), u32(&e, 100), u8(&e, 'N'), u16(&e, 2), u8(&e, 'n'), u8(&e, 'x');
	expect_fail(p, &e, -EPROTO, PGOUTPUT_ERR_BAD_KIND,
		    "insert: new tuple column 2: unknown value kind 0x78", NULL);
	reset(&e);
	u8(&e, 'I'), u32(&e, 100), u8(&e, 'N'), u16(&e, 2), u8(&e, 'b'), u32(&e, 1), u8(&e, 7),
		u8(&e, 'n');
	expect_fail(p, &e, -ENOTSUP, PGOUTPUT_ERR_BINARY, "insert: new tuple column 1: binary",
		    NULL);

	/* Lengths. */
	reset(&e);
	u8(&e, 'I'), u32(&e, 100), u8(&e, 'N'), u16(&e, 2), u8(&e, 't'), u32(&e, 0x80000000u);
	expect_fail(p, &e, -EINVAL, PGOUTPUT_ERR_INVALID,
		    "insert: new tuple column 1: negative length -2147483648", NULL);
	reset(&e);
	u8(&e, 'I'), u32(&e, 100), u8(&e, 'N'), u16(&e, 2), u8(&e, 't'), u32(&e, 5), put(&e, "abcd", 4);
	expect_fail(p, &e, -EBADMSG, PGOUTPUT_ERR_TRUNCATED,
		    "insert: new tuple column 1: length 5 past the end (4 bytes left)", NULL);
	reset(&e);
	u8(&e, 'I'), u32(&e, 100), u8(&e, 'N'), u16(&e, 2), u8(&e, 't'), u32(&e, 0xffffffffu),
		put(&e, "abcd", 4);
	expect_fail(p, &e, -EINVAL, PGOUTPUT_ERR_INVALID, "negative length -1", NULL);
	reset(&e);
	u8(&e, 'M'), u8(&e, 0), u64(&e, 1), str(&e, "p"), u32(&e, 2), u8(&e, 'x');
	expect_fail(p, &e, -EBADMSG, PGOUTPUT_ERR_TRUNCATED, "message: content: length 2", NULL);
	reset(&e);
	u8(&e, 'M'), u8(&e, 0), u64(&e, 1), str(&e, "p"), u32(&e, 0xfffffffeu);
	expect_fail(p, &e, -EINVAL, PGOUTPUT_ERR_INVALID, "message: content length: negative",
		    NULL);
	reset(&e);
	u8(&e, 'O'), u64(&e, 1), put(&e, "abc", 3);
	expect_fail(p, &e, -EBADMSG, PGOUTPUT_ERR_TRUNCATED, "origin: origin name: truncated",
		    NULL);
	reset(&e);
	u8(&e, 'B'), u64(&e, 1), u64(&e, 2), u8(&e, 3);
	expect_fail(p, &e, -EBADMSG, PGOUTPUT_ERR_TRUNCATED,
		    "begin: xid: truncated (4 bytes needed, 1 left)", NULL);

	/* Relation fields. */
	reset(&e);
	u8(&e, 'R'), u32(&e, 0), str(&e, "s"), str(&e, "t"), u8(&e, 'd'), u16(&e, 0);
	expect_fail(p, &e, -EINVAL, PGOUTPUT_ERR_INVALID, "relation: relation id: 0", NULL);
	reset(&e);
	u8(&e, 'R'), u32(&e, 5), str(&e, "s"), str(&e, ""), u8(&e, 'd'), u16(&e, 0);
	expect_fail(p, &e, -EINVAL, PGOUTPUT_ERR_INVALID, "relation: name: empty", NULL);
	reset(&e);
	u8(&e, 'R'), u32(&e, 5), str(&e, "s"), str(&e, "t"), u8(&e, 'x'), u16(&e, 0);
	expect_fail(p, &e, -EPROTO, PGOUTPUT_ERR_BAD_KIND, "relation: replica identity", NULL);
	reset(&e);
	u8(&e, 'R'), u32(&e, 5), str(&e, "s"), str(&e, "t"), u8(&e, 'd'), u16(&e, 0x8000);
	expect_fail(p, &e, -EINVAL, PGOUTPUT_ERR_INVALID, "relation: column count: negative (-32768)",
		    NULL);
	reset(&e);
	u8(&e, 'R'), u32(&e, 5), str(&e, "s"), str(&e, "t"), u8(&e, 'd'), u16(&e, 1), u8(&e, 0),
		str(&e, ""), u32(&e, 25), u32(&e, 0);
	expect_fail(p, &e, -EINVAL, PGOUTPUT_ERR_INVALID, "relation: column 1 name: empty", NULL);
	reset(&e);
	u8(&e, 'R'), u32(&e, 5), str(&e, "s"), str(&e, "t"), u8(&e, 'd'), u16(&e, 2), u8(&e, 0),
		str(&e, "a"), u32(&e, 25), u32(&e, 0), u8(&e, 0), str(&e, "b"), u32(&e, 25);
	expect_fail(p, &e, -EBADMSG, PGOUTPUT_ERR_TRUNCATED, "relation: column 2 (b): truncated",
		    NULL);
	reset(&e);
	u8(&e, 'Y'), u32(&e, 5), str(&e, "s"), str(&e, "");
	expect_fail(p, &e, -EINVAL, PGOUTPUT_ERR_INVALID, "type: name: empty", NULL);
	reset(&e);
	u8(&e, 'T'), u32(&e, 0x80000001u), u8(&e, 0);
	expect_fail(p, &e, -EINVAL, PGOUTPUT_ERR_INVALID, "truncate: relation count: negative",
		    NULL);
	reset(&e);
	u8(&e, 'T'), u32(&e, 3), u8(&e, 0), u32(&e, 100), u32(&e, 100);
	expect_fail(p, &e, -EBADMSG, PGOUTPUT_ERR_TRUNCATED, "truncate: relation ids: truncated",
		    NULL);

	ck_assert_uint_eq(pgoutput_relation_count(p), 1);
	ck_assert_str_eq(pgoutput_errkind_name(PGOUTPUT_ERR_TRUNCATED), "truncated");
	ck_assert_str_eq(pgoutput_errkind_name(PGOUTPUT_ERR_NOMEM), "nomem");
	ck_assert_str_eq(pgoutput_errkind_name(PGOUTPUT_ERR_KINDS), "?");
	/* Every kind but NOMEM (and BOUND: test_bounds) has been seen. */
	for (int k = 0; k < PGOUTPUT_ERR_NOMEM; k++)
		ck_assert_msg(k == PGOUTPUT_ERR_BOUND || pgoutput_counters(p)[k] > 0,
			      "kind %s never counted", pgoutput_errkind_name(k));
	/* A good message clears the line. */
	relation(&e, 100, "t", 2);
	expect_ok(p, &e, &m);
	free(e.b);
	pgoutput_delete(p);
}
END_TEST

/* Names, columns, relations, cached columns: at the bound and one past. */
START_TEST(test_bounds)
{
	struct pgoutput *p = pgoutput_new();
	struct enc e = { 0 };
	struct pgoutput_msg m;
	char name[PGOUTPUT_NAME_MAX + 2];
	uint32_t relid = 1000;
	size_t cached = 0;

	ck_assert_ptr_nonnull(p);
	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	for (int field = 0; field < 3; field++)
		for (int extra = 0; extra < 2; extra++) {
			name[PGOUTPUT_NAME_MAX + extra] = '\0';
			reset(&e);
			u8(&e, 'R'), u32(&e, 7), str(&e, field == 0 ? name : "s");
			str(&e, field == 1 ? name : "t");
			u8(&e, 'f'), u16(&e, 1), u8(&e, 1), str(&e, field == 2 ? name : "c");
			u32(&e, 25), u32(&e, 0);
			if (extra)
				expect_fail(p, &e, -E2BIG, PGOUTPUT_ERR_BOUND, "64 bytes long (at most 63)",
					    NULL);
			else
				expect_ok(p, &e, &m);
			name[PGOUTPUT_NAME_MAX + extra] = 'n';
		}
	ck_assert_uint_eq(pgoutput_relation(p, 7)->ncolumns, 1);
	cached = 1;

	relation(&e, relid, "wide", PGOUTPUT_COLUMNS_MAX + 1);
	expect_fail(p, &e, -E2BIG, PGOUTPUT_ERR_BOUND, "column count: 1665 (at most 1664)", NULL);

	/* Fill the cache's column budget with the widest relations. */
	while (cached + PGOUTPUT_COLUMNS_MAX <= PGOUTPUT_CACHE_COLUMNS_MAX) {
		relation(&e, ++relid, "wide", PGOUTPUT_COLUMNS_MAX);
		expect_ok(p, &e, &m);
		cached += PGOUTPUT_COLUMNS_MAX;
	}
	/* A tuple of the widest relation, all text. */
	reset(&e);
	u8(&e, 'I'), u32(&e, relid), u8(&e, 'N'), u16(&e, PGOUTPUT_COLUMNS_MAX);
	for (int i = 0; i < PGOUTPUT_COLUMNS_MAX; i++)
		text(&e, "v");
	expect_ok(p, &e, &m);
	ck_assert(value_is(&m.change.new_tuple.values[PGOUTPUT_COLUMNS_MAX - 1], "v"));

	relation(&e, ++relid, "rest", (unsigned)(PGOUTPUT_CACHE_COLUMNS_MAX - cached + 1));
	expect_fail(p, &e, -ENOSPC, PGOUTPUT_ERR_BOUND, "columns in all", NULL);
	ck_assert_ptr_null(pgoutput_relation(p, relid));
	relation(&e, relid, "rest", (unsigned)(PGOUTPUT_CACHE_COLUMNS_MAX - cached));
	expect_ok(p, &e, &m);
	/* Full: replacing must fit too; shrinking is fine. */
	relation(&e, 7, "t", 2);
	expect_fail(p, &e, -ENOSPC, PGOUTPUT_ERR_BOUND, "columns in all", NULL);
	relation(&e, relid, "rest", 0);
	expect_ok(p, &e, &m);

	/* Relations: up to the bound, zero-column ones cost no columns. */
	pgoutput_reset(p);
	ck_assert_uint_eq(pgoutput_relation_count(p), 0);
	ck_assert_ptr_null(pgoutput_relation(p, 7));
	for (uint32_t i = 1; i <= PGOUTPUT_RELATIONS_MAX; i++) {
		/* Ids that collide in any hash of the low bits. */
		relation(&e, i << 13, "r", i % 3);
		expect_ok(p, &e, &m);
	}
	ck_assert_uint_eq(pgoutput_relation_count(p), PGOUTPUT_RELATIONS_MAX);
	relation(&e, 1, "r", 0);
	expect_fail(p, &e, -ENOSPC, PGOUTPUT_ERR_BOUND, "cache full (4096 relations)", NULL);
	relation(&e, 5u << 13, "again", 4);
	expect_ok(p, &e, &m);
	for (uint32_t i = 1; i <= PGOUTPUT_RELATIONS_MAX; i++) {
		const struct pgoutput_relation *r = pgoutput_relation(p, i << 13);

		ck_assert_ptr_nonnull(r);
		ck_assert_uint_eq(r->relid, i << 13);
		ck_assert_uint_eq(r->ncolumns, i == 5 ? 4 : i % 3);
	}
	/* A truncate of every cached relation, and one more. */
	reset(&e);
	u8(&e, 'T'), u32(&e, PGOUTPUT_RELATIONS_MAX), u8(&e, 0);
	for (uint32_t i = 1; i <= PGOUTPUT_RELATIONS_MAX; i++)
		u32(&e, i << 13);
	expect_ok(p, &e, &m);
	ck_assert_uint_eq(m.truncate.nrelids, PGOUTPUT_RELATIONS_MAX);
	ck_assert_uint_eq(m.truncate.rels[PGOUTPUT_RELATIONS_MAX - 1]->relid,
			  (uint32_t)PGOUTPUT_RELATIONS_MAX << 13);
	reset(&e);
	u8(&e, 'T'), u32(&e, PGOUTPUT_RELATIONS_MAX + 1), u8(&e, 0);
	expect_fail(p, &e, -E2BIG, PGOUTPUT_ERR_BOUND, "relation count: 4097 (at most 4096)", NULL);
	free(e.b);
	pgoutput_delete(p);
	pgoutput_delete(NULL);
}
END_TEST

/* ---- captured messages ------------------------------------------------- */

struct fix {
	uint8_t *b;  /* exactly len bytes */
	size_t len;
};

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static struct fix *load_fixture(void)
{
	struct fix *f = calloc(NFIX, sizeof(*f));

	ck_assert_ptr_nonnull(f);
	for (size_t i = 0; i < NFIX; i++) {
		const char *h = pgoutput_fixture[i].hex;
		size_t n = strlen(h);

		ck_assert(n % 2 == 0 && n > 0);
		f[i].len = n / 2;
		f[i].b = malloc(f[i].len);
		ck_assert_ptr_nonnull(f[i].b);
		for (size_t j = 0; j < f[i].len; j++) {
			int hi = hexval(h[2 * j]), lo = hexval(h[2 * j + 1]);

			ck_assert(hi >= 0 && lo >= 0);
			f[i].b[j] = (uint8_t)(hi << 4 | lo);
		}
	}
	return f;
}

static void free_fixture(struct fix *f)
{
	for (size_t i = 0; i < NFIX; i++)
		free(f[i].b);
	free(f);
}

/* The 100 kB value: "00001" "00002" ... "20000". */
static char *big_value(void)
{
	char *s = malloc(100001);

	ck_assert_ptr_nonnull(s);
	for (int i = 1; i <= 20000; i++)
		snprintf(s + (i - 1) * 5, 6, "%05d", i);
	return s;
}

/* Replaces the 100 kB value in @obj's members by "@BIG@". */
static void mark_big(json_t *obj, const char *big)
{
	const char *k;
	json_t *v;

	json_object_foreach(obj, k, v)
		if (json_is_string(v) && json_string_length(v) == 100000 &&
		    memcmp(json_string_value(v), big, 100000) == 0)
			json_object_set_new(obj, k, json_string("@BIG@"));
}

/* What gen_pgoutput_fixture.sh's statements produce, in order: the JSON of
 * each change without lsn, xid and commit_time (checked apart). */
#define NOTE "quote \\\" back\\\\ tab\\t \xc3\xa9"
static const char *const expected_changes[] = {
	"{\"new\":{\"big\":null,\"id\":\"1\",\"m\":\"ok\",\"name\":\"alice\",\"note\":null},"
	"\"op\":\"insert\",\"table\":\"public.accounts\"}",
	"{\"new\":{\"big\":\"@BIG@\",\"id\":\"2\",\"m\":null,\"name\":\"bob\",\"note\":\"" NOTE "\"},"
	"\"op\":\"insert\",\"table\":\"public.accounts\"}",
	"{\"new\":{\"id\":\"2\",\"m\":null,\"name\":\"bobby\",\"note\":\"" NOTE "\"},"
	"\"op\":\"update\",\"table\":\"public.accounts\",\"unchanged\":[\"big\"]}",
	"{\"new\":{\"id\":\"3\",\"m\":\"happy\",\"name\":\"bobby\",\"note\":\"" NOTE "\"},"
	"\"old\":{\"id\":\"2\"},\"op\":\"update\",\"table\":\"public.accounts\","
	"\"unchanged\":[\"big\"]}",
	"{\"old\":{\"id\":\"1\"},\"op\":\"delete\",\"table\":\"public.accounts\"}",
	"{\"new\":{\"amount\":\"10.50\",\"id\":\"1\",\"memo\":\"a\"},\"op\":\"insert\","
	"\"table\":\"public.ledger\"}",
	"{\"new\":{\"amount\":null,\"id\":\"2\",\"memo\":\"b\"},\"op\":\"insert\","
	"\"table\":\"public.ledger\"}",
	"{\"new\":{\"amount\":\"11.00\",\"id\":\"1\",\"memo\":\"a\"},"
	"\"old\":{\"amount\":\"10.50\",\"id\":\"1\",\"memo\":\"a\"},\"op\":\"update\","
	"\"table\":\"public.ledger\"}",
	"{\"old\":{\"amount\":null,\"id\":\"2\",\"memo\":\"b\"},\"op\":\"delete\","
	"\"table\":\"public.ledger\"}",
	"{\"new\":{\"amount\":\"1.00\",\"id\":\"3\",\"memo\":\"from upstream\"},\"op\":\"insert\","
	"\"table\":\"public.ledger\"}",
	"{\"old\":{\"id\":\"3\"},\"op\":\"delete\",\"table\":\"public.accounts\"}",
	"{\"cascade\":true,\"op\":\"truncate\",\"restart_identity\":true,"
	"\"tables\":[\"public.accounts\",\"public.ledger\"]}",
	"{\"cascade\":false,\"op\":\"truncate\",\"restart_identity\":false,"
	"\"tables\":[\"public.ledger\"]}",
};

START_TEST(test_fixture)
{
	static const char kinds_expected[] = "BYRICBICBUCBUCBDCBRIIUDCBMCMBOICBDCBYRRTCBRTC";
	struct fix *f = load_fixture();
	struct pgoutput *p = pgoutput_new();
	char kinds[NFIX + 1], *big = big_value();
	size_t nchange = 0;
	bool in_tx = false, seen_state[3] = { false }, seen_tuple[3] = { false };
	struct pgoutput_msg m;
	uint64_t final_lsn = 0, prev_end = 0;
	int64_t commit_time = 0;
	uint32_t xid = 0;
	uint32_t accounts_relid = 0;

	ck_assert_ptr_nonnull(p);
	ck_assert_uint_eq(NFIX, strlen(kinds_expected));
	for (size_t i = 0; i < NFIX; i++) {
		int rc = pgoutput_decode(p, f[i].b, f[i].len, &m);

		ck_assert_msg(rc == 0, "message %zu: %d %s", i, rc, pgoutput_error(p));
		kinds[i] = (char)m.kind;
		switch (m.kind) {
		case PGOUTPUT_BEGIN:
			ck_assert(!in_tx);
			in_tx = true;
			ck_assert_uint_eq(m.begin.xid, pgoutput_fixture[i].xid);
			xid = m.begin.xid;
			final_lsn = m.begin.final_lsn;
			commit_time = m.begin.commit_time;
			ck_assert_uint_gt(final_lsn, prev_end);
			break;
		case PGOUTPUT_COMMIT:
			ck_assert(in_tx);
			in_tx = false;
			ck_assert_uint_eq(m.commit.flags, 0);
			ck_assert_uint_eq(m.commit.commit_lsn, final_lsn);
			ck_assert_uint_gt(m.commit.end_lsn, m.commit.commit_lsn);
			ck_assert_int_eq(m.commit.commit_time, commit_time);
			prev_end = m.commit.end_lsn;
			break;
		case PGOUTPUT_ORIGIN:
			ck_assert(in_tx);
			ck_assert_str_eq(m.origin.name, "upstream");
			ck_assert_uint_eq(m.origin.lsn, 0xABCDEF);
			/* pg_replication_origin_xact_setup's timestamp is the
			 * commit time: 2026-01-01 00:00:00 UTC. */
			ck_assert_int_eq(pgoutput_time_to_unix_us(commit_time),
					 1767225600LL * 1000000);
			break;
		case PGOUTPUT_TYPE:
			ck_assert_str_eq(m.type.nspname, "public");
			ck_assert_str_eq(m.type.name, "mood");
			ck_assert_uint_ge(m.type.oid, 16384);
			break;
		case PGOUTPUT_RELATION:
			if (strcmp(m.relation->relname, "accounts") == 0) {
				const struct pgoutput_relation *r = m.relation;

				ck_assert_str_eq(r->nspname, "public");
				ck_assert_int_eq(r->replident, 'd');
				ck_assert_uint_eq(r->ncolumns, 5);
				ck_assert_str_eq(r->columns[0].name, "id");
				ck_assert_uint_eq(r->columns[0].flags, 1);
				ck_assert_uint_eq(r->columns[0].type_oid, 23);
				ck_assert_str_eq(r->columns[3].name, "big");
				ck_assert_uint_eq(r->columns[3].flags, 0);
				ck_assert_uint_eq(r->columns[3].type_oid, 25);
				ck_assert_str_eq(r->columns[4].name, "m");
				ck_assert_uint_ge(r->columns[4].type_oid, 16384);
				if (accounts_relid)   /* sent again after TRUNCATE */
					ck_assert_uint_eq(r->relid, accounts_relid);
				else
					accounts_relid = r->relid;
				ck_assert_ptr_eq(pgoutput_relation(p, r->relid), r);
			} else {
				const struct pgoutput_relation *r = m.relation;

				ck_assert_str_eq(r->relname, "ledger");
				ck_assert_int_eq(r->replident, 'f');
				ck_assert_uint_eq(r->ncolumns, 3);
				for (int c = 0; c < 3; c++)
					ck_assert_uint_eq(r->columns[c].flags, 1);
				ck_assert_str_eq(r->columns[1].name, "amount");
				ck_assert_uint_eq(r->columns[1].type_oid, 1700);
				ck_assert_int_eq(r->columns[1].typmod, (10 << 16 | 2) + 4);
				ck_assert_str_eq(r->columns[2].name, "memo");
				ck_assert_int_eq(r->columns[2].typmod, 20 + 4);
			}
			break;
		case PGOUTPUT_MESSAGE:
			ck_assert_str_eq(m.message.prefix, "meridian");
			if (m.message.flags & 1) {
				ck_assert(in_tx);
				ck_assert_uint_eq(m.message.content_len, 5);
				ck_assert(memcmp(m.message.content, "hello", 5) == 0);
			} else {
				ck_assert(!in_tx);
				ck_assert_uint_eq(pgoutput_fixture[i].xid, 0);
				ck_assert_uint_eq(m.message.content_len, 9);
			}
			break;
		case PGOUTPUT_INSERT:
		case PGOUTPUT_UPDATE:
		case PGOUTPUT_DELETE:
		case PGOUTPUT_TRUNCATE: {
			json_t *j = NULL, *v;
			char err[128], *text;
			uint64_t lsn;

			ck_assert(in_tx);
			if (m.kind != PGOUTPUT_TRUNCATE) {
				const struct pgoutput_tuple *ts[2] = { &m.change.old_tuple,
								       &m.change.new_tuple };

				for (int t = 0; t < 2; t++) {
					if (ts[t]->kind)
						seen_tuple[ts[t]->kind == 'N' ? 0 :
							   ts[t]->kind == 'K' ? 1 : 2] = true;
					for (unsigned c = 0; c < ts[t]->ncolumns; c++) {
						const struct pgoutput_value *val = &ts[t]->values[c];

						seen_state[val->state == PGOUTPUT_NULL ? 0 :
							   val->state == PGOUTPUT_UNCHANGED ? 1 : 2] =
							true;
						if (val->data)   /* points into the message */
							ck_assert(val->data >= (char *)f[i].b &&
								  val->data + val->len <=
								  (char *)f[i].b + f[i].len);
					}
				}
			}
			ck_assert_uint_lt(nchange, sizeof(expected_changes) / sizeof(char *));
			ck_assert_int_eq(pgoutput_change_json(&m, pgoutput_fixture[i].lsn, xid,
							      pgoutput_time_to_unix_us(commit_time),
							      &j, err, sizeof(err)), 0);
			ck_assert_str_eq(json_string_value(json_object_get(j, "lsn")),
					 pgoutput_fixture[i].lsn);
			ck_assert_int_eq(json_integer_value(json_object_get(j, "xid")), xid);
			v = json_object_get(j, "commit_time");
			ck_assert(json_is_string(v) && json_string_length(v) == 27);
			ck_assert(strncmp(json_string_value(v), "20", 2) == 0);
			ck_assert_int_eq(json_string_value(v)[26], 'Z');
			json_object_del(j, "lsn");
			json_object_del(j, "xid");
			json_object_del(j, "commit_time");
			if (json_object_get(j, "new"))
				mark_big(json_object_get(j, "new"), big);
			text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
			ck_assert_ptr_nonnull(text);
			ck_assert_msg(strcmp(text, expected_changes[nchange]) == 0,
				      "change %zu:\n got %s\nwant %s", nchange, text,
				      expected_changes[nchange]);
			ck_assert_int_eq(lsn_parse(pgoutput_fixture[i].lsn, &lsn), 0);
			ck_assert_uint_le(lsn, final_lsn);  /* a change precedes its commit */
			free(text);
			json_decref(j);
			nchange++;
			break;
		}
		}
		/* Everything but the origin transaction committed during the
		 * capture run. */
		if (m.kind == PGOUTPUT_BEGIN && i + 1 < NFIX && f[i + 1].b[0] != 'O') {
			int64_t unix_s = pgoutput_time_to_unix_us(commit_time) / 1000000;

			ck_assert_int_le(unix_s, PGOUTPUT_FIXTURE_CAPTURED);
			ck_assert_int_ge(unix_s, PGOUTPUT_FIXTURE_CAPTURED - 600);
		}
	}
	kinds[NFIX] = '\0';
	ck_assert_str_eq(kinds, kinds_expected);
	ck_assert(!in_tx);
	ck_assert_uint_eq(nchange, sizeof(expected_changes) / sizeof(char *));
	for (int s = 0; s < 3; s++)
		ck_assert_msg(seen_state[s] && seen_tuple[s], "form %d missing", s);
	ck_assert_uint_eq(pgoutput_relation_count(p), 2);
	ck_assert_uint_eq(total_errors(p), 0);
	free(big);
	pgoutput_delete(p);
	free_fixture(f);
}
END_TEST

/*
 * Every prefix of every captured message fails with -EBADMSG (counted as
 * truncated; the empty one as unknown type) and leaves the cache alone;
 * one byte more is -EBADMSG (trailing).  Each message is cut with the
 * cache as the stream had it, then decoded whole to move on.  A cut at n
 * decodes the message's own buffer with length n, the bytes after n
 * poisoned under ASan (a copy per cut of the 100 kB message would cost
 * gigabytes of memcpy), so a read past the cut is caught.
 */
START_TEST(test_truncations)
{
	struct fix *f = load_fixture();
	struct pgoutput *p = pgoutput_new();
	struct pgoutput_msg m;
	static const struct pgoutput_msg zero;
	size_t cuts = 0;

	ck_assert_ptr_nonnull(p);
	for (size_t i = 0; i < NFIX; i++) {
		uint8_t *longer = malloc(f[i].len + 1);
		size_t nrels = pgoutput_relation_count(p);

		for (size_t n = 0; n < f[i].len; n++) {
			uint64_t tr = pgoutput_counters(p)[PGOUTPUT_ERR_TRUNCATED];
			uint64_t ut = pgoutput_counters(p)[PGOUTPUT_ERR_UNKNOWN_TYPE];
			int rc;

			POISON(f[i].b + n, f[i].len - n);
			rc = pgoutput_decode(p, f[i].b, n, &m);
			UNPOISON(f[i].b, f[i].len);
			ck_assert_msg(rc == (n ? -EBADMSG : -EPROTONOSUPPORT),
				      "message %zu cut at %zu: %d %s", i, n, rc, pgoutput_error(p));
			ck_assert_uint_eq(pgoutput_counters(p)[PGOUTPUT_ERR_TRUNCATED], tr + (n > 0));
			ck_assert_uint_eq(pgoutput_counters(p)[PGOUTPUT_ERR_UNKNOWN_TYPE],
					  ut + (n == 0));
			ck_assert(pgoutput_error(p)[0] != '\0');
			ck_assert(memcmp(&m, &zero, sizeof(m)) == 0);
			ck_assert_uint_eq(pgoutput_relation_count(p), nrels);
			cuts++;
		}
		ck_assert_ptr_nonnull(longer);
		memcpy(longer, f[i].b, f[i].len);
		longer[f[i].len] = 0;
		ck_assert_int_eq(pgoutput_decode(p, longer, f[i].len + 1, &m), -EBADMSG);
		ck_assert_ptr_nonnull(strstr(pgoutput_error(p), "1 bytes after the end"));
		free(longer);
		ck_assert_int_eq(pgoutput_decode(p, f[i].b, f[i].len, &m), 0);
	}
	printf("test_truncations: %zu cuts\n", cuts);
	ck_assert_uint_eq(pgoutput_counters(p)[PGOUTPUT_ERR_TRAILING], NFIX);
	pgoutput_delete(p);
	free_fixture(f);
}
END_TEST

/* Seeded bit flips (1 to 4 bits) of every captured message, decoded in a
 * stream primed by the messages before it: never a crash or an
 * over-read; every failure counted once with a line; every decoded change
 * turns into JSON or fails cleanly. */
START_TEST(test_bitflips)
{
	uint64_t seed = seed_of("test_bitflips"), rng = seed;
	struct fix *f = load_fixture();
	struct pgoutput *p = pgoutput_new();
	struct pgoutput_msg m;
	size_t ok = 0, bad = 0;

	ck_assert_ptr_nonnull(p);
	for (size_t i = 0; i < NFIX; i++) {
		uint8_t *b = malloc(f[i].len);

		ck_assert_ptr_nonnull(b);
		for (int t = 0; t < FLIPS_PER_MESSAGE; t++) {
			uint64_t before = total_errors(p);
			int nflips = 1 + (int)(splitmix64(&rng) % 4), rc;

			memcpy(b, f[i].b, f[i].len);
			for (int k = 0; k < nflips; k++) {
				/* Most flips in the first 64 bytes, where the
				 * structure is. */
				size_t span = f[i].len < 64 || splitmix64(&rng) % 4 ? 
					      (f[i].len < 64 ? f[i].len : 64) : f[i].len;
				uint64_t r = splitmix64(&rng);

				b[r % span] ^= (uint8_t)(1u << ((r >> 32) % 8));
			}
			rc = pgoutput_decode(p, b, f[i].len, &m);
			if (rc) {
				ck_assert_int_lt(rc, 0);
				ck_assert_uint_eq(total_errors(p), before + 1);
				ck_assert(pgoutput_error(p)[0] != '\0');
				bad++;
				continue;
			}
			ok++;
			ck_assert_uint_eq(total_errors(p), before);
			if (m.kind == PGOUTPUT_INSERT || m.kind == PGOUTPUT_UPDATE ||
			    m.kind == PGOUTPUT_DELETE || m.kind == PGOUTPUT_TRUNCATE) {
				json_t *j = NULL;
				char err[128];
				int jr = pgoutput_change_json(&m, "0/0", 1, 0, &j, err, sizeof(err));

				ck_assert_msg(jr == 0 || jr == -EILSEQ, "json %d %s", jr, err);
				ck_assert((jr == 0) == (j != NULL));
				json_decref(j);
			}
		}
		free(b);
		/* Back on the real stream (a flipped Relation may have
		 * replaced a real one). */
		for (size_t k = 0; k <= i; k++)
			if (f[k].b[0] == 'R')
				ck_assert_int_eq(pgoutput_decode(p, f[k].b, f[k].len, &m), 0);
		ck_assert_int_eq(pgoutput_decode(p, f[i].b, f[i].len, &m), 0);
	}
	printf("test_bitflips: %zu decoded, %zu refused\n", ok, bad);
	ck_assert_uint_gt(bad, 0);
	ck_assert_uint_gt(ok, 0);
	pgoutput_delete(p);
	free_fixture(f);
}
END_TEST

/* ---- time and JSON ------------------------------------------------------ */

START_TEST(test_time)
{
	ck_assert_int_eq(pgoutput_time_to_unix_us(0), PGOUTPUT_EPOCH_OFFSET_US);
	ck_assert_int_eq(pgoutput_time_to_unix_us(-PGOUTPUT_EPOCH_OFFSET_US), 0);
	ck_assert(pgoutput_time_to_unix_us(INT64_MAX) == INT64_MAX);
	ck_assert(pgoutput_time_to_unix_us(INT64_MIN) == INT64_MIN);
	ck_assert(pgoutput_time_to_unix_us(INT64_MAX - PGOUTPUT_EPOCH_OFFSET_US) == INT64_MAX);
	ck_assert(pgoutput_time_to_unix_us(INT64_MAX - PGOUTPUT_EPOCH_OFFSET_US + 1) == INT64_MAX);
	ck_assert(pgoutput_time_to_unix_us(INT64_MIN + 1) ==
		  INT64_MIN + 1 + PGOUTPUT_EPOCH_OFFSET_US);
}
END_TEST

/* A decoder with relation 1 = "s.t"(k key, a, b) and @m an Update of it. */
static struct pgoutput *json_setup(struct enc *e, struct pgoutput_msg *m, const char *nsp,
				   const char *bval)
{
	struct pgoutput *p = pgoutput_new();

	ck_assert_ptr_nonnull(p);
	reset(e);
	u8(e, 'R'), u32(e, 1), str(e, nsp), str(e, "t"), u8(e, 'd'), u16(e, 3);
	u8(e, 1), str(e, "k"), u32(e, 23), u32(e, 0xffffffffu);
	u8(e, 0), str(e, "a"), u32(e, 25), u32(e, 0xffffffffu);
	u8(e, 0), str(e, "b"), u32(e, 25), u32(e, 0xffffffffu);
	expect_ok(p, e, m);
	reset(e);
	u8(e, 'U'), u32(e, 1);
	u8(e, 'K'), u16(e, 3), text(e, "1"), u8(e, 'n'), u8(e, 'n');
	u8(e, 'N'), u16(e, 3), text(e, "2"), u8(e, 'u'), text(e, bval);
	expect_ok(p, e, m);
	return p;
}

static char *json_text(const struct pgoutput_msg *m, int64_t t)
{
	json_t *j = NULL;
	char err[128], *s;

	ck_assert_int_eq(pgoutput_change_json(m, "16/B374D848", 4000000000u, t, &j, err,
					      sizeof(err)), 0);
	ck_assert_str_eq(err, "");
	s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(j);
	return s;
}

START_TEST(test_json)
{
	struct enc e = { 0 };
	struct pgoutput_msg m, other;
	struct pgoutput *p = json_setup(&e, &m, "", "x\"y\\\n\xe2\x82\xac");
	json_t *j = (json_t *)1;
	char err[128], *s;

	s = json_text(&m, 0);
	ck_assert_str_eq(s, "{\"commit_time\":\"1970-01-01T00:00:00.000000Z\","
			 "\"lsn\":\"16/B374D848\",\"new\":{\"b\":\"x\\\"y\\\\\\n\xe2\x82\xac\","
			 "\"k\":\"2\"},\"old\":{\"k\":\"1\"},\"op\":\"update\","
			 "\"table\":\"pg_catalog.t\",\"unchanged\":[\"a\"],\"xid\":4000000000}");
	free(s);
	s = json_text(&m, -1);
	ck_assert_ptr_nonnull(strstr(s, "\"1969-12-31T23:59:59.999999Z\""));
	free(s);
	s = json_text(&m, 1763775034123456LL);
	ck_assert_ptr_nonnull(strstr(s, "\"2025-11-22T01:30:34.123456Z\""));
	free(s);
	s = json_text(&m, 253402300799999999LL);   /* the last representable */
	ck_assert_ptr_nonnull(strstr(s, "\"9999-12-31T23:59:59.999999Z\""));
	free(s);
	ck_assert_int_eq(pgoutput_change_json(&m, "0/1", 1, 253402300800000000LL, &j, err,
					      sizeof(err)), -ERANGE);
	ck_assert_ptr_null(j);
	ck_assert_ptr_nonnull(strstr(err, "commit time"));
	ck_assert_int_eq(pgoutput_change_json(&m, "0/1", 1, INT64_MIN, &j, err, sizeof(err)),
			 -ERANGE);
	ck_assert_int_eq(pgoutput_change_json(&m, "0/1", 1, INT64_MAX, &j, err, sizeof(err)),
			 -ERANGE);
	ck_assert_int_eq(pgoutput_change_json(&m, NULL, 1, 0, &j, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(pgoutput_change_json(NULL, "0/1", 1, 0, &j, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(pgoutput_change_json(&m, "0/1", 1, 0, NULL, NULL, 0), -EINVAL);
	ck_assert_int_eq(pgoutput_change_json(&m, "\xff", 1, 0, &j, NULL, 0), -EILSEQ);
	memset(&other, 0, sizeof(other));
	other.kind = PGOUTPUT_BEGIN;
	ck_assert_int_eq(pgoutput_change_json(&other, "0/1", 1, 0, &j, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "'B' is not a change"));
	other.kind = PGOUTPUT_INSERT;   /* no relation */
	ck_assert_int_eq(pgoutput_change_json(&other, "0/1", 1, 0, &j, err, sizeof(err)), -EINVAL);
	pgoutput_delete(p);

	/* Values, names that are not UTF-8 (overlong, surrogate, cut). */
	static const char *const bad[] = { "\xc0\xaf", "\xed\xa0\x80", "\xe2\x82", "\xf4\x90\x80\x80",
					   "\x80", "\xff" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		p = json_setup(&e, &m, "s", bad[i]);
		ck_assert_int_eq(pgoutput_change_json(&m, "0/1", 1, 0, &j, err, sizeof(err)),
				 -EILSEQ);
		ck_assert_ptr_null(j);
		ck_assert_str_eq(err, "column b of t: value not UTF-8");
		pgoutput_delete(p);
		p = json_setup(&e, &m, bad[i], "ok");
		ck_assert_int_eq(pgoutput_change_json(&m, "0/1", 1, 0, &j, err, sizeof(err)),
				 -EILSEQ);
		pgoutput_delete(p);
	}
	/* Valid at every sequence length. */
	p = json_setup(&e, &m, "s", "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
	s = json_text(&m, 0);
	ck_assert_ptr_nonnull(strstr(s, "\"table\":\"s.t\""));
	free(s);
	((struct pgoutput_value *)&m.change.new_tuple.values[2])->len = 0;
	s = json_text(&m, 0);
	ck_assert_ptr_nonnull(strstr(s, "\"b\":\"\""));
	free(s);

	/* Delete 'O': every column; an insert has no "old"/"unchanged". */
	reset(&e);
	u8(&e, 'D'), u32(&e, 1), u8(&e, 'O'), u16(&e, 3), text(&e, "1"), u8(&e, 'n'), text(&e, "z");
	expect_ok(p, &e, &m);
	s = json_text(&m, 0);
	ck_assert_ptr_nonnull(strstr(s, "\"old\":{\"a\":null,\"b\":\"z\",\"k\":\"1\"},"
				     "\"op\":\"delete\""));
	ck_assert_ptr_null(strstr(s, "\"new\""));
	free(s);
	reset(&e);
	u8(&e, 'I'), u32(&e, 1), u8(&e, 'N'), u16(&e, 3), text(&e, "1"), u8(&e, 'n'), text(&e, "z");
	expect_ok(p, &e, &m);
	s = json_text(&m, 0);
	ck_assert_ptr_null(strstr(s, "\"old\""));
	ck_assert_ptr_null(strstr(s, "\"unchanged\""));
	ck_assert_ptr_nonnull(strstr(s, "\"op\":\"insert\""));
	free(s);
	free(e.b);
	pgoutput_delete(p);
}
END_TEST

/* A string of @n bytes of @c, as a JSON value. */
static json_t *filled(size_t n, char c)
{
	char *b = malloc(n);
	json_t *j;

	ck_assert_ptr_nonnull(b);
	memset(b, c, n);
	j = json_stringn(b, n);
	free(b);
	ck_assert_ptr_nonnull(j);
	return j;
}

/* Values too large to travel are left out, largest first, and named. */
START_TEST(test_dump)
{
	const size_t limit = 512u << 10;
	json_t *ev = json_loads("{\"lsn\":\"0/1\",\"xid\":7,\"table\":\"public.t\",\"op\":\"update\","
				"\"new\":{\"id\":\"1\",\"c\":\"x\",\"n\":null},\"old\":{\"id\":\"1\"}}",
				0, NULL);
	json_t *names;
	size_t omitted = 99;
	char *s = NULL;

	ck_assert_ptr_nonnull(ev);
	/* Small: as it is, nothing named. */
	ck_assert_int_eq(pgoutput_change_dump(ev, limit, &s, &omitted), 0);
	ck_assert_uint_eq(omitted, 0);
	ck_assert_ptr_null(strstr(s, "omitted"));
	free(s);

	/* a: 600 KiB in new and old, b: 300 KiB: a goes from both, b stays. */
	json_object_set_new(json_object_get(ev, "new"), "a", filled(600u << 10, 'a'));
	json_object_set_new(json_object_get(ev, "old"), "a", filled(600u << 10, 'a'));
	json_object_set_new(json_object_get(ev, "new"), "b", filled(300u << 10, 'b'));
	ck_assert_int_eq(pgoutput_change_dump(ev, limit, &s, &omitted), 0);
	ck_assert_uint_eq(omitted, 2);
	ck_assert_uint_le(strlen(s), limit);
	free(s);
	names = json_object_get(ev, "omitted");
	ck_assert_uint_eq(json_array_size(names), 1);
	ck_assert_str_eq(json_string_value(json_array_get(names, 0)), "a");
	ck_assert_ptr_null(json_object_get(json_object_get(ev, "new"), "a"));
	ck_assert_ptr_null(json_object_get(json_object_get(ev, "old"), "a"));
	ck_assert_uint_eq(json_string_length(json_object_get(json_object_get(ev, "new"), "b")),
			  300u << 10);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(ev, "new"), "id")), "1");

	/* Escapes count: 100 KiB of control bytes is 600 KiB of JSON. */
	json_object_set_new(json_object_get(ev, "new"), "ctl", filled(100u << 10, '\x01'));
	ck_assert_int_eq(pgoutput_change_dump(ev, limit, &s, &omitted), 0);
	ck_assert_uint_eq(omitted, 1);
	ck_assert_uint_le(strlen(s), limit);
	ck_assert_ptr_null(json_object_get(json_object_get(ev, "new"), "ctl"));
	ck_assert_uint_eq(json_array_size(json_object_get(ev, "omitted")), 2);
	free(s);

	/* Many middling values: the largest go first, and only as many as must. */
	for (int i = 0; i < 60; i++) {
		char key[16];

		snprintf(key, sizeof(key), "m%02d", i);
		json_object_set_new(json_object_get(ev, "new"), key, filled(16u << 10, 'm'));
	}
	ck_assert_int_eq(pgoutput_change_dump(ev, limit, &s, &omitted), 0);
	ck_assert_uint_le(strlen(s), limit);
	ck_assert_uint_ge(strlen(s), limit - (40u << 10));
	/* b (300 KiB) first, then 28 or 29 of 60 x 16 KiB. */
	ck_assert_ptr_null(json_object_get(json_object_get(ev, "new"), "b"));
	ck_assert_uint_ge(omitted, 29);
	ck_assert_uint_le(omitted, 31);
	free(s);

	/* Cannot fit even without values. */
	ck_assert_int_eq(pgoutput_change_dump(ev, 16, &s, &omitted), -EMSGSIZE);
	ck_assert_ptr_null(s);
	json_decref(ev);

	/* No values to leave out at all (a truncate): -EMSGSIZE, nothing
	 * sorted (a fuzzer found qsort given NULL). */
	ev = json_loads("{\"lsn\":\"0/1\",\"op\":\"truncate\",\"tables\":[\"public.t\"]}",
			0, NULL);
	ck_assert_ptr_nonnull(ev);
	ck_assert_int_eq(pgoutput_change_dump(ev, 8, &s, &omitted), -EMSGSIZE);
	ck_assert_uint_eq(omitted, 0);
	json_decref(ev);
}
END_TEST

static Suite *pgoutput_suite(void)
{
	Suite *s = suite_create("pgoutput");
	TCase *tc = tcase_create("pgoutput");

	tcase_add_test(tc, test_each_type);
	tcase_add_test(tc, test_errors);
	tcase_add_test(tc, test_bounds);
	tcase_add_test(tc, test_fixture);
	tcase_add_test(tc, test_truncations);
	tcase_add_test(tc, test_bitflips);
	tcase_add_test(tc, test_time);
	tcase_add_test(tc, test_json);
	tcase_add_test(tc, test_dump);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(pgoutput_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
