"""The Prefect side of `refinery sweep` (flows/sweep.py): the work pool, the point deployment on
it, one flow run per point, and waiting for them. A sweep that is interrupted cancels the runs
it started, so a pool's workers elsewhere stop them too."""
from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.deployments.runner import EntrypointType
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.states import Cancelled, Cancelling

from .sweep_point import point_flow

POLL_SECONDS = 2.0


def create_pool(pool: str) -> None:
    """Create process work pool `pool` unless it exists (an existing one is left as it is)."""
    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
        except ObjectNotFound:
            with contextlib.suppress(ObjectAlreadyExists):  # another sweep created it meanwhile
                client.create_work_pool(WorkPoolCreate(name=pool, type="process"))


def delete_pool(pool: str) -> None:
    """Delete a sweep's own pool and its deployment: nothing of it is left on the server."""
    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(f"{point_flow.name}/{pool}")
            client.delete_deployment(deployment.id)
        except ObjectNotFound:
            pass
        with contextlib.suppress(ObjectNotFound):
            client.delete_work_pool(pool)


def register(pool: str) -> str:
    """Deployment `refinery-sweep-point/POOL`: the flow is imported from the worker's own install
    of refinery (a module path, no source to fetch); the code a point runs comes from its clone."""
    deployment = point_flow.to_deployment(name=pool, work_pool_name=pool, entrypoint_type=EntrypointType.MODULE_PATH)
    return str(deployment.apply(work_pool_name=pool))


def origin_cache(root: Path) -> str:
    proc = subprocess.run([str(Path(sys.executable).parent / "dvc"), "cache", "dir"], cwd=root,
                          capture_output=True, text=True, check=True)
    return str((root / proc.stdout.strip()).resolve())


def submit_and_wait(sweep, commit: str, scratch: Path, say: Callable[[str], None]) -> dict[str, str]:
    """One flow run per point of `sweep` (a flows.sweep.Sweep); wait for all of them."""
    deployment_id = register(sweep.pool_name)
    cache = origin_cache(sweep.root)
    runs = {}
    with get_client(sync_client=True) as client:
        for name, point in zip(sweep.names, sweep.points):
            params = {"repo": sweep.repo or str(sweep.root), "commit": commit, "name": name, "overrides": point,
                      "cache": cache, "scratch": str(scratch)}
            run = client.create_flow_run_from_deployment(deployment_id, parameters=params, name=name,
                                                         tags=["sweep", sweep.sweep_id])
            runs[run.id] = name
        say(f"{len(runs)} point(s) submitted to work pool {sweep.pool_name!r} (tag {sweep.sweep_id})")
        try:
            return wait(client, runs, say)
        except BaseException:
            cancel(client, runs, own_pool=sweep.pool is None)
            raise


def wait(client, runs: dict, say: Callable[[str], None]) -> dict[str, str]:
    final: dict[str, str] = {}
    while len(final) < len(runs):
        for run_id, name in runs.items():
            if name in final:
                continue
            state = client.read_flow_run(run_id).state
            if state is not None and state.is_final():
                final[name] = state.name
                say(f"{name}: {state.name} ({len(final)}/{len(runs)})")
        if len(final) < len(runs):
            time.sleep(POLL_SECONDS)
    return final


def cancel(client, runs: dict, own_pool: bool) -> None:
    """Mark the unfinished runs: Cancelled when our own workers are about to be stopped, else
    Cancelling, which tells the pool's workers to stop them."""
    for run_id in runs:
        try:
            state = client.read_flow_run(run_id).state
            if state is None or not state.is_final():
                kind = Cancelled if own_pool else Cancelling
                client.set_flow_run_state(run_id, kind(message="the sweep command was interrupted"), force=True)
        except Exception:  # noqa: BLE001  best effort: the server may be gone already
            pass
