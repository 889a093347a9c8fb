/*
 * cmd/api.c - the local API's routes (docs/api.md is the contract the CLI
 * and monitoring code against).
 *
 * Every route but one answers synchronously from the agent's in-memory
 * state: the membership view is small (bounded by members_max) and reading
 * it takes microseconds.  POST /v1/rpc is the exception: its answer waits
 * for the call (region/rpc.h), so the request is kept on a list until the
 * result comes, and api_stop() answers whatever is left (unavailable).
 * The target is chosen by agent_choose() on a freshly refreshed table
 * (round-trip times move); a connection refused before the request left
 * sends it to the next candidate of a region, never after it may have run.
 * A call to this node runs through the method runner directly, the same
 * seam the RPC server uses, so it behaves the same without the network.
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
#include "cmd/changes.h"
#include "cmd/config.h"
#include "cmd/elect.h"
#include "cmd/events.h"
#include "cmd/http_server.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "region/handlers.h"
#include "region/region.h"
#include "region/rpc.h"

#ifndef MERIDIAN_VERSION
#define MERIDIAN_VERSION "0.0.0"
#endif

#define JSON_TYPE "application/json"
#define METRICS_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct rpc_call;

struct api {
	struct agent *agent;
	struct http_server *server;
	struct rpc_call *calls;     /* POST /v1/rpc waiting for their answer */
};

/* ------------------------------------------------------------------ */
/* Answers                                                             */
/* ------------------------------------------------------------------ */

void api_respond_json(struct http_request *req, int status, json_t *root,
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
	api_respond_json(req, status,
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
		api_respond_json(req, 500, NULL, NULL);
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
	api_respond_json(req, 200, arr, NULL);
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

/* The leader's consumer, for `meridian info`; null elsewhere. */
static json_t *replication_json(struct agent *a)
{
	struct changes_stats s;

	if (agent_changes(a) == NULL)
		return json_null();
	changes_stats_get(agent_changes(a), &s);
	if (!s.consuming && s.outbox_txns == 0)
		return json_null();
	return json_pack("{s:b,s:I,s:f,s:I,s:I,s:I}", "consuming", s.consuming, "lag_bytes",
			 (json_int_t)(s.server_lsn > s.confirmed_lsn && s.confirmed_lsn ?
				      s.server_lsn - s.confirmed_lsn : 0),
			 "lag_seconds", s.lag_seconds, "outbox_transactions",
			 (json_int_t)s.outbox_txns, "transactions", (json_int_t)s.txns_in,
			 "changes", (json_int_t)s.events_in);
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
	api_respond_json(req, 200,
			 json_pack("{s:s,s:s,s:s,s:s,s:b,s:s,s:I,s:s,s:{s:i,s:i},s:s,s:o,"
				   "s:{s:I,s:I,s:I,s:I},s:b,s:b,s:o,s:o,s:o,s:s?,s:o}",
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
				   "leader", agent_elect(a) ? elect_leader_json(agent_elect(a)) :
					     json_null(),
				   "replication", replication_json(a),
				   "regions", regions_json(rt),
				   "cluster_primary_region", region_cluster_primary(rt),
				   "primary_conflict", primary_conflict_json(rt)),
			 NULL);
}

static void route_leader(struct api *api, struct http_request *req)
{
	struct elect *el = agent_elect(api->agent);

	if (el == NULL) {
		respond_error(req, 503, "unavailable", NULL, "the agent is stopping");
		return;
	}
	api_respond_json(req, 200, elect_leader_json(el), NULL);
}

/* GET /v1/events[?types=member,leader]: server-sent events. */
static void route_events(struct api *api, struct http_request *req,
			 const struct http_request_view *v)
{
	struct events *ev = agent_events(api->agent);
	struct elect *el = agent_elect(api->agent);
	char types[64] = "";

	if (ev == NULL) {
		respond_error(req, 503, "unavailable", NULL, "the agent is stopping");
		return;
	}
	/* ?changes=1 is the short form of types=change. */
	if (http_query_get(v->query, "changes", types, sizeof(types)) && strcmp(types, "1") == 0)
		snprintf(types, sizeof(types), "change");
	else
		types[0] = '\0';
	if (types[0] == '\0' && http_query_get(v->query, "types", types, sizeof(types)) &&
	    types[0] == '\0') {
		respond_error(req, 400, "bad_request", NULL, "types: one or more of member, "
			      "leader, change, comma-separated");
		return;
	}
	/* A new subscriber first hears who leads now. */
	events_subscribe(ev, req, types, el && (types[0] == '\0' || strstr(types, "leader")) ?
			 elect_leader_event(el) : NULL);
}

static void route_leave(struct api *api, struct http_request *req)
{
	agent_leave_start(api->agent, "POST /v1/leave");
	api_respond_json(req, 202, json_pack("{s:b}", "leaving", 1), NULL);
}

/* Readiness is membership (joined, not leaving); the databases are
 * reported beside it, not folded in: a region whose replica is down still
 * forwards writes and answers RPC, and its reads fail fast on their own. */
static void route_readyz(struct api *api, struct http_request *req)
{
	struct sqlfront *sql = agent_sql(api->agent);
	json_t *dbs = sql ? sqlfront_status_json(sql) : json_null();
	const char *reason = NULL;

	if (agent_ready(api->agent, &reason))
		api_respond_json(req, 200, json_pack("{s:b,s:o}", "ready", 1, "databases", dbs),
				 NULL);
	else
		api_respond_json(req, 503,
				 json_pack("{s:b,s:s,s:o}", "ready", 0, "reason",
					   reason ? reason : "joining", "databases", dbs),
				 "Retry-After: 1\r\n");
}

static void route_sql(struct api *api, struct http_request *req,
		      const struct http_request_view *v)
{
	struct sqlfront *sql = agent_sql(api->agent);

	if (sql == NULL) {
		respond_error(req, 503, "unavailable", NULL, "the agent is stopping");
		return;
	}
	sqlfront_http(sql, req, v);
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

static void election_metrics(FILE *f, struct elect *el)
{
	struct elect_stats s;

	elect_stats_get(el, &s);
	metric_one(f, "meridian_leader", "gauge", "1 while this node is the leader.", s.is_leader);
	metric_one(f, "meridian_leader_term", "gauge",
		   "Term of the leader this node knows (0: none known).", s.term);
	metric_one(f, "meridian_election_max_term", "gauge",
		   "Highest election term this node has seen.", s.max_term);
	metric_one(f, "meridian_elections_won_total", "counter",
		   "Times this node became leader.", s.elections_won);
	metric_one(f, "meridian_leader_step_downs_total", "counter",
		   "Times this node stopped being leader.", s.step_downs);
	metric_one(f, "meridian_leader_changes_total", "counter",
		   "Changes of the known leader (name or term).", s.leader_changes);
	metric_one(f, "meridian_lease_requests_total", "counter",
		   "Lease statements sent to the primary database.", s.lease_requests);
	metric_one(f, "meridian_lease_failures_total", "counter",
		   "Lease statements that got no answer (unreachable, timeout, error).",
		   s.lease_failures);
	metric_one(f, "meridian_lease_late_grants_total", "counter",
		   "Leases granted after their own deadline, released unused.",
		   s.late_grants_released);
	metric_one(f, "meridian_lease_db_connected", "gauge",
		   "1 while the lease connection to the primary database is up.",
		   s.db_connected);
	metric_one(f, "meridian_leader_announcements_bad_total", "counter",
		   "Leader announcements from peers that could not be decoded.", s.announce_bad);
	metric_one(f, "meridian_on_leader_started_total", "counter",
		   "--on-leader processes started.", s.hooks_started);
	metric_one(f, "meridian_on_leader_failed_total", "counter",
		   "--on-leader processes that could not be started.", s.hooks_failed);
}

static void sql_metrics(FILE *f, struct sqlfront *sql)
{
	struct sqlfront_stats s;

	sqlfront_stats_get(sql, &s);
	metric_head(f, "meridian_sql_requests_total", "counter",
		    "SQL statements run by this agent, by kind (forwarded: writes sent to the "
		    "primary region).");
	metric_sample1(f, "meridian_sql_requests_total", "kind", "read", s.reads);
	metric_sample1(f, "meridian_sql_requests_total", "kind", "write", s.writes);
	metric_sample1(f, "meridian_sql_requests_total", "kind", "forwarded", s.forwarded);
	metric_one(f, "meridian_sql_failures_total", "counter",
		   "SQL requests answered with an error.", s.failures);
	metric_one(f, "meridian_sql_waits_total", "counter",
		   "Requests that waited for the replica to replay an LSN.", s.waits);
	metric_one(f, "meridian_sql_wait_timeouts_total", "counter",
		   "Waits that ended in replica_lag_timeout.", s.wait_timeouts);
	metric_one(f, "meridian_sql_waiters", "gauge", "Requests waiting for the replica now.",
		   s.waiters);
	metric_one(f, "meridian_replica_replay_lsn", "gauge",
		   "The local replica's replay LSN, last seen (0 unknown).", s.replay_lsn);
	metric_one(f, "meridian_replica_lag_bytes", "gauge",
		   "Highest LSN written through this agent less the replica's replay LSN.",
		   s.lag_bytes);
	metric_head(f, "meridian_replica_lag_seconds", "gauge",
		    "now() - pg_last_xact_replay_timestamp() on the replica (-1 unknown; grows "
		    "while the primary is idle).");
	fprintf(f, "meridian_replica_lag_seconds %.3f\n", s.lag_seconds);
}

static void changes_metrics(FILE *f, struct changes *ch)
{
	struct changes_stats s;

	changes_stats_get(ch, &s);
	metric_one(f, "meridian_replication_consuming", "gauge",
		   "1 while this node (the leader) consumes the logical slot.", s.consuming);
	metric_one(f, "meridian_replication_transactions_total", "counter",
		   "Transactions read from the slot by this node as leader.", s.txns_in);
	metric_one(f, "meridian_replication_changes_total", "counter",
		   "Changes read from the slot by this node as leader.", s.events_in);
	metric_one(f, "meridian_replication_outbox_transactions", "gauge",
		   "Transactions buffered, not yet acknowledged by every member.", s.outbox_txns);
	metric_one(f, "meridian_replication_outbox_bytes", "gauge",
		   "Bytes of those transactions.", s.outbox_bytes);
	metric_one(f, "meridian_replication_lag_bytes", "gauge",
		   "The server's WAL end less the position confirmed to the slot (leader).",
		   s.server_lsn > s.confirmed_lsn && s.confirmed_lsn ? s.server_lsn - s.confirmed_lsn :
		   0);
	metric_head(f, "meridian_replication_lag_seconds", "gauge",
		    "Age of the oldest commit not yet acknowledged by every member (leader; -1 "
		    "when not leading).");
	fprintf(f, "meridian_replication_lag_seconds %.3f\n", s.lag_seconds);
	metric_one(f, "meridian_replication_slot_busy_total", "counter",
		   "Times the slot was still held by a previous consumer (55006).", s.slot_busy);
	metric_one(f, "meridian_replication_pauses_total", "counter",
		   "Times the consumer paused on a full outbox.", s.pauses);
	metric_one(f, "meridian_changes_delivered_total", "counter",
		   "Change events delivered to this node's subscribers.", s.delivered);
	metric_one(f, "meridian_changes_duplicates_total", "counter",
		   "Transactions received again after a leader change, dropped.", s.duplicates);
	metric_one(f, "meridian_changes_stale_total", "counter",
		   "Batches refused from a deposed leader's older term.", s.stale);
	metric_one(f, "meridian_replication_changes_too_large_total", "counter",
		   "Single changes larger than a transport frame even without their values: "
		   "logged, not fanned out.", s.too_large);
	metric_one(f, "meridian_changes_members_stuck_total", "counter",
		   "Members that acknowledged nothing for --changes-stuck-timeout and stopped "
		   "holding back the slot.", s.stuck);
	metric_one(f, "meridian_changes_skipped_total", "counter",
		   "Transactions (or parts) members came back too late to get.", s.skipped);
	metric_one(f, "meridian_changes_missed_total", "counter",
		   "Transactions (or parts) this node was told it will not get (gap events).",
		   s.missed);
	metric_one(f, "meridian_replication_values_omitted_total", "counter",
		   "Values left out of changes too large to fan out whole (named in "
		   "\"omitted\").", s.values_omitted);
	metric_head(f, "meridian_on_change_events_total", "counter",
		    "Change events for the --on-change command, by outcome (dropped: it was "
		    "not running, or too slow).");
	metric_sample1(f, "meridian_on_change_events_total", "outcome", "written",
		       s.onchange_written);
	metric_sample1(f, "meridian_on_change_events_total", "outcome", "dropped",
		       s.onchange_dropped);
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
		api_respond_json(req, 500, NULL, NULL);
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
	rpc_metrics_print(agent_rpc_metrics(a), f);
	if (agent_elect(a))
		election_metrics(f, agent_elect(a));
	if (agent_sql(a))
		sql_metrics(f, agent_sql(a));
	if (agent_changes(a))
		changes_metrics(f, agent_changes(a));
	if (agent_events(a)) {
		struct events_stats es;

		events_stats_get(agent_events(a), &es);
		metric_one(f, "meridian_events_published_total", "counter",
			   "Events published to the event stream.", es.published);
		metric_one(f, "meridian_event_subscribers", "gauge",
			   "GET /v1/events streams open now.", es.subscribers);
		metric_one(f, "meridian_event_subscribers_dropped_total", "counter",
			   "Event subscribers cut off for falling more than 1 MiB behind.",
			   es.slow_dropped);
	}
	if (fclose(f) != 0 || body == NULL) {
		free(body);
		api_respond_json(req, 500, NULL, NULL);
		return;
	}
	http_respond(req, 200, METRICS_TYPE, body, len);
	free(body);
}

/* ------------------------------------------------------------------ */
/* Region RPC                                                          */
/* ------------------------------------------------------------------ */

#define RPC_TIMEOUT_MS_DEFAULT 5000
#define RPC_TRIES_MAX 8           /* candidates tried when connections are refused */

/* One POST /v1/rpc, from the request until its answer.  Kept on the
 * API's list so that api_stop() can answer (and cancel) what is left. */
struct rpc_call {
	struct api *api;                 /* NULL once the API has stopped */
	struct http_request *req;
	struct rpc_call *prev, *next;

	enum region_target_kind kind;
	char name[GOSSIP_NAME_MAX + 1];  /* region or node named by the caller */
	char method[RPC_METHOD_MAX + 1];
	struct rpc_buf args;
	uint32_t timeout_ms;
	uint64_t started_ns;             /* uv_hrtime() at the request */

	char tried[RPC_TRIES_MAX][GOSSIP_NAME_MAX + 1];
	size_t ntried;
	char node[GOSSIP_NAME_MAX + 1];  /* the target of the current attempt */
	char region[REGION_NAME_MAX + 1];

	/* the local short-cut */
	bool local, starting, done;
	void *job;
};

static void rpc_call_link(struct api *api, struct rpc_call *c)
{
	c->api = api;
	c->next = api->calls;
	if (api->calls)
		api->calls->prev = c;
	api->calls = c;
}

static void rpc_call_free(struct rpc_call *c)
{
	if (c->api) {
		if (c->prev)
			c->prev->next = c->next;
		else
			c->api->calls = c->next;
		if (c->next)
			c->next->prev = c->prev;
	}
	rpc_buf_free(&c->args);
	free(c);
}

/* @c is answered: free it, unless start() of the local short-cut is still
 * running (it writes *job on return); rpc_call_local() frees it then. */
static void rpc_call_finish(struct rpc_call *c)
{
	c->done = true;
	if (!c->starting)
		rpc_call_free(c);
}

static double rpc_call_seconds(const struct rpc_call *c)
{
	return (double)(uv_hrtime() - c->started_ns) / 1e9;
}

/* The HTTP status of an error code (docs/api.md's table). */
static int rpc_http_status(const char *code)
{
	static const struct {
		const char *code;
		int status;
	} map[] = {
		{ "no_such_region", 503 }, { "no_nodes_in_region", 503 },
		{ "no_such_node", 503 },   { "unavailable", 503 },
		{ "no_leader", 503 },      { "timeout", 504 },
		{ "overloaded", 429 },     { "no_such_method", 404 },
		{ "version_mismatch", 502 }, { "remote_error", 502 },
		{ "bad_request", 400 },    { "connection_lost", 502 },
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(map[i].code, code) == 0)
			return map[i].status;
	return 502;   /* a code from a newer peer: it answered, with an error */
}

/* Answers @c with an error, counts it, frees @c. */
static void rpc_call_fail(struct rpc_call *c, const char *code, const char *message,
			  const char *node, const char *version, uint32_t retry_after_ms)
{
	char extra[48] = "";
	json_t *err = json_pack("{s:s,s:s}", "code", code, "message", message);

	if (err && node && *node)
		json_object_set_new(err, "node", json_string(node));
	if (err && version && *version)
		json_object_set_new(err, "version", json_string(version));
	if (err && retry_after_ms) {
		json_object_set_new(err, "retry_after_ms", json_integer(retry_after_ms));
		snprintf(extra, sizeof(extra), "Retry-After: %u\r\n",
			 (retry_after_ms + 999) / 1000);
	}
	if (c->local && c->api)
		rpc_metrics_observe(agent_rpc_metrics(c->api->agent), RPC_SIDE_CLIENT, c->method,
				    code, rpc_call_seconds(c));
	api_respond_json(c->req, rpc_http_status(code),
			 err ? json_pack("{s:o}", "error", err) : NULL, *extra ? extra : NULL);
	rpc_call_finish(c);
}

/* Answers @c with @result: JSON when it parses as JSON, else a string. */
static void rpc_call_ok(struct rpc_call *c, const uint8_t *result, size_t len)
{
	json_t *v = json_loadb((const char *)result, len, JSON_DECODE_ANY, NULL);

	if (v == NULL)
		v = json_stringn((const char *)result, len);
	if (v == NULL) {
		rpc_call_fail(c, "remote_error", "the result is neither JSON nor UTF-8 text",
			      c->node, NULL, 0);
		return;
	}
	if (c->local && c->api)
		rpc_metrics_observe(agent_rpc_metrics(c->api->agent), RPC_SIDE_CLIENT, c->method,
				    "ok", rpc_call_seconds(c));
	api_respond_json(c->req, 200, json_pack("{s:b,s:s,s:s,s:o}", "ok", 1, "node", c->node,
						"region", c->region, "result", v), NULL);
	rpc_call_finish(c);
}

static void rpc_call_attempt(struct rpc_call *c);

static void rpc_remote_done(void *ctx, const struct rpc_result *r)
{
	struct rpc_call *c = ctx;
	char msg[RPC_MESSAGE_MAX + 128];

	if (c->api == NULL) {     /* answered by api_stop() already */
		rpc_call_free(c);
		return;
	}
	switch (r->status) {
	case RPC_OK:
		rpc_call_ok(c, r->result, r->result_len);
		return;
	case RPC_FAILED:
		rpc_call_fail(c, r->code, *r->message ? r->message : r->code, r->node,
			      r->node_version, r->retry_after_ms);
		return;
	case RPC_NOT_SENT:
		/* Never ran: another node of the region may do, the named node not. */
		if (c->kind == REGION_TARGET_REGION || c->kind == REGION_TARGET_PRIMARY) {
			LOG(LOG_INFO, "rpc", "%s: could not reach %s (%s); trying another node",
			    c->method, c->node, uv_strerror(r->err));
			rpc_call_attempt(c);
			return;
		}
		snprintf(msg, sizeof(msg), "node %s could not be reached: %s", c->node,
			 uv_strerror(r->err));
		rpc_call_fail(c, "unavailable", msg, c->node, NULL, 0);
		return;
	case RPC_CONN_LOST:
		snprintf(msg, sizeof(msg), "the connection to %s broke after the call was sent "
			 "(it may have run): %s", c->node, uv_strerror(r->err));
		rpc_call_fail(c, "connection_lost", msg, c->node, NULL, 0);
		return;
	}
}

static void rpc_local_reply(void *ctx, const struct rpc_serve_reply *r)
{
	struct rpc_call *c = ctx;

	if (c->api == NULL) {     /* cannot happen: api_stop() cancels first */
		rpc_call_finish(c);
		return;
	}
	if (r->error == RPC_E_NONE) {
		rpc_call_ok(c, r->result, r->result_len);
	} else {
		char msg[RPC_MESSAGE_MAX + 1];
		size_t n = rpc_message_clean(msg, sizeof(msg) - 1, r->message ? r->message : "",
					     r->message ? strlen(r->message) : 0);

		msg[n] = '\0';   /* rpc_message_clean() does not terminate */
		rpc_call_fail(c, rpc_error_name(r->error), *msg ? msg : rpc_error_name(r->error),
			      c->node, MERIDIAN_VERSION, r->retry_after_ms);
	}
}

/* Runs @c here through the method runner, as the server would. */
static void rpc_call_local(struct rpc_call *c)
{
	struct agent *a = c->api->agent;
	struct rpc_serve_ops ops = agent_rpc_local(a);
	struct rpc_serve_call call = {
		.method = c->method,
		.args = c->args.data,
		.args_len = c->args.len,
		.deadline_ms = c->timeout_ms,
		.origin_node = agent_node(a),
		.origin_region = agent_region(a),
	};
	void *job = NULL;

	c->local = true;
	c->starting = true;
	/* The built-ins reply inside start(): rpc_call_finish() leaves @c to us. */
	ops.start(ops.ctx, &call, rpc_local_reply, c, &job);
	c->starting = false;
	if (c->done) {
		rpc_call_free(c);
		return;
	}
	c->job = job;
}

/* Chooses the next target of @c and calls it (or answers why not). */
static void rpc_call_attempt(struct rpc_call *c)
{
	struct agent *a = c->api->agent;
	const char *exclude[RPC_TRIES_MAX];
	struct region_target target = { c->kind, *c->name ? c->name : NULL };
	struct elect *el = agent_elect(a);
	struct region_choice ch;
	struct rpc_client *client;
	uint64_t elapsed_ms = (uv_hrtime() - c->started_ns) / 1000000;
	char msg[REGION_MESSAGE_MAX + 64];
	int rc;

	if (elapsed_ms >= c->timeout_ms) {
		rpc_call_fail(c, "timeout", "the timeout passed before any node could be reached",
			      c->node, NULL, 0);
		return;
	}
	if (c->ntried == RPC_TRIES_MAX) {
		snprintf(msg, sizeof(msg), "%zu nodes tried, none could be reached", c->ntried);
		rpc_call_fail(c, "unavailable", msg, NULL, NULL, 0);
		return;
	}
	for (size_t i = 0; i < c->ntried; i++)
		exclude[i] = c->tried[i];
	/* The leader is whoever this node knows to lead now. */
	if (c->kind == REGION_TARGET_LEADER)
		target.name = el ? elect_leader_name(el) : NULL;
	rc = agent_choose(a, &target, exclude, c->ntried, &ch);
	if (rc == REGION_ERR_EXHAUSTED) {
		snprintf(msg, sizeof(msg), "no node could be reached (%zu tried)", c->ntried);
		rpc_call_fail(c, "unavailable", msg, NULL, NULL, 0);
		return;
	}
	if (rc < 0) {
		const char *code = region_err_name(rc);

		if (rc == REGION_ERR_BAD_REGION || rc == REGION_ERR_BAD_TARGET || code == NULL)
			code = "bad_request";
		rpc_call_fail(c, code, ch.message,
			      c->kind == REGION_TARGET_NODE ? c->name : NULL, NULL, 0);
		return;
	}
	snprintf(c->node, sizeof(c->node), "%s", ch.member->name);
	snprintf(c->region, sizeof(c->region), "%s", ch.member->region);
	if (ch.local) {
		rpc_call_local(c);
		return;
	}
	snprintf(c->tried[c->ntried++], sizeof(c->tried[0]), "%s", ch.member->name);
	client = agent_rpc_client(a);
	rc = client ? rpc_client_call(client, ch.member->name, ch.member->addr, c->method,
				      c->args.data, c->args.len,
				      (uint32_t)(c->timeout_ms - elapsed_ms), rpc_remote_done, c) :
		      -ESHUTDOWN;
	if (rc == 0)
		return;
	if (rc == -EBUSY)
		rpc_call_fail(c, "overloaded", "too many calls in flight from this agent", NULL,
			      NULL, 100);
	else if (rc == -ESHUTDOWN)
		rpc_call_fail(c, "unavailable", "this agent is stopping", NULL, NULL, 0);
	else if (rc == -EMSGSIZE)
		rpc_call_fail(c, "bad_request", "the arguments are too large", NULL, NULL, 0);
	else
		rpc_call_fail(c, "bad_request", "the call was refused (bad method, name or "
			      "address)", c->node, NULL, 0);
}

/* Parses the body of POST /v1/rpc into @c; on failure answers 400 and
 * returns false (@c is then freed). */
static bool rpc_call_parse(struct rpc_call *c, const struct http_request_view *v)
{
	static const char *const kinds[] = { "region", "primary", "leader", "node" };
	json_error_t jerr;
	json_t *root = json_loadb(v->body, v->body_len, 0, &jerr);
	json_t *method, *args, *timeout;
	char err[256] = "";
	size_t given = 0;
	char *args_text = NULL;
	int rc;

	if (!json_is_object(root)) {
		snprintf(err, sizeof(err), "the body must be a JSON object: %s",
			 root ? "not an object" : jerr.text);
		goto bad;
	}
	for (size_t i = 0; i < 4; i++) {
		json_t *t = json_object_get(root, kinds[i]);

		if (t == NULL || json_is_null(t) || json_is_false(t))
			continue;
		given++;
		c->kind = (enum region_target_kind)i;
		if (i == 1 || i == 2) {
			if (!json_is_true(t)) {
				snprintf(err, sizeof(err), "\"%s\" must be true", kinds[i]);
				goto bad;
			}
		} else if (!json_is_string(t) || json_string_length(t) == 0 ||
			   json_string_length(t) > GOSSIP_NAME_MAX) {
			snprintf(err, sizeof(err), "\"%s\" must be a non-empty name", kinds[i]);
			goto bad;
		} else {
			snprintf(c->name, sizeof(c->name), "%s", json_string_value(t));
		}
	}
	if (given != 1) {
		snprintf(err, sizeof(err), "give exactly one target: \"region\", \"primary\", "
			 "\"leader\" or \"node\"");
		goto bad;
	}
	method = json_object_get(root, "method");
	if (!json_is_string(method) ||
	    !rpc_method_valid(json_string_value(method), json_string_length(method))) {
		snprintf(err, sizeof(err), "\"method\" must be a method name (1 to %d of "
			 "[a-z0-9_.-]...)", RPC_METHOD_MAX);
		goto bad;
	}
	snprintf(c->method, sizeof(c->method), "%s", json_string_value(method));
	timeout = json_object_get(root, "timeout_ms");
	c->timeout_ms = RPC_TIMEOUT_MS_DEFAULT;
	if (timeout && !json_is_null(timeout)) {
		if (!json_is_integer(timeout) || json_integer_value(timeout) < 1 ||
		    json_integer_value(timeout) > (json_int_t)RPC_DEADLINE_MAX_MS) {
			snprintf(err, sizeof(err), "\"timeout_ms\" must be an integer from 1 to %u",
				 RPC_DEADLINE_MAX_MS);
			goto bad;
		}
		c->timeout_ms = (uint32_t)json_integer_value(timeout);
	}
	args = json_object_get(root, "args");
	if (args && !json_is_null(args)) {
		if (!json_is_array(args)) {
			snprintf(err, sizeof(err), "\"args\" must be a JSON array");
			goto bad;
		}
		args_text = json_dumps(args, JSON_COMPACT);
		if (args_text == NULL) {
			snprintf(err, sizeof(err), "\"args\" could not be encoded");
			goto bad;
		}
	}
	rc = rpc_args_from_json(args_text ? args_text : "[]", &c->args, err, sizeof(err));
	free(args_text);
	if (rc < 0) {
		if (rc == -EMSGSIZE)
			snprintf(err, sizeof(err), "\"args\" is too large");
		goto bad;
	}
	json_decref(root);
	return true;
bad:
	json_decref(root);
	respond_error(c->req, 400, "bad_request", NULL, "%s", err);
	rpc_call_free(c);
	return false;
}

static void route_rpc(struct api *api, struct http_request *req,
		      const struct http_request_view *v)
{
	struct rpc_call *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		api_respond_json(req, 500, NULL, NULL);
		return;
	}
	c->req = req;
	c->started_ns = uv_hrtime();
	rpc_call_link(api, c);
	if (rpc_call_parse(c, v))
		rpc_call_attempt(c);
}

/* Answers every call still waiting: the agent is stopping. */
static void rpc_calls_abort(struct api *api)
{
	struct rpc_serve_ops ops = agent_rpc_local(api->agent);

	while (api->calls) {
		struct rpc_call *c = api->calls;

		api->calls = c->next;
		c->prev = c->next = NULL;
		respond_error(c->req, 503, "unavailable", NULL, "the agent is stopping");
		c->api = NULL;
		if (c->local && !c->done) {
			ops.cancel(ops.ctx, c->job);
			rpc_call_free(c);
		}
		/* A remote call is freed by its callback, which comes. */
	}
}

/* ------------------------------------------------------------------ */
/* Routing                                                             */
/* ------------------------------------------------------------------ */

enum route { R_MEMBERS, R_SELF, R_LEAVE, R_HEALTHZ, R_READYZ, R_METRICS, R_RPC, R_LEADER,
	     R_EVENTS, R_SQL };

static const struct {
	const char *path;
	const char *method;
	enum route route;
} routes[] = {
	{ "/v1/members", "GET", R_MEMBERS }, { "/v1/self", "GET", R_SELF },
	{ "/v1/leave", "POST", R_LEAVE },    { "/healthz", "GET", R_HEALTHZ },
	{ "/readyz", "GET", R_READYZ },      { "/metrics", "GET", R_METRICS },
	{ "/v1/rpc", "POST", R_RPC },        { "/v1/leader", "GET", R_LEADER },
	{ "/v1/events", "GET", R_EVENTS },   { "/v1/sql", "POST", R_SQL },
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
		api_respond_json(req, 200, json_pack("{s:b}", "ok", 1), NULL);
		break;
	case R_READYZ:
		route_readyz(api, req);
		break;
	case R_METRICS:
		route_metrics(api, req);
		break;
	case R_RPC:
		route_rpc(api, req, v);
		break;
	case R_LEADER:
		route_leader(api, req);
		break;
	case R_EVENTS:
		route_events(api, req, v);
		break;
	case R_SQL:
		route_sql(api, req, v);
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
	rpc_calls_abort(api);
	http_server_stop(api->server);
	free(api);
}
