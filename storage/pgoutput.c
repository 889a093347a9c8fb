/*
 * storage/pgoutput.c - pgoutput (protocol version 1) decoder and change
 * JSON; the contract is in pgoutput.h.
 *
 * Reading.  Every field goes through one cursor (struct rd) whose getters
 * check the bytes left before touching them, so a truncated or lying
 * message can only end in an error line, never in a read past @len.  A
 * message is first read whole into the decoder's scratch arrays (tuple
 * values, a Relation's columns, a Truncate's relations); only a Relation
 * that decoded entirely, without trailing bytes, touches the cache.
 *
 * The cache.  Relations live in an array of at most
 * PGOUTPUT_RELATIONS_MAX entries, found through an open-addressing table
 * of twice that many slots (relation ids are OIDs: dense, so a
 * multiplicative hash spreads them).  Nothing is ever removed but by
 * pgoutput_reset(), so probing needs no tombstones.  Each entry is one
 * allocation: the relation, its columns, then their names.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/be.h"
#include "lib/utf8.h"
#include "storage/pgoutput.h"

#define SLOTS (2 * PGOUTPUT_RELATIONS_MAX)  /* a power of two */

struct pgoutput {
	struct pgoutput_relation *rels[PGOUTPUT_RELATIONS_MAX];
	uint16_t slots[SLOTS];  /* index into rels + 1; 0 = empty */
	size_t nrels;
	size_t ncached_columns;
	/* Scratch for the message being decoded (the result points here). */
	struct pgoutput_value old_values[PGOUTPUT_COLUMNS_MAX];
	struct pgoutput_value new_values[PGOUTPUT_COLUMNS_MAX];
	struct pgoutput_column columns[PGOUTPUT_COLUMNS_MAX];
	const struct pgoutput_relation *truncated[PGOUTPUT_RELATIONS_MAX];
	uint64_t counters[PGOUTPUT_ERR_KINDS];
	char err[PGOUTPUT_ERR_MAX];
};

/* A cursor over one message. */
struct rd {
	struct pgoutput *d;
	const char *msg;        /* "insert", ... for error lines */
	const uint8_t *p;
	size_t left;
};

static const char *const errkind_names[PGOUTPUT_ERR_KINDS] = {
	[PGOUTPUT_ERR_TRUNCATED] = "truncated",
	[PGOUTPUT_ERR_TRAILING] = "trailing",
	[PGOUTPUT_ERR_UNKNOWN_TYPE] = "unknown_type",
	[PGOUTPUT_ERR_UNKNOWN_RELATION] = "unknown_relation",
	[PGOUTPUT_ERR_COLUMN_COUNT] = "column_count",
	[PGOUTPUT_ERR_BAD_KIND] = "bad_kind",
	[PGOUTPUT_ERR_BINARY] = "binary",
	[PGOUTPUT_ERR_BOUND] = "bound",
	[PGOUTPUT_ERR_INVALID] = "invalid",
	[PGOUTPUT_ERR_NOMEM] = "nomem",
};

const char *pgoutput_errkind_name(enum pgoutput_errkind k)
{
	return (unsigned)k < PGOUTPUT_ERR_KINDS ? errkind_names[k] : "?";
}

/* Records an error of @kind: "<message>: <what>", returns @errnum. */
__attribute__((format(printf, 4, 5)))
static int fail(struct rd *r, enum pgoutput_errkind kind, int errnum, const char *fmt, ...)
{
	struct pgoutput *d = r->d;
	int n = snprintf(d->err, sizeof(d->err), "%s: ", r->msg);
	va_list ap;

	va_start(ap, fmt);
	if (n > 0 && (size_t)n < sizeof(d->err))
		vsnprintf(d->err + n, sizeof(d->err) - (size_t)n, fmt, ap);
	va_end(ap);
	d->counters[kind]++;
	return errnum;
}

static int need(struct rd *r, const char *field, size_t n)
{
	if (r->left < n)
		return fail(r, PGOUTPUT_ERR_TRUNCATED, -EBADMSG,
			    "%s: truncated (%zu bytes needed, %zu left)", field, n, r->left);
	return 0;
}

static int get_u8(struct rd *r, const char *field, uint8_t *v)
{
	int rc = need(r, field, 1);

	if (rc)
		return rc;
	*v = r->p[0];
	r->p++;
	r->left--;
	return 0;
}

static int get_u16(struct rd *r, const char *field, uint16_t *v)
{
	int rc = need(r, field, 2);

	if (rc)
		return rc;
	*v = get_be16(r->p);
	r->p += 2;
	r->left -= 2;
	return 0;
}

static int get_u32(struct rd *r, const char *field, uint32_t *v)
{
	int rc = need(r, field, 4);

	if (rc)
		return rc;
	*v = get_be32(r->p);
	r->p += 4;
	r->left -= 4;
	return 0;
}

static int get_u64(struct rd *r, const char *field, uint64_t *v)
{
	int rc = need(r, field, 8);

	if (rc)
		return rc;
	*v = get_be64(r->p);
	r->p += 8;
	r->left -= 8;
	return 0;
}

/* Two's complement without implementation-defined conversions. */
static int64_t to_i64(uint64_t v)
{
	return v <= INT64_MAX ? (int64_t)v : -(int64_t)(~v) - 1;
}

static int32_t to_i32(uint32_t v)
{
	return v <= INT32_MAX ? (int32_t)v : -(int32_t)(~v) - 1;
}

/* A NUL-terminated string of at most @max bytes (SIZE_MAX: any), empty
 * allowed only if @empty_ok.  *@s points into the input. */
static int get_str(struct rd *r, const char *field, size_t max, bool empty_ok, const char **s)
{
	const uint8_t *nul = r->left ? memchr(r->p, 0, r->left) : NULL;
	size_t len;

	if (!nul)
		return fail(r, PGOUTPUT_ERR_TRUNCATED, -EBADMSG,
			    "%s: truncated (no NUL in the %zu bytes left)", field, r->left);
	len = (size_t)(nul - r->p);
	if (len > max)
		return fail(r, PGOUTPUT_ERR_BOUND, -E2BIG, "%s: %zu bytes long (at most %zu)",
			    field, len, max);
	if (len == 0 && !empty_ok)
		return fail(r, PGOUTPUT_ERR_INVALID, -EINVAL, "%s: empty", field);
	*s = (const char *)r->p;
	r->p += len + 1;
	r->left -= len + 1;
	return 0;
}

static int at_end(struct rd *r)
{
	if (r->left)
		return fail(r, PGOUTPUT_ERR_TRAILING, -EBADMSG, "%zu bytes after the end", r->left);
	return 0;
}

/* ---- the relation cache ---------------------------------------------- */

static size_t slot_of(uint32_t relid)
{
	return (size_t)((relid * 2654435761u) >> 19) & (SLOTS - 1);  /* 13 bits */
}

/* The slot holding @relid, or the empty slot where it would go. */
static size_t find_slot(const struct pgoutput *d, uint32_t relid)
{
	size_t i = slot_of(relid);

	/* There are always empty slots (SLOTS > PGOUTPUT_RELATIONS_MAX), so
	 * this stops within SLOTS steps. */
	while (d->slots[i] && d->rels[d->slots[i] - 1]->relid != relid)
		i = (i + 1) & (SLOTS - 1);
	return i;
}

const struct pgoutput_relation *pgoutput_relation(const struct pgoutput *d, uint32_t relid)
{
	size_t i = find_slot(d, relid);

	return d->slots[i] ? d->rels[d->slots[i] - 1] : NULL;
}

size_t pgoutput_relation_count(const struct pgoutput *d)
{
	return d->nrels;
}

/* Stores the relation just read (@rel, columns in d->columns pointing
 * into the input) as one allocation, replacing any entry of that id. */
static int cache_store(struct rd *r, const struct pgoutput_relation *rel,
		       const struct pgoutput_relation **stored)
{
	struct pgoutput *d = r->d;
	size_t slot = find_slot(d, rel->relid), names = 0, old_cols = 0, size;
	struct pgoutput_relation *old = d->slots[slot] ? d->rels[d->slots[slot] - 1] : NULL;
	struct pgoutput_relation *e;
	struct pgoutput_column *cols;
	char *pool;

	if (old)
		old_cols = old->ncolumns;
	else if (d->nrels == PGOUTPUT_RELATIONS_MAX)
		return fail(r, PGOUTPUT_ERR_BOUND, -ENOSPC,
			    "relation %" PRIu32 ": cache full (%d relations)", rel->relid,
			    PGOUTPUT_RELATIONS_MAX);
	if (d->ncached_columns - old_cols + rel->ncolumns > PGOUTPUT_CACHE_COLUMNS_MAX)
		return fail(r, PGOUTPUT_ERR_BOUND, -ENOSPC,
			    "relation %" PRIu32 ": cache full (%u columns in all)", rel->relid,
			    PGOUTPUT_CACHE_COLUMNS_MAX);

	names = strlen(rel->nspname) + 1 + strlen(rel->relname) + 1;
	for (size_t i = 0; i < rel->ncolumns; i++)
		names += strlen(d->columns[i].name) + 1;
	size = sizeof(*e) + (size_t)rel->ncolumns * sizeof(*cols) + names;
	e = malloc(size);
	if (!e)
		return fail(r, PGOUTPUT_ERR_NOMEM, -ENOMEM, "relation %" PRIu32 ": out of memory",
			    rel->relid);
	cols = (struct pgoutput_column *)(e + 1);
	pool = (char *)(cols + rel->ncolumns);

	*e = *rel;
	e->columns = cols;
#define COPY_NAME(dst, src)                         \
	do {                                        \
		size_t n_ = strlen(src) + 1;        \
		memcpy(pool, (src), n_);            \
		(dst) = pool;                       \
		pool += n_;                         \
	} while (0)
	COPY_NAME(e->nspname, rel->nspname);
	COPY_NAME(e->relname, rel->relname);
	for (size_t i = 0; i < rel->ncolumns; i++) {
		cols[i] = d->columns[i];
		COPY_NAME(cols[i].name, d->columns[i].name);
	}
#undef COPY_NAME

	if (old) {
		d->rels[d->slots[slot] - 1] = e;
		free(old);
	} else {
		d->rels[d->nrels++] = e;
		d->slots[slot] = (uint16_t)d->nrels;
	}
	d->ncached_columns = d->ncached_columns - old_cols + rel->ncolumns;
	*stored = e;
	return 0;
}

struct pgoutput *pgoutput_new(void)
{
	return calloc(1, sizeof(struct pgoutput));
}

void pgoutput_reset(struct pgoutput *d)
{
	for (size_t i = 0; i < d->nrels; i++) {
		free(d->rels[i]);
		d->rels[i] = NULL;
	}
	memset(d->slots, 0, sizeof(d->slots));
	d->nrels = 0;
	d->ncached_columns = 0;
}

void pgoutput_delete(struct pgoutput *d)
{
	if (!d)
		return;
	pgoutput_reset(d);
	free(d);
}

const char *pgoutput_error(const struct pgoutput *d)
{
	return d->err;
}

const uint64_t *pgoutput_counters(const struct pgoutput *d)
{
	return d->counters;
}

int64_t pgoutput_time_to_unix_us(int64_t pg_us)
{
	if (pg_us == INT64_MIN)
		return INT64_MIN;
	if (pg_us > INT64_MAX - PGOUTPUT_EPOCH_OFFSET_US)
		return INT64_MAX;
	return pg_us + PGOUTPUT_EPOCH_OFFSET_US;
}

/* ---- messages ---------------------------------------------------------- */

static int read_relid(struct rd *r, const struct pgoutput_relation **rel)
{
	uint32_t relid;
	int rc = get_u32(r, "relation id", &relid);

	if (rc)
		return rc;
	*rel = pgoutput_relation(r->d, relid);
	if (!*rel)
		return fail(r, PGOUTPUT_ERR_UNKNOWN_RELATION, -ENOENT,
			    "relation id %" PRIu32 " not described by a Relation message", relid);
	return 0;
}

/* Tuple data (after its 'N'/'K'/'O' byte) of @rel into @values. */
static int read_tuple(struct rd *r, const char *which, const struct pgoutput_relation *rel,
		      char kind, struct pgoutput_value *values, struct pgoutput_tuple *t)
{
	uint16_t n;
	int rc;
	char field[48];

	snprintf(field, sizeof(field), "%s tuple column count", which);
	if ((rc = get_u16(r, field, &n)))
		return rc;
	if (n > INT16_MAX)
		return fail(r, PGOUTPUT_ERR_INVALID, -EINVAL, "%s: negative (%d)", field,
			    (int)n - 65536);
	if (n != rel->ncolumns)
		return fail(r, PGOUTPUT_ERR_COLUMN_COUNT, -EPROTO,
			    "%s: %u, relation %s.%s has %u", field, n, rel->nspname, rel->relname,
			    rel->ncolumns);
	for (unsigned i = 0; i < n; i++) {
		struct pgoutput_value *v = &values[i];
		uint8_t vk;
		uint32_t len;

		snprintf(field, sizeof(field), "%s tuple column %u", which, i + 1);
		if ((rc = get_u8(r, field, &vk)))
			return rc;
		v->len = 0;
		v->data = NULL;
		switch (vk) {
		case 'n':
			v->state = PGOUTPUT_NULL;
			break;
		case 'u':
			v->state = PGOUTPUT_UNCHANGED;
			break;
		case 't':
			if ((rc = get_u32(r, field, &len)))
				return rc;
			if (len > INT32_MAX)
				return fail(r, PGOUTPUT_ERR_INVALID, -EINVAL,
					    "%s: negative length %" PRId32, field, to_i32(len));
			if (len > r->left)
				return fail(r, PGOUTPUT_ERR_TRUNCATED, -EBADMSG,
					    "%s: length %" PRIu32 " past the end (%zu bytes left)",
					    field, len, r->left);
			v->state = PGOUTPUT_TEXT;
			v->len = len;
			v->data = (const char *)r->p;
			r->p += len;
			r->left -= len;
			break;
		case 'b':
			return fail(r, PGOUTPUT_ERR_BINARY, -ENOTSUP,
				    "%s: binary value (text was asked for)", field);
		default:
			return fail(r, PGOUTPUT_ERR_BAD_KIND, -EPROTO,
				    "%s: unknown value kind 0x%02x", field, vk);
		}
	}
	t->kind = kind;
	t->ncolumns = n;
	t->values = values;
	return 0;
}

static int read_relation(struct rd *r, struct pgoutput_msg *m)
{
	struct pgoutput_relation rel = { 0 };
	uint16_t n;
	uint8_t ri;
	uint32_t typmod;
	int rc;
	char field[40];

	if ((rc = get_u32(r, "relation id", &rel.relid)))
		return rc;
	if (rel.relid == 0)
		return fail(r, PGOUTPUT_ERR_INVALID, -EINVAL, "relation id: 0");
	if ((rc = get_str(r, "namespace", PGOUTPUT_NAME_MAX, true, &rel.nspname)) ||
	    (rc = get_str(r, "name", PGOUTPUT_NAME_MAX, false, &rel.relname)) ||
	    (rc = get_u8(r, "replica identity", &ri)))
		return rc;
	if (ri != 'd' && ri != 'n' && ri != 'f' && ri != 'i')
		return fail(r, PGOUTPUT_ERR_BAD_KIND, -EPROTO, "replica identity: unknown 0x%02x",
			    ri);
	rel.replident = (char)ri;
	if ((rc = get_u16(r, "column count", &n)))
		return rc;
	if (n > INT16_MAX)
		return fail(r, PGOUTPUT_ERR_INVALID, -EINVAL, "column count: negative (%d)",
			    (int)n - 65536);
	if (n > PGOUTPUT_COLUMNS_MAX)
		return fail(r, PGOUTPUT_ERR_BOUND, -E2BIG, "column count: %u (at most %d)", n,
			    PGOUTPUT_COLUMNS_MAX);
	rel.ncolumns = n;
	for (unsigned i = 0; i < n; i++) {
		struct pgoutput_column *c = &r->d->columns[i];

		snprintf(field, sizeof(field), "column %u", i + 1);
		if ((rc = get_u8(r, field, &c->flags)))
			return rc;
		snprintf(field, sizeof(field), "column %u name", i + 1);
		if ((rc = get_str(r, field, PGOUTPUT_NAME_MAX, false, &c->name)))
			return rc;
		snprintf(field, sizeof(field), "column %u (%s)", i + 1, c->name);
		if ((rc = get_u32(r, field, &c->type_oid)) || (rc = get_u32(r, field, &typmod)))
			return rc;
		c->typmod = to_i32(typmod);
	}
	rel.columns = r->d->columns;
	if ((rc = at_end(r)))
		return rc;
	return cache_store(r, &rel, &m->relation);
}

static int read_change(struct rd *r, struct pgoutput_msg *m)
{
	struct pgoutput *d = r->d;
	const struct pgoutput_relation *rel;
	uint8_t k;
	int rc;

	if ((rc = read_relid(r, &rel)))
		return rc;
	m->change.rel = rel;
	if ((rc = get_u8(r, "tuple kind", &k)))
		return rc;
	switch (m->kind) {
	case PGOUTPUT_INSERT:
		if (k != 'N')
			break;
		return read_tuple(r, "new", rel, 'N', d->new_values, &m->change.new_tuple);
	case PGOUTPUT_UPDATE:
		if (k == 'K' || k == 'O') {
			rc = read_tuple(r, k == 'K' ? "key" : "old", rel, (char)k, d->old_values,
					&m->change.old_tuple);
			if (rc || (rc = get_u8(r, "new tuple kind", &k)))
				return rc;
		}
		if (k != 'N')
			break;
		return read_tuple(r, "new", rel, 'N', d->new_values, &m->change.new_tuple);
	default:  /* PGOUTPUT_DELETE */
		if (k != 'K' && k != 'O')
			break;
		return read_tuple(r, k == 'K' ? "key" : "old", rel, (char)k, d->old_values,
				  &m->change.old_tuple);
	}
	return fail(r, PGOUTPUT_ERR_BAD_KIND, -EPROTO, "tuple kind: 0x%02x not expected here", k);
}

static int read_truncate(struct rd *r, struct pgoutput_msg *m)
{
	uint32_t n, relid = 0;   /* set by get_u32; 0 quiets -O3's maybe-uninitialized */
	int rc;

	if ((rc = get_u32(r, "relation count", &n)))
		return rc;
	if (n > INT32_MAX)
		return fail(r, PGOUTPUT_ERR_INVALID, -EINVAL, "relation count: negative (%" PRId32 ")",
			    to_i32(n));
	if (n > PGOUTPUT_RELATIONS_MAX)
		return fail(r, PGOUTPUT_ERR_BOUND, -E2BIG, "relation count: %" PRIu32 " (at most %d)",
			    n, PGOUTPUT_RELATIONS_MAX);
	if ((rc = get_u8(r, "options", &m->truncate.options)))
		return rc;
	for (uint32_t i = 0; i < n; i++) {
		if ((rc = need(r, "relation ids", (size_t)(n - i) * 4)))
			return rc;
		get_u32(r, "relation id", &relid);
		r->d->truncated[i] = pgoutput_relation(r->d, relid);
		if (!r->d->truncated[i])
			return fail(r, PGOUTPUT_ERR_UNKNOWN_RELATION, -ENOENT,
				    "relation id %" PRIu32 " not described by a Relation message",
				    relid);
	}
	m->truncate.nrelids = n;
	m->truncate.rels = r->d->truncated;
	return 0;
}

static int read_message(struct rd *r, struct pgoutput_msg *m)
{
	uint32_t len;
	int rc;

	if ((rc = get_u8(r, "flags", &m->message.flags)) ||
	    (rc = get_u64(r, "lsn", &m->message.lsn)) ||
	    (rc = get_str(r, "prefix", SIZE_MAX, true, &m->message.prefix)) ||
	    (rc = get_u32(r, "content length", &len)))
		return rc;
	if (len > INT32_MAX)
		return fail(r, PGOUTPUT_ERR_INVALID, -EINVAL, "content length: negative (%" PRId32 ")",
			    to_i32(len));
	if (len > r->left)
		return fail(r, PGOUTPUT_ERR_TRUNCATED, -EBADMSG,
			    "content: length %" PRIu32 " past the end (%zu bytes left)", len, r->left);
	m->message.content = r->p;
	m->message.content_len = len;
	r->p += len;
	r->left -= len;
	return 0;
}

static int decode(struct rd *r, uint8_t type, struct pgoutput_msg *m)
{
	uint64_t v;
	int rc;

	m->kind = (enum pgoutput_kind)type;
	switch (type) {
	case 'B':
		if ((rc = get_u64(r, "final lsn", &m->begin.final_lsn)) ||
		    (rc = get_u64(r, "commit time", &v)) ||
		    (rc = get_u32(r, "xid", &m->begin.xid)))
			return rc;
		m->begin.commit_time = to_i64(v);
		return 0;
	case 'C':
		if ((rc = get_u8(r, "flags", &m->commit.flags)) ||
		    (rc = get_u64(r, "commit lsn", &m->commit.commit_lsn)) ||
		    (rc = get_u64(r, "end lsn", &m->commit.end_lsn)) ||
		    (rc = get_u64(r, "commit time", &v)))
			return rc;
		m->commit.commit_time = to_i64(v);
		return 0;
	case 'O':
		if ((rc = get_u64(r, "origin lsn", &m->origin.lsn)))
			return rc;
		return get_str(r, "origin name", SIZE_MAX, true, &m->origin.name);
	case 'R':
		return read_relation(r, m);
	case 'Y':
		if ((rc = get_u32(r, "type oid", &m->type.oid)) ||
		    (rc = get_str(r, "namespace", PGOUTPUT_NAME_MAX, true, &m->type.nspname)))
			return rc;
		return get_str(r, "name", PGOUTPUT_NAME_MAX, false, &m->type.name);
	case 'I':
	case 'U':
	case 'D':
		return read_change(r, m);
	case 'T':
		return read_truncate(r, m);
	case 'M':
		return read_message(r, m);
	default:
		return fail(r, PGOUTPUT_ERR_UNKNOWN_TYPE, -EPROTONOSUPPORT,
			    "unknown message type 0x%02x (protocol version 1)", type);
	}
}

static const char *msg_name(uint8_t type)
{
	switch (type) {
	case 'B': return "begin";
	case 'C': return "commit";
	case 'O': return "origin";
	case 'R': return "relation";
	case 'Y': return "type";
	case 'I': return "insert";
	case 'U': return "update";
	case 'D': return "delete";
	case 'T': return "truncate";
	case 'M': return "message";
	default: return "pgoutput";
	}
}

int pgoutput_decode(struct pgoutput *d, const uint8_t *buf, size_t len, struct pgoutput_msg *out)
{
	struct rd r = { .d = d, .msg = "pgoutput", .p = buf, .left = len };
	int rc;

	memset(out, 0, sizeof(*out));
	d->err[0] = '\0';
	if (len == 0 || !buf)
		return fail(&r, PGOUTPUT_ERR_UNKNOWN_TYPE, -EPROTONOSUPPORT,
			    "empty message (no type byte)");
	r.msg = msg_name(buf[0]);
	r.p++;
	r.left--;
	rc = decode(&r, buf[0], out);
	/* A Relation checked its own end before caching. */
	if (rc == 0 && buf[0] != 'R')
		rc = at_end(&r);
	if (rc)
		memset(out, 0, sizeof(*out));
	return rc;
}

/* ---- JSON -------------------------------------------------------------- */

__attribute__((format(printf, 4, 5)))
static int jfail(char *err, size_t errlen, int errnum, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return errnum;
}

/* "nsp.name" as a new JSON string. */
static json_t *table_name(const struct pgoutput_relation *rel)
{
	const char *nsp = rel->nspname[0] ? rel->nspname : "pg_catalog";
	char buf[2 * PGOUTPUT_NAME_MAX + 16];

	if (!utf8_valid((const unsigned char *)nsp, strlen(nsp)) ||
	    !utf8_valid((const unsigned char *)rel->relname, strlen(rel->relname)))
		return NULL;
	snprintf(buf, sizeof(buf), "%s.%s", nsp, rel->relname);
	return json_string(buf);
}

/* The object of @t's columns (only replica identity columns of a 'K'
 * tuple); unchanged values go to @unchanged when it is not NULL. */
static int tuple_json(const struct pgoutput_relation *rel, const struct pgoutput_tuple *t,
		      json_t **obj, json_t *unchanged, char *err, size_t errlen)
{
	json_t *o = json_object();

	if (!o)
		return jfail(err, errlen, -ENOMEM, "out of memory");
	for (size_t i = 0; i < t->ncolumns && i < rel->ncolumns; i++) {
		const struct pgoutput_column *c = &rel->columns[i];
		const struct pgoutput_value *v = &t->values[i];
		json_t *j;

		if (t->kind == 'K' && !(c->flags & PGOUTPUT_COLUMN_KEY))
			continue;
		if (!utf8_valid((const unsigned char *)c->name, strlen(c->name))) {
			json_decref(o);
			return jfail(err, errlen, -EILSEQ, "column %zu of %s: name not UTF-8", i + 1,
				     rel->relname);
		}
		if (v->state == PGOUTPUT_UNCHANGED) {
			if (unchanged && json_array_append_new(unchanged, json_string(c->name))) {
				json_decref(o);
				return jfail(err, errlen, -ENOMEM, "out of memory");
			}
			continue;
		}
		if (v->state == PGOUTPUT_TEXT) {
			if (!utf8_valid((const unsigned char *)v->data, v->len)) {
				json_decref(o);
				return jfail(err, errlen, -EILSEQ, "column %s of %s: value not UTF-8",
					     c->name, rel->relname);
			}
			j = json_stringn(v->data, v->len);
		} else {
			j = json_null();
		}
		if (json_object_set_new(o, c->name, j)) {
			json_decref(o);
			return jfail(err, errlen, -ENOMEM, "out of memory");
		}
	}
	*obj = o;
	return 0;
}

/* RFC 3339 UTC with microseconds; lib/clock.h has milliseconds only, and
 * Postgres gives commit times to the microsecond. */
static int format_time(int64_t us, char out[96])
{
	int64_t secs = us / 1000000, frac = us % 1000000;
	time_t t;
	struct tm tm;

	if (frac < 0) {
		frac += 1000000;
		secs--;
	}
	t = (time_t)secs;
	if (!gmtime_r(&t, &tm) || tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999)
		return -ERANGE;
	snprintf(out, 96, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)frac);
	return 0;
}

int pgoutput_change_json(const struct pgoutput_msg *m, const char *lsn, uint32_t xid,
			 int64_t commit_time_us, json_t **out, char *err, size_t errlen)
{
	static const char *const ops[] = { ['I'] = "insert", ['U'] = "update", ['D'] = "delete",
					   ['T'] = "truncate" };
	json_t *o = NULL, *tup, *unchanged = NULL;
	char when[96];
	int rc;

	if (err && errlen)
		err[0] = '\0';
	if (!out)
		return jfail(err, errlen, -EINVAL, "no output");
	*out = NULL;
	if (!m || !lsn)
		return jfail(err, errlen, -EINVAL, "no message or lsn");
	if (m->kind != PGOUTPUT_INSERT && m->kind != PGOUTPUT_UPDATE &&
	    m->kind != PGOUTPUT_DELETE && m->kind != PGOUTPUT_TRUNCATE)
		return jfail(err, errlen, -EINVAL, "message kind '%c' is not a change",
			     m->kind >= 0x20 && m->kind < 0x7f ? (char)m->kind : '?');
	if (m->kind != PGOUTPUT_TRUNCATE && !m->change.rel)
		return jfail(err, errlen, -EINVAL, "change without a relation");
	if (format_time(commit_time_us, when))
		return jfail(err, errlen, -ERANGE, "commit time %" PRId64 " out of range",
			     commit_time_us);
	if (!utf8_valid((const unsigned char *)lsn, strlen(lsn)))
		return jfail(err, errlen, -EILSEQ, "lsn not UTF-8");

	o = json_object();
	if (!o || json_object_set_new(o, "lsn", json_string(lsn)) ||
	    json_object_set_new(o, "xid", json_integer(xid)))
		goto nomem;
	if (m->kind == PGOUTPUT_TRUNCATE) {
		json_t *tables = json_array();

		if (json_object_set_new(o, "tables", tables))
			goto nomem;
		for (uint32_t i = 0; i < m->truncate.nrelids; i++) {
			json_t *name = table_name(m->truncate.rels[i]);

			if (!name) {
				rc = jfail(err, errlen, -EILSEQ, "truncate: table %" PRIu32
					   ": name not UTF-8", m->truncate.rels[i]->relid);
				goto fail;
			}
			if (json_array_append_new(tables, name))
				goto nomem;
		}
		if (json_object_set_new(o, "op", json_string("truncate")) ||
		    json_object_set_new(o, "cascade",
					json_boolean(m->truncate.options & 1)) ||
		    json_object_set_new(o, "restart_identity",
					json_boolean(m->truncate.options & 2)))
			goto nomem;
	} else {
		const struct pgoutput_relation *rel = m->change.rel;
		json_t *name = table_name(rel);

		if (!name) {
			rc = jfail(err, errlen, -EILSEQ, "table %" PRIu32 ": name not UTF-8",
				   rel->relid);
			goto fail;
		}
		if (json_object_set_new(o, "table", name) ||
		    json_object_set_new(o, "op", json_string(ops[m->kind])))
			goto nomem;
		if (m->change.new_tuple.kind) {
			unchanged = json_array();
			if (!unchanged)
				goto nomem;
			rc = tuple_json(rel, &m->change.new_tuple, &tup, unchanged, err, errlen);
			if (rc)
				goto fail;
			if (json_object_set_new(o, "new", tup))
				goto nomem;
			if (json_array_size(unchanged) &&
			    json_object_set(o, "unchanged", unchanged))
				goto nomem;
		}
		if (m->change.old_tuple.kind) {
			rc = tuple_json(rel, &m->change.old_tuple, &tup, NULL, err, errlen);
			if (rc)
				goto fail;
			if (json_object_set_new(o, "old", tup))
				goto nomem;
		}
	}
	if (json_object_set_new(o, "commit_time", json_string(when)))
		goto nomem;
	json_decref(unchanged);
	*out = o;
	return 0;
nomem:
	rc = jfail(err, errlen, -ENOMEM, "out of memory");
fail:
	json_decref(unchanged);
	json_decref(o);
	return rc;
}

/* A value pgoutput_change_dump() may leave out, and what that saves. */
struct omit_cand {
	json_t *obj;
	const char *key;
	size_t saves;
};

static int cand_cmp(const void *a, const void *b)
{
	const struct omit_cand *x = a, *y = b;

	return x->saves < y->saves ? 1 : x->saves > y->saves ? -1 : 0;
}

/* Appends @ev's string values of "new" and "old" to @v (room for all). */
static size_t omit_candidates(json_t *ev, struct omit_cand *v)
{
	static const char *const parts[] = { "new", "old" };
	size_t n = 0;

	for (size_t p = 0; p < 2; p++) {
		json_t *obj = json_object_get(ev, parts[p]), *val;
		const char *key;

		json_object_foreach(obj, key, val) {
			char *one;

			if (!json_is_string(val))
				continue;
			/* "key":value, goes and "key", comes: the value's JSON
			 * and one byte. */
			one = json_dumps(val, JSON_COMPACT | JSON_ENCODE_ANY);
			v[n++] = (struct omit_cand){ .obj = obj, .key = key,
						     .saves = one ? strlen(one) + 1 : 0 };
			free(one);
		}
	}
	return n;
}

/* Names @key in @ev's "omitted" (once) and removes it from @obj. */
static int omit(json_t *ev, json_t *obj, const char *key)
{
	json_t *names = json_object_get(ev, "omitted"), *name;
	size_t i;
	bool named = false;

	if (!names) {
		names = json_array();
		if (!names || json_object_set_new(ev, "omitted", names))
			return -ENOMEM;
	}
	json_array_foreach(names, i, name)
		named = named || strcmp(json_string_value(name), key) == 0;
	if (!named && json_array_append_new(names, json_string(key)))
		return -ENOMEM;
	return json_object_del(obj, key) == 0 ? 0 : -ENOMEM;
}

int pgoutput_change_dump(json_t *ev, size_t limit, char **out, size_t *omitted)
{
	struct omit_cand *v = NULL;
	size_t n = 0, len, next = 0, left = 0;
	char *s;
	int rc = 0;

	*out = NULL;
	*omitted = 0;
	s = json_dumps(ev, JSON_COMPACT);
	if (!s)
		return -ENOMEM;
	len = strlen(s);
	if (len <= limit) {
		*out = s;
		return 0;
	}
	free(s);
	s = NULL;
	n = json_object_size(json_object_get(ev, "new")) +
	    json_object_size(json_object_get(ev, "old"));
	v = n ? calloc(n, sizeof(*v)) : NULL;
	if (n && !v)
		return -ENOMEM;
	n = v ? omit_candidates(ev, v) : 0;
	if (n)
		qsort(v, n, sizeof(*v), cand_cmp);
	/* Largest first, as many as the estimate says; then dump and check,
	 * one more at a time while it still does not fit (the estimate
	 * ignores the "omitted" key itself).  Keys are copied: omit() frees
	 * them with their values. */
	while (rc == 0) {
		/* The first time, room for ,"omitted":[] too. */
		left = len + (json_object_get(ev, "omitted") ? 0 : 13);
		while (next < n && left > limit) {
			char *key = strdup(v[next].key);

			left -= v[next].saves < left ? v[next].saves : left;
			rc = key ? omit(ev, v[next].obj, key) : -ENOMEM;
			free(key);
			next++;
			if (rc)
				break;
		}
		if (rc)
			break;
		s = json_dumps(ev, JSON_COMPACT);
		if (!s) {
			rc = -ENOMEM;
			break;
		}
		len = strlen(s);
		if (len <= limit)
			break;
		free(s);
		s = NULL;
		if (next >= n)
			rc = -EMSGSIZE;
		else
			len = limit + 1;  /* one more, then check again */
	}
	free(v);
	*omitted = next;
	if (rc == 0)
		*out = s;
	return rc;
}
