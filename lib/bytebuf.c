/*
 * lib/bytebuf.c - bounded byte-buffer growth (see bytebuf.h).
 */
#include "lib/bytebuf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int bytebuf_reserve(uint8_t **data, size_t len, size_t *cap, size_t more, size_t max)
{
	size_t ncap;
	uint8_t *p;

	if (len > max || more > max - len)
		return -ENOMEM;
	if (len + more <= *cap)
		return 0;
	ncap = *cap >= 256 ? *cap : 256;
	while (ncap < len + more)
		ncap *= 2;
	if (ncap > max)
		ncap = max;
	p = realloc(*data, ncap);
	if (!p)
		return -ENOMEM;
	*data = p;
	*cap = ncap;
	return 0;
}

int bytebuf_append(uint8_t **data, size_t *len, size_t *cap, const void *p, size_t n,
		   size_t max)
{
	int rc = bytebuf_reserve(data, *len, cap, n, max);

	if (rc)
		return rc;
	if (n)
		memcpy(*data + *len, p, n);
	*len += n;
	return 0;
}
