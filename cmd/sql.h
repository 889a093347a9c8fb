/*
 * cmd/sql.h - reads on the local replica, writes on the primary (here, or
 * forwarded by region RPC to a primary-region node), and read-your-writes
 * by LSN: POST /v1/sql and the RPC method sql.write.
 *
 * Routing (fly_postgres's, for any language).  A read runs on
 * DATABASE_URL, this region's replica (in the primary region that may be
 * the primary itself; without DATABASE_URL a primary-region node reads from
 * PRIMARY_DATABASE_URL).  A write runs on PRIMARY_DATABASE_URL when this
 * node is in the primary region; anywhere else it is the RPC sql.write to
 * the nearest alive primary-region node (region_choose PRIMARY).  Only a
 * connection refused before the request left moves on to the next
 * candidate; a call that may have run and then timed out or lost its
 * connection answers outcome_unknown and is never retried.  Whether a
 * statement writes is the caller's word ("write": true), as in Fly's API:
 * a write sent as a read fails with Postgres's own read-only error
 * (25006), passed through.
 *
 * Every write answers with the LSN taken after its commit
 * (pg_current_wal_insert_lsn(), on the primary).  "wait": true (or
 * "min_lsn") holds the answer, or the read, until this region's replica has
 * replayed that LSN, at most the wait timeout (--replica-lag-timeout, 5 s),
 * after which the caller gets replica_lag_timeout naming the lag.  One
 * poller per agent serves every waiter (storage/lsn.h): it asks the
 * replica for pg_last_wal_replay_lsn() only while someone waits, every
 * SQL_POLL_MS, and wakes waiters in LSN order.  A replica that cannot be
 * reached fails the waiters at once (database_unavailable), never makes
 * them sit out their timeout.
 *
 * Bounds: the SQL text (SQL_TEXT_MAX), parameters (PGCONN_MAX_PARAMS,
 * each as text), requests in flight (SQL_INFLIGHT_MAX: overloaded past
 * it), waiters (SQL_WAITERS_MAX), the result (SQL_RESULT_MAX here, less
 * for a forwarded write: it must fit one RPC frame; and no more than
 * SQL_READ_MAX of rows is ever read from the database, whatever the
 * statement): past each, an explicit error.
 */
#ifndef MERIDIAN_CMD_SQL_H
#define MERIDIAN_CMD_SQL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "cmd/config.h"
#include "cmd/http_server.h"
#include "region/rpc_serve.h"

#define SQL_TEXT_MAX (256 * 1024)
#define SQL_RESULT_MAX (4 * 1024 * 1024)
#define SQL_READ_MAX (2 * SQL_RESULT_MAX)  /* rows read from the database for one answer */
#define SQL_INFLIGHT_MAX 1024
#define SQL_WAITERS_MAX 4096
#define SQL_POLL_MS 2
#define SQL_PROBE_MS 5000         /* the replica lag metric, when idle */
#define SQL_METHOD_WRITE "sql.write"

struct agent;
struct sqlfront;

/* NULL when out of memory or a database URL cannot be parsed (logged). */
struct sqlfront *sqlfront_new(uv_loop_t *loop, struct agent *a, const struct config *cfg);
/* Answers every request still waiting (unavailable), closes the pools;
 * frees once libuv has closed its handles.  NULL: no-op. */
void sqlfront_close(struct sqlfront *s);

/* POST /v1/sql. */
void sqlfront_http(struct sqlfront *s, struct http_request *req,
		   const struct http_request_view *v);

/* The RPC method runner of this node: sql.write here, every other method
 * to @next (the handlers).  The ops' ctx is @s. */
struct rpc_serve_ops sqlfront_rpc_ops(struct sqlfront *s, struct rpc_serve_ops next);

/* For /readyz and `meridian info`: each database this node uses, whether
 * it is reachable now. */
json_t *sqlfront_status_json(struct sqlfront *s);

struct sqlfront_stats {
	uint64_t reads, writes, forwarded, failures, waits, wait_timeouts;
	uint64_t replay_lsn;          /* the local replica's, last seen; 0 unknown */
	uint64_t lag_bytes;           /* highest LSN written through us - replay_lsn */
	double lag_seconds;           /* now() - pg_last_xact_replay_timestamp(); -1 unknown */
	uint32_t inflight, waiters;
};
void sqlfront_stats_get(const struct sqlfront *s, struct sqlfront_stats *out);

#endif
