"""Ctrl-C and SIGTERM end a running `refinery run` within seconds: "interrupted", exit 130, the
flow run no longer Running, and no process left behind (its temporary Prefect server included).

The command runs as a terminal would run it: its own process group, no Prefect server set up
(so it starts a temporary one), and Ctrl-C is SIGINT to the whole process group."""
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
DEADLINE = 10.0  # seconds from the signal to a clean exit


@pytest.fixture
def project(smoke_copy):
    return smoke_copy


def start_run(project: Path) -> tuple[subprocess.Popen, list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(project / ".prefect")
    # As from a terminal: Ctrl-C's default action, even where this test runs as a background job
    # (a non-interactive shell starts those with SIGINT ignored, and children inherit that).
    proc = subprocess.Popen([str(BIN / "refinery"), "run", "--force"], cwd=project, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    return proc, lines


def wait_for(lines: list[str], text: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not any(text in line for line in list(lines)):
        assert proc.poll() is None, "".join(lines)
        assert time.monotonic() < deadline, "".join(lines)
        time.sleep(0.2)


def leftovers(project: Path, pgid: int) -> list[str]:
    """Processes of this run: in its process group, or working for its Prefect home."""
    home = f"PREFECT_HOME={project / '.prefect'}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            mine = os.getpgid(int(entry.name)) == pgid or home in (entry / "environ").read_bytes().split(b"\0")
            if mine and (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                found.append(f"{entry.name}: {command[:120]}")
        except (OSError, ProcessLookupError):
            continue
    return found


@pytest.mark.parametrize("how", ["SIGINT to the process group", "SIGTERM to the command"])
def test_a_signal_ends_the_run_at_once_and_leaves_nothing(project, how):
    proc, lines = start_run(project)
    try:
        wait_for(lines, "epoch", proc)  # a stage is training
        sent = time.monotonic()
        if how.startswith("SIGINT"):
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        seconds = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    time.sleep(0.5)
    left = leftovers(project, proc.pid)
    output = "".join(lines)
    assert seconds < DEADLINE, f"{seconds:.1f} s to exit:\n{output[-3000:]}"
    assert proc.returncode == 130 and "refinery: interrupted" in output, output[-3000:]
    assert not left, left
    with sqlite3.connect(project / ".prefect" / "prefect.db") as db:
        states = [row[0] for row in db.execute("SELECT state_type FROM flow_run")]
    assert states and "RUNNING" not in states, states
