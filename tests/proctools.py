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
    SIGKILL if it hangs).  Used by diskfull.py and realpeer.py; the test
    scripts find this module beside them (python puts a script's own
    directory first on sys.path).
"""
import os
import signal
import subprocess
import time


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
