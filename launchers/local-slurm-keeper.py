#!/usr/bin/env python3
"""local-slurm.sh's keeper: the parent of the daemons it starts, so that they are reaped.

A stopped daemon stays a defunct entry until its parent waits for it. The daemons fork into the
background, so their parent becomes PID 1, and where PID 1 is not an init (a container's own
agent) nobody ever waits: every `down` left munged, mariadbd, slurmdbd and slurmctld defunct.
The keeper is a child subreaper (prctl PR_SET_CHILD_SUBREAPER): the daemons it starts are
reparented to it, and it reaps each one the moment it exits. It stays (idle, a few MB) after
`down` when PID 1 does not reap, since it would itself be left defunct if it exited; `up`
reuses it.

Requests are files in the keeper's dir, written by local-slurm.sh: ``<n>.req`` holds, separated
by NUL bytes, the mode (``wait``: the command daemonizes itself, answer when it returns; ``bg``:
a foreground daemon, answer once started), the log file for its stdout/stderr, then its argv.
The answer is ``<n>.rc``: the exit status (or 0 for a started ``bg`` command). ``stop`` asks the
keeper to exit once it has no children left.
"""

import ctypes
import os
import sys
import time

PR_SET_CHILD_SUBREAPER = 36


def reap() -> int:
    """Wait for every child that has exited; the number still alive (−1: none at all)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return -1
        if pid == 0:
            return 1


def start(argv: list[str], logfile: str) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            null = os.open(os.devnull, os.O_RDONLY)
            out = os.open(logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(null, 0)
            os.dup2(out, 1)
            os.dup2(out, 2)
            os.closerange(3, 1024)
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    return pid


def serve(folder: str) -> None:
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit(f"keeper: prctl(PR_SET_CHILD_SUBREAPER) failed: errno {ctypes.get_errno()}")
    os.chdir("/")
    while True:
        alive = reap()
        if os.path.exists(os.path.join(folder, "stop")) and alive < 0:
            os.unlink(os.path.join(folder, "stop"))
            return
        for name in sorted(n for n in os.listdir(folder) if n.endswith(".req")):
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                mode, logfile, *argv = f.read().decode().split("\0")
            os.unlink(path)
            try:
                pid = start(argv, logfile)
                rc = os.waitpid(pid, 0)[1] if mode == "wait" else 0
                rc = os.waitstatus_to_exitcode(rc) if mode == "wait" else 0
            except OSError as e:
                rc = 126
                print(f"keeper: cannot start {argv}: {e}", file=sys.stderr, flush=True)
            tmp = os.path.join(folder, name[:-4] + ".rc.tmp")
            with open(tmp, "w") as f:
                f.write(f"{rc}\n")
            os.rename(tmp, tmp[:-4])
        time.sleep(0.1)


if __name__ == "__main__":
    serve(sys.argv[1])
