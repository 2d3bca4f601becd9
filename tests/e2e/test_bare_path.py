"""Stage commands need no PATH: `.venv/bin/dvc exp run` from a shell whose PATH holds only the
system's folders works, and so does a DVC queue through bin/dvc (DVC starts its queue workers as
a bare `dvc`), whose experiments run in copies under .dvc/tmp/."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest

from tests.project import API_URL, BIN, PROJECT, copy_run

BARE_PATH = "/usr/bin:/bin"


@pytest.fixture
def project(smoke_project, tmp_path):
    """A copy of the smoke run whose .venv is the project's, as in a real checkout."""
    dest = tmp_path / "project"
    copy_run(smoke_project, dest)
    (dest / ".venv").symlink_to(PROJECT / ".venv")
    return dest


def bare(project, *args, timeout=900) -> subprocess.CompletedProcess:
    """Run `args` from a bare PATH: a bin/ command of the project, else one of the virtualenv."""
    env = {"PATH": BARE_PATH, "HOME": os.environ.get("HOME", "/root"), "PREFECT_HOME": str(project / ".prefect"),
           "PREFECT_API_URL": API_URL["url"], "OMP_NUM_THREADS": "1"}
    exe = args[0] if args[0].startswith("bin/") else str(BIN / args[0])
    proc = subprocess.run([exe, *args[1:]], cwd=project, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(args)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_dvc_exp_run_works_from_a_bare_path(project):
    assert shutil.which("refinery", path=BARE_PATH) is None
    out = bare(project, "dvc", "exp", "run", "-S", "distill.loss=pld").stdout
    assert "Running stage 'distill'" in out, out
    metrics = json.loads((project / "data" / "distill" / "metrics.json").read_text())
    assert metrics["loss"] == "pld"


def test_a_dvc_queue_runs_two_experiments_from_a_bare_path(project):
    for temperature in (2, 3):
        bare(project, "bin/dvc", "exp", "run", "--queue", "-S", f"distill.temperature={temperature}")
    bare(project, "bin/dvc", "queue", "start")
    deadline = time.time() + 900
    while time.time() < deadline:
        status = bare(project, "bin/dvc", "queue", "status").stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(5)
    assert status.count("Success") == 2, status
