/*
 * region/region.c - the region table and target choice (see region.h).
 *
 * A refresh copies what it needs out of the gossip core into a flat
 * array sorted by name, so that every answer is deterministic whatever
 * order the core keeps its members in, and so that nothing here points
 * into memory the core may free.  Around it sit two small sorted sets:
 * the remembered regions (with their counts, recomputed at each refresh)
 * and the PRIMARY_REGION votes of the last refresh.  All allocation
 * happens up front in region_table_refresh(); a failure there leaves the
 * previous snapshot whole, and no query allocates.
 *
 * Choosing among candidates takes two passes over the members (count the
 * best, then take the k-th of them), so that the choice needs no scratch
 * memory; a random pick takes @rng_bits modulo the number of equal
 * candidates, whose bias is negligible for 64 bits and any cluster size.
 */
#include "region/region.h"

#include <errno.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/str.h"

struct region_table {
	struct region_member *members;     /* sorted by name */
	size_t nmembers;
	size_t self;                       /* index in members, or SIZE_MAX */

	struct region_info *regions;       /* remembered, sorted by name */
	size_t nregions, cap_regions;

	struct region_primary_vote *votes; /* most held first, then by value */
	size_t nvotes, cap_votes;

	struct region_stats stats;
};

struct region_table *region_table_new(void)
{
	struct region_table *t = calloc(1, sizeof(*t));

	if (t)
		t->self = SIZE_MAX;
	return t;
}

void region_table_delete(struct region_table *t)
{
	if (!t)
		return;
	free(t->members);
	free(t->regions);
	free(t->votes);
	free(t);
}

/* ------------------------------------------------------------------ */
/* Refresh                                                             */
/* ------------------------------------------------------------------ */

static int member_cmp(const void *a, const void *b)
{
	return strcmp(((const struct region_member *)a)->name,
		      ((const struct region_member *)b)->name);
}

/* Makes room for @want items of @elem bytes in @arr (capacity *@cap);
 * the array to use, or NULL (then @arr is still valid and *@cap unchanged). */
static void *grow(void *arr, size_t *cap, size_t want, size_t elem)
{
	void *p;

	if (want <= *cap)
		return arr;
	p = realloc(arr, want * elem);
	if (p)
		*cap = want;
	return p;
}

/*
 * Lower bound in a sorted array of @n items of @size bytes at @base, each
 * with a NUL-terminated name @off bytes in: the index of the first item
 * whose name is not below @name (@n when there is none).  *@found tells
 * whether that item's name is @name.  The regions, the votes and the
 * members are all kept sorted by name and all searched this way.
 */
static size_t name_lower_bound(const void *base, size_t n, size_t size, size_t off,
			       const char *name, bool *found)
{
	const char *p = base;
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (strcmp(p + mid * size + off, name) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < n && strcmp(p + lo * size + off, name) == 0;
	return lo;
}

/* Index of @name in the remembered regions, or -(insertion point) - 1. */
static long region_search(const struct region_table *t, const char *name)
{
	bool found;
	size_t at = name_lower_bound(t->regions, t->nregions, sizeof(t->regions[0]),
				     offsetof(struct region_info, name), name, &found);

	return found ? (long)at : -(long)at - 1;
}

/* The remembered region @name, added if new (NULL past REGION_MAX). */
static struct region_info *region_remember(struct region_table *t, const char *name)
{
	long at = region_search(t, name);
	size_t i;

	if (at >= 0)
		return &t->regions[at];
	if (t->nregions == REGION_MAX || t->nregions == t->cap_regions) {
		t->stats.regions_dropped++;
		return NULL;
	}
	i = (size_t)(-at - 1);
	memmove(&t->regions[i + 1], &t->regions[i], (t->nregions - i) * sizeof(t->regions[0]));
	memset(&t->regions[i], 0, sizeof(t->regions[i]));
	str_copy(t->regions[i].name, sizeof(t->regions[i].name), name);
	t->nregions++;
	return &t->regions[i];
}

/* Counts a vote for @m's primary region; votes are kept sorted by value
 * while counting, and members arrive sorted by name, so the first one
 * seen is the example. */
static void vote_add(struct region_table *t, const struct region_member *m)
{
	bool found;
	size_t lo = name_lower_bound(t->votes, t->nvotes, sizeof(t->votes[0]),
				     offsetof(struct region_primary_vote, primary), m->primary,
				     &found);

	if (found) {
		t->votes[lo].count++;
		return;
	}
	/* cap_votes >= members, so there is always room */
	memmove(&t->votes[lo + 1], &t->votes[lo], (t->nvotes - lo) * sizeof(t->votes[0]));
	str_copy(t->votes[lo].primary, sizeof(t->votes[lo].primary), m->primary);
	str_copy(t->votes[lo].example, sizeof(t->votes[lo].example), m->name);
	t->votes[lo].count = 1;
	t->nvotes++;
}

static int vote_cmp(const void *a, const void *b)
{
	const struct region_primary_vote *x = a, *y = b;

	if (x->count != y->count)
		return x->count > y->count ? -1 : 1;
	return strcmp(x->primary, y->primary);
}

static bool live(enum gossip_status s)
{
	return s == GOSSIP_ALIVE || s == GOSSIP_SUSPECT;
}

/* Alive and not leaving: a node a call may be sent to. */
static bool available(const struct region_member *m)
{
	return m->status == GOSSIP_ALIVE && !m->leaving;
}

static void member_fill(struct region_member *rm, const struct gossip_member *m)
{
	const struct gossip_tags *tags = gossip_member_tags(m);
	const char *region = gossip_tags_get(tags, REGION_TAG_REGION);
	const char *primary = gossip_tags_get(tags, REGION_TAG_PRIMARY);
	const char *leaving = gossip_tags_get(tags, REGION_TAG_LEAVING);

	memset(rm, 0, sizeof(*rm));
	str_copy(rm->name, sizeof(rm->name), gossip_member_name(m));
	str_copy(rm->addr, sizeof(rm->addr), gossip_member_addr(m));
	/* A value a peer advertises is outside input: an invalid one is
	 * dropped (and counted by the caller), never half-used. */
	if (region_name_valid(region))
		str_copy(rm->region, sizeof(rm->region), region);
	if (region_name_valid(primary))
		str_copy(rm->primary, sizeof(rm->primary), primary);
	str_copy(rm->version, sizeof(rm->version), gossip_tags_get(tags, REGION_TAG_VERSION));
	rm->status = gossip_member_status(m);
	rm->leaving = leaving && strcmp(leaving, "1") == 0;
	rm->rtt_us = gossip_member_rtt_us(m);
}

int region_table_refresh(struct region_table *t, const struct gossip *g)
{
	size_t n = gossip_member_count(g);
	const char *self_name = gossip_member_name(gossip_self(g));
	size_t want_regions = t->nregions + n;
	struct region_member *members;
	struct region_info *regions;
	struct region_primary_vote *votes;
	uint32_t bad = 0;

	/* Every allocation first: past this block nothing can fail. */
	if (want_regions > REGION_MAX)
		want_regions = REGION_MAX;
	regions = grow(t->regions, &t->cap_regions, want_regions, sizeof(*regions));
	if (!regions)
		return -ENOMEM;
	t->regions = regions;
	votes = grow(t->votes, &t->cap_votes, n ? n : 1, sizeof(*votes));
	if (!votes)
		return -ENOMEM;
	t->votes = votes;
	members = malloc((n ? n : 1) * sizeof(*members));
	if (!members)
		return -ENOMEM;

	for (size_t i = 0; i < n; i++)
		member_fill(&members[i], gossip_member_at(g, i));
	qsort(members, n, sizeof(*members), member_cmp);
	free(t->members);
	t->members = members;
	t->nmembers = n;
	t->self = SIZE_MAX;

	for (size_t i = 0; i < t->nregions; i++)
		t->regions[i].alive = t->regions[i].nodes = 0;
	t->nvotes = 0;
	for (size_t i = 0; i < n; i++) {
		struct region_member *m = &members[i];
		struct region_info *r;

		if (t->self == SIZE_MAX && strcmp(m->name, self_name) == 0) {
			t->self = i;
			m->self = true;
		}
		if (m->region[0] == '\0' || m->primary[0] == '\0')
			bad++;
		if (m->region[0] != '\0' && (r = region_remember(t, m->region)) != NULL) {
			r->nodes++;
			if (available(m))
				r->alive++;
		}
		if (m->primary[0] != '\0' && live(m->status))
			vote_add(t, m);
	}
	qsort(t->votes, t->nvotes, sizeof(*t->votes), vote_cmp);

	t->stats.refreshes++;
	t->stats.members = (uint32_t)n;
	t->stats.bad_tags = bad;
	t->stats.primary_values = (uint32_t)t->nvotes;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Queries                                                             */
/* ------------------------------------------------------------------ */

size_t region_member_count(const struct region_table *t)
{
	return t->nmembers;
}

const struct region_member *region_member_at(const struct region_table *t, size_t i)
{
	return i < t->nmembers ? &t->members[i] : NULL;
}

const struct region_member *region_member_find(const struct region_table *t, const char *name)
{
	bool found;
	size_t at;

	if (!name)
		return NULL;
	at = name_lower_bound(t->members, t->nmembers, sizeof(t->members[0]),
			      offsetof(struct region_member, name), name, &found);
	return found ? &t->members[at] : NULL;
}

const struct region_member *region_self(const struct region_table *t)
{
	return t->self == SIZE_MAX ? NULL : &t->members[t->self];
}

const char *region_self_region(const struct region_table *t)
{
	const struct region_member *s = region_self(t);

	return s ? s->region : "";
}

const char *region_primary(const struct region_table *t)
{
	const struct region_member *s = region_self(t);

	return s ? s->primary : "";
}

bool region_is_primary(const struct region_table *t)
{
	const struct region_member *s = region_self(t);

	return s && s->region[0] != '\0' && strcmp(s->region, s->primary) == 0;
}

size_t region_primary_conflict(const struct region_table *t, struct region_primary_vote *out,
			       size_t max)
{
	for (size_t i = 0; i < t->nvotes && i < max; i++)
		out[i] = t->votes[i];
	return t->nvotes;
}

const char *region_cluster_primary(const struct region_table *t)
{
	return t->nvotes == 1 ? t->votes[0].primary : NULL;
}

size_t region_nodes(const struct region_table *t, const char *region,
		    const struct region_member **out, size_t max)
{
	size_t count = 0;

	if (!region_name_valid(region))
		return 0;
	for (size_t i = 0; i < t->nmembers; i++) {
		const struct region_member *m = &t->members[i];

		if (!available(m) || strcmp(m->region, region) != 0)
			continue;
		if (count < max)
			out[count] = m;
		count++;
	}
	return count;
}

size_t region_list(const struct region_table *t, struct region_info *out, size_t max)
{
	for (size_t i = 0; i < t->nregions && i < max; i++)
		out[i] = t->regions[i];
	return t->nregions;
}

bool region_known(const struct region_table *t, const char *region)
{
	return region_name_valid(region) && region_search(t, region) >= 0;
}

void region_stats_get(const struct region_table *t, struct region_stats *out)
{
	*out = t->stats;
}

/* ------------------------------------------------------------------ */
/* Target choice                                                       */
/* ------------------------------------------------------------------ */

static const char *const err_names[] = {
	[-REGION_ERR_BAD_REGION - 4001] = "bad_region",
	[-REGION_ERR_NO_SUCH_REGION - 4001] = "no_such_region",
	[-REGION_ERR_NO_NODES - 4001] = "no_nodes_in_region",
	[-REGION_ERR_NO_SUCH_NODE - 4001] = "no_such_node",
	[-REGION_ERR_NODE_UNAVAILABLE - 4001] = "unavailable",
	[-REGION_ERR_NO_LEADER - 4001] = "no_leader",
	[-REGION_ERR_EXHAUSTED - 4001] = "exhausted",
	[-REGION_ERR_BAD_TARGET - 4001] = "bad_target",
};

const char *region_err_name(int err)
{
	int i = -err - 4001;

	if (i < 0 || (size_t)i >= sizeof(err_names) / sizeof(err_names[0]))
		return NULL;
	return err_names[i];
}

__attribute__((format(printf, 3, 4)))
static int fail(struct region_choice *out, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(out->message, sizeof(out->message), fmt, ap);
	va_end(ap);
	out->member = NULL;
	out->local = false;
	return err;
}

static bool excluded(const char *name, const char *const *exclude, size_t nexclude)
{
	for (size_t i = 0; i < nexclude; i++)
		if (exclude[i] && strcmp(exclude[i], name) == 0)
			return true;
	return false;
}

/* Why @m cannot take a call: its status, or "leaving". */
static const char *unavailable_why(const struct region_member *m)
{
	if (m->status == GOSSIP_ALIVE && m->leaving)
		return "leaving";
	return gossip_status_name(m->status) ? gossip_status_name(m->status) : "unavailable";
}

/* Can the call run here?  Only when we are alive, not leaving, and the
 * caller has not already tried us. */
static bool local_ok(const struct region_table *t, const char *const *exclude, size_t nexclude)
{
	const struct region_member *s = region_self(t);

	return s && available(s) && !excluded(s->name, exclude, nexclude);
}

/* A member pick() may choose: available, in @region, not ourselves and not
 * excluded (the caller has tried it). */
static bool candidate(const struct region_member *m, const char *region,
		      const char *const *exclude, size_t nexclude)
{
	return available(m) && strcmp(m->region, region) == 0 && !m->self &&
	       !excluded(m->name, exclude, nexclude);
}

/*
 * Picks among the available, non-excluded members of @region other than
 * ourselves: the lowest known RTT, any known beating unknown, ties and
 * unknowns at random.  *@eligible gets the count of available members
 * before exclusions.  NULL when there is none left.
 */
static const struct region_member *pick(const struct region_table *t, const char *region,
					uint64_t rng_bits, const char *const *exclude,
					size_t nexclude, uint32_t *eligible)
{
	uint32_t best = UINT32_MAX, ties = 0, n = 0;

	for (size_t i = 0; i < t->nmembers; i++) {
		const struct region_member *m = &t->members[i];
		uint32_t rtt;

		if (available(m) && strcmp(m->region, region) == 0)
			n++;
		if (!candidate(m, region, exclude, nexclude))
			continue;
		/* unknown (0) ranks after every measurement */
		rtt = m->rtt_us ? m->rtt_us : UINT32_MAX;
		if (rtt < best) {
			best = rtt;
			ties = 1;
		} else if (rtt == best) {
			ties++;
		}
	}
	*eligible = n;
	if (ties == 0)
		return NULL;
	for (size_t i = 0, k = (size_t)(rng_bits % ties); i < t->nmembers; i++) {
		const struct region_member *m = &t->members[i];
		uint32_t rtt = m->rtt_us ? m->rtt_us : UINT32_MAX;

		if (!candidate(m, region, exclude, nexclude) || rtt != best)
			continue;
		if (k-- == 0)
			return m;
	}
	return NULL;  /* not reached: the two passes agree */
}

static int choose_region(const struct region_table *t, const char *region, bool primary,
			 uint64_t rng_bits, const char *const *exclude, size_t nexclude,
			 struct region_choice *out)
{
	const char *what = primary ? "primary region" : "region";
	const struct region_member *m;

	if (!region_name_valid(region))
		return fail(out, REGION_ERR_BAD_REGION,
			    "\"%s\" is not a valid region (1 to %d lower-case letters, digits "
			    "or dashes)", region, REGION_NAME_MAX);
	str_copy(out->region, sizeof(out->region), region);
	if (strcmp(region, region_self_region(t)) == 0 && local_ok(t, exclude, nexclude)) {
		out->local = true;
		out->member = region_self(t);
		return 0;
	}
	if (!region_known(t, region))
		return fail(out, REGION_ERR_NO_SUCH_REGION,
			    "no such %s \"%s\": no node has advertised it", what, region);
	m = pick(t, region, rng_bits, exclude, nexclude, &out->candidates);
	if (m) {
		out->member = m;
		return 0;
	}
	if (out->candidates == 0)
		return fail(out, REGION_ERR_NO_NODES, "no alive node in %s \"%s\"", what, region);
	return fail(out, REGION_ERR_EXHAUSTED, "every alive node in %s \"%s\" was already "
		    "tried (%u)", what, region, out->candidates);
}

static int choose_node(const struct region_table *t, const char *name,
		       const char *const *exclude, size_t nexclude, struct region_choice *out)
{
	const struct region_member *m;

	if (!gossip_name_valid(name))
		return fail(out, REGION_ERR_NO_SUCH_NODE, "\"%s\" is not a valid node name", name);
	m = region_member_find(t, name);
	if (!m)
		return fail(out, REGION_ERR_NO_SUCH_NODE, "no node named \"%s\"", name);
	if (!available(m))
		return fail(out, REGION_ERR_NODE_UNAVAILABLE, "node \"%s\" is %s", name,
			    unavailable_why(m));
	out->candidates = 1;
	if (excluded(name, exclude, nexclude))
		return fail(out, REGION_ERR_EXHAUSTED, "node \"%s\" was already tried", name);
	out->member = m;
	out->local = m->self;
	return 0;
}

int region_choose(const struct region_table *t, const struct region_target *target,
		  uint64_t rng_bits, const char *const *exclude, size_t nexclude,
		  struct region_choice *out)
{
	memset(out, 0, sizeof(*out));
	if (!exclude)
		nexclude = 0;
	switch (target ? (int)target->kind : -1) {
	case REGION_TARGET_REGION:
		if (!target->name)
			break;
		return choose_region(t, target->name, false, rng_bits, exclude, nexclude, out);
	case REGION_TARGET_PRIMARY:
		if (region_primary(t)[0] == '\0')
			return fail(out, REGION_ERR_NO_SUCH_REGION, "this node does not know its "
				    "primary region yet (no membership snapshot)");
		return choose_region(t, region_primary(t), true, rng_bits, exclude, nexclude,
				     out);
	case REGION_TARGET_LEADER:
		/* The caller names the leader it knows (cmd/elect.h); the
		 * table only checks that it can take the call. */
		if (!target->name)
			return fail(out, REGION_ERR_NO_LEADER, "no leader is known yet: none "
				    "elected, or the news has not reached this node");
		return choose_node(t, target->name, exclude, nexclude, out);
	case REGION_TARGET_NODE:
		if (!target->name)
			break;
		return choose_node(t, target->name, exclude, nexclude, out);
	default:
		break;
	}
	return fail(out, REGION_ERR_BAD_TARGET, "no target: give a region, the primary region, "
		    "the leader or a node");
}
