/*
 * cmd/agent.c - `meridian agent`: the wiring of the loop, seal, transport,
 * gossip core and local API, joining, and the graceful leave.
 *
 * Configuration is cmd/config.c's: flags, environment and defaults are
 * all checked there before anything starts, and a bad value is a usage
 * error (exit 2) naming the flag or variable it came from.  This file
 * only turns a checked struct config into running handles.
 *
 * Joining.  Each round asks every seed for a push-pull join at once; the
 * first that answers makes us joined (and ready).  When a whole round
 * fails we wait for lib/backoff.h's delay (1 s doubling to 30 s, full
 * jitter) and try again.  The backoff exists only between the first
 * failure and the next success, so a seed outage an hour after start does
 * not inherit an hour of doubling.  Our own address is never a seed (a
 * shared seed list usually names every node, us included).
 *
 * Leaving.  SIGTERM, SIGINT or POST /v1/leave: readiness turns false
 * ("leaving") at once so load balancers stop sending work.  With no RPC in
 * flight the leave is announced at once (below).  Otherwise we gossip
 * the tag leaving=1 (region/region.h: callers stop choosing us as an RPC
 * target).  The tag needs a few gossip rounds of its own before the leave
 * is announced: the core's broadcast queue keeps one message per member,
 * so a leave queued right behind the tag change would replace it and no
 * peer would ever see the node leaving, only left.  During that pause
 * (two gossip intervals, at most a quarter of --leave-timeout) the RPC
 * server refuses new calls with unavailable and a retry-after, and the
 * calls in flight are drained, for at most --drain-timeout: the leave is
 * announced once both are over, so a caller whose call is running gets
 * its answer, and one that arrives late is told to go elsewhere rather
 * than left waiting on a node that is about to vanish.  Then we mark
 * ourselves left in the core, which tells every live member directly and
 * keeps gossiping it; when the core says the leave has spread (or
 * --leave-timeout, counted from the end of the drain, passes) we stop the
 * RPC client and server, the API, the method runner and the transport,
 * let libuv close every handle and exit 0.  A second signal means the
 * operator is out of patience: _exit(1) at once.
 *
 * Regions.  The agent keeps a region table (region/region.h) for the API
 * and RPC target choice (cmd/api.c, POST /v1/rpc).  A membership event
 * only marks it stale; it is refreshed when read (agent_regions()) and by
 * a 1 s timer.  Two
 * reasons not to refresh inside the event: events arrive from inside the
 * core, in the middle of a merge, where reading the view is not allowed
 * (gossip.h: no callback may call back into the core); and one push-pull
 * from a large cluster brings one JOIN per member, so refreshing per event
 * would cost O(N^2 log N) where one refresh costs O(N log N).  The timer
 * bounds how late the log hears about a disagreement; readers never see
 * membership older than the last event (round-trip times are only as
 * fresh as the last refresh: RPC target choice refreshes first).
 *
 * PRIMARY_REGION disagreement is a configuration error that we report,
 * never resolve: an ERROR line when it starts or its set of values
 * changes (each value, how many live nodes hold it, one of them), a
 * NOTICE when it ends.  At most one such line per CONFLICT_LOG_MS: a
 * change inside that window is reported at its end, with the number of
 * changes, even if the cluster flapped back to what was last said, so a
 * flapping configuration neither floods the log nor goes unreported.
 *
 * Exit codes: 0 after a graceful leave; 2 for usage and configuration
 * errors; 1 when the agent cannot start (address in use, out of memory).
 */
#include "cmd/agent.h"

#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "cmd/api.h"
#include "cmd/commands.h"
#include "cmd/changes.h"
#include "cmd/config.h"
#include "cmd/sql.h"
#include "election/election.h"
#include "gossip/tags.h"
#include "lib/addr.h"
#include "lib/backoff.h"
#include "lib/clock.h"
#include "lib/log.h"

#ifndef MERIDIAN_VERSION
#define MERIDIAN_VERSION "0.0.0"
#endif

#define LEAVE_CHECK_MS 10          /* how often we ask whether the leave spread */
#define JOIN_BACKOFF_INITIAL_MS 1000
#define JOIN_BACKOFF_MAX_MS 30000
#define FRAME_MAX (1024 * 1024)
#define INBOUND_MAX 32
#define LEAVE_MARK_ROUNDS 2        /* gossip intervals the leaving tag gets alone */
#define REGION_REFRESH_MS 1000     /* a stale region table waits this long, at most */
#define CONFLICT_LOG_MS 10000      /* at most one PRIMARY_REGION line per this */
#define CONFLICT_LOG_VALUES 8      /* values a conflict line names ("and N more") */
/* "v1 v2 ... +N": the values named, sorted, and how many more there are. */
#define CONFLICT_SIG_MAX (CONFLICT_LOG_VALUES * (REGION_NAME_MAX + 1) + 24)

struct agent {
	uv_loop_t loop;
	struct config cfg;           /* checked; its key is wiped once in the seal */
	struct seal *seal;
	struct transport *tr;
	struct gossip *g;
	struct api *api;
	struct rpc_metrics *rpc_metrics;
	struct rpc_handlers *handlers;
	struct rpc_server *rpc_server;
	struct rpc_client *rpc_client;
	struct events *events;
	struct elect *elect;
	struct sqlfront *sql;
	struct changes *changes;
	struct rpc_serve_ops rpc_ops;    /* sql.write, then the handlers */
	char advertise[GOSSIP_ADDR_MAX + 1];

	uv_signal_t sigterm, sigint;
	uv_timer_t join_timer, leave_timer, region_timer;
	bool handles_open;

	/* joining: the seeds are cfg.seeds, minus ourselves */
	uint64_t round_ids[CONFIG_SEEDS_MAX];   /* 0 = answered */
	size_t round_pending;
	bool round_ok;
	uint32_t round;
	bool joined;
	bool backoff_live;
	struct backoff backoff;

	/* leaving: marked (tag and readiness) at leave_started, announced
	 * to the core at leave_announce_at */
	bool leaving, announced, stopping;
	int signals;
	uint64_t leave_started, leave_announce_at;
	bool drained;                 /* the RPC drain is over */
	uint64_t drained_at;          /* loop ms it ended */

	/* regions: refreshed lazily (see the top of this file) */
	struct region_table *regions;
	bool regions_stale;

	/* PRIMARY_REGION disagreement; a signature is "" while nodes agree */
	char conflict_seen[CONFLICT_SIG_MAX];    /* at the last check */
	char conflict_said[CONFLICT_SIG_MAX];    /* in the last line logged */
	bool conflict_said_once;                 /* a line was ever logged */
	uint64_t conflict_said_at;               /* loop ms of that line */
	uint32_t conflict_changes;               /* changes seen since that line */
};

/* ------------------------------------------------------------------ */
/* Accessors for the API (cmd/agent.h)                                 */
/* ------------------------------------------------------------------ */

const struct gossip *agent_gossip(const struct agent *a)
{
	return a->g;
}

const struct seal *agent_seal(const struct agent *a)
{
	return a->seal;
}

const struct transport *agent_transport(const struct agent *a)
{
	return a->tr;
}

const char *agent_profile(const struct agent *a)
{
	return a->cfg.profile;
}

uint64_t agent_loop_wall_ms(const uv_loop_t *loop, uint64_t loop_ms)
{
	uint64_t now = uv_now(loop), wall = clock_wall_ms();
	uint64_t ago = now > loop_ms ? now - loop_ms : 0;

	return wall > ago ? wall - ago : 0;
}

uint64_t agent_wall_ms(const struct agent *a, uint64_t core_ms)
{
	return agent_loop_wall_ms(&a->loop, core_ms);
}

bool agent_ready(const struct agent *a, const char **reason)
{
	const char *why = NULL;

	if (a->leaving)
		why = "leaving";
	else if (!a->joined && a->cfg.nseeds > 0)
		why = "joining";
	if (reason)
		*reason = why;
	return why == NULL;
}

bool agent_leaving(const struct agent *a)
{
	return a->leaving;
}

struct rpc_client *agent_rpc_client(struct agent *a)
{
	return a->stopping ? NULL : a->rpc_client;
}

struct rpc_metrics *agent_rpc_metrics(struct agent *a)
{
	return a->rpc_metrics;
}

struct rpc_serve_ops agent_rpc_local(struct agent *a)
{
	return a->rpc_ops;
}

struct sqlfront *agent_sql(struct agent *a)
{
	return a->stopping ? NULL : a->sql;
}

struct elect *agent_elect(struct agent *a)
{
	return a->stopping ? NULL : a->elect;
}

struct events *agent_events(struct agent *a)
{
	return a->stopping ? NULL : a->events;
}

const char *agent_node(const struct agent *a)
{
	return a->cfg.node;
}

const char *agent_region(const struct agent *a)
{
	return a->cfg.region;
}

/* ------------------------------------------------------------------ */
/* Regions and PRIMARY_REGION disagreement                             */
/* ------------------------------------------------------------------ */

/* The signature of a disagreement: the values named (at most
 * CONFLICT_LOG_VALUES of the most held), sorted, and how many more; ""
 * when the nodes agree.  Counts are left out on purpose: nodes joining
 * an existing disagreement are not news worth an ERROR line. */
static void conflict_signature(const struct region_primary_vote *votes, size_t shown,
			       size_t total, char *out, size_t outlen)
{
	const char *names[CONFLICT_LOG_VALUES];
	size_t len = 0;

	out[0] = '\0';
	if (total < 2)
		return;
	for (size_t i = 0; i < shown; i++) {
		size_t j = i;

		for (; j > 0 && strcmp(names[j - 1], votes[i].primary) > 0; j--)
			names[j] = names[j - 1];
		names[j] = votes[i].primary;
	}
	for (size_t i = 0; i < shown && len < outlen; i++)
		len += (size_t)snprintf(out + len, outlen - len, "%s%s", i ? " " : "", names[i]);
	if (total > shown && len < outlen)
		snprintf(out + len, outlen - len, " +%zu", total - shown);
}

/* Logs the current state of the disagreement: @votes (@shown of @total). */
static void conflict_log(struct agent *a, const struct region_primary_vote *votes, size_t shown,
			 size_t total)
{
	char list[CONFLICT_LOG_VALUES * (REGION_NAME_MAX + GOSSIP_NAME_MAX + 48) + 32];
	char changes[64] = "";
	size_t len = 0;

	if (a->conflict_changes > 1)
		snprintf(changes, sizeof(changes), " (%u changes in the last %llu s)",
			 a->conflict_changes,
			 a->conflict_said_once ?
			 (unsigned long long)((uv_now(&a->loop) - a->conflict_said_at) / 1000) :
			 (unsigned long long)(CONFLICT_LOG_MS / 1000));
	if (total < 2) {
		const char *agreed = total == 1 ? votes[0].primary : "(none)";

		if (a->conflict_said[0] == '\0')
			/* It started and ended inside one window: still news. */
			LOG(LOG_ERROR, "region", "PRIMARY_REGION conflict came and went%s; live "
			    "nodes now agree on \"%s\": check PRIMARY_REGION on every node",
			    changes, agreed);
		else
			LOG(LOG_NOTICE, "region", "PRIMARY_REGION conflict over%s: every live "
			    "node now says \"%s\"", changes, agreed);
		return;
	}
	for (size_t i = 0; i < shown && len < sizeof(list); i++)
		len += (size_t)snprintf(list + len, sizeof(list) - len,
					"%s\"%s\" on %u node%s (e.g. %s)", i ? ", " : "",
					votes[i].primary, votes[i].count,
					votes[i].count == 1 ? "" : "s", votes[i].example);
	if (total > shown && len < sizeof(list))
		snprintf(list + len, sizeof(list) - len, " and %zu more value(s)", total - shown);
	LOG(LOG_ERROR, "region", "PRIMARY_REGION conflict%s: live nodes disagree on the primary "
	    "region: %s; not resolved: --primary and is_primary follow each node's own "
	    "setting until PRIMARY_REGION is the same everywhere", changes, list);
}

/* Notes a change of the disagreement and logs it, at most once per
 * CONFLICT_LOG_MS (the region timer comes back for what had to wait). */
static void conflict_check(struct agent *a)
{
	struct region_primary_vote votes[CONFLICT_LOG_VALUES];
	size_t total = region_primary_conflict(a->regions, votes, CONFLICT_LOG_VALUES);
	size_t shown = total < CONFLICT_LOG_VALUES ? total : CONFLICT_LOG_VALUES;
	uint64_t now = uv_now(&a->loop);
	char sig[CONFLICT_SIG_MAX];

	conflict_signature(votes, shown, total, sig, sizeof(sig));
	if (strcmp(sig, a->conflict_seen) != 0) {
		memcpy(a->conflict_seen, sig, sizeof(sig));
		a->conflict_changes++;
	}
	if (a->conflict_changes == 0)
		return;
	if (a->conflict_said_once && now - a->conflict_said_at < CONFLICT_LOG_MS)
		return;
	conflict_log(a, votes, shown, total);
	memcpy(a->conflict_said, sig, sizeof(sig));
	a->conflict_said_once = true;
	a->conflict_said_at = now;
	a->conflict_changes = 0;
}

static void regions_refresh(struct agent *a)
{
	if (a->regions_stale && a->g) {
		int rc = region_table_refresh(a->regions, a->g);

		if (rc == 0)
			a->regions_stale = false;
		else
			LOG_RATELIMITED(LOG_WARNING, "region", "cannot refresh the region table: "
					"%s; answering from the previous one", strerror(-rc));
	}
	conflict_check(a);
}

const struct region_table *agent_regions(struct agent *a)
{
	regions_refresh(a);
	return a->regions;
}

int agent_choose(struct agent *a, const struct region_target *target, const char *const *exclude,
		 size_t nexclude, struct region_choice *out)
{
	/* Target choice reads round-trip times: take them fresh from the core. */
	a->regions_stale = true;
	regions_refresh(a);
	return region_choose(a->regions, target,
			     randombytes_random() | (uint64_t)randombytes_random() << 32, exclude,
			     nexclude, out);
}

static void region_timer_fired(uv_timer_t *h)
{
	regions_refresh(h->data);
}

/* ------------------------------------------------------------------ */
/* Joining                                                             */
/* ------------------------------------------------------------------ */

static void join_round(struct agent *a);

static void join_timer_fired(uv_timer_t *h)
{
	struct agent *a = h->data;

	if (!a->leaving && !a->joined)
		join_round(a);
}

/* Every seed of this round failed: wait for the backoff, then retry. */
static void join_round_failed(struct agent *a)
{
	uint32_t delay;

	if (a->round_ok || a->joined || a->leaving || a->stopping)
		return;
	if (!a->backoff_live) {
		backoff_init(&a->backoff, JOIN_BACKOFF_INITIAL_MS, JOIN_BACKOFF_MAX_MS);
		a->backoff_live = true;
	}
	delay = backoff_next(&a->backoff, randombytes_random());
	LOG(LOG_WARNING, "agent", "could not join through any of %zu seed(s) (try %u); "
	    "next try in %u ms", a->cfg.nseeds, a->round, delay);
	uv_timer_start(&a->join_timer, join_timer_fired, delay, 0);
}

static void join_round(struct agent *a)
{
	uint64_t now = uv_now(&a->loop);
	size_t refused = 0;

	a->round++;
	a->round_ok = false;
	a->round_pending = a->cfg.nseeds;
	LOG(LOG_INFO, "agent", "joining through %zu seed(s), try %u", a->cfg.nseeds, a->round);
	for (size_t i = 0; i < a->cfg.nseeds; i++) {
		a->round_ids[i] = gossip_join(a->g, a->cfg.seeds[i], now);
		if (a->round_ids[i] == 0)
			refused++;   /* the core will not report on it */
	}
	transport_kick(a->tr);
	a->round_pending -= refused;
	if (a->round_pending == 0)
		join_round_failed(a);
}

static void join_outcome(struct agent *a, const struct gossip_event *ev)
{
	size_t i;

	for (i = 0; i < a->cfg.nseeds; i++)
		if (a->round_ids[i] == ev->stream_id && a->round_ids[i] != 0)
			break;
	if (i == a->cfg.nseeds)
		return;   /* from an older round, already decided */
	a->round_ids[i] = 0;
	a->round_pending--;
	if (ev->ok) {
		a->round_ok = true;
		if (!a->joined) {
			a->joined = true;
			a->backoff_live = false;
			LOG(LOG_NOTICE, "agent", "joined the cluster through %s: %zu live members",
			    a->cfg.seeds[i], gossip_live_count(a->g));
			if (!a->leaving)
				elect_joined(a->elect);
		}
		return;
	}
	LOG(LOG_INFO, "agent", "join through %s failed", a->cfg.seeds[i]);
	if (a->round_pending == 0)
		join_round_failed(a);
}

/* ------------------------------------------------------------------ */
/* Membership events                                                   */
/* ------------------------------------------------------------------ */

/* How each change of a member is logged: the level, and the words after
 * "member NAME (REGION, ADDR)".  Routine news is NOTICE; what only says
 * the picture was refreshed (new tags, a tombstone dropped) is INFO. */
static const struct {
	enum log_level level;
	const char *words;
} member_changes[] = {
	[GOSSIP_EV_JOIN] = { LOG_NOTICE, "joined" },
	[GOSSIP_EV_UPDATE] = { LOG_INFO, "updated its address or tags" },
	[GOSSIP_EV_SUSPECT] = { LOG_NOTICE, "suspect" },
	[GOSSIP_EV_ALIVE] = { LOG_NOTICE, "alive" },
	[GOSSIP_EV_FAILED] = { LOG_NOTICE, "failed" },
	[GOSSIP_EV_LEFT] = { LOG_NOTICE, "left" },
	[GOSSIP_EV_REAP] = { LOG_INFO, "forgotten" },
};

static const char *const member_event_names[] = {
	[GOSSIP_EV_JOIN] = "join",     [GOSSIP_EV_UPDATE] = "update",
	[GOSSIP_EV_SUSPECT] = "suspect", [GOSSIP_EV_ALIVE] = "alive",
	[GOSSIP_EV_FAILED] = "failed", [GOSSIP_EV_LEFT] = "left",
	[GOSSIP_EV_REAP] = "reap",
};

/* A `member` event for the event stream (reads only @m, which the core
 * hands us, never the core itself). */
static void member_event_publish(struct agent *a, const struct gossip_event *ev,
				 const char *region)
{
	const struct gossip_member *m = ev->member;

	events_publish(a->events, "member",
		       json_pack("{s:s,s:s,s:s,s:s,s:s}", "event", member_event_names[ev->type],
				 "node", gossip_member_name(m), "region", region,
				 "addr", gossip_member_addr(m),
				 "status", gossip_status_name(gossip_member_status(m))));
}

static void on_gossip_event(void *ctx, const struct gossip_event *ev)
{
	struct agent *a = ctx;
	const struct gossip_member *m = ev->member;
	const char *name = m ? gossip_member_name(m) : "";
	const char *addr = m ? gossip_member_addr(m) : "";
	const char *region = m ? gossip_tags_get(gossip_member_tags(m), "region") : NULL;

	if (region == NULL)
		region = "?";
	switch (ev->type) {
	case GOSSIP_EV_JOIN:
	case GOSSIP_EV_UPDATE:
	case GOSSIP_EV_SUSPECT:
	case GOSSIP_EV_ALIVE:
	case GOSSIP_EV_FAILED:
	case GOSSIP_EV_LEFT:
	case GOSSIP_EV_REAP:
		a->regions_stale = true;
		LOG(member_changes[ev->type].level, "gossip", "member %s (%s, %s) %s", name, region,
		    addr, member_changes[ev->type].words);
		member_event_publish(a, ev, region);
		elect_members_changed(a->elect);
		break;
	case GOSSIP_EV_USER:
		if (ev->user_key && strcmp(ev->user_key, ELECTION_USER_KEY) == 0)
			elect_members_changed(a->elect);
		LOG(LOG_DEBUG, "gossip", "user data %s v%llu from %s",
		    ev->user_key ? ev->user_key : "", (unsigned long long)ev->user_version, name);
		break;
	case GOSSIP_EV_SYNC:
		if (ev->join)
			join_outcome(a, ev);
		else
			LOG(LOG_DEBUG, "gossip", "push-pull %llu %s",
			    (unsigned long long)ev->stream_id, ev->ok ? "done" : "failed");
		break;
	case GOSSIP_EV_CONFLICT:
		LOG(LOG_ERROR, "gossip",
		    "another process claims our name %s from %s with a newer identity: "
		    "node names must be unique", name, addr);
		break;
	}
}

/* ------------------------------------------------------------------ */
/* Leaving and stopping                                                */
/* ------------------------------------------------------------------ */

static void agent_close_handle(uv_handle_t *h)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static void agent_stop_election(struct agent *a);

/*
 * Closes the RPC client and server, the SQL front and the replication
 * fan-out: closing the client answers every call in flight and the SQL
 * front the requests still waiting, so the API must still be up to write
 * the answers.
 */
static void agent_close_callers(struct agent *a)
{
	rpc_client_close(a->rpc_client);
	a->rpc_client = NULL;
	rpc_server_close(a->rpc_server);
	a->rpc_server = NULL;
	sqlfront_close(a->sql);
	a->sql = NULL;
	changes_close(a->changes);
	a->changes = NULL;
}

/* Stops everything; uv_run() returns once libuv has closed it all. */
static void agent_stop(struct agent *a)
{
	if (a->stopping)
		return;
	a->stopping = true;
	/* Callers first, while the API can still write their answers;
	 * api_stop() cancels the local calls, before their runner goes. */
	agent_close_callers(a);
	api_stop(a->api);
	a->api = NULL;
	rpc_handlers_close(a->handlers);
	a->handlers = NULL;
	agent_stop_election(a);
	transport_close(a->tr);
	if (a->handles_open) {
		agent_close_handle((uv_handle_t *)&a->sigterm);
		agent_close_handle((uv_handle_t *)&a->sigint);
		agent_close_handle((uv_handle_t *)&a->join_timer);
		agent_close_handle((uv_handle_t *)&a->leave_timer);
		agent_close_handle((uv_handle_t *)&a->region_timer);
	}
}

/* Tells the core we leave: from here on it says we are left. */
static void leave_announce(struct agent *a, uint64_t now)
{
	size_t live = gossip_live_count(a->g);

	a->announced = true;
	LOG(LOG_NOTICE, "agent", "announcing the leave to %zu live member(s)",
	    live > 0 ? live - 1 : 0);
	gossip_leave(a->g, now);
	a->regions_stale = true;
	transport_kick(a->tr);
}

/*
 * Gossips our tags plus leaving=1.  Returns how long the tag should
 * spread alone before the leave is announced, or 0 when it could not be
 * set (then peers only learn that we left).
 */
static uint64_t leave_mark(struct agent *a, uint64_t now)
{
	struct gossip_tags tags = *gossip_member_tags(gossip_self(a->g));
	uint64_t delay = (uint64_t)a->cfg.gossip.gossip_interval * LEAVE_MARK_ROUNDS;
	int rc = gossip_tags_set(&tags, REGION_TAG_LEAVING, "1");

	if (rc == 0)
		rc = gossip_set_tags(a->g, &tags, now);
	if (rc < 0) {
		LOG(LOG_WARNING, "agent", "cannot gossip the tag %s=1 (%s): peers will see this "
		    "node alive until its leave reaches them", REGION_TAG_LEAVING, strerror(-rc));
		return 0;
	}
	a->regions_stale = true;
	transport_kick(a->tr);
	return delay < a->cfg.leave_timeout_ms / 4 ? delay : a->cfg.leave_timeout_ms / 4;
}

static void leave_check(uv_timer_t *h)
{
	struct agent *a = h->data;
	uint64_t now = uv_now(&a->loop);

	if (!a->announced) {
		if (a->drained && now >= a->leave_announce_at && elect_leave_done(a->elect))
			leave_announce(a, now);
	} else if (gossip_leave_done(a->g, now)) {
		LOG(LOG_NOTICE, "agent", "leave announced (%llu ms); stopping",
		    (unsigned long long)(now - a->leave_started));
		agent_stop(a);
	} else if (now - a->drained_at >= a->cfg.leave_timeout_ms) {
		LOG(LOG_WARNING, "agent", "leave timeout (%llu ms) reached; stopping anyway",
		    (unsigned long long)a->cfg.leave_timeout_ms);
		agent_stop(a);
	}
}

static void drain_done(void *ctx, size_t remaining)
{
	struct agent *a = ctx;
	uint64_t now = uv_now(&a->loop);

	if (remaining > 0)
		LOG(LOG_WARNING, "agent", "drain timeout (%llu ms) reached with %zu RPC(s) still "
		    "running; they will be cancelled", (unsigned long long)a->cfg.drain_timeout_ms,
		    remaining);
	else
		LOG(LOG_INFO, "agent", "RPCs drained (%llu ms)",
		    (unsigned long long)(now - a->leave_started));
	a->drained = true;
	a->drained_at = now;
}

void agent_leave_start(struct agent *a, const char *why)
{
	uint64_t now = uv_now(&a->loop);

	if (a->leaving || a->stopping)
		return;
	a->leaving = true;
	a->leave_started = now;
	LOG(LOG_NOTICE, "agent", "leaving the cluster (%s): marking this node %s", why,
	    REGION_TAG_LEAVING);
	uv_timer_stop(&a->join_timer);
	/* Leadership goes first: a successor can take over while we drain. */
	elect_leave(a->elect);
	/* The leaving tag and its pause only protect calls in flight.  With
	 * none, the leave is announced at once: every member hears it
	 * directly within a round trip, and a caller that picks us meanwhile
	 * is refused before sending and moves to its next candidate. */
	if (rpc_server_inflight(a->rpc_server) > 0)
		a->leave_announce_at = now + leave_mark(a, now);
	else
		a->leave_announce_at = now;
	/* New calls go elsewhere: retry after the drain, by when we are gone. */
	rpc_server_set_leaving(a->rpc_server, true,
			       (uint32_t)(a->cfg.drain_timeout_ms < 60000 ?
					  a->cfg.drain_timeout_ms : 60000));
	rpc_server_drain(a->rpc_server, a->cfg.drain_timeout_ms, drain_done, a);
	uv_timer_start(&a->leave_timer, leave_check, LEAVE_CHECK_MS, LEAVE_CHECK_MS);
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct agent *a = h->data;
	const char *name = signum == SIGTERM ? "SIGTERM" : signum == SIGINT ? "SIGINT" : "signal";

	if (++a->signals > 1) {
		LOG(LOG_WARNING, "agent", "second signal (%s): exiting now", name);
		_exit(1);
	}
	agent_leave_start(a, name);
}

/* ------------------------------------------------------------------ */
/* Start-up                                                            */
/* ------------------------------------------------------------------ */

/* The first non-loopback IPv4 address, else 127.0.0.1, into @out. */
static void first_ipv4(char *out, size_t outlen)
{
	uv_interface_address_t *ifs;
	int n;

	snprintf(out, outlen, "127.0.0.1");
	if (uv_interface_addresses(&ifs, &n) != 0)
		return;
	for (int i = 0; i < n; i++) {
		if (ifs[i].is_internal || ifs[i].address.address4.sin_family != AF_INET)
			continue;
		uv_ip4_name(&ifs[i].address.address4, out, outlen);
		break;
	}
	uv_free_interface_addresses(ifs, n);
}

static void sockaddr_set_port(struct sockaddr_storage *ss, int port)
{
	if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
	else
		((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
}

static void agent_run_loop_to_end(struct agent *a)
{
	int rc;

	uv_run(&a->loop, UV_RUN_DEFAULT);
	if (a->g)
		gossip_delete(a->g);
	a->g = NULL;
	region_table_delete(a->regions);
	a->regions = NULL;
	rpc_metrics_free(a->rpc_metrics);
	a->rpc_metrics = NULL;
	rc = uv_loop_close(&a->loop);
	if (rc != 0)
		LOG(LOG_ERROR, "agent", "event loop still holds handles at exit: %s",
		    uv_strerror(rc));
}

/* Closes what rpc_start() opened (on a failed start). */
static void agent_stop_rpc(struct agent *a)
{
	agent_close_callers(a);
	events_close(a->events);
	a->events = NULL;
	rpc_handlers_close(a->handlers);
	a->handlers = NULL;
}

/* The method runner, the RPC server (serving through it) and client. */
static int rpc_start(struct agent *a)
{
	struct rpc_handlers_config hcfg = {
		.node = a->cfg.node,
		.region = a->cfg.region,
		.primary_region = a->cfg.primary,
		.version = MERIDIAN_VERSION,
		.handlers = a->cfg.handlers,
		.nhandlers = a->cfg.nhandlers,
		.upstream = a->cfg.rpc_upstream,
	};
	struct rpc_server_config scfg = {
		.node = a->cfg.node,
		.version = MERIDIAN_VERSION,
		.max_inflight = a->cfg.rpc_max_inflight,
	};
	struct rpc_client_config ccfg = {
		.node = a->cfg.node,
		.region = a->cfg.region,
		.max_inflight = a->cfg.rpc_max_inflight,
	};
	struct rpc_serve_ops ops;
	char err[256] = "";
	int rc;

	a->rpc_metrics = rpc_metrics_new();
	if (a->rpc_metrics == NULL) {
		LOG(LOG_ERROR, "agent", "cannot set up RPC metrics: out of memory");
		return -ENOMEM;
	}
	a->handlers = rpc_handlers_new(&a->loop, &hcfg, err, sizeof(err));
	if (a->handlers == NULL) {
		LOG(LOG_ERROR, "agent", "cannot set up RPC handlers: %s", err);
		return -EINVAL;
	}
	a->sql = sqlfront_new(&a->loop, a, &a->cfg);
	if (a->sql == NULL) {
		LOG(LOG_ERROR, "agent", "cannot set up the databases");
		return -EINVAL;
	}
	a->events = events_new(&a->loop);
	a->changes = a->events ? changes_new(&a->loop, a, &a->cfg, a->events) : NULL;
	if (a->changes == NULL) {
		LOG(LOG_ERROR, "agent", "cannot set up the event stream: out of memory");
		return -ENOMEM;
	}
	/* changes.deliver, then sql.write, then the handlers. */
	ops = changes_rpc_ops(a->changes, sqlfront_rpc_ops(a->sql, rpc_handlers_ops(a->handlers)));
	a->rpc_ops = ops;
	rc = rpc_server_new(&a->loop, a->tr, &scfg, &ops, a->rpc_metrics, &a->rpc_server);
	if (rc == 0)
		rc = rpc_client_new(&a->loop, a->tr, &ccfg, a->rpc_metrics, &a->rpc_client);
	if (rc < 0)
		LOG(LOG_ERROR, "agent", "cannot start region RPC: %s", strerror(-rc));
	return rc;
}

static void agent_kick(void *ctx)
{
	struct agent *a = ctx;

	transport_kick(a->tr);
}

static void agent_on_leading(void *ctx, bool leading, uint64_t term)
{
	struct agent *a = ctx;

	changes_leading(a->changes, leading, term);
}

/* The election (cmd/elect.h); the event stream exists already. */
static int election_start_up(struct agent *a)
{
	struct elect_env env = {
		.loop = &a->loop,
		.g = a->g,
		.cfg = &a->cfg,
		.node_id = a->cfg.gossip.id,
		.kick = agent_kick,
		.on_leading = agent_on_leading,
		.ctx = a,
	};

	env.events = a->events;
	a->elect = elect_new(&env);
	if (a->elect == NULL) {
		LOG(LOG_ERROR, "agent", "cannot start leader election");
		return -ENOMEM;
	}
	return 0;
}

static void agent_stop_election(struct agent *a)
{
	elect_close(a->elect);
	a->elect = NULL;
	events_close(a->events);
	a->events = NULL;
}

struct changes *agent_changes(struct agent *a)
{
	return a->stopping ? NULL : a->changes;
}

/* Prints why the configuration was refused; returns the exit code. */
static int config_failed(const struct config *c, int rc)
{
	fprintf(stderr, "meridian agent: %s\n%s", c->error,
		c->error_hint ? "(see `meridian agent --help`)\n" : "");
	return config_exit_code(rc);
}

int cmd_agent(int argc, char **argv)
{
	struct transport_config tcfg = { 0 };
	struct gossip_config *cfg;
	struct gossip_env env;
	struct sockaddr_storage adv_ss;
	struct agent *a;
	int rc;

	a = calloc(1, sizeof(*a));
	if (a == NULL) {
		fprintf(stderr, "meridian agent: out of memory\n");
		return 1;
	}
	rc = config_parse(&a->cfg, argc, argv, NULL);
	if (rc == CONFIG_HELP) {
		fputs(config_usage(), stdout);
		free(a);
		return EXIT_OK_;
	}
	if (rc) {
		rc = config_failed(&a->cfg, rc);
		free(a);
		return rc;
	}
	signal(SIGPIPE, SIG_IGN);
	log_set_level(a->cfg.log_level);
	log_set_format(a->cfg.log_format);

	/* Who we are in this run: a restart must present a newer identity. */
	cfg = &a->cfg.gossip;
	cfg->id = clock_wall_ms() << 16 | (randombytes_random() & 0xffff);
	randombytes_buf(&cfg->seed, sizeof(cfg->seed));

	/* Now the world: loop, seal, transport, core, API, signals. */
	uv_loop_init(&a->loop);
	a->seal = seal_new(SEAL_WINDOW_MS_DEFAULT, SEAL_REPLAY_CACHE_DEFAULT);
	if (a->seal == NULL || seal_key_add(a->seal, a->cfg.key) != 0) {
		config_wipe(&a->cfg);
		LOG(LOG_ERROR, "agent", "cannot set up sealing (out of memory?)");
		seal_delete(a->seal);
		uv_loop_close(&a->loop);
		free(a);
		return 1;
	}
	config_wipe(&a->cfg);

	tcfg.bind = a->cfg.bind;
	tcfg.name = a->cfg.node;
	tcfg.seal = a->seal;
	tcfg.frame_max = FRAME_MAX;
	tcfg.stream_timeout_ms = a->cfg.stream_timeout_ms;
	tcfg.max_inbound = INBOUND_MAX;
	rc = transport_new(&a->loop, &tcfg, &a->tr);
	if (rc < 0) {
		LOG(LOG_ERROR, "agent", "cannot listen for gossip on %s: %s", a->cfg.bind,
		    uv_strerror(rc));
		agent_run_loop_to_end(a);
		seal_delete(a->seal);
		free(a);
		return 1;
	}

	/* The advertised address: given, else the bound one (with the real
	 * port), else for an unspecified bind an interface address. */
	if (a->cfg.advertise) {
		adv_ss = a->cfg.advertise_ss;
	} else {
		char host[64];

		adv_ss = a->cfg.bind_ss;
		if (addr_is_unspecified((struct sockaddr *)&adv_ss)) {
			first_ipv4(host, sizeof(host));
			addr_parse(strcat(host, ":1"), &adv_ss, NULL, 0);
		}
		sockaddr_set_port(&adv_ss, transport_port(a->tr));
	}
	addr_format((struct sockaddr *)&adv_ss, a->advertise, sizeof(a->advertise));
	snprintf(cfg->addr, sizeof(cfg->addr), "%s", a->advertise);

	/* Never join through ourselves: shared seed lists name every node. */
	for (size_t i = 0; i < a->cfg.nseeds;) {
		if (strcmp(a->cfg.seeds[i], a->advertise) == 0) {
			LOG(LOG_INFO, "agent", "skipping seed %s: that is us", a->cfg.seeds[i]);
			memmove(a->cfg.seeds[i], a->cfg.seeds[i + 1],
				(a->cfg.nseeds - i - 1) * sizeof(a->cfg.seeds[0]));
			a->cfg.nseeds--;
		} else {
			i++;
		}
	}

	env = transport_env(a->tr, on_gossip_event, a);
	a->regions = region_table_new();
	a->regions_stale = true;
	a->g = a->regions ? gossip_new(cfg, &env, uv_now(&a->loop)) : NULL;
	if (a->g == NULL) {
		LOG(LOG_ERROR, "agent", "cannot create the gossip core (bad config or no memory)");
		transport_close(a->tr);
		agent_run_loop_to_end(a);
		seal_delete(a->seal);
		free(a);
		return 1;
	}
	transport_attach(a->tr, a->g);

	if (rpc_start(a) != 0) {
		transport_close(a->tr);
		agent_stop_rpc(a);
		agent_run_loop_to_end(a);
		seal_delete(a->seal);
		free(a);
		return 1;
	}

	if (election_start_up(a) != 0) {
		agent_stop_rpc(a);
		transport_close(a->tr);
		agent_run_loop_to_end(a);
		seal_delete(a->seal);
		free(a);
		return 1;
	}

	rc = api_start(&a->loop, a->cfg.api, a, &a->api);
	if (rc < 0) {
		LOG(LOG_ERROR, "agent", "cannot serve the API on %s: %s", a->cfg.api,
		    uv_strerror(rc));
		agent_stop_rpc(a);
		agent_stop_election(a);
		transport_close(a->tr);
		agent_run_loop_to_end(a);
		seal_delete(a->seal);
		free(a);
		return 1;
	}

	uv_signal_init(&a->loop, &a->sigterm);
	uv_signal_init(&a->loop, &a->sigint);
	uv_timer_init(&a->loop, &a->join_timer);
	uv_timer_init(&a->loop, &a->leave_timer);
	uv_timer_init(&a->loop, &a->region_timer);
	a->sigterm.data = a->sigint.data = a;
	a->join_timer.data = a->leave_timer.data = a->region_timer.data = a;
	a->handles_open = true;
	uv_signal_start(&a->sigterm, on_signal, SIGTERM);
	uv_signal_start(&a->sigint, on_signal, SIGINT);
	/* Cheap when nothing changed: a flag test and a string compare. */
	uv_timer_start(&a->region_timer, region_timer_fired, REGION_REFRESH_MS,
		       REGION_REFRESH_MS);

	if (a->cfg.dev)
		LOG(LOG_NOTICE, "agent", "dev mode: one node on loopback with a throw-away "
		    "secret (nothing else can join it); not for production");
	LOG(LOG_NOTICE, "agent",
	    "agent %s (region %s, primary %s) gossiping on %s, port %d (advertised %s), "
	    "API on %s, profile %s, version %s", a->cfg.node, a->cfg.region, a->cfg.primary,
	    a->cfg.bind, transport_port(a->tr), a->advertise, a->cfg.api, a->cfg.profile,
	    MERIDIAN_VERSION);
	if (a->cfg.nseeds > 0)
		join_round(a);
	else
		elect_joined(a->elect);   /* nobody to join: we are the cluster */

	agent_run_loop_to_end(a);
	seal_delete(a->seal);
	free(a);
	LOG(LOG_NOTICE, "agent", "stopped");
	return EXIT_OK_;
}
