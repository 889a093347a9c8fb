/*
 * lib/backoff.c - exponential backoff with jitter (see backoff.h).
 *
 * The delay is drawn uniformly from [d/2, d]: half "equal jitter", so that a
 * fleet restarted together spreads its retries, while a single retry never
 * comes sooner than half the nominal delay.
 */
#include "lib/backoff.h"

void backoff_init(struct backoff *b, uint32_t initial_ms, uint32_t max_ms)
{
	b->initial_ms = initial_ms ? initial_ms : 1;
	b->max_ms = max_ms < b->initial_ms ? b->initial_ms : max_ms;
	b->attempt = 0;
}

uint32_t backoff_next(struct backoff *b, uint32_t random_bits)
{
	uint64_t d = b->initial_ms;

	/* Doubling stops as soon as the ceiling is reached, so the shift can
	 * never overflow however many failures pile up. */
	for (uint32_t i = 0; i < b->attempt && d < b->max_ms; i++)
		d *= 2;
	if (d > b->max_ms)
		d = b->max_ms;
	if (b->attempt < UINT32_MAX)
		b->attempt++;
	uint64_t half = d / 2;
	return (uint32_t)(d - half + (half ? random_bits % (half + 1) : 0));
}

void backoff_reset(struct backoff *b)
{
	b->attempt = 0;
}
