/*
 * cmd/config.h - the agent's configuration: the command line and the
 * environment turned into one checked struct.
 *
 * Flags win over the environment, which wins over the defaults (the
 * design's table; `meridian agent --help` is config_usage()).  Everything
 * is checked here, before the agent opens a socket: a bad name, region,
 * duration, address, tag or secret is a configuration error whose message
 * names the flag or the variable it came from, so a misconfigured deploy
 * fails at once and says why instead of joining a cluster half-broken.
 *
 * Pure on purpose: no libuv, no sockets, no process environment unless
 * asked for (struct config_env), so tests drive every rule directly.  It
 * does read two things from the system: the host name (the default node
 * name) and the secret file.
 */
#ifndef MERIDIAN_CMD_CONFIG_H
#define MERIDIAN_CMD_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "gossip/gossip.h"
#include "gossip/seal.h"
#include "lib/log.h"
#include "region/handlers.h"

#define CONFIG_SEEDS_MAX 64      /* seeds after splitting, and --join flags */
#define CONFIG_SEED_LIST_MAX 1023 /* bytes of one comma-separated list */
#define CONFIG_SECRET_MAX 4096   /* bytes of a secret file */
#define CONFIG_REGION_MAX 32     /* bytes of a region name */
#define CONFIG_LEAVE_TIMEOUT_MS_DEFAULT 5000
#define CONFIG_LEAVE_TIMEOUT_MS_MAX (3600 * 1000)
#define CONFIG_DRAIN_TIMEOUT_MS_DEFAULT 5000
#define CONFIG_DRAIN_TIMEOUT_MS_MAX (3600 * 1000)
#define CONFIG_RPC_INFLIGHT_DEFAULT 1024
#define CONFIG_RPC_INFLIGHT_MAX 65536
#define CONFIG_LEASE_MS_DEFAULT 5000
#define CONFIG_LEASE_RENEW_MS_DEFAULT 1000
#define CONFIG_LEASE_GUARD_MS_DEFAULT 1000
#define CONFIG_LEASE_GUARD_MS_MIN 100
#define CONFIG_LEASE_MS_MAX (3600 * 1000)
#define CONFIG_LEASE_NAME_MAX 63
#define CONFIG_REPLICA_LAG_TIMEOUT_MS_DEFAULT 5000
#define CONFIG_PG_NAME_MAX 63
/* --replication-mode: the leader's consumer of the logical slot. */
#define CONFIG_REPL_OFF 0
#define CONFIG_REPL_STREAM 1
#define CONFIG_REPL_POLL 2
#define CONFIG_REPLICA_LAG_TIMEOUT_MS_MAX (300 * 1000)
#define CONFIG_CHANGES_STUCK_MS_DEFAULT (30 * 1000)
#define CONFIG_CHANGES_STUCK_MS_MIN 1000
#define CONFIG_CHANGES_STUCK_MS_MAX (3600 * 1000)
#define CONFIG_PRIORITY_MAX 1000000
#define CONFIG_PRIORITY_TAG "priority"   /* lower leads first (gossip election) */

/* Election backends (values of election/election.h's enum). */
#define CONFIG_ELECTION_GOSSIP 0
#define CONFIG_ELECTION_POSTGRES 1

/* config_parse() met -h or --help: print config_usage(), exit 0. */
#define CONFIG_HELP 1

/*
 * Where the environment comes from.  @getenv returns the value of the
 * variable @name or NULL, like getenv(3); the values must outlive the
 * config (its string fields may point at them).  An empty value counts
 * as unset.
 */
struct config_env {
	const char *(*getenv)(void *ctx, const char *name);
	void *ctx;
};

/* The process environment, through getenv(3). */
const struct config_env *config_env_process(void);

struct config {
	/* Identity. */
	char node[GOSSIP_NAME_MAX + 1];         /* --node, MERIDIAN_NODE, host name */
	char region[CONFIG_REGION_MAX + 1];     /* --region, MY_REGION, FLY_REGION */
	char primary[CONFIG_REGION_MAX + 1];    /* --primary-region, PRIMARY_REGION */

	/* Addresses as given (pointing into argv, the environment or string
	 * constants) and parsed.  advertise is NULL when not given: the agent
	 * derives it from the bound address once it knows the port. */
	const char *bind, *api, *advertise;
	struct sockaddr_storage bind_ss, advertise_ss;

	/* Seeds from every --join (or else MERIDIAN_JOIN), split at commas,
	 * normalised ("host:port" as addr_format() writes it), in order. */
	char seeds[CONFIG_SEEDS_MAX][GOSSIP_ADDR_MAX + 1];
	size_t nseeds;

	/* Timing: the profile with every override applied, plus our name and
	 * tags (region, primary_region, version, proto_min, proto_max and
	 * every --tag).  addr, id and seed are left for the agent. */
	char profile[8];                        /* "lan", "wan" or "local" */
	struct gossip_config gossip;
	uint32_t stream_timeout_ms;             /* per TCP exchange, by profile */
	uint64_t leave_timeout_ms;              /* --leave-timeout */

	/* Region RPC.  Each handler's command points into argv. */
	struct rpc_handler_spec handlers[RPC_HANDLERS_MAX];   /* --handler */
	size_t nhandlers;
	const char *rpc_upstream;               /* --rpc-upstream; NULL: none */
	uint32_t rpc_max_inflight;              /* --rpc-max-inflight (1024) */
	uint64_t drain_timeout_ms;              /* --drain-timeout (5s) */

	/* Databases and leader election.  The backend is postgres when a
	 * primary database is configured, gossip otherwise, unless
	 * --election says which. */
	const char *primary_database_url;       /* --primary-database-url,
						   PRIMARY_DATABASE_URL; NULL: none */
	const char *database_url;               /* --database-url, DATABASE_URL */
	uint64_t replica_lag_timeout_ms;        /* --replica-lag-timeout (5s) */
	int replication;                        /* --replication-mode: CONFIG_REPL_* */
	char slot[CONFIG_PG_NAME_MAX + 1];      /* --slot (meridian) */
	char publication[CONFIG_PG_NAME_MAX + 1];   /* --publication (meridian) */
	uint64_t changes_stuck_ms;              /* --changes-stuck-timeout (30s) */
	int election;                           /* CONFIG_ELECTION_* */
	uint64_t lease_ms;                      /* --lease (5s) */
	uint64_t lease_renew_ms;                /* --lease-renew (1s) */
	uint64_t lease_guard_ms;                /* --lease-guard (1s) */
	char lease_name[CONFIG_LEASE_NAME_MAX + 1];   /* --lease-name (meridian) */
	uint32_t priority;                      /* --tag priority=N (0) */
	const char *on_leader;                  /* --on-leader COMMAND; NULL: none */
	const char *on_change;                  /* --on-change COMMAND; NULL: none */

	/* The cluster key, derived from the secret (which is not kept). */
	uint8_t key[SEAL_KEY_BYTES];
	const char *secret_from;                /* "--dev", "--secret-file",
						   "MERIDIAN_SECRET_FILE" or
						   "MERIDIAN_SECRET" */
	bool dev;

	enum log_level log_level;               /* default: notice */
	enum log_format log_format;             /* default: text */

	/* After a failure: one message for stderr, to follow "meridian
	 * agent: ", and whether to add a pointer to --help after it. */
	char error[512];
	bool error_hint;
};

/*
 * Fills @c from @argv[1..@argc) (argv[0] is "agent") and @env (NULL: the
 * process environment).  @argv and the environment's values must outlive
 * @c.  Returns:
 *   0            run with @c (call config_wipe() once the key is used);
 *   CONFIG_HELP  -h or --help was given (nothing else checked);
 *   -EINVAL      a usage or configuration error, c->error says which;
 *   -ENOMEM      libsodium could not start (c->error says so).
 * On failure @c holds no key.
 */
int config_parse(struct config *c, int argc, char **argv, const struct config_env *env);

/* The process exit code for config_parse()'s result: 0, 1 or 2. */
int config_exit_code(int rc);

/* The `meridian agent --help` text. */
const char *config_usage(void);

/* Wipes the key in @c. */
void config_wipe(struct config *c);

/*
 * Parses a duration: digits, an optional fraction, and a unit, one of
 * ms, s, m or h ("500ms", "2s", "1.5m", "24h").  Stores milliseconds in
 * *@ms and returns 0, or -EINVAL for anything else (no sign, no spaces,
 * no missing unit), for less than 1 ms, or for more than ten years.
 */
int config_duration_parse(const char *s, uint64_t *ms);

/* Node names: 1 to GOSSIP_NAME_MAX bytes of [A-Za-z0-9._-]. */
bool config_node_name_valid(const char *s);

/* Regions: 1 to CONFIG_REGION_MAX bytes of [a-z0-9-]. */
bool config_region_valid(const char *s);

#endif
