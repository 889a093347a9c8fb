/*
 * storage/sqlresult.c - a PGresult as JSON (see sqlresult.h for the
 * contract).
 *
 * One pass, in output order: the fixed part (column list, command tag,
 * rows_affected) is measured first, then every row value by value.  Each
 * value's encoded length is known before it is appended: strings are
 * measured by the same scan that checks their UTF-8 (one byte per byte,
 * two for a short escape, six for \u00XX), integers and literals by
 * their digits, reals and parsed JSON by asking jansson for the length of
 * exactly that value (json_dumpb with no buffer).  The running total is
 * therefore the length of the final compact dump, and the build stops the
 * moment it passes the bound, before the value that passed it is added.
 *
 * The UTF-8 check is done here rather than left to json_stringn(), both
 * to name the column in the error and to measure in the same pass; the
 * string is then made with json_stringn_nocheck().
 */
#include "storage/sqlresult.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/utf8.h"

/* Built-in type OIDs (src/include/catalog/pg_type.dat). */
enum {
	OID_BOOL = 16, OID_BYTEA = 17, OID_INT8 = 20, OID_INT2 = 21, OID_INT4 = 23,
	OID_TEXT = 25, OID_OID = 26, OID_JSON = 114, OID_FLOAT4 = 700, OID_FLOAT8 = 701,
	OID_BPCHAR = 1042, OID_VARCHAR = 1043, OID_DATE = 1082, OID_TIMESTAMP = 1114,
	OID_TIMESTAMPTZ = 1184, OID_NUMERIC = 1700, OID_UUID = 2950, OID_JSONB = 3802,
};

static const struct {
	Oid oid;
	const char *name;
} type_names[] = {
	{ OID_BOOL, "bool" },         { OID_BYTEA, "bytea" },
	{ OID_INT8, "int8" },         { OID_INT2, "int2" },
	{ OID_INT4, "int4" },         { OID_TEXT, "text" },
	{ OID_OID, "oid" },           { OID_JSON, "json" },
	{ OID_FLOAT4, "float4" },     { OID_FLOAT8, "float8" },
	{ OID_BPCHAR, "bpchar" },     { OID_VARCHAR, "varchar" },
	{ OID_DATE, "date" },         { OID_TIMESTAMP, "timestamp" },
	{ OID_TIMESTAMPTZ, "timestamptz" }, { OID_NUMERIC, "numeric" },
	{ OID_UUID, "uuid" },         { OID_JSONB, "jsonb" },
};

/* Lengths of the fixed pieces of the compact encoding. */
#define LEN_HEAD 12           /* {"columns":[ */
#define LEN_COL_NAME 8        /* {"name":     */
#define LEN_COL_TYPE 8        /* ,"type":     */
#define LEN_COL_END 1         /* }            */
#define LEN_ROWS 10           /* ],"rows":[   */
#define LEN_COMMAND 12        /* ],"command": */
#define LEN_AFFECTED 17       /* ,"rows_affected": */
#define LEN_TAIL 1            /* }            */

struct build {
	size_t max, size;
	char *err;
	size_t errlen;
};

static void set_err(struct build *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_err(struct build *b, const char *fmt, ...)
{
	va_list ap;

	if (!b->err || !b->errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(b->err, b->errlen, fmt, ap);
	va_end(ap);
}

/* Adds @n to the running size; false once past the bound. */
static bool grow(struct build *b, size_t n)
{
	b->size = n > SIZE_MAX - b->size ? SIZE_MAX : b->size + n;
	return b->size <= b->max;
}

/*
 * The length of @s (@len bytes) as a JSON string, quotes included, the
 * way jansson escapes it without JSON_ENSURE_ASCII/JSON_ESCAPE_SLASH; 0
 * when @s is not valid UTF-8 (shortest form, no surrogates, at most
 * U+10FFFF).
 */
static size_t json_string_len(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len;
	size_t n = 2;

	while (p < end) {
		unsigned char c = *p;
		size_t k;

		if (c < 0x80) {
			if (c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' ||
			    c == '\r' || c == '\t')
				n += 2;
			else if (c < 0x20)
				n += 6;
			else
				n += 1;
			p++;
			continue;
		}
		k = utf8_seq_len(p, (size_t)(end - p));
		if (k == 0)
			return 0;
		n += k;
		p += k;
	}
	return n;
}

/* Copies @name into @out for an error message: at most 64 bytes, control
 * characters as '?'. */
static void printable(char *out, size_t size, const char *name)
{
	size_t i = 0;

	for (; name && *name && i + 1 < size && i < 64; name++)
		out[i++] = (unsigned char)*name < 0x20 ? '?' : *name;
	out[i] = '\0';
}

static const char *type_name(Oid oid, char *buf, size_t size)
{
	for (size_t i = 0; i < sizeof(type_names) / sizeof(type_names[0]); i++)
		if (type_names[i].oid == oid)
			return type_names[i].name;
	snprintf(buf, size, "oid:%u", (unsigned)oid);
	return buf;
}

/* The encoded length of a number or a parsed JSON value; 0 on failure. */
static size_t dumped_len(const json_t *v)
{
	return json_dumpb(v, NULL, 0, SQLRESULT_DUMP_FLAGS | JSON_ENCODE_ANY);
}

/* A strict decimal integer: optional '-', digits, nothing else, in range. */
static bool parse_int(const char *s, size_t len, json_int_t *out)
{
	char *end;
	long long v;

	if (len == 0 || len > 24 || !(s[0] == '-' || (s[0] >= '0' && s[0] <= '9')))
		return false;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end != s + len)
		return false;
	*out = (json_int_t)v;
	return (long long)*out == v;
}

static size_t int_len(json_int_t v)
{
	char buf[32];

	return (size_t)snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, v);
}

/*
 * Makes the value of row @row column @col, its encoded length in *@len.
 * NULL with *@rc set on failure (*@rc -EILSEQ: caller names the column).
 */
static json_t *make_value(const PGresult *res, int row, int col, Oid type, size_t *len, int *rc)
{
	const char *text;
	size_t tlen;
	json_int_t iv;
	json_t *v = NULL;

	*rc = 0;
	if (PQgetisnull(res, row, col)) {
		*len = 4;
		return json_null();
	}
	text = PQgetvalue(res, row, col);
	tlen = (size_t)PQgetlength(res, row, col);
	switch (type) {
	case OID_BOOL:
		if (tlen == 1 && (text[0] == 't' || text[0] == 'f')) {
			*len = text[0] == 't' ? 4 : 5;
			return json_boolean(text[0] == 't');
		}
		break;
	case OID_INT2:
	case OID_INT4:
	case OID_INT8:
	case OID_OID:
		if (parse_int(text, tlen, &iv)) {
			*len = int_len(iv);
			v = json_integer(iv);
			if (!v)
				*rc = -ENOMEM;
			return v;
		}
		break;
	case OID_FLOAT4:
	case OID_FLOAT8: {
		char *end;
		double d;

		if (tlen == 0 || tlen > 64)
			break;
		d = strtod(text, &end);
		if (end != text + tlen || !isfinite(d))
			break;
		v = json_real(d);
		*len = v ? dumped_len(v) : 0;
		if (*len)
			return v;
		json_decref(v);
		*rc = -ENOMEM;
		return NULL;
	}
	case OID_JSON:
	case OID_JSONB:
		v = json_loadb(text, tlen, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
		if (!v)
			break;
		*len = dumped_len(v);
		if (*len)
			return v;
		json_decref(v);
		break;            /* cannot be printed (e.g. a NaN real): as text */
	default:
		break;
	}
	*len = json_string_len(text, tlen);
	if (*len == 0) {
		*rc = -EILSEQ;
		return NULL;
	}
	v = json_stringn_nocheck(text, tlen);
	if (!v)
		*rc = -ENOMEM;
	return v;
}

static int add_columns(const PGresult *res, struct build *b, json_t *cols)
{
	int nf = PQnfields(res);

	for (int i = 0; i < nf; i++) {
		const char *name = PQfname(res, i);
		char buf[32];
		const char *type = type_name(PQftype(res, i), buf, sizeof(buf));
		size_t nlen;
		json_t *c;

		if (PQfformat(res, i) != 0) {
			set_err(b, "column %d is in binary format", i);
			return -EINVAL;
		}
		if (!name)
			name = "";
		nlen = json_string_len(name, strlen(name));
		if (nlen == 0) {
			set_err(b, "the name of column %d is not valid UTF-8", i);
			return -EILSEQ;
		}
		if (!grow(b, (i ? 1 : 0) + LEN_COL_NAME + nlen + LEN_COL_TYPE +
			     json_string_len(type, strlen(type)) + LEN_COL_END)) {
			set_err(b, "result larger than %zu bytes: at the column list", b->max);
			return -EFBIG;
		}
		c = json_pack("{s:s,s:s}", "name", name, "type", type);
		if (!c || json_array_append_new(cols, c) != 0)
			return -ENOMEM;
	}
	return 0;
}

static int add_rows(const PGresult *res, struct build *b, json_t *rows)
{
	int nt = PQntuples(res), nf = PQnfields(res);

	for (int r = 0; r < nt; r++) {
		json_t *row;

		if (!grow(b, (r ? 1 : 0) + 2 + (nf > 0 ? (size_t)nf - 1 : 0))) {
			set_err(b, "result larger than %zu bytes: at row %d", b->max, r);
			return -EFBIG;
		}
		row = json_array();
		if (!row || json_array_append_new(rows, row) != 0)
			return -ENOMEM;
		for (int c = 0; c < nf; c++) {
			size_t len = 0;
			int rc;
			json_t *v = make_value(res, r, c, PQftype(res, c), &len, &rc);

			if (!v) {
				if (rc == -EILSEQ) {
					char name[72];

					printable(name, sizeof(name), PQfname(res, c));
					set_err(b, "column \"%s\" at row %d: not valid UTF-8",
						name, r);
				}
				return rc ? rc : -ENOMEM;
			}
			if (!grow(b, len)) {
				json_decref(v);
				set_err(b, "result larger than %zu bytes: at row %d", b->max, r);
				return -EFBIG;
			}
			if (json_array_append_new(row, v) != 0)
				return -ENOMEM;
		}
	}
	return 0;
}

int sqlresult_json(const PGresult *res, size_t max_bytes, json_t **out, char *err,
		   size_t errlen)
{
	struct build b = { .max = max_bytes ? max_bytes : SQLRESULT_DEFAULT_MAX_BYTES,
			   .err = err, .errlen = errlen };
	PGresult *r = (PGresult *)res;  /* libpq's getters are not const-qualified */
	json_t *root = NULL, *cols = NULL, *rows = NULL, *affected;
	const char *command, *tuples;
	ExecStatusType st;
	json_int_t n = 0;
	size_t clen;
	int rc;

	if (err && errlen)
		err[0] = '\0';
	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!res) {
		set_err(&b, "no result");
		return -EINVAL;
	}
	st = PQresultStatus(res);
	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
		set_err(&b, "result status %s", PQresStatus(st));
		return -EINVAL;
	}

	command = PQcmdStatus(r);
	if (!command)
		command = "";
	clen = json_string_len(command, strlen(command));
	if (clen == 0) {
		set_err(&b, "the command tag is not valid UTF-8");
		return -EILSEQ;
	}
	tuples = PQcmdTuples(r);
	if (tuples && parse_int(tuples, strlen(tuples), &n) && n >= 0)
		affected = json_integer(n);
	else
		affected = json_null();

	rc = -ENOMEM;
	root = json_object();
	cols = json_array();
	rows = json_array();
	if (!affected || !root || !cols || !rows)
		goto fail;
	/* The fixed part first, so the running total is final at the end. */
	if (!grow(&b, LEN_HEAD + LEN_ROWS + LEN_COMMAND + clen + LEN_AFFECTED +
		      (json_is_integer(affected) ? int_len(n) : 4) + LEN_TAIL)) {
		set_err(&b, "result larger than %zu bytes: at the column list", b.max);
		rc = -EFBIG;
		goto fail;
	}
	if (st == PGRES_TUPLES_OK) {
		rc = add_columns(res, &b, cols);
		if (rc == 0)
			rc = add_rows(res, &b, rows);
		if (rc != 0)
			goto fail;
	}
	rc = -ENOMEM;
	if (json_object_set_new(root, "columns", cols) != 0) {
		cols = NULL;
		goto fail;
	}
	cols = NULL;
	if (json_object_set_new(root, "rows", rows) != 0) {
		rows = NULL;
		goto fail;
	}
	rows = NULL;
	if (json_object_set_new(root, "command", json_stringn_nocheck(command,
								    strlen(command))) != 0)
		goto fail;
	if (json_object_set_new(root, "rows_affected", affected) != 0) {
		affected = NULL;
		goto fail;
	}
	*out = root;
	return 0;
fail:
	if (rc == -ENOMEM)
		set_err(&b, "out of memory");
	json_decref(affected);
	json_decref(cols);
	json_decref(rows);
	json_decref(root);
	return rc;
}
