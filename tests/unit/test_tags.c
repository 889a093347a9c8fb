/*
 * tests/unit/test_tags.c - gossip/tags: set, replace, sorted order,
 * canonical equality, the count and byte bounds, and bad keys and values.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "gossip/tags.h"

/* Renders @t as "k=v,k=v" into @out (for readable assertions). */
static const char *render(const struct gossip_tags *t, char *out, size_t outlen)
{
	const char *k, *v;
	size_t cursor = 0, used = 0;

	out[0] = '\0';
	for (int i = 0; i <= GOSSIP_TAGS_MAX && gossip_tags_next(t, &cursor, &k, &v); i++) {
		int n = snprintf(out + used, outlen - used, "%s%s=%s", used ? "," : "", k, v);

		ck_assert_int_ge(n, 0);
		ck_assert_uint_lt((size_t)n, outlen - used);
		used += (size_t)n;
	}
	return out;
}

START_TEST(test_set_get)
{
	struct gossip_tags t;
	char buf[600];

	gossip_tags_clear(&t);
	ck_assert_uint_eq(t.count, 0);
	ck_assert_ptr_null(gossip_tags_get(&t, "region"));
	ck_assert_int_eq(gossip_tags_set(&t, "region", "iad"), 0);
	ck_assert_int_eq(gossip_tags_set(&t, "primary_region", "fra"), 0);
	ck_assert_uint_eq(t.count, 2);
	ck_assert_str_eq(gossip_tags_get(&t, "region"), "iad");
	ck_assert_str_eq(gossip_tags_get(&t, "primary_region"), "fra");
	ck_assert_ptr_null(gossip_tags_get(&t, "regio"));
	ck_assert_ptr_null(gossip_tags_get(&t, "regions"));
	ck_assert_str_eq(render(&t, buf, sizeof(buf)), "primary_region=fra,region=iad");
	/* An empty value is a value. */
	ck_assert_int_eq(gossip_tags_set(&t, "empty", ""), 0);
	ck_assert_str_eq(gossip_tags_get(&t, "empty"), "");
	gossip_tags_clear(&t);
	ck_assert_uint_eq(t.count, 0);
	ck_assert_uint_eq(t.len, 0);
	ck_assert_ptr_null(gossip_tags_get(&t, "region"));
}
END_TEST

START_TEST(test_replace)
{
	struct gossip_tags t;
	char buf[600];

	gossip_tags_clear(&t);
	ck_assert_int_eq(gossip_tags_set(&t, "a", "1"), 0);
	ck_assert_int_eq(gossip_tags_set(&t, "b", "22"), 0);
	ck_assert_int_eq(gossip_tags_set(&t, "c", "333"), 0);
	/* Longer, shorter, same length, empty: the neighbours stay intact. */
	ck_assert_int_eq(gossip_tags_set(&t, "b", "a-much-longer-value"), 0);
	ck_assert_str_eq(render(&t, buf, sizeof(buf)), "a=1,b=a-much-longer-value,c=333");
	ck_assert_int_eq(gossip_tags_set(&t, "b", "x"), 0);
	ck_assert_str_eq(render(&t, buf, sizeof(buf)), "a=1,b=x,c=333");
	ck_assert_int_eq(gossip_tags_set(&t, "c", "444"), 0);
	ck_assert_int_eq(gossip_tags_set(&t, "a", ""), 0);
	ck_assert_str_eq(render(&t, buf, sizeof(buf)), "a=,b=x,c=444");
	ck_assert_uint_eq(t.count, 3);
	ck_assert_uint_eq(t.len, strlen("a") + 1 + 0 + 1 + 2 + 2 + 2 + 4);
}
END_TEST

START_TEST(test_sorted_and_equal)
{
	static const char *keys[] = { "zeta", "alpha", "m", "version", "a", "region", "b-1", "b.0" };
	const size_t n = sizeof(keys) / sizeof(keys[0]);
	struct gossip_tags fwd, rev;
	const char *k, *v, *prev = NULL;
	size_t cursor = 0, seen = 0;

	gossip_tags_clear(&fwd);
	gossip_tags_clear(&rev);
	for (size_t i = 0; i < n; i++) {
		ck_assert_int_eq(gossip_tags_set(&fwd, keys[i], keys[i]), 0);
		ck_assert_int_eq(gossip_tags_set(&rev, keys[n - 1 - i], keys[n - 1 - i]), 0);
	}
	while (seen <= n && gossip_tags_next(&fwd, &cursor, &k, &v)) {
		ck_assert_str_eq(k, v);
		if (prev)
			ck_assert_int_lt(strcmp(prev, k), 0);
		prev = k;
		seen++;
	}
	ck_assert_uint_eq(seen, n);
	ck_assert(gossip_tags_equal(&fwd, &rev));
	ck_assert(memcmp(fwd.data, rev.data, fwd.len) == 0);

	ck_assert_int_eq(gossip_tags_set(&rev, "m", "changed"), 0);
	ck_assert(!gossip_tags_equal(&fwd, &rev));
	ck_assert_int_eq(gossip_tags_set(&rev, "m", "m"), 0);
	ck_assert(gossip_tags_equal(&fwd, &rev));
	ck_assert_int_eq(gossip_tags_set(&rev, "extra", ""), 0);
	ck_assert(!gossip_tags_equal(&fwd, &rev));
}
END_TEST

START_TEST(test_count_bound)
{
	struct gossip_tags t, before;
	char key[8];

	gossip_tags_clear(&t);
	for (int i = 0; i < GOSSIP_TAGS_MAX; i++) {
		snprintf(key, sizeof(key), "k%02d", i);
		ck_assert_int_eq(gossip_tags_set(&t, key, "v"), 0);
	}
	ck_assert_uint_eq(t.count, GOSSIP_TAGS_MAX);
	before = t;
	ck_assert_int_eq(gossip_tags_set(&t, "k99", "v"), -ENOSPC);
	ck_assert(gossip_tags_equal(&t, &before));
	/* Replacing an existing key is still allowed at the count bound. */
	ck_assert_int_eq(gossip_tags_set(&t, "k00", "new"), 0);
	ck_assert_str_eq(gossip_tags_get(&t, "k00"), "new");
}
END_TEST

START_TEST(test_byte_bound)
{
	struct gossip_tags t, before;
	char key[GOSSIP_TAG_KEY_MAX + 1], val[GOSSIP_TAG_VALUE_MAX + 1];
	int added = 0;

	memset(val, 'v', GOSSIP_TAG_VALUE_MAX);
	val[GOSSIP_TAG_VALUE_MAX] = '\0';
	gossip_tags_clear(&t);
	/* Each pair: 4 + 1 + 128 + 1 = 134 bytes; the fourth does not fit in 512. */
	for (int i = 0; i < GOSSIP_TAGS_MAX; i++) {
		int r;

		snprintf(key, sizeof(key), "k%03d", i);
		before = t;
		r = gossip_tags_set(&t, key, val);
		if (r == -ENOSPC) {
			ck_assert(gossip_tags_equal(&t, &before));
			break;
		}
		ck_assert_int_eq(r, 0);
		added++;
	}
	ck_assert_int_eq(added, 3);
	ck_assert_uint_le(t.len, GOSSIP_TAGS_BYTES);

	/* Fill to exactly GOSSIP_TAGS_BYTES: 512 - 402 = 110 = 4 + 1 + 104 + 1. */
	memset(val, 'w', 104);
	val[104] = '\0';
	ck_assert_int_eq(gossip_tags_set(&t, "k0xx", val), 0);
	ck_assert_uint_eq(t.len, GOSSIP_TAGS_BYTES);
	ck_assert_int_eq(gossip_tags_set(&t, "z", ""), -ENOSPC);
	/* A replacement that grows past the bound fails and changes nothing. */
	before = t;
	memset(val, 'x', 105);
	val[105] = '\0';
	ck_assert_int_eq(gossip_tags_set(&t, "k0xx", val), -ENOSPC);
	ck_assert(gossip_tags_equal(&t, &before));
	/* One that shrinks succeeds. */
	ck_assert_int_eq(gossip_tags_set(&t, "k0xx", "short"), 0);
	ck_assert_str_eq(gossip_tags_get(&t, "k0xx"), "short");
}
END_TEST

START_TEST(test_key_value_lengths)
{
	struct gossip_tags t;
	char key[GOSSIP_TAG_KEY_MAX + 2], val[GOSSIP_TAG_VALUE_MAX + 2];

	gossip_tags_clear(&t);
	memset(key, 'k', sizeof(key));
	key[GOSSIP_TAG_KEY_MAX] = '\0';
	ck_assert_int_eq(gossip_tags_set(&t, key, "v"), 0);
	key[GOSSIP_TAG_KEY_MAX] = 'k';
	key[GOSSIP_TAG_KEY_MAX + 1] = '\0';
	ck_assert_int_eq(gossip_tags_set(&t, key, "v"), -EINVAL);

	memset(val, 'v', sizeof(val));
	val[GOSSIP_TAG_VALUE_MAX] = '\0';
	ck_assert_int_eq(gossip_tags_set(&t, "v", val), 0);
	val[GOSSIP_TAG_VALUE_MAX] = 'v';
	val[GOSSIP_TAG_VALUE_MAX + 1] = '\0';
	ck_assert_int_eq(gossip_tags_set(&t, "v", val), -EINVAL);
	ck_assert_uint_eq(t.count, 2);
}
END_TEST

START_TEST(test_bad_keys_values)
{
	static const char *bad_keys[] = { "", "Region", "a b", "a/b", "a=b", "ä", "a\tb", "a:b" };
	static const char *bad_values[] = { "a\nb", "tab\there", "\x7f", "\x80", "caf\xc3\xa9" };
	static const char *good_keys[] = { "a", "0", "a_b", "a.b", "a-b", "z9" };
	struct gossip_tags t, before;

	gossip_tags_clear(&t);
	ck_assert_int_eq(gossip_tags_set(&t, "keep", "me"), 0);
	before = t;
	for (size_t i = 0; i < sizeof(bad_keys) / sizeof(bad_keys[0]); i++) {
		ck_assert_msg(gossip_tags_set(&t, bad_keys[i], "v") == -EINVAL, "key %zu", i);
		ck_assert(gossip_tags_equal(&t, &before));
	}
	for (size_t i = 0; i < sizeof(bad_values) / sizeof(bad_values[0]); i++) {
		ck_assert_msg(gossip_tags_set(&t, "k", bad_values[i]) == -EINVAL, "value %zu", i);
		ck_assert(gossip_tags_equal(&t, &before));
	}
	for (size_t i = 0; i < sizeof(good_keys) / sizeof(good_keys[0]); i++)
		ck_assert_int_eq(gossip_tags_set(&t, good_keys[i], "v ~!@#$%^&*()"), 0);
	/* Embedded NULs are refused by the length-taking variant. */
	ck_assert_int_eq(gossip_tags_setn(&t, "a\0b", 3, "v", 1), -EINVAL);
	ck_assert_int_eq(gossip_tags_setn(&t, "ab", 2, "v\0w", 3), -EINVAL);
	ck_assert_int_eq(gossip_tags_setn(&t, "abc", 2, "vwx", 1), 0);
	ck_assert_str_eq(gossip_tags_get(&t, "ab"), "v");
}
END_TEST

START_TEST(test_next_on_corrupt)
{
	struct gossip_tags t;
	const char *k, *v;
	size_t cursor = 0;
	int n = 0;

	/* A buffer without the closing NUL ends the iteration, never overruns. */
	gossip_tags_clear(&t);
	ck_assert_int_eq(gossip_tags_set(&t, "a", "1"), 0);
	ck_assert_int_eq(gossip_tags_set(&t, "b", "2"), 0);
	t.data[t.len - 1] = 'x';
	while (n < 10 && gossip_tags_next(&t, &cursor, &k, &v))
		n++;
	ck_assert_int_eq(n, 1);
	t.len = 60000;  /* past the array: clamped */
	memset(t.data, 'x', sizeof(t.data));
	cursor = 0;
	ck_assert(!gossip_tags_next(&t, &cursor, &k, &v));
	ck_assert_ptr_null(gossip_tags_get(&t, "a"));
}
END_TEST

static Suite *tags_suite(void)
{
	Suite *s = suite_create("tags");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_set_get);
	tcase_add_test(tc, test_replace);
	tcase_add_test(tc, test_sorted_and_equal);
	tcase_add_test(tc, test_count_bound);
	tcase_add_test(tc, test_byte_bound);
	tcase_add_test(tc, test_key_value_lengths);
	tcase_add_test(tc, test_bad_keys_values);
	tcase_add_test(tc, test_next_on_corrupt);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(tags_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
