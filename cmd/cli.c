/*
 * cmd/cli.c - the client subcommands: members, info, rpc, sql, leader,
 * watch, leave, keygen, version.
 *
 * The CLI is a client of the local API (docs/api.md) and nothing else: it
 * never reads the agent's state another way.  Its output and exit codes
 * are a stable interface for scripts (cmd/commands.h):
 *   0 ok, 1 the agent answered with an error, 2 usage, 3 no agent
 *   reachable (or unavailable), 4 timed out.
 * Every failure says what went wrong and, where it can, what to do.
 *
 * What the agent sends is outside input too: names and tags that came
 * over gossip are printed with control characters replaced, so a hostile
 * node name cannot drive the user's terminal.
 */
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd/commands.h"
#include "cmd/flags.h"
#include "cmd/http_client.h"
#include "gossip/gossip.h"
#include "gossip/proto.h"
#include "gossip/seal.h"
#include "lib/clock.h"

#define API_DEFAULT "127.0.0.1:7601"
#define CALL_TIMEOUT_MS_DEFAULT 10000
#define LEAVE_TIMEOUT_MS_DEFAULT 15000
#define LEAVE_POLL_MS 100

/* ---- flags ---- */

#define NFLAGS(f) (sizeof(f) / sizeof((f)[0]))

/*
 * Parses the flags of @cmd with cmd/flags.h.  Returns 0 (with *@help set
 * for -h/--help), or prints the problem and the usage line to stderr and
 * returns EXIT_USAGE.  With @first (rpc, sql) the flags come before
 * positional arguments, whose first index goes there; without, none is
 * accepted.
 */
static int cli_flags_args(const char *cmd, const char *usage, int argc, char **argv,
			  const struct flag *flags, size_t nflags, bool *help, int *first)
{
	char err[256];
	int rc = first ? flags_parse_args(argc, argv, flags, nflags, first, err, sizeof(err)) :
		 flags_parse(argc, argv, flags, nflags, err, sizeof(err));

	if (rc == FLAGS_HELP) {
		*help = true;
		return 0;
	}
	if (rc < 0) {
		fprintf(stderr, "meridian %s: %s\n%s", cmd, err, usage);
		return EXIT_USAGE;
	}
	return 0;
}

static int cli_flags(const char *cmd, const char *usage, int argc, char **argv,
		     const struct flag *flags, size_t nflags, bool *help)
{
	return cli_flags_args(cmd, usage, argc, argv, flags, nflags, help, NULL);
}

/* "15s", "500ms", "2m", "1.5s", or a bare number of seconds -> ms (> 0). */
static int duration_parse(const char *s, int *ms)
{
	char *end;
	double v, scale = 1000;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || errno)
		return -EINVAL;
	if (strcmp(end, "ms") == 0)
		scale = 1;
	else if (strcmp(end, "s") == 0 || *end == '\0')
		scale = 1000;
	else if (strcmp(end, "m") == 0)
		scale = 60000;
	else
		return -EINVAL;
	v *= scale;
	if (!(v >= 1 && v <= 24.0 * 3600 * 1000))
		return -EINVAL;
	*ms = (int)v;
	return 0;
}

static const char *api_addr(const char *flag)
{
	const char *env = getenv("MERIDIAN_API");

	if (flag && *flag)
		return flag;
	if (env && *env)
		return env;
	return API_DEFAULT;
}

/* Prints "meridian @cmd: " @fmt (with @what) and the usage line to stderr;
 * returns EXIT_USAGE. */
static int usage_error(const char *cmd, const char *usage, const char *fmt, const char *what)
	__attribute__((format(printf, 3, 0)));

static int usage_error(const char *cmd, const char *usage, const char *fmt, const char *what)
{
	fprintf(stderr, "meridian %s: ", cmd);
	fprintf(stderr, fmt, what);
	fprintf(stderr, "\n%s", usage);
	return EXIT_USAGE;
}

static int timeout_get(const char *cmd, const char *usage, const char *s, int def, int *ms)
{
	*ms = def;
	if (s && duration_parse(s, ms) < 0) {
		fprintf(stderr, "meridian %s: bad --timeout \"%s\" (use e.g. 15s, 500ms, 2m)\n%s",
			cmd, s, usage);
		return EXIT_USAGE;
	}
	return 0;
}

/* ---- output helpers ---- */

/* Copies @s into @out with control characters replaced by '?'. */
static void sanitize(const char *s, char *out, size_t outlen)
{
	size_t o = 0;

	if (!outlen)
		return;
	for (; s && *s && o + 1 < outlen; s++)
		out[o++] = ((unsigned char)*s < 0x20 || *s == 0x7F) ? '?' : *s;
	out[o] = '\0';
}

/* Display width of UTF-8 text: code points, not bytes. */
static size_t text_width(const char *s)
{
	size_t w = 0;

	for (; *s; s++)
		if (((unsigned char)*s & 0xC0) != 0x80)
			w++;
	return w;
}

/* Prints one table row: cells padded to their column's width plus two
 * spaces, without trailing blanks (an empty last cell leaves none). */
static void print_row(char *const *cells, const size_t *width, int ncols)
{
	size_t pad = 0;

	for (int c = 0; c < ncols; c++) {
		if (cells[c][0]) {
			for (; pad > 0; pad--)
				putchar(' ');
			fputs(cells[c], stdout);
		}
		pad += width[c] + 2 - text_width(cells[c]);
	}
	putchar('\n');
}

static int print_json(json_t *v)
{
	char *s = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);

	if (!s) {
		fprintf(stderr, "meridian: out of memory\n");
		return EXIT_REMOTE_ERROR;
	}
	fputs(s, stdout);
	putchar('\n');
	free(s);
	return EXIT_OK_;
}

static int output_done(int rc)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		if (errno != EPIPE)
			fprintf(stderr, "meridian: writing output: %s\n", strerror(errno));
		return rc ? rc : EXIT_REMOTE_ERROR;
	}
	return rc;
}

static const char *jstr(json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));

	return s ? s : "-";
}

/* ---- talking to the agent ---- */

/* Says why a call failed; returns the exit code. */
static int report_call_error(const char *api, int err, int timeout_ms)
{
	switch (err) {
	case -ECONNREFUSED:
		fprintf(stderr,
			"meridian: no agent answering at %s (connection refused): is `meridian "
			"agent` running? Set MERIDIAN_API or --api.\n",
			api);
		return EXIT_UNAVAILABLE;
	case -ETIMEDOUT:
		fprintf(stderr, "meridian: the agent at %s did not answer within %d ms\n", api,
			timeout_ms);
		return EXIT_TIMEOUT;
	case -EINVAL:
		fprintf(stderr,
			"meridian: bad API address \"%s\": use host:port or [v6]:port with a "
			"numeric host, e.g. 127.0.0.1:7601\n",
			api);
		return EXIT_USAGE;
	case -ECONNRESET:
		fprintf(stderr,
			"meridian: the agent at %s closed the connection without answering (not "
			"the API address? too many API connections? shutting down?)\n",
			api);
		return EXIT_UNAVAILABLE;
	case -EPROTO:
	case -EMSGSIZE:
		fprintf(stderr, "meridian: the answer from %s is not usable: %s (is that a "
			"meridian API address?)\n", api, http_call_strerror(err));
		return EXIT_REMOTE_ERROR;
	default:
		fprintf(stderr, "meridian: cannot reach the agent at %s: %s\n", api,
			http_call_strerror(err));
		return EXIT_UNAVAILABLE;
	}
}

/*
 * Prints the API's error object @e ({"code":...,"message":...}, and the
 * "sqlstate" /v1/sql adds) to stderr as "@prefix: code: message", with
 * the agent's text sanitized.
 */
static void print_api_error(const char *prefix, json_t *e)
{
	const char *code = json_string_value(json_object_get(e, "code"));
	const char *msg = json_string_value(json_object_get(e, "message"));
	const char *sqlstate = json_string_value(json_object_get(e, "sqlstate"));
	char c[128], m[1024];

	sanitize(code ? code : "error", c, sizeof(c));
	sanitize(msg ? msg : "", m, sizeof(m));
	fprintf(stderr, "%s: %s%s%s%s: %s\n", prefix, c, sqlstate ? " (SQLSTATE " : "",
		sqlstate ? sqlstate : "", sqlstate ? ")" : "", m);
}

/* Prints an HTTP error answer; returns the exit code. */
static int report_http_error(const char *api, const struct http_reply *r)
{
	json_t *root = json_loadb(r->body, r->body_len, 0, NULL);
	json_t *e = json_object_get(root, "error");

	if (json_string_value(json_object_get(e, "code")) ||
	    json_string_value(json_object_get(e, "message"))) {
		print_api_error("meridian", e);
	} else {
		fprintf(stderr, "meridian: the agent at %s answered HTTP %d\n", api, r->status);
	}
	json_decref(root);
	return r->status == 503 ? EXIT_UNAVAILABLE : EXIT_REMOTE_ERROR;
}

/*
 * Calls the API and parses a 2xx JSON answer into *@out (caller decrefs).
 * Returns EXIT_OK_ or the exit code, having printed why.
 */
static int api_call(const char *api, const char *method, const char *path, int timeout_ms,
		    json_t **out)
{
	struct http_reply r;
	json_error_t jerr;
	int rc;

	*out = NULL;
	rc = http_call(api, method, path, NULL, 0, timeout_ms, &r);
	if (rc < 0)
		return report_call_error(api, rc, timeout_ms);
	if (r.status / 100 != 2) {
		rc = report_http_error(api, &r);
		http_reply_free(&r);
		return rc;
	}
	*out = json_loadb(r.body, r.body_len, JSON_DECODE_ANY, &jerr);
	http_reply_free(&r);
	if (!*out) {
		fprintf(stderr, "meridian: the agent at %s sent invalid JSON: %s (line %d)\n", api,
			jerr.text, jerr.line);
		return EXIT_REMOTE_ERROR;
	}
	return EXIT_OK_;
}

/* Appends @s to @out URL-encoded (RFC 3986 unreserved characters kept). */
static int url_encode(const char *s, char *out, size_t outlen)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = strlen(out);

	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		bool keep = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			    (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' ||
			    *p == '~';

		if (o + (keep ? 1 : 3) >= outlen)
			return -ENAMETOOLONG;
		if (keep) {
			out[o++] = (char)*p;
		} else {
			out[o++] = '%';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		}
	}
	out[o] = '\0';
	return 0;
}

/* ---- meridian members ---- */

static const char members_usage[] =
	"usage: meridian members [--region R] [--status alive|suspect|failed|left] [--json]\n"
	"                        [--api ADDR] [--timeout D]\n";

static const char members_help[] =
	"\n"
	"Lists the cluster's members as the local agent sees them, sorted by name.\n"
	"\n"
	"  --region R     only members of region R\n"
	"  --status S     only members with status S (alive, suspect, failed, left)\n"
	"  --json         the API's JSON array (name, addr, region, status,\n"
	"                 incarnation, since, rtt_us, tags)\n"
	"  --api ADDR     the agent's API (default: $MERIDIAN_API, else " API_DEFAULT ")\n"
	"  --timeout D    how long to wait for the agent (default 10s)\n";

static bool tag_is_system(const char *k)
{
	static const char *const sys[] = { "region", "primary_region", "version", "proto_min",
					   "proto_max" };

	for (size_t i = 0; i < sizeof(sys) / sizeof(sys[0]); i++)
		if (strcmp(k, sys[i]) == 0)
			return true;
	return false;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The user tags of @tags as "k=v,k=v", keys sorted, into a malloc'd
 * string ("" when none). */
static char *user_tags(json_t *tags)
{
	const char *keys[256];
	size_t n = 0, len = 1;
	const char *k;
	json_t *v;
	char *out;

	json_object_foreach(tags, k, v) {
		if (!tag_is_system(k) && n < sizeof(keys) / sizeof(keys[0]))
			keys[n++] = k;
	}
	qsort(keys, n, sizeof(keys[0]), cmp_str);
	for (size_t i = 0; i < n; i++) {
		const char *s = json_string_value(json_object_get(tags, keys[i]));

		len += strlen(keys[i]) + 2 + (s ? strlen(s) : 0);
	}
	out = malloc(len);
	if (!out)
		return NULL;
	out[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		const char *s = json_string_value(json_object_get(tags, keys[i]));

		if (i)
			strcat(out, ",");
		strcat(out, keys[i]);
		strcat(out, "=");
		if (s)
			strcat(out, s);
	}
	return out;
}

enum { COL_NAME, COL_ADDR, COL_REGION, COL_STATUS, COL_INC, COL_TAGS, NCOLS };

static int members_table(json_t *arr)
{
	static const char *const heads[NCOLS] = { "NAME", "ADDRESS", "REGION",
						  "STATUS", "INC", "TAGS" };
	size_t n = json_array_size(arr);
	size_t width[NCOLS];
	char *(*cells)[NCOLS];
	bool any_tags = false;
	int rc = EXIT_OK_;

	cells = calloc(n ? n : 1, sizeof(*cells));
	if (!cells) {
		fprintf(stderr, "meridian: out of memory\n");
		return EXIT_REMOTE_ERROR;
	}
	for (int c = 0; c < NCOLS; c++)
		width[c] = strlen(heads[c]);
	for (size_t i = 0; i < n; i++) {
		json_t *m = json_array_get(arr, i);
		json_t *inc = json_object_get(m, "incarnation");
		const char *src[COL_INC] = { jstr(m, "name"), jstr(m, "addr"), jstr(m, "region"),
					     jstr(m, "status") };
		char buf[256];
		char *tags;

		for (int c = 0; c < COL_INC; c++) {
			sanitize(src[c], buf, sizeof(buf));
			cells[i][c] = strdup(buf);
		}
		if (json_is_integer(inc))
			snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(inc));
		else
			snprintf(buf, sizeof(buf), "-");
		cells[i][COL_INC] = strdup(buf);
		tags = user_tags(json_object_get(m, "tags"));
		if (tags) {
			char *clean = malloc(strlen(tags) + 1);

			if (clean)
				sanitize(tags, clean, strlen(tags) + 1);
			free(tags);
			cells[i][COL_TAGS] = clean;
		}
		for (int c = 0; c < NCOLS; c++) {
			if (!cells[i][c]) {
				fprintf(stderr, "meridian: out of memory\n");
				rc = EXIT_REMOTE_ERROR;
				goto out;
			}
			if (text_width(cells[i][c]) > width[c])
				width[c] = text_width(cells[i][c]);
		}
		if (cells[i][COL_TAGS][0])
			any_tags = true;
	}
	print_row((char *const *)heads, width, any_tags ? NCOLS : COL_TAGS);
	for (size_t i = 0; i < n; i++)
		print_row(cells[i], width, any_tags ? NCOLS : COL_TAGS);
out:
	for (size_t i = 0; i < n; i++)
		for (int c = 0; c < NCOLS; c++)
			free(cells[i][c]);
	free(cells);
	return rc;
}

int cmd_members(int argc, char **argv)
{
	const char *api = NULL, *region = NULL, *status = NULL, *timeout = NULL;
	bool json = false, help = false;
	const struct flag flags[] = {
		{ "api", FLAG_STRING, &api },
		{ "json", FLAG_BOOL, &json },
		{ "region", FLAG_STRING, &region },
		{ "status", FLAG_STRING, &status },
		{ "timeout", FLAG_STRING, &timeout },
	};
	char path[1024] = "/v1/members";
	const char *sep = "?";
	json_t *arr;
	int rc, tmo;

	rc = cli_flags("members", members_usage, argc, argv, flags, NFLAGS(flags), &help);
	if (rc)
		return rc;
	if (help) {
		printf("%s%s", members_usage, members_help);
		return EXIT_OK_;
	}
	if (status && strcmp(status, "alive") && strcmp(status, "suspect") &&
	    strcmp(status, "failed") && strcmp(status, "left")) {
		fprintf(stderr,
			"meridian members: --status must be one of alive, suspect, failed, left "
			"(got \"%s\")\n%s",
			status, members_usage);
		return EXIT_USAGE;
	}
	if (region && !*region) {
		fprintf(stderr, "meridian members: --region needs a region name\n%s",
			members_usage);
		return EXIT_USAGE;
	}
	rc = timeout_get("members", members_usage, timeout, CALL_TIMEOUT_MS_DEFAULT, &tmo);
	if (rc)
		return rc;
	if (region) {
		strcat(path, "?region=");
		if (url_encode(region, path, sizeof(path)) < 0) {
			fprintf(stderr, "meridian members: --region is too long\n");
			return EXIT_USAGE;
		}
		sep = "&";
	}
	if (status) {
		strcat(path, sep);
		strcat(path, "status=");
		strcat(path, status);
	}
	api = api_addr(api);
	rc = api_call(api, "GET", path, tmo, &arr);
	if (rc)
		return rc;
	if (!json_is_array(arr)) {
		fprintf(stderr, "meridian: the agent at %s sent %s where a member list was "
			"expected\n", api, json_is_object(arr) ? "an object" : "a non-array");
		json_decref(arr);
		return EXIT_REMOTE_ERROR;
	}
	rc = json ? print_json(arr) : members_table(arr);
	json_decref(arr);
	return output_done(rc);
}

/* ---- meridian info ---- */

static const char info_usage[] = "usage: meridian info [--json] [--api ADDR] [--timeout D]\n";

static const char info_help[] =
	"\n"
	"Shows this node as its agent sees itself: name, address, region, primary\n"
	"region, whether it is in the primary region, status, incarnation, version,\n"
	"protocol range, timing profile, member counts, the regions (alive nodes of\n"
	"all nodes) and the leader.  When live nodes disagree on PRIMARY_REGION (a\n"
	"configuration error the agent never resolves) a \"PRIMARY_REGION CONFLICT\"\n"
	"line comes first, naming each value, how many nodes hold it and one of them.\n"
	"\n"
	"  --json         the API's JSON object (GET /v1/self)\n"
	"  --api ADDR     the agent's API (default: $MERIDIAN_API, else " API_DEFAULT ")\n"
	"  --timeout D    how long to wait for the agent (default 10s)\n";

/* The longest key, "cluster_primary:", and one space. */
#define INFO_KEY_WIDTH 17

static void info_line(const char *key, const char *value)
{
	char k[32], v[512];

	snprintf(k, sizeof(k), "%s:", key);
	sanitize(value, v, sizeof(v));
	printf("%-*s%s\n", INFO_KEY_WIDTH, k, v);
}

static const char *int_text(json_t *v, char *buf, size_t len)
{
	if (json_is_integer(v))
		snprintf(buf, len, "%lld", (long long)json_integer_value(v));
	else
		snprintf(buf, len, "-");
	return buf;
}

/* The loud line: live nodes disagree on PRIMARY_REGION.  Nothing when
 * "primary_conflict" is empty or absent (an older agent). */
static void info_conflict(json_t *self)
{
	json_t *votes = json_object_get(self, "primary_conflict");
	size_t i;
	json_t *v;

	if (json_array_size(votes) < 2)
		return;
	fputs("PRIMARY_REGION CONFLICT: live nodes disagree on the primary region:", stdout);
	json_array_foreach(votes, i, v) {
		json_t *count = json_object_get(v, "count");
		char p[64], e[160], n[32];

		sanitize(jstr(v, "primary_region"), p, sizeof(p));
		sanitize(jstr(v, "example"), e, sizeof(e));
		printf("%s \"%s\" on %s node%s (e.g. %s)", i ? "," : "", p,
		       int_text(count, n, sizeof(n)),
		       json_integer_value(count) == 1 ? "" : "s", e);
	}
	fputs("; set the same PRIMARY_REGION on every node\n", stdout);
}

/* One line per region: "fra  2 alive of 2"; "none" when there is none. */
static void info_regions(json_t *self)
{
	json_t *regions = json_object_get(self, "regions");
	size_t i, width = 0;
	json_t *r;

	if (json_array_size(regions) == 0) {
		info_line("regions", json_is_array(regions) ? "none" : "-");
		return;
	}
	json_array_foreach(regions, i, r)
		if (strlen(jstr(r, "name")) > width)
			width = strlen(jstr(r, "name"));
	json_array_foreach(regions, i, r) {
		char name[64], line[160], a[32], b[32];

		sanitize(jstr(r, "name"), name, sizeof(name));
		snprintf(line, sizeof(line), "%-*s  %s alive of %s",
			 (int)(width < 40 ? width : 40), name,
			 int_text(json_object_get(r, "alive"), a, sizeof(a)),
			 int_text(json_object_get(r, "nodes"), b, sizeof(b)));
		if (i == 0)
			info_line("regions", line);
		else
			printf("%-*s%s\n", INFO_KEY_WIDTH, "", line);
	}
}

static void info_text(json_t *self)
{
	json_t *proto = json_object_get(self, "protocol");
	json_t *mem = json_object_get(self, "members");
	json_t *leader = json_object_get(self, "leader");
	json_t *prim = json_object_get(self, "is_primary");
	json_t *cluster = json_object_get(self, "cluster_primary_region");
	char buf[512], a[32], b[32], c[32], d[32];

	info_conflict(self);
	info_line("name", jstr(self, "name"));
	info_line("addr", jstr(self, "addr"));
	info_line("region", jstr(self, "region"));
	info_line("primary_region", jstr(self, "primary_region"));
	if (json_is_string(cluster))
		info_line("cluster_primary", json_string_value(cluster));
	else if (json_is_null(cluster))
		info_line("cluster_primary", "none (nodes disagree)");
	info_line("is_primary", json_is_boolean(prim) ? (json_is_true(prim) ? "true" : "false")
						      : "-");
	info_line("status", jstr(self, "status"));
	info_line("incarnation", int_text(json_object_get(self, "incarnation"), a, sizeof(a)));
	info_line("version", jstr(self, "version"));
	snprintf(buf, sizeof(buf), "%s..%s", int_text(json_object_get(proto, "min"), a, sizeof(a)),
		 int_text(json_object_get(proto, "max"), b, sizeof(b)));
	info_line("protocol", buf);
	info_line("profile", jstr(self, "profile"));
	snprintf(buf, sizeof(buf), "%s alive, %s suspect, %s failed, %s left",
		 int_text(json_object_get(mem, "alive"), a, sizeof(a)),
		 int_text(json_object_get(mem, "suspect"), b, sizeof(b)),
		 int_text(json_object_get(mem, "failed"), c, sizeof(c)),
		 int_text(json_object_get(mem, "left"), d, sizeof(d)));
	info_line("members", buf);
	info_regions(self);
	/* GET /v1/leader's object; its node is null while none is known. */
	if (json_is_object(leader) && json_is_string(json_object_get(leader, "node"))) {
		char node[GOSSIP_NAME_MAX + 1];

		sanitize(jstr(leader, "node"), node, sizeof(node));
		snprintf(buf, sizeof(buf), "%s (region %s, term %lld, %s)%s", node,
			 jstr(leader, "region"),
			 (long long)json_integer_value(json_object_get(leader, "term")),
			 jstr(leader, "backend"),
			 json_is_true(json_object_get(leader, "self")) ? " this node" : "");
		info_line("leader", buf);
	} else {
		info_line("leader", "none");
	}
	if (json_is_object(json_object_get(self, "replication"))) {
		json_t *r = json_object_get(self, "replication");

		snprintf(buf, sizeof(buf), "%s, lag %lld bytes / %.3f s, %lld transactions "
			 "buffered", json_is_true(json_object_get(r, "consuming")) ? "consuming" :
			 "paused", (long long)json_integer_value(json_object_get(r, "lag_bytes")),
			 json_number_value(json_object_get(r, "lag_seconds")),
			 (long long)json_integer_value(json_object_get(r, "outbox_transactions")));
		info_line("replication", buf);
	}
}

int cmd_info(int argc, char **argv)
{
	const char *api = NULL, *timeout = NULL;
	bool json = false, help = false;
	const struct flag flags[] = {
		{ "api", FLAG_STRING, &api },
		{ "json", FLAG_BOOL, &json },
		{ "timeout", FLAG_STRING, &timeout },
	};
	json_t *self;
	int rc, tmo;

	rc = cli_flags("info", info_usage, argc, argv, flags, NFLAGS(flags), &help);
	if (rc)
		return rc;
	if (help) {
		printf("%s%s", info_usage, info_help);
		return EXIT_OK_;
	}
	rc = timeout_get("info", info_usage, timeout, CALL_TIMEOUT_MS_DEFAULT, &tmo);
	if (rc)
		return rc;
	api = api_addr(api);
	rc = api_call(api, "GET", "/v1/self", tmo, &self);
	if (rc)
		return rc;
	if (!json_is_object(self)) {
		fprintf(stderr, "meridian: the agent at %s sent no object for /v1/self\n", api);
		json_decref(self);
		return EXIT_REMOTE_ERROR;
	}
	if (json)
		rc = print_json(self);
	else
		info_text(self);
	json_decref(self);
	return output_done(rc);
}

/* ---- meridian leave ---- */

static const char leave_usage[] = "usage: meridian leave [--api ADDR] [--timeout D]\n";

static const char leave_help[] =
	"\n"
	"Asks the local agent to leave the cluster gracefully and waits until it has\n"
	"exited; prints \"left\".  Exits 4 if the agent still answers at the deadline.\n"
	"\n"
	"  --api ADDR     the agent's API (default: $MERIDIAN_API, else " API_DEFAULT ")\n"
	"  --timeout D    how long to wait for the agent to exit (default 15s)\n";

/* Signed, for deadline arithmetic that may go below zero. */
static int64_t now_ms(void)
{
	return (int64_t)clock_mono_ms();
}

static void sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

int cmd_leave(int argc, char **argv)
{
	const char *api = NULL, *timeout = NULL;
	bool help = false;
	const struct flag flags[] = {
		{ "api", FLAG_STRING, &api },
		{ "timeout", FLAG_STRING, &timeout },
	};
	struct http_reply r;
	int64_t deadline;
	int rc, tmo;

	rc = cli_flags("leave", leave_usage, argc, argv, flags, NFLAGS(flags), &help);
	if (rc)
		return rc;
	if (help) {
		printf("%s%s", leave_usage, leave_help);
		return EXIT_OK_;
	}
	rc = timeout_get("leave", leave_usage, timeout, LEAVE_TIMEOUT_MS_DEFAULT, &tmo);
	if (rc)
		return rc;
	api = api_addr(api);
	deadline = now_ms() + tmo;

	rc = http_call(api, "POST", "/v1/leave", NULL, 0, tmo, &r);
	if (rc == 0 && r.status / 100 != 2) {
		rc = report_http_error(api, &r);
		http_reply_free(&r);
		return rc;
	}
	http_reply_free(&r);
	/* An agent that exits before its answer is sent has left too. */
	if (rc < 0 && rc != -ECONNRESET)
		return report_call_error(api, rc, tmo);

	/* Wait until nothing answers any more: the agent has exited. */
	for (;;) {
		int64_t left = deadline - now_ms();

		if (left <= 0)
			break;
		rc = http_call(api, "GET", "/healthz", NULL, 0, left < 1000 ? (int)left : 1000, &r);
		http_reply_free(&r);
		if (rc == -ECONNREFUSED) {
			printf("left\n");
			return output_done(EXIT_OK_);
		}
		if (rc == -EINVAL)
			return report_call_error(api, rc, tmo);
		left = deadline - now_ms();
		if (left <= 0)
			break;
		sleep_ms(left < LEAVE_POLL_MS ? (int)left : LEAVE_POLL_MS);
	}
	fprintf(stderr, "meridian: the agent at %s is still running %d ms after it was asked to "
		"leave\n", api, tmo);
	return EXIT_TIMEOUT;
}

/* ---- meridian keygen, meridian version ---- */

static const char keygen_usage[] = "usage: meridian keygen\n";

int cmd_keygen(int argc, char **argv)
{
	char key[128];
	bool help = false;
	int rc;

	rc = cli_flags("keygen", keygen_usage, argc, argv, NULL, 0, &help);
	if (rc)
		return rc;
	if (help) {
		printf("%s\nPrints a new random cluster secret (base64 of 32 random bytes).\n"
		       "Use it as MERIDIAN_SECRET on every node:\n\n"
		       "  export MERIDIAN_SECRET=$(meridian keygen)\n",
		       keygen_usage);
		return EXIT_OK_;
	}
	seal_keygen(key, sizeof(key));
	printf("%s\n", key);
	return output_done(EXIT_OK_);
}

static const char version_usage[] = "usage: meridian version [--json]\n";

int cmd_version(int argc, char **argv)
{
	bool json = false, help = false;
	const struct flag flags[] = { { "json", FLAG_BOOL, &json } };
	json_t *v;
	int rc;

	rc = cli_flags("version", version_usage, argc, argv, flags, NFLAGS(flags), &help);
	if (rc)
		return rc;
	if (help) {
		printf("%s\nPrints this build's version and the gossip protocol versions it "
		       "speaks.\n", version_usage);
		return EXIT_OK_;
	}
	if (!json) {
		printf("meridian %s (protocol %d..%d)\n", MERIDIAN_VERSION, GOSSIP_PROTO_MIN,
		       GOSSIP_PROTO_VERSION);
		return output_done(EXIT_OK_);
	}
	v = json_pack("{s:s, s:{s:i, s:i}}", "version", MERIDIAN_VERSION, "protocol", "min",
		      GOSSIP_PROTO_MIN, "max", GOSSIP_PROTO_VERSION);
	if (!v) {
		fprintf(stderr, "meridian: out of memory\n");
		return EXIT_REMOTE_ERROR;
	}
	rc = print_json(v);
	json_decref(v);
	return output_done(rc);
}

/* ---- meridian rpc ---- */

static const char rpc_usage[] =
	"usage: meridian rpc (--region R | --primary | --leader | --node N) [--timeout D]\n"
	"                    [--json] [--api ADDR] METHOD [ARG...]\n";

static const char rpc_help[] =
	"\n"
	"Runs METHOD on a node of the chosen target, through the local agent (POST\n"
	"/v1/rpc), and prints its result: JSON as it came, text as it is.  The\n"
	"arguments are strings (sent as a JSON array of strings).  A call to this\n"
	"node's own region runs here, without the network.\n"
	"\n"
	"  --region R     any alive node of region R (the nearest by round-trip time)\n"
	"  --primary      any alive node of the primary region\n"
	"  --leader       the elected leader (not available yet: exit 3)\n"
	"  --node N       the node named N\n"
	"  --timeout D    the call's deadline (default 5s): e.g. 500ms, 2s\n"
	"  --json         print the agent's whole JSON answer\n"
	"  --api ADDR     the agent's API (default: $MERIDIAN_API, else " API_DEFAULT ")\n"
	"\n"
	"Exit codes: 0 ok; 1 the remote side answered with an error (remote_error,\n"
	"no_such_method, version_mismatch); 2 usage; 3 no target (no_such_region,\n"
	"no_nodes_in_region, no_such_node, no_leader), unavailable, overloaded, or no\n"
	"agent; 4 timeout.\n";

#define RPC_CLI_TIMEOUT_MS_DEFAULT 5000
#define RPC_CLI_GRACE_MS 5000   /* the agent answers timeouts itself: wait past them */

/* The exit code of an error code from POST /v1/rpc. */
static int rpc_exit_code(const char *code, int status)
{
	static const char *const unavailable[] = {
		"no_such_region", "no_nodes_in_region", "no_such_node", "unavailable",
		"no_leader", "overloaded", "connection_lost",
	};

	if (code == NULL)
		return status == 503 ? EXIT_UNAVAILABLE : EXIT_REMOTE_ERROR;
	if (strcmp(code, "timeout") == 0)
		return EXIT_TIMEOUT;
	if (strcmp(code, "bad_request") == 0)
		return EXIT_USAGE;
	for (size_t i = 0; i < NFLAGS(unavailable); i++)
		if (strcmp(code, unavailable[i]) == 0)
			return EXIT_UNAVAILABLE;
	return EXIT_REMOTE_ERROR;
}

/* Prints the answer of a successful call: the result alone, or all of it. */
static int rpc_print(json_t *root, bool json)
{
	json_t *result = json_object_get(root, "result");

	if (json)
		return print_json(root);
	if (json_is_string(result)) {
		/* The handler's own text: printed as it is (it is the user's). */
		fputs(json_string_value(result), stdout);
		putchar('\n');
		return EXIT_OK_;
	}
	if (result == NULL)
		result = json_null();
	{
		char *s = json_dumps(result, JSON_COMPACT | JSON_ENCODE_ANY);

		if (s == NULL) {
			fprintf(stderr, "meridian rpc: out of memory\n");
			return EXIT_REMOTE_ERROR;
		}
		puts(s);
		free(s);
	}
	return EXIT_OK_;
}

int cmd_rpc(int argc, char **argv)
{
	const char *region = NULL, *node = NULL, *timeout = NULL, *api = NULL;
	bool primary = false, leader = false, json = false;
	int i, rc, tmo, ntargets;
	struct http_reply r;
	json_t *req, *args, *root, *e;
	char *body;

	bool help = false;
	const struct flag flags[] = {
		{ "region", FLAG_STRING, &region },
		{ "node", FLAG_STRING, &node },
		{ "primary", FLAG_BOOL, &primary },
		{ "leader", FLAG_BOOL, &leader },
		{ "json", FLAG_BOOL, &json },
		{ "timeout", FLAG_STRING, &timeout },
		{ "api", FLAG_STRING, &api },
	};

	rc = cli_flags_args("rpc", rpc_usage, argc, argv, flags, NFLAGS(flags), &help, &i);
	if (rc)
		return rc;
	if (help) {
		printf("%s%s", rpc_usage, rpc_help);
		return EXIT_OK_;
	}
	ntargets = (region != NULL) + (node != NULL) + primary + leader;
	if (ntargets != 1)
		return usage_error("rpc", rpc_usage, "%s", ntargets ?
				   "give only one of --region, --primary, --leader, --node" :
				   "give one of --region, --primary, --leader, --node");
	if (i >= argc)
		return usage_error("rpc", rpc_usage, "%s", "no METHOD given");
	rc = timeout_get("rpc", rpc_usage, timeout, RPC_CLI_TIMEOUT_MS_DEFAULT, &tmo);
	if (rc)
		return rc;
	api = api_addr(api);

	args = json_array();
	for (int j = i + 1; args && j < argc; j++)
		if (json_array_append_new(args, json_string(argv[j])) != 0) {
			json_decref(args);
			return usage_error("rpc", rpc_usage, "argument \"%s\" is not valid UTF-8",
					   argv[j]);
		}
	req = json_pack("{s:s,s:o,s:i}", "method", argv[i], "args", args, "timeout_ms", tmo);
	if (req && region)
		json_object_set_new(req, "region", json_string(region));
	if (req && node)
		json_object_set_new(req, "node", json_string(node));
	if (req && (primary || leader))
		json_object_set_new(req, primary ? "primary" : "leader", json_true());
	body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (body == NULL) {
		fprintf(stderr, "meridian rpc: out of memory (or METHOD is not UTF-8)\n");
		return EXIT_USAGE;
	}
	/* The agent answers a timeout itself, a little after @tmo: wait for it. */
	rc = http_call(api, "POST", "/v1/rpc", body, strlen(body), tmo + RPC_CLI_GRACE_MS, &r);
	free(body);
	if (rc < 0)
		return report_call_error(api, rc, tmo + RPC_CLI_GRACE_MS);
	root = json_loadb(r.body, r.body_len, 0, NULL);
	if (r.status / 100 == 2 && json_is_object(root)) {
		http_reply_free(&r);
		rc = rpc_print(root, json);
		json_decref(root);
		return output_done(rc);
	}
	e = json_object_get(root, "error");
	if (json && root) {
		print_json(root);
	} else if (json_is_object(e)) {
		print_api_error("meridian rpc", e);
	} else {
		fprintf(stderr, "meridian rpc: the agent at %s answered HTTP %d\n", api, r.status);
	}
	rc = rpc_exit_code(json_string_value(json_object_get(e, "code")), r.status);
	json_decref(root);
	http_reply_free(&r);
	return output_done(rc);
}

/* ---- meridian leader ---- */

static const char leader_usage[] =
	"usage: meridian leader [--json] [--api ADDR] [--timeout D]\n";

static const char leader_help[] =
	"\n"
	"Shows the leader of the primary region as the local agent knows it: its\n"
	"node, region, term (the fencing token, which only grows), since when it\n"
	"leads and the election backend; and this node's own role.  Exits 3 when\n"
	"no leader is known (none elected yet, or the news has not arrived).\n"
	"\n"
	"  --json         print the agent's JSON answer (GET /v1/leader)\n"
	"  --api ADDR     the agent's API (default: $MERIDIAN_API, else " API_DEFAULT ")\n"
	"  --timeout D    how long to wait for the agent (default 10s)\n";

int cmd_leader(int argc, char **argv)
{
	const char *api = NULL, *timeout = NULL;
	bool json = false, help = false;
	const struct flag flags[] = {
		{ "api", FLAG_STRING, &api },
		{ "json", FLAG_BOOL, &json },
		{ "timeout", FLAG_STRING, &timeout },
	};
	json_t *l;
	int rc, tmo;
	bool known;

	rc = cli_flags("leader", leader_usage, argc, argv, flags, NFLAGS(flags), &help);
	if (rc)
		return rc;
	if (help) {
		printf("%s%s", leader_usage, leader_help);
		return EXIT_OK_;
	}
	rc = timeout_get("leader", leader_usage, timeout, CALL_TIMEOUT_MS_DEFAULT, &tmo);
	if (rc)
		return rc;
	api = api_addr(api);
	rc = api_call(api, "GET", "/v1/leader", tmo, &l);
	if (rc)
		return rc;
	known = json_is_string(json_object_get(l, "node"));
	if (json) {
		rc = print_json(l);
	} else if (known) {
		char node[GOSSIP_NAME_MAX + 1], region[64];

		sanitize(jstr(l, "node"), node, sizeof(node));
		sanitize(jstr(l, "region"), region, sizeof(region));
		printf("%s (%s), term %lld, since %s, backend %s%s\n", node, region,
		       (long long)json_integer_value(json_object_get(l, "term")), jstr(l, "since"),
		       jstr(l, "backend"), json_is_true(json_object_get(l, "self")) ?
		       " (this node)" : "");
	} else {
		fprintf(stderr, "meridian: no leader known (backend %s; this node: %s)\n",
			jstr(l, "backend"), jstr(l, "role"));
	}
	json_decref(l);
	rc = output_done(rc);
	return rc ? rc : known ? EXIT_OK_ : EXIT_UNAVAILABLE;
}

/* ---- meridian watch ---- */

static const char watch_usage[] =
	"usage: meridian watch [--json] [--changes | --types T[,T...]] [--api ADDR] [--timeout D]\n";

static const char watch_help[] =
	"\n"
	"Streams the local agent's events until interrupted (GET /v1/events): member\n"
	"events (join, update, suspect, alive, failed, left, reap) and leader events\n"
	"(the known leader changed; the first one says who leads now).  One line per\n"
	"event; with --json the event's JSON object.  Exits 3 when the agent closes the\n"
	"stream (it stopped), 1 when it cut this watcher off (too slow to read).\n"
	"\n"
	"  --changes      only change events: one per row inserted, updated or deleted\n"
	"                 (or table truncated) in the primary database, fanned out by the\n"
	"                 leader to every region: {\"lsn\",\"xid\",\"table\",\"op\",\"new\",\n"
	"                 \"old\",\"commit_time\",\"term\"}; at least once, in commit order\n"
	"  --types T      only these types, comma-separated: member, leader, change\n"
	"  --json         one JSON object per line\n"
	"  --api ADDR     the agent's API (default: $MERIDIAN_API, else " API_DEFAULT ")\n"
	"  --timeout D    how long to wait for the agent to answer (default 10s)\n";

#define WATCH_BUF_MAX (1024 * 1024)

struct watch {
	bool json;
	bool cut;                     /* the agent sent an error event */
	char *buf;                    /* an event not yet complete */
	size_t len;
};

static void watch_print(struct watch *w, const char *type, json_t *ev)
{
	char a[GOSSIP_NAME_MAX + 1], b[64], c[64];

	if (w->json) {
		char *s = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);

		if (s)
			puts(s);
		free(s);
	} else if (strcmp(type, "leader") == 0) {
		if (json_is_string(json_object_get(ev, "node"))) {
			sanitize(jstr(ev, "node"), a, sizeof(a));
			sanitize(jstr(ev, "region"), b, sizeof(b));
			printf("%s leader %s (%s) term %lld%s\n", jstr(ev, "time"), a, b,
			       (long long)json_integer_value(json_object_get(ev, "term")),
			       json_is_true(json_object_get(ev, "self")) ? " (this node)" : "");
		} else {
			printf("%s leader none\n", jstr(ev, "time"));
		}
	} else if (strcmp(type, "member") == 0) {
		sanitize(jstr(ev, "node"), a, sizeof(a));
		sanitize(jstr(ev, "region"), b, sizeof(b));
		sanitize(jstr(ev, "event"), c, sizeof(c));
		printf("%s member %s (%s, %s) %s\n", jstr(ev, "time"), a, b, jstr(ev, "addr"), c);
	} else if (strcmp(type, "error") == 0) {
		sanitize(jstr(ev, "reason"), a, sizeof(a));
		fprintf(stderr, "meridian: the agent ended the stream: %s\n", a);
	} else {
		char *s = json_dumps(ev, JSON_COMPACT);

		sanitize(type, a, sizeof(a));
		printf("%s %s %s\n", jstr(ev, "time"), a, s ? s : "");
		free(s);
	}
	fflush(stdout);
}

/* One whole SSE event: "event:" and "data:" lines; comments ignored. */
static void watch_event(struct watch *w, char *text)
{
	char type[32] = "message";
	const char *data = NULL;
	json_t *ev;

	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		if (strncmp(line, "event: ", 7) == 0)
			snprintf(type, sizeof(type), "%s", line + 7);
		else if (strncmp(line, "data: ", 6) == 0)
			data = line + 6;
	}
	if (data == NULL)
		return;
	ev = json_loads(data, 0, NULL);
	if (!json_is_object(ev)) {
		fprintf(stderr, "meridian: skipping an event that is not a JSON object\n");
		json_decref(ev);
		return;
	}
	if (strcmp(type, "error") == 0)
		w->cut = true;
	watch_print(w, type, ev);
	json_decref(ev);
}

static int watch_chunk(void *ctx, const char *data, size_t len)
{
	struct watch *w = ctx;
	char *end;

	if (w->len + len + 1 > WATCH_BUF_MAX) {
		fprintf(stderr, "meridian: an event larger than %d bytes: giving up\n",
			WATCH_BUF_MAX);
		return -EMSGSIZE;
	}
	memcpy(w->buf + w->len, data, len);
	w->len += len;
	w->buf[w->len] = '\0';
	while ((end = strstr(w->buf, "\n\n")) != NULL) {
		size_t n = (size_t)(end - w->buf) + 2;

		*end = '\0';
		watch_event(w, w->buf);
		memmove(w->buf, w->buf + n, w->len - n + 1);
		w->len -= n;
	}
	return ferror(stdout) ? -EPIPE : 0;
}

int cmd_watch(int argc, char **argv)
{
	const char *api = NULL, *timeout = NULL, *types = NULL;
	bool help = false, changes = false;
	struct watch w = { 0 };
	const struct flag flags[] = {
		{ "api", FLAG_STRING, &api },
		{ "json", FLAG_BOOL, &w.json },
		{ "changes", FLAG_BOOL, &changes },
		{ "types", FLAG_STRING, &types },
		{ "timeout", FLAG_STRING, &timeout },
	};
	char path[256], enc[192];
	struct http_reply r;
	int rc, tmo;

	rc = cli_flags("watch", watch_usage, argc, argv, flags, NFLAGS(flags), &help);
	if (rc)
		return rc;
	if (help) {
		printf("%s%s", watch_usage, watch_help);
		return EXIT_OK_;
	}
	rc = timeout_get("watch", watch_usage, timeout, CALL_TIMEOUT_MS_DEFAULT, &tmo);
	if (rc)
		return rc;
	snprintf(path, sizeof(path), "/v1/events");
	if (changes && types) {
		fprintf(stderr, "meridian watch: give --changes or --types, not both\n%s",
			watch_usage);
		return EXIT_USAGE;
	}
	if (changes)
		types = "change";
	if (types) {
		if (url_encode(types, enc, sizeof(enc)) != 0) {
			fprintf(stderr, "meridian watch: --types is too long\n%s", watch_usage);
			return EXIT_USAGE;
		}
		snprintf(path, sizeof(path), "/v1/events?types=%s", enc);
	}
	w.buf = malloc(WATCH_BUF_MAX);
	if (w.buf == NULL) {
		fprintf(stderr, "meridian: out of memory\n");
		return EXIT_REMOTE_ERROR;
	}
	api = api_addr(api);
	/* Quiet is fine: the agent sends a keepalive every 15 s, so 60 s of
	 * silence means it is gone. */
	rc = http_call_stream(api, "GET", path, NULL, 0, tmo, 60000, watch_chunk, &w, &r);
	free(w.buf);
	if (rc < 0 && r.status == 0)
		return report_call_error(api, rc, tmo);
	if (r.status / 100 != 2) {
		rc = report_http_error(api, &r);
		http_reply_free(&r);
		return rc;
	}
	http_reply_free(&r);
	if (w.cut)
		return EXIT_REMOTE_ERROR;
	if (rc == -EPIPE)
		return EXIT_OK_;
	fprintf(stderr, "meridian: the agent at %s closed the event stream%s\n", api,
		rc == -ETIMEDOUT ? " (silent for 60 s)" : "");
	return rc == -ETIMEDOUT ? EXIT_TIMEOUT : EXIT_UNAVAILABLE;
}

/* ---- meridian sql ---- */

static const char sql_usage[] =
	"usage: meridian sql [--write [--wait]] [--min-lsn LSN] [--json] [--timeout D]\n"
	"                    [--api ADDR] SQL [PARAM...]\n";

static const char sql_help[] =
	"\n"
	"Runs one SQL statement through the local agent (POST /v1/sql).  A read runs\n"
	"on this region's replica (DATABASE_URL); --write runs on the primary: here in\n"
	"the primary region, else forwarded by RPC to a primary-region node, and\n"
	"answers with the commit's LSN.  Parameters are $1, $2, ... in the SQL, always\n"
	"sent apart from it; a PARAM of exactly \\N is SQL NULL.\n"
	"\n"
	"  --write        the statement writes: run it on the primary\n"
	"  --wait         with --write: answer once this region's replica has replayed\n"
	"                 the write, so the next local read sees it (at most the agent's\n"
	"                 --replica-lag-timeout, then replica_lag_timeout, exit 4)\n"
	"  --min-lsn LSN  a read that waits until the replica has replayed LSN\n"
	"  --json         the agent's whole answer: columns, rows, command, lsn, node\n"
	"  --timeout D    the statement's deadline (default 5s)\n"
	"  --api ADDR     the agent's API (default: $MERIDIAN_API, else " API_DEFAULT ")\n"
	"\n"
	"Exit: 0 ok; 1 Postgres refused the statement (its SQLSTATE is shown) or the\n"
	"result is too large; 2 usage; 3 no database, no primary-region node, or\n"
	"overloaded; 4 timed out, replica_lag_timeout, or outcome_unknown (a forwarded\n"
	"write whose answer was lost: it may have committed; not retried).\n";

static int sql_exit_code(const char *code)
{
	static const char *const timeouts[] = { "timeout", "replica_lag_timeout",
						"outcome_unknown" };
	static const char *const unavailable[] = { "database_unavailable", "overloaded",
						   "unavailable", "no_such_region",
						   "no_nodes_in_region" };

	if (code == NULL)
		return EXIT_REMOTE_ERROR;
	if (strcmp(code, "bad_request") == 0)
		return EXIT_USAGE;
	for (size_t i = 0; i < NFLAGS(timeouts); i++)
		if (strcmp(code, timeouts[i]) == 0)
			return EXIT_TIMEOUT;
	for (size_t i = 0; i < NFLAGS(unavailable); i++)
		if (strcmp(code, unavailable[i]) == 0)
			return EXIT_UNAVAILABLE;
	return EXIT_REMOTE_ERROR;
}

/* One value as table text (malloc'd): NULL, numbers and booleans as JSON
 * writes them, strings with control characters replaced. */
static char *sql_cell(json_t *v)
{
	char *s;

	if (json_is_null(v))
		return strdup("NULL");
	if (json_is_string(v)) {
		size_t n = json_string_length(v) + 1;

		s = malloc(n);
		if (s)
			sanitize(json_string_value(v), s, n);
		return s;
	}
	s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	return s;
}

static int sql_print_table(json_t *root)
{
	json_t *cols = json_object_get(root, "columns"), *rows = json_object_get(root, "rows");
	size_t ncols = json_array_size(cols), nrows = json_array_size(rows);
	size_t *width = calloc(ncols ? ncols : 1, sizeof(*width));
	char **cells = calloc((nrows + 1) * (ncols ? ncols : 1), sizeof(*cells));
	const char *lsn = json_string_value(json_object_get(root, "lsn"));
	int rc = EXIT_OK_;

	if (width == NULL || cells == NULL) {
		rc = EXIT_REMOTE_ERROR;
		goto out;
	}
	for (size_t c = 0; c < ncols; c++)
		cells[c] = sql_cell(json_object_get(json_array_get(cols, c), "name"));
	for (size_t r = 0; r < nrows; r++)
		for (size_t c = 0; c < ncols; c++)
			cells[(r + 1) * ncols + c] = sql_cell(json_array_get(json_array_get(rows, r), c));
	for (size_t i = 0; i < (nrows + 1) * ncols; i++) {
		if (cells[i] == NULL) {
			rc = EXIT_REMOTE_ERROR;
			goto out;
		}
		if (text_width(cells[i]) > width[i % ncols])
			width[i % ncols] = text_width(cells[i]);
	}
	for (size_t r = 0; ncols && r <= nrows; r++)
		print_row(cells + r * ncols, width, (int)ncols);
	if (ncols)
		printf("(%zu row%s)\n", nrows, nrows == 1 ? "" : "s");
	else
		printf("%s\n", jstr(root, "command"));
	if (lsn)
		printf("lsn %s (%s, %s)\n", lsn, jstr(root, "node"), jstr(root, "region"));
out:
	if (cells)
		for (size_t i = 0; i < (nrows + 1) * ncols; i++)
			free(cells[i]);
	free(cells);
	free(width);
	if (rc)
		fprintf(stderr, "meridian sql: out of memory\n");
	return rc;
}

int cmd_sql(int argc, char **argv)
{
	const char *timeout = NULL, *api = NULL, *min_lsn = NULL;
	bool write = false, wait = false, json = false;
	struct http_reply r;
	json_t *req, *params, *root, *e;
	char *body;
	int i, rc, tmo;

	bool help = false;
	const struct flag flags[] = {
		{ "write", FLAG_BOOL, &write },
		{ "wait", FLAG_BOOL, &wait },
		{ "json", FLAG_BOOL, &json },
		{ "min-lsn", FLAG_STRING, &min_lsn },
		{ "timeout", FLAG_STRING, &timeout },
		{ "api", FLAG_STRING, &api },
	};

	rc = cli_flags_args("sql", sql_usage, argc, argv, flags, NFLAGS(flags), &help, &i);
	if (rc)
		return rc;
	if (help) {
		printf("%s%s", sql_usage, sql_help);
		return EXIT_OK_;
	}
	if (i >= argc)
		return usage_error("sql", sql_usage, "%s", "no SQL given");
	if (wait && !write)
		return usage_error("sql", sql_usage, "%s",
				   "--wait goes with --write (a read waits with --min-lsn)");
	if (min_lsn && write)
		return usage_error("sql", sql_usage, "%s", "--min-lsn is for reads");
	rc = timeout_get("sql", sql_usage, timeout, CALL_TIMEOUT_MS_DEFAULT / 2, &tmo);
	if (rc)
		return rc;
	api = api_addr(api);

	params = json_array();
	for (int j = i + 1; params && j < argc; j++) {
		json_t *p = strcmp(argv[j], "\\N") == 0 ? json_null() : json_string(argv[j]);

		if (p == NULL || json_array_append_new(params, p) != 0) {
			json_decref(params);
			return usage_error("sql", sql_usage,
					   "parameter \"%.40s\" is not valid UTF-8", argv[j]);
		}
	}
	req = json_pack("{s:s,s:o,s:b,s:b,s:i}", "sql", argv[i], "params", params, "write", write,
			"wait", wait, "timeout_ms", tmo);
	if (req && min_lsn)
		json_object_set_new(req, "min_lsn", json_string(min_lsn));
	body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (body == NULL)
		return usage_error("sql", sql_usage, "%s",
				   "the SQL is not valid UTF-8 (or out of memory)");
	/* The statement's deadline, a wait for the replica (at most 5 min),
	 * and the trip: the agent always answers within that. */
	rc = http_call(api, "POST", "/v1/sql", body, strlen(body), tmo + 310000, &r);
	free(body);
	if (rc < 0)
		return report_call_error(api, rc, tmo + 310000);
	root = json_loadb(r.body, r.body_len, 0, NULL);
	e = json_object_get(root, "error");
	if (r.status / 100 != 2 || e) {
		if (!e) {
			rc = report_http_error(api, &r);
		} else {
			print_api_error("meridian sql", e);
			rc = sql_exit_code(json_string_value(json_object_get(e, "code")));
		}
		json_decref(root);
		http_reply_free(&r);
		return rc;
	}
	http_reply_free(&r);
	if (!json_is_object(root)) {
		fprintf(stderr, "meridian sql: the agent at %s sent no JSON object\n", api);
		json_decref(root);
		return EXIT_REMOTE_ERROR;
	}
	rc = json ? print_json(root) : sql_print_table(root);
	json_decref(root);
	return output_done(rc);
}
