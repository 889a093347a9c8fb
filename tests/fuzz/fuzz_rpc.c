/*
 * tests/fuzz/fuzz_rpc.c - libFuzzer target for rpc_frame_decode().
 *
 * Whatever a peer sends must be refused cleanly (-EBADMSG or
 * -EPROTONOSUPPORT, with a reason) or accepted.  A refusal must still be
 * answerable: the id it yields (if any) and the error text, cleaned, make a
 * response the encoder takes.  An accepted frame is re-encoded and must
 * decode to the same fields, and re-encoding that gives the same bytes: so
 * the decoder accepts nothing the encoder cannot say, and the encoding is
 * canonical.
 *
 *   CC=clang cmake -DMERIDIAN_FUZZ=ON -DBUILD_TESTING=ON ...
 *   fuzz_rpc -max_total_time=60 tests/fuzz/corpus/rpc
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "region/rpc_proto.h"
#include "tests/unit/rpc_testutil.h"

static int encode(struct rpc_buf *b, const struct rpc_frame *f)
{
	b->len = 0;
	switch (f->type) {
	case RPC_T_REQUEST:
		return rpc_request_encode(b, &f->u.req);
	case RPC_T_RESPONSE:
		return rpc_response_encode(b, &f->u.resp);
	case RPC_T_CANCEL:
		return rpc_cancel_encode(b, f->id);
	case RPC_T_NONE:
		break;
	}
	return -EINVAL;
}

/* What a server does with a refused request: answer it, if it can. */
static void answer_refusal(struct rpc_buf *b, const struct rpc_frame *f, int r, const char *err)
{
	char msg[RPC_MESSAGE_MAX];
	struct rpc_response s = {
		.id = f->have_id ? f->id : 0,
		.error = r == -EPROTONOSUPPORT ? RPC_E_VERSION_MISMATCH : RPC_E_BAD_REQUEST,
		.node = { "fuzz-node", 9 },
		.node_version = { "0.1.0", 5 },
	};
	struct rpc_frame g;

	s.message.ptr = msg;
	s.message.len = (uint32_t)rpc_message_clean(msg, sizeof(msg), err, strlen(err));
	b->len = 0;
	if (rpc_response_encode(b, &s) != 0)
		abort();
	if (rpc_frame_decode(b->data, b->len, &g, NULL, 0) != 0 || g.id != s.id ||
	    g.u.resp.error != s.error || !bytes_eq(g.u.resp.message, s.message))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct rpc_buf b1, b2;
	char err[160], msg[RPC_MESSAGE_MAX];
	struct rpc_frame f, g;
	size_t n;
	int r;

	/* Any bytes at all, cleaned, are a message the encoder takes. */
	n = rpc_message_clean(msg, sizeof(msg), (const char *)data, size);
	if (n > RPC_MESSAGE_MAX)
		abort();

	r = rpc_frame_decode(data, size, &f, err, sizeof(err));
	if (r == -EBADMSG || r == -EPROTONOSUPPORT) {
		if (err[0] == '\0')
			abort();   /* every refusal says why */
		if (!f.have_id && f.id != 0)
			abort();
		if (r == -EPROTONOSUPPORT &&
		    f.version >= RPC_PROTO_MIN && f.version <= RPC_PROTO_VERSION)
			abort();
		answer_refusal(&b1, &f, r, err);
		return 0;
	}
	if (r == -ENOMEM)
		return 0;
	if (r != 0 || f.type == RPC_T_NONE || !f.have_id || f.version < RPC_PROTO_MIN ||
	    f.version > RPC_PROTO_VERSION || size > RPC_PLAIN_MAX || data[0] != RPC_FRAME_KIND)
		abort();

	/* Re-encode, decode, compare; then the encoding is a fixed point. */
	if (encode(&b1, &f) != 0 || b1.len > RPC_PLAIN_MAX)
		abort();
	if (rpc_frame_decode(b1.data, b1.len, &g, err, sizeof(err)) != 0 || !frame_eq(&f, &g))
		abort();
	if (encode(&b2, &g) != 0 || b2.len != b1.len || memcmp(b1.data, b2.data, b1.len) != 0)
		abort();
	/* The encoder never makes more than the input held, unknown keys
	 * and wider integers dropped. */
	if (b1.len > size)
		abort();
	return 0;
}
