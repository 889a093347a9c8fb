/*
 * cmd/elect.c - leader election on the loop (cmd/elect.h says what it
 * promises; election/election.h is the machine's contract).
 *
 * Flow.  Every input to the machine goes through one of the wrappers
 * below and ends in elect_settle(): it re-arms the single timer at the
 * machine's next deadline and, when the known leader changed, logs it
 * and publishes a `leader` event.  The machine's callbacks never read the
 * machine back (it may be mid-update); they only note what happened
 * (leader_dirty) or act on the world (gossip the announcement, start or
 * stop the hook, run a lease statement).
 *
 * The view.  Membership events arrive from inside the gossip core, where
 * the view must not be read, so they only mark it stale; a zero-delay
 * timer rebuilds it on the next loop turn: one pass over the members
 * (region, leaving and priority tags, the "leader" user data, decoded
 * here: network input, so a bad one is counted and skipped).
 *
 * Freshness.  Whether we lead is asked with a freshly read clock
 * (uv_update_time first): an agent that was stopped (SIGSTOP) and wakes
 * past its deadline answers "not leader" even before its timers run.
 */
#include "cmd/elect.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cmd/agent.h"
#include "cmd/commands.h"

#include "election/election.h"
#include "election/lease_pg.h"
#include "gossip/tags.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "region/region.h"

#define PEERS_MAX 65536

struct elect;

/*
 * One --on-leader run.  The agent starts `meridian __on-leader CMD` (the
 * shim, cmd_on_leader_exec() below) as the leader of a new session; the
 * shim runs `/bin/sh -c CMD` in its process group and stays its parent.
 * Stopping sends SIGTERM to the shim, which passes it to the whole group,
 * and SIGKILL to the group after the grace (--lease-guard): by then the
 * lease the leadership rested on may be about to expire at the server.
 * The kernel sends the shim SIGTERM when the agent dies (PR_SET_PDEATHSIG),
 * and the shim escalates to SIGKILL on its own after the same grace, so a
 * duty never outlives a kill -9'd agent, whatever CMD forks.
 */
struct hook {
	uv_process_t proc;
	uv_timer_t kill_timer;
	struct elect *owner;          /* NULL once the owner no longer tracks it */
	uint64_t term;
	int handles;                  /* open handles; freed at 0 */
	bool exited, stopping;
};

struct elect {
	struct elect_env env;
	struct election *e;
	struct lease_pg *lease;
	uv_timer_t timer;             /* the machine's next deadline */
	uv_timer_t view_timer;        /* rebuild the view on the next turn */
	uv_timer_t leave_timer;       /* bounds each step of the leave */
	uv_timer_t fail_timer;        /* answers a lease request that could not start */
	struct election_peer *peers;
	char (*names)[GOSSIP_NAME_MAX + 1];
	size_t peers_cap;
	bool view_pending, join_pending, leader_dirty, closing;
	bool leaving, leave_handed, leave_waited;
	int handles;                  /* open timers; freed at 0 after close */
	struct election_lease_result failed;   /* for fail_timer */
	/* the leader last logged and published */
	char said_name[ELECTION_NAME_MAX + 1];
	uint64_t said_term;
	uint64_t since_wall;          /* when we began leading (wall ms) */
	struct hook *hook;            /* the --on-leader of this leadership, running
					 or stopping; NULL when none */
	uint64_t announce_bad, hooks_started, hooks_failed;
};

static void elect_hand_off(struct elect *x);

static uint64_t now_ms(struct elect *x)
{
	return uv_now(x->env.loop);
}

/* The grace a stopping hook gets before SIGKILL. */
static uint32_t hook_grace_ms(const struct elect *x)
{
	return (uint32_t)x->env.cfg->lease_guard_ms;
}

/* ------------------------------------------------------------------ */
/* The --on-leader process                                             */
/* ------------------------------------------------------------------ */

static void hook_handle_closed(uv_handle_t *h)
{
	struct hook *k = h->data;

	if (--k->handles == 0)
		free(k);
}

static void hook_exited(uv_process_t *p, int64_t status, int sig)
{
	struct hook *k = p->data;
	struct elect *x = k->owner;

	k->exited = true;
	if (sig)
		LOG(LOG_NOTICE, "election", "--on-leader (term %llu) ended by signal %d",
		    (unsigned long long)k->term, sig);
	else
		LOG(status && !k->stopping ? LOG_WARNING : LOG_NOTICE, "election",
		    "--on-leader (term %llu) exited with status %lld%s",
		    (unsigned long long)k->term, (long long)status,
		    k->stopping ? "" : " while this node still leads; it is not restarted");
	uv_timer_stop(&k->kill_timer);
	uv_close((uv_handle_t *)&k->kill_timer, hook_handle_closed);
	uv_close((uv_handle_t *)&k->proc, hook_handle_closed);
	if (x && x->hook == k) {
		x->hook = NULL;
		/* A leave was waiting for the duty to stop: hand off now. */
		if (x->leaving && !x->leave_handed)
			elect_hand_off(x);
	}
}

static void hook_kill_fired(uv_timer_t *t)
{
	struct hook *k = t->data;

	if (!k->exited) {
		LOG(LOG_WARNING, "election", "--on-leader (term %llu) still runs after SIGTERM "
		    "and the grace: SIGKILL to its process group",
		    (unsigned long long)k->term);
		uv_kill(-k->proc.pid, SIGKILL);
	}
}

/* Asks the hook to stop (SIGTERM, SIGKILL after the grace).  It stays in
 * x->hook until it has exited. */
static void hook_stop(struct elect *x)
{
	struct hook *k = x->hook;

	if (k == NULL || k->exited || k->stopping)
		return;
	k->stopping = true;
	uv_kill(k->proc.pid, SIGTERM);
	uv_timer_start(&k->kill_timer, hook_kill_fired, hook_grace_ms(x), 0);
}

/* Forgets the hook (it stops on its own), e.g. when the agent closes. */
static void hook_detach(struct elect *x)
{
	if (x->hook) {
		hook_stop(x);
		x->hook->owner = NULL;
		x->hook = NULL;
	}
}

/* Inherited variables the hook must not see: ours are set fresh, and the
 * secret is not the duty's business. */
static bool env_dropped(const char *e)
{
	static const char *const names[] = { "MERIDIAN_TERM=", "MERIDIAN_NODE=",
					     "MERIDIAN_REGION=", "MERIDIAN_AGENT_PID=",
					     "MERIDIAN_HOOK_GRACE_MS=", "MERIDIAN_SECRET=",
					     "MERIDIAN_SECRET_FILE=" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strncmp(e, names[i], strlen(names[i])) == 0)
			return true;
	return false;
}

static void hook_start(struct elect *x, uint64_t term)
{
	extern char **environ;
	const struct config *cfg = x->env.cfg;
	char exe[4096], term_s[48], node_s[96], region_s[64], parent_s[48], grace_s[48];
	size_t exelen = sizeof(exe), nenv = 0;
	char **envp;
	struct hook *k;
	int rc;

	if (cfg->on_leader == NULL)
		return;
	hook_detach(x);   /* an earlier one still stopping goes on alone */
	for (char **e = environ; *e; e++)
		nenv++;
	envp = calloc(nenv + 6, sizeof(*envp));
	k = calloc(1, sizeof(*k));
	if (envp == NULL || k == NULL || uv_exepath(exe, &exelen) != 0) {
		LOG(LOG_ERROR, "election", "cannot start --on-leader: out of memory");
		x->hooks_failed++;
		free(envp);
		free(k);
		return;
	}
	snprintf(term_s, sizeof(term_s), "MERIDIAN_TERM=%llu", (unsigned long long)term);
	snprintf(node_s, sizeof(node_s), "MERIDIAN_NODE=%s", cfg->node);
	snprintf(region_s, sizeof(region_s), "MERIDIAN_REGION=%s", cfg->region);
	snprintf(parent_s, sizeof(parent_s), "MERIDIAN_AGENT_PID=%d", (int)getpid());
	snprintf(grace_s, sizeof(grace_s), "MERIDIAN_HOOK_GRACE_MS=%u", hook_grace_ms(x));
	nenv = 0;
	for (char **e = environ; *e; e++)
		if (!env_dropped(*e))
			envp[nenv++] = *e;
	envp[nenv++] = term_s;
	envp[nenv++] = node_s;
	envp[nenv++] = region_s;
	envp[nenv++] = parent_s;
	envp[nenv++] = grace_s;

	char *args[] = { exe, (char *)"__on-leader", (char *)cfg->on_leader, NULL };
	/* Its output goes where the agent's goes: the same journal. */
	uv_stdio_container_t stdio[3] = {
		{ .flags = UV_IGNORE },
		{ .flags = UV_INHERIT_FD, .data.fd = 1 },
		{ .flags = UV_INHERIT_FD, .data.fd = 2 },
	};
	uv_process_options_t o = {
		.stdio_count = 3,
		.stdio = stdio,
		.exit_cb = hook_exited,
		.file = exe,
		.args = args,
		.env = envp,
		.flags = UV_PROCESS_DETACHED,
	};

	k->term = term;
	k->owner = x;
	k->proc.data = k->kill_timer.data = k;
	rc = uv_spawn(x->env.loop, &k->proc, &o);
	free(envp);
	if (rc != 0) {
		LOG(LOG_ERROR, "election", "cannot start --on-leader: %s", uv_strerror(rc));
		x->hooks_failed++;
		k->handles = 1;
		uv_close((uv_handle_t *)&k->proc, hook_handle_closed);
		return;
	}
	uv_timer_init(x->env.loop, &k->kill_timer);
	k->handles = 2;
	x->hook = k;
	x->hooks_started++;
	LOG(LOG_INFO, "election", "--on-leader started (pid %d, term %llu)", k->proc.pid,
	    (unsigned long long)term);
}

/* ------------------------------------------------------------------ */
/* Machine callbacks                                                   */
/* ------------------------------------------------------------------ */

static void lease_answer(void *ctx, const struct election_lease_result *r);
static void elect_settle(struct elect *x);

static void fail_timer_fired(uv_timer_t *t)
{
	struct elect *x = t->data;

	lease_answer(x, &x->failed);
}

static void op_lease_request(void *ctx, enum election_lease_op op, uint64_t term)
{
	struct elect *x = ctx;
	int rc = x->lease ? lease_pg_request(x->lease, op, term) : -ENOTCONN;

	if (rc == 0)
		return;
	/* The machine waits for an answer: give it a failure, later (never
	 * from inside its own call), so it backs off and tries again. */
	x->failed = (struct election_lease_result){ .op = op, .status = rc };
	snprintf(x->failed.error, sizeof(x->failed.error), "cannot start the statement: %s",
		 strerror(-rc));
	uv_timer_start(&x->fail_timer, fail_timer_fired, 0, 0);
}

static void op_announce(void *ctx, enum election_ann_state state, uint64_t term, uint64_t since)
{
	struct elect *x = ctx;
	struct election_announce a = {
		.state = (uint8_t)state,
		.backend = (uint8_t)x->env.cfg->election,
		.term = term,
	};
	uint8_t buf[ELECTION_ANNOUNCE_LEN];
	uint64_t now = now_ms(x);
	int rc;

	if (state == ELECTION_ANN_LEADING)
		x->since_wall = agent_loop_wall_ms(x->env.loop, since);
	a.since_wall_ms = x->since_wall;
	rc = election_announce_encode(&a, buf);
	if (rc > 0)
		rc = gossip_set_user_fanout(x->env.g, ELECTION_USER_KEY, buf, sizeof(buf), now);
	if (rc < 0) {
		LOG(LOG_ERROR, "election", "cannot gossip our %s announcement (term %llu): %s",
		    state == ELECTION_ANN_LEADING ? "leading" : "released",
		    (unsigned long long)term, strerror(-rc));
		return;
	}
	if (x->env.kick)
		x->env.kick(x->env.ctx);
}

static void op_on_role(void *ctx, enum election_role from, enum election_role to,
		       uint64_t term, enum election_why why)
{
	struct elect *x = ctx;

	if (to == ELECTION_LEADER) {
		LOG(LOG_NOTICE, "election", "this node is now the leader (term %llu, %s)",
		    (unsigned long long)term, election_backend_name(x->env.cfg->election));
		hook_start(x, term);
		if (x->env.on_leading)
			x->env.on_leading(x->env.ctx, true, term);
	} else if (from == ELECTION_LEADER) {
		if (x->env.on_leading)
			x->env.on_leading(x->env.ctx, false, term);
		LOG(why == ELECTION_WHY_LEAVING ? LOG_NOTICE : LOG_WARNING, "election",
		    "this node stepped down as leader (term %llu): %s", (unsigned long long)term,
		    election_why_name(why));
		hook_stop(x);
	} else {
		LOG(LOG_INFO, "election", "role %s -> %s (term %llu)", election_role_name(from),
		    election_role_name(to), (unsigned long long)term);
	}
	x->leader_dirty = true;
}

static void op_on_leader(void *ctx)
{
	struct elect *x = ctx;

	x->leader_dirty = true;
}

/* ------------------------------------------------------------------ */
/* The view                                                            */
/* ------------------------------------------------------------------ */

static uint32_t tag_priority(const struct gossip_tags *t)
{
	const char *v = gossip_tags_get(t, CONFIG_PRIORITY_TAG);
	char *end;
	unsigned long p;

	if (v == NULL)
		return 0;
	p = strtoul(v, &end, 10);
	/* A bad value ranks last rather than first. */
	return (*v && *end == '\0' && p <= CONFIG_PRIORITY_MAX) ? (uint32_t)p : UINT32_MAX;
}

static bool peers_reserve(struct elect *x, size_t n)
{
	struct election_peer *p;
	char (*names)[GOSSIP_NAME_MAX + 1];

	if (n <= x->peers_cap)
		return true;
	p = realloc(x->peers, n * sizeof(*p));
	if (p)
		x->peers = p;
	names = p ? realloc(x->names, n * sizeof(*names)) : NULL;
	if (names == NULL)
		return false;
	x->names = names;
	x->peers_cap = n;
	return true;
}

static void view_rebuild(struct elect *x)
{
	const struct gossip *g = x->env.g;
	const struct gossip_member *self = gossip_self(g);
	size_t count = gossip_member_count(g), n = 0;
	int rc;

	x->view_pending = false;
	if (count > PEERS_MAX)
		count = PEERS_MAX;
	if (!peers_reserve(x, count)) {
		LOG_RATELIMITED(LOG_WARNING, "election", "cannot rebuild the election view: "
				"out of memory; keeping the previous one");
		return;
	}
	for (size_t i = 0; i < gossip_member_count(g) && n < count; i++) {
		const struct gossip_member *m = gossip_member_at(g, i);
		const struct gossip_tags *t = gossip_member_tags(m);
		const char *region = gossip_tags_get(t, REGION_TAG_REGION);
		const char *leaving = gossip_tags_get(t, REGION_TAG_LEAVING);
		enum gossip_status st = gossip_member_status(m);
		struct election_peer *p = &x->peers[n];
		const uint8_t *ud;
		size_t len;

		if (m == self)
			continue;
		snprintf(x->names[n], sizeof(x->names[n]), "%s", gossip_member_name(m));
		*p = (struct election_peer){
			.name = x->names[n],
			.live = st == GOSSIP_ALIVE || st == GOSSIP_SUSPECT,
			.leaving = leaving && strcmp(leaving, "1") == 0,
			.eligible = region && strcmp(region, x->env.cfg->primary) == 0,
			.priority = tag_priority(t),
		};
		ud = gossip_member_user(m, ELECTION_USER_KEY, &len, NULL);
		if (ud) {
			if (election_announce_decode(ud, len, &p->ann) == 0) {
				p->announced = true;
			} else {
				x->announce_bad++;
				LOG_RATELIMITED(LOG_WARNING, "election", "undecodable leader "
						"announcement (%zu bytes) from %s: ignored", len,
						gossip_member_name(m));
			}
		}
		n++;
	}
	rc = election_set_peers(x->e, x->peers, n, now_ms(x));
	if (rc < 0)
		LOG_RATELIMITED(LOG_WARNING, "election", "election view not taken: %s",
				strerror(-rc));
}

/* ------------------------------------------------------------------ */
/* Driving the machine                                                 */
/* ------------------------------------------------------------------ */

static json_t *leader_json(struct elect *x, bool event);
static void timer_fired(uv_timer_t *t);

/* After every input: publish a changed leader, re-arm the timer. */
static void elect_settle(struct elect *x)
{
	struct election_leader l;
	uint64_t next, now = now_ms(x);
	bool known;

	if (x->closing)
		return;
	if (x->leader_dirty) {
		x->leader_dirty = false;
		known = election_leader(x->e, now, &l);
		if (!known)
			l.name[0] = '\0';
		/* A known leader under an older term than one already said is
		 * stale news (a deposed node still gossiping): not published. */
		if (known && l.term < x->said_term)
			known = false, l.name[0] = '\0';
		if (strcmp(l.name, x->said_name) != 0 || (known && l.term != x->said_term)) {
			if (known)
				LOG(LOG_NOTICE, "election", "leader: %s (term %llu, via %s)", l.name,
				    (unsigned long long)l.term,
				    l.source == ELECTION_FROM_SELF ? "self" :
				    l.source == ELECTION_FROM_LEASE ? "lease" : "gossip");
			else
				LOG(LOG_NOTICE, "election", "no leader known (last: %s, term %llu)",
				    x->said_name[0] ? x->said_name : "none",
				    (unsigned long long)x->said_term);
			snprintf(x->said_name, sizeof(x->said_name), "%s", l.name);
			x->said_term = known ? l.term : x->said_term;
			if (x->env.events)
				events_publish(x->env.events, "leader", leader_json(x, true));
		}
	}
	next = election_next_deadline(x->e);
	if (next == UINT64_MAX)
		uv_timer_stop(&x->timer);
	else
		uv_timer_start(&x->timer, timer_fired, next > now ? next - now : 0, 0);
}

static void timer_fired(uv_timer_t *t)
{
	struct elect *x = t->data;

	election_tick(x->e, now_ms(x));
	elect_settle(x);
}

static void view_timer_fired(uv_timer_t *t)
{
	struct elect *x = t->data;

	view_rebuild(x);
	if (x->join_pending) {
		x->join_pending = false;
		election_start(x->e, now_ms(x));
	}
	elect_settle(x);
}

static void lease_answer(void *ctx, const struct election_lease_result *r)
{
	struct elect *x = ctx;

	if (x->closing)
		return;
	if (r->status < 0)
		LOG_RATELIMITED(LOG_WARNING, "election", "lease %s failed: %s",
				election_lease_op_name(r->op), r->error);
	election_lease_done(x->e, r, now_ms(x));
	elect_settle(x);
}

void elect_members_changed(struct elect *x)
{
	if (x->view_pending || x->closing)
		return;
	x->view_pending = true;
	uv_timer_start(&x->view_timer, view_timer_fired, 0, 0);
}

/* Called from the core's join callback, where the machine (which may
 * publish user data at once) must not run: the view timer starts it. */
void elect_joined(struct elect *x)
{
	if (x->closing)
		return;
	x->join_pending = true;
	x->view_pending = true;
	uv_timer_start(&x->view_timer, view_timer_fired, 0, 0);
}

static void leave_timer_fired(uv_timer_t *t)
{
	struct elect *x = t->data;

	if (!x->leave_handed)
		elect_hand_off(x);   /* the hook did not stop within the grace */
	else
		x->leave_waited = true;
}

/* Step down, release, never lead again; the release gets at most
 * ELECT_RELEASE_WAIT_MS. */
static void elect_hand_off(struct elect *x)
{
	x->leave_handed = true;
	election_leave(x->e, now_ms(x));
	elect_settle(x);
	uv_timer_start(&x->leave_timer, leave_timer_fired, ELECT_RELEASE_WAIT_MS, 0);
}

/* A leader first stops its duty (the hook, within its grace), so that the
 * successor's never overlaps it, then hands off. */
void elect_leave(struct elect *x)
{
	if (x->leaving || x->closing)
		return;
	x->leaving = true;
	uv_update_time(x->env.loop);
	if (x->hook && election_is_leader(x->e, now_ms(x))) {
		hook_stop(x);
		uv_timer_start(&x->leave_timer, leave_timer_fired, hook_grace_ms(x) + 100, 0);
		return;
	}
	elect_hand_off(x);
}

bool elect_leave_done(const struct elect *x)
{
	return x->leave_waited || election_leave_done(x->e);
}

/* ------------------------------------------------------------------ */
/* Life                                                                */
/* ------------------------------------------------------------------ */

struct elect *elect_new(const struct elect_env *env)
{
	const struct config *cfg = env->cfg;
	struct election_config ec;
	struct election_ops ops = {
		.lease_request = op_lease_request,
		.announce = op_announce,
		.on_role = op_on_role,
		.on_leader = op_on_leader,
	};
	struct elect *x = calloc(1, sizeof(*x));
	uint64_t now = uv_now(env->loop);

	if (x == NULL)
		return NULL;
	x->env = *env;
	ops.ctx = x;
	election_config_default(&ec);
	ec.node = cfg->node;
	ec.eligible = strcmp(cfg->region, cfg->primary) == 0;
	ec.priority = cfg->priority;
	ec.backend = cfg->election == CONFIG_ELECTION_POSTGRES ? ELECTION_BACKEND_POSTGRES :
		     ELECTION_BACKEND_GOSSIP;
	ec.lease_ms = (uint32_t)cfg->lease_ms;
	ec.renew_ms = (uint32_t)cfg->lease_renew_ms;
	ec.guard_ms = (uint32_t)cfg->lease_guard_ms;
	ec.seed = env->node_id;
	if (ec.backend == ELECTION_BACKEND_POSTGRES && ec.eligible) {
		struct lease_pg_config lc = {
			.conninfo = cfg->primary_database_url,
			.lease_name = cfg->lease_name,
			.node = cfg->node,
			.node_id = env->node_id,
			.lease_ms = ec.lease_ms,
			/* An answer later than a renewal interval is as good as none. */
			.timeout_ms = ec.renew_ms,
		};

		x->lease = lease_pg_new(env->loop, &lc, lease_answer, x);
		if (x->lease == NULL) {
			LOG(LOG_ERROR, "election", "cannot set up the postgres lease");
			free(x);
			return NULL;
		}
	}
	x->e = election_new(&ec, &ops, now);
	if (x->e == NULL) {
		LOG(LOG_ERROR, "election", "cannot create the election (bad lease timing?)");
		lease_pg_close(x->lease);
		free(x);
		return NULL;
	}
	uv_timer_init(env->loop, &x->timer);
	uv_timer_init(env->loop, &x->view_timer);
	uv_timer_init(env->loop, &x->leave_timer);
	uv_timer_init(env->loop, &x->fail_timer);
	x->timer.data = x->view_timer.data = x->leave_timer.data = x->fail_timer.data = x;
	x->handles = 4;
	LOG(LOG_INFO, "election", "election backend %s; %s", election_backend_name(ec.backend),
	    ec.eligible ? "this node may lead (its region is the primary region)" :
	    "this node never leads (its region is not the primary region)");
	return x;
}

static void elect_handle_closed(uv_handle_t *h)
{
	struct elect *x = h->data;

	if (--x->handles == 0) {
		election_delete(x->e);
		free(x->peers);
		free(x->names);
		free(x);
	}
}

void elect_close(struct elect *x)
{
	if (x == NULL || x->closing)
		return;
	x->closing = true;
	hook_detach(x);
	lease_pg_close(x->lease);
	x->lease = NULL;
	uv_close((uv_handle_t *)&x->timer, elect_handle_closed);
	uv_close((uv_handle_t *)&x->view_timer, elect_handle_closed);
	uv_close((uv_handle_t *)&x->leave_timer, elect_handle_closed);
	uv_close((uv_handle_t *)&x->fail_timer, elect_handle_closed);
}

/* ------------------------------------------------------------------ */
/* What the API shows                                                  */
/* ------------------------------------------------------------------ */

static const char *source_name(enum election_source s)
{
	return s == ELECTION_FROM_SELF ? "self" : s == ELECTION_FROM_LEASE ? "lease" : "gossip";
}

/* The backend the leader @l runs (from its announcement; ours when it is
 * us or unknown): a node outside the primary region has no database and
 * follows whatever the primary region runs. */
static enum election_backend leader_backend(struct elect *x, const struct election_leader *l)
{
	enum election_backend own = x->env.cfg->election == CONFIG_ELECTION_POSTGRES ?
				    ELECTION_BACKEND_POSTGRES : ELECTION_BACKEND_GOSSIP;
	const struct gossip_member *m = l && !l->self ? gossip_member_find(x->env.g, l->name) :
					NULL;
	struct election_announce a;
	const uint8_t *ud;
	size_t len;

	ud = m ? gossip_member_user(m, ELECTION_USER_KEY, &len, NULL) : NULL;
	if (ud && election_announce_decode(ud, len, &a) == 0)
		return (enum election_backend)a.backend;
	return own;
}

/* The leader as JSON; @event: the smaller form of a `leader` event. */
static json_t *leader_json(struct elect *x, bool event)
{
	struct election_leader l;
	uint64_t now;
	bool known, leading;
	char since[40] = "";
	const char *region = NULL;
	json_t *o;

	uv_update_time(x->env.loop);
	now = now_ms(x);
	known = election_leader(x->e, now, &l);
	leading = election_is_leader(x->e, now);
	if (known) {
		uint64_t wall = l.self ? x->since_wall : l.since_wall_ms;

		if (wall == 0)
			wall = agent_loop_wall_ms(x->env.loop, l.since);
		clock_format_rfc3339(wall, since, sizeof(since));
		if (l.self) {
			region = x->env.cfg->region;
		} else {
			const struct gossip_member *m = gossip_member_find(x->env.g, l.name);

			region = m ? gossip_tags_get(gossip_member_tags(m), REGION_TAG_REGION) : NULL;
		}
	}
	o = json_object();
	if (o == NULL)
		return NULL;
	json_object_set_new(o, "node", known ? json_string(l.name) : json_null());
	json_object_set_new(o, "region", region ? json_string(region) : json_null());
	json_object_set_new(o, "term", known ? json_integer((json_int_t)l.term) : json_null());
	json_object_set_new(o, "since", known ? json_string(since) : json_null());
	json_object_set_new(o, "backend", json_string(election_backend_name(
		leader_backend(x, known ? &l : NULL))));
	json_object_set_new(o, "self", json_boolean(leading));
	if (event) {
		json_object_set_new(o, "type", json_string("leader"));
		return o;
	}
	json_object_set_new(o, "source", known ? json_string(source_name(l.source)) :
			    json_null());
	json_object_set_new(o, "role", json_string(election_role_name(election_role(x->e))));
	json_object_set_new(o, "my_term", json_integer((json_int_t)(leading ?
						election_term(x->e) : 0)));
	json_object_set_new(o, "max_term", json_integer((json_int_t)election_max_term(x->e)));
	json_object_set_new(o, "eligible", json_boolean(strcmp(x->env.cfg->region,
							       x->env.cfg->primary) == 0 &&
						      !x->leaving));
	if (leading && x->env.cfg->election == CONFIG_ELECTION_POSTGRES) {
		uint64_t d = election_deadline(x->e);

		json_object_set_new(o, "lease_left_ms", json_integer((json_int_t)(d > now ?
									d - now : 0)));
	}
	return o;
}

json_t *elect_leader_json(struct elect *x)
{
	return leader_json(x, false);
}

json_t *elect_leader_event(struct elect *x)
{
	return leader_json(x, true);
}

const char *elect_leader_name(struct elect *x)
{
	static char name[ELECTION_NAME_MAX + 1];
	struct election_leader l;

	uv_update_time(x->env.loop);
	if (!election_leader(x->e, now_ms(x), &l))
		return NULL;
	memcpy(name, l.name, sizeof(name));
	return name;
}

void elect_stats_get(struct elect *x, struct elect_stats *out)
{
	struct election_stats s;
	struct election_leader l;
	uint64_t now;

	uv_update_time(x->env.loop);
	now = now_ms(x);
	election_stats_get(x->e, &s);
	*out = (struct elect_stats){
		.is_leader = election_is_leader(x->e, now),
		.term = election_leader(x->e, now, &l) ? l.term : 0,
		.max_term = election_max_term(x->e),
		.elections_won = s.elections_won,
		.step_downs = s.step_downs,
		.leader_changes = s.leader_changes,
		.lease_requests = s.lease_requests,
		.lease_failures = s.lease_failures,
		.late_grants_released = s.late_grants_released,
		.announce_bad = x->announce_bad,
		.hooks_started = x->hooks_started,
		.hooks_failed = x->hooks_failed,
	};
	if (x->lease) {
		struct lease_pg_stats ls;

		lease_pg_stats_get(x->lease, &ls);
		out->db_connected = ls.connected;
	}
}

/* ------------------------------------------------------------------ */
/* The child side of --on-leader                                       */
/* ------------------------------------------------------------------ */

static volatile sig_atomic_t shim_stopping;
static unsigned long shim_grace_ms;

static void shim_on_signal(int sig)
{
	if (sig == SIGALRM) {
		kill(0, SIGKILL);        /* the grace is over: the whole group */
		return;
	}
	if (shim_stopping)
		return;
	shim_stopping = 1;
	kill(0, SIGTERM);                /* the command and all it started */
	alarm((unsigned)((shim_grace_ms + 999) / 1000));
}

int cmd_on_leader_exec(int argc, char **argv)
{
	const char *parent = getenv("MERIDIAN_AGENT_PID");
	const char *grace = getenv("MERIDIAN_HOOK_GRACE_MS");
	struct sigaction sa;
	pid_t child;
	int status;

	if (argc != 2 || parent == NULL) {
		fprintf(stderr, "meridian: __on-leader is internal to the agent\n");
		return 2;
	}
	shim_grace_ms = grace ? strtoul(grace, NULL, 10) : 1000;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = shim_on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGALRM, &sa, NULL);
	/* Die with the agent, even a kill -9'd one; if it is already gone
	 * (it died between fork and here) there is nothing to lead for. */
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != (pid_t)atol(parent))
		return 1;
	unsetenv("MERIDIAN_AGENT_PID");
	unsetenv("MERIDIAN_HOOK_GRACE_MS");
	child = fork();
	if (child < 0) {
		fprintf(stderr, "meridian: cannot fork for --on-leader: %s\n", strerror(errno));
		return 1;
	}
	if (child == 0) {
		signal(SIGTERM, SIG_DFL);
		signal(SIGALRM, SIG_DFL);
		execl("/bin/sh", "sh", "-c", argv[1], (char *)NULL);
		fprintf(stderr, "meridian: cannot run /bin/sh for --on-leader: %s\n",
			strerror(errno));
		_exit(127);
	}
	/* Stay the command's parent: the kernel tells us, not it, when the
	 * agent dies, and we pass it on to the whole process group. */
	while (waitpid(child, &status, 0) < 0)
		if (errno != EINTR)
			return 1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
