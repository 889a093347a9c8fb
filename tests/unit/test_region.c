/*
 * tests/unit/test_region.c - the region table and target choice
 * (region/region.h), fed from real gossip cores running in fake time on a
 * fake network (tests/fake/fakenet.h): preference by RTT, random choice
 * among ties and unmeasured nodes, skipping suspect, failed, left and
 * leaving nodes, the local short-cut, primary-region disagreement,
 * region-name validation, and the typed errors.
 *
 * Every test is seeded: MERIDIAN_SEED (decimal or 0x...) if set, else a
 * fixed default, printed at the start of each test so that any failure
 * can be replayed.  The random draws handed to region_choose() come from
 * a splitmix64 stream of the same seed.
 */
#include <check.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/gossip.h"
#include "gossip/proto.h"
#include "region/region.h"
#include "tests/fake/fakenet.h"
#include "tests/seed_testutil.h"

#define DEFAULT_SEED 0x5245474f4e3031ULL  /* "REGON01" */
#define DRAWS 400

static uint64_t seed_of(const char *test)
{
	return test_seed(test, DEFAULT_SEED);
}

/* ---- a cluster with chosen regions ----------------------------------- */

struct spec {
	const char *region;
	const char *primary;
};

/* Sets node @i's tags as the agent would, plus "leaving"="1" if asked. */
static void set_tags(struct fakenet *f, size_t i, const char *region, const char *primary,
		     bool leaving)
{
	struct gossip_tags t;

	gossip_tags_clear(&t);
	ck_assert_int_eq(gossip_tags_set(&t, "region", region), 0);
	ck_assert_int_eq(gossip_tags_set(&t, "primary_region", primary), 0);
	ck_assert_int_eq(gossip_tags_set(&t, "version", "0.1.0"), 0);
	if (leaving)
		ck_assert_int_eq(gossip_tags_set(&t, "leaving", "1"), 0);
	ck_assert_int_eq(gossip_set_tags(fakenet_core(f, i), &t, fakenet_now(f)), 0);
}

static bool cond_converged(struct fakenet *f, void *ctx)
{
	(void)ctx;
	return fakenet_converged(f);
}

/* @n nodes tagged per @spec, joined through node @seed_node (all but
 * @late, which stays alone; SIZE_MAX for none), converged. */
static struct fakenet *cluster(const struct spec *spec, size_t n, uint64_t seed,
			       const struct gossip_config *base, size_t seed_node, size_t late)
{
	struct gossip_config c;
	struct fakenet *f;

	if (base) {
		c = *base;
	} else {
		ck_assert_int_eq(gossip_config_profile(&c, "lan"), 0);
	}
	f = fakenet_new_config(n, &c, seed);
	for (size_t i = 0; i < n; i++)
		set_tags(f, i, spec[i].region, spec[i].primary, false);
	for (size_t i = 0; i < n; i++) {
		if (i == seed_node || i == late)
			continue;
		fakenet_join(f, i, seed_node);
		fakenet_run_for(f, 10);
	}
	if (late == SIZE_MAX)
		ck_assert_msg(fakenet_run_until_cond(f, fakenet_now(f) + 30000, cond_converged,
						     NULL), "cluster did not converge in 30 s");
	else
		fakenet_run_for(f, 5000);
	return f;
}

/* Waits until node @i's tags, as node @o sees them, hold @key=@value. */
struct tag_wait {
	size_t o, i;
	const char *key, *value;
};

static bool cond_tag(struct fakenet *f, void *ctx)
{
	const struct tag_wait *w = ctx;
	const struct gossip_member *m =
		gossip_member_find(fakenet_core(f, w->o), fakenet_name(f, w->i));
	const char *v = m ? gossip_tags_get(gossip_member_tags(m), w->key) : NULL;

	return v && strcmp(v, w->value) == 0;
}

static void wait_tag(struct fakenet *f, size_t o, size_t i, const char *key, const char *value)
{
	struct tag_wait w = { o, i, key, value };

	ck_assert_msg(fakenet_run_until_cond(f, fakenet_now(f) + 30000, cond_tag, &w),
		      "n%zu never saw n%zu's %s=%s", o, i, key, value);
}

struct status_wait {
	size_t o, i;
	int status;
};

static bool cond_status(struct fakenet *f, void *ctx)
{
	const struct status_wait *w = ctx;

	return fakenet_status(f, w->o, w->i) == w->status;
}

static void wait_status(struct fakenet *f, size_t o, size_t i, enum gossip_status s)
{
	struct status_wait w = { o, i, (int)s };

	ck_assert_msg(fakenet_run_until_cond(f, fakenet_now(f) + 120000, cond_status, &w),
		      "n%zu never saw n%zu %s", o, i, gossip_status_name(s));
}

static struct region_table *table_of(struct fakenet *f, size_t i)
{
	struct region_table *t = region_table_new();

	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(region_table_refresh(t, fakenet_core(f, i)), 0);
	return t;
}

static int choose(const struct region_table *t, enum region_target_kind kind, const char *name,
		  uint64_t rng, const char *const *exclude, size_t nexclude,
		  struct region_choice *out)
{
	struct region_target target = { kind, name };

	return region_choose(t, &target, rng, exclude, nexclude, out);
}

/* Draws DRAWS choices of region @region and counts how often each node
 * was picked (by index, names "n<i>"); asserts every answer is remote. */
static void draw(const struct region_table *t, const char *region, uint64_t *rng,
		 uint32_t *hits, size_t n)
{
	for (int d = 0; d < DRAWS; d++) {
		struct region_choice c;
		int rc = choose(t, REGION_TARGET_REGION, region, splitmix64(rng), NULL, 0, &c);

		ck_assert_msg(rc == 0, "draw %d: %s", d, c.message);
		ck_assert(!c.local);
		size_t i = (size_t)strtoul(c.member->name + 1, NULL, 10);

		ck_assert_uint_lt(i, n);
		hits[i]++;
	}
}

/* ---- names ------------------------------------------------------------ */

START_TEST(test_name_valid)
{
	char s[REGION_NAME_MAX + 2];

	ck_assert(region_name_valid("iad"));
	ck_assert(region_name_valid("a"));
	ck_assert(region_name_valid("us-east-1"));
	ck_assert(region_name_valid("0"));
	ck_assert(region_name_valid("-"));
	ck_assert(!region_name_valid(""));
	ck_assert(!region_name_valid(NULL));
	/* both sides of the length bound */
	memset(s, 'a', sizeof(s));
	s[REGION_NAME_MAX] = '\0';
	ck_assert(region_name_valid(s));
	s[REGION_NAME_MAX] = 'a';
	s[REGION_NAME_MAX + 1] = '\0';
	ck_assert(!region_name_valid(s));
	/* both sides of every character range */
	ck_assert(region_name_valid("az09-"));
	ck_assert(!region_name_valid("`"));   /* 'a' - 1 */
	ck_assert(!region_name_valid("{"));   /* 'z' + 1 */
	ck_assert(!region_name_valid("/"));   /* '0' - 1 */
	ck_assert(!region_name_valid(":"));   /* '9' + 1 */
	ck_assert(!region_name_valid("IAD"));
	ck_assert(!region_name_valid("fra_1"));
	ck_assert(!region_name_valid("fra.1"));
	ck_assert(!region_name_valid("fra "));
	ck_assert(!region_name_valid("\xc3\xa9"));
}
END_TEST

START_TEST(test_bad_region_target)
{
	static const struct spec spec[] = { { "fra", "iad" }, { "iad", "iad" } };
	uint64_t seed = seed_of("test_bad_region_target");
	struct fakenet *f = cluster(spec, 2, seed, NULL, 0, SIZE_MAX);
	struct region_table *t = table_of(f, 0);
	struct region_choice c;
	char s[REGION_NAME_MAX + 2];

	memset(s, 'a', sizeof(s));
	s[REGION_NAME_MAX + 1] = '\0';
	ck_assert_int_eq(choose(t, REGION_TARGET_REGION, s, 0, NULL, 0, &c),
			 REGION_ERR_BAD_REGION);
	ck_assert_ptr_null(c.member);
	ck_assert_ptr_nonnull(strstr(c.message, "not a valid region"));
	s[REGION_NAME_MAX] = '\0';
	/* 32 bytes: valid, and unknown */
	ck_assert_int_eq(choose(t, REGION_TARGET_REGION, s, 0, NULL, 0, &c),
			 REGION_ERR_NO_SUCH_REGION);
	ck_assert_int_eq(choose(t, REGION_TARGET_REGION, "IAD", 0, NULL, 0, &c),
			 REGION_ERR_BAD_REGION);
	ck_assert_int_eq(choose(t, REGION_TARGET_REGION, "", 0, NULL, 0, &c),
			 REGION_ERR_BAD_REGION);
	ck_assert_str_eq(region_err_name(REGION_ERR_BAD_REGION), "bad_region");
	ck_assert_int_eq(choose(t, REGION_TARGET_REGION, "iad", 0, NULL, 0, &c), 0);
	ck_assert_str_eq(c.member->name, "n1");
	ck_assert_str_eq(c.region, "iad");
	region_table_delete(t);
	fakenet_delete(f);
}
END_TEST

/* A peer advertising a region no agent would accept: dropped, counted. */
START_TEST(test_bad_tags)
{
	static const struct spec spec[] = { { "fra", "iad" }, { "iad", "iad" }, { "iad", "iad" } };
	uint64_t seed = seed_of("test_bad_tags");
	struct fakenet *f = cluster(spec, 3, seed, NULL, 0, SIZE_MAX);
	struct region_table *t;
	struct region_stats st;
	struct region_choice c;

	set_tags(f, 2, "Not A Region!", "iad", false);
	wait_tag(f, 0, 2, "region", "Not A Region!");
	t = table_of(f, 0);
	region_stats_get(t, &st);
	ck_assert_uint_eq(st.members, 3);
	ck_assert_uint_eq(st.bad_tags, 1);
	ck_assert_str_eq(region_member_find(t, "n2")->region, "");
	ck_assert(!region_known(t, "Not A Region!"));
	ck_assert_int_eq(choose(t, REGION_TARGET_REGION, "Not A Region!", 0, NULL, 0, &c),
			 REGION_ERR_BAD_REGION);
	for (int d = 0; d < 20; d++) {
		ck_assert_int_eq(choose(t, REGION_TARGET_REGION, "iad", (uint64_t)d, NULL, 0, &c),
				 0);
		ck_assert_str_eq(c.member->name, "n1");
	}
	region_table_delete(t);
	fakenet_delete(f);
}
END_TEST

/* ---- preference by RTT ---------------------------------------------- */

START_TEST(test_rtt_preference)
{
	/* n1..n3 in iad; n2 and n3 get the CPU only every 37 / 97 ms, so
	 * their acks come back late and their measured RTTs are higher
	 * (periods prime to the probe interval, so that the wait varies). */
	static const struct spec spec[] = {
		{ "fra", "iad" }, { "iad", "iad" }, { "iad", "iad" }, { "iad", "iad" },
		{ "fra", "iad" }, { "syd", "iad" },
	};
	uint64_t seed = seed_of("test_rtt_preference"), rng = seed;
	struct fakenet *f = cluster(spec, 6, seed, NULL, 0, SIZE_MAX);
	struct region_table *t;
	struct region_choice c;
	const struct region_member *m1, *m2, *m3, *second;

	fakenet_starve(f, 2, 37);
	fakenet_starve(f, 3, 97);
	fakenet_run_for(f, 40000);
	t = table_of(f, 0);
	m1 = region_member_find(t, "n1");
	m2 = region_member_find(t, "n2");
	m3 = region_member_find(t, "n3");
	printf("rtt_us n1 %u n2 %u n3 %u\n", m1->rtt_us, m2->rtt_us, m3->rtt_us);
	ck_assert(m1->rtt_us > 0 && m2->rtt_us > 0 && m3->rtt_us > 0);
	ck_assert_uint_lt(m1->rtt_us, m2->rtt_us);
	ck_assert_uint_lt(m1->rtt_us, m3->rtt_us);
	ck_assert_uint_ne(m2->rtt_us, m3->rtt_us);
	ck_assert_uint_eq(m1->status, GOSSIP_ALIVE);
	ck_assert_uint_eq(m2->status, GOSSIP_ALIVE);
	ck_assert_uint_eq(m3->status, GOSSIP_ALIVE);

	for (int d = 0; d < DRAWS; d++) {
		ck_assert_int_eq(choose(t, REGION_TARGET_REGION, "iad", splitmix64(&rng), NULL, 0,
					&c), 0);
		ck_assert_str_eq(c.member->name, "n1");
		ck_assert(!c.local);
		ck_assert_uint_eq(c.candidates, 3);
	}
	/* the primary region is iad: the same choice */
	ck_assert_int_eq(choose(t, REGION_TARGET_PRIMARY, NULL, splitmix64(&rng), NULL, 0, &c), 0);
	ck_assert_str_eq(c.member->name, "n1");
	ck_assert_str_eq(c.region, "iad");

	/* retry before send: the next best, then none left */
	const char *tried[3] = { "n1", NULL, NULL };

	second = m2->rtt_us < m3->rtt_us ? m2 : m3;
	ck_assert_int_eq(choose(t, REGION_TARGET_REGION, "iad", splitmix64(&rng), tried, 1, &c),
			 0);
	ck_assert_str_eq(c.member->name, second->name);
	tried[1] = second->name;
	ck_assert_int_eq(choose(t, REGION_TARGET_REGION, "iad", splitmix64(&rng), tried, 2, &c),
			 0);
	ck_assert_str_eq(c.member->name, second == m2 ? "n3" : "n2");
	tried[2] = c.member->name;
	ck_assert_int_eq(choose(t, REGION_TARGET_REGION, "iad", splitmix64(&rng), tried, 3, &c),
			 REGION_ERR_EXHAUSTED);
	ck_assert_str_eq(region_err_name(REGION_ERR_EXHAUSTED), "exhausted");
	ck_assert_ptr_null(c.member);
	ck_assert_uint_eq(c.candidates, 3);
	region_table_delete(t);
	fakenet_delete(f);
}
END_TEST

/* Equal measured RTTs (fixed 1 ms links): a uniform pick among them. */
START_TEST(test_rtt_ties_random)
{
	static const struct spec spec[] = {
		{ "fra", "iad" }, { "iad", "iad" }, { "iad", "iad" }, { "iad", "iad" },
		{ "syd", "iad" },
	};
	uint64_t seed = seed_of("test_rtt_ties_random"), rng = seed;
	struct fakenet *f = cluster(spec, 5, seed, NULL, 0, SIZE_MAX);
	uint32_t hits[5] = { 0 };
	struct region_table *t;

	fakenet_run_for(f, 30000);
	t = table_of(f, 0);
	for (int i = 1; i <= 3; i++) {
		char name[8];

		snprintf(name, sizeof(name), "n%d", i);
		ck_assert_uint_eq(region_member_find(t, name)->rtt_us, 2000);
	}
	draw(t, "iad", &rng, hits, 5);
	printf("ties: n1 %u n2 %u n3 %u of %d\n", hits[1], hits[2], hits[3], DRAWS);
	for (int i = 1; i <= 3; i++)
		ck_assert_uint_gt(hits[i], DRAWS / 6);  /* ~1/3 each */
	ck_assert_uint_eq(hits[0] + hits[4], 0);
	region_table_delete(t);
	fakenet_delete(f);
}
END_TEST

static bool cond_knows_all(struct fakenet *f, void *ctx)
{
	return gossip_member_count(fakenet_core(f, *(size_t *)ctx)) == fakenet_size(f);
}

struct rtt_wait {
	size_t o;
	int known;   /* how many of n1..n4 must have an RTT */
};

static bool cond_rtt_known(struct fakenet *f, void *ctx)
{
	const struct rtt_wait *w = ctx;
	int known = 0;

	for (size_t i = 1; i <= 4; i++) {
		const struct gossip_member *m =
			gossip_member_find(fakenet_core(f, w->o), fakenet_name(f, i));

		known += m && gossip_member_rtt_us(m) > 0;
	}
	return known >= w->known;
}

/* Nothing measured yet: every candidate is chosen; then the first
 * measured one beats the unmeasured ones. */
START_TEST(test_rtt_unknown_random)
{
	/* n0 (fra) joins last through n5 (syd), so right after its join it
	 * knows n1..n4 (iad) but has probed none of them. */
	static const struct spec spec[] = {
		{ "fra", "iad" }, { "iad", "iad" }, { "iad", "iad" }, { "iad", "iad" },
		{ "iad", "iad" }, { "syd", "iad" },
	};
	uint64_t seed = seed_of("test_rtt_unknown_random"), rng = seed;
	struct fakenet *f = cluster(spec, 6, seed, NULL, 5, 0);
	uint32_t hits[6] = { 0 };
	struct region_table *t;
	struct region_choice c;
	struct rtt_wait w = { 0, 1 };
	size_t o = 0;
	const char *measured = NULL;

	fakenet_join(f, 0, 5);
	ck_assert(fakenet_run_until_cond(f, fakenet_now(f) + 5000, cond_knows_all, &o));
	t = table_of(f, 0);
	for (size_t i = 1; i <= 4; i++)
		ck_assert_msg(region_member_find(t, fakenet_name(f, i))->rtt_us == 0,
			      "n%zu measured already: the test needs none measured", i);
	draw(t, "iad", &rng, hits, 6);
	printf("unknown: n1 %u n2 %u n3 %u n4 %u of %d\n", hits[1], hits[2], hits[3], hits[4],
	       DRAWS);
	for (int i = 1; i <= 4; i++)
		ck_assert_uint_gt(hits[i], DRAWS / 8);  /* ~1/4 each */
	ck_assert_uint_eq(hits[0] + hits[5], 0);

	/* the first probe of an iad node lands: from then on it is chosen */
	ck_assert(fakenet_run_until_cond(f, fakenet_now(f) + 10000, cond_rtt_known, &w));
	ck_assert_int_eq(region_table_refresh(t, fakenet_core(f, 0)), 0);
	for (size_t i = 1; i <= 4; i++) {
		const struct region_member *m = region_member_find(t, fakenet_name(f, i));

		if (m->rtt_us) {
			ck_assert_ptr_null(measured);
			measured = m->name;
		}
	}
	ck_assert_ptr_nonnull(measured);
	for (int d = 0; d < DRAWS; d++) {
		ck_assert_int_eq(choose(t, REGION_TARGET_REGION, "iad", splitmix64(&rng), NULL, 0,
					&c), 0);
		ck_assert_str_eq(c.member->name, measured);
	}
	/* once it was tried, the others are drawn at random again */
	memset(hits, 0, sizeof(hits));
	for (int d = 0; d < DRAWS; d++) {
		ck_assert_int_eq(choose(t, REGION_TARGET_REGION, "iad", splitmix64(&rng),
					&measured, 1, &c), 0);
		ck_assert_str_ne(c.member->name, measured);
		hits[strtoul(c.member->name + 1, NULL, 10)]++;
	}
	for (size_t i = 1; i <= 4; i++)
		if (strcmp(fakenet_name(f, i), measured) != 0)
			ck_assert_uint_gt(hits[i], DRAWS / 6);
	region_table_delete(t);
	fakenet_delete(f);
}
END_TEST

/* ---- skipping nodes that cannot answer --------------------------------- */

static bool drop_dead_n2_to_n0(void *ctx, size_t from, size_t to,
			       const struct gossip_packet *pkt)
{
	(void)ctx;
	(void)from;
	if (to != 0)
		return false;
	for (size_t i = 0; i < pkt->count; i++) {
		const struct gossip_msg *m = &pkt->msgs[i];

		if (m->type == GOSSIP_MSG_DEAD && m->u.dead.node.len == 2 &&
		    memcmp(m->u.dead.node.ptr, "n2", 2) == 0)
			return true;
	}
	return false;
}

START_TEST(test_skip_unavailable)
{
	/* iad: n1 alive, n2 suspect, n3 failed, n4 left, n5 leaving;
	 * syd: n6 failed (a region with no one left to answer). */
	static const struct spec spec[] = {
		{ "fra", "iad" }, { "iad", "iad" }, { "iad", "iad" }, { "iad", "iad" },
		{ "iad", "iad" }, { "iad", "iad" }, { "syd", "iad" }, { "fra", "iad" },
	};
	uint64_t seed = seed_of("test_skip_unavailable"), rng = seed;
	struct gossip_config base;
	struct fakenet *f;
	struct region_table *t;
	struct region_choice c;
	const struct region_member *nodes[8];
	struct region_info info[8];
	size_t nr;

	/* tombstones reaped after 2 minutes, so that we can see a region
	 * outlive its last member */
	ck_assert_int_eq(gossip_config_profile(&base, "lan"), 0);
	base.reconnect_timeout = 120000;
	f = cluster(spec, 8, seed, &base, 0, SIZE_MAX);

	set_tags(f, 5, "iad", "iad", true);
	wait_tag(f, 0, 5, "leaving", "1");
	fakenet_leave(f, 4);
	wait_status(f, 0, 4, GOSSIP_LEFT);
	fakenet_kill(f, 3);
	fakenet_kill(f, 6);
	wait_status(f, 0, 3, GOSSIP_FAILED);
	wait_status(f, 0, 6, GOSSIP_FAILED);
	/* n0 must see n2 suspect: it may hear that n2 is dead before it hears
	 * the suspicion, so it hears no death notice about n2 until its own
	 * suspicion (from gossip or its own probe) is on record. */
	fakenet_set_filter(f, drop_dead_n2_to_n0, NULL);
	fakenet_kill(f, 2);
	wait_status(f, 0, 2, GOSSIP_SUSPECT);
	fakenet_set_filter(f, NULL, NULL);

	t = table_of(f, 0);
	ck_assert_uint_eq(region_nodes(t, "iad", nodes, 8), 1);
	ck_assert_str_eq(nodes[0]->name, "n1");
	for (int d = 0; d < DRAWS; d++) {
		ck_assert_int_eq(choose(t, REGION_TARGET_REGION, "iad", splitmix64(&rng), NULL, 0,
					&c), 0);
		ck_assert_str_eq(c.member->name, "n1");
		ck_assert_uint_eq(c.candidates, 1);
	}
	/* each one by name: typed, and saying why */
	static const struct {
		const char *name, *why;
	} gone[] = { { "n2", "suspect" }, { "n3", "failed" }, { "n4", "left" },
		     { "n5", "leaving" }, { "n6", "failed" } };
	for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++) {
		char want[64];

		ck_assert_int_eq(choose(t, REGION_TARGET_NODE, gone[i].name, 0, NULL, 0, &c),
				 REGION_ERR_NODE_UNAVAILABLE);
		snprintf(want, sizeof(want), "node \"%s\" is %s", gone[i].name, gone[i].why);
		ck_assert_str_eq(c.message, want);
	}
	ck_assert_str_eq(region_err_name(REGION_ERR_NODE_UNAVAILABLE), "unavailable");
	ck_assert_int_eq(choose(t, REGION_TARGET_NODE, "n1", 0, NULL, 0, &c), 0);
	ck_assert_str_eq(c.member->name, "n1");
	ck_assert(!c.local);
	ck_assert_int_eq(choose(t, REGION_TARGET_NODE, "n99", 0, NULL, 0, &c),
			 REGION_ERR_NO_SUCH_NODE);
	ck_assert_str_eq(c.message, "no node named \"n99\"");
	ck_assert_int_eq(choose(t, REGION_TARGET_NODE, "bad name!", 0, NULL, 0, &c),
			 REGION_ERR_NO_SUCH_NODE);
	ck_assert_str_eq(region_err_name(REGION_ERR_NO_SUCH_NODE), "no_such_node");

	/* no_such_region versus no_nodes_in_region */
	ck_assert_int_eq(choose(t, REGION_TARGET_REGION, "syd", 0, NULL, 0, &c),
			 REGION_ERR_NO_NODES);
	ck_assert_str_eq(c.message, "no alive node in region \"syd\"");
	ck_assert_str_eq(region_err_name(REGION_ERR_NO_NODES), "no_nodes_in_region");
	ck_assert_int_eq(choose(t, REGION_TARGET_REGION, "ams", 0, NULL, 0, &c),
			 REGION_ERR_NO_SUCH_REGION);
	ck_assert_str_eq(region_err_name(REGION_ERR_NO_SUCH_REGION), "no_such_region");
	ck_assert_ptr_nonnull(strstr(c.message, "\"ams\""));

	/* the region list: fra 2 (n0, n7), iad 1 of 5, syd 0 of 1 */
	nr = region_list(t, info, 8);
	ck_assert_uint_eq(nr, 3);
	ck_assert_str_eq(info[0].name, "fra");
	ck_assert_uint_eq(info[0].alive, 2);
	ck_assert_str_eq(info[1].name, "iad");
	ck_assert_uint_eq(info[1].alive, 1);
	ck_assert_uint_eq(info[1].nodes, 5);
	ck_assert_str_eq(info[2].name, "syd");
	ck_assert_uint_eq(info[2].alive, 0);
	ck_assert_uint_eq(info[2].nodes, 1);

	/* syd's tombstone is reaped: the region is still known, still empty */
	fakenet_run_for(f, 200000);
	ck_assert_ptr_null(gossip_member_find(fakenet_core(f, 0), "n6"));
	ck_assert_int_eq(region_table_refresh(t, fakenet_core(f, 0)), 0);
	ck_assert_ptr_null(region_member_find(t, "n6"));
	ck_assert(region_known(t, "syd"));
	ck_assert_int_eq(choose(t, REGION_TARGET_REGION, "syd", 0, NULL, 0, &c),
			 REGION_ERR_NO_NODES);
	nr = region_list(t, info, 8);
	ck_assert_uint_eq(nr, 3);
	ck_assert_uint_eq(info[2].nodes, 0);
	/* a fresh table never heard of it */
	region_table_delete(t);
	t = table_of(f, 0);
	ck_assert_int_eq(choose(t, REGION_TARGET_REGION, "syd", 0, NULL, 0, &c),
			 REGION_ERR_NO_SUCH_REGION);
	region_table_delete(t);
	fakenet_delete(f);
}
END_TEST

/* ---- the local short-cut ----------------------------------------------- */

START_TEST(test_local)
{
	static const struct spec spec[] = {
		{ "fra", "iad" }, { "iad", "iad" }, { "iad", "iad" }, { "fra", "iad" },
	};
	uint64_t seed = seed_of("test_local"), rng = seed;
	struct fakenet *f = cluster(spec, 4, seed, NULL, 0, SIZE_MAX);
	struct region_table *t = table_of(f, 0), *ti = table_of(f, 1);
	struct region_choice c;
	const char *self = "n0", *n3 = "n3";

	ck_assert_str_eq(region_self(t)->name, "n0");
	ck_assert(region_self(t)->self);
	ck_assert_str_eq(region_self_region(t), "fra");
	ck_assert_str_eq(region_primary(t), "iad");
	ck_assert(!region_is_primary(t));
	ck_assert(region_is_primary(ti));

	/* own region and own node: here, whatever the draw */
	for (int d = 0; d < 50; d++) {
		ck_assert_int_eq(choose(t, REGION_TARGET_REGION, "fra", splitmix64(&rng), NULL, 0,
					&c), 0);
		ck_assert(c.local);
		ck_assert_str_eq(c.member->name, "n0");
	}
	ck_assert_int_eq(choose(t, REGION_TARGET_NODE, "n0", 0, NULL, 0, &c), 0);
	ck_assert(c.local);
	ck_assert_ptr_eq(c.member, region_self(t));
	/* the primary from a primary-region node is local too; not from fra */
	ck_assert_int_eq(choose(ti, REGION_TARGET_PRIMARY, NULL, 0, NULL, 0, &c), 0);
	ck_assert(c.local);
	ck_assert_str_eq(c.member->name, "n1");
	ck_assert_int_eq(choose(t, REGION_TARGET_PRIMARY, NULL, 0, NULL, 0, &c), 0);
	ck_assert(!c.local);
	ck_assert(strcmp(c.member->name, "n1") == 0 || strcmp(c.member->name, "n2") == 0);
	/* a caller that already tried us goes to the network */
	ck_assert_int_eq(choose(t, REGION_TARGET_REGION, "fra", 0, &self, 1, &c), 0);
	ck_assert(!c.local);
	ck_assert_str_eq(c.member->name, "n3");

	/* we are leaving: no more local work; our region's others take it */
	set_tags(f, 0, "fra", "iad", true);
	ck_assert_int_eq(region_table_refresh(t, fakenet_core(f, 0)), 0);
	ck_assert(region_self(t)->leaving);
	for (int d = 0; d < 50; d++) {
		ck_assert_int_eq(choose(t, REGION_TARGET_REGION, "fra", splitmix64(&rng), NULL, 0,
					&c), 0);
		ck_assert(!c.local);
		ck_assert_str_eq(c.member->name, "n3");
	}
	ck_assert_int_eq(choose(t, REGION_TARGET_NODE, "n0", 0, NULL, 0, &c),
			 REGION_ERR_NODE_UNAVAILABLE);
	ck_assert_str_eq(c.message, "node \"n0\" is leaving");
	ck_assert_int_eq(choose(t, REGION_TARGET_REGION, "fra", 0, &n3, 1, &c),
			 REGION_ERR_EXHAUSTED);
	/* and the region's only other node leaving too: nobody */
	set_tags(f, 3, "fra", "iad", true);
	wait_tag(f, 0, 3, "leaving", "1");
	ck_assert_int_eq(region_table_refresh(t, fakenet_core(f, 0)), 0);
	ck_assert_int_eq(choose(t, REGION_TARGET_REGION, "fra", 0, NULL, 0, &c),
			 REGION_ERR_NO_NODES);
	ck_assert_uint_eq(region_nodes(t, "fra", NULL, 0), 0);
	/* calls out still work */
	ck_assert_int_eq(choose(t, REGION_TARGET_REGION, "iad", 0, NULL, 0, &c), 0);
	ck_assert(!c.local);

	/* a node that has left gracefully does no local work either */
	fakenet_leave(f, 1);
	ck_assert_int_eq(region_table_refresh(ti, fakenet_core(f, 1)), 0);
	ck_assert_uint_eq(region_self(ti)->status, GOSSIP_LEFT);
	ck_assert_int_eq(choose(ti, REGION_TARGET_PRIMARY, NULL, 0, NULL, 0, &c), 0);
	ck_assert(!c.local);
	ck_assert_str_eq(c.member->name, "n2");
	region_table_delete(t);
	region_table_delete(ti);
	fakenet_delete(f);
}
END_TEST

/* ---- primary-region disagreement --------------------------------------- */

START_TEST(test_primary_conflict)
{
	static const struct spec spec[] = {
		{ "fra", "iad" }, { "iad", "iad" }, { "iad", "iad" }, { "syd", "iad" },
		{ "fra", "fra" }, { "syd", "syd" }, { "syd", "syd" },
	};
	uint64_t seed = seed_of("test_primary_conflict");
	struct fakenet *f = cluster(spec, 7, seed, NULL, 0, SIZE_MAX);
	struct region_primary_vote v[4];
	struct region_stats st;
	struct region_table *t;
	struct region_choice c;

	/* every node sees the same disagreement, and its own setting stays
	 * its own: nothing is resolved */
	for (size_t o = 0; o < 7; o++) {
		t = table_of(f, o);
		ck_assert_uint_eq(region_primary_conflict(t, v, 4), 3);
		ck_assert_str_eq(v[0].primary, "iad");
		ck_assert_uint_eq(v[0].count, 4);
		ck_assert_str_eq(v[0].example, "n0");
		ck_assert_str_eq(v[1].primary, "syd");
		ck_assert_uint_eq(v[1].count, 2);
		ck_assert_str_eq(v[1].example, "n5");
		ck_assert_str_eq(v[2].primary, "fra");
		ck_assert_uint_eq(v[2].count, 1);
		ck_assert_str_eq(v[2].example, "n4");
		ck_assert_ptr_null(region_cluster_primary(t));
		region_stats_get(t, &st);
		ck_assert_uint_eq(st.primary_values, 3);
		ck_assert_str_eq(region_primary(t), spec[o].primary);
		ck_assert(region_is_primary(t) == (strcmp(spec[o].region, spec[o].primary) == 0));
		region_table_delete(t);
	}
	t = table_of(f, 4);
	ck_assert_uint_eq(region_primary_conflict(t, v, 1), 3);  /* bounded output */
	ck_assert_int_eq(choose(t, REGION_TARGET_PRIMARY, NULL, 0, NULL, 0, &c), 0);
	ck_assert(c.local);   /* n4 believes fra, its own region */
	region_table_delete(t);

	/* n4 is fixed; n5 and n6 die: the dead do not vote */
	set_tags(f, 4, "fra", "iad", false);
	fakenet_kill(f, 5);
	fakenet_kill(f, 6);
	wait_tag(f, 0, 4, "primary_region", "iad");
	wait_status(f, 0, 5, GOSSIP_FAILED);
	wait_status(f, 0, 6, GOSSIP_FAILED);
	t = table_of(f, 0);
	ck_assert_uint_eq(region_primary_conflict(t, v, 4), 1);
	ck_assert_str_eq(v[0].primary, "iad");
	ck_assert_uint_eq(v[0].count, 5);
	ck_assert_str_eq(region_cluster_primary(t), "iad");
	region_table_delete(t);
	fakenet_delete(f);
}
END_TEST

/* ---- the leader, bad targets, error names, an empty table -------------- */

START_TEST(test_leader_and_errors)
{
	static const struct spec spec[] = { { "iad", "iad" }, { "iad", "iad" } };
	uint64_t seed = seed_of("test_leader_and_errors");
	struct fakenet *f = cluster(spec, 2, seed, NULL, 0, SIZE_MAX);
	struct region_table *t = table_of(f, 0), *empty = region_table_new();
	struct region_choice c;
	struct region_target none = { REGION_TARGET_REGION, NULL };

	ck_assert_int_eq(choose(t, REGION_TARGET_LEADER, NULL, 0, NULL, 0, &c),
			 REGION_ERR_NO_LEADER);
	ck_assert_ptr_null(c.member);
	ck_assert_str_eq(region_err_name(REGION_ERR_NO_LEADER), "no_leader");
	ck_assert_ptr_nonnull(strstr(c.message, "no leader is known"));
	/* A named leader is chosen as a node is: here, or remote. */
	ck_assert_int_eq(choose(t, REGION_TARGET_LEADER, fakenet_name(f, 0), 0, NULL, 0, &c), 0);
	ck_assert(c.local);
	ck_assert_int_eq(choose(t, REGION_TARGET_LEADER, fakenet_name(f, 1), 0, NULL, 0, &c), 0);
	ck_assert(!c.local);
	ck_assert_str_eq(c.member->name, fakenet_name(f, 1));
	ck_assert_int_eq(choose(t, REGION_TARGET_LEADER, "gone", 0, NULL, 0, &c),
			 REGION_ERR_NO_SUCH_NODE);
	ck_assert_int_eq(region_choose(t, &none, 0, NULL, 0, &c), REGION_ERR_BAD_TARGET);
	ck_assert_int_eq(region_choose(t, NULL, 0, NULL, 0, &c), REGION_ERR_BAD_TARGET);
	ck_assert_str_eq(region_err_name(REGION_ERR_BAD_TARGET), "bad_target");
	ck_assert_ptr_null(region_err_name(0));
	ck_assert_ptr_null(region_err_name(-22));
	ck_assert_ptr_null(region_err_name(REGION_ERR_BAD_REGION + 1));
	ck_assert_ptr_null(region_err_name(REGION_ERR_BAD_TARGET - 1));

	/* before its first refresh a table knows nothing, and says so */
	ck_assert_ptr_nonnull(empty);
	ck_assert_ptr_null(region_self(empty));
	ck_assert(!region_is_primary(empty));
	ck_assert_str_eq(region_primary(empty), "");
	ck_assert_uint_eq(region_primary_conflict(empty, NULL, 0), 0);
	ck_assert_ptr_null(region_cluster_primary(empty));
	ck_assert_int_eq(choose(empty, REGION_TARGET_REGION, "iad", 0, NULL, 0, &c),
			 REGION_ERR_NO_SUCH_REGION);
	ck_assert_int_eq(choose(empty, REGION_TARGET_PRIMARY, NULL, 0, NULL, 0, &c),
			 REGION_ERR_NO_SUCH_REGION);
	ck_assert_int_eq(choose(empty, REGION_TARGET_NODE, "n0", 0, NULL, 0, &c),
			 REGION_ERR_NO_SUCH_NODE);
	ck_assert_ptr_null(region_member_at(empty, 0));
	region_table_delete(empty);
	region_table_delete(NULL);
	region_table_delete(t);
	fakenet_delete(f);
}
END_TEST

static Suite *region_suite(void)
{
	Suite *s = suite_create("region");
	TCase *tc = tcase_create("region");

	tcase_add_test(tc, test_name_valid);
	tcase_add_test(tc, test_bad_region_target);
	tcase_add_test(tc, test_bad_tags);
	tcase_add_test(tc, test_rtt_preference);
	tcase_add_test(tc, test_rtt_ties_random);
	tcase_add_test(tc, test_rtt_unknown_random);
	tcase_add_test(tc, test_skip_unavailable);
	tcase_add_test(tc, test_local);
	tcase_add_test(tc, test_primary_conflict);
	tcase_add_test(tc, test_leader_and_errors);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(region_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
