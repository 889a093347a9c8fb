#!/usr/bin/env bash
# tests/integration/rpc.sh - region RPC between real agents on 127.0.0.1.
#
# 4 agents in 2 regions: a1, a2 in iad (the primary region); f1 in fra
# with exec handlers upcase and slow; f2 in fra without handlers.  From
# f1: --region iad answers from a1 or a2; --primary echo; --region fra
# runs locally; --node f1 upcase; no_such_method from f2 naming it and its
# version; no_such_region; no_leader; a slow handler killed at the
# deadline (exit 4); POST /v1/rpc with curl; the RPC metrics; SIGTERM of
# a2 while a slow call runs on it: the call completes, a new one is
# refused as unavailable, a2 exits 0; kill -9 of a1: a call to it ends
# with 3 or 4 within its timeout, never hangs.
#
# Usage: rpc.sh PATH/TO/meridian
set -euo pipefail
export MERIDIAN=${1:?usage: rpc.sh PATH/TO/meridian}
here=$(cd "$(dirname "$0")" && pwd)
export AGENTS_DIR=$(mktemp -d /tmp/meridian-rpc.XXXXXX)
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
upcase='jq -r ".[0]" | tr a-z A-Z'

seed="127.0.0.1:$base"
agents_start a1 iad iad "127.0.0.1:$base" "127.0.0.1:$((base + 1))" "${profile[@]}"
agents_start a2 iad iad "127.0.0.1:$((base + 10))" "127.0.0.1:$((base + 11))" "${profile[@]}" \
	--join "$seed" --handler slow='sleep 2; echo done' --drain-timeout 10s
agents_start f1 fra iad "127.0.0.1:$((base + 20))" "127.0.0.1:$((base + 21))" "${profile[@]}" \
	--join "$seed" --handler "upcase=$upcase" --handler slow='sleep 5'
agents_start f2 fra iad "127.0.0.1:$((base + 30))" "127.0.0.1:$((base + 31))" "${profile[@]}" \
	--join "$seed"
all=(a1 a2 f1 f2)

check "4 agents in 2 regions converge" agents_wait_until 20 agents_converged 4 "${all[@]}"

# rpc_from NAME ARGS...: `meridian rpc` through NAME's agent; output in
# RPC_OUT (stdout), RPC_ERR (stderr), exit code in RPC_RC, seconds in RPC_SECS.
rpc_from() {
	local name=$1 t0=$SECONDS
	shift
	RPC_RC=0
	RPC_OUT=$(timeout 30 "$MERIDIAN" rpc --api "${AGENT_API[$name]}" "$@" 2>"$AGENTS_DIR/rpc.err") ||
		RPC_RC=$?
	RPC_ERR=$(cat "$AGENTS_DIR/rpc.err")
	RPC_SECS=$((SECONDS - t0))
}

rpc_from f1 --region iad ping
node=$(jq -r .node <<<"$RPC_OUT" 2>/dev/null || true)
check "rpc --region iad ping from f1 answers from a1 or a2 (rc $RPC_RC, $RPC_OUT)" \
	bash -c '[ "$0" = 0 ] && { [ "$1" = a1 ] || [ "$1" = a2 ]; }' "$RPC_RC" "$node"

rpc_from f1 --primary --json echo hello
check "rpc --primary --json echo hello (rc $RPC_RC, $RPC_OUT)" bash -c \
	'[ "$0" = 0 ] && jq -e ".ok == true and .region == \"iad\" and .result == [\"hello\"]" >/dev/null <<<"$1"' \
	"$RPC_RC" "$RPC_OUT"

rpc_from f1 --json --region fra ping
check "rpc --region fra ping from f1 runs locally (rc $RPC_RC, $RPC_OUT)" bash -c \
	'[ "$0" = 0 ] && jq -e ".node == \"f1\" and .result.node == \"f1\"" >/dev/null <<<"$1"' \
	"$RPC_RC" "$RPC_OUT"

rpc_from a1 --node f1 upcase fly
check "rpc --node f1 upcase fly from a1 gives FLY (rc $RPC_RC, $RPC_OUT)" \
	test "$RPC_RC:$RPC_OUT" = "0:FLY"

rpc_from a1 --node f2 upcase fly
check "rpc --node f2 upcase: exit 1, no_such_method naming f2 and its version ($RPC_RC, $RPC_ERR)" \
	bash -c '[ "$0" = 1 ] && grep -q "^meridian rpc: no_such_method: .*f2.*meridian" <<<"$1"' \
	"$RPC_RC" "$RPC_ERR"

rpc_from f1 --region syd ping
check "rpc --region syd: exit 3 no_such_region ($RPC_RC, $RPC_ERR)" bash -c \
	'[ "$0" = 3 ] && grep -q "^meridian rpc: no_such_region: .*syd" <<<"$1"' "$RPC_RC" "$RPC_ERR"

rpc_from f1 --leader ping
check "rpc --leader: exit 3 no_leader ($RPC_RC, $RPC_ERR)" bash -c \
	'[ "$0" = 3 ] && grep -q "^meridian rpc: no_leader: " <<<"$1"' "$RPC_RC" "$RPC_ERR"

rpc_from f1 --node nobody ping
check "rpc --node nobody: exit 3 no_such_node ($RPC_RC, $RPC_ERR)" bash -c \
	'[ "$0" = 3 ] && grep -q "^meridian rpc: no_such_node: " <<<"$1"' "$RPC_RC" "$RPC_ERR"

rpc_from a1 --node f1 --timeout 1s slow
check "rpc --node f1 --timeout 1s slow: exit 4 within 4 s ($RPC_RC, ${RPC_SECS}s, $RPC_ERR)" \
	bash -c '[ "$0" = 4 ] && [ "$1" -le 4 ]' "$RPC_RC" "$RPC_SECS"

rpc_from f1 --node f1 --timeout 1s slow
check "local slow handler: exit 4 within 4 s ($RPC_RC, ${RPC_SECS}s, $RPC_ERR)" \
	bash -c '[ "$0" = 4 ] && [ "$1" -le 4 ]' "$RPC_RC" "$RPC_SECS"

rpc_from f1 --region
check "rpc --region without a value: exit 2" test "$RPC_RC" = 2
rpc_from f1 --region iad --primary ping
check "rpc with two targets: exit 2" test "$RPC_RC" = 2

got=$(curl -s --max-time 10 "http://${AGENT_API[f2]}/v1/rpc" \
	-d '{"node":"f1","method":"upcase","args":["curl"]}')
check "curl POST /v1/rpc (got $got)" bash -c \
	'jq -e ".ok == true and .node == \"f1\" and .region == \"fra\" and .result == \"CURL\"" >/dev/null <<<"$0"' "$got"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "http://${AGENT_API[f2]}/v1/rpc" \
	-d '{"region":"syd","method":"ping"}')
check "POST /v1/rpc to an unknown region answers 503 (got $code)" test "$code" = 503
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "http://${AGENT_API[f2]}/v1/rpc" \
	-d '{"method":"ping"}')
check "POST /v1/rpc without a target answers 400 (got $code)" test "$code" = 400
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "http://${AGENT_API[a1]}/v1/rpc" \
	-d '{"node":"f2","method":"upcase"}')
check "POST /v1/rpc no_such_method answers 404 (got $code)" test "$code" = 404

check "/metrics counts RPCs by method and outcome" bash -c \
	'curl -s --max-time 5 "http://$0/metrics" | grep -q "^meridian_rpc_calls_total{.*method=\"upcase\".*outcome=\"ok\"" ' \
	"${AGENT_API[f1]}"

# SIGTERM of a2 while a slow call (2 s) runs on it: the call completes,
# a new call to a2 is refused (unavailable, or a2 already unknown), a2
# exits 0.
slow_out="$AGENTS_DIR/slow.out"
( timeout 30 "$MERIDIAN" rpc --api "${AGENT_API[f1]}" --node a2 --timeout 10s slow \
	>"$slow_out" 2>&1; echo "rc=$?" >>"$slow_out" ) &
slow_pid=$!
sleep 0.5
agents_signal a2 TERM
sleep 0.3
rpc_from f2 --node a2 ping
check "a new call to a leaving a2 is refused with exit 3 ($RPC_RC, $RPC_ERR)" \
	bash -c '[ "$0" = 3 ] && grep -qE "unavailable" <<<"$1"' "$RPC_RC" "$RPC_ERR"
wait_slow() { ! kill -0 "$slow_pid" 2>/dev/null; }
agents_wait_until 15 wait_slow || true
wait "$slow_pid" 2>/dev/null || true
check "the call in flight during SIGTERM of a2 completes ($(tr '\n' ' ' <"$slow_out"))" \
	bash -c 'grep -q "^done" "$0" && grep -q "^rc=0" "$0"' "$slow_out"
agents_wait_exit a2 20 || true
check "a2 exits 0 after draining (exit $AGENT_EXIT)" test "$AGENT_EXIT" = 0

# kill -9 of a1: until the others notice, a call to it fails fast
# (connection refused: unavailable) or times out; never hangs.
agents_signal a1 KILL
agents_wait_exit a1 10 || true
rpc_from f1 --node a1 --timeout 2s ping
check "rpc --node a1 after kill -9: exit 3 or 4 within 7 s ($RPC_RC, ${RPC_SECS}s, $RPC_ERR)" \
	bash -c '{ [ "$0" = 3 ] || [ "$0" = 4 ]; } && [ "$1" -le 7 ]' "$RPC_RC" "$RPC_SECS"
rpc_from f1 --region iad --timeout 2s ping
check "rpc --region iad with both iad nodes gone: exit 3 or 4 ($RPC_RC, $RPC_ERR)" \
	bash -c '[ "$0" = 3 ] || [ "$0" = 4 ]' "$RPC_RC"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
