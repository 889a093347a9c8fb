/*
 * gossip/seal.c - sealing of every UDP packet and TCP frame (see seal.h for
 * the layout and the order of the checks).
 *
 * What a sealed packet promises: it came from a holder of a key of our ring
 * (the AEAD tag), its version, key id, sender name and timestamp were not
 * changed on the way (they are the associated data), and it is not a copy
 * of one we already opened (the timestamp window plus the replay cache).
 * Confidentiality comes with it: member lists and tags are not for
 * eavesdroppers on a WAN between clouds.
 *
 * Choices, and why:
 *
 *  - XChaCha20-Poly1305 with a random 192-bit nonce.  A random nonce needs
 *    no state shared between restarts or between the UDP and TCP paths, and
 *    at 192 bits collisions are out of reach for any number of packets a
 *    cluster will ever send.  The nonce goes to the AEAD as its nonce; the
 *    associated data is magic, version, key id, name length, name and
 *    timestamp, all of which the opener needs before it can decrypt.
 *
 *  - The key id (4 bytes of a keyed hash of the key) lets the opener pick
 *    the one key to try, so the cost of opening does not grow with the ring
 *    and "wrong secret" (a misconfigured node: bad_key) is told apart from
 *    "right secret, bytes changed" (tampered).  Two keys of one ring never
 *    share an id: seal_key_add() refuses the second as -EEXIST (a 2^-32
 *    accident), so each id names exactly one key.
 *
 *  - Checks run cheapest first and the nonce is recorded only once the tag
 *    has verified: bytes from outside the cluster can cost us one Poly1305
 *    at most and can never fill the replay cache or move its floor.
 *
 *  - Replay cache.  Entries (nonce, timestamp) live in a ring in arrival
 *    order (the FIFO used for eviction); an open-addressed table of ring
 *    indices (linear probing, at most half full, deletion by backward
 *    shift, so no tombstones) finds a nonce in O(1).  The table hashes
 *    nonces with SipHash under a random key of its own, so even a keyholder
 *    cannot choose nonces that pile up in one probe chain.  Invariant: every
 *    nonce that ever left the cache had a timestamp at or below the floor,
 *    and the floor never falls; so a replay is caught either by the cache
 *    or, as stale, by the floor.  Entries that fell out of the window are
 *    evicted lazily from the head of the ring (a few per insert, so no
 *    single call pays for a backlog); raising the floor to them costs
 *    nothing while our clock moves forward, and keeps us safe if the wall
 *    clock steps back.  A full cache evicts its oldest entry and raises the
 *    floor to it: stricter, never open.
 *
 *  - The cache grows on demand.  cache_entries is a ceiling, not a size:
 *    the ring starts at SEAL_REPLAY_CACHE_INITIAL entries (or the ceiling,
 *    if lower), and when it is full of entries the expiry sweep cannot
 *    drop (the oldest is still inside the window) ring and table double
 *    together, entries copied in arrival order and re-indexed, until the
 *    ceiling; only there does "evict the oldest, raise the floor" apply.
 *    Allocating up front does not work: the ring is written circularly, so
 *    over time every page of it is touched, and an idle agent holding ~400
 *    live nonces would carry 3 MiB for the 65536 it never needs.
 *    Re-indexing needs no SipHash: the table keeps 32 bits of each hash,
 *    which covers every table we may build (SEAL_CACHE_MAX), so an entry's
 *    new home comes from the old slot alone.  A doubling costs O(size) and
 *    the ring then needs as many inserts again to fill: O(1) amortized, and
 *    the only allocation after seal_new().  If it fails we evict and raise
 *    the floor exactly as at the ceiling (stricter, never open) and retry
 *    only after another ring's worth of inserts, so memory pressure does
 *    not turn into a failing malloc per packet.
 *    It shrinks back, by halves, down to the starting size, once occupancy
 *    has stayed under a quarter for a whole ring's worth of inserts: after
 *    a halving the ring is still at most half full, so it cannot flap, and
 *    the O(size) copy is again paid for by the inserts that preceded it.
 *    Nothing is lost by resizing: every entry moves, the floor stays.
 *
 *  - Keys live in one sodium_malloc'd block (guard pages, mlock'd so they
 *    never reach swap, and wiped by sodium_free); a removed key is wiped
 *    with sodium_memzero at once.  We do not sodium_mprotect the block
 *    between packets: two system calls per datagram is a price the
 *    transport should not pay.
 *
 *  - Nothing is allocated per packet (the cache's rare resize aside).
 *    @out may overlap @in (open) or @plain (seal): the transport may seal
 *    and open in place.
 *
 *  - max_len bounds the sealed length (in_len), the size the transport sees
 *    on the wire; a plaintext larger than out_cap is also too_large.
 */
#include "gossip/seal.h"

#include <errno.h>
#include <limits.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "lib/be.h"

#define SEAL_ID_BYTES 4
/* magic, version, key id, name length */
#define SEAL_FIXED_BYTES (2 + SEAL_ID_BYTES + 1)
#define SEAL_TS_BYTES 8
#define SEAL_AD_MAX (SEAL_FIXED_BYTES + SEAL_NAME_MAX + SEAL_TS_BYTES)
/* the largest ring we build; beyond it the table's 32-bit refs overflow
 * and the memory would dwarf the rest of the agent anyway */
#define SEAL_CACHE_MAX ((size_t)1 << 24)
/* expired entries evicted per insert: more than the one we add, so the
 * lazy sweep keeps up, and few enough to bound one call's work */
#define SEAL_EXPIRE_PER_INSERT 4

/* re-indexing reads a home slot from the 32 bits of hash a slot keeps */
_Static_assert(2 * SEAL_CACHE_MAX - 1 <= UINT32_MAX, "table mask fits the stored hash");

static const char key_context[] = "meridian/cluster-key/v1";
static const char id_context[] = "meridian/key-id/v1";

_Static_assert(SEAL_KEY_BYTES == crypto_aead_xchacha20poly1305_ietf_KEYBYTES, "key size");
_Static_assert(SEAL_NONCE_BYTES == crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, "nonce");
_Static_assert(SEAL_TAG_BYTES == crypto_aead_xchacha20poly1305_ietf_ABYTES, "tag size");
_Static_assert(sizeof(key_context) - 1 >= crypto_generichash_KEYBYTES_MIN &&
	       sizeof(id_context) - 1 >= crypto_generichash_KEYBYTES_MIN, "context length");
_Static_assert(SEAL_OVERHEAD_MAX == SEAL_AD_MAX + SEAL_NONCE_BYTES + SEAL_TAG_BYTES,
	       "overhead");

struct replay_entry {
	uint8_t nonce[SEAL_NONCE_BYTES];
	uint64_t ts;                    /* the packet's timestamp, ms */
};

struct replay_slot {
	uint32_t ref;                   /* ring index + 1; 0 = empty */
	uint32_t hash;                  /* low bits of the nonce's hash */
};

struct seal {
	uint64_t window_ms;

	/* keyring: keys[0..nkeys) in sodium_malloc'd memory; ids are public */
	uint8_t (*keys)[SEAL_KEY_BYTES];
	uint8_t ids[SEAL_KEYS_MAX][SEAL_ID_BYTES];
	unsigned nkeys;
	unsigned use;                   /* index of the sealing key */

	/* replay cache: ring of entries in arrival order + index table */
	struct replay_entry *ring;
	size_t cap;                     /* ring capacity now, power of two */
	size_t min_cap;                 /* where it starts; never shrinks below */
	size_t max_cap;                 /* the ceiling: never grows beyond */
	size_t head;                    /* oldest entry */
	size_t len;
	struct replay_slot *table;
	size_t tmask;                   /* table size - 1 (table = 2 * cap) */
	uint64_t floor;                 /* timestamps <= floor are stale */
	size_t low_run;                 /* inserts in a row under cap / 4 full */
	size_t grow_wait;               /* full inserts left before growing is retried */
	void *(*cache_calloc)(size_t n, size_t size);  /* for resizes; free()d */
	uint8_t hash_key[crypto_shorthash_KEYBYTES];

	uint64_t count[SEAL_ERR__COUNT];
};

const char *seal_err_name(enum seal_err e)
{
	static const char *const names[SEAL_ERR__COUNT] = {
		[SEAL_OK] = "ok",
		[SEAL_ERR_MALFORMED] = "malformed",
		[SEAL_ERR_TOO_LARGE] = "too_large",
		[SEAL_ERR_VERSION] = "version",
		[SEAL_ERR_BAD_KEY] = "bad_key",
		[SEAL_ERR_TAMPERED] = "tampered",
		[SEAL_ERR_STALE] = "stale",
		[SEAL_ERR_REPLAYED] = "replayed",
	};

	if ((unsigned)e >= SEAL_ERR__COUNT)
		return "unknown";
	return names[e];
}

/* Whether [a, a+alen) and [b, b+blen) share a byte. */
static bool overlaps(const void *a, size_t alen, const void *b, size_t blen)
{
	uintptr_t pa = (uintptr_t)a, pb = (uintptr_t)b;

	if (alen == 0 || blen == 0)
		return false;
	return pa < pb + blen && pb < pa + alen;
}

/* ---- keys ------------------------------------------------------------ */

static void key_id(const uint8_t key[SEAL_KEY_BYTES], uint8_t id[SEAL_ID_BYTES])
{
	uint8_t h[crypto_generichash_BYTES];

	crypto_generichash(h, sizeof(h), key, SEAL_KEY_BYTES, (const uint8_t *)id_context,
			   sizeof(id_context) - 1);
	memcpy(id, h, SEAL_ID_BYTES);
}

int seal_derive_key(const char *secret, uint8_t key[SEAL_KEY_BYTES])
{
	uint8_t raw[SEAL_KEY_BYTES];
	size_t raw_len = 0, len;
	const char *b, *e;
	bool is_key = false;

	if (!secret || !*secret)
		return -EINVAL;
	if (sodium_init() < 0)
		return -ENOMEM;
	/* A `meridian keygen` key read from a file carries a newline; the
	 * same 32 bytes must derive the same key however they are written. */
	len = strlen(secret);
	b = secret;
	e = secret + len;
	while (b < e && (*b == ' ' || *b == '\t' || *b == '\n' || *b == '\r'))
		b++;
	while (e > b && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
		e--;
	if (e > b) {
		if (sodium_base642bin(raw, sizeof(raw), b, (size_t)(e - b), NULL, &raw_len, NULL,
				      sodium_base64_VARIANT_ORIGINAL) == 0 &&
		    raw_len == SEAL_KEY_BYTES)
			is_key = true;
		else if (sodium_base642bin(raw, sizeof(raw), b, (size_t)(e - b), NULL, &raw_len,
					   NULL, sodium_base64_VARIANT_ORIGINAL_NO_PADDING) == 0 &&
			 raw_len == SEAL_KEY_BYTES)
			is_key = true;
	}
	if (is_key)
		crypto_generichash(key, SEAL_KEY_BYTES, raw, sizeof(raw),
				   (const uint8_t *)key_context, sizeof(key_context) - 1);
	else
		crypto_generichash(key, SEAL_KEY_BYTES, (const uint8_t *)secret, len,
				   (const uint8_t *)key_context, sizeof(key_context) - 1);
	sodium_memzero(raw, sizeof(raw));
	return 0;
}

void seal_keygen(char *out, size_t outlen)
{
	uint8_t raw[SEAL_KEY_BYTES];

	if (!out || outlen == 0)
		return;
	out[0] = '\0';
	if (outlen < sodium_base64_ENCODED_LEN(SEAL_KEY_BYTES, sodium_base64_VARIANT_ORIGINAL))
		return;
	if (sodium_init() < 0)
		return;
	randombytes_buf(raw, sizeof(raw));
	sodium_bin2base64(out, outlen, raw, sizeof(raw), sodium_base64_VARIANT_ORIGINAL);
	sodium_memzero(raw, sizeof(raw));
}

static int key_find(const struct seal *s, const uint8_t key[SEAL_KEY_BYTES])
{
	for (unsigned i = 0; i < s->nkeys; i++)
		if (sodium_memcmp(s->keys[i], key, SEAL_KEY_BYTES) == 0)
			return (int)i;
	return -1;
}

int seal_key_add(struct seal *s, const uint8_t key[SEAL_KEY_BYTES])
{
	uint8_t id[SEAL_ID_BYTES];

	key_id(key, id);
	for (unsigned i = 0; i < s->nkeys; i++)
		if (memcmp(s->ids[i], id, SEAL_ID_BYTES) == 0)
			return -EEXIST;  /* the same key, or one its id cannot tell apart */
	if (s->nkeys == SEAL_KEYS_MAX)
		return -ENOSPC;
	memcpy(s->keys[s->nkeys], key, SEAL_KEY_BYTES);
	memcpy(s->ids[s->nkeys], id, SEAL_ID_BYTES);
	if (s->nkeys == 0)
		s->use = 0;
	s->nkeys++;
	return 0;
}

int seal_key_use(struct seal *s, const uint8_t key[SEAL_KEY_BYTES])
{
	int i = key_find(s, key);

	if (i < 0)
		return -ENOENT;
	s->use = (unsigned)i;
	return 0;
}

int seal_key_remove(struct seal *s, const uint8_t key[SEAL_KEY_BYTES])
{
	int i = key_find(s, key);
	unsigned last;

	if (i < 0)
		return -ENOENT;
	if ((unsigned)i == s->use)
		return -EBUSY;
	last = s->nkeys - 1;
	if ((unsigned)i != last) {
		memcpy(s->keys[i], s->keys[last], SEAL_KEY_BYTES);
		memcpy(s->ids[i], s->ids[last], SEAL_ID_BYTES);
		if (s->use == last)
			s->use = (unsigned)i;
	}
	sodium_memzero(s->keys[last], SEAL_KEY_BYTES);
	memset(s->ids[last], 0, SEAL_ID_BYTES);
	s->nkeys--;
	return 0;
}

/* ---- replay cache ---------------------------------------------------- */

static uint64_t nonce_hash(const struct seal *s, const uint8_t nonce[SEAL_NONCE_BYTES])
{
	uint8_t h[crypto_shorthash_BYTES];
	uint64_t v = 0;

	crypto_shorthash(h, nonce, SEAL_NONCE_BYTES, s->hash_key);
	for (size_t i = 0; i < sizeof(h) && i < 8; i++)
		v |= (uint64_t)h[i] << (8 * i);
	return v;
}

/* Table slot holding @nonce, or the empty slot ending its probe chain.
 * Terminates: the table is never more than half full. */
static size_t replay_probe(const struct seal *s, const uint8_t nonce[SEAL_NONCE_BYTES],
			   uint64_t h)
{
	size_t i = (size_t)h & s->tmask;

	for (;;) {
		const struct replay_slot *sl = &s->table[i];

		if (sl->ref == 0)
			return i;
		if (sl->hash == (uint32_t)h &&
		    memcmp(s->ring[sl->ref - 1].nonce, nonce, SEAL_NONCE_BYTES) == 0)
			return i;
		i = (i + 1) & s->tmask;
	}
}

static bool replay_seen(const struct seal *s, const uint8_t nonce[SEAL_NONCE_BYTES], uint64_t h)
{
	return s->table[replay_probe(s, nonce, h)].ref != 0;
}

/* Empties slot @i, shifting later members of its cluster back so that no
 * probe chain is broken (linear probing without tombstones). */
static void replay_slot_clear(struct seal *s, size_t i)
{
	size_t j = i;

	for (;;) {
		size_t home;

		j = (j + 1) & s->tmask;
		if (s->table[j].ref == 0)
			break;
		home = (size_t)s->table[j].hash & s->tmask;
		/* the entry at j may move to i unless its home lies cyclically
		 * in (i, j] */
		if (i <= j ? (home <= i || home > j) : (home <= i && home > j)) {
			s->table[i] = s->table[j];
			i = j;
		}
	}
	s->table[i].ref = 0;
	s->table[i].hash = 0;
}

/* Drops the oldest entry; the floor rises to its timestamp. */
static void replay_evict_oldest(struct seal *s)
{
	struct replay_entry *e = &s->ring[s->head];
	size_t i = replay_probe(s, e->nonce, nonce_hash(s, e->nonce));

	replay_slot_clear(s, i);
	if (e->ts > s->floor)
		s->floor = e->ts;
	s->head = (s->head + 1) & (s->cap - 1);
	s->len--;
}

/* Moves the cache into a ring of @ncap entries (a power of two, at least
 * s->len) and a table of 2 * @ncap slots, keeping every entry and the
 * floor.  On -ENOMEM the cache is as it was. */
static int replay_resize(struct seal *s, size_t ncap)
{
	struct replay_entry *ring = s->cache_calloc(ncap, sizeof(*ring));
	struct replay_slot *table = s->cache_calloc(2 * ncap, sizeof(*table));
	size_t nmask = 2 * ncap - 1;

	if (!ring || !table) {
		free(ring);
		free(table);
		return -ENOMEM;
	}
	for (size_t n = 0; n < s->len; n++)
		ring[n] = s->ring[(s->head + n) & (s->cap - 1)];
	/* The new table holds distinct nonces only and sees no deletion while
	 * it is built: each entry takes the first free slot from its home. */
	for (size_t i = 0; i <= s->tmask; i++) {
		struct replay_slot sl = s->table[i];
		size_t j;

		if (sl.ref == 0)
			continue;
		sl.ref = (uint32_t)((((size_t)sl.ref - 1 - s->head) & (s->cap - 1)) + 1);
		for (j = sl.hash & nmask; table[j].ref != 0; j = (j + 1) & nmask)
			;
		table[j] = sl;
	}
	free(s->ring);
	free(s->table);
	s->ring = ring;
	s->table = table;
	s->cap = ncap;
	s->tmask = nmask;
	s->head = 0;
	s->low_run = 0;
	return 0;
}

/* Makes room for one more entry in a full ring: doubles it below the
 * ceiling, else (or when that fails) evicts the oldest and raises the
 * floor. */
static void replay_make_room(struct seal *s)
{
	if (s->cap < s->max_cap) {
		if (s->grow_wait > 0)
			s->grow_wait--;
		else if (replay_resize(s, 2 * s->cap) == 0)
			return;
		else
			s->grow_wait = s->cap;
	}
	replay_evict_oldest(s);
}

/* Halves a ring that stayed under a quarter full for a ring's worth of
 * inserts.  A failed allocation just keeps the larger ring. */
static void replay_maybe_shrink(struct seal *s)
{
	if (s->cap <= s->min_cap || s->len >= s->cap / 4) {
		s->low_run = 0;
		return;
	}
	if (++s->low_run < s->cap)
		return;
	s->low_run = 0;
	(void)replay_resize(s, s->cap / 2);
}

/* Records @nonce (not in the cache; @h its hash), evicting as needed. */
static void replay_record(struct seal *s, const uint8_t nonce[SEAL_NONCE_BYTES], uint64_t h,
			  uint64_t ts, uint64_t now_ms)
{
	size_t r, i;

	for (int n = 0; n < SEAL_EXPIRE_PER_INSERT && s->len > 0; n++) {
		uint64_t t = s->ring[s->head].ts;

		if (now_ms <= s->window_ms || t >= now_ms - s->window_ms)
			break;
		replay_evict_oldest(s);
	}
	if (s->len == s->cap)
		replay_make_room(s);
	else
		replay_maybe_shrink(s);
	r = (s->head + s->len) & (s->cap - 1);
	memcpy(s->ring[r].nonce, nonce, SEAL_NONCE_BYTES);
	s->ring[r].ts = ts;
	s->len++;
	i = replay_probe(s, nonce, h);
	s->table[i].ref = (uint32_t)(r + 1);
	s->table[i].hash = (uint32_t)h;
}

/* ---- life cycle ------------------------------------------------------ */

struct seal *seal_new(uint64_t window_ms, size_t cache_entries)
{
	struct seal *s;
	size_t max = 1, cap;

	if (sodium_init() < 0)
		return NULL;
	if (cache_entries > SEAL_CACHE_MAX)
		cache_entries = SEAL_CACHE_MAX;
	while (max < cache_entries)
		max <<= 1;
	cap = max < SEAL_REPLAY_CACHE_INITIAL ? max : SEAL_REPLAY_CACHE_INITIAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->window_ms = window_ms;
	s->cap = cap;
	s->min_cap = cap;
	s->max_cap = max;
	s->tmask = 2 * cap - 1;
	s->cache_calloc = calloc;
	s->ring = calloc(cap, sizeof(*s->ring));
	s->table = calloc(2 * cap, sizeof(*s->table));
	s->keys = sodium_malloc(SEAL_KEYS_MAX * SEAL_KEY_BYTES);
	if (!s->ring || !s->table || !s->keys) {
		seal_delete(s);
		return NULL;
	}
	sodium_memzero(s->keys, SEAL_KEYS_MAX * SEAL_KEY_BYTES);
	randombytes_buf(s->hash_key, sizeof(s->hash_key));
	return s;
}

void seal_delete(struct seal *s)
{
	if (!s)
		return;
	if (s->keys) {
		sodium_memzero(s->keys, SEAL_KEYS_MAX * SEAL_KEY_BYTES);
		sodium_free(s->keys);
	}
	free(s->ring);
	free(s->table);
	sodium_memzero(s, sizeof(*s));
	free(s);
}

size_t seal_cache_capacity(const struct seal *s)
{
	return s->cap;
}

void seal_cache_alloc_set(struct seal *s, void *(*alloc)(size_t n, size_t size))
{
	s->cache_calloc = alloc ? alloc : calloc;
}

uint64_t seal_count(const struct seal *s, enum seal_err e)
{
	if ((unsigned)e >= SEAL_ERR__COUNT)
		return 0;
	return s->count[e];
}

/* ---- sealing and opening --------------------------------------------- */

long seal_seal(struct seal *s, const char *name, uint64_t now_ms,
	       const uint8_t *plain, size_t plain_len, uint8_t *out, size_t out_cap)
{
	size_t nlen, adlen, hdr;
	uint8_t *ct, *p;

	if (!name)
		return -EINVAL;
	nlen = strnlen(name, SEAL_NAME_MAX + 1);
	if (nlen == 0 || nlen > SEAL_NAME_MAX || s->nkeys == 0)
		return -EINVAL;
	adlen = SEAL_FIXED_BYTES + nlen + SEAL_TS_BYTES;
	hdr = adlen + SEAL_NONCE_BYTES;
	if (plain_len > (size_t)LONG_MAX - hdr - SEAL_TAG_BYTES ||
	    plain_len > crypto_aead_xchacha20poly1305_ietf_MESSAGEBYTES_MAX ||
	    out_cap < hdr + plain_len + SEAL_TAG_BYTES)
		return -EMSGSIZE;

	ct = out + hdr;
	/* The plaintext moves first: a caller sealing in place may have it
	 * where the header goes.  Then it is encrypted in place (m == c is
	 * allowed; partial overlap is not). */
	if (plain_len > 0 && plain != ct)
		memmove(ct, plain, plain_len);
	p = out;
	*p++ = SEAL_MAGIC;
	*p++ = SEAL_VERSION;
	memcpy(p, s->ids[s->use], SEAL_ID_BYTES);
	p += SEAL_ID_BYTES;
	*p++ = (uint8_t)nlen;
	memcpy(p, name, nlen);
	p += nlen;
	put_be64(p, now_ms);
	p += SEAL_TS_BYTES;
	randombytes_buf(p, SEAL_NONCE_BYTES);
	crypto_aead_xchacha20poly1305_ietf_encrypt_detached(ct, ct + plain_len, NULL, ct,
							    plain_len, out, adlen, NULL, p,
							    s->keys[s->use]);
	return (long)(hdr + plain_len + SEAL_TAG_BYTES);
}

static enum seal_err fail(struct seal *s, enum seal_err e)
{
	s->count[e]++;
	return e;
}

static bool is_stale(const struct seal *s, uint64_t ts, uint64_t now_ms)
{
	uint64_t d = ts > now_ms ? ts - now_ms : now_ms - ts;

	return d > s->window_ms || ts <= s->floor;
}

enum seal_err seal_open(struct seal *s, uint64_t now_ms, const uint8_t *in, size_t in_len,
			size_t max_len, uint8_t *out, size_t out_cap, size_t *out_len,
			char sender[SEAL_NAME_MAX + 1])
{
	uint8_t ad[SEAL_AD_MAX], nonce[SEAL_NONCE_BYTES], tag[SEAL_TAG_BYTES];
	const uint8_t *ct, *adp, *np;
	size_t nlen, adlen, hdr, plain_len;
	unsigned k;
	uint64_t ts, h;
	int rc;

	if (!in || in_len < SEAL_FIXED_BYTES || in[0] != SEAL_MAGIC)
		return fail(s, SEAL_ERR_MALFORMED);
	nlen = in[SEAL_FIXED_BYTES - 1];
	if (nlen == 0 || nlen > SEAL_NAME_MAX)
		return fail(s, SEAL_ERR_MALFORMED);
	adlen = SEAL_FIXED_BYTES + nlen + SEAL_TS_BYTES;
	hdr = adlen + SEAL_NONCE_BYTES;
	if (in_len < hdr + SEAL_TAG_BYTES)
		return fail(s, SEAL_ERR_MALFORMED);
	if (memchr(in + SEAL_FIXED_BYTES, '\0', nlen))
		return fail(s, SEAL_ERR_MALFORMED);  /* the name must survive as a C string */
	plain_len = in_len - hdr - SEAL_TAG_BYTES;
	if (in_len > max_len || plain_len > out_cap)
		return fail(s, SEAL_ERR_TOO_LARGE);
	if (in[1] != SEAL_VERSION)
		return fail(s, SEAL_ERR_VERSION);
	for (k = 0; k < s->nkeys; k++)
		if (memcmp(s->ids[k], in + 2, SEAL_ID_BYTES) == 0)
			break;
	if (k == s->nkeys)
		return fail(s, SEAL_ERR_BAD_KEY);

	ct = in + hdr;
	if (!overlaps(out, plain_len, in, in_len)) {
		adp = in;
		np = in + adlen;
		rc = crypto_aead_xchacha20poly1305_ietf_decrypt_detached(
			out, NULL, ct, plain_len, ct + plain_len, adp, adlen, np, s->keys[k]);
	} else {
		/* Opening in place: keep what moving the ciphertext would
		 * clobber, then decrypt with m == c, which libsodium allows. */
		memcpy(ad, in, adlen);
		memcpy(nonce, in + adlen, SEAL_NONCE_BYTES);
		memcpy(tag, ct + plain_len, SEAL_TAG_BYTES);
		memmove(out, ct, plain_len);
		adp = ad;
		np = nonce;
		rc = crypto_aead_xchacha20poly1305_ietf_decrypt_detached(
			out, NULL, out, plain_len, tag, adp, adlen, np, s->keys[k]);
	}
	if (rc != 0)
		return fail(s, SEAL_ERR_TAMPERED);
	ts = get_be64(adp + adlen - SEAL_TS_BYTES);
	if (is_stale(s, ts, now_ms))
		return fail(s, SEAL_ERR_STALE);
	h = nonce_hash(s, np);
	if (replay_seen(s, np, h))
		return fail(s, SEAL_ERR_REPLAYED);
	replay_record(s, np, h, ts, now_ms);
	if (out_len)
		*out_len = plain_len;
	if (sender) {
		memcpy(sender, adp + SEAL_FIXED_BYTES, nlen);
		sender[nlen] = '\0';
	}
	s->count[SEAL_OK]++;
	return SEAL_OK;
}
