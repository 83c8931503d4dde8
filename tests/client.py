"""
NAME
    client.py - the client side against real servers: processes of a TLS
    client share their sessions through one store

SYNOPSIS
    client.py resume openssl|gnutls|sessdemo 1.2|1.3
    client.py wrong-peer 1.2|1.3
    client.py once 1.2|1.3
    client.py measure [--processes N] [--lanes L] [--connections K]
    client.py redis
    client.py usage

DESCRIPTION
    Every case starts its own server on loopback (openssl s_server,
    gnutls-serv, or sessdemo with 2 workers and a server store of its
    own) and runs sessload processes with --cache on one client store,
    one after the other:

    resume: the first process makes a full handshake and stores the
    server's session(s); the second, a new process, offers one from the
    store and the server resumes it (SSL_session_reused in sessload, and
    sessdemo's own resumed=1 where the server is sessdemo).  sessdump
    shows the records as client sessions with their server and SNI.

    wrong-peer: after one process stored a session for (localhost, SNI
    localhost, data/ca.pem, no client certificate), processes that
    differ in one setting each offer nothing: another host name for the
    same server (127.0.0.1), another SNI, another trust store (a bundle
    that also verifies the server), a client certificate.  A client
    certificate's sessions are stored only with --share-client-cert,
    and are then resumed by a process with the same certificate only.
    A last process with the first settings resumes (the control).

    once: the first server hands out its tickets (TLS 1.3: 2) or its
    session (TLS 1.2); it is replaced by a server on the same port that
    resumes nothing and issues no ticket (-num_tickets 0, -no_ticket).
    TLS 1.3: each stored ticket is offered by exactly one process and
    then is gone (process i offers, the one after the last ticket
    offers nothing).  TLS 1.2: the session is offered, refused, removed,
    and the next process offers nothing.

    measure: for each server and protocol, N sessload processes one after
    the other (L lanes each, K connections per process; default 5, 2, 2),
    with and without the shared client cache; prints the resumed
    fraction of each process's first connections (its lanes') and
    checks that without the cache none resumes and with it every process
    after the first does (with K <= L; with more connections than lanes a
    lane's second connection may take the TLS 1.3 ticket another lane's
    first connection would have found, as openssl s_server sends only
    one ticket after a resumption: the figures are printed, not checked).
    The resumed fraction of all connections is printed too.

    redis: the same with the client store in a redis-server of the test's
    own (loopback, no persistence): sessload --cache redis://...; the
    second process resumes (TLS 1.2 and 1.3, openssl s_server), and
    four processes of two lanes each: every process after the first
    resumes its lanes' first connections.

    usage: sessload's client options refused with exit 2 and the usage
    (--cache with --new or --early-data, --cert without --key, an empty
    --sni), and --cache naming a file that is not a store: exit 1, the
    store's message, the file unchanged.

ENVIRONMENT
    SESSLOAD, SESSDEMO, SESSDUMP   the programs (default: the build tree)
    SESSDB_TOP_SRCDIR              for data/
    SESSDB_HAVE_REDIS              0: the library has no Redis backend
                                   (case redis skipped)

EXIT STATUS
    0 pass, 1 fail, 77 skip (a server program is missing).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import proctools
from proctools import (Fail, Skip, check, die_with_parent, free_port, log,
                       wait_listening)

SRC = os.environ.get("SESSDB_TOP_SRCDIR",
                     os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
BUILD = os.environ.get("SESSDB_TOP_BUILDDIR", os.path.join(SRC, "build"))
SESSLOAD = os.environ.get("SESSLOAD", os.path.join(BUILD, "tools", "sessload"))
SESSDEMO = os.environ.get("SESSDEMO", os.path.join(BUILD, "tools", "sessdemo"))
SESSDUMP = os.environ.get("SESSDUMP", os.path.join(BUILD, "tools", "sessdump"))
DATA = os.path.join(SRC, "data")
CA = os.path.join(DATA, "ca.pem")
CHAIN = os.path.join(DATA, "server-chain.pem")
KEY = os.path.join(DATA, "server.key")
SKIP = 77


class Server:
    """One TLS server on loopback: openssl s_server, gnutls-serv or sessdemo."""

    def __init__(self, tmp, kind, tls, port=None, resume=True):
        self.tmp, self.kind, self.tls = tmp, kind, tls
        self.port = port
        self.resume = resume
        self.proc = None
        self.err = os.path.join(tmp, "%s-%s.err" % (kind, time.monotonic_ns()))

    def command(self):
        """command - the server's command line"""
        if self.kind == "openssl":
            cmd = ["openssl", "s_server", "-accept", "127.0.0.1:%d" % self.port,
                   "-cert", CHAIN, "-key", KEY, "-www", "-quiet",
                   "-tls1_3" if self.tls == "1.3" else "-tls1_2"]
            if not self.resume:
                cmd += ["-num_tickets", "0", "-no_ticket", "-no_cache"]
            return cmd
        if self.kind == "gnutls":
            vers = "+VERS-TLS1.3" if self.tls == "1.3" else "+VERS-TLS1.2"
            return ["gnutls-serv", "--http", "-p", str(self.port), "-q",
                    "--x509certfile", CHAIN, "--x509keyfile", KEY,
                    "--priority", "NORMAL:-VERS-ALL:" + vers]
        ready = os.path.join(self.tmp, "ready")
        if os.path.exists(ready):
            os.unlink(ready)
        return [SESSDEMO, "--port", "0", "--workers", "2", "--ready-file",
                ready, "--tls", self.tls, "--cache",
                os.path.join(self.tmp, "server-sessions.db")]

    def start(self):
        """start - run the server and wait until it accepts connections"""
        prog = {"openssl": "openssl", "gnutls": "gnutls-serv"}.get(self.kind)
        if prog is not None and shutil.which(prog) is None:
            raise Skip("%s is not installed" % prog)
        if self.kind != "sessdemo" and self.port is None:
            self.port = free_port()
        with open(self.err, "w") as err:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err,
                                         cwd=self.tmp, preexec_fn=die_with_parent)
        if self.kind == "sessdemo":
            self.port = proctools.wait_ready(self.proc, os.path.join(self.tmp, "ready"))
            check(self.port is not None, "sessdemo did not start: " + self.errors())
        else:
            wait_listening(self.proc, self.port)
        return self

    def stop(self):
        if self.proc is not None:
            proctools.stop(self.proc)
            self.proc = None

    def errors(self):
        with open(self.err) as f:
            return f.read()


def sessload(srv, cache, tls, host="localhost", extra=(), connections=1,
             lanes=1, ok=True):
    """sessload - one sessload process against srv with the client cache
    (None: without); its JSON report"""
    cmd = [SESSLOAD, "--connect", "%s:%d" % (host, srv.port), "--tls", tls,
           "--connections", str(connections), "--parallel", str(lanes),
           "--json", "--timeout", "10"]
    if "--ca" not in extra:
        cmd += ["--ca", CA]
    if cache is not None:
        cmd += ["--cache", cache]
    cmd += list(extra)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if ok:
        check(p.returncode == 0, "sessload %s failed (%d): %s %s\n%s" % (
            " ".join(cmd[1:]), p.returncode, p.stdout, p.stderr, srv.errors()))
    return json.loads(p.stdout)


def client_records(cache):
    """client_records - the store's client sessions as sessdump lists them"""
    p = subprocess.run([SESSDUMP, "--db", cache, "list", "--client", "--json"],
                       capture_output=True, text=True, timeout=30)
    check(p.returncode == 0, "sessdump list failed: " + p.stderr)
    return json.loads(p.stdout)["records"]


def sessdump(cache, *args):
    """sessdump - run sessdump on cache; (exit status, stdout, stderr)"""
    p = subprocess.run([SESSDUMP, "--db", cache] + list(args),
                       capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout, p.stderr


def check_sessdump(tmp, cache, n, port):
    """check_sessdump - the n client records are shown apart from server
    sessions, with their server, decode (verify), and stay out of export"""
    rc, out, _ = sessdump(cache, "list")
    check(rc == 0 and "client sessions (%d):" % n in out and
          "localhost:%d  localhost" % port in out,
          "list does not show the client sessions with their server:\n" + out)
    key = client_records(cache)[0]["id"]
    rc, out, _ = sessdump(cache, "show", key)
    check(rc == 0 and "client session for:    localhost:%d" % port in out and
          "SNI sent:              localhost" in out,
          "show does not name the client session's server:\n" + out)
    rc, out, _ = sessdump(cache, "list", "--server")
    check(rc == 0 and len(out.splitlines()) == 1, "list --server shows "
          "client sessions:\n" + out)
    rc, out, _ = sessdump(cache, "stats", "--json")
    ns = json.loads(out)["namespaces"]
    check(ns["client"] == n and ns["server"] == 0, "stats namespaces: %s" % ns)
    rc, out, err = sessdump(cache, "verify")
    check(rc == 0, "verify finds the client records bad:\n" + out + err)
    pem = os.path.join(tmp, "export.pem")
    rc, out, err = sessdump(cache, "export", "--all", "-o", pem)
    check(rc == 0 and "left out %d client sessions" % n in err and
          (not os.path.exists(pem) or os.path.getsize(pem) == 0),
          "export did not leave the client sessions out:\n" + err)


def case_resume(tmp, kind, tls):
    """case_resume - the second process resumes the first one's session"""
    srv = Server(tmp, kind, tls).start()
    cache = os.path.join(tmp, "client.db")
    try:
        first = sessload(srv, cache, tls)
        check(first["first_offered"] == 0 and first["resumed"] == 0,
              "first process offered or resumed on an empty cache: %s" % first)
        recs = client_records(cache)
        check(len(recs) >= 1, "nothing stored by the first process")
        for r in recs:
            check(r["kind"] == "client" and r["server"] == "localhost:%d" % srv.port
                  and r["sni"] == "localhost",
                  "client record without its server and SNI: %s" % r)
            check(r["client_kind"] == ("ticket" if tls == "1.3" else "reuse"),
                  "a TLS %s session stored as %s" % (tls, r["client_kind"]))
        check_sessdump(tmp, cache, len(recs), srv.port)
        second = sessload(srv, cache, tls)
        check(second["first_offered"] == 1 and second["first_resumed"] == 1,
              "second process did not resume the first one's session: %s" % second)
        if kind == "sessdemo":
            check(second["server_resumed"] == 1, "sessdemo did not say resumed=1")
        log("%s TLS %s: stored %d record(s); the second process resumed" % (
            kind, tls, len(recs)))
    finally:
        srv.stop()
    return 0


def case_sealed(tmp, tls):
    """case_sealed - sessload --cache-key: the client records are sealed,
    a second process with the key resumes, one without it is offered
    nothing and leaves them in place"""
    srv = Server(tmp, "openssl", tls).start()
    cache = os.path.join(tmp, "client.db")
    key = os.path.join(tmp, "cache.key")
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, os.urandom(32))
    os.close(fd)
    sealed = ["--cache-key", key]
    try:
        first = sessload(srv, cache, tls, extra=sealed)
        check(first["first_offered"] == 0, "offered on an empty cache")
        recs = client_records(cache)
        check(len(recs) >= 1 and all(r["status"] == "sealed" and r["sealed"]
                                     for r in recs),
              "the client records are not sealed: %s" % recs)
        second = sessload(srv, cache, tls, extra=sealed)
        check(second["first_offered"] == 1 and second["first_resumed"] == 1,
              "a process with the key did not resume: %s" % second)
        before = len(client_records(cache))
        third = sessload(srv, cache, tls)
        check(third["first_offered"] == 0, "a process without the key was "
              "offered a sealed session: %s" % third)
        # (its own new session may replace one under the same key: a
        # put, not a removal)
        check(len(client_records(cache)) >= before,
              "a process without the key removed sealed records")
        log("TLS %s: sealed client records; resumed with the key, not without"
            % tls)
    finally:
        srv.stop()
    return 0


def case_wrong_peer(tmp, tls):
    """case_wrong_peer - one setting differs: nothing is offered"""
    srv = Server(tmp, "openssl", tls).start()
    cache = os.path.join(tmp, "client.db")
    bundle = os.path.join(tmp, "bundle.pem")
    with open(bundle, "w") as out:          # verifies the server too
        for name in ("ca.pem", "server.pem"):
            with open(os.path.join(DATA, name)) as f:
                out.write(f.read())
    cert = ["--cert", os.path.join(DATA, "client.pem"),
            "--key", os.path.join(DATA, "client.key")]
    try:
        sessload(srv, cache, tls)
        stored = len(client_records(cache))
        wrong = [("another host name", "127.0.0.1", []),
                 ("another SNI", "localhost", ["--sni", "other.example"]),
                 ("another trust store", "localhost", ["--ca", bundle]),
                 ("a client certificate", "localhost", cert + ["--share-client-cert"])]
        for what, host, extra in wrong:
            r = sessload(srv, cache, tls, host=host, extra=extra)
            check(r["first_offered"] == 0 and r["resumed"] == 0,
                  "%s: a session of another peer was offered: %s" % (what, r))
            log("%s: nothing offered" % what)
        # the same client certificate with the flag: its own session
        r = sessload(srv, cache, tls, extra=cert + ["--share-client-cert"])
        check(r["first_resumed"] == 1, "same client certificate did not resume")
        # without the flag: neither offered nor stored
        n = len(client_records(cache))
        r = sessload(srv, cache, tls, extra=cert)
        check(r["first_offered"] == 0, "client-certificate session offered "
              "without --share-client-cert")
        check(len(client_records(cache)) == n, "client-certificate session "
              "stored without --share-client-cert")
        r = sessload(srv, cache, tls)
        check(r["first_resumed"] == 1, "the original peer did not resume")
        log("stored %d for the first peer; control resumed" % stored)
    finally:
        srv.stop()
    return 0


def case_once(tmp, tls):
    """case_once - a ticket is offered once; a refused session is removed"""
    srv = Server(tmp, "openssl", tls).start()
    cache = os.path.join(tmp, "client.db")
    try:
        sessload(srv, cache, tls)
        n = len(client_records(cache))
    finally:
        srv.stop()
    check(n == (2 if tls == "1.3" else 1), "expected %s stored, got %d" % (
        "2 tickets" if tls == "1.3" else "1 session", n))
    # the same port, a server that resumes nothing and issues nothing
    srv = Server(tmp, "openssl", tls, port=srv.port, resume=False).start()
    try:
        for i in range(n):
            r = sessload(srv, cache, tls)
            check(r["first_offered"] == 1 and r["resumed"] == 0,
                  "process %d: %s" % (i + 2, r))
            left = client_records(cache)
            check(len(left) == n - 1 - i, "after %d offers %d records left, "
                  "want %d" % (i + 1, len(left), n - 1 - i))
        r = sessload(srv, cache, tls)
        check(r["first_offered"] == 0, "a used or refused session was offered "
              "again: %s" % r)
        log("TLS %s: %d session(s), each offered once, then none" % (tls, n))
    finally:
        srv.stop()
    return 0


def measure_one(tmp, kind, tls, use_cache, procs, lanes, conns):
    """measure_one - (resumed first connections, lanes) per process"""
    srv = Server(tmp, kind, tls).start()
    cache = os.path.join(tmp, "measure-%s-%s.db" % (kind, tls)) if use_cache else None
    out = []
    try:
        for _ in range(procs):
            r = sessload(srv, cache, tls, connections=conns, lanes=lanes)
            out.append((r["first_resumed"], r["lanes"], r["resumed"],
                        r["connections"]))
    finally:
        srv.stop()
    if cache is not None:
        for f in (cache, cache + ".lock"):
            os.unlink(f)
    return out


def case_measure(tmp, procs=5, lanes=2, conns=2):
    """case_measure - resumed fraction of each process's first connections"""
    rows = []
    for kind in ("sessdemo", "openssl", "gnutls"):
        for tls in ("1.2", "1.3"):
            for use_cache in (False, True):
                try:
                    res = measure_one(tmp, kind, tls, use_cache, procs, lanes, conns)
                except Skip as e:
                    log("%s: skipped (%s)" % (kind, e))
                    break
                got = sum(x[0] for x in res)
                total = sum(x[1] for x in res)
                later = sum(x[0] for x in res[1:]), sum(x[1] for x in res[1:])
                allres = sum(x[2] for x in res), sum(x[3] for x in res)
                rows.append((kind, tls, use_cache, got, total, later))
                log("%-8s TLS %s %-13s first connections resumed: %s = %d/%d "
                    "(processes 2..%d: %d/%d); all connections %d/%d" % (
                        kind, tls, "shared cache" if use_cache else "no cache",
                        " ".join("%d/%d" % x[:2] for x in res), got, total,
                        procs, later[0], later[1], allres[0], allres[1]))
                if not use_cache:
                    check(got == 0, "resumed a first connection without a cache")
                elif conns <= lanes:
                    check(later[0] == later[1], "%s TLS %s: a later process's "
                          "first connection did not resume" % (kind, tls))
    check(rows, "no server could run")
    return 0


class Redis:
    """A redis-server on 127.0.0.1: no persistence, a port picked by
    binding to port 0 first."""

    def __init__(self, tmp):
        self.tmp, self.proc, self.port = tmp, None, None

    def start(self):
        if shutil.which("redis-server") is None:
            raise Skip("redis-server is not installed")
        if os.environ.get("SESSDB_HAVE_REDIS", "1") == "0":
            raise Skip("libsessdb was built without the Redis backend")
        conf = os.path.join(self.tmp, "redis.conf")
        self.port = free_port()
        with open(conf, "w") as f:
            f.write("bind 127.0.0.1\nport %d\nsave \"\"\nappendonly no\n"
                    "dir %s\n" % (self.port, self.tmp))
        self.proc = subprocess.Popen(["redis-server", conf],
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL,
                                     preexec_fn=die_with_parent)
        wait_listening(self.proc, self.port)
        return self

    def url(self):
        # a loaded machine (CI) can take longer than the 50 ms default
        return ("redis://127.0.0.1:%d/0?prefix=client-test:&timeout_ms=2000"
                % self.port)

    def stop(self):
        if self.proc is not None:
            proctools.stop(self.proc)
            self.proc = None


def case_redis(tmp):
    """case_redis - resume and measure with the client store in Redis"""
    red = Redis(tmp).start()
    try:
        for tls in ("1.2", "1.3"):
            srv = Server(tmp, "openssl", tls).start()
            try:
                first = sessload(srv, red.url(), tls)
                check(first["first_offered"] == 0, "offered on an empty store")
                recs = client_records(red.url())
                check(any(r["server"] == "localhost:%d" % srv.port for r in recs),
                      "no client record for the server in Redis: %s" % recs)
                second = sessload(srv, red.url(), tls)
                check(second["first_resumed"] == 1, "second process did not "
                      "resume through Redis: %s" % second)
                res = [sessload(srv, red.url(), tls, connections=2, lanes=2)
                       for _ in range(4)]
                got = [(r["first_resumed"], r["lanes"]) for r in res]
                check(all(a == b for a, b in got), "a process did not resume "
                      "its first connections through Redis: %s" % got)
                log("redis TLS %s: second process resumed; 4 more processes "
                    "x 2 lanes: %s" % (tls, " ".join("%d/%d" % x for x in got)))
            finally:
                srv.stop()
    finally:
        red.stop()
    return 0


def case_usage(tmp):
    """case_usage - bad client options; a --cache that is not a store"""
    for args in (["--cache", "x.db", "--new"], ["--cache", "x.db", "--early-data"],
                 ["--cert", CA], ["--key", KEY], ["--sni", ""]):
        p = subprocess.run([SESSLOAD, "--connect", "localhost:1"] + args,
                           capture_output=True, text=True, timeout=30, cwd=tmp)
        check(p.returncode == 2 and "usage:" in p.stderr,
              "%s: exit %d, want 2 with usage:\n%s" % (args, p.returncode, p.stderr))
    srv = Server(tmp, "openssl", "1.3").start()
    notes = os.path.join(tmp, "notes.txt")
    with open(notes, "w") as f:
        f.write("not a session store\n")
    os.chmod(notes, 0o600)
    try:
        p = subprocess.run([SESSLOAD, "--connect", "localhost:%d" % srv.port,
                            "--cache", notes, "--connections", "1"],
                           capture_output=True, text=True, timeout=30)
    finally:
        srv.stop()
    check(p.returncode == 1 and "not a sessdb store" in p.stdout,
          "--cache on a text file: exit %d:\n%s%s" % (p.returncode, p.stdout,
                                                     p.stderr))
    with open(notes) as f:
        check(f.read() == "not a session store\n", "the text file was changed")
    check(not os.path.exists(notes + ".lock"), "a lock file was made beside it")
    log("bad options: exit 2; a file that is not a store: refused, unchanged")
    return 0


def main(argv):
    case = argv[1] if len(argv) > 1 else ""
    if not os.access(SESSLOAD, os.X_OK):
        print("sessload not built: " + SESSLOAD)
        return 1
    with tempfile.TemporaryDirectory(prefix="sessdb-client.") as tmp:
        try:
            if case == "resume" and len(argv) == 4:
                return case_resume(tmp, argv[2], argv[3])
            if case == "wrong-peer" and len(argv) == 3:
                return case_wrong_peer(tmp, argv[2])
            if case == "sealed" and len(argv) == 3:
                return case_sealed(tmp, argv[2])
            if case == "once" and len(argv) == 3:
                return case_once(tmp, argv[2])
            if case == "usage":
                return case_usage(tmp)
            if case == "redis":
                return case_redis(tmp)
            if case == "measure":
                opts = dict(zip(argv[2::2], argv[3::2]))
                return case_measure(tmp, int(opts.get("--processes", 5)),
                                    int(opts.get("--lanes", 2)),
                                    int(opts.get("--connections", 2)))
            print(__doc__)
            return 2
        except Skip as e:
            print("SKIP: %s" % e, flush=True)
            return SKIP
        except (Fail, subprocess.TimeoutExpired) as e:
            print("FAIL: %s" % e, flush=True)
            return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
