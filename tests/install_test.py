#!/usr/bin/env python3
"""install_test.py - what a user gets from `meson install`.

Installs the build tree into a temporary staging directory
(`meson install --destdir`) and checks, with LD_LIBRARY_PATH unset:

- the installed sessdump, sessdemo and sessload start and find the
  installed libsessdb.so.0 (their run path is relative to their own
  directory, so a staged or relocated install works as the real one);
- sessdump works on a store;
- the man pages (the tools' in section 1, the C API's, sessdb(3) and
  sessdb_ssl(3), in section 3) render without groff or man warnings, and
  `man -w SECTION NAME` finds them under the installed mandir;
- pkg-config finds sessdb.pc in <prefix>/<libdir>/pkgconfig (the path the
  README gives), and a program built with its flags against the installed
  headers links, runs, stores and reads back a record;
- the section-3 pages and the installed headers agree: every SESSDB_
  macro, sessdb_ function and structure field a header declares is in its
  page, and the pages name nothing the headers do not declare;
- the version has one source: a program that includes only the installed
  <sessdb.h> reads SESSDB_VERSION_STRING (and MAJOR, MINOR, PATCH, usable in
  #if), and it equals the project version `meson introspect --projectinfo`
  reports, as do sessdb.pc's version, the installed library's file name
  and `sessdump --version`.

Paths come from the environment set by tests/meson.build: MESON,
SESSDB_TOP_BUILDDIR, INSTALL_PREFIX, INSTALL_BINDIR, INSTALL_LIBDIR,
INSTALL_MANDIR, SESSDUMP_FILL.  Exit 0 pass, 1 fail, 77 skipped.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

SKIP = 77

PROGRAM = r"""
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sessdb.h>
#include <sessdb_ssl.h>

int
main(int argc, char **argv)
{
	char err[256];
	struct sessdb_options o;
	struct sessdb *db;
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	void *data;
	size_t len;

	memset(&o, 0, sizeof o);
	if ((db = sessdb_open(argv[1], &o, err, sizeof err)) == NULL) {
		fprintf(stderr, "open: %s\n", err);
		return 1;
	}
	if (sessdb_put(db, SESSDB_NS_SERVER, "id", 2, "payload", 7,
	    (int64_t)time(NULL) + 600) != 0 ||
	    sessdb_get(db, SESSDB_NS_SERVER, "id", 2, &data, &len, NULL) !=
	    SESSDB_OK || len != 7 || memcmp(data, "payload", 7) != 0) {
		fprintf(stderr, "put/get: %s\n", sessdb_error(db));
		return 1;
	}
	sessdb_free(data);
	if (ctx == NULL || sessdb_ssl_attach(ctx, db, 0) != 0) {
		fprintf(stderr, "attach failed\n");
		return 1;
	}
	SSL_CTX_free(ctx);
	sessdb_close(db);
	puts("installed library ok");
	return 0;
}
"""


# Reads the version through <sessdb.h> alone, as a user's program would:
# the generated <sessdb_version.h> must be installed and included by it.
VERSION_PROGRAM = r"""
#include <stdio.h>
#include <string.h>
#include <sessdb.h>

#if !defined(SESSDB_VERSION_MAJOR) || !defined(SESSDB_VERSION_MINOR) || \
    !defined(SESSDB_VERSION_PATCH) || !defined(SESSDB_VERSION_STRING)
#error "sessdb.h does not provide the version of <sessdb_version.h>"
#endif
#if SESSDB_VERSION_MAJOR < 0 || SESSDB_VERSION_MINOR < 0 || \
    SESSDB_VERSION_PATCH < 0
#error "the version parts are not integer constants"
#endif

int
main(void)
{
	char parts[64];

	snprintf(parts, sizeof parts, "%d.%d.%d", SESSDB_VERSION_MAJOR,
	    SESSDB_VERSION_MINOR, SESSDB_VERSION_PATCH);
	if (strcmp(parts, SESSDB_VERSION_STRING) != 0) {
		fprintf(stderr, "parts %s, string %s\n", parts,
		    SESSDB_VERSION_STRING);
		return 1;
	}
	printf("%s\n", SESSDB_VERSION_STRING);
	return 0;
}
"""


class Fail(Exception):
    """A check failed."""


def check(cond, what):
    if not cond:
        raise Fail(what)


def run(cmd, env, what, rc=0):
    """Run cmd; check its exit status; return the CompletedProcess."""
    p = subprocess.run(cmd, env=env, capture_output=True, timeout=60)
    if rc is not None and p.returncode != rc:
        raise Fail("%s: %s: exit %d, want %d\nstdout: %s\nstderr: %s" % (
            what, " ".join(cmd), p.returncode, rc, p.stdout[-1500:],
            p.stderr[-1500:]))
    return p


def clean_env():
    """The environment without any library or pkg-config path of ours."""
    env = dict(os.environ)
    for var in ("LD_LIBRARY_PATH", "LD_PRELOAD", "PKG_CONFIG_PATH",
                "PKG_CONFIG_SYSROOT_DIR", "MANPATH", "SESSDB_PATH"):
        env.pop(var, None)
    return env


def staged(stage, d):
    """An install directory (relative to the prefix, or absolute) as it
    appears under the staging directory."""
    prefix = os.environ["INSTALL_PREFIX"]
    return stage + os.path.join(prefix, d)


def check_programs(tmp, stage, env):
    """The installed tools start and use the installed library."""
    bindir = staged(stage, os.environ["INSTALL_BINDIR"])
    libdir = staged(stage, os.environ["INSTALL_LIBDIR"])
    for prog, args in (("sessdump", ["--version"]), ("sessdemo", ["--help"]),
                       ("sessload", ["--help"])):
        exe = os.path.join(bindir, prog)
        check(os.access(exe, os.X_OK), "%s installed" % exe)
        run([exe] + args, env, prog + " runs")
    if shutil.which("ldd"):
        out = run(["ldd", os.path.join(bindir, "sessdump")], env,
                  "ldd").stdout.decode()
        line = [ln for ln in out.splitlines() if "libsessdb.so.0" in ln]
        check(line and os.path.realpath(libdir) in
              os.path.realpath(line[0].split("=>")[1].split()[0]),
              "sessdump loads libsessdb from %s: %s" % (libdir, line))
    db = os.path.join(tmp, "s.db")
    subprocess.run([os.environ["SESSDUMP_FILL"], "populate", db,
                    db + ".manifest", "3", "2", "0", "0", "0"], check=True)
    sessdump = os.path.join(bindir, "sessdump")
    out = run([sessdump, "stats", "--db", db], env, "installed sessdump")
    check(b"live 3, expired 2" in out.stdout, "installed sessdump stats")


# The installed man pages: (section, name).
MAN_PAGES = (("1", "sessdump"), ("1", "sessdemo"), ("1", "sessload"),
             ("3", "sessdb"), ("3", "sessdb_ssl"))


def check_man(stage, env):
    """The pages render cleanly and man finds them by section and name."""
    if shutil.which("man") is None:
        print("man pages not checked: man (man-db) is not installed")
        return
    mandir = staged(stage, os.environ["INSTALL_MANDIR"])
    env = dict(env, MANWIDTH="80", MANPATH=mandir)
    for section, name in MAN_PAGES:
        page = os.path.join(mandir, "man" + section, name + "." + section)
        what = "%s(%s)" % (name, section)
        check(os.path.exists(page), "%s installed" % page)
        p = run(["man", "--warnings", "-l", page], env, "man -l " + what)
        check(not p.stderr.strip(), "man -l %s warns: %s" % (what, p.stderr))
        check(b"NAME" in p.stdout and name.encode() in p.stdout,
              "man -l %s renders" % what)
        p = run(["man", "-w", section, name], env, "man -w " + what)
        want_eq_path(p.stdout.decode().strip(), page, "man -w " + what)


# Each section-3 page and the installed headers it describes.
MAN_API = (("sessdb", ("sessdb.h", "sessdb_version.h")),
           ("sessdb_ssl", ("sessdb_ssl.h",)))
# sessdb_ words in the pages that are names of pages or headers.
MAN_API_NOT_IDENTIFIERS = {"sessdb_ssl", "sessdb_version"}


def declared(header_text):
    """The identifiers a header declares: its SESSDB_ macros, sessdb_
    functions and the fields of its structures (comments removed)."""
    code = re.sub(r"/\*.*?\*/", " ", header_text, flags=re.S)
    ids = set(re.findall(r"#define\s+(SESSDB_\w+)", code))
    ids |= set(re.findall(r"\b(sessdb_\w+)\s*\(", code))
    for body in re.findall(r"struct\s+\w+\s*\{(.*?)\};", code, flags=re.S):
        for decl in body.split(";"):
            m = (re.search(r"\(\s*\*\s*(\w+)\s*\)", decl) or
                 re.search(r"(\w+)\s*(?:\[[^]]*\])?\s*$", decl))
            if m:
                ids.add(m.group(1))
    ids -= {"SESSDB_H", "SESSDB_SSL_H", "SESSDB_VERSION_H"}
    return ids


def check_man_api(stage, env):
    """The C API pages and the installed headers agree: every macro,
    function and structure field a header declares is in its page, and
    every sessdb_ or SESSDB_ name a page uses is declared by a header."""
    mandir = staged(stage, os.environ["INSTALL_MANDIR"])
    incdir = staged(stage, includedir(env))
    everything = ""
    for hdr in os.listdir(incdir):
        if hdr.startswith("sessdb") and hdr.endswith(".h"):
            with open(os.path.join(incdir, hdr)) as f:
                everything += f.read()
    problems = []
    for page, headers in MAN_API:
        with open(os.path.join(mandir, "man3", page + ".3")) as f:
            # Not the comments and the title line (.Dt SESSDB_SSL 3).
            text = "".join(ln for ln in f if not ln.startswith(
                ('.\\"', ".Dt ")))
        ids = set()
        for hdr in headers:
            path = os.path.join(incdir, hdr)
            if not os.path.exists(path):
                problems.append("%s is not installed" % hdr)
                continue
            with open(path) as f:
                ids |= declared(f.read())
        absent = sorted(i for i in ids
                        if not re.search(r"\b%s\b" % re.escape(i), text))
        if absent:
            problems.append("%s(3) omits %s" % (page, ", ".join(absent)))
        used = set(re.findall(r"\b(?:sessdb|SESSDB)_\w+", text))
        unknown = sorted(u for u in used - MAN_API_NOT_IDENTIFIERS
                         if not re.search(r"\b%s\b" % u, everything))
        if unknown:
            problems.append("%s(3) names what no installed header declares: "
                            "%s" % (page, ", ".join(unknown)))
    if problems:
        raise Fail("; ".join(problems))


def want_eq_path(got, want, what):
    if os.path.realpath(got) != os.path.realpath(want):
        raise Fail("%s: got %r, want %r" % (what, got, want))


def check_pkgconfig(tmp, stage, env):
    """pkg-config at the documented path; a program built with it runs."""
    if shutil.which("pkg-config") is None or shutil.which("cc") is None:
        print("pkg-config check skipped: pkg-config or cc missing")
        return None
    libdir = staged(stage, os.environ["INSTALL_LIBDIR"])
    pcdir = os.path.join(libdir, "pkgconfig")
    check(os.path.exists(os.path.join(pcdir, "sessdb.pc")),
          "sessdb.pc in %s" % pcdir)
    # The .pc names the final prefix; the sysroot maps it into the stage.
    penv = dict(env, PKG_CONFIG_PATH=pcdir, PKG_CONFIG_SYSROOT_DIR=stage)
    flags = run(["pkg-config", "--cflags", "--libs", "sessdb"], penv,
                "pkg-config").stdout.decode().split()
    check("-lsessdb" in flags, "pkg-config --libs names -lsessdb: %s" % flags)
    src = os.path.join(tmp, "prog.c")
    with open(src, "w") as f:
        f.write(PROGRAM)
    exe = os.path.join(tmp, "prog")
    # A sanitized build's library needs its runtime in the program too.
    ldd = subprocess.run(["ldd", os.path.join(libdir, "libsessdb.so.0")],
                         capture_output=True).stdout
    sanitize = (["-fsanitize=address,undefined"] if b"libasan" in ldd
                else [])
    run(["cc", "-o", exe, src] + sanitize + flags +
        ["-Wl,-rpath," + libdir], env,
        "build a program with pkg-config's flags")
    out = run([exe, os.path.join(tmp, "prog.db")], env, "run it").stdout
    check(b"installed library ok" in out, "program output: %r" % out)
    return flags, penv, sanitize


def introspect(env, what):
    """`meson introspect --WHAT` of the build directory, decoded."""
    meson = os.environ["MESON"].split()
    out = run(meson + ["introspect", "--" + what,
                       os.environ["SESSDB_TOP_BUILDDIR"]], env,
              "meson introspect --" + what).stdout
    return json.loads(out.decode())


def project_version(env):
    """The version meson's project() declares, as introspection reports it."""
    version = introspect(env, "projectinfo").get("version", "")
    check(version, "meson introspect --projectinfo names no version")
    return version


def includedir(env):
    """The includedir option of the build (headers go there)."""
    for opt in introspect(env, "buildoptions"):
        if opt.get("name") == "includedir":
            return opt["value"]
    raise Fail("meson introspect --buildoptions has no includedir")


def check_version(tmp, stage, env, built):
    """Every place an installed sessdb states its version agrees with
    meson's project version: the headers, sessdb.pc, the library's file
    name, sessdump --version.  All disagreements are reported together."""
    want = project_version(env)
    problems = []
    incdir = staged(stage, includedir(env))
    libdir = staged(stage, os.environ["INSTALL_LIBDIR"])
    bindir = staged(stage, os.environ["INSTALL_BINDIR"])
    if not os.path.exists(os.path.join(incdir, "sessdb_version.h")):
        problems.append("sessdb_version.h is not installed in %s" % incdir)
    if not os.path.exists(os.path.join(libdir, "libsessdb.so." + want)):
        problems.append("no libsessdb.so.%s in %s" % (want, libdir))
    if built is not None:
        flags, penv, sanitize = built
        got = run(["pkg-config", "--modversion", "sessdb"], penv,
                  "pkg-config --modversion").stdout.decode().strip()
        if got != want:
            problems.append("sessdb.pc says version %s, want %s" % (got, want))
        src = os.path.join(tmp, "version.c")
        with open(src, "w") as f:
            f.write(VERSION_PROGRAM)
        exe = os.path.join(tmp, "version")
        p = run(["cc", "-o", exe, src] + sanitize + flags +
                ["-Wl,-rpath," + libdir], env,
                "build a program that reads the version", rc=None)
        if p.returncode != 0:
            errors = [ln for ln in p.stderr.decode().splitlines()
                      if "error" in ln]
            problems.append("a program including only <sessdb.h> cannot read "
                            "SESSDB_VERSION_STRING: %s" %
                            " | ".join(errors[:2]))
        else:
            got = run([exe], env, "run the version program").stdout
            got = got.decode().strip()
            if got != want:
                problems.append("SESSDB_VERSION_STRING is %r, want %r" %
                                (got, want))
    out = run([os.path.join(bindir, "sessdump"), "--version"], env,
              "sessdump --version").stdout.decode()
    if want not in out.split():
        problems.append("sessdump --version prints %r, want the version %s" %
                        (out.strip(), want))
    if problems:
        raise Fail("version %s (meson's project version): %s" %
                   (want, "; ".join(problems)))


def main():
    meson = os.environ.get("MESON", "")
    build = os.environ.get("SESSDB_TOP_BUILDDIR", "")
    if not meson or not build:
        print("MESON or SESSDB_TOP_BUILDDIR not set", file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="sessdb-install-")
    stage = os.path.join(tmp, "stage")
    env = clean_env()
    failed = 0
    built = None
    try:
        run(meson.split() + ["install", "-C", build, "--destdir", stage,
                             "--no-rebuild", "--quiet"], env, "meson install")
        # The checks are independent: run them all, report every failure.
        for name, fn in (
                ("programs", lambda: check_programs(tmp, stage, env)),
                ("man", lambda: check_man(stage, env)),
                ("man-api", lambda: check_man_api(stage, env)),
                ("pkg-config", lambda: check_pkgconfig(tmp, stage, env)),
                ("version", lambda: check_version(tmp, stage, env, built))):
            try:
                got = fn()
                if name == "pkg-config":
                    built = got
            except Fail as e:
                print("FAIL install %s: %s" % (name, e), file=sys.stderr)
                failed += 1
    except Fail as e:
        print("FAIL install: %s" % e, file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if failed:
        return 1
    print("install: staged install runs, man pages (and the API they "
          "describe), pkg-config and the version work")
    return 0


if __name__ == "__main__":
    sys.exit(main())
