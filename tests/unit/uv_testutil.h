/*
 * tests/unit/uv_testutil.h - the bounded libuv loop of the unit tests that
 * run real sockets (test_transport.c, test_rpc.c, and through
 * pg_testutil.h the tests against a real PostgreSQL), so that each says
 * once how the loop is run and bounded and how a free port is found.
 *
 * No uv_run() can block: test_loop_open() starts a pulse timer
 * (TEST_PULSE_MS) that makes every UV_RUN_ONCE return, and
 * test_run_until() runs one iteration at a time until a condition holds
 * or a deadline passes.  test_loop_close() closes the pulse, runs what is
 * left for a bounded time and asserts that nothing stayed open.
 *
 * Header-only (static inline): each test binary includes it once.
 */
#ifndef MERIDIAN_TESTS_UV_TESTUTIL_H
#define MERIDIAN_TESTS_UV_TESTUTIL_H

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#define TEST_PULSE_MS 10

static inline void test_pulse_fired(uv_timer_t *h)
{
	(void)h;   /* only there so that UV_RUN_ONCE returns */
}

/* Inits @loop with the pulse @pulse running on it. */
static inline void test_loop_open(uv_loop_t *loop, uv_timer_t *pulse)
{
	ck_assert_int_eq(uv_loop_init(loop), 0);
	uv_timer_init(loop, pulse);
	uv_timer_start(pulse, test_pulse_fired, TEST_PULSE_MS, TEST_PULSE_MS);
}

/* Closes the pulse, runs @loop for @ms at most until nothing is left,
 * and asserts that nothing was.  The caller closed its own handles. */
static inline void test_loop_close(uv_loop_t *loop, uv_timer_t *pulse, uint64_t ms)
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
static inline bool test_run_until(uv_loop_t *loop, bool (*done)(void *ctx), void *ctx,
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

static inline bool test_never(void *ctx)
{
	(void)ctx;
	return false;
}

/* Runs @loop for @ms whatever happens. */
static inline void test_run_for(uv_loop_t *loop, uint64_t ms)
{
	test_run_until(loop, test_never, NULL, ms);
}

/* A socket bound to 127.0.0.1, port chosen by the kernel; *@port set. */
static inline int test_bound_socket(int *port)
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

/* A TCP port on 127.0.0.1 that nothing listens on (bound, then closed). */
static inline int test_closed_port(void)
{
	int port;

	close(test_bound_socket(&port));
	return port;
}

#endif
