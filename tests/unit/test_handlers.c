/*
 * tests/unit/test_handlers.c - the method runner behind the region RPC
 * server: built-ins, exec handlers (real /bin/sh children), the upstream
 * (a real HTTP server from cmd/http_server.h on 127.0.0.1), and the
 * msgpack <-> JSON argument conversions.
 *
 * One libuv loop, in the test thread.  Every uv_run is bounded by a timer
 * (run_until()); every test ends with rpc_handlers_close(), the loop run
 * until it has nothing left, and uv_loop_close() == 0: no handle or child
 * left behind (ASan's leak check covers the memory).
 *
 * Timing: only generous bounds (a 300 ms deadline must answer between
 * 250 ms and 5 s).
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "cmd/http_server.h"
#include "lib/clock.h"
#include "region/handlers.h"

static uv_loop_t loop;

struct result {
	int count;
	enum rpc_error error;
	char message[RPC_MESSAGE_MAX + 1];
	uint32_t retry_after_ms;
	char *result;
	size_t len;
	uint64_t at_ms;
};

static void on_reply(void *ctx, const struct rpc_serve_reply *r)
{
	struct result *res = ctx;

	res->count++;
	res->at_ms = clock_mono_ms();
	res->error = r->error;
	res->retry_after_ms = r->retry_after_ms;
	snprintf(res->message, sizeof(res->message), "%s", r->message ? r->message : "");
	free(res->result);
	res->result = malloc(r->result_len + 1);
	ck_assert_ptr_nonnull(res->result);
	if (r->result_len)
		memcpy(res->result, r->result, r->result_len);
	res->result[r->result_len] = '\0';
	res->len = r->result_len;
}

static void result_free(struct result *r)
{
	free(r->result);
	memset(r, 0, sizeof(*r));
}

static bool timed_out;

static void bound_cb(uv_timer_t *t)
{
	timed_out = true;
}

/* Runs the loop until *@cond (when not NULL) holds, or @ms pass. */
static bool run_until(bool (*cond)(void *), void *arg, unsigned ms)
{
	uv_timer_t t;
	bool ok;

	timed_out = false;
	uv_timer_init(&loop, &t);
	uv_timer_start(&t, bound_cb, ms, 0);
	while (!(cond && cond(arg)) && !timed_out)
		uv_run(&loop, UV_RUN_ONCE);
	ok = cond && cond(arg);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&loop, UV_RUN_NOWAIT);
	return ok;
}

static bool replied(void *arg)
{
	return ((struct result *)arg)->count > 0;
}

static bool no_jobs(void *arg)
{
	struct rpc_handlers_stats st;

	rpc_handlers_stats(arg, &st);
	return st.jobs == 0;
}

/* Starts @method with JSON @args on @h; returns start()'s code. */
static int call(struct rpc_handlers *h, const char *method, const char *args, uint32_t dl_ms,
		struct result *r, void **job)
{
	struct rpc_serve_ops ops = rpc_handlers_ops(h);
	struct rpc_buf b = { 0 };
	struct rpc_serve_call c = {
		.method = method, .deadline_ms = dl_ms, .origin_node = "n9", .origin_region = "syd",
	};
	void *dummy;
	int rc;

	ck_assert_int_eq(rpc_args_from_json(args, &b, NULL, 0), 0);
	c.args = b.data;
	c.args_len = b.len;
	rc = ops.start(ops.ctx, &c, on_reply, r, job ? job : &dummy);
	rpc_buf_free(&b);
	return rc;
}

static struct rpc_handlers *make(const struct rpc_handler_spec *hs, size_t n,
				 const char *upstream, unsigned max_jobs, size_t output_max)
{
	struct rpc_handlers_config cfg = {
		.node = "f2", .region = "fra", .primary_region = "iad", .version = "0.1.0",
		.handlers = hs, .nhandlers = n, .upstream = upstream, .max_jobs = max_jobs,
		.output_max = output_max,
	};
	char err[256] = "";
	struct rpc_handlers *h = rpc_handlers_new(&loop, &cfg, err, sizeof(err));

	ck_assert_msg(h != NULL, "rpc_handlers_new: %s", err);
	return h;
}

/* Closes @h and runs the loop until nothing is left (5 s at most).  Not
 * run_until(): its own bound timer would keep the loop alive to the end. */
static void finish(struct rpc_handlers *h)
{
	uint64_t deadline = clock_mono_ms() + 5000;

	rpc_handlers_close(h);
	while (uv_loop_alive(&loop) && clock_mono_ms() < deadline) {
		uv_run(&loop, UV_RUN_NOWAIT);
		usleep(1000);
	}
	ck_assert_msg(!uv_loop_alive(&loop), "handles left open after close");
	ck_assert_int_eq(uv_loop_close(&loop), 0);
}

static void setup(void)
{
	ck_assert_int_eq(uv_loop_init(&loop), 0);
}

/* True when @pid no longer runs (gone, or a zombie of someone else's). */
static bool pid_gone(long pid);

/* A killed process takes a moment to go (longer on a loaded machine):
 * polls pid_gone() for up to @ms. */
static bool pid_gone_within(long pid, unsigned ms)
{
	for (unsigned waited = 0;; waited += 10) {
		if (pid_gone(pid))
			return true;
		if (waited >= ms)
			return false;
		usleep(10000);
	}
}

static bool pid_gone(long pid)
{
	char path[64], buf[256];
	FILE *f;
	char *p;

	if (kill((pid_t)pid, 0) < 0 && errno == ESRCH)
		return true;
	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return true;
	p = fgets(buf, sizeof(buf), f);
	fclose(f);
	p = p ? strrchr(buf, ')') : NULL;
	return p && p[1] == ' ' && p[2] == 'Z';
}

/* ---- built-ins, lookup, bounds ---- */

START_TEST(test_builtins)
{
	struct rpc_handlers *h;
	struct result r = { 0 };
	void *job = &r;

	setup();
	h = make(NULL, 0, NULL, 0, 0);
	ck_assert_int_eq(call(h, "ping", NULL, 1000, &r, &job), 0);
	ck_assert_ptr_null(job);
	ck_assert_int_eq(r.count, 1);
	ck_assert_int_eq(r.error, RPC_E_NONE);
	ck_assert_str_eq(r.result, "{\"node\":\"f2\",\"region\":\"fra\"}");
	result_free(&r);

	ck_assert_int_eq(call(h, "info", "[]", 1000, &r, NULL), 0);
	ck_assert_str_eq(r.result, "{\"node\":\"f2\",\"region\":\"fra\",\"primary_region\":\"iad\","
				   "\"is_primary\":false,\"version\":\"0.1.0\"}");
	result_free(&r);

	ck_assert_int_eq(call(h, "echo", "[\"hello\",1,{\"a\":[true,null]}]", 1000, &r, NULL), 0);
	ck_assert_str_eq(r.result, "[\"hello\",1,{\"a\":[true,null]}]");
	result_free(&r);
	finish(h);

	/* A primary-region node, and no primary known at all. */
	setup();
	{
		struct rpc_handlers_config cfg = { .node = "a1", .region = "iad",
						   .primary_region = "iad", .version = "0.2.0" };

		h = rpc_handlers_new(&loop, &cfg, NULL, 0);
		ck_assert_ptr_nonnull(h);
		call(h, "info", NULL, 1000, &r, NULL);
		ck_assert_str_eq(r.result, "{\"node\":\"a1\",\"region\":\"iad\",\"primary_region\":"
					   "\"iad\",\"is_primary\":true,\"version\":\"0.2.0\"}");
		result_free(&r);
		finish(h);
	}
	setup();
	{
		struct rpc_handlers_config cfg = { .node = "a1", .region = "iad",
						   .version = "0.2.0" };

		h = rpc_handlers_new(&loop, &cfg, NULL, 0);
		call(h, "info", NULL, 1000, &r, NULL);
		ck_assert_str_eq(r.result, "{\"node\":\"a1\",\"region\":\"iad\",\"primary_region\":"
					   "null,\"is_primary\":false,\"version\":\"0.2.0\"}");
		result_free(&r);
		finish(h);
	}
}
END_TEST

START_TEST(test_no_such_method)
{
	struct rpc_handlers *h;
	struct result r = { 0 };

	setup();
	h = make(NULL, 0, NULL, 0, 0);
	ck_assert_int_lt(call(h, "upcase", "[\"fly\"]", 1000, &r, NULL), 0);
	ck_assert_int_eq(r.count, 1);
	ck_assert_int_eq(r.error, RPC_E_NO_SUCH_METHOD);
	ck_assert_str_eq(r.message, "no method \"upcase\" on node f2 (meridian 0.1.0)");
	result_free(&r);
	finish(h);
}
END_TEST

START_TEST(test_bad_args)
{
	static const uint8_t not_array[] = { 0x01 };
	struct rpc_handlers *h;
	struct rpc_serve_ops ops;
	struct result r = { 0 };
	struct rpc_serve_call c = { .method = "echo", .args = not_array, .args_len = 1,
				    .deadline_ms = 100, .origin_node = "x", .origin_region = "y" };
	void *job;

	setup();
	h = make(NULL, 0, NULL, 0, 0);
	ops = rpc_handlers_ops(h);
	ck_assert_int_eq(ops.start(ops.ctx, &c, on_reply, &r, &job), -EINVAL);
	ck_assert_int_eq(r.count, 1);
	ck_assert_int_eq(r.error, RPC_E_BAD_REQUEST);
	ck_assert_str_eq(r.message, "args should be an array");
	result_free(&r);
	finish(h);
}
END_TEST

/* ---- exec handlers ---- */

START_TEST(test_exec_ok)
{
	struct rpc_handler_spec hs[2];
	struct rpc_handlers *h;
	struct result r = { 0 };
	void *job = NULL;

	ck_assert_int_eq(rpc_handlers_parse_spec(
		"up=printf '%s|%s|%s|' \"$MERIDIAN_METHOD\" \"$MERIDIAN_ORIGIN_NODE\" "
		"\"$MERIDIAN_ORIGIN_REGION\"; cat", &hs[0], NULL, 0), 0);
	ck_assert_int_eq(rpc_handlers_parse_spec("hi=echo hi", &hs[1], NULL, 0), 0);
	setenv("MERIDIAN_METHOD", "stale", 1);
	setup();
	h = make(hs, 2, NULL, 0, 0);
	ck_assert_int_eq(call(h, "up", "[\"a\",\"ü\"]", 5000, &r, &job), 0);
	ck_assert_ptr_nonnull(job);
	ck_assert(run_until(replied, &r, 5000));
	ck_assert_int_eq(r.error, RPC_E_NONE);
	ck_assert_str_eq(r.result, "up|n9|syd|[\"a\",\"ü\"]");
	result_free(&r);

	/* One trailing newline trimmed. */
	ck_assert_int_eq(call(h, "hi", NULL, 5000, &r, NULL), 0);
	ck_assert(run_until(replied, &r, 5000));
	ck_assert_int_eq(r.error, RPC_E_NONE);
	ck_assert_str_eq(r.result, "hi");
	ck_assert(run_until(no_jobs, h, 5000));
	ck_assert_int_eq(r.count, 1);
	result_free(&r);
	finish(h);
	unsetenv("MERIDIAN_METHOD");
}
END_TEST

START_TEST(test_exec_fails)
{
	struct rpc_handler_spec hs[2];
	struct rpc_handlers *h;
	struct result r = { 0 };

	rpc_handlers_parse_spec("fail=cat >/dev/null; echo noise >&2; echo oops >&2; exit 3",
				&hs[0], NULL, 0);
	/* A long stderr: the message keeps its end, cleaned of control bytes. */
	rpc_handlers_parse_spec("loud=i=0; while [ $i -lt 300 ]; do printf 'line %d\\a\\n' $i >&2;"
				" i=$((i+1)); done; printf 'the end' >&2; kill -9 $$", &hs[1],
				NULL, 0);
	setup();
	h = make(hs, 2, NULL, 0, 0);
	ck_assert_int_eq(call(h, "fail", "[1,2]", 5000, &r, NULL), 0);
	ck_assert(run_until(replied, &r, 5000));
	ck_assert_int_eq(r.error, RPC_E_REMOTE_ERROR);
	ck_assert_str_eq(r.message, "handler fail exited with status 3: noise\noops");
	result_free(&r);

	ck_assert_int_eq(call(h, "loud", NULL, 5000, &r, NULL), 0);
	ck_assert(run_until(replied, &r, 5000));
	ck_assert_int_eq(r.error, RPC_E_REMOTE_ERROR);
	ck_assert_msg(strncmp(r.message, "handler loud was killed by signal 9: ", 37) == 0, "%s",
		      r.message);
	ck_assert(strlen(r.message) <= RPC_MESSAGE_MAX);
	ck_assert(strstr(r.message, "line 299?\nthe end") != NULL);
	ck_assert(strchr(r.message, '\a') == NULL);
	result_free(&r);
	finish(h);
}
END_TEST

static char pidfile[64];

static bool pidfile_ready(void *arg)
{
	FILE *f = fopen(pidfile, "r");
	long *pids = arg;
	int n = 0;

	if (f) {
		n = fscanf(f, "%ld %ld", &pids[0], &pids[1]);
		fclose(f);
	}
	return n == 2;
}

/* Removes the pid file and the half-written one a killed shell may leave. */
static void pidfile_clean(void)
{
	char tmp[80];

	snprintf(tmp, sizeof(tmp), "%s.tmp", pidfile);
	unlink(pidfile);
	unlink(tmp);
}

static struct rpc_handlers *slow_handlers(struct rpc_handler_spec *hs, char *spec, size_t cap,
					  unsigned max_jobs)
{
	int fd;

	snprintf(pidfile, sizeof(pidfile), "/tmp/test_handlers.XXXXXX");
	fd = mkstemp(pidfile);
	ck_assert_int_ge(fd, 0);
	close(fd);
	unlink(pidfile);
	/* The shell and its child both: the whole group must go. */
	snprintf(spec, cap, "slow=sleep 10 & echo \"$$ $!\" > %s.tmp && mv %s.tmp %s; wait",
		 pidfile, pidfile, pidfile);
	ck_assert_int_eq(rpc_handlers_parse_spec(spec, hs, NULL, 0), 0);
	return make(hs, 1, NULL, max_jobs, 0);
}

START_TEST(test_exec_deadline)
{
	struct rpc_handler_spec hs[1];
	char spec[256];
	struct rpc_handlers *h;
	struct result r = { 0 };
	long pids[2];
	uint64_t t0;

	setup();
	h = slow_handlers(hs, spec, sizeof(spec), 0);
	t0 = clock_mono_ms();
	/* 1 s: time enough for the handler to write its pidfile first. */
	ck_assert_int_eq(call(h, "slow", NULL, 1000, &r, NULL), 0);
	ck_assert(run_until(pidfile_ready, pids, 5000));
	ck_assert(run_until(replied, &r, 5000));
	ck_assert_int_eq(r.error, RPC_E_TIMEOUT);
	ck_assert_str_eq(r.message, "handler slow did not finish within 1000 ms");
	ck_assert_uint_ge(r.at_ms - t0, 950);
	ck_assert_uint_le(r.at_ms - t0, 5000);
	ck_assert(run_until(no_jobs, h, 5000));
	ck_assert_int_eq(r.count, 1);
	ck_assert(pid_gone_within(pids[0], 5000));
	ck_assert(pid_gone_within(pids[1], 5000));
	pidfile_clean();
	result_free(&r);
	finish(h);
}
END_TEST

START_TEST(test_exec_cancel)
{
	struct rpc_handler_spec hs[1];
	char spec[256];
	struct rpc_handlers *h;
	struct rpc_serve_ops ops;
	struct result r = { 0 };
	long pids[2];
	void *job = NULL;

	setup();
	h = slow_handlers(hs, spec, sizeof(spec), 0);
	ops = rpc_handlers_ops(h);
	ck_assert_int_eq(call(h, "slow", NULL, 60000, &r, &job), 0);
	ck_assert(run_until(pidfile_ready, pids, 5000));
	ops.cancel(ops.ctx, job);
	ck_assert(run_until(no_jobs, h, 5000));
	ck_assert(pid_gone_within(pids[0], 5000));
	ck_assert(pid_gone_within(pids[1], 5000));
	run_until(NULL, NULL, 50);
	ck_assert_int_eq(r.count, 0);
	pidfile_clean();
	finish(h);
}
END_TEST

START_TEST(test_exec_close_kills)
{
	struct rpc_handler_spec hs[1];
	char spec[256];
	struct rpc_handlers *h;
	struct result r = { 0 };
	long pids[2];

	setup();
	h = slow_handlers(hs, spec, sizeof(spec), 0);
	ck_assert_int_eq(call(h, "slow", NULL, 60000, &r, NULL), 0);
	ck_assert(run_until(pidfile_ready, pids, 5000));
	finish(h);
	ck_assert_int_eq(r.count, 0);
	ck_assert(pid_gone_within(pids[0], 5000));
	ck_assert(pid_gone_within(pids[1], 5000));
	pidfile_clean();
}
END_TEST

START_TEST(test_exec_oversize)
{
	struct rpc_handler_spec hs[1];
	struct rpc_handlers *h;
	struct result r = { 0 };

	rpc_handlers_parse_spec("big=head -c 5000 /dev/zero | tr '\\000' x; sleep 10", hs, NULL, 0);
	setup();
	h = make(hs, 1, NULL, 0, 1000);
	ck_assert_int_eq(call(h, "big", NULL, 60000, &r, NULL), 0);
	ck_assert(run_until(replied, &r, 5000));
	ck_assert_int_eq(r.error, RPC_E_REMOTE_ERROR);
	ck_assert_str_eq(r.message, "handler big: result larger than 1000 bytes");
	ck_assert(run_until(no_jobs, h, 5000));
	ck_assert_int_eq(r.count, 1);
	result_free(&r);
	finish(h);
}
END_TEST

START_TEST(test_overloaded)
{
	struct rpc_handler_spec hs[1];
	char spec[256];
	struct rpc_handlers *h;
	struct rpc_serve_ops ops;
	struct result r[4] = { 0 };
	void *job[4] = { 0 };
	struct rpc_handlers_stats st;

	setup();
	h = slow_handlers(hs, spec, sizeof(spec), 2);
	ops = rpc_handlers_ops(h);
	ck_assert_int_eq(call(h, "slow", NULL, 60000, &r[0], &job[0]), 0);
	ck_assert_int_eq(call(h, "slow", NULL, 60000, &r[1], &job[1]), 0);
	ck_assert_int_eq(call(h, "slow", NULL, 60000, &r[2], &job[2]), -EBUSY);
	ck_assert_int_eq(r[2].count, 1);
	ck_assert_int_eq(r[2].error, RPC_E_OVERLOADED);
	ck_assert_uint_eq(r[2].retry_after_ms, 100);
	/* Built-ins hold nothing, so they still answer. */
	ck_assert_int_eq(call(h, "ping", NULL, 1000, &r[3], NULL), 0);
	ck_assert_int_eq(r[3].error, RPC_E_NONE);
	rpc_handlers_stats(h, &st);
	ck_assert_uint_eq(st.jobs, 2);
	ck_assert_uint_eq(st.overloaded, 1);
	ops.cancel(ops.ctx, job[0]);
	ops.cancel(ops.ctx, job[1]);
	ck_assert(run_until(no_jobs, h, 5000));
	ck_assert_int_eq(r[0].count + r[1].count, 0);
	for (int i = 0; i < 4; i++)
		result_free(&r[i]);
	pidfile_clean();
	finish(h);
}
END_TEST

/* ---- the upstream ---- */

static struct http_request *held;

static void upstream_handler(void *ctx, struct http_request *req,
			     const struct http_request_view *v)
{
	if (strcmp(v->path, "/rpc") == 0) {
		/* A copy: http_respond() frees the request (and v->body) first. */
		char *copy = strndup(v->body, v->body_len);

		ck_assert_ptr_nonnull(copy);
		http_respond(req, 200, "application/json", copy, v->body_len);
		free(copy);
	} else if (strcmp(v->path, "/fail") == 0)
		http_respond(req, 500, "text/plain", "boom\n", 5);
	else if (strcmp(v->path, "/slow") == 0)
		held = req;
	else
		http_respond(req, 404, "text/plain", "not found", 9);
}

static int free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int port;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

/* One upstream call against @path on a fresh server; fills @r. */
static void upstream_call(const char *path, bool listen, uint32_t dl_ms, struct result *r)
{
	struct http_server *srv = NULL;
	struct rpc_handlers *h;
	char addr[64], url[128];
	int port = 0;

	setup();
	for (int tries = 0; tries < 20; tries++) {
		port = free_port();
		snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
		if (!listen ||
		    http_server_start(&loop, addr, 16, upstream_handler, NULL, &srv) == 0)
			break;
	}
	ck_assert(!listen || srv);
	snprintf(url, sizeof(url), "http://localhost:%d%s", port, path);
	h = make(NULL, 0, url, 0, 0);
	ck_assert_int_eq(call(h, "upcase", "[\"fly\"]", dl_ms, r, NULL), 0);
	ck_assert(run_until(replied, r, 5000));
	ck_assert(run_until(no_jobs, h, 5000));
	ck_assert_int_eq(r->count, 1);
	if (held) {
		http_respond(held, 200, "text/plain", "late", 4);
		held = NULL;
	}
	if (srv)
		http_server_stop(srv);
	finish(h);
}

START_TEST(test_upstream)
{
	struct result r = { 0 };
	uint64_t t0;

	upstream_call("/rpc", true, 5000, &r);
	ck_assert_int_eq(r.error, RPC_E_NONE);
	ck_assert_str_eq(r.result, "{\"method\":\"upcase\",\"args\":[\"fly\"],"
				   "\"origin\":{\"node\":\"n9\",\"region\":\"syd\"}}");
	result_free(&r);

	upstream_call("/nothing", true, 5000, &r);
	ck_assert_int_eq(r.error, RPC_E_NO_SUCH_METHOD);
	ck_assert_str_eq(r.message, "no method \"upcase\" on node f2 (meridian 0.1.0): "
				    "upstream answered 404");
	result_free(&r);

	upstream_call("/fail", true, 5000, &r);
	ck_assert_int_eq(r.error, RPC_E_REMOTE_ERROR);
	ck_assert_str_eq(r.message, "upstream answered 500: boom\n");
	result_free(&r);

	upstream_call("/rpc", false, 5000, &r);
	ck_assert_int_eq(r.error, RPC_E_REMOTE_ERROR);
	ck_assert_str_eq(r.message, "upstream unreachable: connection refused");
	result_free(&r);

	t0 = clock_mono_ms();
	upstream_call("/slow", true, 300, &r);
	ck_assert_int_eq(r.error, RPC_E_TIMEOUT);
	ck_assert_uint_ge(r.at_ms - t0, 250);
	ck_assert_uint_le(r.at_ms - t0, 5000);
	result_free(&r);
}
END_TEST

/* ---- configuration ---- */

START_TEST(test_config_errors)
{
	struct rpc_handler_spec s, two[2];
	char err[256];
	struct rpc_handlers_config cfg = { .node = "f2", .region = "fra", .version = "0.1.0" };

	ck_assert_int_eq(rpc_handlers_parse_spec("up=tr a-z A-Z", &s, err, sizeof(err)), 0);
	ck_assert_str_eq(s.name, "up");
	ck_assert_str_eq(s.command, "tr a-z A-Z");
	ck_assert_int_eq(rpc_handlers_parse_spec("noequals", &s, err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "handler \"noequals\" should be NAME=COMMAND");
	ck_assert_int_eq(rpc_handlers_parse_spec("Up=x", &s, err, sizeof(err)), -EINVAL);
	ck_assert(strstr(err, "\"Up\" is not a method name") != NULL);
	ck_assert_int_eq(rpc_handlers_parse_spec("=x", &s, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(rpc_handlers_parse_spec("up=", &s, err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "handler up has an empty command");
	ck_assert_int_eq(rpc_handlers_parse_spec("ping=x", &s, err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "handler ping: \"ping\" is a built-in method");

	ck_assert_int_eq(rpc_handlers_upstream_check("http://127.0.0.1:8080/rpc", err, 256), 0);
	ck_assert_int_eq(rpc_handlers_upstream_check("http://localhost:8080", err, 256), 0);
	ck_assert_int_eq(rpc_handlers_upstream_check("http://127.0.0.1/", err, 256), 0);
	ck_assert_int_eq(rpc_handlers_upstream_check("http://[::1]:9/x?y=1", err, 256), 0);
	ck_assert_int_eq(rpc_handlers_upstream_check("https://127.0.0.1/", err, 256), -EINVAL);
	ck_assert(strstr(err, "https is not supported") != NULL);
	ck_assert_int_eq(rpc_handlers_upstream_check("127.0.0.1:80", err, 256), -EINVAL);
	ck_assert_int_eq(rpc_handlers_upstream_check("http://example.com/", err, 256), -EINVAL);
	ck_assert(strstr(err, "must be numeric") != NULL);
	ck_assert_int_eq(rpc_handlers_upstream_check("http://127.0.0.1:99999/", err, 256),
			 -EINVAL);
	ck_assert_int_eq(rpc_handlers_upstream_check("http://127.0.0.1:8x/", err, 256), -EINVAL);
	ck_assert_int_eq(rpc_handlers_upstream_check("http:///x", err, 256), -EINVAL);
	ck_assert_int_eq(rpc_handlers_upstream_check("http://u@127.0.0.1/", err, 256), -EINVAL);
	ck_assert_int_eq(rpc_handlers_upstream_check("http://127.0.0.1/a b", err, 256), -EINVAL);

	setup();
	rpc_handlers_parse_spec("up=a", &two[0], NULL, 0);
	rpc_handlers_parse_spec("up=b", &two[1], NULL, 0);
	cfg.handlers = two;
	cfg.nhandlers = 2;
	ck_assert_ptr_null(rpc_handlers_new(&loop, &cfg, err, sizeof(err)));
	ck_assert_str_eq(err, "handler up is given twice");
	cfg.nhandlers = 1;
	cfg.upstream = "ftp://x";
	ck_assert_ptr_null(rpc_handlers_new(&loop, &cfg, err, sizeof(err)));
	ck_assert(strstr(err, "should start with http://") != NULL);
	cfg.upstream = NULL;
	cfg.node = NULL;
	ck_assert_ptr_null(rpc_handlers_new(&loop, &cfg, err, sizeof(err)));
	ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

/* ---- argument conversions ---- */

static void roundtrip(const char *json, const char *expect)
{
	struct rpc_buf b = { 0 };
	char err[256] = "";
	char *out = NULL;
	size_t len = 0;

	ck_assert_msg(rpc_args_from_json(json, &b, err, sizeof(err)) == 0, "%s: %s", json, err);
	ck_assert_msg(rpc_args_to_json(b.data, b.len, &out, &len, err, sizeof(err)) == 0, "%s: %s",
		      json, err);
	ck_assert_str_eq(out, expect);
	ck_assert_uint_eq(len, strlen(expect));
	free(out);
	rpc_buf_free(&b);
}

static void to_json_fails(const uint8_t *mp, size_t len, const char *why)
{
	char err[256] = "";
	char *out = (char *)1;

	ck_assert_int_eq(rpc_args_to_json(mp, len, &out, NULL, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_null(out);
	ck_assert_msg(strstr(err, why) != NULL, "%s", err);
}

START_TEST(test_args)
{
	struct rpc_buf b = { 0 };
	char err[256], deep[200] = "";
	char *out;

	roundtrip(NULL, "[]");
	roundtrip("", "[]");
	roundtrip(" [ ] ", "[]");
	roundtrip("[\"hello\"]", "[\"hello\"]");
	roundtrip("[\"h\\u00e9llo \\u2713 \\ud83d\\ude00\",\"a\\u0000b\"]",
		  "[\"héllo ✓ 😀\",\"a\\u0000b\"]");
	roundtrip("[{\"k\":[1,-2,3.5,true,false,null,{\"n\":{}}],\"é\":\"\"}]",
		  "[{\"k\":[1,-2,3.5,true,false,null,{\"n\":{}}],\"é\":\"\"}]");
	roundtrip("[9223372036854775807,-9223372036854775808]",
		  "[9223372036854775807,-9223372036854775808]");

	/* msgpack -> JSON for what JSON -> msgpack never makes. */
	{
		static const uint8_t u64max[] = { 0x91, 0xcf, 0xff, 0xff, 0xff, 0xff,
						  0xff, 0xff, 0xff, 0xff };
		static const uint8_t binstr[] = { 0x91, 0xc4, 0x02, 'o', 'k' };

		ck_assert_int_eq(rpc_args_to_json(u64max, sizeof(u64max), &out, NULL, NULL, 0), 0);
		ck_assert_str_eq(out, "[1.8446744073709552e19]");
		free(out);
		ck_assert_int_eq(rpc_args_to_json(binstr, sizeof(binstr), &out, NULL, NULL, 0), 0);
		ck_assert_str_eq(out, "[\"ok\"]");
		free(out);
	}
	{
		static const uint8_t trunc[] = { 0x92, 0x01 };
		static const uint8_t huge[] = { 0xdd, 0xff, 0xff, 0xff, 0xff };
		static const uint8_t hugestr[] = { 0x91, 0xdb, 0x7f, 0xff, 0xff, 0xff };
		static const uint8_t scalar[] = { 0x01 };
		static const uint8_t trailing[] = { 0x90, 0x90 };
		static const uint8_t badutf8[] = { 0x91, 0xa1, 0xff };
		static const uint8_t intkey[] = { 0x91, 0x81, 0x01, 0x02 };
		static const uint8_t ext[] = { 0x91, 0xd4, 0x01, 0x02 };
		static const uint8_t c1[] = { 0x91, 0xc1 };
		static const uint8_t nan[] = { 0x91, 0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0 };
		uint8_t nest[64];

		to_json_fails(trunc, sizeof(trunc), "truncated");
		to_json_fails(huge, sizeof(huge), "truncated");
		to_json_fails(hugestr, sizeof(hugestr), "truncated");
		to_json_fails(scalar, sizeof(scalar), "should be an array");
		to_json_fails(trailing, sizeof(trailing), "1 trailing bytes");
		to_json_fails(badutf8, sizeof(badutf8), "not UTF-8");
		to_json_fails(intkey, sizeof(intkey), "key is not a string");
		to_json_fails(ext, sizeof(ext), "ext");
		to_json_fails(c1, sizeof(c1), "invalid msgpack byte 0xc1");
		to_json_fails(nan, sizeof(nan), "NaN");
		memset(nest, 0x91, sizeof(nest));
		nest[sizeof(nest) - 1] = 0x90;
		to_json_fails(nest, sizeof(nest), "");
	}

	/* JSON -> msgpack refusals; @b untouched. */
	ck_assert_int_eq(rpc_args_from_json("{}", &b, err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "args should be a JSON array");
	ck_assert_int_eq(rpc_args_from_json("[1,", &b, err, sizeof(err)), -EINVAL);
	ck_assert(strncmp(err, "args are not valid JSON", 23) == 0);
	ck_assert_int_eq(rpc_args_from_json("\"x\"", &b, err, sizeof(err)), -EINVAL);
	for (int i = 0; i < 40; i++)
		strcat(deep, "[");
	for (int i = 0; i < 40; i++)
		strcat(deep, "]");
	ck_assert_int_eq(rpc_args_from_json(deep, &b, err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "args are nested deeper than 32");
	ck_assert_uint_eq(b.len, 0);

	/* Appends: two arrays back to back. */
	ck_assert_int_eq(rpc_args_from_json("[1]", &b, NULL, 0), 0);
	ck_assert_int_eq(rpc_args_from_json("[2]", &b, NULL, 0), 0);
	ck_assert_uint_eq(b.len, 4);
	ck_assert_int_eq(b.data[2], 0x91);
	rpc_buf_free(&b);

	/* Too big for a request. */
	{
		size_t n = RPC_BODY_MAX + 16;
		char *big = malloc(n + 5);

		ck_assert_ptr_nonnull(big);
		memcpy(big, "[\"", 2);
		memset(big + 2, 'x', n - 4);
		memcpy(big + n - 2, "\"]", 3);
		ck_assert_int_eq(rpc_args_from_json(big, &b, err, sizeof(err)), -EMSGSIZE);
		ck_assert_uint_eq(b.len, 0);
		free(big);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("handlers");
	TCase *tc = tcase_create("handlers");
	SRunner *sr;
	int failed;

	/* As the agent does: a handler that does not read stdin must not kill us. */
	signal(SIGPIPE, SIG_IGN);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_builtins);
	tcase_add_test(tc, test_no_such_method);
	tcase_add_test(tc, test_bad_args);
	tcase_add_test(tc, test_exec_ok);
	tcase_add_test(tc, test_exec_fails);
	tcase_add_test(tc, test_exec_deadline);
	tcase_add_test(tc, test_exec_cancel);
	tcase_add_test(tc, test_exec_close_kills);
	tcase_add_test(tc, test_exec_oversize);
	tcase_add_test(tc, test_overloaded);
	tcase_add_test(tc, test_upstream);
	tcase_add_test(tc, test_config_errors);
	tcase_add_test(tc, test_args);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
