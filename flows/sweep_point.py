"""One point of a sweep, as the flow run a work pool's worker runs: clone the project at the
sweep's commit into a fresh folder, share the origin's DVC cache (or pull from the DVC remote
when that cache is not on this host), `dvc exp run -S key=value ...` there, push the experiment
back to the origin (`dvc exp push`, plus `dvc push` when a DVC remote is configured), and delete
the clone. The origin's workspace is never written, so points run side by side and a point on
another host needs only the git remote, the DVC remote and the Prefect API.

The clone has no virtualenv of its own: its stage commands (`bin/refinery stage NAME`) run with
this worker's interpreter, through REFINERY_VENV.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

DEPLOYMENT = "sweep-point"


def exe(name: str) -> str:
    """A command of this interpreter's virtualenv (dvc), whatever PATH holds."""
    return str(Path(sys.executable).parent / name)


def run(cwd: Path, *cmd: str) -> str:
    """Run `cmd` in `cwd` with this worker's virtualenv for the stage commands; raise with its output."""
    env = {**os.environ, "REFINERY_VENV": sys.prefix}
    proc = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


@task(name="git-clone", retries=0, cache_policy=NO_CACHE)
def clone(repo: str, commit: str, dest: str) -> str:
    run(Path(dest).parent, "git", "clone", "--quiet", "--no-checkout", repo, dest)
    run(Path(dest), "git", "-c", "advice.detachedHead=false", "checkout", "--quiet", commit)
    return commit


@task(name="dvc-cache", retries=0, cache_policy=NO_CACHE)
def share_cache(dest: str, cache: str | None) -> str:
    """Use the origin's DVC cache when this host sees it (outputs and run cache are then shared,
    unchanged stages restored from it); else pull what the DVC remote has."""
    if cache and Path(cache).is_dir():
        run(Path(dest), exe("dvc"), "cache", "dir", "--local", cache)
        return f"sharing the DVC cache {cache}"
    if not run(Path(dest), exe("dvc"), "remote", "list").strip():
        return "no shared cache and no DVC remote: every stage runs"
    run(Path(dest), exe("dvc"), "pull", "--allow-missing", "--run-cache")
    return "pulled from the DVC remote"


# No retries: a point is a deterministic pipeline run; rerunning a failure gives the same failure.
@task(name="dvc-exp-run", retries=0, cache_policy=NO_CACHE)
def exp_run(dest: str, name: str, overrides: dict[str, str]) -> str:
    args = [arg for key, value in overrides.items() for arg in ("-S", f"{key}={value}")]
    out = run(Path(dest), exe("dvc"), "exp", "run", "--name", name, *args)
    return out.strip().splitlines()[-1] if out.strip() else "done"


@task(name="dvc-exp-push", retries=2, retry_delay_seconds=10, cache_policy=NO_CACHE)
def exp_push(dest: str, name: str) -> str:
    """Send the experiment (its git ref) to the origin; its outputs to the DVC remote if there is one."""
    remote = run(Path(dest), exe("dvc"), "remote", "list").strip()
    run(Path(dest), exe("dvc"), "exp", "push", *([] if remote else ["--no-cache"]), "origin", name)
    if remote:
        run(Path(dest), exe("dvc"), "push")
    return f"pushed {name}" + (" and its outputs" if remote else "")


@flow(name="refinery-sweep-point", flow_run_name="{name}", log_prints=True)
def point_flow(repo: str, commit: str, name: str, overrides: dict[str, str], cache: str | None = None,
               scratch: str | None = None) -> str:
    """`repo`: the origin (a path or git URL); `commit`: the sweep's HEAD; `name`: the experiment;
    `cache`: the origin's DVC cache folder; `scratch`: where to clone (default: the temp folder)."""
    logger = get_run_logger()
    if scratch:
        Path(scratch).mkdir(parents=True, exist_ok=True)
    folder = tempfile.mkdtemp(prefix=f"{name}-", dir=scratch if scratch and Path(scratch).is_dir() else None)
    dest = str(Path(folder) / "repo")
    try:
        clone(repo, commit, dest)
        logger.info("%s", share_cache(dest, cache))
        logger.info("%s: %s", name, exp_run(dest, name, overrides))
        logger.info("%s", exp_push(dest, name))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return name
