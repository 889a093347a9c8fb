/*
 * storage/pgresolve.h - the host names of a connection resolved off the
 * loop, before libpq sees them.
 *
 * libpq resolves a host NAME with a blocking getaddrinfo() inside
 * PQconnectStartParams(), so every connection attempt to a managed
 * database by name (Azure, Cloud SQL: always by name) would stall the
 * agent's whole loop (gossip, RPC, the lease) for as long as DNS takes,
 * seconds when a resolver is down: long enough for the cluster to suspect
 * a healthy node.  So the owner of a connection resolves first, with
 * uv_getaddrinfo() (libuv's thread pool), and connects with hostaddr set:
 * libpq then connects to the addresses and uses host only for what needs
 * the name (TLS verification and SNI, .pgpass, messages).
 *
 * Each address of a name becomes one entry of the host list, so libpq
 * still tries them in turn as it would have (host=db,db hostaddr=a1,a2;
 * a port list with one port per host is repeated to match).  The names of
 * a list are looked up at the same time; one that does not resolve is
 * left out with its port, as libpq would skip it, and the attempt fails
 * only when none resolves.  Lookups are shared: one per name in flight,
 * however many connections wait for it, and a cancelled request leaves it
 * running for the next, so a hung DNS server holds one of libuv's thread
 * pool threads per name, never one per attempt.  Nothing is resolved, and
 * @p is used as it is, when hostaddr is already set, no host is given
 * (libpq's default, or PGHOST), any host is a Unix-domain socket
 * directory, every host is numeric, the port list does not match the
 * hosts (libpq reports that itself), or there are more than
 * PGRESOLVE_HOSTS_MAX hosts.
 *
 * Not thread-safe; one loop.
 */
#ifndef MERIDIAN_STORAGE_PGRESOLVE_H
#define MERIDIAN_STORAGE_PGRESOLVE_H

#include <uv.h>

#include "storage/pgsock.h"

#define PGRESOLVE_HOSTS_MAX 16       /* hosts of one conninfo resolved here */
#define PGRESOLVE_ADDRS_MAX 8        /* addresses kept per host name */
#define PGRESOLVE_ERROR_MAX 256

/*
 * The answer.  status 0: @resolved is @p with host, hostaddr (and a
 * per-host port list) set, valid during the callback only.  Otherwise
 * @resolved is NULL and @error says which name failed and why, in one
 * line ("could not resolve host \"db.example\": unknown node or
 * service", the first name of the list); status is a UV_EAI_* or
 * UV_ENOMEM.
 */
typedef void (*pgresolve_cb)(void *data, int status, const struct pgsock_params *resolved,
			     const char *error);

struct pgresolve;

/*
 * Starts resolving the host names of @p (which must outlive the request
 * unless it is cancelled).  Returns 0 with *@out NULL when there is
 * nothing to resolve (connect with @p now), 0 with *@out set when started
 * (@cb is called exactly once, later, never from inside this call, unless
 * pgresolve_cancel() comes first; @cb may cancel or start any other
 * request), or a negative UV error.
 */
int pgresolve_start(uv_loop_t *loop, const struct pgsock_params *p, pgresolve_cb cb,
		    void *data, struct pgresolve **out);

/* No callback after this, and @r is freed (not after its callback: it is
 * gone then).  Its lookups run on for other requests, or until libuv is
 * done with them (run the loop).  NULL is a no-op. */
void pgresolve_cancel(struct pgresolve *r);

#endif
