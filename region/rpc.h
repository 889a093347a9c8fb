/*
 * region/rpc.h - region RPC over the cluster's TCP port: the server that
 * answers calls from other nodes, the client that makes them, and the
 * metrics of both.
 *
 * Frames are rpc_proto.h's, carried as persistent streams of the transport
 * (gossip/transport.h, kind 'R'): sealed, length-prefixed, bounded by
 * frame_max.  A client keeps one connection per peer, opened on first use
 * and closed when idle, and multiplexes every call to that peer on it by
 * request id.  Calls are at-most-once: nothing here ever retries.  A call
 * that fails before its request was written says so (sent == false), and
 * only then may a caller try another candidate.
 *
 * Every callback runs on the loop, never from inside the rpc_*() call that
 * caused it, except where a close function says otherwise.  Close the
 * server and the client before the transport they use.
 */
#ifndef MERIDIAN_REGION_RPC_H
#define MERIDIAN_REGION_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "gossip/transport.h"
#include "region/rpc_proto.h"
#include "region/rpc_serve.h"

/* ------------------------------------------------------------------ */
/* Metrics                                                             */
/* ------------------------------------------------------------------ */

#define RPC_METRICS_METHODS 64    /* distinct methods; the rest are "other" */

/* Which end of a call a metric counts. */
enum rpc_side {
	RPC_SIDE_CLIENT = 0,      /* calls this node made (what callers saw) */
	RPC_SIDE_SERVER = 1,      /* calls this node served */
};

struct rpc_metrics;

/* A zeroed metrics set; NULL when out of memory.  Freed by
 * rpc_metrics_free() (NULL is fine), after the client and server using it. */
struct rpc_metrics *rpc_metrics_new(void);
void rpc_metrics_free(struct rpc_metrics *m);

/*
 * Counts one call of @method (anything: an invalid or unseen name past
 * RPC_METRICS_METHODS counts as "other") ending with @outcome ("ok", an
 * rpc_error_name(), or one of rpc_result_outcome()'s; unknown ones count
 * as "other") after @seconds.  @m NULL: nothing.
 */
void rpc_metrics_observe(struct rpc_metrics *m, enum rpc_side side, const char *method,
			 const char *outcome, double seconds);

/*
 * Writes, in Prometheus text format, meridian_rpc_calls_total{side,method,
 * outcome} (counter; only non-zero series) and meridian_rpc_duration_seconds
 * {side,method} (histogram, fixed buckets from 100 us to 60 s).  Returns
 * 0 or -EIO when @f reports an error.
 */
int rpc_metrics_print(const struct rpc_metrics *m, FILE *f);

/* ------------------------------------------------------------------ */
/* Server                                                              */
/* ------------------------------------------------------------------ */

struct rpc_server_config {
	const char *node;             /* answered as "n"; must be valid */
	const char *version;          /* answered as "nv"; "" -> "unknown" */
	uint32_t max_inflight;        /* calls running at once; 1024 default */
	uint32_t overload_retry_ms;   /* retry-after with overloaded; 100 */
	uint32_t idle_ms;             /* close a connection quiet this long
					 with no call running; 120000 */
};

struct rpc_server;

/*
 * Registers for kind 'R' streams on @t and serves them through @ops
 * (copied; ops->ctx must outlive the server).  @m: optional, not owned.
 * Returns 0 and *@out; -EINVAL (bad config), -ENOMEM, or the transport's
 * error (-ENOSPC).
 */
int rpc_server_new(uv_loop_t *loop, struct transport *t, const struct rpc_server_config *cfg,
		   const struct rpc_serve_ops *ops, struct rpc_metrics *m,
		   struct rpc_server **out);

/* While @leaving, new requests are answered unavailable with
 * @retry_after_ms (0 = none); calls in flight go on. */
void rpc_server_set_leaving(struct rpc_server *s, bool leaving, uint32_t retry_after_ms);

/* Calls being run right now. */
size_t rpc_server_inflight(const struct rpc_server *s);

/*
 * Calls @cb(@ctx, remaining) once: as soon as no call is in flight
 * (remaining == 0), or after @timeout_ms with the number still running
 * (they go on; rpc_server_close() cancels them).  Never from inside this
 * call.  A second drain replaces the first, whose callback is not called.
 * Usually preceded by rpc_server_set_leaving().
 */
void rpc_server_drain(struct rpc_server *s, uint64_t timeout_ms,
		      void (*cb)(void *ctx, size_t remaining), void *ctx);

/* Cancels every job (ops.cancel), closes every connection, unregisters
 * from the transport; frees itself once libuv has closed its handles (keep
 * running the loop).  No drain callback runs afterwards.  NULL is fine. */
void rpc_server_close(struct rpc_server *s);

/* ------------------------------------------------------------------ */
/* Client                                                              */
/* ------------------------------------------------------------------ */

/* How a call ended. */
enum rpc_status {
	RPC_OK = 0,           /* the peer answered ok: result */
	RPC_FAILED,           /* an error: error (from the peer, or decided here:
				 timeout, overloaded, version_mismatch) */
	RPC_NOT_SENT,         /* the request never left this node (connect
				 refused, unreachable, timed out connecting):
				 safe to try the next candidate; err */
	RPC_CONN_LOST,        /* the connection broke after the request may
				 have been written: it may have run; err */
};

/* Everything valid during the callback only. */
struct rpc_result {
	enum rpc_status status;
	enum rpc_error error;         /* RPC_FAILED: the code; else RPC_E_NONE */
	bool sent;                    /* the request may have reached the peer */
	int err;                      /* NOT_SENT / CONN_LOST: libuv's code */
	const char *code;             /* NUL-terminated: "ok", the error's code
					 (the peer's text for RPC_E_OTHER),
					 "not_sent" or "connection_lost" */
	const char *message;          /* NUL-terminated text for users; "" */
	uint32_t retry_after_ms;      /* with unavailable / overloaded; 0 */
	const uint8_t *result;        /* RPC_OK: the result bytes */
	size_t result_len;
	const char *node;             /* the answering node, or the peer asked */
	const char *node_version;     /* its version; "" when unknown */
	double seconds;               /* from rpc_client_call() to now */
};

typedef void (*rpc_call_fn)(void *ctx, const struct rpc_result *r);

/* The metric outcome of @r: "ok", an error code, "not_sent" or
 * "connection_lost".  Static string. */
const char *rpc_result_outcome(const struct rpc_result *r);

struct rpc_client_config {
	const char *node;             /* origin node sent with every call */
	const char *region;           /* origin region */
	uint32_t max_inflight;        /* calls in flight; 1024 default, < 2^20 */
	uint32_t max_peers;           /* connections kept; 64 default */
	uint32_t idle_ms;             /* close a connection idle this long; 60000 */
};

struct rpc_client;

/* Returns 0 and *@out; -EINVAL (bad config), -ENOMEM.  @t and @m (optional)
 * are not owned. */
int rpc_client_new(uv_loop_t *loop, struct transport *t, const struct rpc_client_config *cfg,
		   struct rpc_metrics *m, struct rpc_client **out);

/*
 * Calls @method on the node @peer_name at @peer_addr ("host:port", its
 * cluster address) with @args (msgpack, @args_len bytes, copied), giving
 * it @deadline_ms (1..RPC_DEADLINE_MAX_MS).  Returns 0 and later calls
 * @cb(@ctx, result) exactly once; or fails at once, @cb never called:
 * -EINVAL (bad method, name, address or deadline), -EMSGSIZE (args over
 * RPC_BODY_MAX), -EBUSY (max_inflight calls in flight, or every pooled
 * connection busy: answer "overloaded"), -ESHUTDOWN (closing), -ENOMEM.
 * At the deadline @cb gets timeout and a cancel goes to the peer.
 */
int rpc_client_call(struct rpc_client *c, const char *peer_name, const char *peer_addr,
		    const char *method, const uint8_t *args, size_t args_len,
		    uint32_t deadline_ms, rpc_call_fn cb, void *ctx);

/* Calls in flight. */
size_t rpc_client_inflight(const struct rpc_client *c);

/* Connections open or opening (for tests and /metrics). */
size_t rpc_client_connections(const struct rpc_client *c);

/* Fails every call in flight (from inside this call: NOT_SENT or
 * CONN_LOST with UV_ECANCELED), closes every connection; frees itself
 * once libuv has closed its handles.  NULL is fine. */
void rpc_client_close(struct rpc_client *c);

#endif
