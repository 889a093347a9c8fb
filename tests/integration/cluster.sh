#!/usr/bin/env bash
# tests/integration/cluster.sh - real agent processes on 127.0.0.1.
#
# 5 agents in 3 regions form a cluster through the CLI; region filters;
# an agent with the wrong secret never appears; kill -9 of one: all the
# others mark it failed; SIGTERM of one: all mark it left and it exits 0;
# the CLI's exit codes for no agent and for a missing secret.
#
# Usage: cluster.sh PATH/TO/meridian
set -euo pipefail
export MERIDIAN=${1:?usage: cluster.sh PATH/TO/meridian}
here=$(cd "$(dirname "$0")" && pwd)
export AGENTS_DIR=$(mktemp -d /tmp/meridian-it.XXXXXX)
source "$here/../../scripts/lib/agents.sh"
agents_init

passed=0 failed=0
ok() { echo "ok - $*"; passed=$((passed + 1)); }
fail() {
	echo "not ok - $*"
	failed=$((failed + 1))
	for f in "$AGENTS_DIR"/*.log; do echo "--- $f"; tail -n 20 "$f"; done
}
check() { local what=$1; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }

base=$(agents_free_port_base)
export MERIDIAN_SECRET=$("$MERIDIAN" keygen)
profile=(--profile local --leave-timeout 2s)

seed="127.0.0.1:$base"
agents_start a1 iad iad "127.0.0.1:$base" "127.0.0.1:$((base + 1))" "${profile[@]}"
agents_start a2 iad iad "127.0.0.1:$((base + 10))" "127.0.0.1:$((base + 11))" "${profile[@]}" --join "$seed"
agents_start f1 fra iad "127.0.0.1:$((base + 20))" "127.0.0.1:$((base + 21))" "${profile[@]}" --join "$seed"
agents_start f2 fra iad "127.0.0.1:$((base + 30))" "127.0.0.1:$((base + 31))" "${profile[@]}" --join "$seed"
agents_start s1 syd iad "127.0.0.1:$((base + 40))" "127.0.0.1:$((base + 41))" "${profile[@]}" --join "$seed" --tag team=blue
all=(a1 a2 f1 f2 s1)

check "5 agents in 3 regions converge (every agent sees 5 alive)" \
	agents_wait_until 20 agents_converged 5 "${all[@]}"

fra=$(agents_members a1 --region fra | jq -r '[.[].name] | join(",")')
check "members --region fra lists f1,f2 (got $fra)" test "$fra" = "f1,f2"
json_ok=$(agents_members s1 | jq -r '.[] | select(.name == "s1") |
	(.addr != null and .region == "syd" and .status == "alive" and
	 (.incarnation | type) == "number" and .tags.team == "blue" and
	 .tags.primary_region == "iad")')
check "members --json carries name, addr, region, status, incarnation, tags" test "$json_ok" = "true"
text=$("$MERIDIAN" members --api "${AGENT_API[a1]}")
check "members prints a table with every node" bash -c '[ $(grep -cE "^(a1|a2|f1|f2|s1) " <<<"$0") = 5 ]' "$text"
check "info reports the region and the primary" bash -c \
	'"$0" info --api "$1" --json | jq -e ".region == \"fra\" and .primary_region == \"iad\" and .is_primary == false" >/dev/null' \
	"$MERIDIAN" "${AGENT_API[f1]}"

# An agent with another secret knocks on a1's door: it must never appear.
MERIDIAN_SECRET=$("$MERIDIAN" keygen) agents_start x1 iad iad "127.0.0.1:$((base + 50))" \
	"127.0.0.1:$((base + 51))" "${profile[@]}" --join "$seed"
sleep 3
seen=0
for o in "${all[@]}"; do
	[ -n "$(agents_status_of "$o" x1)" ] && seen=1
done
check "an agent with the wrong secret appears in nobody's members" test $seen = 0
dropped=$(curl -s "http://${AGENT_API[a1]}/metrics" |
	awk '/^meridian_packets_dropped_total\{reason="bad_key"\}/ {print $2}')
check "a1 counted the wrong-secret packets as bad_key (got ${dropped:-none})" \
	bash -c '[ "${0:-0}" -gt 0 ] 2>/dev/null' "${dropped%.*}"
agents_signal x1 KILL
agents_wait_exit x1 5 || true

# kill -9: everybody else marks f2 failed.
t0=$SECONDS
agents_signal f2 KILL
agents_wait_exit f2 5 || true
check "kill -9 f2: a1 a2 f1 s1 all mark it failed" \
	agents_wait_until 30 agents_all_see failed f2 a1 a2 f1 s1
echo "# failure seen by all within $((SECONDS - t0)) s"

# SIGTERM: s1 leaves, exits 0, everybody marks it left (not failed).
agents_signal s1 TERM
agents_wait_exit s1 10 || true
check "SIGTERM s1 exits 0 (got $AGENT_EXIT)" test "$AGENT_EXIT" = 0
check "a1 a2 f1 all mark s1 left" agents_wait_until 5 agents_all_see left s1 a1 a2 f1

# meridian leave: the same through the API.
"$MERIDIAN" leave --api "${AGENT_API[a2]}" >/dev/null
agents_wait_exit a2 10 || true
check "meridian leave: a2 exits 0 (got $AGENT_EXIT)" test "$AGENT_EXIT" = 0
check "a1 and f1 mark a2 left" agents_wait_until 5 agents_all_see left a2 a1 f1

# The CLI's exit codes.
rc=0; "$MERIDIAN" members --api "127.0.0.1:$((base + 199))" >/dev/null 2>&1 || rc=$?
check "no agent reachable: exit 3 (got $rc)" test $rc = 3
rc=0; "$MERIDIAN" members --api "${AGENT_API[a1]}" --status sleeping >/dev/null 2>&1 || rc=$?
check "bad --status: exit 2 (got $rc)" test $rc = 2
rc=0; env -u MERIDIAN_SECRET -u MERIDIAN_SECRET_FILE "$MERIDIAN" agent --node z \
	--bind "127.0.0.1:$((base + 60))" --api "127.0.0.1:$((base + 61))" >/dev/null 2>"$AGENTS_DIR/nosecret.err" || rc=$?
check "agent without a secret: exit 2 (got $rc)" test $rc = 2
check "and says how to make one" grep -q "meridian keygen" "$AGENTS_DIR/nosecret.err"
rc=0; MY_REGION=Bad_Region "$MERIDIAN" agent --node z --bind "127.0.0.1:$((base + 60))" \
	--api "127.0.0.1:$((base + 61))" >/dev/null 2>&1 || rc=$?
check "invalid region: exit 2 (got $rc)" test $rc = 2

agents_stop_all
rm -rf "$AGENTS_DIR"
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
