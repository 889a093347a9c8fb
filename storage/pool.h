/*
 * storage/pool.h - a bounded pool of asynchronous connections
 * (storage/pgconn.h) to one database URL.
 *
 * `size` pgconn objects, made up front but connected lazily (each one
 * connects when its first query arrives; keepalives, tcp_user_timeout,
 * reconnection with backoff: all pgconn's, with its defaults).  A query
 * goes to the connection with the fewest queries queued (the running one
 * counted); on a tie a connected one is preferred, then the next after the
 * one chosen last (round robin), so that a burst of N concurrent queries
 * on an idle pool spreads over min(N, size) connections.  Every
 * connection queues at most max_queue queries behind its running one:
 * pgpool_query() says -EAGAIN when the least loaded is full (so all are).
 * A query never moves to another connection once queued: a connection
 * that fails fails its own queries (pgconn: -ENOTCONN, -ECONNRESET,
 * -ETIMEDOUT...), fast, and the next queries still go to the least
 * loaded.
 *
 * Answers come exactly as pgconn gives them (struct pgconn_reply, valid
 * during the callback, never from inside pgpool_query()); the callback
 * may call pgpool_query() and pgpool_close().  pgpool_close() closes every
 * connection and frees the pool at once (the pointer is dead after it):
 * no callback after it, queued queries dropped; run the loop so that
 * libuv can close the connections' handles.
 *
 * Stats: queries/failures/timeouts/rejected and last_error are the
 * pool's own (counted from the answers it relays, so last_error is the
 * latest failed query's error); connects and connect_failures are summed
 * over the connections; connected and queued are now.
 *
 * Not thread-safe; one loop.
 */
#ifndef MERIDIAN_STORAGE_POOL_H
#define MERIDIAN_STORAGE_POOL_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "storage/pgconn.h"

#define PGPOOL_MAX_SIZE 64

/* Fields left 0 take pgconn's defaults, except size (4) and max_queue (64). */
struct pgpool_config {
	const char *conninfo;           /* required (copied) */
	const char *application_name;   /* when the conninfo names none (copied) */
	uint32_t size;                  /* connections, 1..PGPOOL_MAX_SIZE (4) */
	uint32_t max_queue;             /* per connection, behind the running one,
					   up to PGCONN_MAX_QUEUE (64) */
	uint32_t query_timeout_ms;
	uint32_t statement_timeout_ms;
	uint32_t connect_timeout_ms;
	size_t max_result_bytes;        /* rows read for one answer (unbounded) */
	uint64_t seed;                  /* backoff jitter; each connection draws its own */
};

struct pgpool;

/* NULL with @err (if not NULL) set when the config is invalid (no
 * conninfo, one libpq cannot parse, size or max_queue too large) or out of
 * memory. */
struct pgpool *pgpool_new(uv_loop_t *loop, const struct pgpool_config *cfg, char *err,
			  size_t errlen);

/* As pgconn_query() (see pgconn.h), on the least loaded connection.  0,
 * -EAGAIN when every connection's queue is full, -EINVAL, -ENOMEM. */
int pgpool_query(struct pgpool *p, const char *sql, int nparams, const char *const *params,
		 uint32_t timeout_ms, pgconn_cb cb, void *arg);

/* As pgconn_close(): no callback after it; @p is freed.  NULL is a no-op. */
void pgpool_close(struct pgpool *p);

struct pgpool_stats {
	uint32_t size;                /* connections configured */
	uint32_t connected;           /* up now */
	uint32_t queued;              /* queries waiting or running now */
	uint64_t queries;             /* accepted by pgpool_query() */
	uint64_t failures;            /* answered with status < 0 */
	uint64_t timeouts;            /* answered -ETIMEDOUT */
	uint64_t rejected;            /* -EAGAIN */
	uint64_t connects;            /* connections made, all connections */
	uint64_t connect_failures;    /* connection attempts failed, all connections */
	char last_error[PGCONN_ERROR_MAX];  /* the latest failed answer's, "" if none */
};
void pgpool_stats_get(const struct pgpool *p, struct pgpool_stats *out);

#endif
