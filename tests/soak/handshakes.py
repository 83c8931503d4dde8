#!/usr/bin/env python3
"""
NAME
    handshakes.py - a million resumed handshakes through sessdemo, its
    memory sampled; or a LeakSanitizer build's run with zero leaks

SYNOPSIS
    SESSDEMO=... SESSLOAD=... tests/soak/handshakes.py [--count N]
        [--chunk K] [--workers W] [--parallel C] [--tls both|1.2|1.3]
        [--lsan]

DESCRIPTION
    A manual long run (not in CI; scripts/soak.sh runs it).  Starts one
    sessdemo (W workers, default 4) on a store of its own, then runs
    sessload in chunks of K connections (default 50000), alternating TLS
    1.3 and 1.2 (or only the one --tls names), C lanes at a time (default 8), until N connections
    (default 1000000) are made.  Between chunks it samples the resident
    memory (VmRSS) of sessdemo and each worker, and every 2 s during them.

    Checks: no failed connection; every connection that offered a session
    resumed (each chunk's first connection per lane offers none); the
    workers are the same processes at the end as after the first chunk
    (none died and was restarted); and memory is flat: the workers' total
    RSS at the end exceeds its value after the second chunk (once the
    caches are warm) by at most 10% + 4 MiB.  Prints the samples.

    --lsan: the binaries are an ASan build (meson -Db_sanitize=address):
    LeakSanitizer runs at each process's exit, reports go to files in the
    temporary directory, and any report, or a non-zero exit of sessdemo
    (a worker's sanitizer report changes it), fails the run.

EXIT STATUS
    0 if every check held, 1 otherwise, 77 if the programs are missing.
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import proctools  # noqa: E402
from proctools import Fail, check, log  # noqa: E402


def rss_kb(pid):
    """rss_kb - VmRSS of pid in KiB, or 0 if it is gone"""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def workers_of(pid):
    """workers_of - the child pids of pid"""
    kids = []
    for path in glob.glob("/proc/%d/task/*/children" % pid):
        try:
            with open(path) as f:
                kids += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return sorted(kids)


class Sampler(threading.Thread):
    """Sampler - the workers' total RSS every interval seconds"""

    def __init__(self, pid, interval=2.0):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.samples, self.stop_ev = [], threading.Event()

    def sample(self):
        kids = workers_of(self.pid)
        total = sum(rss_kb(k) for k in kids)
        self.samples.append((time.time(), rss_kb(self.pid), total, len(kids)))
        return total

    def run(self):
        while not self.stop_ev.wait(self.interval):
            self.sample()


def run_chunk(args, port, tls, n):
    """run_chunk - one sessload run; its JSON report"""
    cmd = [args.sessload, "--connect", "127.0.0.1:%d" % port,
           "--connections", str(n), "--parallel", str(args.parallel),
           "--tls", tls, "--timeout", "10", "--json"]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=args.env, timeout=3600)
    check(out.returncode == 0, "sessload exited %d: %s" % (out.returncode,
                                                           out.stderr[-500:]))
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=1000000)
    ap.add_argument("--chunk", type=int, default=50000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--tls", choices=["both", "1.2", "1.3"], default="both")
    ap.add_argument("--lsan", action="store_true")
    args = ap.parse_args()
    args.sessdemo = os.environ.get("SESSDEMO")
    args.sessload = os.environ.get("SESSLOAD")
    if not (args.sessdemo and os.access(args.sessdemo, os.X_OK) and
            args.sessload and os.access(args.sessload, os.X_OK)):
        print("skipped: set SESSDEMO and SESSLOAD to the programs")
        return 77
    tmp = tempfile.mkdtemp(prefix="handshakes.")
    args.env = dict(os.environ)
    if args.lsan:
        args.env["ASAN_OPTIONS"] = ("detect_leaks=1:log_path=%s/asan"
                                    % tmp)
    ready = os.path.join(tmp, "ready")
    err_path = os.path.join(tmp, "sessdemo.err")
    cmd = [args.sessdemo, "--port", "0", "--workers", str(args.workers),
           "--ready-file", ready, "--cache", os.path.join(tmp, "s.db"),
           "--session-timeout", "60", "--timeout", "10"]
    with open(err_path, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err,
                                env=args.env, preexec_fn=proctools.die_with_parent)
    port = proctools.wait_ready(proc, ready)
    check(port is not None, "sessdemo did not start")
    sampler = Sampler(proc.pid)
    sampler.start()
    done, chunk_no, failed, offered, resumed = 0, 0, 0, 0, 0
    after = []          # workers' RSS after each chunk
    first_pids = None
    start = time.time()
    try:
        while done < args.count:
            n = min(args.chunk, args.count - done)
            tls = args.tls if args.tls != "both" else \
                "1.3" if chunk_no % 2 == 0 else "1.2"
            r = run_chunk(args, port, tls, n)
            done += n
            chunk_no += 1
            failed += r["failed"]
            offered += r["offered"]
            resumed += r["resumed"]
            after.append(sampler.sample())
            if first_pids is None:
                first_pids = workers_of(proc.pid)
            log("chunk %d (TLS %s): %d connections, %d failed, %d offered, "
                "%d resumed, %.0f conn/s; workers' RSS %d KiB, sessdemo %d KiB"
                % (chunk_no, tls, n, r["failed"], r["offered"], r["resumed"],
                   r["conn_per_sec"], after[-1], sampler.samples[-1][1]))
            check(r["failed"] == 0, "%d connections failed" % r["failed"])
            check(r["resumed"] == r["offered"], "offered %d, resumed %d"
                  % (r["offered"], r["resumed"]))
        last_pids = workers_of(proc.pid)
    finally:
        sampler.stop_ev.set()
        rc = proctools.stop(proc)
    secs = time.time() - start
    peak = max(s[2] for s in sampler.samples)
    log("total: %d connections in %.0f s (%.0f/s), %d failed, %d offered, "
        "%d resumed" % (done, secs, done / secs, failed, offered, resumed))
    log("workers' RSS KiB after each chunk: %s; peak sampled %d"
        % (" ".join(str(a) for a in after), peak))
    check(first_pids == last_pids, "workers changed: %s -> %s"
          % (first_pids, last_pids))
    if len(after) >= 3:
        base = after[1]
        check(after[-1] <= base * 1.10 + 4096, "memory grew: %d KiB after "
              "chunk 2, %d KiB at the end" % (base, after[-1]))
    with open(err_path) as f:
        errs = f.read()
    check(rc == 0, "sessdemo exited %d: %s" % (rc, errs[-2000:]))
    if args.lsan:
        reports = glob.glob(os.path.join(tmp, "asan*"))
        leaks = 0
        for path in reports:
            with open(path) as f:
                text = f.read()
            leaks += text.count("ERROR: LeakSanitizer")
            log("sanitizer report %s:\n%s" % (path, text[:3000]))
        log("LeakSanitizer: %d report files, %d leak reports"
            % (len(reports), leaks))
        check(not reports, "sanitizer reports: %s" % reports)
    log("passed")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Fail as e:
        log("FAILED: %s" % e)
        sys.exit(1)
