"""`refinery sweep` on the smoke run: two points on two local workers run at the same time, each
in a clone of the project (which has no .venv, and PATH has no virtualenv either: its stages run
with the worker's interpreter), and both come back to the origin as DVC experiments, its
params.yaml untouched. Killing the sweep command (SIGTERM or SIGKILL) leaves no worker, flow
run, stage or server process behind."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.sorting import FlowRunSort, TaskRunSort
from prefect.settings import PREFECT_API_URL, temporary_settings

from tests.project import API_URL, BIN, run

pytestmark = pytest.mark.e2e


@pytest.fixture
def origin(smoke_copy) -> Path:
    """The smoke run with its params.yaml (the smoke preset) committed: a sweep runs HEAD."""
    for cmd in (["git", "add", "-A"], ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "smoke"]):
        subprocess.run(cmd, cwd=smoke_copy, check=True, capture_output=True)
    return smoke_copy


def point_runs(api: str, since: datetime) -> list:
    """The sweep-point flow runs started after `since`, each with its `dvc-exp-run` task run."""
    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        flows = FlowFilter(name=FlowFilterName(any_=["refinery-sweep-point"]))
        runs = [r for r in client.read_flow_runs(flow_filter=flows, sort=FlowRunSort.START_TIME_ASC, limit=50)
                if r.start_time and r.start_time >= since]
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[r.id for r in runs])),
                                      sort=TaskRunSort.EXPECTED_START_TIME_ASC, limit=200)
    return [(r, next(t for t in tasks if t.flow_run_id == r.id and t.name.startswith("dvc-exp-run"))) for r in runs]


def experiments(project: Path) -> dict[str, dict]:
    shown = json.loads(run(project, "dvc", "exp", "show", "--json").stdout)
    return {exp["name"]: exp["revs"][0]["data"]["params"]["params.yaml"]["data"]
            for commit in shown for exp in (commit.get("experiments") or [])}


def test_two_points_run_at_once_in_clones_and_come_back_as_experiments(origin):
    params = (origin / "params.yaml").read_text()
    since = datetime.now(UTC)
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), "PREFECT_API_URL": API_URL["url"],
           "PREFECT_HOME": str(origin / ".prefect")}
    proc = subprocess.run([str(BIN / "refinery"), "sweep", "--grid", "distill.loss=kd,pld", "--grid", "threads=1",
                           "--workers", "2"], cwd=origin, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "sweep done (2 experiments)" in proc.stdout, proc.stdout + proc.stderr[-3000:]
    points = point_runs(API_URL["url"], since)
    assert len(points) == 2 and all(r.state.is_completed() and t.state.is_completed() for r, t in points), points
    (_, a), (_, b) = points
    overlap = min(a.end_time, b.end_time) - max(a.start_time, b.start_time)
    times = [(t.start_time, t.end_time) for t in (a, b)]
    assert overlap.total_seconds() > 0, f"the points ran one after the other: {times}"
    print(f"the two points' `dvc exp run` overlapped {overlap.total_seconds():.1f} s")
    losses = sorted(p["distill"]["loss"] for p in experiments(origin).values())
    assert losses == ["kd", "pld"], losses
    assert (origin / "params.yaml").read_text() == params
    assert not list((origin / ".dvc" / "tmp" / "sweeps").glob("*")), "the clones are deleted"


def processes_of(project: Path) -> list[str]:
    """Command lines of the live processes working for `project` (its Prefect home in their environment)."""
    mark = f"PREFECT_HOME={project / '.prefect'}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and mark in (entry / "environ").read_bytes().split(b"\0"):
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:150])
        except OSError:
            pass
    return found


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_killing_the_sweep_leaves_nothing_running(origin, tmp_path, sig):
    """The embedded default: no server set up, so the sweep starts its own, and two workers."""
    params = (origin / "params.yaml").read_text()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(origin / ".prefect")
    log = open(tmp_path / "sweep.log", "w")  # noqa: SIM115  the sweep writes it
    sweep = subprocess.Popen([str(BIN / "refinery"), "sweep", "--grid", "seed=5,6", "--workers", "2"], cwd=origin,
                             env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and not any("exp run" in cmd for cmd in processes_of(origin)):
        assert sweep.poll() is None, (tmp_path / "sweep.log").read_text()[-3000:]
        time.sleep(1)
    assert any("exp run" in cmd for cmd in processes_of(origin)), (tmp_path / "sweep.log").read_text()[-3000:]
    os.kill(sweep.pid, sig)
    sweep.wait(timeout=60)
    deadline = time.time() + 60
    while processes_of(origin) and time.time() < deadline:
        time.sleep(1)
    log.close()
    assert processes_of(origin) == [], (tmp_path / "sweep.log").read_text()[-3000:]
    assert (origin / "params.yaml").read_text() == params
    assert not list((origin / ".dvc" / "tmp" / "sweeps").glob("*")), "the clones are deleted"
