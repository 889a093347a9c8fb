# scripts/lib/ports.sh - free ports on 127.0.0.1 for local agents and
# throwaway servers.  Sourced (bash) by agents.sh and pg.sh.
#
# Ports are chosen at random between 10000 and the start of the kernel's
# ephemeral range (ip_local_port_range, usually 32768): a port inside that
# range can be taken at any moment as the source port of some outgoing
# connection (psql, libpq, RPC), and a process (re)started on it would
# fail with "address in use".

#
# A range that looks free (ss) may still be another test's that has not
# bound it yet (initdb takes seconds): ctest runs two scripts at once.  So
# ranges are also reserved, in blocks of 100 ports, by directories under
# /tmp/meridian-ports holding the reserving shell's PID, taken under a
# lock; a block whose owner is gone is free again.

PORTS_DIR=${TMPDIR:-/tmp}/meridian-ports

# ports_reserve FIRST LAST: reserves the blocks of ports FIRST..LAST for
# this shell ($$: the script, even from a subshell); 1 if any is another
# live shell's (then none is kept).  Under one lock (flock), so that two
# shells never both take a block, a stale one included.
ports_reserve() {
	local b d owner fd rc=0 taken=()
	mkdir -p "$PORTS_DIR" 2>/dev/null
	exec {fd}>"$PORTS_DIR/.lock" || return 1
	flock -w 30 "$fd" || { exec {fd}>&-; return 1; }
	for ((b = $1 / 100; b <= $2 / 100; b++)); do
		d=$PORTS_DIR/$b
		owner=$(cat "$d/pid" 2>/dev/null)
		if [ -n "$owner" ] && [ "$owner" != $$ ] && kill -0 "$owner" 2>/dev/null; then
			rc=1
			break
		fi
		[ "$owner" = $$ ] && continue   # ours already: not ours to release
		mkdir -p "$d" && echo $$ >"$d/pid" && taken+=("$d")
	done
	if [ $rc != 0 ]; then
		for d in "${taken[@]}"; do rm -rf "$d"; done
	fi
	exec {fd}>&-
	return $rc
}

# ports_free_base N: prints a base port P, a multiple of N, such that
# P..P+N-1 look free on 127.0.0.1 (TCP and UDP, checked with ss) and are
# reserved for this shell (50 tries).
ports_free_base() {
	local n=${1:?ports_free_base N} tries=0 base low span
	low=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
	span=$((low - 10000 - n))
	[ "$span" -gt 0 ] || { echo "no port range below the ephemeral one ($low)" >&2; return 1; }
	while [ $tries -lt 50 ]; do
		base=$((10000 + (RANDOM * 32768 + RANDOM) % span))
		base=$((base - base % n))
		if [ -z "$(ss -Htuan "( sport >= :$base and sport < :$((base + n)) )" 2>/dev/null)" ] &&
			ports_reserve "$base" $((base + n - 1)); then
			echo "$base"
			return 0
		fi
		tries=$((tries + 1))
	done
	echo "no free port range found" >&2
	return 1
}
