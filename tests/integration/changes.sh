#!/usr/bin/env bash
# tests/integration/changes.sh - the leader owns replication: one consumer
# of the logical slot, changes fanned out to every region.  Real agents
# and a real PostgreSQL started here.
#
# a1 a2 a3 in iad (the primary region, with the primary database; lease
# 2 s), f1 in fra, s1 in syd (no database at all).  `meridian watch
# --changes --json` runs on f1 and s1 for the whole test.  A writer
# inserts, updates and deletes rows (ROWS inserts, plus updates and
# deletes, one transaction each) while the leader is killed with kill -9
# and stopped with SIGTERM, KILLS times each (the killed one restarted
# under its name).  Then every change must have reached both regions: the
# events, replayed in the order received, must rebuild exactly the table
# the primary holds (every committed insert, update and delete, in commit
# order per row; a final transaction of several MiB travels in parts; a
# 1 MiB row arrives without its large value, named in "omitted"), and
# the Postgres log must show no storm of 55006
# ("replication slot is active for PID"): at most a few per handoff.
#
# Usage: changes.sh PATH/TO/meridian [stream|poll] [ROWS] [KILLS]
set -euo pipefail
export MERIDIAN=${1:?usage: changes.sh PATH/TO/meridian [stream|poll] [ROWS] [KILLS]}
MODE=${2:-stream}
ROWS=${3:-${CHANGES_ROWS:-20000}}
KILLS=${4:-${CHANGES_KILLS:-5}}
here=$(cd "$(dirname "$0")" && pwd)
export AGENTS_DIR=$(mktemp -d /tmp/meridian-changes.XXXXXX)
source "$here/lib.sh"
source "$here/../../scripts/lib/pg.sh"
chmod 755 "$AGENTS_DIR"   # the postgres user works in it too
writer_pid=
stop_others() {
	watch_stop
	if [ -n "$writer_pid" ]; then
		kill -TERM "$writer_pid" 2>/dev/null || true
		wait "$writer_pid" 2>/dev/null || true
		writer_pid=
	fi
}
trap 'stop_others; agents_stop_all; pg_cleanup_all' EXIT

base=$(agents_free_port_base)
export MERIDIAN_SECRET=$("$MERIDIAN" keygen)
primary_up pg
psql_p "create table items (id int primary key, v text)" >/dev/null

common=(--profile local --leave-timeout 2s)
iadflags=(--primary-database-url "$db" --lease 2s --lease-renew 300ms --lease-guard 500ms
	--replication-mode "$MODE")
declare -A PORT=([a1]=0 [a2]=10 [a3]=20 [f1]=30 [s1]=40)
declare -A REGION=([a1]=iad [a2]=iad [a3]=iad [f1]=fra [s1]=syd)
start() {
	local n=$1 p=$((base + ${PORT[$1]})) extra=()
	[ "${REGION[$n]}" = iad ] && extra=("${iadflags[@]}")
	[ "$n" = s1 ] && extra=(--on-change "cat >>$AGENTS_DIR/onchange-s1.jsonl")
	agents_start "$n" "${REGION[$n]}" iad "127.0.0.1:$p" "127.0.0.1:$((p + 1))" "${common[@]}" \
		--join "127.0.0.1:$base" --join "127.0.0.1:$((base + 10))" "${extra[@]}"
}
all=(a1 a2 a3 f1 s1)
iad=(a1 a2 a3)
for n in "${all[@]}"; do start "$n"; done
check "5 agents in 3 regions converge" agents_wait_until 30 agents_converged 5 "${all[@]}"

# current_leader: LEADER and TERM_NOW (the iad agent that says it leads).
current_leader() { agents_self_leader "${iad[@]}"; }
slot_ready() { [ "$(psql_p "select count(*) from pg_replication_slots where slot_name = 'meridian'")" = 1 ]; }
check "a leader is elected" agents_wait_until 20 current_leader
check "the leader created the slot ($MODE mode)" agents_wait_until 20 slot_ready

watch_start f1 s1
check "the watchers on f1 and s1 are subscribed" agents_wait_until 15 watch_subscribed f1 s1

# The writer: one transaction per statement; some updates and deletes
# touch rows inserted just before, some nothing at all.
python3 - "$ROWS" >"$AGENTS_DIR/writer.sql" <<'EOF'
import sys
n = int(sys.argv[1])
for i in range(1, n + 1):
    print("insert into items values (%d, 'v%d');" % (i, i))
    if i % 3 == 0:
        print("update items set v = v || '-u' where id = %d;" % (i - 1))
    if i % 5 == 0:
        print("delete from items where id = %d;" % (i - 2))
    if i % 7 == 0:
        print("update items set v = 'multi' where id between %d and %d;" % (i - 6, i - 4))
    if i % 200 == 0:
        print("select pg_sleep(0.05);")
# One large transaction at the end: every row, several MiB of changes, so it
# travels in parts.
print("update items set v = v || repeat('z', 100);")
EOF
"$(pg_bindir)/psql" -X -q -d "$db" -f "$AGENTS_DIR/writer.sql" >"$AGENTS_DIR/writer.log" 2>&1 &
writer_pid=$!

handoffs=0
for i in $(seq 1 "$KILLS"); do
	for sig in KILL TERM; do
		agents_wait_until 15 current_leader || { fail "round $i/$sig: no leader"; continue; }
		old=$LEADER
		agents_signal "$old" "$sig"
		agents_wait_exit "$old" 10 || true
		start "$old"
		handoffs=$((handoffs + 1))
		agents_wait_until 20 agents_converged 5 "${all[@]}" || fail "round $i/$sig: $old did not rejoin"
	done
done
wait "$writer_pid" || true
writer_pid=
check "the writer finished ($(grep -c . "$AGENTS_DIR/writer.log" || true) lines of output)" \
	test "$(psql_p 'select count(*) > 0 from items')" = t
psql_p "select id, v from items order by id" >"$AGENTS_DIR/table.txt"

# replay FILE: the table rebuilt from the change events, as "id|v" lines.
replay() {
	python3 - "$1" <<'EOF'
import json, sys
rows, seen, dups = {}, set(), 0
for line in open(sys.argv[1]):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if e.get("type", "change") != "change" or e.get("table") != "public.items":
        continue
    key = (e["lsn"], e["xid"], e["op"], json.dumps(e.get("new"), sort_keys=True), json.dumps(e.get("old"), sort_keys=True))
    if key in seen:
        dups += 1
    seen.add(key)
    if e["op"] == "insert" or e["op"] == "update":
        if e["op"] == "update" and e.get("old") and e["old"].get("id") not in (None, e["new"]["id"]):
            rows.pop(int(e["old"]["id"]), None)
        rows[int(e["new"]["id"])] = e["new"]["v"]
    elif e["op"] == "delete":
        rows.pop(int(e["old"]["id"]), None)
    elif e["op"] == "truncate":
        rows.clear()
for k in sorted(rows):
    print("%d|%s" % (k, rows[k]))
print("dups %d" % dups, file=sys.stderr)
EOF
}
converged() {
	local n
	for n in f1 s1; do
		replay "$AGENTS_DIR/watch-$n.jsonl" 2>/dev/null >"$AGENTS_DIR/replay-$n.txt"
		cmp -s "$AGENTS_DIR/replay-$n.txt" "$AGENTS_DIR/table.txt" || return 1
	done
}
check "fra and syd received every committed change, in commit order ($(wc -l <"$AGENTS_DIR/table.txt") rows, $handoffs handoffs)" \
	agents_wait_until 90 converged
for n in f1 s1; do
	d=$(replay "$AGENTS_DIR/watch-$n.jsonl" 2>&1 >/dev/null | awk '{print $2}')
	echo "# $n: $(grep -c '"type":"change"' "$AGENTS_DIR/watch-$n.jsonl") events, $d duplicates"
done
onchange_ok() {
	replay "$AGENTS_DIR/onchange-s1.jsonl" 2>/dev/null | cmp -s - "$AGENTS_DIR/table.txt"
}
check "s1's --on-change command received every change too" agents_wait_until 30 onchange_ok
# A row too large to travel whole (a 1 MiB value) still reaches every
# region: without that value, which is named in "omitted".
psql_p "create table big (id int primary key, blob text, note text);
	insert into big values (1, repeat('x', 1048576), 'small')" >/dev/null
big_seen() {
	python3 - "$AGENTS_DIR/watch-$1.jsonl" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if e.get("table") == "public.big" and e.get("op") == "insert":
        n = e.get("new", {})
        sys.exit(0 if n.get("id") == "1" and n.get("note") == "small" and "blob" not in n
                 and e.get("omitted") == ["blob"] else 1)
sys.exit(1)
EOF
}
big_everywhere() { big_seen f1 && big_seen s1; }
check "a 1 MiB row reaches fra and syd, its large value named in \"omitted\"" \
	agents_wait_until 20 big_everywhere
busy=$(grep -c "is active for PID" "$AGENTS_DIR/pg/log" 2>/dev/null || true)
check "no 55006 storm in the Postgres log ($busy over $handoffs handoffs)" \
	test "${busy:-0}" -le $((handoffs * 5))

echo "# $passed passed, $failed failed"
[ "$failed" = 0 ]
