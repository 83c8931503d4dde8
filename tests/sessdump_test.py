#!/usr/bin/env python3
"""sessdump_test.py CASE - end-to-end tests of the sessdump operator tool.

Each CASE builds its own stores in a temporary directory with the
sessdump_fill helper (real DER sessions through the store API: live,
expired, and corrupt records of three kinds), runs sessdump on them and
checks exit statuses, text output and --json documents (parsed, not
grepped).  Paths come from the environment: SESSDUMP, SESSDUMP_FILL and,
for the migration case, SESSDEMO.

redis-migration starts a redis-server of its own (loopback, a random
port, persistence off, a password passed in SESSDB_REDIS_PASSWORD) and
moves the sessions of a file store into Redis and back with export and
import; it is skipped (77) without redis-server or a build without the
Redis backend (SESSDB_HAVE_REDIS=0, or the library says so).
"""
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

import proctools

SESSDUMP = os.environ.get("SESSDUMP", "")
FILL = os.environ.get("SESSDUMP_FILL", "")
SESSDEMO = os.environ.get("SESSDEMO", "")
SKIP = 77  # meson's "skipped" exit status


class Fail(Exception):
    """A check failed."""


def check(cond, what):
    """Raise Fail(what) unless cond."""
    if not cond:
        raise Fail(what)


def want_eq(got, want, what):
    """Raise Fail unless got == want, saying both."""
    if got != want:
        raise Fail("%s: got %r, want %r" % (what, got, want))


def run(args, db=None, rc=0, stdin=None, user=None, timeout=30, exe=None,
        libdir=None):
    """Run sessdump; check its exit status; return the CompletedProcess."""
    cmd = [exe or SESSDUMP]
    if db is not None:
        cmd += ["--db", db]
    cmd += list(args)
    if user is not None:
        cmd = ["runuser", "-u", user, "--"] + cmd
    env = dict(os.environ)
    env.pop("SESSDB_PATH", None)
    if libdir is not None:
        env["LD_LIBRARY_PATH"] = libdir
    p = subprocess.run(cmd, input=stdin, capture_output=True, env=env,
                       timeout=timeout)
    if rc is not None and p.returncode != rc:
        raise Fail("%s: exit %d, want %d\nstdout: %s\nstderr: %s" % (
            " ".join(cmd), p.returncode, rc, p.stdout[-2000:],
            p.stderr[-2000:]))
    return p


def run_json(args, db):
    """Run sessdump with --json output and parse it."""
    out = run(args, db=db).stdout
    try:
        return json.loads(out)
    except ValueError as e:
        raise Fail("%s: invalid JSON (%s): %r" % (args, e, out[:300]))


def openssl(args, stdin=None):
    """Run the openssl command line tool; return stdout (text)."""
    p = subprocess.run(["openssl"] + args, input=stdin, capture_output=True)
    if p.returncode != 0:
        raise Fail("openssl %s: %s" % (" ".join(args), p.stderr))
    return p.stdout


class Store:
    """A populated store and its manifest: kind -> [(id, master key, expires)]."""

    def __init__(self, tmp, name="s.db", live=12, expired=9, badhdr=2,
                 badder=2, mismatch=1):
        self.path = os.path.join(tmp, name)
        manifest = self.path + ".manifest"
        subprocess.run([FILL, "populate", self.path, manifest, str(live),
                        str(expired), str(badhdr), str(badder),
                        str(mismatch)], check=True)
        self.kinds = {k: [] for k in ("live", "expired", "badhdr", "badder",
                                      "mismatch", "peer")}
        with open(manifest) as f:
            for line in f:
                kind, ident, mk, exp = line.split()
                self.kinds[kind].append((ident, mk, int(exp)))

    def add_peer(self):
        """Store one real handshake's session with a client certificate."""
        data = os.path.join(os.environ.get("SESSDB_TOP_SRCDIR", ""), "data")
        manifest = self.path + ".manifest"
        subprocess.run([FILL, "peer", self.path, manifest, data], check=True)
        with open(manifest) as f:
            kind, ident, mk, exp = f.read().splitlines()[-1].split()
        want_eq(kind, "peer", "fill peer manifest line")
        self.kinds["peer"] = [(ident, mk, int(exp))]
        return ident, mk

    def ids(self, *kinds):
        """The set of IDs of the given kinds."""
        return {r[0] for k in kinds for r in self.kinds[k]}

    def corrupt_keys(self):
        """Raw keys (hex, namespace byte first) of the corrupt records."""
        return (self.ids("badhdr") |
                {"53" + i for i in self.ids("badder", "mismatch")})

    def total(self):
        return sum(len(v) for v in self.kinds.values())


def listed(db, *opts):
    """list --json: the parsed document and {id or key: record}."""
    doc = run_json(["list", "--json"] + list(opts), db)
    want_eq(doc["count"], len(doc["records"]), "list --json count")
    return doc, {r.get("id") or r["key"]: r for r in doc["records"]}


# ---- cases ----

def case_list(tmp):
    s = Store(tmp)
    text = run(["list"], db=s.path).stdout.decode()
    lines = text.splitlines()
    want_eq(len(lines), s.total() + 1, "list: lines (header + records)")
    for ident in s.ids("live", "expired") | s.corrupt_keys():
        check(ident in text, "list: %s missing" % ident)
    doc, recs = listed(s.path)
    want_eq(set(recs), s.ids("live", "expired") | s.corrupt_keys(),
            "list --json: keys")
    for ident, _, exp in s.kinds["live"]:
        want_eq(recs[ident]["status"], "live", "status of a live record")
        want_eq(recs[ident]["expires"], exp, "expires of " + ident)
        check(recs[ident]["seconds_left"] > 0, "seconds_left > 0")
        check(recs[ident]["protocol"] in ("TLSv1.2", "TLSv1.3"), "protocol")
        check(recs[ident]["size"] > 32, "size")
    for ident in s.ids("expired"):
        want_eq(recs[ident]["status"], "expired", "status of expired")
    for key in s.corrupt_keys():
        want_eq(recs[key]["status"], "corrupt", "status of corrupt")
        check(recs[key]["problem"], "corrupt record names its problem")
    snis = {r.get("sni") for r in doc["records"]}
    check('we"ird\\name\t\x01.example' in snis,
          "list --json: an SNI with quotes and control bytes round-trips")
    for opt, want in (("--live", s.ids("live")),
                      ("--expired", s.ids("expired")),
                      ("--corrupt", s.corrupt_keys())):
        want_eq(set(listed(s.path, opt)[1]), want, "list " + opt)
    for key in ("expires", "created", "size", "id"):
        doc, _ = listed(s.path, "--live", "--sort", key)
        vals = [r[key] for r in doc["records"]]
        want_eq(vals, sorted(vals), "list --sort " + key)
        doc, _ = listed(s.path, "--live", "--sort", key, "--reverse")
        vals = [r[key] for r in doc["records"]]
        want_eq(vals, sorted(vals, reverse=True), "--sort %s --reverse" % key)
    ident, _ = s.add_peer()
    rec = listed(s.path, "--live")[1][ident]
    want_eq(rec["peer_subject"], "CN=sessdb test client,O=sessdb tests",
            "list --json peer_subject of a client-authenticated session")
    check("CN=sessdb test client" in run(["list"], db=s.path).stdout.decode(),
          "list shows the peer subject")
    run(["list", "--sort", "colour"], db=s.path, rc=2)
    run(["list", "--live", "--expired"], db=s.path, rc=2)
    check(b"\r" not in text.encode() and b"\033" not in text.encode(),
          "piped list output has no terminal control")


def case_show(tmp):
    s = Store(tmp)
    for ident, mk, exp in s.kinds["live"][:4] + s.kinds["expired"][:2]:
        out = run(["show", ident], db=s.path).stdout
        low = out.decode().lower().replace(":", "")
        check(mk not in low, "show without --secrets prints the master key")
        check(bytes.fromhex(mk) not in out, "show prints raw key bytes")
        check(ident in out.decode(), "show prints the ID")
        doc = run_json(["show", "--json", ident], s.path)
        check("master_key" not in doc, "show --json without --secrets")
        check(mk not in json.dumps(doc).lower(), "master key in show --json")
        want_eq(doc["id"], ident, "show --json id")
        want_eq(doc["expires"], exp, "show --json expires")
        sec = run(["show", "--secrets", ident], db=s.path).stdout.decode()
        check(mk in sec.lower(), "show --secrets prints the master key")
        doc = run_json(["show", "--json", "--secrets", ident], s.path)
        want_eq(doc["master_key"], mk, "show --json --secrets master_key")
    ident, mk = s.add_peer()
    doc = run_json(["show", "--json", ident], s.path)
    want_eq(doc["peer_issuer"], "CN=sessdb test CA,O=sessdb tests",
            "show --json peer_issuer")
    want_eq(doc["protocol"], "TLSv1.2", "show --json protocol")
    check(mk not in run(["show", ident], db=s.path).stdout.decode().lower(),
          "no master key in show of a real session")
    ident = s.kinds["expired"][0][0]
    want_eq(run_json(["show", "--json", ident], s.path)["status"], "expired",
            "show of an expired record")
    ident = s.kinds["badder"][0][0]
    doc = run_json(["show", "--json", ident], s.path)
    want_eq(doc["status"], "corrupt", "show of a corrupt record")
    # IDs with colons and upper case are accepted.
    ident = s.kinds["live"][0][0]
    colons = ":".join(ident[i:i + 2] for i in range(0, 64, 2)).upper()
    run(["show", colons], db=s.path)
    p = run(["show", "ab" * 32], db=s.path, rc=3)
    check(b"no session" in p.stderr, "unknown ID message")
    for bad in ("xyz", "abc", "ab" * 33, "a:b:", ""):
        run(["show", bad], db=s.path, rc=2)
    run(["show"], db=s.path, rc=2)


def case_stats(tmp):
    s = Store(tmp)
    doc = run_json(["stats", "--json"], s.path)
    r = doc["records"]
    want_eq(r, {"total": s.total(), "live": 12, "expired": 9, "corrupt": 5},
            "stats records")
    want_eq(doc["file_size"], os.path.getsize(s.path), "stats file_size")
    check(0 < doc["bytes_used"] <= doc["file_size"], "stats bytes_used")
    want_eq(sum(b["count"] for b in doc["ttl_histogram"]), 12,
            "ttl histogram covers the live records")
    want_eq(sum(doc["protocols"].values()), 21, "protocol breakdown")
    want_eq(sum(doc["ciphers"].values()), 21, "cipher breakdown")
    check(set(doc["protocols"]) == {"TLSv1.2", "TLSv1.3"}, "protocols")
    check(doc["oldest"]["created"] < doc["newest"]["created"],
          "oldest before newest")
    check(doc["oldest"]["id"] in s.ids("expired"), "oldest is an expired one")
    text = run(["stats"], db=s.path).stdout.decode()
    check("live 12, expired 9, corrupt 5" in text, "stats text counts")


def case_verify(tmp):
    s = Store(tmp)
    p = run(["verify"], db=s.path, rc=1)
    bad = set(re.findall(r"^bad record ([0-9a-f]+): ", p.stdout.decode(), re.M))
    want_eq(bad, s.corrupt_keys(), "verify: reported bad records")
    want_eq(len(listed(s.path)[1]), s.total(), "verify removed something")
    p = run(["verify", "--quiet"], db=s.path, rc=1)
    want_eq(len(p.stdout.splitlines()), 1, "verify --quiet: summary only")
    p = run(["verify", "--repair"], db=s.path, rc=0)
    check(b"5 bad, 5 removed" in p.stdout, "verify --repair summary")
    p = run(["verify"], db=s.path, rc=0)
    check(b"0 bad" in p.stdout, "verify after repair")
    want_eq(set(listed(s.path)[1]), s.ids("live", "expired"),
            "verify --repair kept every good record")


def case_opaque(tmp):
    """Other consumers' records (namespace 'O', format 2.1) next to the
    sessions: listed as consumer/hexkey, counted, kept by verify --repair
    and sweep, exported as SESSDB OPAQUE RECORD blocks (not with --der)
    and imported back byte for byte."""
    s = Store(tmp)
    manifest = os.path.join(tmp, "opaque.manifest")
    subprocess.run([FILL, "opaque", s.path, manifest, "8"], check=True)
    with open(manifest) as f:
        want = dict(line.split()[1:3] for line in f)
    recs = run_json(["list", "--json"], s.path)["records"]
    got = {r["id"] for r in recs if r.get("protocol") == "opaque"}
    want_eq(got, set(want), "opaque records listed")
    check(all(r["kind"] == "opaque" for r in recs if r.get("id") in got),
          "opaque records' kind")
    check(any(len(k.split("/")[1]) > 2 * 1024 for k in got), "a key over 1 KiB")
    doc = run_json(["stats", "--json"], s.path)
    want_eq(doc["records"]["live"], 12 + 8, "stats counts opaque records as live")
    want_eq(doc["namespaces"]["opaque"], 8, "stats: opaque namespace")
    want_eq(doc["namespaces"]["server"], s.total(), "stats: server namespace")
    p = run(["verify", "--repair"], db=s.path, rc=0)
    check(b"5 bad, 5 removed" in p.stdout, "verify --repair: %r" % p.stdout)
    run(["sweep"], db=s.path)
    recs = run_json(["list", "--json"], s.path)["records"]
    want_eq({r["id"] for r in recs if r.get("protocol") == "opaque"}, set(want),
            "opaque records after verify --repair and sweep")
    pem = run(["export", "--live"], db=s.path).stdout
    want_eq(pem.count(b"BEGIN SESSDB OPAQUE RECORD"), 8, "opaque blocks exported")
    want_eq(run(["export", "--live", "--der"], db=s.path).stdout.count(b"test-consumer"),
            0, "no opaque record in DER output")
    other = os.path.join(tmp, "other.db")
    run(["import"], db=other, stdin=pem)
    recs = run_json(["list", "--json"], other)["records"]
    want_eq({r["id"] for r in recs if r.get("protocol") == "opaque"}, set(want),
            "opaque records imported")
    # byte for byte: export them again from the copy
    want_eq(run(["export", "--live"], db=other).stdout.count(
        b"BEGIN SESSDB OPAQUE RECORD"), 8, "re-exported")
    a = re.findall(rb"-----BEGIN SESSDB OPAQUE RECORD-----.*?-----END", pem, re.S)
    b = re.findall(rb"-----BEGIN SESSDB OPAQUE RECORD-----.*?-----END",
                   run(["export", "--live"], db=other).stdout, re.S)
    want_eq(sorted(a), sorted(b), "opaque records unchanged by export/import")


def sess_id_of(pem_or_der, der=False):
    """The Session-ID that openssl sess_id reads from one session."""
    args = ["sess_id", "-noout", "-text"] + (["-inform", "DER"] if der else [])
    text = openssl(args, stdin=pem_or_der).decode()
    m = re.search(r"Session-ID: ([0-9A-F]+)", text)
    check(m is not None, "openssl sess_id shows no Session-ID")
    return m.group(1).lower()


def case_export(tmp):
    s = Store(tmp)
    ident = s.kinds["live"][0][0]
    pem = run(["export", ident], db=s.path).stdout
    check(pem.startswith(b"-----BEGIN SSL SESSION PARAMETERS-----"), "PEM")
    want_eq(sess_id_of(pem), ident, "openssl sess_id reads the export")
    live = run(["export", "--live"], db=s.path).stdout
    want_eq(live.count(b"BEGIN SSL SESSION"), 12, "export --live blocks")
    allp = run(["export", "--all"], db=s.path).stdout
    want_eq(allp.count(b"BEGIN SSL SESSION"), 21, "export --all blocks")
    out = os.path.join(tmp, "one.der")
    run(["export", "--der", "-o", out, ident], db=s.path)
    want_eq(stat.S_IMODE(os.stat(out).st_mode), 0o600, "-o file mode")
    with open(out, "rb") as f:
        want_eq(sess_id_of(f.read(), der=True), ident, "DER export")
    run(["export", "ab" * 32], db=s.path, rc=3)
    run(["export", s.kinds["expired"][0][0]], db=s.path, rc=3)
    run(["export"], db=s.path, rc=2)
    run(["export", "--all", ident], db=s.path, rc=2)
    run(["export", "-o", os.path.join(tmp, "no", "such", "dir"), ident],
        db=s.path, rc=6)
    export_output_checks(tmp, s, ident)


def export_output_checks(tmp, s, ident):
    """Secrets go only to a new 0600 file, a file of ours with --force, a
    terminal or a pipe; never into a file others can read."""
    out = os.path.join(tmp, "exists.pem")
    with open(out, "wb") as f:
        f.write(b"keep me\n")
    os.chmod(out, 0o644)
    p = run(["export", "--live", "-o", out], db=s.path, rc=6)
    check(b"--force" in p.stderr, "existing -o file: message names --force")
    with open(out, "rb") as f:
        want_eq(f.read(), b"keep me\n", "existing -o file left alone")
    run(["export", "--live", "-o", out, "--force"], db=s.path)
    want_eq(stat.S_IMODE(os.stat(out).st_mode), 0o600, "--force makes 0600")
    with open(out, "rb") as f:
        want_eq(f.read().count(b"BEGIN SSL SESSION"), 12, "--force output")
    link = os.path.join(tmp, "link.pem")
    os.symlink(out, link)
    run(["export", "--live", "-o", link, "--force"], db=s.path, rc=6)
    # Nothing exported: the new file is not left behind.
    nothing = os.path.join(tmp, "nothing.pem")
    run(["export", "-o", nothing, "ab" * 32], db=s.path, rc=3)
    check(not os.path.exists(nothing), "an empty -o file is removed")
    # Standard output redirected into a file others can read is refused.
    for mode, rc in ((0o644, 6), (0o640, 6), (0o600, 0)):
        path = os.path.join(tmp, "stdout-%o.pem" % mode)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        os.fchmod(fd, mode)
        p = subprocess.run([SESSDUMP, "--db", s.path, "export", ident],
                           stdout=fd, stderr=subprocess.PIPE)
        os.close(fd)
        want_eq(p.returncode, rc, "export > file mode %o: exit" % mode)
        if rc:
            check(b"-o FILE" in p.stderr, "stdout refusal suggests -o")
            want_eq(os.path.getsize(path), 0, "nothing written to it")


def case_import(tmp):
    a = Store(tmp, "a.db")
    b = os.path.join(tmp, "b.db")
    live_pem = os.path.join(tmp, "live.pem")
    run(["export", "--live", "-o", live_pem], db=a.path)
    p = run(["import", live_pem], db=b)
    check(b"stored 12 sessions" in p.stdout, "import summary")
    _, recs = listed(b)
    want_eq(set(recs), a.ids("live"), "imported IDs")
    for ident, mk, exp in a.kinds["live"]:
        want_eq(recs[ident]["expires"], exp, "imported expiry")
    ident, mk, _ = a.kinds["live"][1]
    doc = run_json(["show", "--json", "--secrets", ident], b)
    want_eq(doc["master_key"], mk, "imported master key")
    # openssl sess_id -out output, DER and PEM, and standard input.
    c = os.path.join(tmp, "c.db")
    one = run(["export", ident], db=a.path).stdout
    der = openssl(["sess_id", "-outform", "DER"], stdin=one)
    pem = openssl(["sess_id"], stdin=one)
    derf = os.path.join(tmp, "sess_id.der")
    with open(derf, "wb") as f:
        f.write(der)
    run(["import", derf], db=c)
    run(["import"], db=c, stdin=pem)
    run(["import", "-"], db=c, stdin=der)
    want_eq(set(listed(c)[1]), {ident}, "import of openssl sess_id output")
    # Expired sessions are refused one by one; the live ones go in.
    d = os.path.join(tmp, "d.db")
    allp = run(["export", "--all"], db=a.path).stdout
    p = run(["import"], db=d, stdin=allp, rc=5)
    want_eq(p.stderr.count(b"refused: it has expired"), 9, "expired refusals")
    want_eq(set(listed(d)[1]), a.ids("live"), "live ones imported")
    # Malformed input: nothing is imported.
    bad = {
        "garbage": b"this is not a session\n" * 10,
        "empty": b"",
        "truncated.pem": one[:len(one) // 2],
        "truncated.der": der[:len(der) // 2],
        "trailing.der": der + b"\x01\x02",
        "pem-no-end": one.replace(b"-----END SSL SESSION PARAMETERS-----", b""),
        "cert-only.pem": b"-----BEGIN CERTIFICATE-----\nAAAA\n"
                         b"-----END CERTIFICATE-----\n",
    }
    e = os.path.join(tmp, "e.db")
    run(["import", live_pem], db=e)
    for name, data in bad.items():
        path = os.path.join(tmp, name)
        with open(path, "wb") as f:
            f.write(data)
        p = run(["import", live_pem, path], db=e, rc=5)
        check(name.encode() in p.stderr, "import %s: message names the file"
              % name)
        check(b"nothing imported" in p.stderr, "import %s: nothing" % name)
    want_eq(set(listed(e)[1]), a.ids("live"), "store unchanged by bad input")
    run(["import", os.path.join(tmp, "missing.pem")], db=e, rc=6)
    run(["import", tmp], db=e, rc=6)
    allp_file = os.path.join(tmp, "all.pem")
    with open(allp_file, "wb") as fp:
        fp.write(allp)
    g = os.path.join(tmp, "g.db")
    run(["import"], db=g, stdin=one)
    p = run(["import", "--dry-run", allp_file], db=g, rc=5)
    check(b"would store 12" in p.stdout, "import --dry-run summary")
    want_eq(set(listed(g)[1]), {ident}, "import --dry-run stored nothing")


def sweep_lines(out, verb):
    """IDs and keys from sweep's per-record lines."""
    return set(re.findall(r"^%s ([0-9a-f]+) " % verb, out.decode(), re.M))


def case_sweep(tmp):
    s = Store(tmp)
    p = run(["sweep", "--dry-run"], db=s.path)
    want_eq(sweep_lines(p.stdout, "would remove"), s.ids("expired", "badhdr"),
            "sweep --dry-run reports")
    want_eq(len(listed(s.path)[1]), s.total(), "dry run removed nothing")
    p = run(["sweep", "--batch", "4", "--no-compact"], db=s.path)
    want_eq(sweep_lines(p.stdout, "removed"), s.ids("expired", "badhdr"),
            "sweep removed")
    check(b"removed 9 expired and 2 corrupt" in p.stdout, "sweep summary")
    check(b"\r" not in p.stdout + p.stderr, "no progress when piped")
    want_eq(set(listed(s.path)[1]),
            s.ids("live") | {"53" + i for i in s.ids("badder", "mismatch")},
            "what sweep kept")
    p = run(["sweep", "--quiet", "--compact"], db=s.path)
    check(b"compacted:" in p.stdout, "sweep --compact compacts")
    want_eq(len(p.stdout.splitlines()), 2, "sweep --quiet: summary lines")
    want_eq(set(listed(s.path, "--live")[1]), s.ids("live"),
            "live records survive compaction")
    run(["sweep", "--batch", "0"], db=s.path, rc=2)
    # A small file is not compacted on its own ...
    p = run(["sweep"], db=s.path)
    check(b"compacted" not in p.stdout, "small file left alone")
    # ... a file of more than 1 MiB that is mostly free space is.
    big = Store(tmp, "big.db", live=20, expired=5000, badhdr=0, badder=0,
                mismatch=0)
    size = os.path.getsize(big.path)
    check(size >= 1 << 20, "big store is at least 1 MiB (%d)" % size)
    p = run(["sweep", "--quiet"], db=big.path)
    check(b"compacted:" in p.stdout, "sweep compacts a mostly free file")
    check(os.path.getsize(big.path) < size // 4, "file shrank")
    want_eq(set(listed(big.path)[1]), big.ids("live"), "after compaction")


def case_concurrent(tmp):
    """sweep while 4 processes read and write: exactly the expired go."""
    s = Store(tmp, live=100, expired=1500, badhdr=0, badder=0, mismatch=0)
    manifest = s.path + ".manifest"
    workers = []
    for i in range(4):
        out = os.path.join(tmp, "w%d.ids" % i)
        workers.append((subprocess.Popen(
            [FILL, "worker", s.path, manifest, "4", str(0xf0 + i), out]),
            out))
    time.sleep(0.5)
    # --compact: the file is also rewritten while the workers use it.
    p = run(["sweep", "--batch", "32", "--compact"], db=s.path, timeout=60)
    removed = sweep_lines(p.stdout, "removed")
    check(b"compacted:" in p.stdout, "sweep compacted under load")
    for w, _ in workers:
        want_eq(w.wait(timeout=60), 0, "worker exit status")
    want_eq(removed, s.ids("expired"), "sweep removed exactly the expired")
    _, recs = listed(s.path)
    mine = set()
    for _, out in workers:
        with open(out) as f:
            mine |= {line.strip() for line in f if line.strip()}
    check(len(mine) > 40, "workers wrote sessions (%d)" % len(mine))
    want_eq(set(recs), s.ids("live") | mine, "records after the sweep")
    check(all(r["status"] == "live" for r in recs.values()), "all live")


def one_line(p, what, words):
    """The failure is one line on stderr and mentions one of words."""
    err = p.stderr.decode()
    want_eq(err.count("\n"), 1, "%s: lines of stderr (%r)" % (what, err))
    check(any(w in err for w in words), "%s: message %r" % (what, err))


def case_badinput(tmp):
    s = Store(tmp, live=3, expired=1, badhdr=0, badder=0, mismatch=0)
    missing = os.path.join(tmp, "missing.db")
    for cmd in (["list"], ["stats"], ["verify"], ["export", "--all"],
                ["show", "aa"], ["sweep"], ["sweep", "--dry-run"]):
        p = run(cmd, db=missing, rc=4)
        one_line(p, "missing " + cmd[0], ["No such file"])
    check(not os.path.exists(missing), "a read made the missing database")
    d = os.path.join(tmp, "dir.db")
    os.mkdir(d)
    for cmd in (["list"], ["sweep"], ["import", "/dev/null"]):
        p = run(cmd, db=d, rc=None)
        check(p.returncode in (4, 5), "directory: exit %d" % p.returncode)
    one_line(run(["list"], db=d, rc=4), "directory", ["directory"])
    g = os.path.join(tmp, "garbage.db")
    with open(g, "wb") as f:
        f.write(os.urandom(8192))
    os.chmod(g, 0o600)
    for cmd in (["list"], ["stats"], ["verify"]):
        one_line(run(cmd, db=g, rc=4), "garbage " + cmd[0],
                 ["damaged", "corrupt", "magic", "not a"])
    # Locked: another process holds the exclusive lock on <db>.lock.
    holder = subprocess.Popen(["flock", "-x", s.path + ".lock", "sleep", "5"],
                              start_new_session=True)
    try:
        time.sleep(0.3)
        for cmd in (["list"], ["sweep"], ["stats"]):
            t0 = time.monotonic()
            p = run(["--lock-timeout", "200"] + cmd, db=s.path, rc=4)
            check(time.monotonic() - t0 < 3, "lock timeout honoured")
            one_line(p, "locked " + cmd[0], ["lock"])
    finally:
        os.killpg(holder.pid, signal.SIGKILL)  # flock and its sleep
        holder.wait()
    run(["list"], db=s.path)
    permission_checks(tmp, s)
    usage_checks(s)


def copy_for_others(tmp):
    """sessdump and libsessdb copied where any user can run them (the build
    tree may sit in a directory only root can enter); (exe, libdir)."""
    bindir = os.path.join(tmp, "bin")
    os.mkdir(bindir)
    exe = shutil.copy(SESSDUMP, bindir)
    libdir = os.path.join(os.path.dirname(SESSDUMP), "..", "lib")
    for name in os.listdir(libdir):
        path = os.path.join(libdir, name)
        if name.startswith("libsessdb.so") and os.path.isfile(path):
            shutil.copy(path, bindir)
    for path in (tmp, bindir):
        os.chmod(path, 0o755)
    return exe, bindir


def permission_checks(tmp, s):
    """Permission denied, as the user nobody (tests usually run as root)."""
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        print("permission checks skipped: not root")
        return
    exe, libdir = copy_for_others(tmp)
    if run(["--help"], user="nobody", exe=exe, libdir=libdir,
           rc=None).returncode != 0:
        print("permission checks skipped: nobody cannot run sessdump")
        return
    pdir = os.path.join(tmp, "perm")
    os.mkdir(pdir)
    os.chmod(pdir, 0o755)
    db = os.path.join(pdir, "p.db")
    shutil.copy(s.path, db)
    shutil.copy(s.path + ".lock", db + ".lock")
    as_nobody = dict(user="nobody", exe=exe, libdir=libdir, rc=4)
    # Owned by root, mode 0600: nobody may not read it.
    one_line(run(["list"], db=db, **as_nobody), "root's file",
             ["ermission", "owned by", "owner"])
    # Owned by nobody, mode 0000: refused by the kernel.
    for f in (db, db + ".lock"):
        os.chown(f, 65534, 65534)
    os.chmod(db, 0)
    for cmd in (["list"], ["stats"], ["sweep"]):
        one_line(run(cmd, db=db, **as_nobody), "mode 0000 " + cmd[0],
                 ["ermission"])


def usage_checks(s):
    """Bad usage: usage text on stderr, exit 2; --help needs no database."""
    for args in ([], ["frobnicate"], ["list", "--frob"], ["show"],
                 ["--lock-timeout", "x", "list"], ["sweep", "extra"]):
        p = run(args, db=s.path, rc=2)
        check(b"usage:" in p.stderr, "usage text for %s" % args)
    p = run(["list"], rc=2)
    check(b"SESSDB_PATH" in p.stderr, "no database: names SESSDB_PATH")
    # Global options after the command work as before it.
    # (the clock may tick between the two runs: "now" and the seconds
    # left are not compared)
    def timeless(args):
        doc = json.loads(run(args).stdout)
        doc.pop("now")
        for r in doc["records"]:
            r.pop("seconds_left")
        return doc
    want_eq(timeless(["list", "--live", "--json", "--db", s.path]),
            timeless(["--db", s.path, "list", "--live", "--json"]),
            "list --db X == --db X list")
    run(["stats", "--db=" + s.path, "--lock-timeout", "500", "--no-progress"])
    run(["show", s.kinds["live"][0][0], "--db", s.path])
    for args, name in ((["list", "--db"], b"'--db'"),
                       (["list", "--frob"], b"'--frob'"),
                       (["list", "--sort"], b"'--sort'"),
                       (["list", "--live=1"], b"'--live'"),
                       (["sweep", "-z"], b"'-z'"),
                       (["list", "--lock-timeout", "x"], b"--lock-timeout")):
        p = run(args, db=s.path if args[1] != "--db" else None, rc=2)
        check(name in p.stderr.splitlines()[0],
              "%s: the error names %s: %r" % (args, name, p.stderr[:200]))
    for cmd in ("list", "show", "stats", "verify", "export", "import",
                "sweep"):
        p = run([cmd, "--help"])
        check(p.stdout.startswith(b"usage: sessdump"), cmd + " --help")
    env = dict(os.environ, SESSDB_PATH=s.path)
    p = subprocess.run([SESSDUMP, "list", "--live"], env=env,
                       capture_output=True)
    want_eq(p.returncode, 0, "SESSDB_PATH fallback")


def case_units(tmp):
    """The commands in the cron line and the systemd service run as written."""
    src = os.environ.get("SESSDB_TOP_SRCDIR", "")
    data = os.path.join(src, "data")
    s = Store(tmp, live=5, expired=5, badhdr=1, badder=0, mismatch=0)
    cmds = []
    with open(os.path.join(data, "sessdump-sweep.cron")) as f:
        lines = [ln for ln in f if ln.strip() and not ln.startswith("#")]
    want_eq(lines[0].split("=")[0], "SESSDB_PATH", "cron sets SESSDB_PATH")
    fields = lines[1].split(None, 6)
    want_eq(len(fields), 7, "cron line: 5 time fields, user, command")
    cmds.append(fields[6].split(">")[0].split())
    with open(os.path.join(data, "sessdump-sweep.service")) as f:
        text = f.read()
    cmds.append(re.search(r"^ExecStart=(.*)$", text, re.M).group(1).split())
    check(re.search(r"^Environment=SESSDB_PATH=", text, re.M), "service env")
    with open(os.path.join(data, "sessdump-sweep.timer")) as f:
        check(re.search(r"^OnCalendar=", f.read(), re.M), "timer schedule")
    for cmd in cmds:
        want_eq(cmd[0], "@BINDIR@/sessdump", "command path placeholder")
        env = dict(os.environ, SESSDB_PATH=s.path)
        p = subprocess.run([SESSDUMP] + cmd[1:], env=env, capture_output=True)
        want_eq(p.returncode, 0, "%s: exit status (%s)" % (cmd, p.stderr))
        want_eq(len(p.stdout.splitlines()), 1, "--quiet: one summary line")
    want_eq(set(listed(s.path)[1]), s.ids("live"), "the unit's sweep worked")


def on_pty(args, db):
    """Run sessdump with stderr on a pseudo-terminal; return what it drew."""
    import pty
    import select
    master, slave = pty.openpty()
    p = subprocess.run([SESSDUMP, "--db", db] + args, stderr=slave,
                       stdout=subprocess.DEVNULL, timeout=30)
    os.close(slave)
    data = b""
    while select.select([master], [], [], 0.5)[0]:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    os.close(master)
    return p.returncode, data


def case_progress(tmp):
    """Progress on a terminal for long runs; nothing when piped or asked."""
    s = Store(tmp, live=150, expired=150, badhdr=0, badder=0, mismatch=0)
    for args in (["verify"], ["stats"], ["export", "--all"],
                 ["sweep", "--dry-run"]):
        rc, drawn = on_pty(args, s.path)
        want_eq(rc, 0, "%s on a terminal: exit status" % args)
        check(re.search(rb"\r[a-z ,()]+: \d+(/\d+)? records", drawn),
              "%s on a terminal draws progress: %r" % (args, drawn[:200]))
        check(drawn.endswith(b"\r\033[K"), "progress line erased")
        rc, drawn = on_pty(["--no-progress"] + args, s.path)
        want_eq(drawn, b"", "--no-progress %s" % args)
        p = run(args, db=s.path)
        check(b"\r" not in p.stderr + p.stdout, "piped %s is clean" % args)
    # Compaction says what it does and how long it took, on a terminal only.
    rc, drawn = on_pty(["sweep", "--compact"], s.path)
    want_eq(rc, 0, "sweep --compact on a terminal")
    check(re.search(rb"compacting .* \([0-9.]+ [kM]B\) \.\.\. compacted to "
                    rb"[0-9.]+ [kM]B in [0-9.]+ s", drawn),
          "compaction progress: %r" % drawn[-300:])
    p = run(["sweep", "--compact"], db=s.path)
    check(b"compacting" not in p.stderr, "no compaction progress when piped")
    check(re.search(rb"^compacted: \d+ -> \d+ bytes in [0-9.]+ s$", p.stdout,
                    re.M), "compaction summary on stdout")


# ---- secrets in freed memory ----

def freescan(args, needles):
    """Run sessdump under tests/freescan.c; return {object: blocks freed
    still holding one of needles (hex)}."""
    env = dict(os.environ, FREESCAN=",".join(needles),
               LD_PRELOAD=os.environ["FREESCAN_SO"])
    env.pop("SESSDB_PATH", None)
    p = subprocess.run([SESSDUMP] + args, env=env, capture_output=True,
                       timeout=60)
    m = re.search(rb"^freescan: (\d+) freed blocks held a secret:(.*)$",
                  p.stderr, re.M)
    check(m is not None, "%s: no freescan line: %r" % (args, p.stderr[-300:]))
    counts = dict(kv.split("=") for kv in m.group(2).decode().split())
    return p.returncode, {k: int(v) for k, v in counts.items()}


def case_wipe(tmp):
    """No block that sessdump, OpenSSL or libsessdb frees in sessdump still
    holds a master key: list, stats, show, verify, export, import, sweep.
    GDBM's own cache (freed at close) is reported, not checked."""
    so = os.environ.get("FREESCAN_SO", "")
    if not so or not os.path.exists(so):
        print("skipped: FREESCAN_SO (tests/freescan.c) not built")
        return SKIP
    ldd = subprocess.run(["ldd", SESSDUMP], capture_output=True).stdout
    if b"libasan" in ldd:
        print("skipped: sessdump is built with AddressSanitizer, whose "
              "allocator cannot sit under an LD_PRELOAD free()")
        return SKIP
    s = Store(tmp, live=10, expired=5, badhdr=0, badder=0, mismatch=0)
    keys = [mk[:32] for k in ("live", "expired") for _, mk, _ in s.kinds[k]]
    ident = s.kinds["live"][0][0]
    # Control: list frees the hex IDs it printed, unwiped (not secrets):
    # the scanner must see those blocks, counted against the program.
    _, counts = freescan(["--db", s.path, "list"],
                         [ident[:32].encode().hex()])
    check(counts.get("program", 0) > 0, "control: the scanner sees the "
          "program's frees (%s)" % counts)
    pem = os.path.join(tmp, "live.pem")
    run(["export", "--live", "-o", pem], db=s.path)
    into = os.path.join(tmp, "into.db")
    others = {}
    for args in (["list"], ["stats"], ["show", ident],
                 ["show", "--secrets", ident], ["verify"],
                 ["export", "--all"], ["export", "--der", ident],
                 ["export", "--live", "-o", os.path.join(tmp, "x.pem")],
                 ["sweep", "--dry-run"], ["sweep", "--compact"],
                 ["--db", into, "import", pem]):
        db = [] if args[0] == "--db" else ["--db", s.path]
        rc, counts = freescan(db + args, keys)
        want_eq(rc, 0, "%s: exit status" % args)
        for obj in ("program", "libcrypto", "libssl", "libsessdb"):
            want_eq(counts.get(obj, 0), 0, "%s: blocks freed by %s still "
                    "holding a master key" % (args, obj))
        others[" ".join(args)] = counts
    # What GDBM leaves (its bucket cache, freed unwiped at gdbm_close).
    for cmd, counts in others.items():
        print("%-24s freed blocks with a master key: %s" % (cmd, counts or 0))


# ---- files that are not sessdb stores ----

def make_foreign_gdbm(path):
    """A GDBM database that is not a sessdb store, with a few foreign keys
    (through libgdbm with ctypes: python3's dbm.gnu is often missing)."""
    import ctypes
    import ctypes.util

    class Datum(ctypes.Structure):
        _fields_ = [("dptr", ctypes.c_char_p), ("dsize", ctypes.c_int)]

    name = ctypes.util.find_library("gdbm") or "libgdbm.so.6"
    lib = ctypes.CDLL(name)
    lib.gdbm_open.restype = ctypes.c_void_p
    lib.gdbm_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int,
                              ctypes.c_int, ctypes.c_void_p]
    lib.gdbm_store.argtypes = [ctypes.c_void_p, Datum, Datum, ctypes.c_int]
    lib.gdbm_close.argtypes = [ctypes.c_void_p]
    dbf = lib.gdbm_open(path.encode(), 0, 3, 0o600, None)  # GDBM_NEWDB
    check(dbf, "gdbm_open of the foreign database")
    for k, v in ((b"user:alice", b"uid=1000"), (b"user:bob", b"uid=1001"),
                 (b"config", b"not a session store")):
        rc = lib.gdbm_store(dbf, Datum(k, len(k)), Datum(v, len(v)), 1)
        check(rc == 0, "gdbm_store into the foreign database")
    lib.gdbm_close(dbf)


def foreign_files(d):
    """Create the foreign files in directory d: {label: path}."""
    files = {}
    key = os.path.join(d, "server.key")
    pem = subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                          "ec_paramgen_curve:P-256"], capture_output=True,
                         check=True).stdout
    with open(key, "wb") as f:
        f.write(pem)
    os.chmod(key, 0o600)
    files["PEM key"] = key
    text = os.path.join(d, "notes.txt")
    with open(text, "w") as f:
        f.write("Remember: rotate the session ticket keys on Monday.\n" * 40)
    os.chmod(text, 0o644)
    files["text file"] = text
    gdbm = os.path.join(d, "users.db")
    make_foreign_gdbm(gdbm)
    files["foreign GDBM"] = gdbm
    empty = os.path.join(d, "empty.db")
    open(empty, "wb").close()
    os.chmod(empty, 0o600)
    files["empty file"] = empty
    past = time.time() - 3600  # a rewrite shows even within one second
    for path in files.values():
        os.utime(path, (past, past))
    return files


def snapshot(path):
    """What must not change: the directory's names, the file's bytes,
    mode, mtime and inode (a file moved aside and recreated differs)."""
    st = os.stat(path)
    with open(path, "rb") as f:
        data = f.read()
    return (sorted(os.listdir(os.path.dirname(path))), data,
            stat.S_IMODE(st.st_mode), st.st_mtime_ns, st.st_ino)


def foreign_commands(tmp, ident):
    """(label, args, writes) for every command that opens the store."""
    pem = os.path.join(tmp, "in.pem")
    return [("list", ["list"], False),
            ("stats", ["stats"], False),
            ("show", ["show", ident], False),
            ("verify", ["verify"], False),
            ("export", ["export", "--all"], False),
            ("sweep --dry-run", ["sweep", "--dry-run"], False),
            ("sweep", ["sweep"], True),
            ("sweep --compact", ["sweep", "--compact"], True),
            ("import", ["import", pem], True),
            ("verify --repair", ["verify", "--repair"], True)]


def foreign_one(label, path, cmd, args):
    """One command on one foreign file; a list of what went wrong."""
    before = snapshot(path)
    p = run(args, db=path, rc=None)
    err = p.stderr.decode(errors="replace")
    after = snapshot(path)
    bad = []
    if p.returncode != 4:
        bad.append("exit %d, want 4" % p.returncode)
    if path not in err or not re.search(r"not a sessdb", err, re.I):
        bad.append("stderr does not name the file and say it is not a "
                   "sessdb store: %r" % err.strip()[:200])
    new = sorted(set(after[0]) - set(before[0]))
    gone = sorted(set(before[0]) - set(after[0]))
    if new or gone:
        bad.append("directory changed: new %s, gone %s" % (new, gone))
    for i, what in ((1, "bytes"), (2, "mode"), (3, "mtime"), (4, "inode")):
        if before[i] != after[i]:
            bad.append("its %s changed" % what)
    article = "an" if label[0] in "aeiou" else "a"
    return (["%s on %s %s: %s" % (cmd, article, label, "; ".join(bad))]
            if bad else [])


def case_foreign(tmp):
    """Every command refuses a file that is not a sessdb store (a PEM key,
    a text file, another program's GDBM database, an empty file with no
    lock file) with exit 4 and a message, and leaves it and its directory
    as they were: no rename aside, no lock file.  The same commands work
    on a real store, so a refusal is not mistaken for breakage."""
    src = Store(tmp, "src.db", live=3, expired=0, badhdr=0, badder=0,
                mismatch=0)
    ident = src.kinds["live"][0][0]
    run(["export", "--live", "-o", os.path.join(tmp, "in.pem")], db=src.path)
    cmds = foreign_commands(tmp, ident)
    for cmd, args, _ in cmds:
        real = Store(tmp, "real-%s.db" % cmd.replace(" ", ""), live=3,
                     expired=2, badhdr=0, badder=0, mismatch=0)
        if cmd == "show":
            args = ["show", real.kinds["live"][0][0]]
        run(args, db=real.path)
    problems = []
    n = 0
    for cmd, args, _ in cmds:
        n += 1
        d = os.path.join(tmp, "f%d" % n)
        os.mkdir(d)
        for label, path in foreign_files(d).items():
            problems += foreign_one(label, path, cmd, args)
    total = len(cmds) * 4
    print("foreign: %d of %d command/file combinations refused cleanly" %
          (total - len(problems), total))
    for line in problems:
        print("  " + line)
    check(not problems, "%d of %d combinations did not refuse a foreign file "
          "cleanly (see above)" % (len(problems), total))


# ---- migration between two demo servers ----

def start_demo(tmp, name, tls, extra=()):
    """Start sessdemo on a kernel-chosen port with its own cache (extra:
    more options); return (proc, port, cache)."""
    ready = os.path.join(tmp, name + ".ready")
    cache = os.path.join(tmp, name + ".db")
    with open(os.path.join(tmp, name + ".log"), "w") as log:
        proc = subprocess.Popen([SESSDEMO, "--port", "0", "--cache", cache,
                                 "--workers", "2", "--ready-file", ready,
                                 "--tls", tls] + list(extra),
                                stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 15
    while not os.path.exists(ready):
        if proc.poll() is not None:
            raise Fail("sessdemo %s exited %d" % (name, proc.returncode))
        if time.monotonic() > deadline:
            proc.kill()
            raise Fail("sessdemo %s did not become ready" % name)
        time.sleep(0.05)
    with open(ready) as f:
        return proc, int(f.read()), cache


def s_client(port, *extra):
    """One openssl s_client connection; return its output."""
    cmd = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
           "-servername", "localhost", "-ign_eof"] + list(extra)
    p = subprocess.run(cmd, input=b"GET / HTTP/1.0\r\n\r\n",
                       capture_output=True, timeout=20)
    return p.stdout.decode(errors="replace")


def case_migration(tmp):
    """Export sessions from server A's store, import into B's, resume on B;
    with TLS 1.2 (session IDs) and TLS 1.3 (stateful tickets)."""
    if not SESSDEMO or not os.path.exists(SESSDEMO):
        print("sessdemo not built")
        return SKIP
    for tls in ("1.2", "1.3"):
        sub = os.path.join(tmp, "tls" + tls)
        os.mkdir(sub)
        migrate(sub, tls)


def migrate(tmp, tls):
    """One migration between two fresh sessdemo servers."""
    a, pa, cache_a = start_demo(tmp, "a", tls)
    try:
        b, pb, cache_b = start_demo(tmp, "b", tls)
    except Fail:
        a.kill()
        raise
    try:
        sess = os.path.join(tmp, "client.sess")
        out = s_client(pa, "-sess_out", sess)
        check("New, TLSv" + tls in out, "first handshake with A is new")
        time.sleep(0.3)
        _, recs = listed(cache_a, "--live")
        check(len(recs) >= 1, "A's store holds the session")
        pem = os.path.join(tmp, "migrate.pem")
        run(["export", "--live", "-o", pem], db=cache_a)
        with open(pem, "rb") as f:
            blocks = re.findall(rb"-----BEGIN SSL SESSION PARAMETERS-----.*?"
                                rb"-----END SSL SESSION PARAMETERS-----\n",
                                f.read(), re.S)
        want_eq({sess_id_of(blk) for blk in blocks}, set(recs),
                "openssl sess_id -noout -text shows A's session IDs")
        out = s_client(pb, "-sess_in", sess)
        check("Reused," not in out, "B cannot resume before the import")
        run(["import", pem], db=cache_b)
        out = s_client(pb, "-sess_in", sess)
        check("Reused, TLSv" + tls in out, "TLS %s client resumes on B after "
              "the migration:\n%s" % (tls, out[-1500:]))
    finally:
        for p in (a, b):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


# ---- sealed stores: --key, rekey, rotation, and a server that seals ----

def key_file(tmp, name, nkeys=1, mode=0o600, data=None):
    """A key file of nkeys random keys (or data); (path, [key ids])."""
    path = os.path.join(tmp, name)
    data = data if data is not None else os.urandom(32 * nkeys)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    ids = [hashlib.sha256(b"sessdb key id" + data[i:i + 32]).digest()[:2].hex()
           for i in range(0, len(data) - len(data) % 32, 32)]
    return path, ids


def case_seal(tmp):
    s = Store(tmp)
    k1, (id1,) = key_file(tmp, "k1")
    with open(k1, "rb") as f:
        old = f.read()
    k12, (_, id2) = key_file(tmp, "k12", data=old + os.urandom(32))
    sealable = s.ids("live") | s.ids("badder", "mismatch")  # sound headers
    run(["rekey"], db=s.path, rc=2)             # no key: usage error
    p = run(["--key", k1, "rekey", "--batch", "4"], db=s.path)
    check(b"resealed %d," % len(sealable) in p.stdout, "rekey summary: %r"
          % p.stdout)
    # Without the key: sealed records are reported, with their key id.
    doc, recs = listed(s.path)
    for ident in sealable:
        want_eq(recs[ident]["status"], "sealed", "status without the key")
        want_eq(recs[ident]["key_id"], id1, "key id of " + ident)
        check("sealed, no key" in recs[ident]["problem"], "problem names it")
    for ident in s.ids("expired"):
        want_eq(recs[ident]["sealed"], False, "expired records are not sealed")
    want_eq(set(listed(s.path, "--live")[1]), s.ids("live") |
            s.ids("badder", "mismatch"), "list --live counts sealed ones")
    st = run_json(["stats", "--json"], s.path)
    want_eq(st["sealed"], {"total": len(sealable), "unopened": len(sealable)},
            "stats sealed without the key")
    want_eq(st["records"]["corrupt"], 2, "only bad headers are corrupt")
    want_eq(st["sealed_by_key_id"], {id1: len(sealable)}, "stats by key id")
    ident, mk, _ = s.kinds["live"][0]
    doc = run_json(["show", "--json", ident], s.path)
    want_eq((doc["status"], doc["key_id"]), ("sealed", id1), "show, no key")
    check(mk not in run(["show", "--secrets", ident], db=s.path)
          .stdout.decode().lower(), "no master key without the key")
    # With the key: the sessions themselves, the master key on request.
    sec = run(["--key", k1, "show", "--secrets", ident], db=s.path).stdout
    check(mk in sec.decode().lower(), "show --key --secrets opens the record")
    _, recs = listed(s.path, "--key", k1, "--live")
    want_eq(set(recs), s.ids("live"), "list --key --live")
    check(all(r["sealed"] and r["protocol"].startswith("TLS")
              for r in recs.values()), "opened records decode")
    st = run_json(["--key", k1, "stats", "--json"], s.path)
    want_eq(st["sealed"]["unopened"], 0, "stats with the key")
    want_eq(st["records"]["corrupt"], 5, "stats corrupt with the key")
    # export needs the key; import seals with it.
    p = run(["export", "--live", "-o", os.path.join(tmp, "none.pem")],
            db=s.path)
    check(b"skipped %d sealed records: no key" % len(sealable) in p.stderr,
          "export without the key says why: %r" % p.stderr)
    pem = os.path.join(tmp, "live.pem")
    run(["--key", k1, "export", "--live", "-o", pem], db=s.path)
    other = os.path.join(tmp, "other.db")
    run(["--key", k1, "import", pem], db=other)
    _, recs = listed(other)
    want_eq({(r["status"], r["key_id"]) for r in recs.values()},
            {("sealed", id1)}, "import --key seals")
    want_eq(set(listed(other, "--key", k1, "--live")[1]), s.ids("live"),
            "the imported sessions open with the key")
    # verify --repair without the key keeps what it cannot open.
    p = run(["verify", "--repair"], db=s.path)
    check(b"%d sealed records not checked" % len(sealable) in p.stdout,
          "verify counts unopened records: %r" % p.stdout)
    _, recs = listed(s.path, "--key", k1, "--live")
    want_eq(set(recs), s.ids("live"), "verify --repair kept sealed records")
    # The key from the environment; rotation to the second key.
    os.environ["SESSDB_KEY_FILE"] = k12
    try:
        run(["rekey"], db=s.path)
        doc, recs = listed(s.path, "--live")
        want_eq({r["key_id"] for r in recs.values()}, {id2},
                "after rotation every record is under the new key")
    finally:
        del os.environ["SESSDB_KEY_FILE"]
    p = run(["--key", k1, "list", "--live"], db=s.path)
    check(p.stdout.count(b"sealed under a key not in the key file") ==
          len(sealable), "the old key alone opens nothing now")
    # Key files that are not fit are refused, and say why.
    for name, mode, data, msg in (
            ("k-mode", 0o644, None, b"mode 0644"),
            ("k-short", 0o600, os.urandom(31), b"whole number"),
            ("k-zero", 0o600, bytes(32), b"repeated")):
        path, _ = key_file(tmp, name, mode=mode, data=data)
        p = run(["--key", path, "list"], db=s.path, rc=4)
        check(msg in p.stderr, "%s: %r" % (name, p.stderr))
    p = run(["list", "--key", os.path.join(tmp, "nope")], db=s.path, rc=4)
    check(b"No such file" in p.stderr, "a missing key file")
    if SESSDEMO and os.path.exists(SESSDEMO):
        sealed_server(tmp, k12, id2)
    else:
        print("sessdemo not built: the server part is skipped")


def sealed_server(tmp, key, key_id):
    """sessdemo --cache-key: clients resume; the file holds only sealed
    records, which sessdump opens with the key alone."""
    proc, port, cache = start_demo(tmp, "sealed", "1.2",
                                   ["--cache-key", key])
    try:
        sess = os.path.join(tmp, "sealed.sess")
        check("New, TLSv1.2" in s_client(port, "-sess_out", sess),
              "first handshake is new")
        time.sleep(0.3)
        for _ in range(3):
            out = s_client(port, "-sess_in", sess)
            check("Reused, TLSv1.2" in out, "resumes through a sealed cache")
        _, recs = listed(cache)
        check(len(recs) >= 1 and all(r["status"] == "sealed" and
              r["key_id"] == key_id for r in recs.values()),
              "the server's records are sealed: %r" % recs)
        _, recs = listed(cache, "--key", key, "--live")
        check(all(r["protocol"] == "TLSv1.2" for r in recs.values()),
              "sessdump --key opens the server's records")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


# ---- Redis: every command on redis://, and the migration file -> Redis -> file ----

class RedisServer:
    """redis-server on a random loopback port: persistence off, a password
    of the test's own (in a 0600 config file, never on argv)."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.password = "pw-" + os.urandom(12).hex()
        self.proc = None
        self.port = None

    def start(self):
        conf = os.path.join(self.tmp, "redis.conf")
        for _ in range(5):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
            sock.close()
            fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write("bind 127.0.0.1\nport %d\nsave \"\"\nappendonly no\n"
                        "requirepass %s\ndir %s\nlogfile %s\n"
                        "unixsocket %s\nunixsocketperm 700\n" % (
                            self.port, self.password, self.tmp,
                            os.path.join(self.tmp, "redis.log"),
                            self.sock_path()))
            self.proc = subprocess.Popen(["redis-server", conf],
                                         stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    if self.command("PING") == b"+PONG\r\n":
                        return self
                except OSError:
                    pass
                time.sleep(0.05)
            self.stop()
        raise Fail("redis-server did not start")

    def sock_path(self):
        return os.path.join(self.tmp, "redis.sock")

    def command(self, *args):
        """One command (AUTH first) over a socket of our own; the raw reply."""
        def resp(words):
            out = b"*%d\r\n" % len(words)
            for w in words:
                w = w if isinstance(w, bytes) else str(w).encode()
                out += b"$%d\r\n%s\r\n" % (len(w), w)
            return out
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as c:
            c.sendall(resp(["AUTH", self.password]) + resp(args))
            data = b""
            while data.count(b"\r\n") < 2:
                chunk = c.recv(65536)
                if not chunk:
                    break
                data += chunk
            auth, _, rest = data.partition(b"\r\n")
            if auth != b"+OK":
                raise OSError("AUTH: %r" % auth)
            return rest

    def stop(self):
        if self.proc is not None:
            proctools.stop(self.proc, timeout=10)
        self.proc = None


def redis_skip_reason():
    """Why the Redis cases cannot run here, or None."""
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (scripts/deps.sh installs it)"
    if os.environ.get("SESSDB_HAVE_REDIS", "1") != "1":
        return "this build has no Redis backend"
    p = run(["stats"], db="redis://127.0.0.1:1/0?timeout_ms=50", rc=None)
    if b"without Redis support" in p.stderr:
        return "this build has no Redis backend (libhiredis-dev missing)"
    return None


def pem_blocks(data):
    """The PEM blocks of an export, as a sorted list of bytes."""
    return sorted(re.findall(rb"-----BEGIN SSL SESSION PARAMETERS-----.*?"
                             rb"-----END SSL SESSION PARAMETERS-----\n",
                             data, re.S))


def session_view(db):
    """list --live --json of db as {id: (expires, protocol, cipher, sni)}."""
    _, recs = listed(db, "--live")
    return {k: (r["expires"], r.get("protocol"), r.get("cipher"),
                r.get("sni")) for k, r in recs.items()}


def case_redis_migration(tmp):
    """export from a file, import into Redis, export from Redis, import into
    a new file: every session comes through byte for byte; and every other
    command on redis://."""
    why = redis_skip_reason()
    if why is not None:
        print("skipped: " + why)
        return SKIP
    srv = RedisServer(tmp).start()
    try:
        redis_migration(tmp, srv)
    finally:
        srv.stop()


def redis_migration(tmp, srv):
    a = Store(tmp, "a.db")
    a.add_peer()
    prefix = "mig%d:" % os.getpid()
    # a loaded machine may stall us longer than the default 50 ms
    url = "redis://127.0.0.1:%d/0?prefix=%s&timeout_ms=2000" % (srv.port,
                                                               prefix)
    os.environ["SESSDB_REDIS_PASSWORD"] = srv.password
    want = a.ids("live", "peer")
    # file -> Redis
    a_pem = os.path.join(tmp, "a.pem")
    run(["export", "--live", "-o", a_pem], db=a.path)
    with open(a_pem, "rb") as f:
        a_blocks = pem_blocks(f.read())
    want_eq(len(a_blocks), len(want), "sessions exported from the file")
    p = run(["import", a_pem], db=url)
    check(b"stored %d sessions" % len(want) in p.stdout, "import into Redis: "
          "summary %r" % p.stdout)
    want_eq(set(session_view(url)), want, "Redis holds the file's sessions")
    want_eq(session_view(url), {k: v for k, v in session_view(a.path).items()
                                if k in want},
            "Redis: expiry, protocol, cipher, SNI as in the file")
    # Redis -> file
    r_pem = os.path.join(tmp, "r.pem")
    run(["export", "--live", "-o", r_pem], db=url)
    with open(r_pem, "rb") as f:
        r_blocks = pem_blocks(f.read())
    want_eq(len(r_blocks), len(a_blocks), "sessions exported from Redis")
    check(r_blocks == a_blocks, "Redis export differs from the file's")
    b = os.path.join(tmp, "b.db")
    run(["import", r_pem], db=b)
    b_pem = os.path.join(tmp, "b.pem")
    run(["export", "--live", "-o", b_pem], db=b)
    with open(b_pem, "rb") as f:
        check(pem_blocks(f.read()) == a_blocks,
              "file -> Redis -> file changed a session's bytes")
    want_eq(session_view(b), session_view(url), "file -> Redis -> file: "
            "expiry, protocol, cipher, SNI")
    for ident, mk, _ in a.kinds["live"][:3] + a.kinds["peer"]:
        doc = run_json(["show", "--json", "--secrets", ident], url)
        want_eq(doc["master_key"], mk, "show --secrets on Redis")
        want_eq(run(["export", ident], db=url).stdout,
                run(["export", ident], db=a.path).stdout, "export ID on Redis")
    print("migration: %d sessions file -> Redis -> file, byte for byte"
          % len(want))
    redis_commands(tmp, srv, url, prefix, a)


def redis_commands(tmp, srv, url, prefix, a):
    """stats, verify (a damaged value), sweep, compact; the password never
    printed, even when the URL carries it."""
    doc = run_json(["stats", "--json"], url)
    want_eq(doc["backend"], "redis", "stats --json backend")
    want_eq(doc["records"]["live"], len(a.ids("live", "peer")),
            "stats: live records in Redis")
    check("***" in doc["database"] or srv.password not in doc["database"],
          "stats names the store")
    text = run(["stats"], db=url).stdout.decode()
    check("backend:      redis" in text and "file size" not in text,
          "stats text on Redis:\n" + text)
    # the same store through the unix socket form
    unix = "unix:%s?db=0&prefix=%s&timeout_ms=2000" % (srv.sock_path(), prefix)
    want_eq(session_view(unix), session_view(url), "unix: and redis:// forms")
    want_eq(run(["verify"], db=url).returncode, 0, "verify: Redis is clean")
    # a damaged value and a foreign one under the prefix: found, removed
    ident = a.kinds["live"][0][0]
    key = prefix.encode() + b"S" + bytes.fromhex("ee" * 16)
    srv.command("SET", key, b"not a sessdb record")
    good = prefix.encode() + b"S" + bytes.fromhex(ident)
    val = srv.command("GET", good)
    check(val.startswith(b"$"), "GET of a stored record: %r" % val[:40])
    body = val.split(b"\r\n", 1)[1][:-2]
    damaged = body[:40] + bytes([body[40] ^ 0xff]) + body[41:]
    srv.command("SET", good, damaged)
    p = run(["verify"], db=url, rc=1)
    bad = set(re.findall(r"^bad record ([0-9a-f]+): ", p.stdout.decode(), re.M))
    want_eq(bad, {"53" + "ee" * 16, "53" + ident}, "verify on Redis: bad records")
    run(["verify", "--repair"], db=url, rc=0)
    run(["verify"], db=url, rc=0)
    want_eq(srv.command("EXISTS", key), b":0\r\n", "verify --repair removed it")
    # sweep: nothing expired to delete (Redis expires records), compact a no-op
    p = run(["sweep", "--compact"], db=url)
    out = p.stdout.decode()
    check("Redis expires records itself" in out, "sweep on Redis:\n" + out)
    check("compact: a no-op on Redis" in out, "compact on Redis:\n" + out)
    check("removed 0 expired" in out, "sweep on Redis removed something:\n"
          + out)
    want_eq(set(session_view(url)), a.ids("live", "peer") - {ident},
            "sweep kept every live session")
    # the password: from the environment it is never printed; in the URL
    # (allowed, not advised) it is printed as ***
    inline = "redis://:%s@127.0.0.1:%d/0?prefix=%s&timeout_ms=2000" % (
        srv.password, srv.port, prefix)
    del os.environ["SESSDB_REDIS_PASSWORD"]
    outs = b""
    for args in (["stats"], ["stats", "--json"], ["list", "--json"],
                 ["show", "ab" * 16], ["verify"]):
        p = run(args, db=inline, rc=None)
        outs += p.stdout + p.stderr
    check(srv.password.encode() not in outs, "a command printed the password")
    check(b"***" in outs, "the store is named with *** for its password")
    p = run(["stats"], db=url, rc=4)
    check(srv.password.encode() not in p.stderr, "refusal printed a password")
    print("refused without the password: " + p.stderr.decode().strip())


CASES = {name[5:].replace("_", "-"): fn for name, fn in globals().items()
         if name.startswith("case_")}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in CASES:
        print("usage: sessdump_test.py {%s}" % "|".join(sorted(CASES)),
              file=sys.stderr)
        return 2
    if not os.path.exists(SESSDUMP) or not os.path.exists(FILL):
        print("SESSDUMP or SESSDUMP_FILL not set", file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="sessdump-test-")
    try:
        rc = CASES[sys.argv[1]](tmp)
    except Fail as e:
        print("FAIL %s: %s" % (sys.argv[1], e), file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rc or 0


if __name__ == "__main__":
    sys.exit(main())
