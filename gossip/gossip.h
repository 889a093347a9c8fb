/*
 * gossip/gossip.h - the SWIM membership core: a pure state machine.
 *
 * The core does no I/O and reads no clock.  Everything reaches it through
 * calls that carry the current time (milliseconds on a monotonic clock, from
 * any origin), and everything it wants done leaves through a small table of
 * functions (struct gossip_env): send a datagram, start a push-pull stream
 * exchange, report an event.  The agent plugs libuv and the sealing layer
 * in behind that table (gossip/transport.h); the tests plug in a fake
 * network and a fake clock (tests/fake/), so whole clusters run in fake
 * time, deterministically from a seed.
 *
 * Driving it:
 *   - call gossip_tick(g, now) whenever now >= gossip_next_deadline(g);
 *   - hand it every opened datagram with gossip_recv_packet();
 *   - serve incoming push-pull streams with gossip_stream_serve() and
 *     report the outcome of its own with gossip_stream_done()/_failed();
 *   - after any call into the core, re-read gossip_next_deadline().
 * No callback of gossip_env may call back into the core; every function
 * here may call gossip_env functions before it returns.
 *
 * The protocol is described in gossip/core.c's opening essay.
 */
#ifndef MERIDIAN_GOSSIP_GOSSIP_H
#define MERIDIAN_GOSSIP_GOSSIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gossip/proto.h"
#include "gossip/tags.h"

/* Member statuses, exactly as users see them. */
enum gossip_status {
	GOSSIP_ALIVE = 0,
	GOSSIP_SUSPECT = 1,
	GOSSIP_FAILED = 2,  /* declared dead without saying goodbye */
	GOSSIP_LEFT = 3,    /* left gracefully */
};
/* "alive", "suspect", "failed", "left"; NULL for anything else. */
const char *gossip_status_name(enum gossip_status s);
/* The inverse; -EINVAL for an unknown name. */
int gossip_status_parse(const char *name);
/* True when @s (NUL-terminated) can be a node's name: 1 to GOSSIP_NAME_MAX
 * of A-Z a-z 0-9 . _ -.  The one rule for names we give ourselves
 * (cmd/config.c) and names senders claim (gossip/transport.c). */
bool gossip_name_valid(const char *s);

/* Timing and sizing.  Fill with gossip_config_profile(), then override. */
struct gossip_config {
	/* identity */
	char name[GOSSIP_NAME_MAX + 1];       /* unique in the cluster */
	char addr[GOSSIP_ADDR_MAX + 1];       /* advertised "host:port" */
	uint64_t id;                          /* identity of this process: a
						 restart must pick a larger one
						 (the agent uses start time in ms
						 << 16 | 16 random bits) */
	struct gossip_tags tags;
	uint64_t seed;                        /* PRNG seed (tests pass theirs) */

	/* failure detection (ms) */
	uint32_t probe_interval;
	uint32_t probe_timeout;
	uint32_t indirect_checks;             /* k members asked to ping-req */
	uint32_t suspicion_mult;              /* min timeout = mult*log10(N)*interval */
	uint32_t suspicion_max_timeout_mult;  /* max timeout = this * min */
	uint32_t awareness_max;               /* Lifeguard local health ceiling */

	/* dissemination */
	uint32_t gossip_interval;             /* ms */
	uint32_t gossip_nodes;                /* members per gossip tick */
	uint32_t retransmit_mult;             /* limit = mult * ceil(log10(N+1)) */
	uint32_t gossip_to_dead_ms;           /* keep gossiping to the dead this long */

	/* anti-entropy and healing (ms) */
	uint32_t pushpull_interval;
	uint32_t reconnect_interval;          /* try one tombstone this often */
	uint64_t reconnect_timeout;           /* reap tombstones after (24 h) */
	uint32_t leave_propagate_ms;          /* how long leave keeps gossiping */

	/* bounds */
	uint32_t members_max;                 /* table size, tombstones included:
						 when full, the oldest tombstone
						 (left ones before failed ones) is
						 forgotten to make room
						 (GOSSIP_EV_REAP); a newcomer is
						 refused (members_refused) only
						 when every entry is live */
	uint32_t broadcast_queue_max;         /* oldest broadcasts dropped past it */
	uint32_t stream_max;                  /* bytes of one push-pull state, at
						 most; see GOSSIP_STREAM_MAX_DEFAULT */
};

/*
 * The default stream_max: the agent's stream frame bound (1 MiB, FRAME_MAX
 * in cmd/agent.c) less room for sealing (SEAL_OVERHEAD_MAX plus the kind
 * byte, gossip/seal.h).  A state that would be larger is trimmed, not
 * refused: tombstones are left out first (oldest first), then user data;
 * live members are always sent, as many as fit.  What was left out is
 * counted (gossip_stats.pushpull_omitted_*); the next push-pull, or
 * gossip, carries the rest.
 */
#define GOSSIP_STREAM_MAX_DEFAULT (1024 * 1024 - 256)

/*
 * The largest believable step of an incarnation (or of a user-data
 * version) over the one we know: 2^32.  Real ones grow by one per
 * refutation or tag change.  News further ahead (a corrupt or hostile
 * sender; 2^64 - 1 would leave nobody able to refute ever again) is
 * dropped and counted (gossip_stats.implausible).  About itself a member
 * believes only half that jump, so that its refutation (one above the
 * accusation) stays within the bound of every member that missed the
 * accusation and still knows the old incarnation.  Our own incarnation
 * never wraps: if it ever had to pass 2^64 - 1, the core takes a new,
 * larger process id instead (id + 1, incarnation 0), which supersedes
 * everything said about the old one, and re-announces its user data.
 */
#define GOSSIP_INC_JUMP_MAX (1ULL << 32)

/*
 * Fills @c with the timing profile @profile: "lan" (memberlist's
 * DefaultLANConfig), "wan" (DefaultWANConfig) or "local"
 * (DefaultLocalConfig).  Identity fields are left empty.  Returns 0 or
 * -EINVAL for an unknown profile (then @c holds "lan").
 */
int gossip_config_profile(struct gossip_config *c, const char *profile);

struct gossip;
struct gossip_member;   /* owned by the core; valid until the next call */

enum gossip_event_type {
	GOSSIP_EV_JOIN,      /* a member appeared (alive), or a left member
				came back as a new process (larger id) */
	GOSSIP_EV_UPDATE,    /* its address or tags changed */
	GOSSIP_EV_SUSPECT,   /* alive -> suspect */
	GOSSIP_EV_ALIVE,     /* suspect/failed -> alive (refuted, or came back,
				restarted or not) */
	GOSSIP_EV_FAILED,    /* -> failed */
	GOSSIP_EV_LEFT,      /* -> left */
	GOSSIP_EV_REAP,      /* tombstone forgotten after reconnect_timeout,
				or evicted to make room (members_max) */
	GOSSIP_EV_USER,      /* newer user data from a member */
	GOSSIP_EV_SYNC,      /* a push-pull we started finished (ok or not) */
	GOSSIP_EV_CONFLICT,  /* someone else claims our name (newer id) */
};

struct gossip_event {
	enum gossip_event_type type;
	const struct gossip_member *member;   /* NULL for SYNC */
	/* GOSSIP_EV_USER */
	const char *user_key;                 /* NUL-terminated */
	const uint8_t *user_data;
	size_t user_len;
	uint64_t user_version;
	/* GOSSIP_EV_SYNC */
	uint64_t stream_id;
	bool ok;
	bool join;                            /* it was a gossip_join() */
};

struct gossip_env {
	void *ctx;
	/* Send one datagram of @len bytes (<= GOSSIP_PACKET_MAX) to @addr,
	 * addressed to the member named @to (may be "" when unknown).  Best
	 * effort: the core never learns whether it went out. */
	void (*send_packet)(void *ctx, const char *addr, const char *to,
			    const uint8_t *buf, size_t len);
	/* Start a push-pull exchange with @addr: deliver @buf and later
	 * report the answer with gossip_stream_done(@id) or the failure with
	 * gossip_stream_failed(@id); never synchronously from here. */
	void (*stream_request)(void *ctx, uint64_t id, const char *addr,
			       const uint8_t *buf, size_t len);
	/* Something happened to the membership.  May be NULL. */
	void (*on_event)(void *ctx, const struct gossip_event *ev);
};

/*
 * Creates a core for @cfg (copied) that talks through @env (copied) and
 * is alone in its cluster until it joins.  NULL for an invalid config
 * (empty or too long name or address) or out of memory.
 */
struct gossip *gossip_new(const struct gossip_config *cfg, const struct gossip_env *env,
			  uint64_t now);
void gossip_delete(struct gossip *g);

/* Runs everything that is due at @now; returns gossip_next_deadline(). */
uint64_t gossip_tick(struct gossip *g, uint64_t now);
/* The earliest time the core wants gossip_tick() called. */
uint64_t gossip_next_deadline(const struct gossip *g);

/*
 * One opened datagram from the member named @from (authenticated by the
 * sealing layer) at @from_addr ("host:port" it came from).  Malformed
 * packets are counted (gossip_stats.malformed) and dropped.
 */
void gossip_recv_packet(struct gossip *g, const char *from, const char *from_addr,
			const uint8_t *buf, size_t len, uint64_t now);

/*
 * Serves an incoming push-pull request @req from @from: merges the remote
 * state and writes our state into @resp (appended).  Returns 0, or
 * -EBADMSG (malformed; counted) in which case @resp is untouched.
 */
int gossip_stream_serve(struct gossip *g, const char *from, const uint8_t *req, size_t len,
			struct gossip_buf *resp, uint64_t now);
/* The answer to our stream_request @id. */
void gossip_stream_done(struct gossip *g, uint64_t id, const uint8_t *resp, size_t len,
			uint64_t now);
/* Our stream_request @id failed (refused, timed out, bad answer). */
void gossip_stream_failed(struct gossip *g, uint64_t id, uint64_t now);

/*
 * Starts joining through the seed @addr: a push-pull marked join.  Returns
 * the stream id; a GOSSIP_EV_SYNC event with that id and .join = true
 * reports the outcome.
 */
uint64_t gossip_join(struct gossip *g, const char *addr, uint64_t now);

/*
 * Leaves gracefully: marks us left (bumping our incarnation), sends the
 * leave to every alive member directly and keeps gossiping it.  After
 * gossip_leave_done() turns true (leave_propagate_ms later) the caller may
 * stop.  Idempotent.
 */
void gossip_leave(struct gossip *g, uint64_t now);
bool gossip_leave_done(const struct gossip *g, uint64_t now);

/* Replaces our tags (copied); bumps our incarnation, sends our alive at
 * once to every live member (as a leave goes out: tags change rarely, and
 * news such as "leaving" must not wait for the epidemic) and gossips it. */
int gossip_set_tags(struct gossip *g, const struct gossip_tags *tags, uint64_t now);

/*
 * Publishes @len bytes of user data under @key (<= GOSSIP_USER_KEY_MAX
 * bytes, at most GOSSIP_USER_KEYS distinct keys): stored in our member
 * record with a version that grows by one each call, piggybacked and
 * carried by push-pull.  Receivers keep the highest version per (member,
 * key) and raise GOSSIP_EV_USER.  User data belongs to one process: it
 * travels with our id, receivers apply it only while that id is the one
 * they know for us, and forget it when they learn a newer process of our
 * name.  Returns 0, -EINVAL, -ENOSPC, -EMSGSIZE.
 */
int gossip_set_user(struct gossip *g, const char *key, const void *data, size_t len,
		    uint64_t now);
/*
 * As gossip_set_user(), and also sends our alive and the new data at once
 * to every live member, one packet each, the way a leave goes out: for
 * rare news that must reach everyone within a round trip rather than by
 * the epidemic, which with a small retransmit limit can miss a member
 * until the next push-pull (a leader change is such news).  O(members)
 * packets per call: not for data that changes often.
 */
int gossip_set_user_fanout(struct gossip *g, const char *key, const void *data, size_t len,
			   uint64_t now);

/* ------------------------------------------------------------------ */
/* The membership view                                                 */
/* ------------------------------------------------------------------ */

/* Ourselves (always present). */
const struct gossip_member *gossip_self(const struct gossip *g);
/* The member named @name, or NULL. */
const struct gossip_member *gossip_member_find(const struct gossip *g, const char *name);
/* Members including ourselves and tombstones, in no particular order. */
size_t gossip_member_count(const struct gossip *g);
const struct gossip_member *gossip_member_at(const struct gossip *g, size_t i);
/* Members currently alive or suspect (including ourselves). */
size_t gossip_live_count(const struct gossip *g);

const char *gossip_member_name(const struct gossip_member *m);
const char *gossip_member_addr(const struct gossip_member *m);
enum gossip_status gossip_member_status(const struct gossip_member *m);
uint64_t gossip_member_incarnation(const struct gossip_member *m);
uint64_t gossip_member_id(const struct gossip_member *m);
const struct gossip_tags *gossip_member_tags(const struct gossip_member *m);
/* Time (core ms) of the last status change. */
uint64_t gossip_member_since(const struct gossip_member *m);
/* Smoothed round-trip time of direct probes in microseconds; 0 = unknown. */
uint32_t gossip_member_rtt_us(const struct gossip_member *m);
/* User data under @key, or NULL; *@len gets its length, *@version its version. */
const uint8_t *gossip_member_user(const struct gossip_member *m, const char *key,
				  size_t *len, uint64_t *version);

/* Counters for /metrics. */
struct gossip_stats {
	uint64_t probes;            /* direct probes sent */
	uint64_t probe_failures;    /* probes that ended without any ack */
	uint64_t indirect_probes;   /* ping-reqs sent */
	uint64_t suspicions;        /* members we marked suspect */
	uint64_t refutations;       /* times we refuted a suspicion of us */
	uint64_t packets_sent;
	uint64_t packets_received;
	uint64_t bytes_sent;        /* plaintext packet bytes */
	uint64_t bytes_received;
	uint64_t malformed;         /* packets/streams that failed to decode */
	uint64_t unknown_messages;  /* messages of unknown type skipped */
	uint64_t broadcasts_dropped;/* queue bound reached */
	uint64_t pushpulls;         /* push-pull exchanges completed */
	uint64_t members_refused;   /* members_max reached, no tombstone to evict */
	uint32_t health;            /* Lifeguard local health score, 0 = healthy */
	uint64_t implausible;       /* incarnations/versions past GOSSIP_INC_JUMP_MAX */
	uint64_t user_stale;        /* user data of another process than known, dropped */
	uint64_t pushpull_omitted_members;  /* records left out to fit stream_max */
	uint64_t pushpull_omitted_user;     /* user entries left out to fit stream_max */
};
void gossip_stats_get(const struct gossip *g, struct gossip_stats *out);

#endif
