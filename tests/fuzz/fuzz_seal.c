/*
 * tests/fuzz/fuzz_seal.c - libFuzzer target for seal_open(), the first code
 * that touches a datagram from the network.
 *
 * The first input byte picks a mode:
 *
 *   even: the rest is a packet, opened raw with a fixed key and with a
 *         fuzz-chosen output capacity and length bound.  Drives the header
 *         parsing and every rejection before and at the tag.  A header that
 *         names our key id (the fuzzer learns it from the comparison, or
 *         from a genuine packet in the corpus) reaches the AEAD itself; a
 *         genuine packet must open once, then be a replay.
 *   odd:  the rest is [name length][name][skew: 4 bytes][edit: 4 bytes]
 *         [plaintext].  We seal the plaintext, apply the edit (flip one bit
 *         or truncate, or none), and open it with our clock off by the skew.
 *         An unedited packet must open to the same plaintext and sender (or
 *         be stale, exactly when the skew exceeds the window), then be a
 *         replay; an edited one must never open.
 *
 * Every input gets a fresh sealer, so a run does not depend on the inputs
 * before it.  Out-of-bounds access is left to ASan; broken promises abort.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/seal.h"

#define WINDOW_MS 10000
#define NOW UINT64_C(1790000000000)
#define MAX_IN 4096

static uint8_t key[SEAL_KEY_BYTES];

static void check(int ok)
{
	if (!ok)
		abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	check(seal_derive_key("fuzzing passphrase", key) == 0);
	return 0;
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void fuzz_raw(struct seal *s, const uint8_t *data, size_t size)
{
	uint8_t out[MAX_IN];
	char sender[SEAL_NAME_MAX + 1];
	size_t out_len = 0, out_cap, max_len;
	enum seal_err e;
	uint8_t *in;

	if (size < 2)
		return;
	/* two bytes pick the bounds: mostly generous, sometimes tight */
	out_cap = data[0] & 0x80 ? (size_t)(data[0] & 0x7f) : MAX_IN;
	max_len = data[1] & 0x80 ? (size_t)(data[1] & 0x7f) * 8 : MAX_IN;
	data += 2;
	size -= 2;
	if (size > MAX_IN)
		return;
	/* an exact-size copy, so ASan sees any read past the end */
	in = malloc(size ? size : 1);
	check(in != NULL);
	if (size)
		memcpy(in, data, size);
	e = seal_open(s, NOW, in, size, max_len, out, out_cap, &out_len, sender);
	check((unsigned)e < SEAL_ERR__COUNT);
	check(seal_count(s, e) == 1);
	if (e == SEAL_OK) {
		/* a genuine packet (a corpus seed): its parts must add up */
		check(strlen(sender) == data[6]);
		check(out_len + 7 + data[6] + 48 == size && out_len <= out_cap);
		check(seal_open(s, NOW, in, size, max_len, out, out_cap, &out_len, sender) ==
		      SEAL_ERR_REPLAYED);
	}
	free(in);
}

static void fuzz_sealed(struct seal *s, const uint8_t *data, size_t size)
{
	uint8_t sealed[MAX_IN + SEAL_OVERHEAD_MAX], out[MAX_IN + SEAL_OVERHEAD_MAX];
	char name[SEAL_NAME_MAX + 2], sender[SEAL_NAME_MAX + 1];
	size_t nlen, out_len = 0, len;
	uint32_t edit;
	int32_t skew;
	enum seal_err e;
	long n;

	if (size < 1)
		return;
	nlen = data[0] % (SEAL_NAME_MAX + 2);   /* 0 and 65 are refused */
	if (size < 1 + nlen + 8)
		return;
	memcpy(name, data + 1, nlen);
	name[nlen] = '\0';
	skew = (int32_t)get_be32(data + 1 + nlen);
	edit = get_be32(data + 1 + nlen + 4);
	data += 1 + nlen + 8;
	size -= 1 + nlen + 8;
	if (size > MAX_IN)
		return;

	n = seal_seal(s, name, NOW, data, size, sealed, sizeof(sealed));
	if (strlen(name) == 0 || strlen(name) > SEAL_NAME_MAX) {
		check(n == -EINVAL);
		return;
	}
	check(n == (long)(size + 7 + strlen(name) + 48));
	len = (size_t)n;

	uint64_t now = NOW + (uint64_t)(int64_t)skew;
	uint64_t dist = skew < 0 ? (uint64_t)(-(int64_t)skew) : (uint64_t)skew;
	switch (edit >> 30) {
	case 0:   /* untouched */
		e = seal_open(s, now, sealed, len, len, out, size, &out_len, sender);
		if (dist > WINDOW_MS) {
			check(e == SEAL_ERR_STALE);
			return;
		}
		check(e == SEAL_OK);
		check(out_len == size);
		check(size == 0 || memcmp(out, data, size) == 0);
		check(strcmp(sender, name) == 0);
		e = seal_open(s, now, sealed, len, len, out, size, &out_len, sender);
		check(e == SEAL_ERR_REPLAYED);
		break;
	case 1:   /* one bit flipped */
		sealed[(edit & 0xffffff) % len] ^= (uint8_t)(1u << ((edit >> 24) & 7));
		e = seal_open(s, now, sealed, len, sizeof(out), out, sizeof(out), &out_len,
			      sender);
		check(e != SEAL_OK);
		break;
	case 2:   /* truncated */
		e = seal_open(s, now, sealed, (edit & 0xffffff) % len, sizeof(out), out,
			      sizeof(out), &out_len, sender);
		check(e == SEAL_ERR_MALFORMED || e == SEAL_ERR_TAMPERED);
		break;
	default:  /* opened in place */
		e = seal_open(s, NOW, sealed, len, len, sealed, len, &out_len, sender);
		check(e == SEAL_OK);
		check(out_len == size && (size == 0 || memcmp(sealed, data, size) == 0));
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct seal *s;

	if (size < 1)
		return 0;
	s = seal_new(WINDOW_MS, 16);
	check(s != NULL);
	check(seal_key_add(s, key) == 0);
	if (data[0] & 1)
		fuzz_sealed(s, data + 1, size - 1);
	else
		fuzz_raw(s, data + 1, size - 1);
	seal_delete(s);
	return 0;
}
