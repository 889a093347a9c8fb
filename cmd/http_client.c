/*
 * cmd/http_client.c - the CLI's blocking HTTP/1.1 client (see http_client.h).
 *
 * One non-blocking socket driven by poll(2) against a monotonic deadline,
 * so that no single step (connect, send, the wait for the answer) can
 * outlive the caller's timeout.  The request is sent while the answer is
 * already being read: a server may answer early (413 for a body that is
 * too large) and close, and the answer must win over the resulting
 * EPIPE.  The response is parsed by http-parser (HTTP_RESPONSE), which
 * also undoes chunked encoding.
 */
#include "cmd/http_client.h"

#include <errno.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lib/addr.h"
#include "lib/clock.h"

#ifndef MERIDIAN_VERSION
#define MERIDIAN_VERSION "0"
#endif

#define RECV_BUF 65536

struct call {
	http_parser parser;
	struct http_reply *out;
	size_t body_cap;
	bool head;         /* a HEAD request: the answer has no body */
	bool stream_mode;  /* http_call_stream() */
	bool streaming;    /* stream mode and a 2xx answer: hand the body out */
	bool chunked;
	bool headers_done;
	bool complete;
	http_chunk_fn on_chunk;
	void *ctx;
	char *chunk;       /* the current chunk, collected until it is whole */
	size_t chunk_len;
	size_t chunk_cap;
	int stop;          /* on_chunk's non-zero answer */
	int err;           /* -EMSGSIZE / -ENOMEM from a callback */
	char hname[16];
	size_t hname_len;
	bool hname_done;
};

/* Signed, for deadline arithmetic that may go below zero. */
static int64_t mono_ms(void)
{
	return (int64_t)clock_mono_ms();
}

/* Grows *@buf to hold @need bytes, doubling; -ENOMEM on failure. */
static int grow(char **buf, size_t *cap, size_t need)
{
	size_t c = *cap ? *cap : 4096;
	char *b;

	if (need <= *cap)
		return 0;
	while (c < need)
		c *= 2;
	b = realloc(*buf, c);
	if (!b)
		return -ENOMEM;
	*buf = b;
	*cap = c;
	return 0;
}

static int body_append(struct call *k, const char *at, size_t len)
{
	struct http_reply *r = k->out;

	if (r->body_len + len > HTTP_REPLY_MAX) {
		k->err = -EMSGSIZE;
		return -1;
	}
	if (grow(&r->body, &k->body_cap, r->body_len + len + 1) < 0) {
		k->err = -ENOMEM;
		return -1;
	}
	memcpy(r->body + r->body_len, at, len);
	r->body_len += len;
	r->body[r->body_len] = '\0';
	return 0;
}

static int deliver(struct call *k, const char *data, size_t len)
{
	int rc = k->on_chunk(k->ctx, data, len);

	if (rc != 0) {
		k->stop = rc;
		return -1;
	}
	return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
	struct call *k = p->data;

	if (k->hname_done) {
		k->hname_len = 0;
		k->hname_done = false;
	}
	for (size_t i = 0; i < len && k->hname_len < sizeof(k->hname) - 1; i++)
		k->hname[k->hname_len++] = at[i];
	k->hname[k->hname_len] = '\0';
	return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
	struct call *k = p->data;
	char *ct = k->out->content_type;

	if (!k->hname_done) {
		k->hname_done = true;
		if (strcasecmp(k->hname, "content-type") == 0)
			ct[0] = '\0';
	}
	if (strcasecmp(k->hname, "content-type") == 0) {
		size_t have = strlen(ct);
		size_t room = sizeof(k->out->content_type) - 1 - have;

		if (len > room)
			len = room;
		memcpy(ct + have, at, len);
		ct[have + len] = '\0';
	}
	return 0;
}

static int on_headers_complete(http_parser *p)
{
	struct call *k = p->data;

	k->out->status = p->status_code;
	if (p->status_code < 200)
		return 0; /* an interim answer (100 Continue): the real one follows */
	k->headers_done = true;
	k->chunked = (p->flags & F_CHUNKED) != 0;
	k->streaming = k->stream_mode && p->status_code / 100 == 2;
	return k->head ? 1 : 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct call *k = p->data;

	if (!k->streaming)
		return body_append(k, at, len);
	if (!k->chunked)
		return deliver(k, at, len);
	if (k->chunk_len + len > HTTP_CHUNK_MAX) {
		k->err = -EMSGSIZE;
		return -1;
	}
	if (grow(&k->chunk, &k->chunk_cap, k->chunk_len + len) < 0) {
		k->err = -ENOMEM;
		return -1;
	}
	memcpy(k->chunk + k->chunk_len, at, len);
	k->chunk_len += len;
	return 0;
}

static int on_chunk_complete(http_parser *p)
{
	struct call *k = p->data;
	size_t len = k->chunk_len;

	if (!k->streaming || len == 0)
		return 0;
	k->chunk_len = 0;
	return deliver(k, k->chunk, len);
}

static int on_message_complete(http_parser *p)
{
	struct call *k = p->data;

	if (p->status_code < 200)
		return 0;
	k->complete = true;
	/* Anything after the answer is not ours: stop here. */
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings settings = {
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_chunk_complete = on_chunk_complete,
	.on_message_complete = on_message_complete,
};

/* Feeds @len bytes (0: end of stream).  0 to go on, 1 when done, or a
 * negative code. */
static int call_feed(struct call *k, const char *data, size_t len)
{
	enum http_errno e;

	http_parser_execute(&k->parser, &settings, data, len);
	e = HTTP_PARSER_ERRNO(&k->parser);
	if (k->stop)
		return k->stop > 0 ? 1 : k->stop;
	if (k->err)
		return k->err;
	if (k->complete)
		return 1;
	if (e != HPE_OK && e != HPE_PAUSED)
		return -EPROTO;
	return 0;
}

static bool token_ok(const char *s, bool path)
{
	if (!s || !*s || (path && s[0] != '/'))
		return false;
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || *s == 0x7F)
			return false;
	return true;
}

static char *build_request(const char *addr, const char *method, const char *path,
			   const char *body, size_t body_len, bool stream, size_t *len)
{
	bool send_len = body || (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0);
	char head[1024];
	char *buf;
	int n;

	n = snprintf(head, sizeof(head),
		     "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: meridian/%s\r\n"
		     "Accept: %s\r\nConnection: close\r\n",
		     method, path, addr, MERIDIAN_VERSION,
		     stream ? "text/event-stream" : "application/json");
	if (n < 0 || (size_t)n >= sizeof(head))
		return NULL;
	if (body) {
		int m = snprintf(head + n, sizeof(head) - (size_t)n,
				 "Content-Type: application/json\r\n");

		if (m < 0 || (size_t)m >= sizeof(head) - (size_t)n)
			return NULL;
		n += m;
	}
	if (send_len) {
		int m = snprintf(head + n, sizeof(head) - (size_t)n, "Content-Length: %zu\r\n",
				 body ? body_len : 0);

		if (m < 0 || (size_t)m >= sizeof(head) - (size_t)n)
			return NULL;
		n += m;
	}
	if ((size_t)n + 2 >= sizeof(head))
		return NULL;
	memcpy(head + n, "\r\n", 2);
	n += 2;
	buf = malloc((size_t)n + (body ? body_len : 0));
	if (!buf)
		return NULL;
	memcpy(buf, head, (size_t)n);
	if (body && body_len)
		memcpy(buf + n, body, body_len);
	*len = (size_t)n + (body ? body_len : 0);
	return buf;
}

/* Waits for @events on @fd until @deadline (or forever when < 0).
 * Returns the revents, 0 on timeout, or a negative errno. */
static int wait_fd(int fd, short events, int64_t deadline)
{
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = events };
		int tmo = -1;
		int rc;

		if (deadline >= 0) {
			int64_t left = deadline - mono_ms();

			if (left <= 0)
				return 0;
			tmo = left > INT32_MAX ? INT32_MAX : (int)left;
		}
		rc = poll(&pfd, 1, tmo);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			return -errno;
		if (rc == 0)
			return 0;
		return pfd.revents;
	}
}

static int connect_to(const struct sockaddr_storage *ss, int64_t deadline)
{
	socklen_t slen = ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
						   : sizeof(struct sockaddr_in);
	int fd, rc, soerr = 0;
	socklen_t elen = sizeof(soerr);

	fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)ss, slen) == 0)
		return fd;
	if (errno != EINPROGRESS) {
		rc = -errno;
		close(fd);
		return rc;
	}
	rc = wait_fd(fd, POLLOUT, deadline);
	if (rc <= 0) {
		close(fd);
		return rc == 0 ? -ETIMEDOUT : rc;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &elen) < 0)
		soerr = errno;
	if (soerr) {
		close(fd);
		return -soerr;
	}
	return fd;
}

static int call_run(const char *addr, const char *method, const char *path, const char *body,
		    size_t body_len, int timeout_ms, int idle_ms, bool stream_mode,
		    http_chunk_fn on_chunk, void *ctx, struct http_reply *out)
{
	struct sockaddr_storage ss;
	struct call k;
	char *req = NULL, *rbuf = NULL;
	size_t req_len = 0, sent = 0;
	bool got_bytes = false;
	int64_t deadline;
	int fd = -1, rc;

	memset(out, 0, sizeof(*out));
	if (!addr || !token_ok(method, false) || !token_ok(path, true) || timeout_ms <= 0 ||
	    (stream_mode && !on_chunk) || strpbrk(addr, "\r\n"))
		return -EINVAL;
	if (addr_parse(addr, &ss, NULL, 0) < 0)
		return -EINVAL;
	if ((ss.ss_family == AF_INET && ((struct sockaddr_in *)&ss)->sin_port == 0) ||
	    (ss.ss_family == AF_INET6 && ((struct sockaddr_in6 *)&ss)->sin6_port == 0))
		return -EINVAL;

	memset(&k, 0, sizeof(k));
	k.out = out;
	k.stream_mode = stream_mode;
	k.head = strcmp(method, "HEAD") == 0;
	k.on_chunk = on_chunk;
	k.ctx = ctx;
	http_parser_init(&k.parser, HTTP_RESPONSE);
	k.parser.data = &k;

	req = build_request(addr, method, path, body, body_len, stream_mode, &req_len);
	rbuf = malloc(RECV_BUF);
	if (!req || !rbuf) {
		rc = -ENOMEM;
		goto out;
	}
	deadline = mono_ms() + timeout_ms;
	fd = connect_to(&ss, deadline);
	if (fd < 0) {
		rc = fd;
		goto out;
	}

	for (;;) {
		short events = POLLIN | (sent < req_len ? POLLOUT : 0);
		int64_t until = deadline;
		ssize_t n;

		if (k.headers_done && k.streaming)
			until = idle_ms > 0 ? mono_ms() + idle_ms : -1;
		rc = wait_fd(fd, events, until);
		if (rc == 0) {
			rc = -ETIMEDOUT;
			goto out;
		}
		if (rc < 0)
			goto out;
		if ((rc & POLLOUT) && sent < req_len) {
			n = send(fd, req + sent, req_len - sent, MSG_NOSIGNAL);
			if (n > 0) {
				sent += (size_t)n;
			} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
				/* The server stopped reading; an answer may
				 * still be waiting (413). */
				sent = req_len;
			}
		}
		if (!(rc & (POLLIN | POLLHUP | POLLERR)))
			continue;
		n = recv(fd, rbuf, RECV_BUF, 0);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n < 0) {
			rc = (errno == ECONNRESET || errno == EPIPE)
				     ? (got_bytes ? -EPROTO : -ECONNRESET)
				     : -errno;
			goto out;
		}
		if (n == 0) {
			rc = call_feed(&k, NULL, 0);
			if (rc == 1 || (rc == 0 && k.complete))
				rc = 0;
			else if (rc == 0)
				rc = got_bytes ? -EPROTO : -ECONNRESET;
			goto out;
		}
		got_bytes = true;
		rc = call_feed(&k, rbuf, (size_t)n);
		if (rc == 1) {
			rc = 0;
			goto out;
		}
		if (rc < 0)
			goto out;
	}
out:
	if (fd >= 0)
		close(fd);
	free(req);
	free(rbuf);
	free(k.chunk);
	if (rc == 0 && !out->body) {
		out->body = calloc(1, 1);
		if (!out->body)
			rc = -ENOMEM;
	}
	/* A stream that failed after its headers keeps its status for the
	 * caller; any other failure leaves nothing behind. */
	if (rc < 0 && !(stream_mode && k.headers_done)) {
		http_reply_free(out);
		out->status = 0;
		out->content_type[0] = '\0';
	} else if (rc < 0 && !out->body) {
		out->body = calloc(1, 1);
	}
	return rc;
}

int http_call(const char *addr, const char *method, const char *path, const char *body,
	      size_t body_len, int timeout_ms, struct http_reply *out)
{
	return call_run(addr, method, path, body, body_len, timeout_ms, 0, false, NULL, NULL,
			out);
}

int http_call_stream(const char *addr, const char *method, const char *path, const char *body,
		     size_t body_len, int timeout_ms, int idle_ms, http_chunk_fn on_chunk,
		     void *ctx, struct http_reply *out)
{
	return call_run(addr, method, path, body, body_len, timeout_ms, idle_ms, true, on_chunk,
			ctx, out);
}

void http_reply_free(struct http_reply *r)
{
	if (!r)
		return;
	free(r->body);
	r->body = NULL;
	r->body_len = 0;
}

const char *http_call_strerror(int err)
{
	switch (err) {
	case 0:
		return "ok";
	case -EINVAL:
		return "bad address or request";
	case -ECONNREFUSED:
		return "connection refused";
	case -ETIMEDOUT:
		return "timed out";
	case -ECONNRESET:
		return "connection closed before an answer";
	case -EPROTO:
		return "malformed HTTP answer";
	case -EMSGSIZE:
		return "answer too large";
	case -ENOMEM:
		return "out of memory";
	default:
		return err < 0 ? strerror(-err) : "unknown error";
	}
}
