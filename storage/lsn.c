/*
 * storage/lsn.c - LSN text and LSN waiters (see lsn.h for the contract).
 *
 * Waiters live in an array of slots allocated once.  A slot in use sits
 * in two binary heaps of slot indices: one ordered by (lsn, seq), one by
 * (deadline, seq), where seq counts adds and so breaks ties in the order
 * added.  Each slot remembers its position in both heaps, so a cancel
 * removes it from the middle in O(log n).  Free slots form a list
 * through `next`.  A waiter's id is seq * cap + slot + 1: never 0, never
 * reused (seq only grows), and it names its slot, so cancel needs no
 * lookup table; the slot's stored id tells a live waiter from a stale id.
 *
 * Firing.  advance() and expire() pop one waiter at a time and finish
 * with it (out of both heaps, slot freed) before calling back, so a
 * callback that adds, cancels or fires sees a consistent structure.  Each
 * call fires only waiters whose seq is below the seq counter at its
 * start ("limit").  A later waiter at the top of the heap (added by a
 * callback, already due) is "parked": taken out of both heaps onto a
 * doubly-linked list, so the loop can look past it.  Parked waiters go
 * back into the heaps when the outermost firing call returns and when
 * any nested firing call starts (so that a nested call sees everything
 * added before it, as the contract says).  Each call therefore pops at
 * most the waiters that existed when it started plus those added during
 * it, each at most once: it ends.
 *
 * `depth` counts firing calls under way; lsnwait_delete() inside one
 * only marks the struct doomed (and drops the waiters); the outermost
 * call frees it on its way out, and every loop stops at once when doomed.
 */
#include "storage/lsn.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NONE UINT32_MAX

enum slot_state { SLOT_FREE = 0, SLOT_HEAPED, SLOT_PARKED };
enum heap_kind { BY_LSN = 0, BY_DEADLINE = 1 };

struct slot {
	uint64_t lsn, deadline, seq, id;
	lsnwait_fn cb;
	void *arg;
	uint32_t pos[2];              /* index in each heap when HEAPED */
	uint32_t prev, next;          /* parked list, or free list (next only) */
	enum slot_state state;
};

struct lsnwait {
	struct slot *slots;
	uint32_t *heap[2];
	uint32_t nheap[2];
	uint32_t cap;
	uint32_t count;               /* in use: heaped + parked */
	uint32_t free_head;
	uint32_t parked_head;
	uint64_t next_seq;
	uint64_t max_seq;             /* ids stay below 2^64 */
	uint64_t last;
	unsigned depth;               /* firing calls under way */
	bool doomed;
};

/* ------------------------------------------------------------------ */
/* LSN text                                                            */
/* ------------------------------------------------------------------ */

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* 1 to 8 hex digits from *@s up to a character that is not one. */
static int hex32(const char **s, uint32_t *out)
{
	uint32_t v = 0;
	int n = 0, d;

	while ((d = hexval(**s)) >= 0) {
		if (++n > 8)
			return -EINVAL;
		v = v << 4 | (uint32_t)d;
		(*s)++;
	}
	if (n == 0)
		return -EINVAL;
	*out = v;
	return 0;
}

int lsn_parse(const char *s, uint64_t *out)
{
	uint32_t hi, lo;

	if (!s || !out)
		return -EINVAL;
	if (hex32(&s, &hi) < 0 || *s++ != '/' || hex32(&s, &lo) < 0 || *s != '\0')
		return -EINVAL;
	*out = (uint64_t)hi << 32 | lo;
	return 0;
}

void lsn_format(uint64_t lsn, char out[LSN_STR_MAX])
{
	snprintf(out, LSN_STR_MAX, "%" PRIX32 "/%" PRIX32, (uint32_t)(lsn >> 32), (uint32_t)lsn);
}

/* ------------------------------------------------------------------ */
/* Heaps                                                               */
/* ------------------------------------------------------------------ */

static bool less(const struct lsnwait *w, enum heap_kind k, uint32_t a, uint32_t b)
{
	const struct slot *x = &w->slots[a], *y = &w->slots[b];
	uint64_t kx = k == BY_LSN ? x->lsn : x->deadline;
	uint64_t ky = k == BY_LSN ? y->lsn : y->deadline;

	return kx < ky || (kx == ky && x->seq < y->seq);
}

static void heap_set(struct lsnwait *w, enum heap_kind k, uint32_t i, uint32_t s)
{
	w->heap[k][i] = s;
	w->slots[s].pos[k] = i;
}

static void sift_up(struct lsnwait *w, enum heap_kind k, uint32_t i)
{
	uint32_t s = w->heap[k][i];

	while (i > 0) {
		uint32_t parent = (i - 1) / 2;

		if (!less(w, k, s, w->heap[k][parent]))
			break;
		heap_set(w, k, i, w->heap[k][parent]);
		i = parent;
	}
	heap_set(w, k, i, s);
}

static void sift_down(struct lsnwait *w, enum heap_kind k, uint32_t i)
{
	uint32_t n = w->nheap[k], s = w->heap[k][i];

	for (;;) {
		uint32_t c = 2 * i + 1;

		if (c >= n)
			break;
		if (c + 1 < n && less(w, k, w->heap[k][c + 1], w->heap[k][c]))
			c++;
		if (!less(w, k, w->heap[k][c], s))
			break;
		heap_set(w, k, i, w->heap[k][c]);
		i = c;
	}
	heap_set(w, k, i, s);
}

static void heap_push(struct lsnwait *w, enum heap_kind k, uint32_t s)
{
	uint32_t i = w->nheap[k]++;

	heap_set(w, k, i, s);
	sift_up(w, k, i);
}

static void heap_remove(struct lsnwait *w, enum heap_kind k, uint32_t s)
{
	uint32_t i = w->slots[s].pos[k], last = --w->nheap[k];

	if (i == last)
		return;
	heap_set(w, k, i, w->heap[k][last]);
	/* The moved one may belong above or below its new place. */
	if (i > 0 && less(w, k, w->heap[k][i], w->heap[k][(i - 1) / 2]))
		sift_up(w, k, i);
	else
		sift_down(w, k, i);
}

/* ------------------------------------------------------------------ */
/* Slots                                                               */
/* ------------------------------------------------------------------ */

static void insert(struct lsnwait *w, uint32_t s)
{
	w->slots[s].state = SLOT_HEAPED;
	heap_push(w, BY_LSN, s);
	heap_push(w, BY_DEADLINE, s);
}

static void park(struct lsnwait *w, uint32_t s)
{
	struct slot *sl = &w->slots[s];

	heap_remove(w, BY_LSN, s);
	heap_remove(w, BY_DEADLINE, s);
	sl->state = SLOT_PARKED;
	sl->prev = NONE;
	sl->next = w->parked_head;
	if (w->parked_head != NONE)
		w->slots[w->parked_head].prev = s;
	w->parked_head = s;
}

static void unpark_all(struct lsnwait *w)
{
	while (w->parked_head != NONE) {
		uint32_t s = w->parked_head;

		w->parked_head = w->slots[s].next;
		insert(w, s);
	}
}

/* Takes @s out of wherever it is and frees the slot. */
static void release(struct lsnwait *w, uint32_t s)
{
	struct slot *sl = &w->slots[s];

	if (sl->state == SLOT_HEAPED) {
		heap_remove(w, BY_LSN, s);
		heap_remove(w, BY_DEADLINE, s);
	} else if (sl->state == SLOT_PARKED) {
		if (sl->prev != NONE)
			w->slots[sl->prev].next = sl->next;
		else
			w->parked_head = sl->next;
		if (sl->next != NONE)
			w->slots[sl->next].prev = sl->prev;
	}
	sl->state = SLOT_FREE;
	sl->id = 0;
	sl->cb = NULL;
	sl->arg = NULL;
	sl->next = w->free_head;
	w->free_head = s;
	w->count--;
}

/* ------------------------------------------------------------------ */
/* Public                                                              */
/* ------------------------------------------------------------------ */

struct lsnwait *lsnwait_new(size_t max_waiters)
{
	struct lsnwait *w;

	if (max_waiters == 0 || max_waiters > LSNWAIT_MAX_WAITERS)
		return NULL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->cap = (uint32_t)max_waiters;
	w->slots = calloc(max_waiters, sizeof(*w->slots));
	w->heap[BY_LSN] = calloc(max_waiters, sizeof(uint32_t));
	w->heap[BY_DEADLINE] = calloc(max_waiters, sizeof(uint32_t));
	if (!w->slots || !w->heap[BY_LSN] || !w->heap[BY_DEADLINE]) {
		free(w->slots);
		free(w->heap[BY_LSN]);
		free(w->heap[BY_DEADLINE]);
		free(w);
		return NULL;
	}
	for (uint32_t i = 0; i < w->cap; i++)
		w->slots[i].next = i + 1 < w->cap ? i + 1 : NONE;
	w->free_head = 0;
	w->parked_head = NONE;
	w->max_seq = (UINT64_MAX - w->cap) / w->cap;
	return w;
}

static void destroy(struct lsnwait *w)
{
	free(w->slots);
	free(w->heap[BY_LSN]);
	free(w->heap[BY_DEADLINE]);
	free(w);
}

void lsnwait_delete(struct lsnwait *w)
{
	if (!w || w->doomed)
		return;
	if (w->depth == 0) {
		destroy(w);
		return;
	}
	/* Inside a callback: the firing loops still hold @w. */
	w->doomed = true;
	for (uint32_t s = 0; s < w->cap; s++)
		if (w->slots[s].state != SLOT_FREE)
			release(w, s);
}

int lsnwait_add(struct lsnwait *w, uint64_t lsn, uint64_t deadline, lsnwait_fn cb, void *arg,
		uint64_t *id)
{
	struct slot *sl;
	uint32_t s;

	if (!w || !cb || w->doomed)
		return -EINVAL;
	if (w->free_head == NONE)
		return -EAGAIN;
	if (w->next_seq > w->max_seq)
		return -EOVERFLOW;
	s = w->free_head;
	sl = &w->slots[s];
	w->free_head = sl->next;
	sl->lsn = lsn;
	sl->deadline = deadline;
	sl->seq = w->next_seq++;
	sl->id = sl->seq * w->cap + s + 1;
	sl->cb = cb;
	sl->arg = arg;
	sl->prev = sl->next = NONE;
	w->count++;
	insert(w, s);
	if (id)
		*id = sl->id;
	return 0;
}

bool lsnwait_reached(const struct lsnwait *w, uint64_t lsn)
{
	return w && lsn <= w->last;
}

void lsnwait_cancel(struct lsnwait *w, uint64_t id)
{
	uint32_t s;

	if (!w || id == 0)
		return;
	s = (uint32_t)((id - 1) % w->cap);
	if (w->slots[s].state != SLOT_FREE && w->slots[s].id == id)
		release(w, s);
}

/*
 * The one firing loop: pops the top of heap @k while its key is <= @upto,
 * firing those added before this call (seq < limit) with @status and
 * parking the others.
 */
static void fire(struct lsnwait *w, enum heap_kind k, uint64_t upto, int status)
{
	uint64_t limit = w->next_seq;

	if (w->depth++ > 0)
		unpark_all(w);        /* a nested call sees all added before it */
	while (!w->doomed && w->nheap[k] > 0) {
		uint32_t s = w->heap[k][0];
		struct slot *sl = &w->slots[s];
		lsnwait_fn cb;
		void *arg;

		if ((k == BY_LSN ? sl->lsn : sl->deadline) > upto)
			break;
		if (sl->seq >= limit) {
			park(w, s);
			continue;
		}
		cb = sl->cb;
		arg = sl->arg;
		release(w, s);
		cb(arg, status, w->last);
	}
	if (--w->depth > 0)
		return;
	if (w->doomed)
		destroy(w);
	else
		unpark_all(w);
}

void lsnwait_advance(struct lsnwait *w, uint64_t replay_lsn)
{
	if (!w || w->doomed)
		return;
	if (replay_lsn > w->last)
		w->last = replay_lsn;
	fire(w, BY_LSN, w->last, 0);
}

void lsnwait_expire(struct lsnwait *w, uint64_t now)
{
	if (!w || w->doomed)
		return;
	fire(w, BY_DEADLINE, now, -ETIMEDOUT);
}

size_t lsnwait_count(const struct lsnwait *w)
{
	return w ? w->count : 0;
}

uint64_t lsnwait_next_deadline(const struct lsnwait *w)
{
	if (!w || w->nheap[BY_DEADLINE] == 0)
		return UINT64_MAX;
	return w->slots[w->heap[BY_DEADLINE][0]].deadline;
}

uint64_t lsnwait_min_lsn(const struct lsnwait *w)
{
	if (!w || w->nheap[BY_LSN] == 0)
		return UINT64_MAX;
	return w->slots[w->heap[BY_LSN][0]].lsn;
}

uint64_t lsnwait_last(const struct lsnwait *w)
{
	return w ? w->last : 0;
}
