/*
 * cmd/api.c - the local API's routes (docs/api.md is the contract the CLI
 * and monitoring code against).
 *
 * Every route answers synchronously from the agent's in-memory state: the
 * membership view is small (bounded by members_max) and reading it takes
 * microseconds, so there is nothing to wait for and no request is kept.
 * JSON is built with jansson and sent compact, one object per answer,
 * with a trailing newline so that `curl` output stays readable.
 *
 * Input checks: the only inputs are the path, the method and two query
 * parameters.  An unknown path is 404, a known path with the wrong method
 * 405 (with Allow), a bad filter value 400 naming the parameter and what
 * it accepts.  Unknown query parameters are ignored, as HTTP APIs usually
 * do, so that a newer CLI can talk to an older agent.
 *
 * /metrics is the Prometheus text format 0.0.4; the names and labels are
 * frozen in docs/api.md.  Dropped packets add three sources per reason:
 * the sealing layer's own counts (seal_count), what the transport dropped
 * before sealing could look (oversized datagrams and frames, unknown frame
 * kinds) and, for "malformed", what the core could not decode.
 */
#include "cmd/api.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cmd/agent.h"
#include "cmd/config.h"
#include "cmd/http_server.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "region/region.h"

#ifndef MERIDIAN_VERSION
#define MERIDIAN_VERSION "0.0.0"
#endif

#define JSON_TYPE "application/json"
#define METRICS_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct api {
	struct agent *agent;
	struct http_server *server;
};

/* ------------------------------------------------------------------ */
/* Answers                                                             */
/* ------------------------------------------------------------------ */

/* Sends @root (consumed) with @status. */
static void respond_json(struct http_request *req, int status, json_t *root,
			 const char *extra_headers)
{
	char *s = root ? json_dumps(root, JSON_COMPACT) : NULL;
	size_t n;

	json_decref(root);
	if (s == NULL) {
		static const char oom[] =
			"{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}\n";

		http_respond(req, 500, JSON_TYPE, oom, sizeof(oom) - 1);
		return;
	}
	n = strlen(s);
	/* json_dumps allocates exactly; make room for the newline. */
	char *body = realloc(s, n + 2);

	if (body == NULL) {
		http_respond_ex(req, status, JSON_TYPE, extra_headers, s, n);
		free(s);
		return;
	}
	body[n] = '\n';
	body[n + 1] = '\0';
	http_respond_ex(req, status, JSON_TYPE, extra_headers, body, n + 1);
	free(body);
}

static void respond_error(struct http_request *req, int status, const char *code,
			  const char *extra_headers, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static void respond_error(struct http_request *req, int status, const char *code,
			  const char *extra_headers, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	respond_json(req, status,
		     json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg),
		     extra_headers);
}

/* ------------------------------------------------------------------ */
/* Members                                                             */
/* ------------------------------------------------------------------ */

static json_t *tags_json(const struct gossip_tags *tags)
{
	json_t *o = json_object();
	const char *k, *v;
	size_t cur = 0;

	while (o && gossip_tags_next(tags, &cur, &k, &v))
		json_object_set_new(o, k, json_string(v));
	return o;
}

static const char *member_region(const struct gossip_member *m)
{
	const char *r = gossip_tags_get(gossip_member_tags(m), "region");

	return r ? r : "";
}

/* The node is shutting down: region/region.h's rule, read from the tags
 * directly so that the list never waits for a region table refresh. */
static bool member_leaving(const struct gossip_member *m)
{
	const char *v = gossip_tags_get(gossip_member_tags(m), REGION_TAG_LEAVING);

	return v != NULL && strcmp(v, "1") == 0;
}

static json_t *member_json(const struct agent *a, const struct gossip_member *m)
{
	char since[32];

	clock_format_rfc3339(agent_wall_ms(a, gossip_member_since(m)), since, sizeof(since));
	return json_pack("{s:s,s:s,s:s,s:s,s:b,s:I,s:s,s:I,s:o}",
			 "name", gossip_member_name(m),
			 "addr", gossip_member_addr(m),
			 "region", member_region(m),
			 "status", gossip_status_name(gossip_member_status(m)),
			 "leaving", member_leaving(m),
			 "incarnation", (json_int_t)gossip_member_incarnation(m),
			 "since", since,
			 "rtt_us", (json_int_t)gossip_member_rtt_us(m),
			 "tags", tags_json(gossip_member_tags(m)));
}

static int member_cmp(const void *x, const void *y)
{
	const struct gossip_member *const *a = x, *const *b = y;

	return strcmp(gossip_member_name(*a), gossip_member_name(*b));
}

static void route_members(struct api *api, struct http_request *req,
			  const struct http_request_view *v)
{
	const struct gossip *g = agent_gossip(api->agent);
	char region[128], status[128];
	bool by_region = http_query_get(v->query, "region", region, sizeof(region));
	bool by_status = http_query_get(v->query, "status", status, sizeof(status));
	int want_status = 0;
	size_t n = gossip_member_count(g), kept = 0;
	const struct gossip_member **list;
	json_t *arr;

	if (by_status) {
		want_status = gossip_status_parse(status);
		if (want_status < 0) {
			respond_error(req, 400, "bad_request", NULL,
				      "status must be one of alive, suspect, failed, left");
			return;
		}
	}
	if (by_region && !config_region_valid(region)) {
		respond_error(req, 400, "bad_request", NULL,
			      "region must be 1 to 32 lower-case letters, digits or dashes");
		return;
	}
	list = calloc(n ? n : 1, sizeof(*list));
	arr = json_array();
	if (list == NULL || arr == NULL) {
		free(list);
		json_decref(arr);
		respond_json(req, 500, NULL, NULL);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		const struct gossip_member *m = gossip_member_at(g, i);

		if (by_status && (int)gossip_member_status(m) != want_status)
			continue;
		if (by_region && strcmp(member_region(m), region) != 0)
			continue;
		list[kept++] = m;
	}
	qsort(list, kept, sizeof(*list), member_cmp);
	for (size_t i = 0; i < kept; i++)
		json_array_append_new(arr, member_json(api->agent, list[i]));
	free(list);
	respond_json(req, 200, arr, NULL);
}

static void status_counts(const struct gossip *g, uint64_t counts[4])
{
	size_t n = gossip_member_count(g);

	memset(counts, 0, 4 * sizeof(counts[0]));
	for (size_t i = 0; i < n; i++) {
		unsigned s = gossip_member_status(gossip_member_at(g, i));

		if (s < 4)
			counts[s]++;
	}
}

/* [{"name","alive","nodes"}...], sorted by name; NULL when out of memory. */
static json_t *regions_json(const struct region_table *t)
{
	size_t n = region_list(t, NULL, 0);
	struct region_info *list = calloc(n ? n : 1, sizeof(*list));
	json_t *arr = json_array();

	if (list == NULL || arr == NULL) {
		free(list);
		json_decref(arr);
		return NULL;
	}
	n = region_list(t, list, n);
	for (size_t i = 0; i < n; i++)
		if (json_array_append_new(arr, json_pack("{s:s,s:I,s:I}", "name", list[i].name,
							 "alive", (json_int_t)list[i].alive,
							 "nodes", (json_int_t)list[i].nodes))) {
			json_decref(arr);
			arr = NULL;
			break;
		}
	free(list);
	return arr;
}

/* [{"primary_region","count","example"}...], most held first, while live
 * nodes disagree on PRIMARY_REGION; [] while they agree.  NULL when out
 * of memory. */
static json_t *primary_conflict_json(const struct region_table *t)
{
	size_t n = region_primary_conflict(t, NULL, 0);
	struct region_primary_vote *votes;
	json_t *arr = json_array();

	if (arr == NULL || n < 2)
		return arr;
	votes = calloc(n, sizeof(*votes));
	if (votes == NULL) {
		json_decref(arr);
		return NULL;
	}
	n = region_primary_conflict(t, votes, n);
	for (size_t i = 0; i < n; i++)
		if (json_array_append_new(arr, json_pack("{s:s,s:I,s:s}",
							 "primary_region", votes[i].primary,
							 "count", (json_int_t)votes[i].count,
							 "example", votes[i].example))) {
			json_decref(arr);
			arr = NULL;
			break;
		}
	free(votes);
	return arr;
}

static void route_self(struct api *api, struct http_request *req)
{
	struct agent *a = api->agent;
	const struct region_table *rt = agent_regions(a);
	const struct gossip_member *self = gossip_self(agent_gossip(a));
	const struct gossip_tags *tags = gossip_member_tags(self);
	const char *region = member_region(self);
	const char *primary = gossip_tags_get(tags, "primary_region");
	const char *version = gossip_tags_get(tags, "version");
	uint64_t c[4];

	if (primary == NULL)
		primary = "";
	status_counts(agent_gossip(a), c);
	/* A NULL for "o" makes json_pack fail: out of memory answers 500. */
	respond_json(req, 200,
		     json_pack("{s:s,s:s,s:s,s:s,s:b,s:s,s:I,s:s,s:{s:i,s:i},s:s,s:o,"
			       "s:{s:I,s:I,s:I,s:I},s:b,s:b,s:n,s:o,s:s?,s:o}",
			       "name", gossip_member_name(self),
			       "addr", gossip_member_addr(self),
			       "region", region,
			       "primary_region", primary,
			       "is_primary", *region && strcmp(region, primary) == 0,
			       "status", gossip_status_name(gossip_member_status(self)),
			       "incarnation", (json_int_t)gossip_member_incarnation(self),
			       "version", version ? version : MERIDIAN_VERSION,
			       "protocol", "min", GOSSIP_PROTO_MIN, "max", GOSSIP_PROTO_VERSION,
			       "profile", agent_profile(a),
			       "tags", tags_json(tags),
			       "members",
			       "alive", (json_int_t)c[GOSSIP_ALIVE],
			       "suspect", (json_int_t)c[GOSSIP_SUSPECT],
			       "failed", (json_int_t)c[GOSSIP_FAILED],
			       "left", (json_int_t)c[GOSSIP_LEFT],
			       "ready", agent_ready(a, NULL),
			       "leaving", agent_leaving(a),
			       "leader",
			       "regions", regions_json(rt),
			       "cluster_primary_region", region_cluster_primary(rt),
			       "primary_conflict", primary_conflict_json(rt)),
		     NULL);
}

static void route_leave(struct api *api, struct http_request *req)
{
	agent_leave_start(api->agent, "POST /v1/leave");
	respond_json(req, 202, json_pack("{s:b}", "leaving", 1), NULL);
}

static void route_readyz(struct api *api, struct http_request *req)
{
	const char *reason = NULL;

	if (agent_ready(api->agent, &reason))
		respond_json(req, 200, json_pack("{s:b}", "ready", 1), NULL);
	else
		respond_json(req, 503, json_pack("{s:b,s:s}", "ready", 0, "reason",
						  reason ? reason : "joining"),
			     "Retry-After: 1\r\n");
}

/* ------------------------------------------------------------------ */
/* Metrics                                                             */
/* ------------------------------------------------------------------ */

static void metric_head(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One sample line of metric @name; @labels is the inside of the braces,
 * or NULL for a metric without labels. */
static void metric_sample(FILE *f, const char *name, const char *labels, unsigned long long value)
{
	if (labels)
		fprintf(f, "%s{%s} %llu\n", name, labels, value);
	else
		fprintf(f, "%s %llu\n", name, value);
}

/* A sample with the one label @key="@value" (a value that needs no
 * escaping: ours are all fixed identifiers). */
static void metric_sample1(FILE *f, const char *name, const char *key, const char *value,
			   unsigned long long v)
{
	fprintf(f, "%s{%s=\"%s\"} %llu\n", name, key, value, v);
}

static void metric_one(FILE *f, const char *name, const char *type, const char *help,
		       unsigned long long value)
{
	metric_head(f, name, type, help);
	metric_sample(f, name, NULL, value);
}

static void route_metrics(struct api *api, struct http_request *req)
{
	static const struct {
		const char *label;
		int reason;     /* enum seal_err, or -1 for the sender check */
	} drops[] = {
		{ "bad_key", SEAL_ERR_BAD_KEY },   { "tampered", SEAL_ERR_TAMPERED },
		{ "replayed", SEAL_ERR_REPLAYED }, { "stale", SEAL_ERR_STALE },
		{ "malformed", SEAL_ERR_MALFORMED }, { "too_large", SEAL_ERR_TOO_LARGE },
		{ "version", SEAL_ERR_VERSION },   { "sender", -1 },
	};
	static const char *const statuses[] = { "alive", "suspect", "failed", "left" };
	struct agent *a = api->agent;
	const struct region_table *rt = agent_regions(a);
	const struct gossip *g = agent_gossip(a);
	const struct seal *seal = agent_seal(a);
	struct region_stats rs;
	struct gossip_stats gs;
	struct transport_stats ts;
	struct http_stats hs;
	uint64_t counts[4];
	char *body = NULL;
	size_t len = 0;
	FILE *f;

	gossip_stats_get(g, &gs);
	transport_stats_get(agent_transport(a), &ts);
	http_server_stats(api->server, &hs);
	status_counts(g, counts);
	region_stats_get(rt, &rs);

	f = open_memstream(&body, &len);
	if (f == NULL) {
		respond_json(req, 500, NULL, NULL);
		return;
	}
	metric_head(f, "meridian_members", "gauge", "Members by status, as this agent sees them.");
	for (int i = 0; i < 4; i++)
		metric_sample1(f, "meridian_members", "status", statuses[i], counts[i]);
	metric_one(f, "meridian_probes_total", "counter", "Direct probes sent.", gs.probes);
	metric_one(f, "meridian_probe_failures_total", "counter",
		   "Probes that ended without any ack.", gs.probe_failures);
	metric_one(f, "meridian_indirect_probes_total", "counter",
		   "Indirect probes (ping-req) sent.", gs.indirect_probes);
	metric_one(f, "meridian_suspicions_total", "counter", "Members this agent marked suspect.",
		   gs.suspicions);
	metric_one(f, "meridian_refutations_total", "counter",
		   "Suspicions of this agent it refuted.", gs.refutations);

	metric_head(f, "meridian_packets_dropped_total", "counter",
		    "Datagrams and stream frames dropped, by reason.");
	for (size_t i = 0; i < sizeof(drops) / sizeof(drops[0]); i++) {
		unsigned long long v;

		if (drops[i].reason < 0) {
			v = ts.sender_mismatch;
		} else {
			v = seal_count(seal, (enum seal_err)drops[i].reason) +
			    ts.dropped[drops[i].reason];
			if (drops[i].reason == SEAL_ERR_MALFORMED)
				v += gs.malformed;
		}
		metric_sample1(f, "meridian_packets_dropped_total", "reason", drops[i].label, v);
	}

	metric_head(f, "meridian_gossip_bytes_total", "counter",
		    "Gossip bytes on the wire (sealed), by direction and protocol.");
	metric_sample(f, "meridian_gossip_bytes_total", "direction=\"in\",proto=\"udp\"",
		      ts.udp_in_bytes);
	metric_sample(f, "meridian_gossip_bytes_total", "direction=\"out\",proto=\"udp\"",
		      ts.udp_out_bytes);
	metric_sample(f, "meridian_gossip_bytes_total", "direction=\"in\",proto=\"tcp\"",
		      ts.tcp_in_bytes);
	metric_sample(f, "meridian_gossip_bytes_total", "direction=\"out\",proto=\"tcp\"",
		      ts.tcp_out_bytes);
	metric_head(f, "meridian_gossip_packets_total", "counter",
		    "Gossip datagrams, by direction.");
	metric_sample1(f, "meridian_gossip_packets_total", "direction", "in", ts.udp_in_packets);
	metric_sample1(f, "meridian_gossip_packets_total", "direction", "out", ts.udp_out_packets);

	metric_one(f, "meridian_pushpull_total", "counter", "Push-pull exchanges completed.",
		   gs.pushpulls);
	metric_one(f, "meridian_broadcasts_dropped_total", "counter",
		   "Broadcasts dropped at the queue bound.", gs.broadcasts_dropped);
	metric_one(f, "meridian_implausible_total", "counter",
		   "Messages dropped for an incarnation or version jumping too far ahead.",
		   gs.implausible);
	metric_one(f, "meridian_user_stale_total", "counter",
		   "User data dropped because it came from another process of its node.",
		   gs.user_stale);
	metric_head(f, "meridian_pushpull_omitted_total", "counter",
		    "Push-pull content left out to fit the stream bound.");
	metric_sample1(f, "meridian_pushpull_omitted_total", "what", "members",
		       gs.pushpull_omitted_members);
	metric_sample1(f, "meridian_pushpull_omitted_total", "what", "user_data",
		       gs.pushpull_omitted_user);
	metric_one(f, "meridian_local_health", "gauge",
		   "Lifeguard local health score (0 = healthy).", gs.health);
	metric_one(f, "meridian_http_requests_total", "counter", "Local API requests served.",
		   hs.requests);
	metric_one(f, "meridian_primary_region_conflict", "gauge",
		   "1 while live members disagree on PRIMARY_REGION (a configuration error).",
		   rs.primary_values > 1);
	metric_one(f, "meridian_primary_region_values", "gauge",
		   "Distinct PRIMARY_REGION values among live members (1 = agreement).",
		   rs.primary_values);
	metric_one(f, "meridian_region_bad_tags", "gauge",
		   "Members whose region or primary_region tag is missing or invalid.",
		   rs.bad_tags);
	/* Beyond docs/api.md's table: the failures behind the figures above. */
	metric_one(f, "meridian_send_errors_total", "counter",
		   "Datagrams that could not be sent.", ts.send_errors);
	metric_one(f, "meridian_streams_failed_total", "counter",
		   "Push-pull streams that failed or were refused.", ts.streams_failed);
	metric_one(f, "meridian_members_refused_total", "counter",
		   "Members refused at the members bound.", gs.members_refused);
	if (fclose(f) != 0 || body == NULL) {
		free(body);
		respond_json(req, 500, NULL, NULL);
		return;
	}
	http_respond(req, 200, METRICS_TYPE, body, len);
	free(body);
}

/* ------------------------------------------------------------------ */
/* Routing                                                             */
/* ------------------------------------------------------------------ */

enum route { R_MEMBERS, R_SELF, R_LEAVE, R_HEALTHZ, R_READYZ, R_METRICS };

static const struct {
	const char *path;
	const char *method;
	enum route route;
} routes[] = {
	{ "/v1/members", "GET", R_MEMBERS }, { "/v1/self", "GET", R_SELF },
	{ "/v1/leave", "POST", R_LEAVE },    { "/healthz", "GET", R_HEALTHZ },
	{ "/readyz", "GET", R_READYZ },      { "/metrics", "GET", R_METRICS },
};

static void api_handle(void *ctx, struct http_request *req, const struct http_request_view *v)
{
	struct api *api = ctx;
	size_t i;

	for (i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
		if (strcmp(v->path, routes[i].path) == 0)
			break;
	if (i == sizeof(routes) / sizeof(routes[0])) {
		respond_error(req, 404, "not_found", NULL, "no such path: %.200s", v->path);
		return;
	}
	if (strcmp(v->method, routes[i].method) != 0) {
		char allow[32];

		snprintf(allow, sizeof(allow), "Allow: %s\r\n", routes[i].method);
		respond_error(req, 405, "method_not_allowed", allow, "%s wants %s, not %.16s",
			      routes[i].path, routes[i].method, v->method);
		return;
	}
	switch (routes[i].route) {
	case R_MEMBERS:
		route_members(api, req, v);
		break;
	case R_SELF:
		route_self(api, req);
		break;
	case R_LEAVE:
		route_leave(api, req);
		break;
	case R_HEALTHZ:
		respond_json(req, 200, json_pack("{s:b}", "ok", 1), NULL);
		break;
	case R_READYZ:
		route_readyz(api, req);
		break;
	case R_METRICS:
		route_metrics(api, req);
		break;
	}
}

int api_start(uv_loop_t *loop, const char *addr, struct agent *a, struct api **out)
{
	struct api *api = calloc(1, sizeof(*api));
	int rc;

	*out = NULL;
	if (api == NULL)
		return UV_ENOMEM;
	api->agent = a;
	rc = http_server_start(loop, addr, API_CONNS_MAX, api_handle, api, &api->server);
	if (rc < 0) {
		free(api);
		return rc;
	}
	*out = api;
	return 0;
}

void api_stop(struct api *api)
{
	if (api == NULL)
		return;
	http_server_stop(api->server);
	free(api);
}
