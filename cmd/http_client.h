/*
 * cmd/http_client.h - a small blocking HTTP/1.1 client for the CLI.
 *
 * The CLI is not on an event loop: it makes one call, waits for it (poll
 * with a deadline), prints, exits.  One connection per call
 * ("Connection: close").  Responses are parsed with http-parser, chunked
 * bodies included, and bounded (HTTP_REPLY_MAX).  Addresses are numeric
 * "host:port" / "[v6]:port" (lib/addr.h): no DNS.
 *
 * Errors are negative errno codes, distinct for what the CLI must tell
 * apart:
 *   -EINVAL        bad address or arguments
 *   -ECONNREFUSED  nothing listens there (no agent)
 *   -ETIMEDOUT     the deadline passed (connect, send, or wait for the answer)
 *   -ECONNRESET    the connection was closed or reset before any answer
 *                  (e.g. the agent was at its connection limit, or exiting)
 *   -EPROTO        the answer is not valid HTTP, or was cut short
 *   -EMSGSIZE      the answer's body is larger than HTTP_REPLY_MAX
 *   -ENOMEM, other -errno from socket calls
 */
#ifndef MERIDIAN_CMD_HTTP_CLIENT_H
#define MERIDIAN_CMD_HTTP_CLIENT_H

#include <stddef.h>

#define HTTP_REPLY_MAX (16 * 1024 * 1024)
/* A streamed chunk is delivered whole, up to this size (else -EMSGSIZE). */
#define HTTP_CHUNK_MAX (1024 * 1024)

struct http_reply {
	int status;             /* HTTP status code, e.g. 200 */
	char content_type[128]; /* the Content-Type header, "" if none (cut if longer) */
	char *body;             /* malloc'd, NUL-terminated; never NULL after success */
	size_t body_len;        /* bytes in @body, the NUL not counted */
};

/*
 * Sends one request to @addr and waits for the whole answer.  @body may be
 * NULL (no body); when not NULL it is sent with Content-Length and
 * Content-Type: application/json.  @timeout_ms (> 0) bounds the whole
 * call, connect to last byte.
 *
 * Returns 0 when a complete HTTP answer arrived, whatever its status, and
 * fills @out (free it with http_reply_free()); otherwise a negative code
 * (see above) and @out holds no memory (status 0, body NULL).
 */
int http_call(const char *addr, const char *method, const char *path, const char *body,
	      size_t body_len, int timeout_ms, struct http_reply *out);

/*
 * Called for each piece of a streamed (2xx) body: each HTTP chunk whole
 * for a chunked answer (the server sends one event per chunk), otherwise
 * the bytes as they arrive.  @data is valid only during the call.  Return
 * 0 to go on, 1 to stop (the call then returns 0), a negative code to
 * abort (the call returns it).
 */
typedef int (*http_chunk_fn)(void *ctx, const char *data, size_t len);

/*
 * Like http_call(), but a 2xx body is handed to @on_chunk as it arrives
 * instead of being collected (@out->body is then ""); a non-2xx body is
 * collected into @out as http_call() does, so the caller can print the
 * error.  @timeout_ms bounds connecting and waiting for the answer's
 * headers; @idle_ms, when > 0, bounds the silence between two reads
 * afterwards (-ETIMEDOUT), when <= 0 the stream may stay quiet forever.
 * Returns 0 when the stream ended (the server finished it, or @on_chunk
 * returned 1), else a negative code; @out is filled in both cases once
 * the headers have arrived, and must be freed with http_reply_free().
 */
int http_call_stream(const char *addr, const char *method, const char *path, const char *body,
		     size_t body_len, int timeout_ms, int idle_ms, http_chunk_fn on_chunk,
		     void *ctx, struct http_reply *out);

/* Frees @r's body and clears it; safe on a cleared or already freed reply. */
void http_reply_free(struct http_reply *r);

/* A short English text for a code returned above ("connection refused",
 * "timed out", ...). */
const char *http_call_strerror(int err);

#endif
