/*
 * gossip/tags.h - node metadata ("tags"): a small, bounded map of
 * string keys to string values that every member gossips about itself.
 *
 * Tags carry the region, the primary region, the agent version and the
 * protocol range, plus user tags.  They travel inside every alive message,
 * so they are bounded hard: at most GOSSIP_TAGS_MAX pairs and at most
 * GOSSIP_TAGS_BYTES bytes of keys and values together.  The storage is a
 * flat, fixed-size buffer (no allocation): "key\0value\0key\0value\0...",
 * kept sorted by key so that two equal maps compare equal with memcmp.
 */
#ifndef MERIDIAN_GOSSIP_TAGS_H
#define MERIDIAN_GOSSIP_TAGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GOSSIP_TAGS_MAX 16        /* pairs */
#define GOSSIP_TAGS_BYTES 512     /* keys + values + their NULs */
#define GOSSIP_TAG_KEY_MAX 32     /* bytes, without the NUL */
#define GOSSIP_TAG_VALUE_MAX 128  /* bytes, without the NUL */

struct gossip_tags {
	uint16_t len;                  /* bytes used in data */
	uint8_t count;                 /* pairs */
	char data[GOSSIP_TAGS_BYTES];  /* "k\0v\0" pairs, sorted by key */
};

/* Empties @t. */
void gossip_tags_clear(struct gossip_tags *t);

/*
 * Sets @key to @value (both NUL-terminated), replacing any old value.
 * Keys are 1..GOSSIP_TAG_KEY_MAX bytes of [a-z0-9_.-]; values are at most
 * GOSSIP_TAG_VALUE_MAX bytes of printable ASCII.
 * Returns 0, -EINVAL for a bad key or value, -ENOSPC past a bound
 * (then @t is unchanged).
 */
int gossip_tags_set(struct gossip_tags *t, const char *key, const char *value);

/* Same as gossip_tags_set() for keys and values that are not NUL-terminated. */
int gossip_tags_setn(struct gossip_tags *t, const char *key, size_t key_len,
		     const char *value, size_t value_len);

/* The value of @key, pointing into @t, or NULL when absent. */
const char *gossip_tags_get(const struct gossip_tags *t, const char *key);

/*
 * Iterates: start with *cursor = 0; each call stores the next pair in
 * *key / *value (pointing into @t) and returns true, or returns false at
 * the end.
 */
bool gossip_tags_next(const struct gossip_tags *t, size_t *cursor,
		      const char **key, const char **value);

/* True when both maps hold exactly the same pairs. */
bool gossip_tags_equal(const struct gossip_tags *a, const struct gossip_tags *b);

#endif
