/*
 * region/rpc_proto.h - the region RPC wire format: what a request, a
 * response and a cancel look like inside a sealed TCP frame.
 *
 * Pure: no I/O, no clock, no global state; msgpack-c is seen only by
 * rpc_proto.c.  Framing and sealing are the transport's (gossip/transport.h:
 * [u32 BE length][sealed payload]); what a call means (targets, handlers,
 * deadlines, retries) is the RPC layer's above.  The sealed plaintext of an
 * RPC frame is the kind byte 'R' followed by exactly one msgpack map:
 *
 *   +----+--------------------------------------------------------------+
 *   |'R' | map {                                                        |
 *   |0x52|   "v":  uint  protocol version of the sender                 |
 *   |    |   "t":  uint  1 request, 2 response, 3 cancel                |
 *   |    |   "id": uint  request id, chosen by the caller (u64)         |
 *   |    |   ...   the type's own keys, below                           |
 *   |    | }                                                            |
 *   +----+--------------------------------------------------------------+
 *
 *   1 request   "m"  method:str     1..64 bytes of [a-z0-9_.-]
 *               "a"  args:bin       msgpack of the arguments, opaque
 *                                   here; 0..RPC_BODY_MAX bytes
 *               "dl" deadline:uint  milliseconds left, 1..RPC_DEADLINE_MAX_MS
 *               "on" origin node:str    (printable ASCII, 1..64 bytes)
 *               "or" origin region:str  (1..32 bytes of [a-z0-9-])
 *   2 response  "ok" bool
 *               "r"  result:bin     when ok (required), 0..RPC_BODY_MAX
 *               "e"  error:str      when !ok (required): 1..32 bytes of
 *                                   [a-z0-9_]; see enum rpc_error
 *               "em" message:str    when !ok, optional: UTF-8 text,
 *                                   0..RPC_MESSAGE_MAX bytes, no control
 *                                   byte but tab and newline
 *               "ra" retry-after:uint  when !ok, optional: milliseconds
 *                                   (with unavailable / overloaded)
 *               "n"  node:str       the answering node (printable, 1..64)
 *               "nv" version:str    its software version (printable, 1..32)
 *   3 cancel    (nothing more: the caller gave up on request "id")
 *
 * Multiplexing.  Many calls share one persistent connection; "id" pairs a
 * response (or a cancel) with its request.  Ids are the caller's, unique
 * among its calls in flight on that connection.  Id 0 is reserved: a
 * request or cancel may not use it, and a response with id 0 answers a
 * frame whose id could not be read (bad_request).
 *
 * Deadlines are relative ("dl" = milliseconds left when sent), so the two
 * clocks never have to agree: the receiver's deadline is its own receipt
 * time plus "dl".  Transit time is not subtracted; callers keep their own
 * deadline as well.
 *
 * Compatibility rules (mixed versions meet during every rolling deploy):
 *   - unknown keys are skipped, so a key can be added without a new "v";
 *   - "v" changes only for a change that cannot be made by adding keys.  A
 *     frame whose "v" is outside RPC_PROTO_MIN..RPC_PROTO_VERSION is not
 *     read further, but its "t" and "id" are still extracted
 *     (rpc_frame_decode() returns -EPROTONOSUPPORT with them filled in), so
 *     a request gets an explicit version_mismatch answer and a caller can
 *     fail the matching call, never a dropped connection or a timeout;
 *   - an error code a peer does not know decodes as RPC_E_OTHER, its text
 *     kept, so newer codes reach the user intact;
 *   - a known key with the wrong type, out of range, past its bound, given
 *     twice, or contradicting "ok"; a missing required key; an unknown "t";
 *     trailing bytes: the frame is malformed, and the error names the field
 *     ("request.m should be a str").
 *
 * Bounds.  A whole sealed frame payload is at most RPC_FRAME_MAX bytes (the
 * transport's default frame_max); RPC_SEAL_ROOM of it is left to the seal,
 * so the plaintext here ('R' + map) is at most RPC_PLAIN_MAX.  Every other
 * field is bounded so that a request or a response whose args or result
 * are at most RPC_BODY_MAX always fits.
 *
 * The frozen parts are the kind byte, the key names, the type numbers and
 * the error code strings: never rename or renumber, only add.
 */
#ifndef MERIDIAN_REGION_RPC_PROTO_H
#define MERIDIAN_REGION_RPC_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RPC_PROTO_VERSION 1       /* what this build speaks */
#define RPC_PROTO_MIN 1           /* the oldest version this build accepts */

#define RPC_FRAME_KIND 'R'        /* first plaintext byte of an RPC frame */

#define RPC_FRAME_MAX (1024u * 1024u)   /* a sealed frame payload, bytes */
#define RPC_SEAL_ROOM 256u              /* >= SEAL_OVERHEAD_MAX (gossip/seal.h) */
#define RPC_PLAIN_MAX (RPC_FRAME_MAX - RPC_SEAL_ROOM)   /* 'R' + map */
#define RPC_OVERHEAD_MAX 512u           /* every field but args/result */
#define RPC_BODY_MAX (RPC_PLAIN_MAX - RPC_OVERHEAD_MAX) /* args, result */

#define RPC_METHOD_MAX 64         /* method name, bytes */
#define RPC_NODE_MAX 64           /* node name, bytes (= GOSSIP_NAME_MAX) */
#define RPC_REGION_MAX 32         /* region name, bytes (= CONFIG_REGION_MAX) */
#define RPC_NODE_VERSION_MAX 32   /* software version string, bytes */
#define RPC_CODE_MAX 32           /* error code string, bytes */
#define RPC_MESSAGE_MAX 1024      /* error message, bytes */
#define RPC_DEADLINE_MAX_MS 86400000u   /* one day */

enum rpc_type {
	RPC_T_NONE = 0,           /* decode only: "t" absent, bad or unknown */
	RPC_T_REQUEST = 1,
	RPC_T_RESPONSE = 2,
	RPC_T_CANCEL = 3,
};

/* The error codes of a failed call; the wire carries rpc_error_name(). */
enum rpc_error {
	RPC_E_NONE = 0,           /* not an error (ok responses) */
	RPC_E_NO_SUCH_METHOD,     /* "no_such_method" */
	RPC_E_TIMEOUT,            /* "timeout" */
	RPC_E_VERSION_MISMATCH,   /* "version_mismatch" */
	RPC_E_UNAVAILABLE,        /* "unavailable": leaving; see retry-after */
	RPC_E_OVERLOADED,         /* "overloaded": in-flight bound reached */
	RPC_E_REMOTE_ERROR,       /* "remote_error": the handler failed */
	RPC_E_BAD_REQUEST,        /* "bad_request": the request was malformed */
	RPC_E_OTHER,              /* a code this build does not know: see code */
};

/* Bytes pointing into the decoder's input or into caller memory; not
 * NUL-terminated.  An empty one may carry any pointer, NULL included. */
struct rpc_bytes {
	const char *ptr;
	uint32_t len;
};

struct rpc_request {
	uint64_t id;                  /* "id": > 0 */
	struct rpc_bytes method;      /* "m" */
	struct rpc_bytes args;        /* "a": msgpack, not looked into */
	uint32_t deadline_ms;         /* "dl": milliseconds left, > 0 */
	struct rpc_bytes origin_node;     /* "on" */
	struct rpc_bytes origin_region;   /* "or" */
};

struct rpc_response {
	uint64_t id;                  /* "id": the request's; 0 = unreadable */
	bool ok;                      /* "ok" */
	struct rpc_bytes result;      /* "r": when ok */
	enum rpc_error error;         /* "e": when !ok, never RPC_E_NONE */
	struct rpc_bytes code;        /* "e" as text: decode always sets it when
				       * !ok; encode reads it only for
				       * RPC_E_OTHER */
	struct rpc_bytes message;     /* "em": when !ok; may be empty */
	uint32_t retry_after_ms;      /* "ra": when !ok; 0 = not given */
	struct rpc_bytes node;        /* "n" */
	struct rpc_bytes node_version;    /* "nv" */
};

/* One decoded frame.  Every rpc_bytes points into the decoded buffer. */
struct rpc_frame {
	uint32_t version;             /* "v" as received (0 when unreadable) */
	enum rpc_type type;           /* "t"; RPC_T_NONE when unreadable */
	bool have_id;                 /* "id" was read (a uint) */
	uint64_t id;                  /* "id" when have_id, else 0 */
	union {
		struct rpc_request req;   /* type == RPC_T_REQUEST */
		struct rpc_response resp; /* type == RPC_T_RESPONSE */
	} u;                          /* a cancel carries only id */
};

/* ------------------------------------------------------------------ */
/* Encoding                                                            */
/* ------------------------------------------------------------------ */

/* Growable buffer owned by the caller; the encoders append one whole frame
 * plaintext ('R' + map) to it.  Start it zeroed; it never grows past
 * RPC_BUF_MAX bytes. */
struct rpc_buf {
	uint8_t *data;
	size_t len;
	size_t cap;
};

#define RPC_BUF_MAX (16u * RPC_FRAME_MAX)

/* Frees @b's memory and zeroes it (reusable afterwards). */
void rpc_buf_free(struct rpc_buf *b);

/*
 * Each appends one frame to @out.  Returns 0; -EINVAL when a field is
 * invalid (out of its charset or bound, id 0, a zero or too long deadline,
 * an error code of RPC_E_NONE, or one of RPC_E_OTHER whose code text is
 * invalid); -EMSGSIZE when args or result exceed RPC_BODY_MAX; -ENOMEM
 * when @out cannot grow (allocation, or RPC_BUF_MAX).  On failure @out is
 * exactly as it was.  Fields of @req / @resp are read, never kept.
 * rpc_response_encode() writes "r" only when ok, and "e", "em", "ra" only
 * when !ok (an empty message and a zero retry-after are left out).
 */
int rpc_request_encode(struct rpc_buf *out, const struct rpc_request *req);
int rpc_response_encode(struct rpc_buf *out, const struct rpc_response *resp);
int rpc_cancel_encode(struct rpc_buf *out, uint64_t id);

/* ------------------------------------------------------------------ */
/* Decoding                                                            */
/* ------------------------------------------------------------------ */

/*
 * Decodes the frame plaintext in @buf (@len bytes, starting with 'R') into
 * @out, whose rpc_bytes then point into @buf (which must outlive them).
 * Only a transient msgpack zone is allocated, after a pre-scan has bounded
 * it, and it is freed before return.
 *
 * Returns 0; -EBADMSG when malformed; -EPROTONOSUPPORT when "v" is outside
 * RPC_PROTO_MIN..RPC_PROTO_VERSION; -ENOMEM.  On -EBADMSG and
 * -EPROTONOSUPPORT, @err (if not NULL) gets a NUL-terminated reason naming
 * the field (at most @errlen bytes), and @out->version, type, have_id and
 * id still hold whatever of "v", "t", "id" could be read, so that a
 * request can be answered with version_mismatch or bad_request; @out->u is
 * then unspecified.
 */
int rpc_frame_decode(const uint8_t *buf, size_t len, struct rpc_frame *out, char *err,
		     size_t errlen);

/* ------------------------------------------------------------------ */
/* Names and text                                                      */
/* ------------------------------------------------------------------ */

/* "no_such_method", ...; "other" for RPC_E_OTHER, "none" for RPC_E_NONE,
 * "unknown" outside the enum.  Static strings. */
const char *rpc_error_name(enum rpc_error e);

/* The code named by @len bytes at @s; RPC_E_OTHER when no known code is
 * (including "none" and "other", which never travel). */
enum rpc_error rpc_error_parse(const char *s, size_t len);

/* "request", "response", "cancel", or "frame" for anything else. */
const char *rpc_type_name(enum rpc_type t);

/* True when @len bytes at @s are a valid method name: 1..RPC_METHOD_MAX
 * bytes of [a-z0-9_.-]. */
bool rpc_method_valid(const char *s, size_t len);

/* True when @s (NUL-terminated; NULL is not valid) is 1..@max bytes of
 * printable ASCII without spaces (0x21-0x7e), the rule for node names
 * (@max RPC_NODE_MAX) and node versions (RPC_NODE_VERSION_MAX). */
bool rpc_node_valid(const char *s, size_t max);

/*
 * Copies @len bytes at @src (any bytes: a handler's stderr, say) into @dst
 * as a valid error message: invalid UTF-8 and control bytes other than tab
 * and newline become '?', and the copy stops at a character boundary so
 * that it fits min(@cap, RPC_MESSAGE_MAX) bytes.  Not NUL-terminated.
 * Returns the bytes written.  To keep the tail of a long text, pass the
 * tail.
 */
size_t rpc_message_clean(char *dst, size_t cap, const char *src, size_t len);

#endif
