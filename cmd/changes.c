/*
 * cmd/changes.c - the leader's replication consumer and the fan-out of
 * change events (cmd/changes.h says what they promise).
 *
 * Sequence numbers.  Every transaction the leader buffers in one
 * leadership gets the next seq; the outbox holds seq base..next-1.  A
 * peer's cursor is the seq of the next transaction to send it; acked is
 * one past the last it acknowledged.  Confirming to Postgres = the commit
 * position of seq (min acked over counted peers) - 1; the outbox is
 * trimmed to that.
 */
#include "cmd/changes.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "cmd/agent.h"
#include "cmd/onchange.h"
#include "lib/bytebuf.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "region/handlers.h"
#include "region/region.h"
#include "region/rpc.h"
#include "storage/lsn.h"
#include "storage/pgoutput.h"
#include "storage/replication.h"

#define TICK_MS 50                  /* member refresh, retries, pause/resume */
#define DELIVER_DEADLINE_MS 10000
#define RETRY_MIN_MS 100
#define RETRY_MAX_MS 2000
#define PEERS_MAX 4096

struct txn {
	uint64_t commit_lsn;          /* start of the commit record (dedupe, order) */
	uint64_t confirm_lsn;         /* what to confirm to the slot (last part only) */
	uint32_t part;                /* a large transaction travels in parts */
	bool last;                    /* its last part */
	bool empty;                   /* no events (a last part, or only the lease's rows) */
	int64_t commit_time_us;       /* Unix */
	char *json;                   /* {"lsn":..,"xid":..,"events":[...]} */
	size_t len;
};

struct peer {
	char name[GOSSIP_NAME_MAX + 1];
	char addr[GOSSIP_ADDR_MAX + 1];
	bool self, inflight, gone, seen;
	bool stuck;                   /* acknowledged nothing for changes_stuck_ms */
	uint64_t next, acked, sent_to; /* seqs */
	uint64_t lost, told;          /* entries with events it will never get, in this
					 leadership: in all, and acknowledged news of */
	uint64_t full_before_next;    /* entries with events before seq next (ever) */
	uint64_t progress_at;         /* loop ms: last ack, or last time caught up */
	uint64_t retry_at;
	uint32_t failures;
};

struct changes {
	uv_loop_t *loop;
	struct agent *a;
	const struct config *cfg;
	struct events *events;
	uv_timer_t tick, kick;
	int handles;
	bool closing;
	struct rpc_serve_ops next;

	/* leader side */
	bool leading, paused;
	uint64_t term;
	struct repl *repl;
	struct pgoutput *dec;
	bool in_txn, skipping;
	uint32_t xid, part;
	int64_t commit_time_us;
	uint64_t final_lsn;
	uint64_t restart_at;          /* a paused consumer starts again no sooner */
	uint32_t restart_delay;       /* backoff of restarts after failures */
	char *cur;                    /* the transaction's events, JSON text so far */
	size_t cur_len, cur_cap, cur_events;
	struct txn *out;              /* ring: seq base..next-1 at out[(seq) % cap] */
	size_t cap;
	uint64_t base, next_seq;
	uint64_t full_before_base;    /* entries with events trimmed (this leadership) */
	size_t out_bytes;
	uint64_t last_buffered;       /* commit_lsn of the newest transaction buffered */
	uint64_t confirmed;
	struct peer *peers;
	size_t npeers;

	/* member side */
	struct onchange *onchange;    /* --on-change, or NULL */
	uint64_t last_delivered;      /* commit_lsn of the last part delivered */
	uint32_t last_part;           /* ... and which part */
	uint64_t max_term;
	uint64_t gap_term, gap_total; /* the leader's running count of our losses */

	uint64_t txns_in, events_in, pauses, delivered, duplicates, stale, slot_busy, too_large;
	uint64_t values_omitted, stuck, skipped, missed;
};

/* ------------------------------------------------------------------ */
/* Member side: changes.deliver                                        */
/* ------------------------------------------------------------------ */

/* Delivers one batch (JSON text of [{"term","leader","txns":[...]}]);
 * answers into @ack. */
static int deliver_batch(struct changes *c, json_t *batch, char *err, size_t errlen,
			 uint64_t *acked)
{
	json_t *term = json_object_get(batch, "term"), *txns = json_object_get(batch, "txns");
	json_int_t lost;
	size_t i, j;
	json_t *t, *ev;

	if (!json_is_integer(term) || !json_is_array(txns)) {
		snprintf(err, errlen, "expected {\"term\":N,\"txns\":[...]}");
		return -EINVAL;
	}
	if (json_integer_value(term) < 1 ||
	    ((uint64_t)json_integer_value(term) > c->max_term &&
	     (uint64_t)json_integer_value(term) - c->max_term > (1ULL << 32))) {
		snprintf(err, errlen, "implausible term %lld", (long long)json_integer_value(term));
		return -EINVAL;
	}
	if ((uint64_t)json_integer_value(term) < c->max_term) {
		c->stale++;
		snprintf(err, errlen, "stale term %lld: term %llu leads now",
			 (long long)json_integer_value(term), (unsigned long long)c->max_term);
		return -ESTALE;
	}
	c->max_term = (uint64_t)json_integer_value(term);
	/* "lost": the leader's running count, this leadership, of what it
	 * trimmed before this node had it.  What grew since the last batch
	 * is a new gap; a batch sent again (its answer was lost) tells
	 * nothing new. */
	lost = json_integer_value(json_object_get(batch, "lost"));
	if (c->gap_term != c->max_term) {
		c->gap_term = c->max_term;
		c->gap_total = 0;
	}
	if (lost > 0 && (uint64_t)lost > c->gap_total) {
		/* Trimmed while this node was failed, gone or stuck: said to
		 * the subscribers, who must read again what they need. */
		uint64_t n = (uint64_t)lost - c->gap_total;
		json_t *gap = json_pack("{s:s, s:I, s:I, s:O*}", "op", "gap", "skipped",
					(json_int_t)n, "term", json_integer_value(term), "leader",
					json_object_get(batch, "leader"));

		c->gap_total = (uint64_t)lost;
		c->missed += n;
		LOG(LOG_WARNING, "changes", "the leader (term %lld) could not deliver %llu "
		    "transaction(s) to this node in time: they will not come (counted; "
		    "subscribers get a change event with op \"gap\")",
		    (long long)json_integer_value(term), (unsigned long long)n);
		if (gap)
			events_publish(c->events, "change", gap);
	}
	json_array_foreach(txns, i, t) {
		uint64_t lsn;
		const char *s = json_string_value(json_object_get(t, "commit_lsn"));

		json_int_t part = json_integer_value(json_object_get(t, "part"));

		if (s == NULL || lsn_parse(s, &lsn) != 0 || part < 0 || part > UINT32_MAX) {
			snprintf(err, errlen, "txns[%zu]: no commit_lsn or a bad part", i);
			return -EINVAL;
		}
		/* Parts are cut the same way by every leader: (lsn, part)
		 * orders them, and one already delivered is a duplicate. */
		if (lsn < c->last_delivered ||
		    (lsn == c->last_delivered && (uint32_t)part <= c->last_part && lsn != 0)) {
			c->duplicates++;
			continue;
		}
		json_array_foreach(json_object_get(t, "events"), j, ev) {
			json_object_set_new(ev, "term", json_integer(json_integer_value(term)));
			json_object_set_new(ev, "type", json_string("change"));
			if (c->onchange) {
				char *line = json_dumps(ev, JSON_COMPACT);

				if (line)
					onchange_write(c->onchange, line, strlen(line));
				free(line);
			}
			events_publish(c->events, "change", json_incref(ev));
			c->delivered++;
		}
		c->last_delivered = lsn;
		c->last_part = (uint32_t)part;
	}
	*acked = c->last_delivered;
	return 0;
}

static int rpc_start_call(void *ctx, const struct rpc_serve_call *call, rpc_reply_fn reply,
			  void *reply_ctx, void **job)
{
	struct changes *c = ctx;
	struct rpc_serve_reply r = { .error = RPC_E_NONE };
	char *json = NULL, err[256] = "", out[64], lsn[LSN_STR_MAX];
	json_t *args;
	uint64_t acked = 0;
	int rc;

	if (strcmp(call->method, CHANGES_METHOD) != 0)
		return c->next.start(c->next.ctx, call, reply, reply_ctx, job);
	*job = NULL;
	rc = rpc_args_to_json(call->args, call->args_len, &json, NULL, err, sizeof(err));
	args = rc == 0 ? json_loads(json, JSON_ALLOW_NUL, NULL) : NULL;
	free(json);
	rc = args ? deliver_batch(c, json_array_get(args, 0), err, sizeof(err), &acked) : -EINVAL;
	json_decref(args);
	if (rc != 0) {
		r.error = rc == -ESTALE ? RPC_E_UNAVAILABLE : RPC_E_BAD_REQUEST;
		r.message = *err ? err : "changes.deliver: bad arguments";
		reply(reply_ctx, &r);
		return 0;
	}
	lsn_format(acked, lsn);
	snprintf(out, sizeof(out), "{\"acked\":\"%s\"}", lsn);
	r.result = (const uint8_t *)out;
	r.result_len = strlen(out);
	reply(reply_ctx, &r);
	return 0;
}

static void rpc_cancel_call(void *ctx, void *job)
{
	struct changes *c = ctx;

	c->next.cancel(c->next.ctx, job);   /* ours answer at once: never a job */
}

struct rpc_serve_ops changes_rpc_ops(struct changes *c, struct rpc_serve_ops next)
{
	c->next = next;
	return (struct rpc_serve_ops){ .ctx = c, .start = rpc_start_call,
				       .cancel = rpc_cancel_call };
}

/* ------------------------------------------------------------------ */
/* Leader side: the outbox                                             */
/* ------------------------------------------------------------------ */

static struct txn *txn_at(struct changes *c, uint64_t seq)
{
	return &c->out[seq % c->cap];
}

static void outbox_clear(struct changes *c)
{
	for (uint64_t s = c->base; s < c->next_seq; s++)
		free(txn_at(c, s)->json);
	c->base = c->next_seq = 0;
	c->full_before_base = 0;
	c->out_bytes = 0;
	c->npeers = 0;
	free(c->cur);
	c->cur = NULL;
	c->cur_len = c->cur_cap = c->cur_events = 0;
	c->in_txn = c->skipping = false;
}

/* The transaction's events never grow past this: cut into parts well
 * before (CHANGES_PART_BYTES), so only a bug could reach it. */
#define CUR_MAX (2 * CHANGES_PART_BYTES + 4096)

/* Appends @n bytes of @s to the transaction's events (kept NUL-terminated);
 * false when out of memory. */
static bool cur_append(struct changes *c, const char *s, size_t n)
{
	uint8_t *p = (uint8_t *)c->cur;
	int rc = bytebuf_reserve(&p, c->cur_len, &c->cur_cap, n + 1, CUR_MAX);

	c->cur = (char *)p;
	if (rc)
		return false;
	memcpy(c->cur + c->cur_len, s, n);
	c->cur_len += n;
	c->cur[c->cur_len] = '\0';
	return true;
}

static void consumer_stop(struct changes *c)
{
	repl_stop(c->repl);
	c->repl = NULL;
	if (c->dec)
		pgoutput_reset(c->dec);
	free(c->cur);
	c->cur = NULL;
	c->cur_len = c->cur_cap = c->cur_events = 0;
	c->in_txn = c->skipping = false;
}

static void consumer_start(struct changes *c);
static void send_kick(struct changes *c);

static void cur_reset(struct changes *c)
{
	c->cur_len = c->cur_events = 0;
	if (c->cur)
		c->cur[0] = '\0';
}

/*
 * The events gathered so far into the outbox as one part of the current
 * transaction (@last: the whole rest of it, with the position to confirm).
 * A transaction is cut into parts of at most CHANGES_PART_BYTES so that
 * every batch fits one RPC frame; members deliver part by part.
 */
static void txn_part(struct changes *c, uint64_t commit_lsn, uint64_t confirm_lsn, bool last)
{
	char lsn[LSN_STR_MAX], *json;
	struct txn *t;
	bool empty;
	int n;

	/* A whole transaction with nothing to fan out (the lease's own
	 * renewals, one a second) goes to nobody: with nothing waiting before
	 * it, its position is confirmed at once. */
	if (last && c->part == 0 && c->cur_events == 0 && c->base == c->next_seq) {
		cur_reset(c);
		c->last_buffered = commit_lsn;
		if (c->repl && repl_confirm(c->repl, confirm_lsn) == 0)
			c->confirmed = confirm_lsn;
		return;
	}
	lsn_format(commit_lsn, lsn);
	n = asprintf(&json, "{\"commit_lsn\":\"%s\",\"part\":%u,\"xid\":%u,\"events\":[%s]}",
		     lsn, c->part, c->xid, c->cur ? c->cur : "");
	empty = c->cur_events == 0;
	cur_reset(c);
	if (n < 0) {
		LOG(LOG_ERROR, "changes", "out of memory buffering a transaction: restarting the "
		    "consumer from the confirmed position");
		consumer_stop(c);
		c->paused = true;
		return;
	}
	if (c->next_seq - c->base == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 1024;
		struct txn *o = calloc(cap, sizeof(*o));

		if (o == NULL) {
			free(json);
			consumer_stop(c);
			c->paused = true;
			return;
		}
		for (uint64_t s = c->base; s < c->next_seq; s++)
			o[s % cap] = *txn_at(c, s);
		free(c->out);
		c->out = o;
		c->cap = cap;
	}
	t = txn_at(c, c->next_seq++);
	*t = (struct txn){ .commit_lsn = commit_lsn, .confirm_lsn = last ? confirm_lsn : 0,
			   .part = c->part++, .last = last, .commit_time_us = c->commit_time_us,
			   .empty = empty, .json = json, .len = (size_t)n };
	c->out_bytes += (size_t)n;
	if (last) {
		c->last_buffered = commit_lsn;
		c->txns_in++;
	}
	send_kick(c);
	if (c->out_bytes > CHANGES_OUTBOX_BYTES || c->next_seq - c->base > CHANGES_OUTBOX_TXNS) {
		/* A transaction cut short here comes again whole after the
		 * restart (it is not marked buffered until its last part). */
		LOG(LOG_WARNING, "changes", "outbox full (%zu transactions, %zu bytes) waiting for "
		    "slow members: pausing the consumer", (size_t)(c->next_seq - c->base),
		    c->out_bytes);
		c->pauses++;
		consumer_stop(c);
		c->paused = true;
	}
}

static void on_message(void *ctx, uint64_t lsn, const uint8_t *data, size_t len)
{
	struct changes *c = ctx;
	struct pgoutput_msg m;
	char lsntext[LSN_STR_MAX], err[200];
	json_t *ev;
	char *s;
	size_t omitted;
	int rc;

	if (pgoutput_decode(c->dec, data, len, &m) != 0) {
		LOG_RATELIMITED(LOG_ERROR, "changes", "undecodable pgoutput message at %llX: %s; "
				"restarting the consumer", (unsigned long long)lsn,
				pgoutput_error(c->dec));
		consumer_stop(c);
		c->paused = true;   /* the tick starts it again */
		return;
	}
	switch (m.kind) {
	case PGOUTPUT_BEGIN:
		c->in_txn = true;
		c->part = 0;
		cur_reset(c);
		c->xid = m.begin.xid;
		c->final_lsn = m.begin.final_lsn;
		c->commit_time_us = pgoutput_time_to_unix_us(m.begin.commit_time);
		/* Already buffered in this leadership (the consumer was
		 * restarted after a pause): skip it whole. */
		c->skipping = c->final_lsn <= c->last_buffered;
		break;
	case PGOUTPUT_COMMIT:
		if (!c->skipping && c->in_txn)
			txn_part(c, m.commit.commit_lsn, lsn, true);
		cur_reset(c);
		c->in_txn = c->skipping = false;
		break;
	case PGOUTPUT_INSERT:
	case PGOUTPUT_UPDATE:
	case PGOUTPUT_DELETE:
	case PGOUTPUT_TRUNCATE:
		if (c->skipping || !c->in_txn)
			break;
		/* The election's own lease row is in every FOR ALL TABLES
		 * publication and changes every renewal: not the
		 * application's news. */
		if (m.kind != PGOUTPUT_TRUNCATE && m.change.rel &&
		    strcmp(m.change.rel->relname, "meridian_lease") == 0)
			break;
		lsn_format(lsn, lsntext);
		if (pgoutput_change_json(&m, lsntext, c->xid, c->commit_time_us, &ev, err,
					 sizeof(err)) != 0) {
			LOG_RATELIMITED(LOG_ERROR, "changes", "a change at %s cannot be sent as JSON: "
					"%s (skipped)", lsntext, err);
			break;
		}
		rc = pgoutput_change_dump(ev, CHANGES_PART_BYTES, &s, &omitted);
		json_decref(ev);
		if (rc == -EMSGSIZE) {
			/* Even without its values it cannot travel: said, counted. */
			c->too_large++;
			LOG_RATELIMITED(LOG_ERROR, "changes", "a change at %s in transaction %u is "
					"more than %u bytes even without its values: not fanned "
					"out (counted)", lsntext, c->xid, CHANGES_PART_BYTES);
			break;
		}
		if (rc == 0 && omitted) {
			c->values_omitted += omitted;
			LOG_RATELIMITED(LOG_WARNING, "changes", "a change at %s in transaction %u "
					"was over %u bytes: %zu value(s) left out, named in "
					"\"omitted\" (counted)", lsntext, c->xid,
					CHANGES_PART_BYTES, omitted);
		}
		if (s && c->cur_len + strlen(s) + 1 > CHANGES_PART_BYTES)
			txn_part(c, c->final_lsn, 0, false);
		if (s == NULL || !(c->cur_events == 0 || cur_append(c, ",", 1)) ||
		    !cur_append(c, s, strlen(s))) {
			free(s);
			LOG(LOG_ERROR, "changes", "out of memory gathering transaction %u: restarting "
			    "the consumer from the confirmed position", c->xid);
			consumer_stop(c);
			c->paused = true;
			break;
		}
		free(s);
		c->cur_events++;
		c->events_in++;
		break;
	default:
		break;
	}
}

static void on_state(void *ctx, enum repl_state state, const char *detail)
{
	struct changes *c = ctx;

	/* storage/replication.c logs the slot's states and errors itself;
	 * only the term is ours to add. */
	(void)detail;
	if (state == REPL_SLOT_BUSY) {
		c->slot_busy++;
	} else if (state == REPL_STREAMING) {
		c->restart_delay = 0;
		LOG(LOG_NOTICE, "changes", "consuming slot %s (term %llu)", c->cfg->slot,
		    (unsigned long long)c->term);
	}
	if (state == REPL_CONNECTING || state == REPL_ERROR) {
		/* A new session resends relations, and a transaction cut off
		 * by the drop comes again whole. */
		if (c->dec)
			pgoutput_reset(c->dec);
		cur_reset(c);
		c->in_txn = c->skipping = false;
	}
}

static void consumer_start(struct changes *c)
{
	struct repl_config rc = {
		.conninfo = c->cfg->primary_database_url,
		.slot = c->cfg->slot,
		.publication = c->cfg->publication,
		.mode = c->cfg->replication == CONFIG_REPL_POLL ? REPL_POLL : REPL_STREAM,
		.application_name = "meridian-replication",
		.seed = randombytes_random(),
	};
	struct repl_callbacks cb = { .on_message = on_message, .on_state = on_state, .ctx = c };
	char err[256] = "";

	if (c->dec == NULL)
		c->dec = pgoutput_new();
	c->paused = false;
	c->repl = c->dec ? repl_start(c->loop, &rc, &cb, err, sizeof(err)) : NULL;
	if (c->repl == NULL) {
		LOG_RATELIMITED(LOG_ERROR, "changes", "cannot start the replication consumer: %s",
				*err ? err : "out of memory");
		c->paused = true;
	}
}

/*
 * Starts a paused consumer again once the outbox has drained to half of
 * both bounds, and no sooner than its restart backoff (a consumer paused
 * by a failure must not reconnect in a loop).
 */
static void consumer_resume(struct changes *c)
{
	if (!c->paused || !c->leading || c->repl != NULL)
		return;
	if (c->out_bytes >= CHANGES_OUTBOX_BYTES / 2 ||
	    c->next_seq - c->base >= CHANGES_OUTBOX_TXNS / 2 || uv_now(c->loop) < c->restart_at)
		return;
	c->restart_delay = c->restart_delay ? c->restart_delay * 2 : 100;
	if (c->restart_delay > 5000)
		c->restart_delay = 5000;
	c->restart_at = uv_now(c->loop) + c->restart_delay;
	consumer_start(c);
}

/* ------------------------------------------------------------------ */
/* Leader side: peers                                                  */
/* ------------------------------------------------------------------ */

static void peer_send(struct changes *c, struct peer *p);

/* @p's cursor is behind the outbox: it stopped counting (failed, gone or
 * stuck) and the others' acknowledgements trimmed what it had not taken.
 * It jumps to the oldest entry held; how many it will never get rides
 * with its next batch (its running count, "lost"), and is counted.  Never while a batch
 * is in flight to it: that batch's answer says where it really is. */
static void peer_catch_base(struct changes *c, struct peer *p)
{
	uint64_t lost;

	if (p->next >= c->base)
		return;
	/* Entries without events (the lease's renewals) are no loss. */
	lost = c->full_before_base - p->full_before_next;
	p->lost += lost;
	c->skipped += lost;
	p->next = p->acked = c->base;
	p->full_before_next = c->full_before_base;
}

/* A member with work waiting that acknowledges nothing for
 * changes_stuck_ms (alive to gossip, but its cluster TCP blocked, say)
 * stops holding back the slot: Postgres would otherwise keep WAL for it
 * without end.  It counts again once it has caught up. */
static void peers_watch(struct changes *c)
{
	uint64_t now = uv_now(c->loop);

	for (size_t i = 0; i < c->npeers; i++) {
		struct peer *p = &c->peers[i];

		if (p->self || p->gone) {
			p->progress_at = now;   /* a member back counts from its return */
			continue;
		}
		if (p->acked >= c->next_seq && p->told == p->lost) {
			p->progress_at = now;   /* nothing waits for it */
		} else if (!p->stuck && now - p->progress_at >= c->cfg->changes_stuck_ms) {
			p->stuck = true;
			c->stuck++;
			LOG(LOG_WARNING, "changes", "member %s acknowledged nothing for %llu ms "
			    "with %llu waiting: it no longer holds back the slot, and may miss "
			    "changes (counted)", p->name,
			    (unsigned long long)(now - p->progress_at),
			    (unsigned long long)(c->next_seq - p->acked));
		}
	}
}

/* Alive members join (counting from the next transaction); members that
 * failed or left stop counting. */
static void peers_refresh(struct changes *c)
{
	const struct region_table *t = agent_regions(c->a);
	size_t n = region_member_count(t);

	for (size_t i = 0; i < c->npeers; i++)
		c->peers[i].seen = false;
	for (size_t i = 0; i < n; i++) {
		const struct region_member *m = region_member_at(t, i);
		bool live = m->status == GOSSIP_ALIVE || m->status == GOSSIP_SUSPECT;
		size_t j;

		for (j = 0; j < c->npeers; j++)
			if (strcmp(c->peers[j].name, m->name) == 0)
				break;
		if (j < c->npeers) {
			struct peer *p = &c->peers[j];

			p->seen = live;
			if (strcmp(p->addr, m->addr) != 0) {   /* restarted elsewhere */
				snprintf(p->addr, sizeof(p->addr), "%s", m->addr);
				p->failures = 0;
				p->retry_at = 0;
			}
			if (live && !p->inflight)
				peer_catch_base(c, p);
			continue;
		}
		if (!live)
			continue;
		if (c->npeers == PEERS_MAX) {
			/* Full: a member gone (and not in flight) makes room. */
			for (j = 0; j < c->npeers; j++)
				if (c->peers[j].gone && !c->peers[j].seen && !c->peers[j].inflight)
					break;
			if (j == c->npeers)
				continue;
			c->peers[j] = c->peers[--c->npeers];
		}
		if (c->npeers % 64 == 0) {
			struct peer *np = realloc(c->peers, (c->npeers + 64) * sizeof(*np));

			if (np == NULL)
				continue;
			c->peers = np;
		}
		c->peers[c->npeers] = (struct peer){ .self = m->self, .seen = true,
						     .next = c->base, .acked = c->base,
						     .full_before_next = c->full_before_base,
						     .progress_at = uv_now(c->loop) };
		snprintf(c->peers[c->npeers].name, sizeof(c->peers[0].name), "%s", m->name);
		snprintf(c->peers[c->npeers].addr, sizeof(c->peers[0].addr), "%s", m->addr);
		c->npeers++;
	}
	/* Members gone stay, for the leadership (bounded by PEERS_MAX): one
	 * that comes back is told what it lost meanwhile. */
	for (size_t i = 0; i < c->npeers; i++)
		c->peers[i].gone = !c->peers[i].seen;
}

/* Confirms what every counted member acknowledged; trims the outbox. */
static void confirm(struct changes *c)
{
	uint64_t min = c->next_seq;

	for (size_t i = 0; i < c->npeers; i++)
		if (!c->peers[i].gone && !c->peers[i].stuck && c->peers[i].acked < min)
			min = c->peers[i].acked;
	if (min <= c->base)
		return;
	/* The newest whole transaction every counted member has: only a
	 * last part carries the position to confirm. */
	for (uint64_t q = min; q > c->base; q--) {
		struct txn *t = txn_at(c, q - 1);

		if (t->last) {
			if (c->repl && repl_confirm(c->repl, t->confirm_lsn) == 0)
				c->confirmed = t->confirm_lsn;
			break;
		}
	}
	while (c->base < min) {
		struct txn *t = txn_at(c, c->base++);

		c->full_before_base += !t->empty;
		c->out_bytes -= t->len;
		free(t->json);
		t->json = NULL;
	}
	consumer_resume(c);
}

/* A batch's text never grows past this: the first transaction part (at
 * most a part's events and its envelope) always goes, the others only
 * while the batch stays within CHANGES_BATCH_BYTES. */
#define BATCH_TEXT_MAX (CHANGES_BATCH_BYTES + CHANGES_PART_BYTES + 4096)

/* The batch for @p, as the JSON text of changes.deliver's arguments. */
static char *batch_text(struct changes *c, struct peer *p, uint64_t *end, uint64_t *full)
{
	size_t len = 0, cap = 0;
	uint64_t s = p->next;
	uint8_t *buf = NULL;
	char head[96 + GOSSIP_NAME_MAX];
	int n;

	n = snprintf(head, sizeof(head),
		     "[{\"term\":%llu,\"leader\":\"%s\",\"lost\":%llu,\"txns\":[",
		     (unsigned long long)c->term, c->cfg->node, (unsigned long long)p->lost);
	if (n < 0 || (size_t)n >= sizeof(head) ||
	    bytebuf_append(&buf, &len, &cap, head, (size_t)n, BATCH_TEXT_MAX))
		goto fail;
	for (; s < c->next_seq && s - p->next < CHANGES_BATCH_TXNS; s++) {
		struct txn *t = txn_at(c, s);

		if (s > p->next && len + t->len > CHANGES_BATCH_BYTES)
			break;
		if ((s > p->next && bytebuf_append(&buf, &len, &cap, ",", 1, BATCH_TEXT_MAX)) ||
		    bytebuf_append(&buf, &len, &cap, t->json, t->len, BATCH_TEXT_MAX))
			goto fail;
		*full += !t->empty;
	}
	if (bytebuf_append(&buf, &len, &cap, "]}]", 4, BATCH_TEXT_MAX))
		goto fail;
	*end = s;
	return (char *)buf;
fail:
	free(buf);
	return NULL;
}

struct sendctx {
	struct changes *c;
	char name[GOSSIP_NAME_MAX + 1];
	uint64_t end, term, lost, full;
};

/* @p acknowledged everything before @end (@full entries with events
 * since its cursor), and its losses up to @lost.  A stuck member that
 * answers again counts again: behind the outbox it holds nothing back
 * (confirm() waits for it only from where it jumps to, at its next
 * batch), and counting it only once it had caught up would never happen
 * under a steady load. */
static void peer_acked(struct changes *c, struct peer *p, uint64_t end, uint64_t full,
		       uint64_t lost)
{
	p->acked = p->next = end;
	p->full_before_next += full;
	if (lost > p->told)
		p->told = lost;
	p->failures = 0;
	p->progress_at = uv_now(c->loop);
	if (p->stuck) {
		p->stuck = false;
		LOG(LOG_NOTICE, "changes", "member %s answers again: it counts again", p->name);
	}
	confirm(c);
}

static struct peer *peer_find(struct changes *c, const char *name)
{
	for (size_t i = 0; i < c->npeers; i++)
		if (strcmp(c->peers[i].name, name) == 0)
			return &c->peers[i];
	return NULL;
}

static void peer_failed(struct changes *c, struct peer *p, const char *why)
{
	uint32_t d = RETRY_MIN_MS << (p->failures < 5 ? p->failures : 5);

	p->failures++;
	p->retry_at = uv_now(c->loop) + (d < RETRY_MAX_MS ? d : RETRY_MAX_MS);
	LOG_RATELIMITED(LOG_WARNING, "changes", "delivery to %s failed (%s); retrying",
			p->name, why);
}

static void send_done(void *ctx, const struct rpc_result *r)
{
	struct sendctx *s = ctx;
	struct changes *c = s->c;
	struct peer *p = c->closing ? NULL : peer_find(c, s->name);

	if (p && c->leading && c->term == s->term) {
		p->inflight = false;
		if (r->status == RPC_OK) {
			peer_acked(c, p, s->end, s->full, s->lost);
			send_kick(c);
		} else {
			peer_failed(c, p, r->message && *r->message ? r->message : r->code);
		}
	}
	free(s);
}

static void peer_send(struct changes *c, struct peer *p)
{
	struct rpc_client *client = agent_rpc_client(c->a);
	struct rpc_buf args = { 0 };
	struct sendctx *s;
	uint64_t end, told, full = 0;
	char *text, err[256] = "";
	int rc;

	if (p->inflight || p->gone)
		return;
	peer_catch_base(c, p);
	/* Nothing new still goes when there is a gap to tell of. */
	if ((p->next >= c->next_seq && p->told == p->lost) || uv_now(c->loop) < p->retry_at)
		return;
	told = p->lost;
	text = batch_text(c, p, &end, &full);
	if (text == NULL)
		return;
	if (p->self) {
		json_t *a = json_loads(text, JSON_ALLOW_NUL, NULL);
		uint64_t acked;

		rc = a ? deliver_batch(c, json_array_get(a, 0), err, sizeof(err), &acked) : -ENOMEM;
		json_decref(a);
		free(text);
		if (rc == 0)
			peer_acked(c, p, end, full, told);
		return;
	}
	rc = rpc_args_from_json(text, &args, err, sizeof(err));
	free(text);
	s = rc == 0 ? calloc(1, sizeof(*s)) : NULL;
	if (s == NULL || client == NULL) {
		rpc_buf_free(&args);
		free(s);
		peer_failed(c, p, rc ? err : "no RPC client");
		return;
	}
	s->c = c;
	s->end = end;
	s->lost = told;
	s->full = full;
	s->term = c->term;
	snprintf(s->name, sizeof(s->name), "%s", p->name);
	rc = rpc_client_call(client, p->name, p->addr, CHANGES_METHOD, args.data, args.len,
			     DELIVER_DEADLINE_MS, send_done, s);
	rpc_buf_free(&args);
	if (rc != 0) {
		free(s);
		peer_failed(c, p, strerror(-rc));
		return;
	}
	p->inflight = true;
}

/* Sends to every peer that is free, on the next loop turn: many commits
 * arriving in one read become one batch per peer. */
static void kick_fired(uv_timer_t *t)
{
	struct changes *c = t->data;

	if (!c->leading)
		return;
	for (size_t i = 0; i < c->npeers; i++)
		peer_send(c, &c->peers[i]);
}

static void send_kick(struct changes *c)
{
	if (c->leading && !c->closing && !uv_is_active((uv_handle_t *)&c->kick))
		uv_timer_start(&c->kick, kick_fired, 0, 0);
}

static void tick_fired(uv_timer_t *t)
{
	struct changes *c = t->data;

	if (!c->leading)
		return;
	consumer_resume(c);
	peers_refresh(c);
	peers_watch(c);
	confirm(c);
	for (size_t i = 0; i < c->npeers; i++)
		peer_send(c, &c->peers[i]);
}

void changes_leading(struct changes *c, bool leading, uint64_t term)
{
	if (c->closing || c->cfg->replication == CONFIG_REPL_OFF)
		return;
	if (leading) {
		c->leading = true;
		c->term = term;
		if (term > c->max_term)
			c->max_term = term;
		outbox_clear(c);
		c->last_buffered = 0;
		consumer_start(c);
		uv_timer_start(&c->tick, tick_fired, 0, TICK_MS);
		return;
	}
	if (!c->leading)
		return;
	c->leading = false;
	consumer_stop(c);
	c->paused = false;
	outbox_clear(c);
	uv_timer_stop(&c->tick);
	uv_timer_stop(&c->kick);
	LOG(LOG_NOTICE, "changes", "stopped consuming slot %s (no longer leader, term %llu)",
	    c->cfg->slot, (unsigned long long)term);
}

/* ------------------------------------------------------------------ */
/* Life                                                                */
/* ------------------------------------------------------------------ */

struct changes *changes_new(uv_loop_t *loop, struct agent *a, const struct config *cfg,
			    struct events *events)
{
	struct changes *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->loop = loop;
	c->a = a;
	c->cfg = cfg;
	c->events = events;
	uv_timer_init(loop, &c->tick);
	uv_timer_init(loop, &c->kick);
	c->tick.data = c->kick.data = c;
	c->handles = 2;
	if (cfg->on_change && (c->onchange = onchange_new(loop, cfg->on_change)) == NULL)
		LOG(LOG_ERROR, "changes", "cannot start --on-change: out of memory");
	return c;
}

static void changes_free(uv_handle_t *h)
{
	struct changes *c = h->data;

	if (--c->handles == 0)
		free(c);
}

void changes_close(struct changes *c)
{
	if (c == NULL || c->closing)
		return;
	consumer_stop(c);
	outbox_clear(c);
	onchange_close(c->onchange);
	c->onchange = NULL;
	pgoutput_delete(c->dec);
	free(c->out);
	free(c->peers);
	c->closing = true;
	uv_close((uv_handle_t *)&c->tick, changes_free);
	uv_close((uv_handle_t *)&c->kick, changes_free);
}

void changes_stats_get(const struct changes *c, struct changes_stats *out)
{
	struct repl_stats rs = { 0 };
	double lag = -1;

	if (c->repl)
		repl_stats_get(c->repl, &rs);
	if (c->next_seq > c->base) {
		int64_t age = (int64_t)clock_wall_ms() * 1000 - c->out[c->base % c->cap].commit_time_us;

		lag = age > 0 ? (double)age / 1e6 : 0;
	} else if (c->leading) {
		lag = 0;
	}
	*out = (struct changes_stats){
		.consuming = c->repl != NULL,
		.txns_in = c->txns_in,
		.events_in = c->events_in,
		.outbox_txns = c->next_seq - c->base,
		.outbox_bytes = c->out_bytes,
		.confirmed_lsn = c->confirmed,
		.server_lsn = rs.server_lsn,
		.slot_busy = c->slot_busy,
		.pauses = c->pauses,
		.delivered = c->delivered,
		.duplicates = c->duplicates,
		.stale = c->stale,
		.too_large = c->too_large,
		.values_omitted = c->values_omitted,
		.stuck = c->stuck,
		.skipped = c->skipped,
		.missed = c->missed,
		.lag_seconds = lag,
	};
	if (c->onchange) {
		struct onchange_stats os;

		onchange_stats_get(c->onchange, &os);
		out->onchange_written = os.written;
		out->onchange_dropped = os.dropped;
	}
}
