"""
NAME
    proctools.py - what the python tests do with the servers they start

SYNOPSIS
    import proctools
    port = proctools.wait_ready(proc, ready_file)
    status = proctools.stop(proc)

DESCRIPTION
    wait_ready waits for a server started with --ready-file to write its
    port there; free_port and wait_listening serve programs that cannot
    report the port they bound (openssl s_server, gnutls-serv, redis); stop ends a server as an operator would (SIGTERM, then
    SIGKILL if it hangs); die_with_parent (a preexec_fn) makes a server
    die with its test.  Fail, Skip, check and log are the tests' way to
    stop a case and say why.  Used by diskfull.py, realpeer.py and
    twohost.py; the test scripts find this module beside them (python
    puts a script's own directory first on sys.path).
"""
import os
import signal
import subprocess
import time


class Fail(Exception):
    """a test case failed; the message says how"""


class Skip(Exception):
    """a test case cannot run here; the message says why"""


def check(cond, msg):
    """check - raise Fail(msg) unless cond"""
    if not cond:
        raise Fail(msg)


def log(msg):
    print(msg, flush=True)


def die_with_parent():
    """die_with_parent - SIGTERM this process when the test dies, even by
    SIGKILL (PR_SET_PDEATHSIG survives exec), so no server outlives it"""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def wait_ready(proc, ready, seconds=15):
    """wait_ready - the port proc wrote to ready; None if it exited first
    or took longer than seconds"""
    deadline = time.time() + seconds
    while not os.path.exists(ready):
        if proc.poll() is not None or time.time() > deadline:
            return None
        time.sleep(0.05)
    with open(ready) as f:
        return int(f.read())


def free_port(host="127.0.0.1"):
    """free_port - a port on host that nobody listens on now (the kernel's
    choice; another program may take it before the caller binds it)"""
    import socket
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_listening(proc, port, host="127.0.0.1", seconds=15):
    """wait_listening - until host:port accepts connections; Fail if proc
    (None: a daemon that detached) exits first or it takes longer than
    seconds"""
    import socket
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise Fail("server exited with %d before listening on %d" % (
                proc.returncode, port))
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise Fail("server did not listen on %s:%d in %d s" % (host, port, seconds))


def stop(proc, timeout=20):
    """stop - SIGTERM, wait (SIGKILL if it hangs); the exit status"""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
