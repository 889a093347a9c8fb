/*
 * tests/fake/fakenet.c - fake clock and fake network for gossip cores
 * (see fakenet.h).
 *
 * The technique is tarantool's fakeev/fakenet, without its globals: one
 * struct holds the clock, every node, and a binary heap of everything in
 * flight ordered by (delivery time, sequence), so that runs are exactly
 * reproducible.  Each step moves the clock to the earliest of the heap's
 * head and the nodes' own next action (their core's deadline, or for a
 * starved node the next CPU slot at or after its deadline or its oldest
 * unread input); on a tie, deliveries go first.  Node actions are cached
 * per node and refreshed after every call into that node's core, so a
 * step costs one scan of N integers plus the core's own work.
 */
#include "tests/fake/fakenet.h"
#include "gossip/seal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* No run may take more steps than this: a livelock fails loudly. */
#define STEPS_MAX 200000000ULL
#define START_MS 1000000ULL
#define STREAM_FAIL_MS 1000   /* how long a refused/unreachable stream takes */
/* A push-pull message fits the agent's stream frame (FRAME_MAX in
 * cmd/agent.c) once sealed: kind byte + seal overhead + payload. */
#define FRAME_MAX (1024 * 1024)
#define FRAME_FITS(len) ((len) + 1 + SEAL_OVERHEAD_MAX <= FRAME_MAX)

enum item_kind { ITEM_PACKET, ITEM_STREAM_REQ, ITEM_STREAM_RESP, ITEM_STREAM_FAIL };

struct item {
	uint64_t at;             /* delivery time */
	uint64_t seq;            /* tie-break: send order */
	uint64_t sent_at;
	enum item_kind kind;
	uint32_t from, to;
	uint32_t gen;            /* stream answers: the requester's process */
	uint64_t stream_id;
	size_t len;
	uint8_t data[];
};

struct fnode {
	struct fakenet *f;
	uint32_t idx;
	struct gossip *g;
	char name[GOSSIP_NAME_MAX + 1];
	char addr[GOSSIP_ADDR_MAX + 1];
	uint64_t id;
	uint32_t gen;            /* bumped by restart */
	bool killed;
	uint32_t starve;         /* CPU period (ms), 0 = not starved */
	struct item **backlog;   /* arrived, unread while starved (FIFO) */
	size_t blen, bcap;
	uint64_t next;           /* cached next action time */
	uint32_t joined;
};

struct fakenet {
	size_t n;
	uint64_t now;
	uint64_t rng;            /* splitmix64 state */
	uint64_t seq;
	struct gossip_config base;
	uint64_t seed;
	struct fnode *nodes;

	struct item **heap;
	size_t hlen, hcap;

	uint32_t lat_base, lat_jitter, loss_pct;
	uint8_t *blocked;        /* n*n, [from*n + to] */
	fakenet_filter_fn filter;
	void *filter_ctx;

	/* records, [(obs*n + subj)*FAKENET_EV_TYPES + type] */
	uint64_t *ev_first, *ev_last;
	uint32_t *ev_count;
	uint64_t *lost_ping_at;  /* [subj] */
	uint32_t *lost_ping_by;

	bool trace;                /* FAKENET_TRACE set: print every event */
	struct gossip_packet pkt;  /* decode scratch */
	struct gossip_buf resp;
	struct fakenet_stats stats;
};

static void die(const char *what)
{
	fprintf(stderr, "fakenet: %s\n", what);
	abort();
}

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (!p)
		die("out of memory");
	return p;
}

static uint64_t rnd(struct fakenet *f)
{
	uint64_t z = (f->rng += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* ------------------------------------------------------------------ */
/* The heap of things in flight                                        */
/* ------------------------------------------------------------------ */

static bool item_before(const struct item *a, const struct item *b)
{
	return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

/* Room for one more in the growable array *@v of @len item pointers and
 * capacity *@cap: doubles it, starting at @first; dies when out of memory
 * like everything here. */
static void items_reserve(struct item ***v, size_t len, size_t *cap, size_t first)
{
	if (len != *cap)
		return;
	size_t ncap = *cap ? *cap * 2 : first;
	struct item **nv = realloc(*v, ncap * sizeof(*nv));

	if (!nv)
		die("out of memory");
	*v = nv;
	*cap = ncap;
}

static void heap_push(struct fakenet *f, struct item *it)
{
	items_reserve(&f->heap, f->hlen, &f->hcap, 256);
	size_t i = f->hlen++;

	while (i > 0) {
		size_t p = (i - 1) / 2;

		if (!item_before(it, f->heap[p]))
			break;
		f->heap[i] = f->heap[p];
		i = p;
	}
	f->heap[i] = it;
}

static struct item *heap_pop(struct fakenet *f)
{
	struct item *top = f->heap[0], *last = f->heap[--f->hlen];
	size_t i = 0;

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= f->hlen)
			break;
		if (c + 1 < f->hlen && item_before(f->heap[c + 1], f->heap[c]))
			c++;
		if (!item_before(f->heap[c], last))
			break;
		f->heap[i] = f->heap[c];
		i = c;
	}
	if (f->hlen)
		f->heap[i] = last;
	return top;
}

static struct item *item_new(struct fakenet *f, enum item_kind kind, size_t from, size_t to,
			     const uint8_t *buf, size_t len, uint64_t at)
{
	struct item *it = xcalloc(1, sizeof(*it) + len);

	it->kind = kind;
	it->from = (uint32_t)from;
	it->to = (uint32_t)to;
	it->at = at;
	it->sent_at = f->now;
	it->seq = f->seq++;
	it->len = len;
	if (len)
		memcpy(it->data, buf, len);
	return it;
}

static uint64_t latency(struct fakenet *f)
{
	uint64_t l = f->lat_base;

	if (f->lat_jitter)
		l += rnd(f) % (f->lat_jitter + 1);
	return l;
}

/* ------------------------------------------------------------------ */
/* Node bookkeeping                                                    */
/* ------------------------------------------------------------------ */

static int addr_index(const struct fakenet *f, const char *addr)
{
	unsigned a, b;
	int used = 0;

	if (sscanf(addr, "10.0.%u.%u:7946%n", &a, &b, &used) != 2 || addr[used] != '\0' ||
	    b > 255)
		return -1;
	size_t i = (size_t)a * 256 + b;

	return i < f->n ? (int)i : -1;
}

int fakenet_index(const struct fakenet *f, const char *name)
{
	char *end;
	unsigned long i;

	if (!name || name[0] != 'n' || name[1] < '0' || name[1] > '9')
		return -1;
	i = strtoul(name + 1, &end, 10);
	if (*end != '\0' || i >= f->n)
		return -1;
	return (int)i;
}

static uint64_t slot_at(uint32_t period, uint64_t t)
{
	return (t + period - 1) / period * period;
}

static void node_refresh(struct fnode *nd)
{
	uint64_t t;

	if (nd->killed || !nd->g) {
		nd->next = FAKENET_NEVER;
		return;
	}
	t = gossip_next_deadline(nd->g);
	if (nd->starve) {
		if (nd->blen && nd->backlog[0]->at < t)
			t = nd->backlog[0]->at;
		t = slot_at(nd->starve, t);
	}
	nd->next = t;
}

static size_t rec_idx(const struct fakenet *f, size_t i, size_t j, int type)
{
	return (i * f->n + j) * FAKENET_EV_TYPES + (size_t)type;
}

static const char *event_name(enum gossip_event_type t)
{
	static const char *const names[FAKENET_EV_TYPES] = {
		"join", "update", "suspect", "alive", "failed", "left", "reap", "user", "sync",
		"conflict",
	};

	return (size_t)t < FAKENET_EV_TYPES ? names[t] : "?";
}

static void on_event(void *ctx, const struct gossip_event *ev)
{
	struct fnode *nd = ctx;
	struct fakenet *f = nd->f;
	int j;

	if (ev->type == GOSSIP_EV_SYNC) {
		if (ev->join && ev->ok)
			nd->joined++;
		return;
	}
	if (!ev->member || (int)ev->type < 0 || ev->type >= FAKENET_EV_TYPES)
		return;
	j = fakenet_index(f, gossip_member_name(ev->member));
	if (j < 0)
		return;
	if (f->trace)
		printf("trace %" PRIu64 " n%u: %s n%d inc %" PRIu64 " status %s\n", f->now,
		       nd->idx, event_name(ev->type), j, gossip_member_incarnation(ev->member),
		       gossip_status_name(gossip_member_status(ev->member)));
	size_t k = rec_idx(f, nd->idx, (size_t)j, ev->type);

	if (f->ev_first[k] == FAKENET_NEVER)
		f->ev_first[k] = f->now;
	f->ev_last[k] = f->now;
	f->ev_count[k]++;
}

static bool has_ping_to(const struct gossip_packet *p, const char *name)
{
	size_t n = strlen(name);

	for (size_t i = 0; i < p->count; i++) {
		const struct gossip_msg *m = &p->msgs[i];

		if (m->type == GOSSIP_MSG_PING && m->u.ping.target.len == n &&
		    memcmp(m->u.ping.target.ptr, name, n) == 0)
			return true;
	}
	return false;
}

static void send_packet(void *ctx, const char *addr, const char *to, const uint8_t *buf,
			size_t len)
{
	struct fnode *nd = ctx;
	struct fakenet *f = nd->f;
	int t = addr_index(f, addr);

	(void)to;
	f->stats.sent++;
	f->stats.bytes += len;
	if (len > GOSSIP_PACKET_MAX)
		die("a core sent a packet over GOSSIP_PACKET_MAX");
	if (t < 0) {
		f->stats.blocked++;
		return;
	}
	if (f->blocked[nd->idx * f->n + (size_t)t]) {
		f->stats.blocked++;
		return;
	}
	if (f->loss_pct && rnd(f) % 100 < f->loss_pct) {
		f->stats.lost++;
		return;
	}
	if (f->filter && gossip_packet_decode(buf, len, &f->pkt, NULL, 0) == 0 &&
	    f->filter(f->filter_ctx, nd->idx, (size_t)t, &f->pkt)) {
		f->stats.filtered++;
		return;
	}
	heap_push(f, item_new(f, ITEM_PACKET, nd->idx, (size_t)t, buf, len,
			      f->now + latency(f)));
}

static void stream_request(void *ctx, uint64_t id, const char *addr, const uint8_t *buf,
			   size_t len)
{
	struct fnode *nd = ctx;
	struct fakenet *f = nd->f;
	int t = addr_index(f, addr);
	struct item *it;

	f->stats.streams++;
	if (!FRAME_FITS(len))
		f->stats.streams_oversize++;
	if (t < 0 || !FRAME_FITS(len)) {
		it = item_new(f, ITEM_STREAM_FAIL, nd->idx, nd->idx, NULL, 0,
			      f->now + STREAM_FAIL_MS);
	} else {
		it = item_new(f, ITEM_STREAM_REQ, nd->idx, (size_t)t, buf, len,
			      f->now + latency(f));
	}
	it->gen = nd->gen;
	it->stream_id = id;
	heap_push(f, it);
}

static void node_start(struct fakenet *f, struct fnode *nd)
{
	struct gossip_config c = f->base;
	struct gossip_env env = {
		.ctx = nd, .send_packet = send_packet, .stream_request = stream_request,
		.on_event = on_event,
	};

	snprintf(c.name, sizeof(c.name), "%s", nd->name);
	snprintf(c.addr, sizeof(c.addr), "%s", nd->addr);
	c.id = nd->id;
	c.seed = f->seed * 1000003ULL + nd->idx * 7919ULL + nd->gen;
	gossip_tags_clear(&c.tags);
	gossip_tags_set(&c.tags, "region", nd->idx % 3 == 0 ? "iad" : nd->idx % 3 == 1 ? "fra"
										 : "syd");
	gossip_tags_set(&c.tags, "primary_region", "iad");
	nd->g = gossip_new(&c, &env, f->now);
	if (!nd->g)
		die("gossip_new failed");
	node_refresh(nd);
}

static void backlog_clear(struct fnode *nd)
{
	for (size_t i = 0; i < nd->blen; i++)
		free(nd->backlog[i]);
	nd->blen = 0;
}

struct fakenet *fakenet_new_config(size_t n, const struct gossip_config *base, uint64_t seed)
{
	struct fakenet *f;

	if (n == 0 || n > FAKENET_NODES_MAX || !base)
		die("bad fakenet_new arguments");
	f = xcalloc(1, sizeof(*f));
	f->n = n;
	f->now = START_MS;
	f->seed = seed;
	f->rng = seed ^ 0x5eed5eed5eed5eedULL;
	f->base = *base;
	f->lat_base = 1;
	f->trace = getenv("FAKENET_TRACE") != NULL;
	f->nodes = xcalloc(n, sizeof(*f->nodes));
	f->blocked = xcalloc(n * n, 1);
	f->ev_first = xcalloc(n * n * FAKENET_EV_TYPES, sizeof(uint64_t));
	f->ev_last = xcalloc(n * n * FAKENET_EV_TYPES, sizeof(uint64_t));
	f->ev_count = xcalloc(n * n * FAKENET_EV_TYPES, sizeof(uint32_t));
	f->lost_ping_at = xcalloc(n, sizeof(uint64_t));
	f->lost_ping_by = xcalloc(n, sizeof(uint32_t));
	fakenet_events_reset(f);
	for (size_t i = 0; i < n; i++) {
		struct fnode *nd = &f->nodes[i];

		nd->f = f;
		nd->idx = (uint32_t)i;
		snprintf(nd->name, sizeof(nd->name), "n%zu", i);
		snprintf(nd->addr, sizeof(nd->addr), "10.0.%zu.%zu:7946", i / 256, i % 256);
		nd->id = (f->now << 16) | i;
		node_start(f, nd);
	}
	return f;
}

struct fakenet *fakenet_new(size_t n, const char *profile, uint64_t seed)
{
	struct gossip_config c;

	if (gossip_config_profile(&c, profile) != 0)
		die("unknown profile");
	return fakenet_new_config(n, &c, seed);
}

void fakenet_delete(struct fakenet *f)
{
	if (!f)
		return;
	for (size_t i = 0; i < f->n; i++) {
		backlog_clear(&f->nodes[i]);
		free(f->nodes[i].backlog);
		gossip_delete(f->nodes[i].g);
	}
	for (size_t i = 0; i < f->hlen; i++)
		free(f->heap[i]);
	free(f->heap);
	free(f->nodes);
	free(f->blocked);
	free(f->ev_first);
	free(f->ev_last);
	free(f->ev_count);
	free(f->lost_ping_at);
	free(f->lost_ping_by);
	gossip_buf_free(&f->resp);
	free(f);
}

size_t fakenet_size(const struct fakenet *f)
{
	return f->n;
}

uint64_t fakenet_now(const struct fakenet *f)
{
	return f->now;
}

struct gossip *fakenet_core(struct fakenet *f, size_t i)
{
	return i < f->n ? f->nodes[i].g : NULL;
}

const char *fakenet_name(const struct fakenet *f, size_t i)
{
	return f->nodes[i].name;
}

const char *fakenet_addr(const struct fakenet *f, size_t i)
{
	return f->nodes[i].addr;
}

/* ------------------------------------------------------------------ */
/* Delivery                                                            */
/* ------------------------------------------------------------------ */

static bool link_cut(const struct fakenet *f, size_t a, size_t b)
{
	return f->blocked[a * f->n + b] || f->blocked[b * f->n + a];
}

static void fail_stream(struct fakenet *f, const struct item *req, uint64_t at)
{
	struct item *it = item_new(f, ITEM_STREAM_FAIL, req->to, req->from, NULL, 0, at);

	it->gen = req->gen;
	it->stream_id = req->stream_id;
	heap_push(f, it);
}

/* Hands @it to its (running, unstarved or now scheduled) target. */
static void deliver(struct fakenet *f, struct item *it)
{
	struct fnode *to = &f->nodes[it->to];
	struct fnode *from = &f->nodes[it->from];
	int rc;

	switch (it->kind) {
	case ITEM_PACKET:
		f->stats.delivered++;
		gossip_recv_packet(to->g, from->name, from->addr, it->data, it->len, f->now);
		break;
	case ITEM_STREAM_REQ:
		f->resp.len = 0;
		rc = gossip_stream_serve(to->g, from->name, it->data, it->len, &f->resp, f->now);
		if (rc == 0 && !FRAME_FITS(f->resp.len)) {
			/* The transport refuses to frame the answer. */
			f->stats.streams_oversize++;
			rc = -EMSGSIZE;
		}
		if (rc == 0) {
			struct item *r = item_new(f, ITEM_STREAM_RESP, it->to, it->from,
						  f->resp.data, f->resp.len,
						  f->now + latency(f));

			r->gen = it->gen;
			r->stream_id = it->stream_id;
			heap_push(f, r);
		} else {
			fail_stream(f, it, f->now + latency(f));
		}
		break;
	case ITEM_STREAM_RESP:
		gossip_stream_done(to->g, it->stream_id, it->data, it->len, f->now);
		break;
	case ITEM_STREAM_FAIL:
		f->stats.streams_failed++;
		gossip_stream_failed(to->g, it->stream_id, f->now);
		break;
	}
	node_refresh(to);
}

/* An item reaches its target's door: dropped, queued or delivered. */
static void arrive(struct fakenet *f, struct item *it)
{
	struct fnode *to = &f->nodes[it->to];

	switch (it->kind) {
	case ITEM_PACKET:
		if (to->killed) {
			f->stats.to_dead++;
			if (gossip_packet_decode(it->data, it->len, &f->pkt, NULL, 0) == 0 &&
			    has_ping_to(&f->pkt, to->name) &&
			    it->sent_at < f->lost_ping_at[it->to]) {
				f->lost_ping_at[it->to] = it->sent_at;
				f->lost_ping_by[it->to] = it->from;
			}
			free(it);
			return;
		}
		break;
	case ITEM_STREAM_REQ:
		if (to->killed || link_cut(f, it->from, it->to)) {
			fail_stream(f, it, it->sent_at + STREAM_FAIL_MS);
			free(it);
			return;
		}
		break;
	case ITEM_STREAM_RESP:
	case ITEM_STREAM_FAIL:
		/* The requester died or was replaced: nobody is waiting. */
		if (to->killed || to->gen != it->gen) {
			free(it);
			return;
		}
		if (it->kind == ITEM_STREAM_RESP && link_cut(f, it->from, it->to)) {
			it->kind = ITEM_STREAM_FAIL;
			it->at = it->sent_at + STREAM_FAIL_MS;
			it->seq = f->seq++;
			heap_push(f, it);
			return;
		}
		break;
	}
	if (to->starve) {
		items_reserve(&to->backlog, to->blen, &to->bcap, 64);
		to->backlog[to->blen++] = it;
		node_refresh(to);
		return;
	}
	deliver(f, it);
	free(it);
}

/* Reads the oldest datagram or frame @nd's backlog holds (there is one). */
static void backlog_read_one(struct fakenet *f, struct fnode *nd)
{
	struct item *it = nd->backlog[0];

	nd->blen--;
	memmove(nd->backlog, nd->backlog + 1, nd->blen * sizeof(*nd->backlog));
	deliver(f, it);
	free(it);
}

/* A node's turn: timers first, then (starved) what arrived meanwhile. */
static void node_act(struct fakenet *f, struct fnode *nd)
{
	if (gossip_next_deadline(nd->g) <= f->now)
		gossip_tick(nd->g, f->now);
	while (nd->starve && nd->blen && nd->backlog[0]->at <= f->now && !nd->killed)
		backlog_read_one(f, nd);
	node_refresh(nd);
}

/* The earliest thing that will happen, and who does it (heap or node). */
static uint64_t next_time(const struct fakenet *f, bool *from_heap, size_t *who)
{
	uint64_t best = FAKENET_NEVER;

	*who = 0;
	for (size_t i = 0; i < f->n; i++) {
		if (f->nodes[i].next < best) {
			best = f->nodes[i].next;
			*who = i;
		}
	}
	*from_heap = f->hlen && f->heap[0]->at <= best;
	return *from_heap ? f->heap[0]->at : best;
}

bool fakenet_run_until_cond(struct fakenet *f, uint64_t t,
			    bool (*done)(struct fakenet *f, void *ctx), void *ctx)
{
	uint64_t steps = 0;

	for (;;) {
		bool from_heap;
		size_t who;
		uint64_t at = next_time(f, &from_heap, &who);

		/* Conditions are judged once everything due at "now" is done. */
		if (at > f->now && done && done(f, ctx))
			return true;
		if (at > t)
			break;
		if (at > f->now)
			f->now = at;
		if (from_heap)
			arrive(f, heap_pop(f));
		else
			node_act(f, &f->nodes[who]);
		if (++steps > STEPS_MAX)
			die("run loop exceeded its step bound (livelock?)");
	}
	if (t > f->now)
		f->now = t;
	return done ? done(f, ctx) : false;
}

void fakenet_run_until(struct fakenet *f, uint64_t t)
{
	fakenet_run_until_cond(f, t, NULL, NULL);
}

void fakenet_run_for(struct fakenet *f, uint64_t ms)
{
	fakenet_run_until(f, f->now + ms);
}

/* ------------------------------------------------------------------ */
/* Network and node control                                            */
/* ------------------------------------------------------------------ */

static struct fnode *node(struct fakenet *f, size_t i)
{
	if (i >= f->n)
		die("node index out of range");
	return &f->nodes[i];
}

void fakenet_join(struct fakenet *f, size_t i, size_t seed)
{
	struct fnode *nd = node(f, i);

	gossip_join(nd->g, node(f, seed)->addr, f->now);
	node_refresh(nd);
}

void fakenet_set_latency(struct fakenet *f, uint32_t base_ms, uint32_t jitter_ms)
{
	f->lat_base = base_ms;
	f->lat_jitter = jitter_ms;
}

void fakenet_set_loss(struct fakenet *f, uint32_t pct)
{
	f->loss_pct = pct > 100 ? 100 : pct;
}

void fakenet_block(struct fakenet *f, size_t from, size_t to)
{
	node(f, from);
	node(f, to);
	f->blocked[from * f->n + to] = 1;
}

void fakenet_partition(struct fakenet *f, const size_t *side, size_t n)
{
	uint8_t *in = xcalloc(f->n, 1);

	for (size_t i = 0; i < n; i++)
		in[side[i] < f->n ? side[i] : 0] = 1;
	for (size_t a = 0; a < f->n; a++) {
		for (size_t b = 0; b < f->n; b++) {
			if (in[a] != in[b])
				f->blocked[a * f->n + b] = 1;
		}
	}
	free(in);
}

void fakenet_heal(struct fakenet *f)
{
	memset(f->blocked, 0, f->n * f->n);
}

void fakenet_set_filter(struct fakenet *f, fakenet_filter_fn fn, void *ctx)
{
	f->filter = fn;
	f->filter_ctx = ctx;
}

void fakenet_kill(struct fakenet *f, size_t i)
{
	struct fnode *nd = node(f, i);

	nd->killed = true;
	backlog_clear(nd);
	node_refresh(nd);
}

bool fakenet_killed(const struct fakenet *f, size_t i)
{
	return f->nodes[i].killed;
}

void fakenet_restart(struct fakenet *f, size_t i, size_t seed)
{
	struct fnode *nd = node(f, i);

	backlog_clear(nd);
	gossip_delete(nd->g);
	nd->g = NULL;
	nd->killed = false;
	nd->gen++;
	nd->id += 1ULL << 16;   /* a later start time, as the agent's ids are */
	node_start(f, nd);
	fakenet_join(f, i, seed);
}

void fakenet_starve(struct fakenet *f, size_t i, uint32_t period_ms)
{
	struct fnode *nd = node(f, i);

	nd->starve = period_ms;
	/* Back to normal: whatever waited is read now, in order. */
	while (period_ms == 0 && nd->blen && !nd->killed)
		backlog_read_one(f, nd);
	node_refresh(nd);
}

void fakenet_inject(struct fakenet *f, size_t from, size_t to, const uint8_t *buf, size_t len)
{
	struct fnode *src = node(f, from), *dst = node(f, to);

	if (dst->killed)
		return;
	gossip_recv_packet(dst->g, src->name, src->addr, buf, len, f->now);
	node_refresh(dst);
}

void fakenet_leave(struct fakenet *f, size_t i)
{
	struct fnode *nd = node(f, i);

	gossip_leave(nd->g, f->now);
	node_refresh(nd);
}

/* ------------------------------------------------------------------ */
/* Views                                                               */
/* ------------------------------------------------------------------ */

int fakenet_status(const struct fakenet *f, size_t i, size_t j)
{
	const struct gossip_member *m;

	if (i >= f->n || j >= f->n || !f->nodes[i].g)
		return -1;
	m = gossip_member_find(f->nodes[i].g, f->nodes[j].name);
	return m ? (int)gossip_member_status(m) : -1;
}

uint64_t fakenet_incarnation(const struct fakenet *f, size_t i, size_t j)
{
	const struct gossip_member *m;

	if (i >= f->n || j >= f->n || !f->nodes[i].g)
		return 0;
	m = gossip_member_find(f->nodes[i].g, f->nodes[j].name);
	return m ? gossip_member_incarnation(m) : 0;
}

bool fakenet_running(const struct fakenet *f, size_t i)
{
	const struct fnode *nd = &f->nodes[i];

	return !nd->killed && nd->g &&
	       gossip_member_status(gossip_self(nd->g)) != GOSSIP_LEFT;
}

size_t fakenet_count_seeing(const struct fakenet *f, size_t j, enum gossip_status status)
{
	size_t c = 0;

	for (size_t i = 0; i < f->n; i++) {
		if (i != j && fakenet_running(f, i) && fakenet_status(f, i, j) == (int)status)
			c++;
	}
	return c;
}

bool fakenet_all_see(const struct fakenet *f, size_t j, enum gossip_status status)
{
	for (size_t i = 0; i < f->n; i++) {
		if (i != j && fakenet_running(f, i) && fakenet_status(f, i, j) != (int)status)
			return false;
	}
	return true;
}

bool fakenet_converged(const struct fakenet *f)
{
	size_t running = 0;

	for (size_t i = 0; i < f->n; i++)
		running += fakenet_running(f, i);
	for (size_t i = 0; i < f->n; i++) {
		if (!fakenet_running(f, i))
			continue;
		if (gossip_live_count(f->nodes[i].g) != running)
			return false;
		for (size_t j = 0; j < f->n; j++) {
			if (j != i && fakenet_running(f, j) &&
			    fakenet_status(f, i, j) != GOSSIP_ALIVE)
				return false;
		}
	}
	return true;
}

/* ------------------------------------------------------------------ */
/* Records                                                             */
/* ------------------------------------------------------------------ */

void fakenet_events_reset(struct fakenet *f)
{
	size_t n = f->n * f->n * FAKENET_EV_TYPES;

	for (size_t k = 0; k < n; k++) {
		f->ev_first[k] = FAKENET_NEVER;
		f->ev_last[k] = FAKENET_NEVER;
		f->ev_count[k] = 0;
	}
	for (size_t j = 0; j < f->n; j++) {
		f->lost_ping_at[j] = FAKENET_NEVER;
		f->lost_ping_by[j] = 0;
		f->nodes[j].joined = 0;
	}
}

uint64_t fakenet_event_first(const struct fakenet *f, size_t i, size_t j,
			     enum gossip_event_type type)
{
	return f->ev_first[rec_idx(f, i, j, type)];
}

uint64_t fakenet_event_last(const struct fakenet *f, size_t i, size_t j,
			    enum gossip_event_type type)
{
	return f->ev_last[rec_idx(f, i, j, type)];
}

uint32_t fakenet_event_count(const struct fakenet *f, size_t i, size_t j,
			     enum gossip_event_type type)
{
	return f->ev_count[rec_idx(f, i, j, type)];
}

uint64_t fakenet_event_total(const struct fakenet *f, size_t j, enum gossip_event_type type)
{
	uint64_t c = 0;

	for (size_t i = 0; i < f->n; i++)
		c += f->ev_count[rec_idx(f, i, j, type)];
	return c;
}

uint64_t fakenet_event_earliest(const struct fakenet *f, size_t j, enum gossip_event_type type,
				size_t *observer)
{
	uint64_t best = FAKENET_NEVER;

	for (size_t i = 0; i < f->n; i++) {
		uint64_t t = f->ev_first[rec_idx(f, i, j, type)];

		if (t < best) {
			best = t;
			if (observer)
				*observer = i;
		}
	}
	return best;
}

uint32_t fakenet_joined(const struct fakenet *f, size_t i)
{
	return f->nodes[i].joined;
}

uint64_t fakenet_lost_ping_first(const struct fakenet *f, size_t j, size_t *sender)
{
	if (sender)
		*sender = f->lost_ping_by[j];
	return f->lost_ping_at[j];
}

void fakenet_stats_get(const struct fakenet *f, struct fakenet_stats *out)
{
	*out = f->stats;
}
