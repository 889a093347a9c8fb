/*
 * region/rpc_serve.h - the seam between the RPC server (region/rpc.c: frames,
 * connections, deadlines, bounds) and whatever runs methods
 * (region/handlers.c: built-ins, exec handlers, the application upstream).
 *
 * The server decodes a request, checks what it owns (version, leaving,
 * in-flight bound), and hands the call to start().  The method runner
 * answers through reply() exactly once, now or later (an exec handler
 * answers when its child exits), unless the server calls cancel() first
 * (deadline reached, connection gone, shutdown), after which reply() must
 * not be called and the job's resources are released (a child is killed).
 *
 * The local short-cut (a call whose target is this node) uses the same
 * seam, so a method behaves the same whether it arrived over the network or
 * not.
 */
#ifndef MERIDIAN_REGION_RPC_SERVE_H
#define MERIDIAN_REGION_RPC_SERVE_H

#include <stddef.h>
#include <stdint.h>

#include "region/rpc_proto.h"

/* One call to run.  Every pointer is valid during start() only: copy what
 * you keep. */
struct rpc_serve_call {
	const char *method;          /* NUL-terminated, rpc_method_valid() */
	const uint8_t *args;         /* msgpack of the arguments, as sent */
	size_t args_len;
	uint32_t deadline_ms;        /* time left, counted from start() */
	const char *origin_node;     /* NUL-terminated */
	const char *origin_region;   /* NUL-terminated */
};

/* The answer.  Pointers are valid during reply() only (the server copies). */
struct rpc_serve_reply {
	enum rpc_error error;        /* RPC_E_NONE = ok */
	const char *message;         /* with an error: human text (cleaned by
					the server with rpc_message_clean) */
	uint32_t retry_after_ms;     /* with unavailable / overloaded; 0 = none */
	const uint8_t *result;       /* when ok: the result bytes (typically
					JSON text); at most RPC_BODY_MAX */
	size_t result_len;
};

typedef void (*rpc_reply_fn)(void *reply_ctx, const struct rpc_serve_reply *r);

struct rpc_serve_ops {
	void *ctx;
	/*
	 * Starts @call.  Returns 0 and stores an opaque job in *@job (may be
	 * NULL when the reply was already given synchronously), or a negative
	 * errno when it could not start, in which case reply() has already
	 * been called with the reason (no_such_method, overloaded, ...).
	 */
	int (*start)(void *ctx, const struct rpc_serve_call *call, rpc_reply_fn reply,
		     void *reply_ctx, void **job);
	/* Stops @job (non-NULL, not yet replied): reply() is never called for
	 * it afterwards. */
	void (*cancel)(void *ctx, void *job);
};

#endif
