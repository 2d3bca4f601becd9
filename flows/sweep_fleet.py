"""The local workers of a sweep, and their keeper: `python -m flows.sweep_fleet POOL N SCRATCH LOG`
starts N `prefect worker start --pool POOL --limit 1` processes (their output to LOG) and keeps
them until its standard input closes, then stops every process under it and deletes SCRATCH
(the points' clones).

The sweep command holds the only writing end of that input, so it closes when the command ends
in any way, kill -9 included; the kernel also sends this process SIGTERM then (PR_SET_PDEATHSIG),
which stops it the same way. A worker starts each flow run in a session of its own, and those
start `dvc exp run` and the stages: this process is their "child subreaper", so whatever is left
when a worker dies is re-parented here, and the stop walks every descendant, not only the workers.
Linux-only (prctl, /proc), as is the temporary server's own PR_SET_PDEATHSIG. Standard library only.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36


def prctl(option: int, value: int) -> None:
    with contextlib.suppress(OSError, AttributeError):  # not Linux: no such call
        ctypes.CDLL(None, use_errno=True).prctl(option, value)


def die_with_parent() -> None:
    """preexec_fn of the keeper: SIGTERM when the sweep command dies, however it dies."""
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def descendants(pid: int) -> list[int]:
    """Every live process below `pid`, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def reap() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def stop_all(grace: float = 5.0) -> None:
    """SIGTERM every descendant, SIGKILL what is left after `grace` seconds, reap them all."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        for pid in descendants(os.getpid()):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.time() + wait
        while time.time() < deadline:
            reap()
            if not descendants(os.getpid()):
                return
            time.sleep(0.2)
    reap()


def worker_command(pool: str, index: int) -> list[str]:
    return [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process",
            "--limit", "1", "--name", f"{pool}-{index}"]


def main(argv: list[str]) -> int:
    pool, count, scratch, log = argv[0], int(argv[1]), Path(argv[2]), Path(argv[3])
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    stopping = []

    def on_signal(signum, frame):
        stopping.append(signum)
        raise SystemExit(0)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    # Workers poll the pool every 2 s (Prefect's default is 10 s: every point would wait for it).
    env = {**os.environ, "PREFECT_WORKER_QUERY_SECONDS": "2", "PREFECT_WORKER_PREFETCH_SECONDS": "2"}
    try:
        with open(log, "a") as out:
            for index in range(count):
                subprocess.Popen(worker_command(pool, index), env=env, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        print("ready", flush=True)
        while sys.stdin.buffer.read(4096):  # until the sweep command closes it, or dies
            pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_all()
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
