/*
 * storage/pool.c - a bounded pool of pgconn (see pool.h for the contract).
 *
 * The pool owns an array of pgconn and nothing on the loop itself: no
 * handles, so pgpool_close() can free it at once (each pgconn frees itself
 * when libuv has closed its handles).
 *
 * Every accepted query carries a small relay record (struct relay) as the
 * pgconn callback's argument, so the pool sees every answer (for its
 * counters and last_error) before handing it on.  pgconn_close() drops
 * queued queries without calling back, which would leak their records:
 * the records in flight are kept on a list and freed by pgpool_close().
 * The relay unlinks and frees its record BEFORE calling the user's
 * callback, and touches nothing after it, so that the callback may close
 * the pool.
 *
 * Choosing a connection reads each pgconn's stats (a copy of a few
 * hundred bytes): cheap next to a round trip, and the pool is at most 64
 * connections.
 */
#include "storage/pool.h"
#include "lib/splitmix.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct relay {
	struct relay *prev, *next;
	struct pgpool *pool;
	pgconn_cb cb;
	void *arg;
};

struct pgpool {
	struct pgconn **conns;
	uint32_t size;
	uint32_t last;                /* index chosen last, for round robin on ties */
	struct relay *inflight;       /* records of accepted, unanswered queries */
	struct pgpool_stats stats;    /* the pool's own counters */
};

static void relay_unlink(struct pgpool *p, struct relay *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		p->inflight = r->next;
	if (r->next)
		r->next->prev = r->prev;
}

static void on_reply(void *arg, const struct pgconn_reply *reply)
{
	struct relay *r = arg;
	struct pgpool *p = r->pool;
	pgconn_cb cb = r->cb;
	void *cb_arg = r->arg;

	relay_unlink(p, r);
	free(r);
	if (reply->status < 0) {
		p->stats.failures++;
		if (reply->status == -ETIMEDOUT)
			p->stats.timeouts++;
		snprintf(p->stats.last_error, sizeof(p->stats.last_error), "%s", reply->error);
	}
	cb(cb_arg, reply);        /* may free the pool: nothing after this */
}

struct pgpool *pgpool_new(uv_loop_t *loop, const struct pgpool_config *cfg, char *err,
			  size_t errlen)
{
	struct pgconn_config cc;
	struct pgpool *p;
	uint64_t rng;

	if (err && errlen)
		err[0] = '\0';
	/* The rest (loop, conninfo, max_queue) pgconn_new() checks. */
	if (!cfg) {
		if (err)
			snprintf(err, errlen, "no conninfo");
		return NULL;
	}
	if (cfg->size > PGPOOL_MAX_SIZE) {
		if (err)
			snprintf(err, errlen, "pool size %u above %d", cfg->size, PGPOOL_MAX_SIZE);
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (p)
		p->size = cfg->size ? cfg->size : 4;
	if (p)
		p->conns = calloc(p->size, sizeof(*p->conns));
	if (!p || !p->conns) {
		free(p);
		if (err)
			snprintf(err, errlen, "out of memory");
		return NULL;
	}
	p->last = p->size - 1;        /* the first query goes to connection 0 */
	p->stats.size = p->size;
	memset(&cc, 0, sizeof(cc));
	cc.conninfo = cfg->conninfo;
	cc.application_name = cfg->application_name;
	cc.query_timeout_ms = cfg->query_timeout_ms;
	cc.statement_timeout_ms = cfg->statement_timeout_ms;
	cc.connect_timeout_ms = cfg->connect_timeout_ms;
	cc.max_result_bytes = cfg->max_result_bytes;
	cc.max_queue = cfg->max_queue ? cfg->max_queue : 64;
	rng = cfg->seed;
	for (uint32_t i = 0; i < p->size; i++) {
		/* Own jitter per connection: they must not retry in step. */
		cc.seed = splitmix64(&rng);
		p->conns[i] = pgconn_new(loop, &cc, err, errlen);
		if (!p->conns[i]) {
			pgpool_close(p);
			return NULL;
		}
	}
	return p;
}

int pgpool_query(struct pgpool *p, const char *sql, int nparams, const char *const *params,
		 uint32_t timeout_ms, pgconn_cb cb, void *arg)
{
	uint32_t best = 0, best_queued = UINT32_MAX;
	bool best_connected = false;
	struct relay *r;
	int rc;

	if (!p || !sql || !cb)
		return -EINVAL;
	/* Fewest queued; then connected; then the first after the last pick. */
	for (uint32_t k = 1; k <= p->size; k++) {
		uint32_t i = (p->last + k) % p->size;
		uint32_t queued = pgconn_queued(p->conns[i]);
		bool connected = pgconn_connected(p->conns[i]);

		if (queued < best_queued ||
		    (queued == best_queued && connected && !best_connected)) {
			best = i;
			best_queued = queued;
			best_connected = connected;
		}
	}
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->pool = p;
	r->cb = cb;
	r->arg = arg;
	rc = pgconn_query(p->conns[best], sql, nparams, params, timeout_ms, on_reply, r);
	if (rc != 0) {
		free(r);
		if (rc == -EAGAIN)
			p->stats.rejected++;      /* the least loaded is full: all are */
		return rc;
	}
	p->last = best;
	r->next = p->inflight;
	if (p->inflight)
		p->inflight->prev = r;
	p->inflight = r;
	p->stats.queries++;
	return 0;
}

void pgpool_close(struct pgpool *p)
{
	struct relay *r, *next;

	if (!p)
		return;
	for (uint32_t i = 0; i < p->size; i++)
		pgconn_close(p->conns[i]);        /* drops queries, no callbacks */
	for (r = p->inflight; r; r = next) {
		next = r->next;
		free(r);
	}
	free(p->conns);
	free(p);
}

void pgpool_stats_get(const struct pgpool *p, struct pgpool_stats *out)
{
	*out = p->stats;
	out->connected = 0;
	out->queued = 0;
	out->connects = 0;
	out->connect_failures = 0;
	for (uint32_t i = 0; i < p->size; i++) {
		struct pgconn_stats st;

		pgconn_stats_get(p->conns[i], &st);
		out->connected += st.connected ? 1 : 0;
		out->queued += st.queued;
		out->connects += st.connects;
		out->connect_failures += st.connect_failures;
	}
}
