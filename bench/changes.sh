#!/usr/bin/env bash
# bench/changes.sh - change events from the leader to another region,
# against pg_recvlogical reading the same changes alone in the same run.
#
# A PostgreSQL primary started here; a1 in iad (the primary region, the
# leader: it consumes the slot "meridian" with pgoutput) and f1 in fra,
# profile lan, default lease (5 s).  `meridian watch --changes --json` on f1
# is the subscriber.  Figures:
#
#   throughput  ROWS rows inserted in transactions of 1,000: seconds until
#               f1's subscriber has them all, and changes per second; the
#               floor is pg_recvlogical (test_decoding, a slot of its own)
#               decoding the same WAL alone, in the same run
#   latency     500 single-row transactions, 10 ms apart: subscriber
#               receive time (the event's "time", f1's clock) minus the
#               commit time; median, p99 (same host, same clock)
#   handoff     a row every 5 ms while the leader gets SIGTERM, then (after
#               it is back) kill -9: the longest silence at the subscriber
#               around each (the delivery gap)
#
# Every process started is stopped by PID (agents, watchers, writers) or by
# its data directory (PostgreSQL); every wait is bounded; 127.0.0.1 only.
#
# Usage: bench/changes.sh [--rows N] [--out FILE.md]
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ROWS=50000
OUT=""
while [ $# -gt 0 ]; do
	case $1 in
	--rows) ROWS=$2; shift ;;
	--out) OUT=$2; shift ;;
	*) echo "usage: bench/changes.sh [--rows N] [--out FILE.md]" >&2; exit 2 ;;
	esac
	shift
done
source "$HERE/lib.sh"
B=$(bench_build meridian) || exit 1
export MERIDIAN=$B/cmd/meridian
export AGENTS_DIR=$(mktemp -d /tmp/meridian-chbench.XXXXXX)
source "$ROOT/scripts/lib/agents.sh"
source "$ROOT/scripts/lib/pg.sh"
agents_init
chmod 755 "$AGENTS_DIR"
PIDS=()
stop_pids() { local p; for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; PIDS=(); }
trap 'stop_pids; agents_stop_all; pg_cleanup_all' EXIT

base=$(agents_free_port_base) || exit 1
export MERIDIAN_SECRET=$("$MERIDIAN" keygen)
pport=$((base + 100))
pg_init "$AGENTS_DIR/pg" >/dev/null
pg_start "$AGENTS_DIR/pg" "$pport" >/dev/null || exit 1
db=$(pg_url "$pport")
psql_p() { pg_psql "$pport" -Atc "$1"; }
psql_p "create table t (id bigint primary key, v text)" >/dev/null
psql_p "select pg_create_logical_replication_slot('floor', 'test_decoding')" >/dev/null

agents_start a1 iad iad "127.0.0.1:$base" "127.0.0.1:$((base + 1))" --primary-database-url "$db"
agents_start f1 fra iad "127.0.0.1:$((base + 10))" "127.0.0.1:$((base + 11))" \
	--join "127.0.0.1:$base"
agents_wait_until 30 agents_converged 2 a1 f1 || { echo "cluster did not form" >&2; exit 1; }
consuming() { curl -s "http://${AGENT_API[a1]}/metrics" | grep -q '^meridian_replication_consuming 1'; }
agents_wait_until 30 consuming || { echo "the leader does not consume" >&2; exit 1; }
sleep 1
"$MERIDIAN" watch --changes --json --api "${AGENT_API[f1]}" >"$AGENTS_DIR/watch.jsonl" 2>&1 &
PIDS+=($!)
"$(pg_bindir)/pg_recvlogical" -d "$db" --slot floor --start -f "$AGENTS_DIR/floor.txt" \
	-s 1 -F 1 >/dev/null 2>&1 &
PIDS+=($!)
sleep 1

# grep -c prints 0 itself when nothing matches (and exits 1); nothing at
# all when the file is not there yet.
count_f1() { local n; n=$(grep -c '"table":"public.t","op":"insert"' "$AGENTS_DIR/watch.jsonl" 2>/dev/null); echo "${n:-0}"; }
count_floor() { local n; n=$(grep -c '^table public.t: INSERT' "$AGENTS_DIR/floor.txt" 2>/dev/null); echo "${n:-0}"; }
# Throughput: both readers see the same WAL; each is timed to its last row.
t0=$(date +%s%3N)
for ((i = 0; i < ROWS; i += 1000)); do
	echo "insert into t select g, 'x' from generate_series($((i + 1)), $((i + 1000 < ROWS ? i + 1000 : ROWS))) g;"
done | "$(pg_bindir)/psql" -X -q -d "$db" >/dev/null
t_write=$(($(date +%s%3N) - t0))
t_floor= t_f1=
for _ in $(seq 1 1200); do
	now=$(($(date +%s%3N) - t0))
	[ -z "$t_floor" ] && [ "$(count_floor)" -ge "$ROWS" ] && t_floor=$now
	[ -z "$t_f1" ] && [ "$(count_f1)" -ge "$ROWS" ] && t_f1=$now
	[ -n "$t_floor" ] && [ -n "$t_f1" ] && break
	sleep 0.05
done

# Latency: single-row transactions, 10 ms apart.
for i in $(seq 1 500); do
	echo "insert into t values ($((ROWS + i)), 'lat'); select pg_sleep(0.01);"
done | "$(pg_bindir)/psql" -X -q -d "$db" >/dev/null
sleep 2

# Handoff: a row every 5 ms; SIGTERM the leader, then kill -9 it.
python3 - "$db" "$(pg_bindir)/psql" "$((ROWS + 1000))" <<'EOF' &
import subprocess, sys, time
db, psql, start = sys.argv[1], sys.argv[2], int(sys.argv[3])
p = subprocess.Popen([psql, "-X", "-q", "-d", db], stdin=subprocess.PIPE, text=True)
end = time.time() + 40
i = start
while time.time() < end:
    p.stdin.write("insert into t values (%d, 'gap');\n" % i)
    p.stdin.flush()
    i += 1
    time.sleep(0.005)
p.stdin.close()
p.wait()
EOF
PIDS+=($!)
sleep 3
agents_start a2 iad iad "127.0.0.1:$((base + 20))" "127.0.0.1:$((base + 21))" \
	--join "127.0.0.1:$base" --primary-database-url "$db"
agents_wait_until 30 agents_converged 3 a1 f1 a2
sleep 2
t_term=$(date +%s%3N)
agents_signal a1 TERM
agents_wait_exit a1 15
sleep 8
agents_start a1 iad iad "127.0.0.1:$base" "127.0.0.1:$((base + 1))" --join "127.0.0.1:$((base + 20))" \
	--primary-database-url "$db"
agents_wait_until 30 agents_converged 3 a1 f1 a2
sleep 3
t_kill=$(date +%s%3N)
agents_signal a2 KILL
agents_wait_exit a2 15
sleep 15
stop_pids

report=$(python3 - "$AGENTS_DIR/watch.jsonl" "$ROWS" "$t_write" "${t_floor:-0}" "${t_f1:-0}" "$t_term" "$t_kill" <<'EOF'
import datetime, json, statistics, sys
path, rows, t_write, t_floor, t_f1, t_term, t_kill = sys.argv[1], int(sys.argv[2]), *map(int, sys.argv[3:])
def ms(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() * 1000
lat, gaps = [], []
for line in open(path):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if e.get("type") != "change" or e.get("table") != "public.t":
        continue
    v = e.get("new", {}).get("v") if e.get("new") else None
    if v == "lat":
        lat.append(ms(e["time"]) - ms(e["commit_time"]))
    elif v == "gap":
        gaps.append(ms(e["time"]))
def q(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p * (len(v) - 1))))] if v else float("nan")
def gap_after(t, until):
    g = sorted(x for x in gaps if t - 2000 <= x < until)
    return max((b - a for a, b in zip(g, g[1:]) if b >= t), default=float("nan"))
print("throughput rows=%d write_ms=%d floor_ms=%d meridian_ms=%d floor_per_s=%.0f meridian_per_s=%.0f ratio=%.2f"
      % (rows, t_write, t_floor, t_f1, rows / (t_floor / 1000) if t_floor else 0,
         rows / (t_f1 / 1000) if t_f1 else 0, (t_f1 / t_floor) if t_floor else float("nan")))
print("latency n=%d median_ms=%.1f p99_ms=%.1f" % (len(lat), q(lat, .5), q(lat, .99)))
print("handoff sigterm_gap_ms=%.0f kill9_gap_ms=%.0f (rows every 5 ms; lease 5 s)" % (gap_after(t_term, t_kill - 1000), gap_after(t_kill, float("inf"))))
EOF
)
echo "$report"
if [ -n "$OUT" ]; then
	{
		echo "### Change events, $(date -u +%Y-%m-%d) ($(nproc) cores, profile lan)"
		echo
		echo '```'
		echo "$report"
		echo '```'
	} >>"$OUT"
fi
