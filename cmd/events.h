/*
 * cmd/events.h - the agent's event stream: membership, leader (and later
 * change) events, fanned out to `GET /v1/events` subscribers as
 * server-sent events and shown by `meridian watch`.
 *
 * One hub per agent.  A publisher hands over one JSON object; the hub
 * stamps it with a sequence number and the wall time, formats it once
 *
 *   id: 42
 *   event: leader
 *   data: {"seq":42,"time":"2026-11-22T01:02:03.456Z","type":"leader",...}
 *
 * and writes it to every subscriber whose filter takes that type.
 * Nothing is queued in the hub: each subscriber's backlog is its HTTP
 * connection's unsent bytes, which the server bounds (1 MiB,
 * http_stream_write() -ENOBUFS).  A subscriber past that bound is cut off
 * with a last `event: error` naming the reason (slow_subscriber) when it
 * still fits, and counted; the rest of the stream goes on.  A comment line
 * every EVENTS_KEEPALIVE_MS keeps proxies from closing an idle stream and
 * finds clients that went away.  Subscribers are bounded
 * (EVENTS_SUBSCRIBERS_MAX; past it: 503).
 */
#ifndef MERIDIAN_CMD_EVENTS_H
#define MERIDIAN_CMD_EVENTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "cmd/http_server.h"

#define EVENTS_SUBSCRIBERS_MAX 256
#define EVENTS_KEEPALIVE_MS 15000
#define EVENTS_TYPES_MAX 4

struct events;

struct events *events_new(uv_loop_t *loop);
/* Ends every stream; frees itself once its timer has closed. NULL: no-op. */
void events_close(struct events *h);

/*
 * Turns @req into a subscription to the event types listed in @types
 * (comma-separated, "member,leader"; NULL or "" means all).  Answers 400
 * for an unknown type and 503 past EVENTS_SUBSCRIBERS_MAX itself.
 * Returns true when the stream began (then @hello, if not NULL, is sent
 * to it alone as its first event; it is consumed either way).
 */
bool events_subscribe(struct events *h, struct http_request *req, const char *types,
		      json_t *hello);

/* Publishes @ev (consumed) as an event of @type ("member", "leader"). */
void events_publish(struct events *h, const char *type, json_t *ev);

struct events_stats {
	uint64_t published;
	uint64_t subscribers;         /* now */
	uint64_t slow_dropped;        /* subscribers cut off for falling behind */
};
void events_stats_get(const struct events *h, struct events_stats *out);

#endif
