#!/usr/bin/env bash
# bench/rpc.sh - region RPC benchmark: `ping` between two agents on loopback,
# against the anchor of issue 3, Erlang distribution's rpc:call.
#
# Two agents, a1 (iad) and f1 (fra), profile local, a fresh secret; f1 joins
# a1.  Every call is `ping` aimed at node a1, so it always crosses the
# cluster's TCP port (never the local short-cut).  Measured, in one run:
#
#   http    POST /v1/rpc {"node":"a1","method":"ping"} to f1's API, from
#           bench_rpc_client (keep-alive, one connection per caller): the
#           whole path an application sees (HTTP hop + agent-to-agent RPC)
#   direct  bench_rpc_client acting as a node (sealed with the secret, no
#           gossip) calling a1 with region/rpc.h's client: the agent-to-agent
#           RPC alone, without the local HTTP hop
#   metrics f1's own meridian_rpc_duration_seconds{side="client",
#           method="ping"} over the serial http run: the RPC leg inside the
#           http figure, at bucket resolution (100, 250, 500 us, ...)
#   erlang  two Erlang nodes on 127.0.0.1, rpc:call(Server, erlang, node, [])
#           (what Fly RPC uses), one at a time and with 8 and 64 callers
#
# Each shape: one call at a time (WARMUP unrecorded, then N timed: median,
# p99), and C concurrent callers for SECS seconds each (calls/s).
# Packages: erlang-nox (apt-get install when erl is missing), curl.
#
# The agents are started and stopped through scripts/lib/agents.sh.  Every
# process started is stopped by PID and reaped (trap on EXIT); every wait
# is bounded; everything binds 127.0.0.1, in 200 ports below the ephemeral
# range found free by agents_free_port_base (epmd on one of them, never the
# system's 4369).
#
# Usage: bench/rpc.sh [--n N] [--warmup W] [--secs S] [--meridian PATH]
#                     [--client PATH] [--out FILE.md]

set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
N=5000
WARMUP=500
SECS=5
MERIDIAN=""
CLIENT=""
OUT=""

while [ $# -gt 0 ]; do
	case $1 in
	--n) N=$2; shift ;;
	--warmup) WARMUP=$2; shift ;;
	--secs) SECS=$2; shift ;;
	--meridian) MERIDIAN=$2; shift ;;
	--client) CLIENT=$2; shift ;;
	--out) OUT=$2; shift ;;
	-h|--help) sed -n 2,32p "$0"; exit 0 ;;
	*) echo "rpc.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done

if [ -z "$MERIDIAN" ] || [ -z "$CLIENT" ]; then
	B="$ROOT/build-rpcbench"
	cmake -S "$ROOT" -B "$B" >/dev/null &&
		cmake --build "$B" --target meridian bench_rpc_client -j2 >/dev/null || exit 1
	MERIDIAN=${MERIDIAN:-$B/cmd/meridian}
	CLIENT=${CLIENT:-$B/bench/bench_rpc_client}
fi
if ! command -v erl >/dev/null; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y erlang-nox >/dev/null 2>&1 ||
		echo "rpc.sh: cannot install erlang-nox; no Erlang anchor" >&2
fi

source "$ROOT/scripts/lib/agents.sh"
WORK=$(mktemp -d /tmp/rpcbench.XXXXXX)
AGENTS_DIR=$WORK
agents_init
# The Erlang side's processes; the agents are agents.sh's.
PIDS=()
cleanup() {
	local p i
	agents_stop_all
	for p in "${PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null
	done
	for p in "${PIDS[@]}"; do
		for i in $(seq 50); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

BASE=$(agents_free_port_base) || exit 1
A1_G=127.0.0.1:$BASE A1_API=127.0.0.1:$((BASE + 1))
F1_G=127.0.0.1:$((BASE + 10)) F1_API=127.0.0.1:$((BASE + 11))
EPMD_PORT=$((BASE + 20)) ERL_SRV_PORT=$((BASE + 21)) ERL_CLI_PORT=$((BASE + 22))

"$MERIDIAN" keygen >"$WORK/secret" || exit 1
chmod 600 "$WORK/secret"

agents_start a1 iad iad "$A1_G" "$A1_API" --profile local --secret-file "$WORK/secret"
sleep 0.3
agents_start f1 fra iad "$F1_G" "$F1_API" --profile local --secret-file "$WORK/secret" \
	--join "$A1_G"

BODY='{"node":"a1","method":"ping","timeout_ms":5000}'
ok=0
for i in $(seq 100); do
	if curl -s -m 2 "http://$F1_API/v1/rpc" -d "$BODY" 2>/dev/null | grep -q '"ok": *true'; then
		ok=1
		break
	fi
	sleep 0.1
done
if [ $ok -ne 1 ]; then
	echo "rpc.sh: f1 cannot reach a1 by RPC after 10 s; logs in $WORK" >&2
	exit 1
fi

val() { # key line
	sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"
}

# f1's client-side ping histogram, cumulative "le count" lines.
hist() {
	curl -s -m 2 "http://$F1_API/metrics" |
		sed -n 's/^meridian_rpc_duration_seconds_bucket{side="client",method="ping",le="\([^"]*\)"} \([0-9]*\)$/\1 \2/p'
}

# Quantile bounds from two histogram snapshots: the upper bound of the
# bucket holding the median and the p99 (bucket resolution).
hist_q() { # before after
	join <(sort "$1") <(sort "$2") | sort -g | awk '
		{ le[NR] = $1; c[NR] = $3 - $2; n = NR }
		END {
			tot = c[n]; m = ""; p = ""
			for (i = 1; i <= n; i++) {
				if (m == "" && c[i] >= 0.5 * tot) m = le[i]
				if (p == "" && c[i] >= 0.99 * tot) p = le[i]
			}
			printf "count=%d median_le=%s p99_le=%s\n", tot, m, p
		}'
}

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
RES=()
run() { # label command...
	local line
	line=$("${@:2}") || echo "rpc.sh: $1 reported errors" >&2
	echo "$1: $line" >&2
	RES+=("$1|$line")
}

hist >"$WORK/h0"
run "http serial" "$CLIENT" http "$F1_API" /v1/rpc "$BODY" serial "$N" "$WARMUP"
hist >"$WORK/h1"
HQ=$(hist_q "$WORK/h0" "$WORK/h1")
echo "f1 metrics over the serial run: $HQ" >&2
run "http 8" "$CLIENT" http "$F1_API" /v1/rpc "$BODY" conc 8 "$SECS"
run "http 64" "$CLIENT" http "$F1_API" /v1/rpc "$BODY" conc 64 "$SECS"
run "direct serial" "$CLIENT" direct "$WORK/secret" a1 "$A1_G" serial "$N" "$WARMUP"
run "direct 8" "$CLIENT" direct "$WORK/secret" a1 "$A1_G" conc 8 "$SECS"
run "direct 64" "$CLIENT" direct "$WORK/secret" a1 "$A1_G" conc 64 "$SECS"

# Erlang: a server node and a client node on 127.0.0.1, their own epmd.
ERL_OK=0
if command -v erl >/dev/null; then
	export ERL_EPMD_PORT=$EPMD_PORT
	COOKIE=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
	epmd -port "$EPMD_PORT" -address 127.0.0.1 &
	PIDS+=($!)
	sleep 0.3
	erl -noshell -noinput -name srv@127.0.0.1 -setcookie "$COOKIE" \
		-kernel inet_dist_listen_min "$ERL_SRV_PORT" inet_dist_listen_max "$ERL_SRV_PORT" \
		-kernel inet_dist_use_interface '{127,0,0,1}' >"$WORK/erl-srv.log" 2>&1 &
	PIDS+=($!)
	# rpc:call(Srv, erlang, node, []) from the client node: serial, then
	# C callers (Erlang processes) for SECS seconds each.
	EVAL="
	Srv = 'srv@127.0.0.1',
	Wait = fun W(0) -> false; W(K) -> case net_adm:ping(Srv) of pong -> true;
		_ -> timer:sleep(100), W(K - 1) end end,
	true = Wait(100),
	Call = fun() -> Srv = rpc:call(Srv, erlang, node, []) end,
	[Call() || _ <- lists:seq(1, $WARMUP)],
	Ts = lists:sort([begin T0 = erlang:monotonic_time(nanosecond), Call(),
		erlang:monotonic_time(nanosecond) - T0 end || _ <- lists:seq(1, $N)]),
	Nth = fun(P) -> lists:nth(max(1, min($N, ceil(P * $N))), Ts) / 1000 end,
	io:format(\"erlang serial: mode=erlang kind=serial n=~b median_us=~.1f p99_us=~.1f mean_us=~.1f~n\",
		[$N, Nth(0.5), Nth(0.99), lists:sum(Ts) / $N / 1000]),
	Conc = fun(C) ->
		Self = self(),
		Stop = erlang:monotonic_time(millisecond) + $SECS * 1000,
		Loop = fun L(K) -> case erlang:monotonic_time(millisecond) < Stop of
			true -> Call(), L(K + 1); false -> K end end,
		T0 = erlang:monotonic_time(microsecond),
		[spawn_link(fun() -> Self ! {done, Loop(0)} end) || _ <- lists:seq(1, C)],
		Tot = lists:sum([receive {done, K} -> K end || _ <- lists:seq(1, C)]),
		Dt = (erlang:monotonic_time(microsecond) - T0) / 1.0e6,
		io:format(\"erlang ~b: mode=erlang kind=conc callers=~b calls=~b seconds=~.3f calls_per_s=~b errors=0~n\",
			[C, C, Tot, Dt, round(Tot / Dt)])
	end,
	Conc(8), Conc(64),
	halt(0)."
	timeout $((SECS * 2 + 120)) erl -noshell -noinput -name cli@127.0.0.1 -setcookie "$COOKIE" \
		-kernel inet_dist_listen_min "$ERL_CLI_PORT" inet_dist_listen_max "$ERL_CLI_PORT" \
		-kernel inet_dist_use_interface '{127,0,0,1}' \
		-eval "$EVAL" >"$WORK/erl.out" 2>"$WORK/erl.err" &
	ECLI=$!
	PIDS+=($ECLI)
	wait "$ECLI"
	if grep -q '^erlang 8:' "$WORK/erl.out"; then
		ERL_OK=1
		while IFS= read -r l; do
			echo "$l" >&2
			RES+=("${l%%:*}|${l#*: }")
		done <"$WORK/erl.out"
	else
		echo "rpc.sh: the Erlang run failed; see $WORK/erl.out, erl.err" >&2
	fi
	ERL_VSN=$(erl -noshell -eval 'io:format("~s", [erlang:system_info(otp_release)]), halt().' 2>/dev/null)
fi
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

# The table.
get() { # label key
	local r
	for r in "${RES[@]}"; do
		[ "${r%%|*}" = "$1" ] && val "$2" "${r#*|}" && return
	done
	echo "-"
}
if [ $ERL_OK -eq 1 ]; then
	EMED=$(get "erlang serial" median_us)
	E8=$(get "erlang 8" calls_per_s)
	ANCHOR="measured here (OTP ${ERL_VSN:-?})"
else
	EMED=180
	E8=23000
	ANCHOR="NOT measured (Erlang unavailable): the issue's quoted figures"
fi
ratio() { # a b
	awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-";
		else printf "%.2f", a / b }'
}
{
	echo "## Region RPC: \`ping\` f1 (fra) -> a1 (iad), two agents on loopback"
	echo
	echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, load $LOAD0 -> $LOAD1;"
	echo "$("$MERIDIAN" version 2>/dev/null | head -1) ($MERIDIAN);"
	echo "serial: $WARMUP warm-up then $N timed calls; concurrent: ${SECS} s per row."
	echo "Erlang anchor: $ANCHOR."
	echo
	echo "| path | median | p99 | calls/s, 1 caller | calls/s, 8 | calls/s, 64 | median / Erlang | calls/s (8) / Erlang |"
	echo "|---|---|---|---|---|---|---|---|"
	for m in http direct erlang; do
		[ $m = erlang ] && [ $ERL_OK -ne 1 ] && continue
		med=$(get "$m serial" median_us)
		p99=$(get "$m serial" p99_us)
		mean=$(get "$m serial" mean_us)
		c8=$(get "$m 8" calls_per_s)
		c64=$(get "$m 64" calls_per_s)
		one=$(awk -v m="$mean" 'BEGIN { if (m == "-" || m == "") print "-"; else printf "%.0f", 1e6 / m }')
		case $m in
		http) name="POST /v1/rpc to f1 (C client, keep-alive)" ;;
		direct) name="agent-to-agent only (region/rpc.h client -> a1)" ;;
		erlang) name="Erlang rpc:call, 2 nodes" ;;
		esac
		echo "| $name | ${med} us | ${p99} us | ${one} | ${c8} | ${c64} |" \
			"$(ratio "$med" "$EMED") | $(ratio "$c8" "$E8") |"
	done
	[ $ERL_OK -ne 1 ] && echo "| Erlang rpc:call (quoted by the issue, not measured) | 180 us | - | - | 23000 | - | 1.00 | 1.00 |"
	echo
	echo "f1's own client-side histogram over the serial http run" \
		"(meridian_rpc_duration_seconds{side=\"client\",method=\"ping\"}, bucket" \
		"resolution, upper bounds): $HQ."
	echo
	echo "Targets (issue 3): agent-to-agent faster than Erlang (median ratio < 1," \
		"calls/s ratio > 1); whole API path within 2x (median ratio <= 2, calls/s ratio >= 0.5)."
} >"$WORK/report.md"
cat "$WORK/report.md"
[ -n "$OUT" ] && cp "$WORK/report.md" "$OUT"
echo "(logs: $WORK)" >&2
