/*
 * cmd/config.c - the agent's configuration (see config.h): flags, then
 * environment, then defaults, every value checked before it is used.
 *
 * The checks run in a fixed order (the flags' syntax and numbers, log
 * settings, identity, addresses, profile, seeds, tags, secret, and last
 * the timing as a whole), and the first failure is the one reported: one
 * clear message is worth more than a list the operator has to untangle.
 * The secret comes after every other input so that a typo in a flag is
 * reported before the agent touches the secret file.
 *
 * Each message names where the bad value came from (the flag, or the
 * variable) because in a deploy the environment is often set far from
 * where the agent is started, and "invalid region" alone sends people to
 * the wrong file.
 */
#include "cmd/config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/flags.h"
#include "lib/addr.h"
#include "region/region.h"

#ifndef MERIDIAN_VERSION
#define MERIDIAN_VERSION "0.0.0"
#endif

static const char usage_text[] =
"Usage: meridian agent [flags]\n"
"\n"
"Runs the Meridian agent in the foreground: joins the cluster, keeps the\n"
"membership view and serves the local API.  SIGTERM or SIGINT leaves the\n"
"cluster gracefully and exits 0; a second signal exits at once.\n"
"\n"
"Flags (each wins over the environment variable shown; \"--flag value\" or\n"
"\"--flag=value\"):\n"
"  --node NAME              node name, unique in the cluster, [A-Za-z0-9._-]{1,64}\n"
"                           (MERIDIAN_NODE; default: the host name)\n"
"  --bind HOST:PORT         gossip address, UDP and TCP (MERIDIAN_BIND; 0.0.0.0:7600)\n"
"  --advertise HOST:PORT    address peers should use (MERIDIAN_ADVERTISE; default:\n"
"                           the bound one, or the first non-loopback IPv4 address\n"
"                           when bound to 0.0.0.0 or [::])\n"
"  --api HOST:PORT          local HTTP API (MERIDIAN_API; 127.0.0.1:7601)\n"
"  --join HOST:PORT[,...]   seeds to join through; repeatable (MERIDIAN_JOIN)\n"
"  --region R               this node's region, [a-z0-9-]{1,32}\n"
"                           (MY_REGION, else FLY_REGION; default: local)\n"
"  --primary-region R       region of the writable primary (PRIMARY_REGION; local)\n"
"  --secret-file PATH       file holding the cluster secret (MERIDIAN_SECRET_FILE;\n"
"                           else the secret itself in MERIDIAN_SECRET).  Make one\n"
"                           with `meridian keygen`.  Required, except with --dev.\n"
"  --profile P              timing profile: lan (default), wan or local\n"
"  --probe-interval D       time between failure probes\n"
"  --probe-timeout D        wait for a direct ack before probing indirectly\n"
"                           (shorter than the probe interval)\n"
"  --suspicion-mult N       suspicion timeout multiplier (1 to 100)\n"
"  --gossip-interval D      time between gossip rounds\n"
"  --gossip-nodes N         members gossiped to per round (1 to 64)\n"
"  --pushpull-interval D    time between full state exchanges\n"
"  --reconnect-interval D   time between retries of a failed member\n"
"  --reconnect-timeout D    forget failed members after this long (24h)\n"
"  --tag KEY=VALUE          extra node tag; repeatable (keys [a-z0-9_.-]{1,32},\n"
"                           values up to 128 printable characters; at most 16\n"
"                           tags and 512 bytes in all, the agent's own included)\n"
"  --leave-timeout D        longest wait for a leave to spread (5s; at most 1h)\n"
"  --handler NAME=COMMAND   region RPC method NAME run by `/bin/sh -c COMMAND`\n"
"                           (arguments as JSON on stdin, result on stdout);\n"
"                           repeatable, at most 64\n"
"  --rpc-upstream URL       send other RPC methods to http://127.0.0.1:PORT/path\n"
"  --rpc-max-inflight N     RPCs served and made at once (1024; 1 to 65536)\n"
"  --drain-timeout D        on leave, wait this long for RPCs in flight (5s)\n"
"  --primary-database-url U the writable primary, a libpq URL (PRIMARY_DATABASE_URL)\n"
"  --database-url U         this region's read replica (DATABASE_URL); without it\n"
"                           a primary-region node reads from the primary\n"
"  --replica-lag-timeout D  longest wait for the replica to replay a write (5s;\n"
"                           at most 5m): `sql --wait`, min_lsn\n"
"  --replication-mode M     the leader's consumer of the logical slot: stream\n"
"                           (replication protocol; the default with a primary\n"
"                           database), poll (SQL functions, for databases that\n"
"                           refuse replication connections) or off\n"
"  --slot NAME              logical replication slot, created if missing (meridian)\n"
"  --publication NAME       publication, created FOR ALL TABLES if missing\n"
"                           (meridian)\n"
"  --changes-stuck-timeout D  a member that acknowledges no change for this long\n"
"                           stops holding back the slot (30s; 1s to 1h); it may\n"
"                           then miss changes (counted)\n"
"  --on-change COMMAND      run `/bin/sh -c COMMAND` for the agent's life and write\n"
"                           every change event to its stdin, one JSON line each\n"
"                           (restarted if it exits; stopped if 4 MiB behind)\n"
"  --election B             leader election backend: postgres (a lease row in the\n"
"                           primary database; the default when one is given) or\n"
"                           gossip (no database; not partition-safe)\n"
"  --lease D                postgres lease length, by the server's clock (5s)\n"
"  --lease-renew D          the leader renews, and followers poll, this often (1s)\n"
"  --lease-guard D          a leader whose renewals fail steps down this long\n"
"                           before its lease could expire at the server (1s; at\n"
"                           least 100ms); also the --on-leader grace\n"
"  --lease-name NAME        the lease row's key, one per cluster (meridian)\n"
"  --on-leader COMMAND      run `/bin/sh -c COMMAND` while this node leads, with\n"
"                           MERIDIAN_TERM, MERIDIAN_NODE and MERIDIAN_REGION set;\n"
"                           its process group gets SIGTERM when this node stops\n"
"                           leading (or dies), SIGKILL after --lease-guard\n"
"  --log-level L            debug, info, notice (default), warning, error\n"
"  --log-format F           text (default) or json (JSON lines with \"severity\")\n"
"  --dev                    single node on loopback with a throw-away secret:\n"
"                           node dev, bind 127.0.0.1:7600, api 127.0.0.1:7601,\n"
"                           profile local (each unless given)\n"
"  -h, --help               this text\n"
"\n"
"Durations: a number and a unit, ms, s, m or h (500ms, 2s, 1.5m, 24h), at least\n"
"1ms.  The timing flags default to the profile's values and take up to 49 days\n"
"(--reconnect-timeout: up to ten years).\n"
"\n"
"Environment:\n"
"  MERIDIAN_NODE, MERIDIAN_BIND, MERIDIAN_ADVERTISE, MERIDIAN_API, MERIDIAN_JOIN\n"
"                           (comma-separated), MY_REGION, FLY_REGION, PRIMARY_REGION,\n"
"                           MERIDIAN_SECRET, MERIDIAN_SECRET_FILE, DATABASE_URL,\n"
"                           PRIMARY_DATABASE_URL: as above.\n"
"\n"
"Tags set by the agent: region, primary_region, version (" MERIDIAN_VERSION "),\n"
"proto_min, proto_max, and leaving=1 while it shuts down (room for it is kept\n"
"free: ten --tag pairs at most).  --tag priority=N (0 to 1000000, default 0)\n"
"orders the gossip election: the lowest (priority, name) of the primary region\n"
"leads.  Exit status: 0 after a graceful leave, 1 when the\n"
"agent cannot start (address in use) or a second signal cut the leave short,\n"
"2 for usage and configuration errors.\n";

const char *config_usage(void)
{
	return usage_text;
}

/* ------------------------------------------------------------------ */
/* The environment                                                     */
/* ------------------------------------------------------------------ */

static const char *process_getenv(void *ctx, const char *name)
{
	(void)ctx;
	return getenv(name);
}

static const struct config_env process_env = { process_getenv, NULL };

const struct config_env *config_env_process(void)
{
	return &process_env;
}

/* The variable @name, or NULL when unset or empty. */
static const char *env_get(const struct config_env *env, const char *name)
{
	const char *v = env->getenv(env->ctx, name);

	return v && *v ? v : NULL;
}

/* ------------------------------------------------------------------ */
/* Checks of single values                                             */
/* ------------------------------------------------------------------ */

bool config_node_name_valid(const char *s)
{
	return gossip_name_valid(s);
}

bool config_region_valid(const char *s)
{
	/* one rule for the regions we are given and those peers advertise */
	_Static_assert(CONFIG_REGION_MAX == REGION_NAME_MAX, "one bound for region names");
	return region_name_valid(s);
}

int config_duration_parse(const char *s, uint64_t *ms)
{
	static const struct {
		const char *unit;
		uint64_t ms;
	} units[] = { { "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 } };
	uint64_t whole = 0, frac = 0, frac_div = 1, v;
	const char *p = s;
	size_t i;

	if (*p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (whole > 1000000000000ULL)
			return -EINVAL;   /* long past ten years in any unit */
		whole = whole * 10 + (uint64_t)(*p - '0');
	}
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return -EINVAL;
		/* Digits past the ninth cannot matter to a millisecond. */
		for (; *p >= '0' && *p <= '9'; p++) {
			if (frac_div < 1000000000ULL) {
				frac = frac * 10 + (uint64_t)(*p - '0');
				frac_div *= 10;
			}
		}
	}
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strcmp(p, units[i].unit) == 0)
			break;
	if (i == sizeof(units) / sizeof(units[0]))
		return -EINVAL;
	if (whole > 10ULL * 366 * 24 * 3600 * 1000 / units[i].ms)
		return -EINVAL;
	v = whole * units[i].ms + frac * units[i].ms / frac_div;
	if (v < 1)
		return -EINVAL;
	*ms = v;
	return 0;
}

/* A count from @lo to @hi: digits only. */
static int count_parse(const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
	char *end;
	unsigned long v;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v < lo || v > hi)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Errors                                                              */
/* ------------------------------------------------------------------ */

/* Records a usage error (with the pointer to --help); returns -EINVAL. */
static int usage_error(struct config *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int usage_error(struct config *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->error, sizeof(c->error), fmt, ap);
	va_end(ap);
	c->error_hint = true;
	return -EINVAL;
}

int config_exit_code(int rc)
{
	if (rc == 0 || rc == CONFIG_HELP)
		return 0;
	return rc == -EINVAL ? 2 : 1;
}

/* ------------------------------------------------------------------ */
/* The pieces                                                          */
/* ------------------------------------------------------------------ */

/* What the command line said, unchecked; values point into argv. */
struct raw {
	const char *node, *bind, *advertise, *api, *region, *primary;
	const char *secret_file, *profile, *log_level, *log_format;
	const char *probe_interval, *probe_timeout, *suspicion_mult, *gossip_interval;
	const char *gossip_nodes, *pushpull_interval, *reconnect_interval, *reconnect_timeout;
	const char *leave_timeout, *drain_timeout, *rpc_upstream, *rpc_max_inflight;
	const char *primary_database_url, *database_url, *election, *lease, *lease_renew;
	const char *lease_guard, *lease_name, *on_leader, *replica_lag_timeout;
	const char *replication_mode, *slot, *publication, *on_change, *changes_stuck;
	const char *handler_v[RPC_HANDLERS_MAX];
	struct flag_list handlers;
	const char *join_v[CONFIG_SEEDS_MAX];
	const char *tag_v[GOSSIP_TAGS_MAX];
	struct flag_list join, tags;
	bool dev;
};

/* Timing overrides; 0 = the profile's value. */
struct overrides {
	uint64_t probe_interval, probe_timeout, gossip_interval, pushpull_interval;
	uint64_t reconnect_interval, reconnect_timeout;
	uint32_t suspicion_mult, gossip_nodes;
};

static int raw_parse(struct config *c, struct raw *r, int argc, char **argv)
{
	const struct flag flags[] = {
		{ "node", FLAG_STRING, &r->node },
		{ "bind", FLAG_STRING, &r->bind },
		{ "advertise", FLAG_STRING, &r->advertise },
		{ "api", FLAG_STRING, &r->api },
		{ "join", FLAG_LIST, &r->join },
		{ "region", FLAG_STRING, &r->region },
		{ "primary-region", FLAG_STRING, &r->primary },
		{ "secret-file", FLAG_STRING, &r->secret_file },
		{ "profile", FLAG_STRING, &r->profile },
		{ "probe-interval", FLAG_STRING, &r->probe_interval },
		{ "probe-timeout", FLAG_STRING, &r->probe_timeout },
		{ "suspicion-mult", FLAG_STRING, &r->suspicion_mult },
		{ "gossip-interval", FLAG_STRING, &r->gossip_interval },
		{ "gossip-nodes", FLAG_STRING, &r->gossip_nodes },
		{ "pushpull-interval", FLAG_STRING, &r->pushpull_interval },
		{ "reconnect-interval", FLAG_STRING, &r->reconnect_interval },
		{ "reconnect-timeout", FLAG_STRING, &r->reconnect_timeout },
		{ "tag", FLAG_LIST, &r->tags },
		{ "leave-timeout", FLAG_STRING, &r->leave_timeout },
		{ "handler", FLAG_LIST, &r->handlers },
		{ "rpc-upstream", FLAG_STRING, &r->rpc_upstream },
		{ "rpc-max-inflight", FLAG_STRING, &r->rpc_max_inflight },
		{ "drain-timeout", FLAG_STRING, &r->drain_timeout },
		{ "primary-database-url", FLAG_STRING, &r->primary_database_url },
		{ "database-url", FLAG_STRING, &r->database_url },
		{ "election", FLAG_STRING, &r->election },
		{ "lease", FLAG_STRING, &r->lease },
		{ "lease-renew", FLAG_STRING, &r->lease_renew },
		{ "lease-guard", FLAG_STRING, &r->lease_guard },
		{ "lease-name", FLAG_STRING, &r->lease_name },
		{ "on-leader", FLAG_STRING, &r->on_leader },
		{ "replica-lag-timeout", FLAG_STRING, &r->replica_lag_timeout },
		{ "replication-mode", FLAG_STRING, &r->replication_mode },
		{ "slot", FLAG_STRING, &r->slot },
		{ "changes-stuck-timeout", FLAG_STRING, &r->changes_stuck },
		{ "publication", FLAG_STRING, &r->publication },
		{ "on-change", FLAG_STRING, &r->on_change },
		{ "log-level", FLAG_STRING, &r->log_level },
		{ "log-format", FLAG_STRING, &r->log_format },
		{ "dev", FLAG_BOOL, &r->dev },
	};
	char err[256];
	int rc;

	r->join = (struct flag_list){ r->join_v, 0, CONFIG_SEEDS_MAX, "flags" };
	r->tags = (struct flag_list){ r->tag_v, 0, GOSSIP_TAGS_MAX, "tags" };
	r->handlers = (struct flag_list){ r->handler_v, 0, RPC_HANDLERS_MAX, "handlers" };
	rc = flags_parse(argc, argv, flags, sizeof(flags) / sizeof(flags[0]), err, sizeof(err));
	if (rc < 0)
		return usage_error(c, "%s", err);
	return rc == FLAGS_HELP ? CONFIG_HELP : 0;
}

/* A duration flag, if given, into *@out (at most @max_ms). */
static int duration_flag(struct config *c, const char *flag, const char *v, uint64_t max_ms,
			 uint64_t *out)
{
	uint64_t ms;

	if (v == NULL)
		return 0;
	if (config_duration_parse(v, &ms) != 0 || ms > max_ms)
		return usage_error(c, "--%s: \"%s\" is not a valid duration (like 500ms, 2s, 24h)",
				   flag, v);
	*out = ms;
	return 0;
}

/* The numbers of the command line, checked before anything else as they
 * are pure syntax; 0 in @o means "not given: the profile's value". */
static int numbers_parse(struct config *c, const struct raw *r, struct overrides *o)
{
	if (duration_flag(c, "probe-interval", r->probe_interval, UINT32_MAX,
			  &o->probe_interval) ||
	    duration_flag(c, "probe-timeout", r->probe_timeout, UINT32_MAX, &o->probe_timeout) ||
	    duration_flag(c, "gossip-interval", r->gossip_interval, UINT32_MAX,
			  &o->gossip_interval) ||
	    duration_flag(c, "pushpull-interval", r->pushpull_interval, UINT32_MAX,
			  &o->pushpull_interval) ||
	    duration_flag(c, "reconnect-interval", r->reconnect_interval, UINT32_MAX,
			  &o->reconnect_interval) ||
	    duration_flag(c, "reconnect-timeout", r->reconnect_timeout, UINT64_MAX,
			  &o->reconnect_timeout) ||
	    duration_flag(c, "leave-timeout", r->leave_timeout, CONFIG_LEAVE_TIMEOUT_MS_MAX,
			  &c->leave_timeout_ms) ||
	    duration_flag(c, "drain-timeout", r->drain_timeout, CONFIG_DRAIN_TIMEOUT_MS_MAX,
			  &c->drain_timeout_ms) ||
	    duration_flag(c, "lease", r->lease, CONFIG_LEASE_MS_MAX, &c->lease_ms) ||
	    duration_flag(c, "lease-renew", r->lease_renew, CONFIG_LEASE_MS_MAX,
			  &c->lease_renew_ms) ||
	    duration_flag(c, "lease-guard", r->lease_guard, CONFIG_LEASE_MS_MAX,
			  &c->lease_guard_ms) ||
	    duration_flag(c, "replica-lag-timeout", r->replica_lag_timeout,
			  CONFIG_REPLICA_LAG_TIMEOUT_MS_MAX, &c->replica_lag_timeout_ms) ||
	    duration_flag(c, "changes-stuck-timeout", r->changes_stuck,
			  CONFIG_CHANGES_STUCK_MS_MAX, &c->changes_stuck_ms))
		return -EINVAL;
	if (c->changes_stuck_ms < CONFIG_CHANGES_STUCK_MS_MIN)
		return usage_error(c, "--changes-stuck-timeout: %llu ms is less than %d ms",
				   (unsigned long long)c->changes_stuck_ms,
				   CONFIG_CHANGES_STUCK_MS_MIN);
	if (r->rpc_max_inflight &&
	    count_parse(r->rpc_max_inflight, 1, CONFIG_RPC_INFLIGHT_MAX, &c->rpc_max_inflight) != 0)
		return usage_error(c, "--rpc-max-inflight: \"%s\" is not a number from 1 to %u",
				   r->rpc_max_inflight, CONFIG_RPC_INFLIGHT_MAX);
	if (r->suspicion_mult && count_parse(r->suspicion_mult, 1, 100, &o->suspicion_mult) != 0)
		return usage_error(c, "--suspicion-mult: \"%s\" is not a number from 1 to 100",
				   r->suspicion_mult);
	if (r->gossip_nodes && count_parse(r->gossip_nodes, 1, 64, &o->gossip_nodes) != 0)
		return usage_error(c, "--gossip-nodes: \"%s\" is not a number from 1 to 64",
				   r->gossip_nodes);
	return 0;
}

/* The profile's timing, then each override; the result must make sense. */
static int timing_apply(struct config *c, const struct overrides *o)
{
	struct gossip_config *g = &c->gossip;

	if (o->probe_interval)
		g->probe_interval = (uint32_t)o->probe_interval;
	if (o->probe_timeout)
		g->probe_timeout = (uint32_t)o->probe_timeout;
	if (o->suspicion_mult)
		g->suspicion_mult = o->suspicion_mult;
	if (o->gossip_interval)
		g->gossip_interval = (uint32_t)o->gossip_interval;
	if (o->gossip_nodes)
		g->gossip_nodes = o->gossip_nodes;
	if (o->pushpull_interval)
		g->pushpull_interval = (uint32_t)o->pushpull_interval;
	if (o->reconnect_interval)
		g->reconnect_interval = (uint32_t)o->reconnect_interval;
	if (o->reconnect_timeout)
		g->reconnect_timeout = o->reconnect_timeout;
	if (g->probe_timeout >= g->probe_interval)
		return usage_error(c, "--probe-timeout (%u ms) must be shorter than "
				   "--probe-interval (%u ms)", g->probe_timeout,
				   g->probe_interval);
	return 0;
}

static int identity_parse(struct config *c, const struct raw *r, const struct config_env *env)
{
	const char *node, *region, *primary, *from;
	char hostname[256];

	node = r->node ? r->node : env_get(env, "MERIDIAN_NODE");
	from = r->node ? "--node" : node ? "MERIDIAN_NODE" : "host name (pass --node)";
	if (node == NULL && r->dev) {
		node = "dev";
	} else if (node == NULL) {
		if (gethostname(hostname, sizeof(hostname)) != 0)
			return usage_error(c, "cannot read the host name; pass --node");
		hostname[sizeof(hostname) - 1] = '\0';
		node = hostname;
	}
	if (!config_node_name_valid(node))
		return usage_error(c, "%s: \"%s\" is not a valid node name "
				   "(1 to 64 of A-Z a-z 0-9 . _ -)", from, node);
	memcpy(c->node, node, strlen(node) + 1);   /* checked: it fits */

	region = r->region ? r->region : env_get(env, "MY_REGION");
	from = r->region ? "--region" : region ? "MY_REGION" : "FLY_REGION";
	if (region == NULL)
		region = env_get(env, "FLY_REGION");
	if (region == NULL)
		region = "local";
	if (!config_region_valid(region))
		return usage_error(c, "%s: \"%s\" is not a valid region "
				   "(1 to 32 lower-case letters, digits or dashes)", from, region);
	memcpy(c->region, region, strlen(region) + 1);

	primary = r->primary ? r->primary : env_get(env, "PRIMARY_REGION");
	from = r->primary ? "--primary-region" : "PRIMARY_REGION";
	if (primary == NULL)
		primary = "local";
	if (!config_region_valid(primary))
		return usage_error(c, "%s: \"%s\" is not a valid region "
				   "(1 to 32 lower-case letters, digits or dashes)", from, primary);
	memcpy(c->primary, primary, strlen(primary) + 1);
	return 0;
}

static int addresses_parse(struct config *c, const struct raw *r, const struct config_env *env)
{
	struct sockaddr_storage api_ss;
	char err[128] = "";
	const char *from;

	c->bind = r->bind ? r->bind : env_get(env, "MERIDIAN_BIND");
	from = r->bind ? "--bind" : "MERIDIAN_BIND";
	if (c->bind == NULL)
		c->bind = r->dev ? "127.0.0.1:7600" : "0.0.0.0:7600";
	if (addr_parse(c->bind, &c->bind_ss, err, sizeof(err)) != 0)
		return usage_error(c, "%s: \"%s\" is not a numeric host:port (%s)", from, c->bind,
				   err);

	c->api = r->api ? r->api : env_get(env, "MERIDIAN_API");
	from = r->api ? "--api" : "MERIDIAN_API";
	if (c->api == NULL)
		c->api = "127.0.0.1:7601";
	if (addr_parse(c->api, &api_ss, err, sizeof(err)) != 0)
		return usage_error(c, "%s: \"%s\" is not a numeric host:port (%s)", from, c->api,
				   err);

	c->advertise = r->advertise ? r->advertise : env_get(env, "MERIDIAN_ADVERTISE");
	from = r->advertise ? "--advertise" : "MERIDIAN_ADVERTISE";
	if (c->advertise == NULL)
		return 0;
	if (addr_parse(c->advertise, &c->advertise_ss, err, sizeof(err)) != 0)
		return usage_error(c, "%s: \"%s\" is not a numeric host:port (%s)", from,
				   c->advertise, err);
	if (addr_is_unspecified((struct sockaddr *)&c->advertise_ss))
		return usage_error(c, "%s: \"%s\": peers cannot reach an unspecified address",
				   from, c->advertise);
	return 0;
}

/* Stream deadline per profile, like memberlist's TCPTimeout. */
static uint32_t stream_timeout_for(const char *profile)
{
	if (strcmp(profile, "wan") == 0)
		return 30000;
	if (strcmp(profile, "local") == 0)
		return 2000;
	return 10000;
}

/* Splits "a:1, b:2" into c->seeds. */
static int seeds_add(struct config *c, const char *list, const char *from)
{
	char buf[CONFIG_SEED_LIST_MAX + 1];
	char *save = NULL, *tok;

	if (strlen(list) >= sizeof(buf))
		return usage_error(c, "%s: the seed list is too long", from);
	strcpy(buf, list);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		struct sockaddr_storage ss;
		char err[128] = "";

		while (*tok == ' ' || *tok == '\t')
			tok++;
		for (size_t n = strlen(tok); n && (tok[n - 1] == ' ' || tok[n - 1] == '\t');)
			tok[--n] = '\0';
		if (*tok == '\0')
			continue;
		if (addr_parse(tok, &ss, err, sizeof(err)) != 0)
			return usage_error(c, "%s: \"%s\" is not a numeric host:port (%s)", from,
					   tok, err);
		if (addr_is_unspecified((struct sockaddr *)&ss))
			return usage_error(c, "%s: \"%s\" is not an address one can join", from,
					   tok);
		if (c->nseeds == CONFIG_SEEDS_MAX)
			return usage_error(c, "%s: at most %d seeds", from, CONFIG_SEEDS_MAX);
		addr_format((struct sockaddr *)&ss, c->seeds[c->nseeds], GOSSIP_ADDR_MAX + 1);
		c->nseeds++;
	}
	return 0;
}

static int tags_build(struct config *c, const struct raw *r)
{
	/* "leaving" is set on the way out (cmd/agent.c), so it is reserved
	 * too, and room for it is kept free. */
	static const char *const reserved[] = { "region", "primary_region", "version",
						"proto_min", "proto_max", "leaving" };
	uint32_t priority;
	struct gossip_tags *t = &c->gossip.tags;
	char pmin[16], pmax[16];

	gossip_tags_clear(t);
	snprintf(pmin, sizeof(pmin), "%d", GOSSIP_PROTO_MIN);
	snprintf(pmax, sizeof(pmax), "%d", GOSSIP_PROTO_VERSION);
	if (gossip_tags_set(t, "region", c->region) ||
	    gossip_tags_set(t, "primary_region", c->primary) ||
	    gossip_tags_set(t, "version", MERIDIAN_VERSION) ||
	    gossip_tags_set(t, "proto_min", pmin) || gossip_tags_set(t, "proto_max", pmax))
		return usage_error(c, "cannot set the built-in tags");
	for (size_t i = 0; i < r->tags.n; i++) {
		const char *tag = r->tags.v[i];
		const char *eq = strchr(tag, '=');
		size_t klen;
		int rc;

		if (eq == NULL || eq == tag)
			return usage_error(c, "--tag: \"%s\" is not KEY=VALUE", tag);
		klen = (size_t)(eq - tag);
		for (size_t k = 0; k < sizeof(reserved) / sizeof(reserved[0]); k++)
			if (klen == strlen(reserved[k]) && strncmp(tag, reserved[k], klen) == 0)
				return usage_error(c, "--tag: \"%s\" is set by the agent itself "
						   "(regions come from --region / --primary-region)",
						   reserved[k]);
		rc = gossip_tags_setn(t, tag, klen, eq + 1, strlen(eq + 1));
		if (rc == 0) {
			struct gossip_tags room = *t;

			if (gossip_tags_set(&room, "leaving", "1") != 0)
				rc = -ENOSPC;
		}
		if (rc == -ENOSPC)
			return usage_error(c, "--tag: \"%s\" does not fit: at most %d tags and %d "
					   "bytes in all", tag, GOSSIP_TAGS_MAX, GOSSIP_TAGS_BYTES);
		if (rc)
			return usage_error(c, "--tag: \"%s\": keys are 1-%d of [a-z0-9_.-], values "
					   "up to %d printable characters", tag,
					   GOSSIP_TAG_KEY_MAX, GOSSIP_TAG_VALUE_MAX);
	}
	if (gossip_tags_get(t, CONFIG_PRIORITY_TAG)) {
		const char *v = gossip_tags_get(t, CONFIG_PRIORITY_TAG);

		if (count_parse(v, 0, CONFIG_PRIORITY_MAX, &priority) != 0)
			return usage_error(c, "--tag %s=%s: the priority is a number from 0 to %u "
					   "(lower leads first)", CONFIG_PRIORITY_TAG, v,
					   CONFIG_PRIORITY_MAX);
		c->priority = priority;
	}
	return 0;
}

/* Databases and the election: which backend, and a lease whose timing
 * keeps the leader's step-down ahead of the server's expiry. */
static int election_parse(struct config *c, const struct raw *r, const struct config_env *env)
{
	const char *name = r->lease_name ? r->lease_name : "meridian";

	c->primary_database_url = r->primary_database_url ? r->primary_database_url :
				  env_get(env, "PRIMARY_DATABASE_URL");
	c->database_url = r->database_url ? r->database_url : env_get(env, "DATABASE_URL");
	c->election = c->primary_database_url ? CONFIG_ELECTION_POSTGRES : CONFIG_ELECTION_GOSSIP;
	if (r->election && strcmp(r->election, "gossip") == 0) {
		c->election = CONFIG_ELECTION_GOSSIP;
	} else if (r->election && strcmp(r->election, "postgres") == 0) {
		if (c->primary_database_url == NULL)
			return usage_error(c, "--election postgres needs the primary database: "
					   "--primary-database-url or PRIMARY_DATABASE_URL");
		c->election = CONFIG_ELECTION_POSTGRES;
	} else if (r->election) {
		return usage_error(c, "--election: \"%s\" is not gossip or postgres", r->election);
	}
	if (c->lease_guard_ms < CONFIG_LEASE_GUARD_MS_MIN)
		return usage_error(c, "--lease-guard (%llu ms) must be at least %d ms: it absorbs "
				   "clock-rate differences and the step-down itself",
				   (unsigned long long)c->lease_guard_ms, CONFIG_LEASE_GUARD_MS_MIN);
	if (c->lease_guard_ms >= c->lease_ms)
		return usage_error(c, "--lease-guard (%llu ms) must be shorter than --lease "
				   "(%llu ms)", (unsigned long long)c->lease_guard_ms,
				   (unsigned long long)c->lease_ms);
	if (c->lease_renew_ms >= c->lease_ms - c->lease_guard_ms)
		return usage_error(c, "--lease-renew (%llu ms) must be shorter than --lease less "
				   "--lease-guard (%llu ms): a leader must renew before it has to "
				   "step down", (unsigned long long)c->lease_renew_ms,
				   (unsigned long long)(c->lease_ms - c->lease_guard_ms));
	if (strlen(name) > CONFIG_LEASE_NAME_MAX || !config_node_name_valid(name))
		return usage_error(c, "--lease-name: \"%s\" is not 1 to %d of A-Z a-z 0-9 . _ -",
				   name, CONFIG_LEASE_NAME_MAX);
	memcpy(c->lease_name, name, strlen(name) + 1);
	/* The leader's replication consumer: on with a primary database. */
	c->replication = c->primary_database_url ? CONFIG_REPL_STREAM : CONFIG_REPL_OFF;
	if (r->replication_mode) {
		if (strcmp(r->replication_mode, "stream") == 0)
			c->replication = CONFIG_REPL_STREAM;
		else if (strcmp(r->replication_mode, "poll") == 0)
			c->replication = CONFIG_REPL_POLL;
		else if (strcmp(r->replication_mode, "off") == 0)
			c->replication = CONFIG_REPL_OFF;
		else
			return usage_error(c, "--replication-mode: \"%s\" is not stream, poll or off",
					   r->replication_mode);
		if (c->replication != CONFIG_REPL_OFF && c->primary_database_url == NULL)
			return usage_error(c, "--replication-mode %s needs the primary database: "
					   "--primary-database-url or PRIMARY_DATABASE_URL",
					   r->replication_mode);
	}
	for (int k = 0; k < 2; k++) {
		const char *v = k ? r->publication : r->slot;
		char *out = k ? c->publication : c->slot;
		size_t n;

		if (v == NULL)
			v = "meridian";
		n = strlen(v);
		if (n == 0 || n > CONFIG_PG_NAME_MAX || strspn(v, "abcdefghijklmnopqrstuvwxyz"
							   "0123456789_") != n)
			return usage_error(c, "--%s: \"%.80s\" is not 1 to %d of a-z 0-9 _",
					   k ? "publication" : "slot", v, CONFIG_PG_NAME_MAX);
		memcpy(out, v, n + 1);
	}
	if (r->on_change && r->on_change[0] == '\0')
		return usage_error(c, "--on-change: the command is empty");
	c->on_change = r->on_change;
	if (r->on_leader && r->on_leader[0] == '\0')
		return usage_error(c, "--on-leader: the command is empty");
	c->on_leader = r->on_leader;
	return 0;
}

/* Reads the secret file @path into @out (NUL-terminated, trailing white
 * space removed: editors and `meridian keygen >file` add a newline). */
static int secret_read(struct config *c, const char *path, const char *from, char *out,
		       size_t outlen)
{
	FILE *f = fopen(path, "r");
	size_t n;

	if (f == NULL)
		return usage_error(c, "%s: cannot read %s: %s", from, path, strerror(errno));
	n = fread(out, 1, outlen - 1, f);
	if (ferror(f)) {
		fclose(f);
		return usage_error(c, "%s: cannot read %s: %s", from, path, strerror(errno));
	}
	if (n == outlen - 1 && fgetc(f) != EOF) {
		fclose(f);
		return usage_error(c, "%s: %s is larger than %d bytes: not a secret", from, path,
				   CONFIG_SECRET_MAX);
	}
	fclose(f);
	out[n] = '\0';
	while (n > 0 && strchr(" \t\r\n", out[n - 1]))
		out[--n] = '\0';
	if (n == 0)
		return usage_error(c, "%s: %s is empty", from, path);
	return 0;
}

/* The key: --dev's throw-away one, else --secret-file, MERIDIAN_SECRET_FILE,
 * MERIDIAN_SECRET, in that order. */
static int secret_load(struct config *c, const struct raw *r, const struct config_env *env)
{
	char secret[CONFIG_SECRET_MAX + 1];
	const char *file = r->secret_file ? r->secret_file : env_get(env, "MERIDIAN_SECRET_FILE");
	const char *value = env_get(env, "MERIDIAN_SECRET");
	int rc;

	if (r->dev) {
		seal_keygen(secret, sizeof(secret));
		c->secret_from = "--dev";
	} else if (file) {
		c->secret_from = r->secret_file ? "--secret-file" : "MERIDIAN_SECRET_FILE";
		rc = secret_read(c, file, c->secret_from, secret, sizeof(secret));
		if (rc) {
			explicit_bzero(secret, sizeof(secret));
			return rc;
		}
	} else if (value) {
		/* Same bound as the file: a longer value is refused, never cut,
		 * so that no two different secrets can derive the same key. */
		if (strlen(value) > CONFIG_SECRET_MAX)
			return usage_error(c, "MERIDIAN_SECRET is longer than %d bytes: not a secret",
					   CONFIG_SECRET_MAX);
		snprintf(secret, sizeof(secret), "%s", value);
		c->secret_from = "MERIDIAN_SECRET";
	} else {
		snprintf(c->error, sizeof(c->error),
			 "no cluster secret. Make one with `meridian keygen` and pass it as "
			 "MERIDIAN_SECRET (or MERIDIAN_SECRET_FILE), or try `meridian agent "
			 "--dev`.");
		c->error_hint = false;
		return -EINVAL;
	}
	rc = seal_derive_key(secret, c->key);
	explicit_bzero(secret, sizeof(secret));
	if (rc == -EINVAL)
		return usage_error(c, "%s: the secret is empty", c->secret_from);
	if (rc) {
		snprintf(c->error, sizeof(c->error), "libsodium failed to initialise");
		c->error_hint = false;
		return -ENOMEM;
	}
	return 0;
}

/* The region RPC flags: handlers checked as rpc_handlers_new() will,
 * duplicates refused here so the message names the flag. */
static int rpc_parse(struct config *c, const struct raw *r)
{
	char err[256];

	for (size_t i = 0; i < r->handlers.n; i++) {
		struct rpc_handler_spec *h = &c->handlers[c->nhandlers];

		if (rpc_handlers_parse_spec(r->handlers.v[i], h, err, sizeof(err)) != 0)
			return usage_error(c, "--handler: \"%.64s\": %s", r->handlers.v[i], err);
		for (size_t j = 0; j < c->nhandlers; j++)
			if (strcmp(c->handlers[j].name, h->name) == 0)
				return usage_error(c, "--handler: method \"%s\" given twice", h->name);
		c->nhandlers++;
	}
	if (r->rpc_upstream) {
		if (rpc_handlers_upstream_check(r->rpc_upstream, err, sizeof(err)) != 0)
			return usage_error(c, "--rpc-upstream: \"%.128s\": %s", r->rpc_upstream,
					   err);
		c->rpc_upstream = r->rpc_upstream;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* All of it                                                           */
/* ------------------------------------------------------------------ */

int config_parse(struct config *c, int argc, char **argv, const struct config_env *env)
{
	struct overrides o = { 0 };
	struct raw r;
	int rc;

	memset(c, 0, sizeof(*c));
	memset(&r, 0, sizeof(r));
	c->leave_timeout_ms = CONFIG_LEAVE_TIMEOUT_MS_DEFAULT;
	c->drain_timeout_ms = CONFIG_DRAIN_TIMEOUT_MS_DEFAULT;
	c->rpc_max_inflight = CONFIG_RPC_INFLIGHT_DEFAULT;
	c->lease_ms = CONFIG_LEASE_MS_DEFAULT;
	c->lease_renew_ms = CONFIG_LEASE_RENEW_MS_DEFAULT;
	c->lease_guard_ms = CONFIG_LEASE_GUARD_MS_DEFAULT;
	c->replica_lag_timeout_ms = CONFIG_REPLICA_LAG_TIMEOUT_MS_DEFAULT;
	c->changes_stuck_ms = CONFIG_CHANGES_STUCK_MS_DEFAULT;
	c->log_level = LOG_NOTICE;
	c->log_format = LOG_FORMAT_TEXT;
	if (env == NULL)
		env = config_env_process();

	rc = raw_parse(c, &r, argc, argv);
	if (rc == 0)
		rc = numbers_parse(c, &r, &o);
	if (rc)
		return rc;
	c->dev = r.dev;

	if (r.log_level) {
		rc = log_level_parse(r.log_level);
		if (rc < 0)
			return usage_error(c, "--log-level: \"%s\" is not one of debug, info, "
					   "notice, warning, error", r.log_level);
		c->log_level = (enum log_level)rc;
	}
	if (r.log_format) {
		rc = log_format_parse(r.log_format);
		if (rc < 0)
			return usage_error(c, "--log-format: \"%s\" is not text or json",
					   r.log_format);
		c->log_format = (enum log_format)rc;
	}

	rc = identity_parse(c, &r, env);
	if (rc == 0)
		rc = addresses_parse(c, &r, env);
	if (rc == 0)
		rc = rpc_parse(c, &r);
	if (rc == 0)
		rc = election_parse(c, &r, env);
	if (rc)
		return rc;

	snprintf(c->profile, sizeof(c->profile), "%s",
		 r.profile ? r.profile : r.dev ? "local" : "lan");
	if (gossip_config_profile(&c->gossip, r.profile ? r.profile : c->profile) != 0)
		return usage_error(c, "--profile: \"%s\" is not lan, wan or local", r.profile);
	c->stream_timeout_ms = stream_timeout_for(c->profile);
	snprintf(c->gossip.name, sizeof(c->gossip.name), "%s", c->node);

	for (size_t i = 0; i < r.join.n && rc == 0; i++)
		rc = seeds_add(c, r.join.v[i], "--join");
	if (rc == 0 && r.join.n == 0 && env_get(env, "MERIDIAN_JOIN"))
		rc = seeds_add(c, env_get(env, "MERIDIAN_JOIN"), "MERIDIAN_JOIN");
	if (rc == 0)
		rc = tags_build(c, &r);
	if (rc == 0)
		rc = secret_load(c, &r, env);
	if (rc == 0)
		rc = timing_apply(c, &o);
	if (rc)
		config_wipe(c);
	return rc;
}

void config_wipe(struct config *c)
{
	explicit_bzero(c->key, sizeof(c->key));
}
