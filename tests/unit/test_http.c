/*
 * tests/unit/test_http.c - the local API's HTTP server and the CLI's client,
 * together, over real loopback sockets.
 *
 * The server's libuv loop runs in a second thread and is touched only from
 * there (libuv is not thread-safe): the test thread asks it to do things
 * through a uv_async_t and waits for the answer (loop_run()).  The test
 * thread plays the client, with http_call()/http_call_stream() or with raw
 * sockets when the test needs to send what a good client never would.
 * Every test ends by stopping the server and checking that
 * uv_loop_close() returns 0: no handle, timer or request left behind
 * (ASan's leak check covers the memory).
 *
 * Timing: the only timing asserts are generous bounds (a 300 ms client
 * timeout must fire between 250 ms and 5 s).
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "cmd/http_client.h"
#include "cmd/http_server.h"
#include "lib/clock.h"
#include "tests/seed_testutil.h"

#define HELD_MAX 8

/* ---- the server thread ---- */

struct fixture {
	uv_loop_t loop;
	uv_async_t async;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	void (*job)(void *arg);
	void *job_arg;
	bool job_done;

	struct http_server *srv;
	char addr[64];
	int port;
	/* loop thread only: */
	struct http_request *held[HELD_MAX];
	int nheld;
	int flood_rc;
	int flood_writes;
};

static struct fixture fx;

static void async_cb(uv_async_t *a)
{
	pthread_mutex_lock(&fx.mu);
	if (fx.job) {
		fx.job(fx.job_arg);
		fx.job = NULL;
		fx.job_done = true;
		pthread_cond_broadcast(&fx.cv);
	}
	pthread_mutex_unlock(&fx.mu);
}

/* Runs @fn(@arg) on the loop thread and waits for it. */
static void loop_run(void (*fn)(void *), void *arg)
{
	pthread_mutex_lock(&fx.mu);
	fx.job = fn;
	fx.job_arg = arg;
	fx.job_done = false;
	uv_async_send(&fx.async);
	while (!fx.job_done)
		pthread_cond_wait(&fx.cv, &fx.mu);
	pthread_mutex_unlock(&fx.mu);
}

static void *loop_thread(void *arg)
{
	uv_run(&fx.loop, UV_RUN_DEFAULT);
	return NULL;
}

/* Signed, for deadline arithmetic that may go below zero. */
static int64_t now_ms(void)
{
	return (int64_t)clock_mono_ms();
}

static void sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/* A port nothing listens on right now (bound and released). */
static int free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int port;

	ck_assert_int_ge(fd, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

/* ---- the handlers (loop thread) ---- */

struct deferred {
	uv_timer_t timer;
	struct http_request *req;
	int n;
};

static void deferred_closed(uv_handle_t *h)
{
	free(h->data);
}

static void defer_fire(uv_timer_t *t)
{
	struct deferred *d = t->data;

	http_respond(d->req, 200, "text/plain", "deferred", 8);
	uv_close((uv_handle_t *)&d->timer, deferred_closed);
}

static void sse_tick(uv_timer_t *t)
{
	struct deferred *d = t->data;
	char ev[64];
	int len, rc;

	d->n++;
	len = snprintf(ev, sizeof(ev), "data: event %d\n\n", d->n);
	rc = http_stream_write(d->req, ev, (size_t)len);
	if (rc < 0 || d->n == 3) {
		http_stream_end(d->req);
		uv_timer_stop(&d->timer);
		uv_close((uv_handle_t *)&d->timer, deferred_closed);
	}
}

static void start_timer(struct http_request *req, uint64_t ms, uint64_t repeat, uv_timer_cb cb)
{
	struct deferred *d = calloc(1, sizeof(*d));

	ck_assert_ptr_nonnull(d);
	d->req = req;
	uv_timer_init(&fx.loop, &d->timer);
	d->timer.data = d;
	uv_timer_start(&d->timer, cb, ms, repeat);
}

static void handler(void *ctx, struct http_request *req, const struct http_request_view *v)
{
	char buf[4096], a[64], b[64];
	int n;

	if (strcmp(v->path, "/echo") == 0) {
		if (!http_query_get(v->query, "a", a, sizeof(a)))
			strcpy(a, "(none)");
		if (!http_query_get(v->query, "b", b, sizeof(b)))
			strcpy(b, "(none)");
		n = snprintf(buf, sizeof(buf), "%s %s a=%s b=%s len=%zu body=%.1000s", v->method,
			     v->path, a, b, v->body_len, v->body);
		http_respond(req, 200, "text/plain", buf, (size_t)n);
	} else if (strcmp(v->path, "/mirror") == 0) {
		/* Answers with the request's own body, not a copy: the server
		 * must copy it before it frees the request. */
		http_respond(req, 200, "application/octet-stream", v->body, v->body_len);
	} else if (strcmp(v->path, "/defer") == 0) {
		start_timer(req, 50, 0, defer_fire);
	} else if (strcmp(v->path, "/hold") == 0) {
		ck_assert_int_lt(fx.nheld, HELD_MAX);
		fx.held[fx.nheld++] = req;
	} else if (strcmp(v->path, "/sse") == 0) {
		http_stream_begin(req);
		start_timer(req, 10, 10, sse_tick);
	} else if (strcmp(v->path, "/flood") == 0) {
		/* A reader that never reads: the queue bound must answer
		 * -ENOBUFS long before memory runs out. */
		static char chunk[64 * 1024];
		int rc = 0, i;

		memset(chunk, 'x', sizeof(chunk));
		http_stream_begin(req);
		for (i = 0; i < 4096 && rc == 0; i++)
			rc = http_stream_write(req, chunk, sizeof(chunk));
		fx.flood_rc = rc;
		fx.flood_writes = i;
		http_stream_end(req);
	} else if (strcmp(v->path, "/big") == 0) {
		size_t len = 3000000;
		char *big;

		if (http_query_get(v->query, "n", a, sizeof(a)))
			len = strtoul(a, NULL, 10);
		big = malloc(len);

		ck_assert_ptr_nonnull(big);
		for (size_t i = 0; i < len; i++)
			big[i] = (char)('a' + i % 26);
		http_respond(req, 200, "application/octet-stream", big, len);
		free(big);
	} else {
		static const char nf[] =
			"{\"error\":{\"code\":\"not_found\",\"message\":\"no such path\"}}";

		http_respond(req, 404, "application/json", nf, sizeof(nf) - 1);
	}
}

/* ---- set-up and tear-down ---- */

static void server_up(unsigned max_conns)
{
	int rc = UV_EADDRINUSE;

	signal(SIGPIPE, SIG_IGN);
	memset(&fx, 0, sizeof(fx));
	ck_assert_int_eq(uv_loop_init(&fx.loop), 0);
	pthread_mutex_init(&fx.mu, NULL);
	pthread_cond_init(&fx.cv, NULL);
	ck_assert_int_eq(uv_async_init(&fx.loop, &fx.async, async_cb), 0);
	for (int i = 0; i < 20 && rc == UV_EADDRINUSE; i++) {
		fx.port = free_port();
		snprintf(fx.addr, sizeof(fx.addr), "127.0.0.1:%d", fx.port);
		rc = http_server_start(&fx.loop, fx.addr, max_conns, handler, NULL, &fx.srv);
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_int_eq(pthread_create(&fx.thread, NULL, loop_thread, NULL), 0);
}

static void setup(void)
{
	server_up(64);
}

static void setup_small(void)
{
	server_up(2);
}

static void stop_job(void *arg)
{
	http_server_stop(fx.srv);
	fx.srv = NULL;
	/* Requests held by the handler survive the server: answering them
	 * now only frees them. */
	for (int i = 0; i < fx.nheld; i++) {
		ck_assert(http_request_gone(fx.held[i]));
		http_respond(fx.held[i], 200, "text/plain", "late", 4);
	}
	fx.nheld = 0;
	uv_close((uv_handle_t *)&fx.async, NULL);
}

static void teardown(void)
{
	loop_run(stop_job, NULL);
	ck_assert_int_eq(pthread_join(fx.thread, NULL), 0);
	ck_assert_int_eq(uv_loop_close(&fx.loop), 0);
	pthread_mutex_destroy(&fx.mu);
	pthread_cond_destroy(&fx.cv);
}

struct stats_arg {
	struct http_stats st;
	int nheld;
	bool held0_gone;
	int flood_rc;
	int flood_writes;
};

static void stats_job(void *arg)
{
	struct stats_arg *s = arg;

	http_server_stats(fx.srv, &s->st);
	s->nheld = fx.nheld;
	s->held0_gone = fx.nheld > 0 && http_request_gone(fx.held[0]);
	s->flood_rc = fx.flood_rc;
	s->flood_writes = fx.flood_writes;
}

static struct stats_arg stats(void)
{
	struct stats_arg s;

	memset(&s, 0, sizeof(s));
	loop_run(stats_job, &s);
	return s;
}

/* ---- raw sockets, for what a good client never sends ---- */

static int raw_connect(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	sa.sin_port = htons((uint16_t)fx.port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static void raw_send(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, data, len, MSG_NOSIGNAL);

		ck_assert_int_gt(n, 0);
		data += n;
		len -= (size_t)n;
	}
}

static void raw_sends(int fd, const char *s)
{
	raw_send(fd, s, strlen(s));
}

#define RAW_MAX 8

struct raw {
	http_parser p;
	int n;                  /* complete answers */
	int status[RAW_MAX];
	int keep_alive[RAW_MAX];
	char body[RAW_MAX][1100];
	size_t blen[RAW_MAX];
	size_t total[RAW_MAX]; /* body bytes, also past what @body keeps */
	bool eof;
};

static int raw_on_body(http_parser *p, const char *at, size_t len)
{
	struct raw *r = p->data;

	if (r->n < RAW_MAX)
		r->total[r->n] += len;
	if (r->n < RAW_MAX && r->blen[r->n] + len < sizeof(r->body[0])) {
		memcpy(r->body[r->n] + r->blen[r->n], at, len);
		r->blen[r->n] += len;
	}
	return 0;
}

static int raw_on_complete(http_parser *p)
{
	struct raw *r = p->data;

	if (r->n < RAW_MAX) {
		r->status[r->n] = p->status_code;
		r->keep_alive[r->n] = http_should_keep_alive(p);
	}
	r->n++;
	return 0;
}

static const http_parser_settings raw_settings = {
	.on_body = raw_on_body,
	.on_message_complete = raw_on_complete,
};

static void raw_init(struct raw *r)
{
	memset(r, 0, sizeof(*r));
	http_parser_init(&r->p, HTTP_RESPONSE);
	r->p.data = r;
}

/* Reads until @want answers are complete, EOF, or 5 s. */
static void raw_read(int fd, struct raw *r, int want)
{
	int64_t deadline = now_ms() + 5000;
	char buf[16384];

	while (r->n < want && !r->eof && now_ms() < deadline) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&pfd, 1, 100) <= 0)
			continue;
		n = recv(fd, buf, sizeof(buf), 0);
		if (n <= 0) {
			r->eof = true;
			http_parser_execute(&r->p, &raw_settings, NULL, 0);
			break;
		}
		http_parser_execute(&r->p, &raw_settings, buf, (size_t)n);
		ck_assert_msg(HTTP_PARSER_ERRNO(&r->p) == HPE_OK, "bad answer: %s",
			      http_errno_name(HTTP_PARSER_ERRNO(&r->p)));
	}
}

/* Reads from @fd into @r (reset first) as raw_read does for one response,
 * and checks that exactly one came and that it has @status. */
static void raw_read_one(int fd, struct raw *r, int status)
{
	raw_init(r);
	raw_read(fd, r, 1);
	ck_assert_int_eq(r->n, 1);
	ck_assert_int_eq(r->status[0], status);
}

/* True when the server closes @fd within 5 s. */
static bool raw_wait_eof(int fd)
{
	int64_t deadline = now_ms() + 5000;
	char buf[4096];

	while (now_ms() < deadline) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&pfd, 1, 100) <= 0)
			continue;
		n = recv(fd, buf, sizeof(buf), 0);
		if (n <= 0)
			return true;
	}
	return false;
}

/* ---- tests ---- */

START_TEST(test_get_post_query)
{
	struct http_reply r;

	ck_assert_int_eq(http_call(fx.addr, "GET", "/echo?a=x%20y&b=1+2", NULL, 0, 5000, &r), 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(r.content_type, "text/plain");
	ck_assert_str_eq(r.body, "GET /echo a=x y b=1 2 len=0 body=");
	http_reply_free(&r);

	ck_assert_int_eq(http_call(fx.addr, "POST", "/echo", "{\"k\":1}", 7, 5000, &r), 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(r.body, "POST /echo a=(none) b=(none) len=7 body={\"k\":1}");
	http_reply_free(&r);

	/* The path arrives decoded, the query raw (and decoded on demand). */
	ck_assert_int_eq(http_call(fx.addr, "GET", "/%65cho?b=%2F", NULL, 0, 5000, &r), 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(r.body, "GET /echo a=(none) b=/ len=0 body=");
	http_reply_free(&r);

	/* POST without a body: Content-Length 0. */
	ck_assert_int_eq(http_call(fx.addr, "POST", "/echo", NULL, 0, 5000, &r), 0);
	ck_assert_str_eq(r.body, "POST /echo a=(none) b=(none) len=0 body=");
	http_reply_free(&r);

	ck_assert_int_eq(stats().st.requests, 4);
}
END_TEST

START_TEST(test_respond_with_request_body)
{
	static char body[64 * 1024];
	struct http_reply r;

	for (size_t i = 0; i < sizeof(body); i++)
		body[i] = (char)('a' + i % 26);
	ck_assert_int_eq(http_call(fx.addr, "POST", "/mirror", body, sizeof(body), 5000, &r), 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_uint_eq(r.body_len, sizeof(body));
	ck_assert_mem_eq(r.body, body, sizeof(body));
	http_reply_free(&r);
}
END_TEST

START_TEST(test_not_found)
{
	struct http_reply r;

	ck_assert_int_eq(http_call(fx.addr, "GET", "/nope", NULL, 0, 5000, &r), 0);
	ck_assert_int_eq(r.status, 404);
	ck_assert_str_eq(r.content_type, "application/json");
	ck_assert_ptr_nonnull(strstr(r.body, "not_found"));
	http_reply_free(&r);

	/* A malformed escape in the path is the server's 400, not the
	 * handler's business. */
	ck_assert_int_eq(http_call(fx.addr, "GET", "/a%zz", NULL, 0, 5000, &r), 0);
	ck_assert_int_eq(r.status, 400);
	http_reply_free(&r);
	ck_assert_int_eq(http_call(fx.addr, "GET", "/a%00b", NULL, 0, 5000, &r), 0);
	ck_assert_int_eq(r.status, 400);
	http_reply_free(&r);
}
END_TEST

START_TEST(test_deferred)
{
	struct http_reply r;
	int64_t t0 = now_ms();

	ck_assert_int_eq(http_call(fx.addr, "GET", "/defer", NULL, 0, 5000, &r), 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(r.body, "deferred");
	ck_assert_int_ge(now_ms() - t0, 40);
	http_reply_free(&r);
}
END_TEST

START_TEST(test_body_too_large)
{
	size_t len = HTTP_BODY_MAX + 1000;
	char *body = malloc(len);
	struct http_reply r;

	ck_assert_ptr_nonnull(body);
	memset(body, 'a', len);
	ck_assert_int_eq(http_call(fx.addr, "POST", "/echo", body, len, 10000, &r), 0);
	ck_assert_int_eq(r.status, 413);
	ck_assert_ptr_nonnull(strstr(r.body, "too_large"));
	http_reply_free(&r);

	/* Exactly at the bound is fine. */
	ck_assert_int_eq(http_call(fx.addr, "POST", "/echo", body, HTTP_BODY_MAX, 10000, &r), 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_ptr_nonnull(strstr(r.body, "len=2097152 "));
	http_reply_free(&r);
	free(body);
	ck_assert_int_eq(stats().st.bad_requests, 1);
}
END_TEST

START_TEST(test_chunked_body_too_large)
{
	static const char head[] = "POST /echo HTTP/1.1\r\nHost: x\r\n"
				   "Transfer-Encoding: chunked\r\n\r\n";
	char chunk[70000];
	struct raw r;
	int fd = raw_connect();
	int n = snprintf(chunk, sizeof(chunk), "%x\r\n", 65536);

	memset(chunk + n, 'z', 65536);
	memcpy(chunk + n + 65536, "\r\n", 2);
	raw_send(fd, head, sizeof(head) - 1);
	/* 40 x 64 KiB = 2.5 MiB: past the bound without any Content-Length. */
	for (int i = 0; i < 40; i++) {
		if (send(fd, chunk, (size_t)n + 65538, MSG_NOSIGNAL) < 0)
			break;
	}
	raw_read_one(fd, &r, 413);
	ck_assert(raw_wait_eof(fd));
	close(fd);
}
END_TEST

START_TEST(test_headers_too_large)
{
	size_t len = 20000;
	char *req = malloc(len + 100);
	struct raw r;
	int fd, n;

	ck_assert_ptr_nonnull(req);
	n = sprintf(req, "GET /echo HTTP/1.1\r\nX-Big: ");
	memset(req + n, 'h', len);
	strcpy(req + n + len, "\r\n\r\n");
	fd = raw_connect();
	raw_send(fd, req, strlen(req));
	raw_read_one(fd, &r, 431);
	ck_assert_int_eq(r.keep_alive[0], 0);
	ck_assert(raw_wait_eof(fd));
	close(fd);

	/* Many small headers add up the same way. */
	fd = raw_connect();
	raw_sends(fd, "GET /echo HTTP/1.1\r\n");
	for (int i = 0; i < 1000; i++) {
		char h[64];

		n = snprintf(h, sizeof(h), "X-H%d: vvvvvvvvvvvvvvvv\r\n", i);
		if (send(fd, h, (size_t)n, MSG_NOSIGNAL) < 0)
			break;
	}
	raw_read_one(fd, &r, 431);
	close(fd);

	/* A URL past 4 KiB: 414. */
	n = sprintf(req, "GET /");
	memset(req + n, 'u', 5000);
	strcpy(req + n + 5000, " HTTP/1.1\r\n\r\n");
	fd = raw_connect();
	raw_send(fd, req, strlen(req));
	raw_read_one(fd, &r, 414);
	close(fd);
	free(req);
	ck_assert_int_eq(stats().st.bad_requests, 3);
}
END_TEST

START_TEST(test_garbage)
{
	static const char *const junk[] = {
		"\x01\x02\x03 nonsense\r\n\r\n",
		"GET /echo HTTP/1.1 trailing\r\n\r\n",
		"GET /echo HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
		"GET /echo HTTP/1.1\r\nbad header line\r\n\r\n",
	};

	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		struct raw r;
		int fd = raw_connect();

		raw_send(fd, junk[i], strlen(junk[i]));
		raw_init(&r);
		raw_read(fd, &r, 1);
		ck_assert_msg(r.n == 1 && r.status[0] == 400, "junk %zu: %d answers, status %d",
			      i, r.n, r.status[0]);
		ck_assert(raw_wait_eof(fd));
		close(fd);
	}
	ck_assert_int_eq(stats().st.bad_requests, 4);
	ck_assert_int_eq(stats().st.requests, 0);
}
END_TEST

START_TEST(test_version_not_supported)
{
	struct raw r;
	int fd = raw_connect();

	raw_sends(fd, "GET /echo HTTP/9.9\r\n\r\n");
	raw_read_one(fd, &r, 505);
	close(fd);
}
END_TEST

START_TEST(test_max_conns)
{
	struct http_reply r;
	int a = raw_connect(), b = raw_connect();
	struct raw rr;
	int rc = -1;

	/* Both held connections are served... */
	raw_sends(a, "GET /echo HTTP/1.1\r\n\r\n");
	raw_init(&rr);
	raw_read(a, &rr, 1);
	ck_assert_int_eq(rr.status[0], 200);
	raw_sends(b, "GET /echo HTTP/1.1\r\n\r\n");
	raw_init(&rr);
	raw_read(b, &rr, 1);
	ck_assert_int_eq(rr.status[0], 200);

	/* ...a third is closed at once and counted. */
	ck_assert_int_eq(http_call(fx.addr, "GET", "/echo", NULL, 0, 5000, &r), -ECONNRESET);
	ck_assert_ptr_null(r.body);
	ck_assert_int_eq(stats().st.conns_refused, 1);

	/* Once one leaves, there is room again. */
	close(a);
	for (int i = 0; i < 100 && rc != 0; i++) {
		rc = http_call(fx.addr, "GET", "/echo", NULL, 0, 5000, &r);
		if (rc != 0)
			sleep_ms(20);
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_int_eq(r.status, 200);
	http_reply_free(&r);
	close(b);
}
END_TEST

START_TEST(test_keep_alive)
{
	static const char get[] = "GET /echo?a=1 HTTP/1.1\r\nHost: x\r\n\r\n";
	static const char chunked[] = "POST /echo HTTP/1.1\r\nHost: x\r\n"
				      "Transfer-Encoding: chunked\r\n\r\n"
				      "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
	static const char close_req[] = "GET /echo?a=3 HTTP/1.1\r\nConnection: close\r\n\r\n";
	char two[512];
	struct raw r;
	int fd = raw_connect();

	raw_init(&r);
	/* One after the other on the same connection. */
	raw_send(fd, get, sizeof(get) - 1);
	raw_read(fd, &r, 1);
	raw_send(fd, get, sizeof(get) - 1);
	raw_read(fd, &r, 2);
	ck_assert_int_eq(r.n, 2);
	ck_assert_int_eq(r.status[1], 200);
	ck_assert_int_eq(r.keep_alive[1], 1);

	/* Pipelined: two requests in one write, a deferred one first, so the
	 * second waits in the stash; answers come in order. */
	snprintf(two, sizeof(two), "GET /defer HTTP/1.1\r\n\r\n%s", chunked);
	raw_send(fd, two, strlen(two));
	raw_read(fd, &r, 4);
	ck_assert_int_eq(r.n, 4);
	ck_assert_str_eq(r.body[2], "deferred");
	ck_assert_str_eq(r.body[3], "POST /echo a=(none) b=(none) len=11 body=hello world");

	/* "Connection: close" is honoured: answer, then EOF. */
	raw_send(fd, close_req, sizeof(close_req) - 1);
	raw_read(fd, &r, 5);
	ck_assert_int_eq(r.n, 5);
	ck_assert_int_eq(r.keep_alive[4], 0);
	ck_assert(raw_wait_eof(fd));
	close(fd);

	/* All on one connection: no connection was refused. */
	ck_assert_int_eq(stats().st.requests, 5);
	ck_assert_int_eq(stats().st.conns_refused, 0);
}
END_TEST

START_TEST(test_http10)
{
	static const char req[] = "GET /echo HTTP/1.0\r\n\r\n";
	struct raw r;
	int fd = raw_connect();

	raw_send(fd, req, sizeof(req) - 1);
	raw_read_one(fd, &r, 200);
	ck_assert(raw_wait_eof(fd));
	close(fd);
}
END_TEST

START_TEST(test_half_close)
{
	struct raw r;
	int fd = raw_connect();

	/* The client sends its request and its FIN at once; the answer, too
	 * large for the kernel's socket buffers, must still arrive whole
	 * before the server closes. */
	raw_sends(fd, "GET /big?n=12000000 HTTP/1.0\r\n\r\n");
	ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
	raw_read_one(fd, &r, 200);
	ck_assert_uint_eq(r.total[0], 12000000);
	ck_assert(raw_wait_eof(fd));
	close(fd);
}
END_TEST

START_TEST(test_truncated_and_random)
{
	static const char req[] = "POST /echo?a=1 HTTP/1.1\r\nHost: x\r\n"
				  "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
	uint64_t rng;
	struct http_reply r;
	char junk[512];

	/* Every prefix of a valid request, then the client leaves. */
	for (size_t len = 1; len < sizeof(req) - 1; len++) {
		int fd = raw_connect();

		raw_send(fd, req, len);
		close(fd);
	}
	/* Random bytes, and a valid request with one byte changed. */
	rng = test_seed("test_truncated_and_random", 20261122ULL);
	for (int i = 0; i < 100; i++) {
		int fd = raw_connect();
		size_t len = 1 + (size_t)splitmix64(&rng) % sizeof(junk);

		if (i % 2) {
			for (size_t j = 0; j < len; j++)
				junk[j] = (char)splitmix64(&rng);
		} else {
			len = sizeof(req) - 1;
			memcpy(junk, req, len);
			junk[(size_t)splitmix64(&rng) % len] = (char)splitmix64(&rng);
		}
		raw_send(fd, junk, len);
		close(fd);
	}
	/* The server is unharmed.  It may still be closing the connections
	 * above (its loop runs in another thread) and so be at max_conns for
	 * a moment, refusing us with a reset: allow that for up to 2 s. */
	int rc = -ECONNRESET;
	for (int i = 0; i < 100 && rc == -ECONNRESET; i++) {
		rc = http_call(fx.addr, "GET", "/echo", NULL, 0, 5000, &r);
		if (rc == -ECONNRESET)
			usleep(20 * 1000);
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_int_eq(r.status, 200);
	http_reply_free(&r);
}
END_TEST

START_TEST(test_pipeline_flood)
{
	static const char one[] = "GET /echo HTTP/1.1\r\n\r\n";
	size_t n = 300 * 1024 / (sizeof(one) - 1);
	char *flood = malloc(n * (sizeof(one) - 1));
	struct http_reply r;
	struct stats_arg s;
	int fd = raw_connect();

	/* A held request, then far more pipelined requests than the stash
	 * takes: the server stops reading that client, and only that one. */
	ck_assert_ptr_nonnull(flood);
	for (size_t i = 0; i < n; i++)
		memcpy(flood + i * (sizeof(one) - 1), one, sizeof(one) - 1);
	raw_sends(fd, "GET /hold HTTP/1.1\r\n\r\n");
	fcntl(fd, F_SETFL, O_NONBLOCK);
	send(fd, flood, n * (sizeof(one) - 1), MSG_NOSIGNAL);
	free(flood);
	s = stats();
	for (int i = 0; i < 250 && s.nheld == 0; i++) {
		sleep_ms(20);
		s = stats();
	}
	ck_assert_int_eq(s.nheld, 1);
	ck_assert_int_eq(http_call(fx.addr, "GET", "/echo", NULL, 0, 5000, &r), 0);
	ck_assert_int_eq(r.status, 200);
	http_reply_free(&r);
	ck_assert_int_eq(stats().st.requests, 2);
	close(fd);
}
END_TEST

START_TEST(test_client_errors)
{
	struct http_reply r;
	char addr[64];
	int64_t t0;

	snprintf(addr, sizeof(addr), "127.0.0.1:%d", free_port());
	ck_assert_int_eq(http_call(addr, "GET", "/healthz", NULL, 0, 2000, &r), -ECONNREFUSED);
	ck_assert_int_eq(r.status, 0);
	ck_assert_ptr_null(r.body);
	snprintf(addr, sizeof(addr), "[::1]:%d", free_port());
	t0 = http_call(addr, "GET", "/healthz", NULL, 0, 2000, &r);
	/* No IPv6 on some build machines: either refusal is fine. */
	ck_assert(t0 == -ECONNREFUSED || t0 == -EADDRNOTAVAIL || t0 == -ENETUNREACH ||
		  t0 == -EAFNOSUPPORT);

	ck_assert_int_eq(http_call("nonsense", "GET", "/", NULL, 0, 1000, &r), -EINVAL);
	ck_assert_int_eq(http_call("localhost:7601", "GET", "/", NULL, 0, 1000, &r), -EINVAL);
	ck_assert_int_eq(http_call("127.0.0.1:0", "GET", "/", NULL, 0, 1000, &r), -EINVAL);
	ck_assert_int_eq(http_call("127.0.0.1:99999", "GET", "/", NULL, 0, 1000, &r), -EINVAL);
	ck_assert_int_eq(http_call(fx.addr, "GET", "no-slash", NULL, 0, 1000, &r), -EINVAL);
	ck_assert_int_eq(http_call(fx.addr, "GET", "/a b", NULL, 0, 1000, &r), -EINVAL);
	ck_assert_int_eq(http_call(fx.addr, "GET", "/a\r\nX: y", NULL, 0, 1000, &r), -EINVAL);
	ck_assert_int_eq(http_call(fx.addr, "GET", "/", NULL, 0, 0, &r), -EINVAL);
	ck_assert_str_eq(http_call_strerror(-ECONNREFUSED), "connection refused");
}
END_TEST

START_TEST(test_timeout_and_gone)
{
	struct http_reply r;
	int64_t t0 = now_ms(), dt;
	struct stats_arg s;

	/* The handler never answers: the client gives up at its deadline. */
	ck_assert_int_eq(http_call(fx.addr, "GET", "/hold", NULL, 0, 300, &r), -ETIMEDOUT);
	dt = now_ms() - t0;
	ck_assert_int_ge(dt, 250);
	ck_assert_int_lt(dt, 5000);

	/* The client closed its socket: the held request becomes "gone", and
	 * stays valid until answered (in teardown, under ASan). */
	s = stats();
	for (int i = 0; i < 250 && !s.held0_gone; i++) {
		sleep_ms(20);
		s = stats();
	}
	ck_assert_int_eq(s.nheld, 1);
	ck_assert(s.held0_gone);

	/* The server is still fine. */
	ck_assert_int_eq(http_call(fx.addr, "GET", "/echo", NULL, 0, 5000, &r), 0);
	ck_assert_int_eq(r.status, 200);
	http_reply_free(&r);
}
END_TEST

START_TEST(test_held_at_stop)
{
	int fd = raw_connect();
	struct stats_arg s;

	/* A request still held when the server stops: the teardown answers it
	 * after http_server_stop(), which must only free it. */
	raw_sends(fd, "GET /hold HTTP/1.1\r\n\r\n");
	s = stats();
	for (int i = 0; i < 250 && s.nheld == 0; i++) {
		sleep_ms(20);
		s = stats();
	}
	ck_assert_int_eq(s.nheld, 1);
	ck_assert(!s.held0_gone);
	close(fd);
}
END_TEST

struct sse_seen {
	int n;
	char ev[8][64];
	int stop_after;
};

static int on_chunk(void *ctx, const char *data, size_t len)
{
	struct sse_seen *s = ctx;

	if (s->n < 8)
		snprintf(s->ev[s->n], sizeof(s->ev[0]), "%.*s", (int)len, data);
	s->n++;
	return s->stop_after && s->n >= s->stop_after ? 1 : 0;
}

START_TEST(test_sse)
{
	struct sse_seen seen;
	struct http_reply r;

	memset(&seen, 0, sizeof(seen));
	ck_assert_int_eq(http_call_stream(fx.addr, "GET", "/sse", NULL, 0, 5000, 5000, on_chunk,
					  &seen, &r),
			 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(r.content_type, "text/event-stream");
	ck_assert_str_eq(r.body, "");
	http_reply_free(&r);
	ck_assert_int_eq(seen.n, 3);
	ck_assert_str_eq(seen.ev[0], "data: event 1\n\n");
	ck_assert_str_eq(seen.ev[1], "data: event 2\n\n");
	ck_assert_str_eq(seen.ev[2], "data: event 3\n\n");

	/* The reader may stop early; the server notices it left. */
	memset(&seen, 0, sizeof(seen));
	seen.stop_after = 1;
	ck_assert_int_eq(http_call_stream(fx.addr, "GET", "/sse", NULL, 0, 5000, 5000, on_chunk,
					  &seen, &r),
			 0);
	ck_assert_int_eq(seen.n, 1);
	http_reply_free(&r);

	/* A non-2xx answer is collected, not streamed. */
	memset(&seen, 0, sizeof(seen));
	ck_assert_int_eq(http_call_stream(fx.addr, "GET", "/nope", NULL, 0, 5000, 5000, on_chunk,
					  &seen, &r),
			 0);
	ck_assert_int_eq(r.status, 404);
	ck_assert_int_eq(seen.n, 0);
	ck_assert_ptr_nonnull(strstr(r.body, "not_found"));
	http_reply_free(&r);

	/* A stream that goes quiet hits the idle bound. */
	ck_assert_int_eq(http_call_stream(fx.addr, "GET", "/hold", NULL, 0, 300, 300, on_chunk,
					  &seen, &r),
			 -ETIMEDOUT);
	http_reply_free(&r);
}
END_TEST

START_TEST(test_sse_slow_reader)
{
	struct stats_arg s;
	int fd = raw_connect();

	raw_sends(fd, "GET /flood HTTP/1.1\r\n\r\n");
	s = stats();
	for (int i = 0; i < 250 && s.flood_writes == 0; i++) {
		sleep_ms(20);
		s = stats();
	}
	ck_assert_int_eq(s.flood_rc, -ENOBUFS);
	/* Kernel buffers take some, the queue 1 MiB more: far from 4096. */
	ck_assert_int_lt(s.flood_writes, 4096);
	close(fd);
}
END_TEST

START_TEST(test_big_answer)
{
	struct http_reply r;

	ck_assert_int_eq(http_call(fx.addr, "GET", "/big", NULL, 0, 10000, &r), 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_uint_eq(r.body_len, 3000000);
	for (size_t i = 0; i < r.body_len; i += 99991)
		ck_assert_int_eq(r.body[i], 'a' + (int)(i % 26));
	ck_assert_int_eq(r.body[r.body_len], '\0');
	http_reply_free(&r);
	http_reply_free(&r);
}
END_TEST

START_TEST(test_query_get)
{
	const char *q = "a=1&b=x%2Fy+z&c&d=%zz&%72egion=fra&e=&a=2";
	char out[16];

	ck_assert(http_query_get(q, "a", out, sizeof(out)));
	ck_assert_str_eq(out, "1"); /* the first wins */
	ck_assert(http_query_get(q, "b", out, sizeof(out)));
	ck_assert_str_eq(out, "x/y z");
	ck_assert(http_query_get(q, "c", out, sizeof(out)));
	ck_assert_str_eq(out, "");
	ck_assert(http_query_get(q, "d", out, sizeof(out)));
	ck_assert_str_eq(out, ""); /* present but undecodable: empty */
	ck_assert(http_query_get(q, "region", out, sizeof(out)));
	ck_assert_str_eq(out, "fra");
	ck_assert(http_query_get(q, "e", out, sizeof(out)));
	ck_assert_str_eq(out, "");
	ck_assert(!http_query_get(q, "f", out, sizeof(out)));
	ck_assert(!http_query_get("", "a", out, sizeof(out)));
	ck_assert(!http_query_get(q, "reg", out, sizeof(out)));
	/* Too long for @out: empty, never cut. */
	ck_assert(http_query_get("a=0123456789abcdefghij", "a", out, sizeof(out)));
	ck_assert_str_eq(out, "");
	ck_assert(http_query_get("a=0123456789abcde", "a", out, sizeof(out)));
	ck_assert_str_eq(out, "0123456789abcde");
}
END_TEST

static void start_errors_job(void *arg)
{
	struct http_server *s = NULL;
	int *rc = arg;

	rc[0] = http_server_start(&fx.loop, fx.addr, 4, handler, NULL, &s);
	rc[1] = http_server_start(&fx.loop, "nonsense", 4, handler, NULL, &s);
	rc[2] = s == NULL;
}

START_TEST(test_start_errors_on_loop)
{
	int rc[3];

	loop_run(start_errors_job, rc);
	ck_assert_int_eq(rc[0], UV_EADDRINUSE);
	ck_assert_int_eq(rc[1], UV_EINVAL);
	ck_assert_int_eq(rc[2], 1);
}
END_TEST

static Suite *http_suite(void)
{
	Suite *s = suite_create("http");
	TCase *tc = tcase_create("server+client");
	TCase *small = tcase_create("max_conns");
	TCase *pure = tcase_create("pure");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_get_post_query);
	tcase_add_test(tc, test_not_found);
	tcase_add_test(tc, test_respond_with_request_body);
	tcase_add_test(tc, test_deferred);
	tcase_add_test(tc, test_body_too_large);
	tcase_add_test(tc, test_chunked_body_too_large);
	tcase_add_test(tc, test_headers_too_large);
	tcase_add_test(tc, test_garbage);
	tcase_add_test(tc, test_version_not_supported);
	tcase_add_test(tc, test_keep_alive);
	tcase_add_test(tc, test_http10);
	tcase_add_test(tc, test_half_close);
	tcase_add_test(tc, test_truncated_and_random);
	tcase_add_test(tc, test_pipeline_flood);
	tcase_add_test(tc, test_client_errors);
	tcase_add_test(tc, test_timeout_and_gone);
	tcase_add_test(tc, test_held_at_stop);
	tcase_add_test(tc, test_sse);
	tcase_add_test(tc, test_sse_slow_reader);
	tcase_add_test(tc, test_big_answer);
	tcase_add_test(tc, test_start_errors_on_loop);
	suite_add_tcase(s, tc);

	tcase_add_checked_fixture(small, setup_small, teardown);
	tcase_set_timeout(small, 60);
	tcase_add_test(small, test_max_conns);
	suite_add_tcase(s, small);

	tcase_add_test(pure, test_query_get);
	suite_add_tcase(s, pure);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(http_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
