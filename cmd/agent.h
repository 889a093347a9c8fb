/*
 * cmd/agent.h - what the running agent shows to the local API.
 *
 * The agent (cmd/agent.c) wires the loop, the seal, the transport, the
 * gossip core and the API together; cmd_agent() itself is declared in
 * cmd/commands.h.  The API (cmd/api.c) sees the agent only through the
 * accessors below, so it never depends on how the agent is put together.
 * Every pointer returned is owned by the agent and valid until the agent
 * stops the API; none of these functions can fail.
 */
#ifndef MERIDIAN_CMD_AGENT_H
#define MERIDIAN_CMD_AGENT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "cmd/changes.h"
#include "cmd/elect.h"
#include "cmd/events.h"
#include "cmd/sql.h"
#include "gossip/gossip.h"
#include "gossip/seal.h"
#include "gossip/transport.h"
#include "region/handlers.h"
#include "region/region.h"
#include "region/rpc.h"

struct agent;

/* The membership core, read-only (calls into it must not modify it). */
const struct gossip *agent_gossip(const struct agent *a);

/* The sealer (for seal_count()) and the transport (for its stats). */
const struct seal *agent_seal(const struct agent *a);
const struct transport *agent_transport(const struct agent *a);

/* The timing profile's name: "lan", "wan" or "local". */
const char *agent_profile(const struct agent *a);

/*
 * Wall-clock milliseconds (Unix epoch) of the core time @core_ms, which is
 * a time the core handed out (gossip_member_since()).
 */
uint64_t agent_wall_ms(const struct agent *a, uint64_t core_ms);
/* The same for any time @loop_ms read from @loop (uv_now()), at least 0;
 * cmd/elect.c uses it with the election's loop. */
uint64_t agent_loop_wall_ms(const uv_loop_t *loop, uint64_t loop_ms);

/*
 * True once joined (or with no seeds to join) and not leaving.  When not
 * ready, *@reason (if not NULL) gets "joining" or "leaving".
 */
bool agent_ready(const struct agent *a, const char **reason);
/* True from the moment a graceful leave started. */
bool agent_leaving(const struct agent *a);

/*
 * The region table (region/region.h), refreshed first when the membership
 * changed since the last refresh: membership events only mark it stale
 * (cmd/agent.c says why).  Never NULL.  The table's pointers stay valid
 * until control returns to the loop.  If the refresh runs out of memory
 * the previous snapshot is returned and the refresh is retried on the
 * next call.
 */
const struct region_table *agent_regions(struct agent *a);

/*
 * Region RPC.  The client that calls other nodes (NULL once the agent is
 * stopping: answer unavailable), the metrics every call is counted in,
 * and the method runner's seam, which the API uses for the local
 * short-cut (a call to this node runs here, without the network).  A
 * local call must be cancelled (ops.cancel) before api_stop() returns:
 * the agent closes the runner right after.
 */
struct rpc_client *agent_rpc_client(struct agent *a);
struct rpc_metrics *agent_rpc_metrics(struct agent *a);
struct rpc_serve_ops agent_rpc_local(struct agent *a);

/*
 * region_choose() on a table refreshed first (fresh round-trip times from
 * the core), with random tie-breaking bits: where an RPC or a forwarded
 * write goes.  @exclude and @nexclude as region_choose() takes them.
 */
int agent_choose(struct agent *a, const struct region_target *target, const char *const *exclude,
		 size_t nexclude, struct region_choice *out);

/* Leader election and the event stream; NULL once the agent is stopping. */
struct elect *agent_elect(struct agent *a);
struct events *agent_events(struct agent *a);
/* Reads and writes (cmd/sql.h); NULL once the agent is stopping. */
struct sqlfront *agent_sql(struct agent *a);
/* The leader's replication fan-out (cmd/changes.h); NULL once stopping. */
struct changes *agent_changes(struct agent *a);

/* This node's name and region. */
const char *agent_node(const struct agent *a);
const char *agent_region(const struct agent *a);

/*
 * Starts a graceful leave, as SIGTERM does: gossip the tag leaving=1,
 * refuse new RPCs (unavailable, with a retry-after), wait for the ones in
 * flight (at most --drain-timeout) and give the tag a few gossip rounds
 * to spread, announce the leave, wait until it
 * has spread (bounded by --leave-timeout after the drain), stop, exit 0.  @why
 * goes to the log ("POST /v1/leave").  Idempotent.
 */
void agent_leave_start(struct agent *a, const char *why);

#endif
