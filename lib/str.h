/*
 * lib/str.h - copying a string into a fixed buffer, the way the region
 * table and the postgres lease fill their fixed-size fields: cut to fit,
 * always terminated, and NULL taken as "".
 *
 * Header-only (static inline).
 */
#ifndef MERIDIAN_LIB_STR_H
#define MERIDIAN_LIB_STR_H

#include <stddef.h>
#include <string.h>

/* Copies @src (NULL: "") into @dst of @size bytes (> 0), cut to fit. */
static inline void str_copy(char *dst, size_t size, const char *src)
{
	size_t n = src ? strlen(src) : 0;

	if (n >= size)
		n = size - 1;
	memcpy(dst, src ? src : "", n);
	dst[n] = '\0';
}

#endif
