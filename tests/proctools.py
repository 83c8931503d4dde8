"""
NAME
    proctools.py - what the python tests do with the servers they start

SYNOPSIS
    import proctools
    port = proctools.wait_ready(proc, ready_file)
    status = proctools.stop(proc)

DESCRIPTION
    wait_ready waits for a server started with --ready-file to write its
    port there; stop ends a server as an operator would (SIGTERM, then
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
