/*
 * storage/pgresolve.c - host names resolved with uv_getaddrinfo() before
 * libpq connects (see pgresolve.h for the contract).
 *
 * One request resolves the names of one conninfo in turn (one lookup in
 * the thread pool at a time: a conninfo has a few hosts at most).  The
 * request always ends in on_resolved(), cancelled or not, which frees it:
 * a cancelled request only stops calling its owner.
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
	size_t naddrs;
	char addrs[PGRESOLVE_ADDRS_MAX][INET6_ADDRSTRLEN];
};

struct pgresolve {
	uv_getaddrinfo_t req;
	uv_loop_t *loop;
	const struct pgsock_params *p;
	pgresolve_cb cb;
	void *data;
	bool cancelled;
	struct host hosts[PGRESOLVE_HOSTS_MAX];
	size_t nhosts, at;           /* the host being resolved */
};

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

static void fail(struct pgresolve *r, int status, const char *what)
{
	char text[PGRESOLVE_ERROR_MAX];

	snprintf(text, sizeof(text), "could not resolve host \"%s\": %s",
		 r->hosts[r->at].name, what ? what : uv_strerror(status));
	r->cb(r->data, status, NULL, text);
}

/* Appends @s and a comma (dropped at the end by the caller) to @buf. */
static void add(char *buf, size_t size, size_t *len, const char *s)
{
	int n = snprintf(buf + *len, size - *len, "%s,", s);

	if (n > 0)
		*len += (size_t)n;
}

/* Every name resolved: the parameters with the lists, to the owner. */
static void finish(struct pgresolve *r)
{
	size_t cap = 0, hl = 0, al = 0, pl = 0, n = 0;
	bool per_host_ports = r->hosts[0].port != NULL;
	char *hosts, *addrs, *ports;
	struct pgsock_params out;
	int rc = UV_ENOMEM;

	for (size_t i = 0; i < r->nhosts; i++) {
		const struct host *h = &r->hosts[i];

		cap += h->naddrs * (strlen(h->name) + (h->port ? strlen(h->port) : 0) +
				    INET6_ADDRSTRLEN + 3);
	}
	hosts = malloc(cap + 1);
	addrs = malloc(cap + 1);
	ports = malloc(cap + 1);
	if (hosts && addrs && ports) {
		for (size_t i = 0; i < r->nhosts; i++) {
			const struct host *h = &r->hosts[i];

			for (size_t j = 0; j < h->naddrs; j++, n++) {
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
		r->at = 0;
		fail(r, rc, "out of memory");
		return;
	}
	r->cb(r->data, 0, &out, NULL);
	pgsock_params_free(&out);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res);

/* Starts the lookup of the next name from r->at on; 1 when there is none
 * left, 0 when started, or a UV error. */
static int next(struct pgresolve *r)
{
	static const struct addrinfo hints = { .ai_family = AF_UNSPEC,
					       .ai_socktype = SOCK_STREAM };

	while (r->at < r->nhosts && r->hosts[r->at].numeric)
		r->at++;
	if (r->at == r->nhosts)
		return 1;
	return uv_getaddrinfo(r->loop, &r->req, on_resolved, r->hosts[r->at].name, NULL, &hints);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct pgresolve *r = req->data;
	struct host *h = &r->hosts[r->at];
	int rc;

	if (r->cancelled) {
		uv_freeaddrinfo(res);
		request_free(r);
		return;
	}
	for (struct addrinfo *ai = status == 0 ? res : NULL; ai && h->naddrs < PGRESOLVE_ADDRS_MAX;
	     ai = ai->ai_next) {
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
	uv_freeaddrinfo(res);
	if (status < 0 || h->naddrs == 0) {
		fail(r, status < 0 ? status : UV_EAI_NODATA, status < 0 ? NULL : "no address");
		request_free(r);
		return;
	}
	r->at++;
	rc = next(r);
	if (rc == 1)
		finish(r);
	else if (rc < 0)
		fail(r, rc, NULL);
	if (rc != 0)
		request_free(r);
}

int pgresolve_start(uv_loop_t *loop, const struct pgsock_params *p, pgresolve_cb cb,
		    void *data, struct pgresolve **out)
{
	const char *host = param(p, "host"), *hostaddr = param(p, "hostaddr");
	const char *port = param(p, "port");
	size_t nh, np;
	bool names = false;
	struct pgresolve *r;
	int rc;

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
	*r = (struct pgresolve){ .loop = loop, .p = p, .cb = cb, .data = data };
	r->req.data = r;
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
	if (!names) {
		request_free(r);
		return 0;
	}
	rc = next(r);
	if (rc < 0) {
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
	r->cancelled = true;
	uv_cancel((uv_req_t *)&r->req);
}
