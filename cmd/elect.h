/*
 * cmd/elect.h - the agent's side of leader election: the pure machine
 * (election/election.h) put on the loop, fed from the membership, its
 * announcements gossiped as user data, its lease run on the primary
 * database (election/lease_pg.h), its leaderships turned into `leader`
 * events, log lines, metrics and the --on-leader process.
 *
 * The --on-leader command runs, through `/bin/sh -c`, from the moment this
 * node becomes leader until it stops being leader: then its process group
 * gets SIGTERM, and SIGKILL 5 s later if still there.  It runs in its own
 * session (a Ctrl-C meant for the agent is not meant for it) and asks the
 * kernel to send it SIGTERM should the agent die (kill -9), so a duty
 * never outlives the node that was elected to do it.  Its environment
 * adds MERIDIAN_TERM (the fencing token: pass it along with every write
 * the duty makes, and refuse older ones), MERIDIAN_NODE and
 * MERIDIAN_REGION.  It is not restarted if it exits early.
 */
#ifndef MERIDIAN_CMD_ELECT_H
#define MERIDIAN_CMD_ELECT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "cmd/config.h"
#include "cmd/events.h"
#include "gossip/gossip.h"

/* How long a leaving leader waits for the database to confirm the release. */
#define ELECT_RELEASE_WAIT_MS 1000

struct elect;

struct elect_env {
	uv_loop_t *loop;
	struct gossip *g;             /* announcements go out as its user data */
	const struct config *cfg;     /* election flags; must outlive us */
	uint64_t node_id;             /* this process's identity (lease holder id) */
	struct events *events;        /* leader events; may be NULL */
	void (*kick)(void *ctx);      /* after publishing user data: flush now */
	/* This node started (@leading) or stopped leading under @term; may
	 * be NULL.  Called from inside the machine: must not call back. */
	void (*on_leading)(void *ctx, bool leading, uint64_t term);
	void *ctx;
};

/* Starts the machine (not leading before elect_joined()).  NULL when out
 * of memory or the adapter cannot be set up (logged). */
struct elect *elect_new(const struct elect_env *env);

/* The membership changed: the view is rebuilt on the next loop turn
 * (callable from inside the core's callbacks). */
void elect_members_changed(struct elect *x);

/* We joined (or have nobody to join): we may lead from now on. */
void elect_joined(struct elect *x);

/* Hand off: step down, release, never lead again.  elect_leave_done()
 * turns true once released or ELECT_RELEASE_WAIT_MS later. */
void elect_leave(struct elect *x);
bool elect_leave_done(const struct elect *x);

/* Stops the hook and the adapter, frees (after libuv closes handles). */
void elect_close(struct elect *x);

/* GET /v1/leader: the known leader and this node's own part. */
json_t *elect_leader_json(struct elect *x);
/* The leader event as sent to a new subscriber ("type":"leader"). */
json_t *elect_leader_event(struct elect *x);
/* The known leader's name, or NULL (for --leader RPC targets). */
const char *elect_leader_name(struct elect *x);
struct elect_stats {
	bool is_leader;               /* now */
	uint64_t term;                /* the known leader's term; 0 none */
	uint64_t max_term;
	uint64_t elections_won, step_downs, leader_changes;
	uint64_t lease_requests, lease_failures, late_grants_released;
	uint64_t announce_bad;        /* undecodable announcements from peers */
	bool db_connected;            /* postgres backend: the lease connection is up */
	uint64_t hooks_started, hooks_failed;
};
void elect_stats_get(struct elect *x, struct elect_stats *out);

#endif
