/*
 * election/announce.c - the leader announcement's wire form and the
 * election's name tables (see election.h).
 *
 * Twenty fixed bytes: 'L', version 1, state, backend, term and
 * since_wall_ms as big-endian u64.  The decoder checks the magic first and
 * the version second, so that a later version may change the length and
 * still be told apart from garbage (-EPROTONOSUPPORT, not -EBADMSG).  It
 * accepts exactly what the encoder can say: a decoded announcement
 * re-encodes to the same bytes.
 */
#include "election/election.h"

#include <errno.h>
#include <string.h>

#include "lib/be.h"

#define ANN_MAGIC 'L'
#define ANN_VERSION 1

bool election_announce_valid(const struct election_announce *a)
{
	return (a->state == ELECTION_ANN_LEADING || a->state == ELECTION_ANN_RELEASED) &&
	       (a->backend == ELECTION_BACKEND_GOSSIP || a->backend == ELECTION_BACKEND_POSTGRES) &&
	       a->term != 0;
}

int election_announce_encode(const struct election_announce *a,
			     uint8_t out[ELECTION_ANNOUNCE_LEN])
{
	if (!a || !out || !election_announce_valid(a))
		return -EINVAL;
	out[0] = ANN_MAGIC;
	out[1] = ANN_VERSION;
	out[2] = a->state;
	out[3] = a->backend;
	put_be64(out + 4, a->term);
	put_be64(out + 12, a->since_wall_ms);
	return ELECTION_ANNOUNCE_LEN;
}

int election_announce_decode(const uint8_t *buf, size_t len, struct election_announce *out)
{
	struct election_announce a;

	if (!out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	if (!buf || len < 2 || buf[0] != ANN_MAGIC)
		return -EBADMSG;
	if (buf[1] != ANN_VERSION)
		return -EPROTONOSUPPORT;
	if (len != ELECTION_ANNOUNCE_LEN)
		return -EBADMSG;
	memset(&a, 0, sizeof(a));
	a.state = buf[2];
	a.backend = buf[3];
	a.term = get_be64(buf + 4);
	a.since_wall_ms = get_be64(buf + 12);
	if (!election_announce_valid(&a))
		return -EBADMSG;
	*out = a;
	return 0;
}

const char *election_backend_name(enum election_backend b)
{
	switch (b) {
	case ELECTION_BACKEND_GOSSIP:
		return "gossip";
	case ELECTION_BACKEND_POSTGRES:
		return "postgres";
	}
	return "unknown";
}

const char *election_role_name(enum election_role r)
{
	switch (r) {
	case ELECTION_FOLLOWER:
		return "follower";
	case ELECTION_CANDIDATE:
		return "candidate";
	case ELECTION_LEADER:
		return "leader";
	}
	return "unknown";
}

const char *election_lease_op_name(enum election_lease_op op)
{
	switch (op) {
	case ELECTION_LEASE_ACQUIRE:
		return "acquire";
	case ELECTION_LEASE_RENEW:
		return "renew";
	case ELECTION_LEASE_RELEASE:
		return "release";
	}
	return "unknown";
}

const char *election_why_name(enum election_why w)
{
	switch (w) {
	case ELECTION_WHY_ELECTED:
		return "elected";
	case ELECTION_WHY_LEASE_LOST:
		return "lease_lost";
	case ELECTION_WHY_DEADLINE:
		return "deadline";
	case ELECTION_WHY_HIGHER_TERM:
		return "higher_term";
	case ELECTION_WHY_PRECEDENCE:
		return "precedence";
	case ELECTION_WHY_LEAVING:
		return "leaving";
	case ELECTION_WHY_INELIGIBLE:
		return "ineligible";
	}
	return "unknown";
}
