/*
 * tests/unit/test_lib.c - lib/: backoff, address parsing, clock formatting.
 */
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "lib/addr.h"
#include "lib/backoff.h"
#include "lib/bytebuf.h"
#include "lib/clock.h"

START_TEST(backoff_doubles_within_jitter_and_caps)
{
	struct backoff b;
	uint32_t nominal = 1000;

	backoff_init(&b, 1000, 30000);
	for (int i = 0; i < 40; i++) {
		uint32_t lo = backoff_next(&b, 0);
		b.attempt--;  /* same attempt again, other end of the jitter */
		uint32_t hi = backoff_next(&b, nominal / 2);
		ck_assert_uint_eq(lo, nominal - nominal / 2);
		ck_assert_uint_eq(hi, nominal);
		nominal = nominal * 2 > 30000 ? 30000 : nominal * 2;
	}
}
END_TEST

START_TEST(backoff_reset_starts_over)
{
	struct backoff b;

	backoff_init(&b, 200, 5000);
	for (int i = 0; i < 10; i++)
		backoff_next(&b, 12345);
	backoff_reset(&b);
	uint32_t d = backoff_next(&b, 7);
	ck_assert_uint_ge(d, 100);
	ck_assert_uint_le(d, 200);
}
END_TEST

START_TEST(backoff_survives_many_failures)
{
	struct backoff b;

	backoff_init(&b, 1, UINT32_MAX);
	for (int i = 0; i < 100000; i++)
		ck_assert_uint_le(backoff_next(&b, (uint32_t)i * 2654435761u), UINT32_MAX);
}
END_TEST

START_TEST(addr_round_trips)
{
	static const char *ok[] = { "127.0.0.1:7600", "0.0.0.0:0", "[::1]:7601",
				    "[fe80::1]:65535" };
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct sockaddr_storage ss;
		char back[64];
		ck_assert_int_eq(addr_parse(ok[i], &ss, NULL, 0), 0);
		ck_assert_int_eq(addr_format((struct sockaddr *)&ss, back, sizeof(back)), 0);
		ck_assert_str_eq(back, ok[i]);
	}
}
END_TEST

START_TEST(addr_rejects_with_reason)
{
	static const char *bad[] = { "", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536",
				     "127.0.0.1:-1", "localhost:7600", "::1:7600", "[::1]7600",
				     "[]:1", "1.2.3.4:12x", "[::1" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct sockaddr_storage ss;
		char err[128] = "";
		ck_assert_int_eq(addr_parse(bad[i], &ss, err, sizeof(err)), -EINVAL);
		ck_assert_ptr_nonnull(strstr(err, "bad address"));
	}
}
END_TEST

START_TEST(addr_unspecified)
{
	struct sockaddr_storage ss;

	addr_parse("0.0.0.0:7600", &ss, NULL, 0);
	ck_assert(addr_is_unspecified((struct sockaddr *)&ss));
	addr_parse("[::]:7600", &ss, NULL, 0);
	ck_assert(addr_is_unspecified((struct sockaddr *)&ss));
	addr_parse("127.0.0.1:7600", &ss, NULL, 0);
	ck_assert(!addr_is_unspecified((struct sockaddr *)&ss));
}
END_TEST

START_TEST(bytebuf_grows_within_its_bound)
{
	uint8_t *data = NULL;
	size_t len = 0, cap = 0;
	char chunk[100];

	memset(chunk, 'x', sizeof(chunk));
	for (int i = 0; i < 10; i++)
		ck_assert_int_eq(bytebuf_append(&data, &len, &cap, chunk, sizeof(chunk), 1000), 0);
	ck_assert_uint_eq(len, 1000);
	ck_assert_uint_eq(cap, 1000);  /* doubling stops at the bound */
	/* One byte past the bound: refused, buffer unchanged. */
	ck_assert_int_eq(bytebuf_append(&data, &len, &cap, chunk, 1, 1000), -ENOMEM);
	ck_assert_uint_eq(len, 1000);
	ck_assert_int_eq(bytebuf_reserve(&data, len, &cap, 0, 1000), 0);
	ck_assert_int_eq(bytebuf_reserve(&data, 1001, &cap, 0, 1000), -ENOMEM);
	free(data);
}
END_TEST

START_TEST(clock_formats_rfc3339)
{
	char buf[32];

	clock_format_rfc3339(1795299256123ull, buf, sizeof(buf));
	ck_assert_str_eq(buf, "2026-11-21T22:14:16.123Z");
	ck_assert_uint_le(clock_mono_ms(), clock_mono_us() / 1000 + 1);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("lib");
	TCase *tc = tcase_create("lib");

	tcase_add_test(tc, backoff_doubles_within_jitter_and_caps);
	tcase_add_test(tc, backoff_reset_starts_over);
	tcase_add_test(tc, backoff_survives_many_failures);
	tcase_add_test(tc, addr_round_trips);
	tcase_add_test(tc, addr_rejects_with_reason);
	tcase_add_test(tc, addr_unspecified);
	tcase_add_test(tc, bytebuf_grows_within_its_bound);
	tcase_add_test(tc, clock_formats_rfc3339);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
