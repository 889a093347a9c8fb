/*
 * gossip/seal.h - authenticated encryption of every UDP packet and every
 * TCP frame, under the cluster's shared secret.  The only module that
 * touches libsodium's AEAD.
 *
 * Sealed layout (all integers big-endian):
 *
 *   +-------+-----+---------+--------+-------------+-----------+----------+------------------+
 *   | magic | ver | key id  | nlen   | sender name | timestamp | nonce    | ciphertext + tag |
 *   | 0x4D  | 1   | 4 bytes | 1 byte | nlen bytes  | 8 bytes   | 24 bytes | plaintext + 16   |
 *   +-------+-----+---------+--------+-------------+-----------+----------+------------------+
 *   \__________________ associated data (authenticated, not secret) ______/
 *
 *   cipher: XChaCha20-Poly1305 IETF, random 192-bit nonce per message.
 *   key id: the first 4 bytes of crypto_generichash(key, context
 *        "meridian/key-id/v1"): names the key without revealing it, so the
 *        opener tries the right key first and tells "wrong key" from
 *        "tampered".
 *   ver: the sealing format and protocol version (SEAL_VERSION); bound in
 *        the associated data with the sender name and timestamp, so none of
 *        them can be changed without the tag failing.
 *   timestamp: sender's wall clock, milliseconds since the Unix epoch.
 *
 * Opening checks, in order, each failure counted by its reason:
 *   too short / bad magic / bad name length  -> SEAL_ERR_MALFORMED
 *   longer than the caller's bound           -> SEAL_ERR_TOO_LARGE
 *   version not understood                   -> SEAL_ERR_VERSION
 *   key id names no key of our ring          -> SEAL_ERR_BAD_KEY
 *   the tag fails under the named key        -> SEAL_ERR_TAMPERED
 *   timestamp outside +-window of our clock  -> SEAL_ERR_STALE
 *   nonce already seen inside the window     -> SEAL_ERR_REPLAYED
 *
 * Replay cache: a bounded hash set of recent nonces with their timestamps.
 * It starts at SEAL_REPLAY_CACHE_INITIAL entries and doubles when full of
 * entries still inside the window, up to the capacity given to seal_new();
 * it halves back (not below where it started) once it has stayed under a
 * quarter full for a while.  So an idle agent holds a few hundred nonces in
 * tens of KiB, and only a busy one pays for the full capacity.  When it is
 * full at that capacity (or a doubling cannot get memory) the oldest entry
 * is evicted and the "floor" rises to that entry's timestamp: anything at
 * or below the floor is rejected as stale.  So a full cache makes us
 * stricter, never open to replays.  Resizing keeps every entry: a nonce
 * seen before it is still a replay after it.
 *
 * Keyring: up to SEAL_KEYS_MAX keys; the first seals, all are tried to
 * open.  Rotation = add the new key everywhere, make it first everywhere,
 * remove the old one: no protocol change.
 *
 * Key derivation: the secret is either a `meridian keygen` key (base64 of
 * 32 random bytes) or any passphrase.  Either way the 32-byte key is
 * crypto_generichash(secret bytes, key = the fixed context
 * "meridian/cluster-key/v1").  A base64 secret is decoded first, so the
 * same key material written with different padding derives the same key.
 */
#ifndef MERIDIAN_GOSSIP_SEAL_H
#define MERIDIAN_GOSSIP_SEAL_H

#include <stddef.h>
#include <stdint.h>

#define SEAL_MAGIC 0x4D
#define SEAL_VERSION 1
#define SEAL_KEY_BYTES 32
#define SEAL_KEYS_MAX 4
#define SEAL_NAME_MAX 64
#define SEAL_NONCE_BYTES 24
#define SEAL_TAG_BYTES 16
/* header + nonce + tag with the longest sender name */
#define SEAL_OVERHEAD_MAX (7 + SEAL_NAME_MAX + 8 + SEAL_NONCE_BYTES + SEAL_TAG_BYTES)
#define SEAL_WINDOW_MS_DEFAULT (120 * 1000)
#define SEAL_REPLAY_CACHE_DEFAULT 65536
/* where the replay cache starts (a smaller capacity starts at itself) */
#define SEAL_REPLAY_CACHE_INITIAL 1024

enum seal_err {
	SEAL_OK = 0,
	SEAL_ERR_MALFORMED,
	SEAL_ERR_TOO_LARGE,
	SEAL_ERR_VERSION,
	SEAL_ERR_BAD_KEY,
	SEAL_ERR_TAMPERED,
	SEAL_ERR_STALE,
	SEAL_ERR_REPLAYED,
	SEAL_ERR__COUNT
};

/* "malformed", "too_large", "version", "bad_key", "tampered", "stale",
 * "replayed" - used as metric labels. */
const char *seal_err_name(enum seal_err e);

struct seal;

/*
 * Creates a sealer.  @window_ms: accepted clock difference either way;
 * @cache_entries: the most nonces the replay cache may hold (rounded up to
 * a power of two, at most 2^24); it starts at the lesser of that and
 * SEAL_REPLAY_CACHE_INITIAL and grows on demand.  Calls sodium_init().
 * NULL when out of memory or libsodium fails.
 */
struct seal *seal_new(uint64_t window_ms, size_t cache_entries);
void seal_delete(struct seal *s);  /* wipes the keys */

/*
 * Derives a key from @secret (NUL-terminated; base64 key or passphrase)
 * into @key.  Returns 0, or -EINVAL for an empty secret.
 */
int seal_derive_key(const char *secret, uint8_t key[SEAL_KEY_BYTES]);

/* Writes a new random secret, base64 (standard, padded), NUL-terminated,
 * into @out (at least 45 bytes). */
void seal_keygen(char *out, size_t outlen);

/* Adds @key to the ring; the first key added seals.  Returns 0, -EEXIST,
 * or -ENOSPC when the ring is full. */
int seal_key_add(struct seal *s, const uint8_t key[SEAL_KEY_BYTES]);
/* Makes the already added @key the sealing key.  0 or -ENOENT. */
int seal_key_use(struct seal *s, const uint8_t key[SEAL_KEY_BYTES]);
/* Removes @key; the sealing key cannot be removed.  0, -ENOENT, -EBUSY. */
int seal_key_remove(struct seal *s, const uint8_t key[SEAL_KEY_BYTES]);

/*
 * Seals @plain (@plain_len bytes) from sender @name at wall time @now_ms
 * into @out (capacity @out_cap).  Returns the sealed length, or -EINVAL
 * (bad name: empty or longer than SEAL_NAME_MAX, or no key), or -EMSGSIZE
 * when @out is too small (needs plain_len + 7 + strlen(name) + 48).
 */
long seal_seal(struct seal *s, const char *name, uint64_t now_ms,
	       const uint8_t *plain, size_t plain_len, uint8_t *out, size_t out_cap);

/*
 * Opens @in (@in_len bytes) at wall time @now_ms into @out (capacity
 * @out_cap; @in_len bytes always suffice).  @out may be @in: the transport
 * opens frames in place.  @max_len: reject anything
 * longer as SEAL_ERR_TOO_LARGE.  On success returns SEAL_OK, stores the
 * plaintext length in *@out_len and the sender name, NUL-terminated, in
 * @sender (SEAL_NAME_MAX + 1 bytes), and records the nonce.  On failure
 * returns the reason, counts it, and @out holds nothing useful.
 */
enum seal_err seal_open(struct seal *s, uint64_t now_ms, const uint8_t *in, size_t in_len,
			size_t max_len, uint8_t *out, size_t out_cap, size_t *out_len,
			char sender[SEAL_NAME_MAX + 1]);

/* Failures counted so far for reason @e; opened counts SEAL_OK. */
uint64_t seal_count(const struct seal *s, enum seal_err e);

/* Entries the replay cache has room for now (a power of two, between its
 * starting size and the capacity given to seal_new()); for metrics and
 * tests.  It costs 48 bytes per entry (ring 32, index 2 x 8). */
size_t seal_cache_capacity(const struct seal *s);

/*
 * Test seam: the allocator the replay cache uses when it grows or shrinks
 * (calloc by default; NULL restores it).  @alloc must behave like calloc,
 * returning zeroed memory that free() releases, or NULL.  Lets tests fail a
 * doubling on purpose; a failed doubling evicts and raises the floor, as a
 * full cache at its capacity does.  Does not affect seal_new().
 */
void seal_cache_alloc_set(struct seal *s, void *(*alloc)(size_t n, size_t size));

#endif
