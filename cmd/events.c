/*
 * cmd/events.c - the event hub behind GET /v1/events (cmd/events.h says
 * what it promises).  Subscribers are a small array (at most
 * EVENTS_SUBSCRIBERS_MAX), so publishing is one pass; a gone client is
 * noticed on the next write or keepalive and its slot reused.
 */
#include "cmd/events.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "lib/log.h"

static const char *const event_types[EVENTS_TYPES_MAX] = { "member", "leader", "change",
							   "error" };

struct sub {
	struct http_request *req;
	unsigned types;               /* bit i: event_types[i] */
};

struct events {
	uv_timer_t keepalive;
	struct sub subs[EVENTS_SUBSCRIBERS_MAX];
	size_t nsubs;
	uint64_t seq;
	uint64_t published, slow_dropped;
	bool closing;
};

static int type_index(const char *t, size_t len)
{
	for (int i = 0; i < EVENTS_TYPES_MAX; i++)
		if (strlen(event_types[i]) == len && memcmp(event_types[i], t, len) == 0)
			return i;
	return -1;
}

/* Removes subscriber @i (its stream is already over). */
static void sub_remove(struct events *h, size_t i)
{
	h->subs[i] = h->subs[--h->nsubs];
}

/*
 * Ends subscriber @i's stream (with a last error event naming @reason,
 * when it fits).  The subscriber leaves the array first: ending a stream
 * frees the request and may serve the connection's next request at once,
 * which can publish again; the array must be whole by then.
 */
static void sub_end(struct events *h, size_t i, const char *reason)
{
	struct http_request *req = h->subs[i].req;
	char buf[160];

	sub_remove(h, i);
	if (reason) {
		int n = snprintf(buf, sizeof(buf), "event: error\ndata: {\"type\":\"error\","
				 "\"reason\":\"%s\"}\n\n", reason);

		http_stream_write(req, buf, (size_t)n);
	}
	http_stream_end(req);
}

/* Writes @len bytes to subscriber @i; false when it was removed. */
static bool sub_write(struct events *h, size_t i, const char *data, size_t len)
{
	int rc = http_stream_write(h->subs[i].req, data, len);

	if (rc == 0)
		return true;
	if (rc == -ENOBUFS) {
		h->slow_dropped++;
		LOG_RATELIMITED(LOG_WARNING, "events", "an event subscriber fell more than 1 MiB "
				"behind; disconnecting it (slow_subscriber)");
		sub_end(h, i, "slow_subscriber");
		return false;
	}
	sub_end(h, i, NULL);   /* gone */
	return false;
}

/* Drops subscribers whose clients went away. */
static void subs_sweep(struct events *h)
{
	for (size_t i = h->nsubs; i-- > 0;)
		if (http_request_gone(h->subs[i].req))
			sub_end(h, i, NULL);
}

static void keepalive_fired(uv_timer_t *t)
{
	static const char ping[] = ": keepalive\n\n";
	struct events *h = t->data;

	for (size_t i = h->nsubs; i-- > 0;)
		sub_write(h, i, ping, sizeof(ping) - 1);
}

struct events *events_new(uv_loop_t *loop)
{
	struct events *h = calloc(1, sizeof(*h));

	if (h == NULL)
		return NULL;
	uv_timer_init(loop, &h->keepalive);
	h->keepalive.data = h;
	uv_timer_start(&h->keepalive, keepalive_fired, EVENTS_KEEPALIVE_MS, EVENTS_KEEPALIVE_MS);
	return h;
}

static void events_free(uv_handle_t *t)
{
	free(t->data);
}

void events_close(struct events *h)
{
	if (h == NULL || h->closing)
		return;
	h->closing = true;
	while (h->nsubs > 0)
		sub_end(h, h->nsubs - 1, NULL);
	uv_close((uv_handle_t *)&h->keepalive, events_free);
}

/*
 * Formats @ev (consumed) as one SSE event of type index @ti into a
 * malloc'd string; NULL when out of memory.
 */
static char *event_format(struct events *h, int ti, json_t *ev, size_t *len)
{
	char when[40], *data, *out;
	int n;

	clock_format_rfc3339(clock_wall_ms(), when, sizeof(when));
	h->seq++;
	json_object_set_new(ev, "seq", json_integer((json_int_t)h->seq));
	json_object_set_new(ev, "time", json_string(when));
	json_object_set_new(ev, "type", json_string(event_types[ti]));
	data = json_dumps(ev, JSON_COMPACT);
	json_decref(ev);
	if (data == NULL)
		return NULL;
	n = asprintf(&out, "id: %llu\nevent: %s\ndata: %s\n\n", (unsigned long long)h->seq,
		     event_types[ti], data);
	free(data);
	if (n < 0)
		return NULL;
	*len = (size_t)n;
	return out;
}

bool events_subscribe(struct events *h, struct http_request *req, const char *types,
		      json_t *hello)
{
	static const char err400[] = "{\"error\":{\"code\":\"bad_request\",\"message\":"
				     "\"types: one or more of member, leader, change\"}}\n";
	static const char err503[] = "{\"error\":{\"code\":\"overloaded\",\"message\":"
				     "\"too many event subscribers\"}}\n";
	unsigned mask = 0;

	if (types == NULL || types[0] == '\0') {
		mask = ~0u;
	} else {
		for (const char *p = types; *p;) {
			size_t n = strcspn(p, ",");
			int ti = type_index(p, n);

			if (ti < 0 || ti == EVENTS_TYPES_MAX - 1) {
				json_decref(hello);
				http_respond(req, 400, "application/json", err400,
					     sizeof(err400) - 1);
				return false;
			}
			mask |= 1u << ti;
			p += n + (p[n] == ',');
		}
	}
	if (h->nsubs == EVENTS_SUBSCRIBERS_MAX)
		subs_sweep(h);
	if (h->closing || h->nsubs == EVENTS_SUBSCRIBERS_MAX) {
		json_decref(hello);
		http_respond_ex(req, 503, "application/json", "Retry-After: 5\r\n", err503,
				sizeof(err503) - 1);
		return false;
	}
	http_stream_begin(req);
	h->subs[h->nsubs++] = (struct sub){ req, mask | 1u << (EVENTS_TYPES_MAX - 1) };
	if (hello) {
		const char *t = json_string_value(json_object_get(hello, "type"));
		int ti = t ? type_index(t, strlen(t)) : -1;
		size_t len;
		char *s = ti >= 0 ? event_format(h, ti, json_incref(hello), &len) : NULL;

		json_decref(hello);
		if (s)
			sub_write(h, h->nsubs - 1, s, len);
		free(s);
	}
	return true;
}

void events_publish(struct events *h, const char *type, json_t *ev)
{
	int ti = type_index(type, strlen(type));
	bool wanted = false;
	size_t len = 0;
	char *s;

	if (ev == NULL)
		return;
	if (ti < 0 || h->closing) {
		json_decref(ev);
		return;
	}
	h->published++;
	/* Most events (every row change) go to nobody: do not format them. */
	for (size_t i = 0; i < h->nsubs && !wanted; i++)
		wanted = h->subs[i].types & 1u << ti;
	if (!wanted) {
		json_decref(ev);
		h->seq++;
		return;
	}
	s = event_format(h, ti, ev, &len);
	if (s == NULL) {
		LOG_RATELIMITED(LOG_WARNING, "events", "cannot format a %s event: out of memory",
				type);
		return;
	}
	/* A write may end a stream, which may publish again (a pipelined
	 * request served at once): walk down from the end, re-checking the
	 * bound, so that nothing is written twice or to a freed request. */
	for (size_t i = h->nsubs; i-- > 0;)
		if (i < h->nsubs && h->subs[i].types & 1u << ti)
			sub_write(h, i, s, len);
	free(s);
}

void events_stats_get(const struct events *h, struct events_stats *out)
{
	out->published = h->published;
	out->subscribers = h->nsubs;
	out->slow_dropped = h->slow_dropped;
}
