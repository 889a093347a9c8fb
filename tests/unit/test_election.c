/*
 * tests/unit/test_election.c - the leader-election state machine
 * (election/election.h) in fake time.
 *
 * Two levels.  Single machines driven by hand through their seams (a probe
 * records every callback) check the contract's small print: the codec,
 * config checks, deadlines read before tick, late grants, queued intents,
 * the lease holder as a leader source, candidates, stale claims (the
 * reported leader's term never goes back), unheeded announcements (other
 * backend, ineligible, term jumps), the top term, RELEASED after the
 * RELEASE answer and the follower's prompt ACQUIRE on it.  Then a "world"
 * of 3-5 machines: a fake database with one lease row judged by a server clock
 * (fake time + skew), requests answered after a configurable latency, or
 * timed out by a fake adapter (statement run or not), or never answered;
 * a fake gossip that hands each node's announcement, leaving tag and
 * liveness to the others' views after a delay, with partitions; node
 * clocks with offsets and a little rate drift; crashes, SIGSTOPs, leaves.
 * The world checks at every fake millisecond that at most one machine
 * says election_is_leader(), and (postgres) that a machine saying so holds
 * the row at the server at that instant under its term; on every role
 * change that terms only grow and that only eligible nodes lead; and at
 * every step that the leader each node reports never has a lower term than
 * one it reported before.  The fake database runs lease_pg's statements:
 * ACQUIRE takes an expired row or one of our own holder id, under
 * greatest(row term, the caller's max_term) + 1.
 *
 * Every world is seeded: MERIDIAN_SEED (decimal or 0x...) if set, else a
 * fixed default, printed at the start of each test.  Loops are bounded by
 * fake time.
 */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "election/election.h"
#include "tests/seed_testutil.h"

#define DEFAULT_SEED 0x454c454354303031ULL  /* "ELECT001" */
#define NEVER UINT64_MAX

static uint64_t seed_of(const char *test)
{
	return test_seed(test, DEFAULT_SEED);
}

/* Uniform in [lo, hi]. */
static uint64_t rnd(uint64_t *s, uint64_t lo, uint64_t hi)
{
	return lo + splitmix64(s) % (hi - lo + 1);
}

/* True with probability 1/n. */
static bool one_in(uint64_t *s, uint64_t n)
{
	return splitmix64(s) % n == 0;
}

/* ==================================================================== */
/* A probe: one machine, its callbacks recorded                          */
/* ==================================================================== */

struct probe {
	struct election *e;
	int nreq;
	enum election_lease_op op;
	uint64_t req_term;
	int nrole;
	enum election_role from, to;
	uint64_t role_term;
	enum election_why why;
	int nann;
	enum election_ann_state ann_state;
	uint64_t ann_term, ann_since;
	int nleader;
};

static void p_request(void *ctx, enum election_lease_op op, uint64_t term)
{
	struct probe *p = ctx;

	p->nreq++;
	p->op = op;
	p->req_term = term;
}

static void p_announce(void *ctx, enum election_ann_state st, uint64_t term, uint64_t since)
{
	struct probe *p = ctx;

	p->nann++;
	p->ann_state = st;
	p->ann_term = term;
	p->ann_since = since;
}

static void p_role(void *ctx, enum election_role from, enum election_role to, uint64_t term,
		   enum election_why why)
{
	struct probe *p = ctx;

	ck_assert_int_ne(from, to);
	p->nrole++;
	p->from = from;
	p->to = to;
	p->role_term = term;
	p->why = why;
}

static void p_leader(void *ctx)
{
	((struct probe *)ctx)->nleader++;
}

/* ...with term_jump_max @jump (0: the default). */
static void probe_new_jump(struct probe *p, const char *name, enum election_backend b,
			   bool eligible, uint64_t now, uint64_t jump)
{
	struct election_config c;
	struct election_ops ops = { p, p_request, p_announce, p_role, p_leader };

	memset(p, 0, sizeof(*p));
	election_config_default(&c);
	c.node = name;
	c.backend = b;
	c.eligible = eligible;
	c.seed = 42;
	if (jump)
		c.term_jump_max = jump;
	p->e = election_new(&c, &ops, now);
	ck_assert_ptr_nonnull(p->e);
}

static void probe_new(struct probe *p, const char *name, enum election_backend b, bool eligible,
		      uint64_t now)
{
	probe_new_jump(p, name, b, eligible, now, 0);
}

/* An answer for the request in flight. */
static struct election_lease_result answer(enum election_lease_op op, bool held, uint64_t term,
					   const char *holder, uint32_t remaining)
{
	struct election_lease_result r;

	memset(&r, 0, sizeof(r));
	r.op = op;
	r.held = held;
	r.term = term;
	if (holder) {
		snprintf(r.holder, sizeof(r.holder), "%s", holder);
		r.holder_valid = remaining > 0;
		r.remaining_ms = remaining;
	}
	return r;
}

static struct election_lease_result failure(enum election_lease_op op)
{
	struct election_lease_result r;

	memset(&r, 0, sizeof(r));
	r.op = op;
	r.status = -ETIMEDOUT;
	snprintf(r.error, sizeof(r.error), "timeout");
	return r;
}

static struct election_peer peer(const char *name, bool live, bool eligible, uint8_t state,
				 uint64_t term)
{
	struct election_peer p;

	memset(&p, 0, sizeof(p));
	p.name = name;
	p.live = live;
	p.eligible = eligible;
	if (state) {
		p.announced = true;
		p.ann.state = state;
		p.ann.backend = ELECTION_BACKEND_GOSSIP;
		p.ann.term = term;
		p.ann.since_wall_ms = 1700000000000ULL;
	}
	return p;
}

/* The same, announcing the postgres backend. */
static struct election_peer pgpeer(const char *name, bool live, bool eligible, uint8_t state,
				   uint64_t term)
{
	struct election_peer p = peer(name, live, eligible, state, term);

	p.ann.backend = ELECTION_BACKEND_POSTGRES;
	return p;
}

/* A postgres probe that leads under @term from @now (ACQUIRE sent and
 * answered at @now). */
static void pg_leader(struct probe *p, const char *name, uint64_t term, uint64_t now)
{
	struct election_lease_result r;

	probe_new(p, name, ELECTION_BACKEND_POSTGRES, true, now);
	election_start(p->e, now);
	ck_assert_int_eq(p->nreq, 1);
	ck_assert_int_eq(p->op, ELECTION_LEASE_ACQUIRE);
	ck_assert_uint_eq(p->req_term, 0);
	r = answer(ELECTION_LEASE_ACQUIRE, true, term, name, 5000);
	election_lease_done(p->e, &r, now);
	ck_assert_int_eq(election_role(p->e), ELECTION_LEADER);
	ck_assert_uint_eq(election_term(p->e), term);
}

/* ==================================================================== */
/* Codec, names, config                                                  */
/* ==================================================================== */

static const uint8_t golden[ELECTION_ANNOUNCE_LEN] = {
	'L', 1, 1, 1, 0, 0, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00,
};

START_TEST(test_codec)
{
	struct election_announce a = { ELECTION_ANN_LEADING, ELECTION_BACKEND_POSTGRES, 0x102,
				       1700000000000ULL }, b;
	uint8_t buf[ELECTION_ANNOUNCE_LEN + 1], bad[ELECTION_ANNOUNCE_LEN];
	static const struct election_announce zero;

	ck_assert_int_eq(election_announce_encode(&a, buf), ELECTION_ANNOUNCE_LEN);
	ck_assert_mem_eq(buf, golden, ELECTION_ANNOUNCE_LEN);
	ck_assert_int_eq(election_announce_decode(golden, sizeof(golden), &b), 0);
	ck_assert_int_eq(b.state, a.state);
	ck_assert_int_eq(b.backend, a.backend);
	ck_assert_uint_eq(b.term, a.term);
	ck_assert_uint_eq(b.since_wall_ms, a.since_wall_ms);

	/* released, gossip, the largest values */
	a = (struct election_announce){ ELECTION_ANN_RELEASED, ELECTION_BACKEND_GOSSIP, UINT64_MAX,
					UINT64_MAX };
	ck_assert_int_eq(election_announce_encode(&a, buf), ELECTION_ANNOUNCE_LEN);
	ck_assert_int_eq(election_announce_decode(buf, ELECTION_ANNOUNCE_LEN, &b), 0);
	ck_assert_uint_eq(b.term, UINT64_MAX);
	ck_assert_uint_eq(b.since_wall_ms, UINT64_MAX);

	/* every truncation, and one byte too many */
	memcpy(buf, golden, sizeof(golden));
	buf[ELECTION_ANNOUNCE_LEN] = 0;
	for (size_t len = 0; len <= ELECTION_ANNOUNCE_LEN + 1; len++) {
		memset(&b, 0x5a, sizeof(b));
		int r = election_announce_decode(buf, len, &b);

		if (len == ELECTION_ANNOUNCE_LEN) {
			ck_assert_int_eq(r, 0);
			continue;
		}
		ck_assert_msg(r == -EBADMSG, "len %zu: %d", len, r);
		ck_assert_mem_eq(&b, &zero, sizeof(b));
	}
	ck_assert_int_eq(election_announce_decode(NULL, 0, &b), -EBADMSG);
	ck_assert_int_eq(election_announce_decode(golden, sizeof(golden), NULL), -EINVAL);

	/* each field, one bad value at a time */
	struct {
		size_t at;
		uint8_t v;
		int want;
	} cases[] = {
		{ 0, 'M', -EBADMSG },          { 0, 0, -EBADMSG },
		{ 1, 0, -EPROTONOSUPPORT },    { 1, 2, -EPROTONOSUPPORT },
		{ 1, 255, -EPROTONOSUPPORT },  { 2, 0, -EBADMSG },
		{ 2, 3, -EBADMSG },            { 3, 2, -EBADMSG },
		{ 3, 255, -EBADMSG },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memcpy(bad, golden, sizeof(bad));
		bad[cases[i].at] = cases[i].v;
		memset(&b, 0x5a, sizeof(b));
		ck_assert_msg(election_announce_decode(bad, sizeof(bad), &b) == cases[i].want,
			      "case %zu", i);
		ck_assert_mem_eq(&b, &zero, sizeof(b));
	}
	/* term 0 */
	memcpy(bad, golden, sizeof(bad));
	memset(bad + 4, 0, 8);
	ck_assert_int_eq(election_announce_decode(bad, sizeof(bad), &b), -EBADMSG);
	ck_assert_mem_eq(&b, &zero, sizeof(b));
	/* another version is told apart whatever its length */
	ck_assert_int_eq(election_announce_decode((const uint8_t *)"L\x02xyz", 5, &b),
			 -EPROTONOSUPPORT);

	/* the encoder refuses what the decoder would */
	a = (struct election_announce){ ELECTION_ANN_LEADING, ELECTION_BACKEND_GOSSIP, 0, 0 };
	ck_assert_int_eq(election_announce_encode(&a, buf), -EINVAL);
	a.term = 1;
	a.state = 3;
	ck_assert_int_eq(election_announce_encode(&a, buf), -EINVAL);
	a.state = ELECTION_ANN_LEADING;
	a.backend = 7;
	ck_assert_int_eq(election_announce_encode(&a, buf), -EINVAL);
	ck_assert_int_eq(election_announce_encode(NULL, buf), -EINVAL);
}
END_TEST

START_TEST(test_names)
{
	ck_assert_str_eq(election_backend_name(ELECTION_BACKEND_GOSSIP), "gossip");
	ck_assert_str_eq(election_backend_name(ELECTION_BACKEND_POSTGRES), "postgres");
	ck_assert_str_eq(election_backend_name((enum election_backend)9), "unknown");
	ck_assert_str_eq(election_role_name(ELECTION_FOLLOWER), "follower");
	ck_assert_str_eq(election_role_name(ELECTION_CANDIDATE), "candidate");
	ck_assert_str_eq(election_role_name(ELECTION_LEADER), "leader");
	ck_assert_str_eq(election_role_name((enum election_role)9), "unknown");
	ck_assert_str_eq(election_lease_op_name(ELECTION_LEASE_ACQUIRE), "acquire");
	ck_assert_str_eq(election_lease_op_name(ELECTION_LEASE_RENEW), "renew");
	ck_assert_str_eq(election_lease_op_name(ELECTION_LEASE_RELEASE), "release");
	ck_assert_str_eq(election_lease_op_name((enum election_lease_op)9), "unknown");
	ck_assert_str_eq(election_why_name(ELECTION_WHY_ELECTED), "elected");
	ck_assert_str_eq(election_why_name(ELECTION_WHY_DEADLINE), "deadline");
	ck_assert_str_eq(election_why_name(ELECTION_WHY_INELIGIBLE), "ineligible");
	ck_assert_str_eq(election_why_name((enum election_why)99), "unknown");
}
END_TEST

START_TEST(test_config)
{
	struct election_config c, d;
	struct election *e;
	char longname[ELECTION_NAME_MAX + 2];

	election_config_default(&c);
	ck_assert_ptr_null(c.node);
	ck_assert(!c.eligible);
	ck_assert_int_eq(c.backend, ELECTION_BACKEND_GOSSIP);
	ck_assert_uint_eq(c.lease_ms, 5000);
	ck_assert_uint_eq(c.renew_ms, 1000);
	ck_assert_uint_eq(c.guard_ms, 1000);
	ck_assert_uint_eq(c.retry_ms, 100);
	ck_assert_uint_eq(c.settle_ms, 2000);

	ck_assert_ptr_null(election_new(&c, NULL, 0));       /* no name */
	c.node = "";
	ck_assert_ptr_null(election_new(&c, NULL, 0));
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	c.node = longname;
	ck_assert_ptr_null(election_new(&c, NULL, 0));
	longname[ELECTION_NAME_MAX] = '\0';                   /* exactly the maximum */
	e = election_new(&c, NULL, 0);
	ck_assert_ptr_nonnull(e);
	election_delete(e);
	election_delete(NULL);

	c.node = "n";
	d = c;
	d.lease_ms = 0;
	ck_assert_ptr_null(election_new(&d, NULL, 0));
	d = c;
	d.renew_ms = 0;
	ck_assert_ptr_null(election_new(&d, NULL, 0));
	d = c;
	d.retry_ms = 0;
	ck_assert_ptr_null(election_new(&d, NULL, 0));
	d = c;
	d.guard_ms = 5000;                                    /* guard >= lease */
	ck_assert_ptr_null(election_new(&d, NULL, 0));
	d = c;
	d.renew_ms = 4000;                                    /* renew >= lease - guard */
	ck_assert_ptr_null(election_new(&d, NULL, 0));
	d.renew_ms = 3999;
	e = election_new(&d, NULL, 0);
	ck_assert_ptr_nonnull(e);
	election_delete(e);
	d = c;
	d.backend = (enum election_backend)5;
	ck_assert_ptr_null(election_new(&d, NULL, 0));
	ck_assert_ptr_null(election_new(NULL, NULL, 0));
}
END_TEST

START_TEST(test_set_peers_input)
{
	struct probe p;
	struct election_peer ps[6];
	struct election_leader l;
	char longname[ELECTION_NAME_MAX + 2];
	struct election_peer *many;

	probe_new(&p, "me", ELECTION_BACKEND_GOSSIP, false, 0);
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	ps[0] = peer(NULL, true, true, ELECTION_ANN_LEADING, 50);
	ps[1] = peer("", true, true, ELECTION_ANN_LEADING, 51);
	ps[2] = peer(longname, true, true, ELECTION_ANN_LEADING, 52);
	ps[3] = peer("me", true, true, ELECTION_ANN_LEADING, 53);   /* ourselves */
	ps[4] = peer("x", true, true, ELECTION_ANN_LEADING, 7);
	ps[5] = peer("y", true, true, ELECTION_ANN_LEADING, 0);     /* term 0: not announced */
	ck_assert_int_eq(election_set_peers(p.e, ps, 6, 0), 0);
	ck_assert(election_leader(p.e, 0, &l));
	ck_assert_str_eq(l.name, "x");
	ck_assert_uint_eq(l.term, 7);
	ck_assert_int_eq(l.source, ELECTION_FROM_GOSSIP);
	ck_assert_uint_eq(l.since_wall_ms, 1700000000000ULL);
	ck_assert_uint_eq(election_max_term(p.e), 7);     /* skipped peers raise nothing */
	ck_assert_int_eq(p.nleader, 1);

	ck_assert_int_eq(election_set_peers(p.e, NULL, 1, 0), -EINVAL);
	ck_assert_int_eq(election_set_peers(p.e, ps, 65537, 0), -E2BIG);
	ck_assert(election_leader(p.e, 0, &l));           /* the view is kept */
	ck_assert_str_eq(l.name, "x");

	/* 65536 is allowed */
	many = calloc(65536, sizeof(*many));
	ck_assert_ptr_nonnull(many);
	for (size_t i = 0; i < 65536; i++)
		many[i] = peer("same", true, true, 0, 0);
	many[65535] = peer("z", true, true, ELECTION_ANN_LEADING, 9);
	ck_assert_int_eq(election_set_peers(p.e, many, 65536, 1), 0);
	free(many);
	ck_assert(election_leader(p.e, 1, &l));
	ck_assert_str_eq(l.name, "z");
	ck_assert_int_eq(p.nleader, 2);

	/* an empty view: no leader known */
	ck_assert_int_eq(election_set_peers(p.e, NULL, 0, 2), 0);
	ck_assert(!election_leader(p.e, 2, &l));
	ck_assert_str_eq(l.name, "");
	ck_assert_int_eq(p.nleader, 3);
	ck_assert_uint_eq(election_max_term(p.e), 9);
	election_delete(p.e);
}
END_TEST

/* ==================================================================== */
/* Single postgres machines                                              */
/* ==================================================================== */

START_TEST(test_pg_deadline_before_tick)
{
	struct probe p;
	struct election_lease_result r;
	struct election_leader l;
	struct election_stats st;
	uint64_t dl;

	pg_leader(&p, "a", 3, 1000);
	dl = election_deadline(p.e);
	ck_assert_uint_eq(dl, 1000 + 5000 - 1000);
	ck_assert_int_eq(p.nann, 1);
	ck_assert_int_eq(p.ann_state, ELECTION_ANN_LEADING);
	ck_assert_uint_eq(p.ann_since, 1000);
	/* the renewal is due at send time + renew_ms */
	ck_assert_uint_eq(election_next_deadline(p.e), 2000);
	ck_assert_uint_eq(election_tick(p.e, 2000), dl);
	ck_assert_int_eq(p.nreq, 2);
	ck_assert_int_eq(p.op, ELECTION_LEASE_RENEW);
	ck_assert_uint_eq(p.req_term, 3);

	/* SIGSTOP: the renewal never comes back, no tick runs; readers with
	 * a fresh clock are told the truth anyway. */
	ck_assert(election_is_leader(p.e, dl - 1));
	ck_assert(!election_is_leader(p.e, dl));
	ck_assert(election_leader(p.e, dl - 1, &l) && l.self);
	ck_assert(!election_leader(p.e, dl, &l));
	ck_assert_int_eq(p.nrole, 1);

	/* the timers run late: step down for the deadline, release */
	election_tick(p.e, dl + 3000);
	ck_assert_int_eq(p.nrole, 2);
	ck_assert_int_eq(p.why, ELECTION_WHY_DEADLINE);
	ck_assert_uint_eq(p.role_term, 3);
	ck_assert_int_eq(p.nann, 1);                 /* RELEASED waits for the RELEASE */
	ck_assert_int_eq(p.nreq, 2);                 /* RENEW still in flight */
	/* it was held after all, but far too late */
	r = answer(ELECTION_LEASE_RENEW, true, 3, "a", 5000);
	election_lease_done(p.e, &r, dl + 3001);
	ck_assert_int_eq(p.nreq, 3);
	ck_assert_int_eq(p.op, ELECTION_LEASE_RELEASE);
	ck_assert_uint_eq(p.req_term, 3);
	ck_assert_int_eq(p.nann, 1);
	r = answer(ELECTION_LEASE_RELEASE, false, 3, "a", 0);
	election_lease_done(p.e, &r, dl + 3002);
	ck_assert_int_eq(p.nann, 2);
	ck_assert_int_eq(p.ann_state, ELECTION_ANN_RELEASED);
	ck_assert_uint_eq(p.ann_term, 3);
	ck_assert_uint_eq(p.ann_since, 1000);
	election_stats_get(p.e, &st);
	ck_assert_uint_eq(st.late_grants_released, 1);
	ck_assert_uint_eq(st.elections_won, 1);
	ck_assert_uint_eq(st.step_downs, 1);
	ck_assert_int_eq(election_role(p.e), ELECTION_FOLLOWER);
	ck_assert_uint_eq(election_term(p.e), 0);
	election_delete(p.e);
}
END_TEST

START_TEST(test_pg_renew_backoff)
{
	struct probe p;
	struct election_lease_result r;
	uint64_t now = 0, last = 0;
	int renews = 0;

	pg_leader(&p, "a", 1, 0);
	/* renewals fail: retried from retry_ms doubling to renew_ms, until
	 * the deadline, then a step-down */
	for (int i = 0; i < 100 && election_role(p.e) == ELECTION_LEADER; i++) {
		now = election_next_deadline(p.e);
		election_tick(p.e, now);
		if (election_role(p.e) != ELECTION_LEADER)
			break;
		ck_assert_int_eq(p.op, ELECTION_LEASE_RENEW);
		if (renews > 1)
			ck_assert_uint_le(now - last, 1000);
		last = now;
		renews++;
		r = failure(ELECTION_LEASE_RENEW);
		election_lease_done(p.e, &r, now);
	}
	ck_assert_int_eq(election_role(p.e), ELECTION_FOLLOWER);
	ck_assert_int_eq(p.why, ELECTION_WHY_DEADLINE);
	ck_assert_uint_eq(now, 4000);
	ck_assert_int_ge(renews, 5);
	ck_assert_int_le(renews, 12);
	ck_assert_int_eq(p.op, ELECTION_LEASE_RELEASE);  /* given back in case */
	election_delete(p.e);
}
END_TEST

START_TEST(test_pg_lease_lost)
{
	struct probe p;
	struct election_lease_result r;
	struct election_leader l;

	pg_leader(&p, "a", 4, 0);
	election_tick(p.e, 1000);
	r = answer(ELECTION_LEASE_RENEW, false, 5, "b", 4000);
	election_lease_done(p.e, &r, 1005);
	ck_assert_int_eq(election_role(p.e), ELECTION_FOLLOWER);
	ck_assert_int_eq(p.why, ELECTION_WHY_LEASE_LOST);
	ck_assert_int_eq(p.nreq, 2);              /* not ours: nothing to release */
	ck_assert_uint_eq(election_max_term(p.e), 5);
	ck_assert(election_leader(p.e, 1005, &l));
	ck_assert_str_eq(l.name, "b");
	ck_assert_int_eq(l.source, ELECTION_FROM_LEASE);
	election_delete(p.e);
}
END_TEST

START_TEST(test_pg_late_acquire)
{
	struct probe p;
	struct election_lease_result r;
	struct election_stats st;

	probe_new(&p, "a", ELECTION_BACKEND_POSTGRES, true, 0);
	election_start(p.e, 0);
	ck_assert_int_eq(p.op, ELECTION_LEASE_ACQUIRE);
	/* held, answered exactly at its own deadline: not believed */
	r = answer(ELECTION_LEASE_ACQUIRE, true, 1, "a", 1000);
	election_lease_done(p.e, &r, 4000);
	ck_assert_int_eq(p.nrole, 0);
	ck_assert_int_eq(p.nann, 0);
	ck_assert_int_eq(p.op, ELECTION_LEASE_RELEASE);
	ck_assert_uint_eq(p.req_term, 1);
	election_stats_get(p.e, &st);
	ck_assert_uint_eq(st.late_grants_released, 1);
	r = answer(ELECTION_LEASE_RELEASE, false, 1, "a", 0);
	election_lease_done(p.e, &r, 4002);
	/* the next ACQUIRE renew_ms later; answered one millisecond before
	 * its deadline, it is believed, and leadership ends at that deadline */
	ck_assert_int_eq(p.nreq, 2);
	ck_assert_uint_eq(election_next_deadline(p.e), 5000);
	election_tick(p.e, 5000);
	ck_assert_int_eq(p.nreq, 3);
	ck_assert_int_eq(p.op, ELECTION_LEASE_ACQUIRE);
	r = answer(ELECTION_LEASE_ACQUIRE, true, 2, "a", 5000);
	election_lease_done(p.e, &r, 5000 + 3999);
	ck_assert_int_eq(election_role(p.e), ELECTION_LEADER);
	ck_assert_uint_eq(election_term(p.e), 2);
	ck_assert(election_is_leader(p.e, 5000 + 3999));
	ck_assert(!election_is_leader(p.e, 5000 + 4000));
	election_delete(p.e);
}
END_TEST

START_TEST(test_pg_stale_term_refused)
{
	struct probe p;
	struct election_peer ps[1];
	struct election_lease_result r;
	uint64_t t;

	probe_new(&p, "a", ELECTION_BACKEND_POSTGRES, true, 0);
	ps[0] = pgpeer("b", false, true, ELECTION_ANN_RELEASED, 9);
	election_set_peers(p.e, ps, 1, 0);
	election_start(p.e, 0);
	ck_assert_int_eq(p.op, ELECTION_LEASE_ACQUIRE);
	ck_assert_uint_eq(p.req_term, 9);                 /* ACQUIRE carries max_term */
	/* an adapter that ignored it (or a reset row): a grant under term
	 * 2 < 9 is not led under */
	r = answer(ELECTION_LEASE_ACQUIRE, true, 2, "a", 5000);
	election_lease_done(p.e, &r, 10);
	ck_assert_int_eq(p.nrole, 0);
	ck_assert_int_eq(p.op, ELECTION_LEASE_RELEASE);
	r = answer(ELECTION_LEASE_RELEASE, false, 2, "a", 0);
	election_lease_done(p.e, &r, 20);
	ck_assert_int_eq(p.nann, 0);                      /* never led: nothing to say */
	/* the retry goes on the backoff (retry_ms jittered), not at once */
	ck_assert_int_eq(p.nreq, 2);
	ck_assert_uint_ge(election_next_deadline(p.e), 10 + 50);
	ck_assert_uint_le(election_next_deadline(p.e), 10 + 100);
	t = election_next_deadline(p.e);
	election_tick(p.e, t - 1);
	ck_assert_int_eq(p.nreq, 2);
	election_tick(p.e, t);
	ck_assert_int_eq(p.nreq, 3);
	ck_assert_int_eq(p.op, ELECTION_LEASE_ACQUIRE);
	ck_assert_uint_eq(p.req_term, 9);
	/* again not above 9: the next backoff doubles */
	r = answer(ELECTION_LEASE_ACQUIRE, true, 3, "a", 5000);
	election_lease_done(p.e, &r, t + 1);
	r = answer(ELECTION_LEASE_RELEASE, false, 3, "a", 0);
	election_lease_done(p.e, &r, t + 2);
	ck_assert_uint_ge(election_next_deadline(p.e), t + 1 + 100);
	ck_assert_uint_le(election_next_deadline(p.e), t + 1 + 200);
	t = election_next_deadline(p.e);
	election_tick(p.e, t);
	ck_assert_int_eq(p.nreq, 5);
	r = answer(ELECTION_LEASE_ACQUIRE, true, 10, "a", 5000);
	election_lease_done(p.e, &r, t + 1);
	ck_assert_int_eq(election_role(p.e), ELECTION_LEADER);
	ck_assert_uint_eq(election_term(p.e), 10);
	election_delete(p.e);

	/* a higher term arrives while a grant is on its way: given back,
	 * and the next ACQUIRE carries the new max */
	probe_new(&p, "a", ELECTION_BACKEND_POSTGRES, true, 0);
	election_start(p.e, 0);
	ck_assert_uint_eq(p.req_term, 0);
	ps[0] = pgpeer("b", true, true, ELECTION_ANN_RELEASED, 4);
	election_set_peers(p.e, ps, 1, 1);
	r = answer(ELECTION_LEASE_ACQUIRE, true, 1, "a", 5000);
	election_lease_done(p.e, &r, 2);
	ck_assert_int_eq(p.nrole, 0);
	ck_assert_int_eq(p.op, ELECTION_LEASE_RELEASE);
	r = answer(ELECTION_LEASE_RELEASE, false, 1, "a", 0);
	election_lease_done(p.e, &r, 3);
	ck_assert_int_eq(p.nreq, 2);
	election_tick(p.e, election_next_deadline(p.e));
	ck_assert_int_eq(p.nreq, 3);
	ck_assert_int_eq(p.op, ELECTION_LEASE_ACQUIRE);
	ck_assert_uint_eq(p.req_term, 4);
	election_delete(p.e);
}
END_TEST

START_TEST(test_pg_lease_source)
{
	struct probe p;
	struct election_lease_result r;
	struct election_leader l;

	probe_new(&p, "a", ELECTION_BACKEND_POSTGRES, true, 0);
	ck_assert_uint_eq(election_next_deadline(p.e), UINT64_MAX);   /* not started */
	election_start(p.e, 100);
	r = answer(ELECTION_LEASE_ACQUIRE, false, 3, "x", 2500);
	election_lease_done(p.e, &r, 110);
	ck_assert_int_eq(p.nleader, 1);
	ck_assert(election_leader(p.e, 110, &l));
	ck_assert_str_eq(l.name, "x");
	ck_assert_uint_eq(l.term, 3);
	ck_assert_int_eq(l.source, ELECTION_FROM_LEASE);
	ck_assert(!l.self);
	ck_assert_uint_eq(l.since, 110);
	/* poll after renew_ms, since the lease lasts longer */
	ck_assert_uint_eq(election_next_deadline(p.e), 1110);
	election_tick(p.e, 1110);
	ck_assert_int_eq(p.nreq, 2);
	r = answer(ELECTION_LEASE_ACQUIRE, false, 3, "x", 700);
	election_lease_done(p.e, &r, 1120);
	ck_assert(election_leader(p.e, 1120, &l));
	ck_assert_uint_eq(l.since, 110);                  /* same leader, same term */
	ck_assert_int_eq(p.nleader, 1);
	/* the lease ends before renew_ms: forget it then, poll just after */
	ck_assert_uint_eq(election_next_deadline(p.e), 1120 + 700);
	ck_assert_uint_eq(election_tick(p.e, 1820), 1821);
	ck_assert_int_eq(p.nleader, 2);                   /* unknown now */
	ck_assert(!election_leader(p.e, 1820, &l));
	ck_assert_int_eq(p.nreq, 2);
	election_tick(p.e, 1821);
	ck_assert_int_eq(p.nreq, 3);
	ck_assert_int_eq(p.op, ELECTION_LEASE_ACQUIRE);
	election_delete(p.e);
}
END_TEST

START_TEST(test_pg_queued_intents)
{
	struct probe p;
	struct election_peer ps[1];
	struct election_lease_result r;

	/* leave while a RENEW is in flight: the RELEASE follows its answer */
	pg_leader(&p, "a", 2, 0);
	election_tick(p.e, 1000);
	ck_assert_int_eq(p.op, ELECTION_LEASE_RENEW);
	election_leave(p.e, 1001);
	ck_assert_int_eq(p.why, ELECTION_WHY_LEAVING);
	ck_assert_int_eq(p.nann, 1);                      /* RELEASED after the RELEASE */
	ck_assert_int_eq(p.nreq, 2);
	ck_assert(!election_leave_done(p.e));
	r = answer(ELECTION_LEASE_RENEW, true, 2, "a", 5000);
	election_lease_done(p.e, &r, 1005);
	ck_assert_int_eq(p.nreq, 3);
	ck_assert_int_eq(p.op, ELECTION_LEASE_RELEASE);
	ck_assert_uint_eq(p.req_term, 2);
	ck_assert(!election_leave_done(p.e));
	ck_assert_int_eq(p.nann, 1);
	r = failure(ELECTION_LEASE_RELEASE);
	election_lease_done(p.e, &r, 1010);
	ck_assert(election_leave_done(p.e));
	ck_assert_int_eq(p.nann, 2);                      /* failed or not: we are gone */
	ck_assert_int_eq(p.ann_state, ELECTION_ANN_RELEASED);
	ck_assert_uint_eq(p.ann_term, 2);
	election_leave(p.e, 1011);                        /* idempotent */
	for (uint64_t t = 1011; t < 30000; t += 100)
		election_tick(p.e, t);
	ck_assert_int_eq(p.nreq, 3);                      /* never ACQUIREs again */
	ck_assert_uint_eq(election_next_deadline(p.e), UINT64_MAX);
	election_delete(p.e);

	/* the holder fails while our ACQUIRE is in flight: the next ACQUIRE
	 * goes right after the answer, not renew_ms later */
	probe_new(&p, "a", ELECTION_BACKEND_POSTGRES, true, 0);
	ps[0] = pgpeer("b", true, true, ELECTION_ANN_LEADING, 4);
	election_set_peers(p.e, ps, 1, 0);
	election_start(p.e, 0);
	r = answer(ELECTION_LEASE_ACQUIRE, false, 4, "b", 3000);
	election_lease_done(p.e, &r, 5);
	ck_assert_uint_eq(election_next_deadline(p.e), 1005);
	election_set_peers(p.e, ps, 1, 100);              /* unchanged: nothing */
	ck_assert_int_eq(p.nreq, 1);
	election_tick(p.e, 1005);
	ck_assert_int_eq(p.nreq, 2);
	ps[0].live = false;
	election_set_peers(p.e, ps, 1, 1006);
	ck_assert_int_eq(p.nreq, 2);                      /* one in flight */
	r = answer(ELECTION_LEASE_ACQUIRE, false, 4, "b", 1995);
	election_lease_done(p.e, &r, 1010);
	ck_assert_int_eq(p.nreq, 3);
	ck_assert_int_eq(p.op, ELECTION_LEASE_ACQUIRE);
	/* the answer is what counts: it still holds */
	r = answer(ELECTION_LEASE_ACQUIRE, false, 4, "b", 1990);
	election_lease_done(p.e, &r, 1015);
	ck_assert_uint_eq(election_next_deadline(p.e), 1015 + 1000);
	election_delete(p.e);

	/* leave while an ACQUIRE is in flight that turns out held */
	probe_new(&p, "a", ELECTION_BACKEND_POSTGRES, true, 0);
	election_start(p.e, 0);
	election_leave(p.e, 1);
	ck_assert(!election_leave_done(p.e));
	r = answer(ELECTION_LEASE_ACQUIRE, true, 1, "a", 5000);
	election_lease_done(p.e, &r, 2);
	ck_assert_int_eq(p.nrole, 0);
	ck_assert_int_eq(p.op, ELECTION_LEASE_RELEASE);
	ck_assert_uint_eq(p.req_term, 1);
	r = answer(ELECTION_LEASE_RELEASE, false, 1, "a", 0);
	election_lease_done(p.e, &r, 3);
	ck_assert(election_leave_done(p.e));
	election_delete(p.e);

	/* stray and mismatched answers */
	probe_new(&p, "a", ELECTION_BACKEND_POSTGRES, true, 0);
	r = answer(ELECTION_LEASE_ACQUIRE, true, 1, "a", 5000);
	election_lease_done(p.e, &r, 0);                  /* nothing in flight */
	ck_assert_int_eq(election_role(p.e), ELECTION_FOLLOWER);
	election_start(p.e, 0);
	r = answer(ELECTION_LEASE_RENEW, true, 1, "a", 5000);
	election_lease_done(p.e, &r, 1);                  /* not what we asked */
	ck_assert_int_eq(election_role(p.e), ELECTION_FOLLOWER);
	struct election_stats st;
	election_stats_get(p.e, &st);
	ck_assert_uint_eq(st.lease_failures, 1);
	ck_assert_uint_eq(st.lease_requests, 1);
	election_delete(p.e);
}
END_TEST

START_TEST(test_pg_higher_term_step_down)
{
	struct probe p;
	struct election_peer ps[2];

	pg_leader(&p, "a", 5, 0);
	/* a dead peer's old claim and a live claim under lower terms: nothing */
	ps[0] = pgpeer("b", false, true, ELECTION_ANN_LEADING, 3);
	ps[1] = pgpeer("c", true, true, ELECTION_ANN_LEADING, 4);
	election_set_peers(p.e, ps, 2, 10);
	ck_assert_int_eq(election_role(p.e), ELECTION_LEADER);
	ck_assert_uint_eq(election_max_term(p.e), 5);
	/* a live peer leads under a higher term */
	ps[1].ann.term = 6;
	election_set_peers(p.e, ps, 2, 20);
	ck_assert_int_eq(election_role(p.e), ELECTION_FOLLOWER);
	ck_assert_int_eq(p.why, ELECTION_WHY_HIGHER_TERM);
	ck_assert_int_eq(p.op, ELECTION_LEASE_RELEASE);
	ck_assert_uint_eq(p.req_term, 5);
	election_delete(p.e);

	/* any higher term, a dead peer's RELEASED included: the row was
	 * reset under us, and our term is no longer the highest */
	pg_leader(&p, "a", 5, 0);
	ps[0] = pgpeer("b", false, true, ELECTION_ANN_RELEASED, 9);
	election_set_peers(p.e, ps, 1, 10);
	ck_assert_int_eq(election_role(p.e), ELECTION_FOLLOWER);
	ck_assert_int_eq(p.why, ELECTION_WHY_HIGHER_TERM);
	ck_assert_uint_eq(election_max_term(p.e), 9);
	election_delete(p.e);
}
END_TEST

START_TEST(test_pg_ineligible_alone)
{
	struct probe p;

	probe_new(&p, "a", ELECTION_BACKEND_POSTGRES, false, 0);
	election_start(p.e, 0);
	for (uint64_t t = 0; t < 60000; t += 7)
		election_tick(p.e, t);
	ck_assert_int_eq(p.nreq, 0);
	ck_assert_int_eq(p.nrole, 0);
	ck_assert_uint_eq(election_next_deadline(p.e), UINT64_MAX);
	election_leave(p.e, 60000);
	ck_assert(election_leave_done(p.e));
	election_delete(p.e);

	probe_new(&p, "a", ELECTION_BACKEND_GOSSIP, false, 0);
	election_start(p.e, 0);
	for (uint64_t t = 0; t < 60000; t += 7)
		election_tick(p.e, t);
	ck_assert_int_eq(p.nrole, 0);
	ck_assert_int_eq(p.nann, 0);
	election_delete(p.e);
}
END_TEST

/* ==================================================================== */
/* Single gossip machines                                                */
/* ==================================================================== */

START_TEST(test_gossip_alone_and_start)
{
	struct probe p;
	struct election_leader l;

	probe_new(&p, "a", ELECTION_BACKEND_GOSSIP, true, 0);
	election_tick(p.e, 10);
	ck_assert_int_eq(election_role(p.e), ELECTION_FOLLOWER);   /* not started */
	election_start(p.e, 20);
	ck_assert_int_eq(election_role(p.e), ELECTION_LEADER);
	ck_assert_uint_eq(election_term(p.e), 1);
	ck_assert(election_is_leader(p.e, UINT64_MAX - 1));        /* no deadline */
	ck_assert(election_leader(p.e, 30, &l) && l.self && l.since == 20);
	ck_assert_int_eq(p.ann_state, ELECTION_ANN_LEADING);
	election_start(p.e, 40);                                   /* idempotent */
	ck_assert_int_eq(p.nrole, 1);
	election_leave(p.e, 50);
	ck_assert_int_eq(p.why, ELECTION_WHY_LEAVING);
	ck_assert_int_eq(p.ann_state, ELECTION_ANN_RELEASED);
	ck_assert_uint_eq(p.ann_term, 1);
	ck_assert(election_leave_done(p.e));
	election_start(p.e, 60);
	ck_assert_int_eq(election_role(p.e), ELECTION_FOLLOWER);
	ck_assert_int_eq(p.nleader, 2);
	election_delete(p.e);
}
END_TEST

START_TEST(test_gossip_candidate)
{
	struct probe p;
	struct election_peer ps[1];

	/* "a" is best; "b" still leads: wait for it to let go */
	probe_new(&p, "a", ELECTION_BACKEND_GOSSIP, true, 0);
	ps[0] = peer("b", true, true, ELECTION_ANN_LEADING, 4);
	election_set_peers(p.e, ps, 1, 0);
	election_start(p.e, 100);
	ck_assert_int_eq(election_role(p.e), ELECTION_CANDIDATE);
	ck_assert_int_eq(p.from, ELECTION_FOLLOWER);
	ck_assert_int_eq(p.to, ELECTION_CANDIDATE);
	ck_assert_uint_eq(election_next_deadline(p.e), 2100);
	election_tick(p.e, 1000);
	ck_assert_int_eq(election_role(p.e), ELECTION_CANDIDATE);
	ps[0].ann.state = ELECTION_ANN_RELEASED;
	election_set_peers(p.e, ps, 1, 1100);
	ck_assert_int_eq(election_role(p.e), ELECTION_LEADER);
	ck_assert_uint_eq(election_term(p.e), 5);
	ck_assert_int_eq(p.nrole, 2);
	election_delete(p.e);

	/* it never lets go: lead anyway after settle_ms, under a higher term */
	probe_new(&p, "a", ELECTION_BACKEND_GOSSIP, true, 0);
	ps[0] = peer("b", true, true, ELECTION_ANN_LEADING, 4);
	election_set_peers(p.e, ps, 1, 0);
	election_start(p.e, 100);
	election_tick(p.e, 2099);
	ck_assert_int_eq(election_role(p.e), ELECTION_CANDIDATE);
	election_tick(p.e, 2100);
	ck_assert_int_eq(election_role(p.e), ELECTION_LEADER);
	ck_assert_uint_eq(election_term(p.e), 5);
	/* a better node appears: back to follower */
	struct election_peer ps2[2] = { peer("0", true, true, 0, 0), ps[0] };
	election_set_peers(p.e, ps2, 2, 2200);
	ck_assert_int_eq(election_role(p.e), ELECTION_FOLLOWER);
	ck_assert_int_eq(p.why, ELECTION_WHY_PRECEDENCE);
	election_delete(p.e);
}
END_TEST

START_TEST(test_gossip_higher_term_step_down)
{
	struct probe p;
	struct election_peer ps[1];

	probe_new(&p, "m", ELECTION_BACKEND_GOSSIP, true, 0);
	election_start(p.e, 0);
	ck_assert_uint_eq(election_term(p.e), 1);
	/* a peer of a worse priority (so we stay best) leads under a higher
	 * term */
	ps[0] = peer("z", true, true, ELECTION_ANN_LEADING, 7);
	ps[0].priority = 1;
	election_set_peers(p.e, ps, 1, 10);
	ck_assert_int_ne(election_role(p.e), ELECTION_LEADER);
	ck_assert_int_eq(election_role(p.e), ELECTION_CANDIDATE);
	/* LEADER -> FOLLOWER (higher term), then FOLLOWER -> CANDIDATE */
	ck_assert_int_eq(p.nrole, 3);
	ck_assert_int_eq(p.ann_state, ELECTION_ANN_RELEASED);
	ck_assert_uint_eq(p.ann_term, 1);
	election_tick(p.e, 2010);
	ck_assert_uint_eq(election_term(p.e), 8);
	/* same term, lower name: it wins */
	ps[0] = peer("a", true, true, ELECTION_ANN_LEADING, 8);
	ps[0].priority = 1;
	election_set_peers(p.e, ps, 1, 2020);
	ck_assert_int_eq(election_role(p.e), ELECTION_CANDIDATE);
	ck_assert_int_eq(p.nrole, 6);
	/* same term, higher name: we keep it */
	election_tick(p.e, 4020);
	ck_assert_uint_eq(election_term(p.e), 9);
	ps[0] = peer("z", true, true, ELECTION_ANN_LEADING, 9);
	ps[0].priority = 1;
	election_set_peers(p.e, ps, 1, 4030);
	ck_assert_int_eq(election_role(p.e), ELECTION_LEADER);
	election_delete(p.e);
}
END_TEST

/* ==================================================================== */
/* Terms: stale claims, unheeded announcements, jumps, the top           */
/* ==================================================================== */

/* a1 hung but alive claims 7, b1 led under 8 and released it: nobody is
 * known to lead, rather than a1 again (the reported term never goes back);
 * the same for a lease answer's holder under a stale term. */
START_TEST(test_leader_never_goes_back)
{
	struct probe p;
	struct election_peer ps[2];
	struct election_leader l;
	struct election_lease_result r;
	struct election_stats st;

	for (int b = 0; b < 2; b++) {
		bool pgb = b == 1;

		probe_new(&p, "c", pgb ? ELECTION_BACKEND_POSTGRES : ELECTION_BACKEND_GOSSIP,
			  false, 0);
		ps[0] = peer("a1", true, true, ELECTION_ANN_LEADING, 7);
		ps[1] = peer("b1", true, true, ELECTION_ANN_LEADING, 8);
		if (pgb) {
			ps[0].ann.backend = ps[1].ann.backend = ELECTION_BACKEND_POSTGRES;
		}
		election_set_peers(p.e, ps, 2, 0);
		ck_assert(election_leader(p.e, 0, &l));
		ck_assert_str_eq(l.name, "b1");
		ck_assert_uint_eq(l.term, 8);
		ps[1].ann.state = ELECTION_ANN_RELEASED;
		election_set_peers(p.e, ps, 2, 10);
		ck_assert_msg(!election_leader(p.e, 10, &l), "reports %s/%" PRIu64, l.name,
			      l.term);
		ck_assert_int_eq(p.nleader, 2);
		/* a1 wakes up and lets go: still none */
		ps[0].ann.state = ELECTION_ANN_RELEASED;
		election_set_peers(p.e, ps, 2, 20);
		ck_assert(!election_leader(p.e, 20, &l));
		ck_assert_int_eq(p.nleader, 2);
		election_delete(p.e);
	}

	/* postgres: the holder an ACQUIRE answer named, below a term since
	 * seen, is not reported either */
	probe_new(&p, "c", ELECTION_BACKEND_POSTGRES, true, 0);
	election_start(p.e, 0);
	r = answer(ELECTION_LEASE_ACQUIRE, false, 3, "x", 4000);
	election_lease_done(p.e, &r, 5);
	ck_assert(election_leader(p.e, 5, &l));
	ck_assert_str_eq(l.name, "x");
	ps[0] = pgpeer("y", true, true, ELECTION_ANN_RELEASED, 5);
	election_set_peers(p.e, ps, 1, 6);
	ck_assert(!election_leader(p.e, 6, &l));
	election_delete(p.e);

	/* gossip: a leader that learns a higher term from a RELEASED steps
	 * down at once, and is re-elected above it */
	probe_new(&p, "m", ELECTION_BACKEND_GOSSIP, true, 0);
	election_start(p.e, 0);
	ck_assert_uint_eq(election_term(p.e), 1);
	ps[0] = peer("z", true, true, ELECTION_ANN_RELEASED, 5);
	ps[0].priority = 1;
	election_set_peers(p.e, ps, 1, 10);
	election_stats_get(p.e, &st);
	ck_assert_uint_eq(st.step_downs, 1);
	ck_assert_uint_eq(st.elections_won, 2);
	ck_assert_int_eq(election_role(p.e), ELECTION_LEADER);
	ck_assert_uint_eq(election_term(p.e), 6);
	ck_assert_int_eq(p.ann_state, ELECTION_ANN_LEADING);
	ck_assert_uint_eq(p.ann_term, 6);
	ck_assert(election_leader(p.e, 10, &l) && l.self && l.term == 6);
	election_delete(p.e);
}
END_TEST

/* Only eligible peers of our backend are heeded, within the jump bound;
 * the others are counted once each. */
START_TEST(test_unheeded_announcements)
{
	struct probe p;
	struct election_peer ps[3];
	struct election_leader l;
	struct election_stats st;
	const uint64_t J = ELECTION_TERM_JUMP_MAX;

	probe_new(&p, "a", ELECTION_BACKEND_POSTGRES, true, 0);
	ps[0] = peer("g", true, true, ELECTION_ANN_LEADING, 60);     /* gossip backend */
	ps[1] = pgpeer("i", true, false, ELECTION_ANN_LEADING, 50);  /* ineligible */
	ps[2] = pgpeer("p", true, true, ELECTION_ANN_LEADING, 3);
	election_set_peers(p.e, ps, 3, 0);
	ck_assert_uint_eq(election_max_term(p.e), 3);
	ck_assert(election_leader(p.e, 0, &l));
	ck_assert_str_eq(l.name, "p");
	election_stats_get(p.e, &st);
	ck_assert_uint_eq(st.announcements_ignored, 2);
	election_set_peers(p.e, ps, 3, 1);                /* the same: not again */
	election_stats_get(p.e, &st);
	ck_assert_uint_eq(st.announcements_ignored, 2);
	ps[0].ann.term = 61;                              /* a new one: counted */
	election_set_peers(p.e, ps, 3, 2);
	election_stats_get(p.e, &st);
	ck_assert_uint_eq(st.announcements_ignored, 3);
	/* a jump of more than 2^32: corrupt; exactly 2^32: believed */
	ps[2].ann.term = 3 + J + 1;
	election_set_peers(p.e, ps, 3, 3);
	ck_assert_uint_eq(election_max_term(p.e), 3);
	ck_assert(!election_leader(p.e, 3, &l));          /* p's claim is absent now */
	election_stats_get(p.e, &st);
	ck_assert_uint_eq(st.announcements_ignored, 4);
	ps[2].ann.term = 3 + J;
	election_set_peers(p.e, ps, 3, 4);
	ck_assert_uint_eq(election_max_term(p.e), 3 + J);
	ck_assert(election_leader(p.e, 4, &l));
	ck_assert_uint_eq(l.term, 3 + J);
	/* a malformed one (term 0) counts too */
	ps[2].ann.term = 0;
	election_set_peers(p.e, ps, 3, 5);
	election_stats_get(p.e, &st);
	ck_assert_uint_eq(st.announcements_ignored, 5);
	election_delete(p.e);
}
END_TEST

/* A postgres leader is not deposed by a primary-region node running the
 * gossip backend (no database URL), nor by an ineligible one. */
START_TEST(test_pg_ignores_other_backend)
{
	struct probe p;
	struct election_peer ps[2];
	struct election_leader l;

	pg_leader(&p, "a", 5, 0);
	ps[0] = peer("g", true, true, ELECTION_ANN_LEADING, 6);
	ps[1] = pgpeer("i", true, false, ELECTION_ANN_LEADING, 7);
	election_set_peers(p.e, ps, 2, 10);
	ck_assert_int_eq(election_role(p.e), ELECTION_LEADER);
	ck_assert_uint_eq(election_max_term(p.e), 5);
	ck_assert(election_leader(p.e, 10, &l) && l.self && l.term == 5);
	ps[0].ann.state = ELECTION_ANN_RELEASED;
	ps[0].ann.term = 100;
	election_set_peers(p.e, ps, 2, 20);
	ck_assert_int_eq(election_role(p.e), ELECTION_LEADER);
	ck_assert_int_eq(p.nreq, 1);
	election_delete(p.e);
}
END_TEST

/* The other way round: a gossip leader ignores postgres-backend and
 * ineligible claims. */
START_TEST(test_gossip_ignores_other_backend)
{
	struct probe p;
	struct election_peer ps[2];
	struct election_leader l;
	struct election_stats st;

	probe_new(&p, "m", ELECTION_BACKEND_GOSSIP, true, 0);
	election_start(p.e, 0);
	ps[0] = pgpeer("q", true, true, ELECTION_ANN_LEADING, 9);
	ps[0].priority = 1;
	ps[1] = peer("z", true, false, ELECTION_ANN_LEADING, 8);
	election_set_peers(p.e, ps, 2, 10);
	ck_assert_int_eq(election_role(p.e), ELECTION_LEADER);
	ck_assert_uint_eq(election_term(p.e), 1);
	ck_assert_uint_eq(election_max_term(p.e), 1);
	ck_assert_int_eq(p.nrole, 1);
	ck_assert(election_leader(p.e, 10, &l) && l.self);
	election_stats_get(p.e, &st);
	ck_assert_uint_eq(st.announcements_ignored, 2);
	election_delete(p.e);
}
END_TEST

/* A node outside the primary region only observes: it follows the
 * leader whatever backend the primary region runs (it has no database
 * of its own, so its own backend is gossip), never an ineligible claim. */
START_TEST(test_observer_follows_any_backend)
{
	struct probe p;
	struct election_peer ps[2];
	struct election_leader l;

	probe_new(&p, "f1", ELECTION_BACKEND_GOSSIP, false, 0);
	election_start(p.e, 0);
	ps[0] = pgpeer("a1", true, true, ELECTION_ANN_LEADING, 4);
	ps[1] = peer("s1", true, false, ELECTION_ANN_LEADING, 9);
	election_set_peers(p.e, ps, 2, 10);
	ck_assert_int_eq(election_role(p.e), ELECTION_FOLLOWER);
	ck_assert(election_leader(p.e, 10, &l));
	ck_assert_str_eq(l.name, "a1");
	ck_assert_uint_eq(l.term, 4);
	ck_assert(!l.self);
	election_delete(p.e);
}
END_TEST

/* The gossip term never wraps: at max_term UINT64_MAX nobody leads. */
START_TEST(test_gossip_term_top)
{
	struct probe p;
	struct election_peer ps[1];
	struct election_stats st;

	/* by default such a term is a jump past the bound: ignored */
	probe_new(&p, "m", ELECTION_BACKEND_GOSSIP, true, 0);
	ps[0] = peer("z", true, true, ELECTION_ANN_RELEASED, UINT64_MAX);
	ps[0].priority = 1;
	election_set_peers(p.e, ps, 1, 0);
	election_start(p.e, 0);
	ck_assert_uint_eq(election_term(p.e), 1);
	election_stats_get(p.e, &st);
	ck_assert_uint_eq(st.announcements_ignored, 1);
	election_delete(p.e);

	/* unbounded jumps: the last term there is */
	probe_new_jump(&p, "m", ELECTION_BACKEND_GOSSIP, true, 0, UINT64_MAX);
	ps[0].ann.term = UINT64_MAX - 1;
	election_set_peers(p.e, ps, 1, 0);
	election_start(p.e, 0);
	ck_assert_int_eq(election_role(p.e), ELECTION_LEADER);
	ck_assert_uint_eq(election_term(p.e), UINT64_MAX);
	ps[0].ann.term = UINT64_MAX;                      /* not above ours */
	election_set_peers(p.e, ps, 1, 10);
	ck_assert_uint_eq(election_term(p.e), UINT64_MAX);
	ck_assert_int_eq(p.nrole, 1);
	election_delete(p.e);

	/* max_term UINT64_MAX: no term left to lead under, never 0 */
	probe_new_jump(&p, "m", ELECTION_BACKEND_GOSSIP, true, 0, UINT64_MAX);
	election_start(p.e, 0);
	ck_assert_uint_eq(election_term(p.e), 1);
	election_set_peers(p.e, ps, 1, 10);               /* RELEASED UINT64_MAX */
	ck_assert_int_eq(election_role(p.e), ELECTION_FOLLOWER);
	ck_assert_int_eq(p.why, ELECTION_WHY_HIGHER_TERM);
	for (uint64_t t = 10; t < 10000; t += 100)
		election_tick(p.e, t);
	ck_assert_int_eq(election_role(p.e), ELECTION_FOLLOWER);
	ck_assert_int_eq(p.nrole, 2);
	ck_assert_uint_eq(election_max_term(p.e), UINT64_MAX);
	election_delete(p.e);
}
END_TEST

/* Postgres handoff: RELEASED goes out on the RELEASE answer (at once when
 * there is nothing to release). */
START_TEST(test_pg_released_after_release)
{
	struct probe p;
	struct election_lease_result r;

	pg_leader(&p, "a", 2, 0);
	election_leave(p.e, 10);
	ck_assert_int_eq(p.why, ELECTION_WHY_LEAVING);
	ck_assert_int_eq(p.op, ELECTION_LEASE_RELEASE);
	ck_assert_int_eq(p.nann, 1);
	ck_assert_int_eq(p.ann_state, ELECTION_ANN_LEADING);
	r = answer(ELECTION_LEASE_RELEASE, false, 2, "a", 0);
	election_lease_done(p.e, &r, 12);
	ck_assert_int_eq(p.nann, 2);
	ck_assert_int_eq(p.ann_state, ELECTION_ANN_RELEASED);
	ck_assert_uint_eq(p.ann_term, 2);
	ck_assert_uint_eq(p.ann_since, 0);
	ck_assert(election_leave_done(p.e));
	election_delete(p.e);

	/* the lease lost: nothing to release, RELEASED at once */
	pg_leader(&p, "a", 2, 0);
	election_tick(p.e, 1000);
	r = answer(ELECTION_LEASE_RENEW, false, 3, "b", 4000);
	election_lease_done(p.e, &r, 1002);
	ck_assert_int_eq(p.why, ELECTION_WHY_LEASE_LOST);
	ck_assert_int_eq(p.nann, 2);
	ck_assert_int_eq(p.ann_state, ELECTION_ANN_RELEASED);
	election_delete(p.e);
}
END_TEST

/* The follower's side: the leaving tag sent an ACQUIRE to a lease that was
 * still valid; the RELEASED that follows the RELEASE sends one at once. */
START_TEST(test_pg_follower_sees_released)
{
	struct probe p;
	struct election_peer ps[1];
	struct election_lease_result r;

	probe_new(&p, "f", ELECTION_BACKEND_POSTGRES, true, 0);
	ps[0] = pgpeer("b", true, true, ELECTION_ANN_LEADING, 4);
	election_set_peers(p.e, ps, 1, 0);
	election_start(p.e, 0);
	r = answer(ELECTION_LEASE_ACQUIRE, false, 4, "b", 3000);
	election_lease_done(p.e, &r, 5);
	ck_assert_int_eq(p.nreq, 1);
	ps[0].leaving = true;                             /* b is leaving */
	election_set_peers(p.e, ps, 1, 100);
	ck_assert_int_eq(p.nreq, 2);
	r = answer(ELECTION_LEASE_ACQUIRE, false, 4, "b", 2900);   /* not yet released */
	election_lease_done(p.e, &r, 102);
	ck_assert_int_eq(p.nreq, 2);
	ck_assert_uint_ge(election_next_deadline(p.e), 102 + 50); /* the backoff */
	ps[0].ann.state = ELECTION_ANN_RELEASED;          /* its RELEASE is answered */
	election_set_peers(p.e, ps, 1, 110);
	ck_assert_int_eq(p.nreq, 3);
	ck_assert_int_eq(p.op, ELECTION_LEASE_ACQUIRE);
	r = answer(ELECTION_LEASE_ACQUIRE, true, 5, "f", 5000);
	election_lease_done(p.e, &r, 112);
	ck_assert_int_eq(election_role(p.e), ELECTION_LEADER);
	election_set_peers(p.e, ps, 1, 120);              /* unchanged: nothing */
	ck_assert_int_eq(p.nreq, 3);
	election_delete(p.e);
}
END_TEST

/* ==================================================================== */
/* The world                                                             */
/* ==================================================================== */

#define MAXN 5
#define MAXREQ 64
#define MAXGEV 8192

struct snap {
	bool known, live, leaving, announced;
	struct election_announce ann;
	uint64_t ver;
};

struct gev {
	uint64_t at;
	int to, from;
	struct snap s;
};

struct req {
	bool used, need_exec, need_answer;
	int node;
	uint64_t inc;
	enum election_lease_op op;
	uint64_t term;
	uint64_t arrive_at, answer_at;
	struct election_lease_result res;
};

struct world;

struct node {
	struct world *w;
	int i;
	char name[16];
	struct election *e;
	bool up, paused, eligible, leaving;
	uint32_t priority;
	uint64_t inc;
	int64_t off;
	int drift;                  /* per mille */
	struct snap pub;
	bool db_cut, never_answer;
	uint64_t hang_ms;           /* answers come this much later */
	bool hang_one;              /* only the next request's */
	/* records */
	uint64_t max_before, last_max, last_lead_term;
	uint64_t last_report_term;  /* highest term election_leader() reported */
	uint64_t elected_at, stepped_at;
	enum election_why last_why;
	int wins, downs;
	uint64_t requests[3];
	uint64_t leader_calls;
};

struct world {
	uint64_t t, rng;
	size_t n;
	enum election_backend backend;
	struct election_config cfg;
	struct node nd[MAXN];
	struct snap view[MAXN][MAXN];
	bool dirty[MAXN];
	struct gev gq[MAXGEV];
	size_t ngq;
	struct req rq[MAXREQ];
	/* the lease row */
	bool row_exists;
	int row_node;
	uint64_t row_inc, row_term, row_expires;
	uint64_t skew, lat_min, lat_max, gos_min, gos_max, timeout_ms, detect_ms;
	bool db_down, silent, partitioned, drop_cut;
	int side[MAXN];
	/* grants: server time and the expiry they replaced */
	uint64_t grants, last_grant_st, last_grant_prev_expiry;
	int last_grant_node;
	uint64_t max_leaders;
	uint64_t late_grants, whys[ELECTION_WHY_INELIGIBLE + 1];   /* what a run exercised */
};

static uint64_t nnow(const struct node *nd)
{
	int64_t t = (int64_t)nd->w->t;

	return (uint64_t)(nd->off + t + t * nd->drift / 1000);
}

static uint64_t server_now(const struct world *w)
{
	return w->t + w->skew;
}

static void schedule(struct world *w, int to, int from, uint64_t delay)
{
	ck_assert_msg(w->ngq < MAXGEV, "gossip queue full");
	w->gq[w->ngq++] = (struct gev){ w->t + delay, to, from, w->nd[from].pub };
}

/* Node @i's state changed: the others learn it after a gossip delay. */
static void publish(struct world *w, int i, uint64_t extra)
{
	w->nd[i].pub.ver++;
	w->nd[i].pub.known = true;
	for (size_t j = 0; j < w->n; j++)
		if ((int)j != i)
			schedule(w, (int)j, i, extra + rnd(&w->rng, w->gos_min, w->gos_max));
}

static void republish_all(struct world *w)
{
	for (size_t i = 0; i < w->n; i++)
		for (size_t j = 0; j < w->n; j++)
			if (i != j)
				schedule(w, (int)j, (int)i, rnd(&w->rng, w->gos_min, w->gos_max));
}

static void check_max(struct node *nd)
{
	uint64_t m = election_max_term(nd->e);

	ck_assert_msg(m >= nd->last_max, "%s: max_term went back %" PRIu64 " -> %" PRIu64,
		      nd->name, nd->last_max, m);
	nd->last_max = m;
	nd->max_before = m;
}

/* ---- callbacks -------------------------------------------------------- */

static void w_request(void *ctx, enum election_lease_op op, uint64_t term)
{
	struct node *nd = ctx;
	struct world *w = nd->w;
	struct req *q = NULL;
	uint64_t up = rnd(&w->rng, w->lat_min, w->lat_max);
	uint64_t down = rnd(&w->rng, w->lat_min, w->lat_max);

	for (size_t k = 0; k < MAXREQ; k++) {
		struct req *r = &w->rq[k];

		if (r->used && r->need_answer && r->node == nd->i && r->inc == nd->inc)
			ck_abort_msg("%s: two lease requests in flight", nd->name);
		if (!r->used && !q)
			q = r;
	}
	ck_assert_ptr_nonnull(q);
	ck_assert_msg(nd->eligible || op == ELECTION_LEASE_RELEASE, "%s: ineligible requests",
		      nd->name);
	if (op == ELECTION_LEASE_ACQUIRE)
		ck_assert_msg(!nd->leaving, "%s: ACQUIRE after leave", nd->name);
	nd->requests[op]++;
	memset(q, 0, sizeof(*q));
	q->used = q->need_exec = q->need_answer = true;
	q->node = nd->i;
	q->inc = nd->inc;
	q->op = op;
	q->term = term;
	q->res.op = op;
	q->arrive_at = w->t + up;
	q->answer_at = q->arrive_at + nd->hang_ms + down;
	if (nd->hang_one)
		nd->hang_ms = 0;
	if (nd->never_answer)
		q->answer_at = NEVER;
	if (nd->db_cut) {
		/* Cut from the database: the statement may or may not run;
		 * the adapter gives up after its timeout. */
		if (w->drop_cut || one_in(&w->rng, 2))
			q->need_exec = false;
		q->answer_at = w->t + w->timeout_ms;
		q->res.status = -ETIMEDOUT;
	} else if (q->answer_at != NEVER && q->answer_at - w->t > w->timeout_ms) {
		q->answer_at = w->t + w->timeout_ms;
		q->res.status = -ETIMEDOUT;
	}
	if (q->res.status)
		snprintf(q->res.error, sizeof(q->res.error), "timeout");
}

static void w_announce(void *ctx, enum election_ann_state st, uint64_t term, uint64_t since)
{
	struct node *nd = ctx;

	nd->pub.announced = true;
	nd->pub.ann.state = (uint8_t)st;
	nd->pub.ann.backend = (uint8_t)nd->w->backend;
	nd->pub.ann.term = term;
	nd->pub.ann.since_wall_ms = 1700000000000ULL + since;
	publish(nd->w, nd->i, 0);
}

static void w_role(void *ctx, enum election_role from, enum election_role to, uint64_t term,
		   enum election_why why)
{
	struct node *nd = ctx;

	ck_assert_int_ne(from, to);
	if (to == ELECTION_LEADER) {
		ck_assert_msg(nd->eligible, "%s: ineligible node leads", nd->name);
		ck_assert_msg(!nd->leaving, "%s: leads after leave", nd->name);
		ck_assert_msg(term > nd->max_before, "%s: term %" PRIu64 " not above %" PRIu64,
			      nd->name, term, nd->max_before);
		ck_assert_msg(term > nd->last_lead_term, "%s: term %" PRIu64 " after %" PRIu64,
			      nd->name, term, nd->last_lead_term);
		nd->last_lead_term = term;
		nd->elected_at = nd->w->t;
		nd->wins++;
	}
	if (from == ELECTION_LEADER) {
		if ((unsigned)why <= ELECTION_WHY_INELIGIBLE)
			nd->w->whys[why]++;
		nd->stepped_at = nd->w->t;
		nd->last_why = why;
		nd->downs++;
	}
}

static void w_leader(void *ctx)
{
	((struct node *)ctx)->leader_calls++;
}

/* ---- inputs, each followed by the monotonicity check ------------------ */

static void n_set_peers(struct node *nd)
{
	struct world *w = nd->w;
	struct election_peer ps[MAXN];
	size_t m = 0;

	for (size_t j = 0; j < w->n; j++) {
		const struct snap *s = &w->view[nd->i][j];

		if ((int)j == nd->i || !s->known)
			continue;
		ps[m] = (struct election_peer){
			.name = w->nd[j].name,
			.live = s->live && !(w->partitioned && w->side[j] != w->side[nd->i]),
			.leaving = s->leaving,
			.eligible = w->nd[j].eligible,
			.priority = w->nd[j].priority,
			.announced = s->announced,
			.ann = s->ann,
		};
		m++;
	}
	ck_assert_int_eq(election_set_peers(nd->e, ps, m, nnow(nd)), 0);
	check_max(nd);
}

static void n_tick(struct node *nd)
{
	election_tick(nd->e, nnow(nd));
	check_max(nd);
}

static void node_boot(struct world *w, int i)
{
	struct node *nd = &w->nd[i];
	struct election_config c = w->cfg;
	struct election_ops ops = { nd, w_request, w_announce, w_role, w_leader };

	c.node = nd->name;
	c.eligible = nd->eligible;
	c.priority = nd->priority;
	c.backend = w->backend;
	c.seed = splitmix64(&w->rng);
	nd->inc++;
	nd->up = true;
	nd->paused = false;
	nd->leaving = false;
	nd->last_max = nd->max_before = 0;
	nd->last_lead_term = 0;
	nd->last_report_term = 0;
	nd->e = election_new(&c, &ops, nnow(nd));
	ck_assert_ptr_nonnull(nd->e);
	nd->pub.live = true;
	nd->pub.leaving = false;
	nd->pub.announced = false;
	memset(&nd->pub.ann, 0, sizeof(nd->pub.ann));
	publish(w, i, 0);
	w->dirty[i] = true;
}

static void node_start(struct world *w, int i)
{
	struct node *nd = &w->nd[i];

	n_set_peers(nd);
	w->dirty[i] = false;
	election_start(nd->e, nnow(nd));
	check_max(nd);
}

static void collect(struct world *w, struct node *nd)
{
	struct election_stats st;

	election_stats_get(nd->e, &st);
	w->late_grants += st.late_grants_released;
}

static void node_crash(struct world *w, int i)
{
	struct node *nd = &w->nd[i];

	collect(w, nd);
	election_delete(nd->e);
	nd->e = NULL;
	nd->up = false;
	nd->paused = false;
	nd->pub.live = false;
	if (!w->silent)
		publish(w, i, w->detect_ms);
}

static void node_pause(struct world *w, int i, bool pause)
{
	struct node *nd = &w->nd[i];

	nd->paused = pause;
	nd->pub.live = !pause;
	if (!w->silent)
		publish(w, i, pause ? w->detect_ms : 0);
	w->dirty[i] = true;
}

static void node_leave(struct world *w, int i)
{
	struct node *nd = &w->nd[i];

	nd->leaving = true;
	election_leave(nd->e, nnow(nd));
	check_max(nd);
	nd->pub.leaving = true;
	publish(w, i, 0);
}

static void world_init(struct world *w, size_t n, enum election_backend b, uint64_t seed)
{
	memset(w, 0, sizeof(*w));
	w->rng = seed;
	w->n = n;
	w->backend = b;
	election_config_default(&w->cfg);
	w->t = 1000;
	w->skew = rnd(&w->rng, 0, 1000000);
	w->lat_min = 1;
	w->lat_max = 5;
	w->gos_min = 5;
	w->gos_max = 50;
	w->timeout_ms = 1500;
	w->detect_ms = 1000;
	for (size_t i = 0; i < n; i++) {
		struct node *nd = &w->nd[i];

		nd->w = w;
		nd->i = (int)i;
		snprintf(nd->name, sizeof(nd->name), "n%u", (unsigned)i % 100);
		nd->eligible = true;
		nd->off = (int64_t)rnd(&w->rng, 0, 100000000);
		nd->drift = (int)rnd(&w->rng, 0, 40) - 20;
	}
}

/* Boots every node with a full view, then starts them. */
static void world_start(struct world *w)
{
	for (size_t i = 0; i < w->n; i++)
		node_boot(w, (int)i);
	for (size_t i = 0; i < w->n; i++)
		for (size_t j = 0; j < w->n; j++)
			w->view[i][j] = w->nd[j].pub;
	w->ngq = 0;
	for (size_t i = 0; i < w->n; i++)
		node_start(w, (int)i);
}

static void world_free(struct world *w)
{
	for (size_t i = 0; i < w->n; i++)
		election_delete(w->nd[i].e);
}

static void db_report(struct world *w, struct election_lease_result *r)
{
	uint64_t st = server_now(w);

	r->term = w->row_exists ? w->row_term : 0;
	snprintf(r->holder, sizeof(r->holder), "%s", w->row_exists ? w->nd[w->row_node].name : "");
	r->holder_valid = w->row_exists && st < w->row_expires;
	r->remaining_ms = r->holder_valid ? (uint32_t)(w->row_expires - st) : 0;
}

/* The statement runs at the server. */
static void db_exec(struct world *w, struct req *q)
{
	uint64_t st = server_now(w);
	bool mine = w->row_exists && w->row_node == q->node && w->row_inc == q->inc;
	bool held = false;

	q->need_exec = false;
	if (w->db_down) {
		if (!q->res.status) {
			q->res.status = -ECONNREFUSED;
			snprintf(q->res.error, sizeof(q->res.error), "down");
		}
		return;
	}
	switch (q->op) {
	case ELECTION_LEASE_ACQUIRE:
		/* lease_pg's statement: expired, or our own holder id (an
		 * answer we lost); term greatest(row, our max_term) + 1 */
		if (!w->row_exists || st >= w->row_expires || mine) {
			w->grants++;
			w->last_grant_st = st;
			w->last_grant_prev_expiry = w->row_exists ? w->row_expires : 0;
			w->last_grant_node = q->node;
			w->row_exists = true;
			w->row_node = q->node;
			w->row_inc = q->inc;
			w->row_term = (w->row_term > q->term ? w->row_term : q->term) + 1;
			w->row_expires = st + w->cfg.lease_ms;
			held = true;
		}
		break;
	case ELECTION_LEASE_RENEW:
		if (mine && w->row_term == q->term && st < w->row_expires) {
			w->row_expires = st + w->cfg.lease_ms;
			held = true;
		}
		break;
	case ELECTION_LEASE_RELEASE:
		if (mine && w->row_term == q->term && st < w->row_expires)
			w->row_expires = st;
		break;
	}
	if (!q->res.status) {
		q->res.held = held;
		db_report(w, &q->res);
	}
}

static void deliver_gossip(struct world *w)
{
	size_t k = 0;

	for (size_t i = 0; i < w->ngq; i++) {
		struct gev *g = &w->gq[i];
		struct snap *v = &w->view[g->to][g->from];

		if (g->at > w->t) {
			w->gq[k++] = *g;
			continue;
		}
		if (w->partitioned && w->side[g->to] != w->side[g->from])
			continue;   /* lost; resent at the heal */
		if (g->s.ver > v->ver || !v->known) {
			*v = g->s;
			w->dirty[g->to] = true;
		}
	}
	w->ngq = k;
}

/* The leader a node reports never goes back to a lower term. */
static void check_report(struct node *nd)
{
	struct election_leader l;

	if (!election_leader(nd->e, nnow(nd), &l))
		return;
	ck_assert_msg(l.term >= nd->last_report_term, "t=%" PRIu64 ": %s reports %s/%" PRIu64
		      " after a leader under term %" PRIu64, nd->w->t, nd->name, l.name, l.term,
		      nd->last_report_term);
	ck_assert_uint_eq(l.term, election_max_term(nd->e));
	nd->last_report_term = l.term;
}

/* At most one machine may act as leader; a postgres leader holds the row;
 * what each reports as the leader only moves to higher terms. */
static void check_safety(struct world *w)
{
	int leaders = 0;

	for (size_t i = 0; i < w->n; i++) {
		struct node *nd = &w->nd[i];

		if (nd->e && nd->up && !nd->paused)
			check_report(nd);

		if (!nd->e || !election_is_leader(nd->e, nnow(nd)))
			continue;
		leaders++;
		if (w->backend == ELECTION_BACKEND_POSTGRES)
			ck_assert_msg(w->row_exists && w->row_node == nd->i &&
				      w->row_inc == nd->inc &&
				      w->row_term == election_term(nd->e) &&
				      server_now(w) < w->row_expires,
				      "t=%" PRIu64 ": %s leads term %" PRIu64
				      " without the lease (row %s term %" PRIu64 ")",
				      w->t, nd->name, election_term(nd->e),
				      w->nd[w->row_node].name, w->row_term);
	}
	if (w->backend == ELECTION_BACKEND_POSTGRES)
		ck_assert_msg(leaders <= 1, "t=%" PRIu64 ": %d leaders", w->t, leaders);
	if ((uint64_t)leaders > w->max_leaders)
		w->max_leaders = (uint64_t)leaders;
}

static void step(struct world *w)
{
	w->t++;
	for (size_t k = 0; k < MAXREQ; k++) {
		struct req *q = &w->rq[k];

		if (q->used && q->need_exec && q->arrive_at <= w->t)
			db_exec(w, q);
	}
	for (size_t k = 0; k < MAXREQ; k++) {
		struct req *q = &w->rq[k];
		struct node *nd;

		if (!q->used || !q->need_answer || q->answer_at > w->t)
			continue;
		nd = &w->nd[q->node];
		if (!nd->up || nd->inc != q->inc) {
			q->need_answer = false;    /* that process is gone */
		} else if (!nd->paused) {
			struct election_lease_result r = q->res;

			q->need_answer = false;
			election_lease_done(nd->e, &r, nnow(nd));
			check_max(nd);
		}
	}
	for (size_t k = 0; k < MAXREQ; k++) {
		struct req *q = &w->rq[k];

		if (q->used && !q->need_answer && (!q->need_exec || q->arrive_at == NEVER))
			q->used = false;
	}
	deliver_gossip(w);
	for (size_t i = 0; i < w->n; i++) {
		struct node *nd = &w->nd[i];

		if (!nd->up || nd->paused)
			continue;
		if (w->dirty[i]) {
			w->dirty[i] = false;
			n_set_peers(nd);
		}
		if (nnow(nd) >= election_next_deadline(nd->e))
			n_tick(nd);
	}
	check_safety(w);
}

static void run_for(struct world *w, uint64_t ms)
{
	for (uint64_t k = 0; k < ms; k++)
		step(w);
}

static int leader_count(const struct world *w, int *who)
{
	int c = 0;

	for (size_t i = 0; i < w->n; i++) {
		const struct node *nd = &w->nd[i];

		if (nd->e && nd->up && election_is_leader(nd->e, nnow(nd))) {
			c++;
			if (who)
				*who = (int)i;
		}
	}
	return c;
}

/* Runs until exactly one leader (at most @max ms); its index. */
static int run_until_leader(struct world *w, uint64_t max)
{
	int who = -1;

	for (uint64_t k = 0; k < max; k++) {
		if (leader_count(w, &who) == 1)
			return who;
		step(w);
	}
	ck_abort_msg("t=%" PRIu64 ": no single leader within %" PRIu64 " ms", w->t, max);
	return -1;
}

/* Every up node knows @who as leader under its term. */
static void check_agree(struct world *w, int who)
{
	uint64_t term = election_term(w->nd[who].e);

	for (size_t i = 0; i < w->n; i++) {
		struct node *nd = &w->nd[i];
		struct election_leader l;

		if (!nd->up || nd->paused)
			continue;
		ck_assert_msg(election_leader(nd->e, nnow(nd), &l), "%s knows no leader",
			      nd->name);
		ck_assert_msg(strcmp(l.name, w->nd[who].name) == 0 && l.term == term,
			      "%s thinks %s/%" PRIu64 " leads, not %s/%" PRIu64, nd->name, l.name,
			      l.term, w->nd[who].name, term);
		ck_assert(l.self == ((int)i == who));
	}
}

/* ==================================================================== */
/* Worlds: postgres                                                      */
/* ==================================================================== */

START_TEST(test_pg_single_leader)
{
	struct world *w = calloc(1, sizeof(*w));
	int who;

	world_init(w, 5, ELECTION_BACKEND_POSTGRES, seed_of("pg_single_leader"));
	w->nd[4].eligible = false;
	world_start(w);
	who = run_until_leader(w, 100);
	ck_assert_int_ne(who, 4);
	run_for(w, 10000);
	ck_assert_int_eq(leader_count(w, &who), 1);
	ck_assert_int_eq(w->nd[who].wins, 1);
	ck_assert_uint_eq(w->grants, 1);
	check_agree(w, who);
	for (size_t i = 0; i < w->n; i++) {
		if ((int)i == who)
			continue;
		/* followers poll every renew_ms: about ten in ten seconds */
		ck_assert_uint_le(w->nd[i].requests[ELECTION_LEASE_ACQUIRE], 13);
	}
	ck_assert_uint_eq(w->nd[4].requests[0] + w->nd[4].requests[1] + w->nd[4].requests[2], 0);
	ck_assert_uint_ge(w->nd[who].requests[ELECTION_LEASE_RENEW], 9);
	world_free(w);
	free(w);
}
END_TEST

/* Runs until node @i has just sent a RENEW. */
static void renew_phase(struct world *w, int i)
{
	uint64_t n = w->nd[i].requests[ELECTION_LEASE_RENEW];

	for (int k = 0; k < 2000 && w->nd[i].requests[ELECTION_LEASE_RENEW] == n; k++)
		step(w);
	ck_assert_uint_gt(w->nd[i].requests[ELECTION_LEASE_RENEW], n);
}

START_TEST(test_pg_leave_handoff)
{
	struct world *w = calloc(1, sizeof(*w));
	int who, next;
	uint64_t released_at = 0, acq;

	world_init(w, 3, ELECTION_BACKEND_POSTGRES, seed_of("pg_leave_handoff"));
	/* gossip slower than the database: the RELEASE runs before the
	 * successor hears of it */
	w->lat_min = w->lat_max = 2;
	w->gos_min = w->gos_max = 5;
	world_start(w);
	who = run_until_leader(w, 100);
	run_for(w, 2500);
	renew_phase(w, who);
	run_for(w, 2 * w->lat_max + 1);   /* nothing in flight now */
	node_leave(w, who);
	ck_assert(!election_is_leader(w->nd[who].e, nnow(&w->nd[who])));
	ck_assert_int_eq(w->nd[who].last_why, ELECTION_WHY_LEAVING);
	acq = w->nd[who].requests[ELECTION_LEASE_ACQUIRE];
	for (int k = 0; k < 100 && !election_leave_done(w->nd[who].e); k++) {
		step(w);
		released_at = w->t;
	}
	ck_assert(election_leave_done(w->nd[who].e));
	ck_assert_uint_eq(w->nd[who].requests[ELECTION_LEASE_RELEASE], 1);
	next = run_until_leader(w, 50);
	ck_assert_int_ne(next, who);
	printf("pg_leave_handoff: successor %" PRIu64 " ms after the RELEASE answer\n",
	       w->t - released_at);
	ck_assert_msg(w->t - released_at <= 10, "successor after %" PRIu64 " ms",
		      w->t - released_at);
	run_for(w, 20000);
	ck_assert_int_eq(leader_count(w, NULL), 1);
	ck_assert_uint_eq(w->nd[who].requests[ELECTION_LEASE_ACQUIRE], acq);
	ck_assert_int_eq(w->nd[who].wins, 1);
	world_free(w);

	/* gossip faster than the database: the successor's first ACQUIRE
	 * (on the leaving tag) beats the RELEASE and finds the lease valid;
	 * the RELEASED announced on the RELEASE answer sends it again at
	 * once: a gossip delay and a round trip (two, were an ACQUIRE in
	 * flight) after the answer, not the 50-200 ms retry backoff */
	world_init(w, 3, ELECTION_BACKEND_POSTGRES, seed_of("pg_leave_handoff_race"));
	w->lat_min = w->lat_max = 10;
	w->gos_min = w->gos_max = 1;
	world_start(w);
	who = run_until_leader(w, 100);
	run_for(w, 2500);
	renew_phase(w, who);              /* a RENEW in flight delays the RELEASE */
	node_leave(w, who);
	for (int k = 0; k < 100 && !election_leave_done(w->nd[who].e); k++) {
		step(w);
		released_at = w->t;
	}
	next = run_until_leader(w, 500);
	ck_assert_int_ne(next, who);
	printf("pg_leave_handoff_race: successor %" PRIu64 " ms after the RELEASE answer\n",
	       w->t - released_at);
	ck_assert_msg(w->t - released_at <= 4 * w->lat_max + w->gos_max + 3,
		      "successor after %" PRIu64 " ms", w->t - released_at);
	world_free(w);
	free(w);
}
END_TEST

/* The leader is cut from the database: it steps down strictly before its
 * lease expires at the server, and another takes it only after that. */
START_TEST(test_pg_partitioned_leader)
{
	struct world *w = calloc(1, sizeof(*w));
	int who, next;
	uint64_t expiry_fake;

	for (int variant = 0; variant < 2; variant++) {
		const char *name = variant ? "pg_partitioned_leader_hang" : "pg_partitioned_leader";

		world_init(w, 3, ELECTION_BACKEND_POSTGRES, seed_of(name));
		for (size_t i = 0; i < w->n; i++)
			w->nd[i].drift = 0;
		world_start(w);
		who = run_until_leader(w, 100);
		run_for(w, 2345);
		if (variant)
			w->nd[who].never_answer = true;   /* the adapter hangs too */
		w->nd[who].db_cut = !variant;
		w->drop_cut = true;
		for (int k = 0; k < 10000 && election_is_leader(w->nd[who].e, nnow(&w->nd[who]));
		     k++)
			step(w);
		/* whatever ran at the server has run: the lease's last expiry */
		expiry_fake = w->row_expires - w->skew;
		ck_assert_int_eq(w->row_node, who);
		ck_assert_int_eq(w->nd[who].downs, 1);
		ck_assert_int_eq(w->nd[who].last_why, ELECTION_WHY_DEADLINE);
		ck_assert_msg(w->nd[who].stepped_at < expiry_fake,
			      "stepped down at %" PRIu64 ", lease expired at %" PRIu64,
			      w->nd[who].stepped_at, expiry_fake);
		ck_assert_uint_ge(expiry_fake - w->nd[who].stepped_at, w->cfg.guard_ms - 10);
		next = run_until_leader(w, 10000);
		ck_assert_int_ne(next, who);
		ck_assert_uint_ge(w->last_grant_st, w->last_grant_prev_expiry);
		ck_assert_uint_ge(w->last_grant_st - w->skew, expiry_fake);
		/* takeover soon after the expiry */
		ck_assert_uint_le(w->t, expiry_fake + 20);
		run_for(w, 10000);
		ck_assert_int_eq(leader_count(w, NULL), 1);
		ck_assert_int_eq(w->nd[who].wins, 1);
		world_free(w);
	}
	free(w);
}
END_TEST

START_TEST(test_pg_db_down)
{
	struct world *w = calloc(1, sizeof(*w));
	int who;
	uint64_t down_at;

	world_init(w, 4, ELECTION_BACKEND_POSTGRES, seed_of("pg_db_down"));
	for (size_t i = 0; i < w->n; i++)
		w->nd[i].drift = 0;
	world_start(w);
	who = run_until_leader(w, 100);
	run_for(w, 3210);
	w->db_down = true;
	down_at = w->t;
	/* the last renewal that can succeed was sent before down_at */
	while (w->t < down_at + 20000) {
		step(w);
		if (w->t >= down_at + w->cfg.lease_ms - w->cfg.guard_ms)
			ck_assert_int_eq(leader_count(w, NULL), 0);
	}
	ck_assert_int_eq(w->nd[who].last_why, ELECTION_WHY_DEADLINE);
	ck_assert_int_eq(w->nd[who].downs, 1);
	ck_assert_uint_lt(w->nd[who].stepped_at, down_at + w->cfg.lease_ms - w->cfg.guard_ms);
	w->db_down = false;
	who = run_until_leader(w, w->cfg.lease_ms + 2000);
	run_for(w, 5000);
	ck_assert_int_eq(leader_count(w, NULL), 1);
	check_agree(w, who);
	world_free(w);
	free(w);
}
END_TEST

/* A leader dies silently (gossip does not notice): a follower takes the
 * lease right after it expires at the server, not a renew_ms later.  Then
 * the same with gossip noticing the failure. */
START_TEST(test_pg_dead_leader_takeover)
{
	struct world *w = calloc(1, sizeof(*w));

	for (int variant = 0; variant < 2; variant++) {
		int who, next;
		uint64_t expiry_fake;

		world_init(w, 3, ELECTION_BACKEND_POSTGRES,
			   seed_of(variant ? "pg_dead_leader_detected" : "pg_dead_leader_silent"));
		w->silent = !variant;
		w->detect_ms = 700;
		for (size_t i = 0; i < w->n; i++)
			w->nd[i].drift = 0;
		world_start(w);
		who = run_until_leader(w, 100);
		run_for(w, 1000 + rnd(&w->rng, 0, 3000));
		node_crash(w, who);
		run_for(w, 2 * w->lat_max + 1);      /* a RENEW in flight may land */
		expiry_fake = w->row_expires - w->skew;
		next = run_until_leader(w, 10000);
		ck_assert_int_ne(next, who);
		ck_assert_uint_ge(w->last_grant_st - w->skew, expiry_fake);
		ck_assert_msg(w->t <= expiry_fake + 3 * w->lat_max + 3,
			      "took over %" PRIu64 " ms after the expiry", w->t - expiry_fake);
		world_free(w);
	}
	free(w);
}
END_TEST

/* Random partitions, latency, hangs, pauses, crashes, leaves and database
 * outages: never two leaders, never a leader without the lease, terms only
 * grow; once everything heals, one leader that all agree on. */
static void pg_random_run(uint64_t seed, uint64_t ms)
{
	struct world *w = calloc(1, sizeof(*w));
	uint64_t db_back = 0, cut_until[MAXN] = { 0 }, back_at[MAXN] = { 0 };
	int who;

	world_init(w, 5, ELECTION_BACKEND_POSTGRES, seed);
	w->nd[4].eligible = false;
	w->lat_max = rnd(&w->rng, 2, 60);
	w->gos_max = rnd(&w->rng, 10, 300);
	w->timeout_ms = rnd(&w->rng, 500, 6000);   /* above lease - guard: late grants */
	world_start(w);
	while (w->t < ms) {
		uint64_t *r = &w->rng;

		if (!w->db_down && one_in(r, 40000)) {
			w->db_down = true;
			db_back = w->t + rnd(r, 500, 9000);
		} else if (w->db_down && w->t >= db_back) {
			w->db_down = false;
		}
		for (size_t i = 0; i < w->n; i++) {
			struct node *nd = &w->nd[i];

			if (nd->db_cut && w->t >= cut_until[i])
				nd->db_cut = false;
			if (nd->hang_ms && one_in(r, 2000))
				nd->hang_ms = 0;
			if (!nd->up) {
				if (w->t >= back_at[i]) {
					node_boot(w, (int)i);
					node_start(w, (int)i);
				}
				continue;
			}
			if (nd->paused) {
				if (w->t >= back_at[i])
					node_pause(w, (int)i, false);
				continue;
			}
			if (one_in(r, 15000)) {
				nd->db_cut = true;
				cut_until[i] = w->t + rnd(r, 200, 8000);
			} else if (one_in(r, 8000)) {
				nd->hang_ms = rnd(r, 500, 7000);
			} else if (one_in(r, 30000)) {
				node_pause(w, (int)i, true);
				back_at[i] = w->t + rnd(r, 100, 9000);
			} else if (one_in(r, 40000)) {
				node_crash(w, (int)i);
				back_at[i] = w->t + rnd(r, 100, 5000);
			} else if (one_in(r, 40000) && !nd->leaving) {
				node_leave(w, (int)i);
			} else if (nd->leaving && election_leave_done(nd->e) && one_in(r, 3000)) {
				node_crash(w, (int)i);   /* exits, comes back later */
				back_at[i] = w->t + rnd(r, 100, 3000);
			}
		}
		step(w);
	}
	/* heal everything; the hung requests time out */
	w->db_down = false;
	for (size_t i = 0; i < w->n; i++) {
		struct node *nd = &w->nd[i];

		nd->db_cut = false;
		nd->hang_ms = 0;
		if (!nd->up) {
			node_boot(w, (int)i);
			node_start(w, (int)i);
		} else if (nd->paused) {
			node_pause(w, (int)i, false);
		} else if (nd->leaving) {
			node_crash(w, (int)i);
			node_boot(w, (int)i);
			node_start(w, (int)i);
		}
	}
	run_for(w, w->timeout_ms + 2 * w->cfg.lease_ms + 2000);
	ck_assert_int_eq(leader_count(w, &who), 1);
	run_for(w, 2000);
	check_agree(w, who);
	for (size_t i = 0; i < w->n; i++)
		collect(w, &w->nd[i]);
	printf("pg_random seed %" PRIu64 ": %" PRIu64 " grants, final term %" PRIu64
	       ", %" PRIu64 " late grants, step-downs: deadline %" PRIu64 " lost %" PRIu64
	       " leaving %" PRIu64 "\n", seed, w->grants, w->row_term, w->late_grants,
	       w->whys[ELECTION_WHY_DEADLINE], w->whys[ELECTION_WHY_LEASE_LOST],
	       w->whys[ELECTION_WHY_LEAVING]);
	ck_assert_uint_ge(w->grants, 2);
	world_free(w);
	free(w);
}

START_TEST(test_pg_random_safety)
{
	uint64_t seed = seed_of("pg_random_safety");

	for (uint64_t k = 0; k < 6; k++)
		pg_random_run(seed + k, 150000);
}
END_TEST

/* A renewal answered late but within its deadline, then silence: the
 * deadline counts from when that renewal was sent, not answered. */
START_TEST(test_pg_slow_renewal)
{
	struct world *w = calloc(1, sizeof(*w));
	int who, next;
	uint64_t sent;

	world_init(w, 3, ELECTION_BACKEND_POSTGRES, seed_of("pg_slow_renewal"));
	for (size_t i = 0; i < w->n; i++)
		w->nd[i].drift = 0;
	w->timeout_ms = 10000;
	world_start(w);
	who = run_until_leader(w, 100);
	run_for(w, 1500);
	w->nd[who].hang_ms = 2500;       /* within the previous deadline */
	w->nd[who].hang_one = true;
	renew_phase(w, who);
	sent = w->t;
	w->nd[who].db_cut = true;          /* and nothing after it gets through */
	w->drop_cut = true;
	for (int k = 0; k < 10000 && election_is_leader(w->nd[who].e, nnow(&w->nd[who])); k++)
		step(w);
	ck_assert_int_eq(w->nd[who].last_why, ELECTION_WHY_DEADLINE);
	ck_assert_uint_le(w->nd[who].stepped_at, sent + w->cfg.lease_ms - w->cfg.guard_ms);
	ck_assert_uint_gt(w->nd[who].stepped_at, sent + 3000);   /* the slow answer counted */
	next = run_until_leader(w, 10000);
	ck_assert_int_ne(next, who);
	world_free(w);
	free(w);
}
END_TEST

/* A grant that comes back after its deadline, in a world: released at
 * once, and the lease goes to someone who can use it. */
START_TEST(test_pg_late_grant_world)
{
	struct world *w = calloc(1, sizeof(*w));
	int who;

	world_init(w, 2, ELECTION_BACKEND_POSTGRES, seed_of("pg_late_grant_world"));
	w->timeout_ms = 60000;
	w->nd[0].hang_ms = 4500;
	w->nd[0].hang_one = true;
	w->nd[1].eligible = false;
	world_start(w);
	run_for(w, 4600);
	struct election_stats st;
	election_stats_get(w->nd[0].e, &st);
	ck_assert_uint_eq(st.late_grants_released, 1);
	ck_assert_int_eq(w->nd[0].wins, 0);
	ck_assert_uint_eq(w->nd[0].requests[ELECTION_LEASE_RELEASE], 1);
	run_for(w, 100);
	/* the RELEASE has run: the next ACQUIRE need not wait for expiry */
	ck_assert(w->row_expires <= server_now(w));
	who = run_until_leader(w, 1500);
	ck_assert_int_eq(who, 0);
	ck_assert_uint_eq(election_term(w->nd[0].e), 2);
	world_free(w);
	free(w);
}
END_TEST

/* ==================================================================== */
/* Worlds: gossip                                                        */
/* ==================================================================== */

START_TEST(test_gossip_single_leader)
{
	struct world *w = calloc(1, sizeof(*w));
	int who;

	world_init(w, 5, ELECTION_BACKEND_GOSSIP, seed_of("gossip_single_leader"));
	w->nd[0].eligible = false;
	w->nd[0].priority = 0;
	w->nd[1].priority = 5;
	w->nd[2].priority = 3;
	w->nd[3].priority = 3;
	w->nd[4].priority = 4;
	world_start(w);
	run_for(w, 500);
	ck_assert_int_eq(leader_count(w, &who), 1);
	ck_assert_int_eq(who, 2);   /* lowest (priority, name) among the eligible */
	ck_assert_uint_eq(election_term(w->nd[2].e), 1);
	check_agree(w, who);
	ck_assert_uint_eq(w->max_leaders, 1);
	run_for(w, 10000);
	ck_assert_int_eq(w->nd[2].wins, 1);
	for (size_t i = 0; i < w->n; i++)
		ck_assert_int_eq(w->nd[i].wins, i == 2);

	/* the leader leaves: the next best leads within a gossip delay */
	node_leave(w, 2);
	ck_assert(election_leave_done(w->nd[2].e));
	uint64_t left_at = w->t;
	who = run_until_leader(w, 1000);
	ck_assert_int_eq(who, 3);
	ck_assert_uint_le(w->t - left_at, w->gos_max + 2);
	ck_assert_uint_eq(election_term(w->nd[3].e), 2);
	run_for(w, 1000);
	check_agree(w, 3);
	world_free(w);
	free(w);
}
END_TEST

/* Both sides of a partition elect; at the heal the higher term wins and the
 * best node ends up leading under a term above both. */
START_TEST(test_gossip_partition_heal)
{
	struct world *w = calloc(1, sizeof(*w));
	int who;

	world_init(w, 5, ELECTION_BACKEND_GOSSIP, seed_of("gossip_partition_heal"));
	w->gos_min = w->gos_max = 20;   /* n0 hears n2 lead before n2's release */
	world_start(w);
	run_for(w, 500);
	ck_assert_int_eq(leader_count(w, &who), 1);
	ck_assert_int_eq(who, 0);
	w->partitioned = true;
	w->side[2] = w->side[3] = w->side[4] = 1;
	for (size_t i = 0; i < w->n; i++)
		w->dirty[i] = true;
	run_for(w, 500);
	ck_assert_int_eq(leader_count(w, NULL), 2);
	ck_assert(election_is_leader(w->nd[2].e, 0));
	ck_assert_uint_eq(election_term(w->nd[2].e), 2);
	ck_assert_uint_eq(election_term(w->nd[0].e), 1);
	w->partitioned = false;
	republish_all(w);
	for (size_t i = 0; i < w->n; i++)
		w->dirty[i] = true;
	run_for(w, 500 + w->cfg.settle_ms);
	ck_assert_int_eq(leader_count(w, &who), 1);
	ck_assert_int_eq(who, 0);
	ck_assert_int_eq(w->nd[0].downs, 1);
	ck_assert_int_eq(w->nd[2].downs, 1);
	ck_assert_int_eq(w->nd[2].last_why, ELECTION_WHY_PRECEDENCE);
	ck_assert_int_eq(w->nd[0].last_why, ELECTION_WHY_HIGHER_TERM);
	ck_assert_uint_eq(election_term(w->nd[0].e), 3);
	run_for(w, 200);
	check_agree(w, 0);
	world_free(w);
	free(w);
}
END_TEST

static void gossip_random_run(uint64_t seed, uint64_t ms)
{
	struct world *w = calloc(1, sizeof(*w));
	uint64_t heal_at = 0, back_at[MAXN] = { 0 };
	int who, best = -1;

	world_init(w, 5, ELECTION_BACKEND_GOSSIP, seed);
	w->nd[1].eligible = false;
	for (size_t i = 0; i < w->n; i++)
		w->nd[i].priority = (uint32_t)rnd(&w->rng, 0, 2);
	w->gos_max = rnd(&w->rng, 10, 300);
	world_start(w);
	while (w->t < ms) {
		uint64_t *r = &w->rng;

		if (!w->partitioned && one_in(r, 20000)) {
			w->partitioned = true;
			for (size_t i = 0; i < w->n; i++)
				w->side[i] = (int)rnd(r, 0, 1);
			heal_at = w->t + rnd(r, 100, 10000);
			for (size_t i = 0; i < w->n; i++)
				w->dirty[i] = true;
		} else if (w->partitioned && w->t >= heal_at) {
			w->partitioned = false;
			republish_all(w);
			for (size_t i = 0; i < w->n; i++)
				w->dirty[i] = true;
		}
		for (size_t i = 0; i < w->n; i++) {
			if (!w->nd[i].up) {
				if (w->t >= back_at[i]) {
					node_boot(w, (int)i);
					node_start(w, (int)i);
				}
			} else if (one_in(r, 30000)) {
				node_crash(w, (int)i);
				back_at[i] = w->t + rnd(r, 100, 5000);
			}
		}
		step(w);
	}
	if (w->partitioned) {
		w->partitioned = false;
		republish_all(w);
		for (size_t i = 0; i < w->n; i++)
			w->dirty[i] = true;
	}
	for (size_t i = 0; i < w->n; i++) {
		if (!w->nd[i].up) {
			node_boot(w, (int)i);
			node_start(w, (int)i);
		}
	}
	run_for(w, w->detect_ms + 2 * w->gos_max + w->cfg.settle_ms + 1000);
	ck_assert_int_eq(leader_count(w, &who), 1);
	for (size_t i = 0; i < w->n; i++) {
		const struct node *nd = &w->nd[i];

		if (!nd->eligible)
			continue;
		if (best < 0 || nd->priority < w->nd[best].priority)
			best = (int)i;
	}
	ck_assert_int_eq(who, best);
	run_for(w, 2 * w->gos_max + 10);
	check_agree(w, who);
	world_free(w);
	free(w);
}

START_TEST(test_gossip_random)
{
	uint64_t seed = seed_of("gossip_random");

	for (uint64_t k = 0; k < 4; k++)
		gossip_random_run(seed + k, 100000);
}
END_TEST

static Suite *election_suite(void)
{
	Suite *s = suite_create("election");
	TCase *tc = tcase_create("election");

	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_codec);
	tcase_add_test(tc, test_names);
	tcase_add_test(tc, test_config);
	tcase_add_test(tc, test_set_peers_input);
	tcase_add_test(tc, test_pg_deadline_before_tick);
	tcase_add_test(tc, test_pg_renew_backoff);
	tcase_add_test(tc, test_pg_lease_lost);
	tcase_add_test(tc, test_pg_late_acquire);
	tcase_add_test(tc, test_pg_stale_term_refused);
	tcase_add_test(tc, test_pg_lease_source);
	tcase_add_test(tc, test_pg_queued_intents);
	tcase_add_test(tc, test_pg_higher_term_step_down);
	tcase_add_test(tc, test_pg_ineligible_alone);
	tcase_add_test(tc, test_gossip_alone_and_start);
	tcase_add_test(tc, test_gossip_candidate);
	tcase_add_test(tc, test_gossip_higher_term_step_down);
	tcase_add_test(tc, test_leader_never_goes_back);
	tcase_add_test(tc, test_unheeded_announcements);
	tcase_add_test(tc, test_pg_ignores_other_backend);
	tcase_add_test(tc, test_observer_follows_any_backend);
	tcase_add_test(tc, test_gossip_ignores_other_backend);
	tcase_add_test(tc, test_gossip_term_top);
	tcase_add_test(tc, test_pg_released_after_release);
	tcase_add_test(tc, test_pg_follower_sees_released);
	tcase_add_test(tc, test_pg_single_leader);
	tcase_add_test(tc, test_pg_leave_handoff);
	tcase_add_test(tc, test_pg_partitioned_leader);
	tcase_add_test(tc, test_pg_db_down);
	tcase_add_test(tc, test_pg_dead_leader_takeover);
	tcase_add_test(tc, test_pg_random_safety);
	tcase_add_test(tc, test_pg_late_grant_world);
	tcase_add_test(tc, test_pg_slow_renewal);
	tcase_add_test(tc, test_gossip_single_leader);
	tcase_add_test(tc, test_gossip_partition_heal);
	tcase_add_test(tc, test_gossip_random);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(election_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
