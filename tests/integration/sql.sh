#!/usr/bin/env bash
# tests/integration/sql.sh - reads on the local replica, writes forwarded
# to the primary, read-your-writes by LSN; real agents, and a real
# PostgreSQL topology started here: a primary and two streaming replicas
# (pg_basebackup -R) on 127.0.0.1.
#
#   a1, a2  iad (primary region)  DATABASE_URL = PRIMARY_DATABASE_URL = primary
#   f1      fra                   DATABASE_URL = replica 1
#   s1      syd                   DATABASE_URL = replica 2
#
# Checks: writes from every region land on the primary, with an LSN;
# `sql --write --wait` then a local read sees the write, 200 times (from fra
# and syd); a write sent as a read fails with Postgres's read-only error
# (25006); parameters with quotes, NULL, unicode and a 1 MB value
# round-trip (forwarded write, read on a replica); the replica stopped:
# reads fail fast (database_unavailable), writes still work, reads recover
# when it returns; the primary stopped: writes fail with a clear error and
# recover; a wait that cannot be met ends in replica_lag_timeout.
#
# Usage: sql.sh PATH/TO/meridian
set -euo pipefail
export MERIDIAN=${1:?usage: sql.sh PATH/TO/meridian}
here=$(cd "$(dirname "$0")" && pwd)
export AGENTS_DIR=$(mktemp -d /tmp/meridian-sql.XXXXXX)
source "$here/lib.sh"
source "$here/../../scripts/lib/pg.sh"
chmod 755 "$AGENTS_DIR"   # the postgres user works in it too
trap 'agents_stop_all; pg_cleanup_all' EXIT

base=$(agents_free_port_base)
export MERIDIAN_SECRET=$("$MERIDIAN" keygen)
primary_up primary
r1port=$((base + 101)) r2port=$((base + 102))
pg_replica_init "$pport" "$AGENTS_DIR/r1" >/dev/null
pg_start "$AGENTS_DIR/r1" "$r1port" >/dev/null
pg_replica_init "$pport" "$AGENTS_DIR/r2" >/dev/null
pg_start "$AGENTS_DIR/r2" "$r2port" >/dev/null
primary=$db r1=$(pg_url "$r1port") r2=$(pg_url "$r2port")
# pg_start waits for pg_isready, not for the standby's WAL receiver.
streaming() { [ "$(psql_p "select count(*) from pg_stat_replication where state = 'streaming'")" = 2 ]; }
check "the replicas stream from the primary" agents_wait_until 30 streaming

common=(--profile local --leave-timeout 2s --replica-lag-timeout 3s)
seed="127.0.0.1:$base"
agents_start a1 iad iad "127.0.0.1:$base" "127.0.0.1:$((base + 1))" "${common[@]}" \
	--primary-database-url "$primary" --database-url "$primary"
agents_start a2 iad iad "127.0.0.1:$((base + 10))" "127.0.0.1:$((base + 11))" "${common[@]}" \
	--join "$seed" --primary-database-url "$primary"
agents_start f1 fra iad "127.0.0.1:$((base + 20))" "127.0.0.1:$((base + 21))" "${common[@]}" \
	--join "$seed" --database-url "$r1"
agents_start s1 syd iad "127.0.0.1:$((base + 30))" "127.0.0.1:$((base + 31))" "${common[@]}" \
	--join "$seed" --database-url "$r2"
all=(a1 a2 f1 s1)
check "4 agents in 3 regions converge" agents_wait_until 20 agents_converged 4 "${all[@]}"

# sql_from NAME ARGS...: `meridian sql` through NAME; SQL_OUT, SQL_ERR, SQL_RC.
sql_from() {
	local name=$1
	shift
	SQL_RC=0
	SQL_OUT=$(timeout 60 "$MERIDIAN" sql --api "${AGENT_API[$name]}" "$@" 2>"$AGENTS_DIR/sql.err") ||
		SQL_RC=$?
	SQL_ERR=$(cat "$AGENTS_DIR/sql.err")
}

sql_from a1 --write 'create table accounts (id serial primary key, name text, region text)'
check "create table on the primary from a1 (rc $SQL_RC: $SQL_ERR)" test "$SQL_RC" = 0

# --- writes from every region land on the primary ---
for n in a1 f1 s1; do
	sql_from "$n" --write --json 'insert into accounts (name, region) values ($1, $2) returning id' \
		"from-$n" "$n"
	check "write from $n: ok, with an LSN, run on a1 or a2 (rc $SQL_RC, $SQL_OUT $SQL_ERR)" \
		bash -c '[ "$0" = 0 ] && jq -e "(.lsn | test(\"^[0-9A-F]+/[0-9A-F]+$\")) and (.node == \"a1\" or .node == \"a2\") and .rows_affected == 1 and (.rows[0][0] | type == \"number\")" >/dev/null <<<"$1"' \
		"$SQL_RC" "$SQL_OUT"
done
check "the primary holds the three writes" \
	test "$(psql_p "select string_agg(name, ',' order by id) from accounts")" = "from-a1,from-f1,from-s1"

# --- read-your-writes, 200 times ---
sql_from f1 --write --wait 'insert into accounts (name, region) values ($1, $2) returning id' ryw fra
id=$(awk 'NR == 2 {print $1}' <<<"$SQL_OUT")
check "a row to update (id $id)" test -n "$id"
misses=0 errors=0
for i in $(seq 1 100); do
	for n in f1 s1; do
		v="v$i-$n"
		sql_from "$n" --write --wait 'update accounts set name = $1 where id = $2' "$v" "$id"
		[ "$SQL_RC" = 0 ] || { errors=$((errors + 1)); continue; }
		sql_from "$n" --json 'select name from accounts where id = $1' "$id"
		[ "$(jq -r '.rows[0][0]' <<<"$SQL_OUT" 2>/dev/null)" = "$v" ] || misses=$((misses + 1))
	done
done
check "write --wait then a local read sees it: 200 times, from fra and syd ($misses misses, $errors errors)" \
	test "$misses:$errors" = 0:0

# --- a write sent as a read ---
sql_from f1 'insert into accounts (name) values ($1)' nope
check "a write sent as a read: Postgres's read-only error, exit 1 ($SQL_RC, $SQL_ERR)" bash -c \
	'[ "$0" = 1 ] && grep -q "sql_error (SQLSTATE 25006)" <<<"$1"' "$SQL_RC" "$SQL_ERR"

# --- parameters: quotes, NULL, unicode, 1 MB ---
sql_from a1 --write 'create table blobs (id serial primary key, v text)'
python3 - "$AGENTS_DIR/params.json" <<'EOF'
import json, sys
big = ("0123456789abcdef" * 62500)  # 1,000,000 bytes
vals = ["O'Reilly \"quoted\" \\back\\slash; drop table x; --", None, "héllo ☃ 日本語 🚀", big]
json.dump({"sql": "insert into blobs (v) values ($1), ($2), ($3), ($4)", "params": vals,
           "write": True, "wait": True, "timeout_ms": 20000}, open(sys.argv[1], "w"))
json.dump(vals, open(sys.argv[1] + ".want", "w"))
EOF
out=$(curl -s --max-time 60 "http://${AGENT_API[f1]}/v1/sql" --data-binary "@$AGENTS_DIR/params.json")
check "a forwarded write with quotes, NULL, unicode and 1 MB ($(head -c 200 <<<"$out"))" \
	jq -e '.rows_affected == 4 and (.lsn | type == "string")' <<<"$out"
curl -s --max-time 60 "http://${AGENT_API[f1]}/v1/sql" \
	-d '{"sql":"select v from blobs order by id"}' >"$AGENTS_DIR/params.got"
check "they read back the same from fra's replica" python3 -c '
import json, sys
got = [r[0] for r in json.load(open(sys.argv[1]))["rows"]]
want = json.load(open(sys.argv[2]))
sys.exit(0 if got == want else 1)' "$AGENTS_DIR/params.got" "$AGENTS_DIR/params.json.want"
check "and the primary holds them byte for byte" test \
	"$(psql_p "select md5(string_agg(coalesce(v, '<null>'), '|' order by id)) from blobs")" = \
	"$(python3 -c 'import json,hashlib,sys; v=json.load(open(sys.argv[1])); print(hashlib.md5("|".join("<null>" if x is None else x for x in v).encode()).hexdigest())' "$AGENTS_DIR/params.json.want")"

# --- results past the bound ---
# 4 MiB of JSON fit; 64 MiB are refused after at most 8 MiB read (the
# connection dropped), and the next read is served at once.
sql_from f1 "select repeat('x', 1000000) from generate_series(1, 64)"
check "a 64 MB answer: result_too_large, exit 1 ($SQL_RC, $SQL_ERR)" bash -c \
	'[ "$0" = 1 ] && grep -q result_too_large <<<"$1" && grep -q "not read further" <<<"$1"' \
	"$SQL_RC" "$SQL_ERR"
sql_from f1 "select count(*) from generate_series(1, 3)"
check "the next read is served ($SQL_RC, $SQL_OUT $SQL_ERR)" test "$SQL_RC" = 0
sql_from f1 "select repeat('x', 1000000) from generate_series(1, 3)"
check "a 3 MB answer passes ($SQL_RC, $(head -c 80 <<<"$SQL_OUT") $SQL_ERR)" test "$SQL_RC" = 0

# --- the replica goes away ---
# "Fast": well under the 5 s a hung read would wait for its timeout (which
# would also say "timeout", not database_unavailable).
pg_stop "$AGENTS_DIR/r1"
t0=$(date +%s%3N)
sql_from f1 'select count(*) from accounts'
dt=$(($(date +%s%3N) - t0))
check "replica stopped: a read fails fast with database_unavailable, exit 3 ($SQL_RC, ${dt} ms, $SQL_ERR)" \
	bash -c '[ "$0" = 3 ] && [ "$1" -lt 4000 ] && grep -q database_unavailable <<<"$2"' "$SQL_RC" "$dt" "$SQL_ERR"
sql_from f1 --write 'insert into accounts (name) values ($1)' while-r1-down
check "replica stopped: a write from fra still works ($SQL_RC $SQL_ERR)" test "$SQL_RC" = 0
t0=$(date +%s%3N)
sql_from f1 --write --wait 'insert into accounts (name) values ($1)' wait-r1-down
dt=$(($(date +%s%3N) - t0))
check "replica stopped: write --wait says the replica is unavailable, fast ($SQL_RC, ${dt} ms, $SQL_ERR)" \
	bash -c '[ "$0" = 3 ] && [ "$1" -lt 4000 ] && grep -q database_unavailable <<<"$2"' "$SQL_RC" "$dt" "$SQL_ERR"
out=$(curl -s --max-time 30 "http://${AGENT_API[f1]}/v1/sql" \
	-d '{"sql":"insert into accounts (name) values ($1) returning id","params":["c"],"write":true,"wait":true}')
check "replica stopped: the failed wait still says the write committed, with its LSN and rows ($out)" \
	jq -e '.error.code == "database_unavailable" and .committed == true and (.lsn | type == "string") and (.rows[0][0] | type == "number")' <<<"$out"
pg_start "$AGENTS_DIR/r1" "$r1port" >/dev/null
reads_ok() { sql_from f1 'select count(*) from accounts'; [ "$SQL_RC" = 0 ]; }
check "replica back: reads recover" agents_wait_until 20 reads_ok

# --- the primary goes away ---
pg_stop "$AGENTS_DIR/primary"
sql_from a1 --write 'insert into accounts (name) values ($1)' p-down
check "primary stopped: a write from iad fails with database_unavailable ($SQL_RC, $SQL_ERR)" \
	bash -c '[ "$0" = 3 ] && grep -q database_unavailable <<<"$1"' "$SQL_RC" "$SQL_ERR"
sql_from s1 --write 'insert into accounts (name) values ($1)' p-down
check "primary stopped: a forwarded write from syd fails clearly ($SQL_RC, $SQL_ERR)" \
	bash -c '[ "$0" = 3 ] && grep -q "database_unavailable.*" <<<"$1"' "$SQL_RC" "$SQL_ERR"
pg_start "$AGENTS_DIR/primary" "$pport" >/dev/null
writes_ok() { sql_from s1 --write 'insert into accounts (name) values ($1)' p-back; [ "$SQL_RC" = 0 ]; }
check "primary back: writes recover" agents_wait_until 20 writes_ok

# --- a wait that cannot be met ---
sql_from f1 --min-lsn FFFFFFF/0 'select 1'
check "a read with an unreachable min_lsn: replica_lag_timeout, exit 4 ($SQL_RC, $SQL_ERR)" \
	bash -c '[ "$0" = 4 ] && grep -q "replica_lag_timeout.*behind" <<<"$1"' "$SQL_RC" "$SQL_ERR"

check "the lag metric is exported" bash -c \
	"curl -s http://${AGENT_API[f1]}/metrics | grep -q '^meridian_replica_lag_bytes '"
check "/readyz reports the databases" bash -c \
	"curl -s http://${AGENT_API[f1]}/readyz | jq -e '.databases.replica.ok == true' >/dev/null"

echo "# $passed passed, $failed failed"
[ "$failed" = 0 ]
