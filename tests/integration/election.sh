#!/usr/bin/env bash
# tests/integration/election.sh - leader election with the postgres
# backend, real agents and a real PostgreSQL started here.
#
# 3 agents in iad (the primary region: a1 a2 a3) and 2 elsewhere (f1 in
# fra, s1 in syd), every one given the primary database; lease 2 s, renew
# 300 ms, guard 500 ms.  A separate observer (leader_observer.py) polls
# every agent's claim and the lease row the whole time and fails on any
# overlap of two leaderships, a claim under a term older than the
# database's valid one, or terms that do not strictly increase.  Under it:
#   - a leader emerges and every region learns it, with its term;
#   - kill -9 of the leader, 10 times (each restarted under its name):
#     another iad node leads within lease + 1 s (+ slack), and the killed
#     leader's --on-leader process dies with it;
#   - SIGTERM of the leader, 5 times: another leads within 1 s;
#   - SIGSTOP of the leader: another leads within lease + 1 s; SIGCONT:
#     it says it is not leader and never claims its old term again;
#   - the database stopped: nobody leads within lease; started again: one
#     leads;
#   - every iad node gone: f1 and s1 never lead.
#
# Usage: election.sh PATH/TO/meridian
set -euo pipefail
export MERIDIAN=${1:?usage: election.sh PATH/TO/meridian}
here=$(cd "$(dirname "$0")" && pwd)
export AGENTS_DIR=$(mktemp -d /tmp/meridian-election.XXXXXX)
source "$here/lib.sh"
source "$here/../../scripts/lib/pg.sh"
chmod 755 "$AGENTS_DIR"   # the postgres user works in it too

base=$(agents_free_port_base)
export MERIDIAN_SECRET=$("$MERIDIAN" keygen)
pgdir=$AGENTS_DIR/pg
pgport=$((base + 100))
observer_pid=
stop_observer() {
	if [ -n "$observer_pid" ]; then
		touch "$AGENTS_DIR/observer.stop"
		local i=0
		while kill -0 "$observer_pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
		kill -TERM "$observer_pid" 2>/dev/null || true
		wait "$observer_pid" 2>/dev/null || observer_rc=$?
		observer_pid=
	fi
}
trap 'stop_observer; agents_stop_all; pg_cleanup_all' EXIT

pg_init "$pgdir"
pg_start "$pgdir" "$pgport"
db=$(pg_url "$pgport")
psql=$(pg_bindir)/psql
[ -x "$psql" ] || psql=psql

LEASE_S=2
hooklog=$AGENTS_DIR/hooks.log
hook='echo "start $MERIDIAN_NODE $MERIDIAN_TERM $$" >>'"$hooklog"'; trap "echo stop $MERIDIAN_NODE $MERIDIAN_TERM >>'"$hooklog"'; exit 0" TERM; while :; do sleep 0.1; done'
common=(--profile local --leave-timeout 2s --primary-database-url "$db" --lease ${LEASE_S}s
	--lease-renew 300ms --lease-guard 500ms)
seed="127.0.0.1:$base"
declare -A PORT=([a1]=0 [a2]=10 [a3]=20 [f1]=30 [s1]=40)
declare -A REGION=([a1]=iad [a2]=iad [a3]=iad [f1]=fra [s1]=syd)
start() {
	local n=$1 p=$((base + ${PORT[$1]}))
	agents_start "$n" "${REGION[$n]}" iad "127.0.0.1:$p" "127.0.0.1:$((p + 1))" "${common[@]}" \
		--join "$seed" --join "127.0.0.1:$((base + 10))" --on-leader "$hook"
}
all=(a1 a2 a3 f1 s1)
iad=(a1 a2 a3)
for n in "${all[@]}"; do start "$n"; done
check "5 agents in 3 regions converge" agents_wait_until 30 agents_converged 5 "${all[@]}"

# all_agree NAMES...: every one names the same leader and term (not null).
all_agree() {
	local first="" n l
	for n in "$@"; do
		l=$(agents_leader "$n"); l=${l% *}
		case $l in null*|"") return 1 ;; esac
		[ -z "$first" ] && first=$l
		[ "$l" = "$first" ] || return 1
	done
	AGREED=$first
}
check "every region knows the same leader and term" agents_wait_until 15 all_agree "${all[@]}"
leader=${AGREED% *}
check "the leader ($leader) is in iad" bash -c '[[ " a1 a2 a3 " == *" $0 "* ]]' "$leader"

observer_args=(--db-url "$db" --psql "$psql" --out "$AGENTS_DIR/observer.json"
	--stop-file "$AGENTS_DIR/observer.stop" --max-seconds 900)
for n in "${all[@]}"; do observer_args+=(--agent "$n=${AGENT_API[$n]}"); done
python3 "$here/leader_observer.py" "${observer_args[@]}" >"$AGENTS_DIR/observer.log" 2>&1 &
observer_pid=$!
observer_rc=0

# current_leader: the leader the live iad agents agree on -> LEADER, TERM.
current_leader() {
	local live=() n
	for n in "${iad[@]}" f1 s1; do [ -n "${AGENT_PID[$n]:-}" ] && live+=("$n"); done
	all_agree "${live[@]}" || return 1
	LEADER=${AGREED% *}
	TERM_NOW=${AGREED#* }
}
# new_leader_after NAME TERM: some live agent (not NAME) leads above TERM.
new_leader_after() {
	local n node term self
	for n in "${iad[@]}"; do
		{ [ "$n" = "$1" ] || [ -z "${AGENT_PID[$n]:-}" ]; } && continue
		read -r node term self <<<"$(agents_leader "$n")" || continue
		if [ "$self" = true ] && [ "$term" -gt "$2" ]; then
			NEW=$n NEW_TERM=$term
			return 0
		fi
	done
	return 1
}
ms() { date +%s%3N; }
# takeover_ms NODE T0 POLLED: how long after T0 (ms) NODE's leadership
# began, by its own "since" (same host, same clock): what polling adds
# (a CLI and jq per agent per round, slow on a loaded machine) is not the
# agents' doing.  POLLED, the time the poll saw it, when "since" is
# missing.
takeover_ms() {
	local s
	s=$("$MERIDIAN" leader --api "${AGENT_API[$1]}" --json --timeout 1s 2>/dev/null |
		jq -r '.since // empty' 2>/dev/null)
	if [ -n "$s" ] && s=$(date -d "$s" +%s%3N 2>/dev/null); then
		echo $((s - $2))
	else
		echo "$3"
	fi
}
# hook_started NODE TERM: the --on-leader of that leadership has written
# its start line; its pid goes to HOOKPID.
hook_started() {
	hookpid=$(awk -v n="$1" -v t="$2" '$1 == "start" && $2 == n && $3 == t {print $4}' \
		"$hooklog" | tail -n 1)
	[ -n "$hookpid" ]
}

# --- kill -9, ten times ---
kill_ok=0 kill_max=0 hooks_dead=0
for i in $(seq 1 10); do
	agents_wait_until 15 current_leader || { fail "kill -9 round $i: no agreed leader"; continue; }
	old=$LEADER old_term=$TERM_NOW
	# The hook starts with the leadership but writes its line a moment
	# later (more on a loaded machine): wait for it before the kill.
	agents_wait_until 5 hook_started "$old" "$old_term" || true
	t0=$(ms)
	agents_signal "$old" KILL
	agents_wait_exit "$old" 5 || true
	if agents_wait_until $((LEASE_S + 6)) new_leader_after "$old" "$old_term"; then
		d=$(takeover_ms "$NEW" "$t0" $(($(ms) - t0)))
		[ $d -gt $kill_max ] && kill_max=$d
		[ $d -le $(((LEASE_S + 1) * 1000 + 500)) ] && kill_ok=$((kill_ok + 1))
	fi
	if [ -n "$hookpid" ] && agents_wait_until 3 bash -c '! kill -0 "$0" 2>/dev/null' "$hookpid"; then
		hooks_dead=$((hooks_dead + 1))
	fi
	start "$old"
	agents_wait_until 20 agents_converged 5 "${all[@]}" || fail "kill -9 round $i: $old did not rejoin"
done
check "kill -9 x10: a new leader within lease + 1.5 s each time ($kill_ok/10, worst ${kill_max} ms)" \
	test "$kill_ok" = 10
check "kill -9 x10: the --on-leader process died with its agent ($hooks_dead/10)" test "$hooks_dead" = 10

# --- SIGTERM, five times ---
term_ok=0 term_max=0 exits=""
for i in $(seq 1 5); do
	agents_wait_until 15 current_leader || { fail "SIGTERM round $i: no agreed leader"; continue; }
	old=$LEADER old_term=$TERM_NOW
	t0=$(ms)
	agents_signal "$old" TERM
	if agents_wait_until 5 new_leader_after "$old" "$old_term"; then
		d=$(takeover_ms "$NEW" "$t0" $(($(ms) - t0)))
		[ $d -gt $term_max ] && term_max=$d
		[ $d -le 1000 ] && term_ok=$((term_ok + 1))
	fi
	agents_wait_exit "$old" 10 || true
	exits+="$AGENT_EXIT "
	start "$old"
	agents_wait_until 20 agents_converged 5 "${all[@]}" || fail "SIGTERM round $i: $old did not rejoin"
done
check "SIGTERM x5: a new leader within 1 s each time ($term_ok/5, worst ${term_max} ms)" \
	test "$term_ok" = 5
check "SIGTERM x5: the leaders exited 0 ($exits)" test "$exits" = "0 0 0 0 0 "
check "SIGTERM: the stepping-down leader's --on-leader got SIGTERM" \
	grep -q "^stop $old $old_term" "$hooklog"

# --- a hung leader ---
agents_wait_until 15 current_leader || fail "SIGSTOP: no agreed leader"
old=$LEADER old_term=$TERM_NOW
t0=$(ms)
agents_signal "$old" STOP
if agents_wait_until $((LEASE_S + 6)) new_leader_after "$old" "$old_term"; then
	d=$(takeover_ms "$NEW" "$t0" $(($(ms) - t0)))
	check "SIGSTOP: $NEW leads (term $NEW_TERM) within lease + 1 s (${d} ms)" \
		test $d -le $(((LEASE_S + 1) * 1000))
else
	fail "SIGSTOP: nobody took over from $old"
fi
agents_signal "$old" CONT
# Its first answer (it may first work through seconds of overdue timers).
first_answer() { l=$(agents_leader "$old"); [ -n "$l" ]; }
agents_wait_until 5 first_answer || true
check "SIGCONT: $old's first answer says it is not leader ($l)" bash -c '[[ "$0" == *" false" ]]' "$l"
learnt() {
	l=$(agents_leader "$old")
	bash -c 'set -- $0; [ "$1" != '"$old"' ] && [ "$2" -gt '"$old_term"' ] && [ "$3" = false ]' "$l"
}
agents_wait_until 10 learnt || true
check "SIGCONT: $old learnt the new leader and term ($l)" learnt

# --- the database goes away and comes back ---
agents_wait_until 15 current_leader || fail "database: no agreed leader before the stop"
pg_stop "$pgdir"
t_stop=$(ms)
nobody_leads() {
	local n
	for n in "${iad[@]}"; do
		[ "$(agents_leader "$n" | awk '{print $3}')" = true ] && return 1
	done
	return 0
}
check "database stopped: the leader steps down within the lease" \
	agents_wait_until $((LEASE_S + 1)) nobody_leads
held=true
for i in $(seq 1 20); do nobody_leads || held=false; sleep 0.1; done
check "database stopped: nobody leads while it is down" test "$held" = true
pg_start "$pgdir" "$pgport"
someone_leads() { ! nobody_leads; }
check "database back: one leads again" agents_wait_until 20 someone_leads

# --- the observer's verdict ---
sleep 1
stop_observer
check "observer: no overlap, no stale claim, terms strictly increase ($(jq -c '.violations[:3]' "$AGENTS_DIR/observer.json"))" \
	test "$observer_rc" = 0
leaderships=$(jq .leaderships "$AGENTS_DIR/observer.json")
check "observer saw at least 16 leaderships ($leaderships), rounds $(jq .rounds "$AGENTS_DIR/observer.json")" \
	test "$leaderships" -ge 16
check "observer read the lease row ($(jq .db_samples "$AGENTS_DIR/observer.json") samples)" \
	test "$(jq .db_samples "$AGENTS_DIR/observer.json")" -gt 10

# --- only the primary region leads ---
for n in "${iad[@]}"; do agents_signal "$n" TERM; done
for n in "${iad[@]}"; do agents_wait_exit "$n" 10 || true; done
sleep $((LEASE_S + 1))
outside_never() {
	local n l
	for n in f1 s1; do
		l=$(agents_leader "$n")
		case $l in "null null false") ;; *) return 1 ;; esac
	done
}
# They learn that the last leader left (gossip, or failure detection if a
# leave was lost), then must stay so.
agents_wait_until 15 outside_never || true
still=true
for i in $(seq 1 10); do outside_never || still=false; sleep 0.2; done
check "no iad node left: f1 and s1 know no leader and do not lead" test "$still" = true

echo "# $passed passed, $failed failed"
[ "$failed" = 0 ]
