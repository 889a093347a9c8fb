/*
 * lib/backoff.h - exponential backoff with full jitter.
 *
 * Created on the first failure and reset on success, never counted from
 * process start: a join that fails an hour after start waits `initial`,
 * not an hour's worth of doubling.  Pure: the caller passes random bits,
 * so tests are deterministic.
 */
#ifndef MERIDIAN_LIB_BACKOFF_H
#define MERIDIAN_LIB_BACKOFF_H

#include <stdint.h>

struct backoff {
	uint32_t initial_ms;
	uint32_t max_ms;
	uint32_t attempt;    /* failures since the last reset */
};

void backoff_init(struct backoff *b, uint32_t initial_ms, uint32_t max_ms);
/* Records a failure; returns the delay before the next try:
 * uniform in [d/2, d] where d = min(max, initial * 2^(attempt-1)). */
uint32_t backoff_next(struct backoff *b, uint32_t random_bits);
/* Records a success: the next failure starts again at initial. */
void backoff_reset(struct backoff *b);

#endif
