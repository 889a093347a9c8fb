/*
 * tests/unit/test_transport.c - gossip/transport.c on real sockets: two
 * transports on 127.0.0.1 (port 0), each driving a real core ("local"
 * profile), on one libuv loop.
 *
 * Joining through push-pull, and what the transport must refuse before
 * the core ever sees it: a datagram under another key, a datagram sealed
 * under our own name, a TCP frame announcing more than frame_max, a TCP
 * peer that never speaks, a push-pull to a closed port.
 *
 * No uv_run() here can block: the loop runs one iteration at a time
 * (a 10 ms pulse timer guarantees each returns) until the condition holds
 * or a 5 s deadline passes, and a missed deadline fails the test.  Every
 * test closes everything it opened and asserts uv_loop_close() == 0.
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
#include "lib/clock.h"
#include "lib/log.h"
#include "tests/unit/uv_testutil.h"

#define DEADLINE_MS 5000
#define SEED 20261121ULL
#define SECRET "test-transport secret"

static uv_loop_t loop;
static uv_timer_t pulse;

struct node {
	const char *name;
	struct seal *seal;
	struct transport *tr;
	struct gossip *g;
	char addr[GOSSIP_ADDR_MAX + 1];
	int port;
	/* the last GOSSIP_EV_SYNC */
	size_t syncs;
	uint64_t sync_id;
	bool sync_ok, sync_join;
};

/* A raw TCP peer on the loop, to misbehave at the transport. */
struct client {
	uv_tcp_t tcp;
	uv_connect_t connect_req;
	uv_write_t write_req;
	uint8_t out[256];
	size_t out_len;
	uint8_t in[256];
	size_t got;
	bool open, closed;        /* handle initialised / the peer ended it */
	ssize_t end;              /* UV_EOF, UV_ECONNRESET, ... */
	uint64_t closed_ns;
};

/* ------------------------------------------------------------------ */
/* The loop, bounded                                                   */
/* ------------------------------------------------------------------ */

static void loop_start(void)
{
	test_loop_open(&loop, &pulse);
}

/* Runs the loop until @done(@ctx) or @ms pass; returns whether it held. */
static bool run_until(bool (*done)(void *ctx), void *ctx, uint64_t ms)
{
	return test_run_until(&loop, done, ctx, ms);
}

/* Runs the loop for @ms whatever happens. */
static void run_for(uint64_t ms)
{
	test_run_for(&loop, ms);
}

/* ------------------------------------------------------------------ */
/* Nodes                                                               */
/* ------------------------------------------------------------------ */

static void on_event(void *ctx, const struct gossip_event *ev)
{
	struct node *n = ctx;

	if (ev->type != GOSSIP_EV_SYNC)
		return;
	n->syncs++;
	n->sync_id = ev->stream_id;
	n->sync_ok = ev->ok;
	n->sync_join = ev->join;
}

static void node_start(struct node *n, const char *name, uint32_t frame_max,
		       uint32_t stream_timeout_ms)
{
	struct transport_config tcfg = { 0 };
	struct gossip_config cfg;
	struct gossip_env env;
	uint8_t key[SEAL_KEY_BYTES];

	memset(n, 0, sizeof(*n));
	n->name = name;
	n->seal = seal_new(SEAL_WINDOW_MS_DEFAULT, 1024);
	ck_assert_ptr_nonnull(n->seal);
	ck_assert_int_eq(seal_derive_key(SECRET, key), 0);
	ck_assert_int_eq(seal_key_add(n->seal, key), 0);

	tcfg.bind = "127.0.0.1:0";
	tcfg.name = name;
	tcfg.seal = n->seal;
	tcfg.frame_max = frame_max;
	tcfg.stream_timeout_ms = stream_timeout_ms;
	tcfg.max_inbound = 8;
	ck_assert_int_eq(transport_new(&loop, &tcfg, &n->tr), 0);
	n->port = transport_port(n->tr);
	ck_assert_int_gt(n->port, 0);
	snprintf(n->addr, sizeof(n->addr), "127.0.0.1:%d", n->port);

	ck_assert_int_eq(gossip_config_profile(&cfg, "local"), 0);
	snprintf(cfg.name, sizeof(cfg.name), "%s", name);
	snprintf(cfg.addr, sizeof(cfg.addr), "%s", n->addr);
	cfg.id = 1000 + (uint64_t)name[0];
	cfg.seed = SEED + (uint64_t)name[0];
	ck_assert_int_eq(gossip_tags_set(&cfg.tags, "region", "local"), 0);
	env = transport_env(n->tr, on_event, n);
	n->g = gossip_new(&cfg, &env, uv_now(&loop));
	ck_assert_ptr_nonnull(n->g);
	transport_attach(n->tr, n->g);
}

static struct transport_stats node_stats(const struct node *n)
{
	struct transport_stats s;

	transport_stats_get(n->tr, &s);
	return s;
}

static void client_closed(uv_handle_t *h)
{
	(void)h;
}

/* Closes every node and client, lets libuv finish, and checks that the
 * loop holds nothing any more. */
static void loop_finish(struct node *nodes, size_t nnodes, struct client *clients,
			size_t nclients)
{
	for (size_t i = 0; i < nnodes; i++)
		transport_close(nodes[i].tr);
	for (size_t i = 0; i < nclients; i++)
		if (clients[i].open && !uv_is_closing((uv_handle_t *)&clients[i].tcp))
			uv_close((uv_handle_t *)&clients[i].tcp, client_closed);
	test_loop_close(&loop, &pulse, DEADLINE_MS);
	for (size_t i = 0; i < nnodes; i++) {
		gossip_delete(nodes[i].g);
		seal_delete(nodes[i].seal);
	}
}

/* ------------------------------------------------------------------ */
/* Raw peers                                                           */
/* ------------------------------------------------------------------ */

/* Sends @len bytes in one datagram to 127.0.0.1:@port, from a throw-away
 * socket outside the loop. */
static void udp_send_raw(int port, const uint8_t *buf, size_t len)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	ck_assert_int_ge(fd, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(sendto(fd, buf, len, 0, (struct sockaddr *)&sa, sizeof(sa)),
			 (ssize_t)len);
	close(fd);
}

/* Seals @plain under @secret as @sender, the way a peer would. */
static size_t seal_as(const char *secret, const char *sender, const uint8_t *plain, size_t len,
		      uint8_t *out, size_t cap)
{
	struct seal *s = seal_new(SEAL_WINDOW_MS_DEFAULT, 16);
	uint8_t key[SEAL_KEY_BYTES];
	long n;

	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(seal_derive_key(secret, key), 0);
	ck_assert_int_eq(seal_key_add(s, key), 0);
	n = seal_seal(s, sender, clock_wall_ms(), plain, len, out, cap);
	seal_delete(s);
	ck_assert_int_gt(n, 0);
	return (size_t)n;
}

static void client_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct client *c = h->data;

	(void)suggested;
	*buf = uv_buf_init((char *)c->in, sizeof(c->in));
}

static void client_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct client *c = s->data;

	(void)buf;
	if (nread > 0) {
		c->got += (size_t)nread;
	} else if (nread < 0 && !c->closed) {
		c->closed = true;
		c->end = nread;
		c->closed_ns = uv_hrtime();
		uv_close((uv_handle_t *)&c->tcp, client_closed);
	}
}

static void client_written(uv_write_t *req, int status)
{
	(void)req;
	(void)status;   /* the peer may hang up first: that is the point */
}

static void client_connected(uv_connect_t *req, int status)
{
	struct client *c = req->data;
	uv_buf_t b = uv_buf_init((char *)c->out, (unsigned)c->out_len);

	if (status < 0) {
		c->closed = true;
		c->end = status;
		c->closed_ns = uv_hrtime();
		return;
	}
	if (c->out_len)
		ck_assert_int_eq(uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &b, 1,
					  client_written), 0);
	ck_assert_int_eq(uv_read_start((uv_stream_t *)&c->tcp, client_alloc, client_read), 0);
}

/* Connects to 127.0.0.1:@port and sends @len bytes of @data once there. */
static void client_start(struct client *c, int port, const uint8_t *data, size_t len)
{
	struct sockaddr_in sa;

	memset(c, 0, sizeof(*c));
	ck_assert_uint_le(len, sizeof(c->out));
	if (len)
		memcpy(c->out, data, len);
	c->out_len = len;
	c->tcp.data = c;
	c->connect_req.data = c;
	ck_assert_int_eq(uv_tcp_init(&loop, &c->tcp), 0);
	c->open = true;
	ck_assert_int_eq(uv_ip4_addr("127.0.0.1", port, &sa), 0);
	ck_assert_int_eq(uv_tcp_connect(&c->connect_req, &c->tcp, (struct sockaddr *)&sa,
					client_connected), 0);
}

/* ------------------------------------------------------------------ */
/* Conditions                                                          */
/* ------------------------------------------------------------------ */

static bool sees_alive(const struct node *n, const char *name)
{
	const struct gossip_member *m = gossip_member_find(n->g, name);

	return m && gossip_member_status(m) == GOSSIP_ALIVE;
}

static bool pair_joined(void *ctx)
{
	struct node *n = ctx;

	return n[1].syncs > 0 && sees_alive(&n[0], n[1].name) && sees_alive(&n[1], n[0].name);
}

static bool node_synced(void *ctx)
{
	return ((struct node *)ctx)->syncs > 0;
}

static bool client_ended(void *ctx)
{
	return ((struct client *)ctx)->closed;
}

struct count_wait {
	const struct node *n;
	enum seal_err reason;   /* SEAL_OK: sender_mismatch instead */
	uint64_t want;
};

static bool count_reached(void *ctx)
{
	struct count_wait *w = ctx;

	if (w->reason == SEAL_OK)
		return node_stats(w->n).sender_mismatch >= w->want;
	return seal_count(w->n->seal, w->reason) >= w->want;
}

/* ------------------------------------------------------------------ */
/* Tests                                                               */
/* ------------------------------------------------------------------ */

START_TEST(join_through_pushpull)
{
	struct node n[2];
	uint64_t id;

	loop_start();
	node_start(&n[0], "a", 64 * 1024, 2000);
	node_start(&n[1], "b", 64 * 1024, 2000);
	id = gossip_join(n[1].g, n[0].addr, uv_now(&loop));
	ck_assert_uint_ne(id, 0);
	transport_kick(n[1].tr);
	ck_assert_msg(run_until(pair_joined, n, DEADLINE_MS),
		      "a and b did not see each other alive within %d ms", DEADLINE_MS);
	ck_assert_uint_eq(n[1].sync_id, id);
	ck_assert(n[1].sync_ok);
	ck_assert(n[1].sync_join);
	ck_assert_str_eq(gossip_member_addr(gossip_member_find(n[0].g, "b")), n[1].addr);
	ck_assert_str_eq(gossip_member_addr(gossip_member_find(n[1].g, "a")), n[0].addr);
	ck_assert_uint_gt(node_stats(&n[0]).tcp_in_bytes, 0);
	ck_assert_uint_gt(node_stats(&n[1]).tcp_in_bytes, 0);

	/* Then they keep probing each other over UDP. */
	run_for(1500);
	ck_assert(sees_alive(&n[0], "b") && sees_alive(&n[1], "a"));
	ck_assert_uint_gt(node_stats(&n[0]).udp_in_packets, 0);
	ck_assert_uint_gt(node_stats(&n[1]).udp_in_packets, 0);
	ck_assert_uint_eq(node_stats(&n[0]).sender_mismatch, 0);
	loop_finish(n, 2, NULL, 0);
}
END_TEST

START_TEST(datagram_under_another_key)
{
	static const uint8_t plain[] = "not for you";
	struct node n[1];
	uint8_t sealed[256];
	struct gossip_stats gs;
	size_t len;

	loop_start();
	node_start(&n[0], "a", 64 * 1024, 2000);
	len = seal_as("another cluster's secret", "intruder", plain, sizeof(plain), sealed,
		      sizeof(sealed));
	udp_send_raw(n[0].port, sealed, len);
	struct count_wait w = { &n[0], SEAL_ERR_BAD_KEY, 1 };

	ck_assert_msg(run_until(count_reached, &w, DEADLINE_MS), "no bad_key counted");
	ck_assert_uint_eq(seal_count(n[0].seal, SEAL_ERR_BAD_KEY), 1);
	ck_assert_uint_eq(seal_count(n[0].seal, SEAL_OK), 0);
	ck_assert_uint_eq(node_stats(&n[0]).udp_in_packets, 1);
	gossip_stats_get(n[0].g, &gs);
	ck_assert_uint_eq(gs.packets_received, 0);   /* the core never saw it */
	ck_assert_ptr_null(gossip_member_find(n[0].g, "intruder"));
	ck_assert_uint_eq(gossip_member_count(n[0].g), 1);
	loop_finish(n, 1, NULL, 0);
}
END_TEST

START_TEST(datagram_under_our_own_name)
{
	static const uint8_t plain[] = "echo";
	struct node n[1];
	uint8_t sealed[256];
	struct gossip_stats gs;
	size_t len;

	loop_start();
	node_start(&n[0], "a", 64 * 1024, 2000);
	/* The right key, but our own name: a reflection or an impostor. */
	len = seal_as(SECRET, "a", plain, sizeof(plain), sealed, sizeof(sealed));
	udp_send_raw(n[0].port, sealed, len);
	struct count_wait w = { &n[0], SEAL_OK, 1 };

	ck_assert_msg(run_until(count_reached, &w, DEADLINE_MS), "no sender_mismatch counted");
	ck_assert_uint_eq(node_stats(&n[0]).sender_mismatch, 1);
	ck_assert_uint_eq(seal_count(n[0].seal, SEAL_OK), 1);   /* it did open */
	/* A name no node can have is refused the same way. */
	len = seal_as(SECRET, "bad name", plain, sizeof(plain), sealed, sizeof(sealed));
	udp_send_raw(n[0].port, sealed, len);
	w.want = 2;
	ck_assert_msg(run_until(count_reached, &w, DEADLINE_MS), "invalid name not refused");
	gossip_stats_get(n[0].g, &gs);
	ck_assert_uint_eq(gs.packets_received, 0);
	ck_assert_uint_eq(gossip_member_count(n[0].g), 1);
	loop_finish(n, 1, NULL, 0);
}
END_TEST

START_TEST(frame_over_frame_max_refused)
{
	enum { FRAME_MAX = 4096 };
	struct node n[1];
	struct client c[2];
	uint8_t data[4 + 100];
	uint32_t len = FRAME_MAX + 1;
	struct transport_stats s;

	loop_start();
	/* A long stream deadline: closing before it proves the header alone
	 * decided. */
	node_start(&n[0], "a", FRAME_MAX, 60000);
	data[0] = (uint8_t)(len >> 24);
	data[1] = (uint8_t)(len >> 16);
	data[2] = (uint8_t)(len >> 8);
	data[3] = (uint8_t)len;
	memset(data + 4, 0xAB, sizeof(data) - 4);   /* the start of a body */
	client_start(&c[0], n[0].port, data, sizeof(data));
	ck_assert_msg(run_until(client_ended, &c[0], DEADLINE_MS),
		      "the connection was not closed within %d ms", DEADLINE_MS);
	ck_assert(c[0].end == UV_EOF || c[0].end == UV_ECONNRESET);
	s = node_stats(&n[0]);
	ck_assert_uint_eq(s.dropped[SEAL_ERR_TOO_LARGE], 1);
	ck_assert_uint_eq(s.tcp_in_bytes, 4);   /* the header, not one body byte */
	ck_assert_uint_eq(c[0].got, 0);         /* and no answer */

	/* Exactly frame_max passes the header check (then waits for a body). */
	len = FRAME_MAX;
	data[0] = (uint8_t)(len >> 24);
	data[1] = (uint8_t)(len >> 16);
	data[2] = (uint8_t)(len >> 8);
	data[3] = (uint8_t)len;
	client_start(&c[1], n[0].port, data, 4);
	run_for(300);
	ck_assert(!c[1].closed);
	ck_assert_uint_eq(node_stats(&n[0]).dropped[SEAL_ERR_TOO_LARGE], 1);
	ck_assert_uint_eq(node_stats(&n[0]).tcp_in_bytes, 8);
	loop_finish(n, 1, c, 2);
}
END_TEST

START_TEST(silent_peer_closed_at_deadline)
{
	enum { TIMEOUT_MS = 400 };
	struct node n[1];
	struct client c[1];
	uint64_t t0, elapsed_ms;

	loop_start();
	node_start(&n[0], "a", 64 * 1024, TIMEOUT_MS);
	t0 = uv_hrtime();
	client_start(&c[0], n[0].port, NULL, 0);
	ck_assert_msg(run_until(client_ended, &c[0], DEADLINE_MS),
		      "a silent peer was not closed within %d ms", DEADLINE_MS);
	elapsed_ms = (c[0].closed_ns - t0) / 1000000ULL;
	printf("silent peer closed after %llu ms (deadline %d ms)\n",
	       (unsigned long long)elapsed_ms, TIMEOUT_MS);
	/* Not before the deadline (the timer starts at the accept, after t0;
	 * allow a few ms for libuv's whole-ms and possibly coarse loop clock),
	 * and by it plus the test's generous bound. */
	ck_assert_uint_ge(elapsed_ms, TIMEOUT_MS - 5);
	ck_assert_int_eq(c[0].end, UV_EOF);
	ck_assert_uint_eq(c[0].got, 0);
	ck_assert_uint_eq(node_stats(&n[0]).tcp_in_bytes, 0);
	loop_finish(n, 1, c, 1);
}
END_TEST

START_TEST(stream_to_closed_port_fails)
{
	struct node n[1];
	char addr[GOSSIP_ADDR_MAX + 1];
	uint64_t id;

	loop_start();
	node_start(&n[0], "a", 64 * 1024, 2000);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", test_closed_port());
	id = gossip_join(n[0].g, addr, uv_now(&loop));
	ck_assert_uint_ne(id, 0);
	transport_kick(n[0].tr);
	ck_assert_msg(run_until(node_synced, &n[0], DEADLINE_MS),
		      "no SYNC event for a join through %s", addr);
	ck_assert_uint_eq(n[0].syncs, 1);
	ck_assert_uint_eq(n[0].sync_id, id);
	ck_assert(!n[0].sync_ok);
	ck_assert(n[0].sync_join);
	ck_assert_uint_eq(node_stats(&n[0]).streams_failed, 1);
	ck_assert_uint_eq(gossip_member_count(n[0].g), 1);
	loop_finish(n, 1, NULL, 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("transport");
	TCase *tc = tcase_create("transport");
	SRunner *sr;
	int failed;

	/* Dropped packets are logged as warnings; the counters are the test. */
	log_set_level(LOG_ERROR);
	printf("test_transport: core seeds %llu + name\n", (unsigned long long)SEED);
	tcase_add_test(tc, join_through_pushpull);
	tcase_add_test(tc, datagram_under_another_key);
	tcase_add_test(tc, datagram_under_our_own_name);
	tcase_add_test(tc, frame_over_frame_max_refused);
	tcase_add_test(tc, silent_peer_closed_at_deadline);
	tcase_add_test(tc, stream_to_closed_port_fails);
	tcase_set_timeout(tc, 30);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
