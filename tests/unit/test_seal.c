/*
 * tests/unit/test_seal.c - gossip/seal: round trips, key derivation, the
 * keyring, and every rejection path of seal_open(), each checked for its
 * reason and its counter: wrong key, one flipped bit at every position,
 * every truncation, replays, both edges of the timestamp window, the replay
 * cache's rising floor, and the size bounds.
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
