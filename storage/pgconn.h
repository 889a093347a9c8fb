/*
 * storage/pgconn.h - one asynchronous libpq connection on a libuv loop.
 *
 * The building block of the storage layer: the postgres lease
 * (election/lease_pg.h) runs on one, and a connection pool can own
 * several.  Nothing here ever blocks the loop: the connection is made
 * with PQconnectStartParams()/PQconnectPoll() and queries are sent with
 * PQsendQueryParams() (parameters always separate from the SQL text, text
 * format), both driven by a uv_poll on PQsocket().  libpq would resolve a
 * host NAME with a blocking getaddrinfo() inside PQconnectStartParams():
 * each attempt resolves the names first, off the loop, and hands libpq
 * the addresses (storage/pgresolve.h); the connect timeout covers both.
 *
 * Queries run one at a time in FIFO order; at most max_queue wait behind
 * the running one (pgconn_query() says -EAGAIN past that).  Every query
 * has a deadline counted from pgconn_query(): waiting in the queue and for
 * the connection included.  A query that reaches it fails with
 * -ETIMEDOUT; when it was running on the server the connection is dropped
 * (PQfinish: a hung server must not hold the next query) and made again
 * for the next one.
 *
 * Connecting is lazy: only a query waiting makes a connection attempt.
 * After a failure (refused, lost, timed out) the next attempt waits an
 * exponential backoff with jitter (lib/backoff.h), reset by the next
 * successful connection, so the backoff exists only between a failure
 * and the next success.  A query whose deadline falls before the next
 * attempt fails at once with -ENOTCONN and the last error, rather than
 * sitting out its deadline.
 *
 * Connection options.  The conninfo (URL or key=value) is parsed with
 * PQconninfoParse() and these keywords are always set on top of it:
 * keepalives=1, keepalives_idle, keepalives_interval, keepalives_count,
 * tcp_user_timeout and connect_timeout (ours win over the conninfo: a
 * dead peer must be noticed within the bounds the agent promises), and
 * our application_name as libpq's fallback_application_name, so that an
 * application_name in the conninfo (or PGAPPNAME) wins: an operator
 * naming the connection knows best.  statement_timeout, when configured, is
 * appended to the conninfo's "options" as "-c statement_timeout=N"
 * (after the user's, so ours wins there too).
 *
 * Result size.  With max_result_bytes set, rows are read one at a time
 * (PQsetSingleRowMode) and counted (16 bytes a row, and each value's
 * length plus 8); past the bound the query fails with -EFBIG and the
 * connection is dropped rather than read further (the server stops when
 * it next writes), so an answer never holds more than about two or three
 * times the bound in memory (the rows, and their copy into one result),
 * whatever the statement.  The next query connects again at once: the
 * server did nothing wrong.  Rows of no columns (SELECT FROM t) cannot be
 * gathered that way: -EPROTO.  Without the bound libpq reads the whole
 * answer into memory.
 *
 * Answers.  The callback gets a struct pgconn_reply, valid during the
 * callback only (the PGresult is freed after it returns; the caller
 * never frees it).  It is called exactly once per accepted query, always
 * from a libuv callback, never from inside pgconn_query(); it may call
 * pgconn_query() and pgconn_close().
 *
 * pgconn_close() drops every query, the running one included, WITHOUT
 * calling their callbacks (the owner is going away), and frees the
 * connection once libuv has closed its handles (run the loop).
 *
 * Not thread-safe; one loop.
 */
#ifndef MERIDIAN_STORAGE_PGCONN_H
#define MERIDIAN_STORAGE_PGCONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>
#include <uv.h>

#define PGCONN_ERROR_MAX 256          /* bytes of an error text, with the NUL */
#define PGCONN_MAX_PARAMS 64          /* parameters of one query */
#define PGCONN_MAX_QUEUE 4096         /* the largest max_queue accepted */

/* Every field left 0 takes the default shown (statement_timeout_ms: 0 is
 * "not set"). */
struct pgconn_config {
	const char *conninfo;           /* URL or key=value string (copied); required */
	const char *application_name;   /* when the conninfo names none (copied); "meridian" */
	uint32_t connect_timeout_ms;    /* one connection attempt (5000); libpq's
					   connect_timeout is max(1, this / 1000) s */
	uint32_t query_timeout_ms;      /* a query's deadline when it passes 0 (5000) */
	uint32_t statement_timeout_ms;  /* server-side statement_timeout (not set) */
	uint32_t keepalives_idle_s;     /* (5) */
	uint32_t keepalives_interval_s; /* (2) */
	uint32_t keepalives_count;      /* (3) */
	uint32_t tcp_user_timeout_ms;   /* (10000) */
	uint32_t max_queue;             /* queries waiting behind the running one (16) */
	size_t max_result_bytes;        /* rows read for one answer (unbounded) */
	uint32_t backoff_initial_ms;    /* first reconnect delay after a failure (100) */
	uint32_t backoff_max_ms;        /* (5000) */
	uint64_t seed;                  /* backoff jitter */
};

/*
 * What a query came to.  status 0: @res is the statement's result
 * (PGRES_TUPLES_OK or PGRES_COMMAND_OK).  Otherwise @res is NULL, @error
 * says why in one line and status is:
 *   -EREMOTEIO    the server answered with an error (@sqlstate set, and
 *                 in @error as "SQLSTATE xxxxx: message");
 *   -ETIMEDOUT    the deadline passed (a running query's connection was
 *                 dropped);
 *   -ENOTCONN     no connection could be made (refused, authentication,
 *                 connect timeout...), or none before the deadline;
 *   -ECONNRESET   the connection was lost while the query ran (@sqlstate
 *                 set when the server said why, e.g. 57P01);
 *   -EPROTO       an answer this module does not handle (COPY, several
 *                 statements' worth of results, rows of no columns
 *                 under max_result_bytes);
 *   -EFBIG        the answer's rows passed max_result_bytes (the
 *                 connection was dropped);
 *   -ENOMEM.
 */
struct pgconn_reply {
	int status;
	const PGresult *res;
	const char *sqlstate;         /* five characters, or "" */
	const char *error;            /* "" when status is 0 */
	uint64_t conn_serial;         /* which connection ran it (1, 2, ... in the order
					 they were made); 0 when none did */
};

typedef void (*pgconn_cb)(void *arg, const struct pgconn_reply *r);

struct pgconn;

/*
 * Creates the connection object; connects lazily on the first query.
 * NULL when the config is invalid (no conninfo, one libpq cannot parse,
 * max_queue above PGCONN_MAX_QUEUE) or out of memory; then @err (if not
 * NULL) holds the reason.
 */
struct pgconn *pgconn_new(uv_loop_t *loop, const struct pgconn_config *cfg, char *err,
			  size_t errlen);

/*
 * Queues @sql with @nparams text parameters (@params[i] NULL is SQL
 * NULL); everything is copied.  @timeout_ms 0 takes the configured
 * query_timeout_ms.  @sql must be ONE statement.  Returns 0 (then @cb is
 * called exactly once, later), -EAGAIN when the queue is full, -EINVAL
 * (no sql or cb, too many parameters), -ESHUTDOWN after pgconn_close(),
 * -ENOMEM.
 */
int pgconn_query(struct pgconn *c, const char *sql, int nparams, const char *const *params,
		 uint32_t timeout_ms, pgconn_cb cb, void *arg);

/* See the top of this file: no callback is called after this.  NULL is a
 * no-op. */
void pgconn_close(struct pgconn *c);

struct pgconn_stats {
	uint64_t connects;            /* connections made */
	uint64_t connect_failures;    /* attempts that failed or timed out */
	uint64_t disconnects;         /* connections lost or dropped */
	uint64_t queries;             /* accepted by pgconn_query() */
	uint64_t failures;            /* answered with status < 0 (timeouts included) */
	uint64_t timeouts;            /* answered -ETIMEDOUT */
	uint64_t rejected;            /* -EAGAIN: queue full */
	uint64_t too_large;           /* -EFBIG: answers past max_result_bytes */
	uint32_t queued;              /* waiting now, the running one included */
	int connected;                /* 1 when a connection is up now */
	char last_error[PGCONN_ERROR_MAX];  /* the latest failure, "" if none */
};
void pgconn_stats_get(const struct pgconn *c, struct pgconn_stats *out);

/* Single fields of the above for a decision per query (which pool member,
 * whether the live connection is a known one) without copying the whole
 * struct: queued and connected as in pgconn_stats, and the serial of the
 * live connection as in pgconn_reply.conn_serial (0 when none). */
uint32_t pgconn_queued(const struct pgconn *c);
bool pgconn_connected(const struct pgconn *c);
uint64_t pgconn_serial(const struct pgconn *c);

/* The socket of the live connection, -1 when none: for diagnostics and
 * tests (e.g. reading back the keepalive options).  Do not read, write or
 * close it. */
int pgconn_socket(const struct pgconn *c);

#endif
