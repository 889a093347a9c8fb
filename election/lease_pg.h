/*
 * election/lease_pg.h - the postgres backend's lease, on the libuv loop:
 * runs the election machine's ACQUIRE/RENEW/RELEASE requests as single
 * SQL statements over one asynchronous libpq connection
 * (storage/pgconn.h) and answers with an election_lease_result.
 *
 * The table (created if missing; a concurrent creation by another agent
 * is tolerated):
 *
 *   meridian_lease(name text primary key, holder text, holder_id text,
 *                  term bigint, expires_at timestamptz, acquired_at timestamptz)
 *
 * One row per lease name (--election-lease-name, default "meridian"), so
 * several clusters can share a database.  Every time is the server's
 * now(); the agents' clocks never enter the table.  holder_id is the
 * process identity (the gossip id), so a restarted agent with the same
 * name is a new holder and cannot renew its previous life's lease.
 *
 * ACQUIRE (with the caller's highest known term, max): one statement
 * inserts the row (term max + 1) or takes it over when it has expired or
 * its holder_id is ours (an earlier ACQUIRE of ours whose answer was lost:
 * timed out, or the connection dropped), setting term = greatest(term,
 * max) + 1 in the same statement, and reports the row as it is afterwards:
 * held or not, holder, term, time left.  A max beyond bigint (2^63 - 1)
 * fails the request (status < 0).  RENEW: extends the row only while
 * holder_id and term are ours and
 * it has not expired.  RELEASE: sets expires_at = now() when holder_id and
 * term are ours.  Parameters always travel separately from the SQL text.
 *
 * The connection sets keepalives (idle 1 s, interval 1 s, count 3),
 * tcp_user_timeout and connect_timeout, so a dead server or peer is
 * noticed in seconds, and application_name "meridian <node>".  A request
 * that gets no answer within timeout_ms fails (status -ETIMEDOUT) and the
 * connection is dropped and remade, so a hung server cannot hold the
 * machine past its deadline.
 */
#ifndef MERIDIAN_ELECTION_LEASE_PG_H
#define MERIDIAN_ELECTION_LEASE_PG_H

#include <stdint.h>
#include <uv.h>

#include "election/election.h"

struct lease_pg_config {
	const char *conninfo;         /* PRIMARY_DATABASE_URL (copied) */
	const char *lease_name;       /* row key (copied) */
	const char *node;             /* holder name (copied) */
	uint64_t node_id;             /* holder id (process identity) */
	uint32_t lease_ms;            /* lease length set by ACQUIRE/RENEW */
	uint32_t timeout_ms;          /* per request, connecting included */
};

struct lease_pg;

typedef void (*lease_pg_done_fn)(void *ctx, const struct election_lease_result *r);

/*
 * Creates the adapter; connects lazily on the first request.  NULL when
 * out of memory or the config is invalid.
 */
struct lease_pg *lease_pg_new(uv_loop_t *loop, const struct lease_pg_config *cfg,
			      lease_pg_done_fn done, void *ctx);

/*
 * Starts @op (@term: ours for RENEW/RELEASE, the caller's max_term for
 * ACQUIRE, see above).  @done is called exactly once per
 * accepted request, never from inside this call.  Returns 0, or -EBUSY
 * when a request is already in flight (nothing started).
 */
int lease_pg_request(struct lease_pg *l, enum election_lease_op op, uint64_t term);

/* Closes the connection; a request in flight is dropped without an
 * answer.  Frees itself once libuv has closed its handles (run the
 * loop).  NULL is a no-op. */
void lease_pg_close(struct lease_pg *l);

struct lease_pg_stats {
	uint64_t requests;
	uint64_t failures;
	uint64_t connects;            /* connections made */
	uint64_t connect_failures;
	uint64_t timeouts;
	int connected;                /* 1 when a connection is up now */
	char last_error[ELECTION_ERROR_MAX];
};
void lease_pg_stats_get(const struct lease_pg *l, struct lease_pg_stats *out);

#endif
