/*
 * tests/unit/test_pool.c - storage/pool.c (and storage/sqlresult.c on
 * real results) against a real PostgreSQL.
 *
 * Needs MERIDIAN_TEST_PG_URL: tests/integration/pg_unit.sh starts a
 * throwaway server and sets it.  Without it the binary fails at once: it
 * never passes vacuously.
 *
 * Covered: a burst of concurrent queries spread over every connection
 * (distinct pg_backend_pid() == size), sequential queries staying on the
 * one connection already made (connected preferred on ties); -EAGAIN at
 * size * (max_queue + 1); parameters with quotes, NULL, unicode and a
 * 1 MB value round-tripping through sqlresult_json(); real type OIDs
 * named; command tags and rows_affected of CREATE/INSERT/UPDATE/SELECT/
 * DELETE; server errors passed through with their SQLSTATE and counted;
 * a query timeout counted; a refused server failing fast; close with
 * queries queued and from inside a callback (no callbacks after, nothing
 * leaked under ASan); bad configs.
 *
 * No uv_run() can block: the loop runs one iteration at a time (a 10 ms
 * pulse timer makes each return) until a condition holds or a deadline
 * passes.  Every test closes what it opened and asserts uv_loop_close()
 * == 0.  Backoff jitter is seeded (MERIDIAN_SEED, printed).
 */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "storage/pool.h"
#include "storage/sqlresult.h"
#include "tests/unit/pg_testutil.h"

#define DEFAULT_SEED 0x504f4f4c3031ULL  /* "POOL01" */
#define DEADLINE_MS 15000
#define MAX_Q 64

static uv_loop_t loop;
static uv_timer_t pulse;
static uint64_t seed;

static bool run_until(bool (*done)(void *ctx), void *ctx, uint64_t ms)
{
	return test_run_until(&loop, done, ctx, ms);
}

static void setup(void)
{
	seed = pg_test_seed(DEFAULT_SEED);
	test_loop_open(&loop, &pulse);
}

static void teardown(void)
{
	test_loop_close(&loop, &pulse, DEADLINE_MS);
}

/* ------------------------------------------------------------------ */
/* Answers                                                             */
/* ------------------------------------------------------------------ */

struct got {
	int calls;
	int status;
	char sqlstate[6];
	char error[PGCONN_ERROR_MAX];
	json_t *json;                 /* the result through sqlresult_json() */
	int json_rc;
	char json_err[256];
	struct pgpool *close_me;      /* closed from inside the callback */
};

static void on_answer(void *arg, const struct pgconn_reply *r)
{
	struct got *g = arg;

	g->calls++;
	g->status = r->status;
	snprintf(g->sqlstate, sizeof(g->sqlstate), "%s", r->sqlstate);
	snprintf(g->error, sizeof(g->error), "%s", r->error);
	if (r->status == 0) {
		ck_assert_ptr_nonnull(r->res);
		g->json_rc = sqlresult_json(r->res, 0, &g->json, g->json_err,
					    sizeof(g->json_err));
	} else {
		ck_assert_ptr_null(r->res);
	}
	if (g->close_me)
		pgpool_close(g->close_me);
}

static void got_free(struct got *g, int n)
{
	for (int i = 0; i < n; i++) {
		json_decref(g[i].json);
		g[i].json = NULL;
	}
}

static bool got_done(void *ctx)
{
	return ((struct got *)ctx)->calls > 0;
}

static struct pgpool *open_pool(struct pgpool_config *cfg)
{
	char err[PGCONN_ERROR_MAX];
	struct pgpool *p;

	if (!cfg->conninfo)
		cfg->conninfo = pg_test_url();
	cfg->seed = seed;
	p = pgpool_new(&loop, cfg, err, sizeof(err));
	ck_assert_msg(p != NULL, "pgpool_new: %s", err);
	return p;
}

/* Runs @sql, waits for the answer; the JSON (if any) is in g->json. */
static void query(struct pgpool *p, struct got *g, const char *sql, int n,
		  const char *const *params, uint32_t timeout_ms)
{
	memset(g, 0, sizeof(*g));
	ck_assert_int_eq(pgpool_query(p, sql, n, params, timeout_ms, on_answer, g), 0);
	ck_assert_msg(run_until(got_done, g, DEADLINE_MS), "no answer to %s", sql);
	ck_assert_int_eq(g->calls, 1);
}

static json_t *query_json(struct pgpool *p, struct got *g, const char *sql, int n,
			  const char *const *params)
{
	query(p, g, sql, n, params, 0);
	ck_assert_msg(g->status == 0, "%s: status %d: %s", sql, g->status, g->error);
	ck_assert_msg(g->json_rc == 0, "%s: sqlresult_json %d: %s", sql, g->json_rc,
		      g->json_err);
	return g->json;
}

static json_t *cell(json_t *j, size_t row, size_t col)
{
	json_t *v = json_array_get(json_array_get(json_object_get(j, "rows"), row), col);

	ck_assert_ptr_nonnull(v);
	return v;
}

static const char *col_type(json_t *j, size_t col)
{
	return json_string_value(json_object_get(json_array_get(json_object_get(j, "columns"),
								 col), "type"));
}

/* ------------------------------------------------------------------ */
/* Tests                                                               */
/* ------------------------------------------------------------------ */

static int distinct_pids(struct got *g, int n)
{
	json_int_t seen[MAX_Q];
	int k = 0;

	for (int i = 0; i < n; i++) {
		json_int_t pid;
		bool dup = false;

		ck_assert_int_eq(g[i].status, 0);
		pid = json_integer_value(cell(g[i].json, 0, 0));
		ck_assert(pid > 0);
		for (int j = 0; j < k; j++)
			dup |= seen[j] == pid;
		if (!dup)
			seen[k++] = pid;
	}
	return k;
}

START_TEST(test_spread)
{
	struct pgpool_config cfg = { .size = 4, .application_name = "meridian-pool-test" };
	struct pgpool *p = open_pool(&cfg);
	struct pgpool_stats st;
	struct got g[16];
	struct pg_calls m = PG_CALLS(g, 16);

	/* A burst: every connection gets a share. */
	memset(g, 0, sizeof(g));
	for (int i = 0; i < 16; i++)
		ck_assert_int_eq(pgpool_query(p, "SELECT pg_backend_pid(), pg_sleep(0.05)", 0, NULL,
					      0, on_answer, &g[i]), 0);
	pgpool_stats_get(p, &st);
	ck_assert_uint_eq(st.size, 4);
	ck_assert_uint_eq(st.queued, 16);
	ck_assert_uint_eq(st.queries, 16);
	ck_assert(run_until(pg_all_called, &m, DEADLINE_MS));
	ck_assert_int_eq(distinct_pids(g, 16), 4);
	ck_assert_str_eq(col_type(g[0].json, 0), "int4");
	got_free(g, 16);
	pgpool_stats_get(p, &st);
	ck_assert_uint_eq(st.connected, 4);
	ck_assert_uint_eq(st.connects, 4);
	ck_assert_uint_eq(st.queued, 0);
	ck_assert_uint_eq(st.failures, 0);
	ck_assert_uint_eq(st.connect_failures, 0);
	ck_assert_str_eq(st.last_error, "");
	pgpool_close(p);

	/* One at a time on a fresh pool: ties at 0 queued go to a connected
	 * connection, so only one is ever made. */
	p = open_pool(&cfg);
	for (int i = 0; i < 8; i++) {
		query_json(p, &g[i], "SELECT pg_backend_pid()", 0, NULL);
	}
	ck_assert_int_eq(distinct_pids(g, 8), 1);
	got_free(g, 8);
	pgpool_stats_get(p, &st);
	ck_assert_uint_eq(st.connects, 1);
	ck_assert_uint_eq(st.connected, 1);
	pgpool_close(p);
}
END_TEST

START_TEST(test_queue_bound)
{
	struct pgpool_config cfg = { .size = 2, .max_queue = 1 };
	struct pgpool *p = open_pool(&cfg);
	struct pgpool_stats st;
	struct got g[5];
	struct pg_calls m = PG_CALLS(g, 4);

	/* Each connection: one running, one waiting. */
	memset(g, 0, sizeof(g));
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(pgpool_query(p, "SELECT pg_backend_pid(), pg_sleep(0.1)", 0, NULL,
					      0, on_answer, &g[i]), 0);
	ck_assert_int_eq(pgpool_query(p, "SELECT 1", 0, NULL, 0, on_answer, &g[4]), -EAGAIN);
	ck_assert_int_eq(pgpool_query(p, "SELECT 1", 0, NULL, 0, on_answer, &g[4]), -EAGAIN);
	pgpool_stats_get(p, &st);
	ck_assert_uint_eq(st.rejected, 2);
	ck_assert_uint_eq(st.queries, 4);
	ck_assert_uint_eq(st.queued, 4);
	ck_assert(run_until(pg_all_called, &m, DEADLINE_MS));
	ck_assert_int_eq(distinct_pids(g, 4), 2);
	ck_assert_int_eq(g[4].calls, 0);
	got_free(g, 4);
	/* Room again. */
	query_json(p, &g[4], "SELECT 1", 0, NULL);
	got_free(&g[4], 1);
	pgpool_close(p);
}
END_TEST

START_TEST(test_params_json)
{
	static const char *const tricky = "it's \"quoted\"; DROP TABLE x; -- \\ $1 \t\n\x01";
	static const char *const uni =
		"h\xc3\xa9llo \xe2\x98\x83 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80";
	struct pgpool_config cfg = { .size = 2 };
	struct pgpool *p = open_pool(&cfg);
	size_t big_len = 1u << 20;
	char *big = malloc(big_len + 1);
	const char *params[4];
	struct got g;
	json_t *j;

	ck_assert_ptr_nonnull(big);
	for (size_t i = 0; i < big_len; i += 8)
		memcpy(big + i, "ab'\"\\c\xc3\xa9", 8);    /* 2^20 is a multiple of 8 */
	big[big_len] = '\0';

	params[0] = tricky;
	params[1] = NULL;
	params[2] = uni;
	params[3] = big;
	j = query_json(p, &g, "SELECT $1::text, $2::text, $2::text IS NULL, $3::text, $4::text,"
		       " octet_length($4::text)", 4, params);
	ck_assert_str_eq(json_string_value(cell(j, 0, 0)), tricky);
	ck_assert(json_is_null(cell(j, 0, 1)));
	ck_assert(json_is_true(cell(j, 0, 2)));
	ck_assert_str_eq(json_string_value(cell(j, 0, 3)), uni);
	ck_assert_str_eq(json_string_value(cell(j, 0, 4)), big);
	ck_assert(json_integer_value(cell(j, 0, 5)) == (json_int_t)big_len);
	ck_assert_str_eq(json_string_value(json_object_get(j, "command")), "SELECT 1");
	ck_assert(json_integer_value(json_object_get(j, "rows_affected")) == 1);
	got_free(&g, 1);

	/* Real type OIDs are named as sqlresult.h says. */
	j = query_json(p, &g, "SELECT true, 1::int2, 2::int4, 3::int8, 4::oid, 1.5::float4,"
		       " 2.5::float8, 'NaN'::float8, 1.10::numeric, '{\"a\": 1}'::json,"
		       " '{\"b\": [2]}'::jsonb, 'x'::text, 'y'::varchar, 'z'::char(2),"
		       " '2026-01-02'::date, '2026-01-02 03:04:05'::timestamp,"
		       " '2026-01-02 03:04:05+00'::timestamptz,"
		       " 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, '\\x01ff'::bytea,"
		       " point(1, 2)", 0, NULL);
	{
		static const char *const types[] = {
			"bool", "int2", "int4", "int8", "oid", "float4", "float8", "float8",
			"numeric", "json", "jsonb", "text", "varchar", "bpchar", "date",
			"timestamp", "timestamptz", "uuid", "bytea", "oid:600",
		};

		for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
			ck_assert_msg(!strcmp(col_type(j, i), types[i]), "column %zu: %s, want %s",
				      i, col_type(j, i), types[i]);
	}
	ck_assert(json_is_true(cell(j, 0, 0)));
	ck_assert(json_integer_value(cell(j, 0, 3)) == 3);
	ck_assert(json_real_value(cell(j, 0, 6)) == 2.5);
	ck_assert_str_eq(json_string_value(cell(j, 0, 7)), "NaN");
	ck_assert_str_eq(json_string_value(cell(j, 0, 8)), "1.10");
	ck_assert(json_integer_value(json_object_get(cell(j, 0, 9), "a")) == 1);
	ck_assert(json_integer_value(json_array_get(json_object_get(cell(j, 0, 10), "b"), 0)) == 2);
	ck_assert_str_eq(json_string_value(cell(j, 0, 13)), "z ");
	ck_assert_str_eq(json_string_value(cell(j, 0, 18)), "\\x01ff");
	ck_assert_str_eq(json_string_value(cell(j, 0, 19)), "(1,2)");
	got_free(&g, 1);
	free(big);
	pgpool_close(p);
}
END_TEST

static void expect_command(json_t *j, const char *tag, long long affected)
{
	json_t *a = json_object_get(j, "rows_affected");

	ck_assert_str_eq(json_string_value(json_object_get(j, "command")), tag);
	if (affected < 0)
		ck_assert_msg(json_is_null(a), "%s: rows_affected not null", tag);
	else
		ck_assert_msg(json_is_integer(a) && json_integer_value(a) == affected,
			      "%s: rows_affected", tag);
}

START_TEST(test_rows_affected)
{
	struct pgpool_config cfg = { .size = 3 };
	struct pgpool *p = open_pool(&cfg);
	char table[64], sql[256];
	const char *params[2];
	struct pgpool_stats st;
	struct got g;
	json_t *j;

	/* A real table (not TEMP): the statements may run on different
	 * connections. */
	snprintf(table, sizeof(table), "meridian_pool_test_%d", (int)getpid());
	snprintf(sql, sizeof(sql), "DROP TABLE IF EXISTS %s", table);
	query_json(p, &g, sql, 0, NULL);
	got_free(&g, 1);
	snprintf(sql, sizeof(sql), "CREATE TABLE %s (id int PRIMARY KEY, name text)", table);
	j = query_json(p, &g, sql, 0, NULL);
	expect_command(j, "CREATE TABLE", -1);
	ck_assert_uint_eq(json_array_size(json_object_get(j, "columns")), 0);
	got_free(&g, 1);

	snprintf(sql, sizeof(sql), "INSERT INTO %s VALUES (1, $1), (2, $2), (3, NULL)", table);
	params[0] = "ann";
	params[1] = "bob";
	j = query_json(p, &g, sql, 2, params);
	expect_command(j, "INSERT 0 3", 3);
	got_free(&g, 1);

	snprintf(sql, sizeof(sql), "UPDATE %s SET name = $1 WHERE id <= $2", table);
	params[0] = "o'neil";
	params[1] = "2";
	j = query_json(p, &g, sql, 2, params);
	expect_command(j, "UPDATE 2", 2);
	got_free(&g, 1);

	snprintf(sql, sizeof(sql), "INSERT INTO %s VALUES (4, 'x') RETURNING id", table);
	j = query_json(p, &g, sql, 0, NULL);
	expect_command(j, "INSERT 0 1", 1);
	ck_assert(json_integer_value(cell(j, 0, 0)) == 4);
	got_free(&g, 1);

	snprintf(sql, sizeof(sql), "SELECT id, name FROM %s ORDER BY id", table);
	j = query_json(p, &g, sql, 0, NULL);
	expect_command(j, "SELECT 4", 4);
	ck_assert_str_eq(json_string_value(cell(j, 1, 1)), "o'neil");
	ck_assert(json_is_null(cell(j, 2, 1)));
	got_free(&g, 1);

	/* A server error passes through with its SQLSTATE. */
	snprintf(sql, sizeof(sql), "INSERT INTO %s VALUES (1, 'dup')", table);
	query(p, &g, sql, 0, NULL, 0);
	ck_assert_int_eq(g.status, -EREMOTEIO);
	ck_assert_str_eq(g.sqlstate, "23505");
	ck_assert_msg(strstr(g.error, "SQLSTATE 23505") && strstr(g.error, "duplicate key"),
		      "error: %s", g.error);
	pgpool_stats_get(p, &st);
	ck_assert_uint_eq(st.failures, 1);
	ck_assert_msg(strstr(st.last_error, "23505"), "last_error: %s", st.last_error);

	snprintf(sql, sizeof(sql), "DELETE FROM %s", table);
	j = query_json(p, &g, sql, 0, NULL);
	expect_command(j, "DELETE 4", 4);
	got_free(&g, 1);
	snprintf(sql, sizeof(sql), "DROP TABLE %s", table);
	j = query_json(p, &g, sql, 0, NULL);
	expect_command(j, "DROP TABLE", -1);
	got_free(&g, 1);
	pgpool_close(p);
}
END_TEST

START_TEST(test_errors_and_timeouts)
{
	struct pgpool_config cfg = { .size = 2, .statement_timeout_ms = 3000 };
	struct pgpool *p = open_pool(&cfg);
	struct pgpool_stats st;
	struct got g;

	query(p, &g, "SELECT 1/0", 0, NULL, 0);
	ck_assert_int_eq(g.status, -EREMOTEIO);
	ck_assert_str_eq(g.sqlstate, "22012");
	ck_assert_msg(strstr(g.error, "division by zero"), "error: %s", g.error);

	query(p, &g, "SELECT pg_sleep(5)", 0, NULL, 200);
	ck_assert_int_eq(g.status, -ETIMEDOUT);
	pgpool_stats_get(p, &st);
	ck_assert_uint_eq(st.failures, 2);
	ck_assert_uint_eq(st.timeouts, 1);
	ck_assert_msg(strstr(st.last_error, "timed out"), "last_error: %s", st.last_error);

	/* Server-side statement_timeout reaches every connection. */
	query_json(p, &g, "SHOW statement_timeout", 0, NULL);
	ck_assert_str_eq(json_string_value(cell(g.json, 0, 0)), "3s");
	got_free(&g, 1);
	pgpool_close(p);

	/* A write on a read-only session (as a write sent as a read to a
	 * replica gets): Postgres's own error.  One connection, so the SET
	 * and the write share the session. */
	cfg.size = 1;
	p = open_pool(&cfg);
	query_json(p, &g, "SET default_transaction_read_only = on", 0, NULL);
	got_free(&g, 1);
	query(p, &g, "CREATE TABLE meridian_never (x int)", 0, NULL, 0);
	ck_assert_int_eq(g.status, -EREMOTEIO);
	ck_assert_str_eq(g.sqlstate, "25006");
	ck_assert_msg(strstr(g.error, "read-only transaction"), "error: %s", g.error);
	pgpool_close(p);
}
END_TEST

START_TEST(test_refused)
{
	char url[128];
	struct pgpool_config cfg = { .size = 2 };
	struct pgpool *p;
	struct pgpool_stats st;
	struct got g;
	uint64_t t0;

	snprintf(url, sizeof(url), "postgresql://postgres@127.0.0.1:%d/postgres", test_closed_port());
	cfg.conninfo = url;
	p = open_pool(&cfg);
	t0 = uv_now(&loop);
	query(p, &g, "SELECT 1", 0, NULL, 3000);
	ck_assert_int_eq(g.status, -ENOTCONN);
	ck_assert_msg(uv_now(&loop) - t0 < 1000, "failed after %" PRIu64 " ms", uv_now(&loop) - t0);
	pgpool_stats_get(p, &st);
	ck_assert_uint_eq(st.connected, 0);
	ck_assert_uint_ge(st.connect_failures, 1);
	ck_assert_uint_eq(st.failures, 1);
	ck_assert_msg(strstr(st.last_error, "refused"), "last_error: %s", st.last_error);
	pgpool_close(p);
}
END_TEST

START_TEST(test_close)
{
	struct pgpool_config cfg = { .size = 2 };
	struct pgpool *p = open_pool(&cfg), *q;
	struct got g[6], warm;

	/* Close with queries running and queued: no callback, nothing leaked. */
	query_json(p, &warm, "SELECT 1", 0, NULL);
	got_free(&warm, 1);
	memset(g, 0, sizeof(g));
	for (int i = 0; i < 6; i++)
		ck_assert_int_eq(pgpool_query(p, "SELECT pg_sleep(0.2)", 0, NULL, 0, on_answer,
					      &g[i]), 0);
	test_run_for(&loop, 50);
	pgpool_close(p);
	pgpool_close(NULL);
	test_run_for(&loop, 400);
	for (int i = 0; i < 6; i++)
		ck_assert_int_eq(g[i].calls, 0);

	/* From inside a callback: the others (queued behind it on the one
	 * connection) never answer. */
	cfg.size = 1;
	q = open_pool(&cfg);
	memset(g, 0, sizeof(g));
	g[0].close_me = q;
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(pgpool_query(q, "SELECT 1", 0, NULL, 0, on_answer, &g[i]), 0);
	ck_assert(run_until(got_done, &g[0], DEADLINE_MS));
	test_run_for(&loop, 200);
	ck_assert_int_eq(g[0].calls, 1);
	for (int i = 1; i < 4; i++)
		ck_assert_msg(g[i].calls == 0, "query %d answered after close", i);
	got_free(g, 4);
}
END_TEST

START_TEST(test_bad_config)
{
	struct pgpool_config cfg = { .conninfo = NULL };
	char err[PGCONN_ERROR_MAX];
	struct pgpool *p;
	struct got g;

	ck_assert_ptr_null(pgpool_new(&loop, &cfg, err, sizeof(err)));
	ck_assert_msg(*err, "no error text");
	cfg.conninfo = "host=127.0.0.1 bogus_key=1";
	ck_assert_ptr_null(pgpool_new(&loop, &cfg, err, sizeof(err)));
	ck_assert_msg(strstr(err, "bogus_key"), "err: %s", err);
	cfg.conninfo = pg_test_url();
	cfg.size = PGPOOL_MAX_SIZE + 1;
	ck_assert_ptr_null(pgpool_new(&loop, &cfg, err, sizeof(err)));
	ck_assert_msg(strstr(err, "size"), "err: %s", err);
	cfg.size = 1;
	cfg.max_queue = PGCONN_MAX_QUEUE + 1;
	ck_assert_ptr_null(pgpool_new(&loop, &cfg, NULL, 0));
	cfg.max_queue = 0;
	ck_assert_ptr_null(pgpool_new(NULL, &cfg, err, sizeof(err)));

	p = open_pool(&cfg);
	ck_assert_int_eq(pgpool_query(p, NULL, 0, NULL, 0, on_answer, &g), -EINVAL);
	ck_assert_int_eq(pgpool_query(p, "SELECT 1", 0, NULL, 0, NULL, &g), -EINVAL);
	ck_assert_int_eq(pgpool_query(p, "SELECT 1", 1, NULL, 0, on_answer, &g), -EINVAL);
	ck_assert_int_eq(pgpool_query(NULL, "SELECT 1", 0, NULL, 0, on_answer, &g), -EINVAL);
	pgpool_close(p);
}
END_TEST

static Suite *pool_suite(void)
{
	Suite *s = suite_create("pool");
	TCase *tc = tcase_create("pool");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_spread);
	tcase_add_test(tc, test_queue_bound);
	tcase_add_test(tc, test_params_json);
	tcase_add_test(tc, test_rows_affected);
	tcase_add_test(tc, test_errors_and_timeouts);
	tcase_add_test(tc, test_refused);
	tcase_add_test(tc, test_close);
	tcase_add_test(tc, test_bad_config);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return pg_test_main("test_pool", pool_suite);
}
