/*
 * gossip/proto.c - the gossip wire format (see the drawing in proto.h).
 *
 * Encoding.  A compound packet is "map { v, m: array [ msg... ] }".  The
 * encoder packs each message on its own into a scratch msgpack_sbuffer,
 * and only then asks whether prefix + array header + body + this message
 * still fits the limit.  The array header grows from 1 to 3 bytes at the
 * 16th message, so the check is made with the header the packet would have
 * after the append.  A message that does not fit is dropped from the
 * scratch buffer and the packet is left exactly as it was, so the caller
 * can send what it has and start another.  The encoder also stops at
 * GOSSIP_PACKET_MSGS_MAX messages: a packet the decoder would refuse is
 * never built.
 *
 * Decoding.  msgpack-c's C unpacker allocates every array and map in its
 * zone as soon as it reads the header, trusting the element count found in
 * the input: five bytes "dd ff ff ff ff" would ask for 96 GiB.  It also
 * reports nesting deeper than its fixed stack as "out of memory".  So
 * before msgpack_unpack() runs, mp_scan() (lib/mpscan.c) walks the raw bytes once, with
 * no allocation: it checks that every header and payload lies inside the
 * buffer, that the elements still owed never outnumber the bytes left
 * (each needs at least one), that nesting stays within SCAN_DEPTH_MAX, and
 * that nothing trails the object.  After that the zone is bounded by a
 * small multiple of the input length, and truncation and trailing bytes
 * get their own clear errors.  The unpacker leaves strings and blobs
 * pointing into the input, which is what lets gossip_bytes point into the
 * caller's buffer after the zone is freed.
 *
 * Strictness.  Compatibility across versions comes from skipping what we
 * do not know (keys, message types), never from guessing at what we do
 * know: a known key with the wrong type, out of range, past its bound, or
 * given twice makes the whole packet malformed, and the error names it.
 * Whatever the decoder accepts, the encoder can re-encode to the same
 * meaning (the fuzzers check this), because both sides apply one set of
 * bounds.
 *
 * Push-pull state is decoded in two passes over the unpacked object: the
 * first validates every record, the second hands them to the callback.  A
 * state that is malformed anywhere is therefore never half-applied.
 */
#include "gossip/proto.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "lib/bytebuf.h"
#include "lib/mpscan.h"

/* Containers nested deeper than this are refused (our formats use 5). */
#define SCAN_DEPTH_MAX 16

/* A gossip_buf never grows past this. */
#define GOSSIP_BUF_MAX (16u * 1024 * 1024)

/* Scratch space for one encoded message; the largest valid one is < 800. */
#define MSG_SCRATCH 2048

/* ------------------------------------------------------------------ */
/* Names                                                               */
/* ------------------------------------------------------------------ */

const char *gossip_msg_type_name(enum gossip_msg_type t)
{
	switch (t) {
	case GOSSIP_MSG_PING:
		return "ping";
	case GOSSIP_MSG_ACK:
		return "ack";
	case GOSSIP_MSG_NACK:
		return "nack";
	case GOSSIP_MSG_PING_REQ:
		return "ping-req";
	case GOSSIP_MSG_SUSPECT:
		return "suspect";
	case GOSSIP_MSG_ALIVE:
		return "alive";
	case GOSSIP_MSG_DEAD:
		return "dead";
	case GOSSIP_MSG_LEAVE:
		return "leave";
	case GOSSIP_MSG_USER:
		return "user";
	}
	return "unknown";
}

/* ------------------------------------------------------------------ */
/* Validation shared by both directions                                */
/* ------------------------------------------------------------------ */

static bool bytes_ok(struct gossip_bytes b, size_t min, size_t max)
{
	return b.len >= min && b.len <= max && (b.len == 0 || b.ptr != NULL);
}

bool gossip_token_valid(const char *s, size_t len, size_t max)
{
	if (len == 0 || len > max)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return false;
	return true;
}

static bool str_ok(struct gossip_bytes b, size_t max)
{
	return b.ptr != NULL && gossip_token_valid(b.ptr, b.len, max);
}

/*
 * True when @t is a well-formed, canonical tag map: rebuilding it pair by
 * pair through gossip_tags_setn() gives the same bytes.  This is exactly
 * what the decoder will accept, so the encoder never emits what it would
 * refuse.
 */
static bool tags_ok(const struct gossip_tags *t)
{
	struct gossip_tags tmp;
	const char *k, *v;
	size_t cursor = 0, n = 0;

	if (t->len > GOSSIP_TAGS_BYTES || t->count > GOSSIP_TAGS_MAX)
		return false;
	gossip_tags_clear(&tmp);
	while (n <= GOSSIP_TAGS_MAX && gossip_tags_next(t, &cursor, &k, &v)) {
		if (gossip_tags_setn(&tmp, k, strlen(k), v, strlen(v)) != 0)
			return false;
		n++;
	}
	return cursor == t->len && n == t->count && gossip_tags_equal(&tmp, t);
}

static bool msg_ok(const struct gossip_msg *m)
{
	switch (m->type) {
	case GOSSIP_MSG_PING:
		return str_ok(m->u.ping.target, GOSSIP_NAME_MAX);
	case GOSSIP_MSG_ACK:
	case GOSSIP_MSG_NACK:
		return true;
	case GOSSIP_MSG_PING_REQ:
		return str_ok(m->u.ping_req.target, GOSSIP_NAME_MAX) &&
		       str_ok(m->u.ping_req.target_addr, GOSSIP_ADDR_MAX);
	case GOSSIP_MSG_SUSPECT:
		return str_ok(m->u.suspect.node, GOSSIP_NAME_MAX) &&
		       str_ok(m->u.suspect.from, GOSSIP_NAME_MAX);
	case GOSSIP_MSG_DEAD:
		return str_ok(m->u.dead.node, GOSSIP_NAME_MAX) &&
		       str_ok(m->u.dead.from, GOSSIP_NAME_MAX);
	case GOSSIP_MSG_ALIVE:
		return str_ok(m->u.alive.node, GOSSIP_NAME_MAX) &&
		       str_ok(m->u.alive.addr, GOSSIP_ADDR_MAX) && tags_ok(&m->u.alive.tags);
	case GOSSIP_MSG_LEAVE:
		return str_ok(m->u.leave.node, GOSSIP_NAME_MAX);
	case GOSSIP_MSG_USER:
		return str_ok(m->u.user.origin, GOSSIP_NAME_MAX) &&
		       str_ok(m->u.user.key, GOSSIP_USER_KEY_MAX) &&
		       bytes_ok(m->u.user.data, 0, GOSSIP_USER_DATA_MAX);
	}
	return false;
}

static bool user_records_ok(const struct gossip_user_record *u, size_t n)
{
	if (n > GOSSIP_USER_KEYS)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!str_ok(u[i].key, GOSSIP_USER_KEY_MAX) ||
		    !bytes_ok(u[i].data, 0, GOSSIP_USER_DATA_MAX))
			return false;
		for (size_t j = 0; j < i; j++)
			if (u[j].key.len == u[i].key.len &&
			    memcmp(u[j].key.ptr, u[i].key.ptr, u[i].key.len) == 0)
				return false;
	}
	return true;
}

static bool record_ok(const struct gossip_member_record *r)
{
	return str_ok(r->node, GOSSIP_NAME_MAX) && str_ok(r->addr, GOSSIP_ADDR_MAX) &&
	       tags_ok(&r->tags) && user_records_ok(r->user, r->user_count);
}

/* ------------------------------------------------------------------ */
/* Packing helpers                                                     */
/* ------------------------------------------------------------------ */

/*
 * Every msgpack_pack_* returns 0 or the writer's -1.  Runs of calls are
 * chained with || : it is sequenced left to right (| is not, and would let
 * the compiler reorder the bytes) and stops at the first failure.
 */

static int pack_str(msgpack_packer *pk, const char *s, size_t len)
{
	return msgpack_pack_str(pk, len) || (len > 0 && msgpack_pack_str_body(pk, s, len));
}

static int pack_bytes(msgpack_packer *pk, struct gossip_bytes b)
{
	return pack_str(pk, b.ptr, b.len);
}

static int pack_bin(msgpack_packer *pk, struct gossip_bytes b)
{
	return msgpack_pack_bin(pk, b.len) ||
	       (b.len > 0 && msgpack_pack_bin_body(pk, b.ptr, b.len));
}

static int pack_key(msgpack_packer *pk, char key)
{
	return pack_str(pk, &key, 1);
}

static int pack_kuint(msgpack_packer *pk, char key, uint64_t v)
{
	return pack_key(pk, key) || msgpack_pack_uint64(pk, v);
}

static int pack_kstr(msgpack_packer *pk, char key, struct gossip_bytes b)
{
	return pack_key(pk, key) || pack_bytes(pk, b);
}

static int pack_kbool(msgpack_packer *pk, char key, bool v)
{
	return pack_key(pk, key) || (v ? msgpack_pack_true(pk) : msgpack_pack_false(pk));
}

static int pack_ktags(msgpack_packer *pk, char key, const struct gossip_tags *t)
{
	const char *k, *v;
	size_t cursor = 0;

	if (pack_key(pk, key) || msgpack_pack_map(pk, t->count))
		return -1;
	while (gossip_tags_next(t, &cursor, &k, &v))
		if (pack_str(pk, k, strlen(k)) || pack_str(pk, v, strlen(v)))
			return -1;
	return 0;
}

/* Packs "n", "i", "d": the node/incarnation/id triple most messages open with. */
static int pack_nid(msgpack_packer *pk, struct gossip_bytes node, uint64_t inc, uint64_t id)
{
	return pack_kstr(pk, 'n', node) || pack_kuint(pk, 'i', inc) || pack_kuint(pk, 'd', id);
}

/* Opens the map of a message of @n keys with its "t". */
static int pack_head(msgpack_packer *pk, size_t n, enum gossip_msg_type t)
{
	return msgpack_pack_map(pk, n) || pack_kuint(pk, 't', t);
}

/* Packs @m, already validated, as one map.  0, or non-zero from the writer. */
static int pack_msg(msgpack_packer *pk, const struct gossip_msg *m)
{
	switch (m->type) {
	case GOSSIP_MSG_PING:
		return pack_head(pk, 3, m->type) || pack_kuint(pk, 's', m->u.ping.seq) ||
		       pack_kstr(pk, 'n', m->u.ping.target);
	case GOSSIP_MSG_ACK:
		return pack_head(pk, 2, m->type) || pack_kuint(pk, 's', m->u.ack.seq);
	case GOSSIP_MSG_NACK:
		return pack_head(pk, 2, m->type) || pack_kuint(pk, 's', m->u.nack.seq);
	case GOSSIP_MSG_PING_REQ:
		return pack_head(pk, 5, m->type) || pack_kuint(pk, 's', m->u.ping_req.seq) ||
		       pack_kstr(pk, 'n', m->u.ping_req.target) ||
		       pack_kstr(pk, 'a', m->u.ping_req.target_addr) ||
		       pack_kbool(pk, 'k', m->u.ping_req.want_nack);
	case GOSSIP_MSG_SUSPECT:
		return pack_head(pk, 5, m->type) ||
		       pack_nid(pk, m->u.suspect.node, m->u.suspect.incarnation, m->u.suspect.id) ||
		       pack_kstr(pk, 'f', m->u.suspect.from);
	case GOSSIP_MSG_DEAD:
		return pack_head(pk, 5, m->type) ||
		       pack_nid(pk, m->u.dead.node, m->u.dead.incarnation, m->u.dead.id) ||
		       pack_kstr(pk, 'f', m->u.dead.from);
	case GOSSIP_MSG_ALIVE:
		return pack_head(pk, 6, m->type) ||
		       pack_nid(pk, m->u.alive.node, m->u.alive.incarnation, m->u.alive.id) ||
		       pack_kstr(pk, 'a', m->u.alive.addr) ||
		       pack_ktags(pk, 'g', &m->u.alive.tags);
	case GOSSIP_MSG_LEAVE:
		return pack_head(pk, 4, m->type) ||
		       pack_nid(pk, m->u.leave.node, m->u.leave.incarnation, m->u.leave.id);
	case GOSSIP_MSG_USER:
		/* "d" came later (a restarted process must not inherit the old
		 * one's data); left out when 0, so that such a message has the
		 * bytes it always had. */
		return pack_head(pk, m->u.user.id ? 6 : 5, m->type) ||
		       pack_kstr(pk, 'n', m->u.user.origin) ||
		       pack_kstr(pk, 'k', m->u.user.key) ||
		       pack_kuint(pk, 'r', m->u.user.version) || pack_key(pk, 'b') ||
		       pack_bin(pk, m->u.user.data) ||
		       (m->u.user.id && pack_kuint(pk, 'd', m->u.user.id));
	}
	return -1;
}

/* A msgpack writer into a fixed array; fails instead of overflowing. */
struct fixed_writer {
	uint8_t *p;
	size_t len;
	size_t cap;
};

static int fixed_write(void *data, const char *buf, size_t len)
{
	struct fixed_writer *w = data;

	if (len > w->cap - w->len)
		return -1;
	memcpy(w->p + w->len, buf, len);
	w->len += len;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Encoder                                                             */
/* ------------------------------------------------------------------ */

struct gossip_encoder {
	size_t limit;                  /* packets never exceed this */
	size_t count;                  /* messages in body */
	size_t prefix_len;             /* map header, "v", version, "m" */
	uint8_t prefix[16];
	msgpack_sbuffer scratch;       /* one message being tried */
	size_t body_len;
	uint8_t body[GOSSIP_PACKET_MAX];   /* the messages, concatenated */
	uint8_t out[GOSSIP_PACKET_MAX];    /* the finished packet */
};

/* Bytes of the msgpack array header for @n elements. */
static size_t array_header_len(size_t n)
{
	return n <= 15 ? 1 : n <= 0xffff ? 3 : 5;
}

struct gossip_encoder *gossip_encoder_new(size_t limit)
{
	struct gossip_encoder *e = calloc(1, sizeof(*e));
	struct fixed_writer w;
	msgpack_packer pk;

	if (!e)
		return NULL;
	e->limit = limit < GOSSIP_PACKET_MAX ? limit : GOSSIP_PACKET_MAX;

	/* The prefix never changes: pack it once. */
	w = (struct fixed_writer){ .p = e->prefix, .cap = sizeof(e->prefix) };
	msgpack_packer_init(&pk, &w, fixed_write);
	if (msgpack_pack_map(&pk, 2) || pack_key(&pk, 'v') ||
	    msgpack_pack_uint32(&pk, GOSSIP_PROTO_VERSION) || pack_key(&pk, 'm')) {
		free(e);
		return NULL;
	}
	e->prefix_len = w.len;

	/* Preallocated so that adding a valid message never allocates. */
	msgpack_sbuffer_init(&e->scratch);
	e->scratch.data = malloc(MSG_SCRATCH);
	if (!e->scratch.data) {
		free(e);
		return NULL;
	}
	e->scratch.alloc = MSG_SCRATCH;
	return e;
}

void gossip_encoder_delete(struct gossip_encoder *e)
{
	if (!e)
		return;
	msgpack_sbuffer_destroy(&e->scratch);
	free(e);
}

void gossip_encoder_reset(struct gossip_encoder *e)
{
	e->count = 0;
	e->body_len = 0;
}

int gossip_encoder_add(struct gossip_encoder *e, const struct gossip_msg *m)
{
	msgpack_packer pk;
	size_t total;

	if (!m || !msg_ok(m))
		return -EINVAL;
	if (e->count >= GOSSIP_PACKET_MSGS_MAX)
		return -EMSGSIZE;

	msgpack_sbuffer_clear(&e->scratch);
	msgpack_packer_init(&pk, &e->scratch, msgpack_sbuffer_write);
	if (pack_msg(&pk, m) != 0)
		return -ENOMEM;

	total = e->prefix_len + array_header_len(e->count + 1) + e->body_len + e->scratch.size;
	if (total > e->limit)
		return -EMSGSIZE;
	memcpy(e->body + e->body_len, e->scratch.data, e->scratch.size);
	e->body_len += e->scratch.size;
	e->count++;
	return 0;
}

size_t gossip_encoder_count(const struct gossip_encoder *e)
{
	return e->count;
}

int gossip_encoder_finish(struct gossip_encoder *e, const uint8_t **buf, size_t *len)
{
	struct fixed_writer w = { .p = e->out, .cap = sizeof(e->out) };
	msgpack_packer pk;

	if (e->count == 0)
		return -ENODATA;
	memcpy(e->out, e->prefix, e->prefix_len);
	w.len = e->prefix_len;
	msgpack_packer_init(&pk, &w, fixed_write);
	/* Cannot fail: gossip_encoder_add() checked the total against limit. */
	if (msgpack_pack_array(&pk, e->count) != 0 ||
	    fixed_write(&w, (const char *)e->body, e->body_len) != 0)
		return -EMSGSIZE;
	*buf = e->out;
	*len = w.len;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Decoding: errors                                                    */
/* ------------------------------------------------------------------ */

struct dec {
	char *err;
	size_t errlen;
};

__attribute__((format(printf, 2, 3))) static int dec_fail(struct dec *d, const char *fmt, ...)
{
	va_list ap;

	if (d->err && d->errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(d->err, d->errlen, fmt, ap);
		va_end(ap);
	}
	return -EBADMSG;
}

/* ------------------------------------------------------------------ */
/* Decoding: the raw pre-scan (lib/mpscan.c)                           */
/* ------------------------------------------------------------------ */

/*
 * Checks that @buf holds exactly one complete msgpack object whose element
 * counts are backed by bytes and whose nesting is bounded.  @what names
 * the object in errors ("packet", "state").  Allocates nothing.
 */
static int mp_scan(struct dec *d, const uint8_t *buf, size_t len, const char *what)
{
	static const struct mpscan_limits lim = { .depth_max = SCAN_DEPTH_MAX };
	struct mpscan_fail f;
	int r = mpscan_check(buf, len, &lim, &f);

	if (r != -EBADMSG)
		return r;
	switch (f.why) {
	case MPSCAN_BAD_BYTE:
		return dec_fail(d, "%s is not msgpack (byte 0x%02x at %zu)", what, f.byte, f.pos);
	case MPSCAN_TOO_DEEP:
		return dec_fail(d, "%s nested deeper than %d", what, SCAN_DEPTH_MAX);
	case MPSCAN_TRAILING:
		return dec_fail(d, "%s has %zu trailing byte(s)", what, f.trailing);
	default:
		return dec_fail(d, "%s truncated", what);
	}
}

/*
 * Scans, then unpacks @buf into @obj using @zone (initialized here; the
 * caller destroys it whenever this returns 0).
 */
static int mp_unpack(struct dec *d, const uint8_t *buf, size_t len, const char *what,
		     msgpack_zone *zone, msgpack_object *obj)
{
	msgpack_unpack_return ur;
	size_t off = 0;
	int r;

	if (!buf)
		len = 0;
	r = mp_scan(d, buf, len, what);
	if (r)
		return r;
	/* Bounded by the scan: at most one object per input byte. */
	if (!msgpack_zone_init(zone, len < 1024 ? 1024 : MSGPACK_ZONE_CHUNK_SIZE))
		return -ENOMEM;
	ur = msgpack_unpack((const char *)buf, len, &off, zone, obj);
	if (ur == MSGPACK_UNPACK_SUCCESS && off == len)
		return 0;
	msgpack_zone_destroy(zone);
	if (ur == MSGPACK_UNPACK_NOMEM_ERROR)
		return -ENOMEM;
	return dec_fail(d, "%s is not msgpack", what);
}

/* ------------------------------------------------------------------ */
/* Decoding: maps of one-letter keys                                   */
/* ------------------------------------------------------------------ */

/* The value of each known one-letter key of one map, NULL when absent. */
struct fields {
	const char *what;               /* "ping", "member", ... for errors */
	const msgpack_object *v[26];
};

static bool key_letter(const msgpack_object *k, char *c)
{
	if (k->type != MSGPACK_OBJECT_STR || k->via.str.size != 1)
		return false;
	*c = k->via.str.ptr[0];
	return *c >= 'a' && *c <= 'z';
}

/*
 * Collects the values of the keys listed in @known from map @o (which the
 * caller has checked is a map).  Other keys are skipped: they come from a
 * newer version.  A known key given twice is malformed.
 */
static int fields_collect(struct dec *d, struct fields *f, const char *what,
			  const msgpack_object *o, const char *known)
{
	memset(f, 0, sizeof(*f));
	f->what = what;
	for (uint32_t i = 0; i < o->via.map.size; i++) {
		const msgpack_object_kv *kv = &o->via.map.ptr[i];
		char c;

		if (!key_letter(&kv->key, &c) || !strchr(known, c))
			continue;
		if (f->v[c - 'a'])
			return dec_fail(d, "%s.%c repeated", what, c);
		f->v[c - 'a'] = &kv->val;
	}
	return 0;
}

static const msgpack_object *field(const struct fields *f, char key)
{
	return f->v[key - 'a'];
}

/*
 * The value of @key in @f, which must be there and of @type; otherwise
 * NULL, the error (naming the field, and the type as @type_name, article
 * included: "a str", "an array") recorded: the caller returns -EBADMSG.
 */
static const msgpack_object *get_typed(struct dec *d, const struct fields *f, char key,
				       msgpack_object_type type, const char *type_name)
{
	const msgpack_object *o = field(f, key);

	if (!o) {
		dec_fail(d, "%s.%c missing", f->what, key);
		return NULL;
	}
	if (o->type != type) {
		dec_fail(d, "%s.%c should be %s", f->what, key, type_name);
		return NULL;
	}
	return o;
}

static int get_uint(struct dec *d, const struct fields *f, char key, bool required, uint64_t max,
		    uint64_t *out)
{
	const msgpack_object *o;

	*out = 0;
	if (!field(f, key) && !required)
		return 0;
	o = get_typed(d, f, key, MSGPACK_OBJECT_POSITIVE_INTEGER, "a uint");
	if (!o)
		return -EBADMSG;
	if (o->via.u64 > max)
		return dec_fail(d, "%s.%c out of range", f->what, key);
	*out = o->via.u64;
	return 0;
}

static int get_u32(struct dec *d, const struct fields *f, char key, uint32_t *out)
{
	uint64_t v;
	int r = get_uint(d, f, key, true, UINT32_MAX, &v);

	*out = (uint32_t)v;
	return r;
}

static int get_bool(struct dec *d, const struct fields *f, char key, bool *out)
{
	const msgpack_object *o = get_typed(d, f, key, MSGPACK_OBJECT_BOOLEAN, "a bool");

	if (!o)
		return -EBADMSG;
	*out = o->via.boolean;
	return 0;
}

static int get_str(struct dec *d, const struct fields *f, char key, uint32_t max,
		   struct gossip_bytes *out)
{
	const msgpack_object *o = get_typed(d, f, key, MSGPACK_OBJECT_STR, "a str");

	if (!o)
		return -EBADMSG;
	if (o->via.str.size == 0)
		return dec_fail(d, "%s.%c is empty", f->what, key);
	if (o->via.str.size > max)
		return dec_fail(d, "%s.%c longer than %u bytes", f->what, key, max);
	/* Length checked above: only the character set can fail here. */
	if (!gossip_token_valid(o->via.str.ptr, o->via.str.size, max))
		return dec_fail(d, "%s.%c should be printable ASCII", f->what, key);
	out->ptr = o->via.str.ptr;
	out->len = o->via.str.size;
	return 0;
}

static int get_bin(struct dec *d, const struct fields *f, char key, uint32_t max,
		   struct gossip_bytes *out)
{
	const msgpack_object *o = get_typed(d, f, key, MSGPACK_OBJECT_BIN, "a bin");

	if (!o)
		return -EBADMSG;
	if (o->via.bin.size > max)
		return dec_fail(d, "%s.%c longer than %u bytes", f->what, key, max);
	/* An empty bin may carry any pointer; normalize it. */
	out->ptr = o->via.bin.size ? o->via.bin.ptr : NULL;
	out->len = o->via.bin.size;
	return 0;
}

static int get_tags(struct dec *d, const struct fields *f, char key, struct gossip_tags *t)
{
	const msgpack_object *o;

	gossip_tags_clear(t);
	o = get_typed(d, f, key, MSGPACK_OBJECT_MAP, "a map");
	if (!o)
		return -EBADMSG;
	if (o->via.map.size > GOSSIP_TAGS_MAX)
		return dec_fail(d, "%s.%c has more than %d tags", f->what, key, GOSSIP_TAGS_MAX);
	for (uint32_t i = 0; i < o->via.map.size; i++) {
		const msgpack_object_kv *kv = &o->via.map.ptr[i];
		unsigned count = t->count;
		int r;

		if (kv->key.type != MSGPACK_OBJECT_STR || kv->val.type != MSGPACK_OBJECT_STR)
			return dec_fail(d, "%s.%c should map str to str", f->what, key);
		r = gossip_tags_setn(t, kv->key.via.str.ptr, kv->key.via.str.size,
				     kv->val.via.str.ptr, kv->val.via.str.size);
		if (r == -ENOSPC)
			return dec_fail(d, "%s.%c longer than %d bytes", f->what, key,
					GOSSIP_TAGS_BYTES);
		if (r)
			return dec_fail(d, "%s.%c has a bad tag key or value", f->what, key);
		if (t->count == count)
			return dec_fail(d, "%s.%c repeats a tag", f->what, key);
	}
	return 0;
}

/* "n", "i", "d" (optional, 0 when absent): the node triple. */
static int get_nid(struct dec *d, const struct fields *f, struct gossip_bytes *node, uint64_t *inc,
		   uint64_t *id)
{
	int r = get_str(d, f, 'n', GOSSIP_NAME_MAX, node);

	if (!r)
		r = get_uint(d, f, 'i', true, UINT64_MAX, inc);
	if (!r)
		r = get_uint(d, f, 'd', false, UINT64_MAX, id);
	return r;
}

/* ------------------------------------------------------------------ */
/* Decoding: packets                                                   */
/* ------------------------------------------------------------------ */

/* Keys each message type knows, "t" included. */
static const char *msg_keys(enum gossip_msg_type t)
{
	switch (t) {
	case GOSSIP_MSG_PING:
		return "tsn";
	case GOSSIP_MSG_ACK:
	case GOSSIP_MSG_NACK:
		return "ts";
	case GOSSIP_MSG_PING_REQ:
		return "tsnak";
	case GOSSIP_MSG_SUSPECT:
	case GOSSIP_MSG_DEAD:
		return "tnidf";
	case GOSSIP_MSG_ALIVE:
		return "tnidag";
	case GOSSIP_MSG_LEAVE:
		return "tnid";
	case GOSSIP_MSG_USER:
		return "tnkrbd";
	}
	return NULL;
}

/*
 * Decodes message @i of the packet into @m.  Sets *@skip for a message of
 * a type this version does not know.
 */
static int decode_msg(struct dec *d, const msgpack_object *o, size_t i, struct gossip_msg *m,
		      bool *skip)
{
	struct fields f;
	const char *keys, *what;
	uint64_t t;
	int r;

	*skip = false;
	if (o->type != MSGPACK_OBJECT_MAP)
		return dec_fail(d, "packet.m[%zu] should be a map", i);
	r = fields_collect(d, &f, "msg", o, "t");
	if (!r)
		r = get_uint(d, &f, 't', true, UINT64_MAX, &t);
	if (r)
		return r;
	keys = t <= GOSSIP_MSG_USER ? msg_keys((enum gossip_msg_type)t) : NULL;
	if (!keys) {
		*skip = true;
		return 0;
	}

	memset(m, 0, sizeof(*m));
	m->type = (enum gossip_msg_type)t;
	what = gossip_msg_type_name(m->type);
	r = fields_collect(d, &f, what, o, keys);
	if (r)
		return r;

	switch (m->type) {
	case GOSSIP_MSG_PING:
		r = get_u32(d, &f, 's', &m->u.ping.seq);
		if (!r)
			r = get_str(d, &f, 'n', GOSSIP_NAME_MAX, &m->u.ping.target);
		break;
	case GOSSIP_MSG_ACK:
		r = get_u32(d, &f, 's', &m->u.ack.seq);
		break;
	case GOSSIP_MSG_NACK:
		r = get_u32(d, &f, 's', &m->u.nack.seq);
		break;
	case GOSSIP_MSG_PING_REQ:
		r = get_u32(d, &f, 's', &m->u.ping_req.seq);
		if (!r)
			r = get_str(d, &f, 'n', GOSSIP_NAME_MAX, &m->u.ping_req.target);
		if (!r)
			r = get_str(d, &f, 'a', GOSSIP_ADDR_MAX, &m->u.ping_req.target_addr);
		if (!r)
			r = get_bool(d, &f, 'k', &m->u.ping_req.want_nack);
		break;
	case GOSSIP_MSG_SUSPECT:
		r = get_nid(d, &f, &m->u.suspect.node, &m->u.suspect.incarnation,
			    &m->u.suspect.id);
		if (!r)
			r = get_str(d, &f, 'f', GOSSIP_NAME_MAX, &m->u.suspect.from);
		break;
	case GOSSIP_MSG_DEAD:
		r = get_nid(d, &f, &m->u.dead.node, &m->u.dead.incarnation, &m->u.dead.id);
		if (!r)
			r = get_str(d, &f, 'f', GOSSIP_NAME_MAX, &m->u.dead.from);
		break;
	case GOSSIP_MSG_ALIVE:
		r = get_nid(d, &f, &m->u.alive.node, &m->u.alive.incarnation, &m->u.alive.id);
		if (!r)
			r = get_str(d, &f, 'a', GOSSIP_ADDR_MAX, &m->u.alive.addr);
		if (!r)
			r = get_tags(d, &f, 'g', &m->u.alive.tags);
		break;
	case GOSSIP_MSG_LEAVE:
		r = get_nid(d, &f, &m->u.leave.node, &m->u.leave.incarnation, &m->u.leave.id);
		break;
	case GOSSIP_MSG_USER:
		r = get_str(d, &f, 'n', GOSSIP_NAME_MAX, &m->u.user.origin);
		if (!r)
			r = get_str(d, &f, 'k', GOSSIP_USER_KEY_MAX, &m->u.user.key);
		if (!r)
			r = get_uint(d, &f, 'r', true, UINT64_MAX, &m->u.user.version);
		if (!r)
			r = get_bin(d, &f, 'b', GOSSIP_USER_DATA_MAX, &m->u.user.data);
		if (!r)
			r = get_uint(d, &f, 'd', false, UINT64_MAX, &m->u.user.id);
		break;
	}
	return r;
}

/* Reads "v" from @f and checks it against GOSSIP_PROTO_MIN. */
static int get_version(struct dec *d, const struct fields *f, uint32_t *v)
{
	int r = get_u32(d, f, 'v', v);

	if (r)
		return r;
	if (*v < GOSSIP_PROTO_MIN) {
		dec_fail(d, "%s.v %u is older than %d", f->what, *v, GOSSIP_PROTO_MIN);
		return -EPROTONOSUPPORT;
	}
	return 0;
}

static int decode_packet(struct dec *d, const msgpack_object *o, struct gossip_packet *out)
{
	const msgpack_object *m;
	struct fields f;
	int r;

	if (o->type != MSGPACK_OBJECT_MAP)
		return dec_fail(d, "packet should be a map");
	r = fields_collect(d, &f, "packet", o, "vm");
	if (!r)
		r = get_version(d, &f, &out->version);
	if (r)
		return r;
	m = get_typed(d, &f, 'm', MSGPACK_OBJECT_ARRAY, "an array");
	if (!m)
		return -EBADMSG;
	if (m->via.array.size == 0)
		return dec_fail(d, "packet.m is empty");
	if (m->via.array.size > GOSSIP_PACKET_MSGS_MAX)
		return dec_fail(d, "packet.m has more than %d messages", GOSSIP_PACKET_MSGS_MAX);
	for (uint32_t i = 0; i < m->via.array.size; i++) {
		bool skip;

		r = decode_msg(d, &m->via.array.ptr[i], i, &out->msgs[out->count], &skip);
		if (r)
			return r;
		if (skip)
			out->skipped++;
		else
			out->count++;
	}
	return 0;
}

int gossip_packet_decode(const uint8_t *buf, size_t len, struct gossip_packet *out, char *err,
			 size_t errlen)
{
	struct dec d = { .err = err, .errlen = errlen };
	msgpack_zone zone;
	msgpack_object obj;
	int r;

	if (err && errlen > 0)
		err[0] = '\0';
	out->version = 0;
	out->count = 0;
	out->skipped = 0;
	r = mp_unpack(&d, buf, len, "packet", &zone, &obj);
	if (r)
		return r;
	r = decode_packet(&d, &obj, out);
	msgpack_zone_destroy(&zone);
	if (r) {
		out->count = 0;
		out->skipped = 0;
	}
	return r;
}

/* ------------------------------------------------------------------ */
/* Push-pull state                                                     */
/* ------------------------------------------------------------------ */

void gossip_buf_free(struct gossip_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

/* msgpack-c's write callback: 0, or -1 past GOSSIP_BUF_MAX. */
static int buf_write(void *data, const char *p, size_t n)
{
	struct gossip_buf *b = data;

	return bytebuf_append(&b->data, &b->len, &b->cap, p, n, GOSSIP_BUF_MAX) ? -1 : 0;
}

static int pack_record(msgpack_packer *pk, const struct gossip_member_record *rec)
{
	if (msgpack_pack_map(pk, 7) || pack_nid(pk, rec->node, rec->incarnation, rec->id) ||
	    pack_kstr(pk, 'a', rec->addr) || pack_ktags(pk, 'g', &rec->tags) ||
	    pack_kuint(pk, 's', rec->status) || pack_key(pk, 'u') ||
	    msgpack_pack_array(pk, rec->user_count))
		return -1;
	for (size_t i = 0; i < rec->user_count; i++) {
		const struct gossip_user_record *u = &rec->user[i];

		if (msgpack_pack_map(pk, 3) || pack_kstr(pk, 'k', u->key) ||
		    pack_kuint(pk, 'r', u->version) || pack_key(pk, 'b') || pack_bin(pk, u->data))
			return -1;
	}
	return 0;
}

int gossip_state_encode(struct gossip_buf *out, bool join,
			const struct gossip_member_record *records, size_t count)
{
	size_t start = out->len;
	msgpack_packer pk;
	int r;

	if (count > GOSSIP_STATE_MEMBERS_MAX || (count > 0 && !records))
		return -EINVAL;
	for (size_t i = 0; i < count; i++)
		if (!record_ok(&records[i]))
			return -EINVAL;

	msgpack_packer_init(&pk, out, buf_write);
	r = msgpack_pack_map(&pk, 3) || pack_key(&pk, 'v') ||
	    msgpack_pack_uint32(&pk, GOSSIP_PROTO_VERSION) || pack_kbool(&pk, 'j', join) ||
	    pack_key(&pk, 'm') || msgpack_pack_array(&pk, count);
	for (size_t i = 0; i < count && r == 0; i++)
		r = pack_record(&pk, &records[i]);
	if (r) {
		out->len = start;   /* nothing half-appended */
		return -ENOMEM;
	}
	return 0;
}

static int decode_user_records(struct dec *d, const struct fields *mf,
			       struct gossip_member_record *rec)
{
	const msgpack_object *u = get_typed(d, mf, 'u', MSGPACK_OBJECT_ARRAY, "an array");

	if (!u)
		return -EBADMSG;
	if (u->via.array.size > GOSSIP_USER_KEYS)
		return dec_fail(d, "member.u has more than %d records", GOSSIP_USER_KEYS);
	for (uint32_t i = 0; i < u->via.array.size; i++) {
		const msgpack_object *o = &u->via.array.ptr[i];
		struct gossip_user_record *ur = &rec->user[i];
		struct fields f;
		int r;

		if (o->type != MSGPACK_OBJECT_MAP)
			return dec_fail(d, "member.u[%u] should be a map", i);
		r = fields_collect(d, &f, "member.u", o, "krb");
		if (!r)
			r = get_str(d, &f, 'k', GOSSIP_USER_KEY_MAX, &ur->key);
		if (!r)
			r = get_uint(d, &f, 'r', true, UINT64_MAX, &ur->version);
		if (!r)
			r = get_bin(d, &f, 'b', GOSSIP_USER_DATA_MAX, &ur->data);
		if (r)
			return r;
		for (uint32_t j = 0; j < i; j++)
			if (rec->user[j].key.len == ur->key.len &&
			    memcmp(rec->user[j].key.ptr, ur->key.ptr, ur->key.len) == 0)
				return dec_fail(d, "member.u repeats key %.*s", (int)ur->key.len,
						ur->key.ptr);
		rec->user_count = i + 1;
	}
	return 0;
}

static int decode_record(struct dec *d, const msgpack_object *o, uint32_t i,
			 struct gossip_member_record *rec)
{
	struct fields f;
	int r;

	memset(rec, 0, sizeof(*rec));
	if (o->type != MSGPACK_OBJECT_MAP)
		return dec_fail(d, "state.m[%u] should be a map", i);
	r = fields_collect(d, &f, "member", o, "nidagsu");
	if (!r)
		r = get_nid(d, &f, &rec->node, &rec->incarnation, &rec->id);
	if (!r)
		r = get_str(d, &f, 'a', GOSSIP_ADDR_MAX, &rec->addr);
	if (!r)
		r = get_tags(d, &f, 'g', &rec->tags);
	if (!r)
		r = get_u32(d, &f, 's', &rec->status);
	if (!r)
		r = decode_user_records(d, &f, rec);
	return r;
}

static int decode_state(struct dec *d, const msgpack_object *o, bool *join,
			int (*cb)(void *ctx, const struct gossip_member_record *r), void *ctx)
{
	struct gossip_member_record rec;
	const msgpack_object *m;
	struct fields f;
	uint32_t version;
	bool j = false;
	int r;

	if (o->type != MSGPACK_OBJECT_MAP)
		return dec_fail(d, "state should be a map");
	r = fields_collect(d, &f, "state", o, "vjm");
	if (!r)
		r = get_version(d, &f, &version);
	if (!r)
		r = get_bool(d, &f, 'j', &j);
	if (r)
		return r;
	m = get_typed(d, &f, 'm', MSGPACK_OBJECT_ARRAY, "an array");
	if (!m)
		return -EBADMSG;
	if (m->via.array.size > GOSSIP_STATE_MEMBERS_MAX)
		return dec_fail(d, "state.m has more than %d members", GOSSIP_STATE_MEMBERS_MAX);

	/* Pass 1: validate everything, so that a bad state delivers nothing. */
	for (uint32_t i = 0; i < m->via.array.size; i++) {
		r = decode_record(d, &m->via.array.ptr[i], i, &rec);
		if (r)
			return r;
	}
	if (join)
		*join = j;
	/* Pass 2: deliver. */
	for (uint32_t i = 0; i < m->via.array.size; i++) {
		r = decode_record(d, &m->via.array.ptr[i], i, &rec);
		if (!r && cb)
			r = cb(ctx, &rec);
		if (r)
			return r;
	}
	return 0;
}

int gossip_state_decode(const uint8_t *buf, size_t len, bool *join,
			int (*cb)(void *ctx, const struct gossip_member_record *r), void *ctx,
			char *err, size_t errlen)
{
	struct dec d = { .err = err, .errlen = errlen };
	msgpack_zone zone;
	msgpack_object obj;
	int r;

	if (err && errlen > 0)
		err[0] = '\0';
	r = mp_unpack(&d, buf, len, "state", &zone, &obj);
	if (r)
		return r;
	r = decode_state(&d, &obj, join, cb, ctx);
	msgpack_zone_destroy(&zone);
	return r;
}
