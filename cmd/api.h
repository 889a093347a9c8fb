/*
 * cmd/api.h - the routes of the local HTTP API (docs/api.md), served by
 * cmd/http_server.h on the agent's loop.
 *
 *   GET  /v1/members   ?region=R&status=S   the membership view, by name
 *   GET  /v1/self                           this node
 *   POST /v1/leave                          start a graceful leave (202)
 *   POST /v1/rpc                            region-targeted RPC (deferred)
 *   GET  /healthz  /readyz  /metrics        monitoring
 *
 * Everything but /v1/rpc is answered synchronously from the agent's state
 * (cmd/agent.h); /v1/rpc answers when the call ends.  Errors have the shape
 * {"error":{"code":...,"message":...}}.
 */
#ifndef MERIDIAN_CMD_API_H
#define MERIDIAN_CMD_API_H

#include <jansson.h>
#include <uv.h>

struct agent;
struct api;
struct http_request;

/* Connections the API accepts at once; more are refused and counted. */
#define API_CONNS_MAX 64

/*
 * Serves the API on @addr ("127.0.0.1:7601") for agent @a (not owned;
 * must outlive the API until api_stop()).  Returns 0 and *@out, or a
 * negative libuv error (UV_EADDRINUSE, UV_EINVAL), or UV_ENOMEM.
 */
int api_start(uv_loop_t *loop, const char *addr, struct agent *a, struct api **out);

/* Stops listening and closes every connection (the server's handles close
 * as the loop keeps running; no handler runs after this).  Frees @api.
 * NULL is a no-op. */
void api_stop(struct api *api);

/*
 * Answers @req with @root (consumed) as compact JSON and a newline,
 * @status and @extra_headers (NULL or "Name: value\r\n" lines).  A NULL
 * @root or a failed encoding answers 500 with the out-of-memory error.
 * Shared with cmd/sql.c so both APIs format answers alike.
 */
void api_respond_json(struct http_request *req, int status, json_t *root,
		      const char *extra_headers);

#endif
