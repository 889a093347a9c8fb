/*
 * tests/fuzz/fuzz_state.c - libFuzzer target for gossip_state_decode().
 *
 * A push-pull state arrives over TCP from any peer that holds the secret
 * (or from a buggy one).  It must be refused cleanly, with a reason and
 * without a single record delivered, or accepted; an accepted state is
 * re-encoded with gossip_state_encode() and must decode to the same records
 * and join flag.
 *
 *   fuzz_state -max_total_time=60 tests/fuzz/corpus/state
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/proto.h"
#include "tests/unit/proto_testutil.h"

/* The records of the first decode; they point into the fuzzer's input,
 * which outlives this iteration's second decode. */
struct seen {
	struct gossip_member_record *rec;
	size_t n;
	size_t checked;
};

static int collect(void *ctx, const struct gossip_member_record *r)
{
	struct seen *s = ctx;

	if (s->n >= GOSSIP_STATE_MEMBERS_MAX)
		abort();
	s->rec[s->n++] = *r;
	return 0;
}

static int compare(void *ctx, const struct gossip_member_record *r)
{
	struct seen *s = ctx;

	if (s->checked >= s->n || !record_eq(r, &s->rec[s->checked]))
		abort();
	s->checked++;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct gossip_member_record *rec;
	struct seen s = { 0 };
	struct gossip_buf buf = { 0 };
	bool join = false, join2 = true;
	char err[128];
	int r;

	if (!rec)
		rec = calloc(GOSSIP_STATE_MEMBERS_MAX, sizeof(*rec));
	if (!rec)
		abort();
	s.rec = rec;

	r = gossip_state_decode(data, size, &join, collect, &s, err, sizeof(err));
	if (r == -EBADMSG || r == -EPROTONOSUPPORT) {
		if (err[0] == '\0' || s.n != 0)
			abort();   /* a refusal says why and delivers nothing */
		return 0;
	}
	if (r == -ENOMEM)
		return 0;
	if (r != 0)
		abort();

	if (gossip_state_encode(&buf, join, s.rec, s.n) != 0)
		abort();
	r = gossip_state_decode(buf.data, buf.len, &join2, compare, &s, err, sizeof(err));
	if (r != 0 || join2 != join || s.checked != s.n)
		abort();
	gossip_buf_free(&buf);
	return 0;
}
