#!/usr/bin/env python3
"""
NAME
    apache_test.py - Debian's Apache httpd with SSLSessionCache sessdb:

SYNOPSIS
    apache_test.py resume prefork|event 1.2|1.3
    apache_test.py restart 1.2|1.3
    apache_test.py control
    apache_test.py caps
    apache_test.py sealed
    apache_test.py consumers

DESCRIPTION
    Each case starts its own apache2 (-f a generated configuration in a
    temporary directory, a free loopback port, SSLSessionTickets off, the
    module from the build tree) and stops it in a finally block.  The
    access log records, per connection, the child's pid and
    %{SSL_SESSION_RESUMED}x, which is what the checks read.

    resume: prefork with MaxConnectionsPerChild 1 (every connection in a
    new process): a chain of openssl s_client connections, each offering
    the session saved by the previous one, all resume, each in another
    process than the one that made the session; gnutls-cli --resume
    resumes too.  event: 2 processes of 8 threads; 16 s_client offers of
    one session at once (TLS 1.2) or of one chain (1.3), all resumed.

    restart: a session made before `apache2 -k graceful` resumes after it,
    and again after a full stop and start (what shmcb: cannot do).

    control: with SSLSessionCache none no offer resumes across processes,
    so the resumptions above are the store's doing.

    caps: SessdbMaxEntries 3 keeps the store at 3 records or fewer while
    new sessions keep coming.

    sealed: with SessdbKeyFile the sessions resume and are sealed (sessdump
    reads them only with the key); as root, a key file that is not User's
    stops the start with the reason.

    consumers: one store shared by mod_ssl's sessions, OCSP stapling (an
    `openssl ocsp` responder on loopback, for a CA, an OCSP signer and a
    server certificate made here), mod_authn_socache and mod_cache_socache
    (a page of 60 KiB under a key of about 1 KiB): the stapled response is
    still served after the responder is stopped, by another process; a
    login still works in another process after the password file lost the
    user; the page comes back as a cache hit from another process;
    mod_status ?auto shows the
    store; sessdump lists the sessions Apache stored (as sessions) and
    the other consumers' records (as opaque), and verify --repair removes
    none of them.

ENVIRONMENT
    MOD_SOCACHE_SESSDB   the module (skipped when it was not built)
    APACHE_PRELOAD       sanitizer runtimes to preload into apache2 (a
                         sanitized build); their reports fail the case
    SESSDUMP             the build tree's sessdump
    SESSDB_TOP_SRCDIR    for data/

EXIT STATUS
    0 pass, 1 fail, 77 skip (apache2, a module or a client is missing).
"""
import base64
import http.client
import json
import os
import pwd
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time

import proctools
from proctools import Fail, Skip, check, log

SRC = os.environ.get("SESSDB_TOP_SRCDIR",
                     os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
MODULE = os.environ.get("MOD_SOCACHE_SESSDB", "")
SESSDUMP = os.environ.get("SESSDUMP", "")
PRELOAD = os.environ.get("APACHE_PRELOAD", "")
CA = os.path.join(SRC, "data", "ca.pem")
CHAIN = os.path.join(SRC, "data", "server-chain.pem")
KEY = os.path.join(SRC, "data", "server.key")
MODS = "/usr/lib/apache2/modules"
REQUEST = b"GET /index.html HTTP/1.0\r\n\r\n"
SKIP = 77


def wait_port(port, seconds=10):
    """wait_port - does the (detached) daemon listen on port in time?"""
    try:
        proctools.wait_listening(None, port, seconds=seconds)
        return True
    except Fail:
        return False


class Apache:
    """Apache - one private apache2 in dir d, configured by conf()"""

    def __init__(self, d, mpm="prefork", cache="sessdb", extra="",
                 chain=CHAIN, key=KEY):
        self.d = d
        self.mpm, self.cache, self.extra = mpm, cache, extra
        self.chain, self.key = chain, key
        self.conf = os.path.join(d, "apache2.conf")
        self.store = os.path.join(d, "store", "sessions.db")
        self.access = os.path.join(d, "access.log")
        self.port = None
        self.running = False
        for sub in ("htdocs", "store", "run"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        os.chmod(d, 0o755)
        os.chmod(os.path.join(d, "htdocs"), 0o755)
        with open(os.path.join(d, "htdocs", "index.html"), "w") as f:
            f.write("ok\n")
        os.chmod(os.path.join(d, "htdocs", "index.html"), 0o644)
        self.user = ""
        if os.geteuid() == 0:
            # The children run as User: the store directory is theirs
            # (the module gives the files to User; a rebuild writes beside).
            name = "www-data"
            try:
                pw = pwd.getpwnam(name)
            except KeyError:
                name, pw = "nobody", pwd.getpwnam("nobody")
            os.chown(os.path.join(d, "store"), pw.pw_uid, pw.pw_gid)
            self.user = "User %s\nGroup #%d\n" % (name, pw.pw_gid)

    def write_conf(self):
        mpm = {
            "prefork": "LoadModule mpm_prefork_module %s/mod_mpm_prefork.so\n"
                       "StartServers 4\nMinSpareServers 4\nMaxSpareServers 8\n"
                       "MaxConnectionsPerChild 1\n" % MODS,
            "event": "LoadModule mpm_event_module %s/mod_mpm_event.so\n"
                     "StartServers 2\nServerLimit 2\nThreadsPerChild 8\n"
                     "MaxRequestWorkers 16\nMinSpareThreads 1\n"
                     "MaxSpareThreads 16\nMaxConnectionsPerChild 0\n" % MODS,
        }[self.mpm]
        cache = ("sessdb:" + self.store) if self.cache == "sessdb" else self.cache
        d = self.d
        text = f"""# sessdb apache_test: a private Apache, not the system's
ServerRoot {d}
ServerName localhost
DefaultRuntimeDir {d}/run
PidFile {d}/apache.pid
ErrorLog {d}/error.log
LogLevel warn
{self.user}{mpm}
LoadModule authz_core_module {MODS}/mod_authz_core.so
LoadModule socache_sessdb_module {MODULE}
LoadModule ssl_module {MODS}/mod_ssl.so
KeepAlive Off
Listen 127.0.0.1:{self.port} https
DocumentRoot {d}/htdocs
LogFormat "%P %{{SSL_SESSION_RESUMED}}x %{{SSL_PROTOCOL}}x %{{SSL_SESSION_ID}}x %>s %U" t
CustomLog {d}/access.log t
<Directory {d}/htdocs>
    Require all granted
</Directory>
SSLEngine on
SSLCertificateFile {self.chain}
SSLCertificateKeyFile {self.key}
SSLProtocol -all +TLSv1.2 +TLSv1.3
SSLSessionCache {cache}
SSLSessionCacheTimeout 300
SSLSessionTickets off
{self.extra}
"""
        with open(self.conf, "w") as f:
            f.write(text)

    def ctl(self, verb):
        env = dict(os.environ)
        if PRELOAD:
            # leaks at exit are Apache's way; reports go to the error log
            env["LD_PRELOAD"] = PRELOAD
            env["ASAN_OPTIONS"] = "detect_leaks=0"
            env["UBSAN_OPTIONS"] = "print_stacktrace=1"
        return subprocess.run(["apache2", "-f", self.conf, "-k", verb], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=30)

    def start(self):
        for _ in range(5):
            if self.port is None:
                self.port = proctools.free_port()
            self.write_conf()
            p = self.ctl("start")
            if p.returncode == 0 and wait_port(self.port):
                self.running = True
                return
            self.stop()
            self.port = None
        raise Fail("apache2 did not start:\n%s%s" %
                   (p.stdout.decode("latin-1"), self.error_log()))

    def pid(self):
        try:
            with open(os.path.join(self.d, "apache.pid")) as f:
                return int(f.read())
        except (OSError, ValueError):
            return None

    def sanitizer_reports(self):
        return [line for line in self.error_log().splitlines()
                if "ERROR: AddressSanitizer" in line or "runtime error:" in line]

    def stop(self):
        pid = self.pid()
        self.ctl("stop")
        deadline = time.time() + 15
        while pid and time.time() < deadline:
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.05)
        else:
            if pid:
                try:
                    os.kill(pid, 9)
                except OSError:
                    pass
        self.running = False
        check(not self.sanitizer_reports(),
              "sanitizer reports in the error log:\n" + self.error_log())

    def graceful(self):
        old = self.generation()
        p = self.ctl("graceful")
        check(p.returncode == 0, "graceful failed: %s" % p.stdout)
        # the parent logs the restart once it has reread its configuration
        deadline = time.time() + 10
        while self.generation() == old and time.time() < deadline:
            time.sleep(0.05)
        check(self.generation() != old, "no graceful restart in the log")
        check(wait_port(self.port), "not listening after graceful")

    def generation(self):
        return self.error_log().count("resuming normal operations")

    def error_log(self):
        try:
            with open(os.path.join(self.d, "error.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_lines(self):
        try:
            with open(self.access) as f:
                return [line.split() for line in f if line.strip()]
        except OSError:
            return []

    def wait_log(self, n, seconds=5):
        deadline = time.time() + seconds
        while len(self.log_lines()) < n and time.time() < deadline:
            time.sleep(0.02)
        return self.log_lines()


def s_client(srv, tls, sess_out, sess_in=None, extra=(), path="/index.html"):
    """s_client - one connection; (client says reused, output).  The server's
    view comes from the access log."""
    cmd = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % srv.port,
           "-tls1_2" if tls == "1.2" else "-tls1_3", "-CAfile", CA,
           "-verify_return_error", "-ign_eof", "-sess_out", sess_out]
    if sess_in:
        cmd += ["-sess_in", sess_in]
    cmd += list(extra)
    p = subprocess.run(cmd, input=("GET %s HTTP/1.0\r\n\r\n" % path).encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=30)
    out = p.stdout.decode("latin-1")
    check("HTTP/1.1 200" in out, "s_client got no 200 response:\n" + out)
    if sess_in and not os.path.exists(sess_out):
        shutil.copyfile(sess_in, sess_out)   # TLS 1.2: a resumed one is not saved
    return "Reused, TLSv" in out, out


def offer_chain(srv, tls, tmp, n, first=None):
    """offer_chain - n connections, each offering the previous one's
    session (the first offers first, or nothing); the access log rows"""
    before = len(srv.log_lines())
    prev = first
    for i in range(n):
        out = os.path.join(tmp, "sess-%s-%d-%f" % (tls, i, time.time()))
        if prev is not None and not os.path.exists(prev):
            prev = None     # no session was handed out to offer (no cache)
        reused, text = s_client(srv, tls, out, prev)
        rows = srv.wait_log(before + i + 1)
        check(len(rows) == before + i + 1, "no access log line for a connection")
        server_reused = rows[-1][1] == "Resumed"
        check(reused == server_reused, "s_client says %s, the server %s" %
              (reused, rows[-1][1]))
        prev = out
    return srv.log_lines()[before:], prev


def gnutls_resume(srv, tls):
    """gnutls_resume - gnutls-cli --resume: the access log row of its second
    connection (the first one sends no request, so it has no row)"""
    before = len(srv.log_lines())
    cmd = ["gnutls-cli", "--x509cafile", CA, "-p", str(srv.port), "127.0.0.1",
           "--resume", "--priority", "NORMAL:-VERS-ALL:+VERS-TLS" + tls]
    if tls == "1.3":
        cmd.append("--waitresumption")
    p = subprocess.run(cmd, input=REQUEST, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=30)
    out = p.stdout.decode("latin-1")
    check("This is a resumed session" in out,
          "gnutls-cli did not resume:\n" + out)
    rows = srv.wait_log(before + 1)[before:]
    check(len(rows) == 1, "expected 1 access log line, got %r" % rows)
    return rows[0]


def need(*progs):
    for prog in progs:
        if shutil.which(prog) is None:
            raise Skip("%s is not installed" % prog)


# ---- cases ----

def case_resume_prefork(tmp, tls):
    srv = Apache(tmp)
    try:
        srv.start()
        rows, _ = offer_chain(srv, tls, tmp, 4)
        log("s_client chain: %r" % rows)
        check(rows[0][1] == "Initial", "the first connection resumed?")
        for r in rows[1:]:
            check(r[1] == "Resumed", "an offer was not resumed: %r" % rows)
        pids = [r[0] for r in rows]
        check(len(set(pids)) == len(pids),
              "MaxConnectionsPerChild 1, yet a process served twice: %r" % pids)
        check(all(r[2] == "TLSv" + tls for r in rows), "protocol: %r" % rows)
        # with one connection per process its resumption is another's
        g = gnutls_resume(srv, tls)
        log("gnutls-cli --resume: %r" % g)
        check(g[1] == "Resumed", "gnutls-cli's resumption: %r" % g)
    finally:
        srv.stop()


def case_resume_event(tmp, tls):
    srv = Apache(tmp, mpm="event")
    try:
        srv.start()
        first = os.path.join(tmp, "first")
        s_client(srv, tls, first)
        results, errors = [], []

        def one(i):
            try:
                # TLS 1.3 tickets are single use: each thread resumes its own
                # session, made beforehand in its own connection
                sess = first
                if tls == "1.3":
                    sess = os.path.join(tmp, "t%d" % i)
                    s_client(srv, tls, sess)
                results.append(s_client(srv, tls, os.path.join(tmp, "o%d" % i),
                                        sess)[0])
            except Exception as e:      # noqa: BLE001 - reported below
                errors.append(e)
        threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        check(not errors, "client errors: %r" % errors)
        rows = srv.wait_log(1 + (32 if tls == "1.3" else 16))
        resumed = [r for r in rows if r[1] == "Resumed"]
        log("%d connections, %d resumed, processes %s" %
            (len(rows), len(resumed), sorted(set(r[0] for r in rows))))
        check(all(results) and len(resumed) == 16,
              "not every concurrent offer resumed: %r" % rows)
        check("sessdb:" not in srv.error_log(),
              "the module logged errors:\n" + srv.error_log())
        g = gnutls_resume(srv, tls)
        check(g[1] == "Resumed", "gnutls-cli's resumption: %r" % g)
    finally:
        srv.stop()


def case_restart(tmp, tls):
    srv = Apache(tmp)
    try:
        srv.start()
        rows, last = offer_chain(srv, tls, tmp, 1)
        check(rows[0][1] == "Initial", "first connection: %r" % rows)
        srv.graceful()
        rows, last = offer_chain(srv, tls, tmp, 2, first=last)
        check(all(r[1] == "Resumed" for r in rows),
              "not resumed after graceful: %r" % rows)
        srv.stop()
        srv.start()
        rows, last = offer_chain(srv, tls, tmp, 2, first=last)
        check(all(r[1] == "Resumed" for r in rows),
              "not resumed after stop and start: %r" % rows)
        log("resumed after graceful and after stop/start (%s)" % tls)
    finally:
        srv.stop()


def case_control(tmp):
    srv = Apache(tmp, cache="none")
    try:
        srv.start()
        for tls in ("1.2", "1.3"):
            rows, _ = offer_chain(srv, tls, tmp, 3)
            check(all(r[1] == "Initial" for r in rows),
                  "resumed without a cache: %r" % rows)
        check(not os.path.exists(srv.store), "a store without sessdb?")
    finally:
        srv.stop()


def case_caps(tmp):
    srv = Apache(tmp, extra="SessdbMaxEntries 3\nSessdbMaxBytes 1M\n")
    try:
        srv.start()
        rows, _ = offer_chain(srv, "1.2", tmp, 1)
        for _ in range(5):      # new sessions, one per connection
            offer_chain(srv, "1.2", tmp, 1)
        rc, out = sessdump(srv, "stats", "--json")
        check(rc == 0, "sessdump stats: %s" % out)
        n = json.loads(out)["records"]["total"]
        log("6 sessions offered to a store capped at 3: %d kept" % n)
        check(0 < n <= 3, "SessdbMaxEntries 3, yet %d records" % n)
    finally:
        srv.stop()


def case_sealed(tmp):
    keyfile = os.path.join(tmp, "store", "sessdb.key")
    srv = Apache(tmp, extra="SessdbKeyFile %s\n" % keyfile)
    with open(keyfile, "wb") as f:
        f.write(os.urandom(32))
    os.chmod(keyfile, 0o600)
    try:
        if os.geteuid() == 0:
            # a key file the children (User) cannot read stops the start
            try:
                srv.start()
                raise Fail("started with a key file of root's")
            except Fail as e:
                check("must belong to User" in srv.error_log(),
                      "no reason for the refused key file: %s" % e)
            st = os.stat(os.path.dirname(keyfile))
            os.chown(keyfile, st.st_uid, st.st_gid)
        srv.start()
        rows, _ = offer_chain(srv, "1.2", tmp, 3)
        check([r[1] for r in rows] == ["Initial", "Resumed", "Resumed"],
              "sealed store: %r" % rows)
        rc, out = sessdump(srv, "--key", keyfile, "list", "--json")
        check(rc == 0, "sessdump --key list: %s" % out)
        opened = [r for r in json.loads(out)["records"]
                  if r.get("protocol", "").startswith("TLS")]
        rc, out = sessdump(srv, "list", "--json")
        plain = [r for r in json.loads(out)["records"]
                 if r.get("protocol", "").startswith("TLS")]
        log("sealed: %d sessions opened with the key, %d without" %
            (len(opened), len(plain)))
        check(opened and not plain, "records are not sealed")
    finally:
        srv.stop()


def openssl(*args, cwd=None):
    p = subprocess.run(["openssl"] + list(args), cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    check(p.returncode == 0, "openssl %s: %s" % (args[0], p.stdout))
    return p.stdout.decode()


def make_ca(d):
    """make_ca - in d: a CA, an OCSP signer, and the responder's index
    naming the server certificate make_server will issue (serial 1002)"""
    ec = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
    for k in ("ca", "ocsp", "srv"):
        openssl("genpkey", *ec, "-out", k + ".key", cwd=d)
    openssl("req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=stapling CA",
            "-days", "2", "-out", "ca.pem", "-addext",
            "basicConstraints=critical,CA:TRUE", "-addext",
            "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    with open(os.path.join(d, "ocsp.ext"), "w") as f:
        f.write("extendedKeyUsage=OCSPSigning\nbasicConstraints=CA:FALSE\n")
    sign(d, "ocsp", "stapling OCSP", "1001")
    with open(os.path.join(d, "index.txt"), "w") as f:
        exp = time.strftime("%y%m%d%H%M%SZ", time.gmtime(time.time() + 2 * 86400))
        f.write("V\t%s\t\t1002\tunknown\t/CN=localhost\n" % exp)


def sign(d, k, cn, serial):
    openssl("req", "-new", "-key", k + ".key", "-subj", "/CN=" + cn,
            "-out", k + ".csr", cwd=d)
    openssl("x509", "-req", "-in", k + ".csr", "-CA", "ca.pem", "-CAkey",
            "ca.key", "-set_serial", "0x" + serial, "-days", "2",
            "-extfile", k + ".ext", "-out", k + ".pem", cwd=d)


def make_server(d, ocsp_port):
    """make_server - the server certificate, its AIA naming the responder;
    returns (chain, key, ca)"""
    with open(os.path.join(d, "srv.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"
                "authorityInfoAccess=OCSP;URI:http://127.0.0.1:%d/\n" % ocsp_port)
    sign(d, "srv", "localhost", "1002")
    with open(os.path.join(d, "chain.pem"), "w") as f:
        for name in ("srv.pem", "ca.pem"):
            with open(os.path.join(d, name)) as g:
                f.write(g.read())
    for f in os.listdir(d):
        os.chmod(os.path.join(d, f), 0o644)
    os.chmod(d, 0o755)
    return (os.path.join(d, "chain.pem"), os.path.join(d, "srv.key"),
            os.path.join(d, "ca.pem"))


def start_responder(d):
    """start_responder - openssl ocsp on a port of its choosing (it prints
    "ACCEPT [::]:PORT"); (process, port)"""
    out = os.path.join(d, "ocsp.out")
    with open(out, "w") as f:
        proc = subprocess.Popen(
            ["openssl", "ocsp", "-index", "index.txt", "-port", "0",
             "-rsigner", "ocsp.pem", "-rkey", "ocsp.key", "-CA", "ca.pem",
             "-ignore_err", "-nmin", "60"], cwd=d, stdout=f,
            stderr=subprocess.STDOUT, preexec_fn=proctools.die_with_parent)
    deadline = time.time() + 10
    while time.time() < deadline:
        with open(out) as f:
            text = f.read()
        if "ACCEPT" in text:
            return proc, int(text.split("ACCEPT", 1)[1].split()[0].rsplit(":", 1)[1])
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proctools.stop(proc)
    raise Fail("openssl ocsp did not start: %s" % text)


AUTH = "Basic " + base64.b64encode(b"alice:wonderland").decode()


def make_private(tmp):
    """make_private - /private/index.html and a password file for alice"""
    os.makedirs(os.path.join(tmp, "htdocs", "private"))
    os.chmod(os.path.join(tmp, "htdocs", "private"), 0o755)
    with open(os.path.join(tmp, "htdocs", "private", "index.html"), "w") as f:
        f.write("private\n")
    os.chmod(os.path.join(tmp, "htdocs", "private", "index.html"), 0o644)
    pw = os.path.join(tmp, "htpasswd")
    subprocess.run(["htpasswd", "-cbs", pw, "alice", "wonderland"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.chmod(pw, 0o644)


def https_get(srv, ca, path, auth=None):
    """https_get - one request in its own connection: (status, headers, body)"""
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
    c = http.client.HTTPSConnection("127.0.0.1", srv.port, context=ctx, timeout=20)
    headers = {"Host": "localhost"}
    if auth:
        headers["Authorization"] = auth
    try:
        c.request("GET", path, headers=headers)
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


def stapled(srv, ca, tmp):
    """stapled - s_client -status: does the server staple a good response?"""
    cmd = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % srv.port,
           "-tls1_2", "-CAfile", ca, "-status", "-ign_eof"]
    p = subprocess.run(cmd, input=REQUEST, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=30)
    out = p.stdout.decode("latin-1")
    return "OCSP Response Status: successful" in out and "Cert Status: good" in out


def sessdump(srv, *args):
    p = subprocess.run([SESSDUMP, "--db", srv.store] + list(args),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    return p.returncode, p.stdout.decode("latin-1")


def case_consumers(tmp):
    pki = os.path.join(tmp, "pki")
    os.makedirs(pki)
    make_ca(pki)
    responder, ocsp_port = start_responder(pki)
    srv = None
    try:
        chain, key, ca = make_server(pki, ocsp_port)
        store = os.path.join(tmp, "store", "sessions.db")
        extra = f"""LoadModule status_module {MODS}/mod_status.so
LoadModule cache_module {MODS}/mod_cache.so
LoadModule cache_socache_module {MODS}/mod_cache_socache.so
LoadModule expires_module {MODS}/mod_expires.so
LoadModule auth_basic_module {MODS}/mod_auth_basic.so
LoadModule authn_core_module {MODS}/mod_authn_core.so
LoadModule authn_file_module {MODS}/mod_authn_file.so
LoadModule authn_socache_module {MODS}/mod_authn_socache.so
LoadModule authz_user_module {MODS}/mod_authz_user.so
AuthnCacheSOCache sessdb:{store}
<Location /private/>
    AuthType Basic
    AuthName "sessdb test"
    AuthBasicProvider socache file
    AuthUserFile {tmp}/htpasswd
    AuthnCacheProvideFor file
    AuthnCacheContext sessdb-test
    Require valid-user
</Location>
ExpiresActive On
ExpiresDefault "access plus 10 minutes"
SSLUseStapling on
SSLStaplingCache sessdb:{store}
SSLStaplingResponderTimeout 5
SSLStaplingReturnResponderErrors off
CacheEnable socache /
CacheSocache sessdb:{store}
CacheSocacheMaxSize 102400
CacheHeader on
<Location /server-status>
    SetHandler server-status
</Location>
"""
        srv = Apache(tmp, extra=extra, chain=chain, key=key)
        make_private(tmp)
        page = b"x" * (60 * 1024)
        with open(os.path.join(tmp, "htdocs", "big.html"), "wb") as f:
            f.write(page)
        os.chmod(os.path.join(tmp, "htdocs", "big.html"), 0o644)
        srv.start()

        # OCSP stapling: fetched once, then served from the store by other
        # processes even with the responder gone
        check(stapled(srv, ca, tmp), "no good OCSP response stapled")
        proctools.stop(responder)
        check(stapled(srv, ca, tmp) and stapled(srv, ca, tmp),
              "stapling stopped with the responder: not from the store")
        pids = [r[0] for r in srv.wait_log(3)]
        check(len(set(pids)) == 3, "stapling connections shared a process: %r" % pids)

        # mod_cache_socache: a long key, a 60 KiB page, a hit in another process
        path = "/big.html?" + "q" * 960
        s1, h1, b1 = https_get(srv, ca, path)
        s2, h2, b2 = https_get(srv, ca, path)
        log("cache: first %s (%s), second %s (%s)" %
            (s1, h1.get("X-Cache"), s2, h2.get("X-Cache")))
        check(s1 == 200 and b1 == page, "the page was not served")
        check(s2 == 200 and b2 == page, "the cached page differs")
        check("HIT" in h2.get("X-Cache", ""),
              "second request not a cache hit: %r" % h2)

        # mod_authn_socache: the user's check is cached, so the login keeps
        # working in other processes after the password file lost it
        check(https_get(srv, ca, "/private/index.html", AUTH)[0] == 200,
              "basic auth failed")
        with open(os.path.join(tmp, "htpasswd"), "w"):
            pass
        check(https_get(srv, ca, "/private/index.html", AUTH)[0] == 200,
              "the cached credentials were not used")
        check(https_get(srv, ca, "/private/index.html", "Basic Zm9vOmJhcg==")[0]
              == 401, "a user never seen got in")

        # mod_status shows the store
        st, _, body = https_get(srv, ca, "/server-status?auto")
        text = body.decode("latin-1")
        check(st == 200 and "CacheType: sessdb" in text and
              "CacheEntries:" in text, "mod_status ?auto:\n" + text)
        st, _, body = https_get(srv, ca, "/server-status")
        check(b"cache type: <b>sessdb</b>" in body, "mod_status HTML lacks sessdb")

        # sessdump: Apache's sessions as sessions, the others opaque
        ids = {r[3] for r in srv.log_lines() if r[3] != "-"}
        rc, out = sessdump(srv, "list", "--json")
        check(rc == 0, "sessdump list: %s" % out)
        recs = json.loads(out)["records"]
        sessions = {r["id"] for r in recs if r.get("protocol", "").startswith("TLS")}
        opaque = [r["id"] for r in recs if r.get("protocol") == "opaque"]
        log("sessdump: %d sessions, opaque %s" %
            (len(sessions), sorted(o[:40] for o in opaque)))
        check(ids & sessions, "none of Apache's sessions %r listed: %r" % (ids, recs))
        # consumer names as Apache 2.4 passes them to init
        check(any(o.startswith("mod_ssl-staple/") for o in opaque),
              "no stapling record listed")
        check(any(o.startswith("authn-socache/") for o in opaque),
              "no mod_authn_socache record listed")
        check(any(o.startswith("cache-socache/") and
                  len(o.split("/", 1)[1]) >= 2 * 960 for o in opaque),
              "no mod_cache_socache record under a key of ~1 KiB listed")
        rc, out = sessdump(srv, "verify", "--repair")
        check(rc == 0 and " 0 bad" in out, "verify --repair: %s" % out)
        rc, out2 = sessdump(srv, "sweep")
        check(rc == 0, "sweep: %s" % out2)
        rc, out2 = sessdump(srv, "list", "--json")
        check(len(json.loads(out2)["records"]) == len(recs),
              "verify --repair or sweep removed records:\n%s" % out)
        s3, h3, b3 = https_get(srv, ca, path)
        check("HIT" in h3.get("X-Cache", "") and b3 == page,
              "the cached page is gone after verify --repair")
        check("sessdb:" not in srv.error_log(),
              "the module logged errors:\n" + srv.error_log())
    finally:
        if srv is not None:
            srv.stop()
        proctools.stop(responder)


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    case, args = argv[1], argv[2:]
    tmp = tempfile.mkdtemp(prefix="sessdb-apache-")
    try:
        if not MODULE or not os.path.exists(MODULE):
            raise Skip("mod_socache_sessdb.so was not built (no apxs)")
        need("apache2", "openssl", "htpasswd")
        for m in ("mod_ssl", "mod_mpm_prefork", "mod_mpm_event"):
            if not os.path.exists(os.path.join(MODS, m + ".so")):
                raise Skip("%s is not in %s" % (m, MODS))
        if case == "resume":
            need("gnutls-cli")
            if args[0] == "prefork":
                case_resume_prefork(tmp, args[1])
            else:
                case_resume_event(tmp, args[1])
        elif case == "restart":
            case_restart(tmp, args[0])
        elif case == "control":
            case_control(tmp)
        elif case == "caps":
            case_caps(tmp)
        elif case == "sealed":
            case_sealed(tmp)
        elif case == "consumers":
            case_consumers(tmp)
        else:
            print("unknown case %s" % case, file=sys.stderr)
            return 2
    except Skip as e:
        print("skipped: %s" % e)
        return SKIP
    except Fail as e:
        print("FAIL: %s" % e)
        for name in ("error.log",):
            p = os.path.join(tmp, name)
            if os.path.exists(p):
                with open(p, errors="replace") as f:
                    print("--- %s ---\n%s" % (name, f.read()[-3000:]))
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
