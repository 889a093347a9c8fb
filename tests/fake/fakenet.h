/*
 * tests/fake/fakenet.h - a whole gossip cluster in one process, in fake
 * time, over a fake network.
 *
 * A fakenet owns N gossip cores (gossip/gossip.h) and one global clock in
 * milliseconds.  Nothing sleeps: the clock jumps to the next thing that
 * happens, either a core's deadline (gossip_next_deadline) or the delivery
 * of a datagram or stream message in flight.  Datagrams cross links with
 * a latency (base + seeded jitter) and can be lost at random (seeded),
 * blocked one way between two nodes, dropped by a test's filter, or lost
 * because their target was killed.  Push-pull streams are delivered to the
 * target's gossip_stream_serve() and the answer comes back through
 * gossip_stream_done(), or gossip_stream_failed() when the target is dead
 * or cut off, or when the request or the answer would not fit the agent's
 * stream frame once sealed (1 MiB, as gossip/transport.c enforces).  A
 * "starved" node gets the CPU only at multiples of a period: its due
 * timers run then, and only then does it read what
 * arrived in the meantime (timers before I/O, as libuv does).
 *
 * Every membership event of every node is recorded as (observer, subject,
 * type): the first and last time and the count, so a test can ask "when
 * did node 3 first see node 7 failed".  Same seed, same run, bit for bit.
 *
 * Nodes are named "n0".."n<N-1>" with addresses "10.0.<i/256>.<i%256>:7946".
 * Not thread-safe; no global state.  Every run loop is bounded and aborts
 * the test with a message past its bound.
 */
#ifndef MERIDIAN_TESTS_FAKENET_H
#define MERIDIAN_TESTS_FAKENET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gossip/gossip.h"

#define FAKENET_NODES_MAX 1024
#define FAKENET_EV_TYPES (GOSSIP_EV_CONFLICT + 1)
#define FAKENET_NEVER UINT64_MAX

struct fakenet;

/*
 * Creates @n (1..FAKENET_NODES_MAX) cores with the timing profile @profile
 * ("lan", "wan", "local"), every one alone in its cluster until it joins.
 * Fake time starts at 1,000,000 ms.  Aborts on bad arguments or out of
 * memory (it is a test harness).
 */
struct fakenet *fakenet_new(size_t n, const char *profile, uint64_t seed);
/* Same, with every core configured as @base (identity fields, seed and
 * id are set per node). */
struct fakenet *fakenet_new_config(size_t n, const struct gossip_config *base, uint64_t seed);
/* Frees the cores, everything in flight and the records. */
void fakenet_delete(struct fakenet *f);

size_t fakenet_size(const struct fakenet *f);
uint64_t fakenet_now(const struct fakenet *f);
/* Node @i's core (owned by the fakenet; replaced by fakenet_restart). */
struct gossip *fakenet_core(struct fakenet *f, size_t i);
const char *fakenet_name(const struct fakenet *f, size_t i);
const char *fakenet_addr(const struct fakenet *f, size_t i);
/* Index of the node named @name, or -1. */
int fakenet_index(const struct fakenet *f, const char *name);

/* ---- driving ---------------------------------------------------------- */

/* Node @i joins through node @seed (gossip_join with @seed's address). */
void fakenet_join(struct fakenet *f, size_t i, size_t seed);
/* Runs everything due up to and including time @t; the clock ends at @t. */
void fakenet_run_until(struct fakenet *f, uint64_t t);
void fakenet_run_for(struct fakenet *f, uint64_t ms);
/*
 * Runs until @done(@f, @ctx) holds (checked whenever the clock moves on)
 * or time @t.  Returns true when @done held; the clock stays at that
 * moment.
 */
bool fakenet_run_until_cond(struct fakenet *f, uint64_t t,
			    bool (*done)(struct fakenet *f, void *ctx), void *ctx);

/* ---- the network and the nodes ------------------------------------- */

/* Every datagram takes @base_ms plus 0..@jitter_ms (seeded); default 1+0. */
void fakenet_set_latency(struct fakenet *f, uint32_t base_ms, uint32_t jitter_ms);
/* Each datagram is lost with probability @pct percent (0..100). */
void fakenet_set_loss(struct fakenet *f, uint32_t pct);
/* Datagrams and streams from @from to @to are dropped (one way). */
void fakenet_block(struct fakenet *f, size_t from, size_t to);
/* Cuts the nodes listed in @side (@n of them) from all others, both ways. */
void fakenet_partition(struct fakenet *f, const size_t *side, size_t n);
/* Removes every block and partition (loss, kills and starvation stay). */
void fakenet_heal(struct fakenet *f);
/*
 * A test's own drop rule: called for every datagram that survives the
 * other filters, with the packet decoded (undecodable packets are never
 * shown to it); true drops it.  NULL removes it.
 */
typedef bool (*fakenet_filter_fn)(void *ctx, size_t from, size_t to,
				  const struct gossip_packet *pkt);
void fakenet_set_filter(struct fakenet *f, fakenet_filter_fn fn, void *ctx);
/* The process dies: no ticks, nothing in or out (what it sent before is
 * still delivered).  Its core stays readable. */
void fakenet_kill(struct fakenet *f, size_t i);
bool fakenet_killed(const struct fakenet *f, size_t i);
/*
 * A new process under the same name and address, with a larger id and a
 * fresh core, joining through @seed.
 */
void fakenet_restart(struct fakenet *f, size_t i, size_t seed);
/* Node @i gets the CPU only every @period_ms (0: always). */
void fakenet_starve(struct fakenet *f, size_t i, uint32_t period_ms);
/* Hands @len raw bytes to node @to now, as a datagram from node @from. */
void fakenet_inject(struct fakenet *f, size_t from, size_t to, const uint8_t *buf, size_t len);
/* gossip_leave() on node @i now. */
void fakenet_leave(struct fakenet *f, size_t i);

/* ---- what the nodes see --------------------------------------------- */

/* Status of node @j in node @i's view, or -1 when @i does not know @j. */
int fakenet_status(const struct fakenet *f, size_t i, size_t j);
/* Incarnation of @j in @i's view (0 when unknown). */
uint64_t fakenet_incarnation(const struct fakenet *f, size_t i, size_t j);
/* Running nodes (not killed, not left) other than @j that see @j as @status. */
size_t fakenet_count_seeing(const struct fakenet *f, size_t j, enum gossip_status status);
/* True when every running node other than @j sees @j as @status. */
bool fakenet_all_see(const struct fakenet *f, size_t j, enum gossip_status status);
/* True when every running node sees every running node alive, and counts
 * exactly the running nodes as live. */
bool fakenet_converged(const struct fakenet *f);
/* Node @i is neither killed nor left. */
bool fakenet_running(const struct fakenet *f, size_t i);

/* ---- records ----------------------------------------------------------- */

/* Forgets every recorded event and lost ping. */
void fakenet_events_reset(struct fakenet *f);
/* When observer @i first/last raised @type about subject @j (FAKENET_NEVER). */
uint64_t fakenet_event_first(const struct fakenet *f, size_t i, size_t j,
			     enum gossip_event_type type);
uint64_t fakenet_event_last(const struct fakenet *f, size_t i, size_t j,
			    enum gossip_event_type type);
uint32_t fakenet_event_count(const struct fakenet *f, size_t i, size_t j,
			     enum gossip_event_type type);
/* All observers together: how many @type events about @j; the earliest
 * and the latest first-time among observers (FAKENET_NEVER if none). */
uint64_t fakenet_event_total(const struct fakenet *f, size_t j, enum gossip_event_type type);
uint64_t fakenet_event_earliest(const struct fakenet *f, size_t j, enum gossip_event_type type,
				size_t *observer);
/* Successful gossip_join() syncs of node @i since the last reset. */
uint32_t fakenet_joined(const struct fakenet *f, size_t i);
/*
 * The earliest send time of a ping addressed to @j that was lost because
 * @j was dead, and who sent it (FAKENET_NEVER when none).
 */
uint64_t fakenet_lost_ping_first(const struct fakenet *f, size_t j, size_t *sender);

/* Datagrams: sent, delivered, dropped (loss, blocks, filter, dead). */
struct fakenet_stats {
	uint64_t sent, delivered, lost, blocked, filtered, to_dead, bytes;
	uint64_t streams, streams_failed;
	uint64_t streams_oversize;   /* requests/answers over the frame bound */
};
void fakenet_stats_get(const struct fakenet *f, struct fakenet_stats *out);

#endif
