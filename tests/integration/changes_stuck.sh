#!/usr/bin/env bash
# tests/integration/changes_stuck.sh - a member that gossip calls alive
# but that acknowledges no change (here: SIGSTOPped, with probes so rare
# that nobody declares it failed meanwhile) must not hold back the slot:
# after --changes-stuck-timeout the leader confirms without it, the other
# members go on receiving, and when it wakes up it is told how many
# transactions it missed (a change event with op "gap") and receives the
# new ones; a member that left and comes back is told the same way.
#
# a1 in iad (the primary region, primary database, the leader), f1 in
# fra, s1 in syd; `meridian watch --changes --json` on f1 and s1.
#
# Usage: changes_stuck.sh PATH/TO/meridian
set -euo pipefail
export MERIDIAN=${1:?usage: changes_stuck.sh PATH/TO/meridian}
here=$(cd "$(dirname "$0")" && pwd)
export AGENTS_DIR=$(mktemp -d /tmp/meridian-stuck.XXXXXX)
source "$here/lib.sh"
source "$here/../../scripts/lib/pg.sh"
chmod 755 "$AGENTS_DIR"   # the postgres user works in it too
stopped=
stop_others() {
	[ -n "$stopped" ] && agents_signal "$stopped" CONT
	watch_stop
}
trap 'stop_others; agents_stop_all; pg_cleanup_all' EXIT

base=$(agents_free_port_base)
export MERIDIAN_SECRET=$("$MERIDIAN" keygen)
primary_up pg
psql_p "create table items (id int primary key, v text)" >/dev/null

# Probes every 20 s: a stopped member stays alive (or suspect) to gossip
# for the whole test, which is the case under test.
common=(--profile local --probe-interval 20s --changes-stuck-timeout 2s --leave-timeout 2s)
agents_start a1 iad iad "127.0.0.1:$base" "127.0.0.1:$((base + 1))" "${common[@]}" \
	--primary-database-url "$db" --lease 2s --lease-renew 300ms --lease-guard 500ms
agents_start f1 fra iad "127.0.0.1:$((base + 10))" "127.0.0.1:$((base + 11))" "${common[@]}" \
	--join "127.0.0.1:$base"
agents_start s1 syd iad "127.0.0.1:$((base + 20))" "127.0.0.1:$((base + 21))" "${common[@]}" \
	--join "127.0.0.1:$base"
all=(a1 f1 s1)
check "3 agents in 3 regions converge" agents_wait_until 30 agents_converged 3 "${all[@]}"
leads() { [ "$(agents_leader a1 | awk '{print $3}')" = true ]; }
check "a1 leads" agents_wait_until 20 leads
slot_ready() { [ "$(psql_p "select count(*) from pg_replication_slots where slot_name = 'meridian' and active")" = 1 ]; }
check "a1 streams the slot" agents_wait_until 20 slot_ready

watch_start f1 s1
check "the watchers are subscribed" agents_wait_until 15 watch_subscribed f1 s1

# insert FROM TO: one transaction per row.
insert() {
	local i sql=""
	for ((i = $1; i <= $2; i++)); do sql+="insert into items values ($i, 'v$i');"; done
	pg_psql "$pport" -q -c "$sql" >/dev/null
}
# has NODE ID: NODE's watcher saw the insert of row ID.
has() {
	jq -n -e --argjson id "$2" \
		'any(inputs; .type == "change" and .op == "insert" and .new.id == ($id | tostring))' \
		"$AGENTS_DIR/watch-$1.jsonl" >/dev/null 2>&1
}
insert 1 20
both_20() { has f1 20 && has s1 20; }
check "rows 1-20 reach fra and syd" agents_wait_until 15 both_20

# f1 stops answering (gossip still has it alive: nobody probes it in time).
# The batch with rows 21-120 is sent to it and hangs; rows 121-220 come
# after it was found stuck, and the others' acknowledgements trim them.
agents_signal f1 STOP
stopped=f1
insert 21 120
check "s1 receives rows 21-120 while f1 is stuck" agents_wait_until 15 has s1 120
found_stuck() { [ "$(agents_metric a1 meridian_changes_members_stuck_total)" = 1 ]; }
check "a1 finds f1 stuck after the 2 s timeout" agents_wait_until 15 found_stuck
insert 121 220
lsn=$(psql_p "select pg_current_wal_lsn()")
check "s1 receives rows 121-220 meanwhile" agents_wait_until 15 has s1 220
confirmed_past() {
	[ "$(psql_p "select confirmed_flush_lsn >= '$lsn' from pg_replication_slots where slot_name = 'meridian'")" = t ]
}
check "the slot is confirmed past them without f1" agents_wait_until 15 confirmed_past
status_f1=$(agents_status_of a1 f1)
check "gossip still has f1 live meanwhile ($status_f1)" \
	bash -c '[ "$0" = alive ] || [ "$0" = suspect ]' "$status_f1"

# f1 wakes up: told of the gap, then it receives the new rows.
agents_signal f1 CONT
stopped=
insert 221 230
check "f1 receives the rows written after it woke up" agents_wait_until 25 has f1 230
missed=$(agents_metric f1 meridian_changes_missed_total)
gap=$(jq -c 'select(.type == "change" and .op == "gap")' "$AGENTS_DIR/watch-f1.jsonl" | head -n 1)
got=$(jq -r 'select(.type == "change" and .op == "insert") | .new.id | tonumber | select(. > 120 and . <= 220)' \
	"$AGENTS_DIR/watch-f1.jsonl" | sort -un | wc -l)
check "f1 was told of what it missed ($gap, $missed counted; $got of rows 121-220 received)" \
	bash -c '[ -n "$0" ] && [ "${1%.*}" -ge 1 ] && [ "$(jq .skipped <<<"$0")" = "${1%.*}" ] &&
		 [ "$2" = 0 ]' "$gap" "${missed:-0}" "$got"
counts_again() { grep -q "member f1 answers again: it counts again" "$AGENTS_DIR/a1.log"; }
check "a1 counts f1 again once it answers" agents_wait_until 10 counts_again
s1_ids=$(jq -r 'select(.type == "change" and .op == "insert") | .new.id' \
	"$AGENTS_DIR/watch-s1.jsonl" | sort -un | tr '\n' ' ')
check "s1 received every row, and no gap" bash -c \
	'[ "$0" = "$(seq -s " " 1 230) " ] && ! grep -q "\"op\":\"gap\"" "$1"' \
	"$s1_ids" "$AGENTS_DIR/watch-s1.jsonl"


# s1 leaves and comes back under its name: what was written meanwhile is
# trimmed without it, and the new process is told so.
agents_signal s1 TERM
agents_wait_exit s1 10 || true
insert 231 240
check "f1 receives rows 231-240 while s1 is gone" agents_wait_until 15 has f1 240
agents_start s1 syd iad "127.0.0.1:$((base + 20))" "127.0.0.1:$((base + 21))" "${common[@]}" \
	--join "127.0.0.1:$base"
check "s1 rejoins" agents_wait_until 30 agents_converged 3 "${all[@]}"
insert 241 250
told_s1() { [ "$(agents_metric s1 meridian_changes_missed_total)" = 1 ]; }
check "s1, back, is told of the one transaction it missed" agents_wait_until 15 told_s1

echo "# $passed passed, $failed failed"
[ "$failed" = 0 ]
