#!/usr/bin/env bash
# deploy/local-cluster.sh - a multi-region Meridian cluster on loopback.
#
# Starts a PostgreSQL primary (in iad; the election's lease lives there)
# with a streaming replica for fra and one for syd, and agents in the
# three regions (iad is the primary region), each reading from its
# region's database; waits for them to converge and elect a leader; shows
# `meridian members`, `meridian info`, `meridian leader`, region-targeted
# RPCs from fra, and a write from fra forwarded to the primary and read
# back at once on fra's replica; then keeps the cluster running until
# Ctrl-C (or for CLUSTER_SECONDS seconds when that is set), and stops every
# agent and database it started.
#
# Agents: a1 127.0.0.1:7600 (API 7601), a2 :7610 (7611)   region iad
#         f1 :7620 (7621), f2 :7630 (7631)                 region fra
#         s1 :7640 (7641)                                  region syd
#         PostgreSQL primary 127.0.0.1:7700, replicas :7701 (fra), :7702 (syd)
#         (data in $CLUSTER_DIR/pg, pg-fra, pg-syd)
# Logs and the cluster secret: $CLUSTER_DIR (default build/local-cluster).
#
# Usage: local-cluster.sh PATH/TO/meridian
set -euo pipefail
export MERIDIAN=${1:?usage: local-cluster.sh PATH/TO/meridian}
here=$(cd "$(dirname "$0")" && pwd)
export AGENTS_DIR=${CLUSTER_DIR:-$here/../build/local-cluster}
source "$here/../scripts/lib/agents.sh"
source "$here/../scripts/lib/pg.sh"
agents_init
trap 'agents_stop_all; pg_cleanup_all' EXIT

secret_file=$AGENTS_DIR/secret
[ -s "$secret_file" ] || (umask 077 && "$MERIDIAN" keygen >"$secret_file")
export MERIDIAN_SECRET_FILE=$secret_file
unset MERIDIAN_SECRET

for port in 7600 7610 7620 7630 7640 7700 7701 7702; do
	if [ -n "$(ss -Htuln "( sport = :$port or sport = :$((port + 1)) )")" ]; then
		echo "local-cluster: port $port or $((port + 1)) is in use; is a cluster already running?" >&2
		exit 2
	fi
done

chmod 755 "$AGENTS_DIR"    # the postgres user keeps its data in it
[ -d "$AGENTS_DIR/pg/data" ] || pg_init "$AGENTS_DIR/pg" >/dev/null
pg_start "$AGENTS_DIR/pg" 7700 >/dev/null
for r in fra:7701 syd:7702; do
	[ -d "$AGENTS_DIR/pg-${r%:*}/data" ] || pg_replica_init 7700 "$AGENTS_DIR/pg-${r%:*}" >/dev/null
	pg_start "$AGENTS_DIR/pg-${r%:*}" "${r#*:}" >/dev/null
done
primary=$(pg_url 7700)

agents_start a1 iad iad 127.0.0.1:7600 127.0.0.1:7601 --primary-database-url "$primary"
agents_start a2 iad iad 127.0.0.1:7610 127.0.0.1:7611 --join 127.0.0.1:7600 \
	--primary-database-url "$primary"
agents_start f1 fra iad 127.0.0.1:7620 127.0.0.1:7621 --join 127.0.0.1:7600 \
	--handler upcase='jq -r ".[0]" | tr a-z A-Z' --database-url "$(pg_url 7701)"
agents_start f2 fra iad 127.0.0.1:7630 127.0.0.1:7631 --join 127.0.0.1:7600 \
	--database-url "$(pg_url 7701)"
agents_start s1 syd iad 127.0.0.1:7640 127.0.0.1:7641 --join 127.0.0.1:7600,127.0.0.1:7620 \
	--database-url "$(pg_url 7702)"

if ! agents_wait_until 30 agents_converged 5 a1 a2 f1 f2 s1; then
	echo "local-cluster: agents did not converge in 30 s; logs in $AGENTS_DIR" >&2
	exit 1
fi

show() { printf '\n$ %s\n' "$*"; "$@" || echo "(exit $?)"; }
export MERIDIAN_API=127.0.0.1:7621
show "$MERIDIAN" members
show "$MERIDIAN" members --region fra --json
leader_known() { "$MERIDIAN" leader >/dev/null 2>&1; }
agents_wait_until 15 leader_known || echo "local-cluster: no leader elected yet" >&2
show "$MERIDIAN" info
show "$MERIDIAN" leader
show "$MERIDIAN" rpc --leader ping
show "$MERIDIAN" rpc --region iad ping
show "$MERIDIAN" rpc --primary --json echo hello
show "$MERIDIAN" rpc --node f1 upcase fly
show "$MERIDIAN" sql --write 'create table if not exists accounts (id serial primary key, name text)'
show "$MERIDIAN" sql --write --wait 'insert into accounts (name) values ($1) returning id' "bob from fra"
show "$MERIDIAN" sql 'select id, name from accounts order by id desc limit 3'

cat <<EOM

The cluster is running: 5 agents in iad (primary), fra and syd; the leader
holds a lease in the primary PostgreSQL ($primary); fra and syd read from
their own streaming replicas.
Talk to any of them with MERIDIAN_API=127.0.0.1:7601 (a1) ... :7641 (s1), e.g.
  MERIDIAN_API=127.0.0.1:7641 $MERIDIAN members
Logs: $AGENTS_DIR/*.log.  The secret: $secret_file.
EOM
if [ -n "${CLUSTER_SECONDS:-}" ]; then
	sleep "$CLUSTER_SECONDS"
else
	echo "Ctrl-C stops every agent (each leaves gracefully)."
	trap 'echo; echo "stopping"; exit 0' INT TERM
	while sleep 3600; do :; done
fi
