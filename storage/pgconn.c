/*
 * storage/pgconn.c - one asynchronous libpq connection on a libuv loop
 * (see pgconn.h for the contract).
 *
 * States.  IDLE: no PGconn (never connected, or dropped after a failure,
 * then perhaps waiting out the backoff until retry_at).  CONNECTING:
 * PQconnectPoll() in progress, bounded by conn_timer.  READY: connected,
 * nothing on the server; the socket is still watched for readability so
 * that a server going away is noticed at once, not by the next query.
 * BUSY: the head of the queue has been sent and its results are being
 * read.  Only the head of the queue ever runs.
 *
 * Handles.  Three timers live as long as the object: kick (0 ms, runs the
 * machine from a fresh libuv callback, so that pgconn_query() never calls
 * back and no callback path recurses), conn_timer (the backoff wait in
 * IDLE, the connect deadline in CONNECTING) and query_timer (the earliest
 * query deadline).  The PGconn and the uv_poll on its socket are a
 * struct pgsock (storage/pgsock.h): the poll handle is remade when libpq
 * switches sockets while connecting, closed before PQfinish(), and frees
 * itself, so it is not counted in `handles`.
 *
 * Callbacks may call pgconn_query() (which only queues and kicks) and
 * pgconn_close() (which marks closing and starts closing handles; the
 * memory stays valid until the close callbacks, which run only after we
 * return to libuv); every path that calls back checks `closing` after
 * each callback and stops touching the connection if it is set.
 */
#include "storage/pgconn.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/backoff.h"
#include "lib/log.h"
#include "lib/splitmix.h"
#include "storage/pgresolve.h"
#include "storage/pgsock.h"

#define COMPONENT "pgconn"
#define MAX_RESULTS 16        /* results gathered for one query before -EPROTO */
#define MAX_NOTIFIES 1024     /* notifications dropped per readable event */

enum pgconn_state {
	ST_IDLE = 0,
	ST_CONNECTING,
	ST_READY,
	ST_BUSY,
};

/* One query, in one allocation: the struct, the parameter pointers, then
 * the SQL text and the parameter strings. */
struct pgq {
	struct pgq *next;
	pgconn_cb cb;
	void *arg;
	uint64_t deadline;            /* loop time, ms */
	uint32_t timeout_ms;
	int nparams;
	const char *sql;
	const char **params;
};

struct pgconn {
	uv_loop_t *loop;
	uint32_t connect_timeout_ms, query_timeout_ms, max_queue;

	struct pgsock_params params;  /* PQconnectStartParams() arguments */

	struct pgsock sock;           /* the PGconn (sock.pg) and its uv_poll */
	struct pgresolve *resolving;  /* the host names, before sock.pg exists */
	enum pgconn_state st;
	uint64_t serial;              /* of the live connection */

	uv_timer_t kick, conn_timer, query_timer;
	unsigned handles;             /* open timers; freed when 0 after closing */
	bool closing;

	struct pgq *head, **tail;
	uint32_t nq;

	struct backoff bo;
	bool in_backoff;              /* a failure since the last success */
	uint64_t retry_at;            /* loop time of the next attempt allowed */
	uint64_t rng;

	PGresult *res;                /* the running query's answer so far */
	int nres;
	size_t max_result_bytes;      /* 0: libpq reads the whole answer */
	PGresult *rows;               /* single-row mode: the rows so far */
	size_t rows_bytes;            /* ... and what they count */

	struct pgconn_stats stats;
};

static void set_error(struct pgconn *c, const char *text)
{
	pgsock_one_line(c->stats.last_error, sizeof(c->stats.last_error), text);
}

/* ------------------------------------------------------------------ */
/* Handles                                                             */
/* ------------------------------------------------------------------ */

static void free_conn(struct pgconn *c)
{
	pgsock_params_free(&c->params);
	free(c);
}

static void handle_closed(uv_handle_t *h)
{
	struct pgconn *c = h->data;

	if (--c->handles == 0 && c->closing)
		free_conn(c);
}

static void on_kick(uv_timer_t *t);

/* Runs the machine from a fresh libuv callback. */
static void kick(struct pgconn *c)
{
	if (!c->closing)
		uv_timer_start(&c->kick, on_kick, 0, 0);
}

/* ------------------------------------------------------------------ */
/* Queue and answers                                                   */
/* ------------------------------------------------------------------ */

static void queue_unlink(struct pgconn *c, struct pgq *q)
{
	struct pgq **pp = &c->head;

	while (*pp && *pp != q)
		pp = &(*pp)->next;
	if (!*pp)
		return;
	*pp = q->next;
	if (c->tail == &q->next)
		c->tail = pp;
	q->next = NULL;
	c->nq--;
}

static void on_query_timer(uv_timer_t *t);

static void arm_query_timer(struct pgconn *c)
{
	uint64_t now = uv_now(c->loop), min = UINT64_MAX;

	if (c->closing)
		return;
	for (struct pgq *q = c->head; q; q = q->next)
		if (q->deadline < min)
			min = q->deadline;
	if (min == UINT64_MAX)
		uv_timer_stop(&c->query_timer);
	else
		uv_timer_start(&c->query_timer, on_query_timer, min > now ? min - now : 0, 0);
}

/* Answers @q (already unlinked) and frees it.  The caller must check
 * c->closing afterwards. */
static void answer(struct pgconn *c, struct pgq *q, int status, const PGresult *res,
		   const char *sqlstate, const char *error, uint64_t serial)
{
	char line[PGCONN_ERROR_MAX];
	struct pgconn_reply r = {
		.status = status,
		.res = status == 0 ? res : NULL,
		.sqlstate = sqlstate ? sqlstate : "",
		.error = "",
		.conn_serial = serial,
	};

	if (status < 0) {
		pgsock_one_line(line, sizeof(line), error && *error ? error : "unknown error");
		r.error = line;
		c->stats.failures++;
		if (status == -ETIMEDOUT)
			c->stats.timeouts++;
		memcpy(c->stats.last_error, line, sizeof(line));
	}
	q->cb(q->arg, &r);
	free(q);
}

/* Fails every waiting query (the running one excluded when BUSY) whose
 * deadline is before @before with @status and @error; UINT64_MAX fails
 * them all.  Bounded by the queue length at entry: callbacks may add
 * queries, which are never matched (their deadlines lie ahead) or are
 * left for the next pass. */
static void fail_waiting(struct pgconn *c, uint64_t before, int status, const char *error)
{
	uint32_t budget = c->nq;

	while (budget-- && !c->closing) {
		struct pgq *q = c->head;

		if (q && c->st == ST_BUSY)
			q = q->next;
		while (q && q->deadline >= before && before != UINT64_MAX)
			q = q->next;
		if (!q)
			break;
		queue_unlink(c, q);
		answer(c, q, status, NULL, NULL, error, 0);
	}
	arm_query_timer(c);
}

/* ------------------------------------------------------------------ */
/* Connection life                                                     */
/* ------------------------------------------------------------------ */

static void rows_drop(struct pgconn *c)
{
	PQclear(c->rows);
	c->rows = NULL;
	c->rows_bytes = 0;
}

/* Drops the connection (if any) without answering anyone. */
static void conn_drop(struct pgconn *c)
{
	if (c->st == ST_READY || c->st == ST_BUSY)
		c->stats.disconnects++;
	pgresolve_cancel(c->resolving);
	c->resolving = NULL;
	pgsock_finish(&c->sock);      /* the poll closed first, then PQfinish() */
	if (c->res) {
		PQclear(c->res);
		c->res = NULL;
	}
	rows_drop(c);
	c->nres = 0;
	c->serial = 0;
	c->st = ST_IDLE;
	c->stats.connected = 0;
	if (!c->closing)
		uv_timer_stop(&c->conn_timer);
}

/* A failure of any kind: the next attempt waits the backoff. */
static void backoff_arm(struct pgconn *c)
{
	uint32_t delay = backoff_next(&c->bo, (uint32_t)splitmix64(&c->rng));

	c->in_backoff = true;
	c->retry_at = uv_now(c->loop) + delay;
}

/* The attempt failed: every waiting query depended on it and fails. */
static void connect_failed(struct pgconn *c, const char *why)
{
	char text[PGCONN_ERROR_MAX];

	snprintf(text, sizeof(text), "could not connect: %s", why && *why ? why : "unknown");
	conn_drop(c);
	c->stats.connect_failures++;
	set_error(c, text);
	backoff_arm(c);
	LOG_RATELIMITED(LOG_WARNING, COMPONENT, "%s", c->stats.last_error);
	fail_waiting(c, UINT64_MAX, -ENOTCONN, c->stats.last_error);
	kick(c);
}

/* The connection went away, or we drop it (then @retry_now: the server
 * did nothing wrong, the next query connects at once).  A running query
 * fails with @status. */
static void conn_end(struct pgconn *c, int status, const char *sqlstate, const char *why,
		     bool retry_now)
{
	char text[PGCONN_ERROR_MAX], state[6] = "";
	struct pgq *q = c->st == ST_BUSY ? c->head : NULL;
	uint64_t serial = c->serial;

	/* sqlstate may point into c->res, which conn_drop() frees. */
	if (sqlstate)
		snprintf(state, sizeof(state), "%s", sqlstate);
	snprintf(text, sizeof(text), "%s", why && *why ? why : "connection lost");
	if (q)
		queue_unlink(c, q);
	conn_drop(c);
	set_error(c, text);
	if (!retry_now)
		backoff_arm(c);
	LOG_RATELIMITED(LOG_WARNING, COMPONENT, "connection dropped: %s", c->stats.last_error);
	if (q)
		answer(c, q, status, NULL, state, text, serial);
	if (c->closing)
		return;
	arm_query_timer(c);
	kick(c);
}

static void conn_lost(struct pgconn *c, int status, const char *sqlstate, const char *why)
{
	conn_end(c, status, sqlstate, why, false);
}

static void advance(struct pgconn *c);

static void connected(struct pgconn *c)
{
	uv_timer_stop(&c->conn_timer);
	c->st = ST_READY;
	c->serial = ++c->stats.connects;
	c->stats.connected = 1;
	c->in_backoff = false;
	backoff_reset(&c->bo);
	if (pgsock_watch(&c->sock, UV_READABLE) < 0) {
		conn_lost(c, -ECONNRESET, NULL, "cannot watch the connection's socket");
		return;
	}
	LOG(LOG_INFO, COMPONENT, "connected to %s:%s (backend pid %d)", PQhost(c->sock.pg),
	    PQport(c->sock.pg), PQbackendPID(c->sock.pg));
	advance(c);
}

static void connect_step(struct pgconn *c)
{
	int rc = pgsock_connect_step(&c->sock);

	if (rc == PGSOCK_CONNECTED)
		connected(c);
	else if (rc == PGSOCK_FAILED)
		connect_failed(c, PQerrorMessage(c->sock.pg));
	else if (rc < 0)
		connect_failed(c, "cannot watch the connection's socket");
}

static void on_conn_timer(uv_timer_t *t);

/* libpq's part of connecting, with the host names resolved. */
static void connect_open(struct pgconn *c, const struct pgsock_params *p)
{
	int rc = pgsock_connect_start(&c->sock, p);

	if (rc == PGSOCK_FAILED)
		connect_failed(c, c->sock.pg ? PQerrorMessage(c->sock.pg) : "out of memory");
	else if (rc < 0)
		connect_failed(c, uv_strerror(rc));
}

static void resolved(void *data, int status, const struct pgsock_params *p, const char *error)
{
	struct pgconn *c = data;

	c->resolving = NULL;
	if (status < 0)
		connect_failed(c, error);
	else
		connect_open(c, p);
}

/* The connect timer covers resolving the host names too. */
static void connect_start(struct pgconn *c)
{
	int rc = pgresolve_start(c->loop, &c->params, resolved, c, &c->resolving);

	if (rc < 0) {
		connect_failed(c, uv_strerror(rc));
		return;
	}
	c->st = ST_CONNECTING;
	uv_timer_start(&c->conn_timer, on_conn_timer, c->connect_timeout_ms, 0);
	if (!c->resolving)
		connect_open(c, &c->params);
}

/* ------------------------------------------------------------------ */
/* Running a query                                                     */
/* ------------------------------------------------------------------ */

/* Flushes what libpq buffered and watches for what it needs next.
 * false when the connection was lost (already handled). */
static bool flush_and_watch(struct pgconn *c)
{
	int rc = pgsock_flush(&c->sock);

	if (rc == PGSOCK_FAILED) {
		conn_lost(c, -ECONNRESET, NULL, PQerrorMessage(c->sock.pg));
		return false;
	}
	if (rc < 0) {
		conn_lost(c, -ECONNRESET, NULL, "cannot watch the connection's socket");
		return false;
	}
	return true;
}

static void send_head(struct pgconn *c)
{
	struct pgq *q = c->head;

	if (!PQsendQueryParams(c->sock.pg, q->sql, q->nparams, NULL, q->params, NULL, NULL, 0)) {
		/* Only a broken connection makes a well-formed send fail. */
		c->st = ST_BUSY;
		conn_lost(c, -ECONNRESET, NULL, PQerrorMessage(c->sock.pg));
		return;
	}
	c->st = ST_BUSY;
	/* Cannot fail right after a successful send. */
	if (c->max_result_bytes)
		PQsetSingleRowMode(c->sock.pg);
	flush_and_watch(c);
}

static bool is_copy(ExecStatusType s)
{
	return s == PGRES_COPY_IN || s == PGRES_COPY_OUT || s == PGRES_COPY_BOTH;
}

/* All results are in: answer the head. */
static void finish_running(struct pgconn *c)
{
	struct pgq *q = c->head;
	PGresult *r = c->res;
	uint64_t serial = c->serial;
	char text[PGCONN_ERROR_MAX] = "";
	const char *state = NULL;
	int status = 0;

	c->res = NULL;
	c->nres = 0;
	if (!r) {
		status = -EPROTO;
		snprintf(text, sizeof(text), "no result from the server");
	} else if (pgsock_result_is_error(r)) {
		status = -EREMOTEIO;
		state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
		pgsock_result_error(r, text, sizeof(text));
	} else if (PQresultStatus(r) != PGRES_TUPLES_OK &&
		   PQresultStatus(r) != PGRES_COMMAND_OK) {
		status = -EPROTO;
		snprintf(text, sizeof(text), "unexpected result %s",
			 PQresStatus(PQresultStatus(r)));
	}

	if (PQstatus(c->sock.pg) == CONNECTION_BAD) {
		if (!*text)
			snprintf(text, sizeof(text), "%s", PQerrorMessage(c->sock.pg));
		if (status != 0) {
			/* e.g. FATAL 57P01 (administrator shutdown) as the answer:
			 * the connection is gone, say so.  conn_lost() copies the
			 * sqlstate out of c->res before freeing it. */
			c->res = r;
			conn_lost(c, status == -EREMOTEIO ? -ECONNRESET : status, state, text);
			return;
		}
		/* A complete answer on a connection that died right after:
		 * drop the connection, then deliver the answer. */
		queue_unlink(c, q);
		c->st = ST_READY;
		conn_lost(c, 0, NULL, text);
		answer(c, q, 0, r, NULL, NULL, serial);
		PQclear(r);
		return;
	}

	queue_unlink(c, q);
	c->st = ST_READY;
	c->sock.flushing = false;
	if (pgsock_watch(&c->sock, UV_READABLE) < 0) {
		/* Answer first, then drop the connection for the next query. */
		answer(c, q, status, r, state, text, serial);
		PQclear(r);
		if (!c->closing)
			conn_lost(c, -ECONNRESET, NULL, "cannot watch the connection's socket");
		return;
	}
	answer(c, q, status, r, state, text, serial);
	PQclear(r);
	if (c->closing)
		return;
	arm_query_timer(c);
	kick(c);
}

/* Copies row @row of @from to the end of @to.  false: out of memory. */
static bool row_append(PGresult *to, const PGresult *from, int row)
{
	int at = PQntuples(to);

	for (int f = 0; f < PQnfields(from); f++) {
		bool null = PQgetisnull(from, row, f);

		if (!PQsetvalue(to, at, f, null ? NULL : PQgetvalue(from, row, f),
				null ? -1 : PQgetlength(from, row, f)))
			return false;
	}
	return true;
}

/* Single-row mode: one more row.  false when the query ended here (past
 * the bound, or out of memory: already answered). */
static bool rows_take(struct pgconn *c, PGresult *r)
{
	char text[PGCONN_ERROR_MAX];

	if (PQnfields(r) == 0) {
		/* libpq cannot add a row of no columns to a result. */
		PQclear(r);
		conn_end(c, -EPROTO, NULL, "rows without columns cannot be gathered one by one "
			 "(name a column)", true);
		return false;
	}
	c->rows_bytes += 16;          /* the row's own bookkeeping */
	for (int f = 0; f < PQnfields(r); f++)
		c->rows_bytes += (size_t)PQgetlength(r, 0, f) + 8;
	if (c->rows_bytes > c->max_result_bytes) {
		PQclear(r);
		snprintf(text, sizeof(text), "the answer is larger than %zu bytes: not read further",
			 c->max_result_bytes);
		c->stats.too_large++;
		conn_end(c, -EFBIG, NULL, text, true);
		return false;
	}
	if (!c->rows) {
		c->rows = r;
		return true;
	}
	if (!row_append(c->rows, r, 0)) {
		PQclear(r);
		conn_end(c, -ENOMEM, NULL, "out of memory gathering the answer's rows", true);
		return false;
	}
	PQclear(r);
	return true;
}

/* Single-row mode's last result (no rows, the command tag) with the rows
 * gathered before it; @end itself when it is not that. */
static PGresult *rows_finish(struct pgconn *c, PGresult *end)
{
	if (c->rows && PQresultStatus(end) == PGRES_TUPLES_OK) {
		for (int i = 0; i < PQntuples(c->rows); i++) {
			if (!row_append(end, c->rows, i)) {
				PQclear(end);
				end = NULL;
				break;
			}
		}
	}
	rows_drop(c);
	return end;
}

/* Gathers results while libpq has them without blocking. */
static void collect(struct pgconn *c)
{
	for (;;) {
		PGresult *r;

		if (PQisBusy(c->sock.pg))
			return;
		r = PQgetResult(c->sock.pg);
		if (!r) {
			finish_running(c);
			return;
		}
		if (PQresultStatus(r) == PGRES_SINGLE_TUPLE) {
			if (!rows_take(c, r))
				return;
			continue;
		}
		r = rows_finish(c, r);
		if (!r) {
			conn_end(c, -ENOMEM, NULL, "out of memory gathering the answer's rows", true);
			return;
		}
		if (is_copy(PQresultStatus(r)) || ++c->nres > MAX_RESULTS) {
			/* libpq would hand the COPY state back forever; the
			 * connection cannot be reused cheaply: drop it. */
			PQclear(r);
			conn_lost(c, -EPROTO, NULL,
				  "unsupported answer (COPY or several statements)");
			return;
		}
		pgsock_keep_result(&c->res, r);
	}
}

/* The input failed: take whatever error libpq can still hand over
 * (e.g. FATAL 57P01 before the close), then drop the connection. */
static void input_failed(struct pgconn *c)
{
	char text[PGCONN_ERROR_MAX];
	const char *state = NULL;

	for (int i = 0; i < MAX_RESULTS && !PQisBusy(c->sock.pg); i++) {
		PGresult *r = PQgetResult(c->sock.pg);

		if (!r)
			break;
		pgsock_keep_result(&c->res, r);
	}
	if (c->res && pgsock_result_is_error(c->res)) {
		state = PQresultErrorField(c->res, PG_DIAG_SQLSTATE);
		pgsock_result_error(c->res, text, sizeof(text));
	} else {
		snprintf(text, sizeof(text), "%s", PQerrorMessage(c->sock.pg));
	}
	if (!*text)
		snprintf(text, sizeof(text), "connection lost");
	conn_lost(c, -ECONNRESET, state, text);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
	struct pgconn *c = h->data;

	if (c->closing || !pgsock_current(&c->sock, h))
		return;
	if (pgsock_poll_status(&c->sock, status, &events) < 0) {
		if (c->st == ST_CONNECTING)
			connect_failed(c, uv_strerror(status));
		else
			conn_lost(c, -ECONNRESET, NULL, uv_strerror(status));
		return;
	}
	switch (c->st) {
	case ST_CONNECTING:
		connect_step(c);
		return;
	case ST_READY:
		/* Nothing asked: the server speaks only to say goodbye (or a
		 * notification, which nobody here listens to). */
		if (!PQconsumeInput(c->sock.pg) || PQstatus(c->sock.pg) == CONNECTION_BAD) {
			input_failed(c);
			return;
		}
		for (int i = 0; i < MAX_NOTIFIES; i++) {
			PGnotify *n = PQnotifies(c->sock.pg);

			if (!n)
				break;
			PQfreemem(n);
		}
		return;
	case ST_BUSY:
		if ((events & UV_READABLE) && !PQconsumeInput(c->sock.pg)) {
			input_failed(c);
			return;
		}
		if (c->sock.flushing && !flush_and_watch(c))
			return;
		collect(c);
		return;
	default:
		return;
	}
}

/* ------------------------------------------------------------------ */
/* The machine                                                         */
/* ------------------------------------------------------------------ */

static void advance(struct pgconn *c)
{
	uint64_t now;

	if (c->closing || !c->head)
		return;
	switch (c->st) {
	case ST_IDLE:
		now = uv_now(c->loop);
		if (c->in_backoff && now < c->retry_at) {
			char text[PGCONN_ERROR_MAX + 64];

			snprintf(text, sizeof(text),
				 "not connected (next attempt in %" PRIu64 " ms): %s",
				 c->retry_at - now, c->stats.last_error);
			fail_waiting(c, c->retry_at, -ENOTCONN, text);
			if (!c->closing && c->head)
				uv_timer_start(&c->conn_timer, on_conn_timer, c->retry_at - now, 0);
			return;
		}
		connect_start(c);
		return;
	case ST_READY:
		send_head(c);
		return;
	default:
		return;
	}
}

static void on_kick(uv_timer_t *t)
{
	advance(t->data);
}

static void on_conn_timer(uv_timer_t *t)
{
	struct pgconn *c = t->data;
	char text[64];

	if (c->closing)
		return;
	if (c->st == ST_CONNECTING) {
		snprintf(text, sizeof(text), "timed out after %u ms", c->connect_timeout_ms);
		connect_failed(c, text);
		return;
	}
	advance(c);
}

static void on_query_timer(uv_timer_t *t)
{
	struct pgconn *c = t->data;
	uint64_t now = uv_now(c->loop);
	char text[96];

	if (c->closing)
		return;
	if (c->st == ST_BUSY && c->head && c->head->deadline <= now) {
		snprintf(text, sizeof(text), "query timed out after %u ms (connection dropped)",
			 c->head->timeout_ms);
		conn_lost(c, -ETIMEDOUT, NULL, text);
		if (c->closing)
			return;
	}
	/* Waiting ones (queued, or waiting for a connection): just fail. */
	snprintf(text, sizeof(text), "query timed out waiting for the connection");
	fail_waiting(c, now + 1, -ETIMEDOUT, text);
	if (!c->closing)
		kick(c);
}

/* ------------------------------------------------------------------ */
/* Public                                                              */
/* ------------------------------------------------------------------ */

/* The keyword/value arrays: the conninfo's own settings, then ours (see
 * the top of pgconn.h for who wins). */
static int build_params(struct pgconn *c, const struct pgconn_config *cfg, char *err,
			size_t errlen)
{
	char extra[48];
	struct pgsock_options o = {
		.conninfo = cfg->conninfo,
		.application_name = cfg->application_name,
		.keepalives_idle_s = cfg->keepalives_idle_s,
		.keepalives_interval_s = cfg->keepalives_interval_s,
		.keepalives_count = cfg->keepalives_count,
		.tcp_user_timeout_ms = cfg->tcp_user_timeout_ms,
		.connect_timeout_ms = c->connect_timeout_ms,
	};

	if (cfg->statement_timeout_ms) {
		snprintf(extra, sizeof(extra), "-c statement_timeout=%" PRIu32,
			 cfg->statement_timeout_ms);
		o.extra_options = extra;
	}
	return pgsock_params_build(&c->params, &o, err, errlen);
}

struct pgconn *pgconn_new(uv_loop_t *loop, const struct pgconn_config *cfg, char *err,
			  size_t errlen)
{
	struct pgconn *c;

	if (err && errlen)
		err[0] = '\0';
	if (!loop || !cfg || !cfg->conninfo) {
		if (err)
			snprintf(err, errlen, "no conninfo");
		return NULL;
	}
	if (cfg->max_queue > PGCONN_MAX_QUEUE) {
		if (err)
			snprintf(err, errlen, "max_queue above %d", PGCONN_MAX_QUEUE);
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		if (err)
			snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->loop = loop;
	pgsock_init(&c->sock, loop, on_poll, c, COMPONENT);
	c->connect_timeout_ms = pgsock_or_default(cfg->connect_timeout_ms, 5000);
	c->query_timeout_ms = pgsock_or_default(cfg->query_timeout_ms, 5000);
	c->max_queue = pgsock_or_default(cfg->max_queue, 16);
	c->max_result_bytes = cfg->max_result_bytes;
	c->rng = cfg->seed;
	c->tail = &c->head;
	backoff_init(&c->bo, pgsock_or_default(cfg->backoff_initial_ms, 100),
		     pgsock_or_default(cfg->backoff_max_ms, 5000));
	if (build_params(c, cfg, err, errlen) < 0) {
		free_conn(c);
		return NULL;
	}
	uv_timer_init(loop, &c->kick);
	uv_timer_init(loop, &c->conn_timer);
	uv_timer_init(loop, &c->query_timer);
	c->kick.data = c->conn_timer.data = c->query_timer.data = c;
	c->handles = 3;
	return c;
}

int pgconn_query(struct pgconn *c, const char *sql, int nparams, const char *const *params,
		 uint32_t timeout_ms, pgconn_cb cb, void *arg)
{
	size_t size, sqllen;
	struct pgq *q;
	char *p;

	if (!c || !sql || !cb || nparams < 0 || nparams > PGCONN_MAX_PARAMS ||
	    (nparams && !params))
		return -EINVAL;
	if (c->closing)
		return -ESHUTDOWN;
	/* max_queue waiting behind the running (or connecting-for) one. */
	if (c->nq >= c->max_queue + 1) {
		c->stats.rejected++;
		return -EAGAIN;
	}
	sqllen = strlen(sql) + 1;
	size = sizeof(*q) + (size_t)nparams * sizeof(char *) + sqllen;
	for (int i = 0; i < nparams; i++)
		if (params[i])
			size += strlen(params[i]) + 1;
	q = malloc(size);
	if (!q)
		return -ENOMEM;
	memset(q, 0, sizeof(*q));
	q->params = (const char **)(q + 1);
	p = (char *)(q->params + nparams);
	memcpy(p, sql, sqllen);
	q->sql = p;
	p += sqllen;
	for (int i = 0; i < nparams; i++) {
		if (!params[i]) {
			q->params[i] = NULL;
			continue;
		}
		size_t len = strlen(params[i]) + 1;

		memcpy(p, params[i], len);
		q->params[i] = p;
		p += len;
	}
	q->nparams = nparams;
	q->cb = cb;
	q->arg = arg;
	q->timeout_ms = timeout_ms ? timeout_ms : c->query_timeout_ms;
	q->deadline = uv_now(c->loop) + q->timeout_ms;
	*c->tail = q;
	c->tail = &q->next;
	c->nq++;
	c->stats.queries++;
	arm_query_timer(c);
	if (c->st == ST_IDLE || c->st == ST_READY)
		uv_timer_start(&c->kick, on_kick, 0, 0);
	return 0;
}

void pgconn_close(struct pgconn *c)
{
	struct pgq *q, *next;

	if (!c || c->closing)
		return;
	c->closing = true;
	conn_drop(c);                 /* closes the poll before PQfinish() */
	for (q = c->head; q; q = next) {
		next = q->next;
		free(q);
	}
	c->head = NULL;
	c->tail = &c->head;
	c->nq = 0;
	uv_close((uv_handle_t *)&c->kick, handle_closed);
	uv_close((uv_handle_t *)&c->conn_timer, handle_closed);
	uv_close((uv_handle_t *)&c->query_timer, handle_closed);
}

void pgconn_stats_get(const struct pgconn *c, struct pgconn_stats *out)
{
	*out = c->stats;
	out->queued = c->nq;
	out->connected = pgconn_connected(c);
}

uint32_t pgconn_queued(const struct pgconn *c)
{
	return c->nq;
}

bool pgconn_connected(const struct pgconn *c)
{
	return c->st == ST_READY || c->st == ST_BUSY;
}

uint64_t pgconn_serial(const struct pgconn *c)
{
	return c->serial;
}

int pgconn_socket(const struct pgconn *c)
{
	if (!c || !c->sock.pg || (c->st != ST_READY && c->st != ST_BUSY))
		return -1;
	return PQsocket(c->sock.pg);
}
