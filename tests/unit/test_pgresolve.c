/*
 * tests/unit/test_pgresolve.c - storage/pgresolve.c: host names resolved
 * off the loop before libpq connects.
 *
 * Only names that never leave this machine are looked up: "localhost"
 * (from /etc/hosts) and a name with a 70-byte label, which the resolver
 * refuses before building a query, so no DNS packet is ever sent.
 * Covered: one name (every address kept, the host repeated per address,
 * a single port kept); a list mixing a name and a number, with a port per
 * host repeated to match; what is left to libpq (numbers only, hostaddr
 * given, socket directories, no host, mismatched ports, too many hosts);
 * a name that does not resolve (the error names it); one of several that
 * does not (left out with its port); cancellation (no callback, nothing
 * leaked); lookups shared between requests, and cancelled from a callback.
 */
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/pgresolve.h"
#include "storage/pgsock.h"
#include "tests/unit/uv_testutil.h"

#define DEADLINE_MS 10000
#define BAD_NAME "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.invalid"

static uv_loop_t loop;
static uv_timer_t pulse;

struct got {
	int calls, status;
	char host[1024], hostaddr[1024], port[256], other[64];
	char error[PGRESOLVE_ERROR_MAX];
};

static void setup(void)
{
	test_loop_open(&loop, &pulse);
}

static void teardown(void)
{
	test_loop_close(&loop, &pulse, DEADLINE_MS);
}

static const char *value(const struct pgsock_params *p, const char *k)
{
	for (size_t i = 0; i < p->n; i++)
		if (strcmp(p->kw[i], k) == 0)
			return p->val[i];
	return "";
}

static void on_resolved(void *data, int status, const struct pgsock_params *p,
			const char *error)
{
	struct got *g = data;

	g->calls++;
	g->status = status;
	if (status == 0) {
		ck_assert_ptr_nonnull(p);
		ck_assert_ptr_null(error);
		snprintf(g->host, sizeof(g->host), "%s", value(p, "host"));
		snprintf(g->hostaddr, sizeof(g->hostaddr), "%s", value(p, "hostaddr"));
		snprintf(g->port, sizeof(g->port), "%s", value(p, "port"));
		snprintf(g->other, sizeof(g->other), "%s", value(p, "dbname"));
		ck_assert_ptr_null(p->kw[p->n]);
	} else {
		ck_assert_ptr_null(p);
		snprintf(g->error, sizeof(g->error), "%s", error);
	}
}

static bool called(void *ctx)
{
	return ((struct got *)ctx)->calls > 0;
}

/* Params from @conninfo; resolves them.  false: nothing to resolve. */
static bool resolve(const char *conninfo, struct got *g)
{
	struct pgsock_options o = { .conninfo = conninfo };
	struct pgsock_params p;
	struct pgresolve *r = (struct pgresolve *)1;
	char err[256];

	memset(g, 0, sizeof(*g));
	ck_assert_int_eq(pgsock_params_build(&p, &o, err, sizeof(err)), 0);
	ck_assert_int_eq(pgresolve_start(&loop, &p, on_resolved, g, &r), 0);
	if (r == NULL) {
		pgsock_params_free(&p);
		return false;
	}
	ck_assert_int_eq(g->calls, 0);   /* never from inside the start */
	ck_assert(test_run_until(&loop, called, g, DEADLINE_MS));
	ck_assert_int_eq(g->calls, 1);
	pgsock_params_free(&p);
	return true;
}

static size_t entries(const char *list)
{
	size_t n = 1;

	for (; *list; list++)
		n += *list == ',';
	return n;
}

/* Each comma-separated entry of @list is @want; how many there are. */
static size_t all_are(const char *list, const char *want)
{
	char copy[1024], *save = NULL;
	size_t n = 0;

	snprintf(copy, sizeof(copy), "%s", list);
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save), n++)
		ck_assert_str_eq(t, want);
	return n;
}

START_TEST(test_name)
{
	struct got g;
	size_t n;

	ck_assert(resolve("host=localhost port=5433 dbname=d", &g));
	ck_assert_int_eq(g.status, 0);
	n = all_are(g.host, "localhost");
	ck_assert_uint_ge(n, 1);
	ck_assert_msg(strstr(g.hostaddr, "127.0.0.1") != NULL, "hostaddr %s", g.hostaddr);
	ck_assert_str_eq(g.port, "5433");
	ck_assert_str_eq(g.other, "d");
	/* One address per host entry. */
	ck_assert_uint_eq(entries(g.hostaddr), n);

	/* A URL, a name and a number, one port each. */
	ck_assert(resolve("postgresql://u@localhost:5433,127.0.0.2:5434/d", &g));
	ck_assert_int_eq(g.status, 0);
	ck_assert_ptr_nonnull(strstr(g.host, "localhost,"));
	ck_assert_ptr_nonnull(strstr(g.host, ",127.0.0.2"));
	ck_assert_ptr_nonnull(strstr(g.hostaddr, ",127.0.0.2"));
	ck_assert_ptr_nonnull(strstr(g.port, "5433,"));
	ck_assert_ptr_nonnull(strstr(g.port, ",5434"));
	/* As many entries in each list. */
	ck_assert_uint_eq(entries(g.host), entries(g.hostaddr));
	ck_assert_uint_eq(entries(g.host), entries(g.port));
}
END_TEST

START_TEST(test_left_to_libpq)
{
	struct got g;
	char many[512] = "host=";

	ck_assert(!resolve("host=127.0.0.1 port=5432", &g));
	ck_assert(!resolve("host=127.0.0.1,::1", &g));
	ck_assert(!resolve("host=localhost hostaddr=127.0.0.1", &g));
	ck_assert(!resolve("host=/var/run/postgresql", &g));
	ck_assert(!resolve("host=localhost,/tmp", &g));
	ck_assert(!resolve("dbname=x", &g));
	ck_assert(!resolve("host=localhost,localhost port=1,2,3", &g));
	for (int i = 0; i <= PGRESOLVE_HOSTS_MAX; i++)
		strcat(many, i ? ",localhost" : "localhost");
	ck_assert(!resolve(many, &g));
	ck_assert_int_eq(g.calls, 0);
}
END_TEST

START_TEST(test_failures)
{
	struct got g;

	ck_assert(resolve("host=" BAD_NAME, &g));
	ck_assert_int_lt(g.status, 0);
	ck_assert_msg(strstr(g.error, "could not resolve host \"" BAD_NAME "\": ") != NULL,
		      "error: %s", g.error);
	/* One of several does not resolve: left out, as libpq would skip it
	 * (with its port); none does: the first named. */
	ck_assert(resolve("host=" BAD_NAME ",localhost port=1,2", &g));
	ck_assert_int_eq(g.status, 0);
	ck_assert_uint_ge(all_are(g.host, "localhost"), 1);
	ck_assert_uint_eq(all_are(g.port, "2"), entries(g.host));
	ck_assert(resolve("host=" BAD_NAME "," BAD_NAME "b", &g));
	ck_assert_int_lt(g.status, 0);
	ck_assert_ptr_nonnull(strstr(g.error, "\"" BAD_NAME "\""));
}
END_TEST

/* Requests for the same name share one lookup; one cancelled does not
 * stop the others; an owner may cancel, from its callback, another
 * request that the same lookup completed. */
static struct pgresolve *pair[2];
static struct got pair_got[2];

/* The first of the pair called cancels the other. */
static void cancel_other(void *data, int status, const struct pgsock_params *p,
			 const char *error)
{
	int self = data == &pair_got[1];

	on_resolved(data, status, p, error);
	pgresolve_cancel(pair[!self]);
	pair[0] = pair[1] = NULL;
}

START_TEST(test_shared)
{
	struct pgsock_options o = { .conninfo = "host=localhost" };
	struct pgsock_params p;
	struct pgresolve *r[3];
	struct got g[3];
	char err[256];

	memset(g, 0, sizeof(g));
	ck_assert_int_eq(pgsock_params_build(&p, &o, err, sizeof(err)), 0);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(pgresolve_start(&loop, &p, on_resolved, &g[i], &r[i]), 0);
	pgresolve_cancel(r[1]);
	ck_assert(test_run_until(&loop, called, &g[2], DEADLINE_MS));
	test_run_for(&loop, 50);
	ck_assert_int_eq(g[0].calls, 1);
	ck_assert_int_eq(g[1].calls, 0);
	ck_assert_int_eq(g[2].calls, 1);
	ck_assert_ptr_nonnull(strstr(g[0].hostaddr, "127.0.0.1"));

	/* Both complete in one delivery; the first one's owner cancels the
	 * second, which is then never called (whichever order they come in,
	 * one of them is cancelled by the other). */
	memset(pair_got, 0, sizeof(pair_got));
	ck_assert_int_eq(pgresolve_start(&loop, &p, cancel_other, &pair_got[0], &pair[0]), 0);
	ck_assert_int_eq(pgresolve_start(&loop, &p, cancel_other, &pair_got[1], &pair[1]), 0);
	ck_assert(test_run_until(&loop, called, &pair_got[0], 2000) ||
		  test_run_until(&loop, called, &pair_got[1], 2000));
	test_run_for(&loop, 50);
	ck_assert_int_eq(pair_got[0].calls + pair_got[1].calls, 1);
	pgsock_params_free(&p);
}
END_TEST

START_TEST(test_cancel)
{
	struct pgsock_options o = { .conninfo = "host=localhost" };
	struct pgsock_params p;
	struct pgresolve *r;
	struct got g = { 0 };
	char err[256];

	ck_assert_int_eq(pgsock_params_build(&p, &o, err, sizeof(err)), 0);
	ck_assert_int_eq(pgresolve_start(&loop, &p, on_resolved, &g, &r), 0);
	ck_assert_ptr_nonnull(r);
	pgresolve_cancel(r);
	pgsock_params_free(&p);   /* the owner may go at once */
	test_run_for(&loop, 300);
	ck_assert_int_eq(g.calls, 0);
	pgresolve_cancel(NULL);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("pgresolve");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_name);
	tcase_add_test(tc, test_left_to_libpq);
	tcase_add_test(tc, test_failures);
	tcase_add_test(tc, test_cancel);
	tcase_add_test(tc, test_shared);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
