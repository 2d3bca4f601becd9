"""`refinery sweep`: a grid of config overrides, one DVC experiment per point, each point a flow
run of deployment `refinery-sweep-point/POOL` on a Prefect work pool.

A point runs in a clone of its own (flows/sweep_point.py): the project at the sweep's commit,
sharing the origin's DVC cache, so points run side by side and never touch the origin's
workspace (its params.yaml included); each pushes its experiment back to the origin, where `dvc
exp show` lists them all and `dvc exp apply NAME` brings one into the workspace. How many points
run at once is up to the pool's workers: by default this command starts `--workers N` local ones
(flows/sweep_fleet.py) on a pool of its own and stops them, and the pool, when it ends, however it
ends; `--pool NAME` sends the points to a pool whose workers run anywhere that reaches the git
remote, the DVC remote and the Prefect API.

This module imports prefect only inside functions: the CLI reads it before Prefect's settings
are final. DVC_LIMIT and `dvc` serve the nightly flow, which works in the origin's workspace.
"""
from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

DVC_LIMIT = "dvc"


class DirtyWorkspace(ValueError):
    """A sweep runs the committed HEAD: uncommitted changes to tracked files would not be in it."""


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


def git(root: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise DirtyWorkspace(f"git {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout


def sweep_commit(root: Path) -> str:
    """The commit every point runs: HEAD, refused when tracked files differ from it (dvc.lock
    aside: it only records what ran, and DVC's run cache restores unchanged stages anyway)."""
    commit = git(root, "rev-parse", "--verify", "HEAD").strip()
    changed = [line[3:] for line in git(root, "status", "--porcelain", "--untracked-files=no").splitlines()
               if line[3:] != "dvc.lock"]
    if changed:
        shown = ", ".join(changed[:5]) + (", ..." if len(changed) > 5 else "")
        raise DirtyWorkspace(f"sweep: uncommitted changes to {shown}; each point runs a clone of the "
                             f"committed HEAD ({commit[:8]}), so commit or stash them first")
    return commit


def point_name(sweep_id: str, point: dict[str, str]) -> str:
    """The experiment's name: the sweep's id and the point's overrides, as a git ref allows."""
    slug = "-".join(f"{key}-{value}" for key, value in point.items())
    return f"{sweep_id}-{re.sub(r'[^A-Za-z0-9_-]+', '-', slug)}"[:120].rstrip("-")


@dataclass
class Sweep:
    root: Path
    points: list[dict[str, str]]
    workers: int = 2
    pool: str | None = None  # a pool with its own workers; None: one of our own, deleted at the end
    repo: str | None = None  # what workers clone and push to; default: the origin's path
    sweep_id: str = field(default_factory=lambda: f"sweep-{time.strftime('%m%d-%H%M%S')}-{os.getpid() % 1000:03d}")

    @property
    def pool_name(self) -> str:
        return self.pool or self.sweep_id

    @property
    def names(self) -> list[str]:
        return [point_name(self.sweep_id, point) for point in self.points]


@contextmanager
def local_workers(root: Path, pool: str, count: int, scratch: Path) -> Iterator[None]:
    """`count` workers on `pool` for as long as the block runs, and the keeper that stops them
    (and deletes `scratch`) when it ends or this process dies (flows/sweep_fleet.py)."""
    if count <= 0:
        yield
        return
    from .sweep_fleet import die_with_parent

    log = root / ".prefect" / f"{pool}-workers.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    keeper = subprocess.Popen([sys.executable, "-m", "flows.sweep_fleet", pool, str(count), str(scratch), str(log)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True,
                              preexec_fn=die_with_parent, env={**os.environ, "PYTHONPATH": package_path()})
    try:
        keeper.stdout.readline()  # "ready": the workers are started
        yield
    finally:
        keeper.stdin.close()  # the keeper stops the workers and every process under them
        keeper.wait()


def package_path() -> str:
    """PYTHONPATH that finds this `flows` package first, whatever the working directory."""
    here = str(Path(__file__).resolve().parents[1])
    return os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))


def run_sweep(root: Path, grid: list[str], workers: int = 2, pool: str | None = None, repo: str | None = None,
              say: Callable[[str], None] = print) -> dict[str, str]:
    """Run every point of `grid`; returns {experiment name: final state name}."""
    sweep = Sweep(Path(root).resolve(), parse_grid(grid), workers, pool, repo)
    commit = sweep_commit(sweep.root)
    from .sweep_submit import create_pool, delete_pool, submit_and_wait

    create_pool(sweep.pool_name)
    scratch = sweep.root / ".dvc" / "tmp" / "sweeps" / sweep.sweep_id
    try:
        with local_workers(sweep.root, sweep.pool_name, workers, scratch):
            return submit_and_wait(sweep, commit, scratch, say)
    finally:
        if pool is None:
            delete_pool(sweep.pool_name)
