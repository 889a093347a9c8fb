#!/usr/bin/env bash
# bench/sql.sh - reads, forwarded writes and read-your-writes, against
# plain libpq in the same run.
#
# A PostgreSQL primary and one streaming replica (pg_basebackup -R), both
# started here on 127.0.0.1 (fsync off, synchronous_commit on); agent a1 in
# iad (the primary region, PRIMARY_DATABASE_URL) and f1 in fra (DATABASE_URL
# = the replica), profile lan.  Measured, one call at a time (WARMUP
# unrecorded, then N timed; median, p99):
#
#   pg        INSERT straight to the primary with libpq (bench_pg_client): the
#             baseline of every write figure
#   local     the same INSERT through a1's API (POST /v1/sql, write): agent
#             in the primary region
#   forwarded the same INSERT through f1's API: fra -> region RPC -> a1 ->
#             primary, and back with the LSN.  Target (issue 5): forwarded
#             median - pg median < 0.5 ms on loopback
#   floor     INSERT on the primary, then pg_last_wal_replay_lsn() on the
#             replica asked back to back until it has passed the commit's
#             LSN (bench_pg_client floor): the physical floor of
#             read-your-writes
#   wait      the INSERT through f1's API with "wait": true (answered once
#             fra's replica has replayed it), against the floor
#   read      SELECT by primary key through f1's API (replica), one at a
#             time, then 8 callers for SECS seconds: reads per second
#
# Every process started is stopped by PID (agents) or by its data
# directory (PostgreSQL, pg_ctl); every wait is bounded; 127.0.0.1 only.
#
# Usage: bench/sql.sh [--n N] [--warmup W] [--secs S] [--out FILE.md]
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
N=2000
WARMUP=200
SECS=5
OUT=""
while [ $# -gt 0 ]; do
	case $1 in
	--n) N=$2; shift ;;
	--warmup) WARMUP=$2; shift ;;
	--secs) SECS=$2; shift ;;
	--out) OUT=$2; shift ;;
	*) echo "usage: bench/sql.sh [--n N] [--warmup W] [--secs S] [--out FILE.md]" >&2; exit 2 ;;
	esac
	shift
done
source "$HERE/lib.sh"
B=$(bench_build meridian bench_rpc_client bench_pg_client) || exit 1
export MERIDIAN=$B/cmd/meridian
HTTP=$B/bench/bench_rpc_client
PG=$B/bench/bench_pg_client
export AGENTS_DIR=$(mktemp -d /tmp/meridian-sqlbench.XXXXXX)
source "$ROOT/scripts/lib/agents.sh"
source "$ROOT/scripts/lib/pg.sh"
agents_init
chmod 755 "$AGENTS_DIR"   # the postgres user works in it too
trap 'agents_stop_all; pg_cleanup_all' EXIT

base=$(agents_free_port_base) || exit 1
export MERIDIAN_SECRET=$("$MERIDIAN" keygen)
pg_init "$AGENTS_DIR/primary" >/dev/null
pg_start "$AGENTS_DIR/primary" $((base + 100)) >/dev/null || exit 1
pg_replica_init $((base + 100)) "$AGENTS_DIR/r1" >/dev/null || exit 1
pg_start "$AGENTS_DIR/r1" $((base + 101)) >/dev/null || exit 1
primary=$(pg_url $((base + 100))) replica=$(pg_url $((base + 101)))

agents_start a1 iad iad "127.0.0.1:$base" "127.0.0.1:$((base + 1))" --primary-database-url "$primary"
agents_start f1 fra iad "127.0.0.1:$((base + 10))" "127.0.0.1:$((base + 11))" \
	--join "127.0.0.1:$base" --database-url "$replica"
agents_wait_until 30 agents_converged 2 a1 f1 || { echo "cluster did not form" >&2; exit 1; }
"$MERIDIAN" sql --api "${AGENT_API[a1]}" --write \
	'create table bench (id serial primary key, v text)' >/dev/null || exit 1
"$MERIDIAN" sql --api "${AGENT_API[a1]}" --write --wait \
	'insert into bench (v) values ($1)' first >/dev/null || exit 1

insert='insert into bench (v) values ($1)'
write_body='{"sql":"insert into bench (v) values ($1)","params":["bench"],"write":true}'
wait_body='{"sql":"insert into bench (v) values ($1)","params":["bench"],"write":true,"wait":true}'
read_body='{"sql":"select v from bench where id = 1"}'
NW=$((N / 4))
results=$AGENTS_DIR/results.txt
run() { local label=$1; shift; printf '%-10s ' "$label"; "$@" | tee -a /dev/stderr | tail -n 1; } 2>/dev/null
{
	run pg "$PG" write "$primary" "$insert" "$N" "$WARMUP"
	run local "$HTTP" http "${AGENT_API[a1]}" /v1/sql "$write_body" serial "$N" "$WARMUP"
	run forwarded "$HTTP" http "${AGENT_API[f1]}" /v1/sql "$write_body" serial "$N" "$WARMUP"
	run floor "$PG" floor "$primary" "$replica" "$insert" "$NW" "$((WARMUP / 4))"
	run wait "$HTTP" http "${AGENT_API[f1]}" /v1/sql "$wait_body" serial "$NW" "$((WARMUP / 4))"
	run read "$HTTP" http "${AGENT_API[f1]}" /v1/sql "$read_body" serial "$N" "$WARMUP"
	run read8 "$HTTP" http "${AGENT_API[f1]}" /v1/sql "$read_body" conc 8 "$SECS"
} >"$results"

report=$(python3 - "$results" <<'EOF'
import re, sys
rows = {}
for line in open(sys.argv[1]):
    label, rest = line.split(None, 1)
    rows[label] = dict(re.findall(r"(\w+)=([\d.]+)", rest))
for k in ("pg", "local", "forwarded", "floor", "wait", "read"):
    r = rows.get(k, {})
    print("%-10s median_us=%s p99_us=%s n=%s errors=%s" % (k, r.get("median_us"), r.get("p99_us"), r.get("n"), r.get("errors")))
print("%-10s calls_per_s=%s errors=%s" % ("read8", rows.get("read8", {}).get("calls_per_s"), rows.get("read8", {}).get("errors")))
pg, fwd, loc = (float(rows[k]["median_us"]) for k in ("pg", "forwarded", "local"))
fl, wt = float(rows["floor"]["median_us"]), float(rows["wait"]["median_us"])
print("forwarded - pg (median) = %.0f us (target < 500); local - pg = %.0f us; forwarded/pg = %.2fx" % (fwd - pg, loc - pg, fwd / pg))
print("wait - floor (median) = %.0f us; wait/floor = %.2fx" % (wt - fl, wt / fl))
EOF
)
echo "$report"
if [ -n "$OUT" ]; then
	{
		echo "### SQL through the agent, $(date -u +%Y-%m-%d) ($(nproc) cores, N=$N, profile lan)"
		echo
		echo '```'
		echo "$report"
		echo '```'
	} >>"$OUT"
fi
