/*
 * tests/unit/test_pgconn.c - storage/pgconn.c against a real PostgreSQL.
 *
 * Needs MERIDIAN_TEST_PG_URL (and, for the restart test,
 * MERIDIAN_TEST_PG_DIR, MERIDIAN_TEST_PG_PORT and MERIDIAN_TEST_PG_LIB):
 * tests/integration/pg_unit.sh starts a throwaway server and sets them.
 * Without the URL the binary fails at once: it never passes vacuously.
 *
 * Covered: parameters that travel apart from the SQL (quotes, NULL,
 * unicode) and FIFO order; SQL errors with their SQLSTATE, connection
 * kept; several statements and COPY refused; a query timeout drops the
 * connection and the next query reconnects; an answer's rows bounded
 * (max_result_bytes: gathered one by one, -EFBIG past the bound, no
 * backoff after); server-side statement_timeout
 * and user options merged; a host name resolved off the loop, and one
 * that does not resolve; keepalive and tcp_user_timeout options read
 * back from the socket, ours winning over the URL's, the URL's
 * application_name winning over ours; the queue bound (-EAGAIN); a
 * refused port fails fast, and during the backoff fails at once; a server
 * that accepts but never answers (connect timeout); the server stopped
 * (fast failure, clear error) and started again (recovery); close drops
 * queries without callbacks, also from inside a callback; bad configs.
 *
 * No uv_run() can block: the loop runs one iteration at a time (a 10 ms
 * pulse timer makes each return) until a condition holds or a deadline
 * passes.  Every test closes what it opened and asserts uv_loop_close()
 * == 0.  Backoff jitter is seeded (MERIDIAN_SEED, printed).
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "storage/pgconn.h"
#include "tests/unit/pg_testutil.h"

#define DEFAULT_SEED 0x5047434f4e4e31ULL  /* "PGCONN1" */
#define DEADLINE_MS 10000

static uv_loop_t loop;
static uv_timer_t pulse;
static uint64_t seed;
static int order_seq;

/* ------------------------------------------------------------------ */
/* The loop, bounded                                                   */
/* ------------------------------------------------------------------ */

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
	seed = pg_test_seed(DEFAULT_SEED);
	order_seq = 0;
	test_loop_open(&loop, &pulse);
}

static void teardown(void)
{
	test_loop_close(&loop, &pulse, DEADLINE_MS);
}

/* ------------------------------------------------------------------ */
/* Answers                                                             */
/* ------------------------------------------------------------------ */

#define MAX_COLS 8

struct got {
	int calls;
	int status;
	int order;
	char sqlstate[6];
	char error[PGCONN_ERROR_MAX];
	int ntuples, nfields;
	char vals[MAX_COLS][256];
	bool nulls[MAX_COLS];
	char last[MAX_COLS][256];     /* the last row's */
	bool last_nulls[MAX_COLS];
	char tag[64];                 /* the command tag */
	uint64_t serial;
	uint64_t at;                  /* uv_now() when answered */
	struct pgconn *close_me;      /* closed from inside the callback */
};

static void on_answer(void *arg, const struct pgconn_reply *r)
{
	struct got *g = arg;

	g->calls++;
	g->order = ++order_seq;
	g->status = r->status;
	g->serial = r->conn_serial;
	g->at = uv_now(&loop);
	snprintf(g->sqlstate, sizeof(g->sqlstate), "%s", r->sqlstate);
	snprintf(g->error, sizeof(g->error), "%s", r->error);
	if (r->status == 0) {
		ck_assert_ptr_nonnull(r->res);
		ck_assert_str_eq(r->error, "");
		g->ntuples = PQntuples(r->res);
		g->nfields = PQnfields(r->res);
		for (int i = 0; i < g->nfields && i < MAX_COLS && g->ntuples > 0; i++) {
			int l = g->ntuples - 1;

			g->nulls[i] = PQgetisnull(r->res, 0, i);
			snprintf(g->vals[i], sizeof(g->vals[i]), "%s", PQgetvalue(r->res, 0, i));
			g->last_nulls[i] = PQgetisnull(r->res, l, i);
			snprintf(g->last[i], sizeof(g->last[i]), "%s", PQgetvalue(r->res, l, i));
		}
		snprintf(g->tag, sizeof(g->tag), "%s", PQcmdStatus((PGresult *)r->res));
	} else {
		ck_assert_ptr_null(r->res);
		ck_assert_msg(r->error && *r->error, "a failure without an error text");
	}
	if (g->close_me)
		pgconn_close(g->close_me);
}

static bool got_done(void *ctx)
{
	return ((struct got *)ctx)->calls > 0;
}

static struct pgconn *open_conn(struct pgconn_config *cfg)
{
	char err[PGCONN_ERROR_MAX];
	struct pgconn *c;

	cfg->seed = seed;
	c = pgconn_new(&loop, cfg, err, sizeof(err));
	ck_assert_msg(c != NULL, "pgconn_new: %s", err);
	return c;
}

static struct pgconn *open_default(void)
{
	struct pgconn_config cfg = { .conninfo = pg_test_url(),
				     .application_name = "meridian-test" };

	return open_conn(&cfg);
}

/* Runs @sql and waits for its answer. */
static void query(struct pgconn *c, struct got *g, const char *sql, int n,
		  const char *const *params, uint32_t timeout_ms)
{
	memset(g, 0, sizeof(*g));
	ck_assert_int_eq(pgconn_query(c, sql, n, params, timeout_ms, on_answer, g), 0);
	ck_assert_msg(run_until(got_done, g, DEADLINE_MS), "no answer to %s", sql);
	ck_assert_int_eq(g->calls, 1);
}

static void query_ok(struct pgconn *c, struct got *g, const char *sql, int n,
		     const char *const *params)
{
	query(c, g, sql, n, params, 0);
	ck_assert_msg(g->status == 0, "%s: status %d: %s", sql, g->status, g->error);
}

/* Runs `pg.sh` function @fn DIR [PORT] in bash, by PID, reaped, 60 s at
 * most (then killed by PID).  The exit status, or -1. */
static int pg_lib(const char *fn)
{
	const char *lib = pg_test_env("MERIDIAN_TEST_PG_LIB");
	const char *dir = pg_test_env("MERIDIAN_TEST_PG_DIR");
	const char *port = pg_test_env("MERIDIAN_TEST_PG_PORT");
	uint64_t deadline = uv_hrtime() + 60ULL * 1000000000ULL;
	int status;
	pid_t pid;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		execlp("bash", "bash", "-c", ". \"$1\" && \"$2\" \"$3\" \"$4\"", "pg_lib", lib, fn,
		       dir, port, (char *)NULL);
		_exit(127);
	}
	for (;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);

		if (w == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
		if (uv_hrtime() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return -1;
		}
		usleep(20000);
	}
}

/* ------------------------------------------------------------------ */
/* Tests                                                               */
/* ------------------------------------------------------------------ */

START_TEST(test_params)
{
	static const char *const tricky = "it's \"quoted\"; DROP TABLE x; -- \\ $1";
	static const char *const uni =
		"h\xc3\xa9llo \xe2\x98\x83 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80";
	const char *params[3] = { tricky, NULL, uni };
	struct pgconn *c = open_default();
	struct pgconn_stats st;
	struct got g, fifo[3];
	struct pg_calls m = PG_CALLS(fifo, 3);
	char num[3][4];

	query_ok(c, &g, "SELECT $1::text, $2::text IS NULL, $2::text, $3::text, length($3::text)",
		 3, params);
	ck_assert_int_eq(g.ntuples, 1);
	ck_assert_str_eq(g.vals[0], tricky);
	ck_assert_str_eq(g.vals[1], "t");
	ck_assert(g.nulls[2]);
	ck_assert_str_eq(g.vals[3], uni);
	ck_assert_str_eq(g.vals[4], "12");
	ck_assert_uint_eq(g.serial, 1);

	/* FIFO: queued together, answered in order. */
	memset(fifo, 0, sizeof(fifo));
	for (int i = 0; i < 3; i++) {
		const char *p[1] = { num[i] };

		snprintf(num[i], sizeof(num[i]), "%d", i + 1);
		ck_assert_int_eq(pgconn_query(c, "SELECT $1::int * 10", 1, p, 0, on_answer,
					      &fifo[i]), 0);
	}
	ck_assert(run_until(pg_all_called, &m, DEADLINE_MS));
	for (int i = 0; i < 3; i++) {
		char want[8];

		snprintf(want, sizeof(want), "%d", (i + 1) * 10);
		ck_assert_int_eq(fifo[i].status, 0);
		ck_assert_str_eq(fifo[i].vals[0], want);
		ck_assert_int_eq(fifo[i].order, g.order + 1 + i);
		ck_assert_uint_eq(fifo[i].serial, 1);
	}
	pgconn_stats_get(c, &st);
	ck_assert_uint_eq(st.connects, 1);
	ck_assert_uint_eq(st.queries, 4);
	ck_assert_uint_eq(st.failures, 0);
	ck_assert_int_eq(st.connected, 1);
	ck_assert_uint_eq(st.queued, 0);
	pgconn_close(c);
}
END_TEST

/* max_result_bytes: rows read one at a time and gathered into one
 * result; past the bound -EFBIG, the connection dropped, the next query
 * served at once. */
START_TEST(test_result_bound)
{
	struct pgconn_config cfg = { .conninfo = pg_test_url(), .max_result_bytes = 100000,
				     .backoff_initial_ms = 5000, .backoff_max_ms = 5000 };
	struct pgconn *c = open_conn(&cfg);
	struct pgconn_stats st;
	struct got g;
	uint64_t t0;

	/* 500 rows of ~120 bytes counted: under the bound, every row there,
	 * NULLs kept, the command tag that of the statement. */
	query_ok(c, &g, "SELECT g, repeat('x', 100), NULLIF(g % 2, 0) FROM generate_series(1, 500) g",
		 0, NULL);
	ck_assert_int_eq(g.ntuples, 500);
	ck_assert_int_eq(g.nfields, 3);
	ck_assert_str_eq(g.vals[0], "1");
	ck_assert_str_eq(g.last[0], "500");
	ck_assert_uint_eq(strlen(g.last[1]), 100);
	ck_assert(!g.nulls[2]);
	ck_assert(g.last_nulls[2]);
	ck_assert_str_eq(g.tag, "SELECT 500");
	query_ok(c, &g, "SELECT 1 WHERE false", 0, NULL);
	ck_assert_int_eq(g.ntuples, 0);
	ck_assert_int_eq(g.nfields, 1);
	query_ok(c, &g, "CREATE TEMP TABLE b (id int)", 0, NULL);
	ck_assert_str_eq(g.tag, "CREATE TABLE");
	query_ok(c, &g, "INSERT INTO b SELECT generate_series(1, 3) RETURNING id", 0, NULL);
	ck_assert_int_eq(g.ntuples, 3);
	ck_assert_str_eq(g.last[0], "3");
	ck_assert_str_eq(g.tag, "INSERT 0 3");

	/* Rows of no columns cannot be gathered: said, not lost. */
	query(c, &g, "SELECT FROM generate_series(1, 5)", 0, NULL, 0);
	ck_assert_int_eq(g.status, -EPROTO);
	ck_assert_ptr_nonnull(strstr(g.error, "without columns"));

	/* An error after some rows: the error, the rows dropped, the
	 * connection kept. */
	query(c, &g, "SELECT 1 / (g - 300) FROM generate_series(1, 500) g", 0, NULL, 0);
	ck_assert_int_eq(g.status, -EREMOTEIO);
	ck_assert_str_eq(g.sqlstate, "22012");
	pgconn_stats_get(c, &st);
	ck_assert_uint_eq(st.connects, 2);   /* the one before was dropped */

	/* 1000 rows of 1000 bytes: -EFBIG long before the end. */
	query(c, &g, "SELECT repeat('x', 1000) FROM generate_series(1, 1000)", 0, NULL, 0);
	ck_assert_int_eq(g.status, -EFBIG);
	ck_assert_ptr_nonnull(strstr(g.error, "larger than 100000 bytes"));
	pgconn_stats_get(c, &st);
	ck_assert_uint_eq(st.too_large, 1);
	ck_assert_int_eq(st.connected, 0);
	ck_assert_uint_eq(st.connects, 2);
	/* Not the server's fault: no 5 s backoff before the next query. */
	t0 = uv_now(&loop);
	query_ok(c, &g, "SELECT 42", 0, NULL);
	ck_assert_str_eq(g.vals[0], "42");
	ck_assert_uint_lt(g.at - t0, 4000);
	pgconn_stats_get(c, &st);
	ck_assert_uint_eq(st.connects, 3);
	pgconn_close(c);

	/* Unbounded (the default): libpq reads it all. */
	c = open_default();
	query_ok(c, &g, "SELECT repeat('x', 1000) FROM generate_series(1, 1000)", 0, NULL);
	ck_assert_int_eq(g.ntuples, 1000);
	pgconn_close(c);
}
END_TEST

/* A host name is resolved off the loop (storage/pgresolve.h): the
 * connection works by name, and a name that does not resolve fails the
 * query with the name in the error (a 70-byte label: refused by the
 * resolver itself, no DNS packet sent). */
START_TEST(test_host_names)
{
	const char *url = pg_test_url();
	const char *at = strstr(url, "127.0.0.1");
	char byname[512], bad[512];
	struct pgconn_config cfg = { .conninfo = byname };
	struct pgconn *c;
	struct got g;

	ck_assert_ptr_nonnull(at);
	snprintf(byname, sizeof(byname), "%.*slocalhost%s", (int)(at - url), url, at + 9);
	c = open_conn(&cfg);
	query_ok(c, &g, "SELECT inet_server_addr()::text", 0, NULL);
	ck_assert_str_eq(g.vals[0], "127.0.0.1/32");
	pgconn_close(c);

	snprintf(bad, sizeof(bad), "%.*s%s.invalid%s", (int)(at - url), url,
		 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", at + 9);
	cfg.conninfo = bad;
	c = open_conn(&cfg);
	query(c, &g, "SELECT 1", 0, NULL, 2000);
	ck_assert_int_eq(g.status, -ENOTCONN);
	ck_assert_msg(strstr(g.error, "could not resolve host") != NULL, "error: %s", g.error);
	pgconn_close(c);
}
END_TEST

START_TEST(test_sql_errors)
{
	struct pgconn *c = open_default();
	struct pgconn_stats st;
	struct got g;

	query(c, &g, "SELECT 1/0", 0, NULL, 0);
	ck_assert_int_eq(g.status, -EREMOTEIO);
	ck_assert_str_eq(g.sqlstate, "22012");
	ck_assert_msg(strstr(g.error, "SQLSTATE 22012") && strstr(g.error, "division by zero"),
		      "error text: %s", g.error);

	query(c, &g, "SELEC 1", 0, NULL, 0);
	ck_assert_int_eq(g.status, -EREMOTEIO);
	ck_assert_str_eq(g.sqlstate, "42601");

	/* Parameters mean one statement only. */
	query(c, &g, "SELECT 1; SELECT 2", 0, NULL, 0);
	ck_assert_int_eq(g.status, -EREMOTEIO);
	ck_assert_str_eq(g.sqlstate, "42601");

	/* An error is not a connection failure: same connection. */
	query_ok(c, &g, "SELECT 'still here'", 0, NULL);
	ck_assert_str_eq(g.vals[0], "still here");
	ck_assert_uint_eq(g.serial, 1);

	/* COPY is refused and costs the connection; the next query reconnects. */
	query(c, &g, "COPY (SELECT 1) TO STDOUT", 0, NULL, 0);
	ck_assert_int_eq(g.status, -EPROTO);
	query_ok(c, &g, "SELECT 2", 0, NULL);
	ck_assert_uint_eq(g.serial, 2);

	pgconn_stats_get(c, &st);
	ck_assert_uint_eq(st.failures, 4);
	ck_assert_uint_eq(st.connects, 2);
	ck_assert_uint_eq(st.timeouts, 0);
	pgconn_close(c);
}
END_TEST

START_TEST(test_timeout_reconnects)
{
	struct pgconn_config cfg = { .conninfo = pg_test_url(),
				     .statement_timeout_ms = 2500,
				     .backoff_initial_ms = 50 };
	struct pgconn *c = open_conn(&cfg);
	struct pgconn_stats st;
	struct got g;
	uint64_t t0;

	query_ok(c, &g, "SHOW statement_timeout", 0, NULL);
	ck_assert_str_eq(g.vals[0], "2500ms");
	t0 = uv_now(&loop);
	query(c, &g, "SELECT pg_sleep(5)", 0, NULL, 300);
	ck_assert_int_eq(g.status, -ETIMEDOUT);
	ck_assert_msg(g.at - t0 >= 290 && g.at - t0 < 2000, "timed out after %" PRIu64 " ms",
		      g.at - t0);
	ck_assert_msg(strstr(g.error, "timed out"), "error text: %s", g.error);
	pgconn_stats_get(c, &st);
	ck_assert_uint_eq(st.timeouts, 1);
	ck_assert_int_eq(st.connected, 0);
	ck_assert_int_eq(pgconn_socket(c), -1);
	ck_assert_uint_eq(st.disconnects, 1);

	/* Later: reconnects (after the backoff) and answers. */
	query_ok(c, &g, "SELECT 42", 0, NULL);
	ck_assert_str_eq(g.vals[0], "42");
	ck_assert_uint_eq(g.serial, 2);
	pgconn_stats_get(c, &st);
	ck_assert_uint_eq(st.connects, 2);
	ck_assert_int_eq(st.connected, 1);
	pgconn_close(c);
}
END_TEST

static int sockopt(int fd, int level, int name)
{
	int v = -1;
	socklen_t len = sizeof(v);

	ck_assert_int_eq(getsockopt(fd, level, name, &v, &len), 0);
	return v;
}

START_TEST(test_options)
{
	const char *url = pg_test_url();
	char merged[512];
	struct pgconn_config cfg = {
		.application_name = "ours",
		.keepalives_idle_s = 7,
		.keepalives_interval_s = 3,
		.keepalives_count = 4,
		.tcp_user_timeout_ms = 6000,
		.statement_timeout_ms = 1500,
	};
	struct pgconn *c, *d;
	struct got g;
	int fd;

	/* The URL asks for its own application_name (wins), keepalives
	 * (lose) and options (kept, ours appended). */
	snprintf(merged, sizeof(merged),
		 "%s?application_name=theirs&keepalives=0&keepalives_idle=99&tcp_user_timeout=1"
		 "&options=-c%%20work_mem%%3D1234kB", url);
	cfg.conninfo = merged;
	c = open_conn(&cfg);
	query_ok(c, &g, "SELECT current_setting('application_name'),"
		 " current_setting('work_mem'), current_setting('statement_timeout')", 0, NULL);
	ck_assert_str_eq(g.vals[0], "theirs");
	ck_assert_str_eq(g.vals[1], "1234kB");
	ck_assert_str_eq(g.vals[2], "1500ms");
	fd = pgconn_socket(c);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_ne(sockopt(fd, SOL_SOCKET, SO_KEEPALIVE), 0);
	ck_assert_int_eq(sockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE), 7);
	ck_assert_int_eq(sockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL), 3);
	ck_assert_int_eq(sockopt(fd, IPPROTO_TCP, TCP_KEEPCNT), 4);
	ck_assert_int_eq(sockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), 6000);

	/* Without one in the URL, ours is used. */
	cfg.conninfo = url;
	d = open_conn(&cfg);
	query_ok(d, &g, "SELECT current_setting('application_name')", 0, NULL);
	ck_assert_str_eq(g.vals[0], "ours");
	pgconn_close(c);
	pgconn_close(d);
}
END_TEST

START_TEST(test_queue_bound)
{
	struct pgconn_config cfg = { .conninfo = pg_test_url(),
				     .max_queue = 2 };
	struct pgconn *c = open_conn(&cfg);
	struct pgconn_stats st;
	struct got g[4];
	struct pg_calls m = PG_CALLS(g, 3);

	memset(g, 0, sizeof(g));
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(pgconn_query(c, "SELECT pg_sleep(0.05)", 0, NULL, 0, on_answer,
					      &g[i]), 0);
	ck_assert_int_eq(pgconn_query(c, "SELECT 1", 0, NULL, 0, on_answer, &g[3]), -EAGAIN);
	pgconn_stats_get(c, &st);
	ck_assert_uint_eq(st.rejected, 1);
	ck_assert_uint_eq(st.queued, 3);
	ck_assert(run_until(pg_all_called, &m, DEADLINE_MS));
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(g[i].status, 0);
		ck_assert_int_eq(g[i].order, i + 1);
	}
	ck_assert_int_eq(g[3].calls, 0);
	/* Room again. */
	ck_assert_int_eq(pgconn_query(c, "SELECT 1", 0, NULL, 0, on_answer, &g[3]), 0);
	ck_assert(run_until(got_done, &g[3], DEADLINE_MS));
	ck_assert_int_eq(g[3].status, 0);
	pgconn_close(c);
}
END_TEST

START_TEST(test_refused_and_backoff)
{
	char url[128];
	struct pgconn_config cfg = { .backoff_initial_ms = 2000, .backoff_max_ms = 4000 };
	struct pgconn *c;
	struct pgconn_stats st;
	struct got g;
	uint64_t t0;

	snprintf(url, sizeof(url), "postgresql://postgres@127.0.0.1:%d/postgres", test_closed_port());
	cfg.conninfo = url;
	c = open_conn(&cfg);
	t0 = uv_now(&loop);
	query(c, &g, "SELECT 1", 0, NULL, 3000);
	ck_assert_int_eq(g.status, -ENOTCONN);
	ck_assert_msg(g.at - t0 < 1000, "refused after %" PRIu64 " ms", g.at - t0);
	ck_assert_msg(strstr(g.error, "could not connect") && strstr(g.error, "refused"),
		      "error text: %s", g.error);
	ck_assert_ptr_null(strchr(g.error, '\n'));

	/* Within the backoff (>= 1000 ms) a query due before the next
	 * attempt fails at once, saying why. */
	t0 = uv_now(&loop);
	query(c, &g, "SELECT 1", 0, NULL, 500);
	ck_assert_int_eq(g.status, -ENOTCONN);
	ck_assert_msg(g.at - t0 < 200, "failed after %" PRIu64 " ms", g.at - t0);
	ck_assert_msg(strstr(g.error, "next attempt in") && strstr(g.error, "refused"),
		      "error text: %s", g.error);

	pgconn_stats_get(c, &st);
	ck_assert_uint_eq(st.connect_failures, 1);
	ck_assert_uint_eq(st.failures, 2);
	ck_assert_uint_eq(st.connects, 0);
	ck_assert_int_eq(st.connected, 0);
	ck_assert_msg(strstr(st.last_error, "refused"), "last_error: %s", st.last_error);
	pgconn_close(c);
}
END_TEST

START_TEST(test_mute_server)
{
	char url[160];
	int port, fd = pg_mute_listener(&port);
	struct pgconn_config cfg = { .connect_timeout_ms = 600 };
	struct pgconn *c;
	struct pgconn_stats st;
	struct got g;
	uint64_t t0;

	snprintf(url, sizeof(url), "postgresql://postgres@127.0.0.1:%d/postgres?sslmode=disable",
		 port);
	cfg.conninfo = url;
	c = open_conn(&cfg);
	t0 = uv_now(&loop);
	query(c, &g, "SELECT 1", 0, NULL, 300);
	ck_assert_int_eq(g.status, -ETIMEDOUT);
	ck_assert_msg(g.at - t0 >= 290 && g.at - t0 < 1000, "after %" PRIu64 " ms", g.at - t0);
	/* The attempt itself gives up at connect_timeout_ms. */
	run_for(700);
	pgconn_stats_get(c, &st);
	ck_assert_uint_eq(st.timeouts, 1);
	ck_assert_uint_eq(st.connect_failures, 1);
	ck_assert_msg(strstr(st.last_error, "timed out after 600 ms"), "last_error: %s",
		      st.last_error);
	pgconn_close(c);
	close(fd);
}
END_TEST

START_TEST(test_server_restart)
{
	struct pgconn_config cfg = { .conninfo = pg_test_url(),
				     .backoff_initial_ms = 50, .backoff_max_ms = 400 };
	struct pgconn *c = open_conn(&cfg);
	struct pgconn_stats st;
	struct got g;
	uint64_t t0, deadline;
	int tries = 0;

	query_ok(c, &g, "SELECT 1", 0, NULL);
	ck_assert_int_eq(pg_lib("pg_stop"), 0);

	/* Fast failure, with a clear error, not a wait for the deadline. */
	t0 = uv_now(&loop);
	query(c, &g, "SELECT 1", 0, NULL, 5000);
	printf("after stop: status %d: %s\n", g.status, g.error);
	ck_assert_msg(g.status == -ECONNRESET || g.status == -ENOTCONN, "status %d", g.status);
	ck_assert_msg(g.at - t0 < 1500, "failed after %" PRIu64 " ms", g.at - t0);
	ck_assert_msg(strstr(g.error, "terminat") || strstr(g.error, "refused") ||
		      strstr(g.error, "closed"), "error text: %s", g.error);
	pgconn_stats_get(c, &st);
	ck_assert_int_eq(st.connected, 0);
	ck_assert_uint_ge(st.disconnects, 1);

	/* A second query while it is down: fails too. */
	query(c, &g, "SELECT 1", 0, NULL, 5000);
	ck_assert_int_eq(g.status, -ENOTCONN);
	ck_assert_msg(strstr(g.error, "refused"), "error text: %s", g.error);

	ck_assert_int_eq(pg_lib("pg_start"), 0);
	deadline = uv_now(&loop) + 15000;
	do {
		query(c, &g, "SELECT 'back'", 0, NULL, 2000);
		tries++;
		if (g.status != 0)
			run_for(100);
	} while (g.status != 0 && uv_now(&loop) < deadline);
	ck_assert_msg(g.status == 0, "no recovery: %s", g.error);
	ck_assert_str_eq(g.vals[0], "back");
	pgconn_stats_get(c, &st);
	printf("recovered after %d tries; connects %" PRIu64 ", connect_failures %" PRIu64 "\n",
	       tries, st.connects, st.connect_failures);
	ck_assert_uint_eq(st.connects, 2);
	ck_assert_uint_ge(st.connect_failures, 1);
	ck_assert_int_eq(st.connected, 1);
	pgconn_close(c);
}
END_TEST

START_TEST(test_close_drops)
{
	struct pgconn *c = open_default(), *d = open_default();
	struct got g[3], h[2];
	struct got warm;

	/* Close with queries queued: no callback, everything freed (ASan). */
	query_ok(c, &warm, "SELECT 1", 0, NULL);
	memset(g, 0, sizeof(g));
	ck_assert_int_eq(pgconn_query(c, "SELECT pg_sleep(0.2)", 0, NULL, 0, on_answer, &g[0]), 0);
	ck_assert_int_eq(pgconn_query(c, "SELECT 1", 0, NULL, 0, on_answer, &g[1]), 0);
	ck_assert_int_eq(pgconn_query(c, "SELECT 2", 0, NULL, 0, on_answer, &g[2]), 0);
	run_for(50);                  /* the first is on the server now */
	pgconn_close(c);
	pgconn_close(c);              /* twice is harmless */
	pgconn_close(NULL);
	run_for(400);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(g[i].calls, 0);

	/* Close from inside a callback: the rest never answer. */
	memset(h, 0, sizeof(h));
	h[0].close_me = d;
	ck_assert_int_eq(pgconn_query(d, "SELECT 1", 0, NULL, 0, on_answer, &h[0]), 0);
	ck_assert_int_eq(pgconn_query(d, "SELECT 2", 0, NULL, 0, on_answer, &h[1]), 0);
	ck_assert(run_until(got_done, &h[0], DEADLINE_MS));
	run_for(200);
	ck_assert_int_eq(h[0].calls, 1);
	ck_assert_int_eq(h[1].calls, 0);
}
END_TEST

START_TEST(test_bad_config)
{
	struct pgconn_config cfg = { .conninfo = "host=127.0.0.1 bogus_key=1" };
	const char *many[PGCONN_MAX_PARAMS + 1] = { 0 };
	char err[PGCONN_ERROR_MAX];
	struct pgconn *c;
	struct got g;

	ck_assert_ptr_null(pgconn_new(&loop, &cfg, err, sizeof(err)));
	ck_assert_msg(strstr(err, "bogus_key"), "err: %s", err);
	cfg.conninfo = NULL;
	ck_assert_ptr_null(pgconn_new(&loop, &cfg, err, sizeof(err)));
	cfg.conninfo = "postgresql://[::1";
	ck_assert_ptr_null(pgconn_new(&loop, &cfg, NULL, 0));
	cfg.conninfo = "host=127.0.0.1";
	cfg.max_queue = PGCONN_MAX_QUEUE + 1;
	ck_assert_ptr_null(pgconn_new(&loop, &cfg, err, sizeof(err)));

	c = open_default();
	ck_assert_int_eq(pgconn_query(c, NULL, 0, NULL, 0, on_answer, &g), -EINVAL);
	ck_assert_int_eq(pgconn_query(c, "SELECT 1", 0, NULL, 0, NULL, &g), -EINVAL);
	ck_assert_int_eq(pgconn_query(c, "SELECT 1", 1, NULL, 0, on_answer, &g), -EINVAL);
	ck_assert_int_eq(pgconn_query(c, "SELECT 1", PGCONN_MAX_PARAMS + 1, many, 0, on_answer,
				      &g), -EINVAL);
	pgconn_close(c);
	ck_assert_int_eq(pgconn_query(c, "SELECT 1", 0, NULL, 0, on_answer, &g), -ESHUTDOWN);
}
END_TEST

static Suite *pgconn_suite(void)
{
	Suite *s = suite_create("pgconn");
	TCase *tc = tcase_create("pgconn");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_params);
	tcase_add_test(tc, test_sql_errors);
	tcase_add_test(tc, test_result_bound);
	tcase_add_test(tc, test_host_names);
	tcase_add_test(tc, test_timeout_reconnects);
	tcase_add_test(tc, test_options);
	tcase_add_test(tc, test_queue_bound);
	tcase_add_test(tc, test_refused_and_backoff);
	tcase_add_test(tc, test_mute_server);
	tcase_add_test(tc, test_server_restart);
	tcase_add_test(tc, test_close_drops);
	tcase_add_test(tc, test_bad_config);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return pg_test_main("test_pgconn", pgconn_suite);
}
