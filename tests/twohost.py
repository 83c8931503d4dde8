#!/usr/bin/env python3
"""
NAME
    twohost.py - two hosts share one Redis store: sessions resume on both

SYNOPSIS
    twohost.py

DESCRIPTION
    Builds two network namespaces, host A and host B, each joined to the
    root namespace by its own veth pair on a /30 of 10.231.N.0/24 (N picked
    so that no address of the machine is in it).  A redis-server (from
    Debian, persistence off, a password of the test's own) runs in the root
    namespace and listens on the root side of both pairs; the hosts cannot
    reach each other, only Redis, as two machines behind a load balancer
    that share nothing but the store.  Each host runs
    `sessdemo --cache redis://...` with 4 workers on its own address.

    The load client runs in the root namespace with both hosts as
    --connect targets, so consecutive connections of a lane alternate
    between the hosts: every resumption is of a session the other host
    issued.  Checked, for TLS 1.2 (session IDs) and TLS 1.3 (stateful
    tickets): no connection fails, 100% of the connections that offered a
    session resumed, on each host, and the servers agree.

    0-RTT: a ticket from host A's full handshake is used with early data
    on host B (accepted: B found the ticket in Redis and took it), then the
    same ticket and early data are replayed to host A (rejected: the take
    on B removed it for the whole fleet; the connection is a full
    handshake).  Then the other way round, and once with both hosts
    offered the same ticket at the same moment (at most one accepts).

    The password reaches the servers in SESSDB_REDIS_PASSWORD, never on a
    command line.  Namespaces, links and processes are removed in a finally
    block, also when the test fails or meson's timeout stops it; the
    servers also get SIGTERM if the test itself is killed.

    Exit status 0 passed, 1 failed, 77 skipped: not root, no `ip`, no
    redis-server, a build without the Redis backend, or namespaces that
    cannot be made here (the reason is printed).
"""
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import proctools
from proctools import Fail, Skip, check, die_with_parent, log

SRC = os.environ.get("SESSDB_TOP_SRCDIR",
                     os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
BUILD = os.environ.get("SESSDB_TOP_BUILDDIR", os.path.join(SRC, "build"))
SESSDEMO = os.environ.get("SESSDEMO", os.path.join(BUILD, "tools", "sessdemo"))
SESSLOAD = os.environ.get("SESSLOAD", os.path.join(BUILD, "tools", "sessload"))
CA = os.path.join(SRC, "data", "ca.pem")
REQUEST = b"GET / HTTP/1.0\r\n\r\n"
SKIP = 77
WORKERS = 4
CONNECTIONS = 400      # per TLS version, 4 lanes
REPLAY_ROUNDS = 3      # sequential rounds each way, then concurrent ones


def sh(*args, check_rc=True):
    """sh - run a command (no shell); its CompletedProcess"""
    p = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
    if check_rc and p.returncode != 0:
        raise Fail("%s: exit %d: %s" % (" ".join(args), p.returncode,
                                         p.stderr.strip()))
    return p


class Net:
    """Two namespaces, each with a veth pair to the root namespace."""

    def __init__(self):
        tag = "%d" % os.getpid()     # at most 7 digits: names fit IFNAMSIZ
        self.ns = ["sdbth%s-a" % tag, "sdbth%s-b" % tag]
        self.links = ["sdbth%sa" % tag, "sdbth%sb" % tag]   # root sides
        self.made_ns = []
        self.made_links = []
        self.net = None

    def pick_subnet(self):
        """pick_subnet - a 10.231.N.0/24 with no address of this machine"""
        used = sh("ip", "-4", "-o", "addr", "show").stdout
        start = os.getpid() % 200 + 20
        for i in range(200):
            n = (start + i) % 250 + 1
            if " 10.231.%d." % n not in used:
                return n
        raise Skip("no free 10.231.N.0/24 subnet for the test")

    @staticmethod
    def remove_stale():
        """remove_stale - the namespaces of earlier runs that were killed
        (SIGKILL leaves no chance to clean up): those whose test process
        is gone"""
        p = sh("ip", "netns", "list", check_rc=False)
        for line in p.stdout.splitlines():
            m = re.match(r"^sdbth(\d+)-[ab]\b", line)
            if m is None:
                continue
            try:
                os.kill(int(m.group(1)), 0)
                continue            # that test is still running
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
            log("removing the namespace of a killed run: " + line.split()[0])
            sh("ip", "netns", "del", line.split()[0], check_rc=False)

    def up(self):
        """up - make the namespaces and links; Skip if namespaces cannot
        be made here"""
        self.remove_stale()
        p = sh("ip", "netns", "add", self.ns[0], check_rc=False)
        if p.returncode != 0:
            raise Skip("cannot create a network namespace (ip netns add: %s)"
                       % p.stderr.strip())
        self.made_ns.append(self.ns[0])
        sh("ip", "netns", "add", self.ns[1])
        self.made_ns.append(self.ns[1])
        self.net = self.pick_subnet()
        for i in range(2):
            p = sh("ip", "link", "add", self.links[i], "type", "veth", "peer",
                   "name", "eth0", "netns", self.ns[i], check_rc=False)
            if p.returncode != 0:
                raise Skip("cannot create a veth pair (%s)" % p.stderr.strip())
            self.made_links.append(self.links[i])
            sh("ip", "addr", "add", "%s/30" % self.gateway(i), "dev",
               self.links[i])
            sh("ip", "link", "set", self.links[i], "up")
            sh("ip", "-n", self.ns[i], "addr", "add", "%s/30" % self.host(i),
               "dev", "eth0")
            sh("ip", "-n", self.ns[i], "link", "set", "eth0", "up")
            sh("ip", "-n", self.ns[i], "link", "set", "lo", "up")
        return self

    def gateway(self, i):
        """gateway - the root side of host i's link (where Redis listens)"""
        return "10.231.%d.%d" % (self.net, 4 * i + 1)

    def host(self, i):
        """host - host i's address"""
        return "10.231.%d.%d" % (self.net, 4 * i + 2)

    def down(self):
        """down - remove what up made (deleting a namespace deletes its
        end of the veth pair, and so the pair)"""
        for ns in self.made_ns:
            sh("ip", "netns", "del", ns, check_rc=False)
        for link in self.made_links:
            if sh("ip", "link", "show", link, check_rc=False).returncode == 0:
                sh("ip", "link", "del", link, check_rc=False)


class Redis:
    """A redis-server on the root side of both links: no persistence, a
    password, a port picked by binding to port 0 first."""

    def __init__(self, tmp, addrs):
        self.tmp = tmp
        self.addrs = addrs
        self.password = secrets.token_hex(16)
        self.proc = None
        self.port = None

    def free_port(self):
        """free_port - a port the kernel just gave out on the first address"""
        s = socket.socket()
        s.bind((self.addrs[0], 0))
        port = s.getsockname()[1]
        s.close()
        return port

    def start(self):
        conf = os.path.join(self.tmp, "redis.conf")
        for attempt in range(5):
            self.port = self.free_port()
            # the password goes in a file of mode 0600, not on argv
            with open(os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                              0o600), "w") as f:
                f.write("bind %s\nport %d\nsave \"\"\nappendonly no\n"
                        "requirepass %s\ndir %s\nlogfile %s\n" % (
                            " ".join(self.addrs), self.port, self.password,
                            self.tmp, os.path.join(self.tmp, "redis.log")))
            self.proc = subprocess.Popen(["redis-server", conf],
                                         stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL,
                                         preexec_fn=die_with_parent)
            if self.wait_up():
                return self
            self.stop()
        raise Fail("redis-server did not start: " + self.logtail())

    def wait_up(self):
        """wait_up - whether Redis answers on every address within 10 s"""
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                for a in self.addrs:
                    with socket.create_connection((a, self.port), timeout=1) as s:
                        s.sendall(b"PING\r\n")
                        if not s.recv(64):
                            raise OSError("no reply")
                return True
            except OSError:
                time.sleep(0.05)
        return False

    def logtail(self):
        try:
            with open(os.path.join(self.tmp, "redis.log")) as f:
                return f.read()[-2000:]
        except OSError:
            return "(no log)"

    def stop(self):
        if self.proc is not None:
            proctools.stop(self.proc, timeout=10)
        self.proc = None


class Host:
    """sessdemo in one namespace, its cache in Redis."""

    def __init__(self, tmp, name, ns, addr, url, password):
        self.dir = os.path.join(tmp, name)
        os.mkdir(self.dir)
        self.name, self.ns, self.addr, self.url = name, ns, addr, url
        self.env = dict(os.environ, SESSDB_REDIS_PASSWORD=password)
        self.proc = None
        self.port = None

    def start(self):
        ready = os.path.join(self.dir, "ready")
        cmd = ["ip", "netns", "exec", self.ns, SESSDEMO, "--bind", self.addr,
               "--port", "0", "--workers", str(WORKERS), "--cache", self.url,
               "--early-data", "--timeout", "5", "--ready-file", ready,
               "--access-log", os.path.join(self.dir, "access.log")]
        self.out = os.path.join(self.dir, "out")
        self.err = os.path.join(self.dir, "err")
        with open(self.out, "w") as out, open(self.err, "w") as err:
            # ip netns exec execs sessdemo: this pid is the server's
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err,
                                         cwd=self.dir, env=self.env,
                                         preexec_fn=die_with_parent)
        deadline = time.time() + 15
        while not os.path.exists(ready):
            if self.proc.poll() is not None or time.time() > deadline:
                raise Fail("sessdemo on host %s did not start: %s" %
                           (self.name, self.errors()))
            time.sleep(0.05)
        with open(ready) as f:
            self.port = int(f.read())
        return self

    def target(self):
        return "%s:%d" % (self.addr, self.port)

    def errors(self):
        try:
            with open(self.err) as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def stop(self):
        """stop - SIGTERM, then SIGKILL if it hangs; (exit status, stdout)"""
        if self.proc is None:
            return None, ""
        rc, self.proc = proctools.stop(self.proc), None
        with open(self.out) as f:
            return rc, f.read()


def sessload(hosts, tls, n, order):
    """sessload - the load client over the hosts in the given order; its
    JSON report"""
    cmd = [SESSLOAD]
    for i in order:
        cmd += ["--connect", hosts[i].target()]
    cmd += ["--connections", str(n), "--parallel", "4", "--tls", tls, "--json"]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=120)
    try:
        r = json.loads(p.stdout)
    except ValueError:
        raise Fail("sessload printed no report (exit %d): %r %r" % (
            p.returncode, p.stdout[-500:], p.stderr[-500:]))
    check(p.returncode == 0, "sessload failed: %r" % r)
    return r


def check_resumption(hosts, tls):
    """check_resumption - alternate between the hosts; every offer resumes"""
    r = sessload(hosts, tls, CONNECTIONS, [0, 1])
    log("TLS %s, 2 hosts: %s" % (tls, json.dumps(r)))
    check(r["failed"] == 0 and r["ok"] == CONNECTIONS,
          "TLS %s: %d connections failed" % (tls, r["failed"]))
    check(r["tls12" if tls == "1.2" else "tls13"] == CONNECTIONS,
          "TLS %s: not every connection used TLS %s" % (tls, tls))
    for t, h in zip(r["targets"], hosts):
        check(t["offered"] > 0, "TLS %s: host %s was never offered a session"
              % (tls, h.name))
        check(t["resumed"] == t["offered"],
              "TLS %s: host %s resumed %d of %d offered sessions (want all)" %
              (tls, h.name, t["resumed"], t["offered"]))
    check(r["resumed"] == r["server_resumed"],
          "TLS %s: the client saw %d resumptions, the servers %d" %
          (tls, r["resumed"], r["server_resumed"]))
    check(r["cross_target_resumed"] == r["resumed"],
          "TLS %s: %d of %d resumptions crossed hosts (the lanes alternate: "
          "want all)" % (tls, r["cross_target_resumed"], r["resumed"]))
    return r["resumed"]


def s_client(host, sess_in, sess_out, early=None):
    """s_client - one openssl s_client TLS 1.3 connection; its output"""
    cmd = ["openssl", "s_client", "-connect", host.target(), "-tls1_3",
           "-CAfile", CA, "-ign_eof"]
    if sess_in:
        cmd += ["-sess_in", sess_in]
    if sess_out:
        cmd += ["-sess_out", sess_out]
    if early:
        cmd += ["-early_data", early]
    p = subprocess.run(cmd, input=REQUEST, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=30)
    return p.stdout.decode("latin-1")


def early_status(out):
    """early_status - 'accepted', 'rejected' or None (not sent)"""
    if "Early data was accepted" in out:
        return "accepted"
    if "Early data was rejected" in out:
        return "rejected"
    return None


def check_replay(tmp, hosts):
    """check_replay - a ticket's 0-RTT data, accepted on one host, is
    rejected when replayed to the other; offered to both at once, it is
    accepted at most once"""
    req = os.path.join(tmp, "early-request")
    with open(req, "wb") as f:
        f.write(REQUEST)
    accepted_any = 0
    for rnd in range(2 * REPLAY_ROUNDS):
        issuer, first = (0, 1) if rnd % 2 == 0 else (1, 0)
        ticket = os.path.join(tmp, "ticket%d" % rnd)
        out = s_client(hosts[issuer], None, ticket)
        check("New, TLSv1.3" in out and os.path.exists(ticket),
              "no ticket from host %s:\n%s" % (hosts[issuer].name, out[-1500:]))
        out1 = s_client(hosts[first], ticket, None, req)
        out2 = s_client(hosts[issuer], ticket, None, req)
        s1, s2 = early_status(out1), early_status(out2)
        log("round %d: ticket from %s, early data on %s: %s, replayed to %s: "
            "%s" % (rnd, hosts[issuer].name, hosts[first].name, s1,
                    hosts[issuer].name, s2))
        check(s1 == "accepted", "host %s did not accept the early data of a "
              "fresh ticket from host %s:\n%s" % (hosts[first].name,
                                                  hosts[issuer].name,
                                                  out1[-1500:]))
        check(s2 == "rejected", "the replay of a used ticket's early data to "
              "host %s was %s:\n%s" % (hosts[issuer].name, s2, out2[-1500:]))
        check("Reused, TLSv1.3" not in out2, "the replayed ticket resumed "
              "on host %s" % hosts[issuer].name)
        accepted_any += 1
    for rnd in range(REPLAY_ROUNDS):
        ticket = os.path.join(tmp, "cticket%d" % rnd)
        s_client(hosts[rnd % 2], None, ticket)
        outs = [None, None]

        def go(i):
            outs[i] = s_client(hosts[i], ticket, None, req)

        ts = [threading.Thread(target=go, args=(i,)) for i in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        st = [early_status(o or "") for o in outs]
        log("concurrent round %d: host a %s, host b %s" % (rnd, st[0], st[1]))
        check(None not in st, "early data not sent:\n%s" % outs)
        check(st.count("accepted") <= 1, "one ticket's early data was "
              "accepted on both hosts")
    return accepted_any


def preflight():
    """preflight - raise Skip with the reason when the test cannot run"""
    if os.environ.get("SESSDB_HAVE_REDIS", "1") != "1":
        raise Skip("this build has no Redis backend (libhiredis-dev missing, "
                   "or -Dredis=disabled)")
    if os.geteuid() != 0:
        raise Skip("network namespaces need root")
    for prog in ("ip", "redis-server", "openssl"):
        if shutil.which(prog) is None:
            raise Skip("%s is not installed (scripts/deps.sh installs it)"
                       % prog)
    for prog in (SESSDEMO, SESSLOAD):
        if not os.access(prog, os.X_OK):
            raise Fail("not built: " + prog)


def run(tmp):
    preflight()
    net = Net()
    redis = None
    hosts = []
    try:
        net.up()
        redis = Redis(tmp, [net.gateway(0), net.gateway(1)]).start()
        log("hosts %s and %s, Redis on %s and %s port %d" % (
            net.host(0), net.host(1), net.gateway(0), net.gateway(1),
            redis.port))
        prefix = "twohost%d:" % os.getpid()
        for i, name in enumerate("ab"):
            # timeout_ms: a loaded CI machine can stall a process longer
            # than the default 50 ms; this test is about sharing, the
            # library's own tests hold the timeout
            url = "redis://%s:%d/0?prefix=%s&timeout_ms=2000" % (
                net.gateway(i), redis.port, prefix)
            hosts.append(Host(tmp, name, net.ns[i], net.host(i), url,
                              redis.password))
        for h in hosts:
            h.start()
        resumed = {}
        for tls in ("1.2", "1.3"):
            resumed[tls] = check_resumption(hosts, tls)
        accepted = check_replay(tmp, hosts)
        reports = []
        for h in hosts:
            rc, out = h.stop()
            check(rc == 0, "sessdemo on host %s exited %s:\n%s" % (
                h.name, rc, h.errors()))
            check(h.errors().count("stopped with") == 0, "a worker on host "
                  "%s did not stop cleanly:\n%s" % (h.name, h.errors()))
            check(redis.password not in h.errors() + out,
                  "host %s printed the Redis password" % h.name)
            reports.append(out)
        log("resumed across hosts: TLS 1.2 %d, TLS 1.3 %d; 0-RTT accepted "
            "once and replay rejected in %d rounds" % (resumed["1.2"],
                                                       resumed["1.3"], accepted))
        return 0
    finally:
        for h in hosts:
            try:
                h.stop()
            except OSError:
                pass
        if redis is not None:
            redis.stop()
        net.down()


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    with tempfile.TemporaryDirectory(prefix="sessdb-twohost.") as tmp:
        os.chmod(tmp, 0o755)   # the servers' directories, readable
        try:
            return run(tmp)
        except Skip as e:
            print("SKIP: %s" % e, flush=True)
            return SKIP
        except (Fail, subprocess.TimeoutExpired) as e:
            print("FAIL: %s" % e, flush=True)
            return 1


if __name__ == "__main__":
    sys.exit(main())
