/*
 * tests/fuzz/fuzz_announce.c - libFuzzer target for
 * election_announce_decode().
 *
 * A peer's gossiped "leader" user data is network input: any bytes must be
 * refused (-EBADMSG or -EPROTONOSUPPORT, @out left zeroed) or accepted.
 * An accepted announcement re-encodes to exactly the input bytes: the
 * decoder takes nothing the encoder cannot say.
 *
 *   CC=clang cmake -DMERIDIAN_FUZZ=ON -DBUILD_TESTING=ON ...
 *   fuzz_announce -max_total_time=60 tests/fuzz/corpus/announce
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "election/election.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct election_announce zero;
	struct election_announce a;
	uint8_t out[ELECTION_ANNOUNCE_LEN];
	int r;

	memset(&a, 0xa5, sizeof(a));
	r = election_announce_decode(data, size, &a);
	if (r == -EBADMSG || r == -EPROTONOSUPPORT) {
		if (memcmp(&a, &zero, sizeof(a)) != 0)
			abort();   /* a refusal leaves nothing half-filled */
		if (r == -EPROTONOSUPPORT && (size < 2 || data[0] != 'L' || data[1] == 1))
			abort();
		return 0;
	}
	if (r != 0 || size != ELECTION_ANNOUNCE_LEN || a.term == 0)
		abort();
	if (election_announce_encode(&a, out) != ELECTION_ANNOUNCE_LEN)
		abort();
	if (memcmp(out, data, ELECTION_ANNOUNCE_LEN) != 0)
		abort();
	return 0;
}
