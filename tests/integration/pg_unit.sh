#!/usr/bin/env bash
# tests/integration/pg_unit.sh - runs Check test binaries that need a real
# PostgreSQL (test_pgconn, test_lease_pg, test_pool) against a throwaway
# server.
#
#   bash pg_unit.sh TEST_BINARY...
#
# Starts one PostgreSQL 15 on 127.0.0.1 (scripts/lib/pg.sh) in a fresh
# directory under /tmp, exports
#   MERIDIAN_TEST_PG_URL   postgresql://postgres@127.0.0.1:PORT/postgres
#   MERIDIAN_TEST_PG_DIR   the server's directory (tests stop and restart it)
#   MERIDIAN_TEST_PG_PORT  its port
#   MERIDIAN_TEST_PG_LIB   the path of scripts/lib/pg.sh
# runs every binary, and stops the server (EXIT trap) and removes the
# directory whatever happens.  Exit status: 1 if any binary failed.
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
lib="$here/../../scripts/lib/pg.sh"
source "$lib"

if [ $# -eq 0 ]; then
	echo "usage: $0 TEST_BINARY..." >&2
	exit 2
fi

work=$(mktemp -d /tmp/meridian-pg-unit.XXXXXX) || exit 1
chmod 755 "$work"
cleanup() {
	pg_cleanup_all
	# The tests may have restarted the server themselves: stop it by its
	# PID file whoever started it.
	pg_stop "$work/pg" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

pg_init "$work/pg" || exit 1
port=$(pg_free_port) || exit 1
pg_start "$work/pg" "$port" || exit 1

export MERIDIAN_TEST_PG_URL
MERIDIAN_TEST_PG_URL=$(pg_url "$port")
export MERIDIAN_TEST_PG_DIR="$work/pg" MERIDIAN_TEST_PG_PORT="$port" MERIDIAN_TEST_PG_LIB="$lib"
export CK_DEFAULT_TIMEOUT="${CK_DEFAULT_TIMEOUT:-120}"
echo "pg_unit: PostgreSQL on $MERIDIAN_TEST_PG_URL ($MERIDIAN_TEST_PG_DIR)"

status=0
for t in "$@"; do
	echo "pg_unit: running $t"
	if ! "$t"; then
		echo "pg_unit: FAILED: $t" >&2
		echo "--- server log (tail)" >&2
		tail -n 30 "$work/pg/log" >&2
		status=1
	fi
done
exit $status
