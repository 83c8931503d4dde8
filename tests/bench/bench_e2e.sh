#!/bin/sh
# NAME
#	bench_e2e.sh - end-to-end benchmark: sessdemo (4 workers) under
#	sessload, shared sessdb cache (GDBM file, Redis) against --no-cache
#
# SYNOPSIS
#	tests/bench/bench_e2e.sh [--quick] [BUILDDIR]
#
# DESCRIPTION
#	Starts four sessdemo servers (4 workers each, one at a time busy):
#	  nocache	--no-cache (OpenSSL's per-worker cache only)
#	  tmpfs		--cache on TMPFS_DIR (default /dev/shm)
#	  disk		--cache on DISK_DIR (default /var/tmp, a disk filesystem)
#	  redis		--cache redis://127.0.0.1:PORT/0 on a redis-server the
#			script starts (loopback, persistence off), when
#			redis-server is installed and REDIS is not 0
#	and for every run, for TLS 1.2 and 1.3, runs sessload (CONNECTIONS
#	connections, PARALLEL lanes) against each, in an order that rotates
#	between runs, plus "full": sessload --new (full handshakes only)
#	against the tmpfs server.  It prints resumed connections/s (resumed
#	connections divided by the run's seconds), all connections/s, and the
#	resumed fraction, as medians over RUNS runs, and the ratio of each
#	cache to nocache, and of redis to the GDBM file on tmpfs and on disk
#	(the target is 0.8x or more).  The client runs on the same machine
#	and competes
#	for the same CPUs: figures are for the pair (docs/PERFORMANCE.md).
#	At the end the servers' own counters give the store reopens per
#	connection.
#
#	--quick (or SESSDB_BENCH_QUICK=1): RUNS=1, CONNECTIONS=100; checks
#	only that every connection succeeded and that both caches resumed
#	more than 90% of the connections, never a speed.
#
# ENVIRONMENT
#	SESSDEMO, SESSLOAD	the programs (default BUILDDIR/tools/...)
#	RUNS (5), CONNECTIONS (2000), PARALLEL (4), WORKERS (4),
#	TMPFS_DIR (/dev/shm), DISK_DIR (/var/tmp), KEEP=1 keeps the files,
#	REDIS=0 leaves Redis out
#
# EXIT STATUS
#	0 when every check passed, 1 otherwise.
set -eu

quick=0
case "${SESSDB_BENCH_QUICK:-0}" in 0|'') ;; *) quick=1 ;; esac
if [ "${1:-}" = "--quick" ]; then
	quick=1
	shift
fi
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../../build}
demo=${SESSDEMO:-$build/tools/sessdemo}
load=${SESSLOAD:-$build/tools/sessload}
if [ $quick = 1 ]; then
	runs=${RUNS:-1}
	conns=${CONNECTIONS:-100}
else
	runs=${RUNS:-5}
	conns=${CONNECTIONS:-2000}
fi
par=${PARALLEL:-4}
workers=${WORKERS:-4}
tmpfs_dir=${TMPFS_DIR:-/dev/shm}
disk_dir=${DISK_DIR:-/var/tmp}
for prog in "$demo" "$load"; do
	[ -x "$prog" ] || { echo "bench_e2e: $prog is not built" >&2; exit 1; }
done

for d in tmpfs_dir disk_dir; do
	eval "v=\$$d"
	if [ ! -d "$v" ] || [ ! -w "$v" ]; then
		echo "bench_e2e: $v is not a writable directory; using ${TMPDIR:-/tmp}" >&2
		eval "$d=\${TMPDIR:-/tmp}"
	fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/sessdb-e2e.XXXXXX")
tmpfs_db=$(mktemp -d "$tmpfs_dir/sessdb-e2e.XXXXXX")
disk_db=$(mktemp -d "$disk_dir/sessdb-e2e.XXXXXX")
pids=
failed=0

redis_pid=

cleanup() {
	for p in $pids; do kill -TERM "$p" 2>/dev/null || :; done
	for p in $pids; do wait "$p" 2>/dev/null || :; done
	if [ -n "$redis_pid" ]; then
		kill -TERM "$redis_pid" 2>/dev/null || :
		wait "$redis_pid" 2>/dev/null || :
	fi
	if [ "${KEEP:-0}" = 1 ]; then
		echo "bench_e2e: kept $work $tmpfs_db $disk_db"
	else
		rm -rf "$work" "$tmpfs_db" "$disk_db"
	fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

fstype() {
	t=$(findmnt -n -o FSTYPE --target "$1" 2>/dev/null | head -n 1) || t=
	[ -n "$t" ] || t=$(stat -f -c %T "$1" 2>/dev/null) || t='?'
	echo "$t"
}

# start NAME ARGS... - start a server, wait for its port, set port_NAME
start() {
	name=$1
	shift
	"$demo" --port 0 --workers "$workers" --ready-file "$work/$name.ready" "$@" \
	    >"$work/$name.out" 2>"$work/$name.err" &
	pid=$!
	pids="$pids $pid"
	eval "pid_$name=$pid"
	i=0
	while [ ! -s "$work/$name.ready" ]; do
		if ! kill -0 "$pid" 2>/dev/null || [ $i -ge 100 ]; then
			echo "bench_e2e: sessdemo ($name) did not start:" >&2
			cat "$work/$name.err" >&2
			exit 1
		fi
		sleep 0.1
		i=$((i + 1))
	done
	eval "port_$name=$(cat "$work/$name.ready")"
}

# start_redis - a redis-server on a loopback port that is free (a few
# random tries), persistence off; sets redis_port, or returns 1
start_redis() {
	for try in 1 2 3 4 5; do
		redis_port=$(awk -v s="$$$try" 'BEGIN { srand(s); print 20000 + int(rand() * 40000) }')
		redis-server --bind 127.0.0.1 --port "$redis_port" --save '' \
		    --appendonly no --dir "$work" --logfile "$work/redis.log" &
		redis_pid=$!
		i=0
		while [ $i -lt 50 ]; do
			if ! kill -0 "$redis_pid" 2>/dev/null; then
				break
			fi
			if [ "$(redis-cli -p "$redis_port" ping 2>/dev/null)" = PONG ]; then
				return 0
			fi
			sleep 0.1
			i=$((i + 1))
		done
		kill -TERM "$redis_pid" 2>/dev/null || :
		wait "$redis_pid" 2>/dev/null || :
		redis_pid=
	done
	return 1
}

# field JSON NAME - one numeric field of sessload's --json line
field() {
	printf '%s\n' "$1" | sed -n "s/.*\"$2\":\([0-9.]*\).*/\1/p"
}

echo "bench_e2e: $([ $quick = 1 ] && echo quick || echo full) mode, $runs run(s)," \
    "$conns connections, $par lanes, $workers workers per server"
echo "  tmpfs cache: $tmpfs_db ($(fstype "$tmpfs_db")); disk cache: $disk_db ($(fstype "$disk_db"))"
start nocache --no-cache
start tmpfs --cache "$tmpfs_db/sessions.db"
start disk --cache "$disk_db/sessions.db"
modes="nocache tmpfs disk full"
caches="tmpfs disk"
if [ "${REDIS:-1}" = 0 ]; then
	echo "  redis: left out (REDIS=0)"
elif [ "${SESSDB_HAVE_REDIS:-1}" = 0 ]; then
	echo "  redis: left out (this build has no Redis backend)"
elif ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
	echo "  redis: left out (redis-server is not installed)"
elif ! start_redis; then
	echo "bench_e2e: redis-server did not start" >&2
	exit 1
else
	# the library's default timeout (50 ms) in a measurement; in a quick
	# run (a smoke test on a busy CI machine) a stalled worker must not
	# count as a miss
	timeout=
	[ $quick = 1 ] && timeout='&timeout_ms=1000'
	start redis --cache "redis://127.0.0.1:$redis_port/0?prefix=e2e:$timeout"
	echo "  redis cache: redis-server $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p') on 127.0.0.1:$redis_port"
	modes="nocache tmpfs disk redis full"
	caches="tmpfs disk redis"
fi
nmodes=$(echo $modes | wc -w)

# Raw results: one line per measurement: TLS MODE RESUMED/S CONN/S FRACTION
raw=$work/raw
: >"$raw"
for r in $(seq 1 "$runs"); do
	# rotate the order of the modes between runs
	set -- $modes
	k=$(( (r - 1) % nmodes ))
	while [ $k -gt 0 ]; do
		m=$1
		shift
		set -- "$@" "$m"
		k=$((k - 1))
	done
	order="$*"
	for tls in 1.2 1.3; do
		for mode in $order; do
			extra=
			server=$mode
			if [ "$mode" = full ]; then
				extra=--new
				server=tmpfs
			fi
			eval "port=\$port_$server"
			json=$("$load" --connect "127.0.0.1:$port" --connections "$conns" \
			    --parallel "$par" --tls "$tls" --json $extra) || {
				echo "bench_e2e: sessload failed ($mode, TLS $tls): $json" >&2
				failed=1
				continue
			}
			res=$(field "$json" resumed)
			secs=$(field "$json" seconds)
			cps=$(field "$json" conn_per_sec)
			frac=$(field "$json" resumed_fraction)
			ok=$(field "$json" ok)
			rps=$(awk -v a="$res" -v b="$secs" 'BEGIN { printf "%.1f", (b > 0 ? a / b : 0) }')
			echo "$tls $mode $rps $cps $frac $ok" >>"$raw"
			printf '  run %d TLS %s %-8s resumed %7s/s  all %7s/s  fraction %s\n' \
			    "$r" "$tls" "$mode" "$rps" "$cps" "$frac"
			if [ "$ok" != "$conns" ]; then
				echo "bench_e2e: $mode TLS $tls: only $ok of $conns connections succeeded" >&2
				failed=1
			fi
		done
	done
done

# median COLUMN TLS MODE - median of one column of the raw results
median() {
	awk -v c="$1" -v t="$2" -v m="$3" '$1 == t && $2 == m { print $c }' "$raw" |
	    sort -g | awk '{ v[NR] = $1 } END {
		if (NR == 0) { print 0; exit }
		if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

echo
echo "== medians over $runs run(s) (resumed/s = resumed connections per second)"
printf '%-4s %-8s %11s %9s %9s %14s\n' TLS mode resumed/s all/s fraction "resumed/s vs nocache"
for tls in 1.2 1.3; do
	base=$(median 3 "$tls" nocache)
	for mode in $modes; do
		rps=$(median 3 "$tls" "$mode")
		cps=$(median 4 "$tls" "$mode")
		frac=$(median 5 "$tls" "$mode")
		ratio=$(awk -v a="$rps" -v b="$base" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
		printf '%-4s %-8s %11s %9s %9s %14s\n' "$tls" "$mode" "$rps" "$cps" "$frac" "$ratio"
		case $mode in
		tmpfs|disk|redis)
			if ! awk -v f="$frac" 'BEGIN { exit !(f > 0.9) }'; then
				echo "bench_e2e: $mode TLS $tls resumed fraction $frac, want > 0.9" >&2
				failed=1
			fi
			;;
		esac
	done
done
if [ -n "$redis_pid" ]; then
	echo
	echo "== redis against the GDBM file (resumed/s; target 0.8x or more)"
	for tls in 1.2 1.3; do
		r=$(median 3 "$tls" redis)
		t=$(median 3 "$tls" tmpfs)
		d=$(median 3 "$tls" disk)
		awk -v tls="$tls" -v r="$r" -v t="$t" -v d="$d" 'BEGIN {
			printf "TLS %s: redis %s/s, %.2fx the tmpfs file (%s/s), %.2fx the disk file (%s/s)\n",
			    tls, r, (t > 0 ? r / t : 0), t, (d > 0 ? r / d : 0), d }'
	done
fi
echo "targets (docs/PERFORMANCE.md): resumed conn/s at least Apache shmcb / nginx shared:" \
    "TLS 1.2 2581 / 2449, TLS 1.3 1200 / 1129, with 100% resumption"

# Stop the servers and read their counters.
for p in $pids; do kill -TERM "$p" 2>/dev/null || :; done
for p in $pids; do wait "$p" 2>/dev/null || :; done
pids=
for name in $caches; do
	awk -v n="$name" '/^total/ { for (i = 1; i <= NF; i++) if ($i == "connections") c = $(i + 1) }
	    /^worker/ { for (i = 1; i <= NF; i++) if ($i == "reopens") r += $(i + 1) }
	    END { if (c > 0) printf "  %s server: %d connections, %d store reopens (%.2f per connection)\n", n, c, r, r / c }' \
	    "$work/$name.out"
done
if [ $failed != 0 ]; then
	echo "bench_e2e: FAILED"
	exit 1
fi
echo "bench_e2e: all checks passed"
