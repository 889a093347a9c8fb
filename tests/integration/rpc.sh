#!/usr/bin/env bash
# tests/integration/rpc.sh - region RPC between real agents on 127.0.0.1.
#
# 5 agents in 2 regions: a1, a2 in iad (the primary region); f1 in fra
# with exec handlers upcase and slow; f2 in fra without handlers; f3 in
# fra with --rpc-upstream pointing at a small python3 HTTP server (greet
# answers 200 with its argument and the caller's region, boom 500, any
# other method 404).  From
# f1: --region iad answers from a1 or a2; --primary echo; --region fra
# runs locally; --node f1 upcase; no_such_method from f2 naming it and its
# version; no_such_region; --leader reaches a1; a slow handler killed at the
# deadline (exit 4); POST /v1/rpc with curl; the RPC metrics; SIGTERM of
# a2 while a slow call runs on it: the call completes, a new one is
# refused as unavailable while --region iad goes to a1, a2 exits 0;
# kill -9 of a1: a call to it ends with 3 or 4 within its timeout, never
# hangs; kill -9 of f1 during a slow call on it: the call ends with 3 or 4
# well before its timeout.
#
# Usage: rpc.sh PATH/TO/meridian
set -euo pipefail
export MERIDIAN=${1:?usage: rpc.sh PATH/TO/meridian}
here=$(cd "$(dirname "$0")" && pwd)
export AGENTS_DIR=$(mktemp -d /tmp/meridian-rpc.XXXXXX)
source "$here/lib.sh"

base=$(agents_free_port_base)
export MERIDIAN_SECRET=$("$MERIDIAN" keygen)
profile=(--profile local --leave-timeout 2s)
upcase='jq -r ".[0]" | tr a-z A-Z'

# The application upstream of f3: a python3 HTTP server on 127.0.0.1,
# remembered by PID and stopped by PID on exit, like the agents.
upstream_port=$((base + 50))
upstream_py='
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
	def do_POST(self):
		n = int(self.headers.get("Content-Length") or 0)
		try:
			req = json.loads(self.rfile.read(n) or b"{}")
		except ValueError:
			req = {}
		method = req.get("method") if self.path == "/rpc" else None
		if method == "greet":
			args = req.get("args") or [None]
			origin = req.get("origin") or {}
			code, body = 200, {"hello": args[0], "origin_region": origin.get("region")}
		elif method == "boom":
			code, body = 500, {"error": "boom"}
		else:
			code, body = 404, {"error": "no such method"}
		data = json.dumps(body).encode()
		self.send_response(code)
		self.send_header("Content-Type", "application/json")
		self.send_header("Content-Length", str(len(data)))
		self.end_headers()
		self.wfile.write(data)

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
'
python3 -c "$upstream_py" "$upstream_port" >"$AGENTS_DIR/upstream.log" 2>&1 &
upstream_pid=$!
stop_upstream() {
	kill -TERM "$upstream_pid" 2>/dev/null || true
	wait "$upstream_pid" 2>/dev/null || true
}
trap 'stop_upstream; agents_stop_all' EXIT
upstream_up() {
	curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$upstream_port/rpc" -d '{}'
}
check "the upstream HTTP server listens" agents_wait_until 10 upstream_up

seed="127.0.0.1:$base"
agents_start a1 iad iad "127.0.0.1:$base" "127.0.0.1:$((base + 1))" "${profile[@]}"
agents_start a2 iad iad "127.0.0.1:$((base + 10))" "127.0.0.1:$((base + 11))" "${profile[@]}" \
	--join "$seed" --handler slow="touch $AGENTS_DIR/slow-a2.started; sleep 4; echo done" \
	--drain-timeout 10s
agents_start f1 fra iad "127.0.0.1:$((base + 20))" "127.0.0.1:$((base + 21))" "${profile[@]}" \
	--join "$seed" --handler "upcase=$upcase" \
	--handler slow="touch $AGENTS_DIR/slow-f1.started; sleep 5"
agents_start f2 fra iad "127.0.0.1:$((base + 30))" "127.0.0.1:$((base + 31))" "${profile[@]}" \
	--join "$seed"
agents_start f3 fra iad "127.0.0.1:$((base + 40))" "127.0.0.1:$((base + 41))" "${profile[@]}" \
	--join "$seed" --rpc-upstream "http://127.0.0.1:$upstream_port/rpc"
all=(a1 a2 f1 f2 f3)

check "5 agents in 2 regions converge" agents_wait_until 20 agents_converged 5 "${all[@]}"

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

# The gossip election (no database): the lowest name of the primary region.
leader_is_a1() { [ "$("$MERIDIAN" leader --api "${AGENT_API[f1]}" --json | jq -r .node)" = a1 ]; }
check "f1 learns that a1 leads (gossip election)" agents_wait_until 10 leader_is_a1
rpc_from f1 --leader ping
node=$(jq -r .node <<<"$RPC_OUT" 2>/dev/null || true)
check "rpc --leader ping from f1 answers from a1 (rc $RPC_RC, $RPC_OUT)" \
	test "$RPC_RC:$node" = "0:a1"

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
rpc_from a1 --node f3 greet bob
greeted='.hello == "bob" and .origin_region == "iad"'
check "rpc --node f3 greet bob: upstream JSON with bob, origin iad (rc $RPC_RC, $RPC_OUT)" \
	bash -c '[ "$0" = 0 ] && jq -e "$2" >/dev/null <<<"$1"' "$RPC_RC" "$RPC_OUT" "$greeted"

rpc_from a1 --node f3 boom
check "rpc --node f3 boom: upstream 500 is exit 1 remote_error ($RPC_RC, $RPC_ERR)" \
	bash -c '[ "$0" = 1 ] && grep -q "^meridian rpc: remote_error: .*500" <<<"$1"' \
	"$RPC_RC" "$RPC_ERR"

rpc_from a1 --node f3 nosuch
check "rpc --node f3 nosuch: upstream 404 is exit 1 no_such_method ($RPC_RC, $RPC_ERR)" \
	bash -c '[ "$0" = 1 ] && grep -q "^meridian rpc: no_such_method: " <<<"$1"' \
	"$RPC_RC" "$RPC_ERR"

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

# SIGTERM of a2 while a slow call (4 s) runs on it: the call completes,
# a new call to a2 is refused (unavailable, or a2 already unknown), a2
# exits 0.
slow_out="$AGENTS_DIR/slow.out"
rm -f "$AGENTS_DIR/slow-a2.started"
( timeout 30 "$MERIDIAN" rpc --api "${AGENT_API[f1]}" --node a2 --timeout 10s slow \
	>"$slow_out" 2>&1; echo "rc=$?" >>"$slow_out" ) &
slow_pid=$!
# The call is in flight once its handler has started.
agents_wait_until 10 test -e "$AGENTS_DIR/slow-a2.started" || true
agents_signal a2 TERM
a2_leaving() {
	[ "$(agents_members f2 | jq -r '.[] | select(.name == "a2") | .leaving')" = true ]
}
check "a2, draining a call, is seen leaving=true by f2 before it leaves" \
	agents_wait_until 3 a2_leaving
rpc_from f2 --node a2 ping
check "a new call to a leaving a2 is refused with exit 3 ($RPC_RC, $RPC_ERR)" \
	bash -c '[ "$0" = 3 ] && grep -qE "unavailable" <<<"$1"' "$RPC_RC" "$RPC_ERR"
# ...while a call to the region goes elsewhere: a1 answers, every time.
for i in 1 2 3; do
	rpc_from f2 --region iad ping
	node=$(jq -r .node <<<"$RPC_OUT" 2>/dev/null || true)
	check "rpc --region iad ping #$i, a2 leaving: a1 answers ($RPC_RC, $node, $RPC_ERR)" \
		bash -c '[ "$0" = 0 ] && [ "$1" = a1 ]' "$RPC_RC" "$node"
done
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

# kill -9 of f1 while a slow call (sleep 5) runs on it: the connection
# drops, so the call must end with 3 or 4 within 5 s of the kill, well
# before its 10 s timeout.
mid_err="$AGENTS_DIR/midcall.err"
rm -f "$AGENTS_DIR/slow-f1.started"   # earlier slow calls on f1 made it
timeout 30 "$MERIDIAN" rpc --api "${AGENT_API[f2]}" --node f1 --timeout 10s slow \
	>/dev/null 2>"$mid_err" &
mid_pid=$!
agents_wait_until 10 test -e "$AGENTS_DIR/slow-f1.started" || true
agents_signal f1 KILL
t_kill=${EPOCHREALTIME/./}
mid_done() { ! kill -0 "$mid_pid" 2>/dev/null; }
agents_wait_until 5 mid_done || true
mid_ms=$(((${EPOCHREALTIME/./} - t_kill) / 1000))
mid_rc=hang
if mid_done; then
	mid_rc=0
	wait "$mid_pid" || mid_rc=$?
else
	kill -TERM "$mid_pid" 2>/dev/null || true
	wait "$mid_pid" 2>/dev/null || true
fi
agents_wait_exit f1 10 || true
check "kill -9 of f1 mid-call: exit 3 or 4 within 5 s ($mid_rc, ${mid_ms} ms, $(cat "$mid_err"))" \
	bash -c '{ [ "$0" = 3 ] || [ "$0" = 4 ]; } && [ "$1" -le 5000 ]' "$mid_rc" "$mid_ms"

echo "$passed passed, $failed failed"
# Logs are kept (and were printed) when something failed.
[ "$failed" = 0 ] && rm -rf "$AGENTS_DIR"
[ "$failed" = 0 ]
