#!/bin/sh
# NAME
#	test.sh - build sessdb and run every test: plain, sanitized, valgrind
#
# SYNOPSIS
#	scripts/test.sh
#
# DESCRIPTION
#	Installs missing packages (scripts/deps.sh), then:
#	  1. builds with -Werror in build-test/ and runs the whole suite;
#	  2. builds with AddressSanitizer + UndefinedBehaviorSanitizer in
#	     build-test-asan/ and runs the whole suite again;
#	  3. runs the C test programs under valgrind (meson test --setup
#	     valgrind: the suites unit, multiproc, kill, corrupt, identity);
#	     the script-driven suites (sessdump, realpeer, client, bench-smoke,
#	     fault, faults-live, install, apache) would put valgrind around python3, so they
#	     are left to the ASan run, which checks the programs they drive.
#	     Without valgrind the build has no such setup: step 3 is skipped,
#	     and says so.
#	For a quick check while working: meson test -C DIR --suite unit.
#	Ends with one line "N passed, N failed" over all three runs.
#
# EXIT STATUS
#	0 if every test passed, 1 otherwise.
set -u

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
sh scripts/deps.sh || exit 1

status=0
summary_files=

# run NAME BUILDDIR SETUP-ARGS... - configure, build and test one variant.
run() {
	name=$1 dir=$2
	shift 2
	echo "=== $name ==="
	if [ ! -f "$dir/build.ninja" ]; then
		meson setup "$dir" -Dwerror=true "$@" || { status=1; return; }
	fi
	ninja -C "$dir" || { status=1; return; }
}

run "build (-Werror)" build-test --buildtype=debugoptimized
meson test -C build-test --print-errorlogs --num-processes 2 || status=1
summary_files="$summary_files build-test/meson-logs/testlog.json"

run "build with ASan+UBSan" build-test-asan -Db_sanitize=address,undefined \
    -Db_lundef=false --buildtype=debug
meson test -C build-test-asan --print-errorlogs --num-processes 2 \
    --logbase testlog-asan || status=1
summary_files="$summary_files build-test-asan/meson-logs/testlog-asan.json"

echo "=== valgrind ==="
if command -v valgrind >/dev/null 2>&1; then
	meson test -C build-test --setup valgrind --print-errorlogs \
	    --num-processes 2 \
	    --no-suite sessdump --no-suite realpeer --no-suite client \
	    --no-suite bench-smoke \
	    --no-suite fault --no-suite faults-live --no-suite install \
	    --no-suite apache || status=1
	# meson names the log after the setup: testlog-valgrind.json
	summary_files="$summary_files build-test/meson-logs/testlog-valgrind.json"
else
	echo "valgrind run skipped: valgrind is not installed"
fi

# shellcheck disable=SC2086
python3 scripts/test-summary.py $summary_files || status=1
exit $status
