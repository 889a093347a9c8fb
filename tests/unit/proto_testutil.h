/*
 * tests/unit/proto_testutil.h - field-by-field equality of decoded wire
 * structures, shared by the unit tests (tests/unit/test_proto.c) and the
 * fuzz targets (tests/fuzz/fuzz_packet.c, tests/fuzz/fuzz_state.c), so
 * that a round trip is judged by one definition of "the same" everywhere.
 *
 * Header-only (static inline): the fuzz targets link no Check and no test
 * library, only the module under test.
 */
#ifndef MERIDIAN_TESTS_PROTO_TESTUTIL_H
#define MERIDIAN_TESTS_PROTO_TESTUTIL_H

#include <stdbool.h>
#include <string.h>

#include "gossip/proto.h"

/* True when @a and @b hold the same bytes; their pointers may differ (an
 * empty one may carry any pointer, NULL included). */
static inline bool bytes_eq(struct gossip_bytes a, struct gossip_bytes b)
{
	return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* True when messages @a and @b have the same type and every field that
 * type carries on the wire is equal; fields the type does not carry are
 * not compared.  An unknown type is never equal. */
static inline bool msg_eq(const struct gossip_msg *a, const struct gossip_msg *b)
{
	if (a->type != b->type)
		return false;
	switch (a->type) {
	case GOSSIP_MSG_PING:
		return a->u.ping.seq == b->u.ping.seq &&
		       bytes_eq(a->u.ping.target, b->u.ping.target);
	case GOSSIP_MSG_ACK:
		return a->u.ack.seq == b->u.ack.seq;
	case GOSSIP_MSG_NACK:
		return a->u.nack.seq == b->u.nack.seq;
	case GOSSIP_MSG_PING_REQ:
		return a->u.ping_req.seq == b->u.ping_req.seq &&
		       bytes_eq(a->u.ping_req.target, b->u.ping_req.target) &&
		       bytes_eq(a->u.ping_req.target_addr, b->u.ping_req.target_addr) &&
		       a->u.ping_req.want_nack == b->u.ping_req.want_nack;
	case GOSSIP_MSG_SUSPECT:
	case GOSSIP_MSG_DEAD:
		return bytes_eq(a->u.suspect.node, b->u.suspect.node) &&
		       a->u.suspect.incarnation == b->u.suspect.incarnation &&
		       a->u.suspect.id == b->u.suspect.id &&
		       bytes_eq(a->u.suspect.from, b->u.suspect.from);
	case GOSSIP_MSG_ALIVE:
		return bytes_eq(a->u.alive.node, b->u.alive.node) &&
		       a->u.alive.incarnation == b->u.alive.incarnation &&
		       a->u.alive.id == b->u.alive.id &&
		       bytes_eq(a->u.alive.addr, b->u.alive.addr) &&
		       gossip_tags_equal(&a->u.alive.tags, &b->u.alive.tags);
	case GOSSIP_MSG_LEAVE:
		return bytes_eq(a->u.leave.node, b->u.leave.node) &&
		       a->u.leave.incarnation == b->u.leave.incarnation &&
		       a->u.leave.id == b->u.leave.id;
	case GOSSIP_MSG_USER:
		return bytes_eq(a->u.user.origin, b->u.user.origin) &&
		       bytes_eq(a->u.user.key, b->u.user.key) &&
		       a->u.user.version == b->u.user.version &&
		       a->u.user.id == b->u.user.id &&
		       bytes_eq(a->u.user.data, b->u.user.data);
	}
	return false;
}

/* True when push-pull records @a and @b are equal in every field, their
 * user entries compared in order. */
static inline bool record_eq(const struct gossip_member_record *a,
			     const struct gossip_member_record *b)
{
	if (!bytes_eq(a->node, b->node) || a->incarnation != b->incarnation || a->id != b->id ||
	    !bytes_eq(a->addr, b->addr) || !gossip_tags_equal(&a->tags, &b->tags) ||
	    a->status != b->status || a->user_count != b->user_count)
		return false;
	for (size_t i = 0; i < a->user_count; i++)
		if (!bytes_eq(a->user[i].key, b->user[i].key) ||
		    a->user[i].version != b->user[i].version ||
		    !bytes_eq(a->user[i].data, b->user[i].data))
			return false;
	return true;
}

#endif
