/*
 * election/election.c - the leader-election state machine (see election.h,
 * whose top comment is the contract; this one says how it is kept).
 *
 * Every input (start, tick, set_peers, lease_done, leave) runs the same
 * three steps: housekeeping at @now (a postgres leader past its deadline
 * steps down, an expired lease holder is forgotten), the input's own work,
 * then the follow-up: the gossip backend re-evaluates who should lead, the
 * postgres backend sends the next due lease request, and both recompute the
 * known leader and call on_leader if its (name, term) changed.  So nothing
 * depends on tick() being called more often than election_next_deadline()
 * asks, and election_is_leader() checks the deadline itself for a process
 * that has not run its timers yet.
 *
 * Postgres requests.  One in flight; what comes up meanwhile is queued as
 * intents, not requests: a RELEASE of a term we no longer lead under
 * (step-down, leave, a grant we do not believe) and "ACQUIRE as soon as
 * possible" (the holder failed, left or released).  dispatch() sends, when
 * nothing is in flight, the release first, then a due RENEW, then a due
 * ACQUIRE.  A leader's deadline is the send time of its last successful
 * ACQUIRE/RENEW + lease_ms - guard_ms; a "held" answer received at or past
 * that is released (late_grants_released).  ACQUIRE carries our max_term and
 * the statement grants greatest(row term, max_term) + 1, so a grant is above
 * everything we had seen when we sent it.  One that is not above what we
 * have seen by the time it is answered (a higher term arrived meanwhile, or
 * an adapter that ignores the max) is released too, and the next ACQUIRE,
 * carrying the new max_term, goes on the retry backoff: never a tight loop
 * against the database.
 *
 * RELEASED, postgres.  A step-down that queues a RELEASE keeps the RELEASED
 * announcement until that RELEASE is answered (or failed), rather than
 * announcing it at once: the announcement is then the followers' cue that
 * the row is free, and a follower that sees a peer newly announce RELEASED
 * (state or term changed, old view against new) ACQUIREs at once.  An early
 * RELEASED as well would not help: a second, identical announcement after
 * the answer changes nothing the peers can see, so it could not be told
 * apart; and the early one sent followers to a still-valid lease, to back
 * off 50-200 ms.  While the RELEASE runs the peers still see our LEADING
 * claim, which is no worse than what the lease row tells them; a leave also
 * sets the leaving tag, which hides the claim at once.
 *
 * When ACQUIRE finds a valid lease of another holder, the next try is just
 * after it expires (answer time + remaining_ms + 1: the statement ran
 * before the answer arrived, so that is after the server's expiry) or
 * renew_ms, whichever is sooner; if gossip says that holder is leaving or
 * has announced RELEASED, its RELEASE is probably on its way, so we retry
 * sooner, on the retry backoff.  The holder's failure, leave or release
 * seen in set_peers() is edge-triggered (old view against new view), so an
 * agent that calls set_peers() often does not hammer the database.
 *
 * Gossip backend.  Pure function of the view: the best of the live, not
 * leaving, eligible members, ourselves included, by (priority, name),
 * should lead; it leads at once when no live peer announces LEADING,
 * otherwise it is CANDIDATE until none does or settle_ms has passed.  The
 * new term is max_term + 1, so nobody leads at max_term UINT64_MAX.
 * on_role's @term for FOLLOWER<->CANDIDATE is max_term (no leadership of
 * ours), and the reason is PRECEDENCE.
 *
 * Stale claims.  A claim under a term below max_term is stale (someone led
 * since): it is not reported as the leader, does not hold a candidate back
 * and deposes nobody.  A leader of either backend whose max_term passes its
 * term steps down (HIGHER_TERM).  So election_leader()'s term is always
 * max_term, which only grows.
 *
 * Views.  set_peers() copies the peers, skipping invalid names and our own
 * name, drops announcements that do not validate or are not heeded (an
 * ineligible peer, the other backend, a term jump past term_jump_max over
 * the max_term at the start of the call) and counts them once each (the
 * same announcement ignored in the old view is not counted again), and
 * sorts by name so that lookups are binary searches; at most 65536 peers
 * (-E2BIG beyond), and an allocation failure keeps the previous view
 * (-ENOMEM).  A lease answer
 * that is not for the request in flight is counted as a failure of that
 * request; an answer with nothing in flight is ignored.
 */
#include "election/election.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/backoff.h"
#include "lib/splitmix.h"

#define PEERS_MAX 65536

struct peer {
	char name[ELECTION_NAME_MAX + 1];
	bool live, leaving, eligible;
	bool announced;                /* ann is heeded */
	bool ignored;                  /* ann was given but is not heeded */
	uint32_t priority;
	struct election_announce ann;  /* as given, when announced or ignored */
};

struct election {
	struct election_config cfg;
	char node[ELECTION_NAME_MAX + 1];
	struct election_ops ops;
	uint64_t rng;

	bool started, leaving;
	enum election_role role;
	uint64_t term;                 /* ours while LEADER, else 0 */
	uint64_t max_term;
	uint64_t lead_since;

	/* gossip */
	uint64_t settle_until;         /* CANDIDATE: lead anyway at this time */

	/* postgres */
	uint64_t deadline;             /* LEADER: leadership ends here */
	uint64_t next_renew;           /* LEADER: next RENEW */
	uint64_t next_acquire;         /* follower: next ACQUIRE */
	bool acquire_asap;             /* the holder went away: ACQUIRE next */
	bool inflight;
	enum election_lease_op inflight_op;
	uint64_t inflight_term, inflight_sent;
	bool release_pending;
	uint64_t release_term;
	struct backoff renew_bo, acquire_bo;
	/* RELEASED of a step-down, announced once its RELEASE is answered */
	bool ann_pending;
	uint64_t ann_term, ann_since;

	/* the holder the last lease answer named */
	bool lease_known;
	char lease_holder[ELECTION_NAME_MAX + 1];
	uint64_t lease_term, lease_until;

	struct peer *peers;            /* sorted by name */
	size_t npeers;

	/* the known leader as last reported through on_leader */
	bool leader_known;
	char leader_name[ELECTION_NAME_MAX + 1];
	uint64_t leader_term, leader_since;

	struct election_stats stats;
};

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */

static uint64_t add_ms(uint64_t t, uint64_t d)
{
	return t > UINT64_MAX - d ? UINT64_MAX : t + d;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* 1..ELECTION_NAME_MAX bytes. */
static bool name_valid(const char *s)
{
	size_t n = s ? strnlen(s, ELECTION_NAME_MAX + 1) : 0;

	return n >= 1 && n <= ELECTION_NAME_MAX;
}

static bool pg(const struct election *e)
{
	return e->cfg.backend == ELECTION_BACKEND_POSTGRES;
}

static void raise_term(struct election *e, uint64_t t)
{
	if (t > e->max_term)
		e->max_term = t;
}

static int peer_cmp(const void *a, const void *b)
{
	return strcmp(((const struct peer *)a)->name, ((const struct peer *)b)->name);
}

static const struct peer *find_in(const struct peer *v, size_t n, const char *name)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(v[mid].name, name);

		if (c == 0)
			return &v[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* A live, not leaving peer that announces leadership. */
static bool claims(const struct peer *p)
{
	return p->live && !p->leaving && p->announced && p->ann.state == ELECTION_ANN_LEADING;
}

/* ...under a term not below the highest we know: not stale. */
static bool current_claim(const struct election *e, const struct peer *p)
{
	return claims(p) && p->ann.term >= e->max_term;
}

/* The peer is going or gone as holder of @term: failed, leaving, or has
 * released that term (or a later one). */
static bool gone(const struct peer *p, uint64_t term)
{
	return !p->live || p->leaving ||
	       (p->announced && p->ann.state == ELECTION_ANN_RELEASED && p->ann.term >= term);
}

/* ------------------------------------------------------------------ */
/* Config, life cycle                                                  */
/* ------------------------------------------------------------------ */

void election_config_default(struct election_config *c)
{
	memset(c, 0, sizeof(*c));
	c->backend = ELECTION_BACKEND_GOSSIP;
	c->lease_ms = 5000;
	c->renew_ms = 1000;
	c->guard_ms = 1000;
	c->retry_ms = 100;
	c->settle_ms = 2000;
	c->term_jump_max = ELECTION_TERM_JUMP_MAX;
}

static bool config_valid(const struct election_config *c)
{
	if (!name_valid(c->node))
		return false;
	if (c->backend != ELECTION_BACKEND_GOSSIP && c->backend != ELECTION_BACKEND_POSTGRES)
		return false;
	if (!c->lease_ms || !c->renew_ms || !c->guard_ms || !c->retry_ms || !c->settle_ms)
		return false;
	return c->guard_ms < c->lease_ms && c->renew_ms < c->lease_ms - c->guard_ms;
}

struct election *election_new(const struct election_config *cfg, const struct election_ops *ops,
			      uint64_t now)
{
	struct election *e;

	if (!cfg || !config_valid(cfg))
		return NULL;
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->cfg = *cfg;
	strcpy(e->node, cfg->node);
	e->cfg.node = e->node;
	if (!e->cfg.term_jump_max)
		e->cfg.term_jump_max = ELECTION_TERM_JUMP_MAX;
	if (ops)
		e->ops = *ops;
	e->rng = cfg->seed;
	e->role = ELECTION_FOLLOWER;
	e->next_acquire = now;
	backoff_init(&e->renew_bo, cfg->retry_ms, cfg->renew_ms);
	backoff_init(&e->acquire_bo, cfg->retry_ms, cfg->lease_ms);
	return e;
}

void election_delete(struct election *e)
{
	if (!e)
		return;
	free(e->peers);
	free(e);
}

/* ------------------------------------------------------------------ */
/* Role changes                                                        */
/* ------------------------------------------------------------------ */

static void set_role(struct election *e, enum election_role to, uint64_t term,
		     enum election_why why)
{
	enum election_role from = e->role;

	e->role = to;
	if (from != to && e->ops.on_role)
		e->ops.on_role(e->ops.ctx, from, to, term, why);
}

static void queue_release(struct election *e, uint64_t term)
{
	if (!term)
		return;
	if (!e->release_pending || term > e->release_term)
		e->release_term = term;
	e->release_pending = true;
}

static void announce_released(struct election *e, uint64_t term, uint64_t since)
{
	if (e->ops.announce)
		e->ops.announce(e->ops.ctx, ELECTION_ANN_RELEASED, term, since);
}

/* The RELEASED held back for a RELEASE, if any, goes out now. */
static void flush_released(struct election *e)
{
	if (!e->ann_pending)
		return;
	e->ann_pending = false;
	announce_released(e, e->ann_term, e->ann_since);
}

static void become_leader(struct election *e, uint64_t term, uint64_t now)
{
	flush_released(e);      /* never after the LEADING it would contradict */
	e->term = term;
	raise_term(e, term);
	e->lead_since = now;
	e->stats.elections_won++;
	set_role(e, ELECTION_LEADER, term, ELECTION_WHY_ELECTED);
	if (e->ops.announce)
		e->ops.announce(e->ops.ctx, ELECTION_ANN_LEADING, term, now);
}

/* Stops leading: tells the agent and announces RELEASED; for postgres,
 * queues a RELEASE of the term (not when the lease is known lost) and holds
 * the announcement back until that is answered (see the top of this file). */
static void step_down(struct election *e, enum election_why why, uint64_t now)
{
	uint64_t t = e->term;
	bool later = false;

	e->term = 0;
	e->deadline = 0;
	e->stats.step_downs++;
	if (pg(e)) {
		if (why != ELECTION_WHY_LEASE_LOST) {
			queue_release(e, t);
			later = true;
		}
		e->next_acquire = add_ms(now, e->cfg.renew_ms);
		backoff_reset(&e->acquire_bo);
	}
	set_role(e, ELECTION_FOLLOWER, t, why);
	if (later) {
		flush_released(e);
		e->ann_pending = true;
		e->ann_term = t;
		e->ann_since = e->lead_since;
	} else {
		announce_released(e, t, e->lead_since);
	}
}

/* ------------------------------------------------------------------ */
/* The known leader                                                    */
/* ------------------------------------------------------------------ */

static void consider(const struct election *e, struct election_leader *best, bool *have,
		     const char *name, uint64_t term, enum election_source src, uint64_t since_wall)
{
	if (term < e->max_term)
		return;         /* stale: someone has led since */
	if (*have) {
		if (term < best->term)
			return;
		if (term == best->term) {
			/* The enum is in order of precedence. */
			if (src > best->source ||
			    (src == best->source && strcmp(name, best->name) >= 0))
				return;
		}
	}
	*have = true;
	memset(best, 0, sizeof(*best));
	strcpy(best->name, name);
	best->term = term;
	best->source = src;
	best->self = src == ELECTION_FROM_SELF;
	best->since_wall_ms = since_wall;
}

/* The highest-term claim at @now, none when that is stale; since is left 0. */
static bool leader_compute(const struct election *e, uint64_t now, struct election_leader *out)
{
	bool have = false;

	memset(out, 0, sizeof(*out));
	if (election_is_leader(e, now))
		consider(e, out, &have, e->node, e->term, ELECTION_FROM_SELF, 0);
	for (size_t i = 0; i < e->npeers; i++) {
		const struct peer *p = &e->peers[i];

		if (claims(p))
			consider(e, out, &have, p->name, p->ann.term, ELECTION_FROM_GOSSIP,
				 p->ann.since_wall_ms);
	}
	/* A lease naming ourselves while we do not lead is a grant we did not
	 * believe, or a previous life's: not a leader anyone should use. */
	if (pg(e) && e->lease_known && now < e->lease_until && strcmp(e->lease_holder, e->node))
		consider(e, out, &have, e->lease_holder, e->lease_term, ELECTION_FROM_LEASE, 0);
	if (!have)
		memset(out, 0, sizeof(*out));
	return have;
}

static void leader_update(struct election *e, uint64_t now)
{
	struct election_leader l;
	bool k = leader_compute(e, now, &l);

	if (k == e->leader_known &&
	    (!k || (l.term == e->leader_term && strcmp(l.name, e->leader_name) == 0)))
		return;
	e->leader_known = k;
	strcpy(e->leader_name, l.name);
	e->leader_term = l.term;
	e->leader_since = l.self ? e->lead_since : now;
	e->stats.leader_changes++;
	if (e->ops.on_leader)
		e->ops.on_leader(e->ops.ctx);
}

bool election_leader(const struct election *e, uint64_t now, struct election_leader *out)
{
	bool k = leader_compute(e, now, out);

	if (!k)
		return false;
	if (e->leader_known && out->term == e->leader_term && !strcmp(out->name, e->leader_name))
		out->since = e->leader_since;
	else
		out->since = out->self ? e->lead_since : now;
	return true;
}

/* ------------------------------------------------------------------ */
/* Postgres: requests                                                  */
/* ------------------------------------------------------------------ */

static bool can_acquire(const struct election *e)
{
	return pg(e) && e->started && e->cfg.eligible && !e->leaving &&
	       e->role == ELECTION_FOLLOWER;
}

static void send_request(struct election *e, enum election_lease_op op, uint64_t term,
			 uint64_t now)
{
	e->inflight = true;
	e->inflight_op = op;
	e->inflight_term = term;
	e->inflight_sent = now;
	e->stats.lease_requests++;
	if (e->ops.lease_request)
		e->ops.lease_request(e->ops.ctx, op, term);
}

static void dispatch(struct election *e, uint64_t now)
{
	if (!pg(e) || e->inflight)
		return;
	if (e->release_pending) {
		e->release_pending = false;
		send_request(e, ELECTION_LEASE_RELEASE, e->release_term, now);
	} else if (e->role == ELECTION_LEADER && now >= e->next_renew) {
		send_request(e, ELECTION_LEASE_RENEW, e->term, now);
	} else if (can_acquire(e) && (e->acquire_asap || now >= e->next_acquire)) {
		e->acquire_asap = false;
		send_request(e, ELECTION_LEASE_ACQUIRE, e->max_term, now);
	}
}

static uint32_t jitter_backoff(struct election *e, struct backoff *b)
{
	return backoff_next(b, (uint32_t)splitmix64(&e->rng));
}

/* Remembers the holder an answer named (or that there is none). */
static void learn_holder(struct election *e, const struct election_lease_result *r, uint64_t now)
{
	size_t n = strnlen(r->holder, sizeof(r->holder));

	e->lease_known = false;
	if (!r->holder_valid || n == 0 || n > ELECTION_NAME_MAX || r->term == 0)
		return;
	e->lease_known = true;
	memcpy(e->lease_holder, r->holder, n);
	e->lease_holder[n] = '\0';
	e->lease_term = r->term;
	e->lease_until = add_ms(now, r->remaining_ms);
}

static void acquire_answered(struct election *e, const struct election_lease_result *r,
			     uint64_t max_before, uint64_t now)
{
	uint64_t dl = add_ms(e->inflight_sent, e->cfg.lease_ms - e->cfg.guard_ms);

	if (r->held) {
		if (now >= dl) {
			/* The request hung: the lease may already have expired
			 * and been taken by someone else. */
			backoff_reset(&e->acquire_bo);
			e->stats.late_grants_released++;
			queue_release(e, r->term);
			e->next_acquire = add_ms(now, e->cfg.renew_ms);
		} else if (!can_acquire(e)) {
			queue_release(e, r->term);
		} else if (r->term == 0 || r->term <= max_before) {
			/* Not above what we have seen (a higher term came in
			 * while it ran, or the adapter ignored our max): give it
			 * back; the next ACQUIRE carries the new max_term, on
			 * the backoff so that nothing can loop on the database. */
			queue_release(e, r->term);
			e->acquire_asap = false;
			e->next_acquire = add_ms(now, jitter_backoff(e, &e->acquire_bo));
		} else {
			backoff_reset(&e->acquire_bo);
			e->deadline = dl;
			e->next_renew = add_ms(e->inflight_sent, e->cfg.renew_ms);
			backoff_reset(&e->renew_bo);
			become_leader(e, r->term, now);
		}
		return;
	}
	if (e->lease_known) {
		uint64_t left = add_ms(e->lease_until - now, 1);
		const struct peer *p = strcmp(e->lease_holder, e->node) ?
			find_in(e->peers, e->npeers, e->lease_holder) : NULL;

		if (p && p->live && gone(p, e->lease_term)) {
			/* Leaving or released: its RELEASE is on the way. */
			e->next_acquire = add_ms(now, min_u64(jitter_backoff(e, &e->acquire_bo),
							      left));
		} else {
			/* Held by another, or under our own name yet not taken:
			 * a previous life's lease (another holder id; our own
			 * id's lease ACQUIRE takes back).  It ends when it ends. */
			backoff_reset(&e->acquire_bo);
			e->next_acquire = add_ms(now, min_u64(e->cfg.renew_ms, left));
		}
	} else {
		/* Free yet not taken: a race with another ACQUIRE, or an
		 * adapter quirk; retry soon but backing off. */
		e->next_acquire = add_ms(now, jitter_backoff(e, &e->acquire_bo));
	}
}

static void renew_answered(struct election *e, const struct election_lease_result *r, uint64_t now)
{
	uint64_t t = e->inflight_term;
	uint64_t dl = add_ms(e->inflight_sent, e->cfg.lease_ms - e->cfg.guard_ms);
	bool ours = r->held && r->term == t;

	if (e->role != ELECTION_LEADER || e->term != t) {
		/* We stepped down meanwhile; a grant is given back. */
		if (ours) {
			if (now >= dl)
				e->stats.late_grants_released++;
			queue_release(e, t);
		}
		return;
	}
	if (!ours) {
		step_down(e, ELECTION_WHY_LEASE_LOST, now);
		return;
	}
	if (now >= dl) {
		/* Unreachable in practice (the old deadline is earlier and
		 * housekeeping ran), kept for the contract's sake. */
		e->stats.late_grants_released++;
		step_down(e, ELECTION_WHY_DEADLINE, now);
		return;
	}
	e->deadline = dl;
	e->next_renew = add_ms(e->inflight_sent, e->cfg.renew_ms);
	backoff_reset(&e->renew_bo);
}

static void failed_answer(struct election *e, enum election_lease_op op, uint64_t now)
{
	e->stats.lease_failures++;
	if (op == ELECTION_LEASE_ACQUIRE && can_acquire(e))
		e->next_acquire = add_ms(now, jitter_backoff(e, &e->acquire_bo));
	else if (op == ELECTION_LEASE_RENEW && e->role == ELECTION_LEADER &&
		 e->term == e->inflight_term)
		e->next_renew = add_ms(now, jitter_backoff(e, &e->renew_bo));
}

/* ------------------------------------------------------------------ */
/* Gossip: who should lead                                             */
/* ------------------------------------------------------------------ */

static bool may_lead(const struct election *e)
{
	return e->started && e->cfg.eligible && !e->leaving;
}

/* We are the lowest (priority, name) among live, not leaving, eligible
 * members. */
static bool self_best(const struct election *e)
{
	for (size_t i = 0; i < e->npeers; i++) {
		const struct peer *p = &e->peers[i];

		if (!p->live || p->leaving || !p->eligible)
			continue;
		if (p->priority < e->cfg.priority ||
		    (p->priority == e->cfg.priority && strcmp(p->name, e->node) < 0))
			return false;
	}
	return true;
}

static bool any_claim(const struct election *e)
{
	for (size_t i = 0; i < e->npeers; i++)
		if (current_claim(e, &e->peers[i]))
			return true;
	return false;
}

/* We lead (or led) under a term below one we have seen, or a live peer
 * leads under a term above ours (or the same term and a lower name, for
 * the gossip backend). */
static bool outranked(const struct election *e)
{
	if (e->max_term > e->term)
		return true;
	for (size_t i = 0; i < e->npeers; i++) {
		const struct peer *p = &e->peers[i];

		if (!current_claim(e, p))
			continue;
		if (p->ann.term > e->term)
			return true;
		if (!pg(e) && p->ann.term == e->term && strcmp(p->name, e->node) < 0)
			return true;
	}
	return false;
}

static void gossip_eval(struct election *e, uint64_t now)
{
	bool should;

	if (e->role == ELECTION_LEADER) {
		if (e->leaving)
			step_down(e, ELECTION_WHY_LEAVING, now);
		else if (!may_lead(e))
			step_down(e, ELECTION_WHY_INELIGIBLE, now);
		else if (outranked(e))
			step_down(e, ELECTION_WHY_HIGHER_TERM, now);
		else if (!self_best(e))
			step_down(e, ELECTION_WHY_PRECEDENCE, now);
	}
	/* max_term + 1 must not wrap: at UINT64_MAX nobody leads. */
	should = may_lead(e) && self_best(e) && e->max_term < UINT64_MAX;
	if (e->role == ELECTION_CANDIDATE && !should)
		set_role(e, ELECTION_FOLLOWER, e->max_term,
			 e->leaving ? ELECTION_WHY_LEAVING : ELECTION_WHY_PRECEDENCE);
	if (e->role == ELECTION_FOLLOWER && should) {
		if (!any_claim(e)) {
			become_leader(e, e->max_term + 1, now);
			return;
		}
		e->settle_until = add_ms(now, e->cfg.settle_ms);
		set_role(e, ELECTION_CANDIDATE, e->max_term, ELECTION_WHY_PRECEDENCE);
	}
	if (e->role == ELECTION_CANDIDATE && (!any_claim(e) || now >= e->settle_until))
		become_leader(e, e->max_term + 1, now);
}

/* ------------------------------------------------------------------ */
/* Inputs                                                              */
/* ------------------------------------------------------------------ */

static void housekeep(struct election *e, uint64_t now)
{
	if (pg(e) && e->role == ELECTION_LEADER && now >= e->deadline)
		step_down(e, ELECTION_WHY_DEADLINE, now);
	if (e->lease_known && now >= e->lease_until)
		e->lease_known = false;
}

static void follow_up(struct election *e, uint64_t now)
{
	if (pg(e)) {
		if (e->role == ELECTION_LEADER && outranked(e))
			step_down(e, ELECTION_WHY_HIGHER_TERM, now);
		dispatch(e, now);
	} else {
		gossip_eval(e, now);
	}
	leader_update(e, now);
}

void election_start(struct election *e, uint64_t now)
{
	if (!e)
		return;
	housekeep(e, now);
	if (!e->started) {
		e->started = true;
		if (can_acquire(e))
			e->acquire_asap = true;
	}
	follow_up(e, now);
}

uint64_t election_tick(struct election *e, uint64_t now)
{
	if (!e)
		return UINT64_MAX;
	housekeep(e, now);
	follow_up(e, now);
	return election_next_deadline(e);
}

uint64_t election_next_deadline(const struct election *e)
{
	uint64_t d = UINT64_MAX;

	if (!e)
		return d;
	if (pg(e)) {
		if (e->role == ELECTION_LEADER) {
			d = min_u64(d, e->deadline);
			if (!e->inflight)
				d = min_u64(d, e->next_renew);
		}
		if (can_acquire(e) && !e->inflight)
			d = min_u64(d, e->next_acquire);
		if (e->lease_known)
			d = min_u64(d, e->lease_until);
	} else if (e->role == ELECTION_CANDIDATE) {
		d = min_u64(d, e->settle_until);
	}
	return d;
}

/* Does @q announce RELEASED where @p (its old self, or NULL) did not, of
 * the lease we know of (any, when we know none)? */
static bool newly_released(const struct election *e, const struct peer *p, const struct peer *q)
{
	if (!q->announced || q->ann.state != ELECTION_ANN_RELEASED)
		return false;
	if (p && p->announced && p->ann.state == ELECTION_ANN_RELEASED &&
	    p->ann.term == q->ann.term)
		return false;
	return !e->lease_known ||
	       (strcmp(e->lease_holder, q->name) == 0 && q->ann.term >= e->lease_term);
}

/* Did @old show a claimant or the lease holder that @new shows gone, or
 * does a peer newly announce RELEASED (its RELEASE has been answered)? */
static bool holder_went(const struct election *e, const struct peer *old, size_t nold,
			const struct peer *nv, size_t nnew)
{
	for (size_t i = 0; i < nold; i++) {
		const struct peer *p = &old[i], *q;

		if (!claims(p))
			continue;
		q = find_in(nv, nnew, p->name);
		if (!q || !claims(q) || q->ann.term < p->ann.term)
			return true;
	}
	if (e->lease_known && strcmp(e->lease_holder, e->node)) {
		const struct peer *p = find_in(old, nold, e->lease_holder);
		const struct peer *q = find_in(nv, nnew, e->lease_holder);

		if (q && gone(q, e->lease_term) && !(p && gone(p, e->lease_term)))
			return true;
	}
	for (size_t i = 0; i < nnew; i++)
		if (newly_released(e, find_in(old, nold, nv[i].name), &nv[i]))
			return true;
	return false;
}

/* A valid announcement from @p is listened to: an eligible peer (of our
 * backend, when we may lead ourselves: a node that never leads only
 * observes, and follows whichever backend the primary region runs; its own
 * setting is only what it would use, and outside the primary region it
 * usually has no database at all), its term at most term_jump_max above
 * @max (the max_term before this view, so that the order of the peers
 * does not matter). */
static bool heeded(const struct election *e, const struct election_peer *p, uint64_t max)
{
	if (!p->eligible || (e->cfg.eligible && p->ann.backend != (uint8_t)e->cfg.backend))
		return false;
	return p->ann.term <= max || p->ann.term - max <= e->cfg.term_jump_max;
}

/* Counts @q's ignored announcement unless @old already ignored the same. */
static void count_ignored(struct election *e, const struct peer *old, size_t nold,
			  const struct peer *q)
{
	const struct peer *p = find_in(old, nold, q->name);

	if (p && p->ignored && p->ann.state == q->ann.state && p->ann.backend == q->ann.backend &&
	    p->ann.term == q->ann.term)
		return;
	e->stats.announcements_ignored++;
}

int election_set_peers(struct election *e, const struct election_peer *peers, size_t n,
		       uint64_t now)
{
	struct peer *v = NULL, *old;
	size_t m = 0, nold;

	if (!e || (n && !peers))
		return -EINVAL;
	if (n > PEERS_MAX)
		return -E2BIG;
	if (n) {
		v = malloc(n * sizeof(*v));
		if (!v)
			return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		const struct election_peer *p = &peers[i];
		struct peer *q = &v[m];

		if (!name_valid(p->name) || strcmp(p->name, e->node) == 0)
			continue;
		memset(q, 0, sizeof(*q));
		strcpy(q->name, p->name);
		q->live = p->live;
		q->leaving = p->leaving;
		q->eligible = p->eligible;
		q->priority = p->priority;
		if (p->announced) {
			q->ann = p->ann;
			q->announced = election_announce_valid(&p->ann) &&
				       heeded(e, p, e->max_term);
			q->ignored = !q->announced;
		}
		m++;
	}
	if (m > 1)
		qsort(v, m, sizeof(*v), peer_cmp);
	for (size_t i = 0; i < m; i++)
		if (v[i].ignored)
			count_ignored(e, e->peers, e->npeers, &v[i]);

	housekeep(e, now);
	old = e->peers;
	nold = e->npeers;
	e->peers = v;
	e->npeers = m;
	for (size_t i = 0; i < m; i++)
		if (v[i].announced)
			raise_term(e, v[i].ann.term);
	if (can_acquire(e) && holder_went(e, old, nold, v, m))
		e->acquire_asap = true;
	free(old);
	follow_up(e, now);
	return 0;
}

void election_lease_done(struct election *e, const struct election_lease_result *r,
			 uint64_t now)
{
	enum election_lease_op op;
	uint64_t max_before;

	if (!e || !r || !pg(e) || !e->inflight)
		return;
	housekeep(e, now);
	e->inflight = false;
	op = e->inflight_op;
	if (r->op != op || r->status < 0) {
		failed_answer(e, op, now);
	} else {
		max_before = e->max_term;
		raise_term(e, r->term);
		learn_holder(e, r, now);
		if (op == ELECTION_LEASE_ACQUIRE)
			acquire_answered(e, r, max_before, now);
		else if (op == ELECTION_LEASE_RENEW)
			renew_answered(e, r, now);
	}
	/* Our RELEASE is through (or failed: the lease then ends on its own):
	 * tell the followers now, before anything else is sent. */
	if (op == ELECTION_LEASE_RELEASE && !e->release_pending)
		flush_released(e);
	follow_up(e, now);
}

void election_leave(struct election *e, uint64_t now)
{
	if (!e)
		return;
	housekeep(e, now);
	if (!e->leaving) {
		e->leaving = true;
		e->acquire_asap = false;
		if (e->role == ELECTION_LEADER)
			step_down(e, ELECTION_WHY_LEAVING, now);
		else if (e->role == ELECTION_CANDIDATE)
			set_role(e, ELECTION_FOLLOWER, e->max_term, ELECTION_WHY_LEAVING);
	}
	follow_up(e, now);
}

bool election_leave_done(const struct election *e)
{
	return e && e->leaving && !e->inflight && !e->release_pending;
}

/* ------------------------------------------------------------------ */
/* Queries                                                             */
/* ------------------------------------------------------------------ */

enum election_role election_role(const struct election *e)
{
	return e ? e->role : ELECTION_FOLLOWER;
}

bool election_is_leader(const struct election *e, uint64_t now)
{
	if (!e || e->role != ELECTION_LEADER)
		return false;
	return !pg(e) || now < e->deadline;
}

uint64_t election_term(const struct election *e)
{
	return e && e->role == ELECTION_LEADER ? e->term : 0;
}

uint64_t election_max_term(const struct election *e)
{
	return e ? e->max_term : 0;
}

uint64_t election_deadline(const struct election *e)
{
	return e && pg(e) && e->role == ELECTION_LEADER ? e->deadline : 0;
}

void election_stats_get(const struct election *e, struct election_stats *out)
{
	if (e)
		*out = e->stats;
	else
		memset(out, 0, sizeof(*out));
}
