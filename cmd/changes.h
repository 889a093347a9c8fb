/*
 * cmd/changes.h - the leader owns replication: it alone consumes the
 * logical slot (storage/replication.h, decoded by storage/pgoutput.h) and
 * fans every committed transaction out to every alive member, in every
 * region, which hands the changes to its local subscribers (`meridian
 * watch --changes`, GET /v1/events?changes=1).
 *
 * Leader side.  The consumer starts when this node becomes leader (it
 * holds the lease: the term is the fencing token) and stops at once when
 * it is not.  Messages are grouped per transaction, in commit order, into
 * a bounded outbox (CHANGES_OUTBOX_BYTES, CHANGES_OUTBOX_TXNS).  Each alive
 * member (this node included) has a cursor into it: batches go out over
 * the cluster transport as the RPC changes.deliver, one batch in flight
 * per member (so each member sees them in order), and the answer is the
 * acknowledgement.  A member counts from the first transaction that
 * arrived while it was alive; a member that fails or leaves stops
 * counting, and so does one that acknowledges nothing for
 * --changes-stuck-timeout while work waits (alive to gossip but its
 * cluster TCP blocked, say: Postgres would keep WAL for it without end)
 * until it acknowledges again.  A member that stopped counting (stuck,
 * failed or left: members gone are remembered for the leadership) and
 * comes back may find its next entries trimmed: it jumps to the oldest one
 * held.  Its batches carry the leader's running count of what it lost
 * ("lost", entries with events only); what grew since the last batch it
 * counts and hands its subscribers as a change event
 * {"op":"gap","skipped":N} (a batch sent again adds nothing).  The slot's position
 * is confirmed to Postgres (repl_confirm)
 * up to the last transaction every counted member has acknowledged, never
 * further: a new leader resumes there, so nothing committed is lost, and
 * what was delivered but not yet confirmed is delivered again (at least
 * once).  When the outbox is full the consumer is stopped and started
 * again once half of it has drained (transactions already buffered are
 * skipped when they come again), so a slow member costs the leader
 * bounded memory, never unbounded.
 *
 * A transaction larger than CHANGES_PART_BYTES travels in parts, cut the
 * same way by every leader.  A single change larger than that cannot
 * travel whole (one RPC frame is ~1 MiB): its largest values are left out
 * and named in "omitted" (pgoutput_change_dump()), so subscribers still
 * learn of the change and its key and can read the row again.
 *
 * Member side.  changes.deliver carries the leader's term and
 * transactions (or parts), each with its commit LSN and part number; a batch from a term below one
 * already seen is refused (a deposed leader's late batch), and a
 * transaction at or below the last commit LSN delivered here is a
 * duplicate (from a leader change), dropped and counted.  Each change
 * becomes one `change` event: {"lsn","xid","table","op","new","old",
 * "commit_time","term"}.  Subscribers are bounded by the event hub (a slow
 * one is cut off with a reason).
 */
#ifndef MERIDIAN_CMD_CHANGES_H
#define MERIDIAN_CMD_CHANGES_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "cmd/config.h"
#include "cmd/events.h"
#include "region/rpc_serve.h"

#define CHANGES_METHOD "changes.deliver"
#define CHANGES_OUTBOX_BYTES (64u << 20)
#define CHANGES_OUTBOX_TXNS 100000
#define CHANGES_BATCH_BYTES (256u << 10)
#define CHANGES_BATCH_TXNS 256
#define CHANGES_PART_BYTES (512u << 10) /* a part of a transaction, and one change, at
					   most: every batch fits one RPC frame */

struct agent;
struct changes;

struct changes *changes_new(uv_loop_t *loop, struct agent *a, const struct config *cfg,
			    struct events *events);
void changes_close(struct changes *c);

/* This node started or stopped leading (cmd/elect.h's on_leading). */
void changes_leading(struct changes *c, bool leading, uint64_t term);

/* The RPC method runner: changes.deliver here, the rest to @next. */
struct rpc_serve_ops changes_rpc_ops(struct changes *c, struct rpc_serve_ops next);

struct changes_stats {
	bool consuming;
	uint64_t txns_in, events_in;          /* leader: from the slot */
	uint64_t outbox_txns, outbox_bytes;
	uint64_t confirmed_lsn, server_lsn;   /* leader: lag = server - confirmed */
	uint64_t slot_busy, pauses;
	uint64_t delivered, duplicates, stale;   /* member side */
	uint64_t too_large;                   /* leader: single changes over a part, not sent */
	uint64_t values_omitted;              /* leader: values left out to fit a part */
	uint64_t stuck;                       /* leader: members that stopped counting */
	uint64_t skipped;                     /* leader: entries members will never get */
	uint64_t missed;                      /* member: transactions it was told it missed */
	double lag_seconds;                   /* leader: age of the oldest unconfirmed commit */
	uint64_t onchange_written, onchange_dropped;   /* --on-change */
};
void changes_stats_get(const struct changes *c, struct changes_stats *out);

#endif
