/*
 * tests/unit/rpc_testutil.h - what "the same RPC frame" means, said once
 * for the unit tests (test_rpc_proto.c) and the fuzz target
 * (tests/fuzz/fuzz_rpc.c): equal in every field the wire carries for the
 * frame's type and outcome.
 *
 * Two rules on a failed response's code.  response_eq() compares it only
 * for RPC_E_OTHER: for a named error the decoder derives the code from
 * the error, so a hand-written expectation need not spell it out.
 * frame_eq() (a decoded frame against its re-decoded re-encoding, both
 * filled by the decoder) compares it always.
 *
 * Header-only (static inline) and free of Check, so that the fuzz target
 * can include it too.
 */
#ifndef MERIDIAN_TESTS_RPC_TESTUTIL_H
#define MERIDIAN_TESTS_RPC_TESTUTIL_H

#include <stdbool.h>
#include <string.h>

#include "region/rpc_proto.h"

static inline bool bytes_eq(struct rpc_bytes a, struct rpc_bytes b)
{
	return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static inline bool request_eq(const struct rpc_request *a, const struct rpc_request *b)
{
	return a->id == b->id && bytes_eq(a->method, b->method) && bytes_eq(a->args, b->args) &&
	       a->deadline_ms == b->deadline_ms && bytes_eq(a->origin_node, b->origin_node) &&
	       bytes_eq(a->origin_region, b->origin_region);
}

/* Equal in every field the wire carries for that outcome. */
static inline bool response_eq(const struct rpc_response *a, const struct rpc_response *b)
{
	if (a->id != b->id || a->ok != b->ok || !bytes_eq(a->node, b->node) ||
	    !bytes_eq(a->node_version, b->node_version))
		return false;
	if (a->ok)
		return bytes_eq(a->result, b->result);
	if (a->error != b->error || !bytes_eq(a->message, b->message) ||
	    a->retry_after_ms != b->retry_after_ms)
		return false;
	return a->error != RPC_E_OTHER || bytes_eq(a->code, b->code);
}

/* Equal in every field the wire carries for the frame's type. */
static inline bool frame_eq(const struct rpc_frame *a, const struct rpc_frame *b)
{
	if (a->type != b->type || a->id != b->id || a->version != b->version ||
	    a->have_id != b->have_id)
		return false;
	switch (a->type) {
	case RPC_T_REQUEST:
		return request_eq(&a->u.req, &b->u.req);
	case RPC_T_RESPONSE:
		return response_eq(&a->u.resp, &b->u.resp) &&
		       bytes_eq(a->u.resp.code, b->u.resp.code);
	case RPC_T_CANCEL:
		return true;
	case RPC_T_NONE:
		break;
	}
	return false;
}

#endif
