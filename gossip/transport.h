/*
 * gossip/transport.h - the gossip core's seams, made real with libuv.
 *
 * One UDP socket and one TCP listener on the same address.  Every datagram
 * and every TCP frame is sealed (gossip/seal.h) with this node's name as
 * the sender.  UDP: one sealed gossip packet per datagram.  TCP: frames
 * of [4-byte big-endian length][sealed payload], the payload's first
 * plaintext byte naming the frame kind:
 *
 *   'P'  push-pull request / response (gossip_state_* in proto.h): one
 *        exchange per connection
 *   'R'  region RPC (region/rpc.h): a persistent stream, below
 *
 * A frame longer than frame_max is refused (the connection closed and the
 * drop counted as too_large).  Inbound connections are bounded; each
 * inbound exchange and each outbound push-pull has a deadline.
 *
 * Streams.  A layer above (the RPC) can own persistent connections without
 * ever seeing a socket, a length prefix or a seal: it registers a handler
 * for a kind byte (transport_set_stream_handler), and an inbound connection
 * whose FIRST frame is of that kind is handed over as a transport_stream
 * instead of being dropped; outbound, transport_stream_open() connects one.
 * Either way the transport keeps framing and sealing every frame, checking
 * frame_max before reading a body, and checking that every frame of a
 * stream is sealed under the same sender name; the owner sees whole
 * plaintext frames (kind byte first) and sends plaintext frames.  Bounds:
 * before its first frame an inbound connection counts against max_inbound
 * and its exchange deadline; once handed over it counts against
 * max_streams instead, and has no deadline (idle policy is the owner's,
 * who knows whether calls are in flight).  Bytes queued for writing on a
 * stream are bounded too (transport_stream_send answers -ENOBUFS).
 *
 * The transport also drives the core's clock: a uv_timer re-armed to
 * gossip_next_deadline() after every call into the core.
 */
#ifndef MERIDIAN_GOSSIP_TRANSPORT_H
#define MERIDIAN_GOSSIP_TRANSPORT_H

#include <stdint.h>
#include <uv.h>

#include "gossip/gossip.h"
#include "gossip/seal.h"

struct transport;

struct transport_config {
	const char *bind;          /* "0.0.0.0:7600" */
	const char *name;          /* sealed as the sender; must outlive */
	struct seal *seal;         /* not owned; must outlive the transport */
	uint32_t frame_max;        /* bytes; 1 MiB by default */
	uint32_t stream_timeout_ms;/* per TCP exchange */
	uint32_t max_inbound;      /* concurrent inbound TCP connections */
	uint32_t max_streams;      /* inbound streams handed over; 256 by default */
};

/* Drop reasons counted by the transport, beside seal's. */
struct transport_stats {
	uint64_t udp_in_packets, udp_in_bytes, udp_out_packets, udp_out_bytes;
	uint64_t tcp_in_bytes, tcp_out_bytes;
	uint64_t dropped[SEAL_ERR__COUNT];   /* by seal_err reason */
	uint64_t sender_mismatch;            /* sealed name is our own, or bad */
	uint64_t send_errors;
	uint64_t streams_failed;
};

/*
 * Binds UDP and TCP on cfg->bind.  Returns 0 and *@out, or a negative
 * libuv error (UV_EADDRINUSE, UV_EINVAL for a bad address).
 */
int transport_new(uv_loop_t *loop, const struct transport_config *cfg, struct transport **out);

/* The env to create the core with (ctx = the transport). */
struct gossip_env transport_env(struct transport *t, void (*on_event)(void *ctx,
			       const struct gossip_event *ev), void *event_ctx);

/* Starts receiving and ticking @g (not owned; must outlive the transport
 * until transport_close()). */
void transport_attach(struct transport *t, struct gossip *g);

/* Re-arms the tick timer; call after calling into the core from outside
 * the transport (join, leave, set_tags). */
void transport_kick(struct transport *t);

/* The bound port (useful with port 0). */
int transport_port(const struct transport *t);

void transport_stats_get(const struct transport *t, struct transport_stats *out);

/* Closes sockets and timers; frees itself once libuv has closed every
 * handle (keep running the loop).  Every open stream's on_close runs (with
 * UV_ECANCELED) from inside this call. */
void transport_close(struct transport *t);

/* ------------------------------------------------------------------ */
/* Persistent streams                                                  */
/* ------------------------------------------------------------------ */

struct transport_stream;

/*
 * What the owner of a stream hears.  Called from the loop, never from
 * inside a transport_stream_*() call of the same stream.
 *
 * on_open: inbound: a connection was handed over, before its first frame
 *   reaches on_frame; return 0 to keep it, negative to have it closed
 *   (on_close is then not called).  Outbound: the connection is up; the
 *   return value is ignored.
 * on_frame: one whole opened frame, @plain[0] being its kind byte; valid
 *   during the call only.  @len >= 1.
 * on_close: the stream ended by itself (peer closed, error, frame over
 *   frame_max or failing to open, connect failure or timeout, transport
 *   closing): @err is a negative libuv code (UV_EOF, UV_ECONNREFUSED,
 *   UV_ETIMEDOUT, UV_EPROTO, UV_ECANCELED, ...).  Called exactly once, and
 *   never after transport_stream_close(); @s is invalid afterwards.
 */
struct transport_stream_ops {
	int (*on_open)(void *ctx, struct transport_stream *s);
	void (*on_frame)(void *ctx, struct transport_stream *s, const uint8_t *plain, size_t len);
	void (*on_close)(void *ctx, struct transport_stream *s, int err);
};

/*
 * Hands over inbound connections whose first frame is of kind @kind to
 * @ops (not copied: must outlive the registration) with @ctx.  @ops NULL
 * unregisters (streams already open keep their ops).  Returns 0, -EINVAL
 * for the push-pull kind 'P' or kind 0, -ENOSPC past a few kinds.
 */
int transport_set_stream_handler(struct transport *t, uint8_t kind,
				 const struct transport_stream_ops *ops, void *ctx);

/*
 * Connects a stream to @addr ("host:port"); on_open runs once connected,
 * on_close if that fails or takes longer than stream_timeout_ms.  Returns
 * 0 and *@out; or -EINVAL (bad address), -ESHUTDOWN (transport closing),
 * -ENOMEM, or libuv's error, with nothing to close and no callback.
 */
int transport_stream_open(struct transport *t, const char *addr,
			  const struct transport_stream_ops *ops, void *ctx,
			  struct transport_stream **out);

/*
 * Seals @plain (@len >= 1 bytes, kind byte first) into one frame and
 * queues it.  Returns 0; -EMSGSIZE when the sealed frame would exceed
 * frame_max; -ENOBUFS when too many bytes are already queued on this
 * stream (a slow or stuck peer); -ESHUTDOWN when the stream is closing;
 * -ENOMEM; seal's or libuv's error.  A write that fails later ends the
 * stream (on_close).  Success means queued, not delivered.
 */
int transport_stream_send(struct transport_stream *s, const uint8_t *plain, size_t len);

/* Closes @s; no callback of it runs afterwards.  Safe from its callbacks. */
void transport_stream_close(struct transport_stream *s);

/* An owner's pointer kept with the stream (NULL at first). */
void transport_stream_set_data(struct transport_stream *s, void *data);
void *transport_stream_data(const struct transport_stream *s);

/* The peer's "host:port", and the name its frames are sealed under (""
 * for an outbound stream until its first frame arrives).  Valid while the
 * stream is. */
const char *transport_stream_peer(const struct transport_stream *s);
const char *transport_stream_sender(const struct transport_stream *s);

#endif
