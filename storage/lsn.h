/*
 * storage/lsn.h - PostgreSQL WAL positions (LSNs) and the waiters that
 * hold a read, or a write's answer, until the local replica has replayed
 * a given LSN.
 *
 * Pure: no libuv, no libpq, no clock.  Times are whatever monotonic unit
 * the caller uses (the agent: loop milliseconds), handed in as
 * arguments, so the tests run in fake time.
 *
 * LSN text.  Postgres prints an LSN as two hexadecimal numbers, the high
 * and the low 32 bits, "%X/%X" ("16/B374D848").  lsn_parse() accepts
 * exactly that shape: 1 to 8 hex digits (either case), '/', 1 to 8 hex
 * digits, nothing before or after (no blanks, signs or "0x"); anything
 * else is -EINVAL and *out is left alone.  lsn_format() writes what
 * Postgres would (upper case, no leading zeros).
 *
 * Waiters.  One struct lsnwait serves every request of the agent: each
 * waits for an LSN with a deadline.  The owner feeds it the replica's
 * replay LSN as it learns it (lsnwait_advance) and the time when the
 * earliest deadline comes (lsnwait_expire, lsnwait_next_deadline).
 *
 *   - lsnwait_advance(x) records x as the last replay LSN seen unless it
 *     is lower (the replay LSN never goes backwards; a lower value, e.g.
 *     an answer from before a newer one, changes nothing), then fires
 *     every waiter with lsn <= the last seen, status 0, in LSN order,
 *     ties in the order added.
 *   - lsnwait_expire(now) fires every waiter with deadline <= now,
 *     -ETIMEDOUT, in deadline order, ties in the order added.
 *     lsnwait_expire(w, UINT64_MAX) fails every waiter.
 *   - Every waiter fires at most once, and never after lsnwait_cancel()
 *     or lsnwait_delete().  A callback gets the last replay LSN seen, so
 *     a timeout can say how far behind the replica is.
 *   - lsnwait_add() never calls back.  A waiter whose lsn has already
 *     been reached (lsnwait_reached) should not be added at all: the
 *     caller answers at once.  If it is added anyway it fires at the next
 *     lsnwait_advance() (with any value) or at its deadline.
 *
 * Re-entrancy.  Callbacks may call lsnwait_add(), lsnwait_cancel(),
 * lsnwait_advance(), lsnwait_expire() and lsnwait_delete() on the same
 * struct (and any read-only function).  A call that fires waiters fires
 * only those added before it started: a waiter added by a callback is
 * left for a later call, so a callback that keeps adding waiters cannot
 * keep one advance() running forever.  While callbacks run, the
 * read-only functions may not count the waiters so left over in
 * next_deadline/min_lsn (lsnwait_count does count them); everything is
 * exact again once the outermost call returns.  lsnwait_delete() from a
 * callback drops every waiter and frees the struct when the outermost
 * call returns.
 *
 * Costs and bounds.  Two binary heaps over one array of max_waiters
 * slots, allocated up front: add, cancel and each fire are O(log n),
 * next_deadline/min_lsn O(1); nothing allocates after lsnwait_new().
 * Waiter ids are never 0 and never reused by one struct.
 *
 * Not thread-safe.
 */
#ifndef MERIDIAN_STORAGE_LSN_H
#define MERIDIAN_STORAGE_LSN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LSN_STR_MAX 24                  /* "FFFFFFFF/FFFFFFFF" and the NUL fit */
#define LSNWAIT_MAX_WAITERS (1u << 24)  /* the largest max_waiters accepted */

/* "16/B374D848" -> 0x16B374D848.  0, or -EINVAL (see above). */
int lsn_parse(const char *s, uint64_t *out);
/* As Postgres prints it: "%X/%X" of the high and low 32 bits. */
void lsn_format(uint64_t lsn, char out[LSN_STR_MAX]);

/* @status: 0 when the LSN was reached, -ETIMEDOUT at the deadline.
 * @replay_lsn: the last replay LSN seen (0 if none yet). */
typedef void (*lsnwait_fn)(void *arg, int status, uint64_t replay_lsn);

struct lsnwait;

/* NULL when @max_waiters is 0 or above LSNWAIT_MAX_WAITERS, or out of
 * memory. */
struct lsnwait *lsnwait_new(size_t max_waiters);
/* Drops every waiter without calling back.  NULL is a no-op.  See the top
 * of this file for a call from inside a callback. */
void lsnwait_delete(struct lsnwait *w);

/* Adds a waiter for @lsn until @deadline; *@id (if @id is not NULL) gets
 * its id.  0, -EINVAL (no cb), -EAGAIN (max_waiters are waiting), or
 * -EOVERFLOW (ids exhausted: after 2^64 / max_waiters adds). */
int lsnwait_add(struct lsnwait *w, uint64_t lsn, uint64_t deadline, lsnwait_fn cb, void *arg,
		uint64_t *id);
/* @lsn <= the last replay LSN seen (so never true before the first
 * advance, except for lsn 0). */
bool lsnwait_reached(const struct lsnwait *w, uint64_t lsn);
/* Removes the waiter without calling back; an unknown (or already fired)
 * id is a no-op. */
void lsnwait_cancel(struct lsnwait *w, uint64_t id);
void lsnwait_advance(struct lsnwait *w, uint64_t replay_lsn);
void lsnwait_expire(struct lsnwait *w, uint64_t now);

size_t lsnwait_count(const struct lsnwait *w);
/* The earliest deadline, UINT64_MAX when none. */
uint64_t lsnwait_next_deadline(const struct lsnwait *w);
/* The smallest LSN waited for, UINT64_MAX when none. */
uint64_t lsnwait_min_lsn(const struct lsnwait *w);
/* The last replay LSN seen, 0 if none. */
uint64_t lsnwait_last(const struct lsnwait *w);

#endif
