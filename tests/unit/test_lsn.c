/*
 * tests/unit/test_lsn.c - LSN text and LSN waiters (storage/lsn.h), in
 * fake time.
 *
 * Covered: parsing (every malformed shape refused, both cases, the
 * 8-digit limits) and formatting as Postgres prints, round trips; firing
 * in LSN order with ties in the order added; timeouts in deadline order;
 * cancel (before, during, unknown and stale ids; ids never 0, never
 * reused); re-entrant callbacks (cancel, add, advance, expire, delete
 * from inside); the max_waiters bound; a backwards replay LSN ignored;
 * and a random property test that drives the real structure and a naive
 * model in lockstep, callbacks included, and checks every callback and
 * every read-only answer against the model.
 *
 * Seeded: MERIDIAN_SEED (decimal or 0x...) or a fixed default, printed.
 */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/lsn.h"
#include "tests/seed_testutil.h"

#define DEFAULT_SEED 0x4c534e5741495431ULL  /* "LSNWAIT1" */

static uint64_t seed_of(const char *test)
{
	return test_seed(test, DEFAULT_SEED);
}

static uint64_t below(uint64_t *rng, uint64_t n)
{
	return n ? splitmix64(rng) % n : 0;
}

/* ------------------------------------------------------------------ */
/* Text                                                                */
/* ------------------------------------------------------------------ */

START_TEST(test_parse)
{
	static const struct {
		const char *s;
		uint64_t v;
	} good[] = {
		{ "16/B374D848", 0x16B374D848ULL },
		{ "16/b374d848", 0x16B374D848ULL },
		{ "0/0", 0 },
		{ "0/1", 1 },
		{ "1/0", 1ULL << 32 },
		{ "FFFFFFFF/FFFFFFFF", UINT64_MAX },
		{ "00000000/00000001", 1 },
		{ "aBcDeF01/23456789", 0xABCDEF0123456789ULL },
	};
	static const char *const bad[] = {
		"", "/", "0", "0/", "/0", "123456789/0", "0/123456789", "1/2/3", " 1/2", "1/2 ",
		"1 /2", "1/ 2", "g/1", "1/g", "0x1/2", "1/0x2", "-1/2", "+1/2", "1/-2", "1//2",
		"1\\2", "1/2\n", "1:2", "\xc3\xa9/1",
	};
	uint64_t v;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		v = 42;
		ck_assert_msg(lsn_parse(good[i].s, &v) == 0, "refused %s", good[i].s);
		ck_assert_msg(v == good[i].v, "%s -> %" PRIx64, good[i].s, v);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = 42;
		ck_assert_msg(lsn_parse(bad[i], &v) == -EINVAL, "accepted \"%s\"", bad[i]);
		ck_assert_uint_eq(v, 42);       /* left alone */
	}
	ck_assert_int_eq(lsn_parse(NULL, &v), -EINVAL);
	ck_assert_int_eq(lsn_parse("0/0", NULL), -EINVAL);
}
END_TEST

START_TEST(test_format)
{
	char s[LSN_STR_MAX];
	uint64_t rng = seed_of("test_format"), v;

	lsn_format(0, s);
	ck_assert_str_eq(s, "0/0");
	lsn_format(0x16B374D848ULL, s);
	ck_assert_str_eq(s, "16/B374D848");
	lsn_format(UINT64_MAX, s);
	ck_assert_str_eq(s, "FFFFFFFF/FFFFFFFF");
	ck_assert_uint_eq(strlen(s) + 1, 18);
	lsn_format(1ULL << 32, s);
	ck_assert_str_eq(s, "1/0");
	for (int i = 0; i < 10000; i++) {
		uint64_t x = splitmix64(&rng);

		/* Some with a small high or low half. */
		if (i % 3 == 1)
			x >>= 32;
		else if (i % 3 == 2)
			x &= 0xFFFFFFFF00000000ULL;
		lsn_format(x, s);
		ck_assert_int_eq(lsn_parse(s, &v), 0);
		ck_assert_uint_eq(v, x);
	}
}
END_TEST

/* ------------------------------------------------------------------ */
/* Waiters, by hand                                                    */
/* ------------------------------------------------------------------ */

#define LOG_MAX 64

struct fired {
	int tag;
	int status;
	uint64_t replay;
};

static struct fired fired_log[LOG_MAX];
static int nfired;

/* What a callback does besides logging (re-entrancy tests). */
static struct lsnwait *cb_w;
static uint64_t cb_cancel_id;           /* cancel this id from the first callback */
static int cb_add_tag;                  /* add one waiter from the first callback */
static uint64_t cb_add_lsn, cb_add_deadline, cb_added_id;
static uint64_t cb_advance_to;          /* advance from the first callback */
static uint64_t cb_expire_at;           /* expire from the first callback */
static bool cb_delete;                  /* delete from the first callback */
static bool cb_armed;

static void on_fire(void *arg, int status, uint64_t replay);

static void reset_log(void)
{
	nfired = 0;
	cb_w = NULL;
	cb_cancel_id = 0;
	cb_add_tag = 0;
	cb_advance_to = 0;
	cb_expire_at = 0;
	cb_delete = false;
	cb_armed = false;
}

static void on_fire(void *arg, int status, uint64_t replay)
{
	ck_assert_int_lt(nfired, LOG_MAX);
	fired_log[nfired].tag = (int)(intptr_t)arg;
	fired_log[nfired].status = status;
	fired_log[nfired].replay = replay;
	nfired++;
	if (!cb_armed)
		return;
	cb_armed = false;
	if (cb_cancel_id)
		lsnwait_cancel(cb_w, cb_cancel_id);
	if (cb_add_tag)
		ck_assert_int_eq(lsnwait_add(cb_w, cb_add_lsn, cb_add_deadline, on_fire,
					     (void *)(intptr_t)cb_add_tag, &cb_added_id), 0);
	if (cb_advance_to)
		lsnwait_advance(cb_w, cb_advance_to);
	if (cb_expire_at)
		lsnwait_expire(cb_w, cb_expire_at);
	if (cb_delete)
		lsnwait_delete(cb_w);
}

static uint64_t add(struct lsnwait *w, uint64_t lsn, uint64_t deadline, int tag)
{
	uint64_t id = 0;

	ck_assert_int_eq(lsnwait_add(w, lsn, deadline, on_fire, (void *)(intptr_t)tag, &id), 0);
	ck_assert_uint_ne(id, 0);
	return id;
}

static void expect_tags(const int *tags, int n, int status)
{
	ck_assert_msg(nfired == n, "fired %d, want %d", nfired, n);
	for (int i = 0; i < n; i++) {
		ck_assert_msg(fired_log[i].tag == tags[i], "fire %d: tag %d, want %d", i,
			      fired_log[i].tag, tags[i]);
		ck_assert_int_eq(fired_log[i].status, status);
	}
}

START_TEST(test_lsn_order)
{
	struct lsnwait *w = lsnwait_new(16);
	static const int first[] = { 5, 3, 4, 7 }, second[] = { 1, 2, 6 };

	reset_log();
	ck_assert_ptr_nonnull(w);
	ck_assert_uint_eq(lsnwait_last(w), 0);
	ck_assert_uint_eq(lsnwait_min_lsn(w), UINT64_MAX);
	ck_assert_uint_eq(lsnwait_next_deadline(w), UINT64_MAX);
	add(w, 500, 1000, 1);
	add(w, 700, 1000, 2);
	add(w, 300, 1000, 3);
	add(w, 300, 1000, 4);         /* tie with 3: after it */
	add(w, 100, 1000, 5);
	add(w, 900, 1000, 6);
	add(w, 300, 1000, 7);         /* tie again */
	ck_assert_uint_eq(lsnwait_count(w), 7);
	ck_assert_uint_eq(lsnwait_min_lsn(w), 100);

	lsnwait_advance(w, 99);
	ck_assert_int_eq(nfired, 0);
	ck_assert_uint_eq(lsnwait_last(w), 99);
	lsnwait_advance(w, 300);      /* exactly reached counts */
	expect_tags(first, 4, 0);
	for (int i = 0; i < 4; i++)
		ck_assert_uint_eq(fired_log[i].replay, 300);
	ck_assert_uint_eq(lsnwait_min_lsn(w), 500);
	ck_assert(lsnwait_reached(w, 300));
	ck_assert(!lsnwait_reached(w, 301));

	nfired = 0;
	lsnwait_advance(w, 1ULL << 40);
	expect_tags(second, 3, 0);
	ck_assert_uint_eq(fired_log[0].replay, 1ULL << 40);
	ck_assert_uint_eq(lsnwait_count(w), 0);
	ck_assert_uint_eq(lsnwait_min_lsn(w), UINT64_MAX);
	ck_assert_uint_eq(lsnwait_next_deadline(w), UINT64_MAX);
	lsnwait_delete(w);
	lsnwait_delete(NULL);
}
END_TEST

START_TEST(test_timeouts)
{
	struct lsnwait *w = lsnwait_new(16);
	static const int first[] = { 2, 4, 1 }, second[] = { 3 };

	reset_log();
	add(w, 500, 300, 1);
	add(w, 100, 200, 2);
	add(w, 900, 400, 3);
	add(w, 50, 200, 4);           /* deadline tie with 2: after it */
	ck_assert_uint_eq(lsnwait_next_deadline(w), 200);
	lsnwait_advance(w, 40);
	lsnwait_expire(w, 199);
	ck_assert_int_eq(nfired, 0);
	lsnwait_expire(w, 300);
	expect_tags(first, 3, -ETIMEDOUT);
	for (int i = 0; i < 3; i++)
		ck_assert_uint_eq(fired_log[i].replay, 40);   /* the last known */
	ck_assert_uint_eq(lsnwait_next_deadline(w), 400);
	ck_assert_uint_eq(lsnwait_min_lsn(w), 900);
	nfired = 0;
	lsnwait_expire(w, 300);       /* again: nothing */
	ck_assert_int_eq(nfired, 0);
	lsnwait_expire(w, UINT64_MAX);
	expect_tags(second, 1, -ETIMEDOUT);
	ck_assert_uint_eq(lsnwait_count(w), 0);
	lsnwait_delete(w);
}
END_TEST

START_TEST(test_cancel)
{
	struct lsnwait *w = lsnwait_new(4);
	uint64_t a, b, c, ids[400];
	static const int rest[] = { 1, 3 };

	reset_log();
	a = add(w, 100, 1000, 1);
	b = add(w, 200, 500, 2);
	c = add(w, 300, 1000, 3);
	ck_assert(a != b && b != c && a != c);
	lsnwait_cancel(w, b);
	lsnwait_cancel(w, b);         /* twice: no-op */
	lsnwait_cancel(w, 0);
	lsnwait_cancel(w, 12345678);
	lsnwait_cancel(w, UINT64_MAX);
	lsnwait_cancel(NULL, a);
	ck_assert_uint_eq(lsnwait_count(w), 2);
	ck_assert_uint_eq(lsnwait_next_deadline(w), 1000);
	lsnwait_expire(w, 999);
	lsnwait_advance(w, 1000);
	expect_tags(rest, 2, 0);
	lsnwait_cancel(w, a);         /* already fired: no-op */
	ck_assert_uint_eq(lsnwait_count(w), 0);

	/* Slots are reused, ids never: 400 adds through 4 slots. */
	for (int i = 0; i < 400; i++) {
		ids[i] = add(w, 2000 + (uint64_t)i, 5000, 9);
		for (int j = 0; j < i; j++)
			ck_assert_uint_ne(ids[i], ids[j]);
		if (i > 0)
			lsnwait_cancel(w, ids[i - 1]);
		/* A stale id never touches the slot's new waiter. */
		if (i >= 2)
			lsnwait_cancel(w, ids[i - 2]);
		ck_assert_uint_le(lsnwait_count(w), 1);
		ck_assert_uint_eq(lsnwait_min_lsn(w), 2000 + (uint64_t)i);
	}
	lsnwait_delete(w);
}
END_TEST

START_TEST(test_bounds)
{
	struct lsnwait *w;
	uint64_t id = 7;

	reset_log();
	ck_assert_ptr_null(lsnwait_new(0));
	ck_assert_ptr_null(lsnwait_new((size_t)LSNWAIT_MAX_WAITERS + 1));
	w = lsnwait_new(3);
	ck_assert_ptr_nonnull(w);
	add(w, 10, 100, 1);
	add(w, 20, 100, 2);
	add(w, 30, 100, 3);
	ck_assert_int_eq(lsnwait_add(w, 40, 100, on_fire, NULL, &id), -EAGAIN);
	ck_assert_uint_eq(id, 7);
	ck_assert_int_eq(lsnwait_add(w, 40, 100, NULL, NULL, &id), -EINVAL);
	ck_assert_int_eq(lsnwait_add(NULL, 40, 100, on_fire, NULL, &id), -EINVAL);
	ck_assert_uint_eq(lsnwait_count(w), 3);
	lsnwait_advance(w, 10);
	ck_assert_int_eq(nfired, 1);
	/* Room for one again; a NULL id pointer is fine. */
	ck_assert_int_eq(lsnwait_add(w, 40, 100, on_fire, (void *)4, NULL), 0);
	ck_assert_int_eq(lsnwait_add(w, 50, 100, on_fire, NULL, NULL), -EAGAIN);
	lsnwait_delete(w);           /* with waiters: no callback, no leak */
	ck_assert_int_eq(nfired, 1);

	/* NULL-tolerant readers. */
	ck_assert_uint_eq(lsnwait_count(NULL), 0);
	ck_assert_uint_eq(lsnwait_last(NULL), 0);
	ck_assert_uint_eq(lsnwait_min_lsn(NULL), UINT64_MAX);
	ck_assert_uint_eq(lsnwait_next_deadline(NULL), UINT64_MAX);
	ck_assert(!lsnwait_reached(NULL, 0));
	lsnwait_advance(NULL, 1);
	lsnwait_expire(NULL, 1);
}
END_TEST

START_TEST(test_backwards)
{
	struct lsnwait *w = lsnwait_new(8);
	static const int late[] = { 2 };

	reset_log();
	ck_assert(lsnwait_reached(w, 0));
	ck_assert(!lsnwait_reached(w, 1));
	add(w, 150, 1000, 1);
	lsnwait_advance(w, 100);
	lsnwait_advance(w, 50);       /* an older answer: ignored */
	ck_assert_uint_eq(lsnwait_last(w), 100);
	ck_assert(lsnwait_reached(w, 100));
	ck_assert_int_eq(nfired, 0);
	lsnwait_advance(w, 0);
	ck_assert_uint_eq(lsnwait_last(w), 100);

	/* Against the contract, a reached LSN added anyway: no call from
	 * add(), fired by the next advance whatever its value. */
	add(w, 80, 1000, 2);
	ck_assert_int_eq(nfired, 0);
	lsnwait_advance(w, 10);
	expect_tags(late, 1, 0);
	ck_assert_uint_eq(fired_log[0].replay, 100);
	ck_assert_uint_eq(lsnwait_last(w), 100);
	ck_assert_uint_eq(lsnwait_count(w), 1);       /* 150 still waits */
	lsnwait_delete(w);
}
END_TEST

START_TEST(test_reentrant)
{
	struct lsnwait *w = lsnwait_new(8);
	uint64_t later;
	static const int t1[] = { 1, 3 }, t2[] = { 10 }, t3[] = { 1, 2, 20, 3 };
	static const int t4[] = { 1, 2, 30 }, t5[] = { 1 };

	/* A callback cancels a waiter due in the same advance. */
	reset_log();
	cb_w = w;
	add(w, 10, 1000, 1);
	later = add(w, 20, 1000, 2);
	add(w, 30, 1000, 3);
	cb_cancel_id = later;
	cb_armed = true;
	lsnwait_advance(w, 100);
	expect_tags(t1, 2, 0);
	ck_assert_uint_eq(lsnwait_count(w), 0);

	/* A callback adds one already reached: not fired by the running
	 * advance (it would never end), fired by the next. */
	reset_log();
	cb_w = w;
	add(w, 110, 1000, 1);
	cb_add_tag = 10;
	cb_add_lsn = 105;
	cb_add_deadline = 1000;
	cb_armed = true;
	lsnwait_advance(w, 200);
	ck_assert_int_eq(nfired, 1);
	ck_assert_uint_eq(lsnwait_count(w), 1);
	ck_assert_uint_eq(lsnwait_min_lsn(w), 105);   /* back in the heaps */
	nfired = 0;
	lsnwait_advance(w, 200);
	expect_tags(t2, 1, 0);

	/* A callback advances further: the nested call fires what it can
	 * (in order, and the one added just before it), then the outer one
	 * goes on. */
	reset_log();
	cb_w = w;
	add(w, 210, 1000, 1);
	add(w, 220, 1000, 2);
	add(w, 400, 1000, 3);
	cb_add_tag = 20;
	cb_add_lsn = 300;
	cb_add_deadline = 1000;
	cb_advance_to = 500;
	cb_armed = true;
	lsnwait_advance(w, 215);
	expect_tags(t3, 4, 0);
	ck_assert_uint_eq(fired_log[0].replay, 215);
	ck_assert_uint_eq(fired_log[1].replay, 500);
	ck_assert_uint_eq(lsnwait_last(w), 500);
	ck_assert_uint_eq(lsnwait_count(w), 0);

	/* A callback of advance() expires: the expired fire inside. */
	reset_log();
	cb_w = w;
	add(w, 510, 1000, 1);
	add(w, 900, 50, 2);
	add(w, 520, 1000, 30);
	cb_expire_at = 60;
	cb_armed = true;
	lsnwait_advance(w, 600);
	ck_assert_int_eq(nfired, 3);
	ck_assert_int_eq(fired_log[0].tag, t4[0]);
	ck_assert_int_eq(fired_log[1].tag, t4[1]);
	ck_assert_int_eq(fired_log[1].status, -ETIMEDOUT);
	ck_assert_int_eq(fired_log[2].tag, t4[2]);
	ck_assert_int_eq(fired_log[2].status, 0);

	/* A callback deletes the whole thing: no more callbacks, freed when
	 * the advance returns (ASan checks both). */
	reset_log();
	cb_w = w;
	add(w, 610, 1000, 1);
	add(w, 620, 1000, 2);
	add(w, 630, 1000, 3);
	cb_delete = true;
	cb_armed = true;
	lsnwait_advance(w, 700);
	expect_tags(t5, 1, 0);
}
END_TEST

START_TEST(test_delete_in_expire)
{
	struct lsnwait *w = lsnwait_new(8);
	static const int t[] = { 1 };

	reset_log();
	cb_w = w;
	add(w, 10, 100, 1);
	add(w, 10, 100, 2);
	cb_delete = true;
	cb_armed = true;
	lsnwait_expire(w, 100);
	expect_tags(t, 1, -ETIMEDOUT);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Property test: the real thing and a naive model in lockstep          */
/* ------------------------------------------------------------------ */

#define P_CAP 10
#define P_STEPS 20000
#define P_RECENT 64
#define P_DEPTH 3

struct mwaiter {
	uint64_t id, lsn, deadline, seq;
};

struct frame {
	bool by_lsn;
	uint64_t upto, limit;
};

static struct {
	struct lsnwait *w;
	struct mwaiter live[P_CAP];
	size_t nlive;
	uint64_t next_seq, last, now;
	struct frame frames[P_DEPTH + 2];
	int depth;
	uint64_t recent[P_RECENT];    /* ids added lately, for cancels */
	unsigned nrecent;
	uint64_t rng;
	uint64_t fires, cancels, nested, rejected, violations;
	bool quiet;                   /* callbacks do nothing more (draining) */
} P;

static void p_check_readers(void)
{
	uint64_t min_lsn = UINT64_MAX, min_dl = UINT64_MAX;

	ck_assert_uint_eq(lsnwait_count(P.w), P.nlive);
	ck_assert_uint_eq(lsnwait_last(P.w), P.last);
	if (P.depth > 0)
		return;       /* parked waiters may hide from the min readers */
	for (size_t i = 0; i < P.nlive; i++) {
		if (P.live[i].lsn < min_lsn)
			min_lsn = P.live[i].lsn;
		if (P.live[i].deadline < min_dl)
			min_dl = P.live[i].deadline;
	}
	ck_assert_uint_eq(lsnwait_min_lsn(P.w), min_lsn);
	ck_assert_uint_eq(lsnwait_next_deadline(P.w), min_dl);
}

/* The model's next waiter due in frame @f, or -1. */
static long p_next_due(const struct frame *f)
{
	long best = -1;

	for (size_t i = 0; i < P.nlive; i++) {
		const struct mwaiter *m = &P.live[i];
		uint64_t key = f->by_lsn ? m->lsn : m->deadline;

		if (key > f->upto || m->seq >= f->limit)
			continue;
		if (best < 0) {
			best = (long)i;
			continue;
		}
		const struct mwaiter *b = &P.live[best];
		uint64_t bkey = f->by_lsn ? b->lsn : b->deadline;

		if (key < bkey || (key == bkey && m->seq < b->seq))
			best = (long)i;
	}
	return best;
}

static void p_remove(size_t i)
{
	P.live[i] = P.live[--P.nlive];
}

static void p_on_fire(void *arg, int status, uint64_t replay);

static void p_add(uint64_t lsn, uint64_t deadline)
{
	uint64_t id = 0;
	/* The arg names the waiter by the seq the model gives it. */
	int rc = lsnwait_add(P.w, lsn, deadline, p_on_fire, (void *)(uintptr_t)P.next_seq, &id);

	if (P.nlive == P_CAP) {
		ck_assert_int_eq(rc, -EAGAIN);
		P.rejected++;
		return;
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_uint_ne(id, 0);
	for (size_t i = 0; i < P.nlive; i++)
		ck_assert_uint_ne(P.live[i].id, id);
	if (lsn <= P.last)
		P.violations++;
	P.live[P.nlive++] = (struct mwaiter){ id, lsn, deadline, P.next_seq++ };
	P.recent[P.nrecent++ % P_RECENT] = id;
}

static void p_cancel(void)
{
	uint64_t id;

	if (P.nrecent == 0)
		return;
	id = P.recent[below(&P.rng, P.nrecent < P_RECENT ? P.nrecent : P_RECENT)];
	lsnwait_cancel(P.w, id);
	for (size_t i = 0; i < P.nlive; i++)
		if (P.live[i].id == id) {
			p_remove(i);
			P.cancels++;
			break;
		}
}

static void p_fire_call(bool by_lsn, uint64_t x)
{
	struct frame *f = &P.frames[P.depth++];

	ck_assert_int_le(P.depth, P_DEPTH + 1);
	if (by_lsn && x > P.last)
		P.last = x;
	f->by_lsn = by_lsn;
	f->upto = by_lsn ? P.last : x;
	f->limit = P.next_seq;
	if (by_lsn)
		lsnwait_advance(P.w, x);
	else
		lsnwait_expire(P.w, x);
	/* Everything due and old enough has fired. */
	ck_assert_msg(p_next_due(f) < 0, "a due waiter was left behind");
	P.depth--;
	p_check_readers();
}

static uint64_t p_lsn_near(void)
{
	/* Mostly ahead of the replay LSN, sometimes (against the contract)
	 * behind it; a narrow range so that ties are common. */
	uint64_t base = P.last > 20 ? P.last - 20 : 0;

	return base + below(&P.rng, 80);
}

static void p_action(bool in_callback)
{
	uint64_t r = below(&P.rng, 100);

	if (r < (in_callback ? 15u : 40u)) {
		p_add(p_lsn_near(), P.now + below(&P.rng, 150));
	} else if (r < (in_callback ? 30u : 55u)) {
		p_cancel();
	} else if (r < (in_callback ? 38u : 75u)) {
		if (in_callback && P.depth > P_DEPTH)
			return;
		P.nested += in_callback;
		/* Sometimes backwards (ignored). */
		p_fire_call(true, below(&P.rng, 8) == 0 ? P.last / 2 : P.last + below(&P.rng, 25));
	} else if (r < (in_callback ? 44u : 95u)) {
		if (in_callback && P.depth > P_DEPTH)
			return;
		P.nested += in_callback;
		P.now += below(&P.rng, 20);
		p_fire_call(false, P.now);
	} else if (!in_callback) {
		P.now += below(&P.rng, 40);
	}
}

static void p_on_fire(void *arg, int status, uint64_t replay)
{
	struct frame *f;
	long i;

	ck_assert_int_gt(P.depth, 0);
	f = &P.frames[P.depth - 1];
	i = p_next_due(f);
	ck_assert_msg(i >= 0, "a callback the model did not expect");
	ck_assert_msg(P.live[i].seq == (uint64_t)(uintptr_t)arg,
		      "fired waiter #%" PRIu64 ", the model expected #%" PRIu64,
		      (uint64_t)(uintptr_t)arg, P.live[i].seq);
	ck_assert_int_eq(status, f->by_lsn ? 0 : -ETIMEDOUT);
	ck_assert_uint_eq(replay, P.last);
	p_remove((size_t)i);
	P.fires++;
	ck_assert_uint_eq(lsnwait_count(P.w), P.nlive);
	/* Re-entrant work, sometimes. */
	if (!P.quiet && below(&P.rng, 3) == 0)
		p_action(true);
}

START_TEST(test_property)
{
	uint64_t seed = seed_of("test_property");

	for (int round = 0; round < 4; round++) {
		memset(&P, 0, sizeof(P));
		P.rng = seed + (uint64_t)round;
		P.w = lsnwait_new(P_CAP);
		ck_assert_ptr_nonnull(P.w);
		for (int step = 0; step < P_STEPS; step++)
			p_action(false);
		/* Drain. */
		P.quiet = true;
		p_fire_call(false, UINT64_MAX);
		ck_assert_uint_eq(P.nlive, 0);
		printf("round %d: %" PRIu64 " fires, %" PRIu64 " cancels, %" PRIu64
		       " nested calls, %" PRIu64 " rejected, %" PRIu64 " reached-on-add\n",
		       round, P.fires, P.cancels, P.nested, P.rejected, P.violations);
		fflush(stdout);
		ck_assert_uint_gt(P.fires, 1000);
		ck_assert_uint_gt(P.nested, 100);
		ck_assert_uint_gt(P.rejected, 0);
		lsnwait_delete(P.w);
	}
}
END_TEST

static Suite *lsn_suite(void)
{
	Suite *s = suite_create("lsn");
	TCase *tc = tcase_create("lsn");

	tcase_add_test(tc, test_parse);
	tcase_add_test(tc, test_format);
	tcase_add_test(tc, test_lsn_order);
	tcase_add_test(tc, test_timeouts);
	tcase_add_test(tc, test_cancel);
	tcase_add_test(tc, test_bounds);
	tcase_add_test(tc, test_backwards);
	tcase_add_test(tc, test_reentrant);
	tcase_add_test(tc, test_delete_in_expire);
	tcase_add_test(tc, test_property);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(lsn_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
