/*
 * gossip/proto.h - the gossip wire format: what a SWIM packet and a
 * push-pull state exchange look like on the wire, encoded with msgpack-c.
 *
 * This is the only module that touches msgpack-c.  It is pure: no I/O, no
 * clock, no global state.  Sealing (encryption, sender, replay) is a layer
 * below (gossip/seal.h); what the messages mean is a layer above
 * (gossip/gossip.h).
 *
 * A UDP packet (after the seal is opened) is one msgpack map:
 *
 *   +--------------------------------------------------------------+
 *   | map {                                                        |
 *   |   "v": uint        protocol version of the sender            |
 *   |   "m": array [     one or more messages (compound packet)    |
 *   |     map { "t": uint  message type (enum gossip_msg_type)     |
 *   |           ...        the type's own keys, see below  }, ... |
 *   |   ]                                                          |
 *   | }                                                            |
 *   +--------------------------------------------------------------+
 *
 *   type          keys (all maps; order is free)
 *   1 ping        "s" seq:uint  "n" target name:str
 *   2 ack         "s" seq:uint
 *   3 nack        "s" seq:uint
 *   4 ping-req    "s" seq:uint  "n" target:str  "a" target addr:str
 *                 "k" want nack:bool
 *   5 suspect     "n" node:str  "i" incarnation:uint  "d" id:uint
 *                 "f" from:str
 *   6 alive       "n" node:str  "i" incarnation:uint  "d" id:uint
 *                 "a" addr:str  "g" tags:map(str->str)
 *   7 dead        "n" node:str  "i" incarnation:uint  "d" id:uint
 *                 "f" from:str
 *   8 leave       "n" node:str  "i" incarnation:uint  "d" id:uint
 *   9 user        "n" origin:str  "k" key:str  "r" version:uint
 *                 "b" data:bin  ["d" origin id:uint]
 *
 *   The user message's "d" (added after the first release, optional) is
 *   the id of the origin's process that wrote the data: receivers apply it
 *   only to that process (gossip/core.c).  The encoder leaves it out when
 *   0; a missing "d" decodes as 0, "not known" (an older sender).
 *
 * A push-pull exchange (over a sealed TCP frame) is one msgpack map:
 *
 *   map { "v": uint, "j": join:bool, "m": array [ member record ... ] }
 *   member record = map { "n" node:str "i" incarnation:uint "d" id:uint
 *                         "a" addr:str "g" tags:map "s" status:uint
 *                         "u" array [ map { "k" key:str "r" version:uint
 *                                           "b" data:bin } ... ] }
 *
 * Compatibility rules (mixed versions meet during every rolling deploy):
 *   - unknown keys in any map are skipped;
 *   - a message of an unknown type is skipped (counted, never fatal);
 *   - a known key with the wrong type, a missing required key, a string
 *     or blob past its bound, or trailing bytes make the packet malformed:
 *     the whole packet is rejected with an error naming the field
 *     ("ping.s should be a uint").
 *   - every str (names, addresses, keys) is printable ASCII 0x21-0x7e:
 *     no NUL, space or control byte ever reaches a C string or a log line;
 *   - "id" is the identity of a node's process (set at start, see
 *     gossip.h); a missing "d" decodes as 0.
 *
 * The frozen parts are the key names and the type numbers above: never
 * renumber, only add.
 */
#ifndef MERIDIAN_GOSSIP_PROTO_H
#define MERIDIAN_GOSSIP_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gossip/tags.h"

#define GOSSIP_PROTO_VERSION 1   /* what this build speaks */
#define GOSSIP_PROTO_MIN 1       /* the oldest version this build accepts */

/* The sealed datagram stays under 1400 bytes; sealing adds at most
 * SEAL_OVERHEAD_MAX (gossip/seal.h), so the plaintext gets this much. */
#define GOSSIP_PACKET_MAX 1280

#define GOSSIP_NAME_MAX 64       /* node name, bytes */
#define GOSSIP_ADDR_MAX 64       /* "host:port" or "[v6]:port", bytes */
#define GOSSIP_USER_KEY_MAX 16   /* user-data key, bytes */
#define GOSSIP_USER_DATA_MAX 256 /* user-data payload, bytes */
#define GOSSIP_USER_KEYS 4       /* user-data keys per member */
#define GOSSIP_STATE_MEMBERS_MAX 8192 /* member records in one push-pull */

/*
 * True when @len bytes at @s are a wire token: 1 to @max bytes of printable
 * ASCII without spaces (0x21-0x7e).  The rule for every name, address and
 * user key; they end up as C strings, log lines and JSON, so a NUL or a
 * newline inside one must never get past the wire.  The decoder enforces
 * it, and the core checks what it is configured with against it.
 */
bool gossip_token_valid(const char *s, size_t len, size_t max);

enum gossip_msg_type {
	GOSSIP_MSG_PING = 1,
	GOSSIP_MSG_ACK = 2,
	GOSSIP_MSG_NACK = 3,
	GOSSIP_MSG_PING_REQ = 4,
	GOSSIP_MSG_SUSPECT = 5,
	GOSSIP_MSG_ALIVE = 6,
	GOSSIP_MSG_DEAD = 7,
	GOSSIP_MSG_LEAVE = 8,
	GOSSIP_MSG_USER = 9,
};

/* Bytes that point into the decoder's input or into caller memory;
 * not NUL-terminated. */
struct gossip_bytes {
	const char *ptr;
	uint32_t len;
};

/* One message.  On decode every gossip_bytes points into the buffer given
 * to gossip_packet_decode(); on encode into caller memory. */
struct gossip_msg {
	enum gossip_msg_type type;
	union {
		struct { uint32_t seq; struct gossip_bytes target; } ping;
		struct { uint32_t seq; } ack;
		struct { uint32_t seq; } nack;
		struct {
			uint32_t seq;
			struct gossip_bytes target;
			struct gossip_bytes target_addr;
			bool want_nack;
		} ping_req;
		struct {
			struct gossip_bytes node;
			uint64_t incarnation;
			uint64_t id;
			struct gossip_bytes from;
		} suspect, dead;
		struct {
			struct gossip_bytes node;
			uint64_t incarnation;
			uint64_t id;
			struct gossip_bytes addr;
			struct gossip_tags tags;  /* copied: bounded */
		} alive;
		struct {
			struct gossip_bytes node;
			uint64_t incarnation;
			uint64_t id;
		} leave;
		struct {
			struct gossip_bytes origin;
			struct gossip_bytes key;
			uint64_t version;
			struct gossip_bytes data;
			uint64_t id;      /* origin's process; 0 = not known */
		} user;
	} u;
};

/* ------------------------------------------------------------------ */
/* Encoding a compound packet                                          */
/* ------------------------------------------------------------------ */

/* Builds one packet of at most `limit` bytes out of messages. */
struct gossip_encoder;

/* Allocates an encoder whose packets never exceed @limit bytes
 * (<= GOSSIP_PACKET_MAX).  NULL when out of memory. */
struct gossip_encoder *gossip_encoder_new(size_t limit);
void gossip_encoder_delete(struct gossip_encoder *e);

/* Starts a new, empty packet (forgets any previous one). */
void gossip_encoder_reset(struct gossip_encoder *e);

/*
 * Appends @m.  Returns 0, or -EMSGSIZE when the packet would then exceed
 * the limit (the packet is unchanged: send it and start another), or
 * -EINVAL when @m itself is invalid (a field past its bound).
 */
int gossip_encoder_add(struct gossip_encoder *e, const struct gossip_msg *m);

/* Messages added since the last reset. */
size_t gossip_encoder_count(const struct gossip_encoder *e);

/*
 * Finishes the packet: *@buf / *@len point into the encoder, valid until
 * the next call on it.  Returns 0, or -ENODATA when no message was added.
 */
int gossip_encoder_finish(struct gossip_encoder *e, const uint8_t **buf, size_t *len);

/* ------------------------------------------------------------------ */
/* Decoding a packet                                                   */
/* ------------------------------------------------------------------ */

#define GOSSIP_PACKET_MSGS_MAX 64

struct gossip_packet {
	uint32_t version;                         /* sender's "v" */
	size_t count;                             /* messages in msgs */
	size_t skipped;                           /* messages of unknown type */
	struct gossip_msg msgs[GOSSIP_PACKET_MSGS_MAX];
};

/*
 * Decodes the packet in @buf (@len bytes) into @out.  Only a transient
 * msgpack zone is allocated (freed before return); every gossip_bytes in
 * @out points into @buf, which must outlive @out.
 * Returns 0, or -EBADMSG (malformed; @err, if not NULL, gets a NUL-
 * terminated reason naming the field, at most @errlen bytes), or
 * -EPROTONOSUPPORT when "v" is below GOSSIP_PROTO_MIN.  A packet with more
 * than GOSSIP_PACKET_MSGS_MAX messages is malformed.
 */
int gossip_packet_decode(const uint8_t *buf, size_t len, struct gossip_packet *out,
			 char *err, size_t errlen);
/* (Both decoders may also return -ENOMEM when msgpack's zone cannot be
 * allocated: drop the input on any non-zero return.) */

/* ------------------------------------------------------------------ */
/* Push-pull state exchange                                            */
/* ------------------------------------------------------------------ */

struct gossip_user_record {
	struct gossip_bytes key;
	uint64_t version;
	struct gossip_bytes data;
};

struct gossip_member_record {
	struct gossip_bytes node;
	uint64_t incarnation;
	uint64_t id;
	struct gossip_bytes addr;
	struct gossip_tags tags;
	uint32_t status;                 /* enum gossip_status, gossip.h */
	size_t user_count;
	struct gossip_user_record user[GOSSIP_USER_KEYS];
};

/* Growable buffer owned by the caller; gossip_state_* append to it. */
struct gossip_buf {
	uint8_t *data;
	size_t len;
	size_t cap;
};
void gossip_buf_free(struct gossip_buf *b);

/*
 * Encodes a push-pull message with @count records into @out (appended).
 * Returns 0, -EINVAL for an invalid record, -ENOMEM.
 */
int gossip_state_encode(struct gossip_buf *out, bool join,
			const struct gossip_member_record *records, size_t count);

/*
 * Decodes a push-pull message.  Every record is validated before any
 * callback, so a malformed message delivers nothing; then for each record
 * calls @cb(@ctx, record); the record points into @buf and is valid during
 * the call only.  A non-zero return from @cb stops decoding and is
 * returned.  *@join gets the join flag.  Returns 0, -EBADMSG (reason in @err), or
 * -EPROTONOSUPPORT.  Only a transient msgpack zone is allocated.
 */
int gossip_state_decode(const uint8_t *buf, size_t len, bool *join,
			int (*cb)(void *ctx, const struct gossip_member_record *r),
			void *ctx, char *err, size_t errlen);

/* "ping", "ack", ... for logs; "unknown" otherwise. */
const char *gossip_msg_type_name(enum gossip_msg_type t);

#endif
