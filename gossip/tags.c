/*
 * gossip/tags.c - node metadata as a flat, sorted, bounded buffer.
 *
 * The pairs live in one fixed array, "key\0value\0key\0value\0...", sorted
 * by key.  Keeping them flat means a gossip_tags can be copied by value into
 * a decoded message and compared with one memcmp; keeping them sorted makes
 * that comparison canonical (two maps built in different orders are
 * byte-equal), which the core relies on to notice a metadata change.
 *
 * Every reader below trusts only t->len and looks for each NUL inside it,
 * so a corrupt struct (a bug elsewhere) ends an iteration early instead of
 * running off the end of the buffer.
 */
#include "gossip/tags.h"

#include <errno.h>
#include <string.h>

void gossip_tags_clear(struct gossip_tags *t)
{
	t->len = 0;
	t->count = 0;
}

static bool tag_key_valid(const char *key, size_t len)
{
	if (len == 0 || len > GOSSIP_TAG_KEY_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = key[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
		      c == '-'))
			return false;
	}
	return true;
}

static bool tag_value_valid(const char *value, size_t len)
{
	if (len > GOSSIP_TAG_VALUE_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)value[i];

		if (c < 0x20 || c > 0x7e)
			return false;
	}
	return true;
}

/*
 * Reads the pair that starts at @off.  Returns false at the end or when the
 * buffer is inconsistent; otherwise stores where the key and value start,
 * their lengths and where the next pair starts.
 */
static bool tag_pair_at(const struct gossip_tags *t, size_t off, size_t *klen, size_t *voff,
			size_t *vlen, size_t *next)
{
	size_t end = t->len <= GOSSIP_TAGS_BYTES ? t->len : GOSSIP_TAGS_BYTES;
	const char *k, *v;

	if (off >= end)
		return false;
	k = memchr(t->data + off, '\0', end - off);
	if (!k)
		return false;
	*klen = (size_t)(k - (t->data + off));
	*voff = off + *klen + 1;
	if (*voff >= end)
		return false;
	v = memchr(t->data + *voff, '\0', end - *voff);
	if (!v)
		return false;
	*vlen = (size_t)(v - (t->data + *voff));
	*next = *voff + *vlen + 1;
	return true;
}

/* Compares a key of @alen bytes with one of @blen bytes, like strcmp. */
static int tag_key_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	if (c != 0)
		return c;
	return alen < blen ? -1 : alen > blen;
}

int gossip_tags_setn(struct gossip_tags *t, const char *key, size_t key_len, const char *value,
		     size_t value_len)
{
	size_t off = 0, klen, voff, vlen, next;
	size_t need;

	if (!tag_key_valid(key, key_len) || !tag_value_valid(value, value_len))
		return -EINVAL;

	/* Find the key, or the first key after it (where it goes). */
	while (tag_pair_at(t, off, &klen, &voff, &vlen, &next)) {
		int c = tag_key_cmp(t->data + off, klen, key, key_len);

		if (c == 0) {
			/* Replace the value in place, shifting what follows. */
			size_t len = (size_t)t->len - vlen + value_len;

			if (len > GOSSIP_TAGS_BYTES)
				return -ENOSPC;
			memmove(t->data + voff + value_len, t->data + voff + vlen,
				(size_t)t->len - (voff + vlen));
			memcpy(t->data + voff, value, value_len);
			t->len = (uint16_t)len;
			return 0;
		}
		if (c > 0)
			break;
		off = next;
	}

	need = key_len + 1 + value_len + 1;
	if (t->count >= GOSSIP_TAGS_MAX || (size_t)t->len + need > GOSSIP_TAGS_BYTES)
		return -ENOSPC;
	if (off > t->len)
		off = t->len;
	memmove(t->data + off + need, t->data + off, (size_t)t->len - off);
	memcpy(t->data + off, key, key_len);
	t->data[off + key_len] = '\0';
	memcpy(t->data + off + key_len + 1, value, value_len);
	t->data[off + need - 1] = '\0';
	t->len = (uint16_t)(t->len + need);
	t->count++;
	return 0;
}

int gossip_tags_set(struct gossip_tags *t, const char *key, const char *value)
{
	/* Bound the scans: anything longer than a limit is invalid anyway. */
	return gossip_tags_setn(t, key, strnlen(key, GOSSIP_TAG_KEY_MAX + 1), value,
				strnlen(value, GOSSIP_TAG_VALUE_MAX + 1));
}

const char *gossip_tags_get(const struct gossip_tags *t, const char *key)
{
	size_t off = 0, klen, voff, vlen, next;
	size_t len = strnlen(key, GOSSIP_TAG_KEY_MAX + 1);

	while (tag_pair_at(t, off, &klen, &voff, &vlen, &next)) {
		if (klen == len && memcmp(t->data + off, key, len) == 0)
			return t->data + voff;
		off = next;
	}
	return NULL;
}

bool gossip_tags_next(const struct gossip_tags *t, size_t *cursor, const char **key,
		      const char **value)
{
	size_t klen, voff, vlen, next;

	if (!tag_pair_at(t, *cursor, &klen, &voff, &vlen, &next))
		return false;
	*key = t->data + *cursor;
	*value = t->data + voff;
	*cursor = next;
	return true;
}

bool gossip_tags_equal(const struct gossip_tags *a, const struct gossip_tags *b)
{
	/* Sorted and canonical: equal maps are equal bytes. */
	return a->len == b->len && a->count == b->count && a->len <= GOSSIP_TAGS_BYTES &&
	       memcmp(a->data, b->data, a->len) == 0;
}
