/*
 * cmd/onchange.c - the --on-change subscriber process (cmd/onchange.h).
 *
 * One child at a time: a uv_process with a pipe on its stdin.  Every
 * line is copied into a write request (libuv keeps the buffer until the
 * write completes); the pipe's write queue is the backlog that the bound
 * measures.  When the child exits (on its own, or after we cut it off),
 * the pipe and the process handle are closed and a timer starts the next.
 */
#include "cmd/onchange.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "lib/backoff.h"
#include "lib/log.h"

#define RESTART_INITIAL_MS 1000
#define RESTART_MAX_MS 30000
#define HEALTHY_MS 60000           /* a run this long resets the backoff */

struct child {
	uv_process_t proc;
	uv_pipe_t in;
	struct onchange *owner;        /* NULL once the owner closed */
	int handles;
	bool exited;                   /* its exit was reported */
	bool cut;                      /* cut off (too slow): no more writes */
	bool closed;                   /* its handles are closing */
};

/* Closes both handles once; the child is freed when both are closed. */
static void child_close(struct child *k);

struct onchange {
	uv_loop_t *loop;
	char *command;
	struct child *child;           /* the running one, NULL between runs */
	uv_timer_t restart;
	struct backoff backoff;
	bool backoff_live, closing, gap_logged;
	uint64_t started_at;
	uint64_t written, dropped, restarts, too_slow;
};

struct wreq {
	uv_write_t req;
	char data[];
};

static void child_start(struct onchange *o);

static void child_handle_closed(uv_handle_t *h)
{
	struct child *k = h->data;

	if (--k->handles == 0)
		free(k);
}

static void child_close(struct child *k)
{
	if (k->closed)
		return;
	k->closed = true;
	uv_close((uv_handle_t *)&k->in, child_handle_closed);
	uv_close((uv_handle_t *)&k->proc, child_handle_closed);
}

static void restart_fired(uv_timer_t *t)
{
	child_start(t->data);
}

static void child_exited(uv_process_t *p, int64_t status, int sig)
{
	struct child *k = p->data;
	struct onchange *o = k->owner;

	k->exited = true;
	child_close(k);
	if (o == NULL || o->child != k)
		return;
	o->child = NULL;
	if (o->closing)
		return;
	if (uv_now(o->loop) - o->started_at >= HEALTHY_MS)
		o->backoff_live = false;
	if (!o->backoff_live) {
		backoff_init(&o->backoff, RESTART_INITIAL_MS, RESTART_MAX_MS);
		o->backoff_live = true;
	}
	uint32_t delay = backoff_next(&o->backoff, (uint32_t)uv_now(o->loop));

	LOG(LOG_WARNING, "changes", "--on-change exited (%s %lld); starting it again in %u ms",
	    sig ? "signal" : "status", (long long)(sig ? sig : status), delay);
	o->restarts++;
	uv_timer_start(&o->restart, restart_fired, delay, 0);
}

static void child_start(struct onchange *o)
{
	struct child *k = calloc(1, sizeof(*k));
	char *args[] = { (char *)"/bin/sh", (char *)"-c", o->command, NULL };
	uv_stdio_container_t stdio[3];
	uv_process_options_t opt;
	int rc;

	if (k == NULL || o->closing) {
		free(k);
		return;
	}
	k->owner = o;
	uv_pipe_init(o->loop, &k->in, 0);
	k->in.data = k->proc.data = k;
	stdio[0] = (uv_stdio_container_t){ .flags = UV_CREATE_PIPE | UV_READABLE_PIPE,
					   .data.stream = (uv_stream_t *)&k->in };
	stdio[1] = (uv_stdio_container_t){ .flags = UV_INHERIT_FD, .data.fd = 1 };
	stdio[2] = (uv_stdio_container_t){ .flags = UV_INHERIT_FD, .data.fd = 2 };
	opt = (uv_process_options_t){ .exit_cb = child_exited, .file = "/bin/sh", .args = args,
				      .stdio = stdio, .stdio_count = 3 };
	rc = uv_spawn(o->loop, &k->proc, &opt);
	if (rc != 0) {
		LOG(LOG_ERROR, "changes", "cannot start --on-change: %s; trying again in %d ms",
		    uv_strerror(rc), RESTART_MAX_MS);
		k->handles = 2;
		child_close(k);
		uv_timer_start(&o->restart, restart_fired, RESTART_MAX_MS, 0);
		return;
	}
	k->handles = 2;
	o->child = k;
	o->started_at = uv_now(o->loop);
	o->gap_logged = false;
	LOG(LOG_INFO, "changes", "--on-change started (pid %d)", k->proc.pid);
}

struct onchange *onchange_new(uv_loop_t *loop, const char *command)
{
	struct onchange *o = calloc(1, sizeof(*o));

	if (o == NULL || (o->command = strdup(command)) == NULL) {
		free(o);
		return NULL;
	}
	o->loop = loop;
	uv_timer_init(loop, &o->restart);
	o->restart.data = o;
	child_start(o);
	return o;
}

static void write_done(uv_write_t *req, int status)
{
	(void)status;   /* a child that died: its exit callback says so */
	free(req);
}

void onchange_write(struct onchange *o, const char *line, size_t len)
{
	struct child *k = o->child;
	struct wreq *w;
	uv_buf_t buf;

	if (k == NULL || k->exited || k->cut) {
		o->dropped++;
		if (!o->gap_logged)
			LOG(LOG_WARNING, "changes", "--on-change is not running: change events are "
			    "dropped for it until it runs again (counted)");
		o->gap_logged = true;
		return;
	}
	if (uv_stream_get_write_queue_size((uv_stream_t *)&k->in) > ONCHANGE_BACKLOG_MAX) {
		o->too_slow++;
		o->dropped++;
		LOG(LOG_WARNING, "changes", "--on-change is more than %u bytes behind: too slow; "
		    "stopping it (SIGKILL; it is started again)", ONCHANGE_BACKLOG_MAX);
		/* It is not reading: a signal it could ignore would not do.
		 * Its exit callback closes the handles and restarts. */
		uv_process_kill(&k->proc, SIGKILL);
		k->cut = true;
		return;
	}
	w = malloc(sizeof(*w) + len + 1);
	if (w == NULL) {
		o->dropped++;
		return;
	}
	memcpy(w->data, line, len);
	w->data[len] = '\n';
	buf = uv_buf_init(w->data, (unsigned)len + 1);
	if (uv_write(&w->req, (uv_stream_t *)&k->in, &buf, 1, write_done) != 0) {
		free(w);
		o->dropped++;
		return;
	}
	o->written++;
}

static void onchange_free(uv_handle_t *h)
{
	struct onchange *o = h->data;

	free(o->command);
	free(o);
}

void onchange_close(struct onchange *o)
{
	if (o == NULL || o->closing)
		return;
	o->closing = true;
	if (o->child) {
		struct child *k = o->child;

		/* SIGTERM and EOF on its stdin; the agent does not wait for it
		 * (a command that ignores both must not hold the exit). */
		k->owner = NULL;
		if (!k->exited)
			uv_process_kill(&k->proc, SIGTERM);
		child_close(k);
		o->child = NULL;
	}
	uv_close((uv_handle_t *)&o->restart, onchange_free);
}

void onchange_stats_get(const struct onchange *o, struct onchange_stats *out)
{
	*out = (struct onchange_stats){ .written = o->written, .dropped = o->dropped,
					.restarts = o->restarts, .too_slow = o->too_slow };
}
