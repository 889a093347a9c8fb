/*
 * tests/fuzz/fuzz_pgoutput.c - libFuzzer target for pgoutput_decode(),
 * pgoutput_change_json() and pgoutput_change_dump().
 *
 * The input is a stream of messages, each a 2-byte big-endian length and
 * that many bytes (a length past the end takes what is left), decoded in
 * order by ONE decoder, so that Relation messages prime the cache for the
 * changes after them.  The seeds in tests/fuzz/corpus/pgoutput are the
 * messages of tests/unit/pgoutput_fixture.h (real PostgreSQL bytes; all
 * but the 100 kB one) framed so: the whole stream, and each transaction
 * after the Relation and Type messages sent before it.  Each
 * message is copied into an allocation of exactly its size, so ASan sees
 * any read past it.
 *
 * Checked: a refusal is a negative errno, counted once, with a line and a
 * zeroed result; an accepted change points only into its message and
 * into the cache, has the relation's column count, and becomes JSON (or
 * -EILSEQ for bytes that are not UTF-8) that dumps; the cache never holds
 * more than its bound.
 *
 *   CC=clang cmake -DMERIDIAN_FUZZ=ON -DBUILD_TESTING=ON ...
 *   fuzz_pgoutput -max_total_time=60 tests/fuzz/corpus/pgoutput
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "storage/pgoutput.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t total(const struct pgoutput *p)
{
	uint64_t n = 0;

	for (int k = 0; k < PGOUTPUT_ERR_KINDS; k++)
		n += pgoutput_counters(p)[k];
	return n;
}

static void check_tuple(const struct pgoutput_relation *rel, const struct pgoutput_tuple *t,
			const uint8_t *msg, size_t len)
{
	if (!t->kind) {
		if (t->ncolumns || t->values)
			abort();
		return;
	}
	if (t->ncolumns != rel->ncolumns)
		abort();
	for (unsigned i = 0; i < t->ncolumns; i++) {
		const struct pgoutput_value *v = &t->values[i];

		if (v->state == PGOUTPUT_TEXT) {
			if ((const uint8_t *)v->data < msg ||
			    (const uint8_t *)v->data + v->len > msg + len)
				abort();
		} else if (v->data || v->len ||
			   (v->state != PGOUTPUT_NULL && v->state != PGOUTPUT_UNCHANGED)) {
			abort();
		}
	}
}

static void check_json(const struct pgoutput_msg *m)
{
	json_t *j = NULL;
	char err[128], *s;
	int rc = pgoutput_change_json(m, "0/16B374D8", 812, 1763775034123456LL, &j, err,
				      sizeof(err));

	if (rc == -EILSEQ && !j && err[0])
		return;
	if (rc != 0 || !j)
		abort();
	s = json_dumps(j, JSON_COMPACT);
	if (!s)
		abort();
	/* Squeezed to a bound a little under its size: it fits, or says it
	 * cannot, and never goes over. */
	size_t limit = strlen(s) * 3 / 4, omitted;
	char *fit = NULL;

	free(s);
	rc = pgoutput_change_dump(j, limit, &fit, &omitted);
	if ((rc == 0 && (!fit || strlen(fit) > limit)) || (rc != 0 && (rc != -EMSGSIZE || fit)))
		abort();
	free(fit);
	json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct pgoutput_msg zero;
	struct pgoutput *p = pgoutput_new();
	struct pgoutput_msg m;

	if (!p)
		abort();
	while (size >= 2) {
		size_t n = (size_t)data[0] << 8 | data[1];
		uint64_t before = total(p);
		uint8_t *msg;
		int rc;

		data += 2;
		size -= 2;
		if (n > size)
			n = size;
		msg = malloc(n ? n : 1);
		if (!msg)
			abort();
		memcpy(msg, data, n);
		data += n;
		size -= n;

		rc = pgoutput_decode(p, msg, n, &m);
		if (rc) {
			if (rc >= 0 || total(p) != before + 1 || !pgoutput_error(p)[0] ||
			    memcmp(&m, &zero, sizeof(m)) != 0)
				abort();
		} else {
			if (total(p) != before || pgoutput_error(p)[0])
				abort();
			switch (m.kind) {
			case PGOUTPUT_INSERT:
			case PGOUTPUT_UPDATE:
			case PGOUTPUT_DELETE:
				if (m.change.rel != pgoutput_relation(p, m.change.rel->relid))
					abort();
				check_tuple(m.change.rel, &m.change.old_tuple, msg, n);
				check_tuple(m.change.rel, &m.change.new_tuple, msg, n);
				check_json(&m);
				break;
			case PGOUTPUT_TRUNCATE:
				for (uint32_t i = 0; i < m.truncate.nrelids; i++)
					if (m.truncate.rels[i] !=
					    pgoutput_relation(p, m.truncate.rels[i]->relid))
						abort();
				check_json(&m);
				break;
			case PGOUTPUT_RELATION:
				if (m.relation != pgoutput_relation(p, m.relation->relid) ||
				    m.relation->ncolumns > PGOUTPUT_COLUMNS_MAX ||
				    strlen(m.relation->relname) > PGOUTPUT_NAME_MAX)
					abort();
				break;
			default:
				break;
			}
		}
		free(msg);
		if (pgoutput_relation_count(p) > PGOUTPUT_RELATIONS_MAX)
			abort();
	}
	pgoutput_delete(p);
	return 0;
}
