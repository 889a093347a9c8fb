/*
 * tests/unit/pg_testutil.h - the fixture code of the unit tests that run
 * against a real PostgreSQL (tests/unit/test_pgconn.c, test_pool.c,
 * test_lease_pg.c, test_replication.c), so that each says once how the
 * server is found, how the loop is run and bounded, and how a failure to
 * find the server fails.
 *
 * The server: MERIDIAN_TEST_PG_URL (and the others test_pgconn.c reads),
 * set by tests/integration/pg_unit.sh, which starts a throwaway server.
 * Without it a test fails loudly, and pg_test_main() fails before any
 * test: the binaries never pass vacuously.
 *
 * The loop: no uv_run() can block.  pg_loop_open() starts a pulse timer
 * (PG_PULSE_MS) that makes every UV_RUN_ONCE return, and pg_run_until()
 * runs one iteration at a time until a condition holds or a deadline
 * passes.  pg_loop_close() closes the pulse, runs what is left for a
 * bounded time and asserts that nothing stayed open.
 *
 * Header-only (static inline), like proto_testutil.h: each test binary
 * includes it once.
 */
#ifndef MERIDIAN_TESTS_PG_TESTUTIL_H
#define MERIDIAN_TESTS_PG_TESTUTIL_H

#include <arpa/inet.h>
#include <check.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/seed_testutil.h"

#include <uv.h>

#define PG_PULSE_MS 10

/* The value of environment variable @name; the test fails without it. */
static inline const char *pg_test_env(const char *name)
{
	const char *v = getenv(name);

	ck_assert_msg(v && *v, "%s is not set: run through tests/integration/pg_unit.sh", name);
	return v;
}

static inline const char *pg_test_url(void)
{
	return pg_test_env("MERIDIAN_TEST_PG_URL");
}

/* MERIDIAN_SEED, or @def; printed for a replay. */
static inline uint64_t pg_test_seed(uint64_t def)
{
	return test_seed("pg", def);
}

static inline void pg_pulse_fired(uv_timer_t *h)
{
	(void)h;
}

/* Inits @loop with the pulse @pulse running on it. */
static inline void pg_loop_open(uv_loop_t *loop, uv_timer_t *pulse)
{
	ck_assert_int_eq(uv_loop_init(loop), 0);
	uv_timer_init(loop, pulse);
	uv_timer_start(pulse, pg_pulse_fired, PG_PULSE_MS, PG_PULSE_MS);
}

/* Closes the pulse, runs @loop for @ms at most until nothing is left,
 * and asserts that nothing was. */
static inline void pg_loop_close(uv_loop_t *loop, uv_timer_t *pulse, uint64_t ms)
{
	uint64_t deadline = uv_hrtime() + ms * 1000000ULL;

	uv_close((uv_handle_t *)pulse, NULL);
	while (uv_loop_alive(loop) && uv_hrtime() < deadline)
		uv_run(loop, UV_RUN_NOWAIT);
	ck_assert_msg(!uv_loop_alive(loop), "handles still open after closing everything");
	ck_assert_int_eq(uv_loop_close(loop), 0);
}

/* Runs @loop one iteration at a time until @done(@ctx) or @ms passed.
 * false when the time ran out. */
static inline bool pg_run_until(uv_loop_t *loop, bool (*done)(void *ctx), void *ctx,
				uint64_t ms)
{
	uint64_t deadline = uv_hrtime() + ms * 1000000ULL;

	while (!done(ctx)) {
		if (uv_hrtime() > deadline)
			return false;
		uv_run(loop, UV_RUN_ONCE);
	}
	return true;
}

static inline bool pg_never(void *ctx)
{
	(void)ctx;
	return false;
}

/* Runs @loop for @ms whatever happens. */
static inline void pg_run_for(uv_loop_t *loop, uint64_t ms)
{
	pg_run_until(loop, pg_never, NULL, ms);
}

/* Several answers awaited at once: @n records, @stride bytes apart, each
 * with an int counter of calls at @first (the first record's).  Made
 * with PG_CALLS() from an array of records with a `calls` field. */
struct pg_calls {
	const char *first;
	size_t stride;
	int n;
};

#define PG_CALLS(arr, count) { (const char *)&(arr)[0].calls, sizeof((arr)[0]), (count) }

/* For pg_run_until(): true once every record of @ctx (a struct
 * pg_calls) was called. */
static inline bool pg_all_called(void *ctx)
{
	const struct pg_calls *m = ctx;

	for (int i = 0; i < m->n; i++) {
		int calls;

		memcpy(&calls, m->first + (size_t)i * m->stride, sizeof(calls));
		if (!calls)
			return false;
	}
	return true;
}

/* A socket bound to 127.0.0.1, port chosen by the kernel; *@port set. */
static inline int pg_bound_socket(int *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	ck_assert_int_ge(fd, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

/* A port on 127.0.0.1 that nothing listens on (bound, then closed). */
static inline int pg_closed_port(void)
{
	int port;

	close(pg_bound_socket(&port));
	return port;
}

/* A socket on 127.0.0.1 that listens but never accepts: the kernel
 * completes the handshake and nothing ever answers.  *@port set; the
 * caller closes the socket. */
static inline int pg_mute_listener(int *port)
{
	int fd = pg_bound_socket(port);

	ck_assert_int_eq(listen(fd, 8), 0);
	return fd;
}

/* main() of a test binary @name: refuses to run without
 * MERIDIAN_TEST_PG_URL, else runs @suite's tests.  The exit status. */
static inline int pg_test_main(const char *name, Suite *(*suite)(void))
{
	const char *url = getenv("MERIDIAN_TEST_PG_URL");
	SRunner *sr;
	int failed;

	if (!url || !*url) {
		fprintf(stderr, "%s: MERIDIAN_TEST_PG_URL is not set; run it through "
			"tests/integration/pg_unit.sh (ctest -L integration -R pg_unit)\n", name);
		return EXIT_FAILURE;
	}
	sr = srunner_create(suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
