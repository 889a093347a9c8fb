/*
 * storage/pgsock.c - the libpq-on-libuv plumbing of pgconn.c and
 * replication.c (see pgsock.h for the contract).
 *
 * Nothing here calls back into the owner: the poll callback is the
 * owner's own, run by libuv, and every function returns what happened so
 * that the owner decides (and words the error) itself.  The poll handle
 * is allocated per socket and frees itself once libuv has closed it; it
 * is not counted among the owner's handles, since its close callback
 * never looks at the owner.
 */
#include "storage/pgsock.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lib/log.h"

void pgsock_one_line(char *dst, size_t size, const char *src)
{
	size_t n = 0;
	bool space = true;            /* drops leading blanks */

	if (!size)
		return;
	for (; src && *src && n + 1 < size; src++) {
		char ch = *src;

		if (ch == '\n' || ch == '\t' || ch == '\r' || ch == ' ') {
			if (space)
				continue;
			ch = ' ';
			space = true;
		} else {
			space = false;
		}
		dst[n++] = ch;
	}
	while (n && dst[n - 1] == ' ')
		n--;
	dst[n] = '\0';
}

/* ------------------------------------------------------------------ */
/* Parameters                                                          */
/* ------------------------------------------------------------------ */

/* The conninfo's settings we replace rather than keep. */
static bool forced_key(const char *k, bool replication)
{
	static const char *const keys[] = {
		"keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count",
		"tcp_user_timeout", "connect_timeout", "fallback_application_name", "options",
	};

	if (replication && !strcmp(k, "replication"))
		return true;
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (!strcmp(k, keys[i]))
			return true;
	return false;
}

static int push_kv(struct pgsock_params *p, size_t cap, const char *k, const char *v)
{
	if (p->n >= cap)
		return -ENOMEM;
	p->kw[p->n] = strdup(k);
	p->val[p->n] = strdup(v);
	if (!p->kw[p->n] || !p->val[p->n]) {
		free(p->kw[p->n]);
		free(p->val[p->n]);
		p->kw[p->n] = p->val[p->n] = NULL;
		return -ENOMEM;
	}
	p->n++;
	return 0;
}

static int push_num(struct pgsock_params *p, size_t cap, const char *k, uint32_t v)
{
	char num[16];

	snprintf(num, sizeof(num), "%" PRIu32, v);
	return push_kv(p, cap, k, num);
}

/* "options": the conninfo's (@user, NULL if none), then @extra. */
static int push_options(struct pgsock_params *p, size_t cap, const char *user,
			const char *extra)
{
	size_t len = (user ? strlen(user) : 0) + (extra ? strlen(extra) : 0) + 2;
	char *options = malloc(len);
	int rc;

	if (!options)
		return -ENOMEM;
	snprintf(options, len, "%s%s%s", user ? user : "", user && *user && extra ? " " : "",
		 extra ? extra : "");
	rc = push_kv(p, cap, "options", options);
	free(options);
	return rc;
}

int pgsock_params_build(struct pgsock_params *p, const struct pgsock_options *o, char *err,
			size_t errlen)
{
	PQconninfoOption *opts, *opt;
	char *perr = NULL;
	const char *user = NULL;
	size_t cap = 16;              /* ours, with room to spare */
	int rc = 0;

	memset(p, 0, sizeof(*p));
	opts = PQconninfoParse(o->conninfo, &perr);
	if (!opts) {
		if (err)
			pgsock_one_line(err, errlen, perr ? perr : "out of memory");
		PQfreemem(perr);
		return -EINVAL;
	}
	for (opt = opts; opt->keyword; opt++)
		cap++;
	p->kw = calloc(cap + 1, sizeof(char *));
	p->val = calloc(cap + 1, sizeof(char *));
	if (!p->kw || !p->val) {
		rc = -ENOMEM;
		goto out;
	}
	for (opt = opts; opt->keyword && !rc; opt++) {
		if (!opt->val)
			continue;
		if (!strcmp(opt->keyword, "options"))
			user = opt->val;
		else if (!forced_key(opt->keyword, o->replication != NULL))
			rc = push_kv(p, cap, opt->keyword, opt->val);
	}
	if (!rc && o->replication)
		rc = push_kv(p, cap, "replication", o->replication);
	if (!rc)
		rc = push_kv(p, cap, "keepalives", "1");
	if (!rc)
		rc = push_num(p, cap, "keepalives_idle",
			      pgsock_or_default(o->keepalives_idle_s, 5));
	if (!rc)
		rc = push_num(p, cap, "keepalives_interval",
			      pgsock_or_default(o->keepalives_interval_s, 2));
	if (!rc)
		rc = push_num(p, cap, "keepalives_count",
			      pgsock_or_default(o->keepalives_count, 3));
	if (!rc)
		rc = push_num(p, cap, "tcp_user_timeout",
			      pgsock_or_default(o->tcp_user_timeout_ms, 10000));
	/* libpq's is whole seconds, at least 1 (it only bounds blocking
	 * connects; ours are bounded by the caller's timer). */
	if (!rc)
		rc = push_num(p, cap, "connect_timeout", o->connect_timeout_ms < 2000 ? 1 :
			      o->connect_timeout_ms / 1000);
	if (!rc)
		rc = push_kv(p, cap, "fallback_application_name",
			     o->application_name && *o->application_name ?
				     o->application_name : "meridian");
	if (!rc && user && o->max_user_options && strlen(user) > o->max_user_options) {
		if (err)
			snprintf(err, errlen, "options in the conninfo too long");
		rc = -EINVAL;
	}
	if (!rc && (user || o->extra_options))
		rc = push_options(p, cap, user, o->extra_options);
out:
	PQconninfoFree(opts);
	if (rc == -ENOMEM && err)
		snprintf(err, errlen, "out of memory");
	if (rc)
		pgsock_params_free(p);
	return rc;
}

int pgsock_params_with(struct pgsock_params *out, const struct pgsock_params *src,
		       const char *const *keys, const char *const *vals, size_t n)
{
	size_t cap = src->n + n;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	out->kw = calloc(cap + 1, sizeof(char *));
	out->val = calloc(cap + 1, sizeof(char *));
	if (!out->kw || !out->val)
		rc = -ENOMEM;
	for (size_t i = 0; i < src->n && !rc; i++) {
		bool replaced = false;

		for (size_t k = 0; k < n && !replaced; k++)
			replaced = strcmp(src->kw[i], keys[k]) == 0;
		if (!replaced)
			rc = push_kv(out, cap, src->kw[i], src->val[i]);
	}
	for (size_t k = 0; k < n && !rc; k++)
		rc = push_kv(out, cap, keys[k], vals[k]);
	if (rc)
		pgsock_params_free(out);
	return rc;
}

void pgsock_params_free(struct pgsock_params *p)
{
	for (size_t i = 0; i < p->n; i++) {
		free(p->kw[i]);
		free(p->val[i]);
	}
	free(p->kw);
	free(p->val);
	memset(p, 0, sizeof(*p));
}

/* ------------------------------------------------------------------ */
/* Results                                                             */
/* ------------------------------------------------------------------ */

bool pgsock_result_is_error(const PGresult *r)
{
	ExecStatusType s = PQresultStatus(r);

	return s == PGRES_FATAL_ERROR || s == PGRES_NONFATAL_ERROR || s == PGRES_BAD_RESPONSE;
}

void pgsock_result_error(const PGresult *r, char *out, size_t size)
{
	const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);

	if (!msg || !*msg)
		msg = PQresultErrorMessage(r);
	if (!msg || !*msg)
		msg = PQresStatus(PQresultStatus(r));
	if (state && *state)
		snprintf(out, size, "SQLSTATE %s: %s", state, msg);
	else
		snprintf(out, size, "%s", msg);
}

void pgsock_keep_result(PGresult **kept, PGresult *r)
{
	if (!*kept) {
		*kept = r;
	} else if (pgsock_result_is_error(r) && !pgsock_result_is_error(*kept)) {
		PQclear(*kept);
		*kept = r;
	} else {
		PQclear(r);
	}
}

/* ------------------------------------------------------------------ */
/* The socket                                                          */
/* ------------------------------------------------------------------ */

void pgsock_init(struct pgsock *s, uv_loop_t *loop, uv_poll_cb cb, void *data,
		 const char *component)
{
	memset(s, 0, sizeof(*s));
	s->loop = loop;
	s->cb = cb;
	s->data = data;
	s->component = component;
	s->fd = -1;
}

static void poll_closed(uv_handle_t *h)
{
	free(h);
}

static void poll_drop(struct pgsock *s)
{
	if (!s->poll)
		return;
	uv_poll_stop(s->poll);
	uv_close((uv_handle_t *)s->poll, poll_closed);
	s->poll = NULL;
	s->events = 0;
}

int pgsock_watch(struct pgsock *s, int events)
{
	int fd = PQsocket(s->pg);
	bool same;
	ino_t ino = s->ino;
	int rc;

	if (fd < 0)
		return -EBADF;
	same = s->poll && s->fd == fd;
	if (!s->connected || !same) {
		/* While connecting a new socket may reuse the old number. */
		struct stat sb;

		if (fstat(fd, &sb) != 0)
			return -errno;
		ino = sb.st_ino;
		same = same && s->ino == ino;
	}
	if (s->poll && !same)
		poll_drop(s);
	if (!s->poll) {
		uv_poll_t *h = malloc(sizeof(*h));

		if (!h)
			return -ENOMEM;
		rc = uv_poll_init(s->loop, h, fd);
		if (rc < 0) {
			free(h);
			return rc;
		}
		h->data = s->data;
		s->poll = h;
		s->fd = fd;
		s->ino = ino;
		s->events = 0;
		s->errors = 0;
	}
	if (events != s->events) {
		rc = uv_poll_start(s->poll, events, s->cb);
		if (rc < 0)
			return rc;
		s->events = events;
	}
	return PGSOCK_OK;
}

void pgsock_finish(struct pgsock *s)
{
	poll_drop(s);                 /* before PQfinish() closes the descriptor */
	if (s->pg) {
		PQfinish(s->pg);
		s->pg = NULL;
	}
	s->flushing = false;
	s->connected = false;
}

static void notice_log(void *arg, const char *message)
{
	const struct pgsock *s = arg;
	char line[PGSOCK_NOTICE_MAX];

	if (LOG_DEBUG >= log_threshold) {
		pgsock_one_line(line, sizeof(line), message);
		LOG(LOG_DEBUG, s->component, "server notice: %s", line);
	}
}

int pgsock_connect_start(struct pgsock *s, const struct pgsock_params *p)
{
	s->pg = PQconnectStartParams((const char *const *)p->kw, (const char *const *)p->val, 0);
	if (!s->pg || PQstatus(s->pg) == CONNECTION_BAD)
		return PGSOCK_FAILED;
	/* libpq: start as if PQconnectPoll() had said POLLING_WRITING. */
	return pgsock_watch(s, UV_WRITABLE);
}

int pgsock_connect_step(struct pgsock *s)
{
	int events;

	switch (PQconnectPoll(s->pg)) {
	case PGRES_POLLING_OK:
		s->connected = true;
		if (PQsetnonblocking(s->pg, 1) != 0)
			return PGSOCK_FAILED;
		PQsetNoticeProcessor(s->pg, notice_log, s);
		return PGSOCK_CONNECTED;
	case PGRES_POLLING_FAILED:
		return PGSOCK_FAILED;
	case PGRES_POLLING_READING:
		events = UV_READABLE;
		break;
	case PGRES_POLLING_WRITING:
		events = UV_WRITABLE;
		break;
	default:
		events = UV_READABLE | UV_WRITABLE;
		break;
	}
	return pgsock_watch(s, events);
}

int pgsock_flush(struct pgsock *s)
{
	int rc = PQflush(s->pg);

	if (rc < 0)
		return PGSOCK_FAILED;
	s->flushing = rc == 1;
	return pgsock_watch(s, UV_READABLE | (s->flushing ? UV_WRITABLE : 0));
}

int pgsock_poll_status(struct pgsock *s, int status, int *events)
{
	int want;

	if (status >= 0) {
		s->errors = 0;
		return 0;
	}
	/* libuv has stopped the handle: start it again. */
	want = s->events;
	s->events = 0;
	if (++s->errors > PGSOCK_MAX_POLL_ERRORS || pgsock_watch(s, want) < 0)
		return status;
	*events = UV_READABLE | UV_WRITABLE;
	return 0;
}
