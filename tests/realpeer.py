#!/usr/bin/env python3
"""
NAME
    realpeer.py - real TLS clients against sessdemo with 4 workers

SYNOPSIS
    realpeer.py CASE [ARGS...]

    realpeer.py client openssl|gnutls|python 1.2|1.3 cache|nocache
    realpeer.py early-data
    realpeer.py gnutls-early-data
    realpeer.py restart 1.2|1.3
    realpeer.py sessload
    realpeer.py bad-clients
    realpeer.py abrupt-close 1.2|1.3
    realpeer.py client-cert 1.2|1.3
    realpeer.py server-identity 1.2|1.3
    realpeer.py wipe
    realpeer.py usage
    realpeer.py signals

DESCRIPTION
    Each case starts its own sessdemo (--port 0, so cases run in parallel)
    in a temporary directory, drives it with real clients, and stops it
    in a finally block (also on SIGTERM from meson's timeout).

    client: a chain of connections, each offering the session saved by the
    previous one.  With the shared cache every offer must resume and at
    least one must resume on a worker other than the one that served the
    previous connection; with --no-cache no resumption may ever cross
    workers.  The worker pid comes from the
    response body and, for gnutls-cli (whose first connection sends no
    request), from the access log.

    early-data: the same ticket's early data sent twice (concurrently and
    one after the other): at most one accepts it.

    gnutls-early-data: gnutls-cli's 0-RTT request is accepted by whichever
    worker it reaches.

    restart: a session survives a killed (and restarted) worker and a
    restart of the whole server.

    sessload: the load client's own report (resumed fraction, cross-worker
    resumptions) with and without the cache.

    abrupt-close: a client that drops TCP without close_notify right after
    the handshake (as gnutls-cli --resume and many browsers do) and
    reconnects at once still resumes.

    bad-clients: garbage, resets, silence and half handshakes end only
    their connection: no worker dies, and the server keeps resuming.

    client-cert: with --verify-client, sessions resume across workers and
    the client certificate comes back from the store with them.

    server-identity: two servers with different certificates
    (data/server-chain.pem, ECDSA, and data/server-rsa-chain.pem, RSA) on one
    cache file.  A session of one, offered to the other by s_client and by
    Python, is not resumed there, and is still resumed by the server that
    made it; first with the session-ID contexts sessdemo derives from the
    certificates, then with one context named by hand for both
    (--session-id-context www), where only the library's identity check
    stands in the way: both times each refusal is counted in the glue's
    foreign counter.

    wipe: sessions made by one sessdemo are resumed (TLS 1.2 and 1.3) by a
    second one on the same cache file, whose processes run under
    tests/freescan.c with the sessions' master keys: no block freed by
    libsessdb (the glue's DER and decoded sessions, the store's records) or
    by sessdemo may still hold one.  OpenSSL's own (d2i_SSL_SESSION's
    temporary copy, which also shows that the scan sees the keys) and
    GDBM's are printed, not failed.

    usage: bad command lines of sessdemo and sessload exit 2 with usage.

    signals: SIGINT, SIGHUP, SIGTERM stop the server with all counters;
    workers do not outlive a parent killed with SIGKILL.

ENVIRONMENT
    SESSDEMO, SESSLOAD     the programs (default: the build tree's tools/)
    FREESCAN_SO            tests/freescan.c built (case wipe; skipped without)
    SESSDB_TOP_SRCDIR      for data/ca.pem
    SESSDB_TOP_BUILDDIR

EXIT STATUS
    0 pass, 1 fail, 77 skip (a client program is missing).
"""
import json
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

import proctools
from proctools import Fail, check, die_with_parent, log

SRC = os.environ.get("SESSDB_TOP_SRCDIR",
                     os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
BUILD = os.environ.get("SESSDB_TOP_BUILDDIR", os.path.join(SRC, "build"))
SESSDEMO = os.environ.get("SESSDEMO", os.path.join(BUILD, "tools", "sessdemo"))
SESSLOAD = os.environ.get("SESSLOAD", os.path.join(BUILD, "tools", "sessload"))
CA = os.path.join(SRC, "data", "ca.pem")
RSA_CHAIN = os.path.join(SRC, "data", "server-rsa-chain.pem")
RSA_KEY = os.path.join(SRC, "data", "server-rsa.key")
REQUEST = b"GET / HTTP/1.0\r\n\r\n"
CHAIN = 8          # resumptions per client chain
SKIP = 77
RST_LINGER = struct.pack("ii", 1, 0)   # SO_LINGER on, 0 s: close() sends RST


class Server:
    """A sessdemo process with its own directory, port and access log."""

    def __init__(self, tmp, *args, cache=None, workers=4, env=None):
        self.tmp = tmp
        self.args = list(args)
        self.env = env
        self.cache = cache or os.path.join(tmp, "sessions.db")
        self.workers = workers
        self.proc = None
        self.port = None
        self.accesslog = os.path.join(tmp, "access.log")
        self.out = None
        self.runs = 0

    def start(self, nocache=False):
        """start - run sessdemo and wait for its ready file"""
        self.runs += 1
        ready = os.path.join(self.tmp, "ready")
        if os.path.exists(ready):
            os.unlink(ready)
        store = ["--no-cache"] if nocache else ["--cache", self.cache]
        self.stdout = os.path.join(self.tmp, "server%d.out" % self.runs)
        self.stderr = os.path.join(self.tmp, "server%d.err" % self.runs)
        cmd = [SESSDEMO, "--port", "0", "--workers", str(self.workers),
               "--ready-file", ready, "--access-log", self.accesslog,
               "--timeout", "3"] + store + self.args
        with open(self.stdout, "w") as out, open(self.stderr, "w") as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=self.tmp,
                                         env=self.env, preexec_fn=die_with_parent)
        self.port = proctools.wait_ready(self.proc, ready)
        if self.port is None:
            raise Fail("sessdemo did not start: " + self.errors())
        return self

    def stop(self):
        """stop - SIGTERM, wait (SIGKILL if it hangs); the stdout text"""
        if self.proc is None:
            return ""
        rc, self.proc = proctools.stop(self.proc), None
        # a clean stop: exit 0 and every worker exited 0 (a sanitizer's
        # report in a worker or in the parent changes the status)
        check(rc == 0, "sessdemo exited with %d:\n%s" % (rc, self.errors()))
        check("stopped with" not in self.errors(), "a worker did not stop "
              "cleanly:\n" + self.errors())
        with open(self.stdout) as f:
            return f.read()

    def errors(self):
        with open(self.stderr) as f:
            return f.read()

    def log_lines(self):
        """log_lines - the access log as (pid, proto, resumed, sid, status, req)"""
        if not os.path.exists(self.accesslog):
            return []
        rows = []
        with open(self.accesslog) as f:
            for line in f:
                m = re.match(r'^(\d+) (\S+) ([r.]) (\S+) (\S+) "(.*)"$', line.rstrip("\n"))
                check(m is not None, "malformed access log line: %r" % line)
                rows.append((int(m.group(1)), m.group(2), m.group(3) == "r",
                             m.group(4), m.group(5), m.group(6)))
        return rows

    def wait_log(self, n, timeout=10):
        """wait_log - the access log once it has at least n lines"""
        deadline = time.time() + timeout
        while True:
            rows = self.log_lines()
            if len(rows) >= n or time.time() > deadline:
                return rows
            time.sleep(0.05)


def parse_body(text):
    """parse_body - (pid, resumed, early) from sessdemo's response, or None"""
    m = re.search(r"pid=(\d+) worker=\d+ resumed=([01]) protocol=\S+ cipher=\S+ "
                  r"early_data=(\w+)", text)
    if m is None:
        return None
    return int(m.group(1)), m.group(2) == "1", m.group(3)


# ---- clients: each returns (pid, resumed) and saves the new session ----

def openssl_conn(srv, tls, sess_in, sess_out, extra=(), stdin=REQUEST):
    """openssl_conn - one s_client connection; (pid, resumed, output)"""
    cmd = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % srv.port,
           "-tls1_2" if tls == "1.2" else "-tls1_3", "-CAfile", CA,
           "-verify_return_error", "-ign_eof", "-sess_out", sess_out]
    if sess_in:
        cmd += ["-sess_in", sess_in]
    cmd += list(extra)
    p = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=30)
    out = p.stdout.decode("latin-1")
    if sess_in and not os.path.exists(sess_out):
        # TLS 1.2: a resumed session is not new, s_client does not save it
        shutil.copyfile(sess_in, sess_out)
    body = parse_body(out)
    check(body is not None, "s_client got no response:\n" + out)
    client_reused = "Reused, TLSv" in out
    check(client_reused == body[1],
          "s_client says %s but the server says resumed=%d" %
          ("Reused" if client_reused else "New", body[1]))
    return body[0], body[1], out


def python_conn(srv, tls, session, ctx=None, want_client=None):
    """python_conn - one ssl-module connection; (pid, resumed, new session).
    want_client: the client certificate CN the server must report."""
    ctx = ctx or python_ctx(tls)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
            s.sendall(REQUEST)
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            body = parse_body(data.decode("latin-1"))
            check(body is not None, "python got no response: %r" % data)
            check(s.session_reused == body[1],
                  "ssl says reused=%s, server says %s" % (s.session_reused, body[1]))
            if want_client is not None:
                m = re.search(r" client=(.*)\n", data.decode("latin-1"))
                check(m is not None and m.group(1) == want_client,
                      "server saw client %r, want %r (resumed=%d)" %
                      (m and m.group(1), want_client, body[1]))
            return body[0], body[1], s.session


_ctx_cache = {}


def python_ctx(tls):
    """python_ctx - one client context per version (sessions need the same)"""
    if tls not in _ctx_cache:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(CA)
        v = ssl.TLSVersion.TLSv1_2 if tls == "1.2" else ssl.TLSVersion.TLSv1_3
        ctx.minimum_version = ctx.maximum_version = v
        _ctx_cache[tls] = ctx
    return _ctx_cache[tls]


def gnutls_run(srv, tls):
    """gnutls_run - gnutls-cli --resume: (full pid, resumed pid or None,
    the first connection's session ID)"""
    before = len(srv.log_lines())
    prio = "NORMAL:-VERS-ALL:+VERS-TLS" + tls
    cmd = ["gnutls-cli", "--x509cafile", CA, "-p", str(srv.port), "127.0.0.1",
           "--resume", "--priority", prio]
    if tls == "1.3":
        cmd.append("--waitresumption")
    p = subprocess.run(cmd, input=REQUEST, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=30)
    out = p.stdout.decode("latin-1")
    body = parse_body(out)
    check(body is not None, "gnutls-cli got no response:\n" + out)
    client_resumed = "This is a resumed session" in out
    check(client_resumed == body[1], "gnutls-cli and the server disagree:\n" + out)
    rows = srv.wait_log(before + 2)[before:]
    check(len(rows) == 2, "expected 2 access log lines, got %r" % rows)
    second = [r for r in rows if r[0] == body[0] and r[4] == "200"]
    first = [r for r in rows if r[4] == "-"]
    check(len(second) == 1 and len(first) == 1,
          "cannot tell gnutls-cli's two connections apart: %r" % rows)
    check(not first[0][2], "the first connection cannot be resumed: %r" % rows)
    return first[0][0], (body[0] if body[1] else None), first[0][3]


# ---- cases ----

def chain(srv, tls, client, tmp):
    """chain - 1 + CHAIN connections, each offering the previous session;
    [(pid, resumed)] with the pid that served the previous connection"""
    results = []
    if client == "openssl":
        prev_pid, _, _ = openssl_conn(srv, tls, None, os.path.join(tmp, "s0"))
        for i in range(1, CHAIN + 1):
            pid, resumed, _ = openssl_conn(srv, tls, os.path.join(tmp, "s%d" % (i - 1)),
                                           os.path.join(tmp, "s%d" % i))
            results.append((prev_pid, pid, resumed))
            prev_pid = pid
    elif client == "python":
        prev_pid, _, sess = python_conn(srv, tls, None)
        for _ in range(CHAIN):
            pid, resumed, sess = python_conn(srv, tls, sess)
            results.append((prev_pid, pid, resumed))
            prev_pid = pid
    else:
        for _ in range(CHAIN):
            first, second, sid = gnutls_run(srv, tls)
            results.append((first, second if second else first, second is not None, sid))
    return results


def stored_ids(srv):
    """stored_ids - the session IDs (hex) in the cache file, via sessdemo --list"""
    p = subprocess.run([SESSDEMO, "--list", "--cache", srv.cache],
                       stdout=subprocess.PIPE, timeout=30)
    check(p.returncode == 0, "sessdemo --list failed")
    return {line.split()[0] for line in p.stdout.decode().splitlines()
            if "  ns " in line}


def late_stores(srv, res, tls):
    """late_stores - gnutls-cli --resume reconnects within a millisecond of
    receiving the server's TLS 1.2 Finished; OpenSSL stores the session
    only after sending it, so the second connection can reach another
    worker before the store is written (any external cache has this
    race).  Tolerate a few such misses, but only if the session did reach
    the store: a session that was never stored is a failure."""
    missed = [r[3] for r in res if not r[2]]
    return check_late(srv, missed, tls, len(res))


def check_late(srv, missed, tls, total):
    """check_late - the missed resumptions (session IDs, hex) were TLS 1.2
    late stores: each session is in the store now"""
    if not missed:
        return 0
    check(tls == "1.2", "TLS 1.3 missed resumptions: %r" % missed)
    ids = stored_ids(srv)
    for sid in missed:
        check(sid in ids, "session %s was never stored (or was removed)" % sid)
    # How many come back too early depends on scheduling (a loaded CI
    # machine makes the window wider); that at least one resumption
    # crossed workers is checked by the caller.
    check(len(missed) < total, "no session resumed at all")
    log("%d connection(s) came back before the session was stored (it was, later)" %
        len(missed))
    return len(missed)


def case_client(tmp, client, tls, mode):
    """case_client - resumption across workers with one client program"""
    prog = {"openssl": "openssl", "gnutls": "gnutls-cli", "python": None}[client]
    if prog and shutil.which(prog) is None:
        log("SKIP: %s not installed" % prog)
        return SKIP
    srv = Server(tmp).start(nocache=(mode == "nocache"))
    try:
        res = chain(srv, tls, client, tmp)
        # Which worker accepts is the kernel's choice: on a busy machine
        # one worker can take a whole chain.  With the cache, chain again
        # (a few times at most) until a resumption crosses workers.
        for _ in range(4):
            if mode != "cache" or any(r[2] and r[0] != r[1] for r in res):
                break
            res += chain(srv, tls, client, tmp)
    finally:
        out = srv.stop()
    resumed = sum(1 for r in res if r[2])
    cross = sum(1 for r in res if r[2] and r[0] != r[1])
    pids = {r[1] for r in res} | {r[0] for r in res}
    log("%s TLS %s %s: %d/%d resumed, %d on another worker, pids %s" %
        (client, tls, mode, resumed, len(res), cross, sorted(pids)))
    for r in srv.log_lines():
        check(r[1] == "TLSv" + tls, "wrong protocol in %r" % (r,))
    if mode == "cache":
        late = late_stores(srv, res, tls) if client == "gnutls" else 0
        check(resumed + late == len(res), "with the shared cache every offer must resume")
        check(cross >= 1, "no resumption crossed workers (pids %s)" % sorted(pids))
        check("failed 0" in out and "restarts" in out, "server report:\n" + out)
    else:
        # Without a shared cache no worker can resume another's session.
        # How often a client lands on the same worker again depends on
        # scheduling (gnutls-cli reconnects within a millisecond), so the
        # fraction is asserted only by the sessload case, over 200
        # connections.
        check(cross == 0, "--no-cache resumed on another worker: impossible")
    return 0


def early_pair(srv, tmp, rnd, concurrent):
    """early_pair - one fresh ticket, its early data sent twice; the number
    of acceptances and the two worker pids"""
    base = os.path.join(tmp, "e%d" % rnd)
    openssl_conn(srv, "1.3", None, base)
    req = os.path.join(tmp, "req")
    with open(req, "wb") as f:
        f.write(REQUEST)
    outs = [None, None]

    def go(i):
        outs[i] = openssl_conn(srv, "1.3", base, base + "-%d" % i,
                               extra=["-early_data", req])

    if concurrent:
        ts = [threading.Thread(target=go, args=(i,)) for i in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    else:
        go(0)
        go(1)
    check(all(outs), "an early-data client failed")
    accepted = sum(1 for o in outs if "Early data was accepted" in o[2])
    for o in outs:
        check("Early data was accepted" in o[2] or "Early data was rejected" in o[2],
              "early data not sent:\n" + o[2])
    return accepted, outs[0][0], outs[1][0]


def case_early_data(tmp):
    """case_early_data - one ticket's 0-RTT data is accepted at most once"""
    if shutil.which("openssl") is None:
        return SKIP
    srv = Server(tmp, "--early-data", "--tls", "1.3").start()
    try:
        rounds = []
        for rnd in range(6):
            rounds.append(early_pair(srv, tmp, rnd, concurrent=(rnd % 2 == 0)))
    finally:
        out = srv.stop()
    log("early data rounds (accepted, pid, pid): %r" % rounds)
    for acc, _, _ in rounds:
        check(acc <= 1, "a ticket's early data was accepted twice")
    check(any(acc == 1 for acc, _, _ in rounds), "early data was never accepted")
    check(any(a != b for _, a, b in rounds), "the two clients never reached two workers")
    check("early-data accepted" in out, "server report:\n" + out)
    srv = Server(tmp, "--early-data", "--tls", "1.3").start()
    try:
        r = sessload(srv, "1.3", 100, ["--early-data"])
    finally:
        srv.stop()
    log("sessload --early-data: %r" % r)
    check(r["early_sent"] == r["offered"] > 0, "early data not sent on every resumption")
    check(r["early_accepted"] >= 0.9 * r["early_sent"], "fresh tickets' early data rejected")
    return 0


def case_gnutls_early(tmp):
    """case_gnutls_early - another TLS stack's 0-RTT: gnutls-cli --resume
    --earlydata sends its request as early data on the resumed connection,
    which any worker accepts from the shared store"""
    if shutil.which("gnutls-cli") is None:
        log("SKIP: gnutls-cli not installed")
        return SKIP
    req = os.path.join(tmp, "early-req")
    with open(req, "wb") as f:
        f.write(b"GET /early HTTP/1.0\r\n\r\n")
    srv = Server(tmp, "--early-data", "--tls", "1.3").start()
    cross = rounds = 0
    try:
        # Which worker accepts is the kernel's choice: on a busy machine one
        # worker can take every connection.  At least 6 rounds, more (up to
        # 24) until one resumption has crossed workers.
        while rounds < 6 or (cross == 0 and rounds < 24):
            rounds += 1
            before = len(srv.log_lines())
            p = subprocess.run(["gnutls-cli", "--x509cafile", CA, "-p", str(srv.port),
                                "127.0.0.1", "--resume", "--waitresumption",
                                "--earlydata", req], input=b"",
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=30)
            out = p.stdout.decode("latin-1")
            body = parse_body(out)
            check(body is not None and body[1], "gnutls-cli did not resume:\n" + out)
            check(body[2] == "accepted", "early data not accepted:\n" + out)
            rows = srv.wait_log(before + 2)[before:]
            check(len(rows) == 2, "expected 2 access log lines: %r" % rows)
            first = [r for r in rows if not r[2]]
            second = [r for r in rows if r[2]]
            check(len(first) == 1 and len(second) == 1, "log: %r" % rows)
            check(second[0][5] == "GET /early HTTP/1.0", "request not from early data")
            cross += first[0][0] != second[0][0]
    finally:
        srv.stop()
    check(cross >= 1, "0-RTT never crossed workers in %d rounds" % rounds)
    log("gnutls-cli 0-RTT: %d/%d accepted, %d on another worker" % (rounds, rounds, cross))
    return 0


def case_restart(tmp, tls):
    """case_restart - a session survives a killed worker and a server restart"""
    srv = Server(tmp).start()
    try:
        pid0, _, sess = python_conn(srv, tls, None)
        os.kill(pid0, signal.SIGKILL)
        deadline = time.time() + 10
        while "restarted as pid" not in srv.errors():
            check(time.time() < deadline, "the killed worker was not restarted")
            time.sleep(0.05)
        seen = set()
        for _ in range(8):
            pid, resumed, sess = python_conn(srv, tls, sess)
            check(resumed, "no resumption after a worker was killed")
            check(pid != pid0, "the killed worker %d answered" % pid0)
            seen.add(pid)
        out = srv.stop()
        check("1 restarts" in out, "restart not counted:\n" + out)
        srv.start()
        pid2, resumed, sess = python_conn(srv, tls, sess)
        check(resumed, "no resumption after the server restarted")
        check(pid2 not in seen and pid2 != pid0, "old worker pid after restart")
        pid3, resumed, _ = python_conn(srv, tls, sess)
        check(resumed, "no resumption of the session made after restart")
        log("TLS %s: worker %d killed, resumed on %s; after restart on %d, %d" %
            (tls, pid0, sorted(seen), pid2, pid3))
    finally:
        srv.stop()
    return 0


def sessload(srv, tls, n=200, extra=()):
    """sessload - run the load client, its JSON report as a dict"""
    p = subprocess.run([SESSLOAD, "--connect", "127.0.0.1:%d" % srv.port,
                        "--connections", str(n), "--parallel", "4", "--tls", tls,
                        "--json"] + list(extra), stdout=subprocess.PIPE, timeout=60)
    check(p.returncode == 0, "sessload failed: %r" % p.stdout)
    return json.loads(p.stdout)


def case_sessload(tmp):
    """case_sessload - the load client's report, cache vs no cache"""
    srv = Server(tmp).start()
    resumed = 0
    try:
        for tls in ("1.2", "1.3"):
            r = sessload(srv, tls)
            resumed += r["resumed"]
            log("cache TLS %s: %r" % (tls, r))
            check(r["failed"] == 0 and r["ok"] == 200, "failures")
            check(r["resumed_fraction"] >= 0.95, "cache resumed too little")
            check(r["resumed"] == r["server_resumed"], "client/server disagree")
            check(r["cross_worker_resumed"] >= 50, "too few cross-worker resumptions")
            check(r["worker_pids"] == 4, "not all 4 workers answered")
            check(r["latency_ms"]["p50"] > 0, "no latency figures")
        r = sessload(srv, "1.3", 40, ["--new"])
        log("cache --new: %r" % r)
        check(r["offered"] == 0 and r["resumed"] == 0, "--new offered sessions")
    finally:
        srv.stop()
    # 4 workers appending at once: one whole line per connection
    rows = srv.log_lines()
    check(len(rows) == 440, "access log has %d lines, want 440" % len(rows))
    check(sum(1 for r in rows if r[2]) == resumed, "access log resumed count")
    srv.start(nocache=True)
    try:
        for tls in ("1.2", "1.3"):
            r = sessload(srv, tls)
            log("no cache TLS %s: %r" % (tls, r))
            check(r["cross_worker_resumed"] == 0, "--no-cache crossed workers")
            check(r["resumed_fraction"] <= 0.75, "--no-cache resumed too much")
    finally:
        srv.stop()
    return 0


def raw_conn(srv, payload, linger_rst=False, read=False):
    """raw_conn - connect, send bytes, maybe reset, close"""
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    try:
        if payload:
            s.sendall(payload)
        if read:
            try:
                s.recv(4096)
            except OSError:
                pass
        if linger_rst:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RST_LINGER)
    finally:
        s.close()


def case_bad_clients(tmp):
    """case_bad_clients - misbehaving clients never kill a worker"""
    srv = Server(tmp, "--early-data").start()
    try:
        _, _, sess = python_conn(srv, "1.3", None)
        for _ in range(3):
            raw_conn(srv, b"")                                # connect, close
            raw_conn(srv, b"GET / HTTP/1.0\r\n\r\n", read=True)  # plaintext HTTP
            raw_conn(srv, os.urandom(300), linger_rst=True)   # garbage, reset
            raw_conn(srv, b"\x16\x03\x01\x40\x00" + os.urandom(64))  # truncated record
        # a TLS client that resets right after its ClientHello
        ctx = python_ctx("1.2")
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        s.setblocking(False)
        tls = ctx.wrap_socket(s, server_hostname="localhost", do_handshake_on_connect=False)
        try:
            tls.do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLError, OSError):
            pass
        tls.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RST_LINGER)
        tls.close()
        # silent clients, more than there are workers, then real requests
        silent = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(5)]
        for _ in range(8):
            pid, resumed, sess = python_conn(srv, "1.3", sess)
            check(resumed, "no resumption after bad clients")
        for s in silent:
            s.close()
        # a request line with odd bytes and a bad method, through TLS
        odd = python_raw_request(srv, b"P\"O\\ST /\x01\xff HTTP/1.1\r\n\r\n")
        check(odd.startswith(b"HTTP/1.1 405"), "bad method: %r" % odd[:40])
        bad = python_raw_request(srv, b"nonsense\r\n\r\n")
        check(bad.startswith(b"HTTP/1.1 400"), "malformed request: %r" % bad[:40])
    finally:
        out = srv.stop()
    check("restarted" not in srv.errors(), "a worker died:\n" + srv.errors())
    check("(4 reports, 0 restarts)" in out, "server report:\n" + out)
    m = re.search(r"^total .* failed (\d+) ", out, re.M)
    failed = int(m.group(1)) if m else 0
    check(failed >= 10, "failed handshakes not counted: %d" % failed)
    rows = srv.log_lines()
    check(any(r[5].startswith('P\\x22O\\x5cST /\\x01\\xff') for r in rows),
          "request line not escaped in the log: %r" % [r[5] for r in rows])
    log("bad clients: %d failed handshakes, no worker died" % failed)
    return 0


def case_abrupt_close(tmp, tls):
    """case_abrupt_close - a client that closes TCP right after the handshake
    (no request, no close_notify) and reconnects at once still resumes"""
    srv = Server(tmp).start()
    ctx = python_ctx(tls)
    missed, cross = [], 0
    try:
        for _ in range(20):
            with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                    if tls == "1.3":
                        s.sendall(REQUEST)     # TLS 1.3 tickets come after the handshake
                        s.recv(4096)
                    sess = s.session
            pid, resumed, _ = python_conn(srv, tls, sess)
            if not resumed:
                missed.append(sess.id.hex())
        rows = srv.wait_log(40)
    finally:
        srv.stop()
    for first, second in zip(rows[0::2], rows[1::2]):
        cross += second[2] and first[0] != second[0]
    log("TLS %s abrupt close: %d/20 missed, %d resumed on another worker" %
        (tls, len(missed), cross))
    check_late(srv, missed, tls, 20)
    return 0


def case_usage(tmp):
    """case_usage - bad options: usage on stderr, exit status 2"""
    bad = [
        [SESSDEMO, "--bogus"], [SESSDEMO, "--port", "65536"],
        [SESSDEMO, "--port", "12x"], [SESSDEMO, "--workers", "0"],
        [SESSDEMO, "--tls", "1.1"], [SESSDEMO, "--cert", "x.pem"],
        [SESSDEMO, "--no-cache", "--list"], [SESSDEMO, "extra"],
        [SESSDEMO, "--cache", "x.db", "--no-cache"],
        [SESSLOAD], [SESSLOAD, "--connect", "nocolon"],
        [SESSLOAD, "--connect", "h:1", "--parallel", "0"],
        [SESSLOAD, "--connect", "h:1", "--tls", "1.0"],
        [SESSLOAD, "--connect", "h:1", "--path", "no-slash"],
    ]
    for cmd in bad:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=10, cwd=tmp)
        check(p.returncode == 2, "%r: exit %d, want 2" % (cmd[1:], p.returncode))
        check(b"usage:" in p.stderr, "%r: no usage on stderr" % (cmd[1:],))
    p = subprocess.run([SESSDEMO, "--port", "0", "--cert", "/nonexistent",
                        "--key", "/nonexistent"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=10, cwd=tmp)
    check(p.returncode == 1, "missing certificate: exit %d, want 1" % p.returncode)
    log("%d bad command lines rejected with status 2" % len(bad))
    return 0


def case_signals(tmp):
    """case_signals - SIGINT, SIGHUP and SIGTERM all stop the server cleanly,
    with every worker's counters; the parent dying takes the workers along"""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        srv = Server(tmp).start()
        python_conn(srv, "1.3", None)
        srv.proc.send_signal(sig)
        srv.proc.wait(timeout=20)
        out = srv.stop()
        check("(4 reports, 0 restarts): connections 1 " in out,
              "signal %d: counters missing:\n%s" % (sig, out))
    srv = Server(tmp).start()
    _, _, _ = python_conn(srv, "1.2", None)
    workers = {python_conn(srv, "1.2", None)[0] for _ in range(8)}
    srv.proc.kill()
    srv.proc.wait()
    srv.proc = None
    deadline = time.time() + 10
    while any(os.path.exists("/proc/%d" % pid) for pid in workers):
        check(time.time() < deadline, "workers outlived a killed parent")
        time.sleep(0.05)
    log("SIGINT, SIGHUP, SIGTERM stop cleanly; workers die with the parent")
    return 0


def case_client_cert(tmp, tls):
    """case_client_cert - with a required client certificate, sessions
    resume across workers and the certificate comes back from the store"""
    srv = Server(tmp, "--verify-client", CA).start()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(CA)
    ctx.load_cert_chain(os.path.join(SRC, "data", "client.pem"),
                        os.path.join(SRC, "data", "client.key"))
    v = ssl.TLSVersion.TLSv1_2 if tls == "1.2" else ssl.TLSVersion.TLSv1_3
    ctx.minimum_version = ctx.maximum_version = v
    cn = "sessdb test client"
    cross = n = 0
    try:
        prev, _, sess = python_conn(srv, tls, None, ctx, cn)
        # At least CHAIN, more (up to 4 x CHAIN) until a resumption has
        # crossed workers: which worker accepts is the kernel's choice.
        while n < CHAIN or (cross == 0 and n < 4 * CHAIN):
            n += 1
            pid, resumed, sess = python_conn(srv, tls, sess, ctx, cn)
            check(resumed, "no resumption with a client certificate")
            cross += pid != prev
            prev = pid
        try:
            python_conn(srv, tls, None)     # no client certificate: refused
            refused = False
        except (ssl.SSLError, OSError, Fail):
            refused = True
        check(refused, "a client without a certificate was served")
    finally:
        srv.stop()
    check(cross >= 1, "no resumption crossed workers")
    log("TLS %s client certificate: %d/%d resumed on another worker, CN kept" %
        (tls, cross, n))
    return 0


def foreign_count(out):
    """foreign_count - the glue's foreign counter summed over the workers
    of a sessdemo stop report"""
    counts = re.findall(r"; glue .* foreign (\d+) ", out)
    check(counts, "no glue counters in the report:\n" + out)
    return sum(int(c) for c in counts)


def cross_offers(a, b, tls, tmp):
    """cross_offers - a session of A offered to B and one of B offered to A,
    by s_client and by Python: none resumes, and each resumes on its own
    server.  Returns how many offers each server refused."""
    servers = (("A", a, False), ("B", b, True))
    sess = {}
    scratch = os.path.join(tmp, "scratch.sess")
    for name, srv, rsa in servers:
        sess[name] = os.path.join(tmp, name + ".sess")
        _, resumed, out = openssl_conn(srv, tls, None, sess[name])
        check(not resumed, "a first connection resumed")
        check(("OU = second server" in out) == rsa,
              "server %s presented the wrong certificate:\n%s" % (name, out))
    for (name, srv, _), other in zip(servers, ("B", "A")):
        if os.path.exists(scratch):
            os.unlink(scratch)
        _, resumed, out = openssl_conn(srv, tls, sess[other], scratch)
        check(not resumed, "s_client: %s resumed %s's TLS %s session:\n%s" %
              (name, other, tls, out[-1500:]))
    for name, srv, _ in servers:
        _, resumed, _ = openssl_conn(srv, tls, sess[name], scratch)
        check(resumed, "s_client: %s did not resume its own TLS %s session" %
              (name, tls))
    py = {name: python_conn(srv, tls, None)[2] for name, srv, _ in servers}
    for (name, srv, _), other in zip(servers, ("B", "A")):
        _, resumed, _ = python_conn(srv, tls, py[other])
        check(not resumed, "Python: %s resumed %s's TLS %s session" %
              (name, other, tls))
    for name, srv, _ in servers:
        _, resumed, _ = python_conn(srv, tls, py[name])
        check(resumed, "Python: %s did not resume its own TLS %s session" %
              (name, tls))
    return 2


def case_server_identity(tmp, tls):
    """case_server_identity - two servers with other certificates on one
    cache file never resume each other's sessions"""
    if shutil.which("openssl") is None:
        log("SKIP: openssl not installed")
        return SKIP
    phases = (("derived", []), ("www", ["--session-id-context", "www"]))
    for name, extra in phases:
        base = os.path.join(tmp, name)
        os.mkdir(base)
        dirs = [os.path.join(base, d) for d in ("a", "b")]
        for d in dirs:
            os.mkdir(d)
        cache = os.path.join(base, "shared.db")
        a = Server(dirs[0], *extra, cache=cache, workers=2)
        b = Server(dirs[1], "--cert", RSA_CHAIN, "--key", RSA_KEY, *extra,
                   cache=cache, workers=2)
        outs = []
        try:
            a.start()
            b.start()
            refused = cross_offers(a, b, tls, base)
        finally:
            for srv in (a, b):
                outs.append(srv.stop())
        for srv, out in zip("AB", outs):
            n = foreign_count(out)
            check(n == refused, "server %s counted %d foreign sessions, want "
                  "%d:\n%s" % (srv, n, refused, out))
        log("TLS %s, %s session-ID contexts: no cross resumption, %d "
            "foreign per server, own sessions resumed" % (tls, name, refused))
    return 0


def master_key(path):
    """master_key - the master key (TLS 1.3: resumption PSK) of a session
    file written by s_client, as hex"""
    p = subprocess.run(["openssl", "sess_id", "-in", path, "-noout", "-text"],
                       stdout=subprocess.PIPE, timeout=30)
    m = re.search(rb"(?:Master-Key|Resumption PSK): ([0-9A-F]+)", p.stdout)
    check(m is not None, "no master key in %s" % path)
    return m.group(1).decode()


def case_wipe(tmp):
    """case_wipe - a worker that resumes sessions from the store leaves no
    freed block of libsessdb's or sessdemo's holding their master keys"""
    so = os.environ.get("FREESCAN_SO", "")
    if not so or not os.path.exists(so) or shutil.which("openssl") is None:
        log("SKIP: FREESCAN_SO (tests/freescan.c) or openssl missing")
        return SKIP
    ldd = subprocess.run(["ldd", SESSDEMO], stdout=subprocess.PIPE).stdout
    if b"libasan" in ldd:
        log("SKIP: sessdemo is built with AddressSanitizer, whose allocator "
            "cannot sit under an LD_PRELOAD free()")
        return SKIP
    made, resumed = [], []
    dirs = [os.path.join(tmp, d) for d in ("maker", "resumer")]
    for d in dirs:
        os.mkdir(d)
    cache = os.path.join(tmp, "sessions.db")
    srv = Server(dirs[0], cache=cache, workers=2).start()
    try:
        for i, tls in enumerate(("1.2", "1.2", "1.3", "1.3")):
            path = os.path.join(tmp, "s%d.pem" % i)
            openssl_conn(srv, tls, None, path)
            made.append((tls, path))
    finally:
        srv.stop()
    keys = [master_key(path)[:32] for _, path in made]
    env = dict(os.environ, FREESCAN=",".join(keys), LD_PRELOAD=so)
    srv = Server(dirs[1], cache=cache, workers=2, env=env).start()
    try:
        for tls, path in made:
            _, r, _ = openssl_conn(srv, tls, path, os.path.join(tmp, "x.pem"))
            resumed.append(r)
    finally:
        srv.stop()
    check(all(resumed), "not every session resumed: %r" % resumed)
    lines = re.findall(r"^freescan: \d+ freed blocks held a secret:(.*)$",
                       srv.errors(), re.M)
    check(len(lines) >= 3, "want a freescan line from the parent and each "
          "worker:\n" + srv.errors())
    total = {}
    for line in lines:
        for kv in line.split():
            obj, n = kv.split("=")
            total[obj] = total.get(obj, 0) + int(n)
    log("blocks freed with a master key, by object, over %d processes: %r" %
        (len(lines), total))
    for obj in ("libsessdb", "program"):
        check(total.get(obj, 0) == 0, "%s freed %d blocks still holding a "
              "master key" % (obj, total.get(obj, 0)))
    # Control: OpenSSL's d2i_SSL_SESSION frees its temporary copy of the
    # key unwiped, one per decoded session: proof that the scan sees them.
    check(total.get("libcrypto", 0) + total.get("libssl", 0) >= len(made),
          "control: the scan did not see OpenSSL's decoding copies")
    return 0


def python_raw_request(srv, req):
    """python_raw_request - send req through TLS, return the raw response"""
    ctx = python_ctx("1.3")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(req)
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    return data
                data += chunk


def main(argv):
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    if not os.access(SESSDEMO, os.X_OK):
        print("sessdemo not built: " + SESSDEMO)
        return 1
    case = argv[1] if len(argv) > 1 else ""
    with tempfile.TemporaryDirectory(prefix="sessdb-realpeer.") as tmp:
        try:
            if case == "client" and len(argv) == 5:
                return case_client(tmp, argv[2], argv[3], argv[4])
            if case == "gnutls-early-data":
                return case_gnutls_early(tmp)
            if case == "early-data":
                return case_early_data(tmp)
            if case == "restart" and len(argv) == 3:
                return case_restart(tmp, argv[2])
            if case == "abrupt-close" and len(argv) == 3:
                return case_abrupt_close(tmp, argv[2])
            if case == "client-cert" and len(argv) == 3:
                return case_client_cert(tmp, argv[2])
            if case == "wipe":
                return case_wipe(tmp)
            if case == "server-identity" and len(argv) == 3:
                return case_server_identity(tmp, argv[2])
            if case == "usage":
                return case_usage(tmp)
            if case == "signals":
                return case_signals(tmp)
            if case == "sessload":
                return case_sessload(tmp)
            if case == "bad-clients":
                return case_bad_clients(tmp)
            print(__doc__)
            return 2
        except (Fail, subprocess.TimeoutExpired) as e:
            print("FAIL: %s" % e, flush=True)
            return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
