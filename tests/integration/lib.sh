# tests/integration/lib.sh - the prologue the integration scripts share.
# Sourced by tests/integration/*.sh after they set MERIDIAN and AGENTS_DIR.
#
# Brings in scripts/lib/agents.sh (whose agents_init installs the EXIT
# trap that stops every agent by PID), and the TAP-like helpers: ok and
# fail print one line and count it in `passed` / `failed`; a failure also
# prints the tail of every agent log, so a CI run shows why.

source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../../scripts/lib/agents.sh"
agents_init

passed=0 failed=0
ok() { echo "ok - $*"; passed=$((passed + 1)); }
fail() {
	echo "not ok - $*"
	failed=$((failed + 1))
	for f in "$AGENTS_DIR"/*.log; do echo "--- $f"; tail -n 20 "$f"; done
}
# check WHAT COMMAND...: ok WHAT if COMMAND succeeds, else fail WHAT.
check() { local what=$1; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }

# --- change-stream watchers and metrics (changes*.sh) ---
declare -A WATCH_PID
# watch_start NODE...: `meridian watch --changes --json` against each
# NODE, to $AGENTS_DIR/watch-NODE.jsonl; stopped by PID with watch_stop.
watch_start() {
	local n
	for n in "$@"; do
		"$MERIDIAN" watch --changes --json --api "${AGENT_API[$n]}" \
			>"$AGENTS_DIR/watch-$n.jsonl" 2>"$AGENTS_DIR/watch-$n.err" &
		WATCH_PID[$n]=$!
	done
}
watch_stop() {
	local n
	for n in "${!WATCH_PID[@]}"; do
		kill -TERM "${WATCH_PID[$n]}" 2>/dev/null || true
		wait "${WATCH_PID[$n]}" 2>/dev/null || true
	done
	WATCH_PID=()
}
# agents_metric NODE NAME: the value of NODE's /metrics sample NAME ("").
agents_metric() {
	curl -s --max-time 2 "http://${AGENT_API[$1]}/metrics" | awk -v m="$2" '$1 == m {print $2; exit}'
}
# watch_subscribed NODE...: every NODE counts a subscriber.  The change
# stream has no greeting: a writer must wait for this, or its first
# changes could reach an agent before the watcher does.
watch_subscribed() {
	local n v
	for n in "$@"; do
		v=$(agents_metric "$n" meridian_event_subscribers)
		[ "${v:-0}" -ge 1 ] 2>/dev/null || return 1
	done
}

# primary_up DIR: a PostgreSQL primary in $AGENTS_DIR/DIR on port
# base + 100 (base from agents_free_port_base first); sets pport, db (its
# URL) and psql_p SQL (runs SQL on it, unaligned, tuples only).  Needs
# scripts/lib/pg.sh sourced.
primary_up() {
	pport=$((base + 100))
	pg_init "$AGENTS_DIR/$1" >/dev/null
	pg_start "$AGENTS_DIR/$1" "$pport" >/dev/null
	db=$(pg_url "$pport")
}
psql_p() { pg_psql "$pport" -Atc "$1"; }
