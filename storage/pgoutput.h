/*
 * storage/pgoutput.h - a decoder for PostgreSQL's logical replication
 * output plugin, pgoutput, protocol version 1; and a change as JSON.
 *
 * Pure: no libpq, no libuv, no clock.  It reads network input (the
 * server's, relayed through a replication connection or
 * pg_logical_slot_peek_binary_changes), so every byte is checked: any
 * defect is a negative errno, one line in pgoutput_error() naming the
 * message type and the field, and one more in the counter of its kind;
 * nothing is read past @len, and nothing crashes.
 *
 * Input.  pgoutput_decode() takes ONE pgoutput message: the payload of an
 * XLogData ('w') CopyData message after its 1 + 8 + 8 + 8 byte header
 * (the consumer strips that header), or the "data" of one row of
 * pg_logical_slot_peek_binary_changes().  The whole buffer must be one
 * message: bytes left over are an error.  Integers are big-endian; a
 * string is NUL-terminated.  Messages of protocol version 1 (no
 * streaming, so no xid field after the type byte):
 *
 *   'B' Begin     final LSN (int64), commit time (int64), xid (int32)
 *   'C' Commit    flags (int8), commit LSN, end LSN, commit time (int64)
 *   'O' Origin    origin LSN (int64), name (string)
 *   'R' Relation  relid (int32), namespace, name (strings), replica
 *                 identity (int8: 'd' 'n' 'f' 'i'), ncolumns (int16),
 *                 then per column: flags (int8, 1 = part of the replica
 *                 identity), name (string), type OID (int32), typmod
 *   'Y' Type      type OID (int32), namespace, name (strings)
 *   'I' Insert    relid, 'N' tuple
 *   'U' Update    relid, optionally 'K' (key) or 'O' (old row) tuple,
 *                 then 'N' tuple
 *   'D' Delete    relid, 'K' or 'O' tuple
 *   'T' Truncate  nrelids (int32), options (int8: 1 cascade, 2 restart
 *                 identity), nrelids relids
 *   'M' Message   flags (int8, 1 transactional), LSN, prefix (string),
 *                 content length (int32), content
 * A tuple is a column count (int16) then per column 'n' (null), 'u'
 * (unchanged TOASTed value: not sent) or 't' (text form: int32 length,
 * then the bytes).  'b' (binary form) is refused (-ENOTSUP): the consumer
 * asks for text (it never sets the "binary" option), and a binary value
 * could not become a JSON string anyway.  Origin, Type and Message are
 * decoded (their fields are in the result) but need nothing from the
 * caller.
 *
 * Relation cache.  A struct pgoutput holds what Relation messages said,
 * by relation id: pgoutput sends a Relation before the first change of a
 * relation in a session and again after its schema changed, and the new
 * one replaces the old (the cache is only changed by a Relation that
 * decoded entirely).  Insert, Update, Delete and Truncate must name a
 * cached relation (-ENOENT otherwise), and a tuple must have exactly the
 * relation's column count (-EPROTO).  Bounds: PGOUTPUT_RELATIONS_MAX
 * relations (one more is -ENOSPC), PGOUTPUT_COLUMNS_MAX columns a
 * relation, PGOUTPUT_CACHE_COLUMNS_MAX columns in the whole cache
 * (-ENOSPC), names (relation, namespace, column, type) of at most
 * PGOUTPUT_NAME_MAX bytes (NAMEDATALEN - 1), non-empty except a
 * namespace ("" is pg_catalog) (-E2BIG, -EINVAL).  Memory is bounded by
 * those: one allocation of about 170 kB at pgoutput_new() (the cache's
 * index and the scratch arrays a result points into) plus at most ~90
 * bytes per cached column.  A new replication session starts with an empty
 * cache: pgoutput_reset().
 *
 * Result lifetime.  A struct pgoutput_msg points into the input buffer
 * (values, strings of Origin, Type, Message) and into the decoder (the
 * relation, the value arrays): it is valid until the next
 * pgoutput_decode() or pgoutput_reset() on the same decoder, and while the
 * input buffer lives.  Text values are NOT NUL-terminated: use data and
 * len.  On error *@out is zeroed.
 *
 * Errors (errno and the counter kind; the line says which message type,
 * which field, and the numbers):
 *   -EBADMSG   TRUNCATED   a field, string or value runs past the end
 *   -EBADMSG   TRAILING    bytes after the end of the message
 *   -EPROTONOSUPPORT UNKNOWN_TYPE  a message type that is not version 1's
 *                          (also an empty buffer)
 *   -ENOENT    UNKNOWN_RELATION    I/U/D/T name a relation never described
 *   -EPROTO    COLUMN_COUNT        tuple column count != the relation's
 *   -EPROTO    BAD_KIND    a tuple kind or column value kind not allowed
 *                          where it is, an unknown replica identity
 *   -ENOTSUP   BINARY      a 'b' (binary) column value
 *   -E2BIG / -ENOSPC BOUND a bound above exceeded
 *   -EINVAL    INVALID     negative count or length, relation id 0, empty
 *                          name
 *   -ENOMEM    NOMEM       out of memory while caching a relation
 *
 * JSON.  pgoutput_change_json() turns an Insert, Update, Delete or
 * Truncate into the event the agent fans out:
 *   {"lsn":"0/1A2B3C","xid":812,"table":"public.accounts","op":"update",
 *    "new":{"id":"1","note":null},"unchanged":["big"],
 *    "old":{"id":"2"},"commit_time":"2026-11-22T01:30:34.123456Z"}
 * "table" is namespace "." name, unquoted ("pg_catalog" for the empty
 * namespace).  Values are strings (the text form) or null.  An unchanged
 * TOAST value is left out of its object and named in "unchanged" (only
 * for "new"; the key is absent when there are none); pgoutput_change_dump()
 * may leave out values too large to travel, named in "omitted".  "new" is present
 * for insert and update; "old" for delete, and for an update that sent an
 * old tuple: an 'O' tuple gives every column, a 'K' tuple only the
 * replica identity columns (the others are sent as null: they are not
 * known, not null).  A truncate has "tables":[...] instead of "table" and
 * no "new"/"old", plus "cascade" and "restart_identity" (booleans).
 * "commit_time" is RFC 3339 UTC with microseconds.  lsn, xid and the
 * commit time are the caller's: it knows the transaction (Begin) the
 * change belongs to.
 */
#ifndef MERIDIAN_STORAGE_PGOUTPUT_H
#define MERIDIAN_STORAGE_PGOUTPUT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define PGOUTPUT_RELATIONS_MAX 4096
#define PGOUTPUT_COLUMNS_MAX 1664            /* MaxTupleAttributeNumber */
#define PGOUTPUT_CACHE_COLUMNS_MAX (1u << 19) /* all cached relations */
#define PGOUTPUT_NAME_MAX 63                 /* NAMEDATALEN - 1 */
#define PGOUTPUT_ERR_MAX 160

/* Microseconds between 1970-01-01 and 2000-01-01 (the Postgres epoch). */
#define PGOUTPUT_EPOCH_OFFSET_US 946684800000000LL

enum pgoutput_kind {
	PGOUTPUT_BEGIN = 'B',
	PGOUTPUT_COMMIT = 'C',
	PGOUTPUT_ORIGIN = 'O',
	PGOUTPUT_RELATION = 'R',
	PGOUTPUT_TYPE = 'Y',
	PGOUTPUT_INSERT = 'I',
	PGOUTPUT_UPDATE = 'U',
	PGOUTPUT_DELETE = 'D',
	PGOUTPUT_TRUNCATE = 'T',
	PGOUTPUT_MESSAGE = 'M',
};

enum pgoutput_state {
	PGOUTPUT_NULL = 'n',
	PGOUTPUT_UNCHANGED = 'u',  /* TOASTed and not changed: value not sent */
	PGOUTPUT_TEXT = 't',
};

/* Error kinds, the index of pgoutput_counters()[]. */
enum pgoutput_errkind {
	PGOUTPUT_ERR_TRUNCATED,
	PGOUTPUT_ERR_TRAILING,
	PGOUTPUT_ERR_UNKNOWN_TYPE,
	PGOUTPUT_ERR_UNKNOWN_RELATION,
	PGOUTPUT_ERR_COLUMN_COUNT,
	PGOUTPUT_ERR_BAD_KIND,
	PGOUTPUT_ERR_BINARY,
	PGOUTPUT_ERR_BOUND,
	PGOUTPUT_ERR_INVALID,
	PGOUTPUT_ERR_NOMEM,
	PGOUTPUT_ERR_KINDS
};

#define PGOUTPUT_COLUMN_KEY 1  /* column flag: part of the replica identity */

struct pgoutput_column {
	const char *name;  /* NUL-terminated, owned by the cache */
	uint8_t flags;
	uint32_t type_oid;
	int32_t typmod;
};

struct pgoutput_relation {
	uint32_t relid;
	const char *nspname;  /* "" for pg_catalog */
	const char *relname;
	char replident;       /* 'd' default, 'n' nothing, 'f' full, 'i' index */
	uint16_t ncolumns;
	const struct pgoutput_column *columns;
};

struct pgoutput_value {
	enum pgoutput_state state;
	uint32_t len;         /* PGOUTPUT_TEXT only; 0 otherwise */
	const char *data;     /* into the input; NULL unless PGOUTPUT_TEXT */
};

struct pgoutput_tuple {
	char kind;            /* 'N', 'K', 'O'; 0 when the message had none */
	uint16_t ncolumns;    /* == the relation's */
	const struct pgoutput_value *values;
};

struct pgoutput_msg {
	enum pgoutput_kind kind;
	union {
		struct {
			uint64_t final_lsn;
			int64_t commit_time;  /* Postgres microseconds */
			uint32_t xid;
		} begin;
		struct {
			uint8_t flags;
			uint64_t commit_lsn;
			uint64_t end_lsn;
			int64_t commit_time;
		} commit;
		struct {
			uint64_t lsn;
			const char *name;     /* NUL-terminated, in the input */
		} origin;
		/* Relation: the cache entry just stored. */
		const struct pgoutput_relation *relation;
		struct {
			uint32_t oid;
			const char *nspname, *name;  /* NUL-terminated, in the input */
		} type;
		/* Insert (new_tuple), Update (old_tuple.kind 0, 'K' or 'O';
		 * new_tuple), Delete (old_tuple). */
		struct {
			const struct pgoutput_relation *rel;
			struct pgoutput_tuple old_tuple, new_tuple;
		} change;
		struct {
			uint8_t options;      /* 1 cascade, 2 restart identity */
			uint32_t nrelids;
			const struct pgoutput_relation *const *rels;
		} truncate;
		struct {
			uint8_t flags;        /* 1: transactional */
			uint64_t lsn;
			const char *prefix;   /* NUL-terminated, in the input */
			const uint8_t *content;
			uint32_t content_len;
		} message;
	};
};

struct pgoutput;

/* An empty decoder (relation cache included); NULL when out of memory. */
struct pgoutput *pgoutput_new(void);
/* NULL is a no-op. */
void pgoutput_delete(struct pgoutput *p);
/* Forgets every cached relation (a new replication session); counters
 * are kept. */
void pgoutput_reset(struct pgoutput *p);

/* Decodes one message (see the top of this file).  0 with *@out filled,
 * or a negative errno with *@out zeroed, pgoutput_error() set and one
 * counter incremented.  @buf may be NULL when @len is 0. */
int pgoutput_decode(struct pgoutput *p, const uint8_t *buf, size_t len,
		    struct pgoutput_msg *out);

/* The last error's line ("" after a successful decode). */
const char *pgoutput_error(const struct pgoutput *p);
/* Errors so far, by kind (PGOUTPUT_ERR_KINDS entries); never reset. */
const uint64_t *pgoutput_counters(const struct pgoutput *p);
/* "truncated", "trailing", ... : a metric label for a kind; "?" beyond. */
const char *pgoutput_errkind_name(enum pgoutput_errkind k);
/* Relations cached now. */
size_t pgoutput_relation_count(const struct pgoutput *p);
/* The cached relation @relid, NULL if none. */
const struct pgoutput_relation *pgoutput_relation(const struct pgoutput *p, uint32_t relid);

/* Postgres microseconds since 2000-01-01 -> Unix microseconds.
 * INT64_MIN and INT64_MAX (Postgres's -infinity and infinity) stay as
 * they are; a time too late for Unix microseconds saturates at INT64_MAX. */
int64_t pgoutput_time_to_unix_us(int64_t pg_us);

/*
 * An Insert, Update, Delete or Truncate as JSON (see the top of this
 * file).  @lsn is the text put in "lsn" (e.g. from lsn_format()),
 * @commit_time_us Unix microseconds.  0 with *@out set (the caller owns
 * the reference), or a negative errno with *@out NULL and @err (if not
 * NULL) holding one line: -EINVAL (another message kind, NULL arguments),
 * -EILSEQ (a name or value that is not UTF-8: the column is named),
 * -ERANGE (a commit time outside years 0000-9999), -ENOMEM.
 */
int pgoutput_change_json(const struct pgoutput_msg *m, const char *lsn, uint32_t xid,
			 int64_t commit_time_us, json_t **out, char *err, size_t errlen);

/*
 * The compact JSON text of the event @ev (from pgoutput_change_json()) in
 * at most @limit bytes: when it is larger, its largest values are left
 * out of "new" and "old", largest first, and their columns named in
 * "omitted" (once each), until it fits.  A subscriber that needs them
 * reads the row again by its key.  On success *@out is the text (the
 * caller frees it) and *@omitted the number of values left out; @ev is
 * changed only when some were.  Returns 0, -EMSGSIZE (it does not fit
 * even without its values; @ev has lost them) or -ENOMEM.
 */
int pgoutput_change_dump(json_t *ev, size_t limit, char **out, size_t *omitted);

#endif
