/*
 * lib/bytebuf.h - growth of a bounded byte buffer, for the encoders'
 * caller-owned buffers (struct gossip_buf, struct rpc_buf): each keeps its
 * own public type and bound, and both grow the same way here.
 */
#ifndef MERIDIAN_LIB_BYTEBUF_H
#define MERIDIAN_LIB_BYTEBUF_H

#include <stddef.h>
#include <stdint.h>

/*
 * Makes room for @more bytes after @len in *@data (capacity *@cap),
 * doubling from 256 bytes, never past @max.  Returns 0, or -ENOMEM past
 * @max or when realloc fails (then *@data and *@cap are unchanged).
 */
int bytebuf_reserve(uint8_t **data, size_t len, size_t *cap, size_t more, size_t max);

/* Appends @n bytes of @p (bytebuf_reserve, then copy; *@len grows).
 * Returns 0 or -ENOMEM, leaving the buffer unchanged. */
int bytebuf_append(uint8_t **data, size_t *len, size_t *cap, const void *p, size_t n,
		   size_t max);

#endif
