/*
 * tests/unit/test_config.c - cmd/flags.c and cmd/config.c: the command
 * line and environment of `meridian agent`, turned into a checked struct.
 *
 * The environment is a table per test (struct fake_env), never the
 * process's, so the tests run the same on a developer's machine with
 * MY_REGION exported and in CI.  Each rule is checked on both sides of
 * its bound.
 */
#include <check.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/config.h"
#include "cmd/flags.h"
#include "gossip/seal.h"

#define ARGS_MAX 200

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

struct fake_env {
	const char *kv[16][2];
	size_t n;
};

static const char *fake_getenv(void *ctx, const char *name)
{
	struct fake_env *e = ctx;

	for (size_t i = 0; i < e->n; i++)
		if (strcmp(e->kv[i][0], name) == 0)
			return e->kv[i][1];
	return NULL;
}

static void env_set(struct fake_env *e, const char *name, const char *value)
{
	ck_assert_uint_lt(e->n, 16);
	e->kv[e->n][0] = name;
	e->kv[e->n][1] = value;
	e->n++;
}

/* argv storage: the config points into it, so it lives as long as the test. */
static char *argv_store[ARGS_MAX + 2];

/* Parses "agent" + the NULL-terminated arguments under @e. */
static int parse_v(struct config *c, struct fake_env *e, va_list ap)
{
	struct config_env env = { fake_getenv, e };
	const char *a;
	int argc = 0;

	argv_store[argc++] = (char *)"agent";
	while ((a = va_arg(ap, const char *)) != NULL) {
		ck_assert_int_lt(argc, ARGS_MAX);
		argv_store[argc++] = (char *)a;
	}
	argv_store[argc] = NULL;
	return config_parse(c, argc, argv_store, &env);
}

static int parse(struct config *c, struct fake_env *e, ...)
{
	va_list ap;
	int rc;

	va_start(ap, e);
	rc = parse_v(c, e, ap);
	va_end(ap);
	return rc;
}

/* Like parse(), with a secret in the environment so that the rule under
 * test is the only thing that can fail. */
static int parse_s(struct config *c, struct fake_env *e, ...)
{
	va_list ap;
	int rc;

	if (fake_getenv(e, "MERIDIAN_SECRET") == NULL)
		env_set(e, "MERIDIAN_SECRET", "test-secret");
	va_start(ap, e);
	rc = parse_v(c, e, ap);
	va_end(ap);
	return rc;
}

static int parse_argv(struct config *c, struct fake_env *e, int argc, char **argv)
{
	struct config_env env = { fake_getenv, e };

	if (fake_getenv(e, "MERIDIAN_SECRET") == NULL)
		env_set(e, "MERIDIAN_SECRET", "test-secret");
	return config_parse(c, argc, argv, &env);
}

/* Asserts a usage error (exit 2) whose message contains @want. */
static void assert_usage_error(const struct config *c, int rc, const char *want)
{
	ck_assert_int_eq(rc, -EINVAL);
	ck_assert_int_eq(config_exit_code(rc), 2);
	ck_assert_msg(strstr(c->error, want) != NULL, "error \"%s\" lacks \"%s\"", c->error,
		      want);
}

static char *repeat(char ch, size_t n)
{
	static char bufs[4][8192];
	static int next;
	char *b = bufs[next++ % 4];

	ck_assert_uint_lt(n, sizeof(bufs[0]));
	memset(b, ch, n);
	b[n] = '\0';
	return b;
}

/* Writes @content to a new temporary file; returns its path (static). */
static const char *temp_file(const char *content, size_t len)
{
	static char path[64];
	int fd;

	snprintf(path, sizeof(path), "/tmp/meridian-test-config.XXXXXX");
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, content, len), (ssize_t)len);
	close(fd);
	return path;
}

static bool key_is_zero(const struct config *c)
{
	for (size_t i = 0; i < sizeof(c->key); i++)
		if (c->key[i])
			return false;
	return true;
}

/* ------------------------------------------------------------------ */
/* Durations                                                           */
/* ------------------------------------------------------------------ */

START_TEST(duration_units)
{
	static const struct {
		const char *s;
		uint64_t ms;
	} ok[] = {
		{ "500ms", 500 }, { "2s", 2000 }, { "1m", 60000 }, { "24h", 86400000 },
		{ "1.5m", 90000 }, { "1ms", 1 }, { "0.5s", 500 }, { "1.0001s", 1000 },
		{ "0.001s", 1 }, { "90s", 90000 },
	};
	uint64_t ms;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		ms = 0;
		ck_assert_msg(config_duration_parse(ok[i].s, &ms) == 0, "%s rejected", ok[i].s);
		ck_assert_uint_eq(ms, ok[i].ms);
	}
}
END_TEST

START_TEST(duration_bad_units)
{
	static const char *const bad[] = {
		"", "5", "5x", "5 s", " 5s", "5s ", "5S", "5Ms", "5sec", "5mss", "-5s", "+5s",
		"s", "ms", ".5s", "5.s", "5..5s", "1e3ms", "0x10s", "5d", "5us",
	};
	uint64_t ms = 77;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(config_duration_parse(bad[i], &ms) == -EINVAL, "\"%s\" accepted",
			      bad[i]);
		ck_assert_uint_eq(ms, 77);   /* untouched on failure */
	}
}
END_TEST

START_TEST(duration_overflow_and_zero)
{
	uint64_t ms;

	/* Ten years (of 366 days) is the ceiling, in every unit. */
	ck_assert_int_eq(config_duration_parse("87840h", &ms), 0);
	ck_assert_uint_eq(ms, 87840ULL * 3600 * 1000);
	ck_assert_int_eq(config_duration_parse("87841h", &ms), -EINVAL);
	ck_assert_int_eq(config_duration_parse("316224000000ms", &ms), 0);
	ck_assert_int_eq(config_duration_parse("316224000001ms", &ms), -EINVAL);
	ck_assert_int_eq(config_duration_parse("99999999999999999999999h", &ms), -EINVAL);
	ck_assert_int_eq(config_duration_parse("18446744073709551617ms", &ms), -EINVAL);
	/* Many fraction digits are fine (they cannot matter to a ms). */
	ck_assert_int_eq(config_duration_parse("1.99999999999999999999s", &ms), 0);
	ck_assert_uint_eq(ms, 1999);
	/* Nothing rounds down to zero and passes. */
	ck_assert_int_eq(config_duration_parse("0s", &ms), -EINVAL);
	ck_assert_int_eq(config_duration_parse("0ms", &ms), -EINVAL);
	ck_assert_int_eq(config_duration_parse("0.0009s", &ms), -EINVAL);
	ck_assert_int_eq(config_duration_parse("0.001s", &ms), 0);
}
END_TEST

START_TEST(duration_flags_bounds)
{
	struct fake_env e = { 0 };
	struct config c;
	int rc;

	/* Zero is never a valid interval or timeout. */
	rc = parse_s(&c, &e, "--node", "n", "--probe-interval", "0s", NULL);
	assert_usage_error(&c, rc, "--probe-interval: \"0s\" is not a valid duration");
	ck_assert(c.error_hint);
	rc = parse_s(&c, &e, "--node", "n", "--leave-timeout", "0ms", NULL);
	assert_usage_error(&c, rc, "--leave-timeout: \"0ms\"");
	rc = parse_s(&c, &e, "--node", "n", "--gossip-interval", "soon", NULL);
	assert_usage_error(&c, rc, "--gossip-interval: \"soon\"");

	/* The core's intervals are 32-bit milliseconds: 1193h fits, 1194h not. */
	ck_assert_int_eq(parse_s(&c, &e, "--node", "n", "--probe-interval", "1193h", NULL), 0);
	ck_assert_uint_eq(c.gossip.probe_interval, 1193U * 3600 * 1000);
	rc = parse_s(&c, &e, "--node", "n", "--probe-interval", "1194h", NULL);
	assert_usage_error(&c, rc, "--probe-interval: \"1194h\"");
	rc = parse_s(&c, &e, "--node", "n", "--pushpull-interval", "1194h", NULL);
	assert_usage_error(&c, rc, "--pushpull-interval");
	rc = parse_s(&c, &e, "--node", "n", "--reconnect-interval", "1194h", NULL);
	assert_usage_error(&c, rc, "--reconnect-interval");

	/* The reconnect timeout is 64-bit: up to ten years. */
	ck_assert_int_eq(parse_s(&c, &e, "--node", "n", "--reconnect-timeout", "87840h", NULL),
			 0);
	ck_assert_uint_eq(c.gossip.reconnect_timeout, 87840ULL * 3600 * 1000);
	rc = parse_s(&c, &e, "--node", "n", "--reconnect-timeout", "87841h", NULL);
	assert_usage_error(&c, rc, "--reconnect-timeout");

	/* The leave timeout: at most an hour. */
	ck_assert_int_eq(parse_s(&c, &e, "--node", "n", "--leave-timeout", "60m", NULL), 0);
	ck_assert_uint_eq(c.leave_timeout_ms, 3600000);
	rc = parse_s(&c, &e, "--node", "n", "--leave-timeout", "3600001ms", NULL);
	assert_usage_error(&c, rc, "--leave-timeout");
	ck_assert_int_eq(parse_s(&c, &e, "--node", "n", NULL), 0);
	ck_assert_uint_eq(c.leave_timeout_ms, 5000);
}
END_TEST

START_TEST(count_flags_bounds)
{
	struct fake_env e = { 0 };
	struct config c;
	int rc;

	ck_assert_int_eq(parse_s(&c, &e, "--node", "n", "--suspicion-mult", "1",
				 "--gossip-nodes", "1", NULL), 0);
	ck_assert_uint_eq(c.gossip.suspicion_mult, 1);
	ck_assert_uint_eq(c.gossip.gossip_nodes, 1);
	ck_assert_int_eq(parse_s(&c, &e, "--node", "n", "--suspicion-mult", "100",
				 "--gossip-nodes", "64", NULL), 0);
	ck_assert_uint_eq(c.gossip.suspicion_mult, 100);
	ck_assert_uint_eq(c.gossip.gossip_nodes, 64);
	rc = parse_s(&c, &e, "--node", "n", "--suspicion-mult", "0", NULL);
	assert_usage_error(&c, rc, "--suspicion-mult: \"0\" is not a number from 1 to 100");
	rc = parse_s(&c, &e, "--node", "n", "--suspicion-mult", "101", NULL);
	assert_usage_error(&c, rc, "--suspicion-mult: \"101\"");
	rc = parse_s(&c, &e, "--node", "n", "--gossip-nodes", "65", NULL);
	assert_usage_error(&c, rc, "--gossip-nodes: \"65\" is not a number from 1 to 64");
	rc = parse_s(&c, &e, "--node", "n", "--gossip-nodes", "+5", NULL);
	assert_usage_error(&c, rc, "--gossip-nodes");
	rc = parse_s(&c, &e, "--node", "n", "--gossip-nodes", "5x", NULL);
	assert_usage_error(&c, rc, "--gossip-nodes");
	rc = parse_s(&c, &e, "--node", "n", "--suspicion-mult", "99999999999999999999", NULL);
	assert_usage_error(&c, rc, "--suspicion-mult");
}
END_TEST

/* ------------------------------------------------------------------ */
/* Names and regions                                                   */
/* ------------------------------------------------------------------ */

START_TEST(node_name_bounds)
{
	struct fake_env e = { 0 };
	struct config c;
	int rc;

	ck_assert(config_node_name_valid(repeat('a', 64)));
	ck_assert(!config_node_name_valid(repeat('a', 65)));
	ck_assert(config_node_name_valid("a"));
	ck_assert(!config_node_name_valid(""));
	ck_assert(config_node_name_valid("Web-1.iad_A"));   /* upper case is fine here */
	ck_assert(!config_node_name_valid("web 1"));
	ck_assert(!config_node_name_valid("web/1"));
	ck_assert(!config_node_name_valid("wéb"));
	ck_assert(!config_node_name_valid("web:1"));

	ck_assert_int_eq(parse_s(&c, &e, "--node", repeat('n', 64), NULL), 0);
	ck_assert_str_eq(c.node, repeat('n', 64));
	ck_assert_str_eq(c.gossip.name, repeat('n', 64));
	rc = parse_s(&c, &e, "--node", repeat('n', 65), NULL);
	assert_usage_error(&c, rc, "--node: \"nnnn");
	assert_usage_error(&c, rc, "is not a valid node name (1 to 64 of A-Z a-z 0-9 . _ -)");
	rc = parse_s(&c, &e, "--node=", NULL);
	assert_usage_error(&c, rc, "--node: \"\" is not a valid node name");

	/* The message names the variable when the value came from it. */
	env_set(&e, "MERIDIAN_NODE", "bad name");
	rc = parse_s(&c, &e, NULL);
	assert_usage_error(&c, rc, "MERIDIAN_NODE: \"bad name\"");
}
END_TEST

START_TEST(node_name_defaults_to_host_name)
{
	struct fake_env e = { 0 };
	struct config c;
	char host[256] = "";
	int rc;

	ck_assert_int_eq(gethostname(host, sizeof(host) - 1), 0);
	rc = parse_s(&c, &e, NULL);
	if (config_node_name_valid(host)) {
		ck_assert_int_eq(rc, 0);
		ck_assert_str_eq(c.node, host);
	} else {
		assert_usage_error(&c, rc, "host name (pass --node)");
	}
}
END_TEST

START_TEST(region_bounds)
{
	struct fake_env e = { 0 };
	struct config c;
	int rc;

	ck_assert(config_region_valid(repeat('r', 32)));
	ck_assert(!config_region_valid(repeat('r', 33)));
	ck_assert(config_region_valid("us-east-1"));
	ck_assert(config_region_valid("-"));
	ck_assert(!config_region_valid("Iad"));
	ck_assert(!config_region_valid("IAD"));
	ck_assert(!config_region_valid("us_east"));
	ck_assert(!config_region_valid("us.east"));
	ck_assert(!config_region_valid(""));

	ck_assert_int_eq(parse_s(&c, &e, "--node", "n", "--region", repeat('r', 32),
				 "--primary-region", repeat('p', 32), NULL), 0);
	ck_assert_str_eq(c.region, repeat('r', 32));
	ck_assert_str_eq(c.primary, repeat('p', 32));
	rc = parse_s(&c, &e, "--node", "n", "--region", repeat('r', 33), NULL);
	assert_usage_error(&c, rc, "--region: \"rrr");
	assert_usage_error(&c, rc, "(1 to 32 lower-case letters, digits or dashes)");
	rc = parse_s(&c, &e, "--node", "n", "--region", "Fra", NULL);
	assert_usage_error(&c, rc, "--region: \"Fra\" is not a valid region");
	rc = parse_s(&c, &e, "--node", "n", "--primary-region", repeat('p', 33), NULL);
	assert_usage_error(&c, rc, "--primary-region: \"ppp");
	rc = parse_s(&c, &e, "--node", "n", "--region=", NULL);
	assert_usage_error(&c, rc, "--region: \"\"");
	ck_assert_int_eq(parse_s(&c, &e, "--node", "n", "--region", "eu-west-3", NULL), 0);
	ck_assert_str_eq(gossip_tags_get(&c.gossip.tags, "region"), "eu-west-3");
}
END_TEST

START_TEST(region_environment)
{
	struct config c;
	int rc;

	{
		struct fake_env e = { 0 };

		ck_assert_int_eq(parse_s(&c, &e, "--node", "n", NULL), 0);
		ck_assert_str_eq(c.region, "local");
		ck_assert_str_eq(c.primary, "local");
		ck_assert_str_eq(gossip_tags_get(&c.gossip.tags, "primary_region"), "local");
	}
	{
		struct fake_env e = { 0 };

		env_set(&e, "FLY_REGION", "syd");
		ck_assert_int_eq(parse_s(&c, &e, "--node", "n", NULL), 0);
		ck_assert_str_eq(c.region, "syd");
	}
	{
		/* MY_REGION beats FLY_REGION, which is then not even checked. */
		struct fake_env e = { 0 };

		env_set(&e, "FLY_REGION", "Not_Valid");
		env_set(&e, "MY_REGION", "fra");
		env_set(&e, "PRIMARY_REGION", "iad");
		ck_assert_int_eq(parse_s(&c, &e, "--node", "n", NULL), 0);
		ck_assert_str_eq(c.region, "fra");
		ck_assert_str_eq(c.primary, "iad");
	}
	{
		/* An empty MY_REGION counts as unset. */
		struct fake_env e = { 0 };

		env_set(&e, "MY_REGION", "");
		env_set(&e, "FLY_REGION", "ams");
		ck_assert_int_eq(parse_s(&c, &e, "--node", "n", NULL), 0);
		ck_assert_str_eq(c.region, "ams");
	}
	{
		struct fake_env e = { 0 };

		env_set(&e, "FLY_REGION", "Bad");
		rc = parse_s(&c, &e, "--node", "n", NULL);
		assert_usage_error(&c, rc, "FLY_REGION: \"Bad\"");
	}
	{
		struct fake_env e = { 0 };

		env_set(&e, "MY_REGION", "Bad_Region");
		rc = parse_s(&c, &e, "--node", "n", NULL);
		assert_usage_error(&c, rc, "MY_REGION: \"Bad_Region\" is not a valid region");
	}
	{
		struct fake_env e = { 0 };

		env_set(&e, "PRIMARY_REGION", "IAD");
		rc = parse_s(&c, &e, "--node", "n", NULL);
		assert_usage_error(&c, rc, "PRIMARY_REGION: \"IAD\"");
	}
}
END_TEST

/* ------------------------------------------------------------------ */
/* Flags against the environment                                       */
/* ------------------------------------------------------------------ */

static void full_env(struct fake_env *e, const char *secret_file)
{
	env_set(e, "MERIDIAN_NODE", "env-node");
	env_set(e, "MY_REGION", "envmy");
	env_set(e, "FLY_REGION", "envfly");
	env_set(e, "PRIMARY_REGION", "envprimary");
	env_set(e, "MERIDIAN_BIND", "127.0.0.2:7700");
	env_set(e, "MERIDIAN_ADVERTISE", "10.0.0.2:7700");
	env_set(e, "MERIDIAN_API", "127.0.0.2:7701");
	env_set(e, "MERIDIAN_JOIN", "10.0.0.9:7600,10.0.0.10:7600");
	env_set(e, "MERIDIAN_SECRET", "env-secret");
	if (secret_file)
		env_set(e, "MERIDIAN_SECRET_FILE", secret_file);
}

START_TEST(environment_used_without_flags)
{
	struct fake_env e = { 0 };
	struct config c;
	uint8_t want[SEAL_KEY_BYTES];

	full_env(&e, NULL);
	ck_assert_int_eq(parse(&c, &e, NULL), 0);
	ck_assert_str_eq(c.node, "env-node");
	ck_assert_str_eq(c.region, "envmy");
	ck_assert_str_eq(c.primary, "envprimary");
	ck_assert_str_eq(c.bind, "127.0.0.2:7700");
	ck_assert_str_eq(c.advertise, "10.0.0.2:7700");
	ck_assert_str_eq(c.api, "127.0.0.2:7701");
	ck_assert_uint_eq(c.nseeds, 2);
	ck_assert_str_eq(c.seeds[0], "10.0.0.9:7600");
	ck_assert_str_eq(c.seeds[1], "10.0.0.10:7600");
	ck_assert_str_eq(c.secret_from, "MERIDIAN_SECRET");
	ck_assert_int_eq(seal_derive_key("env-secret", want), 0);
	ck_assert_mem_eq(c.key, want, sizeof(want));
	config_wipe(&c);
	ck_assert(key_is_zero(&c));
}
END_TEST

START_TEST(flags_beat_environment)
{
	static const char file_secret[] = "file-secret\n";
	struct fake_env e = { 0 };
	struct config c;
	uint8_t want[SEAL_KEY_BYTES];
	const char *path = temp_file(file_secret, strlen(file_secret));
	char path_copy[64];

	snprintf(path_copy, sizeof(path_copy), "%s", path);
	full_env(&e, "/nonexistent/secret");
	ck_assert_int_eq(parse(&c, &e, "--node", "flag-node", "--region", "flagr",
			       "--primary-region", "flagp", "--bind", "127.0.0.3:7800",
			       "--advertise", "10.0.0.3:7800", "--api", "127.0.0.3:7801",
			       "--join", "10.0.0.4:7600", "--secret-file", path_copy, NULL), 0);
	unlink(path_copy);
	ck_assert_str_eq(c.node, "flag-node");
	ck_assert_str_eq(c.region, "flagr");
	ck_assert_str_eq(c.primary, "flagp");
	ck_assert_str_eq(c.bind, "127.0.0.3:7800");
	ck_assert_str_eq(c.advertise, "10.0.0.3:7800");
	ck_assert_str_eq(c.api, "127.0.0.3:7801");
	ck_assert_uint_eq(c.nseeds, 1);   /* --join replaces MERIDIAN_JOIN */
	ck_assert_str_eq(c.seeds[0], "10.0.0.4:7600");
	ck_assert_str_eq(c.secret_from, "--secret-file");
	ck_assert_int_eq(seal_derive_key("file-secret", want), 0);
	ck_assert_mem_eq(c.key, want, sizeof(want));
}
END_TEST

START_TEST(address_errors_name_their_source)
{
	struct fake_env e = { 0 };
	struct config c;
	int rc;

	rc = parse_s(&c, &e, "--node", "n", "--bind", "localhost:7600", NULL);
	assert_usage_error(&c, rc, "--bind: \"localhost:7600\" is not a numeric host:port");
	rc = parse_s(&c, &e, "--node", "n", "--api", "127.0.0.1", NULL);
	assert_usage_error(&c, rc, "--api: \"127.0.0.1\" is not a numeric host:port");
	rc = parse_s(&c, &e, "--node", "n", "--advertise", "0.0.0.0:7600", NULL);
	assert_usage_error(&c, rc, "--advertise: \"0.0.0.0:7600\": peers cannot reach");
	rc = parse_s(&c, &e, "--node", "n", "--advertise", "[::]:7600", NULL);
	assert_usage_error(&c, rc, "peers cannot reach an unspecified address");
	env_set(&e, "MERIDIAN_BIND", "1.2.3.4:99999");
	rc = parse_s(&c, &e, "--node", "n", NULL);
	assert_usage_error(&c, rc, "MERIDIAN_BIND: \"1.2.3.4:99999\"");

	/* Defaults: all interfaces for gossip, loopback for the API, no
	 * advertise address (the agent derives it). */
	struct fake_env e2 = { 0 };

	ck_assert_int_eq(parse_s(&c, &e2, "--node", "n", NULL), 0);
	ck_assert_str_eq(c.bind, "0.0.0.0:7600");
	ck_assert_str_eq(c.api, "127.0.0.1:7601");
	ck_assert_ptr_null(c.advertise);
	ck_assert_str_eq(c.profile, "lan");
	ck_assert_uint_eq(c.stream_timeout_ms, 10000);
	ck_assert_int_eq(c.log_level, LOG_NOTICE);
	ck_assert_int_eq(c.log_format, LOG_FORMAT_TEXT);
	ck_assert(!c.dev);
}
END_TEST

START_TEST(log_settings)
{
	struct fake_env e = { 0 };
	struct config c;
	int rc;

	ck_assert_int_eq(parse_s(&c, &e, "--node", "n", "--log-level", "debug", "--log-format",
				 "json", NULL), 0);
	ck_assert_int_eq(c.log_level, LOG_DEBUG);
	ck_assert_int_eq(c.log_format, LOG_FORMAT_JSON);
	rc = parse_s(&c, &e, "--node", "n", "--log-level", "loud", NULL);
	assert_usage_error(&c, rc, "--log-level: \"loud\" is not one of debug, info, notice");
	rc = parse_s(&c, &e, "--node", "n", "--log-format", "xml", NULL);
	assert_usage_error(&c, rc, "--log-format: \"xml\" is not text or json");
}
END_TEST

/* ------------------------------------------------------------------ */
/* --dev and the secret                                                */
/* ------------------------------------------------------------------ */

START_TEST(dev_defaults)
{
	struct config c, local;
	int rc;

	{
		struct fake_env e = { 0 };   /* no secret at all: --dev needs none */

		rc = parse(&c, &e, "--dev", NULL);
		ck_assert_int_eq(rc, 0);
		ck_assert(c.dev);
		ck_assert_str_eq(c.node, "dev");
		ck_assert_str_eq(c.bind, "127.0.0.1:7600");
		ck_assert_str_eq(c.api, "127.0.0.1:7601");
		ck_assert_str_eq(c.profile, "local");
		ck_assert_uint_eq(c.stream_timeout_ms, 2000);
		ck_assert_str_eq(c.secret_from, "--dev");
		ck_assert(!key_is_zero(&c));
		ck_assert_int_eq(gossip_config_profile(&local.gossip, "local"), 0);
		ck_assert_uint_eq(c.gossip.probe_timeout, local.gossip.probe_timeout);
		ck_assert_uint_eq(c.gossip.suspicion_mult, local.gossip.suspicion_mult);
		ck_assert_uint_eq(c.gossip.gossip_interval, local.gossip.gossip_interval);
	}
	{
		/* Each default only unless given, by flag or environment; a
		 * configured secret is ignored (it is a throw-away cluster). */
		struct fake_env e = { 0 };

		env_set(&e, "MERIDIAN_NODE", "envdev");
		env_set(&e, "MERIDIAN_SECRET_FILE", "/nonexistent");
		rc = parse(&c, &e, "--dev", "--bind", "127.0.0.1:0", "--api", "127.0.0.1:0",
			   "--profile", "wan", NULL);
		ck_assert_int_eq(rc, 0);
		ck_assert_str_eq(c.node, "envdev");
		ck_assert_str_eq(c.bind, "127.0.0.1:0");
		ck_assert_str_eq(c.api, "127.0.0.1:0");
		ck_assert_str_eq(c.profile, "wan");
		ck_assert_str_eq(c.secret_from, "--dev");
	}
	{
		/* Two dev runs never share a key. */
		struct fake_env e = { 0 };
		uint8_t first[SEAL_KEY_BYTES];

		ck_assert_int_eq(parse(&c, &e, "--dev", NULL), 0);
		memcpy(first, c.key, sizeof(first));
		ck_assert_int_eq(parse(&c, &e, "--dev", NULL), 0);
		ck_assert(memcmp(first, c.key, sizeof(first)) != 0);
	}
}
END_TEST

START_TEST(missing_secret)
{
	struct fake_env e = { 0 };
	struct config c;
	int rc;

	env_set(&e, "MERIDIAN_SECRET", "");   /* empty is unset */
	rc = parse(&c, &e, "--node", "n", NULL);
	ck_assert_int_eq(rc, -EINVAL);
	ck_assert_int_eq(config_exit_code(rc), 2);
	ck_assert_str_eq(c.error, "no cluster secret. Make one with `meridian keygen` and pass it "
			 "as MERIDIAN_SECRET (or MERIDIAN_SECRET_FILE), or try `meridian "
			 "agent --dev`.");
	ck_assert(!c.error_hint);   /* the message says it all */
	ck_assert(key_is_zero(&c));
}
END_TEST

START_TEST(secret_file)
{
	struct fake_env e = { 0 };
	struct config c;
	uint8_t want[SEAL_KEY_BYTES];
	char path[64];
	int rc;

	/* A trailing newline (and white space) is not part of the secret. */
	snprintf(path, sizeof(path), "%s", temp_file("pass phrase \t\r\n", 15));
	env_set(&e, "MERIDIAN_SECRET", "ignored: the file wins");
	rc = parse(&c, &e, "--node", "n", "--secret-file", path, NULL);
	unlink(path);
	ck_assert_int_eq(rc, 0);
	ck_assert_int_eq(seal_derive_key("pass phrase", want), 0);
	ck_assert_mem_eq(c.key, want, sizeof(want));
	ck_assert_str_eq(c.secret_from, "--secret-file");

	/* Nothing but white space is empty. */
	snprintf(path, sizeof(path), "%s", temp_file("\n", 1));
	rc = parse(&c, &e, "--node", "n", "--secret-file", path, NULL);
	unlink(path);
	assert_usage_error(&c, rc, "--secret-file: ");
	assert_usage_error(&c, rc, " is empty");
	ck_assert(key_is_zero(&c));

	/* The bound: 4096 bytes read, one more refused. */
	snprintf(path, sizeof(path), "%s", temp_file(repeat('k', 4096), 4096));
	rc = parse(&c, &e, "--node", "n", "--secret-file", path, NULL);
	unlink(path);
	ck_assert_int_eq(rc, 0);
	snprintf(path, sizeof(path), "%s", temp_file(repeat('k', 4097), 4097));
	rc = parse(&c, &e, "--node", "n", "--secret-file", path, NULL);
	unlink(path);
	assert_usage_error(&c, rc, "is larger than 4096 bytes: not a secret");

	/* The same bound for the variable: refused, never cut. */
	struct fake_env e3 = { 0 }, e4 = { 0 };

	env_set(&e3, "MERIDIAN_SECRET", repeat('k', 4096));
	ck_assert_int_eq(parse(&c, &e3, "--node", "n", NULL), 0);
	env_set(&e4, "MERIDIAN_SECRET", repeat('k', 4097));
	rc = parse(&c, &e4, "--node", "n", NULL);
	assert_usage_error(&c, rc, "MERIDIAN_SECRET is longer than 4096 bytes");

	/* A missing file, named with where its path came from. */
	struct fake_env e2 = { 0 };

	env_set(&e2, "MERIDIAN_SECRET_FILE", "/nonexistent/meridian.secret");
	rc = parse(&c, &e2, "--node", "n", NULL);
	assert_usage_error(&c, rc, "MERIDIAN_SECRET_FILE: cannot read "
			   "/nonexistent/meridian.secret: No such file or directory");
}
END_TEST

START_TEST(secret_checked_after_flags)
{
	struct fake_env e = { 0 };
	struct config c;
	int rc;

	/* A typo is reported before the missing secret. */
	rc = parse(&c, &e, "--node", "n", "--probe-interval", "1x", NULL);
	assert_usage_error(&c, rc, "--probe-interval");
	rc = parse(&c, &e, "--node", "n", "--tag", "nokey", NULL);
	assert_usage_error(&c, rc, "--tag: \"nokey\" is not KEY=VALUE");
}
END_TEST

/* ------------------------------------------------------------------ */
/* Tags, seeds, profiles                                               */
/* ------------------------------------------------------------------ */

START_TEST(tag_bounds)
{
	struct fake_env e = { 0 };
	struct config c;
	char key32[64], key33[64], val128[200], val129[200];
	char *argv[ARGS_MAX];
	char tags[20][16];
	int argc, rc;

	snprintf(key32, sizeof(key32), "%s=v", repeat('k', 32));
	snprintf(key33, sizeof(key33), "%s=v", repeat('k', 33));
	snprintf(val128, sizeof(val128), "k=%s", repeat('v', 128));
	snprintf(val129, sizeof(val129), "k=%s", repeat('v', 129));

	ck_assert_int_eq(parse_s(&c, &e, "--node", "n", "--tag", key32, "--tag", "team=blue",
				 "--tag", "empty=", NULL), 0);
	ck_assert_str_eq(gossip_tags_get(&c.gossip.tags, repeat('k', 32)), "v");
	ck_assert_str_eq(gossip_tags_get(&c.gossip.tags, "team"), "blue");
	ck_assert_str_eq(gossip_tags_get(&c.gossip.tags, "empty"), "");
	ck_assert_str_eq(gossip_tags_get(&c.gossip.tags, "version"), MERIDIAN_VERSION);
	ck_assert_ptr_nonnull(gossip_tags_get(&c.gossip.tags, "proto_min"));
	ck_assert_ptr_nonnull(gossip_tags_get(&c.gossip.tags, "proto_max"));
	rc = parse_s(&c, &e, "--node", "n", "--tag", key33, NULL);
	assert_usage_error(&c, rc, "keys are 1-32 of [a-z0-9_.-], values up to 128 printable");
	ck_assert_int_eq(parse_s(&c, &e, "--node", "n", "--tag", val128, NULL), 0);
	rc = parse_s(&c, &e, "--node", "n", "--tag", val129, NULL);
	assert_usage_error(&c, rc, "--tag: \"k=vvv");
	rc = parse_s(&c, &e, "--node", "n", "--tag", "Team=blue", NULL);
	assert_usage_error(&c, rc, "--tag: \"Team=blue\": keys are");
	rc = parse_s(&c, &e, "--node", "n", "--tag", "=blue", NULL);
	assert_usage_error(&c, rc, "--tag: \"=blue\" is not KEY=VALUE");
	rc = parse_s(&c, &e, "--node", "n", "--tag", "region=x", NULL);
	assert_usage_error(&c, rc, "--tag: \"region\" is set by the agent itself");
	rc = parse_s(&c, &e, "--node", "n", "--tag", "primary_region=x", NULL);
	assert_usage_error(&c, rc, "\"primary_region\" is set by the agent itself");

	rc = parse_s(&c, &e, "--node", "n", "--tag", "leaving=1", NULL);
	assert_usage_error(&c, rc, "\"leaving\" is set by the agent itself");

	/* Sixteen pairs in all, five of them the agent's and one kept free
	 * for "leaving": ten fit. */
	argc = 0;
	argv[argc++] = (char *)"agent";
	argv[argc++] = (char *)"--node";
	argv[argc++] = (char *)"n";
	for (int i = 0; i < 17; i++) {
		snprintf(tags[i], sizeof(tags[i]), "t%02d=x", i);
		argv[argc++] = (char *)"--tag";
		argv[argc++] = tags[i];
	}
	argv[argc] = NULL;
	ck_assert_int_eq(parse_argv(&c, &e, 3 + 2 * 10, argv), 0);
	ck_assert_uint_eq(c.gossip.tags.count, 15);
	rc = parse_argv(&c, &e, 3 + 2 * 11, argv);
	assert_usage_error(&c, rc, "--tag: \"t10=x\" does not fit: at most 16 tags and 512 "
			   "bytes in all");
	/* More --tag flags than could ever fit is refused by the parser. */
	rc = parse_argv(&c, &e, 3 + 2 * 17, argv);
	assert_usage_error(&c, rc, "--tag: at most 16 tags");

	/* 512 bytes in all: three 128-byte values fit beside the agent's
	 * own tags, a fourth does not. */
	char big[4][160];

	for (int i = 0; i < 4; i++)
		snprintf(big[i], sizeof(big[i]), "%c=%s", 'a' + i, repeat('v', 128));
	ck_assert_int_eq(parse_s(&c, &e, "--node", "n", "--tag", big[0], "--tag", big[1],
				 "--tag", big[2], NULL), 0);
	rc = parse_s(&c, &e, "--node", "n", "--tag", big[0], "--tag", big[1], "--tag", big[2],
		     "--tag", big[3], NULL);
	assert_usage_error(&c, rc, "--tag: \"d=vvv");
	assert_usage_error(&c, rc, "does not fit");
}
END_TEST

START_TEST(join_lists)
{
	struct fake_env e = { 0 };
	struct config c;
	char *argv[ARGS_MAX];
	char many[2048];
	int argc, rc;

	env_set(&e, "MERIDIAN_JOIN", "10.9.9.9:1");
	ck_assert_int_eq(parse_s(&c, &e, "--node", "n", "--join", "10.0.0.1:7600, 10.0.0.2:7600,",
				 "--join", "[::1]:7600", "--join=10.0.0.3:7600", NULL), 0);
	ck_assert_uint_eq(c.nseeds, 4);
	ck_assert_str_eq(c.seeds[0], "10.0.0.1:7600");
	ck_assert_str_eq(c.seeds[1], "10.0.0.2:7600");
	ck_assert_str_eq(c.seeds[2], "[::1]:7600");
	ck_assert_str_eq(c.seeds[3], "10.0.0.3:7600");

	/* The environment alone: comma-separated, blanks and empties skipped. */
	struct fake_env e2 = { 0 };

	env_set(&e2, "MERIDIAN_JOIN", " 10.0.0.5:1 ,,\t10.0.0.6:2 ");
	ck_assert_int_eq(parse_s(&c, &e2, "--node", "n", NULL), 0);
	ck_assert_uint_eq(c.nseeds, 2);
	ck_assert_str_eq(c.seeds[0], "10.0.0.5:1");
	ck_assert_str_eq(c.seeds[1], "10.0.0.6:2");

	rc = parse_s(&c, &e, "--node", "n", "--join", "10.0.0.1:7600,seed.example:7600", NULL);
	assert_usage_error(&c, rc, "--join: \"seed.example:7600\" is not a numeric host:port");
	rc = parse_s(&c, &e, "--node", "n", "--join", "0.0.0.0:7600", NULL);
	assert_usage_error(&c, rc, "--join: \"0.0.0.0:7600\" is not an address one can join");
	struct fake_env e3 = { 0 };

	env_set(&e3, "MERIDIAN_JOIN", "10.0.0.1");
	rc = parse_s(&c, &e3, "--node", "n", NULL);
	assert_usage_error(&c, rc, "MERIDIAN_JOIN: \"10.0.0.1\"");

	/* 64 seeds fit, the 65th does not. */
	many[0] = '\0';
	for (int i = 0; i < 65; i++)
		snprintf(many + strlen(many), sizeof(many) - strlen(many), "%s10.0.0.%d:1",
			 i ? "," : "", i);
	argv[0] = (char *)"agent";
	argv[1] = (char *)"--node";
	argv[2] = (char *)"n";
	argv[3] = (char *)"--join";
	argv[4] = many;
	argv[5] = NULL;
	rc = parse_argv(&c, &e, 5, argv);
	assert_usage_error(&c, rc, "--join: at most 64 seeds");
	*strrchr(many, ',') = '\0';
	ck_assert_int_eq(parse_argv(&c, &e, 5, argv), 0);
	ck_assert_uint_eq(c.nseeds, 64);
	ck_assert_str_eq(c.seeds[63], "10.0.0.63:1");

	/* One list is at most 1023 bytes. */
	rc = parse_s(&c, &e, "--node", "n", "--join", repeat(',', 1024), NULL);
	assert_usage_error(&c, rc, "--join: the seed list is too long");
	ck_assert_int_eq(parse_s(&c, &e, "--node", "n", "--join", repeat(',', 1023), NULL), 0);
	ck_assert_uint_eq(c.nseeds, 0);

	/* And at most 64 --join flags. */
	argc = 0;
	argv[argc++] = (char *)"agent";
	for (int i = 0; i < 65; i++) {
		argv[argc++] = (char *)"--join";
		argv[argc++] = (char *)"10.0.0.1:1";
	}
	argv[argc] = NULL;
	rc = parse_argv(&c, &e, argc, argv);
	assert_usage_error(&c, rc, "--join: at most 64 flags");
}
END_TEST

START_TEST(profile_overrides)
{
	struct fake_env e = { 0 };
	struct config c;
	struct gossip_config wan, lan;
	int rc;

	ck_assert_int_eq(gossip_config_profile(&wan, "wan"), 0);
	ck_assert_int_eq(gossip_config_profile(&lan, "lan"), 0);

	/* No override: exactly the profile. */
	ck_assert_int_eq(parse_s(&c, &e, "--node", "n", NULL), 0);
	ck_assert_uint_eq(c.gossip.probe_interval, lan.probe_interval);
	ck_assert_uint_eq(c.gossip.probe_timeout, lan.probe_timeout);
	ck_assert_uint_eq(c.gossip.reconnect_timeout, lan.reconnect_timeout);

	ck_assert_int_eq(parse_s(&c, &e, "--node", "n", "--profile", "wan", "--gossip-nodes",
				 "7", "--suspicion-mult", "9", "--pushpull-interval", "90s",
				 "--reconnect-timeout", "48h", "--reconnect-interval", "2s",
				 "--gossip-interval", "250ms", NULL), 0);
	ck_assert_str_eq(c.profile, "wan");
	ck_assert_uint_eq(c.stream_timeout_ms, 30000);
	ck_assert_uint_eq(c.gossip.gossip_nodes, 7);
	ck_assert_uint_eq(c.gossip.suspicion_mult, 9);
	ck_assert_uint_eq(c.gossip.pushpull_interval, 90000);
	ck_assert_uint_eq(c.gossip.reconnect_timeout, 48ULL * 3600 * 1000);
	ck_assert_uint_eq(c.gossip.reconnect_interval, 2000);
	ck_assert_uint_eq(c.gossip.gossip_interval, 250);
	/* ... and everything not overridden is still the profile's. */
	ck_assert_uint_eq(c.gossip.probe_interval, wan.probe_interval);
	ck_assert_uint_eq(c.gossip.probe_timeout, wan.probe_timeout);
	ck_assert_uint_eq(c.gossip.indirect_checks, wan.indirect_checks);
	ck_assert_uint_eq(c.gossip.gossip_to_dead_ms, wan.gossip_to_dead_ms);
	ck_assert_uint_eq(c.gossip.leave_propagate_ms, wan.leave_propagate_ms);
	ck_assert_uint_eq(c.gossip.members_max, wan.members_max);

	/* The overrides are checked against the profile: wan's 3 s probe
	 * timeout does not fit in a 2 s interval... */
	rc = parse_s(&c, &e, "--node", "n", "--profile", "wan", "--probe-interval", "2s", NULL);
	assert_usage_error(&c, rc, "--probe-timeout (3000 ms) must be shorter than "
			   "--probe-interval (2000 ms)");
	/* ... unless it is overridden too; equal is not shorter. */
	ck_assert_int_eq(parse_s(&c, &e, "--node", "n", "--profile", "wan", "--probe-interval",
				 "2s", "--probe-timeout", "1999ms", NULL), 0);
	ck_assert_uint_eq(c.gossip.probe_interval, 2000);
	ck_assert_uint_eq(c.gossip.probe_timeout, 1999);
	rc = parse_s(&c, &e, "--node", "n", "--probe-interval", "2s", "--probe-timeout", "2s",
		     NULL);
	assert_usage_error(&c, rc, "must be shorter");

	rc = parse_s(&c, &e, "--node", "n", "--profile", "datacenter", NULL);
	assert_usage_error(&c, rc, "--profile: \"datacenter\" is not lan, wan or local");
	/* A flag given twice: the last one counts. */
	ck_assert_int_eq(parse_s(&c, &e, "--node", "n", "--profile", "wan", "--profile", "local",
				 NULL), 0);
	ck_assert_str_eq(c.profile, "local");
}
END_TEST

/* ------------------------------------------------------------------ */
/* The command line itself                                             */
/* ------------------------------------------------------------------ */

START_TEST(command_line_errors)
{
	struct fake_env e = { 0 };
	struct config c;
	int rc;

	rc = parse_s(&c, &e, "--nod", "n", NULL);   /* no abbreviations */
	assert_usage_error(&c, rc, "unknown flag \"--nod\"");
	rc = parse_s(&c, &e, "--bogus=3", NULL);
	ck_assert_str_eq(c.error, "unknown flag \"--bogus\"");
	ck_assert(c.error_hint);
	rc = parse_s(&c, &e, "-x", NULL);
	assert_usage_error(&c, rc, "unknown flag \"-x\"");
	rc = parse_s(&c, &e, "--node", NULL);
	ck_assert_int_eq(rc, -EINVAL);
	ck_assert_str_eq(c.error, "--node needs a value");
	rc = parse_s(&c, &e, "--dev=yes", NULL);
	ck_assert_str_eq(c.error, "--dev takes no value");
	rc = parse_s(&c, &e, "--node", "n", "members", NULL);
	ck_assert_str_eq(c.error, "unexpected argument \"members\"");
	rc = parse_s(&c, &e, "--node", "n", "--", "x", NULL);
	ck_assert_str_eq(c.error, "unexpected argument \"x\"");
	ck_assert_int_eq(parse_s(&c, &e, "--node", "n", "--", NULL), 0);

	/* Help wins over what follows it, not over an earlier mistake. */
	rc = parse(&c, &e, "--node", "n", "-h", "--bogus", NULL);
	ck_assert_int_eq(rc, CONFIG_HELP);
	ck_assert_int_eq(config_exit_code(rc), 0);
	ck_assert_int_eq(parse(&c, &e, "--help", NULL), CONFIG_HELP);
	rc = parse(&c, &e, "--bogus", "--help", NULL);
	ck_assert_int_eq(rc, -EINVAL);
	ck_assert_int_eq(config_exit_code(0), 0);
	ck_assert_int_eq(config_exit_code(-ENOMEM), 1);
}
END_TEST

/* The region RPC flags: handlers, upstream, in-flight bound, drain. */
START_TEST(rpc_flags)
{
	struct fake_env e = { 0 };
	struct config c;
	int rc;

	ck_assert_int_eq(parse_s(&c, &e, "--node", "n", NULL), 0);
	ck_assert_uint_eq(c.nhandlers, 0);
	ck_assert_ptr_null(c.rpc_upstream);
	ck_assert_uint_eq(c.rpc_max_inflight, 1024);
	ck_assert_uint_eq(c.drain_timeout_ms, 5000);

	ck_assert_int_eq(parse_s(&c, &e, "--node", "n", "--handler", "upcase=tr a-z A-Z",
				 "--handler=slow=sleep 5", "--rpc-upstream",
				 "http://127.0.0.1:9000/rpc", "--rpc-max-inflight", "7",
				 "--drain-timeout", "1500ms", NULL), 0);
	ck_assert_uint_eq(c.nhandlers, 2);
	ck_assert_str_eq(c.handlers[0].name, "upcase");
	ck_assert_str_eq(c.handlers[0].command, "tr a-z A-Z");
	ck_assert_str_eq(c.handlers[1].name, "slow");
	ck_assert_str_eq(c.handlers[1].command, "sleep 5");
	ck_assert_str_eq(c.rpc_upstream, "http://127.0.0.1:9000/rpc");
	ck_assert_uint_eq(c.rpc_max_inflight, 7);
	ck_assert_uint_eq(c.drain_timeout_ms, 1500);

	rc = parse_s(&c, &e, "--node", "n", "--handler", "nocommand", NULL);
	assert_usage_error(&c, rc, "--handler: \"nocommand\"");
	rc = parse_s(&c, &e, "--node", "n", "--handler", "ping=true", NULL);
	assert_usage_error(&c, rc, "--handler: \"ping=true\"");
	rc = parse_s(&c, &e, "--node", "n", "--handler", "a=true", "--handler", "a=false", NULL);
	assert_usage_error(&c, rc, "--handler: method \"a\" given twice");
	rc = parse_s(&c, &e, "--node", "n", "--rpc-upstream", "https://example.com/", NULL);
	assert_usage_error(&c, rc, "--rpc-upstream: \"https://example.com/\"");
	rc = parse_s(&c, &e, "--node", "n", "--rpc-max-inflight", "0", NULL);
	assert_usage_error(&c, rc, "--rpc-max-inflight: \"0\" is not a number from 1 to 65536");
	rc = parse_s(&c, &e, "--node", "n", "--rpc-max-inflight", "65537", NULL);
	assert_usage_error(&c, rc, "--rpc-max-inflight");
	rc = parse_s(&c, &e, "--node", "n", "--drain-timeout", "2", NULL);
	assert_usage_error(&c, rc, "--drain-timeout: \"2\"");
	rc = parse_s(&c, &e, "--node", "n", "--drain-timeout", "61m", NULL);
	assert_usage_error(&c, rc, "--drain-timeout");
}
END_TEST

START_TEST(election_backend_and_lease)
{
	struct fake_env e = { 0 };
	struct config c;
	int rc;

	rc = parse_s(&c, &e, "--node", "n", NULL);
	ck_assert_int_eq(rc, 0);
	ck_assert_int_eq(c.election, CONFIG_ELECTION_GOSSIP);
	ck_assert_uint_eq(c.lease_ms, 5000);
	ck_assert_uint_eq(c.lease_renew_ms, 1000);
	ck_assert_uint_eq(c.lease_guard_ms, 1000);
	ck_assert_str_eq(c.lease_name, "meridian");
	ck_assert_ptr_null(c.on_leader);
	ck_assert_uint_eq(c.replica_lag_timeout_ms, 5000);
	ck_assert_uint_eq(c.changes_stuck_ms, 30000);
	ck_assert_int_eq(c.replication, CONFIG_REPL_OFF);
	ck_assert_str_eq(c.slot, "meridian");
	ck_assert_str_eq(c.publication, "meridian");

	/* A primary database makes postgres the default; the flag wins. */
	env_set(&e, "PRIMARY_DATABASE_URL", "postgresql://db/app");
	env_set(&e, "DATABASE_URL", "postgresql://replica/app");
	rc = parse_s(&c, &e, "--node", "n", NULL);
	ck_assert_int_eq(rc, 0);
	ck_assert_int_eq(c.election, CONFIG_ELECTION_POSTGRES);
	ck_assert_int_eq(c.replication, CONFIG_REPL_STREAM);
	ck_assert_str_eq(c.primary_database_url, "postgresql://db/app");
	ck_assert_str_eq(c.database_url, "postgresql://replica/app");
	rc = parse_s(&c, &e, "--node", "n", "--election", "gossip", "--primary-database-url",
		     "postgresql://other/app", NULL);
	ck_assert_int_eq(rc, 0);
	ck_assert_int_eq(c.election, CONFIG_ELECTION_GOSSIP);
	ck_assert_str_eq(c.primary_database_url, "postgresql://other/app");
	rc = parse_s(&c, &e, "--node", "n", "--lease", "10s", "--lease-renew", "2s",
		     "--lease-guard", "3s", "--lease-name", "app-1", "--on-leader", "run it",
		     "--tag", "priority=7", NULL);
	ck_assert_int_eq(rc, 0);
	ck_assert_uint_eq(c.lease_ms, 10000);
	ck_assert_uint_eq(c.lease_renew_ms, 2000);
	ck_assert_uint_eq(c.lease_guard_ms, 3000);
	ck_assert_str_eq(c.lease_name, "app-1");
	ck_assert_str_eq(c.on_leader, "run it");
	ck_assert_uint_eq(c.priority, 7);

	e = (struct fake_env){ 0 };
	rc = parse_s(&c, &e, "--node", "n", "--election", "postgres", NULL);
	assert_usage_error(&c, rc, "--election postgres needs the primary database");
	rc = parse_s(&c, &e, "--node", "n", "--election", "raft", NULL);
	assert_usage_error(&c, rc, "--election: \"raft\"");
	rc = parse_s(&c, &e, "--node", "n", "--lease-guard", "99ms", NULL);
	assert_usage_error(&c, rc, "--lease-guard (99 ms) must be at least 100 ms");
	rc = parse_s(&c, &e, "--node", "n", "--lease", "1s", NULL);
	assert_usage_error(&c, rc, "--lease-guard (1000 ms) must be shorter than --lease");
	rc = parse_s(&c, &e, "--node", "n", "--lease", "3s", "--lease-renew", "2s", NULL);
	assert_usage_error(&c, rc, "--lease-renew (2000 ms) must be shorter");
	rc = parse_s(&c, &e, "--node", "n", "--lease-name", "a b", NULL);
	assert_usage_error(&c, rc, "--lease-name");
	rc = parse_s(&c, &e, "--node", "n", "--replication-mode", "poll", NULL);
	assert_usage_error(&c, rc, "--replication-mode poll needs the primary database");
	rc = parse_s(&c, &e, "--node", "n", "--replication-mode", "fast", NULL);
	assert_usage_error(&c, rc, "--replication-mode: \"fast\"");
	rc = parse_s(&c, &e, "--node", "n", "--slot", "Bad-Name", NULL);
	assert_usage_error(&c, rc, "--slot");
	rc = parse_s(&c, &e, "--node", "n", "--replica-lag-timeout", "6m", NULL);
	assert_usage_error(&c, rc, "--replica-lag-timeout");
	rc = parse_s(&c, &e, "--node", "n", "--changes-stuck-timeout", "2s", NULL);
	ck_assert_int_eq(rc, 0);
	ck_assert_uint_eq(c.changes_stuck_ms, 2000);
	rc = parse_s(&c, &e, "--node", "n", "--changes-stuck-timeout", "500ms", NULL);
	assert_usage_error(&c, rc, "--changes-stuck-timeout: 500 ms is less than 1000 ms");
	rc = parse_s(&c, &e, "--node", "n", "--changes-stuck-timeout", "2h", NULL);
	assert_usage_error(&c, rc, "--changes-stuck-timeout");
	rc = parse_s(&c, &e, "--node", "n", "--on-leader", "", NULL);
	assert_usage_error(&c, rc, "--on-leader");
	rc = parse_s(&c, &e, "--node", "n", "--tag", "priority=x", NULL);
	assert_usage_error(&c, rc, "priority is a number");
	rc = parse_s(&c, &e, "--node", "n", "--tag", "priority=1000001", NULL);
	assert_usage_error(&c, rc, "priority is a number");
}
END_TEST

/* Flags, then positional arguments (meridian rpc and sql). */
START_TEST(flags_with_arguments)
{
	const char *s = NULL;
	bool b = false;
	const struct flag fl[] = { { "str", FLAG_STRING, &s }, { "bool", FLAG_BOOL, &b } };
	char *a1[] = { "cmd", "--str", "x", "--bool", "METHOD", "--str", "y", NULL };
	char *a2[] = { "cmd", "--bool", "--", "--str", NULL };
	char *a3[] = { "cmd", "--bool", NULL };
	char *a4[] = { "cmd", "--nope", "M", NULL };
	char err[128];
	int first = -1;

	ck_assert_int_eq(flags_parse_args(7, a1, fl, 2, &first, err, sizeof(err)), 0);
	ck_assert_int_eq(first, 4);              /* METHOD, and what follows is its */
	ck_assert_str_eq(s, "x");
	ck_assert(b);
	ck_assert_int_eq(flags_parse_args(4, a2, fl, 2, &first, err, sizeof(err)), 0);
	ck_assert_int_eq(first, 3);              /* after "--": "--str" is an argument */
	ck_assert_int_eq(flags_parse_args(2, a3, fl, 2, &first, err, sizeof(err)), 0);
	ck_assert_int_eq(first, 2);              /* none */
	ck_assert_int_eq(flags_parse_args(3, a4, fl, 2, &first, err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "unknown flag \"--nope\"");
	/* flags_parse() still refuses any argument. */
	ck_assert_int_eq(flags_parse(7, a1, fl, 2, err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "unexpected argument \"METHOD\"");
}
END_TEST

START_TEST(usage_lists_every_flag)
{
	static const char *const all[] = {
		"node", "bind", "advertise", "api", "join", "region", "primary-region",
		"secret-file", "profile", "probe-interval", "probe-timeout", "suspicion-mult",
		"gossip-interval", "gossip-nodes", "pushpull-interval", "reconnect-interval",
		"reconnect-timeout", "tag", "leave-timeout", "handler", "rpc-upstream",
		"rpc-max-inflight", "drain-timeout", "primary-database-url", "database-url",
		"election", "lease", "lease-renew", "lease-guard", "lease-name", "on-leader",
		"replica-lag-timeout", "replication-mode", "slot", "publication", "on-change",
		"changes-stuck-timeout",
		"log-level", "log-format", "dev", "help",
	};
	const char *u = config_usage();
	struct fake_env e = { 0 };
	struct config c;
	char want[64], flag[64];
	size_t listed = 0;

	/* Every flag the agent takes is in the text... */
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		snprintf(want, sizeof(want), "--%s ", all[i]);
		ck_assert_msg(strstr(u, want) != NULL, "usage lacks %s", want);
	}
	/* ... and every flag line of the text is a flag the agent takes. */
	for (const char *p = u; (p = strstr(p, "\n  --")) != NULL; p++) {
		size_t n = strcspn(p + 3, " \n");

		ck_assert_uint_lt(n, sizeof(flag));
		memcpy(flag, p + 3, n);
		flag[n] = '\0';
		listed++;
		if (strcmp(flag, "--help") == 0)
			continue;
		parse_s(&c, &e, flag, NULL);
		ck_assert_msg(strstr(c.error, "unknown flag") == NULL, "%s: %s", flag, c.error);
	}
	ck_assert_uint_eq(listed, sizeof(all) / sizeof(all[0]) - 1);   /* "-h, --help" */
	ck_assert(strstr(u, "  -h, --help") != NULL);
	ck_assert(strstr(u, "MY_REGION, else FLY_REGION") != NULL);
}
END_TEST

START_TEST(flags_module)
{
	const char *s = NULL, *t = "default";
	const char *lv[3];
	struct flag_list l = { lv, 0, 3, NULL };
	bool b = false, b2 = false;
	const struct flag fl[] = {
		{ "str", FLAG_STRING, &s }, { "t", FLAG_STRING, &t },
		{ "list", FLAG_LIST, &l },  { "bool", FLAG_BOOL, &b },
		{ "bool2", FLAG_BOOL, &b2 },
	};
	char *argv[16];
	char err[128];
	int rc;

	argv[0] = (char *)"cmd";
	argv[1] = (char *)"--str";
	argv[2] = (char *)"one";
	argv[3] = (char *)"--str=two";
	argv[4] = (char *)"--list";
	argv[5] = (char *)"a";
	argv[6] = (char *)"--list=";
	argv[7] = (char *)"--bool";
	argv[8] = (char *)"--list";
	argv[9] = (char *)"--bool2";   /* a value, whatever it looks like */
	argv[10] = NULL;
	rc = flags_parse(10, argv, fl, 5, err, sizeof(err));
	ck_assert_int_eq(rc, 0);
	ck_assert_str_eq(s, "two");
	ck_assert_str_eq(t, "default");
	ck_assert(b);
	ck_assert(!b2);
	ck_assert_uint_eq(l.n, 3);
	ck_assert_str_eq(lv[0], "a");
	ck_assert_str_eq(lv[1], "");
	ck_assert_str_eq(lv[2], "--bool2");

	/* The list's bound, with the default noun. */
	argv[1] = (char *)"--list=d";
	rc = flags_parse(2, argv, fl, 5, err, sizeof(err));
	ck_assert_int_eq(rc, -EINVAL);
	ck_assert_str_eq(err, "--list: at most 3 values");

	argv[1] = (char *)"-";
	ck_assert_int_eq(flags_parse(2, argv, fl, 5, err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "unexpected argument \"-\"");
	argv[1] = (char *)"--";
	ck_assert_int_eq(flags_parse(2, argv, fl, 5, err, sizeof(err)), 0);
	ck_assert_str_eq(err, "");
	argv[1] = (char *)"--st";
	ck_assert_int_eq(flags_parse(2, argv, fl, 5, err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "unknown flag \"--st\"");
	argv[1] = (char *)"--bool=";
	ck_assert_int_eq(flags_parse(2, argv, fl, 5, err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "--bool takes no value");
	argv[1] = (char *)"--t";
	ck_assert_int_eq(flags_parse(2, argv, fl, 5, err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "--t needs a value");
	/* A short buffer truncates, never overflows; none at all is fine. */
	ck_assert_int_eq(flags_parse(2, argv, fl, 5, err, 4), -EINVAL);
	ck_assert_str_eq(err, "--t");
	ck_assert_int_eq(flags_parse(2, argv, fl, 5, NULL, 0), -EINVAL);
	/* No flags at all, and nothing to parse. */
	ck_assert_int_eq(flags_parse(1, argv, NULL, 0, err, sizeof(err)), 0);
	argv[1] = (char *)"-h";
	ck_assert_int_eq(flags_parse(2, argv, NULL, 0, err, sizeof(err)), FLAGS_HELP);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("config");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, duration_units);
	tcase_add_test(tc, duration_bad_units);
	tcase_add_test(tc, duration_overflow_and_zero);
	tcase_add_test(tc, duration_flags_bounds);
	tcase_add_test(tc, count_flags_bounds);
	tcase_add_test(tc, node_name_bounds);
	tcase_add_test(tc, node_name_defaults_to_host_name);
	tcase_add_test(tc, region_bounds);
	tcase_add_test(tc, region_environment);
	tcase_add_test(tc, environment_used_without_flags);
	tcase_add_test(tc, flags_beat_environment);
	tcase_add_test(tc, address_errors_name_their_source);
	tcase_add_test(tc, log_settings);
	tcase_add_test(tc, dev_defaults);
	tcase_add_test(tc, missing_secret);
	tcase_add_test(tc, secret_file);
	tcase_add_test(tc, secret_checked_after_flags);
	tcase_add_test(tc, tag_bounds);
	tcase_add_test(tc, join_lists);
	tcase_add_test(tc, profile_overrides);
	tcase_add_test(tc, command_line_errors);
	tcase_add_test(tc, rpc_flags);
	tcase_add_test(tc, election_backend_and_lease);
	tcase_add_test(tc, flags_with_arguments);
	tcase_add_test(tc, usage_lists_every_flag);
	tcase_add_test(tc, flags_module);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
