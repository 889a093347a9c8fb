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
