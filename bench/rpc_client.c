/*
 * bench/rpc_client.c - load generator for bench/rpc.sh: calls a method
 * (ping) many times and prints latency or throughput on one line.
 *
 * Two paths, so that the local HTTP hop can be told apart from the
 * agent-to-agent RPC:
 *
 *   http    POST PATH (/v1/rpc; bench/sql.sh: /v1/sql) to an agent's API
 *           over plain blocking sockets,
 *           HTTP/1.1 keep-alive; one connection per caller, each caller a
 *           thread.  This is the whole path an application sees.
 *   direct  the project's own RPC client (region/rpc.h) on a transport of
 *           its own, sealed with the cluster secret: the benchmark acts as
 *           a node (it never joins the gossip; the RPC server needs only a
 *           valid seal) and calls the peer directly.  This is the
 *           agent-to-agent path alone.
 *
 * Two shapes:
 *
 *   serial N WARMUP   one call at a time: WARMUP calls unrecorded, then N
 *                     timed ones; prints the median, p99 and mean (us)
 *   conc C SECONDS    C callers, each with one call outstanding, for
 *                     SECONDS; prints calls per second
 *
 * A failed call counts as an error and is never retried; more than 1% of
 * errors makes the exit status 1, so that rpc.sh never reports a figure
 * made of failures.  Every loop is bounded by a count or a deadline.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "bench/bench_stats.h"
#include "gossip/seal.h"
#include "gossip/transport.h"
#include "region/rpc.h"

#define SERIAL_MAX 1000000
#define CALLERS_MAX 1024
#define DEADLINE_MS 5000
#define RESP_MAX 65536

static void print_serial(const char *mode, double *lat, size_t n, size_t errors)
{
	double sum = 0;
	size_t i;

	bench_sort(lat, n);
	for (i = 0; i < n; i++)
		sum += lat[i];
	printf("mode=%s kind=serial n=%zu median_us=%.1f p99_us=%.1f mean_us=%.1f "
	       "min_us=%.1f max_us=%.1f errors=%zu\n", mode, n,
	       bench_pct(lat, n, 0.5) * 1e6, bench_pct(lat, n, 0.99) * 1e6,
	       n ? sum / (double)n * 1e6 : 0, n ? lat[0] * 1e6 : 0, n ? lat[n - 1] * 1e6 : 0,
	       errors);
}

/* ---- http: blocking keep-alive client ---- */

struct http_conn {
	int fd;
	char buf[RESP_MAX];
	size_t have;            /* bytes in buf not yet consumed */
};

static int http_connect(struct http_conn *c, const char *hostport)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	char host[64];
	const char *colon = strrchr(hostport, ':');
	int one = 1;

	if (colon == NULL || (size_t)(colon - hostport) >= sizeof(host))
		return -EINVAL;
	memcpy(host, hostport, (size_t)(colon - hostport));
	host[colon - hostport] = '\0';
	sa.sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		return -EINVAL;
	c->have = 0;
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	if (c->fd < 0)
		return -errno;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		int e = -errno;

		close(c->fd);
		c->fd = -1;
		return e;
	}
	return 0;
}

/*
 * Sends @req and reads one response (Content-Length framed).  Returns the
 * HTTP status, or a negative errno; on error the connection is closed.
 * Sets *@ok when the body says "ok":true.
 */
static int http_call(struct http_conn *c, const char *req, size_t reqlen, bool *ok)
{
	size_t off = 0;
	char *end = NULL, *cl;
	size_t head = 0, body = 0;
	int status;

	*ok = false;
	while (off < reqlen) {
		ssize_t w = write(c->fd, req + off, reqlen - off);

		if (w <= 0)
			goto fail;
		off += (size_t)w;
	}
	for (;;) {
		ssize_t r;

		if (end == NULL) {
			c->buf[c->have] = '\0';
			end = strstr(c->buf, "\r\n\r\n");
			if (end != NULL) {
				head = (size_t)(end - c->buf) + 4;
				cl = strcasestr(c->buf, "\r\nContent-Length:");
				if (cl == NULL || cl > end)
					goto fail; /* the API always frames by length */
				body = strtoul(cl + 17, NULL, 10);
				if (head + body >= sizeof(c->buf))
					goto fail;
			}
		}
		if (end != NULL && c->have >= head + body)
			break;
		if (c->have >= sizeof(c->buf) - 1)
			goto fail;
		r = read(c->fd, c->buf + c->have, sizeof(c->buf) - 1 - c->have);
		if (r <= 0)
			goto fail;
		c->have += (size_t)r;
	}
	if (sscanf(c->buf, "HTTP/1.%*d %d", &status) != 1)
		goto fail;
	{
		char save = c->buf[head + body];

		c->buf[head + body] = '\0';
		/* Success is a 200 without an error object: /v1/rpc and
		 * /v1/sql both answer that way. */
		*ok = status == 200 && strstr(c->buf + head, "\"error\":") == NULL;
		c->buf[head + body] = save;
	}
	memmove(c->buf, c->buf + head + body, c->have - head - body);
	c->have -= head + body;
	return status;
fail:
	close(c->fd);
	c->fd = -1;
	return -EIO;
}

static char *http_request(const char *path, const char *body, size_t *len)
{
	size_t cap = strlen(path) + strlen(body) + 256;
	char *req = malloc(cap);
	int n;

	if (req == NULL)
		return NULL;
	n = snprintf(req, cap, "POST %s HTTP/1.1\r\nHost: bench\r\n"
		     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
		     path, strlen(body), body);
	*len = (size_t)n;
	return req;
}

struct http_worker {
	pthread_t th;
	const char *api;
	const char *req;
	size_t reqlen;
	double stop_at;
	uint64_t calls, errors;
};

static void *http_worker_run(void *arg)
{
	struct http_worker *w = arg;
	struct http_conn *c = malloc(sizeof(*c));
	bool ok;

	if (c == NULL || http_connect(c, w->api) != 0) {
		w->errors++;
		free(c);
		return NULL;
	}
	while (now_s() < w->stop_at) {
		if (http_call(c, w->req, w->reqlen, &ok) == 200 && ok) {
			w->calls++;
		} else {
			w->errors++;
			if (c->fd < 0 && http_connect(c, w->api) != 0)
				break;
		}
	}
	if (c->fd >= 0)
		close(c->fd);
	free(c);
	return NULL;
}

static int run_http(const char *api, const char *path, const char *body, const char *kind,
		    long a, long b)
{
	size_t reqlen;
	char *req = http_request(path, body, &reqlen);
	int rc = 1;

	if (req == NULL)
		return 1;
	if (strcmp(kind, "serial") == 0) {
		struct http_conn *c = malloc(sizeof(*c));
		double *lat = calloc((size_t)a, sizeof(double));
		size_t n = 0, errors = 0;
		long i;
		bool ok;

		if (c == NULL || lat == NULL || http_connect(c, api) != 0) {
			fprintf(stderr, "bench_rpc_client: cannot connect to %s\n", api);
			free(c);
			free(lat);
			free(req);
			return 1;
		}
		for (i = 0; i < a + b; i++) {
			double t0 = now_s();
			int st = http_call(c, req, reqlen, &ok);
			double dt = now_s() - t0;

			if (st != 200 || !ok) {
				errors++;
				if (c->fd < 0 && http_connect(c, api) != 0)
					break;
				continue;
			}
			if (i >= b)
				lat[n++] = dt;
		}
		print_serial("http", lat, n, errors);
		rc = errors * 100 > (size_t)a ? 1 : 0;
		if (c->fd >= 0)
			close(c->fd);
		free(c);
		free(lat);
	} else {
		struct http_worker *w = calloc((size_t)a, sizeof(*w));
		uint64_t calls = 0, errors = 0;
		double t0, dt;
		long i, started = 0;

		if (w == NULL) {
			free(req);
			return 1;
		}
		t0 = now_s();
		for (i = 0; i < a; i++) {
			w[i] = (struct http_worker){ .api = api, .req = req, .reqlen = reqlen,
						     .stop_at = t0 + (double)b };
			if (pthread_create(&w[i].th, NULL, http_worker_run, &w[i]) != 0)
				break;
			started++;
		}
		for (i = 0; i < started; i++) {
			pthread_join(w[i].th, NULL);
			calls += w[i].calls;
			errors += w[i].errors;
		}
		dt = now_s() - t0;
		printf("mode=http kind=conc callers=%ld calls=%llu seconds=%.3f calls_per_s=%.0f "
		       "errors=%llu\n", started, (unsigned long long)calls, dt,
		       (double)calls / dt, (unsigned long long)errors);
		rc = started != a || errors * 100 > calls ? 1 : 0;
		free(w);
	}
	free(req);
	return rc;
}

/* ---- direct: region/rpc.h's client on our own transport ---- */

struct direct {
	uv_loop_t loop;
	uv_timer_t stop;
	struct rpc_client *client;
	const char *peer, *addr;
	bool serial, stopping;
	long want, warm, issued;    /* serial: calls wanted, warm-up, issued */
	double t_call;
	double *lat;
	size_t n, errors;
	uint64_t calls;
	long inflight;
	char why[128];
};

static const uint8_t ping_args[] = { 0x90 }; /* msgpack [] */

static void direct_issue(struct direct *d);

static void direct_done(void *ctx, const struct rpc_result *r)
{
	struct direct *d = ctx;
	double dt = now_s() - d->t_call;

	d->inflight--;
	if (r->status != RPC_OK) {
		d->errors++;
		snprintf(d->why, sizeof(d->why), "%s: %s", r->code, r->message);
	} else if (d->serial) {
		if (d->issued > d->warm)
			d->lat[d->n++] = dt;
	} else {
		d->calls++;
	}
	if (d->serial && d->issued < d->want + d->warm && d->errors * 100 <= (size_t)d->want + 1)
		direct_issue(d);
	else if (!d->serial && !d->stopping)
		direct_issue(d);
	if (d->inflight == 0 && (d->serial || d->stopping))
		rpc_client_close(d->client);
}

static void direct_issue(struct direct *d)
{
	int rc;

	d->t_call = now_s();
	d->issued++;
	rc = rpc_client_call(d->client, d->peer, d->addr, "ping", ping_args, sizeof(ping_args),
			     DEADLINE_MS, direct_done, d);
	if (rc == 0) {
		d->inflight++;
	} else {
		d->errors++;
		snprintf(d->why, sizeof(d->why), "rpc_client_call: %s", strerror(-rc));
	}
}

static void direct_stop(uv_timer_t *t)
{
	struct direct *d = t->data;

	d->stopping = true;
	if (d->inflight == 0)
		rpc_client_close(d->client);
}

static void walk_close(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static int run_direct(const char *secret_file, const char *peer, const char *addr,
		      const char *kind, long a, long b)
{
	struct direct *d = calloc(1, sizeof(*d));
	struct transport_config tcfg = { 0 };
	struct rpc_client_config ccfg = { 0 };
	struct transport *t = NULL;
	struct seal *s = NULL;
	uint8_t key[SEAL_KEY_BYTES];
	char secret[512];
	double t0, dt;
	FILE *f;
	long i;
	int rc = 1;

	if (d == NULL)
		return 1;
	f = fopen(secret_file, "r");
	if (f == NULL || fgets(secret, sizeof(secret), f) == NULL) {
		fprintf(stderr, "bench_rpc_client: cannot read %s\n", secret_file);
		if (f)
			fclose(f);
		free(d);
		return 1;
	}
	fclose(f);
	secret[strcspn(secret, "\r\n")] = '\0';
	s = seal_new(SEAL_WINDOW_MS_DEFAULT, SEAL_REPLAY_CACHE_DEFAULT);
	if (s == NULL || seal_derive_key(secret, key) != 0 || seal_key_add(s, key) != 0) {
		fprintf(stderr, "bench_rpc_client: cannot set up the seal\n");
		seal_delete(s);
		free(d);
		return 1;
	}
	uv_loop_init(&d->loop);
	tcfg.bind = "127.0.0.1:0";
	tcfg.name = "bench-rpc-client";
	tcfg.seal = s;
	tcfg.frame_max = 1 << 20;
	tcfg.stream_timeout_ms = 10000;
	tcfg.max_inbound = 16;
	if (transport_new(&d->loop, &tcfg, &t) != 0) {
		fprintf(stderr, "bench_rpc_client: cannot bind a transport\n");
		goto out;
	}
	ccfg.node = "bench-rpc-client";
	ccfg.region = "bench";
	if (rpc_client_new(&d->loop, t, &ccfg, NULL, &d->client) != 0) {
		fprintf(stderr, "bench_rpc_client: cannot make an RPC client\n");
		goto out;
	}
	d->peer = peer;
	d->addr = addr;
	d->serial = strcmp(kind, "serial") == 0;
	t0 = now_s();
	if (d->serial) {
		d->want = a;
		d->warm = b;
		d->lat = calloc((size_t)a, sizeof(double));
		if (d->lat == NULL)
			goto out;
		direct_issue(d);
	} else {
		uv_timer_init(&d->loop, &d->stop);
		d->stop.data = d;
		uv_timer_start(&d->stop, direct_stop, (uint64_t)b * 1000, 0);
		uv_unref((uv_handle_t *)&d->stop);
		for (i = 0; i < a; i++)
			direct_issue(d);
	}
	/* The client closes itself once the last call is done; the transport
	 * stays open, so run the loop until then, bounded by the deadline. */
	while (uv_run(&d->loop, UV_RUN_ONCE) != 0 && now_s() - t0 < (double)(b + 60)) {
		if (d->inflight == 0 && (d->serial ? d->issued >= d->want + d->warm ||
					 d->errors * 100 > (size_t)d->want + 1 : d->stopping))
			break;
	}
	dt = now_s() - t0;
	if (d->serial) {
		print_serial("direct", d->lat, d->n, d->errors);
		rc = d->n == (size_t)a ? 0 : 1;
	} else {
		printf("mode=direct kind=conc callers=%ld calls=%llu seconds=%.3f "
		       "calls_per_s=%.0f errors=%zu\n", a, (unsigned long long)d->calls, dt,
		       (double)d->calls / dt, d->errors);
		rc = d->errors * 100 > d->calls ? 1 : 0;
	}
	if (d->errors)
		fprintf(stderr, "bench_rpc_client: last error: %s\n", d->why);
out:
	if (d->inflight > 0 && d->client)
		rpc_client_close(d->client);
	if (t)
		transport_close(t);
	uv_walk(&d->loop, walk_close, NULL);
	for (i = 0; i < 1000 && uv_run(&d->loop, UV_RUN_NOWAIT) != 0; i++)
		;
	uv_loop_close(&d->loop);
	seal_delete(s);
	free(d->lat);
	free(d);
	return rc;
}

static void usage(void)
{
	fputs("usage: bench_rpc_client http API_HOST:PORT PATH BODY_JSON serial N WARMUP\n"
	      "       bench_rpc_client http API_HOST:PORT PATH BODY_JSON conc CALLERS SECONDS\n"
	      "       bench_rpc_client direct SECRET_FILE PEER_NAME PEER_HOST:PORT serial N WARMUP\n"
	      "       bench_rpc_client direct SECRET_FILE PEER_NAME PEER_HOST:PORT conc CALLERS SECONDS\n",
	      stderr);
}

int main(int argc, char **argv)
{
	long a, b;
	const char *kind;

	if (argc < 2) {
		usage();
		return 2;
	}
	if (strcmp(argv[1], "http") == 0 && argc == 8) {
		kind = argv[5];
		a = atol(argv[6]);
		b = atol(argv[7]);
	} else if (strcmp(argv[1], "direct") == 0 && argc == 8) {
		kind = argv[5];
		a = atol(argv[6]);
		b = atol(argv[7]);
	} else {
		usage();
		return 2;
	}
	if ((strcmp(kind, "serial") != 0 && strcmp(kind, "conc") != 0) || a < 1 || b < 0 ||
	    (strcmp(kind, "serial") == 0 && a > SERIAL_MAX) ||
	    (strcmp(kind, "conc") == 0 && (a > CALLERS_MAX || b < 1 || b > 600))) {
		usage();
		return 2;
	}
	if (argv[1][0] == 'h')
		return run_http(argv[2], argv[3], argv[4], kind, a, b);
	return run_direct(argv[2], argv[3], argv[4], kind, a, b);
}
