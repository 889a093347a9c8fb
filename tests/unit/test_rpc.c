/*
 * tests/unit/test_rpc.c - region/rpc.c on real sockets: two transports
 * (each driving a real core, "local" profile) on 127.0.0.1 port 0, on one
 * libuv loop; node "a" calls, node "b" serves through a fake method runner
 * (rpc_serve_ops): "echo" answers at once, "slow" after SLOW_MS from a
 * uv_timer, "never" never answers (only a cancel ends it), anything else is
 * no_such_method.
 *
 * Covered: a round trip; 100 calls in flight at once on one connection;
 * the caller's deadline (timeout, and the server's job cancelled by the
 * cancel frame); a leaving server (unavailable with its retry-after); the
 * server's in-flight bound (overloaded); a hand-made frame of version 99
 * (answered version_mismatch under its id, connection kept); garbage
 * (bad_request, never a crash); the server killed mid-call (the call fails
 * promptly as connection_lost); a refused connect (not sent); drain;
 * metrics text.
 *
 * No uv_run() can block: the loop runs one iteration at a time (a 10 ms
 * pulse timer makes each return) until the condition holds or a 5 s
 * deadline passes.  Every test closes what it opened and asserts
 * uv_loop_close() == 0.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "gossip/gossip.h"
#include "gossip/seal.h"
#include "gossip/transport.h"
#include "region/rpc.h"
#include "region/rpc_proto.h"
#include "region/rpc_serve.h"
#include "tests/unit/uv_testutil.h"

#define DEADLINE_MS 5000
#define SLOW_MS 50
#define SEED 20261122ULL
#define SECRET "test-rpc secret"

static uv_loop_t loop;
static uv_timer_t pulse;

struct node {
	const char *name;
	struct seal *seal;
	struct transport *tr;
	struct gossip *g;
	char addr[GOSSIP_ADDR_MAX + 1];
};

/* The fake method runner's record. */
struct fake {
	int started, replied, cancelled, running, max_running;
};

struct fake_job {
	uv_timer_t timer;
	struct fake *f;
	rpc_reply_fn reply;
	void *reply_ctx;
};

/* One call's outcome, as the callback saw it. */
struct outcome {
	bool done;
	enum rpc_status status;
	enum rpc_error error;
	bool sent;
	uint32_t retry_after_ms;
	char result[64];
	char node[RPC_NODE_MAX + 1];
	char message[256];
	uint64_t done_ns;
};

static struct node a, b;
static struct fake fake;
static struct rpc_server *server;
static struct rpc_client *client;
static struct rpc_metrics *metrics;

/* ------------------------------------------------------------------ */
/* The loop, bounded                                                   */
/* ------------------------------------------------------------------ */

static bool run_until(bool (*done)(void *ctx), void *ctx, uint64_t ms)
{
	return test_run_until(&loop, done, ctx, ms);
}

static bool is_done(void *ctx)
{
	return ((struct outcome *)ctx)->done;
}

static int want_count;
static bool all_done_n(void *ctx)
{
	struct outcome *o = ctx;

	for (int i = 0; i < want_count; i++)
		if (!o[i].done)
			return false;
	return true;
}

static bool int_reached(void *ctx)
{
	return *(int *)ctx >= want_count;
}

/* ------------------------------------------------------------------ */
/* The fake method runner                                              */
/* ------------------------------------------------------------------ */

static void fake_job_closed(uv_handle_t *h)
{
	free(h->data);
}

static void fake_job_end(struct fake_job *j)
{
	j->f->running--;
	uv_close((uv_handle_t *)&j->timer, fake_job_closed);
}

static void slow_fired(uv_timer_t *h)
{
	struct fake_job *j = h->data;
	struct rpc_serve_reply r = { .result = (const uint8_t *)"\"slow\"", .result_len = 6 };

	j->f->replied++;
	j->reply(j->reply_ctx, &r);
	fake_job_end(j);
}

static int fake_start(void *ctx, const struct rpc_serve_call *call, rpc_reply_fn reply,
		      void *reply_ctx, void **job)
{
	struct fake *f = ctx;
	struct fake_job *j;

	*job = NULL;
	f->started++;
	if (strcmp(call->method, "echo") == 0) {
		struct rpc_serve_reply r = { .result = call->args, .result_len = call->args_len };

		f->replied++;
		reply(reply_ctx, &r);
		return 0;
	}
	if (strcmp(call->method, "slow") != 0 && strcmp(call->method, "never") != 0) {
		struct rpc_serve_reply r = { .error = RPC_E_NO_SUCH_METHOD,
					     .message = "no such method" };

		reply(reply_ctx, &r);
		return -ENOENT;
	}
	j = calloc(1, sizeof(*j));
	ck_assert_ptr_nonnull(j);
	j->f = f;
	j->reply = reply;
	j->reply_ctx = reply_ctx;
	j->timer.data = j;
	uv_timer_init(&loop, &j->timer);
	if (strcmp(call->method, "slow") == 0)
		uv_timer_start(&j->timer, slow_fired, SLOW_MS, 0);
	if (++f->running > f->max_running)
		f->max_running = f->running;
	*job = j;
	return 0;
}

static void fake_cancel(void *ctx, void *job)
{
	struct fake *f = ctx;

	f->cancelled++;
	fake_job_end(job);
}

/* ------------------------------------------------------------------ */
/* Nodes, server, client                                               */
/* ------------------------------------------------------------------ */

static void node_start(struct node *n, const char *name)
{
	struct transport_config tcfg = { 0 };
	struct gossip_config cfg;
	struct gossip_env env;
	uint8_t key[SEAL_KEY_BYTES];

	memset(n, 0, sizeof(*n));
	n->name = name;
	n->seal = seal_new(SEAL_WINDOW_MS_DEFAULT, 4096);
	ck_assert_ptr_nonnull(n->seal);
	ck_assert_int_eq(seal_derive_key(SECRET, key), 0);
	ck_assert_int_eq(seal_key_add(n->seal, key), 0);
	tcfg.bind = "127.0.0.1:0";
	tcfg.name = name;
	tcfg.seal = n->seal;
	tcfg.max_inbound = 8;
	ck_assert_int_eq(transport_new(&loop, &tcfg, &n->tr), 0);
	snprintf(n->addr, sizeof(n->addr), "127.0.0.1:%d", transport_port(n->tr));

	ck_assert_int_eq(gossip_config_profile(&cfg, "local"), 0);
	snprintf(cfg.name, sizeof(cfg.name), "%s", name);
	snprintf(cfg.addr, sizeof(cfg.addr), "%s", n->addr);
	cfg.id = 2000 + (uint64_t)name[0];
	cfg.seed = SEED + (uint64_t)name[0];
	ck_assert_int_eq(gossip_tags_set(&cfg.tags, "region", "local"), 0);
	env = transport_env(n->tr, NULL, NULL);
	n->g = gossip_new(&cfg, &env, uv_now(&loop));
	ck_assert_ptr_nonnull(n->g);
	transport_attach(n->tr, n->g);
}

static void setup(uint32_t server_max_inflight)
{
	struct rpc_serve_ops ops = { .ctx = &fake, .start = fake_start, .cancel = fake_cancel };
	struct rpc_server_config scfg = { .node = "b", .version = "0.1.0-test",
					  .max_inflight = server_max_inflight };
	struct rpc_client_config ccfg = { .node = "a", .region = "fra" };

	printf("seed %llu\n", (unsigned long long)SEED);
	memset(&fake, 0, sizeof(fake));
	test_loop_open(&loop, &pulse);
	node_start(&a, "a");
	node_start(&b, "b");
	metrics = rpc_metrics_new();
	ck_assert_ptr_nonnull(metrics);
	ck_assert_int_eq(rpc_server_new(&loop, b.tr, &scfg, &ops, metrics, &server), 0);
	ck_assert_int_eq(rpc_client_new(&loop, a.tr, &ccfg, metrics, &client), 0);
}

static void teardown(void)
{
	rpc_client_close(client);
	rpc_server_close(server);
	if (a.tr)
		transport_close(a.tr);
	if (b.tr)
		transport_close(b.tr);
	test_loop_close(&loop, &pulse, DEADLINE_MS);
	gossip_delete(a.g);
	gossip_delete(b.g);
	seal_delete(a.seal);
	seal_delete(b.seal);
	rpc_metrics_free(metrics);
	client = NULL;
	server = NULL;
}

static void on_result(void *ctx, const struct rpc_result *r)
{
	struct outcome *o = ctx;

	ck_assert(!o->done);
	o->done = true;
	o->status = r->status;
	o->error = r->error;
	o->sent = r->sent;
	o->retry_after_ms = r->retry_after_ms;
	o->done_ns = uv_hrtime();
	snprintf(o->result, sizeof(o->result), "%.*s", (int)r->result_len,
		 r->result ? (const char *)r->result : "");
	snprintf(o->node, sizeof(o->node), "%s", r->node);
	snprintf(o->message, sizeof(o->message), "%s", r->message);
	ck_assert_ptr_nonnull(r->code);
}

static void call_b(const char *method, uint32_t deadline_ms, struct outcome *o)
{
	memset(o, 0, sizeof(*o));
	ck_assert_int_eq(rpc_client_call(client, "b", b.addr, method, (const uint8_t *)"\xa2hi", 3,
					 deadline_ms, on_result, o), 0);
}

/* ------------------------------------------------------------------ */
/* Tests                                                               */
/* ------------------------------------------------------------------ */

START_TEST(test_round_trip)
{
	struct outcome o;

	setup(0);
	call_b("echo", 2000, &o);
	ck_assert(run_until(is_done, &o, DEADLINE_MS));
	ck_assert_int_eq(o.status, RPC_OK);
	ck_assert(o.sent);
	ck_assert_str_eq(o.result, "\xa2hi");
	ck_assert_str_eq(o.node, "b");

	call_b("nope", 2000, &o);
	ck_assert(run_until(is_done, &o, DEADLINE_MS));
	ck_assert_int_eq(o.status, RPC_FAILED);
	ck_assert_int_eq(o.error, RPC_E_NO_SUCH_METHOD);
	ck_assert_int_eq(rpc_client_connections(client), 1);
	teardown();
}
END_TEST

START_TEST(test_multiplexed)
{
	static struct outcome o[100];

	setup(0);
	for (int i = 0; i < 100; i++)
		call_b("slow", 3000, &o[i]);
	ck_assert_int_eq(rpc_client_inflight(client), 100);
	want_count = 100;
	ck_assert(run_until(all_done_n, o, DEADLINE_MS));
	for (int i = 0; i < 100; i++) {
		ck_assert_int_eq(o[i].status, RPC_OK);
		ck_assert_str_eq(o[i].result, "\"slow\"");
	}
	/* One connection carried them, and they ran side by side. */
	ck_assert_int_eq(rpc_client_connections(client), 1);
	ck_assert_int_eq(fake.max_running, 100);
	ck_assert_int_eq(rpc_client_inflight(client), 0);
	teardown();
}
END_TEST

START_TEST(test_deadline)
{
	struct outcome o;

	setup(0);
	call_b("never", 100, &o);
	ck_assert(run_until(is_done, &o, DEADLINE_MS));
	ck_assert_int_eq(o.status, RPC_FAILED);
	ck_assert_int_eq(o.error, RPC_E_TIMEOUT);
	ck_assert(o.sent);
	/* The cancel frame reaches the server, which cancels its job. */
	want_count = 1;
	ck_assert(run_until(int_reached, &fake.cancelled, DEADLINE_MS));
	ck_assert_int_eq(rpc_server_inflight(server), 0);
	ck_assert_int_eq(fake.running, 0);
	teardown();
}
END_TEST

START_TEST(test_leaving)
{
	struct outcome o;

	setup(0);
	rpc_server_set_leaving(server, true, 1500);
	call_b("echo", 2000, &o);
	ck_assert(run_until(is_done, &o, DEADLINE_MS));
	ck_assert_int_eq(o.status, RPC_FAILED);
	ck_assert_int_eq(o.error, RPC_E_UNAVAILABLE);
	ck_assert_int_eq(o.retry_after_ms, 1500);
	ck_assert(strstr(o.message, "leaving") != NULL);
	ck_assert_int_eq(fake.started, 0);
	teardown();
}
END_TEST

START_TEST(test_overloaded)
{
	struct outcome o[3];

	setup(2);
	call_b("never", 3000, &o[0]);
	call_b("never", 3000, &o[1]);
	want_count = 2;
	ck_assert(run_until(int_reached, &fake.started, DEADLINE_MS));
	call_b("echo", 3000, &o[2]);
	ck_assert(run_until(is_done, &o[2], DEADLINE_MS));
	ck_assert_int_eq(o[2].status, RPC_FAILED);
	ck_assert_int_eq(o[2].error, RPC_E_OVERLOADED);
	ck_assert_int_gt(o[2].retry_after_ms, 0);
	ck_assert(!o[0].done && !o[1].done);
	teardown();
	/* closing the client failed the two others, once each */
	ck_assert(o[0].done && o[1].done);
	ck_assert_int_eq(fake.cancelled, 2);
}
END_TEST

/* A raw peer on a's transport, speaking hand-made frames to b. */
struct raw {
	struct transport_stream *st;
	bool open, closed;
	int frames;
	struct rpc_frame f;
	int rc;
	uint8_t buf[4096];
};

static int raw_open(void *ctx, struct transport_stream *s)
{
	(void)s;
	((struct raw *)ctx)->open = true;
	return 0;
}

static void raw_frame(void *ctx, struct transport_stream *s, const uint8_t *plain, size_t len)
{
	struct raw *r = ctx;

	(void)s;
	ck_assert_uint_le(len, sizeof(r->buf));
	memcpy(r->buf, plain, len);
	r->rc = rpc_frame_decode(r->buf, len, &r->f, NULL, 0);
	r->frames++;
}

static void raw_close(void *ctx, struct transport_stream *s, int err)
{
	(void)s;
	(void)err;
	((struct raw *)ctx)->closed = true;
}

static const struct transport_stream_ops raw_ops = { raw_open, raw_frame, raw_close };

static bool raw_frames_reached(void *ctx)
{
	struct raw *r = ctx;

	return r->frames >= want_count || r->closed;
}

START_TEST(test_version_and_garbage)
{
	/* 'R' {v: 99, t: 1, id: 7} */
	static const uint8_t v99[] = { 'R', 0x83, 0xa1, 'v', 99, 0xa1, 't', 1, 0xa2, 'i', 'd', 7 };
	static const uint8_t garbage[] = { 'R', 0xc1, 0xff, 0x00 };
	struct raw r = { 0 };
	struct outcome o;

	setup(0);
	ck_assert_int_eq(transport_stream_open(a.tr, b.addr, &raw_ops, &r, &r.st), 0);
	ck_assert_int_eq(transport_stream_send(r.st, v99, sizeof(v99)), 0);
	want_count = 1;
	ck_assert(run_until(raw_frames_reached, &r, DEADLINE_MS));
	ck_assert(!r.closed);
	ck_assert_int_eq(r.rc, 0);
	ck_assert_int_eq(r.f.type, RPC_T_RESPONSE);
	ck_assert_uint_eq(r.f.u.resp.id, 7);
	ck_assert(!r.f.u.resp.ok);
	ck_assert_int_eq(r.f.u.resp.error, RPC_E_VERSION_MISMATCH);

	ck_assert_int_eq(transport_stream_send(r.st, garbage, sizeof(garbage)), 0);
	want_count = 2;
	ck_assert(run_until(raw_frames_reached, &r, DEADLINE_MS));
	ck_assert(!r.closed);
	ck_assert_int_eq(r.rc, 0);
	ck_assert_uint_eq(r.f.u.resp.id, 0);
	ck_assert_int_eq(r.f.u.resp.error, RPC_E_BAD_REQUEST);

	/* The server is none the worse: a real call still works. */
	call_b("echo", 2000, &o);
	ck_assert(run_until(is_done, &o, DEADLINE_MS));
	ck_assert_int_eq(o.status, RPC_OK);
	transport_stream_close(r.st);
	teardown();
}
END_TEST

START_TEST(test_peer_killed)
{
	struct outcome o;
	uint64_t killed;

	setup(0);
	call_b("never", 30000, &o);
	want_count = 1;
	ck_assert(run_until(int_reached, &fake.started, DEADLINE_MS));
	killed = uv_hrtime();
	rpc_server_close(server);
	server = NULL;
	transport_close(b.tr);
	b.tr = NULL;
	ck_assert(run_until(is_done, &o, DEADLINE_MS));
	ck_assert_int_eq(o.status, RPC_CONN_LOST);
	ck_assert(o.sent);
	ck_assert_uint_lt(o.done_ns - killed, 2000ULL * 1000000ULL);
	ck_assert_int_eq(fake.cancelled, 1);
	teardown();
}
END_TEST

START_TEST(test_connect_refused)
{
	char addr[64];
	struct outcome o;

	setup(0);
	/* A port that was just free: bound, never listened on, closed. */
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", test_closed_port());

	memset(&o, 0, sizeof(o));
	ck_assert_int_eq(rpc_client_call(client, "c", addr, "echo", NULL, 0, 2000, on_result, &o),
			 0);
	ck_assert(run_until(is_done, &o, DEADLINE_MS));
	ck_assert_int_eq(o.status, RPC_NOT_SENT);
	ck_assert(!o.sent);
	ck_assert(strstr(o.message, "not sent") != NULL);
	ck_assert_int_eq(rpc_client_connections(client), 0);
	teardown();
}
END_TEST

static size_t drained = (size_t)-1;

static void on_drained(void *ctx, size_t remaining)
{
	(void)ctx;
	drained = remaining;
}

static bool is_drained(void *ctx)
{
	(void)ctx;
	return drained != (size_t)-1;
}

START_TEST(test_drain_and_metrics)
{
	struct outcome o;
	char *text = NULL;
	size_t len = 0;
	FILE *f;

	setup(0);
	call_b("slow", 2000, &o);
	want_count = 1;
	ck_assert(run_until(int_reached, &fake.started, DEADLINE_MS));
	drained = (size_t)-1;
	rpc_server_drain(server, 3000, on_drained, NULL);
	ck_assert(run_until(is_drained, NULL, DEADLINE_MS));
	ck_assert_uint_eq(drained, 0);
	ck_assert(run_until(is_done, &o, DEADLINE_MS));
	ck_assert_int_eq(o.status, RPC_OK);

	f = open_memstream(&text, &len);
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(rpc_metrics_print(metrics, f), 0);
	fclose(f);
	ck_assert_ptr_nonnull(strstr(text, "meridian_rpc_calls_total{side=\"client\","
				     "method=\"slow\",outcome=\"ok\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(text, "meridian_rpc_calls_total{side=\"server\","
				     "method=\"slow\",outcome=\"ok\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(text, "meridian_rpc_duration_seconds_count{side=\"client\","
				     "method=\"slow\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(text, "le=\"+Inf\"} 1\n"));
	free(text);
	teardown();
}
END_TEST

static Suite *rpc_suite(void)
{
	Suite *s = suite_create("rpc");
	TCase *tc = tcase_create("loopback");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_round_trip);
	tcase_add_test(tc, test_multiplexed);
	tcase_add_test(tc, test_deadline);
	tcase_add_test(tc, test_leaving);
	tcase_add_test(tc, test_overloaded);
	tcase_add_test(tc, test_version_and_garbage);
	tcase_add_test(tc, test_peer_killed);
	tcase_add_test(tc, test_connect_refused);
	tcase_add_test(tc, test_drain_and_metrics);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(rpc_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
