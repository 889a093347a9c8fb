#!/usr/bin/env bash
# tests/integration/cluster.sh - real agent processes on 127.0.0.1.
#
# 5 agents in 3 regions form a cluster through the CLI; region filters;
# the region table in `meridian info`; an agent with another
# PRIMARY_REGION is reported by every agent (API, metrics, log) until it
# leaves; an agent with the wrong secret never appears; kill -9 of one:
# all the others mark it failed; SIGTERM of one: all mark it left and it
# exits 0; the CLI's exit codes for no agent
# and for a missing secret.
#
# Usage: cluster.sh PATH/TO/meridian
set -euo pipefail
export MERIDIAN=${1:?usage: cluster.sh PATH/TO/meridian}
here=$(cd "$(dirname "$0")" && pwd)
export AGENTS_DIR=$(mktemp -d /tmp/meridian-it.XXXXXX)
source "$here/lib.sh"

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
regions=$("$MERIDIAN" info --api "${AGENT_API[f1]}" --json |
	jq -c '[.regions, .cluster_primary_region, .primary_conflict]')
check "info --json on f1: regions fra 2, iad 2, syd 1 alive, primary iad, no conflict (got $regions)" \
	test "$regions" = '[[{"name":"fra","alive":2,"nodes":2},{"name":"iad","alive":2,"nodes":2},{"name":"syd","alive":1,"nodes":1}],"iad",[]]'
check "members --json: every member carries leaving false" bash -c \
	'[ "$(jq -c "[.[].leaving]" <<<"$0")" = "[false,false,false,false,false]" ]' "$(agents_members a1)"

# A wrong configuration: w1 in fra believes fra is the primary region.
# Every agent reports the disagreement, none resolves it.
# conflict_seen EXPECT NAMES...: every agent's /v1/self shows EXPECT
# ("conflict": iad on 5, fra on 1 held by w1; "none": agreement on iad).
conflict_seen() {
	local expect=$1 o got want
	shift
	if [ "$expect" = conflict ]; then
		want='[null,[{"primary_region":"iad","count":5,"example":"a1"},{"primary_region":"fra","count":1,"example":"w1"}]]'
	else
		want='["iad",[]]'
	fi
	for o in "$@"; do
		got=$(curl -s --max-time 2 "http://${AGENT_API[$o]}/v1/self" |
			jq -c '[.cluster_primary_region, .primary_conflict]' 2>/dev/null) || return 1
		[ "$got" = "$want" ] || return 1
	done
}
metric_of() {
	curl -s --max-time 2 "http://${AGENT_API[$1]}/metrics" | awk -v m="$2" '$1 == m {print $2}'
}
agents_start w1 fra fra "127.0.0.1:$((base + 70))" "127.0.0.1:$((base + 71))" "${profile[@]}" --join "$seed"
check "PRIMARY_REGION=fra on w1: all 6 agents show 2 values and no cluster primary" \
	agents_wait_until 20 conflict_seen conflict "${all[@]}" w1
got=$(metric_of a1 meridian_primary_region_conflict)/$(metric_of a1 meridian_primary_region_values)
check "a1's /metrics: meridian_primary_region_conflict 1, _values 2 (got $got)" test "$got" = 1/2
check "w1 logged the conflict as an ERROR naming both values" agents_wait_until 5 \
	grep -qE 'error region: PRIMARY_REGION conflict: .*"iad" on [0-9]+ nodes? \(e\.g\. a1\), "fra" on 1 node \(e\.g\. w1\)' \
	"$AGENTS_DIR/w1.log"
check "info (text) on f2 shows the conflict loudly" bash -c \
	'"$0" info --api "$1" | grep -q "^PRIMARY_REGION CONFLICT: .*\"fra\" on 1 node (e.g. w1)"' \
	"$MERIDIAN" "${AGENT_API[f2]}"
agents_signal w1 TERM
agents_wait_exit w1 10 || true
check "SIGTERM w1 exits 0 (got $AGENT_EXIT)" test "$AGENT_EXIT" = 0
check "w1 gone: the conflict clears on all 5 agents" \
	agents_wait_until 10 conflict_seen none "${all[@]}"
got=$(metric_of a1 meridian_primary_region_conflict)/$(metric_of a1 meridian_primary_region_values)
check "a1's /metrics: meridian_primary_region_conflict 0, _values 1 (got $got)" test "$got" = 0/1
# With no RPC in flight w1 announced its leave at once (the leaving tag is
# only for draining calls: tests/integration/rpc.sh checks it).
check "w1 left at once: every agent marks it left" agents_wait_until 5 agents_all_see left w1 "${all[@]}"

# An agent with another secret knocks on a1's door: it must never appear.
MERIDIAN_SECRET=$("$MERIDIAN" keygen) agents_start x1 iad iad "127.0.0.1:$((base + 50))" \
	"127.0.0.1:$((base + 51))" "${profile[@]}" --join "$seed"
sleep 3
seen=0
for o in "${all[@]}"; do
	[ -n "$(agents_status_of "$o" x1)" ] && seen=1
done
check "an agent with the wrong secret appears in nobody's members" test $seen = 0
bad_key_counted() {
	dropped=$(agents_metric a1 'meridian_packets_dropped_total{reason="bad_key"}')
	[ "${dropped%.*}" -gt 0 ] 2>/dev/null
}
agents_wait_until 15 bad_key_counted || true
check "a1 counted the wrong-secret packets as bad_key (got ${dropped:-none})" bad_key_counted
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

# The NOTICE may wait for the end of the rate limit window (10 s).
check "a1 logged the end of the conflict as a NOTICE" agents_wait_until 15 \
	grep -q 'notice region: PRIMARY_REGION conflict over: every live node now says "iad"' \
	"$AGENTS_DIR/a1.log"

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
