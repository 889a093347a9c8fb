/*
 * storage/pgsock.h - the libpq-on-libuv plumbing that storage/pgconn.c
 * (queries) and storage/replication.c (the walsender stream) share:
 * building PQconnectStartParams()'s keyword/value arrays, and watching
 * one PGconn's socket with a uv_poll.  Internal to the storage layer.
 *
 * Parameters.  pgsock_params_build() parses the conninfo (URL or
 * key=value) with PQconninfoParse(), keeps its settings, and sets ours on
 * top: keepalives=1, keepalives_idle, keepalives_interval,
 * keepalives_count, tcp_user_timeout and connect_timeout (ours win: a dead
 * peer must be noticed within the bounds the agent promises), our
 * application_name as fallback_application_name (an application_name in
 * the conninfo wins), replication= when asked, and extra_options appended
 * to the conninfo's own "options" (after them, so ours win there too).
 *
 * The socket.  A struct pgsock owns the PGconn and the uv_poll on
 * PQsocket().  libpq may switch sockets while connecting (another address
 * of the host, a retry without SSL), even to a new socket under the old
 * descriptor number, so until connected every watch identifies the socket
 * by (fd, inode) and remakes the poll handle when that changed; once
 * connected the socket stays, and comparing the fd is enough.  The poll handle is
 * always closed before PQfinish() closes its descriptor, and frees itself
 * in its close callback: it never touches its owner after
 * pgsock_finish(), so the owner need not wait for it (the loop does).
 * The poll callback gets the handle with ->data = the owner's pointer.
 *
 * Return values: PGSOCK_OK (0), PGSOCK_CONNECTED, PGSOCK_FAILED (libpq
 * said no: PQerrorMessage(s->pg) says why, or s->pg is NULL when it was
 * out of memory), or a negative errno / UV error when the socket could not
 * be watched.
 *
 * Results.  pgsock_result_is_error(), pgsock_result_error() and
 * pgsock_keep_result() are the common reading of a query's results: which
 * count as errors, how an error is told ("SQLSTATE xxxxx: message"), and
 * which of several results answers the query.
 *
 * Not thread-safe; one loop.
 */
#ifndef MERIDIAN_STORAGE_PGSOCK_H
#define MERIDIAN_STORAGE_PGSOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <libpq-fe.h>
#include <uv.h>

#define PGSOCK_MAX_POLL_ERRORS 3   /* poll error callbacks in a row before giving up */
#define PGSOCK_NOTICE_MAX 256      /* bytes of a server notice logged, with the NUL */

enum {
	PGSOCK_OK = 0,
	PGSOCK_CONNECTED = 1,
	PGSOCK_FAILED = 2,
};

/* NULL-terminated keyword and value arrays, n pairs, owned. */
struct pgsock_params {
	char **kw, **val;
	size_t n;
};

/* Every field left 0 takes the default shown. */
struct pgsock_options {
	const char *conninfo;
	const char *application_name;  /* fallback_application_name ("meridian") */
	uint32_t keepalives_idle_s;    /* 5 */
	uint32_t keepalives_interval_s;  /* 2 */
	uint32_t keepalives_count;     /* 3 */
	uint32_t tcp_user_timeout_ms;  /* 10000 */
	uint32_t connect_timeout_ms;   /* the caller's bound; libpq gets whole seconds, >= 1 */
	const char *replication;       /* replication= (not set) */
	const char *extra_options;     /* appended to the conninfo's options (none) */
	size_t max_user_options;       /* longer conninfo options: -EINVAL (no limit) */
};

/* Copies @src into @dst (@size bytes, 0 allowed) as one line: newlines
 * and tabs become spaces, runs of spaces collapse, the ends are trimmed.
 * libpq's messages are multi-line. */
void pgsock_one_line(char *dst, size_t size, const char *src);

/* Builds @p (zeroed first) from @o.  0, -EINVAL (a bad conninfo, options
 * too long) or -ENOMEM, with a one-line reason in @err (NULL allowed);
 * on failure @p holds nothing. */
int pgsock_params_build(struct pgsock_params *p, const struct pgsock_options *o, char *err,
			size_t errlen);

/* @out (zeroed first): a copy of @src with the @n keywords @keys set to
 * @vals (replaced where @src has them, added where not).  0 or -ENOMEM
 * (then @out holds nothing). */
int pgsock_params_with(struct pgsock_params *out, const struct pgsock_params *src,
		       const char *const *keys, const char *const *vals, size_t n);

/* Frees what @p holds and zeroes it; again is harmless. */
void pgsock_params_free(struct pgsock_params *p);

/* @v, or @def when @v is 0 (an option left unset). */
static inline uint32_t pgsock_or_default(uint32_t v, uint32_t def)
{
	return v ? v : def;
}

/* True for an error result (fatal, nonfatal, bad response); @r not NULL. */
bool pgsock_result_is_error(const PGresult *r);

/* Formats the error of @r into @out (@size bytes): "SQLSTATE xxxxx:
 * primary message", or just the message when there is no SQLSTATE; the
 * message falls back to libpq's whole error text, then the status name. */
void pgsock_result_error(const PGresult *r, char *out, size_t size);

/* Of several results, keeps in *@kept the one that answers: the first,
 * or the first error.  Takes @r; frees whichever is not kept. */
void pgsock_keep_result(PGresult **kept, PGresult *r);

struct pgsock {
	PGconn *pg;                    /* NULL when no connection */
	bool flushing;                 /* PQflush() said 1: writable wanted too */

	/* pgsock.c's own. */
	uv_loop_t *loop;
	uv_poll_cb cb;
	void *data;
	const char *component;
	uv_poll_t *poll;
	int fd;
	ino_t ino;
	bool connected;                /* PQconnectPoll() said OK: the socket stays */
	int events;
	unsigned errors;               /* error callbacks in a row */
};

/* No connection yet.  @cb runs for the socket's events with the handle's
 * ->data = @data; server notices are logged at DEBUG under @component
 * (a string that outlives @s). */
void pgsock_init(struct pgsock *s, uv_loop_t *loop, uv_poll_cb cb, void *data,
		 const char *component);

/* PQconnectStartParams() with @p, then watches for writable (as libpq
 * wants before the first PQconnectPoll()).  PGSOCK_OK, PGSOCK_FAILED or
 * < 0; on failure s->pg may be set: pgsock_finish() it. */
int pgsock_connect_start(struct pgsock *s, const struct pgsock_params *p);

/* One PQconnectPoll() step, then watches what libpq wants next.
 * PGSOCK_CONNECTED once connected (non-blocking, notices logged),
 * PGSOCK_OK while in progress, PGSOCK_FAILED or < 0. */
int pgsock_connect_step(struct pgsock *s);

/* Watches libpq's current socket for @events (UV_READABLE,
 * UV_WRITABLE), remaking the poll handle when the socket changed.
 * PGSOCK_OK or < 0. */
int pgsock_watch(struct pgsock *s, int events);

/* PQflush(), then watches for readable, and writable while libpq still
 * holds output (s->flushing).  PGSOCK_OK, PGSOCK_FAILED or < 0. */
int pgsock_flush(struct pgsock *s);

/* True when @h is the poll handle in use (a callback of any other is
 * stale and to be ignored). */
static inline bool pgsock_current(const struct pgsock *s, const uv_poll_t *h)
{
	return h == s->poll;
}

/* First thing in the poll callback, after pgsock_current().  A poll
 * error (libuv says UV_EBADF for POLLERR, a refused connect or a reset,
 * and has stopped the handle) is not final: libpq tells the real story,
 * so the handle is started again and *@events set to both, unless it
 * keeps happening (more than PGSOCK_MAX_POLL_ERRORS in a row): then
 * @status is returned and the caller gives up.  0 otherwise. */
int pgsock_poll_status(struct pgsock *s, int status, int *events);

/* Closes the poll handle, then the connection (PQfinish()); flushing
 * cleared.  Harmless without a connection. */
void pgsock_finish(struct pgsock *s);

#endif
