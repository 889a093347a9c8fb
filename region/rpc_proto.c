/*
 * region/rpc_proto.c - the region RPC wire format (see the drawing in
 * rpc_proto.h).
 *
 * Why a format of its own and not gossip/proto.c's.  RPC frames travel on
 * the same sealed TCP connections as push-pull, but they are not gossip:
 * they are point to point, many in flight per connection, and carry an
 * opaque payload of up to a megabyte.  The payload is a msgpack bin, never
 * a nested object, so the decoder never walks the caller's arguments: a
 * legitimate frame is about twenty msgpack objects whatever its size.
 *
 * Decoding.  msgpack-c's C unpacker allocates every array and map in its
 * zone as soon as it reads the header, trusting the count in the input.
 * So, as gossip/proto.c does, mp_scan() (lib/mpscan.c) first walks the raw bytes with no
 * allocation: every header and payload must lie inside the buffer, the
 * elements still owed never outnumber the bytes left, nesting stays within
 * SCAN_DEPTH_MAX, and nothing trails the object.  Unlike gossip, it also
 * caps the number of objects at SCAN_OBJECTS_MAX: the input may be a
 * megabyte, and "one object per byte" would still let a hostile peer make
 * the zone some twenty megabytes; with the cap it stays under 50 KiB.
 * Strings and blobs are left pointing into the input, which is what lets
 * rpc_bytes point into the caller's buffer after the zone is freed.
 *
 * Version first.  "t", "id" and "v" are read leniently before anything
 * else is judged: a frame from a version we do not speak is not ours to
 * call malformed, yet its id is exactly what the answer (version_mismatch)
 * needs.  Only then are repeated keys, types and bounds checked.
 *
 * Strictness.  As in gossip, compatibility comes from skipping what we do
 * not know (keys; error codes are kept as text), never from guessing at
 * what we do know.  Encoder and decoder apply one set of checks (the *_ok
 * functions below), so whatever the decoder accepts re-encodes to the same
 * meaning; the fuzz target checks exactly that.
 */
#include "region/rpc_proto.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "lib/bytebuf.h"
#include "lib/mpscan.h"

/* Containers nested deeper than this are refused (our format uses 1). */
#define SCAN_DEPTH_MAX 16

/* msgpack objects in one frame (a valid one has about 20); room for keys
 * that newer versions add. */
#define SCAN_OBJECTS_MAX 1024

/* ------------------------------------------------------------------ */
/* Names                                                               */
/* ------------------------------------------------------------------ */

static const char *const error_names[] = {
	[RPC_E_NONE] = "none",
	[RPC_E_NO_SUCH_METHOD] = "no_such_method",
	[RPC_E_TIMEOUT] = "timeout",
	[RPC_E_VERSION_MISMATCH] = "version_mismatch",
	[RPC_E_UNAVAILABLE] = "unavailable",
	[RPC_E_OVERLOADED] = "overloaded",
	[RPC_E_REMOTE_ERROR] = "remote_error",
	[RPC_E_BAD_REQUEST] = "bad_request",
	[RPC_E_OTHER] = "other",
};

const char *rpc_error_name(enum rpc_error e)
{
	if ((unsigned)e < sizeof(error_names) / sizeof(error_names[0]))
		return error_names[e];
	return "unknown";
}

enum rpc_error rpc_error_parse(const char *s, size_t len)
{
	for (unsigned e = RPC_E_NONE + 1; e < RPC_E_OTHER; e++)
		if (strlen(error_names[e]) == len && memcmp(error_names[e], s, len) == 0)
			return (enum rpc_error)e;
	return RPC_E_OTHER;
}

const char *rpc_type_name(enum rpc_type t)
{
	switch (t) {
	case RPC_T_REQUEST:
		return "request";
	case RPC_T_RESPONSE:
		return "response";
	case RPC_T_CANCEL:
		return "cancel";
	case RPC_T_NONE:
		break;
	}
	return "frame";
}

/* ------------------------------------------------------------------ */
/* Character sets and text                                             */
/* ------------------------------------------------------------------ */

static bool is_lower_digit(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool method_char(char c)
{
	return is_lower_digit(c) || c == '_' || c == '.' || c == '-';
}

static bool region_char(char c)
{
	return is_lower_digit(c) || c == '-';
}

static bool code_char(char c)
{
	return is_lower_digit(c) || c == '_';
}

/* Node names and versions end up in C strings, log lines and JSON: no
 * NUL, space or control byte, as gossip/proto.h requires of names. */
static bool printable_char(char c)
{
	return c >= 0x21 && c <= 0x7e;
}

/*
 * The length of the well-formed UTF-8 character at @s (@n bytes left), or
 * 0 when it is not one: overlong forms, surrogates and code points past
 * U+10FFFF are refused, as RFC 3629 asks.
 */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t need;

	if (c < 0x80)
		return 1;
	if (c < 0xc2)
		return 0;
	if (c < 0xe0) {
		need = 2;
	} else if (c < 0xf0) {
		need = 3;
		if (c == 0xe0)
			lo = 0xa0;
		if (c == 0xed)
			hi = 0x9f;
	} else if (c < 0xf5) {
		need = 4;
		if (c == 0xf0)
			lo = 0x90;
		if (c == 0xf4)
			hi = 0x8f;
	} else {
		return 0;
	}
	if (n < need || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < need; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return need;
}

/* True for the character of @n bytes at @s that a message may not hold:
 * C0 controls but tab and newline, DEL, and C1 controls (U+0080..U+009F,
 * which some terminals obey like ESC). */
static bool text_control(const unsigned char *s, size_t n)
{
	if (n == 1)
		return (s[0] < 0x20 && s[0] != '\t' && s[0] != '\n') || s[0] == 0x7f;
	return n == 2 && s[0] == 0xc2 && s[1] < 0xa0;
}

static bool text_ok(const char *p, size_t len)
{
	const unsigned char *s = (const unsigned char *)p;
	size_t i = 0;

	while (i < len) {
		size_t n = utf8_len(s + i, len - i);

		if (n == 0 || text_control(s + i, n))
			return false;
		i += n;
	}
	return true;
}

size_t rpc_message_clean(char *dst, size_t cap, const char *src, size_t len)
{
	const unsigned char *s = (const unsigned char *)src;
	size_t lim = cap < RPC_MESSAGE_MAX ? cap : RPC_MESSAGE_MAX;
	size_t i = 0, o = 0;

	if (!src)
		return 0;
	while (i < len) {
		size_t n = utf8_len(s + i, len - i);

		if (n > 0 && !text_control(s + i, n)) {
			if (n > lim - o)
				break;
			memcpy(dst + o, s + i, n);
			o += n;
			i += n;
			continue;
		}
		if (o == lim)
			break;
		dst[o++] = '?';
		i += n > 0 ? n : 1;
	}
	return o;
}

/* ------------------------------------------------------------------ */
/* Validation shared by both directions                                */
/* ------------------------------------------------------------------ */

/* A charset check over a whole string: one of the *_char above. */
typedef bool (*char_fn)(char c);

static bool chars_ok(const char *p, size_t len, char_fn ok)
{
	for (size_t i = 0; i < len; i++)
		if (!ok(p[i]))
			return false;
	return true;
}

static bool bytes_ok(struct rpc_bytes b, size_t min, size_t max)
{
	return b.len >= min && b.len <= max && (b.len == 0 || b.ptr != NULL);
}

/* One kind of str field: bounds and charset, and how errors describe it. */
struct str_rule {
	uint32_t min, max;
	char_fn chars;          /* NULL: UTF-8 text (messages) */
	const char *describe;   /* completes "should be ..." */
};

static const struct str_rule rule_method = {
	1, RPC_METHOD_MAX, method_char, "[a-z0-9_.-]"
};
static const struct str_rule rule_node = {
	1, RPC_NODE_MAX, printable_char, "printable ASCII"
};
static const struct str_rule rule_region = {
	1, RPC_REGION_MAX, region_char, "[a-z0-9-]"
};
static const struct str_rule rule_version = {
	1, RPC_NODE_VERSION_MAX, printable_char, "printable ASCII"
};
static const struct str_rule rule_code = {
	1, RPC_CODE_MAX, code_char, "[a-z0-9_]"
};
static const struct str_rule rule_message = {
	0, RPC_MESSAGE_MAX, NULL, "UTF-8 text without control bytes"
};

static bool rule_chars_ok(const struct str_rule *rule, const char *p, size_t len)
{
	return rule->chars ? chars_ok(p, len, rule->chars) : text_ok(p, len);
}

static bool str_ok(struct rpc_bytes b, const struct str_rule *rule)
{
	return bytes_ok(b, rule->min, rule->max) && rule_chars_ok(rule, b.ptr, b.len);
}

bool rpc_method_valid(const char *s, size_t len)
{
	return s != NULL && len <= RPC_METHOD_MAX &&
	       str_ok((struct rpc_bytes){ s, (uint32_t)len }, &rule_method);
}

bool rpc_node_valid(const char *s, size_t max)
{
	size_t n = s ? strlen(s) : 0;

	return n >= 1 && n <= max && chars_ok(s, n, printable_char);
}

static bool deadline_ok(uint64_t ms)
{
	return ms >= 1 && ms <= RPC_DEADLINE_MAX_MS;
}

/* 0, or -EINVAL / -EMSGSIZE as rpc_request_encode() documents. */
static int request_check(const struct rpc_request *q)
{
	if (!bytes_ok(q->args, 0, UINT32_MAX))
		return -EINVAL;
	if (q->id == 0 || !str_ok(q->method, &rule_method) || !deadline_ok(q->deadline_ms) ||
	    !str_ok(q->origin_node, &rule_node) || !str_ok(q->origin_region, &rule_region))
		return -EINVAL;
	return q->args.len > RPC_BODY_MAX ? -EMSGSIZE : 0;
}

static int response_check(const struct rpc_response *s)
{
	if (!str_ok(s->node, &rule_node) || !str_ok(s->node_version, &rule_version))
		return -EINVAL;
	if (s->ok) {
		if (!bytes_ok(s->result, 0, UINT32_MAX))
			return -EINVAL;
		return s->result.len > RPC_BODY_MAX ? -EMSGSIZE : 0;
	}
	if (s->error <= RPC_E_NONE || s->error > RPC_E_OTHER)
		return -EINVAL;
	/* A code given as text must be one this build would decode as
	 * RPC_E_OTHER, or the same frame would mean two things. */
	if (s->error == RPC_E_OTHER &&
	    (!str_ok(s->code, &rule_code) || rpc_error_parse(s->code.ptr, s->code.len) !=
	     RPC_E_OTHER))
		return -EINVAL;
	return str_ok(s->message, &rule_message) ? 0 : -EINVAL;
}

/* ------------------------------------------------------------------ */
/* Encoding                                                            */
/* ------------------------------------------------------------------ */

void rpc_buf_free(struct rpc_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

/* Makes room for @more bytes after b->len; -ENOMEM past RPC_BUF_MAX. */
static int buf_reserve(struct rpc_buf *b, size_t more)
{
	return bytebuf_reserve(&b->data, b->len, &b->cap, more, RPC_BUF_MAX);
}

/* msgpack-c's write callback: 0, or -1 past the bound. */
static int buf_write(void *data, const char *p, size_t n)
{
	struct rpc_buf *b = data;

	return bytebuf_append(&b->data, &b->len, &b->cap, p, n, RPC_BUF_MAX) ? -1 : 0;
}

/*
 * Every msgpack_pack_* returns 0 or the writer's -1.  Runs of calls are
 * chained with || : sequenced left to right, stopping at the first failure.
 */

static int pack_key(msgpack_packer *pk, const char *key)
{
	return msgpack_pack_str_with_body(pk, key, strlen(key));
}

static int pack_kuint(msgpack_packer *pk, const char *key, uint64_t v)
{
	return pack_key(pk, key) || msgpack_pack_uint64(pk, v);
}

static int pack_kstr(msgpack_packer *pk, const char *key, const char *p, size_t len)
{
	return pack_key(pk, key) || msgpack_pack_str(pk, len) ||
	       (len > 0 && msgpack_pack_str_body(pk, p, len));
}

static int pack_kbytes(msgpack_packer *pk, const char *key, struct rpc_bytes b)
{
	return pack_kstr(pk, key, b.ptr, b.len);
}

static int pack_kbin(msgpack_packer *pk, const char *key, struct rpc_bytes b)
{
	return pack_key(pk, key) || msgpack_pack_bin(pk, b.len) ||
	       (b.len > 0 && msgpack_pack_bin_body(pk, b.ptr, b.len));
}

/* Opens a frame: the kind byte, a map of @n pairs, "v", "t", "id". */
static int pack_head(msgpack_packer *pk, struct rpc_buf *out, size_t n, enum rpc_type t,
		     uint64_t id)
{
	const char kind = RPC_FRAME_KIND;

	return buf_write(out, &kind, 1) || msgpack_pack_map(pk, n) ||
	       pack_kuint(pk, "v", RPC_PROTO_VERSION) || pack_kuint(pk, "t", t) ||
	       pack_kuint(pk, "id", id);
}

/*
 * Closes an encoding begun at @start: on failure, or if the frame came out
 * past RPC_PLAIN_MAX (the bounds make that impossible; checked anyway),
 * @out is put back as it was.
 */
static int pack_done(struct rpc_buf *out, size_t start, int failed)
{
	if (!failed && out->len - start <= RPC_PLAIN_MAX)
		return 0;
	out->len = start;
	return failed ? -ENOMEM : -EMSGSIZE;
}

int rpc_request_encode(struct rpc_buf *out, const struct rpc_request *req)
{
	size_t start = out->len;
	msgpack_packer pk;
	int r = req ? request_check(req) : -EINVAL;

	if (r)
		return r;
	/* One allocation for the frame, whatever the size of the args. */
	if (buf_reserve(out, RPC_OVERHEAD_MAX + req->args.len))
		return -ENOMEM;
	msgpack_packer_init(&pk, out, buf_write);
	r = pack_head(&pk, out, 8, RPC_T_REQUEST, req->id) ||
	    pack_kbytes(&pk, "m", req->method) || pack_kbin(&pk, "a", req->args) ||
	    pack_kuint(&pk, "dl", req->deadline_ms) || pack_kbytes(&pk, "on", req->origin_node) ||
	    pack_kbytes(&pk, "or", req->origin_region);
	return pack_done(out, start, r);
}

int rpc_response_encode(struct rpc_buf *out, const struct rpc_response *resp)
{
	size_t start = out->len, n = 6;
	const char *code;
	msgpack_packer pk;
	int r = resp ? response_check(resp) : -EINVAL;

	if (r)
		return r;
	if (buf_reserve(out, RPC_OVERHEAD_MAX + (resp->ok ? resp->result.len : 0)))
		return -ENOMEM;
	if (resp->ok)
		n += 1;
	else
		n += 1 + (resp->message.len > 0) + (resp->retry_after_ms > 0);
	msgpack_packer_init(&pk, out, buf_write);
	r = pack_head(&pk, out, n, RPC_T_RESPONSE, resp->id) || pack_key(&pk, "ok") ||
	    (resp->ok ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk));
	if (!r && resp->ok) {
		r = pack_kbin(&pk, "r", resp->result);
	} else if (!r) {
		code = rpc_error_name(resp->error);
		r = resp->error == RPC_E_OTHER ? pack_kbytes(&pk, "e", resp->code)
					       : pack_kstr(&pk, "e", code, strlen(code));
		if (!r && resp->message.len > 0)
			r = pack_kbytes(&pk, "em", resp->message);
		if (!r && resp->retry_after_ms > 0)
			r = pack_kuint(&pk, "ra", resp->retry_after_ms);
	}
	if (!r)
		r = pack_kbytes(&pk, "n", resp->node) ||
		    pack_kbytes(&pk, "nv", resp->node_version);
	return pack_done(out, start, r);
}

int rpc_cancel_encode(struct rpc_buf *out, uint64_t id)
{
	size_t start = out->len;
	msgpack_packer pk;

	if (id == 0)
		return -EINVAL;
	msgpack_packer_init(&pk, out, buf_write);
	return pack_done(out, start, pack_head(&pk, out, 3, RPC_T_CANCEL, id));
}

/* ------------------------------------------------------------------ */
/* Decoding: errors                                                    */
/* ------------------------------------------------------------------ */

struct dec {
	char *err;
	size_t errlen;
};

__attribute__((format(printf, 3, 4))) static int dec_fail_as(struct dec *d, int code,
							     const char *fmt, ...)
{
	va_list ap;

	if (d->err && d->errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(d->err, d->errlen, fmt, ap);
		va_end(ap);
	}
	return code;
}

#define dec_fail(d, ...) dec_fail_as((d), -EBADMSG, __VA_ARGS__)

/* ------------------------------------------------------------------ */
/* Decoding: the raw pre-scan (lib/mpscan.c)                           */
/* ------------------------------------------------------------------ */

/*
 * Checks that @buf holds exactly one complete msgpack object of at most
 * SCAN_OBJECTS_MAX objects, each header and payload inside the buffer,
 * nested at most SCAN_DEPTH_MAX deep.  Allocates nothing.
 */
static int mp_scan(struct dec *d, const uint8_t *buf, size_t len)
{
	static const struct mpscan_limits lim = {
		.depth_max = SCAN_DEPTH_MAX,
		.objects_max = SCAN_OBJECTS_MAX,
	};
	struct mpscan_fail f;
	int r = mpscan_check(buf, len, &lim, &f);

	if (r != -EBADMSG)
		return r;
	switch (f.why) {
	case MPSCAN_BAD_BYTE:
		/* Counted from 1, as this message always has been. */
		return dec_fail(d, "frame is not msgpack (byte 0x%02x at %zu)", f.byte,
				f.pos + 1);
	case MPSCAN_TOO_MANY:
		return dec_fail(d, "frame holds more than %d msgpack objects", SCAN_OBJECTS_MAX);
	case MPSCAN_TOO_DEEP:
		return dec_fail(d, "frame nested deeper than %d", SCAN_DEPTH_MAX);
	case MPSCAN_TRAILING:
		return dec_fail(d, "frame has %zu trailing byte(s)", f.trailing);
	default:
		return dec_fail(d, "frame truncated");
	}
}

/*
 * Scans, then unpacks @buf into @obj using @zone (initialized here; the
 * caller destroys it whenever this returns 0).
 */
static int mp_unpack(struct dec *d, const uint8_t *buf, size_t len, msgpack_zone *zone,
		     msgpack_object *obj)
{
	msgpack_unpack_return ur;
	size_t off = 0;
	int r = mp_scan(d, buf, len);

	if (r)
		return r;
	/* Bounded by the scan: SCAN_OBJECTS_MAX objects, a few dozen KiB. */
	if (!msgpack_zone_init(zone, 2048))
		return -ENOMEM;
	ur = msgpack_unpack((const char *)buf, len, &off, zone, obj);
	if (ur == MSGPACK_UNPACK_SUCCESS && off == len)
		return 0;
	msgpack_zone_destroy(zone);
	if (ur == MSGPACK_UNPACK_NOMEM_ERROR)
		return -ENOMEM;
	return dec_fail(d, "frame is not msgpack");
}

/* ------------------------------------------------------------------ */
/* Decoding: maps of short keys                                        */
/* ------------------------------------------------------------------ */

enum key {
	K_V, K_T, K_ID,                          /* every frame */
	K_M, K_A, K_DL, K_ON, K_OR,              /* request */
	K_OK, K_R, K_E, K_EM, K_RA, K_N, K_NV,   /* response */
	K__COUNT
};

static const char *const key_names[K__COUNT] = {
	[K_V] = "v",   [K_T] = "t",   [K_ID] = "id", [K_M] = "m",   [K_A] = "a",
	[K_DL] = "dl", [K_ON] = "on", [K_OR] = "or", [K_OK] = "ok", [K_R] = "r",
	[K_E] = "e",   [K_EM] = "em", [K_RA] = "ra", [K_N] = "n",   [K_NV] = "nv",
};

/* The bit of key @k in a mask of known keys. */
#define KB(k) (1u << (k))

/* The known key @k names, or K__COUNT. */
static enum key key_find(const msgpack_object *k)
{
	if (k->type != MSGPACK_OBJECT_STR || k->via.str.size == 0 || k->via.str.size > 2)
		return K__COUNT;
	for (int i = 0; i < K__COUNT; i++)
		if (strlen(key_names[i]) == k->via.str.size &&
		    memcmp(key_names[i], k->via.str.ptr, k->via.str.size) == 0)
			return (enum key)i;
	return K__COUNT;
}

/* The values of the known keys of one map, NULL when absent. */
struct fields {
	const char *what;               /* "request", ... for errors */
	const msgpack_object *v[K__COUNT];
};

/*
 * Collects the values of the keys in @known (a mask of enum key) from map
 * @o.  Other keys are skipped: they come from a newer version, or belong
 * to another frame type.  With @strict a known key given twice is
 * malformed; without, the first one wins.
 */
static int fields_collect(struct dec *d, struct fields *f, const char *what,
			  const msgpack_object *o, uint32_t known, bool strict)
{
	memset(f, 0, sizeof(*f));
	f->what = what;
	for (uint32_t i = 0; i < o->via.map.size; i++) {
		const msgpack_object_kv *kv = &o->via.map.ptr[i];
		enum key k = key_find(&kv->key);

		if (k == K__COUNT || !(known & KB(k)))
			continue;
		if (f->v[k] && strict)
			return dec_fail(d, "%s.%s repeated", what, key_names[k]);
		if (!f->v[k])
			f->v[k] = &kv->val;
	}
	return 0;
}

/*
 * The value of @k, which must be there and of @type; otherwise NULL, the
 * error (naming the field, and the type as @type_name with its article)
 * recorded: the caller returns -EBADMSG.
 */
static const msgpack_object *get_typed(struct dec *d, const struct fields *f, enum key k,
				       msgpack_object_type type, const char *type_name)
{
	const msgpack_object *o = f->v[k];

	if (!o) {
		dec_fail(d, "%s.%s missing", f->what, key_names[k]);
		return NULL;
	}
	if (o->type != type) {
		dec_fail(d, "%s.%s should be %s", f->what, key_names[k], type_name);
		return NULL;
	}
	return o;
}

/* A uint in @min..@max; absent and not @required gives 0. */
static int get_uint(struct dec *d, const struct fields *f, enum key k, bool required,
		    uint64_t min, uint64_t max, uint64_t *out)
{
	const msgpack_object *o;

	*out = 0;
	if (!f->v[k] && !required)
		return 0;
	o = get_typed(d, f, k, MSGPACK_OBJECT_POSITIVE_INTEGER, "a uint");
	if (!o)
		return -EBADMSG;
	if (o->via.u64 < min || o->via.u64 > max)
		return dec_fail(d, "%s.%s %llu out of range (%llu..%llu)", f->what, key_names[k],
				(unsigned long long)o->via.u64, (unsigned long long)min,
				(unsigned long long)max);
	*out = o->via.u64;
	return 0;
}

static int get_u32(struct dec *d, const struct fields *f, enum key k, bool required,
		   uint64_t min, uint64_t max, uint32_t *out)
{
	uint64_t v;
	int r = get_uint(d, f, k, required, min, max < UINT32_MAX ? max : UINT32_MAX, &v);

	*out = (uint32_t)v;
	return r;
}

/* A str obeying @rule; absent and not @required gives an empty one. */
static int get_str(struct dec *d, const struct fields *f, enum key k, bool required,
		   const struct str_rule *rule, struct rpc_bytes *out)
{
	const msgpack_object *o;
	uint32_t n;

	*out = (struct rpc_bytes){ NULL, 0 };
	if (!f->v[k] && !required)
		return 0;
	o = get_typed(d, f, k, MSGPACK_OBJECT_STR, "a str");
	if (!o)
		return -EBADMSG;
	n = o->via.str.size;
	if (n < rule->min)
		return dec_fail(d, "%s.%s is empty", f->what, key_names[k]);
	if (n > rule->max)
		return dec_fail(d, "%s.%s longer than %u bytes", f->what, key_names[k], rule->max);
	if (!rule_chars_ok(rule, o->via.str.ptr, n))
		return dec_fail(d, "%s.%s should be %s", f->what, key_names[k], rule->describe);
	out->ptr = n ? o->via.str.ptr : NULL;
	out->len = n;
	return 0;
}

static int get_bin(struct dec *d, const struct fields *f, enum key k, uint32_t max,
		   struct rpc_bytes *out)
{
	const msgpack_object *o = get_typed(d, f, k, MSGPACK_OBJECT_BIN, "a bin");

	if (!o)
		return -EBADMSG;
	if (o->via.bin.size > max)
		return dec_fail(d, "%s.%s longer than %u bytes", f->what, key_names[k], max);
	/* An empty bin may carry any pointer; normalize it. */
	out->ptr = o->via.bin.size ? o->via.bin.ptr : NULL;
	out->len = o->via.bin.size;
	return 0;
}

static int get_bool(struct dec *d, const struct fields *f, enum key k, bool *out)
{
	const msgpack_object *o = get_typed(d, f, k, MSGPACK_OBJECT_BOOLEAN, "a bool");

	if (!o)
		return -EBADMSG;
	*out = o->via.boolean;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Decoding: frames                                                    */
/* ------------------------------------------------------------------ */

static int decode_request(struct dec *d, const struct fields *f, struct rpc_request *q)
{
	int r = get_str(d, f, K_M, true, &rule_method, &q->method);

	if (!r)
		r = get_bin(d, f, K_A, RPC_BODY_MAX, &q->args);
	if (!r)
		r = get_u32(d, f, K_DL, true, 1, RPC_DEADLINE_MAX_MS, &q->deadline_ms);
	if (!r)
		r = get_str(d, f, K_ON, true, &rule_node, &q->origin_node);
	if (!r)
		r = get_str(d, f, K_OR, true, &rule_region, &q->origin_region);
	return r;
}

static int decode_response(struct dec *d, const struct fields *f, struct rpc_response *s)
{
	static const enum key only_failed[] = { K_E, K_EM, K_RA };
	int r = get_bool(d, f, K_OK, &s->ok);

	if (r)
		return r;
	if (s->ok) {
		/* A response that both succeeded and failed means nothing. */
		for (size_t i = 0; i < sizeof(only_failed) / sizeof(only_failed[0]); i++)
			if (f->v[only_failed[i]])
				return dec_fail(d, "%s.%s given with ok true", f->what,
						key_names[only_failed[i]]);
		r = get_bin(d, f, K_R, RPC_BODY_MAX, &s->result);
	} else {
		if (f->v[K_R])
			return dec_fail(d, "%s.r given with ok false", f->what);
		r = get_str(d, f, K_E, true, &rule_code, &s->code);
		if (!r)
			s->error = rpc_error_parse(s->code.ptr, s->code.len);
		if (!r)
			r = get_str(d, f, K_EM, false, &rule_message, &s->message);
		if (!r)
			r = get_u32(d, f, K_RA, false, 0, UINT32_MAX, &s->retry_after_ms);
	}
	if (!r)
		r = get_str(d, f, K_N, true, &rule_node, &s->node);
	if (!r)
		r = get_str(d, f, K_NV, true, &rule_version, &s->node_version);
	return r;
}

/*
 * Reads "t", "id" and "v" leniently into @out (the first of each, when of
 * the right type), so that even a frame refused later says what it was.
 */
static void header_peek(const msgpack_object *o, struct rpc_frame *out)
{
	struct fields f;
	const msgpack_object *v;

	fields_collect(NULL, &f, "frame", o, KB(K_V) | KB(K_T) | KB(K_ID), false);
	v = f.v[K_T];
	if (v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 >= RPC_T_REQUEST &&
	    v->via.u64 <= RPC_T_CANCEL)
		out->type = (enum rpc_type)v->via.u64;
	v = f.v[K_ID];
	if (v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
		out->have_id = true;
		out->id = v->via.u64;
	}
	v = f.v[K_V];
	if (v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
		out->version = v->via.u64 < UINT32_MAX ? (uint32_t)v->via.u64 : UINT32_MAX;
}

static int decode_frame(struct dec *d, const msgpack_object *o, struct rpc_frame *out)
{
	static const uint32_t type_keys[] = {
		[RPC_T_NONE] = KB(K_V) | KB(K_T) | KB(K_ID),
		[RPC_T_REQUEST] = KB(K_V) | KB(K_T) | KB(K_ID) | KB(K_M) | KB(K_A) | KB(K_DL) |
				  KB(K_ON) | KB(K_OR),
		[RPC_T_RESPONSE] = KB(K_V) | KB(K_T) | KB(K_ID) | KB(K_OK) | KB(K_R) | KB(K_E) |
				   KB(K_EM) | KB(K_RA) | KB(K_N) | KB(K_NV),
		[RPC_T_CANCEL] = KB(K_V) | KB(K_T) | KB(K_ID),
	};
	const char *what;
	struct fields f;
	uint64_t v, t;
	int r;

	if (o->type != MSGPACK_OBJECT_MAP)
		return dec_fail(d, "frame should be a map");
	header_peek(o, out);
	what = rpc_type_name(out->type);

	/* The version before anything else: see the head of this file. */
	fields_collect(d, &f, what, o, KB(K_V), false);
	r = get_uint(d, &f, K_V, true, 0, UINT64_MAX, &v);
	if (r)
		return r;
	if (v < RPC_PROTO_MIN || v > RPC_PROTO_VERSION)
		return dec_fail_as(d, -EPROTONOSUPPORT,
				   "%s.v %llu not supported (this node speaks %d..%d)", what,
				   (unsigned long long)v, RPC_PROTO_MIN, RPC_PROTO_VERSION);

	r = fields_collect(d, &f, what, o, type_keys[out->type], true);
	if (!r)
		r = get_uint(d, &f, K_T, true, 0, UINT64_MAX, &t);
	if (r)
		return r;
	if (out->type == RPC_T_NONE)
		return dec_fail(d, "frame.t %llu is not a known frame type",
				(unsigned long long)t);
	/* Requests and cancels name a call; only a response may say 0. */
	r = get_uint(d, &f, K_ID, true, out->type == RPC_T_RESPONSE ? 0 : 1, UINT64_MAX,
		     &out->id);
	if (r)
		return r;

	switch (out->type) {
	case RPC_T_REQUEST:
		out->u.req.id = out->id;
		return decode_request(d, &f, &out->u.req);
	case RPC_T_RESPONSE:
		out->u.resp.id = out->id;
		return decode_response(d, &f, &out->u.resp);
	case RPC_T_CANCEL:
	case RPC_T_NONE:
		break;
	}
	return 0;
}

int rpc_frame_decode(const uint8_t *buf, size_t len, struct rpc_frame *out, char *err,
		     size_t errlen)
{
	struct dec d = { .err = err, .errlen = errlen };
	msgpack_zone zone;
	msgpack_object obj;
	int r;

	if (err && errlen > 0)
		err[0] = '\0';
	memset(out, 0, sizeof(*out));
	if (!buf || len == 0)
		return dec_fail(&d, "frame is empty");
	if (len > RPC_PLAIN_MAX)
		return dec_fail(&d, "frame longer than %u bytes", RPC_PLAIN_MAX);
	if (buf[0] != RPC_FRAME_KIND)
		return dec_fail(&d, "frame kind 0x%02x is not 'R'", buf[0]);
	r = mp_unpack(&d, buf + 1, len - 1, &zone, &obj);
	if (r)
		return r;
	r = decode_frame(&d, &obj, out);
	msgpack_zone_destroy(&zone);
	return r;
}
