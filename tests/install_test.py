#!/usr/bin/env python3
"""install_test.py - what a user gets from `meson install`.

Installs the build tree into a temporary staging directory
(`meson install --destdir`) and checks, with LD_LIBRARY_PATH unset:

- the installed sessdump, sessdemo and sessload start and find the
  installed libsessdb.so.0 (their run path is relative to their own
  directory, so a staged or relocated install works as the real one);
- sessdump works on a store;
- the man pages render without groff or man warnings, and `man -w NAME`
  finds them under the installed mandir;
- pkg-config finds sessdb.pc in <prefix>/<libdir>/pkgconfig (the path the
  README gives), and a program built with its flags against the installed
  headers links, runs, stores and reads back a record.

Paths come from the environment set by tests/meson.build: MESON,
SESSDB_TOP_BUILDDIR, INSTALL_PREFIX, INSTALL_BINDIR, INSTALL_LIBDIR,
INSTALL_MANDIR, SESSDUMP_FILL.  Exit 0 pass, 1 fail, 77 skipped.
"""
import os
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


def check_man(stage, env):
    """The pages render cleanly and man finds them by name."""
    if shutil.which("man") is None:
        print("man pages not checked: man (man-db) is not installed")
        return
    mandir = staged(stage, os.environ["INSTALL_MANDIR"])
    env = dict(env, MANWIDTH="80", MANPATH=mandir)
    for name in ("sessdump", "sessdemo", "sessload"):
        page = os.path.join(mandir, "man1", name + ".1")
        check(os.path.exists(page), "%s installed" % page)
        p = run(["man", "--warnings", "-l", page], env, "man -l " + name)
        check(not p.stderr.strip(), "man -l %s warns: %s" % (name, p.stderr))
        check(b"NAME" in p.stdout and name.encode() in p.stdout,
              "man -l %s renders" % name)
        p = run(["man", "-w", name], env, "man -w " + name)
        want_eq_path(p.stdout.decode().strip(), page, "man -w " + name)


def want_eq_path(got, want, what):
    if os.path.realpath(got) != os.path.realpath(want):
        raise Fail("%s: got %r, want %r" % (what, got, want))


def check_pkgconfig(tmp, stage, env):
    """pkg-config at the documented path; a program built with it runs."""
    if shutil.which("pkg-config") is None or shutil.which("cc") is None:
        print("pkg-config check skipped: pkg-config or cc missing")
        return
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


def main():
    meson = os.environ.get("MESON", "")
    build = os.environ.get("SESSDB_TOP_BUILDDIR", "")
    if not meson or not build:
        print("MESON or SESSDB_TOP_BUILDDIR not set", file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="sessdb-install-")
    stage = os.path.join(tmp, "stage")
    env = clean_env()
    try:
        run(meson.split() + ["install", "-C", build, "--destdir", stage,
                             "--no-rebuild", "--quiet"], env, "meson install")
        check_programs(tmp, stage, env)
        check_man(stage, env)
        check_pkgconfig(tmp, stage, env)
    except Fail as e:
        print("FAIL install: %s" % e, file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("install: staged install runs, man pages and pkg-config work")
    return 0


if __name__ == "__main__":
    sys.exit(main())
