# scripts/lib/agents.sh - start, watch and stop local Meridian agents.
# Sourced by deploy/local-cluster.sh and tests/integration/*.sh.
#
# Every agent started here is remembered by PID and stopped by PID
# (agents_stop_all, installed as an EXIT trap by agents_init); nothing is
# ever killed by name.  Every wait is bounded.
#
# Needs: MERIDIAN (path of the binary), AGENTS_DIR (logs go there).

source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/ports.sh"

declare -A AGENT_PID AGENT_API AGENT_BIND

agents_init() {
	: "${MERIDIAN:?set MERIDIAN to the meridian binary}"
	: "${AGENTS_DIR:?set AGENTS_DIR}"
	mkdir -p "$AGENTS_DIR"
	trap agents_stop_all EXIT
}

# agents_free_port_base: prints a base port P such that P..P+199 look free
# on 127.0.0.1, below the ephemeral range (ports.sh).
agents_free_port_base() {
	ports_free_base 200
}

# agents_start NAME REGION PRIMARY BIND API [extra agent flags...]
agents_start() {
	local name=$1 region=$2 primary=$3 bind=$4 api=$5
	shift 5
	MY_REGION=$region PRIMARY_REGION=$primary \
		"$MERIDIAN" agent --node "$name" --bind "$bind" --api "$api" "$@" \
		>"$AGENTS_DIR/$name.log" 2>&1 &
	AGENT_PID[$name]=$!
	AGENT_API[$name]=$api
	AGENT_BIND[$name]=$bind
}

# agents_signal NAME SIGNAL: signal one agent by its PID.
agents_signal() {
	kill -"$2" "${AGENT_PID[$1]}" 2>/dev/null || true
}

# agents_us: the wall clock in microseconds.  ($SECONDS counts whole
# seconds: a deadline of SECONDS + N would come N-1 to N seconds later.)
agents_us() {
	echo "${EPOCHREALTIME//[.,]/}"
}

# agents_wait_exit NAME SECONDS: waits for the agent to exit and reaps it;
# its exit status goes to AGENT_EXIT.  Returns 1 (AGENT_EXIT=timeout) if it
# still runs after SECONDS.  Not in $( ): only the parent shell can reap.
agents_wait_exit() {
	local pid=${AGENT_PID[$1]} deadline=$(($(agents_us) + $2 * 1000000))
	AGENT_EXIT=timeout
	while kill -0 "$pid" 2>/dev/null; do
		[ "$(agents_us)" -ge $deadline ] && return 1
		sleep 0.05
	done
	AGENT_EXIT=0
	wait "$pid" || AGENT_EXIT=$?
	unset "AGENT_PID[$1]"
}

# agents_members NAME [filters...]: `meridian members --json` against NAME.
agents_members() {
	local name=$1
	shift
	"$MERIDIAN" members --api "${AGENT_API[$name]}" --json "$@"
}

# agents_status_of OBSERVER MEMBER: the status OBSERVER reports for MEMBER
# ("" if unknown or the observer does not answer).
agents_status_of() {
	agents_members "$1" 2>/dev/null | jq -r --arg n "$2" '.[] | select(.name == $n) | .status' 2>/dev/null || true
}

# agents_leader NAME: "node term self" as NAME's agent reports its
# region's leader ("" if it does not answer within 1 s).
agents_leader() {
	"$MERIDIAN" leader --api "${AGENT_API[$1]}" --json --timeout 1s 2>/dev/null |
		jq -r '"\(.node) \(.term) \(.self)"' 2>/dev/null || true
}

# agents_self_leader NAMES...: the first running one of NAMES that says it
# leads goes to LEADER, its term to TERM_NOW; returns 1 if none does.
agents_self_leader() {
	local n node term self
	for n in "$@"; do
		[ -n "${AGENT_PID[$n]:-}" ] || continue
		read -r node term self <<<"$(agents_leader "$n")"
		if [ "$self" = true ]; then
			LEADER=$n TERM_NOW=$term
			return 0
		fi
	done
	return 1
}

# agents_wait_until SECONDS CMD...: runs CMD every 0.1 s until it succeeds;
# returns 1 at the deadline.
agents_wait_until() {
	local deadline=$(($(agents_us) + $1 * 1000000))
	shift
	until "$@"; do
		[ "$(agents_us)" -ge $deadline ] && return 1
		sleep 0.1
	done
}

# agents_all_see STATUS MEMBER OBSERVERS...: true when every observer
# reports MEMBER with STATUS.
agents_all_see() {
	local status=$1 member=$2 o
	shift 2
	for o in "$@"; do
		[ "$(agents_status_of "$o" "$member")" = "$status" ] || return 1
	done
}

# agents_converged COUNT OBSERVERS...: every observer sees COUNT alive.
agents_converged() {
	local count=$1 o n
	shift
	for o in "$@"; do
		n=$(agents_members "$o" --status alive 2>/dev/null | jq length 2>/dev/null || echo 0)
		[ "$n" = "$count" ] || return 1
	done
}

agents_stop_all() {
	local name pid
	for name in "${!AGENT_PID[@]}"; do
		pid=${AGENT_PID[$name]}
		kill -TERM "$pid" 2>/dev/null || true
	done
	for name in "${!AGENT_PID[@]}"; do
		pid=${AGENT_PID[$name]}
		local i=0
		while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	AGENT_PID=()
}
