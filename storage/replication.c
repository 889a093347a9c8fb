/*
 * storage/replication.c - the logical replication consumer (see
 * replication.h for the contract).
 *
 * One object runs sessions one after another.  A session: connect (stream
 * mode: our own PGconn, because pgconn refuses COPY; poll mode: a pgconn,
 * which connects and reconnects by itself), set up (publication check and
 * creation, slot check and creation: the `step`s), then stream (START
 * answered with CopyBoth) or poll (the first peek answered).  Phases:
 *
 *   IDLE        no session; `timer` runs the backoff to the next one
 *   CONNECTING  stream: PQconnectPoll(); `timer` is the connect deadline
 *   SETUP       a setup statement runs; stream: `timer` is its deadline
 *               (poll: pgconn's own)
 *   BUSY_WAIT   55006: `timer` runs the busy backoff, then START (the
 *               peek) again on the same connection
 *   STREAMING   stream: CopyBoth, `tick` sends the periodic status
 *               updates, `timer` resumes a long read (see read_stream);
 *               poll: `timer` is the next peek
 *
 * A session fails (session_failed) on anything but 55006: the connection
 * is dropped (stream) and the next session waits the backoff.  Every path
 * that calls back checks `stopping` afterwards: on_message and on_state
 * may call repl_stop(), which frees nothing before libuv has closed our
 * handles.
 *
 * The stream connection and the uv_poll on its socket are a struct pgsock
 * (storage/pgsock.h), as in pgconn.c: the poll handle is remade when
 * libpq switches sockets while connecting, closed before PQfinish(), and
 * frees itself, so `handles` counts only the timers.
 */
#include "storage/replication.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "lib/backoff.h"
#include "lib/be.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "storage/lsn.h"
#include "lib/splitmix.h"
#include "storage/pgconn.h"
#include "storage/pgresolve.h"
#include "storage/pgsock.h"

#define COMPONENT "repl"
#define MAX_RESULTS 16          /* results of one setup statement before giving up */
#define READ_BATCH 1024         /* stream messages handled per libuv callback */
#define MAX_CREATES 2           /* slot/publication creations per session */
#define PG_EPOCH_UNIX_MS 946684800000ULL   /* 2000-01-01T00:00:00Z */

enum phase {
	PH_IDLE = 0,
	PH_CONNECTING,
	PH_SETUP,
	PH_BUSY_WAIT,
	PH_STREAMING,
};

enum step {
	STEP_PUB_CHECK = 0,
	STEP_PUB_CREATE,
	STEP_SLOT_CHECK,
	STEP_SLOT_CREATE,
	STEP_START,             /* stream: START_REPLICATION; poll: the first peek */
};

struct repl {
	uv_loop_t *loop;
	struct repl_callbacks cb;
	enum repl_mode mode;
	char slot[REPL_NAME_MAX + 1];
	char pub[REPL_NAME_MAX + 1];
	char pub_ident[2 * REPL_NAME_MAX + 3];   /* "pub", quotes doubled */
	uint32_t status_interval_ms, connect_timeout_ms, query_timeout_ms;
	uint32_t poll_interval_ms, poll_max_changes, max_message, busy_max_tries;

	enum phase phase;
	enum step step;
	unsigned creates;           /* this session */
	struct backoff bo, busy_bo;
	uint64_t rng;
	uint32_t busy_tries;        /* 55006 answers in a row */
	bool busy_episode, busy_escalated;

	/* Stream mode: the replication connection (io.pg) and its uv_poll. */
	struct pgsock_params params;
	struct pgsock io;
	struct pgresolve *resolving;  /* the host names, before io.pg exists */
	PGresult *res;              /* the running setup statement's answer so far */
	int nres;

	/* Poll mode. */
	struct pgconn *pc;
	uint64_t last_lsn;          /* stream: of the last message this session */
	uint64_t peek_hw;           /* highest Commit LSN delivered this session */
	bool advance_inflight;
	uint64_t advance_target;
	uint64_t last_idle_advance;  /* loop ms */

	uv_timer_t timer, tick;
	unsigned handles;
	bool stopping;

	struct repl_stats stats;
};

/* ------------------------------------------------------------------ */
/* Wire format (pure)                                                  */
/* ------------------------------------------------------------------ */

int repl_copy_parse(const uint8_t *buf, size_t len, size_t max_payload, struct repl_copy *out)
{
	memset(out, 0, sizeof(*out));
	if (!buf || len == 0)
		return -EBADMSG;
	switch (buf[0]) {
	case 'w':
		if (len <= REPL_XLOGDATA_HDR)
			return -EBADMSG;   /* truncated header, or no payload */
		if (len - REPL_XLOGDATA_HDR > max_payload)
			return -EMSGSIZE;
		out->kind = 'w';
		out->start = get_be64(buf + 1);
		out->end = get_be64(buf + 9);
		out->send_time = (int64_t)get_be64(buf + 17);
		out->payload = buf + REPL_XLOGDATA_HDR;
		out->len = len - REPL_XLOGDATA_HDR;
		return 0;
	case 'k':
		if (len != REPL_KEEPALIVE_LEN)
			return -EBADMSG;
		out->kind = 'k';
		out->end = get_be64(buf + 1);
		out->send_time = (int64_t)get_be64(buf + 9);
		out->reply_requested = buf[17] != 0;
		return 0;
	default:
		return -EBADMSG;
	}
}

void repl_status_encode(uint8_t out[REPL_STATUS_LEN], uint64_t lsn, int64_t now_us)
{
	out[0] = 'r';
	put_be64(out + 1, lsn);     /* written */
	put_be64(out + 9, lsn);     /* flushed */
	put_be64(out + 17, lsn);    /* applied */
	put_be64(out + 25, (uint64_t)now_us);
	out[33] = 0;                /* no reply requested */
}

int64_t repl_pg_time_us(uint64_t unix_ms)
{
	return ((int64_t)unix_ms - (int64_t)PG_EPOCH_UNIX_MS) * 1000;
}

const char *repl_state_name(enum repl_state s)
{
	switch (s) {
	case REPL_CONNECTING:
		return "connecting";
	case REPL_STREAMING:
		return "streaming";
	case REPL_SLOT_BUSY:
		return "slot_busy";
	case REPL_ERROR:
		return "error";
	default:
		return "?";
	}
}

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

/* "SQLSTATE xxxxx: message" of an error result, on one line. */
static void result_error(const PGresult *res, char *out, size_t size)
{
	char raw[REPL_ERROR_MAX];

	pgsock_result_error(res, raw, sizeof(raw));
	pgsock_one_line(out, size, raw);
}

/* The state callback; states other than REPL_ERROR only when entered.
 * The caller checks r->stopping afterwards. */
static void report(struct repl *r, enum repl_state st, const char *detail)
{
	if (st != REPL_ERROR && st == r->stats.state)
		return;
	r->stats.state = st;
	if (r->cb.on_state)
		r->cb.on_state(r->cb.ctx, st, detail ? detail : "");
}

static uint64_t max_u64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

/* ------------------------------------------------------------------ */
/* The stream connection's socket                                      */
/* ------------------------------------------------------------------ */

static void free_repl(struct repl *r)
{
	pgsock_params_free(&r->params);
	free(r);
}

static void handle_closed(uv_handle_t *h)
{
	struct repl *r = h->data;

	if (--r->handles == 0 && r->stopping)
		free_repl(r);
}

/* Closes the stream connection, if any. */
static void conn_drop(struct repl *r)
{
	if (r->res) {
		PQclear(r->res);
		r->res = NULL;
	}
	r->nres = 0;
	pgresolve_cancel(r->resolving);
	r->resolving = NULL;
	pgsock_finish(&r->io);        /* the poll closed first, then PQfinish() */
}

/* ------------------------------------------------------------------ */
/* Sessions                                                            */
/* ------------------------------------------------------------------ */

static void on_timer(uv_timer_t *t);
static void start_session(struct repl *r);
static void run_step(struct repl *r, enum step step);

static void arm_timer(struct repl *r, uint64_t ms)
{
	if (!r->stopping)
		uv_timer_start(&r->timer, on_timer, ms, 0);
}

/* Anything but 55006: drop the session, try again after the backoff. */
static void session_failed(struct repl *r, const char *why)
{
	char text[REPL_ERROR_MAX];
	uint32_t delay;

	pgsock_one_line(text, sizeof(text), why && *why ? why : "unknown error");
	memcpy(r->stats.last_error, text, sizeof(text));
	conn_drop(r);
	if (!r->stopping)
		uv_timer_stop(&r->tick);
	r->phase = PH_IDLE;
	r->stats.reconnects++;
	delay = backoff_next(&r->bo, (uint32_t)splitmix64(&r->rng));
	LOG_RATELIMITED(LOG_WARNING, COMPONENT, "slot %s: %s (retrying in %u ms)", r->slot, text,
			delay);
	arm_timer(r, delay);
	report(r, REPL_ERROR, text);
}

/* 55006: retry the START (the peek) on the same connection, bounded. */
static void slot_busy(struct repl *r, const char *why)
{
	char text[REPL_ERROR_MAX];
	uint32_t delay;

	pgsock_one_line(text, sizeof(text), why);
	memcpy(r->stats.last_error, text, sizeof(text));
	r->stats.slot_busy++;
	r->busy_tries++;
	r->phase = PH_BUSY_WAIT;
	if (r->busy_tries > r->busy_max_tries) {
		delay = backoff_next(&r->bo, (uint32_t)splitmix64(&r->rng));
		arm_timer(r, delay);
		if (!r->busy_escalated) {
			r->busy_escalated = true;
			LOG(LOG_WARNING, COMPONENT,
			    "slot %s still busy after %u tries; retrying every few seconds: %s",
			    r->slot, r->busy_tries - 1, text);
			report(r, REPL_ERROR, text);
		}
		return;
	}
	delay = backoff_next(&r->busy_bo, (uint32_t)splitmix64(&r->rng));
	arm_timer(r, delay);
	if (!r->busy_episode) {
		r->busy_episode = true;
		LOG(LOG_NOTICE, COMPONENT, "slot %s busy (the previous consumer not yet gone); "
		    "retrying: %s", r->slot, text);
		report(r, REPL_SLOT_BUSY, text);
	}
}

static void on_tick(uv_timer_t *t);

static void streaming_started(struct repl *r)
{
	char pos[LSN_STR_MAX];

	r->phase = PH_STREAMING;
	backoff_reset(&r->bo);
	backoff_reset(&r->busy_bo);
	if (r->busy_episode || r->busy_escalated)
		LOG(LOG_NOTICE, COMPONENT, "slot %s free after %u busy answers", r->slot,
		    r->busy_tries);
	r->busy_tries = 0;
	r->busy_episode = r->busy_escalated = false;
	lsn_format(r->stats.flushed_lsn, pos);
	LOG(LOG_NOTICE, COMPONENT, "%s slot %s (publication %s) from %s",
	    r->mode == REPL_STREAM ? "streaming" : "polling", r->slot, r->pub, pos);
	if (r->mode == REPL_STREAM)
		uv_timer_start(&r->tick, on_tick, r->status_interval_ms, r->status_interval_ms);
	report(r, REPL_STREAMING, "");
}

/* ------------------------------------------------------------------ */
/* Stream mode                                                         */
/* ------------------------------------------------------------------ */

/* Flushes what libpq buffered and watches for what it needs next.
 * false when the session failed (already handled). */
static bool flush_and_watch(struct repl *r)
{
	int rc = pgsock_flush(&r->io);

	if (rc == PGSOCK_FAILED) {
		session_failed(r, PQerrorMessage(r->io.pg));
		return false;
	}
	if (rc < 0) {
		session_failed(r, "cannot watch the connection's socket");
		return false;
	}
	return true;
}

static void send_status(struct repl *r)
{
	uint8_t msg[REPL_STATUS_LEN];
	int rc;

	if (r->phase != PH_STREAMING || !r->io.pg)
		return;
	repl_status_encode(msg, r->stats.flushed_lsn, repl_pg_time_us(clock_wall_ms()));
	rc = PQputCopyData(r->io.pg, (const char *)msg, sizeof(msg));
	if (rc < 0) {
		session_failed(r, PQerrorMessage(r->io.pg));
		return;
	}
	if (rc == 0)
		return;   /* libpq's buffer is full: the next one will do */
	r->stats.status_updates++;
	flush_and_watch(r);
}

static void on_tick(uv_timer_t *t)
{
	struct repl *r = t->data;

	if (!r->stopping)
		send_status(r);
}

/* One CopyData message of the stream.  The caller checks the phase and
 * r->stopping afterwards. */
static void handle_copy(struct repl *r, const uint8_t *buf, size_t len)
{
	struct repl_copy m;
	char text[REPL_ERROR_MAX];
	int rc = repl_copy_parse(buf, len, r->max_message, &m);

	if (rc < 0) {
		r->stats.malformed++;
		snprintf(text, sizeof(text), "malformed stream message (kind 0x%02x, %zu bytes): %s",
			 len ? buf[0] : 0, len, rc == -EMSGSIZE ? "payload too large" :
			 "bad length or kind");
		session_failed(r, text);
		return;
	}
	r->stats.server_lsn = max_u64(r->stats.server_lsn, m.end);
	if (m.kind == 'k') {
		r->stats.keepalives++;
		/* Everything delivered is confirmed: every transaction that
		 * committed before the server's WAL end has been sent, so the
		 * slot may move there (see replication.h). */
		if (r->stats.confirmed_lsn >= r->stats.received_lsn)
			r->stats.flushed_lsn = max_u64(r->stats.flushed_lsn, m.end);
		if (m.reply_requested)
			send_status(r);
		return;
	}
	/* Postgres sends the messages that are not the last of a group
	 * (Relation, Type, Origin) without a position ("can't have sync rep
	 * confused by sending the same LSN several times"): they take the
	 * previous message's, which keeps the order non-decreasing. */
	if (m.start == 0)
		m.start = r->last_lsn ? r->last_lsn : r->stats.flushed_lsn;
	r->last_lsn = m.start;
	r->stats.received_lsn = max_u64(r->stats.received_lsn, m.start);
	r->stats.messages++;
	r->stats.bytes += m.len;
	r->cb.on_message(r->cb.ctx, m.start, m.payload, m.len);
}

static void on_resume(uv_timer_t *t);

/* Hands over every whole message libpq has, READ_BATCH at most per
 * callback (the rest from a fresh one, so the loop breathes). */
static void read_stream(struct repl *r)
{
	char text[REPL_ERROR_MAX];

	for (int n = 0; n < READ_BATCH; n++) {
		char *buf = NULL;
		int len = PQgetCopyData(r->io.pg, &buf, 1);

		if (len == 0)
			return;
		if (len == -1) {
			/* The server ended the stream: its error says why. */
			PGresult *res = PQgetResult(r->io.pg);

			if (res && pgsock_result_is_error(res))
				result_error(res, text, sizeof(text));
			else
				snprintf(text, sizeof(text), "the server ended the stream");
			PQclear(res);
			session_failed(r, text);
			return;
		}
		if (len < 0) {
			snprintf(text, sizeof(text), "stream lost: %s", PQerrorMessage(r->io.pg));
			session_failed(r, text);
			return;
		}
		handle_copy(r, (const uint8_t *)buf, (size_t)len);
		PQfreemem(buf);
		if (r->stopping || r->phase != PH_STREAMING)
			return;
	}
	uv_timer_start(&r->timer, on_resume, 0, 0);
}

static void on_resume(uv_timer_t *t)
{
	struct repl *r = t->data;

	if (!r->stopping && r->mode == REPL_STREAM && r->phase == PH_STREAMING)
		read_stream(r);
}

static void connect_step(struct repl *r)
{
	char text[REPL_ERROR_MAX];
	int rc = pgsock_connect_step(&r->io);

	if (rc == PGSOCK_CONNECTED) {
		uv_timer_stop(&r->timer);
		LOG(LOG_INFO, COMPONENT, "replication connection to %s:%s (walsender pid %d)",
		    PQhost(r->io.pg), PQport(r->io.pg), PQbackendPID(r->io.pg));
		run_step(r, STEP_PUB_CHECK);
	} else if (rc == PGSOCK_FAILED) {
		snprintf(text, sizeof(text), "could not connect: %s", PQerrorMessage(r->io.pg));
		session_failed(r, text);
	} else if (rc < 0) {
		session_failed(r, "could not connect: cannot watch the socket");
	}
}

/* libpq's part of connecting, with the host names resolved. */
static void connect_open(struct repl *r, const struct pgsock_params *p)
{
	char text[REPL_ERROR_MAX];
	int rc = pgsock_connect_start(&r->io, p);

	if (rc == PGSOCK_FAILED && !r->io.pg) {
		session_failed(r, "could not connect: out of memory");
	} else if (rc == PGSOCK_FAILED) {
		snprintf(text, sizeof(text), "could not connect: %s", PQerrorMessage(r->io.pg));
		session_failed(r, text);
	} else if (rc < 0) {
		session_failed(r, "could not connect: cannot watch the socket");
	}
}

static void resolved(void *data, int status, const struct pgsock_params *p, const char *error)
{
	struct repl *r = data;
	char text[REPL_ERROR_MAX];

	r->resolving = NULL;
	if (status < 0) {
		snprintf(text, sizeof(text), "could not connect: %s", error);
		session_failed(r, text);
		return;
	}
	connect_open(r, p);
}

/* The connect timer covers resolving the host names too. */
static void connect_start(struct repl *r)
{
	char text[REPL_ERROR_MAX];
	int rc = pgresolve_start(r->loop, &r->params, resolved, r, &r->resolving);

	if (rc < 0) {
		snprintf(text, sizeof(text), "could not connect: %s", uv_strerror(rc));
		session_failed(r, text);
		return;
	}
	r->phase = PH_CONNECTING;
	arm_timer(r, r->connect_timeout_ms);
	if (!r->resolving)
		connect_open(r, &r->params);
}

static void step_answer(struct repl *r, const PGresult *res, const char *sqlstate,
			const char *error);

/* All results of a setup statement are in (or CopyBoth began). */
static void collect_setup(struct repl *r)
{
	char text[REPL_ERROR_MAX];

	for (;;) {
		PGresult *res;

		if (PQisBusy(r->io.pg))
			return;
		res = PQgetResult(r->io.pg);
		if (!res)
			break;
		if (PQresultStatus(res) == PGRES_COPY_BOTH) {
			PQclear(res);
			if (r->res) {
				PQclear(r->res);
				r->res = NULL;
			}
			r->nres = 0;
			uv_timer_stop(&r->timer);
			streaming_started(r);
			if (!r->stopping && r->phase == PH_STREAMING)
				read_stream(r);   /* libpq may hold messages already */
			return;
		}
		if (++r->nres > MAX_RESULTS || PQresultStatus(res) == PGRES_COPY_IN ||
		    PQresultStatus(res) == PGRES_COPY_OUT) {
			PQclear(res);
			session_failed(r, "unexpected answer to a setup statement");
			return;
		}
		pgsock_keep_result(&r->res, res);
	}
	uv_timer_stop(&r->timer);
	PGresult *res = r->res;

	r->res = NULL;
	r->nres = 0;
	if (!res) {
		session_failed(r, "no answer to a setup statement");
		return;
	}
	if (pgsock_result_is_error(res)) {
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		char st[6];

		snprintf(st, sizeof(st), "%s", state ? state : "");
		result_error(res, text, sizeof(text));
		PQclear(res);
		step_answer(r, NULL, st, text);
		return;
	}
	step_answer(r, res, "", "");
	PQclear(res);
}

static void on_io(uv_poll_t *h, int status, int events)
{
	struct repl *r = h->data;
	char text[REPL_ERROR_MAX];

	if (r->stopping || !pgsock_current(&r->io, h))
		return;
	if (pgsock_poll_status(&r->io, status, &events) < 0) {
		snprintf(text, sizeof(text), "socket error: %s", uv_strerror(status));
		session_failed(r, text);
		return;
	}
	if (r->phase == PH_CONNECTING) {
		connect_step(r);
		return;
	}
	if ((events & UV_READABLE) &&
	    (!PQconsumeInput(r->io.pg) || PQstatus(r->io.pg) == CONNECTION_BAD)) {
		snprintf(text, sizeof(text), "connection lost: %s", PQerrorMessage(r->io.pg));
		if (r->phase == PH_SETUP && !PQisBusy(r->io.pg)) {
			collect_setup(r);   /* the server's last word (e.g. FATAL) */
			if (r->stopping || r->phase != PH_SETUP)
				return;
		}
		if (r->io.pg)
			session_failed(r, text);
		return;
	}
	if (r->io.flushing && !flush_and_watch(r))
		return;
	switch (r->phase) {
	case PH_SETUP:
		collect_setup(r);
		return;
	case PH_STREAMING:
		read_stream(r);
		return;
	default:
		return;   /* BUSY_WAIT: only a goodbye can come */
	}
}

/* Sends one setup statement (simple protocol: a replication connection
 * takes nothing else). */
static void send_sql(struct repl *r, const char *sql)
{
	char text[REPL_ERROR_MAX];

	r->phase = PH_SETUP;
	if (!PQsendQuery(r->io.pg, sql)) {
		snprintf(text, sizeof(text), "sending a statement: %s", PQerrorMessage(r->io.pg));
		session_failed(r, text);
		return;
	}
	arm_timer(r, r->query_timeout_ms);
	flush_and_watch(r);
}

/*
 * Setup statements both modes send; each ends where the name goes: a
 * literal in stream mode (the walsender takes simple queries only), $1 in
 * poll mode.
 */
#define SQL_PUB_CHECK "SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = "
#define SQL_PUB_CREATE "CREATE PUBLICATION %s FOR ALL TABLES"    /* the quoted identifier */
#define SQL_SLOT_CHECK							\
	"SELECT plugin, slot_type, database = current_database(), "	\
	"confirmed_flush_lsn FROM pg_catalog.pg_replication_slots "	\
	"WHERE slot_name = "

/* The stream mode's statement for @step, with the names as literals. */
static void stream_step(struct repl *r, enum step step)
{
	const char *name = step == STEP_START ? r->pub_ident :
			   step <= STEP_PUB_CREATE ? r->pub : r->slot;
	char sql[512];
	char *lit;

	/* START's publication_names is a list of identifiers in a string. */
	lit = PQescapeLiteral(r->io.pg, name, strlen(name));
	if (!lit) {
		session_failed(r, PQerrorMessage(r->io.pg));
		return;
	}
	switch (step) {
	case STEP_PUB_CHECK:
		snprintf(sql, sizeof(sql), SQL_PUB_CHECK "%s", lit);
		break;
	case STEP_PUB_CREATE:
		snprintf(sql, sizeof(sql), SQL_PUB_CREATE, r->pub_ident);
		break;
	case STEP_SLOT_CHECK:
		snprintf(sql, sizeof(sql), SQL_SLOT_CHECK "%s", lit);
		break;
	case STEP_SLOT_CREATE:
		snprintf(sql, sizeof(sql),
			 "CREATE_REPLICATION_SLOT \"%s\" LOGICAL pgoutput NOEXPORT_SNAPSHOT",
			 r->slot);
		break;
	case STEP_START:
		snprintf(sql, sizeof(sql),
			 "START_REPLICATION SLOT \"%s\" LOGICAL 0/0 "
			 "(proto_version '1', publication_names %s)", r->slot, lit);
		break;
	}
	PQfreemem(lit);
	send_sql(r, sql);
}

/* ------------------------------------------------------------------ */
/* Poll mode                                                           */
/* ------------------------------------------------------------------ */

static void on_poll_answer(void *arg, const struct pgconn_reply *rep);
static void on_setup_answer(void *arg, const struct pgconn_reply *rep);

static void poll_query(struct repl *r, const char *sql, int n, const char *const *params,
		       pgconn_cb cb)
{
	char text[REPL_ERROR_MAX];
	int rc = pgconn_query(r->pc, sql, n, params, 0, cb, r);

	if (rc < 0) {
		snprintf(text, sizeof(text), "cannot queue a statement: %s", strerror(-rc));
		session_failed(r, text);
	}
}

static void send_peek(struct repl *r)
{
	char max[16];
	const char *params[3] = { r->slot, max, r->pub_ident };

	snprintf(max, sizeof(max), "%" PRIu32, r->poll_max_changes);
	/* The flush position first (Append runs its branches in order):
	 * everything that committed before it is in the peek's answer. */
	poll_query(r,
		   "SELECT 0, pg_catalog.pg_current_wal_flush_lsn(), 0, NULL::bytea "
		   "UNION ALL SELECT 1, lsn, CASE WHEN length(data) > 0 THEN "
		   "get_byte(data, 0) ELSE -1 END, data "
		   "FROM pg_catalog.pg_logical_slot_peek_binary_changes($1, NULL, $2::int, "
		   "'proto_version', '1', 'publication_names', $3)",
		   3, params, on_poll_answer);
}

static void on_advance_answer(void *arg, const struct pgconn_reply *rep);

static void send_advance(struct repl *r, uint64_t lsn)
{
	char pos[LSN_STR_MAX];
	const char *params[2] = { r->slot, pos };

	if (r->advance_inflight || r->stopping || lsn <= r->stats.flushed_lsn)
		return;
	lsn_format(lsn, pos);
	if (pgconn_query(r->pc, "SELECT pg_catalog.pg_replication_slot_advance($1, $2::pg_lsn)",
			 2, params, 0, on_advance_answer, r) < 0)
		return;   /* the queue is full: the next poll tries again */
	r->advance_inflight = true;
	r->advance_target = lsn;
}

static void on_advance_answer(void *arg, const struct pgconn_reply *rep)
{
	struct repl *r = arg;

	r->advance_inflight = false;
	if (rep->status < 0) {
		pgsock_one_line(r->stats.last_error, sizeof(r->stats.last_error), rep->error);
		LOG_RATELIMITED(LOG_WARNING, COMPONENT, "slot %s: advance failed: %s", r->slot,
				rep->error);
		return;   /* the next poll tries again */
	}
	r->stats.advances++;
	r->stats.flushed_lsn = max_u64(r->stats.flushed_lsn, r->advance_target);
	if (r->stats.confirmed_lsn > r->stats.flushed_lsn)
		send_advance(r, r->stats.confirmed_lsn);
}

static void poll_step(struct repl *r, enum step step)
{
	char sql[256];
	const char *p1[1] = { step <= STEP_PUB_CREATE ? r->pub : r->slot };

	r->phase = PH_SETUP;
	switch (step) {
	case STEP_PUB_CHECK:
		poll_query(r, SQL_PUB_CHECK "$1", 1, p1, on_setup_answer);
		return;
	case STEP_PUB_CREATE:
		snprintf(sql, sizeof(sql), SQL_PUB_CREATE, r->pub_ident);
		poll_query(r, sql, 0, NULL, on_setup_answer);
		return;
	case STEP_SLOT_CHECK:
		poll_query(r, SQL_SLOT_CHECK "$1", 1, p1, on_setup_answer);
		return;
	case STEP_SLOT_CREATE:
		poll_query(r, "SELECT pg_catalog.pg_create_logical_replication_slot($1, 'pgoutput')",
			   1, p1, on_setup_answer);
		return;
	case STEP_START:
		send_peek(r);
		return;
	}
}

static void on_setup_answer(void *arg, const struct pgconn_reply *rep)
{
	step_answer(arg, rep->status == 0 ? rep->res : NULL, rep->sqlstate, rep->error);
}

static int row_lsn(const PGresult *res, int i, uint64_t *out)
{
	return PQgetisnull(res, i, 1) ? -EINVAL : lsn_parse(PQgetvalue(res, i, 1), out);
}

/* Delivers row @i; -EBADMSG for a row that cannot be read. */
static int deliver_row(struct repl *r, const PGresult *res, int i, uint64_t lsn)
{
	size_t len = 0;
	unsigned char *data = PQunescapeBytea((const unsigned char *)PQgetvalue(res, i, 3), &len);

	if (!data)
		return -ENOMEM;
	if (len == 0 || len > r->max_message) {
		PQfreemem(data);
		r->stats.malformed++;
		return -EBADMSG;
	}
	r->stats.received_lsn = max_u64(r->stats.received_lsn, lsn);
	r->stats.messages++;
	r->stats.bytes += len;
	r->cb.on_message(r->cb.ctx, lsn, data, len);
	PQfreemem(data);
	return 0;
}

/*
 * The rows of a peek, whole transactions at a time: a Begin ('B') row up
 * to its Commit ('C') is skipped when that Commit's LSN was delivered in
 * this session, delivered otherwise.  A row outside a transaction is
 * taken alone, by its own LSN.  An unfinished transaction at the end
 * waits for the next peek.  -EBADMSG on an unreadable row.
 */
static int deliver_rows(struct repl *r, const PGresult *res)
{
	int n = PQntuples(res), i = 1;

	while (i < n) {
		int j = i;
		uint64_t last;

		if (strcmp(PQgetvalue(res, i, 2), "66") == 0) {   /* 'B' */
			while (j < n && strcmp(PQgetvalue(res, j, 2), "67") != 0)   /* 'C' */
				j++;
			if (j == n)
				return 0;
		}
		if (row_lsn(res, j, &last) < 0)
			return -EBADMSG;
		if (last <= r->peek_hw) {
			r->stats.skipped += (uint64_t)(j - i + 1);
			i = j + 1;
			continue;
		}
		for (; i <= j; i++) {
			uint64_t lsn;
			int rc;

			if (row_lsn(res, i, &lsn) < 0)
				return -EBADMSG;
			rc = deliver_row(r, res, i, lsn);
			if (rc < 0)
				return rc;
			if (r->stopping)
				return 0;
		}
		r->peek_hw = last;
	}
	return 0;
}

static void on_poll_answer(void *arg, const struct pgconn_reply *rep)
{
	struct repl *r = arg;
	uint64_t flush = 0, now;
	int rc;

	if (rep->status < 0) {
		if (!strcmp(rep->sqlstate, "55006"))
			slot_busy(r, rep->error);
		else
			session_failed(r, rep->error);
		return;
	}
	if (PQnfields(rep->res) != 4 || PQntuples(rep->res) < 1 ||
	    strcmp(PQgetvalue(rep->res, 0, 0), "0") != 0 || row_lsn(rep->res, 0, &flush) < 0) {
		session_failed(r, "unexpected answer to the peek");
		return;
	}
	r->stats.polls++;
	r->stats.server_lsn = max_u64(r->stats.server_lsn, flush);
	if (r->phase != PH_STREAMING) {
		streaming_started(r);
		if (r->stopping)
			return;
	}
	rc = deliver_rows(r, rep->res);
	if (r->stopping)
		return;
	if (rc < 0) {
		session_failed(r, rc == -ENOMEM ? "out of memory" : "malformed row in the peek");
		return;
	}
	/* Idle, everything delivered confirmed: the slot may move to the
	 * flush position taken before the peek (see replication.h). */
	now = uv_now(r->loop);
	if (PQntuples(rep->res) == 1 && r->stats.confirmed_lsn >= r->stats.received_lsn &&
	    flush > r->stats.flushed_lsn &&
	    now - r->last_idle_advance >= r->status_interval_ms) {
		r->last_idle_advance = now;
		send_advance(r, flush);
	} else if (r->stats.confirmed_lsn > r->stats.flushed_lsn) {
		send_advance(r, r->stats.confirmed_lsn);
	}
	arm_timer(r, r->poll_interval_ms);
}

/* ------------------------------------------------------------------ */
/* Setup, both modes                                                   */
/* ------------------------------------------------------------------ */

static void setup_failed(struct repl *r, const char *what, const char *error)
{
	char text[REPL_ERROR_MAX];

	snprintf(text, sizeof(text), "%s: %.*s", what, REPL_ERROR_MAX - 64, error);
	session_failed(r, text);
}

static void step_answer(struct repl *r, const PGresult *res, const char *sqlstate,
			const char *error)
{
	uint64_t lsn;

	switch (r->step) {
	case STEP_PUB_CHECK:
		if (!res) {
			setup_failed(r, "checking the publication", error);
			return;
		}
		run_step(r, PQntuples(res) > 0 ? STEP_SLOT_CHECK : STEP_PUB_CREATE);
		return;
	case STEP_PUB_CREATE:
		if (!res && strcmp(sqlstate, "42710") != 0) {
			setup_failed(r, "creating the publication", error);
			return;
		}
		if (res)
			LOG(LOG_NOTICE, COMPONENT, "created publication %s FOR ALL TABLES", r->pub);
		run_step(r, STEP_SLOT_CHECK);
		return;
	case STEP_SLOT_CHECK:
		if (!res || PQnfields(res) != 4) {
			setup_failed(r, "checking the slot", res ? "unexpected answer" : error);
			return;
		}
		if (PQntuples(res) == 0) {
			if (++r->creates > MAX_CREATES) {
				setup_failed(r, "creating the slot", "created, yet not found");
				return;
			}
			run_step(r, STEP_SLOT_CREATE);
			return;
		}
		if (strcmp(PQgetvalue(res, 0, 1), "logical") != 0 ||
		    strcmp(PQgetvalue(res, 0, 0), "pgoutput") != 0) {
			setup_failed(r, "checking the slot", "it exists but is not a logical "
				     "pgoutput slot");
			return;
		}
		if (strcmp(PQgetvalue(res, 0, 2), "t") != 0) {
			setup_failed(r, "checking the slot", "it belongs to another database");
			return;
		}
		if (!PQgetisnull(res, 0, 3) && lsn_parse(PQgetvalue(res, 0, 3), &lsn) == 0)
			r->stats.flushed_lsn = max_u64(r->stats.flushed_lsn, lsn);
		run_step(r, STEP_START);
		return;
	case STEP_SLOT_CREATE:
		if (!res && strcmp(sqlstate, "42710") != 0) {
			setup_failed(r, "creating the slot", error);
			return;
		}
		if (res)
			LOG(LOG_NOTICE, COMPONENT, "created logical replication slot %s (pgoutput)",
			    r->slot);
		run_step(r, STEP_SLOT_CHECK);
		return;
	case STEP_START:
		/* Stream mode only: CopyBoth never comes here. */
		if (!strcmp(sqlstate, "55006"))
			slot_busy(r, error);
		else
			setup_failed(r, "starting replication", res ? "no stream" : error);
		return;
	}
}

static void run_step(struct repl *r, enum step step)
{
	if (r->stopping)
		return;
	r->step = step;
	if (r->mode == REPL_STREAM)
		stream_step(r, step);
	else
		poll_step(r, step);
}

static void start_session(struct repl *r)
{
	report(r, REPL_CONNECTING, "");
	if (r->stopping)
		return;
	r->creates = 0;
	r->peek_hw = 0;
	r->last_lsn = 0;
	if (r->mode == REPL_STREAM)
		connect_start(r);
	else
		run_step(r, STEP_PUB_CHECK);
}

static void on_timer(uv_timer_t *t)
{
	struct repl *r = t->data;
	char text[64];

	if (r->stopping)
		return;
	switch (r->phase) {
	case PH_IDLE:
		start_session(r);
		return;
	case PH_CONNECTING:
		snprintf(text, sizeof(text), "could not connect: timed out after %u ms",
			 r->connect_timeout_ms);
		session_failed(r, text);
		return;
	case PH_SETUP:
		snprintf(text, sizeof(text), "setup statement timed out after %u ms",
			 r->query_timeout_ms);
		session_failed(r, text);
		return;
	case PH_BUSY_WAIT:
		run_step(r, STEP_START);
		return;
	case PH_STREAMING:
		if (r->mode == REPL_STREAM)
			return;
		/* Poll mode: the next peek (and an advance left over). */
		if (r->stats.confirmed_lsn > r->stats.flushed_lsn)
			send_advance(r, r->stats.confirmed_lsn);
		send_peek(r);
		return;
	}
}

/* ------------------------------------------------------------------ */
/* Public                                                              */
/* ------------------------------------------------------------------ */

/* The replication connection's keywords: the conninfo's, then ours
 * (replication=database, keepalives, timeouts, wal_sender_timeout
 * appended to the user's options so that ours wins). */
static int build_params(struct repl *r, const struct repl_config *cfg, uint32_t wst,
			char *err, size_t errlen)
{
	char extra[48];
	struct pgsock_options o = {
		.conninfo = cfg->conninfo,
		.application_name = cfg->application_name,
		.keepalives_idle_s = cfg->keepalives_idle_s,
		.keepalives_interval_s = cfg->keepalives_interval_s,
		.keepalives_count = cfg->keepalives_count,
		.tcp_user_timeout_ms = cfg->tcp_user_timeout_ms,
		.connect_timeout_ms = r->connect_timeout_ms,
		.replication = "database",
		.extra_options = extra,
		.max_user_options = 960,
	};

	snprintf(extra, sizeof(extra), "-c wal_sender_timeout=%" PRIu32, wst);
	return pgsock_params_build(&r->params, &o, err, errlen);
}

static bool slot_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > REPL_NAME_MAX)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
			return false;
	return true;
}

struct repl *repl_start(uv_loop_t *loop, const struct repl_config *cfg,
			const struct repl_callbacks *cb, char *err, size_t errlen)
{
	char ebuf[REPL_ERROR_MAX];
	const char *slot, *pub;
	struct repl *r;
	size_t k = 0;

	if (!err || !errlen) {
		err = ebuf;
		errlen = sizeof(ebuf);
	}
	err[0] = '\0';
	if (!loop || !cfg || !cfg->conninfo || !cb || !cb->on_message) {
		snprintf(err, errlen, "%s", !cfg || !cfg->conninfo ? "no conninfo" :
			 "no on_message callback");
		return NULL;
	}
	slot = cfg->slot && *cfg->slot ? cfg->slot : "meridian";
	pub = cfg->publication && *cfg->publication ? cfg->publication : "meridian";
	if (!slot_name_ok(slot)) {
		snprintf(err, errlen, "bad slot name (1 to %d of a-z, 0-9, _)", REPL_NAME_MAX);
		return NULL;
	}
	if (strlen(pub) > REPL_NAME_MAX) {
		snprintf(err, errlen, "publication name longer than %d bytes", REPL_NAME_MAX);
		return NULL;
	}
	if (cfg->mode != REPL_STREAM && cfg->mode != REPL_POLL) {
		snprintf(err, errlen, "bad mode");
		return NULL;
	}
	if (cfg->poll_max_changes > 1000000) {
		snprintf(err, errlen, "poll_max_changes above 1000000");
		return NULL;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	r->loop = loop;
	pgsock_init(&r->io, loop, on_io, r, COMPONENT);
	r->cb = *cb;
	r->mode = cfg->mode;
	snprintf(r->slot, sizeof(r->slot), "%s", slot);
	snprintf(r->pub, sizeof(r->pub), "%s", pub);
	r->pub_ident[k++] = '"';
	for (const char *p = pub; *p; p++) {
		if (*p == '"')
			r->pub_ident[k++] = '"';
		r->pub_ident[k++] = *p;
	}
	r->pub_ident[k++] = '"';
	r->pub_ident[k] = '\0';
	r->status_interval_ms = pgsock_or_default(cfg->status_interval_ms, 10000);
	r->connect_timeout_ms = pgsock_or_default(cfg->connect_timeout_ms, 5000);
	r->query_timeout_ms = pgsock_or_default(cfg->query_timeout_ms, 30000);
	r->poll_interval_ms = pgsock_or_default(cfg->poll_interval_ms, 200);
	r->poll_max_changes = pgsock_or_default(cfg->poll_max_changes, 1000);
	r->max_message = pgsock_or_default(cfg->max_message_bytes, REPL_MAX_MESSAGE_DEFAULT);
	r->busy_max_tries = pgsock_or_default(cfg->busy_max_tries, 60);
	r->rng = cfg->seed;
	backoff_init(&r->bo, pgsock_or_default(cfg->backoff_initial_ms, 200),
		     pgsock_or_default(cfg->backoff_max_ms, 5000));
	backoff_init(&r->busy_bo, pgsock_or_default(cfg->busy_backoff_initial_ms, 50),
		     pgsock_or_default(cfg->busy_backoff_max_ms, 1000));

	if (r->mode == REPL_STREAM) {
		if (build_params(r, cfg, pgsock_or_default(cfg->wal_sender_timeout_ms, 10000), err,
				 errlen) < 0) {
			free_repl(r);
			return NULL;
		}
	} else {
		struct pgconn_config pc = {
			.conninfo = cfg->conninfo,
			.application_name = cfg->application_name,
			.connect_timeout_ms = r->connect_timeout_ms,
			.query_timeout_ms = r->query_timeout_ms,
			.keepalives_idle_s = cfg->keepalives_idle_s,
			.keepalives_interval_s = cfg->keepalives_interval_s,
			.keepalives_count = cfg->keepalives_count,
			.tcp_user_timeout_ms = cfg->tcp_user_timeout_ms,
			.max_queue = 4,
			.backoff_initial_ms = cfg->backoff_initial_ms,
			.backoff_max_ms = cfg->backoff_max_ms,
			.seed = splitmix64(&r->rng),
		};

		r->pc = pgconn_new(loop, &pc, err, errlen);
		if (!r->pc) {
			free_repl(r);
			return NULL;
		}
	}
	uv_timer_init(loop, &r->timer);
	uv_timer_init(loop, &r->tick);
	r->timer.data = r->tick.data = r;
	r->handles = 2;
	r->phase = PH_IDLE;
	arm_timer(r, 0);
	return r;
}

int repl_confirm(struct repl *r, uint64_t lsn)
{
	if (!r)
		return -EINVAL;
	if (lsn <= r->stats.confirmed_lsn)
		return 0;
	if (lsn > r->stats.received_lsn)
		return -ERANGE;
	r->stats.confirmed_lsn = lsn;
	if (r->mode == REPL_STREAM)
		r->stats.flushed_lsn = max_u64(r->stats.flushed_lsn, lsn);   /* next update */
	else if (!r->stopping)
		send_advance(r, lsn);   /* flushed_lsn moves once it is done */
	return 0;
}

void repl_stop(struct repl *r)
{
	if (!r || r->stopping)
		return;
	if (r->mode == REPL_STREAM && r->phase == PH_STREAMING && r->io.pg) {
		/* Best effort, never blocking: the next consumer starts where
		 * the owner confirmed. */
		uint8_t msg[REPL_STATUS_LEN];

		repl_status_encode(msg, r->stats.flushed_lsn, repl_pg_time_us(clock_wall_ms()));
		if (PQputCopyData(r->io.pg, (const char *)msg, sizeof(msg)) == 1) {
			r->stats.status_updates++;
			PQflush(r->io.pg);
		}
	}
	r->stopping = true;
	conn_drop(r);
	pgconn_close(r->pc);
	r->pc = NULL;
	uv_close((uv_handle_t *)&r->timer, handle_closed);
	uv_close((uv_handle_t *)&r->tick, handle_closed);
}

void repl_stats_get(const struct repl *r, struct repl_stats *out)
{
	*out = r->stats;
}
