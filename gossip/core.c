/*
 * gossip/core.c - the SWIM membership core (see gossip/gossip.h).
 *
 * The protocol
 * ------------
 * Every member runs the same loop.  Once per probe interval it picks the
 * next member of a private probe order (every member once per round, the
 * order reshuffled at the end of each round, newcomers inserted at a random
 * place: "randomized round-robin", so the first detection of a dead member
 * is bounded by one round) and pings it.  Without an ack after the probe
 * timeout it asks k random alive members to ping the target for it
 * (ping-req); an intermediary pings with its own sequence number, forwards
 * the ack, and sends a nack if its own ping times out, so that the prober
 * can tell "the target is silent" from "I am not hearing anybody".  No ack
 * at all by the end of the probe interval makes the target suspect.
 *
 * Suspicion is Lifeguard's: a suspect gets a timer that starts long
 * (max = suspicion_max_timeout_mult * min, min = suspicion_mult *
 * max(1, log10 N) * probe_interval) and shrinks as independent members
 * confirm the suspicion, reaching min after k = suspicion_mult - 2
 * confirmations (timeout = max - (max-min) * log(c+1) / log(k+1)).  A
 * suspect that hears of it (through gossip, or through the ping we send it,
 * which carries the suspicion: Lifeguard's "buddy system") refutes by
 * raising its incarnation above the suspicion's and spreading alive.  When
 * the timer runs out the member is failed.  A suspicion of a newer
 * incarnation of a member already suspect (it refuted, we missed it, and
 * it is suspected again) starts a new timer: the old one and its
 * confirmations were about a refuted incarnation.  The prober's own local
 * health (Lifeguard's awareness, 0 = healthy) rises with missed nacks, failed
 * probes and refutations of ourselves, falls with successful probes, and
 * stretches our probe interval and timeout by (health + 1): a node that is
 * itself slow stops accusing healthy ones.
 *
 * Everything we learn (alive, suspect, dead, leave, user data) goes into a
 * bounded broadcast queue and is piggybacked on every packet we send,
 * least-transmitted first, until each item has gone out retransmit_mult *
 * ceil(log10(N+1)) times; a newer item about the same member (or the same
 * user key of the same member) replaces the older one.  (Not on the
 * one-shot fan-outs below, which go to every member at once: piggybacked
 * there, each item's whole budget would go to the first few members in
 * table order.)  A separate gossip tick sends the queue to a few random
 * members, including recently failed ones so that a false failure can
 * still be refuted.  Periodic push-pull
 * (a full state exchange over a stream) repairs whatever gossip lost, and
 * is how a node joins.
 *
 * Failed and left members stay as tombstones for reconnect_timeout (24 h):
 * every reconnect_interval we push-pull with one random failed tombstone,
 * so that two halves of a partition find each other again by themselves
 * when the network returns.  The table is bounded (members_max), tombstones
 * included; when it is full, the oldest tombstone (left ones before failed
 * ones) is forgotten to make room, so that members long gone never keep a
 * live newcomer out.  A member restarted under the same name carries a
 * larger process id, which supersedes everything known about the old one,
 * its user data included.
 *
 * Where we differ, and why
 * ------------------------
 * Detection time with these timings is bounded below by the protocol
 * itself: the first probe of a dead member (the minimum over N-1
 * randomized round-robins, about one probe interval on average), plus
 * the probe interval, plus the minimum suspicion timeout.  Nothing here
 * lowers any of those; what we change is everything that made real
 * clusters slower than that bound, or wrong:
 *
 * - Suspect-first probing.  When we hear that someone suspects a member we
 *   believe alive, we move that member to the head of our probe order.  Our
 *   own probe then comes within one probe interval instead of whenever the
 *   round-robin gets there (up to N intervals), so a real failure collects
 *   its Lifeguard confirmations and reaches the minimum suspicion timeout
 *   in time, and a false suspicion meets a successful probe (no
 *   confirmation) early.  The price is one extra ping per suspicion heard.
 * - Confirmations are not invalidated.  The broadcast queue replaces older
 *   news about a member with newer news, except that suspicions from
 *   different accusers stay side by side: each is one independent
 *   confirmation, and memberlist's rule (the latest accuser's suspicion
 *   replaces the others') starves the other nodes of exactly the
 *   confirmations that shorten their timers.  At most k + 1 are ever
 *   queued per member, since a confirmation is only passed on when new.
 * - The first declarer tells everybody.  The member whose suspicion timer
 *   runs out first sends "dead" directly to every alive member, so that all
 *   mark the failure within one network latency of the first (everybody
 *   else's timer would have run out within a gossip round or two anyway).
 *   A join is announced the same way (the joiner to every member it just
 *   learned), and so is a leave: O(N) datagrams once per membership
 *   change, instead of leaving the last member to the tail of an epidemic
 *   whose retransmit limit misses any given member with probability about
 *   e^-limit.  Each of those datagrams carries its one message alone.
 * - Nacks that arrive in time.  A ping-req intermediary sends its nack at
 *   four fifths of the requester's indirect window (probe interval minus
 *   probe timeout).  memberlist waits a full probe timeout, so with its
 *   LAN timings the nack lands two network latencies after the verdict it
 *   was meant to inform, and every failed probe counts as missed nacks
 *   against the prober's health.
 * - Late-timer grace.  The core is told the time, so it can see when it is
 *   run late (a starved CPU, a paused VM): a verdict (probe failed,
 *   suspicion expired) reached by a tick that runs more than half a probe
 *   timeout after its deadline is postponed once, by one probe timeout,
 *   because the ack or the refutation may be sitting unread in our own
 *   receive queue; and the lateness counts against our local health.
 *   Lifeguard infers local slowness from missed nacks only; a late timer
 *   is the most direct evidence there is.
 * - Refutation rides on the answer, and stale rumours get answered.  The
 *   buddy-system suspicion is placed before the ping in the packet, so the
 *   suspect refutes before it acks and its ack carries the refutation
 *   back within one round trip.  Retransmission is bounded, so some member
 *   can miss a refutation and keep a stale suspicion until its timer
 *   declares a live member failed (the false failures our 10%-loss
 *   simulation found).  Four rules close that: whoever hands us an
 *   accusation older than what we know (about us or anyone) gets our
 *   newer alive back directly, and we gossip it again; a probe's verdict
 *   is about the member as it was when the probe began (a refutation or a
 *   restart meanwhile voids it, as in memberlist); after our own probe of
 *   a member fails we look once more, next, so that a second buddy ping
 *   fetches the refutation if only our datagrams were lost; and a member
 *   that answers our ping while we still hold it suspect is pinged again
 *   next, for the same reason.
 * - Dead in a push-pull becomes suspect (as memberlist does), so a stale
 *   view carried across a healed partition never kills a live member
 *   outright; the member gets the chance to refute.  A push-pull server
 *   merges the request before it answers, so the answer already holds its
 *   refutations: one exchange across a healed partition revives both ends.
 * - Left is kept apart from failed: a left member is never suspected or
 *   probed again, and left tombstones are not retried by reconnect.
 * - Identity.  Names are stable across restarts, incarnations are not; so
 *   every message carries the sender process's id, and a larger id wins
 *   regardless of incarnation.  Someone claiming our own name with a larger
 *   id is reported once (GOSSIP_EV_CONFLICT): we are the stale one.  User
 *   data belongs to a process too: a user message carries its origin's id
 *   ("d"), and user entries of a push-pull record belong to the record's
 *   id; either is applied only while that id is the one we hold for the
 *   member (older: stale; newer: not known yet, dropped until its alive
 *   and the next push-pull bring it), and a restart clears what the old
 *   process said.  Without that, the old process's data could come back
 *   through any member that missed the restart, and stay forever.  A
 *   message without an id (an older sender) means the process we know;
 *   such data under our own name at a version we did not write is outbid
 *   the way a suspicion is refuted.  A left member that comes back as a
 *   new process is a new member (GOSSIP_EV_JOIN), not a revived one.
 * - Incarnations are bounded.  An incarnation (or user-data version) more
 *   than GOSSIP_INC_JUMP_MAX (2^32) above what we know is dropped and
 *   counted: one corrupt "suspect at 2^64 - 1" would otherwise leave its
 *   subject unable to refute ever again.  A member believes only half that
 *   jump about itself, so its refutation stays believable to whoever missed
 *   the accusation.  Our own incarnation never wraps; should it ever have
 *   to pass 2^64 - 1 we take a larger id instead.
 * - Push-pull states are bounded (stream_max, default just under the
 *   transport's 1 MiB frame).  A larger state is trimmed, not refused:
 *   tombstones go first, oldest first, then user data; live members are
 *   always sent, as many as fit.  memberlist sends it all, and past the
 *   frame limit every push-pull and every join fails.
 * - No TCP fallback ping (memberlist has one): the stream seam is for state
 *   exchange only; indirect probes through k members cover the same risk.
 * - The member count N used for timeouts and retransmit limits counts live
 *   members only (alive and suspect), not the 24-hour tombstones.  Local
 *   health is bounded to 0..awareness_max-1, so probes stretch at most
 *   awareness_max times, as in memberlist.
 *
 * The core is deterministic: all randomness comes from a xoshiro256** PRNG
 * seeded with cfg->seed, all time from the callers, no global state.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/gossip.h"
#include "lib/splitmix.h"

#define RELAY_MAX 128               /* ping-reqs we relay at once */
#define STREAM_PENDING_MAX 64       /* our push-pulls in flight */
#define SUSPICION_CONFIRM_MAX 16    /* confirmations we count (k bound) */
#define RTT_EWMA_SHIFT 3            /* rtt += (sample - rtt) / 8 */
#define FIX_MAX 8                   /* corrections sent back per packet */

/* ------------------------------------------------------------------ */
/* Data                                                                */
/* ------------------------------------------------------------------ */

struct user_slot {
	char key[GOSSIP_USER_KEY_MAX + 1];
	uint64_t version;
	uint16_t len;
	uint8_t data[GOSSIP_USER_DATA_MAX];
};

/* Lifeguard suspicion timer of one suspect member. */
struct suspicion {
	uint64_t start;        /* when we began to suspect (ms) */
	uint64_t min, max;     /* timeout bounds (ms) */
	uint64_t expiry;       /* start + current timeout, never before "now" */
	uint32_t k;            /* confirmations that bring the timeout to min */
	uint32_t n;            /* confirmations counted */
	uint32_t seen;         /* used entries of from[] */
	bool deferred;         /* late-timer grace already granted */
	bool reprobed;         /* our own second look already scheduled */
	uint64_t from[SUSPICION_CONFIRM_MAX + 1];  /* name hashes, no double counting */
};

struct gossip_member {
	char name[GOSSIP_NAME_MAX + 1];
	char addr[GOSSIP_ADDR_MAX + 1];
	uint64_t id;
	uint64_t incarnation;
	uint64_t since;             /* last status change (core ms) */
	enum gossip_status status;
	struct gossip_tags tags;
	uint32_t rtt_us;
	bool is_self;
	uint64_t hash;              /* of name */
	size_t idx;                 /* in g->members */
	size_t probe_idx;           /* in g->probe (unused for self) */
	struct gossip_member *hnext;
	struct suspicion *susp;     /* while suspect */
	struct user_slot *user;     /* GOSSIP_USER_KEYS slots, allocated on first use */
	uint8_t user_count;
};

enum bcast_kind { BCAST_MEMBER, BCAST_USER };

/* One queued broadcast.  msg's byte fields point into this struct, which
 * is therefore never copied, only pointed to. */
struct bcast {
	uint64_t serial;            /* creation order: newer first on ties */
	uint32_t transmits;
	enum bcast_kind kind;
	char node[GOSSIP_NAME_MAX + 1];
	char key[GOSSIP_USER_KEY_MAX + 1];
	char aux[GOSSIP_ADDR_MAX > GOSSIP_NAME_MAX ? GOSSIP_ADDR_MAX + 1 : GOSSIP_NAME_MAX + 1];
	uint8_t data[GOSSIP_USER_DATA_MAX];
	struct gossip_msg msg;
};

/* A ping-req we are serving as intermediary. */
struct relay {
	bool used;
	uint32_t seq;               /* our ping's */
	uint32_t their_seq;         /* the requester's */
	bool want_nack;             /* and not sent yet */
	uint64_t nack_at;
	uint64_t deadline;          /* acks are forwarded until then */
	char requester[GOSSIP_NAME_MAX + 1];
	char requester_addr[GOSSIP_ADDR_MAX + 1];
};

struct pending_stream {
	bool used;
	bool join;
	uint64_t id;
	uint64_t started;
	char peer[GOSSIP_NAME_MAX + 1];   /* "" when unknown (a join seed) */
};

struct probe {
	bool active;
	struct gossip_member *target;
	uint64_t target_id;         /* who it was when the probe began */
	uint64_t target_inc;
	uint32_t seq;
	uint64_t start;
	uint64_t timeout_at;        /* send ping-reqs */
	uint64_t end_at;            /* verdict */
	bool indirect_sent;
	bool deferred;              /* late-timer grace already granted */
	uint32_t nacks_expected;
	uint32_t nacks_received;
};

struct gossip {
	struct gossip_config cfg;
	struct gossip_env env;
	uint64_t rng[4];

	struct gossip_member *self;
	struct gossip_member **members;   /* all, self included */
	size_t count, cap;
	struct gossip_member **buckets;   /* hash chains by name */
	size_t nbuckets;                  /* power of two */
	size_t live;                      /* alive + suspect, self included */
	size_t suspects;

	struct gossip_member **probe;     /* probe order, self excluded */
	size_t probe_len;
	size_t probe_cursor;
	struct gossip_member **scratch;   /* random choices, cap entries */

	struct probe pr;
	struct gossip_member *recheck;    /* acked, yet still suspect to us */
	struct gossip_member *fix[FIX_MAX];  /* corrections owed to the sender */
	size_t nfix;
	uint64_t next_probe_at;
	uint32_t seq;
	uint32_t health;

	struct relay relays[RELAY_MAX];
	struct pending_stream streams[STREAM_PENDING_MAX];
	uint64_t next_stream_id;

	struct bcast **queue;
	size_t qlen;
	uint64_t bcast_serial;

	uint64_t next_gossip_at;
	uint64_t next_pushpull_at;
	uint64_t next_reconnect_at;
	uint64_t deadline;

	bool leaving;
	uint64_t leave_at;
	bool conflict_reported;

	struct gossip_encoder *enc;
	struct gossip_packet pkt;         /* decoder output, reused */
	struct gossip_buf sbuf;           /* push-pull requests */
	struct gossip_stats stats;
};

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

/* xoshiro256** */
static uint64_t rng_next(struct gossip *g)
{
	uint64_t *s = g->rng;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

/* Uniform in [0, n); 0 when n == 0.  The modulo bias is below 2^-50 for
 * any n this core uses. */
static uint64_t rng_below(struct gossip *g, uint64_t n)
{
	return n ? rng_next(g) % n : 0;
}

static uint64_t name_hash(const char *s, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < len; i++) {
		h ^= (uint8_t)s[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static struct gossip_bytes bytes_of(const char *s)
{
	return (struct gossip_bytes){ .ptr = s, .len = (uint32_t)strlen(s) };
}

/*
 * Copies the decoded token @b into @out (@size bytes) as a C string.  No
 * check: gossip_packet_decode() and gossip_state_decode() hand over only
 * tokens that pass gossip_token_valid() against the field's bound, and
 * @out is sized for that bound; @size only keeps a mistake from writing
 * past @out.
 */
static void token_copy(char *out, size_t size, const struct gossip_bytes *b)
{
	size_t n = b->len < size ? b->len : size - 1;

	memcpy(out, b->ptr, n);
	out[n] = '\0';
}

static bool bytes_eq(const struct gossip_bytes *b, const char *s)
{
	size_t n = strlen(s);

	return b->len == n && (n == 0 || memcmp(b->ptr, s, n) == 0);
}

static uint64_t scaled(const struct gossip *g, uint32_t ms)
{
	return (uint64_t)ms * (g->health + 1);
}

/* ceil(log10(n + 1)) in integers. */
static uint32_t log10_ceil(size_t n)
{
	uint32_t d = 0;
	uint64_t p = 1;

	while (p < (uint64_t)n + 1 && d < 20) {
		p *= 10;
		d++;
	}
	return d;
}

static uint32_t retransmit_limit(const struct gossip *g)
{
	uint32_t l = g->cfg.retransmit_mult * log10_ceil(g->live);

	return l ? l : 1;
}

static void health_add(struct gossip *g, int delta)
{
	int64_t h = (int64_t)g->health + delta;
	int64_t top = g->cfg.awareness_max ? (int64_t)g->cfg.awareness_max - 1 : 0;

	if (h < 0)
		h = 0;
	if (h > top)
		h = top;
	g->health = (uint32_t)h;
}

static void emit(struct gossip *g, enum gossip_event_type type, const struct gossip_member *m)
{
	struct gossip_event ev = { .type = type, .member = m };

	if (g->env.on_event)
		g->env.on_event(g->env.ctx, &ev);
}

/* ------------------------------------------------------------------ */
/* Profiles and status names                                           */
/* ------------------------------------------------------------------ */

const char *gossip_status_name(enum gossip_status s)
{
	switch (s) {
	case GOSSIP_ALIVE:
		return "alive";
	case GOSSIP_SUSPECT:
		return "suspect";
	case GOSSIP_FAILED:
		return "failed";
	case GOSSIP_LEFT:
		return "left";
	}
	return NULL;
}

int gossip_status_parse(const char *name)
{
	for (int s = GOSSIP_ALIVE; s <= GOSSIP_LEFT; s++) {
		if (name && strcmp(name, gossip_status_name((enum gossip_status)s)) == 0)
			return s;
	}
	return -EINVAL;
}

bool gossip_name_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > GOSSIP_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

int gossip_config_profile(struct gossip_config *c, const char *profile)
{
	int rc = 0;

	memset(c, 0, sizeof(*c));
	/* memberlist's DefaultLANConfig */
	c->probe_interval = 1000;
	c->probe_timeout = 500;
	c->indirect_checks = 3;
	c->suspicion_mult = 4;
	c->suspicion_max_timeout_mult = 6;
	c->awareness_max = 8;
	c->gossip_interval = 200;
	c->gossip_nodes = 3;
	c->retransmit_mult = 4;
	c->gossip_to_dead_ms = 30000;
	c->pushpull_interval = 30000;
	c->reconnect_interval = 10000;
	c->reconnect_timeout = 24ULL * 3600 * 1000;
	c->leave_propagate_ms = 1000;
	c->members_max = 4096;
	c->broadcast_queue_max = 1024;
	c->stream_max = GOSSIP_STREAM_MAX_DEFAULT;

	if (profile == NULL || strcmp(profile, "lan") == 0) {
		/* as above */
	} else if (strcmp(profile, "wan") == 0) {
		c->probe_interval = 5000;
		c->probe_timeout = 3000;
		c->suspicion_mult = 6;
		c->gossip_interval = 500;
		c->gossip_nodes = 4;
		c->pushpull_interval = 60000;
		c->gossip_to_dead_ms = 60000;
	} else if (strcmp(profile, "local") == 0) {
		c->probe_timeout = 200;
		c->suspicion_mult = 3;
		c->gossip_interval = 100;
		c->retransmit_mult = 2;
		c->pushpull_interval = 15000;
		c->gossip_to_dead_ms = 15000;
		c->reconnect_interval = 5000;
		c->leave_propagate_ms = 500;
	} else {
		rc = -EINVAL;
	}
	return rc;
}

/* ------------------------------------------------------------------ */
/* Member table                                                        */
/* ------------------------------------------------------------------ */

static struct gossip_member *find_n(const struct gossip *g, const char *name, size_t len)
{
	uint64_t h = name_hash(name, len);

	for (struct gossip_member *m = g->buckets[h & (g->nbuckets - 1)]; m; m = m->hnext) {
		if (m->hash == h && strlen(m->name) == len && memcmp(m->name, name, len) == 0)
			return m;
	}
	return NULL;
}

static struct gossip_member *find(const struct gossip *g, const char *name)
{
	return find_n(g, name, strlen(name));
}

static void hash_insert(struct gossip_member **buckets, size_t nbuckets, struct gossip_member *m)
{
	size_t b = m->hash & (nbuckets - 1);

	m->hnext = buckets[b];
	buckets[b] = m;
}

static int table_grow(struct gossip *g)
{
	size_t ncap = g->cap ? g->cap * 2 : 16;
	struct gossip_member **members = realloc(g->members, ncap * sizeof(*members));

	if (!members)
		return -ENOMEM;
	g->members = members;
	struct gossip_member **probe = realloc(g->probe, ncap * sizeof(*probe));

	if (!probe)
		return -ENOMEM;
	g->probe = probe;
	struct gossip_member **scratch = realloc(g->scratch, ncap * sizeof(*scratch));

	if (!scratch)
		return -ENOMEM;
	g->scratch = scratch;
	g->cap = ncap;

	if (ncap > g->nbuckets) {
		struct gossip_member **nb = calloc(ncap, sizeof(*nb));

		if (!nb)
			return -ENOMEM;
		for (size_t i = 0; i < g->count; i++)
			hash_insert(nb, ncap, g->members[i]);
		free(g->buckets);
		g->buckets = nb;
		g->nbuckets = ncap;
	}
	return 0;
}

static void probe_reindex(struct gossip *g, size_t from, size_t to)
{
	for (size_t i = from; i < to && i < g->probe_len; i++)
		g->probe[i]->probe_idx = i;
}

/* A newcomer goes to a random place of the probe order, so that a burst
 * of joins does not line up behind the cursor in join order. */
static void probe_insert(struct gossip *g, struct gossip_member *m)
{
	size_t j = (size_t)rng_below(g, g->probe_len + 1);

	g->probe[g->probe_len] = m;
	m->probe_idx = g->probe_len;
	g->probe_len++;
	if (j != m->probe_idx) {
		struct gossip_member *o = g->probe[j];

		g->probe[j] = m;
		g->probe[m->probe_idx] = o;
		o->probe_idx = m->probe_idx;
		m->probe_idx = j;
	}
}

static void probe_remove(struct gossip *g, struct gossip_member *m)
{
	size_t p = m->probe_idx;

	memmove(&g->probe[p], &g->probe[p + 1], (g->probe_len - p - 1) * sizeof(g->probe[0]));
	g->probe_len--;
	if (g->probe_cursor > p)
		g->probe_cursor--;
	probe_reindex(g, p, g->probe_len);
}

static void probe_shuffle(struct gossip *g)
{
	for (size_t i = g->probe_len; i > 1; i--) {
		size_t j = (size_t)rng_below(g, i);
		struct gossip_member *t = g->probe[i - 1];

		g->probe[i - 1] = g->probe[j];
		g->probe[j] = t;
	}
	probe_reindex(g, 0, g->probe_len);
}

/* Suspect-first probing: @m becomes the next member we probe. */
static void probe_move_next(struct gossip *g, struct gossip_member *m)
{
	size_t p, c;

	if (g->probe_cursor >= g->probe_len) {
		/* The round is over: start the next one now, with @m first. */
		probe_shuffle(g);
		g->probe_cursor = 0;
	}
	p = m->probe_idx;
	c = g->probe_cursor;
	if (p == c)
		return;
	if (p > c) {
		memmove(&g->probe[c + 1], &g->probe[c], (p - c) * sizeof(g->probe[0]));
		g->probe[c] = m;
		probe_reindex(g, c, p + 1);
	} else {
		/* Already probed this round: probe it again, next. */
		memmove(&g->probe[p], &g->probe[p + 1], (c - 1 - p) * sizeof(g->probe[0]));
		g->probe[c - 1] = m;
		g->probe_cursor = c - 1;
		probe_reindex(g, p, c);
	}
}

static bool is_live(enum gossip_status s)
{
	return s == GOSSIP_ALIVE || s == GOSSIP_SUSPECT;
}

static void suspicion_clear(struct gossip *g, struct gossip_member *m)
{
	if (m->susp) {
		free(m->susp);
		m->susp = NULL;
		g->suspects--;
	}
}

/* Every status change goes through here, to keep live counting right. */
static void set_status(struct gossip *g, struct gossip_member *m, enum gossip_status s,
		       uint64_t now)
{
	if (is_live(m->status) && !is_live(s))
		g->live--;
	else if (!is_live(m->status) && is_live(s))
		g->live++;
	if (s != GOSSIP_SUSPECT)
		suspicion_clear(g, m);
	if (m->status != s)
		m->since = now;
	m->status = s;
}

static struct gossip_member *member_add(struct gossip *g, const char *name, const char *addr,
					uint64_t id, uint64_t inc, const struct gossip_tags *tags,
					uint64_t now)
{
	if (g->count == g->cap && table_grow(g) != 0)
		return NULL;
	struct gossip_member *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	snprintf(m->name, sizeof(m->name), "%s", name);
	snprintf(m->addr, sizeof(m->addr), "%s", addr);
	m->id = id;
	m->incarnation = inc;
	m->status = GOSSIP_ALIVE;
	m->since = now;
	if (tags)
		m->tags = *tags;
	else
		gossip_tags_clear(&m->tags);
	m->hash = name_hash(name, strlen(name));
	m->idx = g->count;
	g->members[g->count++] = m;
	hash_insert(g->buckets, g->nbuckets, m);
	g->live++;
	return m;
}

static void member_free(struct gossip_member *m)
{
	free(m->susp);
	free(m->user);
	free(m);
}

/* Forgets a tombstone entirely (never self). */
static void member_remove(struct gossip *g, struct gossip_member *m)
{
	struct gossip_member **pp = &g->buckets[m->hash & (g->nbuckets - 1)];

	while (*pp && *pp != m)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = m->hnext;
	probe_remove(g, m);
	g->count--;
	if (m->idx != g->count) {
		g->members[m->idx] = g->members[g->count];
		g->members[m->idx]->idx = m->idx;
	}
	if (is_live(m->status))
		g->live--;
	suspicion_clear(g, m);
	if (g->pr.active && g->pr.target == m)
		g->pr.active = false;
	if (g->recheck == m)
		g->recheck = NULL;
	for (size_t i = 0; i < g->nfix;) {
		if (g->fix[i] == m)
			g->fix[i] = g->fix[--g->nfix];
		else
			i++;
	}
	member_free(m);
}

/* The table is full: forgets its oldest tombstone, a left one before any
 * failed one (a failed member may still come back, a left one said it
 * would not), so that tombstones of members long gone never keep a live
 * newcomer out.  False when every entry is live. */
static bool tombstone_evict(struct gossip *g)
{
	struct gossip_member *v = NULL;

	for (size_t i = 0; i < g->count; i++) {
		struct gossip_member *m = g->members[i];

		if (m == g->self || is_live(m->status))
			continue;
		if (!v || (m->status == GOSSIP_LEFT && v->status != GOSSIP_LEFT) ||
		    (m->status == v->status && m->since < v->since))
			v = m;
	}
	if (!v)
		return false;
	emit(g, GOSSIP_EV_REAP, v);
	member_remove(g, v);
	return true;
}

/* Up to @k distinct random members passing @ok, into g->scratch. */
static size_t pick_random(struct gossip *g, size_t k, const struct gossip_member *exclude,
			  bool (*ok)(const struct gossip *g, const struct gossip_member *m,
				     uint64_t now),
			  uint64_t now)
{
	size_t n = 0;

	for (size_t i = 0; i < g->count; i++) {
		struct gossip_member *m = g->members[i];

		if (m != g->self && m != exclude && ok(g, m, now))
			g->scratch[n++] = m;
	}
	if (k > n)
		k = n;
	for (size_t i = 0; i < k; i++) {
		size_t j = i + (size_t)rng_below(g, n - i);
		struct gossip_member *t = g->scratch[i];

		g->scratch[i] = g->scratch[j];
		g->scratch[j] = t;
	}
	return k;
}

static bool ok_alive(const struct gossip *g, const struct gossip_member *m, uint64_t now)
{
	(void)g;
	(void)now;
	return m->status == GOSSIP_ALIVE;
}

static bool ok_failed(const struct gossip *g, const struct gossip_member *m, uint64_t now)
{
	(void)g;
	(void)now;
	return m->status == GOSSIP_FAILED;
}

/* Gossip goes to the live, and for a while to the recently dead, so that
 * a member falsely declared failed still hears about it and refutes. */
static bool ok_gossip(const struct gossip *g, const struct gossip_member *m, uint64_t now)
{
	if (is_live(m->status))
		return true;
	return now - m->since < g->cfg.gossip_to_dead_ms;
}

/* ------------------------------------------------------------------ */
/* Broadcast queue                                                     */
/* ------------------------------------------------------------------ */

static void bcast_remove_at(struct gossip *g, size_t i)
{
	free(g->queue[i]);
	g->queue[i] = g->queue[--g->qlen];
}

static struct bcast *bcast_new(struct gossip *g, enum bcast_kind kind, const char *node,
			       const char *key)
{
	struct bcast *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->serial = g->bcast_serial++;
	b->kind = kind;
	snprintf(b->node, sizeof(b->node), "%s", node);
	if (key)
		snprintf(b->key, sizeof(b->key), "%s", key);
	return b;
}

/* True when @b makes @o worthless.  News about a member replaces older
 * news about it, except that suspicions from different accusers are
 * different facts: each is one Lifeguard confirmation, and letting the
 * latest accuser's replace the others' would starve every other node of
 * the confirmations that shorten its timer.  (At most k + 1 of them are
 * ever queued per member: a confirmation is only passed on when new.) */
static bool bcast_supersedes(const struct bcast *b, const struct bcast *o)
{
	if (o->kind != b->kind || strcmp(o->node, b->node) != 0)
		return false;
	if (b->kind == BCAST_USER)
		return strcmp(o->key, b->key) == 0;
	if (b->msg.type == GOSSIP_MSG_SUSPECT && o->msg.type == GOSSIP_MSG_SUSPECT)
		return strcmp(o->aux, b->aux) == 0;
	return true;
}

/* Queues @b (owned from now on), dropping what it supersedes; past the
 * bound the most transmitted item, the one that has done most of its work
 * already, makes room. */
static void bcast_push(struct gossip *g, struct bcast *b)
{
	size_t i = 0;

	if (!b)
		return;
	while (i < g->qlen) {
		if (bcast_supersedes(b, g->queue[i]))
			bcast_remove_at(g, i);
		else
			i++;
	}
	if (g->qlen >= g->cfg.broadcast_queue_max) {
		size_t worst = 0;

		for (size_t j = 1; j < g->qlen; j++) {
			struct bcast *a = g->queue[j], *w = g->queue[worst];

			if (a->transmits > w->transmits ||
			    (a->transmits == w->transmits && a->serial < w->serial))
				worst = j;
		}
		bcast_remove_at(g, worst);
		g->stats.broadcasts_dropped++;
	}
	g->queue[g->qlen++] = b;
}

/* The message builders point into @m: a queued copy re-points them at
 * its own storage (the member may change or go before it is sent). */
static void alive_msg(struct gossip_msg *msg, const struct gossip_member *m)
{
	msg->type = GOSSIP_MSG_ALIVE;
	msg->u.alive.node = bytes_of(m->name);
	msg->u.alive.incarnation = m->incarnation;
	msg->u.alive.id = m->id;
	msg->u.alive.addr = bytes_of(m->addr);
	msg->u.alive.tags = m->tags;
}

static void user_msg(struct gossip_msg *msg, const struct gossip_member *m,
		     const struct user_slot *u)
{
	msg->type = GOSSIP_MSG_USER;
	msg->u.user.origin = bytes_of(m->name);
	msg->u.user.key = bytes_of(u->key);
	msg->u.user.version = u->version;
	msg->u.user.id = m->id;
	msg->u.user.data = (struct gossip_bytes){ .ptr = (const char *)u->data, .len = u->len };
}

static void queue_alive(struct gossip *g, const struct gossip_member *m)
{
	struct bcast *b = bcast_new(g, BCAST_MEMBER, m->name, NULL);

	if (!b)
		return;
	snprintf(b->aux, sizeof(b->aux), "%s", m->addr);
	alive_msg(&b->msg, m);
	b->msg.u.alive.node = bytes_of(b->node);
	b->msg.u.alive.addr = bytes_of(b->aux);
	bcast_push(g, b);
}

static void queue_accuse(struct gossip *g, enum gossip_msg_type type,
			 const struct gossip_member *m, const char *from)
{
	struct bcast *b = bcast_new(g, BCAST_MEMBER, m->name, NULL);

	if (!b)
		return;
	snprintf(b->aux, sizeof(b->aux), "%s", from);
	b->msg.type = type;
	b->msg.u.suspect.node = bytes_of(b->node);
	b->msg.u.suspect.incarnation = m->incarnation;
	b->msg.u.suspect.id = m->id;
	b->msg.u.suspect.from = bytes_of(b->aux);
	bcast_push(g, b);
}

static void leave_msg(struct gossip_msg *msg, const struct gossip_member *m)
{
	msg->type = GOSSIP_MSG_LEAVE;
	msg->u.leave.node = bytes_of(m->name);
	msg->u.leave.incarnation = m->incarnation;
	msg->u.leave.id = m->id;
}

static void queue_leave(struct gossip *g, const struct gossip_member *m)
{
	struct bcast *b = bcast_new(g, BCAST_MEMBER, m->name, NULL);

	if (!b)
		return;
	leave_msg(&b->msg, m);
	b->msg.u.leave.node = bytes_of(b->node);
	bcast_push(g, b);
}

static void queue_user(struct gossip *g, const struct gossip_member *m, const struct user_slot *u)
{
	struct bcast *b = bcast_new(g, BCAST_USER, m->name, u->key);

	if (!b)
		return;
	memcpy(b->data, u->data, u->len);
	user_msg(&b->msg, m, u);
	b->msg.u.user.origin = bytes_of(b->node);
	b->msg.u.user.key = bytes_of(b->key);
	b->msg.u.user.data.ptr = (const char *)b->data;
	bcast_push(g, b);
}

static int bcast_cmp(const void *x, const void *y)
{
	const struct bcast *a = *(const struct bcast *const *)x;
	const struct bcast *b = *(const struct bcast *const *)y;

	if (a->transmits != b->transmits)
		return a->transmits < b->transmits ? -1 : 1;
	return a->serial > b->serial ? -1 : a->serial < b->serial;
}

/* Piggybacks queued broadcasts, least transmitted first, until the packet
 * is full; items that reached the retransmit limit leave the queue. */
static void bcast_fill(struct gossip *g)
{
	uint32_t limit = retransmit_limit(g);
	size_t i = 0;

	if (g->qlen == 0)
		return;
	qsort(g->queue, g->qlen, sizeof(g->queue[0]), bcast_cmp);
	for (size_t j = 0; j < g->qlen; j++) {
		int rc = gossip_encoder_add(g->enc, &g->queue[j]->msg);

		if (rc == 0)
			g->queue[j]->transmits++;
		else if (rc == -EINVAL)
			g->queue[j]->transmits = UINT32_MAX;  /* cannot ever be sent */
		if (gossip_encoder_count(g->enc) >= GOSSIP_PACKET_MSGS_MAX)
			break;
	}
	for (size_t j = 0; j < g->qlen; j++) {
		if (g->queue[j]->transmits >= limit)
			free(g->queue[j]);
		else
			g->queue[i++] = g->queue[j];
	}
	g->qlen = i;
}

/* ------------------------------------------------------------------ */
/* Sending                                                             */
/* ------------------------------------------------------------------ */

static void send_encoded(struct gossip *g, const char *addr, const char *to)
{
	const uint8_t *buf;
	size_t len;

	if (gossip_encoder_finish(g->enc, &buf, &len) != 0)
		return;
	g->stats.packets_sent++;
	g->stats.bytes_sent += len;
	g->env.send_packet(g->env.ctx, addr, to ? to : "", buf, len);
}

/* Sends @n primary messages to @addr (as many as fit, in order), with as
 * much gossip as fits after them. */
static void send_msgs(struct gossip *g, const char *addr, const char *to,
		      const struct gossip_msg *msgs, size_t n)
{
	gossip_encoder_reset(g->enc);
	for (size_t i = 0; i < n; i++) {
		if (gossip_encoder_add(g->enc, &msgs[i]) != 0)
			break;
	}
	if (gossip_encoder_count(g->enc) == 0)
		return;
	bcast_fill(g);
	send_encoded(g, addr, to);
}

/* Sends @msgs alone, in order and in as few packets as they fit in: for
 * one-shot fan-outs to every member.  Piggybacking there would spend each
 * queued item's whole retransmit budget on the first few members in table
 * order, and none of it on the rest. */
static void send_alone(struct gossip *g, const char *addr, const char *to,
		       const struct gossip_msg *msgs, size_t n)
{
	size_t i = 0;

	while (i < n) {
		gossip_encoder_reset(g->enc);
		while (i < n && gossip_encoder_add(g->enc, &msgs[i]) == 0)
			i++;
		if (gossip_encoder_count(g->enc) == 0)
			return;  /* a message no packet holds: the encoder refused it */
		send_encoded(g, addr, to);
	}
}

/* @msgs alone to every other member that is alive (or suspect too, when
 * @suspects): the way news that must not wait for the epidemic goes out.
 * Gossip alone, with memberlist's retransmit limit, misses a given member
 * with probability about e^-limit (2% in small clusters, far more when
 * some of the few transmits go to a member that is down) and leaves it to
 * push-pull, seconds later.  Callers queue the same news too: gossip
 * covers the datagrams lost. */
static void fanout_alone(struct gossip *g, const struct gossip_msg *msgs, size_t n,
			 bool suspects)
{
	for (size_t i = 0; i < g->count; i++) {
		struct gossip_member *m = g->members[i];

		if (m != g->self && (m->status == GOSSIP_ALIVE || (suspects && is_live(m->status))))
			send_alone(g, m->addr, m->name, msgs, n);
	}
}

static void send_ack(struct gossip *g, enum gossip_msg_type type, uint32_t seq,
		     const char *addr, const char *to)
{
	struct gossip_msg msg = { .type = type };

	if (type == GOSSIP_MSG_NACK)
		msg.u.nack.seq = seq;
	else
		msg.u.ack.seq = seq;
	send_msgs(g, addr, to, &msg, 1);
}

/* ------------------------------------------------------------------ */
/* Suspicion (Lifeguard)                                               */
/* ------------------------------------------------------------------ */

static uint64_t suspicion_timeout(const struct suspicion *s)
{
	if (s->k == 0 || s->n >= s->k)
		return s->min;
	double frac = log((double)s->n + 1.0) / log((double)s->k + 1.0);
	double raw = (double)s->max - frac * (double)(s->max - s->min);
	uint64_t t = raw <= (double)s->min ? s->min : (uint64_t)floor(raw);

	return t < s->min ? s->min : t;
}

static void suspicion_arm(struct suspicion *s, uint64_t now)
{
	uint64_t at = s->start + suspicion_timeout(s);

	s->expiry = at < now ? now : at;
}

static bool suspicion_seen(struct suspicion *s, uint64_t h)
{
	for (uint32_t i = 0; i < s->seen; i++) {
		if (s->from[i] == h)
			return true;
	}
	return false;
}

static void suspicion_start(struct gossip *g, struct gossip_member *m, const char *from,
			    uint64_t now)
{
	struct suspicion *s = calloc(1, sizeof(*s));

	if (!s)
		return;  /* stays suspect without a timer until refuted or declared */
	uint32_t k = g->cfg.suspicion_mult > 2 ? g->cfg.suspicion_mult - 2 : 0;

	/* Too few members to ever collect k confirmations: go straight to min. */
	if (g->live < (size_t)k + 2)
		k = 0;
	if (k > SUSPICION_CONFIRM_MAX)
		k = SUSPICION_CONFIRM_MAX;
	double scale = g->live > 10 ? log10((double)g->live) : 1.0;

	s->min = (uint64_t)floor((double)g->cfg.suspicion_mult * scale *
				 (double)g->cfg.probe_interval);
	if (s->min == 0)
		s->min = 1;
	s->max = s->min * (g->cfg.suspicion_max_timeout_mult ? g->cfg.suspicion_max_timeout_mult
							     : 1);
	s->k = k;
	s->start = now;
	s->from[s->seen++] = name_hash(from, strlen(from));
	suspicion_arm(s, now);
	m->susp = s;
	g->suspects++;
}

/* Counts @from's independent confirmation; true when it was new. */
static bool suspicion_confirm(struct suspicion *s, const char *from, uint64_t now)
{
	uint64_t h = name_hash(from, strlen(from));

	if (s->n >= s->k || suspicion_seen(s, h) || s->seen >= SUSPICION_CONFIRM_MAX + 1)
		return false;
	s->from[s->seen++] = h;
	s->n++;
	suspicion_arm(s, now);
	return true;
}

/* ------------------------------------------------------------------ */
/* Refutation and identity                                             */
/* ------------------------------------------------------------------ */

/* True when @inc (an incarnation, or a user-data version) is believable
 * as news about something we know at @known: at most GOSSIP_INC_JUMP_MAX
 * ahead of it.  Anything further is counted and dropped: a suspicion at
 * 2^64 - 1 from a corrupt sender would otherwise leave its subject unable
 * ever to refute again. */
static bool plausible_within(struct gossip *g, uint64_t known, uint64_t inc, uint64_t bound)
{
	if (inc <= known || inc - known <= bound)
		return true;
	g->stats.implausible++;
	return false;
}

static bool plausible(struct gossip *g, uint64_t known, uint64_t inc)
{
	return plausible_within(g, known, inc, GOSSIP_INC_JUMP_MAX);
}

/* Raises our incarnation above @above and above its current value.  It
 * never wraps: past 2^64 - 1 (only reachable through 2^32 plausible
 * steps) we become a new process instead, with a larger id that
 * supersedes everything said about the old one; receivers forget the old
 * process's user data then, so ours is announced again. */
static void self_bump(struct gossip *g, uint64_t above)
{
	struct gossip_member *s = g->self;
	uint64_t base = above > s->incarnation ? above : s->incarnation;

	if (base < UINT64_MAX) {
		s->incarnation = base + 1;
		return;
	}
	if (s->id == UINT64_MAX)
		return;  /* no larger id left either: saturate */
	s->id++;
	s->incarnation = 0;
	for (uint8_t i = 0; i < s->user_count && !g->leaving; i++)
		queue_user(g, s, &s->user[i]);
}

/* Someone believes we are suspect/failed/left at @inc: outbid it.  We
 * believe only half the jump others do (GOSSIP_INC_JUMP_MAX / 2): our
 * refutation must stay within the bound of every member that knows our
 * old incarnation and missed the accusation, or it would be refused. */
static void refute(struct gossip *g, uint64_t inc)
{
	if (g->leaving ||
	    !plausible_within(g, g->self->incarnation, inc, GOSSIP_INC_JUMP_MAX / 2))
		return;
	self_bump(g, inc);
	queue_alive(g, g->self);
	g->stats.refutations++;
	/* Lifeguard: being suspected is a hint that we are the slow one. */
	health_add(g, 1);
}

/* Handles news about our own name carrying @id.  Returns true when the
 * news is about another process (and has been dealt with). */
static bool self_identity(struct gossip *g, uint64_t id)
{
	if (id > g->self->id) {
		if (!g->conflict_reported) {
			g->conflict_reported = true;
			emit(g, GOSSIP_EV_CONFLICT, g->self);
		}
		return true;
	}
	if (id < g->self->id) {
		/* Our previous life is still talked about: tell them who we are. */
		if (!g->leaving)
			queue_alive(g, g->self);
		return true;
	}
	return false;
}

/* Somebody still accuses @m at an incarnation it has since refuted: it
 * missed the refutation (retransmission is bounded), and so may others.
 * The one who handed us the rumour is stale for sure: it gets the
 * correction directly, once the packet is read (see gossip_recv_packet);
 * the others through gossip.  Without this the accuser is left to its
 * suspicion timer, and declares a live member failed. */
static void stale_news(struct gossip *g, struct gossip_member *m)
{
	if (m->status != GOSSIP_ALIVE)
		return;
	queue_alive(g, m);
	for (size_t i = 0; i < g->nfix; i++) {
		if (g->fix[i] == m)
			return;
	}
	if (g->nfix < FIX_MAX)
		g->fix[g->nfix++] = m;
}

/* Someone says we are suspect, failed or left at @inc.  At our own
 * incarnation or above, refute.  Below it the news is stale, but whoever
 * passes it on evidently missed our last alive (retransmission is
 * bounded, so that happens): say it again, unchanged.  Sent ahead of the
 * buddy ping's ack, it reaches the prober in the ack itself. */
static void accused(struct gossip *g, uint64_t inc)
{
	if (g->leaving)
		return;
	if (inc >= g->self->incarnation)
		refute(g, inc);
	else
		stale_news(g, g->self);
}

/* Suspect, dead or leave news about @name at @inc and process @id: when
 * @name is ours, deals with it (see self_identity and accused) and
 * returns true; otherwise returns false and leaves it to the caller. */
static bool accusation_of_self(struct gossip *g, const char *name, uint64_t inc, uint64_t id)
{
	if (strcmp(name, g->self->name) != 0)
		return false;
	if (!self_identity(g, id))
		accused(g, inc);
	return true;
}

static void user_clear(struct gossip_member *m)
{
	free(m->user);
	m->user = NULL;
	m->user_count = 0;
}

/* ------------------------------------------------------------------ */
/* Applying news (from packets and from push-pull alike)               */
/* ------------------------------------------------------------------ */

static void apply_alive(struct gossip *g, const char *name, uint64_t inc, uint64_t id,
			const char *addr, const struct gossip_tags *tags, uint64_t now)
{
	struct gossip_member *m;

	if (strcmp(name, g->self->name) == 0) {
		if (self_identity(g, id))
			return;
		/* Our own alive coming back to us is normal; a higher one is not
		 * ours to keep. */
		if (inc > g->self->incarnation)
			refute(g, inc);
		return;
	}
	m = find(g, name);
	if (!m) {
		if (!plausible(g, 0, inc))
			return;
		if (g->count >= g->cfg.members_max && !tombstone_evict(g)) {
			g->stats.members_refused++;
			return;
		}
		m = member_add(g, name, addr, id, inc, tags, now);
		if (!m)
			return;
		probe_insert(g, m);
		emit(g, GOSSIP_EV_JOIN, m);
		queue_alive(g, m);
		return;
	}
	if (id < m->id)
		return;
	if (id == m->id && inc <= m->incarnation)
		return;
	if (!plausible(g, id == m->id ? m->incarnation : 0, inc))
		return;

	enum gossip_status prev = m->status;
	bool changed = strcmp(m->addr, addr) != 0 || !gossip_tags_equal(&m->tags, tags);
	bool new_process = id > m->id;

	if (new_process) {
		/* A restart: the old process's data and timings are void. */
		user_clear(m);
		m->rtt_us = 0;
		m->id = id;
	}
	m->incarnation = inc;
	snprintf(m->addr, sizeof(m->addr), "%s", addr);
	m->tags = *tags;
	set_status(g, m, GOSSIP_ALIVE, now);
	if (new_process && prev == GOSSIP_LEFT) {
		/* It said goodbye; what came back is a new member. */
		emit(g, GOSSIP_EV_JOIN, m);
	} else {
		if (prev != GOSSIP_ALIVE)
			emit(g, GOSSIP_EV_ALIVE, m);
		if (changed || (new_process && prev == GOSSIP_ALIVE))
			emit(g, GOSSIP_EV_UPDATE, m);
	}
	queue_alive(g, m);
}


static void mark_suspect(struct gossip *g, struct gossip_member *m, const char *from,
			 uint64_t now)
{
	set_status(g, m, GOSSIP_SUSPECT, now);
	suspicion_start(g, m, from, now);
	g->stats.suspicions++;
	emit(g, GOSSIP_EV_SUSPECT, m);
	queue_accuse(g, GOSSIP_MSG_SUSPECT, m, from);
}

/* @from accuses; @external: the news came from elsewhere (not our probe). */
static void apply_suspect(struct gossip *g, const char *name, uint64_t inc, uint64_t id,
			  const char *from, bool external, uint64_t now)
{
	struct gossip_member *m;

	if (accusation_of_self(g, name, inc, id))
		return;
	m = find(g, name);
	if (!m || id != m->id || !plausible(g, m->incarnation, inc))
		return;
	if (inc < m->incarnation) {
		stale_news(g, m);
		return;
	}
	if (m->status == GOSSIP_SUSPECT && inc > m->incarnation) {
		/* A suspicion of a newer incarnation (it refuted, we missed
		 * the alive, and it is suspected again): a new suspicion.  The
		 * old timer and its confirmations were about an incarnation
		 * that has been refuted. */
		m->incarnation = inc;
		suspicion_clear(g, m);
		suspicion_start(g, m, from, now);
		queue_accuse(g, GOSSIP_MSG_SUSPECT, m, from);
		if (external)
			probe_move_next(g, m);
		return;
	}
	if (m->status == GOSSIP_SUSPECT) {
		if (m->susp && suspicion_confirm(m->susp, from, now))
			queue_accuse(g, GOSSIP_MSG_SUSPECT, m, from);
		return;
	}
	if (m->status != GOSSIP_ALIVE)
		return;
	m->incarnation = inc;
	mark_suspect(g, m, from, now);
	/* Suspect-first probing: check it ourselves within one interval. */
	if (external)
		probe_move_next(g, m);
}

static void declare_failed(struct gossip *g, struct gossip_member *m, const char *from,
			   uint64_t now)
{
	set_status(g, m, GOSSIP_FAILED, now);
	emit(g, GOSSIP_EV_FAILED, m);
	queue_accuse(g, GOSSIP_MSG_DEAD, m, from);
}

static void apply_dead(struct gossip *g, const char *name, uint64_t inc, uint64_t id,
		       const char *from, uint64_t now)
{
	struct gossip_member *m;

	if (accusation_of_self(g, name, inc, id))
		return;
	m = find(g, name);
	if (!m || id != m->id || !is_live(m->status) || !plausible(g, m->incarnation, inc))
		return;
	if (inc < m->incarnation) {
		stale_news(g, m);
		return;
	}
	m->incarnation = inc;
	declare_failed(g, m, from, now);
}

static void apply_leave(struct gossip *g, const char *name, uint64_t inc, uint64_t id,
			uint64_t now)
{
	struct gossip_member *m;

	if (accusation_of_self(g, name, inc, id))
		return;
	m = find(g, name);
	if (!m || id < m->id || m->status == GOSSIP_LEFT)
		return;
	if (id == m->id && inc < m->incarnation)
		return;
	if (!plausible(g, id == m->id ? m->incarnation : 0, inc))
		return;
	if (id > m->id) {
		/* A newer process of that name came and went already. */
		user_clear(m);
		m->id = id;
	}
	m->incarnation = inc;
	set_status(g, m, GOSSIP_LEFT, now);
	emit(g, GOSSIP_EV_LEFT, m);
	queue_leave(g, m);
}

static struct user_slot *user_slot(struct gossip_member *m, const char *key, bool create)
{
	for (uint8_t i = 0; i < m->user_count; i++) {
		if (strcmp(m->user[i].key, key) == 0)
			return &m->user[i];
	}
	if (!create || m->user_count >= GOSSIP_USER_KEYS)
		return NULL;
	if (!m->user) {
		m->user = calloc(GOSSIP_USER_KEYS, sizeof(*m->user));
		if (!m->user)
			return NULL;
	}
	struct user_slot *u = &m->user[m->user_count++];

	memset(u, 0, sizeof(*u));
	snprintf(u->key, sizeof(u->key), "%s", key);
	return u;
}

/*
 * User data from @origin's process @id (0: not known, an older sender that
 * does not say; then the process we know is assumed).  It is applied only
 * to that process: data of an older one is stale, and data of a newer one
 * we do not know yet is dropped too (counted as user_stale), because
 * holding it would need a queue per unknown process; the newer process's
 * alive and the next push-pull, which carries its data, come soon enough.
 */
static void apply_user(struct gossip *g, const char *origin, uint64_t id,
		       const struct gossip_bytes *kb, uint64_t version,
		       const struct gossip_bytes *data)
{
	char key[GOSSIP_USER_KEY_MAX + 1];
	struct gossip_member *m;
	struct user_slot *u;

	/* @kb and @data come from the decoder, which already refused a key
	 * that fails gossip_token_valid(GOSSIP_USER_KEY_MAX) and data past
	 * GOSSIP_USER_DATA_MAX (get_str, get_bin in proto.c; an empty bin
	 * has ptr NULL, any other a real one). */
	token_copy(key, sizeof(key), kb);
	if (strcmp(origin, g->self->name) == 0) {
		/* Another process's data under our name: an older one's is
		 * answered with our alive (receivers then forget it), a newer
		 * one's is a name conflict (see self_identity). */
		if (id && self_identity(g, id))
			return;
		/* Our own words echoing back are normal.  Anything else under our
		 * name at our version or above was said by a previous process of
		 * ours that did not say so (no id): outbid it, the way an
		 * incarnation refutes a suspicion. */
		u = user_slot(g->self, key, false);
		if (u && version == u->version && data->len == u->len &&
		    (u->len == 0 || memcmp(data->ptr, u->data, u->len) == 0))
			return;
		if (u && version >= u->version && !g->leaving && version < UINT64_MAX &&
		    plausible(g, u->version, version)) {
			u->version = version + 1;
			queue_user(g, g->self, u);
		}
		return;
	}
	m = find(g, origin);
	if (!m)
		return;
	if (id && id != m->id) {
		g->stats.user_stale++;
		return;
	}
	u = user_slot(m, key, false);
	if (u && version <= u->version)
		return;
	if (!plausible(g, u ? u->version : 0, version))
		return;
	if (!u)
		u = user_slot(m, key, true);
	if (!u)
		return;  /* GOSSIP_USER_KEYS reached for that member */
	u->version = version;
	u->len = (uint16_t)data->len;
	if (data->len)
		memcpy(u->data, data->ptr, data->len);
	struct gossip_event ev = {
		.type = GOSSIP_EV_USER, .member = m, .user_key = u->key,
		.user_data = u->data, .user_len = u->len, .user_version = u->version,
	};

	if (g->env.on_event)
		g->env.on_event(g->env.ctx, &ev);
	queue_user(g, m, u);
}

/* ------------------------------------------------------------------ */
/* Probing                                                             */
/* ------------------------------------------------------------------ */

/* The next member of the randomized round-robin, or NULL. */
static struct gossip_member *probe_pick(struct gossip *g)
{
	for (size_t tries = 0; tries <= 2 * g->probe_len; tries++) {
		if (g->probe_cursor >= g->probe_len) {
			probe_shuffle(g);
			g->probe_cursor = 0;
			if (g->probe_len == 0)
				return NULL;
		}
		struct gossip_member *m = g->probe[g->probe_cursor++];

		if (is_live(m->status))
			return m;
	}
	return NULL;
}

static void probe_start(struct gossip *g, uint64_t now)
{
	struct gossip_member *t = probe_pick(g);
	struct gossip_msg msgs[2];
	size_t n = 0;

	if (!t) {
		g->next_probe_at = now + scaled(g, g->cfg.probe_interval);
		return;
	}
	g->pr = (struct probe){
		.active = true, .target = t, .target_id = t->id,
		.target_inc = t->incarnation, .seq = ++g->seq, .start = now,
		.timeout_at = now + scaled(g, g->cfg.probe_timeout),
		.end_at = now + scaled(g, g->cfg.probe_interval),
	};
	if (t->status == GOSSIP_SUSPECT) {
		/* Buddy system: tell it first, so it refutes before it acks and
		 * the ack carries the refutation back. */
		msgs[n].type = GOSSIP_MSG_SUSPECT;
		msgs[n].u.suspect.node = bytes_of(t->name);
		msgs[n].u.suspect.incarnation = t->incarnation;
		msgs[n].u.suspect.id = t->id;
		msgs[n].u.suspect.from = bytes_of(g->self->name);
		n++;
	}
	msgs[n].type = GOSSIP_MSG_PING;
	msgs[n].u.ping.seq = g->pr.seq;
	msgs[n].u.ping.target = bytes_of(t->name);
	n++;
	g->stats.probes++;
	send_msgs(g, t->addr, t->name, msgs, n);
}

static void probe_indirect(struct gossip *g)
{
	struct gossip_member *t = g->pr.target;
	size_t k = pick_random(g, g->cfg.indirect_checks, t, ok_alive, 0);

	g->pr.indirect_sent = true;
	for (size_t i = 0; i < k; i++) {
		struct gossip_member *via = g->scratch[i];
		struct gossip_msg msg = { .type = GOSSIP_MSG_PING_REQ };

		msg.u.ping_req.seq = g->pr.seq;
		msg.u.ping_req.target = bytes_of(t->name);
		msg.u.ping_req.target_addr = bytes_of(t->addr);
		msg.u.ping_req.want_nack = true;
		g->stats.indirect_probes++;
		send_msgs(g, via->addr, via->name, &msg, 1);
	}
	g->pr.nacks_expected = (uint32_t)k;
}

static void probe_failed(struct gossip *g, uint64_t now)
{
	struct gossip_member *t = g->pr.target;
	int delta = 1;

	g->pr.active = false;
	g->next_probe_at = g->pr.end_at;
	g->stats.probe_failures++;
	/* Lifeguard: missing nacks mean we are not hearing anybody, which
	 * says more about us than about the target. */
	if (g->pr.nacks_expected > 0)
		delta = (int)(g->pr.nacks_expected - g->pr.nacks_received);
	health_add(g, delta);

	/* A verdict on what the member was when the probe began: if it has
	 * since refuted, or restarted as a new process, it is old news. */
	if (t->id != g->pr.target_id || t->incarnation > g->pr.target_inc)
		return;
	if (t->status == GOSSIP_ALIVE) {
		mark_suspect(g, t, g->self->name, now);
	} else if (t->status == GOSSIP_SUSPECT && t->susp &&
		   suspicion_confirm(t->susp, g->self->name, now)) {
		queue_accuse(g, GOSSIP_MSG_SUSPECT, t, g->self->name);
	}
	/* One more look at it, next: if it was only our datagrams that were
	 * lost, the second ping carries the suspicion to it (buddy system)
	 * and brings its refutation back, even if we missed the gossip. */
	if (t->status == GOSSIP_SUSPECT && t->susp && !t->susp->reprobed) {
		t->susp->reprobed = true;
		probe_move_next(g, t);
	}
}

static void probe_acked(struct gossip *g, const char *from, uint64_t now)
{
	struct gossip_member *t = g->pr.target;

	if (strcmp(from, t->name) == 0) {
		uint64_t ms = now - g->pr.start;
		int64_t sample = ms ? (int64_t)(ms > 4000000 ? 4000000 : ms) * 1000 : 1;

		if (t->rtt_us == 0)
			t->rtt_us = (uint32_t)sample;
		else
			t->rtt_us = (uint32_t)((int64_t)t->rtt_us +
					       ((sample - (int64_t)t->rtt_us) >> RTT_EWMA_SHIFT));
		if (t->rtt_us == 0)
			t->rtt_us = 1;
	}
	g->pr.active = false;
	g->next_probe_at = g->pr.end_at;
	health_add(g, -1);
	/* It answers, yet we hold it suspect: we missed its refutation.  Ask
	 * again next time, so that the buddy suspicion makes it say it again
	 * (judged once the whole packet is read: the ack may carry it). */
	if (t->status == GOSSIP_SUSPECT)
		g->recheck = t;
}

/* Runs the probe state machine; @late says the tick itself is late. */
static void probe_run(struct gossip *g, uint64_t now, bool late)
{
	if (g->pr.active && !g->pr.indirect_sent && now >= g->pr.timeout_at)
		probe_indirect(g);
	if (g->pr.active && now >= g->pr.end_at) {
		if (late && !g->pr.deferred) {
			/* Late-timer grace: the ack may be queued behind us. */
			g->pr.deferred = true;
			g->pr.end_at = now + scaled(g, g->cfg.probe_timeout);
		} else {
			probe_failed(g, now);
		}
	}
	if (!g->pr.active && now >= g->next_probe_at)
		probe_start(g, now);
}

/* ------------------------------------------------------------------ */
/* Receiving                                                           */
/* ------------------------------------------------------------------ */

static struct relay *relay_find(struct gossip *g, uint32_t seq)
{
	for (size_t i = 0; i < RELAY_MAX; i++) {
		if (g->relays[i].used && g->relays[i].seq == seq)
			return &g->relays[i];
	}
	return NULL;
}

static void on_ping_req(struct gossip *g, const char *from, const char *from_addr,
			const struct gossip_msg *msg, uint64_t now)
{
	char target[GOSSIP_NAME_MAX + 1], taddr[GOSSIP_ADDR_MAX + 1];
	struct relay *r = NULL;

	/* Both valid tokens within their bounds: decode_msg() (proto.c). */
	token_copy(target, sizeof(target), &msg->u.ping_req.target);
	token_copy(taddr, sizeof(taddr), &msg->u.ping_req.target_addr);
	if (strcmp(target, g->self->name) == 0) {
		send_ack(g, GOSSIP_MSG_ACK, msg->u.ping_req.seq, from_addr, from);
		return;
	}
	for (size_t i = 0; i < RELAY_MAX && !r; i++) {
		if (!g->relays[i].used)
			r = &g->relays[i];
	}
	if (!r)
		return;  /* saturated: the requester gets neither ack nor nack */
	/* The requester decides at the end of its probe interval, which
	 * leaves it (interval - timeout) for the indirect round.  The nack
	 * must land inside that window, so it leaves at four fifths of it
	 * (memberlist waits a full probe timeout, and its nacks arrive just
	 * after the verdict they were meant for); a late ack is still
	 * forwarded until the window closes. */
	uint64_t window = g->cfg.probe_interval > g->cfg.probe_timeout
				  ? g->cfg.probe_interval - g->cfg.probe_timeout
				  : g->cfg.probe_timeout;

	*r = (struct relay){
		.used = true, .seq = ++g->seq, .their_seq = msg->u.ping_req.seq,
		.want_nack = msg->u.ping_req.want_nack,
		.nack_at = now + window * 4 / 5, .deadline = now + window,
	};
	snprintf(r->requester, sizeof(r->requester), "%s", from);
	snprintf(r->requester_addr, sizeof(r->requester_addr), "%s", from_addr);

	struct gossip_msg ping = { .type = GOSSIP_MSG_PING };

	ping.u.ping.seq = r->seq;
	ping.u.ping.target = bytes_of(target);
	send_msgs(g, taddr, target, &ping, 1);
}

static void on_ack(struct gossip *g, const char *from, uint32_t seq, uint64_t now)
{
	struct relay *r;

	if (g->pr.active && seq == g->pr.seq) {
		probe_acked(g, from, now);
		return;
	}
	r = relay_find(g, seq);
	if (r) {
		char to[GOSSIP_NAME_MAX + 1], addr[GOSSIP_ADDR_MAX + 1];

		snprintf(to, sizeof(to), "%s", r->requester);
		snprintf(addr, sizeof(addr), "%s", r->requester_addr);
		r->used = false;
		send_ack(g, GOSSIP_MSG_ACK, r->their_seq, addr, to);
	}
	/* Otherwise a late or duplicate ack (several intermediaries answer
	 * the same probe): normal, nothing to do. */
}

static void on_msg(struct gossip *g, const char *from, const char *from_addr,
		   const struct gossip_msg *msg, uint64_t now)
{
	char name[GOSSIP_NAME_MAX + 1], aux[GOSSIP_ADDR_MAX + 1];

	/* Every string in @msg came through decode_msg() (proto.c), whose
	 * get_str() refuses one that fails gossip_token_valid() against the
	 * field's bound (GOSSIP_NAME_MAX for names, GOSSIP_ADDR_MAX for
	 * addresses): the copies below cannot meet a malformed token. */
	switch (msg->type) {
	case GOSSIP_MSG_PING:
		/* A ping meant for someone else reached us: a stale address
		 * (a node that moved).  Acking would vouch for the wrong node. */
		if (!bytes_eq(&msg->u.ping.target, g->self->name))
			return;
		send_ack(g, GOSSIP_MSG_ACK, msg->u.ping.seq, from_addr, from);
		return;
	case GOSSIP_MSG_ACK:
		on_ack(g, from, msg->u.ack.seq, now);
		return;
	case GOSSIP_MSG_NACK:
		if (g->pr.active && msg->u.nack.seq == g->pr.seq &&
		    g->pr.nacks_received < g->pr.nacks_expected)
			g->pr.nacks_received++;
		return;
	case GOSSIP_MSG_PING_REQ:
		on_ping_req(g, from, from_addr, msg, now);
		return;
	case GOSSIP_MSG_SUSPECT:
	case GOSSIP_MSG_DEAD:
		token_copy(name, sizeof(name), &msg->u.suspect.node);
		token_copy(aux, sizeof(aux), &msg->u.suspect.from);
		if (msg->type == GOSSIP_MSG_SUSPECT)
			apply_suspect(g, name, msg->u.suspect.incarnation, msg->u.suspect.id,
				      aux, true, now);
		else
			apply_dead(g, name, msg->u.dead.incarnation, msg->u.dead.id, aux, now);
		return;
	case GOSSIP_MSG_ALIVE:
		token_copy(name, sizeof(name), &msg->u.alive.node);
		token_copy(aux, sizeof(aux), &msg->u.alive.addr);
		apply_alive(g, name, msg->u.alive.incarnation, msg->u.alive.id, aux,
			    &msg->u.alive.tags, now);
		return;
	case GOSSIP_MSG_LEAVE:
		token_copy(name, sizeof(name), &msg->u.leave.node);
		apply_leave(g, name, msg->u.leave.incarnation, msg->u.leave.id, now);
		return;
	case GOSSIP_MSG_USER:
		token_copy(name, sizeof(name), &msg->u.user.origin);
		apply_user(g, name, msg->u.user.id, &msg->u.user.key, msg->u.user.version,
			   &msg->u.user.data);
		return;
	}
	g->stats.unknown_messages++;
}

/* ------------------------------------------------------------------ */
/* Push-pull                                                           */
/* ------------------------------------------------------------------ */

static void record_of(const struct gossip_member *m, struct gossip_member_record *r,
		      bool with_user)
{
	memset(r, 0, sizeof(*r));
	r->node = bytes_of(m->name);
	r->incarnation = m->incarnation;
	r->id = m->id;
	r->addr = bytes_of(m->addr);
	r->tags = m->tags;
	r->status = (uint32_t)m->status;
	r->user_count = with_user ? m->user_count : 0;
	for (size_t j = 0; j < r->user_count; j++) {
		r->user[j].key = bytes_of(m->user[j].key);
		r->user[j].version = m->user[j].version;
		r->user[j].data = (struct gossip_bytes){
			.ptr = (const char *)m->user[j].data, .len = m->user[j].len,
		};
	}
}

/* Bytes @r adds to a state: encoded alone in @tmp, less the @empty state. */
static size_t record_cost(struct gossip_buf *tmp, bool join, const struct gossip_member_record *r,
			  size_t empty)
{
	tmp->len = 0;
	if (gossip_state_encode(tmp, join, r, 1) != 0 || tmp->len < empty)
		return SIZE_MAX / 2;  /* never fits */
	return tmp->len - empty;
}

static int newest_first(const void *x, const void *y)
{
	const struct gossip_member *a = *(const struct gossip_member *const *)x;
	const struct gossip_member *b = *(const struct gossip_member *const *)y;

	if (a->since != b->since)
		return a->since > b->since ? -1 : 1;
	return strcmp(a->name, b->name);
}

/*
 * Our state when all of it would not fit in stream_max bytes (or
 * GOSSIP_STATE_MEMBERS_MAX records).  A push-pull that is refused helps
 * nobody, so the state is trimmed instead, least useful first: tombstones
 * (oldest first), then user data; live members, ourselves first, are
 * always sent, as many as fit.  What is left out is counted; gossip and
 * the next exchanges carry it.  Each record's size is measured by
 * encoding it alone, so the bound holds exactly.
 */
static int state_encode_bounded(struct gossip *g, struct gossip_buf *out, bool join)
{
	size_t cap = g->count, n = 0, nl = 0, nt = 0, empty, used;
	bool full = false;   /* something live was left out: no tombstones */
	size_t limit = g->cfg.stream_max;
	struct gossip_member_record *recs = calloc(cap, sizeof(*recs));
	struct gossip_member **live = calloc(cap, sizeof(*live));
	struct gossip_member **tombs = calloc(cap, sizeof(*tombs));
	struct gossip_member **sent = calloc(cap, sizeof(*sent));
	size_t *bare = calloc(cap, sizeof(*bare));
	struct gossip_member_record one;
	struct gossip_buf tmp = { 0 };
	int rc = -ENOMEM;

	if (!recs || !live || !tombs || !sent || !bare ||
	    gossip_state_encode(&tmp, join, NULL, 0) != 0)
		goto out;
	empty = tmp.len;
	used = empty + 4;  /* the record array's header grows by up to 4 bytes */
	live[nl++] = g->self;
	for (size_t i = 0; i < g->count; i++) {
		struct gossip_member *m = g->members[i];

		if (m == g->self)
			continue;
		if (is_live(m->status))
			live[nl++] = m;
		else
			tombs[nt++] = m;
	}
	qsort(tombs, nt, sizeof(*tombs), newest_first);

	/* Live members without their user data first... */
	for (size_t i = 0; i < nl; i++) {
		size_t c;

		record_of(live[i], &recs[n], false);
		c = record_cost(&tmp, join, &recs[n], empty);
		if (n < GOSSIP_STATE_MEMBERS_MAX && used + c <= limit) {
			used += c;
			bare[n] = c;
			sent[n++] = live[i];
		} else {
			full = true;
			g->stats.pushpull_omitted_members++;
			g->stats.pushpull_omitted_user += live[i]->user_count;
		}
	}
	/* ...then their user data... */
	for (size_t i = 0; i < n; i++) {
		size_t c;

		if (!sent[i]->user_count)
			continue;
		record_of(sent[i], &one, true);
		c = record_cost(&tmp, join, &one, empty);
		if (c >= bare[i] && used + (c - bare[i]) <= limit) {
			used += c - bare[i];
			recs[i] = one;
		} else {
			full = true;
			g->stats.pushpull_omitted_user += sent[i]->user_count;
		}
	}
	/* ...then tombstones, newest first, with their user data if it fits;
	 * none at all when live data had to be left out (the space a member's
	 * user data did not fit in is not given to the dead). */
	for (size_t i = 0; i < nt; i++) {
		size_t c;

		if (full) {
			g->stats.pushpull_omitted_members++;
			g->stats.pushpull_omitted_user += tombs[i]->user_count;
			continue;
		}
		record_of(tombs[i], &recs[n], true);
		c = record_cost(&tmp, join, &recs[n], empty);
		if (n < GOSSIP_STATE_MEMBERS_MAX && used + c > limit && tombs[i]->user_count) {
			record_of(tombs[i], &recs[n], false);
			c = record_cost(&tmp, join, &recs[n], empty);
			if (used + c <= limit)
				g->stats.pushpull_omitted_user += tombs[i]->user_count;
		}
		if (n < GOSSIP_STATE_MEMBERS_MAX && used + c <= limit) {
			used += c;
			n++;
		} else {
			g->stats.pushpull_omitted_members++;
			g->stats.pushpull_omitted_user += tombs[i]->user_count;
		}
	}
	/* Not even ourselves fits: a stream_max too small to be of use. */
	rc = n && sent[0] == g->self ? gossip_state_encode(out, join, recs, n) : -EMSGSIZE;
out:
	gossip_buf_free(&tmp);
	free(recs);
	free(live);
	free(tombs);
	free(sent);
	free(bare);
	return rc;
}

/* Our whole state, or as much of it as stream_max allows (see above). */
static int state_encode(struct gossip *g, struct gossip_buf *out, bool join)
{
	struct gossip_member_record *recs;
	size_t start = out->len;
	int rc = -EMSGSIZE;

	if (g->count <= GOSSIP_STATE_MEMBERS_MAX) {
		recs = calloc(g->count, sizeof(*recs));
		if (!recs)
			return -ENOMEM;
		for (size_t i = 0; i < g->count; i++)
			record_of(g->members[i], &recs[i], true);
		rc = gossip_state_encode(out, join, recs, g->count);
		free(recs);
	}
	if (rc == 0 && out->len - start <= g->cfg.stream_max)
		return 0;
	if (rc == -ENOMEM)
		return rc;
	out->len = start;
	return state_encode_bounded(g, out, join);
}

struct merge_ctx {
	struct gossip *g;
	const char *peer;
	uint64_t now;
};

static int record_merge(void *ctx, const struct gossip_member_record *r)
{
	struct merge_ctx *mc = ctx;
	struct gossip *g = mc->g;
	char name[GOSSIP_NAME_MAX + 1], addr[GOSSIP_ADDR_MAX + 1];

	/* Valid tokens within their bounds: decode_record() (proto.c). */
	token_copy(name, sizeof(name), &r->node);
	token_copy(addr, sizeof(addr), &r->addr);
	if (strcmp(name, g->self->name) == 0) {
		if (self_identity(g, r->id))
			return 0;
		if (r->status != GOSSIP_ALIVE)
			accused(g, r->incarnation);
		else if (r->incarnation > g->self->incarnation)
			refute(g, r->incarnation);
		for (size_t i = 0; i < r->user_count && i < GOSSIP_USER_KEYS; i++)
			apply_user(g, name, r->id, &r->user[i].key, r->user[i].version,
				   &r->user[i].data);
		return 0;
	}
	switch (r->status) {
	case GOSSIP_ALIVE:
		apply_alive(g, name, r->incarnation, r->id, addr, &r->tags, mc->now);
		break;
	case GOSSIP_SUSPECT:
	case GOSSIP_FAILED: {
		/* Their "failed" is only a suspicion to us: the member gets its
		 * chance to refute (a healed partition must not kill anyone). */
		struct gossip_member *m = find(g, name);

		if (!m && r->status == GOSSIP_SUSPECT) {
			apply_alive(g, name, r->incarnation, r->id, addr, &r->tags, mc->now);
			m = find(g, name);
		}
		if (m)
			apply_suspect(g, name, r->incarnation, r->id, mc->peer, true, mc->now);
		break;
	}
	case GOSSIP_LEFT:
		apply_leave(g, name, r->incarnation, r->id, mc->now);
		break;
	default:
		g->stats.unknown_messages++;  /* a status from a newer version */
		return 0;
	}
	/* The record's user entries belong to the process it names: when
	 * that is not (or not any more, or not yet) the one we know, they are
	 * not ours to keep. */
	struct gossip_member *m = find(g, name);

	if (m && r->id == m->id) {
		for (size_t i = 0; i < r->user_count && i < GOSSIP_USER_KEYS; i++)
			apply_user(g, name, m->id, &r->user[i].key, r->user[i].version,
				   &r->user[i].data);
	} else if (m) {
		g->stats.user_stale += r->user_count;
	}
	return 0;
}

/* Merges a push-pull exchange.  gossip_state_decode() validates every
 * record before the first callback, so a malformed stream leaves no
 * half-applied state behind. */
static int state_merge(struct gossip *g, const char *peer, const uint8_t *buf, size_t len,
		       uint64_t now)
{
	/* A remote "failed" counts as an accusation by the peer; when we do
	 * not know its name (a join seed), by ourselves. */
	struct merge_ctx mc = { .g = g, .peer = peer[0] ? peer : g->self->name, .now = now };
	bool join;
	int rc = gossip_state_decode(buf, len, &join, record_merge, &mc, NULL, 0);

	if (rc != 0) {
		g->stats.malformed++;
		return -EBADMSG;
	}
	g->nfix = 0;  /* the exchange answers itself: no corrections owed */
	return 0;
}

static struct pending_stream *stream_slot(struct gossip *g, uint64_t now)
{
	struct pending_stream *s = NULL, *oldest = NULL;

	for (size_t i = 0; i < STREAM_PENDING_MAX; i++) {
		struct pending_stream *p = &g->streams[i];

		if (!p->used) {
			s = p;
			break;
		}
		if (!oldest || p->started < oldest->started)
			oldest = p;
	}
	if (!s) {
		/* The transport owes us an answer for every stream; if it loses
		 * them anyway, the oldest is given up, never the table. */
		struct gossip_event ev = {
			.type = GOSSIP_EV_SYNC, .stream_id = oldest->id, .ok = false,
			.join = oldest->join,
		};

		oldest->used = false;
		if (g->env.on_event)
			g->env.on_event(g->env.ctx, &ev);
		s = oldest;
	}
	s->used = true;
	s->started = now;
	return s;
}

static uint64_t stream_start(struct gossip *g, const char *addr, const char *peer, bool join,
			     uint64_t now)
{
	struct pending_stream *s;

	g->sbuf.len = 0;
	if (state_encode(g, &g->sbuf, join) != 0)
		return 0;
	s = stream_slot(g, now);
	s->join = join;
	s->id = ++g->next_stream_id;
	snprintf(s->peer, sizeof(s->peer), "%s", peer);
	g->env.stream_request(g->env.ctx, s->id, addr, g->sbuf.data, g->sbuf.len);
	return s->id;
}

static uint64_t pushpull_interval(const struct gossip *g)
{
	/* memberlist's pushPullScale: one more interval per doubling past 32. */
	uint64_t mult = 1;

	for (uint64_t t = 32; t < g->live && mult < 64; t *= 2)
		mult++;
	return (uint64_t)g->cfg.pushpull_interval * mult;
}

/* A joiner tells every member it just learned about that it exists, the
 * way a leaver says goodbye: all of them know within one round trip. */
static void announce_self(struct gossip *g)
{
	struct gossip_msg msg;

	alive_msg(&msg, g->self);
	fanout_alone(g, &msg, 1, false);
}

static struct pending_stream *stream_find(struct gossip *g, uint64_t id)
{
	for (size_t i = 0; i < STREAM_PENDING_MAX; i++) {
		if (g->streams[i].used && g->streams[i].id == id)
			return &g->streams[i];
	}
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Timers                                                              */
/* ------------------------------------------------------------------ */

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static void deadline_update(struct gossip *g)
{
	uint64_t d = g->next_gossip_at;

	if (!g->leaving) {
		if (g->pr.active) {
			d = min_u64(d, g->pr.end_at);
			if (!g->pr.indirect_sent)
				d = min_u64(d, g->pr.timeout_at);
		} else {
			d = min_u64(d, g->next_probe_at);
		}
		d = min_u64(d, g->next_pushpull_at);
	}
	d = min_u64(d, g->next_reconnect_at);
	for (size_t i = 0; i < RELAY_MAX; i++) {
		if (g->relays[i].used)
			d = min_u64(d, g->relays[i].want_nack ? g->relays[i].nack_at
							      : g->relays[i].deadline);
	}
	if (g->suspects) {
		for (size_t i = 0; i < g->count; i++) {
			const struct gossip_member *m = g->members[i];

			if (m->susp)
				d = min_u64(d, m->susp->expiry);
		}
	}
	g->deadline = d;
}

/* Our own timer ran out: everybody else's runs out within a gossip round
 * or two anyway (they hold the same confirmations), so tell them all at
 * once.  One packet per live member per failure, like a leave; only the
 * first declarer does it, since the others hear it before their own
 * timers fire. */
static void dead_fanout(struct gossip *g, const struct gossip_member *dead)
{
	struct gossip_msg msg = { .type = GOSSIP_MSG_DEAD };

	msg.u.dead.node = bytes_of(dead->name);
	msg.u.dead.incarnation = dead->incarnation;
	msg.u.dead.id = dead->id;
	msg.u.dead.from = bytes_of(g->self->name);
	fanout_alone(g, &msg, 1, false);
}

static void relays_expire(struct gossip *g, uint64_t now)
{
	for (size_t i = 0; i < RELAY_MAX; i++) {
		struct relay *r = &g->relays[i];

		if (r->used && r->want_nack && now >= r->nack_at) {
			r->want_nack = false;
			send_ack(g, GOSSIP_MSG_NACK, r->their_seq, r->requester_addr,
				 r->requester);
		}
		if (r->used && now >= r->deadline)
			r->used = false;
	}
}

static void suspicions_expire(struct gossip *g, uint64_t now, bool late)
{
	if (!g->suspects)
		return;
	for (size_t i = 0; i < g->count; i++) {
		struct gossip_member *m = g->members[i];
		struct suspicion *s = m->susp;

		if (!s || now < s->expiry)
			continue;
		if (late && !s->deferred) {
			/* Late-timer grace: the refutation may be queued behind us. */
			s->deferred = true;
			s->expiry = now + scaled(g, g->cfg.probe_timeout);
			continue;
		}
		declare_failed(g, m, g->self->name, now);
		dead_fanout(g, m);
	}
}

static void gossip_round(struct gossip *g, uint64_t now)
{
	if (g->qlen == 0)
		return;
	size_t k = pick_random(g, g->cfg.gossip_nodes, NULL, ok_gossip, now);

	for (size_t i = 0; i < k && g->qlen; i++) {
		struct gossip_member *m = g->scratch[i];

		gossip_encoder_reset(g->enc);
		bcast_fill(g);
		if (gossip_encoder_count(g->enc) == 0)
			break;
		send_encoded(g, m->addr, m->name);
	}
}

static void reap(struct gossip *g, uint64_t now)
{
	for (size_t i = 0; i < g->count;) {
		struct gossip_member *m = g->members[i];

		if (m != g->self && !is_live(m->status) &&
		    now - m->since >= g->cfg.reconnect_timeout) {
			emit(g, GOSSIP_EV_REAP, m);
			member_remove(g, m);  /* moves another member into slot i */
		} else {
			i++;
		}
	}
}

static uint64_t next_after(uint64_t at, uint64_t interval, uint64_t now)
{
	at += interval;
	return at <= now ? now + interval : at;
}

uint64_t gossip_tick(struct gossip *g, uint64_t now)
{
	/* A tick that runs well after the deadline it asked for means we were
	 * not scheduled: verdicts reached now are postponed once, and we hold
	 * it against our own health. */
	bool late = now > g->deadline && now - g->deadline > g->cfg.probe_timeout / 2;

	if (late)
		health_add(g, 1);
	relays_expire(g, now);
	if (!g->leaving)
		probe_run(g, now, late);
	suspicions_expire(g, now, late);
	if (now >= g->next_gossip_at) {
		gossip_round(g, now);
		g->next_gossip_at = next_after(g->next_gossip_at, g->cfg.gossip_interval, now);
	}
	if (!g->leaving && now >= g->next_pushpull_at) {
		size_t k = pick_random(g, 1, NULL, ok_alive, now);

		if (k)
			stream_start(g, g->scratch[0]->addr, g->scratch[0]->name, false, now);
		g->next_pushpull_at = now + pushpull_interval(g);
	}
	if (now >= g->next_reconnect_at) {
		reap(g, now);
		if (!g->leaving) {
			size_t k = pick_random(g, 1, NULL, ok_failed, now);
			struct gossip_member *t = k ? g->scratch[0] : NULL;

			if (t)
				stream_start(g, t->addr, t->name, false, now);
		}
		g->next_reconnect_at = next_after(g->next_reconnect_at,
						  g->cfg.reconnect_interval, now);
	}
	deadline_update(g);
	return g->deadline;
}

uint64_t gossip_next_deadline(const struct gossip *g)
{
	return g->deadline;
}

/* ------------------------------------------------------------------ */
/* Public entry points                                                 */
/* ------------------------------------------------------------------ */

/* Whether an alive message carrying @tags can be sent at all (a map that
 * did not come from gossip_tags_set() may not be canonical). */
static bool tags_encodable(struct gossip *g, const struct gossip_tags *tags)
{
	struct gossip_msg msg = { .type = GOSSIP_MSG_ALIVE };

	msg.u.alive.node = bytes_of(g->self->name);
	msg.u.alive.addr = bytes_of(g->self->addr);
	msg.u.alive.tags = *tags;
	gossip_encoder_reset(g->enc);
	return gossip_encoder_add(g->enc, &msg) == 0;
}

struct gossip *gossip_new(const struct gossip_config *cfg, const struct gossip_env *env,
			  uint64_t now)
{
	struct gossip *g;
	uint64_t seed;

	if (!cfg || !env || !env->send_packet || !env->stream_request ||
	    !gossip_token_valid(cfg->name, strnlen(cfg->name, sizeof(cfg->name)),
				GOSSIP_NAME_MAX) ||
	    !gossip_token_valid(cfg->addr, strnlen(cfg->addr, sizeof(cfg->addr)),
				GOSSIP_ADDR_MAX) ||
	    cfg->probe_interval == 0 || cfg->probe_timeout == 0 || cfg->gossip_interval == 0 ||
	    cfg->pushpull_interval == 0 || cfg->reconnect_interval == 0 ||
	    cfg->members_max == 0 || cfg->broadcast_queue_max == 0 || cfg->stream_max == 0)
		return NULL;
	g = calloc(1, sizeof(*g));
	if (!g)
		return NULL;
	g->cfg = *cfg;
	g->env = *env;
	seed = cfg->seed;
	for (int i = 0; i < 4; i++)
		g->rng[i] = splitmix64(&seed);
	g->enc = gossip_encoder_new(GOSSIP_PACKET_MAX);
	g->queue = calloc(cfg->broadcast_queue_max, sizeof(*g->queue));
	g->nbuckets = 16;
	g->buckets = calloc(g->nbuckets, sizeof(*g->buckets));
	if (!g->enc || !g->queue || !g->buckets || table_grow(g) != 0)
		goto fail;
	g->self = member_add(g, cfg->name, cfg->addr, cfg->id, 0, &cfg->tags, now);
	if (!g->self)
		goto fail;
	g->self->is_self = true;
	g->self->probe_idx = SIZE_MAX;
	if (!tags_encodable(g, &cfg->tags))
		goto fail;

	/* Stagger the periodic work so that nodes started together do not
	 * tick in lockstep. */
	g->next_probe_at = now + rng_below(g, cfg->probe_interval);
	g->next_gossip_at = now + rng_below(g, cfg->gossip_interval);
	g->next_pushpull_at = now + 1 + rng_below(g, cfg->pushpull_interval);
	g->next_reconnect_at = now + 1 + rng_below(g, cfg->reconnect_interval);
	/* Our own alive waits in the queue until we know somebody: after a
	 * join, the news of us spreads from two sources, the seed and us. */
	queue_alive(g, g->self);
	deadline_update(g);
	return g;
fail:
	gossip_delete(g);
	return NULL;
}

void gossip_delete(struct gossip *g)
{
	if (!g)
		return;
	for (size_t i = 0; i < g->count; i++)
		member_free(g->members[i]);
	for (size_t i = 0; i < g->qlen; i++)
		free(g->queue[i]);
	free(g->queue);
	free(g->members);
	free(g->probe);
	free(g->scratch);
	free(g->buckets);
	gossip_encoder_delete(g->enc);
	gossip_buf_free(&g->sbuf);
	free(g);
}

/* The sender handed us stale accusations: it gets our alive for each. */
static void send_corrections(struct gossip *g, const char *to, const char *addr)
{
	struct gossip_msg msgs[FIX_MAX];

	for (size_t i = 0; i < g->nfix; i++) {
		const struct gossip_member *m = g->fix[i];

		msgs[i] = (struct gossip_msg){ .type = GOSSIP_MSG_ALIVE };
		msgs[i].u.alive.node = bytes_of(m->name);
		msgs[i].u.alive.incarnation = m->incarnation;
		msgs[i].u.alive.id = m->id;
		msgs[i].u.alive.addr = bytes_of(m->addr);
		msgs[i].u.alive.tags = m->tags;
	}
	send_msgs(g, addr, to, msgs, g->nfix);
}

void gossip_recv_packet(struct gossip *g, const char *from, const char *from_addr,
			const uint8_t *buf, size_t len, uint64_t now)
{
	char fname[GOSSIP_NAME_MAX + 1] = "", faddr[GOSSIP_ADDR_MAX + 1] = "";

	g->stats.packets_received++;
	g->stats.bytes_received += len;
	if (from)
		snprintf(fname, sizeof(fname), "%s", from);
	if (from_addr)
		snprintf(faddr, sizeof(faddr), "%s", from_addr);
	if (!buf || gossip_packet_decode(buf, len, &g->pkt, NULL, 0) != 0) {
		g->stats.malformed++;
		return;
	}
	g->stats.unknown_messages += g->pkt.skipped;
	g->nfix = 0;
	for (size_t i = 0; i < g->pkt.count && i < GOSSIP_PACKET_MSGS_MAX; i++)
		on_msg(g, fname, faddr, &g->pkt.msgs[i], now);
	if (g->nfix && faddr[0])
		send_corrections(g, fname, faddr);
	g->nfix = 0;
	if (g->recheck && g->recheck->status == GOSSIP_SUSPECT)
		probe_move_next(g, g->recheck);
	g->recheck = NULL;
	deadline_update(g);
}

int gossip_stream_serve(struct gossip *g, const char *from, const uint8_t *req, size_t len,
			struct gossip_buf *resp, uint64_t now)
{
	char peer[GOSSIP_NAME_MAX + 1] = "";
	size_t old_len = resp ? resp->len : 0;
	int rc;

	if (from)
		snprintf(peer, sizeof(peer), "%s", from);
	if (!req || !resp || state_merge(g, peer, req, len, now) != 0) {
		if (!req || !resp)
			g->stats.malformed++;
		deadline_update(g);
		return -EBADMSG;
	}
	/* Merged first, answered second: the answer carries our refutations. */
	rc = state_encode(g, resp, false);
	if (rc != 0)
		resp->len = old_len;
	else
		g->stats.pushpulls++;
	deadline_update(g);
	return rc;
}

void gossip_stream_done(struct gossip *g, uint64_t id, const uint8_t *resp, size_t len,
			uint64_t now)
{
	struct pending_stream *s = stream_find(g, id);

	if (!s)
		return;  /* given up already */
	s->used = false;
	struct gossip_event ev = { .type = GOSSIP_EV_SYNC, .stream_id = id, .join = s->join };

	ev.ok = resp && state_merge(g, s->peer, resp, len, now) == 0;
	if (ev.ok)
		g->stats.pushpulls++;
	if (ev.ok && ev.join && !g->leaving)
		announce_self(g);
	if (g->env.on_event)
		g->env.on_event(g->env.ctx, &ev);
	deadline_update(g);
}

void gossip_stream_failed(struct gossip *g, uint64_t id, uint64_t now)
{
	struct pending_stream *s = stream_find(g, id);

	(void)now;
	if (!s)
		return;
	s->used = false;
	struct gossip_event ev = {
		.type = GOSSIP_EV_SYNC, .stream_id = id, .ok = false, .join = s->join,
	};

	if (g->env.on_event)
		g->env.on_event(g->env.ctx, &ev);
}

uint64_t gossip_join(struct gossip *g, const char *addr, uint64_t now)
{
	uint64_t id;

	if (!addr || g->leaving || !gossip_token_valid(addr, strlen(addr), GOSSIP_ADDR_MAX))
		return 0;
	id = stream_start(g, addr, "", true, now);
	deadline_update(g);
	return id;
}

void gossip_leave(struct gossip *g, uint64_t now)
{
	struct gossip_msg msg;

	if (g->leaving)
		return;
	g->leaving = true;
	g->leave_at = now + g->cfg.leave_propagate_ms;
	self_bump(g, 0);
	set_status(g, g->self, GOSSIP_LEFT, now);
	g->pr.active = false;
	queue_leave(g, g->self);
	leave_msg(&msg, g->self);
	/* Everybody hears it within one round trip, gossip covers losses. */
	fanout_alone(g, &msg, 1, true);
	deadline_update(g);
}

bool gossip_leave_done(const struct gossip *g, uint64_t now)
{
	return g->leaving && now >= g->leave_at;
}

int gossip_set_tags(struct gossip *g, const struct gossip_tags *tags, uint64_t now)
{
	(void)now;
	if (!tags || !tags_encodable(g, tags))
		return -EINVAL;
	if (g->leaving)
		return -ESHUTDOWN;
	g->self->tags = *tags;
	self_bump(g, 0);
	queue_alive(g, g->self);
	/* Tags change rarely, and their news (a leaving member) must not
	 * wait for the epidemic. */
	struct gossip_msg msg;

	alive_msg(&msg, g->self);
	fanout_alone(g, &msg, 1, true);
	deadline_update(g);
	return 0;
}

static int set_user(struct gossip *g, const char *key, const void *data, size_t len,
		    bool fanout)
{
	struct user_slot *u;

	if (!key || !gossip_token_valid(key, strlen(key), GOSSIP_USER_KEY_MAX) || (len && !data))
		return -EINVAL;
	if (len > GOSSIP_USER_DATA_MAX)
		return -EMSGSIZE;
	u = user_slot(g->self, key, true);
	if (!u)
		return g->self->user_count >= GOSSIP_USER_KEYS ? -ENOSPC : -ENOMEM;
	u->version++;
	u->len = (uint16_t)len;
	if (len)
		memcpy(u->data, data, len);
	if (!g->leaving)
		queue_user(g, g->self, u);
	if (fanout && !g->leaving) {
		struct gossip_msg msgs[2];

		/* Our alive first: a member that missed our restart would
		 * otherwise drop the data of a process it does not know yet. */
		alive_msg(&msgs[0], g->self);
		user_msg(&msgs[1], g->self, u);
		fanout_alone(g, msgs, 2, true);
	}
	deadline_update(g);
	return 0;
}

int gossip_set_user(struct gossip *g, const char *key, const void *data, size_t len,
		    uint64_t now)
{
	(void)now;
	return set_user(g, key, data, len, false);
}

int gossip_set_user_fanout(struct gossip *g, const char *key, const void *data, size_t len,
			   uint64_t now)
{
	(void)now;
	return set_user(g, key, data, len, true);
}

/* ------------------------------------------------------------------ */
/* The membership view                                                 */
/* ------------------------------------------------------------------ */

const struct gossip_member *gossip_self(const struct gossip *g)
{
	return g->self;
}

const struct gossip_member *gossip_member_find(const struct gossip *g, const char *name)
{
	return name ? find(g, name) : NULL;
}

size_t gossip_member_count(const struct gossip *g)
{
	return g->count;
}

const struct gossip_member *gossip_member_at(const struct gossip *g, size_t i)
{
	return i < g->count ? g->members[i] : NULL;
}

size_t gossip_live_count(const struct gossip *g)
{
	return g->live;
}

const char *gossip_member_name(const struct gossip_member *m)
{
	return m->name;
}

const char *gossip_member_addr(const struct gossip_member *m)
{
	return m->addr;
}

enum gossip_status gossip_member_status(const struct gossip_member *m)
{
	return m->status;
}

uint64_t gossip_member_incarnation(const struct gossip_member *m)
{
	return m->incarnation;
}

uint64_t gossip_member_id(const struct gossip_member *m)
{
	return m->id;
}

const struct gossip_tags *gossip_member_tags(const struct gossip_member *m)
{
	return &m->tags;
}

uint64_t gossip_member_since(const struct gossip_member *m)
{
	return m->since;
}

uint32_t gossip_member_rtt_us(const struct gossip_member *m)
{
	return m->rtt_us;
}

const uint8_t *gossip_member_user(const struct gossip_member *m, const char *key, size_t *len,
				  uint64_t *version)
{
	for (uint8_t i = 0; key && i < m->user_count; i++) {
		if (strcmp(m->user[i].key, key) == 0) {
			if (len)
				*len = m->user[i].len;
			if (version)
				*version = m->user[i].version;
			return m->user[i].data;
		}
	}
	return NULL;
}

void gossip_stats_get(const struct gossip *g, struct gossip_stats *out)
{
	*out = g->stats;
	out->health = g->health;
}
