/*
 * cmd/http_server.c - the local API's HTTP/1.1 server (see cmd/http_server.h).
 *
 * http-parser does the parsing; this file frames requests, enforces the
 * bounds, and owns the lifetimes of connections and requests.
 *
 * Connections.  Each connection is a uv_tcp_t plus one uv_timer_t that
 * serves, in turn, as the idle timer (60 s with nothing in flight), the
 * request timer (10 s from a request's first byte to its last: a client
 * that dribbles a request gets 408), and the linger timer of a closing
 * connection.  While a handler holds a request, the connection keeps
 * reading, only to notice a client that goes away; bytes that arrive
 * meanwhile (a pipelined next request) are stashed, bounded by
 * STASH_MAX, past which reading stops until the answer is out.
 *
 * One request at a time.  on_message_complete pauses the parser, so
 * http_parser_execute() returns right after a request; the rest of the
 * buffer waits in the stash until the answer has been queued.  Handlers
 * are never called from inside a parser callback, and an answer given
 * synchronously from inside the handler does not recurse into the parser:
 * the feeding loop (conn_feed) simply continues.
 *
 * Requests outlive connections.  A struct http_request belongs to the
 * handler from dispatch until http_respond()/http_stream_end(); if the
 * connection closes first, the request is detached (req->conn = NULL) and
 * answering it only frees it.  The strings of the request view live in the
 * request, so a deferred handler may keep using them until it answers.
 *
 * Errors.  A request that breaks a bound or the grammar gets 400, 408,
 * 413, 414, 431 or 505 with "Connection: close"; the connection then
 * shuts its write side and lingers a little, reading and discarding, so
 * that the client (perhaps still sending a large body) reads the answer
 * instead of a reset.  For the same reason a client that half-closes
 * after its request still gets the answers already queued.
 * "Expect: 100-continue" is answered, so curl does not stall a second
 * before sending a body.
 *
 * Streams.  http_stream_begin() sends a chunked text/event-stream head;
 * every write is one chunk.  The unsent-bytes bound uses libuv's own
 * write queue size (bytes not yet taken by the kernel), so a reader that
 * keeps up never sees -ENOBUFS however much it reads.
 *
 * SIGPIPE: libuv writes with write(2), so the process must ignore SIGPIPE
 * (cmd/main.c does) or a client that resets a connection kills it.
 */
#include "cmd/http_server.h"

#include <errno.h>
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/addr.h"
#include "lib/log.h"

#define HEADER_MAX (16 * 1024)
#define URL_MAX (4 * 1024)
#define IDLE_TIMEOUT_MS 60000
#define REQUEST_TIMEOUT_MS 10000
#define LINGER_TIMEOUT_MS 2000
#define LINGER_DISCARD_MAX (HTTP_BODY_MAX + HEADER_MAX)
#define STASH_MAX (64 * 1024)
#define STREAM_UNSENT_MAX (1024 * 1024)
#define READ_BUF_SIZE (64 * 1024)

enum conn_timer_mode { TIMER_IDLE, TIMER_REQUEST, TIMER_LINGER };

struct http_conn {
	struct http_server *srv;
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_shutdown_t shutdown_req;
	http_parser parser;
	struct http_conn *prev, *next;

	/* The request being parsed. */
	char *url;
	size_t url_len;
	size_t header_bytes;
	char *body;
	size_t body_len;
	size_t body_cap;
	char hname[16];  /* the current header's name, cut to 15 bytes */
	size_t hname_len;
	bool hname_done; /* the name is complete, the value is coming */
	bool expect_continue;
	int fail_status; /* a bound broken inside a callback: 413, 414, 431 */
	bool ready;      /* a complete request waits for dispatch */

	struct http_request *req; /* dispatched, not yet answered (or streaming) */
	char *stash;              /* unparsed bytes, waiting for @req's answer */
	size_t stash_len;
	bool feeding;   /* inside conn_feed(): do not re-enter it */
	bool reading;
	bool finishing; /* last answer queued: shutting down, then lingering */
	bool shut;      /* our FIN is out: every answer was written */
	bool peer_eof;  /* the client's FIN came: close once ours is out */
	bool closing;   /* uv_close() called */
	int handles;    /* open libuv handles of this connection */
	size_t discarded;
	enum conn_timer_mode timer_mode;
};

struct http_request {
	struct http_conn *conn; /* NULL once the client has gone */
	struct http_request_view view;
	char *method;
	char *path;
	char *query;
	char *body;
	bool keep_alive;
	bool head;      /* a HEAD request: headers only */
	bool http10;    /* the client speaks HTTP/1.0: no chunked streams */
	bool streaming;
};

struct http_server {
	uv_loop_t *loop;
	uv_tcp_t listener;
	http_handler_fn handler;
	void *ctx;
	unsigned max_conns;
	unsigned nconns;
	unsigned handles; /* open libuv handles, the listener included */
	bool stopping;
	struct http_conn *conns;
	struct http_stats stats;
	char read_buf[READ_BUF_SIZE];
	bool read_buf_busy;
};

struct write_req {
	uv_write_t req;
	size_t len;
	char data[];
};

static void conn_feed(struct http_conn *c, const char *data, size_t len);
static void conn_close(struct http_conn *c);
static void conn_fail(struct http_conn *c, int status, const char *code, const char *message);

/* ---- small helpers ---- */

static int hex_val(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Percent-decodes @n bytes of @s into @out (room for @n + 1 bytes).  In a
 * query, '+' means a space.  Fails (-EINVAL) on a bad escape or on an
 * encoded NUL, which would cut the string short behind the caller's back.
 */
static int url_decode(const char *s, size_t n, bool query, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] == '%') {
			int hi, lo;

			if (i + 2 >= n)
				return -EINVAL;
			hi = hex_val((unsigned char)s[i + 1]);
			lo = hex_val((unsigned char)s[i + 2]);
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				return -EINVAL;
			out[o++] = (char)(hi * 16 + lo);
			i += 2;
		} else if (query && s[i] == '+') {
			out[o++] = ' ';
		} else {
			out[o++] = s[i];
		}
	}
	out[o] = '\0';
	return 0;
}

bool http_query_get(const char *query, const char *name, char *out, size_t outlen)
{
	const char *p = query;
	size_t nlen;

	if (!query || !name)
		return false;
	nlen = strlen(name);
	while (*p) {
		const char *end = strchr(p, '&');
		const char *eq;
		size_t plen = end ? (size_t)(end - p) : strlen(p);
		size_t klen, vlen;
		char key[256];

		eq = memchr(p, '=', plen);
		klen = eq ? (size_t)(eq - p) : plen;
		/* Keys are compared decoded ("%72egion" is "region"). */
		if (klen < sizeof(key) && url_decode(p, klen, true, key) == 0 &&
		    strlen(key) == nlen && memcmp(key, name, nlen) == 0) {
			vlen = eq ? plen - klen - 1 : 0;
			if (outlen == 0)
				return true;
			/*
			 * Present but unusable (too long, bad escape): an empty
			 * value, which no filter accepts, rather than a cut one
			 * that might match something else.
			 */
			out[0] = '\0';
			if (vlen < outlen && eq && url_decode(eq + 1, vlen, true, out) != 0)
				out[0] = '\0';
			return true;
		}
		if (!end)
			break;
		p = end + 1;
	}
	return false;
}

static void write_done(uv_write_t *w, int status)
{
	struct write_req *wr = (struct write_req *)w;
	struct http_conn *c = w->data;

	free(wr);
	if (status < 0 && status != UV_ECANCELED && !c->closing) {
		LOG(LOG_DEBUG, "http", "write failed: %s", uv_strerror(status));
		conn_close(c);
	}
}

static struct write_req *wreq_new(size_t len)
{
	struct write_req *wr = malloc(sizeof(*wr) + len);

	if (wr)
		wr->len = len;
	return wr;
}

/* Queues @wr (taken over, freed once written).  0 or -EPIPE (the
 * connection is closing, or now closed). */
static int conn_send(struct http_conn *c, struct write_req *wr)
{
	uv_buf_t buf;

	if (c->closing) {
		free(wr);
		return -EPIPE;
	}
	wr->req.data = c;
	buf = uv_buf_init(wr->data, (unsigned int)wr->len);
	if (uv_write(&wr->req, (uv_stream_t *)&c->tcp, &buf, 1, write_done) < 0) {
		free(wr);
		conn_close(c);
		return -EPIPE;
	}
	return 0;
}

/* Queues a copy of @len bytes.  0 or a negative errno. */
static int conn_write(struct http_conn *c, const char *data, size_t len)
{
	struct write_req *wr = wreq_new(len);

	if (!wr)
		return -ENOMEM;
	memcpy(wr->data, data, len);
	return conn_send(c, wr);
}

/* ---- connection lifetime ---- */

static void server_handle_closed(struct http_server *s)
{
	if (--s->handles == 0 && s->stopping)
		free(s);
}

static void conn_handle_closed(uv_handle_t *h)
{
	struct http_conn *c = h->data;
	struct http_server *s = c->srv;

	if (--c->handles > 0)
		return;
	free(c->url);
	free(c->body);
	free(c->stash);
	free(c);
	server_handle_closed(s);
}

static void conn_reset_message(struct http_conn *c)
{
	free(c->url);
	c->url = NULL;
	c->url_len = 0;
	c->header_bytes = 0;
	free(c->body);
	c->body = NULL;
	c->body_len = 0;
	c->body_cap = 0;
	c->hname_len = 0;
	c->hname_done = false;
	c->expect_continue = false;
	c->fail_status = 0;
}

/* Closes at once: pending writes are cancelled; a held request is
 * detached and becomes "gone". */
static void conn_close(struct http_conn *c)
{
	struct http_server *s = c->srv;

	if (c->closing)
		return;
	c->closing = true;
	if (c->req) {
		c->req->conn = NULL;
		c->req = NULL;
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->nconns--;
	uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
	uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
}

static void conn_timer_fired(uv_timer_t *t)
{
	struct http_conn *c = t->data;

	switch (c->timer_mode) {
	case TIMER_IDLE:
	case TIMER_LINGER:
		conn_close(c);
		break;
	case TIMER_REQUEST:
		conn_fail(c, 408, "timeout", "request not complete within 10 s");
		break;
	}
}

static void conn_timer_set(struct http_conn *c, enum conn_timer_mode mode, uint64_t ms)
{
	if (c->closing)
		return;
	c->timer_mode = mode;
	uv_timer_start(&c->timer, conn_timer_fired, ms, 0);
}

static void conn_shutdown_done(uv_shutdown_t *sr, int status)
{
	struct http_conn *c = sr->data;

	/* The answer is out (or cannot be); linger reading until the peer
	 * closes or the linger timer fires. */
	c->shut = true;
	if (status < 0 || c->peer_eof)
		conn_close(c);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

static void conn_read_start(struct http_conn *c)
{
	if (c->closing || c->reading)
		return;
	if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
		c->reading = true;
	else
		conn_close(c);
}

static void conn_read_stop(struct http_conn *c)
{
	if (c->reading && !c->closing)
		uv_read_stop((uv_stream_t *)&c->tcp);
	c->reading = false;
}

/* The last answer on this connection is queued: send FIN after it, then
 * linger, discarding what the client still sends. */
static void conn_finish(struct http_conn *c)
{
	if (c->closing || c->finishing)
		return;
	c->finishing = true;
	free(c->stash);
	c->stash = NULL;
	c->stash_len = 0;
	c->shutdown_req.data = c;
	if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, conn_shutdown_done) < 0) {
		conn_close(c);
		return;
	}
	conn_timer_set(c, TIMER_LINGER, LINGER_TIMEOUT_MS);
	if (!c->peer_eof)
		conn_read_start(c);
}

/* Answers a broken request and finishes the connection. */
static void conn_fail(struct http_conn *c, int status, const char *code, const char *message)
{
	char buf[512];
	char body[256];
	int blen, n;

	c->srv->stats.bad_requests++;
	blen = snprintf(body, sizeof(body), "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}",
			code, message);
	n = snprintf(buf, sizeof(buf),
		     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
		     "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
		     status, http_status_str((enum http_status)status), blen, body);
	LOG_RATELIMITED(LOG_WARNING, "http", "bad request: %d %s", status, message);
	if (conn_write(c, buf, (size_t)n) == 0)
		conn_finish(c);
}

/* The answer to the current request is queued: go on with the next one,
 * or finish. */
static void conn_next(struct http_conn *c, bool keep_alive)
{
	char *stash;
	size_t len;

	c->req = NULL;
	if (c->closing)
		return;
	if (!keep_alive) {
		conn_finish(c);
		return;
	}
	conn_timer_set(c, TIMER_IDLE, IDLE_TIMEOUT_MS);
	if (c->feeding)
		return; /* answered from inside the handler: conn_feed goes on */
	stash = c->stash;
	len = c->stash_len;
	c->stash = NULL;
	c->stash_len = 0;
	if (stash) {
		conn_feed(c, stash, len);
		free(stash);
	}
	if (!c->closing && !c->finishing && !c->req)
		conn_read_start(c);
}

/* ---- parser callbacks ---- */

static int on_message_begin(http_parser *p)
{
	struct http_conn *c = p->data;

	conn_reset_message(c);
	conn_timer_set(c, TIMER_REQUEST, REQUEST_TIMEOUT_MS);
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
	struct http_conn *c = p->data;
	char *u;

	if (c->url_len + len > URL_MAX) {
		c->fail_status = 414;
		return -1;
	}
	c->header_bytes += len;
	u = realloc(c->url, c->url_len + len + 1);
	if (!u)
		return -1;
	memcpy(u + c->url_len, at, len);
	c->url_len += len;
	u[c->url_len] = '\0';
	c->url = u;
	return 0;
}

static int count_header(struct http_conn *c, size_t len)
{
	c->header_bytes += len;
	if (c->header_bytes > HEADER_MAX) {
		c->fail_status = 431;
		return -1;
	}
	return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
	struct http_conn *c = p->data;

	if (c->hname_done) {
		c->hname_len = 0;
		c->hname_done = false;
	}
	/* ": " and CRLF of each line count too. */
	if (count_header(c, len + (c->hname_len == 0 ? 4 : 0)) < 0)
		return -1;
	for (size_t i = 0; i < len && c->hname_len < sizeof(c->hname) - 1; i++)
		c->hname[c->hname_len++] = at[i];
	c->hname[c->hname_len] = '\0';
	return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
	struct http_conn *c = p->data;

	c->hname_done = true;
	if (count_header(c, len) < 0)
		return -1;
	if (strcasecmp(c->hname, "expect") == 0 && len >= 12 &&
	    strncasecmp(at, "100-continue", 12) == 0)
		c->expect_continue = true;
	return 0;
}

static int on_headers_complete(http_parser *p)
{
	struct http_conn *c = p->data;

	if (p->http_major != 1) {
		c->fail_status = 505;
		return -1;
	}
	if (p->content_length != (uint64_t)-1 && (p->flags & F_CONTENTLENGTH) &&
	    p->content_length > HTTP_BODY_MAX) {
		c->fail_status = 413;
		return -1;
	}
	if (c->expect_continue && p->http_major == 1 && p->http_minor >= 1) {
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

		conn_write(c, cont, sizeof(cont) - 1);
	}
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct http_conn *c = p->data;

	if (c->body_len + len > HTTP_BODY_MAX) {
		c->fail_status = 413;
		return -1;
	}
	if (c->body_len + len + 1 > c->body_cap) {
		size_t cap = c->body_cap ? c->body_cap : 1024;
		char *b;

		while (cap < c->body_len + len + 1)
			cap *= 2;
		if (cap > HTTP_BODY_MAX + 1)
			cap = HTTP_BODY_MAX + 1;
		b = realloc(c->body, cap);
		if (!b)
			return -1;
		c->body = b;
		c->body_cap = cap;
	}
	memcpy(c->body + c->body_len, at, len);
	c->body_len += len;
	c->body[c->body_len] = '\0';
	return 0;
}

static char *dup_range(const char *s, size_t n)
{
	char *d = malloc(n + 1);

	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

static void request_free(struct http_request *r)
{
	free(r->path);
	free(r->query);
	free(r->body);
	free(r);
}

/* Builds the request from what the callbacks gathered.  0, or an HTTP
 * status for a request that cannot be served. */
static int request_build(struct http_conn *c, struct http_request **out)
{
	struct http_parser_url u;
	struct http_request *r;
	const char *url = c->url ? c->url : "";
	size_t plen;

	http_parser_url_init(&u);
	if (c->url_len == 0 || http_parser_parse_url(url, c->url_len, 0, &u) != 0)
		return 400;
	r = calloc(1, sizeof(*r));
	if (!r)
		return 500;
	r->method = (char *)http_method_str((enum http_method)c->parser.method);
	if (u.field_set & (1 << UF_PATH)) {
		plen = u.field_data[UF_PATH].len;
		r->path = malloc(plen + 1);
		if (r->path && url_decode(url + u.field_data[UF_PATH].off, plen, false, r->path)) {
			request_free(r);
			return 400;
		}
	} else {
		r->path = dup_range("/", 1);
	}
	if (u.field_set & (1 << UF_QUERY))
		r->query = dup_range(url + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
	else
		r->query = dup_range("", 0);
	if (c->body) {
		r->body = c->body;
		c->body = NULL;
	} else {
		r->body = dup_range("", 0);
	}
	if (!r->path || !r->query || !r->body) {
		request_free(r);
		return 500;
	}
	r->view.method = r->method;
	r->view.path = r->path;
	r->view.query = r->query;
	r->view.body = r->body;
	r->view.body_len = c->body_len;
	r->keep_alive = http_should_keep_alive(&c->parser) && !c->parser.upgrade;
	r->head = c->parser.method == HTTP_HEAD;
	r->http10 = c->parser.http_major == 1 && c->parser.http_minor == 0;
	r->conn = c;
	*out = r;
	return 0;
}

static int on_message_complete(http_parser *p)
{
	struct http_conn *c = p->data;

	c->ready = true;
	uv_timer_stop(&c->timer);
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings parser_settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

/* ---- the feeding loop ---- */

static void conn_parse_error(struct http_conn *c)
{
	enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);

	switch (c->fail_status) {
	case 413:
		conn_fail(c, 413, "too_large", "request body larger than 2 MiB");
		return;
	case 414:
		conn_fail(c, 414, "bad_request", "URL longer than 4 KiB");
		return;
	case 431:
		conn_fail(c, 431, "bad_request", "header block larger than 16 KiB");
		return;
	case 505:
		conn_fail(c, 505, "bad_request", "only HTTP/1.0 and HTTP/1.1 are spoken here");
		return;
	}
	if (e == HPE_HEADER_OVERFLOW) {
		conn_fail(c, 431, "bad_request", "header block larger than 16 KiB");
		return;
	}
	if (e == HPE_CB_url || e == HPE_CB_body || e == HPE_CB_header_field ||
	    e == HPE_CB_header_value) {
		/* a callback failed without a bound: out of memory */
		conn_fail(c, 500, "internal", "out of memory");
		return;
	}
	conn_fail(c, 400, "bad_request", http_errno_description(e));
}

static void conn_dispatch(struct http_conn *c)
{
	struct http_server *s = c->srv;
	struct http_request *r = NULL;
	int status;

	c->ready = false;
	status = request_build(c, &r);
	conn_reset_message(c);
	if (status == 400) {
		conn_fail(c, 400, "bad_request", "malformed URL");
		return;
	}
	if (status) {
		conn_fail(c, status, "internal", "out of memory");
		return;
	}
	s->stats.requests++;
	c->req = r;
	s->handler(s->ctx, r, &r->view);
}

/*
 * Parses @data, dispatching every complete request, until the data runs
 * out or a request is held by its handler; what is left is stashed.
 */
static void conn_feed(struct http_conn *c, const char *data, size_t len)
{
	c->feeding = true;
	while (len > 0 && !c->closing && !c->finishing && !c->req) {
		size_t n = http_parser_execute(&c->parser, &parser_settings, data, len);
		enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);

		if (e == HPE_PAUSED)
			http_parser_pause(&c->parser, 0);
		else if (e != HPE_OK) {
			conn_parse_error(c);
			break;
		}
		data += n;
		len -= n;
		if (c->ready) {
			conn_dispatch(c);
		} else if (n == 0 || c->parser.upgrade) {
			/* An upgrade (or CONNECT) we do not speak: what follows
			 * is not HTTP.  The answer closes the connection. */
			len = 0;
		}
	}
	c->feeding = false;
	if (len > 0 && !c->closing && !c->finishing) {
		char *st = realloc(c->stash, c->stash_len + len);

		if (!st) {
			conn_close(c);
			return;
		}
		memcpy(st + c->stash_len, data, len);
		c->stash = st;
		c->stash_len += len;
		if (c->stash_len >= STASH_MAX)
			conn_read_stop(c);
	}
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct http_conn *c = h->data;
	struct http_server *s = c->srv;

	/* One read buffer for the whole server: on_read consumes (parses or
	 * copies) it before returning, and the loop is single-threaded. */
	if (s->read_buf_busy) {
		buf->base = NULL;
		buf->len = 0;
		return;
	}
	s->read_buf_busy = true;
	buf->base = s->read_buf;
	buf->len = sizeof(s->read_buf);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	struct http_conn *c = stream->data;

	if (buf->base == c->srv->read_buf)
		c->srv->read_buf_busy = false;
	if (nread == 0)
		return;
	if (nread < 0) {
		/*
		 * A client that half-closes after its request (HTTP/1.0 tools
		 * do) still gets the answers already queued: finish writing,
		 * then close.  With a request still held, EOF cannot be told
		 * from a client that went away, and is taken as that.
		 */
		if (nread == UV_EOF && !c->req &&
		    (c->finishing || uv_stream_get_write_queue_size(stream) > 0)) {
			c->peer_eof = true;
			c->reading = false;
			if (c->shut)
				conn_close(c);
			else
				conn_finish(c);
			return;
		}
		conn_close(c);
		return;
	}
	if (c->finishing) {
		c->discarded += (size_t)nread;
		if (c->discarded > LINGER_DISCARD_MAX)
			conn_close(c);
		return;
	}
	if (c->req) {
		/* Answer pending: keep the bytes for later. */
		if (c->stash_len + (size_t)nread > STASH_MAX * 2) {
			conn_close(c);
			return;
		}
		{
			char *st = realloc(c->stash, c->stash_len + (size_t)nread);

			if (!st) {
				conn_close(c);
				return;
			}
			memcpy(st + c->stash_len, buf->base, (size_t)nread);
			c->stash = st;
			c->stash_len += (size_t)nread;
		}
		if (c->stash_len >= STASH_MAX)
			conn_read_stop(c);
		return;
	}
	conn_feed(c, buf->base, (size_t)nread);
}

/* ---- accepting ---- */

static void refused_closed(uv_handle_t *h)
{
	struct http_server *s = h->data;

	free(h);
	server_handle_closed(s);
}

static void on_connection(uv_stream_t *listener, int status)
{
	struct http_server *s = listener->data;
	struct http_conn *c;

	if (status < 0) {
		LOG_RATELIMITED(LOG_WARNING, "http", "accept failed: %s", uv_strerror(status));
		return;
	}
	if (s->nconns >= s->max_conns) {
		uv_tcp_t *t = malloc(sizeof(*t));

		s->stats.conns_refused++;
		if (!t)
			return;
		uv_tcp_init(s->loop, t);
		t->data = s;
		s->handles++;
		uv_accept(listener, (uv_stream_t *)t);
		uv_close((uv_handle_t *)t, refused_closed);
		LOG_RATELIMITED(LOG_WARNING, "http", "connection refused: %u connections open",
				s->nconns);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->srv = s;
	uv_tcp_init(s->loop, &c->tcp);
	uv_timer_init(s->loop, &c->timer);
	c->tcp.data = c;
	c->timer.data = c;
	c->handles = 2;
	s->handles += 1; /* one per connection: freed when both are closed */
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->nconns++;
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	if (uv_accept(listener, (uv_stream_t *)&c->tcp) < 0) {
		conn_close(c);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	conn_timer_set(c, TIMER_IDLE, IDLE_TIMEOUT_MS);
	conn_read_start(c);
}

static void listener_closed(uv_handle_t *h)
{
	server_handle_closed(h->data);
}

int http_server_start(uv_loop_t *loop, const char *addr, unsigned max_conns,
		      http_handler_fn handler, void *ctx, struct http_server **out)
{
	struct sockaddr_storage ss;
	struct http_server *s;
	int rc;

	if (!loop || !addr || !handler || !out || max_conns == 0)
		return UV_EINVAL;
	if (addr_parse(addr, &ss, NULL, 0) < 0)
		return UV_EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return UV_ENOMEM;
	s->loop = loop;
	s->handler = handler;
	s->ctx = ctx;
	s->max_conns = max_conns;
	rc = uv_tcp_init(loop, &s->listener);
	if (rc < 0) {
		free(s);
		return rc;
	}
	s->listener.data = s;
	s->handles = 1;
	rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&ss, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&s->listener, 128, on_connection);
	if (rc < 0) {
		s->stopping = true;
		uv_close((uv_handle_t *)&s->listener, listener_closed);
		return rc;
	}
	*out = s;
	return 0;
}

void http_server_stop(struct http_server *s)
{
	if (!s || s->stopping)
		return;
	s->stopping = true;
	while (s->conns)
		conn_close(s->conns);
	uv_close((uv_handle_t *)&s->listener, listener_closed);
}

void http_server_stats(const struct http_server *s, struct http_stats *out)
{
	*out = s->stats;
}

/* ---- answering ---- */

void http_respond(struct http_request *req, int status, const char *ctype, const char *body,
		  size_t len)
{
	http_respond_ex(req, status, ctype, NULL, body, len);
}

void http_respond_ex(struct http_request *req, int status, const char *ctype,
		     const char *extra_headers, const char *body, size_t len)
{
	struct http_conn *c = req->conn;
	bool keep_alive = req->keep_alive;
	struct write_req *wr;
	char head[1024];
	int n;

	if (!c || c->closing) {
		request_free(req);
		return;
	}
	if (status < 100 || status > 999)
		status = 500;
	n = snprintf(head, sizeof(head),
		     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		     "Connection: %s\r\n%s\r\n",
		     status, http_status_str((enum http_status)status),
		     ctype ? ctype : "application/json", len, keep_alive ? "keep-alive" : "close",
		     extra_headers ? extra_headers : "");
	if (n < 0 || (size_t)n >= sizeof(head)) {
		/* Headers the handler gave do not fit: a bug, answered as such. */
		n = snprintf(head, sizeof(head),
			     "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n"
			     "Connection: close\r\n\r\n");
		len = 0;
		keep_alive = false;
	}
	if (req->head)
		len = 0;
	/* Copy before the request is freed: @body may point into it (a
	 * handler echoing the request's own body). */
	wr = wreq_new((size_t)n + len);
	if (wr) {
		memcpy(wr->data, head, (size_t)n);
		if (len)
			memcpy(wr->data + n, body, len);
	}
	c->req = NULL;
	request_free(req);
	if (!wr) {
		conn_close(c);
		return;
	}
	if (conn_send(c, wr) == 0)
		conn_next(c, keep_alive);
}

void http_stream_begin(struct http_request *req)
{
	struct http_conn *c = req->conn;
	char head[256];
	int n;

	req->streaming = true;
	if (!c || c->closing)
		return;
	/* An HTTP/1.0 client gets the raw stream, ended by closing. */
	if (req->http10)
		req->keep_alive = false;
	n = snprintf(head, sizeof(head),
		     "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
		     "Cache-Control: no-cache\r\n%sConnection: %s\r\n\r\n",
		     req->http10 ? "" : "Transfer-Encoding: chunked\r\n",
		     req->keep_alive ? "keep-alive" : "close");
	conn_write(c, head, (size_t)n);
	/* No timer runs during a stream; reading goes on so that a client
	 * that leaves is noticed. */
	uv_timer_stop(&c->timer);
}

int http_stream_write(struct http_request *req, const char *data, size_t len)
{
	struct http_conn *c = req->conn;
	struct write_req *wr;
	int n;

	if (!c || c->closing)
		return -EPIPE;
	if (len == 0)
		return 0; /* an empty chunk would end the stream */
	if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) + len > STREAM_UNSENT_MAX)
		return -ENOBUFS;
	wr = wreq_new(len + 32);
	if (!wr)
		return -ENOMEM;
	/* One chunk per write: "<hex size>\r\n<data>\r\n" (raw for HTTP/1.0). */
	n = req->http10 ? 0 : snprintf(wr->data, 32, "%zx\r\n", len);
	memcpy(wr->data + n, data, len);
	if (!req->http10) {
		memcpy(wr->data + n + len, "\r\n", 2);
		n += 2;
	}
	wr->len = (size_t)n + len;
	return conn_send(c, wr);
}

void http_stream_end(struct http_request *req)
{
	struct http_conn *c = req->conn;
	bool keep_alive = req->keep_alive;
	bool http10 = req->http10;

	request_free(req);
	if (!c || c->closing)
		return;
	c->req = NULL;
	if (!http10 && conn_write(c, "0\r\n\r\n", 5) < 0)
		return;
	conn_next(c, keep_alive);
}

bool http_request_gone(const struct http_request *req)
{
	return !req->conn || req->conn->closing;
}
