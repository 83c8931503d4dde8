#!/usr/bin/env python3
"""test-summary - count meson test results over several testlog.json files.

Prints one line per run and a final "N passed, N failed" line; exits 1 if
any test failed or a log is missing (a run that did not happen is a failure).
"""
import json
import sys

GOOD = {"OK", "EXPECTEDFAIL"}
SKIPPED = {"SKIP"}

passed = failed = skipped = 0
for path in sys.argv[1:]:
    p = f = s = 0
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                result = json.loads(line).get("result")
                if result in GOOD:
                    p += 1
                elif result in SKIPPED:
                    s += 1
                else:
                    f += 1
    except OSError as e:
        print(f"{path}: missing ({e.strerror}): counted as a failed run")
        f += 1
    print(f"{path}: {p} passed, {f} failed, {s} skipped")
    passed, failed, skipped = passed + p, failed + f, skipped + s

print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
sys.exit(1 if failed else 0)
