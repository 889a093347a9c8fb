#!/usr/bin/env bash
# bench/election.sh - leader handoff figures with the postgres backend.
#
# A PostgreSQL started here, 3 agents in iad (the primary region) and one
# each in fra and syd, the product's default lease (5 s, renew 1 s, guard
# 1 s), profile lan.  Rounds, each against whoever leads at that moment:
#
#   SIGTERM  graceful handoff: the leader releases its lease and announces
#            the release before it leaves
#   KILL     kill -9: nobody releases anything; a successor can only take
#            the lease once it expires at the server.  This is the baseline
#            of the same run: what every lease-based election without a
#            handoff (Kubernetes Leases, Consul sessions) pays on every
#            deploy, and with their defaults 15 s rather than 5.
#
# For each: gap_ms (signal -> another node claims leadership under a
# higher term) and learn_ms (signal -> every other agent, in every region,
# names the new leader), median and p99; the ratio of the SIGTERM gap to
# the KILL gap.  The killed or stopped leader is restarted under its name
# between rounds.
#
# Every process started is stopped by PID and reaped; every wait is
# bounded; everything binds 127.0.0.1.
#
# Usage: bench/election.sh [--rounds N] [--kills K] [--meridian PATH] [--out FILE.md]
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ROUNDS=20
KILLS=5
MERIDIAN=""
OUT=""
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) ROUNDS=$2; shift ;;
	--kills) KILLS=$2; shift ;;
	--meridian) MERIDIAN=$2; shift ;;
	--out) OUT=$2; shift ;;
	*) echo "usage: bench/election.sh [--rounds N] [--kills K] [--meridian PATH] [--out FILE.md]" >&2; exit 2 ;;
	esac
	shift
done
if [ -z "$MERIDIAN" ]; then
	source "$HERE/lib.sh"
	B=$(bench_build meridian) || exit 1
	MERIDIAN=$B/cmd/meridian
fi
export MERIDIAN
export AGENTS_DIR=$(mktemp -d /tmp/meridian-ebench.XXXXXX)
source "$ROOT/scripts/lib/agents.sh"
source "$ROOT/scripts/lib/pg.sh"
chmod 755 "$AGENTS_DIR"   # the postgres user works in it too
agents_init
trap 'agents_stop_all; pg_cleanup_all' EXIT

base=$(agents_free_port_base) || exit 1
export MERIDIAN_SECRET=$("$MERIDIAN" keygen)
pg_init "$AGENTS_DIR/pg" >/dev/null
pg_start "$AGENTS_DIR/pg" $((base + 100)) >/dev/null || exit 1
db=$(pg_url $((base + 100)))
declare -A PORT=([a1]=0 [a2]=10 [a3]=20 [f1]=30 [s1]=40)
declare -A REGION=([a1]=iad [a2]=iad [a3]=iad [f1]=fra [s1]=syd)
all=(a1 a2 a3 f1 s1)
start() {
	local p=$((base + ${PORT[$1]}))
	agents_start "$1" "${REGION[$1]}" iad "127.0.0.1:$p" "127.0.0.1:$((p + 1))" \
		--primary-database-url "$db" --join "127.0.0.1:$base" --join "127.0.0.1:$((base + 10))"
}
for n in "${all[@]}"; do start "$n"; done
agents_wait_until 30 agents_converged 5 "${all[@]}" || { echo "cluster did not form" >&2; exit 1; }

results=$AGENTS_DIR/rounds.jsonl
round() {
	local sig=$1 others=() n
	agents_wait_until 30 agents_self_leader a1 a2 a3 || { echo "no leader" >&2; return 1; }
	for n in "${all[@]}"; do [ "$n" != "$LEADER" ] && others+=(--agent "${AGENT_API[$n]}"); done
	python3 "$HERE/lib/ebench.py" --pid "${AGENT_PID[$LEADER]}" --signal "$sig" \
		--old-term "$TERM_NOW" "${others[@]}" --timeout 20 |
		jq -c --arg s "$sig" '. + {signal: $s}' >>"$results"
	agents_wait_exit "$LEADER" 15 || true
	start "$LEADER"
	agents_wait_until 30 agents_converged 5 "${all[@]}" || return 1
	sleep 1
}
for i in $(seq 1 "$ROUNDS"); do round TERM || break; done
for i in $(seq 1 "$KILLS"); do round KILL || break; done

report=$(python3 - "$results" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def q(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p * (len(v) - 1))))] if v else float("nan")
out = {}
for sig in ("TERM", "KILL"):
    r = [x for x in rows if x["signal"] == sig]
    gaps = [x["gap_ms"] for x in r if x["gap_ms"] is not None]
    learns = [x["learn_ms"] for x in r if x["learn_ms"] is not None]
    out[sig] = (len(r), len(r) - len(gaps), statistics.median(gaps) if gaps else float("nan"),
                q(gaps, .99), statistics.median(learns) if learns else float("nan"), q(learns, .99))
    print("%-7s rounds=%d missed=%d gap_median_ms=%.1f gap_p99_ms=%.1f learn_median_ms=%.1f learn_p99_ms=%.1f" % ((sig,) + out[sig]))
print("ratio  sigterm_gap/kill_gap (median) = %.4f" % (out["TERM"][2] / out["KILL"][2]))
EOF
)
echo "$report"
if [ -n "$OUT" ]; then
	{
		echo "### Leader handoff, $(date -u +%Y-%m-%d) ($(nproc) cores, lease 5 s / renew 1 s / guard 1 s, profile lan)"
		echo
		echo '```'
		echo "$report"
		echo '```'
	} >>"$OUT"
fi
