/*
 * bench/pg_client.c - the baselines of bench/sql.sh, measured with plain
 * synchronous libpq (no agent in the path):
 *
 *   write URL SQL N WARMUP
 *       SQL (one parameter, $1 = "bench") on URL, one at a time: the cost
 *       of a write straight to the primary, against which the agent's
 *       forwarded write is compared
 *   floor PRIMARY_URL REPLICA_URL SQL N WARMUP
 *       SQL on the primary, its LSN after the commit, then
 *       pg_last_wal_replay_lsn() on the replica asked back to back until it
 *       has passed that LSN: the physical floor of read-your-writes on that
 *       replica (commit + replay + one poll), against which `sql --wait`
 *       is compared
 *
 * Prints one line: mode, n, median, p99 and mean in microseconds.  Every
 * loop is bounded (N, and 5 s per wait for the replica).
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench_stats.h"

#define N_MAX 1000000
#define REPLAY_WAIT_S 5.0

static void print_stats(const char *mode, double *v, size_t n, size_t errors)
{
	double sum = 0;

	bench_sort(v, n);
	for (size_t i = 0; i < n; i++)
		sum += v[i];
	printf("mode=%s kind=serial n=%zu median_us=%.1f p99_us=%.1f mean_us=%.1f errors=%zu\n",
	       mode, n, bench_pct(v, n, 0.5) * 1e6, bench_pct(v, n, 0.99) * 1e6,
	       n ? sum / (double)n * 1e6 : 0, errors);
}

static PGconn *connect_or_die(const char *url)
{
	PGconn *c = PQconnectdb(url);

	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "bench_pg_client: %s: %s", url, PQerrorMessage(c));
		exit(1);
	}
	return c;
}

/* Runs @sql with $1 = "bench"; returns 0 when it succeeded. */
static int exec_write(PGconn *c, const char *sql)
{
	const char *param = "bench";
	PGresult *r = PQexecParams(c, sql, 1, NULL, &param, NULL, NULL, 0);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;

	if (!ok)
		fprintf(stderr, "bench_pg_client: %s", PQerrorMessage(c));
	PQclear(r);
	return ok ? 0 : -1;
}

/* One commit then the wait for the replica to replay it. */
static int floor_once(PGconn *p, PGconn *rep, const char *sql)
{
	PGresult *r;
	char lsn[32];
	const char *param = lsn;
	double deadline;

	if (exec_write(p, sql) != 0)
		return -1;
	r = PQexec(p, "select pg_current_wal_insert_lsn()::text");
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
		PQclear(r);
		return -1;
	}
	snprintf(lsn, sizeof(lsn), "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	deadline = now_s() + REPLAY_WAIT_S;
	while (now_s() < deadline) {
		int done;

		r = PQexecParams(rep, "select pg_last_wal_replay_lsn() >= $1::pg_lsn", 1, NULL,
				 &param, NULL, NULL, 0);
		done = PQresultStatus(r) == PGRES_TUPLES_OK && PQgetvalue(r, 0, 0)[0] == 't';
		PQclear(r);
		if (done)
			return 0;
	}
	return -1;
}

int main(int argc, char **argv)
{
	int floor = argc == 7 && strcmp(argv[1], "floor") == 0;
	long n, warm;
	PGconn *p, *rep = NULL;
	const char *sql;
	double *lat;
	size_t got = 0, errors = 0;

	if (!floor && !(argc == 6 && strcmp(argv[1], "write") == 0)) {
		fputs("usage: bench_pg_client write URL SQL N WARMUP\n"
		      "       bench_pg_client floor PRIMARY_URL REPLICA_URL SQL N WARMUP\n", stderr);
		return 2;
	}
	n = atol(argv[argc - 2]);
	warm = atol(argv[argc - 1]);
	sql = argv[argc - 3];
	if (n < 1 || n > N_MAX || warm < 0 || warm > N_MAX)
		return 2;
	lat = calloc((size_t)n, sizeof(*lat));
	if (lat == NULL)
		return 1;
	p = connect_or_die(argv[2]);
	if (floor)
		rep = connect_or_die(argv[3]);
	for (long i = 0; i < n + warm; i++) {
		double t0 = now_s();
		int rc = floor ? floor_once(p, rep, sql) : exec_write(p, sql);
		double dt = now_s() - t0;

		if (rc != 0) {
			errors++;
			continue;
		}
		if (i >= warm)
			lat[got++] = dt;
	}
	print_stats(floor ? "floor" : "pg", lat, got, errors);
	PQfinish(p);
	if (rep)
		PQfinish(rep);
	free(lat);
	return errors * 100 > (size_t)n ? 1 : 0;
}
