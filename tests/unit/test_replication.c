/*
 * tests/unit/test_replication.c - storage/replication.c against a real
 * PostgreSQL (wal_level=logical), plus its pure wire functions.
 *
 * Needs MERIDIAN_TEST_PG_URL: tests/integration/pg_unit.sh starts a
 * throwaway server and sets it.  Without it the binary fails at once.
 *
 * Covered: the CopyData parser (every length of every kind, oversize,
 * unknown kinds) and the status update bytes; publication and slot
 * created when missing; inserts delivered as pgoutput messages in order
 * (B R I C ...), LSNs non-decreasing within a transaction and Commit LSNs
 * increasing; confirm, stop, start again: the slot's confirmed position is
 * the confirmed LSN, the next session resumes right after it (nothing
 * confirmed again, nothing unconfirmed lost); a second consumer on a busy
 * slot (55006) reports slot_busy once, retries, and takes over within
 * ~1 s of the first one stopping, of it being killed with SIGKILL (a
 * forked process), and within wal_sender_timeout of it hanging
 * (SIGSTOP); keepalives answered (wal_sender_timeout 2 s, 5 s without
 * traffic, no reconnection); the slot advancing through unpublished WAL
 * only when everything delivered is confirmed; poll mode: the same
 * deliveries, no redelivery within a session, confirm/advance and resume,
 * slot_busy and takeover; bad configs.
 *
 * Every slot and publication has a name of its own test; each test drops
 * its slot at the end (10 slots at most on the server).  No uv_run() can
 * block: the loop runs one iteration at a time (a 10 ms pulse) until a
 * condition holds or a deadline passes.  Forked consumers are stopped by
 * PID and reaped.  Backoff jitter is seeded (MERIDIAN_SEED, printed).
 */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/clock.h"
#include "storage/lsn.h"
#include "storage/pgconn.h"
#include "storage/replication.h"
#include "tests/unit/pg_testutil.h"

#define DEFAULT_SEED 0x5245504c31ULL  /* "REPL1" */
#define MAX_MSGS 256
#define KEEP_BYTES 256

static uv_loop_t loop;
static uv_timer_t pulse;
static uint64_t seed;
static struct pgconn *admin;
static const char *url;

static bool run_until(bool (*done)(void *ctx), void *ctx, uint64_t ms)
{
	return test_run_until(&loop, done, ctx, ms);
}

/* Runs the loop for @ms whatever happens. */
static void run_for(uint64_t ms)
{
	test_run_for(&loop, ms);
}

/* ------------------------------------------------------------------ */
/* Admin SQL, synchronous for the test's sake                          */
/* ------------------------------------------------------------------ */

struct answer {
	bool done;
	int status;
	char sqlstate[6];
	char error[PGCONN_ERROR_MAX];
	int ntuples;
	char val[256];               /* row 0, column 0 */
};

static void on_admin(void *arg, const struct pgconn_reply *r)
{
	struct answer *a = arg;

	a->done = true;
	a->status = r->status;
	snprintf(a->sqlstate, sizeof(a->sqlstate), "%s", r->sqlstate);
	snprintf(a->error, sizeof(a->error), "%s", r->error);
	if (r->status == 0) {
		a->ntuples = PQntuples(r->res);
		if (a->ntuples > 0 && PQnfields(r->res) > 0)
			snprintf(a->val, sizeof(a->val), "%s", PQgetvalue(r->res, 0, 0));
	}
}

static bool answer_done(void *ctx)
{
	return ((struct answer *)ctx)->done;
}

static struct answer sql(const char *q, int n, const char *const *params)
{
	struct answer a;

	memset(&a, 0, sizeof(a));
	ck_assert_int_eq(pgconn_query(admin, q, n, params, 10000, on_admin, &a), 0);
	ck_assert_msg(run_until(answer_done, &a, 15000), "admin query hung: %s", q);
	return a;
}

static void sql_ok(const char *q)
{
	struct answer a = sql(q, 0, NULL);

	ck_assert_msg(a.status == 0, "%s: %s", q, a.error);
}

static void insert(const char *table, const char *v)
{
	char q[256];

	snprintf(q, sizeof(q), "INSERT INTO %s (v) VALUES ('%s')", table, v);
	sql_ok(q);
}

/* The slot's confirmed_flush_lsn (0 when none) and whether it is active. */
static uint64_t slot_confirmed(const char *slot, bool *active)
{
	const char *p[1] = { slot };
	struct answer a = sql("SELECT coalesce(confirmed_flush_lsn, '0/0')::text || ' ' || "
			      "active::text FROM pg_replication_slots WHERE slot_name = $1", 1, p);
	char *sp;
	uint64_t lsn = 0;

	ck_assert_msg(a.status == 0, "%s", a.error);
	if (a.ntuples == 0)
		return 0;
	sp = strchr(a.val, ' ');
	ck_assert_ptr_nonnull(sp);
	*sp = '\0';
	ck_assert_int_eq(lsn_parse(a.val, &lsn), 0);
	if (active)
		*active = !strcmp(sp + 1, "true");
	return lsn;
}

static bool slot_exists(const char *slot)
{
	const char *p[1] = { slot };
	struct answer a = sql("SELECT plugin FROM pg_replication_slots WHERE slot_name = $1",
			      1, p);

	ck_assert_msg(a.status == 0, "%s", a.error);
	if (a.ntuples)
		ck_assert_str_eq(a.val, "pgoutput");
	return a.ntuples == 1;
}

static bool pub_exists(const char *pub)
{
	const char *p[1] = { pub };
	struct answer a = sql("SELECT puballtables FROM pg_publication WHERE pubname = $1", 1,
			      p);

	ck_assert_msg(a.status == 0, "%s", a.error);
	if (a.ntuples)
		ck_assert_str_eq(a.val, "t");
	return a.ntuples == 1;
}

/* Drops the slot, waiting (bounded) for its last consumer to go. */
static void drop_slot(const char *slot)
{
	const char *p[1] = { slot };
	uint64_t deadline = clock_mono_ms() + 10000;

	for (;;) {
		struct answer a = sql("SELECT pg_drop_replication_slot(slot_name) FROM "
				      "pg_replication_slots WHERE slot_name = $1", 1, p);

		if (a.status == 0)
			return;
		ck_assert_msg(!strcmp(a.sqlstate, "55006") && clock_mono_ms() < deadline,
			      "drop slot %s: %s", slot, a.error);
		run_for(50);
	}
}

/* A fresh table and no slot nor publication of that name. */
static void fresh(const char *name)
{
	char q[256];

	drop_slot(name);
	snprintf(q, sizeof(q), "DROP PUBLICATION IF EXISTS %s", name);
	sql_ok(q);
	snprintf(q, sizeof(q), "DROP TABLE IF EXISTS %s", name);
	sql_ok(q);
	snprintf(q, sizeof(q), "CREATE TABLE %s (id serial PRIMARY KEY, v text)", name);
	sql_ok(q);
}

/* ------------------------------------------------------------------ */
/* A consumer and what it got                                          */
/* ------------------------------------------------------------------ */

struct msg {
	uint64_t lsn;
	char kind;
	size_t len;
	uint8_t data[KEEP_BYTES];
};

struct consumer {
	struct repl *r;
	struct msg msgs[MAX_MSGS];
	int n;
	int overflow;
	int states[8];               /* reports per state */
	enum repl_state state;
	uint64_t state_at;           /* clock_mono_ms() of the last report */
	char detail[REPL_ERROR_MAX];
};

static void on_message(void *ctx, uint64_t lsn, const uint8_t *data, size_t len)
{
	struct consumer *c = ctx;
	struct msg *m;

	ck_assert_uint_gt(len, 0);
	if (c->n >= MAX_MSGS) {
		c->overflow++;
		return;
	}
	m = &c->msgs[c->n++];
	m->lsn = lsn;
	m->kind = (char)data[0];
	m->len = len;
	memcpy(m->data, data, len < KEEP_BYTES ? len : KEEP_BYTES);
}

static void on_state(void *ctx, enum repl_state st, const char *detail)
{
	struct consumer *c = ctx;

	ck_assert_int_ge(st, REPL_CONNECTING);
	ck_assert_int_le(st, REPL_ERROR);
	ck_assert_ptr_nonnull(detail);
	c->states[st]++;
	c->state = st;
	c->state_at = clock_mono_ms();
	snprintf(c->detail, sizeof(c->detail), "%s", detail);
}

static void consumer_start(struct consumer *c, struct repl_config *cfg)
{
	struct repl_callbacks cb = { .on_message = on_message, .on_state = on_state, .ctx = c };
	char err[REPL_ERROR_MAX];

	memset(c, 0, sizeof(*c));
	cfg->conninfo = url;
	cfg->seed = seed;
	c->r = repl_start(&loop, cfg, &cb, err, sizeof(err));
	ck_assert_msg(c->r != NULL, "repl_start: %s", err);
}

static void consumer_stop(struct consumer *c)
{
	repl_stop(c->r);
	c->r = NULL;
}

static bool is_streaming(void *ctx)
{
	return ((struct consumer *)ctx)->state == REPL_STREAMING;
}

static void wait_streaming(struct consumer *c, uint64_t ms)
{
	ck_assert_msg(run_until(is_streaming, c, ms), "not streaming after %" PRIu64
		      " ms (state %s: %s)", ms, repl_state_name(c->state), c->detail);
}

struct count_wait {
	struct consumer *c;
	int n;
};

static bool has_n(void *ctx)
{
	struct count_wait *w = ctx;

	return w->c->n >= w->n;
}

static void wait_msgs(struct consumer *c, int n)
{
	struct count_wait w = { c, n };

	ck_assert_msg(run_until(has_n, &w, 15000), "%d messages, expected %d (state %s: %s)",
		      c->n, n, repl_state_name(c->state), c->detail);
}

static void kinds(const struct consumer *c, char *out, size_t size)
{
	int i;

	for (i = 0; i < c->n && (size_t)i + 1 < size; i++)
		out[i] = c->msgs[i].kind;
	out[i] = '\0';
}

static bool msg_has(const struct msg *m, const char *needle)
{
	size_t nl = strlen(needle), n = m->len < KEEP_BYTES ? m->len : KEEP_BYTES;

	return memmem(m->data, n, needle, nl) != NULL;
}

/* The values of the inserts delivered, in order, space separated. */
static void inserted(const struct consumer *c, char *out, size_t size)
{
	out[0] = '\0';
	for (int i = 0; i < c->n; i++) {
		const struct msg *m = &c->msgs[i];

		if (m->kind != 'I')
			continue;
		for (int k = 1; k <= 9; k++) {
			char v[8];

			snprintf(v, sizeof(v), "r%d", k);
			if (msg_has(m, v))
				snprintf(out + strlen(out), size - strlen(out), "%s%s",
					 *out ? " " : "", v);
		}
	}
}

/* The LSN of the @k-th Commit (from 1). */
static uint64_t commit_lsn(const struct consumer *c, int k)
{
	for (int i = 0; i < c->n; i++)
		if (c->msgs[i].kind == 'C' && --k == 0)
			return c->msgs[i].lsn;
	ck_abort_msg("no such commit");
	return 0;
}

/* LSNs non-decreasing within each transaction, Commits increasing. */
static void check_lsns(const struct consumer *c)
{
	uint64_t last_commit = 0, prev = 0;

	for (int i = 0; i < c->n; i++) {
		const struct msg *m = &c->msgs[i];

		ck_assert_msg(m->lsn > 0, "message %d (%c) has LSN 0", i, m->kind);
		if (m->kind != 'B')
			ck_assert_msg(m->lsn >= prev, "message %d (%c) goes back", i, m->kind);
		if (m->kind == 'C') {
			ck_assert_uint_gt(m->lsn, last_commit);
			last_commit = m->lsn;
		}
		prev = m->lsn;
	}
}

static void setup(void)
{
	struct pgconn_config cfg = { 0 };
	char err[PGCONN_ERROR_MAX];

	seed = pg_test_seed(DEFAULT_SEED);
	url = pg_test_url();
	test_loop_open(&loop, &pulse);
	cfg.conninfo = url;
	cfg.application_name = "meridian-test-admin";
	cfg.seed = seed;
	admin = pgconn_new(&loop, &cfg, err, sizeof(err));
	ck_assert_msg(admin != NULL, "%s", err);
}

static void teardown(void)
{
	pgconn_close(admin);
	test_loop_close(&loop, &pulse, 10000);
}

/* ------------------------------------------------------------------ */
/* Wire format                                                         */
/* ------------------------------------------------------------------ */

START_TEST(test_wire)
{
	uint8_t w[REPL_XLOGDATA_HDR + 3] = { 'w', 0, 0, 0, 1, 0, 0, 0, 2,  0, 0, 0, 1, 0, 0, 0, 9,
					     0, 0, 0, 0, 0, 0, 0, 7,  'B', 'x', 'y' };
	uint8_t k[REPL_KEEPALIVE_LEN] = { 'k', 0, 0, 0, 0, 0, 0, 1, 0,
					  0, 0, 0, 0, 0, 0, 0, 5,  1 };
	uint8_t st[REPL_STATUS_LEN], big[64];
	struct repl_copy m;

	ck_assert_int_eq(repl_copy_parse(w, sizeof(w), 100, &m), 0);
	ck_assert_int_eq(m.kind, 'w');
	ck_assert_uint_eq(m.start, 0x100000002ULL);
	ck_assert_uint_eq(m.end, 0x100000009ULL);
	ck_assert_int_eq(m.send_time, 7);
	ck_assert_uint_eq(m.len, 3);
	ck_assert_ptr_eq(m.payload, w + REPL_XLOGDATA_HDR);
	/* Every truncation is refused, and the empty payload. */
	for (size_t n = 0; n < sizeof(w) - 2; n++)
		ck_assert_int_eq(repl_copy_parse(w, n, 100, &m), n <= REPL_XLOGDATA_HDR ?
				 -EBADMSG : 0);
	ck_assert_int_eq(repl_copy_parse(w, sizeof(w), 2, &m), -EMSGSIZE);
	ck_assert_int_eq(repl_copy_parse(w, sizeof(w), 3, &m), 0);

	ck_assert_int_eq(repl_copy_parse(k, sizeof(k), 100, &m), 0);
	ck_assert_int_eq(m.kind, 'k');
	ck_assert_uint_eq(m.end, 0x100ULL);
	ck_assert_int_eq(m.send_time, 5);
	ck_assert(m.reply_requested);
	k[17] = 0;
	ck_assert_int_eq(repl_copy_parse(k, sizeof(k), 100, &m), 0);
	ck_assert(!m.reply_requested);
	for (size_t n = 0; n < sizeof(k); n++)
		ck_assert_int_eq(repl_copy_parse(k, n, 100, &m), -EBADMSG);
	memset(big, 0, sizeof(big));
	big[0] = 'k';
	ck_assert_int_eq(repl_copy_parse(big, sizeof(big), 100, &m), -EBADMSG);
	for (int kind = 0; kind < 256; kind++) {
		big[0] = (uint8_t)kind;
		if (kind != 'w' && kind != 'k')
			ck_assert_int_eq(repl_copy_parse(big, sizeof(big), 100, &m), -EBADMSG);
	}
	ck_assert_int_eq(repl_copy_parse(NULL, 0, 100, &m), -EBADMSG);

	repl_status_encode(st, 0x0102030405060708ULL, -2);
	ck_assert_int_eq(st[0], 'r');
	for (int f = 0; f < 3; f++)
		for (int i = 0; i < 8; i++)
			ck_assert_int_eq(st[1 + 8 * f + i], i + 1);
	for (int i = 25; i < 33; i++)
		ck_assert_int_eq(st[i], i == 32 ? 0xfe : 0xff);
	ck_assert_int_eq(st[33], 0);
	ck_assert_int_eq(repl_pg_time_us(946684800000ULL), 0);
	ck_assert_int_eq(repl_pg_time_us(946684800001ULL), 1000);
	ck_assert_str_eq(repl_state_name(REPL_SLOT_BUSY), "slot_busy");
}
END_TEST

/* ------------------------------------------------------------------ */
/* Stream mode                                                         */
/* ------------------------------------------------------------------ */

START_TEST(test_stream_deliver)
{
	struct repl_config cfg = { .slot = "t_deliver", .publication = "t_deliver" };
	struct consumer *c = calloc(1, sizeof(*c));
	struct repl_stats s;
	char got[MAX_MSGS + 1], vals[128];

	fresh("t_deliver");
	ck_assert(!slot_exists("t_deliver"));
	ck_assert(!pub_exists("t_deliver"));
	consumer_start(c, &cfg);
	wait_streaming(c, 15000);
	ck_assert_int_eq(c->states[REPL_CONNECTING], 1);
	ck_assert(slot_exists("t_deliver"));
	ck_assert(pub_exists("t_deliver"));

	insert("t_deliver", "r1");
	insert("t_deliver", "r2");
	insert("t_deliver", "r3");
	sql_ok("INSERT INTO t_deliver (v) VALUES ('r4'), ('r5')");
	wait_msgs(c, 14);
	run_for(200);
	kinds(c, got, sizeof(got));
	ck_assert_str_eq(got, "BRICBICBICBIIC");
	inserted(c, vals, sizeof(vals));
	ck_assert_str_eq(vals, "r1 r2 r3 r4 r5");
	check_lsns(c);
	repl_stats_get(c->r, &s);
	ck_assert_uint_eq(s.messages, 14);
	ck_assert_uint_eq(s.received_lsn, commit_lsn(c, 4));
	ck_assert_uint_eq(s.malformed, 0);
	ck_assert_uint_eq(s.reconnects, 0);
	ck_assert_int_eq(s.state, REPL_STREAMING);
	/* Nothing confirmed: nothing above what was delivered accepted. */
	ck_assert_int_eq(repl_confirm(c->r, s.received_lsn + 1), -ERANGE);
	ck_assert_int_eq(repl_confirm(NULL, 1), -EINVAL);
	ck_assert_int_eq(c->states[REPL_ERROR], 0);
	consumer_stop(c);
	drop_slot("t_deliver");
	free(c);
}
END_TEST

START_TEST(test_stream_resume)
{
	struct repl_config cfg = { .slot = "t_resume", .publication = "t_resume" };
	struct consumer *c = calloc(1, sizeof(*c));
	char got[MAX_MSGS + 1], vals[128];
	uint64_t second;
	bool active = true;

	fresh("t_resume");
	consumer_start(c, &cfg);
	wait_streaming(c, 15000);
	insert("t_resume", "r1");
	insert("t_resume", "r2");
	insert("t_resume", "r3");
	wait_msgs(c, 10);
	second = commit_lsn(c, 2);
	ck_assert_int_eq(repl_confirm(c->r, second), 0);
	ck_assert_int_eq(repl_confirm(c->r, commit_lsn(c, 1)), 0);   /* lower: no-op */
	consumer_stop(c);
	/* The walsender records the last status update as it goes: give it
	 * up to 5 s on a loaded machine. */
	for (int i = 0; i < 50 && (slot_confirmed("t_resume", &active) != second || active); i++)
		run_for(100);
	ck_assert_uint_eq(slot_confirmed("t_resume", &active), second);

	/* The next session: r3 (delivered, not confirmed) again, then r4. */
	consumer_start(c, &cfg);
	wait_streaming(c, 15000);
	insert("t_resume", "r4");
	wait_msgs(c, 7);
	run_for(200);
	kinds(c, got, sizeof(got));
	ck_assert_str_eq(got, "BRICBIC");
	inserted(c, vals, sizeof(vals));
	ck_assert_str_eq(vals, "r3 r4");
	check_lsns(c);
	ck_assert_uint_gt(c->msgs[3].lsn, second);
	consumer_stop(c);
	drop_slot("t_resume");
	free(c);
}
END_TEST

/* a holds @slot and b keeps trying for it: a stops; b must stream within
 * 3 s (about 1 s, the busy backoff's cap, generously: never the 5 s
 * reconnect backoff) and get the next change.  Stops and frees both. */
static void takeover_after_stop(struct consumer *a, struct consumer *b, const char *slot)
{
	uint64_t t0 = clock_mono_ms();

	consumer_stop(a);
	wait_streaming(b, 6000);
	printf("%s: streaming %" PRIu64 " ms after the first stopped\n", slot,
	       b->state_at - t0);
	ck_assert_uint_le(b->state_at - t0, 3000);
	insert(slot, "r1");
	wait_msgs(b, 4);
	consumer_stop(b);
	drop_slot(slot);
	free(a);
	free(b);
}

START_TEST(test_busy_takeover)
{
	struct repl_config cfg = { .slot = "t_busy", .publication = "t_busy" };
	struct consumer *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	struct repl_stats s;

	fresh("t_busy");
	consumer_start(a, &cfg);
	wait_streaming(a, 15000);
	consumer_start(b, &cfg);
	run_for(2000);
	repl_stats_get(b->r, &s);
	ck_assert_int_eq(b->state, REPL_SLOT_BUSY);
	ck_assert_int_eq(b->states[REPL_SLOT_BUSY], 1);   /* once per episode */
	ck_assert_int_eq(b->states[REPL_ERROR], 0);
	ck_assert_msg(strstr(b->detail, "55006"), "detail: %s", b->detail);
	/* 50 ms doubling to 1 s: 4 to 7 tries in 2 s, not a storm. */
	ck_assert_uint_ge(s.slot_busy, 3);
	ck_assert_uint_le(s.slot_busy, 10);
	ck_assert_uint_eq(s.reconnects, 0);
	takeover_after_stop(a, b, "t_busy");
}
END_TEST

/* A consumer in a process of its own: writes 'S' on @wfd once streaming,
 * exits after 30 s at most. */
static void child_consumer(const char *slot, int wfd)
{
	struct repl_config cfg = { .conninfo = url, .slot = slot, .publication = slot,
				   .wal_sender_timeout_ms = 2000 };
	struct repl_callbacks cb = { .on_message = on_message, .on_state = on_state };
	static struct consumer c;
	uv_loop_t l;
	uv_timer_t t;
	uint64_t deadline = clock_mono_ms() + 30000;
	bool told = false;

	cb.ctx = &c;
	if (uv_loop_init(&l) != 0)
		_exit(2);
	uv_timer_init(&l, &t);
	uv_timer_start(&t, test_pulse_fired, TEST_PULSE_MS, TEST_PULSE_MS);
	c.r = repl_start(&l, &cfg, &cb, NULL, 0);
	if (!c.r)
		_exit(3);
	while (clock_mono_ms() < deadline) {
		uv_run(&l, UV_RUN_ONCE);
		if (!told && c.state == REPL_STREAMING) {
			told = write(wfd, "S", 1) == 1;
		}
	}
	_exit(0);
}

static pid_t fork_consumer(const char *slot)
{
	int fds[2];
	pid_t pid;
	struct pollfd pfd;
	char ch = 0;

	ck_assert_int_eq(pipe(fds), 0);
	fflush(stdout);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(fds[0]);
		child_consumer(slot, fds[1]);
	}
	close(fds[1]);
	pfd.fd = fds[0];
	pfd.events = POLLIN;
	if (poll(&pfd, 1, 15000) != 1 || read(fds[0], &ch, 1) != 1 || ch != 'S') {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		close(fds[0]);
		ck_abort_msg("the forked consumer did not start streaming");
	}
	close(fds[0]);
	return pid;
}

static bool has_busy(void *ctx)
{
	return ((struct consumer *)ctx)->state == REPL_SLOT_BUSY;
}

START_TEST(test_hard_kill)
{
	struct repl_config cfg = { .slot = "t_kill", .publication = "t_kill" };
	struct consumer *b = calloc(1, sizeof(*b));
	uint64_t t0, took;
	pid_t pid;
	int wst;

	fresh("t_kill");
	/* Hung (SIGSTOP): the slot is free after its wal_sender_timeout (2 s). */
	pid = fork_consumer("t_kill");
	consumer_start(b, &cfg);
	ck_assert(run_until(has_busy, b, 5000));
	ck_assert_int_eq(kill(pid, SIGSTOP), 0);
	t0 = clock_mono_ms();
	wait_streaming(b, 8000);
	took = b->state_at - t0;
	printf("hard_kill: a stopped consumer's slot taken over after %" PRIu64 " ms\n", took);
	ck_assert_uint_ge(took, 1000);
	ck_assert_uint_le(took, 5000);
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	ck_assert_int_eq(waitpid(pid, &wst, 0), pid);
	consumer_stop(b);

	/* Killed (SIGKILL): the kernel closes its socket, the walsender goes. */
	pid = fork_consumer("t_kill");
	consumer_start(b, &cfg);
	ck_assert(run_until(has_busy, b, 5000));
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	t0 = clock_mono_ms();
	ck_assert_int_eq(waitpid(pid, &wst, 0), pid);
	wait_streaming(b, 6000);
	took = b->state_at - t0;
	printf("hard_kill: a killed consumer's slot taken over after %" PRIu64 " ms\n", took);
	ck_assert_uint_le(took, 3000);
	insert("t_kill", "r1");
	wait_msgs(b, 4);
	consumer_stop(b);
	drop_slot("t_kill");
	free(b);
}
END_TEST

START_TEST(test_keepalive)
{
	struct repl_config cfg = { .slot = "t_keep", .publication = "t_keep",
				   .wal_sender_timeout_ms = 2000, .status_interval_ms = 60000 };
	struct consumer *c = calloc(1, sizeof(*c));
	struct repl_stats s0, s;

	fresh("t_keep");
	consumer_start(c, &cfg);
	wait_streaming(c, 15000);
	repl_stats_get(c->r, &s0);
	run_for(5000);
	repl_stats_get(c->r, &s);
	printf("keepalive: %" PRIu64 " keepalives, %" PRIu64 " status updates in 5 s\n",
	       s.keepalives - s0.keepalives, s.status_updates - s0.status_updates);
	ck_assert_uint_eq(s.reconnects, 0);
	ck_assert_int_eq(c->states[REPL_ERROR], 0);
	ck_assert_int_eq(c->state, REPL_STREAMING);
	ck_assert_uint_ge(s.keepalives - s0.keepalives, 2);
	ck_assert_uint_ge(s.status_updates - s0.status_updates, 2);
	insert("t_keep", "r1");
	wait_msgs(c, 4);
	consumer_stop(c);
	drop_slot("t_keep");
	free(c);
}
END_TEST

START_TEST(test_idle_advance)
{
	struct repl_config cfg = { .slot = "t_idle", .publication = "t_idle",
				   .status_interval_ms = 200 };
	struct consumer *c = calloc(1, sizeof(*c));
	uint64_t first, second, pos = 0, deadline;
	char vals[64];

	fresh("t_idle");
	consumer_start(c, &cfg);
	wait_streaming(c, 15000);
	insert("t_idle", "r1");
	wait_msgs(c, 4);
	first = commit_lsn(c, 1);
	ck_assert_int_eq(repl_confirm(c->r, first), 0);
	/* WAL nobody subscribes to: the slot moves past it. */
	deadline = clock_mono_ms() + 5000;
	while (clock_mono_ms() < deadline) {
		sql_ok("SELECT pg_logical_emit_message(false, 'meridian-test', 'x')");
		run_for(100);
		pos = slot_confirmed("t_idle", NULL);
		if (pos > first)
			break;
	}
	ck_assert_msg(pos > first, "slot stuck at the confirmed position");

	/* Delivered but not confirmed: the slot stays below it. */
	insert("t_idle", "r2");
	wait_msgs(c, 7);
	second = commit_lsn(c, 2);
	for (int i = 0; i < 10; i++) {
		sql_ok("SELECT pg_logical_emit_message(false, 'meridian-test', 'x')");
		run_for(100);
	}
	ck_assert_uint_lt(slot_confirmed("t_idle", NULL), second);
	consumer_stop(c);

	consumer_start(c, &cfg);
	wait_streaming(c, 15000);
	wait_msgs(c, 4);
	inserted(c, vals, sizeof(vals));
	ck_assert_str_eq(vals, "r2");
	consumer_stop(c);
	drop_slot("t_idle");
	free(c);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Poll mode                                                           */
/* ------------------------------------------------------------------ */

static bool flushed_to(void *ctx)
{
	struct consumer *c = ctx;
	struct repl_stats s;

	repl_stats_get(c->r, &s);
	return s.flushed_lsn >= s.confirmed_lsn && s.advances > 0;
}

START_TEST(test_poll)
{
	struct repl_config cfg = { .slot = "t_poll", .publication = "t_poll",
				   .mode = REPL_POLL, .poll_interval_ms = 100 };
	struct consumer *c = calloc(1, sizeof(*c));
	char got[MAX_MSGS + 1], vals[128];
	struct repl_stats s;
	uint64_t second;

	fresh("t_poll");
	consumer_start(c, &cfg);
	wait_streaming(c, 15000);
	ck_assert(slot_exists("t_poll"));
	ck_assert(pub_exists("t_poll"));
	insert("t_poll", "r1");
	insert("t_poll", "r2");
	insert("t_poll", "r3");
	sql_ok("INSERT INTO t_poll (v) VALUES ('r4'), ('r5')");
	wait_msgs(c, 14);
	run_for(1000);   /* ten more peeks of the same rows: none again */
	kinds(c, got, sizeof(got));
	ck_assert_str_eq(got, "BRICBICBICBIIC");
	inserted(c, vals, sizeof(vals));
	ck_assert_str_eq(vals, "r1 r2 r3 r4 r5");
	check_lsns(c);
	repl_stats_get(c->r, &s);
	ck_assert_uint_ge(s.polls, 5);
	ck_assert_uint_ge(s.skipped, 14);
	ck_assert_uint_eq(s.messages, 14);

	second = commit_lsn(c, 2);
	ck_assert_int_eq(repl_confirm(c->r, commit_lsn(c, 4) + 1), -ERANGE);
	ck_assert_int_eq(repl_confirm(c->r, second), 0);
	ck_assert(run_until(flushed_to, c, 5000));
	ck_assert_uint_eq(slot_confirmed("t_poll", NULL), second);
	consumer_stop(c);

	consumer_start(c, &cfg);
	wait_streaming(c, 15000);
	insert("t_poll", "r6");
	wait_msgs(c, 11);
	run_for(300);
	kinds(c, got, sizeof(got));
	ck_assert_str_eq(got, "BRICBIICBIC");
	inserted(c, vals, sizeof(vals));
	ck_assert_str_eq(vals, "r3 r4 r5 r6");
	consumer_stop(c);
	drop_slot("t_poll");
	free(c);
}
END_TEST

START_TEST(test_poll_busy)
{
	struct repl_config cfg = { .slot = "t_pbusy", .publication = "t_pbusy" };
	struct consumer *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	struct repl_stats s;

	fresh("t_pbusy");
	consumer_start(a, &cfg);
	wait_streaming(a, 15000);
	cfg.mode = REPL_POLL;
	consumer_start(b, &cfg);
	run_for(1500);
	ck_assert_int_eq(b->state, REPL_SLOT_BUSY);
	repl_stats_get(b->r, &s);
	ck_assert_uint_ge(s.slot_busy, 2);
	takeover_after_stop(a, b, "t_pbusy");
}
END_TEST

START_TEST(test_bad_config)
{
	struct repl_callbacks cb = { .on_message = on_message };
	struct repl_config cfg = { .conninfo = "host=127.0.0.1" };
	char err[REPL_ERROR_MAX];

	ck_assert_ptr_null(repl_start(&loop, &cfg, NULL, err, sizeof(err)));
	cfg.slot = "Bad-Name";
	ck_assert_ptr_null(repl_start(&loop, &cfg, &cb, err, sizeof(err)));
	ck_assert_msg(strstr(err, "slot"), "err: %s", err);
	cfg.slot = "0123456789012345678901234567890123456789012345678901234567890123";
	ck_assert_ptr_null(repl_start(&loop, &cfg, &cb, err, sizeof(err)));
	cfg.slot = NULL;
	cfg.conninfo = "bogus_key=1";
	ck_assert_ptr_null(repl_start(&loop, &cfg, &cb, err, sizeof(err)));
	ck_assert_msg(strstr(err, "bogus_key"), "err: %s", err);
	cfg.mode = REPL_POLL;
	ck_assert_ptr_null(repl_start(&loop, &cfg, &cb, NULL, 0));
	cfg.conninfo = NULL;
	ck_assert_ptr_null(repl_start(&loop, &cfg, &cb, err, sizeof(err)));
	cfg.conninfo = "host=127.0.0.1";
	cfg.mode = (enum repl_mode)7;
	ck_assert_ptr_null(repl_start(&loop, &cfg, &cb, err, sizeof(err)));
	repl_stop(NULL);
}
END_TEST

/* A refused port: error reports with a clear text, retried with backoff,
 * stopped cleanly while retrying. */
START_TEST(test_refused)
{
	struct repl_config cfg = { .backoff_initial_ms = 50, .backoff_max_ms = 200 };
	struct consumer *c = calloc(1, sizeof(*c));
	struct repl_callbacks cb = { .on_message = on_message, .on_state = on_state, .ctx = c };
	struct repl_stats s;

	cfg.conninfo = "postgresql://postgres@127.0.0.1:1/postgres";
	cfg.seed = seed;
	c->r = repl_start(&loop, &cfg, &cb, NULL, 0);
	ck_assert_ptr_nonnull(c->r);
	run_for(1000);
	repl_stats_get(c->r, &s);
	ck_assert_uint_ge(s.reconnects, 3);
	ck_assert_uint_le(s.reconnects, 25);
	ck_assert_int_eq(c->state, REPL_ERROR);
	ck_assert_msg(strstr(s.last_error, "could not connect"), "%s", s.last_error);
	consumer_stop(c);
	free(c);
}
END_TEST

static Suite *repl_suite(void)
{
	Suite *s = suite_create("replication");
	TCase *tc = tcase_create("replication");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 90);
	tcase_add_test(tc, test_wire);
	tcase_add_test(tc, test_stream_deliver);
	tcase_add_test(tc, test_stream_resume);
	tcase_add_test(tc, test_busy_takeover);
	tcase_add_test(tc, test_hard_kill);
	tcase_add_test(tc, test_keepalive);
	tcase_add_test(tc, test_idle_advance);
	tcase_add_test(tc, test_poll);
	tcase_add_test(tc, test_poll_busy);
	tcase_add_test(tc, test_bad_config);
	tcase_add_test(tc, test_refused);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return pg_test_main("test_replication", repl_suite);
}
