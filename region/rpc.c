/*
 * region/rpc.c - region RPC between agents: server, client and metrics, on
 * the transport's persistent streams (kind 'R').
 *
 * Connections.  A client keeps at most one connection per peer (name and
 * address), opened by the first call and closed after idle_ms without a
 * call; the pool of peers is bounded and a full pool evicts its longest
 * idle connection, never a busy one.  Every call to that peer shares the
 * connection: the request id pairs answers with calls.  An id is
 * (sequence << 20 | slot + 1), the slot indexing a fixed table of
 * max_inflight calls, so an answer finds its call without a search and a
 * late answer for a finished call (its slot reused) never matches.  One
 * connection rather than a connection per call because a connect costs a
 * round trip and a handshake's worth of syscalls, which is most of a
 * loopback call; one rather than several because the sealed frames are
 * small and the peer's loop is single-threaded anyway.
 *
 * At-most-once.  A request is written only once its connection is up; a
 * call waiting for the connect that fails (refused, unreachable, timed
 * out) reports RPC_NOT_SENT, and only such a call may be tried on the next
 * candidate by the caller.  Once written, a lost connection reports
 * RPC_CONN_LOST: it may have run, and nothing here retries it.
 *
 * Deadlines.  The caller's deadline is kept here with a timer per call;
 * the request carries the time left when it is written, and the server
 * arms its own timer from receipt.  Whichever fires first decides: the
 * client answers timeout locally and sends a cancel; the server cancels
 * the job (a child is killed) and answers timeout, which the client
 * ignores if it gave up already.  Transit time is not subtracted, so the
 * server's deadline is always the later one and the caller hears the
 * client's timeout, not a race.
 *
 * Server bounds.  max_inflight calls in flight over all connections, past
 * it an explicit overloaded with a retry-after; while leaving, unavailable
 * with the retry-after given by the caller of rpc_server_set_leaving.  A
 * frame whose version we do not speak is answered version_mismatch under
 * the id rpc_frame_decode() still extracts; a malformed one bad_request
 * (id 0 when even the id is unreadable), and after BAD_FRAMES_MAX of them
 * the connection is closed: a peer sending only garbage is not worth a
 * socket.  A lost connection cancels every job that came through it.
 *
 * Metrics.  Counters by side, method and outcome and one latency histogram
 * per side and method, for at most RPC_METRICS_METHODS methods each (the
 * rest counted as "other"), so a caller inventing method names cannot grow
 * memory.
 */
#include "region/rpc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "region/region.h"

/* rpc_client_new() checks its region with region_name_valid(). */
_Static_assert(REGION_NAME_MAX == RPC_REGION_MAX, "one bound for region names");

#define SLOT_BITS 20
#define SLOT_MASK ((1u << SLOT_BITS) - 1)
#define BAD_FRAMES_MAX 16
#define ERRLEN 160

/* ------------------------------------------------------------------ */
/* Metrics                                                             */
/* ------------------------------------------------------------------ */

static const char *const outcome_names[] = {
	"ok", "no_such_method", "timeout", "version_mismatch", "unavailable", "overloaded",
	"remote_error", "bad_request", "other", "not_sent", "connection_lost", "cancelled",
};
#define OUTCOMES (sizeof(outcome_names) / sizeof(outcome_names[0]))
#define OUTCOME_OTHER 8

static const double bucket_le[] = {
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
};
#define BUCKETS (sizeof(bucket_le) / sizeof(bucket_le[0]))

struct method_stats {
	char name[RPC_METHOD_MAX + 1];
	uint64_t calls[OUTCOMES];
	uint64_t bucket[BUCKETS];    /* not cumulative; the +Inf one is count */
	uint64_t count;
	double sum;
};

struct rpc_metrics {
	/* [side][0..n-1] named, [side][RPC_METRICS_METHODS] "other" */
	struct method_stats m[2][RPC_METRICS_METHODS + 1];
	size_t n[2];
};

struct rpc_metrics *rpc_metrics_new(void)
{
	struct rpc_metrics *m = calloc(1, sizeof(*m));

	if (m != NULL)
		for (int s = 0; s < 2; s++)
			strcpy(m->m[s][RPC_METRICS_METHODS].name, "other");
	return m;
}

void rpc_metrics_free(struct rpc_metrics *m)
{
	free(m);
}

static struct method_stats *metrics_method(struct rpc_metrics *m, int side, const char *method)
{
	size_t len = method ? strlen(method) : 0;

	if (rpc_method_valid(method, len)) {
		for (size_t i = 0; i < m->n[side]; i++)
			if (strcmp(m->m[side][i].name, method) == 0)
				return &m->m[side][i];
		if (m->n[side] < RPC_METRICS_METHODS) {
			struct method_stats *ms = &m->m[side][m->n[side]++];

			memcpy(ms->name, method, len + 1);
			return ms;
		}
	}
	return &m->m[side][RPC_METRICS_METHODS];
}

void rpc_metrics_observe(struct rpc_metrics *m, enum rpc_side side, const char *method,
			 const char *outcome, double seconds)
{
	struct method_stats *ms;
	size_t o = OUTCOME_OTHER, b;

	if (m == NULL || (side != RPC_SIDE_CLIENT && side != RPC_SIDE_SERVER))
		return;
	ms = metrics_method(m, (int)side, method);
	for (size_t i = 0; outcome && i < OUTCOMES; i++)
		if (strcmp(outcome, outcome_names[i]) == 0)
			o = i;
	ms->calls[o]++;
	if (!(seconds >= 0))
		seconds = 0;    /* NaN or negative: count it, as instant */
	for (b = 0; b < BUCKETS && seconds > bucket_le[b]; b++)
		;
	if (b < BUCKETS)
		ms->bucket[b]++;
	ms->count++;
	ms->sum += seconds;
}

static const char *side_name(int side)
{
	return side == RPC_SIDE_CLIENT ? "client" : "server";
}

int rpc_metrics_print(const struct rpc_metrics *m, FILE *f)
{
	fputs("# HELP meridian_rpc_calls_total Region RPC calls by side, method and outcome.\n"
	      "# TYPE meridian_rpc_calls_total counter\n", f);
	for (int s = 0; s < 2; s++)
		for (size_t i = 0; i <= RPC_METRICS_METHODS; i++) {
			const struct method_stats *ms = &m->m[s][i];

			if (i >= m->n[s] && i != RPC_METRICS_METHODS)
				continue;
			for (size_t o = 0; o < OUTCOMES; o++)
				if (ms->calls[o])
					fprintf(f, "meridian_rpc_calls_total{side=\"%s\",method="
						"\"%s\",outcome=\"%s\"} %llu\n", side_name(s),
						ms->name, outcome_names[o],
						(unsigned long long)ms->calls[o]);
		}
	fputs("# HELP meridian_rpc_duration_seconds Region RPC call latency.\n"
	      "# TYPE meridian_rpc_duration_seconds histogram\n", f);
	for (int s = 0; s < 2; s++)
		for (size_t i = 0; i <= RPC_METRICS_METHODS; i++) {
			const struct method_stats *ms = &m->m[s][i];
			uint64_t cum = 0;

			if (ms->count == 0)
				continue;
			for (size_t b = 0; b < BUCKETS; b++) {
				cum += ms->bucket[b];
				fprintf(f, "meridian_rpc_duration_seconds_bucket{side=\"%s\","
					"method=\"%s\",le=\"%g\"} %llu\n", side_name(s), ms->name,
					bucket_le[b], (unsigned long long)cum);
			}
			fprintf(f, "meridian_rpc_duration_seconds_bucket{side=\"%s\",method=\"%s\","
				"le=\"+Inf\"} %llu\n", side_name(s), ms->name,
				(unsigned long long)ms->count);
			fprintf(f, "meridian_rpc_duration_seconds_sum{side=\"%s\",method=\"%s\"} "
				"%.6f\n", side_name(s), ms->name, ms->sum);
			fprintf(f, "meridian_rpc_duration_seconds_count{side=\"%s\",method=\"%s\"} "
				"%llu\n", side_name(s), ms->name, (unsigned long long)ms->count);
		}
	return ferror(f) ? -EIO : 0;
}

static double since(uint64_t start_ns)
{
	return (double)(uv_hrtime() - start_ns) / 1e9;
}

/* Copies @b into @dst (@cap bytes) NUL-terminated, cut if need be. */
static const char *bytes_str(char *dst, size_t cap, struct rpc_bytes b)
{
	size_t n = b.len < cap - 1 ? b.len : cap - 1;

	if (n)
		memcpy(dst, b.ptr, n);
	dst[n] = '\0';
	return dst;
}

/* ------------------------------------------------------------------ */
/* Server                                                              */
/* ------------------------------------------------------------------ */

struct sconn;

/* One call being served. */
struct job {
	uv_timer_t timer;            /* the request's deadline */
	struct rpc_server *s;
	struct sconn *conn;          /* NULL once finished */
	struct job *prev, *next;     /* conn->jobs */
	uint64_t id;
	void *job;                   /* the method runner's */
	bool starting;               /* inside ops.start() */
	bool finished;               /* answered or cancelled; timer closing */
	uint32_t deadline_ms;
	uint64_t start_ns;
	char method[RPC_METHOD_MAX + 1];
};

/* One inbound RPC connection. */
struct sconn {
	struct rpc_server *s;
	struct transport_stream *st;
	struct sconn *prev, *next;   /* s->conns */
	struct job *jobs;
	uint32_t njobs;
	uint32_t bad;                /* malformed frames so far */
	uint64_t last_ms;
};

struct rpc_server {
	uv_loop_t *loop;
	struct transport *t;
	struct rpc_serve_ops ops;
	struct rpc_metrics *metrics;
	struct transport_stream_ops sops;
	char node[RPC_NODE_MAX + 1];
	char version[RPC_NODE_VERSION_MAX + 1];
	uint32_t max_inflight, overload_retry_ms, idle_ms;
	bool leaving;
	uint32_t leaving_retry_ms;
	bool closing;
	int handles;                 /* open: sweep, drain, job timers */
	uv_timer_t sweep;            /* idle connections */
	uv_timer_t drain;
	void (*drain_cb)(void *ctx, size_t remaining);
	void *drain_ctx;
	struct sconn *conns;
	size_t inflight;
	struct rpc_buf out;          /* scratch for encoding */
};

static void server_maybe_free(struct rpc_server *s)
{
	if (s->closing && s->handles == 0) {
		rpc_buf_free(&s->out);
		free(s);
	}
}

static void server_handle_closed(uv_handle_t *h)
{
	struct rpc_server *s = h->data;

	s->handles--;
	server_maybe_free(s);
}

static void job_closed(uv_handle_t *h)
{
	struct job *j = h->data;
	struct rpc_server *s = j->s;

	free(j);
	s->handles--;
	server_maybe_free(s);
}

static void drain_fired(uv_timer_t *h)
{
	struct rpc_server *s = h->data;
	void (*cb)(void *, size_t) = s->drain_cb;

	if (cb == NULL || s->closing)
		return;
	s->drain_cb = NULL;
	cb(s->drain_ctx, s->inflight);
}

/* Detaches @j from its connection and the in-flight count; frees it once
 * its timer has closed. */
static void job_finish(struct job *j)
{
	struct rpc_server *s = j->s;
	struct sconn *sc = j->conn;

	if (j->finished)
		return;
	j->finished = true;
	if (sc != NULL) {
		if (j->prev)
			j->prev->next = j->next;
		else
			sc->jobs = j->next;
		if (j->next)
			j->next->prev = j->prev;
		sc->njobs--;
		sc->last_ms = uv_now(s->loop);
		j->conn = NULL;
	}
	s->inflight--;
	uv_close((uv_handle_t *)&j->timer, job_closed);
	if (s->inflight == 0 && s->drain_cb != NULL && !s->closing)
		uv_timer_start(&s->drain, drain_fired, 0, 0);
}

/* Sends one response on @sc; failures are logged (the caller's deadline
 * covers a lost answer). */
static void server_send(struct rpc_server *s, struct sconn *sc, struct rpc_response *resp)
{
	int rc;

	resp->node.ptr = s->node;
	resp->node.len = (uint32_t)strlen(s->node);
	resp->node_version.ptr = s->version;
	resp->node_version.len = (uint32_t)strlen(s->version);
	s->out.len = 0;
	rc = rpc_response_encode(&s->out, resp);
	if (rc == -EMSGSIZE && resp->ok) {
		static const char msg[] = "the method's result exceeds the RPC body bound";

		resp->ok = false;
		resp->error = RPC_E_REMOTE_ERROR;
		resp->message.ptr = msg;
		resp->message.len = sizeof(msg) - 1;
		rc = rpc_response_encode(&s->out, resp);
	}
	if (rc == 0)
		rc = transport_stream_send(sc->st, s->out.data, s->out.len);
	if (rc < 0)
		LOG_RATELIMITED(LOG_WARNING, "rpc", "cannot answer call %llu from %s (%s): %s",
				(unsigned long long)resp->id, transport_stream_sender(sc->st),
				transport_stream_peer(sc->st), strerror(-rc));
}

static void server_send_error(struct rpc_server *s, struct sconn *sc, uint64_t id,
			      enum rpc_error e, uint32_t retry_after_ms, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

static void server_send_error(struct rpc_server *s, struct sconn *sc, uint64_t id,
			      enum rpc_error e, uint32_t retry_after_ms, const char *fmt, ...)
{
	struct rpc_response resp = { .id = id, .ok = false, .error = e };
	char raw[RPC_MESSAGE_MAX + 1], msg[RPC_MESSAGE_MAX];
	va_list ap;

	va_start(ap, fmt);
	if (vsnprintf(raw, sizeof(raw), fmt, ap) < 0)
		raw[0] = '\0';
	va_end(ap);
	resp.message.ptr = msg;
	resp.message.len = (uint32_t)rpc_message_clean(msg, sizeof(msg), raw, strlen(raw));
	resp.retry_after_ms = retry_after_ms;
	server_send(s, sc, &resp);
}

/* The method runner's answer to @ctx (a job). */
static void job_reply(void *ctx, const struct rpc_serve_reply *r)
{
	struct job *j = ctx;
	struct rpc_server *s = j->s;
	struct rpc_response resp = { .id = j->id };
	char msg[RPC_MESSAGE_MAX];
	const char *outcome;

	if (j->finished) {
		LOG_RATELIMITED(LOG_ERROR, "rpc", "method %s answered call %llu twice or after "
				"cancel: ignored", j->method, (unsigned long long)j->id);
		return;
	}
	if (r->error == RPC_E_NONE) {
		resp.ok = true;
		resp.result.ptr = (const char *)r->result;
		resp.result.len = (uint32_t)(r->result_len > RPC_BODY_MAX ? RPC_BODY_MAX + 1 :
					     r->result_len);
		outcome = "ok";
	} else {
		resp.error = r->error;
		resp.code.ptr = rpc_error_name(r->error);
		resp.code.len = (uint32_t)strlen(resp.code.ptr);
		if (r->message)
			resp.message.len = (uint32_t)rpc_message_clean(msg, sizeof(msg), r->message,
								       strlen(r->message));
		resp.message.ptr = msg;
		resp.retry_after_ms = r->retry_after_ms;
		outcome = rpc_error_name(r->error);
	}
	if (j->conn != NULL && !s->closing)
		server_send(s, j->conn, &resp);
	rpc_metrics_observe(s->metrics, RPC_SIDE_SERVER, j->method, outcome, since(j->start_ns));
	job_finish(j);
}

static void job_deadline(uv_timer_t *h)
{
	struct job *j = h->data;
	struct rpc_server *s = j->s;
	struct sconn *sc = j->conn;

	if (j->finished)
		return;
	if (j->job != NULL)
		s->ops.cancel(s->ops.ctx, j->job);
	if (sc != NULL)
		server_send_error(s, sc, j->id, RPC_E_TIMEOUT, 0,
				  "method %s did not answer within %u ms on node %s", j->method,
				  j->deadline_ms, s->node);
	rpc_metrics_observe(s->metrics, RPC_SIDE_SERVER, j->method, "timeout", since(j->start_ns));
	job_finish(j);
}

/* Stops @j for a reason other than its deadline (cancel frame, connection
 * lost, shutdown): nobody is waiting for an answer. */
static void job_cancel(struct job *j, const char *outcome)
{
	struct rpc_server *s = j->s;

	if (j->finished)
		return;
	if (j->job != NULL)
		s->ops.cancel(s->ops.ctx, j->job);
	rpc_metrics_observe(s->metrics, RPC_SIDE_SERVER, j->method, outcome, since(j->start_ns));
	job_finish(j);
}

static void server_conn_free(struct rpc_server *s, struct sconn *sc);

static void server_request(struct rpc_server *s, struct sconn *sc, const struct rpc_request *rq)
{
	char origin_node[RPC_NODE_MAX + 1], origin_region[RPC_REGION_MAX + 1];
	char method[RPC_METHOD_MAX + 1];
	struct rpc_serve_call call;
	struct job *j;
	int rc;

	bytes_str(method, sizeof(method), rq->method);
	if (s->leaving) {
		server_send_error(s, sc, rq->id, RPC_E_UNAVAILABLE, s->leaving_retry_ms,
				  "node %s is leaving the cluster", s->node);
		rpc_metrics_observe(s->metrics, RPC_SIDE_SERVER, method, "unavailable", 0);
		return;
	}
	if (s->inflight >= s->max_inflight) {
		server_send_error(s, sc, rq->id, RPC_E_OVERLOADED, s->overload_retry_ms,
				  "node %s is running %zu calls, its bound", s->node, s->inflight);
		rpc_metrics_observe(s->metrics, RPC_SIDE_SERVER, method, "overloaded", 0);
		return;
	}
	j = calloc(1, sizeof(*j));
	if (j == NULL) {
		server_send_error(s, sc, rq->id, RPC_E_OVERLOADED, s->overload_retry_ms,
				  "node %s is out of memory", s->node);
		return;
	}
	j->s = s;
	j->conn = sc;
	j->id = rq->id;
	j->deadline_ms = rq->deadline_ms;
	j->start_ns = uv_hrtime();
	memcpy(j->method, method, sizeof(j->method));
	j->timer.data = j;
	uv_timer_init(s->loop, &j->timer);
	s->handles++;
	j->next = sc->jobs;
	if (sc->jobs)
		sc->jobs->prev = j;
	sc->jobs = j;
	sc->njobs++;
	s->inflight++;

	call.method = j->method;
	call.args = (const uint8_t *)rq->args.ptr;
	call.args_len = rq->args.len;
	call.deadline_ms = rq->deadline_ms;
	call.origin_node = bytes_str(origin_node, sizeof(origin_node), rq->origin_node);
	call.origin_region = bytes_str(origin_region, sizeof(origin_region), rq->origin_region);
	j->starting = true;
	rc = s->ops.start(s->ops.ctx, &call, job_reply, j, &j->job);
	j->starting = false;
	/* A synchronous answer (or a failure to start, answered) finished it;
	 * its memory lives until the timer's close callback. */
	if (j->finished)
		return;
	if (rc < 0) {
		LOG_RATELIMITED(LOG_ERROR, "rpc", "method %s failed to start (%s) without "
				"answering", j->method, strerror(-rc));
		j->job = NULL;
		server_send_error(s, sc, j->id, RPC_E_REMOTE_ERROR, 0,
				  "method %s could not start on node %s", j->method, s->node);
		job_finish(j);
		return;
	}
	uv_timer_start(&j->timer, job_deadline, j->deadline_ms, 0);
}

static void server_frame(void *ctx, struct transport_stream *st, const uint8_t *plain,
			 size_t len)
{
	struct rpc_server *s = ctx;
	struct sconn *sc = transport_stream_data(st);
	struct rpc_frame f;
	char err[ERRLEN];
	int rc;

	if (sc == NULL || s->closing)
		return;
	sc->last_ms = uv_now(s->loop);
	rc = rpc_frame_decode(plain, len, &f, err, sizeof(err));
	if (rc == -EPROTONOSUPPORT) {
		LOG_RATELIMITED(LOG_WARNING, "rpc", "%s (%s) speaks RPC protocol v%u: %s",
				transport_stream_sender(st), transport_stream_peer(st), f.version,
				err);
		if (f.type != RPC_T_RESPONSE && f.type != RPC_T_CANCEL)
			server_send_error(s, sc, f.have_id ? f.id : 0, RPC_E_VERSION_MISMATCH, 0,
					  "node %s speaks RPC protocol v%d..v%d, the request "
					  "used v%u", s->node, RPC_PROTO_MIN, RPC_PROTO_VERSION,
					  f.version);
		rpc_metrics_observe(s->metrics, RPC_SIDE_SERVER, "", "version_mismatch", 0);
		return;
	}
	if (rc < 0) {
		LOG_RATELIMITED(LOG_WARNING, "rpc", "malformed RPC frame from %s (%s): %s",
				transport_stream_sender(st), transport_stream_peer(st),
				rc == -EBADMSG ? err : strerror(-rc));
		rpc_metrics_observe(s->metrics, RPC_SIDE_SERVER, "", "bad_request", 0);
		if (++sc->bad > BAD_FRAMES_MAX) {
			LOG_RATELIMITED(LOG_WARNING, "rpc", "closing RPC connection from %s: %d "
					"malformed frames", transport_stream_peer(st),
					BAD_FRAMES_MAX);
			transport_stream_set_data(st, NULL);
			transport_stream_close(st);
			server_conn_free(s, sc);
			return;
		}
		if (f.type != RPC_T_RESPONSE && f.type != RPC_T_CANCEL)
			server_send_error(s, sc, f.have_id ? f.id : 0,
					  rc == -EBADMSG ? RPC_E_BAD_REQUEST : RPC_E_OVERLOADED,
					  0, "%s", rc == -EBADMSG ? err : "out of memory");
		return;
	}
	switch (f.type) {
	case RPC_T_REQUEST:
		server_request(s, sc, &f.u.req);
		break;
	case RPC_T_CANCEL:
		for (struct job *j = sc->jobs; j; j = j->next)
			if (j->id == f.id) {
				job_cancel(j, "cancelled");
				break;
			}
		break;
	default:
		LOG_RATELIMITED(LOG_WARNING, "rpc", "unexpected %s from %s on an inbound RPC "
				"connection: ignored", rpc_type_name(f.type),
				transport_stream_peer(st));
		break;
	}
}

static int server_open(void *ctx, struct transport_stream *st)
{
	struct rpc_server *s = ctx;
	struct sconn *sc;

	if (s->closing)
		return -ESHUTDOWN;
	sc = calloc(1, sizeof(*sc));
	if (sc == NULL)
		return -ENOMEM;
	sc->s = s;
	sc->st = st;
	sc->last_ms = uv_now(s->loop);
	sc->next = s->conns;
	if (s->conns)
		s->conns->prev = sc;
	s->conns = sc;
	transport_stream_set_data(st, sc);
	return 0;
}

static void server_conn_free(struct rpc_server *s, struct sconn *sc)
{
	while (sc->jobs)
		job_cancel(sc->jobs, "connection_lost");
	if (sc->prev)
		sc->prev->next = sc->next;
	else
		s->conns = sc->next;
	if (sc->next)
		sc->next->prev = sc->prev;
	free(sc);
}

static void server_close_cb(void *ctx, struct transport_stream *st, int err)
{
	struct rpc_server *s = ctx;
	struct sconn *sc = transport_stream_data(st);

	if (sc == NULL)
		return;
	transport_stream_set_data(st, NULL);
	if (sc->njobs)
		LOG(LOG_INFO, "rpc", "connection from %s (%s) lost (%s): cancelling %u calls",
		    transport_stream_sender(st), transport_stream_peer(st), uv_strerror(err),
		    sc->njobs);
	server_conn_free(s, sc);
}

static void server_sweep(uv_timer_t *h)
{
	struct rpc_server *s = h->data;
	uint64_t now = uv_now(s->loop);
	struct sconn *sc, *next;

	for (sc = s->conns; sc; sc = next) {
		next = sc->next;
		if (sc->njobs == 0 && now - sc->last_ms >= s->idle_ms) {
			transport_stream_set_data(sc->st, NULL);
			transport_stream_close(sc->st);
			server_conn_free(s, sc);
		}
	}
}

int rpc_server_new(uv_loop_t *loop, struct transport *t, const struct rpc_server_config *cfg,
		   const struct rpc_serve_ops *ops, struct rpc_metrics *m,
		   struct rpc_server **out)
{
	const char *version = cfg->version && *cfg->version ? cfg->version : "unknown";
	struct rpc_server *s;
	uint32_t sweep;
	int rc;

	*out = NULL;
	if (!rpc_node_valid(cfg->node, RPC_NODE_MAX) ||
	    !rpc_node_valid(version, RPC_NODE_VERSION_MAX) ||
	    ops == NULL || ops->start == NULL || ops->cancel == NULL)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	s->loop = loop;
	s->t = t;
	s->ops = *ops;
	s->metrics = m;
	snprintf(s->node, sizeof(s->node), "%s", cfg->node);
	snprintf(s->version, sizeof(s->version), "%s", version);
	s->max_inflight = cfg->max_inflight ? cfg->max_inflight : 1024;
	s->overload_retry_ms = cfg->overload_retry_ms ? cfg->overload_retry_ms : 100;
	s->idle_ms = cfg->idle_ms ? cfg->idle_ms : 120000;
	s->sops.on_open = server_open;
	s->sops.on_frame = server_frame;
	s->sops.on_close = server_close_cb;
	rc = transport_set_stream_handler(t, RPC_FRAME_KIND, &s->sops, s);
	if (rc < 0) {
		free(s);
		return rc;
	}
	s->sweep.data = s;
	s->drain.data = s;
	uv_timer_init(loop, &s->sweep);
	uv_timer_init(loop, &s->drain);
	s->handles = 2;
	sweep = s->idle_ms / 4 > 50 ? s->idle_ms / 4 : 50;
	uv_timer_start(&s->sweep, server_sweep, sweep, sweep);
	uv_unref((uv_handle_t *)&s->sweep);
	*out = s;
	return 0;
}

void rpc_server_set_leaving(struct rpc_server *s, bool leaving, uint32_t retry_after_ms)
{
	s->leaving = leaving;
	s->leaving_retry_ms = retry_after_ms;
}

size_t rpc_server_inflight(const struct rpc_server *s)
{
	return s->inflight;
}

void rpc_server_drain(struct rpc_server *s, uint64_t timeout_ms,
		      void (*cb)(void *ctx, size_t remaining), void *ctx)
{
	if (s->closing)
		return;
	s->drain_cb = cb;
	s->drain_ctx = ctx;
	uv_timer_start(&s->drain, drain_fired, s->inflight == 0 ? 0 : timeout_ms, 0);
}

void rpc_server_close(struct rpc_server *s)
{
	if (s == NULL || s->closing)
		return;
	s->drain_cb = NULL;
	transport_set_stream_handler(s->t, RPC_FRAME_KIND, NULL, NULL);
	while (s->conns) {
		struct sconn *sc = s->conns;

		transport_stream_set_data(sc->st, NULL);
		transport_stream_close(sc->st);
		server_conn_free(s, sc);
	}
	s->closing = true;
	uv_close((uv_handle_t *)&s->sweep, server_handle_closed);
	uv_close((uv_handle_t *)&s->drain, server_handle_closed);
}

/* ------------------------------------------------------------------ */
/* Client                                                              */
/* ------------------------------------------------------------------ */

struct peer {
	bool used;
	bool connected;
	char name[RPC_NODE_MAX + 1];
	char addr[GOSSIP_ADDR_MAX + 1];
	struct transport_stream *st;
	uint32_t calls;
	uint64_t last_ms;
};

struct call {
	uv_timer_t timer;            /* the caller's deadline */
	struct rpc_client *c;
	bool used;
	bool sent;                   /* written on a connected stream */
	uint64_t id;
	struct peer *peer;
	rpc_call_fn cb;
	void *ctx;
	uint64_t start_ns;
	uint64_t deadline_at;        /* uv_now() ms */
	uint32_t deadline_ms;
	uint8_t *args;               /* copy while waiting for the connect */
	size_t args_len;
	struct call *next;           /* free list; failure batches */
	char method[RPC_METHOD_MAX + 1];
	char node[RPC_NODE_MAX + 1]; /* the peer's name, for results */
};

struct rpc_client {
	uv_loop_t *loop;
	struct transport *t;
	struct rpc_metrics *metrics;
	struct transport_stream_ops sops;
	char node[RPC_NODE_MAX + 1];
	char region[RPC_REGION_MAX + 1];
	uint32_t max_inflight, max_peers, idle_ms;
	bool closing;
	int handles;
	uv_timer_t sweep;
	struct peer *peers;
	struct call *calls;          /* max_inflight slots */
	struct call *free_calls;
	size_t inflight;
	uint64_t seq;
	struct rpc_buf out;
};

static void client_maybe_free(struct rpc_client *c)
{
	if (c->closing && c->handles == 0) {
		rpc_buf_free(&c->out);
		free(c->peers);
		free(c->calls);
		free(c);
	}
}

static void client_handle_closed(uv_handle_t *h)
{
	struct rpc_client *c = h->data;

	c->handles--;
	client_maybe_free(c);
}

static void call_handle_closed(uv_handle_t *h)
{
	struct call *k = h->data;
	struct rpc_client *c = k->c;

	c->handles--;
	client_maybe_free(c);
}

const char *rpc_result_outcome(const struct rpc_result *r)
{
	switch (r->status) {
	case RPC_OK:
		return "ok";
	case RPC_NOT_SENT:
		return "not_sent";
	case RPC_CONN_LOST:
		return "connection_lost";
	default:
		return rpc_error_name(r->error);
	}
}

/* Ends @k with @r: frees its slot first (the callback may call again),
 * then tells the caller. */
static void call_finish(struct call *k, struct rpc_result *r)
{
	struct rpc_client *c = k->c;
	rpc_call_fn cb = k->cb;
	void *ctx = k->ctx;

	uv_timer_stop(&k->timer);
	r->seconds = since(k->start_ns);
	if (r->node == NULL)
		r->node = k->node;
	if (r->node_version == NULL)
		r->node_version = "";
	if (r->message == NULL)
		r->message = "";
	if (r->code == NULL)
		r->code = rpc_result_outcome(r);
	rpc_metrics_observe(c->metrics, RPC_SIDE_CLIENT, k->method, rpc_result_outcome(r),
			    r->seconds);
	if (k->peer) {
		k->peer->calls--;
		k->peer->last_ms = uv_now(c->loop);
	}
	free(k->args);
	k->args = NULL;
	k->peer = NULL;
	k->used = false;
	k->id = 0;
	k->next = c->free_calls;
	c->free_calls = k;
	c->inflight--;
	cb(ctx, r);
}

static void call_fail(struct call *k, enum rpc_status st, enum rpc_error e, int err,
		      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void call_fail(struct call *k, enum rpc_status st, enum rpc_error e, int err,
		      const char *fmt, ...)
{
	struct rpc_result r = { .status = st, .error = e, .sent = k->sent, .err = err };
	char msg[RPC_MESSAGE_MAX + 1];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	r.message = msg;
	call_finish(k, &r);
}

static struct call *call_by_id(struct rpc_client *c, uint64_t id)
{
	uint64_t slot = (id & SLOT_MASK);
	struct call *k;

	if (slot == 0 || slot > c->max_inflight)
		return NULL;
	k = &c->calls[slot - 1];
	return k->used && k->id == id ? k : NULL;
}

/* Writes @k's request on its (connected) peer's stream. */
static int call_write(struct rpc_client *c, struct call *k, const uint8_t *args, size_t args_len)
{
	uint64_t now = uv_now(c->loop);
	struct rpc_request rq = {
		.id = k->id,
		.method = { k->method, (uint32_t)strlen(k->method) },
		.args = { (const char *)args, (uint32_t)args_len },
		.deadline_ms = k->deadline_at > now ? (uint32_t)(k->deadline_at - now) : 1,
		.origin_node = { c->node, (uint32_t)strlen(c->node) },
		.origin_region = { c->region, (uint32_t)strlen(c->region) },
	};
	int rc;

	c->out.len = 0;
	rc = rpc_request_encode(&c->out, &rq);
	if (rc == 0)
		rc = transport_stream_send(k->peer->st, c->out.data, c->out.len);
	if (rc == 0) {
		k->sent = true;
		k->peer->last_ms = now;
	}
	return rc;
}

static void call_deadline(uv_timer_t *h)
{
	struct call *k = h->data;
	struct rpc_client *c = k->c;

	if (!k->used)
		return;
	if (k->sent && k->peer && k->peer->st) {
		c->out.len = 0;
		if (rpc_cancel_encode(&c->out, k->id) == 0)
			transport_stream_send(k->peer->st, c->out.data, c->out.len);
	}
	call_fail(k, RPC_FAILED, RPC_E_TIMEOUT, 0, "%s on node %s did not answer within %u ms%s",
		  k->method, k->node, k->deadline_ms,
		  k->sent ? "" : " (still connecting: not sent)");
}

/* Fails every call on @p, which is gone (@err), and frees @p.  The
 * calls are gathered first: a callback may start calls, even to @p's
 * address, which then take fresh slots and a fresh peer. */
static void peer_lost(struct rpc_client *c, struct peer *p, int err)
{
	char name[RPC_NODE_MAX + 1], addr[GOSSIP_ADDR_MAX + 1];
	struct call *batch = NULL;

	snprintf(name, sizeof(name), "%s", p->name);
	snprintf(addr, sizeof(addr), "%s", p->addr);
	for (uint32_t i = 0; i < c->max_inflight; i++) {
		struct call *k = &c->calls[i];

		if (k->used && k->peer == p) {
			k->peer = NULL;
			k->next = batch;
			batch = k;
		}
	}
	p->used = false;
	p->connected = false;
	p->st = NULL;
	p->calls = 0;
	while (batch) {
		struct call *k = batch;

		batch = k->next;
		if (k->sent)
			call_fail(k, RPC_CONN_LOST, RPC_E_NONE, err,
				  "connection to %s (%s) lost during %s: %s; the call may have "
				  "run", name, addr, k->method, uv_strerror(err));
		else
			call_fail(k, RPC_NOT_SENT, RPC_E_NONE, err,
				  "cannot reach %s (%s): %s; %s was not sent", name, addr,
				  uv_strerror(err), k->method);
	}
}

static int client_open(void *ctx, struct transport_stream *st)
{
	struct rpc_client *c = ctx;
	struct peer *p = transport_stream_data(st);

	if (p == NULL)
		return 0;
	p->connected = true;
	p->last_ms = uv_now(c->loop);
	/* Write every call that waited for the connect. */
	for (uint32_t i = 0; i < c->max_inflight; i++) {
		struct call *k = &c->calls[i];
		int rc;

		if (!k->used || k->peer != p || k->sent)
			continue;
		rc = call_write(c, k, k->args, k->args_len);
		free(k->args);
		k->args = NULL;
		if (rc < 0)
			call_fail(k, rc == -ENOBUFS ? RPC_FAILED : RPC_NOT_SENT,
				  rc == -ENOBUFS ? RPC_E_OVERLOADED : RPC_E_NONE, rc,
				  "cannot send %s to %s: %s", k->method, p->name, strerror(-rc));
	}
	return 0;
}

static void client_response(struct rpc_client *c, struct peer *p, const struct rpc_frame *f)
{
	const struct rpc_response *rs = &f->u.resp;
	struct call *k = call_by_id(c, rs->id);
	char node[RPC_NODE_MAX + 1], nv[RPC_NODE_VERSION_MAX + 1];
	char code[RPC_CODE_MAX + 1], msg[RPC_MESSAGE_MAX + 1];
	struct rpc_result r = { .sent = true };

	if (k == NULL || k->peer != p) {
		LOG(LOG_DEBUG, "rpc", "answer %llu from %s matches no call (late or unknown)",
		    (unsigned long long)rs->id, p->name);
		return;
	}
	r.node = rs->node.len ? bytes_str(node, sizeof(node), rs->node) : NULL;
	r.node_version = bytes_str(nv, sizeof(nv), rs->node_version);
	if (rs->ok) {
		r.status = RPC_OK;
		r.result = (const uint8_t *)rs->result.ptr;
		r.result_len = rs->result.len;
	} else {
		r.status = RPC_FAILED;
		r.error = rs->error;
		r.code = bytes_str(code, sizeof(code), rs->code);
		r.message = bytes_str(msg, sizeof(msg), rs->message);
		r.retry_after_ms = rs->retry_after_ms;
	}
	call_finish(k, &r);
}

static void client_frame(void *ctx, struct transport_stream *st, const uint8_t *plain,
			 size_t len)
{
	struct rpc_client *c = ctx;
	struct peer *p = transport_stream_data(st);
	struct rpc_frame f;
	char err[ERRLEN];
	struct call *k;
	int rc;

	if (p == NULL)
		return;
	if (strcmp(transport_stream_sender(st), p->name) != 0) {
		LOG_RATELIMITED(LOG_WARNING, "rpc", "%s answers as \"%s\", not \"%s\": closing",
				p->addr, transport_stream_sender(st), p->name);
		transport_stream_set_data(st, NULL);
		transport_stream_close(st);
		peer_lost(c, p, UV_EPROTO);
		return;
	}
	rc = rpc_frame_decode(plain, len, &f, err, sizeof(err));
	if (rc == 0 && f.type == RPC_T_RESPONSE) {
		client_response(c, p, &f);
		return;
	}
	k = f.have_id ? call_by_id(c, f.id) : NULL;
	if (k != NULL && k->peer != p)
		k = NULL;
	if (rc == -EPROTONOSUPPORT && k != NULL) {
		call_fail(k, RPC_FAILED, RPC_E_VERSION_MISMATCH, 0,
			  "node %s answered %s in RPC protocol v%u; this node speaks v%d..v%d",
			  p->name, k->method, f.version, RPC_PROTO_MIN, RPC_PROTO_VERSION);
		return;
	}
	if (rc < 0 && k != NULL) {
		struct rpc_result r = { .status = RPC_FAILED, .error = RPC_E_OTHER,
					.sent = true, .code = "bad_response" };
		char msg[RPC_MESSAGE_MAX];

		snprintf(msg, sizeof(msg), "node %s sent a malformed answer to %s: %s", p->name,
			 k->method, err);
		r.message = msg;
		call_finish(k, &r);
		return;
	}
	LOG_RATELIMITED(LOG_WARNING, "rpc", "unexpected %s from %s (%s): %s",
			rpc_type_name(f.type), p->name, p->addr,
			rc < 0 ? err : "not a response");
}

static void client_close_cb(void *ctx, struct transport_stream *st, int err)
{
	struct rpc_client *c = ctx;
	struct peer *p = transport_stream_data(st);

	if (p == NULL)
		return;
	transport_stream_set_data(st, NULL);
	peer_lost(c, p, err);
}

static void peer_close(struct rpc_client *c, struct peer *p)
{
	transport_stream_set_data(p->st, NULL);
	transport_stream_close(p->st);
	p->st = NULL;
	p->used = false;
	(void)c;
}

/* The peer entry for @name at @addr: found, or new (connecting). */
static int peer_get(struct rpc_client *c, const char *name, const char *addr, struct peer **out)
{
	struct peer *free_p = NULL, *idle = NULL;
	int rc;

	for (uint32_t i = 0; i < c->max_peers; i++) {
		struct peer *p = &c->peers[i];

		if (!p->used) {
			if (free_p == NULL)
				free_p = p;
			continue;
		}
		if (strcmp(p->addr, addr) == 0 && strcmp(p->name, name) == 0) {
			*out = p;
			return 0;
		}
		if (p->calls == 0 && (idle == NULL || p->last_ms < idle->last_ms))
			idle = p;
	}
	if (free_p == NULL) {
		if (idle == NULL)
			return -EBUSY;
		peer_close(c, idle);
		free_p = idle;
	}
	memset(free_p, 0, sizeof(*free_p));
	snprintf(free_p->name, sizeof(free_p->name), "%s", name);
	snprintf(free_p->addr, sizeof(free_p->addr), "%s", addr);
	rc = transport_stream_open(c->t, addr, &c->sops, c, &free_p->st);
	if (rc < 0)
		return rc;
	free_p->used = true;
	free_p->last_ms = uv_now(c->loop);
	transport_stream_set_data(free_p->st, free_p);
	*out = free_p;
	return 0;
}

int rpc_client_call(struct rpc_client *c, const char *peer_name, const char *peer_addr,
		    const char *method, const uint8_t *args, size_t args_len,
		    uint32_t deadline_ms, rpc_call_fn cb, void *ctx)
{
	struct peer *p;
	struct call *k;
	int rc;

	if (c->closing)
		return -ESHUTDOWN;
	if (method == NULL || !rpc_method_valid(method, strlen(method)) ||
	    !rpc_node_valid(peer_name, RPC_NODE_MAX) || peer_addr == NULL ||
	    strlen(peer_addr) > GOSSIP_ADDR_MAX || deadline_ms == 0 ||
	    deadline_ms > RPC_DEADLINE_MAX_MS || cb == NULL || (args == NULL && args_len))
		return -EINVAL;
	if (args_len > RPC_BODY_MAX)
		return -EMSGSIZE;
	if (c->free_calls == NULL) {
		rpc_metrics_observe(c->metrics, RPC_SIDE_CLIENT, method, "overloaded", 0);
		return -EBUSY;
	}
	rc = peer_get(c, peer_name, peer_addr, &p);
	if (rc < 0) {
		if (rc == -EBUSY)
			rpc_metrics_observe(c->metrics, RPC_SIDE_CLIENT, method, "overloaded", 0);
		return rc;
	}
	k = c->free_calls;
	c->free_calls = k->next;
	k->used = true;
	k->sent = false;
	k->peer = p;
	k->cb = cb;
	k->ctx = ctx;
	k->start_ns = uv_hrtime();
	k->deadline_ms = deadline_ms;
	k->deadline_at = uv_now(c->loop) + deadline_ms;
	k->id = (++c->seq << SLOT_BITS) | (uint64_t)(k - c->calls + 1);
	snprintf(k->method, sizeof(k->method), "%s", method);
	snprintf(k->node, sizeof(k->node), "%s", peer_name);
	p->calls++;
	c->inflight++;
	if (p->connected) {
		rc = call_write(c, k, args, args_len);
	} else if (args_len) {
		k->args = malloc(args_len);
		rc = k->args ? 0 : -ENOMEM;
		if (rc == 0)
			memcpy(k->args, args, args_len);
	}
	k->args_len = args_len;
	if (rc < 0) {
		/* Nothing written: undo quietly, the caller hears the code. */
		free(k->args);
		k->args = NULL;
		k->used = false;
		k->peer = NULL;
		p->calls--;
		c->inflight--;
		k->next = c->free_calls;
		c->free_calls = k;
		if (rc == -ENOBUFS) {
			rpc_metrics_observe(c->metrics, RPC_SIDE_CLIENT, method, "overloaded", 0);
			return -EBUSY;
		}
		return rc;
	}
	uv_timer_start(&k->timer, call_deadline, deadline_ms, 0);
	return 0;
}

static void client_sweep(uv_timer_t *h)
{
	struct rpc_client *c = h->data;
	uint64_t now = uv_now(c->loop);

	for (uint32_t i = 0; i < c->max_peers; i++) {
		struct peer *p = &c->peers[i];

		if (p->used && p->calls == 0 && now - p->last_ms >= c->idle_ms)
			peer_close(c, p);
	}
}

int rpc_client_new(uv_loop_t *loop, struct transport *t, const struct rpc_client_config *cfg,
		   struct rpc_metrics *m, struct rpc_client **out)
{
	struct rpc_client *c;
	uint32_t sweep;

	*out = NULL;
	if (!rpc_node_valid(cfg->node, RPC_NODE_MAX) || !region_name_valid(cfg->region) ||
	    cfg->max_inflight > SLOT_MASK - 1)
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	c->loop = loop;
	c->t = t;
	c->metrics = m;
	snprintf(c->node, sizeof(c->node), "%s", cfg->node);
	snprintf(c->region, sizeof(c->region), "%s", cfg->region);
	c->max_inflight = cfg->max_inflight ? cfg->max_inflight : 1024;
	c->max_peers = cfg->max_peers ? cfg->max_peers : 64;
	c->idle_ms = cfg->idle_ms ? cfg->idle_ms : 60000;
	c->peers = calloc(c->max_peers, sizeof(*c->peers));
	c->calls = calloc(c->max_inflight, sizeof(*c->calls));
	if (c->peers == NULL || c->calls == NULL) {
		free(c->peers);
		free(c->calls);
		free(c);
		return -ENOMEM;
	}
	c->sops.on_open = client_open;
	c->sops.on_frame = client_frame;
	c->sops.on_close = client_close_cb;
	for (uint32_t i = c->max_inflight; i-- > 0;) {
		struct call *k = &c->calls[i];

		k->c = c;
		k->timer.data = k;
		uv_timer_init(loop, &k->timer);
		k->next = c->free_calls;
		c->free_calls = k;
	}
	c->sweep.data = c;
	uv_timer_init(loop, &c->sweep);
	c->handles = 1 + (int)c->max_inflight;
	sweep = c->idle_ms / 4 > 50 ? c->idle_ms / 4 : 50;
	uv_timer_start(&c->sweep, client_sweep, sweep, sweep);
	uv_unref((uv_handle_t *)&c->sweep);
	*out = c;
	return 0;
}

size_t rpc_client_inflight(const struct rpc_client *c)
{
	return c->inflight;
}

size_t rpc_client_connections(const struct rpc_client *c)
{
	size_t n = 0;

	for (uint32_t i = 0; i < c->max_peers; i++)
		n += c->peers[i].used;
	return n;
}

void rpc_client_close(struct rpc_client *c)
{
	if (c == NULL || c->closing)
		return;
	c->closing = true;
	for (uint32_t i = 0; i < c->max_peers; i++) {
		struct peer *p = &c->peers[i];

		if (!p->used)
			continue;
		transport_stream_set_data(p->st, NULL);
		transport_stream_close(p->st);
		peer_lost(c, p, UV_ECANCELED);
	}
	for (uint32_t i = 0; i < c->max_inflight; i++)
		uv_close((uv_handle_t *)&c->calls[i].timer, call_handle_closed);
	uv_close((uv_handle_t *)&c->sweep, client_handle_closed);
}
