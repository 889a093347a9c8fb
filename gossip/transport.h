/*
 * gossip/transport.h - the gossip core's seams, made real with libuv.
 *
 * One UDP socket and one TCP listener on the same address.  Every datagram
 * and every TCP frame is sealed (gossip/seal.h) with this node's name as
 * the sender.  UDP: one sealed gossip packet per datagram.  TCP: frames
 * of [4-byte big-endian length][sealed payload], the payload's first
 * plaintext byte naming the frame kind:
 *
 *   'P'  push-pull request / response (gossip_state_* in proto.h)
 *   'R'  reserved for region RPC (later)
 *
 * A frame longer than frame_max is refused (the connection closed and the
 * drop counted as too_large).  Inbound connections are bounded; each
 * inbound exchange and each outbound push-pull has a deadline.
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
 * handle (keep running the loop). */
void transport_close(struct transport *t);

#endif
