/*
 * region/handlers.h - what runs a region RPC once it has reached its node:
 * the built-in methods, user exec handlers, and the application upstream.
 *
 * This is the method runner behind region/rpc_serve.h: rpc_handlers_ops()
 * gives the server (region/rpc.c) its struct rpc_serve_ops.  A call is
 * looked up in this order:
 *
 *   1. built-ins, answered at once: "ping" -> {"node":..,"region":..},
 *      "info" -> {"node","region","primary_region","is_primary","version"},
 *      "echo" -> its arguments as a JSON array;
 *   2. exec handlers (--handler NAME=COMMAND): `/bin/sh -c COMMAND`, spawned
 *      with libuv in a session of its own, the arguments as a JSON array on
 *      stdin (then closed), MERIDIAN_METHOD, MERIDIAN_ORIGIN_NODE and
 *      MERIDIAN_ORIGIN_REGION added to the agent's environment.  Exit 0: ok,
 *      stdout is the result (one trailing newline trimmed).  Non-zero exit
 *      or a signal: remote_error "handler NAME exited with status N: <the
 *      tail of stderr>".  Past the deadline the process group gets SIGTERM,
 *      then SIGKILL 500 ms later, and the call answers timeout.  When the
 *      shell exits, whatever is left of its process group is killed, so a
 *      stray background job cannot hold the result open;
 *   3. the upstream (--rpc-upstream http://127.0.0.1:PORT/path), when set:
 *      an HTTP/1.1 POST, on the loop, of {"method","args","origin":{"node",
 *      "region"}}.  2xx: ok, the body is the result; 404: no_such_method;
 *      other statuses: remote_error "upstream answered N: <body start>";
 *      connection refused: remote_error "upstream unreachable";
 *   4. otherwise no_such_method: "no method \"m\" on node N (meridian V)".
 *
 * Bounds: at most max_jobs exec and upstream calls at once (past it:
 * overloaded, retry after RPC_HANDLERS_RETRY_AFTER_MS); a result (stdout or
 * upstream body) of at most output_max bytes, past which the child is
 * killed (or the connection dropped) and the call answers remote_error;
 * the last RPC_HANDLERS_STDERR_TAIL bytes of stderr.
 *
 * Arguments travel as msgpack (an array of values); handlers and the
 * upstream see them as JSON.  rpc_args_to_json() and rpc_args_from_json()
 * convert between the two, for this module and for the agent's API/CLI.
 *
 * The process must ignore SIGPIPE (the agent does): a handler that exits
 * without reading its stdin makes the write to it fail with EPIPE.
 */
#ifndef MERIDIAN_REGION_HANDLERS_H
#define MERIDIAN_REGION_HANDLERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "region/rpc_proto.h"
#include "region/rpc_serve.h"

#define RPC_HANDLERS_MAX 64               /* exec handlers per node */
#define RPC_HANDLER_COMMAND_MAX 4096      /* bytes of one COMMAND */
#define RPC_HANDLERS_JOBS_DEFAULT 64      /* max_jobs when 0 is given */
#define RPC_HANDLERS_RETRY_AFTER_MS 100   /* with overloaded */
#define RPC_HANDLERS_STDERR_TAIL 1024     /* stderr bytes kept */
#define RPC_HANDLERS_KILL_GRACE_MS 500    /* SIGTERM to SIGKILL */
#define RPC_UPSTREAM_URL_MAX 1024         /* bytes of the upstream URL */
#define RPC_ARGS_DEPTH_MAX 32             /* nesting of argument values */

/* One exec handler, as parsed from "NAME=COMMAND". */
struct rpc_handler_spec {
	char name[RPC_METHOD_MAX + 1];    /* NUL-terminated, rpc_method_valid */
	const char *command;              /* points into the parsed text */
};

struct rpc_handlers_config {
	const char *node;                 /* this node's name (required) */
	const char *region;               /* its region (required) */
	const char *primary_region;       /* NULL or "" = not known */
	const char *version;              /* software version (required) */
	const struct rpc_handler_spec *handlers;   /* may be NULL when 0 */
	size_t nhandlers;                 /* <= RPC_HANDLERS_MAX */
	const char *upstream;             /* URL, or NULL / "" for none */
	unsigned max_jobs;                /* 0 = RPC_HANDLERS_JOBS_DEFAULT */
	size_t output_max;                /* 0 = RPC_BODY_MAX; <= RPC_BODY_MAX */
};

struct rpc_handlers;

/*
 * Parses @spec, "NAME=COMMAND", into @out (@out->command then points into
 * @spec, which must outlive it).  Returns 0, or -EINVAL with a reason in
 * @err (NUL-terminated, at most @errlen bytes; @err may be NULL): no '=',
 * an invalid NAME, a built-in NAME ("ping", "info", "echo"), an empty or
 * too long COMMAND.
 */
int rpc_handlers_parse_spec(const char *spec, struct rpc_handler_spec *out, char *err,
			    size_t errlen);

/*
 * Checks an upstream URL as rpc_handlers_new() would: "http://HOST[:PORT]
 * [/path]" with a numeric HOST ("127.0.0.1", "[::1]") or "localhost"
 * (taken as 127.0.0.1), PORT 80 when left out, path "/" when left out.
 * Returns 0, or -EINVAL with a reason in @err (as above).
 */
int rpc_handlers_upstream_check(const char *url, char *err, size_t errlen);

/*
 * Creates the method runner on @loop, copying everything it keeps from
 * @cfg.  Returns it, or NULL with a reason in @err (as above) when @cfg is
 * invalid (a bad or duplicate handler, a bad upstream URL, a bound out of
 * range) or memory ran out.
 */
struct rpc_handlers *rpc_handlers_new(uv_loop_t *loop, const struct rpc_handlers_config *cfg,
				      char *err, size_t errlen);

/* The server's seam (region/rpc_serve.h); ops.ctx is @h.  Valid until
 * rpc_handlers_close(). */
struct rpc_serve_ops rpc_handlers_ops(struct rpc_handlers *h);

/*
 * Stops everything without replying: children get SIGKILL, upstream
 * connections are closed.  @h frees itself once libuv has closed every
 * handle it owns and reaped every child (run the loop); @h and its ops must
 * not be used after this call.
 */
void rpc_handlers_close(struct rpc_handlers *h);

/* Counters, for /metrics. */
struct rpc_handlers_stats {
	unsigned jobs;               /* exec and upstream calls holding resources */
	uint64_t exec_started;       /* children spawned */
	uint64_t exec_spawn_failed;  /* uv_spawn failures */
	uint64_t killed;             /* children killed (deadline, size, cancel) */
	uint64_t upstream_calls;     /* upstream requests started */
	uint64_t overloaded;         /* calls refused at max_jobs */
	uint64_t bad_args;           /* calls whose args were not a msgpack array */
};
void rpc_handlers_stats(const struct rpc_handlers *h, struct rpc_handlers_stats *out);

/*
 * Converts @len bytes of msgpack arguments (one array; @len 0 means [])
 * into compact UTF-8 JSON text, stored malloc'd and NUL-terminated in
 * *@json (free() it), its length in *@json_len (may be NULL).  Strings and
 * bins must be valid UTF-8; maps need string keys; nesting at most
 * RPC_ARGS_DEPTH_MAX; integers beyond int64 become reals.  Returns 0;
 * -EINVAL with a reason in @err (as above) when @args is not such an array
 * (truncated, trailing bytes, ext types, NaN...); -ENOMEM.
 */
int rpc_args_to_json(const uint8_t *args, size_t len, char **json, size_t *json_len, char *err,
		     size_t errlen);

/*
 * Converts JSON text @json (a JSON array; NULL or "" means []) into
 * msgpack, appended to @out (an rpc_buf as region/rpc_proto.h describes;
 * start it zeroed, free it with rpc_buf_free()).  Integers become msgpack
 * ints, reals floats (64-bit), objects maps.  Returns 0; -EINVAL with a
 * reason in @err when @json is not valid JSON, not an array, or nested
 * deeper than RPC_ARGS_DEPTH_MAX; -EMSGSIZE when the msgpack exceeds
 * RPC_BODY_MAX; -ENOMEM.  On failure @out is as it was.
 */
int rpc_args_from_json(const char *json, struct rpc_buf *out, char *err, size_t errlen);

#endif
