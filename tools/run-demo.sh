#!/bin/sh
# NAME
#	run-demo.sh - the sessdb demo, end to end: 4 workers, one shared cache
#
# SYNOPSIS
#	tools/run-demo.sh [BUILDDIR]
#
# DESCRIPTION
#	Uses the programs built in BUILDDIR (default $SESSDB_BUILDDIR, else
#	"build" beside this script's directory); it does not build them.
#	In a fresh temporary directory it starts sessdemo with 4 workers and
#	a new cache file, runs sessload (CONNECTIONS connections, 4 at a time)
#	with TLS 1.2 and with TLS 1.3, does the same against sessdemo
#	--no-cache (OpenSSL's per-process cache only) and with --new (full
#	handshakes only), prints the resumed fractions side by side, shows
#	what the cache file holds (sessdump if it is built, else sessdemo
#	--list) and the server's per-worker counters, and stops the server.
#
# ENVIRONMENT
#	SESSDB_BUILDDIR		build directory, if not given as an argument
#	CONNECTIONS		connections per run (default 400)
#	KEEP=1			keep the temporary directory
#
# EXIT STATUS
#	0 when the shared cache resumed at least 90% of the connections with
#	both protocols, 1 otherwise or on any error.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
build=${1:-${SESSDB_BUILDDIR:-$here/../build}}
if [ ! -d "$build" ]; then
	echo "run-demo: no build directory $build (meson setup $build && ninja -C $build)" >&2
	exit 1
fi
build=$(cd "$build" && pwd)
conns=${CONNECTIONS:-400}
demo=$build/tools/sessdemo
load=$build/tools/sessload
dump=$build/tools/sessdump
for prog in "$demo" "$load"; do
	if [ ! -x "$prog" ]; then
		echo "run-demo: $prog is not built (ninja -C $build)" >&2
		exit 1
	fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sessdb-demo.XXXXXX")
server=

# stop_server - SIGTERM the server and wait for its counters
stop_server() {
	if [ -n "$server" ]; then
		kill -TERM "$server" 2>/dev/null || :
		wait "$server" 2>/dev/null || :
		server=
	fi
}

cleanup() {
	stop_server
	if [ "${KEEP:-0}" = 1 ]; then
		echo "run-demo: kept $tmp"
	else
		rm -rf "$tmp"
	fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# start_server MODE-ARGS... - start sessdemo, wait until it is ready, set $port
start_server() {
	rm -f "$tmp/ready"
	"$demo" --port 0 --workers 4 --ready-file "$tmp/ready" \
	    --access-log "$tmp/access.log" "$@" >"$tmp/server.out" 2>"$tmp/server.err" &
	server=$!
	i=0
	while [ ! -s "$tmp/ready" ]; do
		if ! kill -0 "$server" 2>/dev/null || [ $i -ge 100 ]; then
			echo "run-demo: sessdemo did not start:" >&2
			cat "$tmp/server.err" >&2
			exit 1
		fi
		sleep 0.1
		i=$((i + 1))
	done
	port=$(cat "$tmp/ready")
}

# field JSON NAME - one numeric field of sessload's --json line
field() {
	printf '%s\n' "$1" | sed -n "s/.*\"$2\":\([0-9.]*\).*/\1/p"
}

# load TLS [ARGS...] - run sessload, print a summary line, set $json
load() {
	tls=$1
	shift
	json=$("$load" --connect "127.0.0.1:$port" --connections "$conns" \
	    --parallel 4 --tls "$tls" --json "$@") || {
		echo "run-demo: sessload failed: $json" >&2
		exit 1
	}
	printf '  TLS %s: resumed %5s of %s (%s on another worker), %s worker pids, %7s conn/s\n' \
	    "$tls" "$(field "$json" resumed)" "$(field "$json" connections)" \
	    "$(field "$json" cross_worker_resumed)" "$(field "$json" worker_pids)" \
	    "$(field "$json" conn_per_sec)"
}

# percent JSON - resumed fraction as a percentage
percent() {
	awk -v f="$(field "$1" resumed_fraction)" 'BEGIN { printf "%.1f%%", 100 * f }'
}

echo "== sessdemo with 4 workers and a shared cache ($tmp/sessions.db)"
start_server --cache "$tmp/sessions.db"
load 1.2; cache12=$json
load 1.3; cache13=$json
echo "== the same, full handshakes only (sessload --new)"
load 1.2 --new; new12=$json
load 1.3 --new; new13=$json

echo "== what the cache holds"
if [ -x "$dump" ] && "$dump" --db "$tmp/sessions.db" stats >"$tmp/dump.out" 2>&1; then
	cat "$tmp/dump.out"
	"$dump" --db "$tmp/sessions.db" list 2>&1 | head -n 8 || :
else
	"$demo" --list --cache "$tmp/sessions.db" | tail -n 9
fi

echo "== stopping the server: its workers' counters"
stop_server
cat "$tmp/server.out"

echo "== sessdemo with 4 workers and --no-cache (one cache per process)"
start_server --no-cache
load 1.2; nocache12=$json
load 1.3; nocache13=$json
stop_server

echo
echo "== resumed fraction ($conns connections, 4 parallel, 4 workers)"
printf '  %-28s %10s %10s\n' "" "TLS 1.2" "TLS 1.3"
printf '  %-28s %10s %10s\n' "shared cache (sessdb)" "$(percent "$cache12")" "$(percent "$cache13")"
printf '  %-28s %10s %10s\n' "no cache (per process)" "$(percent "$nocache12")" "$(percent "$nocache13")"
printf '  %-28s %10s %10s\n' "conn/s, shared cache" "$(field "$cache12" conn_per_sec)" "$(field "$cache13" conn_per_sec)"
printf '  %-28s %10s %10s\n' "conn/s, full handshakes" "$(field "$new12" conn_per_sec)" "$(field "$new13" conn_per_sec)"
echo "  With the shared cache every offered session resumes, on whichever worker;"
echo "  each of the 4 client lanes starts with a full handshake, so the best"
echo "  possible is ($conns - 4) / $conns.  Without it a session resumes only on the"
echo "  worker that made it: how often a client lands there again depends on"
echo "  which waiting worker accept() wakes (roughly 1 in 4 to 1 in 2 here)."

ok=$(awk -v a="$(field "$cache12" resumed_fraction)" -v b="$(field "$cache13" resumed_fraction)" \
    'BEGIN { print (a >= 0.9 && b >= 0.9) ? 1 : 0 }')
if [ "$ok" != 1 ]; then
	echo "run-demo: FAILED: the shared cache resumed less than 90%" >&2
	exit 1
fi
