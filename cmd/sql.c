/*
 * cmd/sql.c - POST /v1/sql and the RPC method sql.write (cmd/sql.h says
 * what they promise).
 *
 * One struct sqlop per request, whichever door it came in by (HTTP, or
 * RPC from a peer), walks through at most four steps, each an
 * asynchronous call whose callback starts the next:
 *
 *   read:  [wait for min_lsn] -> statement on the replica -> answer
 *   write: statement on the primary -> its LSN -> [wait] -> answer
 *          or, outside the primary region:
 *          sql.write by RPC (statement + LSN there) -> [wait] -> answer
 *
 * Every live op is on one list, so closing answers them all.  An op whose
 * asker went away (RPC cancel) is marked and freed when its pending
 * callback comes back, never while a pool or the RPC client still holds
 * it.
 */
#include "cmd/sql.h"

#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "cmd/agent.h"
#include "cmd/api.h"
#include "lib/log.h"
#include "region/handlers.h"
#include "region/region.h"
#include "region/rpc.h"
#include "storage/lsn.h"
#include "storage/pool.h"
#include "storage/sqlresult.h"

#define FORWARD_TRIES_MAX 3
#define FORWARD_RESULT_MAX (RPC_BODY_MAX - 4096)
#define TIMEOUT_MS_DEFAULT 5000
#define TIMEOUT_MS_MAX 300000

static const char replay_sql[] =
	"select (case when pg_is_in_recovery() then pg_last_wal_replay_lsn() "
	"else pg_current_wal_lsn() end)::text, "
	"case when pg_is_in_recovery() then coalesce(extract(epoch from now() - "
	"pg_last_xact_replay_timestamp()), -1) else 0 end";
static const char lsn_sql[] = "select pg_current_wal_insert_lsn()::text";

enum origin { FROM_HTTP, FROM_RPC };

struct sqlop {
	struct sqlop *prev, *next;
	struct sqlfront *s;
	enum origin origin;
	struct http_request *req;        /* FROM_HTTP */
	rpc_reply_fn reply;              /* FROM_RPC */
	void *reply_ctx;
	bool cancelled;                  /* the RPC caller gave up: answer nobody */
	bool pending;                    /* a pool, the RPC client or a waiter holds us */
	bool write, wait;
	char *sql;
	char *params[PGCONN_MAX_PARAMS];
	int nparams;
	uint64_t min_lsn, lsn;
	uint32_t timeout_ms;
	uint64_t started;                /* uv_now() */
	uint64_t wait_started;
	uint64_t wait_id;
	json_t *result;                  /* the statement's result, once it ran */
	char ran_node[GOSSIP_NAME_MAX + 1], ran_region[REGION_NAME_MAX + 1];
	char tried[FORWARD_TRIES_MAX][GOSSIP_NAME_MAX + 1];
	size_t ntried;
};

struct sqlfront {
	uv_loop_t *loop;
	struct agent *a;
	const struct config *cfg;
	bool in_primary;                 /* our region is the primary region */
	struct pgpool *primary, *replica;   /* replica may be == primary */
	bool replica_is_primary;
	struct lsnwait *waiters;
	uv_timer_t poll_timer, expire_timer, probe_timer;
	bool polling, probing, closing, waiters_failing;
	char waiters_error[PGCONN_ERROR_MAX];
	struct sqlop *ops;
	uint32_t inflight;
	uint64_t max_written_lsn;
	double lag_seconds;
	struct rpc_serve_ops next;       /* the handlers, for every other method */
	int handles;
	uint64_t reads, writes, forwarded, failures, waits, wait_timeouts;
};

/* ------------------------------------------------------------------ */
/* Ops                                                                 */
/* ------------------------------------------------------------------ */

static void op_free(struct sqlop *op)
{
	struct sqlfront *s = op->s;

	if (op->prev)
		op->prev->next = op->next;
	else
		s->ops = op->next;
	if (op->next)
		op->next->prev = op->prev;
	s->inflight--;
	free(op->sql);
	for (int i = 0; i < op->nparams; i++)
		free(op->params[i]);
	json_decref(op->result);
	free(op);
}

static struct sqlop *op_new(struct sqlfront *s)
{
	struct sqlop *op = calloc(1, sizeof(*op));

	if (op == NULL)
		return NULL;
	op->s = s;
	op->started = uv_now(s->loop);
	op->timeout_ms = TIMEOUT_MS_DEFAULT;
	op->next = s->ops;
	if (s->ops)
		s->ops->prev = op;
	s->ops = op;
	s->inflight++;
	return op;
}

/* The HTTP status and the CLI's view of each error code (docs/api.md). */
static int error_status(const char *code)
{
	static const struct {
		const char *code;
		int status;
	} map[] = {
		{ "bad_request", 400 },        { "sql_error", 422 },
		{ "result_too_large", 413 },   { "database_unavailable", 503 },
		{ "overloaded", 429 },         { "replica_lag_timeout", 504 },
		{ "outcome_unknown", 504 },    { "timeout", 504 },
		{ "unavailable", 503 },        { "no_nodes_in_region", 503 },
		{ "no_such_region", 503 },
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(map[i].code, code) == 0)
			return map[i].status;
	return 502;
}

/* Sends @body (consumed) to whoever asked, frees @op. */
static void op_answer(struct sqlop *op, int status, json_t *body)
{
	struct rpc_serve_reply r = { .error = RPC_E_NONE };
	char *text;

	if (op->cancelled) {
		json_decref(body);
		op_free(op);
		return;
	}
	if (op->origin == FROM_HTTP) {
		api_respond_json(op->req, status, body, NULL);
		op_free(op);
		return;
	}
	/* The RPC call itself succeeded: the outcome, good or not, is in
	 * the payload. */
	text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (text) {
		r.result = (const uint8_t *)text;
		r.result_len = strlen(text);
	} else {
		r.error = RPC_E_REMOTE_ERROR;
		r.message = "out of memory";
	}
	op->reply(op->reply_ctx, &r);
	free(text);
	op_free(op);
}

/*
 * The body of an error answer to @op: {"error": @err}, and for a write that
 * did commit (its LSN is known) also "committed": true, the LSN and the
 * statement's result, so that nobody retries a write that happened.
 */
static json_t *error_body(struct sqlop *op, json_t *err)
{
	json_t *body = op->write && op->lsn && op->result ? op->result : json_object();
	char lsn[LSN_STR_MAX];

	op->result = NULL;
	if (body == NULL) {
		json_decref(err);
		return NULL;
	}
	json_object_set_new(body, "error", err);
	if (op->write && op->lsn) {
		lsn_format(op->lsn, lsn);
		json_object_set_new(body, "committed", json_true());
		json_object_set_new(body, "lsn", json_string(lsn));
	}
	return body;
}

static void op_fail(struct sqlop *op, const char *code, const char *sqlstate, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void op_fail(struct sqlop *op, const char *code, const char *sqlstate, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	json_t *err;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	op->s->failures++;
	err = json_pack("{s:s,s:s}", "code", code, "message", msg);
	if (err && sqlstate && *sqlstate)
		json_object_set_new(err, "sqlstate", json_string(sqlstate));
	if (err && op->ran_node[0])
		json_object_set_new(err, "node", json_string(op->ran_node));
	op_answer(op, error_status(code), error_body(op, err));
}

/* Passes on an error object from a peer (consumed). */
static void op_fail_with(struct sqlop *op, json_t *err)
{
	const char *code = json_string_value(json_object_get(err, "code"));

	op->s->failures++;
	op_answer(op, error_status(code ? code : "remote_error"), json_pack("{s:o}", "error", err));
}

static void op_ok(struct sqlop *op)
{
	json_t *r = op->result;
	char lsn[LSN_STR_MAX];

	op->result = NULL;
	if (op->write) {
		lsn_format(op->lsn, lsn);
		json_object_set_new(r, "lsn", json_string(lsn));
	}
	if (op->origin == FROM_HTTP) {
		json_object_set_new(r, "node", json_string(op->ran_node));
		json_object_set_new(r, "region", json_string(op->ran_region));
		if (op->wait || op->min_lsn)
			json_object_set_new(r, "waited_ms", json_integer((json_int_t)(op->wait_started ?
				uv_now(op->s->loop) - op->wait_started : 0)));
	}
	op_answer(op, 200, r);
}

/* Time left of @op's budget, at least 1 ms. */
static uint32_t op_left(struct sqlop *op)
{
	uint64_t spent = uv_now(op->s->loop) - op->started;

	return spent >= op->timeout_ms ? 1 : (uint32_t)(op->timeout_ms - spent);
}

/* ------------------------------------------------------------------ */
/* Waiting for the replica                                             */
/* ------------------------------------------------------------------ */

static void poll_kick(struct sqlfront *s);
static void stmt_start(struct sqlop *op);
static void expire_arm(struct sqlfront *s);

static void op_waited(struct sqlop *op)
{
	if (op->write) {
		op_ok(op);
		return;
	}
	/* The wait had its own bound; the read gets its whole budget. */
	op->started = uv_now(op->s->loop);
	stmt_start(op);
}

static void wait_done(void *arg, int status, uint64_t replay)
{
	struct sqlop *op = arg;
	struct sqlfront *s = op->s;
	uint64_t target = op->write ? op->lsn : op->min_lsn;
	char want[LSN_STR_MAX], have[LSN_STR_MAX];

	op->pending = false;
	op->wait_id = 0;
	if (op->cancelled) {
		op_free(op);
		return;
	}
	if (status == 0) {
		op_waited(op);
		return;
	}
	lsn_format(target, want);
	lsn_format(replay, have);
	if (s->waiters_failing) {
		op_fail(op, "database_unavailable", NULL, "the local replica cannot be reached "
			"to wait for LSN %s: %s", want, s->waiters_error);
		return;
	}
	s->wait_timeouts++;
	op_fail(op, "replica_lag_timeout", NULL, "this region's replica has not replayed LSN %s "
		"after %llu ms: it is at %s, %llu bytes behind%s", want,
		(unsigned long long)(uv_now(s->loop) - op->wait_started), have,
		(unsigned long long)(target > replay ? target - replay : 0),
		op->write ? " (the write itself committed)" : "");
}

/* Holds @op until the replica has replayed @lsn, then op_waited(). */
static void wait_for(struct sqlop *op, uint64_t lsn)
{
	struct sqlfront *s = op->s;
	int rc;

	op->wait_started = uv_now(s->loop);
	if (s->replica == NULL) {
		op_fail(op, "database_unavailable", NULL, "no DATABASE_URL on node %s: nothing "
			"to wait on", s->cfg->node);
		return;
	}
	s->waits++;
	if (lsnwait_reached(s->waiters, lsn)) {
		op_waited(op);
		return;
	}
	rc = lsnwait_add(s->waiters, lsn, op->wait_started + s->cfg->replica_lag_timeout_ms,
			 wait_done, op, &op->wait_id);
	if (rc != 0) {
		op_fail(op, "overloaded", NULL, "too many requests waiting for the replica (%d)",
			SQL_WAITERS_MAX);
		return;
	}
	op->pending = true;
	expire_arm(s);
	poll_kick(s);
}

/* Every waiter fails at once: the replica is unreachable. */
static void waiters_fail(struct sqlfront *s, const char *why)
{
	snprintf(s->waiters_error, sizeof(s->waiters_error), "%s", why);
	s->waiters_failing = true;
	lsnwait_expire(s->waiters, UINT64_MAX);
	s->waiters_failing = false;
}

static void replay_seen(struct sqlfront *s, const PGresult *res)
{
	uint64_t lsn = 0;

	if (PQntuples(res) < 1)
		return;
	if (!PQgetisnull(res, 0, 0) && lsn_parse(PQgetvalue(res, 0, 0), &lsn) == 0)
		lsnwait_advance(s->waiters, lsn);
	if (PQnfields(res) > 1 && !PQgetisnull(res, 0, 1))
		s->lag_seconds = strtod(PQgetvalue(res, 0, 1), NULL);
}

static void poll_timer_fired(uv_timer_t *t)
{
	poll_kick(t->data);
}

static void poll_done(void *arg, const struct pgconn_reply *r)
{
	struct sqlfront *s = arg;

	s->polling = false;
	if (r->status != 0) {
		LOG_RATELIMITED(LOG_WARNING, "sql", "cannot read the replica's replay LSN: %s",
				r->error);
		waiters_fail(s, r->error);
		return;
	}
	replay_seen(s, r->res);
	expire_arm(s);
	if (lsnwait_count(s->waiters) > 0)
		uv_timer_start(&s->poll_timer, poll_timer_fired, SQL_POLL_MS, 0);
}

/* One poll at a time, and only while someone waits. */
static void poll_kick(struct sqlfront *s)
{
	int rc;

	if (s->polling || s->closing || lsnwait_count(s->waiters) == 0)
		return;
	rc = pgpool_query(s->replica, replay_sql, 0, NULL, 0, poll_done, s);
	if (rc == -EAGAIN) {
		/* Busy, not down: ask again shortly. */
		uv_timer_start(&s->poll_timer, poll_timer_fired, SQL_POLL_MS, 0);
		return;
	}
	if (rc != 0) {
		waiters_fail(s, strerror(-rc));
		return;
	}
	s->polling = true;
}

static void expire_fired(uv_timer_t *t)
{
	struct sqlfront *s = t->data;

	lsnwait_expire(s->waiters, uv_now(s->loop));
	expire_arm(s);
}

static void expire_arm(struct sqlfront *s)
{
	uint64_t next = lsnwait_next_deadline(s->waiters), now = uv_now(s->loop);

	if (next == UINT64_MAX || s->closing)
		uv_timer_stop(&s->expire_timer);
	else
		uv_timer_start(&s->expire_timer, expire_fired, next > now ? next - now : 0, 0);
}

/* The lag metric while nobody waits. */
static void probe_done(void *arg, const struct pgconn_reply *r)
{
	struct sqlfront *s = arg;

	s->probing = false;
	if (r->status == 0)
		replay_seen(s, r->res);
}

static void probe_fired(uv_timer_t *t)
{
	struct sqlfront *s = t->data;

	if (s->probing || s->polling || s->closing)
		return;
	if (pgpool_query(s->replica, replay_sql, 0, NULL, 0, probe_done, s) == 0)
		s->probing = true;
}

/* ------------------------------------------------------------------ */
/* Statements                                                          */
/* ------------------------------------------------------------------ */

/* A failed statement or LSN query: the error, as the caller should see it. */
static void stmt_failed(struct sqlop *op, const struct pgconn_reply *r, const char *where)
{
	switch (r->status) {
	case -EREMOTEIO: {
		/* pgconn says "SQLSTATE xxxxx: message"; the code travels apart. */
		const char *msg = r->error;

		if (strncmp(msg, "SQLSTATE ", 9) == 0 && strlen(msg) > 16 && msg[14] == ':')
			msg += 16;
		op_fail(op, "sql_error", r->sqlstate, "%s", msg);
		break;
	}
	case -ETIMEDOUT:
		if (op->write)
			op_fail(op, "outcome_unknown", NULL, "the write on %s got no answer within "
				"%u ms: it may or may not have committed", where, op->timeout_ms);
		else
			op_fail(op, "timeout", NULL, "no answer from %s within %u ms", where,
				op->timeout_ms);
		break;
	case -EFBIG:
		op_fail(op, "result_too_large", NULL, "%s from %s%s", r->error, where,
			op->write ? " (the write may or may not have committed)" : "");
		break;
	case -ECONNRESET:
		if (op->write) {
			op_fail(op, "outcome_unknown", r->sqlstate, "the connection to %s was lost "
				"during the write (%s): it may or may not have committed", where,
				r->error);
			break;
		}
		/* fall through */
	default:
		op_fail(op, "database_unavailable", r->sqlstate, "%s: %s", where, r->error);
		break;
	}
}

/*
 * pg_current_wal_insert_lsn() after a commit whose record ended exactly at
 * a WAL page boundary points past the next page's header (24 bytes; 40 at
 * the start of a segment), where nothing may be written for a while; the
 * replica's replay LSN stops at the boundary itself.  Waiting for the
 * boundary is waiting for the commit.  (Default 8 KiB pages, 16 MiB
 * segments.)
 */
static uint64_t lsn_commit_end(uint64_t lsn)
{
	uint64_t off = lsn % 8192;

	if (off == 24 || (off == 40 && lsn % (16u << 20) == 40))
		return lsn - off;
	return lsn;
}

static void lsn_done(void *arg, const struct pgconn_reply *r)
{
	struct sqlop *op = arg;

	op->pending = false;
	if (op->cancelled) {
		op_free(op);
		return;
	}
	if (r->status != 0 || PQntuples(r->res) != 1 ||
	    lsn_parse(PQgetvalue(r->res, 0, 0), &op->lsn) != 0) {
		op_fail(op, "outcome_unknown", r->sqlstate, "the write committed but its LSN "
			"could not be read: %s", r->status ? r->error : "bad answer");
		return;
	}
	op->lsn = lsn_commit_end(op->lsn);
	if (op->lsn > op->s->max_written_lsn)
		op->s->max_written_lsn = op->lsn;
	if (op->wait && op->origin == FROM_HTTP)
		wait_for(op, op->lsn);
	else
		op_ok(op);
}

static void stmt_done(void *arg, const struct pgconn_reply *r)
{
	struct sqlop *op = arg;
	size_t max = op->origin == FROM_RPC ? FORWARD_RESULT_MAX : SQL_RESULT_MAX;
	char err[256];
	int rc;

	op->pending = false;
	if (op->cancelled) {
		op_free(op);
		return;
	}
	if (r->status != 0) {
		stmt_failed(op, r, op->write ? "the primary" : "the replica");
		return;
	}
	rc = sqlresult_json(r->res, max, &op->result, err, sizeof(err));
	if (rc == -EFBIG) {
		op_fail(op, "result_too_large", NULL, "%s (the statement %s)", err,
			op->write ? "committed" : "ran");
		return;
	}
	if (rc != 0) {
		op_fail(op, "sql_error", NULL, "the result cannot be sent as JSON: %s", err);
		return;
	}
	if (!op->write) {
		op_ok(op);
		return;
	}
	/* The write committed: its LSN gets a budget of its own. */
	rc = pgpool_query(op->s->primary, lsn_sql, 0, NULL,
			  op_left(op) > 1000 ? op_left(op) : 1000, lsn_done, op);
	if (rc != 0) {
		op_fail(op, "outcome_unknown", NULL, "the write committed but its LSN could not be "
			"asked for: %s", strerror(-rc));
		return;
	}
	op->pending = true;
}

/* Runs the statement of @op on the pool its kind goes to. */
static void stmt_start(struct sqlop *op)
{
	struct sqlfront *s = op->s;
	struct pgpool *pool = op->write ? s->primary : s->replica;
	int rc;

	if (pool == NULL) {
		op_fail(op, "database_unavailable", NULL, "node %s has no %s", s->cfg->node,
			op->write ? "PRIMARY_DATABASE_URL" : "DATABASE_URL");
		return;
	}
	snprintf(op->ran_node, sizeof(op->ran_node), "%s", s->cfg->node);
	snprintf(op->ran_region, sizeof(op->ran_region), "%s", s->cfg->region);
	if (op->write)
		s->writes++;
	else
		s->reads++;
	rc = pgpool_query(pool, op->sql, op->nparams, (const char *const *)op->params,
			  op_left(op), stmt_done, op);
	if (rc == -EAGAIN) {
		op_fail(op, "overloaded", NULL, "every connection to the %s is busy",
			op->write ? "primary" : "replica");
		return;
	}
	if (rc != 0) {
		op_fail(op, "bad_request", NULL, "the statement was refused: %s", strerror(-rc));
		return;
	}
	op->pending = true;
}

/* ------------------------------------------------------------------ */
/* Forwarding a write to the primary region                            */
/* ------------------------------------------------------------------ */

static void forward(struct sqlop *op);

/* The request a peer's sql.write gets: [{"sql":..,"params":[..],"timeout_ms":N}]. */
static int forward_args(struct sqlop *op, struct rpc_buf *out, char *err, size_t errlen)
{
	json_t *params = json_array(), *args;
	char *text;
	int rc;

	for (int i = 0; i < op->nparams; i++)
		json_array_append_new(params, op->params[i] ? json_string(op->params[i]) :
				      json_null());
	args = json_pack("[{s:s,s:o,s:i}]", "sql", op->sql, "params", params, "timeout_ms",
			 (json_int_t)op_left(op));
	text = args ? json_dumps(args, JSON_COMPACT) : NULL;
	json_decref(args);
	if (text == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	rc = rpc_args_from_json(text, out, err, errlen);
	free(text);
	return rc;
}

static void forward_done(void *ctx, const struct rpc_result *r)
{
	struct sqlop *op = ctx;
	json_t *res, *err;

	op->pending = false;
	if (op->cancelled) {
		op_free(op);
		return;
	}
	if (r->status == RPC_NOT_SENT ||
	    (r->status == RPC_FAILED && (r->error == RPC_E_UNAVAILABLE ||
					 r->error == RPC_E_OVERLOADED))) {
		/* It never ran there: the next primary-region node may. */
		forward(op);
		return;
	}
	if (r->status == RPC_CONN_LOST || (r->status == RPC_FAILED && r->error == RPC_E_TIMEOUT)) {
		op_fail(op, "outcome_unknown", NULL, "the write forwarded to %s %s: it may or may "
			"not have committed; not retried", op->ran_node,
			r->status == RPC_CONN_LOST ? "lost its connection" : "got no answer in time");
		return;
	}
	if (r->status != RPC_OK) {
		op_fail(op, r->code, NULL, "the write forwarded to %s failed: %s", op->ran_node,
			r->message);
		return;
	}
	res = json_loadb((const char *)r->result, r->result_len, JSON_ALLOW_NUL, NULL);
	err = json_object_get(res, "error");
	if (!json_is_object(res)) {
		json_decref(res);
		op_fail(op, "outcome_unknown", NULL, "%s answered the write with something that is "
			"not a JSON object", op->ran_node);
		return;
	}
	if (err) {
		if (json_is_true(json_object_get(err, "not_run"))) {
			/* That node could not write at all: the next may. */
			json_decref(res);
			forward(op);
			return;
		}
		if (json_is_true(json_object_get(res, "committed"))) {
			/* It committed there; only what came after failed: pass
			 * the whole answer on, result and LSN included. */
			const char *code = json_string_value(json_object_get(err, "code"));

			op->s->failures++;
			op_answer(op, error_status(code ? code : "remote_error"), res);
			return;
		}
		json_incref(err);
		json_decref(res);
		op_fail_with(op, err);
		return;
	}
	if (lsn_parse(json_string_value(json_object_get(res, "lsn")) ?
		      json_string_value(json_object_get(res, "lsn")) : "", &op->lsn) != 0) {
		json_decref(res);
		op_fail(op, "outcome_unknown", NULL, "%s answered the write without a valid LSN",
			op->ran_node);
		return;
	}
	json_object_del(res, "lsn");
	op->result = res;
	if (op->lsn > op->s->max_written_lsn)
		op->s->max_written_lsn = op->lsn;
	if (op->wait)
		wait_for(op, op->lsn);
	else
		op_ok(op);
}

/* Sends @op to the best primary-region node not tried yet. */
static void forward(struct sqlop *op)
{
	struct sqlfront *s = op->s;
	struct region_target target = { REGION_TARGET_PRIMARY, NULL };
	const char *exclude[FORWARD_TRIES_MAX];
	struct rpc_client *client = agent_rpc_client(s->a);
	struct region_choice ch;
	struct rpc_buf args = { 0 };
	char err[256] = "";
	int rc;

	if (op->ntried == FORWARD_TRIES_MAX) {
		op_fail(op, "unavailable", NULL, "%zu primary-region nodes tried, none took the "
			"write (it did not run)", op->ntried);
		return;
	}
	for (size_t i = 0; i < op->ntried; i++)
		exclude[i] = op->tried[i];
	rc = agent_choose(s->a, &target, exclude, op->ntried, &ch);
	if (rc == REGION_ERR_EXHAUSTED) {
		op_fail(op, "unavailable", NULL, "no primary-region node took the write (%zu tried; "
			"it did not run)", op->ntried);
		return;
	}
	if (rc < 0) {
		op_fail(op, region_err_name(rc) ? region_err_name(rc) : "unavailable", NULL,
			"cannot forward the write: %s", ch.message);
		return;
	}
	if (ch.local) {
		/* We are in the primary region but have no primary URL: the
		 * next primary-region node may. */
		snprintf(op->tried[op->ntried++], sizeof(op->tried[0]), "%s", ch.member->name);
		forward(op);
		return;
	}
	snprintf(op->tried[op->ntried++], sizeof(op->tried[0]), "%s", ch.member->name);
	snprintf(op->ran_node, sizeof(op->ran_node), "%s", ch.member->name);
	snprintf(op->ran_region, sizeof(op->ran_region), "%s", ch.member->region);
	rc = forward_args(op, &args, err, sizeof(err));
	if (rc == 0 && client == NULL)
		rc = -ESHUTDOWN;
	if (rc == 0)
		rc = rpc_client_call(client, ch.member->name, ch.member->addr, SQL_METHOD_WRITE,
				     args.data, args.len, op_left(op), forward_done, op);
	rpc_buf_free(&args);
	if (rc == 0) {
		s->forwarded++;
		op->pending = true;
		return;
	}
	if (rc == -EINVAL && *err == '\0') {
		/* A member we cannot address: nothing was sent, try the next. */
		forward(op);
		return;
	}
	if (rc == -EBUSY)
		op_fail(op, "overloaded", NULL, "too many calls in flight from this agent");
	else if (rc == -EMSGSIZE)
		op_fail(op, "bad_request", NULL, "the statement and its parameters are too large "
			"to forward (at most %u bytes in all)", (unsigned)RPC_BODY_MAX);
	else
		op_fail(op, rc == -ESHUTDOWN ? "unavailable" : "bad_request", NULL,
			"cannot forward the write: %s", *err ? err : strerror(-rc));
}

/* ------------------------------------------------------------------ */
/* Requests                                                            */
/* ------------------------------------------------------------------ */

/* One JSON parameter as Postgres text (NULL for null); -EINVAL. */
static int param_text(json_t *v, char **out)
{
	char buf[64];

	*out = NULL;
	switch (json_typeof(v)) {
	case JSON_NULL:
		return 0;
	case JSON_STRING:
		if (strlen(json_string_value(v)) != json_string_length(v))
			return -EINVAL;   /* an embedded NUL cannot travel as text */
		*out = strdup(json_string_value(v));
		break;
	case JSON_INTEGER:
		snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		*out = strdup(buf);
		break;
	case JSON_REAL:
		/* The shortest text that reads back as the same double: 0.1,
		 * not 0.10000000000000001. */
		for (int prec = 15; prec <= 17; prec++) {
			snprintf(buf, sizeof(buf), "%.*g", prec, json_real_value(v));
			if (strtod(buf, NULL) == json_real_value(v))
				break;
		}
		*out = strdup(buf);
		break;
	case JSON_TRUE:
	case JSON_FALSE:
		*out = strdup(json_is_true(v) ? "true" : "false");
		break;
	default:
		*out = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		break;
	}
	return *out ? 0 : -ENOMEM;
}

/* Fills @op from a request object; false (with @err) when it is not one. */
static bool op_parse(struct sqlop *op, json_t *root, bool from_rpc, char *err, size_t errlen)
{
	json_t *sql = json_object_get(root, "sql"), *params = json_object_get(root, "params");
	json_t *timeout = json_object_get(root, "timeout_ms"), *min_lsn;
	size_t i;
	json_t *v;

	if (!json_is_string(sql) || json_string_length(sql) == 0 ||
	    json_string_length(sql) > SQL_TEXT_MAX ||
	    strlen(json_string_value(sql)) != json_string_length(sql)) {
		snprintf(err, errlen, "\"sql\" must be one SQL statement, 1 to %d bytes",
			 SQL_TEXT_MAX);
		return false;
	}
	if (params && !json_is_null(params) &&
	    (!json_is_array(params) || json_array_size(params) > PGCONN_MAX_PARAMS)) {
		snprintf(err, errlen, "\"params\" must be an array of at most %d values",
			 PGCONN_MAX_PARAMS);
		return false;
	}
	if (timeout && !json_is_null(timeout)) {
		if (!json_is_integer(timeout) || json_integer_value(timeout) < 1 ||
		    json_integer_value(timeout) > TIMEOUT_MS_MAX) {
			snprintf(err, errlen, "\"timeout_ms\" must be an integer from 1 to %d",
				 TIMEOUT_MS_MAX);
			return false;
		}
		op->timeout_ms = (uint32_t)json_integer_value(timeout);
	}
	op->sql = strdup(json_string_value(sql));
	json_array_foreach(params, i, v) {
		if (param_text(v, &op->params[op->nparams]) != 0) {
			snprintf(err, errlen, "params[%zu] cannot be sent as text (a NUL inside?)", i);
			return false;
		}
		op->nparams++;
	}
	if (from_rpc) {
		op->write = true;
		return op->sql != NULL;
	}
	for (int k = 0; k < 2; k++) {
		json_t *b = json_object_get(root, k ? "wait" : "write");

		if (b && !json_is_boolean(b) && !json_is_null(b)) {
			snprintf(err, errlen, "\"%s\" must be true or false", k ? "wait" : "write");
			return false;
		}
	}
	op->write = json_is_true(json_object_get(root, "write"));
	op->wait = json_is_true(json_object_get(root, "wait"));
	min_lsn = json_object_get(root, "min_lsn");
	if (min_lsn && !json_is_null(min_lsn) &&
	    (!json_is_string(min_lsn) || lsn_parse(json_string_value(min_lsn), &op->min_lsn) != 0)) {
		snprintf(err, errlen, "\"min_lsn\" must be an LSN like \"0/16B3748\"");
		return false;
	}
	if (op->write && op->min_lsn) {
		snprintf(err, errlen, "\"min_lsn\" is for reads; a write waits with \"wait\"");
		return false;
	}
	if (op->wait && !op->write) {
		snprintf(err, errlen, "\"wait\" is for writes; a read waits with \"min_lsn\"");
		return false;
	}
	return op->sql != NULL;
}

static void op_start(struct sqlop *op)
{
	if (!op->write) {
		if (op->min_lsn)
			wait_for(op, op->min_lsn);
		else
			stmt_start(op);
	} else if (op->s->in_primary && op->s->primary) {
		stmt_start(op);
	} else {
		forward(op);
	}
}

void sqlfront_http(struct sqlfront *s, struct http_request *req,
		   const struct http_request_view *v)
{
	json_error_t jerr;
	json_t *root;
	struct sqlop *op;
	char err[256];

	if (s->inflight >= SQL_INFLIGHT_MAX) {
		api_respond_json(req, 429,
				 json_pack("{s:{s:s,s:s}}", "error", "code", "overloaded",
					   "message", "too many SQL requests in flight"),
				 "Retry-After: 1\r\n");
		return;
	}
	op = op_new(s);
	if (op == NULL) {
		api_respond_json(req, 500, NULL, NULL);	/* out of memory */
		return;
	}
	op->origin = FROM_HTTP;
	op->req = req;
	root = json_loadb(v->body, v->body_len, 0, &jerr);
	if (!json_is_object(root)) {
		json_decref(root);
		op_fail(op, "bad_request", NULL, "the body must be a JSON object: %s",
			root ? "not an object" : jerr.text);
		return;
	}
	if (!op_parse(op, root, false, err, sizeof(err))) {
		json_decref(root);
		op_fail(op, "bad_request", NULL, "%s", err);
		return;
	}
	json_decref(root);
	op_start(op);
}

/* ------------------------------------------------------------------ */
/* sql.write, served to peers                                          */
/* ------------------------------------------------------------------ */

static int rpc_start_call(void *ctx, const struct rpc_serve_call *call, rpc_reply_fn reply,
			  void *reply_ctx, void **job)
{
	struct sqlfront *s = ctx;
	struct sqlop *op;
	char *json = NULL, err[256] = "";
	json_t *args, *root;

	if (strcmp(call->method, SQL_METHOD_WRITE) != 0)
		return s->next.start(s->next.ctx, call, reply, reply_ctx, job);
	*job = NULL;
	op = s->inflight < SQL_INFLIGHT_MAX ? op_new(s) : NULL;
	if (op == NULL) {
		struct rpc_serve_reply r = { .error = RPC_E_OVERLOADED, .retry_after_ms = 100,
					     .message = "too many SQL requests in flight" };

		reply(reply_ctx, &r);
		return -EBUSY;
	}
	op->origin = FROM_RPC;
	op->reply = reply;
	op->reply_ctx = reply_ctx;
	if (rpc_args_to_json(call->args, call->args_len, &json, NULL, err, sizeof(err)) != 0) {
		op_fail(op, "bad_request", NULL, "sql.write arguments: %s", err);
		return 0;
	}
	args = json_loads(json, 0, NULL);
	free(json);
	root = json_array_get(args, 0);
	if (!json_is_object(root) || !op_parse(op, root, true, err, sizeof(err))) {
		json_decref(args);
		op_fail(op, "bad_request", NULL, "sql.write: %s", *err ? err :
			"expected [{\"sql\":...,\"params\":[...]}]");
		return 0;
	}
	json_decref(args);
	if (call->deadline_ms < op->timeout_ms)
		op->timeout_ms = call->deadline_ms;
	if (!s->in_primary || s->primary == NULL) {
		json_t *e = json_pack("{s:s,s:s,s:b}", "code", "database_unavailable",
				      "message", s->in_primary ?
				      "this node has no PRIMARY_DATABASE_URL" :
				      "this node is not in the primary region", "not_run", 1);

		op_fail_with(op, e);
		return 0;
	}
	*job = op;
	stmt_start(op);
	return 0;
}

static void rpc_cancel_call(void *ctx, void *job)
{
	struct sqlfront *s = ctx;

	for (struct sqlop *op = s->ops; op; op = op->next) {
		if (op == job) {
			op->cancelled = true;
			if (!op->pending)
				op_free(op);
			return;
		}
	}
	s->next.cancel(s->next.ctx, job);
}

struct rpc_serve_ops sqlfront_rpc_ops(struct sqlfront *s, struct rpc_serve_ops next)
{
	s->next = next;
	return (struct rpc_serve_ops){ .ctx = s, .start = rpc_start_call,
				       .cancel = rpc_cancel_call };
}

/* ------------------------------------------------------------------ */
/* Life, status                                                        */
/* ------------------------------------------------------------------ */

static struct pgpool *pool_open(struct sqlfront *s, const char *url, const char *what)
{
	struct pgpool_config pc = {
		.conninfo = url,
		.application_name = "meridian",
		.size = 4,
		.max_queue = 64,
		.query_timeout_ms = TIMEOUT_MS_DEFAULT,
		/* A backstop for statements whose caller gave up (their
		 * connection was dropped): the server stops them too. */
		.statement_timeout_ms = TIMEOUT_MS_MAX,
		.connect_timeout_ms = 2000,
		/* libpq would read any answer whole before sqlresult_json()
		 * measures it: read rows only to twice the JSON bound (values
		 * count about as they print), then drop the connection. */
		.max_result_bytes = SQL_READ_MAX,
		.seed = randombytes_random(),
	};
	char err[256] = "";
	struct pgpool *p = pgpool_new(s->loop, &pc, err, sizeof(err));

	if (p == NULL)
		LOG(LOG_ERROR, "sql", "cannot use the %s database: %s", what, err);
	return p;
}

struct sqlfront *sqlfront_new(uv_loop_t *loop, struct agent *a, const struct config *cfg)
{
	struct sqlfront *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->loop = loop;
	s->a = a;
	s->cfg = cfg;
	s->lag_seconds = -1;
	s->in_primary = strcmp(cfg->region, cfg->primary) == 0;
	s->waiters = lsnwait_new(SQL_WAITERS_MAX);
	if (s->waiters == NULL)
		goto fail;
	if (cfg->primary_database_url && s->in_primary &&
	    (s->primary = pool_open(s, cfg->primary_database_url, "primary")) == NULL)
		goto fail;
	if (cfg->database_url) {
		if ((s->replica = pool_open(s, cfg->database_url, "replica")) == NULL)
			goto fail;
	} else if (s->primary) {
		/* The primary region reads from the primary itself. */
		s->replica = s->primary;
		s->replica_is_primary = true;
	}
	uv_timer_init(loop, &s->poll_timer);
	uv_timer_init(loop, &s->expire_timer);
	uv_timer_init(loop, &s->probe_timer);
	s->poll_timer.data = s->expire_timer.data = s->probe_timer.data = s;
	s->handles = 3;
	if (s->replica)
		uv_timer_start(&s->probe_timer, probe_fired, 0, SQL_PROBE_MS);
	return s;
fail:
	pgpool_close(s->primary);
	if (!s->replica_is_primary)
		pgpool_close(s->replica);
	lsnwait_delete(s->waiters);
	free(s);
	return NULL;
}

static void sqlfront_handle_closed(uv_handle_t *h)
{
	struct sqlfront *s = h->data;

	if (--s->handles == 0)
		free(s);
}

void sqlfront_close(struct sqlfront *s)
{
	if (s == NULL || s->closing)
		return;
	s->closing = true;
	/* No pool or waiter calls back after this: answer everyone now. */
	pgpool_close(s->primary);
	if (!s->replica_is_primary)
		pgpool_close(s->replica);
	s->primary = s->replica = NULL;
	lsnwait_delete(s->waiters);
	s->waiters = NULL;
	while (s->ops) {
		struct sqlop *op = s->ops;

		if (op->origin == FROM_RPC && op->cancelled) {
			op_free(op);
			continue;
		}
		op->pending = false;
		op_fail(op, "unavailable", NULL, "the agent is stopping");
	}
	uv_close((uv_handle_t *)&s->poll_timer, sqlfront_handle_closed);
	uv_close((uv_handle_t *)&s->expire_timer, sqlfront_handle_closed);
	uv_close((uv_handle_t *)&s->probe_timer, sqlfront_handle_closed);
}

static json_t *pool_json(const struct pgpool *p)
{
	struct pgpool_stats st;

	if (p == NULL)
		return json_null();
	pgpool_stats_get(p, &st);
	return json_pack("{s:b,s:i,s:i,s:s}", "ok", st.connected > 0 || st.last_error[0] == '\0',
			 "connected", (json_int_t)st.connected, "size", (json_int_t)st.size,
			 "last_error", st.last_error);
}

json_t *sqlfront_status_json(struct sqlfront *s)
{
	return json_pack("{s:o,s:o}", "primary", pool_json(s->primary), "replica",
			 s->replica_is_primary ? json_string("primary") : pool_json(s->replica));
}

void sqlfront_stats_get(const struct sqlfront *s, struct sqlfront_stats *out)
{
	uint64_t replay = s->waiters ? lsnwait_last(s->waiters) : 0;

	*out = (struct sqlfront_stats){
		.reads = s->reads,
		.writes = s->writes,
		.forwarded = s->forwarded,
		.failures = s->failures,
		.waits = s->waits,
		.wait_timeouts = s->wait_timeouts,
		.replay_lsn = replay,
		.lag_bytes = s->max_written_lsn > replay && replay ? s->max_written_lsn - replay : 0,
		.lag_seconds = s->lag_seconds,
		.inflight = s->inflight,
		.waiters = s->waiters ? (uint32_t)lsnwait_count(s->waiters) : 0,
	};
}
