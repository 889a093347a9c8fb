#!/usr/bin/env bash
# bench/membership.sh - membership benchmark: Meridian against Serf, side by side.
#
# For each timing profile and cluster size N, starts N real agents of one system
# on 127.0.0.1, then N of the other, and measures for each (see bench/README.md):
#   join     start of the first agent until every agent sees all N present
#   kill     kill -9 of one agent: time until the first / the last other agent
#            marks it failed (several trials; a fresh agent replaces each victim)
#   leave    SIGTERM of one agent: time until the first / every other marks it left
#   idle     per agent, over an idle window after convergence: VmRSS, CPU seconds
#            per minute (utime+stime from /proc/PID/stat), UDP payload bytes and
#            packets sent per second (an nftables table with one counter per
#            agent's gossip port, on the output hook; created and deleted here)
#   false    failed/left marks of members that were neither killed nor stopped
# and prints Markdown tables with Meridian/Serf ratios and the issue's targets.
#
# Serf: Debian's `serf agent -profile=P -encrypt=KEY` with leave_on_terminate, so
# that SIGTERM is a graceful leave as for Meridian.  Both systems use the same
# 32-byte key, the same region tags, the same ports pattern, the same start order.
#
# Packages (Debian), installed with apt-get when missing:
#   serf nftables iproute2 python3 python3-msgpack
#
# Every process started here is stopped by PID and reaped (trap on EXIT); the
# nftables table is deleted; ports are 30000-32767 (below the kernel's ephemeral
# range 32768-60999, so outgoing connections never hold them); everything binds
# 127.0.0.1.  Every wait is bounded, and the whole run by --max-minutes.
#
# Usage: bench/membership.sh [--quick] [options]     (--help for the options)

set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PY=/usr/bin/python3 # Debian's, for python3-msgpack (not a pyenv or venv python)
MB="$HERE/lib/mbench.py"

NS="8 32 128"
PROFILES="lan local"
SYSTEMS="serf meridian"
TRIALS=5
LEAVES=3
IDLE=60
SETTLE=10 # after convergence: lets the join broadcasts drain before the idle window
SEED=${MBENCH_SEED:-$(((RANDOM << 15) | RANDOM))}
MAX_MINUTES=40
MERIDIAN=""
OUT=""
PORT_LO=30000
PORT_HI=32767

usage() {
	cat <<EOF
Usage: bench/membership.sh [options]

Measures Meridian and Serf side by side (see bench/README.md); prints Markdown
tables on stdout and keeps every log and record in the output directory.

  --quick            N = 8 32, profile lan, 3 kill and 3 leave trials, 30 s idle
  --n "8 32 128"     cluster sizes (each <= 160)
  --profiles "lan local"
  --systems "serf meridian"
  --trials K         kill -9 trials per configuration (5)
  --leaves K         SIGTERM trials per configuration (3)
  --idle S           idle window for CPU, RSS and bytes (60 s)
  --seed S           choice of victims (random; printed)
  --meridian PATH    the meridian binary (default: build $ROOT/build-bench,
                     the project's default RelWithDebInfo, no sanitizers)
  --out DIR          keep logs and records here (default: a new /tmp/mbench.*)
  --max-minutes M    stop starting new configurations after M minutes (40)
EOF
}

while [ $# -gt 0 ]; do
	case $1 in
	--quick) NS="8 32" PROFILES=lan TRIALS=3 LEAVES=3 IDLE=30 ;;
	--n) NS=$2; shift ;;
	--profiles) PROFILES=$2; shift ;;
	--systems) SYSTEMS=$2; shift ;;
	--trials) TRIALS=$2; shift ;;
	--leaves) LEAVES=$2; shift ;;
	--idle) IDLE=$2; shift ;;
	--seed) SEED=$2; shift ;;
	--meridian) MERIDIAN=$2; shift ;;
	--out) OUT=$2; shift ;;
	--max-minutes) MAX_MINUTES=$2; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "membership.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
	esac
	shift
done

for n in $NS; do
	if [ $((2 * (n + TRIALS + LEAVES))) -gt 340 ]; then
		echo "membership.sh: N=$n with $TRIALS + $LEAVES trials needs more than 340 ports" >&2
		exit 2
	fi
	if ! [[ $n =~ ^[0-9]+$ ]] || [ "$n" -lt 3 ] || [ "$n" -gt 160 ]; then
		echo "membership.sh: --n: $n is not a size in 3..160" >&2
		exit 2
	fi
done
for p in $PROFILES; do
	case $p in lan | local | wan) ;; *) echo "membership.sh: bad profile $p" >&2; exit 2 ;; esac
done

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# ---------------------------------------------------------------- set-up

need_pkgs=()
command -v serf >/dev/null || need_pkgs+=(serf)
command -v nft >/dev/null || need_pkgs+=(nftables)
command -v ss >/dev/null || need_pkgs+=(iproute2)
[ -x "$PY" ] || need_pkgs+=(python3)
if [ -x "$PY" ] && ! "$PY" -c 'import msgpack' 2>/dev/null; then need_pkgs+=(python3-msgpack); fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
	log "installing ${need_pkgs[*]}"
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO=sudo
	$SUDO apt-get install -y "${need_pkgs[@]}" >&2 ||
		{ $SUDO apt-get update >&2 && $SUDO apt-get install -y "${need_pkgs[@]}" >&2; } ||
		{ echo "membership.sh: could not install ${need_pkgs[*]}" >&2; exit 2; }
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "membership.sh: needs root for the nftables byte counters (run with sudo)" >&2
	exit 2
fi

if [ -z "$MERIDIAN" ]; then
	MERIDIAN=$ROOT/build-bench/cmd/meridian
	log "building meridian in $ROOT/build-bench"
	cmake -S "$ROOT" -B "$ROOT/build-bench" -DMERIDIAN_SANITIZE=OFF >/dev/null &&
		cmake --build "$ROOT/build-bench" --target meridian -j2 >/dev/null ||
		{ echo "membership.sh: building meridian failed" >&2; exit 2; }
fi
case " $SYSTEMS " in *" meridian "*)
	[ -x "$MERIDIAN" ] || { echo "membership.sh: no meridian binary at $MERIDIAN" >&2; exit 2; } ;;
esac

[ -n "$OUT" ] || OUT=$(mktemp -d /tmp/mbench.XXXXXX)
mkdir -p "$OUT"
RECORDS=$OUT/records.jsonl
: >"$RECORDS"
KEY=$(head -c 32 /dev/urandom | base64) # Serf -encrypt and MERIDIAN_SECRET alike
NFT_TABLE=mbench_$$
NFT_MADE=0
START=$SECONDS
RANDOM=$SEED
REGIONS=(iad fra syd)

# Every process we start, by PID; the EXIT trap stops and reaps what is left.
declare -A PIDS=()    # pid -> what
declare -A APID=()    # agent name -> pid
declare -A AGOSSIP=() # agent name -> gossip port
declare -A AAPI=()    # agent name -> rpc / api port
COLLECTOR=""

reap() { # pid: kill -9 and wait for it (it is our child)
	local pid=$1
	kill -9 "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	unset "PIDS[$pid]"
}

cleanup() {
	local pid
	for pid in "${!PIDS[@]}"; do kill -9 "$pid" 2>/dev/null; done
	for pid in "${!PIDS[@]}"; do wait "$pid" 2>/dev/null; done
	PIDS=()
	if [ "$NFT_MADE" = 1 ]; then nft delete table inet "$NFT_TABLE" 2>/dev/null; NFT_MADE=0; fi
}
trap cleanup EXIT
exec 3>&2
trap 'log "interrupted"; exit 130' INT TERM

port_in_use() { [ -n "$(ss -Htuln "( sport = :$1 )" 2>/dev/null)" ]; }

wait_listening() { # port, tries (50 ms each)
	local i
	for ((i = 0; i < $2; i++)); do
		[ -n "$(ss -Htln "( sport = :$1 )" 2>/dev/null)" ] && return 0
		sleep 0.05
	done
	return 1
}

# start_agent SYSTEM PROFILE NAME INDEX GOSSIP API JOINPORT|"" ; sets APID[NAME]
start_agent() {
	local sys=$1 prof=$2 name=$3 i=$4 gp=$5 ap=$6 jp=$7 dir=$CFG_DIR/logs
	local region=${REGIONS[$((i % 3))]}
	if [ "$sys" = serf ]; then
		local join=()
		[ -n "$jp" ] && join=(-join="127.0.0.1:$jp")
		serf agent -node="$name" -bind="127.0.0.1:$gp" -advertise="127.0.0.1:$gp" \
			-rpc-addr="127.0.0.1:$ap" -profile="$prof" -encrypt="$KEY" \
			-config-file="$OUT/serf.json" -tag region="$region" -tag primary_region=iad \
			"${join[@]}" >"$dir/$name.log" 2>&1 &
	else
		local join=()
		[ -n "$jp" ] && join=(--join "127.0.0.1:$jp")
		MERIDIAN_SECRET=$KEY MY_REGION=$region PRIMARY_REGION=iad \
			"$MERIDIAN" agent --node "$name" --bind "127.0.0.1:$gp" \
			--api "127.0.0.1:$ap" --profile "$prof" --log-format json \
			"${join[@]}" >"$dir/$name.log" 2>&1 &
	fi
	local pid=$!
	PIDS[$pid]="$sys $name"
	APID[$name]=$pid
	AGOSSIP[$name]=$gp
	AAPI[$name]=$ap
	echo "$name 127.0.0.1:$ap $dir/$name.log" >>"$CFG_DIR/agents"
}

csv() { local IFS=,; echo "$*"; }

# run_config SYSTEM PROFILE N BASEPORT
run_config() {
	local sys=$1 prof=$2 n=$3 base=$4
	local tg="system=$sys,profile=$prof,n=$n"
	CFG_DIR=$OUT/$sys-$prof-$n
	mkdir -p "$CFG_DIR/logs"
	: >"$CFG_DIR/agents"
	: >"$CFG_DIR/events"
	APID=() AGOSSIP=() AAPI=()
	local live=() killed=() stopped=() next=0 i p
	local nports=$((2 * (n + TRIALS + LEAVES)))
	if [ $((base + nports - 1)) -gt $PORT_HI ]; then
		log "$sys $prof N=$n: needs ports up to $((base + nports - 1)), past $PORT_HI; skipped"
		return 1
	fi
	for ((p = base; p < base + nports; p++)); do
		if port_in_use "$p"; then
			log "$sys $prof N=$n: port $p in use; skipping this configuration"
			return 1
		fi
	done

	local rpc=()
	[ "$sys" = serf ] && rpc=(--rpc-events "$CFG_DIR/events.rpc")
	"$PY" "$MB" collect --system "$sys" --agents "$CFG_DIR/agents" --logdir "$CFG_DIR/logs" \
		--events "$CFG_DIR/events" "${rpc[@]}" 2>"$CFG_DIR/collector.err" &
	COLLECTOR=$!
	PIDS[$COLLECTOR]=collector

	local seedport=$base
	local t0=$EPOCHREALTIME
	start_agent "$sys" "$prof" "${sys:0:1}0" 0 "$base" "$((base + 1))" ""
	live+=("${sys:0:1}0")
	if ! wait_listening "$seedport" 200; then
		log "$sys $prof N=$n: first agent not listening after 10 s (see $CFG_DIR/logs/)"
	fi
	for ((i = 1; i < n; i++)); do
		start_agent "$sys" "$prof" "${sys:0:1}$i" "$i" "$((base + 2 * i))" "$((base + 2 * i + 1))" \
			"$seedport"
		live+=("${sys:0:1}$i")
	done
	next=$n
	local names
	names=$(csv "${live[@]}")
	local jt
	if jt=$("$PY" "$MB" wait-join --events "$CFG_DIR/events" --observers "$names" \
		--members "$names" --t0 "$t0" --timeout $((90 + n / 2)) --record "$RECORDS" \
		--tags "$tg"); then
		log "$sys $prof N=$n: all $n joined in $jt s"
	else
		log "$sys $prof N=$n: did not converge; skipping the rest of this configuration"
		stop_config
		return 1
	fi
	sleep "$SETTLE"

	# idle: one nftables counter per gossip port (UDP source port)
	{
		echo "table inet $NFT_TABLE {"
		echo "  chain out {"
		echo "    type filter hook output priority 0; policy accept;"
		for a in "${live[@]}"; do echo "    udp sport ${AGOSSIP[$a]} counter"; done
		echo "  }"
		echo "}"
	} >"$CFG_DIR/nft.rules"
	if nft -f "$CFG_DIR/nft.rules"; then
		NFT_MADE=1
		local pids=() ports=() apis=()
		for a in "${live[@]}"; do
			pids+=("${APID[$a]}")
			ports+=("${AGOSSIP[$a]}")
			[ "$sys" = meridian ] && apis+=("127.0.0.1:${AAPI[$a]}")
		done
		local r
		r=$("$PY" "$MB" idle --pids "$(csv "${pids[@]}")" --ports "$(csv "${ports[@]}")" \
			--apis "$(csv "${apis[@]}")" --nft-table "$NFT_TABLE" --seconds "$IDLE" \
			--record "$RECORDS" --tags "$tg")
		log "$sys $prof N=$n: idle ${IDLE}s: $r"
		nft delete table inet "$NFT_TABLE" && NFT_MADE=0
	else
		log "$sys $prof N=$n: nft failed; no idle figures"
	fi

	# kill -9 trials, then SIGTERM trials; a fresh agent replaces each victim
	local kind t victim vpid tk res code
	for kind in kill leave; do
		local count=$TRIALS
		[ $kind = leave ] && count=$LEAVES
		for ((t = 1; t <= count; t++)); do
			if over_budget; then
				log "$sys $prof N=$n: time budget spent; no more trials"
				break 2
			fi
			# never the seed (index 0): replacements join through it
			victim=${live[$((1 + RANDOM % (${#live[@]} - 1)))]}
			vpid=${APID[$victim]}
			local others=()
			for a in "${live[@]}"; do [ "$a" != "$victim" ] && others+=("$a"); done
			if [ $kind = kill ]; then
				# bash reports a child killed by a signal on its stderr whenever it
				# notices; keep that note out of the output (the python's stderr is fd 3)
				{
					tk=$EPOCHREALTIME
					kill -9 "$vpid"
					res=$("$PY" "$MB" wait-marked --events "$CFG_DIR/events" \
						--observers "$(csv "${others[@]}")" --member "$victim" \
						--status failed --kind kill --since "$tk" --timeout 90 \
						--record "$RECORDS" --tags "$tg,trial=$t" 2>&3)
					reap "$vpid"
				} 2>>"$CFG_DIR/jobs.log"
				log "$sys $prof N=$n: kill -9 $victim: first/last marked failed after ${res:-?} s"
				unset "APID[$victim]"
				killed+=("$victim")
			else
				tk=$EPOCHREALTIME
				kill -TERM "$vpid"
				res=$("$PY" "$MB" wait-marked --events "$CFG_DIR/events" \
					--observers "$(csv "${others[@]}")" --member "$victim" --status left \
					--kind leave --since "$tk" --timeout 30 --record "$RECORDS" \
					--tags "$tg,trial=$t")
				# it should exit by itself after its leave; bounded at 15 s.  Looked at only
				# after the wait above, so exited_by_s is an upper bound of its exit time
				code=timeout
				for ((i = 0; i < 300; i++)); do
					if ! kill -0 "$vpid" 2>/dev/null; then
						wait "$vpid"
						code=$?
						break
					fi
					sleep 0.05
				done
				local te=$EPOCHREALTIME
				[ "$code" = timeout ] && reap "$vpid"
				unset "PIDS[$vpid]"
				printf '{"kind":"exit","system":"%s","profile":"%s","n":%d,"trial":%d,%s}\n' \
					"$sys" "$prof" "$n" "$t" \
					"\"victim\":\"$victim\",\"exit_code\":\"$code\",\"exited_by_s\":$(
						awk -v a="$tk" -v b="$te" 'BEGIN{printf "%.3f", b-a}')" >>"$RECORDS"
				log "$sys $prof N=$n: SIGTERM $victim: first/last marked left after ${res:-?} s; exit $code"
				unset "APID[$victim]"
				stopped+=("$victim")
			fi
			live=("${others[@]}")
			# replacement, on fresh ports
			local nn="${sys:0:1}$next" tj=$EPOCHREALTIME
			start_agent "$sys" "$prof" "$nn" "$next" "$((base + 2 * next))" \
				"$((base + 2 * next + 1))" "$seedport"
			next=$((next + 1))
			live+=("$nn")
			names=$(csv "${live[@]}")
			if ! "$PY" "$MB" wait-join --events "$CFG_DIR/events" --observers "$names" \
				--members "$names" --t0 "$tj" --timeout 90 --kind rejoin \
				--record "$RECORDS" --tags "$tg,trial=$t" >/dev/null; then
				log "$sys $prof N=$n: replacement $nn did not converge; stopping trials"
				break 2
			fi
			sleep 1
		done
	done
	stop_config
	if [ "$sys" = serf ]; then
		"$PY" "$MB" stream-delay --events "$CFG_DIR/events.rpc" --records "$RECORDS" \
			--record "$RECORDS" --tags "$tg"
	fi
	"$PY" "$MB" falsefail --events "$CFG_DIR/events" --killed "$(csv "${killed[@]}")" \
		--stopped "$(csv "${stopped[@]}")" --record "$RECORDS" --tags "$tg" |
		sed "s/^/[$sys $prof N=$n] /" >&2
}

stop_config() { # stop the collector first (it takes a last look), then the agents
	if [ -n "$COLLECTOR" ]; then
		kill -TERM "$COLLECTOR" 2>/dev/null
		wait "$COLLECTOR" 2>/dev/null
		unset "PIDS[$COLLECTOR]"
		COLLECTOR=""
	fi
	local a
	{
		for a in "${!APID[@]}"; do kill -9 "${APID[$a]}" 2>/dev/null; done
		for a in "${!APID[@]}"; do
			wait "${APID[$a]}" 2>/dev/null
			unset "PIDS[${APID[$a]}]"
		done
	} 2>>"$CFG_DIR/jobs.log"
	APID=()
}

over_budget() { [ $((SECONDS - START)) -ge $((MAX_MINUTES * 60)) ]; }

# ---------------------------------------------------------------- run

echo '{"leave_on_terminate": true}' >"$OUT/serf.json"
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
log "output in $OUT; seed $SEED; $(nproc) CPUs ($cpu); load $(cut -d' ' -f1-3 /proc/loadavg)"
log "serf $(serf version | head -1); meridian $("$MERIDIAN" version 2>/dev/null | head -1)"
{
	echo "command: bench/membership.sh $*"
	echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "machine: $(nproc) CPUs, $cpu," \
		"$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
	echo "kernel: $(uname -r)"
	echo "serf: $(serf version | head -1) (Debian $(dpkg-query -W -f='${Version}' serf 2>/dev/null))"
	echo "meridian: $("$MERIDIAN" version 2>/dev/null | head -1) ($MERIDIAN, sha256" \
		"$(sha256sum "$MERIDIAN" | cut -c1-12); source: git HEAD" \
		"$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)," \
		"$(git -C "$ROOT" --no-optional-locks status --porcelain 2>/dev/null | wc -l)" \
		"paths changed or new)"
	echo "seed: $SEED; trials: $TRIALS kill, $LEAVES leave; idle window: $IDLE s"
	echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/run.txt"

cfg=0
for prof in $PROFILES; do
	for n in $NS; do
		si=0
		for sys in $SYSTEMS; do
			if over_budget; then
				log "time budget of $MAX_MINUTES min spent: skipping $sys $prof N=$n"
				echo "skipped: $sys $prof N=$n (time budget)" >>"$OUT/run.txt"
				continue
			fi
			# each system its own half of the range, rotated over configurations so a
			# port is not reused by the very next run (TIME_WAIT)
			base=$((PORT_LO + si * 1380 + (cfg % 4) * 340))
			log "== $sys, profile $prof, N = $n (ports from $base)"
			run_config "$sys" "$prof" "$n" "$base" ||
				echo "incomplete: $sys $prof N=$n (see the log)" >>"$OUT/run.txt"
			si=$((si + 1))
		done
		cfg=$((cfg + 1))
	done
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/run.txt"
echo "duration: $(((SECONDS - START) / 60)) min $(((SECONDS - START) % 60)) s" >>"$OUT/run.txt"

cat "$OUT/run.txt"
"$PY" "$MB" report --records "$RECORDS" | tee "$OUT/report.md"
log "records: $RECORDS; logs: $OUT/<system>-<profile>-<N>/"
