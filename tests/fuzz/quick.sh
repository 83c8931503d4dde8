#!/bin/sh
# NAME
#	quick.sh - a short coverage-guided run of one libFuzzer target
#
# SYNOPSIS
#	tests/fuzz/quick.sh EXECUTABLE NAME SECONDS
#
# DESCRIPTION
#	Runs a target built with -Dfuzzing=true for SECONDS on the committed
#	seeds (tests/fuzz/corpus/NAME, only read) and what it finds (kept in
#	the build directory, fuzz-work/NAME/corpus, so the next run starts
#	from there).  A crash, leak, sanitizer report or timeout (10 s for
#	one input) fails the run; libFuzzer saves the input as
#	fuzz-work/NAME/crash-* (or leak-*, timeout-*), and its last lines say
#	how to replay it.  The meson suite fuzz-quick runs this per target.
#
# EXIT STATUS
#	libFuzzer's: 0 if nothing was found.
set -eu

exe=$1 name=$2 secs=$3
src=${SESSDB_TOP_SRCDIR:?}
work=${SESSDB_TOP_BUILDDIR:?}/fuzz-work/$name
mkdir -p "$work/corpus"
set -- -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$work/"
if [ -f "$src/tests/fuzz/$name.dict" ]; then
	set -- "$@" -dict="$src/tests/fuzz/$name.dict"
fi
# new inputs go to the first directory; a target without committed seeds
# starts from what it found before
set -- "$@" "$work/corpus"
if [ -d "$src/tests/fuzz/corpus/$name" ]; then
	set -- "$@" "$src/tests/fuzz/corpus/$name"
fi
exec "$exe" "$@"
