/*
 * region/region.h - the region table and the choice of an RPC target:
 * pure (no I/O, no clock, no libuv), fed from the membership core.
 *
 * Every agent gossips its region and the primary region it was configured
 * with as tags (gossip/tags.h: "region", "primary_region", "version"), and
 * a node that is shutting down adds "leaving"="1" before it leaves.  The
 * region table is a snapshot of those tags, the members' statuses and
 * their measured round-trip times, taken by region_table_refresh() from a
 * struct gossip (one pass and a sort, O(N log N); call it on membership
 * events and before choosing a target).  Nothing here keeps a pointer into the core.
 *
 * Choosing a target follows Fly RPC (rpc_region, rpc_primary,
 * is_primary?): a call aimed at this node's own region, or at this node,
 * runs locally, without the network, as long as this node is itself alive
 * and not leaving.  Otherwise the candidates are the members of the target
 * region that are alive and not leaving; among them the one with the
 * lowest measured RTT wins (SWIM acks of direct probes; a measured node
 * beats one never measured, since we at least know it answered), and ties
 * or unmeasured candidates are broken at random with bits the caller
 * provides, so the table stays deterministic under test.  Names already
 * tried are excluded, so a caller whose connection was refused before the
 * request went out can ask again and get the next candidate.
 *
 * Where we differ from Fly: Fly's primary region is one environment
 * variable that every node is trusted to agree on.  Here each node
 * advertises its own PRIMARY_REGION, and nodes that disagree are a
 * configuration error that the table reports (region_primary_conflict:
 * every distinct value, how many nodes hold it, one of them), never
 * resolves: --primary on a node always means that node's own setting.
 *
 * A region that some member once advertised is remembered for the life
 * of the table (up to REGION_MAX regions), even after its last tombstone
 * is reaped, so that "no node in iad" (no_nodes_in_region: iad exists
 * but nobody there can answer) stays distinct from "no region iad"
 * (no_such_region: a typo, most likely).
 *
 * A table is not thread-safe and holds no global state.
 */
#ifndef MERIDIAN_REGION_REGION_H
#define MERIDIAN_REGION_REGION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gossip/gossip.h"

#define REGION_NAME_MAX 32      /* bytes of a region name, without the NUL */
#define REGION_MAX 1024         /* regions a table remembers */
#define REGION_MESSAGE_MAX 192  /* bytes of a human error message, with the NUL */

/* The tags this module reads (set by cmd/config.c and the agent). */
#define REGION_TAG_REGION "region"
#define REGION_TAG_PRIMARY "primary_region"
#define REGION_TAG_VERSION "version"
#define REGION_TAG_LEAVING "leaving"   /* "1" while the node shuts down */

/*
 * True when @s (NUL-terminated) is a valid region name: 1 to
 * REGION_NAME_MAX bytes of [a-z0-9-].  The one rule, for the names we are
 * configured with (cmd/config.c) and those that peers advertise.  Inline
 * so that the configuration library shares it without linking this one.
 */
static inline bool region_name_valid(const char *s)
{
	size_t n = 0;

	if (s == NULL)
		return false;
	for (; s[n] != '\0'; n++) {
		char c = s[n];

		if (n == REGION_NAME_MAX)
			return false;
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
			return false;
	}
	return n > 0;
}

/* One member as the table saw it at the last refresh. */
struct region_member {
	char name[GOSSIP_NAME_MAX + 1];
	char addr[GOSSIP_ADDR_MAX + 1];          /* gossip "host:port" (RPC uses its TCP) */
	char region[REGION_NAME_MAX + 1];        /* "" when the tag is missing or invalid */
	char primary[REGION_NAME_MAX + 1];       /* its PRIMARY_REGION; "" likewise */
	char version[GOSSIP_TAG_VALUE_MAX + 1];  /* agent version; "" when absent */
	enum gossip_status status;
	bool leaving;                            /* tags hold "leaving"="1" */
	bool self;                               /* this node */
	uint32_t rtt_us;                         /* smoothed probe RTT; 0 = unknown */
};

/* One region: @alive counts members alive and not leaving (the ones a
 * call can go to); @nodes every member the table holds in it, whatever
 * its status.  A remembered region may have both at 0. */
struct region_info {
	char name[REGION_NAME_MAX + 1];
	uint32_t alive;
	uint32_t nodes;
};

/* One value of PRIMARY_REGION advertised by live members. */
struct region_primary_vote {
	char primary[REGION_NAME_MAX + 1];
	uint32_t count;                          /* live members advertising it */
	char example[GOSSIP_NAME_MAX + 1];       /* one of them (the first by name) */
};

/* Counters for /metrics and `meridian info`. */
struct region_stats {
	uint64_t refreshes;
	uint32_t members;          /* members in the last refresh, tombstones included */
	uint32_t bad_tags;         /* of those: region or primary_region missing or invalid */
	uint32_t primary_values;   /* distinct PRIMARY_REGION among live members; > 1 = conflict */
	uint64_t regions_dropped;  /* new regions not remembered: REGION_MAX reached */
};

struct region_table;

/* An empty table (no self, no member); NULL when out of memory. */
struct region_table *region_table_new(void);
/* Frees @t and everything it returned pointers to.  NULL is a no-op. */
void region_table_delete(struct region_table *t);

/*
 * Replaces the snapshot with @g's current members (every one, ourselves
 * and tombstones included), and adds their regions to the remembered set.
 * Reads @g only; keeps no pointer into it.  Returns 0, or -ENOMEM, in
 * which case @t keeps its previous snapshot whole.  Invalidates every
 * pointer the table returned before.
 */
int region_table_refresh(struct region_table *t, const struct gossip *g);

/* Members of the last refresh, sorted by name; pointers valid until the
 * next refresh or delete.  region_member_at() returns NULL past the end. */
size_t region_member_count(const struct region_table *t);
const struct region_member *region_member_at(const struct region_table *t, size_t i);
/* The member named @name, or NULL. */
const struct region_member *region_member_find(const struct region_table *t,
					       const char *name);
/* This node, or NULL before the first refresh. */
const struct region_member *region_self(const struct region_table *t);

/* This node's region and its own PRIMARY_REGION ("" before the first
 * refresh).  --primary always means region_primary(). */
const char *region_self_region(const struct region_table *t);
const char *region_primary(const struct region_table *t);
/* True when this node's region is its primary region (Fly's is_primary?). */
bool region_is_primary(const struct region_table *t);

/*
 * The PRIMARY_REGION values advertised by live (alive or suspect) members,
 * ourselves included, leaving or not: a configuration is a configuration
 * while its node runs.  Members without a valid value do not vote (they
 * are counted in region_stats.bad_tags).  Fills up to @max votes, most
 * held first, then by value, and returns how many distinct values there
 * are (may exceed @max): 0 before the first refresh, 1 when the cluster
 * agrees, 2 or more when it does not, a configuration error that the
 * caller must report (log, metric, `meridian info`).
 */
size_t region_primary_conflict(const struct region_table *t, struct region_primary_vote *out,
			       size_t max);
/* The primary region every live member agrees on, or NULL when they
 * disagree (or before the first refresh). */
const char *region_cluster_primary(const struct region_table *t);

/*
 * Members of @region that are alive and not leaving (ourselves included
 * when we are), sorted by name: fills up to @max pointers (valid until the
 * next refresh) and returns how many there are (may exceed @max).  0 for
 * an unknown or invalid region.
 */
size_t region_nodes(const struct region_table *t, const char *region,
		    const struct region_member **out, size_t max);

/* Every remembered region, sorted by name, with its counts at the last
 * refresh; same conventions as region_nodes(). */
size_t region_list(const struct region_table *t, struct region_info *out, size_t max);

/* True when some member has ever advertised @region to this table. */
bool region_known(const struct region_table *t, const char *region);

void region_stats_get(const struct region_table *t, struct region_stats *out);

/* ------------------------------------------------------------------ */
/* Target choice                                                       */
/* ------------------------------------------------------------------ */

enum region_target_kind {
	REGION_TARGET_REGION,    /* any node of region @name */
	REGION_TARGET_PRIMARY,   /* any node of this node's primary region */
	REGION_TARGET_LEADER,    /* the elected leader, named by the caller */
	REGION_TARGET_NODE,      /* the node named @name */
};

struct region_target {
	enum region_target_kind kind;
	const char *name;        /* region or node name (for LEADER: the leader the
				    caller knows, NULL when none); NULL for PRIMARY;
				    not copied, read during the call only */
};

/*
 * The typed failures of region_choose(): negative, and outside the range
 * of errno values, so they cannot be mistaken for one.
 */
enum region_err {
	REGION_ERR_BAD_REGION = -4001,       /* the region name is invalid */
	REGION_ERR_NO_SUCH_REGION = -4002,   /* no member ever advertised it */
	REGION_ERR_NO_NODES = -4003,         /* known, but no alive, non-leaving node */
	REGION_ERR_NO_SUCH_NODE = -4004,     /* no member of that name (or invalid name) */
	REGION_ERR_NODE_UNAVAILABLE = -4005, /* it is suspect, failed, left or leaving */
	REGION_ERR_NO_LEADER = -4006,        /* no leader known */
	REGION_ERR_EXHAUSTED = -4007,        /* candidates exist, every one already tried */
	REGION_ERR_BAD_TARGET = -4008,       /* unknown kind, or a missing name */
};

/*
 * A stable, machine-readable name for @err, used in JSON answers and
 * metrics: "bad_region", "no_such_region", "no_nodes_in_region",
 * "no_such_node", "unavailable", "no_leader", "exhausted",
 * "bad_target"; NULL for anything else.
 */
const char *region_err_name(int err);

/* The outcome of region_choose(). */
struct region_choice {
	bool local;                          /* run here, without the network */
	const struct region_member *member;  /* the target (ourselves when local);
						NULL on error; valid until the
						next refresh */
	char region[REGION_NAME_MAX + 1];    /* the region aimed at ("" for NODE,
						LEADER and an invalid name) */
	uint32_t candidates;                 /* eligible remote nodes, before
						exclusions (0 when local) */
	char message[REGION_MESSAGE_MAX];    /* on error, for a human:
						"no alive node in region \"syd\"" */
};

/*
 * Chooses where @target runs.  @exclude lists @nexclude node names
 * (NUL-terminated; may be NULL when @nexclude is 0) that must not be
 * chosen: the ones already tried (ourselves there: never local).
 * @rng_bits breaks ties and picks among unmeasured nodes (same table,
 * same bits, same choice).  A chosen node is alive and not leaving in
 * the snapshot; a remote one is never ourselves.
 *
 * REGION and PRIMARY: local when the region is ours and we are alive and
 * not leaving; else the best remote candidate; else REGION_ERR_BAD_REGION,
 * _NO_SUCH_REGION, _NO_NODES or _EXHAUSTED.  NODE: local when it is us;
 * else REGION_ERR_NO_SUCH_NODE, _NODE_UNAVAILABLE or _EXHAUSTED.  LEADER:
 * REGION_ERR_NO_LEADER without a name, else as NODE.  A missing name or unknown kind:
 * REGION_ERR_BAD_TARGET.
 *
 * Returns 0 with @out->member set (and @out->local when the call is to
 * run here), or one of enum region_err with @out->message set.  Never
 * fails for lack of memory; @out is always written.
 */
int region_choose(const struct region_table *t, const struct region_target *target,
		  uint64_t rng_bits, const char *const *exclude, size_t nexclude,
		  struct region_choice *out);

#endif
