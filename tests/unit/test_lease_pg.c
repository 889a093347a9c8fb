/*
 * tests/unit/test_lease_pg.c - election/lease_pg.c against a real
 * PostgreSQL (MERIDIAN_TEST_PG_URL, set by tests/integration/pg_unit.sh;
 * without it the binary fails at once).
 *
 * Covered: the first ACQUIRE creates the table and takes term 1; another
 * node then gets held=false with the holder's name and the time left; the
 * holder's own ACQUIRE (an answer it lost) takes the row back under the
 * next term; ACQUIRE's max term (the new term is above it and above the
 * row's; past bigint the request fails and the row is untouched); a
 * RENEW keeps the term; after a RELEASE the other node acquires at once
 * under term 2 and the old holder's RENEW fails, naming the new holder;
 * expiry (300 ms lease): another node acquires under term + 1 and the old
 * holder cannot renew; three adapters creating the table and acquiring
 * at the same moment all get answers and agree on one holder; a
 * restarted holder (same name, new node_id) can neither renew nor release
 * its previous life's lease; -EBUSY; unreachable and mute servers
 * (status < 0 with the error text, -ETIMEDOUT within timeout_ms); close
 * with a request in flight (no answer); bad configs.  Every ACQUIRE
 * answer is one row (the statement's UNION never reports two).
 *
 * Each test uses lease names of its own (pid and test name), so that they
 * never see each other's rows.  Loop bounded as in test_pgconn.c.
 */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "election/lease_pg.h"
#include "storage/pgconn.h"
#include "tests/unit/pg_testutil.h"

#define DEADLINE_MS 10000
#define LEASE_MS 5000

static uv_loop_t loop;
static uv_timer_t pulse;

static bool run_until(bool (*done)(void *ctx), void *ctx, uint64_t ms)
{
	return test_run_until(&loop, done, ctx, ms);
}

/* Runs the loop for @ms whatever happens. */
static void run_for(uint64_t ms)
{
	test_run_for(&loop, ms);
}

static void setup(void)
{
	test_loop_open(&loop, &pulse);
}

static void teardown(void)
{
	test_loop_close(&loop, &pulse, DEADLINE_MS);
}

/* ------------------------------------------------------------------ */
/* Adapters                                                            */
/* ------------------------------------------------------------------ */

struct node {
	struct lease_pg *l;
	int calls;
	uint64_t at;
	struct election_lease_result r;
};

static void on_done(void *ctx, const struct election_lease_result *r)
{
	struct node *n = ctx;

	n->calls++;
	n->at = uv_now(&loop);
	n->r = *r;
}

static bool node_done(void *ctx)
{
	return ((struct node *)ctx)->calls > 0;
}

/* A lease name of this test's own. */
static const char *lease_name(const char *test)
{
	static char buf[96];

	snprintf(buf, sizeof(buf), "%s-%d", test, (int)getpid());
	return buf;
}

static void node_open(struct node *n, const char *conninfo, const char *lease, const char *name,
		      uint64_t id, uint32_t lease_ms, uint32_t timeout_ms)
{
	struct lease_pg_config cfg = {
		.conninfo = conninfo,
		.lease_name = lease,
		.node = name,
		.node_id = id,
		.lease_ms = lease_ms,
		.timeout_ms = timeout_ms,
	};

	memset(n, 0, sizeof(*n));
	n->l = lease_pg_new(&loop, &cfg, on_done, n);
	ck_assert_ptr_nonnull(n->l);
}

/* Runs one request to its answer. */
static const struct election_lease_result *req(struct node *n, enum election_lease_op op,
					       uint64_t term)
{
	n->calls = 0;
	ck_assert_int_eq(lease_pg_request(n->l, op, term), 0);
	ck_assert_msg(run_until(node_done, n, DEADLINE_MS), "no answer");
	ck_assert_int_eq(n->calls, 1);
	ck_assert_int_eq(n->r.op, op);
	run_for(20);                  /* exactly once: no second answer */
	ck_assert_int_eq(n->calls, 1);
	if (n->r.status == 0)
		ck_assert_str_eq(n->r.error, "");
	return &n->r;
}

static const struct election_lease_result *req_ok(struct node *n, enum election_lease_op op,
						  uint64_t term)
{
	const struct election_lease_result *r = req(n, op, term);

	ck_assert_msg(r->status == 0, "%s: status %d: %s", election_lease_op_name(op),
		      r->status, r->error);
	return r;
}

/* Runs @sql on a plain connection. */
struct sqlres {
	bool done;
	int status;
	char val[64];
	char err[PGCONN_ERROR_MAX];
};

static void on_sql(void *arg, const struct pgconn_reply *r)
{
	struct sqlres *s = arg;

	s->done = true;
	s->status = r->status;
	snprintf(s->err, sizeof(s->err), "%s", r->error);
	if (r->status == 0 && PQntuples(r->res) > 0)
		snprintf(s->val, sizeof(s->val), "%s", PQgetvalue(r->res, 0, 0));
}

static bool sql_done(void *ctx)
{
	return ((struct sqlres *)ctx)->done;
}

static void sql(const char *text, const char *param, char *val, size_t vallen)
{
	struct pgconn_config cfg = { .conninfo = pg_test_url() };
	const char *params[1] = { param };
	struct pgconn *c = pgconn_new(&loop, &cfg, NULL, 0);
	struct sqlres s = { 0 };

	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(pgconn_query(c, text, param ? 1 : 0, param ? params : NULL, 0, on_sql,
				      &s), 0);
	ck_assert(run_until(sql_done, &s, DEADLINE_MS));
	ck_assert_msg(s.status == 0, "%s: %s", text, s.err);
	if (val)
		snprintf(val, vallen, "%s", s.val);
	pgconn_close(c);
}

/* ------------------------------------------------------------------ */
/* Tests                                                               */
/* ------------------------------------------------------------------ */

START_TEST(test_create_and_first_acquire)
{
	const char *lease = lease_name("first");
	const struct election_lease_result *r;
	struct lease_pg_stats st;
	struct node a, b;
	char val[64];

	sql("DROP TABLE IF EXISTS meridian_lease", NULL, NULL, 0);
	node_open(&a, pg_test_url(), lease, "a", 0xa1, LEASE_MS, 3000);
	node_open(&b, pg_test_url(), lease, "b", 0xb1, LEASE_MS, 3000);

	r = req_ok(&a, ELECTION_LEASE_ACQUIRE, 0);
	ck_assert(r->held);
	ck_assert_uint_eq(r->term, 1);
	ck_assert_str_eq(r->holder, "a");
	ck_assert(r->holder_valid);
	ck_assert_msg(r->remaining_ms > LEASE_MS - 1000 && r->remaining_ms <= LEASE_MS,
		      "remaining %u", r->remaining_ms);
	sql("SELECT holder_id || ':' || term FROM meridian_lease WHERE name = $1", lease, val,
	    sizeof(val));
	ck_assert_str_eq(val, "00000000000000a1:1");

	r = req_ok(&b, ELECTION_LEASE_ACQUIRE, 0);
	ck_assert(!r->held);
	ck_assert_str_eq(r->holder, "a");
	ck_assert_uint_eq(r->term, 1);
	ck_assert(r->holder_valid);
	ck_assert_msg(r->remaining_ms > LEASE_MS - 1000 && r->remaining_ms <= LEASE_MS,
		      "remaining %u", r->remaining_ms);

	/* The same process asking again (it lost the first answer) takes
	 * its own live lease back, under the next term. */
	r = req_ok(&a, ELECTION_LEASE_ACQUIRE, 0);
	ck_assert(r->held);
	ck_assert_uint_eq(r->term, 2);

	lease_pg_stats_get(a.l, &st);
	ck_assert_uint_eq(st.requests, 2);
	ck_assert_uint_eq(st.failures, 0);
	ck_assert_uint_eq(st.connects, 1);
	ck_assert_int_eq(st.connected, 1);
	lease_pg_close(a.l);
	lease_pg_close(b.l);
}
END_TEST

START_TEST(test_renew_release)
{
	const char *lease = lease_name("renew");
	const struct election_lease_result *r;
	struct node a, b;

	node_open(&a, pg_test_url(), lease, "a", 1, LEASE_MS, 3000);
	node_open(&b, pg_test_url(), lease, "b", 2, LEASE_MS, 3000);
	r = req_ok(&a, ELECTION_LEASE_ACQUIRE, 0);
	ck_assert(r->held);
	ck_assert_uint_eq(r->term, 1);

	run_for(200);
	r = req_ok(&a, ELECTION_LEASE_RENEW, 1);
	ck_assert(r->held);
	ck_assert_uint_eq(r->term, 1);
	ck_assert_str_eq(r->holder, "a");
	ck_assert_msg(r->remaining_ms > LEASE_MS - 150, "remaining %u", r->remaining_ms);

	/* A renewal under a wrong term is refused. */
	r = req_ok(&a, ELECTION_LEASE_RENEW, 7);
	ck_assert(!r->held);
	ck_assert_uint_eq(r->term, 1);

	r = req_ok(&b, ELECTION_LEASE_ACQUIRE, 0);
	ck_assert(!r->held);
	ck_assert_str_eq(r->holder, "a");

	r = req_ok(&a, ELECTION_LEASE_RELEASE, 1);
	ck_assert(!r->held);
	ck_assert_str_eq(r->holder, "a");
	ck_assert(!r->holder_valid);
	ck_assert_uint_eq(r->remaining_ms, 0);

	r = req_ok(&b, ELECTION_LEASE_ACQUIRE, 0);
	ck_assert(r->held);
	ck_assert_uint_eq(r->term, 2);
	ck_assert_str_eq(r->holder, "b");

	r = req_ok(&a, ELECTION_LEASE_RENEW, 1);
	ck_assert(!r->held);
	ck_assert_str_eq(r->holder, "b");
	ck_assert_uint_eq(r->term, 2);
	ck_assert(r->holder_valid);

	/* A stale RELEASE leaves b's lease alone. */
	r = req_ok(&a, ELECTION_LEASE_RELEASE, 1);
	ck_assert_str_eq(r->holder, "b");
	ck_assert(r->holder_valid);
	r = req_ok(&b, ELECTION_LEASE_RENEW, 2);
	ck_assert(r->held);
	lease_pg_close(a.l);
	lease_pg_close(b.l);
}
END_TEST

START_TEST(test_expiry)
{
	const char *lease = lease_name("expiry");
	const struct election_lease_result *r;
	struct node a, b;
	uint32_t left;

	node_open(&a, pg_test_url(), lease, "a", 1, 1000, 3000);
	node_open(&b, pg_test_url(), lease, "b", 2, 1000, 3000);
	/* b's connection made first (a RENEW of nothing, refused): its
	 * ACQUIRE below must come while a's lease runs, not after a
	 * connection set-up on a loaded machine. */
	r = req_ok(&b, ELECTION_LEASE_RENEW, 99);
	ck_assert(!r->held);
	r = req_ok(&a, ELECTION_LEASE_ACQUIRE, 0);
	ck_assert(r->held);
	ck_assert_uint_eq(r->term, 1);

	r = req_ok(&b, ELECTION_LEASE_ACQUIRE, 0);
	ck_assert(!r->held);
	ck_assert(r->holder_valid);
	ck_assert_msg(r->remaining_ms > 0 && r->remaining_ms <= 1000, "remaining %u",
		      r->remaining_ms);
	left = r->remaining_ms;

	run_for(left + 50);
	r = req_ok(&b, ELECTION_LEASE_ACQUIRE, 0);
	ck_assert(r->held);
	ck_assert_uint_eq(r->term, 2);
	ck_assert_str_eq(r->holder, "b");

	r = req_ok(&a, ELECTION_LEASE_RENEW, 1);
	ck_assert(!r->held);
	ck_assert_str_eq(r->holder, "b");
	ck_assert_uint_eq(r->term, 2);

	/* b lets it expire too: a takes it back under term 3. */
	run_for(1050);
	r = req_ok(&b, ELECTION_LEASE_RENEW, 2);
	ck_assert(!r->held);
	ck_assert(!r->holder_valid);
	r = req_ok(&a, ELECTION_LEASE_ACQUIRE, 0);
	ck_assert(r->held);
	ck_assert_uint_eq(r->term, 3);
	lease_pg_close(a.l);
	lease_pg_close(b.l);
}
END_TEST

/* An ACQUIRE whose answer we lost (timed out, connection dropped) left
 * the row ours: the next ACQUIRE takes it back at once under a new term,
 * which fences the old one; nobody else can. */
START_TEST(test_acquire_own_lease)
{
	const char *lease = lease_name("own");
	const struct election_lease_result *r;
	struct node a, b, again;
	char val[64];

	node_open(&a, pg_test_url(), lease, "a", 0xa, LEASE_MS, 3000);
	node_open(&b, pg_test_url(), lease, "b", 0xb, LEASE_MS, 3000);
	r = req_ok(&a, ELECTION_LEASE_ACQUIRE, 0);
	ck_assert(r->held);
	ck_assert_uint_eq(r->term, 1);
	run_for(300);
	/* the answer "held, term 1" never reached the machine */
	r = req_ok(&a, ELECTION_LEASE_ACQUIRE, 1);
	ck_assert(r->held);
	ck_assert_uint_eq(r->term, 2);
	ck_assert_str_eq(r->holder, "a");
	ck_assert(r->holder_valid);
	ck_assert_msg(r->remaining_ms > LEASE_MS - 150, "remaining %u", r->remaining_ms);
	sql("SELECT holder_id || ':' || term FROM meridian_lease WHERE name = $1", lease, val,
	    sizeof(val));
	ck_assert_str_eq(val, "000000000000000a:2");
	/* the old term is fenced off */
	r = req_ok(&a, ELECTION_LEASE_RENEW, 1);
	ck_assert(!r->held);
	ck_assert_uint_eq(r->term, 2);
	r = req_ok(&a, ELECTION_LEASE_RENEW, 2);
	ck_assert(r->held);
	/* another holder id, the same name or not, still waits */
	r = req_ok(&b, ELECTION_LEASE_ACQUIRE, 2);
	ck_assert(!r->held);
	ck_assert_str_eq(r->holder, "a");
	ck_assert_uint_eq(r->term, 2);
	node_open(&again, pg_test_url(), lease, "a", 0xaa, LEASE_MS, 3000);
	r = req_ok(&again, ELECTION_LEASE_ACQUIRE, 2);
	ck_assert(!r->held);
	ck_assert_uint_eq(r->term, 2);
	lease_pg_close(a.l);
	lease_pg_close(b.l);
	lease_pg_close(again.l);
}
END_TEST

/* ACQUIRE carries the caller's max term: a grant is above it and above the
 * row's term; a max past bigint fails and leaves the row alone. */
START_TEST(test_acquire_max_term)
{
	const char *lease = lease_name("maxterm");
	const struct election_lease_result *r;
	struct node a, b;

	node_open(&a, pg_test_url(), lease, "a", 1, LEASE_MS, 3000);
	node_open(&b, pg_test_url(), lease, "b", 2, LEASE_MS, 3000);
	r = req_ok(&a, ELECTION_LEASE_ACQUIRE, 41);          /* inserts the row */
	ck_assert(r->held);
	ck_assert_uint_eq(r->term, 42);
	r = req_ok(&b, ELECTION_LEASE_ACQUIRE, 1000);        /* live: nothing moves */
	ck_assert(!r->held);
	ck_assert_uint_eq(r->term, 42);
	r = req_ok(&a, ELECTION_LEASE_RELEASE, 42);
	ck_assert(!r->holder_valid);
	r = req_ok(&b, ELECTION_LEASE_ACQUIRE, 10);          /* the row's term wins */
	ck_assert(r->held);
	ck_assert_uint_eq(r->term, 43);
	r = req_ok(&b, ELECTION_LEASE_RELEASE, 43);
	r = req_ok(&a, ELECTION_LEASE_ACQUIRE, 100);         /* the caller's wins */
	ck_assert(r->held);
	ck_assert_uint_eq(r->term, 101);
	ck_assert_str_eq(r->holder, "a");

	/* beyond bigint: a clear failure, the row untouched */
	r = req(&b, ELECTION_LEASE_ACQUIRE, UINT64_MAX);
	ck_assert_int_lt(r->status, 0);
	ck_assert_msg(strstr(r->error, "range"), "error: %s", r->error);
	ck_assert(!r->held);
	r = req(&a, ELECTION_LEASE_ACQUIRE, (uint64_t)INT64_MAX);
	ck_assert_int_lt(r->status, 0);
	r = req_ok(&a, ELECTION_LEASE_RENEW, 101);
	ck_assert(r->held);
	ck_assert_uint_eq(r->term, 101);
	lease_pg_close(a.l);
	lease_pg_close(b.l);
}
END_TEST

static bool three_done(void *ctx)
{
	struct node *n = ctx;

	return n[0].calls && n[1].calls && n[2].calls;
}

/* Runs @sql on @c (a session kept across calls) and waits. */
static void sql_on(struct pgconn *c, const char *text)
{
	struct sqlres s = { 0 };

	ck_assert_int_eq(pgconn_query(c, text, 0, NULL, 0, on_sql, &s), 0);
	ck_assert(run_until(sql_done, &s, DEADLINE_MS));
	ck_assert_msg(s.status == 0, "%s: %s", text, s.err);
}

START_TEST(test_concurrent_create)
{
	const char *lease = lease_name("concurrent");
	static const char *const names[3] = { "n0", "n1", "n2" };
	struct pgconn_config cfg = { .conninfo = pg_test_url() };
	struct pgconn *blocker;
	struct node n[3];
	int held = 0;
	const char *winner = NULL;

	/* Another agent is creating the table right now (uncommitted): the
	 * three CREATE TABLE IF NOT EXISTS wait on it, then fail with 23505
	 * when it commits, which the adapters must take as "it exists". */
	sql("DROP TABLE IF EXISTS meridian_lease", NULL, NULL, 0);
	blocker = pgconn_new(&loop, &cfg, NULL, 0);
	ck_assert_ptr_nonnull(blocker);
	sql_on(blocker, "BEGIN");
	sql_on(blocker, "CREATE TABLE meridian_lease (name text PRIMARY KEY, holder text NOT NULL,"
		" holder_id text NOT NULL, term bigint NOT NULL, expires_at timestamptz NOT NULL,"
		" acquired_at timestamptz NOT NULL)");
	for (int i = 0; i < 3; i++)
		node_open(&n[i], pg_test_url(), lease, names[i], 100 + i, LEASE_MS, 5000);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(lease_pg_request(n[i].l, ELECTION_LEASE_ACQUIRE, 0), 0);
	run_for(300);
	for (int i = 0; i < 3; i++)
		ck_assert_msg(n[i].calls == 0, "%s answered while the table was being created: %s",
			      names[i], n[i].r.error);
	sql_on(blocker, "COMMIT");
	ck_assert(run_until(three_done, n, DEADLINE_MS));
	for (int i = 0; i < 3; i++) {
		printf("%s: status %d held %d holder '%s' term %" PRIu64 " %s\n", names[i],
		       n[i].r.status, n[i].r.held, n[i].r.holder, n[i].r.term, n[i].r.error);
		ck_assert_int_eq(n[i].r.status, 0);
		if (n[i].r.held) {
			held++;
			winner = names[i];
		}
	}
	ck_assert_int_eq(held, 1);
	for (int i = 0; i < 3; i++) {
		ck_assert_str_eq(n[i].r.holder, winner);
		ck_assert_uint_eq(n[i].r.term, 1);
		ck_assert(n[i].r.holder_valid);
		lease_pg_close(n[i].l);
	}
	pgconn_close(blocker);

	/* And with no blocker: three at once on a fresh table, retried
	 * (5 rounds at most) until every one has an answer naming a holder. */
	sql("DROP TABLE IF EXISTS meridian_lease", NULL, NULL, 0);
	for (int i = 0; i < 3; i++)
		node_open(&n[i], pg_test_url(), lease, names[i], 200 + i, LEASE_MS, 5000);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(lease_pg_request(n[i].l, ELECTION_LEASE_ACQUIRE, 0), 0);
	ck_assert(run_until(three_done, n, DEADLINE_MS));
	held = 0;
	for (int round = 0; round < 5; round++) {
		bool again = false;

		for (int i = 0; i < 3; i++) {
			if (n[i].r.status == 0 && *n[i].r.holder)
				continue;
			printf("round %d: %s status %d: %s\n", round, names[i], n[i].r.status,
			       n[i].r.error);
			again = true;
			n[i].calls = 0;
			ck_assert_int_eq(lease_pg_request(n[i].l, ELECTION_LEASE_ACQUIRE, 0), 0);
			ck_assert(run_until(node_done, &n[i], DEADLINE_MS));
		}
		if (!again)
			break;
	}
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(n[i].r.status, 0);
		held += n[i].r.held;
		ck_assert_str_eq(n[i].r.holder, n[0].r.holder);
		ck_assert_uint_eq(n[i].r.term, 1);
		lease_pg_close(n[i].l);
	}
	ck_assert_int_eq(held, 1);
}
END_TEST

START_TEST(test_restarted_holder)
{
	const char *lease = lease_name("restart");
	const struct election_lease_result *r;
	struct node old, again;

	node_open(&old, pg_test_url(), lease, "n1", 1111, LEASE_MS, 3000);
	r = req_ok(&old, ELECTION_LEASE_ACQUIRE, 0);
	ck_assert(r->held);
	ck_assert_uint_eq(r->term, 1);
	lease_pg_close(old.l);

	/* Same name, new process identity. */
	node_open(&again, pg_test_url(), lease, "n1", 2222, LEASE_MS, 3000);
	r = req_ok(&again, ELECTION_LEASE_RENEW, 1);
	ck_assert(!r->held);
	ck_assert_str_eq(r->holder, "n1");
	ck_assert_uint_eq(r->term, 1);
	ck_assert(r->holder_valid);
	r = req_ok(&again, ELECTION_LEASE_RELEASE, 1);
	ck_assert(r->holder_valid);   /* not released */
	r = req_ok(&again, ELECTION_LEASE_ACQUIRE, 0);
	ck_assert(!r->held);
	ck_assert(r->holder_valid);
	lease_pg_close(again.l);
}
END_TEST

START_TEST(test_busy_and_close)
{
	const char *lease = lease_name("busy");
	struct node a;

	node_open(&a, pg_test_url(), lease, "a", 1, LEASE_MS, 3000);
	ck_assert_int_eq(lease_pg_request(a.l, ELECTION_LEASE_ACQUIRE, 0), 0);
	ck_assert_int_eq(a.calls, 0);   /* never from inside the call */
	ck_assert_int_eq(lease_pg_request(a.l, ELECTION_LEASE_RENEW, 1), -EBUSY);
	ck_assert_int_eq(lease_pg_request(a.l, (enum election_lease_op)9, 1), -EINVAL);
	ck_assert(run_until(node_done, &a, DEADLINE_MS));
	run_for(50);
	ck_assert_int_eq(a.calls, 1);
	ck_assert_int_eq(a.r.status, 0);

	/* Close with a request in flight: no answer, nothing leaks. */
	a.calls = 0;
	ck_assert_int_eq(lease_pg_request(a.l, ELECTION_LEASE_RENEW, 1), 0);
	lease_pg_close(a.l);
	lease_pg_close(NULL);
	run_for(200);
	ck_assert_int_eq(a.calls, 0);
}
END_TEST

START_TEST(test_unreachable_and_mute)
{
	const struct election_lease_result *r;
	struct lease_pg_stats st;
	char conninfo[128];
	struct node a;
	uint64_t t0;
	int fd, port;

	/* Refused: a port bound then closed. */
	snprintf(conninfo, sizeof(conninfo), "host=127.0.0.1 port=%d user=postgres",
		 test_closed_port());
	node_open(&a, conninfo, "x", "a", 1, LEASE_MS, 1000);
	r = req(&a, ELECTION_LEASE_ACQUIRE, 0);
	ck_assert_int_lt(r->status, 0);
	ck_assert_msg(strstr(r->error, "refused"), "error: %s", r->error);
	ck_assert(!r->held);
	lease_pg_stats_get(a.l, &st);
	ck_assert_uint_eq(st.failures, 1);
	ck_assert_uint_eq(st.connect_failures, 1);
	ck_assert_int_eq(st.connected, 0);
	ck_assert_str_eq(st.last_error, r->error);
	lease_pg_close(a.l);

	/* Mute: listens, never answers.  The request fails at timeout_ms. */
	fd = pg_mute_listener(&port);
	snprintf(conninfo, sizeof(conninfo), "host=127.0.0.1 port=%d user=postgres sslmode=disable",
		 port);
	node_open(&a, conninfo, "x", "a", 1, LEASE_MS, 300);
	t0 = uv_now(&loop);
	r = req(&a, ELECTION_LEASE_ACQUIRE, 0);
	ck_assert_int_eq(r->status, -ETIMEDOUT);
	ck_assert_msg(a.at - t0 >= 290 && a.at - t0 < 1000, "after %" PRIu64 " ms", a.at - t0);
	lease_pg_stats_get(a.l, &st);
	ck_assert_uint_eq(st.timeouts, 1);
	lease_pg_close(a.l);
	close(fd);
}
END_TEST

START_TEST(test_bad_config)
{
	char longname[ELECTION_NAME_MAX + 2];
	struct lease_pg_config cfg = {
		.conninfo = pg_test_url(), .lease_name = "x", .node = "a", .node_id = 1,
		.lease_ms = 1000, .timeout_ms = 500,
	};
	struct lease_pg *l;

	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	l = lease_pg_new(&loop, &cfg, on_done, NULL);
	ck_assert_ptr_nonnull(l);
	lease_pg_close(l);
	cfg.node = "";
	ck_assert_ptr_null(lease_pg_new(&loop, &cfg, on_done, NULL));
	cfg.node = longname;
	ck_assert_ptr_null(lease_pg_new(&loop, &cfg, on_done, NULL));
	cfg.node = "a";
	cfg.lease_ms = 0;
	ck_assert_ptr_null(lease_pg_new(&loop, &cfg, on_done, NULL));
	cfg.lease_ms = 1000;
	cfg.timeout_ms = 0;
	ck_assert_ptr_null(lease_pg_new(&loop, &cfg, on_done, NULL));
	cfg.timeout_ms = 500;
	cfg.conninfo = "host=127.0.0.1 nonsense=1";
	ck_assert_ptr_null(lease_pg_new(&loop, &cfg, on_done, NULL));
	cfg.conninfo = pg_test_url();
	cfg.lease_name = "";
	ck_assert_ptr_null(lease_pg_new(&loop, &cfg, on_done, NULL));
	ck_assert_ptr_null(lease_pg_new(&loop, &cfg, NULL, NULL));
}
END_TEST

static Suite *lease_suite(void)
{
	Suite *s = suite_create("lease_pg");
	TCase *tc = tcase_create("lease_pg");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_create_and_first_acquire);
	tcase_add_test(tc, test_renew_release);
	tcase_add_test(tc, test_acquire_own_lease);
	tcase_add_test(tc, test_acquire_max_term);
	tcase_add_test(tc, test_expiry);
	tcase_add_test(tc, test_concurrent_create);
	tcase_add_test(tc, test_restarted_holder);
	tcase_add_test(tc, test_busy_and_close);
	tcase_add_test(tc, test_unreachable_and_mute);
	tcase_add_test(tc, test_bad_config);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return pg_test_main("test_lease_pg", lease_suite);
}
