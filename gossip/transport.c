/*
 * gossip/transport.c - the gossip core's seams made real: one UDP socket,
 * one TCP listener and the core's tick timer, all on one libuv loop.
 *
 * Datagrams.  Every gossip packet leaves sealed (gossip/seal.h) under this
 * node's name and the wall clock, in one datagram of at most
 * TRANSPORT_DGRAM_MAX bytes.  The send path allocates nothing: the packet
 * is sealed into a scratch buffer inside the transport and handed to
 * uv_udp_try_send().  Only when the kernel queue is full do we fall back
 * to uv_udp_send() from a fixed pool of SEND_POOL slots; past that the
 * packet is dropped and counted (send_errors): gossip is best effort, and
 * an unbounded queue would only delay information that is stale anyway.
 *
 * On receive a datagram is opened into a second scratch buffer; a failure
 * is dropped, counted by seal's reason and logged (rate-limited) with the
 * source address.  A datagram sealed under our own name is dropped too
 * (sender_mismatch): either a reflection of our own traffic or another
 * process using our name, and in neither case something the core should
 * believe.  What survives goes to gossip_recv_packet() with the sender
 * name seal authenticated and the source "host:port".
 *
 * Streams.  TCP on the same address carries push-pull exchanges, one per
 * connection: [u32 BE length][sealed frame], the first plaintext byte
 * naming the kind ('P').  The length is checked against frame_max before
 * a single body byte is read, so a peer cannot make us allocate more than
 * frame_max per connection, and connections are bounded (max_inbound
 * inbound, OUTBOUND_MAX outbound), so the worst case memory is known.
 * Reads go straight into the header, then into the body buffer, never
 * past the frame.  Every exchange runs under one deadline
 * (stream_timeout_ms) measured from its start, which also ends slow or
 * idle peers.  An outbound request that cannot even start (bound reached,
 * bad address, frame too large) is failed from a zero-delay timer: the
 * core forbids being called back from inside its own env callbacks.
 *
 * Persistent streams.  A layer above registers a handler for a kind byte;
 * an inbound connection whose first frame has that kind becomes a stream
 * handed to it: reading goes on frame after frame (the same header-then-
 * body reads, the same frame_max check), every frame is opened here and
 * must carry the sender name of the first, and the exchange deadline is
 * stopped (the owner knows when a quiet connection is idle and when it is
 * waiting for a slow call).  The connection then leaves the max_inbound
 * count for the max_streams one, so long-lived streams never starve
 * push-pulls.  Outbound streams connect under the exchange deadline and
 * are bounded by their owner.  Sends are sealed at once into their own
 * write request; the bytes queued per stream are bounded.
 *
 * Time.  The core's clock is uv_now(loop): monotonic milliseconds, cached
 * once per loop iteration, which is as precise as the timers that drive
 * it.  After every call into the core the tick timer is re-armed to
 * gossip_next_deadline().  A tick that leaves its deadline in the past is
 * re-armed 1 ms ahead rather than 0: libuv (before 1.45) would run a
 * zero-delay timer restarted from its own callback again in the same pass.
 *
 * Shutdown.  transport_close() closes every handle and never calls the
 * core again; the transport frees itself in the last close callback, so
 * after uv_run() the loop holds nothing of ours and uv_loop_close()
 * succeeds.  The same holds after transport_new() fails: the handles it
 * opened are closing and the caller runs the loop before closing it.
 */
#include "gossip/transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "lib/addr.h"
#include "lib/clock.h"
#include "lib/log.h"

#define TRANSPORT_DGRAM_MAX 1400   /* sealed datagram bound, both ways */
#define SEND_POOL 32               /* queued datagrams when the kernel is full */
#define OUTBOUND_MAX 16            /* concurrent push-pulls we start */
#define DEFER_MAX 64               /* outbound requests failed before starting */
#define TICK_MAX_MS (60 * 1000)    /* re-check the core at least this often */
#define FRAME_HDR 4
#define KIND_PUSHPULL 'P'
#define STREAM_KINDS 4             /* kinds with a stream handler */
#define STREAM_QUEUE_FRAMES 8      /* queued bytes per stream, in frame_max */

struct transport;

struct send_slot {
	uv_udp_send_t req;
	struct transport *t;
	struct send_slot *next_free;
	size_t len;
	uint8_t data[TRANSPORT_DGRAM_MAX];
};

/* One TCP exchange, inbound or outbound. */
struct conn {
	uv_tcp_t tcp;
	uv_timer_t timer;            /* the exchange's deadline */
	uv_connect_t connect_req;
	uv_write_t write_req;
	struct transport *t;
	struct conn *prev, *next;    /* t->conns, so close can find us */
	bool outbound;
	bool closing;
	bool reported;               /* outbound: the core heard the outcome */
	int pending_close;           /* handles still closing */
	uint64_t id;                 /* outbound stream id */
	char peer[GOSSIP_ADDR_MAX + 1];
	uint8_t hdr[FRAME_HDR];
	size_t hdr_got;
	uint8_t *body;               /* frame body, body_len bytes */
	uint32_t body_len, body_got;
	uint8_t *out;                /* frame being written */
	size_t out_len;

	/* persistent streams only */
	bool stream;
	bool quiet;                  /* closed by its owner: no on_close */
	int err;                     /* why it ended, for on_close */
	const struct transport_stream_ops *ops;
	void *ops_ctx;
	void *data;                  /* the owner's */
	size_t queued;               /* bytes handed to libuv, not yet written */
	char sender[SEAL_NAME_MAX + 1];
};

/* One frame queued on a stream. */
struct stream_write {
	uv_write_t req;
	struct conn *c;
	size_t len;
	uint8_t data[];
};

struct stream_handler {
	uint8_t kind;                /* 0 = free */
	const struct transport_stream_ops *ops;
	void *ctx;
};

struct transport {
	uv_loop_t *loop;
	uv_udp_t udp;
	uv_tcp_t listener;
	uv_timer_t tick;
	uv_timer_t defer;            /* fails deferred outbound requests */
	struct gossip *g;
	struct seal *seal;
	char name[SEAL_NAME_MAX + 1];
	uint32_t frame_max, stream_timeout_ms, max_inbound, max_streams;
	int port;
	bool closing;
	int handles;                 /* open handles, ours and our conns' */

	void (*on_event)(void *ctx, const struct gossip_event *ev);
	void *event_ctx;

	struct conn *conns;
	uint32_t inbound, outbound;
	uint32_t streams_in, streams_out;
	struct stream_handler handlers[STREAM_KINDS];

	uint64_t deferred[DEFER_MAX];
	size_t deferred_len;

	struct send_slot *free_slots;
	struct transport_stats stats;

	/* scratch: single-threaded, used synchronously */
	uint8_t udp_in[TRANSPORT_DGRAM_MAX];
	uint8_t udp_plain[TRANSPORT_DGRAM_MAX];
	uint8_t udp_out[TRANSPORT_DGRAM_MAX];
	struct send_slot slots[SEND_POOL];
};

static void transport_rearm(struct transport *t, bool from_tick);
static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void conn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* ------------------------------------------------------------------ */
/* Handle bookkeeping                                                  */
/* ------------------------------------------------------------------ */

static void transport_maybe_free(struct transport *t)
{
	if (t->closing && t->handles == 0)
		free(t);
}

static void transport_handle_closed(uv_handle_t *h)
{
	struct transport *t = h->data;

	t->handles--;
	transport_maybe_free(t);
}

static void transport_handle_close(struct transport *t, uv_handle_t *h)
{
	(void)t;
	if (!uv_is_closing(h))
		uv_close(h, transport_handle_closed);
}

/* A sender name must look like a node name, and must not be ours. */
static bool sender_acceptable(const struct transport *t, const char *sender)
{
	return gossip_name_valid(sender) && strcmp(sender, t->name) != 0;
}

/* ------------------------------------------------------------------ */
/* UDP                                                                 */
/* ------------------------------------------------------------------ */

static void udp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct transport *t = h->data;

	(void)suggested;
	*buf = uv_buf_init((char *)t->udp_in, sizeof(t->udp_in));
}

static void udp_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *sa,
		     unsigned flags)
{
	struct transport *t = h->data;
	char from[GOSSIP_ADDR_MAX + 1] = "?";
	char sender[SEAL_NAME_MAX + 1];
	size_t plen = 0;
	enum seal_err err;

	(void)buf;
	if (t->closing)
		return;
	if (nread < 0) {
		LOG_RATELIMITED(LOG_WARNING, "transport", "udp receive failed: %s",
				uv_strerror((int)nread));
		return;
	}
	if (sa == NULL)
		return;     /* nothing more to read */
	if (addr_format(sa, from, sizeof(from)) != 0)
		strcpy(from, "?");
	t->stats.udp_in_packets++;
	t->stats.udp_in_bytes += (uint64_t)nread;

	if (flags & UV_UDP_PARTIAL) {
		t->stats.dropped[SEAL_ERR_TOO_LARGE]++;
		LOG_RATELIMITED(LOG_WARNING, "transport",
				"dropped datagram from %s: too_large (over %d bytes)", from,
				TRANSPORT_DGRAM_MAX);
		return;
	}
	err = seal_open(t->seal, clock_wall_ms(), t->udp_in, (size_t)nread, TRANSPORT_DGRAM_MAX,
			t->udp_plain, sizeof(t->udp_plain), &plen, sender);
	if (err != SEAL_OK) {
		LOG_RATELIMITED(LOG_WARNING, "transport", "dropped datagram from %s: %s", from,
				seal_err_name(err));
		return;
	}
	if (!sender_acceptable(t, sender)) {
		t->stats.sender_mismatch++;
		LOG_RATELIMITED(LOG_WARNING, "transport",
				"dropped datagram from %s: sealed under %s name \"%s\"", from,
				strcmp(sender, t->name) == 0 ? "our own" : "an invalid", sender);
		return;
	}
	if (t->g == NULL)
		return;
	gossip_recv_packet(t->g, sender, from, t->udp_plain, plen, uv_now(t->loop));
	transport_rearm(t, false);
}

static void udp_sent(uv_udp_send_t *req, int status)
{
	struct send_slot *s = req->data;
	struct transport *t = s->t;

	if (status < 0 && status != UV_ECANCELED) {
		t->stats.send_errors++;
		LOG_RATELIMITED(LOG_WARNING, "transport", "udp send failed: %s",
				uv_strerror(status));
	} else if (status == 0) {
		t->stats.udp_out_packets++;
		t->stats.udp_out_bytes += s->len;
	}
	s->next_free = t->free_slots;
	t->free_slots = s;
}

static void env_send_packet(void *ctx, const char *addr, const char *to, const uint8_t *buf,
			    size_t len)
{
	struct transport *t = ctx;
	struct sockaddr_storage ss;
	struct send_slot *s;
	uv_buf_t ub;
	long n;
	int rc;

	if (t->closing)
		return;
	if (addr_parse(addr, &ss, NULL, 0) != 0) {
		t->stats.send_errors++;
		LOG_RATELIMITED(LOG_WARNING, "transport", "not sending to %s (%s): bad address",
				to && *to ? to : "?", addr);
		return;
	}
	n = seal_seal(t->seal, t->name, clock_wall_ms(), buf, len, t->udp_out, sizeof(t->udp_out));
	if (n < 0) {
		t->stats.send_errors++;
		LOG_RATELIMITED(LOG_ERROR, "transport", "cannot seal a %zu-byte packet: %s", len,
				strerror((int)-n));
		return;
	}
	ub = uv_buf_init((char *)t->udp_out, (unsigned)n);
	rc = uv_udp_try_send(&t->udp, &ub, 1, (const struct sockaddr *)&ss);
	if (rc >= 0) {
		t->stats.udp_out_packets++;
		t->stats.udp_out_bytes += (uint64_t)n;
		return;
	}
	if (rc != UV_EAGAIN) {
		t->stats.send_errors++;
		LOG_RATELIMITED(LOG_WARNING, "transport", "udp send to %s failed: %s", addr,
				uv_strerror(rc));
		return;
	}
	/* The kernel queue is full: queue it in a bounded pool, or drop. */
	s = t->free_slots;
	if (s == NULL) {
		t->stats.send_errors++;
		LOG_RATELIMITED(LOG_WARNING, "transport",
				"udp send queue full (%d packets): dropping packet to %s",
				SEND_POOL, addr);
		return;
	}
	t->free_slots = s->next_free;
	memcpy(s->data, t->udp_out, (size_t)n);
	s->len = (size_t)n;
	ub = uv_buf_init((char *)s->data, (unsigned)n);
	rc = uv_udp_send(&s->req, &t->udp, &ub, 1, (const struct sockaddr *)&ss, udp_sent);
	if (rc < 0) {
		t->stats.send_errors++;
		s->next_free = t->free_slots;
		t->free_slots = s;
		LOG_RATELIMITED(LOG_WARNING, "transport", "udp send to %s failed: %s", addr,
				uv_strerror(rc));
	}
}

/* ------------------------------------------------------------------ */
/* The tick timer                                                      */
/* ------------------------------------------------------------------ */

static void tick_fired(uv_timer_t *h)
{
	struct transport *t = h->data;

	if (t->closing || t->g == NULL)
		return;
	gossip_tick(t->g, uv_now(t->loop));
	transport_rearm(t, true);
}

static void transport_rearm(struct transport *t, bool from_tick)
{
	uint64_t now, deadline, wait;

	if (t->closing || t->g == NULL)
		return;
	now = uv_now(t->loop);
	deadline = gossip_next_deadline(t->g);
	wait = deadline > now ? deadline - now : 0;
	if (wait > TICK_MAX_MS)
		wait = TICK_MAX_MS;
	if (from_tick && wait == 0)
		wait = 1;
	uv_timer_start(&t->tick, tick_fired, wait, 0);
}

void transport_kick(struct transport *t)
{
	transport_rearm(t, false);
}

/* ------------------------------------------------------------------ */
/* TCP exchanges                                                       */
/* ------------------------------------------------------------------ */

static void conn_closed(uv_handle_t *h)
{
	struct conn *c = h->data;
	struct transport *t = c->t;

	t->handles--;
	if (--c->pending_close > 0)
		return;
	if (c->prev)
		c->prev->next = c->next;
	else
		t->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (c->stream)
		*(c->outbound ? &t->streams_out : &t->streams_in) -= 1;
	else if (c->outbound)
		t->outbound--;
	else
		t->inbound--;
	free(c->body);
	free(c->out);
	free(c);
	transport_maybe_free(t);
}

static void conn_close(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	/* A stream's owner hears once why it ended, unless it ended it. */
	if (c->stream && !c->quiet && c->ops && c->ops->on_close)
		c->ops->on_close(c->ops_ctx, (struct transport_stream *)c,
				 c->err ? c->err : UV_ECONNABORTED);
	c->pending_close = 2;
	uv_close((uv_handle_t *)&c->tcp, conn_closed);
	uv_close((uv_handle_t *)&c->timer, conn_closed);
}

/* Ends an outbound exchange without an answer: tells the core once. */
static void conn_fail(struct conn *c, const char *why)
{
	struct transport *t = c->t;

	if (c->outbound && !c->reported) {
		c->reported = true;
		t->stats.streams_failed++;
		LOG_RATELIMITED(LOG_INFO, "transport", "push-pull with %s failed: %s", c->peer,
				why);
		if (!t->closing && t->g) {
			gossip_stream_failed(t->g, c->id, uv_now(t->loop));
			transport_rearm(t, false);
		}
	} else if (!c->outbound || c->stream) {
		LOG(LOG_DEBUG, "transport", "%s stream %s %s ended: %s",
		    c->outbound ? "outbound" : "inbound", c->outbound ? "to" : "from", c->peer,
		    why);
	}
	conn_close(c);
}

static struct conn *conn_new(struct transport *t, bool outbound, bool stream)
{
	struct conn *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->t = t;
	c->outbound = outbound;
	c->stream = stream;
	c->reported = stream;        /* the core never hears of streams */
	c->tcp.data = c;
	c->timer.data = c;
	c->connect_req.data = c;
	c->write_req.data = c;
	/* Both inits only fail on bad arguments; the handles are then open. */
	uv_tcp_init(t->loop, &c->tcp);
	uv_timer_init(t->loop, &c->timer);
	t->handles += 2;
	c->next = t->conns;
	if (t->conns)
		t->conns->prev = c;
	t->conns = c;
	if (stream)
		t->streams_out++;    /* only outbound streams are born streams */
	else if (outbound)
		t->outbound++;
	else
		t->inbound++;
	return c;
}

static void conn_deadline(uv_timer_t *h)
{
	struct conn *c = h->data;

	if (!c->closing) {
		c->err = UV_ETIMEDOUT;
		conn_fail(c, "timed out");
	}
}

/*
 * Seals kind + @payload into a new frame [len][sealed] in c->out.
 * Returns 0, -ENOMEM, -EMSGSIZE (over frame_max) or seal's error.
 */
/*
 * Seals @plain into @out as [len][sealed] (@cap >= FRAME_HDR + plen +
 * SEAL_OVERHEAD_MAX).  Returns the frame's length, or -EMSGSIZE (over
 * frame_max) or seal's error.
 */
static long frame_seal(struct transport *t, const uint8_t *plain, size_t plen, uint8_t *out,
		       size_t cap)
{
	long n = seal_seal(t->seal, t->name, clock_wall_ms(), plain, plen, out + FRAME_HDR,
			   cap - FRAME_HDR);

	if (n < 0)
		return n;
	if ((uint64_t)n > t->frame_max)
		return -EMSGSIZE;
	out[0] = (uint8_t)((uint64_t)n >> 24);
	out[1] = (uint8_t)((uint64_t)n >> 16);
	out[2] = (uint8_t)((uint64_t)n >> 8);
	out[3] = (uint8_t)n;
	return FRAME_HDR + n;
}

static int conn_frame_build(struct conn *c, const uint8_t *payload, size_t len)
{
	struct transport *t = c->t;
	size_t cap = FRAME_HDR + 1 + len + SEAL_OVERHEAD_MAX;
	uint8_t *plain = malloc(1 + len);
	uint8_t *out = malloc(cap);
	long n;

	if (plain == NULL || out == NULL) {
		free(plain);
		free(out);
		return -ENOMEM;
	}
	plain[0] = KIND_PUSHPULL;
	if (len)
		memcpy(plain + 1, payload, len);
	n = frame_seal(t, plain, 1 + len, out, cap);
	free(plain);
	if (n < 0) {
		free(out);
		return (int)n;
	}
	free(c->out);
	c->out = out;
	c->out_len = (size_t)n;
	return 0;
}

static void conn_written(uv_write_t *req, int status)
{
	struct conn *c = req->data;

	if (c->closing)
		return;
	if (status < 0) {
		conn_fail(c, uv_strerror(status));
		return;
	}
	c->t->stats.tcp_out_bytes += c->out_len;
	/* Inbound: the answer is out, the exchange is over.  Outbound: keep
	 * reading the answer. */
	if (!c->outbound)
		conn_close(c);
}

static int conn_write(struct conn *c)
{
	uv_buf_t b = uv_buf_init((char *)c->out, (unsigned)c->out_len);

	return uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &b, 1, conn_written);
}

static const struct stream_handler *handler_find(const struct transport *t, uint8_t kind)
{
	for (size_t i = 0; i < STREAM_KINDS; i++)
		if (t->handlers[i].kind == kind && t->handlers[i].ops)
			return &t->handlers[i];
	return NULL;
}

/* The first frame of an inbound connection has a stream handler's kind:
 * the connection becomes a stream of that handler's. */
static void stream_accept(struct conn *c, const struct stream_handler *h, const char *sender,
			  const uint8_t *plain, size_t plen)
{
	struct transport *t = c->t;

	if (t->streams_in >= t->max_streams) {
		t->stats.streams_failed++;
		LOG_RATELIMITED(LOG_WARNING, "transport",
				"refusing stream from %s (%s): %u streams already", c->peer,
				sender, t->max_streams);
		conn_close(c);
		return;
	}
	t->inbound--;
	t->streams_in++;
	c->stream = true;
	c->ops = h->ops;
	c->ops_ctx = h->ctx;
	snprintf(c->sender, sizeof(c->sender), "%s", sender);
	uv_timer_stop(&c->timer);
	if (c->ops->on_open(c->ops_ctx, (struct transport_stream *)c) < 0) {
		c->quiet = true;
		conn_close(c);
		return;
	}
	if (c->closing)
		return;
	/* conn_frame_done() stopped reading, as for a one-frame exchange. */
	int rc = uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read);

	if (rc < 0) {
		c->err = rc;
		conn_fail(c, uv_strerror(rc));
		return;
	}
	c->ops->on_frame(c->ops_ctx, (struct transport_stream *)c, plain, plen);
}

/* A whole frame is in c->body: open it and hand it to the core, or to the
 * stream's owner. */
static void conn_frame_done(struct conn *c)
{
	struct transport *t = c->t;
	char sender[SEAL_NAME_MAX + 1];
	uint32_t len = c->body_len;
	uint8_t *plain;
	size_t plen = 0;
	enum seal_err err;

	if (!c->stream)
		uv_read_stop((uv_stream_t *)&c->tcp);
	/* Opened in place (seal_open allows out == in): the body becomes the
	 * plaintext, which this function now owns and frees.  The connection
	 * reads its next frame from scratch. */
	plain = c->body;
	c->body = NULL;
	err = seal_open(t->seal, clock_wall_ms(), plain, len, t->frame_max, plain, len, &plen,
			sender);
	c->body_len = c->body_got = 0;
	c->hdr_got = 0;
	if (err != SEAL_OK) {
		LOG_RATELIMITED(LOG_WARNING, "transport", "dropped stream frame from %s: %s",
				c->peer, seal_err_name(err));
		free(plain);
		c->err = UV_EPROTO;
		conn_fail(c, seal_err_name(err));
		return;
	}
	if (!sender_acceptable(t, sender) || (c->sender[0] && strcmp(sender, c->sender) != 0)) {
		t->stats.sender_mismatch++;
		LOG_RATELIMITED(LOG_WARNING, "transport",
				"dropped stream frame from %s: sealed under %s name \"%s\"",
				c->peer, strcmp(sender, t->name) == 0 ? "our own" :
				gossip_name_valid(sender) ? "a changed" : "an invalid", sender);
		free(plain);
		c->err = UV_EPROTO;
		conn_fail(c, "sender mismatch");
		return;
	}
	if (c->stream) {
		if (plen < 1) {
			free(plain);
			c->err = UV_EPROTO;
			conn_fail(c, "empty frame");
			return;
		}
		if (!c->sender[0])
			snprintf(c->sender, sizeof(c->sender), "%s", sender);
		c->ops->on_frame(c->ops_ctx, (struct transport_stream *)c, plain, plen);
		free(plain);
		return;
	}
	if (plen >= 1 && plain[0] != KIND_PUSHPULL && !c->outbound && !t->closing) {
		const struct stream_handler *h = handler_find(t, plain[0]);

		if (h != NULL) {
			stream_accept(c, h, sender, plain, plen);
			free(plain);
			return;
		}
	}
	if (plen < 1 || plain[0] != KIND_PUSHPULL) {
		/* A kind nobody registered for (yet): newer peers, or no RPC. */
		t->stats.dropped[SEAL_ERR_MALFORMED]++;
		LOG_RATELIMITED(LOG_WARNING, "transport",
				"dropped stream frame from %s (%s): unknown kind 0x%02x", c->peer,
				sender, plen ? plain[0] : 0);
		free(plain);
		conn_fail(c, "unknown frame kind");
		return;
	}
	if (t->closing || t->g == NULL) {
		free(plain);
		conn_close(c);
		return;
	}

	if (c->outbound) {
		c->reported = true;
		gossip_stream_done(t->g, c->id, plain + 1, plen - 1, uv_now(t->loop));
		free(plain);
		transport_rearm(t, false);
		conn_close(c);
		return;
	}

	struct gossip_buf resp = { 0 };
	int rc = gossip_stream_serve(t->g, sender, plain + 1, plen - 1, &resp, uv_now(t->loop));

	free(plain);
	transport_rearm(t, false);
	if (rc < 0) {
		LOG_RATELIMITED(LOG_WARNING, "transport",
				"malformed push-pull from %s (%s): closing", c->peer, sender);
		gossip_buf_free(&resp);
		conn_close(c);
		return;
	}
	rc = conn_frame_build(c, resp.data, resp.len);
	gossip_buf_free(&resp);
	if (rc == 0)
		rc = conn_write(c);
	if (rc < 0) {
		LOG_RATELIMITED(LOG_ERROR, "transport", "cannot answer push-pull from %s: %s",
				c->peer, rc == -EMSGSIZE ? "state larger than the frame bound" :
				uv_strerror(rc));
		conn_close(c);
	}
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct conn *c = h->data;

	(void)suggested;
	if (c->hdr_got < FRAME_HDR)
		*buf = uv_buf_init((char *)c->hdr + c->hdr_got, (unsigned)(FRAME_HDR - c->hdr_got));
	else
		*buf = uv_buf_init((char *)c->body + c->body_got, c->body_len - c->body_got);
}

static void conn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = s->data;
	struct transport *t = c->t;

	(void)buf;
	if (c->closing || nread == 0)
		return;
	if (nread < 0) {
		c->err = (int)nread;
		conn_fail(c, nread == UV_EOF ? (c->stream && c->hdr_got == 0 ? "closed by the peer" :
			  "closed before a whole frame") : uv_strerror((int)nread));
		return;
	}
	t->stats.tcp_in_bytes += (uint64_t)nread;
	if (c->hdr_got < FRAME_HDR) {
		c->hdr_got += (size_t)nread;
		if (c->hdr_got < FRAME_HDR)
			return;
		uint32_t len = (uint32_t)c->hdr[0] << 24 | (uint32_t)c->hdr[1] << 16 |
			       (uint32_t)c->hdr[2] << 8 | c->hdr[3];

		if (len == 0 || len > t->frame_max) {
			t->stats.dropped[len ? SEAL_ERR_TOO_LARGE : SEAL_ERR_MALFORMED]++;
			LOG_RATELIMITED(LOG_WARNING, "transport",
					"dropped stream frame from %s: %s (%u bytes, bound %u)",
					c->peer, len ? "too_large" : "malformed", len,
					t->frame_max);
			c->err = UV_EPROTO;
			conn_fail(c, len ? "frame too large" : "empty frame");
			return;
		}
		c->body = malloc(len);
		if (c->body == NULL) {
			c->err = UV_ENOMEM;
			conn_fail(c, "out of memory");
			return;
		}
		c->body_len = len;
		return;
	}
	c->body_got += (uint32_t)nread;
	if (c->body_got == c->body_len)
		conn_frame_done(c);
}

static void listener_connection(uv_stream_t *server, int status)
{
	struct transport *t = server->data;
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	struct conn *c;
	int rc;

	if (status < 0) {
		LOG_RATELIMITED(LOG_WARNING, "transport", "tcp accept failed: %s",
				uv_strerror(status));
		return;
	}
	if (t->closing)
		return;
	c = conn_new(t, false, false);
	if (c == NULL) {
		LOG_RATELIMITED(LOG_ERROR, "transport", "out of memory accepting a connection");
		return;
	}
	rc = uv_accept(server, (uv_stream_t *)&c->tcp);
	if (rc == 0 && uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0)
		addr_format((struct sockaddr *)&ss, c->peer, sizeof(c->peer));
	else
		strcpy(c->peer, "?");
	if (rc < 0) {
		conn_close(c);
		return;
	}
	if (t->inbound > t->max_inbound) {
		t->stats.streams_failed++;
		LOG_RATELIMITED(LOG_WARNING, "transport",
				"refusing stream from %s: %u inbound connections already", c->peer,
				t->max_inbound);
		conn_close(c);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	uv_timer_start(&c->timer, conn_deadline, t->stream_timeout_ms, 0);
	rc = uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read);
	if (rc < 0)
		conn_close(c);
}

/* ------------------------------------------------------------------ */
/* Outbound push-pull                                                  */
/* ------------------------------------------------------------------ */

static void defer_fired(uv_timer_t *h)
{
	struct transport *t = h->data;
	uint64_t ids[DEFER_MAX];
	size_t n = t->deferred_len;

	if (t->closing || t->g == NULL)
		return;
	/* Copy first: the core may start new requests while we report. */
	memcpy(ids, t->deferred, n * sizeof(ids[0]));
	t->deferred_len = 0;
	for (size_t i = 0; i < n; i++)
		gossip_stream_failed(t->g, ids[i], uv_now(t->loop));
	transport_rearm(t, false);
}

static void stream_fail_later(struct transport *t, uint64_t id, const char *addr, const char *why)
{
	t->stats.streams_failed++;
	LOG_RATELIMITED(LOG_WARNING, "transport", "push-pull with %s not started: %s", addr, why);
	if (t->deferred_len == DEFER_MAX) {
		/* Cannot happen while OUTBOUND_MAX bounds the core's requests
		 * per tick; if it does, the core's own timeout covers it. */
		LOG_RATELIMITED(LOG_ERROR, "transport", "deferred failure queue full (%d)",
				DEFER_MAX);
		return;
	}
	t->deferred[t->deferred_len++] = id;
	uv_timer_start(&t->defer, defer_fired, 0, 0);
}

static void conn_connected(uv_connect_t *req, int status)
{
	struct conn *c = req->data;
	int rc;

	if (c->closing)
		return;
	if (status < 0) {
		c->err = status;
		conn_fail(c, uv_strerror(status));
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	if (c->stream) {
		uv_timer_stop(&c->timer);
		c->ops->on_open(c->ops_ctx, (struct transport_stream *)c);
		if (c->closing)
			return;
		rc = uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read);
		if (rc < 0) {
			c->err = rc;
			conn_fail(c, uv_strerror(rc));
		}
		return;
	}
	rc = conn_write(c);
	if (rc == 0)
		rc = uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read);
	if (rc < 0)
		conn_fail(c, uv_strerror(rc));
}

static void env_stream_request(void *ctx, uint64_t id, const char *addr, const uint8_t *buf,
			       size_t len)
{
	struct transport *t = ctx;
	struct sockaddr_storage ss;
	struct conn *c;
	int rc;

	if (t->closing)
		return;
	if (addr_parse(addr, &ss, NULL, 0) != 0) {
		stream_fail_later(t, id, addr, "bad address");
		return;
	}
	if (t->outbound >= OUTBOUND_MAX) {
		stream_fail_later(t, id, addr, "too many push-pulls in flight");
		return;
	}
	c = conn_new(t, true, false);
	if (c == NULL) {
		stream_fail_later(t, id, addr, "out of memory");
		return;
	}
	c->id = id;
	snprintf(c->peer, sizeof(c->peer), "%s", addr);
	rc = conn_frame_build(c, buf, len);
	if (rc == 0)
		rc = uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&ss,
				    conn_connected);
	if (rc < 0) {
		c->reported = true;   /* reported through the deferred path */
		conn_close(c);
		stream_fail_later(t, id, addr,
				  rc == -EMSGSIZE ? "state larger than the frame bound" :
				  uv_strerror(rc));
		return;
	}
	uv_timer_start(&c->timer, conn_deadline, t->stream_timeout_ms, 0);
}

/* ------------------------------------------------------------------ */
/* Life cycle                                                          */
/* ------------------------------------------------------------------ */

static void env_on_event(void *ctx, const struct gossip_event *ev)
{
	struct transport *t = ctx;

	if (t->on_event)
		t->on_event(t->event_ctx, ev);
}

struct gossip_env transport_env(struct transport *t,
				void (*on_event)(void *ctx, const struct gossip_event *ev),
				void *event_ctx)
{
	struct gossip_env env = {
		.ctx = t,
		.send_packet = env_send_packet,
		.stream_request = env_stream_request,
		.on_event = env_on_event,
	};

	t->on_event = on_event;
	t->event_ctx = event_ctx;
	return env;
}

static void set_port(struct sockaddr_storage *ss, int port)
{
	if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
	else
		((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
}

int transport_new(uv_loop_t *loop, const struct transport_config *cfg, struct transport **out)
{
	struct sockaddr_storage ss, bound;
	int len = sizeof(bound);
	struct transport *t;
	char err[128];
	int rc;

	*out = NULL;
	if (cfg->name == NULL || strlen(cfg->name) == 0 || strlen(cfg->name) > SEAL_NAME_MAX ||
	    cfg->seal == NULL || cfg->bind == NULL)
		return UV_EINVAL;
	if (addr_parse(cfg->bind, &ss, err, sizeof(err)) != 0) {
		LOG(LOG_ERROR, "transport", "bad bind address %s: %s", cfg->bind, err);
		return UV_EINVAL;
	}
	t = calloc(1, sizeof(*t));
	if (t == NULL)
		return UV_ENOMEM;
	t->loop = loop;
	t->seal = cfg->seal;
	snprintf(t->name, sizeof(t->name), "%s", cfg->name);
	t->frame_max = cfg->frame_max ? cfg->frame_max : 1024 * 1024;
	t->stream_timeout_ms = cfg->stream_timeout_ms ? cfg->stream_timeout_ms : 10000;
	t->max_inbound = cfg->max_inbound ? cfg->max_inbound : 32;
	t->max_streams = cfg->max_streams ? cfg->max_streams : 256;
	for (size_t i = 0; i < SEND_POOL; i++) {
		t->slots[i].t = t;
		t->slots[i].req.data = &t->slots[i];
		t->slots[i].next_free = t->free_slots;
		t->free_slots = &t->slots[i];
	}

	t->udp.data = t;
	t->listener.data = t;
	t->tick.data = t;
	t->defer.data = t;
	uv_udp_init(loop, &t->udp);
	uv_tcp_init(loop, &t->listener);
	uv_timer_init(loop, &t->tick);
	uv_timer_init(loop, &t->defer);
	t->handles = 4;

	/* TCP first: with port 0 the kernel picks one, and UDP takes the same. */
	rc = uv_tcp_bind(&t->listener, (const struct sockaddr *)&ss, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&t->listener, 128, listener_connection);
	if (rc == 0)
		rc = uv_tcp_getsockname(&t->listener, (struct sockaddr *)&bound, &len);
	if (rc == 0) {
		t->port = ntohs(bound.ss_family == AF_INET6 ?
				((struct sockaddr_in6 *)&bound)->sin6_port :
				((struct sockaddr_in *)&bound)->sin_port);
		set_port(&ss, t->port);
		rc = uv_udp_bind(&t->udp, (const struct sockaddr *)&ss, 0);
	}
	if (rc < 0) {
		transport_close(t);
		return rc;
	}
	*out = t;
	return 0;
}

void transport_attach(struct transport *t, struct gossip *g)
{
	int rc;

	t->g = g;
	rc = uv_udp_recv_start(&t->udp, udp_alloc, udp_recv);
	if (rc < 0)
		LOG(LOG_ERROR, "transport", "cannot receive on udp: %s", uv_strerror(rc));
	transport_rearm(t, false);
}

int transport_port(const struct transport *t)
{
	return t->port;
}

void transport_stats_get(const struct transport *t, struct transport_stats *out)
{
	*out = t->stats;
}

void transport_close(struct transport *t)
{
	struct conn *c, *next;

	if (t == NULL || t->closing)
		return;
	t->closing = true;
	t->g = NULL;
	for (c = t->conns; c; c = next) {
		next = c->next;
		if (!c->err)
			c->err = UV_ECANCELED;
		conn_close(c);
	}
	transport_handle_close(t, (uv_handle_t *)&t->udp);
	transport_handle_close(t, (uv_handle_t *)&t->listener);
	transport_handle_close(t, (uv_handle_t *)&t->tick);
	transport_handle_close(t, (uv_handle_t *)&t->defer);
}

/* ------------------------------------------------------------------ */
/* Persistent streams                                                  */
/* ------------------------------------------------------------------ */

int transport_set_stream_handler(struct transport *t, uint8_t kind,
				 const struct transport_stream_ops *ops, void *ctx)
{
	struct stream_handler *free_slot = NULL;

	if (kind == 0 || kind == KIND_PUSHPULL)
		return -EINVAL;
	for (size_t i = 0; i < STREAM_KINDS; i++) {
		struct stream_handler *h = &t->handlers[i];

		if (h->kind == kind) {
			h->ops = ops;
			h->ctx = ctx;
			if (ops == NULL)
				h->kind = 0;
			return 0;
		}
		if (h->kind == 0 && free_slot == NULL)
			free_slot = h;
	}
	if (ops == NULL)
		return 0;
	if (free_slot == NULL)
		return -ENOSPC;
	free_slot->kind = kind;
	free_slot->ops = ops;
	free_slot->ctx = ctx;
	return 0;
}

int transport_stream_open(struct transport *t, const char *addr,
			  const struct transport_stream_ops *ops, void *ctx,
			  struct transport_stream **out)
{
	struct sockaddr_storage ss;
	struct conn *c;
	int rc;

	*out = NULL;
	if (t->closing)
		return -ESHUTDOWN;
	if (addr == NULL || addr_parse(addr, &ss, NULL, 0) != 0)
		return -EINVAL;
	c = conn_new(t, true, true);
	if (c == NULL)
		return -ENOMEM;
	c->ops = ops;
	c->ops_ctx = ctx;
	snprintf(c->peer, sizeof(c->peer), "%s", addr);
	rc = uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&ss,
			    conn_connected);
	if (rc < 0) {
		c->quiet = true;
		conn_close(c);
		return rc;
	}
	uv_timer_start(&c->timer, conn_deadline, t->stream_timeout_ms, 0);
	*out = (struct transport_stream *)c;
	return 0;
}

static void stream_written(uv_write_t *req, int status)
{
	struct stream_write *w = req->data;
	struct conn *c = w->c;

	c->queued -= w->len;
	if (status == 0)
		c->t->stats.tcp_out_bytes += w->len;
	free(w);
	if (status < 0 && !c->closing) {
		c->err = status;
		conn_fail(c, uv_strerror(status));
	}
}

int transport_stream_send(struct transport_stream *s, const uint8_t *plain, size_t len)
{
	struct conn *c = (struct conn *)s;
	struct transport *t = c->t;
	size_t cap = FRAME_HDR + len + SEAL_OVERHEAD_MAX;
	struct stream_write *w;
	uv_buf_t b;
	long n;
	int rc;

	if (c->closing)
		return -ESHUTDOWN;
	if (len < 1)
		return -EINVAL;
	if (len > t->frame_max)
		return -EMSGSIZE;
	if (c->queued + cap > (size_t)STREAM_QUEUE_FRAMES * t->frame_max)
		return -ENOBUFS;
	w = malloc(sizeof(*w) + cap);
	if (w == NULL)
		return -ENOMEM;
	n = frame_seal(t, plain, len, w->data, cap);
	if (n < 0) {
		free(w);
		return (int)n;
	}
	w->c = c;
	w->len = (size_t)n;
	w->req.data = w;
	b = uv_buf_init((char *)w->data, (unsigned)n);
	rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, stream_written);
	if (rc < 0) {
		free(w);
		return rc;
	}
	c->queued += w->len;
	return 0;
}

void transport_stream_close(struct transport_stream *s)
{
	struct conn *c = (struct conn *)s;

	c->quiet = true;
	conn_close(c);
}

void transport_stream_set_data(struct transport_stream *s, void *data)
{
	((struct conn *)s)->data = data;
}

void *transport_stream_data(const struct transport_stream *s)
{
	return ((const struct conn *)s)->data;
}

const char *transport_stream_peer(const struct transport_stream *s)
{
	return ((const struct conn *)s)->peer;
}

const char *transport_stream_sender(const struct transport_stream *s)
{
	return ((const struct conn *)s)->sender;
}
