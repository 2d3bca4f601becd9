"""The nightly flow a team schedules: pull new data from the DVC remote, rerun what changed
(including any pending forget request and edited files under data.path), push the artifacts back.

`refinery serve --cron "0 3 * * *"` serves it from this process (flow.serve); `refinery deploy
--pool NAME` registers it on a process work pool for `prefect worker start --pool NAME`.
Only the network steps (pull, push) retry; stages are deterministic and never do.
"""
from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from .dvc_runner import workspace_lock
from .pipeline import pipeline_flow
from .sweep import DVC_LIMIT, dvc

FLOW_SOURCE = Path(__file__).resolve().parents[1]  # the folder holding the `flows` package
ENTRYPOINT = "flows/nightly.py:nightly_flow"


def has_remote(root: Path) -> bool:
    return bool(dvc(root, "remote", "list").strip())


@task(name="dvc-pull", retries=3, retry_delay_seconds=30, cache_policy=NO_CACHE)
def pull(root: str) -> str:
    if not has_remote(Path(root)):
        return "no DVC remote configured; nothing pulled"
    # --allow-missing: outputs of stages that never ran anywhere are not on the remote yet;
    # the pipeline builds those. Network errors still fail (and retry).
    return dvc(Path(root), "pull", "--allow-missing").strip() or "pulled"


@task(name="dvc-push", retries=3, retry_delay_seconds=30, cache_policy=NO_CACHE)
def push(root: str) -> str:
    if not has_remote(Path(root)):
        return "no DVC remote configured; nothing pushed"
    return dvc(Path(root), "push").strip() or "pushed"


@task(name="forget-requests", retries=0, cache_policy=NO_CACHE)
def pending_forget(root: str) -> str:
    """Say which forget request params.yaml holds. Processing needs nothing more: the request is
    a param of prepare and unlearn, so the pipeline's DVC check reruns them when it changed."""
    from refinery import config as C

    params = Path(root) / "params.yaml"
    raw = C.read_yaml(params) if params.exists() else {}
    request = raw.get("forget") if isinstance(raw, dict) else None
    return f"forget request: {request}" if request else "no forget request"


@task(name="user-data", retries=0, cache_policy=NO_CACHE)
def refresh_user_data(root: str) -> str:
    """Re-stamp data.fingerprint and forget.fingerprint in params.yaml, so files changed under
    data.path, or an edited ids file, rerun prepare. Without either there is nothing to stamp,
    and params.yaml is left to the pipeline."""
    from refinery import config as C

    from refinery.resolve import resolve_config, write_params

    params = Path(root) / "params.yaml"
    raw = C.read_yaml(params) if params.exists() else {}
    data = raw.get("data") if isinstance(raw, dict) else None
    forget = raw.get("forget") if isinstance(raw, dict) else None
    by_ids = isinstance(forget, dict) and forget.get("mode") == "ids"
    if not (isinstance(data, dict) and data.get("path")) and not by_ids:
        return "no data.path and no ids file: nothing to stamp"
    cfg = resolve_config(Path(root), None, [])
    write_params(Path(root), cfg)
    return f"user data {cfg.data.path}: fingerprint {cfg.data.fingerprint}"


def preset_name(root: str) -> str:
    """The `name` params.yaml records (the preset it came from), for the pipeline's flow run."""
    from refinery import config as C

    params = Path(root) / "params.yaml"
    raw = C.read_yaml(params) if params.exists() else {}
    return str(raw.get("name", "params.yaml")) if isinstance(raw, dict) else "params.yaml"


@flow(name="refinery-nightly", log_prints=True)
def nightly_flow(root: str) -> dict:
    from prefect.concurrency.sync import concurrency

    logger = get_run_logger()
    pulled = pull(root)
    logger.info("%s", pulled)
    logger.info("%s", pending_forget(root))
    # The workspace lock before params.yaml is re-stamped, held through the pipeline: a command
    # started meanwhile is refused instead of writing under it. The pipeline also holds the `dvc`
    # slot: a sweep in the same workspace waits for it instead of failing on the lock.
    with workspace_lock(Path(root)), concurrency(DVC_LIMIT, occupy=1, strict=True):
        logger.info("%s", refresh_user_data(root))
        table = pipeline_flow(root=root, pipeline=preset_name(root))
    pushed = push(root)
    logger.info("%s", pushed)
    return {"pull": pulled, "stages": table, "push": pushed}


def serve(root: Path, name: str, cron: str | None = None, interval: float | None = None) -> None:
    """Serve the nightly flow as deployment `refinery-nightly/NAME` until interrupted; the
    runner starts each scheduled run in a subprocess."""
    from tasks.gpu import ensure_limit

    ensure_limit(DVC_LIMIT, 1)
    # limit=1: a night's run that overruns delays the next instead of racing it for the workspace.
    nightly_flow.serve(name=name, cron=cron, interval=interval, parameters={"root": str(root)}, limit=1)


def deploy(root: Path, name: str, pool: str, cron: str | None) -> str:
    """Register the nightly flow on process work pool `pool` (created when missing)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    source = nightly_flow.from_source(source=str(FLOW_SOURCE), entrypoint=ENTRYPOINT)
    # to_deployment + apply rather than flow.deploy: deploy also lists the pool's workers, a call
    # this Prefect client / server pair rejects (422: null `limit`), and it needs no image anyway.
    deployment = source.to_deployment(name=name, work_pool_name=pool, cron=cron, parameters={"root": str(root)})
    return str(deployment.apply(work_pool_name=pool))
