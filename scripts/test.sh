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
#	     and says so;
#	  4. builds the fuzz targets for libFuzzer with clang, ASan and UBSan
#	     in build-test-fuzz/ (-Dfuzzing=true) and runs each
#	     coverage-guided for 20 s (the suite fuzz-quick; the long runs
#	     are in tests/fuzz/README.md).  Without clang or libFuzzer
#	     (libclang-rt-14-dev) step 4 is skipped, and says so.
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

echo "=== libFuzzer quick runs ==="
fuzz_probe='int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }'
if ! command -v clang >/dev/null 2>&1; then
	echo "libFuzzer quick runs skipped: clang is not installed"
elif ! echo "$fuzz_probe" | clang -fsanitize=fuzzer -x c - \
    -o build-fuzz-probe 2>/dev/null; then
	echo "libFuzzer quick runs skipped: clang cannot link libFuzzer" \
	    "(-fsanitize=fuzzer: libclang-rt-14-dev)"
else
	rm -f build-fuzz-probe
	if [ ! -f build-test-fuzz/build.ninja ]; then
		CC=clang meson setup build-test-fuzz -Dwerror=true \
		    -Dfuzzing=true -Dbench=false -Db_sanitize=address,undefined \
		    -Db_lundef=false --buildtype=debugoptimized || status=1
	fi
	# Only the fuzz targets: the rest of the tree is built and tested
	# above.
	fuzz_exes=$(meson introspect --targets build-test-fuzz | python3 -c '
import json, sys
print(" ".join(t["name"] for t in json.load(sys.stdin)
               if t["name"].startswith("fuzz_")))')
	# shellcheck disable=SC2086
	if meson compile -C build-test-fuzz $fuzz_exes; then
		meson test -C build-test-fuzz --no-rebuild \
		    --print-errorlogs --suite fuzz-quick --logbase testlog-fuzz ||
		    status=1
		summary_files="$summary_files build-test-fuzz/meson-logs/testlog-fuzz.json"
	else
		status=1
	fi
fi

# shellcheck disable=SC2086
python3 scripts/test-summary.py $summary_files || status=1
exit $status
