#!/bin/sh
# NAME
#	soak.sh - the long runs: a store under many processes for minutes,
#	a million resumed handshakes, a LeakSanitizer handshake run
#
# SYNOPSIS
#	scripts/soak.sh store [--minutes M] [--procs N]
#	scripts/soak.sh handshakes [--count N] [handshakes.py options]
#	scripts/soak.sh lsan [--count N] [handshakes.py options]
#
# DESCRIPTION
#	Manual runs, not part of CI (minutes to an hour each); docs/
#	OPERATIONS.md ("Long runs") gives the full commands and what they
#	showed.  The programs come from build-soak/ (release) or, for lsan,
#	build-soak-asan/ (-Db_sanitize=address, so LeakSanitizer checks
#	every process at exit), in the source tree unless SOAK_BUILD and
#	SOAK_ASAN_BUILD name other directories; each is set up on first use
#	and rebuilt when the sources changed.
#
#	store: tests/soak/soak_store.c, 16 processes of put/get/take/delete
#	for 10 minutes (default) on one store, with sessdump stats every
#	second and sessdump sweep every 5 s; no error, lock timeout, lost
#	acknowledged record or wrong record is allowed.
#	handshakes: tests/soak/handshakes.py, 1,000,000 connections
#	(default) through sessdemo by sessload, every offered session
#	resumed, the workers' memory sampled and flat.
#	lsan: the same, 100,000 connections by default, on the ASan build:
#	zero leak reports.
#
# EXIT STATUS
#	That of the run: 0 if it passed.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

# build DIR ARGS... - set up (once) and build one variant.
build() {
	dir=$1
	shift
	[ -f "$dir/build.ninja" ] || meson setup "$dir" "$@" >/dev/null
	ninja -C "$dir" tools/sessdemo tools/sessload tools/sessdump \
	    tests/soak_store >/dev/null
}

plain=${SOAK_BUILD:-build-soak}
asan=${SOAK_ASAN_BUILD:-build-soak-asan}
what=${1:-}
[ $# -gt 0 ] && shift
case $what in
store)
	build "$plain" --buildtype=release -Dbench=false
	exec "$plain/tests/soak_store" --sessdump "$plain/tools/sessdump" "$@"
	;;
handshakes)
	build "$plain" --buildtype=release -Dbench=false
	export SESSDEMO="$plain/tools/sessdemo" SESSLOAD="$plain/tools/sessload"
	exec python3 tests/soak/handshakes.py "$@"
	;;
lsan)
	build "$asan" -Db_sanitize=address -Db_lundef=false \
	    --buildtype=debugoptimized -Dbench=false
	export SESSDEMO="$asan/tools/sessdemo" SESSLOAD="$asan/tools/sessload"
	exec python3 tests/soak/handshakes.py --lsan --count 100000 "$@"
	;;
*)
	echo "usage: scripts/soak.sh store [--minutes M] [--procs N]" >&2
	echo "       scripts/soak.sh handshakes|lsan [--count N] [--chunk K]" \
	    "[--tls both|1.2|1.3]" >&2
	exit 2
	;;
esac
