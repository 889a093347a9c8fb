/*
 * tests/unit/test_seal.c - gossip/seal: round trips, key derivation, the
 * keyring, and every rejection path of seal_open(), each checked for its
 * reason and its counter: wrong key, one flipped bit at every position,
 * every truncation, replays, both edges of the timestamp window, the replay
 * cache's rising floor, and the size bounds.  The replay cache's size: it
 * starts small, doubles exactly when full up to its ceiling and no further,
 * keeps every nonce across a doubling (also with a wrapped ring), falls back
 * to evict-and-raise-the-floor when a doubling's allocation fails (through
 * seal_cache_alloc_set()), and halves back when traffic falls.
 *
 * Sealed packets live in heap buffers of their exact size, so that
 * AddressSanitizer catches any read past the end.  Nonces are random, but
 * no outcome depends on their value; the one randomized test prints its
 * seed and takes it back from SEAL_TEST_SEED.
 */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/seal.h"

#define T0 UINT64_C(1790000000000)   /* a wall time, ms */
#define BIG ((size_t)1 << 20)
#define CT_START(nlen) (7 + (nlen) + 8 + SEAL_NONCE_BYTES)

static const char secret_a[] = "correct horse battery staple";
static const char secret_b[] = "tr0ub4dor&3";

static struct seal *seal_with(uint64_t window_ms, size_t cache, const char *secret)
{
	struct seal *s = seal_new(window_ms, cache);
	uint8_t key[SEAL_KEY_BYTES];

	ck_assert_ptr_nonnull(s);
	if (secret) {
		ck_assert_int_eq(seal_derive_key(secret, key), 0);
		ck_assert_int_eq(seal_key_add(s, key), 0);
	}
	return s;
}

/* Seals @msg from @name at @ts into a heap buffer of the exact size. */
static uint8_t *seal_msg(struct seal *s, const char *name, uint64_t ts, const char *msg,
			 size_t *len)
{
	uint8_t tmp[256 + SEAL_OVERHEAD_MAX];
	size_t mlen = strlen(msg);
	long n = seal_seal(s, name, ts, (const uint8_t *)msg, mlen, tmp, sizeof(tmp));
	uint8_t *p;

	ck_assert_int_eq(n, (long)(mlen + 7 + strlen(name) + 48));
	p = malloc((size_t)n);
	ck_assert_ptr_nonnull(p);
	memcpy(p, tmp, (size_t)n);
	*len = (size_t)n;
	return p;
}

/* Opens @in with generous bounds; plaintext copied to a heap buffer of
 * exactly @in_len bytes (the documented sufficient capacity). */
static enum seal_err open_msg(struct seal *s, uint64_t now, const uint8_t *in, size_t in_len,
			      char *plain_out, char *sender_out)
{
	uint8_t *out = malloc(in_len ? in_len : 1);
	char sender[SEAL_NAME_MAX + 1];
	size_t out_len = 0;
	enum seal_err e;

	ck_assert_ptr_nonnull(out);
	e = seal_open(s, now, in, in_len, BIG, out, in_len, &out_len, sender);
	if (e == SEAL_OK) {
		ck_assert_uint_le(out_len, in_len);
		if (plain_out) {
			memcpy(plain_out, out, out_len);
			plain_out[out_len] = '\0';
		}
		if (sender_out)
			strcpy(sender_out, sender);
	}
	free(out);
	return e;
}

static uint64_t total_failures(const struct seal *s)
{
	uint64_t n = 0;

	for (int e = SEAL_ERR_MALFORMED; e < SEAL_ERR__COUNT; e++)
		n += seal_count(s, (enum seal_err)e);
	return n;
}

START_TEST(round_trip)
{
	struct seal *tx = seal_with(SEAL_WINDOW_MS_DEFAULT, 64, secret_a);
	struct seal *rx = seal_with(SEAL_WINDOW_MS_DEFAULT, 64, secret_a);
	static const char *msgs[] = { "", "x", "ping 42", "a somewhat longer gossip packet" };

	for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
		char plain[300], sender[SEAL_NAME_MAX + 1];
		size_t len;
		uint8_t *p = seal_msg(tx, "node-a1", T0 + i, msgs[i], &len);

		ck_assert_uint_eq(p[0], SEAL_MAGIC);
		ck_assert_uint_eq(p[1], SEAL_VERSION);
		ck_assert_uint_eq(p[6], 7);
		ck_assert_mem_eq(p + 7, "node-a1", 7);
		/* the plaintext does not appear in clear */
		if (strlen(msgs[i]) > 3)
			ck_assert_ptr_null(memmem(p, len, msgs[i], strlen(msgs[i])));
		ck_assert_int_eq(open_msg(rx, T0, p, len, plain, sender), SEAL_OK);
		ck_assert_str_eq(plain, msgs[i]);
		ck_assert_str_eq(sender, "node-a1");
		free(p);
	}
	ck_assert_uint_eq(seal_count(rx, SEAL_OK), 4);
	ck_assert_uint_eq(total_failures(rx), 0);

	/* longest name, and a name one byte too long */
	char name[SEAL_NAME_MAX + 2];
	memset(name, 'n', sizeof(name));
	name[SEAL_NAME_MAX] = '\0';
	size_t len;
	char sender[SEAL_NAME_MAX + 1];
	uint8_t *p = seal_msg(tx, name, T0, "hello", &len);
	ck_assert_uint_eq(len, 5 + SEAL_OVERHEAD_MAX);
	ck_assert_int_eq(open_msg(rx, T0, p, len, NULL, sender), SEAL_OK);
	ck_assert_str_eq(sender, name);
	free(p);
	name[SEAL_NAME_MAX] = 'n';
	name[SEAL_NAME_MAX + 1] = '\0';
	uint8_t buf[128 + SEAL_OVERHEAD_MAX];
	ck_assert_int_eq(seal_seal(tx, name, T0, (const uint8_t *)"x", 1, buf, sizeof(buf)),
			 -EINVAL);
	ck_assert_int_eq(seal_seal(tx, "", T0, (const uint8_t *)"x", 1, buf, sizeof(buf)),
			 -EINVAL);
	seal_delete(tx);
	seal_delete(rx);
}
END_TEST

START_TEST(seal_and_open_in_place)
{
	struct seal *s = seal_with(1000, 16, secret_a);
	uint8_t buf[256];
	const char msg[] = "sealed and opened in one buffer";
	size_t mlen = strlen(msg), out_len = 0;
	char sender[SEAL_NAME_MAX + 1];

	/* plaintext at the start of the buffer, where the header goes */
	memcpy(buf, msg, mlen);
	long n = seal_seal(s, "n1", T0, buf, mlen, buf, sizeof(buf));
	ck_assert_int_eq(n, (long)(mlen + 2 + 55));
	/* opened into the same buffer */
	ck_assert_int_eq(seal_open(s, T0, buf, (size_t)n, BIG, buf, sizeof(buf), &out_len, sender),
			 SEAL_OK);
	ck_assert_uint_eq(out_len, mlen);
	ck_assert_mem_eq(buf, msg, mlen);
	ck_assert_str_eq(sender, "n1");

	/* plaintext already where the ciphertext goes */
	memcpy(buf + CT_START(2), msg, mlen);
	n = seal_seal(s, "n1", T0, buf + CT_START(2), mlen, buf, sizeof(buf));
	ck_assert_int_eq(n, (long)(mlen + 2 + 55));
	/* a tampered in-place open fails cleanly */
	uint8_t copy[256];
	memcpy(copy, buf, (size_t)n);
	buf[n - 1] ^= 1;
	ck_assert_int_eq(seal_open(s, T0, buf, (size_t)n, BIG, buf + 3, sizeof(buf) - 3,
				   &out_len, sender), SEAL_ERR_TAMPERED);
	/* and the intact copy still opens, in place at an offset */
	ck_assert_int_eq(seal_open(s, T0, copy, (size_t)n, BIG, copy + 1, sizeof(copy) - 1,
				   &out_len, sender), SEAL_OK);
	ck_assert_mem_eq(copy + 1, msg, mlen);
	seal_delete(s);
}
END_TEST

START_TEST(derive_base64_and_passphrase)
{
	uint8_t raw[SEAL_KEY_BYTES], expect[SEAL_KEY_BYTES], k1[SEAL_KEY_BYTES];
	uint8_t k2[SEAL_KEY_BYTES], k3[SEAL_KEY_BYTES], k4[SEAL_KEY_BYTES];
	char b64[64], unpadded[64], spaced[80], gen[64];
	static const char ctx[] = "meridian/cluster-key/v1";

	for (int i = 0; i < SEAL_KEY_BYTES; i++)
		raw[i] = (uint8_t)(i * 37 + 11);
	sodium_bin2base64(b64, sizeof(b64), raw, sizeof(raw), sodium_base64_VARIANT_ORIGINAL);
	ck_assert_uint_eq(strlen(b64), 44);
	ck_assert_int_eq(b64[43], '=');
	strcpy(unpadded, b64);
	unpadded[43] = '\0';
	snprintf(spaced, sizeof(spaced), "  %s\n", b64);

	/* the documented derivation: hash of the decoded bytes, keyed by the
	 * fixed context */
	crypto_generichash(expect, sizeof(expect), raw, sizeof(raw), (const uint8_t *)ctx,
			   strlen(ctx));
	ck_assert_int_eq(seal_derive_key(b64, k1), 0);
	ck_assert_int_eq(seal_derive_key(unpadded, k2), 0);
	ck_assert_int_eq(seal_derive_key(spaced, k3), 0);
	ck_assert_mem_eq(k1, expect, SEAL_KEY_BYTES);
	ck_assert_mem_eq(k2, expect, SEAL_KEY_BYTES);
	ck_assert_mem_eq(k3, expect, SEAL_KEY_BYTES);

	/* a passphrase is hashed as it is */
	crypto_generichash(expect, sizeof(expect), (const uint8_t *)secret_a, strlen(secret_a),
			   (const uint8_t *)ctx, strlen(ctx));
	ck_assert_int_eq(seal_derive_key(secret_a, k4), 0);
	ck_assert_mem_eq(k4, expect, SEAL_KEY_BYTES);
	ck_assert_mem_ne(k4, k1, SEAL_KEY_BYTES);

	/* different secrets differ; base64 of other lengths is a passphrase */
	ck_assert_int_eq(seal_derive_key(secret_b, k2), 0);
	ck_assert_mem_ne(k2, k4, SEAL_KEY_BYTES);
	ck_assert_int_eq(seal_derive_key("AAAA", k2), 0);
	crypto_generichash(expect, sizeof(expect), (const uint8_t *)"AAAA", 4,
			   (const uint8_t *)ctx, strlen(ctx));
	ck_assert_mem_eq(k2, expect, SEAL_KEY_BYTES);
	raw[0] ^= 1;
	sodium_bin2base64(b64, sizeof(b64), raw, sizeof(raw), sodium_base64_VARIANT_ORIGINAL);
	ck_assert_int_eq(seal_derive_key(b64, k2), 0);
	ck_assert_mem_ne(k2, k1, SEAL_KEY_BYTES);

	ck_assert_int_eq(seal_derive_key("", k2), -EINVAL);

	/* keygen: 44 characters of padded base64 that decode to 32 bytes */
	seal_keygen(gen, sizeof(gen));
	ck_assert_uint_eq(strlen(gen), 44);
	size_t bl = 0;
	ck_assert_int_eq(sodium_base642bin(raw, sizeof(raw), gen, 44, NULL, &bl, NULL,
					   sodium_base64_VARIANT_ORIGINAL), 0);
	ck_assert_uint_eq(bl, 32);
	crypto_generichash(expect, sizeof(expect), raw, sizeof(raw), (const uint8_t *)ctx,
			   strlen(ctx));
	ck_assert_int_eq(seal_derive_key(gen, k3), 0);
	ck_assert_mem_eq(k3, expect, SEAL_KEY_BYTES);
	seal_keygen(b64, sizeof(b64));
	ck_assert_str_ne(b64, gen);
	seal_keygen(b64, 44);  /* too small: empty, never overflowing */
	ck_assert_str_eq(b64, "");
}
END_TEST

START_TEST(wrong_key_is_bad_key)
{
	struct seal *tx = seal_with(1000, 16, secret_a);
	struct seal *rx = seal_with(1000, 16, secret_b);
	struct seal *none = seal_with(1000, 16, NULL);
	size_t len;
	uint8_t *p = seal_msg(tx, "a1", T0, "hello", &len);

	ck_assert_int_eq(open_msg(rx, T0, p, len, NULL, NULL), SEAL_ERR_BAD_KEY);
	ck_assert_int_eq(open_msg(rx, T0, p, len, NULL, NULL), SEAL_ERR_BAD_KEY);
	ck_assert_uint_eq(seal_count(rx, SEAL_ERR_BAD_KEY), 2);
	ck_assert_uint_eq(total_failures(rx), 2);
	ck_assert_uint_eq(seal_count(rx, SEAL_OK), 0);
	/* an empty ring opens nothing and seals nothing */
	ck_assert_int_eq(open_msg(none, T0, p, len, NULL, NULL), SEAL_ERR_BAD_KEY);
	uint8_t buf[128];
	ck_assert_int_eq(seal_seal(none, "a1", T0, (const uint8_t *)"x", 1, buf, sizeof(buf)),
			 -EINVAL);
	free(p);
	seal_delete(tx);
	seal_delete(rx);
	seal_delete(none);
}
END_TEST

/* What flipping a bit of byte @i may legitimately yield. */
static int flip_expected(size_t i, size_t nlen, enum seal_err got)
{
	if (i == 0)
		return got == SEAL_ERR_MALFORMED;
	if (i == 1)
		return got == SEAL_ERR_VERSION;
	if (i < 6)
		return got == SEAL_ERR_BAD_KEY;
	if (i == 6)   /* name length: the packet no longer parses, or the tag fails */
		return got == SEAL_ERR_MALFORMED || got == SEAL_ERR_TAMPERED;
	if (i < 7 + nlen)   /* a name byte may turn into NUL */
		return got == SEAL_ERR_MALFORMED || got == SEAL_ERR_TAMPERED;
	return got == SEAL_ERR_TAMPERED;   /* timestamp, nonce, ciphertext, tag */
}

START_TEST(every_flipped_bit_rejected)
{
	struct seal *s = seal_with(1000, 16, secret_a);
	size_t len, nlen = strlen("flipper");
	uint8_t *p = seal_msg(s, "flipper", T0, "a message whose every bit matters", &len);
	uint8_t *q = malloc(len);
	uint64_t n = 0;

	ck_assert_ptr_nonnull(q);
	for (size_t i = 0; i < len; i++) {
		for (int b = 0; b < 8; b++) {
			memcpy(q, p, len);
			q[i] ^= (uint8_t)(1u << b);
			enum seal_err e = open_msg(s, T0, q, len, NULL, NULL);
			ck_assert_msg(flip_expected(i, nlen, e), "byte %zu bit %d: %s", i, b,
				      seal_err_name(e));
			n++;
		}
	}
	ck_assert_uint_eq(total_failures(s), n);
	ck_assert_uint_eq(seal_count(s, SEAL_OK), 0);
	ck_assert_uint_eq(seal_count(s, SEAL_ERR_TAMPERED) > 0, 1);
	ck_assert_uint_eq(seal_count(s, SEAL_ERR_VERSION), 8);
	ck_assert_uint_eq(seal_count(s, SEAL_ERR_BAD_KEY), 32);
	/* nothing of that reached the replay cache: the original still opens */
	ck_assert_int_eq(open_msg(s, T0, p, len, NULL, NULL), SEAL_OK);
	free(p);
	free(q);
	seal_delete(s);
}
END_TEST

START_TEST(every_truncation_rejected)
{
	struct seal *s = seal_with(1000, 16, secret_a);
	size_t len;
	uint8_t *p = seal_msg(s, "trunc", T0, "cut me anywhere", &len);
	size_t min = 7 + 5 + 8 + SEAL_NONCE_BYTES + SEAL_TAG_BYTES;

	for (size_t l = 0; l < len; l++) {
		uint8_t *q = malloc(l ? l : 1);
		ck_assert_ptr_nonnull(q);
		memcpy(q, p, l);
		enum seal_err e = open_msg(s, T0, q, l, NULL, NULL);
		ck_assert_msg(e == (l < min ? SEAL_ERR_MALFORMED : SEAL_ERR_TAMPERED),
			      "length %zu: %s", l, seal_err_name(e));
		free(q);
	}
	ck_assert_uint_eq(seal_count(s, SEAL_ERR_MALFORMED), min);
	ck_assert_uint_eq(seal_count(s, SEAL_ERR_TAMPERED), len - min);
	/* NULL input is malformed too */
	ck_assert_int_eq(seal_open(s, T0, NULL, 0, BIG, NULL, 0, NULL, NULL),
			 SEAL_ERR_MALFORMED);
	free(p);
	seal_delete(s);
}
END_TEST

START_TEST(bad_header_fields)
{
	struct seal *s = seal_with(1000, 16, secret_a);
	size_t len;
	uint8_t *p = seal_msg(s, "hdr", T0, "fields", &len);
	uint8_t *q = malloc(len);

	ck_assert_ptr_nonnull(q);
	memcpy(q, p, len);
	q[6] = 0;                      /* empty name */
	ck_assert_int_eq(open_msg(s, T0, q, len, NULL, NULL), SEAL_ERR_MALFORMED);
	q[6] = SEAL_NAME_MAX + 1;      /* name too long */
	ck_assert_int_eq(open_msg(s, T0, q, len, NULL, NULL), SEAL_ERR_MALFORMED);
	q[6] = 255;
	ck_assert_int_eq(open_msg(s, T0, q, len, NULL, NULL), SEAL_ERR_MALFORMED);
	memcpy(q, p, len);
	q[8] = '\0';                   /* NUL inside the name */
	ck_assert_int_eq(open_msg(s, T0, q, len, NULL, NULL), SEAL_ERR_MALFORMED);
	memcpy(q, p, len);
	q[1] = SEAL_VERSION + 1;
	ck_assert_int_eq(open_msg(s, T0, q, len, NULL, NULL), SEAL_ERR_VERSION);
	q[1] = 0;
	ck_assert_int_eq(open_msg(s, T0, q, len, NULL, NULL), SEAL_ERR_VERSION);
	ck_assert_uint_eq(seal_count(s, SEAL_ERR_MALFORMED), 4);
	ck_assert_uint_eq(seal_count(s, SEAL_ERR_VERSION), 2);
	free(p);
	free(q);
	seal_delete(s);
}
END_TEST

START_TEST(replay_rejected)
{
	struct seal *tx = seal_with(1000, 16, secret_a);
	struct seal *rx = seal_with(1000, 16, secret_a);
	size_t len;
	uint8_t *p = seal_msg(tx, "a1", T0, "once only", &len);
	uint8_t *p2 = seal_msg(tx, "a1", T0, "once only", &len);

	ck_assert_int_eq(open_msg(rx, T0, p, len, NULL, NULL), SEAL_OK);
	ck_assert_int_eq(open_msg(rx, T0 + 10, p, len, NULL, NULL), SEAL_ERR_REPLAYED);
	ck_assert_int_eq(open_msg(rx, T0 + 20, p, len, NULL, NULL), SEAL_ERR_REPLAYED);
	/* the same plaintext sealed again has a new nonce */
	ck_assert_int_eq(open_msg(rx, T0, p2, len, NULL, NULL), SEAL_OK);
	ck_assert_int_eq(open_msg(rx, T0, p2, len, NULL, NULL), SEAL_ERR_REPLAYED);
	ck_assert_uint_eq(seal_count(rx, SEAL_ERR_REPLAYED), 3);
	ck_assert_uint_eq(seal_count(rx, SEAL_OK), 2);
	ck_assert_uint_eq(total_failures(rx), 3);
	/* the sender's own cache is separate: it has seen nothing */
	ck_assert_int_eq(open_msg(tx, T0, p, len, NULL, NULL), SEAL_OK);
	free(p);
	free(p2);
	seal_delete(tx);
	seal_delete(rx);
}
END_TEST

START_TEST(stale_window_edges)
{
	const uint64_t w = 5000;
	struct seal *tx = seal_with(w, 64, secret_a);
	struct seal *rx = seal_with(w, 64, secret_a);
	static const struct {
		int64_t skew;          /* receiver clock minus sender clock */
		enum seal_err want;
	} cases[] = {
		{ 0, SEAL_OK },
		{ 5000, SEAL_OK },                  /* old by exactly the window */
		{ 5001, SEAL_ERR_STALE },           /* a millisecond more */
		{ -5000, SEAL_OK },                 /* from the future, at the edge */
		{ -5001, SEAL_ERR_STALE },
		{ 86400000, SEAL_ERR_STALE },
		{ -86400000, SEAL_ERR_STALE },
	};
	uint64_t stale = 0;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len;
		uint8_t *p = seal_msg(tx, "clock", T0, "tick", &len);
		uint64_t now = (uint64_t)((int64_t)T0 + cases[i].skew);

		ck_assert_msg(open_msg(rx, now, p, len, NULL, NULL) == cases[i].want,
			      "skew %" PRId64, cases[i].skew);
		stale += cases[i].want == SEAL_ERR_STALE;
		free(p);
	}
	ck_assert_uint_eq(seal_count(rx, SEAL_ERR_STALE), stale);
	ck_assert_uint_eq(seal_count(rx, SEAL_OK), 3);

	/* a timestamp of 0 (the floor's start) is stale even with a huge window */
	struct seal *wide = seal_with(UINT64_MAX, 64, secret_a);
	size_t len;
	uint8_t *p = seal_msg(tx, "clock", 0, "epoch", &len);
	ck_assert_int_eq(open_msg(wide, T0, p, len, NULL, NULL), SEAL_ERR_STALE);
	free(p);
	p = seal_msg(tx, "clock", UINT64_MAX, "end of time", &len);
	ck_assert_int_eq(open_msg(wide, 1, p, len, NULL, NULL), SEAL_OK);
	free(p);
	seal_delete(wide);
	seal_delete(tx);
	seal_delete(rx);
}
END_TEST

START_TEST(full_cache_raises_floor)
{
	struct seal *tx = seal_with(60000, 4, secret_a);
	struct seal *rx = seal_with(60000, 3, secret_a);   /* rounded up to 4 */
	uint8_t *p[6];
	size_t len[6];

	for (int i = 0; i < 6; i++)
		p[i] = seal_msg(tx, "f", T0 + 10 * (uint64_t)i, "fill", &len[i]);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(open_msg(rx, T0 + 100, p[i], len[i], NULL, NULL), SEAL_OK);
	/* the cache holds 4: every one of them is still a replay */
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(open_msg(rx, T0 + 100, p[i], len[i], NULL, NULL),
				 SEAL_ERR_REPLAYED);
	/* the fifth evicts the first (ts T0): the floor rises to T0 */
	ck_assert_int_eq(open_msg(rx, T0 + 100, p[4], len[4], NULL, NULL), SEAL_OK);
	ck_assert_int_eq(open_msg(rx, T0 + 100, p[0], len[0], NULL, NULL), SEAL_ERR_STALE);
	ck_assert_int_eq(open_msg(rx, T0 + 100, p[1], len[1], NULL, NULL), SEAL_ERR_REPLAYED);
	/* the sixth evicts the second (ts T0+10), now stale as well */
	ck_assert_int_eq(open_msg(rx, T0 + 100, p[5], len[5], NULL, NULL), SEAL_OK);
	ck_assert_int_eq(open_msg(rx, T0 + 100, p[1], len[1], NULL, NULL), SEAL_ERR_STALE);
	for (int i = 2; i < 6; i++)
		ck_assert_int_eq(open_msg(rx, T0 + 100, p[i], len[i], NULL, NULL),
				 SEAL_ERR_REPLAYED);
	/* fresh packets at or below the floor are stale; above it they pass */
	size_t l;
	uint8_t *q = seal_msg(tx, "f", T0 + 10, "at the floor", &l);
	ck_assert_int_eq(open_msg(rx, T0 + 100, q, l, NULL, NULL), SEAL_ERR_STALE);
	free(q);
	q = seal_msg(tx, "f", T0 + 11, "just above", &l);
	ck_assert_int_eq(open_msg(rx, T0 + 100, q, l, NULL, NULL), SEAL_OK);
	free(q);
	ck_assert_uint_eq(seal_count(rx, SEAL_ERR_STALE), 3);
	ck_assert_uint_eq(seal_count(rx, SEAL_OK), 7);
	for (int i = 0; i < 6; i++)
		free(p[i]);
	seal_delete(tx);
	seal_delete(rx);
}
END_TEST

START_TEST(cache_holds_exactly_the_last_n)
{
	/* Rising timestamps, so the floor is always the last evicted one: the
	 * last 64 accepted must be found (replayed), the one before them is
	 * stale.  A probe chain broken by a deletion would let one through. */
	enum { N = 64, ROUNDS = 1500 };
	struct seal *s = seal_with(UINT64_C(1) << 40, N, secret_a);
	uint8_t *hist[N + 1] = { 0 };
	size_t hist_len[N + 1] = { 0 };

	for (int r = 0; r < ROUNDS; r++) {
		size_t len;
		uint8_t *p = seal_msg(s, "order", T0 + (uint64_t)r, "x", &len);

		ck_assert_int_eq(open_msg(s, T0 + ROUNDS, p, len, NULL, NULL), SEAL_OK);
		free(hist[N]);
		memmove(hist + 1, hist, N * sizeof(hist[0]));
		memmove(hist_len + 1, hist_len, N * sizeof(hist_len[0]));
		hist[0] = p;
		hist_len[0] = len;
		if (r % 7 != 0 && r != ROUNDS - 1)
			continue;
		for (int i = 0; i <= N && hist[i]; i++)
			ck_assert_msg(open_msg(s, T0 + ROUNDS, hist[i], hist_len[i], NULL, NULL) ==
				      (i < N ? SEAL_ERR_REPLAYED : SEAL_ERR_STALE),
				      "round %d, %d back", r, i);
	}
	ck_assert_uint_eq(seal_count(s, SEAL_OK), ROUNDS);
	for (int i = 0; i <= N; i++)
		free(hist[i]);
	seal_delete(s);
}
END_TEST

START_TEST(expired_entries_leave_and_clock_steps_back)
{
	struct seal *tx = seal_with(1000, 64, secret_a);
	struct seal *rx = seal_with(1000, 64, secret_a);
	uint8_t *old[3];
	size_t len[3];

	for (int i = 0; i < 3; i++) {
		old[i] = seal_msg(tx, "e", T0, "early", &len[i]);
		ck_assert_int_eq(open_msg(rx, T0, old[i], len[i], NULL, NULL), SEAL_OK);
	}
	/* an hour later, new packets sweep the expired ones out */
	for (int i = 0; i < 3; i++) {
		size_t l;
		uint8_t *q = seal_msg(tx, "e", T0 + 3600000, "late", &l);
		ck_assert_int_eq(open_msg(rx, T0 + 3600000, q, l, NULL, NULL), SEAL_OK);
		free(q);
	}
	/* our wall clock steps back an hour: the evicted packets are within
	 * the window again, but the floor still refuses them */
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(open_msg(rx, T0, old[i], len[i], NULL, NULL), SEAL_ERR_STALE);
	for (int i = 0; i < 3; i++)
		free(old[i]);
	seal_delete(tx);
	seal_delete(rx);
}
END_TEST

START_TEST(replays_never_pass_under_load)
{
	/* Packets from senders whose clocks differ a little, some replayed
	 * later at random: the small cache keeps evicting and the floor keeps
	 * rising; no replay may ever open.  (The floor only tracks time when
	 * clock skew is small against the time the cache covers: a full cache
	 * is stricter, by design.) */
	unsigned seed = 12345;
	const char *env = getenv("SEAL_TEST_SEED");
	if (env)
		seed = (unsigned)strtoul(env, NULL, 10);
	printf("replays_never_pass_under_load: seed %u (SEAL_TEST_SEED)\n", seed);
	srand(seed);

	struct seal *tx = seal_with(2000, 64, secret_a);
	struct seal *rx = seal_with(2000, 64, secret_a);
	enum { KEEP = 256, ROUNDS = 6000 };
	uint8_t *kept[KEEP] = { 0 };
	size_t kept_len[KEEP] = { 0 };
	uint64_t now = T0, ok = 0, replays = 0;

	for (int r = 0; r < ROUNDS; r++) {
		now += (uint64_t)(rand() % 3);
		uint64_t ts = now - 20 + (uint64_t)(rand() % 40);  /* sender skew */
		size_t len;
		uint8_t *p = seal_msg(tx, "load", ts, "payload", &len);
		enum seal_err e = open_msg(rx, now, p, len, NULL, NULL);
		ck_assert(e == SEAL_OK || e == SEAL_ERR_STALE);
		ok += e == SEAL_OK;
		int k = rand() % KEEP;
		if (e == SEAL_OK) {
			free(kept[k]);
			kept[k] = p;
			kept_len[k] = len;
		} else {
			free(p);
		}
		k = rand() % KEEP;
		if (kept[k]) {
			e = open_msg(rx, now, kept[k], kept_len[k], NULL, NULL);
			ck_assert_msg(e == SEAL_ERR_REPLAYED || e == SEAL_ERR_STALE,
				      "round %d: replay gave %s", r, seal_err_name(e));
			replays++;
		}
	}
	ck_assert_uint_eq(seal_count(rx, SEAL_OK), ok);
	ck_assert_uint_gt(ok, ROUNDS / 4);
	ck_assert_uint_eq(seal_count(rx, SEAL_ERR_REPLAYED) + seal_count(rx, SEAL_ERR_STALE),
			  ROUNDS - ok + replays);
	for (int k = 0; k < KEEP; k++)
		free(kept[k]);
	seal_delete(tx);
	seal_delete(rx);
}
END_TEST

/* ---- the replay cache's size ----------------------------------------- */

/* Seals a packet stamped @ts, opens it at @now (it must open), and returns
 * it for a later replay; *@len gets its length. */
static uint8_t *accept_one(struct seal *tx, struct seal *rx, uint64_t ts, uint64_t now,
			   size_t *len)
{
	uint8_t *p = seal_msg(tx, "grow", ts, "nonce", len);

	ck_assert_int_eq(open_msg(rx, now, p, *len, NULL, NULL), SEAL_OK);
	return p;
}

/* The capacity after @k inserts that never expire, under ceiling @max. */
static size_t cap_after(size_t k, size_t max)
{
	size_t c = SEAL_REPLAY_CACHE_INITIAL;

	while (c < k && c < max)
		c <<= 1;
	return c;
}

START_TEST(cache_starts_small)
{
	struct seal *def = seal_with(SEAL_WINDOW_MS_DEFAULT, SEAL_REPLAY_CACHE_DEFAULT, secret_a);
	struct seal *small = seal_with(1000, 16, secret_a);
	struct seal *odd = seal_with(1000, 3, secret_a);
	struct seal *huge = seal_with(1000, SIZE_MAX, secret_a);

	ck_assert_uint_eq(seal_cache_capacity(def), SEAL_REPLAY_CACHE_INITIAL);
	ck_assert_uint_eq(seal_cache_capacity(small), 16);
	ck_assert_uint_eq(seal_cache_capacity(odd), 4);
	ck_assert_uint_eq(seal_cache_capacity(huge), SEAL_REPLAY_CACHE_INITIAL);

	/* an idle agent: 3 packets a second for ten minutes, ~360 of them
	 * inside the two-minute window at any time; the cache never grows */
	uint64_t now = T0;
	for (int i = 0; i < 1800; i++) {
		size_t len;

		now += 333;
		free(accept_one(small, def, now, now, &len));
		ck_assert_uint_eq(seal_cache_capacity(def), SEAL_REPLAY_CACHE_INITIAL);
	}
	ck_assert_uint_eq(seal_count(def, SEAL_OK), 1800);
	seal_delete(def);
	seal_delete(small);
	seal_delete(odd);
	seal_delete(huge);
}
END_TEST

START_TEST(cache_grows_to_its_ceiling_and_no_further)
{
	/* Nothing expires (huge window, rising timestamps): the cache must
	 * double exactly when full, stop at the ceiling (3000 -> 4096), and
	 * after each doubling still know every nonce it held before it. */
	enum { MAX = 4096, KEEP = MAX + 1, TOTAL = 3 * MAX };
	struct seal *tx = seal_with(1000, 16, secret_a);
	struct seal *rx = seal_with(UINT64_C(1) << 40, 3000, secret_a);
	uint8_t **p = calloc(KEEP, sizeof(*p));
	size_t *len = calloc(KEEP, sizeof(*len));
	const uint64_t now = T0 + TOTAL;

	ck_assert_ptr_nonnull(p);
	ck_assert_ptr_nonnull(len);
	for (size_t k = 0; k < TOTAL; k++) {
		size_t cap_before = seal_cache_capacity(rx), l;
		uint8_t *q = accept_one(tx, rx, T0 + k, now, &l);

		if (k < KEEP) {
			p[k] = q;
			len[k] = l;
		} else {
			free(q);
		}
		ck_assert_msg(seal_cache_capacity(rx) == cap_after(k + 1, MAX),
			      "after %zu inserts: capacity %zu", k + 1, seal_cache_capacity(rx));
		if (seal_cache_capacity(rx) == cap_before)
			continue;
		/* it just doubled: every nonce recorded so far is a replay */
		for (size_t i = 0; i <= k; i++)
			ck_assert_msg(open_msg(rx, now, p[i], len[i], NULL, NULL) ==
				      SEAL_ERR_REPLAYED, "grown to %zu: packet %zu",
				      seal_cache_capacity(rx), i);
	}
	ck_assert_uint_eq(seal_cache_capacity(rx), MAX);
	/* at the ceiling the floor rule holds: the first MAX + 1 inserts
	 * evicted packet 0 (ts T0) and 2 * MAX more have gone since */
	for (size_t i = 0; i < KEEP; i++)
		ck_assert_int_eq(open_msg(rx, now, p[i], len[i], NULL, NULL), SEAL_ERR_STALE);
	ck_assert_uint_eq(seal_count(rx, SEAL_OK), TOTAL);
	for (size_t i = 0; i < KEEP; i++)
		free(p[i]);
	free(p);
	free(len);
	seal_delete(tx);
	seal_delete(rx);
}
END_TEST

START_TEST(cache_at_ceiling_after_growth_raises_floor)
{
	/* grown from 1024 to its ceiling of 2048; one more evicts the oldest
	 * and raises the floor to it, exactly as a cache born full does */
	enum { MAX = 2048 };
	struct seal *tx = seal_with(1000, 16, secret_a);
	struct seal *rx = seal_with(UINT64_C(1) << 40, MAX, secret_a);
	uint8_t *p[MAX + 2];
	size_t len[MAX + 2];
	const uint64_t now = T0 + 10 * MAX;

	for (size_t k = 0; k < MAX; k++)
		p[k] = accept_one(tx, rx, T0 + 10 * k, now, &len[k]);
	ck_assert_uint_eq(seal_cache_capacity(rx), MAX);
	p[MAX] = accept_one(tx, rx, T0 + 10 * MAX, now, &len[MAX]);
	ck_assert_uint_eq(seal_cache_capacity(rx), MAX);
	ck_assert_int_eq(open_msg(rx, now, p[0], len[0], NULL, NULL), SEAL_ERR_STALE);
	for (size_t i = 1; i <= MAX; i++)
		ck_assert_int_eq(open_msg(rx, now, p[i], len[i], NULL, NULL), SEAL_ERR_REPLAYED);
	/* fresh packets: at the floor stale, just above it accepted */
	size_t l;
	uint8_t *q = seal_msg(tx, "grow", T0, "at the floor", &l);
	ck_assert_int_eq(open_msg(rx, now, q, l, NULL, NULL), SEAL_ERR_STALE);
	free(q);
	p[MAX + 1] = accept_one(tx, rx, T0 + 1, now, &len[MAX + 1]);
	ck_assert_int_eq(open_msg(rx, now, p[1], len[1], NULL, NULL), SEAL_ERR_STALE);
	ck_assert_uint_eq(seal_cache_capacity(rx), MAX);
	for (size_t i = 0; i < MAX + 2; i++)
		free(p[i]);
	seal_delete(tx);
	seal_delete(rx);
}
END_TEST

START_TEST(growth_rehashes_a_wrapped_ring)
{
	/* 600 early packets expire and are swept from the head while new ones
	 * arrive, so when the ring fills its oldest live entry sits at index
	 * 600, and the live entries wrap around its end.  The doubling must
	 * carry all of them across. */
	enum { EARLY = 600, LATE = 2049 };
	const uint64_t w = 10000, t1 = T0 + 2 * w;
	struct seal *tx = seal_with(1000, 16, secret_a);
	struct seal *rx = seal_with(w, 4096, secret_a);
	uint8_t **early = calloc(EARLY, sizeof(*early)), **late = calloc(LATE, sizeof(*late));
	size_t *elen = calloc(EARLY, sizeof(*elen)), *llen = calloc(LATE, sizeof(*llen));

	ck_assert(early && late && elen && llen);
	for (size_t i = 0; i < EARLY; i++)
		early[i] = accept_one(tx, rx, T0, T0, &elen[i]);
	for (size_t k = 0; k < LATE; k++) {
		size_t before = seal_cache_capacity(rx);

		late[k] = accept_one(tx, rx, t1, t1, &llen[k]);
		/* the sweep takes 4 early ones per insert: after 150 inserts
		 * only late ones are left, and the ring is full at 1024 */
		if (k + 1 == 1025 || k + 1 == 2049) {
			ck_assert_uint_eq(seal_cache_capacity(rx), 2 * before);
			for (size_t i = 0; i <= k; i++)
				ck_assert_msg(open_msg(rx, t1, late[i], llen[i], NULL, NULL) ==
					      SEAL_ERR_REPLAYED, "grown to %zu: packet %zu",
					      2 * before, i);
		} else {
			ck_assert_uint_eq(seal_cache_capacity(rx), before);
		}
	}
	ck_assert_uint_eq(seal_cache_capacity(rx), 4096);
	/* the early ones left through the sweep: stale by the window, and by
	 * the floor even when the clock steps back */
	for (size_t i = 0; i < EARLY; i++) {
		ck_assert_int_eq(open_msg(rx, t1, early[i], elen[i], NULL, NULL), SEAL_ERR_STALE);
		ck_assert_int_eq(open_msg(rx, T0, early[i], elen[i], NULL, NULL), SEAL_ERR_STALE);
	}
	ck_assert_uint_eq(seal_count(rx, SEAL_ERR_STALE), 2 * EARLY);
	for (size_t i = 0; i < EARLY; i++)
		free(early[i]);
	for (size_t i = 0; i < LATE; i++)
		free(late[i]);
	free(early);
	free(late);
	free(elen);
	free(llen);
	seal_delete(tx);
	seal_delete(rx);
}
END_TEST

/* An allocator for the cache's resizes that fails calls [fail_from, fail_to). */
static unsigned alloc_calls, alloc_fail_from, alloc_fail_to;

static void *flaky_calloc(size_t n, size_t size)
{
	unsigned c = alloc_calls++;

	if (c >= alloc_fail_from && c < alloc_fail_to)
		return NULL;
	return calloc(n, size);
}

START_TEST(growth_failure_evicts_and_raises_floor)
{
	enum { CAP = SEAL_REPLAY_CACHE_INITIAL, TOTAL = 3 * CAP + 3 };
	struct seal *tx = seal_with(1000, 16, secret_a);
	struct seal *rx = seal_with(UINT64_C(1) << 40, 4 * CAP, secret_a);
	uint8_t **p = calloc(TOTAL, sizeof(*p));
	size_t *len = calloc(TOTAL, sizeof(*len)), k = 0;
	const uint64_t now = T0 + TOTAL;

	ck_assert(p && len);
	alloc_calls = 0;
	alloc_fail_from = 0;
	alloc_fail_to = 2;               /* the first doubling: ring and table fail */
	seal_cache_alloc_set(rx, flaky_calloc);
	for (; k < CAP; k++)
		p[k] = accept_one(tx, rx, T0 + k, now, &len[k]);
	ck_assert_uint_eq(alloc_calls, 0);

	/* the ring is full and the doubling fails: the oldest is evicted and
	 * the floor rises to it, as at the ceiling */
	p[k] = accept_one(tx, rx, T0 + k, now, &len[k]);
	k++;
	ck_assert_uint_eq(alloc_calls, 2);
	ck_assert_uint_eq(seal_cache_capacity(rx), CAP);
	ck_assert_int_eq(open_msg(rx, now, p[0], len[0], NULL, NULL), SEAL_ERR_STALE);
	ck_assert_int_eq(open_msg(rx, now, p[1], len[1], NULL, NULL), SEAL_ERR_REPLAYED);

	/* no retry, so no allocation, for another ring's worth of inserts */
	for (; k < 2 * CAP + 1; k++)
		p[k] = accept_one(tx, rx, T0 + k, now, &len[k]);
	ck_assert_uint_eq(alloc_calls, 2);
	ck_assert_uint_eq(seal_cache_capacity(rx), CAP);
	ck_assert_int_eq(open_msg(rx, now, p[k - CAP - 1], len[k - CAP - 1], NULL, NULL),
			 SEAL_ERR_STALE);
	for (size_t i = k - CAP; i < k; i++)
		ck_assert_int_eq(open_msg(rx, now, p[i], len[i], NULL, NULL), SEAL_ERR_REPLAYED);

	/* the retry gets its ring but not its table: nothing leaks, the cache
	 * stays as it was and evicts */
	alloc_fail_from = 3;
	alloc_fail_to = 4;
	p[k] = accept_one(tx, rx, T0 + k, now, &len[k]);
	k++;
	ck_assert_uint_eq(alloc_calls, 4);
	ck_assert_uint_eq(seal_cache_capacity(rx), CAP);
	ck_assert_int_eq(open_msg(rx, now, p[k - CAP - 1], len[k - CAP - 1], NULL, NULL),
			 SEAL_ERR_STALE);

	/* memory is back: after another ring's worth the doubling succeeds */
	for (; k < 3 * CAP + 2; k++)
		p[k] = accept_one(tx, rx, T0 + k, now, &len[k]);
	ck_assert_uint_eq(alloc_calls, 4);
	ck_assert_uint_eq(seal_cache_capacity(rx), CAP);
	p[k] = accept_one(tx, rx, T0 + k, now, &len[k]);
	k++;
	ck_assert_uint_eq(alloc_calls, 6);
	ck_assert_uint_eq(seal_cache_capacity(rx), 2 * CAP);
	/* everything evicted before is stale, everything held a replay */
	for (size_t i = 0; i < k - CAP - 1; i++)
		ck_assert_int_eq(open_msg(rx, now, p[i], len[i], NULL, NULL), SEAL_ERR_STALE);
	for (size_t i = k - CAP - 1; i < k; i++)
		ck_assert_msg(open_msg(rx, now, p[i], len[i], NULL, NULL) == SEAL_ERR_REPLAYED,
			      "packet %zu of %zu", i, k);
	for (size_t i = 0; i < TOTAL; i++)
		free(p[i]);
	free(p);
	free(len);
	seal_delete(tx);
	seal_delete(rx);
}
END_TEST

START_TEST(cache_shrinks_when_quiet)
{
	/* A burst of 3000 live nonces grows the cache to 4096; then traffic
	 * falls to ~100 live nonces (window 100 ms, one packet per ms) and it
	 * halves back, step by step, to where it started, and no further.
	 * The recent packets stay replays across every halving. */
	enum { BURST = 3000, ROUNDS = 9000, RECENT = 64 };
	const uint64_t w = 100;
	struct seal *tx = seal_with(1000, 16, secret_a);
	struct seal *rx = seal_with(w, 8192, secret_a);
	uint8_t *recent[RECENT] = { 0 };
	size_t rlen[RECENT] = { 0 }, shrinks = 0;

	for (int i = 0; i < BURST; i++) {
		size_t l;

		free(accept_one(tx, rx, T0, T0, &l));
	}
	ck_assert_uint_eq(seal_cache_capacity(rx), 4096);
	for (int i = 0; i < ROUNDS; i++) {
		uint64_t now = T0 + 1000 + (uint64_t)i;
		size_t before = seal_cache_capacity(rx), after, slot = (size_t)i % RECENT;

		free(recent[slot]);
		recent[slot] = accept_one(tx, rx, now, now, &rlen[slot]);
		after = seal_cache_capacity(rx);
		if (after == before)
			continue;
		ck_assert_uint_eq(after, before / 2);
		ck_assert_uint_ge(after, SEAL_REPLAY_CACHE_INITIAL);
		shrinks++;
		for (int j = 0; j < RECENT && j <= i; j++)
			ck_assert_int_eq(open_msg(rx, now, recent[j], rlen[j], NULL, NULL),
					 SEAL_ERR_REPLAYED);
	}
	ck_assert_uint_eq(shrinks, 2);
	ck_assert_uint_eq(seal_cache_capacity(rx), SEAL_REPLAY_CACHE_INITIAL);
	ck_assert_uint_eq(seal_count(rx, SEAL_OK), BURST + ROUNDS);
	for (int j = 0; j < RECENT; j++)
		free(recent[j]);
	seal_delete(tx);
	seal_delete(rx);
}
END_TEST

START_TEST(keyring_rotation)
{
	uint8_t ka[SEAL_KEY_BYTES], kb[SEAL_KEY_BYTES], kc[SEAL_KEY_BYTES];
	uint8_t kd[SEAL_KEY_BYTES], ke[SEAL_KEY_BYTES];
	struct seal *a = seal_with(10000, 64, NULL);
	struct seal *rx = seal_with(10000, 64, NULL);
	size_t la, la2, lb;

	ck_assert_int_eq(seal_derive_key(secret_a, ka), 0);
	ck_assert_int_eq(seal_derive_key(secret_b, kb), 0);
	ck_assert_int_eq(seal_derive_key("third", kc), 0);
	ck_assert_int_eq(seal_derive_key("fourth", kd), 0);
	ck_assert_int_eq(seal_derive_key("fifth", ke), 0);

	ck_assert_int_eq(seal_key_add(a, ka), 0);
	uint8_t *pa = seal_msg(a, "old", T0, "sealed with A", &la);
	ck_assert_int_eq(seal_key_add(a, kb), 0);   /* the first added still seals */
	uint8_t *pa2 = seal_msg(a, "old", T0, "still A", &la2);
	ck_assert_int_eq(seal_key_use(a, kb), 0);
	uint8_t *pb = seal_msg(a, "new", T0, "sealed with B", &lb);

	/* a receiver that already rotated: B first, A still known */
	ck_assert_int_eq(seal_key_add(rx, kb), 0);
	ck_assert_int_eq(seal_key_add(rx, ka), 0);
	ck_assert_int_eq(seal_key_use(rx, kb), 0);
	char plain[64];
	ck_assert_int_eq(open_msg(rx, T0, pa, la, plain, NULL), SEAL_OK);
	ck_assert_str_eq(plain, "sealed with A");
	ck_assert_int_eq(open_msg(rx, T0, pb, lb, plain, NULL), SEAL_OK);
	ck_assert_str_eq(plain, "sealed with B");

	/* A retired: A-sealed packets no longer name a key we hold */
	ck_assert_int_eq(seal_key_remove(rx, ka), 0);
	ck_assert_int_eq(open_msg(rx, T0, pa2, la2, NULL, NULL), SEAL_ERR_BAD_KEY);
	ck_assert_uint_eq(seal_count(rx, SEAL_ERR_BAD_KEY), 1);

	/* the ring's rules */
	ck_assert_int_eq(seal_key_remove(rx, ka), -ENOENT);
	ck_assert_int_eq(seal_key_use(rx, ka), -ENOENT);
	ck_assert_int_eq(seal_key_remove(rx, kb), -EBUSY);   /* the sealing key */
	ck_assert_int_eq(seal_key_add(rx, kb), -EEXIST);
	ck_assert_int_eq(seal_key_add(rx, kc), 0);
	ck_assert_int_eq(seal_key_add(rx, kd), 0);
	ck_assert_int_eq(seal_key_add(rx, ka), 0);
	ck_assert_int_eq(seal_key_add(rx, ke), -ENOSPC);
	/* removal compacts the ring and keeps the sealing key */
	ck_assert_int_eq(seal_key_use(rx, ka), 0);
	ck_assert_int_eq(seal_key_remove(rx, kb), 0);
	ck_assert_int_eq(seal_key_remove(rx, kc), 0);
	size_t l;
	uint8_t *q = seal_msg(rx, "rx", T0, "A again", &l);
	struct seal *only_a = seal_with(10000, 64, secret_a);
	ck_assert_int_eq(open_msg(only_a, T0, q, l, NULL, NULL), SEAL_OK);
	ck_assert_int_eq(open_msg(only_a, T0, pb, lb, NULL, NULL), SEAL_ERR_BAD_KEY);
	free(q);
	free(pa);
	free(pa2);
	free(pb);
	seal_delete(only_a);
	seal_delete(a);
	seal_delete(rx);
}
END_TEST

START_TEST(size_bounds)
{
	struct seal *s = seal_with(1000, 64, secret_a);
	char msg[201];
	size_t len, out_len = 0;

	memset(msg, 'm', 200);
	msg[200] = '\0';
	uint8_t *p = seal_msg(s, "big", T0, msg, &len);
	ck_assert_uint_eq(len, 200 + 3 + 55);

	/* longer than the caller's bound */
	uint8_t *out = malloc(200);
	ck_assert_ptr_nonnull(out);
	ck_assert_int_eq(seal_open(s, T0, p, len, len - 1, out, 200, &out_len, NULL),
			 SEAL_ERR_TOO_LARGE);
	/* plaintext larger than the output */
	uint8_t *small = malloc(199);
	ck_assert_ptr_nonnull(small);
	ck_assert_int_eq(seal_open(s, T0, p, len, len, small, 199, &out_len, NULL),
			 SEAL_ERR_TOO_LARGE);
	ck_assert_uint_eq(seal_count(s, SEAL_ERR_TOO_LARGE), 2);
	/* exactly at both bounds: opens, out_cap < in_len, no byte written past */
	ck_assert_int_eq(seal_open(s, T0, p, len, len, out, 200, &out_len, NULL), SEAL_OK);
	ck_assert_uint_eq(out_len, 200);
	ck_assert_mem_eq(out, msg, 200);

	/* sealing: one byte short of the need, then exactly */
	uint8_t *buf = malloc(len);
	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(seal_seal(s, "big", T0, (const uint8_t *)msg, 200, buf, len - 1),
			 -EMSGSIZE);
	ck_assert_int_eq(seal_seal(s, "big", T0, (const uint8_t *)msg, 200, buf, len),
			 (long)len);
	ck_assert_int_eq(seal_seal(s, "big", T0, (const uint8_t *)msg, SIZE_MAX - 10, buf, len),
			 -EMSGSIZE);
	free(buf);
	free(small);
	free(out);
	free(p);
	seal_delete(s);
}
END_TEST

START_TEST(err_names)
{
	ck_assert_str_eq(seal_err_name(SEAL_OK), "ok");
	ck_assert_str_eq(seal_err_name(SEAL_ERR_MALFORMED), "malformed");
	ck_assert_str_eq(seal_err_name(SEAL_ERR_TOO_LARGE), "too_large");
	ck_assert_str_eq(seal_err_name(SEAL_ERR_VERSION), "version");
	ck_assert_str_eq(seal_err_name(SEAL_ERR_BAD_KEY), "bad_key");
	ck_assert_str_eq(seal_err_name(SEAL_ERR_TAMPERED), "tampered");
	ck_assert_str_eq(seal_err_name(SEAL_ERR_STALE), "stale");
	ck_assert_str_eq(seal_err_name(SEAL_ERR_REPLAYED), "replayed");
	ck_assert_str_eq(seal_err_name(SEAL_ERR__COUNT), "unknown");
}
END_TEST

static Suite *seal_suite(void)
{
	Suite *su = suite_create("seal");
	TCase *tc = tcase_create("seal");

	tcase_add_test(tc, round_trip);
	tcase_add_test(tc, seal_and_open_in_place);
	tcase_add_test(tc, derive_base64_and_passphrase);
	tcase_add_test(tc, wrong_key_is_bad_key);
	tcase_add_test(tc, every_flipped_bit_rejected);
	tcase_add_test(tc, every_truncation_rejected);
	tcase_add_test(tc, bad_header_fields);
	tcase_add_test(tc, replay_rejected);
	tcase_add_test(tc, stale_window_edges);
	tcase_add_test(tc, full_cache_raises_floor);
	tcase_add_test(tc, cache_holds_exactly_the_last_n);
	tcase_add_test(tc, expired_entries_leave_and_clock_steps_back);
	tcase_add_test(tc, replays_never_pass_under_load);
	tcase_add_test(tc, cache_starts_small);
	tcase_add_test(tc, cache_grows_to_its_ceiling_and_no_further);
	tcase_add_test(tc, cache_at_ceiling_after_growth_raises_floor);
	tcase_add_test(tc, growth_rehashes_a_wrapped_ring);
	tcase_add_test(tc, growth_failure_evicts_and_raises_floor);
	tcase_add_test(tc, cache_shrinks_when_quiet);
	tcase_add_test(tc, keyring_rotation);
	tcase_add_test(tc, size_bounds);
	tcase_add_test(tc, err_names);
	suite_add_tcase(su, tc);
	return su;
}

int main(void)
{
	SRunner *sr = srunner_create(seal_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
