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
 * The loop: tests/unit/uv_testutil.h (test_loop_open(), test_run_until(),
 * test_loop_close(), test_closed_port()), which nothing here is specific
 * to PostgreSQL.
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
#include "tests/unit/uv_testutil.h"

#include <uv.h>

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

/* Several answers awaited at once: @n records, @stride bytes apart, each
 * with an int counter of calls at @first (the first record's).  Made
 * with PG_CALLS() from an array of records with a `calls` field. */
struct pg_calls {
	const char *first;
	size_t stride;
	int n;
};

#define PG_CALLS(arr, count) { (const char *)&(arr)[0].calls, sizeof((arr)[0]), (count) }

/* For test_run_until(): true once every record of @ctx (a struct
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

/* A socket on 127.0.0.1 that listens but never accepts: the kernel
 * completes the handshake and nothing ever answers.  *@port set; the
 * caller closes the socket. */
static inline int pg_mute_listener(int *port)
{
	int fd = test_bound_socket(port);

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
