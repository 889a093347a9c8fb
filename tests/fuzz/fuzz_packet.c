/*
 * tests/fuzz/fuzz_packet.c - libFuzzer target for gossip_packet_decode().
 *
 * Whatever the network sends must be refused cleanly (-EBADMSG or
 * -EPROTONOSUPPORT with a reason) or accepted; an accepted packet is
 * re-encoded, split over as many packets as the encoder's limit needs, and
 * must decode to the same messages.  That catches asymmetry between the
 * decoder and the encoder: something decoded that cannot be re-encoded, or
 * re-encodes to something else.
 *
 *   CC=clang cmake -DMERIDIAN_FUZZ=ON -DBUILD_TESTING=ON ...
 *   fuzz_packet -max_total_time=60 tests/fuzz/corpus/packet
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/proto.h"
#include "tests/unit/proto_testutil.h"

/* Sends the encoder's packet through the decoder and checks it against
 * @want; returns how many messages it held. */
static size_t check_packet(struct gossip_encoder *e, const struct gossip_msg *want)
{
	static struct gossip_packet q;
	const uint8_t *buf;
	char err[128];
	size_t len;

	if (gossip_encoder_finish(e, &buf, &len) != 0 || len > GOSSIP_PACKET_MAX)
		abort();
	if (gossip_packet_decode(buf, len, &q, err, sizeof(err)) != 0)
		abort();
	if (q.skipped != 0 || q.count != gossip_encoder_count(e))
		abort();
	for (size_t i = 0; i < q.count; i++)
		if (!msg_eq(&q.msgs[i], &want[i]))
			abort();
	gossip_encoder_reset(e);
	return q.count;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct gossip_encoder *e;
	static struct gossip_packet p;
	size_t i = 0, done = 0;
	char err[128];
	int r;

	if (!e)
		e = gossip_encoder_new(GOSSIP_PACKET_MAX);
	if (!e)
		abort();

	r = gossip_packet_decode(data, size, &p, err, sizeof(err));
	if (r == -EBADMSG || r == -EPROTONOSUPPORT) {
		if (err[0] == '\0')
			abort();   /* every refusal says why */
		return 0;
	}
	if (r == -ENOMEM)
		return 0;
	if (r != 0 || p.count > GOSSIP_PACKET_MSGS_MAX || p.count + p.skipped == 0 ||
	    p.version < GOSSIP_PROTO_MIN)
		abort();

	gossip_encoder_reset(e);
	while (i < p.count) {
		r = gossip_encoder_add(e, &p.msgs[i]);
		if (r == 0) {
			i++;
			continue;
		}
		/* Valid decoded messages always re-encode, each fits alone. */
		if (r != -EMSGSIZE || gossip_encoder_count(e) == 0)
			abort();
		done += check_packet(e, &p.msgs[done]);
	}
	if (gossip_encoder_count(e) > 0)
		done += check_packet(e, &p.msgs[done]);
	if (done != p.count)
		abort();
	return 0;
}
