"""Benchmark: `refinery sweep` of the same four smoke points (`--grid distill.loss=kd,pld --grid
seed=0,1`, torch at one thread, `threads=1`) on one local worker and on two, in one run.

`python -m bench.sweep`. A copy of the project with the smoke preset committed, its own Prefect
server up (`refinery server start`) so both sweeps record there. DVC's run cache is emptied before
each sweep, so both compute the same stages: the two seed-0/1 points of `kd` run every stage, the
`pld` ones restore prepare/teacher/upcycle from the run cache the `kd` ones wrote (on two workers
the `kd` pair runs first, side by side). Stage compute is the sum of the stages' task-run times
in Prefect; overhead is the share of the workers' time (workers x wall) spent on anything else
(process and import start-up, cloning, DVC, Prefect). Last line: `sweep: parallel_speedup=X`
(the one-worker wall time over the two-worker one).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GRID = ["--grid", "distill.loss=kd,pld", "--grid", "seed=0,1"]


def copy_project(dest: Path) -> Path:
    """The working tree's source (no data, no dvc.lock) as a fresh git repo, params.yaml the
    smoke preset at one thread, committed: what a sweep clones."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file() and name != "dvc.lock" and not (name.startswith("data/") and not name.endswith(".gitignore")):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    from refinery.resolve import resolve_config, write_params

    write_params(dest, resolve_config(dest, "smoke", ["threads=1"]))
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "bench"]):
        subprocess.run(cmd, cwd=dest, check=True, capture_output=True)
    return dest


def refinery(project: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(project / ".prefect")
    proc = subprocess.run([str(BIN / "refinery"), *args], cwd=project, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"refinery {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def stage_seconds(api: str, since: datetime, until: datetime) -> float:
    """Seconds of stage work: the task runs of the `refinery-stage` flow runs in [since, until]."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import FlowRunSort, TaskRunSort
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        flows = FlowFilter(name=FlowFilterName(any_=["refinery-stage"]))
        runs = [r.id for r in client.read_flow_runs(flow_filter=flows, sort=FlowRunSort.START_TIME_ASC, limit=200)
                if r.start_time and since <= r.start_time <= until]
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=runs)),
                                      sort=TaskRunSort.EXPECTED_START_TIME_ASC, limit=200) if runs else []
    return sum((t.end_time - t.start_time).total_seconds() for t in tasks if t.start_time and t.end_time)


def sweep(project: Path, api: str, workers: int) -> tuple[float, float]:
    """(wall seconds, stage seconds) of the grid on `workers` local workers, from an empty run cache."""
    shutil.rmtree(project / ".dvc" / "cache" / "runs", ignore_errors=True)
    since = datetime.now(UTC)
    started = time.perf_counter()
    refinery(project, "sweep", *GRID, "--workers", str(workers))
    wall = time.perf_counter() - started
    return wall, stage_seconds(api, since, datetime.now(UTC))


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        project = copy_project(Path(tmp))
        refinery(project, "server", "start", "--port", str(free_port()))
        try:
            from flows.server import read_state

            api = read_state(project)["api_url"]
            results = {}
            for workers in (1, 2):
                wall, compute = sweep(project, api, workers)
                results[workers] = wall
                overhead = 1 - compute / (workers * wall)
                print(f"{workers} worker(s): wall {wall:.1f}s, stage compute {compute:.1f}s, "
                      f"overhead {overhead:.2f} of {workers} x wall")
        finally:
            refinery(project, "server", "stop")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"sweep: parallel_speedup={results[1] / results[2]:.2f}")


def free_port() -> int:
    from flows.server import free_port as port

    return port()


if __name__ == "__main__":
    main()
