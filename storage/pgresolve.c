/*
 * storage/pgresolve.c - host names resolved with uv_getaddrinfo() before
 * libpq connects (see pgresolve.h for the contract).
 *
 * Lookups are shared: one uv_getaddrinfo() per name in flight, however
 * many requests (a pool's connections, the replica poller) wait for it,
 * and a request that is cancelled only stops waiting: its lookup runs on
 * for the others, or for the next request of that name.  So a name whose
 * DNS server hangs holds one of libuv's few thread-pool threads, never
 * one per reconnection attempt.  A request's names are looked up at the
 * same time; the request ends when the last of them has answered.
 *
 * Delivery is in two steps so that an owner's callback may cancel or
 * start any request: first every waiter of a finished lookup takes its
 * answer, then the requests it completed are called back one by one, a
 * request cancelled meanwhile being freed without a call.
 */
#include "storage/pgresolve.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct host {
	char *name;
	char *port;                   /* this host's port, when the list has one per host */
	bool numeric;
	int status;                   /* of its lookup: 0, or a UV error */
	size_t naddrs;
	char addrs[PGRESOLVE_ADDRS_MAX][INET6_ADDRSTRLEN];
};

struct waiter;

struct pgresolve {
	const struct pgsock_params *p;
	pgresolve_cb cb;
	void *data;
	struct waiter *waiters;       /* on lookups still running */
	size_t pending;               /* names not answered yet */
	bool ready, cancelled;        /* in a delivery, called back next / not to be */
	struct pgresolve *ready_next;
	struct host hosts[PGRESOLVE_HOSTS_MAX];
	size_t nhosts;
};

/* One request's interest in one lookup. */
struct waiter {
	struct pgresolve *r;
	size_t host;
	struct lookup *l;
	struct waiter *next_in_lookup, *next_in_request;
};

struct lookup {
	uv_getaddrinfo_t req;
	uv_loop_t *loop;
	char *name;
	struct waiter *waiters;
	struct lookup *next;
};

static struct lookup *running;   /* lookups in flight, every loop's */

static const char *param(const struct pgsock_params *p, const char *k)
{
	for (size_t i = 0; i < p->n; i++)
		if (strcmp(p->kw[i], k) == 0)
			return p->val[i];
	return NULL;
}

static size_t entries(const char *list)
{
	size_t n = 1;

	for (; *list; list++)
		n += *list == ',';
	return n;
}

/* The @i-th comma-separated entry of @list, copied; NULL: no memory. */
static char *entry(const char *list, size_t i)
{
	const char *end;

	while (i--)
		list = strchr(list, ',') + 1;
	end = strchr(list, ',');
	return strndup(list, end ? (size_t)(end - list) : strlen(list));
}

static bool numeric(const char *h)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1;
}

static void request_free(struct pgresolve *r)
{
	for (size_t i = 0; i < r->nhosts; i++) {
		free(r->hosts[i].name);
		free(r->hosts[i].port);
	}
	free(r);
}

/* ------------------------------------------------------------------ */
/* The answer                                                          */
/* ------------------------------------------------------------------ */

/* Appends @s and a comma (dropped at the end by the caller) to @buf. */
static void add(char *buf, size_t size, size_t *len, const char *s)
{
	int n = snprintf(buf + *len, size - *len, "%s,", s);

	if (n > 0)
		*len += (size_t)n;
}

static void fail(struct pgresolve *r, int status, const char *name, const char *why)
{
	char text[PGRESOLVE_ERROR_MAX];

	snprintf(text, sizeof(text), "could not resolve host \"%s\": %s", name,
		 why ? why : uv_strerror(status));
	r->cb(r->data, status, NULL, text);
}

/* Every name answered: the parameters with the lists (the hosts that
 * resolved, as libpq would skip the others), or the first failure when
 * none did. */
static void finish(struct pgresolve *r)
{
	size_t cap = 0, hl = 0, al = 0, pl = 0;
	bool per_host_ports = r->hosts[0].port != NULL;
	const struct host *failed = NULL;
	char *hosts, *addrs, *ports;
	struct pgsock_params out;
	int rc = UV_ENOMEM;

	for (size_t i = 0; i < r->nhosts; i++) {
		const struct host *h = &r->hosts[i];

		if (h->naddrs == 0 && !failed)
			failed = h;
		cap += h->naddrs * (strlen(h->name) + (h->port ? strlen(h->port) : 0) +
				    INET6_ADDRSTRLEN + 3);
	}
	if (cap == 0) {
		fail(r, failed->status ? failed->status : UV_EAI_NODATA, failed->name,
		     failed->status ? NULL : "no address");
		return;
	}
	hosts = malloc(cap + 1);
	addrs = malloc(cap + 1);
	ports = malloc(cap + 1);
	if (hosts && addrs && ports) {
		for (size_t i = 0; i < r->nhosts; i++) {
			const struct host *h = &r->hosts[i];

			for (size_t j = 0; j < h->naddrs; j++) {
				add(hosts, cap + 1, &hl, h->name);
				add(addrs, cap + 1, &al, h->addrs[j]);
				if (per_host_ports)
					add(ports, cap + 1, &pl, h->port);
			}
		}
		hosts[hl - 1] = addrs[al - 1] = '\0';
		if (per_host_ports)
			ports[pl - 1] = '\0';
		const char *keys[] = { "host", "hostaddr", "port" };
		const char *vals[] = { hosts, addrs, ports };

		rc = pgsock_params_with(&out, r->p, keys, vals, per_host_ports ? 3 : 2) == 0 ?
			     0 : UV_ENOMEM;
	}
	free(hosts);
	free(addrs);
	free(ports);
	if (rc) {
		fail(r, rc, r->hosts[0].name, "out of memory");
		return;
	}
	r->cb(r->data, 0, &out, NULL);
	pgsock_params_free(&out);
}

/* ------------------------------------------------------------------ */
/* Shared lookups                                                      */
/* ------------------------------------------------------------------ */

static void take_addrs(struct host *h, int status, const struct addrinfo *res)
{
	h->status = status;
	for (const struct addrinfo *ai = status == 0 ? res : NULL;
	     ai && h->naddrs < PGRESOLVE_ADDRS_MAX; ai = ai->ai_next) {
		char a[INET6_ADDRSTRLEN] = "";
		bool seen = false;

		if (ai->ai_family == AF_INET)
			uv_ip4_name((const struct sockaddr_in *)ai->ai_addr, a, sizeof(a));
		else if (ai->ai_family == AF_INET6)
			uv_ip6_name((const struct sockaddr_in6 *)ai->ai_addr, a, sizeof(a));
		for (size_t j = 0; j < h->naddrs && !seen; j++)
			seen = strcmp(h->addrs[j], a) == 0;
		if (*a && !seen)
			snprintf(h->addrs[h->naddrs++], sizeof(h->addrs[0]), "%s", a);
	}
}

static void lookup_unlink(struct lookup *l)
{
	for (struct lookup **pp = &running; *pp; pp = &(*pp)->next) {
		if (*pp == l) {
			*pp = l->next;
			return;
		}
	}
}

/* Removes @w from its request's list. */
static void waiter_unlink_request(struct waiter *w)
{
	for (struct waiter **pp = &w->r->waiters; *pp; pp = &(*pp)->next_in_request) {
		if (*pp == w) {
			*pp = w->next_in_request;
			return;
		}
	}
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct lookup *l = req->data;
	struct waiter *w = l->waiters, *next;
	struct pgresolve *ready = NULL, **tail = &ready;

	/* Step 1: every waiter takes its answer (no callback yet). */
	lookup_unlink(l);
	for (; w; w = next) {
		struct pgresolve *r = w->r;

		next = w->next_in_lookup;
		take_addrs(&r->hosts[w->host], status, res);
		waiter_unlink_request(w);
		free(w);
		if (--r->pending == 0) {
			r->ready = true;
			*tail = r;
			tail = &r->ready_next;
		}
	}
	uv_freeaddrinfo(res);
	free(l->name);
	free(l);
	/* Step 2: the owners, each of whom may cancel another ready one. */
	while (ready) {
		struct pgresolve *r = ready;

		ready = r->ready_next;
		if (!r->cancelled)
			finish(r);
		request_free(r);
	}
}

/* Waits for @name's lookup on @loop, started if none is running. */
static int wait_for(uv_loop_t *loop, struct pgresolve *r, size_t host)
{
	static const struct addrinfo hints = { .ai_family = AF_UNSPEC,
					       .ai_socktype = SOCK_STREAM };
	const char *name = r->hosts[host].name;
	struct waiter *w = calloc(1, sizeof(*w));
	struct lookup *l;
	int rc;

	if (!w)
		return UV_ENOMEM;
	for (l = running; l; l = l->next)
		if (l->loop == loop && strcmp(l->name, name) == 0)
			break;
	if (!l) {
		l = calloc(1, sizeof(*l));
		if (l)
			l->name = strdup(name);
		if (!l || !l->name) {
			free(l);
			free(w);
			return UV_ENOMEM;
		}
		l->loop = loop;
		l->req.data = l;
		rc = uv_getaddrinfo(loop, &l->req, on_resolved, name, NULL, &hints);
		if (rc < 0) {
			free(l->name);
			free(l);
			free(w);
			return rc;
		}
		l->next = running;
		running = l;
	}
	*w = (struct waiter){ .r = r, .host = host, .l = l, .next_in_lookup = l->waiters,
			      .next_in_request = r->waiters };
	l->waiters = w;
	r->waiters = w;
	r->pending++;
	return 0;
}

/* Takes @r off every lookup it waits for (they run on for others). */
static void stop_waiting(struct pgresolve *r)
{
	while (r->waiters) {
		struct waiter *w = r->waiters;

		for (struct waiter **pp = &w->l->waiters; *pp; pp = &(*pp)->next_in_lookup) {
			if (*pp == w) {
				*pp = w->next_in_lookup;
				break;
			}
		}
		r->waiters = w->next_in_request;
		free(w);
	}
	r->pending = 0;
}

/* ------------------------------------------------------------------ */
/* Requests                                                            */
/* ------------------------------------------------------------------ */

int pgresolve_start(uv_loop_t *loop, const struct pgsock_params *p, pgresolve_cb cb,
		    void *data, struct pgresolve **out)
{
	const char *host = param(p, "host"), *hostaddr = param(p, "hostaddr");
	const char *port = param(p, "port");
	size_t nh, np;
	bool names = false;
	struct pgresolve *r;
	int rc = 0;

	*out = NULL;
	if (!host || !*host || (hostaddr && *hostaddr))
		return 0;
	nh = entries(host);
	np = port && *port ? entries(port) : 0;
	if (nh > PGRESOLVE_HOSTS_MAX || (np > 1 && np != nh))
		return 0;
	r = calloc(1, sizeof(*r));
	if (!r)
		return UV_ENOMEM;
	*r = (struct pgresolve){ .p = p, .cb = cb, .data = data };
	for (size_t i = 0; i < nh; i++) {
		struct host *h = &r->hosts[r->nhosts++];

		h->name = entry(host, i);
		h->port = np > 1 ? entry(port, i) : NULL;
		if (!h->name || (np > 1 && !h->port)) {
			request_free(r);
			return UV_ENOMEM;
		}
		/* A socket directory (or abstract socket): libpq's business. */
		if (!*h->name || h->name[0] == '/' || h->name[0] == '@') {
			request_free(r);
			return 0;
		}
		h->numeric = numeric(h->name);
		if (h->numeric)
			snprintf(h->addrs[h->naddrs++], sizeof(h->addrs[0]), "%s", h->name);
		names = names || !h->numeric;
	}
	for (size_t i = 0; i < r->nhosts && names && rc == 0; i++)
		if (!r->hosts[i].numeric)
			rc = wait_for(loop, r, i);
	if (!names || rc < 0) {
		stop_waiting(r);
		request_free(r);
		return rc;
	}
	*out = r;
	return 0;
}

void pgresolve_cancel(struct pgresolve *r)
{
	if (!r)
		return;
	if (r->ready) {
		r->cancelled = true;   /* in a delivery: freed there, not called */
		return;
	}
	stop_waiting(r);
	request_free(r);
}
