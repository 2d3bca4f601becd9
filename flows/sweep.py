"""`refinery sweep`: a grid of config overrides, one DVC experiment per point, fanned out
through Prefect's Dask task runner (a local cluster by default, or `address` for a running one).

Every DVC command here runs behind the Prefect global concurrency limit `dvc` (1 slot): DVC
takes a lock on the workspace and a second command fails on it at once, so points queue for
the slot instead. Points therefore run one at a time in the workspace, each as a plain
`dvc exp run -S key=value ...`; the task runner gives each point a task run (state, logs) in
Prefect and a place to run (a remote cluster's workers must see the same workspace path). Each point is an
experiment, so `dvc exp show` lists them all, and `dvc exp apply NAME` brings one back.
"""
from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

DVC_LIMIT = "dvc"


def parse_grid(items: list[str]) -> list[dict[str, str]]:
    """["a=1,2", "b=x"] -> [{"a": "1", "b": "x"}, {"a": "2", "b": "x"}] (every combination)."""
    axes = []
    for item in items:
        key, sep, values = item.partition("=")
        choices = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key.strip() or not choices:
            raise ValueError(f"--grid: expected KEY=V1,V2,..., got {item!r}")
        axes.append([(key.strip(), v) for v in choices])
    return [dict(combo) for combo in itertools.product(*axes)]


def dvc(root: Path, *args: str) -> str:
    """Run one DVC command in `root`, holding the `dvc` slot; raise with its output on failure."""
    from prefect.concurrency.sync import concurrency

    from tasks.gpu import ensure_limit

    ensure_limit(DVC_LIMIT, 1)
    exe = str(Path(sys.executable).parent / "dvc")
    with concurrency(DVC_LIMIT, occupy=1, strict=True):
        proc = subprocess.run([exe, *args], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"dvc {' '.join(args)} failed ({proc.returncode}):\n"
                           f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc.stdout


# No retries: a point is a deterministic pipeline run; rerunning a failure gives the same failure.
@task(name="sweep-point", retries=0, cache_policy=NO_CACHE, task_run_name="point-{label}")
def run_point(root: str, point: dict[str, str], label: str) -> str:
    args = [arg for key, value in point.items() for arg in ("-S", f"{key}={value}")]
    out = dvc(Path(root), "exp", "run", *args)
    get_run_logger().info("%s: %s", label, out.strip().splitlines()[-1] if out.strip() else "done")
    return label


@flow(name="refinery-sweep", log_prints=True)
def sweep_flow(root: str, points: list[dict[str, str]]) -> list[str]:
    futures = [run_point.submit(root, point, ",".join(f"{k}={v}" for k, v in point.items())) for point in points]
    return [f.result() for f in futures]


def run_sweep(root: Path, grid: list[str], address: str | None = None, workers: int = 1) -> list[str]:
    """Run the grid on a Dask cluster: the one at `address`, else a local one of threads."""
    from prefect_dask import DaskTaskRunner

    points = parse_grid(grid)
    if address:
        runner = DaskTaskRunner(address=address)
    else:
        # Threads, not processes: each point's work happens in a `dvc exp run` subprocess anyway,
        # and worker processes would each need their own Prefect and torch start-up.
        runner = DaskTaskRunner(cluster_kwargs={"n_workers": 1, "threads_per_worker": workers,
                                                "processes": False, "dashboard_address": None})
    return sweep_flow.with_options(task_runner=runner)(root=str(root), points=points)
