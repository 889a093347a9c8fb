# scripts/lib/pg.sh - throwaway PostgreSQL 15 servers on 127.0.0.1, for the
# tests and the local cluster.  Sourced (bash).
#
# A server lives in a directory DIR of its own: the cluster in DIR/data,
# its log in DIR/log, its unix socket in DIR.  Authentication is trust
# (initdb --auth=trust: local, 127.0.0.1 and ::1, replication included):
# these servers never listen beyond loopback.  When running as root,
# every server command runs as the user postgres (runuser), which then
# owns DIR; DIR's parents must be searchable by postgres.
#
# Servers are started with pg_ctl (the postmaster is a daemon, reaped by
# init) and stopped by the PID in DIR/data/postmaster.pid through pg_ctl
# stop; never by name.  Every wait is bounded.  pg_cleanup_all stops every
# server this shell started: install it in an EXIT trap (the library
# installs no trap of its own).
#
#   pg_init DIR                      initdb into DIR/data
#   pg_start DIR PORT                start, wait (30 s at most) for pg_isready
#   pg_stop DIR                      fast shutdown (immediate if that hangs)
#   pg_kill DIR                      immediate shutdown (like a crash)
#   pg_url PORT [DB]                 postgresql://postgres@127.0.0.1:PORT/DB
#   pg_psql PORT [psql args...]      psql on that server, ON_ERROR_STOP
#   pg_free_port                     a port that looks free on 127.0.0.1,
#                                    below the ephemeral range
#   pg_replica_init PRIMARY_PORT DIR streaming replica of a running primary
#   pg_cleanup_all                   stop every server started here

source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/ports.sh"

PG_STARTED=()

# pg_bindir: the PostgreSQL 15 binaries' directory.
pg_bindir() {
	if [ -x /usr/lib/postgresql/15/bin/postgres ]; then
		echo /usr/lib/postgresql/15/bin
	elif command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/postgres" ]; then
		pg_config --bindir
	else
		echo "pg.sh: no PostgreSQL binaries" \
			"(/usr/lib/postgresql/15/bin, pg_config --bindir)" >&2
		return 1
	fi
}

# _pg_as_postgres CMD...: CMD as the user postgres when we are root.
_pg_as_postgres() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# _pg_own DIR: makes DIR (and owns it by postgres when root); fails
# loudly when postgres cannot use it.
_pg_own() {
	local dir=$1
	mkdir -p "$dir" || return 1
	if [ "$(id -u)" = 0 ]; then
		chown postgres:postgres "$dir" || return 1
	fi
	chmod 700 "$dir"
	if ! _pg_as_postgres test -w "$dir"; then
		echo "pg.sh: user postgres cannot write $dir (are its parents searchable?)" >&2
		return 1
	fi
}

# pg_init DIR: a new cluster in DIR/data (trust auth, UTF8, C locale).
pg_init() {
	local dir=$1 bin
	: "${dir:?pg_init DIR}"
	bin=$(pg_bindir) || return 1
	_pg_own "$dir" || return 1
	if ! _pg_as_postgres "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 \
		--locale=C --no-sync >"$dir/initdb.log" 2>&1; then
		echo "pg.sh: initdb failed in $dir:" >&2
		tail -n 20 "$dir/initdb.log" >&2
		return 1
	fi
}

# pg_start DIR PORT: starts the cluster of DIR on 127.0.0.1:PORT and waits
# until it accepts connections (30 s at most).
pg_start() {
	local dir=$1 port=$2 bin deadline
	: "${dir:?pg_start DIR PORT}" "${port:?pg_start DIR PORT}"
	bin=$(pg_bindir) || return 1
	local opts="-c listen_addresses=127.0.0.1 -c port=$port"
	opts+=" -c unix_socket_directories='$dir' -c fsync=off -c synchronous_commit=on"
	opts+=" -c full_page_writes=off -c wal_level=logical -c max_wal_senders=10"
	opts+=" -c max_replication_slots=10"
	if ! _pg_as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -W -o "$opts" start \
		>/dev/null; then
		echo "pg.sh: pg_ctl start failed for $dir" >&2
		tail -n 20 "$dir/log" >&2 2>/dev/null
		return 1
	fi
	PG_STARTED+=("$dir")
	echo "$port" >"$dir/port"
	deadline=$((SECONDS + 30))
	until "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -t 1; do
		if [ $SECONDS -ge $deadline ]; then
			echo "pg.sh: server in $dir not ready on port $port after 30 s" >&2
			tail -n 20 "$dir/log" >&2
			return 1
		fi
		sleep 0.1
	done
}

# _pg_ctl_stop DIR MODE SECONDS: pg_ctl stop by the PID file, bounded.
_pg_ctl_stop() {
	local dir=$1 mode=$2 secs=$3 bin
	bin=$(pg_bindir) || return 1
	[ -f "$dir/data/postmaster.pid" ] || return 0
	_pg_as_postgres "$bin/pg_ctl" -D "$dir/data" -m "$mode" -t "$secs" -w stop >/dev/null 2>&1
}

# pg_stop DIR: fast shutdown (30 s at most), else immediate (10 s).
pg_stop() {
	local dir=$1
	: "${dir:?pg_stop DIR}"
	_pg_ctl_stop "$dir" fast 30 && return 0
	echo "pg.sh: fast shutdown of $dir failed; immediate" >&2
	_pg_ctl_stop "$dir" immediate 10
}

# pg_kill DIR: immediate shutdown: no checkpoint, clients cut off, crash
# recovery at the next start.
pg_kill() {
	local dir=$1
	: "${dir:?pg_kill DIR}"
	_pg_ctl_stop "$dir" immediate 10
}

# pg_url PORT [DB]
pg_url() {
	echo "postgresql://postgres@127.0.0.1:${1:?pg_url PORT [DB]}/${2:-postgres}"
}

# pg_psql PORT [psql args...]: no psqlrc, quiet, stops at the first error.
pg_psql() {
	local port=${1:?pg_psql PORT [args]} bin
	shift
	bin=$(pg_bindir) || return 1
	"$bin/psql" "$(pg_url "$port")" -X -q -v ON_ERROR_STOP=1 "$@"
}

# pg_free_port: a port that nothing uses on 127.0.0.1 now, below the
# ephemeral range (ports.sh).
pg_free_port() {
	ports_free_base 1 || { echo "pg.sh: no free port found" >&2; return 1; }
}

# pg_replica_init PRIMARY_PORT DIR: DIR/data becomes a streaming replica
# of the primary on 127.0.0.1:PRIMARY_PORT (pg_basebackup -R, WAL
# streamed, fast checkpoint; 120 s at most).  Start it with pg_start.
pg_replica_init() {
	local pport=$1 dir=$2 bin
	: "${pport:?pg_replica_init PRIMARY_PORT DIR}" "${dir:?pg_replica_init PRIMARY_PORT DIR}"
	bin=$(pg_bindir) || return 1
	_pg_own "$dir" || return 1
	if ! _pg_as_postgres timeout 120 "$bin/pg_basebackup" -h 127.0.0.1 -p "$pport" \
		-U postgres -D "$dir/data" -R -X stream -c fast >"$dir/basebackup.log" 2>&1; then
		echo "pg.sh: pg_basebackup from port $pport failed:" >&2
		tail -n 20 "$dir/basebackup.log" >&2
		return 1
	fi
	chmod 700 "$dir/data"
}

# pg_cleanup_all: stops every server pg_start started in this shell.
pg_cleanup_all() {
	local dir
	for dir in "${PG_STARTED[@]}"; do
		pg_stop "$dir" || true
	done
	PG_STARTED=()
}
