/*
 * region/handlers.c - the built-ins, exec handlers and the upstream behind
 * the region RPC server (see region/handlers.h for what each answers).
 *
 * Everything runs on the agent's libuv loop.  A call that cannot answer at
 * once becomes a job: a child process and its three pipes, or a TCP
 * connection to the upstream, plus one timer for the deadline.  A job
 * answers exactly once (or is cancelled), and then lives on until libuv has
 * closed every handle it opened; the handlers object itself is freed after
 * its last job, so rpc_handlers_close() never leaves a handle behind.
 *
 * Children run in a session of their own (UV_PROCESS_DETACHED), so a
 * signal reaches the whole process group: `/bin/sh -c 'a | b'` is one
 * unit, killed together at the deadline.  A process handle is closed only
 * after its exit callback, since libuv reaps only the children whose
 * handles are open: closing earlier would leave a zombie.
 *
 * Why no stdout drain period after the shell exits: whatever is left of the
 * process group is SIGKILLed then, so the pipes reach EOF promptly and the
 * result is what the handler had written by the time it exited.
 *
 * HTTP responses from the upstream are parsed by http-parser; requests are
 * written by hand (one POST, Connection: close, so no keep-alive state).
 */
#include <errno.h>
#include <http_parser.h>
#include <jansson.h>
#include <msgpack.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/addr.h"
#include "lib/bytebuf.h"
#include "lib/log.h"
#include "lib/mpscan.h"
#include "region/handlers.h"

extern char **environ;

#define SCRATCH_SIZE (64 * 1024)
#define UPSTREAM_STATUS_BODY 200     /* body bytes quoted with a bad status */

struct exec_handler {
	char name[RPC_METHOD_MAX + 1];
	char *command;
};

struct upstream {
	struct sockaddr_storage addr;
	char host[RPC_UPSTREAM_URL_MAX];  /* for the Host header */
	char path[RPC_UPSTREAM_URL_MAX];
};

enum job_kind { JOB_EXEC, JOB_UPSTREAM };

/* A growable byte buffer bounded by its owner. */
struct obuf {
	char *data;
	size_t len;
	size_t cap;
};

struct job {
	struct rpc_handlers *h;
	struct job *prev, *next;
	enum job_kind kind;
	rpc_reply_fn reply;
	void *reply_ctx;
	bool answered;               /* replied, or cancelled */
	int open;                    /* handles not closed yet */
	char method[RPC_METHOD_MAX + 1];
	uint32_t deadline_ms;
	uv_timer_t timer;
	bool timer_open;
	struct obuf out;             /* stdout, or the upstream's body */
	char *send;                  /* stdin text, or the HTTP request */
	size_t send_len;
	uv_write_t wr;

	/* exec */
	const struct exec_handler *handler;
	uv_process_t proc;
	bool proc_open, exited, killing;
	int pid;
	int64_t exit_status;
	int term_signal;
	uv_pipe_t in, outp, errp;
	bool in_open, out_open, err_open, out_eof, err_eof;
	char errtail[RPC_HANDLERS_STDERR_TAIL];
	size_t errtail_len;

	/* upstream */
	uv_tcp_t tcp;
	bool tcp_open;
	uv_connect_t conn;
	http_parser parser;
	bool complete, too_big;
};

struct rpc_handlers {
	uv_loop_t *loop;
	char node[RPC_NODE_MAX + 1];
	char region[RPC_REGION_MAX + 1];
	char primary[RPC_REGION_MAX + 1];
	char version[RPC_NODE_VERSION_MAX + 1];
	struct exec_handler *execs;
	size_t nexecs;
	bool have_upstream;
	struct upstream up;
	unsigned max_jobs;
	size_t output_max;
	struct job *jobs;
	unsigned njobs;
	bool closing;
	struct rpc_handlers_stats stats;
	char scratch[SCRATCH_SIZE];  /* read buffer: libuv reads one handle at a time */
};

static const char *const builtin_names[] = { "ping", "info", "echo" };

static void set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------------------ */
/* Arguments: msgpack <-> JSON                                         */
/* ------------------------------------------------------------------ */

/*
 * Walks the msgpack in @buf without building anything (lib/mpscan.h), so
 * that msgpack-c's unpacker is only ever given input whose declared
 * container sizes are backed by bytes (a 5-byte header claiming 2^32
 * elements would otherwise make it try to allocate for them) and whose
 * nesting object_to_json() accepts.  0, or -EINVAL with @err set.
 */
static int msgpack_prescan(const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	static const struct mpscan_limits lim = { .depth_max = RPC_ARGS_DEPTH_MAX };
	struct mpscan_fail f;
	int r = mpscan_check(buf, len, &lim, &f);

	if (r == 0)
		return 0;
	switch (f.why) {
	case MPSCAN_BAD_BYTE:
		set_err(err, errlen, "args hold the invalid msgpack byte 0x%02x", f.byte);
		break;
	case MPSCAN_TOO_DEEP:
		set_err(err, errlen, "args are nested deeper than %d", RPC_ARGS_DEPTH_MAX);
		break;
	case MPSCAN_TRAILING:
		set_err(err, errlen, "args have %zu trailing bytes", f.trailing);
		break;
	default:
		set_err(err, errlen, "args are truncated");
		break;
	}
	return -EINVAL;
}

static json_t *object_to_json(const msgpack_object *o, int depth, char *err, size_t errlen)
{
	json_t *j = NULL;

	if (depth > RPC_ARGS_DEPTH_MAX) {
		set_err(err, errlen, "args are nested deeper than %d", RPC_ARGS_DEPTH_MAX);
		return NULL;
	}
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		return json_null();
	case MSGPACK_OBJECT_BOOLEAN:
		return json_boolean(o->via.boolean);
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		if (o->via.u64 > (uint64_t)INT64_MAX)
			return json_real((double)o->via.u64);
		return json_integer((json_int_t)o->via.u64);
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		return json_integer((json_int_t)o->via.i64);
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		j = json_real(o->via.f64);
		if (!j)
			set_err(err, errlen, "args hold a NaN or infinite number");
		return j;
	case MSGPACK_OBJECT_STR:
	case MSGPACK_OBJECT_BIN: {
		const char *p = o->type == MSGPACK_OBJECT_STR ? o->via.str.ptr : o->via.bin.ptr;
		size_t n = o->type == MSGPACK_OBJECT_STR ? o->via.str.size : o->via.bin.size;

		j = json_stringn(n ? p : "", n);
		if (!j)
			set_err(err, errlen, "args hold a string that is not UTF-8");
		return j;
	}
	case MSGPACK_OBJECT_ARRAY:
		j = json_array();
		if (!j)
			return NULL;
		for (uint32_t i = 0; i < o->via.array.size; i++) {
			json_t *e = object_to_json(&o->via.array.ptr[i], depth + 1, err, errlen);

			if (!e || json_array_append_new(j, e) < 0) {
				json_decref(j);
				return NULL;
			}
		}
		return j;
	case MSGPACK_OBJECT_MAP:
		j = json_object();
		if (!j)
			return NULL;
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			const msgpack_object_kv *kv = &o->via.map.ptr[i];
			json_t *v;

			if (kv->key.type != MSGPACK_OBJECT_STR) {
				set_err(err, errlen, "args hold a map whose key is not a string");
				json_decref(j);
				return NULL;
			}
			v = object_to_json(&kv->val, depth + 1, err, errlen);
			if (!v) {
				json_decref(j);
				return NULL;
			}
			if (json_object_setn_new(j, kv->key.via.str.size ? kv->key.via.str.ptr : "",
						 kv->key.via.str.size, v) < 0) {
				set_err(err, errlen, "args hold a map key that is not UTF-8");
				json_decref(j);
				return NULL;
			}
		}
		return j;
	default:
		set_err(err, errlen, "args hold a msgpack ext value");
		return NULL;
	}
}

/* The args as a JSON array value; NULL with @err set on failure (*@rc is
 * the code). */
static json_t *args_to_value(const uint8_t *args, size_t len, int *rc, char *err, size_t errlen)
{
	msgpack_unpacked u;
	size_t off = 0;
	json_t *j;

	set_err(err, errlen, "out of memory");
	*rc = -ENOMEM;
	if (len == 0)
		return json_array();
	*rc = msgpack_prescan(args, len, err, errlen);
	if (*rc < 0)
		return NULL;
	msgpack_unpacked_init(&u);
	if (msgpack_unpack_next(&u, (const char *)args, len, &off) != MSGPACK_UNPACK_SUCCESS) {
		msgpack_unpacked_destroy(&u);
		set_err(err, errlen, "args are not valid msgpack");
		*rc = -EINVAL;
		return NULL;
	}
	if (u.data.type != MSGPACK_OBJECT_ARRAY) {
		msgpack_unpacked_destroy(&u);
		set_err(err, errlen, "args should be an array");
		*rc = -EINVAL;
		return NULL;
	}
	set_err(err, errlen, "out of memory");
	j = object_to_json(&u.data, 1, err, errlen);
	msgpack_unpacked_destroy(&u);
	*rc = j ? 0 : -EINVAL;
	return j;
}

int rpc_args_to_json(const uint8_t *args, size_t len, char **json, size_t *json_len, char *err,
		     size_t errlen)
{
	json_t *v;
	char *s;
	int rc;

	*json = NULL;
	v = args_to_value(args, len, &rc, err, errlen);
	if (!v)
		return rc;
	s = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
	json_decref(v);
	if (!s) {
		set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	*json = s;
	if (json_len)
		*json_len = strlen(s);
	return 0;
}

static int value_pack(msgpack_packer *pk, json_t *v, int depth, char *err, size_t errlen)
{
	int rc = 0;

	if (depth > RPC_ARGS_DEPTH_MAX) {
		set_err(err, errlen, "args are nested deeper than %d", RPC_ARGS_DEPTH_MAX);
		return -EINVAL;
	}
	switch (json_typeof(v)) {
	case JSON_NULL:
		return msgpack_pack_nil(pk) ? -ENOMEM : 0;
	case JSON_TRUE:
		return msgpack_pack_true(pk) ? -ENOMEM : 0;
	case JSON_FALSE:
		return msgpack_pack_false(pk) ? -ENOMEM : 0;
	case JSON_INTEGER:
		return msgpack_pack_int64(pk, json_integer_value(v)) ? -ENOMEM : 0;
	case JSON_REAL:
		return msgpack_pack_double(pk, json_real_value(v)) ? -ENOMEM : 0;
	case JSON_STRING: {
		size_t n = json_string_length(v);

		if (msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, json_string_value(v), n))
			return -ENOMEM;
		return 0;
	}
	case JSON_ARRAY: {
		size_t i;
		json_t *e;

		if (msgpack_pack_array(pk, json_array_size(v)))
			return -ENOMEM;
		json_array_foreach(v, i, e) {
			rc = value_pack(pk, e, depth + 1, err, errlen);
			if (rc < 0)
				return rc;
		}
		return 0;
	}
	case JSON_OBJECT: {
		void *it;

		if (msgpack_pack_map(pk, json_object_size(v)))
			return -ENOMEM;
		for (it = json_object_iter(v); it; it = json_object_iter_next(v, it)) {
			const char *k = json_object_iter_key(it);
			size_t kn = json_object_iter_key_len(it);

			if (msgpack_pack_str(pk, kn) || msgpack_pack_str_body(pk, k, kn))
				return -ENOMEM;
			rc = value_pack(pk, json_object_iter_value(it), depth + 1, err, errlen);
			if (rc < 0)
				return rc;
		}
		return 0;
	}
	}
	return -EINVAL;
}

int rpc_args_from_json(const char *json, struct rpc_buf *out, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *v;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	uint8_t *p;
	int rc;

	if (!json || !*json)
		json = "[]";
	v = json_loads(json, JSON_ALLOW_NUL, &jerr);
	if (!v) {
		set_err(err, errlen, "args are not valid JSON: %s (line %d, column %d)", jerr.text,
			jerr.line, jerr.column);
		return -EINVAL;
	}
	if (!json_is_array(v)) {
		json_decref(v);
		set_err(err, errlen, "args should be a JSON array");
		return -EINVAL;
	}
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	rc = value_pack(&pk, v, 1, err, errlen);
	json_decref(v);
	if (rc == -ENOMEM)
		set_err(err, errlen, "out of memory");
	if (rc == 0 && sb.size > RPC_BODY_MAX) {
		set_err(err, errlen, "args take %zu bytes, more than %u", sb.size,
			(unsigned)RPC_BODY_MAX);
		rc = -EMSGSIZE;
	}
	if (rc == 0 && out->len + sb.size > out->cap) {
		p = realloc(out->data, out->len + sb.size);
		if (!p) {
			set_err(err, errlen, "out of memory");
			rc = -ENOMEM;
		} else {
			out->data = p;
			out->cap = out->len + sb.size;
		}
	}
	if (rc == 0 && sb.size) {
		memcpy(out->data + out->len, sb.data, sb.size);
		out->len += sb.size;
	}
	msgpack_sbuffer_destroy(&sb);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Configuration                                                       */
/* ------------------------------------------------------------------ */

static bool is_builtin(const char *name)
{
	for (size_t i = 0; i < sizeof(builtin_names) / sizeof(builtin_names[0]); i++)
		if (strcmp(name, builtin_names[i]) == 0)
			return true;
	return false;
}

static int spec_check(const char *name, size_t nlen, const char *cmd, char *err, size_t errlen)
{
	if (!rpc_method_valid(name, nlen)) {
		set_err(err, errlen,
			"handler name \"%.*s\" is not a method name (1..%d bytes of a-z 0-9 _ . -)",
			(int)(nlen > 80 ? 80 : nlen), name, RPC_METHOD_MAX);
		return -EINVAL;
	}
	if (!*cmd) {
		set_err(err, errlen, "handler %.*s has an empty command", (int)nlen, name);
		return -EINVAL;
	}
	if (strlen(cmd) > RPC_HANDLER_COMMAND_MAX) {
		set_err(err, errlen, "handler %.*s: command longer than %d bytes", (int)nlen, name,
			RPC_HANDLER_COMMAND_MAX);
		return -EINVAL;
	}
	return 0;
}

int rpc_handlers_parse_spec(const char *spec, struct rpc_handler_spec *out, char *err,
			    size_t errlen)
{
	const char *eq = spec ? strchr(spec, '=') : NULL;
	size_t nlen;

	if (!eq) {
		set_err(err, errlen, "handler \"%.80s\" should be NAME=COMMAND", spec ? spec : "");
		return -EINVAL;
	}
	nlen = (size_t)(eq - spec);
	if (spec_check(spec, nlen, eq + 1, err, errlen) < 0)
		return -EINVAL;
	memcpy(out->name, spec, nlen);
	out->name[nlen] = '\0';
	if (is_builtin(out->name)) {
		set_err(err, errlen, "handler %s: \"%s\" is a built-in method", out->name,
			out->name);
		return -EINVAL;
	}
	out->command = eq + 1;
	return 0;
}

static int upstream_parse(const char *url, struct upstream *up, char *err, size_t errlen)
{
	const char *auth, *slash, *hp, *colon;
	char hostport[RPC_UPSTREAM_URL_MAX + 16];
	size_t alen;

	if (!url || strlen(url) >= RPC_UPSTREAM_URL_MAX) {
		set_err(err, errlen, "upstream URL missing or longer than %d bytes",
			RPC_UPSTREAM_URL_MAX - 1);
		return -EINVAL;
	}
	if (strncasecmp(url, "https://", 8) == 0) {
		set_err(err, errlen,
			"upstream %s: https is not supported (use http to a local port)", url);
		return -EINVAL;
	}
	if (strncasecmp(url, "http://", 7) != 0) {
		set_err(err, errlen, "upstream %s should start with http://", url);
		return -EINVAL;
	}
	for (const char *c = url; *c; c++) {
		if ((unsigned char)*c <= 0x20 || *c == 0x7f || *c == '#') {
			set_err(err, errlen,
				"upstream %s: spaces, control bytes and '#' are not allowed", url);
			return -EINVAL;
		}
	}
	auth = url + 7;
	slash = strchr(auth, '/');
	alen = slash ? (size_t)(slash - auth) : strlen(auth);
	if (alen == 0) {
		set_err(err, errlen, "upstream %s has no host", url);
		return -EINVAL;
	}
	if (memchr(auth, '@', alen) || memchr(auth, '?', alen)) {
		set_err(err, errlen, "upstream %s: expected http://HOST:PORT/path", url);
		return -EINVAL;
	}
	memcpy(up->host, auth, alen);
	up->host[alen] = '\0';
	snprintf(up->path, sizeof(up->path), "%s", slash ? slash : "/");

	/* The port: after "]" for v6, else after the last ':'. */
	hp = up->host;
	colon = hp[0] == '[' ? strstr(hp, "]:") : strrchr(hp, ':');
	if (hp[0] == '[' && colon)
		colon++;
	if (colon) {
		const char *p = colon + 1;

		if (!*p || strspn(p, "0123456789") != strlen(p)) {
			set_err(err, errlen, "upstream %s: bad port", url);
			return -EINVAL;
		}
	}
	{
		size_t hlen = colon ? (size_t)(colon - hp) : strlen(hp);
		const char *port = colon ? colon + 1 : "80";

		if (hlen == 9 && strncasecmp(hp, "localhost", 9) == 0)
			snprintf(hostport, sizeof(hostport), "127.0.0.1:%s", port);
		else
			snprintf(hostport, sizeof(hostport), "%.*s:%s", (int)hlen, hp, port);
	}
	if (addr_parse(hostport, &up->addr, NULL, 0) < 0) {
		set_err(err, errlen,
			"upstream %s: the host must be numeric (127.0.0.1, [::1]) or localhost, "
			"the port 1..65535", url);
		return -EINVAL;
	}
	return 0;
}

int rpc_handlers_upstream_check(const char *url, char *err, size_t errlen)
{
	struct upstream up;

	return upstream_parse(url, &up, err, errlen);
}

static bool copy_field(char *dst, size_t cap, const char *src, const char *what, char *err,
		       size_t errlen)
{
	size_t n = src ? strlen(src) : 0;

	if (n >= cap) {
		set_err(err, errlen, "%s longer than %zu bytes", what, cap - 1);
		return false;
	}
	memcpy(dst, src ? src : "", n + 1);
	return true;
}

static void handlers_free(struct rpc_handlers *h)
{
	for (size_t i = 0; i < h->nexecs; i++)
		free(h->execs[i].command);
	free(h->execs);
	free(h);
}

struct rpc_handlers *rpc_handlers_new(uv_loop_t *loop, const struct rpc_handlers_config *cfg,
				      char *err, size_t errlen)
{
	struct rpc_handlers *h;

	if (!loop || !cfg || !cfg->node || !*cfg->node || !cfg->region || !*cfg->region ||
	    !cfg->version || !*cfg->version) {
		set_err(err, errlen, "handlers need a loop, a node name, a region and a version");
		return NULL;
	}
	if (cfg->nhandlers > RPC_HANDLERS_MAX || (cfg->nhandlers && !cfg->handlers)) {
		set_err(err, errlen, "at most %d handlers", RPC_HANDLERS_MAX);
		return NULL;
	}
	if (cfg->output_max > RPC_BODY_MAX) {
		set_err(err, errlen, "output bound %zu is larger than %u", cfg->output_max,
			(unsigned)RPC_BODY_MAX);
		return NULL;
	}
	h = calloc(1, sizeof(*h));
	if (!h) {
		set_err(err, errlen, "out of memory");
		return NULL;
	}
	h->loop = loop;
	h->max_jobs = cfg->max_jobs ? cfg->max_jobs : RPC_HANDLERS_JOBS_DEFAULT;
	h->output_max = cfg->output_max ? cfg->output_max : RPC_BODY_MAX;
	if (!copy_field(h->node, sizeof(h->node), cfg->node, "node name", err, errlen) ||
	    !copy_field(h->region, sizeof(h->region), cfg->region, "region", err, errlen) ||
	    !copy_field(h->primary, sizeof(h->primary), cfg->primary_region, "primary region",
			err, errlen) ||
	    !copy_field(h->version, sizeof(h->version), cfg->version, "version", err, errlen))
		goto fail;
	if (cfg->nhandlers) {
		h->execs = calloc(cfg->nhandlers, sizeof(*h->execs));
		if (!h->execs)
			goto nomem;
	}
	for (size_t i = 0; i < cfg->nhandlers; i++) {
		const struct rpc_handler_spec *s = &cfg->handlers[i];
		size_t nlen = strnlen(s->name, sizeof(s->name));

		if (nlen == sizeof(s->name) || !s->command ||
		    spec_check(s->name, nlen, s->command, err, errlen) < 0) {
			if (nlen == sizeof(s->name) || !s->command)
				set_err(err, errlen, "handler %zu is incomplete", i);
			goto fail;
		}
		if (is_builtin(s->name)) {
			set_err(err, errlen, "handler %s: \"%s\" is a built-in method", s->name,
				s->name);
			goto fail;
		}
		for (size_t k = 0; k < h->nexecs; k++) {
			if (strcmp(h->execs[k].name, s->name) == 0) {
				set_err(err, errlen, "handler %s is given twice", s->name);
				goto fail;
			}
		}
		memcpy(h->execs[i].name, s->name, nlen + 1);
		h->execs[i].command = strdup(s->command);
		if (!h->execs[i].command)
			goto nomem;
		h->nexecs++;
	}
	if (cfg->upstream && *cfg->upstream) {
		if (upstream_parse(cfg->upstream, &h->up, err, errlen) < 0)
			goto fail;
		h->have_upstream = true;
	}
	return h;
nomem:
	set_err(err, errlen, "out of memory");
fail:
	handlers_free(h);
	return NULL;
}

void rpc_handlers_stats(const struct rpc_handlers *h, struct rpc_handlers_stats *out)
{
	*out = h->stats;
	out->jobs = h->njobs;
}

/* ------------------------------------------------------------------ */
/* Replies                                                             */
/* ------------------------------------------------------------------ */

static void reply_error(rpc_reply_fn reply, void *ctx, enum rpc_error e, uint32_t retry_after,
			const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Formats the message, cleans it (it may quote a handler's stderr or an
 * upstream's body) and replies. */
static void reply_error(rpc_reply_fn reply, void *ctx, enum rpc_error e, uint32_t retry_after,
			const char *fmt, ...)
{
	char raw[RPC_MESSAGE_MAX * 2];
	char msg[RPC_MESSAGE_MAX + 1];
	struct rpc_serve_reply r = { .error = e, .message = msg, .retry_after_ms = retry_after };
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(raw))
		n = sizeof(raw) - 1;
	msg[rpc_message_clean(msg, RPC_MESSAGE_MAX, raw, (size_t)n)] = '\0';
	reply(ctx, &r);
}

static void reply_ok(rpc_reply_fn reply, void *ctx, const void *result, size_t len)
{
	struct rpc_serve_reply r = { .error = RPC_E_NONE, .result = result, .result_len = len };

	reply(ctx, &r);
}

/* Replies with @v as compact JSON (and drops @v). */
static void reply_json(rpc_reply_fn reply, void *ctx, json_t *v)
{
	char *s = v ? json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;

	json_decref(v);
	if (!s) {
		reply_error(reply, ctx, RPC_E_REMOTE_ERROR, 0, "out of memory");
		return;
	}
	reply_ok(reply, ctx, s, strlen(s));
	free(s);
}

/* ------------------------------------------------------------------ */
/* Jobs                                                                */
/* ------------------------------------------------------------------ */

static void job_free(struct job *j)
{
	struct rpc_handlers *h = j->h;

	if (j->prev)
		j->prev->next = j->next;
	else
		h->jobs = j->next;
	if (j->next)
		j->next->prev = j->prev;
	h->njobs--;
	free(j->out.data);
	free(j->send);
	free(j);
	if (h->closing && !h->jobs)
		handlers_free(h);
}

static void job_handle_closed(uv_handle_t *hd)
{
	struct job *j = hd->data;

	if (--j->open == 0)
		job_free(j);
}

static void job_close(struct job *j, uv_handle_t *hd, bool *is_open)
{
	if (!*is_open)
		return;
	*is_open = false;
	uv_close(hd, job_handle_closed);
}

static void job_settle(struct job *j);

/* Appends to @b, bounded by @max; false when that would pass it (or on
 * allocation failure), @b unchanged. */
static bool obuf_append(struct obuf *b, const char *p, size_t n, size_t max)
{
	uint8_t *d = (uint8_t *)b->data;
	int rc = bytebuf_append(&d, &b->len, &b->cap, p, n, max);

	b->data = (char *)d;
	return rc == 0;
}

static void scratch_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf)
{
	struct job *j = hd->data;

	buf->base = j->h->scratch;
	buf->len = sizeof(j->h->scratch);
}

static struct job *job_new(struct rpc_handlers *h, enum job_kind kind,
			   const struct rpc_serve_call *call, rpc_reply_fn reply, void *reply_ctx)
{
	struct job *j = calloc(1, sizeof(*j));

	if (!j)
		return NULL;
	j->h = h;
	j->kind = kind;
	j->reply = reply;
	j->reply_ctx = reply_ctx;
	snprintf(j->method, sizeof(j->method), "%s", call->method);
	j->deadline_ms = call->deadline_ms ? call->deadline_ms : 1;
	j->next = h->jobs;
	if (h->jobs)
		h->jobs->prev = j;
	h->jobs = j;
	h->njobs++;
	uv_timer_init(h->loop, &j->timer);
	j->timer.data = j;
	j->timer_open = true;
	j->open = 1;
	return j;
}

/* ------------------------------------------------------------------ */
/* Exec handlers                                                       */
/* ------------------------------------------------------------------ */

/* Signals the child's whole process group (it leads a session). */
static void exec_signal(struct job *j, int sig)
{
	if (j->pid > 0)
		uv_kill(-j->pid, sig);
}

/* SIGTERM now, SIGKILL after the grace period unless it exits first. */
static void exec_kill(struct job *j)
{
	if (j->exited || j->killing || j->pid <= 0)
		return;
	j->killing = true;
	j->h->stats.killed++;
	exec_signal(j, SIGTERM);
}

static void exec_answer(struct job *j)
{
	const char *name = j->handler->name;
	size_t n = j->errtail_len;
	const char *tail = j->errtail;
	char status[64];

	j->answered = true;
	if (j->exit_status == 0 && j->term_signal == 0) {
		size_t len = j->out.len;

		if (len && j->out.data[len - 1] == '\n')
			len--;
		reply_ok(j->reply, j->reply_ctx, len ? j->out.data : "", len);
		return;
	}
	while (n && (tail[n - 1] == '\n' || tail[n - 1] == '\r' || tail[n - 1] == ' '))
		n--;
	if (j->term_signal)
		snprintf(status, sizeof(status), "was killed by signal %d", j->term_signal);
	else
		snprintf(status, sizeof(status), "exited with status %lld",
			 (long long)j->exit_status);
	/* Keep the end of stderr: that is where the reason usually is. */
	if (n > RPC_MESSAGE_MAX - 200) {
		tail += n - (RPC_MESSAGE_MAX - 200);
		n = RPC_MESSAGE_MAX - 200;
	}
	if (n)
		reply_error(j->reply, j->reply_ctx, RPC_E_REMOTE_ERROR, 0, "handler %s %s: %.*s",
			    name, status, (int)n, tail);
	else
		reply_error(j->reply, j->reply_ctx, RPC_E_REMOTE_ERROR, 0, "handler %s %s", name,
			    status);
}

static void exec_timer_cb(uv_timer_t *t)
{
	struct job *j = t->data;

	if (!j->answered) {
		j->answered = true;
		reply_error(j->reply, j->reply_ctx, RPC_E_TIMEOUT, 0,
			    "handler %s did not finish within %u ms", j->handler->name,
			    (unsigned)j->deadline_ms);
		if (!j->exited) {
			exec_kill(j);
			uv_timer_start(&j->timer, exec_timer_cb, RPC_HANDLERS_KILL_GRACE_MS, 0);
		}
	} else if (!j->exited) {
		exec_signal(j, SIGKILL);
	}
	job_settle(j);
}

/* Kill, and arm the SIGKILL escalation (the deadline is moot now). */
static void exec_stop(struct job *j)
{
	if (j->exited || j->killing)
		return;
	exec_kill(j);
	uv_timer_start(&j->timer, exec_timer_cb, RPC_HANDLERS_KILL_GRACE_MS, 0);
}

static void exec_exit_cb(uv_process_t *p, int64_t exit_status, int term_signal)
{
	struct job *j = p->data;

	j->exited = true;
	j->exit_status = exit_status;
	j->term_signal = term_signal;
	/* Whatever the shell left behind must not hold the pipes open. */
	exec_signal(j, SIGKILL);
	job_settle(j);
}

static void exec_out_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct job *j = s->data;

	if (nread == 0 || j->answered)
		return;
	if (nread < 0) {
		j->out_eof = true;
		uv_read_stop(s);
		job_settle(j);
		return;
	}
	if (!obuf_append(&j->out, buf->base, (size_t)nread, j->h->output_max)) {
		j->answered = true;
		reply_error(j->reply, j->reply_ctx, RPC_E_REMOTE_ERROR, 0,
			    "handler %s: result larger than %zu bytes", j->handler->name,
			    j->h->output_max);
		exec_stop(j);
		job_settle(j);
	}
}

static void exec_err_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct job *j = s->data;
	size_t n, cap = sizeof(j->errtail);

	if (nread == 0 || j->answered)
		return;
	if (nread < 0) {
		j->err_eof = true;
		uv_read_stop(s);
		job_settle(j);
		return;
	}
	n = (size_t)nread;
	if (n >= cap) {
		memcpy(j->errtail, buf->base + n - cap, cap);
		j->errtail_len = cap;
		return;
	}
	if (j->errtail_len + n > cap) {
		size_t drop = j->errtail_len + n - cap;

		memmove(j->errtail, j->errtail + drop, j->errtail_len - drop);
		j->errtail_len -= drop;
	}
	memcpy(j->errtail + j->errtail_len, buf->base, n);
	j->errtail_len += n;
}

static void exec_write_cb(uv_write_t *w, int status)
{
	struct job *j = w->data;

	/* EPIPE: the handler did not read its arguments; that is its call. */
	job_close(j, (uv_handle_t *)&j->in, &j->in_open);
}

static void job_settle(struct job *j)
{
	if (j->kind == JOB_EXEC) {
		if (!j->answered && j->exited && j->out_eof && j->err_eof)
			exec_answer(j);
		if (j->answered) {
			job_close(j, (uv_handle_t *)&j->in, &j->in_open);
			job_close(j, (uv_handle_t *)&j->outp, &j->out_open);
			job_close(j, (uv_handle_t *)&j->errp, &j->err_open);
		}
		if (j->exited)
			job_close(j, (uv_handle_t *)&j->proc, &j->proc_open);
		if (j->answered && j->exited)
			job_close(j, (uv_handle_t *)&j->timer, &j->timer_open);
	} else if (j->answered) {
		job_close(j, (uv_handle_t *)&j->tcp, &j->tcp_open);
		job_close(j, (uv_handle_t *)&j->timer, &j->timer_open);
	}
}

/* The agent's environment without our three names, plus them. */
static char **exec_env(const struct rpc_serve_call *call)
{
	static const char *const ours[] = { "MERIDIAN_METHOD=", "MERIDIAN_ORIGIN_NODE=",
					    "MERIDIAN_ORIGIN_REGION=" };
	size_t n = 0, k = 0;
	char **env;

	while (environ && environ[n])
		n++;
	env = calloc(n + 4, sizeof(*env));
	if (!env)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		bool mine = false;

		for (size_t o = 0; o < 3; o++)
			mine |= strncmp(environ[i], ours[o], strlen(ours[o])) == 0;
		if (!mine)
			env[k++] = environ[i];
	}
	if (asprintf(&env[k], "MERIDIAN_METHOD=%s", call->method) < 0)
		env[k] = NULL;
	else if (asprintf(&env[k + 1], "MERIDIAN_ORIGIN_NODE=%s", call->origin_node) < 0)
		env[k + 1] = NULL;
	else if (asprintf(&env[k + 2], "MERIDIAN_ORIGIN_REGION=%s", call->origin_region) < 0)
		env[k + 2] = NULL;
	if (!env[k] || !env[k + 1] || !env[k + 2]) {
		free(env[k]);
		free(env[k + 1]);
		free(env);
		return NULL;
	}
	return env;
}

static void exec_env_free(char **env)
{
	size_t n = 0;

	while (env[n])
		n++;
	/* The last three are ours; the rest belong to environ. */
	for (size_t i = n - 3; i < n; i++)
		free(env[i]);
	free(env);
}

static int exec_start(struct rpc_handlers *h, const struct exec_handler *eh,
		      const struct rpc_serve_call *call, char *json, size_t json_len,
		      rpc_reply_fn reply, void *reply_ctx, void **job)
{
	static char sh[] = "/bin/sh", dash_c[] = "-c";
	char *argv[] = { sh, dash_c, eh->command, NULL };
	uv_process_options_t opts = { 0 };
	uv_stdio_container_t stdio[3];
	uv_buf_t b;
	struct job *j;
	char **env;
	int rc;

	env = exec_env(call);
	j = env ? job_new(h, JOB_EXEC, call, reply, reply_ctx) : NULL;
	if (!j) {
		if (env)
			exec_env_free(env);
		free(json);
		reply_error(reply, reply_ctx, RPC_E_REMOTE_ERROR, 0, "handler %s: out of memory",
			    eh->name);
		return -ENOMEM;
	}
	j->handler = eh;
	j->send = json;
	j->send_len = json_len;
	uv_pipe_init(h->loop, &j->in, 0);
	uv_pipe_init(h->loop, &j->outp, 0);
	uv_pipe_init(h->loop, &j->errp, 0);
	j->in.data = j->outp.data = j->errp.data = j->proc.data = j;
	j->in_open = j->out_open = j->err_open = true;
	j->open += 3;
	stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
	stdio[0].data.stream = (uv_stream_t *)&j->in;
	stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[1].data.stream = (uv_stream_t *)&j->outp;
	stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[2].data.stream = (uv_stream_t *)&j->errp;
	opts.file = sh;
	opts.args = argv;
	opts.env = env;
	opts.flags = UV_PROCESS_DETACHED;
	opts.stdio = stdio;
	opts.stdio_count = 3;
	opts.exit_cb = exec_exit_cb;
	rc = uv_spawn(h->loop, &j->proc, &opts);
	exec_env_free(env);
	/* The process handle is initialized even when the spawn failed. */
	j->proc_open = true;
	j->open++;
	if (rc < 0) {
		h->stats.exec_spawn_failed++;
		LOG_RATELIMITED(LOG_WARNING, "handlers", "handler %s: cannot spawn: %s", eh->name,
				uv_strerror(rc));
		j->exited = true;
		j->answered = true;
		reply_error(reply, reply_ctx, RPC_E_REMOTE_ERROR, 0,
			    "handler %s could not start: %s", eh->name, uv_strerror(rc));
		job_settle(j);
		return rc;
	}
	h->stats.exec_started++;
	j->pid = j->proc.pid;
	uv_read_start((uv_stream_t *)&j->outp, scratch_alloc, exec_out_cb);
	uv_read_start((uv_stream_t *)&j->errp, scratch_alloc, exec_err_cb);
	b = uv_buf_init(j->send, (unsigned)j->send_len);
	j->wr.data = j;
	if (uv_write(&j->wr, (uv_stream_t *)&j->in, &b, 1, exec_write_cb) < 0)
		job_close(j, (uv_handle_t *)&j->in, &j->in_open);
	uv_timer_start(&j->timer, exec_timer_cb, j->deadline_ms, 0);
	*job = j;
	return 0;
}

/* ------------------------------------------------------------------ */
/* The upstream                                                        */
/* ------------------------------------------------------------------ */

static int up_on_body(http_parser *p, const char *at, size_t len)
{
	struct job *j = p->data;

	if (!obuf_append(&j->out, at, len, j->h->output_max)) {
		j->too_big = true;
		return 1;
	}
	return 0;
}

static int up_on_complete(http_parser *p)
{
	struct job *j = p->data;

	j->complete = true;
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings up_settings = {
	.on_body = up_on_body,
	.on_message_complete = up_on_complete,
};

static void up_answer(struct job *j)
{
	struct rpc_handlers *h = j->h;
	unsigned st = j->parser.status_code;
	size_t n = j->out.len < UPSTREAM_STATUS_BODY ? j->out.len : UPSTREAM_STATUS_BODY;

	j->answered = true;
	if (st >= 200 && st < 300)
		reply_ok(j->reply, j->reply_ctx, j->out.len ? j->out.data : "", j->out.len);
	else if (st == 404)
		reply_error(j->reply, j->reply_ctx, RPC_E_NO_SUCH_METHOD, 0,
			    "no method \"%s\" on node %s (meridian %s): upstream answered 404",
			    j->method, h->node, h->version);
	else
		reply_error(j->reply, j->reply_ctx, RPC_E_REMOTE_ERROR, 0,
			    "upstream answered %u: %.*s", st, (int)n, n ? j->out.data : "");
}

static void up_fail(struct job *j, const char *why)
{
	j->answered = true;
	reply_error(j->reply, j->reply_ctx, RPC_E_REMOTE_ERROR, 0, "upstream %s", why);
	job_settle(j);
}

static void up_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct job *j = s->data;
	size_t n = nread > 0 ? (size_t)nread : 0;
	size_t used;

	if (nread == 0 || j->answered)
		return;
	if (nread < 0 && nread != UV_EOF) {
		up_fail(j, "connection failed before the answer was complete");
		return;
	}
	used = http_parser_execute(&j->parser, &up_settings, n ? buf->base : NULL, n);
	if (j->too_big) {
		char why[96];

		snprintf(why, sizeof(why), "result larger than %zu bytes", j->h->output_max);
		up_fail(j, why);
		return;
	}
	if (j->complete) {
		up_answer(j);
		job_settle(j);
		return;
	}
	if (HTTP_PARSER_ERRNO(&j->parser) != HPE_OK || used != n) {
		char why[160];

		snprintf(why, sizeof(why), "answered with malformed HTTP: %s",
			 http_errno_description(HTTP_PARSER_ERRNO(&j->parser)));
		up_fail(j, why);
		return;
	}
	if (nread == UV_EOF)
		up_fail(j, "closed the connection before answering");
}

static void up_write_cb(uv_write_t *w, int status)
{
	struct job *j = w->data;

	if (status < 0 && !j->answered && status != UV_ECANCELED)
		up_fail(j, "connection failed while sending the request");
}

static void up_connect_cb(uv_connect_t *c, int status)
{
	struct job *j = c->data;
	uv_buf_t b;

	if (j->answered)
		return;
	if (status < 0) {
		char why[128];

		snprintf(why, sizeof(why), "unreachable: %s",
			 status == UV_ECONNREFUSED ? "connection refused" : uv_strerror(status));
		up_fail(j, why);
		return;
	}
	b = uv_buf_init(j->send, (unsigned)j->send_len);
	j->wr.data = j;
	if (uv_write(&j->wr, (uv_stream_t *)&j->tcp, &b, 1, up_write_cb) < 0 ||
	    uv_read_start((uv_stream_t *)&j->tcp, scratch_alloc, up_read_cb) < 0)
		up_fail(j, "unreachable: cannot send");
}

static void up_timer_cb(uv_timer_t *t)
{
	struct job *j = t->data;

	if (j->answered)
		return;
	j->answered = true;
	reply_error(j->reply, j->reply_ctx, RPC_E_TIMEOUT, 0,
		    "upstream did not answer \"%s\" within %u ms", j->method,
		    (unsigned)j->deadline_ms);
	job_settle(j);
}

/* The JSON body {"method","args","origin":{"node","region"}}; NULL on
 * failure (out of memory, or an origin that is not UTF-8). */
static char *up_body(const struct rpc_serve_call *call, json_t *args)
{
	json_t *v = json_pack("{s:s, s:O, s:{s:s, s:s}}", "method", call->method, "args", args,
			      "origin", "node", call->origin_node, "region",
			      call->origin_region);
	char *s = v ? json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;

	json_decref(v);
	return s;
}

static int up_start(struct rpc_handlers *h, const struct rpc_serve_call *call, json_t *args,
		    rpc_reply_fn reply, void *reply_ctx, void **job)
{
	char *body = up_body(call, args);
	struct job *j = body ? job_new(h, JOB_UPSTREAM, call, reply, reply_ctx) : NULL;
	int n, rc;

	if (!j) {
		free(body);
		reply_error(reply, reply_ctx, RPC_E_REMOTE_ERROR, 0, "upstream: out of memory");
		return -ENOMEM;
	}
	n = asprintf(&j->send,
		     "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: meridian/%s\r\n"
		     "Content-Type: application/json\r\nContent-Length: %zu\r\n"
		     "Connection: close\r\n\r\n%s",
		     h->up.path, h->up.host, h->version, strlen(body), body);
	free(body);
	if (n < 0) {
		j->send = NULL;
		j->answered = true;
		reply_error(reply, reply_ctx, RPC_E_REMOTE_ERROR, 0, "upstream: out of memory");
		job_settle(j);
		return -ENOMEM;
	}
	j->send_len = (size_t)n;
	http_parser_init(&j->parser, HTTP_RESPONSE);
	j->parser.data = j;
	uv_tcp_init(h->loop, &j->tcp);
	j->tcp.data = j;
	j->tcp_open = true;
	j->open++;
	j->conn.data = j;
	h->stats.upstream_calls++;
	rc = uv_tcp_connect(&j->conn, &j->tcp, (const struct sockaddr *)&h->up.addr,
			    up_connect_cb);
	if (rc < 0) {
		char why[128];

		snprintf(why, sizeof(why), "unreachable: %s", uv_strerror(rc));
		up_fail(j, why);
		return rc;
	}
	uv_timer_start(&j->timer, up_timer_cb, j->deadline_ms, 0);
	*job = j;
	return 0;
}

/* ------------------------------------------------------------------ */
/* The seam                                                            */
/* ------------------------------------------------------------------ */

static void builtin_run(struct rpc_handlers *h, const char *method, json_t *args,
			rpc_reply_fn reply, void *reply_ctx)
{
	bool primary = h->primary[0] && strcmp(h->primary, h->region) == 0;

	if (strcmp(method, "ping") == 0)
		reply_json(reply, reply_ctx,
			   json_pack("{s:s, s:s}", "node", h->node, "region", h->region));
	else if (strcmp(method, "info") == 0)
		reply_json(reply, reply_ctx,
			   json_pack("{s:s, s:s, s:s?, s:b, s:s}", "node", h->node, "region",
				     h->region, "primary_region", h->primary[0] ? h->primary : NULL,
				     "is_primary", primary, "version", h->version));
	else
		reply_json(reply, reply_ctx, json_incref(args));
}

static int serve_start(void *ctx, const struct rpc_serve_call *call, rpc_reply_fn reply,
		       void *reply_ctx, void **job)
{
	struct rpc_handlers *h = ctx;
	const struct exec_handler *eh = NULL;
	char err[160];
	json_t *args;
	int rc;

	*job = NULL;
	for (size_t i = 0; i < h->nexecs && !eh; i++)
		if (strcmp(h->execs[i].name, call->method) == 0)
			eh = &h->execs[i];
	if (!eh && !is_builtin(call->method) && !h->have_upstream) {
		reply_error(reply, reply_ctx, RPC_E_NO_SUCH_METHOD, 0,
			    "no method \"%s\" on node %s (meridian %s)", call->method, h->node,
			    h->version);
		return -ENOENT;
	}
	if (!is_builtin(call->method) && h->njobs >= h->max_jobs) {
		h->stats.overloaded++;
		reply_error(reply, reply_ctx, RPC_E_OVERLOADED, RPC_HANDLERS_RETRY_AFTER_MS,
			    "node %s is running %u calls, its bound", h->node, h->njobs);
		return -EBUSY;
	}
	args = args_to_value(call->args, call->args_len, &rc, err, sizeof(err));
	if (!args) {
		h->stats.bad_args++;
		reply_error(reply, reply_ctx,
			    rc == -ENOMEM ? RPC_E_REMOTE_ERROR : RPC_E_BAD_REQUEST, 0, "%s", err);
		return rc;
	}
	if (is_builtin(call->method)) {
		builtin_run(h, call->method, args, reply, reply_ctx);
		json_decref(args);
		return 0;
	}
	if (eh) {
		char *text = json_dumps(args, JSON_COMPACT | JSON_PRESERVE_ORDER);

		json_decref(args);
		if (!text) {
			reply_error(reply, reply_ctx, RPC_E_REMOTE_ERROR, 0,
				    "handler %s: out of memory", eh->name);
			return -ENOMEM;
		}
		return exec_start(h, eh, call, text, strlen(text), reply, reply_ctx, job);
	}
	rc = up_start(h, call, args, reply, reply_ctx, job);
	json_decref(args);
	return rc;
}

static void serve_cancel(void *ctx, void *job)
{
	struct job *j = job;

	if (!j || j->answered)
		return;
	j->answered = true;
	if (j->kind == JOB_EXEC)
		exec_stop(j);
	job_settle(j);
}

struct rpc_serve_ops rpc_handlers_ops(struct rpc_handlers *h)
{
	struct rpc_serve_ops ops = { .ctx = h, .start = serve_start, .cancel = serve_cancel };

	return ops;
}

void rpc_handlers_close(struct rpc_handlers *h)
{
	struct job *j, *next;

	if (!h)
		return;
	h->closing = true;
	if (!h->jobs) {
		handlers_free(h);
		return;
	}
	for (j = h->jobs; j; j = next) {
		next = j->next;
		j->answered = true;
		if (j->kind == JOB_EXEC && !j->exited) {
			if (!j->killing)
				h->stats.killed++;
			j->killing = true;
			exec_signal(j, SIGKILL);
		}
		/* Closes only start here: nothing is freed before the loop runs. */
		job_settle(j);
	}
}
