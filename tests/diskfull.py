#!/usr/bin/env python3
"""
NAME
    diskfull.py - sessdemo with its cache on a full file system

SYNOPSIS
    diskfull.py

DESCRIPTION
    Mounts a 256 KiB tmpfs in a temporary directory, starts sessdemo with
    4 workers and its cache there, and drives it with sessload on
    loopback:

    1. fill: batches of new sessions (sessload --new) until the file
       system is full or the store reports it; after each batch the
       records in the file are listed with sessdump, and every ID seen
       is remembered;
    2. while full: more new sessions (TLS 1.2 and 1.3) and resumption
       attempts; every connection must complete a handshake;
    3. space comes back (mount -o remount,size=4m): after a few
       connections and RETRY_GRACE seconds, new sessions must be stored
       again, and resumption works again.

    Then: every record listed before, when or while the disk was full is
    still in the file (nothing stored before is lost); every session of phase 3
    is in it; sessdump verify passes; the directory holds only the
    database and its lock file (no "*.corrupt-*", no temporary file); the
    server's log says nothing about a dead writer, a store moved aside or
    a new store, and has a bounded number of lines about the full disk
    (at most LINES_PER_CHANGE per worker per state change, not one per
    handshake); the store counted the failed writes (errors in the
    workers' counters); sessdemo stops cleanly.

    Needs root (to mount); without it, or if mount fails (a container
    without CAP_SYS_ADMIN), the test is skipped with the reason.  The
    mount is always undone.

ENVIRONMENT
    SESSDEMO, SESSLOAD, SESSDUMP    the programs (default: the build tree's tools/)
    SESSDB_TOP_BUILDDIR

EXIT STATUS
    0 pass, 1 fail, 77 skip.
"""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import proctools
from proctools import Fail, check, die_with_parent, log

BUILD = os.environ.get("SESSDB_TOP_BUILDDIR",
                       os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                    "..", "build"))
SESSDEMO = os.environ.get("SESSDEMO", os.path.join(BUILD, "tools", "sessdemo"))
SESSLOAD = os.environ.get("SESSLOAD", os.path.join(BUILD, "tools", "sessload"))
SESSDUMP = os.environ.get("SESSDUMP", os.path.join(BUILD, "tools", "sessdump"))
SKIP = 77
WORKERS = 4
SMALL = "256k"           # the full file system
LARGE = "4m"             # after space comes back
BATCH = 40               # connections per fill batch
MAX_BATCHES = 60         # 2,400 connections: the store fills after ~500
LOW_WATER = 8192         # bytes free that count as full
LINES_PER_CHANGE = 3     # log lines about the disk per worker per change
RETRY_GRACE = 1.5        # seconds after space comes back before counting
SPACE_RE = re.compile(r"no space|ENOSPC|disk full|file ?system (is )?full|"
                      r"out of space", re.I)
FORBIDDEN = ("died while writing", "moved aside", "starting a new store",
             "starting an empty store", "not recoverable")


PROBLEMS = []


def expect(cond, msg):
    """expect - note a failure and go on, so one run reports them all"""
    if not cond:
        log("FAIL: " + msg)
        PROBLEMS.append(msg)


class Server:
    """sessdemo with WORKERS workers, its cache on the small file system."""

    def __init__(self, tmp, cache):
        self.tmp = tmp
        self.cache = cache
        self.accesslog = os.path.join(tmp, "access.log")
        self.stdout = os.path.join(tmp, "server.out")
        self.stderr = os.path.join(tmp, "server.err")
        self.proc = None
        self.port = None

    def start(self):
        ready = os.path.join(self.tmp, "ready")
        cmd = [SESSDEMO, "--port", "0", "--workers", str(WORKERS),
               "--ready-file", ready, "--access-log", self.accesslog,
               "--timeout", "3", "--cache", self.cache]
        with open(self.stdout, "w") as out, open(self.stderr, "w") as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=self.tmp,
                                         preexec_fn=die_with_parent)
        self.port = proctools.wait_ready(self.proc, ready)
        if self.port is None:
            raise Fail("sessdemo did not start: " + self.errors())

    def stop(self):
        """stop - SIGTERM, wait (SIGKILL if it hangs); exit status, stdout"""
        if self.proc is None:
            return None, ""
        rc, self.proc = proctools.stop(self.proc), None
        with open(self.stdout) as f:
            return rc, f.read()

    def errors(self):
        with open(self.stderr, errors="replace") as f:
            return f.read()

    def session_ids(self, skip=0):
        """session_ids - the session IDs of the access log's lines after
        the first `skip`, and the number of lines"""
        with open(self.accesslog) as f:
            lines = f.read().splitlines()
        ids = []
        for line in lines[skip:]:
            fields = line.split()
            if len(fields) >= 4 and fields[3] != "-":
                ids.append(fields[3])
        return ids, len(lines)

    def wait_logged(self, skip, n, secs=10):
        """wait_logged - the session IDs after line `skip` once n lines
        follow it: a worker logs a connection after the client saw it
        end, so the last lines may come a moment after sessload exits"""
        deadline = time.monotonic() + secs
        while True:
            ids, total = self.session_ids(skip)
            if total - skip >= n or time.monotonic() > deadline:
                return ids
            time.sleep(0.05)


def load(srv, n, tls, new):
    """load - n connections, 4 at a time; every one must complete"""
    cmd = [SESSLOAD, "--connect", "127.0.0.1:%d" % srv.port, "--connections",
           str(n), "--parallel", "4", "--tls", tls, "--json"]
    if new:
        cmd.append("--new")
    p = subprocess.run(cmd, stdout=subprocess.PIPE, timeout=120)
    try:
        r = json.loads(p.stdout)
    except ValueError:
        raise Fail("sessload printed no report (exit %d): %r" % (p.returncode, p.stdout))
    check(p.returncode == 0 and r["ok"] == n and r["failed"] == 0,
          "%d of %d connections failed (TLS %s%s): %r" %
          (r["failed"], n, tls, " --new" if new else "", r))
    return r


def stored_ids(db):
    """stored_ids - the IDs sessdump lists, or None if it cannot read the file"""
    p = subprocess.run([SESSDUMP, "--db", db, "list", "--json"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    if p.returncode != 0:
        log("sessdump list: exit %d: %s" % (p.returncode, p.stderr.decode().strip()))
        return None
    return {r["id"] for r in json.loads(p.stdout)["records"] if r.get("id")}


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def space_lines(srv):
    return [l for l in srv.errors().splitlines() if SPACE_RE.search(l)]


def strays(mnt, db):
    """strays - files beside the database other than it and its lock file"""
    keep = {os.path.basename(db), os.path.basename(db) + ".lock"}
    return sorted(set(os.listdir(mnt)) - keep)


def fill(srv, mnt, db):
    """fill - new sessions until the disk is full; the IDs seen stored"""
    seen = set()
    for batch in range(MAX_BATCHES):
        load(srv, BATCH, "1.3", True)
        ids = stored_ids(db)
        if ids is not None:
            seen |= ids
        full = free_bytes(mnt) < LOW_WATER or space_lines(srv)
        log("batch %d: %s records listed, %d seen, %d bytes free%s" %
            (batch, "?" if ids is None else len(ids), len(seen),
             free_bytes(mnt), ", full" if full else ""))
        if full:
            return seen
    raise Fail("the %s file system never filled after %d connections" %
               (SMALL, MAX_BATCHES * BATCH))


def while_full(srv, mnt, db):
    """while_full - new sessions and resumption attempts on the full disk"""
    results = [load(srv, 200, "1.3", True), load(srv, 100, "1.2", True),
               load(srv, 100, "1.3", False), load(srv, 100, "1.2", False)]
    conns = sum(r["ok"] for r in results)
    log("while full: %d connections completed, %d resumed; %d bytes free" %
        (conns, sum(r["resumed"] for r in results), free_bytes(mnt)))
    lines = space_lines(srv)
    store_lines = [l for l in srv.errors().splitlines() if "store:" in l]
    bound = LINES_PER_CHANGE * WORKERS
    log("log lines so far: %d about the full disk, %d from the store" %
        (len(lines), len(store_lines)))
    expect(len(lines) >= 1, "the full disk was never logged (ENOSPC must be "
           "reported, logged once per state change)")
    expect(len(lines) <= bound and len(store_lines) <= bound,
           "after %d connections on the full disk the log has %d lines about "
           "it and %d store lines, want at most %d (once per state change, "
           "not per handshake); first: %s" %
           (conns, len(lines), len(store_lines), bound, store_lines[:3]))
    s = strays(mnt, db)
    expect(not s, "files beside the store while full: %s" % s)


def after_space(srv, mnt, db):
    """after_space - remount larger; stores work again.  The phase's IDs."""
    subprocess.run(["mount", "-o", "remount,size=" + LARGE, mnt], check=True,
                   timeout=30)
    log("remounted with %s: %d bytes free" % (LARGE, free_bytes(mnt)))
    # A library may look at a full disk again only now and then (say once
    # a second) rather than on every put: give it that before counting.
    _, before = srv.session_ids()
    load(srv, 20, "1.2", True)
    time.sleep(RETRY_GRACE)
    srv.wait_logged(before, 20)
    _, skip = srv.session_ids()
    load(srv, 100, "1.2", True)
    ids = srv.wait_logged(skip, 100)
    check(len(ids) == 100, "access log has %d sessions for 100 connections" %
          len(ids))
    r = load(srv, 100, "1.2", False)
    log("resumption after space came back: %r" % r)
    expect(r["resumed"] >= 0.9 * (100 - 4),
          "%d of 96 possible resumptions after space came back" % r["resumed"])
    return set(ids)


def final_checks(srv, out, rc, mnt, db, before, after):
    errs = srv.errors()
    expect(rc == 0, "sessdemo exited with %s:\n%s" % (rc, errs[-3000:]))
    said = {phrase: errs.count(phrase) for phrase in FORBIDDEN}
    expect(not any(said.values()), "the server log took the full disk for a "
           "dead writer or a damaged store: %s; first lines:\n%s" %
           (", ".join("%r %d times" % kv for kv in said.items() if kv[1]),
            "\n".join(errs.splitlines()[:5])))
    lines = space_lines(srv)
    bound = LINES_PER_CHANGE * WORKERS * 2
    expect(len(lines) <= bound, "%d log lines about the disk, want at most %d" %
          (len(lines), bound))
    store_lines = [l for l in errs.splitlines() if "store:" in l]
    log("server log: %d lines, %d from the store, %d about the disk" %
        (len(errs.splitlines()), len(store_lines), len(lines)))
    expect(len(store_lines) <= bound, "%d store log lines, want at most %d: %s" %
          (len(store_lines), bound, store_lines[:5]))
    errors = sum(int(n) for n in re.findall(r"store hits.* errors (\d+)", out))
    log("store errors counted by the workers: %d" % errors)
    expect(errors > 0, "the workers' store counters show no failed write")

    s = strays(mnt, db)
    expect(not s, "files beside the store: %s" % s)
    ids = stored_ids(db)
    check(ids is not None, "sessdump cannot list the store after the run")
    lost = before - ids
    log("records listed up to the end of the full phase: %d, still there: %d" %
        (len(before), len(before) - len(lost)))
    expect(not lost, "%d of %d records stored before the disk filled are gone "
          "(e.g. %s)" % (len(lost), len(before), sorted(lost)[:3]))
    missing = after - ids
    expect(not missing, "%d of %d sessions made after space came back were not "
          "stored" % (len(missing), len(after)))
    p = subprocess.run([SESSDUMP, "--db", db, "verify", "--quiet"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    expect(p.returncode == 0, "sessdump verify: exit %d: %s" %
          (p.returncode, p.stdout.decode().strip()))


def run(tmp, mnt):
    db = os.path.join(mnt, "sessions.db")
    srv = Server(tmp, db)
    srv.start()
    try:
        before = fill(srv, mnt, db)
        check(len(before) > 0, "no record was ever listed before the disk filled")
        while_full(srv, mnt, db)
        # What the store held when the writes began to fail is kept too.
        ids = stored_ids(db)
        if ids is not None:
            log("after the full phase: %d records listed, %d not seen before" %
                (len(ids), len(ids - before)))
            before |= ids
        after = after_space(srv, mnt, db)
    finally:
        rc, out = srv.stop()
    final_checks(srv, out, rc, mnt, db, before, after)
    if PROBLEMS:
        log("%d problems (listed above)" % len(PROBLEMS))
        return 1
    log("pass: %d records from before the disk filled kept, %d new sessions "
        "stored after" % (len(before), len(after)))
    return 0


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    for prog in (SESSDEMO, SESSLOAD, SESSDUMP):
        if not os.access(prog, os.X_OK):
            print("not built: " + prog)
            return 1
    if os.geteuid() != 0:
        print("SKIP: mounting a small tmpfs needs root")
        return SKIP
    with tempfile.TemporaryDirectory(prefix="sessdb-diskfull.") as tmp:
        mnt = os.path.join(tmp, "small")
        os.mkdir(mnt, 0o700)
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % SMALL,
                            "sessdb-diskfull", mnt], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=30)
        if p.returncode != 0:
            print("SKIP: cannot mount a tmpfs: %s" % p.stdout.decode().strip())
            return SKIP
        try:
            return run(tmp, mnt)
        except (Fail, subprocess.TimeoutExpired, subprocess.CalledProcessError) as e:
            print("FAIL: %s" % e, flush=True)
            return 1
        finally:
            if subprocess.run(["umount", mnt]).returncode != 0:
                subprocess.run(["umount", "-l", mnt])


if __name__ == "__main__":
    sys.exit(main())
