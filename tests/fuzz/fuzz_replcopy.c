/*
 * tests/fuzz/fuzz_replcopy.c - libFuzzer target for repl_copy_parse(), the
 * decoder of the CopyBoth stream a logical replication connection
 * receives (XLogData and primary keepalives): never a crash, never a read
 * past the input, and what it accepts is self-consistent.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "storage/replication.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct repl_copy c;

	if (repl_copy_parse(data, size, 4096, &c) != 0)
		return 0;
	if (c.kind == 'w') {
		if (c.payload != data + REPL_XLOGDATA_HDR || c.len != size - REPL_XLOGDATA_HDR ||
		    c.len == 0 || c.len > 4096)
			abort();
	} else if (c.kind == 'k') {
		if (size != REPL_KEEPALIVE_LEN)
			abort();
	} else {
		abort();
	}
	return 0;
}
