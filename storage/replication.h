/*
 * storage/replication.h - the logical replication consumer: one reader of
 * a PostgreSQL logical slot (pgoutput) on the libuv loop, handing the raw
 * pgoutput messages and their LSNs to its owner.  Decoding them is
 * storage/pgoutput.h's business; this is the transport.
 *
 * Two modes, same events, same guarantees:
 *
 *   REPL_STREAM  a replication connection (replication=database is added
 *                to the conninfo), START_REPLICATION SLOT s LOGICAL 0/0
 *                (proto_version '1', publication_names 'p') and the
 *                CopyBoth stream: XLogData ('w') messages are delivered,
 *                primary keepalives ('k') answered.
 *   REPL_POLL    an ordinary connection (storage/pgconn.h), for managed
 *                databases that refuse replication connections: every
 *                poll_interval_ms, pg_logical_slot_peek_binary_changes(s,
 *                NULL, poll_max_changes, 'proto_version', '1',
 *                'publication_names', p); the rows are delivered in order.
 *
 * Setup, at every (re)connection: the publication is created FOR ALL
 * TABLES when pg_publication has none of that name, the slot (pgoutput)
 * when pg_replication_slots has none (CREATE_REPLICATION_SLOT in stream
 * mode, pg_create_logical_replication_slot() in poll mode); a concurrent
 * creation (42710) is fine.  A slot with another plugin is an error.
 * Both need the privileges to create them (FOR ALL TABLES: superuser);
 * create them beforehand otherwise.
 *
 * Positions.  Every message comes with an LSN: the XLogData start (the
 * row's lsn in poll mode), which is what Postgres calls the message's
 * write location: Begin carries the transaction's first LSN, changes
 * their record's, Commit the END of the commit record (stream mode: a
 * message the server sends without a position, as it does for Relation,
 * Type and Origin, takes the previous message's).  Messages come
 * whole transactions at a time, in commit order; LSNs are non-decreasing
 * within a transaction, and Commit LSNs strictly increase, but a Begin
 * may carry an LSN below the previous Commit's (transactions interleave
 * in the WAL).  The owner confirms with repl_confirm() the Commit LSN of
 * the last transaction it has fully dealt with; that, never merely what
 * was received, is what the server is told (stream: the write, flush
 * and apply positions of the standby status update; poll:
 * pg_replication_slot_advance()).  A new session (this one reconnecting,
 * or another consumer after repl_stop()) starts after the slot's
 * confirmed position: nothing confirmed is delivered again, nothing
 * unconfirmed is lost; what was delivered but not confirmed is delivered
 * again (at least once).
 *
 *   Status updates (stream): on every keepalive that asks for one, every
 *   status_interval_ms, and once more in repl_stop() (best effort, so
 *   that the next consumer resumes exactly there).  When the owner has
 *   confirmed everything delivered, a keepalive's WAL end is reported
 *   instead (every transaction that committed before it has been sent,
 *   so none can be skipped): the slot then advances through WAL nobody
 *   subscribes to (other databases, unpublished tables), rather than
 *   holding it forever.  Poll mode does the same: a poll with no new
 *   rows and nothing unconfirmed advances the slot (at most every
 *   status_interval_ms) to the WAL flush position read just before the
 *   peek.
 *
 *   Poll mode peeks from the slot's confirmed position every time; rows
 *   of transactions whose Commit was delivered in this session are
 *   skipped (by whole transaction: a transaction is the run of rows from
 *   a Begin to its Commit).  So at most poll_max_changes rows (rounded up
 *   to whole transactions) lie beyond the confirmed position: delivery
 *   pauses until the owner confirms.  Stream mode has no such window:
 *   the owner must keep up or buffer (bounded) itself.
 *
 * The slot busy (SQLSTATE 55006, "replication slot ... is active for PID
 * n": typically the previous leader's consumer, not yet gone) is not a
 * failure: state REPL_SLOT_BUSY (reported once per episode, logged once),
 * stats.slot_busy counts every answer, and START_REPLICATION (the peek)
 * is tried again after busy_backoff_initial_ms doubling up to
 * busy_backoff_max_ms (jittered, lib/backoff.h), on the same connection.
 * After busy_max_tries in a row the episode escalates: REPL_ERROR, one
 * warning, and the retries go on at the ordinary backoff (the slot may be
 * held by something that is not going away; an operator must look).  A
 * consumer that hangs rather than dies holds its slot until the server's
 * wal_sender_timeout: ours is set per connection (wal_sender_timeout_ms,
 * "-c wal_sender_timeout=" in the options) so that it is seconds.
 *
 * Any other failure (connection refused or lost, a setup statement
 * failing, the stream ending, malformed stream data) drops the connection
 * and tries again after an exponential backoff with jitter, reset once
 * streaming (or a poll) succeeds.  Malformed stream data (an unknown
 * message kind, a truncated header, an empty or oversized payload) is
 * counted (stats.malformed), logged and kept as last_error; never
 * delivered.  A payload above max_message_bytes is malformed too (libpq
 * has buffered it already: the bound protects the owner, not libpq).
 *
 * Loop.  Nothing blocks: PQconnectStartParams/PQconnectPoll,
 * PQsendQuery, PQconsumeInput, PQgetCopyData(async), PQputCopyData and
 * PQflush in nonblocking mode, a uv_poll on PQsocket() (poll mode: all of
 * that is pgconn's).  As with pgconn, host names are resolved off the
 * loop before libpq connects (storage/pgresolve.h).
 *
 * Callbacks run from libuv callbacks, never from inside repl_start(),
 * repl_confirm() or repl_stop().  They may call repl_confirm() and
 * repl_stop() (on_message's @data is valid during the call only).  No
 * callback is called after repl_stop(); the object is freed once libuv
 * has closed its handles (run the loop).
 *
 * Not thread-safe; one loop.
 */
#ifndef MERIDIAN_STORAGE_REPLICATION_H
#define MERIDIAN_STORAGE_REPLICATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#define REPL_ERROR_MAX 256                   /* bytes of an error text, with the NUL */
#define REPL_NAME_MAX 63                     /* NAMEDATALEN - 1 */
#define REPL_MAX_MESSAGE_DEFAULT (64u << 20) /* max_message_bytes when 0 */

enum repl_mode {
	REPL_STREAM = 0,
	REPL_POLL = 1,
};

enum repl_state {
	REPL_CONNECTING = 1,   /* connecting, or setting up publication and slot */
	REPL_STREAMING,        /* stream started / the first poll succeeded */
	REPL_SLOT_BUSY,        /* 55006: another consumer holds the slot; retrying */
	REPL_ERROR,            /* a failure (detail says which); retrying after a backoff */
};

/* "connecting", "streaming", "slot_busy", "error"; "?" otherwise. */
const char *repl_state_name(enum repl_state s);

/* Fields left 0 take the default shown. */
struct repl_config {
	const char *conninfo;            /* the primary, URL or key=value (copied); required */
	const char *slot;                /* ("meridian"): [a-z0-9_], 1..63 bytes, as Postgres */
	const char *publication;         /* ("meridian"): any name of 1..63 bytes */
	enum repl_mode mode;             /* (REPL_STREAM) */
	const char *application_name;    /* when the conninfo names none ("meridian") */
	uint32_t status_interval_ms;     /* stream: periodic status updates (10000) */
	uint32_t wal_sender_timeout_ms;  /* stream: the server's, for our connection (10000) */
	uint32_t poll_interval_ms;       /* poll: between peeks (200) */
	uint32_t poll_max_changes;       /* poll: upto_nchanges of a peek (1000) */
	uint32_t busy_backoff_initial_ms;  /* 55006 retries (50) ... */
	uint32_t busy_backoff_max_ms;      /* ... doubling up to (1000) ... */
	uint32_t busy_max_tries;           /* ... this many in a row, then escalate (60) */
	uint32_t backoff_initial_ms;     /* other failures: first delay (200) */
	uint32_t backoff_max_ms;         /* (5000) */
	uint32_t connect_timeout_ms;     /* one connection attempt (5000) */
	uint32_t query_timeout_ms;       /* a setup statement, a peek, an advance (30000) */
	uint32_t max_message_bytes;      /* a payload above is malformed (64 MiB) */
	uint32_t keepalives_idle_s;      /* TCP keepalives, as storage/pgconn.h (5) */
	uint32_t keepalives_interval_s;  /* (2) */
	uint32_t keepalives_count;       /* (3) */
	uint32_t tcp_user_timeout_ms;    /* (10000) */
	uint64_t seed;                   /* backoff jitter */
};

struct repl_callbacks {
	/* One pgoutput message (see the top of this file for @lsn). */
	void (*on_message)(void *ctx, uint64_t lsn, const uint8_t *data, size_t len);
	/* A change of state; @detail says why ("" when nothing to say).
	 * REPL_ERROR is reported at every failure, the others when entered. */
	void (*on_state)(void *ctx, enum repl_state state, const char *detail);
	void *ctx;
};

struct repl;

/*
 * Validates @cfg, copies it and starts (connecting from a fresh libuv
 * callback).  @cb->on_message is required, on_state optional.  NULL when
 * the config is invalid or out of memory; then @err (if not NULL) says
 * why.
 */
struct repl *repl_start(uv_loop_t *loop, const struct repl_config *cfg,
			const struct repl_callbacks *cb, char *err, size_t errlen);

/*
 * The owner has dealt with everything up to @lsn (a Commit's LSN): it is
 * reported to the server with the next status update (poll: advanced at
 * once).  0; a value at or below the confirmed one changes nothing (0 as
 * well); -ERANGE when @lsn is above the highest LSN ever delivered by @r
 * (nobody confirms what they never got; a confirmation arriving after a
 * reconnection is fine); -EINVAL when @r is NULL.
 */
int repl_confirm(struct repl *r, uint64_t lsn);

/* Stops (see the top of this file): sends a last status update when
 * streaming, closes the connection, no callback after this.  Poll mode:
 * an advance still running is dropped (what it covered is delivered
 * again).  NULL is a no-op. */
void repl_stop(struct repl *r);

struct repl_stats {
	uint64_t messages;            /* delivered to on_message */
	uint64_t bytes;               /* their payload bytes */
	uint64_t keepalives;          /* primary keepalives received (stream) */
	uint64_t status_updates;      /* standby status updates sent (stream) */
	uint64_t advances;            /* pg_replication_slot_advance() done (poll) */
	uint64_t polls;               /* peeks answered (poll) */
	uint64_t skipped;             /* rows peeked again and not redelivered (poll) */
	uint64_t slot_busy;           /* 55006 answers */
	uint64_t reconnects;          /* sessions dropped after a failure */
	uint64_t malformed;           /* malformed stream messages */
	uint64_t received_lsn;        /* highest LSN delivered (every session) */
	uint64_t server_lsn;          /* the server's WAL end, latest seen (lag = this -
					 confirmed_lsn) */
	uint64_t confirmed_lsn;       /* highest repl_confirm()ed */
	uint64_t flushed_lsn;         /* last position the server was told (or the slot's
					 confirmed_flush_lsn read at setup) */
	enum repl_state state;        /* the last reported (0 before the first) */
	char last_error[REPL_ERROR_MAX];  /* "" if none */
};
void repl_stats_get(const struct repl *r, struct repl_stats *out);

/*
 * The stream's wire format, pure (exposed for tests and fuzzing).
 *
 * repl_copy_parse() reads one CopyData payload of the CopyBoth stream.
 * 0, or -EBADMSG (empty, an unknown kind, a header shorter or a keepalive
 * longer than its fixed size, an empty XLogData payload) or -EMSGSIZE (an
 * XLogData payload above @max_payload).  @out->payload points into @buf.
 */
#define REPL_XLOGDATA_HDR 25          /* 'w' start(8) end(8) time(8) */
#define REPL_KEEPALIVE_LEN 18         /* 'k' end(8) time(8) reply(1) */
#define REPL_STATUS_LEN 34            /* 'r' write flush apply time(8 each) reply(1) */

struct repl_copy {
	char kind;                    /* 'w' XLogData, 'k' primary keepalive */
	uint64_t start;               /* 'w': the data's start LSN (0 for 'k') */
	uint64_t end;                 /* the server's WAL end */
	int64_t send_time;            /* server clock: us since 2000-01-01 */
	bool reply_requested;         /* 'k' */
	const uint8_t *payload;       /* 'w' */
	size_t len;
};
int repl_copy_parse(const uint8_t *buf, size_t len, size_t max_payload, struct repl_copy *out);

/* A standby status update ('r') into @out: write = flush = apply = @lsn,
 * @now_us (us since 2000-01-01), reply not requested. */
void repl_status_encode(uint8_t out[REPL_STATUS_LEN], uint64_t lsn, int64_t now_us);

/* Unix-epoch milliseconds -> Postgres' clock (us since 2000-01-01). */
int64_t repl_pg_time_us(uint64_t unix_ms);

#endif
