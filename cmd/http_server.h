/*
 * cmd/http_server.h - the local API's HTTP/1.1 server on a libuv loop.
 *
 * Parsing is Debian's http-parser (nodejs/http-parser); this file only
 * frames requests and writes responses.  Keep-alive, one request at a time
 * per connection (no pipelining beyond what http-parser buffers), bounded:
 * header block <= 16 KiB, body <= HTTP_BODY_MAX, connections <= max_conns
 * (past it new connections are closed at once and counted).  A request
 * that breaks a bound gets 400/413/431 and the connection is closed.
 *
 * Handlers answer synchronously with http_respond(), or keep the request
 * and answer later (for calls that wait on the network), or turn it into a
 * stream (server-sent events) with http_stream_begin()/http_stream_write().
 */
#ifndef MERIDIAN_CMD_HTTP_SERVER_H
#define MERIDIAN_CMD_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define HTTP_BODY_MAX (2 * 1024 * 1024)

struct http_server;
struct http_request;

struct http_request_view {
	const char *method;      /* "GET", "POST", ... */
	const char *path;        /* decoded path without the query, "/v1/members" */
	const char *query;       /* raw query string without '?', "" if none */
	const char *body;        /* NUL-terminated; "" if none */
	size_t body_len;
};

/*
 * Called once per complete request.  The handler must eventually call
 * http_respond() or http_stream_begin() on @req exactly once (now or
 * later).  If the client goes away first, @req stays valid and
 * responding to it is a no-op that frees it.
 */
typedef void (*http_handler_fn)(void *ctx, struct http_request *req,
				const struct http_request_view *v);

/*
 * Listens on @addr ("127.0.0.1:7601", "[::1]:7601").  Returns 0 and stores
 * the server in *@out, or a negative libuv error (e.g. UV_EADDRINUSE).
 */
int http_server_start(uv_loop_t *loop, const char *addr, unsigned max_conns,
		      http_handler_fn handler, void *ctx, struct http_server **out);
/* Stops listening, closes every connection; frees itself once libuv has
 * closed all handles (run the loop). */
void http_server_stop(struct http_server *s);

/* Copies the value of query parameter @name (URL-decoded) into @out;
 * returns true when present. */
bool http_query_get(const char *query, const char *name, char *out, size_t outlen);

/* Answers @req with @status, Content-Type @ctype and @body (copied). */
void http_respond(struct http_request *req, int status, const char *ctype,
		  const char *body, size_t len);
/* Same, with extra header lines ("Retry-After: 1\r\n"), may be NULL. */
void http_respond_ex(struct http_request *req, int status, const char *ctype,
		     const char *extra_headers, const char *body, size_t len);

/* Starts a chunked text/event-stream answer; then http_stream_write()
 * sends, http_stream_end() finishes.  A write returns -EPIPE once the
 * client has gone, -ENOBUFS when more than 1 MiB is queued unsent (slow
 * reader: the caller should end the stream). */
void http_stream_begin(struct http_request *req);
int http_stream_write(struct http_request *req, const char *data, size_t len);
void http_stream_end(struct http_request *req);
/* True when the client has gone away. */
bool http_request_gone(const struct http_request *req);

/* Counters for /metrics. */
struct http_stats {
	uint64_t requests;
	uint64_t bad_requests;
	uint64_t conns_refused;
};
void http_server_stats(const struct http_server *s, struct http_stats *out);

#endif
