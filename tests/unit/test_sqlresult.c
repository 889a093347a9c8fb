/*
 * tests/unit/test_sqlresult.c - PGresults as JSON (storage/sqlresult.h),
 * without a server: results are made with PQmakeEmptyPGresult(),
 * PQsetResultAttrs() and PQsetvalue().
 *
 * Covered: every mapped type and the "oid:N" fallback, NULLs of every
 * type, integers at their limits and beyond, non-finite floats, numeric
 * precision, JSON parsed or kept as text, quotes, backslashes, control
 * characters and unicode surviving a dump and reload, a 1 MB value, the
 * size bound exactly at the encoded size and one byte under it (checked
 * for EVERY result this file builds, so the running count is proven to
 * be the compact dump's length), the row named in -EFBIG, invalid UTF-8
 * in values, names and JSON columns, command-only results, bad input.
 * rows_affected and command tags from real results are tested in
 * test_pool.c (PQcmdStatus of a made-up result is empty).
 */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/sqlresult.h"

#define MAX_COLS 32

struct col {
	const char *name;
	Oid type;
};

/* A made-up result: @ncols columns, @nrows rows of @vals (row-major, a
 * NULL pointer is SQL NULL). */
static PGresult *make(const struct col *cols, int ncols, int nrows, const char *const *vals)
{
	PGresAttDesc attrs[MAX_COLS];
	PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);

	ck_assert_ptr_nonnull(res);
	ck_assert_int_le(ncols, MAX_COLS);
	memset(attrs, 0, sizeof(attrs));
	for (int i = 0; i < ncols; i++) {
		attrs[i].name = (char *)cols[i].name;
		attrs[i].typid = cols[i].type;
		attrs[i].typlen = -1;
		attrs[i].atttypmod = -1;
	}
	ck_assert_int_eq(PQsetResultAttrs(res, ncols, attrs), 1);
	for (int r = 0; r < nrows; r++)
		for (int c = 0; c < ncols; c++) {
			const char *v = vals[r * ncols + c];

			ck_assert_int_eq(PQsetvalue(res, r, c, (char *)v,
						    v ? (int)strlen(v) : -1), 1);
		}
	return res;
}

/*
 * Converts @res without a bound, then proves the size accounting: the
 * compact dump is L bytes; max_bytes L succeeds and L - 1 fails with
 * -EFBIG.  Returns the JSON (caller decrefs).
 */
static json_t *convert(const PGresult *res)
{
	char err[256];
	json_t *j = NULL, *k = NULL;
	char *text;
	size_t len;
	int rc;

	rc = sqlresult_json(res, SIZE_MAX, &j, err, sizeof(err));
	ck_assert_msg(rc == 0, "sqlresult_json: %d %s", rc, err);
	ck_assert_ptr_nonnull(j);
	ck_assert_str_eq(err, "");
	text = json_dumps(j, SQLRESULT_DUMP_FLAGS);
	ck_assert_ptr_nonnull(text);
	len = strlen(text);
	rc = sqlresult_json(res, len, &k, err, sizeof(err));
	ck_assert_msg(rc == 0, "at exactly %zu bytes: %d %s", len, rc, err);
	json_decref(k);
	k = (json_t *)1;
	rc = sqlresult_json(res, len - 1, &k, err, sizeof(err));
	ck_assert_msg(rc == -EFBIG, "at %zu - 1 bytes: %d (counted size is not the dump's)",
		      len, rc);
	ck_assert_ptr_null(k);
	ck_assert_msg(strstr(err, "result larger than"), "err: %s", err);
	free(text);
	return j;
}

static json_t *cell(json_t *j, size_t row, size_t col)
{
	json_t *v = json_array_get(json_array_get(json_object_get(j, "rows"), row), col);

	ck_assert_ptr_nonnull(v);
	return v;
}

static void expect_str(json_t *v, const char *want)
{
	ck_assert_msg(json_is_string(v), "not a string (want %s)", want);
	ck_assert_str_eq(json_string_value(v), want);
}

static void expect_int(json_t *v, json_int_t want)
{
	ck_assert(json_is_integer(v));
	ck_assert(json_integer_value(v) == want);
}

static void expect_type(json_t *j, size_t col, const char *name, const char *type)
{
	json_t *c = json_array_get(json_object_get(j, "columns"), col);

	ck_assert_ptr_nonnull(c);
	ck_assert_str_eq(json_string_value(json_object_get(c, "name")), name);
	ck_assert_str_eq(json_string_value(json_object_get(c, "type")), type);
}

START_TEST(test_types)
{
	static const struct col cols[] = {
		{ "b1", 16 }, { "b2", 16 }, { "i2", 21 }, { "i4", 23 }, { "i8max", 20 },
		{ "i8min", 20 }, { "oid", 26 }, { "f4", 700 }, { "f8", 701 }, { "nan", 701 },
		{ "inf", 701 }, { "ninf", 700 }, { "num", 1700 }, { "js", 114 }, { "jsb", 3802 },
		{ "jsbad", 114 }, { "jsstr", 3802 }, { "jsbig", 3802 }, { "t", 25 },
		{ "vc", 1043 }, { "bp", 1042 }, { "d", 1082 }, { "ts", 1114 }, { "tstz", 1184 },
		{ "u", 2950 }, { "by", 17 }, { "pt", 600 }, { "i8big", 20 }, { "i4bad", 23 },
		{ "bbad", 16 }, { "zero", 701 },
	};
	static const char *const vals[] = {
		"t", "f", "-32768", "2147483647", "9223372036854775807",
		"-9223372036854775808", "4294967295", "1.5", "-2.25e-300", "NaN",
		"Infinity", "-Infinity", "12345678901234567890.123456789",
		"{\"a\": [1, 2.5, \"x\"], \"b\": null}", "[true, {\"k\": \"v\"}]",
		"{\"a\":", "\"str\"", "123456789012345678901234567890", "plain text",
		"varchar", "ab  ", "2026-11-22", "2026-11-22 01:02:03.456",
		"2026-11-22 01:02:03.456+00", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "\\x0102ff",
		"(1,2)", "99999999999999999999", "12abc", "yes", "0",
	};
	static const char *const types[] = {
		"bool", "bool", "int2", "int4", "int8", "int8", "oid", "float4", "float8", "float8",
		"float8", "float4", "numeric", "json", "jsonb", "json", "jsonb", "jsonb", "text",
		"varchar", "bpchar", "date", "timestamp", "timestamptz", "uuid", "bytea", "oid:600",
		"int8", "int4", "bool", "float8",
	};
	int n = (int)(sizeof(cols) / sizeof(cols[0]));
	PGresult *res;
	json_t *j, *v;
	char *dump;

	ck_assert_int_eq(n, (int)(sizeof(vals) / sizeof(vals[0])));
	res = make(cols, n, 1, vals);
	j = convert(res);
	for (int i = 0; i < n; i++)
		expect_type(j, (size_t)i, cols[i].name, types[i]);
	ck_assert(json_is_true(cell(j, 0, 0)));
	ck_assert(json_is_false(cell(j, 0, 1)));
	expect_int(cell(j, 0, 2), -32768);
	expect_int(cell(j, 0, 3), 2147483647);
	expect_int(cell(j, 0, 4), INT64_MAX);
	expect_int(cell(j, 0, 5), INT64_MIN);
	expect_int(cell(j, 0, 6), 4294967295LL);
	ck_assert(json_is_real(cell(j, 0, 7)));
	ck_assert(json_real_value(cell(j, 0, 7)) == 1.5);
	ck_assert(json_real_value(cell(j, 0, 8)) == -2.25e-300);
	expect_str(cell(j, 0, 9), "NaN");
	expect_str(cell(j, 0, 10), "Infinity");
	expect_str(cell(j, 0, 11), "-Infinity");
	expect_str(cell(j, 0, 12), "12345678901234567890.123456789");
	v = cell(j, 0, 13);
	ck_assert(json_is_object(v));
	ck_assert(json_is_null(json_object_get(v, "b")));
	ck_assert(json_real_value(json_array_get(json_object_get(v, "a"), 1)) == 2.5);
	v = cell(j, 0, 14);
	ck_assert(json_is_array(v));
	ck_assert(json_is_true(json_array_get(v, 0)));
	expect_str(cell(j, 0, 15), "{\"a\":");              /* does not parse: text */
	expect_str(cell(j, 0, 16), "str");                  /* a JSON scalar */
	expect_str(cell(j, 0, 17), "123456789012345678901234567890");
	expect_str(cell(j, 0, 18), "plain text");
	expect_str(cell(j, 0, 19), "varchar");
	expect_str(cell(j, 0, 20), "ab  ");
	expect_str(cell(j, 0, 21), "2026-11-22");
	expect_str(cell(j, 0, 23), "2026-11-22 01:02:03.456+00");
	expect_str(cell(j, 0, 24), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
	expect_str(cell(j, 0, 25), "\\x0102ff");
	expect_str(cell(j, 0, 26), "(1,2)");
	expect_str(cell(j, 0, 27), "99999999999999999999");   /* beyond json_int_t */
	expect_str(cell(j, 0, 28), "12abc");
	expect_str(cell(j, 0, 29), "yes");
	ck_assert(json_is_real(cell(j, 0, 30)));
	ck_assert(json_is_null(json_object_get(j, "rows_affected")));
	expect_str(json_object_get(j, "command"), "");
	/* Key order as documented. */
	dump = json_dumps(j, SQLRESULT_DUMP_FLAGS);
	ck_assert(strncmp(dump, "{\"columns\":[{\"name\":\"b1\",\"type\":\"bool\"}", 39) == 0);
	ck_assert_ptr_nonnull(strstr(dump, "],\"rows\":[[true,false,-32768,"));
	ck_assert_ptr_nonnull(strstr(dump, "]],\"command\":\"\",\"rows_affected\":null}"));
	free(dump);
	json_decref(j);
	PQclear(res);
}
END_TEST

START_TEST(test_nulls)
{
	static const Oid oids[] = { 16, 17, 20, 21, 23, 25, 26, 114, 700, 701, 1042, 1043, 1082,
				    1114, 1184, 1700, 2950, 3802, 600 };
	struct col cols[MAX_COLS];
	const char *vals[2 * MAX_COLS];
	int n = (int)(sizeof(oids) / sizeof(oids[0]));
	char names[MAX_COLS][8];
	PGresult *res;
	json_t *j;

	for (int i = 0; i < n; i++) {
		snprintf(names[i], sizeof(names[i]), "c%d", i);
		cols[i] = (struct col){ names[i], oids[i] };
		vals[i] = NULL;
		vals[n + i] = NULL;
	}
	res = make(cols, n, 2, vals);
	j = convert(res);
	ck_assert_uint_eq(json_array_size(json_object_get(j, "rows")), 2);
	for (int r = 0; r < 2; r++)
		for (int i = 0; i < n; i++)
			ck_assert_msg(json_is_null(cell(j, (size_t)r, (size_t)i)), "oid %u",
				      (unsigned)oids[i]);
	json_decref(j);
	PQclear(res);
}
END_TEST

START_TEST(test_text_escapes)
{
	static const char *const texts[] = {
		"it's \"quoted\" \\ back\\slash / slash",
		"tab\tnewline\ncr\rbs\bff\f",
		"\x01\x02\x1f\x7f del and controls",
		"h\xc3\xa9llo \xe2\x98\x83 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80",
		"\xf4\x8f\xbf\xbf \xef\xbf\xbf \xed\x9f\xbf \xc2\x80 \xe0\xa0\x80 \xf0\x90\x80\x80",
		"",
		"\xe2\x80\xa8 line and paragraph separators \xe2\x80\xa9",
	};
	static const struct col cols[] = { { "s", 25 }, { "\"odd\" name \xc3\xa9", 1043 } };
	int n = (int)(sizeof(texts) / sizeof(texts[0]));
	const char *vals[32];
	PGresult *res;
	json_t *j, *back;
	char *dump;

	for (int i = 0; i < n; i++) {
		vals[2 * i] = texts[i];
		vals[2 * i + 1] = texts[n - 1 - i];
	}
	res = make(cols, 2, n, vals);
	j = convert(res);
	expect_type(j, 1, "\"odd\" name \xc3\xa9", "varchar");
	dump = json_dumps(j, SQLRESULT_DUMP_FLAGS);
	back = json_loads(dump, 0, NULL);
	ck_assert_ptr_nonnull(back);
	for (int i = 0; i < n; i++) {
		expect_str(cell(back, (size_t)i, 0), texts[i]);
		expect_str(cell(back, (size_t)i, 1), texts[n - 1 - i]);
	}
	ck_assert(json_equal(j, back));
	json_decref(back);
	free(dump);
	json_decref(j);
	PQclear(res);
}
END_TEST

START_TEST(test_big_value)
{
	static const struct col cols[] = { { "big", 25 }, { "n", 23 } };
	size_t size = 1u << 20;
	char *big = malloc(size + 1);
	const char *vals[2];
	PGresult *res;
	json_t *j;

	/* Mixed: ASCII, quotes, a control character, 2- and 3-byte UTF-8. */
	for (size_t i = 0; i < size;) {
		static const char piece[] = "abc\"\\\x01\xc3\xa9\xe2\x98\x83xyz";
		size_t n = sizeof(piece) - 1;

		if (i + n > size) {
			memset(big + i, 'z', size - i);
			break;
		}
		memcpy(big + i, piece, n);
		i += n;
	}
	big[size] = '\0';
	vals[0] = big;
	vals[1] = "7";
	res = make(cols, 2, 1, vals);
	j = convert(res);
	expect_str(cell(j, 0, 0), big);
	expect_int(cell(j, 0, 1), 7);
	json_decref(j);
	PQclear(res);
	free(big);
}
END_TEST

/* Rows of equal size: the -EFBIG message names the row that passed. */
START_TEST(test_bound_names_row)
{
	static const struct col cols[] = { { "id", 23 }, { "name", 25 } };
	const char *vals[20];
	char ids[10][4], err[256];
	size_t len[11];
	PGresult *res;
	json_t *j;
	int rc;

	for (int r = 0; r < 10; r++) {
		snprintf(ids[r], sizeof(ids[r]), "%d", r);
		vals[2 * r] = ids[r];
		vals[2 * r + 1] = "0123456789";
	}
	/* len[k]: the encoded size with k rows. */
	for (int k = 0; k <= 10; k++) {
		char *d;

		res = make(cols, 2, k, vals);
		j = convert(res);
		d = json_dumps(j, SQLRESULT_DUMP_FLAGS);
		len[k] = strlen(d);
		free(d);
		json_decref(j);
		if (k < 10)
			PQclear(res);
	}
	/* Room for 6 rows and a bit: fails while adding row 6 (from 0). */
	rc = sqlresult_json(res, len[6] + 5, &j, err, sizeof(err));
	ck_assert_int_eq(rc, -EFBIG);
	ck_assert_ptr_null(j);
	ck_assert_msg(strstr(err, "result larger than") && strstr(err, "at row 6"), "err: %s", err);
	snprintf(ids[0], sizeof(ids[0]), "%zu", len[6] + 5);
	ck_assert_msg(strstr(err, ids[0]), "err: %s", err);
	/* Not even the column list. */
	rc = sqlresult_json(res, 20, &j, err, sizeof(err));
	ck_assert_int_eq(rc, -EFBIG);
	ck_assert_msg(strstr(err, "column list"), "err: %s", err);
	/* 0: the default bound. */
	rc = sqlresult_json(res, 0, &j, err, sizeof(err));
	ck_assert_int_eq(rc, 0);
	json_decref(j);
	PQclear(res);
}
END_TEST

START_TEST(test_invalid_utf8)
{
	static const char *const bad[] = {
		"\xff", "ab\xc3", "\xc0\xaf", "\xc1\xbf", "\xe0\x80\xaf", "\xed\xa0\x80",
		"\xf4\x90\x80\x80", "\x80", "ok\xe2\x98", "\xf8\x88\x80\x80\x80",
		"\xf0\x8f\xbf\xbf",
		"\xe2\x28\xa1",
	};
	static const Oid oids[] = { 25, 1043, 114, 3802, 16, 23, 701 };
	char err[256];
	json_t *j;

	for (size_t o = 0; o < sizeof(oids) / sizeof(oids[0]); o++)
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			struct col cols[] = { { "fine", 25 }, { "bad col", oids[o] } };
			const char *vals[] = { "x", "y", "z", bad[i] };
			PGresult *res = make(cols, 2, 2, vals);
			int rc;

			j = (json_t *)1;
			rc = sqlresult_json(res, 0, &j, err, sizeof(err));
			ck_assert_msg(rc == -EILSEQ, "oid %u, bad[%zu]: %d", (unsigned)oids[o], i,
				      rc);
			ck_assert_ptr_null(j);
			ck_assert_msg(strstr(err, "\"bad col\"") && strstr(err, "row 1") &&
				      strstr(err, "UTF-8"), "err: %s", err);
			PQclear(res);
		}

	/* A column name. */
	{
		struct col cols[] = { { "n\xff", 25 } };
		const char *vals[] = { "x" };
		PGresult *res = make(cols, 1, 1, vals);

		ck_assert_int_eq(sqlresult_json(res, 0, &j, err, sizeof(err)), -EILSEQ);
		ck_assert_msg(strstr(err, "column 0"), "err: %s", err);
		PQclear(res);
	}
}
END_TEST

START_TEST(test_command_only)
{
	PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_COMMAND_OK);
	json_t *j;
	char *dump;

	j = convert(res);
	dump = json_dumps(j, SQLRESULT_DUMP_FLAGS);
	ck_assert_str_eq(dump,
			 "{\"columns\":[],\"rows\":[],\"command\":\"\",\"rows_affected\":null}");
	free(dump);
	json_decref(j);
	PQclear(res);

	/* Columns but no rows. */
	{
		static const struct col cols[] = { { "a", 23 } };

		res = make(cols, 1, 0, NULL);
		j = convert(res);
		ck_assert_uint_eq(json_array_size(json_object_get(j, "rows")), 0);
		expect_type(j, 0, "a", "int4");
		json_decref(j);
		PQclear(res);
	}
}
END_TEST

START_TEST(test_bad_input)
{
	char err[256], tiny[8];
	json_t *j = (json_t *)1;
	PGresult *res;
	PGresAttDesc attr = { .name = (char *)"bin", .format = 1, .typid = 17, .typlen = -1 };

	ck_assert_int_eq(sqlresult_json(NULL, 0, &j, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_null(j);
	ck_assert_msg(*err, "no error text");
	ck_assert_int_eq(sqlresult_json(NULL, 0, NULL, NULL, 0), -EINVAL);

	res = PQmakeEmptyPGresult(NULL, PGRES_FATAL_ERROR);
	ck_assert_int_eq(sqlresult_json(res, 0, &j, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "PGRES_FATAL_ERROR"), "err: %s", err);
	ck_assert_int_eq(sqlresult_json(res, 0, &j, NULL, 0), -EINVAL);
	ck_assert_int_eq(sqlresult_json(res, 0, &j, tiny, sizeof(tiny)), -EINVAL);
	ck_assert_uint_eq(strlen(tiny), sizeof(tiny) - 1);
	PQclear(res);

	res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
	ck_assert_int_eq(PQsetResultAttrs(res, 1, &attr), 1);
	ck_assert_int_eq(sqlresult_json(res, 0, &j, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "binary"), "err: %s", err);
	PQclear(res);
}
END_TEST

static Suite *sqlresult_suite(void)
{
	Suite *s = suite_create("sqlresult");
	TCase *tc = tcase_create("sqlresult");

	tcase_add_test(tc, test_types);
	tcase_add_test(tc, test_nulls);
	tcase_add_test(tc, test_text_escapes);
	tcase_add_test(tc, test_big_value);
	tcase_add_test(tc, test_bound_names_row);
	tcase_add_test(tc, test_invalid_utf8);
	tcase_add_test(tc, test_command_only);
	tcase_add_test(tc, test_bad_input);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(sqlresult_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
