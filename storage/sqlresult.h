/*
 * storage/sqlresult.h - a PGresult as a JSON object (jansson), bounded in
 * size.
 *
 *   {"columns":[{"name":"id","type":"int4"},{"name":"name","type":"text"}],
 *    "rows":[[1,"bob"],[2,null]],
 *    "command":"SELECT 2",
 *    "rows_affected":2}
 *
 * "command" is PQcmdStatus() ("INSERT 0 1", "" for a result that was made
 * up rather than received); "rows_affected" is PQcmdTuples() as an integer,
 * null when that is empty (CREATE TABLE, SET...).  A PGRES_COMMAND_OK
 * result has "columns":[] and "rows":[].  Any other result status (an
 * error, COPY) is -EINVAL: errors are the caller's to report.
 *
 * Values, from their text form (the only format pgconn asks for; a
 * binary-format column is -EINVAL):
 *   SQL NULL                   null
 *   bool                       true / false ("t" / "f")
 *   int2, int4, int8, oid      integer (a text that does not fit
 *                              json_int_t: string)
 *   float4, float8             real when finite, else the string
 *                              ("NaN", "Infinity", "-Infinity")
 *   numeric                    string (keeps every digit)
 *   json, jsonb                the parsed value (string when jansson
 *                              cannot parse it, e.g. an integer beyond
 *                              json_int_t)
 *   anything else              string of the text form
 * Column "type" is the name of the built-in types mapped here (bool int2
 * int4 int8 oid float4 float8 numeric text varchar bpchar bytea date
 * timestamp timestamptz uuid json jsonb) and "oid:N" for any other OID.
 * Note that jansson prints reals with 17 significant digits (0.1 becomes
 * 0.10000000000000001): a caller that needs the server's digits casts
 * to text or numeric in SQL.
 *
 * Text that is not valid UTF-8 (a value, a column name or the command
 * tag) is -EILSEQ, the error naming the column and row.
 *
 * Size bound.  The size counted is the length of json_dumps(*out,
 * SQLRESULT_DUMP_FLAGS), computed as the object is built (value by value:
 * escapes counted, numbers and parsed JSON measured as jansson prints
 * them).  As soon as it passes @max_bytes the build stops and the answer
 * is -EFBIG, "result larger than N bytes: at row R" (R counted from 0;
 * "at the column list" when the fixed part alone is too large).  So a
 * result whose compact encoding is exactly max_bytes long passes and one
 * byte more fails.  Other dump flags (indentation, JSON_ENSURE_ASCII)
 * make the text longer than counted.  @max_bytes 0 means
 * SQLRESULT_DEFAULT_MAX_BYTES.
 *
 * Returns 0 with *@out set (the caller owns the reference), or a
 * negative errno with *@out NULL and @err (if not NULL) holding one line:
 * -EINVAL (no result, unsupported status or format), -EILSEQ, -EFBIG,
 * -ENOMEM.  @res is not modified or freed.
 */
#ifndef MERIDIAN_STORAGE_SQLRESULT_H
#define MERIDIAN_STORAGE_SQLRESULT_H

#include <stddef.h>

#include <jansson.h>
#include <libpq-fe.h>

#define SQLRESULT_DUMP_FLAGS JSON_COMPACT
#define SQLRESULT_DEFAULT_MAX_BYTES (16u << 20)

int sqlresult_json(const PGresult *res, size_t max_bytes, json_t **out, char *err,
		   size_t errlen);

#endif
