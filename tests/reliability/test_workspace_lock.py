"""One workspace lock, taken before anything is written: a command refused because another
refinery or dvc command is working writes nothing, says so in one line and exits 3 at once.

The holder is a real process holding DVC's own repo lock, as `dvc repro` or `dvc exp run` does
(`Repo.lock`), or refinery's `workspace_lock` (the same file)."""
import os
import subprocess
import sys
import time

import pytest

from tests.project import run

HOLD = {
    "dvc": "from dvc.repo import Repo; r = Repo('.'); r.lock.lock()",
    "refinery": "from flows.dvc_runner import workspace_lock; h = workspace_lock(__import__('pathlib').Path('.')); "
                "h.__enter__()",
}


@pytest.fixture
def project(smoke_copy):
    return smoke_copy


def hold_lock(project, who: str) -> subprocess.Popen:
    code = HOLD[who] + "; print('held', flush=True); import time; time.sleep(120)"
    env = dict(os.environ, PYTHONPATH=str(project))
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=project, env=env, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


@pytest.mark.parametrize("who", ["dvc", "refinery"])
@pytest.mark.parametrize("command", [["run", "--set", "distill.temperature=2"],
                                     ["forget", "--classes", "3", "--no-run"],
                                     ["forget", "--classes", "5"]])
def test_a_refused_command_writes_nothing(project, who, command):
    before = {p: (project / p).read_bytes() for p in ("params.yaml", "dvc.yaml", "dvc.lock")}
    holder = hold_lock(project, who)
    try:
        started = time.monotonic()
        proc = run(project, "refinery", *command, check=False)
        seconds = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 3, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "another refinery or dvc command" in errors[0], proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert seconds < 30  # at once: no Prefect server was started, nothing waited for the lock
    assert {p: (project / p).read_bytes() for p in before} == before
