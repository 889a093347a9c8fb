/*
 * lib/utf8.h - strict UTF-8 checking, shared by the log's JSON and text
 * lines, the pgoutput decoder's JSON and the SQL result encoder: all of
 * them hand text to jansson or to log readers, which want the same thing.
 * Strict means shortest form only (no overlongs, so never C0/C1), no
 * surrogates (U+D800..U+DFFF), nothing past U+10FFFF (so never F5 and
 * up), and no stray continuation bytes or cut-off sequences.  NUL bytes
 * are valid UTF-8; callers that mind them check for them.
 */
#ifndef MERIDIAN_LIB_UTF8_H
#define MERIDIAN_LIB_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Length of the valid UTF-8 sequence at @s (at most @n bytes, n >= 1), or
 * 0 when the bytes there are not valid UTF-8. */
static inline size_t utf8_seq_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t len;
	unsigned int cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF) {
		len = 2;
		cp = c & 0x1F;
	} else if (c >= 0xE0 && c <= 0xEF) {
		len = 3;
		cp = c & 0x0F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4;
		cp = c & 0x07;
	} else {
		return 0;     /* continuation byte, C0/C1 (overlong), F5 and up */
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3F);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
	    (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return len;
}

/* Whether all @n bytes at @s are valid UTF-8. */
static inline bool utf8_valid(const unsigned char *s, size_t n)
{
	while (n > 0) {
		size_t k = utf8_seq_len(s, n);

		if (k == 0)
			return false;
		s += k;
		n -= k;
	}
	return true;
}

#endif
