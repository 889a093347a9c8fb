/*
 * election/election.h - leader election inside the primary region: a pure
 * state machine (no I/O, no clock, no libuv), in the manner of tarantool's
 * raft: time comes in as arguments, the world goes out through seams.
 *
 * Roles.  FOLLOWER, CANDIDATE (gossip backend: we should lead but a live
 * peer still announces leadership; we wait for it to let go, at most
 * settle_ms) and LEADER.  Only a node whose region is the primary region
 * (config.eligible), that has started (joined the cluster) and is not
 * leaving may lead.
 *
 * Terms.  Every leadership has a term, the fencing token, that only grows:
 * a leader announces it, every heeded announcement and every lease answer
 * raises the highest term we know (election_max_term()), and a leader that
 * learns of a higher term than its own (a claim or a RELEASED alike) steps
 * down at once.  A term this node leads under is always above every term it
 * had seen when it took it.
 *
 * Heeded announcements.  Only a peer that is eligible (its region is our
 * primary region) and announces our backend is listened to: a primary-region
 * node running the other backend (say gossip, for want of a database URL)
 * must not depose the leader, nor raise our terms.  A term more than
 * term_jump_max (default ELECTION_TERM_JUMP_MAX, 2^32, as the gossip core
 * bounds incarnations) above election_max_term() is taken for corrupt.  Such
 * announcements are treated as absent and counted (announcements_ignored,
 * once per new announcement); so are ones that do not validate.  Lease
 * answers are believed whatever their term (the database is the authority).
 *
 * Backend POSTGRES (the production choice).  The database holds one lease
 * row: holder, holder id, term, expiry, all judged by the server's clock.
 * The machine asks for ACQUIRE (take the lease if it has expired or its
 * holder id is ours, under term greatest(row term, our max_term) + 1 set in
 * the same statement, so a grant is always above every term we have seen),
 * RENEW (extend it if we still hold it under our term) and RELEASE (expire
 * it now); the adapter
 * (election/lease_pg.h) runs the statement and answers with
 * election_lease_done(), never synchronously, one request at a time.
 *
 * Safety rests on one inequality.  A lease granted or renewed by a
 * request sent at our time S expires at the server no earlier than
 * S + lease_ms (the server ran the statement after we sent it).  So the
 * leader holds leadership only until S + lease_ms - guard_ms, S being the
 * send time of its last successful ACQUIRE/RENEW; when that deadline
 * passes without a newer success it steps down, on its own clock, before
 * anyone else can have taken the lease.  guard_ms absorbs clock-rate
 * differences and the time the step-down itself takes.  Readers must ask
 * election_is_leader(now) with a fresh now: a process that was stopped
 * (SIGSTOP) wakes up past its deadline and must not act before its timers
 * run.  An answer "held" that arrives after its own deadline (the request
 * hung) is not believed: the machine releases that term at once.
 *
 * The leader renews every renew_ms; a failed renewal is retried after
 * retry_ms, doubling up to renew_ms, until the deadline.  An eligible
 * follower tries ACQUIRE every renew_ms, or just after the current lease
 * expires at the server when that is sooner (the answer says how long it
 * has left), or at once when gossip says the holder failed, left, is
 * leaving or (newly) released the lease; failed requests back off from
 * retry_ms doubling to lease_ms, and so does a grant that is not above
 * max_term (the row was reset behind our back: it is released, and the
 * next ACQUIRE carries the higher max_term).  Backoffs carry jitter drawn
 * from config.seed.
 *
 * Backend GOSSIP (embedded default, no database).  Among live (alive or
 * suspect), not leaving, eligible members, ourselves included, the one
 * with the lowest (priority, name) should lead.  It becomes leader with
 * term = highest known + 1 as soon as no other live member announces
 * leadership, or settle_ms after it started waiting.  A leader that sees
 * a better node, a live peer leading under a higher term (or the same
 * term and a lower name), or any higher term at all, steps down at once
 * (and may be re-elected under max_term + 1 by the same rules).  At
 * max_term UINT64_MAX nobody can lead: the term would wrap.  Not
 * partition-safe: each
 * side of a partition of the primary region may elect its own leader;
 * when the partition heals the higher term wins.
 *
 * Announcements.  The agent gossips our announcement (user data,
 * election_announce_encode()) whenever ops.announce asks: LEADING with our
 * term when we become leader, RELEASED with that term when we step down:
 * at once for the gossip backend, and for postgres once the RELEASE of
 * that term has been answered (or failed), so that RELEASED tells the
 * followers the row is free now and their next ACQUIRE will take it (when
 * no RELEASE is due, the lease being known lost, at once too).  Peers feed
 * every member's latest announcement back through election_set_peers().
 * The known leader (election_leader()) is the highest-term claim among:
 * ourselves while leading, live and not leaving peers announcing LEADING,
 * and (postgres backend) the holder named by the last lease answer while
 * its lease lasts; a claim whose term is below election_max_term() is
 * stale and never reported (no leader is known then), so the term reported
 * never goes back.
 *
 * Handoff.  election_leave(): never lead again; a leader steps down
 * (ops.on_role), and with the gossip backend announces RELEASED; with the
 * postgres backend it RELEASEs the lease (after the request in flight, if
 * any) and announces RELEASED on the answer, so that a successor can take
 * it at once.  election_leave_done() turns true when that is answered (or
 * failed) or there was nothing to release.
 *
 * Callbacks never call back into the machine (the agent defers).  Not
 * thread-safe; no global state.
 */
#ifndef MERIDIAN_ELECTION_ELECTION_H
#define MERIDIAN_ELECTION_ELECTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ELECTION_NAME_MAX 64          /* bytes of a node name, without the NUL */
#define ELECTION_TERM_JUMP_MAX (1ULL << 32)  /* default config.term_jump_max */
#define ELECTION_ERROR_MAX 160        /* bytes of an adapter error, with the NUL */

enum election_backend {
	ELECTION_BACKEND_GOSSIP = 0,
	ELECTION_BACKEND_POSTGRES = 1,
};

enum election_role {
	ELECTION_FOLLOWER = 0,
	ELECTION_CANDIDATE = 1,
	ELECTION_LEADER = 2,
};

/* "gossip"/"postgres"; "follower"/"candidate"/"leader". */
const char *election_backend_name(enum election_backend b);
const char *election_role_name(enum election_role r);

struct election_config {
	const char *node;             /* our name (copied), 1..ELECTION_NAME_MAX bytes */
	bool eligible;                /* our region is the primary region */
	uint32_t priority;            /* gossip backend: lower leads first */
	enum election_backend backend;
	uint32_t lease_ms;            /* lease length at the server (default 5000) */
	uint32_t renew_ms;            /* renewal / follower poll interval (default 1000) */
	uint32_t guard_ms;            /* step down this long before the lease could
					 expire at the server (default 1000) */
	uint32_t retry_ms;            /* first retry after a failed request (default 100) */
	uint32_t settle_ms;           /* gossip backend: how long a candidate waits for
					 a live leader to let go (default 2000) */
	uint64_t seed;                /* jitter */
	uint64_t term_jump_max;       /* ignore announced terms more than this above
					 max_term (default ELECTION_TERM_JUMP_MAX;
					 0 means the default) */
};

/* Fills @c with the defaults above (node NULL, not eligible, gossip). */
void election_config_default(struct election_config *c);

/* ------------------------------------------------------------------ */
/* The announcement: gossiped user data, network input                 */
/* ------------------------------------------------------------------ */

#define ELECTION_USER_KEY "leader"    /* gossip user-data key */
#define ELECTION_ANNOUNCE_LEN 20      /* bytes on the wire */

enum election_ann_state {
	ELECTION_ANN_LEADING = 1,
	ELECTION_ANN_RELEASED = 2,
};

struct election_announce {
	uint8_t state;                /* enum election_ann_state */
	uint8_t backend;              /* enum election_backend of the sender */
	uint64_t term;                /* >= 1 */
	uint64_t since_wall_ms;       /* Unix ms when that leadership began; 0 unknown */
};

/*
 * Wire form, ELECTION_ANNOUNCE_LEN bytes: 'L', version 1, state, backend,
 * term (u64 big-endian), since_wall_ms (u64 big-endian).  Encode returns
 * ELECTION_ANNOUNCE_LEN, or -EINVAL for a bad state/backend or term 0.
 * Decode returns 0, -EBADMSG (wrong length, magic, state, backend, term
 * 0) or -EPROTONOSUPPORT (another version), and then leaves @out zeroed.
 */
int election_announce_encode(const struct election_announce *a,
			     uint8_t out[ELECTION_ANNOUNCE_LEN]);
int election_announce_decode(const uint8_t *buf, size_t len, struct election_announce *out);

/* Whether @a (not NULL) says something the wire form can: a known state
 * and backend, term >= 1.  Encode and decode refuse anything else, and
 * election_set_peers() ignores it. */
bool election_announce_valid(const struct election_announce *a);

/* ------------------------------------------------------------------ */
/* Seams                                                               */
/* ------------------------------------------------------------------ */

enum election_lease_op {
	ELECTION_LEASE_ACQUIRE = 0,
	ELECTION_LEASE_RENEW = 1,
	ELECTION_LEASE_RELEASE = 2,
};

/* "acquire"/"renew"/"release". */
const char *election_lease_op_name(enum election_lease_op op);

/* What the database said, or that it said nothing. */
struct election_lease_result {
	enum election_lease_op op;
	int status;                   /* 0 answered; < 0 no answer (unreachable,
					 timed out, SQL error): see error */
	bool held;                    /* ACQUIRE/RENEW: we hold it after this statement */
	uint64_t term;                /* the row's term after the statement (ours when
					 held); 0 when there is no row */
	char holder[ELECTION_NAME_MAX + 1];  /* the row's holder ("" when no row) */
	bool holder_valid;            /* that holder's lease has not expired */
	uint32_t remaining_ms;        /* server time left on it, when valid */
	char error[ELECTION_ERROR_MAX];
};

/* Why our role changed (ops.on_role). */
enum election_why {
	ELECTION_WHY_ELECTED = 0,     /* won: lease taken / best node */
	ELECTION_WHY_LEASE_LOST,      /* renewal answered: the lease is not ours */
	ELECTION_WHY_DEADLINE,        /* renewals failed until the deadline */
	ELECTION_WHY_HIGHER_TERM,     /* a peer leads under a higher term */
	ELECTION_WHY_PRECEDENCE,      /* gossip: a better node is live */
	ELECTION_WHY_LEAVING,         /* election_leave() */
	ELECTION_WHY_INELIGIBLE,      /* no longer allowed to lead */
};
const char *election_why_name(enum election_why w);

struct election_ops {
	void *ctx;
	/* POSTGRES: run @op (@term: ours for RENEW/RELEASE, our max_term
	 * for ACQUIRE: the grant's term must exceed it) and answer with
	 * election_lease_done() later.  At most one in flight. */
	void (*lease_request)(void *ctx, enum election_lease_op op, uint64_t term);
	/* Gossip our announcement: @state with @term; @since is machine
	 * time when that leadership began (the agent turns it into wall
	 * time). */
	void (*announce)(void *ctx, enum election_ann_state state, uint64_t term, uint64_t since);
	/* Our role changed from @from to @to under @term.  May be NULL. */
	void (*on_role)(void *ctx, enum election_role from, enum election_role to,
			uint64_t term, enum election_why why);
	/* The known leader changed (name or term, or became unknown).  May
	 * be NULL.  Read it with election_leader(). */
	void (*on_leader)(void *ctx);
};

/* ------------------------------------------------------------------ */
/* The machine                                                         */
/* ------------------------------------------------------------------ */

struct election;

/* NULL for an invalid config (name, zero intervals, guard_ms >= lease_ms,
 * renew_ms >= lease_ms - guard_ms) or out of memory. */
struct election *election_new(const struct election_config *cfg, const struct election_ops *ops,
			      uint64_t now);
void election_delete(struct election *e);

/* We have joined the cluster (or have no one to join): from now on we
 * may lead.  Idempotent. */
void election_start(struct election *e, uint64_t now);

/* Runs what is due; returns election_next_deadline(). */
uint64_t election_tick(struct election *e, uint64_t now);
/* The earliest time the machine wants election_tick(); UINT64_MAX if none. */
uint64_t election_next_deadline(const struct election *e);

/* One member other than ourselves, as the agent sees it. */
struct election_peer {
	const char *name;             /* read during the call only */
	bool live;                    /* alive or suspect */
	bool leaving;                 /* tag leaving=1 */
	bool eligible;                /* its region is our primary region */
	uint32_t priority;
	bool announced;               /* ann is valid */
	struct election_announce ann;
};

/*
 * Replaces the machine's view of the other members (every member the
 * agent knows, ourselves excluded, at most 65536).  Returns 0 or -ENOMEM
 * (the previous view is kept).  Acts at once on what changed: stepping
 * down, or trying for the lease when the holder is gone.
 */
int election_set_peers(struct election *e, const struct election_peer *peers, size_t n,
		       uint64_t now);

/* The answer to our last lease_request. */
void election_lease_done(struct election *e, const struct election_lease_result *r,
			 uint64_t now);

/* Hand off and never lead again (see the top of this file).  Idempotent. */
void election_leave(struct election *e, uint64_t now);
bool election_leave_done(const struct election *e);

/* Our role, and whether we may act as leader at @now (leader, and for
 * POSTGRES before the deadline). */
enum election_role election_role(const struct election *e);
bool election_is_leader(const struct election *e, uint64_t now);
/* The term we lead under (0 when not leader). */
uint64_t election_term(const struct election *e);
/* The highest term we have seen anywhere. */
uint64_t election_max_term(const struct election *e);
/* POSTGRES leader: machine time our leadership ends without a renewal. */
uint64_t election_deadline(const struct election *e);

/* In order of precedence between claims of one term: self first. */
enum election_source {
	ELECTION_FROM_SELF = 0,
	ELECTION_FROM_GOSSIP,
	ELECTION_FROM_LEASE,
};

struct election_leader {
	char name[ELECTION_NAME_MAX + 1];
	uint64_t term;
	bool self;
	enum election_source source;
	uint64_t since;               /* machine time: when we began leading (self) or
					 first learned of this leader and term */
	uint64_t since_wall_ms;       /* from the announcement; 0 unknown or self */
};

/* The known leader at @now; false (and @out zeroed) when none is known. */
bool election_leader(const struct election *e, uint64_t now, struct election_leader *out);

struct election_stats {
	uint64_t elections_won;       /* times we became leader */
	uint64_t step_downs;          /* times we stopped being leader */
	uint64_t lease_requests;      /* by op */
	uint64_t lease_failures;      /* answers with status < 0 */
	uint64_t leader_changes;      /* on_leader calls */
	uint64_t late_grants_released;/* "held" answers past their deadline */
	uint64_t announcements_ignored;/* not heeded (see the top of this file) */
};
void election_stats_get(const struct election *e, struct election_stats *out);

#endif
