/*
 * election/lease_pg.c - the postgres lease adapter (see lease_pg.h).
 *
 * A request runs as at most three statements on one storage/pgconn
 * connection, one after the other, all within the request's timeout_ms
 * (each statement gets what is left of it):
 *
 *   1. CREATE TABLE IF NOT EXISTS, once per connection: when the
 *      connection the previous CREATE ran on (pgconn's conn_serial) is
 *      still the live one, it is skipped.  SQLSTATE 23505 (unique
 *      violation in pg_type), 42P07 (duplicate table) or 42710 (type
 *      already exists) means another agent created the table at the same
 *      moment: proceed.
 *   2. The operation, ONE statement: a CTE that writes (INSERT ... ON
 *      CONFLICT DO UPDATE ... WHERE expired or our holder id, or UPDATE
 *      ... WHERE ours),
 *      RETURNING the row it wrote, UNION ALL the current row when the CTE
 *      wrote nothing.  All times and the "held"/"valid"/"remaining_ms"
 *      columns are computed by the server from its now().
 *   3. Only when (2) returned no row: a plain SELECT of the row, for the
 *      report.  The outer SELECT of (2) reads the snapshot taken when the
 *      statement began, so a row inserted by a concurrent ACQUIRE that
 *      committed while ours waited on it is invisible there (ours then
 *      took nothing: the conflict check saw that row).  A fresh
 *      statement sees it.  Nothing is decided by (3): held stays false.
 *
 * The answer is parsed from the row: held, holder, term, valid,
 * remaining_ms; no row at all is term 0, holder "".  A request in flight
 * when lease_pg_close() is called is dropped with the connection (pgconn
 * calls no callback after its close), so the done callback never runs
 * after close.  lease_pg_request() fails with -EINVAL for an unknown op
 * and -ENOMEM when the first statement cannot be queued (nothing started
 * in either case), besides -EBUSY.
 */
#include "election/lease_pg.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "lib/str.h"
#include "storage/pgconn.h"

#define COMPONENT "lease"
#define LEASE_NAME_MAX 256            /* bytes of a lease name */

static const char SQL_CREATE[] =
	"CREATE TABLE IF NOT EXISTS meridian_lease ("
	" name text PRIMARY KEY,"
	" holder text NOT NULL,"
	" holder_id text NOT NULL,"
	" term bigint NOT NULL,"
	" expires_at timestamptz NOT NULL,"
	" acquired_at timestamptz NOT NULL)";

/* The report columns, for a row source with holder, term, expires_at. */
#define REPORT_COLS                                                              \
	" holder, term, expires_at > now() AS valid,"                            \
	" greatest(0, floor(extract(epoch FROM expires_at - now()) * 1000))::bigint" \
	" AS remaining_ms"

/* The current row, unless the CTE @cte wrote one. */
#define CURRENT_ROW(cte)                                                         \
	" UNION ALL SELECT false," REPORT_COLS " FROM meridian_lease"           \
	" WHERE name = $1 AND NOT EXISTS (SELECT 1 FROM " cte ")"

/* $1 name, $2 holder, $3 holder_id, $4 lease ms, $5 the caller's max term.
 * The new term is above both the row's and the caller's, so a grant is
 * always above every term the machine has seen.  The row is taken when it
 * has expired or when its holder id is ours: an ACQUIRE of ours that
 * committed after we gave up on it (timeout, dropped connection) left a
 * lease we do not believe in, and the machine only ACQUIREs as a follower,
 * so taking it back (under a new term) is safe and spares everyone the
 * wait for its expiry.  A max term beyond bigint fails the statement. */
static const char SQL_ACQUIRE[] =
	"WITH took AS ("
	" INSERT INTO meridian_lease AS t"
	" (name, holder, holder_id, term, expires_at, acquired_at)"
	" VALUES ($1, $2, $3, $5::bigint + 1,"
	" now() + make_interval(secs => $4::bigint / 1000.0), now())"
	" ON CONFLICT (name) DO UPDATE"
	" SET holder = excluded.holder, holder_id = excluded.holder_id,"
	" term = greatest(t.term, $5::bigint) + 1,"
	" expires_at = excluded.expires_at, acquired_at = now()"
	" WHERE t.expires_at <= now() OR t.holder_id = excluded.holder_id"
	" RETURNING t.holder, t.term, t.expires_at)"
	" SELECT true AS held," REPORT_COLS " FROM took"
	CURRENT_ROW("took");

/* $1 name, $2 holder_id, $3 term, $4 lease ms. */
static const char SQL_RENEW[] =
	"WITH kept AS ("
	" UPDATE meridian_lease"
	" SET expires_at = now() + make_interval(secs => $4::bigint / 1000.0)"
	" WHERE name = $1 AND holder_id = $2 AND term = $3::bigint AND expires_at > now()"
	" RETURNING holder, term, expires_at)"
	" SELECT true AS held," REPORT_COLS " FROM kept"
	CURRENT_ROW("kept");

/* $1 name, $2 holder_id, $3 term.  Only a live lease is cut short, so a
 * late RELEASE never moves an expiry later. */
static const char SQL_RELEASE[] =
	"WITH gone AS ("
	" UPDATE meridian_lease SET expires_at = now()"
	" WHERE name = $1 AND holder_id = $2 AND term = $3::bigint AND expires_at > now()"
	" RETURNING holder, term, expires_at)"
	" SELECT false AS held," REPORT_COLS " FROM gone"
	CURRENT_ROW("gone");

/* $1 name. */
static const char SQL_REPORT[] =
	"SELECT false AS held," REPORT_COLS " FROM meridian_lease WHERE name = $1";

enum step {
	STEP_NONE = 0,
	STEP_CREATE,
	STEP_OP,
	STEP_REPORT,
};

struct lease_pg {
	uv_loop_t *loop;
	struct pgconn *conn;
	lease_pg_done_fn done;
	void *ctx;

	char *name;
	char node[ELECTION_NAME_MAX + 1];
	char holder_id[24];
	char lease_ms[16];
	uint32_t timeout_ms;

	uint64_t created_serial;      /* connection the table was checked on */

	/* The request in flight. */
	enum step step;
	enum election_lease_op op;
	uint64_t term;
	uint64_t deadline;            /* loop time, ms */

	struct lease_pg_stats stats;
};

/* Ends the request with @r (status < 0: @r->error says why).  Called from
 * pgconn's callbacks only; @l must not be touched after (done may close). */
static void finish(struct lease_pg *l, struct election_lease_result *r)
{
	r->op = l->op;
	l->step = STEP_NONE;
	if (r->status < 0) {
		l->stats.failures++;
		if (r->status == -ETIMEDOUT)
			l->stats.timeouts++;
		str_copy(l->stats.last_error, sizeof(l->stats.last_error), r->error);
		LOG_RATELIMITED(LOG_WARNING, COMPONENT, "%s failed: %s",
				election_lease_op_name(l->op), r->error);
	}
	l->done(l->ctx, r);
}

static void fail(struct lease_pg *l, int status, const char *fmt, const char *arg)
{
	struct election_lease_result r;

	memset(&r, 0, sizeof(r));
	r.status = status;
	snprintf(r.error, sizeof(r.error), fmt, arg);
	finish(l, &r);
}

static void on_reply(void *arg, const struct pgconn_reply *rep);

/* Queues @sql for the current step with what is left of the deadline. */
static int send_step(struct lease_pg *l, enum step step)
{
	const char *params[5];
	const char *sql;
	char term[24];
	uint64_t now = uv_now(l->loop);
	int n;

	snprintf(term, sizeof(term), "%" PRIu64, l->term);
	params[0] = l->name;
	switch (step) {
	case STEP_CREATE:
		sql = SQL_CREATE;
		n = 0;
		break;
	case STEP_REPORT:
		sql = SQL_REPORT;
		n = 1;
		break;
	default:
		if (l->op == ELECTION_LEASE_ACQUIRE) {
			sql = SQL_ACQUIRE;
			params[1] = l->node;
			params[2] = l->holder_id;
			params[3] = l->lease_ms;
			params[4] = term;
			n = 5;
		} else {
			sql = l->op == ELECTION_LEASE_RENEW ? SQL_RENEW : SQL_RELEASE;
			params[1] = l->holder_id;
			params[2] = term;
			params[3] = l->lease_ms;
			n = l->op == ELECTION_LEASE_RENEW ? 4 : 3;
		}
		break;
	}
	if (now >= l->deadline)
		return -ETIMEDOUT;
	l->step = step;
	return pgconn_query(l->conn, sql, n, n ? params : NULL, (uint32_t)(l->deadline - now),
			    on_reply, l);
}

/* Moves to @step from inside a reply; a failure to queue ends the request. */
static void next_step(struct lease_pg *l, enum step step)
{
	int rc = send_step(l, step);

	if (rc == -ETIMEDOUT)
		fail(l, -ETIMEDOUT, "%s: timed out", election_lease_op_name(l->op));
	else if (rc < 0)
		fail(l, rc, "cannot queue the statement: %s", strerror(-rc));
}

static bool parse_bool(const char *s)
{
	return s && s[0] == 't';
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		return -EINVAL;
	*out = v;
	return 0;
}

/* The report row of @res (0 or 1 rows, 5 columns) into @r. */
static int parse_report(const PGresult *res, struct election_lease_result *r)
{
	uint64_t term, remaining;

	if (PQnfields(res) != 5)
		return -EPROTO;
	if (PQntuples(res) == 0)
		return 0;
	if (PQgetisnull(res, 0, 1) || PQgetisnull(res, 0, 2) ||
	    parse_u64(PQgetvalue(res, 0, 2), &term) < 0 ||
	    parse_u64(PQgetvalue(res, 0, 4), &remaining) < 0)
		return -EPROTO;
	r->held = parse_bool(PQgetvalue(res, 0, 0));
	str_copy(r->holder, sizeof(r->holder), PQgetvalue(res, 0, 1));
	r->term = term;
	r->holder_valid = parse_bool(PQgetvalue(res, 0, 3));
	r->remaining_ms = r->holder_valid ?
		(remaining > UINT32_MAX ? UINT32_MAX : (uint32_t)remaining) : 0;
	return 0;
}

static void on_reply(void *arg, const struct pgconn_reply *rep)
{
	struct lease_pg *l = arg;
	struct election_lease_result r;
	enum step step = l->step;

	if (rep->status < 0) {
		if (step == STEP_CREATE && rep->status == -EREMOTEIO &&
		    (!strcmp(rep->sqlstate, "23505") || !strcmp(rep->sqlstate, "42P07") ||
		     !strcmp(rep->sqlstate, "42710"))) {
			/* Created concurrently by another agent: it exists. */
			l->created_serial = rep->conn_serial;
			next_step(l, STEP_OP);
			return;
		}
		memset(&r, 0, sizeof(r));
		r.status = rep->status;
		snprintf(r.error, sizeof(r.error), "%s%s: %s", election_lease_op_name(l->op),
			 step == STEP_CREATE ? " (creating the table)" : "", rep->error);
		finish(l, &r);
		return;
	}
	if (step == STEP_CREATE) {
		l->created_serial = rep->conn_serial;
		next_step(l, STEP_OP);
		return;
	}
	memset(&r, 0, sizeof(r));
	if (parse_report(rep->res, &r) < 0) {
		fail(l, -EPROTO, "%s: unexpected answer from the server",
		     election_lease_op_name(l->op));
		return;
	}
	if (step == STEP_OP && PQntuples(rep->res) == 0) {
		/* See the top of this file: look again with a fresh snapshot. */
		next_step(l, STEP_REPORT);
		return;
	}
	if (step == STEP_REPORT)
		r.held = false;
	finish(l, &r);
}

struct lease_pg *lease_pg_new(uv_loop_t *loop, const struct lease_pg_config *cfg,
			      lease_pg_done_fn done, void *ctx)
{
	struct pgconn_config pc;
	struct lease_pg *l;
	char app[ELECTION_NAME_MAX + 16], err[PGCONN_ERROR_MAX];

	if (!loop || !cfg || !done || !cfg->conninfo || !cfg->lease_name || !cfg->node ||
	    !*cfg->lease_name || strlen(cfg->lease_name) > LEASE_NAME_MAX || !*cfg->node ||
	    strlen(cfg->node) > ELECTION_NAME_MAX || !cfg->lease_ms || !cfg->timeout_ms)
		return NULL;
	l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->name = strdup(cfg->lease_name);
	if (!l->name) {
		free(l);
		return NULL;
	}
	l->loop = loop;
	l->done = done;
	l->ctx = ctx;
	str_copy(l->node, sizeof(l->node), cfg->node);
	snprintf(l->holder_id, sizeof(l->holder_id), "%016" PRIx64, cfg->node_id);
	snprintf(l->lease_ms, sizeof(l->lease_ms), "%" PRIu32, cfg->lease_ms);
	l->timeout_ms = cfg->timeout_ms;

	snprintf(app, sizeof(app), "meridian %s", cfg->node);
	memset(&pc, 0, sizeof(pc));
	pc.conninfo = cfg->conninfo;
	pc.application_name = app;
	pc.connect_timeout_ms = cfg->timeout_ms;
	pc.query_timeout_ms = cfg->timeout_ms;
	/* The server gives up when we have: no statement outlives its caller. */
	pc.statement_timeout_ms = cfg->timeout_ms;
	pc.keepalives_idle_s = 1;
	pc.keepalives_interval_s = 1;
	pc.keepalives_count = 3;
	pc.tcp_user_timeout_ms = cfg->timeout_ms;
	pc.max_queue = 2;
	/* Reconnects stay within a renewal interval or so: the machine does
	 * its own backing off between requests. */
	pc.backoff_initial_ms = 50;
	pc.backoff_max_ms = cfg->timeout_ms < 1000 ? 1000 : cfg->timeout_ms;
	pc.seed = cfg->node_id;
	l->conn = pgconn_new(loop, &pc, err, sizeof(err));
	if (!l->conn) {
		LOG(LOG_ERROR, COMPONENT, "bad database connection settings: %s", err);
		free(l->name);
		free(l);
		return NULL;
	}
	return l;
}

int lease_pg_request(struct lease_pg *l, enum election_lease_op op, uint64_t term)
{
	int rc;

	if (op != ELECTION_LEASE_ACQUIRE && op != ELECTION_LEASE_RENEW &&
	    op != ELECTION_LEASE_RELEASE)
		return -EINVAL;
	if (l->step != STEP_NONE)
		return -EBUSY;
	l->op = op;
	l->term = term;
	l->deadline = uv_now(l->loop) + l->timeout_ms;
	/* The table is checked once per connection: skip it when the live
	 * connection is the one it was checked on. */
	rc = send_step(l, pgconn_connected(l->conn) && pgconn_serial(l->conn) == l->created_serial ?
				  STEP_OP : STEP_CREATE);
	if (rc < 0) {
		l->step = STEP_NONE;
		return rc == -EAGAIN || rc == -ETIMEDOUT ? -EBUSY : rc;
	}
	l->stats.requests++;
	return 0;
}

void lease_pg_close(struct lease_pg *l)
{
	if (!l)
		return;
	pgconn_close(l->conn);        /* frees itself once its handles close */
	free(l->name);
	free(l);
}

void lease_pg_stats_get(const struct lease_pg *l, struct lease_pg_stats *out)
{
	struct pgconn_stats s;

	pgconn_stats_get(l->conn, &s);
	*out = l->stats;
	out->connects = s.connects;
	out->connect_failures = s.connect_failures;
	out->connected = s.connected;
}
